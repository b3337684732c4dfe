#include "et_pool.h"

#include <pthread.h>
#include <stdatomic.h>

int openblas_get_num_threads(void);

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
        started++;
    }
    return started + 1;
}

int et_pool_run(size_t n, size_t grain, et_pool_fn fn, void *ctx)
{
    if (n == 0)
        return 0;
    if (grain == 0)
        grain = 1;
    size_t chunks = (n + grain - 1) / grain;
    int t = et_pool_threads();
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
