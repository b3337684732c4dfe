/*
 * gpt2 — single-device GPT-2 math: configuration, parameter layout, forward,
 * backward. Knows nothing of MPI. A *shard* is the unit of work: a contiguous
 * range of transformer blocks (a pipeline stage), optionally the embeddings
 * (first stage) and the final LayerNorm + tied LM head (last stage), and a
 * tensor-parallel slice of every block (rank r of tp_size owns heads
 * [r*nh/tp, (r+1)*nh/tp) and MLP units [r*4C/tp, (r+1)*4C/tp)). The whole model
 * on one device is the shard {0, n_layer-1, embed, head, tp 0 of 1}.
 *
 * Tensor parallelism is Megatron's: c_attn and c_fc are column-parallel,
 * attn.c_proj and mlp.c_proj row-parallel. The shard calls tp->allreduce (a
 * callback; the caller supplies the MPI) once after each row-parallel matmul in
 * forward, and once on the gradient of each LayerNorm output in backward.
 * Row-parallel biases and LayerNorms are replicated on every TP rank and get
 * identical gradients there.
 *
 * Layouts (row-major, Hugging Face Conv1D "in x out" for weights):
 *   wte [V,C], wpe [T,C], c_attn.weight [C,3C] (q|k|v columns), c_attn.bias [3C],
 *   attn.c_proj.weight [C,C], c_fc.weight [C,4C], mlp.c_proj.weight [4C,C].
 * A TP shard stores its slice contiguously: c_attn local [C, 3*Cl] with its q,
 * k and v columns side by side, attn.c_proj local [Cl, C], c_fc local [C, Fl],
 * mlp.c_proj local [Fl, C] (Cl = local heads * head size, Fl = 4C/tp).
 */
#ifndef GPT2_H
#define GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et_err.h"

typedef struct gpt2_config {
    int n_layer;
    int n_head;
    int n_embd;       /* C */
    int vocab_size;   /* V */
    int block_size;   /* max sequence length (wpe rows) */
} gpt2_config;

/* Fill *c from a preset name: "gpt2" (124M), "gpt2-medium", "gpt2-large",
 * "gpt2-xl", and small ones for tests and the demo: "gpt2-tiny" (L2 C64 H4 V256
 * T64), "gpt2-mini" (L4 C128 H4 V256 T128), "gpt2-small-demo" (L6 C192 H6 V256 T128).
 * Returns 0, or -1 if the name is unknown. */
int gpt2_config_preset(const char *name, gpt2_config *c);
/* Names of all presets, NULL-terminated (for error hints). */
extern const char *const gpt2_preset_names[];
/* Validate a config (positive sizes, n_embd % n_head == 0). 0 or -1 with e set. */
int gpt2_config_check(const gpt2_config *c, et_err *e);
/* Parameters of the whole model with the tied head (gpt2: 124,439,808). */
size_t gpt2_config_num_params(const gpt2_config *c);

typedef struct gpt2_shard_spec {
    int layer_first, layer_last;   /* inclusive; layer_last < layer_first: no blocks */
    int has_embed;                 /* owns wte+wpe, runs the embedding */
    int has_head;                  /* owns ln_f and (tied) wte, runs head + loss */
    int tp_rank, tp_size;          /* tp_size must divide n_head and 4*n_embd */
} gpt2_shard_spec;

/* How a local tensor maps onto the full (checkpoint) tensor: nslab contiguous
 * runs along dimension `dim` (0 rows, 1 columns; 1-D tensors use dim 0).
 * nslab == 0 means the local tensor is the whole tensor. */
typedef struct gpt2_slab {
    int dim;
    long full_off, local_off, count;
} gpt2_slab;

