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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/status.h"

/* One layer of one sequence's KV cache.
 * Pool layout, per layer: k[n_pool_blocks][block_size][n_kv_heads][head_dim] (same for v).
 * Token t of the sequence lives in physical block block_table[t / block_size] at slot
 * t % block_size. One block of the whole capacity (a one-entry table) is the simplest
 * contiguous cache; the KV manager's contiguous policy uses a run of consecutive blocks. */
typedef struct ibex_kv_view {
    void *k;                     /* this layer's K pool base (elements of type `type`) */
    void *v;                     /* this layer's V pool base */
    const int32_t *block_table;  /* logical block -> physical block (backend memory) */
    int32_t block_size;          /* tokens per block */
    int32_t n_kv_heads;
    int32_t head_dim;
    /* True when the sequence's blocks are one run of consecutive physical blocks starting
     * at first_block (the contiguous policy): kernels may then address token t as slot
     * first_block·block_size + t without reading the table. False (the zero value):
     * read the table (paged). The table is valid either way. */
    bool contiguous;
    int32_t first_block;
    /* Element type of the K and V pools: IBEX_TYPE_F32 (the zero value), IBEX_TYPE_F16 or
     * IBEX_TYPE_BF16. Rows are stored rounded to this type by kv_write and widened to F32
     * by attention; a backend that does not compute with a type says so through
     * kv_type_ok. */
    ibex_type type;
} ibex_kv_view;

/* One sequence of a batched decode attention call (attention_batch): its query sees keys
 * 0..n_keys−1; its block table starts at entry table_off of the call's table array. */
typedef struct ibex_attn_seq {
    int32_t n_keys;      /* pos + 1 of its one query token */
    int32_t first_block; /* ≥ 0: its blocks are one run from this physical block (contiguous);
                          * −1: read the table (paged) */
    int32_t table_off;   /* offset of its block table in kv->block_table, in entries */
} ibex_attn_seq;

/* What a backend buffer holds, for device-memory accounting. */
typedef enum ibex_buf_kind {
    IBEX_BUF_WEIGHTS,
    IBEX_BUF_KV,
    IBEX_BUF_ACTIVATIONS,
    IBEX_BUF_WORKSPACE, /* cuBLAS workspace, attention scratch, staging */
    IBEX_BUF_KIND_COUNT
} ibex_buf_kind;

/* Attention kernel choice (backends with one implementation ignore it). */
typedef enum ibex_attn_impl {
    IBEX_ATTN_AUTO,         /* the backend picks per call */
    IBEX_ATTN_MATERIALIZED, /* scores[T][keys] written out, softmaxed, then ·V: O(n²) memory */
    IBEX_ATTN_PAGED,        /* one pass per (query, head) with online softmax, K/V via the block table */
    IBEX_ATTN_SPLIT_K,      /* flash-decoding: keys split in chunks across blocks, then a reduction */
    IBEX_ATTN_IMPL_COUNT
} ibex_attn_impl;

const char *ibex_attn_impl_name(ibex_attn_impl a);
/* "auto", "materialized", "paged", "split_k"; false if s is none of them. */
int ibex_attn_impl_from_name(const char *s, ibex_attn_impl *out);

/* Work a device backend has queued or waited for since it was created. Monotonic, so
 * the counts of a step are differences of two readings (zero on the CPU backend). */
typedef struct ibex_dev_counters {
    int64_t launches;  /* kernel launches the host made (a cuBLAS call or a graph counts 1;
                        * kernels captured into a graph are not launches) */
    int64_t syncs;     /* host waits for the device (stream or event synchronizations) */
    int64_t allocs;    /* device allocations (cudaMalloc) */
    int64_t frees;     /* device frees (cudaFree) */
    int64_t h2d_bytes; /* bytes copied host -> device */
    int64_t d2h_bytes; /* bytes copied device -> host */
    int64_t d2d_bytes; /* bytes copied within the device */
    int64_t graph_launches;  /* captured graphs launched (each is also 1 in launches) */
    int64_t graph_builds;    /* graphs instantiated (not updated in place) */
} ibex_dev_counters;

/* A device's identity and memory, as the backend reports it. */
typedef struct ibex_device_info {
    char name[128];         /* "cpu" or the CUDA device name */
    int cc_major, cc_minor; /* compute capability (0 on the CPU) */
    int sm_count;
    int64_t mem_total;      /* bytes (cudaMemGetInfo), 0 if unknown */
    int64_t mem_free;
    int64_t buf_bytes[IBEX_BUF_KIND_COUNT]; /* bytes this backend holds, by kind */
    int64_t buf_peak;       /* the most bytes held at once */
    double spec_bandwidth;  /* bytes/s from the data sheet: 2 (DDR) · memory clock · bus width / 8; 0 if unknown */
} ibex_device_info;

