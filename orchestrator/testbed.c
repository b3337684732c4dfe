/*
 * testbed — the real edge test bed on one machine: network namespaces joined
 * by the link emulator, one podman container per server, a launcher
 * namespace for mpirun (see testbed.h for the names and docs/TESTBED.md for
 * the user's view).
 *
 * Every external command (ip, podman, the image script, linkemu) runs through
 * run_cmd: fork + execvp of an argv array, never a shell. Namespace work that
 * needs no command (sysctls inside a namespace, the launcher's UTS namespace,
 * the measurements of `verify`) is done here with setns(2).
 *
 * The state directory holds a state file written before anything is created
 * (status "creating") and rewritten once all is up (status "up"), so `down`
 * always knows what to remove, even after a crash half way.
 *
 * Also here: the calibration (an MPI job across the containers that measures
 * what they deliver for a plan's work, and what they make of its messages;
 * testbed.h) and the host CPU monitor of a test bed run.
 */
#include "testbed.h"
#include "launch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "../common/et_stats.h"
#include "../model/gpt2.h"
#include "../model/optim.h"
#include "../parallel/pingpong.h"
#include "../workers/trainer.h"
#include "costmodel.h"

#define TB_STATE_VERSION 1
/* Bumped whenever what `up` makes from the same state changes (container
 * options, namespace setup): part of the fingerprint, so `up` remakes. */
#define TB_RECIPE 5
#define TB_RUNTIME_MEM (256ull << 20)   /* added to each server's memory for MPI and the runtime */
#define TB_MIN_CPUS 0.01                /* podman's --cpus lower bound (1 ms per 100 ms) */
/* Kept free for the link emulator, the kernel's network stack and the
 * launcher: linkemu alone used 0.29 cores on average (more in bursts) while
 * the demo trained across 1.8 cores of containers on a 2-core host, which
 * then could not give every container its share. */
#define TB_RESERVED_CORES 0.4
#define TB_CPU_WEIGHT 8192              /* CFS weight of each container (a plain process has 1024) */
#define TB_LAUNCHER_HOST "etb-launcher"
#define TB_LABEL "edgetrain.testbed"

/* ------------------------------------------------------------------ paths */

/* Runtime root: $EDGETRAIN_TESTBED_RUN or /run/edgetrain-testbed. Static
 * string, not to be freed. */
static const char *run_root(void)
{
    const char *v = getenv("EDGETRAIN_TESTBED_RUN");
    return v && *v ? v : "/run/edgetrain-testbed";
}

/* Persistent root (image cache, podman storage): $EDGETRAIN_TESTBED_DIR or
 * /var/lib/edgetrain-testbed. */
static const char *data_root(void)
{
    const char *v = getenv("EDGETRAIN_TESTBED_DIR");
    return v && *v ? v : "/var/lib/edgetrain-testbed";
}

/* Absolute path of the running edgetrain binary into out (cap bytes). */
static int self_exe(char *out, size_t cap)
{
    ssize_t r = readlink("/proc/self/exe", out, cap - 1);
    if (r <= 0 || (size_t)r >= cap - 1)
        return -1;
    out[r] = 0;
    return 0;
}

/* The repository's directory: the parent of the directory holding the
 * binary (build/edgetrain -> repo), or $EDGETRAIN_HOME. */
static int repo_root(char *out, size_t cap)
{
    const char *v = getenv("EDGETRAIN_HOME");
    if (v && *v) {
        snprintf(out, cap, "%s", v);
        return 0;
    }
    if (self_exe(out, cap) < 0)
        return -1;
    for (int k = 0; k < 2; k++) {
        char *slash = strrchr(out, '/');
        if (!slash || slash == out)
            return -1;
        *slash = 0;
    }
    return 0;
}