typedef struct gpt2_tensor {
    char name[96];      /* Hugging Face name with '/', e.g. "transformer/h/3/attn/c_attn/weight" */
    int ndim;           /* 1 or 2 */
    long full[2];       /* full shape */
    long local[2];      /* local shape (what param/grad hold, contiguous, row-major) */
    size_t offset;      /* offset of this tensor in the shard's params/grads buffers */
    size_t numel;       /* local element count */
    int nslab;
    gpt2_slab slab[3];
    int sharded;        /* 1: TP ranks hold different parts; 0: replicated on every TP rank */
    int decay;          /* weight decay applies (2-D tensors: wte, wpe, weights) */
} gpt2_tensor;

/* Views into the parameter (or gradient) buffer for one block. */
typedef struct gpt2_block {
    float *ln1_w, *ln1_b;        /* [C] */
    float *qkv_w, *qkv_b;        /* [C,3Cl], [3Cl] */
    float *attproj_w;            /* [Cl,C] */
    float *attproj_b;            /* [C] (replicated) */
    float *ln2_w, *ln2_b;        /* [C] */
    float *fc_w, *fc_b;          /* [C,Fl], [Fl] */
    float *fcproj_w;             /* [Fl,C] */
    float *fcproj_b;             /* [C] (replicated) */
} gpt2_block;

typedef struct gpt2_shard {
    gpt2_config cfg;
    gpt2_shard_spec spec;
    int n_blocks;        /* layer_last - layer_first + 1, or 0 */
    int nh_local;        /* heads owned */
    int c_local;         /* nh_local * head size */
    int f_local;         /* MLP units owned */
    size_t n_params;     /* local floats */
    float *params;       /* one contiguous buffer, 64-byte aligned */
    float *grads;        /* same layout; backward accumulates (+=) into it */
    /* views (NULL where not owned) */
    float *wte, *wpe, *lnf_w, *lnf_b;
    float *g_wte, *g_wpe, *g_lnf_w, *g_lnf_b;
    gpt2_block *blocks, *g_blocks;   /* n_blocks each */
    gpt2_tensor *tensors;            /* n_tensors descriptors, in a fixed order */
    int n_tensors;
    /* 1 after gpt2_shard_discard_grad: the next gpt2_backward writes the
     * parameter gradients instead of adding to them. */
    int grad_overwrite;
    /* 1 while every gradient is known to be 0: set by optim_step (which
     * consumes the gradients, leaving zeros) and gpt2_shard_zero_grad,
     * cleared by gpt2_backward. gpt2_shard_zero_grad then has nothing to
     * write (GPT-2 124M: 500 MB a step). Code that writes sh->grads itself
     * must set it to 0. */
    int grads_zero;
} gpt2_shard;

/* Allocate a shard (params and grads zeroed). NULL with e set if the spec is
 * inconsistent with the config (layer range, tp not dividing heads, ...). */
gpt2_shard *gpt2_shard_new(const gpt2_config *c, const gpt2_shard_spec *s, et_err *e);
void gpt2_shard_free(gpt2_shard *sh);
/* Look up a local tensor by its full name; NULL if this shard does not hold it. */
gpt2_tensor *gpt2_shard_tensor(gpt2_shard *sh, const char *name);

/* DESIGN.md init: normal(0,0.02) weights, c_proj weights * 1/sqrt(2*n_layer),
 * zero biases, unit LayerNorm weights. Element i of every full tensor is a pure
 * function of (seed, tensor name, i), so every plan draws the same model. */
void gpt2_shard_init_random(gpt2_shard *sh, uint64_t seed);
/* Every gradient 0 (a no-op when sh->grads_zero says they already are). */
void gpt2_shard_zero_grad(gpt2_shard *sh);
/* The cheap alternative to zero_grad for a training step: marks the gradients
 * as zero without touching memory (4 bytes per parameter not written). The
 * next gpt2_backward writes the gradients instead of accumulating, and later
 * ones accumulate as usual. Until that backward the content of sh->grads is
 * unspecified; optim_grad_sqsum and optim_step treat it as zero. */
