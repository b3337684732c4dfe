/*
 * test_checkpoint — workers/checkpoint: HDF5 checkpoints are exact, plan
 * independent, validated and atomic (single process: the POSIX driver).
 */
#include <check.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../workers/checkpoint.h"

static char dir[64];
static char pbuf[256];

/* A path inside this test's temporary directory (static buffer: use at once). */
static const char *tpath(const char *name)
{
    snprintf(pbuf, sizeof pbuf, "%s/%s", dir, name);
    return pbuf;
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/et_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* The odd little model of the parity tests: L2 C36 NH3 V97 T7 (TP 3 works). */
static gpt2_config small_cfg(void)
{
    gpt2_config c = {2, 3, 36, 97, 7};
    return c;
}

static gpt2_shard *shard(const gpt2_config *c, int first, int last, int embed, int head, int tpr, int tps)
{
    gpt2_shard_spec s = {first, last, embed, head, tpr, tps};
    et_err e;
    et_err_clear(&e);
    gpt2_shard *sh = gpt2_shard_new(c, &s, &e);
    ck_assert_msg(sh != NULL, "gpt2_shard_new: %s", e.msg);
    return sh;
}

static gpt2_shard *whole(const gpt2_config *c)
{
    return shard(c, 0, c->n_layer - 1, 1, 1, 0, 1);
}

/* Moments derived from the weights, so every slice of them is predictable. */
static void fill_moments(const gpt2_shard *sh, optim_state *st)
{
    for (size_t i = 0; i < sh->n_params; i++) {
        st->m[i] = 2.0f * sh->params[i] - 0.25f;
        st->v[i] = sh->params[i] * sh->params[i] + 0.5f;
    }
}

/* A whole random model with moments. */
static gpt2_shard *random_whole(const gpt2_config *c, uint64_t seed, optim_state **st)
{
    gpt2_shard *sh = whole(c);
    gpt2_shard_init_random(sh, seed);
    if (st) {
        *st = optim_state_new(sh);
        fill_moments(sh, *st);
    }
    return sh;
}

/* Copy into out the part of full tensor `src` (in F's layout) that shard
 * tensor t holds, following its slabs. */
static void slice_of_full(const gpt2_tensor *ft, const float *src, const gpt2_tensor *t, float *out)
{
    if (t->nslab == 0) {
        memcpy(out, src, t->numel * sizeof *out);
        return;
    }
    long cols_full = ft->ndim == 2 ? ft->full[1] : 1, cols_local = t->ndim == 2 ? t->local[1] : 1;
    for (int s = 0; s < t->nslab; s++) {
        const gpt2_slab *sl = &t->slab[s];
        if (sl->dim == 0)   /* whole rows (or a 1-D range) */
            memcpy(out + sl->local_off * cols_local, src + sl->full_off * cols_full,
                   (size_t)(sl->count * cols_local) * sizeof *out);
        else
            for (long r = 0; r < t->local[0]; r++)
                memcpy(out + r * cols_local + sl->local_off, src + r * cols_full + sl->full_off,
                       (size_t)sl->count * sizeof *out);
    }
}

/* Does every tensor of S (params, and moments when both states are given)
 * equal, bit for bit, its part of the whole model F? */
static int equals_part_of(gpt2_shard *S, const optim_state *sst, gpt2_shard *F, const optim_state *fst)
{
    for (int i = 0; i < S->n_tensors; i++) {
        const gpt2_tensor *t = &S->tensors[i];
        const gpt2_tensor *ft = gpt2_shard_tensor(F, t->name);
        ck_assert_ptr_nonnull(ft);
        float *want = malloc(t->numel * sizeof *want);
        const float *fbase[3] = {F->params, fst ? fst->m : NULL, fst ? fst->v : NULL};
        const float *sbase[3] = {S->params, sst ? sst->m : NULL, sst ? sst->v : NULL};
        for (int k = 0; k < (sst && fst ? 3 : 1); k++) {
            slice_of_full(ft, fbase[k] + ft->offset, t, want);
            if (memcmp(want, sbase[k] + t->offset, t->numel * sizeof *want) != 0) {
                fprintf(stderr, "tensor %s (kind %d) differs\n", t->name, k);
                free(want);
                return 0;
            }
        }
        free(want);
    }
    return 1;
}

/* The bytes of a file (caller frees), or NULL. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* Is `path` still exactly `bytes`? */
static int same_bytes(const char *path, const char *bytes, size_t n)
{
    size_t m = 0;
    char *b = slurp(path, &m);
    int same = b && m == n && memcmp(b, bytes, n) == 0;
    free(b);
    return same;
}

static int file_exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0;
}

