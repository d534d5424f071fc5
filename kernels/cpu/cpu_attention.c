/* cpu_attention.c — causal attention of T query tokens over one sequence's KV cache, read
 * through an ibex_kv_view block table (contiguous and paged layouts alike).
 *
 * Design notes:
 *  1. One work item per (query token, head); items are independent, so they run in any
 *     order on any thread with identical results. Items go to the backend's worker pool,
 *     whose chunks are claimed one at a time, so the causal imbalance (later tokens see
 *     more keys) evens out.
 *  2. Keys are visited in chunks of ATT_CHUNK logical positions with a streaming
 *     ("online") softmax: the chunk's scores go to a stack buffer, the running max M and
 *     sum S are updated, and the accumulator (the output row itself) is rescaled by
 *     e^(M_old − M_new) when the max grows. No O(context) scratch, any context length.
 *  3. All arithmetic is a function of logical positions only (chunking, 8-key groups), so
 *     a paged cache gives bit-for-bit the result of a contiguous one holding the same data.
 *  4. out must not alias q: the output row is the accumulator while q is still read. */
#include "kernels/cpu/cpu_internal.h"

#define ATT_CHUNK 64

/* Row of KV head kvh for logical token t in pool (k or v). */
static inline const float *kv_row(const float *pool, const ibex_kv_view *kv, int64_t t, int kvh) {
    const int64_t bs = kv->block_size;
    const int64_t blk = kv->block_table[t / bs];
    return pool + ((blk * bs + t % bs) * kv->n_kv_heads + kvh) * (int64_t)kv->head_dim;
}

static float dot1(const float *a, const float *b, int n) {
    int k = 0;
    float s = 0.0f;
#if IBEX_CPU_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc);
    s = ibex_cpu_hsum8(acc);
#else
    float acc[8] = {0};
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[k + l] * b[k + l];
    s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
#endif
    float tail = 0.0f;
    for (; k < n; k++) tail += a[k] * b[k];
    return s + tail;
}

#if IBEX_CPU_AVX2
/* Scores of q against 8 keys at once: 8 accumulators, one transposing horizontal sum. */
static void dot8(float *s, const float *q, const float *const *kr, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 qv = _mm256_loadu_ps(q + k);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[0] + k), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[1] + k), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[2] + k), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[3] + k), a3);
        a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[4] + k), a4);
        a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[5] + k), a5);
        a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[6] + k), a6);
        a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[7] + k), a7);
    }
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(s, sum);
    for (int j = 0; j < 8; j++) {
        float tail = 0.0f;
        for (int kk = k; kk < n; kk++) tail += q[kk] * kr[j][kk];
        s[j] += tail;
    }
}
#endif

/* o[n] = o·c (c = 0 clears, so stale NaN never survives). */
static void scale_row(float *o, float c, int n) {
    if (c == 0.0f) {
        memset(o, 0, (size_t)n * sizeof(float));
        return;
    }
    for (int d = 0; d < n; d++) o[d] *= c;
}

/* o[n] += Σ_j p[j]·v[j][n] over m keys, four keys per pass over o. */
static void axpy_keys(float *o, const float *p, const float *const *vr, int m, int n) {
    int j = 0;
    for (; j + 4 <= m; j += 4) {
        const float p0 = p[j], p1 = p[j + 1], p2 = p[j + 2], p3 = p[j + 3];
        const float *v0 = vr[j], *v1 = vr[j + 1], *v2 = vr[j + 2], *v3 = vr[j + 3];
        int d = 0;
#if IBEX_CPU_AVX2
        const __m256 q0 = _mm256_set1_ps(p0), q1 = _mm256_set1_ps(p1), q2 = _mm256_set1_ps(p2),
                     q3 = _mm256_set1_ps(p3);
        for (; d + 8 <= n; d += 8) {
            __m256 acc = _mm256_loadu_ps(o + d);
            acc = _mm256_fmadd_ps(q0, _mm256_loadu_ps(v0 + d), acc);
            acc = _mm256_fmadd_ps(q1, _mm256_loadu_ps(v1 + d), acc);
            acc = _mm256_fmadd_ps(q2, _mm256_loadu_ps(v2 + d), acc);
            acc = _mm256_fmadd_ps(q3, _mm256_loadu_ps(v3 + d), acc);
            _mm256_storeu_ps(o + d, acc);
        }
#endif
        for (; d < n; d++) o[d] = o[d] + p0 * v0[d] + p1 * v1[d] + p2 * v2[d] + p3 * v3[d];
    }
    for (; j < m; j++) {
        const float pj = p[j], *v = vr[j];
        for (int d = 0; d < n; d++) o[d] += pj * v[d];
    }
}

