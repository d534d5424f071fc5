/* cpu_matmul_q.c — the CPU matmul y[T][n_out] = x[T][n_in] · Wᵀ for GGUF's Q8_0 and Q4_0
 * weight rows (ggml's block formats: 32 weights per block, an F16 scale d and 8-bit or
 * 4-bit quants). ibex_cpu_matmul (cpu_matmul.c) calls the row-group functions below from
 * its `fast` table, for decode (T = 1) and prefill (T > 1) alike.
 *
 * Numerics (chosen, not inherited):
 *  1. The activations are quantized too, as llama.cpp's CPU backend does: each token's
 *     row of x is cut into blocks of 32, d_x = max|x| / 127 (kept in F32, where llama.cpp
 *     rounds it to F16), q_x = nearest-even(x / d_x). Each block product is then an exact
 *     int32 Σ q_w·q_x, scaled by d_w·d_x into F32 accumulators. Why: decode must stream
 *     weight bytes at memory speed, and the float route (dequantize each block, FMA with
 *     F32 x) costs as many instructions per weight as F16 does (convert + FMA per 8
 *     weights), so on one core it is no faster than F16 although it reads half the bytes;
 *     the integer route does 32 weights in ~6 instructions (pmaddubsw/pmaddwd, or one
 *     vpdpbusd on VNNI machines). The price is the activation rounding: relative error
 *     ≤ 1/254 of the block's largest |x| per element, which the tests bound explicitly
 *     (tests/test_quant.c) and which moves logits by well under 1 % (tests/gguf_quant.py).
 *  2. Every y[t][r] is computed the same way whatever the tile, T or thread count: 8 int32
 *     lanes per block (lane k sums elements 4k..4k+3), each lane accumulated in F32 by an
 *     FMA with d_w·d_x in block order, then ibex_cpu_hsum8's fixed horizontal sum. So
 *     decode == prefill bit for bit, and the portable path below computes exactly the
 *     same numbers as the AVX2 one where the compiler has FMA (the tests check both).
 *  3. The activations are quantized per row group (16 rows, cpu_matmul.c), not once per
 *     matmul, because a group function only sees the F32 x. It costs about one
 *     instruction per activation element per group, i.e. ~1/16 of the dot products;
 *     cheaper than any cache keyed on a buffer address that the next step reuses.
 *  4. Tiles: 4 rows × 1 token for decode (4 independent accumulator chains), 4 rows ×
 *     2 tokens for prefill (each weight block is unpacked once for both tokens), and
 *     1-row / 1-token tails; tokens are quantized in chunks of Q_TCHUNK so the chunk's
 *     quants stay in L1/L2 while the group's rows are streamed. */
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"

#define Q_BLK 32          /* elements per block, both formats */
#define Q_TCHUNK 16       /* tokens quantized at a time */
#define Q_STACK_BYTES 16384 /* activation quants that fit the stack buffer */

/* Bytes per weight block of t. */
IBEX_CPU_INLINE int q_block_bytes(ibex_type t) { return t == IBEX_TYPE_Q8_0 ? 34 : 18; }

IBEX_CPU_INLINE float q_scale(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return ibex_cpu_f16_to_f32(h);
}

/* ---- activation quantization (numerics note 1): identical in both paths ---- */

static void quantize_x_portable(int8_t *q, float *d, const float *x, int n) {
    for (int b = 0; b < n / Q_BLK; b++) {
        const float *xb = x + b * Q_BLK;
        float amax = 0.0f;
        for (int i = 0; i < Q_BLK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        for (int i = 0; i < Q_BLK; i++) q[b * Q_BLK + i] = (int8_t)nearbyintf(xb[i] * id);
    }
}

/* Lane k of a block's int32 dot product sums elements 4k..4k+3 (numerics note 2). */
static inline void lanes_dot(int32_t s[8], const int8_t *w, const int8_t *x) {
    for (int k = 0; k < 8; k++) {
        int32_t a = 0;
        for (int i = 4 * k; i < 4 * k + 4; i++) a += (int32_t)w[i] * x[i];
        s[k] = a;
    }
}

/* One weight block as 32 signed quants in element order. */
static inline void unpack_block(int8_t wq[Q_BLK], const uint8_t *blk, ibex_type t) {
    if (t == IBEX_TYPE_Q8_0) {
        memcpy(wq, blk + 2, Q_BLK);
    } else {
        for (int j = 0; j < 16; j++) {
            wq[j] = (int8_t)((blk[2 + j] & 0x0f) - 8);
            wq[j + 16] = (int8_t)((blk[2 + j] >> 4) - 8);
        }
    }
}

static inline float lane_fma(float dd, int32_t s, float acc) {
#ifdef __FMA__
    return fmaf(dd, (float)s, acc); /* the AVX2 path's vfmadd, so both paths agree bit for bit */
#else
    return acc + dd * (float)s;
#endif
}

/* The portable row-group function: one row × one token at a time. */
static void mm_rows_q_portable(float *y, const float *x, const char *w, size_t rb, ibex_type t, int T, int n_in,
                               int n_out, int r0, int r1, int8_t *xq, float *xd) {
    const int nb = n_in / Q_BLK, bs = q_block_bytes(t);
    for (int t0 = 0; t0 < T; t0 += Q_TCHUNK) {
        const int tc = T - t0 < Q_TCHUNK ? T - t0 : Q_TCHUNK;
        for (int j = 0; j < tc; j++)
            quantize_x_portable(xq + (int64_t)j * n_in, xd + (int64_t)j * nb, x + (int64_t)(t0 + j) * n_in, n_in);
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
            for (int j = 0; j < tc; j++) {
                float acc[8] = {0};
                for (int b = 0; b < nb; b++) {
                    int8_t wq[Q_BLK];
                    int32_t s[8];
                    unpack_block(wq, row + (size_t)b * bs, t);
                    lanes_dot(s, wq, xq + (int64_t)j * n_in + b * Q_BLK);
                    const float dd = q_scale(row + (size_t)b * bs) * xd[(int64_t)j * nb + b];
                    for (int k = 0; k < 8; k++) acc[k] = lane_fma(dd, s[k], acc[k]);
                }
                /* ibex_cpu_hsum8's order */
                y[(int64_t)(t0 + j) * n_out + r] =
                    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
            }
        }
    }
}