/* Path of scripts/testbed/<file> in the repository. */
static int script_path(const char *file, char *out, size_t cap, et_err *e)
{
    char repo[ET_PATH_MAX];
    if (repo_root(repo, sizeof repo) < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: cannot locate the repository (set EDGETRAIN_HOME)");
    if ((size_t)snprintf(out, cap, "%s/scripts/testbed/%s", repo, file) >= cap)
        return et_errf(e, ET_ERUNTIME, "testbed: repository path too long");
    if (access(out, R_OK) != 0)
        return et_errf(e, ET_ERUNTIME, "testbed: %s is missing (set EDGETRAIN_HOME to the repository)", out);
    return 0;
}

/* Path of the link emulator: $EDGETRAIN_LINKEMU, else tools/linkemu beside
 * the running binary (build/tools/linkemu). */
static int linkemu_path(char *out, size_t cap, et_err *e)
{
    const char *v = getenv("EDGETRAIN_LINKEMU");
    if (v && *v) {
        snprintf(out, cap, "%s", v);
    } else {
        if (self_exe(out, cap) < 0)
            return et_errf(e, ET_ERUNTIME, "testbed: cannot read /proc/self/exe");
        char *slash = strrchr(out, '/');
        if (!slash)
            return et_errf(e, ET_ERUNTIME, "testbed: odd binary path '%s'", out);
        size_t used = (size_t)(slash - out) + 1;
        if (used + 14 >= cap)
            return et_errf(e, ET_ERUNTIME, "testbed: binary path too long");
        snprintf(slash + 1, cap - used, "tools/linkemu");
    }
    if (access(out, X_OK) != 0)
        return et_errf(e, ET_ERUNTIME, "testbed: link emulator %s is missing (run make)", out);
    return 0;
}

/* Directory of test bed `name` in the runtime root. */
static void tb_dir(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", run_root(), name);
}

/* File `file` in test bed name's directory. */
static void tb_file(const char *name, const char *file, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s/%s", run_root(), name, file);
}

/* The test bed's shared directory: files the host writes for the ranks (the
 * calibration job's plan), bind-mounted read-only into every container at
 * the same path. */
static void tb_share_dir(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s/share", run_root(), name);
}

/* Network namespace name of server s (or of the launcher when s is NULL). */
static void ns_name(const char *tb, const char *s, char *out, size_t cap)
{
    if (s)
        snprintf(out, cap, "etb-%s-s-%s", tb, s);
    else
        snprintf(out, cap, "etb-%s-launcher", tb);
}

/* Container name of server s. */
static void ctr_name(const char *tb, const char *s, char *out, size_t cap)
{
    snprintf(out, cap, "etb-%s-%s", tb, s);
}

/* mkdir -p of path with mode; 0 or -1 (errno set). */
static int mkdirs(const char *path, mode_t mode)
{
    char tmp[ET_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Write text to path through a temporary name and a rename. */
static int write_file_atomic(const char *path, const char *text, et_err *e)
{
    char tmp[ET_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", tmp, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", path, strerror(errno));
    }
    return 0;
}

/* ------------------------------------------------------- running commands */

/*
 * Run argv (fork + execvp, no shell) and wait for it. Its stdout goes to
 * out (up to out_cap-1 bytes, NUL-terminated; the rest is read and dropped)
 * or /dev/null; its stderr to our stderr when show is set, else its last
 * err_cap-1 bytes to err (or /dev/null). Returns the exit status (128+signal
 * if killed), or -1 with e set when the program cannot be started.
 */
static int run_cmd(char *const *argv, int show, char *out, size_t out_cap, char *err,
                   size_t err_cap, et_err *e)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, px[2] = {-1, -1};
    if (!out_cap)
        out = NULL;
    if (!err_cap)
        err = NULL;
    if (out)
        out[0] = 0;
    if (err)
        err[0] = 0;
    if ((out && pipe2(po, O_CLOEXEC) < 0) || (!show && err && pipe2(pe, O_CLOEXEC) < 0) ||
        pipe2(px, O_CLOEXEC) < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: pipe failed (%s)", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: fork failed (%s)", strerror(errno));
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(out ? po[1] : devnull, 1);
        if (!show)
            dup2(err ? pe[1] : devnull, 2);
        execvp(argv[0], argv);
        int code = errno;
        if (write(px[1], &code, sizeof code) < 0)
            _exit(127);
        _exit(127);
    }
    close(px[1]);
    if (po[1] >= 0)
        close(po[1]);
    if (pe[1] >= 0)
        close(pe[1]);
    size_t no = 0, ne = 0;
    struct pollfd pf[2];
    int open_fds = (po[0] >= 0) + (pe[0] >= 0);
    char chunk[4096];
    while (open_fds > 0) {
        int k = 0;
        if (po[0] >= 0)
            pf[k++] = (struct pollfd){.fd = po[0], .events = POLLIN};
        if (pe[0] >= 0)
            pf[k++] = (struct pollfd){.fd = pe[0], .events = POLLIN};
        if (poll(pf, (nfds_t)k, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < k; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(pf[i].fd, chunk, sizeof chunk);
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                close(pf[i].fd);
                if (pf[i].fd == po[0])
                    po[0] = -1;
                else
                    pe[0] = -1;
                open_fds--;
                continue;
            }
            if (pf[i].fd == po[0]) {
                size_t take = (size_t)r;
                if (no + take > out_cap - 1)
                    take = out_cap - 1 - no;
                memcpy(out + no, chunk, take);
                no += take;
                out[no] = 0;
            } else {
                /* Keep the tail: shift out the oldest bytes. */
                size_t r2 = (size_t)r, keep = err_cap - 1;
                if (r2 >= keep) {
                    memcpy(err, chunk + r2 - keep, keep);
                    ne = keep;
                } else {
                    if (ne + r2 > keep) {
                        size_t drop = ne + r2 - keep;
                        memmove(err, err + drop, ne - drop);
                        ne -= drop;
                    }
                    memcpy(err + ne, chunk, r2);
                    ne += r2;
                }
                err[ne] = 0;
            }
        }
    }
    int code = 0;
    ssize_t got = read(px[0], &code, sizeof code);
    close(px[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (got == (ssize_t)sizeof code)
        return et_errf(e, ET_ERUNTIME, "testbed: cannot run '%s' (%s%s)", argv[0], strerror(code),
                       code == ENOENT ? "; is it installed?" : "");
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* Public form of run_cmd (testbed.h): stdout to capture, stderr shown
 * unless quiet. */
int et_testbed_run_argv(char *const *argv, int quiet, char *capture, size_t cap, et_err *e)
{
    return run_cmd(argv, !quiet, capture, cap, NULL, 0, e);
}

/* A growable argv (NULL-ended); strings are copied, owned by the argv. */
typedef struct argvec {
    char **v;
    int n, cap;
} argvec;

/* Append a copy of s. */
static void av_push(argvec *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? 2 * a->cap : 16;
        a->v = et_xrealloc(a->v, (size_t)a->cap * sizeof *a->v);
    }
    a->v[a->n++] = et_xstrdup(s);
    a->v[a->n] = NULL;
}

/* Append a printf-formatted string. */
static void av_pushf(argvec *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av_pushf(argvec *a, const char *fmt, ...)
{
    char buf[ET_PATH_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    av_push(a, buf);
}

/* Free every string and the array. */
static void av_free(argvec *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* Free a NULL-ended argv made by et_testbed_launch_argv (NULL is fine). */
void et_testbed_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

/* Join argv into one readable line (for messages). */
static void av_line(char *const *v, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; v[i] && k + 1 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? " " : "", v[i]);
}

/* Run a.v; a non-zero exit becomes an ET_ERUNTIME error naming the command
 * and the tail of what it printed. Returns 0 or -1. */
static int av_run(argvec *a, et_err *e)
{
    char err[600];
    int rc = run_cmd(a->v, 0, NULL, 0, err, sizeof err, e);
    if (rc < 0)
        return -1;
    if (rc != 0) {
        char line[400];
        av_line(a->v, line, sizeof line);
        for (char *p = err; *p; p++)
            if (*p == '\n')
                *p = ' ';
        return et_errf(e, ET_ERUNTIME, "testbed: '%s' failed (exit %d): %s", line, rc, err);
    }
    return 0;
}

/* Build an argv from the NULL-ended arguments, run it as av_run does. */
static int xrun(et_err *e, const char *arg0, ...)
{
    argvec a = {0};
    va_list ap;
    va_start(ap, arg0);
    for (const char *s = arg0; s; s = va_arg(ap, const char *))
        av_push(&a, s);
    va_end(ap);
    int rc = av_run(&a, e);
    av_free(&a);
    return rc;
}

/* The podman command line with the test bed's storage (see
 * scripts/testbed/podman.sh, which builds the same one) and
 * CONTAINERS_CONF set in our environment for it and the agent. */
static int podman_base(argvec *a, et_err *e)
{
    char conf[ET_PATH_MAX];
    if (script_path("containers.conf", conf, sizeof conf, e) < 0)
        return -1;
    setenv("CONTAINERS_CONF", conf, 1);
    av_push(a, "podman");
    av_push(a, "--root");
    av_pushf(a, "%s/podman/root", data_root());
    av_push(a, "--runroot");
    av_pushf(a, "%s/podman/runroot", run_root());
    av_push(a, "--tmpdir");
    av_pushf(a, "%s/podman/tmp", run_root());
    av_push(a, "--storage-driver");
    av_push(a, "overlay");
    return 0;
}

/* Is program `name` on PATH (or an existing path)? */
static int have_program(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0;
    const char *path = getenv("PATH");
    char buf[ET_PATH_MAX];
    if (!path)
        path = "/usr/bin:/bin:/usr/sbin:/sbin";
    for (const char *p = path; *p;) {
        const char *c = strchr(p, ':');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len && len < sizeof buf - 64) {
            snprintf(buf, sizeof buf, "%.*s/%s", (int)len, p, name);
            if (access(buf, X_OK) == 0)
                return 1;
        }
        p += len + (c ? 1 : 0);
    }
    return 0;
}

/* ------------------------------------------------------------- planning */

void et_testbed_opts_default(et_testbed_opts *o)
{
    memset(o, 0, sizeof *o);
    o->containers = 1;
    o->build_image = 1;
    o->fastest_cpus = 1.0;
    o->core_gflops = 0.0;
    o->host_cores = 0.0;
    o->mtu = 1500;
}

/* Config name -> test bed name (testbed.h): runs of other characters become
 * one '-', no leading or trailing '-'. */
void et_testbed_name_from(const char *cfg_name, char out[ET_TB_NAME_MAX + 1])
{
    size_t k = 0;
    for (const char *p = cfg_name ? cfg_name : ""; *p && k < ET_TB_NAME_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        char d = isalnum(c) ? (char)tolower(c) : '-';
        if (d == '-' && (k == 0 || out[k - 1] == '-'))
            continue;
        out[k++] = d;
    }
    while (k > 0 && out[k - 1] == '-')
        k--;
    out[k] = 0;
    if (k == 0)
        snprintf(out, ET_TB_NAME_MAX + 1, "edgetrain");
}

/* Is s a valid host name label (RFC 1123: 1..63 of [A-Za-z0-9-], not
 * starting or ending with '-')? */
static int valid_hostname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return 0;
    return 1;
}

/* 64-bit FNV-1a of text, as 16 hex digits. */
static void fnv_hex(const char *text, char out[17])
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* A growable text buffer for state files and tables. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

/* Append printf-formatted text. */
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0)
        return;
    if (b->n + (size_t)need + 1 > b->cap) {
        b->cap = (b->n + (size_t)need + 1) * 2;
        b->s = et_xrealloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* The cluster part of a test bed (servers, slots, links): what a config must
 * match for `run --testbed` to use it. */
static void cluster_text(const et_testbed *tb, sbuf *b)
{
    for (int i = 0; i < tb->n; i++)
        sb_printf(b, "server %s %d\n", tb->srv[i].name, tb->srv[i].slots);
    for (int i = 0; i < tb->n; i++)
        for (int j = 0; j < tb->n; j++)
            if (i != j)
                sb_printf(b, "link %d %d %.17g %.17g\n", i, j, tb->rate[i * tb->n + j],
                          tb->delay[i * tb->n + j]);
}

/* The full state text (fingerprinted, and written as the state file). */
static void state_text(const et_testbed *tb, const char *status, sbuf *b)
{
    sb_printf(b, "edgetrain-testbed %d\n", TB_STATE_VERSION);
    sb_printf(b, "recipe %d\n", TB_RECIPE);
    sb_printf(b, "name %s\nstatus %s\n", tb->name, status);
    sb_printf(b, "fingerprint %s\n", tb->fingerprint);
    sbuf c = {0};
    cluster_text(tb, &c);
    char cf[17];
    fnv_hex(c.s ? c.s : "", cf);
    free(c.s);
    sb_printf(b, "cluster %s\n", cf);
    sb_printf(b, "containers %d\nimage %s\nmtu %d\nhost_cores %.17g\ncpu_scale %.17g\n",
              tb->containers, tb->image[0] ? tb->image : "-", tb->mtu, tb->host_cores,
              tb->cpu_scale);
    for (int i = 0; i < tb->n_mounts; i++)
        sb_printf(b, "mount %s\n", tb->mounts[i]);
    sb_printf(b, "servers %d\n", tb->n);
    for (int i = 0; i < tb->n; i++)
        sb_printf(b, "server %s %s %.17g %llu %d\n", tb->srv[i].name, tb->srv[i].addr,
                  tb->srv[i].cpus, (unsigned long long)tb->srv[i].memory, tb->srv[i].slots);
    for (int i = 0; i < tb->n; i++)
        for (int j = 0; j < tb->n; j++)
            if (i != j)
                sb_printf(b, "link %d %d %.17g %.17g\n", i, j, tb->rate[i * tb->n + j],
                          tb->delay[i * tb->n + j]);
}

/* Fingerprint of everything the test bed is made of (status excluded). */
static void compute_fingerprint(et_testbed *tb)
{
    memset(tb->fingerprint, '0', 16);
    tb->fingerprint[16] = 0;
    sbuf b = {0};
    state_text(tb, "-", &b);
    fnv_hex(b.s, tb->fingerprint);
    free(b.s);
}

/* Fingerprint of the cluster part only. */
static void cluster_fingerprint(const et_testbed *tb, char out[17])
{
    sbuf c = {0};
    cluster_text(tb, &c);
    fnv_hex(c.s ? c.s : "", out);
    free(c.s);
}

/* An empty test bed of n servers (arrays zeroed). */
static et_testbed *tb_alloc(int n)
{
    et_testbed *tb = et_xcalloc(1, sizeof *tb);
    tb->n = n;
    tb->srv = et_xcalloc((size_t)(n > 0 ? n : 1), sizeof *tb->srv);
    tb->rate = et_xcalloc((size_t)(n > 0 ? n * n : 1), sizeof *tb->rate);
    tb->delay = et_xcalloc((size_t)(n > 0 ? n * n : 1), sizeof *tb->delay);
    return tb;
}

/* Free a test bed from et_testbed_plan or et_testbed_load_state. */
void et_testbed_free(et_testbed *tb)
{
    if (!tb)
        return;
    free(tb->srv);
    free(tb->rate);
    free(tb->delay);
    free(tb);
}

/*
 * CPU shares (docs/TESTBED.md "CPU shares"): relative mapping
 * cpus_i = fastest_cpus * gflops_i / max gflops, or absolute mapping
 * cpus_i = gflops_i / core_gflops; then, when the shares add up to more than
 * the host's cores minus TB_RESERVED_CORES, all are scaled by the same factor
 * (cpu_scale < 1) so that every container can get its share at once; each is
 * at least TB_MIN_CPUS and at most the host's cores.
 */
et_testbed *et_testbed_plan(const et_cluster *c, const char *cfg_name, const et_testbed_opts *o,
                            et_err *e)
{
    if (!c || c->n_servers < 1) {
        et_errf(e, ET_EINPUT, "testbed: the config has no servers");
        return NULL;
    }
    if (c->n_servers > ET_TB_MAX_SERVERS) {
        et_errf(e, ET_EINPUT, "testbed: %d servers, at most %d fit the test bed's subnet %s",
                c->n_servers, ET_TB_MAX_SERVERS, ET_TB_SUBNET);
        return NULL;
    }
    if (!(o->fastest_cpus > 0) || !(o->core_gflops >= 0) || !(o->host_cores >= 0) ||
        o->mtu < 576 || o->mtu > 65535) {
        et_errf(e, ET_EINPUT, "testbed: options out of range (cpus > 0, core GFLOP/s >= 0, 576 <= mtu <= 65535)");
        return NULL;
    }
    for (int i = 0; i < c->n_servers; i++) {
        const et_server *s = &c->servers[i];
        if (!valid_hostname(s->name) || !strcmp(s->name, "localhost") ||
            !strcmp(s->name, TB_LAUNCHER_HOST)) {
            et_errf(e, ET_EINPUT,
                    "server '%s' (line %d:%d): a test bed server's name becomes its container's "
                    "host name (letters, digits and '-', at most 63, not 'localhost' or '%s')",
                    s->name, s->line, s->col, TB_LAUNCHER_HOST);
            return NULL;
        }
        if (!(s->gflops > 0) || s->slots < 1) {
            et_errf(e, ET_EINPUT, "server '%s' (line %d:%d): needs gflops > 0 and slots >= 1",
                    s->name, s->line, s->col);
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (!strcasecmp(c->servers[j].name, s->name)) {
                et_errf(e, ET_EINPUT, "server '%s' (line %d:%d): host names are case-insensitive, "
                        "'%s' is the same", s->name, s->line, s->col, c->servers[j].name);
                return NULL;
            }
    }
    et_testbed *tb = tb_alloc(c->n_servers);
    if (o->name[0])
        et_testbed_name_from(o->name, tb->name);
    else
        et_testbed_name_from(cfg_name, tb->name);
    tb->mtu = o->mtu;
    tb->containers = o->containers;
    tb->host_cores = o->host_cores > 0 ? o->host_cores : (double)sysconf(_SC_NPROCESSORS_ONLN);
    if (tb->host_cores < 1)
        tb->host_cores = 1;
    tb->n_mounts = o->n_mounts;
    for (int i = 0; i < o->n_mounts; i++)
        memcpy(tb->mounts[i], o->mounts[i], sizeof tb->mounts[i]);

    double gmax = 0;
    for (int i = 0; i < c->n_servers; i++)
        gmax = fmax(gmax, c->servers[i].gflops);
    double sum = 0;
    for (int i = 0; i < tb->n; i++) {
        const et_server *s = &c->servers[i];
        et_testbed_server *t = &tb->srv[i];
        snprintf(t->name, sizeof t->name, "%s", s->name);
        snprintf(t->addr, sizeof t->addr, "10.78.0.%u", (unsigned)(uint8_t)(i + 1));
        t->slots = s->slots;
        t->memory = s->memory + TB_RUNTIME_MEM;
        t->cpus = o->core_gflops > 0 ? s->gflops / o->core_gflops
                                     : o->fastest_cpus * s->gflops / gmax;
        sum += t->cpus;
    }
    double usable = fmax(tb->host_cores - TB_RESERVED_CORES, 0.5);
    tb->cpu_scale = sum > usable ? usable / sum : 1.0;
    for (int i = 0; i < tb->n; i++) {
        double v = tb->srv[i].cpus * tb->cpu_scale;
        v = fmin(fmax(v, TB_MIN_CPUS), tb->host_cores);
        tb->srv[i].cpus = round(v * 1000.0) / 1000.0;
    }
    for (int i = 0; i < tb->n; i++)
        for (int j = 0; j < tb->n; j++) {
            if (i == j)
                continue;
            et_link l = et_cluster_link(c, i, j);
            tb->rate[i * tb->n + j] = isfinite(l.bandwidth) ? l.bandwidth : 0.0;
            tb->delay[i * tb->n + j] = l.latency;
        }
    compute_fingerprint(tb);
    return tb;
}

/* ------------------------------------------------------------ state file */

/*
 * Parse the state file at path. With require_up, a status other than "up"
 * is an error. *status (may be NULL, 32 bytes) receives the status. Returns
 * a new et_testbed, or NULL with e set.
 */
static et_testbed *parse_state(const char *path, const char *name, int require_up, char *status_out,
                               et_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        et_errf(e, ET_ERUNTIME, "testbed '%s' is not up (no %s; run 'edgetrain testbed up CONFIG')",
                name, path);
        return NULL;
    }
    char line[ET_PATH_MAX + 64];
    et_testbed *tb = NULL;
    int si = 0, lineno = 0, bad = 0;
    char status[32] = "";
    et_testbed hdr;
    memset(&hdr, 0, sizeof hdr);
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char key[32];
        int off = 0;
        if (sscanf(line, "%31s %n", key, &off) != 1)
            continue;
        const char *val = line + off;
        if (!strcmp(key, "edgetrain-testbed")) {
            if (atoi(val) != TB_STATE_VERSION)
                bad = lineno;
        } else if (!strcmp(key, "recipe")) {
            hdr.recipe = atoi(val);
        } else if (!strcmp(key, "name")) {
            snprintf(hdr.name, sizeof hdr.name, "%s", val);
        } else if (!strcmp(key, "status")) {
            snprintf(status, sizeof status, "%s", val);
        } else if (!strcmp(key, "fingerprint")) {
            snprintf(hdr.fingerprint, sizeof hdr.fingerprint, "%s", val);
        } else if (!strcmp(key, "containers")) {
            hdr.containers = atoi(val);
        } else if (!strcmp(key, "image")) {
            snprintf(hdr.image, sizeof hdr.image, "%s", strcmp(val, "-") ? val : "");
        } else if (!strcmp(key, "mtu")) {
            hdr.mtu = atoi(val);
        } else if (!strcmp(key, "host_cores")) {
            hdr.host_cores = atof(val);
        } else if (!strcmp(key, "cpu_scale")) {
            hdr.cpu_scale = atof(val);
        } else if (!strcmp(key, "mount")) {
            if (hdr.n_mounts < ET_TB_MAX_MOUNTS)
                snprintf(hdr.mounts[hdr.n_mounts++], ET_PATH_MAX, "%s", val);
        } else if (!strcmp(key, "servers")) {
            int n = atoi(val);
            if (tb || n < 1 || n > ET_TB_MAX_SERVERS) {
                bad = lineno;
                break;
            }
            tb = tb_alloc(n);
        } else if (!strcmp(key, "server")) {
            if (!tb || si >= tb->n) {
                bad = lineno;
                break;
            }
            et_testbed_server *s = &tb->srv[si];
            unsigned long long mem;
            if (sscanf(val, "%63s %15s %lf %llu %d", s->name, s->addr, &s->cpus, &mem, &s->slots) != 5) {
                bad = lineno;
                break;
            }
            s->memory = mem;
            si++;
        } else if (!strcmp(key, "link")) {
            int a, b;
            double r, d;
            if (!tb || sscanf(val, "%d %d %lf %lf", &a, &b, &r, &d) != 4 || a < 0 || b < 0 ||
                a >= tb->n || b >= tb->n) {
                bad = lineno;
                break;
            }
            tb->rate[a * tb->n + b] = r;
            tb->delay[a * tb->n + b] = d;
        }
    }
    fclose(f);
    if (bad || !tb || si != tb->n) {
        et_testbed_free(tb);
        et_errf(e, ET_ERUNTIME, "%s:%d: damaged test bed state (take it down with "
                "'edgetrain testbed down --name %s')", path, bad, name);
        return NULL;
    }
    snprintf(tb->name, sizeof tb->name, "%s", hdr.name);
    snprintf(tb->fingerprint, sizeof tb->fingerprint, "%s", hdr.fingerprint);
    snprintf(tb->image, sizeof tb->image, "%s", hdr.image);
    tb->containers = hdr.containers;
    tb->mtu = hdr.mtu;
    tb->host_cores = hdr.host_cores;
    tb->cpu_scale = hdr.cpu_scale;
    tb->recipe = hdr.recipe;
    tb->n_mounts = hdr.n_mounts;
    memcpy(tb->mounts, hdr.mounts, sizeof tb->mounts);
    if (status_out)
        snprintf(status_out, 32, "%s", status);
    if (require_up && strcmp(status, "up") != 0) {
        et_errf(e, ET_ERUNTIME, "testbed '%s' is not fully up (status '%s'; run "
                "'edgetrain testbed up CONFIG' again or take it down)", name, status);
        et_testbed_free(tb);
        return NULL;
    }
    return tb;
}

/* The state of test bed name, which must be "up" (testbed.h). */
et_testbed *et_testbed_load_state(const char *name, et_err *e)
{
    char path[ET_PATH_MAX];
    tb_file(name, "state", path, sizeof path);
    return parse_state(path, name, 1, NULL, e);
}

/* Read the state file whatever its status (for down and status); NULL when
 * there is none or it is unreadable. */
static et_testbed *load_state_any(const char *name, char *status)
{
    char path[ET_PATH_MAX];
    tb_file(name, "state", path, sizeof path);
    et_err e2;
    et_err_clear(&e2);
    return parse_state(path, name, 0, status, &e2);
}

/* Write tb's state file with the given status. */
static int save_state(const et_testbed *tb, const char *status, et_err *e)
{
    char path[ET_PATH_MAX];
    tb_file(tb->name, "state", path, sizeof path);
    sbuf b = {0};
    state_text(tb, status, &b);
    int rc = write_file_atomic(path, b.s, e);
    free(b.s);
    return rc;
}

/* ------------------------------------------------------ namespace helpers */

/* Does /run/netns/<ns> exist? */
static int netns_exists(const char *ns)
{
    char p[ET_PATH_MAX];
    snprintf(p, sizeof p, "/run/netns/%s", ns);
    return access(p, F_OK) == 0;
}

/* Write value to /proc/sys/<key> inside network namespace ns (setns there
 * and back; this process's other state is untouched). */
static int ns_sysctl(const char *ns, const char *key, const char *value, et_err *e)
{
    char p[ET_PATH_MAX];
    snprintf(p, sizeof p, "/run/netns/%s", ns);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (self < 0 || fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        int err = errno;
        if (self >= 0)
            close(self);
        if (fd >= 0)
            close(fd);
        return et_errf(e, ET_ERUNTIME, "testbed: cannot enter %s (%s)", p, strerror(err));
    }
    close(fd);
    char sp[256];
    snprintf(sp, sizeof sp, "/proc/sys/%s", key);
    int rc = 0;
    int w = open(sp, O_WRONLY | O_CLOEXEC);
    if (w < 0 || write(w, value, strlen(value)) < 0)
        rc = et_errf(e, ET_ERUNTIME, "testbed: cannot set %s in %s (%s)", sp, ns, strerror(errno));
    if (w >= 0)
        close(w);
    if (setns(self, CLONE_NEWNET) < 0)
        rc = et_errf(e, ET_ERUNTIME, "testbed: cannot return to our network namespace (%s)",
                     strerror(errno));
    close(self);
    return rc;
}

/* Create namespace ns with lo up and the TUN device ET_TB_IFNAME holding
 * addr/24 (every test bed address goes through it), MTU mtu, and TCP tuned
 * like a long-lived link (no slow start after idle). */
static int make_node_ns(const char *ns, const char *addr, int mtu, et_err *e)
{
    char mtus[16], cidr[32];
    snprintf(mtus, sizeof mtus, "%d", mtu);
    snprintf(cidr, sizeof cidr, "%s/24", addr);
    if (xrun(e, "ip", "netns", "add", ns, NULL) < 0 ||
        xrun(e, "ip", "-n", ns, "link", "set", "lo", "up", NULL) < 0 ||
        xrun(e, "ip", "-n", ns, "tuntap", "add", "dev", ET_TB_IFNAME, "mode", "tun", NULL) < 0 ||
        xrun(e, "ip", "-n", ns, "link", "set", ET_TB_IFNAME, "mtu", mtus, "txqueuelen", "1000", NULL) < 0 ||
        xrun(e, "ip", "-n", ns, "addr", "add", cidr, "dev", ET_TB_IFNAME, NULL) < 0 ||
        xrun(e, "ip", "-n", ns, "link", "set", ET_TB_IFNAME, "up", NULL) < 0)
        return -1;
    /* IPv6 would only add router solicitations the emulator drops. */
    if (ns_sysctl(ns, "net/ipv6/conf/" ET_TB_IFNAME "/disable_ipv6", "1", NULL) < 0) {
        /* A kernel without IPv6 has no such file: nothing to disable. */
    }
    return ns_sysctl(ns, "net/ipv4/tcp_slow_start_after_idle", "0", e);
}

/* Is pid alive and not a zombie? */
/* Read /proc/PID/WHAT into buf (NUL-terminated); bytes read, or -1. */
static long read_proc(pid_t pid, const char *what, char *buf, size_t len)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/%s", (int)pid, what);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    size_t r = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[r] = 0;
    return (long)r;
}

static int pid_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) < 0)
        return 0;
    char buf[512];
    if (read_proc(pid, "stat", buf, sizeof buf) < 0)
        return 0;
    char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* Does pid's command line contain arg `needle` (an exact argument)? Used to
 * make sure a pid file still names our link emulator before killing. */
static int pid_has_arg(pid_t pid, const char *needle)
{
    char buf[8192];
    long n = read_proc(pid, "cmdline", buf, sizeof buf);
    if (n < 0)
        return 0;
    size_t r = (size_t)n;
    for (size_t i = 0; i < r; i += strlen(buf + i) + 1)
        if (!strcmp(buf + i, needle))
            return 1;
    return 0;
}

/* The link emulator's pid from its pid file, or 0. */
static pid_t linkemu_pid(const char *name)
{
    char p[ET_PATH_MAX];
    tb_file(name, "linkemu.pid", p, sizeof p);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    long v = 0;
    if (fscanf(f, "%ld", &v) != 1)
        v = 0;
    fclose(f);
    return (pid_t)v;
}

/* Is the link emulator of test bed name running (pid file, alive, and its
 * command line names our table)? Returns its pid or 0. */
static pid_t linkemu_running(const char *name)
{
    pid_t pid = linkemu_pid(name);
    char table[ET_PATH_MAX];
    tb_file(name, "links.tab", table, sizeof table);
    if (pid > 0 && pid_alive(pid) && pid_has_arg(pid, table))
        return pid;
    return 0;
}

/* The link table for linkemu: every server and the launcher, the config's
 * rate and delay per ordered server pair, the launcher's links unshaped. */
static void links_table(const et_testbed *tb, sbuf *b)
{
    char ns[128];
    sb_printf(b, "# written by edgetrain testbed up for test bed '%s'\nmtu %d\n", tb->name, tb->mtu);
    for (int i = 0; i < tb->n; i++) {
        ns_name(tb->name, tb->srv[i].name, ns, sizeof ns);
        sb_printf(b, "node %s /run/netns/%s %s %s\n", tb->srv[i].name, ns, ET_TB_IFNAME, tb->srv[i].addr);
    }
    ns_name(tb->name, NULL, ns, sizeof ns);
    sb_printf(b, "node %s /run/netns/%s %s %s\n", TB_LAUNCHER_HOST, ns, ET_TB_IFNAME, ET_TB_LAUNCHER_ADDR);
    for (int i = 0; i < tb->n; i++)
        for (int j = 0; j < tb->n; j++)
            if (i != j)
                sb_printf(b, "link %s %s %.17g %.17g\n", tb->srv[i].name, tb->srv[j].name,
                          tb->rate[i * tb->n + j], tb->delay[i * tb->n + j]);
}

/* Start the link emulator detached (own session, output to linkemu.log) and
 * wait until it reports every TUN attached. Writes linkemu.pid. */
