/* cpu_matmul_q.c — the CPU matmul y[T][n_out] = x[T][n_in] · Wᵀ for GGUF's Q8_0 and Q4_0
 * weight rows (ggml's block formats: 32 weights per block, an F16 scale d and 8-bit or
 * 4-bit quants). ibex_cpu_matmul (cpu_matmul.c) calls the row-group functions below from
 * its `fast` table, for decode (T = 1) and prefill (T > 1) alike.
 *
 * Numerics (chosen, not inherited):
 *  1. The activations are quantized too, as llama.cpp's CPU backend does: each token's
 *     row of x is cut into blocks of 32, d_x = max|x| / 127 (kept in F32, where llama.cpp
 *     rounds it to F16), q_x = nearest-even(x / d_x). Each block product is then an exact
 *     int32 Σ q_w·q_x, scaled by d_w·d_x into F32 accumulators. Why: decode at batch 1 is
 *     one multiply-add per weight byte or two, so the kernel must stay below memory speed
 *     in instructions per weight. Per 32 weights and row: the integer route is ~11
 *     instructions with VNNI (unpack, vpdpbusd with an offset correction, convert, scale,
 *     FMA; the F16 scale through F16C), ~14 with AVX2's sign/pmaddubsw/pmaddwd; the float
 *     route (sign-extend, convert, FMA against F32 x, scale; counted, not benchmarked) is
 *     ~12 with AVX-512 and ~16 with AVX2. So the integer route is no worse for decode and
 *     better on AVX2-only machines. Measured here (one core, per-thread CPU time, L2-resident
 *     768×2048 weights): F16 ~14 GMAC/s, Q8_0 ~22, Q4_0 ~21 — Q4_0 is compute-bound, not
 *     bandwidth-bound. The price of the route is the activation rounding: error ≤ 1/254 of
 *     the block's largest |x| per element, which the tests bound explicitly
 *     (tests/test_quant.c) and which moves logits by ~1.5 % of their scale on the tests'
 *     small model (tests/gguf_quant.py). This route is for calls of fewer than
 *     Q_FLOAT_MIN_T tokens (decode); prefill takes the float route of note 6.
 *  2. In the integer route every y[t][r] is computed the same way whatever the tile, T
 *     (below Q_FLOAT_MIN_T) or thread count: 8 int32
 *     lanes per block (lane k sums elements 4k..4k+3), each lane accumulated in F32 by an
 *     FMA with d_w·d_x in block order, then ibex_cpu_hsum8's fixed horizontal sum. So a
 *     token's row does not depend on its batch within the route, and the portable path
 *     below computes exactly the
 *     same numbers as the AVX2 one where the compiler has FMA (the tests check both).
 *  3. A row-group function only sees the F32 x, and quantizing it costs about one
 *     instruction per element: redone for every group of 16 rows that is a third to a half
 *     of the dot products' work. So each thread caches the last x it quantized and reuses
 *     the quants while the next group's x is byte-identical (memcmp, a few times cheaper
 *     than quantizing, and exact: a caller reusing its buffers can never see stale
 *     quants). Activations above Q_CACHE_MAX elements are quantized per chunk instead.
 *  4. Tiles: 8 rows × 1 token for decode, 4 rows × 2 tokens for prefill (each weight
 *     block is unpacked once for both tokens), 4×1 and 1×1 tails; tokens are quantized in
 *     chunks of Q_TCHUNK so the chunk's quants stay in L1/L2 while the group's rows are
 *     streamed. Rows are short in bytes (34/32 or 18/32 of a byte per weight: 1152 B for a
 *     2048-wide Q4_0 row), so the hardware prefetcher alone left decode well below F16's
 *     bandwidth when weights come from DRAM. 8 concurrent rows and a software prefetch 8
 *     blocks ahead in each row raised the streamed bandwidth by ~30 % (Q8_0) and ~20 %
 *     (Q4_0); prefetching instead the same block of the NEXT tile's rows (R·row bytes
 *     ahead, ~9 KiB for decode: a whole tile's time to arrive, into L2) gave Q4_0 a further
 *     ×1.5 and Q8_0 ×1.2 on 2048×5632 matrices streamed from DRAM (one thread, CPU time,
 *     machine load 4–7, two interleaved rounds; a prefetch one tile ahead beat 2 and 4
 *     tiles and 8 blocks, T1 beat T0 slightly).
 *  5. Per block and row the AVX2/VNNI loop issues no µop that needs the shuffle port: the
 *     F16 scale is one broadcast load from a 64 Ki-entry F32 table (F16C's conversion and
 *     the word broadcast before it were three shuffle µops), and Q4_0's nibbles come from a
 *     128-bit broadcast load, a per-64-bit-lane variable shift (0 for the low half, 4 for
 *     the high) and a mask, where an insert was one more. The numbers are the same bit
 *     for bit (the table is ibex_cpu_f16_to_f32, exact); Q4_0 in L2 went from ~16–18 to
 *     ~19–21 GMAC/s per thread.
 *  6. Prefill (T ≥ Q_FLOAT_MIN_T = 48 tokens) takes the float route: each group of 16
 *     weight rows is dequantized once to F32 (d·q, exact: ggml's dequantized values), packed
 *     k-major 16 rows wide (an AVX-512 16×16 transpose), and swept by 16-row × 12-token
 *     register tiles, x[j][k] as an embedded broadcast: 12 FMAs of 16 lanes per weight
 *     load. The activations are NOT rounded, so prefill is more accurate than decode, and
 *     each y[j][r] is the plain sequential F32 FMA chain over k (tests bound it by
 *     n_in·2⁻²⁴·Σ|w·x|); decode and prefill of a token differ by the activation rounding
 *     of note 1. Why both routes: the integer route reuses nothing across tokens but its
 *     unpack, ~31 GMAC/s per thread at any T here, while the float route pays ~16 F32
 *     stores per weight row chunk once (dequantize + pack) and then runs at the F32 tile's
 *     ~37 GMAC/s, the speed of cpu_matmul.c's F16 tiles. Measured (one thread, CPU time,
 *     2048×1024 Q8_0/Q4_0, load 7–8): float/integer 0.70× at T = 16, 0.83–0.86× at 24,
 *     0.89–0.95× at 32, 1.15–1.20× at 64 — hence the switch at 48. With scalar packing the
 *     float route lost even at 64 tokens (0.9×); with the transpose, Q4_0 prefill of 64
 *     tokens on 2048×2048 runs at 0.94–0.97× of F16 (was 0.76×). */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"

