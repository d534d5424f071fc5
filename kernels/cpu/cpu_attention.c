/* cpu_attention.c — causal attention of T query tokens over one sequence's KV cache, read
 * through an ibex_kv_view (contiguous and paged layouts alike; F32, F16 or BF16 rows).
 *
 * Design notes:
 *  1. One work item per (tile of query rows, run of up to ATT_KVG adjacent KV heads): the
 *     item serves every query head of each grouped-query-attention group at once, so each
 *     K and V row is read from memory once per group (not once per query head), and per
 *     chunk of keys it visits all its KV heads, whose rows of one token slot are adjacent:
 *     one page touch and one hardware-prefetch stream per slot instead of one per (slot,
 *     head) — with a row only 256 or 512 bytes at a stride of a whole slot, the per-head
 *     walk was bound by page walks and memory latency, not bandwidth (decode 16k:
 *     0.62–0.67× the time, measured). The run is as long as still gives every thread an
 *     item. Items are independent; they go to the backend's worker pool latest tile
 *     first, so the causal imbalance (later rows see more keys) evens out at the end.
 *  2. Keys are visited in chunks of ATT_KC logical positions aligned to multiples of
 *     ATT_KC (a flash-attention style tile: the item's query vectors × ATT_KC keys), with
 *     an online softmax per query vector (running max M and sum S; the output row, which
 *     is the accumulator, is rescaled by e^(M_old − M_new) inside the P·V pass). Decode
 *     (T = 1) is the same code with one row per head.
 *  3. Bit-exactness: everything a query vector computes is a function of its own data and
 *     of logical key positions only — chunk bounds, the 8-key score groups, the fixed
 *     summation orders — never of the tile it shares, the block layout or the thread. So
 *     paged == contiguous, T = 1 == the matching row of a prefill, and any thread count
 *     give identical bits; so does any number of KV heads per item (it follows the
 *     thread count, and the order of heads within a chunk touches no vector's sums).
 *     Keys after a vector's own position are never added (its P·V loop stops at its last
 *     key), and their exp(score) enters the chunk sum as an exact 0.
 *  4. The block table is walked block by block: one divide per chunk, then a cursor; a
 *     contiguous view addresses slot first_block·block_size + t directly. No software
 *     prefetch: requesting the next chunk's rows of a paged view (to L1 or L2) made it
 *     1.05–1.33× the contiguous time, none 0.98–1.04× (opbench, layouts interleaved); the
 *     hardware prefetchers follow each block's slots, and the pools sit on 2 MiB pages
 *     (kernels/hostmem.h), so a jump to another block costs no page walk.
 *  5. F16 / BF16 rows are widened to F32 once per chunk into a stack tile (L1), which all
 *     query vectors of the item then read; F32 rows are read in place, and so are F16
 *     rows for a KV head with a single query vector (decode without grouped-query
 *     sharing: the tile would be written and read for one use), widened in registers
 *     (dot8_h, pv_chunk_h: the same values and FMA order, so the same bits).
 *  6. out must not alias q: the output rows are the accumulators while q is still read. */
#include <stdlib.h>

#include "kernels/cpu/cpu_internal.h"

#define ATT_KC 32      /* keys per chunk */
#define ATT_QV 32      /* query vectors (rows × heads) per KV head of an item, at most */
#define ATT_MAX_HD 256 /* head_dim served by the stack tiles; larger ones use the heap */
#define ATT_KVG 8      /* KV heads per item, at most */

/* dst[m][hd] = rows src[j] of type t widened to F32. */
static void widen_rows(float *dst, const void *const *src, int m, int hd, ibex_type t) {
    for (int j = 0; j < m; j++) {
        float *d = dst + (int64_t)j * hd;
        const uint16_t *s = src[j];
        int e = 0;
        if (t == IBEX_TYPE_F16) {
#if IBEX_CPU_AVX2
            for (; e + 8 <= hd; e += 8) _mm256_storeu_ps(d + e, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + e))));
#endif
            for (; e < hd; e++) d[e] = ibex_cpu_f16_to_f32(s[e]);
        } else {
#if IBEX_CPU_AVX2
            for (; e + 8 <= hd; e += 8)
                _mm256_storeu_ps(d + e, _mm256_castsi256_ps(_mm256_slli_epi32(
                                            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + e))), 16)));
