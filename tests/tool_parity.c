/*
 * tool_parity — the C side of the PyTorch parity tests (tests/t_parity.sh,
 * tests/t_convert.sh). Plain program, no MPI (checkpoints use the POSIX path).
 *
 *   tool_parity train --layers L --embd C --heads H --vocab V --block T
 *       --batch B --seed S --data D.h5 --dir OUT [--steps 10] [--tp N]
 *       [--lr X] [--min-lr X] [--warmup N] [--max-steps N] [--cosine 0|1]
 *       [--weight-decay X] [--grad-clip X]
 *     Random-initialises the model (gpt2_shard_init_random), saves it as
 *     OUT/model.h5, loads it back into N tensor-parallel shards (N threads
 *     with an in-process all-reduce; default 1: the whole model), and trains
 *     `steps` steps on D.h5's train/tokens with sequential sampling
 *     (seq_len = T). Writes:
 *       OUT/c_out.h5   attributes (the hyper-parameters above), losses[steps]
 *                      and norms[steps] (float64: forward loss and gradient
 *                      norm of each step), logits [B,T,V] of step 0
 *       OUT/grads.h5   step 0's gradients (before clipping) as a checkpoint
 *       OUT/final.h5   the weights and AdamW moments after the last step
 *     The last two are written by ckpt_save_shards from the N shards, so they
 *     also prove the reassembly of tensor-parallel slices.
 *   tool_parity make-data --out D.h5 --vocab V --train N --val M --seed S
 *     A dataset of uniformly random tokens (workers/dataset format).
 * Errors: one line on stderr, exit 2 (bad input) or 1.
 */
#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/et_err.h"
#include "../model/gpt2.h"
#include "../model/optim.h"
#include "../workers/checkpoint.h"
#include "../workers/dataset.h"
#include "../workers/sampler.h"

#define MAX_TP 8

typedef struct opts {
    gpt2_config cfg;
    int batch, steps, tp;
    uint64_t seed;
    optim_config oc;
    const char *data, *dir, *out;
    int seq_len;
    long n_train, n_val;
} opts;

/* Print "tool_parity: msg" and return the exit code for e. */
static int fail(const et_err *e)
{
    fprintf(stderr, "tool_parity: %s\n", e->msg);
    return e->code == ET_EINPUT ? 2 : 1;
}

