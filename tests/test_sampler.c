/* test_sampler.c — the token sampler: parameter checks, the PRNG against reference
 * values, greedy equivalences, reproducibility, hand-made top-p / min-p / penalty cases,
 * logprobs, and chi-square goodness of fit of the draws against both the sampler's own
 * distribution and an independent double-precision reference written here. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

#define LN2 0.69314718055994530942

/* ---- test data and the independent reference ------------------------------------ */

/* Test-local generator (not the sampler's), uniform in [0, 1). */
static double trand(uint64_t *st) {
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*st >> 11) * 0x1.0p-53;
}

static void random_logits(float *x, int n, uint64_t seed, double scale) {
    uint64_t st = seed;
    for (int i = 0; i < n; i++) x[i] = (float)((trand(&st) + trand(&st) + trand(&st) - 1.5) * scale);
}

static const double *g_rank_key;
/* Rank order: larger key first, lower id among equals. */
static int cmp_rank(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_rank_key[i] > g_rank_key[j]) return -1;
    if (g_rank_key[i] < g_rank_key[j]) return 1;
    return (i > j) - (i < j);
}

/* The penalised logits in double, straight from the definition. */
static void ref_penalise(const float *logits, int n, const ibex_sampler_params *p, const int32_t *hist, int nh,
                         double *x) {
    for (int i = 0; i < n; i++) x[i] = logits[i];
    if (p->repeat_penalty == 1.0f || nh <= 0) return;
    int start = p->repeat_last_n > 0 && p->repeat_last_n < nh ? nh - p->repeat_last_n : 0;
    char *in = calloc((size_t)n, 1);
    for (int i = start; i < nh; i++)
        if (hist[i] >= 0 && hist[i] < n) in[hist[i]] = 1;
    for (int t = 0; t < n; t++)
        if (in[t]) x[t] = x[t] > 0 ? x[t] / p->repeat_penalty : x[t] * p->repeat_penalty;
    free(in);
}

/* The distribution the sampler should draw from, computed in double with full sorts.
 * If rank is non-NULL it receives the kept ids in draw order; returns the kept count. */
static int ref_distribution(const float *logits, int n, const ibex_sampler_params *p, const int32_t *hist, int nh,
                            double *out, int *rank) {
    double *x = malloc((size_t)n * sizeof *x), *pr = calloc((size_t)n, sizeof *pr);
    int *idx = malloc((size_t)n * sizeof *idx);
    ref_penalise(logits, n, p, hist, nh, x);
    for (int i = 0; i < n; i++) out[i] = 0, idx[i] = i;
    int keep;
    if (p->temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (x[i] > x[best]) best = i;
        out[best] = 1;
        idx[0] = best;
        keep = 1;
    } else {
        for (int i = 0; i < n; i++) x[i] /= p->temperature;
        g_rank_key = x;
        qsort(idx, (size_t)n, sizeof *idx, cmp_rank);
        int m = p->top_k > 0 && p->top_k < n ? p->top_k : n;
        double sum = 0;
        for (int i = 0; i < m; i++) sum += exp(x[idx[i]] - x[idx[0]]);
        for (int i = 0; i < m; i++) pr[idx[i]] = exp(x[idx[i]] - x[idx[0]]) / sum;
        int keep_min = m, keep_top = m;
        if (p->min_p > 0) {
            keep_min = 0;
            while (keep_min < m && !(pr[idx[keep_min]] < p->min_p * pr[idx[0]])) keep_min++;
        }
        if (p->top_p < 1.0f) {
            double cum = 0;
            for (int i = 0; i < m; i++) {
                cum += pr[idx[i]];
                if (cum >= p->top_p) {
                    keep_top = i + 1;
                    break;
                }
            }
        }
        keep = keep_min < keep_top ? keep_min : keep_top;
        double kept = 0;
        for (int i = 0; i < keep; i++) kept += pr[idx[i]];
        for (int i = 0; i < keep; i++) out[idx[i]] = pr[idx[i]] / kept;
    }
    if (rank) memcpy(rank, idx, (size_t)keep * sizeof *idx);
    free(x), free(pr), free(idx);
    return keep;
}

static ibex_sampler_params params(float t, int32_t k, float top_p, float min_p) {
    ibex_sampler_params p = ibex_sampler_default_params();
    p.temperature = t, p.top_k = k, p.top_p = top_p, p.min_p = min_p;
    return p;
}

/* ---- parameters and the PRNG ---------------------------------------------------- */

