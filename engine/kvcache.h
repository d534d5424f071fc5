/* kvcache.h — the KV-cache manager: three policies over one pool of fixed-size blocks
 * sized from one byte budget, so policies are compared on equal memory, with
 * accounting exact to the byte.
 *
 *   none        no cache kept between steps: a sequence's blocks live only for the step
 *               that recomputes its whole history (the scheduler frees it after the step).
 *   contiguous  on admission a sequence reserves a run of consecutive blocks covering
 *               its reservation (max_seq_len tokens, or prompt + max new tokens), as
 *               classic per-request preallocation does. First fit over the pool, so
 *               external fragmentation is real.
 *   paged       blocks are taken as tokens are written (the engine asks per prefill
 *               chunk and per decode token; reserve_prompt asks for the whole prompt at
 *               admission), one at a time from a free list;
 *               blocks carry reference counts; fork shares them; a write into a block
 *               shared by others copies it first (copy-on-write).
 *
 * Sequences are small integer handles. The manager never runs the model: it hands
 * out block tables (ibex_kv_pool_view reads them) and copies blocks for CoW and for
 * contiguous forks. With no_compute set, no pool memory exists and copies are only
 * counted: the accounting is identical. */
#ifndef IBEX_KVCACHE_H
#define IBEX_KVCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "kernels/status.h"

typedef enum ibex_kv_policy { IBEX_KV_NONE, IBEX_KV_CONTIGUOUS, IBEX_KV_PAGED } ibex_kv_policy;

const char *ibex_kv_policy_name(ibex_kv_policy p);
bool ibex_kv_policy_from_name(const char *s, ibex_kv_policy *out);

typedef struct ibex_kv_config {
    ibex_kv_policy policy;
    int64_t budget_bytes; /* the pool: floor(budget / block bytes) blocks */
    int32_t block_size;   /* tokens per block, 1..256 (default 16); contiguous reserves in blocks too */
    int32_t elem_bytes;   /* bytes per K or V element: 4 (F32) or 2 (F16, BF16) */
    ibex_type dtype;      /* element type of the pool: F32 (the zero value), F16 or BF16. With
                             dtype F32 and elem_bytes 2 the type is F16 (what elem_bytes 2
                             always meant); use ibex_kv_config_set_type to set both */
    bool no_compute;      /* accounting only: allocate no pool memory */
    bool reserve_prompt;  /* paged, read by the engine: take every prompt's blocks at admission
                             (default false: blocks are taken per prefill chunk as it is computed) */
    ibex_backend *be;     /* where the pool lives: NULL or a host backend = host memory */
    /* (optional) a slot the caller owns that carries one pool from an ibex_kv_free to the
     * next ibex_kv_new (repetitions of one benchmark point): ibex_kv_new takes the pool
     * from *spare when it fits exactly (shape, type, backend) instead of allocating,
     * and ibex_kv_free parks its pool there when the slot is empty. The caller frees
     * what is left with ibex_kv_pool_free. Sound because nothing reads a pool slot
     * before writing it (kv.h). */
    ibex_kv_pool **spare;
} ibex_kv_config;

/* The element type cfg describes (see dtype). */
ibex_type ibex_kv_config_type(const ibex_kv_config *cfg);
/* Sets dtype and elem_bytes for t (F32, F16, BF16). Returns false, changing nothing, for
 * any other type. */
bool ibex_kv_config_set_type(ibex_kv_config *cfg, ibex_type t);

/* Exact counters (bytes are tokens · kv bytes per token, or blocks · block bytes). */
typedef struct ibex_kv_stats {
    int64_t block_bytes;      /* one block: block_size · 2 · layers · kv_heads · head_dim · elem_bytes */
    int32_t n_blocks;         /* pool size in blocks */
    int32_t blocks_used;      /* blocks not on the free list */
    int64_t bytes_pool;       /* n_blocks · block_bytes */
    int64_t bytes_reserved;   /* blocks_used · block_bytes */
    int64_t bytes_used;       /* bytes holding real tokens, shared blocks counted once */
    int64_t bytes_fragmented; /* reserved − used (internal fragmentation + unfilled reservations) */
    int64_t peak_reserved;
    int64_t peak_used;
    int32_t seqs;             /* sequences holding blocks */
    int32_t max_seqs;         /* most sequences resident at once */
    int64_t cow_copies;       /* blocks copied by copy-on-write */
    int64_t fork_copies;      /* blocks copied by contiguous forks */
    int64_t bytes_shared_saved; /* bytes that shared blocks avoided (Σ (refcount−1) · block bytes, now) */
    int32_t largest_free_run; /* longest run of consecutive free blocks (contiguous admission limit) */
} ibex_kv_stats;

