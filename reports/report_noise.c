/* report_noise.c — the spread of a timed figure over a point's repetitions, as the
 * tables and the claims verdicts show and use it: read from the runner's `noise`
 * object when results.json has one, else computed from `repetitions`, so older files
 * still get an honest "± sd (CV)" or "n=1".
 *
 * Design notes:
 *  1. The figure itself stays what metrics.* says (the median the runner computed):
 *     the spread is put beside it, never substituted for it.
 *  2. The interval verdicts use is the CI of the median when the runner gives one
 *     (n >= 6), else the full range of the repetitions: with n = 3 the range covers the
 *     median with probability 1 - 2 * 2^-3 = 75 %, wider than nothing and stated as a
 *     range, not a CI.
 *  3. A proxy (decode_s for decode_ms_per_token) is used only when the repetitions
 *     lack the metric: the steps of a repetition are the same every time, so the
 *     relative spread of decode_s is that of the time per step. */
#include "reports/reports.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* metrics path of a repetition metric: "ttft_p50" -> "metrics/ttft/p50". */
static void metric_path(const char *metric, char *buf, size_t n)
{
    static const char *const pct[] = {"ttft_", "tpot_", "itl_", "e2e_"};
    for (size_t i = 0; i < sizeof pct / sizeof pct[0]; i++) {
        size_t l = strlen(pct[i]);
        if (strncmp(metric, pct[i], l) == 0 && metric[l] == 'p') {
            snprintf(buf, n, "metrics/%.*s/%s", (int)(l - 1), metric, metric + l);
            return;
        }
    }
    snprintf(buf, n, "metrics/%s", metric);
}

/* The figure of a point for a metric (NaN when missing). */
static double figure(const json_t *pt, const char *metric)
{
    if (strcmp(metric, "attention_prefill_s") == 0) {
        double ns = ibex_report_num(pt, "ops/prefill/attention/ns");
        double reps = ibex_report_num(pt, "metrics/repetitions");
        if (!(reps >= 1)) {
            const json_t *r = ibex_report_get(pt, "repetitions");
            reps = json_is_array(r) && json_array_size(r) ? (double)json_array_size(r) : 1;
        }
        return ns * 1e-9 / reps;
    }
    char path[128];
    metric_path(metric, path, sizeof path);
    return ibex_report_num(pt, path);
}