#define Q_BLK 32              /* elements per block, both formats */
#define Q_TCHUNK 16           /* tokens per pass over a row group */
/* Each block of a tile prefetches the same block of the next tile's rows (R rows further
 * on, note 4), into L2. */
#define Q_PF(R) ((size_t)(R) * rb)
#define Q_CACHE_MAX (1 << 20) /* activation elements (T·n_in) a thread caches: 4 MiB of F32 */
#define Q_FLOAT_MIN_T IBEX_CPU_Q_FLOAT_MIN_T /* tokens from which a call takes the float route (note 6) */
#define Q_FROWS 16  /* weight rows dequantized at a time by the float route */
#define Q_FTBLK 48  /* tokens per pass of the float route over those rows (4 tiles of 12) */

/* Quantized activations of tokens 0.. of a chunk: token j's quants at q + j·n_in, its
 * block scales at d + j·nb, and its negated lane sums at s + j·nb·8 (s[8b + k] =
 * −Σ q over elements 32b+4k .. 32b+4k+3; the VNNI path's offset correction). */
typedef struct q_act {
    const int8_t *q;
    const float *d;
    const int32_t *s;
    int n_in, nb;
} q_act;

/* Every F16 value as F32 (ibex_cpu_f16_to_f32, exact), filled once: the kernels read a
 * block's scale with one broadcast load from it (note 5). 256 KiB, of which a model's
 * scales touch a few binades' worth. */
static float g_f16_table[1 << 16];
static pthread_once_t g_f16_once = PTHREAD_ONCE_INIT;

static void f16_table_init(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) g_f16_table[h] = ibex_cpu_f16_to_f32((uint16_t)h);
}

/* Bytes per weight block of t. */
IBEX_CPU_INLINE int q_block_bytes(ibex_type t) { return t == IBEX_TYPE_Q8_0 ? 34 : 18; }

