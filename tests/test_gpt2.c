/*
 * test_gpt2 — the whole model of model/gpt2.h on a tiny odd configuration
 * (L2 C36 NH3 V97, block 8, B2 T7):
 *  - forward loss and backward gradients against a double-precision GPT-2
 *    written here from the formulas (finite differences, h = 1e-5, on a
 *    sample of elements of every tensor);
 *  - a pipeline split ([0..0]+embed, then [1..1]+head) and a tensor-parallel
 *    split (tp 3 in 3 threads with an in-process allreduce) give the same
 *    loss and gradients as the whole model;
 *  - the init is plan-independent; the descriptors, presets and parameter
 *    counts are right; bad specs and bad tokens are refused cleanly.
 */
#include <check.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/et_pool.h"
#include "../model/gpt2.h"
#include "../model/optim.h"

enum { L = 2, C = 36, NH = 3, HS = 12, V = 97, BLOCK = 8, B = 2, T = 7, N = B * T };

static const gpt2_config tiny = {L, NH, C, V, BLOCK};

static gpt2_shard_spec spec_of(int first, int last, int embed, int head, int r, int tp)
{
    gpt2_shard_spec s = {first, last, embed, head, r, tp};
    return s;
}

static gpt2_shard *shard_or_die(const gpt2_config *c, gpt2_shard_spec s)
{
    et_err e;
    et_err_clear(&e);
    gpt2_shard *sh = gpt2_shard_new(c, &s, &e);
    ck_assert_msg(sh != NULL, "shard_new failed: %s", e.msg);
    return sh;
}

/* Deterministic token and target batches. */
static void batch(int *tok, int *tg)
{
    for (int i = 0; i < N; i++) {
        tok[i] = (i * 31 + 7) % V;
        tg[i] = (i * 17 + 3) % V;
    }
}

/* xorshift64*: uniform in [-1, 1). */
static double urand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) * 0x1.0p-52 - 1.0;
}

/* Gives every parameter a random value of its kind's scale (weights 0.3,
 * biases 0.1, LayerNorm weights 1 +- 0.2) so that no part of the model sits
 * at a special point (zero biases, unit gains, uniform attention). */
static void randomize(gpt2_shard *sh, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < sh->n_tensors; i++) {
        gpt2_tensor *t = &sh->tensors[i];
        int bias = strstr(t->name, "bias") != NULL, ln = strstr(t->name, "/ln_") != NULL;
        for (size_t k = 0; k < t->numel; k++) {
            double u = urand(&s);
            sh->params[t->offset + k] = (float)(ln && !bias ? 1.0 + 0.2 * u : (bias ? 0.1 : 0.3) * u);
        }
    }
}

/* ------------------------------------------------- double reference model */

typedef struct ref_model {
    const gpt2_shard *sh; /* the whole-model shard: its layout names P */
    double *P;            /* parameters in double, same layout */
    const int *tok, *tg;
} ref_model;

static const double *rp(const ref_model *m, int layer, const char *suffix)
{
    char name[96];
    if (layer >= 0)
        snprintf(name, sizeof name, "transformer/h/%d/%s", layer, suffix);
    else
        snprintf(name, sizeof name, "transformer/%s", suffix);
    gpt2_tensor *t = gpt2_shard_tensor((gpt2_shard *)m->sh, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    return m->P + t->offset;
}

static void r_layernorm(double *out, const double *x, const double *w, const double *b)
{
    for (int r = 0; r < N; r++) {
        const double *xr = x + (size_t)r * C;
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++)
            m += xr[i];
        m /= C;
        for (int i = 0; i < C; i++)
            v += (xr[i] - m) * (xr[i] - m);
        double rs = 1.0 / sqrt(v / C + 1e-5);
        for (int i = 0; i < C; i++)
            out[(size_t)r * C + i] = (xr[i] - m) * rs * w[i] + b[i];
    }
}

static void r_matmul(double *out, const double *x, const double *w, const double *bias, int k,
                     int o)
{
    for (int r = 0; r < N; r++)
        for (int j = 0; j < o; j++) {
            double s = bias ? bias[j] : 0.0;
            for (int i = 0; i < k; i++)
                s += x[(size_t)r * k + i] * w[(size_t)i * o + j];
            out[(size_t)r * o + j] = s;
        }
}

static void r_attention(double *out, const double *qkv)
{
    double p[T];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * HS;
                    double s = 0.0;
                    for (int i = 0; i < HS; i++)
                        s += q[i] * k[i];
                    p[j] = s / sqrt((double)HS);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= t; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int i = 0; i < HS; i++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++)
                        s += p[j] / sum * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * HS + i];
                    out[((size_t)b * T + t) * C + h * HS + i] = s;
                }
            }
}