#endif
            for (; e < hd; e++) d[e] = ibex_cpu_bf16_to_f32(s[e]);
        }
    }
}

/* Rows are F32 or, read in place, F16 (h): element i of row r widened to F32. The
 * widening is exact, so a row read in place gives the bits of the same row widened into
 * the stack tile first (design note 5). h is a constant wherever these are inlined. */
IBEX_CPU_INLINE float row1(const void *r, int i, bool h) {
    return h ? ibex_cpu_f16_to_f32(((const uint16_t *)r)[i]) : ((const float *)r)[i];
}
#if IBEX_CPU_AVX2
IBEX_CPU_INLINE __m256 row8(const void *r, int i, bool h) {
    return h ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)r + i)))
             : _mm256_loadu_ps((const float *)r + i);
}
#endif

/* s[j] = q·kr[j] for 8 keys. Each key's sum is a fixed function of q and its own row (the
 * lanes of its accumulator reduced in a fixed tree), whatever the other seven are. */
IBEX_CPU_INLINE void dot8_t(float *s, const float *q, const void *const *kr, int n, bool h) {
    int k = 0;
#if IBEX_CPU_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (; k + 8 <= n; k += 8) {
        __m256 qv = _mm256_loadu_ps(q + k);
        a0 = _mm256_fmadd_ps(qv, row8(kr[0], k, h), a0);
        a1 = _mm256_fmadd_ps(qv, row8(kr[1], k, h), a1);
        a2 = _mm256_fmadd_ps(qv, row8(kr[2], k, h), a2);
        a3 = _mm256_fmadd_ps(qv, row8(kr[3], k, h), a3);
        a4 = _mm256_fmadd_ps(qv, row8(kr[4], k, h), a4);
        a5 = _mm256_fmadd_ps(qv, row8(kr[5], k, h), a5);
        a6 = _mm256_fmadd_ps(qv, row8(kr[6], k, h), a6);
        a7 = _mm256_fmadd_ps(qv, row8(kr[7], k, h), a7);
    }
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(s, sum);
#else
    for (int j = 0; j < 8; j++) s[j] = 0.0f;
#endif
    for (int j = 0; j < 8; j++) {
        float tail = 0.0f;
        for (int kk = k; kk < n; kk++) tail += q[kk] * row1(kr[j], kk, h);
        s[j] += tail;
    }
}

/* o[hd] = o·c + Σ_{j<m} p[j]·vr[j] with the sum for each output lane in key order, from
 * lane d on; o is read and written once per chunk, its 32-wide slices held in registers
 * over the keys, then 8-wide slices, then one lane at a time. */
IBEX_CPU_INLINE void pv_chunk_t(float *o, float c, const float *p, const void *const *vr, int m, int hd, int d,
                                bool h) {
#if IBEX_CPU_AVX2
    const __m256 cv = _mm256_set1_ps(c);
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv), a1 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 8), cv),
               a2 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 16), cv), a3 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 24), cv);
        for (int j = 0; j < m; j++) {
            const __m256 pj = _mm256_broadcast_ss(p + j);
            a0 = _mm256_fmadd_ps(pj, row8(vr[j], d, h), a0);
            a1 = _mm256_fmadd_ps(pj, row8(vr[j], d + 8, h), a1);
            a2 = _mm256_fmadd_ps(pj, row8(vr[j], d + 16, h), a2);
            a3 = _mm256_fmadd_ps(pj, row8(vr[j], d + 24, h), a3);
        }
        _mm256_storeu_ps(o + d, a0), _mm256_storeu_ps(o + d + 8, a1);
        _mm256_storeu_ps(o + d + 16, a2), _mm256_storeu_ps(o + d + 24, a3);
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv);
        for (int j = 0; j < m; j++) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), row8(vr[j], d, h), a0);
        _mm256_storeu_ps(o + d, a0);
    }
#endif
    for (; d < hd; d++) {
        float a = o[d] * c;
        for (int j = 0; j < m; j++) a += p[j] * row1(vr[j], d, h);
        o[d] = a;
    }
}

