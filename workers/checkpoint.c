/*
 * checkpoint — plan-independent HDF5 checkpoints. See checkpoint.h for the
 * file layout, the MPI rules and the error contract.
 *
 * How it works, top to bottom:
 *   1. the model's tensor list (names and full shapes) is derived from the
 *      config alone, so every rank knows every dataset whatever it holds;
 *   2. a "group" hides MPI: with one process every collective helper is a
 *      no-op, with several they agree on success (and share the first
 *      failing rank's message) after every step that can fail;
 *   3. each shard tensor becomes a pair of HDF5 selections (file and memory)
 *      from its slabs; datasets are then written/read once per shard with
 *      collective transfers, ranks without a part using empty selections.
 */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CK_FORMAT "edgetrain-checkpoint"
#define CK_FORMAT_VERSION 1

/* ------------------------------------------------------------------------ */
/* The model's tensors, from the config alone                                */
/* ------------------------------------------------------------------------ */

typedef struct ck_tensor {
    char name[96];
    int ndim;
    hsize_t full[2];
} ck_tensor;

/* Append one tensor description to t[*k]. */
static void ck_add(ck_tensor *t, int *k, const char *name, int ndim, hsize_t d0, hsize_t d1)
{
    ck_tensor *x = &t[(*k)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim;
    x->full[0] = d0;
    x->full[1] = ndim == 2 ? d1 : 1;
}

/* Every tensor of the whole model in Hugging Face state-dict order, with its
 * full shape (DESIGN.md "Checkpoint"). Returns a new array (caller frees) and
 * its length in *n. */
static ck_tensor *ck_model_tensors(const gpt2_config *c, int *n)
{
    /* per block: leaf name, ndim, rows and columns in units of C */
    static const struct { const char *leaf; int ndim, r, cc; } blk[12] = {
        {"ln_1/weight", 1, 1, 0},        {"ln_1/bias", 1, 1, 0},
        {"attn/c_attn/weight", 2, 1, 3}, {"attn/c_attn/bias", 1, 3, 0},
        {"attn/c_proj/weight", 2, 1, 1}, {"attn/c_proj/bias", 1, 1, 0},
        {"ln_2/weight", 1, 1, 0},        {"ln_2/bias", 1, 1, 0},
        {"mlp/c_fc/weight", 2, 1, 4},    {"mlp/c_fc/bias", 1, 4, 0},
        {"mlp/c_proj/weight", 2, 4, 1},  {"mlp/c_proj/bias", 1, 1, 0},
    };
    hsize_t C = (hsize_t)c->n_embd;
    int k = 0;
    ck_tensor *t = et_xcalloc((size_t)(4 + 12 * c->n_layer), sizeof *t);
    ck_add(t, &k, "transformer/wte/weight", 2, (hsize_t)c->vocab_size, C);
    ck_add(t, &k, "transformer/wpe/weight", 2, (hsize_t)c->block_size, C);
    for (int i = 0; i < c->n_layer; i++)
        for (int j = 0; j < 12; j++) {
            char name[96];
            snprintf(name, sizeof name, "transformer/h/%d/%s", i, blk[j].leaf);
            ck_add(t, &k, name, blk[j].ndim, blk[j].r * C, blk[j].cc * C);
        }
    ck_add(t, &k, "transformer/ln_f/weight", 1, C, 0);
    ck_add(t, &k, "transformer/ln_f/bias", 1, C, 0);
    *n = k;
    return t;
}

/* Elements of a model tensor. */
static long long ck_numel(const ck_tensor *t)
{
    return (long long)t->full[0] * (long long)t->full[1];
}

/* Format a shape "[a,b]" or "[a]" into buf. */
static const char *ck_shape_str(char *buf, size_t n, int ndim, const hsize_t *d)
{
    if (ndim == 1)
        snprintf(buf, n, "[%llu]", (unsigned long long)d[0]);
    else if (ndim == 2)
        snprintf(buf, n, "[%llu,%llu]", (unsigned long long)d[0], (unsigned long long)d[1]);
    else
        snprintf(buf, n, "(%d dimensions)", ndim);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* The group of ranks sharing a file, MPI hidden                             */
/* ------------------------------------------------------------------------ */

typedef struct ck_group {
    int mpi;          /* 1: parallel HDF5 over comm; 0: one process, no MPI calls */
    MPI_Comm comm;
    int rank, size;
} ck_group;

/* Decide between MPI-IO and the POSIX driver: MPI only when it is
 * initialised, not finalised, and comm has more than one rank. */
static void ck_group_init(ck_group *g, MPI_Comm comm)
{
    int init = 0, fin = 0;
    g->mpi = 0;
    g->comm = comm;
    g->rank = 0;
    g->size = 1;
    MPI_Initialized(&init);
    if (init)
        MPI_Finalized(&fin);
    if (!init || fin || comm == MPI_COMM_NULL)
        return;
    int size = 1;
    MPI_Comm_size(comm, &size);
    if (size <= 1)
        return;
    g->mpi = 1;
    g->size = size;
    MPI_Comm_rank(comm, &g->rank);
}

/* Collective agreement: returns 1 if ok on every rank. Otherwise every rank
 * gets the message of the lowest failing rank into *e (overwriting a rank's
 * own later error), and 0 is returned everywhere. */
static int ck_agree(const ck_group *g, int ok, et_err *e)
{
    if (!g->mpi)
        return ok;
    int in[2] = {ok ? 1 : 0, g->rank}, out[2];
    MPI_Allreduce(in, out, 1, MPI_2INT, MPI_MINLOC, g->comm);
    if (out[0])
        return 1;
    MPI_Bcast(e, (int)sizeof *e, MPI_BYTE, out[1], g->comm);
    return 0;
}

/* Broadcast n bytes from rank 0. */
static void ck_bcast(const ck_group *g, void *p, size_t n)
{
    if (g->mpi)
        MPI_Bcast(p, (int)n, MPI_BYTE, 0, g->comm);
}

/* In-place sum (op MPI_SUM) or maximum (MPI_MAX) of n long longs over ranks. */
static void ck_reduce_ll(const ck_group *g, long long *a, int n, MPI_Op op)
{
    if (g->mpi)
        MPI_Allreduce(MPI_IN_PLACE, a, n, MPI_LONG_LONG, op, g->comm);
}

/* ------------------------------------------------------------------------ */
/* HDF5 helpers                                                              */
/* ------------------------------------------------------------------------ */

/* HDF5's automatic error printing, switched off while we run. */
typedef struct ck_quiet {
    H5E_auto2_t func;
    void *data;
} ck_quiet;

/* Remember the current handler in *q and silence HDF5's printing. */
static void ck_quiet_on(ck_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Put back the handler saved by ck_quiet_on. */
static void ck_quiet_off(const ck_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* File access properties: MPI-IO with collective metadata for a group, the
 * default POSIX driver otherwise. Caller closes. */
static hid_t ck_fapl(const ck_group *g)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (g->mpi) {
        H5Pset_fapl_mpio(fapl, g->comm, MPI_INFO_NULL);
        H5Pset_all_coll_metadata_ops(fapl, 1);
        H5Pset_coll_metadata_write(fapl, 1);
    }
    return fapl;
}

/* Data transfer properties: collective for a group. Caller closes. */
static hid_t ck_dxpl(const ck_group *g)
{
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (g->mpi)
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    return dxpl;
}

/* Is this shard tensor consistent with the model tensor (same name is
 * assumed): shape, slab bounds, slab order? Fills *e (ET_ERUNTIME: a bug in
 * the shard's descriptors) and returns -1 if not. */
static int ck_check_descriptor(const gpt2_tensor *t, const ck_tensor *m, et_err *e)
{
    int bad = t->ndim != m->ndim || t->full[0] != (long)m->full[0] ||
              (t->ndim == 2 && t->full[1] != (long)m->full[1]) || t->nslab < 0 || t->nslab > 3;
    long prev_full = -1, prev_local = -1;
    for (int s = 0; !bad && s < t->nslab; s++) {
        const gpt2_slab *sl = &t->slab[s];
        int d = sl->dim, o = 1 - d;
        bad = d < 0 || d >= t->ndim || sl->count < 0 || sl->full_off < 0 || sl->local_off < 0 ||
              sl->full_off + sl->count > t->full[d] || sl->local_off + sl->count > t->local[d] ||
              (t->ndim == 2 && t->local[o] != t->full[o]) ||
              /* HDF5 pairs file and memory elements in row-major order of each
               * selection: the slabs must keep the same order in both */
              sl->full_off < prev_full || sl->local_off < prev_local;
        prev_full = sl->full_off + sl->count;
        prev_local = sl->local_off + sl->count;
    }
    if (!bad && t->nslab == 0)
        bad = t->local[0] != t->full[0] || (t->ndim == 2 && t->local[1] != t->full[1]);
    if (!bad && (size_t)t->local[0] * (size_t)(t->ndim == 2 ? t->local[1] : 1) != t->numel)
        bad = 1;
    if (bad)
        return et_errf(e, ET_ERUNTIME, "checkpoint: shard tensor %s has an inconsistent descriptor "
                       "(shape or slabs do not fit the full tensor; a bug in the shard layout)", t->name);
    return 0;
}

/* Select in fspace (the full tensor) and mspace (the local tensor) the
 * elements this shard tensor holds; t NULL selects nothing. */
static void ck_select(hid_t fspace, hid_t mspace, const gpt2_tensor *t)
{
    if (!t) {
        H5Sselect_none(fspace);
        H5Sselect_none(mspace);
        return;
    }
    if (t->nslab == 0) {
        H5Sselect_all(fspace);
        H5Sselect_all(mspace);
        return;
    }
    for (int s = 0; s < t->nslab; s++) {
        const gpt2_slab *sl = &t->slab[s];
        hsize_t fstart[2] = {0, 0}, mstart[2] = {0, 0};
        hsize_t fcount[2] = {(hsize_t)t->full[0], (hsize_t)(t->ndim == 2 ? t->full[1] : 1)};
        hsize_t mcount[2] = {(hsize_t)t->local[0], (hsize_t)(t->ndim == 2 ? t->local[1] : 1)};
        fstart[sl->dim] = (hsize_t)sl->full_off;
        mstart[sl->dim] = (hsize_t)sl->local_off;
        fcount[sl->dim] = mcount[sl->dim] = (hsize_t)sl->count;
        H5S_seloper_t op = s == 0 ? H5S_SELECT_SET : H5S_SELECT_OR;
        H5Sselect_hyperslab(fspace, op, fstart, NULL, fcount, NULL);
        H5Sselect_hyperslab(mspace, op, mstart, NULL, mcount, NULL);
    }
}

/* Memory dataspace of a local tensor (a 1-element dummy when t is NULL). */
static hid_t ck_mspace(const gpt2_tensor *t)
{
    hsize_t d[2] = {1, 1};
    int nd = 1;
    if (t) {
        nd = t->ndim;
        d[0] = (hsize_t)t->local[0];
        d[1] = (hsize_t)(nd == 2 ? t->local[1] : 1);
    }
    return H5Screate_simple(nd, d, NULL);
}

/* Create every missing group on the way to the object `path` (a/b/c: a, a/b). */
static int ck_make_parents(hid_t file, const char *path, hid_t gcpl)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        htri_t ex = H5Lexists(file, buf, H5P_DEFAULT);
        if (ex < 0)
            return -1;
        if (!ex) {
            hid_t g = H5Gcreate2(file, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            if (g < 0)
                return -1;
            H5Gclose(g);
        }
        *p = '/';
    }
    return 0;
}

/* Write a scalar or 1-D attribute of n values of `mtype` stored as `ftype`. */
static int ck_attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, int n, const void *v)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mtype, v) < 0 ? -1 : 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

