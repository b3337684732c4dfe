/*
 * edgetrain — the controller CLI: one binary, subcommands (DESIGN.md §3).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../common/et_blas.h"
#include "cli.h"

/* Weak so that the binary links while a subcommand's file is absent from a
 * partial build; a missing one is reported, never called. */
#pragma weak cmd_plan
#pragma weak cmd_run
#pragma weak cmd_prepare_data
#pragma weak cmd_eval
#pragma weak cmd_worker
#pragma weak cmd_report
#pragma weak cmd_testbed

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} subcommand;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: edgetrain <command> [options]\n"
        "\n"
        "Pipeline/tensor-parallel GPT-2 training across heterogeneous edge servers.\n"
        "\n"
        "commands:\n"
        "  plan CONFIG [-o PLAN] [--exhaustive]   place the model on the cluster, predict step time\n"
        "  run CONFIG [--out DIR] [--resume]      plan, launch MPI workers, train to the target\n"
        "  prepare-data INPUT... -o DATA.h5       tokenize a corpus into an HDF5 dataset\n"
        "  eval CHECKPOINT DATA.h5                validation loss and next-token accuracy\n"
        "  worker CONFIG --plan PLAN              one MPI rank (what `run` launches via mpirun)\n"
        "  report RUNDIR                          re-render a run's report and plots\n"
        "  testbed up|status|down CONFIG          containers and shaped links on this host\n"
        "\n"
        "Each command has --help. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or input.\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "edgetrain: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try 'edgetrain %s --help')\n", cmd);
    return 2;
}

int main(int argc, char **argv)
{
    /* Before anything else: OpenBLAS chooses its kernels at load time. */
    et_blas_select_core(argv);
    const subcommand cmds[] = {
        {"plan", cmd_plan, "plan"},
        {"run", cmd_run, "run"},
        {"prepare-data", cmd_prepare_data, "prepare-data"},
        {"eval", cmd_eval, "eval"},
        {"worker", cmd_worker, "worker"},
        {"report", cmd_report, "report"},
        {"testbed", cmd_testbed, "testbed"},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("edgetrain 0.1\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0)
            continue;
        if (!cmds[i].fn) {
            fprintf(stderr, "edgetrain: command '%s' is not part of this build\n", argv[1]);
            return 2;
        }
        return cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "edgetrain: unknown command '%s' (try 'edgetrain --help')\n", argv[1]);
    return 2;
}