/* Parse "--key value" options into o. Returns 0 or -1 with e set. */
static int parse_opts(int argc, char **argv, opts *o, et_err *e)
{
    memset(o, 0, sizeof *o);
    optim_config_default(&o->oc);
    o->batch = 4;
    o->steps = 10;
    o->tp = 1;
    o->oc.max_steps = 10;
    for (int i = 0; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return et_errf(e, ET_EINPUT, "option %s needs a value", k);
        char *end;
        double x = strtod(v, &end);
        int is_num = *v && !*end;
        const char *str_keys[] = {"--data", "--dir", "--out"};
        const char **str_dst[] = {&o->data, &o->dir, &o->out};
        int done = 0;
        for (int s = 0; s < 3; s++)
            if (!strcmp(k, str_keys[s])) {
                *str_dst[s] = v;
                done = 1;
            }
        if (done)
            continue;
        if (!is_num)
            return et_errf(e, ET_EINPUT, "option %s: '%s' is not a number (or unknown option)", k, v);
        if (!strcmp(k, "--layers")) o->cfg.n_layer = (int)x;
        else if (!strcmp(k, "--embd")) o->cfg.n_embd = (int)x;
        else if (!strcmp(k, "--heads")) o->cfg.n_head = (int)x;
        else if (!strcmp(k, "--vocab")) o->cfg.vocab_size = (int)x;
        else if (!strcmp(k, "--block")) o->cfg.block_size = (int)x;
        else if (!strcmp(k, "--batch")) o->batch = (int)x;
        else if (!strcmp(k, "--seed")) o->seed = (uint64_t)x;
        else if (!strcmp(k, "--steps")) o->steps = (int)x;
        else if (!strcmp(k, "--tp")) o->tp = (int)x;
        else if (!strcmp(k, "--train")) o->n_train = (long)x;
        else if (!strcmp(k, "--val")) o->n_val = (long)x;
        else if (!strcmp(k, "--lr")) o->oc.lr = x;
        else if (!strcmp(k, "--min-lr")) o->oc.min_lr = x;
        else if (!strcmp(k, "--warmup")) o->oc.warmup_steps = (int)x;
        else if (!strcmp(k, "--max-steps")) o->oc.max_steps = (long)x;
        else if (!strcmp(k, "--cosine")) o->oc.cosine = (int)x;
        else if (!strcmp(k, "--weight-decay")) o->oc.weight_decay = x;
        else if (!strcmp(k, "--grad-clip")) o->oc.grad_clip = x;
        else return et_errf(e, ET_EINPUT, "unknown option %s", k);
    }
    if (o->batch < 1 || o->steps < 1 || o->tp < 1 || o->tp > MAX_TP)
        return et_errf(e, ET_EINPUT, "--batch, --steps must be >= 1 and --tp in 1..%d", MAX_TP);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tensor parallelism inside one process: N threads, a barrier all-reduce    */
/* ------------------------------------------------------------------------ */

typedef struct tp_group {
    int n;
    pthread_barrier_t bar;
    float *bufs[MAX_TP];
    double dsum[MAX_TP];
} tp_group;

typedef struct tp_ctx {
    tp_group *g;
    int rank;
} tp_ctx;

/* Sum buf over the group in place: every rank sums its own chunk of the
 * elements over all ranks' buffers (ranks in order, so every copy of an
 * element gets the same bits) and writes it back into all of them. */
static void tp_allreduce(void *ctx, float *buf, size_t n)
{
    tp_ctx *c = ctx;
    tp_group *g = c->g;
    g->bufs[c->rank] = buf;
    pthread_barrier_wait(&g->bar);
    size_t lo = n * (size_t)c->rank / (size_t)g->n, hi = n * (size_t)(c->rank + 1) / (size_t)g->n;
    for (size_t i = lo; i < hi; i++) {
        float s = 0.0f;
        for (int r = 0; r < g->n; r++)
            s += g->bufs[r][i];
        for (int r = 0; r < g->n; r++)
            g->bufs[r][i] = s;
    }
    pthread_barrier_wait(&g->bar);
}

/* Sum of one double over the group (same order on every rank). */
static double tp_sum(tp_ctx *c, double x)
{
    tp_group *g = c->g;
    g->dsum[c->rank] = x;
    pthread_barrier_wait(&g->bar);
    double s = 0.0;
    for (int r = 0; r < g->n; r++)
        s += g->dsum[r];
    pthread_barrier_wait(&g->bar);
    return s;
}

typedef struct worker {
    tp_ctx ctx;
    const opts *o;
    const et_sampler *smp;
    gpt2_shard *sh;
    optim_state *st;
    float *grads0;        /* copy of step 0's gradients, sh's layout */
    double *losses, *norms;
    float *logits0;       /* rank 0 only: [B,T,V] of step 0 */
} worker;

/* One TP rank's training loop (DESIGN.md semantics: forward, backward,
 * global-norm clip, AdamW with the scheduled learning rate). */
static void *worker_train(void *arg)
{
    worker *w = arg;
    const opts *o = w->o;
    int B = o->batch, T = o->seq_len;
    gpt2_acts *a = gpt2_acts_new(w->sh, B, T);
    int *in = et_xmalloc((size_t)B * T * sizeof *in), *tg = et_xmalloc((size_t)B * T * sizeof *tg);
    gpt2_tp tp = {tp_allreduce, &w->ctx, NULL};
    for (int s = 0; s < o->steps; s++) {
        sampler_fill(w->smp, (uint64_t)s * (uint64_t)B, B, in, tg);
        gpt2_shard_zero_grad(w->sh);
        float loss = gpt2_forward(w->sh, a, in, NULL, tg, &tp);
        if (s == 0 && w->logits0)   /* backward turns the logits into their gradient */
            memcpy(w->logits0, gpt2_acts_logits(a), (size_t)B * T * o->cfg.vocab_size * sizeof(float));
        gpt2_backward(w->sh, a, in, NULL, 1.0f, &tp);
        if (s == 0)
            memcpy(w->grads0, w->sh->grads, w->sh->n_params * sizeof(float));
        double norm = sqrt(tp_sum(&w->ctx, optim_grad_sqsum(w->sh, w->ctx.rank == 0, 0)));
        w->losses[s] = loss;
        w->norms[s] = norm;
        optim_step(w->sh, w->st, &o->oc, s, optim_clip_scale(&o->oc, norm));
    }
    free(in);
    free(tg);
    gpt2_acts_free(a);
    return NULL;
}

/* Write OUT/c_out.h5: the hyper-parameters as float64 attributes, losses and
 * norms [steps] (float64), step 0's logits [B,T,V] (float32). */
static int write_c_out(const char *path, const opts *o, const double *losses, const double *norms,
                       const float *logits, et_err *e)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return et_errf(e, ET_ERUNTIME, "%s: cannot create", path);
    const struct { const char *k; double v; } at[] = {
        {"batch", o->batch}, {"seq_len", o->seq_len}, {"steps", o->steps}, {"tp", o->tp},
        {"lr", o->oc.lr}, {"min_lr", o->oc.min_lr}, {"warmup_steps", o->oc.warmup_steps},
        {"max_steps", (double)o->oc.max_steps}, {"cosine", o->oc.cosine},
        {"weight_decay", o->oc.weight_decay}, {"grad_clip", o->oc.grad_clip},
    };
    hid_t sc = H5Screate(H5S_SCALAR);
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        hid_t a = H5Acreate2(f, at[i].k, H5T_IEEE_F64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_DOUBLE, &at[i].v);
        H5Aclose(a);
    }
    H5Sclose(sc);
    hsize_t ns = (hsize_t)o->steps, dl[3] = {(hsize_t)o->batch, (hsize_t)o->seq_len, (hsize_t)o->cfg.vocab_size};
    const char *names[2] = {"losses", "norms"};
    const double *vals[2] = {losses, norms};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        hid_t sp = H5Screate_simple(1, &ns, NULL);
        hid_t d = H5Dcreate2(f, names[i], H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc |= H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals[i]) < 0;
        H5Dclose(d);
        H5Sclose(sp);
    }
    hid_t sp = H5Screate_simple(3, dl, NULL);
    hid_t d = H5Dcreate2(f, "logits", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits) < 0;
    H5Dclose(d);
    H5Sclose(sp);
    if (H5Fclose(f) < 0 || rc)
        return et_errf(e, ET_ERUNTIME, "%s: write failed", path);
    return 0;
}

