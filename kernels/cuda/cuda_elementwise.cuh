/* cuda_elementwise.cuh — the CUDA element-wise and row-wise ops (cuda_elementwise.cu): softmax, silu_mul, add; plain C declarations. */
#ifndef IBEX_CUDA_ELEMENTWISE_CUH
#define IBEX_CUDA_ELEMENTWISE_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Contracts of ibex_backend.softmax, .silu_mul and .add. */
void ibex_cuda_softmax(ibex_backend *be, float *x, int T, int n);
void ibex_cuda_silu_mul(ibex_backend *be, float *y, const float *gate, const float *up, int64_t n);
void ibex_cuda_add(ibex_backend *be, float *y, const float *x, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
