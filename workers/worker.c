/*
 * worker — the MPI job: controller on rank 0, data plane on ranks 1..N
 * (see worker.h). Phases, each started by a broadcast from the controller:
 *
 *   STEP s   every worker runs its stage's op list (parallel/schedule.h) for
 *            the step's micro-batches, then the gradient exchanges (tied
 *            embedding, data parallel), the global norm, clipping and AdamW;
 *            the controller gathers one wk_report per rank.
 *   EVAL     replica 0 runs the validation windows forward through its
 *            pipeline; the clocks and link states are restored afterwards
 *            (evaluation is not part of time-to-accuracy).
 *   CKPT     every worker writes its slices of the plan-independent
 *            checkpoint collectively (workers/checkpoint.h).
 *   STOP / ABORT  leave the loop (exit 0 / 1).
 *
 * Clocks: with emulation clock virtual every worker's vc_clock advances by
 * the cost model's per-operation compute time on its own server and by the
 * link model on every message and collective (parallel/vcomm.h); each step
 * starts with every clock at the controller's emulated time, so the emulated
 * step time is the cost model's simulation of the same schedule with the same
 * links. With clock wall the same code measures real time.
 */
#include "worker.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "../common/et_fs.h"
#include "../model/gpt2.h"
#include "../model/optim.h"
#include "../orchestrator/cli.h"
#include "../orchestrator/costmodel.h"
#include "../orchestrator/plan.h"
#include "../parallel/schedule.h"
#include "../parallel/vcomm.h"
#include "../topology/config.h"
#include "checkpoint.h"
#include "dataset.h"
#include "metrics.h"
#include "sampler.h"
#include "summary.h"
#include "trainer.h"

enum { CMD_STEP = 1, CMD_EVAL, CMD_CKPT, CMD_STOP, CMD_ABORT };
enum { TAG_ACT = 1, TAG_GRAD = 2, TAG_EVAL = 3 };

/* Controller -> everyone, at the start of each phase. */
typedef struct wk_cmd {
    int cmd;
    int pad;
    int64_t step;
    int64_t data_position;   /* k of the step's first sequence */
    double t_start;          /* emulated time the step starts at */
    double wall_s, emulated_s;
} wk_cmd;

/* Every rank -> controller, at the end of each phase. */
typedef struct wk_report {
    int err;                 /* 0 or an et_err code */
    int has_loss;            /* 1 on TP rank 0 of each replica's last stage */
    double loss;             /* mean loss of its micro-batches (or eval loss sum) */
    double correct;          /* eval: tokens predicted right */
    double tokens;           /* eval: tokens evaluated */
    double clock;            /* emulated clock at the end of the phase */
    double compute_s;        /* this step: modelled (virtual) or measured (wall) compute */
    double wait_s, idle_s;   /* this step: communication wait, pipeline bubble */
    double bytes_sent;       /* this step */
    double grad_norm;
    int bad_mb;              /* first micro-batch with a non-finite loss, or -1 */
    char msg[400];
} wk_report;

/* One trace event (Chrome trace-event "X" phase). */
typedef struct wk_event {
    const char *name;
    int mb;
    double ts, dur;          /* seconds on the run's clock */
} wk_event;

typedef struct wk_state {
    const et_config *cfg;
    const et_plan *plan;
    int rank;
    plan_role role;
    int S, R, M, B, T, C;
    MPI_Comm workers, tp_comm, dp_comm, emb_comm;
    lm_link tp_link, dp_link, emb_link, all_link;
    lm_chan ch_act, ch_grad;         /* incoming channels */
    int act_src, grad_src;
    int act_dst[64], n_act_dst, grad_dst[64], n_grad_dst;
    gpt2_shard *sh;
    optim_state *opt;
    optim_config ocfg;
    gpt2_tp tp;
    int K;                           /* activation slots (micro-batches in flight) */
    gpt2_acts **acts;
    gpt2_acts *acts_rem;             /* eval remainder (replica 0 only) */
    float **xin, **dxout;            /* [K][B*T*C] received activations / gradients */
    int **tok, **tgt;                /* [K][B*T] */
    vc_send *act_send, *grad_send;   /* [K][n dst] */
    sched_op *ops;
    int n_ops;
    cm_stage_cost cost;
    vc_clock vc;
    et_dataset ds;
    et_sampler sampler;
    long eval_windows;
    int eval_rem;
    wk_event *ev;
    int n_ev, cap_ev;
    FILE *trace;
    /* Data-parallel gradient buckets: one per local block (reduced as soon as
     * the step's last backward has finished that block), plus the rest
     * (embeddings, ln_f) reduced after the backward. */
    size_t *bucket_lo, *bucket_hi;   /* [n_blocks] float offsets in sh->grads */
    size_t rest_lo[2], rest_hi[2];   /* the parameters outside the blocks */
    MPI_Request *bucket_req;         /* [n_blocks] */
    int buckets_ok;                  /* the block ranges are contiguous */
    int buckets_armed;               /* during the step's last BWD */
    int last_bwd;                    /* op index of the step's last BWD */
} wk_state;

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
    stop_requested = sig;
}

/* ---- small helpers ---------------------------------------------------- */

static void trace_event(wk_state *w, const char *name, int mb, double t0, double t1)
{
    if (!w->trace)
        return;
    if (w->n_ev == w->cap_ev)
        return; /* capacity is sized for one step; never grows in the hot loop */
    w->ev[w->n_ev++] = (wk_event){name, mb, t0, t1 - t0};
}

/* Flush the step's events to this rank's trace part (JSON objects, one per line). */
static void trace_flush(wk_state *w)
{
    if (!w->trace)
        return;
    for (int i = 0; i < w->n_ev; i++) {
        const wk_event *e = &w->ev[i];
        fprintf(w->trace,
                "{\"name\":\"%s\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                "\"args\":{\"mb\":%d}},\n",
                e->name, w->rank, e->ts * 1e6, e->dur * 1e6, e->mb);
    }
    fflush(w->trace);
    w->n_ev = 0;
}

