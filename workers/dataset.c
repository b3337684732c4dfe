/*
 * dataset — write and load the HDF5 token dataset (see dataset.h).
 */
#include "dataset.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAKE_HINT "make one with 'edgetrain prepare-data'"

/* Elements read per block while loading (converted through an int64 buffer). */
#define LOAD_BLOCK ((size_t)1 << 18)
/* Elements per chunk of a written dataset. */
#define WRITE_CHUNK ((hsize_t)1 << 16)

/* HDF5's automatic error printing, saved while a call of ours runs with it off. */
typedef struct h5_quiet {
    H5E_auto2_t func;
    void *data;
} h5_quiet;

/* Switch HDF5's error stack printing off, remembering the current handler. */
static void quiet_on(h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Restore the handler quiet_on saved. */
static void quiet_off(const h5_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

/* Close an HDF5 id of any kind if it is valid. */
static void h5_close(hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: H5Oclose(id); break;
    }
}

/* ----------------------------------------------------------------- write */

/* Check that ids[0..n) of split `name` lie in [0, vocab_size). */
static int check_ids(const char *path, const char *name, const int32_t *ids, size_t n, int vocab_size, et_err *e)
{
    if (n == 0)
        return et_errf(e, ET_EINPUT, "%s: the %s split is empty (nothing to write)", path, name);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab_size)
            return et_errf(e, ET_EINPUT, "%s: %s/tokens[%zu] = %d is outside 0..%d (vocab_size %d)",
                           path, name, i, (int)ids[i], vocab_size - 1, vocab_size);
    return 0;
}

/* Create group `name` in file with a chunked, compressed 1-D dataset "tokens"
 * of file type ftype holding ids[0..n). */
static int write_split(hid_t file, const char *path, const char *name, hid_t ftype,
                       const int32_t *ids, size_t n, et_err *e)
{
    hsize_t dims[1] = {(hsize_t)n};
    hsize_t chunk[1] = {(hsize_t)n < WRITE_CHUNK ? (hsize_t)n : WRITE_CHUNK};
    hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    int rc = -1;
    if (g < 0 || space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0)
        goto out;
    if (H5Zfilter_avail(H5Z_FILTER_SHUFFLE) > 0 && H5Pset_shuffle(dcpl) < 0)
        goto out;
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 && H5Pset_deflate(dcpl, 4) < 0)
        goto out;
    d = H5Dcreate2(g, "tokens", ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        et_errf(e, ET_ERUNTIME, "%s: writing %s/tokens failed (disk full?)", path, name);
    h5_close(d);
    h5_close(dcpl);
    h5_close(space);
    h5_close(g);
    return rc;
}

/* Write the root attributes tokenizer (variable-length UTF-8 string) and
 * vocab_size (int32). */
