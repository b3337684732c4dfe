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
 * (mean, then centred squares) for accuracy. */
void k_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * C;
        float *restrict o = out + (size_t)n * C;
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
            o[i] = (x[i] - m) * r * w[i] + b[i];
        mean[n] = m;
        rstd[n] = r;
    }
}

/* One row of the LayerNorm backward (see below); restrict parameters so
 * that the update loop vectorises. */
static void ln_backward_row(float *restrict dx, float *restrict gw, float *restrict gb,
                            const float *restrict d, const float *restrict x,
                            const float *restrict w, float m, float r, int C)
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
        gw[i] += d[i] * xh;
        gb[i] += d[i];
    }
}

/* With xhat = (x - mean) * rstd and g = dout * w:
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dw = sum dout * xhat,
 * db = sum dout (sums over rows). */
void k_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean,
                          const float *rstd, int N, int C, int acc_w)
{
    if (!acc_w) {
        memset(dw, 0, sizeof(float) * (size_t)C);
        memset(db, 0, sizeof(float) * (size_t)C);
    }
    for (int n = 0; n < N; n++)
        ln_backward_row(dinp + (size_t)n * C, dw, db, dout + (size_t)n * C, inp + (size_t)n * C,
                        w, mean[n], rstd[n], C);
}

/* ------------------------------------------------------------------- matmul */

/* One sgemm, then the bias row added to every output row. */
void k_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                      int N, int K, int O)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, O, K, 1.0f, inp, K, w, O,
                0.0f, out, O);
    if (bias) {
        for (int n = 0; n < N; n++) {
            float *restrict o = out + (size_t)n * O;
            for (int j = 0; j < O; j++)
                o[j] += bias[j];
        }
    }
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

/* Column sums, row by row so the inner loop runs along contiguous memory. */
void k_bias_backward(float *dbias, const float *dout, int N, int O, int acc)
{
    float *restrict g = dbias;
    if (!acc)
        memset(g, 0, sizeof(float) * (size_t)O);
    for (int n = 0; n < N; n++) {
        const float *restrict d = dout + (size_t)n * O;
        for (int j = 0; j < O; j++)
            g[j] += d[j];
    }
}

/* ----------------------------------------------------------------- residual */

/* Elementwise sum of two streams plus an optional broadcast bias. No restrict
 * on out: the caller may add into a in place. */
void k_residual_forward(float *out, const float *a, const float *b, const float *bias,
                        int N, int C)
{
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        const float *x = a + (size_t)n * C;
        const float *restrict y = b + (size_t)n * C;
        if (bias) {
            for (int i = 0; i < C; i++)
                o[i] = x[i] + y[i] + bias[i];
        } else {
            for (int i = 0; i < C; i++)
                o[i] = x[i] + y[i];
        }
    }
}

/* The gradient of a sum flows unchanged to both operands and the bias. */
void k_residual_backward(float *da, float *db, float *dbias, const float *dout, int N, int C)
{
    size_t n = (size_t)N * C;
    if (da) {
        float *restrict g = da;
        for (size_t i = 0; i < n; i++)
            g[i] += dout[i];
    }
    if (db) {
        float *restrict g = db;
        for (size_t i = 0; i < n; i++)
            g[i] += dout[i];
    }
    if (dbias)
        k_bias_backward(dbias, dout, N, C, 1);
}

/* --------------------------------------------------------------------- gelu */

#define GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K1 0.044715f

/* GELU with the tanh approximation, elementwise. */
void k_gelu_forward(float *out, const float *inp, size_t n)
{
    float *restrict o = out;
    const float *restrict x = inp;
    for (size_t i = 0; i < n; i++) {
        float u = GELU_K0 * (x[i] + GELU_K1 * x[i] * x[i] * x[i]);
        o[i] = 0.5f * x[i] * (1.0f + tanhf(u));
    }
}

