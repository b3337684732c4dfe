/*
 * edgetrain report RUNDIR [--json] — re-render a run's report.md, report.json
 * and plots from the files in its run directory, and print the summary.
 * The config and plan are taken from RUNDIR/config.yaml and RUNDIR/plan.yaml.
 * The config is a byte copy of the user's, so its include:s and relative
 * paths may not resolve from the run directory; then the config file that
 * plan.yaml records (`config:`, as given to `run`) is tried, with a note. If
 * neither loads, or the plan does not, the report is still made from
 * summary.txt and metrics.csv, and says what it left out and why.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "../topology/config.h"
#include "cli.h"
#include "plan.h"
#include "report.h"

static void report_help(void)
{
    printf("usage: edgetrain report RUNDIR [--json]\n"
           "\n"
           "Re-render the report of a run directory made by `edgetrain run`: read summary.txt,\n"
           "metrics.csv, config.yaml and plan.yaml; write report.md, report.json and the plots\n"
           "loss.png (loss vs emulated time), loss_wall.png (vs wall time) and ranks.png\n"
           "(per-rank busy / communication wait / bubble) with gnuplot; print the summary:\n"
           "time-to-accuracy (emulated and wall), predicted vs measured step time overall and\n"
           "per stage, per-server utilisation and bytes sent, the plan's bottleneck.\n"
           "\n"
           "  --json   also print the summary as one JSON line (the last line of output)\n"
           "\n"
           "If RUNDIR/config.yaml (a copy of the run's config) does not load, e.g. because its\n"
           "include: or relative paths do not resolve from RUNDIR, the config that plan.yaml\n"
           "names is tried; failing that, the report keeps to summary.txt and metrics.csv.\n"
           "\n"
           "Exit status: 0 ok, 1 the report could not be written, 2 RUNDIR is not a run directory\n"
           "or its files are malformed.\n");
}

/* The `config:` path recorded at the top level of the plan file, into out
 * (n bytes). Returns 0, or -1 when the file or the key is missing. */
static int plan_config_path(const char *plan_path, char *out, size_t n)
{
    FILE *f = fopen(plan_path, "rb");
    if (!f)
        return -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = -1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (yaml_parser_load(&parser, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_MAPPING_NODE)
            for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(&doc, p->key);
                yaml_node_t *v = yaml_document_get_node(&doc, p->value);
                if (k && v && k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
                    strcmp((const char *)k->data.scalar.value, "config") == 0 && v->data.scalar.length > 0 &&
                    v->data.scalar.length < n) {
                    snprintf(out, n, "%s", (const char *)v->data.scalar.value);
                    rc = 0;
                }
            }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

/* "config.yaml could not be read: <why>" and the like, into note. */
static void make_note(char *note, size_t n, const char *what, const et_err *e)
{
    snprintf(note, n, "%s could not be read, the report leaves out what needs it: %s", what, e->msg);
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h': report_help(); return 0;
        default:
            return cli_usage_error("report", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("report", "needs exactly one RUNDIR");
    const char *dir = argv[optind];

    char path[2048], plan_path[2048], orig[1024], note[2600] = "";
    et_err e, le;
    et_err_clear(&e);
    et_err_clear(&le);
    et_config *cfg = NULL;
    et_plan *plan = NULL;
    int plan_ok = snprintf(plan_path, sizeof plan_path, "%s/plan.yaml", dir) < (int)sizeof plan_path;
    if (snprintf(path, sizeof path, "%s/config.yaml", dir) < (int)sizeof path) {
        cfg = et_config_load(path, &le);
        if (!cfg) {
            make_note(note, sizeof note, "config.yaml", &le);
            et_err oe;
            et_err_clear(&oe);
            if (plan_ok && plan_config_path(plan_path, orig, sizeof orig) == 0 &&
                (cfg = et_config_load(orig, &oe)) != NULL)
                snprintf(note, sizeof note,
                         "the run directory's config.yaml could not be read (%s); used %s, the config "
                         "plan.yaml names, as it is now",
                         le.msg, orig);
        }
    }
    if (cfg && plan_ok) {
        et_err_clear(&le);
        plan = plan_load(plan_path, cfg, &le);
        if (!plan) {
            size_t used = strlen(note);
            if (used)
                snprintf(note + used, sizeof note - used, "; ");
            used = strlen(note);
            snprintf(note + used, sizeof note - used,
                     "plan.yaml could not be read, the report leaves out what needs it: %s", le.msg);
        }
    }
    int rc = report_render_note(dir, cfg, plan, json, note[0] ? note : NULL, &e) == 0 ? 0 : et_err_report(&e);
    plan_free(plan);
    et_config_free(cfg);
    return rc;
}
