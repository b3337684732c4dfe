/*
 * report — render a run directory's report (see report.h): read summary.txt
 * and metrics.csv, derive the figures once into an rp_ctx, then write them
 * as the stdout summary, report.md and the JSON line, and draw the plots with
 * gnuplot. Every number shown in two places goes through the same formatter,
 * so the terminal and report.md always agree.
 */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/et_stats.h"
#include "../workers/summary.h"
#include "costmodel.h"
#include "testbed.h"

/* ================================================================ metrics.csv */

/* The columns of a metrics row the report uses. */
typedef struct rp_row {
    long step;
    double wall_s, emulated_s, train_loss, val_loss, val_accuracy;
    double step_wall_s;   /* NAN when the file has no such column */
} rp_row;

typedef struct rp_metrics {
    int present;        /* the file exists */
    int n, cap;
    rp_row *row;        /* owned, freed by metrics_free */
    int truncated;      /* an incomplete last line (a crash mid-write) was skipped */
} rp_metrics;

enum { COL_STEP, COL_WALL, COL_EMU, COL_TRAIN, COL_VLOSS, COL_VACC, COL_STEPWALL, N_COLS };
static const char *const col_name[N_COLS] = {"step", "wall_s", "emulated_s", "train_loss", "val_loss",
                                             "val_accuracy", "step_wall_s"};
/* Columns a metrics.csv must have; val_* may be absent (never evaluated),
 * step_wall_s too (older runs). */
static const int col_required[N_COLS] = {1, 1, 1, 1, 0, 0, 0};

/* Free the rows and reset *m to empty. */
static void metrics_free(rp_metrics *m)
{
    free(m->row);
    memset(m, 0, sizeof *m);
}

/* Parse field [s, s+len) as a number: empty is NAN; surrounding blanks are
 * allowed; "nan"/"inf" are accepted (a diverged step records them). 0 or -1. */
static int parse_field(const char *s, size_t len, double *out)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0) {
        *out = NAN;
        return 0;
    }
    char buf[64];
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (end == buf || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Strip a trailing "\n" or "\r\n"; returns 1 if the line had its newline. */
static int chomp(char *line, ssize_t *len)
{
    int had = 0;
    if (*len > 0 && line[*len - 1] == '\n') {
        line[--*len] = '\0';
        had = 1;
    }
    if (*len > 0 && line[*len - 1] == '\r')
        line[--*len] = '\0';
    return had;
}

/* Map the header's fields to our columns: map[k] is the column index of our
 * column k, or -1. Returns the header's field count, or -1 with e set. */
static int metrics_header(const char *path, const char *line, int *map, et_err *e)
{
    for (int k = 0; k < N_COLS; k++)
        map[k] = -1;
    int idx = 0;
    const char *p = line;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        for (int k = 0; k < N_COLS; k++)
            if (map[k] < 0 && strlen(col_name[k]) == len && strncmp(p, col_name[k], len) == 0)
                map[k] = idx;
        idx++;
        if (!q)
            break;
        p = q + 1;
    }
    for (int k = 0; k < N_COLS; k++)
        if (col_required[k] && map[k] < 0)
            return et_errf(e, ET_EINPUT,
                           "%s:1:1: the header lacks the column '%s' (a metrics.csv written by "
                           "edgetrain run starts with step,wall_s,emulated_s,lr,train_loss,...)",
                           path, col_name[k]);
    return idx;
}

/* Parse one data row into *r. Returns 0, or -1 with *col set to the 1-based
 * column of the problem and why[] describing it. */
static int metrics_row(const char *line, const int *map, int n_fields, rp_row *r, int *col,
                       char *why, size_t nwhy)
{
    double v[N_COLS];
    for (int k = 0; k < N_COLS; k++)
        v[k] = NAN;
    int idx = 0;
    const char *p = line;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (idx >= n_fields) {
            *col = (int)(p - line) + 1;
            snprintf(why, nwhy, "more fields than the header's %d", n_fields);
            return -1;
        }
        for (int k = 0; k < N_COLS; k++) {
            if (map[k] != idx)
                continue;
            if (parse_field(p, len, &v[k]) != 0) {
                *col = (int)(p - line) + 1;
                snprintf(why, nwhy, "%s is '%.*s', not a number", col_name[k], (int)(len > 40 ? 40 : len), p);
                return -1;
            }
        }
        idx++;
        if (!q)
            break;
        p = q + 1;
    }
    if (idx != n_fields) {
        *col = (int)strlen(line) + 1;
        snprintf(why, nwhy, "%d fields but the header has %d", idx, n_fields);
        return -1;
    }
    double st = v[COL_STEP];
    if (!(st >= 0 && st < 1e15 && st == floor(st))) {
        *col = 1;
        snprintf(why, nwhy, "step must be a whole number >= 0");
        return -1;
    }
    r->step = (long)st;
    r->wall_s = v[COL_WALL];
    r->emulated_s = v[COL_EMU];
    r->train_loss = v[COL_TRAIN];
    r->val_loss = v[COL_VLOSS];
    r->val_accuracy = v[COL_VACC];
    r->step_wall_s = v[COL_STEPWALL];
    return 0;
}

/*
 * Read DIR/metrics.csv into *m (rows in file order). A missing file leaves
 * m->present 0 and is not an error (a run that failed before its first step);
 * a malformed header or row is ET_EINPUT "path:line:col: what". An incomplete
 * last line without its newline (a crash mid-write) is skipped and flagged.
 */
static int metrics_load(const char *path, rp_metrics *m, et_err *e)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return et_errf(e, ET_EINPUT, "%s: cannot open (%s)", path, strerror(errno));
    }
    m->present = 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, map[N_COLS], n_fields = -1, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        int had_newline = chomp(line, &len);
        if (len == 0)
            continue;
        if (n_fields < 0) {
            if ((n_fields = metrics_header(path, line, map, e)) < 0) {
                rc = -1;
                break;
            }
            continue;
        }
        rp_row r;
        int col = 1;
        char why[160];
        if (metrics_row(line, map, n_fields, &r, &col, why, sizeof why) != 0) {
            if (!had_newline && feof(f)) {
                m->truncated = 1;
                break;
            }
            rc = et_errf(e, ET_EINPUT, "%s:%d:%d: %s (metrics.csv is written by edgetrain run; was it edited?)",
                         path, lineno, col, why);
            break;
        }
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 256;
            m->row = et_xrealloc(m->row, (size_t)m->cap * sizeof *m->row);
        }
        m->row[m->n++] = r;
    }
    if (rc == 0 && n_fields < 0 && lineno > 0)
        rc = et_errf(e, ET_EINPUT, "%s: no header line (expected step,wall_s,emulated_s,...)", path);
    free(line);
    fclose(f);
    if (rc != 0)
        metrics_free(m);
    return rc;
}

/* ================================================================ derived figures */

/* One pipeline stage as the report compares it: predicted and measured
 * seconds per step of compute, communication wait and bubble. */
typedef struct rp_stage {
    int has_pred, n_meas;
    double pred[3];
    double meas[3];
} rp_stage;

/* One server's totals over its ranks. */
typedef struct rp_server {
    char name[64];
    int n_ranks;
    char ranks[128];         /* "1, 5" */
    double busy, wait, idle, bytes;
} rp_server;

/* A test bed run (`run --testbed`): the measured wall step time against
 * the virtual clock's prediction for the config's profiles and for the test
 * bed as calibrated (DIR/calibration.txt, orchestrator/testbed.h). */
typedef struct rp_testbed {
    int present;              /* calibration.txt read, with a config and plan to apply it to */
    char note[400];           /* why it is left out when the file is there but unusable */
    et_tb_cal cal;            /* owned when present */
    double pred[3];           /* config's profiles / calibrated compute / calibrated compute + links */
    double control_s;         /* the controller's per-step messages (et_tb_cal_control_s) */
    long first, last;         /* steps measured: this run's, less the warm-up ones */
    long n;
    double median, mean, p10, p90;   /* step_wall_s over them */
    double gap_pct, gap_mean_pct;    /* median (mean) against pred[2] */
    double gap_ctl_pct;              /* median against pred[2] + control_s */
    double train_to_target_s;        /* sum of step_wall_s up to the target (NAN: not reached) */
    /* hostcpu.csv: the host's CPU besides the test bed during the run */
    int has_cpu;
    double others_mean;              /* cores other work used, mean over the run */
    long n_quiet;                    /* measured steps while it used < RP_QUIET_CORES */
    double median_quiet, gap_quiet_pct, gap_quiet_ctl_pct;
} rp_testbed;

/* A step is "quiet" when the host's other work used less than this many
 * cores while it ran (hostcpu.csv). */
#define RP_QUIET_CORES 0.25

/* Everything the renderers print, computed once. */
typedef struct rp_ctx {
    const char *dir;
    char run_dir[PATH_MAX];   /* absolute when it resolves, else as given */
    const et_config *cfg;
    const et_plan *plan;
    const char *note;
    run_summary *sm;          /* owned */
    rp_metrics mx;            /* owned */
    char title[ET_NAME_MAX + 8];
    const char *name;         /* cfg->name or NULL */
    int wall_clock;
    double target_loss, target_acc;   /* NAN when not set or unknown */
    long tokens_per_step;
    double tokens_to_target;          /* NAN when not reached */
    double best_val_loss;             /* NAN when never evaluated */
    long best_val_step;
    double pred_step, measured_step, err_pct;   /* measured by the run's clock */
    int n_stages, n_replicas, n_workers;        /* -1: unknown */
    const char *schedule;                       /* NULL: unknown */
    double share[3];                            /* compute, wait, bubble over all workers */
    int n_st;
    rp_stage *st;             /* [n_st], owned */
    int n_srv;
    rp_server *srv;           /* [n_srv], owned */
    int plots_drawn;          /* gnuplot ran and the PNGs are in place */
    int has_loss_png, has_wall_png, has_ranks_png;
    char plot_note[512];      /* why there are no (or fewer) plots */
    rp_testbed tb;
} rp_ctx;

