/*
 * plan — the plan struct, rank and group lookups, the YAML file (written with
 * careful fprintf, read with libyaml's document API and validated against
 * the config with file:line:col errors).
 */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

/* ------------------------------------------------------------ struct */

/* All arrays sized from R, S and tp; layers 0, servers -1. */
et_plan *plan_new(int R, int S, const int *tp, int n_cluster)
{
    if (R < 1 || S < 1 || tp == NULL || n_cluster < 0)
        return NULL;
    for (int s = 0; s < S; s++)
        if (tp[s] < 1)
            return NULL;
    et_plan *p = et_xcalloc(1, sizeof *p);
    p->n_replicas = R;
    p->n_stages = S;
    p->first = et_xcalloc((size_t)S, sizeof(int));
    p->last = et_xcalloc((size_t)S, sizeof(int));
    p->tp = et_xcalloc((size_t)S, sizeof(int));
    p->offset = et_xcalloc((size_t)S, sizeof(int));
    for (int s = 0; s < S; s++) {
        p->tp[s] = tp[s];
        p->offset[s] = p->width;
        p->width += tp[s];
    }
    p->server = et_xmalloc((size_t)(R * p->width) * sizeof(int));
    for (int i = 0; i < R * p->width; i++)
        p->server[i] = -1;
    p->n_cluster = n_cluster;
    p->memory = et_xcalloc((size_t)(n_cluster > 0 ? n_cluster : 1), sizeof(uint64_t));
    p->stage_pred = et_xcalloc((size_t)(R * S), sizeof(plan_stage_pred));
    p->pred.bottleneck_replica = p->pred.bottleneck_stage = 0;
    return p;
}

void plan_free(et_plan *p)
{
    if (p == NULL)
        return;
    free(p->first);
    free(p->last);
    free(p->tp);
    free(p->offset);
    free(p->server);
    free(p->memory);
    free(p->stage_pred);
    free(p);
}

/* Deep copy. */
et_plan *plan_clone(const et_plan *p)
{
    et_plan *q = plan_new(p->n_replicas, p->n_stages, p->tp, p->n_cluster);
    int S = p->n_stages, R = p->n_replicas;
    memcpy(q->first, p->first, (size_t)S * sizeof(int));
    memcpy(q->last, p->last, (size_t)S * sizeof(int));
    memcpy(q->server, p->server, (size_t)(R * p->width) * sizeof(int));
    memcpy(q->memory, p->memory, (size_t)(p->n_cluster > 0 ? p->n_cluster : 1) * sizeof(uint64_t));
    memcpy(q->stage_pred, p->stage_pred, (size_t)(R * S) * sizeof(plan_stage_pred));
    q->schedule = p->schedule;
    q->micro_batch = p->micro_batch;
    q->micro_batches = p->micro_batches;
    q->fits = p->fits;
    q->pred = p->pred;
    return q;
}

int plan_server(const et_plan *p, int r, int s, int i)
{
    return p->server[r * p->width + p->offset[s] + i];
}

int *plan_group(et_plan *p, int r, int s)
{
    return p->server + r * p->width + p->offset[s];
}

const int *plan_group_c(const et_plan *p, int r, int s)
{
    return p->server + r * p->width + p->offset[s];
}

/* ------------------------------------------------------------ ranks */

int plan_n_workers(const et_plan *p)
{
    return p->n_replicas * p->width;
}

int plan_n_ranks(const et_plan *p)
{
    return 1 + plan_n_workers(p);
}

int plan_rank(const et_plan *p, int r, int s, int i)
{
    return 1 + r * p->width + p->offset[s] + i;
}

/* Invert rank = 1 + r*W + offset[s] + i. */
int plan_rank_role(const et_plan *p, int rank, plan_role *out)
{
    if (rank < 1 || rank > plan_n_workers(p))
        return -1;
    int k = rank - 1, r = k / p->width, w = k % p->width, s = 0;
    while (s + 1 < p->n_stages && p->offset[s + 1] <= w)
        s++;
    out->replica = r;
    out->stage = s;
    out->tp_index = w - p->offset[s];
    out->tp = p->tp[s];
    out->server = p->server[k];
    out->layer_first = p->first[s];
    out->layer_last = p->last[s];
    out->has_embed = s == 0;
    out->has_head = s == p->n_stages - 1;
    return 0;
}

int plan_tp_group(const et_plan *p, int rank, int *out)
{
    plan_role ro;
    if (plan_rank_role(p, rank, &ro) < 0)
        return -1;
    for (int i = 0; i < ro.tp; i++)
        out[i] = plan_rank(p, ro.replica, ro.stage, i);
    return ro.tp;
}

