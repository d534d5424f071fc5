/* kv.c — KV pool allocation and views. */
#include "engine/kv.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/alloc.h"

ibex_kv_pool *ibex_kv_pool_new(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_err *err) {
    return ibex_kv_pool_new_on(c, n_blocks, block_size, NULL, err);
}

ibex_kv_pool *ibex_kv_pool_new_on(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_backend *be,
                                  ibex_err *err) {
    return ibex_kv_pool_new_typed(c, n_blocks, block_size, IBEX_TYPE_F32, be, err);
}

/* The backend's pool when it has memory of its own, else the host's. */
static bool on_backend(const ibex_backend *be) { return be && be->alloc; }

ibex_kv_pool *ibex_kv_pool_new_typed(const ibex_model_config *c, int32_t n_blocks, int32_t block_size, ibex_type t,
                                     ibex_backend *be, ibex_err *err) {
    if (t != IBEX_TYPE_F32 && t != IBEX_TYPE_F16 && t != IBEX_TYPE_BF16) {
        ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "KV cache element type %s is none of F32, F16, BF16", ibex_type_name(t));
        return NULL;
    }
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
    p->type = t;
    p->elem_bytes = t == IBEX_TYPE_F32 ? 4 : 2;
    int64_t per_kv = (int64_t)n_blocks * block_size * c->n_kv_heads * c->head_dim; /* elements of K (or V) */
    p->layer_stride = 2 * per_kv * p->elem_bytes;
    p->bytes = p->layer_stride * c->n_layers;
    if (on_backend(be)) {
        p->be = be;
        p->base = be->alloc(be, (size_t)p->bytes, IBEX_BUF_KV, err);
        if (!p->base) ibex_err_prefix(err, "KV pool of %lld bytes on %s", (long long)p->bytes, be->name);
    } else {
        p->base = ibex_alloc(IBEX_MEM_KV, (size_t)p->bytes, 0); /* not zeroed: see kv.h */
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

bool ibex_kv_pool_fits(const ibex_kv_pool *p, const ibex_model_config *c, int32_t n_blocks, int32_t block_size,
                       ibex_type t, const ibex_backend *be) {
    return p && p->n_layers == c->n_layers && p->n_kv_heads == c->n_kv_heads && p->head_dim == c->head_dim &&
           p->n_blocks == n_blocks && p->block_size == block_size && p->type == t &&
           p->be == (on_backend(be) ? be : NULL);
}

void ibex_kv_pool_copy_block(ibex_kv_pool *p, int32_t dst, int32_t src) {
    const int64_t n = (int64_t)p->block_size * p->n_kv_heads * p->head_dim * p->elem_bytes; /* bytes per block */
    for (int32_t l = 0; l < p->n_layers; l++) {
        char *k = (char *)p->base + (int64_t)l * p->layer_stride;
        char *v = k + p->layer_stride / 2;
        if (p->be) {
            p->be->copy(p->be, k + (int64_t)dst * n, k + (int64_t)src * n, (size_t)n);
            p->be->copy(p->be, v + (int64_t)dst * n, v + (int64_t)src * n, (size_t)n);
        } else {
            memcpy(k + (int64_t)dst * n, k + (int64_t)src * n, (size_t)n);
            memcpy(v + (int64_t)dst * n, v + (int64_t)src * n, (size_t)n);
        }
    }
}

ibex_kv_view ibex_kv_pool_view(const ibex_kv_pool *p, int layer, const int32_t *block_table) {
    char *k = (char *)p->base + (int64_t)layer * p->layer_stride;
    return (ibex_kv_view){.k = k,
                          .v = k + p->layer_stride / 2,
                          .block_table = block_table,
                          .block_size = p->block_size,
                          .n_kv_heads = p->n_kv_heads,
                          .head_dim = p->head_dim,
                          .type = p->type};
}

bool ibex_kv_type_from_name(const char *s, ibex_type *out) {
    static const struct {
        const char *name;
        ibex_type t;
    } k[] = {{"f32", IBEX_TYPE_F32}, {"f16", IBEX_TYPE_F16}, {"bf16", IBEX_TYPE_BF16}};
    for (size_t i = 0; s && i < sizeof k / sizeof *k; i++)
        if (!strcasecmp(s, k[i].name)) return *out = k[i].t, true;
    return false;
}

const char *ibex_kv_type_name(ibex_type t) {
    return t == IBEX_TYPE_F32 ? "f32" : t == IBEX_TYPE_F16 ? "f16" : t == IBEX_TYPE_BF16 ? "bf16" : "?";
}

ibex_status ibex_kv_type_check(const ibex_backend *be, ibex_type t, ibex_err *err) {
    if (be && (be->kv_type_ok ? be->kv_type_ok(be, t) : t == IBEX_TYPE_F32)) return IBEX_OK;
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "backend %s: KV cache type %s not supported%s", be ? be->name : "(none)",
                        ibex_kv_type_name(t), t == IBEX_TYPE_F32 ? "" : " (kv.dtype f32 is)");
}
