/*
 * linkemu — the test bed's userspace link emulator (docs/TESTBED.md).
 *
 * Every emulated edge server lives in its own network namespace with one TUN
 * device (address 10.78.0.x/24, every other test bed address routed into the
 * TUN). linkemu holds all those TUN devices at once and is the only path
 * between them: it reads each IPv4 packet a namespace sends, finds the
 * destination namespace by address, and delivers the packet there after the
 * per-pair (source, destination) link has carried it:
 *
 *     start   = max(arrival, link busy until)
 *     done    = start + bytes / rate          (serialisation; the link is busy until then)
 *     deliver = done + delay                  (propagation)
 *
 * which is the same model the virtual clock uses (DESIGN.md §4), applied to
 * IP packets (headers included, as on a real wire). A packet that would make
 * the link's backlog exceed its queue limit is dropped (tail drop), so TCP
 * finds the rate as on a real bottleneck. Each direction of a pair is its own
 * link. The kernel here has no netem qdisc; this is what stands in for it.
 *
 * usage: linkemu TABLE [--ready-fd N] [--stats FILE] [--priority rt|nice|none]
 *
 * TABLE (written by `edgetrain testbed up`; '#' starts a comment):
 *     mtu BYTES
 *     node NAME NETNS_PATH IFNAME IPV4
 *     link SRC DST RATE_BYTES_PER_S DELAY_S [QUEUE_BYTES]
 * RATE 0 means unlimited. Pairs without a link line are forwarded at once.
 * The TUN devices must exist (persistent, created with `ip tuntap`).
 *
 * Signals: SIGTERM/SIGINT end it (the TUN devices stay, being persistent);
 * SIGUSR1 writes per-link counters to the --stats file (temporary name, then
 * rename). --ready-fd: "ready\n" is written there once every TUN is attached,
 * so the starter knows the links carry traffic. Errors in TABLE print
 * "linkemu: TABLE:LINE: what" and exit 2; failures to attach exit 1.
 *
 * The forwarding loop never allocates: packet buffers and per-link queues are
 * allocated once at start.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define LE_MAX_NODES 254
#define LE_NAME_MAX 64
#define LE_RING 4096          /* packets queued per link, at most (power of two) */
#define LE_POOL 8192          /* packet buffers in all */
#define LE_BATCH 64           /* packets read from one TUN before looking at the others */

typedef struct le_node {
    char name[LE_NAME_MAX];
    char netns[1024];
    char ifname[IFNAMSIZ];
    uint32_t ip;              /* network byte order */
    int fd;
} le_node;

typedef struct le_link {
    double rate;              /* bytes per second; 0 = unlimited */
    int64_t delay_ns;
    int64_t qlimit;           /* bytes the link may hold back, beyond the one in service */
    int64_t busy_until;       /* ns, CLOCK_MONOTONIC: end of the last packet's serialisation */
    /* FIFO of packets in flight; deliver times are non-decreasing along it. */
    uint32_t head, count;
    int32_t *buf;             /* LE_RING buffer indices */
    int64_t *deliver;         /* LE_RING delivery times */
    uint64_t packets, bytes, drops;
    int active;               /* on the active list (count > 0) */
} le_link;

typedef struct le_state {
    int n;
    le_node node[LE_MAX_NODES];
    le_link *link;            /* n x n, [src * n + dst] */
    int mtu;
    size_t bufsize;
    unsigned char *pool;      /* LE_POOL * bufsize */
    uint16_t *len;            /* LE_POOL */
    int32_t *free_stack;      /* LE_POOL */
    int n_free;
    int *active;              /* link indices with queued packets */
    int n_active;
    uint64_t unroutable;
} le_state;

static volatile sig_atomic_t g_stop, g_dump;

/* Signal handlers: only set flags, the loop acts on them. */
static void on_stop(int sig) { (void)sig; g_stop = 1; }
/* SIGUSR1: ask for the counters. */
static void on_dump(int sig) { (void)sig; g_dump = 1; }

/* Print "linkemu: ..." to stderr and exit with code. Used only before the
 * forwarding loop starts (start-up errors). */
static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("linkemu: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

/* Monotonic time in nanoseconds. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Index of the node called name, or -1. */
static int find_node(const le_state *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->node[i].name, name))
            return i;
    return -1;
}

