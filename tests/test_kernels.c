/*
 * test_kernels — every kernel of model/kernels.h against a double-precision
 * reference written here from the formulas: the float forward must match the
 * reference forward, and the float backward must match central finite
 * differences of the reference (h = 1e-5 in double, so the differences are
 * exact to ~1e-9 and the comparison measures the float kernel alone). Odd
 * shapes on purpose: B=2, T=7, C=36, NH=3 (head size 12), V=97.
 *
 * The objective of every gradient check is L = sum(out * R) for a fixed
 * random R, so dout = R. Errors are measured as max|a - b| / max|b| over a
 * whole gradient (the scale of that gradient), and backward calls start from
 * random gradient buffers so that accumulation (+=) is checked too.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../model/kernels.h"

enum { B = 2, T = 7, C = 36, NH = 3, HS = 12, V = 97, N = B * T };

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x1234567ULL;

/* xorshift64*: uniform in [-1, 1). */
static double urand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 2685821657736338717ULL;
    return (double)(r >> 11) * 0x1.0p-52 - 1.0;
}

/* Random floats with their exact double copies. */
static void fill(float *f, double *d, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)(scale * urand());
        if (d)
            d[i] = f[i];
    }
}

static float *fnew(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

static double *dnew(size_t n)
{
    return calloc(n ? n : 1, sizeof(double));
}

/* max|a - b| / max|b|: the error of a against b on b's own scale. */
static double rel_err(const float *a, const double *b, size_t n)
{
    double e = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        e = d > e ? d : e;
        s = fabs(b[i]) > s ? fabs(b[i]) : s;
    }
    return s > 0.0 ? e / s : e;
}

/* (a - base) against b: the part a backward added to a pre-filled buffer. */
static double rel_err_added(const float *a, const float *base, const double *b, size_t n)
{
    float *d = fnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = a[i] - base[i];
    double e = rel_err(d, b, n);
    free(d);
    return e;
}

typedef double (*objective_fn)(void *ctx);

/* Central differences of f with respect to x[0..n), in double. */
static void fd_grad(objective_fn f, void *ctx, double *x, size_t n, double *g)
{
    const double h = 1e-5;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = f(ctx);
        x[i] = keep - h;
        double lm = f(ctx);
        x[i] = keep;
        g[i] = (lp - lm) / (2.0 * h);
    }
}

/* sum(out * R) */
static double dot(const double *out, const double *R, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += out[i] * R[i];
    return s;
}

#define FWD_TOL 2e-6
#define BWD_TOL 1e-5

/* ------------------------------------------------------- double references */

static void ref_layernorm(double *out, const double *x, const double *w, const double *b, int n,
                          int c)
{
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * c;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < c; i++)
            m += xr[i];
        m /= c;
        for (int i = 0; i < c; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= c;
        double rs = 1.0 / sqrt(v + (double)K_LN_EPS);
        for (int i = 0; i < c; i++)
            out[(size_t)r * c + i] = (xr[i] - m) * rs * w[i] + b[i];
    }
}

/* out[n,o] = sum_k inp[n,k] w[k,o] + bias[o]; wt: w is [o,k]. */
static void ref_matmul(double *out, const double *inp, const double *w, const double *bias, int n,
                       int k, int o, int wt)
{
    for (int r = 0; r < n; r++)
        for (int j = 0; j < o; j++) {
            double s = bias ? bias[j] : 0.0;
            for (int i = 0; i < k; i++)
                s += inp[(size_t)r * k + i] * (wt ? w[(size_t)j * k + i] : w[(size_t)i * o + j]);
            out[(size_t)r * o + j] = s;
        }
}

static double ref_gelu1(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* Naive causal attention, one (b, h, t) at a time. */
static void ref_attention(double *out, const double *qkv, int b_, int t_, int nh, int hs)
{
    int cw = nh * hs, ld = 3 * cw;
    double *p = dnew((size_t)t_);
    for (int b = 0; b < b_; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < t_; t++) {
                const double *q = qkv + ((size_t)b * t_ + t) * ld + (size_t)h * hs;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *k = qkv + ((size_t)b * t_ + j) * ld + cw + (size_t)h * hs;
                    double s = 0.0;
                    for (int i = 0; i < hs; i++)
                        s += q[i] * k[i];
                    p[j] = s / sqrt((double)hs);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= t; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                double *o = out + ((size_t)b * t_ + t) * cw + (size_t)h * hs;
                for (int i = 0; i < hs; i++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++)
                        s += p[j] / sum * qkv[((size_t)b * t_ + j) * ld + 2 * cw + (size_t)h * hs + i];
                    o[i] = s;
                }
            }
    free(p);
}

