/* cuda_rope.cu — rotary position embedding on the GPU, in place on x[T][n_heads][head_dim]:
 * the pairs (x[2j], x[2j+1]) of the first rope_dim dims of each head are rotated by
 * θ = pos · base^(−2j/rope_dim).
 *
 * The angle is computed exactly as the CPU backend does (cpu_backend.c): in double,
 * θ = pos · exp(−2j/rope_dim · ln base), then cos and sin rounded to float; the rotation
 * uses unfused multiplies (__fmul_rn) like the CPU's ISO C build, so both backends give
 * the same bits up to the last-ulp differences of the double libm functions. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_rope.cuh"

#define ROPE_THREADS 128

/* grid (T, ceil(n_pairs / ROPE_THREADS)); one thread per (token, pair), looping over heads
 * so each angle is computed once per token. */
static __global__ void __launch_bounds__(ROPE_THREADS)
rope_kernel(float *x, const int32_t *__restrict__ pos, int n_heads, int head_dim, int n_pairs,
            int rope_dim, double log_base) {
    const int i = blockIdx.x;
    const int j = blockIdx.y * ROPE_THREADS + threadIdx.x;
    if (j >= n_pairs) return;
    const double p = (double)pos[i];
    const double theta = p * exp(-2.0 * (double)j / (double)rope_dim * log_base);
    const float cs = (float)cos(theta), sn = (float)sin(theta);
    float *xi = x + (int64_t)i * n_heads * head_dim + 2 * j;
    for (int h = 0; h < n_heads; h++) {
        float *v = xi + (int64_t)h * head_dim;
        const float a = v[0], b = v[1];
        v[0] = __fmul_rn(a, cs) - __fmul_rn(b, sn);
        v[1] = __fmul_rn(a, sn) + __fmul_rn(b, cs);
    }
}

extern "C" void ibex_cuda_rope(ibex_backend *be, float *x, const int32_t *pos, int T, int n_heads,
                               int head_dim, int rope_dim, float freq_base) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    const int n_pairs = (rope_dim < head_dim ? rope_dim : head_dim) / 2;
    if (T <= 0 || n_heads <= 0 || n_pairs <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const dim3 grid((unsigned)T, (unsigned)((n_pairs + ROPE_THREADS - 1) / ROPE_THREADS));
    rope_kernel<<<grid, ROPE_THREADS, 0, ctx->stream>>>(x, pos, n_heads, head_dim, n_pairs, rope_dim,
                                                        log((double)freq_base));
    IBEX_CUDA_CHECK_LAUNCH(ctx, rope_kernel);
}
