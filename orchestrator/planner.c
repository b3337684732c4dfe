/*
 * planner — exact branch-and-bound placement, its brute-force twin, and the
 * hand-made baselines.
 *
 * Why the search is exact (each point is a property of costmodel.c):
 *
 * 1. Classes. Every input of the cost model that depends on which server
 *    plays a role is its gflops, its memory, or a link between it and another
 *    server of the plan (group minima, slowest links of sets). If swapping
 *    servers i and j leaves gflops, memory and every link unchanged (an
 *    automorphism of the cluster), swapping them in a plan leaves its cost
 *    unchanged. "Swappable" is an equivalence (composition of swaps), so
 *    servers fall into classes and a group is fully described, for the cost
 *    model, by how many servers of each class it has. Links between classes
 *    are well defined: any member of class a sees any member of class b
 *    (a != b) over the same link, and two members of one class over the same
 *    intra-class link.
 *
 * 2. Replica 0 is the slowest. Permuting replicas changes nothing, so we
 *    may number them so that replica 0's pipeline makespan P0 is the largest;
 *    then max_r P_r = P0. The search chooses replica 0 completely (S, cuts,
 *    TP degrees, groups; this fixes the template every replica shares), then
 *    the other replicas among the group sequences with P_r <= P0, as a
 *    multiset (their order does not matter), minimising the sync phase.
 *
 * 3. Bounds. The pipeline makespan is the longest path of a DAG whose node
 *    weights are the op costs (FWD/BWD per stage, link serialisation) and
 *    whose edge weights are latencies; raising a cost never shortens it.
 *    Valid lower bounds, for stages 0..d-1 decided and the rest unknown:
 *      - the path through all of stage k's ops: sum_{j<k}(F_j+B_j+links)
 *        + M(F_k+B_k) (both schedules);
 *      - GPipe: its makespan is exactly sum(F+B) + links + (M-1)(max F' +
 *        max B') (F', B' including link serialisation; proven by the
 *        longest-path argument and tested against the simulator), so
 *        sum + (M-1)(max(maxF_dec, Wf/(V q)) + max(maxB_dec, Wb/(V q)));
 *      - 1F1B: for each stage k the path up through stage k's first forward,
 *        along all of stage k's ops after it, down the backwards gives
 *        sum(F+B) + links + (M-1)B_k + max(0, M-1-w_k)F_k, w_k = min(S-1-k, M);
 *      - undecided stages: their FWD+BWD together take at least W_rem / V
 *        (W_rem their FLOPs, V the fastest effective speed any remaining group
 *        can have); the slowest of the q left at least W_rem over the summed
 *        speed of q disjoint groups; some stage holds ceil(left/q) blocks;
 *        every later boundary costs two transfers over the best link left;
 *      - a relaxation (lb_relax): the q stages share the work continuously at
 *        speeds bounded by V[k], the most summed speed of k disjoint groups
 *        (a DP over the speed-sorted servers), minimising sum + tail exactly;
 *      - forced groups: the R*S groups need that many servers, so the slowest
 *        is at most G[R*S] fast and holds a block; and for R >= 2, the server
 *        ranked R*S by best link is used, so its stage's DP ring is slow;
 *      - the sync phase: decided groups' optimizer times, each decided
 *        stage's DP ring over the best links the other replicas can still
 *        get, the embedding exchange and the norm at the cluster's best link.
 *    Ties: replicas with equal makespans are compared with a 1e-12 relative
 *    slack (bounds computed in another order may exceed by an ulp).
 *    A branch is cut when its bound is not below the best plan found.
 *
 * The exhaustive search shares none of this: it enumerates servers, cuts and
 * TP degrees literally and calls cm_step_time on each plan.
 *
 * Speed: shapes (schedule, R, micro_batch, S) are searched in the order of
 * their root bounds, first with a few hundred nodes each (a good incumbent),
 * then exactly. The worst case is exponential; clusters of a few classes
 * plan in milliseconds, very heterogeneous ones of 32+ servers may hit the
 * time budget (planner_opts.max_seconds), in which case the best plan found
 * is returned with proven = 0 and a lower bound no plan can beat.
 */
#include "planner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "costmodel.h"

/* ------------------------------------------------------------ helpers */

/* Relative slack for comparing makespans that tie exactly in real numbers. */
#define TIE 1e-12

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double dmax(double a, double b)
{
    return a > b ? a : b;
}

static int link_eq(et_link a, et_link b)
{
    return a.bandwidth == b.bandwidth && a.latency == b.latency;
}

/* Divisors of n_head that also divide 4*n_embd, ascending, <= max_tp. */
int planner_tp_degrees(const gpt2_config *g, int max_tp, int *out, int cap)
{
    int n = 0;
    for (int t = 1; t <= g->n_head && t <= max_tp; t++)
        if (g->n_head % t == 0 && (4 * g->n_embd) % t == 0 && n < cap)
            out[n++] = t;
    return n;
}

/* ------------------------------------------------------------ context */

/* A TP group as class counts, with what the cost model reads from it. */
typedef struct comp {
    int t;
    int *cnt;            /* [K] servers per class */
    int *cls, ncls;      /* classes present */
    double gflops;       /* slowest member */
    uint64_t memory;     /* smallest member */
    lm_link tp_link;     /* slowest link inside */
    double ef, eb;       /* FLOP/s on block forward/backward, TP all-reduces included (per shape) */
} comp;

/* One replica's stages as decided so far. */
typedef struct rstate {
    int *comp;           /* [S] */
    double *f, *b;       /* [S] FWD/BWD of one micro-batch */
    double *opt;         /* [S] optimizer */
    lm_link *bl;         /* [S] link between stage s and s+1 */
    double *lat, *ser;   /* [S] its latency and serialisation of one boundary tensor */
} rstate;

/* Running summary of a replica's decided stages 0..d-1, for the bounds. */
typedef struct psum {
    double prefix;       /* sum of F+B and of the links between them (both ways) */
    double path_k;       /* max over k of (prefix before k) + M (F_k + B_k) */
    double mf, mb;       /* largest F, largest B */
    double one;          /* max over k of (M-1) B_k + max(0, M-1-w_k) F_k (1F1B) */
} psum;

/* A group sequence for one of replicas 1..R-1 (the rest search). */
typedef struct cand {
    int *comp;           /* [S] */
    double P;            /* pipeline makespan */
    double embed;        /* tied-embedding exchange */
    double opt;          /* slowest optimizer */
    lm_link inner;       /* slowest link among its own servers */
    int *use;            /* [K] servers per class */
} cand;

typedef struct ctx {
    const et_config *cfg;
    const et_cluster *c;
    const gpt2_config *g;
    int n, K, L, G;
    /* classes */
    int *cls_n;          /* [K] */
    int **cls_members;   /* [K][cls_n] */
    double *cls_gflops;
    uint64_t *cls_mem;
    int *cls_order;      /* by gflops, fastest first */
    lm_link *cl_link;    /* [K*K], diagonal: intra-class */
    lm_link best_link;   /* fastest link between two distinct servers */
    /* groups */
    int tps[64], n_tps, tmax;
    comp *comps;
    int n_comps;
    int *comps_of_t[65]; /* per t, fastest first */
    int n_comps_of_t[65];
    int *by_ef, *by_eb;  /* every comp by effective speed, fastest first (per shape) */
    /* shape */
    int sched, R, mb, M, S;
    cm_model m;
    sched_program *prog;
    int *tp_of;          /* [S] */
    int *first;          /* [S+1] */
    uint64_t *need;      /* [S] memory per worker */
    uint64_t *params;    /* [S] local parameters */
    double *bytes;       /* [S] boundary bytes (all equal) */
    int *cap, *used;     /* [K] servers left / taken */
    rstate r0, rc;
    psum *ps0, *psc;     /* [S+1] summaries of replica 0 / of a candidate */
    lm_link *all_dec;    /* [S+1] slowest link among replica 0's servers so far */
    /* rest search */
    cand *cands;
    int n_cands, cap_cands;
    int *pick;           /* [R] */
    int *ucnt;           /* [S*K] servers per class at each stage over the chosen replicas */
    lm_link *dp_link;    /* [S] */
    lm_link *dp_saved;   /* [R*S] dp_link before each replica was added */
    double P0;
    /* U_k cache (speed_prefix) */
    int ucache_n, ucache_len;   /* entry: V[0..n], G[0..n], ef, eb, shape gen, cap[K] */
    long shape_gen;             /* bumps when the micro-batch (hence ef/eb) changes */
    uint64_t *ucache_key;
    double *ucache_val;
    /* scratch */
    double *scr_u, *scr_g, *scr_p, *scr_c, *scr_d;
    int *scr_i, *scr_h;
    /* best */
    double best;
    int best_R, best_S, best_mb, best_sched, best_M;
    int *best_first, *best_tp, *best_comp;
    /* stats, the first pass's node budget, the time budget */
    long nodes, leaves, stop_at;
    double deadline;     /* monotonic seconds; 0: none */
    double t0, found_at; /* start, and when best last improved */
    int timed_out;
    int exhaustive;
} ctx;

/* ------------------------------------------------------------ classes */

/* Swapping i and j is an automorphism of the cost model's inputs. */
static int swappable(const et_cluster *c, int i, int j)
{
    if (c->servers[i].gflops != c->servers[j].gflops || c->servers[i].memory != c->servers[j].memory)
        return 0;
    for (int k = 0; k < c->n_servers; k++)
        if (k != i && k != j && !link_eq(et_cluster_link(c, i, k), et_cluster_link(c, j, k)))
            return 0;
    return 1;
}

/* Classes (each named by its first member in config order), their links,
 * and the cluster's fastest link. */
