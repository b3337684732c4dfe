/*
 * vcomm — MPI point-to-point and collectives that carry a clock, so that one
 * run measures either real time (clock: wall) or the time a profiled edge
 * network would take (clock: virtual, DESIGN.md §4).
 *
 * Each rank owns a vc_clock. Compute advances a virtual clock by the
 * operation's modelled cost (vc_compute); a wall clock just reads the time.
 * Every message is preceded by its send time (a double, on tag 2*tag+1; the
 * payload goes on tag 2*tag). The receiver owns the channel state of each
 * incoming link (messages on one channel arrive in send order) and sets
 *   clock = max(clock, arrival),  arrival from linkmodel.h's lm_chan_send,
 * so queueing on a slow link is charged exactly as the cost model charges it.
 * Collectives synchronise the group: every member's clock becomes the
 * group's latest clock plus the collective's modelled cost over the group's
 * slowest link. Knows nothing of what the floats mean.
 */
#ifndef VCOMM_H
#define VCOMM_H

#include <mpi.h>
#include <stddef.h>

#include "linkmodel.h"

typedef struct vc_clock {
    int virtual_mode;     /* 1: emulated time; 0: wall time */
    double t;             /* virtual seconds (virtual mode) */
    double origin;        /* MPI_Wtime() at the origin (wall mode) */
    double wait_s;        /* seconds blocked in receives/collectives while data was on
                             the wire or a collective ran (this clock) */
    double idle_s;        /* seconds blocked in receives before the peer had even sent
                             (waiting for other ranks' compute: the pipeline bubble) */
    double bytes_sent;    /* payload bytes sent */
} vc_clock;

/* Start a clock at time t0 (virtual) or now minus t0 (wall). */
void vc_clock_init(vc_clock *c, int virtual_mode, double t0);
/* The clock's time in seconds since its origin. */
double vc_now(const vc_clock *c);
/* Charge `seconds` of modelled compute (virtual mode only; wall time passes by itself). */
void vc_compute(vc_clock *c, double seconds);

/* A posted send: its requests and the stamp buffer they reference. */
typedef struct vc_send {
    MPI_Request req[2];
    double stamp;
    int active;
} vc_send;

/* Post a non-blocking send of n floats to `peer`. buf must stay untouched
 * until vc_send_wait. */
void vc_isend(vc_clock *c, vc_send *s, const float *buf, size_t n, int peer, int tag, MPI_Comm comm);
/* Complete a posted send (no-op if none is active). */
void vc_send_wait(vc_send *s);

/* Blocking receive of n floats from `peer` over the incoming channel ch. */
void vc_recv(vc_clock *c, lm_chan *ch, float *buf, size_t n, int peer, int tag, MPI_Comm comm);

/* In-place sum over comm; the clock advances as a ring all-reduce over
 * `slowest` among the comm's members. */
void vc_allreduce_sum(vc_clock *c, float *buf, size_t n, MPI_Comm comm, lm_link slowest);
/* Broadcast n floats from comm rank `root`; the clock advances as a
 * binomial-tree broadcast over `slowest`. */
void vc_bcast(vc_clock *c, float *buf, size_t n, int root, MPI_Comm comm, lm_link slowest);
/* Charge the clock for a ring all-reduce of `bytes` over comm whose data the
 * caller moved itself (e.g. in buckets overlapped with compute): virtual mode
 * synchronises the group and adds the modelled cost; wall mode adds
 * waited_s, the time the caller spent waiting for it. Counts the bytes. */
void vc_charge_allreduce(vc_clock *c, MPI_Comm comm, lm_link slowest, double bytes, double waited_s);
/* Sum of one double over comm (a norm): clock charged as a tree all-reduce. */
double vc_allreduce_sum_d(vc_clock *c, double x, MPI_Comm comm, lm_link slowest);

#endif
