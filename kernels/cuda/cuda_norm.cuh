/* cuda_norm.cuh — the CUDA RMSNorm op (cuda_norm.cu); plain C declarations. */
#ifndef IBEX_CUDA_NORM_CUH
#define IBEX_CUDA_NORM_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Contract of ibex_backend.rmsnorm: one block per row, a block-wide sum of squares. */
void ibex_cuda_rmsnorm(ibex_backend *be, float *y, const float *x, const float *g, int T, int n,
                       float eps);

#ifdef __cplusplus
}
#endif

#endif
