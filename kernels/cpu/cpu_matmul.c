/* cpu_matmul.c — the CPU matmul y[T][n_out] = x[T][n_in] · Wᵀ for F32, F16 and BF16
 * weight rows (and, slowly, any type ibex_row_to_f32 can dequantize).
 *
 * Design notes:
 *  1. Work is split over groups of MM_GROUP weight rows; each group is one item of a job on
 *     the backend's worker pool (cpu_pool.c), which hands out contiguous runs of groups.
 *  2. Inside a group, tokens are taken in blocks of MM_TBLK (so the block of x stays in L2)
 *     and each block is covered by register tiles: 4 rows × 3 tokens (prefill), 8 rows ×
 *     1 token (decode, enough FMA chains to stay memory-bound), then 4×1 and 1×1 tails.
 *     A weight vector is loaded and converted once per tile and used for every token of it.
 *  3. Every tile computes each y[t][r] the same way: one vector accumulator (MM_VL lanes)
 *     over the full vectors of the row in order, a fixed horizontal sum, plus a scalar tail
 *     in order. So y does not depend on T, on the tiling or on the thread count (decode ==
 *     prefill bit for bit); it does depend on the build (AVX-512, AVX2 or portable).
 *  4. The portable build converts one weight row to F32 into a per-thread buffer and runs
 *     plain 8-lane dot products against every token (gcc vectorises those loops).
 *  5. A weight type's kernel is a "rows" function (mm_rows_fn) computing rows [r0, r1) for
 *     every token; the job calls it once per group, so adding a type is one table entry. */
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"

#define MM_GROUP 16 /* weight rows per parallel item (multiple of 8) */
#define MM_TBLK 48  /* tokens per cache block (multiple of 3) */

static void fill_nan(float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = NAN;
}

#if IBEX_CPU_AVX2

/* The tile's vector: 16 lanes where AVX-512F is compiled in (half the instructions per
 * weight, which is what limits F16 decode on one core), else 8. */
#if defined(__AVX512F__)
#define MM_VL 16
typedef __m512 mm_vec;
IBEX_CPU_INLINE mm_vec mm_zero(void) { return _mm512_setzero_ps(); }
IBEX_CPU_INLINE mm_vec mm_loadx(const float *p) { return _mm512_loadu_ps(p); }
IBEX_CPU_INLINE mm_vec mm_fma(mm_vec a, mm_vec b, mm_vec c) { return _mm512_fmadd_ps(a, b, c); }
IBEX_CPU_INLINE float mm_hsum(mm_vec v) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return ibex_cpu_hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}
/* MM_VL weights from element i of a row; t is a constant after inlining. */
IBEX_CPU_INLINE mm_vec mm_loadw(const void *w, int64_t i, ibex_type t) {
    switch (t) {
    case IBEX_TYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
    case IBEX_TYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i))),
            16));
    default: return _mm512_loadu_ps((const float *)w + i);
    }
}
#else
#define MM_VL 8
typedef __m256 mm_vec;
IBEX_CPU_INLINE mm_vec mm_zero(void) { return _mm256_setzero_ps(); }
IBEX_CPU_INLINE mm_vec mm_loadx(const float *p) { return _mm256_loadu_ps(p); }
IBEX_CPU_INLINE mm_vec mm_fma(mm_vec a, mm_vec b, mm_vec c) { return _mm256_fmadd_ps(a, b, c); }
IBEX_CPU_INLINE float mm_hsum(mm_vec v) { return ibex_cpu_hsum8(v); }
IBEX_CPU_INLINE mm_vec mm_loadw(const void *w, int64_t i, ibex_type t) {
    switch (t) {
    case IBEX_TYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    case IBEX_TYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i))),
            16));
    default: return _mm256_loadu_ps((const float *)w + i);
    }
}
#endif