/* tool_parity train: see the file comment. */
static int cmd_train(const opts *o0, et_err *e)
{
    opts o = *o0;
    o.seq_len = o.cfg.block_size;
    if (!o.data || !o.dir)
        return et_errf(e, ET_EINPUT, "train needs --data and --dir");
    if (gpt2_config_check(&o.cfg, e) < 0)
        return -1;
    char path[1024];
    int rc = -1, n = o.tp;

    /* 1. the random model, saved whole */
    gpt2_shard_spec full = {0, o.cfg.n_layer - 1, 1, 1, 0, 1};
    gpt2_shard *whole = gpt2_shard_new(&o.cfg, &full, e);
    if (!whole)
        return -1;
    gpt2_shard_init_random(whole, o.seed);
    ckpt_meta meta = {0};
    meta.seed = o.seed;
    snprintf(path, sizeof path, "%s/model.h5", o.dir);
    int ok = ckpt_save(path, MPI_COMM_SELF, whole, NULL, &meta, NULL, e) == 0;
    gpt2_shard_free(whole);
    if (!ok)
        return -1;

    /* 2. the data */
    et_dataset ds;
    if (dataset_load(o.data, o.cfg.vocab_size, (size_t)o.seq_len + 2, &ds, e) < 0)
        return -1;
    et_sampler smp = {ds.train, ds.n_train, o.seq_len, 0, o.seed};

    /* 3. n shards loaded from the checkpoint, trained in n threads */
    tp_group g;
    memset(&g, 0, sizeof g);
    g.n = n;
    pthread_barrier_init(&g.bar, NULL, (unsigned)n);
    worker w[MAX_TP];
    pthread_t th[MAX_TP];
    double *losses = et_xcalloc((size_t)o.steps * n, sizeof *losses);
    double *norms = et_xcalloc((size_t)o.steps * n, sizeof *norms);
    float *logits = et_xcalloc((size_t)o.batch * o.seq_len * o.cfg.vocab_size, sizeof *logits);
    int made = 0;
    for (int r = 0; r < n; r++) {
        gpt2_shard_spec sp = {0, o.cfg.n_layer - 1, 1, 1, r, n};
        memset(&w[r], 0, sizeof w[r]);
        w[r].sh = gpt2_shard_new(&o.cfg, &sp, e);
        if (!w[r].sh)
            goto out;
        made++;
        w[r].st = optim_state_new(w[r].sh);
        w[r].grads0 = et_xmalloc(w[r].sh->n_params * sizeof(float));
        if (ckpt_load(path, MPI_COMM_SELF, w[r].sh, NULL, NULL, e) < 0)
            goto out;
        w[r].ctx = (tp_ctx){&g, r};
        w[r].o = &o;
        w[r].smp = &smp;
        w[r].losses = losses + (size_t)r * o.steps;
        w[r].norms = norms + (size_t)r * o.steps;
        w[r].logits0 = r == 0 ? logits : NULL;
    }
    for (int r = 0; r < n; r++)
        pthread_create(&th[r], NULL, worker_train, &w[r]);
    for (int r = 0; r < n; r++)
        pthread_join(th[r], NULL);
    for (int r = 1; r < n; r++)
        for (int s = 0; s < o.steps; s++)
            if (losses[(size_t)r * o.steps + s] != losses[s]) {
                et_errf(e, ET_ERUNTIME, "TP rank %d computed loss %.9g at step %d, rank 0 %.9g", r,
                        losses[(size_t)r * o.steps + s], s, losses[s]);
                goto out;
            }

    /* 4. the results: c_out.h5, grads.h5 (shard views whose params are the
     * saved gradients), final.h5 (weights and moments) */
    snprintf(path, sizeof path, "%s/c_out.h5", o.dir);
    if (write_c_out(path, &o, losses, norms, logits, e) < 0)
        goto out;
    {
        gpt2_shard views[MAX_TP];
        const gpt2_shard *vp[MAX_TP], *shp[MAX_TP];
        const optim_state *stp[MAX_TP];
        unsigned char *masks[MAX_TP];
        for (int r = 0; r < n; r++) {
            views[r] = *w[r].sh;
            views[r].params = w[r].grads0;
            vp[r] = &views[r];
            shp[r] = w[r].sh;
            stp[r] = w[r].st;
            masks[r] = et_xmalloc((size_t)w[r].sh->n_tensors);
            ckpt_write_mask(w[r].sh, 0, masks[r]);
        }
        meta.step = o.steps;
        meta.data_position = (int64_t)o.steps * o.batch;
        snprintf(path, sizeof path, "%s/grads.h5", o.dir);
        ok = ckpt_save_shards(path, MPI_COMM_SELF, n, vp, NULL, NULL,
                              (const unsigned char *const *)masks, e) == 0;
        snprintf(path, sizeof path, "%s/final.h5", o.dir);
        ok = ok && ckpt_save_shards(path, MPI_COMM_SELF, n, shp, stp, &meta,
                                    (const unsigned char *const *)masks, e) == 0;
        for (int r = 0; r < n; r++)
            free(masks[r]);
        if (!ok)
            goto out;
    }
    printf("tool_parity: L%d C%d NH%d V%d T%d B%d tp%d: loss %.6f -> %.6f over %d steps\n", o.cfg.n_layer,
           o.cfg.n_embd, o.cfg.n_head, o.cfg.vocab_size, o.seq_len, o.batch, n, losses[0],
           losses[o.steps - 1], o.steps);
    rc = 0;
out:
    for (int r = 0; r < made; r++) {
        optim_state_free(w[r].st);
        free(w[r].grads0);
        gpt2_shard_free(w[r].sh);
    }
    pthread_barrier_destroy(&g.bar);
    free(losses);
    free(norms);
    free(logits);
    dataset_free(&ds);
    return rc;
}

