/* mpi-np: 3 */
/*
 * mpi_checkpoint — checkpoints through parallel HDF5 (MPI-IO): three ranks
 * holding tensor-parallel or pipeline shards write one file collectively that
 * a single process loads whole, and the reverse; errors reach every rank.
 * CK_NOFORK; every assertion is collective (all ranks agree on the outcome).
 */
#include <check.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../workers/checkpoint.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static int rank, nranks;
static char dir[64];
static char pbuf[256];

/* Assert `cond` on every rank: fails everywhere if it fails anywhere. */
#define ALL(cond, ...)                                                         \
    do {                                                                       \
        int ok_ = (cond) ? 1 : 0;                                              \
        int all_ = 0;                                                          \
        MPI_Allreduce(&ok_, &all_, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);      \
        if (!ok_)                                                              \
            fprintf(stderr, "rank %d: ", rank), fprintf(stderr, __VA_ARGS__),  \
                fputc('\n', stderr);                                           \
        ck_assert_msg(all_, __VA_ARGS__);                                      \
    } while (0)

static const char *tpath(const char *name)
{
    snprintf(pbuf, sizeof pbuf, "%s/%s", dir, name);
    return pbuf;
}

static gpt2_shard *shard(const gpt2_config *c, int first, int last, int embed, int head, int tpr, int tps)
{
    gpt2_shard_spec s = {first, last, embed, head, tpr, tps};
    et_err e;
    et_err_clear(&e);
    gpt2_shard *sh = gpt2_shard_new(c, &s, &e);
    if (!sh) {
        fprintf(stderr, "gpt2_shard_new: %s\n", e.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return sh;
}

/* A shard drawn from the plan-independent init, with moments derived
 * element-wise from the weights (so every slice of them is predictable). */
static gpt2_shard *drawn(const gpt2_config *c, int first, int last, int embed, int head, int tpr,
                         int tps, optim_state **st)
{
    gpt2_shard *sh = shard(c, first, last, embed, head, tpr, tps);
    gpt2_shard_init_random(sh, 42);
    *st = optim_state_new(sh);
    for (size_t i = 0; i < sh->n_params; i++) {
        (*st)->m[i] = 3.0f * sh->params[i];
        (*st)->v[i] = sh->params[i] * sh->params[i] + 1.0f;
    }
    return sh;
}

/* Same bits in params and moments. */
static int same(const gpt2_shard *a, const optim_state *sa, const gpt2_shard *b, const optim_state *sb)
{
    size_t n = a->n_params * sizeof(float);
    return a->n_params == b->n_params && memcmp(a->params, b->params, n) == 0 &&
           memcmp(sa->m, sb->m, n) == 0 && memcmp(sa->v, sb->v, n) == 0;
}

/* Rank 0 loads `path` whole with MPI_COMM_SELF and compares with the drawn
 * whole model; the answer is broadcast. */
static int whole_on_rank0_matches(const gpt2_config *c, const char *path, int64_t step)
{
    int ok = 1;
    if (rank == 0) {
        optim_state *wst, *lst;
        gpt2_shard *want = drawn(c, 0, c->n_layer - 1, 1, 1, 0, 1, &wst);
        gpt2_shard *got = shard(c, 0, c->n_layer - 1, 1, 1, 0, 1);
        lst = optim_state_new(got);
        ckpt_meta m;
        et_err e;
        et_err_clear(&e);
        ok = ckpt_load(path, MPI_COMM_SELF, got, lst, &m, &e) == 0 && same(want, wst, got, lst) &&
             m.step == step;
        if (!ok)
            fprintf(stderr, "whole load of %s: %s\n", path, e.msg);
        optim_state_free(wst);
        optim_state_free(lst);
        gpt2_shard_free(want);
        gpt2_shard_free(got);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return ok;
}

START_TEST(test_three_tp_ranks_write_one_checkpoint_that_loads_whole)
{
    gpt2_config c = {2, 3, 36, 97, 7};
    optim_state *st;
    gpt2_shard *S = drawn(&c, 0, 1, 1, 1, rank, 3, &st);
    ckpt_meta m = {0};
    m.step = 17;
    et_err e;
    et_err_clear(&e);
    /* every copy of the replicated tensors written */
    int rc = ckpt_save(tpath("tp.h5"), MPI_COMM_WORLD, S, st, &m, NULL, &e);
    ALL(rc == 0, "collective save: %s", e.msg);
    ALL(whole_on_rank0_matches(&c, tpath("tp.h5"), 17), "whole model from TP=3 save");
    /* each element once */
    unsigned char *mask = malloc((size_t)S->n_tensors);
    ckpt_write_mask(S, 0, mask);
    rc = ckpt_save(tpath("tp1.h5"), MPI_COMM_WORLD, S, st, &m, mask, &e);
    ALL(rc == 0, "masked collective save: %s", e.msg);
    ALL(whole_on_rank0_matches(&c, tpath("tp1.h5"), 17), "whole model from masked TP=3 save");
    ALL(access(tpath("tp1.h5.tmp"), F_OK) != 0, "temporary file left behind");
    free(mask);
    optim_state_free(st);
    gpt2_shard_free(S);
}
END_TEST

START_TEST(test_whole_checkpoint_loads_into_three_tp_ranks)
{
    gpt2_config c = {2, 3, 36, 97, 7};
    int ok = 1;
    et_err e;
    et_err_clear(&e);
    if (rank == 0) {
        optim_state *st;
        gpt2_shard *W = drawn(&c, 0, 1, 1, 1, 0, 1, &st);
        ckpt_meta m = {0};
        m.step = 5;
        m.data_position = 99;
        ok = ckpt_save(tpath("whole.h5"), MPI_COMM_SELF, W, st, &m, NULL, &e) == 0;
        optim_state_free(st);
        gpt2_shard_free(W);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    ALL(ok, "single-process save: %s", e.msg);
    optim_state *wst;
    gpt2_shard *want = drawn(&c, 0, 1, 1, 1, rank, 3, &wst);
    gpt2_shard *got = shard(&c, 0, 1, 1, 1, rank, 3);
    optim_state *gst = optim_state_new(got);
    ckpt_meta m;
    int rc = ckpt_load(tpath("whole.h5"), MPI_COMM_WORLD, got, gst, &m, &e);
    ALL(rc == 0, "collective load: %s", e.msg);
    ALL(same(want, wst, got, gst), "TP slice differs from the drawn slice");
    ALL(m.step == 5 && m.data_position == 99, "meta not loaded");
    optim_state_free(wst);
    optim_state_free(gst);
    gpt2_shard_free(want);
    gpt2_shard_free(got);
}
END_TEST

START_TEST(test_three_pipeline_stages_write_one_checkpoint_that_loads_whole)
{
    gpt2_config c = {3, 3, 36, 97, 7};
    optim_state *st;
    /* stage r holds block r; the last stage also holds the tied wte */
    gpt2_shard *S = drawn(&c, rank, rank, rank == 0, rank == 2, 0, 1, &st);
    unsigned char *mask = malloc((size_t)S->n_tensors);
    ckpt_write_mask(S, 0, mask);
    ckpt_meta m = {0};
    m.step = 3;
    et_err e;
    et_err_clear(&e);
    int rc = ckpt_save(tpath("pp.h5"), MPI_COMM_WORLD, S, st, &m, mask, &e);
    ALL(rc == 0, "collective save: %s", e.msg);
    ALL(whole_on_rank0_matches(&c, tpath("pp.h5"), 3), "whole model from 3 stages");
    /* and back into the stages */
    gpt2_shard *G = shard(&c, rank, rank, rank == 0, rank == 2, 0, 1);
    optim_state *gst = optim_state_new(G);
    rc = ckpt_load(tpath("pp.h5"), MPI_COMM_WORLD, G, gst, NULL, &e);
    ALL(rc == 0 && same(S, st, G, gst), "stages reloaded: %s", e.msg);
    free(mask);
    optim_state_free(st);
    optim_state_free(gst);
    gpt2_shard_free(S);
    gpt2_shard_free(G);
}
END_TEST

START_TEST(test_errors_reach_every_rank_with_the_same_message)
{
    gpt2_config c = {2, 3, 36, 97, 7};
    gpt2_shard *S = shard(&c, 0, 1, 1, 1, rank, 3);
    optim_state *st = optim_state_new(S);
    et_err e;
    char all[3][1024];

    /* missing file */
    et_err_clear(&e);
    int rc = ckpt_load(tpath("missing.h5"), MPI_COMM_WORLD, S, NULL, NULL, &e);
    ALL(rc == -1 && e.code == ET_EINPUT && strstr(e.msg, "missing.h5"), "missing file: %s", e.msg);

    /* weights only, optimizer state asked for */
    gpt2_shard_init_random(S, 1);
    et_err_clear(&e);
    rc = ckpt_save(tpath("w.h5"), MPI_COMM_WORLD, S, NULL, NULL, NULL, &e);
    ALL(rc == 0, "save: %s", e.msg);
    et_err_clear(&e);
    rc = ckpt_load(tpath("w.h5"), MPI_COMM_WORLD, S, st, NULL, &e);
    ALL(rc == -1 && strstr(e.msg, "no optimizer state"), "no optimizer state: %s", e.msg);

    /* ranks disagreeing on what to load fail together instead of hanging */
    et_err_clear(&e);
    rc = ckpt_load(tpath("w.h5"), MPI_COMM_WORLD, S, rank == 1 ? NULL : st, NULL, &e);
    ALL(rc == -1 && strstr(e.msg, "some ranks load optimizer state"), "mixed load: %s", e.msg);

    /* another model */
    gpt2_config d = {2, 3, 48, 97, 7};
    gpt2_shard *D = shard(&d, 0, 1, 1, 1, rank, 3);
    et_err_clear(&e);
    rc = ckpt_load(tpath("w.h5"), MPI_COMM_WORLD, D, NULL, NULL, &e);
    ALL(rc == -1 && strstr(e.msg, "n_embd 36 in the file, 48 in the config"), "model mismatch: %s", e.msg);

    /* one rank saves a different model: every rank fails, same message, old file kept */
    et_err_clear(&e);
    rc = ckpt_save(tpath("w.h5"), MPI_COMM_WORLD, rank == 2 ? D : S, NULL, NULL, NULL, &e);
    MPI_Allgather(e.msg, 1024, MPI_CHAR, all, 1024, MPI_CHAR, MPI_COMM_WORLD);
    ALL(rc == -1 && strcmp(all[0], all[1]) == 0 && strcmp(all[1], all[2]) == 0,
        "disagreeing save: %s", e.msg);
    gpt2_shard *W = shard(&c, 0, 1, 1, 1, rank, 3);
    et_err_clear(&e);
    rc = ckpt_load(tpath("w.h5"), MPI_COMM_WORLD, W, NULL, NULL, &e);
    ALL(rc == 0 && memcmp(W->params, S->params, S->n_params * sizeof(float)) == 0, "old file lost: %s", e.msg);

    /* a directory that does not exist */
    et_err_clear(&e);
    rc = ckpt_save(tpath("no/dir.h5"), MPI_COMM_WORLD, S, NULL, NULL, NULL, &e);
    ALL(rc == -1 && strstr(e.msg, "does not exist"), "missing directory: %s", e.msg);
    gpt2_shard_free(W);
    gpt2_shard_free(D);
    optim_state_free(st);
    gpt2_shard_free(S);
}
END_TEST

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (nranks != 3) {
        if (rank == 0)
            fprintf(stderr, "mpi_checkpoint needs exactly 3 ranks\n");
        MPI_Finalize();
        return 1;
    }
    if (rank == 0) {
        snprintf(dir, sizeof dir, "/tmp/et_mpickpt_XXXXXX");
        if (!mkdtemp(dir))
            MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);

    Suite *s = suite_create("mpi_checkpoint");
    TCase *tc = tcase_create("collective");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_three_tp_ranks_write_one_checkpoint_that_loads_whole);
    tcase_add_test(tc, test_whole_checkpoint_loads_into_three_tp_ranks);
    tcase_add_test(tc, test_three_pipeline_stages_write_one_checkpoint_that_loads_whole);
    tcase_add_test(tc, test_errors_reach_every_rank_with_the_same_message);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
#if defined(__SANITIZE_ADDRESS__)
    /* Check for leaks now, while Open MPI's plugins are still loaded: after
     * MPI_Finalize unloads them, what they keep for the process lifetime
     * shows up as unattributable "unknown module" leaks. This replaces the
     * end-of-process check. */
    __lsan_do_leak_check();
#endif
    MPI_Finalize();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
