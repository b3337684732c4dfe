/*
 * test_dataset — workers/dataset: a written dataset loads back exactly (uint16
 * on disk for small vocabularies, int32 for large), writing is atomic, and
 * every kind of broken file (made here with the HDF5 API) is refused with one
 * et_err line naming the file and the problem, HDF5 itself printing nothing.
 * Runs as a plain process: no MPI_Init.
 */
#include <check.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../workers/dataset.h"

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
    snprintf(dir, sizeof dir, "/tmp/et_ds_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* Count the entries of the temporary directory (to spot leftovers). */
static int dir_entries(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* ------------------------------------------------ files made by hand */

/* A new HDF5 file at path (caller closes). */
static hid_t h5_new(const char *path)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    return f;
}

/* Root attribute name = v, stored with file type ftype. */
static void attr_int(hid_t f, const char *name, hid_t ftype, long long v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(H5Awrite(a, H5T_NATIVE_LLONG, &v), 0);
    H5Aclose(a);
    H5Sclose(sp);
}

/* Root attribute name = s as a fixed-length string of size strlen(s). */
static void attr_fixed_str(hid_t f, const char *name, const char *s)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s));
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(H5Awrite(a, t, s), 0);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(sp);
}

/* Dataset path (its group is created if missing) of file type ftype with
 * the given shape, holding data (native long long, n values; NULL: none). */