Test(sampler_params, defaults_are_greedy_and_valid) {
    ibex_sampler_params p = ibex_sampler_default_params();
    cr_assert_eq(p.temperature, 0.0f);
    cr_assert_eq(p.top_k, 0);
    cr_assert_eq(p.top_p, 1.0f);
    cr_assert_eq(p.min_p, 0.0f);
    cr_assert_eq(p.repeat_penalty, 1.0f);
    cr_assert_eq(p.repeat_last_n, 0);
    cr_assert_eq(p.seed, 0u);
    ibex_err err = {0};
    cr_assert_eq(ibex_sampler_params_check(&p, &err), IBEX_OK);
    p = params(0.8f, 40, 1.0f, 1.0f); /* closed ends of the ranges are valid */
    p.repeat_penalty = 1.3f, p.repeat_last_n = 64;
    cr_assert_eq(ibex_sampler_params_check(&p, &err), IBEX_OK);
}

Test(sampler_params, check_rejects_each_invalid_setting_by_name) {
    struct {
        const char *name;
        ibex_sampler_params p;
    } bad[12];
    int nb = 0;
    ibex_sampler_params d = ibex_sampler_default_params(), p;
#define BAD(field, value, label) p = d, p.field = value, bad[nb].name = label, bad[nb++].p = p
    BAD(top_p, 0.0f, "top_p");
    BAD(top_p, 1.5f, "top_p");
    BAD(top_p, NAN, "top_p");
    BAD(temperature, -1.0f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(temperature, INFINITY, "temperature");
    BAD(top_k, -1, "top_k");
    BAD(min_p, 2.0f, "min_p");
    BAD(min_p, -0.1f, "min_p");
    BAD(repeat_penalty, 0.0f, "repeat_penalty");
    BAD(repeat_penalty, -1.0f, "repeat_penalty");
    BAD(repeat_last_n, -1, "repeat_last_n");
#undef BAD
    for (int i = 0; i < nb; i++) {
        ibex_err err = {0};
        cr_assert_eq(ibex_sampler_params_check(&bad[i].p, &err), IBEX_ERR_INVALID, "case %d (%s)", i, bad[i].name);
        cr_assert_eq(err.status, IBEX_ERR_INVALID);
        cr_assert_not_null(strstr(err.msg, bad[i].name), "case %d: message '%s' does not name %s", i, err.msg,
                           bad[i].name);
    }
}

Test(sampler_rng, xoshiro256starstar_and_splitmix64_reference_values) {
    /* Reference outputs of xoshiro256** from state {1, 2, 3, 4} and of splitmix64
     * from 0, from the published algorithms (checked with an independent script). */
    ibex_rng r = {{1, 2, 3, 4}};
    const uint64_t want[4] = {11520u, 0u, 1509978240u, 1215971899390074240u};
    for (int i = 0; i < 4; i++) cr_assert_eq(ibex_rng_next(&r), want[i], "output %d", i);
    ibex_rng_seed(&r, 0);
    const uint64_t state[4] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full,
                               0xf88bb8a8724c81ecull};
    for (int i = 0; i < 4; i++) cr_assert_eq(r.s[i], state[i], "seeded word %d", i);
    const uint64_t out[3] = {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull};
    for (int i = 0; i < 3; i++) cr_assert_eq(ibex_rng_next(&r), out[i], "seeded output %d", i);
}

Test(sampler_rng, uniform_uses_the_top_53_bits) {
    ibex_rng r, c;
    ibex_rng_seed(&r, 12345);
    double sum = 0, lo = 1, hi = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        c = r;
        uint64_t bits = ibex_rng_next(&c) >> 11;
        double u = ibex_rng_uniform(&r);
        cr_assert_eq(memcmp(&c, &r, sizeof r), 0, "one uniform is one step");
        cr_assert_eq(u, (double)bits / 9007199254740992.0);
        cr_assert(u >= 0 && u < 1);
        sum += u, lo = fmin(lo, u), hi = fmax(hi, u);
    }
    cr_assert(fabs(sum / n - 0.5) < 0.005, "mean %f", sum / n);
    cr_assert(lo < 1e-4 && hi > 1 - 1e-4);
}

Test(sampler_rng, new_rejects_empty_vocab) {
    cr_assert_null(ibex_sampler_new(0));
    cr_assert_null(ibex_sampler_new(-5));
    ibex_sampler_free(NULL);
}

/* ---- greedy equivalences, rng use, reproducibility ------------------------------ */

