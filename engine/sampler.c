/* sampler.c — token selection from logits: greedy, and seeded sampling through
 * repetition penalty -> temperature -> top-k -> softmax -> top-p / min-p -> draw.
 *
 * Design notes
 *  1. Rank order. "Before" means a larger key, and among equal keys the lower id. It is a
 *     strict total order (ids are distinct), so every selection below has one answer and
 *     the sampler is deterministic: no threads, no global state, only the caller's rng.
 *     Top-k ranks by the scaled logit; top-p and the draw rank by probability.
 *  2. No full sorts. Top-k is one pass with a heap for small k, a quickselect otherwise.
 *     Top-p and the draw need the point where the running probability, in rank order,
 *     crosses a target: weights are bucketed by their float bits (monotone in the
 *     weight), per-bucket sums find the bucket holding the crossing, and only that bucket
 *     is searched, by a quickselect that follows the side holding the crossing. Expected
 *     O(n), two sequential passes. The partial sums add the same numbers as a sorted scan
 *     but in another order, so the result can differ from a sorted scan only where the
 *     target lies within rounding (~1e-16 relative) of a boundary.
 *  3. Scaled logits are x_i = (l_i − max l) / T, computed once: the shift keeps the best
 *     token at exactly 0 even when T is tiny (l_i / T alone can overflow to −inf for
 *     every token) and softmax and log-softmax do not change under a shift.
 *  4. Weights are w_i = exp(x_i − max x) with the best candidate at weight exactly 1, so
 *     min-p's test p < min_p · p_max is w < min_p, and top-p's "cumulative probability
 *     >= p" is "cumulative weight >= p · Σw" — no division before the final renormalise.
 *  5. Top-p and min-p both judge the softmax after top-k; the kept set is their
 *     intersection. Both keep a rank prefix, so min-p filters first (O(n)) and top-p's
 *     running sum over the survivors equals the running sum over all candidates.
 *  6. NaN logits count as −inf when sampling (never drawn); greedy skips them as
 *     ibex_sample_greedy does. A token equal to the maximum gets weight 1 even when the
 *     maximum is infinite, so +inf logits share the probability and an all −inf row is
 *     uniform instead of NaN. */
#include "engine/sampler.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "engine/alloc.h"

/* The largest of x[0, n) that is not NaN (−inf if none): 16 lane maxima, so the loop
 * vectorises; max is exact in any order (±0 compare equal, which callers treat alike). */
static float max_not_nan(const float *x, int32_t n) {
    float m[16];
    for (int l = 0; l < 16; l++) m[l] = -INFINITY;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l]; /* NaN compares false */
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float r = m[0];
    for (int l = 1; l < 16; l++) r = m[l] > r ? m[l] : r;
    return r;
}

/* Two passes instead of one with a branch per logit: the maximum (a vectorised loop; NaN
 * compares false and is skipped), then the first index holding it. */
int32_t ibex_sample_greedy(const float *logits, int32_t n) {
    if (n <= 0) return -1;
    const float bv = max_not_nan(logits, n);
    for (int32_t i = 0; i < n; i++)
        if (logits[i] == bv) return i;
    return 0; /* every logit NaN */
}