/* Check a status across the world: every rank passes its et_err; returns the
 * worst code, and rank 0 prints the message of the lowest failing rank. */
static int world_status(et_err *e, int rank)
{
    int mine = e->code ? rank : 1 << 30, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == 1 << 30)
        return 0;
    int code = e->code;
    MPI_Bcast(&code, 1, MPI_INT, first, MPI_COMM_WORLD);
    if (first != 0) {
        if (rank == first)
            MPI_Send(e->msg, sizeof e->msg, MPI_CHAR, 0, 99, MPI_COMM_WORLD);
        if (rank == 0)
            MPI_Recv(e->msg, sizeof e->msg, MPI_CHAR, first, 99, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    if (rank == 0) {
        e->code = code;
        et_err_report(e);
    }
    return code;
}

/* Sleep-poll a request to completion (the controller never spins). */
static void wait_quietly(MPI_Request *req)
{
    int done = 0;
    struct timespec ts = {0, 200000}; /* 0.2 ms */
    for (;;) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        nanosleep(&ts, NULL);
        if (ts.tv_nsec < 5000000)
            ts.tv_nsec += 100000;
    }
}

static void tp_allreduce(void *ctx, float *buf, size_t n)
{
    wk_state *w = ctx;
    vc_allreduce_sum(&w->vc, buf, n, w->tp_comm, w->tp_link);
}

/* gpt2_tp.grads_ready: block `block` is final for this step; start its
 * data-parallel sum and nudge the earlier ones along. */
static void dp_grads_ready(void *ctx, int block)
{
    wk_state *w = ctx;
    if (!w->buckets_armed)
        return;
    size_t lo = w->bucket_lo[block], n = w->bucket_hi[block] - lo;
    MPI_Iallreduce(MPI_IN_PLACE, w->sh->grads + lo, (int)n, MPI_FLOAT, MPI_SUM, w->dp_comm,
                   &w->bucket_req[block]);
    int flag;
    MPI_Testall(w->sh->n_blocks, w->bucket_req, &flag, MPI_STATUSES_IGNORE);
}

/* Compute the per-block gradient ranges from the tensor descriptors; the
 * buckets are used only when each block's tensors are contiguous and the
 * blocks tile one range. */
static void setup_buckets(wk_state *w)
{
    gpt2_shard *sh = w->sh;
    int nb = sh->n_blocks;
    w->bucket_lo = et_xcalloc((size_t)(nb ? nb : 1), sizeof(size_t));
    w->bucket_hi = et_xcalloc((size_t)(nb ? nb : 1), sizeof(size_t));
    w->bucket_req = et_xcalloc((size_t)(nb ? nb : 1), sizeof(MPI_Request));
    for (int b = 0; b < nb; b++) {
        w->bucket_req[b] = MPI_REQUEST_NULL;
        w->bucket_lo[b] = SIZE_MAX;
    }
    w->buckets_ok = nb > 0;
    size_t *sum = et_xcalloc((size_t)(nb ? nb : 1), sizeof(size_t));
    for (int i = 0; i < sh->n_tensors; i++) {
        const gpt2_tensor *t = &sh->tensors[i];
        int layer;
        if (sscanf(t->name, "transformer/h/%d/", &layer) != 1)
            continue;
        int b = layer - sh->spec.layer_first;
        if (b < 0 || b >= nb) {
            w->buckets_ok = 0;
            continue;
        }
        if (t->offset < w->bucket_lo[b])
            w->bucket_lo[b] = t->offset;
        if (t->offset + t->numel > w->bucket_hi[b])
            w->bucket_hi[b] = t->offset + t->numel;
        sum[b] += t->numel;
    }
    for (int b = 0; b < nb; b++) {
        if (sum[b] != w->bucket_hi[b] - w->bucket_lo[b])
            w->buckets_ok = 0;
        if (b > 0 && w->bucket_lo[b] != w->bucket_hi[b - 1])
            w->buckets_ok = 0;
    }
    free(sum);
    if (w->buckets_ok) {
        w->rest_lo[0] = 0;
        w->rest_hi[0] = w->bucket_lo[0];
        w->rest_lo[1] = w->bucket_hi[nb - 1];
        w->rest_hi[1] = sh->n_params;
    }
}

static double wall(void)
{
    return MPI_Wtime();
}

/* ---- worker setup ------------------------------------------------------ */

