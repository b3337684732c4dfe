/*
 * edgetrain run CONFIG — plan (or take --plan), make the run directory,
 * launch the workers through mpirun (fork + execvp, never a shell), follow
 * them, and report time-to-accuracy, predicted vs measured step time and
 * per-server utilisation.
 *
 * Signals: SIGINT/SIGTERM to `run` become SIGUSR1 to mpirun, which forwards
 * it to every rank; the controller rank then stops after the current step
 * with a checkpoint. mpirun runs in its own process group so that a terminal's
 * Ctrl-C reaches only `run`.
 * A worker that dies makes mpirun end the job; `run` names the rank and its
 * server from mpirun's message and the plan, and exits 1; the last checkpoint
 * is intact (checkpoints are written to a temporary name and renamed).
 *
 * With --testbed the job runs across the containers of `edgetrain testbed up`
 * on the wall clock, after the test bed has been calibrated for the plan
 * (orchestrator/testbed.h; the stored calibration when it fits): the run
 * directory gets calibration.txt, config.calibrated.yaml and hostcpu.csv, and
 * the report compares the measured step time with the virtual clock's
 * prediction for the config and for the calibrated test bed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../topology/config.h"
#include "../workers/checkpoint.h"
#include "../workers/dataset.h"
#include "../workers/trainer.h"
#include "../common/et_fs.h"
#include "cli.h"
#include "launch.h"
#include "plan.h"
#include "planner.h"
#include "report.h"
#include "testbed.h"

static void run_help(void)
{
    printf("usage: edgetrain run CONFIG [--plan PLAN] [--out DIR] [--resume] [--json] [--quiet] [--no-mpi]\n"
           "                     [--testbed [--recalibrate]]\n"
           "\n"
           "Plan the model on the cluster (or take PLAN), launch one MPI rank per worker plus the\n"
           "controller with mpirun, train to training.target or max_steps, and report\n"
           "time-to-accuracy (emulated and wall), predicted vs measured step time and per-server\n"
           "utilisation.\n"
           "\n"
           "  --plan PLAN  use this plan file (from `edgetrain plan -o`) instead of planning\n"
           "  --out DIR    run directory (default runs/<name>-<UTC timestamp>/)\n"
           "  --resume     continue from training.checkpoint.path (under this plan or any other)\n"
           "  --json       also print the summary as one JSON line\n"
           "  --quiet      no per-step lines\n"
           "  --no-mpi     single-worker plans only: train in this process, without mpirun\n"
           "  --testbed    run across the containers of `edgetrain testbed up CONFIG` (real\n"
           "               shaped links, capped CPUs), measuring wall-clock time; the report\n"
           "               compares it with the virtual-clock prediction of the same plan, for\n"
           "               the config's profiles and for the test bed as calibrated (`edgetrain\n"
           "               testbed calibrate`: what the containers deliver for this plan's work and\n"
           "               what its messages take between them; measured first when the test bed\n"
           "               has no calibration for this plan)\n"
           "  --recalibrate  with --testbed: calibrate again even when one is stored\n"
           "\n"
           "The run directory holds config.yaml (a copy), plan.yaml, hostfile, rankfile,\n"
           "metrics.csv, trace.json (Perfetto), summary.txt, report.md and PNG plots; with\n"
           "--testbed also calibration.txt, config.calibrated.yaml (the config as the test bed\n"
           "really is) and hostcpu.csv (the host's CPU use during the run, by the test bed and by\n"
           "everything else).\n");
}

/* Copy a file byte for byte (the config, for the record). */
static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return -1;
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out);
}

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t interrupted;

static void forward_stop(int sig)
{
    (void)sig;
    interrupted = 1;
    if (child_pid > 0)
        kill((pid_t)child_pid, SIGUSR1);
}

/* The rank named in an mpirun failure line, or -1. */
static int rank_in_line(const char *line)
{
    const char *p = strstr(line, "rank ");
    while (p) {
        char *end;
        long r = strtol(p + 5, &end, 10);
        if (end != p + 5)
            return (int)r;
        p = strstr(p + 5, "rank ");
    }
    return -1;
}

/* Fork mpirun with argv, echo its stderr, remember the first rank it names
 * as failed and whether a rank printed its own "edgetrain: " error line.
 * Returns mpirun's exit status (or 128+signal), *dead_rank -1 if none was
 * named. */
