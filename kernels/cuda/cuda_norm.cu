/* cuda_norm.cu — RMSNorm on the GPU: y[T][n] = x / sqrt(mean(x²) + eps) · g, one block
 * per row. The formula and the order of its multiplications are the CPU backend's
 * (cpu_backend.c); only the order of the sum of squares differs. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_norm.cuh"

#define NORM_THREADS 256

/* y may equal x: every thread reads its elements again after the block-wide sum (which
 * ends in barriers) and writes only those. */
static __global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_kernel(float *y, const float *x, const float *__restrict__ g, int n, float eps) {
    const int64_t off = (int64_t)blockIdx.x * n;
    const float *xr = x + off;
    float *yr = y + off;
    float ss = 0.0f;
    for (int k = threadIdx.x; k < n; k += NORM_THREADS) {
        const float v = xr[k];
        ss = fmaf(v, v, ss);
    }
    ss = ibex_block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int k = threadIdx.x; k < n; k += NORM_THREADS) yr[k] = xr[k] * inv * g[k];
}

extern "C" void ibex_cuda_rmsnorm(ibex_backend *be, float *y, const float *x, const float *g, int T,
                                  int n, float eps) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    rmsnorm_kernel<<<(unsigned)T, NORM_THREADS, 0, ctx->stream>>>(y, x, g, n, eps);
    IBEX_CUDA_CHECK_LAUNCH(ctx, rmsnorm_kernel);
}
