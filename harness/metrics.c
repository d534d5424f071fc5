/* metrics.c — the metric definitions of ibex (see metrics.h for every formula):
 * summaries and percentiles, per-request latencies, run throughputs and goodput,
 * and the power-law fit (the Mann–Whitney U test is in reports/mann_whitney.c, shared
 * with `ibex compare`). Pure computation, no I/O. */
#include "harness/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- summaries */

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* A sorted malloc'd copy of the non-NaN entries of x; *m receives their number.
 * Returns NULL on allocation failure (never when n = 0: then a 1-element buffer). */
static double *sorted_copy(const double *x, size_t n, size_t *m)
{
    double *s = malloc((n ? n : 1) * sizeof *s);
    if (!s)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(x[i]))
            s[k++] = x[i];
    qsort(s, k, sizeof *s, cmp_double);
    *m = k;
    return s;
}

double ibex_percentile_sorted(const double *sorted, size_t n, double q)
{
    if (n == 0 || !(q >= 0.0 && q <= 100.0))
        return NAN;
    double h = q / 100.0 * (double)(n - 1);
    size_t i = (size_t)floor(h);
    if (i >= n - 1)
        return sorted[n - 1];
    double f = h - (double)i;
    return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

ibex_status ibex_percentile(const double *x, size_t n, double q, double *out, ibex_err *e)
{
    if (!(q >= 0.0 && q <= 100.0))
        return ibex_err_set(e, IBEX_ERR_INVALID, "percentile %g is outside [0, 100]", q);
    if (!x && n > 0)
        return ibex_err_set(e, IBEX_ERR_INVALID, "percentile: NULL sample of %zu values", n);
    size_t m;
    double *s = sorted_copy(x, n, &m);
    if (!s)
        return ibex_err_set(e, IBEX_ERR_NOMEM, "percentile: cannot copy %zu values", n);
    *out = ibex_percentile_sorted(s, m, q);
    free(s);
    return IBEX_OK;
}

/* Mean and sample sd (n - 1; 0 for one value) of x[m], m >= 1. Two passes: the sum of
 * squared deviations does not cancel catastrophically the way sum(x^2) - n mean^2 does
 * for tight samples of large timestamps. */
static void mean_sd(const double *x, size_t m, double *mean, double *sd)
{
    double sum = 0.0;
    for (size_t i = 0; i < m; i++)
        sum += x[i];
    *mean = sum / (double)m;
    double ss = 0.0;
    for (size_t i = 0; i < m; i++)
        ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = m < 2 ? 0.0 : sqrt(ss / (double)(m - 1));
}

ibex_status ibex_summarize(const double *x, size_t n, ibex_summary *out, ibex_err *e)
{
    if (!x && n > 0)
        return ibex_err_set(e, IBEX_ERR_INVALID, "summary: NULL sample of %zu values", n);
    size_t m;
    double *s = sorted_copy(x, n, &m);
    if (!s)
        return ibex_err_set(e, IBEX_ERR_NOMEM, "summary: cannot copy %zu values", n);
    ibex_summary r = {.count = m};
    if (m == 0) {
        r.mean = r.sd = r.min = r.max = r.p50 = r.p90 = r.p99 = NAN;
    } else {
        mean_sd(s, m, &r.mean, &r.sd);
        r.min = s[0];
        r.max = s[m - 1];
        r.p50 = ibex_percentile_sorted(s, m, 50.0);
        r.p90 = ibex_percentile_sorted(s, m, 90.0);
        r.p99 = ibex_percentile_sorted(s, m, 99.0);
    }
    free(s);
    *out = r;
    return IBEX_OK;
}

/* ---------------------------------------------------------------- requests */

ibex_status ibex_request_metrics_compute(const ibex_request_times *r, ibex_request_metrics *out,
                                         ibex_err *e)
{
    if (!r)
        return ibex_err_set(e, IBEX_ERR_INVALID, "request: NULL");
    if (!isfinite(r->arrival))
        return ibex_err_set(e, IBEX_ERR_INVALID, "request: arrival time %g is not finite", r->arrival);
    if (r->n_in < 0)
        return ibex_err_set(e, IBEX_ERR_INVALID, "request: negative input token count %lld",
                            (long long)r->n_in);
    if (r->n_out > 0 && !r->token_times)
        return ibex_err_set(e, IBEX_ERR_INVALID, "request: NULL token times for %zu tokens", r->n_out);
    double prev = r->arrival;
    for (size_t k = 0; k < r->n_out; k++) {
        double t = r->token_times[k];
        if (!isfinite(t))
            return ibex_err_set(e, IBEX_ERR_INVALID, "request: token %zu time %g is not finite", k, t);
        if (t < prev)
            return ibex_err_set(e, IBEX_ERR_INVALID,
                                "request: token %zu at %.9g s precedes %s at %.9g s", k, t,
                                k == 0 ? "the arrival" : "the previous token", prev);
        prev = t;
    }
    ibex_request_metrics m = {.ttft = NAN, .e2e = NAN, .tpot = NAN, .n_out = r->n_out, .n_in = r->n_in};
    if (r->n_out >= 1) {
        m.ttft = r->token_times[0] - r->arrival;
        m.e2e = r->token_times[r->n_out - 1] - r->arrival;
    }
    /* Tokens that all arrived at once (beam search returns its hypothesis at the end)
     * were not streamed: no time per output token exists. */
    if (r->n_out >= 2 && r->token_times[r->n_out - 1] > r->token_times[0])
        m.tpot = (m.e2e - m.ttft) / (double)(r->n_out - 1);
    *out = m;
    return IBEX_OK;
}

size_t ibex_request_itl(const ibex_request_times *r, double *gaps)
{
    /* A gap of 0 joins tokens delivered in the same event (a beam's hypothesis at the
     * end): that is not a latency between tokens, so it is not counted. */
    size_t m = 0;
    for (size_t k = 0; k + 1 < r->n_out; k++)
        if (r->token_times[k + 1] > r->token_times[k])
            gaps[m++] = r->token_times[k + 1] - r->token_times[k];
    return m;
}

/* A limit of 0 or NaN is "no limit"; otherwise value <= limit (NaN values handled by
 * the caller). */
static bool within(double value, double limit)
{
    if (isnan(limit) || limit == 0.0)
        return true;
    return value <= limit;
}

bool ibex_slo_met(const ibex_request_metrics *m, const ibex_slo *slo)
{
    if (m->n_out == 0)
        return false;
    if (!slo)
        return true;
    if (!within(m->ttft, slo->ttft) || !within(m->e2e, slo->e2e))
        return false;
    return isnan(m->tpot) || within(m->tpot, slo->tpot);
}

ibex_status ibex_run_metrics_compute(const ibex_request_times *reqs, size_t n, double wall_s,
                                     const ibex_slo *slo, ibex_run_metrics *out, ibex_err *e)
{
    if (!(isfinite(wall_s) && wall_s > 0.0))
        return ibex_err_set(e, IBEX_ERR_INVALID, "run metrics: wall time %g s is not > 0", wall_s);
    if (!reqs && n > 0)
        return ibex_err_set(e, IBEX_ERR_INVALID, "run metrics: NULL request array of %zu", n);

    size_t n_gaps = 0;
    for (size_t i = 0; i < n; i++)
        n_gaps += reqs[i].n_out >= 2 ? reqs[i].n_out - 1 : 0;
    /* One buffer: ttft[n] | e2e[n] | tpot[n] | itl[n_gaps]. */
    size_t cap = 3 * n + n_gaps;
    double *buf = malloc((cap ? cap : 1) * sizeof *buf);
    if (!buf)
        return ibex_err_set(e, IBEX_ERR_NOMEM, "run metrics: cannot allocate %zu samples", cap);
    double *ttft = buf, *e2e = buf + n, *tpot = buf + 2 * n, *itl = buf + 3 * n;

    ibex_run_metrics r = {.n_requests = n, .wall_s = wall_s};
    ibex_status st = IBEX_OK;
    size_t g = 0;
    for (size_t i = 0; i < n; i++) {
        ibex_request_metrics m;
        st = ibex_request_metrics_compute(&reqs[i], &m, e);
        if (st != IBEX_OK) {
            ibex_err_prefix(e, "run metrics: request %zu", i);
            goto done;
        }
        ttft[i] = m.ttft; /* NaN when undefined: ibex_summarize skips it */
        e2e[i] = m.e2e;
        tpot[i] = m.tpot;
        g += ibex_request_itl(&reqs[i], itl + g);
        r.input_tokens += m.n_in;
        r.output_tokens += (int64_t)m.n_out;
        if (ibex_slo_met(&m, slo))
            r.n_good++;
    }
    if ((st = ibex_summarize(ttft, n, &r.ttft, e)) != IBEX_OK ||
        (st = ibex_summarize(tpot, n, &r.tpot, e)) != IBEX_OK ||
        (st = ibex_summarize(itl, g, &r.itl, e)) != IBEX_OK ||
        (st = ibex_summarize(e2e, n, &r.e2e, e)) != IBEX_OK)
        goto done;
    r.output_tok_per_s = (double)r.output_tokens / wall_s;
    r.total_tok_per_s = (double)(r.input_tokens + r.output_tokens) / wall_s;
    r.req_per_s = (double)n / wall_s;
    r.goodput_req_per_s = (double)r.n_good / wall_s;
    *out = r;
done:
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- memory */

double ibex_kv_utilisation(int64_t used_bytes, int64_t reserved_bytes)
{
    if (reserved_bytes == 0)
        return NAN;
    return (double)used_bytes / (double)reserved_bytes;
}

int64_t ibex_kv_fragmentation(int64_t used_bytes, int64_t reserved_bytes)
{
    return reserved_bytes - used_bytes;
}

/* ---------------------------------------------------------------- power-law fit */

ibex_status ibex_power_fit_compute(const double *x, const double *y, size_t n, ibex_power_fit *out,
                                   ibex_err *e)
{
    if (n < 2)
        return ibex_err_set(e, IBEX_ERR_INVALID, "power fit: needs at least 2 points, got %zu", n);
    if (!x || !y)
        return ibex_err_set(e, IBEX_ERR_INVALID, "power fit: NULL data");
    for (size_t i = 0; i < n; i++) {
        if (!(isfinite(x[i]) && x[i] > 0.0) || !(isfinite(y[i]) && y[i] > 0.0))
            return ibex_err_set(e, IBEX_ERR_INVALID,
                                "power fit: point %zu (x=%g, y=%g) is not positive and finite", i,
                                x[i], y[i]);
    }
    /* Centred sums (two passes) keep R^2 exact to ~1e-15 on noiseless data. */
    double mx = 0.0, my = 0.0;
    for (size_t i = 0; i < n; i++) {
        mx += log(x[i]);
        my += log(y[i]);
    }
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0.0, sxy = 0.0, syy = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dx = log(x[i]) - mx, dy = log(y[i]) - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if (sxx == 0.0)
        return ibex_err_set(e, IBEX_ERR_INVALID, "power fit: all %zu x values are equal (%g)", n, x[0]);
    double b = sxy / sxx;
    double ln_a = my - b * mx;
    double ss_res = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = log(y[i]) - (ln_a + b * log(x[i]));
        ss_res += r * r;
    }
    out->a = exp(ln_a);
    out->b = b;
    out->r2 = syy == 0.0 ? 1.0 : 1.0 - ss_res / syy;
    out->n = n;
    return IBEX_OK;
}

/* ---------------------------------------------------------------- noise */

bool ibex_median_ci_ranks(size_t n, double level, size_t *lo_rank, size_t *hi_rank, double *coverage)
{
    /* Coverage of [x_(j), x_(n-j+1)] is 1 - 2 P(B <= j-1), B ~ Binomial(n, 1/2)
     * (metrics.h). The binomial terms C(n, i) / 2^n are built in log space so that
     * n in the thousands neither overflows nor underflows. */
    if (n < 2 || !(level > 0.0 && level < 1.0))
        return false;
    double cdf = 0.0; /* P(B <= j-1) */
    size_t best = 0;
    double best_cov = NAN;
    for (size_t j = 1; j <= n / 2; j++) {
        size_t i = j - 1;
        cdf += exp(lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) -
                   (double)n * log(2.0));
        double cov = 1.0 - 2.0 * cdf;
        if (cov < level)
            break;
        best = j, best_cov = cov;
    }
    if (best == 0)
        return false;
    *lo_rank = best;
    *hi_rank = n - best + 1;
    if (coverage)
        *coverage = best_cov;
    return true;
}

