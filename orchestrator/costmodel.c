/*
 * costmodel — FLOPs, bytes, memory and predicted step time of a plan. Every
 * formula is documented in costmodel.h; this file only computes them.
 */
#include "costmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ formulas */

/* 24NC^2 + 4BT^2C: the six matmuls of a block at TP degree 1. */
double cm_block_fwd_flops(const gpt2_config *g, int B, int T)
{
    double N = (double)B * T, C = g->n_embd;
    return 24.0 * N * C * C + 4.0 * (double)B * T * T * C;
}

/* Backward of each matmul: gradient w.r.t. its input and its weight. */
double cm_block_bwd_flops(const gpt2_config *g, int B, int T)
{
    return 2.0 * cm_block_fwd_flops(g, B, T);
}

/* 12C^2 + 13C: ln1 2C, c_attn 3C^2+3C, attn c_proj C^2+C, ln2 2C,
 * c_fc 4C^2+4C, mlp c_proj 4C^2+C. */
uint64_t cm_block_params(const gpt2_config *g)
{
    uint64_t C = (uint64_t)g->n_embd;
    return 12 * C * C + 13 * C;
}

/* Sharded: c_attn w+b, attn c_proj w, c_fc w+b, mlp c_proj w = 12C^2 + 7C
 * split t ways; replicated: 2 LayerNorms (4C) and 2 row-parallel biases (2C). */
uint64_t cm_block_params_local(const gpt2_config *g, int tp)
{
    uint64_t C = (uint64_t)g->n_embd;
    return (12 * C * C + 7 * C) / (uint64_t)tp + 6 * C;
}

/* VC + PC + L(12C^2 + 13C) + 2C, the head tied to wte. */
uint64_t cm_model_params(const gpt2_config *g)
{
    uint64_t C = (uint64_t)g->n_embd, V = (uint64_t)g->vocab_size, P = (uint64_t)g->block_size;
    return V * C + P * C + (uint64_t)g->n_layer * cm_block_params(g) + 2 * C;
}

/* Precompute the per-block and per-micro-batch quantities. */
void cm_model_init(cm_model *m, const gpt2_config *g, int micro_batch, int seq_len)
{
    memset(m, 0, sizeof *m);
    m->g = *g;
    m->B = micro_batch;
    m->T = seq_len;
    double N = (double)micro_batch * seq_len, C = g->n_embd, V = g->vocab_size;
    m->block_fwd_flops = cm_block_fwd_flops(g, micro_batch, seq_len);
    m->block_bwd_flops = cm_block_bwd_flops(g, micro_batch, seq_len);
    m->head_fwd_flops = 2.0 * N * C * V;
    m->head_bwd_flops = 4.0 * N * C * V;
    m->boundary_bytes = 4.0 * N * C;
    m->tp_bytes = 4.0 * N * C;
    m->embed_grad_bytes = 4.0 * V * C;
}

/* Blocks, plus wte+wpe on the first stage, plus ln_f and (when it is a
 * different stage) the tied wte copy on the last. */
uint64_t cm_stage_params(const cm_model *m, int n_layers, int embed, int head, int tp, int S)
{
    const gpt2_config *g = &m->g;
    uint64_t C = (uint64_t)g->n_embd, V = (uint64_t)g->vocab_size, P = (uint64_t)g->block_size;
    uint64_t n = (uint64_t)n_layers * cm_block_params_local(g, tp);
    if (embed)
        n += V * C + P * C;
    if (head)
        n += 2 * C + (S > 1 || !embed ? V * C : 0);
    return n;
}

/* Floats kept per block and micro-batch (list in costmodel.h) x 4 bytes. */
uint64_t cm_block_act_bytes(const cm_model *m, int tp)
{
    uint64_t N = (uint64_t)m->B * (uint64_t)m->T, C = (uint64_t)m->g.n_embd;
    uint64_t Cl = C / (uint64_t)tp, Fl = 4 * C / (uint64_t)tp;
    uint64_t NHl = (uint64_t)m->g.n_head / (uint64_t)tp, T = (uint64_t)m->T;
    uint64_t floats = N * (4 * C + 4 + 4 * Cl + 2 * Fl) + (uint64_t)m->B * NHl * T * T;
    return 4 * floats;
}

/* ln_f output and statistics, logits/probabilities. */
uint64_t cm_head_act_bytes(const cm_model *m)
{
    uint64_t N = (uint64_t)m->B * (uint64_t)m->T, C = (uint64_t)m->g.n_embd;
    return 4 * (N * C + 2 * N + N * (uint64_t)m->g.vocab_size);
}

