/*
 * units — exact parsing of the quantities a config writes with units.
 *
 * Syntax of every quantity: optional blanks, a decimal number (digits, an
 * optional fraction, an optional exponent: "10", "1.5", ".5", "2e3", "6.0e-4"),
 * optional blanks (spaces or tabs), a unit, optional blanks. No sign: a leading
 * '-' is rejected as negative, anything else that is not a digit or '.' as
 * "not a number" (so "inf", "nan", "0x10" and "+5" are all refused).
 *
 *   bandwidth  bits per second, SI prefixes (1000^k):
 *                bps  kbps Kbps Mbps Gbps Tbps
 *                bit/s kbit/s Kbit/s Mbit/s Gbit/s Tbit/s
 *                b/s  kb/s Kb/s Mb/s Gb/s Tb/s
 *              bytes per second, SI (1000^k) and binary (1024^k):
 *                B/s kB/s KB/s MB/s GB/s TB/s   KiB/s MiB/s GiB/s TiB/s
 *              Result in BYTES per second: "1Gbps" = 1.25e8, "125MB/s" = 1.25e8.
 *              A bare number is an error (bits or bytes? the hint asks for a unit).
 *   size       B, kB/KB MB GB TB (1000^k), KiB MiB GiB TiB (1024^k); a bare whole
 *              number is bytes. Computed exactly in integers (up to 20
 *              significant digits) and rounded to the nearest byte, half up:
 *              "1.5GiB" = 1610612736, "0.3KB" = 300.
 *   duration   ns us µs ms s min. A bare number is an error. Result in seconds.
 *
 * Units are case-sensitive (b is a bit, B a byte; m is milli, M mega). An
 * unknown unit is refused with the nearest valid one suggested and the list of
 * valid units. Zero is accepted (a latency of 0ms is meaningful); callers that
 * need a positive value check it themselves. Overflow (a result too large for
 * a double or for 64 bits) and underflow to a denormal are refused.
 *
 * Also here: et_closest_name, the "did you mean" helper of every error hint.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct unit_def {
    const char *name;
    double factor;       /* bandwidth: bytes/s per unit; duration: seconds per unit */
    uint64_t ifactor;    /* size: bytes per unit */
} unit_def;

static const unit_def bandwidth_units[] = {
    {"bps", 0.125, 0},        {"kbps", 125.0, 0},      {"Kbps", 125.0, 0},
    {"Mbps", 125e3, 0},       {"Gbps", 125e6, 0},      {"Tbps", 125e9, 0},
    {"bit/s", 0.125, 0},      {"kbit/s", 125.0, 0},    {"Kbit/s", 125.0, 0},
    {"Mbit/s", 125e3, 0},     {"Gbit/s", 125e6, 0},    {"Tbit/s", 125e9, 0},
    {"b/s", 0.125, 0},        {"kb/s", 125.0, 0},      {"Kb/s", 125.0, 0},
    {"Mb/s", 125e3, 0},       {"Gb/s", 125e6, 0},      {"Tb/s", 125e9, 0},
    {"B/s", 1.0, 0},          {"kB/s", 1e3, 0},        {"KB/s", 1e3, 0},
    {"MB/s", 1e6, 0},         {"GB/s", 1e9, 0},        {"TB/s", 1e12, 0},
    {"KiB/s", 1024.0, 0},     {"MiB/s", 1048576.0, 0}, {"GiB/s", 1073741824.0, 0},
    {"TiB/s", 1099511627776.0, 0},
    {NULL, 0, 0},
};
static const char bandwidth_list[] =
    "valid units: bps, Kbps, Mbps, Gbps, Tbps (bits; also Mbit/s, Mb/s), "
    "B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s (bytes)";

