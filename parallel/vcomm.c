#include "vcomm.h"


void vc_clock_init(vc_clock *c, int virtual_mode, double t0)
{
    c->virtual_mode = virtual_mode;
    c->t = t0;
    c->origin = MPI_Wtime() - t0;
    c->wait_s = 0;
    c->idle_s = 0;
    c->bytes_sent = 0;
}

double vc_now(const vc_clock *c)
{
    return c->virtual_mode ? c->t : MPI_Wtime() - c->origin;
}

void vc_compute(vc_clock *c, double seconds)
{
    if (c->virtual_mode)
        c->t += seconds;
}

/* MPI counts are ints: move large buffers in chunks of at most this many floats. */
#define VC_CHUNK ((size_t)1 << 28)

void vc_isend(vc_clock *c, vc_send *s, const float *buf, size_t n, int peer, int tag, MPI_Comm comm)
{
    s->stamp = vc_now(c);
    s->active = 1;
    MPI_Isend(&s->stamp, 1, MPI_DOUBLE, peer, 2 * tag + 1, comm, &s->req[0]);
    MPI_Isend(buf, (int)n, MPI_FLOAT, peer, 2 * tag, comm, &s->req[1]);
    c->bytes_sent += (double)n * sizeof(float);
}

void vc_send_wait(vc_send *s)
{
    if (!s->active)
        return;
    MPI_Waitall(2, s->req, MPI_STATUSES_IGNORE);
    s->active = 0;
}

void vc_recv(vc_clock *c, lm_chan *ch, float *buf, size_t n, int peer, int tag, MPI_Comm comm)
{
    double stamp, w0 = MPI_Wtime(), before = vc_now(c);
    MPI_Recv(&stamp, 1, MPI_DOUBLE, peer, 2 * tag + 1, comm, MPI_STATUS_IGNORE);
    MPI_Recv(buf, (int)n, MPI_FLOAT, peer, 2 * tag, comm, MPI_STATUS_IGNORE);
    if (c->virtual_mode) {
        double arrival = lm_chan_send(ch, stamp, (double)n * sizeof(float), NULL);
        if (arrival > c->t)
            c->t = arrival;
        /* Blocked from `before` to c->t: the part before the peer sent is
         * idle (bubble), the rest is the message on the wire or queued. */
        double idle = (stamp < c->t ? stamp : c->t) - before;
        if (idle < 0)
            idle = 0;
        c->idle_s += idle;
        c->wait_s += c->t - before - idle;
    } else {
        c->wait_s += MPI_Wtime() - w0;
    }
}

/* Synchronise the group's virtual clocks at max + cost. */
static void sync_clock(vc_clock *c, MPI_Comm comm, double cost, double before)
{
    double latest = c->t;
    MPI_Allreduce(MPI_IN_PLACE, &latest, 1, MPI_DOUBLE, MPI_MAX, comm);
    c->t = latest + cost;
    c->wait_s += c->t - before;
}

void vc_allreduce_sum(vc_clock *c, float *buf, size_t n, MPI_Comm comm, lm_link slowest)
{
    int p;
    MPI_Comm_size(comm, &p);
    if (p <= 1)
        return;
    double w0 = MPI_Wtime(), before = vc_now(c);
    for (size_t off = 0; off < n; off += VC_CHUNK) {
        size_t k = n - off < VC_CHUNK ? n - off : VC_CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, comm);
    }
    c->bytes_sent += 2.0 * (p - 1) / p * (double)n * sizeof(float);
    if (c->virtual_mode)
        sync_clock(c, comm, lm_ring_allreduce_s(slowest, (double)n * sizeof(float), p), before);
    else
        c->wait_s += MPI_Wtime() - w0;
}

void vc_charge_allreduce(vc_clock *c, MPI_Comm comm, lm_link slowest, double bytes, double waited_s)
{
    int p;
    MPI_Comm_size(comm, &p);
    if (p <= 1)
        return;
    c->bytes_sent += 2.0 * (p - 1) / p * bytes;
    if (c->virtual_mode)
        sync_clock(c, comm, lm_ring_allreduce_s(slowest, bytes, p), vc_now(c));
    else
        c->wait_s += waited_s;
}

void vc_bcast(vc_clock *c, float *buf, size_t n, int root, MPI_Comm comm, lm_link slowest)
{
    int p, me;
    MPI_Comm_size(comm, &p);
    MPI_Comm_rank(comm, &me);
    if (p <= 1)
        return;
    double w0 = MPI_Wtime(), before = vc_now(c);
    for (size_t off = 0; off < n; off += VC_CHUNK) {
        size_t k = n - off < VC_CHUNK ? n - off : VC_CHUNK;
        MPI_Bcast(buf + off, (int)k, MPI_FLOAT, root, comm);
    }
    if (me == root)
        c->bytes_sent += (double)n * sizeof(float);
    if (c->virtual_mode)
        sync_clock(c, comm, lm_bcast_s(slowest, (double)n * sizeof(float), p), before);
    else
        c->wait_s += MPI_Wtime() - w0;
}

double vc_allreduce_sum_d(vc_clock *c, double x, MPI_Comm comm, lm_link slowest)
{
    int p;
    MPI_Comm_size(comm, &p);
    if (p <= 1)
        return x;
    double w0 = MPI_Wtime(), before = vc_now(c);
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, comm);
    if (c->virtual_mode)
        sync_clock(c, comm, lm_tree_allreduce_s(slowest, sizeof(double), p), before);
    else
        c->wait_s += MPI_Wtime() - w0;
    return x;
}
