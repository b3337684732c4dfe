/*
 * test_config — the config loader (topology/config.c) and the cluster graph
 * (topology/cluster.c): a full config read back field by field, defaults,
 * block and flow style, includes (override, merge by name, relative paths,
 * diamonds, cycles), every validation error with its exact message, line and
 * column, and truncated/mutated/random input that must never crash. Run from
 * the repository root (tests/run-tests.sh does); fixtures in tests/configs/.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../topology/config.h"

#define FIX "tests/configs/"

static char tmpdir[64];

/* Checked fixture: a fresh temporary directory per test. */
static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/et_test_config_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    static const char *const names[] = {"c.yaml", "d.yaml", NULL};
    char path[128];
    for (int i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* Write len bytes of text to tmpdir/name; returns the path (static buffer).
 * The old file is unlinked first: rewriting a file in place makes ext4 flush
 * it to disk on close (auto_da_alloc), which costs milliseconds per write. */
static const char *write_tmp(const char *name, const char *text, size_t len)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    unlink(path);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Load a config that must be valid. */
static et_config *load_ok(const char *path)
{
    et_err e = {0};
    et_config *c = et_config_load(path, &e);
    ck_assert_msg(c != NULL, "%s refused: %s", path, e.msg);
    ck_assert_int_eq(e.code, ET_OK);
    return c;
}

/* Load a config that must be refused with ET_EINPUT; returns the message
 * (static buffer), which must be one line. */
static const char *load_err(const char *path)
{
    static et_err e;
    et_err_clear(&e);
    et_config *c = et_config_load(path, &e);
    ck_assert_msg(c == NULL, "%s accepted", path);
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert(e.msg[0] != '\0');
    ck_assert_msg(strchr(e.msg, '\n') == NULL, "message is not one line: %s", e.msg);
    return e.msg;
}

/* Index of a server that must exist. */
static int server(const et_config *c, const char *name)
{
    int i = et_cluster_find(&c->cluster, name);
    ck_assert_msg(i >= 0, "no server %s", name);
    return i;
}

/* The link between two named servers. */
static et_link link_of(const et_config *c, const char *a, const char *b)
{
    return et_cluster_link(&c->cluster, server(c, a), server(c, b));
}

START_TEST(test_full_config_reads_back_every_field)
{
    et_config *c = load_ok(FIX "full.yaml");
    ck_assert_str_eq(c->path, FIX "full.yaml");
    ck_assert_str_eq(c->name, "full-run");

    const et_cluster *cl = &c->cluster;
    ck_assert_int_eq(cl->n_servers, 3);
    const et_server *s = &cl->servers[0];
    ck_assert_str_eq(s->name, "mec-a");
    ck_assert_str_eq(s->host, "10.0.0.1");
    ck_assert(s->gflops == 2000.0);
    ck_assert_uint_eq(s->memory, 8ull << 30);
    ck_assert_int_eq(s->slots, 2);
    ck_assert_int_eq(s->line, 5);
    ck_assert_int_eq(s->col, 7);
    s = &cl->servers[1];
    ck_assert_str_eq(s->name, "jetson-1");
    ck_assert_str_eq(s->host, "jetson1.local");
    ck_assert(s->gflops == 400.5);
    ck_assert_uint_eq(s->memory, 4000000000ull);
    ck_assert_int_eq(s->slots, 1);
    ck_assert_int_eq(s->line, 6);
    ck_assert_int_eq(s->col, 7);
    s = &cl->servers[2];
    ck_assert_str_eq(s->name, "cpu-b");
    ck_assert_str_eq(s->host, "localhost");
    ck_assert(s->gflops == 150.0);
    ck_assert_uint_eq(s->memory, 512ull << 20);
    ck_assert_int_eq(s->slots, 4);
    ck_assert_int_eq(et_cluster_total_slots(cl), 7);

    ck_assert(cl->default_link.bandwidth == 1.25e8 && cl->default_link.latency == 2e-3);
    et_link l = link_of(c, "mec-a", "jetson-1");
    ck_assert(l.bandwidth == 2.5e7 && l.latency == 8e-3);
    l = link_of(c, "mec-a", "cpu-b");                    /* bandwidth given, latency from default */
    ck_assert(l.bandwidth == 1.25e8 && l.latency == 2e-3);
    l = link_of(c, "cpu-b", "jetson-1");                 /* latency given, bandwidth from default */
    ck_assert(l.bandwidth == 1.25e8 && l.latency == 500e-6);

    ck_assert_str_eq(c->model_preset, "gpt2-mini");
    ck_assert_int_eq(c->model.n_layer, 6);               /* override */
    ck_assert_int_eq(c->model.n_head, 4);
    ck_assert_int_eq(c->model.n_embd, 128);
    ck_assert_int_eq(c->model.vocab_size, 512);          /* override */
    ck_assert_int_eq(c->model.block_size, 128);

    const et_training *t = &c->training;
    ck_assert_str_eq(t->dataset, FIX "data/fortunes.h5");
    ck_assert_int_eq(t->seq_len, 64);
    ck_assert_int_eq(t->global_batch, 48);
    ck_assert_int_eq(t->micro_batch, 6);
    ck_assert(t->lr == 3.0e-4);
    ck_assert(t->min_lr == 3e-5);
    ck_assert_int_eq(t->warmup_steps, 10);
    ck_assert_int_eq(t->lr_decay_cosine, 1);
    ck_assert(t->weight_decay == 0.1);
    ck_assert(t->grad_clip == 0.5);
    ck_assert_int_eq(t->max_steps, 300);
    ck_assert(t->target_val_loss == 2.2);
    ck_assert(t->target_val_accuracy == 0.40);
    ck_assert_int_eq(t->eval_every, 25);
    ck_assert_int_eq(t->eval_tokens, 4096);
    ck_assert_str_eq(t->checkpoint_path, FIX "ckpt/run.h5");
    ck_assert_int_eq(t->checkpoint_every, 20);
    ck_assert_uint_eq(t->seed, UINT64_MAX);
    ck_assert_str_eq(t->init, "/abs/gpt2.h5");           /* absolute: kept */
    ck_assert_int_eq(t->sampling, ET_SAMPLING_RANDOM);

    ck_assert_int_eq(c->parallel.schedule, ET_SCHED_1F1B);
    ck_assert_int_eq(c->parallel.pipeline, 2);
    ck_assert_int_eq(c->parallel.tensor, 2);
    ck_assert_int_eq(c->parallel.data, 1);
    ck_assert_int_eq(c->clock, ET_CLOCK_WALL);
    et_config_free(c);
}
END_TEST

START_TEST(test_defaults_fill_every_unset_field)
{
    et_config *c = load_ok(FIX "minimal.yaml");
    ck_assert_str_eq(c->name, "minimal");                /* the file's stem */
    ck_assert_int_eq(c->cluster.n_servers, 1);
    const et_server *s = &c->cluster.servers[0];
    ck_assert_str_eq(s->host, "localhost");
    ck_assert_int_eq(s->slots, 1);
    et_link self = et_cluster_link(&c->cluster, 0, 0);
    ck_assert(isinf(self.bandwidth) && self.bandwidth > 0 && self.latency == 0.0);
    ck_assert(isinf(c->cluster.default_link.bandwidth));  /* no link in a 1-server cluster */
    ck_assert_str_eq(c->model_preset, "gpt2-tiny");
    ck_assert_int_eq(c->model.n_layer, 2);
    ck_assert_int_eq(c->model.block_size, 64);
    const et_training *t = &c->training;
    ck_assert_str_eq(t->dataset, FIX "tokens.h5");
    ck_assert_int_eq(t->seq_len, 64);                    /* min(128, block_size) */
    ck_assert_int_eq(t->global_batch, 32);
    ck_assert_int_eq(t->micro_batch, 32);                /* = global_batch */
    ck_assert(t->lr == 6e-4);
    ck_assert(t->min_lr == 0.0);
    ck_assert_int_eq(t->warmup_steps, 0);
    ck_assert_int_eq(t->lr_decay_cosine, 0);
    ck_assert(t->weight_decay == 0.0);
    ck_assert(t->grad_clip == 1.0);
    ck_assert_int_eq(t->max_steps, 2000);
    ck_assert(isnan(t->target_val_loss) && isnan(t->target_val_accuracy));
    ck_assert_int_eq(t->eval_every, 50);
    ck_assert_int_eq(t->eval_tokens, 65536);
    ck_assert_str_eq(t->checkpoint_path, "");
    ck_assert_int_eq(t->checkpoint_every, 100);
    ck_assert_uint_eq(t->seed, 1);
    ck_assert_str_eq(t->init, "");
    ck_assert_int_eq(t->sampling, ET_SAMPLING_SEQUENTIAL);
    ck_assert_int_eq(c->parallel.schedule, ET_SCHED_AUTO);
    ck_assert_int_eq(c->parallel.pipeline, 0);
    ck_assert_int_eq(c->parallel.tensor, 0);
    ck_assert_int_eq(c->parallel.data, 0);
    ck_assert_int_eq(c->clock, ET_CLOCK_VIRTUAL);
    et_config_free(c);
}
END_TEST

START_TEST(test_block_and_flow_styles_load_the_same_config)
{
    et_config *a = load_ok(FIX "block.yaml"), *b = load_ok(FIX "flow.yaml");
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->cluster.n_servers, 2);
    ck_assert_int_eq(b->cluster.n_servers, 2);
    for (int i = 0; i < 2; i++) {
        const et_server *x = &a->cluster.servers[i], *y = &b->cluster.servers[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_str_eq(x->host, y->host);
        ck_assert(x->gflops == y->gflops && x->memory == y->memory && x->slots == y->slots);
        for (int j = 0; j < 2; j++) {
            et_link p = et_cluster_link(&a->cluster, i, j), q = et_cluster_link(&b->cluster, i, j);
            ck_assert(p.bandwidth == q.bandwidth && p.latency == q.latency);
        }
    }
    ck_assert(link_of(a, "a", "b").bandwidth == 1.25e8 && link_of(a, "b", "a").latency == 5e-3);
    ck_assert(a->cluster.default_link.bandwidth == b->cluster.default_link.bandwidth);
    ck_assert_str_eq(a->model_preset, "");
    ck_assert(memcmp(&a->model, &b->model, sizeof a->model) == 0);
    ck_assert_int_eq(a->model.n_embd, 32);
    ck_assert_str_eq(a->training.dataset, b->training.dataset);
    ck_assert_str_eq(a->training.checkpoint_path, FIX "ck.h5");
    ck_assert_str_eq(a->training.checkpoint_path, b->training.checkpoint_path);
    ck_assert_int_eq(a->training.seq_len, b->training.seq_len);
    ck_assert_int_eq(a->training.micro_batch, b->training.micro_batch);
    ck_assert(a->training.target_val_accuracy == 0.5 && b->training.target_val_accuracy == 0.5);
    ck_assert(isnan(a->training.target_val_loss) && isnan(b->training.target_val_loss));
    ck_assert(memcmp(&a->parallel, &b->parallel, sizeof a->parallel) == 0);
    ck_assert_int_eq(a->parallel.schedule, ET_SCHED_GPIPE);
    ck_assert_int_eq(a->parallel.tensor, 0);
    ck_assert_int_eq(a->clock, b->clock);
    et_config_free(a);
    et_config_free(b);
}
END_TEST

START_TEST(test_include_merges_with_the_including_file_winning)
{
    et_config *c = load_ok(FIX "inc/exp/experiment.yaml");
    ck_assert_str_eq(c->name, "exp1");
    /* servers merged by name: jetson-1 re-profiled in place, jetson-2 appended */
    ck_assert_int_eq(c->cluster.n_servers, 3);
    ck_assert_str_eq(c->cluster.servers[0].name, "mec-a");
    ck_assert_str_eq(c->cluster.servers[1].name, "jetson-1");
    ck_assert_str_eq(c->cluster.servers[2].name, "jetson-2");
    ck_assert(c->cluster.servers[1].gflops == 500.0);
    ck_assert_int_eq(c->cluster.servers[1].slots, 2);
    /* links: the included pair, the new pair (latency from the default), the default */
    et_link l = link_of(c, "mec-a", "jetson-1");
    ck_assert(l.bandwidth == 2.5e7 && l.latency == 8e-3);
    l = link_of(c, "jetson-1", "jetson-2");
    ck_assert(l.bandwidth == 1.25e7 && l.latency == 2e-3);
    l = link_of(c, "jetson-2", "mec-a");
    ck_assert(l.bandwidth == 1.25e8 && l.latency == 2e-3);
    /* model replaced whole */
    ck_assert_str_eq(c->model_preset, "gpt2-mini");
    ck_assert_int_eq(c->model.n_layer, 4);
    /* training merged key by key; paths relative to the file that names them */
    const et_training *t = &c->training;
    ck_assert_str_eq(t->dataset, FIX "inc/exp/data/exp.h5");
    ck_assert(t->lr == 5e-4);                            /* edge 1e-3, base 2e-3, experiment 5e-4 */
    ck_assert_int_eq(t->seq_len, 32);                    /* from edge.yaml */
    ck_assert_int_eq(t->global_batch, 16);               /* from base.yaml */
    ck_assert_str_eq(t->init, FIX "inc/exp/init/start.h5");
    ck_assert_str_eq(t->checkpoint_path, FIX "inc/exp/../cluster/ckpt/c.h5");   /* not normalised */
    ck_assert_int_eq(t->checkpoint_every, 7);
    /* parallel merged key by key: schedule kept, pipeline back to auto */
    ck_assert_int_eq(c->parallel.schedule, ET_SCHED_GPIPE);
    ck_assert_int_eq(c->parallel.pipeline, 0);
    ck_assert_int_eq(c->clock, ET_CLOCK_WALL);
    et_config_free(c);
}
END_TEST

START_TEST(test_include_diamond_is_not_a_cycle)
{
    et_config *c = load_ok(FIX "inc/diamond.yaml");
    ck_assert_int_eq(c->cluster.n_servers, 2);
    ck_assert_int_eq(c->training.micro_batch, 4);
    ck_assert_int_eq(c->training.global_batch, 8);
    ck_assert_str_eq(c->training.dataset, FIX "inc/cluster/../data/cluster-side.h5");
    et_config_free(c);
}
END_TEST

START_TEST(test_include_cycle_is_an_error_naming_the_chain)
{
    ck_assert_str_eq(load_err(FIX "inc/cycle_a.yaml"),
                     FIX "inc/cycle_b.yaml:1:11: include cycle: " FIX "inc/cycle_a.yaml -> " FIX
                         "inc/cycle_b.yaml -> " FIX "inc/../inc/cycle_a.yaml (a file cannot include "
                         "itself, directly or through others)");
    ck_assert_str_eq(load_err(FIX "inc/self.yaml"),
                     FIX "inc/self.yaml:2:10: include cycle: " FIX "inc/self.yaml -> " FIX
                         "inc/self.yaml (a file cannot include itself, directly or through others)");
}
END_TEST

START_TEST(test_error_in_an_included_file_names_that_file)
{
    ck_assert_str_eq(load_err(FIX "inc/bad_included.yaml"),
                     FIX "inc/bad_part.yaml:5:15: unknown key 'bandwith' in links.default (did you mean 'bandwidth'?)");
}
END_TEST

START_TEST(test_unreadable_files_cannot_open)
{
    ck_assert_str_eq(load_err(FIX "no-such-file.yaml"),
                     FIX "no-such-file.yaml: cannot open (No such file or directory)");
    ck_assert_str_eq(load_err(FIX "inc"), FIX "inc: cannot open (Is a directory)");
    char p[128];
    snprintf(p, sizeof p, "%s", write_tmp("c.yaml", "include: [d.yaml, missing.yaml]\n", 32));
    write_tmp("d.yaml", "name: x\n", 8);
    char want[300];
    snprintf(want, sizeof want, "%s/c.yaml:1:19: cannot open included file '%s/missing.yaml' (No such file or directory)",
             tmpdir, tmpdir);
    ck_assert_str_eq(load_err(p), want);
    et_err e = {0};
    ck_assert_ptr_null(et_config_load(NULL, &e));
    ck_assert_int_eq(e.code, ET_EINPUT);
    et_err_clear(&e);
    ck_assert_ptr_null(et_config_load("", &e));
    ck_assert_int_eq(e.code, ET_EINPUT);
    et_config_free(NULL);
}
END_TEST

/* One bad config and the exact message after its path: ":line:col: ..." */
typedef struct bad_case {
    const char *name;
    const char *yaml;
    const char *want;
} bad_case;

static const bad_case bad_cases[] = {
    {"syntax",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny\n"
         "training: {dataset: d.h5}\n",
     ":5:9: invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping that started at line 4, column 8)"},
    {"tab",
         "cluster:\n"
         "\tservers: []\n",
     ":2:1: invalid YAML: found character that cannot start any token (while scanning for the next token that started at line 2, column 1)"},
    {"unknown_link_key",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 1ms}\n"
         "    pairs:\n"
         "      - {between: [a, b], bandwith: 1Gbps}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":8:27: unknown key 'bandwith' in link (did you mean 'bandwidth'?)"},
    {"unknown_top",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "optimizer: adam\n",
     ":6:1: unknown key 'optimizer' in the top level (valid keys: name, include, cluster, model, training, parallel, emulation)"},
    {"unknown_training_near",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, sead: 3}\n",
     ":5:27: unknown key 'sead' in training (did you mean 'seed'?)"},
    {"training_scalar",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: 5\n",
     ":5:11: 'training' must be a mapping, got the value '5' (write key: value pairs, indented below it or in {...})"},
    {"training_empty",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training:\n",
     ":5:10: 'training' is empty (it must be a mapping of key: value pairs)"},
    {"servers_map",
         "cluster:\n"
         "  servers: {name: a}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":2:12: 'servers' must be a list, got a mapping (write '- item' lines or [a, b])"},
    {"lr_list",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, lr: [1]}\n",
     ":5:31: 'lr' must be a single value, got a list (write lr: VALUE)"},
    {"seq_abc",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, seq_len: abc}\n",
     ":5:36: 'seq_len' must be a whole number, got 'abc' (write digits only)"},
    {"lr_null",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training:\n"
         "  dataset: d.h5\n"
         "  lr:\n",
     ":7:6: 'lr' has no value (give one, or remove the key)"},
    {"missing_cluster",
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ": missing required section 'cluster' (list the servers, e.g. cluster: {servers: [{name: a, gflops: 400, memory: 4GiB}]})"},
    {"missing_servers",
         "cluster:\n"
         "  links: {default: {bandwidth: 1Gbps}}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":2:3: cluster has no servers (add cluster.servers: a list of {name, gflops, memory})"},
    {"empty_servers",
         "cluster: {servers: []}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":1:10: cluster has no servers (add cluster.servers: a list of {name, gflops, memory})"},
    {"missing_model",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "training: {dataset: d.h5}\n",
     ": missing required section 'model' (e.g. model: {preset: gpt2})"},
    {"missing_training",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n",
     ": missing required section 'training' (it needs at least dataset: PATH.h5)"},
    {"missing_dataset",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training:\n"
         "  seq_len: 32\n",
     ":6:3: training is missing required key 'dataset' (the HDF5 token file, e.g. dataset: data/fortunes.h5)"},
    {"server_no_gflops",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:7: server 'a' is missing required key 'gflops' (its sustained fp32 training GFLOP/s, e.g. gflops: 400)"},
    {"server_no_name",
         "cluster:\n"
         "  servers:\n"
         "    - gflops: 10\n"
         "      memory: 1GiB\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:7: server is missing required key 'name' (every server needs a unique name, e.g. name: mec-a)"},
    {"dup_server",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: a, gflops: 10, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":4:14: duplicate server name 'a' (first defined at line 3; names must be unique)"},
    {"gflops0",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 0, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:25: 'gflops' must be positive, got 0 (use a number > 0)"},
    {"gflops_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: -5, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:25: 'gflops' must be positive, got -5 (use a number > 0)"},
    {"memory0",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 10, memory: 0GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:37: memory must be positive, got '0GiB' (what the worker may use, e.g. 4GiB)"},
    {"slots0",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 10, memory: 1GiB, slots: 0}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:50: 'slots' must be positive, got 0 (use 1 or more)"},
    {"bw0",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 0Gbps, latency: 1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:26: bandwidth must be positive, got '0Gbps' (a link needs some bandwidth)"},
    {"lat_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: -1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:42: bad latency '-1ms': must not be negative (remove the '-')"},
    {"pair_unknown",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 1ms}\n"
         "    pairs:\n"
         "      - {between: [a, c], bandwidth: 1Gbps}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":8:23: unknown server 'c' in link (servers: a, b)"},
    {"pair_self",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 1ms}\n"
         "    pairs:\n"
         "      - {between: [a, a], bandwidth: 1Gbps}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":8:19: link between 'a' and itself (a link joins two different servers)"},
    {"pair_dup",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 1ms}\n"
         "    pairs:\n"
         "      - {between: [a, b], bandwidth: 1Gbps}\n"
         "      - {between: [b, a], latency: 3ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":9:9: duplicate link between 'b' and 'a' (already given at line 8)"},
    {"pair_three",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 1ms}\n"
         "    pairs:\n"
         "      - {between: [a, b, c]}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":8:19: 'between' must name exactly two servers, got 3 (e.g. between: [mec-a, jetson-1])"},
    {"unit_typo",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 10Gbsp, latency: 1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:26: bad bandwidth '10Gbsp': unknown unit 'Gbsp' (did you mean 'Gbps'? valid units: bps, Kbps, Mbps, Gbps, Tbps (bits; also Mbit/s, Mb/s), B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s (bytes))"},
    {"unit_bare",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1000, latency: 1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:26: bad bandwidth '1000': missing unit (a bare number is ambiguous: write e.g. 1Gbps or 125MB/s)"},
    {"no_link",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":4:7: no link between servers 'a' and 'b' (add cluster.links.default: {bandwidth: 1Gbps, latency: 1ms} or a pair between them)"},
    {"micro",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, global_batch: 32, micro_batch: 5}\n",
     ":5:58: micro_batch 5 does not divide global_batch 32 (use a divisor of 32, e.g. 4)"},
    {"seq_block",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, seq_len: 65}\n",
     ":5:36: seq_len 65 exceeds the model's block_size 64 (use seq_len <= 64)"},
    {"embd_head",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {n_layer: 2, n_head: 3, n_embd: 64, vocab_size: 256, block_size: 64}\n"
         "training: {dataset: d.h5}\n",
     ":4:29: n_embd 64 is not divisible by n_head 3 (n_embd must be a multiple of n_head, e.g. 63 or 66)"},
    {"model_missing_nums",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {n_layer: 2, n_embd: 64}\n"
         "training: {dataset: d.h5}\n",
     ":4:8: model needs a preset or all of n_layer, n_head, n_embd, vocab_size, block_size (missing: n_head, vocab_size, block_size)"},
    {"preset",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt3}\n"
         "training: {dataset: d.h5}\n",
     ":4:17: unknown model preset 'gpt3' (did you mean 'gpt2'? presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt2-tiny, gpt2-mini, gpt2-small-demo)"},
    {"preset_far",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: llama}\n"
         "training: {dataset: d.h5}\n",
     ":4:17: unknown model preset 'llama' (presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt2-tiny, gpt2-mini, gpt2-small-demo)"},
    {"schedule",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "parallel: {schedule: 1f1f}\n",
     ":6:22: unknown schedule '1f1f' (did you mean '1f1b'? one of: auto, gpipe, 1f1b)"},
    {"clock",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "emulation: {clock: real}\n",
     ":6:20: unknown clock 'real' (one of: virtual, wall)"},
    {"sampling",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, sampling: shuffled}\n",
     ":5:37: unknown sampling 'shuffled' (one of: sequential, random)"},
    {"decay",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, lr_decay: linear}\n",
     ":5:37: unknown lr_decay 'linear' (one of: none, cosine)"},
    {"target_empty",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, target: {}}\n",
     ":5:35: target needs val_loss or val_accuracy (e.g. target: {val_loss: 2.2})"},
    {"dup_key",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training:\n"
         "  dataset: d.h5\n"
         "  lr: 1e-3\n"
         "  lr: 2e-3\n",
     ":8:3: duplicate key 'lr' in training (already given at line 7)"},
    {"second_doc",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "---\n"
         "foo: 1\n",
     ":6:1: a second YAML document (a config is one document: remove the '---' line)"},
    {"empty",
         "",
     ": empty config (expected a mapping with cluster:, model: and training:)"},
    {"root_list",
         "- a\n"
         "- b\n",
     ":1:1: a config must be a mapping of sections, got a list (start with cluster:, model: and training:)"},
    {"binary",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: \xff}\n",
     ":4:17: invalid YAML: invalid leading UTF-8 octet (byte 0xff; the file must be UTF-8 text)"},
    {"tensor",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "parallel: {tensor: 3}\n",
     ":6:20: tensor 3 does not divide n_head 4 (tensor-parallel ranks split the heads)"},
    {"ranks",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "parallel: {pipeline: 2, tensor: 1, data: 1}\n",
     ":6:11: pipeline x tensor x data = 2 ranks but the cluster has 1 slot (add servers or slots, or use auto)"},
    {"min_lr",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, lr: 1e-4, min_lr: 1e-3}\n",
     ":5:45: min_lr 0.001 exceeds lr 0.0001 (the cosine schedule decays from lr down to min_lr)"},
    {"degree_bad",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "parallel: {pipeline: two}\n",
     ":6:22: 'pipeline' must be a positive whole number or auto, got 'two' (e.g. pipeline: 2)"},
    {"degree_zero",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "parallel: {pipeline: 0}\n",
     ":6:22: 'pipeline' must be positive, got 0 (use 1 or more)"},
    {"val_acc",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, target: {val_accuracy: 40}}\n",
     ":5:50: 'val_accuracy' must be in (0, 1], got 40 (a fraction, e.g. 0.40)"},
    {"name_bad",
         "name: my run\n"
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":1:7: name 'my run' has an invalid character (use letters, digits, '-', '_', '.'; not first '-' or '.')"},
    {"host_bad",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, host: -np, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:23: host '-np' has an invalid character (a host name or address: letters, digits, '.', '-', ':')"},
    {"key_map",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n"
         "{a: 1}: 2\n",
     ":6:1: a key in the top level must be a plain name, got a mapping (write name: value)"},
    {"alias_loop",
         "cluster:\n"
         "  servers: &s [*s]\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":2:12: 'server' must be a mapping, got a list (write key: value pairs, indented below it or in {...})"},
    {"nul",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: \"d\\0.h5\"}\n",
     ":5:21: 'dataset' contains a NUL character (remove the \\0)"},
    {"big_int",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, max_steps: 99999999999999999999999}\n",
     ":5:38: 'max_steps' is too large: 99999999999999999999999 (at most 1000000000000000)"},
    {"seed_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, seed: -1}\n",
     ":5:33: 'seed' must be a whole number from 0 to 18446744073709551615, got '-1' (write digits only)"},
    {"lr_inf",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, lr: .inf}\n",
     ":5:31: 'lr' must be a number, got '.inf' (write e.g. 0.5 or 6e-4)"},
    {"checkpoint_nopath",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, checkpoint: {every: 5}}\n",
     ":5:39: checkpoint is missing required key 'path' (e.g. checkpoint: {path: ckpt/run.h5, every: 100})"},
    {"between_scalar",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 1ms}\n"
         "    pairs:\n"
         "      - {between: a}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":8:19: 'between' must be a list, got the value 'a' (write '- item' lines or [a, b])"},
    {"pair_nobw",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    pairs:\n"
         "      - {between: [a, b], latency: 1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":7:9: link between 'a' and 'b' has no bandwidth (give bandwidth: or set cluster.links.default)"},
    {"include_map",
         "include: {a: b}\n"
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":1:10: 'include' must be a file name or a list of file names, got a mapping (e.g. include: cluster.yaml)"},
    {"include_nested_list",
         "include: [[a.yaml]]\n"
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":1:11: 'include' must be a single value, got a list (write include: VALUE)"},
    {"cluster_key_near",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "  link: {}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":4:3: unknown key 'link' in cluster (did you mean 'links'?)"},
    {"server_key_near",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflop: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:17: unknown key 'gflop' in server (did you mean 'gflops'?)"},
    {"size_typo",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 4Gib}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:38: bad memory '4Gib': unknown unit 'Gib' (did you mean 'GiB'? valid units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"},
    {"latency_bare",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: 1Gbps, latency: 5}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:42: bad latency '5': missing unit (write e.g. 2ms, 150us or 1s)"},
    {"model_scalar",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: gpt2\n"
         "training: {dataset: d.h5}\n",
     ":4:8: 'model' must be a mapping, got the value 'gpt2' (write key: value pairs, indented below it or in {...})"},
    {"warmup_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, warmup_steps: -1}\n",
     ":5:41: 'warmup_steps' must not be negative, got -1 (use 0 or more)"},
    {"eval_every_float",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, eval_every: 2.5}\n",
     ":5:39: 'eval_every' must be a whole number, got '2.5' (write digits only)"},
    {"name_long",
         "name: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":1:7: name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is too long (at most 63 characters)"},
    {"dataset_empty",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: \"\"}\n",
     ":5:21: 'dataset' is empty (give a file path)"},
    {"default_no_bw",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "  links:\n"
         "    default: {latency: 1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":5:14: links.default is missing required key 'bandwidth' (e.g. default: {bandwidth: 1Gbps, latency: 1ms})"},
    {"servers_item_scalar",
         "cluster:\n"
         "  servers:\n"
         "    - a\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:7: 'server' must be a mapping, got the value 'a' (write key: value pairs, indented below it or in {...})"},
    {"checkpoint_every0",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5, checkpoint: {path: c.h5, every: 0}}\n",
     ":5:59: 'checkpoint.every' must be positive, got 0 (use 1 or more)"},
    {"block_style_error",
         "cluster:\n"
         "  servers:\n"
         "    - name: a\n"
         "      gflops: 100\n"
         "      memory: 1GiB\n"
         "      slots: many\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:14: 'slots' must be a whole number, got 'many' (write digits only)"},
    {"memory_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 10, memory: -1GiB}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:37: bad memory '-1GiB': must not be negative (remove the '-')"},
    {"slots_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 10, memory: 1GiB, slots: -2}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":3:50: 'slots' must be positive, got -2 (use 1 or more)"},
    {"bw_neg",
         "cluster:\n"
         "  servers:\n"
         "    - {name: a, gflops: 100, memory: 1GiB}\n"
         "    - {name: b, gflops: 50, memory: 2GiB}\n"
         "  links:\n"
         "    default: {bandwidth: -1Gbps, latency: 1ms}\n"
         "model: {preset: gpt2-tiny}\n"
         "training: {dataset: d.h5}\n",
     ":6:26: bad bandwidth '-1Gbps': must not be negative (remove the '-')"},
};

START_TEST(test_validation_errors_give_exact_message_line_and_column)
{
    char want[1200];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *b = &bad_cases[i];
        const char *path = write_tmp("c.yaml", b->yaml, strlen(b->yaml));
        snprintf(want, sizeof want, "%s%s", path, b->want);
        const char *got = load_err(path);
        ck_assert_msg(strcmp(got, want) == 0, "case %s:\n got  %s\n want %s", b->name, got, want);
    }
}
END_TEST

START_TEST(test_nul_newline_and_non_utf8_bytes_give_one_line_errors)
{
    static const char nul_in_key[] = "cluster:\n  ser\0vers: []\n";
    const char *p = write_tmp("c.yaml", nul_in_key, sizeof nul_in_key - 1);
    const char *msg = load_err(p);
    ck_assert_msg(strstr(msg, "c.yaml:2:") != NULL, "%s", msg);
    static const char latin1[] = "name: caf\xe9\n";
    p = write_tmp("c.yaml", latin1, sizeof latin1 - 1);
    ck_assert_msg(strstr(load_err(p), "invalid YAML") != NULL, "latin-1 accepted");
    /* a newline in an include path stays out of the one-line message */
    static const char nl[] = "include: \"a\\nb.yaml\"\n";
    p = write_tmp("c.yaml", nl, sizeof nl - 1);
    char want[300];
    snprintf(want, sizeof want, "%s:1:10: cannot open included file '%s/a?b.yaml' (No such file or directory)", p,
             tmpdir);
    ck_assert_str_eq(load_err(p), want);
}
END_TEST

START_TEST(test_deep_nesting_is_refused_quickly)
{
    size_t n = 100000;
    char *text = malloc(2 * n + 1);
    memset(text, '[', n);
    memset(text + n, ']', n);
    text[2 * n] = '\0';
    const char *p = write_tmp("c.yaml", text, 2 * n);
    char want[200];
    snprintf(want, sizeof want, "%s:1:257: nested deeper than 256 levels of [ ] and { } (flatten the structure)", p);
    ck_assert_str_eq(load_err(p), want);
    free(text);
}
END_TEST

/* Load path; either refused with a one-line ET_EINPUT message naming the
 * file, or accepted as a config that satisfies the loader's promises. */
static void load_anything(const char *path)
{
    et_err e = {0};
    et_config *c = et_config_load(path, &e);
    if (c == NULL) {
        ck_assert_int_eq(e.code, ET_EINPUT);
        ck_assert(strncmp(e.msg, path, strlen(path)) == 0);
        ck_assert(strchr(e.msg, '\n') == NULL);
        return;
    }
    ck_assert_int_ge(c->cluster.n_servers, 1);
    for (int i = 0; i < c->cluster.n_servers; i++) {
        ck_assert(c->cluster.servers[i].gflops > 0 && c->cluster.servers[i].memory > 0);
        for (int j = 0; j < c->cluster.n_servers; j++) {
            et_link l = et_cluster_link(&c->cluster, i, j);
            ck_assert(l.bandwidth > 0 && l.latency >= 0);
        }
    }
    ck_assert(c->training.global_batch % c->training.micro_batch == 0);
    ck_assert(c->training.seq_len <= c->model.block_size);
    ck_assert(c->model.n_embd % c->model.n_head == 0);
    et_config_free(c);
}

/* The whole file into a malloc'd buffer. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

START_TEST(test_truncated_configs_never_crash)
{
    static const char *const fixtures[] = {FIX "full.yaml", FIX "block.yaml", FIX "flow.yaml", NULL};
    for (int i = 0; fixtures[i] != NULL; i++) {
        size_t len;
        char *text = slurp(fixtures[i], &len);
        int accepted = 0;
        for (size_t k = 0; k <= len; k++) {
            const char *p = write_tmp("c.yaml", text, k);
            et_err e = {0};
            et_config *c = et_config_load(p, &e);
            accepted += c != NULL;
            et_config_free(c);
            load_anything(p);
        }
        ck_assert_int_ge(accepted, 1);   /* the whole file, and prefixes that end between sections */
        free(text);
    }
}
END_TEST

START_TEST(test_include_explosion_is_bounded)
{
    char text[4096] = "include: [";
    for (int i = 0; i < 300; i++)
        strcat(text, i ? ", d.yaml" : "d.yaml");
    strcat(text, "]\n");
    char p[128];
    snprintf(p, sizeof p, "%s", write_tmp("c.yaml", text, strlen(text)));
    write_tmp("d.yaml", "name: x\n", 8);
    char want[300];
    /* the main file is read 1st, so the 256th include (column 11 + 8*255) is read 257th */
    snprintf(want, sizeof want,
             "%s:1:2051: more than 256 files read through includes (does a file get included over and over?)", p);
    ck_assert_str_eq(load_err(p), want);
}
END_TEST

START_TEST(test_mutated_and_random_inputs_never_crash)
{
    size_t len;
    char *full = slurp(FIX "full.yaml", &len);
    char *buf = malloc(len + 64);
    uint64_t state = 12345;
#define NEXT() (state = state * 6364136223846793005ull + 1442695040888963407ull, (unsigned)(state >> 33))
    static const char interesting[] = "{}[],:-#&*!|>'\"%@`\n\t 0-9.e~\\";
    for (int round = 0; round < 1500; round++) {
        memcpy(buf, full, len);
        size_t n = len;
        int edits = 1 + (int)(NEXT() % 4);
        for (int k = 0; k < edits; k++) {
            size_t at = NEXT() % n;
            unsigned r = NEXT() % 3;
            if (r == 0)
                buf[at] = interesting[NEXT() % (sizeof interesting - 1)];
            else if (r == 1)
                buf[at] = (char)(NEXT() & 0xff);
            else if (n > 1) {                                 /* delete a byte */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            }
        }
        load_anything(write_tmp("c.yaml", buf, n));
    }
    for (int round = 0; round < 200; round++) {
        size_t n = NEXT() % (len + 1);
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)(NEXT() & 0xff);
        load_anything(write_tmp("c.yaml", buf, n));
    }
#undef NEXT
    free(buf);
    free(full);
}
END_TEST