IBEX_CPU_INLINE float ld1(const void *w, int64_t i, ibex_type t) {
    switch (t) {
    case IBEX_TYPE_F16: return _cvtsh_ss(((const uint16_t *)w)[i]);
    case IBEX_TYPE_BF16: return ibex_cpu_bf16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

/* R rows × TB tokens. w[r] are row pointers, x[j] token rows, y[j][r] written at
 * y + j·ldy + r. R, TB and t are constants after inlining, so acc[][] lives in registers. */
IBEX_CPU_INLINE void tile(float *y, int64_t ldy, const float *const *x, const void *const *w,
                          int n, ibex_type t, const int R, const int TB) {
    mm_vec acc[8][3];
    const int nv = n - n % MM_VL;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int j = 0; j < TB; j++) acc[r][j] = mm_zero();
    for (int k = 0; k < nv; k += MM_VL) {
        mm_vec xv[3];
#pragma GCC unroll 3
        for (int j = 0; j < TB; j++) xv[j] = mm_loadx(x[j] + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            mm_vec wv = mm_loadw(w[r], k, t);
#pragma GCC unroll 3
            for (int j = 0; j < TB; j++) acc[r][j] = mm_fma(wv, xv[j], acc[r][j]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int j = 0; j < TB; j++) {
            float s = mm_hsum(acc[r][j]), tail = 0.0f;
            for (int k = nv; k < n; k++) tail = fmaf(ld1(w[r], k, t), x[j][k], tail);
            y[j * ldy + r] = s + tail;
        }
}

/* Rows [r0, r1) of y for tokens [0, T) (design notes 2–3). */
IBEX_CPU_INLINE void mm_rows(float *y, const float *x, const char *w, size_t row_bytes,
                             ibex_type t, int T, int n_in, int n_out, int r0, int r1) {
    for (int tb = 0; tb < T; tb += MM_TBLK) {
        const int te = T - tb < MM_TBLK ? T : tb + MM_TBLK;
        int r = r0;
        if (te - tb < 3) { /* decode: 8 rows per tile for 8 independent FMA chains */
            for (; r + 8 <= r1; r += 8) {
                const void *wr[8];
                for (int i = 0; i < 8; i++) wr[i] = w + (size_t)(r + i) * row_bytes;
                for (int j = tb; j < te; j++) {
                    const float *xr[1] = {x + (int64_t)j * n_in};
                    tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 8, 1);
                }
            }
        }
        for (; r + 4 <= r1; r += 4) {
            const void *wr[4];
            for (int i = 0; i < 4; i++) wr[i] = w + (size_t)(r + i) * row_bytes;
            int j = tb;
            for (; j + 3 <= te; j += 3) {
                const float *xr[3] = {x + (int64_t)j * n_in, x + (int64_t)(j + 1) * n_in,
                                      x + (int64_t)(j + 2) * n_in};
                tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 4, 3);
            }
            for (; j < te; j++) {
                const float *xr[1] = {x + (int64_t)j * n_in};
                tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 4, 1);
            }
        }
        for (; r < r1; r++) {
            const void *wr[1] = {w + (size_t)r * row_bytes};
            for (int j = tb; j < te; j++) {
                const float *xr[1] = {x + (int64_t)j * n_in};
                tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 1, 1);
            }
        }
    }
}

static void mm_rows_f32(float *y, const float *x, const char *w, size_t rb, int T, int n_in,
                        int n_out, int r0, int r1) {
    mm_rows(y, x, w, rb, IBEX_TYPE_F32, T, n_in, n_out, r0, r1);
}
static void mm_rows_f16(float *y, const float *x, const char *w, size_t rb, int T, int n_in,
                        int n_out, int r0, int r1) {
    mm_rows(y, x, w, rb, IBEX_TYPE_F16, T, n_in, n_out, r0, r1);
}
static void mm_rows_bf16(float *y, const float *x, const char *w, size_t rb, int T, int n_in,
                         int n_out, int r0, int r1) {
    mm_rows(y, x, w, rb, IBEX_TYPE_BF16, T, n_in, n_out, r0, r1);
}

static float dot_f32(const float *a, const float *b, int n) {
    const float *xr[1] = {b};
    const void *wr[1] = {a};
    float y;
    tile(&y, 1, xr, wr, n, IBEX_TYPE_F32, 1, 1);
    return y;
}

#else /* portable */