static int worker_setup(wk_state *w, const char *out_dir, et_err *e)
{
    const et_config *cfg = w->cfg;
    const et_plan *p = w->plan;
    const et_training *t = &cfg->training;
    plan_role *ro = &w->role;
    plan_rank_role(p, w->rank, ro);
    w->S = p->n_stages;
    w->R = p->n_replicas;
    w->M = p->micro_batches;
    w->B = p->micro_batch;
    w->T = t->seq_len;
    w->C = cfg->model.n_embd;

    /* Communicators. Colours are unique per group; keys give the plan's order. */
    MPI_Comm_split(MPI_COMM_WORLD, ro->replica * w->S + ro->stage, ro->tp_index, &w->tp_comm);
    MPI_Comm_split(MPI_COMM_WORLD, ro->stage * 4096 + ro->tp_index, ro->replica, &w->dp_comm);
    int emb_peer = plan_embed_peer(p, w->rank);
    MPI_Comm_split(MPI_COMM_WORLD, emb_peer >= 0 ? ro->replica : MPI_UNDEFINED, ro->stage,
                   &w->emb_comm);

    /* Data: the first stage reads inputs, the last targets. No early return
     * before the broadcast below: every worker must reach it. */
    int data_ok = 1;
    if (ro->has_embed || ro->has_head) {
        if (dataset_load(t->dataset, cfg->model.vocab_size, (size_t)t->seq_len + 2, &w->ds, e) != 0) {
            data_ok = 0;
        } else {
            w->sampler = (et_sampler){w->ds.train, w->ds.n_train, t->seq_len,
                                      t->sampling == ET_SAMPLING_RANDOM, t->seed};
            long usable = t->eval_tokens;
            if ((size_t)usable > w->ds.n_val - 1)
                usable = (long)(w->ds.n_val - 1);
            w->eval_windows = usable / t->seq_len;
        }
    }
    /* Every eval participant needs the window count: worker 1 (replica 0,
     * stage 0, which has the data) tells everyone. */
    long ew = w->eval_windows;
    MPI_Bcast(&ew, 1, MPI_LONG, 0, w->workers);
    w->eval_windows = ew;
    if (!data_ok)
        return -1;

    const et_cluster *cl = &cfg->cluster;
    w->tp_link = cm_tp_link(p, cl, ro->replica, ro->stage);
    w->dp_link = cm_dp_link(p, cl, ro->stage);
    w->all_link = cm_all_link(p, cl);
    w->emb_link = w->S > 1 ? cm_embed_link(p, cl, ro->replica) : lm_link_ideal();
    w->act_src = plan_act_src(p, w->rank);
    w->grad_src = plan_grad_src(p, w->rank);
    w->n_act_dst = plan_act_dsts(p, w->rank, w->act_dst);
    w->n_grad_dst = plan_grad_dsts(p, w->rank, w->grad_dst);
    lm_chan_init(&w->ch_act, ro->stage > 0 ? cm_boundary_link(p, cl, ro->replica, ro->stage - 1)
                                           : lm_link_ideal());
    lm_chan_init(&w->ch_grad, ro->stage < w->S - 1 ? cm_boundary_link(p, cl, ro->replica, ro->stage)
                                                   : lm_link_ideal());

    /* The shard and its optimizer. */
    gpt2_shard_spec spec = {ro->layer_first, ro->layer_last, ro->has_embed, ro->has_head,
                            ro->tp_index, ro->tp};
    w->sh = gpt2_shard_new(&cfg->model, &spec, e);
    if (!w->sh)
        return -1;
    w->opt = optim_state_new(w->sh);
    trainer_optim_config(t, &w->ocfg);
    w->tp.allreduce = tp_allreduce;
    w->tp.ctx = w;
    setup_buckets(w);
    if (w->R > 1 && w->buckets_ok)
        w->tp.grads_ready = dp_grads_ready;

    /* The schedule this stage executes, and the costs its clock charges. */
    w->n_ops = sched_stage_len(ro->stage, w->S, w->M);
    w->ops = et_xcalloc((size_t)w->n_ops, sizeof *w->ops);
    sched_stage_ops(p->schedule, ro->stage, w->S, w->M, w->ops);
    for (int i = 0; i < w->n_ops; i++)
        if (w->ops[i].kind == SCHED_BWD)
            w->last_bwd = i;
    w->K = sched_max_in_flight(p->schedule, ro->stage, w->S, w->M);
    cm_model cm;
    cm_model_init(&cm, &cfg->model, w->B, w->T);
    cm_group g;
    cm_plan_group(p, cl, ro->replica, ro->stage, &g);
    cm_stage_cost_eval(&cm, ro->layer_last - ro->layer_first + 1, ro->has_embed, ro->has_head, w->S,
                       &g, &w->cost);

    /* Buffers: K activation slots, boundary buffers, token buffers, sends. */
    size_t NC = (size_t)w->B * w->T * w->C, N = (size_t)w->B * w->T;
    w->acts = et_xcalloc((size_t)w->K, sizeof *w->acts);
    w->xin = et_xcalloc((size_t)w->K, sizeof *w->xin);
    w->dxout = et_xcalloc((size_t)w->K, sizeof *w->dxout);
    w->tok = et_xcalloc((size_t)w->K, sizeof *w->tok);
    w->tgt = et_xcalloc((size_t)w->K, sizeof *w->tgt);
    for (int k = 0; k < w->K; k++) {
        w->acts[k] = gpt2_acts_new(w->sh, w->B, w->T);
        if (ro->stage > 0)
            w->xin[k] = et_amalloc(NC * sizeof(float));
        if (ro->stage < w->S - 1)
            w->dxout[k] = et_amalloc(NC * sizeof(float));
        w->tok[k] = et_xcalloc(N, sizeof(int));
        w->tgt[k] = et_xcalloc(N, sizeof(int));
    }
    int nd = w->n_act_dst > w->n_grad_dst ? w->n_act_dst : w->n_grad_dst;
    w->act_send = et_xcalloc((size_t)w->K * (nd ? nd : 1), sizeof(vc_send));
    w->grad_send = et_xcalloc((size_t)w->K * (nd ? nd : 1), sizeof(vc_send));

    w->eval_rem = (int)(w->eval_windows % w->B);
    if (ro->replica == 0 && w->eval_rem)
        w->acts_rem = gpt2_acts_new(w->sh, w->eval_rem, w->T);

    w->cap_ev = 4 * w->n_ops + 64;
    w->ev = et_xcalloc((size_t)w->cap_ev, sizeof *w->ev);
    if (out_dir) {
        char path[2048];
        snprintf(path, sizeof path, "%s/trace.rank%04d.json", out_dir, w->rank);
        w->trace = fopen(path, "w");
    }
    return 0;
}

static void worker_free(wk_state *w)
{
    for (int k = 0; k < w->K; k++) {
        gpt2_acts_free(w->acts[k]);
        et_afree(w->xin[k]);
        et_afree(w->dxout[k]);
        free(w->tok[k]);
        free(w->tgt[k]);
    }
    free(w->acts);
    free(w->xin);
    free(w->dxout);
    free(w->tok);
    free(w->tgt);
    free(w->act_send);
    free(w->grad_send);
    gpt2_acts_free(w->acts_rem);
    free(w->ops);
    free(w->ev);
    free(w->bucket_lo);
    free(w->bucket_hi);
    free(w->bucket_req);
    if (w->trace)
        fclose(w->trace);
    if (w->opt)
        optim_state_free(w->opt);
    gpt2_shard_free(w->sh);
    dataset_free(&w->ds);
    if (w->emb_comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->emb_comm);
    MPI_Comm_free(&w->tp_comm);
    MPI_Comm_free(&w->dp_comm);
}

