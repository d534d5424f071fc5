/* cuda_kv.cu — KV-cache write on the GPU: k[T][n_kv_heads·head_dim] and v[...] of the tokens
 * at positions pos0.. go to their slots, through the block table (paged) or at
 * first_block·block_size + t (contiguous), rounded to the pool's element type (F32, or
 * F16/BF16 to nearest even). */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kv.cuh"
#include "kernels/cuda/cuda_kv_type.cuh"

#define KV_THREADS 256

/* grid (T, ceil(row / KV_THREADS)); row = n_kv_heads·head_dim elements per token. */
static __global__ void __launch_bounds__(KV_THREADS)
kv_write_kernel(void *kp, void *vp, int type, const int32_t *__restrict__ table, int block_size, bool contiguous,
                int first_block, const float *__restrict__ k, const float *__restrict__ v, int64_t row, int pos0) {
    const int i = blockIdx.x;
    const int64_t e = (int64_t)blockIdx.y * KV_THREADS + threadIdx.x;
    if (e >= row) return;
    const int64_t t = (int64_t)pos0 + i, bs = block_size;
    const int64_t slot = contiguous ? (int64_t)first_block * bs + t : (int64_t)table[t / bs] * bs + t % bs;
    ibex_kv_put(kp, slot * row + e, k[(int64_t)i * row + e], type);
    ibex_kv_put(vp, slot * row + e, v[(int64_t)i * row + e], type);
}

extern "C" void ibex_cuda_kv_write(ibex_backend *be, const ibex_kv_view *kv, const float *k,
                                   const float *v, int T, int pos0) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    const int64_t row = (int64_t)kv->n_kv_heads * kv->head_dim;
    if (T <= 0 || row <= 0) return;
    if (kv->block_size <= 0) {
        ibex_cuda_record(ctx, IBEX_ERR_INVALID, "CUDA kv_write: block_size %d", (int)kv->block_size);
        return;
    }
    if (!ibex_kv_type_supported(kv->type)) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED, "CUDA kv_write: KV cache of type %s (F32, F16, BF16 only)",
                         ibex_type_name(kv->type));
        return;
    }
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const dim3 grid((unsigned)T, (unsigned)((row + KV_THREADS - 1) / KV_THREADS));
    kv_write_kernel<<<grid, KV_THREADS, 0, ctx->stream>>>(kv->k, kv->v, (int)kv->type, kv->block_table,
                                                          kv->block_size, kv->contiguous, kv->first_block, k, v, row,
                                                          pos0);
    IBEX_CUDA_CHECK_LAUNCH(ctx, kv_write_kernel);
}

extern "C" bool ibex_cuda_kv_type_ok(const ibex_backend *be, ibex_type t) {
    (void)be;
    return ibex_kv_type_supported(t);
}
