/*
 * schedule — GPipe and 1F1B op lists, their validator and their simulator.
 * See schedule.h for the execution model.
 */
#include "schedule.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/et_err.h"

/* ---------------------------------------------------------------- names */

/* "gpipe", "1f1b", or NULL. */
const char *sched_type_name(int type)
{
    switch (type) {
    case SCHED_GPIPE: return "gpipe";
    case SCHED_1F1B: return "1f1b";
    default: return NULL;
    }
}

/* Upper-case op name, "?" for a value outside the enum. */
const char *sched_kind_name(sched_kind k)
{
    switch (k) {
    case SCHED_FWD: return "FWD";
    case SCHED_BWD: return "BWD";
    case SCHED_RECV_ACT: return "RECV_ACT";
    case SCHED_SEND_ACT: return "SEND_ACT";
    case SCHED_RECV_GRAD: return "RECV_GRAD";
    case SCHED_SEND_GRAD: return "SEND_GRAD";
    }
    return "?";
}

/* Case-insensitive "gpipe" / "1f1b" -> type, else -1. */
int sched_type_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcasecmp(s, "gpipe") == 0)
        return SCHED_GPIPE;
    if (strcasecmp(s, "1f1b") == 0)
        return SCHED_1F1B;
    return -1;
}

/* ------------------------------------------------------------ op lists */

static int args_ok(int s, int S, int M)
{
    return S >= 1 && M >= 1 && s >= 0 && s < S;
}

/* 2M computations + 2M comm ops per inner boundary the stage touches. */
int sched_stage_len(int s, int S, int M)
{
    if (!args_ok(s, S, M))
        return -1;
    return 2 * M + (s > 0 ? 2 * M : 0) + (s < S - 1 ? 2 * M : 0);
}

/* Append the forward of mb with its receive and send, as the stage's
 * position requires. */
static int put_fwd(sched_op *ops, int n, int s, int S, int mb)
{
    if (s > 0)
        ops[n++] = (sched_op){SCHED_RECV_ACT, mb};
    ops[n++] = (sched_op){SCHED_FWD, mb};
    if (s < S - 1)
        ops[n++] = (sched_op){SCHED_SEND_ACT, mb};
    return n;
}

/* Append the backward of mb with its receive and send. */
static int put_bwd(sched_op *ops, int n, int s, int S, int mb)
{
    if (s < S - 1)
        ops[n++] = (sched_op){SCHED_RECV_GRAD, mb};
    ops[n++] = (sched_op){SCHED_BWD, mb};
    if (s > 0)
        ops[n++] = (sched_op){SCHED_SEND_GRAD, mb};
    return n;
}

/* The list of stage s; see schedule.h for the two orders. */
int sched_stage_ops(int type, int s, int S, int M, sched_op *ops)
{
    if (!args_ok(s, S, M) || ops == NULL)
        return -1;
    int n = 0;
    if (type == SCHED_GPIPE) {
        for (int mb = 0; mb < M; mb++)
            n = put_fwd(ops, n, s, S, mb);
        for (int mb = 0; mb < M; mb++)
            n = put_bwd(ops, n, s, S, mb);
    } else if (type == SCHED_1F1B) {
        int w = S - 1 - s < M ? S - 1 - s : M;
        for (int mb = 0; mb < w; mb++)
            n = put_fwd(ops, n, s, S, mb);
        for (int k = 0; k < M - w; k++) {
            n = put_fwd(ops, n, s, S, w + k);
            n = put_bwd(ops, n, s, S, k);
        }
        for (int k = M - w; k < M; k++)
            n = put_bwd(ops, n, s, S, k);
    } else {
        return -1;
    }
    return n;
}

/* Running count of forwarded-but-not-backwarded micro-batches, maximised. */
int sched_in_flight(const sched_op *ops, int n)
{
    int cur = 0, best = 0;
    for (int i = 0; i < n; i++) {
        if (ops[i].kind == SCHED_FWD && ++cur > best)
            best = cur;
        else if (ops[i].kind == SCHED_BWD)
            cur--;
    }
    return best;
}

/* GPipe keeps all M; 1F1B's warm-up of S-1-s forwards plus the one in
 * steady state, capped by M. */