ibex_status ibex_noise_compute(const double *x, size_t n, double cv_max, ibex_noise *out, ibex_err *e)
{
    if (!x && n > 0)
        return ibex_err_set(e, IBEX_ERR_INVALID, "noise: NULL sample with n = %zu", n);
    size_t m = 0;
    double *s = sorted_copy(x, n, &m);
    if (!s)
        return ibex_err_set(e, IBEX_ERR_NOMEM, "noise: out of memory for %zu samples", n);
    ibex_noise r = {.n = m, .median = NAN, .mean = NAN, .sd = NAN, .cv = NAN, .ci_lo = NAN, .ci_hi = NAN,
                    .ci_level = NAN};
    if (m > 0) {
        mean_sd(s, m, &r.mean, &r.sd);
        r.cv = r.mean != 0.0 ? r.sd / fabs(r.mean) : NAN;
        r.median = ibex_percentile_sorted(s, m, 50.0);
        size_t lo, hi;
        if (ibex_median_ci_ranks(m, 0.95, &lo, &hi, &r.ci_level))
            r.ci_lo = s[lo - 1], r.ci_hi = s[hi - 1];
    }
    free(s);
    if (m == 0) {
        r.noisy = true;
        snprintf(r.reason, sizeof r.reason, "no samples");
    } else if (m < 3) {
        r.noisy = true;
        snprintf(r.reason, sizeof r.reason, "under-sampled: n=%zu", m);
    } else if (isfinite(r.cv) && r.cv > cv_max) {
        r.noisy = true;
        snprintf(r.reason, sizeof r.reason, "cv %.1f%% > %.0f%%", 100.0 * r.cv, 100.0 * cv_max);
    }
    *out = r;
    return IBEX_OK;
}

