/*
 * test_costmodel — the cost model's formulas against hand-computed values
 * (GPT-2 124M and 350M), and the step time of small hand-made plans against
 * the arithmetic written out by hand.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../orchestrator/costmodel.h"

static const gpt2_config GPT2 = {12, 12, 768, 50257, 1024};
static const gpt2_config GPT2_MEDIUM = {24, 16, 1024, 50257, 1024};

/* A cluster of n servers, every pair on link (bw, lat). Caller frees. */
static et_cluster *cluster_new(int n, const double *gflops, const double *mem_gib, double bw, double lat)
{
    et_cluster *c = calloc(1, sizeof *c);
    c->n_servers = n;
    c->servers = calloc((size_t)n, sizeof *c->servers);
    c->link = calloc((size_t)(n * n), sizeof *c->link);
    for (int i = 0; i < n; i++) {
        snprintf(c->servers[i].name, sizeof c->servers[i].name, "s%d", i);
        strcpy(c->servers[i].host, "localhost");
        c->servers[i].gflops = gflops[i];
        c->servers[i].memory = (uint64_t)(mem_gib[i] * 1073741824.0);
        c->servers[i].slots = 1;
        for (int j = 0; j < n; j++)
            c->link[i * n + j] = (et_link){bw, lat};
    }
    c->default_link = (et_link){bw, lat};
    return c;
}

static void set_link(et_cluster *c, int a, int b, double bw, double lat)
{
    c->link[a * c->n_servers + b] = c->link[b * c->n_servers + a] = (et_link){bw, lat};
}

static void cluster_free(et_cluster *c)
{
    free(c->servers);
    free(c->link);
    free(c);
}

START_TEST(test_parameter_counts_match_gpt2_124m_and_350m)
{
    ck_assert_uint_eq(cm_model_params(&GPT2), 124439808u);
    ck_assert_uint_eq(cm_model_params(&GPT2_MEDIUM), 354823168u);
    ck_assert_uint_eq(cm_block_params(&GPT2), 12u * 768 * 768 + 13u * 768);
    /* TP 4: (12C^2 + 7C)/4 + 6C */
    ck_assert_uint_eq(cm_block_params_local(&GPT2, 4), (12u * 768 * 768 + 7u * 768) / 4 + 6u * 768);
    /* the stages of a 3-stage split add up to the model plus one extra wte copy */
    cm_model m;
    cm_model_init(&m, &GPT2, 4, 64);
    uint64_t sum = cm_stage_params(&m, 4, 1, 0, 1, 3) + cm_stage_params(&m, 4, 0, 0, 1, 3) +
                   cm_stage_params(&m, 4, 0, 1, 1, 3);
    ck_assert_uint_eq(sum, 124439808u + 50257u * 768u);
    ck_assert_uint_eq(cm_stage_params(&m, 12, 1, 1, 1, 1), 124439808u);
}
END_TEST

START_TEST(test_flops_are_the_matmuls_of_a_block_and_the_head)
{
    /* B=1, T=1024: 24*1024*768^2 + 4*1024^2*768 */
    ck_assert_double_eq(cm_block_fwd_flops(&GPT2, 1, 1024), 17716740096.0);
    ck_assert_double_eq(cm_block_bwd_flops(&GPT2, 1, 1024), 2 * 17716740096.0);
    cm_model m;
    cm_model_init(&m, &GPT2, 1, 1024);
    ck_assert_double_eq(m.head_fwd_flops, 79047426048.0);
    ck_assert_double_eq(m.head_bwd_flops, 2 * 79047426048.0);
    ck_assert_double_eq(m.boundary_bytes, 4.0 * 1024 * 768);
    ck_assert_double_eq(m.embed_grad_bytes, 4.0 * 50257 * 768);
    /* training FLOPs per token = 6 x matmul weights (12C^2 L + CV) + attention 12 T C L */
    double per_tok = 3 * (12 * m.block_fwd_flops + m.head_fwd_flops) / 1024;
    double C = 768, L = 12, T = 1024, V = 50257;
    ck_assert_double_eq_tol(per_tok, 6 * (12 * C * C * L + C * V) + 12 * T * C * L, 1e-6);
}
END_TEST

START_TEST(test_activation_and_stage_memory_match_hand_counts)
{
    cm_model m;
    cm_model_init(&m, &GPT2, 4, 64);
    ck_assert_uint_eq(cm_block_act_bytes(&m, 1), 13373440u);
    ck_assert_uint_eq(cm_head_act_bytes(&m), 52251648u);
    /* whole model, one micro-batch alive */
    ck_assert_uint_eq(cm_stage_memory(&m, 12, 1, 1, 1, 1, 1), 2339647488u);
    /* a middle stage of 6 layers, TP 2, 3 micro-batches alive */
    ck_assert_uint_eq(cm_stage_memory(&m, 6, 0, 0, 2, 3, 3), 570023936u);
}
END_TEST

