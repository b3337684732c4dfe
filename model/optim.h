/*
 * optim — AdamW exactly as torch.optim.AdamW, the learning-rate schedule,
 * gradient-norm clipping. Works on any shard; knows nothing of MPI (the caller
 * sums squared norms across ranks).
 */
#ifndef OPTIM_H
#define OPTIM_H

#include <stddef.h>

#include "gpt2.h"

typedef struct optim_config {
    double lr, min_lr;
    int warmup_steps;
    int cosine;          /* 1: cosine decay to min_lr; 0: constant */
    long max_steps;
    double beta1, beta2, eps;   /* 0.9, 0.95, 1e-8 */
    double weight_decay;        /* applied to tensors with decay=1 */
    double grad_clip;           /* global L2 norm; 0 disables */
} optim_config;

/* Defaults of DESIGN.md (lr 6e-4, betas 0.9/0.95, eps 1e-8, wd 0, clip 1). */
void optim_config_default(optim_config *o);

/* Learning rate at 0-based step s (DESIGN.md "Training semantics"). */
double optim_lr_at(const optim_config *o, long s);

/* Scale factor for the gradients given the global L2 norm: grad_clip/(norm+1e-6)
 * if clipping applies, else 1. */
double optim_clip_scale(const optim_config *o, double norm);

/* AdamW state for one shard: first and second moments in the shard's layout. */
typedef struct optim_state {
    size_t n;
    float *m, *v;
} optim_state;

optim_state *optim_state_new(const gpt2_shard *sh);
void optim_state_free(optim_state *st);

/* Local sum of squares of the shard's gradients. Tensors with sharded==0 are
 * counted only when count_replicated is set (so a TP group counts them once);
 * skip_wte leaves out wte (so a pipeline counts the tied matrix once). */
double optim_grad_sqsum(const gpt2_shard *sh, int count_replicated, int skip_wte);

/* One AdamW step at 0-based step s (bias correction uses t = s+1), with every
 * gradient multiplied by grad_scale first (clipping). The gradients are
 * consumed: every one is 0 afterwards (sh->grads_zero set, as after
 * gpt2_shard_zero_grad), so the next step's zero_grad writes nothing. Runs
 * on the threads of common/et_pool.h; the result does not depend on them. */
void optim_step(gpt2_shard *sh, optim_state *st, const optim_config *o, long s, double grad_scale);

#endif