/* Sum over rows of log sum exp(logits) - logits[target]. */
static double ref_ce(const double *logits, const int *tg, int n, int v)
{
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        const double *x = logits + (size_t)r * v;
        double mx = x[0], s = 0.0;
        for (int j = 1; j < v; j++)
            mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < v; j++)
            s += exp(x[j] - mx);
        total += mx + log(s) - x[tg[r]];
    }
    return total;
}

/* ----------------------------------------------------------------- encoder */

typedef struct enc_ctx {
    double *wte, *wpe, *R, *out;
    int *tok;
} enc_ctx;

static double enc_obj(void *p)
{
    enc_ctx *c = p;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++)
                c->out[((size_t)b * T + t) * C + i] =
                    c->wte[(size_t)c->tok[b * T + t] * C + i] + c->wpe[(size_t)t * C + i];
    return dot(c->out, c->R, (size_t)N * C);
}

START_TEST(test_encoder_backward_matches_finite_differences)
{
    int tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (i * 37 + 5) % V;
    tok[3] = tok[10]; /* a repeated token: its row must accumulate twice */
    float *wte = fnew((size_t)V * C), *wpe = fnew((size_t)T * C), *out = fnew((size_t)N * C);
    float *R = fnew((size_t)N * C), *gwte = fnew((size_t)V * C), *gwpe = fnew((size_t)T * C);
    float *gwte0 = fnew((size_t)V * C), *gwpe0 = fnew((size_t)T * C);
    enc_ctx c = {dnew((size_t)V * C), dnew((size_t)T * C), dnew((size_t)N * C),
                 dnew((size_t)N * C), tok};
    fill(wte, c.wte, (size_t)V * C, 1.0);
    fill(wpe, c.wpe, (size_t)T * C, 1.0);
    fill(R, c.R, (size_t)N * C, 1.0);
    fill(gwte0, NULL, (size_t)V * C, 1.0);
    fill(gwpe0, NULL, (size_t)T * C, 1.0);
    memcpy(gwte, gwte0, sizeof(float) * V * C);
    memcpy(gwpe, gwpe0, sizeof(float) * T * C);

    k_encoder_forward(out, tok, wte, wpe, B, T, C);
    enc_obj(&c);
    ck_assert_double_le(rel_err(out, c.out, (size_t)N * C), FWD_TOL);

    k_encoder_backward(gwte, gwpe, R, tok, B, T, C);
    double *g = dnew((size_t)V * C);
    fd_grad(enc_obj, &c, c.wte, (size_t)V * C, g);
    ck_assert_double_le(rel_err_added(gwte, gwte0, g, (size_t)V * C), BWD_TOL);
    fd_grad(enc_obj, &c, c.wpe, (size_t)T * C, g);
    ck_assert_double_le(rel_err_added(gwpe, gwpe0, g, (size_t)T * C), BWD_TOL);
    free(g);
    free(wte), free(wpe), free(out), free(R), free(gwte), free(gwpe), free(gwte0), free(gwpe0);
    free(c.wte), free(c.wpe), free(c.R), free(c.out);
}
END_TEST

/* --------------------------------------------------------------- layernorm */

typedef struct ln_ctx {
    double *x, *w, *b, *R, *out;
} ln_ctx;

static double ln_obj(void *p)
{
    ln_ctx *c = p;
    ref_layernorm(c->out, c->x, c->w, c->b, N, C);
    return dot(c->out, c->R, (size_t)N * C);
}

