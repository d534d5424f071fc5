/* backend.h — the compute backend interface: every op the forward pass needs, as a
 * struct of function pointers that each backend (kernels/cpu, kernels/cuda) fills
 * with designated initializers.
 *
 * Conventions (shared by every op):
 *  - Outputs come first, then inputs, then shapes (llama2.c's matmul(xout, x, w, ...)).
 *  - Activations are F32, row-major, one row per token: x[T][n].
 *  - A weight matrix has n_out rows of n_in elements of its type, row-major; that is
 *    GGUF's dims [n_in, n_out] (fastest first), so row r is output feature r.
 *  - Pointers are in the backend's memory (host memory for the CPU backend).
 *  - Entries marked (optional) may be NULL.
 *  - Ops do not fail on valid shapes; shape checks are the caller's (the engine checks
 *    them once at model load).
 *
 * The KV cache is read and written through ibex_kv_view, which describes both the
 * contiguous layout (one block of max_seq_len tokens) and the paged layout (a block
 * table into a pool of fixed-size blocks); attention reads either one directly. */
#ifndef IBEX_BACKEND_H
#define IBEX_BACKEND_H

#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/status.h"

/* One layer of one sequence's KV cache.
 * Pool layout, per layer: k[n_pool_blocks][block_size][n_kv_heads][head_dim] (same for v).
 * Token t of the sequence lives in physical block block_table[t / block_size] at slot
 * t % block_size. One block of the whole capacity (a one-entry table) is the simplest
 * contiguous cache; the KV manager's contiguous policy uses a run of consecutive blocks. */
typedef struct ibex_kv_view {
    float *k;                    /* this layer's K pool base */
    float *v;                    /* this layer's V pool base */
    const int32_t *block_table;  /* logical block -> physical block */
    int32_t block_size;          /* tokens per block */
    int32_t n_kv_heads;
    int32_t head_dim;
} ibex_kv_view;

typedef struct ibex_backend ibex_backend;

struct ibex_backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* backend-private state */

    /* Number of worker threads for subsequent ops (CPU); (optional). */
    void (*set_threads)(ibex_backend *be, int n_threads);

    /* y[T][n_out] = x[T][n_in] · Wᵀ, W of type wtype (F32, F16, BF16). */
    void (*matmul)(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wtype,
                   int T, int n_in, int n_out);

    /* y[T][n] = x / sqrt(mean(x²) + eps) · g, per row. y may equal x. */
    void (*rmsnorm)(ibex_backend *be, float *y, const float *x, const float *g, int T, int n,
                    float eps);

    /* In-place rotary embedding of x[T][n_heads][head_dim], token i at position pos[i].
     * The first rope_dim dims of each head are rotated in consecutive pairs
     * (x[2i], x[2i+1]) by θ = pos · base^(−2i/rope_dim) (GGUF llama "normal" mode). */
    void (*rope)(ibex_backend *be, float *x, const int32_t *pos, int T, int n_heads, int head_dim,
                 int rope_dim, float freq_base);

    /* In-place softmax of each of T rows of n. */
    void (*softmax)(ibex_backend *be, float *x, int T, int n);

    /* y[n] = silu(gate[n]) · up[n], silu(g) = g / (1 + e^−g). y may equal gate. */
    void (*silu_mul)(ibex_backend *be, float *y, const float *gate, const float *up, int64_t n);

    /* y[n] += x[n]. */
    void (*add)(ibex_backend *be, float *y, const float *x, int64_t n);

    /* y[T][dim] = rows tokens[i] of the embedding table (type etype, vocab rows of dim). */
    void (*embed)(ibex_backend *be, float *y, const void *table, ibex_type etype,
                  const int32_t *tokens, int T, int dim);

    /* Stores k[T][n_kv_heads·head_dim] and v[...] of tokens at positions pos0..pos0+T−1
     * into the cache described by kv. */
    void (*kv_write)(ibex_backend *be, const ibex_kv_view *kv, const float *k, const float *v,
                     int T, int pos0);

    /* Causal attention for T query tokens at positions pos0..pos0+T−1 of one sequence:
     * out[T][n_heads·head_dim] from q[T][n_heads·head_dim] over cached tokens
     * 0..pos0+i (inclusive) for query i. Query head h reads KV head
     * h / (n_heads / n_kv_heads). scale is usually 1/sqrt(head_dim). */
    void (*attention)(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                      int T, int pos0, int n_heads, float scale);

    /* Releases ctx (optional). */
    void (*free)(ibex_backend *be);
};

/* The CPU backend; n_threads <= 0 means all cores. Returns NULL only on allocation failure. */
ibex_backend *ibex_backend_cpu_new(int n_threads);
void ibex_backend_free(ibex_backend *be);

#endif