static int start_linkemu(const et_testbed *tb, et_err *e)
{
    char exe[ET_PATH_MAX], table[ET_PATH_MAX], logp[ET_PATH_MAX], stats[ET_PATH_MAX], pidp[ET_PATH_MAX];
    if (linkemu_path(exe, sizeof exe, e) < 0)
        return -1;
    tb_file(tb->name, "links.tab", table, sizeof table);
    tb_file(tb->name, "linkemu.log", logp, sizeof logp);
    tb_file(tb->name, "linkemu.stats", stats, sizeof stats);
    tb_file(tb->name, "linkemu.pid", pidp, sizeof pidp);
    sbuf b = {0};
    links_table(tb, &b);
    int rc = write_file_atomic(table, b.s, e);
    free(b.s);
    if (rc < 0)
        return -1;
    int pr[2];
    if (pipe2(pr, O_CLOEXEC) < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: pipe failed (%s)", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: fork failed (%s)", strerror(errno));
    if (pid == 0) {
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (devnull < 0 || logfd < 0)
            _exit(126);
        dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        dup2(pr[1], 3);     /* dup2 clears close-on-exec on the copy */
        for (int fd = 4; fd < 1024; fd++)
            close(fd);
        char *argv[] = {exe, table, "--ready-fd", "3", "--stats", stats, NULL};
        execv(exe, argv);
        _exit(127);
    }
    close(pr[1]);
    struct pollfd pf = {.fd = pr[0], .events = POLLIN};
    char buf[16] = "";
    int ready = 0;
    if (poll(&pf, 1, 15000) > 0) {
        ssize_t r = read(pr[0], buf, sizeof buf - 1);
        ready = r >= 5 && !strncmp(buf, "ready", 5);
    }
    close(pr[0]);
    if (!ready) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        char tail[400] = "";
        FILE *f = fopen(logp, "r");
        if (f) {
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, sz > 300 ? sz - 300 : 0, SEEK_SET);
            size_t r = fread(tail, 1, sizeof tail - 1, f);
            tail[r] = 0;
            fclose(f);
            for (char *p = tail; *p; p++)
                if (*p == '\n')
                    *p = ' ';
        }
        return et_errf(e, ET_ERUNTIME, "testbed: the link emulator did not start: %s", tail);
    }
    char pids[32];
    snprintf(pids, sizeof pids, "%d\n", (int)pid);
    return write_file_atomic(pidp, pids, e);
}

/* Create the launcher's persistent UTS namespace (hostname etb-launcher),
 * bind-mounted on the file `uts` in the test bed's directory, so that
 * mpirun's host name is none of the servers'. */
