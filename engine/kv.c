/* kv.c — KV pool allocation and views. */
#include "engine/kv.h"

#include <stdlib.h>

#include "engine/alloc.h"

ibex_kv_pool *ibex_kv_pool_new(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_err *err) {
    if (n_blocks <= 0 || block_size <= 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV pool needs at least one block of at least one token (got %d x %d)",
                     n_blocks, block_size);
        return NULL;
    }
    ibex_kv_pool *p = calloc(1, sizeof *p);
    if (!p) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        return NULL;
    }
    p->n_layers = c->n_layers;
    p->n_kv_heads = c->n_kv_heads;
    p->head_dim = c->head_dim;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    int64_t per_kv = (int64_t)n_blocks * block_size * c->n_kv_heads * c->head_dim; /* floats of K (or V) */
    p->layer_stride = 2 * per_kv;
    p->bytes = p->layer_stride * c->n_layers * (int64_t)sizeof(float);
    p->base = ibex_alloc(IBEX_MEM_KV, (size_t)p->bytes, 1);
    if (!p->base) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "cannot allocate a KV pool of %lld bytes", (long long)p->bytes);
        free(p);
        return NULL;
    }
    return p;
}

void ibex_kv_pool_free(ibex_kv_pool *p) {
    if (!p) return;
    ibex_free(p->base);
    free(p);
}

ibex_kv_view ibex_kv_pool_view(const ibex_kv_pool *p, int layer, const int32_t *block_table) {
    float *k = p->base + (int64_t)layer * p->layer_stride;
    return (ibex_kv_view){.k = k,
                          .v = k + p->layer_stride / 2,
                          .block_table = block_table,
                          .block_size = p->block_size,
                          .n_kv_heads = p->n_kv_heads,
                          .head_dim = p->head_dim};
}