/* Mean cross-entropy of the double model on the batch. */
static double ref_loss(const ref_model *m)
{
    static double x[N * C], x2[N * C], h[N * C], qkv[N * 3 * C], a[N * C], f[N * 4 * C],
        y[N * C], logits[N * V];
    const double *wte = rp(m, -1, "wte/weight"), *wpe = rp(m, -1, "wpe/weight");
    for (int r = 0; r < N; r++)
        for (int i = 0; i < C; i++)
            x[r * C + i] = wte[m->tok[r] * C + i] + wpe[(r % T) * C + i];
    for (int l = 0; l < L; l++) {
        r_layernorm(h, x, rp(m, l, "ln_1/weight"), rp(m, l, "ln_1/bias"));
        r_matmul(qkv, h, rp(m, l, "attn/c_attn/weight"), rp(m, l, "attn/c_attn/bias"), C, 3 * C);
        r_attention(a, qkv);
        r_matmul(y, a, rp(m, l, "attn/c_proj/weight"), rp(m, l, "attn/c_proj/bias"), C, C);
        for (int i = 0; i < N * C; i++)
            x2[i] = x[i] + y[i];
        r_layernorm(h, x2, rp(m, l, "ln_2/weight"), rp(m, l, "ln_2/bias"));
        r_matmul(f, h, rp(m, l, "mlp/c_fc/weight"), rp(m, l, "mlp/c_fc/bias"), C, 4 * C);
        for (int i = 0; i < N * 4 * C; i++)
            f[i] = 0.5 * f[i] * (1.0 + tanh(sqrt(2.0 / M_PI) * (f[i] + 0.044715 * f[i] * f[i] * f[i])));
        r_matmul(y, f, rp(m, l, "mlp/c_proj/weight"), rp(m, l, "mlp/c_proj/bias"), 4 * C, C);
        for (int i = 0; i < N * C; i++)
            x[i] = x2[i] + y[i];
    }
    r_layernorm(h, x, rp(m, -1, "ln_f/weight"), rp(m, -1, "ln_f/bias"));
    double total = 0.0;
    for (int r = 0; r < N; r++) {
        double mx = -INFINITY, s = 0.0;
        for (int v = 0; v < V; v++) {
            double z = 0.0;
            for (int i = 0; i < C; i++)
                z += h[r * C + i] * wte[v * C + i];
            logits[r * V + v] = z;
            mx = z > mx ? z : mx;
        }
        for (int v = 0; v < V; v++)
            s += exp(logits[r * V + v] - mx);
        total += mx + log(s) - logits[r * V + m->tg[r]];
    }
    return total / N;
}

START_TEST(test_gpt2_gradients_match_finite_differences_of_double_model)
{
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    randomize(sh, 42);
    int tok[N], tg[N];
    batch(tok, tg);
    tok[5] = tok[9]; /* a repeated token */
    gpt2_acts *a = gpt2_acts_new(sh, B, T);
    float loss = gpt2_forward(sh, a, tok, NULL, tg, NULL);
    gpt2_shard_zero_grad(sh);
    gpt2_backward(sh, a, tok, NULL, 1.0f, NULL);

    ref_model m = {sh, calloc(sh->n_params, sizeof(double)), tok, tg};
    for (size_t i = 0; i < sh->n_params; i++)
        m.P[i] = sh->params[i];
    double want = ref_loss(&m);
    ck_assert_msg(fabs(loss - want) <= 1e-5 * fabs(want), "loss %.9g vs double %.9g", loss, want);

    const double h = 1e-5;
    uint64_t s = 7;
    for (int ti = 0; ti < sh->n_tensors; ti++) {
        const gpt2_tensor *t = &sh->tensors[ti];
        const float *g = sh->grads + t->offset;
        double scale = 0.0, worst = 0.0;
        for (size_t k = 0; k < t->numel; k++)
            scale = fabs(g[k]) > scale ? fabs(g[k]) : scale;
        /* first, last and 10 random elements */
        for (int k = 0; k < 12; k++) {
            size_t i = k == 0 ? 0 : k == 1 ? t->numel - 1
                                           : (size_t)((urand(&s) + 1.0) * 0.5 * t->numel) % t->numel;
            double *p = &m.P[t->offset + i], keep = *p;
            *p = keep + h;
            double lp = ref_loss(&m);
            *p = keep - h;
            double lm = ref_loss(&m);
            *p = keep;
            double fd = (lp - lm) / (2 * h), err = fabs(fd - g[i]);
            worst = err > worst ? err : worst;
            if (strcmp(t->name, "transformer/wpe/weight") == 0 && i >= (size_t)T * C)
                ck_assert_msg(g[i] == 0.0f, "wpe row %zu beyond T has a gradient", i / C);
        }
        ck_assert_msg(scale > 0.0, "%s: gradient is all zero", t->name);
        ck_assert_msg(worst <= 1e-5 * scale, "%s: |analytic - fd| %.3g > 1e-5 * %.3g", t->name,
                      worst, scale);
    }
    free(m.P);
    gpt2_acts_free(a);
    gpt2_shard_free(sh);
}
END_TEST

