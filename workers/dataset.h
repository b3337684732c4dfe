/*
 * dataset — the tokenised corpus on disk (DESIGN.md "Dataset"): an HDF5 file
 * with two 1-D integer datasets, train/tokens and val/tokens, and two root
 * attributes, tokenizer (a string: "byte" or "gpt2") and vocab_size (an
 * integer). Files written here store tokens as uint16 when vocab_size <=
 * 65536, else int32, chunked and deflate-compressed, with the tokenizer as a
 * variable-length UTF-8 string (h5py reads it as str); h5dump and h5py read
 * them with no edgetrain code. Any 1-D integer datasets load.
 *
 * No MPI here: the default (sec2) HDF5 driver works in a plain process and in
 * every rank alike. HDF5's own error stack printing is switched off during
 * each call, so a failure shows as our one et_err line only.
 */
#ifndef ET_DATASET_H
#define ET_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et_err.h"

typedef struct et_dataset {
    int32_t *train;        /* train/tokens, n_train ids */
    size_t n_train;
    int32_t *val;          /* val/tokens, n_val ids */
    size_t n_val;
    int vocab_size;        /* the file's vocab_size attribute */
    char tokenizer[64];    /* the file's tokenizer attribute */
} et_dataset;

/* Load the dataset at path fully into memory (*ds owns the arrays; free with
 * dataset_free). Validates, with one et_err line (ET_EINPUT) naming the file
 * and what is wrong: file missing or not HDF5; vocab_size or tokenizer
 * attribute missing or of the wrong kind; a split missing, not 1-D, not
 * integer, empty, or shorter than min_tokens (pass seq_len + 2 for training;
 * 0 or 1 means non-empty); a token id negative or >= the limit, which is the
 * file's vocab_size, or model_vocab when model_vocab > 0 and smaller (the
 * message names the split and index: "DATA.h5: train/tokens[1234] = 300 is >=
 * vocab_size 256 (...)"). Returns 0, or -1 with e set and *ds zeroed. */
int dataset_load(const char *path, int model_vocab, size_t min_tokens, et_dataset *ds, et_err *e);

/* Free ds's arrays and zero it; a zeroed ds is fine. */
void dataset_free(et_dataset *ds);

/* Write a dataset to path: into a temporary file beside it, renamed over path
 * only once complete, so a failure leaves any existing path untouched.
 * tokenizer is stored as the tokenizer attribute. Every id must be in
 * [0, vocab_size) and both splits non-empty (else ET_EINPUT naming the first
 * bad index). A path that cannot be created (missing or read-only directory,
 * a directory in the way) is ET_EINPUT; a write failing midway ET_ERUNTIME.
 * Returns 0 or -1 with e set. */
int dataset_write(const char *path, const char *tokenizer, int vocab_size,
                  const int32_t *train, size_t n_train, const int32_t *val, size_t n_val, et_err *e);

#endif