static void dot8(float *s, const float *q, const float *const *kr, int n) {
    dot8_t(s, q, (const void *const *)kr, n, false);
}
static void pv_chunk(float *o, float c, const float *p, const float *const *vr, int m, int hd) {
    pv_chunk_t(o, c, p, (const void *const *)vr, m, hd, 0, false);
}
/* F16 rows in place (a KV head with one query vector: design note 5) */
static void dot8_h(float *s, const float *q, const uint16_t *const *kr, int n) {
    dot8_t(s, q, (const void *const *)kr, n, true);
}
static void pv_chunk_h(float *o, float c, const float *p, const uint16_t *const *vr, int m, int hd) {
    pv_chunk_t(o, c, p, (const void *const *)vr, m, hd, 0, true);
}

/* Scores of two query vectors against the same 4 keys: sa[j] = qa·kr[j], sb[j] = qb·kr[j].
 * Each (query, key) pair gets its own accumulator, reduced by the same lane tree and tail
 * loop as dot8, so every score has dot8's bits while each K load serves two queries. */
static void dot2x4(float *sa, float *sb, const float *qa, const float *qb, const float *const *kr, int n) {
    int k = 0;
#if IBEX_CPU_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (; k + 8 <= n; k += 8) {
        const __m256 x = _mm256_loadu_ps(qa + k), y = _mm256_loadu_ps(qb + k);
        __m256 r = _mm256_loadu_ps(kr[0] + k);
        a0 = _mm256_fmadd_ps(x, r, a0), b0 = _mm256_fmadd_ps(y, r, b0);
        r = _mm256_loadu_ps(kr[1] + k);
        a1 = _mm256_fmadd_ps(x, r, a1), b1 = _mm256_fmadd_ps(y, r, b1);
        r = _mm256_loadu_ps(kr[2] + k);
        a2 = _mm256_fmadd_ps(x, r, a2), b2 = _mm256_fmadd_ps(y, r, b2);
        r = _mm256_loadu_ps(kr[3] + k);
        a3 = _mm256_fmadd_ps(x, r, a3), b3 = _mm256_fmadd_ps(y, r, b3);
    }
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    float t[8];
    _mm256_storeu_ps(t, sum);
    for (int j = 0; j < 4; j++) sa[j] = t[j], sb[j] = t[4 + j];
#else
    for (int j = 0; j < 4; j++) sa[j] = sb[j] = 0.0f;
#endif
    for (int j = 0; j < 4; j++) {
        float ta = 0.0f, tb = 0.0f;
        for (int kk = k; kk < n; kk++) ta += qa[kk] * kr[j][kk];
        for (int kk = k; kk < n; kk++) tb += qb[kk] * kr[j][kk];
        sa[j] += ta, sb[j] += tb;
    }
}

/* pv_chunk for two query vectors over the same V rows: oa over keys j < ma, ob over
 * j < mb, each lane summed in key order exactly as pv_chunk does, one V load serving
 * both while j < min(ma, mb). */