/* ------------------------------------------------------------ comparisons */

/* max |a - b| / max |b| over the local part of tensor name of `part`
 * against the whole model, through the slabs. */
static double tensor_err(const gpt2_shard *part, const float *pbuf, const gpt2_shard *full,
                         const float *fbuf, const gpt2_tensor *t)
{
    const gpt2_tensor *ft = gpt2_shard_tensor((gpt2_shard *)full, t->name);
    ck_assert_msg(ft != NULL, "%s missing from the whole model", t->name);
    (void)part;
    double e = 0.0, s = 0.0;
    for (size_t k = 0; k < ft->numel; k++)
        s = fabs(fbuf[ft->offset + k]) > s ? fabs(fbuf[ft->offset + k]) : s;
    for (size_t k = 0; k < t->numel; k++) {
        size_t fi = gpt2_tensor_full_index(t, k);
        ck_assert(fi < ft->numel);
        double d = fabs((double)pbuf[t->offset + k] - fbuf[ft->offset + fi]);
        e = d > e ? d : e;
    }
    return s > 0.0 ? e / s : e;
}

/* The whole model's loss and gradients on the standard batch, seed 5. */
static gpt2_shard *whole_model_grads(float *loss)
{
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    gpt2_shard_init_random(sh, 5);
    int tok[N], tg[N];
    batch(tok, tg);
    gpt2_acts *a = gpt2_acts_new(sh, B, T);
    *loss = gpt2_forward(sh, a, tok, NULL, tg, NULL);
    gpt2_backward(sh, a, tok, NULL, 1.0f, NULL);
    gpt2_acts_free(a);
    return sh;
}

START_TEST(test_pipeline_split_gives_same_loss_and_gradients)
{
    float want;
    gpt2_shard *full = whole_model_grads(&want);
    gpt2_shard *s0 = shard_or_die(&tiny, spec_of(0, 0, 1, 0, 0, 1));
    gpt2_shard *s1 = shard_or_die(&tiny, spec_of(1, 1, 0, 1, 0, 1));
    gpt2_shard_init_random(s0, 5);
    gpt2_shard_init_random(s1, 5);
    int tok[N], tg[N];
    batch(tok, tg);
    gpt2_acts *a0 = gpt2_acts_new(s0, B, T), *a1 = gpt2_acts_new(s1, B, T);
    ck_assert_float_eq(gpt2_forward(s0, a0, tok, NULL, NULL, NULL), 0.0f);
    float loss = gpt2_forward(s1, a1, NULL, gpt2_acts_out(a0), tg, NULL);
    ck_assert_msg(fabsf(loss - want) <= 1e-6f * want, "pipeline loss %.9g vs %.9g", loss, want);
    ck_assert(gpt2_acts_dinp(a0) == NULL);
    gpt2_backward(s1, a1, NULL, NULL, 1.0f, NULL);
    ck_assert(gpt2_acts_dinp(a1) != NULL);
    gpt2_backward(s0, a0, tok, gpt2_acts_dinp(a1), 1.0f, NULL);
    /* the tied wte: the two stages' parts add up */
    for (size_t k = 0; k < (size_t)V * C; k++)
        s0->g_wte[k] += s1->g_wte[k];
    gpt2_shard *parts[2] = {s0, s1};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < parts[p]->n_tensors; i++) {
            const gpt2_tensor *t = &parts[p]->tensors[i];
            if (p == 1 && strcmp(t->name, "transformer/wte/weight") == 0)
                continue;
            double e = tensor_err(parts[p], parts[p]->grads, full, full->grads, t);
            ck_assert_msg(e <= 1e-5, "stage %d %s: gradient error %.3g", p, t->name, e);
        }
    ck_assert_int_eq(s0->n_tensors + s1->n_tensors, full->n_tensors + 1);
    gpt2_acts_free(a0);
    gpt2_acts_free(a1);
    gpt2_shard_free(s0);
    gpt2_shard_free(s1);
    gpt2_shard_free(full);
}
END_TEST

/* ------------------------------------------------------- tensor parallel */

enum { TP = 3 };

/* In-process allreduce: every member posts its buffer, then each sums a
 * slice over the members in rank order into all of them, so every member
 * ends with bit-identical sums. */
typedef struct tp_group {
    pthread_barrier_t bar;
    float *bufs[TP];
    size_t n[TP];
    int calls[TP];
} tp_group;

typedef struct tp_member {
    tp_group *g;
    int rank;
    gpt2_shard *sh;
    gpt2_acts *a;
    float loss;
} tp_member;