static void build_classes(ctx *x)
{
    const et_cluster *c = x->c;
    int n = x->n;
    int *rep = et_xmalloc((size_t)n * sizeof(int)), *of = et_xmalloc((size_t)n * sizeof(int));
    x->K = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < x->K && !swappable(c, rep[k], i))
            k++;
        if (k == x->K)
            rep[x->K++] = i;
        of[i] = k;
    }
    int K = x->K;
    x->cls_n = et_xcalloc((size_t)K, sizeof(int));
    x->cls_members = et_xcalloc((size_t)K, sizeof(int *));
    x->cls_gflops = et_xcalloc((size_t)K, sizeof(double));
    x->cls_mem = et_xcalloc((size_t)K, sizeof(uint64_t));
    for (int i = 0; i < n; i++)
        x->cls_n[of[i]]++;
    for (int k = 0; k < K; k++) {
        x->cls_members[k] = et_xmalloc((size_t)x->cls_n[k] * sizeof(int));
        x->cls_n[k] = 0;
        x->cls_gflops[k] = c->servers[rep[k]].gflops;
        x->cls_mem[k] = c->servers[rep[k]].memory;
    }
    for (int i = 0; i < n; i++)
        x->cls_members[of[i]][x->cls_n[of[i]]++] = i;
    x->cl_link = et_xmalloc((size_t)(K * K) * sizeof(lm_link));
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++) {
            lm_link l = lm_link_ideal();
            if (a != b)
                l = cm_link(et_cluster_link(c, x->cls_members[a][0], x->cls_members[b][0]));
            else if (x->cls_n[a] >= 2)
                l = cm_link(et_cluster_link(c, x->cls_members[a][0], x->cls_members[a][1]));
            x->cl_link[a * K + b] = l;
        }
    x->best_link = n < 2 ? lm_link_ideal() : (lm_link){0.0, INFINITY};
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            lm_link l = cm_link(et_cluster_link(c, i, j));
            x->best_link.bandwidth = dmax(x->best_link.bandwidth, l.bandwidth);
            if (l.latency < x->best_link.latency)
                x->best_link.latency = l.latency;
        }
    x->cls_order = et_xmalloc((size_t)K * sizeof(int));
    for (int k = 0; k < K; k++)
        x->cls_order[k] = k;
    for (int i = 1; i < K; i++)
        for (int j = i; j > 0 && x->cls_gflops[x->cls_order[j]] > x->cls_gflops[x->cls_order[j - 1]]; j--) {
            int t = x->cls_order[j];
            x->cls_order[j] = x->cls_order[j - 1];
            x->cls_order[j - 1] = t;
        }
    free(rep);
    free(of);
}

/* Slowest link over pairs of servers from class lists a and b (distinct
 * servers: a class in both lists means two of its members). */
static lm_link cls_pair_link(const ctx *x, const int *a, int na, const int *b, int nb)
{
    lm_link w = lm_link_ideal();
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            w = lm_link_slower(w, x->cl_link[a[i] * x->K + b[j]]);
    return w;
}

static lm_link comp_link(const ctx *x, int ca, int cb)
{
    const comp *a = &x->comps[ca], *b = &x->comps[cb];
    return cls_pair_link(x, a->cls, a->ncls, b->cls, b->ncls);
}

/* Record the composition cnt (size t). */
static void add_comp(ctx *x, int t, const int *cnt)
{
    if (x->n_comps % 64 == 0)
        x->comps = et_xrealloc(x->comps, (size_t)(x->n_comps + 64) * sizeof(comp));
    comp *q = &x->comps[x->n_comps++];
    memset(q, 0, sizeof *q);
    q->t = t;
    q->cnt = et_xmalloc((size_t)x->K * sizeof(int));
    memcpy(q->cnt, cnt, (size_t)x->K * sizeof(int));
    q->cls = et_xmalloc((size_t)x->K * sizeof(int));
    q->gflops = INFINITY;
    q->memory = UINT64_MAX;
    q->tp_link = lm_link_ideal();
    for (int k = 0; k < x->K; k++) {
        if (cnt[k] == 0)
            continue;
        for (int j = 0; j < q->ncls; j++)
            q->tp_link = lm_link_slower(q->tp_link, x->cl_link[q->cls[j] * x->K + k]);
        if (cnt[k] >= 2)
            q->tp_link = lm_link_slower(q->tp_link, x->cl_link[k * x->K + k]);
        q->cls[q->ncls++] = k;
        if (x->cls_gflops[k] < q->gflops)
            q->gflops = x->cls_gflops[k];
        if (x->cls_mem[k] < q->memory)
            q->memory = x->cls_mem[k];
    }
}

/* Every count vector with sum `left` over classes k.. (each <= class size). */
static void gen_comps(ctx *x, int t, int k, int left, int *cnt)
{
    if (k == x->K) {
        if (left == 0)
            add_comp(x, t, cnt);
        return;
    }
    for (int v = left < x->cls_n[k] ? left : x->cls_n[k]; v >= 0; v--) {
        cnt[k] = v;
        gen_comps(x, t, k + 1, left - v, cnt);
    }
    cnt[k] = 0;
}

static const ctx *sort_ctx;

/* Faster group first, then lower index. */
static int by_speed(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double p = sort_ctx->comps[i].gflops * sort_ctx->comps[i].t, q = sort_ctx->comps[j].gflops * sort_ctx->comps[j].t;
    return p > q ? -1 : p < q ? 1 : i - j;
}

static void build_comps(ctx *x)
{
    int *cnt = et_xcalloc((size_t)x->K, sizeof(int));
    for (int i = 0; i < x->n_tps; i++) {
        int t = x->tps[i], start = x->n_comps;
        gen_comps(x, t, 0, t, cnt);
        x->n_comps_of_t[t] = x->n_comps - start;
        x->comps_of_t[t] = et_xmalloc((size_t)(x->n_comps - start + 1) * sizeof(int));
        for (int j = start; j < x->n_comps; j++)
            x->comps_of_t[t][j - start] = j;
    }
    sort_ctx = x;
    for (int i = 0; i < x->n_tps; i++)
        qsort(x->comps_of_t[x->tps[i]], (size_t)x->n_comps_of_t[x->tps[i]], sizeof(int), by_speed);
    x->by_ef = et_xmalloc((size_t)(x->n_comps + 1) * sizeof(int));
    x->by_eb = et_xmalloc((size_t)(x->n_comps + 1) * sizeof(int));
    free(cnt);
}

static int comp_fits(const ctx *x, const comp *q)
{
    for (int j = 0; j < q->ncls; j++)
        if (q->cnt[q->cls[j]] > x->cap[q->cls[j]])
            return 0;
    return 1;
}

static void comp_take(ctx *x, const comp *q, int sign)
{
    for (int j = 0; j < q->ncls; j++) {
        x->cap[q->cls[j]] -= sign * q->cnt[q->cls[j]];
        x->used[q->cls[j]] += sign * q->cnt[q->cls[j]];
    }
}

static int by_ef_desc(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double p = sort_ctx->comps[i].ef, q = sort_ctx->comps[j].ef;
    return p > q ? -1 : p < q ? 1 : i - j;
}

static int by_eb_desc(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double p = sort_ctx->comps[i].eb, q = sort_ctx->comps[j].eb;
    return p > q ? -1 : p < q ? 1 : i - j;
}

/* Effective block speeds of every group for the shape's micro-batch: a
 * block's FLOPs over its time on the group, TP all-reduces included. */
static void shape_speeds(ctx *x)
{
    x->shape_gen++;   /* cached ef/eb are stale now */
    for (int i = 0; i < x->n_comps; i++) {
        comp *q = &x->comps[i];
        double rate = q->gflops * 1e9;
        double ar = 2.0 * lm_ring_allreduce_s(q->tp_link, x->m.tp_bytes, q->t);
        q->ef = x->m.block_fwd_flops / (x->m.block_fwd_flops / q->t / rate + ar);
        q->eb = x->m.block_bwd_flops / (x->m.block_bwd_flops / q->t / rate + ar);
        x->by_ef[i] = x->by_eb[i] = i;
    }
    sort_ctx = x;
    qsort(x->by_ef, (size_t)x->n_comps, sizeof(int), by_ef_desc);
    qsort(x->by_eb, (size_t)x->n_comps, sizeof(int), by_eb_desc);
}

/* ------------------------------------------------------------ bounds */

/* What the servers left can do for q more stages of one of `share`
 * replicas splitting them. */
typedef struct pool {
    int ok;              /* some group still fits */
    double ef, eb;       /* fastest effective block speed of one group left */
    double capf, capb;   /* at most the summed effective speed of those q stages */
    double gmax;         /* fastest single server left, FLOP/s */
    const double *V;     /* V[k]: most summed raw speed of k disjoint groups left;
                            V[n+1+k] = G[k]: the best possible slowest of k disjoint groups */
    double next_link;    /* least 2 x transfer from the last decided group to a server left */
    double pair_xfer;    /* least 2 x transfer between two servers left (a later boundary) */
    double pair_ser;     /* least serialisation of a boundary tensor between two servers left */
} pool;