static void pv_chunk2(float *oa, float *ob, float ca, float cb, const float *pa, const float *pb,
                      const float *const *vr, int ma, int mb, int hd) {
    const int mn = ma < mb ? ma : mb;
    int d = 0;
#if IBEX_CPU_AVX2
    const __m256 cav = _mm256_set1_ps(ca), cbv = _mm256_set1_ps(cb);
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(oa + d), cav), a1 = _mm256_mul_ps(_mm256_loadu_ps(oa + d + 8), cav),
               a2 = _mm256_mul_ps(_mm256_loadu_ps(oa + d + 16), cav), a3 = _mm256_mul_ps(_mm256_loadu_ps(oa + d + 24), cav);
        __m256 b0 = _mm256_mul_ps(_mm256_loadu_ps(ob + d), cbv), b1 = _mm256_mul_ps(_mm256_loadu_ps(ob + d + 8), cbv),
               b2 = _mm256_mul_ps(_mm256_loadu_ps(ob + d + 16), cbv), b3 = _mm256_mul_ps(_mm256_loadu_ps(ob + d + 24), cbv);
        int j = 0;
        for (; j < mn; j++) {
            const __m256 x = _mm256_broadcast_ss(pa + j), y = _mm256_broadcast_ss(pb + j);
            const float *v = vr[j] + d;
            __m256 r = _mm256_loadu_ps(v);
            a0 = _mm256_fmadd_ps(x, r, a0), b0 = _mm256_fmadd_ps(y, r, b0);
            r = _mm256_loadu_ps(v + 8);
            a1 = _mm256_fmadd_ps(x, r, a1), b1 = _mm256_fmadd_ps(y, r, b1);
            r = _mm256_loadu_ps(v + 16);
            a2 = _mm256_fmadd_ps(x, r, a2), b2 = _mm256_fmadd_ps(y, r, b2);
            r = _mm256_loadu_ps(v + 24);
            a3 = _mm256_fmadd_ps(x, r, a3), b3 = _mm256_fmadd_ps(y, r, b3);
        }
        for (int i = j; i < ma; i++) {
            const __m256 x = _mm256_broadcast_ss(pa + i);
            const float *v = vr[i] + d;
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v), a0), a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v + 8), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v + 16), a2), a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(v + 24), a3);
        }
        for (int i = j; i < mb; i++) {
            const __m256 y = _mm256_broadcast_ss(pb + i);
            const float *v = vr[i] + d;
            b0 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v), b0), b1 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v + 8), b1);
            b2 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v + 16), b2), b3 = _mm256_fmadd_ps(y, _mm256_loadu_ps(v + 24), b3);
        }
        _mm256_storeu_ps(oa + d, a0), _mm256_storeu_ps(oa + d + 8, a1);
        _mm256_storeu_ps(oa + d + 16, a2), _mm256_storeu_ps(oa + d + 24, a3);
        _mm256_storeu_ps(ob + d, b0), _mm256_storeu_ps(ob + d + 8, b1);
        _mm256_storeu_ps(ob + d + 16, b2), _mm256_storeu_ps(ob + d + 24, b3);
    }
#endif
    if (d < hd) { /* the lanes pv_chunk takes past the 32-wide slices */
        pv_chunk_t(oa, ca, pa, (const void *const *)vr, ma, hd, d, false);
        pv_chunk_t(ob, cb, pb, (const void *const *)vr, mb, hd, d, false);
    }
}

/* Keys of the chunk at c0 a query at position last sees (≤ 0: none; at most ATT_KC). */
static inline int visible(int last, int c0) { return last - c0 + 1 < ATT_KC ? last - c0 + 1 : ATT_KC; }

/* One query vector's online-softmax step over a chunk: s[0..lim) are its raw scores; on
 * return s[0..ATT_KC) holds p = e^(scale·s − M) for the visible keys and exact zeros after,
 * M (*m_run) and S (*s_run) are updated, and the factor the output row must be rescaled
 * by (e^(M_old − M_new), 0 on the first chunk) is returned. */
static float chunk_softmax(float *s, int lim, float scale, float *m_run, float *s_run) {
    float cmax = -INFINITY;
#if IBEX_CPU_AVX2 && ATT_KC == 32
    /* four 8-lane slices; lanes at or past lim are masked (−inf for the max, 0 after) */
    const __m256 sc = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), limv = _mm256_set1_epi32(lim);
    __m256 v[4], keep[4];
    __m256 mx = ninf;
    for (int g = 0; g < 4; g++) {
        keep[g] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(limv, _mm256_add_epi32(lane, _mm256_set1_epi32(8 * g))));
        v[g] = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(s + 8 * g), sc), keep[g]);
        mx = _mm256_max_ps(mx, v[g]);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    cmax = _mm_cvtss_f32(m4); /* max is exact in any order */
#else
    for (int j = 0; j < lim; j++) {
        s[j] *= scale;
        cmax = s[j] > cmax ? s[j] : cmax;
    }
#endif
    float corr = 1.0f;
    if (cmax > *m_run) {
        /* first chunk: e^(−inf) = 0 rescales nothing that exists yet */
        corr = *m_run == -INFINITY ? 0.0f : ibex_cpu_expf(*m_run - cmax);
        *m_run = cmax;
    }
    float csum;
