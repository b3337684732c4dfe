/*
 * engine — one rank's data plane for a shard that runs a whole pipeline by
 * itself (a single stage, no tensor split): the single-process trainer and the
 * data-parallel-free path. It owns the shard, the AdamW state, the activation
 * buffers and the micro-batch token buffers; a training step and an
 * evaluation never allocate.
 */
#ifndef ET_ENGINE_H
#define ET_ENGINE_H

#include <stdint.h>

#include "../common/et_err.h"
#include "../model/gpt2.h"
#include "../model/optim.h"
#include "sampler.h"

typedef struct et_eval_result {
    double loss;        /* mean next-token cross-entropy over the evaluated tokens */
    double accuracy;    /* fraction whose argmax prediction is right */
    long tokens;        /* predictions evaluated */
} et_eval_result;

typedef struct et_engine {
    gpt2_shard *sh;
    optim_state *opt;
    optim_config ocfg;
    int B, T, M;            /* micro_batch, seq_len, micro-batches per step */
    gpt2_acts *acts;        /* [B,T] training / evaluation activations */
    gpt2_acts *acts_rem;    /* [rem,T] for the last partial evaluation batch, or NULL */
    int rem;
    int *tok, *tgt;         /* [B*T] */
    et_sampler sampler;     /* over the train split */
    const int32_t *val;     /* borrowed val split */
    size_t n_val;
    long eval_windows;      /* non-overlapping windows of T predictions evaluated */
} et_engine;

/* Build the engine for the whole model: B sequences of T tokens per
 * micro-batch, M micro-batches per step; evaluation over the first eval_tokens
 * tokens of val. oc NULL: evaluation only (no optimizer state, no training
 * steps). The shard's weights are zero until initialised or loaded. */
et_engine *engine_new(const gpt2_config *mc, int B, int T, int M, const optim_config *oc,
                      const et_sampler *train, const int32_t *val, size_t n_val,
                      long eval_tokens, et_err *e);
void engine_free(et_engine *en);

typedef struct et_step_result {
    double loss;        /* mean loss of the step's forward passes */
    double grad_norm;   /* global L2 norm before clipping */
    double lr;
} et_step_result;

/* One optimizer step s reading sequences k0 ... k0 + B*M - 1. */
void engine_train_step(et_engine *en, long s, uint64_t k0, et_step_result *r);

/* Evaluate on the val split (DESIGN.md "Evaluation"). */
void engine_eval(et_engine *en, et_eval_result *r);

#endif