IBEX_CPU_INLINE float q_scale(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return ibex_cpu_f16_to_f32(h);
}

/* ---- activation quantization (numerics note 1): identical results in both paths ---- */

static void quantize_x_portable(int8_t *q, float *d, int32_t *s, const float *x, int n) {
    for (int b = 0; b < n / Q_BLK; b++) {
        const float *xb = x + b * Q_BLK;
        float amax = 0.0f;
        for (int i = 0; i < Q_BLK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        for (int i = 0; i < Q_BLK; i++) q[b * Q_BLK + i] = (int8_t)nearbyintf(xb[i] * id);
        for (int k = 0; k < 8; k++) {
            const int8_t *qk = q + b * Q_BLK + 4 * k;
            s[8 * b + k] = -((int32_t)qk[0] + qk[1] + qk[2] + qk[3]);
        }
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

static inline float f32_fma(float a, float b, float acc) {
#ifdef __FMA__
    return fmaf(a, b, acc);
#else
    return acc + a * b;
#endif
}

/* The portable path: rows [r0, r1) of tc tokens (y offset to the chunk's first token),
 * one row × one token at a time. */
static void rows_portable(float *y, const char *w, size_t rb, ibex_type t, int tc, int n_out, int r0, int r1,
                          const q_act *a) {
    const int bs = q_block_bytes(t);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        for (int j = 0; j < tc; j++) {
            float acc[8] = {0};
            for (int b = 0; b < a->nb; b++) {
                int8_t wq[Q_BLK];
                int32_t s[8];
                unpack_block(wq, row + (size_t)b * bs, t);
                lanes_dot(s, wq, a->q + (int64_t)j * a->n_in + b * Q_BLK);
                const float dd = q_scale(row + (size_t)b * bs) * a->d[(int64_t)j * a->nb + b];
                for (int k = 0; k < 8; k++) acc[k] = lane_fma(dd, s[k], acc[k]);
            }
            /* ibex_cpu_hsum8's order */
            y[(int64_t)j * n_out + r] =
                ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        }
    }
}

#if IBEX_CPU_AVX2

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define Q_VNNI 1
#define Q_DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#elif defined(__AVXVNNI__)
#define Q_VNNI 1
#define Q_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#else
#define Q_VNNI 0
#endif

static void quantize_x_avx2(int8_t *q, float *d, int32_t *s, const float *x, int n) {
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
        const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
        _mm256_storeu_si256((__m256i *)(s + 8 * b), _mm256_sub_epi32(_mm256_setzero_si256(), sums));
    }
}

/* The block's scale as 8 lanes, by a broadcast from the F16 table: a load, where F16C's
 * vcvtph2ps and the word broadcast before it are three shuffle-port µops per block and row
 * (note 5). */
IBEX_CPU_INLINE __m256 q_dvec(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return _mm256_broadcast_ss(&g_f16_table[h]);
}

/* A Q4_0 block's 16 quant bytes in both 128-bit halves, the high half shifted right by 4:
 * after masking, the low nibbles (elements 0..15) then the high ones (16..31). The 128-bit
 * broadcast is a plain load and the variable shift runs beside the multipliers, so no
 * µop needs the shuffle port (an insert would). */
IBEX_CPU_INLINE __m256i q4_nibbles(const uint8_t *blk) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 2)));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

#if Q_VNNI
/* The block's quants as unsigned bytes w + c (c = 128 for Q8_0 by flipping the sign bit,
 * 8 for Q4_0: the raw nibbles), for vpdpbusd's unsigned operand; the activation side's
 * lane sums then remove c·Σx exactly: Σ (w + c)·x − c·Σx = Σ w·x. */
