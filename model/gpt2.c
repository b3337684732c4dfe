/*
 * gpt2 — configuration presets, the shard's parameter layout and tensor
 * descriptors, the plan-independent random init, and the forward and
 * backward passes of a shard (pipeline stage x tensor-parallel slice) built
 * from the kernels of kernels.h. See gpt2.h for the contract.
 */
#include "gpt2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "../common/et_pool.h"

/* ------------------------------------------------------------------ config */

typedef struct preset {
    const char *name;
    gpt2_config cfg; /* n_layer, n_head, n_embd, vocab_size, block_size */
} preset;

static const preset presets[] = {
    {"gpt2", {12, 12, 768, 50257, 1024}},
    {"gpt2-medium", {24, 16, 1024, 50257, 1024}},
    {"gpt2-large", {36, 20, 1280, 50257, 1024}},
    {"gpt2-xl", {48, 25, 1600, 50257, 1024}},
    {"gpt2-tiny", {2, 4, 64, 256, 64}},
    {"gpt2-mini", {4, 4, 128, 256, 128}},
    {"gpt2-small-demo", {6, 6, 192, 256, 128}},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const gpt2_preset_names[] = {
    "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt2-tiny", "gpt2-mini", "gpt2-small-demo", NULL,
};

/* Copies the named preset into *c; -1 (c untouched) for an unknown name. */
int gpt2_config_preset(const char *name, gpt2_config *c)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcmp(presets[i].name, name) == 0) {
            *c = presets[i].cfg;
            return 0;
        }
    }
    return -1;
}

/* Sizes must be positive, bounded (so that every index fits comfortably in
 * the int and size_t arithmetic of the kernels), and n_embd a multiple of
 * n_head. */
int gpt2_config_check(const gpt2_config *c, et_err *e)
{
    struct {
        const char *key;
        int v, max;
    } f[] = {
        {"n_layer", c->n_layer, 4096},       {"n_head", c->n_head, 4096},
        {"n_embd", c->n_embd, 65536},        {"vocab_size", c->vocab_size, 1 << 24},
        {"block_size", c->block_size, 1 << 20},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v < 1 || f[i].v > f[i].max)
            return et_errf(e, ET_EINPUT, "model: %s is %d (it must lie in [1, %d])", f[i].key,
                           f[i].v, f[i].max);
    }
    if (c->n_embd % c->n_head != 0)
        return et_errf(e, ET_EINPUT,
                       "model: n_embd %d is not a multiple of n_head %d (head size = n_embd / "
                       "n_head must be whole)",
                       c->n_embd, c->n_head);
    return 0;
}

/* wte + wpe + per block (ln_1, c_attn, attn.c_proj, ln_2, c_fc, mlp.c_proj)
 * + ln_f; the head is tied to wte. */
size_t gpt2_config_num_params(const gpt2_config *c)
{
    size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    size_t per_block = 12 * C * C + 13 * C;
    return (size_t)c->vocab_size * C + (size_t)c->block_size * C + L * per_block + 2 * C;
}

/* ------------------------------------------------------------ shard layout */

/* Fills the next descriptor of sh->tensors. The local shape follows from the
 * full shape and the slabs; `*at` is the running offset in the buffer. */
