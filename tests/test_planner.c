/*
 * test_planner — the exact planner against brute force on hundreds of random
 * small clusters, and the properties a user relies on: slow servers get
 * fewer layers, slow links stay off the pipeline when avoidable, more
 * servers never hurt, pins are honoured, infeasible models are explained,
 * a large heterogeneous edge cluster is planned to a proven optimum, and a
 * cluster too diverse to enumerate is not claimed optimal.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../orchestrator/costmodel.h"
#include "../orchestrator/planner.h"
#include "tiered_cluster.h"

/* Deterministic generator for the random instances. */
static unsigned rng_state;
static double frand(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return ((rng_state >> 8) & 0xffff) / 65536.0;
}
static int irand(int n)
{
    return (int)(frand() * n) % n;
}

/* A config of n servers on uniform links; caller frees with et_config_free. */
static et_config *cfg_new(int n, double bw, double lat)
{
    et_config *c = calloc(1, sizeof *c);
    strcpy(c->path, "test.yaml");
    strcpy(c->name, "test");
    c->cluster.n_servers = n;
    c->cluster.servers = calloc((size_t)n, sizeof(et_server));
    c->cluster.link = calloc((size_t)(n * n), sizeof(et_link));
    for (int i = 0; i < n; i++) {
        snprintf(c->cluster.servers[i].name, ET_NAME_MAX, "s%d", i);
        strcpy(c->cluster.servers[i].host, "localhost");
        c->cluster.servers[i].gflops = 100;
        c->cluster.servers[i].memory = (uint64_t)8 << 30;
        c->cluster.servers[i].slots = 1;
        for (int j = 0; j < n; j++)
            c->cluster.link[i * n + j] = (et_link){bw, lat};
    }
    c->cluster.default_link = (et_link){bw, lat};
    c->model = (gpt2_config){8, 8, 256, 256, 128};
    c->training.seq_len = 128;
    c->training.global_batch = 8;
    c->training.micro_batch = 1;
    return c;
}

static void set_link(et_config *c, int a, int b, double bw, double lat)
{
    int n = c->cluster.n_servers;
    c->cluster.link[a * n + b] = c->cluster.link[b * n + a] = (et_link){bw, lat};
}

/* Random instance: sizes kept so that brute force stays fast (n = 6 only
 * with few layers). Two regimes: compute-heavy (pipelines and replicas
 * pay off) and tiny models (communication dominates). */