static const unit_def size_units[] = {
    {"B", 0, 1ull},
    {"kB", 0, 1000ull},           {"KB", 0, 1000ull},
    {"MB", 0, 1000000ull},        {"GB", 0, 1000000000ull},
    {"TB", 0, 1000000000000ull},
    {"KiB", 0, 1ull << 10},       {"MiB", 0, 1ull << 20},
    {"GiB", 0, 1ull << 30},       {"TiB", 0, 1ull << 40},
    {NULL, 0, 0},
};
static const char size_list[] = "valid units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB";

static const unit_def duration_units[] = {
    {"ns", 1e-9, 0}, {"us", 1e-6, 0}, {"\xc2\xb5s", 1e-6, 0}, {"ms", 1e-3, 0},
    {"s", 1.0, 0},   {"min", 60.0, 0},
    {NULL, 0, 0},
};
static const char duration_list[] = "valid units: ns, us, ms, s, min";

/* Room for the one message that quotes the user's text (an unknown unit). It
 * is per thread and valid until this thread's next et_parse_* call. */
static _Thread_local char why_buf[320];

/* A scanned decimal number: [begin, end) is its text; mant/exp10 its exact
 * value mant * 10^exp10 unless it has more than 20 significant digits. */
typedef struct decimal {
    const char *begin, *end;
    unsigned __int128 mant;
    long exp10;
    int sig;             /* significant digits kept in mant (at most 20) */
    int too_many;        /* a nonzero digit beyond the 20th */
} decimal;

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/*
 * Scan a decimal number at s (after leading blanks). Fills *d and returns 0,
 * or returns -1 with *why set when there is no number there or it is
 * negative. Never reads past the terminating NUL.
 */
static int scan_decimal(const char *s, decimal *d, const char **why)
{
    memset(d, 0, sizeof *d);
    const char *p = s;
    if (*p == '-') {
        *why = "must not be negative (remove the '-')";
        return -1;
    }
    d->begin = p;
    int digits = 0;
    long frac_digits = 0;
    for (int in_frac = 0;; p++) {
        if (*p == '.' && !in_frac) {
            in_frac = 1;
            continue;
        }
        if (!isdigit((unsigned char)*p))
            break;
        digits++;
        int dv = *p - '0';
        if (d->sig == 0 && dv == 0) {          /* leading zeros are not significant */
            if (in_frac)
                frac_digits++;
            continue;
        }
        if (d->sig < 20) {
            d->mant = d->mant * 10 + (unsigned)dv;
            d->sig++;
            if (in_frac)
                frac_digits++;
        } else {
            if (dv != 0)
                d->too_many = 1;
            if (!in_frac)
                d->exp10++;                    /* dropped integer digit: scale up */
        }
    }
    if (digits == 0) {
        *why = "not a number (write a number followed by a unit, e.g. 10Gbps, 16GiB, 2ms)";
        return -1;
    }
    long e = 0;
    if ((*p == 'e' || *p == 'E') &&
        (isdigit((unsigned char)p[1]) ||
         ((p[1] == '+' || p[1] == '-') && isdigit((unsigned char)p[2])))) {
        const char *q = p + 1;
        int neg = 0;
        if (*q == '+' || *q == '-')
            neg = *q++ == '-';
        while (isdigit((unsigned char)*q)) {
            if (e < 100000)
                e = e * 10 + (*q - '0');
            q++;
        }
        e = neg ? -e : e;
        p = q;
    }
    d->exp10 += e - frac_digits;
    d->end = p;
    return 0;
}

/*
 * Compare a user's unit with a valid one, folding case except where case
 * carries meaning: with keep_b, 'b' (bit) and 'B' (byte) stay distinct.
 * Returns the optimal-string-alignment distance (edits, swaps of neighbours
 * count one), capped to avoid work on long garbage.
 */
static int fold(unsigned char ch, int keep_b)
{
    if (keep_b && (ch == 'b' || ch == 'B'))
        return ch;
    return tolower(ch);
}