static gpt2_tensor *add_tensor(gpt2_shard *sh, size_t *at, const char *name, int ndim,
                               long full0, long full1, long local0, long local1, int decay)
{
    gpt2_tensor *t = &sh->tensors[sh->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->full[0] = full0;
    t->full[1] = ndim == 2 ? full1 : 1;
    t->local[0] = local0;
    t->local[1] = ndim == 2 ? local1 : 1;
    t->numel = (size_t)t->local[0] * (size_t)t->local[1];
    t->offset = *at;
    *at += t->numel;
    t->decay = decay;
    return t;
}

/* Adds one slab to a tensor and marks it sharded. */
static void add_slab(gpt2_tensor *t, int dim, long full_off, long local_off, long count)
{
    gpt2_slab *s = &t->slab[t->nslab++];
    s->dim = dim;
    s->full_off = full_off;
    s->local_off = local_off;
    s->count = count;
    t->sharded = 1;
}

/* Builds the descriptors of every tensor the shard holds, in the fixed order
 * wte, wpe, blocks (ln_1, c_attn, attn.c_proj, ln_2, c_fc, mlp.c_proj, each
 * weight then bias), ln_f. Returns the total local float count. */
static size_t build_layout(gpt2_shard *sh)
{
    const int C = sh->cfg.n_embd, V = sh->cfg.vocab_size, T = sh->cfg.block_size;
    const int tp = sh->spec.tp_size, r = sh->spec.tp_rank;
    const int Cl = sh->c_local, Fl = sh->f_local;
    char nm[96];
    size_t at = 0;
    gpt2_tensor *t;

    if (sh->spec.has_embed || sh->spec.has_head)
        add_tensor(sh, &at, "transformer/wte/weight", 2, V, C, V, C, 1);
    if (sh->spec.has_embed)
        add_tensor(sh, &at, "transformer/wpe/weight", 2, T, C, T, C, 1);
    for (int l = 0; l < sh->n_blocks; l++) {
        int g = sh->spec.layer_first + l;
#define NAME(suffix) (snprintf(nm, sizeof nm, "transformer/h/%d/%s", g, suffix), nm)
        add_tensor(sh, &at, NAME("ln_1/weight"), 1, C, 1, C, 1, 0);
        add_tensor(sh, &at, NAME("ln_1/bias"), 1, C, 1, C, 1, 0);
        t = add_tensor(sh, &at, NAME("attn/c_attn/weight"), 2, C, 3L * C, C, 3L * Cl, 1);
        if (tp > 1)
            for (int p = 0; p < 3; p++)
                add_slab(t, 1, (long)p * C + (long)r * Cl, (long)p * Cl, Cl);
        t = add_tensor(sh, &at, NAME("attn/c_attn/bias"), 1, 3L * C, 1, 3L * Cl, 1, 0);
        if (tp > 1)
            for (int p = 0; p < 3; p++)
                add_slab(t, 0, (long)p * C + (long)r * Cl, (long)p * Cl, Cl);
        t = add_tensor(sh, &at, NAME("attn/c_proj/weight"), 2, C, C, Cl, C, 1);
        if (tp > 1)
            add_slab(t, 0, (long)r * Cl, 0, Cl);
        add_tensor(sh, &at, NAME("attn/c_proj/bias"), 1, C, 1, C, 1, 0);
        add_tensor(sh, &at, NAME("ln_2/weight"), 1, C, 1, C, 1, 0);
        add_tensor(sh, &at, NAME("ln_2/bias"), 1, C, 1, C, 1, 0);
        t = add_tensor(sh, &at, NAME("mlp/c_fc/weight"), 2, C, 4L * C, C, Fl, 1);
        if (tp > 1)
            add_slab(t, 1, (long)r * Fl, 0, Fl);
        t = add_tensor(sh, &at, NAME("mlp/c_fc/bias"), 1, 4L * C, 1, Fl, 1, 0);
        if (tp > 1)
            add_slab(t, 0, (long)r * Fl, 0, Fl);
        t = add_tensor(sh, &at, NAME("mlp/c_proj/weight"), 2, 4L * C, C, Fl, C, 1);
        if (tp > 1)
            add_slab(t, 0, (long)r * Fl, 0, Fl);
        add_tensor(sh, &at, NAME("mlp/c_proj/bias"), 1, C, 1, C, 1, 0);
#undef NAME
    }
    if (sh->spec.has_head) {
        add_tensor(sh, &at, "transformer/ln_f/weight", 1, C, 1, C, 1, 0);
        add_tensor(sh, &at, "transformer/ln_f/bias", 1, C, 1, C, 1, 0);
    }
    return at;
}

/* Points the named views of params (or grads) at their tensors, which
 * build_layout laid out in a known order. */
static void set_views(gpt2_shard *sh, float *base, float **wte, float **wpe, float **lnf_w,
                      float **lnf_b, gpt2_block *blocks)
{
    int i = 0;
    *wte = *wpe = *lnf_w = *lnf_b = NULL;
    if (sh->spec.has_embed || sh->spec.has_head)
        *wte = base + sh->tensors[i++].offset;
    if (sh->spec.has_embed)
        *wpe = base + sh->tensors[i++].offset;
    for (int l = 0; l < sh->n_blocks; l++) {
        gpt2_block *b = &blocks[l];
        float **v[] = {&b->ln1_w, &b->ln1_b, &b->qkv_w,  &b->qkv_b, &b->attproj_w, &b->attproj_b,
                       &b->ln2_w, &b->ln2_b, &b->fc_w,   &b->fc_b,  &b->fcproj_w,  &b->fcproj_b};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
            *v[k] = base + sh->tensors[i++].offset;
    }
    if (sh->spec.has_head) {
        *lnf_w = base + sh->tensors[i++].offset;
        *lnf_b = base + sh->tensors[i++].offset;
    }
}

/* Validates the spec against the config, then allocates params and grads
 * (zeroed), the descriptors and the views. The shard owns everything. */
gpt2_shard *gpt2_shard_new(const gpt2_config *c, const gpt2_shard_spec *s, et_err *e)
{
    if (gpt2_config_check(c, e) < 0)
        return NULL;
    if (s->tp_size < 1 || s->tp_rank < 0 || s->tp_rank >= s->tp_size) {
        et_errf(e, ET_EINPUT,
                "shard: tensor-parallel rank %d of size %d is invalid (need 0 <= rank < size)",
                s->tp_rank, s->tp_size);
        return NULL;
    }
    if (c->n_head % s->tp_size != 0 || (4 * c->n_embd) % s->tp_size != 0) {
        char divs[256] = "";
        size_t len = 0;
        for (int d = 1; d <= c->n_head && len + 16 < sizeof divs; d++)
            if (c->n_head % d == 0)
                len += (size_t)snprintf(divs + len, sizeof divs - len, "%s%d", len ? " " : "", d);
        et_errf(e, ET_EINPUT,
                "shard: tensor-parallel size %d does not divide n_head %d (use one of: %s)",
                s->tp_size, c->n_head, divs);
        return NULL;
    }
    int has_blocks = s->layer_last >= s->layer_first;
    if (has_blocks && (s->layer_first < 0 || s->layer_last >= c->n_layer)) {
        et_errf(e, ET_EINPUT,
                "shard: layer range [%d, %d] is out of bounds (the model has layers 0..%d)",
                s->layer_first, s->layer_last, c->n_layer - 1);
        return NULL;
    }
    int nb = has_blocks ? s->layer_last - s->layer_first + 1 : 0;
    if (nb == 0 && !s->has_embed && !s->has_head) {
        et_errf(e, ET_EINPUT, "shard: empty (no layers, no embedding, no head)");
        return NULL;
    }

    gpt2_shard *sh = et_xcalloc(1, sizeof *sh);
    sh->cfg = *c;
    sh->spec = *s;
    sh->n_blocks = nb;
    sh->nh_local = c->n_head / s->tp_size;
    sh->c_local = sh->nh_local * (c->n_embd / c->n_head);
    sh->f_local = 4 * c->n_embd / s->tp_size;
    sh->tensors = et_xcalloc((size_t)nb * 12 + 4, sizeof *sh->tensors);
    sh->n_params = build_layout(sh);
    sh->params = et_amalloc(sh->n_params * sizeof(float));
    sh->grads = et_amalloc(sh->n_params * sizeof(float));
    memset(sh->params, 0, sh->n_params * sizeof(float));
    memset(sh->grads, 0, sh->n_params * sizeof(float));
    sh->blocks = et_xcalloc(nb ? (size_t)nb : 1, sizeof *sh->blocks);
    sh->g_blocks = et_xcalloc(nb ? (size_t)nb : 1, sizeof *sh->g_blocks);
    set_views(sh, sh->params, &sh->wte, &sh->wpe, &sh->lnf_w, &sh->lnf_b, sh->blocks);
    set_views(sh, sh->grads, &sh->g_wte, &sh->g_wpe, &sh->g_lnf_w, &sh->g_lnf_b, sh->g_blocks);
    return sh;
}

/* Frees everything gpt2_shard_new allocated; NULL is fine. */
void gpt2_shard_free(gpt2_shard *sh)
{
    if (!sh)
        return;
    et_afree(sh->params);
    et_afree(sh->grads);
    free(sh->blocks);
    free(sh->g_blocks);
    free(sh->tensors);
    free(sh);
}

/* Linear search by full name (a few hundred tensors at most). */
gpt2_tensor *gpt2_shard_tensor(gpt2_shard *sh, const char *name)
{
    for (int i = 0; i < sh->n_tensors; i++)
        if (strcmp(sh->tensors[i].name, name) == 0)
            return &sh->tensors[i];
    return NULL;
}

/* Maps a local element to the full tensor: through the slab that holds its
 * column (dim 1) or row (dim 0); the other coordinate is unchanged. */
size_t gpt2_tensor_full_index(const gpt2_tensor *t, size_t local_i)
{
    if (t->nslab == 0)
        return local_i;
    size_t cols = (size_t)t->local[1];
    size_t r = local_i / cols, c = local_i % cols;
    for (int k = 0; k < t->nslab; k++) {
        const gpt2_slab *s = &t->slab[k];
        size_t x = s->dim == 1 ? c : r;
        if (x >= (size_t)s->local_off && x < (size_t)(s->local_off + s->count)) {
            size_t fx = (size_t)s->full_off + (x - (size_t)s->local_off);
            return s->dim == 1 ? r * (size_t)t->full[1] + fx : fx * (size_t)t->full[1] + c;
        }
    }
    return (size_t)-1; /* unreachable: the slabs cover the local tensor */
}

/* ---------------------------------------------------------------- init */

/*
 * The init generator. Element i of the full tensor named `name` is a pure
 * function of (seed, name, i), so any shard or tensor-parallel slice draws
 * exactly its part of one model:
 *   key   = splitmix64_mix(seed ^ splitmix64_mix(fnv1a64(name)))
 *   u_n   = the n-th output (n = 0, 1, ...) of splitmix64 started at state
 *           key, i.e. splitmix64_mix(key + (n + 1) * 0x9E3779B97F4A7C15)
 *   pair k = elements 2k and 2k+1 share (a, b) = (u_2k, u_2k+1):
 *           U1 = ((a >> 40) + 1) * 2^-24 in (0, 1], U2 = (b >> 40) * 2^-24,
 *           R = sqrt(-2 ln U1); element 2k = R cos(2 pi U2), 2k+1 = R sin(2 pi U2)
 *   value = std * that normal (Box-Muller in float: 24-bit uniforms, tails
 *           cut at 5.8 sigma, a few ns per element).
 * splitmix64_mix is Steele, Lea and Flood's SplitMix64 output function:
 *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) *
 *   0x94D049BB133111EB; z ^ (z >> 31).
 */
#define SM_GAMMA 0x9E3779B97F4A7C15ULL

/* SplitMix64's output function (see above). */
static uint64_t sm_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* FNV-1a, 64-bit, over the bytes of a string. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The pair of standard normals number k of the stream `key` (see above). */
static void normal_pair(uint64_t key, uint64_t k, float z[2])
{
    uint64_t a = sm_mix(key + (2 * k + 1) * SM_GAMMA);
    uint64_t b = sm_mix(key + (2 * k + 2) * SM_GAMMA);
    float u1 = (float)((a >> 40) + 1) * 0x1.0p-24f;
    float u2 = (float)(b >> 40) * 0x1.0p-24f;
    float r = sqrtf(-2.0f * logf(u1)), s, c;
    sincosf(6.2831853071795864769f * u2, &s, &c);
    z[0] = r * c;
    z[1] = r * s;
}

/* dst[0..n) = std * normals number full_start..full_start+n-1 of `key`:
 * one pair per two elements, a half pair at either end of an odd run. */
static void fill_normal_run(float *dst, uint64_t key, size_t full_start, size_t n, float std)
{
    size_t i = full_start, end = full_start + n;
    float z[2];
    while (i < end) {
        normal_pair(key, i / 2, z);
        if ((i & 1) == 0 && i + 1 < end) {
            *dst++ = std * z[0];
            *dst++ = std * z[1];
            i += 2;
        } else {
            *dst++ = std * z[i & 1];
            i++;
        }
    }
}

/* Fills the local tensor t in p with its part of the full tensor's normals,
 * run by contiguous run (rows of a column slab, a block of whole rows, or a
 * 1-D range), so that no element costs more than half a pair. */
static void fill_normal_tensor(float *p, const gpt2_tensor *t, uint64_t key, float std)
{
    if (t->nslab == 0) {
        fill_normal_run(p, key, 0, t->numel, std);
        return;
    }
    size_t fcols = (size_t)t->full[1], lcols = (size_t)t->local[1];
    for (int k = 0; k < t->nslab; k++) {
        const gpt2_slab *s = &t->slab[k];
        if (t->ndim == 1) {
            fill_normal_run(p + s->local_off, key, (size_t)s->full_off, (size_t)s->count, std);
        } else if (s->dim == 0) {
            fill_normal_run(p + (size_t)s->local_off * lcols, key, (size_t)s->full_off * fcols,
                            (size_t)s->count * lcols, std);
        } else {
            for (size_t r = 0; r < (size_t)t->local[0]; r++)
                fill_normal_run(p + r * lcols + (size_t)s->local_off, key,
                                r * fcols + (size_t)s->full_off, (size_t)s->count, std);
        }
    }
}

/* 1 if s ends with suffix. */
static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* DESIGN.md init by tensor kind: biases 0, LayerNorm weights 1, c_proj
 * weights N(0, 0.02/sqrt(2 n_layer)), other weights N(0, 0.02). Gradients
 * are left alone. */
void gpt2_shard_init_random(gpt2_shard *sh, uint64_t seed)
{
    for (int ti = 0; ti < sh->n_tensors; ti++) {
        const gpt2_tensor *t = &sh->tensors[ti];
        float *p = sh->params + t->offset;
        if (ends_with(t->name, "/bias")) {
            memset(p, 0, t->numel * sizeof(float));
            continue;
        }
        if (strstr(t->name, "/ln_") != NULL) {
            for (size_t i = 0; i < t->numel; i++)
                p[i] = 1.0f;
            continue;
        }
        double std = 0.02;
        if (ends_with(t->name, "c_proj/weight"))
            std = 0.02 / sqrt(2.0 * sh->cfg.n_layer);
        fill_normal_tensor(p, t, sm_mix(seed ^ sm_mix(fnv1a64(t->name))), (float)std);
    }
}

/* et_pool part: zero grads [b, e). */
static void zero_part(void *ctx, size_t b, size_t e, int part)
{
    (void)part;
    memset((float *)ctx + b, 0, (e - b) * sizeof(float));
}

/* Zeroes every gradient (eagerly), on the threads OpenBLAS may use: one
 * core alone cannot write memory as fast as two (500 MB for GPT-2 124M). */
void gpt2_shard_zero_grad(gpt2_shard *sh)
{
    if (!sh->grads_zero)
        et_pool_run(sh->n_params, (size_t)1 << 14, zero_part, sh->grads);
    sh->grads_zero = 1;
    sh->grad_overwrite = 0;
}

/* Marks the gradients as zero; the next backward overwrites them. */
void gpt2_shard_discard_grad(gpt2_shard *sh)
{
    sh->grad_overwrite = 1;
}

/* Range check of token ids with a message naming the first offender. */
int gpt2_tokens_check(const gpt2_config *c, const int *tok, size_t n, const char *what,
                      et_err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (tok[i] < 0 || tok[i] >= c->vocab_size)
            return et_errf(e, ET_EINPUT,
                           "%s: token %d at position %zu is outside the vocabulary [0, %d) "
                           "(was the data prepared with another tokenizer?)",
                           what, tok[i], i, c->vocab_size);
    }
    return 0;
}

