/*
 * costmodel — what a plan costs: FLOPs, bytes, memory, and the predicted
 * step time, from the config's server profiles and links. Pure arithmetic
 * plus the schedule simulator (parallel/schedule.h): the pipeline phase is
 * the simulation of the very op lists the workers execute.
 *
 * Notation: B micro_batch, T seq_len, C n_embd, V vocab_size, NH n_head,
 * P block_size (wpe rows), t tensor-parallel degree, N = B*T tokens.
 *
 * FLOPs (matrix multiplications only, 2*m*n*k each; element-wise work,
 * LayerNorm, softmax and GELU are left to the server's sustained `gflops`):
 *   block forward   qkv 6NC^2 + QK^T 2BT^2C + att*V 2BT^2C + attn proj 2NC^2
 *                   + fc 8NC^2 + fc proj 8NC^2     = 24NC^2 + 4BT^2C
 *                   (attention as full T x T products per (batch, head), as the
 *                   model computes them with sgemm)
 *   block backward  2x forward (grad w.r.t. input and w.r.t. weight per matmul)
 *   TP degree t     every block matmul is split t ways (heads, MLP units)
 *   head forward    logits 2NCV;  backward 4NCV (dx and dwte)
 *   embedding       no matmul: 0
 *   time            FLOPs / (gflops * 1e9) of the slowest server of the group
 *
 * Parameters: block 12C^2 + 13C; TP shard of a block (12C^2 + 7C)/t + 6C (the
 * LayerNorms and the two row-parallel biases are replicated); embedding
 * VC + PC; head 2C (ln_f) + VC (the tied wte: a copy on the last stage when
 * S > 1); whole model VC + PC + L(12C^2+13C) + 2C (gpt2: 124,439,808).
 *
 * Memory per server:
 *   16 bytes per local parameter (fp32 weights, gradients, AdamW m and v)
 * + activations of one micro-batch x micro-batches in flight (schedule.h);
 *   per micro-batch, in floats: stage input NC; per block ln1 NC, ln1
 *   mean/rstd 2N, qkv 3N(C/t), attention probabilities B(NH/t)T^2, attention
 *   output N(C/t), residual after attention NC, ln2 NC, ln2 mean/rstd 2N,
 *   fc pre-GELU N(4C/t), post-GELU N(4C/t), residual after MLP NC; head stage
 *   ln_f NC + 2N and the logits/probabilities NV;
 * + workspace: one block's activations (backward scratch), 4 NC floats
 *   (boundary send/receive and residual gradient buffers), NV floats of
 *   logit gradients on the head stage, and 64 MiB of runtime (MPI, BLAS,
 *   code).
 *
 * Communication (links per linkmodel.h; "slowest link" of a set of servers:
 * minimum bandwidth and maximum latency over its pairs):
 *   boundary      4NC bytes per micro-batch each way, over the slowest link
 *                 between the two stages' groups;
 *   TP            two ring all-reduces of 4NC bytes per block forward, two
 *                 backward, over the group's slowest link (inside FWD/BWD);
 *   embedding     S > 1: 2-member all-reduce of 4VC bytes over the slowest
 *                 link between the first and last stage groups, then a
 *                 broadcast in each of the two TP groups;
 *   DP            ring all-reduce of the stage's local parameters x 4 bytes
 *                 over the R replicas, with the slowest link between
 *                 servers of that stage in different replicas;
 *   grad norm     8 bytes, recursive doubling over every worker, slowest
 *                 link among all the plan's servers.
 * Optimizer: memory-bound, 36 bytes per local parameter (zero grad 4, norm 4,
 * AdamW reads p g m v 16 and writes p m v 12) at a memory bandwidth of
 * gflops*1e9 / CM_FLOP_PER_BYTE bytes/s.
 *
 * Step time = max over replicas of the simulated pipeline makespan
 *           + max over stages of (embedding exchange + DP all-reduce)
 *           + grad-norm all-reduce + max over servers of the optimizer;
 * that is, every rank synchronises at the norm; the next step starts when
 * the last optimizer is done (a slight over-estimate when stages' optimizer
 * times differ).
 */
#ifndef ET_COSTMODEL_H
#define ET_COSTMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../model/gpt2.h"
#include "../parallel/linkmodel.h"
#include "../parallel/schedule.h"
#include "../topology/config.h"
#include "plan.h"

/* Sustained FLOPs per byte of memory traffic assumed for every server (the
 * machine balance of GPUs at ~50% of fp32 peak: A100 19.5 TFLOPS peak,
 * ~10 sustained, over 1.5 TB/s ~ 6-8; Jetson Orin 5.3 peak over 205 GB/s). */