/* A run total as seconds (or bytes) per step of this run; NAN without steps. */
static double per_step(const rp_ctx *c, double total)
{
    return c->sm->steps_this_run > 0 ? total / (double)c->sm->steps_this_run : NAN;
}

/* part / (busy + wait + idle): the share of one of the three, NAN when
 * nothing was recorded. util() is the busy share. */
static double share_of(double part, double busy, double wait, double idle)
{
    double t = busy + wait + idle;
    return t > 0 ? part / t : NAN;
}

/* The busy share: utilisation. */
static double util(double busy, double wait, double idle)
{
    return share_of(busy, busy, wait, idle);
}

/* The summary entry of worker rank k, or NULL. */
static const run_rank_summary *find_rank(const run_summary *sm, int k)
{
    for (int i = 0; i < sm->n_ranks; i++)
        if (sm->rank[i].rank == k)
            return &sm->rank[i];
    return NULL;
}

/* Per-stage predicted vs measured. With a plan, measured is the mean over
 * replica 0's ranks of the stage (the prediction is replica 0's); without
 * one, over every rank that reports the stage. */
static void derive_stages(rp_ctx *c)
{
    const run_summary *sm = c->sm;
    const et_plan *p = c->plan;
    int S = 0;
    if (p)
        S = p->n_stages;
    else
        for (int i = 0; i < sm->n_ranks; i++)
            if (sm->rank[i].stage + 1 > S && sm->rank[i].stage < 4096)
                S = sm->rank[i].stage + 1;
    c->n_st = S;
    c->st = et_xcalloc((size_t)(S > 0 ? S : 1), sizeof *c->st);
    for (int s = 0; s < S; s++) {
        rp_stage *st = &c->st[s];
        double sum[3] = {0, 0, 0};
        if (p) {
            const plan_stage_pred *sp = &p->stage_pred[s];   /* replica 0 */
            st->has_pred = 1;
            st->pred[0] = sp->compute_s;
            st->pred[1] = sp->communication_s;
            st->pred[2] = sp->bubble_s;
            for (int i = 0; i < p->tp[s]; i++) {
                const run_rank_summary *r = find_rank(sm, plan_rank(p, 0, s, i));
                if (!r || r->stage != s)
                    continue;
                sum[0] += r->busy_s;
                sum[1] += r->wait_s;
                sum[2] += r->idle_s;
                st->n_meas++;
            }
        }
        if (st->n_meas == 0)
            for (int i = 0; i < sm->n_ranks; i++) {
                const run_rank_summary *r = &sm->rank[i];
                if (r->stage != s)
                    continue;
                sum[0] += r->busy_s;
                sum[1] += r->wait_s;
                sum[2] += r->idle_s;
                st->n_meas++;
            }
        for (int k = 0; k < 3; k++)
            st->meas[k] = st->n_meas ? per_step(c, sum[k] / st->n_meas) : NAN;
    }
}

/* Totals per server name, in order of first appearance. */
static void derive_servers(rp_ctx *c)
{
    const run_summary *sm = c->sm;
    c->srv = et_xcalloc((size_t)(sm->n_ranks > 0 ? sm->n_ranks : 1), sizeof *c->srv);
    c->n_srv = 0;
    double tot[3] = {0, 0, 0};
    for (int i = 0; i < sm->n_ranks; i++) {
        const run_rank_summary *r = &sm->rank[i];
        rp_server *v = NULL;
        for (int k = 0; k < c->n_srv; k++)
            if (strcmp(c->srv[k].name, r->server) == 0)
                v = &c->srv[k];
        if (!v) {
            v = &c->srv[c->n_srv++];
            snprintf(v->name, sizeof v->name, "%s", r->server);
        }
        size_t used = strlen(v->ranks);
        if (used + 16 < sizeof v->ranks)
            snprintf(v->ranks + used, sizeof v->ranks - used, "%s%d", v->n_ranks ? ", " : "", r->rank);
        v->n_ranks++;
        v->busy += r->busy_s;
        v->wait += r->wait_s;
        v->idle += r->idle_s;
        v->bytes += r->bytes;
        tot[0] += r->busy_s;
        tot[1] += r->wait_s;
        tot[2] += r->idle_s;
    }
    double all = tot[0] + tot[1] + tot[2];
    for (int k = 0; k < 3; k++)
        c->share[k] = all > 0 ? tot[k] / all : NAN;
}

/*
 * The quiet steps of a test bed run: hostcpu.csv (orchestrator/testbed.h)
 * gives, per second of the run, the cores that work outside the test bed
 * used. Its clock is the realtime; a step's interval is placed with the
 * run's origin = the "# stopped" time less summary.txt's wall_s (late by
 * the job's exit, well under a second). Each measured step (t->first ..
 * t->last) gets the mean of the samples that overlap it (or the next one);
 * the median of the steps under RP_QUIET_CORES, and its gaps. A missing or
 * unreadable file leaves has_cpu 0.
 */
static void derive_quiet(rp_ctx *c, long start)
{
    rp_testbed *t = &c->tb;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/hostcpu.csv", c->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    int cap = 1024, n = 0;
    double *ts = et_xmalloc((size_t)cap * sizeof *ts), *oc = et_xmalloc((size_t)cap * sizeof *oc);
    double stopped = NAN, sum = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        double a, h, b, l, o;
        if (sscanf(line, "# stopped %lf", &a) == 1) {
            stopped = a;
        } else if (sscanf(line, "%lf,%lf,%lf,%lf,%lf", &a, &h, &b, &l, &o) == 5) {
            if (n == cap) {
                cap *= 2;
                ts = et_xrealloc(ts, (size_t)cap * sizeof *ts);
                oc = et_xrealloc(oc, (size_t)cap * sizeof *oc);
            }
            ts[n] = a;
            oc[n++] = o;
            sum += o;
        }
    }
    fclose(f);
    if (n > 0 && isfinite(stopped) && isfinite(c->sm->wall_s)) {
        t->has_cpu = 1;
        t->others_mean = sum / n;
        double origin = stopped - c->sm->wall_s;
        double *v = et_xcalloc((size_t)c->mx.n + 1, sizeof *v);
        long nq = 0, warm_end = start;
        for (long i = warm_end; i < c->mx.n; i++) {
            const rp_row *r = &c->mx.row[i];
            if (r->step < t->first || r->step > t->last || !isfinite(r->step_wall_s))
                continue;
            double end = origin + r->wall_s, beg = end - r->step_wall_s, acc = 0;
            int k = 0;
            for (int j = 0; j < n; j++)
                if (ts[j] >= beg && ts[j] - 1.0 <= end) {   /* sample interval (t-1, t] overlaps */
                    acc += oc[j];
                    k++;
                }
            if (k == 0)
                for (int j = 0; j < n; j++)
                    if (ts[j] >= end) {
                        acc = oc[j];
                        k = 1;
                        break;
                    }
            if (k > 0 && acc / k < RP_QUIET_CORES)
                v[nq++] = r->step_wall_s;
        }
        t->n_quiet = nq;
        t->median_quiet = t->gap_quiet_pct = t->gap_quiet_ctl_pct = NAN;
        if (nq > 0) {
            qsort(v, (size_t)nq, sizeof *v, et_cmp_double);
            t->median_quiet = nq % 2 ? v[nq / 2] : 0.5 * (v[nq / 2 - 1] + v[nq / 2]);
            if (t->pred[2] > 0) {
                t->gap_quiet_pct = 100.0 * (t->median_quiet - t->pred[2]) / t->pred[2];
                t->gap_quiet_ctl_pct = 100.0 * (t->median_quiet - t->pred[2] - t->control_s) /
                                       (t->pred[2] + t->control_s);
            }
        }
        free(v);
    }
    free(ts);
    free(oc);
}

/*
 * The test bed comparison (rp_testbed), when the run directory holds a
 * calibration.txt and the config and plan are known: the three predictions
 * of the plan's step time, and the measured wall step times of this run's
 * steps after a warm-up (the first min(5, n/4) steps: connections opening,
 * first touches of memory), their median, mean and 10th/90th percentiles.
 * Evaluation and checkpoints are not in step_wall_s (they follow the step).
 */
static void derive_testbed(rp_ctx *c)
{
    rp_testbed *t = &c->tb;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/calibration.txt", c->dir);
    if (access(path, F_OK) != 0)
        return;
    if (!c->cfg || !c->plan) {
        snprintf(t->note, sizeof t->note, "calibration.txt is left out: the run's config or plan could "
                 "not be read");
        return;
    }
    et_err e;
    et_err_clear(&e);
    if (et_tb_cal_load(path, c->cfg, &t->cal, &e) != 0) {
        snprintf(t->note, sizeof t->note, "calibration.txt is left out: %.300s", e.msg);
        return;
    }
    t->present = 1;
    et_tb_cal_predict(&t->cal, c->cfg, c->plan, t->pred);
    t->control_s = et_tb_cal_control_s(&t->cal, c->cfg, c->plan);
    t->median = t->mean = t->p10 = t->p90 = t->gap_pct = t->gap_mean_pct = t->train_to_target_s = NAN;
    t->gap_ctl_pct = NAN;
    long this_run = c->sm->steps_this_run > 0 ? c->sm->steps_this_run : c->mx.n;
    long start = c->mx.n - this_run;
    if (start < 0)
        start = 0;
    long n_run = c->mx.n - start, warm = n_run / 4 < 5 ? n_run / 4 : 5;
    double *v = et_xcalloc((size_t)(n_run > 0 ? n_run : 1), sizeof *v);
    double sum = 0;
    t->n = 0;
    for (long i = start + warm; i < c->mx.n; i++) {
        double x = c->mx.row[i].step_wall_s;
        if (!isfinite(x))
            continue;
        if (t->n == 0)
            t->first = c->mx.row[i].step;
        t->last = c->mx.row[i].step;
        v[t->n++] = x;
        sum += x;
    }
    if (t->n > 0) {
        qsort(v, (size_t)t->n, sizeof *v, et_cmp_double);
        t->median = t->n % 2 ? v[t->n / 2] : 0.5 * (v[t->n / 2 - 1] + v[t->n / 2]);
        t->mean = sum / (double)t->n;
        t->p10 = v[(long)(0.1 * (double)(t->n - 1) + 0.5)];
        t->p90 = v[(long)(0.9 * (double)(t->n - 1) + 0.5)];
        if (t->pred[2] > 0) {
            t->gap_pct = 100.0 * (t->median - t->pred[2]) / t->pred[2];
            t->gap_mean_pct = 100.0 * (t->mean - t->pred[2]) / t->pred[2];
            t->gap_ctl_pct = 100.0 * (t->median - t->pred[2] - t->control_s) / (t->pred[2] + t->control_s);
        }
    }
    free(v);
    derive_quiet(c, start);
    if (c->sm->reached && c->sm->steps_to_target > 0) {
        double s = 0;
        int ok = 1;
        for (long i = 0; i < c->mx.n && c->mx.row[i].step < c->sm->steps_to_target; i++) {
            ok &= isfinite(c->mx.row[i].step_wall_s);
            s += c->mx.row[i].step_wall_s;
        }
        t->train_to_target_s = ok ? s : NAN;
    }
}

