#include "summary.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void summary_init(run_summary *s)
{
    memset(s, 0, sizeof *s);
    strcpy(s->status, "ok");
    strcpy(s->clock, "virtual");
    s->steps_to_target = -1;
    s->tta_wall_s = s->tta_emulated_s = NAN;
    s->final_val_loss = s->final_val_accuracy = NAN;
    s->mean_step_wall_s = s->mean_step_emulated_s = s->predicted_step_s = NAN;
}

int summary_write(const char *dir, const run_summary *s, et_err *e)
{
    char path[2048], tmp[2100];
    snprintf(path, sizeof path, "%s/%s", dir, SUMMARY_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", tmp, strerror(errno));
    fprintf(f, "status %s\nclock %s\n", s->status, s->clock);
    fprintf(f, "steps %ld\nsteps_this_run %ld\n", s->steps, s->steps_this_run);
    fprintf(f, "reached %d\nsteps_to_target %ld\n", s->reached, s->steps_to_target);
    fprintf(f, "tta_wall_s %.9g\ntta_emulated_s %.9g\n", s->tta_wall_s, s->tta_emulated_s);
    fprintf(f, "final_val_loss %.9g\nfinal_val_accuracy %.9g\n", s->final_val_loss,
            s->final_val_accuracy);
    fprintf(f, "wall_s %.9g\nemulated_s %.9g\n", s->wall_s, s->emulated_s);
    fprintf(f, "mean_step_wall_s %.9g\nmean_step_emulated_s %.9g\n", s->mean_step_wall_s,
            s->mean_step_emulated_s);
    fprintf(f, "predicted_step_s %.9g\ntokens_per_step %ld\n", s->predicted_step_s, s->tokens_per_step);
    for (int i = 0; i < s->n_ranks; i++) {
        const run_rank_summary *r = &s->rank[i];
        fprintf(f, "rank %d server %s stage %d busy_s %.9g wait_s %.9g idle_s %.9g bytes %.0f\n",
                r->rank, r->server, r->stage, r->busy_s, r->wait_s, r->idle_s, r->bytes);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return et_errf(e, ET_ERUNTIME, "%s: cannot write (%s)", path, strerror(errno));
    return 0;
}

int summary_read(const char *dir, run_summary *s, et_err *e)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, SUMMARY_FILE);
    FILE *f = fopen(path, "r");
    if (!f)
        return et_errf(e, ET_EINPUT, "%s: cannot open (%s) (is this a run directory?)", path,
                       strerror(errno));
    summary_init(s);
    char line[1024], key[64], val[256];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strncmp(line, "rank ", 5)) {
            if (s->n_ranks >= SUMMARY_MAX_RANKS)
                continue;
            run_rank_summary *r = &s->rank[s->n_ranks];
            if (sscanf(line, "rank %d server %63s stage %d busy_s %lf wait_s %lf idle_s %lf bytes %lf",
                       &r->rank, r->server, &r->stage, &r->busy_s, &r->wait_s, &r->idle_s,
                       &r->bytes) != 7) {
                fclose(f);
                return et_errf(e, ET_EINPUT, "%s:%d:1: malformed rank line", path, lineno);
            }
            s->n_ranks++;
            continue;
        }
        if (sscanf(line, "%63s %255s", key, val) != 2)
            continue;
        char *end;
        double d = strtod(val, &end);
        int textual = !strcmp(key, "status") || !strcmp(key, "clock");
        if (!textual && *end != '\0') {
            fclose(f);
            return et_errf(e, ET_EINPUT, "%s:%d:%d: '%s' is not a number (a damaged summary; re-run the job)",
                           path, lineno, (int)(strstr(line, val) - line) + 1, val);
        }
        if (!strcmp(key, "status")) snprintf(s->status, sizeof s->status, "%.31s", val);
        else if (!strcmp(key, "clock")) snprintf(s->clock, sizeof s->clock, "%.15s", val);
        else if (!strcmp(key, "steps")) s->steps = (long)d;
        else if (!strcmp(key, "steps_this_run")) s->steps_this_run = (long)d;
        else if (!strcmp(key, "reached")) s->reached = (int)d;
        else if (!strcmp(key, "steps_to_target")) s->steps_to_target = (long)d;
        else if (!strcmp(key, "tta_wall_s")) s->tta_wall_s = d;
        else if (!strcmp(key, "tta_emulated_s")) s->tta_emulated_s = d;
        else if (!strcmp(key, "final_val_loss")) s->final_val_loss = d;
        else if (!strcmp(key, "final_val_accuracy")) s->final_val_accuracy = d;
        else if (!strcmp(key, "wall_s")) s->wall_s = d;
        else if (!strcmp(key, "emulated_s")) s->emulated_s = d;
        else if (!strcmp(key, "mean_step_wall_s")) s->mean_step_wall_s = d;
        else if (!strcmp(key, "mean_step_emulated_s")) s->mean_step_emulated_s = d;
        else if (!strcmp(key, "predicted_step_s")) s->predicted_step_s = d;
        else if (!strcmp(key, "tokens_per_step")) s->tokens_per_step = (long)d;
    }
    fclose(f);
    return 0;
}
