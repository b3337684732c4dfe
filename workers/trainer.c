#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dataset.h"
#include "engine.h"
#include "metrics.h"
#include "summary.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int trainer_is_eval_step(const et_training *t, long s)
{
    if (s == t->max_steps - 1)
        return 1;
    return t->eval_every > 0 && (s + 1) % t->eval_every == 0;
}

int trainer_is_ckpt_step(const et_training *t, long s, int last)
{
    if (!t->checkpoint_path[0])
        return 0;
    return last || (t->checkpoint_every > 0 && (s + 1) % t->checkpoint_every == 0);
}

int trainer_target_met(const et_training *t, double val_loss, double val_accuracy)
{
    int has_loss = !isnan(t->target_val_loss), has_acc = !isnan(t->target_val_accuracy);
    if (!has_loss && !has_acc)
        return 0;
    if (has_loss && !(val_loss <= t->target_val_loss))
        return 0;
    if (has_acc && !(val_accuracy >= t->target_val_accuracy))
        return 0;
    return 1;
}

void trainer_optim_config(const et_training *t, optim_config *o)
{
    optim_config_default(o);
    o->lr = t->lr;
    o->min_lr = t->min_lr;
    o->warmup_steps = t->warmup_steps;
    o->cosine = t->lr_decay_cosine;
    o->max_steps = t->max_steps;
    o->weight_decay = t->weight_decay;
    o->grad_clip = t->grad_clip;
}

static int save_checkpoint(const char *path, et_engine *en, const ckpt_meta *meta, et_err *e)
{
    return ckpt_save(path, MPI_COMM_SELF, en->sh, en->opt, meta, NULL, e);
}

