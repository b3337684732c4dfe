#include "launch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Is host this machine? */
static int host_is_local(const char *host)
{
    char me[256];
    if (!strcmp(host, "localhost") || !strcmp(host, "127.0.0.1") || !strcmp(host, "::1"))
        return 1;
    if (gethostname(me, sizeof me) == 0) {
        me[sizeof me - 1] = '\0';
        if (!strcmp(host, me))
            return 1;
    }
    return 0;
}

/* Host of MPI rank k: its server's host, or its server's name on the test
 * bed (where every server is a container of that hostname). */
static const char *rank_host(const et_plan *p, const et_config *cfg, int k, int by_name)
{
    int sv = 0;
    if (k > 0) {
        plan_role ro;
        plan_rank_role(p, k, &ro);
        sv = ro.server;
    }
    return by_name ? cfg->cluster.servers[sv].name : cfg->cluster.servers[sv].host;
}

/* Absolute form of path (realpath when it exists, else cwd-joined). */
static char *absolute(const char *path)
{
    char buf[PATH_MAX];
    if (realpath(path, buf))
        return et_xstrdup(buf);
    if (path[0] == '/')
        return et_xstrdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return et_xstrdup(path);
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *s = et_xmalloc(n);
    snprintf(s, n, "%s/%s", cwd, path);
    return s;
}

static void push(launch_material *lm, int *cap, const char *s)
{
    if (lm->argc + 2 > *cap) {
        *cap = *cap ? 2 * *cap : 32;
        lm->argv = et_xrealloc(lm->argv, (size_t)*cap * sizeof(char *));
    }
    lm->argv[lm->argc++] = et_xstrdup(s);
    lm->argv[lm->argc] = NULL;
}

/* Write the hostfile (distinct hosts in rank order, slots = ranks there) and
 * the rankfile (rank k=host slot=i, i counting ranks per host). */
static int write_host_files(const et_plan *p, const et_config *cfg, int by_name,
                            launch_material *lm, et_err *e)
{
    int n = plan_n_ranks(p);
    const char **hosts = et_xcalloc((size_t)n, sizeof *hosts);
    int *count = et_xcalloc((size_t)n, sizeof *count);
    int nh = 0;
    /* written under temporary names and renamed: an old pair stays whole
     * until the new one is complete */
    char rtmp[1200], htmp[1200];
    snprintf(rtmp, sizeof rtmp, "%s.tmp.%ld", lm->rankfile, (long)getpid());
    snprintf(htmp, sizeof htmp, "%s.tmp.%ld", lm->hostfile, (long)getpid());
    FILE *rf = fopen(rtmp, "w");
    FILE *hf = fopen(htmp, "w");
    int rc = 0;
    if (!rf || !hf) {
        rc = et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", !rf ? lm->rankfile : lm->hostfile,
                     strerror(errno));
        goto out;
    }
    fprintf(rf, "# edgetrain rankfile: rank 0 is the controller, then the plan's workers\n");
    for (int k = 0; k < n; k++) {
        const char *h = rank_host(p, cfg, k, by_name);
        int j;
        for (j = 0; j < nh; j++)
            if (!strcmp(hosts[j], h))
                break;
        if (j == nh)
            hosts[nh++] = h;
        fprintf(rf, "rank %d=%s slot=%d\n", k, h, count[j]++);
    }
    fprintf(hf, "# edgetrain hostfile: every host of the plan, slots = ranks it runs\n");
    for (int j = 0; j < nh; j++)
        fprintf(hf, "%s slots=%d\n", hosts[j], count[j]);
out:
    if (rf && fclose(rf) != 0 && !rc)
        rc = et_errf(e, ET_ERUNTIME, "%s: cannot write", lm->rankfile);
    if (hf && fclose(hf) != 0 && !rc)
        rc = et_errf(e, ET_ERUNTIME, "%s: cannot write", lm->hostfile);
    if (!rc && (rename(rtmp, lm->rankfile) != 0 || rename(htmp, lm->hostfile) != 0))
        rc = et_errf(e, ET_ERUNTIME, "%s: cannot rename into place (%s)", lm->hostfile, strerror(errno));
    if (rc) {
        unlink(rtmp);
        unlink(htmp);
    }
    free(hosts);
    free(count);
    return rc;
}