double ibex_noise_rel_halfwidth(const ibex_noise *nz)
{
    if (!isfinite(nz->ci_lo) || !isfinite(nz->ci_hi) || !isfinite(nz->median) || nz->median == 0.0)
        return NAN;
    return (nz->ci_hi - nz->ci_lo) / 2.0 / fabs(nz->median);
}

/* ---------------------------------------------------------------- machine load */

bool ibex_load_judge(const ibex_load_sample *s, char *warning, size_t cap)
{
    const double margin = 0.75;
    double room = (double)(s->n_cpus - s->threads);
    if (room < 0.0)
        room = 0.0;
    double other_start = s->load1_start - (isfinite(s->own_start) ? s->own_start : 0.0);
    double other_end = s->load1_end - (isfinite(s->own_end) ? s->own_end : 0.0);
    bool busy = (isfinite(other_start) && other_start > room + margin) ||
                (isfinite(other_end) && other_end > room + margin);
    double cpw = s->wall_s > 0.0 ? s->cpu_s / s->wall_s : NAN;
    bool starved = s->check_starved && isfinite(cpw) && cpw < 0.6;
    /* A process that got (nearly) every CPU-second its threads could use was not slowed
     * by other work, whatever the lagging load average says (it counts ibex's own
     * threads, and own_* only estimates that share). */
    if (isfinite(cpw) && s->threads > 0 && cpw >= 0.9 * s->threads)
        busy = false;
    if (warning && cap)
        warning[0] = '\0';
    if (!busy && !starved)
        return false;
    double load = isfinite(s->load1_end) && !(s->load1_start > s->load1_end) ? s->load1_end : s->load1_start;
    char lt[32] = "unknown";
    if (isfinite(load))
        snprintf(lt, sizeof lt, "%.1f", load);
    if (warning && cap)
        snprintf(warning, cap, "machine busy: load %s on %d CPUs, ibex got %.1f CPU-s per s with %d thread%s%s", lt,
                 s->n_cpus, isfinite(cpw) ? cpw : 0.0, s->threads, s->threads == 1 ? "" : "s",
                 starved && !busy ? " (starved)" : "");
    return true;
}