START_TEST(test_cluster_links_are_symmetric_with_infinite_diagonal)
{
    et_config *c = load_ok(FIX "full.yaml");
    const et_cluster *cl = &c->cluster;
    for (int i = 0; i < cl->n_servers; i++) {
        et_link self = et_cluster_link(cl, i, i);
        ck_assert(isinf(self.bandwidth) && self.latency == 0.0);
        for (int j = 0; j < cl->n_servers; j++) {
            et_link a = et_cluster_link(cl, i, j), b = et_cluster_link(cl, j, i);
            ck_assert(a.bandwidth == b.bandwidth && a.latency == b.latency);
        }
    }
    ck_assert_int_eq(et_cluster_find(cl, "cpu-b"), 2);
    ck_assert_int_eq(et_cluster_find(cl, "nope"), -1);
    ck_assert_int_eq(et_cluster_find(cl, NULL), -1);
    ck_assert(et_link_time(et_cluster_link(cl, 0, 1), 2.5e7) == 8e-3 + 1.0);
    ck_assert(et_link_time(et_cluster_link(cl, 1, 1), 1e9) == 0.0);
    et_config_free(c);
}
END_TEST

START_TEST(test_slowest_link_is_min_bandwidth_and_max_latency_of_the_set)
{
    et_config *c = load_ok(FIX "full.yaml");
    const et_cluster *cl = &c->cluster;
    int mec = server(c, "mec-a"), jet = server(c, "jetson-1"), cpu = server(c, "cpu-b");
    int all[] = {mec, jet, cpu};
    et_link w = et_cluster_slowest(cl, all, 3);
    ck_assert(w.bandwidth == 2.5e7 && w.latency == 8e-3);   /* mec-a <-> jetson-1 */
    int two[] = {cpu, jet, cpu};                            /* repeats are ignored */
    w = et_cluster_slowest(cl, two, 3);
    ck_assert(w.bandwidth == 1.25e8 && w.latency == 500e-6);
    int mixed[] = {cpu, mec, jet};
    w = et_cluster_slowest(cl, mixed, 2);                   /* only the first two */
    ck_assert(w.bandwidth == 1.25e8 && w.latency == 2e-3);
    int one[] = {mec, mec};
    w = et_cluster_slowest(cl, one, 2);
    ck_assert(isinf(w.bandwidth) && w.latency == 0.0);
    w = et_cluster_slowest(cl, NULL, 0);
    ck_assert(isinf(w.bandwidth) && w.latency == 0.0);
    et_config_free(c);
}
END_TEST

