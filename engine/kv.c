/* kv.c — KV pool allocation and views. */
#include "engine/kv.h"

#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"

ibex_kv_pool *ibex_kv_pool_new(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_err *err) {
    return ibex_kv_pool_new_on(c, n_blocks, block_size, NULL, err);
}

ibex_kv_pool *ibex_kv_pool_new_on(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_backend *be,
                                  ibex_err *err) {
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
    if (be && be->alloc) {
        p->be = be;
        p->base = be->alloc(be, (size_t)p->bytes, IBEX_BUF_KV, err);
        if (!p->base) ibex_err_prefix(err, "KV pool of %lld bytes on %s", (long long)p->bytes, be->name);
    } else {
        p->base = ibex_alloc(IBEX_MEM_KV, (size_t)p->bytes, 1);
        if (!p->base) ibex_err_set(err, IBEX_ERR_NOMEM, "cannot allocate a KV pool of %lld bytes", (long long)p->bytes);
    }
    if (!p->base) {
        free(p);
        return NULL;
    }
    return p;
}

void ibex_kv_pool_free(ibex_kv_pool *p) {
    if (!p) return;
    if (p->be)
        p->be->dealloc(p->be, p->base);
    else
        ibex_free(p->base);
    free(p);
}

void ibex_kv_pool_copy_block(ibex_kv_pool *p, int32_t dst, int32_t src) {
    int64_t n = (int64_t)p->block_size * p->n_kv_heads * p->head_dim; /* floats per block */
    for (int32_t l = 0; l < p->n_layers; l++) {
        float *k = p->base + (int64_t)l * p->layer_stride;
        float *v = k + p->layer_stride / 2;
        if (p->be) {
            p->be->copy(p->be, k + (int64_t)dst * n, k + (int64_t)src * n, (size_t)n * sizeof(float));
            p->be->copy(p->be, v + (int64_t)dst * n, v + (int64_t)src * n, (size_t)n * sizeof(float));
        } else {
            memcpy(k + (int64_t)dst * n, k + (int64_t)src * n, (size_t)n * sizeof(float));
            memcpy(v + (int64_t)dst * n, v + (int64_t)src * n, (size_t)n * sizeof(float));
        }
    }
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
