/*
 * schedule — pipeline schedules as pure data (DESIGN.md §4 "One schedule,
 * three users"). A schedule gives stage s of S the ordered list of operations
 * it performs for the M micro-batches of one step; the workers execute exactly
 * that list, the cost model simulates it with per-operation costs, the tests
 * check it without MPI.
 *
 * Execution model (what the validator and the simulator assume, and what an
 * executor must honour):
 *   - A stage runs its ops strictly in list order.
 *   - FWD(mb) / BWD(mb) compute one micro-batch through the stage.
 *   - SEND_ACT(mb) sends the stage's output for mb to stage s+1; SEND_GRAD(mb)
 *     sends the gradient w.r.t. the stage's input to stage s-1. A send never
 *     blocks the sender: the executor posts it (e.g. MPI_Isend) and keeps the
 *     buffer alive until it completes (at the latest at the end of the step).
 *   - RECV_ACT(mb) / RECV_GRAD(mb) block until the matching send was posted
 *     and the data arrived.
 *   - Messages on one channel (stage s -> s+1 activations, s+1 -> s
 *     gradients) are sent and received in the same order, so an executor may
 *     use one tag per channel.
 * Under this model every list produced here is deadlock-free (checked by
 * sched_validate, which any executor can run at start-up).
 *
 * Generic words only: a stage is a contiguous part of some model; nothing
 * here knows what the model is.
 */
#ifndef SCHED_H
#define SCHED_H

#include <stddef.h>

#include "linkmodel.h"

/* Operation kinds. */
typedef enum sched_kind {
    SCHED_FWD = 0,
    SCHED_BWD = 1,
    SCHED_RECV_ACT = 2,
    SCHED_SEND_ACT = 3,
    SCHED_RECV_GRAD = 4,
    SCHED_SEND_GRAD = 5
} sched_kind;

/* Schedule types. The values equal ET_SCHED_GPIPE / ET_SCHED_1F1B of
 * topology/config.h so a config's choice can be passed through unchanged. */
typedef enum sched_type {
    SCHED_GPIPE = 1,   /* all forwards, then all backwards (ascending mb) */
    SCHED_1F1B = 2     /* PipeDream-flush: warm-up forwards, one-forward-one-backward, cool-down */
} sched_type;

typedef struct sched_op {
    sched_kind kind;
    int mb;            /* micro-batch index in [0, M) */
} sched_op;

/* Number of ops of stage s of S for M micro-batches (the same for every
 * schedule type): 2M computations, plus 2M receives/sends at each inner
 * boundary. -1 if the arguments are out of range (S < 1, M < 1, s not in [0,S)). */
int sched_stage_len(int s, int S, int M);

/* Fill ops[0 .. sched_stage_len(s,S,M)-1] with the ordered op list of stage
 * s of S for M micro-batches under schedule `type`. The caller owns ops.
 * Returns the number of ops written, or -1 on bad arguments (unknown type,
 * out-of-range s/S/M). Never allocates.
 *   GPipe, per stage: for mb 0..M-1: [RECV_ACT] FWD [SEND_ACT];
 *                     then for mb 0..M-1: [RECV_GRAD] BWD [SEND_GRAD].
 *   1F1B: w = min(S-1-s, M) warm-up forwards; then for k = 0..M-w-1 the
 *         forward of mb w+k followed by the backward of mb k; then the
 *         backwards of the last w micro-batches. Brackets: receives only
 *         where there is a previous/next stage, sends likewise. */
int sched_stage_ops(int type, int s, int S, int M, sched_op *ops);

/* The most micro-batches whose forward is done and whose backward is not, at
 * any point of the list (the activation memory a stage must hold). */
int sched_in_flight(const sched_op *ops, int n);

/* The same number from the formula: GPipe M, 1F1B min(S - s, M); -1 on bad
 * arguments. sched_in_flight of the generated list equals this (tested). */
int sched_max_in_flight(int type, int s, int S, int M);