/* ---- PRNG ----------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void ibex_rng_seed(ibex_rng *r, uint64_t seed) {
    uint64_t x = seed;
    /* splitmix64 never gives four zero words, the one state xoshiro cannot leave. */
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t ibex_rng_next(ibex_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double ibex_rng_uniform(ibex_rng *r) {
    return (double)(ibex_rng_next(r) >> 11) * 0x1.0p-53; /* top 53 bits, k / 2^53 */
}

/* ---- parameters ----------------------------------------------------------------- */

ibex_sampler_params ibex_sampler_default_params(void) {
    ibex_sampler_params p = {.temperature = 0.0f,
                             .top_k = 0,
                             .top_p = 1.0f,
                             .min_p = 0.0f,
                             .repeat_penalty = 1.0f,
                             .repeat_last_n = 0,
                             .seed = 0};
    return p;
}

ibex_status ibex_sampler_params_check(const ibex_sampler_params *p, ibex_err *err) {
    if (!p) return ibex_err_set(err, IBEX_ERR_INVALID, "sampler: no parameters given");
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ibex_err_set(err, IBEX_ERR_INVALID, "sampler: temperature %g is invalid (must be finite and >= 0)",
                            (double)p->temperature);
    if (p->top_k < 0)
        return ibex_err_set(err, IBEX_ERR_INVALID, "sampler: top_k %d is invalid (must be >= 0; 0 turns it off)",
                            (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ibex_err_set(err, IBEX_ERR_INVALID, "sampler: top_p %g is invalid (must be in (0, 1]; 1 turns it off)",
                            (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ibex_err_set(err, IBEX_ERR_INVALID, "sampler: min_p %g is invalid (must be in [0, 1]; 0 turns it off)",
                            (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "sampler: repeat_penalty %g is invalid (must be finite and > 0; 1 turns it off)",
                            (double)p->repeat_penalty);
    if (p->repeat_last_n < 0)
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "sampler: repeat_last_n %d is invalid (must be >= 0; 0 means the whole history)",
                            (int)p->repeat_last_n);
    return IBEX_OK;
}

/* ---- sampler scratch ------------------------------------------------------------ */

/* Weight buckets: bits 30..20 of a weight in [0, 1] (its exponent and 3 mantissa bits)
 * order the weights as the weights themselves, each bucket spanning a factor 2^(1/8). */
#define IBEX_SAMPLER_BUCKETS 2048

struct ibex_sampler {
    int32_t n_vocab;
    float *x;      /* (n_vocab) penalised logits, then scaled logits (design note 3) */
    float *w;      /* (n_vocab) unnormalised probabilities of the candidates, by id */
    int32_t *ids;  /* (n_vocab) candidate ids; the kept ones first */
    uint8_t *seen; /* (n_vocab) all zero between calls; marks history tokens already penalised */
    double bucket_mass[IBEX_SAMPLER_BUCKETS]; /* weight per bucket, for select_mass */
};

ibex_sampler *ibex_sampler_new(int32_t n_vocab) {
    if (n_vocab <= 0) return NULL;
    ibex_sampler *s = ibex_alloc(IBEX_MEM_OTHER, sizeof *s, 1);
    if (!s) return NULL;
    size_t n = (size_t)n_vocab;
    s->n_vocab = n_vocab;
    s->x = ibex_alloc(IBEX_MEM_OTHER, n * sizeof *s->x, 0);
    s->w = ibex_alloc(IBEX_MEM_OTHER, n * sizeof *s->w, 0);
    s->ids = ibex_alloc(IBEX_MEM_OTHER, n * sizeof *s->ids, 0);
    s->seen = ibex_alloc(IBEX_MEM_OTHER, n, 1);
    if (!s->x || !s->w || !s->ids || !s->seen) {
        ibex_sampler_free(s);
        return NULL;
    }
    return s;
}

void ibex_sampler_free(ibex_sampler *s) {
    if (!s) return;
    ibex_free(s->x);
    ibex_free(s->w);
    ibex_free(s->ids);
    ibex_free(s->seen);
    ibex_free(s);
}

/* ---- rank selection (design notes 1, 2) ----------------------------------------- */

static inline int before(const float *key, int32_t a, int32_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a < b);
}

static inline void swap_ids(int32_t *ids, int32_t i, int32_t j) {
    int32_t t = ids[i];
    ids[i] = ids[j];
    ids[j] = t;
}

static void insertion_sort(const float *key, int32_t *ids, int32_t lo, int32_t hi) {
    for (int32_t i = lo + 1; i < hi; i++) {
        int32_t v = ids[i], j = i;
        for (; j > lo && before(key, v, ids[j - 1]); j--) ids[j] = ids[j - 1];
        ids[j] = v;
    }
}

/* Partitions ids[lo, hi) (hi − lo >= 1) around a median-of-three pivot; returns the
 * pivot's final position q: ids[lo, q) are before it, ids(q, hi) after it. *mass gets
 * the sum of key over ids[lo, q). The loop is branch-free (a swap every step and a
 * conditional advance): rank comparisons of logits are coin flips to a predictor. */
static int32_t partition(const float *key, int32_t *ids, int32_t lo, int32_t hi, double *mass) {
    int32_t last = hi - 1;
    if (hi - lo >= 3) {
        int32_t mid = lo + (hi - lo) / 2;
        if (before(key, ids[mid], ids[lo])) swap_ids(ids, mid, lo);
        if (before(key, ids[last], ids[lo])) swap_ids(ids, last, lo);
        if (before(key, ids[last], ids[mid])) swap_ids(ids, last, mid);
        swap_ids(ids, mid, last); /* the median becomes the pivot */
    }
    int32_t pv = ids[last], q = lo;
    float kp = key[pv];
    double m = 0;
    for (int32_t i = lo; i < last; i++) {
        int32_t v = ids[i];
        float kv = key[v];
        int b = (kv > kp) | ((kv == kp) & (v < pv));
        ids[i] = ids[q];
        ids[q] = v;
        q += b;
        m += b ? (double)kv : 0.0;
    }
    swap_ids(ids, q, last);
    *mass = m;
    return q;
}

/* Heap of the k first seen so far, its root the last of them in rank order. */
static void heap_sift_down(const float *key, int32_t *h, int32_t k, int32_t i) {
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= k) return;
        if (c + 1 < k && before(key, h[c], h[c + 1])) c++; /* the later child */
        if (!before(key, h[i], h[c])) return;
        swap_ids(h, i, c);
        i = c;
    }
}

/* Rearranges ids[0, n) so that ids[0, k) are the k first in rank order (in no
 * particular order among themselves). Needs 0 < k < n. Small k: one pass with a heap,
 * where almost every token loses a single well-predicted comparison with the root;
 * otherwise quickselect. */
static void select_top(const float *key, int32_t *ids, int32_t n, int32_t k) {
    if (k <= n / 16) {
        for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(key, ids, k, i);
        for (int32_t i = k; i < n; i++) {
            if (before(key, ids[i], ids[0])) {
                swap_ids(ids, 0, i);
                heap_sift_down(key, ids, k, 0);
            }
        }
        return;
    }
    int32_t lo = 0, hi = n; /* invariant: lo <= k < hi; ids[0, lo) precede ids[lo, n) */
    for (;;) {
        double unused;
        int32_t q = partition(key, ids, lo, hi, &unused);
        if (q == k) return;
        if (q < k)
            lo = q + 1;
        else
            hi = q;
    }
}

static inline int reached(double cum, double target, int strict) { return strict ? cum > target : cum >= target; }

/* Smallest m in [1, n] such that the weights of the m first ids in rank order (by w)
 * sum to >= target (strict: > target); on return ids[0, m) are those m, with the
 * m-th at ids[m − 1]. Returns 0 if even all n do not reach it (order then arbitrary). */
static int32_t select_mass_part(const float *w, int32_t *ids, int32_t n, double target, int strict) {
    int32_t lo = 0, hi = n;
    double acc = 0; /* weight of ids[0, lo), which precede the rest and do not reach target */
    while (hi - lo > 16) {
        double mass;
        int32_t q = partition(w, ids, lo, hi, &mass);
        double left = acc + mass;
        if (reached(left, target, strict)) {
            hi = q;
            continue;
        }
        left += w[ids[q]];
        if (reached(left, target, strict)) return q + 1;
        acc = left;
        lo = q + 1;
    }
    insertion_sort(w, ids, lo, hi);
    for (int32_t i = lo; i < hi; i++) {
        acc += w[ids[i]];
        if (reached(acc, target, strict)) {
            /* ids[i] must sit at position m − 1 with ids[0, i) before it: it does. */
            return i + 1;
        }
    }
    return 0;
}

static inline int32_t bucket_of(float w) {
    uint32_t b;
    memcpy(&b, &w, sizeof b);
    b >>= 20;
    return b < IBEX_SAMPLER_BUCKETS ? (int32_t)b : IBEX_SAMPLER_BUCKETS - 1;
}

/* select_mass_part's contract, in two sequential passes: sum the weight per bucket, walk
 * the buckets from the heaviest weights down to the one where the running sum crosses
 * the target, move the ids of the buckets above it to the front and the ids of that
 * bucket after them, and resolve within the bucket. */
static int32_t select_mass(ibex_sampler *s, int32_t *ids, int32_t n, double target, int strict) {
    const float *w = s->w;
    if (n <= 64) return select_mass_part(w, ids, n, target, strict);
    double *bm = s->bucket_mass;
    memset(bm, 0, IBEX_SAMPLER_BUCKETS * sizeof *bm);
    for (int32_t i = 0; i < n; i++) bm[bucket_of(w[ids[i]])] += w[ids[i]];
    double acc = 0;
    int32_t B = IBEX_SAMPLER_BUCKETS - 1;
    for (; B >= 0; B--) {
        if (reached(acc + bm[B], target, strict)) break;
        acc += bm[B];
    }
    if (B < 0) return 0;
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++)
        if (bucket_of(w[ids[i]]) > B) swap_ids(ids, i, c++);
    int32_t d = c;
    for (int32_t i = c; i < n; i++)
        if (bucket_of(w[ids[i]]) == B) swap_ids(ids, i, d++);
    int32_t r = select_mass_part(w, ids + c, d - c, target - acc, strict);
    if (r > 0) return c + r;
    /* The bucket's sum reached the target but its running sum, added in another
     * order, fell an ulp short: the crossing is the bucket's last token. */
    if (d - c > 1) select_top(w, ids + c, d - c, d - c - 1);
    return d;
}

/* ---- the pipeline ----------------------------------------------------------------- */

/* s->x = logits with the repetition penalty applied to each distinct in-vocabulary
 * token of the last repeat_last_n history entries (all of them when 0). */
static void apply_penalty(ibex_sampler *s, const float *logits, const ibex_sampler_params *p, const int32_t *history,
                          int32_t n_history) {
    int32_t n = s->n_vocab;
    memcpy(s->x, logits, (size_t)n * sizeof *s->x);
    float pen = p->repeat_penalty;
    if (pen == 1.0f || !history || n_history <= 0) return;
    int32_t start = p->repeat_last_n > 0 && p->repeat_last_n < n_history ? n_history - p->repeat_last_n : 0;
    for (int32_t i = start; i < n_history; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= n || s->seen[t]) continue;
        s->seen[t] = 1;
        float v = s->x[t];
        s->x[t] = v > 0 ? v / pen : v * pen;
    }
    for (int32_t i = start; i < n_history; i++)
        if (history[i] >= 0 && history[i] < n) s->seen[history[i]] = 0;
}

