/*
 * sampler — which tokens each sequence of a run reads (DESIGN.md "Training
 * semantics"), so that every plan trains on exactly the same data.
 *
 * Sequence k of the run (k = step*global_batch + j) reads seq_len+1 tokens
 * starting at offset (k*seq_len) mod (N - seq_len - 1) of train/tokens with
 * sequential sampling, or at an offset drawn from a counter-based generator
 * keyed by (seed, k) with random sampling (so any rank can compute any
 * sequence's offset without shared state, and a resumed run continues the same
 * stream). Micro-batch i of a step holds sequences i*micro_batch ... .
 */
#ifndef ET_SAMPLER_H
#define ET_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct et_sampler {
    const int32_t *tokens;   /* borrowed: the train split */
    size_t n_tokens;
    int seq_len;
    int random;              /* 0 sequential, 1 random */
    uint64_t seed;
} et_sampler;

/* Offset of sequence k in the token array. Requires n_tokens >= seq_len + 2. */
size_t sampler_offset(const et_sampler *s, uint64_t k);

/* Fill inputs[n*seq_len] and targets[n*seq_len] with the n sequences k0..k0+n-1
 * (targets are the inputs shifted by one token). */
void sampler_fill(const et_sampler *s, uint64_t k0, int n, int *inputs, int *targets);

/* Evaluation windows (DESIGN.md "Evaluation"): fill inputs/targets with the
 * n non-overlapping windows w0 ... w0+n-1 of split, window w reading the
 * seq_len+1 tokens from w*seq_len. */
void sampler_fill_windows(const int32_t *split, int seq_len, long w0, int n, int *inputs, int *targets);

/* Deterministic 64-bit mixing (splitmix64 finaliser), shared by the samplers
 * and anything else that needs a stateless stream. */
uint64_t sampler_mix64(uint64_t x);

#endif
