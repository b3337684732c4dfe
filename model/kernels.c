/*
 * kernels — GPT-2's per-layer math, forward and backward (see kernels.h for
 * the conventions). Built with -O3 -ffast-math -fno-finite-math-only: the
 * loops below are written as plain counted loops over restrict pointers so
 * that GCC vectorises them, reductions included. Should a build not pass
 * those flags (GCC defines __NO_MATH_ERRNO__ under -ffast-math), the pragma
 * asks for them here, so that the hot loops never silently fall back to
 * scalar code (scalar exp/tanh alone would cost ~0.5 s per GPT-2 124M step).
 */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__NO_MATH_ERRNO__)
#pragma GCC optimize("O3", "fast-math", "no-finite-math-only", "no-math-errno")
#endif

#include "kernels.h"

#include "../common/et_pool.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/*
 * Vector math. glibc's libmvec has vector versions of expf and tanhf, and
 * <math.h> announces them only when __FAST_MATH__ is defined, which GCC does
 * not define under -fno-finite-math-only (our flags keep NaN and Inf checks
 * alive). Announcing them here lets the exp and tanh loops vectorise; libmvec
 * handles NaN, Inf and overflow like the scalar functions (within 4 ulp).
 * expf is also declared const (no errno: nothing here reads it), which
 * -fno-math-errno implies anyway and which the pragma fallback above needs.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    !defined(__FAST_MATH__)
extern float expf(float) __attribute__((__simd__("notinbranch"), __const__));
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)
extern float tanhf(float) __attribute__((__simd__("notinbranch")));
#endif
#endif

/* Elementwise loops split over the pool's threads (common/et_pool.h) in
 * parts of at least K_GRAIN elements; row loops in parts of at least
 * K_GRAIN elements' worth of rows. Every split here is bit-for-bit neutral:
 * each output element is computed by exactly the same operations whatever
 * the thread count. */
#define K_GRAIN 16384

static size_t rows_grain(int C)
{
    size_t g = K_GRAIN / (size_t)(C > 0 ? C : 1);
    return g ? g : 1;
}

/* Columns per part of a column-split loop over N rows: a multiple of 16
 * (whole cache lines, so parts never share one). */
static size_t cols_grain(int N)
{
    size_t g = K_GRAIN / (size_t)(N > 0 ? N : 1);
    g = (g + 15) / 16 * 16;
    return g ? g : 16;
}

/* ------------------------------------------------------------------ encoder */

/* Embedding lookup plus position embedding, one row per token. The caller
 * guarantees tokens in [0, V). */
void k_encoder_forward(float *out, const int *tok, const float *wte, const float *wpe,
                       int B, int T, int C)
{
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *restrict o = out + ((size_t)b * T + t) * C;
            const float *restrict we = wte + (size_t)tok[b * T + t] * C;
            const float *restrict pe = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++)
                o[i] = we[i] + pe[i];
        }
    }
}

/* Scatter-add of the output gradient into the rows of the two tables that
 * the forward read. Rows repeat (a token seen twice), so this accumulates. */
void k_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tok,
                        int B, int T, int C)
{
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *restrict d = dout + ((size_t)b * T + t) * C;
            if (dwte) {
                float *restrict g = dwte + (size_t)tok[b * T + t] * C;
                for (int i = 0; i < C; i++)
                    g[i] += d[i];
            }
            if (dwpe) {
                float *restrict g = dwpe + (size_t)t * C;
                for (int i = 0; i < C; i++)
                    g[i] += d[i];
            }
        }
    }
}

/* ---------------------------------------------------------------- layernorm */

/* Row-wise normalisation with the biased variance, two passes over the row
 * (mean, then centred squares) for accuracy; rows [b, e). */
typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
} ln_fwd_job;

static void ln_fwd_part(void *vctx, size_t rb, size_t re, int part)
{
    (void)part;
    const ln_fwd_job *j = vctx;
    const int C = j->C;
    const float *restrict w = j->w, *restrict bias = j->b;
    for (size_t n = rb; n < re; n++) {
        const float *restrict x = j->inp + n * C;
        float *restrict o = j->out + n * C;
        float s = 0.0f;
        for (int i = 0; i < C; i++)
            s += x[i];
        float m = s / (float)C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            v += d * d;
        }
        float r = 1.0f / sqrtf(v / (float)C + K_LN_EPS);
        for (int i = 0; i < C; i++)
            o[i] = (x[i] - m) * r * w[i] + bias[i];
        j->mean[n] = m;
        j->rstd[n] = r;
    }
}