static int write_attrs(hid_t file, const char *path, const char *tokenizer, int vocab_size, et_err *e)
{
    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t str = H5Tcopy(H5T_C_S1);
    hid_t a1 = -1, a2 = -1;
    int rc = -1;
    if (scalar < 0 || str < 0 || H5Tset_size(str, H5T_VARIABLE) < 0 || H5Tset_cset(str, H5T_CSET_UTF8) < 0)
        goto out;
    a1 = H5Acreate2(file, "tokenizer", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
    if (a1 < 0 || H5Awrite(a1, str, &tokenizer) < 0)
        goto out;
    a2 = H5Acreate2(file, "vocab_size", H5T_STD_I32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    if (a2 < 0 || H5Awrite(a2, H5T_NATIVE_INT, &vocab_size) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        et_errf(e, ET_ERUNTIME, "%s: writing the root attributes failed", path);
    h5_close(a2);
    h5_close(a1);
    h5_close(str);
    h5_close(scalar);
    return rc;
}

/* See the header: validate, write to "<path>.tmpXXXXXX", rename over path. */
int dataset_write(const char *path, const char *tokenizer, int vocab_size,
                  const int32_t *train, size_t n_train, const int32_t *val, size_t n_val, et_err *e)
{
    if (!tokenizer || !*tokenizer || strlen(tokenizer) >= sizeof ((et_dataset *)0)->tokenizer)
        return et_errf(e, ET_EINPUT, "%s: the tokenizer name must be 1..%zu characters", path,
                       sizeof ((et_dataset *)0)->tokenizer - 1);
    if (vocab_size < 1)
        return et_errf(e, ET_EINPUT, "%s: vocab_size %d must be positive", path, vocab_size);
    if (check_ids(path, "train", train, n_train, vocab_size, e) < 0 ||
        check_ids(path, "val", val, n_val, vocab_size, e) < 0)
        return -1;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return et_errf(e, ET_EINPUT, "%s: is a directory (give a file name for the dataset)", path);

    size_t plen = strlen(path);
    char *tmp = et_xmalloc(plen + sizeof ".tmpXXXXXX");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmpXXXXXX", sizeof ".tmpXXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int err = errno;
        free(tmp);
        return et_errf(e, ET_EINPUT, "%s: cannot create the file: %s (is its directory there and writable?)",
                       path, strerror(err));
    }
    /* mkstemp makes the file 0600; give it the mode a plain create would. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);   /* on failure it stays 0600: harmless */
    close(fd);

    h5_quiet q;
    quiet_on(&q);
    int rc = -1;
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        et_errf(e, ET_ERUNTIME, "%s: HDF5 cannot create %s", path, tmp);
        goto out;
    }
    hid_t ftype = vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_I32LE;
    if (write_attrs(file, path, tokenizer, vocab_size, e) < 0 ||
        write_split(file, path, "train", ftype, train, n_train, e) < 0 ||
        write_split(file, path, "val", ftype, val, n_val, e) < 0) {
        H5Fclose(file);
        goto out;
    }
    if (H5Fclose(file) < 0) {
        et_errf(e, ET_ERUNTIME, "%s: closing the new file failed (disk full?)", path);
        goto out;
    }
    if (rename(tmp, path) < 0) {
        et_errf(e, ET_EINPUT, "%s: cannot replace it: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        unlink(tmp);
    quiet_off(&q);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------ load */

/* A phrase for an HDF5 type class, for messages. */
static const char *class_phrase(H5T_class_t c)
{
    switch (c) {
    case H5T_FLOAT: return "floating-point numbers";
    case H5T_STRING: return "strings";
    case H5T_COMPOUND: return "compound records";
    case H5T_ARRAY: return "arrays";
    case H5T_VLEN: return "variable-length sequences";
    case H5T_ENUM: return "enumeration values";
    case H5T_BITFIELD: return "bit fields";
    case H5T_OPAQUE: return "opaque data";
    case H5T_REFERENCE: return "references";
    case H5T_TIME: return "time values";
    default: return "non-integer data";
    }
}

/* Open root attribute `name`: it must exist and hold one value of class
 * want. Returns the attribute id, or -1 with e set. */
static hid_t open_attr(hid_t file, const char *path, const char *name, H5T_class_t want, et_err *e)
{
    if (H5Aexists(file, name) <= 0) {
        et_errf(e, ET_EINPUT, "%s: no root attribute %s (not a dataset written by prepare-data? " MAKE_HINT ")",
                path, name);
        return -1;
    }
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    if (a < 0) {
        et_errf(e, ET_EINPUT, "%s: cannot read root attribute %s (" MAKE_HINT ")", path, name);
        return -1;
    }
    hid_t space = H5Aget_space(a), type = H5Aget_type(a);
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    h5_close(space);
    h5_close(type);
    if (npoints != 1 || cls != want) {
        et_errf(e, ET_EINPUT, "%s: root attribute %s must be one %s (%s)", path, name,
                want == H5T_INTEGER ? "integer" : "string", MAKE_HINT);
        H5Aclose(a);
        return -1;
    }
    return a;
}

/* Read the vocab_size attribute into *vocab (1..INT32_MAX). */
static int read_vocab(hid_t file, const char *path, int *vocab, et_err *e)
{
    hid_t a = open_attr(file, path, "vocab_size", H5T_INTEGER, e);
    if (a < 0)
        return -1;
    long long v = 0;
    herr_t r = H5Aread(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a);
    if (r < 0 || v < 1 || v > INT32_MAX)
        return et_errf(e, ET_EINPUT, "%s: root attribute vocab_size = %lld is not a vocabulary size (1..%d)",
                       path, v, INT32_MAX);
    *vocab = (int)v;
    return 0;
}

/* Read the tokenizer attribute (fixed or variable-length string) into
 * out[outsz], trailing NULs and spaces stripped. */
static int read_tokenizer(hid_t file, const char *path, char *out, size_t outsz, et_err *e)
{
    hid_t a = open_attr(file, path, "tokenizer", H5T_STRING, e);
    if (a < 0)
        return -1;
    hid_t ftype = H5Aget_type(a);
    hid_t mtype = H5Tcopy(H5T_C_S1);
    int rc = -1;
    char *val = NULL;
    htri_t vlen = ftype >= 0 ? H5Tis_variable_str(ftype) : -1;
    H5T_cset_t cset = ftype >= 0 ? H5Tget_cset(ftype) : H5T_CSET_ERROR;
    if (mtype < 0 || cset == H5T_CSET_ERROR || H5Tset_cset(mtype, cset) < 0)   /* HDF5 converts no charsets */
        vlen = -1;
    if (vlen > 0) {
        char *p = NULL;
        if (H5Tset_size(mtype, H5T_VARIABLE) >= 0 && H5Aread(a, mtype, &p) >= 0 && p) {
            val = et_xstrdup(p);
            H5free_memory(p);
        }
    } else if (vlen == 0) {
        size_t size = H5Tget_size(ftype);
        if (size > 0 && size < 4096 && H5Tset_size(mtype, size + 1) >= 0 &&
            H5Tset_strpad(mtype, H5T_STR_NULLTERM) >= 0) {
            val = et_xcalloc(size + 2, 1);
            if (H5Aread(a, mtype, val) < 0) {
                free(val);
                val = NULL;
            }
        }
    }
    if (!val) {
        et_errf(e, ET_EINPUT, "%s: cannot read root attribute tokenizer as a string (" MAKE_HINT ")", path);
        goto out;
    }
    size_t n = strlen(val);
    while (n > 0 && val[n - 1] == ' ')
        val[--n] = '\0';
    if (n == 0 || n >= outsz) {
        et_errf(e, ET_EINPUT, "%s: root attribute tokenizer '%.40s' is %s", path, val, n ? "too long" : "empty");
        goto out;
    }
    memcpy(out, val, n + 1);
    rc = 0;
out:
    free(val);
    h5_close(mtype);
    h5_close(ftype);
    H5Aclose(a);
    return rc;
}

/* The limits a split's ids are checked against. */
typedef struct id_limit {
    int limit;            /* ids must be < limit */
    int from_model;       /* 1: limit is the model's vocab, smaller than the file's */
    int file_vocab;
    const char *tokenizer;
} id_limit;

/* Load split `name` (group/tokens) into a malloc'd int32 array *out, *n. */
static int load_split(hid_t file, const char *path, const char *name, const id_limit *lim,
                      size_t min_tokens, int32_t **out, size_t *n_out, et_err *e)
{
    char dpath[64];
    snprintf(dpath, sizeof dpath, "%s/tokens", name);
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0 || H5Lexists(file, dpath, H5P_DEFAULT) <= 0)
        return et_errf(e, ET_EINPUT, "%s: no dataset %s (not a dataset written by prepare-data? " MAKE_HINT ")",
                       path, dpath);
    hid_t obj = H5Oopen(file, dpath, H5P_DEFAULT);
    if (obj < 0 || H5Iget_type(obj) != H5I_DATASET) {
        h5_close(obj);
        return et_errf(e, ET_EINPUT, "%s: %s is not a dataset (" MAKE_HINT ")", path, dpath);
    }
    hid_t d = obj;
    hid_t space = H5Dget_space(d), type = H5Dget_type(d), mem = -1;
    int64_t *buf = NULL;
    int32_t *ids = NULL;
    int rc = -1;
    int ndims = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (ndims != 1) {
        et_errf(e, ET_EINPUT, "%s: %s has %d dimensions, expected 1 (a flat array of token ids)", path, dpath, ndims);
        goto out;
    }
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    if (cls != H5T_INTEGER) {
        et_errf(e, ET_EINPUT, "%s: %s holds %s, expected integer token ids (" MAKE_HINT ")", path, dpath,
                class_phrase(cls));
        goto out;
    }
    hsize_t dims[1];
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t n = (size_t)dims[0];
    if (n == 0) {
        et_errf(e, ET_EINPUT, "%s: %s is empty (prepare-data with more text%s)", path, dpath,
                strcmp(name, "val") ? "" : " or a larger --val-fraction");
        goto out;
    }
    if (n < min_tokens) {
        et_errf(e, ET_EINPUT, "%s: %s has %zu tokens, fewer than the %zu a sequence needs (prepare-data with more text%s, "
                "or use a shorter seq_len)", path, dpath, n, min_tokens,
                strcmp(name, "val") ? "" : " or a larger --val-fraction");
        goto out;
    }
    ids = n <= SIZE_MAX / sizeof *ids ? malloc(n * sizeof *ids) : NULL;
    if (!ids) {
        et_errf(e, ET_ERUNTIME, "%s: no memory for the %zu tokens of %s", path, n, dpath);
        goto out;
    }
    size_t block = n < LOAD_BLOCK ? n : LOAD_BLOCK;
    buf = et_xmalloc(block * sizeof *buf);
    hsize_t mdims[1] = {(hsize_t)block};
    mem = H5Screate_simple(1, mdims, NULL);
    for (size_t off = 0; off < n; off += block) {
        size_t cnt = n - off < block ? n - off : block;
        hsize_t start[1] = {(hsize_t)off}, count[1] = {(hsize_t)cnt}, zero[1] = {0};
        if (H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Sselect_hyperslab(mem, H5S_SELECT_SET, zero, NULL, count, NULL) < 0 ||
            H5Dread(d, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, buf) < 0) {
            et_errf(e, ET_EINPUT, "%s: cannot read %s at [%zu] (the file is damaged)", path, dpath, off);
            goto out;
        }
        for (size_t i = 0; i < cnt; i++) {
            int64_t v = buf[i];
            if (v < 0) {
                et_errf(e, ET_EINPUT, "%s: %s[%zu] = %lld is negative (token ids are 0..vocab_size-1; "
                        "re-run prepare-data)", path, dpath, off + i, (long long)v);
                goto out;
            }
            if (v >= lim->limit) {
                if (lim->from_model)
                    et_errf(e, ET_EINPUT, "%s: %s[%zu] = %lld is >= vocab_size %d (the model's; this file was "
                            "tokenized by %s with vocab_size %d: re-run prepare-data with the model's tokenizer)",
                            path, dpath, off + i, (long long)v, lim->limit, lim->tokenizer, lim->file_vocab);
                else
                    et_errf(e, ET_EINPUT, "%s: %s[%zu] = %lld is >= vocab_size %d (the file's own attribute: "
                            "the file is inconsistent; re-run prepare-data)", path, dpath, off + i,
                            (long long)v, lim->limit);
                goto out;
            }
            ids[off + i] = (int32_t)v;
        }
    }
    *out = ids;
    *n_out = n;
    ids = NULL;
    rc = 0;
out:
    free(ids);
    free(buf);
    h5_close(mem);
    h5_close(type);
    h5_close(space);
    h5_close(d);
    return rc;
}

/* See the header. */
int dataset_load(const char *path, int model_vocab, size_t min_tokens, et_dataset *ds, et_err *e)
{
    memset(ds, 0, sizeof *ds);
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return et_errf(e, ET_EINPUT, "%s: no such file (" MAKE_HINT ")", path);
        return et_errf(e, ET_EINPUT, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return et_errf(e, ET_EINPUT, "%s: is a directory, not a dataset file (" MAKE_HINT ")", path);
    if (access(path, R_OK) < 0)
        return et_errf(e, ET_EINPUT, "%s: %s", path, strerror(errno));

    h5_quiet q;
    quiet_on(&q);
    int rc = -1;
    hid_t file = -1;
    if (H5Fis_hdf5(path) <= 0) {
        et_errf(e, ET_EINPUT, "%s: not an HDF5 file (" MAKE_HINT ")", path);
        goto out;
    }
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        et_errf(e, ET_EINPUT, "%s: HDF5 cannot open it (damaged? " MAKE_HINT ")", path);
        goto out;
    }
    if (read_vocab(file, path, &ds->vocab_size, e) < 0 ||
        read_tokenizer(file, path, ds->tokenizer, sizeof ds->tokenizer, e) < 0)
        goto out;
    id_limit lim = {ds->vocab_size, 0, ds->vocab_size, ds->tokenizer};
    if (model_vocab > 0 && model_vocab < ds->vocab_size) {
        lim.limit = model_vocab;
        lim.from_model = 1;
    }
    if (load_split(file, path, "train", &lim, min_tokens, &ds->train, &ds->n_train, e) < 0 ||
        load_split(file, path, "val", &lim, min_tokens, &ds->val, &ds->n_val, e) < 0)
        goto out;
    rc = 0;
out:
    h5_close(file);
    quiet_off(&q);
    if (rc < 0)
        dataset_free(ds);
    return rc;
}

/* Free ds's arrays and zero it. */
void dataset_free(et_dataset *ds)
{
    free(ds->train);
    free(ds->val);
    memset(ds, 0, sizeof *ds);
}