START_TEST(test_layernorm_backward_matches_finite_differences)
{
    size_t nc = (size_t)N * C;
    float *x = fnew(nc), *w = fnew(C), *b = fnew(C), *R = fnew(nc), *out = fnew(nc);
    float *mean = fnew(N), *rstd = fnew(N), *dx = fnew(nc), *dw = fnew(C), *db = fnew(C);
    float *dx0 = fnew(nc), *dw0 = fnew(C), *db0 = fnew(C);
    ln_ctx c = {dnew(nc), dnew(C), dnew(C), dnew(nc), dnew(nc)};
    fill(x, c.x, nc, 2.0);
    for (size_t i = 0; i < nc; i++) { /* rows with an offset: the mean matters */
        x[i] += 0.5f * (float)(i / C);
        c.x[i] = x[i];
    }
    fill(w, c.w, C, 1.0);
    fill(b, c.b, C, 1.0);
    fill(R, c.R, nc, 1.0);
    fill(dx0, NULL, nc, 1.0);
    fill(dw0, NULL, C, 1.0);
    fill(db0, NULL, C, 1.0);
    memcpy(dx, dx0, sizeof(float) * nc);
    memcpy(dw, dw0, sizeof(float) * C);
    memcpy(db, db0, sizeof(float) * C);

    k_layernorm_forward(out, mean, rstd, x, w, b, N, C);
    ln_obj(&c);
    ck_assert_double_le(rel_err(out, c.out, nc), FWD_TOL);

    k_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C, 1);
    double *g = dnew(nc);
    fd_grad(ln_obj, &c, c.x, nc, g);
    ck_assert_double_le(rel_err_added(dx, dx0, g, nc), BWD_TOL);
    fd_grad(ln_obj, &c, c.w, C, g);
    ck_assert_double_le(rel_err_added(dw, dw0, g, C), BWD_TOL);
    fd_grad(ln_obj, &c, c.b, C, g);
    ck_assert_double_le(rel_err_added(db, db0, g, C), BWD_TOL);

    /* acc_w = 0 overwrites dw, db (and still adds to dx) */
    memcpy(dx, dx0, sizeof(float) * nc);
    k_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C, 0);
    ck_assert_double_le(rel_err(db, g, C), BWD_TOL);
    fd_grad(ln_obj, &c, c.x, nc, g);
    ck_assert_double_le(rel_err_added(dx, dx0, g, nc), BWD_TOL);
    free(g);
    free(x), free(w), free(b), free(R), free(out), free(mean), free(rstd), free(dx), free(dw);
    free(db), free(dx0), free(dw0), free(db0);
    free(c.x), free(c.w), free(c.b), free(c.R), free(c.out);
}
END_TEST

/* ------------------------------------------------------------------ matmul */

typedef struct mm_ctx {
    double *x, *w, *bias, *R, *out;
    int k, o, wt;
} mm_ctx;

static double mm_obj(void *p)
{
    mm_ctx *c = p;
    ref_matmul(c->out, c->x, c->w, c->bias, N, c->k, c->o, c->wt);
    return dot(c->out, c->R, (size_t)N * c->o);
}

/* Checks k_matmul_* (wt = 0: w [K,O] with bias; wt = 1: w [O,K], no bias)
 * for both accumulate modes. */
static void check_matmul(int K, int O, int wt)
{
    size_t nk = (size_t)N * K, ko = (size_t)K * O, no = (size_t)N * O;
    float *x = fnew(nk), *w = fnew(ko), *bias = fnew(O), *R = fnew(no), *out = fnew(no);
    float *dx = fnew(nk), *dw = fnew(ko), *db = fnew(O), *dx0 = fnew(nk), *dw0 = fnew(ko),
          *db0 = fnew(O);
    mm_ctx c = {dnew(nk), dnew(ko), wt ? NULL : dnew(O), dnew(no), dnew(no), K, O, wt};
    fill(x, c.x, nk, 1.0);
    fill(w, c.w, ko, 1.0);
    fill(bias, c.bias, wt ? 0 : (size_t)O, 1.0);
    fill(R, c.R, no, 1.0);
    fill(dx0, NULL, nk, 1.0);
    fill(dw0, NULL, ko, 1.0);
    fill(db0, NULL, O, 1.0);
    for (int acc = 1; acc >= 0; acc--) {
        memcpy(dx, dx0, sizeof(float) * nk);
        memcpy(dw, dw0, sizeof(float) * ko);
        memcpy(db, db0, sizeof(float) * O);
        if (wt) {
            k_matmul_wt_forward(out, x, w, N, K, O);
            k_matmul_wt_backward(dx, dw, R, x, w, N, K, O, acc, acc);
        } else {
            k_matmul_forward(out, x, w, bias, N, K, O);
            k_matmul_backward(dx, dw, db, R, x, w, N, K, O, acc, acc);
        }
        mm_obj(&c);
        ck_assert_double_le(rel_err(out, c.out, no), FWD_TOL);
        double *g = dnew(ko > nk ? ko : nk);
        fd_grad(mm_obj, &c, c.x, nk, g);
        ck_assert_double_le(acc ? rel_err_added(dx, dx0, g, nk) : rel_err(dx, g, nk), BWD_TOL);
        fd_grad(mm_obj, &c, c.w, ko, g);
        ck_assert_double_le(acc ? rel_err_added(dw, dw0, g, ko) : rel_err(dw, g, ko), BWD_TOL);
        if (!wt) {
            fd_grad(mm_obj, &c, c.bias, O, g);
            ck_assert_double_le(acc ? rel_err_added(db, db0, g, O) : rel_err(db, g, O), BWD_TOL);
        }
        free(g);
    }
    /* dinp NULL: weight gradients only */
    memcpy(dw, dw0, sizeof(float) * ko);
    if (wt)
        k_matmul_wt_backward(NULL, dw, R, x, w, N, K, O, 1, 1);
    else
        k_matmul_backward(NULL, dw, NULL, R, x, w, N, K, O, 1, 1);
    double *g = dnew(ko);
    fd_grad(mm_obj, &c, c.w, ko, g);
    ck_assert_double_le(rel_err_added(dw, dw0, g, ko), BWD_TOL);
    free(g);
    free(x), free(w), free(bias), free(R), free(out), free(dx), free(dw), free(db), free(dx0);
    free(dw0), free(db0), free(c.x), free(c.w), free(c.bias), free(c.R), free(c.out);
}

