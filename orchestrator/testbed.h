/*
 * testbed — the real edge test bed on one machine (docs/TESTBED.md).
 *
 * Each server of a config becomes a podman container with its own hostname,
 * network namespace and CPU share; the namespaces are joined only through
 * the link emulator (build/tools/linkemu), which gives every ordered pair of
 * servers the config's bandwidth and latency; a launcher namespace (with its
 * own hostname) holds mpirun, which reaches the containers through
 * scripts/testbed/agent.sh (`podman exec`). Addresses are 10.78.0.0/24 inside
 * namespaces edgetrain creates; nothing on the host's own network changes.
 *
 * Names, all derived from the test bed name T (the config's name, sanitised):
 *     network namespaces  /run/netns/etb-T-s-SERVER, /run/netns/etb-T-launcher
 *     containers          etb-T-SERVER (hostname SERVER), label edgetrain.testbed=T
 *     runtime state       $EDGETRAIN_TESTBED_RUN/T/   (default /run/edgetrain-testbed)
 *     image and storage   $EDGETRAIN_TESTBED_DIR/     (default /var/lib/edgetrain-testbed)
 *
 * How `edgetrain run CONFIG --testbed` uses it (orchestrator/cmd_run.c):
 *     1. plan as usual; write the plan and the rankfile/hostfile with the
 *        SERVER NAMES as host names (they are the containers' hostnames), or
 *        pass no host option at all and let et_testbed_launch_argv add
 *        `--host name:slots,...` in config order;
 *     2. build the usual mpirun argv (argv[0] "mpirun", options, then the
 *        program: the absolute path of this edgetrain binary, `worker`,
 *        CONFIG, `--plan`, PLAN), with every path absolute and under a
 *        directory mounted into the containers (the repository by default;
 *        `testbed up --mount DIR` adds more) and the run directory there too;
 *     3. call et_testbed_launch_argv(cfg, argv, timeout_s, &out, &e) and
 *        fork + execvp(out[0], out) (no shell), wait for it, and free out
 *        with et_testbed_argv_free. The job runs with `clock: wall`.
 * Its exit status is mpirun's, or 124 when the timeout ended it.
 */
#ifndef ET_TESTBED_H
#define ET_TESTBED_H

#include <stdint.h>
#include <stdio.h>

#include "../common/et_err.h"
#include "../topology/config.h"
#include "plan.h"

#define ET_TB_NAME_MAX 24     /* test bed names: [a-z0-9-], at most this long */
#define ET_TB_MAX_SERVERS 253 /* 10.78.0.1 .. 10.78.0.253; .254 is the launcher */
#define ET_TB_MAX_MOUNTS 16
#define ET_TB_SUBNET "10.78.0.0/24"
#define ET_TB_LAUNCHER_ADDR "10.78.0.254"
#define ET_TB_IFNAME "etb0"   /* the TUN device inside every namespace */

/* What `testbed up` may be told (defaults from et_testbed_opts_default). */
typedef struct et_testbed_opts {
    char name[ET_TB_NAME_MAX + 1]; /* "" = from the config's name */
    int containers;        /* 1: containers (podman); 0: namespaces and links only */
    int build_image;       /* 1: build the image when missing (slow); 0: fail instead */
    double fastest_cpus;   /* CPU share of the fastest server (relative mapping); default 1 */
    double core_gflops;    /* > 0: absolute mapping, cpus = gflops / core_gflops */
    double host_cores;     /* cores to plan for; default: this host's online CPUs */
    int mtu;               /* of the TUN devices; default 1500 */
    int n_mounts;          /* directories bind-mounted read-write at the same path */
    char mounts[ET_TB_MAX_MOUNTS][ET_PATH_MAX];
} et_testbed_opts;

/* One emulated server. */
typedef struct et_testbed_server {
    char name[ET_NAME_MAX];      /* = its hostname */
    char addr[16];               /* 10.78.0.(index+1) */
    double cpus;                 /* podman --cpus */
    uint64_t memory;             /* podman --memory (the config's, plus 256 MiB for the runtime) */
    int slots;
} et_testbed_server;

