/* cuda_matmul.cuh — the CUDA matmul (cuda_matmul.cu) and the rule that picks its path;
 * plain C declarations, so the tests can ask which path a shape takes. */
#ifndef IBEX_CUDA_MATMUL_CUH
#define IBEX_CUDA_MATMUL_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Largest T the matrix-vector kernel takes. */
#define IBEX_CUDA_MATVEC_MAX_T 4

typedef enum ibex_cuda_mm_path {
    IBEX_CUDA_MM_UNSUPPORTED = -1, /* weight type not F32/F16/BF16 */
    IBEX_CUDA_MM_CUBLAS = 0,       /* cublasGemmEx (x converted to the weight type if 16-bit) */
    IBEX_CUDA_MM_MATVEC = 1,       /* the hand-written kernel: x stays F32 */
} ibex_cuda_mm_path;

/* The path ibex_cuda_matmul takes for these arguments (w and x are the device pointers
 * the call would get). MATVEC when the weights are F16/BF16, 1 ≤ T ≤ 4, n_in is a
 * multiple of 8 and w and x are 16-byte aligned (its 128-bit loads need all three);
 * CUBLAS otherwise. Never fails. */
ibex_cuda_mm_path ibex_cuda_matmul_path(ibex_type wtype, int T, int n_in, const void *w,
                                        const float *x);

/* Contract of ibex_backend.matmul. Unsupported weight types record IBEX_ERR_UNSUPPORTED
 * (returned by the next sync) and fill y with NaN. */
void ibex_cuda_matmul(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wtype,
                      int T, int n_in, int n_out);
/* The fused forms (backend.h: matmul_add, matmul_split, matmul_swiglu). On the matvec
 * path each is one launch: the add, the three outputs and silu(gate)·up happen in the
 * kernel's store; on the cuBLAS path they are beta = 1, a GEMM per segment, and two GEMMs
 * plus silu_mul. */
void ibex_cuda_matmul_add(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wtype,
                          int T, int n_in, int n_out);
void ibex_cuda_matmul_split(ibex_backend *be, float *const *ys, const int *n_outs, int n_split,
                            const float *x, const void *w, ibex_type wtype, int T, int n_in);
void ibex_cuda_matmul_swiglu(ibex_backend *be, float *y, float *tmp, const float *x, const void *w,
                             ibex_type wtype, int T, int n_in, int n_ffn);

#ifdef __cplusplus
}
#endif

#endif