static et_config *random_cfg(void)
{
    int n = 2 + irand(5), L = 1 + irand(12);
    if (n == 6 && L > 5)
        L = 5;
    if (n == 5 && L > 8)
        L = 8;
    int heavy = irand(3) != 0, dup = irand(2);
    const double gfs[3] = {10, 40, 160}, mems[3] = {0.12, 0.25, 1.0};
    const double bws[3] = {1.25e7, 1.25e8, 1.25e9}, lats[3] = {1e-4, 1e-3, 5e-3};
    et_config *c = cfg_new(n, 1.25e8, 1e-3);
    for (int i = 0; i < n; i++) {
        et_server *s = &c->cluster.servers[i];
        s->gflops = gfs[dup ? irand(2) : irand(3)] * (heavy ? 1 : 10);
        s->memory = (uint64_t)(mems[dup ? 0 : irand(3)] * 1073741824.0 * (1 + irand(3)));
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            set_link(c, i, j, bws[dup ? 0 : irand(3)], lats[dup ? 1 : irand(3)]);
    c->model = heavy ? (gpt2_config){L, 8, 256, 256, 128} : (gpt2_config){L, 4, 64, 256, 64};
    c->training.seq_len = heavy ? 128 : 32;
    const int Gs[4] = {4, 8, 12, 16};
    c->training.global_batch = Gs[irand(4)];
    c->training.micro_batch = irand(3) == 0 ? 0 : 1 + irand(2);
    if (c->training.micro_batch > 0 && c->training.global_batch % c->training.micro_batch)
        c->training.micro_batch = 1;
    if (irand(6) == 0)
        c->parallel.schedule = 1 + irand(2);
    return c;
}

static double plan_step(const et_config *c, int exhaustive, et_plan **out)
{
    planner_opts o = {0};
    o.exhaustive = exhaustive;
    o.no_baselines = 1;
    planner_result r;
    et_err e = {0};
    ck_assert_msg(planner_plan(c, &o, &r, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(r.proven, 1);
    double t = r.best ? r.best->pred.step_s : INFINITY;
    if (out) {
        *out = r.best;
        r.best = NULL;
    }
    planner_result_free(&r);
    return t;
}

START_TEST(test_planner_equals_exhaustive_search_on_random_small_clusters)
{
    rng_state = 2024;
    /* 300 instances; the sanitizer build (10x slower brute force) checks
     * memory on the first 50 */
#ifdef __SANITIZE_ADDRESS__
    int parallel_plans = 0, n = 50;
#else
    int parallel_plans = 0, n = 300;
#endif
    for (int it = 0; it < n; it++) {
        et_config *c = random_cfg();
        et_plan *p = NULL;
        double a = plan_step(c, 0, &p), b = plan_step(c, 1, NULL);
        ck_assert_msg((isinf(a) && isinf(b)) || fabs(a - b) <= 1e-9 * b,
                      "instance %d (n=%d L=%d G=%d mb=%d): planner %.12g, exhaustive %.12g", it,
                      c->cluster.n_servers, c->model.n_layer, c->training.global_batch, c->training.micro_batch,
                      a, b);
        if (p && (p->n_stages > 1 || p->n_replicas > 1 || p->tp[0] > 1))
            parallel_plans++;
        plan_free(p);
        et_config_free(c);
    }
    /* the instances exercise real splits, not only single-server plans */
    ck_assert_int_ge(parallel_plans, n / 5);
}
END_TEST

/* The stage of plan p holding server sv in replica r, or -1. */
static int stage_of(const et_plan *p, int r, int sv)
{
    for (int s = 0; s < p->n_stages; s++)
        for (int i = 0; i < p->tp[s]; i++)
            if (plan_server(p, r, s, i) == sv)
                return s;
    return -1;
}

START_TEST(test_a_4x_slower_server_never_gets_more_layers_than_a_fast_one)
{
    rng_state = 77;
    int checked = 0;
    for (int it = 0; it < 60; it++) {
        int n = 3 + irand(3);
        et_config *c = cfg_new(n, 1.25e9, 1e-4);   /* fast links: compute decides */
        c->model.n_layer = 6 + irand(7);
        c->parallel.tensor = 1;
        c->training.global_batch = 8;
        c->training.micro_batch = 1;
        for (int i = 0; i < n; i++) {
            c->cluster.servers[i].gflops = irand(2) ? 40 : 160;
            c->cluster.servers[i].memory = (uint64_t)2 << 30;
        }
        et_plan *p = NULL;
        plan_step(c, 0, &p);
        ck_assert_ptr_nonnull(p);
        for (int r = 0; r < p->n_replicas; r++)
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++) {
                    int sa = stage_of(p, r, a), sb = stage_of(p, r, b);
                    if (sa < 0 || sb < 0 || c->cluster.servers[a].gflops * 4 != c->cluster.servers[b].gflops)
                        continue;
                    ck_assert_int_le(p->last[sa] - p->first[sa], p->last[sb] - p->first[sb]);
                    checked++;
                }
        plan_free(p);
        et_config_free(c);
    }
    ck_assert_int_gt(checked, 10);
}
END_TEST

START_TEST(test_a_slow_link_is_kept_off_the_pipeline_when_an_order_avoids_it)
{
    /* three equal servers that must split the model three ways (memory);
     * a-c is a 10 Mbps link, the rest 10 Gbps: b must sit between a and c */
    et_config *c = cfg_new(3, 1.25e9, 1e-4);
    set_link(c, 0, 2, 1.25e6, 5e-3);
    c->model = (gpt2_config){9, 8, 256, 256, 128};
    c->parallel.tensor = 1;
    c->parallel.data = 1;
    c->parallel.schedule = ET_SCHED_GPIPE;
    c->training.global_batch = 8;
    c->training.micro_batch = 2;
    cm_model m;
    cm_model_init(&m, &c->model, 2, 128);
    /* room for any 3-layer stage, not for 4 layers anywhere */
    uint64_t mem = cm_stage_memory(&m, 3, 1, 1, 1, 3, 4);
    ck_assert_uint_gt(cm_stage_memory(&m, 4, 0, 0, 1, 3, 4), mem);
    for (int i = 0; i < 3; i++)
        c->cluster.servers[i].memory = mem;
    et_plan *p = NULL;
    plan_step(c, 0, &p);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->n_stages, 3);
    for (int s = 0; s + 1 < p->n_stages; s++) {
        int a = plan_server(p, 0, s, 0), b = plan_server(p, 0, s + 1, 0);
        ck_assert_msg(!((a == 0 && b == 2) || (a == 2 && b == 0)), "stages %d-%d on the slow link", s, s + 1);
    }
    ck_assert_int_eq(plan_server(p, 0, 1, 0), 1);
    plan_free(p);
    et_config_free(c);
}
END_TEST

START_TEST(test_adding_a_server_never_makes_the_predicted_optimum_worse)
{
    rng_state = 5;
    for (int it = 0; it < 40; it++) {
        et_config *c = random_cfg();
        c->parallel.schedule = 0;
        double before = plan_step(c, 0, NULL);
        /* the same cluster plus one random server */
        int n = c->cluster.n_servers;
        et_config *d = cfg_new(n + 1, 1.25e8, 1e-3);
        d->model = c->model;
        d->training = c->training;
        for (int i = 0; i < n; i++)
            d->cluster.servers[i] = c->cluster.servers[i];
        d->cluster.servers[n].gflops = c->cluster.servers[irand(n)].gflops * (0.5 + frand());
        d->cluster.servers[n].memory = c->cluster.servers[irand(n)].memory;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                d->cluster.link[i * (n + 1) + j] = c->cluster.link[i * n + j];
        for (int i = 0; i < n; i++)
            set_link(d, i, n, 1.25e6 + frand() * 1e9, frand() * 5e-3);
        double after = plan_step(d, 0, NULL);
        ck_assert_msg(after <= before * (1 + 1e-12), "instance %d: %.9g -> %.9g", it, before, after);
        et_config_free(c);
        et_config_free(d);
    }
}
END_TEST

START_TEST(test_pinned_numbers_are_honoured)
{
    et_config *c = cfg_new(8, 1.25e9, 1e-4);
    c->parallel.pipeline = 2;
    c->parallel.tensor = 2;
    c->parallel.data = 2;
    c->parallel.schedule = ET_SCHED_GPIPE;
    et_plan *p = NULL;
    plan_step(c, 0, &p);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->n_stages, 2);
    ck_assert_int_eq(p->n_replicas, 2);
    ck_assert_int_eq(p->tp[0], 2);
    ck_assert_int_eq(p->tp[1], 2);
    ck_assert_int_eq(p->schedule, ET_SCHED_GPIPE);
    ck_assert_int_eq(p->n_replicas * p->micro_batches * p->micro_batch, c->training.global_batch);
    plan_free(p);
    et_config_free(c);
}
END_TEST

