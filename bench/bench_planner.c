/*
 * bench_planner — how planning time grows: gpt2-xl-wide models (C 1600, 25
 * heads, V 50257, T 1024; 12, 24 or 48 layers) over 8, 16, 32 and 64
 * heterogeneous edge servers. Target: 48 layers x 64 servers in under 1 s.
 *
 * The clusters (tests/tiered_cluster.h) mix A100, RTX 4090, Jetson AGX Orin
 * and Orin NX tiers in fixed shares, with links by tier pair,
 * and, for contrast, the same sizes of identical Orin boxes (one class),
 * and the tiered clusters with every server's gflops jittered by up to
 * +-5% (deterministically): a measured cluster where no two servers are
 * alike (48 layers). global_batch 32 sequences of 1024 tokens,
 * micro_batch 1.
 *
 * Each case runs the exact search with a budget; the table shows when the
 * returned plan was found, when (whether) its optimality was proven (else
 * the gap to the lower bound the planner reports), search nodes, and the
 * plan. Timings on a shared machine are noisy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../orchestrator/planner.h"
#include "../tests/tiered_cluster.h"

#define BUDGET_S 5.0


static const char *const kind_name[3] = {"uniform", "tiered", "jittered"};

/* One case: plan, print a table row. Returns the planning seconds when the
 * plan was proven optimal, else -1. */
static double run_case(int n, int L, int kind)
{
    et_config *c = tiered_cluster(n, L, kind);
    planner_opts o = {0};
    o.no_baselines = 1;
    o.max_seconds = BUDGET_S;
    planner_result r;
    et_err e = {0};
    if (planner_plan(c, &o, &r, &e) != 0) {
        printf("%-8s %4d %4d  error: %s\n", kind_name[kind], n, L, e.msg);
        et_config_free(c);
        return -1;
    }
    char proof[48], shape[64] = "none fits";
    if (r.proven)
        snprintf(proof, sizeof proof, "%.3f s", r.seconds);
    else
        snprintf(proof, sizeof proof, "no, %.1f s (gap %.0f%%)", r.seconds,
                 r.best ? 100 * (r.best->pred.step_s - r.lower_bound) / r.best->pred.step_s : 100.0);
    if (r.best) {
        int tmax = 1;
        for (int s = 0; s < r.best->n_stages; s++)
            tmax = r.best->tp[s] > tmax ? r.best->tp[s] : tmax;
        snprintf(shape, sizeof shape, "R%d x S%d, TP<=%d, %s, %.4f s/step", r.best->n_replicas, r.best->n_stages,
                 tmax, r.best->schedule == ET_SCHED_GPIPE ? "gpipe" : "1f1b", r.best->pred.step_s);
    }
    printf("%-8s %4d %4d  %9.3f s  %-24s %10ld  %s\n", kind_name[kind], n, L, r.found_s, proof, r.nodes, shape);
    fflush(stdout);
    double t = r.proven ? r.seconds : -1;
    planner_result_free(&r);
    et_config_free(c);
    return t;
}

/* The table, or one case: bench_planner N LAYERS KIND (KIND 0 uniform,
 * 1 tiered, 2 jittered). */
int main(int argc, char **argv)
{
    static const int ns[4] = {8, 16, 32, 64}, Ls[3] = {12, 24, 48};
    if (argc == 4) {
        int n = atoi(argv[1]), L = atoi(argv[2]), kind = atoi(argv[3]);
        if (n < 1 || L < 1 || kind < 0 || kind > 2) {
            fprintf(stderr, "usage: bench_planner [SERVERS LAYERS KIND(0 uniform, 1 tiered, 2 jittered)]\n");
            return 2;
        }
        run_case(n, L, kind);
        return 0;
    }
    printf("bench_planner: exact placement of gpt2-xl-wide models (budget %.0f s per case; shared machine, noisy)\n",
           BUDGET_S);
    printf("%-8s %4s %4s  %11s  %-24s %10s  %s\n", "cluster", "n", "L", "plan found", "proven optimal after",
           "nodes", "plan");
    double target = -1;
    for (int li = 0; li < 3; li++)
        for (int ni = 0; ni < 4; ni++) {
            double t = run_case(ns[ni], Ls[li], 1);
            if (ns[ni] == 64 && Ls[li] == 48)
                target = t;
        }
    for (int kind = 0; kind <= 2; kind += 2)
        for (int ni = 0; ni < 4; ni++)
            run_case(ns[ni], 48, kind);
    if (target >= 0)
        printf("target 48 layers x 64 tiered servers under 1 s: %s (%.3f s)\n", target < 1.0 ? "met" : "missed",
               target);
    else
        printf("target 48 layers x 64 tiered servers under 1 s: missed (optimality not proven within %.0f s)\n",
               BUDGET_S);
    return 0;
}
