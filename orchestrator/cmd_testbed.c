/*
 * cmd_testbed — `edgetrain testbed up|status|down|verify|mpirun CONFIG`: the
 * real edge test bed on this machine (orchestrator/testbed.h,
 * docs/TESTBED.md).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "plan.h"
#include "planner.h"
#include "testbed.h"

/* Print the subcommand's help to f. */
static void testbed_usage(FILE *f)
{
    fprintf(f,
        "usage: edgetrain testbed up CONFIG [options]\n"
        "       edgetrain testbed status CONFIG | --name NAME\n"
        "       edgetrain testbed down CONFIG | --name NAME\n"
        "       edgetrain testbed verify CONFIG | --name NAME [--seconds S] [--tolerance T]\n"
        "                                [--no-links] [--no-cpu]\n"
        "       edgetrain testbed mpirun CONFIG [--timeout S] -- mpirun [ARGS...]\n"
        "       edgetrain testbed calibrate CONFIG [--plan PLAN] [--seconds S] [--config-out FILE]\n"
        "\n"
        "The config's servers as containers on this machine: each its own host name,\n"
        "network namespace (10.78.0.0/24) and CPU share, every pair of servers joined by a\n"
        "link with the config's bandwidth and latency (both directions), and a launcher\n"
        "namespace from which mpirun reaches them. Needs root. See docs/TESTBED.md.\n"
        "\n"
        "  up        build the image once (cached), create namespaces, links and containers;\n"
        "            idempotent, and safe to re-run after a crash\n"
        "  status    containers, addresses, CPU shares, links and their counters\n"
        "            (exit 0 when fully up, 1 when down or broken)\n"
        "  down      remove everything this test bed made, and only that\n"
        "  verify    measure each pair's round trip and throughput (both ways) and each\n"
        "            container's CPU share against the config (exit 1 when some is off)\n"
        "  mpirun    run an mpirun command across the containers (what `run --testbed` does)\n"
        "  calibrate measure what the containers deliver for the plan's work (each worker rank\n"
        "            times its own stage's forward/backward/optimizer under its CPU cap) and what\n"
        "            MPI messages of the plan's size take between them; store it in the test bed's\n"
        "            state (`run --testbed` uses it), print the calibrated GFLOP/s and links and\n"
        "            the plan's step time predicted with the config's and the calibrated profiles;\n"
        "            --config-out writes the calibrated config (includes CONFIG)\n"
        "\n"
        "options of up:\n"
        "  --name NAME          test bed name (default: the config's name)\n"
        "  --no-containers      namespaces and links only (no podman, no image)\n"
        "  --no-build           fail instead of building a missing image\n"
        "  --fastest-cpus X     CPU share of the fastest server (default 1); the others get\n"
        "                       X * gflops / max gflops\n"
        "  --core-gflops G      instead: cpus = gflops / G (G: one core's GFLOP/s here)\n"
        "  --host-cores C       cores to plan for (default: this host's); shares that add up\n"
        "                       to more than C - 0.2 are scaled down together\n"
        "  --mtu BYTES          MTU of the emulated links (default 1500)\n"
        "  --mount DIR          bind-mount DIR into every container at the same path\n"
        "                       (repeatable; the repository of this binary always is)\n"
        "environment: EDGETRAIN_TESTBED_DIR (image cache and podman storage, default\n"
        "/var/lib/edgetrain-testbed), EDGETRAIN_TESTBED_RUN (runtime state, default\n"
        "/run/edgetrain-testbed).\n");
}

/* Parse a number option value; 0 or a usage error code (2). */
static int num_arg(const char *opt, const char *v, double lo, double *out)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || errno || end == v || *end || !isfinite(x) || x < lo)
        return cli_usage_error("testbed", "%s needs a number >= %g", opt, lo);
    *out = x;
    return 0;
}

/* Load CONFIG and plan its test bed with o; prints the error and returns
 * NULL (exit code in *rc) on failure. *cfg_out receives the config (caller
 * frees) when cfg_out is not NULL. */
static et_testbed *load_and_plan(const char *path, const et_testbed_opts *o, et_config **cfg_out,
                                 int *rc)
{
    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(path, &e);
    if (!cfg) {
        *rc = et_err_report(&e);
        return NULL;
    }
    et_testbed *tb = et_testbed_plan(&cfg->cluster, cfg->name, o, &e);
    if (!tb) {
        et_config_free(cfg);
        *rc = et_err_report(&e);
        return NULL;
    }
    if (cfg_out)
        *cfg_out = cfg;
    else
        et_config_free(cfg);
    return tb;
}

/* `testbed mpirun CONFIG [--timeout S] -- mpirun ARGS...`: build the launch
 * argv and run it, returning its exit status. */
