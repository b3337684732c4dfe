/*
 * linkmodel — the one model of a network link, shared by the planner's cost
 * model and the workers' virtual clock, so that prediction and emulation
 * charge a message exactly the same. Pure and deterministic: no clocks, no
 * I/O, no allocation.
 *
 * A link has a bandwidth B (bytes/s, may be INFINITY for a link inside one
 * server) and a latency l (s). Each direction of a link is a separate channel
 * (links are full duplex). A channel serialises its messages: a message of n
 * bytes handed to the channel at time t starts when the channel is free,
 *     start   = max(t, busy_until)
 * occupies the channel for its serialisation time n/B,
 *     busy_until = start + n/B
 * and arrives one latency after its last byte left:
 *     arrival = start + n/B + l.
 * Latency therefore does NOT keep the channel busy: the next message's bytes
 * follow the previous one's on the wire (a pipelined link, as on real
 * Ethernet/Wi-Fi), and a lone message costs l + n/B.
 *
 * Collectives over p members are charged with the slowest link among them
 * (lowest bandwidth, highest latency, possibly of different pairs: a
 * conservative bound a ring or tree can not beat):
 *   ring all-reduce (large buffers): 2(p-1) steps of n/p bytes, each step
 *       paying the latency: 2(p-1) * (l + n/(p*B));
 *   recursive-doubling all-reduce (a few bytes, e.g. a norm): ceil(log2 p)
 *       rounds of l + n/B;
 *   binomial-tree broadcast: ceil(log2 p) rounds of l + n/B.
 * p <= 1 costs 0.
 */
#ifndef LINKMODEL_H
#define LINKMODEL_H

typedef struct lm_link {
    double bandwidth;   /* bytes per second, > 0, INFINITY allowed */
    double latency;     /* seconds, >= 0 */
} lm_link;

/* One direction of a link, with the time until which it is busy. */
typedef struct lm_chan {
    lm_link link;
    double busy_until;
} lm_chan;

/* A channel over link l, idle since time 0. */
void lm_chan_init(lm_chan *c, lm_link l);

/* Hand `bytes` to the channel at time t_send. Returns the arrival time;
 * stores the time the first byte went out in *start (may be NULL). Updates
 * the channel's busy_until. */
double lm_chan_send(lm_chan *c, double t_send, double bytes, double *start);

/* Serialisation time bytes/bandwidth (0 for 0 bytes or an infinite link). */
double lm_serial_s(lm_link l, double bytes);

/* Time of a lone message: latency + bytes/bandwidth. */
double lm_transfer_s(lm_link l, double bytes);

/* Collective costs over p members with the slowest link among them (see above). */
double lm_ring_allreduce_s(lm_link slowest, double bytes, int p);
double lm_tree_allreduce_s(lm_link slowest, double bytes, int p);
double lm_bcast_s(lm_link slowest, double bytes, int p);

/* The slower of two links: min bandwidth, max latency. */
lm_link lm_link_slower(lm_link a, lm_link b);

/* The link that is infinitely fast (bandwidth INFINITY, latency 0): the
 * identity for lm_link_slower, the "link" between a server and itself. */
lm_link lm_link_ideal(void);

/* ceil(log2(p)) for p >= 1 (0 for p <= 1). */
int lm_ceil_log2(int p);

#endif