static void tp_allreduce(void *ctx, float *buf, size_t n)
{
    tp_member *m = ctx;
    tp_group *g = m->g;
    g->bufs[m->rank] = buf;
    g->n[m->rank] = n;
    g->calls[m->rank]++;
    pthread_barrier_wait(&g->bar);
    size_t lo = n * m->rank / TP, hi = n * (m->rank + 1) / TP;
    for (size_t i = lo; i < hi; i++) {
        float s = 0.0f;
        for (int r = 0; r < TP; r++)
            s += g->bufs[r][i];
        for (int r = 0; r < TP; r++)
            g->bufs[r][i] = s;
    }
    pthread_barrier_wait(&g->bar);
}

static void *tp_run(void *arg)
{
    tp_member *m = arg;
    gpt2_tp tp = {tp_allreduce, m, NULL};
    int tok[N], tg[N];
    batch(tok, tg);
    m->loss = gpt2_forward(m->sh, m->a, tok, NULL, tg, &tp);
    gpt2_backward(m->sh, m->a, tok, NULL, 1.0f, &tp);
    return NULL;
}

START_TEST(test_tensor_parallel_3_threads_match_unsplit_model)
{
    openblas_set_num_threads(1);
    float want;
    gpt2_shard *full = whole_model_grads(&want);
    tp_group g;
    memset(&g, 0, sizeof g);
    pthread_barrier_init(&g.bar, NULL, TP);
    tp_member m[TP];
    pthread_t th[TP];
    for (int r = 0; r < TP; r++) {
        m[r].g = &g;
        m[r].rank = r;
        m[r].sh = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, r, TP));
        gpt2_shard_init_random(m[r].sh, 5);
        m[r].a = gpt2_acts_new(m[r].sh, B, T);
    }
    for (int r = 0; r < TP; r++)
        pthread_create(&th[r], NULL, tp_run, &m[r]);
    for (int r = 0; r < TP; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g.bar);

    for (int r = 0; r < TP; r++) {
        /* 2 allreduces per block forward and 2 backward */
        ck_assert_int_eq(g.calls[r], 4 * L);
        ck_assert_msg(fabsf(m[r].loss - want) <= 1e-5f * want, "rank %d loss %.9g vs %.9g", r,
                      m[r].loss, want);
        ck_assert_msg(m[r].loss == m[0].loss, "ranks disagree on the loss");
        ck_assert(memcmp(gpt2_acts_out(m[r].a), gpt2_acts_out(m[0].a), sizeof(float) * N * C) == 0);
        for (int i = 0; i < m[r].sh->n_tensors; i++) {
            const gpt2_tensor *t = &m[r].sh->tensors[i];
            double e = tensor_err(m[r].sh, m[r].sh->grads, full, full->grads, t);
            ck_assert_msg(e <= 1e-5, "rank %d %s: gradient error %.3g", r, t->name, e);
            if (!t->sharded) /* replicated: identical on every rank */
                ck_assert_msg(memcmp(m[r].sh->grads + t->offset,
                                     m[0].sh->grads + m[0].sh->tensors[i].offset,
                                     t->numel * sizeof(float)) == 0,
                              "rank %d %s differs from rank 0", r, t->name);
        }
    }
    for (int r = 0; r < TP; r++) {
        gpt2_acts_free(m[r].a);
        gpt2_shard_free(m[r].sh);
    }
    gpt2_shard_free(full);
}
END_TEST

/* ------------------------------------------------------ init and layout */

START_TEST(test_init_is_plan_independent)
{
    gpt2_shard *full = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    gpt2_shard_init_random(full, 99);
    gpt2_shard_spec specs[] = {spec_of(0, L - 1, 1, 1, 0, TP), spec_of(0, L - 1, 1, 1, 1, TP),
                               spec_of(0, L - 1, 1, 1, 2, TP), spec_of(0, 0, 1, 0, 0, 1),
                               spec_of(1, 1, 0, 1, 1, 3),      spec_of(1, 1, 0, 0, 0, 1)};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        gpt2_shard *sh = shard_or_die(&tiny, specs[k]);
        gpt2_shard_init_random(sh, 99);
        for (int i = 0; i < sh->n_tensors; i++) {
            const gpt2_tensor *t = &sh->tensors[i];
            ck_assert_msg(tensor_err(sh, sh->params, full, full->params, t) == 0.0,
                          "spec %zu: %s differs from the whole model", k, t->name);
        }
        gpt2_shard_free(sh);
    }
    /* the draw is N(0, 0.02): check the moments of wte (3492 draws) */
    const gpt2_tensor *t = gpt2_shard_tensor(full, "transformer/wte/weight");
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < t->numel; i++) {
        s += full->params[t->offset + i];
        s2 += (double)full->params[t->offset + i] * full->params[t->offset + i];
    }
    double mean = s / t->numel, sd = sqrt(s2 / t->numel - mean * mean);
    ck_assert_double_le(fabs(mean), 0.0015);
    ck_assert_double_le(fabs(sd - 0.02), 0.001);
    /* c_proj scaled by 1/sqrt(2L), biases zero, LayerNorm gains one */
    const gpt2_tensor *cp = gpt2_shard_tensor(full, "transformer/h/1/mlp/c_proj/weight");
    s2 = 0.0;
    for (size_t i = 0; i < cp->numel; i++)
        s2 += (double)full->params[cp->offset + i] * full->params[cp->offset + i];
    ck_assert_double_le(fabs(sqrt(s2 / cp->numel) - 0.02 / sqrt(2.0 * L)), 0.0007);
    ck_assert_float_eq(full->blocks[0].ln1_w[5], 1.0f);
    ck_assert_float_eq(full->blocks[1].fc_b[7], 0.0f);
    /* another seed draws another model */
    gpt2_shard *other = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    gpt2_shard_init_random(other, 100);
    ck_assert(other->wte[0] != full->wte[0]);
    gpt2_shard_free(other);
    gpt2_shard_free(full);
}
END_TEST

