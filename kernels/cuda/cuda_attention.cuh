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

/* The form used for `requested` (the backend's set_attention choice): itself unless it is
 * AUTO; AUTO gives SPLIT_K for decode-sized calls (T ≤ 4) over at least 256 keys (pos0 + T),
 * where one warp per (query, head) would leave most of the GPU idle while it walks the
 * keys, and PAGED otherwise (prefill, short contexts). MATERIALIZED is never automatic. */
ibex_attn_impl ibex_cuda_attention_pick(ibex_attn_impl requested, int T, int pos0);

/* How SPLIT_K divides the pos0 + T keys on a GPU of sm_count SMs: returns the number of
 * splits and stores the keys per split (a multiple of 32) in *chunk. Enough (query, head,
 * split) warps to give each SM about 32, with at least 64 keys per split and at most 1024
 * splits. Never fails. */
int ibex_cuda_attention_splits(int sm_count, int T, int pos0, int n_heads, int *chunk);

/* Contract of ibex_backend.attention. head_dim outside 1..256 records IBEX_ERR_UNSUPPORTED
 * (returned by the next sync) and fills out with NaN. */
void ibex_cuda_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                         int T, int pos0, int n_heads, float scale);

#ifdef __cplusplus
}
#endif

#endif