IBEX_CPU_INLINE __m256i q_loadw_u(const uint8_t *blk, ibex_type t) {
    if (t == IBEX_TYPE_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_set1_epi8((char)0x80));
    return q4_nibbles(blk);
}
#else
/* 32 signed weight quants of a block, in element order. */
IBEX_CPU_INLINE __m256i q_loadw(const uint8_t *blk, ibex_type t) {
    if (t == IBEX_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    return _mm256_sub_epi8(q4_nibbles(blk), _mm256_set1_epi8(8));
}
#endif

/* R rows × TB tokens over the blocks; y[j][r] at y + j·ldy + r; each block of row r also
 * prefetches the byte pf further on (the next tile's rows). R, TB and t are
 * constants after inlining, so acc[][] stays in registers. Per block and pair: one
 * vpdpbusd (VNNI) or sign/sign/pmaddubsw/pmaddwd (AVX2), a convert, a scale, an FMA. */
IBEX_CPU_INLINE void qtile(float *y, int64_t ldy, const q_act *a, int j0, const uint8_t *const *w, size_t pf,
                           ibex_type t, const int R, const int TB) {
    const int bs = q_block_bytes(t), nb = a->nb;
    const int8_t *xq[2];
    const float *xd[2];
    const int32_t *xs[2];
    __m256 acc[8][2];
#pragma GCC unroll 2
    for (int j = 0; j < TB; j++) {
        xq[j] = a->q + (int64_t)(j0 + j) * a->n_in;
        xd[j] = a->d + (int64_t)(j0 + j) * nb;
        xs[j] = a->s + (int64_t)(j0 + j) * nb * 8;
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < TB; j++) acc[r][j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i xv[2];
        __m256 dx[2];
#if Q_VNNI
        __m256i corr[2];
#endif
#pragma GCC unroll 2
        for (int j = 0; j < TB; j++) {
            xv[j] = _mm256_loadu_si256((const __m256i *)(xq[j] + b * Q_BLK));
            dx[j] = _mm256_broadcast_ss(xd[j] + b);
#if Q_VNNI
            const __m256i sx = _mm256_loadu_si256((const __m256i *)(xs[j] + 8 * b));
            corr[j] = t == IBEX_TYPE_Q8_0 ? _mm256_slli_epi32(sx, 7) : _mm256_slli_epi32(sx, 3);
#endif
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w[r] + (size_t)b * bs;
            _mm_prefetch((const char *)blk + pf, _MM_HINT_T1);
            const __m256 dw = q_dvec(blk);
#if Q_VNNI
            const __m256i wu = q_loadw_u(blk, t);
#else
            const __m256i wv = q_loadw(blk, t);
            const __m256i aw = _mm256_sign_epi8(wv, wv);
#endif
#pragma GCC unroll 2
            for (int j = 0; j < TB; j++) {
#if Q_VNNI
                const __m256i p = Q_DPBUSD(corr[j], wu, xv[j]);
#else
                /* |w| ≤ 128 and |x| ≤ 127 keep pmaddubsw's int16 pairs from saturating */
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv[j], wv)),
                                                    _mm256_set1_epi16(1));
#endif
                acc[r][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx[j]), _mm256_cvtepi32_ps(p), acc[r][j]);
            }
        }
    }
    (void)xs;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < TB; j++) y[j * ldy + r] = ibex_cpu_hsum8(acc[r][j]);
}

/* rows_portable's contract with 4×2 / 4×1 / 1×1 tiles (numerics note 4); t is passed
 * as a constant to each tile so the format's branches fold away. */
static void rows_avx2(float *y, const char *w, size_t rb, ibex_type t, int tc, int n_out, int r0, int r1,
                      const q_act *a) {
#define Q_TILE(R, TB)                                                                                                  \
    (t == IBEX_TYPE_Q8_0 ? qtile(y + (int64_t)j * n_out + r, n_out, a, j, wr, Q_PF(R), IBEX_TYPE_Q8_0, R, TB)                   \
                         : qtile(y + (int64_t)j * n_out + r, n_out, a, j, wr, Q_PF(R), IBEX_TYPE_Q4_0, R, TB))
    int r = r0;
    if (tc == 1) {
        for (; r + 8 <= r1; r += 8) {
            const uint8_t *wr[8];
            for (int i = 0; i < 8; i++) wr[i] = (const uint8_t *)w + (size_t)(r + i) * rb;
            int j = 0;
            Q_TILE(8, 1);
        }
    }
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *wr[4];
        for (int i = 0; i < 4; i++) wr[i] = (const uint8_t *)w + (size_t)(r + i) * rb;
        int j = 0;
        for (; j + 2 <= tc; j += 2) Q_TILE(4, 2);
        for (; j < tc; j++) Q_TILE(4, 1);
    }
    for (; r < r1; r++) {
        const uint8_t *wr[1] = {(const uint8_t *)w + (size_t)r * rb};
        for (int j = 0; j < tc; j++) Q_TILE(1, 1);
    }
