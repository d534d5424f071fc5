/* cuda_embed.cuh — the CUDA embedding lookup (cuda_embed.cu); plain C declarations. */
#ifndef IBEX_CUDA_EMBED_CUH
#define IBEX_CUDA_EMBED_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Contract of ibex_backend.embed; tokens is a device array. Tables of type F32, F16 or BF16;
 * other types record IBEX_ERR_UNSUPPORTED (returned by the next sync) and fill y with NaN. */
void ibex_cuda_embed(ibex_backend *be, float *y, const void *table, ibex_type etype,
                     const int32_t *tokens, int T, int dim);

#ifdef __cplusplus
}
#endif

#endif