/* ------------------------------------------------------------- activations */

/*
 * What a micro-batch keeps for backward (N = B*T rows):
 *   res     [nb+1][N,C]   residual stream entering each block, and the output
 *   x2      [nb][N,C]     residual stream after each attention
 *   ln1/ln2 mean, rstd [nb][N]
 *   qkv     [nb][N,3Cl]   attention inputs
 *   atty    [nb][N,Cl]    attention output (before c_proj)
 *   att_st  [nb][B,nh,T,2] per-row softmax max and 1/sum
 *   fcpre   [nb][N,Fl]    MLP pre-activation
 *   head: lnf mean/rstd [N], logits [N,V], lse [N], targets [N]
 *   embed: tokens [N]
 * LayerNorm outputs, GELU outputs and attention probabilities are recomputed
 * in backward (cheap), which keeps the per-layer memory at about
 * (2C + 4Cl + Fl) floats per token instead of adding 2C + Fl + nh*T more.
 * Scratch shared by all layers: lnbuf, part, dres [N,C]; gbuf, dfc [N,Fl];
 * dqkv [N,3Cl]; dy [N,Cl]; att [att_parts*2*T*T]; stat [2N]. att_parts: the
 * threads attention may use (et_pool_threads() when the buffers were made,
 * at most one per (b, h) pair).
 */
