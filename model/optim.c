/*
 * optim — torch.optim.AdamW (decoupled weight decay), the DESIGN.md learning
 * rate schedule and global-norm clipping, over a shard's flat buffers. Built
 * with -O3 -ffast-math -fno-finite-math-only: the per-element loops are
 * single passes the compiler vectorises.
 */
/* The Makefile's flags, asked for here too should a build not pass them
 * (GCC defines __NO_MATH_ERRNO__ under -ffast-math). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__NO_MATH_ERRNO__)
#pragma GCC optimize("O3", "fast-math", "no-finite-math-only", "no-math-errno")
#endif

#include "optim.h"

#include "../common/et_pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* DESIGN.md defaults: lr 6e-4 constant, no warm-up, betas 0.9/0.95, eps
 * 1e-8, no weight decay, clipping at 1.0. */
void optim_config_default(optim_config *o)
{
    memset(o, 0, sizeof *o);
    o->lr = 6.0e-4;
    o->min_lr = 0.0;
    o->warmup_steps = 0;
    o->cosine = 0;
    o->max_steps = 0;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->weight_decay = 0.0;
    o->grad_clip = 1.0;
}

/* Linear warm-up lr*(s+1)/warmup for s < warmup; then either constant lr
 * or cosine from lr to min_lr over [warmup, max_steps]: progress
 * p = (s - warmup) / max(1, max_steps - warmup), held at 1 past max_steps
 * (so the rate stays at min_lr instead of rising again). */
double optim_lr_at(const optim_config *o, long s)
{
    if (s < o->warmup_steps)
        return o->lr * (double)(s + 1) / (double)o->warmup_steps;
    if (!o->cosine)
        return o->lr;
    long span = o->max_steps - o->warmup_steps;
    double p = (double)(s - o->warmup_steps) / (double)(span > 1 ? span : 1);
    if (p > 1.0)
        p = 1.0;
    return o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * p));
}

/* grad_clip / (norm + 1e-6) when clipping is on and norm > grad_clip, else 1
 * (a NaN norm gives 1: the caller's non-finite check sees the NaN). */
double optim_clip_scale(const optim_config *o, double norm)
{
    if (o->grad_clip > 0.0 && norm > o->grad_clip)
        return o->grad_clip / (norm + 1e-6);
    return 1.0;
}

/* Moments in the shard's layout, zeroed; owned by the returned state. */
optim_state *optim_state_new(const gpt2_shard *sh)
{
    optim_state *st = et_xmalloc(sizeof *st);
    st->n = sh->n_params;
    st->m = et_amalloc(st->n * sizeof(float));
    st->v = et_amalloc(st->n * sizeof(float));
    memset(st->m, 0, st->n * sizeof(float));
    memset(st->v, 0, st->n * sizeof(float));
    return st;
}

/* Frees the moments and the state; NULL is fine. */
void optim_state_free(optim_state *st)
{
    if (!st)
        return;
    et_afree(st->m);
    et_afree(st->v);
    free(st);
}

/* Sum of squares of n floats: float partial sums over blocks of 1024
 * (vectorised), added up in double. */
static double sqsum(const float *restrict g, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i += 1024) {
        size_t e = i + 1024 < n ? i + 1024 : n;
        float s = 0.0f;
        for (size_t j = i; j < e; j++)
            s += g[j] * g[j];
        total += s;
    }
    return total;
}

/* 1 if t is the shard's (tied) wte. */
static int is_wte(const gpt2_shard *sh, const gpt2_tensor *t)
{
    return sh->g_wte != NULL && sh->grads + t->offset == sh->g_wte;
}

/* The gradient norm runs as one et_pool loop over the flat buffer, cut into
 * fixed chunks of SQ_CHUNK floats; chunk c's sum of squares (of the tensors
 * that count, restricted to the chunk) lands in part[c], and the chunks are
 * added in order afterwards. The grid does not depend on the thread count,
 * so neither does the result, to the last bit. */
#define SQ_CHUNK ((size_t)1 << 16)
#define SQ_WINDOW 2048 /* chunks per loop: the partials live on the stack */

typedef struct {
    const gpt2_shard *sh;
    int count_replicated, skip_wte;
    size_t base;   /* buffer offset of chunk 0 of this window */
    double *part;  /* [SQ_WINDOW] */
} sq_job;

/* Chunks [b/SQ_CHUNK, e/SQ_CHUNK) of the window (b, e relative to base). */
static void sq_part(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    const sq_job *j = vctx;
    const gpt2_shard *sh = j->sh;
    for (size_t c0 = b; c0 < e; c0 += SQ_CHUNK) {
        size_t lo = j->base + c0, hi = j->base + (c0 + SQ_CHUNK < e ? c0 + SQ_CHUNK : e);
        double acc = 0.0;
        for (int i = 0; i < sh->n_tensors; i++) {
            const gpt2_tensor *t = &sh->tensors[i];
            if ((!t->sharded && !j->count_replicated) || (j->skip_wte && is_wte(sh, t)))
                continue;
            size_t tb = t->offset > lo ? t->offset : lo;
            size_t te = t->offset + t->numel < hi ? t->offset + t->numel : hi;
            if (tb < te)
                acc += sqsum(sh->grads + tb, te - tb);
        }
        j->part[c0 / SQ_CHUNK] = acc;
    }
}

