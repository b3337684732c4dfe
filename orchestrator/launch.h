/*
 * launch — the launch material of a plan: hostfile, rankfile and the exact
 * mpirun argv (an array: `run` calls execvp on it, never a shell).
 *
 * Placement: rank 0 (the controller) on the host of the config's first
 * server, worker rank k on the host of its plan server (plan.h's rank
 * order). On a plan whose hosts are all this machine ("localhost",
 * "127.0.0.1" or this hostname) no hostfile is passed, ranks are not bound to
 * cores and --oversubscribe is added when ranks outnumber the cores; on a real
 * cluster the hostfile gives each host as many slots as ranks it runs and the
 * rankfile pins every rank to its host, and Open MPI's TCP eager limits are
 * raised to ET_LAUNCH_TCP_EAGER bytes (see launch.c).
 */
#ifndef ET_LAUNCH_H
#define ET_LAUNCH_H

#include <stddef.h>

#include "../common/et_err.h"
#include "../topology/config.h"
#include "plan.h"

/* Open MPI's btl_tcp_eager_limit, btl_tcp_rndv_eager_limit and
 * btl_tcp_max_send_size for runs across hosts (and on the test bed): a
 * GPT-2 activation or gradient message goes without a rendezvous round trip. */
#define ET_LAUNCH_TCP_EAGER "4194304"

typedef struct launch_material {
    char **argv;            /* NULL-terminated; argv[0] is "mpirun"; owned */
    int argc;
    int local;              /* every rank on this machine */
    char hostfile[1100];    /* written next to the plan ("" when local) */
    char rankfile[1100];
} launch_material;

typedef struct launch_opts {
    const char *out_dir;    /* run directory for the worker's --out, or NULL */
    int resume;             /* pass --resume */
    int quiet;              /* pass --quiet */
    int progress_bar;       /* pass --progress-bar (run's stdout is a terminal) */
    int testbed;            /* hosts are the servers' names (the test bed's container
                               hostnames), the rankfile is always passed, and the
                               workers measure wall-clock time (--clock wall) */
} launch_opts;

/* Build the material for running `plan` (at plan_path) of the config at
 * config_path. The hostfile and rankfile are written beside plan_path
 * (always, so a user can take them to a cluster; passed to mpirun only when
 * not local or on the test bed). Paths in the argv are made absolute. 0, or
 * -1 with e set. Free with launch_material_free. */
int launch_prepare(const et_plan *plan, const et_config *cfg, const char *config_path,
                   const char *plan_path, const launch_opts *o, launch_material *lm, et_err *e);
void launch_material_free(launch_material *lm);

/* The argv as one line a user can paste into a shell (arguments quoted where
 * needed). Returns the length written (truncated to len-1). */
size_t launch_format(const launch_material *lm, char *buf, size_t len);

#endif