/* A test bed as planned from a config (et_testbed_plan) or read back from
 * its state file (et_testbed_load_state). Owned by the caller; free with
 * et_testbed_free. */
typedef struct et_testbed {
    char name[ET_TB_NAME_MAX + 1];
    int n;                       /* servers */
    et_testbed_server *srv;      /* n */
    double *rate;                /* n x n, bytes/s per ordered pair (row = from); 0 on the diagonal */
    double *delay;               /* n x n, seconds per ordered pair */
    double cpu_scale;            /* factor applied to every share to fit the host's cores (<= 1) */
    double host_cores;
    int mtu;
    int containers;
    char image[256];             /* "" without containers */
    int n_mounts;
    char mounts[ET_TB_MAX_MOUNTS][ET_PATH_MAX];
    char fingerprint[17];        /* hex digest of everything above */
    int recipe;                  /* what `up` made (read back from the state; newer makes more) */
} et_testbed;

/* Defaults: name from config, containers on, build on, fastest 1 CPU,
 * relative mapping, host's cores, MTU 1500, no extra mounts. */
void et_testbed_opts_default(et_testbed_opts *o);

/* Derive the test bed from a cluster: names, addresses, CPU shares (the
 * mapping in docs/TESTBED.md), per-pair rate and delay. Pure computation (no
 * privileges, nothing touched). cfg_name names it when o->name is empty.
 * Errors (ET_EINPUT): server names that are not valid host names, too many
 * servers, unusable options. Returns NULL with e set. */
et_testbed *et_testbed_plan(const et_cluster *c, const char *cfg_name,
                            const et_testbed_opts *o, et_err *e);
void et_testbed_free(et_testbed *tb);

/* Sanitise a config name into a test bed name: lower case, [a-z0-9-] (other
 * characters become '-'), at most ET_TB_NAME_MAX, never empty ("edgetrain"). */
void et_testbed_name_from(const char *cfg_name, char out[ET_TB_NAME_MAX + 1]);

/* Bring the test bed up: image (built and cached when missing and
 * build_image is set),
 * namespaces, TUN devices, link emulator, launcher namespace, containers.
 * Idempotent: a test bed already up with the same fingerprint is left as is
 * (*already = 1); anything else under the same name (a crashed or different
 * one) is taken down first. Progress lines go to log (may be NULL).
 * Errors: ET_ERUNTIME (missing privileges or tools, a command failed); on
 * failure whatever was made is taken down again. */
int et_testbed_up(const et_testbed *tb, int build_image, FILE *log, int *already, et_err *e);

/* Take down everything the test bed named `name` made, and only that:
 * its containers (by name and by label), the link emulator (by pid file,
 * checked against its command line), its namespaces, the launcher's UTS
 * namespace mount, its state directory. Works from the state file and, when
 * that is gone, from the names the config gives (tb may be NULL then only
 * the state is used). Safe to repeat. *removed counts what was removed. */
int et_testbed_down(const char *name, const et_testbed *tb, FILE *log, int *removed, et_err *e);

/* Print the test bed's state: containers (address, CPU share, memory,
 * running or not), the link table (rate and delay, both directions), the
 * link emulator and its per-link counters. Returns 0 when fully up, 1 when
 * down or broken (and says what is missing), -1 with e set on error. */
int et_testbed_status(const char *name, FILE *out, et_err *e);

/* Read a test bed's state file ($EDGETRAIN_TESTBED_RUN/NAME/state).
 * NULL with e set (ET_ERUNTIME, "not up") when there is none. */
et_testbed *et_testbed_load_state(const char *name, et_err *e);

/* Measurements of a test bed that is up (et_testbed_verify). */
typedef struct et_testbed_pair_meas {
    int a, b;                    /* server indices */
    double rtt_s;                /* median UDP echo round trip a -> b -> a */
    double rtt_expected_s;       /* delay(a,b) + delay(b,a) + serialisation of the probe */
    double tput_ab, tput_ba;     /* TCP goodput, bytes/s, each direction */
} et_testbed_pair_meas;

