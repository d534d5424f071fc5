/* test_metrics.c — the metric definitions (harness/metrics.h) against values worked
 * out by hand in the comments, and the Mann–Whitney p-values against scipy 1.x
 * (scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")),
 * computed once while developing and hard-coded here. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "harness/metrics.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

#define NEAR(got, want, tol)                                                                       \
    cr_expect(fabs((double)(got) - (double)(want)) <= (tol), "%s = %.17g, want %.17g (tol %g)",    \
              #got, (double)(got), (double)(want), (double)(tol))

/* ---------------------------------------------------------------- percentiles */

Test(metrics, percentile_hand_values)
{
    /* h = q/100 * 3: p50 -> h=1.5 -> 2 + 0.5 = 2.5; p90 -> h=2.7 -> 3 + 0.7 = 3.7;
     * p25 -> h=0.75 -> 1.75; p0 = min; p100 = max. */
    const double s[] = {1, 2, 3, 4};
    NEAR(ibex_percentile_sorted(s, 4, 50), 2.5, 1e-12);
    NEAR(ibex_percentile_sorted(s, 4, 90), 3.7, 1e-12);
    NEAR(ibex_percentile_sorted(s, 4, 25), 1.75, 1e-12);
    NEAR(ibex_percentile_sorted(s, 4, 0), 1.0, 0);
    NEAR(ibex_percentile_sorted(s, 4, 100), 4.0, 0);
    cr_expect(isnan(ibex_percentile_sorted(s, 0, 50)));
    cr_expect(isnan(ibex_percentile_sorted(s, 4, -1)));
    cr_expect(isnan(ibex_percentile_sorted(s, 4, 100.5)));
    cr_expect(isnan(ibex_percentile_sorted(s, 4, NAN)));
}

Test(metrics, percentile_unsorted_not_modified)
{
    double x[] = {4, 1, 3, 2};
    const double orig[] = {4, 1, 3, 2};
    double p = 0;
    ibex_err e = {0};
    cr_assert_eq(ibex_percentile(x, 4, 90, &p, &e), IBEX_OK, "%s", e.msg);
    NEAR(p, 3.7, 1e-12);
    cr_expect(memcmp(x, orig, sizeof x) == 0, "caller's array was modified");
    cr_assert_eq(ibex_percentile(x, 4, 50, &p, &e), IBEX_OK);
    NEAR(p, 2.5, 1e-12);
}

Test(metrics, percentile_duplicates_and_edges)
{
    /* sorted [1,5,5,5]: p10 -> h=0.3 -> 1 + 0.3*4 = 2.2; p50 -> h=1.5 -> 5. */
    const double x[] = {5, 5, 1, 5};
    double p = 0;
    cr_assert_eq(ibex_percentile(x, 4, 10, &p, NULL), IBEX_OK);
    NEAR(p, 2.2, 1e-12);
    cr_assert_eq(ibex_percentile(x, 4, 50, &p, NULL), IBEX_OK);
    NEAR(p, 5.0, 0);
    /* n = 1: every percentile is the value. */
    const double one[] = {7.25};
    for (double q = 0; q <= 100; q += 12.5) {
        cr_assert_eq(ibex_percentile(one, 1, q, &p, NULL), IBEX_OK);
        NEAR(p, 7.25, 0);
    }
    /* n = 0 and all-NaN give NaN, not an error. */
    cr_assert_eq(ibex_percentile(NULL, 0, 50, &p, NULL), IBEX_OK);
    cr_expect(isnan(p));
    const double nans[] = {NAN, NAN};
    cr_assert_eq(ibex_percentile(nans, 2, 50, &p, NULL), IBEX_OK);
    cr_expect(isnan(p));
    /* NaN entries are skipped: [NaN, 4, 1, NaN, 3, 2] behaves as [1,2,3,4]. */
    const double mixed[] = {NAN, 4, 1, NAN, 3, 2};
    cr_assert_eq(ibex_percentile(mixed, 6, 90, &p, NULL), IBEX_OK);
    NEAR(p, 3.7, 1e-12);
    /* q outside [0, 100] is an error and leaves *out alone. */
    ibex_err e = {0};
    p = 123;
    cr_expect_eq(ibex_percentile(x, 4, 101, &p, &e), IBEX_ERR_INVALID);
    cr_expect_eq(e.status, IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "101") != NULL, "message: %s", e.msg);
    cr_expect_eq(p, 123);
    cr_expect_eq(ibex_percentile(x, 4, -0.5, &p, NULL), IBEX_ERR_INVALID);
}

/* ---------------------------------------------------------------- summaries */

Test(metrics, summary_hand_values)
{
    /* [2,4,4,4,5,5,7,9]: mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32;
     * sd = sqrt(32/7) = 2.1380899352993950; p50 h=3.5 -> 4.5; p90 h=6.3 -> 7 + 0.3*2 = 7.6;
     * p99 h=6.93 -> 7 + 0.93*2 = 8.86. Given unsorted. */
    double x[] = {9, 4, 5, 2, 7, 4, 5, 4};
    const double orig[] = {9, 4, 5, 2, 7, 4, 5, 4};
    ibex_summary s;
    cr_assert_eq(ibex_summarize(x, 8, &s, NULL), IBEX_OK);
    cr_expect_eq(s.count, 8);
    NEAR(s.mean, 5.0, 1e-12);
    NEAR(s.sd, sqrt(32.0 / 7.0), 1e-12);
    NEAR(s.sd, 2.1380899352993950, 1e-12);
    NEAR(s.min, 2.0, 0);
    NEAR(s.max, 9.0, 0);
    NEAR(s.p50, 4.5, 1e-12);
    NEAR(s.p90, 7.6, 1e-12);
    NEAR(s.p99, 8.86, 1e-12);
    cr_expect(memcmp(x, orig, sizeof x) == 0, "caller's array was modified");
}

