/*
 * edgetrain plan CONFIG — place the model on the cluster: the exact planner's
 * best plan as a readable table (stages, servers, layers, TP degree, memory,
 * compute/communication/bubble shares, predicted step time, the bottleneck
 * and why), the hand-made baselines beside it, the plan file with its
 * hostfile and rankfile, and the exact mpirun command line.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../topology/config.h"
#include "../common/et_fs.h"
#include "cli.h"
#include "costmodel.h"
#include "launch.h"
#include "plan.h"
#include "planner.h"

#define GIB 1073741824.0

static void plan_help(void)
{
    printf("usage: edgetrain plan CONFIG [-o PLAN] [--exhaustive] [--json] [--time-limit S]\n"
           "\n"
           "Choose where every part of the model runs: pipeline stages with uneven layer ranges,\n"
           "tensor-parallel groups, data-parallel replicas, micro-batches and the schedule, for the\n"
           "least predicted step time on the config's servers and links (memory respected, the\n"
           "config's parallel: pins honoured). Prints the placement table, the naive splits a user\n"
           "would try by hand, writes the plan with a hostfile and rankfile beside it, and prints\n"
           "the mpirun command that runs it.\n"
           "\n"
           "  -o PLAN         plan file to write (default plans/<name>/plan.yaml)\n"
           "  --exhaustive    brute-force every plan instead of the branch-and-bound search\n"
           "                  (small clusters only: proves the planner's answer)\n"
           "  --json          print the result as JSON instead of the table\n"
           "  --time-limit S  search budget in seconds (default 10); past it the best plan found\n"
           "                  is used and the optimality gap is printed\n");
}

/* "gpt2-medium" or "L24 C1024 H16 V50257". */
static void model_name(const et_config *cfg, char *buf, size_t n)
{
    if (cfg->model_preset[0])
        snprintf(buf, n, "%s", cfg->model_preset);
    else
        snprintf(buf, n, "L%d C%d H%d V%d", cfg->model.n_layer, cfg->model.n_embd, cfg->model.n_head,
                 cfg->model.vocab_size);
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (!isfinite(s))
        snprintf(buf, n, "-");
    else if (s < 1e-3)
        snprintf(buf, n, "%.1f us", s * 1e6);
    else if (s < 1.0)
        snprintf(buf, n, "%.2f ms", s * 1e3);
    else
        snprintf(buf, n, "%.3f s", s);
}

/* One baseline line: name, how, predicted step or why it does not fit. */
static void print_baseline(const planner_baseline *b, const et_config *cfg, double best)
{
    char t[32];
    if (b->plan == NULL) {
        printf("  %-22s %-62s n/a (%s)\n", b->name, "", b->detail);
        return;
    }
    fmt_time(t, sizeof t, b->plan->pred.step_s);
    if (b->plan->fits) {
        printf("  %-22s %-62s %10s/step", b->name, b->detail, t);
        if (isfinite(best) && best > 0) {
            double x = b->plan->pred.step_s / best;
            if (x >= 1.0)
                printf("  (%.2fx slower)", x);
            else
                printf("  (%.2fx faster: outside the config's parallel: pins)", 1 / x);
        }
        printf("\n");
        return;
    }
    /* the worst over-committed server */
    int worst = -1;
    double over = 0;
    for (int i = 0; i < cfg->cluster.n_servers; i++) {
        double need = (double)b->plan->memory[i], have = (double)cfg->cluster.servers[i].memory;
        if (need > have && need / have > over) {
            over = need / have;
            worst = i;
        }
    }
    printf("  %-22s %-62s does not fit", b->name, b->detail);
    if (worst >= 0)
        printf(" (%s needs %.2f GiB, has %.2f GiB)", cfg->cluster.servers[worst].name,
               b->plan->memory[worst] / GIB, cfg->cluster.servers[worst].memory / GIB);
    printf("\n");
}