Test(sampler_draw, top_k_1_and_tiny_temperature_equal_greedy) {
    const int n = 3000;
    float *x = malloc(n * sizeof *x);
    ibex_sampler *s = ibex_sampler_new(n);
    cr_assert_not_null(s);
    ibex_rng r;
    ibex_rng_seed(&r, 7);
    for (int c = 0; c < 200; c++) {
        random_logits(x, n, 1000 + (uint64_t)c, 4.0 + c % 7);
        int32_t g = ibex_sample_greedy(x, n);
        ibex_sampler_params p = params(0.5f + (float)(c % 4), 1, 1.0f, 0.0f);
        cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, NULL, 0, NULL), g, "top-k 1, case %d", c);
        p = params(1e-6f, 0, 1.0f, 0.0f);
        cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, NULL, 0, NULL), g, "T=1e-6, case %d", c);
        p = params(1e-6f, 0, 0.95f, 0.05f);
        cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, NULL, 0, NULL), g, "T=1e-6 with top-p/min-p, case %d", c);
    }
    ibex_sampler_free(s);
    free(x);
}

Test(sampler_draw, rng_advances_one_step_when_sampling_and_never_when_greedy) {
    const int n = 100;
    float x[100];
    random_logits(x, n, 5, 3.0);
    ibex_sampler *s = ibex_sampler_new(n);
    ibex_rng r, c;
    ibex_rng_seed(&r, 99);
    ibex_sampler_params greedy = ibex_sampler_default_params();
    c = r;
    cr_assert_eq(ibex_sampler_sample(s, x, &greedy, &r, NULL, 0, NULL), ibex_sample_greedy(x, n));
    cr_assert_eq(memcmp(&c, &r, sizeof r), 0, "greedy touched the rng");
    ibex_sampler_params settings[3] = {params(1.0f, 0, 1.0f, 0.0f), params(0.7f, 1, 1.0f, 0.0f),
                                       params(1.2f, 10, 0.5f, 0.2f)};
    for (int i = 0; i < 3; i++) {
        c = r;
        ibex_rng_next(&c);
        ibex_sampler_sample(s, x, &settings[i], &r, NULL, 0, NULL);
        cr_assert_eq(memcmp(&c, &r, sizeof r), 0, "setting %d did not advance the rng by exactly one", i);
    }
    ibex_sampler_free(s);
}

/* Generates a sequence feeding each token back into the history, as a decode loop does. */
static void gen_sequence(ibex_sampler *s, int n, uint64_t seed, int32_t *out, int len) {
    float *x = malloc((size_t)n * sizeof *x);
    ibex_sampler_params p = params(0.9f, 50, 0.95f, 0.02f);
    p.repeat_penalty = 1.2f, p.repeat_last_n = 16, p.seed = seed;
    ibex_rng r;
    ibex_rng_seed(&r, p.seed);
    for (int i = 0; i < len; i++) {
        random_logits(x, n, 77 + (uint64_t)i, 2.0);
        out[i] = ibex_sampler_sample(s, x, &p, &r, out, i, NULL);
    }
    free(x);
}

Test(sampler_draw, same_seed_same_tokens_different_seed_different_tokens) {
    const int n = 5000, len = 200;
    int32_t a[200], b[200], c[200];
    ibex_sampler *s1 = ibex_sampler_new(n), *s2 = ibex_sampler_new(n);
    gen_sequence(s1, n, 42, a, len);
    gen_sequence(s1, n, 43, c, len);
    gen_sequence(s2, n, 42, b, len); /* a fresh sampler: no state carried between calls */
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "same seed gave different tokens");
    int diff = 0;
    for (int i = 0; i < len; i++) diff += a[i] != c[i];
    cr_assert_gt(diff, len / 4, "seeds 42 and 43 differ at only %d of %d positions", diff, len);
    int distinct = 0;
    for (int i = 0; i < len; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= a[j] == a[i];
        distinct += !seen;
    }
    cr_assert_gt(distinct, 20, "the sequence is not random (%d distinct tokens)", distinct);
    ibex_sampler_free(s1), ibex_sampler_free(s2);
}

/* ---- hand-made top-p, min-p and penalty cases ----------------------------------- */

/* Asserts the sampler's distribution equals want (0 exactly where want is 0). */
static void expect_distribution(const float *logits, int n, ibex_sampler_params p, const int32_t *hist, int nh,
                                const double *want, const char *what) {
    ibex_sampler *s = ibex_sampler_new(n);
    float got[64];
    ibex_sampler_distribution(s, logits, &p, hist, nh, got);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(got[i] == 0, want[i] == 0, "%s: token %d kept=%d, want kept=%d", what, i, got[i] != 0,
                     want[i] != 0);
        cr_assert_float_eq(got[i], want[i], 2e-6, "%s: token %d prob %.8f want %.8f", what, i, (double)got[i],
                           want[i]);
    }
    ibex_sampler_free(s);
}