START_TEST(test_pairs_without_a_default_link_cover_the_cluster)
{
    static const char yaml[] =
        "cluster:\n"
        "  servers:\n"
        "    - {name: a, gflops: 10, memory: 1GiB}\n"
        "    - {name: b, gflops: 10, memory: 1GiB}\n"
        "    - {name: c, gflops: 10, memory: 1GiB}\n"
        "  links:\n"
        "    pairs:\n"
        "      - {between: [a, b], bandwidth: 1Gbps, latency: 1ms}\n"
        "      - {between: [b, c], bandwidth: 10Gbps}\n"
        "      - {between: [c, a], bandwidth: 40Gbps, latency: 3ms}\n"
        "model: {preset: gpt2-tiny}\n"
        "training: {dataset: d.h5, seq_len: 16}\n";
    et_config *c = load_ok(write_tmp("c.yaml", yaml, sizeof yaml - 1));
    ck_assert(link_of(c, "b", "c").latency == 0.0);       /* no default: latency 0 */
    ck_assert(link_of(c, "a", "c").bandwidth == 5e9);
    /* no links.default: default_link is the slowest of the matrix */
    ck_assert(c->cluster.default_link.bandwidth == 1.25e8 && c->cluster.default_link.latency == 3e-3);
    ck_assert_str_eq(c->name, "c");
    ck_assert_int_eq(c->training.seq_len, 16);
    et_config_free(c);
}
END_TEST