typedef struct et_testbed_verify_opts {
    double seconds;              /* per throughput measurement (default 1.5) */
    int rtt_probes;              /* UDP echoes per pair (default 15) */
    int links;                   /* measure RTT and throughput */
    int cpu;                     /* measure each container's CPU share */
    double tolerance;            /* relative, default 0.10 */
} et_testbed_verify_opts;

/* Measure every pair's RTT and both directions' throughput through the link
 * emulator, and each container's CPU share (a spinning process inside it,
 * `edgetrain testbed spin`, against an uncapped spinner on the host at the
 * same moment: the container must get min(its share, what that one got)),
 * print a table against the config's numbers and
 * return 0 when all are within the tolerance, 1 when some are not, -1 with e
 * set when it cannot measure. Runs in the test bed's namespaces only. */
int et_testbed_verify(const char *name, const et_testbed_verify_opts *o, FILE *out, et_err *e);

/* Wait until the realtime clock reads start_at (seconds since the epoch; no
 * wait when past or more than 60 s off), then spin `threads` busy threads for
 * `seconds` and return the CPU time they got divided by the wall time (1.0 =
 * one full core). What `edgetrain testbed spin` prints inside a container. */
double et_testbed_spin_at(double seconds, int threads, double start_at);

/* The argv to exec for running mpirun_argv (argv[0] "mpirun", NULL-ended)
 * across the test bed of cfg: nsenter into the launcher namespace (network
 * and hostname), the agent's environment, `timeout` (timeout_s > 0; 0 means
 * 24 h: a job must never hang forever), then mpirun with the test bed's
 * options inserted after argv[0]: plm_rsh_agent = scripts/testbed/agent.sh,
 * no tree spawn, --bind-to none, btl tcp,vader,self and oob/btl TCP on
 * 10.78.0.0/24, mpi_yield_when_idle 1, --allow-run-as-root as root, -x for
 * each of OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, ASAN_OPTIONS, LSAN_OPTIONS and
 * UBSAN_OPTIONS that is set (the ranks do not inherit our environment), and
 * `--host NAME:SLOTS,...` unless the argv already names hosts (--host, -H,
 * --hostfile, --machinefile, --rankfile, -rf). Fails (ET_ERUNTIME) when the
 * test bed of this config is not up or was brought up from a different
 * config. *out is NULL-ended and owned by the caller (et_testbed_argv_free). */
int et_testbed_launch_argv(const et_config *cfg, char *const *mpirun_argv, double timeout_s,
                           char ***out, et_err *e);
void et_testbed_argv_free(char **argv);

/* Run argv (fork + execvp, no shell) and wait: returns its exit status
 * (128+signal when killed), or -1 with e set when it cannot be started.
 * Its stdout goes to capture (up to cap-1 bytes, NUL-terminated) when capture
 * is not NULL, else to /dev/null; its stderr is discarded with quiet, else
 * it goes to ours. Its stdin is /dev/null. */
int et_testbed_run_argv(char *const *argv, int quiet, char *capture, size_t cap, et_err *e);