struct gpt2_acts {
    int B, T, N, nb, C, Cl, Fl, nh, hs, V;
    int has_embed, has_head;
    int att_parts; /* attention scratch slots */
    int valid;     /* last forward succeeded */
    float loss;
    long correct;
    float *mem;
    float *res, *x2, *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *qkv, *atty, *att_st, *fcpre;
    float *lnf_mean, *lnf_rstd, *logits, *lse;
    int *targets, *tokens;
    float *lnbuf, *part, *dres, *gbuf, *dfc, *dqkv, *dy, *att, *stat;
};

/* Rounds a float count up to a whole 64-byte line. */
static size_t pad16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Lays the buffers of `a` out in `base` (NULL: only count). Returns the
 * total float count. Ints are stored in float-sized slots. */
static size_t acts_layout(gpt2_acts *a, float *base)
{
    size_t N = (size_t)a->N, C = (size_t)a->C, nb = (size_t)a->nb;
    size_t at = 0;
#define TAKE(ptr, count)                                        \
    do {                                                        \
        size_t n_ = (count);                                    \
        if (base)                                               \
            (ptr) = n_ ? base + at : NULL;                      \
        at += pad16(n_);                                        \
    } while (0)
    float *tg = NULL, *tk = NULL;
    TAKE(a->res, (nb + 1) * N * C);
    TAKE(a->x2, nb * N * C);
    TAKE(a->ln1_mean, nb * N);
    TAKE(a->ln1_rstd, nb * N);
    TAKE(a->ln2_mean, nb * N);
    TAKE(a->ln2_rstd, nb * N);
    TAKE(a->qkv, nb * N * 3 * (size_t)a->Cl);
    TAKE(a->atty, nb * N * (size_t)a->Cl);
    TAKE(a->att_st, nb * N * (size_t)a->nh * 2);
    TAKE(a->fcpre, nb * N * (size_t)a->Fl);
    TAKE(a->lnf_mean, a->has_head ? N : 0);
    TAKE(a->lnf_rstd, a->has_head ? N : 0);
    TAKE(a->logits, a->has_head ? N * (size_t)a->V : 0);
    TAKE(a->lse, a->has_head ? N : 0);
    TAKE(tg, a->has_head ? N : 0);
    TAKE(tk, a->has_embed ? N : 0);
    TAKE(a->lnbuf, N * C);
    TAKE(a->part, N * C);
    TAKE(a->dres, N * C);
    TAKE(a->gbuf, nb ? N * (size_t)a->Fl : 0);
    TAKE(a->dfc, nb ? N * (size_t)a->Fl : 0);
    TAKE(a->dqkv, nb ? N * 3 * (size_t)a->Cl : 0);
    TAKE(a->dy, nb ? N * (size_t)a->Cl : 0);
    TAKE(a->att, nb ? (size_t)a->att_parts * 2 * (size_t)a->T * (size_t)a->T : 0);
    TAKE(a->stat, 2 * N);
#undef TAKE
    if (base) {
        a->targets = (int *)tg;
        a->tokens = (int *)tk;
    }
    return at;
}

