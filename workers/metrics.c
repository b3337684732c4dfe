#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static const char header[] =
    "step,wall_s,emulated_s,lr,train_loss,val_loss,val_accuracy,tokens_per_s,"
    "grad_norm,step_wall_s,step_emulated_s\n";

int metrics_open(et_metrics_file *m, const char *dir, int append, et_err *e)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    int exists = access(path, F_OK) == 0;
    m->f = fopen(path, append && exists ? "a" : "w");
    if (!m->f)
        return et_errf(e, ET_ERUNTIME, "%s: cannot open for writing (%s)", path, strerror(errno));
    if (!(append && exists))
        fputs(header, m->f);
    fflush(m->f);
    return 0;
}

/* An empty field for NAN (steps without evaluation), else %.7g. */
static void field(FILE *f, double v)
{
    if (!isnan(v))
        fprintf(f, "%.7g", v);
}

void metrics_write(et_metrics_file *m, const et_step_metrics *r)
{
    FILE *f = m->f;
    fprintf(f, "%ld,%.6f,%.6f,%.6g,%.7g,", r->step, r->wall_s, r->emulated_s, r->lr, r->train_loss);
    field(f, r->val_loss);
    fputc(',', f);
    field(f, r->val_accuracy);
    fprintf(f, ",%.1f,%.6g,%.6f,%.6f\n", r->tokens_per_s, r->grad_norm, r->step_wall_s,
            r->step_emulated_s);
    fflush(f);
}

void metrics_close(et_metrics_file *m)
{
    if (m->f)
        fclose(m->f);
    m->f = NULL;
}