/* The value of metric in one repetition object (NaN when absent or null). */
static double rep_value(const json_t *rep, const char *metric)
{
    if (strcmp(metric, "attention_prefill_s") == 0) {
        double ms = ibex_report_num(rep, "ops/prefill/attention");
        return isfinite(ms) ? ms * 1e-3 : NAN;
    }
    return ibex_report_num(rep, metric);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Values of metric over the repetitions, into v (at most cap); returns the count. */
static size_t rep_values(const json_t *pt, const char *metric, double *v, size_t cap)
{
    const json_t *reps = ibex_report_get(pt, "repetitions");
    size_t n = 0, i;
    const json_t *r;
    if (!json_is_array(reps))
        return 0;
    json_array_foreach(reps, i, r) {
        double x = rep_value(r, metric);
        if (isfinite(x) && n < cap)
            v[n++] = x;
    }
    return n;
}

static double median_sorted(const double *s, size_t n)
{
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

bool ibex_report_spread_get(const json_t *pt, const char *metric, ibex_report_spread *out)
{
    memset(out, 0, sizeof *out);
    out->median = out->sd = out->cv = out->lo = out->hi = NAN;
    if (!pt || !metric)
        return false;
    double fig = figure(pt, metric);

    /* 1. The runner's own noise object. */
    char path[160];
    snprintf(path, sizeof path, "noise/%s", metric);
    const json_t *nz = ibex_report_get(pt, path);
    if (json_is_object(nz) && isfinite(ibex_report_num(nz, "n"))) {
        out->n = (size_t)ibex_report_num(nz, "n");
        out->median = isfinite(fig) ? fig : ibex_report_num(nz, "median");
        out->sd = ibex_report_num(nz, "sd");
        out->cv = ibex_report_num(nz, "cv");
        out->lo = ibex_report_num(nz, "ci_lo");
        out->hi = ibex_report_num(nz, "ci_hi");
        out->is_ci = isfinite(out->lo) && isfinite(out->hi);
        const json_t *noisy = json_object_get(nz, "noisy");
        const char *why = ibex_report_str(nz, "reason");
        if (json_is_boolean(noisy))
            out->noisy = json_is_true(noisy);
        else
            out->noisy = out->n < 3 || (isfinite(out->cv) && out->cv > IBEX_REPORT_CV_MAX);
        if (out->noisy)
            snprintf(out->reason, sizeof out->reason, "%s", why && *why ? why : "noisy");
        if (!out->is_ci) { /* too few for a CI: the range of the repetitions, when they are there */
            double v[1024];
            size_t m = rep_values(pt, metric, v, 1024);
            if (m >= 2) {
                qsort(v, m, sizeof *v, cmp_d);
                out->lo = v[0], out->hi = v[m - 1];
            }
        }
        return isfinite(out->median);
    }

    /* 2. The repetitions, or a proxy they hold. */
    double v[1024];
    size_t m = rep_values(pt, metric, v, 1024);
    int power = 1;
    if (m == 0) {
        const char *proxy = NULL;
        if (!strcmp(metric, "decode_ms_per_token"))
            proxy = "decode_s";
        else if (!strcmp(metric, "decode_tok_per_s"))
            proxy = "decode_s", power = -1;
        else if (!strcmp(metric, "prefill_tok_per_s"))
            proxy = "prefill_s", power = -1;
        else if (!strcmp(metric, "attention_prefill_s"))
            proxy = "prefill_s";
        if (proxy && isfinite(fig)) {
            m = rep_values(pt, proxy, v, 1024);
            double s[1024];
            memcpy(s, v, m * sizeof *v);
            qsort(s, m, sizeof *s, cmp_d);
            double med = m ? median_sorted(s, m) : NAN;
            if (m && med > 0) {
                for (size_t i = 0; i < m; i++)
                    v[i] = fig * pow(v[i] / med, power);
                out->proxy = true;
            } else {
                m = 0;
            }
        }
    }
    if (m == 0) {
        out->median = fig;
        double reps = ibex_report_num(pt, "metrics/repetitions");
        out->n = isfinite(reps) && reps >= 1 ? (size_t)reps : 0;
        out->noisy = out->n > 0 && out->n < 3;
        if (out->noisy)
            snprintf(out->reason, sizeof out->reason, "under-sampled: n=%zu", out->n);
        return isfinite(fig);
    }
    qsort(v, m, sizeof *v, cmp_d);
    double mean = 0;
    for (size_t i = 0; i < m; i++)
        mean += v[i];
    mean /= (double)m;
    out->n = m;
    out->median = isfinite(fig) ? fig : median_sorted(v, m);
    if (m >= 2) {
        double ss = 0;
        for (size_t i = 0; i < m; i++)
            ss += (v[i] - mean) * (v[i] - mean);
        out->sd = sqrt(ss / (double)(m - 1));
        out->cv = mean != 0 ? out->sd / fabs(mean) : NAN;
        out->lo = v[0];
        out->hi = v[m - 1];
    }
    if (m < 3) {
        out->noisy = true;
        snprintf(out->reason, sizeof out->reason, "under-sampled: n=%zu", m);
    } else if (isfinite(out->cv) && out->cv > IBEX_REPORT_CV_MAX) {
        out->noisy = true;
        snprintf(out->reason, sizeof out->reason, "cv %.1f%% > %.0f%%", 100 * out->cv, 100 * IBEX_REPORT_CV_MAX);
    }
    return isfinite(out->median);
}

/* v with three significant digits; sd with two. */
static void sig(double v, int digits, char *buf, size_t n)
{
    double a = fabs(v);
    if (digits == 3 && (a >= 100 || a == 0))
        snprintf(buf, n, "%.0f", v);
    else if (digits == 3 && a >= 10)
        snprintf(buf, n, "%.1f", v);
    else if (digits == 3 && a >= 1)
        snprintf(buf, n, "%.2f", v);
    else if (digits == 2 && a >= 10)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%.*g", digits, v);
}

char *ibex_report_fmt_spread(const ibex_report_spread *s, bool seconds, const char *unit, const char *missing,
                             char *buf, size_t n)
{
    if (!s || !isfinite(s->median)) {
        snprintf(buf, n, "%s", missing ? missing : "-");
        return buf;
    }
    double scale = 1;
    const char *u = unit ? unit : "";
    if (seconds) {
        static const struct {
            double scale;
            const char *unit;
        } su[] = {{1, "s"}, {1e-3, "ms"}, {1e-6, "µs"}, {1e-9, "ns"}};
        size_t k = 0;
        while (k + 1 < sizeof su / sizeof su[0] && fabs(s->median) < su[k].scale && s->median != 0)
            k++;
        scale = su[k].scale;
        u = su[k].unit;
    }
    char med[48], sd[48];
    sig(s->median / scale, 3, med, sizeof med);
    size_t len;
    if (s->n >= 2 && isfinite(s->sd)) {
        sig(s->sd / scale, 2, sd, sizeof sd);
        len = (size_t)snprintf(buf, n, "%s ± %s%s%s", med, sd, *u ? " " : "", u);
        if (len < n && isfinite(s->cv)) {
            double c = 100 * s->cv;
            len += (size_t)snprintf(buf + len, n - len, c >= 9.95 || c == 0 ? " (CV %.0f %%)" : " (CV %.1f %%)", c);
        }
    } else if (s->n == 1) {
        len = (size_t)snprintf(buf, n, "%s%s%s (n=1)", med, *u ? " " : "", u);
    } else {
        len = (size_t)snprintf(buf, n, "%s%s%s", med, *u ? " " : "", u);
    }
    if (s->noisy && len < n)
        snprintf(buf + len, n - len, " ⚠");
    return buf;
}
