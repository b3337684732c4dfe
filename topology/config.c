/*
 * config — load, merge and validate the config YAML (DESIGN.md §3).
 *
 * Schema (every key optional unless marked required; defaults in brackets):
 *
 *   name: STR                    run name [the main file's stem]
 *   include: PATH | [PATH, ...]  other config files merged in (see below)
 *   cluster:                     required
 *     servers:                   required, a non-empty list of
 *       - {name: STR (required, unique), host: STR [localhost],
 *          gflops: NUM > 0 (required), memory: SIZE > 0 (required), slots: INT >= 1 [1]}
 *     links:
 *       default: {bandwidth: BW > 0 (required), latency: DURATION >= 0 [0s]}
 *       pairs:
 *         - {between: [A, B] (required), bandwidth: BW > 0, latency: DURATION >= 0}
 *   model: {preset: NAME} | {n_layer, n_head, n_embd, vocab_size, block_size}
 *          required; a preset plus any of the five numbers overrides the preset
 *   training:                    required
 *     dataset: PATH (required)   seq_len [min(128, block_size)], global_batch [32],
 *     micro_batch [global_batch; auto: the planner's choice], lr [6e-4], min_lr [0], warmup_steps [0],
 *     lr_decay: cosine|none [none], weight_decay [0], grad_clip [1.0; 0 = off],
 *     max_steps [2000], target: {val_loss: X, val_accuracy: Y} (one or both),
 *     eval_every [50; 0 = at the end only], eval_tokens [65536],
 *     checkpoint: {path: PATH (required in it), every [100]}, seed [1],
 *     init: PATH [none], sampling: sequential|random [sequential]
 *   parallel: {schedule: auto|gpipe|1f1b [auto], pipeline|tensor|data: INT >= 1 | auto [auto]}
 *   emulation: {clock: virtual|wall [virtual]}
 *
 * Units (BW "10Gbps", SIZE "16GiB", DURATION "2ms") are parsed by units.c.
 * Both YAML block style and flow style ({...}, [...]) work; a number may be
 * quoted. Paths (dataset, init, checkpoint.path, include) that are relative
 * resolve against the directory of the file that names them.
 *
 * Links. Every pair of distinct servers needs a link: from links.default, or
 * from a pair entry. There is no built-in default bandwidth: a config with
 * several servers and no links.default must give a pair for every two
 * servers, else it is refused ("no link between servers 'a' and 'b'"). A pair
 * that leaves out bandwidth or latency takes links.default's value (latency 0
 * without a default). et_cluster.default_link is links.default, or without
 * one the slowest link of the matrix (min bandwidth, max latency).
 *
 * Includes. `include:` (top level) names files whose contents are merged in
 * first, in the order listed (a later include overrides an earlier one), and
 * then the including file's own keys are applied on top, so the including
 * file wins. The merge, per section:
 *   - name: replaced.
 *   - cluster.servers: merged by server name: an entry whose name is already
 *     known replaces that server whole (in place, order kept); a new name is
 *     appended. So an experiment file may include a cluster file, add
 *     servers and re-profile existing ones.
 *   - cluster.links.default: replaced whole.
 *   - cluster.links.pairs: merged by the unordered pair {A, B} the same way.
 *   - model: replaced whole (a preset and numbers from different files would
 *     otherwise mix into a model nobody wrote).
 *   - training, parallel, emulation: merged key by key; each key's value is
 *     replaced whole (so training.target and training.checkpoint are one value
 *     each).
 * Included files may include others; a file may be included twice by
 * different files (diamonds are fine) but never by itself, directly or
 * through others: that is an "include cycle" error naming the chain. At most
 * INCLUDE_DEPTH_MAX (16) files deep and FILES_MAX (256) file reads in all (a
 * diamond counts each read), so no include graph explodes. Within a single
 * file, two servers with one name or two links for one pair are errors.
 *
 * Limits that keep any input cheap: a file is at most 16 MiB; [ ] and { }
 * nest at most 256 deep (libyaml's scanner is quadratic in flow depth); at
 * most 4096 servers, 1024 slots each; n_layer and n_head <= 1024, n_embd <=
 * 65536, vocab_size <= 2^24, block_size and seq_len <= 2^20, batches <= 2^24
 * (so that sizes computed from them fit in the planner's integers).
 *
 * Validation. Every file is checked as it is read (YAML syntax, unknown or
 * duplicate keys, types, value ranges, units), so a mistake in an included
 * file is reported even when it is overridden. Cross-checks (required keys,
 * link names, micro_batch | global_batch, seq_len <= block_size, min_lr <= lr,
 * tensor | n_head, pinned ranks <= slots) run on the merged result. Each error
 * is one line "file:line:col: what is wrong (hint)" (1-based, the position of
 * the offending YAML node) or "file: what (hint)" when nothing has a position.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define INCLUDE_DEPTH_MAX 16
#define FILES_MAX 256          /* files read for one config, includes counted each time */
#define FILE_BYTES_MAX (16L << 20)
#define SERVERS_MAX 4096
#define SLOTS_MAX 1024

/* A position in a file for messages: line and col 1-based; line 0 = none. */
typedef struct pos {
    const char *file;
    int line, col;
} pos;

typedef struct srv_entry {
    et_server s;
    pos at;          /* the server's mapping */
    pos name_at;
    int seq;         /* which servers list it came from (duplicate detection) */
} srv_entry;

typedef struct pair_entry {
    char a[ET_NAME_MAX], b[ET_NAME_MAX];
    pos at, a_at, b_at;
    int has_bw, has_lat;
    double bw, lat;
    int seq;
} pair_entry;

/* One parsed YAML file. */
typedef struct yfile {
    const char *path;        /* as shown in messages (owned by the loader) */
    yaml_document_t doc;
} yfile;

/* A string -> index map (open addressing, FNV-1a): server names and link
 * pairs are looked up by name, so large generated clusters load in linear
 * time. Keys are copies owned by the map. */
typedef struct strmap {
    char **keys;
    int *vals;
    size_t cap, n;
} strmap;

/* Everything the loader accumulates across the main file and its includes. */
typedef struct loader {
    et_err *e;
    et_config *c;
    char **paths;                                /* every file name a pos may point to */
    int npaths, cappaths;
    char *stack_real[INCLUDE_DEPTH_MAX + 1];     /* realpaths of the files being read */
    const char *stack_path[INCLUDE_DEPTH_MAX + 1];
    int depth;
    int nloads;                                  /* files read so far (FILES_MAX) */
    int seq_counter;
    srv_entry *srv;
    int nsrv, capsrv;
    strmap srv_index;                            /* name -> index in srv */
    pair_entry *pair;
    int npair, cappair;
    strmap pair_index;                           /* "a\nb" (a < b) -> index in pair */
    int has_default;
    et_link def;
    int has_cluster, has_model, has_training, has_dataset, has_name;
    int has_seq_len, has_micro;
    pos cluster_at, training_at, parallel_at;
    pos seq_at, mb_at, lr_at, min_lr_at, tensor_at;
} loader;

static const char *const top_keys[] = {"name", "include", "cluster", "model",
                                       "training", "parallel", "emulation", NULL};
static const char *const cluster_keys[] = {"servers", "links", NULL};
static const char *const server_keys[] = {"name", "host", "gflops", "memory", "slots", NULL};
static const char *const links_keys[] = {"default", "pairs", NULL};
static const char *const default_keys[] = {"bandwidth", "latency", NULL};
static const char *const pair_keys[] = {"between", "bandwidth", "latency", NULL};
static const char *const model_keys[] = {"preset", "n_layer", "n_head", "n_embd",
                                         "vocab_size", "block_size", NULL};
static const char *const training_keys[] = {
    "dataset", "seq_len", "global_batch", "micro_batch", "lr", "min_lr",
    "warmup_steps", "lr_decay", "weight_decay", "grad_clip", "max_steps", "target",
    "eval_every", "eval_tokens", "checkpoint", "seed", "init", "sampling", NULL};