/* Fills the shape fields of `a` from the shard and (B, T); -1 if invalid. */
static int acts_shape(gpt2_acts *a, const gpt2_shard *sh, int B, int T)
{
    if (B < 1 || T < 1 || T > sh->cfg.block_size || (long)B * T > (1L << 30))
        return -1;
    memset(a, 0, sizeof *a);
    a->B = B;
    a->T = T;
    a->N = B * T;
    a->nb = sh->n_blocks;
    a->C = sh->cfg.n_embd;
    a->Cl = sh->c_local;
    a->Fl = sh->f_local;
    a->nh = sh->nh_local;
    a->hs = sh->cfg.n_embd / sh->cfg.n_head;
    a->V = sh->cfg.vocab_size;
    a->has_embed = sh->spec.has_embed != 0;
    a->has_head = sh->spec.has_head != 0;
    long pairs = (long)B * (a->nh > 0 ? a->nh : 1);
    a->att_parts = et_pool_threads() < pairs ? et_pool_threads() : (int)pairs;
    return 0;
}

/* One aligned allocation holding every buffer; the caller owns the result. */
gpt2_acts *gpt2_acts_new(const gpt2_shard *sh, int B, int T)
{
    gpt2_acts shape;
    if (acts_shape(&shape, sh, B, T) < 0)
        return NULL;
    gpt2_acts *a = et_xmalloc(sizeof *a);
    *a = shape;
    size_t n = acts_layout(a, NULL);
    a->mem = et_amalloc(n * sizeof(float));
    memset(a->mem, 0, n * sizeof(float));
    acts_layout(a, a->mem);
    return a;
}