typedef struct ibex_backend ibex_backend;

struct ibex_backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* backend-private state */

    /* Number of worker threads for subsequent ops (CPU); (optional). */
    void (*set_threads)(ibex_backend *be, int n_threads);
    /* The resolved worker-thread count ops use now, never 0 (optional: NULL means 1). */
    int (*get_threads)(const ibex_backend *be);

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

    /* ---- memory (all optional: NULL means the backend computes on host memory and the
     * caller allocates with malloc-like means and copies with memcpy) ---- */

    /* A zeroed buffer of bytes in the backend's memory, or NULL with err set. */
    void *(*alloc)(ibex_backend *be, size_t bytes, ibex_buf_kind kind, ibex_err *err);
    void (*dealloc)(ibex_backend *be, void *p);
    /* The backend's copy of a host weight tensor of bytes, uploaded on the first call and
     * cached by host pointer (weights are uploaded once per backend), or NULL with err. */
    const void *(*weight)(ibex_backend *be, const void *host, size_t bytes, ibex_err *err);
    /* host → backend, backend → host (waits for queued work), backend → backend.
     * Where the host side is memory from host_alloc, upload and download only queue the
     * copy and return: the caller must leave that memory alone until the next sync. */
    ibex_status (*upload)(ibex_backend *be, void *dst, const void *src, size_t bytes, ibex_err *err);
    ibex_status (*download)(ibex_backend *be, void *dst, const void *src, size_t bytes, ibex_err *err);
    void (*copy)(ibex_backend *be, void *dst, const void *src, size_t bytes);
    /* Waits for queued work; returns the first error any op met since the last call
     * (ops queue work and do not fail on valid shapes, so device errors surface here). */
    ibex_status (*sync)(ibex_backend *be, ibex_err *err);

    /* Attention kernel for subsequent calls (optional). */
    ibex_status (*set_attention)(ibex_backend *be, ibex_attn_impl impl, ibex_err *err);
    /* Whether kv_write and attention compute with a KV cache of element type t (optional:
     * NULL means IBEX_TYPE_F32 only). */
    bool (*kv_type_ok)(const ibex_backend *be, ibex_type t);
    /* Device identity and memory (optional). */
    void (*device_info)(ibex_backend *be, ibex_device_info *out);
    /* Measured device-to-device copy bandwidth in bytes/s (read + write counted) over a
     * buffer of `bytes`, median of several copies; the memory roofline (optional). */
    double (*copy_bandwidth)(ibex_backend *be, size_t bytes, ibex_err *err);

    /* ---- staging and fused decode ops (all optional; the forward pass uses the plain
     * ops above where these are NULL) ---- */

    /* The work counters so far (cheap: no device call). */
    void (*get_counters)(ibex_backend *be, ibex_dev_counters *out);
    /* Device timestamps, for per-op times without waiting for the device: mark queues
     * one on the backend's stream and returns its id (−1 when none is left: sync, read,
     * reset); mark_elapsed_ms is the device time from mark a to mark b, valid once a
     * sync has passed both (NaN otherwise); marks_reset frees every id. */
    int (*mark)(ibex_backend *be);
    double (*mark_elapsed_ms)(ibex_backend *be, int a, int b);
    void (*marks_reset)(ibex_backend *be);
    /* Pinned host memory of bytes for staging copies (see upload), or NULL with err. */
    void *(*host_alloc)(ibex_backend *be, size_t bytes, ibex_err *err);
    void (*host_free)(ibex_backend *be, void *p);
    /* The backend's copy of n host tensors laid end to end (bytes[i] each), uploaded once
     * and cached like weight() under its own key (hosts[0] and n), or NULL with err. */
    const void *(*weight_cat)(ibex_backend *be, const void *const *hosts, const size_t *bytes, int n,
                              ibex_err *err);
    /* One matmul over a weight whose n_out rows are n_split consecutive blocks of
     * n_outs[s] rows (a concatenated Q|K|V): ys[s][T][n_outs[s]] = x · W_sᵀ. */
    void (*matmul_split)(ibex_backend *be, float *const *ys, const int *n_outs, int n_split, const float *x,
                         const void *w, ibex_type wtype, int T, int n_in);
    /* y[T][n_out] += x[T][n_in] · Wᵀ (the residual add fused into the matmul). */
    void (*matmul_add)(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wtype, int T,
                       int n_in, int n_out);
    /* y[T][n_ffn] = silu(x · Gᵀ) · (x · Uᵀ) where w is G (n_ffn rows) then U (n_ffn rows);
     * tmp is [T][n_ffn] of backend memory the op may use. */
    void (*matmul_swiglu)(ibex_backend *be, float *y, float *tmp, const float *x, const void *w, ibex_type wtype,
                          int T, int n_in, int n_ffn);
    /* RoPE (as rope) on q[T][n_heads·head_dim] and k[T][n_kv_heads·head_dim] in place,
     * then token i's k and v rows stored at slot slots[i] of the pools kpool/vpool
     * ([slot][n_kv_heads·head_dim], the layout of ibex_kv_view, elements of kv_type as
     * kv_write rounds them): every sequence's tokens of a step in one call. */
    void (*rope_kv)(ibex_backend *be, float *q, float *k, const float *v, void *kpool, void *vpool,
                    ibex_type kv_type, const int32_t *slots, const int32_t *pos, int T, int n_heads, int n_kv_heads, int head_dim,
                    int rope_dim, float freq_base);

    /* Decode attention for every sequence of a step in one call (optional: NULL means one
     * attention call per sequence): n_seq sequences of one query token each,
     * out[s][n_heads·head_dim] from q[s][n_heads·head_dim] as attention(T = 1, pos0 =
     * seqs[s].n_keys − 1) would compute over sequence s's blocks. kv gives the layer's pools,
     * type, block size and shape, and in block_table the base of every sequence's table
     * (its contiguous/first_block fields are ignored: seqs says). seqs is in backend memory
     * (built once per step and uploaded with the step's staging); seqs_host is the same
     * array on the host, valid during the call (it sizes the launch: no copy back). The
     * number of launches does not depend on n_seq. */
    void (*attention_batch)(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                            const ibex_attn_seq *seqs, const ibex_attn_seq *seqs_host, int n_seq, int n_heads,
                            float scale);

    /* Capture into a graph (optional): graph_begin records the ops that follow instead
     * of running them; graph_end turns the record into the backend's executable graph
     * (updated in place when only kernel parameters changed, built again otherwise) and
     * launches it. If anything in between could not be captured, graph_end fails with
     * nothing run and the caller runs the ops again without capture. */
    ibex_status (*graph_begin)(ibex_backend *be, ibex_err *err);
    ibex_status (*graph_end)(ibex_backend *be, ibex_err *err);

    /* Measured read bandwidth in bytes/s of a kernel that only streams `bytes` of device
     * memory in (128-bit loads, nothing written back), median of several runs: the
     * memory roofline decode weights are read against (optional; copy_bandwidth's
     * copies are themselves ~80-90 % of the data sheet, so they flatter kernels). */
    double (*read_bandwidth)(ibex_backend *be, size_t bytes, ibex_err *err);
    /* Measured bytes/s of the backend's threads reading the n given regions of its own
     * memory once each (nothing written back), median of a few passes after a warm-up:
     * the runner streams a model's weights with it between repetitions, so decode is
     * placed against the same pages read under the same load (optional; CPU only). */
    double (*read_stream)(ibex_backend *be, const void *const *ptr, const size_t *bytes, int n, ibex_err *err);
    /* Measured peak F32 multiply-add rate in FLOP/s (2 per lane of an FMA) of the
     * backend's threads running independent FMA chains on registers, median of several
     * runs: the compute roofline prefill matmuls are placed against (optional). */
    double (*peak_flops)(ibex_backend *be, ibex_err *err);

    /* Releases ctx (optional). */
    void (*free)(ibex_backend *be);
};

/* The CPU backend; n_threads <= 0 means all cores. Returns NULL only on allocation failure. */
ibex_backend *ibex_backend_cpu_new(int n_threads);
void ibex_backend_free(ibex_backend *be);
/* Worker threads be's ops run on (get_threads, or 1 when the backend has none); what
 * results.json records as the thread count actually used. This function can't fail. */
int ibex_backend_threads(const ibex_backend *be);

/* The CUDA backend on device `device` (kernels/cuda; only in builds with IBEX_HAVE_CUDA).
 * NULL with err set when there is no usable device or the driver is too old. */
ibex_backend *ibex_backend_cuda_new(int device, ibex_err *err);
/* Number of CUDA devices visible, 0 when none or no driver (never fails). */
int ibex_cuda_device_count(void);

#endif