/* The placement table and everything around it. */
static void print_table(const et_config *cfg, const planner_result *res, const char *plan_path,
                        const launch_material *lm)
{
    const et_plan *p = res->best;
    const et_cluster *c = &cfg->cluster;
    char model[96], t[32], t2[32], t3[32], names[256], rate[32];
    model_name(cfg, model, sizeof model);
    int R = p->n_replicas, S = p->n_stages;
    printf("edgetrain plan: %s -- %d servers, model %s (%d layers, %.1fM parameters), seq_len %d, "
           "global_batch %d\n",
           cfg->name, c->n_servers, model, cfg->model.n_layer, cm_model_params(&cfg->model) / 1e6,
           cfg->training.seq_len, cfg->training.global_batch);
    printf("plan: %d stage%s x %d replica%s, %d worker%s, %s, %d micro-batches of %d sequences per replica",
           S, S == 1 ? "" : "s", R, R == 1 ? "" : "s", plan_n_workers(p), plan_n_workers(p) == 1 ? "" : "s",
           p->schedule == ET_SCHED_GPIPE ? "GPipe" : "1F1B", p->micro_batches, p->micro_batch);
    const et_parallel *pp = &cfg->parallel;
    if (pp->schedule || pp->pipeline || pp->tensor || pp->data) {
        printf(" (pinned by the config:");
        if (pp->schedule)
            printf(" schedule %s", pp->schedule == ET_SCHED_GPIPE ? "gpipe" : "1f1b");
        if (pp->pipeline)
            printf(" pipeline %d", pp->pipeline);
        if (pp->tensor)
            printf(" tensor %d", pp->tensor);
        if (pp->data)
            printf(" data %d", pp->data);
        printf(")");
    }
    printf("\n");
    fmt_time(t, sizeof t, p->pred.step_s);
    double st = p->pred.step_s > 0 ? p->pred.step_s : 1;
    printf("predicted step: %s (compute %.0f%%, communication %.0f%%, bubble %.0f%% at the bottleneck stage)\n", t,
           100 * p->pred.compute_s / st, 100 * p->pred.communication_s / st, 100 * p->pred.bubble_s / st);
    printf("bottleneck: %s\n\n", p->pred.bottleneck);

    printf("%-4s %-5s %-9s %-3s %-28s %-19s %8s %6s %7s  %s\n", "rep", "stage", "layers", "TP", "servers",
           "fwd / bwd per mb", "compute", "comm", "bubble", "memory used / available");
    for (int r = 0; r < R; r++)
        for (int s = 0; s < S; s++) {
            const plan_stage_pred *sp = &p->stage_pred[r * S + s];
            char layers[32], fb[80], mem[512] = "";
            snprintf(layers, sizeof layers, "%d-%d%s", p->first[s], p->last[s],
                     s == 0 && s == S - 1 ? "+E+H" : s == 0 ? "+E" : s == S - 1 ? "+H" : "");
            cm_group_names(p, &cfg->cluster, r, s, names, sizeof names);
            fmt_time(t2, sizeof t2, sp->fwd_s);
            fmt_time(t3, sizeof t3, sp->bwd_s);
            snprintf(fb, sizeof fb, "%s / %s", t2, t3);
            for (int i = 0; i < p->tp[s]; i++) {
                int sv = plan_server(p, r, s, i);
                size_t len = strlen(mem);
                snprintf(mem + len, sizeof mem - len, "%s%.2f / %.2f GiB", i ? ", " : "", p->memory[sv] / GIB,
                         c->servers[sv].memory / GIB);
            }
            printf("%-4d %-5d %-9s %-3d %-28s %-19s %7.0f%% %5.0f%% %6.0f%%  %s\n", r, s, layers, p->tp[s], names,
                   fb, 100 * sp->compute_s / st, 100 * sp->communication_s / st, 100 * sp->bubble_s / st, mem);
        }
    if (S > 1) {
        cm_model m;
        cm_model_init(&m, &cfg->model, p->micro_batch, cfg->training.seq_len);
        printf("\nlinks between stages (replica 0; %.3g MB of activations each way per micro-batch):\n",
               m.boundary_bytes / 1e6);
        for (int s = 0; s + 1 < S; s++) {
            lm_link l = cm_boundary_link(p, c, 0, s);
            cm_fmt_rate(rate, sizeof rate, l.bandwidth);
            fmt_time(t, sizeof t, lm_transfer_s(l, m.boundary_bytes));
            printf("  stage %d -> %d: %s, %.3g ms latency: %s per transfer\n", s, s + 1, rate, l.latency * 1e3, t);
        }
    }
    printf("\nbaselines (splits you might try by hand):\n");
    for (int b = 0; b < PLANNER_N_BASELINES; b++)
        print_baseline(&res->base[b], cfg, p->pred.step_s);
    printf("\nsearch: %s, %ld nodes, %ld complete plans, %.3f s\n",
           res->proven ? "exact (proven optimal)" : "stopped at the time limit", res->nodes, res->leaves,
           res->seconds);
    if (!res->proven) {
        fmt_time(t, sizeof t, res->lower_bound);
        printf("  no plan can be faster than %s: this one is within %.1f%% of the optimum (raise --time-limit)\n",
               t, 100 * (p->pred.step_s - res->lower_bound) / p->pred.step_s);
    }
    printf("wrote %s (plan), %s, %s\n", plan_path, lm->hostfile, lm->rankfile);
    char cmd[8192];
    launch_format(lm, cmd, sizeof cmd);
    printf("run it:\n  %s\n", cmd);
}

