#include "et_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
int openblas_setaffinity(int thread_idx, size_t cpusetsize, cpu_set_t *cpu_set);

/* One loop in flight: what to run and how it is split. */
typedef struct {
    et_pool_fn fn;
    void *ctx;
    size_t n, per; /* part k covers [k*per, min(n, (k+1)*per)) */
    int parts;
} job;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER; /* workers: a new generation */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER; /* caller: pending reached 0 */
static pthread_t threads[ET_POOL_MAX]; /* threads[k]: worker k (k >= 1) */
static int pinned;               /* pin_threads ran (once per process), under mu */
static job cur;
static unsigned long generation; /* bumped once per loop, under mu */
static int pending;              /* parts still running on workers, under mu */
static int started;              /* workers alive (worker i runs part i+1) */
static atomic_int busy;          /* a loop is being run (guards re-entry) */
static atomic_int fixed;         /* et_pool_set_threads value, 0 = follow OpenBLAS */

/* Part k of the current loop. */
static void run_part(const job *j, int k)
{
    size_t b = (size_t)k * j->per, e = b + j->per;
    if (e > j->n)
        e = j->n;
    if (b < e)
        j->fn(j->ctx, b, e, k);
}

/* Worker `arg` (1-based part number): sleep until a new generation whose
 * loop has a part for us, run it, report, repeat. Lives as long as the
 * process. */
static void *worker(void *arg)
{
    int k = (int)(size_t)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (generation == seen)
            pthread_cond_wait(&wake, &mu);
        seen = generation;
        if (k >= cur.parts)
            continue;
        job j = cur;
        pthread_mutex_unlock(&mu);
        run_part(&j, k);
        pthread_mutex_lock(&mu);
        if (--pending == 0)
            pthread_cond_signal(&done);
    }
    return NULL;
}

int et_pool_threads(void)
{
    int t = atomic_load(&fixed);
    if (t <= 0)
        t = openblas_get_num_threads();
    return t < 1 ? 1 : t > ET_POOL_MAX ? ET_POOL_MAX : t;
}

void et_pool_set_threads(int n)
{
    atomic_store(&fixed, n > 0 ? n : 0);
}

/* Start workers until `want` threads (the caller included) exist; returns
 * how many threads there are (fewer if pthread_create failed). mu held. */
static int ensure_workers(int want)
{
    while (started + 1 < want) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, worker, (void *)(size_t)(started + 1));
        pthread_attr_destroy(&at);
        if (rc != 0)
            break;
        threads[++started] = th;
    }
    return started + 1;
}

/* One CPU in a set. */
static void cpu_only(cpu_set_t *s, int cpu)
{
    CPU_ZERO(s);
    CPU_SET(cpu, s);
}

/* When this process may run on exactly t CPUs and both OpenBLAS and the
 * pool use t threads, give every thread its own CPU: the caller the first,
 * pool worker k and OpenBLAS's worker k-1 (OpenBLAS's index t-1 is the
 * caller) CPU k. The pool's parts and OpenBLAS's GEMM threads then never
 * share a core with the caller, nor migrate onto it, which the scheduler
 * otherwise does while OpenBLAS's idle workers poll with sched_yield
 * between GEMMs: measured in-process on the 2-core dev VM, alternating
 * steps, GPT-2 124M steps 0.6-4.9% faster (5 runs of 30 steps), the norm
 * and AdamW loops ~30% and ~8%. Nothing is pinned when the process has more
 * CPUs than threads (other jobs may share the machine), for MPI ranks (one
 * thread: loops run inline, no worker starts), or when EDGETRAIN_PIN=0.
 * Called once, for the first loop as wide as both thread counts, with mu
 * held, from the thread that runs the loops. */
static void pin_threads(int t)
{
    pinned = 1;
    const char *env = getenv("EDGETRAIN_PIN");
    if (env && strcmp(env, "0") == 0)
        return;
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) != t ||
        started + 1 < t)
        return;
    int cpus[ET_POOL_MAX], n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < t; c++)
        if (CPU_ISSET(c, &mask))
            cpus[n++] = c;
    cpu_set_t one;
    cpu_only(&one, cpus[0]);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    for (int k = 1; k < t; k++) {
        cpu_only(&one, cpus[k]);
        pthread_setaffinity_np(threads[k], sizeof one, &one);
        openblas_setaffinity(k - 1, sizeof one, &one);
    }
}

/* et_pool_run on t threads at most. */
static int run_loop(size_t n, size_t grain, et_pool_fn fn, void *ctx, int t)
{
    if (n == 0)
        return 0;
    if (grain == 0)
        grain = 1;
    size_t chunks = (n + grain - 1) / grain;
    if ((size_t)t > chunks)
        t = (int)chunks;
    int expect = 0;
    if (t <= 1 || !atomic_compare_exchange_strong(&busy, &expect, 1)) {
        fn(ctx, 0, n, 0); /* one thread, or a nested call: inline */
        return 1;
    }
    pthread_mutex_lock(&mu);
    int have = ensure_workers(t);
    if (have < t)
        t = have;
    if (!pinned && t > 1 && t == et_pool_threads() && t == openblas_get_num_threads())
        pin_threads(t);
    size_t per_chunks = (chunks + (size_t)t - 1) / (size_t)t;
    cur = (job){fn, ctx, n, per_chunks * grain, t};
    /* Trailing parts may be empty when the chunks split unevenly; run_part
     * skips them. */
    pending = t - 1;
    generation++;
    pthread_cond_broadcast(&wake);
    job j = cur;
    pthread_mutex_unlock(&mu);

    run_part(&j, 0);

    pthread_mutex_lock(&mu);
    while (pending > 0)
        pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
    atomic_store(&busy, 0);
    return t;
}

int et_pool_run(size_t n, size_t grain, et_pool_fn fn, void *ctx)
{
    return run_loop(n, grain, fn, ctx, et_pool_threads());
}

int et_pool_run_blas1(size_t n, size_t grain, et_pool_fn fn, void *ctx)
{
    int t = et_pool_threads();
    if (t <= 1 || n <= (grain ? grain : 1))
        return run_loop(n, grain, fn, ctx, 1);
    int bt = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int parts = run_loop(n, grain, fn, ctx, t);
    openblas_set_num_threads(bt);
    return parts;
}