/* Fill every derived figure of c from the summary, metrics, cfg and plan. */
static void derive(rp_ctx *c)
{
    const run_summary *sm = c->sm;
    const et_config *cfg = c->cfg;
    const et_plan *p = c->plan;
    c->name = cfg ? cfg->name : NULL;
    if (c->name) {
        snprintf(c->title, sizeof c->title, "%s", c->name);
    } else {
        const char *b = strrchr(c->run_dir, '/');
        snprintf(c->title, sizeof c->title, "%.*s", ET_NAME_MAX, b && b[1] ? b + 1 : c->run_dir);
    }
    c->wall_clock = strcmp(sm->clock, "wall") == 0;
    c->target_loss = cfg ? cfg->training.target_val_loss : NAN;
    c->target_acc = cfg ? cfg->training.target_val_accuracy : NAN;
    c->tokens_per_step = sm->tokens_per_step;
    if (c->tokens_per_step <= 0 && cfg)
        c->tokens_per_step = (long)cfg->training.global_batch * cfg->training.seq_len;
    c->tokens_to_target = sm->reached && sm->steps_to_target >= 0 && c->tokens_per_step > 0
                              ? (double)sm->steps_to_target * (double)c->tokens_per_step
                              : NAN;
    c->best_val_loss = NAN;
    c->best_val_step = -1;
    for (int i = 0; i < c->mx.n; i++) {
        const rp_row *r = &c->mx.row[i];
        if (!isnan(r->val_loss) && (isnan(c->best_val_loss) || r->val_loss < c->best_val_loss)) {
            c->best_val_loss = r->val_loss;
            c->best_val_step = r->step;
        }
    }
    if (isnan(c->best_val_loss))
        c->best_val_loss = sm->final_val_loss;

    c->pred_step = sm->predicted_step_s;
    if (!isfinite(c->pred_step) && p)
        c->pred_step = p->pred.step_s;
    c->measured_step = c->wall_clock ? sm->mean_step_wall_s : sm->mean_step_emulated_s;
    c->err_pct = isfinite(c->pred_step) && c->pred_step > 0 && isfinite(c->measured_step)
                     ? 100.0 * (c->measured_step - c->pred_step) / c->pred_step
                     : NAN;

    c->n_stages = c->n_replicas = c->n_workers = -1;
    c->schedule = NULL;
    if (p) {
        c->n_stages = p->n_stages;
        c->n_replicas = p->n_replicas;
        c->n_workers = plan_n_workers(p);
        c->schedule = p->schedule == ET_SCHED_GPIPE ? "gpipe" : "1f1b";
    } else if (sm->n_ranks > 0) {
        c->n_workers = sm->n_ranks;
    }
    derive_stages(c);
    if (!p && c->n_st > 0)
        c->n_stages = c->n_st;
    derive_servers(c);
    derive_testbed(c);
}

/* ================================================================ formatting */

/* Rounding noise of sums that should be zero (1e-18 s of bubble) shown as 0. */
static double denoise(double v)
{
    return fabs(v) < 1e-12 ? 0.0 : v;
}

/* Seconds: "0.04125 s"; "n/a" when unknown. */
static const char *fmt_s(char *b, size_t n, double v)
{
    v = denoise(v);
    if (!isfinite(v))
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, "%.4g s", v);
    return b;
}

/* A plain number with 4 significant digits, or "n/a". */
static const char *fmt_g(char *b, size_t n, double v)
{
    v = denoise(v);
    if (!isfinite(v))
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, "%.4g", v);
    return b;
}

/* A fraction as a percentage "82.3 %". */
static const char *fmt_pct(char *b, size_t n, double frac)
{
    if (!isfinite(frac))
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, "%.1f %%", 100.0 * frac);
    return b;
}

/* A signed error in percent "+3.2 %". */
static const char *fmt_err(char *b, size_t n, double pct)
{
    if (!isfinite(pct))
        snprintf(b, n, "n/a");
    else
        snprintf(b, n, "%+.1f %%", pct);
    return b;
}

/* Bytes in decimal units: "12.3 MB". */
static const char *fmt_bytes(char *b, size_t n, double v)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    if (!isfinite(v) || v < 0) {
        snprintf(b, n, "n/a");
        return b;
    }
    int u = 0;
    while (v >= 1000 && u < 5) {
        v /= 1000;
        u++;
    }
    snprintf(b, n, u ? "%.3g %s" : "%.0f %s", v, unit[u]);
    return b;
}

/* Memory in binary units: "1.25 GiB". */
static const char *fmt_mem(char *b, size_t n, double v)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(b, n, u ? "%.3g %s" : "%.0f %s", v, unit[u]);
    return b;
}

/* A link bandwidth in bits per second, as configs write it. */
static const char *fmt_bw(char *b, size_t n, double bytes_per_s)
{
    if (isinf(bytes_per_s)) {
        snprintf(b, n, "in-host");
        return b;
    }
    double bits = bytes_per_s * 8;
    if (bits >= 1e9)
        snprintf(b, n, "%.3g Gbps", bits / 1e9);
    else if (bits >= 1e6)
        snprintf(b, n, "%.3g Mbps", bits / 1e6);
    else
        snprintf(b, n, "%.3g kbps", bits / 1e3);
    return b;
}

/* A whole count with thousands separators "983,040"; "n/a" when unknown. */
static const char *fmt_count(char *b, size_t n, double v)
{
    if (!isfinite(v) || v < 0 || v > 9e18) {
        snprintf(b, n, "n/a");
        return b;
    }
    char raw[32];
    snprintf(raw, sizeof raw, "%.0f", v);
    size_t len = strlen(raw), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            b[o++] = ',';
        b[o++] = raw[i];
    }
    b[o] = '\0';
    return b;
}

/* The servers of (replica r, stage s) of the plan as "a + b". */
static const char *group_str(const rp_ctx *c, int r, int s, char *b, size_t n)
{
    size_t o = 0;
    b[0] = '\0';
    for (int i = 0; i < c->plan->tp[s] && o + 1 < n; i++) {
        int sv = plan_server(c->plan, r, s, i);
        const char *nm = c->cfg && sv >= 0 && sv < c->cfg->cluster.n_servers ? c->cfg->cluster.servers[sv].name
                                                                              : "?";
        int w = snprintf(b + o, n - o, "%s%s", i ? " + " : "", nm);
        if (w < 0 || (size_t)w >= n - o)
            break;
        o += (size_t)w;
    }
    return b;
}

/* Servers of stage s of replica 0: from the plan, else from the ranks. */
static const char *stage_servers(const rp_ctx *c, int s, char *b, size_t n)
{
    if (c->plan && c->cfg)
        return group_str(c, 0, s, b, n);
    size_t o = 0;
    b[0] = '\0';
    for (int i = 0; i < c->sm->n_ranks && o + 1 < n; i++) {
        if (c->sm->rank[i].stage != s)
            continue;
        int w = snprintf(b + o, n - o, "%s%s", o ? " + " : "", c->sm->rank[i].server);
        if (w < 0 || (size_t)w >= n - o)
            break;
        o += (size_t)w;
    }
    return b;
}

/* The target as text: "val_loss <= 2.2 and val_accuracy >= 0.4", or NULL. */
static const char *target_str(const rp_ctx *c, char *b, size_t n)
{
    int hl = !isnan(c->target_loss), ha = !isnan(c->target_acc);
    if (!hl && !ha)
        return NULL;
    if (hl && ha)
        snprintf(b, n, "val_loss <= %g and val_accuracy >= %g", c->target_loss, c->target_acc);
    else if (hl)
        snprintf(b, n, "val_loss <= %g", c->target_loss);
    else
        snprintf(b, n, "val_accuracy >= %g", c->target_acc);
    return b;
}

/* ================================================================ JSON */

/* The length of the valid UTF-8 sequence starting at s (2 to 4 bytes), or 0
 * when s does not start one. Never reads past a NUL. */
static int utf8_len(const unsigned char *s)
{
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string: escapes quotes, backslashes and control bytes; bytes that
 * are not valid UTF-8 become U+FFFD. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p++);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p++);
        } else if (*p < 0x80) {
            fputc(*p++, f);
        } else {
            int n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", f);
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            }
        }
    }
    fputc('"', f);
}

/* A JSON number, null when not finite. */
static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

/* A JSON whole number, null when negative (unknown). */
static void json_int(FILE *f, long v)
{
    if (v >= 0)
        fprintf(f, "%ld", v);
    else
        fputs("null", f);
}