#if IBEX_CPU_AVX2 && ATT_KC == 32
    const __m256 mv = _mm256_set1_ps(*m_run);
    for (int g = 0; g < 4; g++) {
        v[g] = _mm256_and_ps(ibex_cpu_exp8(_mm256_sub_ps(v[g], mv)), keep[g]);
        _mm256_storeu_ps(s + 8 * g, v[g]);
    }
    /* a fixed tree over all 32 lanes (masked ones are exact zeros) */
    csum = ibex_cpu_hsum8(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])));
#else
    int j = 0;
    for (; j < lim; j++) s[j] = ibex_cpu_expf(s[j] - *m_run);
    for (; j < ATT_KC; j++) s[j] = 0.0f;
    csum = 0.0f;
    for (j = 0; j < ATT_KC; j++) csum += s[j];
#endif
    *s_run = *s_run * corr + csum;
    return corr;
}

/* Addresses of the token slots of keys c0 .. min(c0 + ATT_KC, n_keys) − 1 in the K and V
 * pools (one table lookup per block, no per-key division); returns their count. */
static int chunk_slots(const ibex_kv_view *kv, int64_t slot_bytes, int c0, int n_keys, const char **ks,
                       const char **vs) {
    const int m = n_keys - c0 < ATT_KC ? n_keys - c0 : ATT_KC;
    const int64_t bs = kv->block_size;
    const char *kp = kv->k, *vp = kv->v;
    if (kv->contiguous) {
        const int64_t slot0 = (int64_t)kv->first_block * bs + c0;
        for (int j = 0; j < m; j++) ks[j] = kp + (slot0 + j) * slot_bytes, vs[j] = vp + (slot0 + j) * slot_bytes;
    } else {
        int64_t lb = c0 / bs, in = c0 % bs;
        for (int j = 0; j < m;) {
            const int64_t base = (int64_t)kv->block_table[lb] * bs;
            for (; in < bs && j < m; in++, j++)
                ks[j] = kp + (base + in) * slot_bytes, vs[j] = vp + (base + in) * slot_bytes;
            lb++, in = 0;
        }
    }
    return m;
}


struct att_job {
    float *out;
    const float *q;
    const ibex_kv_view *kv;
    int T, pos0, n_heads, group;
    int tq;      /* query rows per tile */
    int hsub;    /* query heads per KV head and item (group, or a slice of it when the group is large) */
    int n_hsub;  /* group / hsub */
    int kvg;     /* KV heads per item (1 when n_hsub > 1) */
    int n_kvg;   /* n_kv / kvg */
    int n_tiles; /* ceil(T / tq) */
    float scale;
};

/* Scratch of one item: the widened K and V tiles (F16 / BF16 only). */
typedef struct att_scratch {
    float *kbuf, *vbuf; /* [ATT_KC][head_dim] each */
} att_scratch;

/* Rows [r0, r1) × query heads [kvh·group + hs·hsub, + hsub) of each KV head kvh in
 * [kvh0, kvh0 + nkv). Every chunk of keys is visited once for all those KV heads: their
 * rows of one token slot are adjacent in memory, so an item reads whole runs of each slot
 * (one page touch and one hardware-prefetch stream per slot, not one per head and slot).
 * The order of heads within a chunk changes no query vector's arithmetic. */
