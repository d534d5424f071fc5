/* forward.h — the Llama forward pass over a batch of sequences: every token of every
 * sequence goes through the matrix multiplications together (one weight read per
 * step), while attention runs per sequence over that sequence's KV blocks.
 *
 * The same call does batched prefill (many tokens of one sequence), single-token
 * decode, and mixed batches (prefill of some sequences, decode of others). */
#ifndef IBEX_FORWARD_H
#define IBEX_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "kernels/backend.h"

/* The ops the forward pass times and counts. */
typedef enum ibex_op {
    IBEX_OP_EMBED,
    IBEX_OP_RMSNORM,
    IBEX_OP_MATMUL_QKV,
    IBEX_OP_ROPE,
    IBEX_OP_KV_WRITE,
    IBEX_OP_ATTENTION,
    IBEX_OP_MATMUL_O,
    IBEX_OP_MATMUL_FFN, /* gate, up and down */
    IBEX_OP_SILU_MUL,
    IBEX_OP_ADD,
    IBEX_OP_OUTPUT, /* final norm excluded: the logits matmul */
    IBEX_OP_LOGITS, /* logits to the caller's host rows (a device-to-host copy on a GPU) */
    IBEX_OP_COUNT
} ibex_op;

const char *ibex_op_name(ibex_op op);

/* Accumulated per op since the last reset: wall time, calls, and analytic counts
 * derived from the shapes (FLOPs: 2 per multiply-add; bytes: weights, activations
 * and KV read or written once). */
typedef struct ibex_op_stats {
    double ns[IBEX_OP_COUNT];
    int64_t calls[IBEX_OP_COUNT];
    double flops[IBEX_OP_COUNT];
    double bytes[IBEX_OP_COUNT];
    int64_t runs;          /* ibex_forward_run calls */
    ibex_dev_counters dev; /* device work of those calls: kernel launches, host syncs,
                            * allocations, bytes copied (zeros on a backend without
                            * get_counters, such as the CPU) */
} ibex_op_stats;

/* acc += after − before, field by field (for splitting stats between kinds of step). */
void ibex_op_stats_delta(ibex_op_stats *acc, const ibex_op_stats *before, const ibex_op_stats *after);

/* One sequence's part of a forward call. */
typedef struct ibex_fwd_seq {
    const int32_t *tokens;      /* n_tokens ids at positions pos0..pos0+n_tokens−1 */
    int32_t n_tokens;
    int32_t pos0;               /* tokens already in this sequence's cache */
    const int32_t *block_table; /* its blocks in the pool, enough for pos0+n_tokens */
    float *logits;              /* NULL: none; else [all_logits ? n_tokens : 1][vocab] (host memory) */
    bool all_logits;
    bool contiguous;            /* its blocks are one run (contiguous policy): kernels may skip the table */
} ibex_fwd_seq;

typedef struct ibex_forward ibex_forward;

/* A forward context for model m on backend be, with room for max_tokens tokens per
 * call (summed over sequences). NULL with err set on failure.
 *
 * On a backend with its own memory (be->alloc: CUDA) the context uploads the weights
 * through be->weight (once per backend: the backend caches them), keeps activations,
 * token ids, positions and block tables in device memory, and copies back only the
 * logits rows asked for. Everything the caller passes (tokens, block tables, logits)
 * stays in host memory; the pool passed to ibex_forward_run must live on be. */
ibex_forward *ibex_forward_new(const ibex_model *m, ibex_backend *be, int32_t max_tokens, ibex_err *err);
void ibex_forward_free(ibex_forward *f);
int32_t ibex_forward_max_tokens(const ibex_forward *f);

/* Runs the batch: writes each sequence's K/V for its tokens into pool and its logits.
 * Fails (nothing computed) on a token id outside the vocabulary, an empty sequence,
 * or more than max_tokens tokens. */
ibex_status ibex_forward_run(ibex_forward *f, ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs,
                             ibex_err *err);

/* Span hook: when set, called at the begin and end of every layer (name "layer"), of
 * its attention and MLP halves ("attn", "mlp") and of every op (ibex_op_name, the same
 * pointers) of a forward call, with the layer index (−1 outside layers).
 * For traces and NVTX-style tools; NULL turns it off. It must be cheap. */
typedef void (*ibex_span_fn)(void *ctx, bool begin, const char *name, int layer);
void ibex_forward_set_span_hook(ibex_forward *f, ibex_span_fn fn, void *ctx);

/* Per-op timing (off by default: one clock read per op when on). On a backend with
 * device marks (CUDA events: be->mark) each op is timed on the device between two marks
 * and the times are read after the step's one sync, so the pipeline keeps running; on a
 * queued backend without marks each timed op waits for the device (real but serialized
 * times). CUPTI gives per-kernel times. */
void ibex_forward_set_profiling(ibex_forward *f, bool on);
/* CUDA graphs (off by default; the environment variable IBEX_CUDA_GRAPHS=1 turns them on
 * for every new context): each pure decode step (one token per sequence) is captured and
 * launched as one graph, the executable graph updated in place from the previous step's
 * when only kernel parameters changed. Needs a backend with graph_begin/graph_end and
 * pinned staging; profiling turns capture off (its marks cannot be captured). When a
 * capture fails, the step runs without it and graphs go off: ibex_forward_graphs says
 * whether they are on and, through why_off (may be NULL), why capture failed. */
void ibex_forward_set_graphs(ibex_forward *f, bool on);
bool ibex_forward_graphs(const ibex_forward *f, ibex_err *why_off);
const ibex_op_stats *ibex_forward_stats(const ibex_forward *f);
void ibex_forward_reset_stats(ibex_forward *f);

#endif