/* 16 B/param + in-flight activations + workspace (costmodel.h). */
uint64_t cm_stage_memory(const cm_model *m, int n_layers, int embed, int head, int tp, int S,
                         int in_flight)
{
    uint64_t N = (uint64_t)m->B * (uint64_t)m->T, C = (uint64_t)m->g.n_embd;
    uint64_t block = cm_block_act_bytes(m, tp);
    uint64_t act = 4 * N * C + (uint64_t)n_layers * block + (head ? cm_head_act_bytes(m) : 0);
    uint64_t work = (n_layers > 0 ? block : 0) + 16 * N * C + CM_RUNTIME_BYTES
                    + (head ? 4 * N * (uint64_t)m->g.vocab_size : 0);
    return 16 * cm_stage_params(m, n_layers, embed, head, tp, S) + act * (uint64_t)in_flight + work;
}

double cm_mem_bw(double gflops)
{
    return gflops * 1e9 / CM_FLOP_PER_BYTE;
}

lm_link cm_link(et_link l)
{
    lm_link r = {l.bandwidth, l.latency};
    return r;
}

/* Arithmetic at the group's slowest member, block matmuls split t ways,
 * head replicated; TP all-reduces: two per block each way. */
void cm_stage_cost_eval(const cm_model *m, int n_layers, int embed, int head, int S,
                        const cm_group *g, cm_stage_cost *out)
{
    double rate = g->gflops * 1e9;
    double fwd = n_layers * m->block_fwd_flops / g->tp + (head ? m->head_fwd_flops : 0.0);
    double bwd = n_layers * m->block_bwd_flops / g->tp + (head ? m->head_bwd_flops : 0.0);
    out->fwd_compute_s = fwd / rate;
    out->bwd_compute_s = bwd / rate;
    double ar = lm_ring_allreduce_s(g->tp_link, m->tp_bytes, g->tp);
    out->fwd_tp_s = 2.0 * n_layers * ar;
    out->bwd_tp_s = 2.0 * n_layers * ar;
    out->params = cm_stage_params(m, n_layers, embed, head, g->tp, S);
    out->opt_s = (double)out->params * CM_OPT_BYTES_PER_PARAM / g->mem_bw;
}

/* ------------------------------------------------------------ links */

/* Slowest link over the pairs (x in a, y in b), x != y. */
lm_link cm_set_link(const et_cluster *c, const int *a, int na, const int *b, int nb)
{
    lm_link w = lm_link_ideal();
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (a[i] != b[j])
                w = lm_link_slower(w, cm_link(et_cluster_link(c, a[i], b[j])));
    return w;
}

lm_link cm_tp_link(const et_plan *p, const et_cluster *c, int r, int s)
{
    const int *g = plan_group_c(p, r, s);
    return cm_set_link(c, g, p->tp[s], g, p->tp[s]);
}

lm_link cm_boundary_link(const et_plan *p, const et_cluster *c, int r, int s)
{
    return cm_set_link(c, plan_group_c(p, r, s), p->tp[s], plan_group_c(p, r, s + 1), p->tp[s + 1]);
}

lm_link cm_embed_link(const et_plan *p, const et_cluster *c, int r)
{
    int S = p->n_stages;
    return cm_set_link(c, plan_group_c(p, r, 0), p->tp[0], plan_group_c(p, r, S - 1), p->tp[S - 1]);
}

/* Pairs of servers of stage s in different replicas. */
lm_link cm_dp_link(const et_plan *p, const et_cluster *c, int s)
{
    lm_link w = lm_link_ideal();
    for (int r = 0; r < p->n_replicas; r++)
        for (int q = r + 1; q < p->n_replicas; q++)
            w = lm_link_slower(w, cm_set_link(c, plan_group_c(p, r, s), p->tp[s],
                                              plan_group_c(p, q, s), p->tp[s]));
    return w;
}

lm_link cm_all_link(const et_plan *p, const et_cluster *c)
{
    int n = plan_n_workers(p);
    return cm_set_link(c, p->server, n, p->server, n);
}

/* Slowest member, its memory bandwidth, the slowest link inside. */
void cm_plan_group(const et_plan *p, const et_cluster *c, int r, int s, cm_group *out)
{
    const int *g = plan_group_c(p, r, s);
    out->tp = p->tp[s];
    out->gflops = INFINITY;
    for (int i = 0; i < p->tp[s]; i++)
        if (c->servers[g[i]].gflops < out->gflops)
            out->gflops = c->servers[g[i]].gflops;
    out->mem_bw = cm_mem_bw(out->gflops);
    out->tp_link = cm_tp_link(p, c, r, s);
}

/* ------------------------------------------------------------ evaluation */

