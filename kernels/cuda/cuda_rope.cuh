/* cuda_rope.cuh — the CUDA rotary-embedding op (cuda_rope.cu); plain C declarations. */
#ifndef IBEX_CUDA_ROPE_CUH
#define IBEX_CUDA_ROPE_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Contract of ibex_backend.rope; pos is a device array of T positions. */
void ibex_cuda_rope(ibex_backend *be, float *x, const int32_t *pos, int T, int n_heads, int head_dim,
                    int rope_dim, float freq_base);
/* backend.h's rope_kv: RoPE on Q and K (FP32 angles, sincosf) and the K/V store (rounded to
 * kv_type: F32, F16, BF16; another type records IBEX_ERR_UNSUPPORTED), one launch. */
void ibex_cuda_rope_kv(ibex_backend *be, float *q, float *k, const float *v, void *kpool, void *vpool,
                       ibex_type kv_type, const int32_t *slots, const int32_t *pos, int T, int n_heads, int n_kv_heads, int head_dim,
                       int rope_dim, float freq_base);

#ifdef __cplusplus
}
#endif

#endif