/* The byte count gpt2_acts_new would allocate (0 for an invalid shape). */
size_t gpt2_acts_bytes(const gpt2_shard *sh, int B, int T)
{
    gpt2_acts shape;
    if (acts_shape(&shape, sh, B, T) < 0)
        return 0;
    return acts_layout(&shape, NULL) * sizeof(float) + sizeof shape;
}

/* Frees the activations; NULL is fine. */
void gpt2_acts_free(gpt2_acts *a)
{
    if (!a)
        return;
    et_afree(a->mem);
    free(a);
}

/* The last residual stream: the stage's output (views into a). */
float *gpt2_acts_out(gpt2_acts *a)
{
    return a->res + (size_t)a->nb * a->N * a->C;
}

/* The input gradient left by backward (NULL for an embedding stage). */
float *gpt2_acts_dinp(gpt2_acts *a)
{
    return a->has_embed ? NULL : a->dres;
}

/* Mean loss of the last forward (NAN after a failed one). */
float gpt2_acts_loss(const gpt2_acts *a)
{
    return a->loss;
}

/* Argmax hits of the last forward. */
long gpt2_acts_correct(const gpt2_acts *a)
{
    return a->correct;
}

/* The logits buffer (gradient after backward); NULL without a head. */
float *gpt2_acts_logits(gpt2_acts *a)
{
    return a->logits;
}

/* ------------------------------------------------------- forward, backward */

/* The TP sum, skipped when there is no group. */
static void tp_sum(const gpt2_shard *sh, const gpt2_tp *tp, float *buf, size_t n)
{
    if (tp && tp->allreduce && sh->spec.tp_size > 1)
        tp->allreduce(tp->ctx, buf, n);
}

/* 1 if the acts were sized for a shard of this shape. */
static int acts_match(const gpt2_shard *sh, const gpt2_acts *a)
{
    return a->nb == sh->n_blocks && a->C == sh->cfg.n_embd && a->Cl == sh->c_local &&
           a->Fl == sh->f_local && a->V == sh->cfg.vocab_size &&
           a->has_embed == (sh->spec.has_embed != 0) && a->has_head == (sh->spec.has_head != 0) &&
           a->T <= sh->cfg.block_size;
}

/* 1 if all n ids lie in [0, V). */
static int ids_ok(const int *id, size_t n, int V)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= id[i] >= 0 && id[i] < V;
    return ok;
}