Test(metrics, summary_small_n)
{
    ibex_summary s;
    cr_assert_eq(ibex_summarize(NULL, 0, &s, NULL), IBEX_OK);
    cr_expect_eq(s.count, 0);
    cr_expect(isnan(s.mean) && isnan(s.sd) && isnan(s.min) && isnan(s.max));
    cr_expect(isnan(s.p50) && isnan(s.p90) && isnan(s.p99));

    const double one[] = {3.5};
    cr_assert_eq(ibex_summarize(one, 1, &s, NULL), IBEX_OK);
    cr_expect_eq(s.count, 1);
    NEAR(s.mean, 3.5, 0);
    NEAR(s.sd, 0.0, 0);
    NEAR(s.min, 3.5, 0);
    NEAR(s.max, 3.5, 0);
    NEAR(s.p50, 3.5, 0);
    NEAR(s.p99, 3.5, 0);

    /* NaN skipped: [1, NaN, 3] is [1, 3]: mean 2, sd sqrt(2), count 2. */
    const double two[] = {1, NAN, 3};
    cr_assert_eq(ibex_summarize(two, 3, &s, NULL), IBEX_OK);
    cr_expect_eq(s.count, 2);
    NEAR(s.mean, 2.0, 1e-12);
    NEAR(s.sd, sqrt(2.0), 1e-12);
    NEAR(s.p50, 2.0, 1e-12);

    /* Large offsets: a naive sum-of-squares formula loses every digit here. */
    const double big[] = {1e9 + 1, 1e9 + 2, 1e9 + 3};
    cr_assert_eq(ibex_summarize(big, 3, &s, NULL), IBEX_OK);
    NEAR(s.sd, 1.0, 1e-6);

    cr_expect_eq(ibex_summarize(NULL, 2, &s, NULL), IBEX_ERR_INVALID);
}

/* ---------------------------------------------------------------- per request */

Test(metrics, request_latencies)
{
    /* arrival 1.0, tokens at 1.5, 1.75, 2.0, 2.5:
     * TTFT = 0.5, E2E = 1.5, TPOT = (1.5 - 0.5) / 3 = 1/3, ITL = 0.25, 0.25, 0.5. */
    const double t[] = {1.5, 1.75, 2.0, 2.5};
    ibex_request_times r = {.arrival = 1.0, .token_times = t, .n_out = 4, .n_in = 12};
    ibex_request_metrics m;
    ibex_err e = {0};
    cr_assert_eq(ibex_request_metrics_compute(&r, &m, &e), IBEX_OK, "%s", e.msg);
    NEAR(m.ttft, 0.5, 1e-12);
    NEAR(m.e2e, 1.5, 1e-12);
    NEAR(m.tpot, 1.0 / 3.0, 1e-12);
    cr_expect_eq(m.n_out, 4);
    cr_expect_eq(m.n_in, 12);
    double gaps[3] = {0};
    cr_assert_eq(ibex_request_itl(&r, gaps), 3);
    NEAR(gaps[0], 0.25, 1e-12);
    NEAR(gaps[1], 0.25, 1e-12);
    NEAR(gaps[2], 0.5, 1e-12);

    /* Non-dyadic times: arrival 10.0, tokens 10.3, 10.4, 10.9 ->
     * TTFT 0.3, E2E 0.9, TPOT (0.9 - 0.3) / 2 = 0.3. */
    const double t2[] = {10.3, 10.4, 10.9};
    r = (ibex_request_times){.arrival = 10.0, .token_times = t2, .n_out = 3};
    cr_assert_eq(ibex_request_metrics_compute(&r, &m, NULL), IBEX_OK);
    NEAR(m.ttft, 0.3, 1e-9);
    NEAR(m.e2e, 0.9, 1e-9);
    NEAR(m.tpot, 0.3, 1e-9);
}

Test(metrics, request_one_and_zero_tokens)
{
    /* One token: TTFT = E2E = 0.75, TPOT undefined, no ITL gap. */
    const double t[] = {2.75};
    ibex_request_times r = {.arrival = 2.0, .token_times = t, .n_out = 1};
    ibex_request_metrics m;
    cr_assert_eq(ibex_request_metrics_compute(&r, &m, NULL), IBEX_OK);
    NEAR(m.ttft, 0.75, 1e-12);
    NEAR(m.e2e, 0.75, 1e-12);
    cr_expect(isnan(m.tpot));
    double gap = -1;
    cr_expect_eq(ibex_request_itl(&r, &gap), 0);
    cr_expect_eq(gap, -1);

    r = (ibex_request_times){.arrival = 2.0, .token_times = NULL, .n_out = 0};
    cr_assert_eq(ibex_request_metrics_compute(&r, &m, NULL), IBEX_OK);
    cr_expect(isnan(m.ttft) && isnan(m.e2e) && isnan(m.tpot));
}

Test(metrics, request_invalid)
{
    ibex_request_metrics m = {.ttft = 42};
    ibex_err e = {0};
    const double before[] = {0.5, 1.5};
    ibex_request_times r = {.arrival = 1.0, .token_times = before, .n_out = 2};
    cr_expect_eq(ibex_request_metrics_compute(&r, &m, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "token 0") != NULL, "message: %s", e.msg);
    const double decreasing[] = {1.5, 2.5, 2.0};
    r.token_times = decreasing;
    r.n_out = 3;
    cr_expect_eq(ibex_request_metrics_compute(&r, &m, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "token 2") != NULL, "message: %s", e.msg);
    const double inf[] = {1.5, INFINITY};
    r.token_times = inf;
    r.n_out = 2;
    cr_expect_eq(ibex_request_metrics_compute(&r, &m, &e), IBEX_ERR_INVALID);
    r.token_times = NULL;
    cr_expect_eq(ibex_request_metrics_compute(&r, &m, &e), IBEX_ERR_INVALID);
    r = (ibex_request_times){.arrival = 0, .n_in = -1};
    cr_expect_eq(ibex_request_metrics_compute(&r, &m, &e), IBEX_ERR_INVALID);
    cr_expect_eq(m.ttft, 42, "output changed on error");
}

