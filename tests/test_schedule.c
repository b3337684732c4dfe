/*
 * test_schedule — pipeline schedules as data: complete op lists, matched
 * sends and receives, deadlock-freedom, activation memory (in flight), and
 * the simulator (GPipe's closed form, 1F1B on uniform stages, monotonicity).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../parallel/schedule.h"

static const int TYPES[2] = {SCHED_GPIPE, SCHED_1F1B};

/* Count ops of kind k in a list. */
static int count_kind(const sched_op *ops, int n, sched_kind k)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += ops[i].kind == k;
    return c;
}

START_TEST(test_every_stage_has_each_op_once_per_micro_batch)
{
    for (int t = 0; t < 2; t++)
        for (int S = 1; S <= 7; S++)
            for (int M = 1; M <= 9; M++)
                for (int s = 0; s < S; s++) {
                    int len = sched_stage_len(s, S, M);
                    sched_op *ops = malloc((size_t)len * sizeof *ops);
                    ck_assert_int_eq(sched_stage_ops(TYPES[t], s, S, M, ops), len);
                    ck_assert_int_eq(count_kind(ops, len, SCHED_FWD), M);
                    ck_assert_int_eq(count_kind(ops, len, SCHED_BWD), M);
                    ck_assert_int_eq(count_kind(ops, len, SCHED_RECV_ACT), s > 0 ? M : 0);
                    ck_assert_int_eq(count_kind(ops, len, SCHED_SEND_GRAD), s > 0 ? M : 0);
                    ck_assert_int_eq(count_kind(ops, len, SCHED_SEND_ACT), s < S - 1 ? M : 0);
                    ck_assert_int_eq(count_kind(ops, len, SCHED_RECV_GRAD), s < S - 1 ? M : 0);
                    free(ops);
                }
}
END_TEST

START_TEST(test_generated_programs_validate_as_matched_and_deadlock_free)
{
    char why[256];
    for (int t = 0; t < 2; t++)
        for (int S = 1; S <= 8; S++)
            for (int M = 1; M <= 12; M++) {
                sched_program *p = sched_program_new(TYPES[t], S, M);
                ck_assert_ptr_nonnull(p);
                int rc = sched_validate(S, M, (const sched_op *const *)p->ops, p->n_ops, why, sizeof why);
                ck_assert_msg(rc == 0, "%s S=%d M=%d: %s", sched_type_name(TYPES[t]), S, M, why);
                sched_program_free(p);
            }
}
END_TEST

START_TEST(test_1f1b_in_flight_is_at_most_stages_left_and_gpipe_holds_all)
{
    for (int S = 1; S <= 8; S++)
        for (int M = 1; M <= 12; M++) {
            sched_program *g = sched_program_new(SCHED_GPIPE, S, M);
            sched_program *o = sched_program_new(SCHED_1F1B, S, M);
            for (int s = 0; s < S; s++) {
                int in_o = sched_in_flight(o->ops[s], o->n_ops[s]);
                ck_assert_int_le(in_o, S - s);
                ck_assert_int_eq(in_o, sched_max_in_flight(SCHED_1F1B, s, S, M));
                ck_assert_int_eq(sched_in_flight(g->ops[s], g->n_ops[s]), M);
                ck_assert_int_eq(sched_max_in_flight(SCHED_GPIPE, s, S, M), M);
            }
            sched_program_free(g);
            sched_program_free(o);
        }
}
END_TEST

START_TEST(test_1f1b_last_stage_alternates_forward_and_backward)
{
    sched_op ops[16];
    int n = sched_stage_ops(SCHED_1F1B, 3, 4, 4, ops);
    ck_assert_int_eq(n, 16);
    /* per micro-batch: RECV_ACT FWD BWD SEND_GRAD */
    for (int mb = 0; mb < 4; mb++) {
        ck_assert_int_eq(ops[4 * mb].kind, SCHED_RECV_ACT);
        ck_assert_int_eq(ops[4 * mb + 1].kind, SCHED_FWD);
        ck_assert_int_eq(ops[4 * mb + 1].mb, mb);
        ck_assert_int_eq(ops[4 * mb + 2].kind, SCHED_BWD);
        ck_assert_int_eq(ops[4 * mb + 2].mb, mb);
        ck_assert_int_eq(ops[4 * mb + 3].kind, SCHED_SEND_GRAD);
    }
    /* the first of 4 stages warms up with 3 forwards */
    n = sched_stage_ops(SCHED_1F1B, 0, 4, 4, ops);
    ck_assert_int_eq(n, 16);
    ck_assert_int_eq(ops[4].kind, SCHED_FWD);
    ck_assert_int_eq(ops[4].mb, 2);
    ck_assert_int_eq(ops[6].kind, SCHED_FWD);
    ck_assert_int_eq(ops[6].mb, 3);
    ck_assert_int_eq(ops[8].kind, SCHED_RECV_GRAD);
    ck_assert_int_eq(ops[9].kind, SCHED_BWD);
    ck_assert_int_eq(ops[9].mb, 0);
    ck_assert_int_eq(ops[15].kind, SCHED_BWD);
    ck_assert_int_eq(ops[15].mb, 3);
}
END_TEST