/* Block l forward: x_out = x2 + mlp(ln2(x2)), x2 = x_in + attn(ln1(x_in)),
 * with the two row-parallel products summed over the TP group. */
static void block_forward(const gpt2_shard *sh, gpt2_acts *a, int l, const gpt2_tp *tp)
{
    const gpt2_block *p = &sh->blocks[l];
    const int N = a->N, C = a->C, Cl = a->Cl, Fl = a->Fl;
    const size_t NC = (size_t)N * C;
    const float *x_in = a->res + (size_t)l * NC;
    float *x_out = a->res + (size_t)(l + 1) * NC;
    float *x2 = a->x2 + (size_t)l * NC;
    float *qkv = a->qkv + (size_t)l * N * 3 * Cl;
    float *atty = a->atty + (size_t)l * N * Cl;
    float *st = a->att_st + (size_t)l * N * a->nh * 2;
    float *fcpre = a->fcpre + (size_t)l * N * Fl;

    k_layernorm_forward(a->lnbuf, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, x_in,
                        p->ln1_w, p->ln1_b, N, C);
    k_matmul_forward(qkv, a->lnbuf, p->qkv_w, p->qkv_b, N, C, 3 * Cl);
    k_attention_forward(atty, st, a->att, a->att_parts, qkv, a->B, a->T, a->nh, a->hs);
    k_matmul_forward(a->part, atty, p->attproj_w, NULL, N, Cl, C);
    tp_sum(sh, tp, a->part, NC);
    k_residual_forward(x2, x_in, a->part, p->attproj_b, N, C);

    k_layernorm_forward(a->lnbuf, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, x2,
                        p->ln2_w, p->ln2_b, N, C);
    k_matmul_forward(fcpre, a->lnbuf, p->fc_w, p->fc_b, N, C, Fl);
    k_gelu_forward(a->gbuf, fcpre, (size_t)N * Fl);
    k_matmul_forward(a->part, a->gbuf, p->fcproj_w, NULL, N, Fl, C);
    tp_sum(sh, tp, a->part, NC);
    k_residual_forward(x_out, x2, a->part, p->fcproj_b, N, C);
}

/* Forward of the shard: embedding (or the given input), blocks, head and
 * loss. See gpt2.h. */
float gpt2_forward(gpt2_shard *sh, gpt2_acts *a, const int *tokens, const float *x_in,
                   const int *targets, const gpt2_tp *tp)
{
    const int N = a->N, C = a->C;
    const size_t NC = (size_t)N * C;
    a->valid = 0;
    a->correct = 0;
    a->loss = 0.0f;
    if (!acts_match(sh, a))
        goto bad;
    if (a->has_embed) {
        if (!tokens || !ids_ok(tokens, (size_t)N, a->V))
            goto bad;
        memcpy(a->tokens, tokens, (size_t)N * sizeof(int));
        k_encoder_forward(a->res, tokens, sh->wte, sh->wpe, a->B, a->T, C);
    } else {
        if (!x_in)
            goto bad;
        memcpy(a->res, x_in, NC * sizeof(float));
    }
    if (a->has_head) {
        if (!targets || !ids_ok(targets, (size_t)N, a->V))
            goto bad;
        memcpy(a->targets, targets, (size_t)N * sizeof(int));
    }
    for (int l = 0; l < a->nb; l++)
        block_forward(sh, a, l, tp);
    if (a->has_head) {
        k_layernorm_forward(a->lnbuf, a->lnf_mean, a->lnf_rstd, gpt2_acts_out(a), sh->lnf_w,
                            sh->lnf_b, N, C);
        k_matmul_wt_forward(a->logits, a->lnbuf, sh->wte, N, C, a->V);
        long ok = 0;
        double sum = k_crossentropy_forward(a->lse, &ok, a->logits, a->targets, N, a->V);
        a->loss = (float)(sum / N);
        a->correct = ok;
    }
    a->valid = 1;
    return a->loss;
bad:
    if (acts_match(sh, a)) {
        float *out = gpt2_acts_out(a);
        for (size_t i = 0; i < NC; i++)
            out[i] = NAN;
    }
    a->loss = NAN;
    return NAN;
}

/* Block l backward. On entry a->dres holds the gradient of the block's
 * output; on return that of its input. acc_w: accumulate parameter grads. */