/* The one-line JSON summary (report.h lists the keys), with a newline. */
static void write_json(FILE *f, const rp_ctx *c)
{
    const run_summary *sm = c->sm;
    fputs("{\"name\": ", f);
    if (c->name)
        json_str(f, c->name);
    else
        fputs("null", f);
    fputs(", \"status\": ", f);
    json_str(f, sm->status);
    fputs(", \"clock\": ", f);
    json_str(f, sm->clock);
    fprintf(f, ", \"reached\": %s, \"steps\": ", sm->reached ? "true" : "false");
    json_int(f, sm->steps);
    fputs(", \"steps_to_target\": ", f);
    json_int(f, sm->reached ? sm->steps_to_target : -1);
    fputs(", \"tokens_to_target\": ", f);
    json_num(f, c->tokens_to_target);
    fputs(", \"tta_emulated_s\": ", f);
    json_num(f, sm->reached ? sm->tta_emulated_s : NAN);
    fputs(", \"tta_wall_s\": ", f);
    json_num(f, sm->reached ? sm->tta_wall_s : NAN);
    fputs(", \"final_val_loss\": ", f);
    json_num(f, sm->final_val_loss);
    fputs(", \"final_val_accuracy\": ", f);
    json_num(f, sm->final_val_accuracy);
    fputs(", \"predicted_step_s\": ", f);
    json_num(f, c->pred_step);
    fputs(", \"measured_step_emulated_s\": ", f);
    json_num(f, sm->mean_step_emulated_s);
    fputs(", \"measured_step_wall_s\": ", f);
    json_num(f, sm->mean_step_wall_s);
    fputs(", \"prediction_error_pct\": ", f);
    json_num(f, c->err_pct);
    fputs(", \"n_workers\": ", f);
    json_int(f, c->n_workers);
    fputs(", \"n_stages\": ", f);
    json_int(f, c->n_stages);
    fputs(", \"n_replicas\": ", f);
    json_int(f, c->n_replicas);
    fputs(", \"schedule\": ", f);
    if (c->schedule)
        json_str(f, c->schedule);
    else
        fputs("null", f);
    fputs(", \"run_dir\": ", f);
    json_str(f, c->run_dir);
    fputs(", \"compute_share\": ", f);
    json_num(f, c->share[0]);
    fputs(", \"communication_share\": ", f);
    json_num(f, c->share[1]);
    fputs(", \"bubble_share\": ", f);
    json_num(f, c->share[2]);
    const rp_testbed *t = &c->tb;
    fputs(", \"predicted_compute_calibrated_step_s\": ", f);
    json_num(f, t->present ? t->pred[1] : NAN);
    fputs(", \"predicted_calibrated_step_s\": ", f);
    json_num(f, t->present ? t->pred[2] : NAN);
    fputs(", \"measured_step_wall_median_s\": ", f);
    json_num(f, t->present ? t->median : NAN);
    fputs(", \"calibrated_gap_pct\": ", f);
    json_num(f, t->present ? t->gap_pct : NAN);
    fputs(", \"control_step_s\": ", f);
    json_num(f, t->present ? t->control_s : NAN);
    fputs(", \"calibrated_control_gap_pct\": ", f);
    json_num(f, t->present ? t->gap_ctl_pct : NAN);
    fputs(", \"quiet_steps\": ", f);
    json_int(f, t->present && t->has_cpu ? t->n_quiet : -1);
    fputs(", \"measured_step_wall_quiet_median_s\": ", f);
    json_num(f, t->present && t->has_cpu ? t->median_quiet : NAN);
    fputs(", \"calibrated_quiet_gap_pct\": ", f);
    json_num(f, t->present && t->has_cpu ? t->gap_quiet_pct : NAN);
    fputs("}\n", f);
}

/* ================================================================ files */

/* "dir/name" into out; -1 with e set when it does not fit. */
static int join(char *out, size_t n, const char *dir, const char *name, et_err *e)
{
    int w = snprintf(out, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n)
        return et_errf(e, ET_EINPUT, "%s: path too long", dir);
    return 0;
}

/* Open "dir/name.tmp.<pid>" for writing; its path goes to tmp. */
static FILE *tmp_open(const char *dir, const char *name, char *tmp, size_t n, et_err *e)
{
    char final[PATH_MAX];
    if (join(final, sizeof final, dir, name, e) != 0)
        return NULL;
    int w = snprintf(tmp, n, "%s.tmp.%ld", final, (long)getpid());
    if (w < 0 || (size_t)w >= n) {
        et_errf(e, ET_EINPUT, "%s: path too long", dir);
        return NULL;
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        et_errf(e, ET_ERUNTIME, "%s: cannot write (%s) (is the run directory writable?)", tmp, strerror(errno));
    return f;
}

/* Close f and rename tmp over "dir/name"; on any failure remove tmp. */
static int tmp_commit(FILE *f, const char *tmp, const char *dir, const char *name, et_err *e)
{
    char final[PATH_MAX];
    int bad = ferror(f);
    if (fclose(f) != 0)
        bad = 1;
    if (bad) {
        int err = errno;
        unlink(tmp);
        return et_errf(e, ET_ERUNTIME, "%s: write failed (%s)", tmp, strerror(err));
    }
    if (join(final, sizeof final, dir, name, e) != 0 || rename(tmp, final) != 0) {
        int err = errno;
        unlink(tmp);
        return et_errf(e, ET_ERUNTIME, "%s/%s: cannot rename into place (%s)", dir, name, strerror(err));
    }
    return 0;
}

/* Does dir/name exist as a regular file? */
static int has_file(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p)
        return 0;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ================================================================ plots */

/* A label safe inside a single-quoted gnuplot string or a double-quoted data
 * field: keeps letters, digits and " _-.:()+/", replaces the rest with '_'. */
static void plot_label(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; *s && o + 1 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 strchr(" _-.:()+/", ch) != NULL;
        out[o++] = ok ? (char)ch : '_';
    }
    out[o] = '\0';
}

/* Write the data files the script plots. Sets has_* for what has data. */
static int plot_data(rp_ctx *c, int *n_val, et_err *e)
{
    char tmp[PATH_MAX];
    FILE *f = tmp_open(c->dir, "plots_loss.dat", tmp, sizeof tmp, e);
    if (!f)
        return -1;
    int n_loss = 0, pos_emu = 0;
    fputs("# emulated_s wall_s train_loss (from metrics.csv)\n", f);
    for (int i = 0; i < c->mx.n; i++) {
        const rp_row *r = &c->mx.row[i];
        if (!isfinite(r->train_loss) || !isfinite(r->wall_s) || !isfinite(r->emulated_s))
            continue;
        fprintf(f, "%.9g %.9g %.9g\n", r->emulated_s, r->wall_s, r->train_loss);
        n_loss++;
        pos_emu |= r->emulated_s > 0;
    }
    if (tmp_commit(f, tmp, c->dir, "plots_loss.dat", e) != 0)
        return -1;

    if (!(f = tmp_open(c->dir, "plots_val.dat", tmp, sizeof tmp, e)))
        return -1;
    *n_val = 0;
    fputs("# emulated_s wall_s val_loss val_accuracy (evaluated steps)\n", f);
    for (int i = 0; i < c->mx.n; i++) {
        const rp_row *r = &c->mx.row[i];
        if (!isfinite(r->val_loss) || !isfinite(r->wall_s) || !isfinite(r->emulated_s))
            continue;
        fprintf(f, "%.9g %.9g %.9g ", r->emulated_s, r->wall_s, r->val_loss);
        if (isfinite(r->val_accuracy))
            fprintf(f, "%.9g\n", r->val_accuracy);
        else
            fputs("NaN\n", f);
        (*n_val)++;
    }
    if (tmp_commit(f, tmp, c->dir, "plots_val.dat", e) != 0)
        return -1;

    if (!(f = tmp_open(c->dir, "plots_ranks.dat", tmp, sizeof tmp, e)))
        return -1;
    fputs("# label busy_s wait_s idle_s (seconds per step, this run)\n", f);
    for (int i = 0; i < c->sm->n_ranks; i++) {
        const run_rank_summary *r = &c->sm->rank[i];
        char lab[96];
        plot_label(lab, sizeof lab, r->server);
        fprintf(f, "\"r%d %s (s%d)\" %.9g %.9g %.9g\n", r->rank, lab, r->stage, per_step(c, r->busy_s),
                per_step(c, r->wait_s), per_step(c, r->idle_s));
    }
    if (tmp_commit(f, tmp, c->dir, "plots_ranks.dat", e) != 0)
        return -1;

    c->has_loss_png = n_loss > 0 && pos_emu;
    c->has_wall_png = n_loss > 0;
    c->has_ranks_png = c->sm->n_ranks > 0 && c->sm->steps_this_run > 0;
    return 0;
}

/* One loss plot (x column 1: emulated, 2: wall) into the script. */
static void plot_loss(FILE *f, const rp_ctx *c, int xcol, int n_val, const char *png, const char *xlabel,
                      const char *title)
{
    fprintf(f, "\nset output '%s'.suffix\n", png);
    fprintf(f, "set title '%s'\n", title);
    fprintf(f, "set xlabel '%s'\nset ylabel 'loss (nats per token)'\n", xlabel);
    fputs("set grid\nset key outside top center horizontal box\nset xrange [0:*]\nunset arrow\nunset label\n", f);
    double tta = xcol == 1 ? c->sm->tta_emulated_s : c->sm->tta_wall_s;
    if (c->sm->reached && isfinite(tta))
        fprintf(f, "set arrow from %.9g, graph 0 to %.9g, graph 1 nohead dt 4 lw 1.5 lc rgb '#555555'\n"
                   "set label 'target reached: %.4g s' at %.9g, graph 0.04 right offset -1, 0 tc rgb '#555555'\n",
                tta, tta, tta, tta);
    if (n_val > 0) {
        fputs("set y2label 'validation accuracy'\nset y2tics\nset ytics nomirror\nset y2range [0:*]\n", f);
    } else {
        fputs("unset y2label\nunset y2tics\nset ytics mirror\n", f);
    }
    fprintf(f, "plot 'plots_loss.dat' using %d:3 with lines lw 1.5 lc rgb '#1f77b4' title 'train loss'", xcol);
    if (n_val > 0) {
        fprintf(f, ", \\\n     'plots_val.dat' using %d:3 with linespoints lw 2 pt 7 ps 0.9 lc rgb '#d62728' "
                   "title 'val loss'", xcol);
        fprintf(f, ", \\\n     'plots_val.dat' using %d:4 axes x1y2 with linespoints lw 1.5 pt 5 ps 0.7 "
                   "lc rgb '#2ca02c' title 'val accuracy (right axis)'", xcol);
    }
    if (!isnan(c->target_loss))
        fprintf(f, ", \\\n     %.9g with lines dt 2 lw 2 lc rgb '#d62728' title 'target val loss %g'",
                c->target_loss, c->target_loss);
    if (!isnan(c->target_acc) && n_val > 0)
        fprintf(f, ", \\\n     %.9g axes x1y2 with lines dt 3 lw 2 lc rgb '#2ca02c' "
                   "title 'target val accuracy %g'", c->target_acc, c->target_acc);
    fputs("\n", f);
}

