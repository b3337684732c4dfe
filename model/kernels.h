/*
 * kernels — the per-layer math of GPT-2 on one device, forward and backward
 * side by side. Every buffer is row-major float; N is the number of token rows
 * (B*T). Every matrix product goes through OpenBLAS cblas_sgemm; everything
 * else is plain single-threaded C written so that the compiler vectorises it.
 *
 * Conventions:
 *  - Nothing here allocates; the caller owns every buffer.
 *  - A backward adds (+=) into the gradients of the parameters and, unless
 *    said otherwise, into the gradient of the input, so that micro-batches and
 *    the two uses of a residual stream accumulate naturally. Where a kernel
 *    takes `acc`, acc = 0 overwrites that input gradient instead (it saves
 *    zeroing a scratch buffer) and acc = 1 accumulates; acc_in / acc_w do
 *    the same for the input and for the parameter gradients separately (the
 *    first backward after gpt2_shard_discard_grad overwrites the parameter
 *    gradients instead of zeroing 4 bytes per parameter beforehand).
 *  - A NULL gradient pointer means "not wanted" where stated.
 *
 * The names are prefixed k_ (kernel); callers are model/gpt2.c and the tests.
 */
#ifndef KERNELS_H
#define KERNELS_H

#include <stddef.h>

/* LayerNorm epsilon (GPT-2's 1e-5). */
#define K_LN_EPS 1e-5f

/* out[b,t,:] = wte[tok[b,t],:] + wpe[t,:]. Tokens must lie in [0, V). */
void k_encoder_forward(float *out, const int *tok, const float *wte, const float *wpe,
                       int B, int T, int C);
/* dwte[tok[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:] (either may be NULL). */
void k_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tok,
                        int B, int T, int C);

/* out = (inp - mean) * rstd * w + b per row of C, rstd = 1/sqrt(var + eps)
 * with the biased variance. Stores mean[N] and rstd[N] for the backward. */
void k_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N, int C);
/* Adds the gradient of the input to dinp (always +=: it is a residual
 * stream), and of w, b to dw, db (+= when acc_w, else =), from dout and the
 * forward's inp, mean and rstd. */
void k_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean,
                          const float *rstd, int N, int C, int acc_w);

/* out[N,O] = inp[N,K] . w[K,O] (+ bias[O] if bias is not NULL): the Conv1D
 * "in x out" layout of Hugging Face GPT-2. */
void k_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                      int N, int K, int O);
/* dw[K,O] (+)= inp^T . dout and dbias[O] (+)= column sums of dout (if dbias
 * is not NULL), accumulating when acc_w is set; dinp[N,K] (+)= dout . w^T if
 * dinp is not NULL, accumulating when acc_in is set. */
void k_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, int N, int K, int O,
                       int acc_in, int acc_w);

/* The tied LM head: out[N,O] = inp[N,K] . w[O,K]^T (w = wte [V,C]). */
void k_matmul_wt_forward(float *out, const float *inp, const float *w, int N, int K, int O);
/* dinp[N,K] (+)= dout . w (acc_in) and dw[O,K] (+)= dout^T . inp (acc_w). */
void k_matmul_wt_backward(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, int N, int K, int O, int acc_in, int acc_w);

/* dbias[O] (+)= sum over the N rows of dout[N,O] (acc: accumulate). */
void k_bias_backward(float *dbias, const float *dout, int N, int O, int acc);

/* out[N,C] = a + b (+ bias[C] broadcast over rows if not NULL). out may alias a. */
void k_residual_forward(float *out, const float *a, const float *b, const float *bias,
                        int N, int C);
/* da += dout; db += dout; dbias += column sums of dout (each may be NULL). */
void k_residual_backward(float *da, float *db, float *dbias, const float *dout, int N, int C);

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void k_gelu_forward(float *out, const float *inp, size_t n);
/* dinp (+)= dout * gelu'(inp) (acc: see top). dinp must not overlap dout. */
void k_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int acc);

/* Causal multi-head self-attention of NH heads of size hs over B sequences of
 * T tokens. qkv rows hold [q (NH*hs) | k (NH*hs) | v (NH*hs)], row stride
 * 3*NH*hs; head h uses columns h*hs..(h+1)*hs-1 of each part. out rows
 * [NH*hs] (head h at columns h*hs). For each (b, h): S = q k^T / sqrt(hs)
 * and Y = V weighted by softmax(S) over positions <= t, through cblas_sgemm.
 * The probabilities are not kept: stats[B,NH,T,2] receives each row's max
 * and 1/sum so that the backward recomputes them exactly. scratch holds
 * parts*T*T floats: the (b, h) pairs may run on up to `parts` threads of the
 * pool (common/et_pool.h), each with its own T*T; the result is the same
 * for any parts >= 1. */
void k_attention_forward(float *out, float *stats, float *scratch, int parts, const float *qkv,
                         int B, int T, int NH, int hs);
/* dqkv (+)= gradient w.r.t. qkv given dout[B*T, NH*hs] (acc: see top),
 * recomputing the probabilities from qkv and stats. scratch holds
 * parts*2*T*T floats (parts as in the forward). */
void k_attention_backward(float *dqkv, float *scratch, int parts, const float *dout,
                          const float *qkv, const float *stats, int B, int T, int NH, int hs,
                          int acc);

/* Softmax cross-entropy over logits[N,V] with targets[N] in [0, V), one pass
 * per row (the row stays in cache): lse[n] = log sum_j exp(logits[n,j]).
 * Returns the SUM of the N token losses lse - logit[target] (in double); adds
 * to *correct the number of rows whose argmax (first maximum) equals the target. */
double k_crossentropy_forward(float *lse, long *correct, const float *logits,
                              const int *targets, int N, int V);
/* dlogits[n,j] = dloss * (softmax(logits[n])[j] - [j == targets[n]]): the
 * gradient of dloss * (sum of token losses). Writes (does not accumulate);
 * dlogits may alias logits, so the logits buffer becomes the gradient in one
 * pass without another N*V buffer. */
void k_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                             const int *targets, float dloss, int N, int V);

#endif