/* ---- one training step ------------------------------------------------- */

static void worker_step(wk_state *w, const wk_cmd *cmd, wk_report *rep)
{
    const plan_role *ro = &w->role;
    size_t NC = (size_t)w->B * w->T * w->C;
    int first = ro->stage == 0, last = ro->stage == w->S - 1;
    int nd = w->n_act_dst > w->n_grad_dst ? w->n_act_dst : w->n_grad_dst;
    if (nd == 0)
        nd = 1;
    float scale = 1.0f / (float)(w->M * w->R);
    /* Sequence k of this replica's micro-batch mb. */
    uint64_t k0 = (uint64_t)cmd->data_position + (uint64_t)ro->replica * w->M * w->B;

    if (w->vc.virtual_mode)
        w->vc.t = cmd->t_start;
    double wait0 = w->vc.wait_s, idle0 = w->vc.idle_s, bytes0 = w->vc.bytes_sent;
    double compute = 0, loss = 0;
    rep->bad_mb = -1;
    gpt2_shard_zero_grad(w->sh);

    for (int i = 0; i < w->n_ops; i++) {
        sched_op op = w->ops[i];
        int slot = op.mb % w->K;
        double t0 = vc_now(&w->vc), c0 = wall(), wait_op;
        switch (op.kind) {
        case SCHED_FWD:
            for (int d = 0; d < w->n_act_dst; d++)
                vc_send_wait(&w->act_send[slot * nd + d]);
            if (!w->vc.virtual_mode)
                w->vc.wait_s += wall() - c0; /* waiting for a send to drain */
            c0 = wall();
            wait_op = w->vc.wait_s;
            if (first || last)
                sampler_fill(&w->sampler, k0 + (uint64_t)op.mb * w->B, w->B, w->tok[slot],
                             w->tgt[slot]);
            vc_compute(&w->vc, w->cost.fwd_compute_s);
            {
                float l = gpt2_forward(w->sh, w->acts[slot], w->tok[slot], w->xin[slot],
                                       w->tgt[slot], &w->tp);
                if (last) {
                    loss += l;
                    if (!isfinite(l) && rep->bad_mb < 0)
                        rep->bad_mb = op.mb;
                }
            }
            /* wall mode: the op's time less its TP all-reduce waits */
            compute += w->vc.virtual_mode ? w->cost.fwd_compute_s
                                          : wall() - c0 - (w->vc.wait_s - wait_op);
            trace_event(w, "forward", op.mb, t0, vc_now(&w->vc));
            break;
        case SCHED_BWD:
            for (int d = 0; d < w->n_grad_dst; d++)
                vc_send_wait(&w->grad_send[slot * nd + d]);
            if (!w->vc.virtual_mode)
                w->vc.wait_s += wall() - c0;
            c0 = wall();
            wait_op = w->vc.wait_s;
            vc_compute(&w->vc, w->cost.bwd_compute_s);
            w->buckets_armed = i == w->last_bwd && w->tp.grads_ready != NULL;
            gpt2_backward(w->sh, w->acts[slot], w->tok[slot], w->dxout[slot], scale, &w->tp);
            w->buckets_armed = 0;
            compute += w->vc.virtual_mode ? w->cost.bwd_compute_s
                                          : wall() - c0 - (w->vc.wait_s - wait_op);
            trace_event(w, "backward", op.mb, t0, vc_now(&w->vc));
            break;
        case SCHED_RECV_ACT:
            vc_recv(&w->vc, &w->ch_act, w->xin[slot], NC, w->act_src, TAG_ACT, MPI_COMM_WORLD);
            trace_event(w, "recv act", op.mb, t0, vc_now(&w->vc));
            break;
        case SCHED_SEND_ACT:
            for (int d = 0; d < w->n_act_dst; d++)
                vc_isend(&w->vc, &w->act_send[slot * nd + d], gpt2_acts_out(w->acts[slot]), NC,
                         w->act_dst[d], TAG_ACT, MPI_COMM_WORLD);
            break;
        case SCHED_RECV_GRAD:
            vc_recv(&w->vc, &w->ch_grad, w->dxout[slot], NC, w->grad_src, TAG_GRAD, MPI_COMM_WORLD);
            trace_event(w, "recv grad", op.mb, t0, vc_now(&w->vc));
            break;
        case SCHED_SEND_GRAD:
            for (int d = 0; d < w->n_grad_dst; d++)
                vc_isend(&w->vc, &w->grad_send[slot * nd + d], gpt2_acts_dinp(w->acts[slot]), NC,
                         w->grad_dst[d], TAG_GRAD, MPI_COMM_WORLD);
            break;
        }
    }
    for (int k = 0; k < w->K * nd; k++) {
        vc_send_wait(&w->act_send[k]);
        vc_send_wait(&w->grad_send[k]);
    }

    /* Tied embedding: the first and last stage sum their wte gradients,
     * then each hands the sum to its own TP group. */
    double t0 = vc_now(&w->vc);
    if (w->S > 1 && (first || last)) {
        size_t n_wte = (size_t)w->cfg->model.vocab_size * w->C;
        float *g_wte = w->sh->g_wte;
        if (w->emb_comm != MPI_COMM_NULL)
            vc_allreduce_sum(&w->vc, g_wte, n_wte, w->emb_comm, w->emb_link);
        vc_bcast(&w->vc, g_wte, n_wte, 0, w->tp_comm, w->tp_link);
    }
    /* Data parallel: sum every gradient over the replicas (each already
     * carries the 1/(M*R) factor). The blocks' sums were started during the
     * last backward (dp_grads_ready); the rest goes now. The clock is charged
     * one ring all-reduce of every gradient, as the cost model does. */
    if (w->R > 1 && w->tp.grads_ready) {
        double wt = wall();
        for (int k = 0; k < 2; k++)
            if (w->rest_hi[k] > w->rest_lo[k])
                MPI_Allreduce(MPI_IN_PLACE, w->sh->grads + w->rest_lo[k],
                              (int)(w->rest_hi[k] - w->rest_lo[k]), MPI_FLOAT, MPI_SUM, w->dp_comm);
        MPI_Waitall(w->sh->n_blocks, w->bucket_req, MPI_STATUSES_IGNORE);
        vc_charge_allreduce(&w->vc, w->dp_comm, w->dp_link, (double)w->sh->n_params * sizeof(float),
                            wall() - wt);
    } else if (w->R > 1) {
        vc_allreduce_sum(&w->vc, w->sh->grads, w->sh->n_params, w->dp_comm, w->dp_link);
    }
    if (w->S > 1 || w->R > 1)
        trace_event(w, "grad all-reduce", -1, t0, vc_now(&w->vc));

    /* Global norm: each distinct parameter counted once (replica 0 only,
     * replicated TP tensors on TP rank 0, the tied wte on the first stage). */
    double sq = ro->replica == 0 ? optim_grad_sqsum(w->sh, ro->tp_index == 0, last && !first) : 0.0;
    double norm = sqrt(vc_allreduce_sum_d(&w->vc, sq, w->workers, w->all_link));
    t0 = vc_now(&w->vc);
    double c0 = wall();
    vc_compute(&w->vc, w->cost.opt_s);
    optim_step(w->sh, w->opt, &w->ocfg, (long)cmd->step, optim_clip_scale(&w->ocfg, norm));
    compute += w->vc.virtual_mode ? w->cost.opt_s : wall() - c0;
    trace_event(w, "optimizer", -1, t0, vc_now(&w->vc));
    trace_flush(w);

    rep->has_loss = last && ro->tp_index == 0;
    rep->loss = loss / w->M;
    rep->grad_norm = norm;
    rep->clock = vc_now(&w->vc);
    rep->compute_s = compute;
    rep->wait_s = w->vc.wait_s - wait0;
    rep->idle_s = w->vc.idle_s - idle0;
    rep->bytes_sent = w->vc.bytes_sent - bytes0;
}