int plan_dp_group(const et_plan *p, int rank, int *out)
{
    plan_role ro;
    if (plan_rank_role(p, rank, &ro) < 0)
        return -1;
    for (int r = 0; r < p->n_replicas; r++)
        out[r] = plan_rank(p, r, ro.stage, ro.tp_index);
    return p->n_replicas;
}

/* (r, s+1, j) receives activations from (r, s, j mod tp[s]). */
int plan_act_src(const et_plan *p, int rank)
{
    plan_role ro;
    if (plan_rank_role(p, rank, &ro) < 0 || ro.stage == 0)
        return -1;
    return plan_rank(p, ro.replica, ro.stage - 1, ro.tp_index % p->tp[ro.stage - 1]);
}

/* (r, s, i) receives gradients from (r, s+1, i mod tp[s+1]). */
int plan_grad_src(const et_plan *p, int rank)
{
    plan_role ro;
    if (plan_rank_role(p, rank, &ro) < 0 || ro.stage == p->n_stages - 1)
        return -1;
    return plan_rank(p, ro.replica, ro.stage + 1, ro.tp_index % p->tp[ro.stage + 1]);
}

int plan_act_dsts(const et_plan *p, int rank, int *out)
{
    plan_role ro;
    if (plan_rank_role(p, rank, &ro) < 0)
        return -1;
    int n = 0, s = ro.stage;
    if (s + 1 < p->n_stages)
        for (int j = 0; j < p->tp[s + 1]; j++)
            if (j % p->tp[s] == ro.tp_index)
                out[n++] = plan_rank(p, ro.replica, s + 1, j);
    return n;
}

int plan_grad_dsts(const et_plan *p, int rank, int *out)
{
    plan_role ro;
    if (plan_rank_role(p, rank, &ro) < 0)
        return -1;
    int n = 0, s = ro.stage;
    if (s > 0)
        for (int i = 0; i < p->tp[s - 1]; i++)
            if (i % p->tp[s] == ro.tp_index)
                out[n++] = plan_rank(p, ro.replica, s - 1, i);
    return n;
}

int plan_embed_peer(const et_plan *p, int rank)
{
    plan_role ro;
    int S = p->n_stages;
    if (plan_rank_role(p, rank, &ro) < 0 || S == 1 || ro.tp_index != 0)
        return -1;
    if (ro.stage == 0)
        return plan_rank(p, ro.replica, S - 1, 0);
    if (ro.stage == S - 1)
        return plan_rank(p, ro.replica, 0, 0);
    return -1;
}

/* ------------------------------------------------------------ writing */

/* A scalar that YAML reads back as the same plain string: starts with a
 * letter or '_', then letters, digits, '_', '-', '.', and is not one of
 * YAML 1.1's booleans/null. Anything else is double-quoted. */
static int plain_ok(const char *s)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", NULL};
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '.'))
            return 0;
    for (int i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return 0;
    return 1;
}

/* Write s as a YAML scalar (plain or double-quoted with escapes). */
static void put_str(FILE *f, const char *s)
{
    if (plain_ok(s)) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\x%02x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* The shortest of %.15g/%.17g that reads back to exactly v. */
static void put_num(FILE *f, double v)
{
    char buf[40];
    if (!isfinite(v)) {
        fputs(v != v ? ".nan" : v > 0 ? ".inf" : "-.inf", f);
        return;
    }
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof buf, "%.17g", v);
    fputs(buf, f);
}

static void put_servers(FILE *f, const et_plan *p, const et_config *cfg, int r, int s)
{
    fputc('[', f);
    for (int i = 0; i < p->tp[s]; i++) {
        if (i)
            fputs(", ", f);
        put_str(f, cfg->cluster.servers[plan_server(p, r, s, i)].name);
    }
    fputc(']', f);
}