/* Parse a non-negative finite number; 0 on success. */
static int parse_num(const char *t, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (errno || end == t || *end || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* Read TABLE into s (nodes, link parameters). Exits 2 with "TABLE:LINE: what"
 * on anything malformed. Link arrays are allocated here (owned by s, freed at
 * exit). */
static void load_table(le_state *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(2, "%s: cannot open (%s)", path, strerror(errno));
    char line[4096];
    int lineno = 0;
    s->mtu = 1500;
    /* Links are collected first and applied once every node is known. */
    typedef struct { char a[LE_NAME_MAX], b[LE_NAME_MAX]; double rate, delay, q; int line; } pend;
    size_t n_pend = 0, cap_pend = 64;
    pend *pl = malloc(cap_pend * sizeof *pl);
    if (!pl)
        die(1, "out of memory");
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *tok[8];
        int nt = 0;
        for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t && nt < 8;
             t = strtok_r(NULL, " \t\r\n", &save))
            tok[nt++] = t;
        if (nt == 0)
            continue;
        if (!strcmp(tok[0], "mtu")) {
            double v;
            if (nt != 2 || parse_num(tok[1], &v) || v < 576 || v > 65535)
                die(2, "%s:%d: 'mtu BYTES' with 576 <= BYTES <= 65535", path, lineno);
            s->mtu = (int)v;
        } else if (!strcmp(tok[0], "node")) {
            if (nt != 5)
                die(2, "%s:%d: 'node NAME NETNS_PATH IFNAME IPV4' expected", path, lineno);
            if (s->n == LE_MAX_NODES)
                die(2, "%s:%d: more than %d nodes", path, lineno, LE_MAX_NODES);
            le_node *nd = &s->node[s->n];
            if (strlen(tok[1]) >= sizeof nd->name || strlen(tok[2]) >= sizeof nd->netns ||
                strlen(tok[3]) >= sizeof nd->ifname)
                die(2, "%s:%d: name, path or interface name too long", path, lineno);
            if (find_node(s, tok[1]) >= 0)
                die(2, "%s:%d: node '%s' defined twice", path, lineno, tok[1]);
            struct in_addr a;
            if (inet_pton(AF_INET, tok[4], &a) != 1)
                die(2, "%s:%d: '%s' is not an IPv4 address", path, lineno, tok[4]);
            for (int i = 0; i < s->n; i++)
                if (s->node[i].ip == a.s_addr)
                    die(2, "%s:%d: address %s used twice", path, lineno, tok[4]);
            snprintf(nd->name, sizeof nd->name, "%s", tok[1]);
            snprintf(nd->netns, sizeof nd->netns, "%s", tok[2]);
            snprintf(nd->ifname, sizeof nd->ifname, "%s", tok[3]);
            nd->ip = a.s_addr;
            nd->fd = -1;
            s->n++;
        } else if (!strcmp(tok[0], "link")) {
            if (nt != 5 && nt != 6)
                die(2, "%s:%d: 'link SRC DST RATE_BYTES_PER_S DELAY_S [QUEUE_BYTES]' expected",
                    path, lineno);
            pend p = {.line = lineno, .q = -1};
            if (strlen(tok[1]) >= LE_NAME_MAX || strlen(tok[2]) >= LE_NAME_MAX)
                die(2, "%s:%d: node name too long", path, lineno);
            snprintf(p.a, sizeof p.a, "%s", tok[1]);
            snprintf(p.b, sizeof p.b, "%s", tok[2]);
            if (parse_num(tok[3], &p.rate))
                die(2, "%s:%d: rate '%s' is not a number >= 0", path, lineno, tok[3]);
            if (parse_num(tok[4], &p.delay) || p.delay > 10)
                die(2, "%s:%d: delay '%s' is not a number of seconds in [0, 10]", path, lineno, tok[4]);
            if (nt == 6 && parse_num(tok[5], &p.q))
                die(2, "%s:%d: queue '%s' is not a number >= 0", path, lineno, tok[5]);
            if (n_pend == cap_pend) {
                cap_pend *= 2;
                pend *np = realloc(pl, cap_pend * sizeof *pl);
                if (!np)
                    die(1, "out of memory");
                pl = np;
            }
            pl[n_pend++] = p;
        } else {
            die(2, "%s:%d: unknown keyword '%s' (mtu, node or link)", path, lineno, tok[0]);
        }
    }
    fclose(f);
    if (s->n < 2)
        die(2, "%s: fewer than two nodes", path);

    s->link = calloc((size_t)s->n * s->n, sizeof *s->link);
    if (!s->link)
        die(1, "out of memory");
    for (int i = 0; i < s->n * s->n; i++) {
        le_link *l = &s->link[i];
        l->buf = malloc(LE_RING * sizeof *l->buf);
        l->deliver = malloc(LE_RING * sizeof *l->deliver);
        if (!l->buf || !l->deliver)
            die(1, "out of memory");
        l->qlimit = INT64_MAX;
    }
    for (size_t k = 0; k < n_pend; k++) {
        int a = find_node(s, pl[k].a), b = find_node(s, pl[k].b);
        if (a < 0 || b < 0)
            die(2, "%s:%d: unknown node '%s'", path, pl[k].line, a < 0 ? pl[k].a : pl[k].b);
        if (a == b)
            die(2, "%s:%d: a link needs two different nodes", path, pl[k].line);
        le_link *l = &s->link[a * s->n + b];
        l->rate = pl[k].rate;
        l->delay_ns = (int64_t)llround(pl[k].delay * 1e9);
        if (pl[k].q >= 0) {
            l->qlimit = (int64_t)pl[k].q;
        } else if (l->rate > 0) {
            /* Default queue: twice the bandwidth-delay product of a round
             * trip over this pair, at least 64 full packets, so that one TCP
             * flow fills the link (as a well-buffered router would). */
            double bdp = l->rate * 2.0 * pl[k].delay;
            double q = fmax(2.0 * bdp, 64.0 * s->mtu);
            l->qlimit = (int64_t)q;
        }
    }
    free(pl);
}

