/*
 * mpiprobe — MPI message times between the servers of a running job against
 * the link model of the config (the one the virtual clock uses:
 * latency + bytes / bandwidth per message), for the test bed
 * (docs/TESTBED.md) or a real cluster.
 *
 * usage: mpirun ... mpiprobe CONFIG [--bytes N] [--reps R] [--tolerance T]
 *
 * Every rank finds its server by host name (a test bed container's host name
 * is its server's name; on a real cluster, name the servers after the hosts).
 * For each pair of servers (a, b), the lowest rank of each measures:
 *   small: the median round trip of a 1-byte ping-pong,
 *          model: link(a,b).latency + link(b,a).latency;
 *   large: the median time of N bytes a -> b answered by 1 byte b -> a,
 *          model: time(a->b, N) + time(b->a, 1).
 * Rank 0 prints one line per pair and the deviation; with --tolerance T the
 * exit status is 1 when a large transfer deviates by more than T (relative)
 * or a round trip by more than max(T relative, 0.5 ms).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../parallel/pingpong.h"
#include "../topology/config.h"

/* Load the config on every rank, map ranks to servers by host name, measure
 * every pair of servers in turn (all ranks step through the same loop, so
 * the barriers and messages match), print on rank 0. */
int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int me, np;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    const char *config = NULL;
    long bytes = 4L << 20;
    int reps = 5;
    double tol = 0;
    int usage = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bytes") && i + 1 < argc)
            bytes = atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tolerance") && i + 1 < argc)
            tol = atof(argv[++i]);
        else if (argv[i][0] != '-' && !config)
            config = argv[i];
        else
            usage = 1;
    }
    if (usage || !config || bytes < 1 || bytes > (1L << 30) || reps < 1 || reps > 1000 || tol < 0) {
        if (me == 0)
            fprintf(stderr, "usage: mpirun ... mpiprobe CONFIG [--bytes N] [--reps R] [--tolerance T]\n");
        MPI_Finalize();
        return 2;
    }
    et_err e;
    et_err_clear(&e);
    et_config *cfg = et_config_load(config, &e);
    int ok = cfg != NULL, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        if (me == 0)
            fprintf(stderr, "mpiprobe: %s\n", cfg ? "a rank could not load the config" : e.msg);
        et_config_free(cfg);
        MPI_Finalize();
        return 2;
    }
    const et_cluster *c = &cfg->cluster;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    int srv = et_cluster_find(c, host);
    int *srv_of = malloc((size_t)np * sizeof *srv_of);
    MPI_Allgather(&srv, 1, MPI_INT, srv_of, 1, MPI_INT, MPI_COMM_WORLD);
    int unknown = -1;
    for (int r = 0; r < np; r++)
        if (srv_of[r] < 0 && unknown < 0)
            unknown = r;
    if (unknown >= 0) {
        if (me == 0)
            fprintf(stderr, "mpiprobe: rank %d runs on a host that is no server of %s\n", unknown, config);
        free(srv_of);
        et_config_free(cfg);
        MPI_Finalize();
        return 2;
    }
    /* The lowest rank on each server speaks for it. */
    int n = c->n_servers;
    int *leader = malloc((size_t)n * sizeof *leader);
    for (int s = 0; s < n; s++)
        leader[s] = -1;
    for (int r = np - 1; r >= 0; r--)
        leader[srv_of[r]] = r;
    char *buf = calloc((size_t)bytes, 1);
    double *times = malloc((size_t)(2 * reps + 1) * sizeof *times);
    int bad = 0;
    if (me == 0)
        printf("%-12s %-12s %10s %10s %7s   %10s %10s %7s\n", "a", "b", "rtt ms", "model",
               "dev", "large ms", "model", "dev");
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            if (leader[a] < 0 || leader[b] < 0)
                continue;
            int ra = leader[a], rb = leader[b];
            MPI_Barrier(MPI_COMM_WORLD);
            double small = pp_median(MPI_COMM_WORLD, me, ra, rb, buf, 1, reps * 2, times);
            double large = pp_median(MPI_COMM_WORLD, me, ra, rb, buf, (int)bytes, reps, times);
            double m[2] = {small, large};
            /* Rank ra measured; bring it to rank 0. */
            if (ra != 0) {
                if (me == ra)
                    MPI_Send(m, 2, MPI_DOUBLE, 0, 3, MPI_COMM_WORLD);
                if (me == 0)
                    MPI_Recv(m, 2, MPI_DOUBLE, ra, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
            if (me == 0) {
                et_link ab = et_cluster_link(c, a, b), ba = et_cluster_link(c, b, a);
                double ms = ab.latency + ba.latency;
                double ml = et_link_time(ab, (double)bytes) + et_link_time(ba, 1.0);
                double ds = (m[0] - ms) / fmax(ms, 1e-9), dl = (m[1] - ml) / ml;
                int pair_ok = fabs(m[0] - ms) <= fmax(tol * ms, 5e-4) && fabs(dl) <= tol;
                if (tol > 0 && !pair_ok)
                    bad = 1;
                printf("%-12s %-12s %10.3f %10.3f %+6.1f%%   %10.3f %10.3f %+6.1f%%%s\n",
                       c->servers[a].name, c->servers[b].name, m[0] * 1e3, ms * 1e3, 100 * ds,
                       m[1] * 1e3, ml * 1e3, 100 * dl, tol > 0 && !pair_ok ? "  OUT" : "");
                fflush(stdout);
            }
        }
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(buf);
    free(times);
    free(leader);
    free(srv_of);
    et_config_free(cfg);
    MPI_Finalize();
    return bad ? 1 : 0;
}