static void attend_tile(const struct att_job *jb, int kvh0, int nkv, int hs, int r0, int r1, att_scratch *scr) {
    const ibex_kv_view *kv = jb->kv;
    const int hd = kv->head_dim, nh = jb->hsub;
    const size_t esz = kv->type == IBEX_TYPE_F32 ? 4 : 2;
    const int64_t slot_bytes = (int64_t)kv->n_kv_heads * hd * (int64_t)esz;
    const size_t rbytes = (size_t)hd * esz;

    const float *qp[ATT_QV * ATT_KVG];
    float *op[ATT_QV * ATT_KVG];
    int last[ATT_QV * ATT_KVG];
    float m_run[ATT_QV * ATT_KVG], s_run[ATT_QV * ATT_KVG];
    const int nqh = (r1 - r0) * nh; /* query vectors per KV head */
    const bool direct_h = kv->type == IBEX_TYPE_F16 && nqh == 1;
    int nq = 0;
    for (int g = 0; g < nkv; g++) {
        const int h0 = (kvh0 + g) * jb->group + hs * nh;
        for (int i = r0; i < r1; i++)
            for (int h = h0; h < h0 + nh; h++, nq++) {
                const int64_t off = ((int64_t)i * jb->n_heads + h) * hd;
                qp[nq] = jb->q + off;
                op[nq] = jb->out + off;
                last[nq] = jb->pos0 + i;
                m_run[nq] = -INFINITY;
                s_run[nq] = 0.0f;
                memset(op[nq], 0, (size_t)hd * sizeof(float));
            }
    }

    const char *ks[ATT_KC], *vs[ATT_KC];
    const void *kraw[ATT_KC], *vraw[ATT_KC];
    const float *kr[ATT_KC], *vr[ATT_KC];
    float s[ATT_KC] = {0}, s2[ATT_KC] = {0}; /* lanes past a vector's keys are read, then masked */
    const int n_keys = jb->pos0 + r1; /* keys 0 .. n_keys−1 */
    for (int c0 = 0; c0 < n_keys; c0 += ATT_KC) {
        const int m = chunk_slots(kv, slot_bytes, c0, n_keys, ks, vs);
        for (int g = 0; g < nkv; g++) {
            const size_t hoff = (size_t)(kvh0 + g) * rbytes;
            for (int j = 0; j < m; j++) kraw[j] = ks[j] + hoff, vraw[j] = vs[j] + hoff;
            if (direct_h) { /* one F16 query vector on this head: read the rows in place */
                const uint16_t *kh[ATT_KC], *vh[ATT_KC];
                for (int j = 0; j < m; j++) kh[j] = kraw[j], vh[j] = vraw[j];
                for (int j = m; j < ATT_KC; j++) kh[j] = kh[0];
                const int a = g * nqh, la = visible(last[a], c0);
                if (la <= 0) continue;
                for (int j = 0; j < la; j += 8) dot8_h(s + j, qp[a], kh + j, hd);
                const float ca = chunk_softmax(s, la, jb->scale, &m_run[a], &s_run[a]);
                pv_chunk_h(op[a], ca, s, vh, la, hd);
                continue;
            }
            if (kv->type == IBEX_TYPE_F32) {
                for (int j = 0; j < m; j++) kr[j] = kraw[j], vr[j] = vraw[j];
            } else {
                widen_rows(scr->kbuf, kraw, m, hd, kv->type);
                widen_rows(scr->vbuf, vraw, m, hd, kv->type);
                for (int j = 0; j < m; j++) kr[j] = scr->kbuf + (int64_t)j * hd, vr[j] = scr->vbuf + (int64_t)j * hd;
            }
            /* score groups past m read a real row; their scores are masked and never used */
            for (int j = m; j < ATT_KC; j++) kr[j] = kr[0];

            /* this head's query vectors two at a time (each K and V load serves both), the
             * odd one alone */
            const int qe = (g + 1) * nqh;
            for (int a = g * nqh; a < qe;) {
                const int la = visible(last[a], c0);
                if (la <= 0) { /* the chunk is after this row: nothing of it is visible */
                    a++;
                    continue;
                }
                const int lb = a + 1 < qe ? visible(last[a + 1], c0) : 0;
                if (lb > 0) {
                    const int n4 = ((la > lb ? la : lb) + 3) / 4 * 4;
                    for (int j = 0; j < n4; j += 4) dot2x4(s + j, s2 + j, qp[a], qp[a + 1], kr + j, hd);
                    const float ca = chunk_softmax(s, la, jb->scale, &m_run[a], &s_run[a]);
                    const float cb = chunk_softmax(s2, lb, jb->scale, &m_run[a + 1], &s_run[a + 1]);
                    pv_chunk2(op[a], op[a + 1], ca, cb, s, s2, vr, la, lb, hd);
                    a += 2;
                } else {
                    for (int j = 0; j < la; j += 8) dot8(s + j, qp[a], kr + j, hd);
                    const float ca = chunk_softmax(s, la, jb->scale, &m_run[a], &s_run[a]);
                    pv_chunk(op[a], ca, s, vr, la, hd);
                    a++;
                }
            }
        }
    }
    for (int a = 0; a < nq; a++) {
        const float inv = s_run[a] > 0.0f ? 1.0f / s_run[a] : 0.0f;
        for (int d = 0; d < hd; d++) op[a][d] *= inv;
    }
}