START_TEST(test_bad_arguments_are_refused)
{
    sched_op ops[8];
    ck_assert_int_eq(sched_stage_len(2, 2, 1), -1);
    ck_assert_int_eq(sched_stage_len(0, 0, 1), -1);
    ck_assert_int_eq(sched_stage_len(0, 1, 0), -1);
    ck_assert_int_eq(sched_stage_ops(7, 0, 1, 1, ops), -1);
    ck_assert_ptr_null(sched_program_new(SCHED_1F1B, 0, 3));
    ck_assert_ptr_null(sched_program_new(9, 2, 3));
    ck_assert_int_eq(sched_type_parse("GPipe"), SCHED_GPIPE);
    ck_assert_int_eq(sched_type_parse("1f1b"), SCHED_1F1B);
    ck_assert_int_eq(sched_type_parse("zb"), -1);
    ck_assert_str_eq(sched_kind_name(SCHED_RECV_GRAD), "RECV_GRAD");
}
END_TEST

/* Two-stage program made by hand; each case breaks one rule. */
static int validate2(sched_op *a, int na, sched_op *b, int nb, int M, char *why)
{
    const sched_op *ops[2] = {a, b};
    int n[2] = {na, nb};
    return sched_validate(2, M, ops, n, why, 256);
}

START_TEST(test_validator_rejects_broken_programs)
{
    char why[256];
    /* correct 1-micro-batch program */
    sched_op s0[] = {{SCHED_FWD, 0}, {SCHED_SEND_ACT, 0}, {SCHED_RECV_GRAD, 0}, {SCHED_BWD, 0}};
    sched_op s1[] = {{SCHED_RECV_ACT, 0}, {SCHED_FWD, 0}, {SCHED_BWD, 0}, {SCHED_SEND_GRAD, 0}};
    ck_assert_int_eq(validate2(s0, 4, s1, 4, 1, why), 0);

    /* a missing send */
    ck_assert_int_eq(validate2(s0, 4, s1, 3, 1, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "SEND_GRAD"));

    /* receive after the forward that needs it */
    sched_op late[] = {{SCHED_FWD, 0}, {SCHED_RECV_ACT, 0}, {SCHED_BWD, 0}, {SCHED_SEND_GRAD, 0}};
    ck_assert_int_eq(validate2(s0, 4, late, 4, 1, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "RECV_ACT"));

    /* backward before forward */
    sched_op bf[] = {{SCHED_RECV_GRAD, 0}, {SCHED_BWD, 0}, {SCHED_FWD, 0}, {SCHED_SEND_ACT, 0}};
    ck_assert_int_eq(validate2(bf, 4, s1, 4, 1, why), -1);

    /* the first stage can not receive activations */
    sched_op first[] = {{SCHED_RECV_ACT, 0}, {SCHED_FWD, 0}, {SCHED_SEND_ACT, 0}, {SCHED_RECV_GRAD, 0}, {SCHED_BWD, 0}};
    ck_assert_int_eq(validate2(first, 5, s1, 4, 1, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "first stage"));

    /* deadlock: stage 0 waits for a gradient before sending the activation */
    sched_op dl[] = {{SCHED_FWD, 0}, {SCHED_RECV_GRAD, 0}, {SCHED_SEND_ACT, 0}, {SCHED_BWD, 0}};
    ck_assert_int_eq(validate2(dl, 4, s1, 4, 1, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "deadlock"));

    /* channel order: 0 sends mb 0 then 1, 1 receives mb 1 then 0 */
    sched_op a2[] = {{SCHED_FWD, 0}, {SCHED_SEND_ACT, 0}, {SCHED_FWD, 1}, {SCHED_SEND_ACT, 1},
                     {SCHED_RECV_GRAD, 0}, {SCHED_BWD, 0}, {SCHED_RECV_GRAD, 1}, {SCHED_BWD, 1}};
    sched_op b2[] = {{SCHED_RECV_ACT, 1}, {SCHED_FWD, 1}, {SCHED_RECV_ACT, 0}, {SCHED_FWD, 0},
                     {SCHED_BWD, 0}, {SCHED_SEND_GRAD, 0}, {SCHED_BWD, 1}, {SCHED_SEND_GRAD, 1}};
    ck_assert_int_eq(validate2(a2, 8, b2, 8, 2, why), -1);
    ck_assert_ptr_nonnull(strstr(why, "out of order"));

    /* micro-batch out of range, repeated op */
    sched_op oor[] = {{SCHED_FWD, 3}, {SCHED_SEND_ACT, 0}, {SCHED_RECV_GRAD, 0}, {SCHED_BWD, 0}};
    ck_assert_int_eq(validate2(oor, 4, s1, 4, 1, why), -1);
    sched_op rep[] = {{SCHED_FWD, 0}, {SCHED_FWD, 0}, {SCHED_SEND_ACT, 0}, {SCHED_RECV_GRAD, 0}, {SCHED_BWD, 0}};
    ck_assert_int_eq(validate2(rep, 5, s1, 4, 1, why), -1);
}
END_TEST