static void add_data(hid_t f, const char *group, hid_t ftype, int rank, const hsize_t *dims,
                     const long long *data)
{
    if (H5Lexists(f, group, H5P_DEFAULT) <= 0)
        H5Gclose(H5Gcreate2(f, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    char p[64];
    snprintf(p, sizeof p, "%s/tokens", group);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, p, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(d, 0);
    if (data)
        ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(d);
    H5Sclose(sp);
}

/* A 1-D split of n tokens i % 200 (file type uint16), with bad = value at
 * index at (at < 0: none). */
static void add_split(hid_t f, const char *group, size_t n, long at, long long bad, hid_t ftype)
{
    long long *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (long long)(i % 200);
    if (at >= 0)
        v[at] = bad;
    hsize_t dims[1] = {n};
    add_data(f, group, ftype, 1, dims, v);
    free(v);
}

/* A good file apart from what the caller changes: attributes (byte, 256)
 * and splits of 1000 and 300 tokens. Parts named in `skip` are left out. */
static hid_t make_base(const char *path, const char *skip)
{
    hid_t f = h5_new(path);
    if (!strstr(skip, "vocab"))
        attr_int(f, "vocab_size", H5T_STD_I32LE, 256);
    if (!strstr(skip, "tokenizer"))
        attr_fixed_str(f, "tokenizer", "byte");
    if (!strstr(skip, "train"))
        add_split(f, "train", 1000, -1, 0, H5T_STD_U16LE);
    if (!strstr(skip, "val"))
        add_split(f, "val", 300, -1, 0, H5T_STD_U16LE);
    return f;
}

/* Load path expecting failure with a message containing want; also check the
 * message is one line starting with the path, the code ET_EINPUT, the struct
 * zeroed, and that HDF5 printed nothing on stderr. */
static void assert_load_fails(const char *path, int model_vocab, size_t min_tokens, const char *want)
{
    fflush(stderr);
    int saved = dup(2);
    char errpath[128];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    int fd = open(errpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    dup2(fd, 2);
    close(fd);
    et_err e;
    et_err_clear(&e);
    et_dataset ds;
    int rc = dataset_load(path, model_vocab, min_tokens, &ds, &e);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *ef = fopen(errpath, "r");
    fseek(ef, 0, SEEK_END);
    long printed = ftell(ef);
    fclose(ef);
    unlink(errpath);

    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, want) != NULL, "error '%s' lacks '%s'", e.msg, want);
    ck_assert_msg(strncmp(e.msg, path, strlen(path)) == 0, "error '%s' does not start with the file", e.msg);
    ck_assert_msg(strchr(e.msg, '\n') == NULL, "error not one line: %s", e.msg);
    ck_assert_msg(printed == 0, "HDF5 printed %ld bytes on stderr", printed);
    ck_assert_ptr_null(ds.train);
    ck_assert_ptr_null(ds.val);
}

/* ----------------------------------------------------------- round trip */

START_TEST(test_write_then_load_round_trips_tokens_and_attributes)
{
    size_t nt = 5000, nv = 700;
    int32_t *tr = malloc(nt * sizeof *tr), *va = malloc(nv * sizeof *va);
    for (size_t i = 0; i < nt; i++)
        tr[i] = (int32_t)((i * 7919) % 50257);
    for (size_t i = 0; i < nv; i++)
        va[i] = (int32_t)(50256 - i % 50257);
    et_err e;
    et_err_clear(&e);
    ck_assert_msg(dataset_write(tpath("d.h5"), "gpt2", 50257, tr, nt, va, nv, &e) == 0, "%s", e.msg);
    et_dataset ds;
    ck_assert_msg(dataset_load(tpath("d.h5"), 50257, 2, &ds, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(ds.tokenizer, "gpt2");
    ck_assert_int_eq(ds.vocab_size, 50257);
    ck_assert_uint_eq(ds.n_train, nt);
    ck_assert_uint_eq(ds.n_val, nv);
    ck_assert(memcmp(ds.train, tr, nt * sizeof *tr) == 0);
    ck_assert(memcmp(ds.val, va, nv * sizeof *va) == 0);
    dataset_free(&ds);
    ck_assert_ptr_null(ds.train);

    /* on disk: uint16 tokens, a variable-length UTF-8 tokenizer string */
    hid_t f = H5Fopen(tpath("d.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "train/tokens", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    ck_assert(H5Tequal(t, H5T_STD_U16LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    hid_t a = H5Aopen(f, "tokenizer", H5P_DEFAULT);
    t = H5Aget_type(a);
    ck_assert(H5Tis_variable_str(t) > 0);
    ck_assert_int_eq(H5Tget_cset(t), H5T_CSET_UTF8);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);
    free(tr);
    free(va);
}
END_TEST

START_TEST(test_vocab_above_65536_is_stored_as_int32)
{
    int32_t tr[] = {0, 70000, 69999, 5}, va[] = {65536, 1, 2};
    et_err e;
    et_err_clear(&e);
    ck_assert_msg(dataset_write(tpath("big.h5"), "custom", 70001, tr, 4, va, 3, &e) == 0, "%s", e.msg);
    hid_t f = H5Fopen(tpath("big.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "val/tokens", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    ck_assert(H5Tequal(t, H5T_STD_I32LE) > 0);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    et_dataset ds;
    ck_assert_msg(dataset_load(tpath("big.h5"), 0, 0, &ds, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(ds.tokenizer, "custom");
    ck_assert(memcmp(ds.train, tr, sizeof tr) == 0 && memcmp(ds.val, va, sizeof va) == 0);
    dataset_free(&ds);
}
END_TEST

START_TEST(test_fixed_length_tokenizer_and_other_integer_types_load)
{
    hid_t f = make_base(tpath("x.h5"), "train val");
    add_split(f, "train", 1000, 10, 255, H5T_STD_I64BE);   /* big-endian int64 */
    add_split(f, "val", 300, -1, 0, H5T_STD_U8LE);
    H5Fclose(f);
    et_err e;
    et_err_clear(&e);
    et_dataset ds;
    ck_assert_msg(dataset_load(tpath("x.h5"), 256, 130, &ds, &e) == 0, "%s", e.msg);
    ck_assert_str_eq(ds.tokenizer, "byte");
    ck_assert_int_eq(ds.vocab_size, 256);
    ck_assert_int_eq(ds.train[10], 255);
    ck_assert_int_eq(ds.train[999], 999 % 200);
    ck_assert_int_eq(ds.val[299], 299 % 200);
    dataset_free(&ds);
}
END_TEST

/* ------------------------------------------------------------- writing */

START_TEST(test_failed_write_leaves_the_existing_file_and_no_temporary)
{
    FILE *o = fopen(tpath("keep.h5"), "w");
    fputs("precious", o);
    fclose(o);
    int32_t good[] = {1, 2, 3}, bad[] = {1, 256, 3};
    et_err e;
    et_err_clear(&e);
    ck_assert_int_eq(dataset_write(tpath("keep.h5"), "byte", 256, good, 3, bad, 3, &e), -1);
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, "val/tokens[1] = 256 is outside 0..255"), "%s", e.msg);
    et_err_clear(&e);
    ck_assert_int_eq(dataset_write(tpath("keep.h5"), "byte", 256, good, 3, good, 0, &e), -1);
    ck_assert_msg(strstr(e.msg, "the val split is empty"), "%s", e.msg);
    char buf[32] = {0};
    o = fopen(tpath("keep.h5"), "r");
    ck_assert_int_eq((int)fread(buf, 1, sizeof buf - 1, o), 8);
    fclose(o);
    ck_assert_str_eq(buf, "precious");
    ck_assert_int_eq(dir_entries(), 1);

    /* success replaces it */
    et_err_clear(&e);
    ck_assert_msg(dataset_write(tpath("keep.h5"), "byte", 256, good, 3, good, 3, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(dir_entries(), 1);
    et_dataset ds;
    ck_assert_msg(dataset_load(tpath("keep.h5"), 0, 0, &ds, &e) == 0, "%s", e.msg);
    dataset_free(&ds);
}
END_TEST

START_TEST(test_write_to_an_impossible_path_is_a_clear_input_error)
{
    int32_t ids[] = {1, 2, 3};
    et_err e;
    et_err_clear(&e);
    ck_assert_int_eq(dataset_write(tpath("no/such/dir/d.h5"), "byte", 256, ids, 3, ids, 3, &e), -1);
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, "cannot create the file: No such file or directory"), "%s", e.msg);
    et_err_clear(&e);
    ck_assert_int_eq(dataset_write(dir, "byte", 256, ids, 3, ids, 3, &e), -1);
    ck_assert_msg(strstr(e.msg, "is a directory"), "%s", e.msg);
}
END_TEST

/* ---------------------------------------------------------- validation */

START_TEST(test_missing_and_non_hdf5_files_are_refused)
{
    assert_load_fails(tpath("absent.h5"), 0, 0, "absent.h5: no such file (make one with 'edgetrain prepare-data')");
    FILE *o = fopen(tpath("text.h5"), "w");
    fputs("just some text, not HDF5\n", o);
    fclose(o);
    assert_load_fails(tpath("text.h5"), 0, 0, "text.h5: not an HDF5 file");
    assert_load_fails(dir, 0, 0, "is a directory");
}
END_TEST

START_TEST(test_missing_or_wrong_attributes_are_refused)
{
    H5Fclose(make_base(tpath("a.h5"), "vocab"));
    assert_load_fails(tpath("a.h5"), 0, 0, "no root attribute vocab_size");
    H5Fclose(make_base(tpath("b.h5"), "tokenizer"));
    assert_load_fails(tpath("b.h5"), 0, 0, "no root attribute tokenizer");
    hid_t f = make_base(tpath("c.h5"), "vocab");
    attr_fixed_str(f, "vocab_size", "256");
    H5Fclose(f);
    assert_load_fails(tpath("c.h5"), 0, 0, "root attribute vocab_size must be one integer");
    f = make_base(tpath("d.h5"), "vocab");
    attr_int(f, "vocab_size", H5T_STD_I64LE, 0);
    H5Fclose(f);
    assert_load_fails(tpath("d.h5"), 0, 0, "vocab_size = 0 is not a vocabulary size");
    f = make_base(tpath("e.h5"), "tokenizer");
    attr_int(f, "tokenizer", H5T_STD_I32LE, 1);
    H5Fclose(f);
    assert_load_fails(tpath("e.h5"), 0, 0, "root attribute tokenizer must be one string");
}
END_TEST

START_TEST(test_missing_misshapen_or_non_integer_splits_are_refused)
{
    H5Fclose(make_base(tpath("a.h5"), "val"));
    assert_load_fails(tpath("a.h5"), 0, 0, "a.h5: no dataset val/tokens");

    hid_t f = make_base(tpath("b.h5"), "train");
    H5Gclose(H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Gclose(H5Gcreate2(f, "train/tokens", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    assert_load_fails(tpath("b.h5"), 0, 0, "train/tokens is not a dataset");

    f = make_base(tpath("c.h5"), "train");
    hsize_t d2[2] = {10, 10};
    long long zeros[100] = {0};
    add_data(f, "train", H5T_STD_U16LE, 2, d2, zeros);
    H5Fclose(f);
    assert_load_fails(tpath("c.h5"), 0, 0, "train/tokens has 2 dimensions, expected 1");

    f = make_base(tpath("d.h5"), "val");
    hsize_t d1[1] = {100};
    add_data(f, "val", H5T_IEEE_F32LE, 1, d1, zeros);
    H5Fclose(f);
    assert_load_fails(tpath("d.h5"), 0, 0, "val/tokens holds floating-point numbers, expected integer token ids");

    f = make_base(tpath("e.h5"), "val");
    hsize_t d0[1] = {0};
    add_data(f, "val", H5T_STD_U16LE, 1, d0, NULL);
    H5Fclose(f);
    assert_load_fails(tpath("e.h5"), 0, 0, "val/tokens is empty");

    H5Fclose(make_base(tpath("f.h5"), ""));
    assert_load_fails(tpath("f.h5"), 0, 302, "val/tokens has 300 tokens, fewer than the 302 a sequence needs");
}
END_TEST

START_TEST(test_token_ids_outside_the_vocab_are_named_by_index)
{
    hid_t f = make_base(tpath("a.h5"), "train");
    add_split(f, "train", 1000, 3, 300, H5T_STD_U16LE);
    H5Fclose(f);
    assert_load_fails(tpath("a.h5"), 0, 0, "a.h5: train/tokens[3] = 300 is >= vocab_size 256 (the file's own");

    /* the model's vocab is smaller than the file's: the brief's example */
    f = make_base(tpath("DATA.h5"), "vocab tokenizer train");
    attr_int(f, "vocab_size", H5T_STD_I32LE, 50257);
    attr_fixed_str(f, "tokenizer", "gpt2");
    add_split(f, "train", 2000, 1234, 300, H5T_STD_U16LE);
    H5Fclose(f);
    assert_load_fails(tpath("DATA.h5"), 256, 0,
                      "DATA.h5: train/tokens[1234] = 300 is >= vocab_size 256 (the model's; this file was "
                      "tokenized by gpt2 with vocab_size 50257: re-run prepare-data with the model's tokenizer)");
    /* a model with a larger vocab takes it */
    et_err e;
    et_err_clear(&e);
    et_dataset ds;
    ck_assert_msg(dataset_load(tpath("DATA.h5"), 60000, 0, &ds, &e) == 0, "%s", e.msg);
    dataset_free(&ds);

    f = make_base(tpath("neg.h5"), "val");
    add_split(f, "val", 300, 17, -5, H5T_STD_I32LE);
    H5Fclose(f);
    assert_load_fails(tpath("neg.h5"), 0, 0, "val/tokens[17] = -5 is negative");

    /* past the first read block */
    f = make_base(tpath("far.h5"), "train");
    add_split(f, "train", 300000, 270001, 256, H5T_STD_U16LE);
    H5Fclose(f);
    assert_load_fails(tpath("far.h5"), 0, 0, "train/tokens[270001] = 256 is >= vocab_size 256");
}
END_TEST

static Suite *dataset_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_write_then_load_round_trips_tokens_and_attributes);
    tcase_add_test(tc, test_vocab_above_65536_is_stored_as_int32);
    tcase_add_test(tc, test_fixed_length_tokenizer_and_other_integer_types_load);
    tcase_add_test(tc, test_failed_write_leaves_the_existing_file_and_no_temporary);
    tcase_add_test(tc, test_write_to_an_impossible_path_is_a_clear_input_error);
    tcase_add_test(tc, test_missing_and_non_hdf5_files_are_refused);
    tcase_add_test(tc, test_missing_or_wrong_attributes_are_refused);
    tcase_add_test(tc, test_missing_misshapen_or_non_integer_splits_are_refused);
    tcase_add_test(tc, test_token_ids_outside_the_vocab_are_named_by_index);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dataset_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