/* Write a fixed-length string attribute. */
static int ck_attr_write_str(hid_t obj, const char *name, const char *s)
{
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(s) + 1);
    H5Tset_strpad(ty, H5T_STR_NULLTERM);
    int rc = ck_attr_write(obj, name, ty, ty, 1, s);
    H5Tclose(ty);
    return rc;
}

/* Read the attribute `name` of obj: it must exist (else returns 0 and leaves
 * v untouched), be of class `cls` (H5T_INTEGER or H5T_FLOAT) and hold at most
 * max values; up to max values are converted to mtype into v, *count set to
 * how many the file held. Returns 1 read, 0 absent, -1 wrong kind. */
static int ck_attr_read(hid_t obj, const char *name, H5T_class_t cls, hid_t mtype, int max,
                        void *v, int *count)
{
    if (H5Aexists(obj, name) <= 0)
        return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    int rc = -1;
    if (H5Tget_class(ty) == cls && np >= 1 && np <= max && H5Aread(a, mtype, v) >= 0) {
        rc = 1;
        if (count)
            *count = (int)np;
    }
    H5Tclose(ty);
    H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Model attributes and the run position                                     */
/* ------------------------------------------------------------------------ */

/* The model attributes, in gpt2_config order. */
static const char *const ck_cfg_names[5] = {"n_layer", "n_head", "n_embd", "vocab_size", "block_size"};

/* The config's five numbers, in ck_cfg_names order. */
static void ck_cfg_values(const gpt2_config *c, int v[5])
{
    v[0] = c->n_layer;
    v[1] = c->n_head;
    v[2] = c->n_embd;
    v[3] = c->vocab_size;
    v[4] = c->block_size;
}

/* Read the model attributes of an open file into *c. ET_EINPUT naming the
 * missing or malformed attribute on failure. */
static int ck_read_cfg(hid_t file, const char *path, gpt2_config *c, et_err *e)
{
    int v[5];
    for (int i = 0; i < 5; i++) {
        long long x = 0;
        int r = ck_attr_read(file, ck_cfg_names[i], H5T_INTEGER, H5T_NATIVE_LLONG, 1, &x, NULL);
        if (r == 0)
            return et_errf(e, ET_EINPUT, "%s: root attribute %s is missing (not an edgetrain "
                           "checkpoint; convert Hugging Face weights with scripts/convert_hf_to_h5.py)",
                           path, ck_cfg_names[i]);
        if (r < 0 || x <= 0 || x > INT_MAX)
            return et_errf(e, ET_EINPUT, "%s: root attribute %s must be one positive integer",
                           path, ck_cfg_names[i]);
        v[i] = (int)x;
    }
    c->n_layer = v[0];
    c->n_head = v[1];
    c->n_embd = v[2];
    c->vocab_size = v[3];
    c->block_size = v[4];
    long long ver = 0;
    if (ck_attr_read(file, "format_version", H5T_INTEGER, H5T_NATIVE_LLONG, 1, &ver, NULL) == 1 &&
        ver > CK_FORMAT_VERSION)
        return et_errf(e, ET_EINPUT, "%s: checkpoint format version %lld is newer than this "
                       "edgetrain understands (%d) (update edgetrain)", path, ver, CK_FORMAT_VERSION);
    et_err sub;
    et_err_clear(&sub);
    if (gpt2_config_check(c, &sub) < 0)
        return et_errf(e, ET_EINPUT, "%s: invalid model attributes: %s", path, sub.msg);
    return 0;
}

/* Compare the file's model with the shard's; ET_EINPUT listing every
 * difference ("n_embd 48 in the file, 36 in the config"). */
static int ck_compare_cfg(const char *path, const gpt2_config *file, const gpt2_config *want, et_err *e)
{
    int a[5], b[5];
    char diff[512] = "";
    size_t len = 0;
    ck_cfg_values(file, a);
    ck_cfg_values(want, b);
    for (int i = 0; i < 5; i++)
        if (a[i] != b[i] && len < sizeof diff)
            len += (size_t)snprintf(diff + len, sizeof diff - len, "%s%s %d in the file, %d in the config",
                                    len ? ", " : "", ck_cfg_names[i], a[i], b[i]);
    if (len)
        return et_errf(e, ET_EINPUT, "%s: the checkpoint is of another model: %s (set model: to the "
                       "checkpoint's sizes)", path, diff);
    return 0;
}

/* The run-position attributes (checkpoint.h: to add a field, add a row). */
enum { CK_I64, CK_U64, CK_F64 };
static const struct {
    const char *name;
    int kind;
    size_t off;
    int count;
} ck_meta_attrs[] = {
    {"step", CK_I64, offsetof(ckpt_meta, step), 1},
    {"data_position", CK_I64, offsetof(ckpt_meta, data_position), 1},
    {"seed", CK_U64, offsetof(ckpt_meta, seed), 1},
    {"rng_state", CK_U64, offsetof(ckpt_meta, rng_state), CKPT_RNG_WORDS},
    {"wall_s", CK_F64, offsetof(ckpt_meta, wall_s), 1},
    {"emulated_s", CK_F64, offsetof(ckpt_meta, emulated_s), 1},
};
#define CK_N_META ((int)(sizeof ck_meta_attrs / sizeof ck_meta_attrs[0]))

/* Write the run position as root attributes. */
static int ck_write_meta(hid_t file, const ckpt_meta *m)
{
    for (int i = 0; i < CK_N_META; i++) {
        const void *p = (const char *)m + ck_meta_attrs[i].off;
        hid_t ft = ck_meta_attrs[i].kind == CK_I64 ? H5T_STD_I64LE
                 : ck_meta_attrs[i].kind == CK_U64 ? H5T_STD_U64LE : H5T_IEEE_F64LE;
        hid_t mt = ck_meta_attrs[i].kind == CK_I64 ? H5T_NATIVE_INT64
                 : ck_meta_attrs[i].kind == CK_U64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_DOUBLE;
        if (ck_attr_write(file, ck_meta_attrs[i].name, ft, mt, ck_meta_attrs[i].count, p) < 0)
            return -1;
    }
    return 0;
}

/* Read the run position; absent attributes leave 0. A present attribute of
 * the wrong kind or with more values than the field holds is ET_EINPUT. */
static int ck_read_meta(hid_t file, const char *path, ckpt_meta *m, et_err *e)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < CK_N_META; i++) {
        void *p = (char *)m + ck_meta_attrs[i].off;
        int kind = ck_meta_attrs[i].kind;
        H5T_class_t cls = kind == CK_F64 ? H5T_FLOAT : H5T_INTEGER;
        hid_t mt = kind == CK_I64 ? H5T_NATIVE_INT64 : kind == CK_U64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_DOUBLE;
        if (ck_attr_read(file, ck_meta_attrs[i].name, cls, mt, ck_meta_attrs[i].count, p, NULL) < 0)
            return et_errf(e, ET_EINPUT, "%s: root attribute %s must be %d %s value%s", path,
                           ck_meta_attrs[i].name, ck_meta_attrs[i].count,
                           kind == CK_F64 ? "floating-point" : "integer",
                           ck_meta_attrs[i].count > 1 ? "s or fewer" : "");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Saving                                                                    */
/* ------------------------------------------------------------------------ */

/* The three kinds of arrays a checkpoint holds. */
static const char *const ck_prefix[3] = {"", "optimizer/m/", "optimizer/v/"};

/* Buffer of kind `which` (0 params, 1 m, 2 v) for shard i, or NULL. */
static float *ck_buffer(const gpt2_shard *sh, const optim_state *st, int which)
{
    if (which == 0)
        return sh->params;
    if (!st)
        return NULL;
    return which == 1 ? st->m : st->v;
}

/* map[i*nm + j] = index of model tensor j in shard i's tensors, or -1.
 * Checks every shard descriptor against the model. Caller frees *map. */
static int ck_map_shards(int n, const gpt2_shard *const *sh, const ck_tensor *mt, int nm,
                         int **map_out, et_err *e)
{
    int *map = et_xmalloc((size_t)(n > 0 ? n : 1) * (size_t)nm * sizeof *map);
    for (int k = 0; k < n * nm; k++)
        map[k] = -1;
    *map_out = map;
    for (int i = 0; i < n; i++) {
        int j = 0;   /* shards list tensors in model order: search on from the last hit */
        for (int t = 0; t < sh[i]->n_tensors; t++) {
            const gpt2_tensor *x = &sh[i]->tensors[t];
            int found = -1;
            for (int s = 0; s < nm && found < 0; s++, j = (j + 1) % nm)
                if (strcmp(mt[j].name, x->name) == 0)
                    found = j;
            if (found < 0)
                return et_errf(e, ET_ERUNTIME, "checkpoint: shard tensor %s is not a tensor of "
                               "the model (a bug in the shard layout)", x->name);
            if (map[i * nm + found] >= 0)
                return et_errf(e, ET_ERUNTIME, "checkpoint: shard lists tensor %s twice", x->name);
            if (ck_check_descriptor(x, &mt[found], e) < 0)
                return -1;
            map[i * nm + found] = t;
        }
    }
    return 0;
}

/* Check the arguments of a save on this rank. */
static int ck_check_save_args(int n, const gpt2_shard *const *sh, const optim_state *const *st,
                              int *has_st, et_err *e)
{
    if (n < 1 || !sh)
        return et_errf(e, ET_ERUNTIME, "checkpoint: save needs at least one shard on every rank");
    int with = 0, without = 0;
    for (int i = 0; i < n; i++) {
        if (!sh[i])
            return et_errf(e, ET_ERUNTIME, "checkpoint: save given a NULL shard");
        if (memcmp(&sh[i]->cfg, &sh[0]->cfg, sizeof sh[0]->cfg) != 0)
            return et_errf(e, ET_ERUNTIME, "checkpoint: shards of different models in one save");
        const optim_state *s = st ? st[i] : NULL;
        if (s && s->n != sh[i]->n_params)
            return et_errf(e, ET_ERUNTIME, "checkpoint: optimizer state of %zu floats for a shard "
                           "of %zu parameters", s->n, sh[i]->n_params);
        with += s != NULL;
        without += s == NULL;
    }
    if (with && without)
        return et_errf(e, ET_ERUNTIME, "checkpoint: optimizer state given for some shards only");
    *has_st = with > 0;
    return 0;
}

/* Does some rank write every element of every model tensor? Counts the
 * elements each rank writes (duplicates count twice: a cheap check that
 * catches a tensor nobody writes, not overlap). */
static int ck_check_coverage(const ck_group *g, int n, const gpt2_shard *const *sh,
                             const unsigned char *const *masks, const int *map,
                             const ck_tensor *mt, int nm, et_err *e)
{
    long long *cnt = et_xcalloc((size_t)nm, sizeof *cnt);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nm; j++) {
            int t = map[i * nm + j];
            if (t >= 0 && (!masks || !masks[i] || masks[i][t]))
                cnt[j] += (long long)sh[i]->tensors[t].numel;
        }
    ck_reduce_ll(g, cnt, nm, MPI_SUM);
    int rc = 0;
    for (int j = 0; j < nm && rc == 0; j++)
        if (cnt[j] < ck_numel(&mt[j]))
            rc = et_errf(e, ET_ERUNTIME, "checkpoint: no rank writes all of %s (%lld of %lld "
                         "elements: the shards or write masks leave part of the model out)",
                         mt[j].name, cnt[j], ck_numel(&mt[j]));
    free(cnt);
    return rc;
}

