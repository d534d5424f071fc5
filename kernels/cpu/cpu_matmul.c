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
 *     every token; the job calls it once per group, so adding a type is one table entry.
 *  6. Prefill (T >= MM_GEMM_MIN_T, F32/F16/BF16 weights) takes the packed GEMM path
 *     (gm_rows): a thread's run of rows is cut into panels of up to GM_PANEL_MAX rows
 *     (≤ GM_PANEL_BYTES, so a panel stays in L2 for every token); each panel is converted
 *     to F32 once and interleaved per quad of rows (gm_pack), then every token block of
 *     GM_TB tokens runs GM_R × GM_TB register tiles over it, K block by K block (GM_KC
 *     elements, so the block of x stays in L1 while all quads of the panel use it).
 *     Per step a tile loads GM_R weight vectors and GM_TB token vectors for GM_R·GM_TB
 *     FMAs (4 + 6 for 24 with AVX-512), against 4 + 3 plus 4 conversions for 12 in the
 *     row tiles, and no conversion at all.
 *  7. Exactness: the GEMM tile keeps one MM_VL-lane accumulator per (token, row), fed the
 *     same FMAs in the same k order as tile() — spilling it to memory between K blocks
 *     changes no bit — and finishes with tile()'s horizontal sum and scalar tail. So note
 *     3 holds across both paths: decode == prefill bit for bit, any thread count, any T
 *     (tests/test_kernels_cpu.c checks it on odd shapes).
 *  8. The GEMM path needs per-thread scratch (panel + accumulator spill, allocated per
 *     call); if that allocation fails the row tiles run instead, with the same bits.
 *  9. Decode prefetches one tile ahead in software. Each weight row is 4–11 KiB, so an
 *     8-row tile is 8 short streams, and the L2 hardware streamer starts over at every 4 KiB
 *     page; requesting the next 8 rows (contiguous after these) into L2 at the pace the
 *     current ones are read took TinyLlama F16 decode (2 threads) from 0.79–0.80 to
 *     0.85–0.86 of a stream of its own weights read between repetitions (paired roofline,
 *     two interleaved runs each; to L1 0.73–0.76, non-temporal 0.40–0.42; 4-row tiles with
 *     the same prefetch 0.80–0.83). The prefetch changes no arithmetic. */
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"

#define MM_GROUP 16 /* weight rows per parallel item (multiple of 8) */
#define MM_TBLK 48  /* tokens per cache block (multiple of 3) */
#define MM_GEMM_MIN_T 8 /* tokens from which the packed GEMM path (notes 6–8) pays for its packing */

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
IBEX_CPU_INLINE void mm_storep(float *p, mm_vec v) { _mm512_store_ps(p, v); }
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
IBEX_CPU_INLINE void mm_storep(float *p, mm_vec v) { _mm256_store_ps(p, v); }
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
 * y + j·ldy + r. R, TB and t are constants after inlining, so acc[][] lives in registers.
 * pf (decode, or NULL): the start of the R rows after these, which each step of k requests
 * into L2 as much of as the step reads of these (R·MM_VL weights), so they have arrived when
 * the next tile starts (design note 9). */
