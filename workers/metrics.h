/*
 * metrics — the run's per-step record (DESIGN.md "Metrics"): metrics.csv with
 * one row per step, flushed as it goes so a crashed run keeps its history.
 */
#ifndef ET_METRICS_H
#define ET_METRICS_H

#include <stdio.h>

#include "../common/et_err.h"

typedef struct et_step_metrics {
    long step;            /* 0-based */
    double wall_s;        /* seconds since the run began, end of this step */
    double emulated_s;    /* virtual-clock seconds since the run began */
    double lr;
    double train_loss;    /* loss of this step's forward pass, before its update */
    double val_loss;      /* NAN when not evaluated at this step */
    double val_accuracy;  /* NAN when not evaluated */
    double tokens_per_s;  /* training tokens of this step / its wall time */
    double grad_norm;     /* global L2 norm before clipping */
    double step_wall_s;   /* wall seconds of this step alone */
    double step_emulated_s;
} et_step_metrics;

typedef struct et_metrics_file {
    FILE *f;
} et_metrics_file;

/* Open DIR/metrics.csv; append (keeping earlier rows) when `append` is set and
 * the file exists, else create it with the header. 0 or -1 with e set. */
int metrics_open(et_metrics_file *m, const char *dir, int append, et_err *e);
/* Write one row and flush. */
void metrics_write(et_metrics_file *m, const et_step_metrics *r);
void metrics_close(et_metrics_file *m);

#endif