static int penalty_active(const ibex_sampler_params *p, const int32_t *history, int32_t n_history) {
    return p->repeat_penalty != 1.0f && history && n_history > 0;
}

/* Turns the penalised logits in s->x into scaled logits (design note 3; NaN -> −inf). */
static void apply_temperature(ibex_sampler *s, float temperature) {
    int32_t n = s->n_vocab;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (s->x[i] != s->x[i]) s->x[i] = -INFINITY;
        if (s->x[i] > mx) mx = s->x[i];
    }
    float shift = isfinite(mx) ? mx : 0.0f;
    for (int32_t i = 0; i < n; i++) s->x[i] = (s->x[i] - shift) / temperature;
}

/* e^x for x <= 0 without branches (so the loop over a block vectorises: gcc turns the
 * selects into blends): the Cephes expf polynomial of kernels/cpu's ibex_cpu_expf, about
 * 2 ulp; exactly 0 below −87.33 (and for −inf), exactly 1 at 0. NaN is the caller's. */
static inline float exp_nonpos(float x) {
    const float xc = x < -87.33654f ? -87.33654f : x;
    const float n = nearbyintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* n in [−126, 0]: a normal 2^n */
    float two_n;
    memcpy(&two_n, &bits, 4);
    return x < -87.33654f ? 0.0f : y * two_n;
}

