/* cpu_backend.c — the CPU backend: its constructor and the element-wise and row-wise ops
 * (rmsnorm, rope, softmax, silu_mul, add, embed, kv_write). matmul lives in cpu_matmul.c,
 * attention in cpu_attention.c. Ops run on the backend's worker pool (cpu_pool.c) where
 * the work is large enough to pay for the hand-off; every op gives the same bits for any
 * thread count. */
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels/cpu/cpu_internal.h"

/* Cores this process may run on (its affinity mask, as taskset sets it). */
static int default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* n_threads <= 0 means all cores. Replaces the pool when the count changes (not during an
 * op). Never fails: if threads cannot be created, fewer run, and get_threads says so. */
static void cpu_set_threads(ibex_backend *be, int n_threads) {
    ibex_cpu_ctx *ctx = be->ctx;
    const int want = n_threads > 0 ? n_threads : default_threads();
    if (want == ctx->n_threads) return;
    ibex_cpu_pool_free(ctx->pool);
    ctx->pool = ibex_cpu_pool_new(want); /* NULL for one thread: no workers at all */
    ctx->n_threads = ibex_cpu_pool_threads(ctx->pool);
}

static int cpu_get_threads(const ibex_backend *be) {
    const ibex_cpu_ctx *ctx = be->ctx;
    return ctx->n_threads;
}

/* Sum of squares of x[n] in a fixed order (8 lanes, then a fixed tree). */
static float sum_squares(const float *x, int n) {
    int k = 0;
    float s;
#if IBEX_CPU_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    s = ibex_cpu_hsum8(acc);
#else
    float acc[8] = {0};
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[k + l] * x[k + l];
    s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
#endif
    for (; k < n; k++) s += x[k] * x[k];
    return s;
}

struct rmsnorm_job {
    float *y;
    const float *x, *g;
    int n;
    float eps;
};

/* Rows [i0, i1). */
static void rmsnorm_rows(void *arg, int64_t i0, int64_t i1, int tid) {
    const struct rmsnorm_job *j = arg;
    const int n = j->n;
    for (int64_t i = i0; i < i1; i++) {
        const float *xi = j->x + i * n;
        float *yi = j->y + i * n;
        const float inv = 1.0f / sqrtf(sum_squares(xi, n) / (float)n + j->eps);
        for (int k = 0; k < n; k++) yi[k] = xi[k] * inv * j->g[k];
    }
}

static void cpu_rmsnorm(ibex_backend *be, float *y, const float *x, const float *g, int T, int n,
                        float eps) {
    struct rmsnorm_job j = {y, x, g, n, eps};
    ibex_cpu_parallel(be, rmsnorm_rows, &j, T, (double)T * n);
}

/* Pairs per stack chunk of cos/sin values. */
#define ROPE_CHUNK 64

struct rope_job {
    float *x;
    const int32_t *pos;
    int n_heads, head_dim, rope_dim, n_pairs;
    double log_base;
};

/* Tokens [i0, i1). */
static void rope_rows(void *arg, int64_t i0, int64_t i1, int tid) {
    const struct rope_job *jb = arg;
    float *x = jb->x;
    const int n_heads = jb->n_heads, head_dim = jb->head_dim, rope_dim = jb->rope_dim, n_pairs = jb->n_pairs;
    const double log_base = jb->log_base;
    for (int64_t i = i0; i < i1; i++) {
        float *xi = x + i * n_heads * head_dim;
        const int32_t *pos = jb->pos;
        const double p = (double)pos[i];
        for (int c0 = 0; c0 < n_pairs; c0 += ROPE_CHUNK) {
            const int m = n_pairs - c0 < ROPE_CHUNK ? n_pairs - c0 : ROPE_CHUNK;
            float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
            for (int j = 0; j < m; j++) {
                const double theta = p * exp(-2.0 * (double)(c0 + j) / (double)rope_dim * log_base);
                cs[j] = (float)cos(theta);
                sn[j] = (float)sin(theta);
            }
            for (int h = 0; h < n_heads; h++) {
                float *v = xi + (int64_t)h * head_dim + 2 * c0;
                for (int j = 0; j < m; j++) {
                    const float a = v[2 * j], b = v[2 * j + 1];
                    v[2 * j] = a * cs[j] - b * sn[j];
                    v[2 * j + 1] = a * sn[j] + b * cs[j];
                }
            }
        }
    }
}