/* Scratch for one evaluation, sized for R replicas of S stages. */
typedef struct eval_ws {
    cm_stage_cost *cost;      /* [R*S] */
    sched_stage_time *tm;     /* [R*S] */
    double *pipe;             /* [R] */
    double *f, *b, *bytes;    /* [S], [S], [S] */
    lm_link *bl;              /* [S] */
} eval_ws;

static void ws_init(eval_ws *w, int R, int S)
{
    w->cost = et_xcalloc((size_t)(R * S), sizeof *w->cost);
    w->tm = et_xcalloc((size_t)(R * S), sizeof *w->tm);
    w->pipe = et_xcalloc((size_t)R, sizeof *w->pipe);
    w->f = et_xcalloc((size_t)S, sizeof *w->f);
    w->b = et_xcalloc((size_t)S, sizeof *w->b);
    w->bytes = et_xcalloc((size_t)S, sizeof *w->bytes);
    w->bl = et_xcalloc((size_t)S, sizeof *w->bl);
}

static void ws_free(eval_ws *w)
{
    free(w->cost);
    free(w->tm);
    free(w->pipe);
    free(w->f);
    free(w->b);
    free(w->bytes);
    free(w->bl);
}

/* Sync phase after the pipelines: max over stages of embedding exchange +
 * DP all-reduce, plus the norm, plus the slowest optimizer. Also returns
 * each stage's collective time in coll[s] when coll is not NULL. */
static double sync_phase(const cm_model *m, const et_cluster *c, const et_plan *p,
                         const cm_stage_cost *cost, double *coll)
{
    int R = p->n_replicas, S = p->n_stages;
    double embed = 0.0;
    if (S > 1) {
        for (int r = 0; r < R; r++) {
            double e = lm_ring_allreduce_s(cm_embed_link(p, c, r), m->embed_grad_bytes, 2);
            double b0 = lm_bcast_s(cm_tp_link(p, c, r, 0), m->embed_grad_bytes, p->tp[0]);
            double b1 = lm_bcast_s(cm_tp_link(p, c, r, S - 1), m->embed_grad_bytes, p->tp[S - 1]);
            e += b0 > b1 ? b0 : b1;
            if (e > embed)
                embed = e;
        }
    }
    double worst = 0.0, opt = 0.0;
    for (int s = 0; s < S; s++) {
        double d = lm_ring_allreduce_s(cm_dp_link(p, c, s), 4.0 * (double)cost[s].params, R);
        double x = d + ((s == 0 || s == S - 1) ? embed : 0.0);
        if (coll)
            coll[s] = x;
        if (x > worst)
            worst = x;
    }
    for (int i = 0; i < R * S; i++)
        if (cost[i].opt_s > opt)
            opt = cost[i].opt_s;
    double norm = lm_tree_allreduce_s(cm_all_link(p, c), 8.0, plan_n_workers(p));
    if (coll)
        for (int s = 0; s < S; s++)
            coll[s] += norm;
    return worst + norm + opt;
}

/* Pipeline of replica r: its stages' FWD/BWD costs, its boundary links. */
static double replica_pipeline(const cm_model *m, const et_cluster *c, const et_plan *p, int r,
                               const cm_stage_cost *cost, sched_program *prog, eval_ws *w,
                               sched_stage_time *tm)
{
    int S = p->n_stages;
    for (int s = 0; s < S; s++) {
        w->f[s] = cost[s].fwd_compute_s + cost[s].fwd_tp_s;
        w->b[s] = cost[s].bwd_compute_s + cost[s].bwd_tp_s;
        w->bytes[s] = m->boundary_bytes;
        if (s + 1 < S)
            w->bl[s] = cm_boundary_link(p, c, r, s);
    }
    sched_costs sc = {w->f, w->b, w->bl, w->bl, w->bytes, w->bytes};
    return sched_simulate(prog, &sc, tm);
}

/* Stage costs of every (r, s). */
static void all_costs(const cm_model *m, const et_cluster *c, const et_plan *p, cm_stage_cost *cost)
{
    int S = p->n_stages;
    for (int r = 0; r < p->n_replicas; r++)
        for (int s = 0; s < S; s++) {
            cm_group g;
            cm_plan_group(p, c, r, s, &g);
            cm_stage_cost_eval(m, p->last[s] - p->first[s] + 1, s == 0, s == S - 1, S, &g,
                               &cost[r * S + s]);
        }
}

/* Small plans (the exhaustive search's) use stack scratch: no allocation in
 * its inner loop. */
#define CM_STACK_STAGES 64

