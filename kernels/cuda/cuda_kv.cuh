/* cuda_kv.cuh — the CUDA KV-cache write (cuda_kv.cu); plain C declarations. */
#ifndef IBEX_CUDA_KV_CUH
#define IBEX_CUDA_KV_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Contract of ibex_backend.kv_write: token pos0+i goes to slot first_block·block_size +
 * pos0+i when kv->contiguous, else through the (device) block table. */
void ibex_cuda_kv_write(ibex_backend *be, const ibex_kv_view *kv, const float *k, const float *v,
                        int T, int pos0);

#ifdef __cplusplus
}
#endif

#endif