START_TEST(test_tensor_descriptors_name_shape_and_slice)
{
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(1, 1, 0, 1, 1, TP));
    const int Cl = C / TP, Fl = 4 * C / TP;
    ck_assert_int_eq(sh->c_local, Cl);
    ck_assert_int_eq(sh->f_local, Fl);
    ck_assert_int_eq(sh->nh_local, 1);
    /* a head shard without the embedding still owns the tied wte */
    ck_assert_ptr_nonnull(gpt2_shard_tensor(sh, "transformer/wte/weight"));
    ck_assert_ptr_nonnull(sh->wte);
    ck_assert_ptr_null(gpt2_shard_tensor(sh, "transformer/wpe/weight"));
    ck_assert_ptr_null(gpt2_shard_tensor(sh, "transformer/h/0/ln_1/weight"));
    ck_assert_ptr_nonnull(gpt2_shard_tensor(sh, "transformer/ln_f/bias"));
    const gpt2_tensor *t = gpt2_shard_tensor(sh, "transformer/h/1/attn/c_attn/weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->full[0], C);
    ck_assert_int_eq(t->full[1], 3 * C);
    ck_assert_int_eq(t->local[1], 3 * Cl);
    ck_assert_int_eq(t->nslab, 3);
    for (int p = 0; p < 3; p++) {
        ck_assert_int_eq(t->slab[p].dim, 1);
        ck_assert_int_eq(t->slab[p].full_off, p * C + Cl);
        ck_assert_int_eq(t->slab[p].local_off, p * Cl);
        ck_assert_int_eq(t->slab[p].count, Cl);
    }
    ck_assert(t->sharded && t->decay);
    /* element (row 2, local col Cl + 3) is k column Cl + 3 of the full matrix */
    ck_assert_uint_eq(gpt2_tensor_full_index(t, 2 * 3 * Cl + Cl + 3), 2 * 3 * C + C + Cl + 3);
    t = gpt2_shard_tensor(sh, "transformer/h/1/attn/c_proj/weight");
    ck_assert_int_eq(t->local[0], Cl);
    ck_assert_int_eq(t->nslab, 1);
    ck_assert_int_eq(t->slab[0].dim, 0);
    ck_assert_int_eq(t->slab[0].full_off, Cl);
    ck_assert_uint_eq(gpt2_tensor_full_index(t, 1 * C + 4), (Cl + 1) * C + 4);
    t = gpt2_shard_tensor(sh, "transformer/h/1/attn/c_proj/bias");
    ck_assert(!t->sharded && t->nslab == 0 && !t->decay);
    t = gpt2_shard_tensor(sh, "transformer/h/1/mlp/c_fc/weight");
    ck_assert(t->nslab == 1 && t->slab[0].dim == 1 && t->slab[0].full_off == Fl && t->local[1] == Fl);
    t = gpt2_shard_tensor(sh, "transformer/h/1/mlp/c_fc/bias");
    ck_assert(t->nslab == 1 && t->slab[0].dim == 0 && t->numel == (size_t)Fl && !t->decay);
    t = gpt2_shard_tensor(sh, "transformer/h/1/mlp/c_proj/weight");
    ck_assert(t->nslab == 1 && t->slab[0].dim == 0 && t->local[0] == Fl && t->local[1] == C);
    t = gpt2_shard_tensor(sh, "transformer/h/1/ln_2/weight");
    ck_assert(!t->sharded && !t->decay && t->ndim == 1);
    ck_assert(gpt2_shard_tensor(sh, "transformer/wte/weight")->decay);
    /* descriptors tile the buffer exactly */
    size_t at = 0;
    for (int i = 0; i < sh->n_tensors; i++) {
        ck_assert_uint_eq(sh->tensors[i].offset, at);
        at += sh->tensors[i].numel;
    }
    ck_assert_uint_eq(at, sh->n_params);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_presets_and_parameter_counts)
{
    gpt2_config c;
    ck_assert_int_eq(gpt2_config_preset("gpt2", &c), 0);
    ck_assert(c.n_layer == 12 && c.n_embd == 768 && c.n_head == 12 && c.vocab_size == 50257 &&
              c.block_size == 1024);
    ck_assert_uint_eq(gpt2_config_num_params(&c), 124439808u);
    ck_assert_int_eq(gpt2_config_preset("gpt2-medium", &c), 0);
    ck_assert(c.n_layer == 24 && c.n_embd == 1024 && c.n_head == 16);
    ck_assert_uint_eq(gpt2_config_num_params(&c), 354823168u);
    ck_assert_int_eq(gpt2_config_preset("gpt2-large", &c), 0);
    ck_assert(c.n_layer == 36 && c.n_embd == 1280 && c.n_head == 20);
    ck_assert_int_eq(gpt2_config_preset("gpt2-xl", &c), 0);
    ck_assert(c.n_layer == 48 && c.n_embd == 1600 && c.n_head == 25);
    ck_assert_int_eq(gpt2_config_preset("gpt2-tiny", &c), 0);
    ck_assert(c.n_layer == 2 && c.n_embd == 64 && c.n_head == 4 && c.vocab_size == 256);
    ck_assert_int_eq(gpt2_config_preset("gpt2-mini", &c), 0);
    ck_assert_int_eq(gpt2_config_preset("gpt2-small-demo", &c), 0);
    ck_assert(c.n_layer == 6 && c.n_embd == 192 && c.n_head == 6 && c.block_size == 128);
    ck_assert_int_eq(gpt2_config_preset("gpt3", &c), -1);
    int n = 0;
    for (const char *const *p = gpt2_preset_names; *p; p++, n++)
        ck_assert_int_eq(gpt2_config_preset(*p, &c), 0);
    ck_assert_int_eq(n, 7);
    /* the whole-model shard holds exactly num_params floats */
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    ck_assert_uint_eq(sh->n_params, gpt2_config_num_params(&tiny));
    ck_assert_int_eq(sh->n_tensors, 2 + 12 * L + 2);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_bad_specs_are_rejected_with_a_clear_message)
{
    struct {
        gpt2_shard_spec s;
        const char *want;
    } cases[] = {
        {spec_of(0, 1, 1, 1, 0, 2), "tensor-parallel size 2 does not divide n_head 3"},
        {spec_of(0, 1, 1, 1, 0, 5), "use one of: 1 3"},
        {spec_of(0, 2, 1, 1, 0, 1), "layer range [0, 2] is out of bounds"},
        {spec_of(-1, 0, 1, 1, 0, 1), "out of bounds"},
        {spec_of(0, 1, 1, 1, 3, 3), "rank 3 of size 3 is invalid"},
        {spec_of(0, 1, 1, 1, 0, 0), "invalid"},
        {spec_of(1, 0, 0, 0, 0, 1), "empty"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        et_err e;
        et_err_clear(&e);
        ck_assert_ptr_null(gpt2_shard_new(&tiny, &cases[k].s, &e));
        ck_assert_int_eq(e.code, ET_EINPUT);
        ck_assert_msg(strstr(e.msg, cases[k].want) != NULL, "case %zu: '%s' lacks '%s'", k, e.msg,
                      cases[k].want);
    }
    gpt2_config bad = tiny;
    bad.n_embd = 35;
    et_err e;
    et_err_clear(&e);
    gpt2_shard_spec s = spec_of(0, 1, 1, 1, 0, 1);
    ck_assert_ptr_null(gpt2_shard_new(&bad, &s, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "n_embd 35 is not a multiple of n_head 3"));
    bad = tiny;
    bad.vocab_size = 0;
    et_err_clear(&e);
    ck_assert_int_eq(gpt2_config_check(&bad, &e), -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "vocab_size is 0"));
    /* no blocks but the embedding is a valid (first) stage */
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(0, -1, 1, 0, 0, 1));
    ck_assert_int_eq(sh->n_blocks, 0);
    gpt2_shard_free(sh);
    /* acts: T beyond block_size is refused */
    sh = shard_or_die(&tiny, spec_of(0, 1, 1, 1, 0, 1));
    ck_assert_ptr_null(gpt2_acts_new(sh, 1, BLOCK + 1));
    ck_assert_ptr_null(gpt2_acts_new(sh, 0, 4));
    ck_assert_uint_eq(gpt2_acts_bytes(sh, 1, BLOCK + 1), 0);
    ck_assert_uint_gt(gpt2_acts_bytes(sh, B, T), 0);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_bad_tokens_give_nan_not_a_crash)
{
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    gpt2_shard_init_random(sh, 1);
    gpt2_acts *a = gpt2_acts_new(sh, B, T);
    int tok[N], tg[N];
    batch(tok, tg);
    tok[4] = V; /* out of range */
    ck_assert(isnan(gpt2_forward(sh, a, tok, NULL, tg, NULL)));
    ck_assert(isnan(gpt2_acts_out(a)[0]));
    gpt2_backward(sh, a, tok, NULL, 1.0f, NULL); /* leaves the gradients alone */
    for (size_t i = 0; i < sh->n_params; i++)
        ck_assert(sh->grads[i] == 0.0f);
    batch(tok, tg);
    tg[0] = -1;
    ck_assert(isnan(gpt2_forward(sh, a, tok, NULL, tg, NULL)));
    ck_assert(isnan(gpt2_forward(sh, a, NULL, NULL, tg, NULL)));
    et_err e;
    et_err_clear(&e);
    ck_assert_int_eq(gpt2_tokens_check(&tiny, tg, N, "data.h5 train/tokens", &e), -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "data.h5 train/tokens: token -1 at position 0 is outside the vocabulary [0, 97)"));
    batch(tok, tg);
    ck_assert_int_eq(gpt2_tokens_check(&tiny, tok, N, "x", &e), 0);
    ck_assert(isfinite(gpt2_forward(sh, a, tok, NULL, tg, NULL)));
    gpt2_acts_free(a);
    gpt2_shard_free(sh);
}
END_TEST

