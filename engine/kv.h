/* kv.h — the KV-cache pool: one allocation per cache, carved into fixed-size blocks
 * that every KV policy (contiguous, paged) addresses through block tables.
 *
 * Layout, per layer: K then V, each [n_blocks][block_size][n_kv_heads][head_dim] of
 * F32. A contiguous cache is a run of consecutive blocks (see kvcache.h). */
#ifndef IBEX_KV_H
#define IBEX_KV_H

#include <stdint.h>

#include "engine/model.h"
#include "kernels/backend.h"

typedef struct ibex_kv_pool {
    int32_t n_layers, n_kv_heads, head_dim;
    int32_t block_size; /* tokens per block */
    int32_t n_blocks;
    int64_t layer_stride; /* floats between one layer's K and the next's */
    int64_t bytes;        /* the whole pool: n_blocks · block_size · kv bytes per token */
    float *base;          /* host memory, or the backend's when be is set */
    ibex_backend *be;     /* NULL: host pool */
} ibex_kv_pool;

/* Allocates a pool (tracked as IBEX_MEM_KV). NULL with err set on failure or
 * impossible sizes. */
ibex_kv_pool *ibex_kv_pool_new(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_err *err);
/* The same pool in backend be's memory (one allocation, IBEX_BUF_KV) when be has its
 * own memory (be->alloc), else on the host as ibex_kv_pool_new. */
ibex_kv_pool *ibex_kv_pool_new_on(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_backend *be,
                                  ibex_err *err);
void ibex_kv_pool_free(ibex_kv_pool *p);

/* Copies block src to block dst in every layer's K and V (host or backend memory). */
void ibex_kv_pool_copy_block(ibex_kv_pool *p, int32_t dst, int32_t src);

/* A view of layer l of the sequence whose blocks are block_table (not contiguous). */
ibex_kv_view ibex_kv_pool_view(const ibex_kv_pool *p, int layer, const int32_t *block_table);

#endif