/* ---- evaluation (replica 0, forward only) ------------------------------ */

static void worker_eval(wk_state *w, wk_report *rep)
{
    const plan_role *ro = &w->role;
    if (ro->replica != 0)
        return;
    int first = ro->stage == 0, last = ro->stage == w->S - 1;
    vc_clock saved = w->vc;
    lm_chan sa = w->ch_act;
    long full = w->eval_windows / w->B;
    double loss_sum = 0, correct = 0;
    for (long b = 0; b <= full; b++) {
        int n = b < full ? w->B : w->eval_rem;
        if (n == 0)
            break;
        gpt2_acts *a = b < full ? w->acts[0] : w->acts_rem;
        size_t NC = (size_t)n * w->T * w->C;
        if (first || last)
            sampler_fill_windows(w->ds.val, w->T, b * w->B, n, w->tok[0], w->tgt[0]);
        if (!first)
            vc_recv(&w->vc, &w->ch_act, w->xin[0], NC, w->act_src, TAG_EVAL, MPI_COMM_WORLD);
        float l = gpt2_forward(w->sh, a, w->tok[0], w->xin[0], w->tgt[0], &w->tp);
        if (last) {
            loss_sum += (double)l * n * w->T;
            correct += (double)gpt2_acts_correct(a);
        } else {
            for (int d = 0; d < w->n_act_dst; d++) {
                vc_send s;
                vc_isend(&w->vc, &s, gpt2_acts_out(a), NC, w->act_dst[d], TAG_EVAL, MPI_COMM_WORLD);
                vc_send_wait(&s);
            }
        }
    }
    w->vc = saved;
    w->ch_act = sa;
    rep->has_loss = last && ro->tp_index == 0;
    rep->loss = loss_sum;
    rep->correct = correct;
    rep->tokens = (double)w->eval_windows * w->T;
}

/* ---- the worker's command loop ---------------------------------------- */