int launch_prepare(const et_plan *plan, const et_config *cfg, const char *config_path,
                   const char *plan_path, const launch_opts *o, launch_material *lm, et_err *e)
{
    memset(lm, 0, sizeof *lm);
    int n = plan_n_ranks(plan);
    lm->local = !o->testbed;
    for (int k = 0; k < n && lm->local; k++)
        if (!host_is_local(rank_host(plan, cfg, k, 0)))
            lm->local = 0;

    /* Host files beside the plan. */
    char *plan_abs = absolute(plan_path);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", plan_abs);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(lm->hostfile, sizeof lm->hostfile, "%s/hostfile", dir);
    snprintf(lm->rankfile, sizeof lm->rankfile, "%s/rankfile", dir);
    if (write_host_files(plan, cfg, o->testbed, lm, e) != 0) {
        free(plan_abs);
        return -1;
    }

    int cap = 0;
    char num[32];
    push(lm, &cap, "mpirun");
    if (geteuid() == 0)
        push(lm, &cap, "--allow-run-as-root");
    push(lm, &cap, "-np");
    snprintf(num, sizeof num, "%d", n);
    push(lm, &cap, num);
    if (lm->local) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (cores < 1 || n > cores)
            push(lm, &cap, "--oversubscribe");
        push(lm, &cap, "--bind-to");
        push(lm, &cap, "none");
    } else if (o->testbed) {
        push(lm, &cap, "--rankfile");
        push(lm, &cap, lm->rankfile);
    } else {
        push(lm, &cap, "--hostfile");
        push(lm, &cap, lm->hostfile);
        push(lm, &cap, "--rankfile");
        push(lm, &cap, lm->rankfile);
    }
    /* Waiting ranks yield instead of spinning; one BLAS thread per rank. */
    if (!o->testbed) { /* the test bed's launcher adds it itself */
        push(lm, &cap, "--mca");
        push(lm, &cap, "mpi_yield_when_idle");
        push(lm, &cap, "1");
    }
    /* Across hosts the activations and gradients travel over TCP. Open MPI
     * sends a message above btl_tcp_eager_limit (64 KiB by default) with a
     * rendezvous, one more round trip before the data moves: on an edge link
     * with tens of milliseconds of delay that doubles the cost of every
     * transfer of a GPT-2 activation (0.8 MB at B=4, T=64, C=768). 4 MiB lets
     * these go eagerly. A value the user set in the environment
     * (OMPI_MCA_<name>) is kept: a command-line --mca would override it. */
    if (!lm->local && !o->testbed) { /* the test bed's launcher sets its own */
        static const char *tcp[] = {"btl_tcp_eager_limit", "btl_tcp_rndv_eager_limit",
                                    "btl_tcp_max_send_size"};
        for (size_t k = 0; k < sizeof tcp / sizeof tcp[0]; k++) {
            char env[64];
            snprintf(env, sizeof env, "OMPI_MCA_%s", tcp[k]);
            if (getenv(env))
                continue;
            push(lm, &cap, "--mca");
            push(lm, &cap, tcp[k]);
            push(lm, &cap, ET_LAUNCH_TCP_EAGER);
        }
    }
    push(lm, &cap, "-x");
    push(lm, &cap, "OPENBLAS_NUM_THREADS=1");
    /* The BLAS kernels `run` selected (common/et_blas.h), for every rank. */
    if (getenv("OPENBLAS_CORETYPE")) {
        push(lm, &cap, "-x");
        push(lm, &cap, "OPENBLAS_CORETYPE");
    }

    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        snprintf(exe, sizeof exe, "edgetrain");
    else
        exe[len] = '\0';
    push(lm, &cap, exe);
    push(lm, &cap, "worker");
    char *cfg_abs = absolute(config_path);
    push(lm, &cap, cfg_abs);
    push(lm, &cap, "--plan");
    push(lm, &cap, plan_abs);
    if (o->out_dir) {
        char *od = absolute(o->out_dir);
        push(lm, &cap, "--out");
        push(lm, &cap, od);
        free(od);
    }
    if (o->resume)
        push(lm, &cap, "--resume");
    if (o->quiet)
        push(lm, &cap, "--quiet");
    if (o->progress_bar)
        push(lm, &cap, "--progress-bar");
    if (o->testbed) {
        push(lm, &cap, "--clock");
        push(lm, &cap, "wall");
    }
    free(cfg_abs);
    free(plan_abs);
    return 0;
}

void launch_material_free(launch_material *lm)
{
    for (int i = 0; i < lm->argc; i++)
        free(lm->argv[i]);
    free(lm->argv);
    memset(lm, 0, sizeof *lm);
}

size_t launch_format(const launch_material *lm, char *buf, size_t len)
{
    size_t w = 0;
    if (len == 0)
        return 0;
    buf[0] = '\0';
    for (int i = 0; i < lm->argc; i++) {
        const char *a = lm->argv[i];
        int quote = a[0] == '\0' || strpbrk(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") != NULL;
        char piece[2 * PATH_MAX + 8];
        size_t n = 0;
        if (i)
            piece[n++] = ' ';
        if (quote)
            piece[n++] = '\'';
        for (const char *c = a; *c && n < sizeof piece - 8; c++) {
            if (*c == '\'' && quote) { /* close, escaped quote, reopen */
                memcpy(piece + n, "'\\''", 4);
                n += 4;
            } else {
                piece[n++] = *c;
            }
        }
        if (quote)
            piece[n++] = '\'';
        piece[n] = '\0';
        if (w + n >= len)
            n = len - 1 - w;
        memcpy(buf + w, piece, n);
        w += n;
        buf[w] = '\0';
        if (w == len - 1)
            break;
    }
    return w;
}