/* The gnuplot script: pngcairo when this gnuplot has it, else png; outputs
 * get the suffix given with -e "suffix='...'" (none when run by hand). */
static int plot_script(rp_ctx *c, int n_val, et_err *e)
{
    char tmp[PATH_MAX], title[ET_NAME_MAX + 16], t[256];
    plot_label(title, sizeof title, c->title);
    FILE *f = tmp_open(c->dir, "plots.gp", tmp, sizeof tmp, e);
    if (!f)
        return -1;
    fputs("# Plots of this run, written by `edgetrain report`. Redraw with: gnuplot plots.gp\n"
          "if (!exists('suffix')) suffix = ''\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "    set terminal pngcairo noenhanced size 1000,600 font 'sans,11'\n"
          "} else {\n"
          "    set terminal png noenhanced size 1000,600\n"
          "}\n", f);
    if (c->has_loss_png) {
        snprintf(t, sizeof t, "%s: loss vs emulated time", title);
        plot_loss(f, c, 1, n_val, "loss.png", "emulated time (s)", t);
    }
    if (c->has_wall_png) {
        snprintf(t, sizeof t, "%s: loss vs wall time", title);
        plot_loss(f, c, 2, n_val, "loss_wall.png", "wall time (s)", t);
    }
    if (c->has_ranks_png) {
        int w = 160 + 70 * c->sm->n_ranks;
        w = w < 1000 ? 1000 : w > 4000 ? 4000 : w;
        fprintf(f, "\nif (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                   "    set terminal pngcairo noenhanced size %d,600 font 'sans,11'\n"
                   "} else {\n"
                   "    set terminal png noenhanced size %d,600\n"
                   "}\n", w, w);
        fputs("set output 'ranks.png'.suffix\n", f);
        fprintf(f, "set title '%s: where each rank spends a step (%s clock)'\n", title, c->sm->clock);
        fputs("unset y2label\nunset y2tics\nset ytics mirror\nset autoscale x\nset xrange [*:*]\n"
              "set yrange [0:*]\nset grid ytics\nunset xlabel\nset ylabel 'seconds per step'\n"
              "set style data histograms\nset style histogram rowstacked\n"
              "set style fill solid 0.85 border -1\nset boxwidth 0.7\n"
              "set xtics rotate by -30 left\nset key outside top center horizontal box\n", f);
        fputs("plot 'plots_ranks.dat' using 2:xtic(1) lc rgb '#1f77b4' title 'busy (compute)', \\\n"
              "     '' using 3 lc rgb '#ff7f0e' title 'communication wait', \\\n"
              "     '' using 4 lc rgb '#bbbbbb' title 'bubble / idle'", f);
        if (isfinite(c->measured_step))
            fprintf(f, ", \\\n     %.9g with lines dt 2 lw 2 lc rgb 'black' title 'measured step %.4g s'",
                    c->measured_step, c->measured_step);
        if (isfinite(c->pred_step))
            fprintf(f, ", \\\n     %.9g with lines dt 3 lw 2 lc rgb '#9467bd' title 'predicted step %.4g s'",
                    c->pred_step, c->pred_step);
        fputs("\n", f);
    }
    fputs("\nunset output\n", f);
    return tmp_commit(f, tmp, c->dir, "plots.gp", e);
}

/* Run `gnuplot -e "suffix='.tmp'" plots.gp` in dir with fork + execvp, its
 * output to plots.log. Returns the exit status, or -1 with *exec_errno set
 * when gnuplot could not be started (ENOENT: not installed). */