Test(sampler_filter, top_p_keeps_the_smallest_set_reaching_p) {
    /* Probabilities 0.3, 0.05, 0.5, 0.15 (rank order 2, 0, 3, 1). */
    float x[4] = {logf(0.3f), logf(0.05f), logf(0.5f), logf(0.15f)};
    double w1[4] = {0.3 / 0.8, 0, 0.5 / 0.8, 0};
    expect_distribution(x, 4, params(1, 0, 0.7f, 0), NULL, 0, w1, "top_p 0.7");
    double w2[4] = {0.3 / 0.95, 0, 0.5 / 0.95, 0.15 / 0.95};
    expect_distribution(x, 4, params(1, 0, 0.85f, 0), NULL, 0, w2, "top_p 0.85");
    double w3[4] = {0, 0, 1, 0};
    expect_distribution(x, 4, params(1, 0, 0.2f, 0), NULL, 0, w3, "top_p 0.2");
    double w4[4] = {0.3, 0.05, 0.5, 0.15};
    expect_distribution(x, 4, params(1, 0, 0.99f, 0), NULL, 0, w4, "top_p 0.99");
    expect_distribution(x, 4, params(1, 0, 1.0f, 0), NULL, 0, w4, "top_p 1");
}

Test(sampler_filter, top_p_boundary_and_ties) {
    /* Four equal logits: probabilities exactly 0.25, cumulative sums exact. */
    float u[4] = {0, 0, 0, 0};
    double half[4] = {0.5, 0.5, 0, 0};
    expect_distribution(u, 4, params(1, 0, 0.5f, 0), NULL, 0, half, "cumulative exactly 0.5");
    double three[4] = {1.0 / 3, 1.0 / 3, 1.0 / 3, 0};
    expect_distribution(u, 4, params(1, 0, 0.75f, 0), NULL, 0, three, "cumulative exactly 0.75");
    double all[4] = {0.25, 0.25, 0.25, 0.25};
    expect_distribution(u, 4, params(1, 0, 0.7500001f, 0), NULL, 0, all, "just past 0.75");
    double one[4] = {1, 0, 0, 0};
    expect_distribution(u, 4, params(1, 0, 0.25f, 0), NULL, 0, one, "cumulative exactly 0.25");
    /* Probabilities 1/8, 3/8, 1/8, 3/8: ties at the boundary go to the lower id. */
    float t[4] = {0, logf(3), 0, logf(3)};
    double a[4] = {0, 0.5, 0, 0.5};
    expect_distribution(t, 4, params(1, 0, 0.5f, 0), NULL, 0, a, "tied pair");
    double b[4] = {1.0 / 7, 3.0 / 7, 0, 3.0 / 7};
    expect_distribution(t, 4, params(1, 0, 0.8f, 0), NULL, 0, b, "lower id of a tie");
}

Test(sampler_filter, top_k_ties_keep_lower_ids) {
    float x[6] = {1, 2, 1, 2, 1, 0};
    double e1 = exp(1.0), e2 = exp(2.0);
    double w[6] = {e1, e2, 0, e2, 0, 0}, sum = 2 * e2 + e1;
    for (int i = 0; i < 6; i++) w[i] /= sum;
    expect_distribution(x, 6, params(1, 3, 1, 0), NULL, 0, w, "top_k 3");
    double all[6];
    double z = 2 * e2 + 3 * e1 + 1;
    for (int i = 0; i < 6; i++) all[i] = exp(x[i]) / z;
    expect_distribution(x, 6, params(1, 6, 1, 0), NULL, 0, all, "top_k = n");
    expect_distribution(x, 6, params(1, 100, 1, 0), NULL, 0, all, "top_k > n");
}