/*
 * Check that the S lists ops[s][0 .. n_ops[s]-1] form a complete, matched,
 * deadlock-free program for M micro-batches under the execution model above:
 *   - every stage forwards and backwards each micro-batch exactly once, the
 *     forward first;
 *   - stage 0 has no RECV_ACT/SEND_GRAD, the last stage no SEND_ACT/RECV_GRAD;
 *     every other stage receives each activation before its FWD and each
 *     gradient before its BWD, and sends each output after its FWD and each
 *     input gradient after its BWD, once each;
 *   - each channel carries the micro-batches in the same order at both ends;
 *   - executing all lists (sends non-blocking, receives blocking) finishes.
 * Returns 0, or -1 with a one-line reason in why (may be NULL). Allocates
 * scratch internally and frees it.
 */
int sched_validate(int S, int M, const sched_op *const *ops, const int *n_ops,
                   char *why, size_t why_len);

/* "gpipe" / "1f1b" (NULL for an unknown type); op kind names "FWD" etc. */
const char *sched_type_name(int type);
const char *sched_kind_name(sched_kind k);
/* Parse "gpipe" or "1f1b" (case-insensitive). Returns the type or -1. */
int sched_type_parse(const char *s);

/*
 * A whole program (every stage's list) built once, e.g. by the cost model
 * which simulates it many times. sched_program_new returns NULL on bad
 * arguments; the caller frees with sched_program_free.
 */
typedef struct sched_program {
    int type, S, M;
    int *n_ops;          /* [S] */
    sched_op **ops;      /* [S] lists, ops[s] has n_ops[s] entries */
    double *scratch;     /* simulation state, owned */
    int *pc;             /* [S] simulation program counters, owned */
} sched_program;

sched_program *sched_program_new(int type, int S, int M);
void sched_program_free(sched_program *p);

/*
 * Simulating a program with per-operation costs (the cost model's pipeline
 * phase, and the reference the workers' virtual clock must reproduce).
 * Every stage's clock starts at 0. FWD/BWD of stage s advance its clock by
 * fwd_s[s] / bwd_s[s]. SEND_ACT(mb) of stage s hands act_bytes[s] to the
 * channel act_link[s] (stage s -> s+1) at the stage's clock, SEND_GRAD(mb) of
 * stage s+1 hands grad_bytes[s] to grad_link[s] (s+1 -> s); sends take no
 * time on the stage. A RECV sets the clock to max(clock, arrival), arrival as
 * in linkmodel.h (each channel serialises its messages in send order).
 */
typedef struct sched_costs {
    const double *fwd_s;        /* [S] */
    const double *bwd_s;        /* [S] */
    const lm_link *act_link;    /* [S-1] boundary s: activations s -> s+1 */
    const lm_link *grad_link;   /* [S-1] boundary s: gradients s+1 -> s */
    const double *act_bytes;    /* [S-1] per micro-batch */
    const double *grad_bytes;   /* [S-1] per micro-batch */
} sched_costs;

/* What one stage did during the simulated step. end_s = compute_s +
 * wire_wait_s + idle_s. */
typedef struct sched_stage_time {
    double end_s;        /* clock after the stage's last op */
    double compute_s;    /* sum of its FWD and BWD durations */
    double wire_wait_s;  /* blocked in a RECV while the awaited message was on the wire */
    double idle_s;       /* blocked in a RECV before the awaited message was even sent
                            (waiting for other stages' compute: the pipeline bubble) */
} sched_stage_time;

/* Simulate program p with costs c. Returns the makespan (the largest end_s);
 * fills out[0..S-1] when out is not NULL. Deterministic; uses p's scratch
 * space (so one program must not be simulated by two threads at once);
 * never allocates. Returns -1 if the program does not run to completion
 * (impossible for programs built by sched_program_new). */
double sched_simulate(sched_program *p, const sched_costs *c, sched_stage_time *out);

#endif
