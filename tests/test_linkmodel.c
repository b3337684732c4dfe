/*
 * test_linkmodel — the link model shared by the cost model and the virtual
 * clock: serialisation, latency that does not hold the link, full-duplex
 * channels, ring/tree collective formulas.
 */
#include <check.h>
#include <math.h>

#include "../parallel/linkmodel.h"

START_TEST(test_lone_message_costs_latency_plus_bytes_over_bandwidth)
{
    lm_link l = {1.25e8, 0.002};    /* 1 Gbps, 2 ms */
    ck_assert_double_eq_tol(lm_transfer_s(l, 1.25e6), 0.012, 1e-15);
    ck_assert_double_eq_tol(lm_serial_s(l, 1.25e6), 0.010, 1e-15);
    ck_assert_double_eq_tol(lm_transfer_s(l, 0), 0.002, 1e-15);
    lm_chan c;
    lm_chan_init(&c, l);
    double st;
    ck_assert_double_eq_tol(lm_chan_send(&c, 1.0, 1.25e6, &st), 1.012, 1e-12);
    ck_assert_double_eq(st, 1.0);
    ck_assert_double_eq_tol(c.busy_until, 1.010, 1e-12);
}
END_TEST

START_TEST(test_back_to_back_messages_queue_for_serialisation_not_latency)
{
    lm_link l = {1e6, 0.5};
    lm_chan c;
    lm_chan_init(&c, l);
    double st;
    /* three 1 MB messages handed over at t=0: wire busy 1 s each, latency overlaps */
    ck_assert_double_eq_tol(lm_chan_send(&c, 0, 1e6, &st), 1.5, 1e-12);
    ck_assert_double_eq_tol(lm_chan_send(&c, 0, 1e6, &st), 2.5, 1e-12);
    ck_assert_double_eq_tol(st, 1.0, 1e-12);
    ck_assert_double_eq_tol(lm_chan_send(&c, 0, 1e6, &st), 3.5, 1e-12);
    /* after an idle gap the channel starts at once */
    ck_assert_double_eq_tol(lm_chan_send(&c, 10, 1e6, &st), 11.5, 1e-12);
    ck_assert_double_eq(st, 10.0);
}
END_TEST

START_TEST(test_in_server_link_is_free)
{
    lm_link id = lm_link_ideal();
    ck_assert(isinf(id.bandwidth));
    ck_assert_double_eq(lm_transfer_s(id, 1e9), 0.0);
    ck_assert_double_eq(lm_ring_allreduce_s(id, 1e9, 4), 0.0);
    lm_link a = {1e6, 0.1}, b = {5e5, 0.05};
    lm_link w = lm_link_slower(a, b);
    ck_assert_double_eq(w.bandwidth, 5e5);
    ck_assert_double_eq(w.latency, 0.1);
    lm_link w2 = lm_link_slower(id, a);
    ck_assert_double_eq(w2.bandwidth, 1e6);
}
END_TEST

START_TEST(test_ring_allreduce_is_2p_minus_2_steps_of_a_pth)
{
    lm_link l = {1e9, 1e-3};
    /* p = 4, 400 MB: 6 steps of (1 ms + 100 MB / 1 GB/s) = 6 * 0.101 */
    ck_assert_double_eq_tol(lm_ring_allreduce_s(l, 4e8, 4), 6 * 0.101, 1e-12);
    ck_assert_double_eq_tol(lm_ring_allreduce_s(l, 4e8, 2), 2 * (1e-3 + 0.2), 1e-12);
    ck_assert_double_eq(lm_ring_allreduce_s(l, 4e8, 1), 0.0);
    ck_assert_double_eq(lm_ring_allreduce_s(l, 4e8, 0), 0.0);
}
END_TEST

START_TEST(test_tree_collectives_take_ceil_log2_rounds)
{
    lm_link l = {1e3, 0.01};
    ck_assert_int_eq(lm_ceil_log2(1), 0);
    ck_assert_int_eq(lm_ceil_log2(2), 1);
    ck_assert_int_eq(lm_ceil_log2(5), 3);
    ck_assert_int_eq(lm_ceil_log2(8), 3);
    ck_assert_int_eq(lm_ceil_log2(9), 4);
    ck_assert_double_eq_tol(lm_tree_allreduce_s(l, 8, 5), 3 * (0.01 + 0.008), 1e-12);
    ck_assert_double_eq_tol(lm_bcast_s(l, 1000, 2), 1.01, 1e-12);
    ck_assert_double_eq(lm_bcast_s(l, 1000, 1), 0.0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("linkmodel");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_lone_message_costs_latency_plus_bytes_over_bandwidth);
    tcase_add_test(tc, test_back_to_back_messages_queue_for_serialisation_not_latency);
    tcase_add_test(tc, test_in_server_link_is_free);
    tcase_add_test(tc, test_ring_allreduce_is_2p_minus_2_steps_of_a_pth);
    tcase_add_test(tc, test_tree_collectives_take_ceil_log2_rounds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