/* Rows are independent: split over the pool's threads. */
void k_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N, int C)
{
    ln_fwd_job j = {out, mean, rstd, inp, w, b, C};
    et_pool_run((size_t)N, rows_grain(C), ln_fwd_part, &j);
}

/* One row of the LayerNorm backward's input gradient (see below); restrict
 * parameters so that the update loop vectorises. */
static void ln_backward_row(float *restrict dx, const float *restrict d,
                            const float *restrict x, const float *restrict w, float m, float r,
                            int C)
{
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = 0; i < C; i++) {
        float xh = (x[i] - m) * r;
        float g = d[i] * w[i];
        s1 += g;
        s2 += g * xh;
    }
    s1 /= (float)C;
    s2 /= (float)C;
    for (int i = 0; i < C; i++) {
        float xh = (x[i] - m) * r;
        float g = d[i] * w[i];
        dx[i] += r * (g - s1 - xh * s2);
    }
}

/* Columns [cb, ce) of the weight and bias gradients, summed over the rows
 * in row order (so any column split gives the same bits). */
static void ln_backward_cols(float *restrict gw, float *restrict gb, const float *dout,
                             const float *inp, const float *mean, const float *rstd, int N,
                             int C, size_t cb, size_t ce)
{
    for (int n = 0; n < N; n++) {
        const float *restrict d = dout + (size_t)n * C;
        const float *restrict x = inp + (size_t)n * C;
        const float m = mean[n], r = rstd[n];
        for (size_t i = cb; i < ce; i++) {
            gw[i] += d[i] * ((x[i] - m) * r);
            gb[i] += d[i];
        }
    }
}

typedef struct {
    float *dinp, *dw, *db;
    const float *dout, *inp, *w, *mean, *rstd;
    int N, C;
} ln_bwd_job;

static void ln_bwd_rows_part(void *vctx, size_t rb, size_t re, int part)
{
    (void)part;
    const ln_bwd_job *j = vctx;
    for (size_t n = rb; n < re; n++)
        ln_backward_row(j->dinp + n * j->C, j->dout + n * j->C, j->inp + n * j->C, j->w,
                        j->mean[n], j->rstd[n], j->C);
}

static void ln_bwd_cols_part(void *vctx, size_t cb, size_t ce, int part)
{
    (void)part;
    const ln_bwd_job *j = vctx;
    ln_backward_cols(j->dw, j->db, j->dout, j->inp, j->mean, j->rstd, j->N, j->C, cb, ce);
}

/* With xhat = (x - mean) * rstd and g = dout * w:
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dw = sum dout * xhat,
 * db = sum dout (sums over rows). Two pool loops: the rows (input
 * gradient), then the columns (weight and bias gradients). */
void k_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean,
                          const float *rstd, int N, int C, int acc_w)
{
    if (!acc_w) {
        memset(dw, 0, sizeof(float) * (size_t)C);
        memset(db, 0, sizeof(float) * (size_t)C);
    }
    ln_bwd_job j = {dinp, dw, db, dout, inp, w, mean, rstd, N, C};
    et_pool_run((size_t)N, rows_grain(C), ln_bwd_rows_part, &j);
    et_pool_run((size_t)C, cols_grain(N), ln_bwd_cols_part, &j);
}

/* ------------------------------------------------------------------- matmul */

/* With a bias: every output row set to it, then one sgemm adding the
 * product (beta = 1, as torch's addmm does), which spares OpenBLAS's own
 * zeroing pass over out (beta = 0) and a bias pass after it. */
void k_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                      int N, int K, int O)
{
    if (bias)
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * O, bias, sizeof(float) * (size_t)O);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, O, K, 1.0f, inp, K, w, O,
                bias ? 1.0f : 0.0f, out, O);
}

/* Two sgemms (input and weight gradients) and a column sum for the bias. */
void k_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, int N, int K, int O,
                       int acc_in, int acc_w)
{
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, K, O, 1.0f, dout, O, w, O,
                    acc_in ? 1.0f : 0.0f, dinp, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, O, N, 1.0f, inp, K, dout, O,
                acc_w ? 1.0f : 0.0f, dw, O);
    if (dbias)
        k_bias_backward(dbias, dout, N, O, acc_w);
}