/* See optim.h. Gradients discarded by gpt2_shard_discard_grad count as 0. */
double optim_grad_sqsum(const gpt2_shard *sh, int count_replicated, int skip_wte)
{
    if (sh->grad_overwrite)
        return 0.0;
    double part[SQ_WINDOW], total = 0.0;
    sq_job j = {sh, count_replicated, skip_wte, 0, part};
    for (j.base = 0; j.base < sh->n_params; j.base += SQ_WINDOW * SQ_CHUNK) {
        size_t n = sh->n_params - j.base;
        if (n > SQ_WINDOW * SQ_CHUNK)
            n = SQ_WINDOW * SQ_CHUNK;
        et_pool_run(n, SQ_CHUNK, sq_part, &j);
        for (size_t c = 0; c < (n + SQ_CHUNK - 1) / SQ_CHUNK; c++)
            total += part[c];
    }
    return total;
}

/* The per-element AdamW update, written the way torch 1.13's
 * _single_tensor_adamw computes it (in float, scalars rounded to float):
 *   p = p * (1 - lr*wd)
 *   m = beta1 m + (1 - beta1) g
 *   v = beta2 v + (1 - beta2) g^2
 *   p = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
 * with g = grad * grad_scale (the clipping multiplies the grads first). The
 * gradient is consumed: zeroed once read, in the same pass (its cache line
 * is already there), which spares the next step's zero_grad a full pass.
 * The Makefile builds this file with -fno-tree-loop-distribute-patterns, or
 * GCC would move that store out into a memset, a pass of its own. */
static void adamw_run(float *restrict p, float *restrict grad, float *restrict m,
                      float *restrict v, size_t n, float gscale, float decay_mul, float b1,
                      float b2, float step, float inv_bc2_sqrt, float eps)
{
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * gscale;
        grad[i] = 0.0f;
        float mi = b1 * m[i] + omb1 * g;
        float vi = b2 * v[i] + omb2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
        p[i] = p[i] * decay_mul - step * (mi / denom);
    }
}

/* The same update with a zero gradient (after gpt2_shard_discard_grad with
 * no backward): the moments decay, the parameters still move; the unread
 * gradients are set to 0 as well. */
static void adamw_run_zero(float *restrict p, float *restrict grad, float *restrict m,
                           float *restrict v, size_t n, float decay_mul, float b1, float b2,
                           float step, float inv_bc2_sqrt, float eps)
{
    for (size_t i = 0; i < n; i++) {
        float mi = b1 * m[i];
        float vi = b2 * v[i];
        grad[i] = 0.0f;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
        p[i] = p[i] * decay_mul - step * (mi / denom);
    }
}

/* AdamW as one et_pool loop over the flat buffer: each part updates the
 * pieces of the tensors that fall in its range, with the tensor's decay
 * factor. Element-wise, so the result does not depend on the split. */
typedef struct {
    gpt2_shard *sh;
    optim_state *st;
    float gscale, decay_mul, b1, b2, step, inv_bc2_sqrt, eps;
} adam_job;

static void adam_part(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    const adam_job *j = vctx;
    gpt2_shard *sh = j->sh;
    for (int i = 0; i < sh->n_tensors; i++) {
        const gpt2_tensor *tn = &sh->tensors[i];
        size_t lo = tn->offset > b ? tn->offset : b;
        size_t hi = tn->offset + tn->numel < e ? tn->offset + tn->numel : e;
        if (lo >= hi)
            continue;
        float decay_mul = tn->decay ? j->decay_mul : 1.0f;
        float *p = sh->params + lo, *m = j->st->m + lo, *v = j->st->v + lo;
        if (sh->grad_overwrite)
            adamw_run_zero(p, sh->grads + lo, m, v, hi - lo, decay_mul, j->b1, j->b2, j->step,
                           j->inv_bc2_sqrt, j->eps);
        else
            adamw_run(p, sh->grads + lo, m, v, hi - lo, j->gscale, decay_mul, j->b1, j->b2,
                      j->step, j->inv_bc2_sqrt, j->eps);
    }
}

/* Bias corrections use t = s + 1; the parts split at multiples of 16 KiB
 * floats (whole cache lines, whole vectors). */
void optim_step(gpt2_shard *sh, optim_state *st, const optim_config *o, long s, double grad_scale)
{
    const double lr = optim_lr_at(o, s);
    const double t = (double)(s + 1);
    const double bc1 = 1.0 - pow(o->beta1, t);
    const double bc2 = 1.0 - pow(o->beta2, t);
    adam_job j = {sh,
                  st,
                  (float)grad_scale,
                  (float)(1.0 - lr * o->weight_decay),
                  (float)o->beta1,
                  (float)o->beta2,
                  (float)(lr / bc1),
                  (float)(1.0 / sqrt(bc2)),
                  (float)o->eps};
    et_pool_run(sh->n_params, (size_t)1 << 14, adam_part, &j);
    sh->grads_zero = 1; /* consumed (see adamw_run) */
    sh->grad_overwrite = 0;
}