/* Every key plan_load reads, in a readable order. */
int plan_write_stream(const et_plan *p, const et_config *cfg, FILE *f)
{
    const gpt2_config *g = &cfg->model;
    const char *sched = p->schedule == ET_SCHED_GPIPE ? "gpipe" : "1f1b";
    fputs("# edgetrain plan, written by `edgetrain plan`; run it with\n"
          "#   mpirun ... edgetrain worker CONFIG --plan THIS_FILE\n", f);
    fputs("config: ", f);
    put_str(f, cfg->path);
    fputs("\nname: ", f);
    put_str(f, cfg->name);
    fprintf(f, "\nmodel: {n_layer: %d, n_head: %d, n_embd: %d, vocab_size: %d, block_size: %d}\n",
            g->n_layer, g->n_head, g->n_embd, g->vocab_size, g->block_size);
    fprintf(f, "seq_len: %d\nglobal_batch: %d\nschedule: %s\nmicro_batch: %d\nmicro_batches: %d\n",
            cfg->training.seq_len, cfg->training.global_batch, sched, p->micro_batch, p->micro_batches);
    fputs("predicted:\n  step_s: ", f);
    put_num(f, p->pred.step_s);
    fputs("\n  compute_s: ", f);
    put_num(f, p->pred.compute_s);
    fputs("\n  communication_s: ", f);
    put_num(f, p->pred.communication_s);
    fputs("\n  bubble_s: ", f);
    put_num(f, p->pred.bubble_s);
    fputs("\n  pipeline_s: ", f);
    put_num(f, p->pred.pipeline_s);
    fputs("\n  sync_s: ", f);
    put_num(f, p->pred.sync_s);
    fprintf(f, "\n  bottleneck_replica: %d\n  bottleneck_stage: %d\n  bottleneck: ",
            p->pred.bottleneck_replica, p->pred.bottleneck_stage);
    put_str(f, p->pred.bottleneck);
    fputs("\nreplicas:\n", f);
    for (int r = 0; r < p->n_replicas; r++) {
        fprintf(f, "  - # replica %d\n", r);
        for (int s = 0; s < p->n_stages; s++) {
            const plan_stage_pred *sp = &p->stage_pred[r * p->n_stages + s];
            fprintf(f, "    - {layers: [%d, %d], servers: ", p->first[s], p->last[s]);
            put_servers(f, p, cfg, r, s);
            fputs(",\n       predicted: {fwd_s: ", f);
            put_num(f, sp->fwd_s);
            fputs(", bwd_s: ", f);
            put_num(f, sp->bwd_s);
            fputs(", compute_s: ", f);
            put_num(f, sp->compute_s);
            fputs(", communication_s: ", f);
            put_num(f, sp->communication_s);
            fputs(", bubble_s: ", f);
            put_num(f, sp->bubble_s);
            fputs("}}\n", f);
        }
    }
    fputs("memory:   # bytes each worker needs / its server has\n", f);
    for (int r = 0; r < p->n_replicas; r++)
        for (int s = 0; s < p->n_stages; s++)
            for (int i = 0; i < p->tp[s]; i++) {
                int sv = plan_server(p, r, s, i);
                fputs("  - {server: ", f);
                put_str(f, cfg->cluster.servers[sv].name);
                fprintf(f, ", used: %llu, available: %llu}\n", (unsigned long long)p->memory[sv],
                        (unsigned long long)cfg->cluster.servers[sv].memory);
            }
    fputs("ranks:    # MPI rank -> role; rank 0 is the controller\n", f);
    fputs("  - {rank: 0, role: controller, server: ", f);
    put_str(f, cfg->cluster.servers[0].name);
    fputs(", host: ", f);
    put_str(f, cfg->cluster.servers[0].host);
    fputs("}\n", f);
    for (int k = 1; k < plan_n_ranks(p); k++) {
        plan_role ro;
        plan_rank_role(p, k, &ro);
        fprintf(f, "  - {rank: %d, role: worker, replica: %d, stage: %d, tp: %d, server: ", k,
                ro.replica, ro.stage, ro.tp_index);
        put_str(f, cfg->cluster.servers[ro.server].name);
        fputs(", host: ", f);
        put_str(f, cfg->cluster.servers[ro.server].host);
        fputs("}\n", f);
    }
    return ferror(f) ? -1 : 0;
}