double cm_step_time(const cm_model *m, const et_cluster *c, const et_plan *p, sched_program *prog)
{
    int R = p->n_replicas, S = p->n_stages;
    eval_ws w;
    cm_stage_cost cost[CM_STACK_STAGES];
    double pipe_r[CM_STACK_STAGES], f[CM_STACK_STAGES], b[CM_STACK_STAGES], bytes[CM_STACK_STAGES];
    lm_link bl[CM_STACK_STAGES];
    int heap = R * S > CM_STACK_STAGES;
    if (heap) {
        ws_init(&w, R, S);
    } else {
        w = (eval_ws){cost, NULL, pipe_r, f, b, bytes, bl};
    }
    all_costs(m, c, p, w.cost);
    double pipe = 0.0;
    for (int r = 0; r < R; r++) {
        double t = replica_pipeline(m, c, p, r, w.cost + r * S, prog, &w, NULL);
        if (t > pipe)
            pipe = t;
    }
    double step = pipe + sync_phase(m, c, p, w.cost, NULL);
    if (heap)
        ws_free(&w);
    return step;
}

void cm_fmt_rate(char *buf, size_t n, double bytes_per_s)
{
    double bits = bytes_per_s * 8;
    if (isinf(bits))
        snprintf(buf, n, "in-server");
    else if (bits >= 1e9)
        snprintf(buf, n, "%.3g Gbps", bits / 1e9);
    else
        snprintf(buf, n, "%.3g Mbps", bits / 1e6);
}

void cm_group_names(const et_plan *p, const et_cluster *c, int r, int s, char *buf, size_t n)
{
    const int *g = plan_group_c(p, r, s);
    buf[0] = '\0';
    for (int i = 0; i < p->tp[s]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? "+" : "", c->servers[g[i]].name);
    }
}

/*
 * One sentence: what sets the pace. In steady state the slowest "machine"
 * per micro-batch — a stage's FWD+BWD or a boundary link's serialisation —
 * limits the pipeline; the sync phase and the fill/drain bubble add to it.
 */
static void explain(const cm_model *m, const et_cluster *c, et_plan *p, const cm_stage_cost *cost,
                    double pipe, double sync)
{
    int S = p->n_stages, R = p->n_replicas, M = p->micro_batches;
    plan_pred *pr = &p->pred;
    int br = pr->bottleneck_replica, bs = pr->bottleneck_stage;
    double best = -1;
    int link_s = -1, stage_s = bs;
    for (int s = 0; s < S; s++) {
        const cm_stage_cost *k = &cost[br * S + s];
        double fb = k->fwd_compute_s + k->fwd_tp_s + k->bwd_compute_s + k->bwd_tp_s;
        if (fb > best) {
            best = fb;
            stage_s = s;
            link_s = -1;
        }
        if (s + 1 < S) {
            lm_link l = cm_boundary_link(p, c, br, s);
            double x = 2 * lm_serial_s(l, m->boundary_bytes);
            if (x > best) {
                best = x;
                link_s = s;
            }
        }
    }
    char names[160], names2[160], rate[32];
    size_t n = sizeof pr->bottleneck;
    int w;
    if (sync > pipe) {
        int ds = 0;
        double dmax = -1;
        for (int s = 0; s < S; s++) {
            double d = lm_ring_allreduce_s(cm_dp_link(p, c, s), 4.0 * (double)cost[s].params, R);
            if (d > dmax) {
                dmax = d;
                ds = s;
            }
        }
        cm_fmt_rate(rate, sizeof rate, cm_dp_link(p, c, ds).bandwidth);
        w = snprintf(pr->bottleneck, n,
                     "gradient sync after the pipeline (%.3g s) outweighs the pipeline (%.3g s): "
                     "stage %d's data-parallel all-reduce moves %.3g MB over %s",
                     sync, pipe, ds, 4.0 * (double)cost[ds].params / 1e6, rate);
    } else if (link_s >= 0) {
        lm_link l = cm_boundary_link(p, c, br, link_s);
        cm_group_names(p, c, br, link_s, names, sizeof names);
        cm_group_names(p, c, br, link_s + 1, names2, sizeof names2);
        cm_fmt_rate(rate, sizeof rate, l.bandwidth);
        w = snprintf(pr->bottleneck, n,
                     "link between stage %d (%s) and stage %d (%s) at %s: %.3g MB each way per "
                     "micro-batch take %.3g ms, more than any stage's compute",
                     link_s, names, link_s + 1, names2, rate, m->boundary_bytes / 1e6, best * 1e3);
    } else {
        const cm_stage_cost *k = &cost[br * S + stage_s];
        cm_group g;
        cm_plan_group(p, c, br, stage_s, &g);
        cm_group_names(p, c, br, stage_s, names, sizeof names);
        double tpc = k->fwd_tp_s + k->bwd_tp_s;
        w = snprintf(pr->bottleneck, n,
                     "stage %d (%s) sets the pace: %d layer%s%s%s at %.4g GFLOP/s take %.3g ms "
                     "fwd+bwd per micro-batch",
                     stage_s, names, p->last[stage_s] - p->first[stage_s] + 1,
                     p->last[stage_s] == p->first[stage_s] ? "" : "s",
                     stage_s == 0 ? " + embedding" : "", stage_s == S - 1 ? " + LM head" : "",
                     g.gflops, best * 1e3);
        if (w > 0 && (size_t)w < n && tpc > 0.25 * best) {
            cm_fmt_rate(rate, sizeof rate, g.tp_link.bandwidth);
            w += snprintf(pr->bottleneck + w, n - (size_t)w,
                          ", %.0f%% of it tensor-parallel all-reduces over %s", 100 * tpc / best, rate);
        }
    }
    if (w > 0 && (size_t)w < n && S > 1 && pr->bubble_s > 0.25 * pr->step_s)
        snprintf(pr->bottleneck + w, n - (size_t)w,
                 "; pipeline bubble %.0f%% with %d micro-batches over %d stages",
                 100 * pr->bubble_s / pr->step_s, M, S);
}

