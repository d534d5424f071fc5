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
#include "kernels/cuda/cuda_kv_type.cuh"

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

/* ---- rope_kv: RoPE on Q and K in FP32, then K and V stored in the cache, one launch ----
 *
 * One block per token i. Phase 1, thread per rotated pair j (θ = pos · base^(−2j/rope_dim)
 * in FP32, sincosf): rotates pair j of every Q head and every K head in place, and stores
 * the rotated K pair into the pool slot slots[i]. Phase 2, thread per element e of the
 * K/V row: V always, and K elements past the rotated dims. Pool elements are stored
 * rounded to the pool's type (F16/BF16: nearest even); q and k stay F32. Every element has one writer
 * and phase 2 never reads what phase 1 writes, so no barrier is needed.
 *
 * FP32 angles, unlike rope's double ones: θ carries a relative error of a few ulp, about
 * 2e-4 rad at position 4096 — the precision llama.cpp and vLLM use; the test compares it
 * with the CPU's double-angle rope under a matching tolerance. */
static __global__ void __launch_bounds__(ROPE_THREADS)
rope_kv_kernel(float *q, float *k, const float *__restrict__ v, void *kpool, void *vpool, int kv_type,
               const int32_t *__restrict__ slots, const int32_t *__restrict__ pos,
               int n_heads, int n_kv_heads, int head_dim, int n_pairs, int rope_dim, float log2_base) {
    const int i = blockIdx.x;
    const int64_t row = (int64_t)n_kv_heads * head_dim;
    const int64_t slot = slots[i];
    const float p = (float)pos[i];
    float *qi = q + (int64_t)i * n_heads * head_dim;
    float *ki = k + (int64_t)i * row;
    const float *vi = v + (int64_t)i * row;
    const int64_t base = slot * row;
    for (int j = threadIdx.x; j < n_pairs; j += ROPE_THREADS) {
        const float inv_freq = exp2f(-(float)(2 * j) / (float)rope_dim * log2_base);
        float sn, cs;
        sincosf(p * inv_freq, &sn, &cs);
        for (int h = 0; h < n_heads; h++) {
            float *x = qi + (int64_t)h * head_dim + 2 * j;
            const float a = x[0], b = x[1];
            x[0] = __fmul_rn(a, cs) - __fmul_rn(b, sn);
            x[1] = __fmul_rn(a, sn) + __fmul_rn(b, cs);
        }
        for (int h = 0; h < n_kv_heads; h++) {
            const int64_t o = (int64_t)h * head_dim + 2 * j;
            const float a = ki[o], b = ki[o + 1];
            const float r0 = __fmul_rn(a, cs) - __fmul_rn(b, sn), r1 = __fmul_rn(a, sn) + __fmul_rn(b, cs);
            ki[o] = r0, ki[o + 1] = r1;
            ibex_kv_put(kpool, base + o, r0, kv_type);
            ibex_kv_put(kpool, base + o + 1, r1, kv_type);
        }
    }
    for (int64_t e = threadIdx.x; e < row; e += ROPE_THREADS) {
        ibex_kv_put(vpool, base + e, vi[e], kv_type);
        if ((int)(e % head_dim) >= 2 * n_pairs) ibex_kv_put(kpool, base + e, ki[e], kv_type);
    }
}

extern "C" void ibex_cuda_rope_kv(ibex_backend *be, float *q, float *k, const float *v, void *kpool, void *vpool,
                                  ibex_type kv_type, const int32_t *slots, const int32_t *pos, int T, int n_heads, int n_kv_heads,
                                  int head_dim, int rope_dim, float freq_base) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    int n_pairs = (rope_dim < head_dim ? rope_dim : head_dim) / 2;
    if (n_pairs < 0) n_pairs = 0;
    if (T <= 0 || n_kv_heads <= 0 || head_dim <= 0) return;
    if (!ibex_kv_type_supported(kv_type)) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED, "CUDA rope_kv: KV cache of type %s (F32, F16, BF16 only)",
                         ibex_type_name(kv_type));
        return;
    }
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    rope_kv_kernel<<<(unsigned)T, ROPE_THREADS, 0, ctx->stream>>>(q, k, v, kpool, vpool, (int)kv_type, slots, pos, n_heads,
                                                                 n_kv_heads, head_dim, n_pairs,
                                                                 rope_dim > 0 ? rope_dim : 1, log2f(freq_base));
    IBEX_CUDA_CHECK_LAUNCH(ctx, rope_kv_kernel);
}