/* Logits against the transposed (tied) embedding matrix, one sgemm. */
void k_matmul_wt_forward(float *out, const float *inp, const float *w, int N, int K, int O)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, K, 1.0f, inp, K, w, K,
                0.0f, out, O);
}

/* Gradients of out = inp . w^T: dinp = dout . w and dw = dout^T . inp. */
void k_matmul_wt_backward(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, int N, int K, int O, int acc_in, int acc_w)
{
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, O, 1.0f, dout, O, w, K,
                    acc_in ? 1.0f : 0.0f, dinp, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, K, N, 1.0f, dout, O, inp, K,
                acc_w ? 1.0f : 0.0f, dw, K);
}

/* Column sums, row by row so the inner loop runs along contiguous memory;
 * the pool splits the columns, each summed over the rows in row order. */
typedef struct {
    float *g;
    const float *dout;
    int N, O;
} bias_job;

static void bias_part(void *vctx, size_t cb, size_t ce, int part)
{
    (void)part;
    const bias_job *j = vctx;
    float *restrict g = j->g;
    for (int n = 0; n < j->N; n++) {
        const float *restrict d = j->dout + (size_t)n * j->O;
        for (size_t c = cb; c < ce; c++)
            g[c] += d[c];
    }
}

void k_bias_backward(float *dbias, const float *dout, int N, int O, int acc)
{
    if (!acc)
        memset(dbias, 0, sizeof(float) * (size_t)O);
    bias_job j = {dbias, dout, N, O};
    et_pool_run((size_t)O, cols_grain(N), bias_part, &j);
}

/* ----------------------------------------------------------------- residual */

/* Elementwise sum of two streams plus an optional broadcast bias, rows
 * [b, e). No restrict on out: the caller may add into a in place. */
typedef struct {
    float *out;
    const float *a, *b, *bias;
    int C;
} res_job;

static void res_fwd_part(void *vctx, size_t rb, size_t re, int part)
{
    (void)part;
    const res_job *j = vctx;
    const int C = j->C;
    for (size_t n = rb; n < re; n++) {
        float *o = j->out + n * C;
        const float *x = j->a + n * C;
        const float *restrict y = j->b + n * C;
        if (j->bias) {
            const float *restrict bias = j->bias;
            for (int i = 0; i < C; i++)
                o[i] = x[i] + y[i] + bias[i];
        } else {
            for (int i = 0; i < C; i++)
                o[i] = x[i] + y[i];
        }
    }
}

void k_residual_forward(float *out, const float *a, const float *b, const float *bias,
                        int N, int C)
{
    res_job j = {out, a, b, bias, C};
    et_pool_run((size_t)N, rows_grain(C), res_fwd_part, &j);
}

/* The gradient of a sum flows unchanged to both operands and the bias. */
typedef struct {
    float *da, *db;
    const float *dout;
} resb_job;

static void resb_part(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    const resb_job *j = vctx;
    const float *restrict d = j->dout;
    if (j->da) {
        float *restrict g = j->da;
        for (size_t i = b; i < e; i++)
            g[i] += d[i];
    }
    if (j->db) {
        float *restrict g = j->db;
        for (size_t i = b; i < e; i++)
            g[i] += d[i];
    }
}

void k_residual_backward(float *da, float *db, float *dbias, const float *dout, int N, int C)
{
    resb_job j = {da, db, dout};
    et_pool_run((size_t)N * C, K_GRAIN, resb_part, &j);
    if (dbias)
        k_bias_backward(dbias, dout, N, C, 1);
}

/* --------------------------------------------------------------------- gelu */

#define GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K1 0.044715f

/* GELU with the tanh approximation, elementwise over [b, e). */
static void gelu_fwd_part(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    float **io = vctx;
    float *restrict o = io[0];
    const float *restrict x = io[1];
    for (size_t i = b; i < e; i++) {
        float u = GELU_K0 * (x[i] + GELU_K1 * x[i] * x[i] * x[i]);
        o[i] = 0.5f * x[i] * (1.0f + tanhf(u));
    }
}

/* Elementwise, so split over the pool's threads (et_pool.h) bit for bit. */
void k_gelu_forward(float *out, const float *inp, size_t n)
{
    float *io[2] = {out, (float *)inp};
    et_pool_run(n, K_GRAIN, gelu_fwd_part, io);
}