START_TEST(test_pins_that_contradict_the_model_or_cluster_are_errors)
{
    et_config *c = cfg_new(4, 1.25e9, 1e-4);
    planner_opts o = {0};
    planner_result r;
    et_err e = {0};
    c->parallel.tensor = 3;   /* n_head 8 */
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "must divide n_head (8)"));
    et_err_clear(&e);
    c->parallel.tensor = 0;
    c->parallel.pipeline = 3;
    c->parallel.data = 2;      /* 6 servers needed */
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "need 6 servers"));
    et_err_clear(&e);
    c->parallel.pipeline = 0;
    c->parallel.data = 3;      /* global_batch 8 */
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "must divide global_batch"));
    et_err_clear(&e);
    c->parallel.data = 0;
    o.exhaustive = 1;
    o.max_exhaustive = 3;
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "exhaustive search is limited to 3 servers"));
    et_config_free(c);
}
END_TEST

START_TEST(test_a_model_that_fits_nowhere_reports_its_smallest_need)
{
    et_config *c = cfg_new(2, 1.25e9, 1e-4);
    for (int i = 0; i < 2; i++)
        c->cluster.servers[i].memory = (uint64_t)32 << 20;
    planner_opts o = {0};
    planner_result r;
    et_err e = {0};
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), 0);
    ck_assert_ptr_null(r.best);
    ck_assert_uint_gt(r.min_need, r.max_memory);
    ck_assert_uint_eq(r.max_memory, (uint64_t)32 << 20);
    planner_result_free(&r);
    et_config_free(c);
}
END_TEST