static int run_mpirun(char *const *argv, int *dead_rank, int *reported)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setpgid(0, 0);
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "edgetrain: cannot run %s: %s (install openmpi-bin: scripts/install-deps.sh)\n",
                argv[0], strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    close(pfd[1]);
    struct sigaction sa, oi, ot;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &oi);
    sigaction(SIGTERM, &sa, &ot);

    *dead_rank = -1;
    *reported = 0;
    /* mpirun's own notices come in "-----" framed blocks: hold them back and
     * show them only if no rank has said what went wrong in its own line. */
    FILE *err = fdopen(pfd[0], "r");
    char line[4096];
    char *held = NULL;
    size_t n_held = 0;
    int in_block = 0;
    while (err && fgets(line, sizeof line, err)) {
        if (*dead_rank < 0 && (strstr(line, "exited on signal") || strstr(line, "killed") ||
                               strstr(line, "non-zero status") || strstr(line, "terminated")))
            *dead_rank = rank_in_line(line);
        int frame = !strncmp(line, "-----", 5);
        if (frame)
            in_block = !in_block;
        if (frame || in_block) {
            size_t n = strlen(line);
            held = et_xrealloc(held, n_held + n + 1);
            memcpy(held + n_held, line, n + 1);
            n_held += n;
            continue;
        }
        if (!strncmp(line, "edgetrain: ", 11))
            *reported = 1;
        fputs(line, stderr);
    }
    if (held && !*reported)
        fputs(held, stderr);
    free(held);
    if (err)
        fclose(err);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    child_pid = 0;
    sigaction(SIGINT, &oi, NULL);
    sigaction(SIGTERM, &ot, NULL);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/*
 * The test bed's calibration for this plan (orchestrator/testbed.h): the one
 * stored in the test bed's state when it was made for this test bed and plan
 * (unless recalibrate), else a new one (about ten seconds: one job across
 * the containers). Written to DIR/calibration.txt (the report's input) and
 * DIR/config.calibrated.yaml, and shown unless quiet. 0, or -1 with e set.
 */