/* d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx,
 * du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
typedef struct {
    float *dinp;
    const float *inp, *dout;
    float keep;
} gelu_bwd_job;

static void gelu_bwd_part(void *vctx, size_t b, size_t e, int part)
{
    (void)part;
    const gelu_bwd_job *j = vctx;
    float *restrict g = j->dinp;
    const float *restrict x = j->inp;
    const float *restrict d = j->dout;
    const float keep = j->keep;
    for (size_t i = b; i < e; i++) {
        float x2 = x[i] * x[i];
        float th = tanhf(GELU_K0 * (x[i] + GELU_K1 * x2 * x[i]));
        float du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * x2);
        float dg = 0.5f * (1.0f + th) + 0.5f * x[i] * (1.0f - th * th) * du;
        g[i] = keep * g[i] + dg * d[i];
    }
}

void k_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int acc)
{
    gelu_bwd_job j = {dinp, inp, dout, acc ? 1.0f : 0.0f};
    et_pool_run(n, K_GRAIN, gelu_bwd_part, &j);
}

/* ---------------------------------------------------------------- attention */

/* row[j] = expf(row[j] - max) for j < n; returns their sum. Not inlined, so
 * that forward and backward compute bit-identical probabilities. */
__attribute__((noinline)) static float row_exp(float *restrict row, int n, float max)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
        row[j] = expf(row[j] - max);
        s += row[j];
    }
    return s;
}

/* Scales the exponentials of row t (positions 0..t) by 1/sum into
 * probabilities and zeroes the masked positions t+1..T-1. */
static void row_scale_mask(float *restrict row, int t, int T, float inv)
{
    for (int j = 0; j <= t; j++)
        row[j] *= inv;
    for (int j = t + 1; j < T; j++)
        row[j] = 0.0f;
}

/* Attention runs the (b, h) pairs on the pool's threads, each part with its
 * own T*T (forward) or 2*T*T (backward) floats of scratch; OpenBLAS is held
 * at one thread meanwhile, so that each part's small sgemms run on the
 * part's own core (and never call into OpenBLAS's threads concurrently).
 * Each pair's math is the same whatever the split. */
typedef struct {
    float *out, *stats, *scratch;
    const float *qkv, *dout;
    float *dqkv;
    int B, T, NH, hs, acc;
    size_t scratch_per_part;
} att_job;

/* Pool-split over pairs, at most `parts` parts; OpenBLAS single-threaded
 * while more than one part runs. */
static void att_run(att_job *j, int parts, et_pool_fn fn)
{
    size_t pairs = (size_t)j->B * (size_t)j->NH;
    if (parts < 1)
        parts = 1;
    size_t grain = (pairs + (size_t)parts - 1) / (size_t)parts; /* <= parts parts */
    et_pool_run_blas1(pairs, grain, fn, j);
}

/* Per (b, h): S = scale q k^T (sgemm), causal softmax row by row, Y = P v
 * (sgemm), keeping only the per-row max and 1/sum. */
static void att_fwd_part(void *vctx, size_t pb, size_t pe, int part)
{
    const att_job *j = vctx;
    const int T = j->T, NH = j->NH, hs = j->hs, Cw = NH * hs, ld = 3 * Cw;
    const float scale = 1.0f / sqrtf((float)hs);
    float *scratch = j->scratch + (size_t)part * j->scratch_per_part;
    for (size_t pr = pb; pr < pe; pr++) {
        int b = (int)(pr / (size_t)NH), h = (int)(pr % (size_t)NH);
        const float *q = j->qkv + (size_t)b * T * ld + (size_t)h * hs;
        const float *k = q + Cw, *v = q + 2 * Cw;
        float *st = j->stats + ((size_t)b * NH + h) * T * 2;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, ld, k, ld,
                    0.0f, scratch, T);
        for (int t = 0; t < T; t++) {
            float *row = scratch + (size_t)t * T;
            float m = row[0];
            for (int i = 1; i <= t; i++)
                m = row[i] > m ? row[i] : m;
            float inv = 1.0f / row_exp(row, t + 1, m);
            row_scale_mask(row, t, T, inv);
            st[2 * t] = m;
            st[2 * t + 1] = inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, scratch, T, v,
                    ld, 0.0f, j->out + (size_t)b * T * Cw + (size_t)h * hs, Cw);
    }
}

void k_attention_forward(float *out, float *stats, float *scratch, int parts, const float *qkv,
                         int B, int T, int NH, int hs)
{
    att_job j = {out, stats, scratch, qkv, NULL, NULL, B, T, NH, hs, 0, (size_t)T * T};
    att_run(&j, parts, att_fwd_part);
}