static int do_mpirun(int argc, char **argv)
{
    const char *config = NULL;
    double timeout = 0;
    int i = 2;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--timeout")) {
            if (num_arg("--timeout", i + 1 < argc ? argv[++i] : NULL, 1, &timeout))
                return 2;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("testbed", "unknown option '%s'", argv[i]);
        } else if (!config) {
            config = argv[i];
        } else {
            return cli_usage_error("testbed", "one CONFIG only");
        }
    }
    if (!config || i + 1 >= argc)
        return cli_usage_error("testbed", "mpirun needs CONFIG, then -- and an mpirun command");
    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(config, &e);
    if (!cfg)
        return et_err_report(&e);
    char **full = NULL;
    int rc = et_testbed_launch_argv(cfg, argv + i + 1, timeout, &full, &e);
    et_config_free(cfg);
    if (rc < 0)
        return et_err_report(&e);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        et_testbed_argv_free(full);
        fprintf(stderr, "edgetrain: testbed: fork failed (%s)\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        execvp(full[0], full);
        fprintf(stderr, "edgetrain: testbed: cannot run %s (%s)\n", full[0], strerror(errno));
        _exit(127);
    }
    et_testbed_argv_free(full);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* `testbed calibrate CONFIG [--plan PLAN] [--seconds S] [--config-out FILE]`:
 * plan (or take PLAN), calibrate, print; 0, or 1/2 as the CLI promises. */
static int do_calibrate(int argc, char **argv)
{
    const char *config = NULL, *plan_path = NULL, *cfg_out = NULL;
    double seconds = 2.0;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            testbed_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--plan") && v) {
            plan_path = argv[++i];
        } else if (!strcmp(argv[i], "--config-out") && v) {
            cfg_out = argv[++i];
        } else if (!strcmp(argv[i], "--seconds")) {
            if (num_arg("--seconds", v, 0.1, &seconds))
                return 2;
            if (seconds > 600)
                return cli_usage_error("testbed", "--seconds is at most 600");
            i++;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("testbed", "unknown option '%s' for calibrate", argv[i]);
        } else if (!config) {
            config = argv[i];
        } else {
            return cli_usage_error("testbed", "one CONFIG only");
        }
    }
    if (!config)
        return cli_usage_error("testbed", "calibrate needs CONFIG");
    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(config, &e);
    if (!cfg)
        return et_err_report(&e);
    et_plan *plan = NULL;
    if (plan_path) {
        plan = plan_load(plan_path, cfg, &e);
    } else {
        planner_opts po = {0};
        po.no_baselines = 1;
        planner_result pr;
        if (planner_plan(cfg, &po, &pr, &e) == 0) {
            if (pr.best)
                plan = plan_clone(pr.best);
            else
                et_errf(&e, ET_EINPUT, "%s: the model does not fit the cluster (see 'edgetrain plan %s')",
                        config, config);
            planner_result_free(&pr);
        }
    }
    if (!plan) {
        et_config_free(cfg);
        return et_err_report(&e);
    }
    int rc = 0;
    et_tb_cal cal;
    if (et_testbed_calibrate(cfg, plan, seconds, stderr, &cal, &e) < 0) {
        rc = et_err_report(&e);
    } else {
        et_tb_cal_print(&cal, cfg, plan, stdout);
        if (cfg_out) {
            if (et_tb_cal_write_config(&cal, cfg, cfg_out, &e) < 0)
                rc = et_err_report(&e);
            else
                printf("wrote %s (the config as the test bed really is)\n", cfg_out);
        }
        et_tb_cal_free(&cal);
    }
    plan_free(plan);
    et_config_free(cfg);
    return rc;
}

/* `edgetrain testbed ACTION ...` (cli.h): parse, load and plan the config,
 * run the action; exit 0/1/2 as the CLI promises. */