Test(sampler_filter, min_p_drops_exactly_the_expected_tokens) {
    float x[5] = {logf(0.4f), logf(0.2f), logf(0.1f), logf(0.05f), logf(0.25f)};
    double a[5] = {0.4 / 0.85, 0.2 / 0.85, 0, 0, 0.25 / 0.85}; /* 0.3 · 0.4 = 0.12 */
    expect_distribution(x, 5, params(1, 0, 1, 0.3f), NULL, 0, a, "min_p 0.3");
    double b[5] = {0.4 / 0.95, 0.2 / 0.95, 0.1 / 0.95, 0, 0.25 / 0.95}; /* 0.08 */
    expect_distribution(x, 5, params(1, 0, 1, 0.2f), NULL, 0, b, "min_p 0.2");
    double c[5] = {1, 0, 0, 0, 0};
    expect_distribution(x, 5, params(1, 0, 1, 1.0f), NULL, 0, c, "min_p 1");
    float eq[3] = {2, 2, 1};
    double d[3] = {0.5, 0.5, 0};
    expect_distribution(eq, 3, params(1, 0, 1, 1.0f), NULL, 0, d, "min_p 1 keeps every maximum");
    /* min-p and top-p both judge the same softmax: the kept set is their intersection. */
    double e[5] = {0.4 / 0.65, 0, 0, 0, 0.25 / 0.65};
    expect_distribution(x, 5, params(1, 0, 0.6f, 0.2f), NULL, 0, e, "top_p 0.6 with min_p 0.2");
    /* At temperature 2, p ∝ sqrt(p0): 0.05 -> sqrt(0.125) · p_max ≈ 0.354 p_max. */
    double f[5], sum = 0;
    const double p0[5] = {0.4, 0.2, 0.1, 0.05, 0.25};
    for (int i = 0; i < 5; i++) f[i] = i == 3 ? 0 : sqrt(p0[i]), sum += f[i];
    for (int i = 0; i < 5; i++) f[i] /= sum;
    expect_distribution(x, 5, params(2, 0, 1, 0.4f), NULL, 0, f, "min_p 0.4 at T=2");
}

Test(sampler_filter, repetition_penalty_hand_values) {
    float x[6] = {2, -1, 0.5f, 3, -2, 1};
    ibex_sampler_params p = params(1, 0, 1, 0);
    p.repeat_penalty = 2;
    const int32_t hist[7] = {0, 1, 1, 4, 3, -1, 600}; /* out-of-vocabulary ids are ignored */
    /* Whole history: 2 -> 1, -1 -> -2 (once, though it repeats), -2 -> -4, 3 -> 1.5. */
    const double full[6] = {1, -2, 0.5, 1.5, -4, 1};
    /* Last 3 entries (3, -1, 600): only token 3. */
    const double last3[6] = {2, -1, 0.5, 1.5, -2, 1};
    const double *cases[2] = {full, last3};
    const int32_t window[2] = {0, 3};
    for (int c = 0; c < 2; c++) {
        double want[6], sum = 0;
        for (int i = 0; i < 6; i++) sum += exp(cases[c][i]);
        for (int i = 0; i < 6; i++) want[i] = exp(cases[c][i]) / sum;
        p.repeat_last_n = window[c];
        expect_distribution(x, 6, p, hist, 7, want, c ? "penalty, window 3" : "penalty, whole history");
    }
    /* Penalty 0.5 (< 1) rewards instead: 3 -> 6. */
    p.repeat_penalty = 0.5f, p.repeat_last_n = 1;
    const int32_t h1[1] = {3};
    double want[6], sum = 0;
    const double rewarded[6] = {2, -1, 0.5, 6, -2, 1};
    for (int i = 0; i < 6; i++) sum += exp(rewarded[i]);
    for (int i = 0; i < 6; i++) want[i] = exp(rewarded[i]) / sum;
    expect_distribution(x, 6, p, h1, 1, want, "penalty 0.5");
}

Test(sampler_filter, greedy_uses_the_penalised_logits) {
    float x[3] = {2.9f, 0, 3.0f};
    ibex_sampler *s = ibex_sampler_new(3);
    ibex_rng r;
    ibex_rng_seed(&r, 1);
    ibex_sampler_params p = ibex_sampler_default_params();
    p.repeat_penalty = 1.1f;
    const int32_t h[2] = {2, 0};
    cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, NULL, 0, NULL), 2);
    cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, h, 1, NULL), 0, "3.0 / 1.1 < 2.9");
    p.repeat_last_n = 1;
    cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, h, 2, NULL), 2, "only token 0 is in the window");
    float probs[3];
    p.repeat_last_n = 0;
    ibex_sampler_distribution(s, x, &p, h, 1, probs);
    cr_assert(probs[0] == 1 && probs[1] == 0 && probs[2] == 0, "greedy distribution is one-hot on token 0");
    ibex_sampler_free(s);
}

/* ---- logprobs and log-softmax --------------------------------------------------- */