/* ---------------------------------------------------------- simulation */

static double frand(unsigned *st)
{
    *st = *st * 1103515245u + 12345u;
    return ((*st >> 8) & 0xffff) / 65536.0;
}

typedef struct {
    int S;
    double f[8], b[8], ab[8], gb[8];
    lm_link al[8], gl[8];
} costs8;

static sched_costs view(costs8 *c)
{
    sched_costs v = {c->f, c->b, c->al, c->gl, c->ab, c->gb};
    return v;
}

static void random_costs(costs8 *c, int S, unsigned *st)
{
    c->S = S;
    for (int s = 0; s < S; s++) {
        c->f[s] = frand(st) * 2;
        c->b[s] = frand(st) * 3;
        c->ab[s] = frand(st) * 1e6;
        c->gb[s] = frand(st) * 1e6;
        c->al[s] = (lm_link){1e5 + frand(st) * 1e6, frand(st) * 0.5};
        c->gl[s] = (lm_link){1e5 + frand(st) * 1e6, frand(st) * 0.5};
    }
}

/* GPipe's makespan is a longest path whose stay-on-one-machine part is the
 * slowest forward machine (stage or activation link) and the slowest
 * backward machine: sum of every op once + (M-1)(max fwd + max bwd). */
static double gpipe_closed_form(const costs8 *c, int M)
{
    double sum = 0, mf = 0, mb = 0;
    for (int s = 0; s < c->S; s++) {
        sum += c->f[s] + c->b[s];
        mf = fmax(mf, c->f[s]);
        mb = fmax(mb, c->b[s]);
        if (s + 1 < c->S) {
            double xf = c->ab[s] / c->al[s].bandwidth, xb = c->gb[s] / c->gl[s].bandwidth;
            sum += xf + c->al[s].latency + xb + c->gl[s].latency;
            mf = fmax(mf, xf);
            mb = fmax(mb, xb);
        }
    }
    return sum + (M - 1) * (mf + mb);
}

START_TEST(test_gpipe_simulation_equals_its_closed_form)
{
    unsigned st = 7;
    for (int it = 0; it < 400; it++) {
        int S = 1 + it % 6, M = 1 + (it / 6) % 9;
        costs8 c;
        random_costs(&c, S, &st);
        sched_costs v = view(&c);
        sched_program *p = sched_program_new(SCHED_GPIPE, S, M);
        double t = sched_simulate(p, &v, NULL);
        double want = gpipe_closed_form(&c, M);
        ck_assert_msg(fabs(t - want) <= 1e-9 * want, "S=%d M=%d: %g vs %g", S, M, t, want);
        sched_program_free(p);
    }
}
END_TEST