/* Elements per block of log_sum_rel: the exps of a block go through a small buffer so
 * both loops stay simple enough to vectorise. */
#define IBEX_LSE_BLOCK 512

/* Log-softmax helper over x[0, n), NaN entries left out: *mx gets the maximum and the
 * return is log Σ exp(x_i − max) (design note 6 for an infinite maximum). The exps are
 * float (exp_nonpos, a vectorised loop instead of 32000 calls to libm's expf: ~2 ulp per
 * term instead of ~1), summed in double over 8 fixed lanes, so the sum's own rounding
 * stays ~1e-16 and the result does not depend on anything but x. */
static double log_sum_rel(const float *x, int32_t n, double *mx_out) {
    const float mx = max_not_nan(x, n);
    float e[IBEX_LSE_BLOCK];
    double acc[8] = {0};
    for (int32_t i0 = 0; i0 < n; i0 += IBEX_LSE_BLOCK) {
        const int32_t m = n - i0 < IBEX_LSE_BLOCK ? n - i0 : IBEX_LSE_BLOCK;
        const float *xb = x + i0;
        for (int32_t i = 0; i < m; i++) {
            const float v = xb[i], d = v - mx; /* d is NaN for a NaN v and for −inf − −inf */
            e[i] = v == mx ? 1.0f : d == d ? exp_nonpos(d) : 0.0f;
        }
        int32_t i = 0;
        for (; i + 8 <= m; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)e[i + l];
        for (; i < m; i++) acc[i & 7] += (double)e[i];
    }
    *mx_out = mx;
    return log(((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])));
}

/* log softmax of one value v given log_sum_rel's results. */
static inline double log_softmax_one(float v, double mx, double ls) {
    if (v == mx) return -ls;
    if (v != v) return NAN;
    return isfinite(mx) ? ((double)v - mx) - ls : -INFINITY;
}

