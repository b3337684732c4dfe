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
 *    Step = P0 + sync. A branch is cut when a lower bound of every plan below
 *    it is not below the best plan found (the incumbent, U); only strictly
 *    better plans matter, so a bound may assume the plan beats U.
 *
 * 3. Paths. The pipeline makespan is the longest path of a DAG whose node
 *    weights are the op costs (FWD/BWD per stage, link serialisation) and
 *    whose edge weights are latencies; raising a cost never shortens it.
 *    Notation: X_k = F_k + B_k of stage k, c_k = latency + serialisation of
 *    one boundary tensor between stages k and k+1, SUM = sum X + 2 sum c,
 *    w_k = min(S-1-k, M) 1F1B warm-up forwards, n_k = M-1-w_k its steady
 *    rounds after the first. Both schedules: the path through all of
 *    stage k's ops gives P >= sum_{j<k}(X_j + 2c_j) + M X_k (path_k). Every
 *    path below starts with micro-batch 0's forward through all stages and
 *    ends with micro-batch M-1's backward down to stage 0, so P >= SUM + D
 *    for each D:
 *      - GPipe: exactly D = (M-1)(max F' + max B') (F', B' with the links'
 *        serialisation; longest-path argument, tested against the simulator);
 *      - any schedule, boundary k: its channel carries M messages one after
 *        another, D = (M-1) ser_k;
 *      - 1F1B "one": stage k's ops after its first forward,
 *        D = (M-1)B_k + max(0, n_k)F_k >= (M-1 - min(w_k, M)/2) X_k (F <= B:
 *        backward compute is twice forward, TP all-reduces equal both ways);
 *        for the last stage (M-1) X;
 *      - 1F1B "pair cycle" (w_k = S-1-k, n_k >= 0): stage k's B(i+2) starts
 *        after its B(i), F(w+i+1), the activation over link k, stage k+1's
 *        F and B of that round and the gradient back, so two rounds take at
 *        least X_k + X_{k+1} + 2c_k:
 *        D = w_k B_k + floor(n/2)(X_k + X_{k+1} + 2c_k) + (n mod 2) X_k;
 *      - 1F1B "up-excursion" (w_k = S-1-k, n_k >= 1): after stage k's last
 *        steady forward F(M-1), micro-batch M-1 goes up to the last stage
 *        and back: D = G + X_k + U_k, U_k = sum_{j>k} X_j + 2 sum_{j>=k} c_j,
 *        G the n_k - 1 steady rounds before it (each X_k, or pairs as above).
 *        Since U_k = SUM - (prefix through k), P >= 2 SUM + up with
 *        up = G + X_k - prefix (psum.up). It is, e.g., the critical path
 *        of the best 11-stage plan of 48 layers on bench_planner's 64 tiered
 *        servers (a middle stage's steady phase, then the round trip).
 *    Open stages: the decided terms plus bounds of the open ones (below).
 *
 * 4. Bounds of the open stages (q stages, `left` layers, pool = servers
 *    left; the pool search dfs0):
 *      - SUM >= decided + left blocks and the head at the fastest speeds + the
 *        next boundary over the best link to the pool + the rest over the
 *        pool's best pair link;
 *      - integral head: the last stage holds >= 1 block and the head, some
 *        stage ceil(left/q) blocks, or max(h blocks + head, ceil((left-h)/
 *        (q-1)) blocks) minimised over h (head_split);
 *      - relaxations: the q stages share the work continuously at speeds
 *        bounded by V[k] (most summed raw speed of k disjoint groups, a DP
 *        over speed-sorted servers; contiguous blocks are optimal because a
 *        group's value only grows with its slowest member) minimising SUM +
 *        tail (lb_relax); the same in F+B time with V3 (each group worth at
 *        most the best F+B speed, TP all-reduces included, of a fitting group
 *        of its degree whose slowest member is no faster: nondecreasing, so
 *        the same argument) and the head's stage apart: with the tail at
 *        theta the last stage's blocks take <= theta/(M-1) - H and the others
 *        theta/cx, so q groups do at most (tau-b) U[q-1] + b U[q] (Abel
 *        summation with U the concave majorant), and the least of max(SUM +
 *        tail, 2 SUM + up) over theta (convex pieces: kinks and crossings
 *        checked) (lb_relax_x);
 *      - layer capacity (theta_ok): a completion beating U has its open
 *        stages' tail terms below theta = U - sync - SUM, so each open stage
 *        holds at most floor(cap/per-layer F+B) layers (cap theta/(M-1) for
 *        the last after its head, theta/cx else) and what fits its memory at
 *        the most lenient open position; a DP over the speed-sorted servers
 *        (per degree and slowest member the best bounds of shape_tables,
 *        nondecreasing) finds the most layers q groups hold;
 *      - the last stage's group has a member of some class k left: its head
 *        is no faster than k and the embedding link no better than stage 0's
 *        group to k; the least over k (lb_by_last_class);
 *      - forced groups: the R*S groups need that many servers, so the slowest
 *        is at most G[R*S] fast and holds a block; and for R >= 2, the server
 *        ranked R*S by best link is used, so its stage's DP ring is slow.
 *
 * 5. The sync phase: decided groups' optimizer times, each decided stage's
 *    DP ring over the best links the other replicas can still get, the
 *    embedding exchange over the best link from stage 0's group to what the
 *    last stage can use (exact once both are decided), and the norm.
 *
 * 6. The incumbent's pruning, per shape (after every improvement):
 *      - class floors: a class c in a group of degree t costs a plan at
 *        least M X of one block on it (speed <= t g_c, TP ring over c's best
 *        link) or, with S > 1, X + (M+1) ser + 2 lat over c's best link (the
 *        link path: a channel carries M messages one after another), plus
 *        max(its stage's DP ring, the embedding exchange) and its optimizer,
 *        and must fit a block's memory somewhere; a class whose floor is >= U
 *        at every degree is dropped from the pool (repeated: fewer servers
 *        only raise the floors);
 *      - capacity: in a plan beating U with pipeline part theta, every group
 *        holds at most h = min(layers with M X <= theta (and the link floor),
 *        layers with DP ring + optimizer <= U - theta, memory) layers, so
 *        its servers carry at most h/t each; R*L layers and R*S groups must
 *        fit. The capacity is piecewise constant in theta and steps up only
 *        where some h does, so checking those thetas decides it.
 *
 * 7. Multisets (ms_*). After the pruning, when at most a dozen group types
 *    fit, replica 0's groups are enumerated as multisets of types (counts
 *    within the classes), each with its own bound, and searched in bound
 *    order; dfs0 then orders a multiset's groups and gives them layers.
 *    Every replica 0 has exactly one multiset, and choosing a type per
 *    position covers all its orders (identical groups are interchangeable).
 *    With the open groups known exactly (ms_bound):
 *      - links: every open group has an incoming boundary from a possible
 *        predecessor (the decided stage or an open group), at least its
 *        cheapest transfer;
 *      - the last stage is of some open type: its head, its embedding link
 *        with stage 0, its pair cycle with stage S-2; the least over types;
 *      - SUM: the least F+B of `left` layers on the open groups, one each and
 *        the rest on the cheapest layers within their caps (greedy is optimal
 *        for per-group caps). A completion beating U has its tail below
 *        th = U - sync - (SUM with no caps), so its F+B is at least the least
 *        under th's caps (two steps);
 *      - tail: the open stages hold `left` layers within the caps of theta =
 *        U - sync - SUM (else no completion beats U): per type as in 4, by
 *        position (a DP over the counts placed in position order: stage k
 *        gets cap theta/(M-1 - min(w_k, M)/2) and its memory at k), and, 1F1B
 *        with q <= M-1, the up-excursions of every open stage give by
 *        induction sum_{j>=k} X_j <= (S-k) theta/(M-1), so the least F+B of
 *        the open stages is at most q theta/(M-1).
 *
 * The exhaustive search shares none of this: it enumerates servers, cuts and
 * TP degrees literally and calls cm_step_time on each plan.
 *
 * Ties: replicas with equal makespans are compared with a 1e-12 relative
 * slack (bounds computed in another order may exceed by an ulp).
 *
 * Speed (heuristics: none changes what is proven). A first incumbent from a
 * proportional single-replica plan per shape, improved by a local search
 * (move a layer, swap two stages or their groups, move a stage to another
 * class; also run on every new incumbent of a single-replica shape). Shapes
 * (schedule, R, micro_batch, S) get rounds of node budgets growing 8x, in
 * the order of their root bounds; a shape whose search ends within its
 * budget is done. The worst case is exponential: a cluster of many distinct
 * servers has too many groups to enumerate (more than PLANNER_MAX_GROUPS of
 * some TP degree): those degrees are not searched, the bounds count such
 * groups at their raw speed, and the result is returned with proven = 0 and
 * a lower bound no plan can beat; so is a search cut by the time budget
 * (planner_opts.max_seconds).
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

static double dmin(double a, double b)
{
    return a < b ? a : b;
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
    double e3;           /* FLOP/s on a block's forward + backward together (per shape) */
    double xb, hx;       /* F+B of one block, of the head (per shape) */
    int mc_o, mc_l;      /* most layers that fit a non-last / the last position (per shape) */
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
    double one;          /* 1F1B: max over k of the stage and pair-cycle terms (header comment) */
    double lastf, lastb; /* F and B of the last decided stage */
    double lastpre;      /* prefix before the last decided stage (its link included) */
    double up;           /* 1F1B: max over k of the up-excursion term minus P_{k+1} (header comment) */
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
    int *pt_order;       /* [K*K] per class, the classes by transfer of a boundary tensor (per shape) */
    int *ps_order;       /* [K*K] per class, the classes by link bandwidth, fastest first */
    lm_link *cl_link;    /* [K*K], diagonal: intra-class */
    lm_link best_link;   /* fastest link between two distinct servers */
    /* groups */
    int tps[64], n_tps, tmax;
    int tp_drop[65];     /* degrees whose groups are not enumerated (build_comps) */
    int inexact;         /* some are not: the search does not cover every plan */
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
    double *scr_u, *scr_g, *scr_p, *scr_c, *scr_d, *scr_w3, *scr_cand;
    int *scr_rank, *scr_vo, *scr_dp;
    /* multiset search (ms_*): replica 0's groups fixed as counts of types */
    int ms_on, ms_nt;
    int *ms_type;        /* [n_comps] comp index of each type */
    int *ms_rem;         /* [n_comps] groups of each type not placed yet */
    int *ms_cnt;         /* [n_comps] scratch counts while enumerating */
    int *ms_slots;       /* [n_comps] scratch */
    int *ms_tix;         /* [n_comps] type index of a comp (-1: none) */
    int *ms_act, ms_na;  /* the types of the current multiset */
    int ms_pf[4096];     /* ms_positions_ok's DP */
    int ms_posq;         /* run it with at least this many stages open */
    int *ms_mem;         /* [type * S + s] most layers a group of the type holds at stage s */
    double *ms_xf;       /* [nt*nt] one boundary tensor's transfer between two types' groups */
    double *ms_emb;      /* [nt*nt] embedding-exchange floor with these first and last groups */
    double *ms_xb;       /* [n_comps] scratch */
    int *ms_store;       /* collected multisets: ms_nt counts each */
    double *ms_lb;       /* their bounds */
    int ms_n, ms_cap;
    long ms_evals;       /* multisets bounded (for the time checks) */

    int *ls_comp, *ls_first, *ls_lay;   /* local search scratch [S], [S+1], [S] */
    long ls_evals;       /* evaluations the current local search may still make */
    /* per-shape group bounds by degree and class rank (shape_tables) */
    double *tb_xb, *tb_hx;
    int *tb_mo, *tb_ml;
    int *scr_i, *scr_h;
    /* best */
    double best;
    int best_R, best_S, best_mb, best_sched, best_M;
    int *best_first, *best_tp, *best_comp;
    /* stats, the first pass's node budget, the time budget */
    long nodes, leaves, stop_at;
    int stopped;         /* the node budget (stop_at) cut the current shape short */
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

/* How many class-count vectors of degree t the cluster has (capped at
 * `limit` + 1). */
static long count_comps(const ctx *x, int t, long limit)
{
    long *w = et_xcalloc((size_t)t + 1, sizeof(long)), *nw = et_xcalloc((size_t)t + 1, sizeof(long));
    w[0] = 1;
    for (int k = 0; k < x->K; k++) {
        for (int u = 0; u <= t; u++) {
            long v = 0;
            for (int c = 0; c <= x->cls_n[k] && c <= u && v <= limit; c++)
                v += w[u - c];
            nw[u] = v > limit ? limit + 1 : v;
        }
        long *tmp = w;
        w = nw;
        nw = tmp;
    }
    long r = w[t];
    free(w);
    free(nw);
    return r;
}

/* Every group of every allowed degree as class counts, fastest first per
 * degree. A degree with more than PLANNER_MAX_GROUPS of them (clusters of
 * many distinct servers) is not enumerated: plans using it are not
 * searched, the bounds count such groups at their raw speed, and the
 * result is not claimed optimal (tp_drop, inexact). */
#define PLANNER_MAX_GROUPS 20000
static void build_comps(ctx *x)
{
    int *cnt = et_xcalloc((size_t)x->K, sizeof(int));
    for (int i = 0; i < x->n_tps; i++) {
        int t = x->tps[i], start = x->n_comps;
        if (t > 1 && count_comps(x, t, PLANNER_MAX_GROUPS) > PLANNER_MAX_GROUPS) {
            x->tp_drop[t] = 1;
            x->inexact = 1;
        } else {
            gen_comps(x, t, 0, t, cnt);
        }
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

/* The most layers (<= L) a worker of degree t at stage s can hold in mem
 * bytes (the need is affine in the layer count from one layer on). */
static int layers_fitting(const ctx *x, int embed, int head, int t, int s, uint64_t mem)
{
    int S = x->S, inf = sched_max_in_flight(x->sched, s, S, x->M);
    uint64_t n1 = cm_stage_memory(&x->m, 1, embed, head, t, S, inf);
    if (n1 > mem)
        return 0;
    uint64_t d = cm_stage_memory(&x->m, 2, embed, head, t, S, inf) - n1;
    uint64_t more = d ? (mem - n1) / d : (uint64_t)x->L;
    return more + 1 >= (uint64_t)x->L ? x->L : (int)more + 1;
}

/* Effective block speeds of every group for the shape's micro-batch: a
 * block's FLOPs over its time on the group, TP all-reduces included. */
static const ctx *link_ctx;
static int link_row;

/* Partners of class link_row: smaller transfer of a boundary tensor first. */
static int by_transfer(const void *a, const void *b)
{
    const ctx *x = link_ctx;
    double p = lm_transfer_s(x->cl_link[link_row * x->K + *(const int *)a], x->m.boundary_bytes);
    double q = lm_transfer_s(x->cl_link[link_row * x->K + *(const int *)b], x->m.boundary_bytes);
    return p < q ? -1 : p > q ? 1 : 0;
}

/* Partners of class link_row: larger bandwidth first. */
static int by_bandwidth(const void *a, const void *b)
{
    const ctx *x = link_ctx;
    double p = x->cl_link[link_row * x->K + *(const int *)a].bandwidth;
    double q = x->cl_link[link_row * x->K + *(const int *)b].bandwidth;
    return p > q ? -1 : p < q ? 1 : 0;
}

static void shape_speeds(ctx *x)
{
    x->shape_gen++;   /* cached ef/eb are stale now */
    int K = x->K;
    link_ctx = x;
    for (int a = 0; a < K; a++) {
        link_row = a;
        for (int b = 0; b < K; b++)
            x->pt_order[a * K + b] = x->ps_order[a * K + b] = b;
        qsort(x->pt_order + a * K, (size_t)K, sizeof(int), by_transfer);
        qsort(x->ps_order + a * K, (size_t)K, sizeof(int), by_bandwidth);
    }
    for (int i = 0; i < x->n_comps; i++) {
        comp *q = &x->comps[i];
        double rate = q->gflops * 1e9;
        double ar = 2.0 * lm_ring_allreduce_s(q->tp_link, x->m.tp_bytes, q->t);
        q->ef = x->m.block_fwd_flops / (x->m.block_fwd_flops / q->t / rate + ar);
        q->eb = x->m.block_bwd_flops / (x->m.block_bwd_flops / q->t / rate + ar);
        double fb = x->m.block_fwd_flops + x->m.block_bwd_flops;
        q->e3 = fb / (fb / q->t / rate + 2.0 * ar);
        q->xb = fb / q->e3;
        q->hx = (x->m.head_fwd_flops + x->m.head_bwd_flops) / rate;
        /* the most lenient non-last position is S-2 (fewest micro-batches in
         * flight, no embedding unless it is stage 0) */
        int so = x->S >= 2 ? x->S - 2 : 0;
        q->mc_o = x->S >= 2 ? layers_fitting(x, so == 0, 0, q->t, so, q->memory) : 0;
        q->mc_l = layers_fitting(x, x->S == 1, 1, q->t, x->S - 1, q->memory);
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
    const double *V3;    /* V3[k]: most summed F+B speed (TP included) of k disjoint groups left */
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
 * still fits, and V3 (most summed F+B speed of k disjoint groups, TP
 * included), stored after V and G in a cache entry with the shape
 * generation they were computed for. Degrees not enumerated count at
 * their raw speed. */
static void fastest_fitting(ctx *x, double *val)
{
    int n = x->n, K = x->K;
    double ef = 0.0, eb = 0.0;
    for (int i = 0; i < x->n_comps && ef == 0.0; i++)
        if (comp_fits(x, &x->comps[x->by_ef[i]]))
            ef = x->comps[x->by_ef[i]].ef;
    for (int i = 0; i < x->n_comps && eb == 0.0; i++)
        if (comp_fits(x, &x->comps[x->by_eb[i]]))
            eb = x->comps[x->by_eb[i]].eb;
    /* degrees not enumerated: t times the t-th fastest server left */
    if (x->inexact) {
        int m = 0;
        for (int r = 0; r < K; r++)
            for (int c = 0; c < x->cap[x->cls_order[r]]; c++) {
                m++;
                if (m <= 64 && x->tp_drop[m]) {
                    ef = dmax(ef, m * x->cls_gflops[x->cls_order[r]] * 1e9);
                    eb = dmax(eb, m * x->cls_gflops[x->cls_order[r]] * 1e9);
                }
            }
    }
    val[2 * (n + 1)] = ef;
    val[2 * (n + 1) + 1] = eb;
    val[2 * (n + 1) + 2] = (double)x->shape_gen;
    /* V3 (after gen): as V, with each group worth at most the best F+B speed
     * of a fitting group of its degree whose slowest member is no faster
     * (nondecreasing in the slowest member, so the contiguous-block argument
     * holds) */
    double *w3 = x->scr_w3;   /* [n_tps][K], classes by rank */
    for (int i = 0; i < x->n_tps * K; i++)
        w3[i] = 0.0;
    int aof[65] = {0};
    for (int a = 0; a < x->n_tps; a++)
        aof[x->tps[a]] = a;
    for (int i = 0; i < x->n_comps; i++) {
        const comp *q = &x->comps[i];
        if (!comp_fits(x, q))
            continue;
        for (int r = 0; r < K; r++)
            if (x->cls_gflops[x->cls_order[r]] >= q->gflops && q->e3 > w3[aof[q->t] * K + r])
                w3[aof[q->t] * K + r] = q->e3;
    }
    for (int a = 0; a < x->n_tps; a++)
        if (x->tp_drop[x->tps[a]])
            for (int r = 0; r < K; r++)
                w3[a * K + r] = x->tps[a] * x->cls_gflops[x->cls_order[r]] * 1e9;
    double *V3 = val + 2 * (n + 1) + 3;
    int *rk = x->scr_rank, m = 0;
    for (int r = 0; r < K; r++)
        for (int c = 0; c < x->cap[x->cls_order[r]]; c++)
            rk[++m] = r;
    double *prev = x->scr_p, *cur = x->scr_c;
    for (int j = 0; j <= m; j++)
        prev[j] = j == 0 ? 0.0 : -1.0;
    V3[0] = 0.0;
    for (int k = 1; k <= n; k++) {
        double bk = V3[k - 1];
        for (int j = 0; j <= m; j++) {
            cur[j] = -1.0;
            for (int a = 0; a < x->n_tps; a++) {
                int t = x->tps[a];
                if (t <= j && prev[j - t] >= 0.0 && w3[a * K + rk[j]] > 0.0)
                    cur[j] = dmax(cur[j], prev[j - t] + w3[a * K + rk[j]]);
            }
            bk = dmax(bk, cur[j]);
        }
        V3[k] = bk;
        double *tmp = prev;
        prev = cur;
        cur = tmp;
    }
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
    if (K * x->n_tps > 48) {
        /* many classes: the slowest of k groups is at most their mean */
        for (int k = 1; k <= n; k++)
            G[k] = val[k] / k;
    }
    for (int i = 0; i < K && K * x->n_tps <= 48; i++) {
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
    pl->V3 = pl->V + 2 * (n + 1) + 3;
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
    int K = x->K;
    for (int a = 0; a < K; a++) {
        if (x->cap[a] == 0)
            continue;
        /* each class's partners sorted by transfer and by serialisation
         * (shape_speeds): the first one left is its best */
        for (int j = 0; j < K; j++) {
            int b = x->pt_order[a * K + j];
            if (x->cap[b] > 0 && (b != a || x->cap[a] >= 2)) {
                pl->pair_xfer = dmin(pl->pair_xfer, 2.0 * lm_transfer_s(x->cl_link[a * K + b], x->m.boundary_bytes));
                break;
            }
        }
        for (int j = 0; j < K; j++) {
            int b = x->ps_order[a * K + j];
            if (x->cap[b] > 0 && (b != a || x->cap[a] >= 2)) {
                pl->pair_ser = dmin(pl->pair_ser, lm_serial_s(x->cl_link[a * K + b], x->m.boundary_bytes));
                break;
            }
        }
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

/*
 * 1F1B, stages k and k+1 with the transfer time c of the link between them
 * (see the header comment, "pair cycle"): the makespan is at least
 * sum(F+B) + links + this. 0 when the cycle does not exist (S-1-k > M).
 */
static double pair_cycle(const ctx *x, int k, double fk, double bk, double x1, double c)
{
    int M = x->M, w = x->S - 1 - k, n = M - w - 1;
    if (w > M || n < 0)
        return 0.0;
    return w * bk + (n / 2) * (fk + bk + x1 + 2.0 * c) + (n % 2) * (fk + bk);
}

/*
 * The last two stages of a 1F1B pipeline when only they are left, with
 * together F+B at least x2 (their blocks and the head), the first of them
 * F+B at least x1 and B at least b, and their link's transfer at least c:
 * the pair cycle with X_{S-2} + X_{S-1} >= x2.
 */
static double pair_cycle2(const ctx *x, double x2, double x1, double b, double c)
{
    int M = x->M, n = M - 2;
    if (n < 0)
        return 0.0;
    return b + (n / 2) * (x2 + 2.0 * c) + (n % 2) * x1;
}

/*
 * Least largest stage time when q stages share `left` blocks of time u
 * each and the last one also the head (time h): the head's stage holds
 * h' >= 1 blocks, some other stage ceil((left - h')/(q - 1)).
 */
static double head_split(int left, int q, double u, double h)
{
    if (q <= 1)
        return left * u + h;
    double best = INFINITY;
    for (int k = 1; k <= left - (q - 1); k++) {
        int rest = (left - k + q - 2) / (q - 1);
        double v = dmax(k * u + h, rest * u);
        if (v < best)
            best = v;
        if (k * u + h >= rest * u)
            break;   /* larger k only raises the head's stage */
    }
    return isfinite(best) ? best : left * u + h;
}

/* The summary of no decided stage (no up-excursion path yet). */
static psum psum_empty(void)
{
    psum p = {0};
    p.up = -INFINITY;
    return p;
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
    if (x->sched == ET_SCHED_1F1B) {
        /* the up-excursion path of stage j (and of j-1 with its pair cycle) */
        if (M - 1 - w >= 1)
            p.up = dmax(p.up, (M - 1 - w) * fb - p.prefix);
        if (j > 0) {
            double c = st->lat[j - 1] + st->ser[j - 1], fb0 = st->f[j - 1] + st->b[j - 1];
            p.one = dmax(p.one, pair_cycle(x, j - 1, st->f[j - 1], st->b[j - 1], fb, c));
            int w0 = S - j, n0 = M - 1 - w0;
            if (w0 <= M && n0 >= 1)
                p.up = dmax(p.up, ((n0 - 1) / 2) * (fb0 + fb + 2.0 * c) + ((n0 - 1) % 2) * fb0 + fb0 - p.lastpre);
        }
    }
    p.lastf = st->f[j];
    p.lastb = st->b[j];
    p.lastpre = p.prefix;
    return p;
}

/*
 * U[0..q] in x->scr_u: the most summed speed of k of the q remaining groups
 * (V[k], k capped at the n servers), each group capped at V[share*q]/share
 * (q groups of `share` servers cannot beat their share of the best
 * share*q), then replaced by its least concave majorant (upper hull of the
 * points (k, U_k)), which makes the relaxations convex in tau; larger U
 * only lowers their bounds. Returns x->scr_u.
 */
static double *capped_majorant(const ctx *x, const double *V, int q, int share)
{
    int n = x->n;
    double *U = x->scr_u;
    int qs = share * q < n ? share * q : n;
    double cap = V[qs] / share;
    U[0] = 0.0;
    for (int k = 1; k <= q; k++)
        U[k] = V[k < n ? k : n] < cap ? V[k < n ? k : n] : cap;
    if (!(U[q] > 0.0))
        return U;
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
    return U;
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
    int M = x->M, n = x->n;
    double *U = capped_majorant(x, V, q, share);
    if (!(U[q] > 0.0))
        return INFINITY;
    double c1 = 2.0 * (M - 1) + (M > q ? M - q : 0);   /* 1F1B: (M-1) B + (M-1-w) F, w <= q-1 */
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
 * The same relaxation in F+B time with the head's stage apart (see the
 * header comment, "relaxation with TP and head"): the q stages share the
 * blocks' F+B work W at speeds bounded by V3 (tensor-parallel all-reduces
 * included). With the tail at theta, the last stage's block part is at
 * most b = theta/(M-1) - H (it also runs the head, H) and every other one
 * at most tau = theta/cx, cx = M-1 - w/2 with w <= q-1 (1F1B, B >= F) or
 * M-1 (GPipe); q groups with such caps do at most (tau - b) U[q-1] + b U[q]
 * of work (U the concave majorant of V3; the smallest cap on the slowest
 * group is the best case). Sum of F+B: f(max cap) as in lb_relax.
 * dec: decided prefix and links; mfb: GPipe's decided F'+B' floor.
 */
static double lb_relax_x(const ctx *x, const double *V3, double W, double H, int q, int share, double dec,
                         double mfb, double one, double up)
{
    int M = x->M;
    double *U = capped_majorant(x, V3, q, share);
    if (!(U[q] > 0.0) || M < 2)
        return dec + H;
    int w = q - 1 < M ? q - 1 : M;
    double cx = x->sched == ET_SCHED_GPIPE ? M - 1.0 : (M - 1) - 0.5 * w;
    double ml = M - 1.0;
    /* the least feasible theta */
    double th;
    if (q == 1) {
        th = ml * (W / U[1] + H);
    } else {
        double d = U[q] - U[q - 1];
        th = W * cx / U[q - 1];
        if (th > ml * H)
            th = (W + H * d) / (U[q - 1] / cx + d / ml);
    }
    if (!isfinite(th))
        return INFINITY;
    /* the bound as a function of theta is the larger of two convex
     * piecewise-linear functions (the tail path and the up-excursion path);
     * its least value is at th, at a kink of either, or where they cross */
    double *cand = x->scr_cand;
    int nc = 0;
    cand[nc++] = th;
    for (int i = 1; i <= q; i++)
        cand[nc++] = q > 1 ? cx * W / U[i] : ml * (W / U[i] + H);
    cand[nc++] = x->sched == ET_SCHED_GPIPE ? ml * mfb : one;
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && cand[j] < cand[j - 1]; j--) {
            double t = cand[j];
            cand[j] = cand[j - 1];
            cand[j - 1] = t;
        }
    double best = INFINITY, pa = 0, pb = 0, pt = -1;
    for (int i = 0; i < nc; i++) {
        double theta = cand[i];
        if (!(theta >= th) || !isfinite(theta))
            continue;
        double tr = q > 1 ? theta / cx : 0.0, b = dmax(0.0, theta / ml - H);
        double tau = dmax(tr, b);
        double c = W / tau, phi = q;
        for (int k = 0; k < q; k++)
            if (c <= U[k + 1]) {
                double du = U[k + 1] - U[k];
                phi = k + (du > 0 ? (c - U[k]) / du : 0.0);
                break;
            }
        double tail = x->sched == ET_SCHED_GPIPE ? dmax(ml * mfb, theta) : dmax(one, theta);
        double sum = dec + H + tau * phi;
        double a = sum + tail, bb = x->sched == ET_SCHED_GPIPE ? 0.0 : 2.0 * sum + up;
        double v = dmax(a, bb);
        if (pt >= 0 && (a - bb) * (pa - pb) < 0) {
            /* both linear between pt and theta: their crossing */
            double r = (pb - pa) / ((a - pa) - (bb - pb));
            double vc = pa + r * (a - pa);
            if (vc < best)
                best = vc;
        }
        if (v < best)
            best = v;
        pa = a;
        pb = bb;
        pt = theta;
    }
    return best;
}

/* Sum of F+B over all stages plus the links both ways, from below, for a
 * replica with q stages holding `left` layers (and the head) still open. */
static double sum_lb(const ctx *x, const psum *p, int q, int left, const pool *pl)
{
    if (q == 0)
        return p->prefix;
    if (!pl->ok)
        return INFINITY;
    return p->prefix + pl->next_link + (q - 1) * pl->pair_xfer + left * x->m.block_fwd_flops / pl->ef +
           left * x->m.block_bwd_flops / pl->eb + (x->m.head_fwd_flops + x->m.head_bwd_flops) / pl->gmax;
}

/*
 * Lower bound of the pipeline makespan of a replica whose decided stages are
 * summarised by p, with q stages holding `left` layers (and the head) still
 * to place on the pool (see the header comment for the paths used).
 */
static double lb_pipe(const ctx *x, const psum *p, int q, int left, const pool *pl, int share, double hg)
{
    int M = x->M, d = x->S - q;
    double lb;
    if (q == 0) {
        lb = x->sched == ET_SCHED_GPIPE ? p->prefix + (M - 1) * (p->mf + p->mb)
                                        : dmax(p->prefix + p->one, 2.0 * p->prefix + p->up);
        return dmax(lb, p->path_k);
    }
    if (!pl->ok)
        return INFINITY;
    double lf = left * x->m.block_fwd_flops, lbw = left * x->m.block_bwd_flops;
    double hf = x->m.head_fwd_flops / hg, hb = x->m.head_bwd_flops / hg;
    /* one block on the fastest group left */
    double f1 = x->m.block_fwd_flops / pl->ef, b1 = x->m.block_bwd_flops / pl->eb;
    /* the q-1 boundaries among the remaining stages (the next one is next_link) */
    double links = pl->next_link + (q - 1) * pl->pair_xfer;
    double sum = p->prefix + links + lf / pl->ef + lbw / pl->eb + hf + hb;
    /* some remaining stage holds at least ceil(left/q) blocks, at most as fast
     * as the fastest group; with the head's stage holding h >= 1 of them, one
     * stage takes at least max(h blocks + head, ceil((left-h)/(q-1)) blocks) */
    int most = (left + q - 1) / q;
    double v1 = pl->V[1] > 0 ? pl->V[1] : INFINITY;
    double hxf = head_split(left, q, f1, hf), hxb = head_split(left, q, b1, hb);
    double remf = dmax(dmax(lf / pl->capf, hxf), most * x->m.block_fwd_flops / v1);
    double remb = dmax(dmax(lbw / pl->capb, hxb), most * x->m.block_bwd_flops / v1);
    /* the last stage's F+B: the head and at least one block (all that is left
     * when it is the only stage left) */
    double xlast = (q == 1 ? left : 1) * (f1 + b1) + hf + hb;
    double one = dmax(p->one, (M - 1) * xlast);
    if (x->sched == ET_SCHED_1F1B) {
        /* pair cycles: the last two stages, and the last decided with the next */
        if (q >= 2) {
            one = dmax(one, pair_cycle(x, x->S - 2, f1, b1, xlast, pl->pair_xfer / 2));
            if (q == 2)
                one = dmax(one, pair_cycle2(x, left * (f1 + b1) + hf + hb, f1 + b1, b1, pl->pair_xfer / 2));
        }
        if (d >= 1)
            one = dmax(one, pair_cycle(x, d - 1, p->lastf, p->lastb, q == 1 ? xlast : f1 + b1, pl->next_link / 2));
    }
    /* GPipe's slowest machine may be a link: each remaining boundary serialises */
    double ser = q >= 2 ? pl->pair_ser : 0.0;
    if (x->sched == ET_SCHED_GPIPE)
        lb = sum + (M - 1) * (dmax(dmax(p->mf, remf), ser) + dmax(dmax(p->mb, remb), ser));
    else   /* (the (M-S) forwards of that stage are in lb_relax, where F and B are tied) */
        lb = sum + dmax(dmax(one, (M - 1) * remb), sum + p->up);
    double r = lb_relax(x, pl->V, lf + x->m.head_fwd_flops, q, share, p->prefix + links, dmax(p->mf, ser),
                        dmax(p->mb, ser), one, most * x->m.block_fwd_flops / v1);
    double r3 = lb_relax_x(x, pl->V3, lf + lbw, hf + hb, q, share, p->prefix + links,
                           dmax(p->mf, ser) + dmax(p->mb, ser), one, p->up);
    return dmax(dmax(lb, dmax(r, r3)), p->path_k);
}

/* Lower bound of stage s's DP all-reduce given replica 0's group there:
 * the other replicas' (R-1) x t servers of the stage come from the pool,
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

/*
 * Floor of replica 0's tied-embedding exchange: a 2-member all-reduce over
 * the link between the first and the last stage's groups, then the larger
 * broadcast inside them. c0/clast: those groups when decided (-1: not yet);
 * an undecided last group comes from the servers left, so the link is no
 * better than the best from c0's classes to a class left.
 */
static double embed_floor(const ctx *x, int c0, int clast, int klast)
{
    double bytes = x->m.embed_grad_bytes;
    if (c0 < 0)
        return lm_ring_allreduce_s(x->best_link, bytes, 2);
    const comp *a = &x->comps[c0];
    double b0 = lm_bcast_s(a->tp_link, bytes, a->t);
    if (clast >= 0) {
        const comp *b = &x->comps[clast];
        return lm_ring_allreduce_s(comp_link(x, c0, clast), bytes, 2) + dmax(b0, lm_bcast_s(b->tp_link, bytes, b->t));
    }
    lm_link best = {0.0, INFINITY};
    for (int k = 0; k < x->K; k++) {
        if (x->cap[k] == 0 || (klast >= 0 && k != klast))
            continue;
        lm_link l = cls_pair_link(x, a->cls, a->ncls, &k, 1);
        best.bandwidth = dmax(best.bandwidth, l.bandwidth);
        best.latency = dmin(best.latency, l.latency);
    }
    if (!isfinite(best.latency))
        return b0;   /* nothing left: no completion, any floor will do */
    return lm_ring_allreduce_s(best, bytes, 2) + b0;
}

/* The parts of the sync bound that do not depend on the current stage's
 * layer count: decided stages' optimizer and DP terms, the embedding and
 * norm floors. */
typedef struct sync_pre {
    double opt, dmax, d0, embed, norm;
} sync_pre;

static void sync_pre_eval(const ctx *x, int s, int servers_dec, int c0, int clast, sync_pre *sp)
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
    if (S > 1)
        sp->embed = embed_floor(x, c0, clast, -1);
    /* workers: the decided ones, one per stage s.., the other replicas' */
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
    psum none = psum_empty();
    return lb_pipe(x, &none, x->S, x->L, &pl, share, pl.gmax);
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

/* The best link class c can have to another server left: the largest
 * bandwidth and the least latency over its pairs (each taken separately,
 * so no real link of c is better in either). Ideal when c is alone. */
static lm_link class_best_link(const ctx *x, int c)
{
    lm_link b = {0.0, INFINITY};
    int any = 0;
    for (int k = 0; k < x->K; k++) {
        if (x->cap[k] == 0 || (k == c && x->cap[k] < 2))
            continue;
        lm_link l = x->cl_link[c * x->K + k];
        b.bandwidth = dmax(b.bandwidth, l.bandwidth);
        if (l.latency < b.latency)
            b.latency = l.latency;
        any = 1;
    }
    return any ? b : lm_link_ideal();
}

/*
 * Least step time of any plan of the shape in which a server of class c
 * is a member of a group of degree t (see the header comment, "class
 * floors"); INFINITY when no such group can hold a stage.
 */
static double class_floor(const ctx *x, int c, int t)
{
    int S = x->S, R = x->R, M = x->M;
    int lmin = S == 1 ? x->L : 1;
    double rate = x->cls_gflops[c] * 1e9;
    lm_link bl = class_best_link(x, c);
    /* memory: lmin layers must fit at some position; the first, the last,
     * and of the middle ones the latest (fewest micro-batches in flight)
     * need the least */
    int fits = layers_fitting(x, 1, S == 1, t, 0, x->cls_mem[c]) >= lmin;
    if (S >= 2)
        fits = fits || layers_fitting(x, 0, 1, t, S - 1, x->cls_mem[c]) >= lmin;
    if (S >= 3)
        fits = fits || layers_fitting(x, 0, 0, t, S - 2, x->cls_mem[c]) >= lmin;
    if (!fits)
        return INFINITY;
    double ar = t > 1 ? lm_ring_allreduce_s(bl, x->m.tp_bytes, t) : 0.0;
    double fb = lmin * (x->m.block_fwd_flops + x->m.block_bwd_flops) / (t * rate) + 4.0 * lmin * ar;
    double pipe = M * fb;
    if (S > 1)
        pipe = dmax(pipe, fb + (M + 1) * lm_serial_s(bl, x->m.boundary_bytes) + 2.0 * bl.latency);
    double params = (double)lmin * (double)cm_block_params_local(x->g, t);
    double dp = R > 1 ? lm_ring_allreduce_s(bl, 4.0 * params, R) : 0.0;
    double embed = S > 1 ? lm_ring_allreduce_s(x->best_link, x->m.embed_grad_bytes, 2) : 0.0;
    double opt = params * CM_OPT_BYTES_PER_PARAM / cm_mem_bw(x->cls_gflops[c]);
    return pipe + dmax(dp, embed) + opt;
}

/*
 * Drop from the pool every class no plan better than the incumbent can
 * use: for every degree its floor is no better. Repeats until nothing
 * changes (a smaller pool only raises the floors). Returns the number of
 * servers left.
 */
static int prune_classes(ctx *x)
{
    for (int changed = 1; changed && isfinite(x->best);) {
        changed = 0;
        for (int c = 0; c < x->K; c++) {
            if (x->cap[c] == 0)
                continue;
            double f = INFINITY;
            for (int i = 0; i < x->n_tps && f >= x->best; i++)
                f = dmin(f, class_floor(x, c, x->tps[i]));
            if (f >= x->best) {
                x->cap[c] = 0;
                changed = 1;
            }
        }
    }
    int left = 0;
    for (int c = 0; c < x->K; c++)
        left += x->cap[c];
    return left;
}

/*
 * Layer capacity (see the header comment, "capacity"): can R replicas of S
 * stages carry their R*L layers when the pipeline part of the step is at
 * most theta and the sync part less than the incumbent minus theta? Each
 * class c at degree t gives a group of degree t containing c at most
 * h = min(layers with M x (F+B) <= theta (and, S > 1, the link floor),
 * layers with DP ring + optimizer <= best - theta, layers that fit its
 * memory at some position) layers, that is h/t per server. Returns 0 when
 * no theta lets the servers left carry R*L layers in R*S groups (no plan of
 * the shape beats the incumbent), else 1.
 */
typedef struct capterm {
    int c, t;
    double tau;          /* M x (F+B) of one layer */
    double lfix;         /* S > 1: the boundary floor (M+1) ser + 2 lat, plus one layer's F+B per layer */
    double lper;         /* F+B of one layer (with lfix) */
    double a, b;         /* sync part of l layers >= a + b l */
    int mcap;            /* most layers that fit the memory at some position */
} capterm;

/* Layers a group of the term's class and degree can hold with the pipeline
 * part at most theta and the sync part at most delta (0 when none). */
static int capterm_layers(const capterm *q, double theta, double delta, int L)
{
    double h = theta / q->tau;
    if (q->lper > 0)
        h = dmin(h, (theta - q->lfix) / q->lper);
    if (q->b > 0)
        h = dmin(h, (delta - q->a) / q->b);
    else if (delta < q->a)
        h = -1;
    int v = h >= L ? L : h >= 0 ? (int)floor(h) : 0;
    return v < q->mcap ? v : q->mcap;
}

/* The capacity test of the entered shape against the incumbent (see
 * above): 0 rules the shape out. */
static int shape_capacity_ok(ctx *x)
{
    int S = x->S, R = x->R, M = x->M, L = x->L, K = x->K;
    if (!isfinite(x->best))
        return 1;
    capterm *tm = et_xmalloc((size_t)(K * x->n_tps + 1) * sizeof(capterm));
    int nt = 0;
    for (int c = 0; c < K; c++) {
        if (x->cap[c] == 0)
            continue;
        lm_link bl = class_best_link(x, c);
        double rate = x->cls_gflops[c] * 1e9;
        for (int i = 0; i < x->n_tps; i++) {
            int t = x->tps[i];
            capterm *q = &tm[nt];
            q->c = c;
            q->t = t;
            double ar = t > 1 ? lm_ring_allreduce_s(bl, x->m.tp_bytes, t) : 0.0;
            double fb = (x->m.block_fwd_flops + x->m.block_bwd_flops) / (t * rate) + 4.0 * ar;
            q->tau = M * fb;
            q->lfix = S > 1 ? (M + 1) * lm_serial_s(bl, x->m.boundary_bytes) + 2.0 * bl.latency : 0.0;
            q->lper = S > 1 ? fb : 0.0;
            double bp = 4.0 * (double)cm_block_params_local(x->g, t);
            q->a = R > 1 ? 2.0 * (R - 1) * bl.latency : 0.0;
            q->b = (R > 1 ? 2.0 * (R - 1) * lm_serial_s(bl, bp / R) : 0.0)
                   + bp / 4.0 * CM_OPT_BYTES_PER_PARAM / cm_mem_bw(x->cls_gflops[c]);
            /* the most lenient positions: the first, the last, and the
             * latest middle one (fewest micro-batches in flight) */
            q->mcap = layers_fitting(x, 1, S == 1, t, 0, x->cls_mem[c]);
            if (S >= 2) {
                int ml = layers_fitting(x, 0, 1, t, S - 1, x->cls_mem[c]);
                q->mcap = ml > q->mcap ? ml : q->mcap;
            }
            if (S >= 3) {
                int mm = layers_fitting(x, 0, 0, t, S - 2, x->cls_mem[c]);
                q->mcap = mm > q->mcap ? mm : q->mcap;
            }
            if (q->mcap > 0)
                nt++;
        }
    }
    double room = x->best;
    int ok = (long)nt * nt * L > 4000000;   /* too many classes to try every theta: no verdict */
    /* candidate thetas: where some pipeline capacity steps up */
    for (int i = 0; i < nt && !ok; i++)
        for (int l = 1; l <= tm[i].mcap && !ok; l++) {
            double theta = dmax(l * tm[i].tau, tm[i].lfix + l * tm[i].lper);
            if (theta >= room)
                break;
            double carry = 0.0;
            int groups = 0;
            for (int j = 0; j < nt;) {   /* the terms come class by class */
                int c = tm[j].c;
                double best_rho = 0.0;
                for (; j < nt && tm[j].c == c; j++) {
                    int h = capterm_layers(&tm[j], theta, room - theta, L);
                    if (h > 0)
                        best_rho = dmax(best_rho, (double)h / tm[j].t);
                }
                carry += x->cap[c] * best_rho;
                groups += x->cap[c] * (best_rho > 0);
            }
            ok = carry >= (double)R * L * (1 - TIE) && groups >= R * S;
        }
    free(tm);
    return ok;
}

/*
 * Per shape, after the class pruning: for each degree a and class rank r,
 * over the groups of degree a whose classes are all still available and
 * whose slowest member is no faster than class r: the least per-layer F+B
 * and head F+B, and the most layers fitting a non-last and the last
 * position. Each is a bound that only improves with a faster slowest
 * member (for the contiguous-block argument of theta_ok).
 */
static void shape_tables(ctx *x)
{
    int K = x->K, nt = x->n_tps;
    for (int i = 0; i < nt * K; i++) {
        x->tb_xb[i] = x->tb_hx[i] = INFINITY;
        x->tb_mo[i] = x->tb_ml[i] = 0;
    }
    int aof[65] = {0};
    for (int a = 0; a < nt; a++)
        aof[x->tps[a]] = a;
    /* degrees not enumerated: raw speed, head at the member's speed, the
     * largest memory left */
    uint64_t memmax = 0;
    for (int k = 0; k < K; k++)
        if (x->cap[k] > 0 && x->cls_mem[k] > memmax)
            memmax = x->cls_mem[k];
    int so = x->S >= 2 ? x->S - 2 : 0;
    for (int a = 0; a < nt; a++) {
        int t = x->tps[a];
        if (!x->tp_drop[t])
            continue;
        int mo = x->S >= 2 ? layers_fitting(x, so == 0, 0, t, so, memmax) : 0;
        int ml = layers_fitting(x, x->S == 1, 1, t, x->S - 1, memmax);
        for (int r = 0; r < K; r++) {
            double rate = x->cls_gflops[x->cls_order[r]] * 1e9;
            int k = a * K + r;
            x->tb_xb[k] = (x->m.block_fwd_flops + x->m.block_bwd_flops) / (t * rate);
            x->tb_hx[k] = (x->m.head_fwd_flops + x->m.head_bwd_flops) / rate;
            x->tb_mo[k] = mo;
            x->tb_ml[k] = ml;
        }
    }
    for (int i = 0; i < x->n_comps; i++) {
        const comp *c = &x->comps[i];
        int ok = 1;
        for (int j = 0; j < c->ncls && ok; j++)
            ok = x->cap[c->cls[j]] >= c->cnt[c->cls[j]];
        if (!ok)
            continue;
        int a = aof[c->t];
        for (int r = 0; r < K; r++) {
            if (x->cls_gflops[x->cls_order[r]] < c->gflops)
                continue;
            int k = a * K + r;
            x->tb_xb[k] = dmin(x->tb_xb[k], c->xb);
            x->tb_hx[k] = dmin(x->tb_hx[k], c->hx);
            if (c->mc_o > x->tb_mo[k])
                x->tb_mo[k] = c->mc_o;
            if (c->mc_l > x->tb_ml[k])
                x->tb_ml[k] = c->mc_l;
        }
    }
}

/*
 * Layer capacity of the stages left (see the header comment): with the
 * remaining stages' tail at most theta, the last stage's F+B is at most
 * theta/(M-1) and every other remaining stage's at most theta/cx (cx as in
 * lb_relax_x), so a group holds at most floor(cap / per-layer F+B) layers
 * (after the head on the last) and no more than fit its memory. Can q
 * disjoint groups from the servers left (one of them last) hold `left`
 * layers, at least one each? The group bounds (shape_tables) only improve
 * with a faster slowest member, so a DP over the servers sorted by speed,
 * tiling a prefix with contiguous blocks, finds the most layers.
 */
static int theta_ok(ctx *x, int q, int left, double theta)
{
    int K = x->K, M = x->M, nt = x->n_tps;
    if (q <= 0)
        return left == 0;
    int w = q - 1 < M ? q - 1 : M;
    double cx = x->sched == ET_SCHED_GPIPE ? M - 1.0 : (M - 1) - 0.5 * w, ml = M - 1.0;
    double tau = theta / cx, lastcap = theta / ml;
    int *vo = x->scr_vo, *vl = x->scr_vo + nt * K;
    for (int i = 0; i < nt * K; i++) {
        double fo = floor(tau / x->tb_xb[i]), fl = floor((lastcap - x->tb_hx[i]) / x->tb_xb[i]);
        vo[i] = !(fo >= 1.0) ? -1 : fo >= x->tb_mo[i] ? x->tb_mo[i] : (int)fo;
        vl[i] = !(fl >= 1.0) ? -1 : fl >= x->tb_ml[i] ? x->tb_ml[i] : (int)fl;
        if (vo[i] == 0)
            vo[i] = -1;
        if (vl[i] == 0)
            vl[i] = -1;
    }
    int m = 0, *rk = x->scr_rank;
    for (int r = 0; r < K; r++)
        for (int c = 0; c < x->cap[x->cls_order[r]]; c++)
            rk[++m] = r;
    /* A[h][k][j]: most layers with k other groups (and h last groups)
     * tiling servers 1..j; -1: impossible */
    int *A = x->scr_dp, W = m + 1;
    for (int i = 0; i < 2 * q * W; i++)
        A[i] = -1;
#define DP(h, k, j) A[((h) * q + (k)) * W + (j)]
    DP(0, 0, 0) = 0;
    for (int j = 1; j <= m; j++)
        for (int a = 0; a < nt; a++) {
            int t = x->tps[a];
            if (t > j)
                break;
            int o = vo[a * K + rk[j]], l = vl[a * K + rk[j]];
            for (int k = 0; k < q; k++) {
                if (o >= 1 && k >= 1) {
                    if (DP(0, k - 1, j - t) >= 0 && DP(0, k - 1, j - t) + o > DP(0, k, j))
                        DP(0, k, j) = DP(0, k - 1, j - t) + o;
                    if (DP(1, k - 1, j - t) >= 0 && DP(1, k - 1, j - t) + o > DP(1, k, j))
                        DP(1, k, j) = DP(1, k - 1, j - t) + o;
                }
                if (l >= 1 && DP(0, k, j - t) >= 0 && DP(0, k, j - t) + l > DP(1, k, j))
                    DP(1, k, j) = DP(0, k, j - t) + l;
            }
            if (DP(1, q - 1, j) >= left)
                return 1;
        }
#undef DP
    return 0;
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

/* The search must stop: the time budget is spent, or the current try's
 * node budget (stop_at; then `stopped` says the shape is not done). */
static int out_of_budget(ctx *x)
{
    if (x->timed_out)
        return 1;
    if (x->deadline > 0 && (x->nodes & 255) == 0 && now_s() > x->deadline)
        x->timed_out = 1;
    if (x->stop_at && x->nodes > x->stop_at)
        x->stopped = 1;
    return x->timed_out || x->stopped;
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
        if (lb_pipe(x, &x->psc[s + 1], x->S - 1 - s, left, &pl, 1, pl.gmax) <= x->P0 * (1 + TIE))
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

/* ------------------------------------------------------------ local search */

/*
 * Step time of a single-replica plan of the entered shape (groups comp[],
 * layer starts first[]), as leaf0 computes it; INFINITY when a worker's
 * memory does not fit. Uses the scratch replica rc.
 */
static double r1_eval(ctx *x, const int *cs, const int *first)
{
    int S = x->S, K = x->K;
    rstate *st = &x->rc;
    int *use = x->scr_i;
    for (int k = 0; k < K; k++)
        use[k] = 0;
    double opt = 0.0;
    int width = 0;
    for (int s = 0; s < S; s++) {
        const comp *q = &x->comps[cs[s]];
        int nl = first[s + 1] - first[s];
        if (nl < 1 || cm_stage_memory(&x->m, nl, s == 0, s == S - 1, q->t, S,
                                      sched_max_in_flight(x->sched, s, S, x->M)) > q->memory)
            return INFINITY;
        for (int j = 0; j < q->ncls; j++) {
            use[q->cls[j]] += q->cnt[q->cls[j]];
            if (use[q->cls[j]] > x->cls_n[q->cls[j]])
                return INFINITY;
        }
        cm_group g = {q->t, q->gflops, cm_mem_bw(q->gflops), q->tp_link};
        cm_stage_cost k;
        cm_stage_cost_eval(&x->m, nl, s == 0, s == S - 1, S, &g, &k);
        st->comp[s] = cs[s];
        st->f[s] = k.fwd_compute_s + k.fwd_tp_s;
        st->b[s] = k.bwd_compute_s + k.bwd_tp_s;
        opt = dmax(opt, k.opt_s);
        width += q->t;
        if (s > 0) {
            lm_link l = comp_link(x, cs[s - 1], cs[s]);
            st->bl[s - 1] = l;
            st->lat[s - 1] = l.latency;
            st->ser[s - 1] = lm_serial_s(l, x->m.boundary_bytes);
        }
    }
    double P = pipe_of(x, st);
    double embed = embed_of(x, cs);
    double norm = lm_tree_allreduce_s(use_link(x, use), 8.0, width);
    return P + (embed + norm + opt);   /* as leaf0 and sync_full add them */
}

/* Accept a local-search move when it lowers the step time. */
static int ls_try(ctx *x, const int *cs, int *first, const int *lay, double *cur)
{
    int S = x->S;
    if (x->ls_evals <= 0)
        return 0;
    x->ls_evals--;
    first[0] = 0;
    for (int s = 0; s < S; s++)
        first[s + 1] = first[s] + lay[s];
    double v = r1_eval(x, cs, first);
    if (v < *cur * (1 - 1e-12)) {
        *cur = v;
        return 1;
    }
    return 0;
}

/*
 * Improve the incumbent when it is a single-replica plan of the entered
 * shape: move a layer between two stages, swap two stages' groups, swap
 * two whole stages, or put a stage on one free server of another class,
 * while the step time drops (first improvement). It only finds better plans
 * sooner; the exact search proves them.
 */
static void local_search(ctx *x)
{
    int S = x->S, K = x->K;
    if (x->R != 1 || x->best_S != S || x->best_sched != x->sched || x->best_mb != x->mb)
        return;
    int *cs = x->ls_comp, *first = x->ls_first, *lay = x->ls_lay;
    for (int s = 0; s < S; s++) {
        cs[s] = x->best_comp[s];
        lay[s] = x->best_first[s + 1] - x->best_first[s];
    }
    double cur = x->best;
    x->ls_evals = 4000;   /* a bounded effort per call */
    for (int sweep = 0, improved = 1; improved && sweep < 32 && x->ls_evals > 0; sweep++) {
        improved = 0;
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                if (i == j || lay[i] <= 1)
                    continue;
                lay[i]--;
                lay[j]++;
                if (ls_try(x, cs, first, lay, &cur)) {
                    improved = 1;
                    continue;
                }
                lay[i]++;
                lay[j]--;
            }
        for (int i = 0; i < S; i++)
            for (int j = i + 1; j < S; j++) {
                for (int whole = 0; whole < 2; whole++) {
                    if (cs[i] == cs[j] && (!whole || lay[i] == lay[j]))
                        continue;
                    int t = cs[i], l = lay[i];
                    cs[i] = cs[j];
                    cs[j] = t;
                    if (whole) {
                        lay[i] = lay[j];
                        lay[j] = l;
                    }
                    if (ls_try(x, cs, first, lay, &cur)) {
                        improved = 1;
                        continue;
                    }
                    cs[j] = cs[i];
                    cs[i] = t;
                    if (whole) {
                        lay[j] = lay[i];
                        lay[i] = l;
                    }
                }
            }
        for (int s = 0; s < S; s++)
            for (int k = 0; k < K; k++) {
                int ci = -1;
                for (int i = 0; i < x->n_comps_of_t[1] && ci < 0; i++)
                    if (x->comps[x->comps_of_t[1][i]].cls[0] == k)
                        ci = x->comps_of_t[1][i];
                if (ci < 0 || ci == cs[s])
                    continue;
                int old = cs[s];
                cs[s] = ci;
                if (ls_try(x, cs, first, lay, &cur)) {
                    improved = 1;
                    continue;
                }
                cs[s] = old;
            }
    }
    if (cur < x->best) {
        x->best = cur;
        x->found_at = now_s();
        x->best_first[0] = 0;
        for (int s = 0; s < S; s++) {
            x->best_comp[s] = cs[s];
            x->best_tp[s] = x->comps[cs[s]].t;
            x->best_first[s + 1] = x->best_first[s] + lay[s];
        }
    }
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
        local_search(x);
        return;
    }
    free_cands(x);
    x->psc[0] = psum_empty();
    cand_dfs(x, 0);
    multi_dfs(x, 1, 0, P0, embed, opt, all);
    free_cands(x);
}

/* ------------------------------------------------------------ replica 0 */

/* Decide stage s of replica 0: TP degree, group, layer count. */

/*
 * Bound of the child of stage s (its group, layers and summary set) whose
 * last stage is still open, split by the class k of a member of the last
 * group: the head then runs no faster than k's gflops and the embedding
 * exchange crosses a link no better than stage 0's group to k. The least
 * over the classes left bounds every completion.
 */
static double lb_by_last_class(ctx *x, int s, const pool *pl, const sync_pre *sp, double others, double fdp)
{
    int S = x->S, qn = S - 1 - s, left = x->L - x->first[s + 1];
    double best = INFINITY;
    for (int k = 0; k < x->K; k++) {
        if (x->cap[k] == 0)
            continue;
        sync_pre sk = *sp;
        sk.embed = embed_floor(x, x->r0.comp[0], -1, k);
        double lp = lb_pipe(x, &x->ps0[s + 1], qn, left, pl, 1, x->cls_gflops[k] * 1e9);
        double v = dmax(lp, others) + lb_sync(x, &sk, s, fdp);
        if (v < best)
            best = v;
    }
    return best;
}

/* ------------------------------------------------------------ multisets */

/*
 * The multiset search (see the header comment, "multisets"): replica 0's
 * groups are first chosen as counts of group types (ms_enum), then ordered
 * and given layers (dfs0 with ms_on). With the groups still to place known,
 * the completion bound (ms_bound) sees their exact speeds, heads, links and
 * memory.
 */

/* Tail multiplier of the remaining non-last stages: (M-1) - w/2 with w the
 * most warm-up forwards among them (1F1B; B >= F), M-1 for GPipe. */
static double ms_cx(const ctx *x, int q)
{
    int M = x->M, w = q - 1 < M ? q - 1 : M;
    return x->sched == ET_SCHED_GPIPE ? M - 1.0 : (M - 1) - 0.5 * w;
}

/* Layers group type i can hold with the tail at theta: as a non-last stage
 * (last = 0) or as the last stage with head time H (last = 1); -1: not even
 * one. */
static int ms_cap(const ctx *x, int i, int last, double theta, double cx)
{
    const comp *c = &x->comps[x->ms_type[i]];
    int mc = last ? c->mc_l : c->mc_o;
    double v = last ? (theta / (x->M - 1.0) - c->hx) / c->xb : theta / (cx * c->xb);
    if (!isfinite(theta))
        v = mc;
    if (!(v >= 1.0) || mc < 1)
        return -1;
    return v >= mc ? mc : (int)v;
}

/*
 * Least F+B of the q groups left (ms_rem, the last of type `lt` among them)
 * holding `left` layers and the head, with the tail at most theta: one layer
 * each, the rest on the cheapest layers first (optimal for per-group caps).
 * INFINITY when they can not hold them.
 */
static double ms_sum_x(ctx *x, int lt, int q, int left, double theta)
{
    double cx = ms_cx(x, q), sum = x->comps[x->ms_type[lt]].hx;
    int extra = left - q;
    if (extra < 0)
        return INFINITY;
    double *xb = x->ms_xb;   /* per type: per-layer F+B, and extra slots */
    int *slots = x->ms_slots;
    for (int ai = 0; ai < x->ms_na; ai++) {
        int i = x->ms_act[ai];
        int n = x->ms_rem[i] - (i == lt);
        slots[i] = 0;
        xb[i] = x->comps[x->ms_type[i]].xb;
        if (n > 0) {
            int c = ms_cap(x, i, 0, theta, cx);
            if (c < 1)
                return INFINITY;
            sum += n * xb[i];
            slots[i] = n * (c - 1);
        }
    }
    int cl = ms_cap(x, lt, 1, theta, cx);
    if (cl < 1)
        return INFINITY;
    sum += xb[lt];
    slots[lt] += cl - 1;
    while (extra > 0) {
        int bi = -1;
        for (int ai = 0; ai < x->ms_na; ai++) {
            int i = x->ms_act[ai];
            if (slots[i] > 0 && (bi < 0 || xb[i] < xb[bi]))
                bi = i;
        }
        if (bi < 0)
            return INFINITY;
        int k = slots[bi] < extra ? slots[bi] : extra;
        sum += k * xb[bi];
        extra -= k;
        slots[bi] = 0;
    }
    return sum;
}

/* Can the groups left (last of type lt) hold `left` layers with the tail
 * at most theta? */
/*
 * The same test with each open position's own caps (header comment,
 * "positions"): stage k of the open non-last ones (k = S-q .. S-2) holds at
 * most theta/c_k of F+B, c_k = M-1 - min(w_k, M)/2 (1F1B) or M-1 (GPipe),
 * and what fits its memory there. A DP over the counts of each type placed
 * so far (in position order) finds the most layers; 1 when it is too large
 * to run.
 */
static int ms_positions_ok(ctx *x, int lt, int q, int left, double theta)
{
    int S = x->S, M = x->M, na = x->ms_na;
    long stride[64], states = 1;
    int room[64];
    for (int a = 0; a < na; a++) {
        room[a] = x->ms_rem[x->ms_act[a]] - (x->ms_act[a] == lt);
        if (a >= 64 || states * (room[a] + 1) > 4096)
            return 1;
        stride[a] = states;
        states *= room[a] + 1;
    }
    int *f = x->ms_pf;
    for (long st = 0; st < states; st++)
        f[st] = -1;
    f[0] = 0;
    for (long st = 0; st < states; st++) {
        if (f[st] < 0)
            continue;
        long r = st;
        int k = S - q, cnt[64];
        for (int a = 0; a < na; a++) {
            cnt[a] = (int)(r % (room[a] + 1));
            r /= room[a] + 1;
            k += cnt[a];
        }
        if (k >= S - 1)
            continue;
        int w = S - 1 - k;
        double c = x->sched == ET_SCHED_GPIPE ? M - 1.0 : (M - 1) - 0.5 * (w < M ? w : M);
        for (int a = 0; a < na; a++) {
            if (cnt[a] == room[a])
                continue;
            const comp *g = &x->comps[x->ms_type[x->ms_act[a]]];
            double v = floor(theta / (c * g->xb));
            int mc = x->ms_mem[x->ms_act[a] * S + k];
            int l = !(v >= 1.0) ? -1 : v >= mc ? mc : (int)v;
            if (l < 1)
                continue;
            if (f[st] + l > f[st + stride[a]])
                f[st + stride[a]] = f[st] + l;
        }
    }
    if (f[states - 1] < 0)
        return 0;
    return f[states - 1] + ms_cap(x, lt, 1, theta, ms_cx(x, q)) >= left;
}

/* Can the open groups (ms_rem, the last of type lt) hold `left` layers with
 * the tail at most theta? Per type: the caps of ms_cap (the most lenient
 * open position's multiplier); 1F1B with q <= M-1: and the up-excursion
 * budget, their least F+B at most q theta/(M-1) (header comment, 7). */
static int ms_feasible(ctx *x, int lt, int q, int left, double theta)
{
    double cx = ms_cx(x, q);
    int held = ms_cap(x, lt, 1, theta, cx);
    if (held < 1)
        return 0;
    for (int ai = 0; ai < x->ms_na; ai++) {
        int i = x->ms_act[ai];
        int n = x->ms_rem[i] - (i == lt);
        if (n <= 0)
            continue;
        int c = ms_cap(x, i, 0, theta, cx);
        if (c < 1)
            return 0;
        held += n * c;
    }
    if (held < left)
        return 0;
    /* 1F1B with every open stage in its steady phase (q <= M-1): the
     * up-excursion paths cap the open stages' summed F+B at q theta/(M-1)
     * (header comment); the least F+B of `left` layers is the greedy fill
     * of ms_sum_x */
    if (x->sched == ET_SCHED_1F1B && q <= x->M - 1 && isfinite(theta))
        return ms_sum_x(x, lt, q, left, theta) <= q * theta / (x->M - 1.0);
    return 1;
}

/*
 * Bound of the completions of replica 0 that beat the incumbent, after
 * stage s is decided (s = -1: nothing decided, the multiset's root), with
 * `left` layers on the groups left (ms_rem). sp, fdp: the sync floors
 * (s >= 0); others: a floor of P0 from the other replicas. Returns a value
 * that every completion better than the incumbent is at least (INFINITY when
 * there is none).
 */
static double ms_bound(ctx *x, int s, int left, const sync_pre *sp, double fdp, double others)
{
    int S = x->S, M = x->M, nt = x->ms_nt, q = S - 1 - s;
    int ts = s >= 0 ? x->ms_tix[x->r0.comp[s]] : -1, t0 = s >= 0 ? x->ms_tix[x->r0.comp[0]] : -1;
    const double *xf = x->ms_xf;
    psum root = psum_empty();
    const psum *p = s >= 0 ? &x->ps0[s + 1] : &root;
    /* every group left has an incoming boundary (at the root, all but the
     * first): at least its cheapest transfer from a possible predecessor */
    double links = 0.0, maxphi = 0.0;
    for (int ai = 0; ai < x->ms_na; ai++) {
        int i = x->ms_act[ai];
        if (x->ms_rem[i] == 0)
            continue;
        double phi = s >= 0 ? 2.0 * xf[ts * nt + i] : INFINITY;
        for (int aj = 0; aj < x->ms_na; aj++) {
            int j = x->ms_act[aj];
            if (x->ms_rem[j] >= (j == i ? 2 : 1))
                phi = dmin(phi, 2.0 * xf[j * nt + i]);
        }
        if (!isfinite(phi))
            phi = 0.0;
        links += x->ms_rem[i] * phi;
        maxphi = dmax(maxphi, phi);
    }
    if (s < 0)
        links -= maxphi;
    /* one block's F and B on the fastest group left (pair-cycle floors) */
    double f1 = INFINITY, b1 = INFINITY;
    for (int ai = 0; ai < x->ms_na; ai++) {
        int i = x->ms_act[ai];
        if (x->ms_rem[i] > 0) {
            const comp *c = &x->comps[x->ms_type[i]];
            f1 = dmin(f1, x->m.block_fwd_flops / c->ef);
            b1 = dmin(b1, x->m.block_bwd_flops / c->eb);
        }
    }
    double best = INFINITY;
    for (int al = 0; al < x->ms_na; al++) {
        int lt = x->ms_act[al];
        if (x->ms_rem[lt] == 0)
            continue;
        int cl = x->ms_type[lt];
        const comp *cg = &x->comps[cl];
        /* the sync floor with the embedding between stage 0's group and this last one */
        double sy;
        if (s >= 0) {
            sync_pre st = *sp;
            if (S > 1)
                st.embed = x->ms_emb[t0 * nt + lt];
            sy = lb_sync(x, &st, s, fdp);
        } else {
            double e = S > 1 ? INFINITY : 0.0;
            for (int af = 0; af < x->ms_na && S > 1; af++) {
                int f = x->ms_act[af];
                if (x->ms_rem[f] >= (f == lt ? 2 : 1))
                    e = dmin(e, x->ms_emb[f * nt + lt]);
            }
            sy = dmax(isfinite(e) ? e : 0.0, fdp) + sp->norm;
        }
        double sx_all = ms_sum_x(x, lt, q, left, INFINITY);
        if (!isfinite(sx_all))
            continue;
        /* a completion better than the incumbent has its tail below th_hi,
         * hence its F+B at least the least F+B under th_hi's caps */
        double th_hi = x->best - sy - p->prefix - links - sx_all;
        if (!(th_hi >= 0.0) || !ms_feasible(x, lt, q, left, th_hi)) {
            if (isfinite(th_hi))
                continue;   /* no completion with this last group beats the incumbent */
            th_hi = INFINITY;
        }
        double sum = p->prefix + links + ms_sum_x(x, lt, q, left, th_hi);
        double one = x->sched == ET_SCHED_GPIPE ? (M - 1) * (p->mf + p->mb) : p->one;
        if (x->sched == ET_SCHED_1F1B) {
            /* pair cycles: the decided stage s with the next, and the last
             * two (the last holding at least one block and the head) */
            double xl = (q == 1 ? left : 1) * cg->xb + cg->hx;
            if (s >= 0) {
                double c = INFINITY;
                for (int ai = 0; ai < x->ms_na; ai++) {
                    int i = x->ms_act[ai];
                    if (x->ms_rem[i] > 0 && (q > 1 || i == lt))
                        c = dmin(c, xf[ts * nt + i]);
                }
                one = dmax(one, pair_cycle(x, s, x->r0.f[s], x->r0.b[s], q == 1 ? xl : f1 + b1, c));
            }
            if (q >= 2) {
                double c = INFINITY;
                for (int ai = 0; ai < x->ms_na; ai++) {
                    int i = x->ms_act[ai];
                    if (x->ms_rem[i] - (i == lt) > 0)
                        c = dmin(c, xf[i * nt + lt]);
                }
                if (isfinite(c))
                    one = dmax(one, pair_cycle(x, S - 2, f1, b1, xl, c));
            }
        }
        double v = dmax(sum + one, p->path_k);
        if (x->sched == ET_SCHED_1F1B)
            v = dmax(v, 2.0 * sum + p->up);
        v = dmax(v, others) + sy;
        if (v >= x->best)
            continue;
        if (s < 0 || !isfinite(th_hi)) {
            /* the value itself (the multisets' order): the least feasible
             * tail, bisected */
            double lo = 0.0, hi = th_hi;
            if (!isfinite(hi)) {
                hi = 1.0;
                for (int it = 0; it < 60 && !ms_feasible(x, lt, q, left, hi); it++)
                    hi *= 2.0;
            }
            for (int it = 0; it < 16; it++) {
                double mid = 0.5 * (lo + hi);
                if (ms_feasible(x, lt, q, left, mid))
                    hi = mid;
                else
                    lo = mid;
            }
            v = dmax(v, dmax(sum + lo, others) + sy);
        } else if (!ms_feasible(x, lt, q, left, x->best - sy - sum) ||
                   (q >= x->ms_posq && !ms_positions_ok(x, lt, q, left, x->best - sy - sum))) {
            continue;   /* every completion's tail exceeds what the incumbent leaves */
        }
        best = dmin(best, v);
    }
    return best;
}

static void dfs0(ctx *x, int s, int servers_dec);

/*
 * Stage s of replica 0 on group ci (taken from the pool, and from ms_rem in
 * the multiset search): every layer count that fits and whose bound is
 * below the incumbent, from a balanced guess outwards.
 */
static void try_group(ctx *x, int s, int servers_dec, int ci)
{
    int S = x->S, L = x->L, R = x->R;
    const comp *q = &x->comps[ci];
    int t = q->t, left = L - x->first[s];
    int lo = s == S - 1 ? left : 1, hi = left - (S - 1 - s);
    int inflight = sched_max_in_flight(x->sched, s, S, x->M);
    /* the most layers that fit the group's memory */
    int top = x->ms_on ? x->ms_mem[x->ms_tix[ci] * S + s]
                       : layers_fitting(x, s == 0, s == S - 1, t, s, q->memory);
    if (top > hi)
        top = hi;
    if (top < lo)
        return;
    x->tp_of[s] = t;
    comp_take(x, q, 1);
    lm_link nall = lm_link_slower(x->all_dec[s], q->tp_link);
    for (int j = 0; j < q->ncls; j++)
        for (int b = 0; b < x->K; b++)
            if (x->used[b] - (b == q->cls[j] ? q->cnt[b] : 0) > 0)
                nall = lm_link_slower(nall, x->cl_link[q->cls[j] * x->K + b]);
    x->all_dec[s + 1] = nall;
    int qn = S - 1 - s;
    sync_pre sp;
    sync_pre_eval(x, s, servers_dec, s == 0 ? ci : x->r0.comp[0], s == S - 1 ? ci : -1, &sp);
    /* the decided stages alone bound every completion, and their bound only
     * grows with this stage's layers: bisect for the most layers that can
     * still pay off before looking at the servers left */
    {
        int a = lo - 1, b = top;   /* a: known to pass (lo-1: none yet), b: the most to try */
        while (a < b) {
            int mid = (a + b + 1) / 2;
            x->first[s + 1] = x->first[s] + mid;
            stage_on(x, &x->r0, s, ci);
            psum pt = psum_add(x, x->ps0[s], &x->r0, s);
            if (lb_pipe(x, &pt, 0, 0, NULL, 1, 0) + lb_sync(x, &sp, s, 0.0) < x->best)
                a = mid;
            else
                b = mid - 1;
        }
        top = a;
    }
    if (top < lo) {
        comp_take(x, q, -1);
        return;
    }
    /* the pool's bounds (not needed by a single replica's multiset search) */
    pool pl;
    memset(&pl, 0, sizeof pl);
    double others = 0.0, fdp = 0.0;
    int use_pool = !x->ms_on || R > 1;
    if (use_pool) {
        double fpipe;
        pool_eval(x, qn, 1, ci, &pl);
        others = R > 1 ? lb_others(x, R - 1) : 0.0;
        forced_bounds(x, &pl, qn + (R - 1) * S, &fpipe, &fdp);
        others = dmax(others, fpipe);
    }
    /* layer counts from a balanced guess outwards: this group's share of the
     * work against the groups left */
    int target = lo;
    if (top > lo && qn > 0 && x->ms_on) {
        double e3 = 0.0;
        for (int ai = 0; ai < x->ms_na; ai++)
            e3 += x->ms_rem[x->ms_act[ai]] * x->comps[x->ms_type[x->ms_act[ai]]].e3;
        target = (int)lround(left * q->e3 / (q->e3 + e3));
    } else if (top > lo && qn > 0 && pl.ok) {
        target = (int)lround(left * q->ef / (q->ef + pl.capf));
    }
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
        int rest = L - x->first[s + 1];
        if (x->ms_on && qn > 0) {
            if (ms_bound(x, s, rest, &sp, fdp, others) >= x->best)
                continue;
        } else {
            double lp = lb_pipe(x, &x->ps0[s + 1], qn, rest, &pl, 1, pl.gmax);
            if (dmax(lp, others) + lb_sync(x, &sp, s, fdp) >= x->best)
                continue;
            if (qn > 0 && S > 1 && x->K <= 8 && lb_by_last_class(x, s, &pl, &sp, others, fdp) >= x->best)
                continue;
            if (qn > 0 && !theta_ok(x, qn, rest,
                                    x->best - lb_sync(x, &sp, s, fdp) - sum_lb(x, &x->ps0[s + 1], qn, rest, &pl)))
                continue;
        }
        dfs0(x, s + 1, servers_dec + t);
        if (out_of_budget(x))
            break;
    }
    comp_take(x, q, -1);
}

/* Decide stage s of replica 0: TP degree, group, layer count. */
static void dfs0(ctx *x, int s, int servers_dec)
{
    x->nodes++;
    if (out_of_budget(x))
        return;
    int S = x->S, R = x->R;
    if (s == S) {
        leaf0(x, pipe_of(x, &x->r0));
        return;
    }
    if (x->ms_on) {
        for (int ai = 0; ai < x->ms_na && !out_of_budget(x); ai++) {
            int i = x->ms_act[ai];
            if (x->ms_rem[i] == 0)
                continue;
            x->ms_rem[i]--;
            try_group(x, s, servers_dec, x->ms_type[i]);
            x->ms_rem[i]++;
        }
        return;
    }
    int avail = 0;
    for (int k = 0; k < x->K; k++)
        avail += x->cap[k];
    for (int it = 0; it < x->n_tps && !out_of_budget(x); it++) {
        int t = x->tps[it];
        /* this group, a server for each later stage, and as many for every other replica */
        if (t + (S - 1 - s) + (R - 1) * (servers_dec + t + (S - 1 - s)) > avail)
            break;
        for (int i = 0; i < x->n_comps_of_t[t] && !out_of_budget(x); i++) {
            int ci = x->comps_of_t[t][i];
            if (comp_fits(x, &x->comps[ci]))
                try_group(x, s, servers_dec, ci);
        }
    }
}

/* The types with groups in ms_rem: the loops of the multiset search. */
static void ms_set_active(ctx *x)
{
    x->ms_na = 0;
    for (int i = 0; i < x->ms_nt; i++)
        if (x->ms_rem[i] > 0)
            x->ms_act[x->ms_na++] = i;
}

/*
 * Enumerate replica 0's multisets: counts of types i.. for `groups` more
 * groups, within the servers left (the other replicas need as many servers
 * again). Each complete multiset whose bound beats the incumbent is stored
 * with its bound. Returns -1 when more than `limit` are stored.
 */
static int ms_enum(ctx *x, int i, int groups, int width, int limit)
{
    if (groups == 0) {
        if (x->R * width > x->n)
            return 0;
        if ((++x->ms_evals & 255) == 0 && x->deadline > 0 && now_s() > x->deadline) {
            x->timed_out = 1;
            return -1;
        }
        for (int j = 0; j < x->ms_nt; j++)
            x->ms_rem[j] = x->ms_cnt[j];
        ms_set_active(x);
        sync_pre sp;
        sync_pre_eval(x, 0, 0, -1, -1, &sp);
        double lb = ms_bound(x, -1, x->L, &sp, 0.0, 0.0);
        if (!(lb < x->best))
            return 0;
        if (x->ms_n >= limit)
            return -1;
        if (x->ms_n == x->ms_cap) {
            x->ms_cap = x->ms_cap ? 2 * x->ms_cap : 256;
            x->ms_store = et_xrealloc(x->ms_store, (size_t)x->ms_cap * (size_t)x->ms_nt * sizeof(int));
            x->ms_lb = et_xrealloc(x->ms_lb, (size_t)x->ms_cap * sizeof(double));
        }
        memcpy(x->ms_store + (size_t)x->ms_n * (size_t)x->ms_nt, x->ms_cnt, (size_t)x->ms_nt * sizeof(int));
        x->ms_lb[x->ms_n++] = lb;
        return 0;
    }
    if (i == x->ms_nt)
        return 0;
    const comp *q = &x->comps[x->ms_type[i]];
    int most = groups;
    for (int j = 0; j < q->ncls; j++) {
        int k = q->cls[j], m = x->cap[k] / q->cnt[k];
        most = m < most ? m : most;
    }
    for (int c = most; c >= 0; c--) {
        x->ms_cnt[i] = c;
        for (int r = 0; r < c; r++)
            comp_take(x, q, 1);
        int rc = ms_enum(x, i + 1, groups - c, width + c * q->t, limit);
        for (int r = 0; r < c; r++)
            comp_take(x, q, -1);
        if (rc < 0)
            return rc;
    }
    x->ms_cnt[i] = 0;
    return 0;
}

static const ctx *ms_sort_ctx;

/* Multisets by their bound, least first. */
static int by_ms_lb(const void *a, const void *b)
{
    double p = ms_sort_ctx->ms_lb[*(const int *)a], q = ms_sort_ctx->ms_lb[*(const int *)b];
    return p < q ? -1 : p > q ? 1 : 0;
}

/*
 * The exact search of the entered shape by multisets: the types are the
 * groups that fit the servers left (at most max_types of them, else 0 is
 * returned and nothing searched); every multiset is ordered by dfs0. Returns
 * 1 when it ran (finished or cut by the budget).
 */
static int ms_search(ctx *x, int max_types, int limit)
{
    x->ms_nt = 0;
    for (int i = 0; i < x->n_comps; i++)
        if (comp_fits(x, &x->comps[i])) {
            if (x->ms_nt == max_types)
                return 0;
            x->ms_type[x->ms_nt++] = i;
        }
    /* faster groups first: the first dives put them early */
    for (int i = 1; i < x->ms_nt; i++)
        for (int j = i; j > 0 && x->comps[x->ms_type[j]].e3 > x->comps[x->ms_type[j - 1]].e3; j--) {
            int t = x->ms_type[j];
            x->ms_type[j] = x->ms_type[j - 1];
            x->ms_type[j - 1] = t;
        }
    int nt = x->ms_nt;
    x->ms_xf = et_xrealloc(x->ms_xf, (size_t)(nt * nt + 1) * sizeof(double));
    x->ms_emb = et_xrealloc(x->ms_emb, (size_t)(nt * nt + 1) * sizeof(double));
    for (int i = 0; i < x->n_comps; i++)
        x->ms_tix[i] = -1;
    x->ms_mem = et_xrealloc(x->ms_mem, (size_t)(nt * x->S + 1) * sizeof(int));
    for (int i = 0; i < nt; i++) {
        const comp *c = &x->comps[x->ms_type[i]];
        for (int k = 0; k < x->S; k++)
            x->ms_mem[i * x->S + k] = layers_fitting(x, k == 0, k == x->S - 1, c->t, k, c->memory);
    }
    for (int i = 0; i < nt; i++) {
        x->ms_tix[x->ms_type[i]] = i;
        for (int j = 0; j < nt; j++) {
            x->ms_xf[i * nt + j] = lm_transfer_s(comp_link(x, x->ms_type[i], x->ms_type[j]), x->m.boundary_bytes);
            x->ms_emb[i * nt + j] = embed_floor(x, x->ms_type[i], x->ms_type[j], -1);
        }
    }
    for (int i = 0; i < x->ms_nt; i++)
        x->ms_cnt[i] = 0;
    x->ms_n = 0;
    if (ms_enum(x, 0, x->S, 0, limit) < 0)
        return x->timed_out;   /* cut by the clock, or too many multisets: the pool search instead */
    int *order = et_xmalloc((size_t)x->ms_n * sizeof(int) + 1);
    for (int i = 0; i < x->ms_n; i++)
        order[i] = i;
    ms_sort_ctx = x;
    qsort(order, (size_t)x->ms_n, sizeof(int), by_ms_lb);
    x->ms_on = 1;
    for (int k = 0; k < x->ms_n && !out_of_budget(x); k++) {
        int m = order[k];
        if (x->ms_lb[m] >= x->best)
            break;
        memcpy(x->ms_rem, x->ms_store + (size_t)m * (size_t)x->ms_nt, (size_t)x->ms_nt * sizeof(int));
        ms_set_active(x);
        dfs0(x, 0, 0);
    }
    x->ms_on = 0;
    free(order);
    return 1;
}

/*
 * A first single-replica plan for the entered shape (R = 1), for an early
 * incumbent: the S fastest single servers left, fastest first, layers in
 * proportion to their speed (the head counted on the last), moved off
 * stages whose memory they exceed; then the local search. Nothing when no
 * such plan fits.
 */
static void seed_r1(ctx *x, int improve)
{
    int S = x->S, L = x->L, K = x->K;
    if (x->R != 1 || x->n_comps_of_t[1] == 0 || S > L)
        return;
    int *cs = x->ls_comp, *first = x->ls_first, *lay = x->ls_lay, n = 0;
    for (int r = 0; r < K && n < S; r++) {
        int k = x->cls_order[r], ci = -1;
        for (int i = 0; i < x->n_comps_of_t[1] && ci < 0; i++)
            if (x->comps[x->comps_of_t[1][i]].cls[0] == k)
                ci = x->comps_of_t[1][i];
        for (int c = 0; c < x->cap[k] && n < S && ci >= 0; c++)
            cs[n++] = ci;
    }
    if (n < S)
        return;
    double tot = 0.0, head = x->m.head_fwd_flops / x->m.block_fwd_flops;
    for (int s = 0; s < S; s++)
        tot += x->comps[cs[s]].gflops;
    int given = 0;
    for (int s = 0; s < S; s++) {
        double share = (L + head) * x->comps[cs[s]].gflops / tot - (s == S - 1 ? head : 0.0);
        lay[s] = share < 1.0 ? 1 : (int)share;
        given += lay[s];
    }
    for (int s = 0; given < L; s = (s + 1) % S, given++)
        lay[s]++;
    for (int s = S - 1; given > L; s = (s + S - 1) % S)
        if (lay[s] > 1) {
            lay[s]--;
            given--;
        }
    /* memory: move layers from a stage that does not fit to the next one with room */
    for (int pass = 0; pass < L; pass++) {
        int moved = 0;
        for (int s = 0; s < S; s++) {
            const comp *q = &x->comps[cs[s]];
            int most = layers_fitting(x, s == 0, s == S - 1, 1, s, q->memory);
            while (lay[s] > most && lay[s] > 1) {
                int to = -1;
                for (int j = 0; j < S && to < 0; j++)
                    if (j != s && lay[j] < layers_fitting(x, j == 0, j == S - 1, 1, j, x->comps[cs[j]].memory))
                        to = j;
                if (to < 0)
                    return;
                lay[s]--;
                lay[to]++;
                moved = 1;
            }
        }
        if (!moved)
            break;
    }
    first[0] = 0;
    for (int s = 0; s < S; s++)
        first[s + 1] = first[s] + lay[s];
    double v = r1_eval(x, cs, first);
    if (!(v < x->best))
        return;
    x->best = v;
    x->found_at = now_s();
    x->best_R = 1;
    x->best_S = S;
    x->best_mb = x->mb;
    x->best_M = x->M;
    x->best_sched = x->sched;
    for (int s = 0; s < S; s++) {
        x->best_comp[s] = cs[s];
        x->best_tp[s] = 1;
    }
    for (int s = 0; s <= S; s++)
        x->best_first[s] = first[s];
    if (improve)
        local_search(x);
}

/* ------------------------------------------------------------ shapes */

typedef struct shape {
    int sched, R, mb, S;
    double lb;           /* root bound (raised by the incumbent's pruning) */
    int done;            /* searched to the end, or ruled out */
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
    x->ps0[0] = psum_empty();
    shape_speeds(x);
}

static void shape_leave(ctx *x)
{
    sched_program_free(x->prog);
    x->prog = NULL;
}

/* Root bound of the entered shape: nothing decided yet, the
 * worst-equipped of R replicas over the servers left. */
static double root_lb(ctx *x)
{
    pool pl;
    pool_eval(x, x->S, x->R, -1, &pl);
    psum none = psum_empty();
    sync_pre sp;
    sync_pre_eval(x, 0, 0, -1, -1, &sp);
    double fpipe, fdp;
    forced_bounds(x, &pl, x->R * x->S, &fpipe, &fdp);
    return dmax(lb_pipe(x, &none, x->S, x->L, &pl, x->R, pl.gmax), fpipe) + dmax(sp.embed, fdp) + sp.norm;
}

/* Root bound of a shape over all servers. */
static double shape_lb(ctx *x, const shape *sh)
{
    shape_enter(x, sh, 0);
    double lb = root_lb(x);
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
    x->ucache_len = 3 * (n + 1) + 3;
    x->ucache_key = et_xcalloc((size_t)x->ucache_n, sizeof(uint64_t));
    x->ucache_val = et_xcalloc((size_t)x->ucache_n * (size_t)(x->ucache_len + K), sizeof(double));
    x->scr_w3 = et_xcalloc((size_t)(x->n_tps * K + 1), sizeof(double));
    x->scr_cand = et_xcalloc(l1 + 4, sizeof(double));
    x->scr_vo = et_xcalloc((size_t)(2 * x->n_tps * K + 1), sizeof(int));
    x->scr_dp = et_xcalloc(2 * l1 * ((size_t)n + 2), sizeof(int));
    x->ms_type = et_xcalloc((size_t)x->n_comps + 1, sizeof(int));
    x->pt_order = et_xcalloc((size_t)(K * K), sizeof(int));
    x->ps_order = et_xcalloc((size_t)(K * K), sizeof(int));
    x->ls_comp = et_xcalloc(l1, sizeof(int));
    x->ls_first = et_xcalloc(l1, sizeof(int));
    x->ls_lay = et_xcalloc(l1, sizeof(int));
    x->ms_rem = et_xcalloc((size_t)x->n_comps + 1, sizeof(int));
    x->ms_cnt = et_xcalloc((size_t)x->n_comps + 1, sizeof(int));
    x->ms_slots = et_xcalloc((size_t)x->n_comps + 1, sizeof(int));
    x->ms_tix = et_xcalloc((size_t)x->n_comps + 1, sizeof(int));
    x->ms_act = et_xcalloc((size_t)x->n_comps + 1, sizeof(int));
    x->ms_xb = et_xcalloc((size_t)x->n_comps + 1, sizeof(double));
    x->tb_xb = et_xcalloc((size_t)(x->n_tps * K + 1), sizeof(double));
    x->tb_hx = et_xcalloc((size_t)(x->n_tps * K + 1), sizeof(double));
    x->tb_mo = et_xcalloc((size_t)(x->n_tps * K + 1), sizeof(int));
    x->tb_ml = et_xcalloc((size_t)(x->n_tps * K + 1), sizeof(int));
    x->scr_rank = et_xcalloc((size_t)n + 2, sizeof(int));
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
    x->ms_posq = 3;
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
    free(x->scr_w3);
    free(x->scr_cand);
    free(x->scr_vo);
    free(x->scr_dp);
    free(x->ms_type);
    free(x->pt_order);
    free(x->ps_order);
    free(x->ls_comp);
    free(x->ls_first);
    free(x->ls_lay);
    free(x->ms_rem);
    free(x->ms_cnt);
    free(x->ms_slots);
    free(x->ms_tix);
    free(x->ms_act);
    free(x->ms_mem);
    free(x->ms_xf);
    free(x->ms_emb);
    free(x->ms_xb);
    free(x->ms_store);
    free(x->ms_lb);
    free(x->tb_xb);
    free(x->tb_hx);
    free(x->tb_mo);
    free(x->tb_ml);
    free(x->scr_rank);
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
                    sh[n_sh++] = (shape){sc, R, mb, S, 0.0, 0};
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
        /* rounds of growing node budgets over the open shapes, most
         * promising first: cheap shapes finish early and good incumbents
         * come early; a shape whose search ends within its budget is done
         * (proven). Before each try the incumbent prunes classes and may
         * rule the shape out at its root. */
        x.deadline = t0 + (o->max_seconds > 0 ? o->max_seconds : 30.0);
        /* a first incumbent: the best single-replica seed over the shapes,
         * improved by the local search */
        int seeded = -1;
        for (int i = 0; i < n_sh; i++)
            if (sh[i].R == 1) {
                double b0 = x.best;
                shape_enter(&x, &sh[i], 1);
                seed_r1(&x, 0);
                shape_leave(&x);
                if (x.best < b0)
                    seeded = i;
            }
        if (seeded >= 0) {
            shape_enter(&x, &sh[seeded], 1);
            local_search(&x);
            shape_leave(&x);
        }
        long budget = 256;
        for (int open = n_sh; open > 0 && !x.timed_out; budget *= 8) {
            qsort(sh, (size_t)n_sh, sizeof *sh, by_lb);
            open = 0;
            for (int i = 0; i < n_sh && !x.timed_out; i++) {
                if (sh[i].done)
                    continue;
                if (sh[i].lb >= x.best) {
                    sh[i].done = 1;
                    continue;
                }
                shape_enter(&x, &sh[i], 1);
                int done = 1;
                if (prune_classes(&x) == 0 || !shape_capacity_ok(&x)) {
                    sh[i].lb = dmax(sh[i].lb, x.best);
                } else {
                    double rl = root_lb(&x);
                    sh[i].lb = dmax(sh[i].lb, dmin(rl, x.best));
                    if (rl < x.best) {
                        shape_tables(&x);
                        x.stop_at = x.nodes + budget;
                        x.stopped = 0;
                        if (!isfinite(x.best) || !ms_search(&x, 12, 200000))
                            dfs0(&x, 0, 0);
                        done = !x.stopped && !x.timed_out;
                        x.stop_at = 0;
                        x.stopped = 0;
                    }
                }
                shape_leave(&x);
                sh[i].done = done;
                open += !done;
            }
        }
        /* what no open shape can beat: its root bound (valid below the
         * incumbent, which bounds the rest) */
        res->lower_bound = INFINITY;
        for (int i = 0; i < n_sh; i++)
            if (!sh[i].done && sh[i].lb < res->lower_bound)
                res->lower_bound = sh[i].lb;
    }
    res->proven = !x.timed_out && !x.inexact;
    if (x.inexact && !o->exhaustive)   /* plans with groups not enumerated: only their root bounds */
        for (int i = 0; i < n_sh; i++)
            if (sh[i].lb < res->lower_bound)
                res->lower_bound = sh[i].lb;
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