/* ---------------------------------------------------------------- run metrics */

/* Three requests over a 4 s wall:
 *   R0: arrival 0, tokens 0.5 0.75 1.0 1.5, 10 in -> TTFT 0.5, E2E 1.5, TPOT 1/3,
 *       gaps 0.25 0.25 0.5
 *   R1: arrival 1, token 3.0, 20 in              -> TTFT 2, E2E 2, TPOT undefined
 *   R2: arrival 2, tokens 2.25 2.5, 6 in         -> TTFT 0.25, E2E 0.5, TPOT 0.25,
 *       gap 0.25
 * Output tokens 7, input 36: 7/4 = 1.75 tok/s, 43/4 = 10.75 tok/s, 3/4 = 0.75 req/s. */
static const double r0_t[] = {0.5, 0.75, 1.0, 1.5};
static const double r1_t[] = {3.0};
static const double r2_t[] = {2.25, 2.5};
static const ibex_request_times run3[] = {
    {.arrival = 0.0, .token_times = r0_t, .n_out = 4, .n_in = 10},
    {.arrival = 1.0, .token_times = r1_t, .n_out = 1, .n_in = 20},
    {.arrival = 2.0, .token_times = r2_t, .n_out = 2, .n_in = 6},
};

Test(metrics, run_pooled_summaries_and_throughput)
{
    ibex_run_metrics rm;
    ibex_err e = {0};
    cr_assert_eq(ibex_run_metrics_compute(run3, 3, 4.0, NULL, &rm, &e), IBEX_OK, "%s", e.msg);
    cr_expect_eq(rm.n_requests, 3);
    cr_expect_eq(rm.input_tokens, 36);
    cr_expect_eq(rm.output_tokens, 7);
    NEAR(rm.wall_s, 4.0, 0);
    NEAR(rm.output_tok_per_s, 1.75, 1e-12);
    NEAR(rm.total_tok_per_s, 10.75, 1e-12);
    NEAR(rm.req_per_s, 0.75, 1e-12);

    /* TTFT [0.5, 2, 0.25]: mean 2.75/3; deviations -5/12, 13/12, -8/12 ->
     * sum sq = (25 + 169 + 64)/144 = 258/144; sd = sqrt(129/144) = sqrt(129)/12. */
    cr_expect_eq(rm.ttft.count, 3);
    NEAR(rm.ttft.mean, 2.75 / 3.0, 1e-12);
    NEAR(rm.ttft.sd, sqrt(129.0) / 12.0, 1e-12);
    NEAR(rm.ttft.min, 0.25, 0);
    NEAR(rm.ttft.max, 2.0, 0);
    NEAR(rm.ttft.p50, 0.5, 1e-12);
    /* sorted [0.25, 0.5, 2]: p90 h=1.8 -> 0.5 + 0.8*1.5 = 1.7. */
    NEAR(rm.ttft.p90, 1.7, 1e-12);

    /* E2E [1.5, 2, 0.5]: mean 4/3, p50 1.5. */
    cr_expect_eq(rm.e2e.count, 3);
    NEAR(rm.e2e.mean, 4.0 / 3.0, 1e-12);
    NEAR(rm.e2e.p50, 1.5, 1e-12);

    /* TPOT excludes R1: [1/3, 1/4], mean 7/24. */
    cr_expect_eq(rm.tpot.count, 2);
    NEAR(rm.tpot.mean, 7.0 / 24.0, 1e-12);
    NEAR(rm.tpot.min, 0.25, 1e-12);
    NEAR(rm.tpot.max, 1.0 / 3.0, 1e-12);

    /* ITL pools every gap: [0.25, 0.25, 0.5, 0.25]: mean 0.3125, p50 0.25,
     * sorted [.25,.25,.25,.5] p90 h=2.7 -> 0.25 + 0.7*0.25 = 0.425. */
    cr_expect_eq(rm.itl.count, 4);
    NEAR(rm.itl.mean, 0.3125, 1e-12);
    NEAR(rm.itl.p50, 0.25, 1e-12);
    NEAR(rm.itl.p90, 0.425, 1e-12);
    NEAR(rm.itl.max, 0.5, 1e-12);

    /* No SLO: every request with output is good. */
    cr_expect_eq(rm.n_good, 3);
    NEAR(rm.goodput_req_per_s, 0.75, 1e-12);
}

static double goodput(const ibex_slo *slo, size_t *n_good)
{
    ibex_run_metrics rm;
    ibex_err e = {0};
    cr_assert_eq(ibex_run_metrics_compute(run3, 3, 4.0, slo, &rm, &e), IBEX_OK, "%s", e.msg);
    *n_good = rm.n_good;
    return rm.goodput_req_per_s;
}