/* JSON string with escapes. */
static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

static void json_num(double v)
{
    if (isfinite(v))
        printf("%.17g", v);
    else
        printf("null");
}

/* The same content as one JSON object. */
static void print_json(const et_config *cfg, const planner_result *res, const char *plan_path,
                       const launch_material *lm)
{
    const et_plan *p = res->best;
    int R = p->n_replicas, S = p->n_stages;
    printf("{\"config\": ");
    json_str(cfg->path);
    printf(", \"plan_file\": ");
    json_str(plan_path);
    printf(", \"schedule\": \"%s\", \"micro_batch\": %d, \"micro_batches\": %d, \"replicas_count\": %d, "
           "\"stages_count\": %d,\n \"predicted\": {\"step_s\": ",
           p->schedule == ET_SCHED_GPIPE ? "gpipe" : "1f1b", p->micro_batch, p->micro_batches, R, S);
    json_num(p->pred.step_s);
    printf(", \"compute_s\": ");
    json_num(p->pred.compute_s);
    printf(", \"communication_s\": ");
    json_num(p->pred.communication_s);
    printf(", \"bubble_s\": ");
    json_num(p->pred.bubble_s);
    printf(", \"bottleneck\": ");
    json_str(p->pred.bottleneck);
    printf("},\n \"replicas\": [");
    for (int r = 0; r < R; r++) {
        printf("%s[", r ? ", " : "");
        for (int s = 0; s < S; s++) {
            const plan_stage_pred *sp = &p->stage_pred[r * S + s];
            printf("%s{\"layers\": [%d, %d], \"servers\": [", s ? ", " : "", p->first[s], p->last[s]);
            for (int i = 0; i < p->tp[s]; i++) {
                if (i)
                    printf(", ");
                json_str(cfg->cluster.servers[plan_server(p, r, s, i)].name);
            }
            printf("], \"memory\": [");
            for (int i = 0; i < p->tp[s]; i++)
                printf("%s%llu", i ? ", " : "", (unsigned long long)p->memory[plan_server(p, r, s, i)]);
            printf("], \"fwd_s\": ");
            json_num(sp->fwd_s);
            printf(", \"bwd_s\": ");
            json_num(sp->bwd_s);
            printf(", \"compute_s\": ");
            json_num(sp->compute_s);
            printf(", \"communication_s\": ");
            json_num(sp->communication_s);
            printf(", \"bubble_s\": ");
            json_num(sp->bubble_s);
            printf("}");
        }
        printf("]");
    }
    printf("],\n \"baselines\": [");
    for (int b = 0; b < PLANNER_N_BASELINES; b++) {
        const planner_baseline *bl = &res->base[b];
        printf("%s{\"name\": ", b ? ", " : "");
        json_str(bl->name);
        printf(", \"detail\": ");
        json_str(bl->detail);
        printf(", \"fits\": %s, \"step_s\": ", bl->plan && bl->plan->fits ? "true" : "false");
        json_num(bl->plan ? bl->plan->pred.step_s : NAN);
        printf("}");
    }
    printf("],\n \"search\": {\"proven\": %s, \"lower_bound_s\": ", res->proven ? "true" : "false");
    json_num(res->lower_bound);
    printf(", \"nodes\": %ld, \"plans\": %ld, \"seconds\": ", res->nodes, res->leaves);
    json_num(res->seconds);
    printf("},\n \"hostfile\": ");
    json_str(lm->hostfile);
    printf(", \"rankfile\": ");
    json_str(lm->rankfile);
    printf(", \"mpirun\": [");
    for (int i = 0; i < lm->argc; i++) {
        if (i)
            printf(", ");
        json_str(lm->argv[i]);
    }
    printf("]}\n");
}

