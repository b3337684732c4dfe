/*
 * test_pool — common/et_pool.h: a loop is split into contiguous parts whose
 * boundaries are multiples of the grain, every index runs exactly once,
 * on as many threads as asked (at most ET_POOL_MAX), one thread runs
 * inline, a nested loop runs inline, and the pool survives many loops.
 * Threads are pinned one per CPU only when they fill the process's CPUs.
 * A loop whose parts call OpenBLAS (et_pool_run_blas1) still gets as many
 * threads as OpenBLAS had, sees OpenBLAS at one thread inside its parts,
 * and gives OpenBLAS its count back.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../common/et_pool.h"

int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);

typedef struct {
    atomic_int *hits;   /* [n] */
    size_t grain;
    atomic_int bad_bound, calls;
    pthread_t caller;
    atomic_int on_caller, parts_seen[ET_POOL_MAX];
} cover;

static void mark(void *vctx, size_t b, size_t e, int part)
{
    cover *c = vctx;
    atomic_fetch_add(&c->calls, 1);
    if (b % c->grain != 0 || b >= e)
        atomic_store(&c->bad_bound, 1);
    if (part >= 0 && part < ET_POOL_MAX)
        atomic_fetch_add(&c->parts_seen[part], 1);
    if (pthread_equal(pthread_self(), c->caller))
        atomic_fetch_add(&c->on_caller, 1);
    for (size_t i = b; i < e; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

/* Runs a covering loop; returns the parts et_pool_run reported. */
static int run_cover(size_t n, size_t grain, cover *c)
{
    memset(c, 0, sizeof *c);
    c->hits = calloc(n ? n : 1, sizeof(atomic_int));
    c->grain = grain;
    c->caller = pthread_self();
    int parts = et_pool_run(n, grain, mark, c);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(atomic_load(&c->hits[i]) == 1, "index %zu ran %d times", i,
                      atomic_load(&c->hits[i]));
    ck_assert_int_eq(atomic_load(&c->bad_bound), 0);
    for (int p = 0; p < ET_POOL_MAX; p++)
        ck_assert_int_le(atomic_load(&c->parts_seen[p]), 1);
    free(c->hits);
    return parts;
}

START_TEST(test_every_index_runs_once_in_grain_aligned_parts)
{
    static const size_t ns[] = {1, 7, 64, 1000, 4097, 20011};
    static const size_t grains[] = {1, 3, 64, 1024};
    cover c;
    for (int t = 1; t <= 5; t++) {
        et_pool_set_threads(t);
        ck_assert_int_eq(et_pool_threads(), t);
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
                size_t chunks = (ns[i] + grains[g] - 1) / grains[g];
                int parts = run_cover(ns[i], grains[g], &c);
                int want = (size_t)t < chunks ? t : (int)chunks;
                ck_assert_int_eq(parts, want);
                ck_assert_int_le(atomic_load(&c.calls), want);
                ck_assert_int_ge(atomic_load(&c.on_caller), 1); /* part 0 runs on the caller */
            }
    }
    et_pool_set_threads(0);
}
END_TEST

START_TEST(test_one_thread_and_empty_loops_run_inline)
{
    cover c;
    et_pool_set_threads(1);
    ck_assert_int_eq(run_cover(100000, 1, &c), 1);
    ck_assert_int_eq(atomic_load(&c.calls), 1);
    ck_assert_int_eq(atomic_load(&c.on_caller), 1);
    et_pool_set_threads(4);
    ck_assert_int_eq(run_cover(0, 16, &c), 0);
    ck_assert_int_eq(atomic_load(&c.calls), 0);
    et_pool_set_threads(ET_POOL_MAX + 10);
    ck_assert_int_eq(et_pool_threads(), ET_POOL_MAX);
    et_pool_set_threads(0);
    ck_assert_int_ge(et_pool_threads(), 1);
}
END_TEST

/* A loop body that starts a loop of its own: the inner one runs inline. */
typedef struct {
    atomic_int inner_parts_max;
    atomic_long sum;
} nest;

static void inner(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    nest *x = vctx;
    for (size_t i = b; i < e; i++)
        atomic_fetch_add(&x->sum, (long)i);
}

static void outer(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    nest *x = vctx;
    for (size_t i = b; i < e; i++) {
        int p = et_pool_run(1000, 1, inner, x);
        if (p > atomic_load(&x->inner_parts_max))
            atomic_store(&x->inner_parts_max, p);
    }
}

START_TEST(test_nested_loops_run_inline_and_complete)
{
    et_pool_set_threads(3);
    nest x;
    atomic_init(&x.inner_parts_max, 0);
    atomic_init(&x.sum, 0);
    ck_assert_int_eq(et_pool_run(9, 1, outer, &x), 3);
    ck_assert_int_eq(atomic_load(&x.inner_parts_max), 1);
    ck_assert_int_eq(atomic_load(&x.sum), 9L * 999 * 1000 / 2);
    et_pool_set_threads(0);
}
END_TEST

START_TEST(test_many_small_loops_in_a_row)
{
    cover c;
    et_pool_set_threads(4);
    for (int r = 0; r < 400; r++)
        run_cover(64 + (size_t)(r % 7), 8, &c);
    et_pool_set_threads(2);
    for (int r = 0; r < 200; r++)
        ck_assert_int_eq(run_cover(1024, 16, &c), 2);
    et_pool_set_threads(0);
}
END_TEST

/* Records the OpenBLAS thread count each part of a loop saw. */
typedef struct {
    atomic_int parts, blas_max, blas_min;
} blas_seen;

static void blas_seen_reset(blas_seen *s)
{
    atomic_store(&s->parts, 0);
    atomic_store(&s->blas_max, 0);
    atomic_store(&s->blas_min, 1000);
}

static void see_blas(void *vctx, size_t b, size_t e, int part)
{
    (void)b, (void)e, (void)part;
    blas_seen *s = vctx;
    int t = openblas_get_num_threads();
    atomic_fetch_add(&s->parts, 1);
    if (t > atomic_load(&s->blas_max))
        atomic_store(&s->blas_max, t);
    if (t < atomic_load(&s->blas_min))
        atomic_store(&s->blas_min, t);
}

START_TEST(test_blas1_loops_keep_their_threads_and_restore_openblas)
{
    et_pool_set_threads(0); /* follow OpenBLAS */
    openblas_set_num_threads(3);
    ck_assert_int_eq(et_pool_threads(), 3);
    blas_seen s = {0};
    blas_seen_reset(&s);
    /* Three parts, each on its own thread with OpenBLAS at one thread (the
     * parts' sgemms must not share OpenBLAS's threads). */
    ck_assert_int_eq(et_pool_run_blas1(48, 16, see_blas, &s), 3);
    ck_assert_int_eq(atomic_load(&s.parts), 3);
    ck_assert_int_eq(atomic_load(&s.blas_max), 1);
    ck_assert_int_eq(openblas_get_num_threads(), 3);
    /* One part: inline, OpenBLAS's threads left to it. */
    blas_seen_reset(&s);
    ck_assert_int_eq(et_pool_run_blas1(10, 16, see_blas, &s), 1);
    ck_assert_int_eq(atomic_load(&s.parts), 1);
    ck_assert_int_eq(atomic_load(&s.blas_min), 3);
    ck_assert_int_eq(openblas_get_num_threads(), 3);
    /* A fixed pool width is kept too. */
    et_pool_set_threads(2);
    blas_seen_reset(&s);
    ck_assert_int_eq(et_pool_run_blas1(48, 16, see_blas, &s), 2);
    ck_assert_int_eq(atomic_load(&s.parts), 2);
    ck_assert_int_eq(openblas_get_num_threads(), 3);
    et_pool_set_threads(0);
}
END_TEST

/* The caller's CPU set after one loop as wide as OpenBLAS's thread count:
 * a single CPU, the first the process may use, when those threads fill the
 * process's CPUs and EDGETRAIN_PIN is not 0; else untouched. Each test is a
 * fresh fork (CK_FORK), so the pool decides anew. */
static void check_pinning(int allowed)
{
    cpu_set_t mask, now;
    ck_assert_int_eq(sched_getaffinity(0, sizeof mask, &mask), 0);
    int t = openblas_get_num_threads();
    et_pool_set_threads(0);
    cover c;
    run_cover(4096, 16, &c);
    ck_assert_int_eq(pthread_getaffinity_np(pthread_self(), sizeof now, &now), 0);
    if (allowed && t > 1 && CPU_COUNT(&mask) == t) {
        ck_assert_int_eq(CPU_COUNT(&now), 1);
        int first = 0;
        while (!CPU_ISSET(first, &mask))
            first++;
        ck_assert(CPU_ISSET(first, &now));
    } else {
        ck_assert(CPU_EQUAL(&now, &mask));
    }
}

START_TEST(test_threads_are_pinned_only_when_they_fill_the_cpus)
{
    unsetenv("EDGETRAIN_PIN");
    check_pinning(1);
}
END_TEST

START_TEST(test_pinning_can_be_turned_off)
{
    setenv("EDGETRAIN_PIN", "0", 1);
    check_pinning(0);
    unsetenv("EDGETRAIN_PIN");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_index_runs_once_in_grain_aligned_parts);
    tcase_add_test(tc, test_one_thread_and_empty_loops_run_inline);
    tcase_add_test(tc, test_nested_loops_run_inline_and_complete);
    tcase_add_test(tc, test_many_small_loops_in_a_row);
    tcase_add_test(tc, test_blas1_loops_keep_their_threads_and_restore_openblas);
    tcase_add_test(tc, test_threads_are_pinned_only_when_they_fill_the_cpus);
    tcase_add_test(tc, test_pinning_can_be_turned_off);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
