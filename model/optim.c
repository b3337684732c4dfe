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

/* See optim.h. Gradients discarded by gpt2_shard_discard_grad count as 0. */
double optim_grad_sqsum(const gpt2_shard *sh, int count_replicated, int skip_wte)
{
    if (sh->grad_overwrite)
        return 0.0;
    double total = 0.0;
    for (int i = 0; i < sh->n_tensors; i++) {
        const gpt2_tensor *t = &sh->tensors[i];
        if (!t->sharded && !count_replicated)
            continue;
        if (skip_wte && is_wte(sh, t))
            continue;
        total += sqsum(sh->grads + t->offset, t->numel);
    }
    return total;
}

/* The per-element AdamW update, written the way torch 1.13's
 * _single_tensor_adamw computes it (in float, scalars rounded to float):
 *   p = p * (1 - lr*wd)
 *   m = beta1 m + (1 - beta1) g
 *   v = beta2 v + (1 - beta2) g^2
 *   p = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
 * with g = grad * grad_scale (the clipping multiplies the grads first). */
static void adamw_run(float *restrict p, const float *restrict grad, float *restrict m,
                      float *restrict v, size_t n, float gscale, float decay_mul, float b1,
                      float b2, float step, float inv_bc2_sqrt, float eps)
{
    const float omb1 = 1.0f - b1, omb2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * gscale;
        float mi = b1 * m[i] + omb1 * g;
        float vi = b2 * v[i] + omb2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
        p[i] = p[i] * decay_mul - step * (mi / denom);
    }
}

/* The same update with a zero gradient (after gpt2_shard_discard_grad with
 * no backward): the moments decay, the parameters still move. */
static void adamw_run_zero(float *restrict p, float *restrict m, float *restrict v, size_t n,
                           float decay_mul, float b1, float b2, float step, float inv_bc2_sqrt,
                           float eps)
{
    for (size_t i = 0; i < n; i++) {
        float mi = b1 * m[i];
        float vi = b2 * v[i];
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
        p[i] = p[i] * decay_mul - step * (mi / denom);
    }
}

/* One pass per tensor: the per-tensor decay flag picks the decay factor;
 * bias corrections use t = s + 1. */
void optim_step(gpt2_shard *sh, optim_state *st, const optim_config *o, long s, double grad_scale)
{
    const double lr = optim_lr_at(o, s);
    const double t = (double)(s + 1);
    const double bc1 = 1.0 - pow(o->beta1, t);
    const double bc2 = 1.0 - pow(o->beta2, t);
    const float step = (float)(lr / bc1);
    const float inv_bc2_sqrt = (float)(1.0 / sqrt(bc2));
    for (int i = 0; i < sh->n_tensors; i++) {
        const gpt2_tensor *tn = &sh->tensors[i];
        float decay_mul = tn->decay ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
        float *p = sh->params + tn->offset;
        float *m = st->m + tn->offset, *v = st->v + tn->offset;
        if (sh->grad_overwrite)
            adamw_run_zero(p, m, v, tn->numel, decay_mul, (float)o->beta1, (float)o->beta2, step,
                           inv_bc2_sqrt, (float)o->eps);
        else
            adamw_run(p, sh->grads + tn->offset, m, v, tn->numel, (float)grad_scale, decay_mul,
                      (float)o->beta1, (float)o->beta2, step, inv_bc2_sqrt, (float)o->eps);
    }
}