static int run_gnuplot(const char *dir, int *exec_errno)
{
    int pfd[2];
    *exec_errno = 0;
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        *exec_errno = errno;
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        *exec_errno = errno;
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int err = 0;
        close(pfd[0]);
        if (chdir(dir) != 0) {
            err = errno;
        } else {
            int fd = open("plots.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
            int nul = open("/dev/null", O_RDONLY);
            if (nul >= 0) {
                dup2(nul, STDIN_FILENO);
                close(nul);
            }
            char prog[] = "gnuplot", opt[] = "-e", suffix[] = "suffix='.tmp'", script[] = "plots.gp";
            char *argv[] = {prog, opt, suffix, script, NULL};
            execvp(prog, argv);
            err = errno;
        }
        ssize_t w = write(pfd[1], &err, sizeof err);
        (void)w;
        _exit(127);
    }
    close(pfd[1]);
    int err = 0;
    ssize_t n;
    do
        n = read(pfd[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof err) {
        *exec_errno = err ? err : ENOENT;
        return -1;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Rename dir/png.tmp over dir/png if it was drawn; 1 when in place. Without
 * `keep` the temporary is just removed. */
static int plot_commit(const char *dir, const char *png, int keep)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    struct stat st;
    if (snprintf(final, sizeof final, "%s/%s", dir, png) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, png) >= (int)sizeof tmp)
        return 0;
    if (stat(tmp, &st) != 0)
        return 0;
    if (!keep || st.st_size == 0) {
        unlink(tmp);
        return 0;
    }
    if (rename(tmp, final) != 0) {
        unlink(tmp);
        return 0;
    }
    return 1;
}

/* Data, script, gnuplot, PNGs into place. Only an unwritable run directory
 * is an error; gnuplot's absence or failure is a note in the report. */
static int plots(rp_ctx *c, et_err *e)
{
    int n_val = 0;
    if (plot_data(c, &n_val, e) != 0 || plot_script(c, n_val, e) != 0)
        return -1;
    if (!c->has_loss_png && !c->has_wall_png && !c->has_ranks_png) {
        snprintf(c->plot_note, sizeof c->plot_note, "no plots: no steps were recorded");
        return 0;
    }
    int exec_errno = 0;
    int st = run_gnuplot(c->dir, &exec_errno);
    int ok = st == 0;
    int l1 = plot_commit(c->dir, "loss.png", ok && c->has_loss_png);
    int l2 = plot_commit(c->dir, "loss_wall.png", ok && c->has_wall_png);
    int l3 = plot_commit(c->dir, "ranks.png", ok && c->has_ranks_png);
    c->has_loss_png = l1;
    c->has_wall_png = l2;
    c->has_ranks_png = l3;
    c->plots_drawn = ok && (l1 || l2 || l3);
    if (st < 0 && exec_errno == ENOENT)
        snprintf(c->plot_note, sizeof c->plot_note,
                 "no plots: gnuplot is not installed (install gnuplot-nox, then: cd %s && gnuplot plots.gp)",
                 c->dir);
    else if (st < 0)
        snprintf(c->plot_note, sizeof c->plot_note, "no plots: cannot run gnuplot (%s)", strerror(exec_errno));
    else if (st != 0)
        snprintf(c->plot_note, sizeof c->plot_note, "no plots: gnuplot failed with status %d (see %s/plots.log)",
                 st, c->dir);
    return 0;
}

/* ================================================================ stdout summary */

/* The headline: time-to-accuracy or why there is none. */
static void headline(FILE *f, const rp_ctx *c, const char *pre, const char *bold)
{
    const run_summary *sm = c->sm;
    char a[64], b[64], t[64], tg[160], v[64], w[64];
    const char *target = target_str(c, tg, sizeof tg);
    if (sm->reached) {
        fprintf(f, "%s%stime-to-accuracy: %s emulated, %s wall%s; %ld steps, %s tokens", pre, bold,
                fmt_s(a, sizeof a, sm->tta_emulated_s), fmt_s(b, sizeof b, sm->tta_wall_s), bold,
                sm->steps_to_target, fmt_count(t, sizeof t, c->tokens_to_target));
        if (target)
            fprintf(f, " (target %s)", target);
        fputs("\n", f);
    } else {
        if (target)
            fprintf(f, "%s%starget not reached in %ld steps: best val_loss %s%s", pre, bold, sm->steps,
                    fmt_g(a, sizeof a, c->best_val_loss), bold);
        else if (c->cfg)
            fprintf(f, "%s%sno target set: %ld steps, best val_loss %s%s", pre, bold, sm->steps,
                    fmt_g(a, sizeof a, c->best_val_loss), bold);
        else
            fprintf(f, "%s%starget not reached in %ld steps (or none set): best val_loss %s%s", pre, bold,
                    sm->steps, fmt_g(a, sizeof a, c->best_val_loss), bold);
        if (c->best_val_step >= 0)
            fprintf(f, " (step %ld)", c->best_val_step);
        if (target)
            fprintf(f, "; target %s", target);
        fputs("\n", f);
    }
    if (*bold)
        fputs("\n", f);   /* markdown: a paragraph of its own */
    fprintf(f, "%sfinal val_loss %s, val_accuracy %s; run took %s emulated, %s wall\n", pre,
            fmt_g(v, sizeof v, sm->final_val_loss), fmt_g(w, sizeof w, sm->final_val_accuracy),
            fmt_s(a, sizeof a, sm->emulated_s), fmt_s(b, sizeof b, sm->wall_s));
}

/* The human summary on stdout (report.md says the same with tables). */
static void print_summary(FILE *f, const rp_ctx *c)
{
    const run_summary *sm = c->sm;
    char a[64], b[64], d[64], g[64], h[64], k[64], srv[512];
    fprintf(f, "edgetrain: report of %s (%s): %s, %s clock, %ld steps (%ld this run), %s tokens/step\n",
            c->title, c->dir, sm->status, sm->clock, sm->steps, sm->steps_this_run,
            fmt_count(a, sizeof a, (double)c->tokens_per_step));
    if (c->note)
        fprintf(f, "  note: %s\n", c->note);
    headline(f, c, "  ", "");
    fprintf(f, "  step time: predicted %s; measured %s emulated, %s wall; error %s (%s clock)\n",
            fmt_s(a, sizeof a, c->pred_step), fmt_s(b, sizeof b, sm->mean_step_emulated_s),
            fmt_s(d, sizeof d, sm->mean_step_wall_s), fmt_err(g, sizeof g, c->err_pct), sm->clock);
    if (c->tb.present) {
        const rp_testbed *t = &c->tb;
        char p0[64], p1[64], p2[64], md[64], mn[64], lo[64], hi[64], gc[64];
        fprintf(f, "  test bed: predicted %s (config's profiles), %s (calibrated compute), %s (calibrated "
                "compute and links); measured wall %s median, %s mean over steps %ld-%ld (10-90%%: %s-%s); "
                "gap %s (median vs calibrated), %s counting the controller's messages (%.3g ms/step)\n",
                fmt_s(p0, sizeof p0, t->pred[0]), fmt_s(p1, sizeof p1, t->pred[1]),
                fmt_s(p2, sizeof p2, t->pred[2]), fmt_s(md, sizeof md, t->median),
                fmt_s(mn, sizeof mn, t->mean), t->first, t->last, fmt_s(lo, sizeof lo, t->p10),
                fmt_s(hi, sizeof hi, t->p90), fmt_err(g, sizeof g, t->gap_pct),
                fmt_err(gc, sizeof gc, t->gap_ctl_pct), t->control_s * 1e3);
        if (t->has_cpu)
            fprintf(f, "  test bed, quiet steps: other work on the host used %.2f cores on average; %ld of "
                    "the %ld steps ran while it used under %.2f: median %s, gap %s (%s counting the "
                    "controller's messages)\n", t->others_mean, t->n_quiet, t->n, RP_QUIET_CORES,
                    fmt_s(md, sizeof md, t->median_quiet), fmt_err(g, sizeof g, t->gap_quiet_pct),
                    fmt_err(gc, sizeof gc, t->gap_quiet_ctl_pct));
    } else if (c->tb.note[0]) {
        fprintf(f, "  note: %s\n", c->tb.note);
    }
    if (c->n_st > 0) {
        fprintf(f, "  per stage%s, s/step predicted / measured:\n", c->plan ? " (replica 0)" : "");
        for (int s = 0; s < c->n_st; s++) {
            const rp_stage *st = &c->st[s];
            fprintf(f, "    stage %d", s);
            if (c->plan)
                fprintf(f, " layers %d-%d", c->plan->first[s], c->plan->last[s]);
            fprintf(f, " on %s:", stage_servers(c, s, srv, sizeof srv));
            static const char *const part[3] = {"compute", "communication", "bubble"};
            for (int q = 0; q < 3; q++)
                fprintf(f, "%s %s %s / %s", q ? "," : "", part[q],
                        st->has_pred ? fmt_g(a, sizeof a, st->pred[q]) : "n/a", fmt_g(b, sizeof b, st->meas[q]));
            fputs("\n", f);
        }
    }
    if (c->n_srv > 0) {
        fputs("  utilisation, busy / (busy + wait + idle):\n", f);
        for (int i = 0; i < c->n_srv; i++) {
            const rp_server *v = &c->srv[i];
            fprintf(f, "    %-16s %8s busy, %s wait, %s idle; %s %s; sent %s\n", v->name,
                    fmt_pct(a, sizeof a, util(v->busy, v->wait, v->idle)),
                    fmt_pct(b, sizeof b, share_of(v->wait, v->busy, v->wait, v->idle)),
                    fmt_pct(d, sizeof d, share_of(v->idle, v->busy, v->wait, v->idle)),
                    v->n_ranks > 1 ? "ranks" : "rank", v->ranks, fmt_bytes(g, sizeof g, v->bytes));
        }
        fprintf(f, "  all workers: %s compute, %s communication wait, %s bubble\n",
                fmt_pct(h, sizeof h, c->share[0]), fmt_pct(k, sizeof k, c->share[1]),
                fmt_pct(a, sizeof a, c->share[2]));
    }
    if (c->plan && c->plan->pred.bottleneck[0])
        fprintf(f, "  bottleneck (plan): %s\n", c->plan->pred.bottleneck);
    fprintf(f, "  report: %s/report.md", c->dir);
    if (c->plots_drawn) {
        fputs("; plots:", f);
        if (c->has_loss_png)
            fputs(" loss.png", f);
        if (c->has_wall_png)
            fputs(" loss_wall.png", f);
        if (c->has_ranks_png)
            fputs(" ranks.png", f);
    }
    fputs("\n", f);
    if (c->plot_note[0])
        fprintf(f, "  %s\n", c->plot_note);
}

/* ================================================================ report.md */

/* A markdown table cell's text: '|' would end the cell. */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

/* report.md: the time-to-accuracy section (or why there is none). */
static void md_tta(FILE *f, const rp_ctx *c)
{
    const run_summary *sm = c->sm;
    char a[64], b[64], tg[160];
    fputs("## Time to accuracy\n\n", f);
    headline(f, c, "", "**");
    fputs("\n", f);
    if (sm->reached) {
        fputs("| | emulated | wall |\n|---|---|---|\n", f);
        fprintf(f, "| time to target | %s | %s |\n", fmt_s(a, sizeof a, sm->tta_emulated_s),
                fmt_s(b, sizeof b, sm->tta_wall_s));
        fprintf(f, "| whole run | %s | %s |\n\n", fmt_s(a, sizeof a, sm->emulated_s), fmt_s(b, sizeof b, sm->wall_s));
        fprintf(f, "Reached %s at step %ld (the evaluation after %ld optimizer steps), after %s training tokens.\n\n",
                target_str(c, tg, sizeof tg) ? tg : "the target", sm->steps_to_target - 1, sm->steps_to_target,
                fmt_count(a, sizeof a, c->tokens_to_target));
    }
    if (c->mx.truncated)
        fputs("The last line of metrics.csv was incomplete (the run stopped while writing it) and was "
              "left out.\n\n", f);
    if (!c->mx.present)
        fputs("There is no metrics.csv: the run recorded no steps.\n\n", f);
}

/* report.md: predicted vs measured step time, overall and per stage. */
static void md_step_time(FILE *f, const rp_ctx *c)
{
    const run_summary *sm = c->sm;
    char a[64], b[64], srv[512];
    fputs("## Step time: predicted vs measured\n\n", f);
    fputs("| | seconds per step |\n|---|---|\n", f);
    fprintf(f, "| predicted (cost model) | %s |\n", fmt_s(a, sizeof a, c->pred_step));
    fprintf(f, "| measured, emulated clock | %s |\n", fmt_s(a, sizeof a, sm->mean_step_emulated_s));
    fprintf(f, "| measured, wall clock | %s |\n", fmt_s(a, sizeof a, sm->mean_step_wall_s));
    fprintf(f, "| error of the prediction (%s clock) | %s |\n\n", sm->clock, fmt_err(a, sizeof a, c->err_pct));
    if (!c->wall_clock)
        fputs("The run used the virtual clock: \"measured\" is what the emulated edge network took "
              "(compute charged from each server's profile, messages from the config's links); wall "
              "time is this host's, shared by every rank.\n\n", f);
    if (c->n_st == 0)
        return;
    fprintf(f, "### Per stage%s\n\nSeconds per step, predicted / measured (measured: mean over the "
               "stage's ranks%s of busy, wait and idle time divided by the %ld steps of this run).\n\n",
            c->plan ? " (replica 0)" : "", c->plan ? " in replica 0" : "", sm->steps_this_run);
    fputs("| stage | layers | servers | TP | compute | communication | bubble | total |\n"
          "|---|---|---|---|---|---|---|---|\n", f);
    for (int s = 0; s < c->n_st; s++) {
        const rp_stage *st = &c->st[s];
        fprintf(f, "| %d | ", s);
        if (c->plan)
            fprintf(f, "%d-%d | ", c->plan->first[s], c->plan->last[s]);
        else
            fputs("n/a | ", f);
        md_cell(f, stage_servers(c, s, srv, sizeof srv));
        if (c->plan)
            fprintf(f, " | %d |", c->plan->tp[s]);
        else
            fputs(" | n/a |", f);
        for (int q = 0; q < 3; q++)
            fprintf(f, " %s / %s |", st->has_pred ? fmt_g(a, sizeof a, st->pred[q]) : "n/a",
                    fmt_g(b, sizeof b, st->meas[q]));
        double pt = st->pred[0] + st->pred[1] + st->pred[2], mt = st->meas[0] + st->meas[1] + st->meas[2];
        fprintf(f, " %s / %s |\n", st->has_pred ? fmt_g(a, sizeof a, pt) : "n/a", fmt_g(b, sizeof b, mt));
    }
    fputs("\n", f);
}

/* report.md: a test bed run against the virtual clock's prediction for the
 * config's profiles and for the test bed as calibrated, with the
 * calibration's figures (what the prediction was made from). */
static void md_testbed(FILE *f, const rp_ctx *c)
{
    const rp_testbed *t = &c->tb;
    char a[64], b[64], d[64];
    if (!t->present) {
        if (t->note[0])
            fprintf(f, "## Test bed\n\n%s.\n\n", t->note);
        return;
    }
    const et_tb_cal *k = &t->cal;
    time_t when = (time_t)k->when;
    struct tm tm;
    char ws[40];
    gmtime_r(&when, &tm);
    strftime(ws, sizeof ws, "%Y-%m-%d %H:%M:%S UTC", &tm);
    fputs("## Test bed: measured against the calibrated prediction\n\n", f);
    fprintf(f, "The run went across the containers of test bed `%s` on the wall clock. The prediction is "
            "the cost model's simulation of this plan (what the virtual clock would show), made three "
            "ways: with the config's server profiles and links; with each server's GFLOP/s as its "
            "container delivered it for this plan's work; and with the links as MPI messages of the "
            "plan's size measured them between the containers (calibrated %s; other work on the host "
            "used %.2f cores meanwhile, try %d).\n\n",
            k->testbed, ws, k->others_cores, k->tries);
    fputs("| | seconds per step | measured vs it |\n|---|---|---|\n", f);
    static const char *const what[3] = {"predicted, config's profiles", "predicted, calibrated compute",
                                        "predicted, calibrated compute and links"};
    for (int q = 0; q < 3; q++)
        fprintf(f, "| %s | %s | %s |\n", what[q], fmt_s(a, sizeof a, t->pred[q]),
                fmt_err(b, sizeof b, t->pred[q] > 0 ? 100.0 * (t->median - t->pred[q]) / t->pred[q] : NAN));
    fprintf(f, "| predicted, calibrated, plus the controller's messages (%.3g ms) | %s | %s |\n",
            t->control_s * 1e3, fmt_s(a, sizeof a, t->pred[2] + t->control_s), fmt_err(b, sizeof b, t->gap_ctl_pct));
    fprintf(f, "| measured wall, median of steps %ld-%ld | %s | |\n", t->first, t->last,
            fmt_s(a, sizeof a, t->median));
    char e[64];
    fprintf(f, "| measured wall, mean (10th-90th percentile %s-%s) | %s | %s vs calibrated |\n",
            fmt_s(b, sizeof b, t->p10), fmt_s(d, sizeof d, t->p90), fmt_s(a, sizeof a, t->mean),
            fmt_err(e, sizeof e, t->gap_mean_pct));
    if (t->has_cpu)
        fprintf(f, "| measured wall, median of the %ld of those steps that ran while other work on the host "
                "used under %.2f cores (%.2f on average over the run; hostcpu.csv) | %s | %s vs calibrated, "
                "%s with the controller's messages |\n",
                t->n_quiet, RP_QUIET_CORES, t->others_mean, fmt_s(a, sizeof a, t->median_quiet),
                fmt_err(b, sizeof b, t->gap_quiet_pct), fmt_err(e, sizeof e, t->gap_quiet_ctl_pct));
    fputs("\n", f);
    fputs("The virtual clock starts every rank's step at the controller's time and reads their clocks "
          "for free; a real run's step, as the controller measures it, also holds its step command "
          "reaching the farthest worker and that worker's report coming back (the fourth line).\n\n", f);
    if (c->sm->reached && isfinite(t->train_to_target_s))
        fprintf(f, "Time to accuracy: %s wall in all; the %ld training steps to the target took %s of "
                "it (the rest is evaluation, checkpoints and start-up), against %s predicted for them "
                "(steps x calibrated step time).\n\n",
                fmt_s(a, sizeof a, c->sm->tta_wall_s), c->sm->steps_to_target,
                fmt_s(b, sizeof b, t->train_to_target_s),
                fmt_s(d, sizeof d, (double)c->sm->steps_to_target * t->pred[2]));
    fputs("### Servers as calibrated\n\n", f);
    fputs("| server | CPU share | config GFLOP/s | calibrated GFLOP/s | fwd+bwd per micro-batch, measured | "
          "the same at the config's GFLOP/s | measured bwd/fwd | fwd+bwd with the TP all-reduces |\n"
          "|---|---|---|---|---|---|---|---|\n", f);
    for (int i = 0; i < k->n_servers; i++) {
        const et_tb_cal_server *s = &k->srv[i];
        fputs("| ", f);
        md_cell(f, s->name);
        if (s->ranks <= 0) {
            fprintf(f, " | %.3f | %.4g | not measured (no rank of the plan) | | | | |\n", s->cpus,
                    s->gflops_config);
            continue;
        }
        fprintf(f, " | %.3f | %.4g | %.4g | %.2f ms | %.2f ms | %.2f | ", s->cpus, s->gflops_config,
                s->gflops, s->fb_s * 1e3, s->model_fb_s * 1e3, (s->fb_s - s->fwd_s) / s->fwd_s);
        if (isfinite(s->fbtp_s))
            fprintf(f, "%.2f ms |\n", s->fbtp_s * 1e3);
        else
            fputs("(no TP group) |\n", f);
    }
    if (k->n_links) {
        fputs("\n### Links as calibrated\n\n| pair | config | calibrated | 1-byte round trip | "
              "message one way (a to b / b to a) | one TP all-reduce inside the stage |\n"
              "|---|---|---|---|---|---|\n", f);
        for (int i = 0; i < k->n_links; i++) {
            const et_tb_cal_link *l = &k->link[i];
            char b1[64], b2[64];
            fputs("| ", f);
            md_cell(f, k->srv[l->a].name);
            fputs(" - ", f);
            md_cell(f, k->srv[l->b].name);
            fprintf(f, " | %s, %.3g ms | %s, %.3g ms | %.3g ms | %.0f kB: %.3g / %.3g ms | ",
                    fmt_bw(b1, sizeof b1, l->config.bandwidth), l->config.latency * 1e3,
                    fmt_bw(b2, sizeof b2, l->calibrated.bandwidth), l->calibrated.latency * 1e3,
                    l->rtt_s * 1e3, l->bytes / 1e3, l->ab_s * 1e3, l->ba_s * 1e3);
            if (isfinite(l->ar_s))
                fprintf(f, "%.3g ms (%d ranks) |\n", l->ar_s * 1e3, l->ar_p);
            else
                fputs("(not a TP pair) |\n", f);
        }
    }
    fputs("\nThe calibrated config is `config.calibrated.yaml`; `calibration.txt` holds the "
          "measurements.\n\n", f);
}

/* Boundary links between consecutive stages: what the plan makes them
 * carry (activations forward, their gradients backward), and how long that
 * keeps the link busy per step against the measured step time. */
static void md_links(FILE *f, const rp_ctx *c)
{
    const et_plan *p = c->plan;
    const et_config *cfg = c->cfg;
    if (!p || !cfg || p->n_stages < 2)
        return;
    cm_model m;
    cm_model_init(&m, &cfg->model, p->micro_batch, cfg->training.seq_len);
    double step = c->measured_step, M = p->micro_batches;
    char a[64], b[64], d[64], g[64], h[64], k[64], from[256], to[256];
    fputs("### Pipeline boundary links (derived from the plan)\n\n", f);
    fprintf(f, "Each micro-batch's activations cross a boundary forward and their gradients backward: %s "
               "per message (micro_batch %d x seq_len %d x n_embd %d x 4 bytes), %d micro-batches per "
               "step, one stream per receiving TP rank. Bandwidth and latency are the slowest link between "
               "the two groups, as the cost model and the virtual clock charge them. Wire time is one "
               "stream's serialisation per step (latency does not keep a link busy); load is that over the "
               "measured step time.\n\n",
            fmt_bytes(a, sizeof a, m.boundary_bytes), p->micro_batch, cfg->training.seq_len, cfg->model.n_embd,
            p->micro_batches);
    fputs("| replica | boundary | from | to | bandwidth | latency | one message | activations / step "
          "| gradients / step | wire time / step | load |\n|---|---|---|---|---|---|---|---|---|---|---|\n", f);
    for (int r = 0; r < p->n_replicas; r++)
        for (int s = 0; s + 1 < p->n_stages; s++) {
            lm_link l = cm_boundary_link(p, &cfg->cluster, r, s);
            double act = M * m.boundary_bytes * p->tp[s + 1];
            double grad = M * m.boundary_bytes * p->tp[s];
            double wire = lm_serial_s(l, M * m.boundary_bytes);
            double load = isfinite(step) && step > 0 ? wire / step : NAN;
            fprintf(f, "| %d | %d -> %d | ", r, s, s + 1);
            md_cell(f, group_str(c, r, s, from, sizeof from));
            fputs(" | ", f);
            md_cell(f, group_str(c, r, s + 1, to, sizeof to));
            fprintf(f, " | %s | %s | %s |", fmt_bw(a, sizeof a, l.bandwidth), fmt_s(b, sizeof b, l.latency),
                    fmt_s(d, sizeof d, lm_transfer_s(l, m.boundary_bytes)));
            fprintf(f, " %s | %s | %s | %s |\n", fmt_bytes(g, sizeof g, act), fmt_bytes(h, sizeof h, grad),
                    fmt_s(k, sizeof k, wire), fmt_pct(a, sizeof a, load));
        }
    fputs("\nThe rest of each rank's bytes are collectives: tensor-parallel all-reduces, the tied-embedding "
          "gradient exchange between the first and last stage, the data-parallel gradient all-reduce and "
          "the gradient-norm reduction.\n\n",
          f);
}

/* report.md: utilisation and bytes per server and per rank, then the
 * boundary links. */
static void md_util(FILE *f, const rp_ctx *c)
{
    const run_summary *sm = c->sm;
    char a[64], b[64], d[64], g[64], h[64], k[64];
    fputs("## Utilisation\n\n", f);
    if (sm->n_ranks == 0) {
        fputs("summary.txt lists no worker ranks: nothing to show.\n\n", f);
        return;
    }
    fprintf(f, "Utilisation is busy / (busy + wait + idle): busy is compute, wait is time blocked on the "
               "wire or in collectives, idle is the pipeline bubble (waiting for a peer that had not sent "
               "yet). Seconds per step over the %ld steps of this run. All workers together: %s compute, "
               "%s communication wait, %s bubble.\n\n",
            sm->steps_this_run, fmt_pct(a, sizeof a, c->share[0]), fmt_pct(b, sizeof b, c->share[1]),
            fmt_pct(d, sizeof d, c->share[2]));
    fputs("### Per server\n\n| server | ranks | busy / step | wait / step | idle / step | utilisation "
          "| bytes sent |", f);
    int mem = c->plan && c->cfg;
    fputs(mem ? " memory (plan / available) |\n|---|---|---|---|---|---|---|---|\n" : "\n|---|---|---|---|---|---|---|\n",
          f);
    for (int i = 0; i < c->n_srv; i++) {
        const rp_server *v = &c->srv[i];
        fputs("| ", f);
        md_cell(f, v->name);
        fprintf(f, " | %s | %s | %s | %s | %s | %s |", v->ranks, fmt_s(a, sizeof a, per_step(c, v->busy)),
                fmt_s(b, sizeof b, per_step(c, v->wait)), fmt_s(d, sizeof d, per_step(c, v->idle)),
                fmt_pct(g, sizeof g, util(v->busy, v->wait, v->idle)), fmt_bytes(h, sizeof h, v->bytes));
        if (mem) {
            int sv = et_cluster_find(&c->cfg->cluster, v->name);
            if (sv >= 0 && sv < c->plan->n_cluster && c->plan->memory[sv] > 0)
                fprintf(f, " %s / %s |", fmt_mem(a, sizeof a, (double)c->plan->memory[sv]),
                        fmt_mem(k, sizeof k, (double)c->cfg->cluster.servers[sv].memory));
            else
                fputs(" n/a |", f);
        }
        fputs("\n", f);
    }
    fputs("\n### Per rank\n\n| rank | server | stage | busy / step | wait / step | idle / step | utilisation "
          "| bytes sent | bytes / step |\n|---|---|---|---|---|---|---|---|---|\n", f);
    for (int i = 0; i < sm->n_ranks; i++) {
        const run_rank_summary *r = &sm->rank[i];
        fprintf(f, "| %d | ", r->rank);
        md_cell(f, r->server);
        fprintf(f, " | %d | %s | %s | %s | %s | %s | %s |\n", r->stage, fmt_s(a, sizeof a, per_step(c, r->busy_s)),
                fmt_s(b, sizeof b, per_step(c, r->wait_s)), fmt_s(d, sizeof d, per_step(c, r->idle_s)),
                fmt_pct(g, sizeof g, util(r->busy_s, r->wait_s, r->idle_s)), fmt_bytes(h, sizeof h, r->bytes),
                fmt_bytes(k, sizeof k, per_step(c, r->bytes)));
    }
    fputs("\n", f);
    md_links(f, c);
}

/* report.md: the plan, its bottleneck and its stage table. */
static void md_plan(FILE *f, const rp_ctx *c)
{
    const et_plan *p = c->plan;
    char a[64], b[64], d[64], g[64], grp[512];
    fputs("## Plan\n\n", f);
    if (!p) {
        fputs("plan.yaml could not be read, so the plan table, the per-stage prediction and the link "
              "loads are left out.\n\n", f);
        return;
    }
    fprintf(f, "%d stage(s) x %d replica(s), %d worker(s); schedule %s; %d micro-batches of %d sequences "
               "per replica and step.\n\n",
            p->n_stages, p->n_replicas, plan_n_workers(p), c->schedule, p->micro_batches, p->micro_batch);
    if (p->pred.bottleneck[0]) {
        fputs("**Bottleneck:** ", f);
        md_cell(f, p->pred.bottleneck);
        fputs("\n\n", f);
    }
    fprintf(f, "Predicted step %s = compute %s + communication %s + bubble %s (the bottleneck stage's view).\n\n",
            fmt_s(a, sizeof a, p->pred.step_s), fmt_s(b, sizeof b, p->pred.compute_s),
            fmt_s(d, sizeof d, p->pred.communication_s), fmt_s(g, sizeof g, p->pred.bubble_s));
    if (!c->cfg) {
        fputs("(Server names need the config, which could not be read.)\n\n", f);
        return;
    }
    fputs("| replica | stage | layers | servers (TP order) | TP | fwd / micro-batch | bwd / micro-batch |\n"
          "|---|---|---|---|---|---|---|\n", f);
    for (int r = 0; r < p->n_replicas; r++)
        for (int s = 0; s < p->n_stages; s++) {
            const plan_stage_pred *sp = &p->stage_pred[r * p->n_stages + s];
            fprintf(f, "| %d | %d | %d-%d | ", r, s, p->first[s], p->last[s]);
            md_cell(f, group_str(c, r, s, grp, sizeof grp));
            fprintf(f, " | %d | %s | %s |\n", p->tp[s], fmt_s(a, sizeof a, sp->fwd_s), fmt_s(b, sizeof b, sp->bwd_s));
        }
    fputs("\n", f);
}

/* report.md: links to the plots and the list of the run's files. */
static void md_files(FILE *f, const rp_ctx *c)
{
    static const struct {
        const char *name, *what;
    } files[] = {
        {"metrics.csv", "one row per step: loss, learning rate, clocks, throughput"},
        {"trace.json", "Chrome trace events, one track per rank (open in https://ui.perfetto.dev)"},
        {"summary.txt", "the run's outcome and per-rank totals"},
        {"report.json", "this report as one JSON line"},
        {"plan.yaml", "the plan the workers ran"},
        {"config.yaml", "a copy of the config"},
        {"hostfile", "mpirun's hosts"},
        {"rankfile", "mpirun's rank placement"},
        {"plots.gp", "the gnuplot script (redraw: gnuplot plots.gp)"},
        {"plots.log", "gnuplot's output"},
    };
    fputs("## Plots\n\n", f);
    if (c->has_loss_png)
        fputs("![train and validation loss vs emulated time](loss.png)\n\n", f);
    if (c->has_wall_png)
        fputs("![train and validation loss vs wall time](loss_wall.png)\n\n", f);
    if (c->has_ranks_png)
        fputs("![per-rank busy, communication wait and bubble per step](ranks.png)\n\n", f);
    if (c->plot_note[0])
        fprintf(f, "%s.\n\n", c->plot_note);
    fputs("## Files\n\n", f);
    fprintf(f, "In `%s`:\n\n", c->run_dir);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strcmp(files[i].name, "report.json") == 0 || has_file(c->dir, files[i].name))
            fprintf(f, "- `%s`: %s\n", files[i].name, files[i].what);
    if (c->has_loss_png || c->has_wall_png || c->has_ranks_png)
        fputs("- `loss.png`, `loss_wall.png`, `ranks.png`: the plots above\n", f);
}