/* Per (b, h), with P recomputed from q, k and the stats:
 * dP = dY v^T, dv = P^T dY, dS = P * (dP - rowsum(P * dP)),
 * dq = scale dS k, dk = scale dS^T q (five sgemms, one recompute). */
static void att_bwd_part(void *vctx, size_t pb, size_t pe, int part)
{
    const att_job *j = vctx;
    const int T = j->T, NH = j->NH, hs = j->hs, Cw = NH * hs, ld = 3 * Cw;
    const float scale = 1.0f / sqrtf((float)hs);
    const float beta = j->acc ? 1.0f : 0.0f;
    float *P = j->scratch + (size_t)part * j->scratch_per_part, *dP = P + (size_t)T * T;
    for (size_t pr = pb; pr < pe; pr++) {
        int b = (int)(pr / (size_t)NH), h = (int)(pr % (size_t)NH);
        size_t off = (size_t)b * T * ld + (size_t)h * hs;
        const float *q = j->qkv + off, *k = q + Cw, *v = q + 2 * Cw;
        float *dq = j->dqkv + off, *dk = dq + Cw, *dv = dq + 2 * Cw;
        const float *dy = j->dout + (size_t)b * T * Cw + (size_t)h * hs;
        const float *st = j->stats + ((size_t)b * NH + h) * T * 2;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, ld, k, ld,
                    0.0f, P, T);
        for (int t = 0; t < T; t++) {
            row_exp(P + (size_t)t * T, t + 1, st[2 * t]);
            row_scale_mask(P + (size_t)t * T, t, T, st[2 * t + 1]);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dy, Cw, v, ld,
                    0.0f, dP, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, P, T, dy, Cw,
                    beta, dv, ld);
        for (int t = 0; t < T; t++) {
            const float *restrict p = P + (size_t)t * T;
            float *restrict d = dP + (size_t)t * T;
            float dot = 0.0f;
            for (int i = 0; i <= t; i++)
                dot += p[i] * d[i];
            for (int i = 0; i <= t; i++)
                d[i] = p[i] * (d[i] - dot);
            for (int i = t + 1; i < T; i++)
                d[i] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dP, T, k, ld,
                    beta, dq, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dP, T, q, ld,
                    beta, dk, ld);
    }
}

void k_attention_backward(float *dqkv, float *scratch, int parts, const float *dout,
                          const float *qkv, const float *stats, int B, int T, int NH, int hs,
                          int acc)
{
    att_job j = {NULL, (float *)stats, scratch, qkv, dout, dqkv, B, T, NH, hs, acc,
                 2 * (size_t)T * T};
    att_run(&j, parts, att_bwd_part);
}

/* ------------------------------------------------------------ cross-entropy */

#define CE_BLOCK 256

/* An order-preserving unsigned image of a float: keys compare like the
 * floats (-0 just below +0, a NaN with its sign clear above +inf). An
 * integer max reduction vectorises under our flags; a float one does not
 * (with NaNs kept in play the compiler may not reorder float maxima). */