int sched_max_in_flight(int type, int s, int S, int M)
{
    if (!args_ok(s, S, M))
        return -1;
    if (type == SCHED_GPIPE)
        return M;
    if (type == SCHED_1F1B)
        return S - s < M ? S - s : M;
    return -1;
}

/* ------------------------------------------------------------ programs */

/* All S lists plus the simulator's scratch, in owned arrays. */
sched_program *sched_program_new(int type, int S, int M)
{
    if (S < 1 || M < 1 || sched_type_name(type) == NULL)
        return NULL;
    sched_program *p = et_xcalloc(1, sizeof *p);
    p->type = type;
    p->S = S;
    p->M = M;
    p->n_ops = et_xcalloc((size_t)S, sizeof *p->n_ops);
    p->ops = et_xcalloc((size_t)S, sizeof *p->ops);
    for (int s = 0; s < S; s++) {
        p->ops[s] = et_xmalloc((size_t)sched_stage_len(s, S, M) * sizeof(sched_op));
        p->n_ops[s] = sched_stage_ops(type, s, S, M, p->ops[s]);
    }
    /* arrival and start times of every message on both channels of every
     * boundary, the channels' busy-until times, the stages' clocks */
    size_t nb = (size_t)(S - 1);
    p->scratch = et_xmalloc((4 * nb * (size_t)M + 2 * nb + (size_t)S + 1) * sizeof(double));
    p->pc = et_xmalloc((size_t)S * sizeof(int));
    return p;
}

void sched_program_free(sched_program *p)
{
    if (p == NULL)
        return;
    for (int s = 0; s < p->S; s++)
        free(p->ops[s]);
    free(p->ops);
    free(p->n_ops);
    free(p->scratch);
    free(p->pc);
    free(p);
}

/* ------------------------------------------------------------ validator */

