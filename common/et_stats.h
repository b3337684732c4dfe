/*
 * et_stats — small order statistics shared by the report, the test bed's
 * calibration and the tools.
 */
#ifndef ET_STATS_H
#define ET_STATS_H

#include <stddef.h>

/* qsort comparison of doubles, ascending. */
int et_cmp_double(const void *a, const void *b);

/* The median of v[0..n-1], the upper one for even n (v[n/2] once sorted);
 * sorts v in place. NAN when n == 0. */
double et_median(double *v, size_t n);

#endif