/* report.md, atomically. */
static int write_md(const rp_ctx *c, et_err *e)
{
    char tmp[PATH_MAX];
    FILE *f = tmp_open(c->dir, "report.md", tmp, sizeof tmp, e);
    if (!f)
        return -1;
    const run_summary *sm = c->sm;
    char a[64];
    fputs("# Run report: ", f);
    md_cell(f, c->title);
    fprintf(f, "\n\nStatus **%s**, %s clock, %ld steps (%ld in this run), %s tokens per step.",
            sm->status, sm->clock, sm->steps, sm->steps_this_run, fmt_count(a, sizeof a, (double)c->tokens_per_step));
    if (c->plan)
        fprintf(f, " %d worker(s): %d stage(s) x %d replica(s), %s schedule.", c->n_workers, c->n_stages,
                c->n_replicas, c->schedule);
    fputs("\n\n", f);
    if (c->note) {
        fputs("> Note: ", f);
        md_cell(f, c->note);
        fputs("\n\n", f);
    }
    if (!c->cfg)
        fputs("> The config could not be read: the target, the model and the links are unknown here; "
              "figures below come from summary.txt and metrics.csv.\n\n", f);
    md_tta(f, c);
    md_step_time(f, c);
    md_testbed(f, c);
    md_util(f, c);
    md_plan(f, c);
    md_files(f, c);
    return tmp_commit(f, tmp, c->dir, "report.md", e);
}