int cmd_testbed(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        testbed_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    if (!strcmp(action, "spin")) {
        /* Internal: run inside a container by `verify` (prints the CPU share). */
        double secs, threads = 1, start_at = 0;
        if (argc < 3 || argc > 5 || num_arg("spin SECONDS", argv[2], 0.1, &secs) ||
            (argc >= 4 && num_arg("spin THREADS", argv[3], 1, &threads)) ||
            (argc == 5 && num_arg("spin START_EPOCH", argv[4], 0, &start_at)))
            return cli_usage_error("testbed", "spin SECONDS [THREADS [START_EPOCH]]");
        printf("%.4f\n", et_testbed_spin_at(secs, (int)threads, start_at));
        return 0;
    }
    if (!strcmp(action, "calibrate-ranks")) {
        /* Internal: the ranks of the calibration job (under mpirun). */
        double secs;
        if (argc != 5 || num_arg("calibrate-ranks SECONDS", argv[4], 0.01, &secs))
            return cli_usage_error("testbed", "calibrate-ranks CONFIG PLAN SECONDS");
        return et_testbed_calibrate_ranks(argv[2], argv[3], secs);
    }
    if (!strcmp(action, "mpirun"))
        return do_mpirun(argc, argv);
    if (!strcmp(action, "calibrate"))
        return do_calibrate(argc, argv);
    if (strcmp(action, "up") && strcmp(action, "down") && strcmp(action, "status") &&
        strcmp(action, "verify"))
        return cli_usage_error("testbed", "unknown action '%s' (up, status, down, verify, mpirun, calibrate)", action);

    et_testbed_opts o;
    et_testbed_opts_default(&o);
    et_testbed_verify_opts vo = {.seconds = 1.5, .rtt_probes = 15, .links = 1, .cpu = 1,
                                 .tolerance = 0.10};
    const char *config = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            testbed_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--name")) {
            if (!v || !*v)
                return cli_usage_error("testbed", "--name needs a name");
            et_testbed_name_from(v, o.name);
            i++;
        } else if (!strcmp(action, "up") && !strcmp(a, "--no-containers")) {
            o.containers = 0;
        } else if (!strcmp(action, "up") && !strcmp(a, "--no-build")) {
            o.build_image = 0;
        } else if (!strcmp(action, "up") && !strcmp(a, "--fastest-cpus")) {
            if (num_arg(a, v, 0.01, &o.fastest_cpus))
                return 2;
            i++;
        } else if (!strcmp(action, "up") && !strcmp(a, "--core-gflops")) {
            if (num_arg(a, v, 1e-6, &o.core_gflops))
                return 2;
            i++;
        } else if (!strcmp(action, "up") && !strcmp(a, "--host-cores")) {
            if (num_arg(a, v, 1, &o.host_cores))
                return 2;
            i++;
        } else if (!strcmp(action, "up") && !strcmp(a, "--mtu")) {
            if (num_arg(a, v, 576, &x))
                return 2;
            if (x > 65535)
                return cli_usage_error("testbed", "--mtu is at most 65535");
            o.mtu = (int)x;
            i++;
        } else if (!strcmp(action, "up") && !strcmp(a, "--mount")) {
            if (!v || v[0] != '/' || strpbrk(v, " \t\n:"))
                return cli_usage_error("testbed", "--mount needs an absolute directory without "
                                       "spaces or ':'");
            if (o.n_mounts == ET_TB_MAX_MOUNTS)
                return cli_usage_error("testbed", "at most %d --mount", ET_TB_MAX_MOUNTS);
            char *real = realpath(v, NULL);
            if (!real)
                return cli_usage_error("testbed", "--mount %s: %s", v, strerror(errno));
            snprintf(o.mounts[o.n_mounts++], ET_PATH_MAX, "%s", real);
            free(real);
            i++;
        } else if (!strcmp(action, "verify") && !strcmp(a, "--seconds")) {
            if (num_arg(a, v, 0.2, &vo.seconds))
                return 2;
            i++;
        } else if (!strcmp(action, "verify") && !strcmp(a, "--tolerance")) {
            if (num_arg(a, v, 0.001, &vo.tolerance))
                return 2;
            i++;
        } else if (!strcmp(action, "verify") && !strcmp(a, "--no-links")) {
            vo.links = 0;
        } else if (!strcmp(action, "verify") && !strcmp(a, "--no-cpu")) {
            vo.cpu = 0;
        } else if (a[0] == '-') {
            return cli_usage_error("testbed", "unknown option '%s' for %s", a, action);
        } else if (!config) {
            config = a;
        } else {
            return cli_usage_error("testbed", "one CONFIG only");
        }
    }
    if (!config && (!strcmp(action, "up") || !o.name[0]))
        return cli_usage_error("testbed", "%s needs CONFIG%s", action,
                               strcmp(action, "up") ? " or --name NAME" : "");

    int rc = 0;
    et_err e;
    et_err_clear(&e);
    et_testbed *tb = NULL;
    if (config) {
        tb = load_and_plan(config, &o, NULL, &rc);
        if (!tb)
            return rc;
    }
    const char *name = tb ? tb->name : o.name;

    /* A closed output pipe must not kill us half way through up or down
     * (writes fail instead; the work completes). */
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(action, "up")) {
        int already = 0;
        if (et_testbed_up(tb, o.build_image, stderr, &already, &e) < 0) {
            rc = et_err_report(&e);
        } else {
            if (already)
                printf("test bed '%s' is already up\n", name);
            rc = et_testbed_status(name, stdout, &e) < 0 ? et_err_report(&e) : 0;
        }
    } else if (!strcmp(action, "down")) {
        int removed = 0;
        if (et_testbed_down(name, tb, stderr, &removed, &e) < 0)
            rc = et_err_report(&e);
        else
            printf("test bed '%s' is down (%d things removed)\n", name, removed);
    } else if (!strcmp(action, "status")) {
        rc = et_testbed_status(name, stdout, &e);
        if (rc < 0)
            rc = et_err_report(&e);
    } else {
        rc = et_testbed_verify(name, &vo, stdout, &e);
        if (rc < 0)
            rc = et_err_report(&e);
    }
    et_testbed_free(tb);
    return rc;
}