#undef Q_TILE
}

#endif /* IBEX_CPU_AVX2 */

static void quantize_x(int8_t *q, float *d, int32_t *s, const float *x, int n, bool portable) {
#if IBEX_CPU_AVX2
    if (!portable) {
        quantize_x_avx2(q, d, s, x, n);
        return;
    }
#endif
    (void)portable;
    quantize_x_portable(q, d, s, x, n);
}

static void rows(float *y, const char *w, size_t rb, ibex_type t, int tc, int n_out, int r0, int r1, const q_act *a,
                 bool portable) {
#if IBEX_CPU_AVX2
    if (!portable) {
        rows_avx2(y, w, rb, t, tc, n_out, r0, r1, a);
        return;
    }
#endif
    (void)portable;
    rows_portable(y, w, rb, t, tc, n_out, r0, r1, a);
}

/* Quantized activation buffers for n elements (n a multiple of 32). */
typedef struct q_buf {
    int8_t *q;
    float *d;
    int32_t *s;
    size_t cap; /* elements */
} q_buf;

static bool qbuf_reserve(q_buf *b, size_t n) {
    if (n <= b->cap) return true;
    free(b->q), free(b->d), free(b->s);
    b->q = malloc(n);
    b->d = malloc(n / Q_BLK * sizeof *b->d);
    b->s = malloc(n / Q_BLK * 8 * sizeof *b->s);
    b->cap = b->q && b->d && b->s ? n : 0;
    return b->cap != 0;
}

static void qbuf_free(q_buf *b) { free(b->q), free(b->d), free(b->s); }

/* Quantizes tokens [0, T) of x (rows of n_in) into b. */
static void quantize_tokens(q_buf *b, const float *x, int T, int n_in, bool portable) {
    const int nb = n_in / Q_BLK;
    for (int j = 0; j < T; j++)
        quantize_x(b->q + (int64_t)j * n_in, b->d + (int64_t)j * nb, b->s + (int64_t)j * nb * 8,
                   x + (int64_t)j * n_in, n_in, portable);
}

/* ---- the per-thread cache of quantized activations (numerics note 3) ----
 * A thread keeps the last x it quantized (a copy of the F32 values with their quants).
 * The next row group with byte-identical x (memcmp: exact, so never stale, whatever
 * buffer the caller reuses) takes the quants from it. Freed at thread exit. */
typedef struct q_cache {
    float *src; /* T·n_in F32 values the quants were made from */
    size_t cap_src;
    q_buf buf;
    int T, n_in;
    bool portable, valid;
    float *deq; /* prefill (note 6): up to Q_FROWS dequantized weight rows */
    size_t cap_deq;
} q_cache;

static pthread_key_t g_cache_key;
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;
static bool g_cache_ok;

static void cache_destroy(void *p) {
    q_cache *c = p;
    if (c) free(c->src), qbuf_free(&c->buf), free(c->deq);
    free(c);
}

static void cache_init(void) { g_cache_ok = pthread_key_create(&g_cache_key, cache_destroy) == 0; }

/* The quantized form of x (T rows of n_in) from this thread's cache, made if needed;
 * NULL when x is too large to cache or memory is short (the caller then quantizes per
 * chunk). */
