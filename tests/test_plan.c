/*
 * test_plan — the plan file: write -> read round trip, the rank -> role and
 * group lookups the workers use, and every validation error with the
 * file:line:col of the offending YAML node.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/costmodel.h"
#include "../orchestrator/launch.h"
#include "../orchestrator/plan.h"

static char dir[256];

/* Config of servers a..f, 6 layers, 6 heads, global_batch 16. */
static et_config *cfg_new(void)
{
    static const char *names[6] = {"a", "b", "c", "d", "e", "f"};
    et_config *c = calloc(1, sizeof *c);
    strcpy(c->path, "configs/test.yaml");
    strcpy(c->name, "test");
    int n = 6;
    c->cluster.n_servers = n;
    c->cluster.servers = calloc((size_t)n, sizeof(et_server));
    c->cluster.link = calloc((size_t)(n * n), sizeof(et_link));
    for (int i = 0; i < n; i++) {
        strcpy(c->cluster.servers[i].name, names[i]);
        strcpy(c->cluster.servers[i].host, i < 3 ? "localhost" : "edge-box");
        c->cluster.servers[i].gflops = 100 * (i + 1);
        c->cluster.servers[i].memory = (uint64_t)1 << 30;
        c->cluster.servers[i].slots = 1;
        for (int j = 0; j < n; j++)
            c->cluster.link[i * n + j] = (et_link){1.25e8, 1e-3};
    }
    c->model = (gpt2_config){6, 6, 48, 256, 32};
    c->training.seq_len = 16;
    c->training.global_batch = 16;
    c->training.micro_batch = 2;
    return c;
}

/* 2 replicas x 2 stages, TP 2 then 1: servers (a,b | c) and (d,e | f). */
static et_plan *sample_plan(const et_config *c)
{
    int tp[2] = {2, 1};
    et_plan *p = plan_new(2, 2, tp, c->cluster.n_servers);
    p->first[0] = 0, p->last[0] = 2, p->first[1] = 3, p->last[1] = 5;
    int sv[6] = {0, 1, 2, 3, 4, 5};
    memcpy(p->server, sv, sizeof sv);
    p->schedule = ET_SCHED_1F1B;
    p->micro_batch = 2;
    p->micro_batches = 4;
    cm_model m;
    cm_model_init(&m, &c->model, 2, 16);
    cm_evaluate(&m, &c->cluster, p);
    return p;
}

/* Write text to dir/name and return the path (static buffer per call site). */
static const char *put(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text as a plan; expect failure whose message starts with
 * "<path>:<pos>: " and contains what. */
static void refused(const char *text, const char *pos, const char *what)
{
    et_config *c = cfg_new();
    const char *path = put("bad.yaml", text);
    et_err e = {0};
    et_plan *p = plan_load(path, c, &e);
    ck_assert_msg(p == NULL, "accepted a plan that should say '%s'", what);
    char head[600];
    snprintf(head, sizeof head, "%s%s%s: ", path, pos[0] ? ":" : "", pos);
    ck_assert_msg(strncmp(e.msg, head, strlen(head)) == 0, "expected '%s...', got '%s'", head, e.msg);
    ck_assert_msg(strstr(e.msg, what) != NULL, "expected '%s' in '%s'", what, e.msg);
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_ptr_null(strchr(e.msg, '\n'));
    et_config_free(c);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/et_test_plan_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[600];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

START_TEST(test_plan_file_round_trips_every_field)
{
    et_config *c = cfg_new();
    et_plan *p = sample_plan(c);
    char path[300];
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    et_err e = {0};
    ck_assert_int_eq(plan_write(p, c, path, &e), 0);
    et_plan *q = plan_load(path, c, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_int_eq(q->n_replicas, 2);
    ck_assert_int_eq(q->n_stages, 2);
    ck_assert_int_eq(q->schedule, ET_SCHED_1F1B);
    ck_assert_int_eq(q->micro_batch, 2);
    ck_assert_int_eq(q->micro_batches, 4);
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(q->first[s], p->first[s]);
        ck_assert_int_eq(q->last[s], p->last[s]);
        ck_assert_int_eq(q->tp[s], p->tp[s]);
    }
    for (int i = 0; i < plan_n_workers(p); i++)
        ck_assert_int_eq(q->server[i], p->server[i]);
    /* predictions come back bit for bit */
    ck_assert(q->pred.step_s == p->pred.step_s);
    ck_assert(q->pred.compute_s == p->pred.compute_s);
    ck_assert(q->pred.communication_s == p->pred.communication_s);
    ck_assert(q->pred.bubble_s == p->pred.bubble_s);
    ck_assert(q->pred.pipeline_s == p->pred.pipeline_s);
    ck_assert_str_eq(q->pred.bottleneck, p->pred.bottleneck);
    for (int i = 0; i < 4; i++) {
        ck_assert(q->stage_pred[i].fwd_s == p->stage_pred[i].fwd_s);
        ck_assert(q->stage_pred[i].bubble_s == p->stage_pred[i].bubble_s);
    }
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(q->memory[i], p->memory[i]);
    /* no temporary file left behind */
    DIR *d = opendir(dir);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)))
        files += de->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(files, 1);
    plan_free(p);
    plan_free(q);
    et_config_free(c);
}
END_TEST