START_TEST(test_matmul_backward_matches_finite_differences)
{
    check_matmul(C, 3 * C, 0);
}
END_TEST

START_TEST(test_matmul_wt_backward_matches_finite_differences)
{
    check_matmul(C, V, 1);
}
END_TEST

/* ------------------------------------------------------ residual and gelu */

START_TEST(test_residual_forward_and_backward_are_sums)
{
    size_t nc = (size_t)N * C;
    float *a = fnew(nc), *b = fnew(nc), *bias = fnew(C), *out = fnew(nc), *d = fnew(nc);
    float *da = fnew(nc), *db = fnew(nc), *dbias = fnew(C);
    fill(a, NULL, nc, 1.0);
    fill(b, NULL, nc, 1.0);
    fill(bias, NULL, C, 1.0);
    fill(d, NULL, nc, 1.0);
    k_residual_forward(out, a, b, bias, N, C);
    for (size_t i = 0; i < nc; i++)
        ck_assert_float_eq_tol(out[i], a[i] + b[i] + bias[i % C], 1e-6f);
    k_residual_forward(a, a, b, NULL, N, C); /* in place */
    for (size_t i = 0; i < nc; i++)
        ck_assert_float_eq_tol(a[i], out[i] - bias[i % C], 1e-5f);
    k_residual_backward(da, db, dbias, d, N, C);
    k_residual_backward(da, NULL, NULL, d, N, C);
    for (int j = 0; j < C; j++) {
        double s = 0.0;
        for (int n = 0; n < N; n++)
            s += d[(size_t)n * C + j];
        ck_assert_double_le(fabs(dbias[j] - s), 1e-5);
    }
    for (size_t i = 0; i < nc; i++) {
        ck_assert_float_eq_tol(da[i], 2.0f * d[i], 1e-6f);
        ck_assert_float_eq_tol(db[i], d[i], 1e-6f);
    }
    free(a), free(b), free(bias), free(out), free(d), free(da), free(db), free(dbias);
}
END_TEST

typedef struct gelu_ctx {
    double *x, *R, *out;
    size_t n;
} gelu_ctx;

static double gelu_obj(void *p)
{
    gelu_ctx *c = p;
    for (size_t i = 0; i < c->n; i++)
        c->out[i] = ref_gelu1(c->x[i]);
    return dot(c->out, c->R, c->n);
}