START_TEST(test_quoted_numbers_and_units_are_accepted)
{
    static const char yaml[] =
        "cluster:\n"
        "  servers:\n"
        "    - {name: \"a\", gflops: \"1e3\", memory: '2 GiB', slots: \"3\"}\n"
        "model: {preset: \"gpt2-tiny\"}\n"
        "training: {dataset: \"d d.h5\", lr: '1e-3', init: ''}\n";
    et_config *c = load_ok(write_tmp("c.yaml", yaml, sizeof yaml - 1));
    ck_assert(c->cluster.servers[0].gflops == 1000.0);
    ck_assert_uint_eq(c->cluster.servers[0].memory, 2ull << 30);
    ck_assert_int_eq(c->cluster.servers[0].slots, 3);
    ck_assert(c->training.lr == 1e-3);
    ck_assert_str_eq(c->training.init, "");
    char want[128];
    snprintf(want, sizeof want, "%s/d d.h5", tmpdir);
    ck_assert_str_eq(c->training.dataset, want);
    et_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_full_config_reads_back_every_field);
    tcase_add_test(tc, test_defaults_fill_every_unset_field);
    tcase_add_test(tc, test_block_and_flow_styles_load_the_same_config);
    tcase_add_test(tc, test_include_merges_with_the_including_file_winning);
    tcase_add_test(tc, test_include_diamond_is_not_a_cycle);
    tcase_add_test(tc, test_include_cycle_is_an_error_naming_the_chain);
    tcase_add_test(tc, test_error_in_an_included_file_names_that_file);
    tcase_add_test(tc, test_unreadable_files_cannot_open);
    tcase_add_test(tc, test_validation_errors_give_exact_message_line_and_column);
    tcase_add_test(tc, test_nul_newline_and_non_utf8_bytes_give_one_line_errors);
    tcase_add_test(tc, test_deep_nesting_is_refused_quickly);
    tcase_add_test(tc, test_truncated_configs_never_crash);
    tcase_add_test(tc, test_include_explosion_is_bounded);
    tcase_add_test(tc, test_mutated_and_random_inputs_never_crash);
    tcase_add_test(tc, test_cluster_links_are_symmetric_with_infinite_diagonal);
    tcase_add_test(tc, test_slowest_link_is_min_bandwidth_and_max_latency_of_the_set);
    tcase_add_test(tc, test_pairs_without_a_default_link_cover_the_cluster);
    tcase_add_test(tc, test_quoted_numbers_and_units_are_accepted);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
