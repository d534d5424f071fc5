/* cuda_elementwise.cu — the element-wise and row-wise ops on the GPU: softmax over rows,
 * silu(gate)·up and y += x. Same formulas as the CPU backend (cpu_backend.c), with the
 * accurate expf (not __expf). */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_elementwise.cuh"

#define EW_THREADS 256
#define SOFTMAX_THREADS 256

/* One block per row, in place: max, then e^(x−max) and their sum, then scale by 1/sum. Each
 * thread touches the same elements in every pass, and the block reductions end in
 * barriers, so the passes never race. */
static __global__ void __launch_bounds__(SOFTMAX_THREADS) softmax_kernel(float *x, int n) {
    float *r = x + (int64_t)blockIdx.x * n;
    float mx = -INFINITY;
    for (int k = threadIdx.x; k < n; k += SOFTMAX_THREADS) mx = fmaxf(mx, r[k]);
    mx = ibex_block_max(mx);
    float sum = 0.0f;
    for (int k = threadIdx.x; k < n; k += SOFTMAX_THREADS) {
        const float e = expf(r[k] - mx);
        r[k] = e;
        sum += e;
    }
    sum = ibex_block_sum(sum);
    const float inv = 1.0f / sum;
    for (int k = threadIdx.x; k < n; k += SOFTMAX_THREADS) r[k] *= inv;
}

/* y may equal gate or up: each element is read and written by one thread. */
static __global__ void __launch_bounds__(EW_THREADS)
silu_mul_kernel(float *y, const float *gate, const float *up, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * EW_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * EW_THREADS + threadIdx.x; i < n; i += stride) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static __global__ void __launch_bounds__(EW_THREADS) add_kernel(float *y, const float *x, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * EW_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * EW_THREADS + threadIdx.x; i < n; i += stride) y[i] += x[i];
}

extern "C" void ibex_cuda_softmax(ibex_backend *be, float *x, int T, int n) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    softmax_kernel<<<(unsigned)T, SOFTMAX_THREADS, 0, ctx->stream>>>(x, n);
    IBEX_CUDA_CHECK_LAUNCH(ctx, softmax_kernel);
}

extern "C" void ibex_cuda_silu_mul(ibex_backend *be, float *y, const float *gate, const float *up,
                                   int64_t n) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (n <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    silu_mul_kernel<<<ibex_cuda_grid_1d(n, EW_THREADS), EW_THREADS, 0, ctx->stream>>>(y, gate, up, n);
    IBEX_CUDA_CHECK_LAUNCH(ctx, silu_mul_kernel);
}

extern "C" void ibex_cuda_add(ibex_backend *be, float *y, const float *x, int64_t n) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (n <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    add_kernel<<<ibex_cuda_grid_1d(n, EW_THREADS), EW_THREADS, 0, ctx->stream>>>(y, x, n);
    IBEX_CUDA_CHECK_LAUNCH(ctx, add_kernel);
}