Test(sampler_logprob, equals_log_softmax_of_penalised_scaled_logits) {
    const int n = 1000;
    float *x = malloc(n * sizeof *x);
    double *ref = malloc(n * sizeof *ref);
    ibex_sampler *s = ibex_sampler_new(n);
    ibex_rng r;
    ibex_rng_seed(&r, 3);
    int32_t hist[64];
    for (int i = 0; i < 64; i++) hist[i] = (i * 37) % 200;
    ibex_sampler_params settings[4] = {params(0.8f, 50, 0.9f, 0), params(1.5f, 0, 1, 0.01f), params(1, 1, 1, 0),
                                       params(0, 0, 1, 0)};
    for (int c = 0; c < 40; c++) {
        random_logits(x, n, 500 + (uint64_t)c, 6.0);
        ibex_sampler_params p = settings[c % 4];
        p.repeat_penalty = c % 3 ? 1.3f : 1.0f, p.repeat_last_n = 32;
        float lp = 1;
        int32_t tok = ibex_sampler_sample(s, x, &p, &r, hist, 64, &lp);
        /* Header: the full unfiltered softmax of the penalised, scaled logits;
         * temperature 0: of the raw logits. */
        if (p.temperature > 0)
            ref_penalise(x, n, &p, hist, 64, ref);
        else
            for (int i = 0; i < n; i++) ref[i] = x[i];
        double mx = -INFINITY, sum = 0, scale = p.temperature > 0 ? p.temperature : 1;
        for (int i = 0; i < n; i++) mx = fmax(mx, ref[i] / scale);
        for (int i = 0; i < n; i++) sum += exp(ref[i] / scale - mx);
        double want = ref[tok] / scale - mx - log(sum);
        cr_assert_float_eq(lp, want, 1e-4, "case %d: logprob %f want %f", c, (double)lp, want);
        if (p.top_k == 1) cr_assert_lt(lp, -0.01, "top-k 1 must not report log 1");
    }
    ibex_sampler_free(s);
    free(x), free(ref);
}

Test(sampler_logprob, log_softmax_normalises_and_is_stable) {
    const int n = 1000;
    float *x = malloc(n * sizeof *x), *o = malloc(n * sizeof *o);
    random_logits(x, n, 11, 30.0);
    ibex_log_softmax(o, x, n);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)o[i]);
    cr_assert_float_eq(sum, 1.0, 1e-5);
    for (int i = 1; i < n; i++)
        cr_assert_float_eq(o[i] - o[0], x[i] - x[0], 1e-3, "differences kept at %d", i);
    float big[4] = {1e4f, -1e4f, 1e4f, 0};
    ibex_log_softmax(big, big, 4); /* in place */
    const double want[4] = {-LN2, -2e4 - LN2, -LN2, -1e4 - LN2};
    for (int i = 0; i < 4; i++) {
        cr_assert(isfinite(big[i]), "entry %d not finite", i);
        cr_assert_float_eq(big[i], want[i], 1e-3, "entry %d: %f", i, (double)big[i]);
    }
    float neg[2] = {-1e4f, -1e4f}, out[2];
    ibex_log_softmax(out, neg, 2);
    cr_assert_float_eq(out[0], -LN2, 1e-6);
    cr_assert_float_eq(out[1], -LN2, 1e-6);
    free(x), free(o);
}

/* Greedy at a real vocabulary size (32000, not a multiple of the 16 lanes plus a tail)
 * against a one-pass reference: the lowest index of the maximum, NaN never winning, ±0
 * equal, ±inf, a maximum in the scalar tail; and the greedy logprob against a
 * double-precision log-softmax to 1e-5 (catches a lane maximum taking a NaN, a second
 * pass returning the last index, a dropped tail block or lane in the log-sum-exp). */
Test(sampler_logprob, greedy_argmax_and_logprob_on_a_large_vocab) {
    const int n = 32003;
    float *x = malloc(n * sizeof *x);
    ibex_sampler *s = ibex_sampler_new(n);
    ibex_sampler_params p = ibex_sampler_default_params();
    ibex_rng r;
    ibex_rng_seed(&r, 1);
    for (int c = 0; c < 24; c++) {
        random_logits(x, n, 900 + (uint64_t)c, 8.0);
        uint64_t st = 77 + (uint64_t)c;
        const int a = (int)(trand(&st) * n), b = (int)(trand(&st) * n);
        switch (c % 8) {
        case 1: x[a] = 40, x[b] = 40; break;              /* a tie: the lower index */
        case 2: x[a] = NAN, x[b] = 50; break;              /* NaN never wins */
        case 3: x[n - 1] = 60; break;                      /* the scalar tail */
        case 4: x[a] = INFINITY; break;
        case 5: for (int i = 0; i < n; i++) x[i] = i % 3 ? NAN : -INFINITY; break;
        case 6: for (int i = 0; i < n; i++) x[i] = i % 2 ? 0.0f : -0.0f; x[a] = NAN; break;
        case 7: x[0] = NAN; break;
        default: break;
        }
        int want = -1;
        for (int i = 0; i < n; i++)
            if (x[i] == x[i] && (want < 0 || x[i] > x[want])) want = i;
        if (want < 0) want = 0;
        float lp = 1;
        const int32_t got = ibex_sampler_sample(s, x, &p, &r, NULL, 0, &lp);
        cr_assert_eq(got, want, "case %d: greedy %d, reference %d", c, got, want);
        cr_assert_eq(ibex_sample_greedy(x, n), want, "case %d: ibex_sample_greedy", c);
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++)
            if (x[i] == x[i] && x[i] > mx) mx = x[i];
        for (int i = 0; i < n; i++)
            if (x[i] == x[i]) sum += x[i] == mx ? 1.0 : exp((double)x[i] - mx);
        const double ref = x[want] == mx ? -log(sum) : (double)x[want] - mx - log(sum);
        if (isfinite(ref))
            cr_assert(fabs(lp - ref) <= 1e-5 * fmax(1.0, fabs(ref)), "case %d: logprob %.9f, reference %.9f", c,
                      (double)lp, ref);
        else
            cr_assert(lp == (float)ref, "case %d: logprob %f, reference %f", c, (double)lp, ref);
    }
    ibex_sampler_free(s);
    free(x);
}