START_TEST(test_plan_file_has_the_keys_scripts_rely_on)
{
    et_config *c = cfg_new();
    et_plan *p = sample_plan(c);
    char path[300], buf[8192];
    snprintf(path, sizeof path, "%s/plan.yaml", dir);
    et_err e = {0};
    ck_assert_int_eq(plan_write(p, c, path, &e), 0);
    FILE *f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    const char *keys[] = {"\npredicted:\n  step_s: ", "\n  compute_s: ", "\n  communication_s: ", "\n  bubble_s: ",
                          "\nschedule: 1f1b\n", "\nmicro_batch: 2\n", "\nmicro_batches: 4\n", "\nreplicas:\n",
                          "- {layers: [0, 2], servers: [a, b],", "- {layers: [3, 5], servers: [f],",
                          "\nmemory:", "\nranks:", "{rank: 0, role: controller, server: a, host: localhost}",
                          "{rank: 6, role: worker, replica: 1, stage: 1, tp: 0, server: f, host: edge-box}"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(strstr(buf, keys[i]) != NULL, "missing '%s'", keys[i]);
    plan_free(p);
    et_config_free(c);
}
END_TEST

START_TEST(test_writing_into_a_missing_directory_fails_cleanly)
{
    et_config *c = cfg_new();
    et_plan *p = sample_plan(c);
    et_err e = {0};
    ck_assert_int_eq(plan_write(p, c, "/nonexistent-dir/x/plan.yaml", &e), -1);
    ck_assert_int_eq(e.code, ET_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "cannot write"));
    plan_free(p);
    et_config_free(c);
}
END_TEST

START_TEST(test_ranks_map_to_roles_and_groups)
{
    et_config *c = cfg_new();
    et_plan *p = sample_plan(c);
    ck_assert_int_eq(plan_n_ranks(p), 7);
    plan_role ro;
    ck_assert_int_eq(plan_rank_role(p, 0, &ro), -1);   /* the controller */
    ck_assert_int_eq(plan_rank_role(p, 7, &ro), -1);
    ck_assert_int_eq(plan_rank_role(p, 5, &ro), 0);    /* replica 1, stage 0, tp 1 */
    ck_assert_int_eq(ro.replica, 1);
    ck_assert_int_eq(ro.stage, 0);
    ck_assert_int_eq(ro.tp_index, 1);
    ck_assert_int_eq(ro.server, 4);
    ck_assert_int_eq(ro.has_embed, 1);
    ck_assert_int_eq(ro.has_head, 0);
    ck_assert_int_eq(plan_rank(p, 1, 1, 0), 6);
    int g[8];
    ck_assert_int_eq(plan_tp_group(p, 5, g), 2);
    ck_assert_int_eq(g[0], 4);
    ck_assert_int_eq(g[1], 5);
    ck_assert_int_eq(plan_dp_group(p, 2, g), 2);       /* stage 0 tp 1 in both replicas */
    ck_assert_int_eq(g[0], 2);
    ck_assert_int_eq(g[1], 5);
    /* TP 2 -> 1: the single next rank receives from tp 0; both send-to lists */
    ck_assert_int_eq(plan_act_src(p, 3), 1);
    ck_assert_int_eq(plan_act_dsts(p, 1, g), 1);
    ck_assert_int_eq(g[0], 3);
    ck_assert_int_eq(plan_act_dsts(p, 2, g), 0);
    /* gradients 1 -> 2: both TP ranks receive from rank 3 */
    ck_assert_int_eq(plan_grad_src(p, 1), 3);
    ck_assert_int_eq(plan_grad_src(p, 2), 3);
    ck_assert_int_eq(plan_grad_dsts(p, 3, g), 2);
    ck_assert_int_eq(plan_act_src(p, 1), -1);
    ck_assert_int_eq(plan_grad_src(p, 3), -1);
    /* tied embedding: tp 0 of the first stage with tp 0 of the last */
    ck_assert_int_eq(plan_embed_peer(p, 1), 3);
    ck_assert_int_eq(plan_embed_peer(p, 3), 1);
    ck_assert_int_eq(plan_embed_peer(p, 2), -1);
    ck_assert_int_eq(plan_embed_peer(p, 6), 4);
    plan_free(p);
    et_config_free(c);
}
END_TEST