/* Create the datasets of one kind (params, m or v) and write every shard's
 * part of each, dataset by dataset, all ranks in step. maxn: the largest
 * number of shards any rank holds (each rank makes maxn transfers per
 * dataset, empty past its own shards). */
static int ck_write_kind(const ck_group *g, hid_t file, int which, int n, int maxn,
                         const gpt2_shard *const *sh, const optim_state *const *st,
                         const unsigned char *const *masks, const int *map,
                         const ck_tensor *mt, int nm, const char *tmp, et_err *e)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t dxpl = ck_dxpl(g);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);   /* required by parallel HDF5 */
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);     /* every element gets written */
    H5Pset_obj_track_times(dcpl, 0);                 /* same bytes for the same model */
    H5Pset_obj_track_times(gcpl, 0);
    float dummy = 0.0f;
    int ok = 1;
    for (int j = 0; j < nm && ok; j++) {
        char path[160];
        snprintf(path, sizeof path, "%s%s", ck_prefix[which], mt[j].name);
        hid_t fspace = H5Screate_simple(mt[j].ndim, mt[j].full, NULL);
        hid_t ds = -1;
        if (ck_make_parents(file, path, gcpl) == 0)
            ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, fspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        ok = ds >= 0;
        for (int i = 0; i < maxn && ok; i++) {
            const gpt2_tensor *t = NULL;
            const float *buf = &dummy;
            if (i < n) {
                int ti = map[i * nm + j];
                if (ti >= 0 && (!masks || !masks[i] || masks[i][ti])) {
                    t = &sh[i]->tensors[ti];
                    buf = ck_buffer(sh[i], st ? st[i] : NULL, which) + t->offset;
                }
            }
            hid_t mspace = ck_mspace(t);
            ck_select(fspace, mspace, t);
            ok = H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, buf) >= 0;
            H5Sclose(mspace);
        }
        if (ds >= 0)
            ok &= H5Dclose(ds) >= 0;
        H5Sclose(fspace);
        if (!ok)
            et_errf(e, ET_ERUNTIME, "%s: cannot write %s (disk full or I/O error?)", tmp, path);
        ok = ck_agree(g, ok, e);
    }
    H5Pclose(dcpl);
    H5Pclose(gcpl);
    H5Pclose(dxpl);
    return ok ? 0 : -1;
}