/*
 * Calibration: what the containers really deliver for one plan's work
 * (docs/TESTBED.md "Calibration"), so that the virtual clock's prediction can
 * be made for the servers and links the test bed really is.
 *
 * One MPI job across the containers, placed exactly as the training job of
 * the plan (rank 0, the controller, on the first server; each worker rank in
 * its server's container), runs `edgetrain testbed calibrate-ranks`:
 *   compute  every worker rank builds its own shard of the model (its
 *            stage's layers, embedding, head, its tensor-parallel slice) and,
 *            all ranks at once under their containers' CPU caps, times
 *            forward+backward of one micro-batch of the plan's shape, the
 *            forward alone, and the optimizer step (zero grad, norm, AdamW),
 *            each over a window of `seconds` in 5 parts of many CFS periods,
 *            the median part (robust to a burst of other load);
 *            Then each tensor-parallel group runs forward+backward again with
 *            its real all-reduces (MPI over the containers, as the training
 *            step runs them);
 *   links    for every pair of servers with ranks, one rank on each measures
 *            the median 1-byte round trip and the median time of a message of
 *            the plan's boundary size (4*B*T*C bytes, also the size of a
 *            tensor-parallel all-reduce) each way, answered by one byte.
 * From these, per server: gflops = the cost model's FLOPs of its ranks' work
 * per step (M micro-batches forward+backward, and the optimizer's memory
 * traffic at CM_FLOP_PER_BYTE) over the measured seconds, so that the cost
 * model reproduces the measured compute time; per pair: latency = rtt/2,
 * bandwidth = bytes / (mean one-way time - rtt); for a pair inside a TP
 * group the bandwidth instead makes the cost model's ring all-reduce take
 * what one all-reduce took inside the stage ((forward+backward with them -
 * the slowest member's without) / (4 per layer)). Never better than the
 * config's link (a shaped link cannot beat its shaping; a measurement that
 * does is noise). Waiting ranks sleep instead of spinning, so that they take
 * no CPU from a rank that shares their container.
 */
typedef struct et_tb_cal_server {
    char name[ET_NAME_MAX];
    int ranks;               /* worker ranks of the plan on it; 0: not measured */
    double cpus;             /* its container's CPU share */
    double gflops_config;    /* the config's */
    double gflops;           /* calibrated (= the config's when not measured) */
    double fb_s;             /* one micro-batch forward + backward, mean over its ranks */
    double fwd_s;            /* one micro-batch forward alone */
    double opt_s;            /* one optimizer step */
    double fbtp_s;           /* forward + backward with the real TP all-reduces (NAN: no TP group) */
    double model_fb_s;       /* what the cost model charges for fb_s at the config's gflops */
} et_tb_cal_server;

typedef struct et_tb_cal_link {
    int a, b;                /* server indices, a < b */
    double bytes;            /* size of the large messages */
    double rtt_s;            /* median 1-byte round trip */
    double ab_s, ba_s;       /* median time of `bytes` a -> b (b -> a) answered by 1 byte (NAN: not measured) */
    double ar_s;             /* a and b in one TP group of ar_p ranks: one all-reduce of `bytes`
                                inside the stage's forward/backward, as measured there (NAN: none) */
    int ar_p;
    et_link config;          /* the config's link between a and b */
    et_link calibrated;
} et_tb_cal_link;

/* A calibration (owned by the caller; et_tb_cal_free). */
typedef struct et_tb_cal {
    char testbed[ET_TB_NAME_MAX + 1];
    char fingerprint[17];    /* of the test bed that was measured */
    char plan_sig[17];       /* of the work measured (et_tb_cal_plan_sig) */
    double when;             /* realtime of the measurement, seconds since the epoch */
    double load1;            /* the host's 1-minute load average just before it */
    double seconds;          /* window of each compute loop */
    double cpu_scale;        /* the test bed's factor on every CPU share */
    double t_begin, t_end;   /* realtime of the compute phase */
    double others_cores;     /* cores other work on the host used meanwhile (NAN: unknown) */
    int tries;               /* calibrations made: one more after each disturbed one (at most 3) */
    int micro_batch, seq_len, micro_batches;
    int n_servers;           /* the config's servers, in config order */
    et_tb_cal_server *srv;
    int n_links;
    et_tb_cal_link *link;
} et_tb_cal;

/* Calibrate the test bed of cfg (up, with containers, made from cfg's
 * cluster) for plan: run the job above (its stderr goes to ours; progress to
 * log, may be NULL), derive the figures, store them in the test bed's state
 * ($EDGETRAIN_TESTBED_RUN/T/calibration) and fill *out. seconds > 0 (2 is
 * plenty). Other work on the host only slows a calibration: one during
 * whose compute phase it used 0.25 cores or more (et_testbed_monitor) is
 * made again, up to 3 in all, and the quietest kept. ET_ERUNTIME when the
 * test bed is not usable or the job fails. */
int et_testbed_calibrate(const et_config *cfg, const et_plan *plan, double seconds, FILE *log,
                         et_tb_cal *out, et_err *e);