IBEX_CPU_INLINE void tile(float *y, int64_t ldy, const float *const *x, const void *const *w,
                          int n, ibex_type t, const int R, const int TB, const char *pf) {
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
        if (pf) {
            const char *q = pf + (size_t)k * R * (t == IBEX_TYPE_F32 ? 4 : 2);
            for (int l = 0; l < R * MM_VL * (t == IBEX_TYPE_F32 ? 4 : 2); l += 64) __builtin_prefetch(q + l, 0, 2);
        }
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
                /* the next 8 rows follow these in memory: request them into L2 while these
                 * stream (design note 9) */
                const char *pf = r + 16 <= n_out ? w + (size_t)(r + 8) * row_bytes : NULL;
                for (int j = tb; j < te; j++) {
                    const float *xr[1] = {x + (int64_t)j * n_in};
                    tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 8, 1, j == tb ? pf : NULL);
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
                tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 4, 3, NULL);
            }
            for (; j < te; j++) {
                const float *xr[1] = {x + (int64_t)j * n_in};
                tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 4, 1, NULL);
            }
        }
        for (; r < r1; r++) {
            const void *wr[1] = {w + (size_t)r * row_bytes};
            for (int j = tb; j < te; j++) {
                const float *xr[1] = {x + (int64_t)j * n_in};
                tile(y + (int64_t)j * n_out + r, n_out, xr, wr, n_in, t, 1, 1, NULL);
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

/* ---- prefill GEMM (design notes 6–8) ---- */

#define GM_R 4                        /* weight rows per GEMM tile */
#define GM_TB (MM_VL == 16 ? 6 : 3)   /* tokens per GEMM tile: GM_R·GM_TB accumulators + GM_R
                                         weight vectors fit the 32 (16) vector registers */
#define GM_KC 512                     /* elements of k per cache block: GM_TB token rows of it
                                         (12 KiB) stay in L1 while every quad of a panel uses them */
/* Packed F32 panel per thread: stays in L2 (2 MiB a core here) across all tokens. Every
 * panel streams all T token rows of x once, so larger panels cut that traffic: for the
 * FFN down projection (n_in 5632) 1 MiB panels (44 rows) ran ~15 % faster at one thread
 * than 384 KiB ones (16 rows), interleaved opbench runs on a loaded machine. */
#define GM_PANEL_BYTES (1 << 20)
#define GM_PANEL_MAX 64               /* rows per panel at most */

/* Rows per panel for n_in (a multiple of GM_R, at least GM_R). */
static int gm_panel_rows(int n_in) {
    const int nv = n_in - n_in % MM_VL;
    int p = nv > 0 ? (int)(GM_PANEL_BYTES / ((size_t)nv * sizeof(float))) : GM_PANEL_MAX;
    p = p > GM_PANEL_MAX ? GM_PANEL_MAX : p;
    p -= p % GM_R;
    return p < GM_R ? GM_R : p;
}

/* Floats of per-thread scratch the GEMM path needs for n_in: the panel plus the
 * accumulator spill of every quad of it (kept 64-byte aligned by the caller). */
static size_t gm_scratch_floats(int n_in) {
    const int nv = n_in - n_in % MM_VL, p = gm_panel_rows(n_in);
    return (size_t)p * (size_t)nv + (size_t)(p / GM_R) * GM_TB * GM_R * MM_VL;
}

/* Packs rows [r0, r0 + 4·nq) of W, elements [0, nv), as F32 interleaved per quad:
 * p[q][k / VL][r][VL], so a tile reads its four weight vectors of a step from one line
 * pair and the F16/BF16 conversion happens once per panel, not once per token tile. */
IBEX_CPU_INLINE void gm_pack(float *p, const char *w, size_t rb, ibex_type t, int r0, int nq, int nv) {
    const int ns = nv / MM_VL;
    for (int q = 0; q < nq; q++)
        for (int r = 0; r < GM_R; r++) {
            const void *wr = w + (size_t)(r0 + q * GM_R + r) * rb;
            float *dst = p + (size_t)q * ns * GM_R * MM_VL + (size_t)r * MM_VL;
            for (int s = 0; s < ns; s++) mm_storep(dst + (size_t)s * GM_R * MM_VL, mm_loadw(wr, (int64_t)s * MM_VL, t));
        }
}

/* One quad × TB tokens over ns vector steps: acc[j][r] (spilled to a[] between K blocks)
 * += W[r][k] · x[j][k], lane by lane in k order: the same FMA sequence per lane as
 * tile(), hence the same bits. */
IBEX_CPU_INLINE void gm_tile(float *a, const float *p, const float *const *x, int ns, bool first, const int TB) {
    mm_vec acc[GM_TB][GM_R];
#pragma GCC unroll 6
    for (int j = 0; j < TB; j++)
#pragma GCC unroll 4
        for (int r = 0; r < GM_R; r++)
            acc[j][r] = first ? mm_zero() : mm_loadx(a + (j * GM_R + r) * MM_VL);
    for (int s = 0; s < ns; s++) {
        mm_vec wv[GM_R];
#pragma GCC unroll 4
        for (int r = 0; r < GM_R; r++) wv[r] = mm_loadx(p + (s * GM_R + r) * MM_VL);
#pragma GCC unroll 6
        for (int j = 0; j < TB; j++) {
            const mm_vec xv = mm_loadx(x[j] + s * MM_VL);
#pragma GCC unroll 4
            for (int r = 0; r < GM_R; r++) acc[j][r] = mm_fma(wv[r], xv, acc[j][r]);
        }
    }
#pragma GCC unroll 6
    for (int j = 0; j < TB; j++)
#pragma GCC unroll 4
        for (int r = 0; r < GM_R; r++) mm_storep(a + (j * GM_R + r) * MM_VL, acc[j][r]);
}

static void gm_tile_n(float *a, const float *p, const float *const *x, int ns, bool first, int tn) {
    switch (tn) {
    case 1: gm_tile(a, p, x, ns, first, 1); break;
    case 2: gm_tile(a, p, x, ns, first, 2); break;
    case 3: gm_tile(a, p, x, ns, first, 3); break;
#if GM_TB > 3
    case 4: gm_tile(a, p, x, ns, first, 4); break;
    case 5: gm_tile(a, p, x, ns, first, 5); break;
    case 6: gm_tile(a, p, x, ns, first, 6); break;
#endif
    default: break;
    }
}

/* Rows [r0, r1) of y for tokens [0, T) through packed panels (design notes 6–8); scratch
 * holds gm_scratch_floats(n_in) floats, 64-byte aligned. */
IBEX_CPU_INLINE void gm_rows(float *y, const float *x, const char *w, size_t rb, ibex_type t, int T, int n_in,
                             int n_out, int r0, int r1, float *scratch) {
    const int nv = n_in - n_in % MM_VL, ns_all = nv / MM_VL, P = gm_panel_rows(n_in);
    float *acc = scratch + (size_t)P * (size_t)nv;
    for (int p0 = r0; p0 < r1; p0 += P) {
        const int pe = r1 - p0 < P ? r1 : p0 + P, nq = (pe - p0) / GM_R;
        int qe = p0 + nq * GM_R;
        if (nq > 0 && nv > 0) {
            gm_pack(scratch, w, rb, t, p0, nq, nv);
            for (int tb = 0; tb < T; tb += GM_TB) {
                const int tn = T - tb < GM_TB ? T - tb : GM_TB;
                const float *xr[GM_TB];
                for (int j = 0; j < tn; j++) xr[j] = x + (int64_t)(tb + j) * n_in;
                for (int k0 = 0; k0 < nv; k0 += GM_KC) {
                    const int ns = (nv - k0 < GM_KC ? nv - k0 : GM_KC) / MM_VL;
                    const float *xk[GM_TB];
                    for (int j = 0; j < tn; j++) xk[j] = xr[j] + k0;
                    for (int q = 0; q < nq; q++)
                        gm_tile_n(acc + (size_t)q * GM_TB * GM_R * MM_VL,
                                  scratch + ((size_t)q * ns_all + (size_t)(k0 / MM_VL)) * GM_R * MM_VL, xk, ns,
                                  k0 == 0, tn);
                }
                for (int q = 0; q < nq; q++)
                    for (int j = 0; j < tn; j++)
                        for (int r = 0; r < GM_R; r++) { /* tile()'s epilogue: hsum, then the scalar tail */
                            const int row = p0 + q * GM_R + r;
                            const void *wr = w + (size_t)row * rb;
                            float s = mm_hsum(mm_loadx(acc + (((size_t)q * GM_TB + j) * GM_R + r) * MM_VL)),
                                  tail = 0.0f;
                            for (int k = nv; k < n_in; k++) tail = fmaf(ld1(wr, k, t), xr[j][k], tail);
                            y[(int64_t)(tb + j) * n_out + row] = s + tail;
                        }
            }
        } else {
            qe = p0;
        }
        for (int r = qe; r < pe; r++) { /* rows left over from the quads, and n_in < VL */
            const void *wr[1] = {w + (size_t)r * rb};
            for (int j = 0; j < T; j++) {
                const float *xj[1] = {x + (int64_t)j * n_in};
                tile(y + (int64_t)j * n_out + r, n_out, xj, wr, n_in, t, 1, 1, NULL);
            }
        }
    }
}

static void gm_rows_f32(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out, int r0,
                        int r1, float *scratch) {
    gm_rows(y, x, w, rb, IBEX_TYPE_F32, T, n_in, n_out, r0, r1, scratch);
}
static void gm_rows_f16(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out, int r0,
                        int r1, float *scratch) {
    gm_rows(y, x, w, rb, IBEX_TYPE_F16, T, n_in, n_out, r0, r1, scratch);
}
static void gm_rows_bf16(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out, int r0,
                         int r1, float *scratch) {
    gm_rows(y, x, w, rb, IBEX_TYPE_BF16, T, n_in, n_out, r0, r1, scratch);
}

static float dot_f32(const float *a, const float *b, int n) {
    const float *xr[1] = {b};
    const void *wr[1] = {a};
    float y;
    tile(&y, 1, xr, wr, n, IBEX_TYPE_F32, 1, 1, NULL);
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
#if IBEX_CPU_AVX2
typedef void (*gm_rows_fn)(float *y, const float *x, const char *w, size_t row_bytes, int T, int n_in, int n_out,
                           int r0, int r1, float *scratch);
#endif

struct mm_job {
    float *y;
    const float *x;
    const char *w;
    size_t row_bytes;
    ibex_type wtype;
    int T, n_in, n_out;
    mm_rows_fn fast;
    float *bufs; /* generic path: one n_in-float row buffer per thread, NULL if none */
#if IBEX_CPU_AVX2
    gm_rows_fn gemm;   /* prefill path (T >= MM_GEMM_MIN_T), NULL if not taken */
    size_t gm_stride;  /* floats of scratch per thread in bufs */
#endif
};

#if IBEX_CPU_AVX2
/* Groups [g0, g1) of MM_GROUP rows, through the type's rows function (or the GEMM path,
 * which takes the whole run of rows at once so its panels can span several groups). */
static void mm_groups_fast(void *arg, int64_t g0, int64_t g1, int tid) {
    const struct mm_job *j = arg;
    if (j->gemm) {
        const int r0 = (int)g0 * MM_GROUP, r1 = (int)g1 * MM_GROUP < j->n_out ? (int)g1 * MM_GROUP : j->n_out;
        j->gemm(j->y, j->x, j->w, j->row_bytes, j->T, j->n_in, j->n_out, r0, r1, j->bufs + (size_t)tid * j->gm_stride);
        return;
    }
    for (int64_t g = g0; g < g1; g++) {
        const int r0 = (int)g * MM_GROUP, r1 = r0 + MM_GROUP < j->n_out ? r0 + MM_GROUP : j->n_out;
        j->fast(j->y, j->x, j->w, j->row_bytes, j->T, j->n_in, j->n_out, r0, r1);
    }
}
#endif

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
    struct mm_job j = {.y = y, .x = x, .w = w, .row_bytes = row_bytes, .wtype = wtype, .T = T, .n_in = n_in,
                       .n_out = n_out};
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
        j.gemm = T < MM_GEMM_MIN_T || n_in < MM_VL ? NULL
                 : wtype == IBEX_TYPE_F32 ? gm_rows_f32
                 : wtype == IBEX_TYPE_F16 ? gm_rows_f16
                 : wtype == IBEX_TYPE_BF16 ? gm_rows_bf16
                                           : NULL;
        if (j.gemm) { /* per-thread panels; without memory the row tiles give the same bits */
            j.gm_stride = (gm_scratch_floats(n_in) + 15) & ~(size_t)15;
            j.bufs = aligned_alloc(64, (size_t)ibex_cpu_threads(be) * j.gm_stride * sizeof(float));
            if (!j.bufs) j.gemm = NULL;
        }
        ibex_cpu_parallel(be, mm_groups_fast, &j, n_groups, work);
        free(j.bufs);
        return;
    }
#endif
    j.bufs = malloc((size_t)ibex_cpu_threads(be) * (size_t)(n_in > 0 ? n_in : 1) * sizeof(float));
    ibex_cpu_parallel(be, mm_groups_buffered, &j, n_groups, work);
    free(j.bufs);
}