/* ---------------------------------------------------------------- KV over a run */

void ibex_kv_util_run(const int64_t *reserved, const int64_t *used, const double *dt, size_t n, double *at_peak,
                      double *time_weighted)
{
    int64_t peak = 0, used_at_peak = 0;
    double su = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (reserved[i] > peak || (reserved[i] == peak && used[i] > used_at_peak))
            peak = reserved[i], used_at_peak = used[i];
        double w = dt && dt[i] > 0.0 ? dt[i] : 0.0;
        su += (double)used[i] * w;
        sr += (double)reserved[i] * w;
    }
    *at_peak = peak > 0 ? (double)used_at_peak / (double)peak : NAN;
    *time_weighted = sr > 0.0 ? su / sr : NAN;
}

/* ---------------------------------------------------------------- definitions */

static const ibex_metric_def metric_defs[] = {
    {"ttft", "TTFT", "first_token_time - arrival_time (per request; includes queueing and prefill)", "s"},
    {"e2e", "E2E latency", "last_token_time - arrival_time (per request)", "s"},
    {"tpot", "TPOT", "(E2E - TTFT) / (output_tokens - 1) (per request; undefined and excluded when output_tokens < 2)", "s"},
    {"itl", "ITL", "token_time[k+1] - token_time[k] (every gap of every request, pooled)", "s"},
    {"output_throughput", "Output throughput", "sum(returned output tokens) / wall_time (beam search: the returned hypothesis, not width x steps)", "tokens/s"},
    {"total_throughput", "Total throughput", "sum(input_tokens + output_tokens) / wall_time", "tokens/s"},
    {"request_throughput", "Request throughput", "requests / wall_time", "requests/s"},
    {"goodput", "Goodput", "requests with TTFT <= SLO_ttft and TPOT <= SLO_tpot and E2E <= SLO_e2e / wall_time (an SLO of 0 = no limit; undefined TPOT passes; requests with no output fail)", "requests/s"},
    {"kv_utilisation", "KV utilisation", "kv_used_bytes / kv_reserved_bytes", "fraction"},
    {"kv_fragmentation", "KV fragmentation", "kv_reserved_bytes - kv_used_bytes", "bytes"},
    {"kv_utilisation_at_peak", "KV utilisation at peak", "kv_used_bytes / kv_reserved_bytes at the step of peak reserved (of those, the one with most used)", "fraction"},
    {"kv_utilisation_time_weighted", "KV utilisation, time-weighted", "sum(used_i * dt_i) / sum(reserved_i * dt_i) over steps i of wall time dt_i", "fraction"},
    {"recompute_share", "Recompute share", "recomputed prefill tokens (preemption by recompute) / first-time prefill tokens", "fraction"},
    {"hypothesis_throughput", "Hypothesis throughput", "every sequence-token computed (beam: width x steps; n samples: all n) / wall_time", "tokens/s"},
    {"median_ci", "CI of the median", "sorted x_(1..n); [x_(j), x_(n-j+1)] with j the largest rank with 1 - 2 P(Binomial(n, 1/2) <= j-1) >= 0.95 (distribution-free; undefined for n < 6)", "unit of x"},
    {"cv", "Coefficient of variation", "sd / |mean| over repetitions; noisy when > noise.cv_max (default 10%) or n < 3", "fraction"},
    {"mean", "Mean", "sum(x) / n", "unit of x"},
    {"sd", "Standard deviation", "sqrt(sum((x - mean)^2) / (n - 1)) (sample sd; 0 when n < 2)", "unit of x"},
    {"percentile", "Percentile p", "sorted x[0..n-1], h = p/100 * (n - 1), i = floor(h): x[i] + (h - i) * (x[i+1] - x[i]) (numpy 'linear')", "unit of x"},
    {"power_fit", "Power-law fit", "y = a * x^b by least squares on (ln x, ln y); R^2 of the log-log fit", "b: dimensionless"},
    {"mann_whitney", "Mann-Whitney U", "U_a = R_a - n_a(n_a+1)/2; z = (|U_a - n_a n_b/2| - 0.5) / sigma (tie-corrected); p = 2 P(Z > |z|) (two-sided)", "p: probability"},
};

const ibex_metric_def *ibex_metric_defs(size_t *n)
{
    if (n)
        *n = sizeof metric_defs / sizeof metric_defs[0];
    return metric_defs;
}

const ibex_metric_def *ibex_metric_def_find(const char *key)
{
    if (!key)
        return NULL;
    for (size_t i = 0; i < sizeof metric_defs / sizeof metric_defs[0]; i++)
        if (strcmp(metric_defs[i].key, key) == 0)
            return &metric_defs[i];
    return NULL;
}