/* Format the reason into why (when given) and return -1. */
static int whyf(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int whyf(char *why, size_t len, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Per-stage structure: each kind at most once per micro-batch, allowed at
 * this position, in dependency order; pos[k*M+mb] = index of op kind k. */
static int check_stage(int s, int S, int M, const sched_op *ops, int n, int *pos,
                       char *why, size_t len)
{
    for (int i = 0; i < 6 * M; i++)
        pos[i] = -1;
    for (int i = 0; i < n; i++) {
        int k = (int)ops[i].kind, mb = ops[i].mb;
        if (k < 0 || k > 5)
            return whyf(why, len, "stage %d op %d: unknown kind %d", s, i, k);
        if (mb < 0 || mb >= M)
            return whyf(why, len, "stage %d op %d: micro-batch %d out of range", s, i, mb);
        if ((k == SCHED_RECV_ACT || k == SCHED_SEND_GRAD) && s == 0)
            return whyf(why, len, "stage %d op %d: the first stage has no previous stage", s, i);
        if ((k == SCHED_SEND_ACT || k == SCHED_RECV_GRAD) && s == S - 1)
            return whyf(why, len, "stage %d op %d: the last stage has no next stage", s, i);
        if (pos[k * M + mb] >= 0)
            return whyf(why, len, "stage %d op %d: repeats an op of micro-batch %d", s, i, mb);
        pos[k * M + mb] = i;
    }
    for (int mb = 0; mb < M; mb++) {
        const int *P = pos;
        int f = P[SCHED_FWD * M + mb], b = P[SCHED_BWD * M + mb];
        if (f < 0 || b < 0)
            return whyf(why, len, "stage %d: micro-batch %d lacks its %s", s, mb, f < 0 ? "FWD" : "BWD");
        if (b < f)
            return whyf(why, len, "stage %d: BWD of micro-batch %d before its FWD", s, mb);
        if (s > 0) {
            int ra = P[SCHED_RECV_ACT * M + mb], sg = P[SCHED_SEND_GRAD * M + mb];
            if (ra < 0 || ra > f)
                return whyf(why, len, "stage %d: micro-batch %d: no RECV_ACT before its FWD", s, mb);
            if (sg < 0 || sg < b)
                return whyf(why, len, "stage %d: micro-batch %d: no SEND_GRAD after its BWD", s, mb);
        }
        if (s < S - 1) {
            int sa = P[SCHED_SEND_ACT * M + mb], rg = P[SCHED_RECV_GRAD * M + mb];
            if (sa < 0 || sa < f)
                return whyf(why, len, "stage %d: micro-batch %d: no SEND_ACT after its FWD", s, mb);
            if (rg < 0 || rg > b)
                return whyf(why, len, "stage %d: micro-batch %d: no RECV_GRAD before its BWD", s, mb);
        }
    }
    return 0;
}

/* The micro-batches of kind k in list order, into seq[0..M-1]. */
static void channel_order(const sched_op *ops, int n, sched_kind k, int *seq)
{
    int j = 0;
    for (int i = 0; i < n; i++)
        if (ops[i].kind == k)
            seq[j++] = ops[i].mb;
}

/*
 * Structure per stage, FIFO order per channel, then a run of the whole
 * program: sends post instantly; the k-th RECV on a channel may proceed once
 * k+1 messages were posted on it. Stops when no stage can move.
 */
int sched_validate(int S, int M, const sched_op *const *ops, const int *n_ops,
                   char *why, size_t why_len)
{
    if (S < 1 || M < 1 || ops == NULL || n_ops == NULL)
        return whyf(why, why_len, "bad arguments (S=%d, M=%d)", S, M);
    int *pos = et_xmalloc((size_t)6 * (size_t)M * sizeof(int));
    int *seq_a = et_xmalloc((size_t)M * sizeof(int));
    int *seq_b = et_xmalloc((size_t)M * sizeof(int));
    int *pc = et_xcalloc((size_t)S, sizeof(int));
    int *posted = et_xcalloc((size_t)(2 * S), sizeof(int));   /* [2b]: acts on b, [2b+1]: grads on b */
    int *taken = et_xcalloc((size_t)(2 * S), sizeof(int));
    int rc = 0;
    for (int s = 0; s < S && rc == 0; s++) {
        if (ops[s] == NULL || n_ops[s] < 0)
            rc = whyf(why, why_len, "stage %d: no op list", s);
        else
            rc = check_stage(s, S, M, ops[s], n_ops[s], pos, why, why_len);
    }
    for (int b = 0; b + 1 < S && rc == 0; b++) {
        channel_order(ops[b], n_ops[b], SCHED_SEND_ACT, seq_a);
        channel_order(ops[b + 1], n_ops[b + 1], SCHED_RECV_ACT, seq_b);
        for (int i = 0; i < M && rc == 0; i++)
            if (seq_a[i] != seq_b[i])
                rc = whyf(why, why_len, "activations %d->%d: message %d out of order", b, b + 1, i);
        channel_order(ops[b + 1], n_ops[b + 1], SCHED_SEND_GRAD, seq_a);
        channel_order(ops[b], n_ops[b], SCHED_RECV_GRAD, seq_b);
        for (int i = 0; i < M && rc == 0; i++)
            if (seq_a[i] != seq_b[i])
                rc = whyf(why, why_len, "gradients %d->%d: message %d out of order", b + 1, b, i);
    }
    int moved = 1;
    while (rc == 0 && moved) {
        moved = 0;
        for (int s = 0; s < S; s++) {
            while (pc[s] < n_ops[s]) {
                sched_kind k = ops[s][pc[s]].kind;
                if (k == SCHED_SEND_ACT)
                    posted[2 * s]++;
                else if (k == SCHED_SEND_GRAD)
                    posted[2 * (s - 1) + 1]++;
                else if (k == SCHED_RECV_ACT) {
                    int ch = 2 * (s - 1);
                    if (taken[ch] >= posted[ch])
                        break;
                    taken[ch]++;
                } else if (k == SCHED_RECV_GRAD) {
                    int ch = 2 * s + 1;
                    if (taken[ch] >= posted[ch])
                        break;
                    taken[ch]++;
                }
                pc[s]++;
                moved = 1;
            }
        }
    }
    for (int s = 0; s < S && rc == 0; s++)
        if (pc[s] < n_ops[s])
            rc = whyf(why, why_len, "deadlock: stage %d waits forever at op %d (micro-batch %d)",
                      s, pc[s], ops[s][pc[s]].mb);
    free(pos);
    free(seq_a);
    free(seq_b);
    free(pc);
    free(posted);
    free(taken);
    return rc;
}

/* ------------------------------------------------------------ simulator */

/*
 * Advance every stage as far as its receives allow, round after round, until
 * all lists are done. Times only depend on the dependencies (each channel's
 * messages are posted in the sender's list order), so the round order does
 * not change the result.
 */
double sched_simulate(sched_program *p, const sched_costs *c, sched_stage_time *out)
{
    int S = p->S, M = p->M;
    size_t nb = (size_t)(S - 1), nm = nb * (size_t)M;
    double *arr_act = p->scratch, *st_act = arr_act + nm;
    double *arr_grad = st_act + nm, *st_grad = arr_grad + nm;
    double *busy_act = st_grad + nm, *busy_grad = busy_act + nb;
    double *clock = busy_grad + nb;
    for (size_t i = 0; i < nm; i++)
        arr_act[i] = arr_grad[i] = -1.0;          /* not sent yet */
    for (size_t b = 0; b < nb; b++)
        busy_act[b] = busy_grad[b] = 0.0;
    for (int s = 0; s < S; s++) {
        clock[s] = 0.0;
        p->pc[s] = 0;
        if (out)
            out[s] = (sched_stage_time){0, 0, 0, 0};
    }
    int left = 0;
    for (int s = 0; s < S; s++)
        left += p->n_ops[s];
    while (left > 0) {
        int moved = 0;
        for (int s = 0; s < S; s++) {
            const sched_op *ops = p->ops[s];
            while (p->pc[s] < p->n_ops[s]) {
                sched_op op = ops[p->pc[s]];
                size_t i;
                double arr = 0, st = 0;
                switch (op.kind) {
                case SCHED_FWD:
                case SCHED_BWD: {
                    double d = op.kind == SCHED_FWD ? c->fwd_s[s] : c->bwd_s[s];
                    clock[s] += d;
                    if (out)
                        out[s].compute_s += d;
                    break;
                }
                case SCHED_SEND_ACT: {
                    lm_chan ch = {c->act_link[s], busy_act[s]};
                    i = (size_t)s * (size_t)M + (size_t)op.mb;
                    arr_act[i] = lm_chan_send(&ch, clock[s], c->act_bytes[s], &st_act[i]);
                    busy_act[s] = ch.busy_until;
                    break;
                }
                case SCHED_SEND_GRAD: {
                    lm_chan ch = {c->grad_link[s - 1], busy_grad[s - 1]};
                    i = (size_t)(s - 1) * (size_t)M + (size_t)op.mb;
                    arr_grad[i] = lm_chan_send(&ch, clock[s], c->grad_bytes[s - 1], &st_grad[i]);
                    busy_grad[s - 1] = ch.busy_until;
                    break;
                }
                case SCHED_RECV_ACT:
                case SCHED_RECV_GRAD:
                    if (op.kind == SCHED_RECV_ACT) {
                        i = (size_t)(s - 1) * (size_t)M + (size_t)op.mb;
                        arr = arr_act[i];
                        st = st_act[i];
                    } else {
                        i = (size_t)s * (size_t)M + (size_t)op.mb;
                        arr = arr_grad[i];
                        st = st_grad[i];
                    }
                    if (arr < 0.0)
                        goto blocked;
                    if (arr > clock[s]) {
                        /* the part of the wait while the bytes were moving is
                         * communication, the part before they were sent is bubble */
                        double from = st > clock[s] ? st : clock[s];
                        if (out) {
                            out[s].wire_wait_s += arr - from;
                            out[s].idle_s += from - clock[s];
                        }
                        clock[s] = arr;
                    }
                    break;
                }
                p->pc[s]++;
                left--;
                moved = 1;
            }
        blocked:;
        }
        if (!moved)
            return -1.0;
    }
    double makespan = 0.0;
    for (int s = 0; s < S; s++) {
        if (clock[s] > makespan)
            makespan = clock[s];
        if (out)
            out[s].end_s = clock[s];
    }
    return makespan;
}