START_TEST(test_gelu_backward_matches_finite_differences)
{
    size_t n = (size_t)N * 4 * C; /* includes large |x| where tanh saturates */
    float *x = fnew(n), *R = fnew(n), *out = fnew(n), *dx = fnew(n), *dx0 = fnew(n);
    gelu_ctx c = {dnew(n), dnew(n), dnew(n), n};
    fill(x, c.x, n, 6.0);
    fill(R, c.R, n, 1.0);
    fill(dx0, NULL, n, 1.0);
    memcpy(dx, dx0, sizeof(float) * n);
    k_gelu_forward(out, x, n);
    gelu_obj(&c);
    ck_assert_double_le(rel_err(out, c.out, n), FWD_TOL);
    double *g = dnew(n);
    fd_grad(gelu_obj, &c, c.x, n, g);
    k_gelu_backward(dx, x, R, n, 1);
    ck_assert_double_le(rel_err_added(dx, dx0, g, n), BWD_TOL);
    k_gelu_backward(dx, x, R, n, 0);
    ck_assert_double_le(rel_err(dx, g, n), BWD_TOL);
    free(g);
    free(x), free(R), free(out), free(dx), free(dx0), free(c.x), free(c.R), free(c.out);
}
END_TEST

/* --------------------------------------------------------------- attention */

typedef struct att_ctx {
    double *qkv, *R, *out;
} att_ctx;

static double att_obj(void *p)
{
    att_ctx *c = p;
    ref_attention(c->out, c->qkv, B, T, NH, HS);
    return dot(c->out, c->R, (size_t)N * C);
}

START_TEST(test_attention_backward_matches_finite_differences)
{
    size_t nq = (size_t)N * 3 * C, nc = (size_t)N * C;
    float *qkv = fnew(nq), *R = fnew(nc), *out = fnew(nc), *st = fnew((size_t)B * NH * T * 2);
    float *scratch = fnew(2 * T * T), *dq = fnew(nq), *dq0 = fnew(nq);
    att_ctx c = {dnew(nq), dnew(nc), dnew(nc)};
    fill(qkv, c.qkv, nq, 2.0); /* peaked softmaxes as well as flat ones */
    fill(R, c.R, nc, 1.0);
    fill(dq0, NULL, nq, 1.0);
    /* poison the scratch: masked positions must not leak */
    for (int i = 0; i < 2 * T * T; i++)
        scratch[i] = 1e30f;
    k_attention_forward(out, st, scratch, 1, qkv, B, T, NH, HS);
    att_obj(&c);
    ck_assert_double_le(rel_err(out, c.out, nc), FWD_TOL);

    double *g = dnew(nq);
    fd_grad(att_obj, &c, c.qkv, nq, g);
    for (int acc = 0; acc <= 1; acc++) {
        memcpy(dq, dq0, sizeof(float) * nq);
        for (int i = 0; i < 2 * T * T; i++)
            scratch[i] = 1e30f;
        k_attention_backward(dq, scratch, 1, R, qkv, st, B, T, NH, HS, acc);
        ck_assert_double_le(acc ? rel_err_added(dq, dq0, g, nq) : rel_err(dq, g, nq), BWD_TOL);
    }
    free(g);
    free(qkv), free(R), free(out), free(st), free(scratch), free(dq), free(dq0);
    free(c.qkv), free(c.R), free(c.out);
}
END_TEST

/* ------------------------------------------------------------ cross-entropy */

START_TEST(test_crossentropy_matches_hand_computation)
{
    /* loss = log(sum_j e^x_j) - x_target, by hand:
     *   [1 2 3] t=2: log(1 + e^-1 + e^-2)            = 0.40760596444438013
     *   [3 1 -1] t=1: 2 + log(1 + e^-2 + e^-4)       = 2.1429316284998996
     *   [5 5 1] t=1: log(2 + e^-4)                   = 0.7022633214390952
     * argmax (first maximum): 2 (hit), 0 (miss), 0 (miss: tie goes to the first) */
    const float x[9] = {1, 2, 3, 3, 1, -1, 5, 5, 1};
    const int tg[3] = {2, 1, 1};
    const double want = 0.40760596444438013 + 2.1429316284998996 + 0.7022633214390952;
    float lse[3], d[9];
    long correct = 0;
    double sum = k_crossentropy_forward(lse, &correct, x, tg, 3, 3);
    ck_assert_double_le(fabs(sum - want), 1e-6);
    ck_assert_int_eq(correct, 1);
    /* gradient of 0.5 * sum: 0.5 (softmax - onehot); row 0: e^(x - lse) */
    k_crossentropy_backward(d, x, lse, tg, 0.5f, 3, 3);
    double z = exp(1.0) + exp(2.0) + exp(3.0);
    ck_assert_double_le(fabs(d[0] - 0.5 * exp(1.0) / z), 1e-7);
    ck_assert_double_le(fabs(d[2] - 0.5 * (exp(3.0) / z - 1.0)), 1e-7);
    /* rows of the gradient sum to zero */
    for (int r = 0; r < 3; r++)
        ck_assert_double_le(fabs(d[3 * r] + d[3 * r + 1] + d[3 * r + 2]), 1e-7);
    /* huge logits stay finite (shifted by the max) */
    const float big[3] = {1e4f, 1e4f + 1.0f, 1e4f + 2.0f};
    correct = 0;
    sum = k_crossentropy_forward(lse, &correct, big, tg, 1, 3);
    ck_assert_double_le(fabs(sum - 0.40760596444438013), 1e-6);
    ck_assert_int_eq(correct, 1);
}
END_TEST

