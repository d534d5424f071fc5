/* cuda_matmul_q.cuh — the CUDA matmul for GGUF's Q8_0 and Q4_0 weight rows
 * (cuda_matmul_q.cu), called by cuda_matmul.cu's mm() for those types, and the exact
 * dequantization of one element that the embedding lookup shares. Plain C declarations
 * plus one device helper. */
#ifndef IBEX_CUDA_MATMUL_Q_CUH
#define IBEX_CUDA_MATMUL_Q_CUH

#include "kernels/cuda/cuda_common.cuh"

/* Rows per dequantize-and-GEMM chunk are chosen so the F16 copy of the chunk stays below
 * this many bytes of op scratch (a 32000 × 4096 output matrix would need 262 MB whole). */
#define IBEX_CUDA_Q_CHUNK_BYTES ((size_t)32 << 20)

/* Whether t is a quantized type the CUDA backend computes with (Q8_0, Q4_0). */
static inline bool ibex_cuda_q_type(ibex_type t) { return t == IBEX_TYPE_Q8_0 || t == IBEX_TYPE_Q4_0; }

/* Element k of row `row` (rows of n elements) of a Q8_0 (etype 8) or Q4_0 table: d·q,
 * exact in F32 (ggml's dequantization). n is a multiple of 32. */
static __device__ __forceinline__ float ibex_dev_q_elem(const void *table, int etype, int64_t row, int n, int k) {
    const int bs = etype == IBEX_TYPE_Q8_0 ? 34 : 18;
    const uint8_t *blk = (const uint8_t *)table + (row * (n / 32) + k / 32) * bs;
    const float d = ibex_dev_f16((uint16_t)(blk[0] | (blk[1] << 8)));
    const int e = k % 32;
    if (etype == IBEX_TYPE_Q8_0) return d * (float)(int8_t)blk[2 + e];
    const int q = e < 16 ? (blk[2 + e] & 15) : (blk[2 + e - 16] >> 4);
    return d * (float)(q - 8);
}

#ifdef __cplusplus
extern "C" {
#endif

/* y (+)= x · Wᵀ for Q8_0/Q4_0 W [n_out][n_in] (n_in a multiple of 32; otherwise a sticky
 * IBEX_ERR_UNSUPPORTED and NaN). T ≤ IBEX_CUDA_MATVEC_MAX_T with x 16-byte aligned: the
 * matrix-vector kernel; else dequantize-to-F16 + cuBLAS by chunks of rows. add: y += . */
void ibex_cuda_matmul_q(ibex_cuda_ctx *ctx, float *y, const float *x, const void *w, ibex_type wtype, int T,
                        int n_in, int n_out, bool add);

#ifdef __cplusplus
}
#endif

#endif