START_TEST(test_discard_grad_then_backward_equals_zero_grad_then_backward)
{
    int tok[N], tg[N];
    batch(tok, tg);
    gpt2_shard *x = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    gpt2_shard *y = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    gpt2_shard_init_random(x, 3);
    gpt2_shard_init_random(y, 3);
    for (size_t i = 0; i < x->n_params; i++) /* garbage in y's gradients */
        y->grads[i] = 1e3f;
    gpt2_acts *a = gpt2_acts_new(x, B, T);
    gpt2_shard_zero_grad(x);
    gpt2_forward(x, a, tok, NULL, tg, NULL);
    gpt2_backward(x, a, tok, NULL, 0.5f, NULL);
    gpt2_shard_discard_grad(y);
    gpt2_forward(y, a, tok, NULL, tg, NULL);
    gpt2_backward(y, a, tok, NULL, 0.5f, NULL);
    for (size_t i = 0; i < x->n_params; i++)
        ck_assert_float_eq_tol(y->grads[i], x->grads[i], 1e-7f);
    /* a second micro-batch accumulates: twice the gradient of one */
    gpt2_forward(y, a, tok, NULL, tg, NULL);
    gpt2_backward(y, a, tok, NULL, 0.5f, NULL);
    for (size_t i = 0; i < x->n_params; i++)
        ck_assert_float_eq_tol(y->grads[i], 2.0f * x->grads[i], 1e-6f);
    /* an embedding-only stage clears its wte rows too */
    gpt2_shard *e0 = shard_or_die(&tiny, spec_of(0, 0, 1, 0, 0, 1));
    gpt2_shard *e1 = shard_or_die(&tiny, spec_of(0, 0, 1, 0, 0, 1));
    gpt2_shard_init_random(e0, 3);
    gpt2_shard_init_random(e1, 3);
    for (size_t i = 0; i < e1->n_params; i++)
        e1->grads[i] = -7.0f;
    gpt2_acts *b0 = gpt2_acts_new(e0, B, T);
    float *dx = calloc((size_t)N * C, sizeof(float));
    for (int i = 0; i < N * C; i++)
        dx[i] = 0.01f * (float)(i % 13);
    gpt2_forward(e0, b0, tok, NULL, NULL, NULL);
    gpt2_backward(e0, b0, tok, dx, 1.0f, NULL);
    gpt2_shard_discard_grad(e1);
    gpt2_forward(e1, b0, tok, NULL, NULL, NULL);
    gpt2_backward(e1, b0, tok, dx, 1.0f, NULL);
    for (size_t i = 0; i < e0->n_params; i++)
        ck_assert_float_eq_tol(e1->grads[i], e0->grads[i], 1e-7f);
    free(dx);
    gpt2_acts_free(b0);
    gpt2_shard_free(e0);
    gpt2_shard_free(e1);
    gpt2_acts_free(a);
    gpt2_shard_free(x);
    gpt2_shard_free(y);
}
END_TEST