/* Open each node's TUN device from inside its network namespace (the device
 * belongs to the namespace in which TUNSETIFF runs), then return to our own
 * namespace. Exits 1 when a namespace or device cannot be attached. */
static void attach_tuns(le_state *s)
{
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        die(1, "cannot open /proc/self/ns/net (%s)", strerror(errno));
    for (int i = 0; i < s->n; i++) {
        le_node *nd = &s->node[i];
        int ns = open(nd->netns, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
            die(1, "node %s: cannot open %s (%s)", nd->name, nd->netns, strerror(errno));
        if (setns(ns, CLONE_NEWNET) < 0)
            die(1, "node %s: cannot enter %s (%s; needs CAP_SYS_ADMIN)", nd->name, nd->netns,
                strerror(errno));
        close(ns);
        int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            die(1, "cannot open /dev/net/tun (%s)", strerror(errno));
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
        memcpy(ifr.ifr_name, nd->ifname, strlen(nd->ifname));
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
            die(1, "node %s: cannot attach TUN device %s in %s (%s)", nd->name, nd->ifname,
                nd->netns, strerror(errno));
        nd->fd = fd;
    }
    if (setns(self, CLONE_NEWNET) < 0)
        die(1, "cannot return to our own network namespace (%s)", strerror(errno));
    close(self);
}

/* Allocate the packet pool (buffers of MTU bytes plus slack) and the active
 * list. Owned by s for the life of the process. */
static void alloc_pool(le_state *s)
{
    s->bufsize = (size_t)s->mtu + 64;
    s->pool = malloc(LE_POOL * s->bufsize);
    s->len = malloc(LE_POOL * sizeof *s->len);
    s->free_stack = malloc(LE_POOL * sizeof *s->free_stack);
    s->active = malloc((size_t)s->n * s->n * sizeof *s->active);
    if (!s->pool || !s->len || !s->free_stack || !s->active)
        die(1, "out of memory");
    for (int i = 0; i < LE_POOL; i++)
        s->free_stack[i] = LE_POOL - 1 - i;
    s->n_free = LE_POOL;
}

/* Node whose address is the IPv4 destination of pkt, or -1. */
static int route(const le_state *s, const unsigned char *pkt, size_t len)
{
    if (len < 20 || (pkt[0] >> 4) != 4)
        return -1;
    uint32_t dst;
    memcpy(&dst, pkt + 16, 4);
    for (int i = 0; i < s->n; i++)
        if (s->node[i].ip == dst)
            return i;
    return -1;
}

/* Put buffer b (len bytes, arrived at time now from node src) on its link
 * towards node dst, or drop it when the link's queue is full. */
static void enqueue(le_state *s, int src, int dst, int b, int64_t now)
{
    int li = src * s->n + dst;
    le_link *l = &s->link[li];
    size_t len = s->len[b];
    int64_t start = l->busy_until > now ? l->busy_until : now;
    int64_t tx = 0;
    if (l->rate > 0) {
        if ((double)(start - now) * 1e-9 * l->rate > (double)l->qlimit) {
            l->drops++;
            s->free_stack[s->n_free++] = b;
            return;
        }
        tx = (int64_t)((double)len / l->rate * 1e9);
    }
    if (l->count == LE_RING) {
        l->drops++;
        s->free_stack[s->n_free++] = b;
        return;
    }
    l->busy_until = start + tx;
    uint32_t slot = (l->head + l->count) & (LE_RING - 1);
    l->buf[slot] = b;
    l->deliver[slot] = l->busy_until + l->delay_ns;
    l->count++;
    l->packets++;
    l->bytes += len;
    if (!l->active) {
        l->active = 1;
        s->active[s->n_active++] = li;
    }
}

/* Deliver every queued packet that is due at time now; return the earliest
 * delivery time still pending (INT64_MAX when nothing is queued). */
static int64_t deliver_due(le_state *s, int64_t now)
{
    int64_t next = INT64_MAX;
    for (int k = 0; k < s->n_active;) {
        int li = s->active[k];
        le_link *l = &s->link[li];
        int dst = li % s->n;
        while (l->count && l->deliver[l->head] <= now) {
            int b = l->buf[l->head];
            /* A TUN write injects the packet into dst's stack; it fails only
             * when the device is down, and then the packet is lost as on a
             * cut wire. */
            if (write(s->node[dst].fd, s->pool + (size_t)b * s->bufsize, s->len[b]) < 0)
                l->drops++;
            s->free_stack[s->n_free++] = b;
            l->head = (l->head + 1) & (LE_RING - 1);
            l->count--;
        }
        if (l->count) {
            if (l->deliver[l->head] < next)
                next = l->deliver[l->head];
            k++;
        } else {
            l->active = 0;
            s->active[k] = s->active[--s->n_active];
        }
    }
    return next;
}

/* Read up to LE_BATCH packets from node src's TUN and queue them. Returns
 * -1 when the device failed (not EAGAIN). */
static int read_node(le_state *s, int src)
{
    for (int k = 0; k < LE_BATCH; k++) {
        if (s->n_free == 0) {
            /* Every buffer is in flight: leave the rest in the kernel's
             * queue, it will be read when deliveries free buffers. */
            return 0;
        }
        int b = s->free_stack[--s->n_free];
        unsigned char *p = s->pool + (size_t)b * s->bufsize;
        ssize_t r = read(s->node[src].fd, p, s->bufsize);
        if (r < 0) {
            s->free_stack[s->n_free++] = b;
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -1;
        }
        int dst = route(s, p, (size_t)r);
        if (dst < 0 || dst == src || (size_t)r > (size_t)s->mtu) {
            s->unroutable++;
            s->free_stack[s->n_free++] = b;
            continue;
        }
        s->len[b] = (uint16_t)r;
        enqueue(s, src, dst, b, now_ns());
    }
    return 0;
}

/* Write per-link counters to path (temporary name, then rename): one line
 * "SRC DST packets bytes drops rate_bytes_per_s delay_s". */
static void dump_stats(const le_state *s, const char *path)
{
    if (!path)
        return;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "# src dst packets bytes drops rate_bytes_per_s delay_s\n");
    for (int a = 0; a < s->n; a++)
        for (int b = 0; b < s->n; b++) {
            if (a == b)
                continue;
            const le_link *l = &s->link[a * s->n + b];
            fprintf(f, "%s %s %llu %llu %llu %.17g %.9g\n", s->node[a].name, s->node[b].name,
                    (unsigned long long)l->packets, (unsigned long long)l->bytes,
                    (unsigned long long)l->drops, l->rate, (double)l->delay_ns * 1e-9);
        }
    fprintf(f, "# unroutable %llu\n", (unsigned long long)s->unroutable);
    if (fclose(f) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
}

/* Raise our scheduling priority so that busy ranks on the same cores do not
 * delay packets: SCHED_FIFO (rt), nice -10 (nice) or nothing. Falls back
 * quietly from rt to nice when not permitted. */
static void set_priority(const char *how)
{
    if (!strcmp(how, "none"))
        return;
    if (!strcmp(how, "rt")) {
        struct sched_param sp = {.sched_priority = 10};
        if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0)
            return;
    }
    if (setpriority(PRIO_PROCESS, 0, -10) < 0)
        fprintf(stderr, "linkemu: note: cannot raise priority (%s)\n", strerror(errno));
}

