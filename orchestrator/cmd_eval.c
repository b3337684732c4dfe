/*
 * edgetrain eval CHECKPOINT DATA.h5 — validation loss and next-token accuracy
 * of a checkpoint, on one process.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../workers/checkpoint.h"
#include "../workers/dataset.h"
#include "../workers/engine.h"
#include "cli.h"

static void eval_help(void)
{
    printf("usage: edgetrain eval CHECKPOINT DATA.h5 [--seq-len T] [--batch B] [--tokens N] [--split val|train] [--json]\n"
           "\n"
           "Mean next-token cross-entropy and top-1 accuracy of the model in CHECKPOINT over\n"
           "the first N tokens (default 65536) of the split (default val) in non-overlapping\n"
           "windows of T predictions (default min(128, block_size)), B windows per forward pass\n"
           "(default 8). Runs on this process alone.\n");
}

static int parse_pos(const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0)
        return -1;
    *out = v;
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"seq-len", required_argument, 0, 'T'}, {"batch", required_argument, 0, 'B'},
        {"tokens", required_argument, 0, 'N'},  {"split", required_argument, 0, 's'},
        {"json", no_argument, 0, 'j'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    long T = 0, B = 8, N = 65536;
    int json = 0, use_train = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            if (parse_pos(optarg, &T)) return cli_usage_error("eval", "--seq-len needs a positive integer, got '%s'", optarg);
            break;
        case 'B':
            if (parse_pos(optarg, &B)) return cli_usage_error("eval", "--batch needs a positive integer, got '%s'", optarg);
            break;
        case 'N':
            if (parse_pos(optarg, &N)) return cli_usage_error("eval", "--tokens needs a positive integer, got '%s'", optarg);
            break;
        case 's':
            if (!strcmp(optarg, "train")) use_train = 1;
            else if (strcmp(optarg, "val")) return cli_usage_error("eval", "--split is val or train, got '%s'", optarg);
            break;
        case 'j': json = 1; break;
        case 'h': eval_help(); return 0;
        default: return cli_usage_error("eval", "unknown option");
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("eval", "needs CHECKPOINT and DATA.h5");
    const char *ckpt = argv[optind], *data = argv[optind + 1];

    et_err e;
    et_err_clear(&e);
    gpt2_config mc;
    if (ckpt_read_config(ckpt, &mc, &e) != 0)
        return et_err_report(&e);
    if (T == 0)
        T = mc.block_size < 128 ? mc.block_size : 128;
    if (T > mc.block_size)
        return cli_usage_error("eval", "--seq-len %ld exceeds the model's block_size %d", T, mc.block_size);
    et_dataset dsv = {0}, *ds = &dsv;
    if (dataset_load(data, mc.vocab_size, (size_t)T + 2, ds, &e) != 0)
        return et_err_report(&e);
    const int32_t *split = use_train ? ds->train : ds->val;
    size_t n_split = use_train ? ds->n_train : ds->n_val;
    et_sampler unused = {ds->train, ds->n_train, (int)T, 0, 0};
    et_engine *en = engine_new(&mc, (int)B, (int)T, 1, NULL, &unused, split, n_split, N, &e);
    if (!en) {
        dataset_free(ds);
        return et_err_report(&e);
    }
    int rc = 0;
    if (ckpt_load(ckpt, MPI_COMM_SELF, en->sh, NULL, NULL, &e) != 0) {
        rc = et_err_report(&e);
    } else {
        et_eval_result r;
        engine_eval(en, &r);
        if (json)
            printf("{\"loss\": %.6f, \"accuracy\": %.6f, \"tokens\": %ld, \"perplexity\": %.4f}\n",
                   r.loss, r.accuracy, r.tokens, exp(r.loss));
        else
            printf("loss %.6f  accuracy %.6f  perplexity %.4f  (%ld tokens of %s, T=%ld)\n", r.loss,
                   r.accuracy, exp(r.loss), r.tokens, use_train ? "train" : "val", T);
    }
    engine_free(en);
    dataset_free(ds);
    return rc;
}