START_TEST(test_logits_and_accuracy_are_exposed_after_forward)
{
    gpt2_shard *sh = shard_or_die(&tiny, spec_of(0, L - 1, 1, 1, 0, 1));
    randomize(sh, 11);
    int tok[N], tg[N];
    batch(tok, tg);
    gpt2_acts *a = gpt2_acts_new(sh, B, T);
    /* targets = the argmax of each row: accuracy must be N/N */
    gpt2_forward(sh, a, tok, NULL, tg, NULL);
    const float *lg = gpt2_acts_logits(a);
    ck_assert_ptr_nonnull(lg);
    for (int r = 0; r < N; r++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            best = lg[r * V + v] > lg[r * V + best] ? v : best;
        tg[r] = best;
    }
    float loss = gpt2_forward(sh, a, tok, NULL, tg, NULL);
    ck_assert_int_eq(gpt2_acts_correct(a), N);
    ck_assert_float_eq(gpt2_acts_loss(a), loss);
    gpt2_acts_free(a);
    gpt2_shard_free(sh);
}
END_TEST

/* One training step (forward, backward, norm, AdamW) of a model big enough
 * that every pool-split loop really splits (gelu, LayerNorm, residual,
 * attention pairs, cross-entropy rows, AdamW, the norm's chunks), on
 * `threads` threads; returns loss and norm, leaves grads (before the step)
 * and params (after) in the given arrays. */
