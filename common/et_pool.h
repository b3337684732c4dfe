/*
 * et_pool — data-parallel loops over the cores OpenBLAS may use.
 *
 * The GEMMs of a training step run on OpenBLAS's threads; everything else
 * (AdamW, the gradient norm, ...) would run on one core while the others
 * idle. et_pool_run splits a loop [0, n) into contiguous parts, one per
 * thread, and runs them at once on the calling thread plus a few resident
 * worker threads. The thread count follows OpenBLAS's
 * (openblas_get_num_threads(), i.e. OPENBLAS_NUM_THREADS): a rank given one
 * BLAS thread (the MPI workers, the tests) runs every loop inline on its own
 * thread and never starts a worker.
 *
 * Workers sleep on a condition variable between loops (never spin: ranks
 * that share cores must not steal them). When the process may run on
 * exactly as many CPUs as both OpenBLAS and the pool use threads, the first
 * such loop pins every thread to a CPU of its own: the caller to the first,
 * pool worker k and OpenBLAS's worker k-1 to the k-th (see et_pool.c for
 * the measurement); EDGETRAIN_PIN=0 turns this off. Loops are not nested and are
 * started from one thread at a time (the model's own thread); a call from a
 * worker, or while another loop runs, runs inline. No allocation after the
 * first loop that needs a given number of threads.
 */
#ifndef ET_POOL_H
#define ET_POOL_H

#include <stddef.h>

/* Body of a loop: handle [begin, end); part is 0..parts-1 (which share of
 * the loop this is, e.g. to write a per-part partial result). */
typedef void (*et_pool_fn)(void *ctx, size_t begin, size_t end, int part);

/* Most parts a loop is split into (the size of per-part result arrays). */
#define ET_POOL_MAX 16

/* Run fn over [0, n) in parts of at least `grain` iterations (part
 * boundaries are multiples of grain), on up to et_pool_threads() threads;
 * returns the number of parts it was split into (1 <= parts <= ET_POOL_MAX
 * when n > 0; 0 when n == 0; trailing parts may be empty and are then not
 * called). Part k covers a contiguous range before part k+1's. Returns after
 * every part is done. If only one thread is available, fn runs once, inline,
 * over [0, n). */
int et_pool_run(size_t n, size_t grain, et_pool_fn fn, void *ctx);

/* et_pool_run for a loop whose parts call OpenBLAS (each part's sgemms on
 * its own core): the thread count is taken first, then OpenBLAS is held at
 * one thread while the parts run and given its count back after. A loop
 * with a single part runs inline with OpenBLAS's threads left as they are. */
int et_pool_run_blas1(size_t n, size_t grain, et_pool_fn fn, void *ctx);

/* Threads a loop may use now: OpenBLAS's thread count, at most ET_POOL_MAX,
 * or the value of et_pool_set_threads when one was set (> 0). */
int et_pool_threads(void);

/* Fix the thread count (n > 0), or follow OpenBLAS again (n == 0). */
void et_pool_set_threads(int n);

#endif