#if IBEX_CPU_AVX2

static void quantize_x_avx2(int8_t *q, float *d, const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < n / Q_BLK; b++) {
        const float *xb = x + b * Q_BLK;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
               v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        const __m256 vid = _mm256_set1_ps(id);
        /* cvtps rounds to nearest even under the default MXCSR, as nearbyintf does */
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid)),
                i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        /* packs work per 128-bit lane: the final permute restores element order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * Q_BLK), p);
    }
}

/* 32 signed weight quants of a block, in element order. */
IBEX_CPU_INLINE __m256i q_loadw(const uint8_t *blk, ibex_type t) {
    if (t == IBEX_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    const __m128i v = _mm_loadu_si128((const __m128i *)(blk + 2));
    const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* 8 int32 lanes, lane k = Σ aw[i]·sx[i] over i in 4k..4k+3; aw unsigned (|w|), sx signed
 * (x with w's sign). |w| ≤ 128 and |x| ≤ 127 keep pmaddubsw's int16 pairs from saturating. */
IBEX_CPU_INLINE __m256i q_dot(__m256i aw, __m256i sx) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}

/* R rows × TB tokens over nb blocks; y[j][r] at y + j·ldy + r. R, TB and t are constants
 * after inlining, so acc[][] stays in registers. */
IBEX_CPU_INLINE void qtile(float *y, int64_t ldy, const int8_t *const *xq, const float *const *xd,
                           const uint8_t *const *w, int nb, ibex_type t, const int R, const int TB) {
    const int bs = q_block_bytes(t);
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < TB; j++) acc[r][j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i xv[2];
        float dx[2];
#pragma GCC unroll 2
        for (int j = 0; j < TB; j++) {
            xv[j] = _mm256_loadu_si256((const __m256i *)(xq[j] + b * Q_BLK));
            dx[j] = xd[j][b];
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w[r] + (size_t)b * bs;
            const __m256i wv = q_loadw(blk, t);
            const __m256i aw = _mm256_sign_epi8(wv, wv);
            const float dw = q_scale(blk);
#pragma GCC unroll 2
            for (int j = 0; j < TB; j++) {
                const __m256i p = q_dot(aw, _mm256_sign_epi8(xv[j], wv));
                acc[r][j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[j]), _mm256_cvtepi32_ps(p), acc[r][j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < TB; j++) y[j * ldy + r] = ibex_cpu_hsum8(acc[r][j]);
}

IBEX_CPU_INLINE void mm_rows_q_avx2(float *y, const float *x, const char *w, size_t rb, ibex_type t, int T,
                                    int n_in, int n_out, int r0, int r1, int8_t *xq, float *xd) {
    const int nb = n_in / Q_BLK;
    for (int t0 = 0; t0 < T; t0 += Q_TCHUNK) {
        const int tc = T - t0 < Q_TCHUNK ? T - t0 : Q_TCHUNK;
        for (int j = 0; j < tc; j++)
            quantize_x_avx2(xq + (int64_t)j * n_in, xd + (int64_t)j * nb, x + (int64_t)(t0 + j) * n_in, n_in);
        float *yc = y + (int64_t)t0 * n_out;
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            const uint8_t *wr[4];
            for (int i = 0; i < 4; i++) wr[i] = (const uint8_t *)w + (size_t)(r + i) * rb;
            int j = 0;
            for (; j + 2 <= tc; j += 2) {
                const int8_t *xr[2] = {xq + (int64_t)j * n_in, xq + (int64_t)(j + 1) * n_in};
                const float *dr[2] = {xd + (int64_t)j * nb, xd + (int64_t)(j + 1) * nb};
                qtile(yc + (int64_t)j * n_out + r, n_out, xr, dr, wr, nb, t, 4, 2);
            }
            for (; j < tc; j++) {
                const int8_t *xr[1] = {xq + (int64_t)j * n_in};
                const float *dr[1] = {xd + (int64_t)j * nb};
                qtile(yc + (int64_t)j * n_out + r, n_out, xr, dr, wr, nb, t, 4, 1);
            }
        }
        for (; r < r1; r++) {
            const uint8_t *wr[1] = {(const uint8_t *)w + (size_t)r * rb};
            for (int j = 0; j < tc; j++) {
                const int8_t *xr[1] = {xq + (int64_t)j * n_in};
                const float *dr[1] = {xd + (int64_t)j * nb};
                qtile(yc + (int64_t)j * n_out + r, n_out, xr, dr, wr, nb, t, 1, 1);
            }
        }
    }
}

#endif /* IBEX_CPU_AVX2 */

/* Scratch for a chunk's activation quants: the stack for decode-sized rows, else the
 * heap. Returns false (y rows set to NaN by the caller) only when malloc fails. */
typedef struct q_scratch {
    _Alignas(32) int8_t q[Q_STACK_BYTES];
    float d[Q_STACK_BYTES / Q_BLK];
    int8_t *hq;
    float *hd;
} q_scratch;

static bool scratch_get(q_scratch *s, int T, int n_in, int8_t **xq, float **xd) {
    const int tc = T < Q_TCHUNK ? T : Q_TCHUNK;
    const size_t n = (size_t)tc * (size_t)n_in;
    s->hq = NULL, s->hd = NULL;
    if (n <= Q_STACK_BYTES) {
        *xq = s->q, *xd = s->d;
        return true;
    }
    s->hq = malloc(n);
    s->hd = malloc(n / Q_BLK * sizeof(float));
    *xq = s->hq, *xd = s->hd;
    return s->hq && s->hd;
}

static void scratch_free(q_scratch *s) { free(s->hq), free(s->hd); }

static void rows_nan(float *y, int T, int n_out, int r0, int r1) {
    for (int j = 0; j < T; j++)
        for (int r = r0; r < r1; r++) y[(int64_t)j * n_out + r] = NAN;
}

static void mm_rows_q(float *y, const float *x, const char *w, size_t rb, ibex_type t, int T, int n_in, int n_out,
                      int r0, int r1, bool portable) {
    if (n_in % Q_BLK != 0 || rb != (size_t)(n_in / Q_BLK) * (size_t)q_block_bytes(t)) {
        rows_nan(y, T, n_out, r0, r1);
        return;
    }
    q_scratch s;
    int8_t *xq;
    float *xd;
    if (!scratch_get(&s, T, n_in, &xq, &xd)) {
        rows_nan(y, T, n_out, r0, r1);
    } else {
#if IBEX_CPU_AVX2
        if (!portable)
            mm_rows_q_avx2(y, x, w, rb, t, T, n_in, n_out, r0, r1, xq, xd);
        else
#endif
            mm_rows_q_portable(y, x, w, rb, t, T, n_in, n_out, r0, r1, xq, xd);
    }
    (void)portable;
    scratch_free(&s);
}

void ibex_cpu_mm_rows_q8_0(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out, int r0,
                           int r1) {
    mm_rows_q(y, x, w, rb, IBEX_TYPE_Q8_0, T, n_in, n_out, r0, r1, false);
}

void ibex_cpu_mm_rows_q4_0(float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out, int r0,
                           int r1) {
    mm_rows_q(y, x, w, rb, IBEX_TYPE_Q4_0, T, n_in, n_out, r0, r1, false);
}

void ibex_cpu_mm_rows_q_portable(ibex_type t, float *y, const float *x, const char *w, size_t rb, int T, int n_in,
                                 int n_out, int r0, int r1) {
    if (t != IBEX_TYPE_Q8_0 && t != IBEX_TYPE_Q4_0) {
        rows_nan(y, T, n_out, r0, r1);
        return;
    }
    mm_rows_q(y, x, w, rb, t, T, n_in, n_out, r0, r1, true);
}

void ibex_cpu_mm_rows_q(ibex_type t, float *y, const float *x, const char *w, size_t rb, int T, int n_in, int n_out,
                        int r0, int r1) {
    if (t != IBEX_TYPE_Q8_0 && t != IBEX_TYPE_Q4_0) {
        rows_nan(y, T, n_out, r0, r1);
        return;
    }
    mm_rows_q(y, x, w, rb, t, T, n_in, n_out, r0, r1, false);
}