/* Write to "<path>.tmp.<pid>", flush, rename over path. */
int plan_write(const et_plan *p, const et_config *cfg, const char *path, et_err *e)
{
    char tmp[ET_PATH_MAX + 32];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return et_errf(e, ET_EINPUT, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", tmp, strerror(errno));
    int rc = plan_write_stream(p, cfg, f);
    if (fflush(f) != 0)
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc != 0) {
        unlink(tmp);
        return et_errf(e, ET_ERUNTIME, "%s: write failed (%s)", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return et_errf(e, ET_ERUNTIME, "%s: cannot rename into place (%s)", path, strerror(err));
    }
    return 0;
}

/* ------------------------------------------------------------ reading */

/* Loader state: the document, the file name for messages, the error. */
typedef struct ld {
    const char *path;
    yaml_document_t doc;
    et_err *e;
} ld;

static int at(ld *L, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "path:line:col: message" at node n (libyaml marks are 0-based). */
static int at(ld *L, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return et_errf(L->e, ET_EINPUT, "%s:%lu:%lu: %s", L->path, (unsigned long)n->start_mark.line + 1,
                   (unsigned long)n->start_mark.column + 1, msg);
}

static yaml_node_t *node(ld *L, int id)
{
    return yaml_document_get_node(&L->doc, id);
}

static const char *kind_name(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? "a scalar" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping";
}

/* Check a mapping has only keys from `allowed` (NULL-terminated), no
 * duplicates, and that `required` (NULL-terminated, may be NULL) are there. */
static int check_keys(ld *L, yaml_node_t *map, const char *what, const char *const *allowed,
                      const char *const *required)
{
    if (map->type != YAML_MAPPING_NODE)
        return at(L, map, "%s must be a mapping, not %s", what, kind_name(map));
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node(L, pr->key);
        if (k->type != YAML_SCALAR_NODE)
            return at(L, k, "%s: keys must be names", what);
        const char *key = (const char *)k->data.scalar.value;
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            ok |= strcmp(key, allowed[i]) == 0;
        if (!ok) {
            const char *near = et_closest_name(key, allowed, -1);
            if (near)
                return at(L, k, "unknown key '%s' in %s (did you mean '%s'?)", key, what, near);
            return at(L, k, "unknown key '%s' in %s", key, what);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++) {
            yaml_node_t *k2 = node(L, q->key);
            if (k2->type == YAML_SCALAR_NODE && strcmp((const char *)k2->data.scalar.value, key) == 0)
                return at(L, k, "duplicate key '%s' in %s", key, what);
        }
    }
    for (int i = 0; required && required[i]; i++) {
        int found = 0;
        for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++)
            found |= strcmp((const char *)node(L, pr->key)->data.scalar.value, required[i]) == 0;
        if (!found)
            return at(L, map, "%s lacks the key '%s'", what, required[i]);
    }
    return 0;
}

/* Value node of key in a (checked) mapping, or NULL. */
static yaml_node_t *get(ld *L, yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++)
        if (strcmp((const char *)node(L, pr->key)->data.scalar.value, key) == 0)
            return node(L, pr->value);
    return NULL;
}

/* A scalar holding a whole number in [lo, hi]. */
static int get_int(ld *L, yaml_node_t *n, const char *what, long lo, long hi, long *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return at(L, n, "%s must be a number, not %s", what, kind_name(n));
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0)
        return at(L, n, "%s must be a whole number, not '%s'", what, s);
    if (v < lo || v > hi)
        return at(L, n, "%s is %ld, must be in [%ld, %ld]", what, v, lo, hi);
    *out = v;
    return 0;
}