static uint64_t cap_hash(const ctx *x)
{
    uint64_t h = 1469598103934665603ULL;
    for (int k = 0; k < x->K; k++) {
        h ^= (uint64_t)(unsigned)x->cap[k] + 1;
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

/* The best effective block speeds (forward, backward) of any group that
 * still fits, stored after V and G in a cache entry with the shape
 * generation they were computed for. */
static void fastest_fitting(ctx *x, double *val)
{
    int n = x->n;
    double ef = 0.0, eb = 0.0;
    for (int i = 0; i < x->n_comps && ef == 0.0; i++)
        if (comp_fits(x, &x->comps[x->by_ef[i]]))
            ef = x->comps[x->by_ef[i]].ef;
    for (int i = 0; i < x->n_comps && eb == 0.0; i++)
        if (comp_fits(x, &x->comps[x->by_eb[i]]))
            eb = x->comps[x->by_eb[i]].eb;
    val[2 * (n + 1)] = ef;
    val[2 * (n + 1) + 1] = eb;
    val[2 * (n + 1) + 2] = (double)x->shape_gen;
}

/*
 * V[k], k = 0..n: the largest summed speed (t x slowest member's gflops,
 * FLOP/s) of k disjoint groups of allowed degrees from the servers left.
 * Some optimal choice tiles a prefix of the servers sorted by speed with
 * contiguous blocks (putting a faster unused or later server in place of a
 * group's slowest member never lowers any minimum), so a DP over the sorted
 * list finds it: best[k][m] = max over t of best[k-1][m-t] + t * g(m).
 * Cached per capacity vector (hash plus the vector itself as the check).
 */
static const double *speed_prefix(ctx *x)
{
    int n = x->n, K = x->K;
    uint64_t h = cap_hash(x);
    size_t slot = (size_t)(h & (uint64_t)(x->ucache_n - 1));
    double *val = x->ucache_val + slot * (size_t)(x->ucache_len + K);
    int hit = x->ucache_key[slot] == h;
    for (int k = 0; k < K && hit; k++)
        hit = val[x->ucache_len + k] == x->cap[k];
    if (hit) {
        if (val[2 * (n + 1) + 2] != (double)x->shape_gen)
            fastest_fitting(x, val);
        return val;
    }
    double *g = x->scr_g, *prev = x->scr_p, *cur = x->scr_c;
    int m = 0;
    for (int i = 0; i < K; i++) {
        int cl = x->cls_order[i];
        for (int c = 0; c < x->cap[cl]; c++)
            g[++m] = x->cls_gflops[cl] * 1e9;
    }
    for (int j = 0; j <= m; j++)
        prev[j] = j == 0 ? 0.0 : -1.0;
    val[0] = 0.0;
    for (int k = 1; k <= n; k++) {
        double bk = val[k - 1];
        for (int j = 0; j <= m; j++) {
            cur[j] = -1.0;
            for (int i = 0; i < x->n_tps; i++) {
                int t = x->tps[i];
                if (t <= j && prev[j - t] >= 0.0)
                    cur[j] = dmax(cur[j], prev[j - t] + t * g[j]);
            }
            bk = dmax(bk, cur[j]);
        }
        val[k] = bk;
        double *tmp = prev;
        prev = cur;
        cur = tmp;
    }
    /* G[k] (after V): the largest s such that k disjoint groups of speed >= s
     * exist. For a threshold s the most such groups are again contiguous
     * blocks of the sorted list (skipping servers allowed):
     * cnt[j] = max(cnt[j-1], cnt[j-t] + 1 for t with t * g(j) >= s).
     * Thresholds worth trying: t * g for every degree and server speed. */
    double *G = val + (n + 1);
    for (int k = 0; k <= n; k++)
        G[k] = 0.0;
    G[0] = INFINITY;
    for (int i = 0; i < K; i++) {
        if (x->cap[i] == 0)
            continue;
        for (int a = 0; a < x->n_tps; a++) {
            double thr = x->tps[a] * x->cls_gflops[i] * 1e9;
            prev[0] = 0.0;
            for (int j = 1; j <= m; j++) {
                prev[j] = prev[j - 1];
                for (int b = 0; b < x->n_tps; b++) {
                    int t = x->tps[b];
                    if (t <= j && t * g[j] >= thr && prev[j - t] + 1 > prev[j])
                        prev[j] = prev[j - t] + 1;
                }
            }
            for (int k = 1; k <= (int)prev[m] && k <= n; k++)
                G[k] = dmax(G[k], thr);
        }
    }
    x->ucache_key[slot] = h;
    for (int k = 0; k < K; k++)
        val[x->ucache_len + k] = x->cap[k];
    fastest_fitting(x, val);
    return val;
}

/*
 * The pool for q more stages. capf/capb: the q stages' summed effective
 * speed is at most q x the fastest group, at most V[q] (raw speeds), and for
 * the worst-equipped of `share` replicas at most V[share*q]/share. last:
 * the last decided group (-1: none) for the next-link term.
 */
static void pool_eval(ctx *x, int q, int share, int last, pool *pl)
{
    memset(pl, 0, sizeof *pl);
    int n = x->n;
    pl->V = speed_prefix(x);
    pl->ef = pl->V[2 * (n + 1)];
    pl->eb = pl->V[2 * (n + 1) + 1];
    pl->ok = pl->ef > 0.0;
    if (!pl->ok)
        return;
    for (int i = 0; i < x->K && pl->gmax == 0.0; i++)
        if (x->cap[x->cls_order[i]] > 0)
            pl->gmax = x->cls_gflops[x->cls_order[i]] * 1e9;
    int qs = share * q < n ? share * q : n;
    double vq = pl->V[q < n ? q : n], vs = pl->V[qs] / share;
    double raw = vq < vs ? vq : vs;
    pl->capf = q * pl->ef < raw ? q * pl->ef : raw;
    pl->capb = q * pl->eb < raw ? q * pl->eb : raw;
    /* the best link between two servers left bounds every boundary after
     * the next one */
    pl->pair_xfer = pl->pair_ser = INFINITY;
    for (int a = 0; a < x->K; a++)
        for (int b = a; b < x->K; b++) {
            if (x->cap[a] == 0 || x->cap[b] == 0 || (a == b && x->cap[a] < 2))
                continue;
            lm_link l = x->cl_link[a * x->K + b];
            double xf = 2.0 * lm_transfer_s(l, x->m.boundary_bytes), sr = lm_serial_s(l, x->m.boundary_bytes);
            if (xf < pl->pair_xfer)
                pl->pair_xfer = xf;
            if (sr < pl->pair_ser)
                pl->pair_ser = sr;
        }
    if (!isfinite(pl->pair_xfer))
        pl->pair_xfer = pl->pair_ser = 0.0;
    pl->next_link = 0.0;
    if (last >= 0) {
        const comp *cq = &x->comps[last];
        double lk = INFINITY;
        for (int k = 0; k < x->K; k++)
            if (x->cap[k] > 0) {
                double v = 2.0 * lm_transfer_s(cls_pair_link(x, cq->cls, cq->ncls, &k, 1), x->m.boundary_bytes);
                if (v < lk)
                    lk = v;
            }
        pl->next_link = isfinite(lk) ? lk : 0.0;
    }
}

/* Add decided stage j (and the link into it) to a summary. */
static psum psum_add(const ctx *x, psum p, const rstate *st, int j)
{
    int M = x->M, S = x->S;
    if (j > 0)
        p.prefix += 2.0 * (st->lat[j - 1] + st->ser[j - 1]);
    double fb = st->f[j] + st->b[j];
    p.path_k = dmax(p.path_k, p.prefix + M * fb);
    p.prefix += fb;
    p.mf = dmax(p.mf, st->f[j]);
    p.mb = dmax(p.mb, st->b[j]);
    int w = S - 1 - j < M ? S - 1 - j : M;
    p.one = dmax(p.one, (M - 1) * st->b[j] + (M - 1 - w > 0 ? (M - 1 - w) * st->f[j] : 0.0));
    return p;
}

/*
 * Relaxation of the q undecided stages (compute only): they share W FLOPs
 * of forward work (their blocks and the head); a stage of raw speed u does
 * w of it in c = w/u forward and at least 2c backward. With V the concave
 * prefix sums of the fastest possible speeds, the least sum of c_j whose
 * largest is tau is f(tau) = tau * Phi(W/tau), Phi the inverse of the
 * piecewise-linear V. The makespan is at least dec + 3 f(tau) + tail(tau)
 * (tail: the schedule's M-1 rounds); this is convex and piecewise linear in
 * tau, so its least value is at a breakpoint: W/U_k, or a kink of tail.
 * tau_floor: a known floor of tau (integral layers, one block per stage).
 */
static double lb_relax(const ctx *x, const double *V, double W, int q, int share, double dec, double mf,
                       double mb, double one, double tau_floor)
{
    int M = x->M, S = x->S, n = x->n;
    double *U = x->scr_u;
    int qs = share * q < n ? share * q : n;
    double cap = V[qs] / share;
    U[0] = 0.0;
    for (int k = 1; k <= q; k++)
        U[k] = V[k < n ? k : n] < cap ? V[k < n ? k : n] : cap;
    if (!(U[q] > 0.0))
        return INFINITY;
    /* least concave majorant (upper hull of the points (k, U_k)): makes the
     * objective convex in tau; larger U only lowers the bound */
    int *hull = x->scr_h, nh = 0;
    for (int k = 0; k <= q; k++) {
        while (nh >= 2) {
            int a = hull[nh - 2], b = hull[nh - 1];
            if ((U[b] - U[a]) * (k - a) <= (U[k] - U[a]) * (b - a))
                nh--;
            else
                break;
        }
        hull[nh++] = k;
    }
    for (int h = 0; h + 1 < nh; h++)
        for (int k = hull[h] + 1; k < hull[h + 1]; k++)
            U[k] = U[hull[h]] + (U[hull[h + 1]] - U[hull[h]]) * (k - hull[h]) / (hull[h + 1] - hull[h]);
    double c1 = 2.0 * (M - 1) + (M > S ? M - S : 0);   /* 1F1B: (M-1) B + (M-S) F */
    /* every stage holds a block, and the slowest of q groups is at most G[q] */
    double gq = V[n + 1 + (q < n ? q : n)];
    double tau_min = dmax(dmax(W / U[q], gq > 0 ? x->m.block_fwd_flops / gq : INFINITY), tau_floor);
    double best = INFINITY;
    for (int i = 1; i <= q + 3; i++) {
        double tau, phi = -1.0;
        if (i <= q) {
            tau = W / U[i];
            phi = i;   /* exactly i full stages */
        } else if (i == q + 1) {
            tau = x->sched == ET_SCHED_GPIPE ? mf : (c1 > 0 ? one / c1 : 0.0);
        } else if (i == q + 2) {
            tau = x->sched == ET_SCHED_GPIPE ? mb / 2 : 0.0;
        } else {
            tau = tau_min;
        }
        if (!(tau >= tau_min) || !isfinite(tau))
            continue;
        if (phi < 0.0) {
            double c = W / tau;
            phi = q;
            for (int k = 0; k < q; k++)
                if (c <= U[k + 1]) {
                    double du = U[k + 1] - U[k];
                    phi = k + (du > 0 ? (c - U[k]) / du : 0.0);
                    break;
                }
        }
        double tail;
        if (x->sched == ET_SCHED_GPIPE)
            tail = (M - 1) * (dmax(mf, tau) + dmax(mb, 2 * tau));
        else
            tail = dmax(one, c1 * tau);
        double v = dec + 3 * tau * phi + tail;
        if (v < best)
            best = v;
    }
    return best;
}

/*
 * Lower bound of the pipeline makespan of a replica whose decided stages are
 * summarised by p, with q stages holding `left` layers (and the head) still
 * to place on the pool (see the header comment for the paths used).
 */
static double lb_pipe(const ctx *x, const psum *p, int q, int left, const pool *pl, int share)
{
    int M = x->M;
    double lb;
    if (q == 0) {
        lb = x->sched == ET_SCHED_GPIPE ? p->prefix + (M - 1) * (p->mf + p->mb) : p->prefix + p->one;
        return dmax(lb, p->path_k);
    }
    if (!pl->ok)
        return INFINITY;
    double lf = left * x->m.block_fwd_flops, lbw = left * x->m.block_bwd_flops;
    double hf = x->m.head_fwd_flops / pl->gmax, hb = x->m.head_bwd_flops / pl->gmax;
    /* the q-1 boundaries among the remaining stages (the next one is next_link) */
    double links = pl->next_link + (q - 1) * pl->pair_xfer;
    double sum = p->prefix + links + lf / pl->ef + lbw / pl->eb + hf + hb;
    /* some remaining stage holds at least ceil(left/q) blocks, at most as fast
     * as the fastest group */
    int most = (left + q - 1) / q;
    double v1 = pl->V[1] > 0 ? pl->V[1] : INFINITY;
    double remf = dmax(dmax(lf / pl->capf, hf), most * x->m.block_fwd_flops / v1);
    double remb = dmax(dmax(lbw / pl->capb, hb), most * x->m.block_bwd_flops / v1);
    double one = dmax(p->one, (M - 1) * (hf + hb));
    /* GPipe's slowest machine may be a link: each remaining boundary serialises */
    double ser = q >= 2 ? pl->pair_ser : 0.0;
    if (x->sched == ET_SCHED_GPIPE)
        lb = sum + (M - 1) * (dmax(dmax(p->mf, remf), ser) + dmax(dmax(p->mb, remb), ser));
    else   /* (the (M-S) forwards of that stage are in lb_relax, where F and B are tied) */
        lb = sum + dmax(one, (M - 1) * remb);
    double r = lb_relax(x, pl->V, lf + x->m.head_fwd_flops, q, share, p->prefix + links, dmax(p->mf, ser),
                        dmax(p->mb, ser), one, most * x->m.block_fwd_flops / v1);
    return dmax(dmax(lb, r), p->path_k);
}

/* Lower bound of stage s's DP all-reduce given replica 0's group there:
 * the other replicas' x t servers of the stage come from the pool,
 * and the ring is at least as slow as the link from the group to any of
 * them; taking classes from the best-connected on, the class that completes
 * the count bounds it. */
static double lb_dp_stage(const ctx *x, int s)
{
    const comp *q = &x->comps[x->r0.comp[s]];
    double bytes = 4.0 * (double)x->params[s];
    int need = (x->R - 1) * q->t, n = 0;
    double *tk = x->scr_d;
    int *order = x->scr_i;
    for (int k = 0; k < x->K; k++) {
        if (x->cap[k] == 0)
            continue;
        tk[k] = lm_ring_allreduce_s(cls_pair_link(x, q->cls, q->ncls, &k, 1), bytes, x->R);
        int j = n++;
        while (j > 0 && tk[order[j - 1]] > tk[k]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = k;
    }
    for (int i = 0; i < n; i++) {
        need -= x->cap[order[i]];
        if (need <= 0)
            return tk[order[i]];
    }
    return INFINITY;
}

/* The parts of the sync bound that do not depend on the current stage's
 * layer count: decided stages' optimizer and DP terms, the embedding and
 * norm floors. */
typedef struct sync_pre {
    double opt, dmax, d0, embed, norm;
} sync_pre;

static void sync_pre_eval(const ctx *x, int s, int servers_dec, sync_pre *sp)
{
    int S = x->S, R = x->R;
    memset(sp, 0, sizeof *sp);
    for (int j = 0; j < s; j++) {
        sp->opt = dmax(sp->opt, x->r0.opt[j]);
        double d = R > 1 ? lb_dp_stage(x, j) : 0.0;
        if (j == 0)
            sp->d0 = d;
        sp->dmax = dmax(sp->dmax, d);
    }
    if (S > 1) {
        sp->embed = lm_ring_allreduce_s(x->best_link, x->m.embed_grad_bytes, 2);
        if (s > 0 || servers_dec > 0) {
            const comp *c0 = &x->comps[x->r0.comp[0]];
            sp->embed += lm_bcast_s(c0->tp_link, x->m.embed_grad_bytes, c0->t);
        }
    }
    int nw = servers_dec + (S - s) + (R - 1) * S;
    lm_link al = servers_dec >= 2 ? lm_link_slower(x->all_dec[s], x->best_link) : x->best_link;
    sp->norm = lm_tree_allreduce_s(al, 8.0, nw);
}

/* Sync bound once stage s (0-based, just decided) is known; forced: a
 * floor for the collectives (forced_bounds). */
static double lb_sync(const ctx *x, const sync_pre *sp, int s, double forced)
{
    double d = x->R > 1 ? lb_dp_stage(x, s) : 0.0;
    double d0 = s == 0 ? d : sp->d0;
    double coll = dmax(dmax(sp->embed + d0, dmax(sp->dmax, d)), forced);
    return coll + sp->norm + dmax(sp->opt, x->r0.opt[s]);
}

/* Replicas 1..R-1, all undecided and no slower than replica 0: the
 * worst-equipped of `share` replicas over the pool bounds P0. */
static double lb_others(ctx *x, int share)
{
    if (share < 1 || (share == 1 && x->R == 1))
        return 0.0;
    pool pl;
    pool_eval(x, x->S, share, -1, &pl);
    psum none = {0, 0, 0, 0, 0};
    return lb_pipe(x, &none, x->S, x->L, &pl, share);
}

/*
 * Forced bounds: `groups` groups are still to be formed from the servers
 * left, so at least that many servers are used.
 *  - Compute: the slowest of them is at most G[groups] fast and holds a
 *    block; the replica it lands in is no faster than that stage alone:
 *    3M c (GPipe) or 3c + 2(M-1)c + (M-S)c (1F1B), c = one block forward.
 *    Replica 0 is the slowest, so this bounds P0.
 *  - DP (R >= 2): rank every server of the cluster by the cheapest DP ring
 *    it can be part of (its best link to another server); among the servers
 *    still to be used, one ranks at least `groups` places down the servers
 *    left, and its stage's ring (at least one block's parameters) runs over
 *    a link no better than its best.
 */
static void forced_bounds(ctx *x, const pool *pl, int groups, double *pipe, double *dp)
{
    int S = x->S, M = x->M, n = x->n, K = x->K;
    *pipe = *dp = 0.0;
    if (groups <= 0 || !pl->ok)
        return;
    double gs = pl->V[n + 1 + (groups < n ? groups : n)];
    double c = gs > 0 ? x->m.block_fwd_flops / gs : INFINITY;
    *pipe = (x->sched == ET_SCHED_GPIPE ? 3.0 * M : 3.0 + 2.0 * (M - 1) + (M > S ? M - S : 0)) * c;
    if (x->R < 2)
        return;
    double bytes = 4.0 * (double)cm_block_params_local(x->g, x->tmax);
    double *cost = x->scr_d;
    int *order = x->scr_i, nk = 0;
    for (int k = 0; k < K; k++) {
        if (x->cap[k] == 0)
            continue;
        double best = INFINITY;
        for (int b = 0; b < K; b++)
            if (b != k || x->cls_n[k] >= 2) {
                double v = lm_ring_allreduce_s(x->cl_link[k * K + b], bytes, x->R);
                if (v < best)
                    best = v;
            }
        cost[k] = best;
        int j = nk++;
        while (j > 0 && cost[order[j - 1]] > best) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = k;
    }
    int need = groups;
    for (int i = 0; i < nk; i++) {
        need -= x->cap[order[i]];
        if (need <= 0) {
            *dp = isfinite(cost[order[i]]) ? cost[order[i]] : 0.0;
            return;
        }
    }
}

/* ------------------------------------------------------------ exact costs */

/* Stage s of the current template on group ci, into st (and the link from
 * stage s-1's group). */
static void stage_on(ctx *x, rstate *st, int s, int ci)
{
    const comp *q = &x->comps[ci];
    cm_group g = {q->t, q->gflops, cm_mem_bw(q->gflops), q->tp_link};
    cm_stage_cost k;
    cm_stage_cost_eval(&x->m, x->first[s + 1] - x->first[s], s == 0, s == x->S - 1, x->S, &g, &k);
    st->comp[s] = ci;
    st->f[s] = k.fwd_compute_s + k.fwd_tp_s;
    st->b[s] = k.bwd_compute_s + k.bwd_tp_s;
    st->opt[s] = k.opt_s;
    x->params[s] = k.params;
    if (s > 0) {
        lm_link l = comp_link(x, st->comp[s - 1], ci);
        st->bl[s - 1] = l;
        st->lat[s - 1] = l.latency;
        st->ser[s - 1] = lm_serial_s(l, x->m.boundary_bytes);
    }
}

/* GPipe's makespan in closed form: every op once, plus M-1 more rounds of
 * the slowest forward "machine" (stage or activation link) and the slowest
 * backward one (longest path; equal to the simulation, tested). */
static double gpipe_closed(const ctx *x, const rstate *st)
{
    double sum = 0.0, mf = 0.0, mb = 0.0;
    for (int s = 0; s < x->S; s++) {
        sum += st->f[s] + st->b[s];
        mf = dmax(mf, st->f[s]);
        mb = dmax(mb, st->b[s]);
        if (s + 1 < x->S) {
            sum += 2.0 * (st->lat[s] + st->ser[s]);
            mf = dmax(mf, st->ser[s]);
            mb = dmax(mb, st->ser[s]);
        }
    }
    return sum + (x->M - 1) * (mf + mb);
}

/* Makespan of a complete replica: GPipe's closed form, 1F1B's simulation. */
static double pipe_of(ctx *x, rstate *st)
{
    if (x->sched == ET_SCHED_GPIPE)
        return gpipe_closed(x, st);
    sched_costs sc = {st->f, st->b, st->bl, st->bl, x->bytes, x->bytes};
    return sched_simulate(x->prog, &sc, NULL);
}

/* Tied-embedding exchange of a replica, as costmodel.c's sync_phase. */
static double embed_of(const ctx *x, const int *seq)
{
    int S = x->S;
    if (S == 1)
        return 0.0;
    const comp *a = &x->comps[seq[0]], *b = &x->comps[seq[S - 1]];
    double e = lm_ring_allreduce_s(cls_pair_link(x, a->cls, a->ncls, b->cls, b->ncls), x->m.embed_grad_bytes, 2);
    double b0 = lm_bcast_s(a->tp_link, x->m.embed_grad_bytes, a->t);
    double b1 = lm_bcast_s(b->tp_link, x->m.embed_grad_bytes, b->t);
    return e + (b0 > b1 ? b0 : b1);
}

/* Slowest link among servers counted per class in use[]. */
static lm_link use_link(const ctx *x, const int *use)
{
    lm_link w = lm_link_ideal();
    for (int a = 0; a < x->K; a++) {
        if (use[a] == 0)
            continue;
        if (use[a] >= 2)
            w = lm_link_slower(w, x->cl_link[a * x->K + a]);
        for (int b = a + 1; b < x->K; b++)
            if (use[b] > 0)
                w = lm_link_slower(w, x->cl_link[a * x->K + b]);
    }
    return w;
}

static int width_of(const ctx *x)
{
    int w = 0;
    for (int s = 0; s < x->S; s++)
        w += x->tp_of[s];
    return w;
}

/* The sync phase exactly as costmodel.c's sync_phase computes it (same
 * operations in the same order). */
static double sync_full(const ctx *x, const lm_link *dp, double embed, lm_link all, double opt)
{
    int S = x->S;
    double worst = 0.0;
    for (int s = 0; s < S; s++) {
        double d = lm_ring_allreduce_s(dp[s], 4.0 * (double)x->params[s], x->R);
        double v = d + ((s == 0 || s == S - 1) ? embed : 0.0);
        if (v > worst)
            worst = v;
    }
    double norm = lm_tree_allreduce_s(all, 8.0, x->R * width_of(x));
    return worst + norm + opt;
}

/* Remember the template, replica 0 and the chosen candidates. */
static void record(ctx *x, double total)
{
    x->best = total;
    x->found_at = now_s();
    x->best_R = x->R;
    x->best_S = x->S;
    x->best_mb = x->mb;
    x->best_M = x->M;
    x->best_sched = x->sched;
    for (int s = 0; s <= x->S; s++)
        x->best_first[s] = x->first[s];
    for (int s = 0; s < x->S; s++) {
        x->best_tp[s] = x->tp_of[s];
        x->best_comp[s] = x->r0.comp[s];
    }
    for (int r = 1; r < x->R; r++)
        for (int s = 0; s < x->S; s++)
            x->best_comp[r * x->S + s] = x->cands[x->pick[r]].comp[s];
}

static int out_of_budget(ctx *x)
{
    if (x->timed_out)
        return 1;
    if (x->deadline > 0 && (x->nodes & 4095) == 0 && now_s() > x->deadline)
        x->timed_out = 1;
    return x->timed_out || (x->stop_at && x->nodes > x->stop_at);
}

/* ------------------------------------------------------------ replicas 1.. */

/* Every group sequence of the template from the servers left after
 * replica 0 whose makespan is at most P0 (up to TIE: identical servers give
 * identical makespans, which bounds computed in another order may exceed by
 * an ulp; the multiset search then uses the true largest makespan). */
static void cand_dfs(ctx *x, int s)
{
    x->nodes++;
    if (out_of_budget(x))
        return;
    rstate *st = &x->rc;
    if (s == x->S) {
        double P = pipe_of(x, st);
        x->leaves++;
        if (P > x->P0 * (1 + TIE))
            return;
        if (x->n_cands == x->cap_cands) {
            x->cap_cands = x->cap_cands ? 2 * x->cap_cands : 64;
            x->cands = et_xrealloc(x->cands, (size_t)x->cap_cands * sizeof(cand));
        }
        cand *cd = &x->cands[x->n_cands++];
        cd->comp = et_xmalloc((size_t)x->S * sizeof(int));
        cd->use = et_xcalloc((size_t)x->K, sizeof(int));
        memcpy(cd->comp, st->comp, (size_t)x->S * sizeof(int));
        cd->P = P;
        cd->embed = embed_of(x, cd->comp);
        cd->opt = 0.0;
        for (int j = 0; j < x->S; j++) {
            cd->opt = dmax(cd->opt, st->opt[j]);
            const comp *q = &x->comps[cd->comp[j]];
            for (int i = 0; i < q->ncls; i++)
                cd->use[q->cls[i]] += q->cnt[q->cls[i]];
        }
        cd->inner = use_link(x, cd->use);
        return;
    }
    int t = x->tp_of[s];
    for (int i = 0; i < x->n_comps_of_t[t]; i++) {
        int ci = x->comps_of_t[t][i];
        const comp *q = &x->comps[ci];
        if (q->memory < x->need[s] || !comp_fits(x, q))
            continue;
        comp_take(x, q, 1);
        stage_on(x, st, s, ci);
        x->psc[s + 1] = psum_add(x, x->psc[s], st, s);
        pool pl;
        int left = x->L - x->first[s + 1];
        if (s + 1 < x->S)
            pool_eval(x, x->S - 1 - s, 1, ci, &pl);
        if (lb_pipe(x, &x->psc[s + 1], x->S - 1 - s, left, &pl, 1) <= x->P0 * (1 + TIE))
            cand_dfs(x, s + 1);
        comp_take(x, q, -1);
    }
}

/* Choose replicas k..R-1 among the candidates (a multiset: indices
 * non-decreasing), tracking each stage's class counts over the chosen
 * replicas (for the DP links), the all-servers link, the largest embedding
 * exchange and optimizer. The partial sync only grows as replicas are
 * added, so it bounds every completion. */
static void multi_dfs(ctx *x, int k, int from, double pmax, double embed, double opt, lm_link all)
{
    x->nodes++;
    if (out_of_budget(x))
        return;
    int S = x->S, K = x->K;
    double total = pmax + sync_full(x, x->dp_link, embed, all, opt);
    if (total >= x->best)
        return;
    if (k == x->R) {
        x->leaves++;
        record(x, total);
        return;
    }
    lm_link *saved = x->dp_saved + (size_t)k * (size_t)S;
    for (int i = from; i < x->n_cands; i++) {
        cand *cd = &x->cands[i];
        int ok = 1;
        for (int a = 0; a < K && ok; a++)
            ok = cd->use[a] <= x->cap[a];
        if (!ok)
            continue;
        lm_link nall = lm_link_slower(all, cd->inner);
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K && cd->use[a] > 0; b++)
                if (x->used[b] > 0)
                    nall = lm_link_slower(nall, x->cl_link[a * K + b]);
        memcpy(saved, x->dp_link, (size_t)S * sizeof(lm_link));
        for (int s = 0; s < S; s++) {
            const comp *q = &x->comps[cd->comp[s]];
            for (int j = 0; j < q->ncls; j++)
                for (int b = 0; b < K; b++)
                    if (x->ucnt[s * K + b] > 0)
                        x->dp_link[s] = lm_link_slower(x->dp_link[s], x->cl_link[q->cls[j] * K + b]);
        }
        for (int s = 0; s < S; s++) {
            const comp *q = &x->comps[cd->comp[s]];
            for (int j = 0; j < q->ncls; j++)
                x->ucnt[s * K + q->cls[j]] += q->cnt[q->cls[j]];
        }
        for (int a = 0; a < K; a++) {
            x->cap[a] -= cd->use[a];
            x->used[a] += cd->use[a];
        }
        x->pick[k] = i;
        multi_dfs(x, k + 1, i, dmax(pmax, cd->P), dmax(embed, cd->embed), dmax(opt, cd->opt), nall);
        for (int a = 0; a < K; a++) {
            x->cap[a] += cd->use[a];
            x->used[a] -= cd->use[a];
        }
        for (int s = 0; s < S; s++) {
            const comp *q = &x->comps[cd->comp[s]];
            for (int j = 0; j < q->ncls; j++)
                x->ucnt[s * K + q->cls[j]] -= q->cnt[q->cls[j]];
        }
        memcpy(x->dp_link, saved, (size_t)S * sizeof(lm_link));
    }
}

static void free_cands(ctx *x)
{
    for (int i = 0; i < x->n_cands; i++) {
        free(x->cands[i].comp);
        free(x->cands[i].use);
    }
    x->n_cands = 0;
}

/* Replica 0 is complete with makespan P0: the rest of the plan. */
static void leaf0(ctx *x, double P0)
{
    int S = x->S, K = x->K;
    x->P0 = P0;
    x->leaves++;
    double opt = 0.0;
    for (int s = 0; s < S; s++)
        opt = dmax(opt, x->r0.opt[s]);
    double embed = embed_of(x, x->r0.comp);
    lm_link all = use_link(x, x->used);
    for (int s = 0; s < S; s++) {
        x->dp_link[s] = lm_link_ideal();
        for (int a = 0; a < K; a++)
            x->ucnt[s * K + a] = 0;
        const comp *q = &x->comps[x->r0.comp[s]];
        for (int j = 0; j < q->ncls; j++)
            x->ucnt[s * K + q->cls[j]] = q->cnt[q->cls[j]];
    }
    double total = P0 + sync_full(x, x->dp_link, embed, all, opt);
    if (total >= x->best)
        return;   /* other replicas only add to the sync */
    if (x->R == 1) {
        record(x, total);
        return;
    }
    free_cands(x);
    x->psc[0] = (psum){0, 0, 0, 0, 0};
    cand_dfs(x, 0);
    multi_dfs(x, 1, 0, P0, embed, opt, all);
    free_cands(x);
}

/* ------------------------------------------------------------ replica 0 */

/* Decide stage s of replica 0: TP degree, group, layer count. */
static void dfs0(ctx *x, int s, int servers_dec)
{
    x->nodes++;
    if (out_of_budget(x))
        return;
    int S = x->S, L = x->L, R = x->R;
    if (s == S) {
        leaf0(x, pipe_of(x, &x->r0));
        return;
    }
    int left = L - x->first[s];
    int lo = s == S - 1 ? left : 1, hi = left - (S - 1 - s);
    int inflight = sched_max_in_flight(x->sched, s, S, x->M);
    int avail = 0;
    for (int k = 0; k < x->K; k++)
        avail += x->cap[k];
    for (int it = 0; it < x->n_tps; it++) {
        int t = x->tps[it];
        /* this group, a server for each later stage, and as many for every other replica */
        if (t + (S - 1 - s) + (R - 1) * (servers_dec + t + (S - 1 - s)) > avail)
            break;
        x->tp_of[s] = t;
        for (int i = 0; i < x->n_comps_of_t[t]; i++) {
            int ci = x->comps_of_t[t][i];
            const comp *q = &x->comps[ci];
            if (!comp_fits(x, q))
                continue;
            /* the most layers that fit the group's memory (the need grows with layers) */
            int top = hi;
            while (top >= lo && cm_stage_memory(&x->m, top, s == 0, s == S - 1, t, S, inflight) > q->memory)
                top--;
            if (top < lo)
                continue;
            comp_take(x, q, 1);
            lm_link nall = lm_link_slower(x->all_dec[s], q->tp_link);
            for (int j = 0; j < q->ncls; j++)
                for (int b = 0; b < x->K; b++)
                    if (x->used[b] - (b == q->cls[j] ? q->cnt[b] : 0) > 0)
                        nall = lm_link_slower(nall, x->cl_link[q->cls[j] * x->K + b]);
            x->all_dec[s + 1] = nall;
            int qn = S - 1 - s;
            sync_pre sp;
            sync_pre_eval(x, s, servers_dec, &sp);
            if (s == 0)
                x->r0.comp[0] = ci;   /* for the embedding floor */
            /* the decided stages alone bound every completion, and grow with
             * this stage's layers: find the most layers that can still pay
             * off before looking at the servers left */
            while (top >= lo) {
                x->first[s + 1] = x->first[s] + top;
                stage_on(x, &x->r0, s, ci);
                psum pt = psum_add(x, x->ps0[s], &x->r0, s);
                if (lb_pipe(x, &pt, 0, 0, NULL, 1) + lb_sync(x, &sp, s, 0.0) < x->best)
                    break;
                top--;
            }
            if (top < lo) {
                comp_take(x, q, -1);
                continue;
            }
            pool pl;
            pool_eval(x, qn, 1, ci, &pl);
            double others = R > 1 ? lb_others(x, R - 1) : 0.0;
            double fpipe, fdp;
            forced_bounds(x, &pl, qn + (R - 1) * S, &fpipe, &fdp);
            others = dmax(others, fpipe);
            /* layer counts from a balanced guess outwards: this group's share
             * of the work against the groups left */
            int target = lo;
            if (top > lo && qn > 0 && pl.ok)
                target = (int)lround(left * q->ef / (q->ef + pl.capf));
            target = target < lo ? lo : target > top ? top : target;
            for (int k = 0;; k++) {
                int up = target + (k + 1) / 2, dn = target - k / 2;
                if (up > top && dn < lo)
                    break;
                int nl = k % 2 ? up : dn;
                if (nl < lo || nl > top)
                    continue;
                x->first[s + 1] = x->first[s] + nl;
                x->need[s] = cm_stage_memory(&x->m, nl, s == 0, s == S - 1, t, S, inflight);
                stage_on(x, &x->r0, s, ci);
                x->ps0[s + 1] = psum_add(x, x->ps0[s], &x->r0, s);
                double lp = lb_pipe(x, &x->ps0[s + 1], qn, L - x->first[s + 1], &pl, 1);
                double lb = dmax(lp, others) + lb_sync(x, &sp, s, fdp);
                if (lb >= x->best)
                    continue;
                dfs0(x, s + 1, servers_dec + t);
                if (out_of_budget(x))
                    break;
            }
            comp_take(x, q, -1);
        }
    }
}

/* ------------------------------------------------------------ shapes */

typedef struct shape {
    int sched, R, mb, S;
    double lb;
} shape;

static int by_lb(const void *a, const void *b)
{
    const shape *p = a, *q = b;
    return p->lb < q->lb ? -1 : p->lb > q->lb ? 1 : 0;
}

/* Per-shape fields; with prog, also the schedule program. */
static void shape_enter(ctx *x, const shape *sh, int with_prog)
{
    x->sched = sh->sched;
    x->R = sh->R;
    x->mb = sh->mb;
    x->S = sh->S;
    x->M = x->G / (sh->R * sh->mb);
    cm_model_init(&x->m, x->g, sh->mb, x->cfg->training.seq_len);
    for (int s = 0; s < x->S; s++)
        x->bytes[s] = x->m.boundary_bytes;
    x->prog = with_prog ? sched_program_new(x->sched, x->S, x->M) : NULL;
    for (int k = 0; k < x->K; k++) {
        x->cap[k] = x->cls_n[k];
        x->used[k] = 0;
    }
    x->first[0] = 0;
    x->all_dec[0] = lm_link_ideal();
    x->ps0[0] = (psum){0, 0, 0, 0, 0};
    shape_speeds(x);
}

static void shape_leave(ctx *x)
{
    sched_program_free(x->prog);
    x->prog = NULL;
}

/* Root bound of a shape: nothing decided yet, the worst-equipped of R
 * replicas over all servers. */
static double shape_lb(ctx *x, const shape *sh)
{
    shape_enter(x, sh, 0);
    pool pl;
    pool_eval(x, x->S, x->R, -1, &pl);
    psum none = {0, 0, 0, 0, 0};
    sync_pre sp;
    sync_pre_eval(x, 0, 0, &sp);
    double fpipe, fdp;
    forced_bounds(x, &pl, x->R * x->S, &fpipe, &fdp);
    double lb = dmax(lb_pipe(x, &none, x->S, x->L, &pl, x->R), fpipe) + dmax(sp.embed, fdp) + sp.norm;
    shape_leave(x);
    return lb;
}

/* ------------------------------------------------------------ exhaustive */

typedef struct exh {
    ctx *x;
    et_plan *p;
    int *tpv;            /* [S] */
    int *usedv;          /* [n] */
    cm_model m;
    sched_program *prog;
} exh;

/* Try every cut of L layers into S stages for the current assignment. */
static void exh_cuts(exh *E, int s, int start)
{
    ctx *x = E->x;
    et_plan *p = E->p;
    int S = p->n_stages;
    if (s == S) {
        /* memory: every worker's need within its server */
        for (int j = 0; j < S; j++) {
            uint64_t need = cm_stage_memory(&E->m, p->last[j] - p->first[j] + 1, j == 0, j == S - 1,
                                            p->tp[j], S, sched_max_in_flight(p->schedule, j, S, p->micro_batches));
            for (int r = 0; r < p->n_replicas; r++)
                for (int i = 0; i < p->tp[j]; i++)
                    if (need > x->c->servers[plan_server(p, r, j, i)].memory)
                        return;
        }
        double t = cm_step_time(&E->m, x->c, p, E->prog);
        x->leaves++;
        if (t < x->best) {
            x->best = t;
            x->found_at = now_s();
            x->best_R = p->n_replicas;
            x->best_S = S;
            x->best_mb = p->micro_batch;
            x->best_M = p->micro_batches;
            x->best_sched = p->schedule;
            for (int j = 0; j < S; j++) {
                x->best_first[j] = p->first[j];
                x->best_tp[j] = p->tp[j];
            }
            x->best_first[S] = x->L;
            /* remember servers directly: best_comp holds server indices here */
            memcpy(x->best_comp, p->server, (size_t)plan_n_workers(p) * sizeof(int));
        }
        return;
    }
    int left = x->L - start;
    int lo = s == S - 1 ? left : 1, hi = left - (S - 1 - s);
    for (int nl = lo; nl <= hi; nl++) {
        p->first[s] = start;
        p->last[s] = start + nl - 1;
        exh_cuts(E, s + 1, start + nl);
    }
}

/* Choose the servers of slot (r, s) as an increasing combination from the
 * unused ones; replica r's first server of stage 0 must exceed replica
 * r-1's (replicas are interchangeable). */
static void exh_assign(exh *E, int r, int s, int i, int from)
{
    ctx *x = E->x;
    et_plan *p = E->p;
    if (r == p->n_replicas) {
        exh_cuts(E, 0, 0);
        return;
    }
    if (i == p->tp[s]) {
        if (s + 1 < p->n_stages)
            exh_assign(E, r, s + 1, 0, 0);
        else
            exh_assign(E, r + 1, 0, 0, 0);
        return;
    }
    int start = from;
    if (i == 0 && s == 0 && r > 0)
        start = plan_server(p, r - 1, 0, 0) + 1;
    for (int v = start; v < x->n; v++) {
        if (E->usedv[v])
            continue;
        E->usedv[v] = 1;
        plan_group(p, r, s)[i] = v;
        x->nodes++;
        exh_assign(E, r, s, i + 1, v + 1);
        E->usedv[v] = 0;
    }
}

/* Every TP vector for the shape, then every assignment and cut. */
static void exh_tp(exh *E, const shape *sh, int s)
{
    ctx *x = E->x;
    if (s == sh->S) {
        int w = 0;
        for (int j = 0; j < sh->S; j++)
            w += E->tpv[j];
        if (w * sh->R > x->n)
            return;
        E->p = plan_new(sh->R, sh->S, E->tpv, x->n);
        E->p->schedule = sh->sched;
        E->p->micro_batch = sh->mb;
        E->p->micro_batches = x->G / (sh->R * sh->mb);
        exh_assign(E, 0, 0, 0, 0);
        plan_free(E->p);
        E->p = NULL;
        return;
    }
    for (int i = 0; i < x->n_tps; i++) {
        E->tpv[s] = x->tps[i];
        exh_tp(E, sh, s + 1);
    }
}

static void exhaustive_shape(ctx *x, const shape *sh)
{
    exh E;
    memset(&E, 0, sizeof E);
    E.x = x;
    E.tpv = et_xcalloc((size_t)sh->S, sizeof(int));
    E.usedv = et_xcalloc((size_t)x->n, sizeof(int));
    cm_model_init(&E.m, x->g, sh->mb, x->cfg->training.seq_len);
    E.prog = sched_program_new(sh->sched, sh->S, x->G / (sh->R * sh->mb));
    exh_tp(&E, sh, 0);
    sched_program_free(E.prog);
    free(E.tpv);
    free(E.usedv);
}

/* ------------------------------------------------------------ driver */

/* Concrete servers for the best plan: each class hands out its members in
 * order (any choice costs the same). */
static et_plan *materialise(ctx *x)
{
    int R = x->best_R, S = x->best_S;
    et_plan *p = plan_new(R, S, x->best_tp, x->n);
    for (int s = 0; s < S; s++) {
        p->first[s] = x->best_first[s];
        p->last[s] = x->best_first[s + 1] - 1;
    }
    p->schedule = x->best_sched;
    p->micro_batch = x->best_mb;
    p->micro_batches = x->best_M;
    if (x->exhaustive) {
        memcpy(p->server, x->best_comp, (size_t)plan_n_workers(p) * sizeof(int));
        return p;
    }
    int *next = et_xcalloc((size_t)x->K, sizeof(int));
    for (int r = 0; r < R; r++)
        for (int s = 0; s < S; s++) {
            const comp *q = &x->comps[x->best_comp[r * S + s]];
            int *grp = plan_group(p, r, s), i = 0;
            for (int j = 0; j < q->ncls; j++) {
                int k = q->cls[j];
                for (int c = 0; c < q->cnt[k]; c++)
                    grp[i++] = x->cls_members[k][next[k]++];
            }
        }
    free(next);
    return p;
}

static void rstate_alloc(rstate *r, int L)
{
    size_t n = (size_t)L + 1;
    r->comp = et_xcalloc(n, sizeof(int));
    r->f = et_xcalloc(n, sizeof(double));
    r->b = et_xcalloc(n, sizeof(double));
    r->opt = et_xcalloc(n, sizeof(double));
    r->bl = et_xcalloc(n, sizeof(lm_link));
    r->lat = et_xcalloc(n, sizeof(double));
    r->ser = et_xcalloc(n, sizeof(double));
}

static void rstate_free(rstate *r)
{
    free(r->comp);
    free(r->f);
    free(r->b);
    free(r->opt);
    free(r->bl);
    free(r->lat);
    free(r->ser);
}

/* Classes, groups and every per-search array, sized by n servers and L
 * layers (S <= L). */
static void ctx_init(ctx *x, const et_config *cfg, int exhaustive)
{
    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    x->c = &cfg->cluster;
    x->g = &cfg->model;
    x->n = cfg->cluster.n_servers;
    x->L = cfg->model.n_layer;
    x->G = cfg->training.global_batch;
    x->exhaustive = exhaustive;
    build_classes(x);
    if (cfg->parallel.tensor > 0) {
        x->tps[0] = cfg->parallel.tensor;
        x->n_tps = 1;
    } else {
        x->n_tps = planner_tp_degrees(x->g, x->n < 64 ? x->n : 64, x->tps, 64);
    }
    x->tmax = x->tps[x->n_tps - 1];
    if (!exhaustive)
        build_comps(x);
    int n = x->n, L = x->L, K = x->K;
    size_t l1 = (size_t)L + 2;
    x->tp_of = et_xcalloc(l1, sizeof(int));
    x->first = et_xcalloc(l1, sizeof(int));
    x->need = et_xcalloc(l1, sizeof(uint64_t));
    x->params = et_xcalloc(l1, sizeof(uint64_t));
    x->bytes = et_xcalloc(l1, sizeof(double));
    x->cap = et_xcalloc((size_t)K, sizeof(int));
    x->used = et_xcalloc((size_t)K, sizeof(int));
    rstate_alloc(&x->r0, L);
    rstate_alloc(&x->rc, L);
    x->ps0 = et_xcalloc(l1, sizeof(psum));
    x->psc = et_xcalloc(l1, sizeof(psum));
    x->all_dec = et_xcalloc(l1, sizeof(lm_link));
    x->pick = et_xcalloc((size_t)n + 1, sizeof(int));
    x->ucnt = et_xcalloc(l1 * (size_t)K, sizeof(int));
    x->dp_link = et_xcalloc(l1, sizeof(lm_link));
    x->dp_saved = et_xcalloc((size_t)(n + 1) * l1, sizeof(lm_link));
    x->ucache_n = 1 << 12;
    x->ucache_len = 2 * (n + 1) + 3;
    x->ucache_key = et_xcalloc((size_t)x->ucache_n, sizeof(uint64_t));
    x->ucache_val = et_xcalloc((size_t)x->ucache_n * (size_t)(2 * (n + 1) + 3 + K), sizeof(double));
    x->scr_u = et_xcalloc(l1, sizeof(double));
    x->scr_g = et_xcalloc((size_t)n + 2, sizeof(double));
    x->scr_p = et_xcalloc((size_t)n + 2, sizeof(double));
    x->scr_c = et_xcalloc((size_t)n + 2, sizeof(double));
    x->scr_d = et_xcalloc((size_t)K, sizeof(double));
    x->scr_i = et_xcalloc((size_t)K, sizeof(int));
    x->scr_h = et_xcalloc(l1, sizeof(int));
    x->best_first = et_xcalloc(l1, sizeof(int));
    x->best_tp = et_xcalloc(l1, sizeof(int));
    x->best_comp = et_xcalloc((size_t)(n + 1) * l1, sizeof(int));
    x->best = INFINITY;
}

static void ctx_free(ctx *x)
{
    for (int k = 0; k < x->K; k++)
        free(x->cls_members[k]);
    free(x->cls_members);
    free(x->cls_n);
    free(x->cls_gflops);
    free(x->cls_mem);
    free(x->cls_order);
    free(x->cl_link);
    for (int i = 0; i < x->n_comps; i++) {
        free(x->comps[i].cnt);
        free(x->comps[i].cls);
    }
    free(x->comps);
    for (int t = 0; t <= 64; t++)
        free(x->comps_of_t[t]);
    free(x->by_ef);
    free(x->by_eb);
    free(x->tp_of);
    free(x->first);
    free(x->need);
    free(x->params);
    free(x->bytes);
    free(x->cap);
    free(x->used);
    rstate_free(&x->r0);
    rstate_free(&x->rc);
    free(x->ps0);
    free(x->psc);
    free(x->all_dec);
    free_cands(x);
    free(x->cands);
    free(x->pick);
    free(x->ucnt);
    free(x->dp_link);
    free(x->dp_saved);
    free(x->ucache_key);
    free(x->ucache_val);
    free(x->scr_u);
    free(x->scr_g);
    free(x->scr_p);
    free(x->scr_c);
    free(x->scr_d);
    free(x->scr_i);
    free(x->scr_h);
    free(x->best_first);
    free(x->best_tp);
    free(x->best_comp);
}

/* ------------------------------------------------------------ baselines */

/* R = 1 pipeline over servers[0..S-1], one server per stage, layers split
 * evenly (the first L mod S stages one more). */
static et_plan *even_pipeline(const et_config *cfg, const int *servers, int S, int mb, int sched)
{
    int L = cfg->model.n_layer, *tp = et_xmalloc((size_t)S * sizeof(int));
    for (int s = 0; s < S; s++)
        tp[s] = 1;
    et_plan *p = plan_new(1, S, tp, cfg->cluster.n_servers);
    free(tp);
    int start = 0;
    for (int s = 0; s < S; s++) {
        int n = L / S + (s < L % S ? 1 : 0);
        p->first[s] = start;
        p->last[s] = start + n - 1;
        start += n;
        plan_group(p, 0, s)[0] = servers[s];
    }
    p->schedule = sched;
    p->micro_batch = mb;
    p->micro_batches = cfg->training.global_batch / mb;
    return p;
}

/* Evaluate p with its micro_batch; with an `auto` micro-batch try every
 * divisor of global_batch/R and keep the fastest that fits (else the fastest). */
static double eval_baseline(const et_config *cfg, et_plan *p)
{
    int G = cfg->training.global_batch, R = p->n_replicas;
    cm_model m;
    if (cfg->training.micro_batch > 0) {
        cm_model_init(&m, &cfg->model, p->micro_batch, cfg->training.seq_len);
        return cm_evaluate(&m, &cfg->cluster, p);
    }
    int best_mb = 1, best_fit = 0;
    double best = INFINITY;
    for (int mb = 1; mb <= G / R; mb++) {
        if ((G / R) % mb)
            continue;
        p->micro_batch = mb;
        p->micro_batches = G / (R * mb);
        cm_model_init(&m, &cfg->model, mb, cfg->training.seq_len);
        double t = cm_evaluate(&m, &cfg->cluster, p);
        if ((p->fits && !best_fit) || (p->fits == best_fit && t < best)) {
            best = t;
            best_mb = mb;
            best_fit = p->fits;
        }
    }
    p->micro_batch = best_mb;
    p->micro_batches = G / (R * best_mb);
    cm_model_init(&m, &cfg->model, best_mb, cfg->training.seq_len);
    return cm_evaluate(&m, &cfg->cluster, p);
}

/* Server indices sorted by gflops, fastest first (config order on ties). */
static void fastest_first(const et_cluster *c, int *idx)
{
    int n = c->n_servers;
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && c->servers[idx[j]].gflops > c->servers[idx[j - 1]].gflops; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
}

/* The three splits a user would try by hand (DESIGN.md §3). */
static void baselines(const et_config *cfg, planner_result *res)
{
    const et_cluster *c = &cfg->cluster;
    int n = c->n_servers, L = cfg->model.n_layer, G = cfg->training.global_batch;
    int mb0 = cfg->training.micro_batch > 0 ? cfg->training.micro_batch : 1;
    int sched = cfg->parallel.schedule ? cfg->parallel.schedule : ET_SCHED_1F1B;
    int *idx = et_xmalloc((size_t)n * sizeof(int)), *order = et_xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++)
        order[i] = i;

    planner_baseline *b = &res->base[PLANNER_EVEN];
    int S = n < L ? n : L;
    snprintf(b->name, sizeof b->name, "even PP over all");
    b->plan = even_pipeline(cfg, order, S, mb0, sched);
    eval_baseline(cfg, b->plan);
    snprintf(b->detail, sizeof b->detail, "%d stages in config order, %d-%d layers each, no TP/DP", S, L / S,
             L / S + (L % S ? 1 : 0));

    b = &res->base[PLANNER_MEGATRON];
    snprintf(b->name, sizeof b->name, "equal PP, fastest k");
    fastest_first(c, idx);
    et_plan *keep = NULL;
    int keep_k = 0;
    for (int k = 1; k <= S; k++) {
        et_plan *p = even_pipeline(cfg, idx, k, mb0, sched);
        double t = eval_baseline(cfg, p);
        if (keep == NULL || (p->fits && !keep->fits) || (p->fits == keep->fits && t < keep->pred.step_s)) {
            plan_free(keep);
            keep = p;
            keep_k = k;
        } else {
            plan_free(p);
        }
    }
    b->plan = keep;
    snprintf(b->detail, sizeof b->detail, "best k = %d of the fastest servers, equal layers (Megatron-style)",
             keep_k);

    b = &res->base[PLANNER_DATA];
    snprintf(b->name, sizeof b->name, "pure data parallel");
    int R = 0;
    for (int r = n; r >= 1 && R == 0; r--)
        if (G % r == 0 && (cfg->training.micro_batch <= 0 || (G / r) % mb0 == 0))
            R = r;
    if (R == 0) {
        snprintf(b->detail, sizeof b->detail, "no replica count divides global_batch %d", G);
    } else {
        int one = 1;
        et_plan *p = plan_new(R, 1, &one, n);
        p->first[0] = 0;
        p->last[0] = L - 1;
        for (int r = 0; r < R; r++)
            plan_group(p, r, 0)[0] = idx[r];
        p->schedule = sched;
        p->micro_batch = mb0;
        p->micro_batches = G / (R * mb0);
        eval_baseline(cfg, p);
        b->plan = p;
        snprintf(b->detail, sizeof b->detail, "%d replicas of the whole model on the fastest servers", R);
    }
    free(idx);
    free(order);
}

/* ------------------------------------------------------------ entry */

/* Bytes per server on the finest even split the cluster can host (for the
 * "does not fit" message). */
static uint64_t finest_need(const ctx *x)
{
    uint64_t best = UINT64_MAX;
    int mb = x->cfg->training.micro_batch > 0 ? x->cfg->training.micro_batch : 1;
    cm_model m;
    cm_model_init(&m, x->g, mb, x->cfg->training.seq_len);
    int M = x->G / mb;
    for (int i = 0; i < x->n_tps; i++) {
        int t = x->tps[i], S = x->n / t < x->L ? x->n / t : x->L;
        if (S < 1)
            continue;
        uint64_t worst = 0;
        for (int s = 0; s < S; s++) {
            int nl = x->L / S + (s < x->L % S ? 1 : 0);
            uint64_t need = cm_stage_memory(&m, nl, s == 0, s == S - 1, t, S,
                                            sched_max_in_flight(ET_SCHED_1F1B, s, S, M));
            if (need > worst)
                worst = need;
        }
        if (worst < best)
            best = worst;
    }
    return best;
}

/* Check the pins against the model and the cluster. */
static int check_pins(const et_config *cfg, et_err *e)
{
    const et_parallel *pp = &cfg->parallel;
    const gpt2_config *g = &cfg->model;
    int n = cfg->cluster.n_servers, G = cfg->training.global_batch, mb = cfg->training.micro_batch;
    if (pp->pipeline > g->n_layer)
        return et_errf(e, ET_EINPUT, "%s: parallel.pipeline is %d but the model has %d layers "
                       "(at most one stage per layer)", cfg->path, pp->pipeline, g->n_layer);
    if (pp->tensor > 0 && (g->n_head % pp->tensor || (4 * g->n_embd) % pp->tensor))
        return et_errf(e, ET_EINPUT, "%s: parallel.tensor is %d but the tensor-parallel degree must divide "
                       "n_head (%d) and 4*n_embd (%d)", cfg->path, pp->tensor, g->n_head, 4 * g->n_embd);
    if (pp->data > 0 && G % pp->data)
        return et_errf(e, ET_EINPUT, "%s: parallel.data is %d but it must divide global_batch (%d)",
                       cfg->path, pp->data, G);
    if (pp->data > 0 && mb > 0 && (G / pp->data) % mb)
        return et_errf(e, ET_EINPUT, "%s: parallel.data %d x micro_batch %d does not divide global_batch %d "
                       "(global_batch = replicas x micro-batches x micro_batch)", cfg->path, pp->data, mb, G);
    int need = (pp->data > 0 ? pp->data : 1) * (pp->pipeline > 0 ? pp->pipeline : 1) *
               (pp->tensor > 0 ? pp->tensor : 1);
    if (need > n)
        return et_errf(e, ET_EINPUT, "%s: parallel pins need %d servers (data x pipeline x tensor) but the "
                       "cluster has %d", cfg->path, need, n);
    return 0;
}

int planner_plan(const et_config *cfg, const planner_opts *o, planner_result *res, et_err *e)
{
    double t0 = now_s();
    memset(res, 0, sizeof *res);
    if (check_pins(cfg, e) < 0)
        return -1;
    int n = cfg->cluster.n_servers, maxx = o->max_exhaustive > 0 ? o->max_exhaustive : 8;
    if (o->exhaustive && n > maxx)
        return et_errf(e, ET_EINPUT, "%s: exhaustive search is limited to %d servers, the cluster has %d "
                       "(drop --exhaustive)", cfg->path, maxx, n);
    ctx x;
    ctx_init(&x, cfg, o->exhaustive);
    int L = x.L;

    /* every shape the pins allow */
    int cap_sh = 64, n_sh = 0;
    shape *sh = et_xmalloc((size_t)cap_sh * sizeof(shape));
    for (int sc = ET_SCHED_GPIPE; sc <= ET_SCHED_1F1B; sc++) {
        if (cfg->parallel.schedule && sc != cfg->parallel.schedule)
            continue;
        for (int R = 1; R <= n; R++) {
            if (x.G % R || (cfg->parallel.data > 0 && R != cfg->parallel.data))
                continue;
            for (int mb = 1; mb <= x.G / R; mb++) {
                if ((x.G / R) % mb || (cfg->training.micro_batch > 0 && mb != cfg->training.micro_batch))
                    continue;
                for (int S = 1; S <= L && R * S <= n; S++) {
                    if (cfg->parallel.pipeline > 0 && S != cfg->parallel.pipeline)
                        continue;
                    if (n_sh == cap_sh) {
                        cap_sh *= 2;
                        sh = et_xrealloc(sh, (size_t)cap_sh * sizeof(shape));
                    }
                    sh[n_sh++] = (shape){sc, R, mb, S, 0.0};
                }
            }
        }
    }
    if (o->exhaustive) {
        for (int i = 0; i < n_sh; i++)
            exhaustive_shape(&x, &sh[i]);
    } else {
        for (int i = 0; i < n_sh; i++)
            sh[i].lb = shape_lb(&x, &sh[i]);
        qsort(sh, (size_t)n_sh, sizeof *sh, by_lb);
        /* pass 1: a few hundred nodes per shape, most promising first, for a
         * good incumbent; pass 2: the exact search, cutting with it. A shape
         * the time budget cuts short keeps its root bound as the floor. */
        x.deadline = t0 + (o->max_seconds > 0 ? o->max_seconds : 30.0);
        res->lower_bound = INFINITY;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < n_sh; i++) {
                if (sh[i].lb >= x.best)
                    continue;
                if (x.timed_out) {
                    if (pass == 1 && sh[i].lb < res->lower_bound)
                        res->lower_bound = sh[i].lb;
                    continue;
                }
                shape_enter(&x, &sh[i], 1);
                x.stop_at = pass == 0 ? x.nodes + 300 : 0;
                dfs0(&x, 0, 0);
                shape_leave(&x);
                if (pass == 1 && x.timed_out && sh[i].lb < res->lower_bound)
                    res->lower_bound = sh[i].lb;
            }
        x.stop_at = 0;
    }
    res->proven = !x.timed_out;
    if (res->proven || x.best < res->lower_bound)
        res->lower_bound = x.best;
    free(sh);

    for (int i = 0; i < n; i++)
        if (cfg->cluster.servers[i].memory > res->max_memory)
            res->max_memory = cfg->cluster.servers[i].memory;
    if (isfinite(x.best)) {
        res->best = materialise(&x);
        cm_model m;
        cm_model_init(&m, x.g, res->best->micro_batch, cfg->training.seq_len);
        cm_evaluate(&m, x.c, res->best);
    } else {
        res->min_need = finest_need(&x);
    }
    res->nodes = x.nodes;
    res->leaves = x.leaves;
    double found = isfinite(x.best) ? x.found_at - t0 : -1.0;
    ctx_free(&x);
    if (!o->no_baselines)
        baselines(cfg, res);
    res->seconds = now_s() - t0;
    res->found_s = found >= 0.0 ? found : res->seconds;
    return 0;
}

void planner_result_free(planner_result *res)
{
    if (res == NULL)
        return;
    plan_free(res->best);
    for (int i = 0; i < PLANNER_N_BASELINES; i++)
        plan_free(res->base[i].plan);
    memset(res, 0, sizeof *res);
}