int cmd_plan(int argc, char **argv)
{
    const char *config_path = NULL, *out = NULL;
    planner_opts po = {0};
    po.max_seconds = 10.0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            plan_help();
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (++i >= argc)
                return cli_usage_error("plan", "%s needs a file name", a);
            out = argv[i];
        } else if (!strcmp(a, "--exhaustive")) {
            po.exhaustive = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--time-limit")) {
            char *end;
            if (++i >= argc)
                return cli_usage_error("plan", "--time-limit needs seconds");
            po.max_seconds = strtod(argv[i], &end);
            if (*end || !(po.max_seconds > 0))
                return cli_usage_error("plan", "--time-limit '%s' is not a positive number of seconds", argv[i]);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("plan", "unknown option '%s'", a);
        } else if (config_path == NULL) {
            config_path = a;
        } else {
            return cli_usage_error("plan", "one config only ('%s' and '%s')", config_path, a);
        }
    }
    if (config_path == NULL)
        return cli_usage_error("plan", "missing CONFIG");

    et_err e = {0};
    et_config *cfg = et_config_load(config_path, &e);
    if (cfg == NULL)
        return et_err_report(&e);
    planner_result res;
    if (planner_plan(cfg, &po, &res, &e) != 0) {
        et_config_free(cfg);
        return et_err_report(&e);
    }
    int rc = 0;
    if (res.best == NULL) {
        char model[96];
        model_name(cfg, model, sizeof model);
        fprintf(stderr,
                "edgetrain: %s: model %s does not fit: needs %.2f GiB on the smallest feasible split, largest "
                "server has %.2f GiB (add servers or memory, or lower micro_batch or seq_len)\n",
                config_path, model, res.min_need / GIB, res.max_memory / GIB);
        rc = 2;
        goto done;
    }
    char path[2048];
    if (out)
        snprintf(path, sizeof path, "%s", out);
    else
        snprintf(path, sizeof path, "plans/%s/plan.yaml", cfg->name);
    if (et_mkdirs_parent(path) != 0) {
        fprintf(stderr, "edgetrain: %s: cannot create its directory (%s)\n", path, strerror(errno));
        rc = 1;
        goto done;
    }
    if (plan_write(res.best, cfg, path, &e) != 0) {
        rc = et_err_report(&e);
        goto done;
    }
    launch_opts lo = {0};
    launch_material lm;
    if (launch_prepare(res.best, cfg, config_path, path, &lo, &lm, &e) != 0) {
        rc = et_err_report(&e);
        goto done;
    }
    if (json)
        print_json(cfg, &res, path, &lm);
    else
        print_table(cfg, &res, path, &lm);
    launch_material_free(&lm);
done:
    planner_result_free(&res);
    et_config_free(cfg);
    return rc;
}