static int worker_loop(wk_state *w)
{
    wk_report rep;
    for (;;) {
        wk_cmd cmd;
        MPI_Bcast(&cmd, sizeof cmd, MPI_BYTE, 0, MPI_COMM_WORLD);
        memset(&rep, 0, sizeof rep);
        switch (cmd.cmd) {
        case CMD_STEP:
            worker_step(w, &cmd, &rep);
            break;
        case CMD_EVAL:
            worker_eval(w, &rep);
            break;
        case CMD_CKPT: {
            et_err e;
            et_err_clear(&e);
            ckpt_meta meta = {0};
            meta.step = cmd.step;
            meta.data_position = cmd.data_position;
            meta.seed = w->cfg->training.seed;
            meta.wall_s = cmd.wall_s;
            meta.emulated_s = cmd.emulated_s;
            unsigned char *mask = et_xcalloc((size_t)w->sh->n_tensors, 1);
            ckpt_write_mask(w->sh, w->role.replica, mask);
            if (ckpt_save(w->cfg->training.checkpoint_path, w->workers, w->sh, w->opt, &meta, mask,
                          &e) != 0) {
                rep.err = e.code;
                size_t n = strlen(e.msg);
                if (n >= sizeof rep.msg)
                    n = sizeof rep.msg - 1;
                memcpy(rep.msg, e.msg, n);
                rep.msg[n] = '\0';
            }
            free(mask);
            break;
        }
        case CMD_STOP:
            return 0;
        default:
            return 1;
        }
        /* The controller polls this gather without spinning, so it is the
         * non-blocking variant on every rank (MPI requires the same kind). */
        MPI_Request req;
        MPI_Igather(&rep, sizeof rep, MPI_BYTE, NULL, 0, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    }
}

/* ---- the controller ---------------------------------------------------- */

typedef struct ctl_state {
    const et_config *cfg;
    const et_plan *plan;
    int size;
    wk_report *reps;
    const char *out_dir;
    int progress;
    int bar;                  /* `run`'s stdout is a terminal: progress bar and ETA */
} ctl_state;

static void ctl_bcast(wk_cmd *cmd)
{
    MPI_Bcast(cmd, sizeof *cmd, MPI_BYTE, 0, MPI_COMM_WORLD);
}

static void ctl_gather(ctl_state *c)
{
    wk_report mine;
    memset(&mine, 0, sizeof mine);
    MPI_Request req;
    MPI_Igather(&mine, sizeof mine, MPI_BYTE, c->reps, sizeof mine, MPI_BYTE, 0, MPI_COMM_WORLD,
                &req);
    wait_quietly(&req);
}

/* Describe a rank for error messages: "rank 3 (server jetson-1, stage 1, layers 4-7)". */
static void rank_desc(const ctl_state *c, int rank, char *buf, size_t len)
{
    plan_role ro;
    plan_rank_role(c->plan, rank, &ro);
    snprintf(buf, len, "rank %d (server %s, replica %d, stage %d, layers %d-%d)", rank,
             c->cfg->cluster.servers[ro.server].name, ro.replica, ro.stage, ro.layer_first,
             ro.layer_last);
}

/* Merge the ranks' trace parts into OUT/trace.json (Chrome trace events). */
static void merge_trace(const ctl_state *c)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/trace.json", c->out_dir);
    FILE *out = fopen(path, "w");
    if (!out)
        return;
    fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", out);
    for (int r = 1; r < c->size; r++) {
        char desc[256];
        rank_desc(c, r, desc, sizeof desc);
        fprintf(out, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"args\":{\"name\":\"%s\"}},\n",
                r, desc);
        snprintf(path, sizeof path, "%s/trace.rank%04d.json", c->out_dir, r);
        FILE *in = fopen(path, "r");
        if (!in)
            continue;
        char line[512];
        while (fgets(line, sizeof line, in))
            fputs(line, out);
        fclose(in);
        remove(path);
    }
    fprintf(out, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"%s\"}}\n]}\n",
            c->cfg->name);
    fclose(out);
}