/* tool_parity make-data: uniformly random tokens (splitmix64 of seed and
 * position) in edgetrain's dataset format. */
static int cmd_make_data(const opts *o, et_err *e)
{
    if (!o->out || o->cfg.vocab_size < 1 || o->n_train < 1 || o->n_val < 1)
        return et_errf(e, ET_EINPUT, "make-data needs --out, --vocab, --train and --val");
    size_t n = (size_t)(o->n_train + o->n_val);
    int32_t *tok = et_xmalloc(n * sizeof *tok);
    for (size_t i = 0; i < n; i++)
        tok[i] = (int32_t)(sampler_mix64(sampler_mix64(o->seed) ^ i) % (uint64_t)o->cfg.vocab_size);
    int rc = dataset_write(o->out, "byte", o->cfg.vocab_size, tok, (size_t)o->n_train,
                           tok + o->n_train, (size_t)o->n_val, e);
    free(tok);
    return rc;
}

int main(int argc, char **argv)
{
    et_err e;
    et_err_clear(&e);
    opts o;
    openblas_set_num_threads(1);
    const char *cmds[] = {"train", "make-data"};
    int (*fns[])(const opts *, et_err *) = {cmd_train, cmd_make_data};
    int k = 0;
    while (argc >= 2 && k < 2 && strcmp(argv[1], cmds[k]) != 0)
        k++;
    if (argc < 2 || k == 2) {
        fprintf(stderr, "usage: tool_parity train|make-data --option value ... (see tests/tool_parity.c)\n");
        return 2;
    }
    if (parse_opts(argc - 2, argv + 2, &o, &e) < 0)
        return fail(&e);
    int rc = fns[k](&o, &e);
    return rc < 0 ? fail(&e) : 0;
}
