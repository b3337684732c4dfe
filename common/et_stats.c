#include "et_stats.h"

#include <math.h>
#include <stdlib.h>

int et_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double et_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, et_cmp_double);
    return v[n / 2];
}