#define HEAD "schedule: gpipe\nmicro_batch: 2\nmicro_batches: 8\n"

START_TEST(test_every_invalid_plan_is_refused_with_its_position)
{
    refused("schedule: [gpipe\n", "2:1", "not valid YAML");
    refused("", "", "empty file");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [a]}\nsheduel: x\n", "6:1",
            "unknown key 'sheduel' in the plan (did you mean 'schedule'?)");
    refused("schedule: gpipe\nmicro_batch: 2\nreplicas: []\n", "1:1", "lacks the key 'micro_batches'");
    refused("schedule: zb\nmicro_batch: 2\nmicro_batches: 8\nreplicas:\n  - - {layers: [0, 5], servers: [a]}\n",
            "1:11", "unknown schedule 'zb'");
    refused("schedule: gpipe\nmicro_batch: two\nmicro_batches: 8\nreplicas:\n  - - {layers: [0, 5], servers: [a]}\n",
            "2:14", "micro_batch must be a whole number");
    refused(HEAD "replicas: []\n", "4:11", "replicas must be a non-empty list");
    refused(HEAD "replicas:\n  - - {layers: [0, 2], servers: [a]}\n    - {layers: [2, 5], servers: [b]}\n",
            "6:16", "starts at layer 2 but the previous stage ended at layer 2");
    refused(HEAD "replicas:\n  - - {layers: [0, 1], servers: [a]}\n    - {layers: [3, 5], servers: [b]}\n",
            "6:16", "starts at layer 3 but the previous stage ended at layer 1");
    refused(HEAD "replicas:\n  - - {layers: [1, 5], servers: [a]}\n", "5:16", "the first stage must start at layer 0");
    refused(HEAD "replicas:\n  - - {layers: [0, 4], servers: [a]}\n", "5:16", "ends at layer 4 but the model has 6 layers");
    refused(HEAD "replicas:\n  - - {layers: [0, 9], servers: [a]}\n", "5:20", "last layer is 9, must be in [0, 5]");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [a, b, c, d]}\n", "5:33",
            "must divide n_head (6) and 4*n_embd (192)");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [zz]}\n", "5:34", "unknown server 'zz'");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [A]}\n", "5:34", "(did you mean 'a'?");
    refused("schedule: gpipe\nmicro_batch: 2\nmicro_batches: 4\nreplicas:\n  - - {layers: [0, 5], servers: [a]}\n"
            "  - - {layers: [0, 5], servers: [a]}\n",
            "6:34", "server 'a' appears twice");
    refused("schedule: gpipe\nmicro_batch: 2\nmicro_batches: 4\nreplicas:\n  - - {layers: [0, 5], servers: [a]}\n"
            "  - - {layers: [0, 2], servers: [b]}\n    - {layers: [3, 5], servers: [c]}\n",
            "6:5", "replica 1 has 2 stages but replica 0 has 1");
    refused("schedule: gpipe\nmicro_batch: 2\nmicro_batches: 4\nreplicas:\n"
            "  - - {layers: [0, 2], servers: [a]}\n    - {layers: [3, 5], servers: [b]}\n"
            "  - - {layers: [0, 1], servers: [c]}\n    - {layers: [2, 5], servers: [d]}\n",
            "7:16", "all replicas share the same cuts");
    refused("schedule: gpipe\nmicro_batch: 2\nmicro_batches: 4\nreplicas:\n"
            "  - - {layers: [0, 5], servers: [a]}\n  - - {layers: [0, 5], servers: [b, c]}\n",
            "6:33", "the same tensor-parallel degrees");
    refused("schedule: gpipe\nmicro_batch: 2\nmicro_batches: 4\nreplicas:\n  - - {layers: [0, 5], servers: [a]}\n",
            "3:16", "replicas (1) x micro_batches (4) x micro_batch (2) = 8 sequences, but the config's "
            "global_batch is 16");
    refused("model: {n_layer: 6, n_head: 6, n_embd: 64, vocab_size: 256, block_size: 32}\n" HEAD
            "replicas:\n  - - {layers: [0, 5], servers: [a]}\n",
            "1:40", "made for n_embd 64 but the config's model has 48");
    refused("seq_len: 32\n" HEAD "replicas:\n  - - {layers: [0, 5], servers: [a]}\n", "1:10",
            "made for seq_len 32 but the config says 16");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [a]}\nranks:\n"
            "  - {rank: 0, role: controller, server: a}\n  - {rank: 1, role: worker, server: b}\n",
            "8:5", "rank 1 is on server 'b' but the replicas put it on 'a'");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [a]}\nranks:\n  - {rank: 0, role: controller, server: a}\n",
            "7:3", "ranks lists 1 ranks but the replicas need 2");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [a], predicted: {fwd_s: fast}}\n", "5:57",
            "fwd_s must be a number");
    refused(HEAD "replicas:\n  - - {layers: [0, 5], servers: [a], extra: 1}\n", "5:38",
            "unknown key 'extra' in stage 0 of replica 0");
}
END_TEST

