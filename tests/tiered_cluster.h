/*
 * tiered_cluster — the edge clusters of bench/bench_planner.c, shared with
 * tests/test_planner.c so that the test proves the benchmark's own case.
 * gpt2-xl-wide models (C 1600, 25 heads, V 50257, T 1024, L layers), 32
 * sequences of 1024 tokens, micro_batch 1, over n servers in four tiers
 * with links by tier pair:
 *   1/8 MEC A100 40GB  (10 TFLOP/s sustained), 100 Gbps among themselves
 *   1/8 RTX 4090 24GB  (30 TFLOP/s), 10 Gbps among themselves and to the MEC
 *   3/8 Jetson AGX Orin 64GB (2.6 TFLOP/s), 1 GbE
 *   3/8 Jetson Orin NX 16GB (0.9 TFLOP/s, 12 GiB usable), Wi-Fi (600 Mbps, 3 ms)
 * Header-only (static functions): include it in one file of a program.
 */
#ifndef TIERED_CLUSTER_H
#define TIERED_CLUSTER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../topology/config.h"

/* A cluster of n servers: n identical Orins (kind 0), tiered (1), or
 * tiered with every server's gflops jittered by up to +-5% (2, a measured
 * cluster: no two servers alike; deterministic). */
static et_config *tiered_cluster(int n, int L, int kind)
{
    int mixed = kind != 0;
    static const double gf[4] = {10000, 30000, 2600, 900};
    static const double mem_gib[4] = {36, 21, 48, 12};
    static const double bw[4][4] = {{1.25e10, 1.25e9, 1.25e8, 7.5e7},
                                    {1.25e9, 1.25e9, 1.25e8, 7.5e7},
                                    {1.25e8, 1.25e8, 1.25e8, 7.5e7},
                                    {7.5e7, 7.5e7, 7.5e7, 7.5e7}};
    static const double lat[4][4] = {{5e-6, 1e-4, 1e-3, 3e-3},
                                     {1e-4, 1e-4, 1e-3, 3e-3},
                                     {1e-3, 1e-3, 5e-4, 3e-3},
                                     {3e-3, 3e-3, 3e-3, 3e-3}};
    et_config *c = calloc(1, sizeof *c);
    snprintf(c->path, sizeof c->path, "bench-%s-%d.yaml", kind == 0 ? "uniform" : kind == 1 ? "tiered" : "jittered", n);
    snprintf(c->name, sizeof c->name, "bench");
    c->cluster.n_servers = n;
    c->cluster.servers = calloc((size_t)n, sizeof(et_server));
    c->cluster.link = calloc((size_t)(n * n), sizeof(et_link));
    int *tier = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        tier[i] = !mixed ? 2 : i < n / 8 ? 0 : i < n / 4 ? 1 : i < n * 5 / 8 ? 2 : 3;
        et_server *s = &c->cluster.servers[i];
        snprintf(s->name, sizeof s->name, "s%d", i);
        snprintf(s->host, sizeof s->host, "localhost");
        s->gflops = gf[tier[i]];
        if (kind == 2)   /* a fixed pseudo-random factor in [0.95, 1.05] */
            s->gflops *= 0.95 + 0.1 * ((unsigned)(i * 2654435761u) >> 8) / 16777216.0;
        s->memory = (uint64_t)(mem_gib[tier[i]] * 1073741824.0);
        s->slots = 1;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            c->cluster.link[i * n + j] = (et_link){bw[tier[i]][tier[j]], lat[tier[i]][tier[j]]};
    free(tier);
    c->model = (gpt2_config){L, 25, 1600, 50257, 1024};
    c->training.seq_len = 1024;
    c->training.global_batch = 32;
    c->training.micro_batch = 1;
    return c;
}

#endif
