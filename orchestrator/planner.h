/*
 * planner — chooses the plan with the least predicted step time
 * (costmodel.h) among every plan of the plan space, and the baselines a user
 * would try by hand.
 *
 * The plan space: a schedule (GPipe or 1F1B); R data-parallel replicas; a
 * micro_batch dividing global_batch/R (fixed by the config unless it is
 * `auto`, i.e. <= 0) and M = global_batch/(R*micro_batch) micro-batches; S
 * pipeline stages with contiguous layer ranges (any sizes >= 1) shared by the
 * replicas; per stage a TP degree dividing n_head and 4*n_embd, shared by the
 * replicas; and disjoint groups of servers for every (replica, stage); servers
 * may stay unused. Every worker's memory need must fit its server. The
 * config's `parallel:` numbers, when not auto, pin the schedule, S, R and the
 * TP degree of every stage.
 *
 * Exact search (branch and bound, see planner.c for the proofs):
 *  - servers that can be swapped without changing any input of the cost model
 *    (same gflops and memory, same link to every other server) form a class;
 *    a plan's cost depends only on how many servers of each class each group
 *    has, so groups are searched as class-count vectors;
 *  - replicas are interchangeable, so replica 0 is taken to be the one with
 *    the slowest pipeline: the search picks replica 0's cuts, TP degrees and
 *    groups stage by stage, then the other replicas among the group
 *    sequences whose pipeline is no slower, minimising the gradient sync;
 *  - once a plan is known, classes that cannot be part of a better one and
 *    shapes whose servers cannot carry the layers fast enough are dropped;
 *    with few group types left, replica 0's groups are first chosen as a
 *    multiset (then ordered and given layers), so the bounds see exactly
 *    the groups still to place;
 *  - a branch is cut when a lower bound of every plan below it is no better
 *    than the best plan found; every bound is a proven lower bound of the
 *    simulated step time (longest paths of the schedule's dependency graph,
 *    which can only grow when an operation gets slower).
 * On clusters of many distinct servers whose TP groups can not all be
 * enumerated, those groups are left out of the search and the result says
 * so (proven = 0, with a lower bound that covers them).
 * `--exhaustive` enumerates the same space literally (every cut, every set of
 * servers per group) and evaluates each plan with cm_evaluate's arithmetic:
 * the tests check both find the same optimum on hundreds of random clusters.
 */
#ifndef ET_PLANNER_H
#define ET_PLANNER_H

#include <stdint.h>

#include "../common/et_err.h"
#include "../topology/config.h"
#include "plan.h"

typedef struct planner_opts {
    int exhaustive;            /* brute force (small clusters only) */
    int max_exhaustive;        /* refuse exhaustive above this many servers (0: 8) */
    int no_baselines;          /* skip the baselines (tests, benchmarks) */
    double max_seconds;        /* search budget (0: 30 s); past it the best plan so far is
                                  returned with proven = 0 and a lower bound */
} planner_opts;

enum { PLANNER_EVEN = 0, PLANNER_MEGATRON = 1, PLANNER_DATA = 2, PLANNER_N_BASELINES = 3 };

typedef struct planner_baseline {
    char name[48];             /* "even PP over all", ... */
    char detail[160];          /* how it was built */
    et_plan *plan;             /* NULL when no such plan exists (reason in detail) */
} planner_baseline;

typedef struct planner_result {
    et_plan *best;             /* NULL when no plan fits */
    planner_baseline base[PLANNER_N_BASELINES];
    int proven;                /* 1: the search finished, best is optimal */
    double lower_bound;        /* no plan is faster (= best's step when proven) */
    long nodes;                /* search nodes visited */
    long leaves;               /* complete plans evaluated */
    double seconds;            /* planning time */
    double found_s;            /* when the returned plan was found (the rest proved it) */
    uint64_t min_need;         /* when nothing fits: bytes one server needs on the finest split */
    uint64_t max_memory;       /* largest server memory */
} planner_result;

/*
 * Plan cfg. Returns 0 and fills *res (res->best may be NULL: nothing fits,
 * with min_need/max_memory set for the message); -1 with e set on bad input
 * (pins that contradict each other or the model, exhaustive on too large a
 * cluster). The caller frees with planner_result_free.
 */
int planner_plan(const et_config *cfg, const planner_opts *o, planner_result *res, et_err *e);
void planner_result_free(planner_result *res);

/* The TP degrees the model allows: divisors of n_head that divide 4*n_embd,
 * ascending, at most max_tp; writes up to cap into out, returns the count. */
int planner_tp_degrees(const gpt2_config *g, int max_tp, int *out, int cap);

#endif
