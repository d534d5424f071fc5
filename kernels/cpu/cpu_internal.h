/* cpu_internal.h — private to kernels/cpu: the CPU backend's context, the op entry points
 * defined in the other cpu_*.c files, and the small numeric helpers they share (exp, SIMD
 * horizontal sums, branch-free half conversion).
 *
 * SIMD policy: code under IBEX_CPU_AVX2 uses AVX2+FMA+F16C intrinsics; every such block has
 * a plain C twin that a portable (-march=x86-64-v2) build compiles and gcc can vectorise.
 * Results never depend on the thread count: work is split into items whose arithmetic is
 * fixed by the item's index, not by which thread runs it. */
#ifndef IBEX_CPU_INTERNAL_H
#define IBEX_CPU_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/backend.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define IBEX_CPU_AVX2 1
#include <immintrin.h>
#else
#define IBEX_CPU_AVX2 0
#endif

#define IBEX_CPU_INLINE static inline __attribute__((always_inline))

/* Work (in multiply-adds or elements) below which an op stays on the calling thread:
 * handing work to the pool costs about a microsecond (a few more when the workers are
 * asleep), more than e.g. one 768-wide rmsnorm. */
#define IBEX_CPU_PAR_MIN_WORK (1 << 15)

/* ---- the worker pool (cpu_pool.c) ---- */

/* One piece of a parallel job: items [i0, i1) of it, on thread tid (0 = the caller,
 * 1..threads−1 the workers; tid only indexes per-thread scratch). An item's result must
 * not depend on which thread runs it or on how [0, n) was cut. */
typedef void (*ibex_cpu_task)(void *arg, int64_t i0, int64_t i1, int tid);

typedef struct ibex_cpu_pool ibex_cpu_pool;

/* A pool of n_threads − 1 workers (the caller is the n-th thread). Returns NULL for
 * n_threads < 2, and when no thread could be created; may start fewer workers than asked
 * when the system refuses more (ibex_cpu_pool_threads says how many). */
ibex_cpu_pool *ibex_cpu_pool_new(int n_threads);
/* Stops and joins the workers (asleep or not); NULL is a no-op. Not during a job. */
void ibex_cpu_pool_free(ibex_cpu_pool *p);
/* Threads a job runs on, the caller included; 1 for NULL. */
int ibex_cpu_pool_threads(const ibex_cpu_pool *p);
/* Runs fn over [0, n) on the pool and the calling thread; returns when every item is
 * done. Runs inline (fn(arg, 0, n, 0)) when p is NULL, n is 1, or the pool is already
 * running a job (a nested or concurrent call), so it never deadlocks. */
void ibex_cpu_pool_run(ibex_cpu_pool *p, ibex_cpu_task fn, void *arg, int64_t n);

typedef struct ibex_cpu_ctx {
    int n_threads;       /* >= 1, what the pool really has */
    ibex_cpu_pool *pool; /* NULL when n_threads == 1: one thread creates no workers */
} ibex_cpu_ctx;

static inline int ibex_cpu_threads(const ibex_backend *be) {
    return ((const ibex_cpu_ctx *)be->ctx)->n_threads;
}

/* fn over [0, n): on the pool when work (multiply-adds or elements) pays for it, else on
 * the calling thread in one piece. */
static inline void ibex_cpu_parallel(ibex_backend *be, ibex_cpu_task fn, void *arg, int64_t n,
                                     double work) {
    ibex_cpu_ctx *ctx = be->ctx;
    if (n <= 0) return;
    if (ctx->pool && work >= IBEX_CPU_PAR_MIN_WORK) ibex_cpu_pool_run(ctx->pool, fn, arg, n);
    else fn(arg, 0, n, 0);
}

/* Ops defined outside cpu_backend.c; contracts are those of struct ibex_backend. */
void ibex_cpu_matmul(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wtype,
                     int T, int n_in, int n_out);
void ibex_cpu_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                        int T, int pos0, int n_heads, float scale);

/* The measured roofline (cpu_roofline.c): the backend's read_bandwidth and peak_flops. */
double ibex_cpu_read_bandwidth(ibex_backend *be, size_t bytes, ibex_err *err);
double ibex_cpu_read_stream(ibex_backend *be, const void *const *ptr, const size_t *bytes, int n, ibex_err *err);
double ibex_cpu_peak_flops(ibex_backend *be, ibex_err *err);

/* Quantized matmul (cpu_matmul_q.c): rows [r0, r1) of y[T][n_out] = x[T][n_in] · Wᵀ for
 * Q8_0 / Q4_0 weight rows of rb bytes, the row-group contract of cpu_matmul.c's `fast`
 * table. Calls of fewer than IBEX_CPU_Q_FLOAT_MIN_T tokens (decode) quantize the
 * activations to 8-bit blocks and use integer dot products; calls of more (prefill)
 * dequantize the weights to F32 tiles (see the file's numerics notes 1 and 6).
 * A shape that is not whole blocks, or an allocation failure, leaves those rows NaN.
 * ibex_cpu_mm_rows_q takes the type as an argument; the _portable twin runs the plain C
 * path in every build (the tests compare the two). */
#define IBEX_CPU_Q_FLOAT_MIN_T 48
void ibex_cpu_mm_rows_q8_0(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out,
                           int r0, int r1);
void ibex_cpu_mm_rows_q4_0(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out,
                           int r0, int r1);
void ibex_cpu_mm_rows_q(ibex_type t, float *y, const float *x, const char *w, size_t rb, int T, int n_in,
                        int n_out, int r0, int r1);
void ibex_cpu_mm_rows_q_portable(ibex_type t, float *y, const float *x, const char *w, size_t rb, int T,
                                 int n_in, int n_out, int r0, int r1);

/* e^x with about 2 ulp error (Cephes expf polynomial); exactly 0 below −87.33 (where the
 * true value is subnormal) and +inf above 88.72. The vector twin below computes the
 * same formula. */
static inline float ibex_cpu_expf(float x) {
    if (x != x) return x;
    if (x < -87.33654f) return 0.0f;
    if (x > 88.72283f) return INFINITY;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    /* 2^n as 2^(n−1)·2 so that n = 128 (x just below the overflow bound) stays finite */
    uint32_t bits = (uint32_t)((int32_t)n + 126) << 23;
    float two_n1;
    memcpy(&two_n1, &bits, 4);
    return y * two_n1 * 2.0f;
}

/* IEEE half -> float without branches, so loops over it vectorise; exact for every input. */
static inline float ibex_cpu_f16_to_f32(uint16_t h) {
    uint32_t e = h & 0x7fffu;
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t mag = e << 13;
    float f;
    memcpy(&f, &mag, 4);
    f *= 0x1p112f; /* rebias the exponent 15 -> 127; exact also for subnormal halves */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t special = 0x7f800000u | mag; /* inf / nan keep their payload */
    u = (e >= 0x7c00u ? special : u) | sign;
    memcpy(&f, &u, 4);
    return f;
}

static inline float ibex_cpu_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if IBEX_CPU_AVX2
static inline float ibex_cpu_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Vector twin of ibex_cpu_expf. */
static inline __m256 ibex_cpu_exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.72283f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
    y = _mm256_mul_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), _mm256_set1_ps(2.0f));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    /* NaN in, NaN out */
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

#endif
