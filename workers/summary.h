/*
 * summary — the outcome of a training run, written by the controller (or the
 * single-process trainer) as RUNDIR/summary.txt ("key value" lines, one
 * "rank ..." line per worker) and read back by `edgetrain run`/`report`.
 */
#ifndef ET_SUMMARY_H
#define ET_SUMMARY_H

#include "../common/et_err.h"

#define SUMMARY_FILE "summary.txt"
#define SUMMARY_MAX_RANKS 1024

typedef struct run_rank_summary {
    int rank;
    char server[64];
    int stage;
    double busy_s;     /* compute (modelled in virtual mode, measured in wall mode) */
    double wait_s;     /* blocked on the wire or in collectives */
    double idle_s;     /* blocked before the peer had sent: pipeline bubble */
    double bytes;      /* payload bytes sent */
} run_rank_summary;

typedef struct run_summary {
    char status[32];            /* ok | interrupted | failed */
    char clock[16];             /* virtual | wall */
    long steps;                 /* steps done in total */
    long steps_this_run;
    int reached;
    long steps_to_target;       /* -1 when not reached */
    double tta_wall_s, tta_emulated_s;          /* NAN when not reached */
    double final_val_loss, final_val_accuracy;  /* NAN when never evaluated */
    double wall_s, emulated_s;
    double mean_step_wall_s, mean_step_emulated_s;
    double predicted_step_s;
    long tokens_per_step;
    int n_ranks;
    run_rank_summary rank[SUMMARY_MAX_RANKS];
} run_summary;

/* Fill *s with "nothing known": NANs, -1, zero ranks. */
void summary_init(run_summary *s);
/* Write DIR/summary.txt. 0 or -1 with e set. */
int summary_write(const char *dir, const run_summary *s, et_err *e);
/* Read DIR/summary.txt. 0 or -1 with e set (ET_EINPUT). */
int summary_read(const char *dir, run_summary *s, et_err *e);

#endif