int trainer_run_single(const et_config *cfg, const et_train_opts *o, et_train_result *res, et_err *e)
{
    const et_training *t = &cfg->training;
    memset(res, 0, sizeof *res);
    res->steps_to_target = -1;
    res->tta_wall_s = res->tta_emulated_s = NAN;
    res->final_val_loss = res->final_val_accuracy = NAN;

    et_dataset dsv = {0}, *ds = &dsv;
    if (dataset_load(t->dataset, cfg->model.vocab_size, (size_t)t->seq_len + 2, ds, e) != 0)
        return -1;

    optim_config oc;
    trainer_optim_config(t, &oc);
    et_sampler smp = {ds->train, ds->n_train, t->seq_len, t->sampling == ET_SAMPLING_RANDOM, t->seed};
    int M = t->global_batch / t->micro_batch;
    et_engine *en = engine_new(&cfg->model, t->micro_batch, t->seq_len, M, &oc, &smp, ds->val,
                               ds->n_val, t->eval_tokens, e);
    if (!en) {
        dataset_free(ds);
        return -1;
    }

    int rc = -1;
    et_metrics_file mf = {0};
    ckpt_meta meta = {0};
    meta.seed = t->seed;
    long start = 0;
    if (o->resume) {
        if (!t->checkpoint_path[0]) {
            et_errf(e, ET_EINPUT, "%s: --resume needs training.checkpoint.path (no checkpoint configured)",
                    cfg->path);
            goto out;
        }
        if (ckpt_load(t->checkpoint_path, MPI_COMM_SELF, en->sh, en->opt, &meta, e) != 0)
            goto out;
        start = (long)meta.step;
    } else if (t->init[0]) {
        if (ckpt_load(t->init, MPI_COMM_SELF, en->sh, NULL, NULL, e) != 0)
            goto out;
    } else {
        gpt2_shard_init_random(en->sh, t->seed);
    }
    if (metrics_open(&mf, o->out_dir, o->resume, e) != 0)
        goto out;

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    double t_origin = now_s() - meta.wall_s;   /* a resumed run continues its clocks */
    double emulated = meta.emulated_s;
    long tokens_per_step = (long)t->global_batch * t->seq_len;
    uint64_t k = (uint64_t)meta.data_position;
    if (!o->resume)
        k = 0;
    long s, n_steps = 0;
    double sum_step_wall = 0, busy = 0;
    for (s = start; s < t->max_steps; s++) {
        double t0 = now_s();
        et_step_result sr;
        engine_train_step(en, s, k, &sr);
        k += (uint64_t)t->global_batch;
        double t1 = now_s();
        emulated += o->emulated_step_s;
        n_steps++;
        sum_step_wall += t1 - t0;
        busy += t1 - t0;
        if (!isfinite(sr.loss)) {
            et_errf(e, ET_ERUNTIME,
                    "non-finite loss (%g) at step %ld on stage 0 (server %s, layers 0-%d): "
                    "lower training.lr or check the data",
                    sr.loss, s, o->server ? o->server : "local", cfg->model.n_layer - 1);
            goto out_signals;
        }
        et_step_metrics m = {
            .step = s, .wall_s = t1 - t_origin, .emulated_s = emulated, .lr = sr.lr,
            .train_loss = sr.loss, .val_loss = NAN, .val_accuracy = NAN,
            .tokens_per_s = tokens_per_step / (t1 - t0), .grad_norm = sr.grad_norm,
            .step_wall_s = t1 - t0, .step_emulated_s = o->emulated_step_s,
        };
        int met = 0;
        if (trainer_is_eval_step(t, s) || stop_signal) {
            et_eval_result ev;
            engine_eval(en, &ev);
            m.val_loss = ev.loss;
            m.val_accuracy = ev.accuracy;
            res->final_val_loss = ev.loss;
            res->final_val_accuracy = ev.accuracy;
            met = trainer_target_met(t, ev.loss, ev.accuracy);
        }
        metrics_write(&mf, &m);
        if (o->progress) {
            printf("step %5ld/%ld  loss %.4f  lr %.3g  %8.0f tok/s  %7.1f ms", s, t->max_steps,
                   sr.loss, sr.lr, m.tokens_per_s, m.step_wall_s * 1e3);
            if (!isnan(m.val_loss))
                printf("  val_loss %.4f  val_acc %.4f", m.val_loss, m.val_accuracy);
            printf("  wall %.1fs  emulated %.1fs\n", m.wall_s, m.emulated_s);
            fflush(stdout);
        }
        int last = met || s == t->max_steps - 1 || stop_signal;
        if (trainer_is_ckpt_step(t, s, last)) {
            meta.step = s + 1;
            meta.data_position = (int64_t)k;
            meta.wall_s = now_s() - t_origin;
            meta.emulated_s = emulated;
            if (save_checkpoint(t->checkpoint_path, en, &meta, e) != 0)
                goto out_signals;
        }
        if (met) {
            res->reached = 1;
            res->steps_to_target = s + 1;
            res->tta_wall_s = m.wall_s;
            res->tta_emulated_s = m.emulated_s;
        }
        res->wall_s = m.wall_s;
        res->emulated_s = emulated;
        if (last) {
            s++;
            break;
        }
    }
    res->steps = s;
    res->interrupted = stop_signal != 0;
    {
        run_summary *sm = et_xmalloc(sizeof *sm);
        summary_init(sm);
        snprintf(sm->status, sizeof sm->status, "%s", res->interrupted ? "interrupted" : "ok");
        snprintf(sm->clock, sizeof sm->clock, "%s", cfg->clock == ET_CLOCK_VIRTUAL ? "virtual" : "wall");
        sm->steps = s;
        sm->steps_this_run = n_steps;
        sm->reached = res->reached;
        sm->steps_to_target = res->steps_to_target;
        sm->tta_wall_s = res->tta_wall_s;
        sm->tta_emulated_s = res->tta_emulated_s;
        sm->final_val_loss = res->final_val_loss;
        sm->final_val_accuracy = res->final_val_accuracy;
        sm->wall_s = res->wall_s;
        sm->emulated_s = res->emulated_s;
        sm->mean_step_wall_s = n_steps ? sum_step_wall / n_steps : NAN;
        sm->mean_step_emulated_s = o->emulated_step_s;
        sm->predicted_step_s = o->emulated_step_s;
        sm->tokens_per_step = tokens_per_step;
        sm->n_ranks = 1;
        sm->rank[0].rank = 1;
        snprintf(sm->rank[0].server, sizeof sm->rank[0].server, "%s", o->server ? o->server : "local");
        sm->rank[0].busy_s = cfg->clock == ET_CLOCK_VIRTUAL ? o->emulated_step_s * n_steps : busy;
        int w = summary_write(o->out_dir, sm, e);
        free(sm);
        if (w != 0)
            goto out_signals;
    }
    rc = 0;
out_signals:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
out:
    metrics_close(&mf);
    engine_free(en);
    dataset_free(ds);
    return rc;
}