void gpt2_shard_discard_grad(gpt2_shard *sh);

/* Index in the full (checkpoint) tensor, row-major, of element local_i of
 * the local tensor t (through its slabs). */
size_t gpt2_tensor_full_index(const gpt2_tensor *t, size_t local_i);

/* Check that n tokens all lie in [0, vocab_size): 0, or -1 with e set
 * ("what: token 70000 at position 12 is outside the vocabulary [0, 50257)"). */
int gpt2_tokens_check(const gpt2_config *c, const int *tok, size_t n, const char *what,
                      et_err *e);

/* Tensor-parallel reduction supplied by the caller (sum over the TP group, in
 * place). NULL or tp_size 1: no reduction. */
typedef struct gpt2_tp {
    void (*allreduce)(void *ctx, float *buf, size_t n);
    void *ctx;
    /* Optional (may be NULL): called by gpt2_backward right after local block
     * `block` (0-based within the shard) has added its last contribution to
     * the block's gradients, so a caller can start reducing them while the
     * remaining blocks run (data-parallel bucketing). */
    void (*grads_ready)(void *ctx, int block);
} gpt2_tp;

/* Activations of one micro-batch through one shard, kept for backward.
 * Allocated once; forward/backward never allocate. gpt2_acts_new returns
 * NULL if B < 1, T < 1 or T > block_size. An acts object belongs to the shard
 * it was made for (or one with the same spec). */
typedef struct gpt2_acts gpt2_acts;
gpt2_acts *gpt2_acts_new(const gpt2_shard *sh, int B, int T);
/* Bytes the activations of gpt2_acts_new(sh, B, T) take (for memory plans). */
size_t gpt2_acts_bytes(const gpt2_shard *sh, int B, int T);
/* Logits [B*T, V] of a head shard after forward (NULL for other shards).
 * Valid until the next backward, which turns them into their gradient. */
float *gpt2_acts_logits(gpt2_acts *a);
void gpt2_acts_free(gpt2_acts *a);
/* The stage's output residual stream [B,T,C] after forward (for the next stage). */
float *gpt2_acts_out(gpt2_acts *a);
/* The gradient w.r.t. the stage's input residual stream [B,T,C] after backward
 * (for the previous stage); NULL for a shard with the embedding. */
float *gpt2_acts_dinp(gpt2_acts *a);
/* After forward of a head shard: mean loss over the B*T tokens, and how many of
 * them the argmax of the logits predicted correctly. */
float gpt2_acts_loss(const gpt2_acts *a);
long gpt2_acts_correct(const gpt2_acts *a);

/* Forward one micro-batch. Input: tokens [B*T] if has_embed, else x_in [B*T*C].
 * targets [B*T] required if has_head (else ignored). Returns the mean loss for a
 * head shard, 0 otherwise. A token or target outside [0, V), or a missing
 * input, gives NAN (and a NAN output stream) rather than a crash; check the
 * data with gpt2_tokens_check for a proper message. */
float gpt2_forward(gpt2_shard *sh, gpt2_acts *a, const int *tokens, const float *x_in,
                   const int *targets, const gpt2_tp *tp);

/* Backward of the micro-batch last forwarded through `a`, accumulating into
 * sh->grads. A head shard starts from dloss = loss_scale (each token's loss
 * gets loss_scale/(B*T)); other shards start from dx_out [B*T*C]. Leaves the
 * gradient of the input in gpt2_acts_dinp(a) unless has_embed. The embedding
 * uses the copy of the tokens kept by forward (`tokens` may be NULL). One
 * backward per forward (it turns the logits into their gradient in place);
 * after a failed forward (NAN loss), or a second backward, the gradients are
 * left alone and dinp is NAN. */
void gpt2_backward(gpt2_shard *sh, gpt2_acts *a, const int *tokens, const float *dx_out,
                   float loss_scale, const gpt2_tp *tp);

#endif