/* One (token, head) item: o[hd] = softmax(scale · q·Kᵀ over tokens 0..n_ctx−1) · V. */
static void attend_one(float *o, const float *q, const ibex_kv_view *kv, int kvh, int n_ctx,
                       float scale) {
    const int hd = kv->head_dim;
    float s[ATT_CHUNK];
    const float *kr[ATT_CHUNK];
    float m_run = -INFINITY, s_run = 0.0f;
    scale_row(o, 0.0f, hd);
    for (int c0 = 0; c0 < n_ctx; c0 += ATT_CHUNK) {
        const int m = n_ctx - c0 < ATT_CHUNK ? n_ctx - c0 : ATT_CHUNK;
        for (int j = 0; j < m; j++) kr[j] = kv_row((const float *)kv->k, kv, c0 + j, kvh);
        int j = 0;
#if IBEX_CPU_AVX2
        for (; j + 8 <= m; j += 8) dot8(s + j, q, kr + j, hd);
#endif
        for (; j < m; j++) s[j] = dot1(q, kr[j], hd);
        float cmax = -INFINITY;
        for (j = 0; j < m; j++) {
            s[j] *= scale;
            cmax = s[j] > cmax ? s[j] : cmax;
        }
        if (cmax > m_run) {
            /* first chunk: e^(−inf) = 0 rescales nothing that exists yet */
            const float corr = m_run == -INFINITY ? 0.0f : ibex_cpu_expf(m_run - cmax);
            s_run *= corr;
            scale_row(o, corr, hd);
            m_run = cmax;
        }
        j = 0;
#if IBEX_CPU_AVX2
        const __m256 mv = _mm256_set1_ps(m_run);
        for (; j + 8 <= m; j += 8) _mm256_storeu_ps(s + j, ibex_cpu_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv)));
#endif
        for (; j < m; j++) s[j] = ibex_cpu_expf(s[j] - m_run);
        float csum = 0.0f;
        for (j = 0; j < m; j++) csum += s[j];
        s_run += csum;
        /* reuse kr[] for the V rows */
        for (j = 0; j < m; j++) kr[j] = kv_row((const float *)kv->v, kv, c0 + j, kvh);
        axpy_keys(o, s, kr, m, hd);
    }
    const float inv = s_run > 0.0f ? 1.0f / s_run : 0.0f;
    for (int d = 0; d < hd; d++) o[d] *= inv;
}

struct att_job {
    float *out;
    const float *q;
    const ibex_kv_view *kv;
    int T, pos0, n_heads, group;
    float scale;
};

/* Items [it0, it1). Item it is head it % n_heads of token T − 1 − it / n_heads: the
 * costliest (latest) tokens are handed out first, so the cheap ones even out the end. */
static void attend_items(void *arg, int64_t it0, int64_t it1, int tid) {
    const struct att_job *j = arg;
    const int hd = j->kv->head_dim;
    for (int64_t it = it0; it < it1; it++) {
        const int i = j->T - 1 - (int)(it / j->n_heads), h = (int)(it % j->n_heads);
        const int64_t off = ((int64_t)i * j->n_heads + h) * hd;
        attend_one(j->out + off, j->q + off, j->kv, h / j->group, j->pos0 + i + 1, j->scale);
    }
}

void ibex_cpu_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                        int T, int pos0, int n_heads, float scale) {
    if (T <= 0 || n_heads <= 0) return;
    const int hd = kv->head_dim;
    const int group = kv->n_kv_heads > 0 && n_heads >= kv->n_kv_heads ? n_heads / kv->n_kv_heads : 1;
    /* keys visited in total: n_heads · Σ_i (pos0 + i + 1) */
    const double work = (double)n_heads * hd * ((double)T * (pos0 + 1) + 0.5 * (double)T * (T - 1));
    struct att_job j = {out, q, kv, T, pos0, n_heads, group, scale};
    ibex_cpu_parallel(be, attend_items, &j, (int64_t)T * n_heads, work);
}