/* A scalar holding a real number (".inf"/".nan" accepted). */
static int get_num(ld *L, yaml_node_t *n, const char *what, double *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return at(L, n, "%s must be a number, not %s", what, kind_name(n));
    const char *s = (const char *)n->data.scalar.value;
    if (strcmp(s, ".inf") == 0) {
        *out = INFINITY;
        return 0;
    }
    if (strcmp(s, ".nan") == 0) {
        *out = NAN;
        return 0;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        return at(L, n, "%s must be a number, not '%s'", what, s);
    *out = v;
    return 0;
}

static int get_str(ld *L, yaml_node_t *n, const char *what, const char **out)
{
    *out = "";
    if (n->type != YAML_SCALAR_NODE)
        return at(L, n, "%s must be a string, not %s", what, kind_name(n));
    *out = (const char *)n->data.scalar.value;
    return 0;
}

static int seq_len_of(const yaml_node_t *n)
{
    return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *seq_item(ld *L, const yaml_node_t *n, int i)
{
    return node(L, n->data.sequence.items.start[i]);
}

/* model: {...} must equal the config's model. */
static int check_model(ld *L, yaml_node_t *n, const gpt2_config *g)
{
    static const char *const keys[] = {"n_layer", "n_head", "n_embd", "vocab_size", "block_size", NULL};
    if (check_keys(L, n, "model", keys, keys) < 0)
        return -1;
    const int want[5] = {g->n_layer, g->n_head, g->n_embd, g->vocab_size, g->block_size};
    for (int i = 0; i < 5; i++) {
        long v;
        yaml_node_t *x = get(L, n, keys[i]);
        if (get_int(L, x, keys[i], 0, 1L << 30, &v) < 0)
            return -1;
        if (v != want[i])
            return at(L, x, "the plan was made for %s %ld but the config's model has %d "
                      "(re-run edgetrain plan)", keys[i], v, want[i]);
    }
    return 0;
}

/* predicted: {...} at plan level. */
static int read_pred(ld *L, yaml_node_t *n, plan_pred *pr)
{
    static const char *const keys[] = {"step_s", "compute_s", "communication_s", "bubble_s", "pipeline_s",
                                       "sync_s", "bottleneck_replica", "bottleneck_stage", "bottleneck", NULL};
    static const char *const req[] = {"step_s", "compute_s", "communication_s", "bubble_s", NULL};
    if (check_keys(L, n, "predicted", keys, req) < 0)
        return -1;
    double *dst[6] = {&pr->step_s, &pr->compute_s, &pr->communication_s, &pr->bubble_s, &pr->pipeline_s, &pr->sync_s};
    for (int i = 0; i < 6; i++) {
        yaml_node_t *x = get(L, n, keys[i]);
        if (x && get_num(L, x, keys[i], dst[i]) < 0)
            return -1;
    }
    long v;
    yaml_node_t *x = get(L, n, "bottleneck_replica");
    if (x && get_int(L, x, "bottleneck_replica", 0, 1 << 20, &v) < 0)
        return -1;
    pr->bottleneck_replica = x ? (int)v : 0;
    x = get(L, n, "bottleneck_stage");
    if (x && get_int(L, x, "bottleneck_stage", 0, 1 << 20, &v) < 0)
        return -1;
    pr->bottleneck_stage = x ? (int)v : 0;
    x = get(L, n, "bottleneck");
    const char *s;
    if (x) {
        if (get_str(L, x, "bottleneck", &s) < 0)
            return -1;
        snprintf(pr->bottleneck, sizeof pr->bottleneck, "%s", s);
    }
    return 0;
}

/* A stage's predicted: {...}. */
static int read_stage_pred(ld *L, yaml_node_t *n, plan_stage_pred *sp)
{
    static const char *const keys[] = {"fwd_s", "bwd_s", "compute_s", "communication_s", "bubble_s", NULL};
    if (check_keys(L, n, "stage predicted", keys, NULL) < 0)
        return -1;
    double *dst[5] = {&sp->fwd_s, &sp->bwd_s, &sp->compute_s, &sp->communication_s, &sp->bubble_s};
    for (int i = 0; i < 5; i++) {
        yaml_node_t *x = get(L, n, keys[i]);
        if (x && get_num(L, x, keys[i], dst[i]) < 0)
            return -1;
    }
    return 0;
}

/* One server name: exists, not yet used. Returns the index or -1. */
static int read_server(ld *L, yaml_node_t *n, const et_config *cfg, int *used_by, int r, int s)
{
    const char *name;
    if (get_str(L, n, "a server", &name) < 0)
        return -1;
    int idx = et_cluster_find(&cfg->cluster, name);
    if (idx < 0) {
        const char **names = et_xmalloc((size_t)cfg->cluster.n_servers * sizeof *names);
        for (int i = 0; i < cfg->cluster.n_servers; i++)
            names[i] = cfg->cluster.servers[i].name;
        const char *near = et_closest_name(name, names, cfg->cluster.n_servers);
        if (near)
            at(L, n, "unknown server '%s' (did you mean '%s'? the config defines %d servers)", name, near,
               cfg->cluster.n_servers);
        else
            at(L, n, "unknown server '%s' (not in the config's cluster.servers)", name);
        free(names);
        return -1;
    }
    if (used_by[idx] >= 0)
        return at(L, n, "server '%s' appears twice (already in replica %d stage %d; one worker per server)",
                  name, used_by[idx] / 65536, used_by[idx] % 65536);
    used_by[idx] = r * 65536 + s;
    return idx;
}

/* What the replicas section says, before it becomes a plan. */
typedef struct parsed {
    int R, S;
    int *first, *last, *tp;    /* [S], from replica 0 */
    int *servers;              /* [R * 1024-free]: flattened per replica, as read */
    int n_servers;
    yaml_node_t **stage_pred;  /* [R*S] predicted nodes or NULL */
} parsed;

static void parsed_free(parsed *P)
{
    free(P->first);
    free(P->last);
    free(P->tp);
    free(P->servers);
    free(P->stage_pred);
}

/* replicas: [[{layers, servers, predicted?}, ...], ...] with every rule of
 * plan_load checked at the offending node. */
static int read_replicas(ld *L, yaml_node_t *n, const et_config *cfg, parsed *P)
{
    const gpt2_config *g = &cfg->model;
    int L_ = g->n_layer;
    if (n->type != YAML_SEQUENCE_NODE || seq_len_of(n) == 0)
        return at(L, n, "replicas must be a non-empty list (one entry per data-parallel replica)");
    P->R = seq_len_of(n);
    yaml_node_t *r0 = seq_item(L, n, 0);
    if (r0->type != YAML_SEQUENCE_NODE || seq_len_of(r0) == 0)
        return at(L, r0, "replica 0 must be a non-empty list of stages");
    P->S = seq_len_of(r0);
    int R = P->R, S = P->S;
    P->first = et_xcalloc((size_t)S, sizeof(int));
    P->last = et_xcalloc((size_t)S, sizeof(int));
    P->tp = et_xcalloc((size_t)S, sizeof(int));
    P->servers = et_xcalloc((size_t)cfg->cluster.n_servers + 1, sizeof(int));
    P->stage_pred = et_xcalloc((size_t)(R * S), sizeof(yaml_node_t *));
    int *used_by = et_xmalloc((size_t)cfg->cluster.n_servers * sizeof(int));
    for (int i = 0; i < cfg->cluster.n_servers; i++)
        used_by[i] = -1;
    static const char *const keys[] = {"layers", "servers", "predicted", NULL};
    static const char *const req[] = {"layers", "servers", NULL};
    int rc = 0;
    for (int r = 0; r < R && rc == 0; r++) {
        yaml_node_t *rep = seq_item(L, n, r);
        if (rep->type != YAML_SEQUENCE_NODE) {
            rc = at(L, rep, "replica %d must be a list of stages, not %s", r, kind_name(rep));
            break;
        }
        if (seq_len_of(rep) != S) {
            rc = at(L, rep, "replica %d has %d stages but replica 0 has %d (every replica has the same stages)",
                    r, seq_len_of(rep), S);
            break;
        }
        int prev_last = -1;
        for (int s = 0; s < S && rc == 0; s++) {
            yaml_node_t *st = seq_item(L, rep, s);
            char what[64];
            snprintf(what, sizeof what, "stage %d of replica %d", s, r);
            if ((rc = check_keys(L, st, what, keys, req)) < 0)
                break;
            yaml_node_t *ly = get(L, st, "layers");
            if (ly->type != YAML_SEQUENCE_NODE || seq_len_of(ly) != 2) {
                rc = at(L, ly, "layers must be [first, last] (0-based, inclusive)");
                break;
            }
            long a, b;
            if ((rc = get_int(L, seq_item(L, ly, 0), "first layer", 0, L_ - 1, &a)) < 0 ||
                (rc = get_int(L, seq_item(L, ly, 1), "last layer", 0, L_ - 1, &b)) < 0)
                break;
            if (b < a) {
                rc = at(L, ly, "layers [%ld, %ld]: last before first", a, b);
                break;
            }
            if (a != prev_last + 1) {
                if (s == 0)
                    rc = at(L, ly, "%s starts at layer %ld but the first stage must start at layer 0 "
                            "(stages cover layers 0..%d in order)", what, a, L_ - 1);
                else
                    rc = at(L, ly, "%s starts at layer %ld but the previous stage ended at layer %d "
                            "(stages must cover layers 0..%d in order, without gaps or overlaps)",
                            what, a, prev_last, L_ - 1);
                break;
            }
            if (s == S - 1 && b != L_ - 1) {
                rc = at(L, ly, "the last stage ends at layer %ld but the model has %d layers (0..%d)", b, L_,
                        L_ - 1);
                break;
            }
            prev_last = (int)b;
            yaml_node_t *sv = get(L, st, "servers");
            if (sv->type != YAML_SEQUENCE_NODE || seq_len_of(sv) == 0) {
                rc = at(L, sv, "servers must be a non-empty list of server names (in tensor-parallel order)");
                break;
            }
            int t = seq_len_of(sv);
            if (r == 0) {
                P->first[s] = (int)a;
                P->last[s] = (int)b;
                P->tp[s] = t;
                if (g->n_head % t != 0 || (4 * g->n_embd) % t != 0) {
                    rc = at(L, sv, "stage %d has %d servers but the tensor-parallel degree must divide "
                            "n_head (%d) and 4*n_embd (%d)", s, t, g->n_head, 4 * g->n_embd);
                    break;
                }
            } else if (a != P->first[s] || b != P->last[s]) {
                rc = at(L, ly, "%s has layers [%ld, %ld] but replica 0's stage %d has [%d, %d] "
                        "(all replicas share the same cuts)", what, a, b, s, P->first[s], P->last[s]);
                break;
            } else if (t != P->tp[s]) {
                rc = at(L, sv, "%s has %d servers but replica 0's stage %d has %d (all replicas share "
                        "the same tensor-parallel degrees)", what, t, s, P->tp[s]);
                break;
            }
            for (int i = 0; i < t; i++) {
                int idx = read_server(L, seq_item(L, sv, i), cfg, used_by, r, s);
                if (idx < 0) {
                    rc = -1;
                    break;
                }
                P->servers[P->n_servers++] = idx;
            }
            P->stage_pred[r * S + s] = get(L, st, "predicted");
        }
    }
    free(used_by);
    return rc;
}

/* ranks: must match the derived mapping entry by entry. */
static int check_ranks(ld *L, yaml_node_t *n, const et_plan *p, const et_config *cfg)
{
    static const char *const keys[] = {"rank", "role", "replica", "stage", "tp", "server", "host", NULL};
    static const char *const req[] = {"rank", "role", "server", NULL};
    if (n->type != YAML_SEQUENCE_NODE)
        return at(L, n, "ranks must be a list");
    if (seq_len_of(n) != plan_n_ranks(p))
        return at(L, n, "ranks lists %d ranks but the replicas need %d (1 controller + %d workers)",
                  seq_len_of(n), plan_n_ranks(p), plan_n_workers(p));
    for (int k = 0; k < seq_len_of(n); k++) {
        yaml_node_t *it = seq_item(L, n, k);
        if (check_keys(L, it, "a rank entry", keys, req) < 0)
            return -1;
        long v;
        const char *role, *server;
        if (get_int(L, get(L, it, "rank"), "rank", 0, 1L << 30, &v) < 0)
            return -1;
        if (v != k)
            return at(L, it, "rank entry %d says rank %ld (ranks are listed in order from 0)", k, v);
        if (get_str(L, get(L, it, "role"), "role", &role) < 0 ||
            get_str(L, get(L, it, "server"), "server", &server) < 0)
            return -1;
        if (k == 0) {
            if (strcmp(role, "controller") != 0)
                return at(L, it, "rank 0 must be the controller, not '%s'", role);
            continue;
        }
        plan_role ro;
        plan_rank_role(p, k, &ro);
        if (strcmp(role, "worker") != 0)
            return at(L, it, "rank %d must be a worker, not '%s'", k, role);
        if (strcmp(server, cfg->cluster.servers[ro.server].name) != 0)
            return at(L, it, "rank %d is on server '%s' but the replicas put it on '%s'", k, server,
                      cfg->cluster.servers[ro.server].name);
        const char *f[3] = {"replica", "stage", "tp"};
        int want[3] = {ro.replica, ro.stage, ro.tp_index};
        for (int i = 0; i < 3; i++) {
            yaml_node_t *x = get(L, it, f[i]);
            if (x == NULL)
                continue;
            if (get_int(L, x, f[i], 0, 1L << 30, &v) < 0)
                return -1;
            if (v != want[i])
                return at(L, x, "rank %d has %s %ld but the replicas make it %d", k, f[i], v, want[i]);
        }
    }
    return 0;
}

/* memory: [{server, used, available?}] -> p->memory. */
static int read_memory(ld *L, yaml_node_t *n, et_plan *p, const et_config *cfg)
{
    static const char *const keys[] = {"server", "used", "available", NULL};
    static const char *const req[] = {"server", "used", NULL};
    if (n->type != YAML_SEQUENCE_NODE)
        return at(L, n, "memory must be a list");
    for (int k = 0; k < seq_len_of(n); k++) {
        yaml_node_t *it = seq_item(L, n, k);
        if (check_keys(L, it, "a memory entry", keys, req) < 0)
            return -1;
        const char *name;
        if (get_str(L, get(L, it, "server"), "server", &name) < 0)
            return -1;
        int idx = et_cluster_find(&cfg->cluster, name);
        if (idx < 0)
            return at(L, get(L, it, "server"), "unknown server '%s'", name);
        double v;
        if (get_num(L, get(L, it, "used"), "used", &v) < 0)
            return -1;
        if (!(v >= 0 && v < 1.8e19))
            return at(L, get(L, it, "used"), "used must be a byte count");
        p->memory[idx] = (uint64_t)v;
    }
    return 0;
}

/* Parse the file into a document; top-level keys; build and check the plan. */
et_plan *plan_load(const char *path, const et_config *cfg, et_err *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        et_errf(e, ET_EINPUT, "%s: cannot open (%s)", path, strerror(errno));
        return NULL;
    }
    ld L;
    memset(&L, 0, sizeof L);
    L.path = path;
    L.e = e;
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &L.doc)) {
        et_errf(e, ET_EINPUT, "%s:%lu:%lu: %s (not valid YAML)", path,
                (unsigned long)parser.problem_mark.line + 1, (unsigned long)parser.problem_mark.column + 1,
                parser.problem ? parser.problem : "syntax error");
        yaml_parser_delete(&parser);
        fclose(f);
        return NULL;
    }
    yaml_parser_delete(&parser);
    fclose(f);

    et_plan *p = NULL;
    parsed P = {0};
    yaml_node_t *root = yaml_document_get_root_node(&L.doc);
    static const char *const top[] = {"config", "name", "model", "seq_len", "global_batch", "schedule",
                                      "micro_batch", "micro_batches", "predicted", "replicas", "memory",
                                      "ranks", NULL};
    static const char *const req[] = {"schedule", "micro_batch", "micro_batches", "replicas", NULL};
    if (root == NULL) {
        et_errf(e, ET_EINPUT, "%s: empty file (expected a plan written by edgetrain plan)", path);
        goto out;
    }
    if (check_keys(&L, root, "the plan", top, req) < 0)
        goto out;
    yaml_node_t *x;
    if ((x = get(&L, root, "model")) && check_model(&L, x, &cfg->model) < 0)
        goto out;
    long v;
    if ((x = get(&L, root, "seq_len"))) {
        if (get_int(&L, x, "seq_len", 1, 1L << 30, &v) < 0)
            goto out;
        if (v != cfg->training.seq_len) {
            at(&L, x, "the plan was made for seq_len %ld but the config says %d (re-run edgetrain plan)", v,
               cfg->training.seq_len);
            goto out;
        }
    }
    const char *sched;
    if (get_str(&L, get(&L, root, "schedule"), "schedule", &sched) < 0)
        goto out;
    int schedule = strcmp(sched, "gpipe") == 0 ? ET_SCHED_GPIPE : strcmp(sched, "1f1b") == 0 ? ET_SCHED_1F1B : -1;
    if (schedule < 0) {
        at(&L, get(&L, root, "schedule"), "unknown schedule '%s' (gpipe or 1f1b)", sched);
        goto out;
    }
    long mb, M;
    if (get_int(&L, get(&L, root, "micro_batch"), "micro_batch", 1, 1L << 30, &mb) < 0 ||
        get_int(&L, get(&L, root, "micro_batches"), "micro_batches", 1, 1L << 30, &M) < 0)
        goto out;
    if (read_replicas(&L, get(&L, root, "replicas"), cfg, &P) < 0)
        goto out;
    if ((long)P.R * M * mb != cfg->training.global_batch) {
        at(&L, get(&L, root, "micro_batches"),
           "replicas (%d) x micro_batches (%ld) x micro_batch (%ld) = %ld sequences, but the config's "
           "global_batch is %d (they must be equal)", P.R, M, mb, (long)P.R * M * mb,
           cfg->training.global_batch);
        goto out;
    }
    if ((x = get(&L, root, "global_batch"))) {
        if (get_int(&L, x, "global_batch", 1, 1L << 30, &v) < 0)
            goto out;
        if (v != cfg->training.global_batch) {
            at(&L, x, "the plan was made for global_batch %ld but the config says %d (re-run edgetrain plan)",
               v, cfg->training.global_batch);
            goto out;
        }
    }
    p = plan_new(P.R, P.S, P.tp, cfg->cluster.n_servers);
    memcpy(p->first, P.first, (size_t)P.S * sizeof(int));
    memcpy(p->last, P.last, (size_t)P.S * sizeof(int));
    memcpy(p->server, P.servers, (size_t)(P.R * p->width) * sizeof(int));
    p->schedule = schedule;
    p->micro_batch = (int)mb;
    p->micro_batches = (int)M;
    p->fits = 1;
    for (int i = 0; i < P.R * P.S; i++)
        if (P.stage_pred[i] && read_stage_pred(&L, P.stage_pred[i], &p->stage_pred[i]) < 0)
            goto fail;
    if ((x = get(&L, root, "predicted")) && read_pred(&L, x, &p->pred) < 0)
        goto fail;
    if ((x = get(&L, root, "memory")) && read_memory(&L, x, p, cfg) < 0)
        goto fail;
    if ((x = get(&L, root, "ranks")) && check_ranks(&L, x, p, cfg) < 0)
        goto fail;
    if ((x = get(&L, root, "config")) && get_str(&L, x, "config", &sched) < 0)
        goto fail;
    if ((x = get(&L, root, "name")) && get_str(&L, x, "name", &sched) < 0)
        goto fail;
    goto out;
fail:
    plan_free(p);
    p = NULL;
out:
    parsed_free(&P);
    yaml_document_delete(&L.doc);
    return p;
}
