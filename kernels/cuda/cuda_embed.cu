/* cuda_embed.cu — embedding lookup on the GPU: y[T][dim] = rows tokens[i] of a table of
 * F32, F16, BF16, Q8_0 or Q4_0 rows, widened (dequantized) exactly to F32. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_embed.cuh"
#include "kernels/cuda/cuda_matmul_q.cuh"

#define EMBED_THREADS 256

/* grid (T, ceil(dim / EMBED_THREADS)). A negative token id gives a NaN row (the table's
 * size is not known here, so ids past the end are the caller's to prevent). */
static __global__ void __launch_bounds__(EMBED_THREADS)
embed_kernel(float *__restrict__ y, const void *__restrict__ table, int etype,
             const int32_t *__restrict__ tokens, int dim) {
    const int i = blockIdx.x;
    const int k = blockIdx.y * EMBED_THREADS + threadIdx.x;
    if (k >= dim) return;
    const int32_t tok = tokens[i];
    float v;
    if (tok < 0) {
        v = __int_as_float(0x7fc00000); /* NaN */
    } else {
        const int64_t e = (int64_t)tok * dim + k;
        if (etype == IBEX_TYPE_F16)
            v = ibex_dev_f16(((const uint16_t *)table)[e]);
        else if (etype == IBEX_TYPE_BF16)
            v = ibex_dev_bf16(((const uint16_t *)table)[e]);
        else if (etype == IBEX_TYPE_Q8_0 || etype == IBEX_TYPE_Q4_0) /* cuda_matmul_q.cuh */
            v = ibex_dev_q_elem(table, etype, tok, dim, k);
        else
            v = ((const float *)table)[e];
    }
    y[(int64_t)i * dim + k] = v;
}

extern "C" void ibex_cuda_embed(ibex_backend *be, float *y, const void *table, ibex_type etype,
                                const int32_t *tokens, int T, int dim) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || dim <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    if ((etype != IBEX_TYPE_F32 && etype != IBEX_TYPE_F16 && etype != IBEX_TYPE_BF16 && !ibex_cuda_q_type(etype)) ||
        (ibex_cuda_q_type(etype) && dim % 32 != 0)) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED,
                         "CUDA embed: table type %s is not supported (F32, F16, BF16, Q8_0, Q4_0 in whole blocks)",
                         ibex_type_name(etype));
        IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(y, 0xff, (size_t)T * dim * sizeof(float), ctx->stream));
        return;
    }
    const dim3 grid((unsigned)T, (unsigned)((dim + EMBED_THREADS - 1) / EMBED_THREADS));
    embed_kernel<<<grid, EMBED_THREADS, 0, ctx->stream>>>(y, table, (int)etype, tokens, dim);
    IBEX_CUDA_CHECK_LAUNCH(ctx, embed_kernel);
}
