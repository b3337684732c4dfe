/*
 * trainer — the training run's control loop: steps, learning rate, evaluation,
 * target, checkpoints, metrics, progress, signals. This file runs a plan whose
 * whole model sits on one process (parallel 1/1/1); the MPI worker runs the
 * same loop's decisions on the controller rank.
 */
#ifndef ET_TRAINER_H
#define ET_TRAINER_H

#include "../common/et_err.h"
#include "../topology/config.h"

typedef struct et_train_opts {
    const char *out_dir;    /* run directory (created); required */
    int resume;             /* continue from training.checkpoint.path */
    int progress;           /* 1: one line per step on stdout */
    double emulated_step_s; /* virtual-clock seconds of one step on this plan's
                               server (the cost model's simulation of the one-stage
                               schedule; a single rank has no links to emulate) */
    const char *server;     /* name of the server this process stands for */
} et_train_opts;

typedef struct et_train_result {
    long steps;             /* steps done in total (including resumed ones) */
    int reached;            /* target met */
    long steps_to_target;   /* step+1 of the first evaluation that met it, or -1 */
    double tta_wall_s, tta_emulated_s;   /* time to accuracy, or NAN */
    double final_val_loss, final_val_accuracy;
    double wall_s, emulated_s;           /* totals at the end */
    int interrupted;        /* stopped by SIGINT/SIGTERM (checkpoint written) */
} et_train_result;

/* Train cfg on this process alone. Returns 0 or -1 with e set (ET_EINPUT for
 * bad data/checkpoints, ET_ERUNTIME for non-finite loss or I/O). */
int trainer_run_single(const et_config *cfg, const et_train_opts *o, et_train_result *res, et_err *e);

/* The optimizer settings of a training section (AdamW per DESIGN.md). */
struct optim_config;
void trainer_optim_config(const et_training *t, struct optim_config *o);

/* Is step s (0-based) an evaluation step: every eval_every steps and the last. */
int trainer_is_eval_step(const et_training *t, long s);
/* Is a checkpoint due after step s: every checkpoint.every steps and at the
 * run's last step (`last`), when a checkpoint path is configured. */
int trainer_is_ckpt_step(const et_training *t, long s, int last);
/* Does (val_loss, val_accuracy) meet the target? (no target: never) */
int trainer_target_met(const et_training *t, double val_loss, double val_accuracy);

#endif