static const char *const target_keys[] = {"val_loss", "val_accuracy", NULL};
static const char *const checkpoint_keys[] = {"path", "every", NULL};
static const char *const parallel_keys[] = {"schedule", "pipeline", "tensor", "data", NULL};
static const char *const emulation_keys[] = {"clock", NULL};
/* Enumerations: the index is the value (ET_SCHED_*, ET_CLOCK_*, ...). */
static const char *const schedule_names[] = {"auto", "gpipe", "1f1b", NULL};
static const char *const clock_names[] = {"virtual", "wall", NULL};
static const char *const sampling_names[] = {"sequential", "random", NULL};
static const char *const decay_names[] = {"none", "cosine", NULL};

/* ------------------------------------------------------------------ */
/* messages                                                            */

/*
 * Record an input error at p: "file:line:col: <msg>" (or "file: <msg>"
 * without a line). Control characters (a file name or include path may hold
 * a newline) become '?', so the message stays one line. Returns -1. Only
 * the first error is kept (et_errf).
 */
__attribute__((format(printf, 3, 4)))
static int fail(loader *L, pos p, const char *fmt, ...)
{
    char msg[900], line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p.line > 0)
        snprintf(line, sizeof line, "%s:%d:%d: %s", p.file, p.line, p.col, msg);
    else
        snprintf(line, sizeof line, "%s: %s", p.file, msg);
    for (char *q = line; *q != '\0'; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?';
    return et_errf(L->e, ET_EINPUT, "%s", line);
}

/* A user's text made safe for a one-line message: at most 40 characters,
 * control characters as '?', "..." when cut. Returns buf (48 bytes). */