static void block_backward(gpt2_shard *sh, gpt2_acts *a, int l, const gpt2_tp *tp, int acc_w)
{
    const gpt2_block *p = &sh->blocks[l];
    gpt2_block *g = &sh->g_blocks[l];
    const int N = a->N, C = a->C, Cl = a->Cl, Fl = a->Fl;
    const size_t NC = (size_t)N * C;
    const float *x_in = a->res + (size_t)l * NC;
    const float *x2 = a->x2 + (size_t)l * NC;
    const float *qkv = a->qkv + (size_t)l * N * 3 * Cl;
    const float *atty = a->atty + (size_t)l * N * Cl;
    const float *st = a->att_st + (size_t)l * N * a->nh * 2;
    const float *fcpre = a->fcpre + (size_t)l * N * Fl;
    float *smean = a->stat, *srstd = a->stat + N;

    /* MLP: x_out = x2 + gelu(ln2(x2) Wfc + bfc) Wproj + bproj */
    k_layernorm_forward(a->lnbuf, smean, srstd, x2, p->ln2_w, p->ln2_b, N, C);
    k_gelu_forward(a->gbuf, fcpre, (size_t)N * Fl);
    k_matmul_backward(a->dfc, g->fcproj_w, g->fcproj_b, a->dres, a->gbuf, p->fcproj_w, N, Fl, C,
                      0, acc_w);
    k_gelu_backward(a->gbuf, fcpre, a->dfc, (size_t)N * Fl, 0);
    k_matmul_backward(a->part, g->fc_w, g->fc_b, a->gbuf, a->lnbuf, p->fc_w, N, C, Fl, 0, acc_w);
    tp_sum(sh, tp, a->part, NC);
    k_layernorm_backward(a->dres, g->ln2_w, g->ln2_b, a->part, x2, p->ln2_w,
                         a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, N, C, acc_w);

    /* attention: x2 = x_in + attn(ln1(x_in)) Wproj + bproj */
    k_matmul_backward(a->dy, g->attproj_w, g->attproj_b, a->dres, atty, p->attproj_w, N, Cl, C, 0,
                      acc_w);
    k_attention_backward(a->dqkv, a->att, a->att_parts, a->dy, qkv, st, a->B, a->T, a->nh, a->hs, 0);
    k_layernorm_forward(a->lnbuf, smean, srstd, x_in, p->ln1_w, p->ln1_b, N, C);
    k_matmul_backward(a->part, g->qkv_w, g->qkv_b, a->dqkv, a->lnbuf, p->qkv_w, N, C, 3 * Cl, 0,
                      acc_w);
    tp_sum(sh, tp, a->part, NC);
    k_layernorm_backward(a->dres, g->ln1_w, g->ln1_b, a->part, x_in, p->ln1_w,
                         a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, N, C, acc_w);
}

/* Backward of the shard: head (or the given output gradient), blocks in
 * reverse, embedding. See gpt2.h. */
void gpt2_backward(gpt2_shard *sh, gpt2_acts *a, const int *tokens, const float *dx_out,
                   float loss_scale, const gpt2_tp *tp)
{
    (void)tokens; /* the embedding uses the validated copy kept by forward */
    const int N = a->N, C = a->C;
    const size_t NC = (size_t)N * C;
    if (!a->valid || !acts_match(sh, a) || (!a->has_head && !dx_out)) {
        for (size_t i = 0; i < NC; i++)
            a->dres[i] = NAN;
        return;
    }
    const int acc_w = !sh->grad_overwrite;
    sh->grads_zero = 0;
    if (a->has_head) {
        /* logits = ln_f(x) wte^T; the logits buffer becomes dlogits in place */
        k_layernorm_forward(a->lnbuf, a->stat, a->stat + N, gpt2_acts_out(a), sh->lnf_w,
                            sh->lnf_b, N, C);
        k_crossentropy_backward(a->logits, a->logits, a->lse, a->targets, loss_scale / (float)N,
                                N, a->V);
        k_matmul_wt_backward(a->part, sh->g_wte, a->logits, a->lnbuf, sh->wte, N, C, a->V, 0,
                             acc_w);
        memset(a->dres, 0, NC * sizeof(float));
        k_layernorm_backward(a->dres, sh->g_lnf_w, sh->g_lnf_b, a->part, gpt2_acts_out(a),
                             sh->lnf_w, a->lnf_mean, a->lnf_rstd, N, C, acc_w);
    } else {
        memcpy(a->dres, dx_out, NC * sizeof(float));
    }
    for (int l = a->nb - 1; l >= 0; l--) {
        block_backward(sh, a, l, tp, acc_w);
        if (tp && tp->grads_ready)
            tp->grads_ready(tp->ctx, l);
    }
    if (a->has_embed) {
        if (!acc_w) {
            memset(sh->g_wpe, 0, (size_t)sh->cfg.block_size * C * sizeof(float));
            if (!a->has_head)
                memset(sh->g_wte, 0, (size_t)a->V * C * sizeof(float));
        }
        k_encoder_backward(sh->g_wte, sh->g_wpe, a->dres, a->tokens, a->B, a->T, C);
    }
    sh->grad_overwrite = 0;
    a->valid = 0;
}