/* Items [it0, it1): per tile (latest, i.e. costliest, first) n_kvg · n_hsub items; item it
 * is head slice it % n_hsub of KV heads [kvg·((it / n_hsub) % n_kvg), + kvg). */
static void attend_items(void *arg, int64_t it0, int64_t it1, int tid) {
    (void)tid;
    const struct att_job *jb = arg;
    const int hd = jb->kv->head_dim;
    const int per_tile = jb->n_kvg * jb->n_hsub;
    float stack_k[ATT_KC * ATT_MAX_HD], stack_v[ATT_KC * ATT_MAX_HD];
    att_scratch scr = {stack_k, stack_v};
    float *heap = NULL;
    if (jb->kv->type != IBEX_TYPE_F32 && hd > ATT_MAX_HD) {
        heap = malloc((size_t)2 * ATT_KC * hd * sizeof(float));
        if (!heap) { /* no scratch: make the failure visible rather than wrong */
            for (int64_t it = it0; it < it1; it++) {
                const int tile = jb->n_tiles - 1 - (int)(it / per_tile), r0 = tile * jb->tq;
                const int r1 = r0 + jb->tq < jb->T ? r0 + jb->tq : jb->T;
                const int hs = (int)(it % jb->n_hsub), kvh0 = (int)((it / jb->n_hsub) % jb->n_kvg) * jb->kvg;
                for (int g = kvh0; g < kvh0 + jb->kvg; g++)
                    for (int i = r0; i < r1; i++)
                        for (int h = g * jb->group + hs * jb->hsub; h < g * jb->group + (hs + 1) * jb->hsub; h++)
                            for (int d = 0; d < hd; d++) jb->out[((int64_t)i * jb->n_heads + h) * hd + d] = NAN;
            }
            return;
        }
        scr.kbuf = heap, scr.vbuf = heap + (size_t)ATT_KC * hd;
    }
    for (int64_t it = it0; it < it1; it++) {
        const int tile = jb->n_tiles - 1 - (int)(it / per_tile);
        const int r0 = tile * jb->tq, r1 = r0 + jb->tq < jb->T ? r0 + jb->tq : jb->T;
        const int hs = (int)(it % jb->n_hsub), kvh0 = (int)((it / jb->n_hsub) % jb->n_kvg) * jb->kvg;
        attend_tile(jb, kvh0, jb->kvg, hs, r0, r1, &scr);
    }
    free(heap);
}

void ibex_cpu_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                        int T, int pos0, int n_heads, float scale) {
    if (T <= 0 || n_heads <= 0) return;
    const int hd = kv->head_dim;
    /* query head h reads KV head h / group (the engine checks n_heads % n_kv_heads == 0) */
    const int group = kv->n_kv_heads > 0 && n_heads >= kv->n_kv_heads ? n_heads / kv->n_kv_heads : 1;
    const int n_kv = n_heads / group;
    /* a group wider than ATT_QV is served in slices of the largest divisor that fits */
    int hsub = group;
    while (hsub > ATT_QV || group % hsub) hsub--;
    const int tq = ATT_QV / hsub;
    const int n_tiles = (T + tq - 1) / tq;
    /* KV heads per item: as many as keep at least one item per thread (the pool hands
     * items out dynamically), at most ATT_KVG; the grouping changes only which memory an
     * item reads together, never a bit of the result */
    const int nth = ibex_cpu_threads(be);
    int kvg = hsub == group ? (n_kv < ATT_KVG ? n_kv : ATT_KVG) : 1;
    while (kvg > 1 && (n_kv % kvg || (int64_t)n_tiles * (n_kv / kvg) < nth)) kvg--;
    /* keys visited in total: n_heads · Σ_i (pos0 + i + 1) */
    const double work = (double)n_heads * hd * ((double)T * (pos0 + 1) + 0.5 * (double)T * (T - 1));
    struct att_job j = {out, q, kv, T, pos0, n_heads, group, tq, hsub, group / hsub, kvg, n_kv / kvg, n_tiles, scale};
    ibex_cpu_parallel(be, attend_items, &j, (int64_t)n_tiles * (n_kv / kvg) * (group / hsub), work);
}