Test(metrics, goodput_with_slos)
{
    size_t g;
    /* TTFT <= 1: R1 (TTFT 2) fails -> 2 good, 0.5 req/s. */
    NEAR(goodput(&(ibex_slo){.ttft = 1.0}, &g), 0.5, 1e-12);
    cr_expect_eq(g, 2);
    /* TTFT <= 0.5 exactly: R0 (0.5) passes on the boundary, R2 passes -> 2. */
    NEAR(goodput(&(ibex_slo){.ttft = 0.5}, &g), 0.5, 1e-12);
    cr_expect_eq(g, 2);
    /* TPOT <= 0.3: R0 (1/3) fails, R1 (undefined TPOT) passes, R2 (0.25) passes -> 2. */
    NEAR(goodput(&(ibex_slo){.tpot = 0.3}, &g), 0.5, 1e-12);
    cr_expect_eq(g, 2);
    /* E2E <= 1: R0 (1.5) and R1 (2) fail -> 1. */
    NEAR(goodput(&(ibex_slo){.e2e = 1.0}, &g), 0.25, 1e-12);
    cr_expect_eq(g, 1);
    /* Every SLO must hold: TTFT <= 1 kills R1, TPOT <= 0.3 kills R0 -> only R2. */
    NEAR(goodput(&(ibex_slo){.ttft = 1.0, .tpot = 0.3}, &g), 0.25, 1e-12);
    cr_expect_eq(g, 1);
    /* Nothing passes TTFT <= 0.1. */
    NEAR(goodput(&(ibex_slo){.ttft = 0.1, .tpot = NAN, .e2e = 0}, &g), 0.0, 0);
    cr_expect_eq(g, 0);
    /* 0 and NaN mean no limit. */
    NEAR(goodput(&(ibex_slo){.ttft = NAN, .tpot = 0, .e2e = NAN}, &g), 0.75, 1e-12);
    cr_expect_eq(g, 3);
}

Test(metrics, run_empty_request_and_errors)
{
    /* A request with no output counts toward req/s but never toward goodput. */
    const double t[] = {0.5};
    const ibex_request_times reqs[] = {
        {.arrival = 0.0, .token_times = t, .n_out = 1, .n_in = 3},
        {.arrival = 0.0, .token_times = NULL, .n_out = 0, .n_in = 5},
    };
    ibex_run_metrics rm;
    cr_assert_eq(ibex_run_metrics_compute(reqs, 2, 2.0, NULL, &rm, NULL), IBEX_OK);
    NEAR(rm.req_per_s, 1.0, 1e-12);
    NEAR(rm.goodput_req_per_s, 0.5, 1e-12);
    NEAR(rm.total_tok_per_s, 4.5, 1e-12); /* (8 in + 1 out) / 2 */
    cr_expect_eq(rm.ttft.count, 1);
    cr_expect_eq(rm.tpot.count, 0);
    cr_expect(isnan(rm.tpot.mean));
    cr_expect_eq(rm.itl.count, 0);

    /* No requests at all: zero throughput, empty summaries. */
    cr_assert_eq(ibex_run_metrics_compute(NULL, 0, 1.0, NULL, &rm, NULL), IBEX_OK);
    NEAR(rm.req_per_s, 0.0, 0);
    cr_expect_eq(rm.ttft.count, 0);

    ibex_err e = {0};
    cr_expect_eq(ibex_run_metrics_compute(run3, 3, 0.0, NULL, &rm, &e), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_run_metrics_compute(run3, 3, NAN, NULL, &rm, &e), IBEX_ERR_INVALID);
    const double bad_t[] = {1.0, 0.5};
    const ibex_request_times bad[] = {
        run3[0],
        {.arrival = 0.0, .token_times = bad_t, .n_out = 2},
    };
    cr_expect_eq(ibex_run_metrics_compute(bad, 2, 1.0, NULL, &rm, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "request 1") != NULL, "message: %s", e.msg);
}

/* ---------------------------------------------------------------- KV memory */

Test(metrics, kv_utilisation_and_fragmentation)
{
    NEAR(ibex_kv_utilisation(300, 1000), 0.3, 1e-15);
    NEAR(ibex_kv_utilisation(1000, 1000), 1.0, 0);
    cr_expect(isnan(ibex_kv_utilisation(0, 0)));
    cr_expect_eq(ibex_kv_fragmentation(300, 1000), 700);
    cr_expect_eq(ibex_kv_fragmentation(INT64_C(1) << 40, INT64_C(3) << 40), INT64_C(2) << 40);
}

/* ---------------------------------------------------------------- power-law fit */

Test(metrics, power_fit_exact_square)
{
    double x[6], y[6];
    for (int i = 0; i < 6; i++) {
        x[i] = 128.0 * (double)(1 << i); /* 128 .. 4096 */
        y[i] = 3e-9 * x[i] * x[i];
    }
    ibex_power_fit f;
    ibex_err e = {0};
    cr_assert_eq(ibex_power_fit_compute(x, y, 6, &f, &e), IBEX_OK, "%s", e.msg);
    NEAR(f.b, 2.0, 1e-12);
    NEAR(f.r2, 1.0, 1e-12);
    NEAR(f.a / 3e-9, 1.0, 1e-9);
    cr_expect_eq(f.n, 6);

    /* Linear-spaced x too, exponent 1 (y = 5x). */
    double xl[5] = {100, 200, 300, 400, 500}, yl[5];
    for (int i = 0; i < 5; i++)
        yl[i] = 5.0 * xl[i];
    cr_assert_eq(ibex_power_fit_compute(xl, yl, 5, &f, NULL), IBEX_OK);
    NEAR(f.b, 1.0, 1e-12);
    NEAR(f.a, 5.0, 1e-9);
    NEAR(f.r2, 1.0, 1e-12);
}