static const char *clip(char buf[48], const char *s)
{
    size_t k = 0;
    for (; s[k] != '\0' && k < 40; k++)
        buf[k] = (unsigned char)s[k] < 0x20 || s[k] == 0x7f ? '?' : s[k];
    if (s[k] != '\0') {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

/* names (NULL-terminated or n entries) as "a, b, c" in buf, cut with ", ..."
 * when it would not fit. */
static const char *join(char *buf, size_t cap, const char *const *names, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; n < 0 ? names[i] != NULL : i < n; i++) {
        size_t add = strlen(names[i]) + (i ? 2 : 0);
        if (len + add + 6 >= cap) {
            snprintf(buf + len, cap - len, ", ...");
            break;
        }
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
    }
    return buf;
}

/* ------------------------------------------------------------------ */
/* string -> index map                                                 */

static size_t strmap_hash(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (; *key != '\0'; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return (size_t)h;
}

/* The slot of key: where it is, or the empty slot where it would go. The map
 * must have a free slot (cap > n). */
static size_t strmap_slot(const strmap *m, const char *key)
{
    size_t i = strmap_hash(key) & (m->cap - 1);
    while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* The index stored for key, or -1. */
static int strmap_get(const strmap *m, const char *key)
{
    if (m->cap == 0)
        return -1;
    size_t i = strmap_slot(m, key);
    return m->keys[i] != NULL ? m->vals[i] : -1;
}

/* Store key -> val (replacing any value); grows at half full. */
static void strmap_put(strmap *m, const char *key, int val)
{
    if (2 * (m->n + 1) > m->cap) {
        strmap old = *m;
        m->cap = old.cap ? 2 * old.cap : 16;
        m->keys = et_xcalloc(m->cap, sizeof *m->keys);
        m->vals = et_xcalloc(m->cap, sizeof *m->vals);
        for (size_t i = 0; i < old.cap; i++) {
            if (old.keys[i] != NULL) {
                size_t j = strmap_slot(m, old.keys[i]);
                m->keys[j] = old.keys[i];
                m->vals[j] = old.vals[i];
            }
        }
        free(old.keys);
        free(old.vals);
    }
    size_t i = strmap_slot(m, key);
    if (m->keys[i] == NULL) {
        m->keys[i] = et_xstrdup(key);
        m->n++;
    }
    m->vals[i] = val;
}

static void strmap_free(strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
}

/* ------------------------------------------------------------------ */
/* YAML node helpers                                                   */

static pos npos(const yfile *f, const yaml_node_t *n)
{
    return (pos){f->path, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static yaml_node_t *node(const yfile *f, int index)
{
    return yaml_document_get_node((yaml_document_t *)&f->doc, index);
}

static const char *text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain scalar that YAML reads as null: empty, ~, null. */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = text(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* "a mapping", "a list", "a value 'x'" for type errors. */
static const char *kind_name(char buf[80], const yaml_node_t *n)
{
    char c[48];
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        snprintf(buf, 80, "the value '%s'", clip(c, text(n)));
        return buf;
    }
}

/* Require a mapping for `what`. */
static int want_map(loader *L, const yfile *f, const yaml_node_t *n, const char *what)
{
    char k[80];
    if (n->type == YAML_MAPPING_NODE)
        return 0;
    if (is_null(n))
        return fail(L, npos(f, n), "'%s' is empty (it must be a mapping of key: value pairs)", what);
    return fail(L, npos(f, n),
                "'%s' must be a mapping, got %s (write key: value pairs, indented below it or in {...})",
                what, kind_name(k, n));
}

/* Require a list for `what`. */
static int want_seq(loader *L, const yfile *f, const yaml_node_t *n, const char *what)
{
    char k[80];
    if (n->type == YAML_SEQUENCE_NODE)
        return 0;
    if (is_null(n))
        return fail(L, npos(f, n), "'%s' is empty (it must be a list)", what);
    return fail(L, npos(f, n), "'%s' must be a list, got %s (write '- item' lines or [a, b])",
                what, kind_name(k, n));
}

/* Require a non-null scalar without NUL bytes; *out is its text. */
static int get_scalar(loader *L, const yfile *f, const yaml_node_t *n, const char *what,
                      const char **out)
{
    char k[80];
    if (n->type != YAML_SCALAR_NODE)
        return fail(L, npos(f, n), "'%s' must be a single value, got %s (write %s: VALUE)", what,
                    kind_name(k, n), what);
    if (is_null(n))
        return fail(L, npos(f, n), "'%s' has no value (give one, or remove the key)", what);
    if (strlen(text(n)) != n->data.scalar.length)
        return fail(L, npos(f, n), "'%s' contains a NUL character (remove the \\0)", what);
    *out = text(n);
    return 0;
}

static int in_list(const char *s, const char *const *names)
{
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/*
 * Check the keys of a mapping: each a scalar naming one of `valid`, none
 * twice. `where` names the mapping in messages ("training", "server").
 */
static int check_keys(loader *L, const yfile *f, const yaml_node_t *map,
                      const char *const *valid, const char *where)
{
    char c[48], list[400];
    const yaml_node_pair_t *start = map->data.mapping.pairs.start;
    for (const yaml_node_pair_t *p = start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node(f, p->key);
        char kn[80];
        if (k->type != YAML_SCALAR_NODE)
            return fail(L, npos(f, k), "a key in %s must be a plain name, got %s (write name: value)",
                        where, kind_name(kn, k));
        const char *name = text(k);
        if (in_list(name, valid) < 0) {
            const char *near = et_closest_name(name, valid, -1);
            if (near != NULL)
                return fail(L, npos(f, k), "unknown key '%s' in %s (did you mean '%s'?)",
                            clip(c, name), where, near);
            return fail(L, npos(f, k), "unknown key '%s' in %s (valid keys: %s)", clip(c, name),
                        where, join(list, sizeof list, valid, -1));
        }
        for (const yaml_node_pair_t *q = start; q < p; q++) {
            const yaml_node_t *k2 = node(f, q->key);
            if (strcmp(text(k2), name) == 0)
                return fail(L, npos(f, k), "duplicate key '%s' in %s (already given at line %d)",
                            name, where, (int)k2->start_mark.line + 1);
        }
    }
    return 0;
}

/* The value of key in a (checked) mapping, or NULL. */
static yaml_node_t *find(const yfile *f, const yaml_node_t *map, const char *key)
{
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node(f, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(text(k), key) == 0)
            return node(f, p->value);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* values                                                              */

/* An integer in [lo, hi]. */
static int get_long(loader *L, const yfile *f, const yaml_node_t *n, const char *what, long lo,
                    long hi, long *out)
{
    const char *s;
    char c[48];
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    const char *p = s + (s[0] == '-');
    int ok = *p != '\0';
    for (; *p != '\0'; p++)
        if (!isdigit((unsigned char)*p))
            ok = 0;
    if (!ok)
        return fail(L, npos(f, n), "'%s' must be a whole number, got '%s' (write digits only)", what,
                    clip(c, s));
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    int neg = s[0] == '-';
    if ((errno == ERANGE && neg) || v < lo) {
        if (lo == 1)
            return fail(L, npos(f, n), "'%s' must be positive, got %s (use 1 or more)", what, clip(c, s));
        if (lo == 0)
            return fail(L, npos(f, n), "'%s' must not be negative, got %s (use 0 or more)", what,
                        clip(c, s));
        return fail(L, npos(f, n), "'%s' must be at least %ld, got %s", what, lo, clip(c, s));
    }
    if (errno == ERANGE || v > hi)
        return fail(L, npos(f, n), "'%s' is too large: %s (at most %ld)", what, clip(c, s), hi);
    *out = (long)v;
    return 0;
}

/* An int in [lo, hi]. */
static int get_int(loader *L, const yfile *f, const yaml_node_t *n, const char *what, int lo,
                   int hi, int *out)
{
    long v;
    if (get_long(L, f, n, what, lo, hi, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* An unsigned 64-bit integer (the seed). */
static int get_u64(loader *L, const yfile *f, const yaml_node_t *n, const char *what,
                   uint64_t *out)
{
    const char *s;
    char c[48];
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    int ok = *s != '\0';
    for (const char *p = s; *p != '\0'; p++)
        if (!isdigit((unsigned char)*p))
            ok = 0;
    errno = 0;
    unsigned long long v = ok ? strtoull(s, NULL, 10) : 0;
    if (!ok || errno == ERANGE)
        return fail(L, npos(f, n),
                    "'%s' must be a whole number from 0 to 18446744073709551615, got '%s' (write digits only)",
                    what, clip(c, s));
    *out = (uint64_t)v;
    return 0;
}

enum { R_POS, R_NONNEG, R_FRACTION };

/* A finite decimal number ("0.5", "6e-4", "-1"); no inf, nan, hex. rule:
 * R_POS > 0, R_NONNEG >= 0, R_FRACTION in (0, 1]. */
static int get_real(loader *L, const yfile *f, const yaml_node_t *n, const char *what, int rule,
                    double *out)
{
    const char *s;
    char c[48];
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    const char *p = s + (s[0] == '-' || s[0] == '+');
    int digits = 0;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits++;
    }
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            digits++;
    if (digits > 0 && (*p == 'e' || *p == 'E')) {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            digits = 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (digits == 0 || *p != '\0')
        return fail(L, npos(f, n), "'%s' must be a number, got '%s' (write e.g. 0.5 or 6e-4)", what,
                    clip(c, s));
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE || !isfinite(v))
        return fail(L, npos(f, n), "'%s' is out of range: %s (write a number between 1e-300 and 1e300)",
                    what, clip(c, s));
    if (rule == R_POS && !(v > 0))
        return fail(L, npos(f, n), "'%s' must be positive, got %s (use a number > 0)", what, clip(c, s));
    if (rule == R_NONNEG && v < 0)
        return fail(L, npos(f, n), "'%s' must not be negative, got %s (use 0 or more)", what,
                    clip(c, s));
    if (rule == R_FRACTION && !(v > 0 && v <= 1))
        return fail(L, npos(f, n), "'%s' must be in (0, 1], got %s (a fraction, e.g. 0.40)", what,
                    clip(c, s));
    *out = v;
    return 0;
}

/* One of names (NULL-terminated); *out is its index. `what` names the key. */
static int get_enum(loader *L, const yfile *f, const yaml_node_t *n, const char *what,
                    const char *const *names, int *out)
{
    const char *s;
    char c[48], list[200];
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    int i = in_list(s, names);
    if (i >= 0) {
        *out = i;
        return 0;
    }
    const char *near = et_closest_name(s, names, -1);
    if (near != NULL)
        return fail(L, npos(f, n), "unknown %s '%s' (did you mean '%s'? one of: %s)", what, clip(c, s),
                    near, join(list, sizeof list, names, -1));
    return fail(L, npos(f, n), "unknown %s '%s' (one of: %s)", what, clip(c, s),
                join(list, sizeof list, names, -1));
}

/* Length of the directory part of path, including the last '/'. */
static size_t dir_len(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? (size_t)(slash - path) + 1 : 0;
}

/*
 * rel resolved against the directory of the file f (absolute paths kept)
 * into out[ET_PATH_MAX]. -1 with an error at p if it does not fit.
 */
static int resolve(loader *L, const yfile *f, pos p, const char *what, const char *rel,
                   char out[ET_PATH_MAX])
{
    size_t d = rel[0] == '/' ? 0 : dir_len(f->path);
    size_t r = strlen(rel);
    if (d + r >= ET_PATH_MAX)
        return fail(L, p, "'%s' path is too long (at most %d bytes once resolved)", what,
                    ET_PATH_MAX - 1);
    memcpy(out, f->path, d);
    memcpy(out + d, rel, r + 1);
    return 0;
}

/* A file path, resolved against f's directory. An empty quoted string gives
 * "" when allow_empty. */
static int get_path(loader *L, const yfile *f, const yaml_node_t *n, const char *what,
                    int allow_empty, char out[ET_PATH_MAX])
{
    const char *s;
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    if (s[0] == '\0') {
        if (!allow_empty)
            return fail(L, npos(f, n), "'%s' is empty (give a file path)", what);
        out[0] = '\0';
        return 0;
    }
    return resolve(L, f, npos(f, n), what, s, out);
}

/*
 * A name (server name, run name): 1..ET_NAME_MAX-1 characters from letters,
 * digits, '-', '_', '.', not starting with '-' or '.' (names end up in
 * files, tables and command lines).
 */
static int get_name(loader *L, const yfile *f, const yaml_node_t *n, const char *what,
                    char out[ET_NAME_MAX])
{
    const char *s;
    char c[48];
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    size_t len = strlen(s);
    if (len == 0)
        return fail(L, npos(f, n), "%s is empty (give a name such as mec-a)", what);
    if (len >= ET_NAME_MAX)
        return fail(L, npos(f, n), "%s '%s' is too long (at most %d characters)", what, clip(c, s),
                    ET_NAME_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.') ||
            (i == 0 && (ch == '-' || ch == '.')))
            return fail(L, npos(f, n),
                        "%s '%s' has an invalid character (use letters, digits, '-', '_', '.'; not first '-' or '.')",
                        what, clip(c, s));
    }
    memcpy(out, s, len + 1);
    return 0;
}

/* A host name or address: letters, digits, '.', '-', '_', ':'; not first '-'. */
static int get_host(loader *L, const yfile *f, const yaml_node_t *n, char out[256])
{
    const char *s;
    char c[48];
    if (get_scalar(L, f, n, "host", &s) != 0)
        return -1;
    size_t len = strlen(s);
    if (len == 0 || len >= 256)
        return fail(L, npos(f, n), "host '%s' must have 1 to 255 characters (a host name or address)",
                    clip(c, s));
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':') || (i == 0 && ch == '-'))
            return fail(L, npos(f, n),
                        "host '%s' has an invalid character (a host name or address: letters, digits, '.', '-', ':')",
                        clip(c, s));
    }
    memcpy(out, s, len + 1);
    return 0;
}

/* A bandwidth > 0 in bytes/s. */
static int get_bandwidth(loader *L, const yfile *f, const yaml_node_t *n, double *out)
{
    const char *s, *why;
    char c[48];
    if (get_scalar(L, f, n, "bandwidth", &s) != 0)
        return -1;
    if (et_parse_bandwidth(s, out, &why) != 0)
        return fail(L, npos(f, n), "bad bandwidth '%s': %s", clip(c, s), why);
    if (!(*out > 0))
        return fail(L, npos(f, n), "bandwidth must be positive, got '%s' (a link needs some bandwidth)",
                    clip(c, s));
    return 0;
}

/* A latency >= 0 in seconds. */
static int get_latency(loader *L, const yfile *f, const yaml_node_t *n, double *out)
{
    const char *s, *why;
    char c[48];
    if (get_scalar(L, f, n, "latency", &s) != 0)
        return -1;
    if (et_parse_duration(s, out, &why) != 0)
        return fail(L, npos(f, n), "bad latency '%s': %s", clip(c, s), why);
    return 0;
}

/* A memory size > 0 in bytes. */
static int get_memory(loader *L, const yfile *f, const yaml_node_t *n, uint64_t *out)
{
    const char *s, *why;
    char c[48];
    if (get_scalar(L, f, n, "memory", &s) != 0)
        return -1;
    if (et_parse_size(s, out, &why) != 0)
        return fail(L, npos(f, n), "bad memory '%s': %s", clip(c, s), why);
    if (*out == 0)
        return fail(L, npos(f, n), "memory must be positive, got '%s' (what the worker may use, e.g. 4GiB)",
                    clip(c, s));
    return 0;
}

/* ------------------------------------------------------------------ */
/* cluster                                                             */

/*
 * One servers entry. Merged by name into L->srv: a name from an earlier
 * list (another file) is replaced; a name repeated within this list (seq) is
 * an error.
 */
static int apply_server(loader *L, const yfile *f, const yaml_node_t *item, int seq)
{
    if (want_map(L, f, item, "server") != 0 || check_keys(L, f, item, server_keys, "server") != 0)
        return -1;
    srv_entry s;
    memset(&s, 0, sizeof s);
    strcpy(s.s.host, "localhost");
    s.s.slots = 1;
    s.at = npos(f, item);
    s.s.line = s.at.line;
    s.s.col = s.at.col;
    s.seq = seq;
    int has_name = 0, has_gflops = 0, has_memory = 0;
    for (const yaml_node_pair_t *p = item->data.mapping.pairs.start;
         p < item->data.mapping.pairs.top; p++) {
        const char *k = text(node(f, p->key));
        const yaml_node_t *v = node(f, p->value);
        int rc = 0;
        if (strcmp(k, "name") == 0) {
            rc = get_name(L, f, v, "server name", s.s.name);
            s.name_at = npos(f, v);
            has_name = 1;
        } else if (strcmp(k, "host") == 0) {
            rc = get_host(L, f, v, s.s.host);
        } else if (strcmp(k, "gflops") == 0) {
            rc = get_real(L, f, v, "gflops", R_POS, &s.s.gflops);
            has_gflops = 1;
        } else if (strcmp(k, "memory") == 0) {
            rc = get_memory(L, f, v, &s.s.memory);
            has_memory = 1;
        } else if (strcmp(k, "slots") == 0) {
            rc = get_int(L, f, v, "slots", 1, SLOTS_MAX, &s.s.slots);
        }
        if (rc != 0)
            return -1;
    }
    if (!has_name)
        return fail(L, s.at, "server is missing required key 'name' (every server needs a unique name, e.g. name: mec-a)");
    if (!has_gflops)
        return fail(L, s.at,
                    "server '%s' is missing required key 'gflops' (its sustained fp32 training GFLOP/s, e.g. gflops: 400)",
                    s.s.name);
    if (!has_memory)
        return fail(L, s.at,
                    "server '%s' is missing required key 'memory' (what its worker may use, e.g. memory: 4GiB)",
                    s.s.name);
    int i = strmap_get(&L->srv_index, s.s.name);
    if (i >= 0) {
        if (L->srv[i].seq == seq)
            return fail(L, s.name_at, "duplicate server name '%s' (first defined at line %d; names must be unique)",
                        s.s.name, L->srv[i].at.line);
        L->srv[i] = s;
        return 0;
    }
    if (L->nsrv >= SERVERS_MAX)
        return fail(L, s.at, "too many servers (at most %d)", SERVERS_MAX);
    if (L->nsrv == L->capsrv) {
        L->capsrv = L->capsrv ? 2 * L->capsrv : 8;
        L->srv = et_xrealloc(L->srv, (size_t)L->capsrv * sizeof *L->srv);
    }
    strmap_put(&L->srv_index, s.s.name, L->nsrv);
    L->srv[L->nsrv++] = s;
    return 0;
}

/* The map key of the unordered pair {a, b}: "a\nb" with a < b (names
 * never hold a newline). */
static void pair_key(char key[2 * ET_NAME_MAX], const char *a, const char *b)
{
    if (strcmp(a, b) > 0) {
        const char *t = a;
        a = b;
        b = t;
    }
    snprintf(key, 2 * ET_NAME_MAX, "%s\n%s", a, b);
}

/*
 * One links.pairs entry. Names are checked against the servers only once
 * every file is read (finish). Merged by unordered pair like servers.
 */
static int apply_pair(loader *L, const yfile *f, const yaml_node_t *item, int seq)
{
    if (want_map(L, f, item, "link") != 0 || check_keys(L, f, item, pair_keys, "link") != 0)
        return -1;
    pair_entry e;
    memset(&e, 0, sizeof e);
    e.at = npos(f, item);
    e.seq = seq;
    int has_between = 0;
    for (const yaml_node_pair_t *p = item->data.mapping.pairs.start;
         p < item->data.mapping.pairs.top; p++) {
        const char *k = text(node(f, p->key));
        const yaml_node_t *v = node(f, p->value);
        if (strcmp(k, "between") == 0) {
            if (want_seq(L, f, v, "between") != 0)
                return -1;
            long cnt = v->data.sequence.items.top - v->data.sequence.items.start;
            if (cnt != 2)
                return fail(L, npos(f, v),
                            "'between' must name exactly two servers, got %ld (e.g. between: [mec-a, jetson-1])",
                            cnt);
            const yaml_node_t *a = node(f, v->data.sequence.items.start[0]);
            const yaml_node_t *b = node(f, v->data.sequence.items.start[1]);
            if (get_name(L, f, a, "server name", e.a) != 0 || get_name(L, f, b, "server name", e.b) != 0)
                return -1;
            e.a_at = npos(f, a);
            e.b_at = npos(f, b);
            if (strcmp(e.a, e.b) == 0)
                return fail(L, npos(f, v), "link between '%s' and itself (a link joins two different servers)",
                            e.a);
            has_between = 1;
        } else if (strcmp(k, "bandwidth") == 0) {
            if (get_bandwidth(L, f, v, &e.bw) != 0)
                return -1;
            e.has_bw = 1;
        } else if (strcmp(k, "latency") == 0) {
            if (get_latency(L, f, v, &e.lat) != 0)
                return -1;
            e.has_lat = 1;
        }
    }
    if (!has_between)
        return fail(L, e.at, "link is missing required key 'between' (name its two servers: between: [a, b])");
    char key[2 * ET_NAME_MAX];
    pair_key(key, e.a, e.b);
    int i = strmap_get(&L->pair_index, key);
    if (i >= 0) {
        pair_entry *o = &L->pair[i];
        if (o->seq == seq)
            return fail(L, e.at, "duplicate link between '%s' and '%s' (already given at line %d)", e.a, e.b,
                        o->at.line);
        *o = e;
        return 0;
    }
    if (L->npair == L->cappair) {
        L->cappair = L->cappair ? 2 * L->cappair : 8;
        L->pair = et_xrealloc(L->pair, (size_t)L->cappair * sizeof *L->pair);
    }
    strmap_put(&L->pair_index, key, L->npair);
    L->pair[L->npair++] = e;
    return 0;
}

/* links.default: replaces any earlier default whole. */
static int apply_default_link(loader *L, const yfile *f, const yaml_node_t *n)
{
    if (want_map(L, f, n, "links.default") != 0 ||
        check_keys(L, f, n, default_keys, "links.default") != 0)
        return -1;
    const yaml_node_t *bw = find(f, n, "bandwidth"), *lat = find(f, n, "latency");
    if (bw == NULL)
        return fail(L, npos(f, n),
                    "links.default is missing required key 'bandwidth' (e.g. default: {bandwidth: 1Gbps, latency: 1ms})");
    et_link l = {0.0, 0.0};
    if (get_bandwidth(L, f, bw, &l.bandwidth) != 0)
        return -1;
    if (lat != NULL && get_latency(L, f, lat, &l.latency) != 0)
        return -1;
    L->def = l;
    L->has_default = 1;
    return 0;
}

/* The cluster section of one file. */
static int apply_cluster(loader *L, const yfile *f, const yaml_node_t *n)
{
    if (want_map(L, f, n, "cluster") != 0 || check_keys(L, f, n, cluster_keys, "cluster") != 0)
        return -1;
    L->has_cluster = 1;
    L->cluster_at = npos(f, n);
    for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = text(node(f, p->key));
        const yaml_node_t *v = node(f, p->value);
        if (strcmp(k, "servers") == 0) {
            if (want_seq(L, f, v, "servers") != 0)
                return -1;
            int seq = ++L->seq_counter;
            for (const yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++)
                if (apply_server(L, f, node(f, *it), seq) != 0)
                    return -1;
        } else if (strcmp(k, "links") == 0) {
            if (want_map(L, f, v, "links") != 0 || check_keys(L, f, v, links_keys, "links") != 0)
                return -1;
            const yaml_node_t *def = find(f, v, "default"), *pairs = find(f, v, "pairs");
            if (def != NULL && apply_default_link(L, f, def) != 0)
                return -1;
            if (pairs != NULL) {
                if (want_seq(L, f, pairs, "pairs") != 0)
                    return -1;
                int seq = ++L->seq_counter;
                for (const yaml_node_item_t *it = pairs->data.sequence.items.start;
                     it < pairs->data.sequence.items.top; it++)
                    if (apply_pair(L, f, node(f, *it), seq) != 0)
                        return -1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* model, training, parallel, emulation                                */

/* The model section: replaces any earlier model whole. A preset first, then
 * the numbers given override it; without a preset all five are required. */
static int apply_model(loader *L, const yfile *f, const yaml_node_t *n)
{
    char c[48], list[300];
    if (want_map(L, f, n, "model") != 0 || check_keys(L, f, n, model_keys, "model") != 0)
        return -1;
    et_config *cfg = L->c;
    gpt2_config m = {0, 0, 0, 0, 0};
    cfg->model_preset[0] = '\0';
    L->has_model = 1;
    pos n_embd_at = npos(f, n), n_head_at = n_embd_at;   /* where a divisibility error points */
    int n_head_given = 0;
    const yaml_node_t *preset = find(f, n, "preset");
    if (preset != NULL) {
        const char *s;
        if (get_scalar(L, f, preset, "preset", &s) != 0)
            return -1;
        if (strlen(s) >= ET_NAME_MAX || gpt2_config_preset(s, &m) != 0) {
            const char *near = et_closest_name(s, gpt2_preset_names, -1);
            join(list, sizeof list, gpt2_preset_names, -1);
            if (near != NULL)
                return fail(L, npos(f, preset), "unknown model preset '%s' (did you mean '%s'? presets: %s)",
                            clip(c, s), near, list);
            return fail(L, npos(f, preset), "unknown model preset '%s' (presets: %s)", clip(c, s), list);
        }
        strcpy(cfg->model_preset, s);
        n_embd_at = npos(f, preset);
    }
    static const struct {
        const char *key;
        int hi;
    } nums[] = {{"n_layer", 1024}, {"n_head", 1024}, {"n_embd", 65536},
                {"vocab_size", 1 << 24}, {"block_size", 1 << 20}};
    int *dst[] = {&m.n_layer, &m.n_head, &m.n_embd, &m.vocab_size, &m.block_size};
    const char *missing[5];
    int nmissing = 0;
    for (int i = 0; i < 5; i++) {
        const yaml_node_t *v = find(f, n, nums[i].key);
        if (v == NULL) {
            if (preset == NULL)
                missing[nmissing++] = nums[i].key;
            continue;
        }
        if (get_int(L, f, v, nums[i].key, 1, nums[i].hi, dst[i]) != 0)
            return -1;
        if (i == 1) {
            n_head_at = npos(f, v);
            n_head_given = 1;
        }
        if (i == 2)
            n_embd_at = npos(f, v);
    }
    if (nmissing > 0)
        return fail(L, npos(f, n), "model needs a preset or all of n_layer, n_head, n_embd, vocab_size, block_size (missing: %s)",
                    join(list, sizeof list, missing, nmissing));
    if (m.n_embd % m.n_head != 0) {
        int lo = m.n_embd / m.n_head * m.n_head, hi = lo + m.n_head;
        pos at = n_head_given ? n_head_at : n_embd_at;
        if (lo > 0)
            return fail(L, at, "n_embd %d is not divisible by n_head %d (n_embd must be a multiple of n_head, e.g. %d or %d)",
                        m.n_embd, m.n_head, lo, hi);
        return fail(L, at, "n_embd %d is not divisible by n_head %d (n_embd must be a multiple of n_head, e.g. %d)",
                    m.n_embd, m.n_head, hi);
    }
    cfg->model = m;
    return 0;
}

/* training.target: replaces any earlier target whole; needs one key. */
static int apply_target(loader *L, const yfile *f, const yaml_node_t *n)
{
    et_training *t = &L->c->training;
    if (want_map(L, f, n, "target") != 0 || check_keys(L, f, n, target_keys, "target") != 0)
        return -1;
    const yaml_node_t *loss = find(f, n, "val_loss"), *acc = find(f, n, "val_accuracy");
    if (loss == NULL && acc == NULL)
        return fail(L, npos(f, n), "target needs val_loss or val_accuracy (e.g. target: {val_loss: 2.2})");
    t->target_val_loss = NAN;
    t->target_val_accuracy = NAN;
    if (loss != NULL && get_real(L, f, loss, "val_loss", R_POS, &t->target_val_loss) != 0)
        return -1;
    if (acc != NULL && get_real(L, f, acc, "val_accuracy", R_FRACTION, &t->target_val_accuracy) != 0)
        return -1;
    return 0;
}

/* training.checkpoint: replaces any earlier one whole; path required
 * ("" = no checkpoints). */
static int apply_checkpoint(loader *L, const yfile *f, const yaml_node_t *n)
{
    et_training *t = &L->c->training;
    if (want_map(L, f, n, "checkpoint") != 0 || check_keys(L, f, n, checkpoint_keys, "checkpoint") != 0)
        return -1;
    const yaml_node_t *path = find(f, n, "path"), *every = find(f, n, "every");
    if (path == NULL)
        return fail(L, npos(f, n), "checkpoint is missing required key 'path' (e.g. checkpoint: {path: ckpt/run.h5, every: 100})");
    t->checkpoint_every = 100;
    if (get_path(L, f, path, "checkpoint.path", 1, t->checkpoint_path) != 0)
        return -1;
    if (every != NULL && get_int(L, f, every, "checkpoint.every", 1, INT_MAX, &t->checkpoint_every) != 0)
        return -1;
    return 0;
}

/* The training section: key by key. */
static int apply_training(loader *L, const yfile *f, const yaml_node_t *n)
{
    et_training *t = &L->c->training;
    if (want_map(L, f, n, "training") != 0 || check_keys(L, f, n, training_keys, "training") != 0)
        return -1;
    L->has_training = 1;
    L->training_at = npos(f, n);
    for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = text(node(f, p->key));
        const yaml_node_t *v = node(f, p->value);
        pos at = npos(f, v);
        int rc = 0;
        if (strcmp(k, "dataset") == 0) {
            rc = get_path(L, f, v, "dataset", 0, t->dataset);
            L->has_dataset = 1;
        } else if (strcmp(k, "seq_len") == 0) {
            rc = get_int(L, f, v, k, 1, 1 << 20, &t->seq_len);
            L->has_seq_len = 1;
            L->seq_at = at;
        } else if (strcmp(k, "global_batch") == 0) {
            rc = get_int(L, f, v, k, 1, 1 << 24, &t->global_batch);
        } else if (strcmp(k, "micro_batch") == 0) {
            /* "auto" (0): the planner chooses it with the micro-batch count. */
            if (v->type == YAML_SCALAR_NODE && strcmp(text(v), "auto") == 0)
                t->micro_batch = 0;
            else
                rc = get_int(L, f, v, k, 1, 1 << 24, &t->micro_batch);
            L->has_micro = 1;
            L->mb_at = at;
        } else if (strcmp(k, "lr") == 0) {
            rc = get_real(L, f, v, k, R_POS, &t->lr);
            L->lr_at = at;
        } else if (strcmp(k, "min_lr") == 0) {
            rc = get_real(L, f, v, k, R_NONNEG, &t->min_lr);
            L->min_lr_at = at;
        } else if (strcmp(k, "warmup_steps") == 0) {
            rc = get_int(L, f, v, k, 0, INT_MAX, &t->warmup_steps);
        } else if (strcmp(k, "lr_decay") == 0) {
            rc = get_enum(L, f, v, k, decay_names, &t->lr_decay_cosine);
        } else if (strcmp(k, "weight_decay") == 0) {
            rc = get_real(L, f, v, k, R_NONNEG, &t->weight_decay);
        } else if (strcmp(k, "grad_clip") == 0) {
            rc = get_real(L, f, v, k, R_NONNEG, &t->grad_clip);
        } else if (strcmp(k, "max_steps") == 0) {
            rc = get_long(L, f, v, k, 1, 1000000000000000L, &t->max_steps);
        } else if (strcmp(k, "target") == 0) {
            rc = apply_target(L, f, v);
        } else if (strcmp(k, "eval_every") == 0) {
            rc = get_int(L, f, v, k, 0, INT_MAX, &t->eval_every);
        } else if (strcmp(k, "eval_tokens") == 0) {
            rc = get_long(L, f, v, k, 1, 1000000000000000L, &t->eval_tokens);
        } else if (strcmp(k, "checkpoint") == 0) {
            rc = apply_checkpoint(L, f, v);
        } else if (strcmp(k, "seed") == 0) {
            rc = get_u64(L, f, v, k, &t->seed);
        } else if (strcmp(k, "init") == 0) {
            rc = get_path(L, f, v, k, 1, t->init);
        } else if (strcmp(k, "sampling") == 0) {
            rc = get_enum(L, f, v, k, sampling_names, &t->sampling);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* pipeline/tensor/data: "auto" (0) or 1..65536. */
static int get_degree(loader *L, const yfile *f, const yaml_node_t *n, const char *what, int *out)
{
    if (n->type == YAML_SCALAR_NODE && strcmp(text(n), "auto") == 0) {
        *out = 0;
        return 0;
    }
    const char *s;
    if (get_scalar(L, f, n, what, &s) != 0)
        return -1;
    const char *p = s + (s[0] == '-');
    int digits = *p != '\0';
    for (; *p; p++)
        digits &= isdigit((unsigned char)*p) != 0;
    if (!digits) {
        char c[48];
        return fail(L, npos(f, n), "'%s' must be a positive whole number or auto, got '%s' (e.g. %s: 2)",
                    what, clip(c, s), what);
    }
    return get_int(L, f, n, what, 1, 65536, out);
}

/* The parallel section: key by key. */
static int apply_parallel(loader *L, const yfile *f, const yaml_node_t *n)
{
    et_parallel *par = &L->c->parallel;
    if (want_map(L, f, n, "parallel") != 0 || check_keys(L, f, n, parallel_keys, "parallel") != 0)
        return -1;
    L->parallel_at = npos(f, n);
    for (const yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = text(node(f, p->key));
        const yaml_node_t *v = node(f, p->value);
        int rc = 0;
        if (strcmp(k, "schedule") == 0) {
            rc = get_enum(L, f, v, k, schedule_names, &par->schedule);
        } else if (strcmp(k, "pipeline") == 0) {
            rc = get_degree(L, f, v, k, &par->pipeline);
        } else if (strcmp(k, "tensor") == 0) {
            rc = get_degree(L, f, v, k, &par->tensor);
            L->tensor_at = npos(f, v);
        } else if (strcmp(k, "data") == 0) {
            rc = get_degree(L, f, v, k, &par->data);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The emulation section. */
static int apply_emulation(loader *L, const yfile *f, const yaml_node_t *n)
{
    if (want_map(L, f, n, "emulation") != 0 || check_keys(L, f, n, emulation_keys, "emulation") != 0)
        return -1;
    const yaml_node_t *clock = find(f, n, "clock");
    if (clock != NULL && get_enum(L, f, clock, "clock", clock_names, &L->c->clock) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* files and includes                                                  */

static int load_file(loader *L, const char *path, const pos *from);

/* Keep a copy of a file name for the loader's lifetime (pos.file points to it). */
static const char *keep_path(loader *L, const char *path)
{
    if (L->npaths == L->cappaths) {
        L->cappaths = L->cappaths ? 2 * L->cappaths : 8;
        L->paths = et_xrealloc(L->paths, (size_t)L->cappaths * sizeof *L->paths);
    }
    L->paths[L->npaths] = et_xstrdup(path);
    return L->paths[L->npaths++];
}

/* `include:` of file f: one path or a list, each loaded (recursively) in order. */
static int apply_include(loader *L, const yfile *f, const yaml_node_t *n)
{
    char buf[ET_PATH_MAX], k[80];
    const yaml_node_item_t *start = NULL, *top = NULL;
    int one = n->type == YAML_SCALAR_NODE;
    if (n->type == YAML_SEQUENCE_NODE) {
        start = n->data.sequence.items.start;
        top = n->data.sequence.items.top;
    } else if (!one) {
        return fail(L, npos(f, n), "'include' must be a file name or a list of file names, got %s (e.g. include: cluster.yaml)",
                    kind_name(k, n));
    }
    for (int i = 0; one ? i < 1 : start + i < top; i++) {
        const yaml_node_t *item = one ? n : node(f, start[i]);
        if (get_path(L, f, item, "include", 0, buf) != 0)
            return -1;
        pos at = npos(f, item);
        if (load_file(L, buf, &at) != 0)
            return -1;
    }
    return 0;
}

/* Apply one file's document: its includes first, then its own sections. */
static int apply_root(loader *L, const yfile *f, const yaml_node_t *root)
{
    char k[80];
    if (root->type != YAML_MAPPING_NODE)
        return fail(L, npos(f, root),
                    "a config must be a mapping of sections, got %s (start with cluster:, model: and training:)",
                    kind_name(k, root));
    if (check_keys(L, f, root, top_keys, "the top level") != 0)
        return -1;
    const yaml_node_t *inc = find(f, root, "include");
    if (inc != NULL && apply_include(L, f, inc) != 0)
        return -1;
    for (const yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        const char *key = text(node(f, p->key));
        const yaml_node_t *v = node(f, p->value);
        int rc = 0;
        if (strcmp(key, "name") == 0) {
            rc = get_name(L, f, v, "name", L->c->name);
            L->has_name = 1;
        } else if (strcmp(key, "cluster") == 0) {
            rc = apply_cluster(L, f, v);
        } else if (strcmp(key, "model") == 0) {
            rc = apply_model(L, f, v);
        } else if (strcmp(key, "training") == 0) {
            rc = apply_training(L, f, v);
        } else if (strcmp(key, "parallel") == 0) {
            rc = apply_parallel(L, f, v);
        } else if (strcmp(key, "emulation") == 0) {
            rc = apply_emulation(L, f, v);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* "cannot open" for the main file ("file: ...") or an include ("at: ..."). */
static int open_fail(loader *L, const char *path, const pos *from, int err)
{
    char c[48];
    if (from == NULL)
        return fail(L, (pos){path, 0, 0}, "cannot open (%s)", strerror(err));
    return fail(L, *from, "cannot open included file '%s' (%s)", clip(c, path), strerror(err));
}

/* Read a whole regular file (at most FILE_BYTES_MAX) into *buf (malloc'd). */
static int read_file(loader *L, const char *path, const pos *from, unsigned char **buf, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return open_fail(L, path, from, errno);
    struct stat st;
    int err = fstat(fileno(fp), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (err != 0) {
        fclose(fp);
        return open_fail(L, path, from, err);
    }
    size_t cap = 4096, n = 0;
    unsigned char *b = et_xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= (size_t)FILE_BYTES_MAX) {
                free(b);
                fclose(fp);
                return fail(L, from ? *from : (pos){path, 0, 0},
                            "%s is too large for a config (at most %ld MiB)", path, FILE_BYTES_MAX >> 20);
            }
            cap *= 2;
            b = et_xrealloc(b, cap);
        }
        size_t got = fread(b + n, 1, cap - n, fp);
        n += got;
        if (got == 0) {
            if (ferror(fp)) {
                int err = errno;
                free(b);
                fclose(fp);
                return open_fail(L, path, from, err ? err : EIO);
            }
            break;
        }
    }
    fclose(fp);
    *buf = b;
    *len = n;
    return 0;
}

/* Turn a libyaml failure into "file:line:col: invalid YAML: problem (context)". */
static int yaml_fail(loader *L, const char *path, const yaml_parser_t *p, const unsigned char *buf,
                     size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        return et_errf(L->e, ET_ERUNTIME, "%s: out of memory while parsing YAML", path);
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->error == YAML_READER_ERROR) {
        int line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (buf[i] == '\n') {
                line++;
                col = 1;
            } else if ((buf[i] & 0xc0) != 0x80) {     /* columns count characters, like libyaml's */
                col++;
            }
        }
        if (p->problem_value != -1)
            return fail(L, (pos){path, line, col}, "invalid YAML: %s (byte 0x%02x; the file must be UTF-8 text)",
                        problem, (unsigned)p->problem_value & 0xffu);
        return fail(L, (pos){path, line, col}, "invalid YAML: %s (the file must be UTF-8 text)", problem);
    }
    pos at = {path, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1};
    if (p->context != NULL)
        return fail(L, at, "invalid YAML: %s (%s that started at line %d, column %d)", problem, p->context,
                    (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    return fail(L, at, "invalid YAML: %s (check indentation, colons and quoting)", problem);
}

/*
 * Refuse flow nesting ('[' and '{') deeper than NEST_MAX before libyaml sees
 * it: libyaml's scanner takes time quadratic in the nesting depth (200000
 * brackets take minutes). The count ignores context (brackets in quotes and
 * comments count too), which only errs on the side of refusing; no real
 * config nests more than a few levels.
 */
#define NEST_MAX 256
static int check_nesting(loader *L, const char *path, const unsigned char *buf, size_t len)
{
    int depth = 0, line = 1, col = 1;
    for (size_t i = 0; i < len; i++, col++) {
        if (buf[i] == '\n') {
            line++;
            col = 0;
        } else if (buf[i] == '[' || buf[i] == '{') {
            if (++depth > NEST_MAX)
                return fail(L, (pos){path, line, col},
                            "nested deeper than %d levels of [ ] and { } (flatten the structure)", NEST_MAX);
        } else if ((buf[i] == ']' || buf[i] == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

/*
 * Parse buf as exactly one YAML document into f->doc (the caller deletes it
 * on success). An empty stream or a second document is an error.
 */
static int parse_yaml(loader *L, yfile *f, const unsigned char *buf, size_t len)
{
    yaml_parser_t p;
    if (check_nesting(L, f->path, buf, len) != 0)
        return -1;
    if (!yaml_parser_initialize(&p))
        return et_errf(L->e, ET_ERUNTIME, "%s: out of memory while parsing YAML", f->path);
    yaml_parser_set_input_string(&p, buf, len);
    int rc = 0;
    if (!yaml_parser_load(&p, &f->doc)) {
        rc = yaml_fail(L, f->path, &p, buf, len);
        yaml_parser_delete(&p);
        return rc;
    }
    if (yaml_document_get_root_node(&f->doc) == NULL) {
        rc = fail(L, (pos){f->path, 0, 0}, "empty config (expected a mapping with cluster:, model: and training:)");
    } else {
        yaml_document_t extra;
        if (!yaml_parser_load(&p, &extra)) {
            rc = yaml_fail(L, f->path, &p, buf, len);
        } else {
            if (yaml_document_get_root_node(&extra) != NULL)
                rc = fail(L, (pos){f->path, (int)extra.start_mark.line + 1, (int)extra.start_mark.column + 1},
                          "a second YAML document (a config is one document: remove the '---' line)");
            yaml_document_delete(&extra);
        }
    }
    if (rc != 0)
        yaml_document_delete(&f->doc);
    yaml_parser_delete(&p);
    return rc;
}

/*
 * Read, parse and apply one file (and, first, what it includes). from is
 * the position of the include that names it, NULL for the main file.
 */
static int load_file(loader *L, const char *path, const pos *from)
{
    const char *shown = keep_path(L, path);
    unsigned char *buf = NULL;
    size_t len = 0;
    if (read_file(L, shown, from, &buf, &len) != 0)
        return -1;
    char *real = realpath(shown, NULL);
    if (real == NULL)
        real = et_xstrdup(shown);
    int rc = 0;
    for (int i = 0; i < L->depth && rc == 0; i++) {
        if (strcmp(L->stack_real[i], real) != 0)
            continue;
        char chain[700];
        size_t used = 0;
        chain[0] = '\0';
        for (int j = i; j < L->depth && used < sizeof chain; j++)
            used += (size_t)snprintf(chain + used, sizeof chain - used, "%s -> ", L->stack_path[j]);
        if (used < sizeof chain)
            snprintf(chain + used, sizeof chain - used, "%s", shown);
        rc = fail(L, *from, "include cycle: %s (a file cannot include itself, directly or through others)", chain);
    }
    if (rc == 0 && L->depth >= INCLUDE_DEPTH_MAX)
        rc = fail(L, *from, "includes nested more than %d deep (flatten the include chain)", INCLUDE_DEPTH_MAX);
    if (rc == 0 && ++L->nloads > FILES_MAX)
        rc = fail(L, *from, "more than %d files read through includes (does a file get included over and over?)",
                  FILES_MAX);
    if (rc != 0) {
        free(real);
        free(buf);
        return -1;
    }
    L->stack_real[L->depth] = real;
    L->stack_path[L->depth] = shown;
    L->depth++;
    yfile f = {.path = shown};
    rc = parse_yaml(L, &f, buf, len);
    if (rc == 0) {
        rc = apply_root(L, &f, yaml_document_get_root_node(&f.doc));
        yaml_document_delete(&f.doc);
    }
    L->depth--;
    free(real);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the merged result                                                   */

/* "unknown server 'x' in link (did you mean ...? servers: ...)". */
static int unknown_server(loader *L, pos at, const char *name)
{
    const char **names = et_xmalloc((size_t)L->nsrv * sizeof *names);
    for (int i = 0; i < L->nsrv; i++)
        names[i] = L->srv[i].s.name;
    char list[400];
    join(list, sizeof list, names, L->nsrv);
    const char *near = et_closest_name(name, names, L->nsrv);
    int rc;
    if (near != NULL)
        rc = fail(L, at, "unknown server '%s' in link (did you mean '%s'? servers: %s)", name, near, list);
    else
        rc = fail(L, at, "unknown server '%s' in link (servers: %s)", name, list);
    free(names);
    return rc;
}

/* Build the servers array and the symmetric link matrix (default, then pairs);
 * every pair of distinct servers must end up with a link. */
static int build_cluster(loader *L)
{
    et_cluster *cl = &L->c->cluster;
    int n = L->nsrv;
    cl->n_servers = n;
    cl->servers = et_xcalloc((size_t)n, sizeof *cl->servers);
    cl->link = et_xcalloc((size_t)n * (size_t)n, sizeof *cl->link);
    for (int i = 0; i < n; i++)
        cl->servers[i] = L->srv[i].s;
    /* bandwidth 0 marks "no link yet" (a real link's bandwidth is > 0) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            cl->link[(size_t)i * n + j] = i == j ? (et_link){INFINITY, 0.0}
                                          : L->has_default ? L->def : (et_link){0.0, 0.0};
    for (int k = 0; k < L->npair; k++) {
        const pair_entry *e = &L->pair[k];
        int a = strmap_get(&L->srv_index, e->a), b = strmap_get(&L->srv_index, e->b);
        if (a < 0)
            return unknown_server(L, e->a_at, e->a);
        if (b < 0)
            return unknown_server(L, e->b_at, e->b);
        if (!e->has_bw && !L->has_default)
            return fail(L, e->at, "link between '%s' and '%s' has no bandwidth (give bandwidth: or set cluster.links.default)",
                        e->a, e->b);
        et_link l = {e->has_bw ? e->bw : L->def.bandwidth, e->has_lat ? e->lat : L->has_default ? L->def.latency : 0.0};
        cl->link[(size_t)a * n + b] = l;
        cl->link[(size_t)b * n + a] = l;
    }
    for (int j = 1; j < n; j++)
        for (int i = 0; i < j; i++)
            if (cl->link[(size_t)i * n + j].bandwidth == 0.0)
                return fail(L, L->srv[j].at,
                            "no link between servers '%s' and '%s' (add cluster.links.default: {bandwidth: 1Gbps, latency: 1ms} or a pair between them)",
                            cl->servers[i].name, cl->servers[j].name);
    if (L->has_default) {
        cl->default_link = L->def;
    } else {
        int *all = et_xmalloc((size_t)n * sizeof *all);
        for (int i = 0; i < n; i++)
            all[i] = i;
        cl->default_link = et_cluster_slowest(cl, all, n);
        free(all);
    }
    return 0;
}

/* Default run name: the main file's stem, made a valid name. */
static void default_name(const char *path, char out[ET_NAME_MAX])
{
    const char *base = path + dir_len(path);
    size_t len = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot != NULL && dot != base)
        len = (size_t)(dot - base);
    size_t k = 0;
    for (size_t i = 0; i < len && k < ET_NAME_MAX - 1; i++) {
        unsigned char ch = (unsigned char)base[i];
        int ok = isalnum(ch) || ch == '_' || (k > 0 && (ch == '-' || ch == '.'));
        out[k] = ok ? (char)ch : '_';
        k++;
    }
    out[k] = '\0';
    if (k == 0)
        strcpy(out, "config");
}

/* Required sections and the checks that span keys or files. */
static int finish(loader *L, const char *path)
{
    et_config *c = L->c;
    et_training *t = &c->training;
    pos none = {path, 0, 0};
    if (!L->has_cluster)
        return fail(L, none, "missing required section 'cluster' (list the servers, e.g. cluster: {servers: [{name: a, gflops: 400, memory: 4GiB}]})");
    if (L->nsrv == 0)
        return fail(L, L->cluster_at, "cluster has no servers (add cluster.servers: a list of {name, gflops, memory})");
    if (!L->has_model)
        return fail(L, none, "missing required section 'model' (e.g. model: {preset: gpt2})");
    if (!L->has_training)
        return fail(L, none, "missing required section 'training' (it needs at least dataset: PATH.h5)");
    if (!L->has_dataset)
        return fail(L, L->training_at, "training is missing required key 'dataset' (the HDF5 token file, e.g. dataset: data/fortunes.h5)");
    if (build_cluster(L) != 0)
        return -1;
    int block = c->model.block_size;
    if (!L->has_seq_len)
        t->seq_len = block < 128 ? block : 128;
    else if (t->seq_len > block)
        return fail(L, L->seq_at, "seq_len %d exceeds the model's block_size %d (use seq_len <= %d)", t->seq_len,
                    block, block);
    if (!L->has_micro) {
        t->micro_batch = t->global_batch;
    } else if (t->micro_batch > 0 && t->global_batch % t->micro_batch != 0) {
        int d = t->micro_batch < t->global_batch ? t->micro_batch : t->global_batch;
        while (t->global_batch % d != 0)
            d--;
        return fail(L, L->mb_at, "micro_batch %d does not divide global_batch %d (use a divisor of %d, e.g. %d)",
                    t->micro_batch, t->global_batch, t->global_batch, d);
    }
    if (t->min_lr > t->lr)
        return fail(L, L->min_lr_at.line ? L->min_lr_at : L->lr_at,
                    "min_lr %g exceeds lr %g (the cosine schedule decays from lr down to min_lr)", t->min_lr, t->lr);
    et_parallel *par = &c->parallel;
    if (par->tensor > 0 && c->model.n_head % par->tensor != 0)
        return fail(L, L->tensor_at, "tensor %d does not divide n_head %d (tensor-parallel ranks split the heads)",
                    par->tensor, c->model.n_head);
    if (par->pipeline > 0 && par->tensor > 0 && par->data > 0) {
        long ranks = (long)par->pipeline * par->tensor * par->data;
        int slots = et_cluster_total_slots(&c->cluster);
        if (ranks > slots)
            return fail(L, L->parallel_at,
                        "pipeline x tensor x data = %ld ranks but the cluster has %d slot%s (add servers or slots, or use auto)",
                        ranks, slots, slots == 1 ? "" : "s");
    }
    if (!L->has_name)
        default_name(path, c->name);
    return 0;
}

static void loader_free(loader *L)
{
    for (int i = 0; i < L->npaths; i++)
        free(L->paths[i]);
    free(L->paths);
    free(L->srv);
    free(L->pair);
    strmap_free(&L->srv_index);
    strmap_free(&L->pair_index);
}

/*
 * Load path (and what it includes), merge and validate. Returns a new
 * et_config owned by the caller (et_config_free), or NULL with e set:
 * ET_EINPUT for anything wrong with the files, ET_ERUNTIME only if libyaml
 * runs out of memory.
 */
et_config *et_config_load(const char *path, et_err *e)
{
    if (path == NULL || path[0] == '\0') {
        et_errf(e, ET_EINPUT, "config: no file name given (pass the path of a config YAML)");
        return NULL;
    }
    if (strlen(path) >= ET_PATH_MAX) {
        et_errf(e, ET_EINPUT, "config: file name too long (at most %d bytes)", ET_PATH_MAX - 1);
        return NULL;
    }
    et_config *c = et_xcalloc(1, sizeof *c);
    strcpy(c->path, path);
    et_training *t = &c->training;
    t->global_batch = 32;
    t->lr = 6e-4;
    t->grad_clip = 1.0;
    t->max_steps = 2000;
    t->target_val_loss = NAN;
    t->target_val_accuracy = NAN;
    t->eval_every = 50;
    t->eval_tokens = 65536;
    t->checkpoint_every = 100;
    t->seed = 1;
    t->sampling = ET_SAMPLING_SEQUENTIAL;
    c->parallel.schedule = ET_SCHED_AUTO;
    c->clock = ET_CLOCK_VIRTUAL;

    loader L;
    memset(&L, 0, sizeof L);
    L.e = e;
    L.c = c;
    int rc = load_file(&L, path, NULL);
    if (rc == 0)
        rc = finish(&L, path);
    loader_free(&L);
    if (rc != 0) {
        et_config_free(c);
        return NULL;
    }
    return c;
}

/* Free a config from et_config_load (NULL is fine). */
void et_config_free(et_config *c)
{
    if (c == NULL)
        return;
    free(c->cluster.servers);
    free(c->cluster.link);
    free(c);
}