static int make_launcher_uts(const char *name, et_err *e)
{
    char path[ET_PATH_MAX];
    tb_file(name, "uts", path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: cannot create %s (%s)", path, strerror(errno));
    close(fd);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: fork failed (%s)", strerror(errno));
    if (pid == 0) {
        if (unshare(CLONE_NEWUTS) < 0)
            _exit(10);
        if (sethostname(TB_LAUNCHER_HOST, strlen(TB_LAUNCHER_HOST)) < 0)
            _exit(11);
        if (mount("/proc/self/ns/uts", path, NULL, MS_BIND, NULL) < 0)
            _exit(12);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return et_errf(e, ET_ERUNTIME, "testbed: cannot make the launcher's UTS namespace at %s "
                       "(step %d; needs CAP_SYS_ADMIN)", path, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

/* Is path a mount point of its own (the UTS bind mount)? */
static int is_mounted(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char mp[ET_PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %1023s", mp) == 1 && !strcmp(mp, path))
            found = 1;
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------------ containers */

/* The image name from scripts/testbed/build-image.sh --print-name. */
static int image_name(char *out, size_t cap, et_err *e)
{
    char script[ET_PATH_MAX];
    if (script_path("build-image.sh", script, sizeof script, e) < 0)
        return -1;
    char *argv[] = {"bash", script, "--print-name", NULL};
    int rc = run_cmd(argv, 0, out, cap, NULL, 0, e);
    if (rc < 0)
        return -1;
    out[strcspn(out, "\n")] = 0;
    if (rc != 0 || !out[0])
        return et_errf(e, ET_ERUNTIME, "testbed: %s --print-name failed", script);
    return 0;
}

/* `podman KIND exists NAME` (KIND image or container): 1 if it exists, 0
 * if not, -1 when podman cannot be run. */
static int podman_exists(const char *kind, const char *name, et_err *e)
{
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, kind);
    av_push(&a, "exists");
    av_push(&a, name);
    int rc = run_cmd(a.v, 0, NULL, 0, NULL, 0, e);
    av_free(&a);
    return rc < 0 ? -1 : rc == 0;
}

/* Make sure the image exists: present, or built now (slow, once) when
 * allowed. Progress of a build goes to our stderr. */
static int ensure_image(const char *image, int build, FILE *log, et_err *e)
{
    int rc = podman_exists("image", image, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return 0;
    if (!build)
        return et_errf(e, ET_ERUNTIME, "testbed: image %s is not built (run "
                       "scripts/testbed/build-image.sh, a few minutes once, or drop --no-build)", image);
    char script[ET_PATH_MAX];
    if (script_path("build-image.sh", script, sizeof script, e) < 0)
        return -1;
    if (log)
        fprintf(log, "testbed: building image %s (debootstrap; minutes, cached afterwards)\n", image);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *argv[] = {"bash", script, NULL};
    char out[512];
    rc = run_cmd(argv, 1, out, sizeof out, NULL, 0, e);
    if (rc < 0)
        return -1;
    if (rc != 0)
        return et_errf(e, ET_ERUNTIME, "testbed: building the image failed (%s exit %d)", script, rc);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (log)
        fprintf(log, "testbed: image built in %.1f s\n",
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}

/* Every container labelled as belonging to test bed name, one per line
 * "NAME STATUS" in out (podman's status text: "Up 2 minutes ago", "Exited ..."). 0, or -1 when podman cannot be asked. */
static int labelled_containers(const char *name, char *out, size_t cap, et_err *e)
{
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, "ps");
    av_push(&a, "-a");
    av_push(&a, "--filter");
    av_pushf(&a, "label=%s=%s", TB_LABEL, name);
    av_push(&a, "--format");
    av_push(&a, "{{.Names}} {{.Status}}");
    int rc = run_cmd(a.v, 0, out, cap, NULL, 0, e);
    av_free(&a);
    if (rc != 0) {
        out[0] = 0;
        return rc < 0 ? -1 : et_errf(e, ET_ERUNTIME, "testbed: podman ps failed (exit %d)", rc);
    }
    return 0;
}

/* Remove container ctr (force, no grace period). 1 if it existed, 0 if
 * not, -1 on failure. */
static int remove_container(const char *ctr, et_err *e)
{
    int rc = podman_exists("container", ctr, e);
    if (rc <= 0)
        return rc;
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, "rm");
    av_push(&a, "-f");
    av_push(&a, "-t");
    av_push(&a, "0");
    av_push(&a, ctr);
    rc = av_run(&a, e);
    av_free(&a);
    return rc < 0 ? -1 : 1;
}

/* /etc/hosts and an empty /etc/resolv.conf for the containers: every server
 * and the launcher by name, nothing of the host's. */
static int write_hosts(const et_testbed *tb, et_err *e)
{
    char p[ET_PATH_MAX];
    sbuf b = {0};
    sb_printf(&b, "127.0.0.1\tlocalhost\n%s\t%s\n", ET_TB_LAUNCHER_ADDR, TB_LAUNCHER_HOST);
    for (int i = 0; i < tb->n; i++)
        sb_printf(&b, "%s\t%s\n", tb->srv[i].addr, tb->srv[i].name);
    tb_file(tb->name, "hosts", p, sizeof p);
    int rc = write_file_atomic(p, b.s, e);
    free(b.s);
    if (rc < 0)
        return -1;
    tb_file(tb->name, "resolv.conf", p, sizeof p);
    return write_file_atomic(p, "# edgetrain test bed: no name servers\n", e);
}

/* Start server i's container: its namespace, hostname, CPU share and memory,
 * the hosts file, the agent and the mounts bind-mounted. */
static int start_container(const et_testbed *tb, int i, const char *agent, et_err *e)
{
    const et_testbed_server *s = &tb->srv[i];
    char ctr[128], ns[ET_PATH_MAX], hosts[ET_PATH_MAX], resolv[ET_PATH_MAX];
    ctr_name(tb->name, s->name, ctr, sizeof ctr);
    ns_name(tb->name, s->name, ns, sizeof ns);
    tb_file(tb->name, "hosts", hosts, sizeof hosts);
    tb_file(tb->name, "resolv.conf", resolv, sizeof resolv);
    char share[ET_PATH_MAX];
    tb_share_dir(tb->name, share, sizeof share);
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, "run");
    av_push(&a, "-d");
    av_push(&a, "--init");
    av_push(&a, "--name");
    av_push(&a, ctr);
    av_push(&a, "--hostname");
    av_push(&a, s->name);
    av_push(&a, "--label");
    av_pushf(&a, "%s=%s", TB_LABEL, tb->name);
    av_push(&a, "--network");
    av_pushf(&a, "ns:/run/netns/%s", ns);
    /* CPU share as a CFS quota per period. A 10 ms period (not podman's
     * 100 ms) keeps a throttled rank's wake-up late by at most 10 ms minus
     * its quota when a message arrives; shares under 0.1 need a longer
     * period for the kernel's 1 ms least quota. */
    long period = s->cpus >= 0.1 ? 10000 : (long)ceil(1000.0 / s->cpus);
    av_push(&a, "--cpu-period");
    av_pushf(&a, "%ld", period);
    av_push(&a, "--cpu-quota");
    av_pushf(&a, "%ld", (long)llround(s->cpus * (double)period));
    /* A high CFS weight: when other processes load the host, a container
     * still gets its quota first (a server's share is its own; the cap
     * above keeps it from taking more). */
    av_push(&a, "--cpu-shares");
    av_pushf(&a, "%d", TB_CPU_WEIGHT);
    av_push(&a, "--memory");
    av_pushf(&a, "%llu", (unsigned long long)s->memory);
    av_push(&a, "--shm-size");
    av_push(&a, "256m");
    av_push(&a, "-v");
    av_pushf(&a, "%s:/etc/hosts:ro", hosts);
    av_push(&a, "-v");
    av_pushf(&a, "%s:/etc/resolv.conf:ro", resolv);
    av_push(&a, "-v");
    av_pushf(&a, "%s:%s:ro", agent, agent);
    av_push(&a, "-v");
    av_pushf(&a, "%s:%s:ro", share, share);
    for (int m = 0; m < tb->n_mounts; m++) {
        av_push(&a, "-v");
        av_pushf(&a, "%s:%s", tb->mounts[m], tb->mounts[m]);
    }
    av_push(&a, tb->image);
    av_push(&a, "sleep");
    av_push(&a, "infinity");
    int rc = av_run(&a, e);
    av_free(&a);
    return rc;
}

/* ------------------------------------------------------------- up / down */

/* Are all parts of a test bed that is recorded as up still there? Prints
 * what is missing to out (may be NULL). 1 if whole. */
static int check_whole(const et_testbed *tb, FILE *out)
{
    int whole = 1;
    char ns[128], p[ET_PATH_MAX];
    for (int i = 0; i <= tb->n; i++) {
        ns_name(tb->name, i < tb->n ? tb->srv[i].name : NULL, ns, sizeof ns);
        if (!netns_exists(ns)) {
            whole = 0;
            if (out)
                fprintf(out, "missing: network namespace %s\n", ns);
        }
    }
    if (!linkemu_running(tb->name)) {
        whole = 0;
        if (out)
            fprintf(out, "missing: the link emulator is not running\n");
    }
    tb_file(tb->name, "uts", p, sizeof p);
    if (!is_mounted(p)) {
        whole = 0;
        if (out)
            fprintf(out, "missing: the launcher's UTS namespace (%s)\n", p);
    }
    if (tb->containers) {
        char list[16384];
        et_err e2;
        et_err_clear(&e2);
        if (labelled_containers(tb->name, list, sizeof list, &e2) < 0) {
            if (out)
                fprintf(out, "missing: podman does not answer (%s)\n", e2.msg);
            return 0;
        }
        for (int i = 0; i < tb->n; i++) {
            char ctr[128], want[ET_PATH_MAX + 16];
            ctr_name(tb->name, tb->srv[i].name, ctr, sizeof ctr);
            /* podman's status of a running container reads "Up ...". */
            snprintf(want, sizeof want, "%s Up ", ctr);
            int ok = 0;
            for (char *l = list; *l;) {
                size_t len = strcspn(l, "\n");
                if (len >= strlen(want) && !strncmp(l, want, strlen(want)))
                    ok = 1;
                l += len + (l[len] ? 1 : 0);
            }
            if (!ok) {
                whole = 0;
                if (out)
                    fprintf(out, "missing: container %s is not running\n", ctr);
            }
        }
    }
    return whole;
}

/*
 * Take test bed `name` down (testbed.h): containers, link emulator,
 * namespaces, the UTS mount, the state directory, in that order (nothing
 * is left holding a namespace when it goes). What to remove comes from the
 * state file and from cfg_tb (may be NULL); each step skips what is gone.
 */
int et_testbed_down(const char *name, const et_testbed *cfg_tb, FILE *log, int *removed, et_err *e)
{
    int count = 0;
    et_testbed *st = load_state_any(name, NULL);
    int any_containers = st && st->containers;
    char p[ET_PATH_MAX], ns[128], ctr[128];

    /* 1. Containers: by label (whatever config made them) and by name. */
    int podman = have_program("podman");
    if (any_containers && !podman) {
        et_errf(e, ET_ERUNTIME, "testbed: '%s' has containers but podman is not installed any "
                "more: cannot remove them", name);
        goto fail;
    }
    if (podman) {
        char list[16384] = "";
        et_err e2;
        et_err_clear(&e2);
        if (labelled_containers(name, list, sizeof list, &e2) == 0) {
            for (char *l = list; *l;) {
                size_t len = strcspn(l, "\n");
                char one[ET_PATH_MAX];
                snprintf(one, sizeof one, "%.*s", (int)len, l);
                one[strcspn(one, " ")] = 0;
                if (one[0]) {
                    int r = remove_container(one, e);
                    if (r < 0)
                        goto fail;
                    count += r;
                    if (r && log)
                        fprintf(log, "testbed: removed container %s\n", one);
                }
                l += len + (l[len] ? 1 : 0);
            }
        }
        for (int k = 0; k < 2; k++) {
            const et_testbed *t = k ? cfg_tb : st;
            if (!t)
                continue;
            for (int i = 0; i < t->n; i++) {
                ctr_name(name, t->srv[i].name, ctr, sizeof ctr);
                int r = remove_container(ctr, e);
                if (r < 0)
                    goto fail;
                count += r;
                if (r && log)
                    fprintf(log, "testbed: removed container %s\n", ctr);
            }
        }
    }

    /* 2. The link emulator, only if the pid file still names ours. */
    pid_t pid = linkemu_running(name);
    if (pid > 0) {
        kill(pid, SIGTERM);
        for (int k = 0; k < 100 && pid_alive(pid); k++) {
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL);
            waitpid(pid, NULL, WNOHANG);
        }
        if (pid_alive(pid))
            kill(pid, SIGKILL);
        count++;
        if (log)
            fprintf(log, "testbed: stopped the link emulator (pid %d)\n", (int)pid);
    }

    /* 3. Namespaces (their TUN devices go with them): the launcher's, and
     * every server's that the state file or the config names. */
    const et_testbed *known[2] = {st, cfg_tb};
    for (int k = -1; k < 2; k++) {
        const et_testbed *t = k < 0 ? NULL : known[k];
        if (k >= 0 && !t)
            continue;
        for (int i = 0; i < (t ? t->n : 1); i++) {
            ns_name(name, t ? t->srv[i].name : NULL, ns, sizeof ns);
            if (!netns_exists(ns))
                continue;
            if (xrun(e, "ip", "netns", "del", ns, NULL) < 0)
                goto fail;
            count++;
            if (log)
                fprintf(log, "testbed: deleted network namespace %s\n", ns);
        }
    }

    /* 4. The launcher's UTS namespace mount, then the state directory. */
    tb_file(name, "uts", p, sizeof p);
    if (is_mounted(p)) {
        if (umount2(p, MNT_DETACH) < 0) {
            et_errf(e, ET_ERUNTIME, "testbed: cannot unmount %s (%s)", p, strerror(errno));
            goto fail;
        }
        count++;
    }
    tb_share_dir(name, p, sizeof p);
    DIR *sd = opendir(p);
    if (sd) {
        struct dirent *de;
        while ((de = readdir(sd)) != NULL) {
            char f[ET_PATH_MAX + 260];
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(f, sizeof f, "%s/%s", p, de->d_name);
            unlink(f);
        }
        closedir(sd);
        rmdir(p);
    }
    static const char *files[] = {"uts", "state", "links.tab", "linkemu.pid", "linkemu.log",
                                  "linkemu.stats", "linkemu.stats.tmp", "hosts", "resolv.conf",
                                  "hostfile", "calibration", "calibration.tmp"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        tb_file(name, files[k], p, sizeof p);
        unlink(p);
    }
    tb_dir(name, p, sizeof p);
    if (rmdir(p) == 0)
        count++;
    et_testbed_free(st);
    if (removed)
        *removed = count;
    return 0;
fail:
    et_testbed_free(st);
    return -1;
}

/* Preconditions of `up`: root, the tools, /dev/net/tun. */
static int check_privileges(const et_testbed *tb, et_err *e)
{
    if (geteuid() != 0)
        return et_errf(e, ET_ERUNTIME, "testbed: needs root (network namespaces, TUN devices, "
                       "containers: CAP_NET_ADMIN and CAP_SYS_ADMIN)");
    if (!have_program("ip"))
        return et_errf(e, ET_ERUNTIME, "testbed: 'ip' is not installed (apt-get install iproute2)");
    if (access("/dev/net/tun", R_OK | W_OK) != 0)
        return et_errf(e, ET_ERUNTIME, "testbed: /dev/net/tun is not usable (%s)", strerror(errno));
    if (tb->containers && !have_program("podman"))
        return et_errf(e, ET_ERUNTIME, "testbed: podman is not installed (apt-get install podman "
                       "runc catatonit debootstrap; or use --no-containers)");
    return 0;
}

/*
 * Bring tb_in up (testbed.h). Works on a copy that gains the image name and
 * the mounts; the state file is written before the first namespace exists
 * and marked "up" last; any failure takes down what was made.
 */
int et_testbed_up(const et_testbed *tb_in, int build_image, FILE *log, int *already, et_err *e)
{
    if (already)
        *already = 0;
    if (check_privileges(tb_in, e) < 0)
        return -1;
    et_testbed *tb = tb_alloc(tb_in->n);
    {
        et_testbed_server *srv = tb->srv;
        double *rate = tb->rate, *delay = tb->delay;
        *tb = *tb_in;
        tb->srv = srv;
        tb->rate = rate;
        tb->delay = delay;
        memcpy(tb->srv, tb_in->srv, (size_t)tb->n * sizeof *tb->srv);
        memcpy(tb->rate, tb_in->rate, (size_t)tb->n * tb->n * sizeof *tb->rate);
        memcpy(tb->delay, tb_in->delay, (size_t)tb->n * tb->n * sizeof *tb->delay);
    }
    char agent[ET_PATH_MAX];
    if (tb->containers) {
        if (script_path("agent.sh", agent, sizeof agent, e) < 0 ||
            image_name(tb->image, sizeof tb->image, e) < 0)
            goto fail_early;
        /* The repository is always mounted (binary, tools, agent, configs,
         * data, runs); --mount adds more. */
        char repo[ET_PATH_MAX];
        if (repo_root(repo, sizeof repo) < 0) {
            et_errf(e, ET_ERUNTIME, "testbed: cannot locate the repository to mount");
            goto fail_early;
        }
        int have = 0;
        for (int m = 0; m < tb->n_mounts; m++)
            have |= !strcmp(tb->mounts[m], repo);
        if (!have) {
            if (tb->n_mounts == ET_TB_MAX_MOUNTS) {
                et_errf(e, ET_EINPUT, "testbed: at most %d mounts besides the repository",
                        ET_TB_MAX_MOUNTS - 1);
                goto fail_early;
            }
            memmove(tb->mounts[1], tb->mounts[0], (size_t)tb->n_mounts * sizeof tb->mounts[0]);
            snprintf(tb->mounts[0], sizeof tb->mounts[0], "%s", repo);
            tb->n_mounts++;
        }
    }
    compute_fingerprint(tb);

    /* Already up with the very same fingerprint and whole: nothing to do. */
    et_err e2;
    et_err_clear(&e2);
    et_testbed *cur = et_testbed_load_state(tb->name, &e2);
    if (cur) {
        int same = !strcmp(cur->fingerprint, tb->fingerprint) && check_whole(cur, NULL);
        et_testbed_free(cur);
        if (same) {
            if (already)
                *already = 1;
            et_testbed_free(tb);
            return 0;
        }
    }
    /* Anything else under this name (crashed, partial, other config) goes. */
    if (et_testbed_down(tb->name, tb, NULL, NULL, e) < 0)
        goto fail_early;
    if (tb->containers && ensure_image(tb->image, build_image, log, e) < 0)
        goto fail_early;

    char dir[ET_PATH_MAX], ns[128];
    tb_dir(tb->name, dir, sizeof dir);
    if (mkdirs(dir, 0755) < 0) {
        et_errf(e, ET_ERUNTIME, "testbed: cannot create %s (%s)", dir, strerror(errno));
        goto fail_early;
    }
    if (save_state(tb, "creating", e) < 0)
        goto fail;
    for (int i = 0; i <= tb->n; i++) {
        ns_name(tb->name, i < tb->n ? tb->srv[i].name : NULL, ns, sizeof ns);
        if (make_node_ns(ns, i < tb->n ? tb->srv[i].addr : ET_TB_LAUNCHER_ADDR, tb->mtu, e) < 0)
            goto fail;
    }
    if (log)
        fprintf(log, "testbed: %d network namespaces with TUN devices on %s\n", tb->n + 1, ET_TB_SUBNET);
    if (start_linkemu(tb, e) < 0)
        goto fail;
    if (make_launcher_uts(tb->name, e) < 0)
        goto fail;
    if (log)
        fprintf(log, "testbed: link emulator running (pid %d), launcher namespace ready\n",
                (int)linkemu_pid(tb->name));
    if (tb->containers) {
        char share[ET_PATH_MAX];
        tb_share_dir(tb->name, share, sizeof share);
        if (mkdirs(share, 0755) < 0) {
            et_errf(e, ET_ERUNTIME, "testbed: cannot create %s (%s)", share, strerror(errno));
            goto fail;
        }
        if (write_hosts(tb, e) < 0)
            goto fail;
        for (int i = 0; i < tb->n; i++) {
            if (start_container(tb, i, agent, e) < 0)
                goto fail;
            if (log)
                fprintf(log, "testbed: container etb-%s-%s: %s, %.3f CPUs\n", tb->name,
                        tb->srv[i].name, tb->srv[i].addr, tb->srv[i].cpus);
        }
    }
    if (save_state(tb, "up", e) < 0)
        goto fail;
    et_testbed_free(tb);
    return 0;
fail:
    {
        et_err e3;
        et_err_clear(&e3);
        et_testbed_down(tb->name, tb, NULL, NULL, &e3);
    }
fail_early:
    et_testbed_free(tb);
    return -1;
}

/* ---------------------------------------------------------------- status */

/* "200 Mbit/s" style rendering of a rate in bytes/s (0 = unlimited). */
static void fmt_rate(double bps, char *out, size_t cap)
{
    double bits = bps * 8;
    if (bps <= 0)
        snprintf(out, cap, "unlimited");
    else if (bits >= 1e9)
        snprintf(out, cap, "%.4g Gbit/s", bits / 1e9);
    else if (bits >= 1e6)
        snprintf(out, cap, "%.4g Mbit/s", bits / 1e6);
    else
        snprintf(out, cap, "%.4g kbit/s", bits / 1e3);
}

/* "8 ms" style rendering of seconds. */
static void fmt_time(double s, char *out, size_t cap)
{
    if (s >= 1)
        snprintf(out, cap, "%.4g s", s);
    else if (s >= 1e-3 || s == 0)
        snprintf(out, cap, "%.4g ms", s * 1e3);
    else
        snprintf(out, cap, "%.4g us", s * 1e6);
}

/* Print test bed name's state to out (testbed.h); asks the link emulator
 * for its counters with SIGUSR1 and waits up to 0.5 s for the file. */
int et_testbed_status(const char *name, FILE *out, et_err *e)
{
    char status[32] = "?";
    et_testbed *tb = load_state_any(name, status);
    if (!tb) {
        fprintf(out, "test bed '%s': down (nothing recorded under %s/%s)\n", name, run_root(), name);
        return 1;
    }
    int whole = !strcmp(status, "up") && check_whole(tb, NULL);
    pid_t pid = linkemu_running(name);
    if (whole)
        fprintf(out, "test bed '%s': up\n", name);
    else
        fprintf(out, "test bed '%s': BROKEN (recorded status '%s'; what is missing is listed at the end)\n",
                name, status);
    fprintf(out, "  links: link emulator (TUN, MTU %d) %s", tb->mtu, pid ? "running, pid " : "NOT running");
    if (pid)
        fprintf(out, "%d", (int)pid);
    fprintf(out, "\n  launcher: namespace etb-%s-launcher, host name %s, address %s\n", name,
            TB_LAUNCHER_HOST, ET_TB_LAUNCHER_ADDR);
    if (tb->containers)
        fprintf(out, "  image: %s\n", tb->image);
    fprintf(out, "  CPU shares planned for %.3g cores (scale %.3g)\n", tb->host_cores, tb->cpu_scale);

    char list[16384] = "";
    if (tb->containers) {
        et_err e2;
        et_err_clear(&e2);
        labelled_containers(name, list, sizeof list, &e2);
    }
    fprintf(out, "\n  %-16s %-24s %-12s %6s %10s %5s  %s\n", "server", "container", "address", "cpus",
            "memory", "slots", "state");
    for (int i = 0; i < tb->n; i++) {
        const et_testbed_server *s = &tb->srv[i];
        char ctr[128], state[32] = "-";
        ctr_name(name, s->name, ctr, sizeof ctr);
        if (tb->containers) {
            snprintf(state, sizeof state, "absent");
            for (char *l = list; *l;) {
                size_t len = strcspn(l, "\n");
                size_t cl = strlen(ctr);
                if (len > cl && !strncmp(l, ctr, cl) && l[cl] == ' ')
                    snprintf(state, sizeof state, "%.*s", (int)(len - cl - 1), l + cl + 1);
                l += len + (l[len] ? 1 : 0);
            }
        } else {
            snprintf(ctr, sizeof ctr, "(namespace only)");
        }
        fprintf(out, "  %-16s %-24s %-12s %6.3f %7.2fGiB %5d  %s\n", s->name, ctr, s->addr, s->cpus,
                (double)s->memory / (1024.0 * 1024 * 1024), s->slots, state);
    }

    /* Per-link counters from the emulator (SIGUSR1 makes it write them). */
    char stats[ET_PATH_MAX];
    tb_file(name, "linkemu.stats", stats, sizeof stats);
    struct stat before;
    int had = stat(stats, &before) == 0;
    if (pid) {
        kill(pid, SIGUSR1);
        for (int k = 0; k < 50; k++) {
            struct stat now;
            if (stat(stats, &now) == 0 &&
                (!had || now.st_mtim.tv_sec != before.st_mtim.tv_sec ||
                 now.st_mtim.tv_nsec != before.st_mtim.tv_nsec))
                break;
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    fprintf(out, "\n  links (one direction each; rate, delay, then packets/bytes/drops so far):\n");
    for (int i = 0; i < tb->n; i++)
        for (int j = 0; j < tb->n; j++) {
            if (i == j)
                continue;
            char r[32], d[32];
            fmt_rate(tb->rate[i * tb->n + j], r, sizeof r);
            fmt_time(tb->delay[i * tb->n + j], d, sizeof d);
            unsigned long long pk = 0, by = 0, dr = 0;
            int found = 0;
            FILE *sf = fopen(stats, "r");
            if (sf) {
                char line[512], a[ET_NAME_MAX], b[ET_NAME_MAX];
                while (!found && fgets(line, sizeof line, sf))
                    if (sscanf(line, "%63s %63s %llu %llu %llu", a, b, &pk, &by, &dr) == 5 &&
                        !strcmp(a, tb->srv[i].name) && !strcmp(b, tb->srv[j].name))
                        found = 1;
                fclose(sf);
            }
            fprintf(out, "  %-16s -> %-16s %14s %10s", tb->srv[i].name, tb->srv[j].name, r, d);
            if (found)
                fprintf(out, "   %llu pkts %llu B %llu drops", pk, by, dr);
            fprintf(out, "\n");
        }
    if (!whole) {
        fprintf(out, "\n");
        check_whole(tb, out);
    }
    et_testbed_free(tb);
    (void)e;
    return whole ? 0 : 1;
}

/* ---------------------------------------------------------------- verify */

/* Seconds on the monotonic clock. */
static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds on the realtime clock (shared by the host and its containers). */
static double wallclock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Create a socket of type inside network namespace ns (setns there, create,
 * setns back): the socket stays in ns for its whole life. -1 on failure. */
static int socket_in(const char *ns, int type)
{
    char p[ET_PATH_MAX];
    snprintf(p, sizeof p, "/run/netns/%s", ns);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    int s = -1;
    if (self >= 0 && fd >= 0 && setns(fd, CLONE_NEWNET) == 0) {
        s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        if (setns(self, CLONE_NEWNET) < 0) {
            /* Cannot return: refuse to go on in the wrong namespace. */
            abort();
        }
    }
    if (self >= 0)
        close(self);
    if (fd >= 0)
        close(fd);
    return s;
}

/* sockaddr for addr:port. */
static struct sockaddr_in sa_of(const char *addr, int port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, addr, &sa.sin_addr);
    return sa;
}

/* Wait until fd is readable, up to timeout seconds; 1 if readable. */
static int wait_readable(int fd, double timeout)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int r = poll(&pf, 1, (int)(timeout * 1000));
    return r > 0 && (pf.revents & POLLIN);
}

/* Median UDP echo round trip between namespaces of servers a and b (probes
 * of 64 bytes: a sends, b echoes). */
static int measure_rtt(const et_testbed *tb, int a, int b, int probes, double *rtt, et_err *e)
{
    char na[128], nb[ET_PATH_MAX];
    ns_name(tb->name, tb->srv[a].name, na, sizeof na);
    ns_name(tb->name, tb->srv[b].name, nb, sizeof nb);
    int ua = socket_in(na, SOCK_DGRAM), ub = socket_in(nb, SOCK_DGRAM);
    int rc = 0;
    double *v = et_xcalloc((size_t)probes, sizeof *v);
    int got = 0;
    struct sockaddr_in sa = sa_of(tb->srv[a].addr, 0), sb = sa_of(tb->srv[b].addr, 0);
    socklen_t sl = sizeof sa;
    if (ua < 0 || ub < 0 || bind(ua, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        bind(ub, (struct sockaddr *)&sb, sizeof sb) < 0 ||
        getsockname(ua, (struct sockaddr *)&sa, &sl) < 0 ||
        (sl = sizeof sb, getsockname(ub, (struct sockaddr *)&sb, &sl) < 0)) {
        rc = et_errf(e, ET_ERUNTIME, "testbed: cannot open UDP sockets in %s/%s (%s)", na, nb,
                     strerror(errno));
        goto out;
    }
    char msg[64], buf[128];
    memset(msg, 'p', sizeof msg);
    for (int k = 0; k < probes + 2 && got < probes; k++) {
        double t0 = mono();
        if (sendto(ua, msg, sizeof msg, 0, (struct sockaddr *)&sb, sizeof sb) < 0)
            continue;
        if (!wait_readable(ub, 1.0))
            continue;
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t r = recvfrom(ub, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (r <= 0 || sendto(ub, buf, (size_t)r, 0, (struct sockaddr *)&from, fl) < 0)
            continue;
        if (!wait_readable(ua, 1.0))
            continue;
        if (recv(ua, buf, sizeof buf, 0) <= 0)
            continue;
        double t1 = mono();
        if (k >= 2)   /* the first two warm up (neighbour and route caches) */
            v[got++] = t1 - t0;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (got < (probes + 1) / 2) {
        rc = et_errf(e, ET_ERUNTIME, "testbed: %s -> %s: only %d of %d echoes came back",
                     tb->srv[a].name, tb->srv[b].name, got, probes);
        goto out;
    }
    *rtt = et_median(v, (size_t)got);
out:
    if (ua >= 0)
        close(ua);
    if (ub >= 0)
        close(ub);
    free(v);
    return rc;
}

/* TCP goodput from server a to server b over `seconds` (the first part,
 * while the window opens, is not counted): one connection, a 64 KiB writer
 * and a reader in one poll loop. */
static int measure_tput(const et_testbed *tb, int a, int b, double seconds, double *bps, et_err *e)
{
    char na[128], nb[ET_PATH_MAX];
    ns_name(tb->name, tb->srv[a].name, na, sizeof na);
    ns_name(tb->name, tb->srv[b].name, nb, sizeof nb);
    int ls = socket_in(nb, SOCK_STREAM), cs = socket_in(na, SOCK_STREAM), rs = -1;
    int rc = 0, one = 1;
    static char wbuf[65536], rbuf[65536];
    struct sockaddr_in sb = sa_of(tb->srv[b].addr, 0);
    socklen_t sl = sizeof sb;
    if (ls < 0 || cs < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(ls, (struct sockaddr *)&sb, sizeof sb) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&sb, &sl) < 0) {
        rc = et_errf(e, ET_ERUNTIME, "testbed: cannot open TCP sockets in %s/%s (%s)", na, nb,
                     strerror(errno));
        goto out;
    }
    if (connect(cs, (struct sockaddr *)&sb, sizeof sb) < 0 || !wait_readable(ls, 5.0) ||
        (rs = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        rc = et_errf(e, ET_ERUNTIME, "testbed: %s -> %s: TCP connection failed (%s)",
                     tb->srv[a].name, tb->srv[b].name, strerror(errno));
        goto out;
    }
    fcntl(cs, F_SETFL, O_NONBLOCK);
    fcntl(rs, F_SETFL, O_NONBLOCK);
    /* Room for a few hundred ms of any emulated link, so that this process
     * being descheduled for a moment does not starve the link. */
    int bufsz = 4 << 20;
    setsockopt(cs, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    setsockopt(rs, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    memset(wbuf, 'x', sizeof wbuf);
    double rtt = tb->delay[a * tb->n + b] + tb->delay[b * tb->n + a];
    double t0 = mono(), warm = fmin(0.3 + 10 * rtt, seconds / 2), t_end = t0 + seconds;
    double t_mark = -1;
    unsigned long long total = 0, at_mark = 0;
    for (;;) {
        double now = mono();
        if (now >= t_end)
            break;
        if (t_mark < 0 && now >= t0 + warm) {
            t_mark = now;
            at_mark = total;
        }
        struct pollfd pf[2] = {{.fd = cs, .events = POLLOUT}, {.fd = rs, .events = POLLIN}};
        if (poll(pf, 2, 50) < 0 && errno != EINTR)
            break;
        if (pf[0].revents & POLLOUT) {
            ssize_t w = write(cs, wbuf, sizeof wbuf);
            (void)w;
        }
        if (pf[1].revents & POLLIN) {
            for (;;) {
                ssize_t r = read(rs, rbuf, sizeof rbuf);
                if (r <= 0)
                    break;
                total += (unsigned long long)r;
            }
        }
    }
    double t_stop = mono();
    if (t_mark < 0 || t_stop - t_mark <= 0) {
        rc = et_errf(e, ET_ERUNTIME, "testbed: throughput run too short");
        goto out;
    }
    *bps = (double)(total - at_mark) / (t_stop - t_mark);
out:
    if (cs >= 0)
        close(cs);
    if (rs >= 0)
        close(rs);
    if (ls >= 0)
        close(ls);
    return rc;
}

/* Spinning thread: burns CPU until *stop (an atomic-free flag read through a
 * volatile pointer; a late stop only lengthens the spin). */
static void *spin_thread(void *arg)
{
    volatile int *stop = arg;
    volatile unsigned long x = 0;
    while (!*stop)
        x++;
    return NULL;
}

/* Busy threads for a CPU-share measurement (testbed.h). */
double et_testbed_spin_at(double seconds, int threads, double start_at)
{
    if (threads < 1)
        threads = 1;
    if (threads > 256)
        threads = 256;
    /* Wait for the agreed start (bounded: a start far off is a mistake). */
    double wait = start_at - wallclock();
    if (wait > 0 && wait < 60) {
        struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
        nanosleep(&ts, NULL);
    }
    volatile int stop = 0;
    pthread_t th[256];
    struct timespec c0, c1;
    double w0 = mono();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    int started = 0;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, spin_thread, (void *)&stop) == 0)
            started++;
    struct timespec ts = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    nanosleep(&ts, NULL);
    stop = 1;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double w1 = mono();
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    return cpu / (w1 - w0);
}

/*
 * CPU share of server i's container: `edgetrain testbed spin` inside it,
 * and at the very same time (both start at one agreed realtime instant) an
 * uncapped reference spinner with as many threads here on the host. The
 * container must get min(its share, what the reference got): its cap when
 * the host has the cores free, a fair part of what is left when others load
 * the host. *share and *reference receive the two fractions.
 */
static int measure_cpu(const et_testbed *tb, int i, double seconds, double *share, double *reference,
                       et_err *e)
{
    char exe[ET_PATH_MAX], ctr[128], out[256] = "";
    if (self_exe(exe, sizeof exe) < 0)
        return et_errf(e, ET_ERUNTIME, "testbed: cannot read /proc/self/exe");
    ctr_name(tb->name, tb->srv[i].name, ctr, sizeof ctr);
    int threads = (int)ceil(tb->srv[i].cpus);
    double start_at = wallclock() + 1.5;   /* podman exec needs a moment to start */
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, "exec");
    av_push(&a, ctr);
    av_push(&a, exe);
    av_push(&a, "testbed");
    av_push(&a, "spin");
    av_pushf(&a, "%g", seconds);
    av_pushf(&a, "%d", threads);
    av_pushf(&a, "%.6f", start_at);
    int po[2];
    if (pipe2(po, O_CLOEXEC) < 0) {
        av_free(&a);
        return et_errf(e, ET_ERUNTIME, "testbed: pipe failed (%s)", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        av_free(&a);
        close(po[0]);
        close(po[1]);
        return et_errf(e, ET_ERUNTIME, "testbed: fork failed (%s)", strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(devnull, 2);
        execvp(a.v[0], a.v);
        _exit(127);
    }
    av_free(&a);
    close(po[1]);
    *reference = et_testbed_spin_at(seconds, threads, start_at);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(po[0], out + n, sizeof out - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof out - 1)
            break;
    }
    out[n] = 0;
    close(po[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sscanf(out, "%lf", share) != 1)
        return et_errf(e, ET_ERUNTIME, "testbed: spinning inside %s failed (is %s under a "
                       "directory mounted into the containers?)", ctr, exe);
    return 0;
}

/* Measure links and CPU shares against the state (testbed.h), one table
 * each, flushed line by line. */
int et_testbed_verify(const char *name, const et_testbed_verify_opts *o, FILE *out, et_err *e)
{
    et_testbed *tb = et_testbed_load_state(name, e);
    if (!tb)
        return -1;
    int bad = 0, rc = 0;
    double tol = o->tolerance > 0 ? o->tolerance : 0.10;
    if (o->links && tb->n >= 2) {
        fprintf(out, "%-12s %-12s %9s %9s %6s  %11s %11s %6s  %11s %6s\n", "a", "b", "rtt ms",
                "expect", "dev", "a->b Mbit/s", "config", "dev", "b->a Mbit/s", "dev");
        /* The measuring process must not be what limits the numbers: run it
         * at a raised priority (root may), as the emulator itself runs. */
        int old_nice = getpriority(PRIO_PROCESS, 0);
        if (setpriority(PRIO_PROCESS, 0, -10) < 0) {
            /* Not permitted: measure at the normal priority. */
        }
        for (int a = 0; a < tb->n; a++)
            for (int b = a + 1; b < tb->n; b++) {
                /* Other tenants of the host can only slow a measurement down
                 * (never speed a link up): a pair off the mark is measured
                 * again, up to three tries, and the last try is reported. */
                int ok = 0, tries = 0;
                double rtt = 0, tab = 0, tba = 0, expect = 0, drtt = 0, dab = 0, dba = 0;
                double rab = tb->rate[a * tb->n + b], rba = tb->rate[b * tb->n + a];
                while (!ok && tries < 3) {
                    tries++;
                    if (measure_rtt(tb, a, b, o->rtt_probes > 0 ? o->rtt_probes : 15, &rtt, e) < 0 ||
                        measure_tput(tb, a, b, o->seconds > 0 ? o->seconds : 1.5, &tab, e) < 0 ||
                        measure_tput(tb, b, a, o->seconds > 0 ? o->seconds : 1.5, &tba, e) < 0) {
                        setpriority(PRIO_PROCESS, 0, old_nice);
                        rc = -1;
                        goto done;
                    }
                    expect = tb->delay[a * tb->n + b] + tb->delay[b * tb->n + a] +
                             (rab > 0 ? 92.0 / rab : 0) + (rba > 0 ? 92.0 / rba : 0);
                    /* RTT: relative tolerance, with a floor of 0.2 ms for the
                     * scheduling of the emulator and of this process. */
                    drtt = (rtt - expect) / fmax(expect, 1e-9);
                    int rtt_ok = fabs(rtt - expect) <= fmax(tol * expect, 2e-4);
                    dab = rab > 0 ? (tab - rab) / rab : 0;
                    dba = rba > 0 ? (tba - rba) / rba : 0;
                    ok = rtt_ok && fabs(dab) <= tol && fabs(dba) <= tol;
                }
                bad |= !ok;
                fprintf(out, "%-12s %-12s %9.3f %9.3f %+5.1f%%  %11.2f %11.2f %+5.1f%%  %11.2f %+5.1f%%%s",
                        tb->srv[a].name, tb->srv[b].name, rtt * 1e3, expect * 1e3, 100 * drtt,
                        tab * 8e-6, rab * 8e-6, 100 * dab, tba * 8e-6, 100 * dba, ok ? "" : "  OUT");
                if (tries > 1)
                    fprintf(out, "  (try %d)", tries);
                fprintf(out, "\n");
                fflush(out);
            }
        setpriority(PRIO_PROCESS, 0, old_nice);
    }
    if (o->cpu && tb->containers) {
        fprintf(out, "%-12s %8s %9s %8s %6s\n", "server", "cpus", "host-free", "measured", "dev");
        for (int i = 0; i < tb->n; i++) {
            double share, ref;
            if (measure_cpu(tb, i, o->seconds > 0 ? fmax(o->seconds, 1.0) : 2.0, &share, &ref, e) < 0) {
                rc = -1;
                goto done;
            }
            /* With the host free (the reference got at least the share) the
             * container must get its share. When others load the host, no
             * share can be had; then it must get no more than its share and
             * no less than the uncapped reference got beside it. */
            double want = tb->srv[i].cpus;
            int busy = ref < want * (1 - tol);
            int ok = busy ? (share <= want * (1 + tol) && share >= ref * (1 - tol))
                          : fabs(share - want) <= tol * want;
            bad |= !ok;
            fprintf(out, "%-12s %8.3f %9.3f %8.3f %+5.1f%%%s%s\n", tb->srv[i].name, want, ref,
                    share, 100 * (share - want) / want,
                    busy ? "  (host busy: checked share <= cpus and >= host-free)" : "",
                    ok ? "" : "  OUT");
            fflush(out);
        }
    }
    rc = bad ? 1 : 0;
done:
    et_testbed_free(tb);
    return rc;
}

/* ---------------------------------------------------------------- launch */

/* Does the mpirun argv already say where to run (hosts or a rankfile)? */
static int names_hosts(char *const *argv)
{
    static const char *opts[] = {"--host", "-host", "-H", "--hostfile", "-hostfile", "--machinefile",
                                 "-machinefile", "--rankfile", "-rankfile", "-rf", "--default-hostfile"};
    for (int i = 1; argv[i]; i++)
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            size_t n = strlen(opts[k]);
            if (!strncmp(argv[i], opts[k], n) && (argv[i][n] == 0 || argv[i][n] == '='))
                return 1;
        }
    return 0;
}

/* The argv that runs mpirun_argv across the test bed of cfg (testbed.h);
 * checks that the test bed is up, whole and made from cfg's cluster. */
int et_testbed_launch_argv(const et_config *cfg, char *const *mpirun_argv, double timeout_s,
                           char ***out, et_err *e)
{
    *out = NULL;
    if (!cfg || !mpirun_argv || !mpirun_argv[0])
        return et_errf(e, ET_ERUNTIME, "testbed: no mpirun command to launch");
    char name[ET_TB_NAME_MAX + 1];
    et_testbed_name_from(cfg->name, name);
    et_testbed *tb = et_testbed_load_state(name, e);
    if (!tb)
        return -1;
    et_testbed_opts o;
    et_testbed_opts_default(&o);
    et_testbed *want = et_testbed_plan(&cfg->cluster, cfg->name, &o, e);
    if (!want) {
        et_testbed_free(tb);
        return -1;
    }
    char f1[17], f2[17];
    cluster_fingerprint(tb, f1);
    cluster_fingerprint(want, f2);
    et_testbed_free(want);
    if (strcmp(f1, f2) != 0) {
        et_testbed_free(tb);
        return et_errf(e, ET_ERUNTIME, "testbed '%s' was brought up from a different cluster than "
                       "%s's (run 'edgetrain testbed up %s' again)", name, cfg->path, cfg->path);
    }
    if (!tb->containers) {
        et_testbed_free(tb);
        return et_errf(e, ET_ERUNTIME, "testbed '%s' has no containers (it was brought up with "
                       "--no-containers)", name);
    }
    if (!check_whole(tb, NULL)) {
        et_testbed_free(tb);
        return et_errf(e, ET_ERUNTIME, "testbed '%s' is broken (see 'edgetrain testbed status %s')",
                       name, cfg->path);
    }
    char agent[ET_PATH_MAX], conf[ET_PATH_MAX], uts[ET_PATH_MAX], ns[128];
    if (script_path("agent.sh", agent, sizeof agent, e) < 0 ||
        script_path("containers.conf", conf, sizeof conf, e) < 0) {
        et_testbed_free(tb);
        return -1;
    }
    tb_file(name, "uts", uts, sizeof uts);
    ns_name(name, NULL, ns, sizeof ns);
    argvec a = {0};
    av_push(&a, "nsenter");
    av_pushf(&a, "--net=/run/netns/%s", ns);
    av_pushf(&a, "--uts=%s", uts);
    av_push(&a, "--");
    av_push(&a, "env");
    av_pushf(&a, "CONTAINERS_CONF=%s", conf);
    av_pushf(&a, "ETB_PODMAN_ROOT=%s/podman/root", data_root());
    av_pushf(&a, "ETB_PODMAN_RUNROOT=%s/podman/runroot", run_root());
    av_pushf(&a, "ETB_PODMAN_TMPDIR=%s/podman/tmp", run_root());
    av_pushf(&a, "ETB_CTR_PREFIX=etb-%s-", name);
    av_push(&a, "timeout");
    av_push(&a, "--kill-after=30");
    av_pushf(&a, "%.0f", timeout_s > 0 ? ceil(timeout_s) : 86400.0);
    av_push(&a, mpirun_argv[0]);
    if (geteuid() == 0)
        av_push(&a, "--allow-run-as-root");
    static const char *mca[][2] = {
        {"plm_rsh_no_tree_spawn", "1"},
        {"btl", "tcp,vader,self"},
        {"btl_tcp_if_include", ET_TB_SUBNET},
        {"oob_tcp_if_include", ET_TB_SUBNET},
        {"mpi_yield_when_idle", "1"},
        {"btl_tcp_eager_limit", ET_LAUNCH_TCP_EAGER},
        {"btl_tcp_rndv_eager_limit", ET_LAUNCH_TCP_EAGER},
        {"btl_tcp_max_send_size", ET_LAUNCH_TCP_EAGER},
    };
    av_push(&a, "--mca");
    av_push(&a, "plm_rsh_agent");
    av_push(&a, agent);
    for (size_t k = 0; k < sizeof mca / sizeof mca[0]; k++) {
        av_push(&a, "--mca");
        av_push(&a, mca[k][0]);
        av_push(&a, mca[k][1]);
    }
    av_push(&a, "--bind-to");
    av_push(&a, "none");
    /* The ranks' environment is the container's plus what mpirun forwards:
     * forward the threading and sanitizer settings the caller has. */
    static const char *fwd[] = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "ASAN_OPTIONS",
                                "LSAN_OPTIONS", "UBSAN_OPTIONS"};
    for (size_t k = 0; k < sizeof fwd / sizeof fwd[0]; k++)
        if (getenv(fwd[k])) {
            av_push(&a, "-x");
            av_push(&a, fwd[k]);
        }
    if (!names_hosts(mpirun_argv)) {
        sbuf h = {0};
        for (int i = 0; i < tb->n; i++)
            sb_printf(&h, "%s%s:%d", i ? "," : "", tb->srv[i].name, tb->srv[i].slots);
        av_push(&a, "--host");
        av_push(&a, h.s);
        free(h.s);
    }
    for (int i = 1; mpirun_argv[i]; i++)
        av_push(&a, mpirun_argv[i]);
    et_testbed_free(tb);
    *out = a.v;
    return 0;
}

/* ----------------------------------------------------------- calibration */

/*
 * The calibration (testbed.h): the rank side runs inside the containers
 * under mpirun; the host side launches it, derives the figures from its
 * "etb-calib" lines and stores them. The text form (et_tb_cal_save) is the
 * same in the test bed's state and in a run directory.
 */

#define CAL_FORMAT 1
#define CAL_RTT_REPS 15   /* 1-byte round trips per pair (after one warm-up) */
#define CAL_MSG_REPS 9    /* large messages per pair and direction (after one warm-up) */
#define CAL_PARTS 5       /* each compute loop: the median of this many parts */
#define CAL_MAX_BYTES (64 << 20)   /* largest link probe message */
#define CAL_TRIES 3       /* calibrations at most, when other work disturbs them */
#define CAL_QUIET_CORES 0.25   /* other work under this many cores: undisturbed */

/* Complete a request by polling it with growing naps (50 us to 2 ms): a
 * waiting calibration rank must not take CPU from a rank that shares its
 * container (busy-waiting in MPI would spend the container's quota). */
static void cal_wait(MPI_Request *req)
{
    long ns = 50000;
    for (;;) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        if (ns < 2000000)
            ns *= 2;
    }
}

/* A barrier over comm that waits with cal_wait. */
static void cal_barrier(MPI_Comm comm)
{
    MPI_Request r;
    MPI_Ibarrier(comm, &r);
    cal_wait(&r);
}

/* What one rank measured (sent to rank 0 as bytes). */
typedef struct cal_meas {
    int server;           /* by host name; -1 when the host is no server */
    int err;              /* 1: msg says what went wrong */
    double fb_s, fwd_s, opt_s, fbtp_s;   /* fbtp_s: NAN without a TP group */
    double t_begin, t_end;               /* realtime of the compute phase */
    int n_fb, n_fwd, n_opt, n_fbtp;
    char host[64];
    char msg[256];
} cal_meas;

/* xorshift64 step for the calibration's made-up data. */
static uint64_t cal_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* gpt2_tp.allreduce of the calibration: the sum over the TP group. */
static void cal_tp_allreduce(void *ctx, float *buf, size_t n)
{
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, *(MPI_Comm *)ctx);
}

/* One rank's calibration work: its shard, optimizer, activations, made-up
 * data (see cal_compute). */
typedef struct cal_work {
    gpt2_shard *sh;
    optim_state *st;
    optim_config oc;
    gpt2_acts *a;
    int *tok, *tgt;
    float *x, *dx;
    float scale;
    const gpt2_tp *tp;       /* the TP group's all-reduce, or NULL */
    long step;
} cal_work;

enum { CAL_FB, CAL_FWD, CAL_OPT };

/* One repetition of `kind`. */
static void cal_once(cal_work *w, int kind)
{
    if (kind == CAL_OPT) {
        gpt2_shard_zero_grad(w->sh);
        optim_grad_sqsum(w->sh, 1, 0);
        optim_step(w->sh, w->st, &w->oc, w->step++, 1.0);
        return;
    }
    gpt2_forward(w->sh, w->a, w->tok, w->x, w->tgt, w->tp);
    if (kind == CAL_FB)
        gpt2_backward(w->sh, w->a, w->tok, w->dx, w->scale, w->tp);
}

/*
 * Time `kind` in CAL_PARTS consecutive parts: each part runs `per_part`
 * repetitions when per_part > 0 (the TP loop: every member must run the
 * same count), else repetitions until part_s has passed (at least one).
 * Returns the median of the parts' means (robust to a burst of other load
 * on the host within the window); *n receives the repetitions in all.
 */
static double cal_time(cal_work *w, int kind, double part_s, int per_part, int *n)
{
    double means[CAL_PARTS];
    *n = 0;
    for (int p = 0; p < CAL_PARTS; p++) {
        double t0 = mono();
        int k = 0;
        do {
            cal_once(w, kind);
            k++;
        } while (per_part > 0 ? k < per_part : mono() - t0 < part_s);
        means[p] = (mono() - t0) / k;
        *n += k;
    }
    return et_median(means, CAL_PARTS);
}

/*
 * Worker rank `rank`'s compute measurement: its shard of the plan, one
 * micro-batch of the plan's shape, made-up tokens/activations/gradients
 * (the same for every member of a TP group, as the boundary tensor is).
 * Loops, each after a warm-up, each timed with cal_time (CAL_PARTS parts of
 * many CFS periods each, the median part):
 *   forward+backward without the tensor-parallel reduction, `seconds`;
 *   forward alone, seconds/2;
 *   optimizer steps (zero grad, squared norm, AdamW), seconds/4;
 *   with a TP group (tp_comm not MPI_COMM_NULL): forward+backward with the
 *   real all-reduces over the group, as the training step does them, for
 *   about `seconds` (the same count on every member, set by the slowest
 *   member's first loop); one group at a time (group `tp_color` of
 *   n_groups), the other ranks asleep, as a pipeline stage mostly runs its
 *   micro-batch while the other stages wait or compute apart.
 * The first three are pure compute (the servers' GFLOP/s), the last adds the
 * tensor-parallel all-reduces as they happen inside a stage, between
 * containers whose CPU caps slice time differently (the TP links). All
 * ranks start each part together (cal_barrier), sharing the host as the
 * training ranks do. Fills m (m->err and m->msg on failure; the rank still
 * takes part in every barrier and collective).
 */
static void cal_compute(const et_config *cfg, const et_plan *plan, int rank, double seconds,
                        MPI_Comm tp_comm, int tp_color, int n_groups, cal_meas *m)
{
    plan_role ro;
    int worker = rank > 0 && plan_rank_role(plan, rank, &ro) == 0;
    cal_work w;
    memset(&w, 0, sizeof w);
    int B = plan->micro_batch, T = cfg->training.seq_len, C = cfg->model.n_embd;
    size_t N = (size_t)B * (size_t)T;
    trainer_optim_config(&cfg->training, &w.oc);
    w.scale = 1.0f / (float)plan->micro_batches;
    if (worker) {
        gpt2_shard_spec spec = {ro.layer_first, ro.layer_last, ro.has_embed, ro.has_head,
                                ro.tp_index, ro.tp};
        et_err e;
        et_err_clear(&e);
        w.sh = gpt2_shard_new(&cfg->model, &spec, &e);
        if (!w.sh) {
            m->err = 1;
            snprintf(m->msg, sizeof m->msg, "%.255s", e.msg);
        } else {
            gpt2_shard_init_random(w.sh, cfg->training.seed);
            w.st = optim_state_new(w.sh);
            w.a = gpt2_acts_new(w.sh, B, T);
            w.tok = et_xcalloc(N, sizeof *w.tok);
            w.tgt = et_xcalloc(N, sizeof *w.tgt);
            uint64_t r = 0x9e3779b97f4a7c15ull ^ (uint64_t)(ro.replica * plan->n_stages + ro.stage + 1);
            for (size_t i = 0; i < N; i++) {
                w.tok[i] = (int)(cal_rand(&r) % (uint64_t)cfg->model.vocab_size);
                w.tgt[i] = (int)(cal_rand(&r) % (uint64_t)cfg->model.vocab_size);
            }
            if (!ro.has_embed) {
                w.x = et_amalloc(N * (size_t)C * sizeof *w.x);
                for (size_t i = 0; i < N * (size_t)C; i++)
                    w.x[i] = (float)((double)(cal_rand(&r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
            }
            if (!ro.has_head) {
                w.dx = et_amalloc(N * (size_t)C * sizeof *w.dx);
                for (size_t i = 0; i < N * (size_t)C; i++)
                    w.dx[i] = (float)((double)(cal_rand(&r) >> 11) / 9007199254740992.0 * 2e-3 - 1e-3);
            }
        }
    }
    if (w.sh) {
        /* warm-up: first touches of every buffer, BLAS set-up */
        cal_once(&w, CAL_FB);
        cal_once(&w, CAL_OPT);
    }
    cal_barrier(MPI_COMM_WORLD);
    m->t_begin = wallclock();
    if (w.sh) {
        m->fb_s = cal_time(&w, CAL_FB, seconds / CAL_PARTS, 0, &m->n_fb);
        m->fwd_s = cal_time(&w, CAL_FWD, seconds / 2 / CAL_PARTS, 0, &m->n_fwd);
        m->opt_s = cal_time(&w, CAL_OPT, seconds / 4 / CAL_PARTS, 0, &m->n_opt);
    }
    m->fbtp_s = NAN;
    for (int gi = 0; gi < n_groups; gi++) {
        cal_barrier(MPI_COMM_WORLD);
        if (tp_comm == MPI_COMM_NULL || tp_color != gi)
            continue;
        /* Every member runs the same count (collectives inside): enough for
         * seconds/2 at the slowest member's pace without the reduction
         * (about `seconds` with it). */
        double slowest = w.sh ? m->fb_s : 0;
        MPI_Allreduce(MPI_IN_PLACE, &slowest, 1, MPI_DOUBLE, MPI_MAX, tp_comm);
        int per_part = 1;
        if (slowest > 0 && seconds / 2 / CAL_PARTS / slowest > per_part)
            per_part = (int)ceil(seconds / 2 / CAL_PARTS / slowest);
        int ok = w.sh != NULL, all_ok = 0;
        MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, tp_comm);
        if (all_ok) {
            gpt2_tp tp = {cal_tp_allreduce, &tp_comm, NULL};
            w.tp = &tp;
            cal_once(&w, CAL_FB);
            MPI_Barrier(tp_comm);
            m->fbtp_s = cal_time(&w, CAL_FB, 0, per_part, &m->n_fbtp);
            w.tp = NULL;
        }
    }
    cal_barrier(MPI_COMM_WORLD);
    m->t_end = wallclock();
    free(w.tok);
    free(w.tgt);
    et_afree(w.x);
    et_afree(w.dx);
    gpt2_acts_free(w.a);
    if (w.st)
        optim_state_free(w.st);
    gpt2_shard_free(w.sh);
}

/* Median of v[0..n-1] (sorts v). */
/* The rank side (testbed.h). */
int et_testbed_calibrate_ranks(const char *config, const char *plan_path, double seconds)
{
    MPI_Init(NULL, NULL);
    int me, np;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(config, &e);
    et_plan *plan = cfg ? plan_load(plan_path, cfg, &e) : NULL;
    cal_meas m;
    memset(&m, 0, sizeof m);
    m.server = -1;
    gethostname(m.host, sizeof m.host - 1);
    if (!plan) {
        m.err = 1;
        snprintf(m.msg, sizeof m.msg, "%.255s", e.msg);
    } else if (np != plan_n_ranks(plan)) {
        m.err = 1;
        snprintf(m.msg, sizeof m.msg, "%d ranks started, the plan has %d", np, plan_n_ranks(plan));
    } else {
        m.server = et_cluster_find(&cfg->cluster, m.host);
        plan_role ro;
        int want = me == 0 ? 0 : (plan_rank_role(plan, me, &ro) == 0 ? ro.server : -1);
        if (m.server != want) {
            m.err = 1;
            snprintf(m.msg, sizeof m.msg, "rank %d runs on host '%s', the plan puts it on server %s", me,
                     m.host, want >= 0 ? cfg->cluster.servers[want].name : "?");
        }
    }
    int ok = !m.err, all_ok = 0;
    MPI_Request req;
    MPI_Iallreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    cal_wait(&req);
    cal_meas *all = me == 0 ? et_xcalloc((size_t)np, sizeof *all) : NULL;
    int rc = 0;
    MPI_Comm tp_comm = MPI_COMM_NULL;
    if (all_ok) {
        /* One communicator per tensor-parallel group (replica, stage) of
         * more than one rank; everyone else (the controller) takes none. */
        plan_role ro;
        int color = MPI_UNDEFINED;
        if (me > 0 && plan_rank_role(plan, me, &ro) == 0 && ro.tp > 1)
            color = ro.replica * plan->n_stages + ro.stage;
        MPI_Comm_split(MPI_COMM_WORLD, color, me, &tp_comm);
        cal_compute(cfg, plan, me, seconds, tp_comm, color, plan->n_replicas * plan->n_stages, &m);
        ok = !m.err;
        if (tp_comm != MPI_COMM_NULL)
            MPI_Comm_free(&tp_comm);
    }
    MPI_Igather(&m, (int)sizeof m, MPI_BYTE, all, (int)sizeof m, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    cal_wait(&req);
    MPI_Iallreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    cal_wait(&req);
    if (me == 0)
        for (int r = 0; r < np; r++)
            if (all[r].err) {
                fprintf(stderr, "edgetrain: testbed calibrate: rank %d on %s: %s\n", r, all[r].host,
                        all[r].msg);
                rc = 1;
            }
    if (!all_ok || !ok) {
        free(all);
        plan_free(plan);
        et_config_free(cfg);
        MPI_Finalize();
        return rc ? rc : 1;
    }

    /* Links: the lowest worker rank of each server speaks for it. */
    const et_cluster *c = &cfg->cluster;
    int ns = c->n_servers;
    int *leader = et_xcalloc((size_t)ns, sizeof *leader);
    for (int s = 0; s < ns; s++)
        leader[s] = -1;
    for (int r = np - 1; r >= 1; r--) {
        plan_role ro;
        if (plan_rank_role(plan, r, &ro) == 0)
            leader[ro.server] = r;
    }
    /* The boundary tensor's bytes (capped: a probe need not be huge to
     * measure a link's bandwidth). */
    long lbytes = 4L * plan->micro_batch * cfg->training.seq_len * cfg->model.n_embd;
    int bytes = lbytes > CAL_MAX_BYTES ? CAL_MAX_BYTES : (int)lbytes;
    char *buf = et_xcalloc((size_t)bytes, 1);
    if (me == 0) {
        printf("etb-calib window %.3f %.3f\n", m.t_begin, m.t_end);
        for (int r = 1; r < np; r++)
            printf("etb-calib rank %d server %s fb %.9g fwd %.9g opt %.9g fbtp %.9g reps %d %d %d %d\n",
                   r, c->servers[all[r].server].name, all[r].fb_s, all[r].fwd_s, all[r].opt_s,
                   all[r].fbtp_s, all[r].n_fb, all[r].n_fwd, all[r].n_opt, all[r].n_fbtp);
        fflush(stdout);
    }
    for (int a = 0; a < ns; a++)
        for (int b = a + 1; b < ns; b++) {
            if (leader[a] < 0 || leader[b] < 0)
                continue;
            int ra = leader[a], rb = leader[b];
            cal_barrier(MPI_COMM_WORLD);
            double v[3] = {0, 0, 0};
            if (me == ra || me == rb) {
                double t[CAL_RTT_REPS > CAL_MSG_REPS ? CAL_RTT_REPS : CAL_MSG_REPS];
                v[0] = pp_median(MPI_COMM_WORLD, me, ra, rb, buf, 1, CAL_RTT_REPS, t);
                v[1] = pp_median(MPI_COMM_WORLD, me, ra, rb, buf, bytes, CAL_MSG_REPS, t);
                double ba = pp_median(MPI_COMM_WORLD, me, rb, ra, buf, bytes, CAL_MSG_REPS, t);
                if (me == rb)
                    MPI_Send(&ba, 1, MPI_DOUBLE, ra, 13, MPI_COMM_WORLD);
                else
                    MPI_Recv(&v[2], 1, MPI_DOUBLE, rb, 13, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
            /* ra is never rank 0 (leaders are workers): it hands over. */
            if (me == ra) {
                MPI_Send(v, 3, MPI_DOUBLE, 0, 14, MPI_COMM_WORLD);
            } else if (me == 0) {
                MPI_Irecv(v, 3, MPI_DOUBLE, ra, 14, MPI_COMM_WORLD, &req);
                cal_wait(&req);
                printf("etb-calib link %s %s bytes %d rtt %.9g ab %.9g ba %.9g\n", c->servers[a].name,
                       c->servers[b].name, bytes, v[0], v[1], v[2]);
                fflush(stdout);
            }
        }
    cal_barrier(MPI_COMM_WORLD);
    if (me == 0) {
        printf("etb-calib end\n");
        fflush(stdout);
    }
    free(buf);
    free(leader);
    free(all);
    plan_free(plan);
    et_config_free(cfg);
    MPI_Finalize();
    return 0;
}

/* Digest of what a calibration measures for (testbed.h). */
void et_tb_cal_plan_sig(const et_config *cfg, const et_plan *p, char out[17])
{
    sbuf b = {0};
    const gpt2_config *g = &cfg->model;
    sb_printf(&b, "model %d %d %d %d %d\n", g->n_layer, g->n_head, g->n_embd, g->vocab_size,
              g->block_size);
    sb_printf(&b, "shape %d %d %d %d %d %d\n", p->micro_batch, cfg->training.seq_len,
              p->micro_batches, p->n_stages, p->n_replicas, p->schedule);
    for (int s = 0; s < p->n_stages; s++)
        sb_printf(&b, "stage %d %d %d\n", p->first[s], p->last[s], p->tp[s]);
    for (int k = 0; k < plan_n_workers(p); k++)
        sb_printf(&b, "server %s\n", cfg->cluster.servers[p->server[k]].name);
    fnv_hex(b.s, out);
    free(b.s);
}

void et_tb_cal_free(et_tb_cal *c)
{
    if (!c)
        return;
    free(c->srv);
    free(c->link);
    memset(c, 0, sizeof *c);
}

/* An empty calibration for cfg's servers (config figures, nothing measured). */
static void cal_init(et_tb_cal *c, const et_config *cfg)
{
    memset(c, 0, sizeof *c);
    c->n_servers = cfg->cluster.n_servers;
    c->others_cores = c->t_begin = c->t_end = NAN;
    c->srv = et_xcalloc((size_t)c->n_servers, sizeof *c->srv);
    for (int i = 0; i < c->n_servers; i++) {
        const et_server *s = &cfg->cluster.servers[i];
        snprintf(c->srv[i].name, sizeof c->srv[i].name, "%s", s->name);
        c->srv[i].gflops_config = c->srv[i].gflops = s->gflops;
        c->srv[i].fb_s = c->srv[i].fwd_s = c->srv[i].opt_s = c->srv[i].model_fb_s = NAN;
        c->srv[i].fbtp_s = NAN;
    }
}

/* Append a measured pair (links grow one at a time; few servers). */
static et_tb_cal_link *cal_add_link(et_tb_cal *c)
{
    c->link = et_xrealloc(c->link, (size_t)(c->n_links + 1) * sizeof *c->link);
    et_tb_cal_link *l = &c->link[c->n_links++];
    memset(l, 0, sizeof *l);
    l->rtt_s = l->ab_s = l->ba_s = l->ar_s = NAN;
    return l;
}

/* The entry of pair {a, b} (a != b), appended (nothing measured) when absent. */
static et_tb_cal_link *cal_pair(et_tb_cal *c, const et_config *cfg, int a, int b, double bytes)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    for (int k = 0; k < c->n_links; k++)
        if (c->link[k].a == lo && c->link[k].b == hi)
            return &c->link[k];
    et_tb_cal_link *l = cal_add_link(c);
    l->a = lo;
    l->b = hi;
    l->bytes = bytes;
    l->config = et_cluster_link(&cfg->cluster, lo, hi);
    l->calibrated = l->config;
    return l;
}

/* The calibrated link of a measured pair (see testbed.h): latency rtt/2,
 * bandwidth from the large messages' one-way time less the round trip, or,
 * inside a TP group, the bandwidth that makes the ring all-reduce of `bytes`
 * over ar_p members take ar_s at that latency; never better than the
 * config's link. */
static et_link cal_link_of(const et_tb_cal_link *l)
{
    et_link r = l->config;
    double lat = l->rtt_s / 2, one = (l->ab_s + l->ba_s) / 2 - l->rtt_s;
    if (isfinite(lat) && lat > r.latency)
        r.latency = lat;
    double bw = isfinite(one) && one > 0 ? l->bytes / one : INFINITY;
    if (isfinite(l->ar_s) && l->ar_p > 1) {
        /* ring: 2(p-1) steps of latency + bytes/(p*bw) */
        double step = l->ar_s / (2.0 * (l->ar_p - 1));
        bw = step > r.latency ? l->bytes / l->ar_p / (step - r.latency) : INFINITY;
    }
    if (isfinite(bw) && bw < r.bandwidth)
        r.bandwidth = bw;
    return r;
}

/*
 * Per-server figures from the ranks' measurements (testbed.h): each worker
 * rank's step work as the cost model charges it (M micro-batches of its
 * stage's forward+backward FLOPs, and its optimizer's bytes at
 * CM_FLOP_PER_BYTE), summed per server, over the measured seconds of the
 * same work; and each TP group's in-stage all-reduce time (see testbed.h)
 * onto the pairs inside it. meas[k] is rank k's (fb, fwd, opt, fbtp)
 * seconds.
 */
static void cal_derive_servers(et_tb_cal *c, const et_config *cfg, const et_plan *p,
                               const double (*meas)[4], const int *have)
{
    cm_model cm;
    cm_model_init(&cm, &cfg->model, p->micro_batch, cfg->training.seq_len);
    int n = c->n_servers, M = p->micro_batches;
    double *charge = et_xcalloc((size_t)n, sizeof *charge), *secs = et_xcalloc((size_t)n, sizeof *secs);
    double *fb = et_xcalloc((size_t)n, sizeof *fb), *fwd = et_xcalloc((size_t)n, sizeof *fwd);
    double *opt = et_xcalloc((size_t)n, sizeof *opt), *mfb = et_xcalloc((size_t)n, sizeof *mfb);
    double *fbtp = et_xcalloc((size_t)n, sizeof *fbtp);
    int *ntp = et_xcalloc((size_t)n, sizeof *ntp);
    for (int k = 1; k < plan_n_ranks(p); k++) {
        plan_role ro;
        if (!have[k] || plan_rank_role(p, k, &ro) != 0)
            continue;
        int nl = ro.layer_last - ro.layer_first + 1, s = ro.server;
        double f = nl * cm.block_fwd_flops / ro.tp + (ro.has_head ? cm.head_fwd_flops : 0.0);
        double b = nl * cm.block_bwd_flops / ro.tp + (ro.has_head ? cm.head_bwd_flops : 0.0);
        double params = (double)cm_stage_params(&cm, nl, ro.has_embed, ro.has_head, ro.tp, p->n_stages);
        charge[s] += M * (f + b) + params * CM_OPT_BYTES_PER_PARAM * CM_FLOP_PER_BYTE;
        secs[s] += M * meas[k][0] + meas[k][2];
        fb[s] += meas[k][0];
        fwd[s] += meas[k][1];
        opt[s] += meas[k][2];
        mfb[s] += (f + b) / (cfg->cluster.servers[s].gflops * 1e9);
        if (isfinite(meas[k][3])) {
            fbtp[s] += meas[k][3];
            ntp[s]++;
        }
        c->srv[s].ranks++;
    }
    /* TP groups: one all-reduce = (the group's forward+backward with them -
     * its slowest member's without) / (4 per layer). */
    for (int r = 0; r < p->n_replicas; r++)
        for (int s = 0; s < p->n_stages; s++) {
            int tp = p->tp[s], nl = p->last[s] - p->first[s] + 1;
            if (tp < 2 || nl < 1)
                continue;
            double with = 0, without = 0;
            int ok = 1;
            for (int i = 0; i < tp; i++) {
                int k = plan_rank(p, r, s, i);
                ok &= have[k] && isfinite(meas[k][3]);
                if (ok) {
                    with += meas[k][3] / tp;
                    without = fmax(without, meas[k][0]);
                }
            }
            if (!ok)
                continue;
            double ar = (with - without) / (4.0 * nl);
            if (!(ar > 0))
                ar = 0;
            const int *g = plan_group_c(p, r, s);
            for (int i = 0; i < tp; i++)
                for (int j = i + 1; j < tp; j++) {
                    if (g[i] == g[j])
                        continue;
                    et_tb_cal_link *l = cal_pair(c, cfg, g[i], g[j], cm.tp_bytes);
                    if (!isfinite(l->ar_s) || ar > l->ar_s) {
                        l->ar_s = ar;
                        l->ar_p = tp;
                    }
                    l->calibrated = cal_link_of(l);
                }
        }
    for (int s = 0; s < n; s++) {
        et_tb_cal_server *v = &c->srv[s];
        if (!v->ranks || !(secs[s] > 0))
            continue;
        v->gflops = charge[s] / secs[s] / 1e9;
        v->fb_s = fb[s] / v->ranks;
        v->fwd_s = fwd[s] / v->ranks;
        v->opt_s = opt[s] / v->ranks;
        v->model_fb_s = mfb[s] / v->ranks;
        v->fbtp_s = ntp[s] ? fbtp[s] / ntp[s] : NAN;
    }
    free(fbtp);
    free(ntp);
    free(charge);
    free(secs);
    free(fb);
    free(fwd);
    free(opt);
    free(mfb);
}

/* Parse the job's "etb-calib" lines into c (the servers' figures and the
 * links). -1 with e set when a line is malformed or the end marker is
 * missing (the job died). */
static int cal_parse_job(et_tb_cal *c, const et_config *cfg, const et_plan *p, const char *text,
                         et_err *e)
{
    int nr = plan_n_ranks(p), ended = 0;
    double (*meas)[4] = et_xcalloc((size_t)nr, sizeof *meas);
    int *have = et_xcalloc((size_t)nr, sizeof *have);
    int rc = 0;
    for (const char *l = text; *l;) {
        size_t len = strcspn(l, "\n");
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), l);
        l += len + (l[len] ? 1 : 0);
        if (strncmp(line, "etb-calib ", 10) != 0)
            continue;
        int k, bytes, n1, n2, n3, n4;
        char a[ET_NAME_MAX], b[ET_NAME_MAX];
        double x, y, z, w;
        if (!strcmp(line, "etb-calib end")) {
            ended = 1;
        } else if (sscanf(line, "etb-calib window %lf %lf", &x, &y) == 2) {
            c->t_begin = x;
            c->t_end = y;
        } else if (sscanf(line, "etb-calib rank %d server %63s fb %lf fwd %lf opt %lf fbtp %lf reps %d %d "
                          "%d %d", &k, a, &x, &y, &z, &w, &n1, &n2, &n3, &n4) == 10) {
            if (k < 1 || k >= nr || !(x > 0) || !(y > 0) || !(z > 0) || w <= 0) {
                rc = et_errf(e, ET_ERUNTIME, "testbed calibrate: implausible measurement: %s", line);
                break;
            }
            meas[k][0] = x;
            meas[k][1] = y;
            meas[k][2] = z;
            meas[k][3] = w;
            have[k] = 1;
        } else if (sscanf(line, "etb-calib link %63s %63s bytes %d rtt %lf ab %lf ba %lf", a, b, &bytes,
                          &x, &y, &z) == 6) {
            int ia = et_cluster_find(&cfg->cluster, a), ib = et_cluster_find(&cfg->cluster, b);
            if (ia < 0 || ib < 0 || !(x > 0) || !(y > 0) || !(z > 0)) {
                rc = et_errf(e, ET_ERUNTIME, "testbed calibrate: implausible measurement: %s", line);
                break;
            }
            et_tb_cal_link *lk = cal_pair(c, cfg, ia, ib, bytes);
            lk->rtt_s = x;
            lk->ab_s = ia < ib ? y : z;
            lk->ba_s = ia < ib ? z : y;
            lk->config = et_cluster_link(&cfg->cluster, lk->a, lk->b);
            lk->calibrated = cal_link_of(lk);
        } else {
            rc = et_errf(e, ET_ERUNTIME, "testbed calibrate: unexpected line from the job: %s", line);
            break;
        }
    }
    if (!rc && !ended)
        rc = et_errf(e, ET_ERUNTIME, "testbed calibrate: the calibration job ended early (no results)");
    for (int k = 1; !rc && k < nr; k++)
        if (!have[k])
            rc = et_errf(e, ET_ERUNTIME, "testbed calibrate: no measurement from rank %d", k);
    if (!rc)
        cal_derive_servers(c, cfg, p, (const double(*)[4])meas, have);
    free(meas);
    free(have);
    return rc;
}

/* Mean cores that other work used between realtimes t0 and t1 according to
 * a monitor's CSV (et_testbed_monitor_start); NAN when it says nothing. */
static double cal_others(const char *csv, double t0, double t1)
{
    FILE *f = fopen(csv, "r");
    if (!f)
        return NAN;
    char line[256];
    double sum = 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        double t, h, b, l, o;
        if (sscanf(line, "%lf,%lf,%lf,%lf,%lf", &t, &h, &b, &l, &o) == 5 && t > t0 && t - 0.5 < t1) {
            sum += o;
            n++;
        }
    }
    fclose(f);
    return n ? sum / n : NAN;
}

/* Host side (testbed.h): the plan into the share directory, the rankfile,
 * the job across the containers, its lines parsed, the result stored. */
int et_testbed_calibrate(const et_config *cfg, const et_plan *plan, double seconds, FILE *log,
                         et_tb_cal *out, et_err *e)
{
    memset(out, 0, sizeof *out);
    if (!(seconds > 0) || seconds > 600)
        return et_errf(e, ET_EINPUT, "testbed calibrate: seconds must be in (0, 600]");
    char name[ET_TB_NAME_MAX + 1];
    et_testbed_name_from(cfg->name, name);
    et_testbed *tb = et_testbed_load_state(name, e);
    if (!tb)
        return -1;
    if (tb->containers && tb->recipe < 3) {
        et_testbed_free(tb);
        return et_errf(e, ET_ERUNTIME, "testbed '%s' was made by an older edgetrain (no shared "
                       "directory for the calibration): run 'edgetrain testbed up %s' again",
                       name, cfg->path);
    }
    char share[ET_PATH_MAX], plan_file[ET_PATH_MAX + 32], rankfile[ET_PATH_MAX + 32];
    tb_share_dir(name, share, sizeof share);
    snprintf(plan_file, sizeof plan_file, "%s/calib-plan.yaml", share);
    snprintf(rankfile, sizeof rankfile, "%s/calib-rankfile", share);
    if (plan_write(plan, cfg, plan_file, e) != 0) {
        et_testbed_free(tb);
        return -1;
    }
    sbuf rf = {0};
    sb_printf(&rf, "# edgetrain test bed calibration: rank 0 beside the controller, then the plan's workers\n");
    {
        int nr = plan_n_ranks(plan), *count = et_xcalloc((size_t)cfg->cluster.n_servers, sizeof *count);
        for (int k = 0; k < nr; k++) {
            plan_role ro;
            int s = k == 0 ? 0 : (plan_rank_role(plan, k, &ro) == 0 ? ro.server : 0);
            sb_printf(&rf, "rank %d=%s slot=%d\n", k, cfg->cluster.servers[s].name, count[s]++);
        }
        free(count);
    }
    int rc = write_file_atomic(rankfile, rf.s, e);
    free(rf.s);
    if (rc < 0) {
        et_testbed_free(tb);
        return -1;
    }

    char exe[ET_PATH_MAX], cfg_abs[ET_PATH_MAX], np[16], secs[32];
    if (self_exe(exe, sizeof exe) < 0 || !realpath(cfg->path, cfg_abs)) {
        et_testbed_free(tb);
        return et_errf(e, ET_ERUNTIME, "testbed calibrate: cannot resolve the binary or %s", cfg->path);
    }
    snprintf(np, sizeof np, "%d", plan_n_ranks(plan));
    snprintf(secs, sizeof secs, "%g", seconds);
    argvec j = {0};
    av_push(&j, "mpirun");
    av_push(&j, "-np");
    av_push(&j, np);
    av_push(&j, "--rankfile");
    av_push(&j, rankfile);
    av_push(&j, "-x");
    av_push(&j, "OPENBLAS_NUM_THREADS=1");
    if (getenv("OPENBLAS_CORETYPE")) {
        av_push(&j, "-x");
        av_push(&j, "OPENBLAS_CORETYPE");
    }
    av_push(&j, exe);
    av_push(&j, "testbed");
    av_push(&j, "calibrate-ranks");
    av_push(&j, cfg_abs);
    av_push(&j, plan_file);
    av_push(&j, secs);
    char **full = NULL;
    double load[1] = {NAN};
    if (getloadavg(load, 1) < 1)
        load[0] = NAN;
    int groups = 0;
    for (int st = 0; st < plan->n_stages; st++)
        groups += plan->tp[st] > 1 ? plan->n_replicas : 0;
    if (log)
        fprintf(log, "testbed: calibrating '%s' for this plan (%d ranks, about %.0f s)\n", name,
                plan_n_ranks(plan), (1.75 + groups) * seconds + 8);
    rc = et_testbed_launch_argv(cfg, j.v, 120 + 4 * seconds, &full, e);
    av_free(&j);
    if (rc < 0) {
        et_testbed_free(tb);
        return -1;
    }
    size_t cap = 65536 + (size_t)cfg->cluster.n_servers * (size_t)cfg->cluster.n_servers * 160 +
                 (size_t)plan_n_ranks(plan) * 160;
    char *text = et_xmalloc(cap), csv[ET_PATH_MAX + 32];
    snprintf(csv, sizeof csv, "%s/calib-hostcpu.csv", share);
    /* Other work on the host only ever slows a measurement: a calibration
     * during which it used CAL_QUIET_CORES or more is made again (up to
     * CAL_TRIES in all), and the quietest one is kept. */
    int have = 0;
    for (int t = 0; t < CAL_TRIES; t++) {
        et_err me;
        et_err_clear(&me);
        et_tb_monitor *mon = et_testbed_monitor_start(name, csv, 0.5, &me);
        rc = run_cmd(full, 1, text, cap, NULL, 0, e);
        et_testbed_monitor_stop(mon);
        if (rc != 0) {
            rc = rc < 0 ? -1 : et_errf(e, ET_ERUNTIME, "testbed calibrate: the calibration job failed "
                                       "(mpirun exit %d%s)", rc, rc == 124 ? ": timed out" : "");
            break;
        }
        et_tb_cal cur;
        cal_init(&cur, cfg);
        snprintf(cur.testbed, sizeof cur.testbed, "%s", name);
        snprintf(cur.fingerprint, sizeof cur.fingerprint, "%s", tb->fingerprint);
        et_tb_cal_plan_sig(cfg, plan, cur.plan_sig);
        cur.when = wallclock();
        cur.load1 = load[0];
        cur.seconds = seconds;
        cur.cpu_scale = tb->cpu_scale;
        cur.micro_batch = plan->micro_batch;
        cur.seq_len = cfg->training.seq_len;
        cur.micro_batches = plan->micro_batches;
        cur.tries = t + 1;
        for (int i = 0; i < cur.n_servers; i++)
            for (int k = 0; k < tb->n; k++)
                if (!strcmp(tb->srv[k].name, cur.srv[i].name))
                    cur.srv[i].cpus = tb->srv[k].cpus;
        if ((rc = cal_parse_job(&cur, cfg, plan, text, e)) < 0) {
            et_tb_cal_free(&cur);
            break;
        }
        cur.others_cores = cal_others(csv, cur.t_begin, cur.t_end);
        if (!have || !(cur.others_cores >= out->others_cores)) {
            if (have)
                et_tb_cal_free(out);
            *out = cur;
            have = 1;
        } else {
            et_tb_cal_free(&cur);
        }
        if (!(out->others_cores >= CAL_QUIET_CORES))
            break;
        if (log && t + 1 < CAL_TRIES)
            fprintf(log, "testbed: other work on the host used %.2f cores during the calibration: "
                    "measuring again\n", out->others_cores);
        if (getloadavg(load, 1) < 1)
            load[0] = NAN;
    }
    free(text);
    unlink(csv);
    et_testbed_argv_free(full);
    et_testbed_free(tb);
    if (rc < 0) {
        if (have)
            et_tb_cal_free(out);
        return -1;
    }
    char state[ET_PATH_MAX];
    tb_file(name, "calibration", state, sizeof state);
    if (et_tb_cal_save(out, cfg, state, e) < 0) {
        et_tb_cal_free(out);
        return -1;
    }
    return 0;
}

/* The text form (testbed.h): header keys, one "server" line per server,
 * one "link" line per measured pair. */
int et_tb_cal_save(const et_tb_cal *c, const et_config *cfg, const char *path, et_err *e)
{
    (void)cfg;
    sbuf b = {0};
    sb_printf(&b, "edgetrain-testbed-calibration %d\n", CAL_FORMAT);
    sb_printf(&b, "testbed %s\nfingerprint %s\nplan %s\n", c->testbed, c->fingerprint, c->plan_sig);
    sb_printf(&b, "when %.3f\nload1 %.17g\nseconds %.17g\ncpu_scale %.17g\n", c->when, c->load1,
              c->seconds, c->cpu_scale);
    sb_printf(&b, "shape %d %d %d\n", c->micro_batch, c->seq_len, c->micro_batches);
    sb_printf(&b, "others_cores %.17g\ntries %d\nwindow %.3f %.3f\n", c->others_cores, c->tries,
              c->t_begin, c->t_end);
    for (int i = 0; i < c->n_servers; i++) {
        const et_tb_cal_server *s = &c->srv[i];
        sb_printf(&b, "server %s ranks %d cpus %.17g gflops_config %.17g gflops %.17g fb %.17g fwd %.17g "
                  "opt %.17g model_fb %.17g fbtp %.17g\n", s->name, s->ranks, s->cpus, s->gflops_config,
                  s->gflops, s->fb_s, s->fwd_s, s->opt_s, s->model_fb_s, s->fbtp_s);
    }
    for (int i = 0; i < c->n_links; i++) {
        const et_tb_cal_link *l = &c->link[i];
        sb_printf(&b, "link %s %s bytes %.17g rtt %.17g ab %.17g ba %.17g ar %.17g p %d\n",
                  c->srv[l->a].name, c->srv[l->b].name, l->bytes, l->rtt_s, l->ab_s, l->ba_s, l->ar_s,
                  l->ar_p);
    }
    int rc = write_file_atomic(path, b.s, e);
    free(b.s);
    return rc;
}

/* Read the text form back (testbed.h). */
int et_tb_cal_load(const char *path, const et_config *cfg, et_tb_cal *out, et_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return et_errf(e, ET_EINPUT, "%s: cannot read (%s)", path, strerror(errno));
    cal_init(out, cfg);
    char line[1024];
    int lineno = 0, bad = 0, version = 0;
    const char *why = "malformed line";
    while (!bad && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char key[40], a[ET_NAME_MAX], b[ET_NAME_MAX];
        int off = 0;
        if (sscanf(line, "%39s %n", key, &off) != 1)
            continue;
        const char *v = line + off;
        if (!strcmp(key, "edgetrain-testbed-calibration")) {
            version = atoi(v);
        } else if (!strcmp(key, "testbed")) {
            snprintf(out->testbed, sizeof out->testbed, "%.*s", ET_TB_NAME_MAX, v);
        } else if (!strcmp(key, "fingerprint")) {
            snprintf(out->fingerprint, sizeof out->fingerprint, "%.16s", v);
        } else if (!strcmp(key, "plan")) {
            snprintf(out->plan_sig, sizeof out->plan_sig, "%.16s", v);
        } else if (!strcmp(key, "when")) {
            out->when = strtod(v, NULL);
        } else if (!strcmp(key, "load1")) {
            out->load1 = strtod(v, NULL);
        } else if (!strcmp(key, "seconds")) {
            out->seconds = strtod(v, NULL);
        } else if (!strcmp(key, "cpu_scale")) {
            out->cpu_scale = strtod(v, NULL);
        } else if (!strcmp(key, "others_cores")) {
            out->others_cores = strtod(v, NULL);
        } else if (!strcmp(key, "tries")) {
            out->tries = atoi(v);
        } else if (!strcmp(key, "window")) {
            bad = sscanf(v, "%lf %lf", &out->t_begin, &out->t_end) != 2;
        } else if (!strcmp(key, "shape")) {
            bad = sscanf(v, "%d %d %d", &out->micro_batch, &out->seq_len, &out->micro_batches) != 3;
        } else if (!strcmp(key, "server")) {
            et_tb_cal_server s;
            memset(&s, 0, sizeof s);
            double gc;
            if (sscanf(v, "%63s ranks %d cpus %lf gflops_config %lf gflops %lf fb %lf fwd %lf opt %lf "
                       "model_fb %lf fbtp %lf", a, &s.ranks, &s.cpus, &gc, &s.gflops, &s.fb_s, &s.fwd_s,
                       &s.opt_s, &s.model_fb_s, &s.fbtp_s) != 10) {
                bad = 1;
                continue;
            }
            int i = et_cluster_find(&cfg->cluster, a);
            if (i < 0 || !(s.gflops > 0)) {
                bad = 1;
                why = i < 0 ? "a server the config does not have" : "gflops not positive";
                continue;
            }
            snprintf(s.name, sizeof s.name, "%s", cfg->cluster.servers[i].name);
            s.gflops_config = cfg->cluster.servers[i].gflops;
            out->srv[i] = s;
        } else if (!strcmp(key, "link")) {
            et_tb_cal_link l;
            memset(&l, 0, sizeof l);
            if (sscanf(v, "%63s %63s bytes %lf rtt %lf ab %lf ba %lf ar %lf p %d", a, b, &l.bytes, &l.rtt_s,
                       &l.ab_s, &l.ba_s, &l.ar_s, &l.ar_p) != 8) {
                bad = 1;
                continue;
            }
            int ia = et_cluster_find(&cfg->cluster, a), ib = et_cluster_find(&cfg->cluster, b);
            if (ia < 0 || ib < 0 || ia == ib) {
                bad = 1;
                why = "a pair of servers the config does not have";
                continue;
            }
            l.a = ia < ib ? ia : ib;
            l.b = ia < ib ? ib : ia;
            l.config = et_cluster_link(&cfg->cluster, l.a, l.b);
            l.calibrated = cal_link_of(&l);
            *cal_add_link(out) = l;
        }
    }
    fclose(f);
    if (!bad && version != CAL_FORMAT) {
        bad = 1;
        why = "not an edgetrain calibration (format 1)";
    }
    if (bad) {
        et_tb_cal_free(out);
        return et_errf(e, ET_EINPUT, "%s:%d: %s (calibrate again: edgetrain testbed calibrate CONFIG)",
                       path, lineno, why);
    }
    return 0;
}

/* The stored calibration, if it is for this test bed as it is now and this
 * plan (testbed.h). */
int et_testbed_stored_calibration(const char *name, const et_config *cfg, const char *plan_sig,
                                  et_tb_cal *out, et_err *e)
{
    char path[ET_PATH_MAX];
    tb_file(name, "calibration", path, sizeof path);
    if (access(path, F_OK) != 0)
        return 0;
    et_err e2;
    et_err_clear(&e2);
    et_testbed *tb = et_testbed_load_state(name, &e2);
    if (!tb)
        return 0;
    if (et_tb_cal_load(path, cfg, out, e) < 0) {
        et_testbed_free(tb);
        return -1;
    }
    int match = !strcmp(out->fingerprint, tb->fingerprint) && !strcmp(out->plan_sig, plan_sig);
    et_testbed_free(tb);
    if (!match)
        et_tb_cal_free(out);
    return match;
}

/* Calibrated copy of a cluster (testbed.h). */
void et_tb_cal_cluster(const et_tb_cal *c, const et_cluster *in, int links, et_cluster *out)
{
    int n = in->n_servers;
    *out = *in;
    out->servers = et_xmalloc((size_t)n * sizeof *out->servers);
    memcpy(out->servers, in->servers, (size_t)n * sizeof *out->servers);
    out->link = et_xmalloc((size_t)n * (size_t)n * sizeof *out->link);
    memcpy(out->link, in->link, (size_t)n * (size_t)n * sizeof *out->link);
    for (int i = 0; i < n && i < c->n_servers; i++)
        if (c->srv[i].ranks > 0)
            out->servers[i].gflops = c->srv[i].gflops;
    if (links)
        for (int k = 0; k < c->n_links; k++) {
            const et_tb_cal_link *l = &c->link[k];
            if (l->a >= n || l->b >= n)
                continue;
            out->link[(size_t)l->a * n + l->b] = l->calibrated;
            out->link[(size_t)l->b * n + l->a] = l->calibrated;
        }
}

void et_tb_cal_cluster_free(et_cluster *out)
{
    free(out->servers);
    free(out->link);
    out->servers = NULL;
    out->link = NULL;
}

/* A YAML double-quoted string of s into b. */
static void sb_yaml_str(sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            sb_printf(b, "\\x%02x", (unsigned char)*s);
        else
            sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

/* The calibrated config (testbed.h). */
int et_tb_cal_write_config(const et_tb_cal *c, const et_config *cfg, const char *path, et_err *e)
{
    char abs_cfg[ET_PATH_MAX];
    if (!realpath(cfg->path, abs_cfg))
        return et_errf(e, ET_ERUNTIME, "%s: cannot resolve (%s)", cfg->path, strerror(errno));
    time_t t = (time_t)c->when;
    struct tm tm;
    char when[40];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    sbuf b = {0};
    sb_printf(&b, "# %s as test bed '%s' really is (edgetrain testbed calibrate, %s; other work on the\n"
              "# host used %.2f cores meanwhile):\n"
              "# each measured server's gflops is what its container delivered for the plan's work\n"
              "# (micro_batch %d, seq_len %d), each measured pair's link what MPI messages of the\n"
              "# plan's size took between the containers. Servers and pairs not listed are the config's.\n",
              cfg->path, c->testbed, when, c->others_cores, c->micro_batch, c->seq_len);
    sb_printf(&b, "include: ");
    sb_yaml_str(&b, abs_cfg);
    sb_printf(&b, "\ncluster:\n  servers:\n");
    for (int i = 0; i < c->n_servers && i < cfg->cluster.n_servers; i++) {
        const et_server *s = &cfg->cluster.servers[i];
        if (c->srv[i].ranks <= 0)
            continue;
        sb_printf(&b, "    - {name: %s, host: ", s->name);
        sb_yaml_str(&b, s->host);
        sb_printf(&b, ", gflops: %.6g, memory: %llu, slots: %d}   # config: %.6g\n", c->srv[i].gflops,
                  (unsigned long long)s->memory, s->slots, s->gflops);
    }
    if (c->n_links) {
        sb_printf(&b, "  links:\n    pairs:\n");
        for (int k = 0; k < c->n_links; k++) {
            const et_tb_cal_link *l = &c->link[k];
            sb_printf(&b, "      - {between: [%s, %s], bandwidth: %.6gMbps, latency: %.6gms}"
                      "   # config: %.6g Mbps, %.6g ms\n",
                      cfg->cluster.servers[l->a].name, cfg->cluster.servers[l->b].name,
                      l->calibrated.bandwidth * 8e-6, l->calibrated.latency * 1e3,
                      l->config.bandwidth * 8e-6, l->config.latency * 1e3);
        }
    }
    int rc = write_file_atomic(path, b.s, e);
    free(b.s);
    return rc;
}

/* Predicted step times of plan (testbed.h): the cost model (the virtual
 * clock's simulation) on the config's cluster, with the calibrated gflops,
 * and with the calibrated gflops and links. */
void et_tb_cal_predict(const et_tb_cal *c, const et_config *cfg, const et_plan *plan, double out[3])
{
    cm_model cm;
    cm_model_init(&cm, &cfg->model, plan->micro_batch, cfg->training.seq_len);
    for (int k = 0; k < 3; k++) {
        et_cluster cl;
        et_tb_cal_cluster(c, &cfg->cluster, k == 2, &cl);
        et_plan *pc = plan_clone(plan);
        out[k] = cm_evaluate(&cm, k == 0 ? &cfg->cluster : &cl, pc);
        plan_free(pc);
        et_tb_cal_cluster_free(&cl);
    }
}

/* The controller's per-step messages (testbed.h). */
double et_tb_cal_control_s(const et_tb_cal *c, const et_config *cfg, const et_plan *plan)
{
    et_cluster cl;
    et_tb_cal_cluster(c, &cfg->cluster, 1, &cl);
    double out = 0, back = 0;
    for (int k = 0; k < plan_n_workers(plan); k++) {
        int w = plan->server[k];
        if (w == 0)
            continue;
        out = fmax(out, et_cluster_link(&cl, 0, w).latency);
        back = fmax(back, et_cluster_link(&cl, w, 0).latency);
    }
    et_tb_cal_cluster_free(&cl);
    return out + back;
}

/* Human rate "2.71 Gbit/s" / "940 Mbit/s". */
static void cal_fmt_bw(char *b, size_t n, double bytes_per_s)
{
    double bits = bytes_per_s * 8;
    if (!isfinite(bits))
        snprintf(b, n, "unlimited");
    else if (bits >= 1e9)
        snprintf(b, n, "%.3g Gbit/s", bits / 1e9);
    else
        snprintf(b, n, "%.3g Mbit/s", bits / 1e6);
}

/* The calibration as tables, and the plan's three predictions (testbed.h). */
void et_tb_cal_print(const et_tb_cal *c, const et_config *cfg, const et_plan *plan, FILE *out)
{
    fprintf(out, "calibration of test bed '%s' for this plan (micro_batch %d, seq_len %d, %d "
            "micro-batches; other work on the host used %.2f cores while it measured, try %d):\n",
            c->testbed, c->micro_batch, c->seq_len, c->micro_batches, c->others_cores, c->tries);
    fprintf(out, "  %-12s %6s %10s %10s %14s %14s %8s %14s\n", "server", "cpus", "GFLOP/s", "calibrated",
            "fwd+bwd/mb", "at config", "bwd/fwd", "with TP");
    for (int i = 0; i < c->n_servers; i++) {
        const et_tb_cal_server *s = &c->srv[i];
        if (s->ranks <= 0) {
            fprintf(out, "  %-12s %6.3f %10.4g %10s  (no rank of the plan: not measured)\n", s->name,
                    s->cpus, s->gflops_config, "-");
            continue;
        }
        fprintf(out, "  %-12s %6.3f %10.4g %10.4g %11.2f ms %11.2f ms %8.2f", s->name, s->cpus,
                s->gflops_config, s->gflops, s->fb_s * 1e3, s->model_fb_s * 1e3,
                (s->fb_s - s->fwd_s) / s->fwd_s);
        if (isfinite(s->fbtp_s))
            fprintf(out, " %11.2f ms", s->fbtp_s * 1e3);
        fprintf(out, "\n");
    }
    if (c->n_links) {
        fprintf(out, "  %-25s %-26s %-26s %s\n", "pair", "config", "calibrated", "measured");
        for (int k = 0; k < c->n_links; k++) {
            const et_tb_cal_link *l = &c->link[k];
            char pair[2 * ET_NAME_MAX + 4], b1[32], b2[32], x1[64], x2[64];
            snprintf(pair, sizeof pair, "%s-%s", c->srv[l->a].name, c->srv[l->b].name);
            cal_fmt_bw(b1, sizeof b1, l->config.bandwidth);
            cal_fmt_bw(b2, sizeof b2, l->calibrated.bandwidth);
            snprintf(x1, sizeof x1, "%s, %.3g ms", b1, l->config.latency * 1e3);
            snprintf(x2, sizeof x2, "%s, %.3g ms", b2, l->calibrated.latency * 1e3);
            fprintf(out, "  %-25s %-26s %-26s rtt %.3g ms, %.0f kB: %.3g / %.3g ms", pair, x1, x2,
                    l->rtt_s * 1e3, l->bytes / 1e3, l->ab_s * 1e3, l->ba_s * 1e3);
            if (isfinite(l->ar_s))
                fprintf(out, "; TP all-reduce in the stage %.3g ms", l->ar_s * 1e3);
            fprintf(out, "\n");
        }
    }
    double pr[3];
    et_tb_cal_predict(c, cfg, plan, pr);
    fprintf(out, "predicted step: %.4g s with the config's profiles; %.4g s with the calibrated "
            "compute; %.4g s with the calibrated compute and links (+ %.3g ms of the controller's "
            "messages per step)\n", pr[0], pr[1], pr[2], 1e3 * et_tb_cal_control_s(c, cfg, plan));
}

/* ------------------------------------------------------- host CPU monitor */

/*
 * Where the host's CPU goes during a test bed run (testbed.h): a thread
 * samples, every period, the host's busy time (/proc/stat), the test bed's
 * containers' (their cgroups' cpuacct) and the link emulator's (/proc/PID/stat),
 * and appends one CSV row of cores used over the interval. What is left,
 * `others_cores`, is everybody else's work on the host: it slows the run but
 * is no part of the test bed.
 */
struct et_tb_monitor {
    pthread_t th;
    volatile int stop;
    FILE *f;
    double period;
    int n_cg;
    char (*cg)[ET_PATH_MAX];     /* cpuacct.usage (v1) or cpu.stat (v2) of each container */
    int cg_v2;
    pid_t linkemu;
};

/* Host busy seconds since boot (user, nice, system, irq, softirq, steal). */
static double mon_host_busy(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return NAN;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return NAN;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of one container's cgroup (NAN when unreadable). */
static double mon_cg_seconds(const char *path, int v2)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    double s = NAN;
    if (!v2) {
        unsigned long long ns;
        if (fscanf(f, "%llu", &ns) == 1)
            s = (double)ns * 1e-9;
    } else {
        char key[64];
        unsigned long long us;
        while (fscanf(f, "%63s %llu", key, &us) == 2)
            if (!strcmp(key, "usage_usec")) {
                s = (double)us * 1e-6;
                break;
            }
    }
    fclose(f);
    return s;
}

/* CPU seconds of process pid (utime + stime), NAN when gone. */
static double mon_pid_seconds(pid_t pid)
{
    char buf[1024];
    if (pid <= 0 || read_proc(pid, "stat", buf, sizeof buf) <= 0)
        return NAN;
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* One sample: host, containers, link emulator (CPU seconds so far). */
static void mon_sample(const et_tb_monitor *m, double v[3])
{
    v[0] = mon_host_busy();
    v[1] = 0;
    for (int i = 0; i < m->n_cg; i++)
        v[1] += mon_cg_seconds(m->cg[i], m->cg_v2);
    v[2] = mon_pid_seconds(m->linkemu);
    if (!isfinite(v[2]))
        v[2] = 0;
}

/* The sampling thread. */
static void *mon_thread(void *arg)
{
    et_tb_monitor *m = arg;
    double prev[3], cur[3], t_prev = wallclock();
    mon_sample(m, prev);
    while (!m->stop) {
        struct timespec ts = {(time_t)m->period, (long)((m->period - floor(m->period)) * 1e9)};
        nanosleep(&ts, NULL);
        double t = wallclock();
        mon_sample(m, cur);
        double dt = t - t_prev;
        if (dt > 0) {
            double host = (cur[0] - prev[0]) / dt, tb = (cur[1] - prev[1]) / dt, le = (cur[2] - prev[2]) / dt;
            fprintf(m->f, "%.3f,%.3f,%.3f,%.3f,%.3f\n", t, host, tb, le, fmax(host - tb - le, 0.0));
            fflush(m->f);
        }
        memcpy(prev, cur, sizeof prev);
        t_prev = t;
    }
    return NULL;
}

/* Start the monitor of test bed `name` writing csv_path (testbed.h). */
et_tb_monitor *et_testbed_monitor_start(const char *name, const char *csv_path, double period_s, et_err *e)
{
    et_testbed *tb = et_testbed_load_state(name, e);
    if (!tb)
        return NULL;
    et_tb_monitor *m = et_xcalloc(1, sizeof *m);
    m->period = period_s > 0.05 ? period_s : 0.05;
    m->linkemu = linkemu_running(name);
    m->cg = et_xcalloc((size_t)tb->n, sizeof *m->cg);
    struct stat st;
    m->cg_v2 = stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0;
    for (int i = 0; i < tb->n && tb->containers; i++) {
        char ctr[128], out[ET_PATH_MAX] = "";
        ctr_name(name, tb->srv[i].name, ctr, sizeof ctr);
        argvec a = {0};
        if (podman_base(&a, e) < 0)
            break;
        av_push(&a, "inspect");
        av_push(&a, "--format");
        av_push(&a, "{{.State.CgroupPath}}");
        av_push(&a, ctr);
        int rc = run_cmd(a.v, 0, out, sizeof out, NULL, 0, e);
        av_free(&a);
        out[strcspn(out, "\n")] = 0;
        if (rc != 0 || out[0] != '/')
            continue;
        if (m->cg_v2)
            snprintf(m->cg[m->n_cg++], ET_PATH_MAX, "/sys/fs/cgroup%.900s/cpu.stat", out);
        else
            snprintf(m->cg[m->n_cg++], ET_PATH_MAX, "/sys/fs/cgroup/cpuacct%.900s/cpuacct.usage", out);
    }
    et_testbed_free(tb);
    m->f = fopen(csv_path, "w");
    if (!m->f) {
        et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", csv_path, strerror(errno));
        free(m->cg);
        free(m);
        return NULL;
    }
    fprintf(m->f, "realtime,host_cores,testbed_cores,linkemu_cores,others_cores\n");
    fflush(m->f);
    if (pthread_create(&m->th, NULL, mon_thread, m) != 0) {
        et_errf(e, ET_ERUNTIME, "testbed: cannot start the CPU monitor thread");
        fclose(m->f);
        free(m->cg);
        free(m);
        return NULL;
    }
    return m;
}

/* Stop it: the thread ends after its current sample; the file gets its
 * last line, "# stopped REALTIME". */
void et_testbed_monitor_stop(et_tb_monitor *m)
{
    if (!m)
        return;
    m->stop = 1;
    pthread_join(m->th, NULL);
    fprintf(m->f, "# stopped %.3f\n", wallclock());
    fclose(m->f);
    free(m->cg);
    free(m);
}