/* This thread's cache, made on first use; NULL when memory is short. */
static q_cache *thread_cache(void) {
    pthread_once(&g_cache_once, cache_init);
    if (!g_cache_ok) return NULL;
    q_cache *c = pthread_getspecific(g_cache_key);
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return NULL;
        if (pthread_setspecific(g_cache_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    return c;
}

static const q_buf *cache_lookup(const float *x, int T, int n_in, bool portable) {
    const size_t n = (size_t)T * (size_t)n_in;
    if (n > Q_CACHE_MAX) return NULL;
    q_cache *c = thread_cache();
    if (!c) return NULL;
    if (c->valid && c->T == T && c->n_in == n_in && c->portable == portable && memcmp(c->src, x, n * sizeof *x) == 0)
        return &c->buf;
    c->valid = false;
    if (n > c->cap_src) {
        free(c->src);
        c->src = malloc(n * sizeof *c->src);
        c->cap_src = c->src ? n : 0;
        if (!c->src) return NULL;
    }
    if (!qbuf_reserve(&c->buf, n)) return NULL;
    memcpy(c->src, x, n * sizeof *x);
    quantize_tokens(&c->buf, x, T, n_in, portable);
    c->T = T, c->n_in = n_in, c->portable = portable, c->valid = true;
    return &c->buf;
}

/* ---- prefill: dequantize to F32, then F32 register tiles (numerics note 6) ---- */

/* Rows [r0, r1) of a quantized matrix as F32 rows of n_in at dst: d·q, exact in F32. */
static void dequant_rows(float *dst, const char *w, size_t rb, ibex_type t, int n_in, int r0, int r1, bool portable) {
    const int nb = n_in / Q_BLK, bs = q_block_bytes(t);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        float *o = dst + (int64_t)(r - r0) * n_in;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * bs;
#if IBEX_CPU_AVX2
            if (!portable) {
                const __m256i q = t == IBEX_TYPE_Q8_0 ? _mm256_loadu_si256((const __m256i *)(blk + 2))
                                                      : _mm256_sub_epi8(q4_nibbles(blk), _mm256_set1_epi8(8));
                const __m256 d = q_dvec(blk);
                const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
                float *ob = o + b * Q_BLK;
                _mm256_storeu_ps(ob, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(ob + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(ob + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(ob + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
                continue;
            }
#endif
            int8_t wq[Q_BLK];
            unpack_block(wq, blk, t);
            const float d = q_scale(blk);
            for (int i = 0; i < Q_BLK; i++) o[b * Q_BLK + i] = d * (float)wq[i];
        }
    }
    (void)portable;
}

/* The float route's tiles work on a PACKED group of Q_FROWS = 16 rows: wp[k·16 + i] =
 * row i's dequantized weight k (rows past the group's end are zeros), so one vector load
 * holds weight k of all 16 rows and each token's x[k] is a broadcast: y[j][g..g+16] is
 * one accumulator, and every y[j][r] is the plain sequential chain acc = fma(w[r][k],
 * x[j][k], acc) over k = 0, 1, ... from 0 — the same in every path and build with FMA
 * (note 6). */
static void ftiles_portable(float *y, int64_t ldy, const float *wp, int R, const float *x, int TB, int n_in) {
    for (int j = 0; j < TB; j++)
        for (int i = 0; i < R; i++) {
            float acc = 0.0f;
            const float *xj = x + (int64_t)j * n_in;
            for (int k = 0; k < n_in; k++) acc = f32_fma(wp[(int64_t)k * Q_FROWS + i], xj[k], acc);
            y[(int64_t)j * ldy + i] = acc;
        }
}

#if IBEX_CPU_AVX2
#if defined(__AVX512F__)
/* 16 rows × 12 tokens: 12 FMAs per weight load, x by embedded broadcasts. */
#define QF_T 12
typedef __m512 qf_vec;
IBEX_CPU_INLINE qf_vec qf_zero(void) { return _mm512_setzero_ps(); }
IBEX_CPU_INLINE qf_vec qf_load(const float *p) { return _mm512_loadu_ps(p); }
IBEX_CPU_INLINE qf_vec qf_fma_bcast(qf_vec w, const float *x, qf_vec c) {
    return _mm512_fmadd_ps(w, _mm512_set1_ps(*x), c);
}
IBEX_CPU_INLINE void qf_store(float *y, qf_vec v, int R) {
    if (R == 16)
        _mm512_storeu_ps(y, v);
    else
        _mm512_mask_storeu_ps(y, (__mmask16)((1u << R) - 1), v);
}
#else
/* 16 rows as two AVX2 vectors × 6 tokens: 12 accumulators in the 16 registers. */
#define QF_T 6
typedef struct {
    __m256 lo, hi;
} qf_vec;
IBEX_CPU_INLINE qf_vec qf_zero(void) { return (qf_vec){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
IBEX_CPU_INLINE qf_vec qf_load(const float *p) { return (qf_vec){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
IBEX_CPU_INLINE qf_vec qf_fma_bcast(qf_vec w, const float *x, qf_vec c) {
    const __m256 xb = _mm256_broadcast_ss(x);
    return (qf_vec){_mm256_fmadd_ps(w.lo, xb, c.lo), _mm256_fmadd_ps(w.hi, xb, c.hi)};
}
IBEX_CPU_INLINE void qf_store(float *y, qf_vec v, int R) {
    float tmp[16];
    _mm256_storeu_ps(tmp, v.lo), _mm256_storeu_ps(tmp + 8, v.hi);
    memcpy(y, tmp, (size_t)R * sizeof *y);
}
#endif

/* The packed group × TB tokens (TB a constant after inlining). */
IBEX_CPU_INLINE void ftile(float *y, int64_t ldy, const float *wp, int R, const float *x, int n_in, const int TB) {
    qf_vec acc[QF_T];
    const float *xj[QF_T];
#pragma GCC unroll 12
    for (int j = 0; j < TB; j++) acc[j] = qf_zero(), xj[j] = x + (int64_t)j * n_in;
    for (int k = 0; k < n_in; k++) {
        const qf_vec wv = qf_load(wp + (int64_t)k * Q_FROWS);
#pragma GCC unroll 12
        for (int j = 0; j < TB; j++) acc[j] = qf_fma_bcast(wv, xj[j] + k, acc[j]);
    }
#pragma GCC unroll 12
    for (int j = 0; j < TB; j++) qf_store(y + (int64_t)j * ldy, acc[j], R);
}

static void ftiles_simd(float *y, int64_t ldy, const float *wp, int R, const float *x, int TB, int n_in) {
    int j = 0;
    for (; j + QF_T <= TB; j += QF_T) ftile(y + (int64_t)j * ldy, ldy, wp, R, x + (int64_t)j * n_in, n_in, QF_T);
    switch (TB - j) { /* the tail with its own constant, so its accumulators stay in registers */
#define QF_TAIL(n)                                                                                                     \
    case n: ftile(y + (int64_t)j * ldy, ldy, wp, R, x + (int64_t)j * n_in, n_in, n); break;
        QF_TAIL(1) QF_TAIL(2) QF_TAIL(3) QF_TAIL(4) QF_TAIL(5)
#if QF_T > 6
        QF_TAIL(6) QF_TAIL(7) QF_TAIL(8) QF_TAIL(9) QF_TAIL(10) QF_TAIL(11)
#endif
#undef QF_TAIL
    default: break;
    }
}
#endif /* IBEX_CPU_AVX2 */

#if IBEX_CPU_AVX2 && defined(__AVX512F__)
/* r[i] (16 floats each) becomes column i: four rounds of 16 in-lane and cross-lane
 * shuffles, 64 µops for 256 floats, where scalar packing costs about one load and one
 * store per float (it made the float route slower than the integer one at 64 tokens). */
IBEX_CPU_INLINE void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]),
                      c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) {
            t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + i + 4], 0x88);
            t[8 * h + i + 4] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}
#endif

/* Packs R ≤ Q_FROWS dequantized rows (row-major at deq) into wp (k-major, 16 wide, zeros
 * past R). Only data movement: every path packs the same floats. */
static void pack_rows(float *wp, const float *deq, int R, int n_in, bool portable) {
#if IBEX_CPU_AVX2 && defined(__AVX512F__)
    if (!portable) {
        for (int k0 = 0; k0 < n_in; k0 += 16) {
            __m512 v[16];
            for (int i = 0; i < Q_FROWS; i++) v[i] = i < R ? _mm512_loadu_ps(deq + (int64_t)i * n_in + k0) : _mm512_setzero_ps();
            transpose16(v);
            for (int k = 0; k < 16; k++) _mm512_storeu_ps(wp + (int64_t)(k0 + k) * Q_FROWS, v[k]);
        }
        return;
    }
#endif
    (void)portable;
    for (int k0 = 0; k0 < n_in; k0 += 16) /* 16×16 blocks: both sides stay in cache lines */
        for (int i = 0; i < Q_FROWS; i++)
            for (int k = k0; k < k0 + 16; k++) wp[(int64_t)k * Q_FROWS + i] = i < R ? deq[(int64_t)i * n_in + k] : 0.0f;
}

/* Rows [r0, r1) of T tokens by the float route: Q_FROWS rows dequantized at a time into
 * the thread's buffer, then swept by blocks of Q_FTBLK tokens (so the block of x stays
 * in L2 while the dequantized rows are reused from L1/L2). False when memory is short. */
static bool rows_float(float *y, const float *x, const char *w, size_t rb, ibex_type t, int T, int n_in, int n_out,
                       int r0, int r1, bool portable) {
    q_cache *c = thread_cache();
    const size_t need = 2 * (size_t)Q_FROWS * (size_t)n_in; /* row-major, then packed */
    if (!c) return false;
    if (need > c->cap_deq) {
        free(c->deq);
        c->deq = malloc(need * sizeof *c->deq);
        c->cap_deq = c->deq ? need : 0;
        if (!c->deq) return false;
    }
    for (int g = r0; g < r1; g += Q_FROWS) {
        const int R = r1 - g < Q_FROWS ? r1 - g : Q_FROWS;
        float *wp = c->deq + (size_t)Q_FROWS * (size_t)n_in;
        dequant_rows(c->deq, w, rb, t, n_in, g, g + R, portable);
        pack_rows(wp, c->deq, R, n_in, portable);
        for (int t0 = 0; t0 < T; t0 += Q_FTBLK) {
            const int TB = T - t0 < Q_FTBLK ? T - t0 : Q_FTBLK;
            float *yg = y + (int64_t)t0 * n_out + g;
            const float *xb = x + (int64_t)t0 * n_in;
#if IBEX_CPU_AVX2
            if (!portable) {
                ftiles_simd(yg, n_out, wp, R, xb, TB, n_in);
                continue;
            }
#endif
            ftiles_portable(yg, n_out, wp, R, xb, TB, n_in);
        }
    }
    return true;
}

static void rows_nan(float *y, int T, int n_out, int r0, int r1) {
    for (int j = 0; j < T; j++)
        for (int r = r0; r < r1; r++) y[(int64_t)j * n_out + r] = NAN;
}

static void mm_rows_q(float *y, const float *x, const char *w, size_t rb, ibex_type t, int T, int n_in, int n_out,
                      int r0, int r1, bool portable) {
    if (n_in <= 0 || n_in % Q_BLK != 0 || rb != (size_t)(n_in / Q_BLK) * (size_t)q_block_bytes(t)) {
        rows_nan(y, T, n_out, r0, r1);
        return;
    }
    const int nb = n_in / Q_BLK;
    pthread_once(&g_f16_once, f16_table_init);
    if (T >= Q_FLOAT_MIN_T) { /* prefill: the float route (note 6) */
        if (!rows_float(y, x, w, rb, t, T, n_in, n_out, r0, r1, portable)) rows_nan(y, T, n_out, r0, r1);
        return;
    }
    const q_buf *c = cache_lookup(x, T, n_in, portable);
    if (c) {
        for (int t0 = 0; t0 < T; t0 += Q_TCHUNK) {
            const int tc = T - t0 < Q_TCHUNK ? T - t0 : Q_TCHUNK;
            const q_act a = {c->q + (int64_t)t0 * n_in, c->d + (int64_t)t0 * nb, c->s + (int64_t)t0 * nb * 8, n_in,
                             nb};
            rows(y + (int64_t)t0 * n_out, w, rb, t, tc, n_out, r0, r1, &a, portable);
        }
        return;
    }
    /* too large to cache: quantize each chunk of tokens into scratch */
    q_buf b = {0};
    if (!qbuf_reserve(&b, (size_t)(T < Q_TCHUNK ? T : Q_TCHUNK) * (size_t)n_in)) {
        rows_nan(y, T, n_out, r0, r1);
    } else {
        for (int t0 = 0; t0 < T; t0 += Q_TCHUNK) {
            const int tc = T - t0 < Q_TCHUNK ? T - t0 : Q_TCHUNK;
            quantize_tokens(&b, x + (int64_t)t0 * n_in, tc, n_in, portable);
            const q_act a = {b.q, b.d, b.s, n_in, nb};
            rows(y + (int64_t)t0 * n_out, w, rb, t, tc, n_out, r0, r1, &a, portable);
        }
    }
    qbuf_free(&b);
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