/* ---- agreement with the reference on large vocabularies ------------------------- */

static const ibex_sampler_params *big_settings(int *count) {
    static ibex_sampler_params set[7];
    set[0] = params(1.0f, 0, 1, 0);
    set[1] = params(0.8f, 40, 1, 0);
    set[2] = params(1.0f, 0, 0.95f, 0);
    set[3] = params(1.1f, 0, 1, 0.02f);
    set[4] = params(0.7f, 200, 0.9f, 0.01f);
    set[5] = params(1.3f, 0, 0.5f, 0.001f);
    set[6] = params(1.0f, 5000, 0.99f, 0);
    set[6].repeat_penalty = 1.5f, set[6].repeat_last_n = 100;
    *count = 7;
    return set;
}

Test(sampler_draw, distribution_matches_reference_on_large_vocab) {
    const int n = 128256;
    float *x = malloc(n * sizeof *x), *got = malloc(n * sizeof *got);
    double *want = malloc(n * sizeof *want);
    int32_t hist[300];
    for (int i = 0; i < 300; i++) hist[i] = (i * 7919) % n;
    ibex_sampler *s = ibex_sampler_new(n);
    int ns;
    const ibex_sampler_params *set = big_settings(&ns);
    for (int c = 0; c < ns; c++) {
        random_logits(x, n, 900 + (uint64_t)c, 8.0);
        ibex_sampler_distribution(s, x, &set[c], hist, 300, got);
        int kept = ref_distribution(x, n, &set[c], hist, 300, want, NULL);
        int got_kept = 0;
        double sum = 0;
        for (int i = 0; i < n; i++) {
            cr_assert_eq(got[i] != 0, want[i] != 0, "setting %d: token %d kept %d, want %d", c, i, got[i] != 0,
                         want[i] != 0);
            cr_assert(fabs(got[i] - want[i]) <= 1e-6 + 1e-4 * want[i], "setting %d token %d: %g vs %g", c, i,
                      (double)got[i], want[i]);
            got_kept += got[i] != 0, sum += got[i];
        }
        cr_assert_eq(got_kept, kept);
        cr_assert_float_eq(sum, 1.0, 1e-4, "setting %d sums to %f", c, sum);
    }
    ibex_sampler_free(s);
    free(x), free(got), free(want);
}

Test(sampler_draw, draw_is_inverse_cdf_in_rank_order) {
    const int n = 50000;
    float *x = malloc(n * sizeof *x);
    double *want = malloc(n * sizeof *want);
    int *rank = malloc(n * sizeof *rank);
    ibex_sampler *s = ibex_sampler_new(n);
    ibex_rng r, c;
    ibex_rng_seed(&r, 2024);
    int ns, near = 0;
    const ibex_sampler_params *set = big_settings(&ns);
    for (int k = 0; k < ns; k++) {
        random_logits(x, n, 1900 + (uint64_t)k, 5.0);
        int kept = ref_distribution(x, n, &set[k], NULL, 0, want, rank);
        for (int d = 0; d < 150; d++) {
            c = r;
            double u = ibex_rng_uniform(&c);
            int32_t tok = ibex_sampler_sample(s, x, &set[k], &r, NULL, 0, NULL);
            double cum = 0, lo = 0;
            int expect = rank[kept - 1];
            for (int i = 0; i < kept; i++) {
                lo = cum, cum += want[rank[i]];
                if (cum > u) {
                    expect = rank[i];
                    break;
                }
            }
            if (tok != expect) { /* allowed only where float and double disagree on a boundary */
                cr_assert(fmin(fabs(u - lo), fabs(u - cum)) < 1e-6, "setting %d draw %d: token %d, want %d (u=%.9f)",
                          k, d, tok, expect, u);
                near++;
            }
        }
    }
    cr_assert_leq(near, 2);
    ibex_sampler_free(s);
    free(x), free(want), free(rank);
}

