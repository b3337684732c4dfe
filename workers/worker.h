/*
 * worker — `edgetrain worker CONFIG --plan PLAN`: one MPI rank of a training
 * job (what `edgetrain run` launches through mpirun). Rank 0 is the
 * controller (control plane): it hands out each phase (step, evaluation,
 * checkpoint, stop), gathers every rank's per-step metrics, writes
 * metrics.csv and the trace, decides evaluation/target/checkpoint/stop, and
 * waits without spinning. Ranks 1..N are workers (data plane): each builds
 * its shard of the model (a pipeline stage's layers, a tensor-parallel slice)
 * and executes the plan's schedule, exchanging activations and gradients with
 * its neighbours over MPI, summing TP partials, tied-embedding and
 * data-parallel gradients, and stepping AdamW on its own slice.
 *
 * The model (model/) knows nothing of MPI and the communication layer
 * (parallel/) nothing of GPT-2; this file composes them.
 */
#ifndef ET_WORKER_H
#define ET_WORKER_H

/* The controller writes OUT/metrics.csv, OUT/trace.json and OUT/summary.txt
 * (workers/summary.h) for `edgetrain run` to report. */

#endif