static int osa_distance(const char *a, const char *b, int keep_b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63)
        return 99;
    int d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int ai = fold((unsigned char)a[i - 1], keep_b);
            int bj = fold((unsigned char)b[j - 1], keep_b);
            int cost = ai != bj;
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && ai == fold((unsigned char)b[j - 2], keep_b) &&
                fold((unsigned char)a[i - 2], keep_b) == bj && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* The nearest candidate to s under the given folding, or NULL if none is
 * close (distance at most 1 + len/4, and less than the candidate's length). */
static const char *closest(const char *s, const char *const *names, int n, int keep_b)
{
    const char *best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; n < 0 ? names[i] != NULL : i < n; i++) {
        int len = (int)strlen(names[i]);
        int d = osa_distance(s, names[i], keep_b);
        if (d <= 1 + len / 4 && d < len && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

/*
 * The nearest of names (n entries, or NULL-terminated when n < 0) to s,
 * ignoring case, for "did you mean" hints; NULL if nothing is close. The
 * result points into names.
 */
const char *et_closest_name(const char *s, const char *const *names, int n)
{
    if (s == NULL || names == NULL)
        return NULL;
    return closest(s, names, n, 0);
}

/*
 * Print a user's text into dst for a message: at most 24 characters, control
 * characters shown as '?', "..." when cut. dst holds at least 32 bytes.
 */
static void show(char *dst, const char *s)
{
    size_t k = 0;
    for (; s[k] != '\0' && k < 24; k++)
        dst[k] = (unsigned char)s[k] < 0x20 || s[k] == 0x7f ? '?' : s[k];
    if (s[k] != '\0') {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = '\0';
}

/*
 * Split s into a number and a unit and look the unit up in table. On success
 * returns 0 with *d the number and *u the unit (NULL when there is none). On
 * failure returns -1 with *why set (an unknown unit names the nearest valid
 * one; list is the table's "valid units" text).
 */
static int split(const char *s, const unit_def *table, const char *list, int keep_b,
                 decimal *d, const unit_def **u, const char **why)
{
    *u = NULL;
    if (s == NULL) {
        *why = "no value";
        return -1;
    }
    while (is_blank(*s))
        s++;
    if (*s == '\0') {
        *why = "empty value";
        return -1;
    }
    if (scan_decimal(s, d, why) != 0)
        return -1;
    const char *p = d->end;
    while (is_blank(*p))
        p++;
    size_t len = strlen(p);
    while (len > 0 && is_blank(p[len - 1]))
        len--;
    if (len == 0)
        return 0;
    char unit[64];
    if (len >= sizeof unit)
        len = sizeof unit - 1;
    memcpy(unit, p, len);
    unit[len] = '\0';
    for (int i = 0; table[i].name != NULL; i++) {
        if (strcmp(unit, table[i].name) == 0) {
            *u = &table[i];
            return 0;
        }
    }
    const char *names[40];
    int n = 0;
    for (int i = 0; table[i].name != NULL && n < 40; i++)
        names[n++] = table[i].name;
    const char *near = closest(unit, names, n, keep_b);
    char shown[32];
    show(shown, unit);
    if (near != NULL)
        snprintf(why_buf, sizeof why_buf, "unknown unit '%s' (did you mean '%s'? %s)", shown,
                 near, list);
    else
        snprintf(why_buf, sizeof why_buf, "unknown unit '%s' (%s)", shown, list);
    *why = why_buf;
    return -1;
}

/*
 * Convert the number text of d to a double, exactly rounded (strtod on a
 * copy of just the number). Returns 0, or -1 with *why set on overflow or
 * underflow.
 */
static int decimal_to_double(const decimal *d, double *out, const char **why)
{
    char buf[128];
    size_t len = (size_t)(d->end - d->begin);
    if (len >= sizeof buf) {
        *why = "number too long";
        return -1;
    }
    memcpy(buf, d->begin, len);
    buf[len] = '\0';
    errno = 0;
    double v = strtod(buf, NULL);
    if (errno == ERANGE || !isfinite(v)) {
        *why = v == 0.0 || fabs(v) < 1.0 ? "too small (out of range)" : "too large (out of range)";
        return -1;
    }
    *out = v;
    return 0;
}

/* Scale a finite value by a unit factor; -1 with *why if the result is not a
 * normal finite number (zero is fine). */
static int scale(double v, double factor, double *out, const char **why)
{
    double r = v * factor;
    if (!isfinite(r)) {
        *why = "too large (out of range)";
        return -1;
    }
    if (r != 0.0 && !isnormal(r)) {
        *why = "too small (out of range)";
        return -1;
    }
    *out = r;
    return 0;
}

/* A number with a unit from table, required (missing: the hint), as a double
 * in the table's base unit. */
static int parse_scaled(const char *s, const unit_def *table, const char *list, int keep_b,
                        const char *missing, double *out, const char **why)
{
    decimal d;
    const unit_def *u;
    double v;
    if (split(s, table, list, keep_b, &d, &u, why) != 0)
        return -1;
    if (u == NULL) {
        *why = missing;
        return -1;
    }
    if (decimal_to_double(&d, &v, why) != 0)
        return -1;
    return scale(v, u->factor, out, why);
}

/*
 * Parse a bandwidth ("10Gbps", "200 Mbps", "1.5Gbit/s", "125MB/s") into
 * bytes per second. Returns 0, or -1 with *why set; *out is untouched on
 * failure.
 */
int et_parse_bandwidth(const char *s, double *out, const char **why)
{
    return parse_scaled(s, bandwidth_units, bandwidth_list, 1,
                        "missing unit (a bare number is ambiguous: write e.g. 1Gbps or 125MB/s)",
                        out, why);
}

/*
 * Parse a duration ("2ms", "150us", "1s", "0.5 min") into seconds. Returns
 * 0, or -1 with *why set; *out is untouched on failure.
 */
int et_parse_duration(const char *s, double *out, const char **why)
{
    return parse_scaled(s, duration_units, duration_list, 0,
                        "missing unit (write e.g. 2ms, 150us or 1s)", out, why);
}

/*
 * Parse a size ("16GiB", "512 MiB", "8GB", "1024") into bytes, exactly:
 * mant * 10^exp10 * unit in 128-bit integers, rounded half up to a whole
 * byte. A bare number must be a whole number of bytes. Returns 0, or -1 with
 * *why set; *out is untouched on failure.
 */
int et_parse_size(const char *s, uint64_t *out, const char **why)
{
    decimal d;
    const unit_def *u;
    if (split(s, size_units, size_list, 0, &d, &u, why) != 0)
        return -1;
    if (d.too_many) {
        *why = "too many significant digits (at most 20)";
        return -1;
    }
    /* mant < 10^20 and the unit <= 2^40: the product fits in 128 bits */
    unsigned __int128 v = d.mant * (u != NULL ? u->ifactor : 1u);
    long e = d.exp10;
    if (u == NULL && e < 0 && d.mant != 0) {
        /* "1.0" is fine, "1.5" is not: check the exact value is whole */
        unsigned __int128 p10 = 1;
        for (long i = 0; i < -e && i < 38; i++)
            p10 *= 10;
        if (-e >= 38 || v % p10 != 0) {
            *why = "a size without a unit is a whole number of bytes (or add a unit: KiB, MiB, GiB)";
            return -1;
        }
    }
    const unsigned __int128 limit = (unsigned __int128)UINT64_MAX;
    if (v != 0) {
        for (; e > 0; e--) {
            if (v > limit) {
                break;
            }
            v *= 10;
        }
        if (e < 0) {
            if (e < -38) {
                v = 0;
            } else {
                unsigned __int128 p10 = 1;
                for (long i = 0; i < -e; i++)
                    p10 *= 10;
                v = (v + p10 / 2) / p10;
            }
        }
        if (v > limit || e > 0) {
            *why = "too large (at most 2^64-1 bytes)";
            return -1;
        }
    }
    *out = (uint64_t)v;
    return 0;
}