/* ---- chi-square goodness of fit ------------------------------------------------- */

/* Pearson's statistic of counts against probabilities, cells with expected count < 5
 * pooled into one; *df gets cells − 1. */
static double chi_square(const long *counts, const double *prob, int n, long draws, int *df) {
    double stat = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        double e = prob[i] * (double)draws;
        if (prob[i] == 0) continue;
        if (e < 5) {
            pool_e += e, pool_o += (double)counts[i];
            continue;
        }
        stat += ((double)counts[i] - e) * ((double)counts[i] - e) / e, cells++;
    }
    if (pool_e > 0) stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, cells++;
    *df = cells - 1;
    return stat;
}

static void check_fit(ibex_sampler_params p, const int32_t *hist, int nh, uint64_t logit_seed) {
    enum { N_VOCAB = 20 };
    const long draws = 200000;
    float x[N_VOCAB], dist[N_VOCAB];
    double ref[N_VOCAB], fdist[N_VOCAB];
    long counts[N_VOCAB] = {0};
    random_logits(x, N_VOCAB, logit_seed, 2.5);
    ibex_sampler *s = ibex_sampler_new(N_VOCAB);
    ibex_sampler_distribution(s, x, &p, hist, nh, dist);
    int kept = ref_distribution(x, N_VOCAB, &p, hist, nh, ref, NULL);
    cr_assert_gt(kept, 2, "setting keeps too few tokens to test");
    for (int i = 0; i < N_VOCAB; i++) {
        fdist[i] = dist[i];
        cr_assert_eq(dist[i] != 0, ref[i] != 0, "token %d: kept %d, reference %d", i, dist[i] != 0, ref[i] != 0);
        cr_assert_float_eq(dist[i], ref[i], 1e-5, "token %d: %f vs reference %f", i, (double)dist[i], ref[i]);
    }
    ibex_rng r;
    ibex_rng_seed(&r, p.seed);
    for (long d = 0; d < draws; d++) {
        int32_t t = ibex_sampler_sample(s, x, &p, &r, hist, nh, NULL);
        cr_assert(t >= 0 && t < N_VOCAB);
        counts[t]++;
    }
    for (int i = 0; i < N_VOCAB; i++)
        if (ref[i] == 0) cr_assert_eq(counts[i], 0, "dropped token %d drawn %ld times", i, counts[i]);
    int df;
    double stat = chi_square(counts, ref, N_VOCAB, draws, &df);
    double bound = df + 4 * sqrt(2.0 * df) + 10; /* above the 0.999 quantile for these df */
    cr_assert_lt(stat, bound, "chi-square vs reference %.1f >= %.1f (df %d)", stat, bound, df);
    stat = chi_square(counts, fdist, N_VOCAB, draws, &df);
    bound = df + 4 * sqrt(2.0 * df) + 10;
    cr_assert_lt(stat, bound, "chi-square vs ibex_sampler_distribution %.1f >= %.1f (df %d)", stat, bound, df);
    ibex_sampler_free(s);
}

Test(sampler_fit, temperature_0_7) {
    ibex_sampler_params p = params(0.7f, 0, 1, 0);
    p.seed = 1;
    check_fit(p, NULL, 0, 31);
}

Test(sampler_fit, top_k_5) {
    ibex_sampler_params p = params(1, 5, 1, 0);
    p.seed = 2;
    check_fit(p, NULL, 0, 32);
}

Test(sampler_fit, top_p_0_9) {
    ibex_sampler_params p = params(1, 0, 0.9f, 0);
    p.seed = 3;
    check_fit(p, NULL, 0, 33);
}

Test(sampler_fit, min_p_0_1) {
    ibex_sampler_params p = params(1, 0, 1, 0.1f);
    p.seed = 4;
    check_fit(p, NULL, 0, 34);
}

Test(sampler_fit, combined_filters) {
    ibex_sampler_params p = params(1.3f, 12, 0.8f, 0.05f);
    p.seed = 5;
    check_fit(p, NULL, 0, 35);
}

Test(sampler_fit, penalty_with_filters) {
    ibex_sampler_params p = params(0.9f, 10, 0.95f, 0.02f);
    p.repeat_penalty = 1.8f, p.repeat_last_n = 4, p.seed = 6;
    const int32_t hist[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    check_fit(p, hist, 8, 36);
}