/* Flush a file's data to disk (best effort for directories). */
static int ck_fsync_path(const char *path, int dir)
{
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Rank 0's final step: sync "<path>.tmp", rename it over path, sync the
 * directory. */
static int ck_commit(const char *tmp, const char *path, et_err *e)
{
    if (ck_fsync_path(tmp, 0) < 0)
        return et_errf(e, ET_ERUNTIME, "%s: cannot sync to disk: %s", tmp, strerror(errno));
    if (rename(tmp, path) < 0)
        return et_errf(e, ET_ERUNTIME, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    ck_fsync_path(dirname(dir), 1);
    return 0;
}

/* Before creating "<path>.tmp": its directory must exist (a clearer message
 * than HDF5's). */
static int ck_check_dir(const char *path, et_err *e)
{
    char dir[PATH_MAX];
    struct stat s;
    snprintf(dir, sizeof dir, "%s", path);
    const char *d = dirname(dir);
    if (stat(d, &s) < 0 || !S_ISDIR(s.st_mode))
        return et_errf(e, ET_EINPUT, "%s: directory %s does not exist (create it first)", path, d);
    return 0;
}

/* The collective body of a save, with quiet HDF5 and a local error le. */
static int ck_save(const ck_group *g, const char *path, int n, const gpt2_shard *const *sh,
                   const optim_state *const *st, const ckpt_meta *meta,
                   const unsigned char *const *masks, et_err *le)
{
    int has_st = 0;
    int ok = ck_agree(g, ck_check_save_args(n, sh, st, &has_st, le) == 0, le);
    if (!ok)
        return -1;

    /* every rank must agree on the model, on moments, on the run position */
    struct { gpt2_config cfg; int has_st, has_meta; ckpt_meta meta; } root;
    memset(&root, 0, sizeof root);
    root.cfg = sh[0]->cfg;
    root.has_st = has_st;
    root.has_meta = meta != NULL;
    if (meta)
        root.meta = *meta;
    ck_bcast(g, &root, sizeof root);
    if (memcmp(&root.cfg, &sh[0]->cfg, sizeof root.cfg) != 0 || root.has_st != has_st)
        et_errf(le, ET_ERUNTIME, "checkpoint: ranks disagree on the model or on saving optimizer state");
    if (!ck_agree(g, le->code == ET_OK, le))
        return -1;

    int nm = 0, *map = NULL;
    ck_tensor *mt = ck_model_tensors(&root.cfg, &nm);
    ok = ck_map_shards(n, sh, mt, nm, &map, le) == 0;
    ok = ck_agree(g, ok, le);
    if (ok)
        ok = ck_agree(g, ck_check_coverage(g, n, sh, masks, map, mt, nm, le) == 0, le);
    if (ok)
        ok = ck_agree(g, ck_check_dir(path, le) == 0, le);
    if (!ok) {
        free(mt);
        free(map);
        return -1;
    }
    long long maxn = n;
    ck_reduce_ll(g, &maxn, 1, MPI_MAX);

    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t fapl = ck_fapl(g);
    errno = 0;
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int err = errno;
    H5Pclose(fapl);
    if (file < 0)
        et_errf(le, ET_ERUNTIME, "%s: cannot create the checkpoint%s%s", tmp,
                err ? ": " : "", err ? strerror(err) : "");
    ok = ck_agree(g, file >= 0, le);

    if (ok) {
        int v[5], ver = CK_FORMAT_VERSION;
        ck_cfg_values(&root.cfg, v);
        for (int i = 0; i < 5 && ok; i++)
            ok = ck_attr_write(file, ck_cfg_names[i], H5T_STD_I32LE, H5T_NATIVE_INT, 1, &v[i]) == 0;
        ok = ok && ck_attr_write_str(file, "format", CK_FORMAT) == 0 &&
             ck_attr_write(file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, 1, &ver) == 0 &&
             (!root.has_meta || ck_write_meta(file, &root.meta) == 0);
        if (!ok)
            et_errf(le, ET_ERUNTIME, "%s: cannot write the root attributes", tmp);
        ok = ck_agree(g, ok, le);
    }
    for (int which = 0; which < (has_st ? 3 : 1) && ok; which++)
        ok = ck_write_kind(g, file, which, n, (int)maxn, sh, st, masks, map, mt, nm, tmp, le) == 0;

    if (file >= 0 && H5Fclose(file) < 0 && ok) {
        et_errf(le, ET_ERUNTIME, "%s: cannot finish writing (disk full or I/O error?)", tmp);
        ok = 0;
    }
    ok = ck_agree(g, ok, le);
    if (g->mpi)
        MPI_Barrier(g->comm);   /* every rank has closed the file */
    if (g->rank == 0) {
        if (ok)
            ok = ck_commit(tmp, path, le) == 0;
        if (!ok)
            unlink(tmp);
    }
    ok = ck_agree(g, ok, le);
    free(mt);
    free(map);
    return ok ? 0 : -1;
}

int ckpt_save_shards(const char *path, MPI_Comm comm, int n, const gpt2_shard *const *sh,
                     const optim_state *const *st, const ckpt_meta *meta,
                     const unsigned char *const *masks, et_err *e)
{
    ck_group g;
    ck_quiet q;
    et_err le;
    et_err_clear(&le);
    ck_group_init(&g, comm);
    ck_quiet_on(&q);
    int rc = ck_save(&g, path, n, sh, st, meta, masks, &le);
    ck_quiet_off(&q);
    if (rc < 0)
        et_errf(e, le.code ? le.code : ET_ERUNTIME, "%s", le.msg);
    return rc;
}

int ckpt_save(const char *path, MPI_Comm comm, const gpt2_shard *sh, const optim_state *st,
              const ckpt_meta *meta, const unsigned char *write_mask, et_err *e)
{
    const optim_state *sts[1] = {st};
    const unsigned char *masks[1] = {write_mask};
    return ckpt_save_shards(path, comm, 1, &sh, st ? sts : NULL, meta, masks, e);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

/* The file must exist and be HDF5 (checked before HDF5 tries to open it, for
 * a clear message). */
static int ck_check_file(const char *path, et_err *e)
{
    struct stat s;
    if (stat(path, &s) < 0)
        return et_errf(e, ET_EINPUT, "%s: cannot open checkpoint: %s", path, strerror(errno));
    if (!S_ISREG(s.st_mode))
        return et_errf(e, ET_EINPUT, "%s: not a regular file (expected an HDF5 checkpoint)", path);
    if (H5Fis_hdf5(path) <= 0)
        return et_errf(e, ET_EINPUT, "%s: not an HDF5 file (expected an edgetrain checkpoint; "
                       "convert Hugging Face weights with scripts/convert_hf_to_h5.py)", path);
    return 0;
}

/* Open `path` read-only (validated first). Returns the file or -1 with e set. */
static hid_t ck_open(const ck_group *g, const char *path, et_err *e)
{
    if (ck_check_file(path, e) < 0)
        return -1;
    hid_t fapl = ck_fapl(g);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (file < 0)
        et_errf(e, ET_EINPUT, "%s: HDF5 cannot open the file (damaged or truncated?)", path);
    return file;
}

/* Check that dataset `dpath` exists, is floating point and has the model
 * tensor's full shape. */
static int ck_check_dataset(hid_t file, const char *path, const char *dpath, const ck_tensor *m, et_err *e)
{
    hid_t ds = H5Lexists(file, dpath, H5P_DEFAULT) > 0 ? H5Dopen2(file, dpath, H5P_DEFAULT) : -1;
    if (ds < 0)
        return et_errf(e, ET_EINPUT, "%s: tensor %s is missing (the checkpoint is incomplete or "
                       "not of this model)", path, dpath);
    hid_t ty = H5Dget_type(ds), sp = H5Dget_space(ds);
    hsize_t d[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd >= 1 && nd <= 2)
        H5Sget_simple_extent_dims(sp, d, NULL);
    int cls = H5Tget_class(ty);
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(ds);
    char have[64], want[64];
    if (nd != m->ndim || d[0] != m->full[0] || (nd == 2 && d[1] != m->full[1]))
        return et_errf(e, ET_EINPUT, "%s: tensor %s has shape %s but the model needs %s", path, dpath,
                       ck_shape_str(have, sizeof have, nd, d), ck_shape_str(want, sizeof want, m->ndim, m->full));
    if (cls != H5T_FLOAT)
        return et_errf(e, ET_EINPUT, "%s: tensor %s is not floating point", path, dpath);
    return 0;
}

/* Validate every dataset the load will read: all model tensors, and all
 * moments when with_st. */
static int ck_validate(hid_t file, const char *path, const ck_tensor *mt, int nm, int with_st, et_err *e)
{
    if (with_st && (H5Lexists(file, "optimizer", H5P_DEFAULT) <= 0))
        return et_errf(e, ET_EINPUT, "%s: holds no optimizer state (optimizer/m, optimizer/v): it "
                       "is a weights-only checkpoint (start from it with training.init instead of "
                       "resuming)", path);
    for (int which = 0; which < (with_st ? 3 : 1); which++)
        for (int j = 0; j < nm; j++) {
            char dpath[160];
            snprintf(dpath, sizeof dpath, "%s%s", ck_prefix[which], mt[j].name);
            if (ck_check_dataset(file, path, dpath, &mt[j], e) < 0)
                return -1;
        }
    return 0;
}

/* Read every model tensor (kind `which`) this shard holds, all ranks in step. */
static int ck_read_kind(const ck_group *g, hid_t file, const char *path, int which, gpt2_shard *sh,
                        optim_state *st, const int *map, const ck_tensor *mt, int nm, et_err *e)
{
    hid_t dxpl = ck_dxpl(g);
    float dummy = 0.0f;
    float *base = ck_buffer(sh, st, which);
    int ok = 1;
    for (int j = 0; j < nm && ok; j++) {
        char dpath[160];
        snprintf(dpath, sizeof dpath, "%s%s", ck_prefix[which], mt[j].name);
        hid_t ds = H5Dopen2(file, dpath, H5P_DEFAULT);
        const gpt2_tensor *t = map[j] >= 0 ? &sh->tensors[map[j]] : NULL;
        float *buf = t ? base + t->offset : &dummy;
        hid_t fspace = ds >= 0 ? H5Dget_space(ds) : -1, mspace = ck_mspace(t);
        ok = ds >= 0 && fspace >= 0;
        if (ok) {
            ck_select(fspace, mspace, t);
            ok = H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, buf) >= 0;
        }
        H5Sclose(mspace);
        if (fspace >= 0)
            H5Sclose(fspace);
        if (ds >= 0)
            H5Dclose(ds);
        if (!ok)
            et_errf(e, ET_EINPUT, "%s: cannot read %s (damaged file?)", path, dpath);
        ok = ck_agree(g, ok, e);
    }
    H5Pclose(dxpl);
    return ok ? 0 : -1;
}

/* The collective body of a load. */
static int ck_load(const ck_group *g, const char *path, gpt2_shard *sh, optim_state *st,
                   ckpt_meta *meta, et_err *le)
{
    /* with MPI the metadata reads below are collective: every rank must make
     * the same ones, so every step that can fail ends in an agreement */
    long long with_st[2] = {st != NULL, -(st != NULL)};   /* max, -min over ranks */
    ck_reduce_ll(g, with_st, 2, MPI_MAX);
    if (!sh)
        et_errf(le, ET_ERUNTIME, "checkpoint: load needs a shard");
    else if (st && st->n != sh->n_params)
        et_errf(le, ET_ERUNTIME, "checkpoint: optimizer state of %zu floats for a shard of %zu "
                "parameters", st->n, sh->n_params);
    else if (with_st[0] != -with_st[1])
        et_errf(le, ET_ERUNTIME, "checkpoint: some ranks load optimizer state and some do not");
    if (!ck_agree(g, le->code == ET_OK, le))
        return -1;
    hid_t file = ck_open(g, path, le);
    if (!ck_agree(g, file >= 0, le)) {
        if (file >= 0)
            H5Fclose(file);
        return -1;
    }
    gpt2_config fc;
    ckpt_meta m;
    int nm = 0, *map = NULL;
    ck_tensor *mt = ck_model_tensors(&sh->cfg, &nm);
    const gpt2_shard *one[1] = {sh};
    int ok = ck_agree(g, ck_read_cfg(file, path, &fc, le) == 0 && ck_compare_cfg(path, &fc, &sh->cfg, le) == 0 &&
                             ck_map_shards(1, one, mt, nm, &map, le) == 0, le);
    ok = ok && ck_agree(g, ck_validate(file, path, mt, nm, st != NULL, le) == 0 &&
                               ck_read_meta(file, path, &m, le) == 0, le);
    for (int which = 0; which < (st ? 3 : 1) && ok; which++)
        ok = ck_read_kind(g, file, path, which, sh, st, map, mt, nm, le) == 0;
    if (H5Fclose(file) < 0 && ok) {
        et_errf(le, ET_EINPUT, "%s: cannot close the file", path);
        ok = 0;
    }
    ok = ck_agree(g, ok, le);
    if (ok && meta)
        *meta = m;
    free(mt);
    free(map);
    return ok ? 0 : -1;
}

int ckpt_load(const char *path, MPI_Comm comm, gpt2_shard *sh, optim_state *st, ckpt_meta *meta, et_err *e)
{
    ck_group g;
    ck_quiet q;
    et_err le;
    et_err_clear(&le);
    ck_group_init(&g, comm);
    ck_quiet_on(&q);
    int rc = ck_load(&g, path, sh, st, meta, &le);
    ck_quiet_off(&q);
    if (rc < 0)
        et_errf(e, le.code ? le.code : ET_EINPUT, "%s", le.msg);
    return rc;
}

int ckpt_read_config(const char *path, gpt2_config *c, et_err *e)
{
    ck_group g = {0, MPI_COMM_NULL, 0, 1};
    ck_quiet q;
    et_err le;
    et_err_clear(&le);
    ck_quiet_on(&q);
    hid_t file = ck_open(&g, path, &le);
    int rc = file < 0 ? -1 : ck_read_cfg(file, path, c, &le);
    if (file >= 0)
        H5Fclose(file);
    ck_quiet_off(&q);
    if (rc < 0)
        et_errf(e, le.code ? le.code : ET_EINPUT, "%s", le.msg);
    return rc;
}

void ckpt_write_mask(const gpt2_shard *sh, int dp_rank, unsigned char *mask)
{
    for (int t = 0; t < sh->n_tensors; t++) {
        const gpt2_tensor *x = &sh->tensors[t];
        int w = dp_rank == 0 && (x->sharded || sh->spec.tp_rank == 0);
        if (strcmp(x->name, "transformer/wte/weight") == 0 && !sh->spec.has_embed)
            w = 0;
        mask[t] = (unsigned char)w;
    }
}