START_TEST(test_the_optimum_beats_or_ties_every_baseline_that_fits)
{
    rng_state = 11;
    for (int it = 0; it < 20; it++) {
        et_config *c = random_cfg();
        c->parallel.schedule = 0;
        planner_opts o = {0};
        planner_result r;
        et_err e = {0};
        ck_assert_int_eq(planner_plan(c, &o, &r, &e), 0);
        for (int b = 0; b < PLANNER_N_BASELINES; b++) {
            ck_assert(r.base[b].name[0] != '\0');
            if (r.base[b].plan && r.base[b].plan->fits) {
                ck_assert_ptr_nonnull(r.best);
                ck_assert(r.best->pred.step_s <= r.base[b].plan->pred.step_s * (1 + 1e-12));
            }
        }
        planner_result_free(&r);
        et_config_free(c);
    }
}
END_TEST

START_TEST(test_identical_servers_are_planned_quickly)
{
    /* 48 identical servers collapse into one class */
    et_config *c = cfg_new(48, 1.25e9, 1e-4);
    c->model = (gpt2_config){24, 16, 1024, 50257, 1024};
    c->training.seq_len = 1024;
    c->training.global_batch = 32;
    c->training.micro_batch = 1;
    for (int i = 0; i < 48; i++) {
        c->cluster.servers[i].gflops = 2600;
        c->cluster.servers[i].memory = (uint64_t)16 << 30;
    }
    planner_opts o = {0};
    o.no_baselines = 1;
    planner_result r;
    et_err e = {0};
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), 0);
    ck_assert_int_eq(r.proven, 1);
    ck_assert_ptr_nonnull(r.best);
    ck_assert(r.seconds < 5.0);
    planner_result_free(&r);
    et_config_free(c);
}
END_TEST

START_TEST(test_gpt2_xl_on_a_large_tiered_edge_cluster_is_proven_optimal)
{
    /* the target case (64 servers, 48 layers); the sanitizer build,
     * several times slower, takes the 32-server one */
#ifdef __SANITIZE_ADDRESS__
    et_config *c = tiered_cluster(32, 48, 1);
#else
    et_config *c = tiered_cluster(64, 48, 1);
#endif
    planner_opts o = {0};
    o.no_baselines = 1;
    o.max_seconds = 100;
    planner_result r;
    et_err e = {0};
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), 0);
    ck_assert_ptr_nonnull(r.best);
    ck_assert_int_eq(r.proven, 1);
    ck_assert(r.lower_bound == r.best->pred.step_s);
    ck_assert(r.best->fits);
    planner_result_free(&r);
    et_config_free(c);
}
END_TEST

START_TEST(test_a_cluster_of_all_different_servers_is_not_claimed_optimal_beyond_what_was_searched)
{
    /* 64 servers, no two alike: the tensor-parallel groups of 5 and 25 can
     * not all be enumerated, so the plan comes with proven = 0 and a lower
     * bound below it, within the time budget */
    et_config *c = tiered_cluster(64, 24, 2);
    planner_opts o = {0};
    o.no_baselines = 1;
    o.max_seconds = 1.0;
    planner_result r;
    et_err e = {0};
    ck_assert_int_eq(planner_plan(c, &o, &r, &e), 0);
    ck_assert_ptr_nonnull(r.best);
    ck_assert_int_eq(r.proven, 0);
    ck_assert(r.lower_bound > 0 && r.lower_bound <= r.best->pred.step_s);
    ck_assert(r.best->fits);
    ck_assert(r.seconds < 10.0);
    planner_result_free(&r);
    et_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("planner");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_planner_equals_exhaustive_search_on_random_small_clusters);
    tcase_add_test(tc, test_a_4x_slower_server_never_gets_more_layers_than_a_fast_one);
    tcase_add_test(tc, test_a_slow_link_is_kept_off_the_pipeline_when_an_order_avoids_it);
    tcase_add_test(tc, test_adding_a_server_never_makes_the_predicted_optimum_worse);
    tcase_add_test(tc, test_pinned_numbers_are_honoured);
    tcase_add_test(tc, test_pins_that_contradict_the_model_or_cluster_are_errors);
    tcase_add_test(tc, test_a_model_that_fits_nowhere_reports_its_smallest_need);
    tcase_add_test(tc, test_the_optimum_beats_or_ties_every_baseline_that_fits);
    tcase_add_test(tc, test_identical_servers_are_planned_quickly);
    tcase_add_test(tc, test_gpt2_xl_on_a_large_tiered_edge_cluster_is_proven_optimal);
    tcase_add_test(tc, test_a_cluster_of_all_different_servers_is_not_claimed_optimal_beyond_what_was_searched);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
