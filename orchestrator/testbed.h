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

#endif