START_TEST(test_uniform_stages_take_m_plus_s_minus_1_slots_under_both_schedules)
{
    for (int t = 0; t < 2; t++)
        for (int S = 1; S <= 6; S++)
            for (int M = 1; M <= 8; M++) {
                costs8 c;
                c.S = S;
                for (int s = 0; s < S; s++) {
                    c.f[s] = 1.0;
                    c.b[s] = 2.0;
                    c.ab[s] = c.gb[s] = 0.0;
                    c.al[s] = c.gl[s] = lm_link_ideal();
                }
                sched_costs v = view(&c);
                sched_program *p = sched_program_new(TYPES[t], S, M);
                sched_stage_time tm[8];
                double mk = sched_simulate(p, &v, tm);
                ck_assert_double_eq_tol(mk, (M + S - 1) * 3.0, 1e-12);
                /* stage s: compute 3M, everything else is bubble */
                for (int s = 0; s < S; s++) {
                    ck_assert_double_eq_tol(tm[s].compute_s, 3.0 * M, 1e-12);
                    ck_assert_double_eq_tol(tm[s].wire_wait_s, 0.0, 1e-12);
                    ck_assert_double_eq_tol(tm[s].end_s, tm[s].compute_s + tm[s].idle_s, 1e-12);
                }
                sched_program_free(p);
            }
}
END_TEST

START_TEST(test_simulation_breakdown_adds_up_and_grows_with_any_cost)
{
    unsigned st = 99;
    for (int it = 0; it < 300; it++) {
        int S = 1 + it % 5, M = 1 + (it / 5) % 7, type = TYPES[it % 2];
        costs8 c;
        random_costs(&c, S, &st);
        sched_costs v = view(&c);
        sched_program *p = sched_program_new(type, S, M);
        sched_stage_time tm[8];
        double mk = sched_simulate(p, &v, tm);
        for (int s = 0; s < S; s++) {
            double sum = tm[s].compute_s + tm[s].wire_wait_s + tm[s].idle_s;
            ck_assert_double_eq_tol(tm[s].end_s, sum, 1e-9 * (1 + sum));
            ck_assert(tm[s].wire_wait_s >= 0 && tm[s].idle_s >= -1e-12);
            ck_assert(tm[s].end_s <= mk);
        }
        /* raise one cost: the makespan never drops (longest path, >= 0 weights) */
        int which = it % 4, s = (it / 3) % S;
        if (which == 0) c.f[s] += 0.3;
        if (which == 1) c.b[s] += 0.3;
        if (which == 2) c.ab[s] *= 2;
        if (which == 3) c.gl[s].latency += 0.1;
        double mk2 = sched_simulate(p, &v, NULL);
        ck_assert(mk2 >= mk - 1e-12);
        sched_program_free(p);
    }
}
END_TEST

START_TEST(test_slow_link_serialises_activations)
{
    /* 2 stages, no compute, 3 micro-batches of 1 MB over 1 MB/s with 0.5 s
     * latency: sends leave at 0, 1, 2 s; arrive at 1.5, 2.5, 3.5 s. */
    double f[2] = {0, 0}, b[2] = {0, 0}, ab[1] = {1e6}, gb[1] = {0};
    lm_link al[1] = {{1e6, 0.5}}, gl[1] = {{1e6, 0.0}};
    sched_costs v = {f, b, al, gl, ab, gb};
    sched_program *p = sched_program_new(SCHED_GPIPE, 2, 3);
    sched_stage_time tm[2];
    double mk = sched_simulate(p, &v, tm);
    ck_assert_double_eq_tol(mk, 3.5, 1e-12);
    ck_assert_double_eq_tol(tm[1].wire_wait_s, 3.5, 1e-12);
    ck_assert_double_eq_tol(tm[1].idle_s, 0.0, 1e-12);
    sched_program_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_every_stage_has_each_op_once_per_micro_batch);
    tcase_add_test(tc, test_generated_programs_validate_as_matched_and_deadlock_free);
    tcase_add_test(tc, test_1f1b_in_flight_is_at_most_stages_left_and_gpipe_holds_all);
    tcase_add_test(tc, test_1f1b_last_stage_alternates_forward_and_backward);
    tcase_add_test(tc, test_bad_arguments_are_refused);
    tcase_add_test(tc, test_validator_rejects_broken_programs);
    tcase_add_test(tc, test_gpipe_simulation_equals_its_closed_form);
    tcase_add_test(tc, test_uniform_stages_take_m_plus_s_minus_1_slots_under_both_schedules);
    tcase_add_test(tc, test_simulation_breakdown_adds_up_and_grows_with_any_cost);
    tcase_add_test(tc, test_slow_link_serialises_activations);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