static inline uint32_t float_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The float a key stands for. */
static inline float key_float(uint32_t k)
{
    uint32_t u = (k & 0x80000000u) ? (k ^ 0x80000000u) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Largest key of x[0..n). */
static uint32_t block_max_key(const float *restrict x, int n)
{
    uint32_t m = 0;
    for (int j = 0; j < n; j++) {
        uint32_t k = float_key(x[j]);
        m = k > m ? k : m;
    }
    return m;
}

/* Max and first argmax of a row: the max key per block of CE_BLOCK,
 * remembering the first block that raised the running max, then a scan of
 * that one block for the first element with that key. A NaN in the row may
 * come out as the max; the sum of exponentials is NaN then anyway. */
static float row_max(const float *restrict x, int V, int *argmax)
{
    uint32_t m = 0;
    int best = -1;
    for (int j0 = 0; j0 < V; j0 += CE_BLOCK) {
        int e = j0 + CE_BLOCK < V ? j0 + CE_BLOCK : V;
        uint32_t bm = block_max_key(x + j0, e - j0);
        if (bm > m) {
            m = bm;
            best = j0;
        }
    }
    *argmax = -1;
    if (best < 0)
        return NAN; /* every element a NaN with its sign set */
    int e = best + CE_BLOCK < V ? best + CE_BLOCK : V;
    for (int j = best; j < e; j++) {
        if (float_key(x[j]) == m) {
            *argmax = j;
            break;
        }
    }
    return key_float(m);
}

/* Sum of exp(x[j] - m) over the row. */
static float row_sumexp(const float *restrict x, int V, float m)
{
    float s = 0.0f;
    for (int j = 0; j < V; j++)
        s += expf(x[j] - m);
    return s;
}

/* Per row: max and argmax (one pass), sum of exponentials (a second pass
 * over the same row, now in cache), lse = max + log(sum). The rows are cut
 * into a fixed grid of CE_ROWS-row chunks whose loss sums (in double) and
 * hit counts are kept per chunk and added in chunk order afterwards: the
 * pool may split the rows over threads, and the result does not depend on
 * how. */
#define CE_ROWS 16
#define CE_WINDOW 256 /* chunks per pool loop: the partials live on the stack */

typedef struct {
    float *lse;
    const float *logits;
    const int *targets;
    int V;
    size_t row0;           /* first row of this window */
    double part_loss[CE_WINDOW];
    long part_ok[CE_WINDOW];
} ce_fwd_job;

static void ce_fwd_part(void *vctx, size_t rb, size_t re, int part)
{
    (void)part;
    ce_fwd_job *j = vctx;
    const int V = j->V;
    for (size_t c0 = rb; c0 < re; c0 += CE_ROWS) {
        size_t c1 = c0 + CE_ROWS < re ? c0 + CE_ROWS : re;
        double total = 0.0;
        long ok = 0;
        for (size_t r = c0; r < c1; r++) {
            size_t n = j->row0 + r;
            const float *x = j->logits + n * V;
            int am;
            float m = row_max(x, V, &am);
            float ls = logf(row_sumexp(x, V, m));
            j->lse[n] = m + ls;
            /* (max - target) + log(sum), in double: exact for large logits too */
            total += ((double)m - (double)x[j->targets[n]]) + (double)ls;
            ok += am == j->targets[n];
        }
        j->part_loss[c0 / CE_ROWS] = total;
        j->part_ok[c0 / CE_ROWS] = ok;
    }
}

double k_crossentropy_forward(float *lse, long *correct, const float *logits,
                              const int *targets, int N, int V)
{
    ce_fwd_job j;
    j.lse = lse, j.logits = logits, j.targets = targets, j.V = V;
    double total = 0.0;
    long ok = 0;
    for (j.row0 = 0; j.row0 < (size_t)N; j.row0 += CE_ROWS * CE_WINDOW) {
        size_t n = (size_t)N - j.row0;
        if (n > CE_ROWS * CE_WINDOW)
            n = CE_ROWS * CE_WINDOW;
        et_pool_run(n, CE_ROWS, ce_fwd_part, &j);
        for (size_t c = 0; c < (n + CE_ROWS - 1) / CE_ROWS; c++) {
            total += j.part_loss[c];
            ok += j.part_ok[c];
        }
    }
    *correct += ok;
    return total;
}

/* Softmax minus one-hot, scaled, one streaming pass per row. */
static void ce_row_grad(float *restrict d, const float *restrict x, int V, float l, float s)
{
    for (int j = 0; j < V; j++)
        d[j] = s * expf(x[j] - l);
}

/* The same, in place. */
static void ce_row_grad_inplace(float *restrict x, int V, float l, float s)
{
    for (int j = 0; j < V; j++)
        x[j] = s * expf(x[j] - l);
}

/* dlogits = dloss * (softmax - onehot(target)), row by row (rows split
 * over the pool's threads). */
typedef struct {
    float *dlogits;
    const float *logits, *lse;
    const int *targets;
    float dloss;
    int V;
} ce_bwd_job;

static void ce_bwd_part(void *vctx, size_t rb, size_t re, int part)
{
    (void)part;
    const ce_bwd_job *j = vctx;
    const int V = j->V;
    for (size_t n = rb; n < re; n++) {
        float *d = j->dlogits + n * V;
        const float *x = j->logits + n * V;
        if (d == x)
            ce_row_grad_inplace(d, V, j->lse[n], j->dloss);
        else
            ce_row_grad(d, x, V, j->lse[n], j->dloss);
        d[j->targets[n]] -= j->dloss;
    }
}

void k_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                             const int *targets, float dloss, int N, int V)
{
    ce_bwd_job j = {dlogits, logits, lse, targets, dloss, V};
    et_pool_run((size_t)N, rows_grain(V), ce_bwd_part, &j);
}