static void step_on_threads(int threads, float *loss, double *norm, float *grads, float *params,
                            size_t *n)
{
    const gpt2_config mid = {2, 4, 64, 500, 128};
    enum { MB = 4, MT = 100 };
    et_pool_set_threads(threads);
    gpt2_shard *sh = shard_or_die(&mid, spec_of(0, 1, 1, 1, 0, 1));
    gpt2_shard_init_random(sh, 5);
    gpt2_acts *a = gpt2_acts_new(sh, MB, MT);
    ck_assert_ptr_nonnull(a);
    static int tok[MB * MT], tg[MB * MT];
    for (int i = 0; i < MB * MT; i++) {
        tok[i] = (i * 37 + 11) % mid.vocab_size;
        tg[i] = (i * 53 + 5) % mid.vocab_size;
    }
    optim_state *st = optim_state_new(sh);
    optim_config o;
    optim_config_default(&o);
    o.weight_decay = 0.1;
    gpt2_shard_zero_grad(sh);
    *loss = gpt2_forward(sh, a, tok, NULL, tg, NULL);
    gpt2_backward(sh, a, tok, NULL, 1.0f, NULL);
    *norm = sqrt(optim_grad_sqsum(sh, 1, 0));
    *n = sh->n_params;
    memcpy(grads, sh->grads, sh->n_params * sizeof(float));
    optim_step(sh, st, &o, 0, optim_clip_scale(&o, *norm));
    memcpy(params, sh->params, sh->n_params * sizeof(float));
    /* the step consumed the gradients: zero_grad has nothing left to do */
    ck_assert_int_eq(sh->grads_zero, 1);
    for (size_t i = 0; i < sh->n_params; i++)
        ck_assert(sh->grads[i] == 0.0f);
    optim_state_free(st);
    gpt2_acts_free(a);
    gpt2_shard_free(sh);
    et_pool_set_threads(0);
}

START_TEST(test_training_step_is_bit_identical_on_1_2_and_3_threads)
{
    enum { CAP = 200000 };
    float *g1 = malloc(CAP * sizeof(float)), *p1 = malloc(CAP * sizeof(float));
    float *g2 = malloc(CAP * sizeof(float)), *p2 = malloc(CAP * sizeof(float));
    float l1, l2;
    double n1, n2;
    size_t c1, c2;
    step_on_threads(1, &l1, &n1, g1, p1, &c1);
    ck_assert_uint_le(c1, CAP);
    for (int t = 2; t <= 3; t++) {
        step_on_threads(t, &l2, &n2, g2, p2, &c2);
        ck_assert_uint_eq(c1, c2);
        ck_assert_msg(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.9g vs %.9g on %d threads", l1, l2, t);
        ck_assert_msg(n1 == n2, "norm %.17g vs %.17g on %d threads", n1, n2, t);
        ck_assert_msg(memcmp(g1, g2, c1 * sizeof(float)) == 0, "gradients differ on %d threads", t);
        ck_assert_msg(memcmp(p1, p2, c1 * sizeof(float)) == 0, "parameters differ on %d threads", t);
    }
    free(g1), free(p1), free(g2), free(p2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gpt2");
    TCase *tc = tcase_create("gpt2");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gpt2_gradients_match_finite_differences_of_double_model);
    tcase_add_test(tc, test_pipeline_split_gives_same_loss_and_gradients);
    tcase_add_test(tc, test_tensor_parallel_3_threads_match_unsplit_model);
    tcase_add_test(tc, test_init_is_plan_independent);
    tcase_add_test(tc, test_tensor_descriptors_name_shape_and_slice);
    tcase_add_test(tc, test_presets_and_parameter_counts);
    tcase_add_test(tc, test_bad_specs_are_rejected_with_a_clear_message);
    tcase_add_test(tc, test_bad_tokens_give_nan_not_a_crash);
    tcase_add_test(tc, test_discard_grad_then_backward_equals_zero_grad_then_backward);
    tcase_add_test(tc, test_logits_and_accuracy_are_exposed_after_forward);
    tcase_add_test(tc, test_training_step_is_bit_identical_on_1_2_and_3_threads);
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