START_TEST(test_a_missing_plan_file_is_named)
{
    et_config *c = cfg_new();
    et_err e = {0};
    ck_assert_ptr_null(plan_load("/nonexistent/plan.yaml", c, &e));
    ck_assert_str_eq(e.msg, "/nonexistent/plan.yaml: cannot open (No such file or directory)");
    ck_assert_int_eq(e.code, ET_EINPUT);
    et_config_free(c);
}
END_TEST

START_TEST(test_a_minimal_hand_written_plan_loads)
{
    et_config *c = cfg_new();
    const char *path = put("min.yaml", HEAD "replicas:\n  - - {layers: [0, 3], servers: [c, d]}\n"
                                             "    - {layers: [4, 5], servers: [e]}\n");
    et_err e = {0};
    et_plan *p = plan_load(path, c, &e);
    ck_assert_msg(p != NULL, "%s", e.msg);
    ck_assert_int_eq(p->width, 3);
    ck_assert_int_eq(plan_server(p, 0, 0, 1), 3);
    ck_assert_int_eq(p->schedule, ET_SCHED_GPIPE);
    plan_free(p);
    et_config_free(c);
}
END_TEST

/* Index of s in argv after position from, or -1. */
static int argv_find(const launch_material *lm, const char *s)
{
    for (int i = 0; i < lm->argc; i++)
        if (strcmp(lm->argv[i], s) == 0)
            return i;
    return -1;
}

static void read_file(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
}

