/*
 * linkmodel — link and collective timing; see linkmodel.h for the model.
 */
#include "linkmodel.h"

#include <math.h>

/* A channel over l that has been idle since time 0. */
void lm_chan_init(lm_chan *c, lm_link l)
{
    c->link = l;
    c->busy_until = 0.0;
}

/* bytes / bandwidth, with 0 for an empty message or an infinite link (so that
 * 0/INFINITY and INFINITY/INFINITY never appear). */
double lm_serial_s(lm_link l, double bytes)
{
    if (bytes <= 0.0 || isinf(l.bandwidth))
        return 0.0;
    return bytes / l.bandwidth;
}

/* latency + bytes/bandwidth. */
double lm_transfer_s(lm_link l, double bytes)
{
    return l.latency + lm_serial_s(l, bytes);
}

/* Serialise the message behind whatever the channel is sending, then add the
 * latency: arrival = max(t_send, busy) + bytes/B + latency. */
double lm_chan_send(lm_chan *c, double t_send, double bytes, double *start)
{
    double s = t_send > c->busy_until ? t_send : c->busy_until;
    double ser = lm_serial_s(c->link, bytes);
    c->busy_until = s + ser;
    if (start)
        *start = s;
    return s + ser + c->link.latency;
}

/* ceil(log2(p)): the rounds of a recursive-doubling or binomial-tree
 * collective over p members. */
int lm_ceil_log2(int p)
{
    int r = 0;
    while (p > 1 && (1L << r) < (long)p)
        r++;
    return r;
}

/* Ring all-reduce: reduce-scatter then all-gather, 2(p-1) steps, each moving
 * bytes/p over every ring link at once and paying one latency. */
double lm_ring_allreduce_s(lm_link slowest, double bytes, int p)
{
    if (p <= 1)
        return 0.0;
    return 2.0 * (p - 1) * (slowest.latency + lm_serial_s(slowest, bytes / p));
}

/* Recursive doubling: ceil(log2 p) exchange rounds of the whole (small) buffer. */
double lm_tree_allreduce_s(lm_link slowest, double bytes, int p)
{
    if (p <= 1)
        return 0.0;
    return lm_ceil_log2(p) * lm_transfer_s(slowest, bytes);
}

/* Binomial-tree broadcast: ceil(log2 p) rounds of the whole buffer. */
double lm_bcast_s(lm_link slowest, double bytes, int p)
{
    if (p <= 1)
        return 0.0;
    return lm_ceil_log2(p) * lm_transfer_s(slowest, bytes);
}

/* Component-wise worst of two links. */
lm_link lm_link_slower(lm_link a, lm_link b)
{
    lm_link r;
    r.bandwidth = a.bandwidth < b.bandwidth ? a.bandwidth : b.bandwidth;
    r.latency = a.latency > b.latency ? a.latency : b.latency;
    return r;
}

/* Infinite bandwidth, zero latency. */
lm_link lm_link_ideal(void)
{
    lm_link r = {INFINITY, 0.0};
    return r;
}
