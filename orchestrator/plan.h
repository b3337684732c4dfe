/*
 * plan — where every part of the model runs (DESIGN.md §3 "Plan file"): R
 * data-parallel replicas of one pipeline of S stages; stage s holds layers
 * [first[s], last[s]] (the same cuts in every replica) on a tensor-parallel
 * group of tp[s] servers (the same degree in every replica, different
 * servers); M micro-batches of micro_batch sequences per replica and step, so
 * global_batch = R * M * micro_batch; a pipeline schedule; the cost model's
 * prediction.
 *
 * MPI ranks: rank 0 is the controller (control plane, on the host of the
 * config's first server); workers are ranks 1..R*W, W = sum of tp[s]:
 *     rank(r, s, i) = 1 + r*W + offset[s] + i      (i = TP index in [0, tp[s]))
 * Who talks to whom:
 *   - TP group of (r,s): the tp[s] ranks (r, s, *), in TP order;
 *   - DP group of (s,i): the R ranks (*, s, i), in replica order (gradient
 *     all-reduce of the stage's parameters);
 *   - activations: (r, s+1, j) receives from (r, s, j mod tp[s]);
 *     gradients:   (r, s, i) receives from (r, s+1, i mod tp[s+1]);
 *     every TP rank holds the full boundary tensor, so each receiver needs one
 *     sender; a sender may have 0, 1 or several receivers;
 *   - tied embedding (S > 1): (r, 0, 0) and (r, S-1, 0) sum their wte
 *     gradients (a 2-member all-reduce), then each broadcasts the sum to its
 *     own TP group.
 * The cost model charges every message between two groups with the slowest
 * link between them (costmodel.h, cm_*_link); a virtual clock that uses the
 * same links reproduces the prediction.
 *
 * File: YAML written by plan_write, read back by plan_load which validates
 * it against a config with "file:line:col: what (hint)" errors.
 */
#ifndef ET_PLAN_H
#define ET_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "../common/et_err.h"
#include "../topology/config.h"

/* Prediction for one stage of one replica; the three parts add up to the
 * step time (each stage's view of the same step). */
typedef struct plan_stage_pred {
    double fwd_s, bwd_s;       /* one micro-batch, TP all-reduces included */
    double compute_s;          /* FWD/BWD arithmetic + optimizer */
    double communication_s;    /* TP all-reduces, waiting on the wire, gradient sync */
    double bubble_s;           /* idle: pipeline fill/drain, waiting for slower stages */
} plan_stage_pred;

typedef struct plan_pred {
    double step_s, compute_s, communication_s, bubble_s;  /* the bottleneck stage's view */
    double pipeline_s;         /* the slowest replica's pipeline makespan */
    double sync_s;             /* after it: embedding/DP gradient exchange, norm, optimizer */
    int bottleneck_replica, bottleneck_stage;
    char bottleneck[400];      /* what limits the step and why, one line */
} plan_pred;

typedef struct et_plan {
    int n_replicas;            /* R */
    int n_stages;              /* S */
    int width;                 /* W = sum of tp: workers per replica */
    int *first, *last;         /* [S] layer range of each stage, inclusive */
    int *tp;                   /* [S] tensor-parallel degree */
    int *offset;               /* [S] sum of tp of the earlier stages */
    int *server;               /* [R*W] cluster server index of every worker, rank order */
    int schedule;              /* ET_SCHED_GPIPE or ET_SCHED_1F1B */
    int micro_batch;           /* sequences per micro-batch */
    int micro_batches;         /* M, per replica and step */
    int n_cluster;             /* servers in the cluster the indices refer to */
    uint64_t *memory;          /* [n_cluster] predicted bytes needed, 0 for unused servers */
    int fits;                  /* every worker's need <= its server's memory */
    plan_pred pred;
    plan_stage_pred *stage_pred;   /* [R*S], replica-major */
} et_plan;

/* A plan with R replicas of S stages of the given TP degrees over a cluster
 * of n_cluster servers; layers, servers, schedule and batch fields zeroed
 * (servers -1). Caller frees with plan_free. NULL if R, S < 1 or a tp < 1. */
et_plan *plan_new(int R, int S, const int *tp, int n_cluster);
void plan_free(et_plan *p);
et_plan *plan_clone(const et_plan *p);

/* Server of (replica r, stage s, TP index i), and a pointer to the tp[s]
 * servers of (r, s) (writable: how planners fill a plan). */
int plan_server(const et_plan *p, int r, int s, int i);
int *plan_group(et_plan *p, int r, int s);
const int *plan_group_c(const et_plan *p, int r, int s);

/* Ranks: 1 + R*W of them; rank(r,s,i) as above. */
int plan_n_workers(const et_plan *p);
int plan_n_ranks(const et_plan *p);
int plan_rank(const et_plan *p, int r, int s, int i);

/* The role of an MPI rank. */
typedef struct plan_role {
    int replica, stage, tp_index, tp;
    int server;                /* cluster index */
    int layer_first, layer_last;
    int has_embed, has_head;   /* stage 0 / stage S-1 */
} plan_role;

/* Fill *out for worker rank (1..R*W). Returns 0, or -1 for rank 0 (the
 * controller) and ranks out of range. */
int plan_rank_role(const et_plan *p, int rank, plan_role *out);

/* Group membership as rank lists written to out (capacity: tp of the stage,
 * R, ...). Each returns the count, or -1 if rank is not a worker. */
int plan_tp_group(const et_plan *p, int rank, int *out);    /* same replica and stage, TP order */
int plan_dp_group(const et_plan *p, int rank, int *out);    /* same stage and TP index, replica order */
int plan_act_dsts(const et_plan *p, int rank, int *out);    /* where its activations go (next stage) */
int plan_grad_dsts(const et_plan *p, int rank, int *out);   /* where its input gradients go (previous stage) */
/* The one rank it receives activations from (-1 on the first stage) and
 * gradients from (-1 on the last stage); -1 for non-workers too. */
int plan_act_src(const et_plan *p, int rank);
int plan_grad_src(const et_plan *p, int rank);
/* Its partner in the tied-embedding exchange, or -1 (S == 1, or not TP
 * index 0 of the first or last stage). */
int plan_embed_peer(const et_plan *p, int rank);

/* Write the plan as YAML to path (atomically: a temporary file renamed over
 * it). cfg gives server names and hosts, config_path is recorded for the
 * reader. 0, or -1 with e set (ET_ERUNTIME) on I/O failure. */
int plan_write(const et_plan *p, const et_config *cfg, const char *path, et_err *e);
/* The same YAML to a stream. */
int plan_write_stream(const et_plan *p, const et_config *cfg, FILE *f);

/*
 * Read a plan file and validate it against cfg: known keys only; schedule
 * gpipe|1f1b; every replica's stages cover layers 0..n_layer-1 contiguously;
 * the same cuts and TP degrees in every replica; servers exist in the config
 * and appear once in the whole plan; TP degree divides n_head and 4*n_embd;
 * global_batch = replicas * micro_batches * micro_batch; a `ranks:` list, if
 * present, matches the mapping above; a `model:` mapping, if present, matches
 * the config's model. Errors "file:line:col: what (hint)", ET_EINPUT.
 * Returns a plan the caller frees, or NULL.
 */
et_plan *plan_load(const char *path, const et_config *cfg, et_err *e);

#endif
