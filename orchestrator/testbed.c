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
 */
#include "testbed.h"

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

#define TB_STATE_VERSION 1
/* Bumped whenever what `up` makes from the same state changes (container
 * options, namespace setup): part of the fingerprint, so `up` remakes. */
#define TB_RECIPE 2
#define TB_RUNTIME_MEM (256ull << 20)   /* added to each server's memory for MPI and the runtime */
#define TB_MIN_CPUS 0.01                /* podman's --cpus lower bound (1 ms per 100 ms) */
#define TB_RESERVED_CORES 0.2           /* kept free for the link emulator and the launcher */
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

/* Make sure the image exists: present, or built now (slow, once) when
 * allowed. Progress of a build goes to our stderr. */
static int ensure_image(const char *image, int build, FILE *log, et_err *e)
{
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, "image");
    av_push(&a, "exists");
    av_push(&a, image);
    int rc = run_cmd(a.v, 0, NULL, 0, NULL, 0, e);
    av_free(&a);
    if (rc < 0)
        return -1;
    if (rc == 0)
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

/* Remove container ctr (force, no grace period). 1 if it existed. */
static int remove_container(const char *ctr, et_err *e)
{
    argvec a = {0};
    if (podman_base(&a, e) < 0)
        return -1;
    av_push(&a, "container");
    av_push(&a, "exists");
    av_push(&a, ctr);
    int rc = run_cmd(a.v, 0, NULL, 0, NULL, 0, e);
    av_free(&a);
    if (rc != 0)
        return 0;
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
    static const char *files[] = {"uts", "state", "links.tab", "linkemu.pid", "linkemu.log",
                                  "linkemu.stats", "linkemu.stats.tmp", "hosts", "resolv.conf",
                                  "hostfile"};
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

/* Comparison for qsort of doubles. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
    qsort(v, (size_t)got, sizeof *v, cmp_double);
    *rtt = v[got / 2];
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