static int testbed_calibration(const et_config *cfg, const et_plan *plan, const char *dir,
                               int recalibrate, int quiet, et_err *e)
{
    char name[ET_TB_NAME_MAX + 1], sig[17], path[2048];
    et_testbed_name_from(cfg->name, name);
    et_tb_cal_plan_sig(cfg, plan, sig);
    et_tb_cal cal;
    int have = 0;
    if (!recalibrate) {
        et_err e2;
        et_err_clear(&e2);
        have = et_testbed_stored_calibration(name, cfg, sig, &cal, &e2);
        if (have < 0) {
            fprintf(stderr, "edgetrain: note: %s; calibrating again\n", e2.msg);
            have = 0;
        }
    }
    if (!have && et_testbed_calibrate(cfg, plan, 2.0, quiet ? NULL : stdout, &cal, e) != 0)
        return -1;
    if (have && !quiet)
        printf("edgetrain: using test bed '%s''s calibration for this plan from %.0f s ago "
               "(--recalibrate measures again)\n", name, difftime(time(NULL), (time_t)cal.when));
    int rc = 0;
    snprintf(path, sizeof path, "%s/calibration.txt", dir);
    if (et_tb_cal_save(&cal, cfg, path, e) != 0)
        rc = -1;
    snprintf(path, sizeof path, "%s/config.calibrated.yaml", dir);
    if (!rc && et_tb_cal_write_config(&cal, cfg, path, e) != 0)
        rc = -1;
    if (!rc && !quiet)
        et_tb_cal_print(&cal, cfg, plan, stdout);
    et_tb_cal_free(&cal);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plan", required_argument, 0, 'p'}, {"out", required_argument, 0, 'o'},
        {"resume", no_argument, 0, 'r'},     {"json", no_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},      {"no-mpi", no_argument, 0, 'n'},
        {"testbed", no_argument, 0, 't'},    {"recalibrate", no_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
    };
    const char *plan_path = NULL, *out = NULL;
    int resume = 0, json = 0, quiet = 0, no_mpi = 0, testbed = 0, recalibrate = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': plan_path = optarg; break;
        case 'o': out = optarg; break;
        case 'r': resume = 1; break;
        case 'j': json = 1; break;
        case 'q': quiet = 1; break;
        case 'n': no_mpi = 1; break;
        case 't': testbed = 1; break;
        case 'c': recalibrate = 1; break;
        case 'h': run_help(); return 0;
        default: return cli_usage_error("run", "unknown option");
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("run", "needs exactly one CONFIG");
    const char *config_path = argv[optind];
    if (testbed && no_mpi)
        return cli_usage_error("run", "--testbed and --no-mpi exclude each other");
    if (recalibrate && !testbed)
        return cli_usage_error("run", "--recalibrate goes with --testbed");

    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(config_path, &e);
    if (!cfg)
        return et_err_report(&e);
    if (testbed)
        cfg->clock = ET_CLOCK_WALL; /* the workers get --clock wall too */

    /* Inputs the workers will read, checked here first so that a mistake is
     * one line before anything is launched. */
    {
        et_dataset ds = {0};
        if (dataset_load(cfg->training.dataset, cfg->model.vocab_size,
                         (size_t)cfg->training.seq_len + 2, &ds, &e) != 0) {
            et_config_free(cfg);
            return et_err_report(&e);
        }
        dataset_free(&ds);
        const char *ck = resume ? cfg->training.checkpoint_path : cfg->training.init;
        if (resume && !ck[0]) {
            fprintf(stderr, "edgetrain: %s: --resume needs training.checkpoint.path\n", config_path);
            et_config_free(cfg);
            return 2;
        }
        gpt2_config cc;
        if (ck[0] && ckpt_read_config(ck, &cc, &e) != 0) {
            et_config_free(cfg);
            return et_err_report(&e);
        }
        if (ck[0] && memcmp(&cc, &cfg->model, sizeof cc) != 0) {
            fprintf(stderr,
                    "edgetrain: %s: checkpoint model (n_layer %d, n_head %d, n_embd %d, vocab %d, "
                    "block %d) differs from the config's (n_layer %d, n_head %d, n_embd %d, vocab %d, "
                    "block %d)\n",
                    ck, cc.n_layer, cc.n_head, cc.n_embd, cc.vocab_size, cc.block_size,
                    cfg->model.n_layer, cfg->model.n_head, cfg->model.n_embd, cfg->model.vocab_size,
                    cfg->model.block_size);
            et_config_free(cfg);
            return 2;
        }
    }

    /* Where checkpoints go must exist before the first one is due. */
    if (cfg->training.checkpoint_path[0] && et_mkdirs_parent(cfg->training.checkpoint_path) != 0) {
        fprintf(stderr, "edgetrain: %s: cannot create the checkpoint directory of %s (%s)\n", config_path,
                cfg->training.checkpoint_path, strerror(errno));
        et_config_free(cfg);
        return 2;
    }

    /* The plan: given, or the planner's best. */
    et_plan *plan = NULL;
    if (plan_path) {
        plan = plan_load(plan_path, cfg, &e);
        if (!plan) {
            et_config_free(cfg);
            return et_err_report(&e);
        }
    } else {
        planner_opts po = {0};
        po.no_baselines = 1;
        planner_result pr;
        if (planner_plan(cfg, &po, &pr, &e) != 0) {
            et_config_free(cfg);
            return et_err_report(&e);
        }
        if (!pr.best) {
            fprintf(stderr,
                    "edgetrain: %s: the model does not fit: one server needs %.2f GiB on the finest "
                    "split, the largest has %.2f GiB (add memory or servers, or shrink the model or "
                    "micro_batch)\n",
                    config_path, pr.min_need / 1073741824.0, pr.max_memory / 1073741824.0);
            planner_result_free(&pr);
            et_config_free(cfg);
            return 2;
        }
        plan = plan_clone(pr.best);
        planner_result_free(&pr);
    }

    /* The run directory. */
    char dir[1024];
    if (out) {
        snprintf(dir, sizeof dir, "%s", out);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        snprintf(dir, sizeof dir, "runs/%s-%s", cfg->name, stamp);
    }
    int rc = 0;
    char path[2048], plan_file[2048];
    if (et_mkdirs(dir) != 0) {
        fprintf(stderr, "edgetrain: %s: cannot create the run directory (%s)\n", dir, strerror(errno));
        rc = 1;
        goto out;
    }
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    copy_file(config_path, path);
    snprintf(plan_file, sizeof plan_file, "%s/plan.yaml", dir);
    if (plan_write(plan, cfg, plan_file, &e) != 0) {
        rc = et_err_report(&e);
        goto out;
    }
    if (!quiet)
        printf("edgetrain: run %s: %d stage(s) x %d replica(s), %d worker(s), %s, %d x %d sequences, "
               "predicted %.4g s/step; output in %s/\n",
               cfg->name, plan->n_stages, plan->n_replicas, plan_n_workers(plan),
               plan->schedule == ET_SCHED_GPIPE ? "gpipe" : "1f1b", plan->micro_batches,
               plan->micro_batch, plan->pred.step_s, dir);

    if (testbed && testbed_calibration(cfg, plan, dir, recalibrate, quiet, &e) != 0) {
        rc = et_err_report(&e);
        goto out;
    }

    if (no_mpi) {
        if (plan_n_workers(plan) != 1) {
            fprintf(stderr, "edgetrain: %s: --no-mpi needs a single-worker plan, this one has %d workers\n",
                    config_path, plan_n_workers(plan));
            rc = 2;
            goto out;
        }
        cfg->training.micro_batch = plan->micro_batch; /* "auto" resolved by the plan */
        et_train_opts to = {dir, resume, !quiet, plan->pred.step_s,
                             cfg->cluster.servers[plan->server[0]].name};
        et_train_result tr;
        if (trainer_run_single(cfg, &to, &tr, &e) != 0) {
            rc = et_err_report(&e);
            goto out;
        }
    } else {
        launch_material lm;
        launch_opts lo = {dir, resume, quiet, isatty(STDOUT_FILENO), testbed};
        if (launch_prepare(plan, cfg, config_path, plan_file, &lo, &lm, &e) != 0) {
            rc = et_err_report(&e);
            goto out;
        }
        char **argv_exec = lm.argv;
        if (testbed) {
            /* Across the test bed's containers: mpirun inside the launcher
             * namespace with the podman agent (orchestrator/testbed.h). */
            if (et_testbed_launch_argv(cfg, lm.argv, 0, &argv_exec, &e) != 0) {
                launch_material_free(&lm);
                rc = et_err_report(&e);
                goto out;
            }
        }
        fflush(stdout);
        /* On the test bed: where the host's CPU goes while the job runs
         * (DIR/hostcpu.csv; the report sets apart the steps that other
         * work on the host slowed). */
        et_tb_monitor *mon = NULL;
        if (testbed) {
            char name[ET_TB_NAME_MAX + 1];
            et_err me;
            et_err_clear(&me);
            et_testbed_name_from(cfg->name, name);
            snprintf(path, sizeof path, "%s/hostcpu.csv", dir);
            mon = et_testbed_monitor_start(name, path, 1.0, &me);
            if (!mon)
                fprintf(stderr, "edgetrain: note: no host CPU record (%s)\n", me.msg);
        }
        int dead = -1, reported = 0;
        int st = run_mpirun(argv_exec, &dead, &reported);
        et_testbed_monitor_stop(mon);
        if (testbed)
            et_testbed_argv_free(argv_exec);
        if (st != 0) {
            if (dead > 0 && !reported) {
                plan_role ro;
                if (plan_rank_role(plan, dead, &ro) == 0)
                    fprintf(stderr,
                            "edgetrain: worker rank %d on server %s (stage %d, layers %d-%d) died; "
                            "the last checkpoint is intact: continue with `edgetrain run %s --resume`\n",
                            dead, cfg->cluster.servers[ro.server].name, ro.stage, ro.layer_first,
                            ro.layer_last, config_path);
                rc = 1;
            } else {
                rc = st == 2 ? 2 : 1;
                if (!reported)
                    fprintf(stderr, "edgetrain: the training job failed (mpirun exit status %d)\n", st);
            }
        }
        launch_material_free(&lm);
    }
    if (rc == 0 || interrupted) {
        if (report_render(dir, cfg, plan, json, &e) != 0)
            et_err_report(&e);
    }
out:
    plan_free(plan);
    et_config_free(cfg);
    return rc;
}
