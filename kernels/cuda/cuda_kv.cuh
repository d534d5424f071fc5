/* cuda_kv.cuh — the CUDA KV-cache write (cuda_kv.cu); plain C declarations. */
#ifndef IBEX_CUDA_KV_CUH
#define IBEX_CUDA_KV_CUH

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/backend.h"

/* Contract of ibex_backend.kv_write: token pos0+i goes to slot first_block·block_size +
 * pos0+i when kv->contiguous, else through the (device) block table, rounded to kv->type.
 * A type other than F32/F16/BF16 records IBEX_ERR_UNSUPPORTED (returned by the next sync). */
void ibex_cuda_kv_write(ibex_backend *be, const ibex_kv_view *kv, const float *k, const float *v,
                        int T, int pos0);
/* Contract of ibex_backend.kv_type_ok: F32, F16 and BF16 pools (kv_write, rope_kv and
 * every attention form round to and widen from them). */
bool ibex_cuda_kv_type_ok(const ibex_backend *be, ibex_type t);

#ifdef __cplusplus
}
#endif

#endif