/* Every HDF5 object the checkpoint code opened has been closed again. */
static void assert_no_open_hdf5(void)
{
    ck_assert_int_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
}

/* An error is one line, ET_EINPUT, starting with the path, containing `what`. */
static void assert_input_error(const et_err *e, const char *path, const char *what)
{
    ck_assert_int_eq(e->code, ET_EINPUT);
    ck_assert_msg(strncmp(e->msg, path, strlen(path)) == 0, "message does not start with the path: %s", e->msg);
    ck_assert_msg(strstr(e->msg, what) != NULL, "'%s' not in: %s", what, e->msg);
    ck_assert_ptr_null(strchr(e->msg, '\n'));
}

/* ------------------------------------------------------------------------ */

START_TEST(test_whole_model_round_trip_is_bit_exact_with_moments_and_meta)
{
    gpt2_config c = small_cfg();
    optim_state *st;
    gpt2_shard *a = random_whole(&c, 7, &st);
    ckpt_meta m = {0}, m2;
    m.step = 123;
    m.data_position = 123 * 32 + 5;
    m.seed = 0xfeedbeefcafe1234ULL;
    m.rng_state[0] = 1;
    m.rng_state[3] = UINT64_MAX;
    m.wall_s = 12.5;
    m.emulated_s = 3600.25;
    et_err e;
    et_err_clear(&e);
    const char *p = tpath("a.h5");
    ck_assert_msg(ckpt_save(p, MPI_COMM_SELF, a, st, &m, NULL, &e) == 0, "%s", e.msg);
    ck_assert(!file_exists(tpath("a.h5.tmp")));

    gpt2_shard *b = whole(&c);
    optim_state *st2 = optim_state_new(b);
    memset(&m2, 0xff, sizeof m2);
    ck_assert_msg(ckpt_load(tpath("a.h5"), MPI_COMM_SELF, b, st2, &m2, &e) == 0, "%s", e.msg);
    ck_assert(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(st->m, st2->m, a->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(st->v, st2->v, a->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(&m, &m2, sizeof m) == 0);

    gpt2_config rc;
    ck_assert_msg(ckpt_read_config(tpath("a.h5"), &rc, &e) == 0, "%s", e.msg);
    ck_assert(memcmp(&rc, &c, sizeof c) == 0);
    assert_no_open_hdf5();
    optim_state_free(st);
    optim_state_free(st2);
    gpt2_shard_free(a);
    gpt2_shard_free(b);
}
END_TEST

START_TEST(test_file_layout_is_hf_names_full_shapes_and_int_attributes)
{
    gpt2_config c = small_cfg();
    gpt2_shard *a = random_whole(&c, 3, NULL);
    et_err e;
    et_err_clear(&e);
    ck_assert(ckpt_save(tpath("l.h5"), MPI_COMM_SELF, a, NULL, NULL, NULL, &e) == 0);
    hid_t f = H5Fopen(tpath("l.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    const struct { const char *name; int nd; hsize_t d0, d1; } want[] = {
        {"transformer/wte/weight", 2, 97, 36},        {"transformer/wpe/weight", 2, 7, 36},
        {"transformer/h/1/attn/c_attn/weight", 2, 36, 108}, {"transformer/h/0/attn/c_attn/bias", 1, 108, 0},
        {"transformer/h/1/mlp/c_fc/weight", 2, 36, 144},    {"transformer/h/0/mlp/c_proj/weight", 2, 144, 36},
        {"transformer/ln_f/bias", 1, 36, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        hid_t d = H5Dopen2(f, want[i].name, H5P_DEFAULT);
        ck_assert_msg(d >= 0, "%s missing", want[i].name);
        hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
        hsize_t dims[2] = {0, 0};
        ck_assert_int_eq(H5Sget_simple_extent_ndims(sp), want[i].nd);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        ck_assert(dims[0] == want[i].d0 && (want[i].nd == 1 || dims[1] == want[i].d1));
        ck_assert(H5Tequal(ty, H5T_IEEE_F32LE) > 0);
        /* the data is the tensor, row-major, Conv1D layout */
        gpt2_tensor *t = gpt2_shard_tensor(a, want[i].name);
        float *buf = malloc(t->numel * sizeof *buf);
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        ck_assert(memcmp(buf, a->params + t->offset, t->numel * sizeof *buf) == 0);
        free(buf);
        H5Tclose(ty);
        H5Sclose(sp);
        H5Dclose(d);
    }
    int v = 0;
    hid_t at = H5Aopen(f, "n_head", H5P_DEFAULT);
    hid_t ty = H5Aget_type(at);
    ck_assert(H5Tget_class(ty) == H5T_INTEGER);
    H5Aread(at, H5T_NATIVE_INT, &v);
    ck_assert_int_eq(v, 3);
    H5Tclose(ty);
    H5Aclose(at);
    ck_assert(H5Lexists(f, "optimizer", H5P_DEFAULT) == 0);
    ck_assert(H5Aexists(f, "step") == 0);   /* meta NULL: no run position */
    H5Fclose(f);
    gpt2_shard_free(a);
}
END_TEST

START_TEST(test_tp_and_pp_shards_load_their_slices_of_the_whole_model)
{
    gpt2_config c = {3, 3, 36, 97, 7};
    optim_state *fst;
    gpt2_shard *F = random_whole(&c, 11, &fst);
    et_err e;
    et_err_clear(&e);
    ck_assert(ckpt_save(tpath("w.h5"), MPI_COMM_SELF, F, fst, NULL, NULL, &e) == 0);
    /* stages [0] (embed) and [1..2] (head), each split 3 ways */
    const int spec[2][4] = {{0, 0, 1, 0}, {1, 2, 0, 1}};
    for (int s = 0; s < 2; s++)
        for (int r = 0; r < 3; r++) {
            gpt2_shard *S = shard(&c, spec[s][0], spec[s][1], spec[s][2], spec[s][3], r, 3);
            optim_state *sst = optim_state_new(S);
            ck_assert_msg(ckpt_load(tpath("w.h5"), MPI_COMM_SELF, S, sst, NULL, &e) == 0, "%s", e.msg);
            ck_assert_msg(equals_part_of(S, sst, F, fst), "stage %d tp rank %d", s, r);
            optim_state_free(sst);
            gpt2_shard_free(S);
        }
    optim_state_free(fst);
    gpt2_shard_free(F);
}
END_TEST

/* Save n shards of one model together, reload whole, compare with F. */
static void check_shards_reassemble(gpt2_shard *F, optim_state *fst, int n, gpt2_shard **S,
                                    optim_state **sst, int masked)
{
    et_err e;
    et_err_clear(&e);
    unsigned char *masks[8] = {0};
    for (int i = 0; i < n; i++) {
        ck_assert(ckpt_load(tpath("src.h5"), MPI_COMM_SELF, S[i], sst[i], NULL, &e) == 0);
        if (masked) {
            masks[i] = malloc((size_t)S[i]->n_tensors);
            ckpt_write_mask(S[i], 0, masks[i]);
        }
    }
    ck_assert_msg(ckpt_save_shards(tpath("parts.h5"), MPI_COMM_SELF, n, (const gpt2_shard *const *)S,
                                   (const optim_state *const *)sst, NULL,
                                   (const unsigned char *const *)masks, &e) == 0, "%s", e.msg);
    gpt2_shard *G = whole(&F->cfg);
    optim_state *gst = optim_state_new(G);
    ck_assert_msg(ckpt_load(tpath("parts.h5"), MPI_COMM_SELF, G, gst, NULL, &e) == 0, "%s", e.msg);
    ck_assert(memcmp(G->params, F->params, F->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(gst->m, fst->m, F->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(gst->v, fst->v, F->n_params * sizeof(float)) == 0);
    for (int i = 0; i < n; i++)
        free(masks[i]);
    optim_state_free(gst);
    gpt2_shard_free(G);
}

START_TEST(test_shards_saved_together_reassemble_the_whole_model)
{
    gpt2_config c = {3, 3, 36, 97, 7};
    optim_state *fst;
    gpt2_shard *F = random_whole(&c, 5, &fst);
    et_err e;
    et_err_clear(&e);
    ck_assert(ckpt_save(tpath("src.h5"), MPI_COMM_SELF, F, fst, NULL, NULL, &e) == 0);
    gpt2_shard *S[6];
    optim_state *sst[6];
    /* tensor parallel 3 */
    for (int r = 0; r < 3; r++) {
        S[r] = shard(&c, 0, 2, 1, 1, r, 3);
        sst[r] = optim_state_new(S[r]);
    }
    check_shards_reassemble(F, fst, 3, S, sst, 0);   /* every copy written */
    check_shards_reassemble(F, fst, 3, S, sst, 1);   /* each element once */
    for (int r = 0; r < 3; r++) {
        optim_state_free(sst[r]);
        gpt2_shard_free(S[r]);
    }
    /* pipeline 2 x tensor parallel 3; the last stage also holds the tied wte */
    for (int i = 0; i < 6; i++) {
        int s = i / 3;
        S[i] = s == 0 ? shard(&c, 0, 0, 1, 0, i % 3, 3) : shard(&c, 1, 2, 0, 1, i % 3, 3);
        sst[i] = optim_state_new(S[i]);
    }
    check_shards_reassemble(F, fst, 6, S, sst, 1);
    for (int i = 0; i < 6; i++) {
        optim_state_free(sst[i]);
        gpt2_shard_free(S[i]);
    }
    optim_state_free(fst);
    gpt2_shard_free(F);
}
END_TEST

START_TEST(test_save_refuses_when_no_shard_writes_a_tensor)
{
    gpt2_config c = small_cfg();
    gpt2_shard *a = random_whole(&c, 1, NULL);
    gpt2_shard *stage0 = shard(&c, 0, 0, 1, 0, 0, 1);   /* block 1 and ln_f are nobody's */
    et_err e;
    et_err_clear(&e);
    ck_assert(ckpt_save(tpath("x.h5"), MPI_COMM_SELF, a, NULL, NULL, NULL, &e) == 0);
    size_t n;
    char *before = slurp(tpath("x.h5"), &n);
    ck_assert_int_eq(ckpt_save(tpath("x.h5"), MPI_COMM_SELF, stage0, NULL, NULL, NULL, &e), -1);
    ck_assert_int_eq(e.code, ET_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "transformer/h/1/ln_1/weight"), "%s", e.msg);
    /* a mask that leaves out a tensor held only here */
    et_err_clear(&e);
    unsigned char *mask = malloc((size_t)a->n_tensors);
    memset(mask, 1, (size_t)a->n_tensors);
    mask[a->n_tensors - 1] = 0;
    ck_assert_int_eq(ckpt_save(tpath("x.h5"), MPI_COMM_SELF, a, NULL, NULL, mask, &e), -1);
    ck_assert_msg(strstr(e.msg, a->tensors[a->n_tensors - 1].name), "%s", e.msg);
    ck_assert(same_bytes(tpath("x.h5"), before, n));
    ck_assert(!file_exists(tpath("x.h5.tmp")));
    free(mask);
    free(before);
    gpt2_shard_free(stage0);
    gpt2_shard_free(a);
}
END_TEST

START_TEST(test_load_rejects_missing_file_and_non_hdf5)
{
    gpt2_config c = small_cfg();
    gpt2_shard *a = whole(&c);
    et_err e;
    et_err_clear(&e);
    char p[256];
    snprintf(p, sizeof p, "%s", tpath("nope.h5"));
    ck_assert_int_eq(ckpt_load(p, MPI_COMM_SELF, a, NULL, NULL, &e), -1);
    assert_input_error(&e, p, "No such file");
    et_err_clear(&e);
    gpt2_config rc;
    ck_assert_int_eq(ckpt_read_config(p, &rc, &e), -1);
    assert_input_error(&e, p, "No such file");

    snprintf(p, sizeof p, "%s", tpath("text.h5"));
    FILE *f = fopen(p, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    et_err_clear(&e);
    ck_assert_int_eq(ckpt_load(p, MPI_COMM_SELF, a, NULL, NULL, &e), -1);
    assert_input_error(&e, p, "not an HDF5 file");
    et_err_clear(&e);
    ck_assert_int_eq(ckpt_read_config(dir, &rc, &e), -1);   /* a directory */
    assert_input_error(&e, dir, "not a regular file");
    assert_no_open_hdf5();
    gpt2_shard_free(a);
}
END_TEST

/* Save the small model to name, then apply `edit` to the file with HDF5. */
static char *saved_then_edited(const char *name, int with_st, void (*edit)(hid_t))
{
    gpt2_config c = small_cfg();
    optim_state *st = NULL;
    gpt2_shard *a = random_whole(&c, 2, with_st ? &st : NULL);
    et_err e;
    et_err_clear(&e);
    char *p = strdup(tpath(name));
    ck_assert(ckpt_save(p, MPI_COMM_SELF, a, st, NULL, NULL, &e) == 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    edit(f);
    H5Fclose(f);
    optim_state_free(st);
    gpt2_shard_free(a);
    return p;
}

/* Load p into a fresh small shard (with moments if with_st): must fail with
 * ET_EINPUT mentioning `what`, and leave the shard's parameters untouched. */
static void assert_load_fails(const char *p, int with_st, const char *what)
{
    gpt2_config c = small_cfg();
    gpt2_shard *b = whole(&c);
    gpt2_shard_init_random(b, 99);
    float *copy = malloc(b->n_params * sizeof *copy);
    memcpy(copy, b->params, b->n_params * sizeof *copy);
    optim_state *st = with_st ? optim_state_new(b) : NULL;
    et_err e;
    et_err_clear(&e);
    ck_assert_int_eq(ckpt_load(p, MPI_COMM_SELF, b, st, NULL, &e), -1);
    assert_input_error(&e, p, what);
    ck_assert(memcmp(copy, b->params, b->n_params * sizeof *copy) == 0);
    assert_no_open_hdf5();
    free(copy);
    optim_state_free(st);
    gpt2_shard_free(b);
}

static void drop_c_fc(hid_t f)
{
    H5Ldelete(f, "transformer/h/1/mlp/c_fc/weight", H5P_DEFAULT);
}

static void reshape_c_attn(hid_t f)
{
    H5Ldelete(f, "transformer/h/0/attn/c_attn/weight", H5P_DEFAULT);
    hsize_t d[2] = {36, 100};
    hid_t sp = H5Screate_simple(2, d, NULL);
    hid_t ds = H5Dcreate2(f, "transformer/h/0/attn/c_attn/weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void drop_n_head(hid_t f)
{
    H5Adelete(f, "n_head");
}

static void drop_one_moment(hid_t f)
{
    H5Ldelete(f, "optimizer/v/transformer/ln_f/bias", H5P_DEFAULT);
}

static void nothing(hid_t f)
{
    (void)f;
}

START_TEST(test_load_names_a_missing_tensor)
{
    char *p = saved_then_edited("m.h5", 0, drop_c_fc);
    assert_load_fails(p, 0, "tensor transformer/h/1/mlp/c_fc/weight is missing");
    free(p);
}
END_TEST

START_TEST(test_load_names_a_wrong_shape_and_both_shapes)
{
    char *p = saved_then_edited("s.h5", 0, reshape_c_attn);
    assert_load_fails(p, 0, "transformer/h/0/attn/c_attn/weight has shape [36,100] but the model needs [36,108]");
    free(p);
}
END_TEST

START_TEST(test_load_rejects_a_checkpoint_of_another_model)
{
    gpt2_config big = {2, 4, 48, 97, 7};
    gpt2_shard *a = random_whole(&big, 1, NULL);
    et_err e;
    et_err_clear(&e);
    ck_assert(ckpt_save(tpath("big.h5"), MPI_COMM_SELF, a, NULL, NULL, NULL, &e) == 0);
    gpt2_shard_free(a);
    char p[256];
    snprintf(p, sizeof p, "%s", tpath("big.h5"));
    assert_load_fails(p, 0, "n_head 4 in the file, 3 in the config, n_embd 48 in the file, 36 in the config");
}
END_TEST

START_TEST(test_load_rejects_missing_model_attribute)
{
    char *p = saved_then_edited("a.h5", 0, drop_n_head);
    assert_load_fails(p, 0, "root attribute n_head is missing");
    gpt2_config rc;
    et_err e;
    et_err_clear(&e);
    ck_assert_int_eq(ckpt_read_config(p, &rc, &e), -1);
    assert_input_error(&e, p, "n_head");
    free(p);
}
END_TEST

START_TEST(test_resume_needs_optimizer_state_but_init_does_not)
{
    char *p = saved_then_edited("w.h5", 0, nothing);
    assert_load_fails(p, 1, "no optimizer state");
    /* training.init: weights only, step reset */
    gpt2_config c = small_cfg();
    gpt2_shard *b = whole(&c);
    ckpt_meta m;
    memset(&m, 0x5a, sizeof m);
    et_err e;
    et_err_clear(&e);
    ck_assert_msg(ckpt_load(p, MPI_COMM_SELF, b, NULL, &m, &e) == 0, "%s", e.msg);
    ck_assert(m.step == 0 && m.data_position == 0 && m.seed == 0 && m.wall_s == 0.0);
    gpt2_shard_free(b);
    free(p);
    p = saved_then_edited("v.h5", 1, drop_one_moment);
    assert_load_fails(p, 1, "tensor optimizer/v/transformer/ln_f/bias is missing");
    free(p);
}
END_TEST

START_TEST(test_failed_save_leaves_previous_checkpoint_untouched)
{
    gpt2_config c = small_cfg();
    gpt2_shard *a = random_whole(&c, 4, NULL), *b = random_whole(&c, 5, NULL);
    et_err e;
    et_err_clear(&e);
    char p[256];
    snprintf(p, sizeof p, "%s", tpath("keep.h5"));
    ck_assert(ckpt_save(p, MPI_COMM_SELF, a, NULL, NULL, NULL, &e) == 0);
    size_t n;
    char *before = slurp(p, &n);

    /* the temporary name cannot be created */
    ck_assert(mkdir(tpath("keep.h5.tmp"), 0755) == 0);
    ck_assert_int_eq(ckpt_save(p, MPI_COMM_SELF, b, NULL, NULL, NULL, &e), -1);
    ck_assert_msg(strstr(e.msg, "keep.h5.tmp: cannot create"), "%s", e.msg);
    ck_assert(same_bytes(p, before, n));
    rmdir(tpath("keep.h5.tmp"));

    /* the directory does not exist */
    et_err_clear(&e);
    char q[256];
    snprintf(q, sizeof q, "%s/no/such/dir.h5", dir);
    ck_assert_int_eq(ckpt_save(q, MPI_COMM_SELF, b, NULL, NULL, NULL, &e), -1);
    assert_input_error(&e, q, "does not exist");

    /* the disk fills up mid-write (a file size limit, SIGXFSZ ignored):
     * an error, no temporary file left, the old checkpoint intact */
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {4096, 4096};
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        et_err ce;
        et_err_clear(&ce);
        int rc = ckpt_save(p, MPI_COMM_SELF, b, NULL, NULL, NULL, &ce);
        _exit(rc == -1 && ce.code == ET_ERUNTIME ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "save did not report the full disk");
    ck_assert(same_bytes(p, before, n));
    ck_assert(!file_exists(tpath("keep.h5.tmp")));

    /* the process dies mid-write (SIGXFSZ kills it) */
    pid = fork();
    if (pid == 0) {
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        et_err ce;
        et_err_clear(&ce);
        ckpt_save(p, MPI_COMM_SELF, b, NULL, NULL, NULL, &ce);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    ck_assert(WIFSIGNALED(status));
    ck_assert(same_bytes(p, before, n));
    gpt2_shard *x = whole(&c);
    et_err_clear(&e);
    ck_assert(ckpt_load(p, MPI_COMM_SELF, x, NULL, NULL, &e) == 0);
    ck_assert(memcmp(x->params, a->params, a->n_params * sizeof(float)) == 0);

    /* and a good save replaces it */
    ck_assert(ckpt_save(p, MPI_COMM_SELF, b, NULL, NULL, NULL, &e) == 0);
    ck_assert(ckpt_load(p, MPI_COMM_SELF, x, NULL, NULL, &e) == 0);
    ck_assert(memcmp(x->params, b->params, b->n_params * sizeof(float)) == 0);
    assert_no_open_hdf5();
    free(before);
    gpt2_shard_free(x);
    gpt2_shard_free(a);
    gpt2_shard_free(b);
}
END_TEST

START_TEST(test_write_mask_keeps_one_copy_of_each_replicated_tensor)
{
    gpt2_config c = small_cfg();
    gpt2_shard *head1 = shard(&c, 1, 1, 0, 1, 1, 3), *head0 = shard(&c, 1, 1, 0, 1, 0, 3);
    unsigned char *m1 = malloc((size_t)head1->n_tensors), *m0 = malloc((size_t)head0->n_tensors);
    ckpt_write_mask(head1, 0, m1);
    ckpt_write_mask(head0, 0, m0);
    for (int i = 0; i < head1->n_tensors; i++) {
        const gpt2_tensor *t = &head1->tensors[i];
        int wte = strcmp(t->name, "transformer/wte/weight") == 0;
        ck_assert_int_eq(m1[i], t->sharded && !wte);
        ck_assert_int_eq(m0[i], !wte);
    }
    ckpt_write_mask(head0, 1, m0);   /* another data-parallel replica writes nothing */
    for (int i = 0; i < head0->n_tensors; i++)
        ck_assert_int_eq(m0[i], 0);
    free(m0);
    free(m1);
    gpt2_shard_free(head0);
    gpt2_shard_free(head1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_whole_model_round_trip_is_bit_exact_with_moments_and_meta);
    tcase_add_test(tc, test_file_layout_is_hf_names_full_shapes_and_int_attributes);
    tcase_add_test(tc, test_tp_and_pp_shards_load_their_slices_of_the_whole_model);
    tcase_add_test(tc, test_shards_saved_together_reassemble_the_whole_model);
    tcase_add_test(tc, test_save_refuses_when_no_shard_writes_a_tensor);
    tcase_add_test(tc, test_load_rejects_missing_file_and_non_hdf5);
    tcase_add_test(tc, test_load_names_a_missing_tensor);
    tcase_add_test(tc, test_load_names_a_wrong_shape_and_both_shapes);
    tcase_add_test(tc, test_load_rejects_a_checkpoint_of_another_model);
    tcase_add_test(tc, test_load_rejects_missing_model_attribute);
    tcase_add_test(tc, test_resume_needs_optimizer_state_but_init_does_not);
    tcase_add_test(tc, test_failed_save_leaves_previous_checkpoint_untouched);
    tcase_add_test(tc, test_write_mask_keeps_one_copy_of_each_replicated_tensor);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
