/* report_plot_latency.c — empirical CDFs of raw latency samples (TTFT, E2E, ITL). */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Linear-interpolation percentile of sorted data (numpy's default). */
double ibex_plot_pct_sorted(const double *s, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double h = q / 100.0 * (double)(n - 1);
    size_t i = (size_t)floor(h);
    if (i >= n - 1)
        return s[n - 1];
    return s[i] + (h - (double)i) * (s[i + 1] - s[i]);
}

/* The empirical CDF of raw samples of one latency, for up to MAX_CDF_POINTS points
 * spread evenly over the sweep. */
void ibex_plot_plan_cdf(ibex_report_plots *P, const json_t *const *pts, size_t np, const char *metric,
                     const char *display)
{
    size_t with[4096];
    size_t nw = 0;
    for (size_t i = 0; i < np && nw < 4096; i++) {
        const json_t *raw = ibex_report_get(pts[i], "raw");
        raw = json_is_object(raw) ? json_object_get(raw, metric) : NULL;
        if (json_is_array(raw) && json_array_size(raw) > 0)
            with[nw++] = i;
    }
    if (nw == 0)
        return;
    char name[64], title[128];
    snprintf(name, sizeof name, "cdf_%s", metric);
    snprintf(title, sizeof title, "%s distribution (CDF of raw samples)", display);
    plot *p = ibex_plot_new(P, name, title, PLOT_LINES);
    if (!p)
        return;
    snprintf(p->xlabel, sizeof p->xlabel, "%s (ms)", display);
    snprintf(p->ylabel, sizeof p->ylabel, "fraction of samples <= x");
    p->logx = true;
    p->steps = true;
    p->ymax = 1.02;
    size_t shown = nw < MAX_CDF_POINTS ? nw : MAX_CDF_POINTS;
    double worst_ratio = 0;
    char worst[256] = "";
    for (size_t k = 0; k < shown; k++) {
        size_t idx = shown == 1 ? with[0] : with[(k * (nw - 1) + (shown - 1) / 2) / (shown - 1)];
        const json_t *pt = pts[idx];
        const json_t *raw = json_object_get(json_object_get(pt, "raw"), metric);
        size_t n = json_array_size(raw);
        double *v = malloc(n * sizeof *v);
        if (!v) {
            P->oom = true;
            return;
        }
        size_t m = 0;
        for (size_t j = 0; j < n; j++) {
            const json_t *e = json_array_get(raw, j);
            if (json_is_number(e) && isfinite(json_number_value(e)) && json_number_value(e) > 0)
                v[m++] = json_number_value(e);
        }
        qsort(v, m, sizeof *v, ibex_plot_cmp_double);
        const char *label = ibex_report_str(pt, "label");
        char lab[256];
        snprintf(lab, sizeof lab, "%s", label ? label : "point");
        series *s = ibex_plot_add_series(P, p, lab);
        for (size_t j = 0; j < m; j++)
            ibex_plot_series_push(P, s, v[j] * 1000.0, (double)(j + 1) / (double)m);
        if (m > 0) {
            double p50 = ibex_plot_pct_sorted(v, m, 50), p99 = ibex_plot_pct_sorted(v, m, 99);
            char a[64], b[64];
            ibex_plot_appendf(P, &p->reading, "%s%s: p50 %s, p99 %s (%zu samples).", p->reading ? " " : "", lab,
                    ibex_report_fmt_seconds(p50, a, sizeof a), ibex_report_fmt_seconds(p99, b, sizeof b), m);
            if (p50 > 0 && p99 / p50 > worst_ratio) {
                worst_ratio = p99 / p50;
                snprintf(worst, sizeof worst, "%s", lab);
            }
        }
        free(v);
        if (P->oom)
            return;
    }
    if (!ibex_plot_prune_series(P, p, 1) || P->oom)
        return;
    for (size_t i = 0; i < p->ns; i++)
        if (p->s[i].n == 1) {
            p->s[i].points = true; /* a step plot of one sample draws nothing */
            ibex_plot_appendf(P, &p->reading, " A series with a single sample is drawn as one point: it has no "
                                              "distribution to show.");
            break;
        }
    /* A log axis only helps when the samples span more than a decade or so. */
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < p->ns; i++) {
        lo = fmin(lo, p->s[i].x[0]);
        hi = fmax(hi, p->s[i].x[p->s[i].n - 1]);
    }
    p->logx = lo > 0 && hi / lo > 20;
    if (worst_ratio > 0)
        ibex_plot_appendf(P, &p->reading, " The longest tail (p99/p50) is %.2fx, at %s.", worst_ratio, worst);
    if (nw > shown)
        ibex_plot_appendf(P, &p->reading, " (%zu of %zu points shown, spread over the sweep.)", shown, nw);
}