void et_tb_cal_free(et_tb_cal *c);

/* Hex digest of what a calibration measures for (cfg's model, the plan's
 * shapes, stages, TP degrees and servers) into out. */
void et_tb_cal_plan_sig(const et_config *cfg, const et_plan *plan, char out[17]);

/* Write a calibration as text (the state file's and the run directory's
 * calibration.txt format, "key value" lines) to path, atomically. */
int et_tb_cal_save(const et_tb_cal *c, const et_config *cfg, const char *path, et_err *e);
/* Read it back. The servers are matched to cfg's by name (order and gflops_config
 * from cfg). ET_EINPUT "path:line: what" when it is damaged or names servers
 * cfg does not have. */
int et_tb_cal_load(const char *path, const et_config *cfg, et_tb_cal *out, et_err *e);
/* The calibration stored in test bed `name`'s state, if any matches
 * fingerprint-wise the test bed that is up now and plan_sig: 1 (filled), 0
 * (none or stale), -1 with e set when it is damaged. */
int et_testbed_stored_calibration(const char *name, const et_config *cfg, const char *plan_sig,
                                  et_tb_cal *out, et_err *e);

/* A copy of cluster in with the calibrated gflops, and with links != 0 also
 * the calibrated links of every measured pair. out owns its arrays: free
 * with et_tb_cal_cluster_free. */
void et_tb_cal_cluster(const et_tb_cal *c, const et_cluster *in, int links, et_cluster *out);
void et_tb_cal_cluster_free(et_cluster *out);

/* Write the calibrated config: a YAML that includes the config (by absolute
 * path) and re-profiles its measured servers and pairs, atomically to path.
 * `edgetrain plan PATH` then predicts for the test bed as it is. */
int et_tb_cal_write_config(const et_tb_cal *c, const et_config *cfg, const char *path, et_err *e);

/* Predicted step times of plan (the cost model, i.e. the virtual clock's
 * simulation of the same schedule): out[0] with the config's cluster, out[1]
 * with the calibrated gflops, out[2] with the calibrated gflops and links. */
void et_tb_cal_predict(const et_tb_cal *c, const et_config *cfg, const et_plan *plan, double out[3]);

/* What the controller's messages add to every step the run measures, which
 * the virtual clock does not charge (it starts every rank's step at the
 * controller's time and reads their clocks for free): the step command
 * reaching the farthest worker and the farthest worker's report coming
 * back, i.e. the largest calibrated latency from the controller's server
 * (the config's first) to a worker's server plus the largest back. */
double et_tb_cal_control_s(const et_tb_cal *c, const et_config *cfg, const et_plan *plan);

/* The calibration as two tables (servers; measured pairs) and the plan's
 * three predictions, to out. */
void et_tb_cal_print(const et_tb_cal *c, const et_config *cfg, const et_plan *plan, FILE *out);

/* Where the host's CPU goes during a test bed run: a thread samples every
 * period_s the host's busy time (/proc/stat), the test bed's containers'
 * (their cgroups) and the link emulator's, and writes csv_path:
 *   realtime,host_cores,testbed_cores,linkemu_cores,others_cores
 * one row per interval (cores used on average over it; others = host -
 * containers - link emulator: everybody else's work, which slows a run but
 * is no part of the test bed), and a last line "# stopped REALTIME" from
 * et_testbed_monitor_stop. NULL with e set when the test bed is not up or
 * the file cannot be written. */
typedef struct et_tb_monitor et_tb_monitor;
et_tb_monitor *et_testbed_monitor_start(const char *name, const char *csv_path, double period_s, et_err *e);
void et_testbed_monitor_stop(et_tb_monitor *m);

/* The rank side of the calibration job, `edgetrain testbed calibrate-ranks
 * CONFIG PLAN SECONDS` under mpirun: MPI_Init, measure, rank 0 prints the
 * "etb-calib" lines on stdout, MPI_Finalize. Returns the exit code. */
int et_testbed_calibrate_ranks(const char *config, const char *plan, double seconds);

#endif
