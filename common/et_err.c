#include "et_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int et_errf(et_err *e, int code, const char *fmt, ...)
{
    if (e == NULL || e->code != ET_OK)
        return -1;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void et_err_clear(et_err *e)
{
    e->code = ET_OK;
    e->msg[0] = '\0';
}

int et_err_report(const et_err *e)
{
    fprintf(stderr, "edgetrain: %s\n", e->msg[0] ? e->msg : "unknown error");
    return e->code ? e->code : ET_ERUNTIME;
}

static void oom(size_t n)
{
    fprintf(stderr, "edgetrain: out of memory allocating %zu bytes\n", n);
    abort();
}

void *et_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *et_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *et_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *et_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = et_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *et_amalloc(size_t n)
{
    size_t rounded = (n + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) oom(n);
    return p;
}

void et_afree(void *p)
{
    free(p);
}