/* d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx,
 * du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
void k_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int acc)
{
    float *restrict g = dinp;
    const float *restrict x = inp;
    const float *restrict d = dout;
    const float keep = acc ? 1.0f : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float x2 = x[i] * x[i];
        float th = tanhf(GELU_K0 * (x[i] + GELU_K1 * x2 * x[i]));
        float du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * x2);
        float dg = 0.5f * (1.0f + th) + 0.5f * x[i] * (1.0f - th * th) * du;
        g[i] = keep * g[i] + dg * d[i];
    }
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

/* Per (b, h): S = scale q k^T (sgemm), causal softmax row by row, Y = P v
 * (sgemm), keeping only the per-row max and 1/sum. */
void k_attention_forward(float *out, float *stats, float *scratch, const float *qkv,
                         int B, int T, int NH, int hs)
{
    const int Cw = NH * hs, ld = 3 * Cw;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
            const float *k = q + Cw, *v = q + 2 * Cw;
            float *st = stats + ((size_t)b * NH + h) * T * 2;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, ld, k, ld,
                        0.0f, scratch, T);
            for (int t = 0; t < T; t++) {
                float *row = scratch + (size_t)t * T;
                float m = row[0];
                for (int j = 1; j <= t; j++)
                    m = row[j] > m ? row[j] : m;
                float inv = 1.0f / row_exp(row, t + 1, m);
                row_scale_mask(row, t, T, inv);
                st[2 * t] = m;
                st[2 * t + 1] = inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, scratch, T, v,
                        ld, 0.0f, out + (size_t)b * T * Cw + (size_t)h * hs, Cw);
        }
    }
}

/* Per (b, h), with P recomputed from q, k and the stats:
 * dP = dY v^T, dv = P^T dY, dS = P * (dP - rowsum(P * dP)),
 * dq = scale dS k, dk = scale dS^T q (five sgemms, one recompute). */
void k_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                          const float *stats, int B, int T, int NH, int hs, int acc)
{
    const int Cw = NH * hs, ld = 3 * Cw;
    const float scale = 1.0f / sqrtf((float)hs);
    const float beta = acc ? 1.0f : 0.0f;
    float *P = scratch, *dP = scratch + (size_t)T * T;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t off = (size_t)b * T * ld + (size_t)h * hs;
            const float *q = qkv + off, *k = q + Cw, *v = q + 2 * Cw;
            float *dq = dqkv + off, *dk = dq + Cw, *dv = dq + 2 * Cw;
            const float *dy = dout + (size_t)b * T * Cw + (size_t)h * hs;
            const float *st = stats + ((size_t)b * NH + h) * T * 2;
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
                for (int j = 0; j <= t; j++)
                    dot += p[j] * d[j];
                for (int j = 0; j <= t; j++)
                    d[j] = p[j] * (d[j] - dot);
                for (int j = t + 1; j < T; j++)
                    d[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dP, T, k, ld,
                        beta, dq, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dP, T, q, ld,
                        beta, dk, ld);
        }
    }
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
 * over the same row, now in cache), lse = max + log(sum). */
double k_crossentropy_forward(float *lse, long *correct, const float *logits,
                              const int *targets, int N, int V)
{
    double total = 0.0;
    long ok = 0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        int am;
        float m = row_max(x, V, &am);
        float ls = logf(row_sumexp(x, V, m));
        lse[n] = m + ls;
        /* (max - target) + log(sum), in double: exact for large logits too */
        total += ((double)m - (double)x[targets[n]]) + (double)ls;
        ok += am == targets[n];
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

/* dlogits = dloss * (softmax - onehot(target)), row by row. */
void k_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                             const int *targets, float dloss, int N, int V)
{
    for (int n = 0; n < N; n++) {
        float *d = dlogits + (size_t)n * V;
        const float *x = logits + (size_t)n * V;
        if (d == x)
            ce_row_grad_inplace(d, V, lse[n], dloss);
        else
            ce_row_grad(d, x, V, lse[n], dloss);
        d[targets[n]] -= dloss;
    }
}