START_TEST(test_crossentropy_argmax_is_first_maximum_across_blocks)
{
    enum { W = 200 };
    float x[2 * W];
    for (int i = 0; i < 2 * W; i++)
        x[i] = -1.0f;
    x[10] = 7.0f, x[130] = 7.0f;             /* row 0: tie across blocks -> 10 */
    x[W + 150] = 3.0f, x[W + 170] = 3.0f;    /* row 1: tie within a block -> 150 */
    x[W + 199] = 2.0f;
    int tg[2] = {10, 150};
    float lse[2];
    long correct = 0;
    k_crossentropy_forward(lse, &correct, x, tg, 2, W);
    ck_assert_int_eq(correct, 2);
    tg[0] = 130, tg[1] = 170;
    correct = 0;
    k_crossentropy_forward(lse, &correct, x, tg, 2, W);
    ck_assert_int_eq(correct, 0);
}
END_TEST

typedef struct ce_ctx {
    double *x;
    int *tg;
} ce_ctx;

static double ce_obj(void *p)
{
    ce_ctx *c = p;
    return 0.25 * ref_ce(c->x, c->tg, N, V);
}

START_TEST(test_crossentropy_backward_matches_finite_differences)
{
    size_t nv = (size_t)N * V;
    float *x = fnew(nv), *lse = fnew(N), *d = fnew(nv);
    int tg[N];
    ce_ctx c = {dnew(nv), tg};
    fill(x, c.x, nv, 4.0);
    for (int i = 0; i < N; i++)
        tg[i] = (i * 13 + 2) % V;
    long correct = 0;
    double sum = k_crossentropy_forward(lse, &correct, x, tg, N, V);
    ck_assert_double_le(fabs(sum - ref_ce(c.x, tg, N, V)) / fabs(sum), 1e-6);
    double *g = dnew(nv);
    fd_grad(ce_obj, &c, c.x, nv, g);
    k_crossentropy_backward(d, x, lse, tg, 0.25f, N, V);
    ck_assert_double_le(rel_err(d, g, nv), BWD_TOL);
    /* in place: the logits buffer becomes the gradient */
    k_crossentropy_backward(x, x, lse, tg, 0.25f, N, V);
    ck_assert_double_le(rel_err(x, g, nv), BWD_TOL);
    free(g), free(x), free(lse), free(d), free(c.x);
}
END_TEST

START_TEST(test_crossentropy_nan_logits_give_nan_loss)
{
    float x[2 * V];
    int tg[2] = {1, 2};
    for (int i = 0; i < 2 * V; i++)
        x[i] = 0.01f * (float)i;
    x[V + 40] = NAN;
    float lse[2];
    long correct = 0;
    double sum = k_crossentropy_forward(lse, &correct, x, tg, 2, V);
    ck_assert(isnan(sum));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_encoder_backward_matches_finite_differences);
    tcase_add_test(tc, test_layernorm_backward_matches_finite_differences);
    tcase_add_test(tc, test_matmul_backward_matches_finite_differences);
    tcase_add_test(tc, test_matmul_wt_backward_matches_finite_differences);
    tcase_add_test(tc, test_residual_forward_and_backward_are_sums);
    tcase_add_test(tc, test_gelu_backward_matches_finite_differences);
    tcase_add_test(tc, test_attention_backward_matches_finite_differences);
    tcase_add_test(tc, test_crossentropy_matches_hand_computation);
    tcase_add_test(tc, test_crossentropy_argmax_is_first_maximum_across_blocks);
    tcase_add_test(tc, test_crossentropy_backward_matches_finite_differences);
    tcase_add_test(tc, test_crossentropy_nan_logits_give_nan_loss);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