static void cpu_rope(ibex_backend *be, float *x, const int32_t *pos, int T, int n_heads,
                     int head_dim, int rope_dim, float freq_base) {
    const int n_pairs = (rope_dim < head_dim ? rope_dim : head_dim) / 2;
    if (n_pairs <= 0) return;
    /* θ = pos · base^(−2i/rope_dim) = pos · e^(−2i/rope_dim · ln base), in double so large
     * positions keep their angle to float precision */
    struct rope_job j = {x, pos, n_heads, head_dim, rope_dim, n_pairs, log((double)freq_base)};
    ibex_cpu_parallel(be, rope_rows, &j, T, (double)T * n_heads * n_pairs);
}

static void softmax_row(float *x, int n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int k = 1; k < n; k++) mx = x[k] > mx ? x[k] : mx;
    int k = 0;
    float sum;
#if IBEX_CPU_AVX2
    const __m256 mv = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    for (; k + 8 <= n; k += 8) {
        __m256 e = ibex_cpu_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + k), mv));
        _mm256_storeu_ps(x + k, e);
        acc = _mm256_add_ps(acc, e);
    }
    sum = ibex_cpu_hsum8(acc);
#else
    float acc[8] = {0};
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) {
            x[k + l] = ibex_cpu_expf(x[k + l] - mx);
            acc[l] += x[k + l];
        }
    sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
#endif
    for (; k < n; k++) {
        x[k] = ibex_cpu_expf(x[k] - mx);
        sum += x[k];
    }
    const float inv = 1.0f / sum;
    for (k = 0; k < n; k++) x[k] *= inv;
}

struct rows_job {
    float *x;
    int n;
};

static void softmax_rows(void *arg, int64_t i0, int64_t i1, int tid) {
    const struct rows_job *j = arg;
    for (int64_t i = i0; i < i1; i++) softmax_row(j->x + i * j->n, j->n);
}

static void cpu_softmax(ibex_backend *be, float *x, int T, int n) {
    struct rows_job j = {x, n};
    ibex_cpu_parallel(be, softmax_rows, &j, T, (double)T * n);
}

/* y[i] = g/(1+e^−g)·u over [i0, i1). */
static void silu_mul_range(float *y, const float *gate, const float *up, int64_t i0, int64_t i1) {
    int64_t i = i0;
#if IBEX_CPU_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= i1; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = ibex_cpu_exp8(_mm256_sub_ps(zero, g));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < i1; i++) {
        const float g = gate[i];
        y[i] = g / (1.0f + ibex_cpu_expf(-g)) * up[i];
    }
}

/* Element-wise ops split into fixed 4096-element chunks when large. */
#define EW_CHUNK 4096

struct ew_job {
    float *y;
    const float *a, *b;
    int64_t n;
};

/* Chunks [c0, c1) of EW_CHUNK elements. */
static void silu_mul_chunks(void *arg, int64_t c0, int64_t c1, int tid) {
    const struct ew_job *j = arg;
    const int64_t i1 = c1 * EW_CHUNK < j->n ? c1 * EW_CHUNK : j->n;
    silu_mul_range(j->y, j->a, j->b, c0 * EW_CHUNK, i1);
}

static void cpu_silu_mul(ibex_backend *be, float *y, const float *gate, const float *up, int64_t n) {
    struct ew_job j = {y, gate, up, n};
    ibex_cpu_parallel(be, silu_mul_chunks, &j, (n + EW_CHUNK - 1) / EW_CHUNK, (double)n);
}

static void add_chunks(void *arg, int64_t c0, int64_t c1, int tid) {
    const struct ew_job *j = arg;
    const int64_t i1 = c1 * EW_CHUNK < j->n ? c1 * EW_CHUNK : j->n;
    float *y = j->y;
    const float *x = j->a;
    for (int64_t i = c0 * EW_CHUNK; i < i1; i++) y[i] += x[i];
}

/* A pass over 3 floats per element: only worth threads when large. */
static void cpu_add(ibex_backend *be, float *y, const float *x, int64_t n) {
    struct ew_job j = {y, x, NULL, n};
    ibex_cpu_parallel(be, add_chunks, &j, (n + EW_CHUNK - 1) / EW_CHUNK, (double)n / 4);
}