Test(metrics, power_fit_hand_imperfect)
{
    /* (1,1), (2,4), (4,8); with l = ln 2: ln x = 0, l, 2l; ln y = 0, 2l, 3l.
     * Sxx = 2 l^2, Sxy = 3 l^2 -> b = 1.5; ln a = 5l/3 - 1.5 l = l/6 -> a = 2^(1/6);
     * residuals -l/6, l/3, -l/6 -> SS_res = l^2/6; SS_tot = 14 l^2 / 3;
     * R^2 = 1 - (1/6)/(14/3) = 27/28. */
    const double x[] = {1, 2, 4}, y[] = {1, 4, 8};
    ibex_power_fit f;
    cr_assert_eq(ibex_power_fit_compute(x, y, 3, &f, NULL), IBEX_OK);
    NEAR(f.b, 1.5, 1e-12);
    NEAR(f.a, pow(2.0, 1.0 / 6.0), 1e-12);
    NEAR(f.r2, 27.0 / 28.0, 1e-12);
}

/* splitmix64: a fixed-seed PRNG so the noisy fit is the same on every machine. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

Test(metrics, power_fit_noisy_square)
{
    /* y = 2e-6 x^2 (1 + 10% uniform noise), x = 128 .. 4096 in 32 steps. */
    enum { N = 32 };
    double x[N], y[N];
    uint64_t seed = 12345;
    for (int i = 0; i < N; i++) {
        x[i] = 128.0 + (4096.0 - 128.0) * i / (N - 1);
        double u = (double)(splitmix64(&seed) >> 11) * 0x1.0p-53 * 2.0 - 1.0; /* [-1, 1) */
        y[i] = 2e-6 * x[i] * x[i] * (1.0 + 0.1 * u);
    }
    ibex_power_fit f;
    cr_assert_eq(ibex_power_fit_compute(x, y, N, &f, NULL), IBEX_OK);
    NEAR(f.b, 2.0, 0.05);
    cr_expect(f.r2 > 0.99 && f.r2 < 1.0, "r2 = %.17g", f.r2);
    cr_expect(fabs(f.b - 2.0) > 1e-9, "noise should move the exponent a little");
    NEAR(f.a / 2e-6, 1.0, 0.3);
}

Test(metrics, power_fit_rejects)
{
    ibex_power_fit f = {.b = 42};
    ibex_err e = {0};
    const double x1[] = {2}, y1[] = {4};
    cr_expect_eq(ibex_power_fit_compute(x1, y1, 1, &f, &e), IBEX_ERR_INVALID);
    const double xz[] = {0, 2, 4}, y3[] = {1, 4, 16};
    cr_expect_eq(ibex_power_fit_compute(xz, y3, 3, &f, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "point 0") != NULL, "message: %s", e.msg);
    const double x3[] = {1, 2, 4}, yn[] = {1, -4, 16};
    cr_expect_eq(ibex_power_fit_compute(x3, yn, 3, &f, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "point 1") != NULL, "message: %s", e.msg);
    const double ynan[] = {1, 4, NAN};
    cr_expect_eq(ibex_power_fit_compute(x3, ynan, 3, &f, &e), IBEX_ERR_INVALID);
    const double xeq[] = {8, 8, 8};
    cr_expect_eq(ibex_power_fit_compute(xeq, y3, 3, &f, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "equal") != NULL, "message: %s", e.msg);
    cr_expect_eq(f.b, 42, "output changed on error");
    /* All y equal is fine: b = 0, R^2 = 1 by convention. */
    const double yc[] = {5, 5, 5};
    cr_assert_eq(ibex_power_fit_compute(x3, yc, 3, &f, &e), IBEX_OK);
    NEAR(f.b, 0.0, 1e-12);
    NEAR(f.a, 5.0, 1e-12);
    NEAR(f.r2, 1.0, 0);
}

/* ---------------------------------------------------------------- Mann–Whitney U */

/* U of a by definition, counted pair by pair: an independent check of the ranking. */
static double brute_u(const double *a, size_t na, const double *b, size_t nb)
{
    double u = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            u += a[i] > b[j] ? 1.0 : a[i] == b[j] ? 0.5 : 0.0;
    return u;
}

