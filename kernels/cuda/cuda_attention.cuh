/* cuda_attention.cuh — CUDA causal attention in three forms (cuda_attention.cu) and the
 * rules that choose between them; plain C declarations, so the tests can check the rules. */
#ifndef IBEX_CUDA_ATTENTION_CUH
#define IBEX_CUDA_ATTENTION_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Largest head_dim the kernels take (8 dims per lane of a warp). */
#define IBEX_CUDA_ATT_MAX_HEAD_DIM 256

/* The ungrouped form used for `requested` (the backend's set_attention choice) when
 * ibex_cuda_attention_grouped is false: itself unless it is
 * AUTO; AUTO gives SPLIT_K for decode-sized calls (T ≤ 4) over at least 256 keys (pos0 + T),
 * where one warp per (query, head) would leave most of the GPU idle while it walks the
 * keys, and PAGED otherwise (prefill, short contexts). MATERIALIZED is never automatic. */
ibex_attn_impl ibex_cuda_attention_pick(ibex_attn_impl requested, int T, int pos0);

/* How SPLIT_K divides the pos0 + T keys on a GPU of sm_count SMs: returns the number of
 * splits and stores the keys per split (a multiple of 32) in *chunk. Enough (query, head,
 * split) warps to give each SM about 32, with at least 64 keys per split and at most 1024
 * splits. Never fails. */
int ibex_cuda_attention_splits(int sm_count, int T, int pos0, int n_heads, int *chunk);

/* Whether attention uses the grouped decode kernel (one block per KV head serving its GQA
 * group, K/V tiles in shared memory, split-K sized from the SM count): for AUTO with one
 * query token when n_heads is a multiple of n_kv_heads. Otherwise ibex_cuda_attention_pick
 * chooses among the three ungrouped forms. */
bool ibex_cuda_attention_grouped(ibex_attn_impl requested, int T, int n_heads, int n_kv_heads);

/* Query heads one grouped decode block serves: the GQA group, at most 32 heads and 2048
 * floats of queries (8 heads of 256 dims, 16 of 128). Never fails. */
int ibex_cuda_decode_heads_per_block(int group, int head_dim);

/* How the grouped decode kernel splits the keys when its launch has `blocks` (sequence, KV
 * head, head chunk) blocks and the longest sequence max_keys keys: returns the number of
 * splits and stores the keys per split (a multiple of 16) in *chunk. Enough splits for
 * about 4 blocks per SM, at least 64 keys each, at most 256. Never fails. */
int ibex_cuda_decode_splits(int sm_count, int blocks, int max_keys, int *chunk);

/* Arrival counters the grouped decode kernel needs on a GPU of sm_count SMs: one per block
 * group (sequence, KV head, head chunk) of a launch that splits, and a launch splits only
 * with fewer than sm_count · 4 groups. */
int ibex_cuda_decode_counters(int sm_count);

/* Allocates ctx->dec_count (ibex_cuda_decode_counters entries, IBEX_BUF_WORKSPACE) and
 * zeroes it on the stream; called once at backend creation. The kernel leaves every
 * counter at 0, so nothing re-zeroes them. false with err set on failure. */
struct ibex_cuda_ctx;
bool ibex_cuda_attention_init(struct ibex_cuda_ctx *ctx, ibex_err *err);

/* Contract of ibex_backend.attention_batch (grouped decode kernel: 1 launch whether or not
 * it splits, whatever n_seq; with an explicit set_attention form, that form per sequence). */
void ibex_cuda_attention_batch(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                               const ibex_attn_seq *seqs, const ibex_attn_seq *seqs_host, int n_seq, int n_heads,
                               float scale);

/* Contract of ibex_backend.attention. head_dim outside 1..256 records IBEX_ERR_UNSUPPORTED
 * (returned by the next sync) and fills out with NaN. */
void ibex_cuda_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                         int T, int pos0, int n_heads, float scale);

#ifdef __cplusplus
}
#endif

#endif
