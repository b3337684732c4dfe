/*
 * cluster — the cluster graph the loader builds: servers and the n x n link
 * matrix (filled from links.default, then the pairs, symmetric). Queries only;
 * the memory belongs to the et_config that holds the cluster.
 */
#include "config.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/*
 * The link between servers a and b (indices in [0, n_servers)). a == b is
 * the in-host link: bandwidth INFINITY, latency 0. Indices out of range are a
 * programming error (asserted).
 */
et_link et_cluster_link(const et_cluster *c, int a, int b)
{
    assert(c != NULL && a >= 0 && b >= 0 && a < c->n_servers && b < c->n_servers);
    if (a == b)
        return (et_link){INFINITY, 0.0};
    return c->link[(size_t)a * (size_t)c->n_servers + (size_t)b];
}

/* Index of the server called name, or -1 (also for a NULL cluster or name). */
int et_cluster_find(const et_cluster *c, const char *name)
{
    if (c == NULL || name == NULL)
        return -1;
    for (int i = 0; i < c->n_servers; i++)
        if (strcmp(c->servers[i].name, name) == 0)
            return i;
    return -1;
}

/*
 * Minimum bandwidth and maximum latency over every pair of distinct servers
 * among idx[0..n-1]; {INFINITY, 0} when fewer than two distinct servers.
 * O(n^2), no allocation.
 */
et_link et_cluster_slowest(const et_cluster *c, const int *idx, int n)
{
    et_link worst = {INFINITY, 0.0};
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            if (idx[i] == idx[j])
                continue;
            et_link l = et_cluster_link(c, idx[i], idx[j]);
            if (l.bandwidth < worst.bandwidth)
                worst.bandwidth = l.bandwidth;
            if (l.latency > worst.latency)
                worst.latency = l.latency;
        }
    }
    return worst;
}

/* Time to send `bytes` over l: latency + bytes / bandwidth (0 transfer time
 * on the in-host link, whose bandwidth is INFINITY). */
double et_link_time(et_link l, double bytes)
{
    return l.latency + (bytes > 0.0 ? bytes / l.bandwidth : 0.0);
}

/* Sum of the servers' slots. */
int et_cluster_total_slots(const et_cluster *c)
{
    int total = 0;
    for (int i = 0; i < c->n_servers; i++)
        total += c->servers[i].slots;
    return total;
}