static void cpu_embed(ibex_backend *be, float *y, const void *table, ibex_type etype,
                      const int32_t *tokens, int T, int dim) {
    const size_t row_bytes = ibex_type_row_bytes(etype, dim);
    for (int i = 0; i < T; i++) {
        float *yi = y + (int64_t)i * dim;
        const char *row = (const char *)table + (size_t)tokens[i] * row_bytes;
        if (row_bytes == 0 || !ibex_row_to_f32(yi, row, etype, dim))
            for (int k = 0; k < dim; k++) yi[k] = NAN; /* no dequantizer: make it visible */
    }
}

/* dst[n] = src[n] rounded to type t (F32 copies; F16 and BF16 round to nearest even,
 * bit-identical to ibex_f32_to_f16 / ibex_f32_to_bf16, which the tests check). */
static void kv_store_row(void *dst, const float *src, int64_t n, ibex_type t) {
    int64_t e = 0;
    uint16_t *d = dst;
    switch (t) {
    case IBEX_TYPE_F16:
#if IBEX_CPU_AVX2
        for (; e + 8 <= n; e += 8)
            _mm_storeu_si128((__m128i *)(d + e), _mm256_cvtps_ph(_mm256_loadu_ps(src + e), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; e < n; e++) d[e] = ibex_f32_to_f16(src[e]);
        break;
    case IBEX_TYPE_BF16:
        for (; e < n; e++) d[e] = ibex_f32_to_bf16(src[e]);
        break;
    default: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

static void cpu_kv_write(ibex_backend *be, const ibex_kv_view *kv, const float *k, const float *v,
                         int T, int pos0) {
    (void)be;
    const int64_t row = (int64_t)kv->n_kv_heads * kv->head_dim;
    const int64_t bs = kv->block_size;
    const size_t esz = kv->type == IBEX_TYPE_F32 ? 4 : 2;
    for (int i = 0; i < T; i++) {
        const int64_t t = (int64_t)pos0 + i;
        const int64_t slot = kv->contiguous ? (int64_t)kv->first_block * bs + t : (int64_t)kv->block_table[t / bs] * bs + t % bs;
        const size_t dst = (size_t)(slot * row) * esz;
        kv_store_row((char *)kv->k + dst, k + (int64_t)i * row, row, kv->type);
        kv_store_row((char *)kv->v + dst, v + (int64_t)i * row, row, kv->type);
    }
}

/* The CPU computes with F32, F16 and BF16 caches (rounded on write, widened on read). */
static bool cpu_kv_type_ok(const ibex_backend *be, ibex_type t) {
    (void)be;
    return t == IBEX_TYPE_F32 || t == IBEX_TYPE_F16 || t == IBEX_TYPE_BF16;
}

static void cpu_free(ibex_backend *be) {
    ibex_cpu_ctx *ctx = be->ctx;
    if (ctx) ibex_cpu_pool_free(ctx->pool);
    free(be->ctx);
    be->ctx = NULL;
}

ibex_backend *ibex_backend_cpu_new(int n_threads) {
    ibex_backend *be = malloc(sizeof *be);
    ibex_cpu_ctx *ctx = calloc(1, sizeof *ctx); /* n_threads 0: set_threads below builds the pool */
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return NULL;
    }
    *be = (ibex_backend){
        .name = "cpu",
        .ctx = ctx,
        .set_threads = cpu_set_threads,
        .get_threads = cpu_get_threads,
        .matmul = ibex_cpu_matmul,
        .rmsnorm = cpu_rmsnorm,
        .rope = cpu_rope,
        .softmax = cpu_softmax,
        .silu_mul = cpu_silu_mul,
        .add = cpu_add,
        .embed = cpu_embed,
        .kv_write = cpu_kv_write,
        .attention = ibex_cpu_attention,
        .read_bandwidth = ibex_cpu_read_bandwidth,
        .read_stream = ibex_cpu_read_stream,
        .peak_flops = ibex_cpu_peak_flops,
        .kv_type_ok = cpu_kv_type_ok,
        .free = cpu_free,
    };
    cpu_set_threads(be, n_threads);
    return be;
}

/* Releases be and whatever its backend owns; NULL is a no-op. */
void ibex_backend_free(ibex_backend *be) {
    if (!be) return;
    if (be->free) be->free(be);
    free(be);
}