/* report.json, atomically. */
static int write_json_file(const rp_ctx *c, et_err *e)
{
    char tmp[PATH_MAX];
    FILE *f = tmp_open(c->dir, "report.json", tmp, sizeof tmp, e);
    if (!f)
        return -1;
    write_json(f, c);
    return tmp_commit(f, tmp, c->dir, "report.json", e);
}

/* ================================================================ entry points */

/* dir must be a directory holding a summary.txt whose first line is "status ...". */
static int check_run_dir(const char *dir, et_err *e)
{
    struct stat st;
    char path[PATH_MAX];
    if (stat(dir, &st) != 0)
        return et_errf(e, ET_EINPUT, "%s: %s (give a run directory made by edgetrain run)", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return et_errf(e, ET_EINPUT, "%s: not a directory (give a run directory made by edgetrain run)", dir);
    if (join(path, sizeof path, dir, SUMMARY_FILE, e) != 0)
        return -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return et_errf(e, ET_EINPUT, "%s: not a run directory: no %s (%s; edgetrain run writes it when a run ends)",
                       dir, SUMMARY_FILE, strerror(errno));
    char line[64] = "";
    int ok = fgets(line, sizeof line, f) != NULL && strncmp(line, "status ", 7) == 0;
    fclose(f);
    if (!ok)
        return et_errf(e, ET_EINPUT, "%s:1:1: not an edgetrain run summary (it starts with 'status ...')", path);
    return 0;
}

/* See report.h: check the run dir, read, derive, plot, write report.md and
 * report.json, print. Everything allocated here is freed here. */
int report_render_note(const char *dir, const et_config *cfg, const et_plan *plan, int json, const char *note,
                       et_err *e)
{
    if (check_run_dir(dir, e) != 0)
        return -1;
    rp_ctx c;
    memset(&c, 0, sizeof c);
    c.dir = dir;
    c.cfg = cfg;
    c.plan = cfg ? plan : NULL;   /* a plan's server indices mean nothing without its config */
    c.note = note;
    if (!realpath(dir, c.run_dir))
        snprintf(c.run_dir, sizeof c.run_dir, "%s", dir);
    c.sm = et_xmalloc(sizeof *c.sm);
    char path[PATH_MAX];
    int rc = -1;
    if (summary_read(dir, c.sm, e) != 0 || join(path, sizeof path, dir, "metrics.csv", e) != 0 ||
        metrics_load(path, &c.mx, e) != 0)
        goto out;
    derive(&c);
    if (plots(&c, e) != 0 || write_md(&c, e) != 0 || write_json_file(&c, e) != 0)
        goto out;
    print_summary(stdout, &c);
    if (json)
        write_json(stdout, &c);
    fflush(stdout);
    rc = 0;
out:
    metrics_free(&c.mx);
    if (c.tb.present)
        et_tb_cal_free(&c.tb.cal);
    free(c.st);
    free(c.srv);
    free(c.sm);
    return rc;
}

/* See report.h: report_render_note without a note. */
int report_render(const char *dir, const et_config *cfg, const et_plan *plan, int json, et_err *e)
{
    return report_render_note(dir, cfg, plan, json, NULL, e);
}