static float log_prob_at(const float *x, int32_t n, int32_t t) {
    double mx;
    double ls = log_sum_rel(x, n, &mx);
    return (float)log_softmax_one(x[t], mx, ls);
}

/* Runs the pipeline for temperature > 0. On return ids[0, *n_kept) are the kept
 * candidates with weights s->w[id]; returns their total weight. */
static double filter(ibex_sampler *s, const float *logits, const ibex_sampler_params *p, const int32_t *history,
                     int32_t n_history, int32_t *n_kept) {
    int32_t n = s->n_vocab;
    float *x = s->x, *w = s->w;
    int32_t *ids = s->ids;
    apply_penalty(s, logits, p, history, n_history);
    apply_temperature(s, p->temperature);

    for (int32_t i = 0; i < n; i++) ids[i] = i;
    int32_t m = n;
    if (p->top_k > 0 && p->top_k < n) {
        select_top(x, ids, n, p->top_k);
        m = p->top_k;
    }

    float mx = -INFINITY;
    for (int32_t i = 0; i < m; i++)
        if (x[ids[i]] > mx) mx = x[ids[i]];
    double total = 0;
    for (int32_t i = 0; i < m; i++) {
        int32_t t = ids[i];
        w[t] = x[t] == mx ? 1.0f : expf(x[t] - mx);
        total += w[t];
    }

    if (p->min_p > 0.0f) { /* design note 4: p < min_p · p_max  <=>  w < min_p */
        int32_t c = 0;
        for (int32_t i = 0; i < m; i++)
            if (!(w[ids[i]] < p->min_p)) ids[c++] = ids[i];
        m = c; /* the best candidate has w = 1 >= min_p, so m >= 1 */
    }
    if (p->top_p < 1.0f) {
        int32_t c = select_mass(s, ids, m, (double)p->top_p * total, 0);
        if (c > 0) m = c; /* 0: the min-p survivors never reach p; keep them all */
    }

    double kept = 0;
    for (int32_t i = 0; i < m; i++) kept += w[ids[i]];
    *n_kept = m;
    return kept;
}

int32_t ibex_sampler_sample(ibex_sampler *s, const float *logits, const ibex_sampler_params *p, ibex_rng *rng,
                            const int32_t *history, int32_t n_history, float *logprob) {
    int32_t n = s->n_vocab;
    if (!(p->temperature > 0.0f)) {
        const float *src = logits;
        if (penalty_active(p, history, n_history)) {
            apply_penalty(s, logits, p, history, n_history);
            src = s->x;
        }
        int32_t tok = ibex_sample_greedy(src, n);
        if (logprob) *logprob = log_prob_at(logits, n, tok);
        return tok;
    }

    int32_t m;
    double kept = filter(s, logits, p, history, n_history, &m);
    double u = ibex_rng_uniform(rng);
    int32_t *ids = s->ids;
    const float *w = s->w;
    int32_t tok;
    int32_t c = m > 1 ? select_mass(s, ids, m, u * kept, 1) : 1;
    if (c > 0 && w[ids[c - 1]] > 0) {
        tok = ids[c - 1];
    } else { /* rounding put u·Σw past the running sum: take the last kept token of weight > 0 */
        tok = -1;
        for (int32_t i = 0; i < m; i++)
            if (w[ids[i]] > 0 && (tok < 0 || before(w, tok, ids[i]))) tok = ids[i];
    }
    if (logprob) *logprob = log_prob_at(s->x, n, tok);
    return tok;
}

void ibex_log_softmax(float *out, const float *logits, int32_t n) {
    if (n <= 0) return;
    double mx;
    double ls = log_sum_rel(logits, n, &mx);
    for (int32_t i = 0; i < n; i++) out[i] = (float)log_softmax_one(logits[i], mx, ls);
}

void ibex_sampler_distribution(ibex_sampler *s, const float *logits, const ibex_sampler_params *p,
                               const int32_t *history, int32_t n_history, float *probs) {
    int32_t n = s->n_vocab;
    memset(probs, 0, (size_t)n * sizeof *probs);
    if (!(p->temperature > 0.0f)) {
        const float *src = logits;
        if (penalty_active(p, history, n_history)) {
            apply_penalty(s, logits, p, history, n_history);
            src = s->x;
        }
        probs[ibex_sample_greedy(src, n)] = 1.0f;
        return;
    }
    int32_t m;
    double kept = filter(s, logits, p, history, n_history, &m);
    for (int32_t i = 0; i < m; i++) probs[s->ids[i]] = (float)(s->w[s->ids[i]] / kept);
}