START_TEST(test_launch_runs_a_cluster_plan_with_hostfile_and_rankfile)
{
    et_config *c = cfg_new();
    et_plan *p = sample_plan(c);   /* servers d, e, f live on host edge-box */
    char plan_path[300], buf[4096];
    snprintf(plan_path, sizeof plan_path, "%s/plan.yaml", dir);
    launch_opts lo = {0};
    launch_material lm;
    et_err e = {0};
    ck_assert_int_eq(launch_prepare(p, c, "configs/test.yaml", plan_path, &lo, &lm, &e), 0);
    ck_assert_str_eq(lm.argv[0], "mpirun");
    ck_assert_ptr_null(lm.argv[lm.argc]);
    ck_assert_int_eq(lm.local, 0);
    int np = argv_find(&lm, "-np");
    ck_assert_int_ge(np, 0);
    ck_assert_str_eq(lm.argv[np + 1], "7");
    ck_assert_int_eq(argv_find(&lm, "--allow-run-as-root") >= 0, geteuid() == 0);
    int hf = argv_find(&lm, "--hostfile"), rf = argv_find(&lm, "--rankfile");
    ck_assert(hf > 0 && rf > 0);
    ck_assert_str_eq(lm.argv[hf + 1], lm.hostfile);
    ck_assert_int_lt(argv_find(&lm, "--bind-to"), 0);
    int x = argv_find(&lm, "OPENBLAS_NUM_THREADS=1");
    ck_assert(x > 0 && strcmp(lm.argv[x - 1], "-x") == 0);
    /* eager TCP messages across hosts (no rendezvous round trip) */
    const char *tcp[] = {"btl_tcp_eager_limit", "btl_tcp_rndv_eager_limit",
                         "btl_tcp_max_send_size"};
    for (int k = 0; k < 3; k++) {
        int m = argv_find(&lm, tcp[k]);
        ck_assert(m > 0 && strcmp(lm.argv[m - 1], "--mca") == 0);
        ck_assert_str_eq(lm.argv[m + 1], ET_LAUNCH_TCP_EAGER);
    }
    int w = argv_find(&lm, "worker");
    ck_assert(w > 0 && lm.argv[w + 1][0] == '/' && strcmp(lm.argv[w + 2], "--plan") == 0);
    ck_assert_ptr_nonnull(strstr(lm.argv[w + 1], "configs/test.yaml"));
    read_file(lm.rankfile, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "rank 0=localhost slot=0\n"));
    ck_assert_ptr_nonnull(strstr(buf, "rank 4=edge-box slot=0\n"));   /* replica 1's first worker, on d */
    ck_assert_ptr_nonnull(strstr(buf, "rank 6=edge-box slot=2\n"));
    read_file(lm.hostfile, buf, sizeof buf);
    ck_assert_ptr_nonnull(strstr(buf, "localhost slots=4\n"));
    ck_assert_ptr_nonnull(strstr(buf, "edge-box slots=3\n"));
    char line[4096];
    launch_format(&lm, line, sizeof line);
    ck_assert(strncmp(line, "mpirun ", 7) == 0);
    launch_material_free(&lm);
    /* a limit the user set in the environment is kept (no --mca over it) */
    setenv("OMPI_MCA_btl_tcp_eager_limit", "65536", 1);
    ck_assert_int_eq(launch_prepare(p, c, "configs/test.yaml", plan_path, &lo, &lm, &e), 0);
    unsetenv("OMPI_MCA_btl_tcp_eager_limit");
    ck_assert_int_lt(argv_find(&lm, "btl_tcp_eager_limit"), 0);
    ck_assert_int_gt(argv_find(&lm, "btl_tcp_rndv_eager_limit"), 0);
    launch_material_free(&lm);
    plan_free(p);
    et_config_free(c);
}
END_TEST

START_TEST(test_launch_runs_a_local_plan_unbound_without_hostfile)
{
    et_config *c = cfg_new();
    for (int i = 0; i < 6; i++)
        strcpy(c->cluster.servers[i].host, "localhost");
    et_plan *p = sample_plan(c);
    char plan_path[300];
    snprintf(plan_path, sizeof plan_path, "%s/plan.yaml", dir);
    launch_opts lo = {0};
    launch_material lm;
    et_err e = {0};
    ck_assert_int_eq(launch_prepare(p, c, "configs/test.yaml", plan_path, &lo, &lm, &e), 0);
    ck_assert_int_eq(lm.local, 1);
    ck_assert_int_lt(argv_find(&lm, "--hostfile"), 0);
    ck_assert_int_lt(argv_find(&lm, "--rankfile"), 0);
    int b = argv_find(&lm, "--bind-to");
    ck_assert(b > 0 && strcmp(lm.argv[b + 1], "none") == 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_int_eq(argv_find(&lm, "--oversubscribe") >= 0, cores < 7);
    int y = argv_find(&lm, "mpi_yield_when_idle");
    ck_assert(y > 0 && strcmp(lm.argv[y - 1], "--mca") == 0 && strcmp(lm.argv[y + 1], "1") == 0);
    ck_assert_int_lt(argv_find(&lm, "btl_tcp_eager_limit"), 0); /* shared memory here */
    /* the host files are still written, for taking the plan to a cluster */
    ck_assert_int_eq(access(lm.hostfile, R_OK), 0);
    launch_material_free(&lm);
    plan_free(p);
    et_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_plan_file_round_trips_every_field);
    tcase_add_test(tc, test_plan_file_has_the_keys_scripts_rely_on);
    tcase_add_test(tc, test_writing_into_a_missing_directory_fails_cleanly);
    tcase_add_test(tc, test_ranks_map_to_roles_and_groups);
    tcase_add_test(tc, test_every_invalid_plan_is_refused_with_its_position);
    tcase_add_test(tc, test_a_missing_plan_file_is_named);
    tcase_add_test(tc, test_a_minimal_hand_written_plan_loads);
    tcase_add_test(tc, test_launch_runs_a_cluster_plan_with_hostfile_and_rankfile);
    tcase_add_test(tc, test_launch_runs_a_local_plan_unbound_without_hostfile);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