#define CM_FLOP_PER_BYTE 8.0
/* Bytes per local parameter of the step's memory-bound work (see above). */
#define CM_OPT_BYTES_PER_PARAM 36.0
/* Fixed runtime memory per worker. */
#define CM_RUNTIME_BYTES ((uint64_t)64 << 20)

/* Everything that depends only on the model and the micro-batch shape. */
typedef struct cm_model {
    gpt2_config g;
    int B, T;                      /* micro_batch, seq_len */
    double block_fwd_flops;        /* one block, t = 1 */
    double block_bwd_flops;
    double head_fwd_flops, head_bwd_flops;
    double boundary_bytes;         /* 4NC: activations (or their gradient) per micro-batch */
    double tp_bytes;               /* 4NC: one TP all-reduce */
    double embed_grad_bytes;       /* 4VC */
} cm_model;

void cm_model_init(cm_model *m, const gpt2_config *g, int micro_batch, int seq_len);

/* Formulas (exposed for tests and the table). */
double cm_block_fwd_flops(const gpt2_config *g, int B, int T);
double cm_block_bwd_flops(const gpt2_config *g, int B, int T);
uint64_t cm_model_params(const gpt2_config *g);                 /* tied head */
uint64_t cm_block_params(const gpt2_config *g);                 /* 12C^2 + 13C */
uint64_t cm_block_params_local(const gpt2_config *g, int tp);   /* (12C^2 + 7C)/t + 6C */
/* Local parameters of a stage of n_layers blocks with/without embedding and
 * head, TP degree tp, in a pipeline of S stages (S == 1: one wte). */
uint64_t cm_stage_params(const cm_model *m, int n_layers, int embed, int head, int tp, int S);
/* Activation bytes of one micro-batch kept by one block / by the head. */
uint64_t cm_block_act_bytes(const cm_model *m, int tp);
uint64_t cm_head_act_bytes(const cm_model *m);
/* Bytes one worker of such a stage needs with `in_flight` micro-batches alive. */
uint64_t cm_stage_memory(const cm_model *m, int n_layers, int embed, int head, int tp, int S,
                         int in_flight);

/* A tensor-parallel group as the cost model sees it. */
typedef struct cm_group {
    int tp;
    double gflops;         /* slowest member */
    double mem_bw;         /* its memory bandwidth, bytes/s */
    lm_link tp_link;       /* slowest link inside the group (ideal for tp 1) */
} cm_group;

/* Per-micro-batch costs of a stage on a group. */
typedef struct cm_stage_cost {
    double fwd_compute_s, bwd_compute_s;   /* arithmetic */
    double fwd_tp_s, bwd_tp_s;             /* TP all-reduces */
    double opt_s;                          /* memory-bound optimizer work, once per step */
    uint64_t params;                       /* local parameters per worker */
} cm_stage_cost;

void cm_stage_cost_eval(const cm_model *m, int n_layers, int embed, int head, int S,
                        const cm_group *g, cm_stage_cost *out);

/* Memory bandwidth derived from a server's gflops. */
double cm_mem_bw(double gflops);
/* lm_link from the config's et_link. */
lm_link cm_link(et_link l);

/* The links the cost model charges (see the header comment). */
lm_link cm_set_link(const et_cluster *c, const int *a, int na, const int *b, int nb);
lm_link cm_tp_link(const et_plan *p, const et_cluster *c, int r, int s);
lm_link cm_boundary_link(const et_plan *p, const et_cluster *c, int r, int s);  /* s <-> s+1 */
lm_link cm_embed_link(const et_plan *p, const et_cluster *c, int r);
lm_link cm_dp_link(const et_plan *p, const et_cluster *c, int s);
lm_link cm_all_link(const et_plan *p, const et_cluster *c);

/* Human units for a link rate ("10 Gbps", "200 Mbps", "in-server"), and the
 * names "a+b+c" of group (r, s), truncated to fit n bytes. */
void cm_fmt_rate(char *buf, size_t n, double bytes_per_s);
void cm_group_names(const et_plan *p, const et_cluster *c, int r, int s, char *buf, size_t n);

/* The group (r, s) of a plan as a cm_group. */
void cm_plan_group(const et_plan *p, const et_cluster *c, int r, int s, cm_group *out);

/*
 * Evaluate a complete plan (layers, TP degrees, servers, schedule,
 * micro_batch, micro_batches set): fills p->memory, p->fits, p->pred and
 * p->stage_pred. Returns the predicted step time in seconds (also when the
 * plan does not fit: check p->fits). m must be initialised with the plan's
 * micro_batch. Allocates scratch and frees it.
 */
double cm_evaluate(const cm_model *m, const et_cluster *c, et_plan *p);

/* Only the step time (no breakdown, no memory), reusing a program built for
 * (p->schedule, S, M): what the exhaustive search calls in its inner loop. */
double cm_step_time(const cm_model *m, const et_cluster *c, const et_plan *p, sched_program *prog);

#endif