static float dot_f32(const float *a, const float *b, int n) {
    float acc[8] = {0};
    const int n8 = n & ~7;
    for (int k = 0; k < n8; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[k + l] * b[k + l];
    float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    float tail = 0.0f;
    for (int k = n8; k < n; k++) tail += a[k] * b[k];
    return s + tail;
}

#endif

/* Row to F32: the fast branch-free converters for F16/BF16, dtype.c for the rest. */
static bool row_to_f32(float *dst, const void *src, ibex_type t, int n) {
    if (t == IBEX_TYPE_F16) {
        const uint16_t *s = src;
        for (int i = 0; i < n; i++) dst[i] = ibex_cpu_f16_to_f32(s[i]);
        return true;
    }
    if (t == IBEX_TYPE_BF16) {
        const uint16_t *s = src;
        for (int i = 0; i < n; i++) dst[i] = ibex_cpu_bf16_to_f32(s[i]);
        return true;
    }
    return ibex_row_to_f32(dst, src, t, n);
}

/* Rows [r0, r1) by converting each weight row once into buf (design note 4). */
static void mm_rows_buffered(float *y, const float *x, const char *w, size_t row_bytes,
                             ibex_type t, int T, int n_in, int n_out, int r0, int r1, float *buf) {
    for (int r = r0; r < r1; r++) {
        const float *wr = (const float *)(const void *)(w + (size_t)r * row_bytes);
        if (t != IBEX_TYPE_F32) {
            if (!row_to_f32(buf, w + (size_t)r * row_bytes, t, n_in)) {
                for (int j = 0; j < T; j++) y[(int64_t)j * n_out + r] = NAN;
                continue;
            }
            wr = buf;
        }
        for (int j = 0; j < T; j++) y[(int64_t)j * n_out + r] = dot_f32(wr, x + (int64_t)j * n_in, n_in);
    }
}

/* Rows [r0, r1) of y for tokens [0, T) from weight rows of row_bytes bytes (design note 5). */
typedef void (*mm_rows_fn)(float *y, const float *x, const char *w, size_t row_bytes, int T, int n_in,
                           int n_out, int r0, int r1);

struct mm_job {
    float *y;
    const float *x;
    const char *w;
    size_t row_bytes;
    ibex_type wtype;
    int T, n_in, n_out;
    mm_rows_fn fast;
    float *bufs; /* generic path: one n_in-float row buffer per thread, NULL if none */
};

/* Groups [g0, g1) of MM_GROUP rows, through the type's rows function. */
static void mm_groups_fast(void *arg, int64_t g0, int64_t g1, int tid) {
    const struct mm_job *j = arg;
    for (int64_t g = g0; g < g1; g++) {
        const int r0 = (int)g * MM_GROUP, r1 = r0 + MM_GROUP < j->n_out ? r0 + MM_GROUP : j->n_out;
        j->fast(j->y, j->x, j->w, j->row_bytes, j->T, j->n_in, j->n_out, r0, r1);
    }
}

/* Groups [g0, g1) by converting rows into thread tid's buffer (design note 4). */
static void mm_groups_buffered(void *arg, int64_t g0, int64_t g1, int tid) {
    const struct mm_job *j = arg;
    const int T = j->T, n_out = j->n_out;
    for (int64_t g = g0; g < g1; g++) {
        const int r0 = (int)g * MM_GROUP, r1 = r0 + MM_GROUP < n_out ? r0 + MM_GROUP : n_out;
        if (j->wtype == IBEX_TYPE_Q8_0 || j->wtype == IBEX_TYPE_Q4_0) { /* cpu_matmul_q.c */
            ibex_cpu_mm_rows_q(j->wtype, j->y, j->x, j->w, j->row_bytes, T, j->n_in, n_out, r0, r1);
            continue;
        }
        if (!j->bufs) {
            for (int t = 0; t < T; t++)
                for (int r = r0; r < r1; r++) j->y[(int64_t)t * n_out + r] = NAN;
            continue;
        }
        mm_rows_buffered(j->y, j->x, j->w, j->row_bytes, j->wtype, T, j->n_in, n_out, r0, r1,
                         j->bufs + (size_t)tid * (size_t)(j->n_in > 0 ? j->n_in : 1));
    }
}

void ibex_cpu_matmul(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wtype,
                     int T, int n_in, int n_out) {
    if (T <= 0 || n_out <= 0) return;
    const size_t row_bytes = ibex_type_row_bytes(wtype, n_in);
    if (row_bytes == 0 && n_in > 0) { /* not a computable shape: make it visible */
        fill_nan(y, (int64_t)T * n_out);
        return;
    }
    const int n_groups = (n_out + MM_GROUP - 1) / MM_GROUP;
    const double work = (double)T * n_in * n_out;
    struct mm_job j = {y, x, w, row_bytes, wtype, T, n_in, n_out, NULL, NULL};
#if IBEX_CPU_AVX2
    void (*fast)(float *, const float *, const char *, size_t, int, int, int, int, int) =
        wtype == IBEX_TYPE_F32    ? mm_rows_f32
        : wtype == IBEX_TYPE_F16  ? mm_rows_f16
        : wtype == IBEX_TYPE_BF16 ? mm_rows_bf16
        : wtype == IBEX_TYPE_Q8_0 ? ibex_cpu_mm_rows_q8_0
        : wtype == IBEX_TYPE_Q4_0 ? ibex_cpu_mm_rows_q4_0
                                  : NULL;
    if (fast) {
        j.fast = fast;
        ibex_cpu_parallel(be, mm_groups_fast, &j, n_groups, work);
        return;
    }
#endif
    j.bufs = malloc((size_t)ibex_cpu_threads(be) * (size_t)(n_in > 0 ? n_in : 1) * sizeof(float));
    ibex_cpu_parallel(be, mm_groups_buffered, &j, n_groups, work);
    free(j.bufs);
}
