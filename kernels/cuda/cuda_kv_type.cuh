/* cuda_kv_type.cuh — private to kernels/cuda: one element of a KV pool read as F32 or
 * stored from F32, whatever the pool's element type (ibex_kv_view.type: F32, F16, BF16).
 * kv_write and rope_kv store through ibex_kv_put (round to nearest even, as
 * __float2half_rn / __float2bfloat16_rn); attention widens through ibex_kv_get (exact).
 * Included by .cu files only, after cuda_common.cuh. */
#ifndef IBEX_CUDA_KV_TYPE_CUH
#define IBEX_CUDA_KV_TYPE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

/* Element i of pool p (type t), widened to F32. */
static __device__ __forceinline__ float ibex_kv_get(const void *p, int64_t i, int t) {
    if (t == IBEX_TYPE_F16) return ibex_dev_f16(__ldg((const unsigned short *)p + i));
    if (t == IBEX_TYPE_BF16) return ibex_dev_bf16(__ldg((const unsigned short *)p + i));
    return __ldg((const float *)p + i);
}

/* Stores x into element i of pool p (type t), rounded to nearest even for F16/BF16. */
static __device__ __forceinline__ void ibex_kv_put(void *p, int64_t i, float x, int t) {
    if (t == IBEX_TYPE_F16)
        ((unsigned short *)p)[i] = __half_as_ushort(__float2half_rn(x));
    else if (t == IBEX_TYPE_BF16)
        ((unsigned short *)p)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x));
    else
        ((float *)p)[i] = x;
}

/* Bytes of one pool element of type t (the kernels' contract: F32, F16, BF16 only). */
static inline int ibex_kv_elem_bytes(int t) { return t == IBEX_TYPE_F16 || t == IBEX_TYPE_BF16 ? 2 : 4; }

/* Whether the CUDA kernels take a KV pool of type t. */
static inline bool ibex_kv_type_supported(int t) {
    return t == IBEX_TYPE_F32 || t == IBEX_TYPE_F16 || t == IBEX_TYPE_BF16;
}

#endif