typedef struct ibex_kv ibex_kv;

/* A manager for model config c. Fails (NULL, err set) on an impossible block size,
 * a budget below one block, or allocation failure. */
ibex_kv *ibex_kv_new(const ibex_model_config *c, const ibex_kv_config *cfg, ibex_err *err);
void ibex_kv_free(ibex_kv *kv);

const ibex_kv_config *ibex_kv_config_of(const ibex_kv *kv);
/* The pool the forward pass reads (NULL with no_compute). */
ibex_kv_pool *ibex_kv_pool_of(ibex_kv *kv);

/* A new empty sequence handle (>= 0), or −1 on allocation failure. Holds no blocks. */
int32_t ibex_kv_seq_new(ibex_kv *kv);

/* Makes seq able to hold n_tokens tokens in total.
 *   contiguous: the first call reserves max(n_tokens, reserve_tokens) rounded up to
 *               whole blocks as one run; later calls fail if n_tokens exceeds it.
 *   paged/none: takes blocks from the free list as needed.
 * Returns false, changing nothing, when the pool cannot supply the blocks. */
bool ibex_kv_seq_reserve(ibex_kv *kv, int32_t seq, int32_t n_tokens, int32_t reserve_tokens);

/* Prepares positions [pos, pos + n) of seq for writing: every block they touch that is
 * shared (refcount > 1) is first copied to a private block (copy-on-write). Positions
 * must be within what was reserved. Returns false, changing nothing, if no free block
 * is left for a copy. Then records pos + n as the sequence's filled length. */
bool ibex_kv_seq_prepare_write(ibex_kv *kv, int32_t seq, int32_t pos, int32_t n);

/* A new sequence sharing src's first n_tokens tokens.
 *   paged: shares src's blocks (reference counts + 1); a partially filled last block is
 *          shared too and copied on the first write by either sequence.
 *   contiguous: reserves a run as large as src's and copies the filled blocks.
 *   none: not supported (returns −1).
 * Returns the new handle, or −1 (nothing changed) when blocks run out. */
int32_t ibex_kv_seq_fork(ibex_kv *kv, int32_t src, int32_t n_tokens);

/* Releases every block of seq (reference counts − 1, blocks at zero back on the free
 * list) and ends the handle. */
void ibex_kv_seq_free(ibex_kv *kv, int32_t seq);

/* The block table of seq (valid until the next call that changes seq) and its length. */
const int32_t *ibex_kv_seq_table(const ibex_kv *kv, int32_t seq, int32_t *n_blocks);
int32_t ibex_kv_seq_len(const ibex_kv *kv, int32_t seq);       /* filled tokens */
int32_t ibex_kv_seq_capacity(const ibex_kv *kv, int32_t seq);  /* tokens reserved */

/* Blocks a sequence of n_tokens would need beyond what seq holds now (for admission
 * decisions); seq −1 means a new sequence. */
int32_t ibex_kv_blocks_needed(const ibex_kv *kv, int32_t seq, int32_t n_tokens);
int32_t ibex_kv_free_blocks(const ibex_kv *kv);

void ibex_kv_stats_get(const ibex_kv *kv, ibex_kv_stats *out);
/* Peaks back to the current values. */
void ibex_kv_reset_peaks(ibex_kv *kv);

/* Checks every invariant of the design notes in kvcache.c (reference counts equal the
 * number of tables holding each block, free list and used blocks partition the pool,
 * byte counters match a recount). Returns false with err describing the first
 * violation. For tests and debug builds. */
bool ibex_kv_check(const ibex_kv *kv, ibex_err *err);

#endif
