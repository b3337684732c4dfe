/*
 * checkpoint — plan-independent HDF5 checkpoints (DESIGN.md "Checkpoint").
 *
 * File layout (readable by h5dump and h5py with no edgetrain code):
 *   /                       attributes n_layer n_head n_embd vocab_size block_size
 *                           (int32), format = "edgetrain-checkpoint" and
 *                           format_version = 1 (a newer version is refused), and the
 *                           training position when saved with a ckpt_meta:
 *                           step, data_position (int64), seed (uint64),
 *                           rng_state (uint64[CKPT_RNG_WORDS]), wall_s,
 *                           emulated_s (float64)
 *   /transformer/wte/weight [V,C] float32, ... every tensor of the model, full
 *                           and unsharded, under its Hugging Face name with '/'
 *   /optimizer/m/<name>     AdamW first moments, same names and shapes
 *   /optimizer/v/<name>     AdamW second moments
 *
 * Each caller holds a shard (a pipeline stage and/or a tensor-parallel slice);
 * it writes and reads only its own part, through HDF5 hyperslabs built from the
 * shard's tensor slabs. So a checkpoint saved under one plan loads under any
 * other, including a single process with the whole model.
 *
 * MPI: when `comm` has more than one rank the file is opened with parallel
 * HDF5 (MPI-IO). Every rank of comm must then call ckpt_save / ckpt_load
 * together (they are collective); every rank creates every dataset, then each
 * writes or reads its slices with collective transfers (a rank with nothing
 * to move takes part with an empty selection). The path must be on a file
 * system all ranks see. When comm is MPI_COMM_SELF, MPI_COMM_NULL or of size
 * 1, or MPI is not initialised, the plain POSIX (sec2) driver is used and no
 * MPI call is made: a single process needs no mpirun.
 *
 * Atomicity: ckpt_save writes "<path>.tmp", closes it, syncs it, and only then
 * renames it over <path> (rank 0, after every rank has finished). A crash or
 * an error at any point leaves the previous <path> untouched.
 *
 * Errors: bad input (missing or foreign file, missing tensor, wrong shape,
 * model mismatch, no optimizer state when asked) fills the et_err with one
 * line "PATH: what (hint)" and code ET_EINPUT; I/O failures while saving give
 * ET_ERUNTIME; inconsistent arguments (our bugs) give ET_ERUNTIME too. With MPI
 * every rank returns the same status (the message is most precise on the rank
 * that saw the problem). HDF5's own error printing is silenced while these
 * functions run.
 */
#ifndef ET_CHECKPOINT_H
#define ET_CHECKPOINT_H

#include <stdint.h>

#include <mpi.h>

#include "../common/et_err.h"
#include "../model/gpt2.h"
#include "../model/optim.h"

#define CKPT_RNG_WORDS 4

/* Where a run stands; everything a resume needs besides weights and moments.
 * Fields absent from a file (a converted Hugging Face model, an older
 * checkpoint) load as 0. To add a field: add it here and one row to the
 * attribute table in checkpoint.c; old files keep loading. */
typedef struct ckpt_meta {
    int64_t step;                      /* optimizer steps done (resume runs step `step`) */
    int64_t data_position;             /* index k of the next training sequence */
    uint64_t seed;                     /* training.seed of the run */
    uint64_t rng_state[CKPT_RNG_WORDS];/* data/sampling generator state; unused words 0 */
    double wall_s;                     /* wall-clock seconds of the run so far */
    double emulated_s;                 /* emulated (virtual-clock) seconds so far */
} ckpt_meta;

/* Save the model (and the AdamW moments when st is given) to `path`.
 *   comm        the ranks that write this file together (see above).
 *   sh          this rank's shard; every rank's shard must have the same config.
 *   st          this rank's moments in sh's layout, or NULL for weights only;
 *               NULL on every rank or on none.
 *   meta        the run position written as root attributes (rank 0's copy is
 *               used), or NULL to write none (a weights-only export).
 *   write_mask  per tensor of sh (sh->n_tensors entries, in sh->tensors order):
 *               nonzero if this rank writes it. NULL writes every tensor held.
 *               Ranks holding identical copies (data-parallel replicas, TP
 *               ranks of a replicated tensor, the tied wte on the last stage)
 *               may all write, but need not: see ckpt_write_mask.
 * Every element of every tensor must be written by some rank: a tensor the
 * shards and masks leave out (counted: fewer elements written over all ranks
 * than it has) is refused with ET_ERUNTIME before the file is created.
 * Returns 0 or -1 with e set; nothing on disk changes on error. The shards
 * and states are only read. */
int ckpt_save(const char *path, MPI_Comm comm, const gpt2_shard *sh, const optim_state *st,
              const ckpt_meta *meta, const unsigned char *write_mask, et_err *e);

/* The same for n shards held by this process (e.g. the TP ranks of one
 * process run in threads), written together into one file: sh[i], st[i] (st
 * itself or st[i] may be NULL as above), masks[i] (masks or masks[i] NULL:
 * all). With MPI each rank passes its own shards (n may differ by rank). */
int ckpt_save_shards(const char *path, MPI_Comm comm, int n, const gpt2_shard *const *sh,
                     const optim_state *const *st, const ckpt_meta *meta,
                     const unsigned char *const *masks, et_err *e);

/* Load this rank's part of the checkpoint at `path` into sh (its params), and
 * into st when st is not NULL (the file must then hold optimizer state), and
 * the run position into *meta when meta is not NULL (absent fields are 0).
 * Validates before touching sh: the file exists and is HDF5, its model
 * attributes equal sh->cfg, every tensor of the model (and every moment when
 * st is given) is present with its full shape. Collective over comm as above.
 * Weights only with the step reset (training.init, fine-tuning) is
 * ckpt_load(path, comm, sh, NULL, NULL, e). Returns 0 or -1 with e set; on
 * error sh and st may hold partly loaded data only if reading itself failed. */
int ckpt_load(const char *path, MPI_Comm comm, gpt2_shard *sh, optim_state *st,
              ckpt_meta *meta, et_err *e);

/* Read the model hyper-parameters of a checkpoint (no MPI; any process may
 * call it, e.g. before building shards or to check a config against
 * training.init). Returns 0 or -1 with e set (ET_EINPUT). */
int ckpt_read_config(const char *path, gpt2_config *c, et_err *e);

/* Fill mask[sh->n_tensors] with the default "each element written once"
 * policy: only data-parallel replica 0 writes (dp_rank 0); a replicated
 * tensor (sharded == 0) only by TP rank 0; the tied wte only by the shard that
 * has the embedding when this shard has the head without it. Pass dp_rank 0
 * when there is no data parallelism. */
void ckpt_write_mask(const gpt2_shard *sh, int dp_rank, unsigned char *mask);

#endif
