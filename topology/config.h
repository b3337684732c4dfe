/*
 * config — the one YAML file a user writes (DESIGN.md §3 "Config YAML"):
 * cluster (servers, links), model, training, parallel, emulation. Loaded with
 * libyaml, `include:` followed, every value validated; errors are
 * "file:line:col: what is wrong (hint)" in an et_err with code ET_EINPUT.
 */
#ifndef ET_CONFIG_H
#define ET_CONFIG_H

#include <stdint.h>

#include "../common/et_err.h"
#include "../model/gpt2.h"

#define ET_NAME_MAX 64
#define ET_PATH_MAX 1024

typedef struct et_server {
    char name[ET_NAME_MAX];
    char host[256];        /* default "localhost" */
    double gflops;         /* sustained fp32 training throughput, GFLOP/s, > 0 */
    uint64_t memory;       /* bytes the worker may use, > 0 */
    int slots;             /* MPI slots on this host, default 1 */
    int line, col;         /* where it was defined (for later errors) */
} et_server;

typedef struct et_link {
    double bandwidth;      /* bytes per second, > 0 (config says bits: "1Gbps" = 1.25e8 B/s) */
    double latency;        /* seconds, >= 0 */
} et_link;

typedef struct et_cluster {
    int n_servers;
    et_server *servers;
    et_link default_link;
    et_link *link;         /* n_servers x n_servers, row-major, symmetric; diagonal unused (see et_cluster_link) */
} et_cluster;

/* Link between servers a and b (indices). a == b gives the in-host link:
 * bandwidth INFINITY, latency 0. */
et_link et_cluster_link(const et_cluster *c, int a, int b);
/* Index of a server by name, or -1. */
int et_cluster_find(const et_cluster *c, const char *name);
/* The slowest link among the n servers idx[0..n-1] (indices, repeats allowed):
 * the minimum bandwidth and the maximum latency over every pair of distinct
 * servers (the two may come from different links: a conservative bound, what a
 * ring all-reduce over the set is limited by). Fewer than two distinct servers:
 * {INFINITY, 0}. */
et_link et_cluster_slowest(const et_cluster *c, const int *idx, int n);
/* Seconds to move `bytes` over link l: latency + bytes / bandwidth. */
double et_link_time(et_link l, double bytes);
/* Sum of the servers' slots: the number of MPI ranks the cluster can hold. */
int et_cluster_total_slots(const et_cluster *c);

enum { ET_SCHED_AUTO = 0, ET_SCHED_GPIPE = 1, ET_SCHED_1F1B = 2 };
enum { ET_CLOCK_VIRTUAL = 0, ET_CLOCK_WALL = 1 };
enum { ET_SAMPLING_SEQUENTIAL = 0, ET_SAMPLING_RANDOM = 1 };

typedef struct et_training {
    char dataset[ET_PATH_MAX];   /* resolved relative to the config file's directory */
    int seq_len;                 /* default 128; <= block_size */
    int global_batch;            /* default 32 */
    int micro_batch;             /* default = global_batch; must divide global_batch;
                                    0 = auto (the plan's micro_batch is the one used) */
    double lr, min_lr;           /* 6e-4, 0 */
    int warmup_steps;            /* 0 */
    int lr_decay_cosine;         /* lr_decay: cosine|none (default none) */
    double weight_decay;         /* 0 */
    double grad_clip;            /* 1.0 */
    long max_steps;              /* 2000 */
    double target_val_loss;      /* NAN when not set */
    double target_val_accuracy;  /* NAN when not set */
    int eval_every;              /* 50; 0 = only at the end */
    long eval_tokens;            /* 65536 */
    char checkpoint_path[ET_PATH_MAX];  /* "" = no checkpoints */
    int checkpoint_every;        /* 100 */
    uint64_t seed;               /* 1 */
    char init[ET_PATH_MAX];      /* "" or a checkpoint to start from */
    int sampling;                /* ET_SAMPLING_* */
} et_training;

typedef struct et_parallel {
    int schedule;                /* ET_SCHED_*; auto lets the planner choose */
    int pipeline, tensor, data;  /* 0 = auto */
} et_parallel;

typedef struct et_config {
    char path[ET_PATH_MAX];      /* the main file as given */
    char name[ET_NAME_MAX];      /* optional top-level `name:`, else the file's stem */
    et_cluster cluster;
    char model_preset[ET_NAME_MAX];  /* "" if given by numbers */
    gpt2_config model;
    et_training training;
    et_parallel parallel;
    int clock;                   /* ET_CLOCK_* */
} et_config;

/* Load and validate a config file. Returns NULL with e set (ET_EINPUT) on any
 * problem; the caller frees with et_config_free. */
/* The full schema, defaults, include merge rules and limits are documented at
 * the top of topology/config.c. In short:
 *  - include: files merged first, in order; the including file wins.
 *    cluster.servers merge by name and links.pairs by pair; model is replaced
 *    whole; training/parallel/emulation merge key by key.
 *  - every two distinct servers need a link (links.default or a pair; no
 *    built-in bandwidth). Without links.default, cluster.default_link is the
 *    slowest link of the matrix ({INFINITY, 0} for one server).
 *  - training.seq_len defaults to min(128, block_size); micro_batch to
 *    global_batch.
 *  - relative paths resolve against the directory of the file naming them
 *    (not normalised: "a/../b.h5" stays so). */
et_config *et_config_load(const char *path, et_err *e);
void et_config_free(et_config *c);

/* Parse units exactly (used by the loader, exposed for tests and the CLI):
 * bandwidth "10Gbps" "200Mbps" "1.5Gbit/s" "125MB/s" -> bytes/s;
 * size "16GiB" "512MiB" "8GB" "1024" -> bytes; duration "2ms" "150us" "1s" -> s.
 * Return 0, or -1 with *why set to a short reason. */
/* (Exact rules and every accepted unit: the top of topology/units.c. *why is
 * a static string, except for an unknown unit, where it names the unit and
 * the nearest valid one in a per-thread buffer valid until this thread's next
 * et_parse_* call. Zero parses; callers that need > 0 check it.) */
int et_parse_bandwidth(const char *s, double *out, const char **why);
int et_parse_size(const char *s, uint64_t *out, const char **why);
int et_parse_duration(const char *s, double *out, const char **why);

/* The nearest of names (n entries, or NULL-terminated when n < 0) to s,
 * ignoring case, for "did you mean" hints; NULL when nothing is close. */
const char *et_closest_name(const char *s, const char *const *names, int n);

#endif