Test(metrics, mann_whitney_identical)
{
    const double a[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ibex_mann_whitney m;
    cr_assert_eq(ibex_mann_whitney_compute(a, 9, a, 9, &m, NULL), IBEX_OK);
    NEAR(m.u_a, 40.5, 1e-12); /* scipy: 40.5, p = 1.0 */
    NEAR(m.u_b, 40.5, 1e-12);
    NEAR(m.z, 0.0, 0);
    NEAR(m.p, 1.0, 1e-12);
    /* All values equal: sigma = 0, defined as z = 0, p = 1 (scipy: U 3, p 1.0). */
    const double c3[] = {5, 5, 5}, c2[] = {5, 5};
    cr_assert_eq(ibex_mann_whitney_compute(c3, 3, c2, 2, &m, NULL), IBEX_OK);
    NEAR(m.u_a, 3.0, 1e-12);
    NEAR(m.p, 1.0, 0);
}

Test(metrics, mann_whitney_separated)
{
    /* a = 1..9 all below b = 11..19: U_a = 0, U_b = 81; mu = 40.5;
     * sigma^2 = 81/12 * 19 = 128.25 (no ties); z = -(40.5 - 0.5)/sqrt(128.25);
     * scipy: U = 0.0, p = 0.00041229480206169127. */
    const double a[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const double b[] = {11, 12, 13, 14, 15, 16, 17, 18, 19};
    ibex_mann_whitney m;
    cr_assert_eq(ibex_mann_whitney_compute(a, 9, b, 9, &m, NULL), IBEX_OK);
    NEAR(m.u_a, 0.0, 1e-12);
    NEAR(m.u_b, 81.0, 1e-12);
    NEAR(m.u, 0.0, 1e-12);
    NEAR(m.z, -40.0 / sqrt(128.25), 1e-12);
    NEAR(m.p, 0.00041229480206169127, 1e-12);
    cr_expect(m.p < 0.001);
    /* Swapping the samples swaps U, flips z, keeps p. */
    ibex_mann_whitney s;
    cr_assert_eq(ibex_mann_whitney_compute(b, 9, a, 9, &s, NULL), IBEX_OK);
    NEAR(s.u_a, 81.0, 1e-12);
    NEAR(s.z, -m.z, 1e-12);
    NEAR(s.p, m.p, 1e-15);
}

Test(metrics, mann_whitney_ties)
{
    /* a = [1,2,2,3], b = [2,3,4,4,5]. Pooled sorted: 1 | 2 2 2 | 3 3 | 4 4 | 5 with ranks
     * 1 | 3 3 3 | 5.5 5.5 | 7.5 7.5 | 9. R_a = 1 + 3 + 3 + 5.5 = 12.5; U_a = 12.5 - 10 = 2.5.
     * Ties: t = 3, 2, 2 -> sum (t^3 - t) = 24 + 6 + 6 = 36; N = 9;
     * sigma^2 = 20/12 * (10 - 36/72) = 95/6; z = -(10 - 2.5 - 0.5) / sqrt(95/6).
     * scipy: U = 2.5, p = 0.07854585095119067. */
    const double a[] = {3, 2, 1, 2}, b[] = {4, 2, 5, 3, 4};
    ibex_mann_whitney m;
    cr_assert_eq(ibex_mann_whitney_compute(a, 4, b, 5, &m, NULL), IBEX_OK);
    NEAR(m.u_a, 2.5, 1e-12);
    NEAR(m.u_a, brute_u(a, 4, b, 5), 1e-12);
    NEAR(m.u_b, 17.5, 1e-12);
    NEAR(m.z, -7.0 / sqrt(95.0 / 6.0), 1e-12);
    NEAR(m.p, 0.07854585095119067, 1e-12);
    cr_expect_eq(m.n_a, 4);
    cr_expect_eq(m.n_b, 5);
}

Test(metrics, mann_whitney_timings)
{
    /* Two sets of 9 timings with overlap and ties across samples (10.6, 10.7, 10.8, 10.9):
     * scipy: U = 8.0, p = 0.0046327440358426755. */
    const double a[] = {10.2, 10.5, 10.1, 10.9, 10.4, 10.3, 10.8, 10.6, 10.7};
    const double b[] = {10.6, 11.0, 10.9, 11.3, 10.8, 11.1, 10.7, 11.2, 11.4};
    ibex_mann_whitney m;
    cr_assert_eq(ibex_mann_whitney_compute(a, 9, b, 9, &m, NULL), IBEX_OK);
    NEAR(m.u_a, 8.0, 1e-12);
    NEAR(m.u_a, brute_u(a, 9, b, 9), 1e-12);
    NEAR(m.p, 0.0046327440358426755, 1e-12);
    cr_expect(m.z < 0, "a is faster (smaller), so z < 0: %g", m.z);
}

Test(metrics, mann_whitney_rejects)
{
    const double a[] = {1, 2}, bn[] = {1, NAN};
    ibex_mann_whitney m = {.p = 42};
    ibex_err e = {0};
    cr_expect_eq(ibex_mann_whitney_compute(a, 2, a, 0, &m, &e), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_mann_whitney_compute(a, 0, a, 2, &m, &e), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_mann_whitney_compute(a, 2, bn, 2, &m, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "b[1]") != NULL, "message: %s", e.msg);
    cr_expect_eq(ibex_mann_whitney_compute(NULL, 2, a, 2, &m, &e), IBEX_ERR_INVALID);
    cr_expect_eq(m.p, 42, "output changed on error");
}

/* ---------------------------------------------------------------- definitions */

Test(metrics, formula_table)
{
    size_t n = 0;
    const ibex_metric_def *d = ibex_metric_defs(&n);
    cr_assert(d != NULL && n >= 10);
    static const char *const required[] = {
        "ttft", "e2e", "tpot", "itl", "output_throughput", "total_throughput",
        "request_throughput", "goodput", "kv_utilisation", "kv_fragmentation",
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const ibex_metric_def *m = ibex_metric_def_find(required[i]);
        cr_assert(m != NULL, "missing definition '%s'", required[i]);
        cr_expect(m->name && m->name[0] && m->formula && m->formula[0] && m->unit && m->unit[0],
                  "incomplete definition '%s'", required[i]);
    }
    for (size_t i = 0; i < n; i++) {
        cr_expect(d[i].key && d[i].name && d[i].formula && d[i].unit);
        for (size_t j = i + 1; j < n; j++)
            cr_expect(strcmp(d[i].key, d[j].key) != 0, "duplicate key '%s'", d[i].key);
        for (const char *c = d[i].formula; *c; c++)
            cr_expect((unsigned char)*c < 128, "formula of '%s' is not ASCII", d[i].key);
    }
    cr_expect(strstr(ibex_metric_def_find("tpot")->formula, "(E2E - TTFT) / (output_tokens - 1)"));
    cr_expect(strstr(ibex_metric_def_find("kv_utilisation")->formula, "used") != NULL);
    cr_expect_str_eq(ibex_metric_def_find("ttft")->unit, "s");
    cr_expect_str_eq(ibex_metric_def_find("output_throughput")->unit, "tokens/s");
    cr_expect(ibex_metric_def_find("no_such_metric") == NULL);
    cr_expect(ibex_metric_def_find(NULL) == NULL);
    cr_expect(ibex_metric_defs(NULL) == d);
}

/* ---------------------------------------------------------------- noise */

/* Ranks of the distribution-free CI of the median, B ~ Binomial(n, 1/2):
 *   n = 5:  P(B <= 0) = 1/32, extremes cover 1 - 2/32 = 93.75 % < 95 %: no CI;
 *   n = 6:  extremes cover 1 - 2/64 = 96.875 %;
 *   n = 10: j = 2 covers 1 - 2 * 11/1024 = 97.85 %, j = 3 only 1 - 2 * 56/1024 = 89.1 %;
 *   n = 20: P(B <= 5) = 21700/1048576, so j = 6 covers 95.86 %, j = 7 only 88.5 %. */
Test(noise, median_ci_ranks_hand_values)
{
    size_t lo, hi;
    double cov;
    cr_expect_not(ibex_median_ci_ranks(5, 0.95, &lo, &hi, &cov));
    cr_assert(ibex_median_ci_ranks(6, 0.95, &lo, &hi, &cov));
    cr_expect_eq(lo, 1);
    cr_expect_eq(hi, 6);
    NEAR(cov, 1.0 - 2.0 / 64.0, 1e-12);
    cr_assert(ibex_median_ci_ranks(10, 0.95, &lo, &hi, &cov));
    cr_expect_eq(lo, 2);
    cr_expect_eq(hi, 9);
    NEAR(cov, 1.0 - 2.0 * 11.0 / 1024.0, 1e-12);
    cr_assert(ibex_median_ci_ranks(20, 0.95, &lo, &hi, &cov));
    cr_expect_eq(lo, 6);
    cr_expect_eq(hi, 15);
    NEAR(cov, 1.0 - 2.0 * 21700.0 / 1048576.0, 1e-12);
}

/* {1..6}: median 3.5, mean 3.5, sd = sqrt(17.5 / 5) = 1.8708, cv = 0.5345 > 10 %: noisy;
 * CI = [x_(1), x_(6)] = [1, 6]. The input order does not matter and NaN is skipped. */
Test(noise, spread_hand_values_and_noisy_flag)
{
    const double x[] = {4, NAN, 1, 6, 3, 2, 5};
    ibex_noise nz;
    cr_assert_eq(ibex_noise_compute(x, 7, 0.10, &nz, NULL), IBEX_OK);
    cr_expect_eq(nz.n, 6);
    NEAR(nz.median, 3.5, 1e-12);
    NEAR(nz.mean, 3.5, 1e-12);
    NEAR(nz.sd, sqrt(17.5 / 5.0), 1e-12);
    NEAR(nz.cv, sqrt(17.5 / 5.0) / 3.5, 1e-12);
    NEAR(nz.ci_lo, 1.0, 0);
    NEAR(nz.ci_hi, 6.0, 0);
    cr_expect(nz.noisy);
    cr_expect_str_eq(nz.reason, "cv 53.5% > 10%");
    /* the same data under a looser threshold is not noisy */
    cr_assert_eq(ibex_noise_compute(x, 7, 0.60, &nz, NULL), IBEX_OK);
    cr_expect_not(nz.noisy);
    cr_expect_str_eq(nz.reason, "");
}

/* Tight but few: n = 3 is sampled enough (cv 1 %) with no CI; n = 2 is under-sampled
 * whatever its spread; n = 0 has no samples. */
Test(noise, under_sampled_and_tight)
{
    const double three[] = {10.0, 10.1, 9.9};
    ibex_noise nz;
    cr_assert_eq(ibex_noise_compute(three, 3, 0.10, &nz, NULL), IBEX_OK);
    cr_expect_not(nz.noisy);
    NEAR(nz.cv, 0.1 / 10.0, 1e-12);
    cr_expect(isnan(nz.ci_lo) && isnan(nz.ci_hi) && isnan(nz.ci_level));
    cr_expect(isnan(ibex_noise_rel_halfwidth(&nz)));
    cr_assert_eq(ibex_noise_compute(three, 2, 0.10, &nz, NULL), IBEX_OK);
    cr_expect(nz.noisy);
    cr_expect_str_eq(nz.reason, "under-sampled: n=2");
    const double none[] = {NAN, NAN};
    cr_assert_eq(ibex_noise_compute(none, 2, 0.10, &nz, NULL), IBEX_OK);
    cr_expect_eq(nz.n, 0);
    cr_expect(nz.noisy && isnan(nz.median));
    cr_expect_eq(ibex_noise_compute(NULL, 3, 0.10, &nz, NULL), IBEX_ERR_INVALID);
}

/* Ten repetitions sorted 98 99 99 100 100 100 100 101 101 102: CI ranks 2 and 9 give
 * [99, 101], half-width 1 = 1 % of the median 100: within a 5 % target. */
Test(noise, relative_half_width_for_repeat_auto)
{
    const double x[] = {100, 101, 99, 100, 102, 98, 100, 100, 101, 99};
    ibex_noise nz;
    cr_assert_eq(ibex_noise_compute(x, 10, 0.10, &nz, NULL), IBEX_OK);
    NEAR(nz.ci_lo, 99, 0);
    NEAR(nz.ci_hi, 101, 0);
    NEAR(ibex_noise_rel_halfwidth(&nz), 0.01, 1e-12);
}

/* ---------------------------------------------------------------- load */

Test(load, busy_idle_and_starved)
{
    char w[256];
    /* six busy loops on 2 CPUs: load 7.9, ibex's own share 0.4 */
    ibex_load_sample s = {.n_cpus = 2, .threads = 2, .load1_start = 7.5, .load1_end = 7.9, .own_start = 0.3,
                          .own_end = 0.4, .cpu_s = 4.0, .wall_s = 10.0, .check_starved = true};
    cr_expect(ibex_load_judge(&s, w, sizeof w));
    cr_expect_str_eq(w, "machine busy: load 7.9 on 2 CPUs, ibex got 0.4 CPU-s per s with 2 threads");
    /* idle: the load is ibex's own two threads */
    s = (ibex_load_sample){.n_cpus = 2, .threads = 2, .load1_start = 0.1, .load1_end = 1.9, .own_start = 0.0,
                           .own_end = 1.85, .cpu_s = 19.0, .wall_s = 10.0, .check_starved = true};
    cr_expect_not(ibex_load_judge(&s, w, sizeof w));
    cr_expect_str_eq(w, "");
    /* one other process next to a 1-thread run on 2 CPUs leaves room: not busy */
    s.threads = 1, s.load1_start = 1.0, s.load1_end = 2.0, s.own_end = 1.0, s.cpu_s = 9.8;
    cr_expect_not(ibex_load_judge(&s, w, sizeof w));
    /* ... but the same with 2 threads is: the other process wants a CPU ibex uses */
    s.threads = 2;
    cr_expect(ibex_load_judge(&s, w, sizeof w));
    /* idle, but the load average still counts ibex's own threads when its own share is
     * underestimated (load 1.2 right after start): ibex got 1.9 of 2 CPUs, not busy */
    s = (ibex_load_sample){.n_cpus = 2, .threads = 2, .load1_start = 1.2, .load1_end = 1.2, .own_start = 0.1,
                           .own_end = 0.2, .cpu_s = 19.0, .wall_s = 10.0, .check_starved = true};
    cr_expect_not(ibex_load_judge(&s, w, sizeof w), "%s", w);
    /* starved: a low load average (just started) but 0.3 CPU-s per s */
    s = (ibex_load_sample){.n_cpus = 2, .threads = 1, .load1_start = 0.2, .load1_end = 0.3, .cpu_s = 3.0,
                           .wall_s = 10.0, .check_starved = true};
    cr_expect(ibex_load_judge(&s, w, sizeof w));
    cr_expect(strstr(w, "starved") != NULL, "%s", w);
    /* a point that sleeps waiting for arrivals is not starved by being idle */
    s.check_starved = false;
    cr_expect_not(ibex_load_judge(&s, w, sizeof w));
    /* unreadable load average: only the CPU share can tell */
    s = (ibex_load_sample){.n_cpus = 2, .threads = 2, .load1_start = NAN, .load1_end = NAN, .cpu_s = 10,
                           .wall_s = 10, .check_starved = true};
    cr_expect_not(ibex_load_judge(&s, w, sizeof w));
}

/* ---------------------------------------------------------------- KV over a run */

/* Four steps: reserved 100, 200, 200, 100 bytes; used 50, 100, 180, 90; step times 1, 1,
 * 2, 4 s. Peak reserved 200 at steps 1 and 2; the fuller (180) is the peak's steady
 * state: 0.9. Time-weighted: (50 + 100 + 360 + 360) / (100 + 200 + 400 + 400) = 870/1100.
 * (The unweighted mean over steps would be (0.5 + 0.5 + 0.9 + 0.9) / 4 = 0.7.) */
Test(kv_run, utilisation_at_peak_and_time_weighted)
{
    const int64_t res[] = {100, 200, 200, 100}, used[] = {50, 100, 180, 90};
    const double dt[] = {1, 1, 2, 4};
    double pk, tw;
    ibex_kv_util_run(res, used, dt, 4, &pk, &tw);
    NEAR(pk, 0.9, 1e-12);
    NEAR(tw, 870.0 / 1100.0, 1e-12);
    const int64_t zero[] = {0, 0};
    ibex_kv_util_run(zero, zero, dt, 2, &pk, &tw);
    cr_expect(isnan(pk) && isnan(tw));
}

/* ---------------------------------------------------------------- delivered at once */

/* A beam search returns its 4-token hypothesis at once (t = 3 s for every token): TTFT
 * and E2E are 3 s, TPOT is undefined and there is no ITL. Next to a streaming request
 * (tokens at 1, 2, 4 s) only the streamer defines TPOT (1.5 s) and ITL (1 s, 2 s); alone,
 * the beam request leaves TPOT and ITL undefined (count 0, NaN). */
Test(metrics, tokens_delivered_at_once_have_no_tpot_or_itl)
{
    const double beam_t[] = {3, 3, 3, 3}, stream_t[] = {1, 2, 4};
    ibex_request_times r[] = {{.arrival = 0, .token_times = beam_t, .n_out = 4, .n_in = 8},
                              {.arrival = 0, .token_times = stream_t, .n_out = 3, .n_in = 8}};
    ibex_request_metrics m;
    cr_assert_eq(ibex_request_metrics_compute(&r[0], &m, NULL), IBEX_OK);
    NEAR(m.ttft, 3, 0);
    NEAR(m.e2e, 3, 0);
    cr_expect(isnan(m.tpot), "tpot %g", m.tpot);
    double gaps[4];
    cr_expect_eq(ibex_request_itl(&r[0], gaps), 0);
    ibex_run_metrics rm;
    cr_assert_eq(ibex_run_metrics_compute(r, 2, 4.0, NULL, &rm, NULL), IBEX_OK);
    cr_expect_eq(rm.tpot.count, 1);
    NEAR(rm.tpot.p50, 1.5, 1e-12);
    cr_expect_eq(rm.itl.count, 2);
    NEAR(rm.itl.min, 1, 0);
    NEAR(rm.itl.max, 2, 0);
    NEAR(rm.output_tok_per_s, 7.0 / 4.0, 1e-12); /* returned tokens: 4 + 3 */
    cr_assert_eq(ibex_run_metrics_compute(r, 1, 4.0, NULL, &rm, NULL), IBEX_OK);
    cr_expect_eq(rm.tpot.count, 0);
    cr_expect_eq(rm.itl.count, 0);
    cr_expect(isnan(rm.tpot.p50) && isnan(rm.itl.p50));
}