static int controller_loop(ctl_state *c, const ckpt_meta *start_meta)
{
    const et_training *t = &c->cfg->training;
    const et_plan *p = c->plan;
    et_metrics_file mf = {0};
    et_err e;
    et_err_clear(&e);
    int resumed = start_meta->step > 0;
    if (metrics_open(&mf, c->out_dir, resumed, &e) != 0) {
        et_err_report(&e);
        wk_cmd stop = {.cmd = CMD_ABORT};
        ctl_bcast(&stop);
        return 1;
    }
    /* Per-rank, per-step breakdown: where each step's time went on each rank. */
    char rpath[2048];
    snprintf(rpath, sizeof rpath, "%s/ranks.csv", c->out_dir);
    int rexists = resumed && access(rpath, F_OK) == 0;
    FILE *rcsv = fopen(rpath, rexists ? "a" : "w");
    if (rcsv && !rexists)
        fputs("step,rank,server,stage,compute_s,comm_wait_s,bubble_s,bytes_sent,clock_s\n", rcsv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    optim_config ocfg;
    trainer_optim_config(t, &ocfg);
    double w_origin = wall() - start_meta->wall_s;
    double emulated = start_meta->emulated_s;
    uint64_t k = (uint64_t)start_meta->data_position;
    long tokens_per_step = (long)t->global_batch * t->seq_len;
    int rc = 0, reached = 0;
    long s;
    double tta_wall = NAN, tta_emu = NAN, last_vl = NAN, last_va = NAN;
    long steps_to_target = -1;
    double sum_step_emu = 0, sum_step_wall = 0;
    long n_steps = 0;
    double *busy = et_xcalloc((size_t)c->size, sizeof(double));
    double *waits = et_xcalloc((size_t)c->size, sizeof(double));
    double *idles = et_xcalloc((size_t)c->size, sizeof(double));
    double *bytes = et_xcalloc((size_t)c->size, sizeof(double));

    for (s = (long)start_meta->step; s < t->max_steps; s++) {
        double w0 = wall();
        wk_cmd cmd = {.cmd = CMD_STEP, .step = s, .data_position = (int64_t)k, .t_start = emulated};
        ctl_bcast(&cmd);
        ctl_gather(c);
        k += (uint64_t)t->global_batch;
        double w1 = wall();
        double end = emulated, loss = 0, gnorm = 0;
        int n_loss = 0, bad_rank = -1, bad_mb = -1;
        for (int r = 1; r < c->size; r++) {
            wk_report *rp = &c->reps[r];
            if (rp->clock > end)
                end = rp->clock;
            if (rp->has_loss) {
                loss += rp->loss;
                n_loss++;
                if (rp->bad_mb >= 0 && bad_rank < 0) {
                    bad_rank = r;
                    bad_mb = rp->bad_mb;
                }
            }
            gnorm = rp->grad_norm;
            if (rcsv) {
                plan_role ro;
                plan_rank_role(p, r, &ro);
                fprintf(rcsv, "%ld,%d,%s,%d,%.6g,%.6g,%.6g,%.0f,%.6f\n", s, r,
                        c->cfg->cluster.servers[ro.server].name, ro.stage, rp->compute_s,
                        rp->wait_s, rp->idle_s, rp->bytes_sent, rp->clock);
            }
            busy[r] += rp->compute_s;
            waits[r] += rp->wait_s;
            idles[r] += rp->idle_s;
            bytes[r] += rp->bytes_sent;
        }
        loss /= n_loss ? n_loss : 1;
        double step_emu = end - emulated;
        emulated = end;
        et_step_metrics m = {
            .step = s, .wall_s = w1 - w_origin, .emulated_s = emulated,
            .lr = optim_lr_at(&ocfg, s),
            .train_loss = loss, .val_loss = NAN, .val_accuracy = NAN,
            .tokens_per_s = tokens_per_step / (w1 - w0), .grad_norm = gnorm,
            .step_wall_s = w1 - w0, .step_emulated_s = step_emu,
        };
        n_steps++;
        sum_step_emu += step_emu;
        sum_step_wall += w1 - w0;
        if (bad_rank >= 0 || !isfinite(loss)) {
            char desc[256] = "the last stage";
            if (bad_rank >= 0)
                rank_desc(c, bad_rank, desc, sizeof desc);
            fprintf(stderr,
                    "edgetrain: non-finite loss at step %ld (micro-batch %d) on %s: lower "
                    "training.lr or check the data\n",
                    s, bad_mb, desc);
            metrics_write(&mf, &m);
            rc = 1;
            break;
        }
        int met = 0;
        if (trainer_is_eval_step(t, s) || stop_requested) {
            wk_cmd ev = {.cmd = CMD_EVAL, .step = s};
            ctl_bcast(&ev);
            ctl_gather(c);
            double ls = 0, cor = 0, tok = 0;
            for (int r = 1; r < c->size; r++)
                if (c->reps[r].has_loss) {
                    ls += c->reps[r].loss;
                    cor += c->reps[r].correct;
                    tok += c->reps[r].tokens;
                }
            m.val_loss = tok > 0 ? ls / tok : NAN;
            m.val_accuracy = tok > 0 ? cor / tok : NAN;
            last_vl = m.val_loss;
            last_va = m.val_accuracy;
            met = trainer_target_met(t, m.val_loss, m.val_accuracy);
        }
        metrics_write(&mf, &m);
        if (c->progress) {
            if (c->bar) {
                /* On a terminal: a bar over max_steps and the wall-clock ETA
                 * at this run's mean step time (evaluation included). */
                double frac = (double)(s + 1) / t->max_steps;
                double per = (m.wall_s - start_meta->wall_s) / (double)n_steps;
                long eta = (long)(per * (double)(t->max_steps - s - 1) + 0.5);
                char bar[21];
                int fill = (int)(frac * 20 + 0.5);
                for (int i = 0; i < 20; i++)
                    bar[i] = i < fill ? '#' : '.';
                bar[20] = '\0';
                printf("[%s] %3.0f%% ETA %ld:%02ld  ", bar, 100 * frac, eta / 60, eta % 60);
            }
            printf("step %5ld/%ld  loss %.4f  lr %.3g  %8.0f tok/s  step %6.1f ms wall %8.3f s emulated",
                   s, t->max_steps, loss, m.lr, m.tokens_per_s, m.step_wall_s * 1e3, step_emu);
            if (!isnan(m.val_loss))
                printf("  val_loss %.4f  val_acc %.4f", m.val_loss, m.val_accuracy);
            printf("  | wall %.1fs  emulated %.1fs\n", m.wall_s, m.emulated_s);
            fflush(stdout);
        }
        if (met && !reached) {
            reached = 1;
            steps_to_target = s + 1;
            tta_wall = m.wall_s;
            tta_emu = m.emulated_s;
        }
        int last = met || s == t->max_steps - 1 || stop_requested;
        if (trainer_is_ckpt_step(t, s, last)) {
            wk_cmd ck = {.cmd = CMD_CKPT, .step = s + 1, .data_position = (int64_t)k,
                         .wall_s = wall() - w_origin, .emulated_s = emulated};
            ctl_bcast(&ck);
            ctl_gather(c);
            for (int r = 1; r < c->size; r++)
                if (c->reps[r].err) {
                    fprintf(stderr, "edgetrain: %s\n", c->reps[r].msg);
                    rc = 1;
                    break;
                }
            if (rc)
                break;
        }
        if (last) {
            s++;
            break;
        }
    }
    wk_cmd stop = {.cmd = rc ? CMD_ABORT : CMD_STOP};
    ctl_bcast(&stop);
    metrics_close(&mf);
    if (rcsv)
        fclose(rcsv);
    merge_trace(c);

    /* The run's summary, for `edgetrain run`'s report. */
    run_summary *sm = et_xmalloc(sizeof *sm);
    summary_init(sm);
    snprintf(sm->status, sizeof sm->status, "%s", rc ? "failed" : stop_requested ? "interrupted" : "ok");
    snprintf(sm->clock, sizeof sm->clock, "%s", c->cfg->clock == ET_CLOCK_VIRTUAL ? "virtual" : "wall");
    sm->steps = s;
    sm->steps_this_run = n_steps;
    sm->reached = reached;
    sm->steps_to_target = steps_to_target;
    sm->tta_wall_s = tta_wall;
    sm->tta_emulated_s = tta_emu;
    sm->final_val_loss = last_vl;
    sm->final_val_accuracy = last_va;
    sm->wall_s = wall() - w_origin;
    sm->emulated_s = emulated;
    sm->mean_step_wall_s = n_steps ? sum_step_wall / n_steps : NAN;
    sm->mean_step_emulated_s = n_steps ? sum_step_emu / n_steps : NAN;
    {
        /* The cost model's prediction for this very plan (a hand-written plan
         * file need not carry one). */
        et_plan *pc = plan_clone(p);
        cm_model cm;
        cm_model_init(&cm, &c->cfg->model, pc->micro_batch, t->seq_len);
        sm->predicted_step_s = cm_evaluate(&cm, &c->cfg->cluster, pc);
        plan_free(pc);
    }
    sm->tokens_per_step = tokens_per_step;
    for (int r = 1; r < c->size && sm->n_ranks < SUMMARY_MAX_RANKS; r++) {
        plan_role ro;
        plan_rank_role(p, r, &ro);
        run_rank_summary *rs = &sm->rank[sm->n_ranks++];
        rs->rank = r;
        snprintf(rs->server, sizeof rs->server, "%s", c->cfg->cluster.servers[ro.server].name);
        rs->stage = ro.stage;
        rs->busy_s = busy[r];
        rs->wait_s = waits[r];
        rs->idle_s = idles[r];
        rs->bytes = bytes[r];
    }
    if (summary_write(c->out_dir, sm, &e) != 0)
        et_err_report(&e);
    free(sm);
    free(busy);
    free(waits);
    free(idles);
    free(bytes);
    return rc ? rc : 0;
}

/* ---- entry -------------------------------------------------------------- */

static void worker_help(void)
{
    printf("usage: mpirun -np N edgetrain worker CONFIG --plan PLAN [--out DIR] [--resume] [--quiet]\n"
           "                                    [--clock wall|virtual]\n"
           "\n"
           "One rank of a training job: rank 0 is the controller, ranks 1..N-1 the workers of\n"
           "the plan (N = 1 + the plan's workers). DIR (default .) receives metrics.csv,\n"
           "trace.json and summary.txt. --resume continues from training.checkpoint.path.\n"
           "--clock overrides the config's emulation.clock; --progress-bar adds a bar and\n"
           "the ETA to each step line (what `run` asks for when its output is a terminal).\n");
}

int cmd_worker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plan", required_argument, 0, 'p'}, {"out", required_argument, 0, 'o'},
        {"resume", no_argument, 0, 'r'},     {"quiet", no_argument, 0, 'q'},
        {"clock", required_argument, 0, 'c'},
        {"progress-bar", no_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
    };
    const char *plan_path = NULL, *out_dir = ".";
    int resume = 0, quiet = 0, clock = -1, bar = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': plan_path = optarg; break;
        case 'o': out_dir = optarg; break;
        case 'r': resume = 1; break;
        case 'q': quiet = 1; break;
        case 'b': bar = 1; break;
        case 'c':
            if (!strcmp(optarg, "wall")) clock = ET_CLOCK_WALL;
            else if (!strcmp(optarg, "virtual")) clock = ET_CLOCK_VIRTUAL;
            else return cli_usage_error("worker", "--clock is wall or virtual, got '%s'", optarg);
            break;
        case 'h': worker_help(); return 0;
        default: return cli_usage_error("worker", "unknown option");
        }
    }
    if (argc - optind != 1 || !plan_path)
        return cli_usage_error("worker", "needs CONFIG and --plan PLAN");
    const char *config_path = argv[optind];

    /* Every rank writes into the run directory (trace parts); make it on each
     * host. */
    et_mkdirs(out_dir);
    MPI_Init(NULL, NULL);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (!getenv("OPENBLAS_NUM_THREADS"))
        openblas_set_num_threads(1);
    /* Only the controller reacts to a stop request; `run` sends SIGUSR1 via mpirun. */
    if (rank != 0)
        signal(SIGUSR1, SIG_IGN);

    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(config_path, &e);
    if (cfg && clock >= 0)
        cfg->clock = clock;
    /* The checkpoint's directory, made on every host (idempotent). */
    if (cfg && cfg->training.checkpoint_path[0])
        et_mkdirs_parent(cfg->training.checkpoint_path);
    et_plan *plan = cfg ? plan_load(plan_path, cfg, &e) : NULL;
    if (plan && size != plan_n_ranks(plan))
        et_errf(&e, ET_EINPUT,
                "%s: the plan needs %d MPI ranks (1 controller + %d worker%s), mpirun started %d "
                "(use mpirun -np %d)",
                plan_path, plan_n_ranks(plan), plan_n_workers(plan),
                plan_n_workers(plan) == 1 ? "" : "s", size, plan_n_ranks(plan));
    int code = world_status(&e, rank);
    if (code) {
        plan_free(plan);
        et_config_free(cfg);
        MPI_Finalize();
        return code;
    }

    MPI_Comm workers;
    MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? 0 : 1, rank, &workers);
    wk_state w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    w.plan = plan;
    w.rank = rank;
    w.workers = workers;
    w.emb_comm = MPI_COMM_NULL;
    ckpt_meta meta = {0};
    if (rank != 0) {
        worker_setup(&w, out_dir, &e);
    } else {
        /* The controller takes part in the workers' communicator splits. */
        MPI_Comm_split(MPI_COMM_WORLD, MPI_UNDEFINED, 0, &w.tp_comm);
        MPI_Comm_split(MPI_COMM_WORLD, MPI_UNDEFINED, 0, &w.dp_comm);
        MPI_Comm_split(MPI_COMM_WORLD, MPI_UNDEFINED, 0, &w.emb_comm);
    }
    code = world_status(&e, rank);
    if (!code && rank != 0) {
        {
            vc_clock_init(&w.vc, cfg->clock == ET_CLOCK_VIRTUAL, 0);
            const et_training *t = &cfg->training;
            if (resume) {
                if (!t->checkpoint_path[0])
                    et_errf(&e, ET_EINPUT, "%s: --resume needs training.checkpoint.path", config_path);
                else
                    ckpt_load(t->checkpoint_path, workers, w.sh, w.opt, &meta, &e);
            } else if (t->init[0]) {
                ckpt_load(t->init, workers, w.sh, NULL, NULL, &e);
            } else {
                gpt2_shard_init_random(w.sh, t->seed);
            }
        }
    }
    if (!code)
        code = world_status(&e, rank);
    int rc = code;
    if (!code) {
        /* The controller learns where the run stands from worker rank 1. */
        MPI_Bcast(&meta, sizeof meta, MPI_BYTE, 1, MPI_COMM_WORLD);
        if (rank == 0) {
            ctl_state cs = {cfg, plan, size, et_xcalloc((size_t)size, sizeof(wk_report)), out_dir,
                            !quiet, bar};
            rc = controller_loop(&cs, &meta);
            free(cs.reps);
        } else {
            rc = worker_loop(&w);
        }
    }
    if (rank != 0)
        worker_free(&w);
    MPI_Comm_free(&workers);
    plan_free(plan);
    et_config_free(cfg);
    MPI_Finalize();
    return rc;
}