/* Parse the options, load the table, attach the TUN devices, then forward
 * until SIGTERM/SIGINT (see the top of this file). */
int main(int argc, char **argv)
{
    const char *table = NULL, *stats = NULL, *prio = "rt";
    int ready_fd = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: linkemu TABLE [--ready-fd N] [--stats FILE] [--priority rt|nice|none]\n"
                   "Forwards IPv4 packets between TUN devices in network namespaces with a\n"
                   "per-pair rate, delay and queue (see the comment at the top of tools/linkemu.c\n"
                   "and docs/TESTBED.md). Started and stopped by `edgetrain testbed`.\n");
            return 0;
        } else if (!strcmp(argv[i], "--ready-fd") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1 << 20)
                die(2, "--ready-fd needs a descriptor number");
            ready_fd = (int)v;
        } else if (!strcmp(argv[i], "--stats") && i + 1 < argc) {
            stats = argv[++i];
        } else if (!strcmp(argv[i], "--priority") && i + 1 < argc) {
            prio = argv[++i];
            if (strcmp(prio, "rt") && strcmp(prio, "nice") && strcmp(prio, "none"))
                die(2, "--priority is rt, nice or none");
        } else if (argv[i][0] == '-') {
            die(2, "unknown option '%s' (try --help)", argv[i]);
        } else if (!table) {
            table = argv[i];
        } else {
            die(2, "one TABLE only (try --help)");
        }
    }
    if (!table)
        die(2, "no TABLE given (try --help)");

    static le_state s;
    load_table(&s, table);
    attach_tuns(&s);
    alloc_pool(&s);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    set_priority(prio);

    /* Signals are blocked except while waiting in ppoll, so a flag set by a
     * handler is always seen before the next wait. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGUSR1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_dump;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct pollfd *pfd = calloc((size_t)s.n, sizeof *pfd);
    if (!pfd)
        die(1, "out of memory");
    for (int i = 0; i < s.n; i++) {
        pfd[i].fd = s.node[i].fd;
        pfd[i].events = POLLIN;
    }
    if (ready_fd >= 0) {
        if (write(ready_fd, "ready\n", 6) != 6)
            die(1, "cannot write to --ready-fd %d (%s)", ready_fd, strerror(errno));
        close(ready_fd);
    }

    int rc = 0;
    while (!g_stop) {
        if (g_dump) {
            g_dump = 0;
            dump_stats(&s, stats);
        }
        int64_t now = now_ns();
        int64_t next = deliver_due(&s, now);
        struct timespec ts, *tp = NULL;
        if (next != INT64_MAX) {
            int64_t wait = next - now_ns();
            if (wait < 0)
                wait = 0;
            ts.tv_sec = wait / 1000000000LL;
            ts.tv_nsec = wait % 1000000000LL;
            tp = &ts;
        }
        /* With every buffer in flight, only wait for deliveries. */
        for (int i = 0; i < s.n; i++)
            pfd[i].events = s.n_free ? POLLIN : 0;
        int r = ppoll(pfd, (nfds_t)s.n, tp, &waitmask);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "linkemu: poll failed (%s)\n", strerror(errno));
            rc = 1;
            break;
        }
        for (int i = 0; i < s.n && r > 0; i++) {
            if (pfd[i].revents & (POLLERR | POLLNVAL)) {
                fprintf(stderr, "linkemu: TUN device of node %s failed\n", s.node[i].name);
                rc = 1;
                g_stop = 1;
                break;
            }
            if ((pfd[i].revents & POLLIN) && read_node(&s, i) < 0) {
                fprintf(stderr, "linkemu: reading node %s: %s\n", s.node[i].name, strerror(errno));
                rc = 1;
                g_stop = 1;
                break;
            }
        }
    }
    dump_stats(&s, stats);
    for (int i = 0; i < s.n; i++)
        close(s.node[i].fd);
    for (int i = 0; i < s.n * s.n; i++) {
        free(s.link[i].buf);
        free(s.link[i].deliver);
    }
    free(s.link);
    free(s.pool);
    free(s.len);
    free(s.free_stack);
    free(s.active);
    free(pfd);
    return rc;
}
