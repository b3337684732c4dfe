/*
 * et_err — the one error idiom of edgetrain.
 *
 * Library functions never print and never exit on a user's mistake: they fill
 * an et_err with the whole message ("file:line:col: what is wrong (hint)") and
 * a code, and return -1 (or NULL). The CLI prints "edgetrain: <msg>" on stderr
 * and exits with the code: 2 for bad input or usage, 1 for runtime failures.
 */
#ifndef ET_ERR_H
#define ET_ERR_H

#include <stddef.h>

enum { ET_OK = 0, ET_ERUNTIME = 1, ET_EINPUT = 2 };

typedef struct et_err {
    int code;          /* ET_OK, ET_ERUNTIME or ET_EINPUT */
    char msg[1024];    /* one line, no trailing newline, no "edgetrain: " prefix */
} et_err;

/* Set *e (if e is not NULL) to code and the printf-formatted message; returns -1
 * so callers can write `return et_errf(e, ET_EINPUT, "%s:%d:%d: ...", ...)`.
 * Only the first error is kept: a later call on an already-set e is ignored. */
int et_errf(et_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clear e to ET_OK and an empty message. */
void et_err_clear(et_err *e);

/* Print "edgetrain: <msg>" to stderr and return e->code (1 if e->code is 0). */
int et_err_report(const et_err *e);

/* Allocation helpers that abort on out-of-memory (our bug or the machine's,
 * never the user's): xmalloc/xcalloc/xrealloc/xstrdup. */
void *et_xmalloc(size_t n);
void *et_xcalloc(size_t n, size_t size);
void *et_xrealloc(void *p, size_t n);
char *et_xstrdup(const char *s);

/* 64-byte aligned allocation for float buffers; free with et_afree. Aborts on OOM. */
void *et_amalloc(size_t n);
void et_afree(void *p);

#endif