/* Full evaluation: memory, pipelines with per-stage breakdown, sync, the
 * bottleneck stage (the one with the least idle time) and its explanation. */
double cm_evaluate(const cm_model *m, const et_cluster *c, et_plan *p)
{
    int R = p->n_replicas, S = p->n_stages, M = p->micro_batches;
    eval_ws w;
    ws_init(&w, R, S);
    all_costs(m, c, p, w.cost);

    /* memory */
    p->fits = 1;
    for (int i = 0; i < p->n_cluster; i++)
        p->memory[i] = 0;
    for (int s = 0; s < S; s++) {
        int inf = sched_max_in_flight(p->schedule, s, S, M);
        uint64_t need = cm_stage_memory(m, p->last[s] - p->first[s] + 1, s == 0, s == S - 1,
                                        p->tp[s], S, inf);
        for (int r = 0; r < R; r++)
            for (int i = 0; i < p->tp[s]; i++) {
                int sv = plan_server(p, r, s, i);
                p->memory[sv] = need;
                if (need > c->servers[sv].memory)
                    p->fits = 0;
            }
    }

    /* pipelines */
    sched_program *prog = sched_program_new(p->schedule, S, M);
    double pipe = 0.0;
    for (int r = 0; r < R; r++) {
        w.pipe[r] = replica_pipeline(m, c, p, r, w.cost + r * S, prog, &w, w.tm + r * S);
        if (w.pipe[r] > pipe)
            pipe = w.pipe[r];
    }
    sched_program_free(prog);
    double *coll = et_xcalloc((size_t)S, sizeof *coll);
    double sync = sync_phase(m, c, p, w.cost, coll);
    double step = pipe + sync;

    /* each stage's view of the step */
    double least_bubble = INFINITY;
    for (int r = 0; r < R; r++)
        for (int s = 0; s < S; s++) {
            const cm_stage_cost *k = &w.cost[r * S + s];
            plan_stage_pred *sp = &p->stage_pred[r * S + s];
            sp->fwd_s = k->fwd_compute_s + k->fwd_tp_s;
            sp->bwd_s = k->bwd_compute_s + k->bwd_tp_s;
            sp->compute_s = M * (k->fwd_compute_s + k->bwd_compute_s) + k->opt_s;
            sp->communication_s = M * (k->fwd_tp_s + k->bwd_tp_s) + w.tm[r * S + s].wire_wait_s + coll[s];
            sp->bubble_s = step - sp->compute_s - sp->communication_s;
            if (sp->bubble_s < 0)          /* rounding only */
                sp->bubble_s = 0;
            if (sp->bubble_s < least_bubble) {
                least_bubble = sp->bubble_s;
                p->pred.bottleneck_replica = r;
                p->pred.bottleneck_stage = s;
            }
        }
    plan_stage_pred *bp = &p->stage_pred[p->pred.bottleneck_replica * S + p->pred.bottleneck_stage];
    p->pred.step_s = step;
    p->pred.compute_s = bp->compute_s;
    p->pred.communication_s = bp->communication_s;
    p->pred.bubble_s = bp->bubble_s;
    p->pred.pipeline_s = pipe;
    p->pred.sync_s = sync;
    explain(m, c, p, w.cost, pipe, sync);
    free(coll);
    ws_free(&w);
    return step;
}