START_TEST(test_stage_cost_runs_at_the_slowest_member_on_a_tp_th_of_the_blocks)
{
    cm_model m;
    cm_model_init(&m, &GPT2, 4, 64);
    cm_group g = {2, 1000.0, cm_mem_bw(1000.0), {1e9, 1e-4}};
    cm_stage_cost k;
    cm_stage_cost_eval(&m, 3, 0, 1, 2, &g, &k);
    double fwd = (3 * m.block_fwd_flops / 2 + m.head_fwd_flops) / 1e12;
    ck_assert_double_eq_tol(k.fwd_compute_s, fwd, 1e-15 * fwd);
    ck_assert_double_eq_tol(k.bwd_compute_s, (3 * m.block_bwd_flops / 2 + m.head_bwd_flops) / 1e12, 1e-15);
    /* 2 all-reduces per block, ring over 2: 2 steps of (lat + 4NC/2 / bw) */
    double ar = 2 * (1e-4 + 4.0 * 256 * 768 / 2 / 1e9);
    ck_assert_double_eq_tol(k.fwd_tp_s, 6 * ar, 1e-15);
    ck_assert_double_eq_tol(k.bwd_tp_s, 6 * ar, 1e-15);
    ck_assert_uint_eq(k.params, 3 * cm_block_params_local(&GPT2, 2) + 2 * 768 + 50257u * 768u);
    ck_assert_double_eq_tol(k.opt_s, k.params * 36.0 / (1000e9 / 8), 1e-15);
}
END_TEST

/* Two stages on two servers, GPipe, no TP, no DP: the step is the GPipe
 * closed form + the tied-embedding exchange + the norm + the optimizer. */
START_TEST(test_two_stage_plan_step_time_matches_hand_arithmetic)
{
    gpt2_config g = {4, 4, 64, 256, 64};
    double gf[2] = {100.0, 50.0}, mem[2] = {4, 4};
    et_cluster *c = cluster_new(2, gf, mem, 1.25e7, 0.002);
    cm_model m;
    cm_model_init(&m, &g, 2, 32);
    int tp[2] = {1, 1};
    et_plan *p = plan_new(1, 2, tp, 2);
    p->first[0] = 0, p->last[0] = 0, p->first[1] = 1, p->last[1] = 3;
    plan_group(p, 0, 0)[0] = 0;
    plan_group(p, 0, 1)[0] = 1;
    p->schedule = ET_SCHED_GPIPE;
    p->micro_batch = 2;
    p->micro_batches = 3;
    double step = cm_evaluate(&m, c, p);

    double f0 = m.block_fwd_flops / 100e9, b0 = m.block_bwd_flops / 100e9;
    double f1 = (3 * m.block_fwd_flops + m.head_fwd_flops) / 50e9;
    double b1 = (3 * m.block_bwd_flops + m.head_bwd_flops) / 50e9;
    double x = m.boundary_bytes / 1.25e7;
    double pipe = f0 + b0 + f1 + b1 + 2 * (x + 0.002) + 2 * (fmax(f0, fmax(f1, x)) + fmax(b0, fmax(b1, x)));
    double embed = 2 * (0.002 + m.embed_grad_bytes / 2 / 1.25e7);
    double norm = 0.002 + 8 / 1.25e7;
    uint64_t p0 = cm_block_params(&g) + 256 * 64 + 64 * 64, p1 = 3 * cm_block_params(&g) + 2 * 64 + 256 * 64;
    double opt = fmax(p0 * 36.0 / (100e9 / 8), p1 * 36.0 / (50e9 / 8));
    double want = pipe + embed + norm + opt;
    ck_assert_double_eq_tol(step, want, 1e-12 * want);
    ck_assert_double_eq_tol(p->pred.pipeline_s, pipe, 1e-12 * pipe);
    ck_assert(p->fits);
    ck_assert_uint_eq(p->memory[0], cm_stage_memory(&m, 1, 1, 0, 1, 2, 3));
    /* every stage's parts add up to the step */
    for (int s = 0; s < 2; s++) {
        plan_stage_pred *sp = &p->stage_pred[s];
        ck_assert_double_eq_tol(sp->compute_s + sp->communication_s + sp->bubble_s, step, 1e-12 * step);
    }
    ck_assert_double_eq_tol(p->pred.compute_s + p->pred.communication_s + p->pred.bubble_s, step, 1e-12 * step);
    /* the slower server with 3 layers + head is the bottleneck */
    ck_assert_int_eq(p->pred.bottleneck_stage, 1);
    ck_assert_ptr_nonnull(strstr(p->pred.bottleneck, "stage 1 (s1)"));
    /* cm_step_time (the search's fast path) agrees */
    sched_program *prog = sched_program_new(ET_SCHED_GPIPE, 2, 3);
    ck_assert_double_eq(cm_step_time(&m, c, p, prog), step);
    sched_program_free(prog);
    plan_free(p);
    cluster_free(c);
}
END_TEST

/* Two replicas of one stage: the DP all-reduce of all parameters over the
 * link between them; plus the norm over 2 workers and the optimizer. */
