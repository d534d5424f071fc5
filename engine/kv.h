/* kv.h — the KV-cache pool: one allocation per cache, carved into fixed-size blocks
 * that every KV policy (contiguous, paged) addresses through block tables.
 *
 * Layout, per layer: K then V, each [n_blocks][block_size][n_kv_heads][head_dim] of the
 * pool's element type (F32, F16 or BF16). A contiguous cache is a run of consecutive
 * blocks (see kvcache.h).
 *
 * A host pool is not zeroed: nothing reads a slot before kv_write stores it (attention
 * reads only positions below the sequence's length; block copies may carry unwritten
 * slots along, which are then never read either). */
#ifndef IBEX_KV_H
#define IBEX_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/model.h"
#include "kernels/backend.h"

typedef struct ibex_kv_pool {
    int32_t n_layers, n_kv_heads, head_dim;
    int32_t block_size; /* tokens per block */
    int32_t n_blocks;
    ibex_type type;       /* element type: IBEX_TYPE_F32, F16 or BF16 */
    int32_t elem_bytes;   /* 4 or 2 */
    int64_t layer_stride; /* bytes between one layer's K and the next's */
    int64_t bytes;        /* the whole pool: n_blocks · block_size · kv bytes per token */
    void *base;           /* host memory, or the backend's when be is set */
    ibex_backend *be;     /* NULL: host pool */
} ibex_kv_pool;

/* Allocates an F32 pool (tracked as IBEX_MEM_KV). NULL with err set on failure or
 * impossible sizes. */
ibex_kv_pool *ibex_kv_pool_new(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_err *err);
/* The same pool in backend be's memory (one allocation, IBEX_BUF_KV) when be has its
 * own memory (be->alloc), else on the host as ibex_kv_pool_new. */
ibex_kv_pool *ibex_kv_pool_new_on(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_backend *be,
                                  ibex_err *err);
/* The same with elements of type t (F32, F16 or BF16; anything else is refused with
 * err set). Whether be computes with t is the caller's check (kv_type_ok). */
ibex_kv_pool *ibex_kv_pool_new_typed(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_type t,
                                     ibex_backend *be, ibex_err *err);
/* Whether p has exactly this shape, type and home, so it can serve as such a pool
 * again (see ibex_kv_config.spare). */
bool ibex_kv_pool_fits(const ibex_kv_pool *p, const ibex_model_config *c, int32_t n_blocks, int32_t block_size,
                       ibex_type t, const ibex_backend *be);
void ibex_kv_pool_free(ibex_kv_pool *p);

/* KV element types by their user-facing names: "f32", "f16", "bf16" (case-insensitive).
 * ibex_kv_type_from_name returns false for anything else; ibex_kv_type_name gives the
 * lower-case name, or "?" for a type that is no KV type. */
bool ibex_kv_type_from_name(const char *s, ibex_type *out);
const char *ibex_kv_type_name(ibex_type t);
/* IBEX_OK when backend be computes with a KV cache of type t (its kv_type_ok; without
 * one, F32 only), else IBEX_ERR_UNSUPPORTED with "backend NAME: KV cache type T not
 * supported" in err. */
ibex_status ibex_kv_type_check(const ibex_backend *be, ibex_type t, ibex_err *err);

/* Copies block src to block dst in every layer's K and V (host or backend memory). */
void ibex_kv_pool_copy_block(ibex_kv_pool *p, int32_t dst, int32_t src);

/* A view of layer l of the sequence whose blocks are block_table (not contiguous). */
ibex_kv_view ibex_kv_pool_view(const ibex_kv_pool *p, int layer, const int32_t *block_table);

#endif
