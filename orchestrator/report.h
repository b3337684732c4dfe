/*
 * report — what a finished (or interrupted) run amounts to, rendered from the
 * files in its run directory (DESIGN.md §3 "Metrics"):
 *
 *   reads    DIR/summary.txt   (workers/summary.h: required, it marks a run dir)
 *            DIR/metrics.csv   (workers/metrics.h: one row per step; optional)
 *   writes   DIR/report.md     time-to-accuracy, predicted vs measured step
 *                              time (overall and per stage), per-rank and
 *                              per-server utilisation, bytes per rank and per
 *                              pipeline boundary link, the plan and its
 *                              bottleneck, links to the plots
 *            DIR/report.json   the one-line JSON summary (also printed by --json)
 *            DIR/loss.png      train/val loss vs emulated time (+ target)
 *            DIR/loss_wall.png the same vs wall time
 *            DIR/ranks.png     per-rank stacked bars: busy, wait, bubble
 *            DIR/plots.gp, DIR/plots_*.dat, DIR/plots.log
 *                              the gnuplot script, its data and its output
 *   prints   a short human summary on stdout (the same numbers as report.md),
 *            then, with json != 0, the JSON line as the last line.
 *
 * cfg and plan are optional (NULL): without them the report keeps to what
 * summary.txt and metrics.csv say and states what it had to leave out.
 * Every file is written to a temporary name and renamed into place. gnuplot
 * is run with fork + execvp (no shell); if it is missing the report says so
 * in one line and everything else is still written.
 *
 * JSON keys: name, status, clock, reached, steps, steps_to_target,
 * tokens_to_target, tta_emulated_s, tta_wall_s, final_val_loss,
 * final_val_accuracy, predicted_step_s, measured_step_emulated_s,
 * measured_step_wall_s, prediction_error_pct, n_workers, n_stages,
 * n_replicas, schedule, run_dir, and, for experiment scripts,
 * compute_share, communication_share, bubble_share (the workers' busy, wait
 * and idle time over their sum). Unknown or non-finite values are null.
 */
#ifndef ET_REPORT_H
#define ET_REPORT_H

#include "../common/et_err.h"
#include "../topology/config.h"
#include "plan.h"

/* Render the report of run directory dir (see above). Returns 0, or -1 with
 * e set: ET_EINPUT when dir is not a run directory or its summary.txt or
 * metrics.csv is malformed ("file:line:col: what (hint)"), ET_ERUNTIME when
 * a file cannot be written. Borrows cfg and plan (either may be NULL). */
int report_render(const char *dir, const et_config *cfg, const et_plan *plan, int json, et_err *e);

/* The same, with a one-line note (or NULL) that the report repeats near its
 * top: why the config or plan is missing, for `edgetrain report`. */
int report_render_note(const char *dir, const et_config *cfg, const et_plan *plan, int json,
                       const char *note, et_err *e);

#endif