START_TEST(test_data_parallel_adds_a_ring_allreduce_of_the_parameters)
{
    gpt2_config g = {2, 4, 64, 256, 64};
    double gf[3] = {100.0, 100.0, 100.0}, mem[3] = {4, 4, 4};
    et_cluster *c = cluster_new(3, gf, mem, 1.25e8, 0.001);
    set_link(c, 0, 2, 1.25e6, 0.010);   /* the slow pair */
    cm_model m;
    cm_model_init(&m, &g, 1, 16);
    int tp[1] = {1};
    et_plan *p = plan_new(2, 1, tp, 3);
    p->first[0] = 0, p->last[0] = 1;
    plan_group(p, 0, 0)[0] = 0;
    plan_group(p, 1, 0)[0] = 1;
    p->schedule = ET_SCHED_1F1B;
    p->micro_batch = 1;
    p->micro_batches = 2;
    double step = cm_evaluate(&m, c, p);
    double f = (2 * m.block_fwd_flops + m.head_fwd_flops) / 100e9, b = (2 * m.block_bwd_flops + m.head_bwd_flops) / 100e9;
    double P = (double)cm_model_params(&g);
    double dp = 2 * (0.001 + 4 * P / 2 / 1.25e8), norm = 0.001 + 8 / 1.25e8, opt = P * 36 / (100e9 / 8);
    double want = 2 * (f + b) + dp + norm + opt;
    ck_assert_double_eq_tol(step, want, 1e-12 * want);
    /* moving replica 1 to server 2 puts the slow link in the ring */
    plan_group(p, 1, 0)[0] = 2;
    double step2 = cm_evaluate(&m, c, p);
    double dp2 = 2 * (0.010 + 4 * P / 2 / 1.25e6), norm2 = 0.010 + 8 / 1.25e6;
    ck_assert_double_eq_tol(step2, 2 * (f + b) + dp2 + norm2 + opt, 1e-12 * step2);
    ck_assert_ptr_nonnull(strstr(p->pred.bottleneck, "gradient sync"));
    plan_free(p);
    cluster_free(c);
}
END_TEST

START_TEST(test_slow_boundary_link_is_named_as_the_bottleneck)
{
    gpt2_config g = {4, 4, 256, 256, 128};
    double gf[2] = {5000.0, 5000.0}, mem[2] = {8, 8};
    et_cluster *c = cluster_new(2, gf, mem, 1.25e6, 0.005);   /* 10 Mbps */
    cm_model m;
    cm_model_init(&m, &g, 8, 128);
    int tp[2] = {1, 1};
    et_plan *p = plan_new(1, 2, tp, 2);
    p->first[0] = 0, p->last[0] = 1, p->first[1] = 2, p->last[1] = 3;
    plan_group(p, 0, 0)[0] = 0;
    plan_group(p, 0, 1)[0] = 1;
    p->schedule = ET_SCHED_1F1B;
    p->micro_batch = 8;
    p->micro_batches = 4;
    cm_evaluate(&m, c, p);
    ck_assert_ptr_nonnull(strstr(p->pred.bottleneck, "link between stage 0 (s0) and stage 1 (s1)"));
    ck_assert(p->stage_pred[1].communication_s > p->stage_pred[1].compute_s);
    plan_free(p);
    cluster_free(c);
}
END_TEST

START_TEST(test_memory_over_a_servers_capacity_marks_the_plan_as_not_fitting)
{
    double gf[1] = {100.0}, mem[1] = {1.0};
    et_cluster *c = cluster_new(1, gf, mem, 1e9, 0);
    cm_model m;
    cm_model_init(&m, &GPT2, 4, 64);
    int tp[1] = {1};
    et_plan *p = plan_new(1, 1, tp, 1);
    p->first[0] = 0, p->last[0] = 11;
    plan_group(p, 0, 0)[0] = 0;
    p->schedule = ET_SCHED_1F1B;
    p->micro_batch = 4;
    p->micro_batches = 8;
    cm_evaluate(&m, c, p);
    ck_assert_int_eq(p->fits, 0);
    ck_assert_uint_eq(p->memory[0], 2339647488u);
    plan_free(p);
    cluster_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("costmodel");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parameter_counts_match_gpt2_124m_and_350m);
    tcase_add_test(tc, test_flops_are_the_matmuls_of_a_block_and_the_head);
    tcase_add_test(tc, test_activation_and_stage_memory_match_hand_counts);
    tcase_add_test(tc, test_stage_cost_runs_at_the_slowest_member_on_a_tp_th_of_the_blocks);
    tcase_add_test(tc, test_two_stage_plan_step_time_matches_hand_arithmetic);
    tcase_add_test(tc, test_data_parallel_adds_a_ring_allreduce_of_the_parameters);
    tcase_add_test(tc, test_slow_boundary_link_is_named_as_the_bottleneck);
    tcase_add_test(tc, test_memory_over_a_servers_capacity_marks_the_plan_as_not_fitting);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
