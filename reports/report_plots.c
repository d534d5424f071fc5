/* report_plots.c — choosing the plots of a run from what was swept, computing their
 * data and a reading of each (power-law exponents, ratios), writing gnuplot scripts
 * and data beside the images, and running gnuplot (fork+exec) to render them.
 *
 * Design notes:
 *  1. Planning is pure computation over results.json; rendering is the only I/O, so
 *     report.md and the terminal summary can use the readings without gnuplot.
 *  2. A script renders PNG then SVG from the same plot command (`replot`), reads only
 *     NAME.dat by a relative name, and takes png_out / svg_out / dumb from `-e`, so a
 *     user can rerun it by hand from plots/ and ibex can render under .tmp names.
 *  3. Op totals in results.json cover every timed repetition; they are divided by the
 *     number of repetitions so they share the unit of prefill_s (per repetition).
 *     Exponents do not depend on that scale.
 *  4. Accounting-only points (params.compute false) never reach a timing plot
 *     (prefill, decode, throughput, latency, CDFs): their times measure only the
 *     bookkeeping. Their exact KV bytes are plotted against the sequence length. */
#include "reports/reports.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SWEPT 64
#define MAX_CDF_POINTS 8
#define MAX_BAR_COLS 4

enum plot_kind { PLOT_LINES, PLOT_BARS };

typedef struct series {
    char *title;
    size_t n, cap;
    double *x, *y;
    int lc;      /* gnuplot line colour index, 0 = the default cycle */
    int pt;      /* gnuplot point type, 0 = the default cycle */
    bool dashed; /* drawn dashed (a companion of the solid series of the same colour) */
} series;

typedef struct plot {
    char name[96];
    char title[256];
    char xlabel[160], ylabel[160], y2label[160];
    enum plot_kind kind;
    bool logx, logy, steps;
    double ymax;     /* > 0: the y range is [0, ymax] */
    int logbase;     /* base of the log axes; 0 means 10 */
    bool xtics_data; /* one x tic at each distinct x of the data (at most 16) */
    series *s; /* PLOT_LINES: (ns) series */
    size_t ns;
    char **cat; /* PLOT_BARS: (ncat) categories */
    size_t ncat;
    size_t ncol;
    char coltitle[MAX_BAR_COLS][128];
    bool col_y2[MAX_BAR_COLS];
    double *val; /* (ncat, ncol) */
    char *reading;
    bool rendered;
} plot;

struct ibex_report_plots {
    plot *v;
    size_t n, cap;
    bool oom;
    char note[1024];
};

/* ---------------------------------------------------------------- small helpers */

static char *dup_str(ibex_report_plots *P, const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        P->oom = true;
    return d;
}

/* Appends printf text to the growing string *s (NULL starts one). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void appendf(ibex_report_plots *P, char **s, const char *fmt, ...)
{
    if (P->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int add = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t old = *s ? strlen(*s) : 0;
    char *r = realloc(*s, old + (size_t)add + 1);
    if (!r) {
        P->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(r + old, (size_t)add + 1, fmt, ap);
    va_end(ap);
    *s = r;
}

static plot *new_plot(ibex_report_plots *P, const char *name, const char *title, enum plot_kind kind)
{
    if (P->oom)
        return NULL;
    if (P->n == P->cap) {
        size_t cap = P->cap ? 2 * P->cap : 8;
        plot *v = realloc(P->v, cap * sizeof *v);
        if (!v) {
            P->oom = true;
            return NULL;
        }
        P->v = v;
        P->cap = cap;
    }
    plot *p = &P->v[P->n++];
    memset(p, 0, sizeof *p);
    /* File stems keep [A-Za-z0-9_-] only. */
    size_t k = 0;
    for (const char *c = name; *c && k + 1 < sizeof p->name; c++)
        p->name[k++] = ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                        *c == '-' || *c == '_')
                           ? *c
                           : '_';
    p->name[k] = '\0';
    snprintf(p->title, sizeof p->title, "%s", title);
    p->kind = kind;
    return p;
}

static void drop_last_plot(ibex_report_plots *P);

static series *add_series(ibex_report_plots *P, plot *p, const char *title)
{
    if (P->oom || !p)
        return NULL;
    series *s = realloc(p->s, (p->ns + 1) * sizeof *s);
    if (!s) {
        P->oom = true;
        return NULL;
    }
    p->s = s;
    series *ns = &p->s[p->ns++];
    memset(ns, 0, sizeof *ns);
    ns->title = dup_str(P, title);
    return ns;
}

static void series_push(ibex_report_plots *P, series *s, double x, double y)
{
    if (P->oom || !s || !isfinite(x) || !isfinite(y))
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) {
            P->oom = true;
            return;
        }
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) {
            P->oom = true;
            return;
        }
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

static void series_sort(series *s)
{
    for (size_t i = 1; i < s->n; i++) /* insertion sort: sweeps are short */
        for (size_t j = i; j > 0 && s->x[j - 1] > s->x[j]; j--) {
            double t = s->x[j];
            s->x[j] = s->x[j - 1];
            s->x[j - 1] = t;
            t = s->y[j];
            s->y[j] = s->y[j - 1];
            s->y[j - 1] = t;
        }
}

static void free_plot(plot *p)
{
    for (size_t i = 0; i < p->ns; i++) {
        free(p->s[i].title);
        free(p->s[i].x);
        free(p->s[i].y);
    }
    free(p->s);
    for (size_t i = 0; i < p->ncat; i++)
        free(p->cat[i]);
    free(p->cat);
    free(p->val);
    free(p->reading);
}

static void drop_last_plot(ibex_report_plots *P)
{
    if (P->n == 0)
        return;
    free_plot(&P->v[P->n - 1]);
    P->n--;
}

/* Removes series with fewer than min_n points; drops the plot when none remains.
 * Returns whether the plot is kept. */
static bool prune_series(ibex_report_plots *P, plot *p, size_t min_n)
{
    size_t k = 0;
    for (size_t i = 0; i < p->ns; i++) {
        if (p->s[i].n >= min_n) {
            series_sort(&p->s[i]);
            p->s[k++] = p->s[i];
        } else {
            free(p->s[i].title);
            free(p->s[i].x);
            free(p->s[i].y);
        }
    }
    p->ns = k;
    if (k == 0) {
        drop_last_plot(P);
        return false;
    }
    return true;
}

static bool point_ok(const json_t *pt)
{
    const char *st = ibex_report_str(pt, "status");
    return json_is_object(pt) && (!st || strcmp(st, "ok") == 0);
}

/* "k1=v1 k2=v2" over the swept keys except `skip` (may be NULL). */
static void group_label(const json_t *pt, const char **keys, size_t nk, const char *skip, char *buf,
                        size_t n)
{
    buf[0] = '\0';
    size_t len = 0;
    for (size_t k = 0; k < nk; k++) {
        if (skip && strcmp(keys[k], skip) == 0)
            continue;
        char v[256];
        ibex_report_swept_text(pt, keys[k], v, sizeof v);
        int w = snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", keys[k], v);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
}

/* The last '.'-separated part of a key ("kv.max_seq_len" -> "max_seq_len"). */
static const char *short_key(const char *key)
{
    const char *d = strrchr(key, '.');
    return d ? d + 1 : key;
}

/* The category of a point in bar plots: its swept values joined by ", ", a word as is
 * ("paged") and a number with its short key ("max_seq_len=4096") so that points
 * sharing a word stay distinguishable; or its label, or its index. */
static void category_label(const json_t *pt, size_t idx, const char **keys, size_t nk, char *buf,
                           size_t n)
{
    buf[0] = '\0';
    size_t len = 0;
    for (size_t k = 0; k < nk; k++) {
        char v[256];
        ibex_report_swept_text(pt, keys[k], v, sizeof v);
        if (!v[0])
            continue;
        int w = isfinite(ibex_report_swept_num(pt, keys[k]))
                    ? snprintf(buf + len, n - len, "%s%s=%s", len ? ", " : "", short_key(keys[k]), v)
                    : snprintf(buf + len, n - len, "%s%s", len ? ", " : "", v);
        if (w < 0 || (size_t)w >= n - len) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
    if (len == 0) {
        const char *l = ibex_report_str(pt, "label");
        if (l)
            snprintf(buf, n, "%s", l);
        else
            snprintf(buf, n, "point %zu", idx);
    }
}

/* The distinct group labels of the ok points, first appearance first. Returns the
 * number (at most max); labels are written to groups[i][0..gn-1]. */
static size_t distinct_groups(const json_t *const *pts, size_t np, const char **keys, size_t nk,
                              const char *skip, char (*groups)[256], size_t max)
{
    size_t ng = 0;
    for (size_t i = 0; i < np; i++) {
        char g[256];
        group_label(pts[i], keys, nk, skip, g, sizeof g);
        size_t j = 0;
        while (j < ng && strcmp(groups[j], g) != 0)
            j++;
        if (j == ng && ng < max)
            snprintf(groups[ng++], 256, "%s", g);
    }
    return ng;
}

/* Repetitions a point's op totals cover: the length of "repetitions", else
 * params.repeat, else 1. */
static double point_reps(const json_t *pt)
{
    const json_t *r = json_object_get(pt, "repetitions");
    if (json_is_array(r) && json_array_size(r) > 0)
        return (double)json_array_size(r);
    double rep = ibex_report_num(pt, "params/repeat");
    return isfinite(rep) && rep >= 1 ? rep : 1.0;
}

/* Sum of ops.<phase>.*.ns over every op (only = NULL), one op, or all but one. */
static double ops_ns(const json_t *pt, const char *phase, const char *only, const char *except)
{
    const json_t *ops = ibex_report_get(pt, "ops");
    ops = json_is_object(ops) ? json_object_get(ops, phase) : NULL;
    if (!json_is_object(ops))
        return NAN;
    double sum = 0;
    bool any = false;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)ops, k, v) {
        if (only && strcmp(k, only) != 0)
            continue;
        if (except && strcmp(k, except) == 0)
            continue;
        double ns = ibex_report_num(v, "ns");
        if (isfinite(ns)) {
            sum += ns;
            any = true;
        }
    }
    return any ? sum : NAN;
}

static double fit_b(const series *s, double *r2)
{
    double b = NAN, r = NAN;
    if (s && ibex_report_power_fit(s->x, s->y, s->n, NULL, &b, &r)) {
        if (r2)
            *r2 = r;
        return b;
    }
    if (r2)
        *r2 = NAN;
    return NAN;
}

static double series_y_at_max_x(const series *s)
{
    return s && s->n ? s->y[s->n - 1] : NAN;
}

/* ---------------------------------------------------------------- the plans */

/* Prefill time and decode ms/token against the prompt length. */
static void plan_prompt_scaling(ibex_report_plots *P, const json_t *const *pts, size_t np,
                                const char **keys, size_t nk)
{
    const char *xk = "workload.prompt_tokens";
    char groups[16][256];
    size_t ng = distinct_groups(pts, np, keys, nk, xk, groups, 16);

    /* Prefill: whole, attention and the other ops per group. */
    plot *p = new_plot(P, "prefill_scaling", "Prefill time vs prompt length", PLOT_LINES);
    if (!p)
        return;
    snprintf(p->xlabel, sizeof p->xlabel, "prompt tokens");
    snprintf(p->ylabel, sizeof p->ylabel, "time per repetition (s)");
    p->logx = p->logy = true;
    for (size_t g = 0; g < ng; g++) {
        add_series(P, p, "prefill");
        add_series(P, p, "attention");
        add_series(P, p, "other ops");
        if (P->oom)
            return;
        /* Taken after the three additions: add_series may move the array. */
        series *whole = &p->s[p->ns - 3], *att = &p->s[p->ns - 2], *rest = &p->s[p->ns - 1];
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            group_label(pts[i], keys, nk, xk, gl, sizeof gl);
            if (strcmp(gl, groups[g]) != 0)
                continue;
            double x = ibex_report_swept_num(pts[i], xk);
            double reps = point_reps(pts[i]);
            double w = ibex_report_num(pts[i], "metrics/prefill_s");
            if (!isfinite(w))
                w = ops_ns(pts[i], "prefill", NULL, NULL) * 1e-9 / reps;
            series_push(P, whole, x, w);
            series_push(P, att, x, ops_ns(pts[i], "prefill", "attention", NULL) * 1e-9 / reps);
            series_push(P, rest, x, ops_ns(pts[i], "prefill", NULL, "attention") * 1e-9 / reps);
        }
        if (P->oom)
            return;
        /* Titles carry the fit; the reading says the same in words. */
        series *three[3] = {whole, att, rest};
        const char *what[3] = {"prefill", "attention", "other ops"};
        double b[3], r2[3];
        for (int k = 0; k < 3; k++) {
            series_sort(three[k]);
            b[k] = fit_b(three[k], &r2[k]);
            char t[512];
            if (isfinite(b[k]))
                snprintf(t, sizeof t, "%s%s%s  n^%.2f (R² %.3f)", what[k], groups[g][0] ? " " : "", groups[g],
                         b[k], r2[k]);
            else
                snprintf(t, sizeof t, "%s%s%s", what[k], groups[g][0] ? " " : "", groups[g]);
            free(three[k]->title);
            three[k]->title = dup_str(P, t);
        }
        if (whole->n >= 2 || att->n >= 2) {
            const series *ref = whole->n >= 2 ? whole : att;
            if (groups[g][0])
                appendf(P, &p->reading, "%s%s: prefill time", p->reading ? " " : "", groups[g]);
            else
                appendf(P, &p->reading, "%sPrefill time", p->reading ? " " : "");
            if (isfinite(b[0]))
                appendf(P, &p->reading, " grows as n^%.2f (R² %.3f) over %.0f..%.0f prompt tokens", b[0], r2[0],
                        ref->x[0], ref->x[ref->n - 1]);
            else
                appendf(P, &p->reading, " could not be fitted over %.0f..%.0f prompt tokens", ref->x[0],
                        ref->x[ref->n - 1]);
            if (isfinite(b[1]))
                appendf(P, &p->reading, "; attention alone as n^%.2f (R² %.3f)", b[1], r2[1]);
            if (isfinite(b[2]))
                appendf(P, &p->reading, ", the other ops as n^%.2f (R² %.3f)", b[2], r2[2]);
            double a_last = series_y_at_max_x(att), r_last = series_y_at_max_x(rest);
            if (att->n && rest->n && att->x[att->n - 1] == rest->x[rest->n - 1] && a_last + r_last > 0)
                appendf(P, &p->reading, ". At %.0f tokens attention is %.1f%% of the prefill op time",
                        att->x[att->n - 1], 100.0 * a_last / (a_last + r_last));
            appendf(P, &p->reading, ".");
        }
    }
    if (!prune_series(P, p, 1) || P->oom)
        goto decode;
    if (!p->reading)
        appendf(P, &p->reading, "Too few points to fit a power law (at least 2 prompt lengths are needed).");
    if (!P->oom)
        appendf(P, &p->reading,
                " An exponent of 2 means the time quadruples when the prompt doubles (quadratic attention); "
                "1 means linear (matmuls, norms).");

decode:
    if (P->oom)
        return;
    p = new_plot(P, "decode_vs_prompt", "Decode time per step vs prompt length", PLOT_LINES);
    if (!p)
        return;
    snprintf(p->xlabel, sizeof p->xlabel, "prompt tokens");
    snprintf(p->ylabel, sizeof p->ylabel, "decode ms per step (one token per running request)");
    p->logx = p->logy = true;
    p->logbase = 2;
    for (size_t g = 0; g < ng; g++) {
        series *s = add_series(P, p, groups[g][0] ? groups[g] : "decode");
        if (P->oom)
            return;
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            group_label(pts[i], keys, nk, xk, gl, sizeof gl);
            if (strcmp(gl, groups[g]) == 0)
                series_push(P, s, ibex_report_swept_num(pts[i], xk),
                            ibex_report_num(pts[i], "metrics/decode_ms_per_token"));
        }
        series_sort(s);
        if (s->n == 0)
            continue;
        double r2, b = fit_b(s, &r2);
        char t[512];
        if (isfinite(b)) {
            snprintf(t, sizeof t, "%s  n^%.2f (R² %.3f)", s->title, b, r2);
            free(s->title);
            s->title = dup_str(P, t);
        }
        appendf(P, &p->reading, "%s%s%s%.3g ms per decode step at %.0f prompt tokens", p->reading ? " " : "",
                groups[g], groups[g][0] ? ": " : "", s->y[0], s->x[0]);
        if (s->n >= 2) {
            appendf(P, &p->reading, ", %.3g ms at %.0f", s->y[s->n - 1], s->x[s->n - 1]);
            if (s->y[0] > 0 && s->x[0] > 0)
                appendf(P, &p->reading, " (x%.2f for a x%.2f longer prompt", s->y[s->n - 1] / s->y[0],
                        s->x[s->n - 1] / s->x[0]);
            if (isfinite(b))
                appendf(P, &p->reading, "; n^%.2f, R² %.3f", b, r2);
            if (s->y[0] > 0 && s->x[0] > 0)
                appendf(P, &p->reading, ")");
        }
        appendf(P, &p->reading, ".");
    }
    if (!prune_series(P, p, 1) || P->oom)
        return;
    /* The metric is per step: say how many tokens a step makes when every point agrees. */
    double batch = ibex_report_num(pts[0], "params/batch");
    for (size_t i = 1; i < np && isfinite(batch); i++)
        if (ibex_report_num(pts[i], "params/batch") != batch)
            batch = NAN;
    char *head = NULL;
    appendf(P, &head, "Median time of one decode step (decode_s / decode steps");
    if (isfinite(batch) && batch == 1)
        appendf(P, &head, "; batch 1, so one step is one token");
    else if (isfinite(batch))
        appendf(P, &head, "; up to %.0f requests per batch, each step makes one token for each running request",
                batch);
    appendf(P, &head, ") against the prompt length, which sets the context every step attends over. %s",
            p->reading ? p->reading : "");
    appendf(P, &head, " A step reads every weight once (independent of the context) and every cached K and V "
                      "(linear in the context): an exponent near 0 means the weight reads dominate, near 1 "
                      "that attention over the KV cache does.");
    if (P->oom) {
        free(head);
        return;
    }
    free(p->reading);
    p->reading = head;
}

/* Bar plot with one category per ok point and up to MAX_BAR_COLS columns read from
 * the given paths (scaled). Columns without any value are left out; a plot without
 * columns is dropped. Returns the plot or NULL. */
static plot *plan_bars(ibex_report_plots *P, const char *name, const char *title, const json_t *const *pts,
                       size_t np, const char **keys, size_t nk, size_t ncol, const char *const *paths,
                       const char *const *titles, const double *scale, const bool *y2)
{
    plot *p = new_plot(P, name, title, PLOT_BARS);
    if (!p)
        return NULL;
    p->cat = calloc(np ? np : 1, sizeof *p->cat);
    p->val = malloc((np ? np : 1) * MAX_BAR_COLS * sizeof *p->val);
    if (!p->cat || !p->val) {
        P->oom = true;
        return NULL;
    }
    for (size_t i = 0; i < np; i++) {
        char c[256];
        category_label(pts[i], i, keys, nk, c, sizeof c);
        p->cat[p->ncat++] = dup_str(P, c);
    }
    for (size_t c = 0; c < ncol && c < MAX_BAR_COLS; c++) {
        bool any = false;
        for (size_t i = 0; i < np; i++) {
            double v = ibex_report_num(pts[i], paths[c]) * scale[c];
            p->val[i * MAX_BAR_COLS + p->ncol] = v;
            any |= isfinite(v) != 0;
        }
        if (!any)
            continue;
        snprintf(p->coltitle[p->ncol], sizeof p->coltitle[0], "%s", titles[c]);
        p->col_y2[p->ncol] = y2[c];
        p->ncol++;
    }
    if (p->ncol == 0 || P->oom) {
        drop_last_plot(P);
        return NULL;
    }
    return p;
}

/* A point's KV configuration: its kv.policy, then every other swept kv.* key
 * ("contiguous kv.max_seq_len=4096"), so that one policy run with two settings reads
 * as two configurations. */
static void kv_config(const json_t *pt, const char **keys, size_t nk, char *buf, size_t n)
{
    char v[128];
    ibex_report_swept_text(pt, "kv.policy", v, sizeof v);
    if (!v[0]) {
        const char *pol = ibex_report_str(pt, "kv/policy");
        snprintf(v, sizeof v, "%s", pol ? pol : "?");
    }
    size_t len = (size_t)snprintf(buf, n, "%s", v);
    for (size_t k = 0; k < nk && len < n; k++) {
        if (strncmp(keys[k], "kv.", 3) != 0 || strcmp(keys[k], "kv.policy") == 0)
            continue;
        ibex_report_swept_text(pt, keys[k], v, sizeof v);
        int w = snprintf(buf + len, n - len, " %s=%s", keys[k], v);
        if (w < 0 || (size_t)w >= n - len) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
}

static bool policy_is_none(const json_t *pt)
{
    const char *pol = ibex_report_str(pt, "params/kv.policy");
    if (!pol)
        pol = ibex_report_str(pt, "kv/policy");
    return pol && strcmp(pol, "none") == 0;
}

/* KV utilisation, concurrency and peak memory per point, the reading aggregated per
 * KV configuration. Points with policy none hold no cache and are left out; nothing
 * is drawn unless at least two configurations remain to compare. */
static void plan_kv(ibex_report_plots *P, const json_t *const *all, size_t nall, const char **keys, size_t nk)
{
    enum { MAXC = 16 };
    const json_t **pts = malloc((nall ? nall : 1) * sizeof *pts);
    if (!pts) {
        P->oom = true;
        return;
    }
    size_t np = 0;
    for (size_t i = 0; i < nall; i++)
        if (!policy_is_none(all[i]))
            pts[np++] = all[i];
    /* The reading aggregates per configuration: mean utilisation, highest concurrency
     * and largest peak reservation over that configuration's points. */
    char pol[MAXC][192];
    size_t npol = 0;
    double usum[MAXC] = {0}, conc[MAXC], resv[MAXC];
    size_t ucnt[MAXC] = {0};
    for (size_t i = 0; i < np; i++) {
        char v[192];
        kv_config(pts[i], keys, nk, v, sizeof v);
        size_t j = 0;
        while (j < npol && strcmp(pol[j], v) != 0)
            j++;
        if (j == npol) {
            if (npol == MAXC)
                continue;
            snprintf(pol[npol], sizeof pol[0], "%s", v);
            conc[npol] = resv[npol] = NAN;
            npol++;
        }
        double u = ibex_report_num(pts[i], "kv/utilisation_mean");
        if (isfinite(u)) {
            usum[j] += u;
            ucnt[j]++;
        }
        double c = ibex_report_num(pts[i], "kv/max_concurrent");
        if (isfinite(c) && !(c <= conc[j]))
            conc[j] = c;
        double r = ibex_report_num(pts[i], "kv/peak_reserved");
        if (isfinite(r) && !(r <= resv[j]))
            resv[j] = r;
    }
    if (npol < 2) {
        free(pts);
        return;
    }

    static const char *u_paths[] = {"kv/utilisation_mean", "kv/max_concurrent"};
    static const char *u_titles[] = {"mean KV utilisation (%, left)", "max concurrent requests (right)"};
    static const double u_scale[] = {100.0, 1.0};
    static const bool u_y2[] = {false, true};
    plot *p = plan_bars(P, "kv_utilisation", "KV utilisation and concurrency per point", pts, np, keys, nk, 2,
                        u_paths, u_titles, u_scale, u_y2);
    if (p) {
        snprintf(p->ylabel, sizeof p->ylabel, "mean utilisation used/reserved (%%)");
        snprintf(p->y2label, sizeof p->y2label, "max concurrent requests");
    }
    char *reading = NULL;
    bool any_u = false;
    for (size_t j = 0; j < npol; j++)
        any_u |= ucnt[j] > 0;
    if (any_u) {
        size_t shown = 0;
        for (size_t j = 0; j < npol; j++) {
            if (!ucnt[j])
                continue;
            double pct = 100.0 * usum[j] / (double)ucnt[j];
            if (shown == 0)
                appendf(P, &reading, "%s keeps %.1f%% of reserved KV in use on average", pol[j], pct);
            else
                appendf(P, &reading, "%s%.1f%% for %s", shown == 1 ? " vs " : ", ", pct, pol[j]);
            shown++;
        }
        appendf(P, &reading, ".");
    }
    bool any_c = false;
    for (size_t j = 0; j < npol; j++)
        any_c |= isfinite(conc[j]) != 0;
    if (any_c) {
        appendf(P, &reading, "%sHighest concurrency:", reading ? " " : "");
        for (size_t j = 0; j < npol; j++)
            if (isfinite(conc[j]))
                appendf(P, &reading, " %s %.0f;", pol[j], conc[j]);
        if (reading)
            reading[strlen(reading) - 1] = '.';
    }
    bool any_r = false;
    for (size_t j = 0; j < npol; j++)
        any_r |= isfinite(resv[j]) != 0;
    if (any_r) {
        appendf(P, &reading, "%sLargest peak KV reservation:", reading ? " " : "");
        for (size_t j = 0; j < npol; j++)
            if (isfinite(resv[j])) {
                char b[64];
                appendf(P, &reading, " %s %s;", pol[j], ibex_report_fmt_bytes(resv[j], b, sizeof b));
            }
        if (reading)
            reading[strlen(reading) - 1] = '.';
    }
    if (P->oom) {
        free(reading);
        free(pts);
        return;
    }
    if (p)
        p->reading = reading ? dup_str(P, reading) : dup_str(P, "No KV measurements in these points.");

    /* GiB once the largest reservation reaches 4 GiB, else MiB. */
    double rmax = 0;
    for (size_t j = 0; j < npol; j++)
        if (isfinite(resv[j]))
            rmax = fmax(rmax, resv[j]);
    bool gib = rmax >= 4.0 * 1073741824.0;
    static const char *m_paths[] = {"kv/peak_reserved", "kv/peak_used"};
    const char *m_titles[] = {gib ? "peak reserved (GiB)" : "peak reserved (MiB)",
                              gib ? "peak used (GiB)" : "peak used (MiB)"};
    const double unit = gib ? 1073741824.0 : 1048576.0, m_scale[] = {1.0 / unit, 1.0 / unit};
    static const bool m_y2[] = {false, false};
    plot *q = plan_bars(P, "kv_memory", "KV peak reserved and used per point", pts, np, keys, nk, 2, m_paths,
                        m_titles, m_scale, m_y2);
    if (q) {
        snprintf(q->ylabel, sizeof q->ylabel, "%s", gib ? "GiB" : "MiB");
        for (size_t i = 0; i < q->ncat; i++) {
            double r = ibex_report_num(pts[i], "kv/peak_reserved"), u = ibex_report_num(pts[i], "kv/peak_used");
            char a[64], b[64];
            if (!isfinite(r))
                continue;
            appendf(P, &q->reading, "%s%s: peak reserved %s, peak used %s", q->reading ? " " : "", q->cat[i],
                    ibex_report_fmt_bytes(r, a, sizeof a), ibex_report_fmt_bytes(u, b, sizeof b));
            if (isfinite(u) && r > 0)
                appendf(P, &q->reading, " (%.1f%% less)", 100.0 * (r - u) / r);
            appendf(P, &q->reading, ".");
        }
        appendf(P, &q->reading, "%sThe gap between the bars is reserved but unused memory (internal "
                                "fragmentation and over-reservation).",
                q->reading ? " " : "");
    }
    free(reading);
    free(pts);
}

/* One value per point for a metric as a line plot against a numeric swept key, one
 * series per value of the other swept keys. */
static plot *plan_vs(ibex_report_plots *P, const char *name, const char *title, const json_t *const *pts,
                     size_t np, const char **keys, size_t nk, const char *xk, size_t nm, const char *const *paths,
                     const char *const *mtitles, double scale)
{
    char groups[16][256];
    size_t ng = distinct_groups(pts, np, keys, nk, xk, groups, 16);
    plot *p = new_plot(P, name, title, PLOT_LINES);
    if (!p)
        return NULL;
    snprintf(p->xlabel, sizeof p->xlabel, "%s", xk);
    for (size_t g = 0; g < ng; g++)
        for (size_t m = 0; m < nm; m++) {
            char t[512];
            snprintf(t, sizeof t, "%s%s%s", mtitles[m], groups[g][0] ? " " : "", groups[g]);
            series *s = add_series(P, p, t);
            if (P->oom)
                return NULL;
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                group_label(pts[i], keys, nk, xk, gl, sizeof gl);
                if (strcmp(gl, groups[g]) == 0)
                    series_push(P, s, ibex_report_swept_num(pts[i], xk), ibex_report_num(pts[i], paths[m]) * scale);
            }
        }
    if (!prune_series(P, p, 1) || P->oom)
        return NULL;
    return p;
}

/* "X at k=a to Y at k=b" for each series of a plot, into the reading. */
static void read_range(ibex_report_plots *P, plot *p, const char *xk, const char *what, const char *unit)
{
    for (size_t i = 0; i < p->ns; i++) {
        const series *s = &p->s[i];
        char a[64], b[64];
        if (s->n >= 2) {
            appendf(P, &p->reading, "%s%s goes from %s at %s=%g to %s at %s=%g (x%.2f)", p->reading ? " " : "",
                    s->title, ibex_report_fmt_value(s->y[0], unit, a, sizeof a), xk, s->x[0],
                    ibex_report_fmt_value(s->y[s->n - 1], unit, b, sizeof b), xk, s->x[s->n - 1],
                    s->y[0] != 0 ? s->y[s->n - 1] / s->y[0] : NAN);
            /* The peak matters when it is not at either end (a saturation point). */
            size_t best = 0;
            for (size_t k = 1; k < s->n; k++)
                if (s->y[k] > s->y[best])
                    best = k;
            if (best != 0 && best != s->n - 1)
                appendf(P, &p->reading, ", peaking at %s at %s=%g",
                        ibex_report_fmt_value(s->y[best], unit, a, sizeof a), xk, s->x[best]);
            appendf(P, &p->reading, ".");
        } else {
            appendf(P, &p->reading, "%s%s: %s at %s=%g.", p->reading ? " " : "", s->title,
                    ibex_report_fmt_value(s->y[0], unit, a, sizeof a), xk, s->x[0]);
        }
    }
    (void)what;
}

static bool key_numeric(const json_t *const *pts, size_t np, const char *key)
{
    if (np == 0)
        return false;
    for (size_t i = 0; i < np; i++)
        if (!isfinite(ibex_report_swept_num(pts[i], key)))
            return false;
    return true;
}

static bool key_swept(const char **keys, size_t nk, const char *key)
{
    for (size_t k = 0; k < nk; k++)
        if (strcmp(keys[k], key) == 0)
            return true;
    return false;
}

/* Throughput and latency against batch or concurrency; bars when only the scheduler
 * varies. */
static void plan_batching(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                          size_t nk, const char **xk_out)
{
    const char *xk = NULL;
    if (key_swept(keys, nk, "batch") && key_numeric(pts, np, "batch"))
        xk = "batch";
    else if (key_swept(keys, nk, "workload.concurrency") && key_numeric(pts, np, "workload.concurrency"))
        xk = "workload.concurrency";
    *xk_out = xk;
    if (!xk) {
        static const char *paths[] = {"metrics/output_tok_per_s", "metrics/ttft/p99"};
        static const char *titles[] = {"output tok/s (left)", "TTFT p99 ms (right)"};
        static const double scale[] = {1.0, 1000.0};
        static const bool y2[] = {false, true};
        plot *p = plan_bars(P, "scheduler", "Throughput and tail latency per point", pts, np, keys, nk, 2,
                            paths, titles, scale, y2);
        if (!p)
            return;
        snprintf(p->ylabel, sizeof p->ylabel, "output tokens/s");
        snprintf(p->y2label, sizeof p->y2label, "TTFT p99 (ms)");
        for (size_t i = 0; i < p->ncat; i++) {
            char a[64], b[64];
            appendf(P, &p->reading, "%s%s: %s, TTFT p99 %s.", p->reading ? " " : "", p->cat[i],
                    ibex_report_fmt_value(ibex_report_num(pts[i], "metrics/output_tok_per_s"), "tok/s", a,
                                          sizeof a),
                    ibex_report_fmt_seconds(ibex_report_num(pts[i], "metrics/ttft/p99"), b, sizeof b));
        }
        return;
    }
    char name[128];
    static const char *tp[] = {"metrics/output_tok_per_s"};
    static const char *tt[] = {"output tok/s"};
    snprintf(name, sizeof name, "throughput_vs_%s", xk);
    plot *p = plan_vs(P, name, "Output throughput vs batch size", pts, np, keys, nk, xk, 1, tp, tt, 1.0);
    if (p) {
        snprintf(p->ylabel, sizeof p->ylabel, "output tokens/s");
        p->logx = true;
        read_range(P, p, xk, "throughput", "tok/s");
    }
    static const char *lp[] = {"metrics/ttft/p50", "metrics/ttft/p99", "metrics/tpot/p50", "metrics/tpot/p99"};
    static const char *lt[] = {"TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99"};
    snprintf(name, sizeof name, "latency_vs_%s", xk);
    p = plan_vs(P, name, "Latency percentiles vs batch size", pts, np, keys, nk, xk, 4, lp, lt, 1000.0);
    if (p) {
        snprintf(p->ylabel, sizeof p->ylabel, "ms");
        p->logx = p->logy = true;
        read_range(P, p, xk, "latency", "ms");
    }
}

/* Decode speed and KV memory per decoding strategy; KV memory alone when timing is
 * false (accounting-only points, whose times mean nothing). */
static void plan_decoding(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys, size_t nk,
                          bool timing)
{
    static const char *paths[] = {"metrics/decode_tok_per_s", "kv/peak_reserved"};
    static const char *titles[] = {"decode tok/s (left)", "KV peak reserved MiB (right)"};
    static const double scale[] = {1.0, 1.0 / 1048576.0};
    static const bool y2[] = {false, true}, y1[] = {false};
    plot *p = timing ? plan_bars(P, "decoding", "Decode speed and KV memory per decoding strategy", pts, np, keys,
                                 nk, 2, paths, titles, scale, y2)
                     : plan_bars(P, "decoding", "KV memory per decoding strategy", pts, np, keys, nk, 1,
                                 paths + 1, titles + 1, scale + 1, y1);
    if (!p)
        return;
    if (timing) {
        snprintf(p->ylabel, sizeof p->ylabel, "decode tokens/s");
        snprintf(p->y2label, sizeof p->y2label, "KV peak reserved (MiB)");
    } else {
        snprintf(p->ylabel, sizeof p->ylabel, "KV peak reserved (MiB)");
    }
    for (size_t i = 0; i < p->ncat; i++) {
        char a[64], b[64];
        if (timing)
            appendf(P, &p->reading, "%s%s: %s decode, %s peak KV.", p->reading ? " " : "", p->cat[i],
                    ibex_report_fmt_value(ibex_report_num(pts[i], "metrics/decode_tok_per_s"), "tok/s", a,
                                          sizeof a),
                    ibex_report_fmt_bytes(ibex_report_num(pts[i], "kv/peak_reserved"), b, sizeof b));
        else
            appendf(P, &p->reading, "%s%s: %s peak KV.", p->reading ? " " : "", p->cat[i],
                    ibex_report_fmt_bytes(ibex_report_num(pts[i], "kv/peak_reserved"), b, sizeof b));
    }
}

/* A token count of a point: its swept value, else the fixed value in params
 * ({"dist": "fixed", "value": 64} or a bare number); NaN for other distributions. */
static double point_tokens(const json_t *pt, const char *key)
{
    double v = ibex_report_swept_num(pt, key);
    if (isfinite(v))
        return v;
    char path[160];
    snprintf(path, sizeof path, "params/%s", key);
    return ibex_report_num(pt, path);
}

/* "w1 k2=v2" over the swept keys except those skip() rejects: words as is, numbers with
 * their short key. */
static void short_group_label(const json_t *pt, const char **keys, size_t nk, bool (*skip)(const char *key),
                              char *buf, size_t n)
{
    buf[0] = '\0';
    size_t len = 0;
    for (size_t k = 0; k < nk; k++) {
        if (skip(keys[k]))
            continue;
        char v[256];
        ibex_report_swept_text(pt, keys[k], v, sizeof v);
        int w = isfinite(ibex_report_swept_num(pt, keys[k]))
                    ? snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", short_key(keys[k]), v)
                    : snprintf(buf + len, n - len, "%s%s", len ? " " : "", v);
        if (w < 0 || (size_t)w >= n - len) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
}

/* The x of the KV-vs-length plot: prompt + output tokens, or the prompt alone. */
static double seq_x(const json_t *pt, bool with_out)
{
    return point_tokens(pt, "workload.prompt_tokens") + (with_out ? point_tokens(pt, "workload.output_tokens") : 0);
}

static bool is_length_key(const char *k)
{
    return strcmp(k, "workload.prompt_tokens") == 0 || strcmp(k, "workload.output_tokens") == 0;
}

static bool is_length_or_kv_key(const char *k) { return is_length_key(k) || strncmp(k, "kv.", 3) == 0; }

/* KV memory (peak reserved and used, GiB) against the sequence length, prompt +
 * output tokens, one solid (reserved) and one dashed (used) line per value of the
 * other swept keys (policy, batch). Made for accounting-only points, whose byte counts
 * are exact and whose times mean nothing. Returns whether the plot was made. */
static bool plan_kv_vs_seq(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                           size_t nk)
{
    enum { MAXG = 16 };
    for (size_t i = 0; i < np; i++)
        if (!isfinite(point_tokens(pts[i], "workload.prompt_tokens")))
            return false;
    bool with_out = true;
    for (size_t i = 0; i < np; i++)
        with_out &= isfinite(point_tokens(pts[i], "workload.output_tokens")) != 0;
    /* One group per value of the other swept keys; its colour follows the keys that
     * are not kv.* (batch), its point type the KV configuration, so lines of two
     * policies that coincide still show both markers. */
    static const int point_types[] = {6, 4, 8, 10, 12, 14, 1, 2};
    char groups[MAXG][256], rests[MAXG][256], cfgs[MAXG][192];
    int lc[MAXG], ptype[MAXG];
    size_t ng = 0, nr = 0, ncf = 0;
    for (size_t i = 0; i < np; i++) {
        char g[256];
        short_group_label(pts[i], keys, nk, is_length_key, g, sizeof g);
        size_t j = 0;
        while (j < ng && strcmp(groups[j], g) != 0)
            j++;
        if (j < ng || ng == MAXG)
            continue;
        snprintf(groups[ng], 256, "%s", g);
        char r[256], c[192];
        short_group_label(pts[i], keys, nk, is_length_or_kv_key, r, sizeof r);
        kv_config(pts[i], keys, nk, c, sizeof c);
        size_t k = 0;
        while (k < nr && strcmp(rests[k], r) != 0)
            k++;
        if (k == nr)
            snprintf(rests[nr++], 256, "%s", r);
        lc[ng] = (int)k + 1;
        k = 0;
        while (k < ncf && strcmp(cfgs[k], c) != 0)
            k++;
        if (k == ncf)
            snprintf(cfgs[ncf++], sizeof cfgs[0], "%s", c);
        ptype[ng] = point_types[k % (sizeof point_types / sizeof point_types[0])];
        ng++;
    }
    plot *p = new_plot(P, "kv_memory_vs_length", "KV cache memory vs sequence length", PLOT_LINES);
    if (!p)
        return false;
    snprintf(p->xlabel, sizeof p->xlabel, "%s",
             with_out ? "sequence length: prompt + output tokens" : "prompt tokens");
    snprintf(p->ylabel, sizeof p->ylabel, "KV bytes at peak (GiB)");
    p->logx = p->logy = true;
    p->logbase = 2;
    p->xtics_data = true;
    for (size_t g = 0; g < ng; g++) {
        char t[300];
        snprintf(t, sizeof t, "%s%sreserved", groups[g], groups[g][0] ? " " : "");
        add_series(P, p, t);
        snprintf(t, sizeof t, "%s%sused", groups[g], groups[g][0] ? " " : "");
        add_series(P, p, t);
        if (P->oom)
            return false;
        series *r = &p->s[p->ns - 2], *u = &p->s[p->ns - 1];
        r->lc = u->lc = lc[g];
        r->pt = u->pt = ptype[g];
        u->dashed = true;
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            short_group_label(pts[i], keys, nk, is_length_key, gl, sizeof gl);
            if (strcmp(gl, groups[g]) != 0)
                continue;
            double x = seq_x(pts[i], with_out);
            series_push(P, r, x, ibex_report_num(pts[i], "kv/peak_reserved") / 1073741824.0);
            series_push(P, u, x, ibex_report_num(pts[i], "kv/peak_used") / 1073741824.0);
        }
    }
    if (!prune_series(P, p, 1) || P->oom)
        return false;
    size_t mem_plot = P->n - 1;

    /* Utilisation against the same lengths, read per KV configuration. */
    plot *q = new_plot(P, "kv_utilisation_vs_length", "KV utilisation vs sequence length", PLOT_LINES);
    if (q) {
        snprintf(q->xlabel, sizeof q->xlabel, "%s", p->xlabel);
        snprintf(q->ylabel, sizeof q->ylabel, "mean KV utilisation, used / reserved (%%)");
        q->logx = true;
        q->logbase = 2;
        q->xtics_data = true;
        q->ymax = 102;
        for (size_t g = 0; g < ng && !P->oom; g++) {
            series *u = add_series(P, q, groups[g][0] ? groups[g] : "utilisation");
            if (!u)
                break;
            u->lc = lc[g];
            u->pt = ptype[g];
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                short_group_label(pts[i], keys, nk, is_length_key, gl, sizeof gl);
                if (strcmp(gl, groups[g]) == 0)
                    series_push(P, u, seq_x(pts[i], with_out), 100.0 * ibex_report_num(pts[i], "kv/utilisation_mean"));
            }
        }
        if (!P->oom && prune_series(P, q, 1)) {
            appendf(P, &q->reading, "Used / reserved KV bytes averaged over the steps of each point (accounting "
                                    "only, exact).");
            for (size_t c = 0; c < ncf; c++) {
                double sum = 0, lo = INFINITY, hi = -INFINITY, conc = NAN;
                size_t cnt = 0;
                for (size_t i = 0; i < np; i++) {
                    char ci[192];
                    kv_config(pts[i], keys, nk, ci, sizeof ci);
                    if (strcmp(ci, cfgs[c]) != 0)
                        continue;
                    double u = ibex_report_num(pts[i], "kv/utilisation_mean");
                    if (isfinite(u)) {
                        sum += u;
                        cnt++;
                        lo = fmin(lo, u);
                        hi = fmax(hi, u);
                    }
                    double m = ibex_report_num(pts[i], "kv/max_concurrent");
                    if (isfinite(m) && !(m <= conc))
                        conc = m;
                }
                if (cnt)
                    appendf(P, &q->reading, " %s: %.1f%% on average (%.1f%% to %.1f%%)", cfgs[c],
                            100.0 * sum / (double)cnt, 100.0 * lo, 100.0 * hi);
                if (cnt && isfinite(conc))
                    appendf(P, &q->reading, ", up to %.0f requests at once", conc);
                if (cnt)
                    appendf(P, &q->reading, ".");
            }
        }
    }
    if (P->oom)
        return false;
    p = &P->v[mem_plot]; /* new_plot may have moved the array */

    char a[64], b[64];
    appendf(P, &p->reading,
            "Peak KV bytes of the whole run against the sequence length%s; accounting only, so the bytes are "
            "exact. Solid lines: reserved (kv.peak_reserved); dashed: holding tokens (kv.peak_used).",
            with_out ? " (prompt + output tokens)" : "");
    double bpt = ibex_report_num(pts[0], "model/kv_bytes_per_token");
    const char *dt = ibex_report_str(pts[0], "params/kv.dtype");
    if (isfinite(bpt))
        appendf(P, &p->reading, " Every token holds exactly %.0f bytes (%s) of K and V (model.kv_bytes_per_token%s%s).",
                bpt, ibex_report_fmt_bytes(bpt, a, sizeof a), dt ? ", kv.dtype " : "", dt ? dt : "");

    /* The headline: the largest batch, at the longest length every configuration of
     * that batch reached. */
    double bmax = NAN;
    for (size_t i = 0; i < np; i++) {
        double bt = ibex_report_num(pts[i], "params/batch");
        if (isfinite(bt) && !(bt <= bmax))
            bmax = bt;
    }
    char cfg[MAXG][192];
    size_t nc = 0;
    for (size_t i = 0; i < np; i++) {
        if (isfinite(bmax) && ibex_report_num(pts[i], "params/batch") != bmax)
            continue;
        char c[192];
        kv_config(pts[i], keys, nk, c, sizeof c);
        size_t j = 0;
        while (j < nc && strcmp(cfg[j], c) != 0)
            j++;
        if (j == nc && nc < MAXG)
            snprintf(cfg[nc++], sizeof cfg[0], "%s", c);
    }
    double xbest = NAN;
    for (size_t i = 0; i < np; i++) {
        if (isfinite(bmax) && ibex_report_num(pts[i], "params/batch") != bmax)
            continue;
        double x = seq_x(pts[i], with_out);
        if (isfinite(xbest) && x <= xbest)
            continue;
        /* Every configuration of this batch has a point at x? */
        size_t have = 0;
        for (size_t c = 0; c < nc; c++)
            for (size_t k = 0; k < np; k++) {
                char ck[192];
                kv_config(pts[k], keys, nk, ck, sizeof ck);
                double xk = seq_x(pts[k], with_out);
                if (strcmp(ck, cfg[c]) == 0 && xk == x &&
                    (!isfinite(bmax) || ibex_report_num(pts[k], "params/batch") == bmax)) {
                    have++;
                    break;
                }
            }
        if (have == nc)
            xbest = x;
    }
    if (isfinite(xbest)) {
        bool first = true;
        for (size_t c = 0; c < nc; c++)
            for (size_t k = 0; k < np; k++) {
                char ck[192];
                kv_config(pts[k], keys, nk, ck, sizeof ck);
                double pr = point_tokens(pts[k], "workload.prompt_tokens"),
                       out = with_out ? point_tokens(pts[k], "workload.output_tokens") : 0;
                if (strcmp(ck, cfg[c]) != 0 || pr + out != xbest ||
                    (isfinite(bmax) && ibex_report_num(pts[k], "params/batch") != bmax))
                    continue;
                double res = ibex_report_num(pts[k], "kv/peak_reserved"),
                       used = ibex_report_num(pts[k], "kv/peak_used");
                if (first) {
                    if (with_out)
                        appendf(P, &p->reading, " At %.0f+%.0f tokens", pr, out);
                    else
                        appendf(P, &p->reading, " At %.0f prompt tokens", pr);
                    if (isfinite(bmax))
                        appendf(P, &p->reading, " and batch %.0f", bmax);
                    appendf(P, &p->reading, ", ");
                } else {
                    appendf(P, &p->reading, "; ");
                }
                appendf(P, &p->reading, "%s reserves %s (%.0f bytes", cfg[c], ibex_report_fmt_bytes(res, a, sizeof a),
                        res);
                double seqs = isfinite(bmax) ? bmax : 1;
                if (isfinite(bpt) && bpt > 0 && xbest > 0) {
                    double ideal = seqs * xbest * bpt;
                    if (res == ideal)
                        appendf(P, &p->reading, " = %.0f x %.0f x %.0f", seqs, xbest, bpt);
                    else
                        appendf(P, &p->reading, ", x%.3f of %.0f x %.0f x %.0f", res / ideal, seqs, xbest, bpt);
                }
                appendf(P, &p->reading, ") and uses %s", ibex_report_fmt_bytes(used, b, sizeof b));
                first = false;
                break;
            }
        double pool = ibex_report_num(pts[0], "kv/pool_bytes");
        if (!first && isfinite(pool))
            appendf(P, &p->reading, ", of the %s pool", ibex_report_fmt_bytes(pool, a, sizeof a));
        if (!first)
            appendf(P, &p->reading, ".");
    }

    /* Policies compared point by point: the same length and other keys. */
    char ref[192] = "";
    double lo[MAXG], hi[MAXG];
    char other[MAXG][192];
    size_t no = 0;
    for (size_t i = 0; i < np; i++) {
        char ci[192];
        kv_config(pts[i], keys, nk, ci, sizeof ci);
        if (!ref[0])
            snprintf(ref, sizeof ref, "%s", ci);
        if (strcmp(ci, ref) == 0)
            continue;
        char ri[256];
        short_group_label(pts[i], keys, nk, is_length_or_kv_key, ri, sizeof ri);
        double xi = seq_x(pts[i], with_out);
        for (size_t k = 0; k < np; k++) {
            char ck[192], rk[256];
            kv_config(pts[k], keys, nk, ck, sizeof ck);
            short_group_label(pts[k], keys, nk, is_length_or_kv_key, rk, sizeof rk);
            double xk = seq_x(pts[k], with_out);
            double rr = ibex_report_num(pts[k], "kv/peak_reserved"), ro = ibex_report_num(pts[i], "kv/peak_reserved");
            if (strcmp(ck, ref) != 0 || strcmp(rk, ri) != 0 || !(xk == xi) || !(rr > 0) || !isfinite(ro))
                continue;
            size_t j = 0;
            while (j < no && strcmp(other[j], ci) != 0)
                j++;
            if (j == no) {
                if (no == MAXG)
                    break;
                snprintf(other[no], sizeof other[0], "%s", ci);
                lo[no] = INFINITY;
                hi[no] = -INFINITY;
                no++;
            }
            lo[j] = fmin(lo[j], ro / rr);
            hi[j] = fmax(hi[j], ro / rr);
            break;
        }
    }
    for (size_t j = 0; j < no; j++) {
        if (lo[j] == 1 && hi[j] == 1)
            appendf(P, &p->reading, " At every length and batch both ran, %s and %s reserve exactly the same bytes.",
                    ref, other[j]);
        else if (lo[j] == hi[j])
            appendf(P, &p->reading, " At every length and batch both ran, %s reserves x%.3f what %s reserves.",
                    other[j], lo[j], ref);
        else
            appendf(P, &p->reading, " At the same length and batch, %s reserves x%.3f to x%.3f what %s reserves.",
                    other[j], lo[j], hi[j], ref);
    }
    return !P->oom;
}

/* Total time and time per generated token against the number of output tokens, one
 * series per value of the other swept keys, with power-law fits: without a KV cache
 * (policy none) token k reruns the model over all earlier tokens, so the total grows
 * ~n^2; with one it grows ~n. */
static void plan_output_scaling(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                                size_t nk)
{
    enum { MAXG = 16 };
    const char *xk = "workload.output_tokens";
    char groups[MAXG][256];
    size_t ng = distinct_groups(pts, np, keys, nk, xk, groups, MAXG);
    /* A short name per group for ratios: the policy alone when only it differs. */
    char gname[MAXG][256];
    int none_g = -1;
    for (size_t g = 0; g < ng; g++) {
        const char *pfx = "kv.policy=";
        bool only_policy = strncmp(groups[g], pfx, strlen(pfx)) == 0 && !strchr(groups[g], ' ');
        snprintf(gname[g], sizeof gname[0], "%s", only_policy ? groups[g] + strlen(pfx) : groups[g]);
        bool all_none = true, any = false;
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            group_label(pts[i], keys, nk, xk, gl, sizeof gl);
            if (strcmp(gl, groups[g]) == 0) {
                any = true;
                all_none &= policy_is_none(pts[i]);
            }
        }
        if (any && all_none && none_g < 0)
            none_g = (int)g;
    }

    for (int which = 0; which < 2 && !P->oom; which++) {
        bool total = which == 0;
        plot *p = total ? new_plot(P, "total_time_vs_output", "Total time vs output length (log-log)", PLOT_LINES)
                        : new_plot(P, "token_time_vs_output", "Time per generated token vs output length",
                                   PLOT_LINES);
        if (!p)
            return;
        snprintf(p->xlabel, sizeof p->xlabel, "output tokens n");
        snprintf(p->ylabel, sizeof p->ylabel, "%s",
                 total ? "wall time per repetition (s)" : "ms per generated token (TPOT p50)");
        p->logx = p->logy = true;
        p->logbase = 2;
        double b[MAXG], r2[MAXG];
        for (size_t g = 0; g < ng; g++) {
            series *s = add_series(P, p, groups[g][0] ? groups[g] : (total ? "total" : "per token"));
            if (P->oom)
                return;
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                group_label(pts[i], keys, nk, xk, gl, sizeof gl);
                if (strcmp(gl, groups[g]) != 0)
                    continue;
                double y;
                if (total) {
                    y = ibex_report_num(pts[i], "metrics/wall_s");
                } else {
                    y = ibex_report_num(pts[i], "metrics/tpot/p50") * 1e3;
                    if (!isfinite(y))
                        y = ibex_report_num(pts[i], "metrics/decode_ms_per_token");
                }
                series_push(P, s, ibex_report_swept_num(pts[i], xk), y);
            }
            series_sort(s);
            b[g] = fit_b(s, &r2[g]);
            if (isfinite(b[g])) {
                char t[512];
                snprintf(t, sizeof t, "%s  n^%.2f (R² %.3f)", s->title, b[g], r2[g]);
                free(s->title);
                s->title = dup_str(P, t);
            }
        }
        if (P->oom)
            return;
        /* Readings before pruning, while series g is still group g. */
        char *rd = NULL;
        if (total)
            appendf(P, &rd, "Median wall time of a repetition against the number of output tokens n, with a "
                            "power-law fit per series.");
        else
            appendf(P, &rd, "Median time per generated token after the first (TPOT p50) against the number of "
                            "output tokens n.");
        for (size_t g = 0; g < ng; g++) {
            const series *s = &p->s[g];
            if (s->n == 0)
                continue;
            char y0[64], y1[64];
            if (total) {
                ibex_report_fmt_seconds(s->y[0], y0, sizeof y0);
                ibex_report_fmt_seconds(s->y[s->n - 1], y1, sizeof y1);
            } else {
                ibex_report_fmt_seconds(s->y[0] * 1e-3, y0, sizeof y0);
                ibex_report_fmt_seconds(s->y[s->n - 1] * 1e-3, y1, sizeof y1);
            }
            appendf(P, &rd, " %s%s", groups[g], groups[g][0] ? ": " : "");
            if (total && isfinite(b[g]))
                appendf(P, &rd, "%s grows as n^%.2f (R² %.3f) over %.0f..%.0f output tokens (%s to %s).",
                        groups[g][0] ? "total time" : "Total time", b[g], r2[g], s->x[0], s->x[s->n - 1], y0, y1);
            else if (s->n >= 2)
                appendf(P, &rd, "%s at n=%.0f to %s at n=%.0f (x%.2f%s", y0, s->x[0], y1, s->x[s->n - 1],
                        s->y[0] > 0 ? s->y[s->n - 1] / s->y[0] : NAN, isfinite(b[g]) ? "; " : ").");
            else
                appendf(P, &rd, "%s at n=%.0f.", y0, s->x[0]);
            if (!total && s->n >= 2 && isfinite(b[g]))
                appendf(P, &rd, "n^%.2f).", b[g]);
        }
        /* Ratios at the largest n every compared series reached. */
        if (ng >= 2) {
            size_t ref = none_g >= 0 ? (size_t)none_g : 0;
            const series *rs = &p->s[ref];
            for (size_t g = 0; g < ng && rs->n; g++) {
                const series *s = &p->s[g];
                if (g == ref || s->n == 0)
                    continue;
                double xmax = NAN, yr = NAN, yo = NAN;
                for (size_t k = 0; k < rs->n; k++)
                    for (size_t m = 0; m < s->n; m++)
                        if (rs->x[k] == s->x[m] && !(rs->x[k] <= xmax)) {
                            xmax = rs->x[k];
                            yr = rs->y[k];
                            yo = s->y[m];
                        }
                if (!isfinite(xmax) || !(yo > 0))
                    continue;
                char a[64], c[64];
                if (total) {
                    ibex_report_fmt_seconds(yr, a, sizeof a);
                    ibex_report_fmt_seconds(yo, c, sizeof c);
                } else {
                    ibex_report_fmt_seconds(yr * 1e-3, a, sizeof a);
                    ibex_report_fmt_seconds(yo * 1e-3, c, sizeof c);
                }
                appendf(P, &rd, " At n=%.0f: %s %s vs %s %s, %s/%s = x%.2f.", xmax, gname[ref], a, gname[g], c,
                        gname[ref], gname[g], yr / yo);
            }
        }
        if (total)
            appendf(P, &rd, " An exponent of 2 means the total quadruples when n doubles: without a KV cache "
                            "token k reruns the model over the prompt and all k-1 earlier tokens (nearer 1 while "
                            "the prompt dominates); with a cache each token costs about the same, so the total "
                            "grows as n^1.");
        else
            appendf(P, &rd, " Without a KV cache the cost of a token grows with the sequence it recomputes; with "
                            "one it stays nearly flat (only attention over the cached K and V grows).");
        if (P->oom) {
            free(rd);
            return;
        }
        p->reading = rd;
        if (!prune_series(P, p, 1))
            continue;
    }
}

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Linear-interpolation percentile of sorted data (numpy's default). */
static double pct_sorted(const double *s, size_t n, double q)
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
static void plan_cdf(ibex_report_plots *P, const json_t *const *pts, size_t np, const char *metric,
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
    plot *p = new_plot(P, name, title, PLOT_LINES);
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
        qsort(v, m, sizeof *v, cmp_double);
        const char *label = ibex_report_str(pt, "label");
        char lab[256];
        snprintf(lab, sizeof lab, "%s", label ? label : "point");
        series *s = add_series(P, p, lab);
        for (size_t j = 0; j < m; j++)
            series_push(P, s, v[j] * 1000.0, (double)(j + 1) / (double)m);
        if (m > 0) {
            double p50 = pct_sorted(v, m, 50), p99 = pct_sorted(v, m, 99);
            char a[64], b[64];
            appendf(P, &p->reading, "%s%s: p50 %s, p99 %s (%zu samples).", p->reading ? " " : "", lab,
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
    if (!prune_series(P, p, 1) || P->oom)
        return;
    /* A log axis only helps when the samples span more than a decade or so. */
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < p->ns; i++) {
        lo = fmin(lo, p->s[i].x[0]);
        hi = fmax(hi, p->s[i].x[p->s[i].n - 1]);
    }
    p->logx = lo > 0 && hi / lo > 20;
    if (worst_ratio > 0)
        appendf(P, &p->reading, " The longest tail (p99/p50) is %.2fx, at %s.", worst_ratio, worst);
    if (nw > shown)
        appendf(P, &p->reading, " (%zu of %zu points shown, spread over the sweep.)", shown, nw);
}

/* Whether a point ran without compute (params.compute false): its KV and memory
 * numbers are exact, its times only measure the bookkeeping. */
static bool accounting_only(const json_t *pt) { return json_is_false(ibex_report_get(pt, "params/compute")); }

ibex_report_plots *ibex_report_plots_plan(const json_t *results, ibex_err *err)
{
    if (!results) {
        ibex_err_set(err, IBEX_ERR_INVALID, "plots: no results given");
        return NULL;
    }
    ibex_report_plots *P = calloc(1, sizeof *P);
    if (!P) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "plots: out of memory");
        return NULL;
    }
    const json_t *arr = ibex_report_get(results, "points");
    size_t total = json_is_array(arr) ? json_array_size(arr) : 0;
    /* pts: every ok point; timed: those that ran the model; acct: those that did not. */
    const json_t **pts = malloc(3 * (total ? total : 1) * sizeof *pts);
    if (!pts) {
        free(P);
        ibex_err_set(err, IBEX_ERR_NOMEM, "plots: out of memory");
        return NULL;
    }
    const json_t **timed = pts + (total ? total : 1), **acct = timed + (total ? total : 1);
    size_t np = 0, nt = 0, na = 0;
    for (size_t i = 0; i < total; i++) {
        const json_t *pt = json_array_get(arr, i);
        if (!point_ok(pt))
            continue;
        pts[np++] = pt;
        if (accounting_only(pt))
            acct[na++] = pt;
        else
            timed[nt++] = pt;
    }

    const char *keys[MAX_SWEPT];
    size_t nk = ibex_report_swept_keys(results, keys, MAX_SWEPT);
    if (nk > MAX_SWEPT)
        nk = MAX_SWEPT;

    if (np > 0) {
        const char *pk = "workload.prompt_tokens", *ok = "workload.output_tokens";
        if (nt > 0 && key_swept(keys, nk, pk) && key_numeric(timed, nt, pk))
            plan_prompt_scaling(P, timed, nt, keys, nk);
        bool output_plan = nt > 0 && key_swept(keys, nk, ok) && key_numeric(timed, nt, ok);
        if (output_plan)
            plan_output_scaling(P, timed, nt, keys, nk);
        bool kv_lines = false;
        if (na > 0 && (key_swept(keys, nk, pk) || key_swept(keys, nk, ok)))
            kv_lines = plan_kv_vs_seq(P, acct, na, keys, nk);
        if (key_swept(keys, nk, "kv.policy") && !kv_lines)
            plan_kv(P, pts, np, keys, nk);
        const char *batch_key = NULL;
        if (nt > 0 && (key_swept(keys, nk, "batch") || key_swept(keys, nk, "workload.concurrency") ||
                       key_swept(keys, nk, "scheduler")))
            plan_batching(P, timed, nt, keys, nk, &batch_key);
        bool decoding = false;
        for (size_t k = 0; k < nk; k++)
            decoding |= strncmp(keys[k], "decoding.", 9) == 0;
        if (decoding)
            plan_decoding(P, pts, np, keys, nk, na == 0);
        /* Generic: output throughput against every other numeric swept key, for the
         * timed points. decoding.* keys have their bars; the lengths their plots. */
        for (size_t k = 0; k < nk && !P->oom && nt > 0; k++) {
            if (strcmp(keys[k], pk) == 0 || (output_plan && strcmp(keys[k], ok) == 0) ||
                (batch_key && strcmp(keys[k], batch_key) == 0) || strncmp(keys[k], "decoding.", 9) == 0)
                continue;
            if (!key_numeric(timed, nt, keys[k]))
                continue;
            char name[160], title[256];
            static const char *tp[] = {"metrics/output_tok_per_s"};
            static const char *tt[] = {"output tok/s"};
            snprintf(name, sizeof name, "throughput_vs_%s", keys[k]);
            snprintf(title, sizeof title, "Output throughput vs %s", keys[k]);
            plot *p = plan_vs(P, name, title, timed, nt, keys, nk, keys[k], 1, tp, tt, 1.0);
            if (p) {
                snprintf(p->ylabel, sizeof p->ylabel, "output tokens/s");
                read_range(P, p, keys[k], "throughput", "tok/s");
            }
        }
        if (nt > 0) {
            plan_cdf(P, timed, nt, "ttft", "TTFT");
            plan_cdf(P, timed, nt, "e2e", "E2E latency");
            plan_cdf(P, timed, nt, "itl", "ITL");
        }
    }
    free(pts);
    for (size_t i = 0; i < P->n && !P->oom; i++)
        if (!P->v[i].reading)
            P->v[i].reading = dup_str(P, "");
    if (P->oom) {
        ibex_report_plots_free(P);
        ibex_err_set(err, IBEX_ERR_NOMEM, "plots: out of memory");
        return NULL;
    }
    return P;
}

void ibex_report_plots_free(ibex_report_plots *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free_plot(&p->v[i]);
    free(p->v);
    free(p);
}

size_t ibex_report_plots_count(const ibex_report_plots *p) { return p ? p->n : 0; }
const char *ibex_report_plot_name(const ibex_report_plots *p, size_t i) { return p->v[i].name; }
const char *ibex_report_plot_title(const ibex_report_plots *p, size_t i) { return p->v[i].title; }
const char *ibex_report_plot_reading(const ibex_report_plots *p, size_t i) { return p->v[i].reading; }
bool ibex_report_plot_rendered(const ibex_report_plots *p, size_t i) { return p->v[i].rendered; }
const char *ibex_report_plots_note(const ibex_report_plots *p) { return p ? p->note : ""; }

/* ---------------------------------------------------------------- files */

/* A gnuplot single-quoted string: '' stands for a quote; newlines become spaces. */
static void gp_quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("''", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

static ibex_status fill_dat(FILE *f, void *ctx, ibex_err *err)
{
    (void)err;
    const plot *p = ctx;
    fprintf(f, "# %s.dat — data of %s.gp: %s\n", p->name, p->name, p->title);
    if (p->kind == PLOT_LINES) {
        fprintf(f, "# one block per series (gnuplot `index`), columns: x y\n");
        for (size_t i = 0; i < p->ns; i++) {
            if (i)
                fputs("\n\n", f);
            fprintf(f, "# series %zu: %s\n", i, p->s[i].title);
            for (size_t k = 0; k < p->s[i].n; k++)
                fprintf(f, "%.9g %.9g\n", p->s[i].x[k], p->s[i].y[k]);
        }
    } else {
        fprintf(f, "# columns: category");
        for (size_t c = 0; c < p->ncol; c++)
            fprintf(f, " | %s", p->coltitle[c]);
        fputc('\n', f);
        for (size_t i = 0; i < p->ncat; i++) {
            fputc('"', f);
            for (const char *c = p->cat[i]; *c; c++)
                fputc(*c == '"' ? '\'' : (*c == '\n' ? ' ' : *c), f);
            fputc('"', f);
            for (size_t c = 0; c < p->ncol; c++) {
                double v = p->val[i * MAX_BAR_COLS + c];
                if (isfinite(v))
                    fprintf(f, " %.9g", v);
                else
                    fputs(" NaN", f);
            }
            fputc('\n', f);
        }
    }
    return IBEX_OK;
}

static ibex_status fill_gp(FILE *f, void *ctx, ibex_err *err)
{
    (void)err;
    const plot *p = ctx;
    const char *n = p->name;
    fprintf(f,
            "# %s.gp — %s\n"
            "# Generated by `ibex report` from results.json; the data is in %s.dat.\n"
            "# Restyle freely and rerun from this directory: gnuplot %s.gp\n"
            "# Options: gnuplot -e \"png_out='a.png'; svg_out='a.svg'\" %s.gp, or -e \"dumb=1\" for text.\n",
            n, p->title, n, n, n);
    /* Bar labels too wide for their slot (about 7 px a character in 880 px) are drawn
     * vertically, in an image made taller to hold them. */
    int height = 600;
    bool vertical = false;
    if (p->kind == PLOT_BARS && p->ncat > 0) {
        size_t catw = 0;
        for (size_t i = 0; i < p->ncat; i++)
            catw = strlen(p->cat[i]) > catw ? strlen(p->cat[i]) : catw;
        vertical = p->ncat > 4 || catw * 7 > 880 / p->ncat;
        if (vertical)
            height += (int)(catw > 60 ? 60 : catw) * 6;
    }
    fprintf(f,
            "if (!exists(\"png_out\")) png_out = '%s.png'\n"
            "if (!exists(\"svg_out\")) svg_out = '%s.svg'\n"
            "if (!exists(\"dumb\")) dumb = 0\n"
            "if (!exists(\"dumb_size\")) dumb_size = '100,30'\n"
            "if (dumb) {\n"
            "    eval('set terminal dumb size '.dumb_size.' noenhanced')\n"
            "    set output\n"
            "} else {\n"
            "    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "        set terminal pngcairo size 960,%d noenhanced font 'sans,10'\n"
            "    } else {\n"
            "        set terminal png size 960,%d noenhanced\n"
            "    }\n"
            "    set output png_out\n"
            "}\n",
            n, n, height, height);
    fputs("set title ", f);
    gp_quoted(f, p->title);
    fputs("\nset grid\n", f);
    if (p->xlabel[0]) {
        fputs("set xlabel ", f);
        gp_quoted(f, p->xlabel);
        fputc('\n', f);
    }
    if (p->ylabel[0]) {
        fputs("set ylabel ", f);
        gp_quoted(f, p->ylabel);
        fputc('\n', f);
    }
    if (p->kind == PLOT_LINES) {
        fputs("set key below\n", f);
        if (p->logx)
            fprintf(f, "set logscale x %d\n", p->logbase ? p->logbase : 10);
        if (p->logy)
            fprintf(f, "set logscale y %d\n", p->logbase ? p->logbase : 10);
        if (p->ymax > 0)
            fprintf(f, "set yrange [0:%.9g]\n", p->ymax);
        /* The x range hugs the data with a small margin (gnuplot would round a log
         * axis out to whole decades). */
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < p->ns; i++)
            for (size_t k = 0; k < p->s[i].n; k++) {
                lo = fmin(lo, p->s[i].x[k]);
                hi = fmax(hi, p->s[i].x[k]);
            }
        if (isfinite(lo) && hi > lo && (!p->logx || lo > 0)) {
            if (p->logx)
                fprintf(f, "set xrange [%.9g:%.9g]\n", lo / pow(hi / lo, 0.04), hi * pow(hi / lo, 0.04));
            else
                fprintf(f, "set xrange [%.9g:%.9g]\n", lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo));
        }
        if (p->xtics_data) {
            double xs[16];
            size_t nx = 0;
            bool fits = true;
            for (size_t i = 0; i < p->ns && fits; i++)
                for (size_t k = 0; k < p->s[i].n && fits; k++) {
                    size_t j = 0;
                    while (j < nx && xs[j] != p->s[i].x[k])
                        j++;
                    if (j == nx) {
                        if (nx == 16)
                            fits = false;
                        else
                            xs[nx++] = p->s[i].x[k];
                    }
                }
            if (fits && nx > 0) {
                qsort(xs, nx, sizeof xs[0], cmp_double);
                fputs("set xtics (", f);
                for (size_t j = 0; j < nx; j++)
                    fprintf(f, "%s%.9g", j ? ", " : "", xs[j]);
                fputs(")\n", f);
            }
        }
        fputs("plot ", f);
        for (size_t i = 0; i < p->ns; i++) {
            fprintf(f, "%s'%s.dat' index %zu using 1:2 with %s", i ? ", \\\n     " : "", n, i,
                    p->steps ? "steps" : "linespoints");
            if (p->s[i].lc > 0)
                fprintf(f, " lc %d", p->s[i].lc);
            if (p->s[i].pt > 0)
                fprintf(f, " pt %d", p->s[i].pt);
            if (p->s[i].dashed)
                fputs(" dt 2", f);
            fputs(" title ", f);
            gp_quoted(f, p->s[i].title);
        }
        fputc('\n', f);
    } else {
        bool y2 = false;
        for (size_t c = 0; c < p->ncol; c++)
            y2 |= p->col_y2[c];
        fputs("set key below\n"
              "set style data histograms\n"
              "set style histogram clustered gap 1\n"
              "set style fill solid 0.7 border -1\n"
              "set yrange [0:*]\n",
              f);
        if (vertical)
            fputs("set xtics rotate by 90 right\n", f);
        if (y2) {
            fputs("set ytics nomirror\nset y2tics\nset y2range [0:*]\n", f);
            if (p->y2label[0]) {
                fputs("set y2label ", f);
                gp_quoted(f, p->y2label);
                fputc('\n', f);
            }
        }
        fputs("plot ", f);
        for (size_t c = 0; c < p->ncol; c++) {
            if (c == 0)
                fprintf(f, "'%s.dat' using 2:xtic(1)", n);
            else
                fprintf(f, ", \\\n     '' using %zu", c + 2);
            fprintf(f, " axes x1y%d title ", p->col_y2[c] ? 2 : 1);
            gp_quoted(f, p->coltitle[c]);
        }
        fputc('\n', f);
    }
    fprintf(f,
            "if (!dumb) {\n"
            "    set terminal svg size 960,%d dynamic noenhanced font 'sans,10'\n"
            "    set output svg_out\n"
            "    replot\n"
            "}\n"
            "unset output\n",
            height);
    return IBEX_OK;
}

static ibex_status write_plot_files(const plot *p, const char *dir, ibex_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.dat", dir, p->name);
    ibex_status st = ibex_report_write_atomic(path, fill_dat, (void *)p, err);
    if (st != IBEX_OK)
        return st;
    snprintf(path, sizeof path, "%s/%s.gp", dir, p->name);
    return ibex_report_write_atomic(path, fill_gp, (void *)p, err);
}

/* Runs gnuplot with argv (argv[0] ignored) from inside cwd, stdin from /dev/null.
 * Its stdout (and stderr when merge_err, else discarded) is collected into buf
 * (at most n - 1 bytes kept, always terminated). Returns the exit status, or -1 when
 * it could not run or was killed. */
static int run_gnuplot(const char *gnuplot, const char *cwd, char *const argv[], bool merge_err, char *buf,
                       size_t n)
{
    buf[0] = '\0';
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        close(devnull);
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        if (chdir(cwd) != 0)
            _exit(126);
        dup2(devnull, 0);
        dup2(fd[1], 1);
        dup2(merge_err ? fd[1] : devnull, 2);
        close(fd[0]);
        close(fd[1]);
        close(devnull);
        execv(gnuplot, argv);
        _exit(127);
    }
    close(fd[1]);
    close(devnull);
    size_t len = 0;
    char chunk[4096];
    for (;;) {
        ssize_t r = read(fd[0], chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t take = (size_t)r;
        if (len + take > n - 1)
            take = n - 1 - len;
        memcpy(buf + len, chunk, take);
        len += take;
    }
    buf[len] = '\0';
    close(fd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool nonempty_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* The first non-blank line of s, trimmed, into buf. */
static void first_line(const char *s, char *buf, size_t n)
{
    while (*s == '\n' || *s == ' ' || *s == '\r')
        s++;
    size_t k = 0;
    while (s[k] && s[k] != '\n' && k + 1 < n)
        k++;
    snprintf(buf, n, "%.*s", (int)k, s);
}

ibex_status ibex_report_plots_render(ibex_report_plots *p, const char *plots_dir, const char *gnuplot,
                                     const char *why_no_gnuplot, ibex_err *err)
{
    if (!p || !plots_dir)
        return ibex_err_set(err, IBEX_ERR_INVALID, "plots: nothing to render or no directory");
    p->note[0] = '\0';
    for (size_t i = 0; i < p->n; i++)
        p->v[i].rendered = false;
    if (p->n == 0)
        return IBEX_OK;
    if (mkdir(plots_dir, 0777) != 0 && errno != EEXIST)
        return ibex_err_set(err, IBEX_ERR_IO, "%s: cannot create: %s", plots_dir, strerror(errno));
    for (size_t i = 0; i < p->n; i++) {
        ibex_status st = write_plot_files(&p->v[i], plots_dir, err);
        if (st != IBEX_OK)
            return st;
    }
    if (!gnuplot) {
        snprintf(p->note, sizeof p->note, "%s", why_no_gnuplot ? why_no_gnuplot : "gnuplot was not found");
        return IBEX_OK;
    }
    size_t failed = 0;
    char first_failure[512] = "";
    for (size_t i = 0; i < p->n; i++) {
        plot *pl = &p->v[i];
        char expr[512], script[160], png_tmp[4096], svg_tmp[4096], png[4096], svg[4096];
        snprintf(expr, sizeof expr, "png_out='%s.png.tmp'; svg_out='%s.svg.tmp'", pl->name, pl->name);
        snprintf(script, sizeof script, "%s.gp", pl->name);
        snprintf(png_tmp, sizeof png_tmp, "%s/%s.png.tmp", plots_dir, pl->name);
        snprintf(svg_tmp, sizeof svg_tmp, "%s/%s.svg.tmp", plots_dir, pl->name);
        snprintf(png, sizeof png, "%s/%s.png", plots_dir, pl->name);
        snprintf(svg, sizeof svg, "%s/%s.svg", plots_dir, pl->name);
        char *argv[] = {"gnuplot", "-e", expr, script, NULL};
        char out[2048];
        int rc = run_gnuplot(gnuplot, plots_dir, argv, true, out, sizeof out);
        bool ok = rc == 0 && nonempty_file(png_tmp) && nonempty_file(svg_tmp);
        if (ok && (rename(png_tmp, png) != 0 || rename(svg_tmp, svg) != 0))
            ok = false;
        if (!ok) {
            remove(png_tmp);
            remove(svg_tmp);
            if (failed++ == 0) {
                char line[300];
                first_line(out, line, sizeof line);
                if (rc < 0)
                    snprintf(first_failure, sizeof first_failure, "%s.gp: gnuplot could not run or was killed",
                             pl->name);
                else
                    snprintf(first_failure, sizeof first_failure, "%s.gp: gnuplot exit status %d%s%s", pl->name,
                             rc, line[0] ? ": " : "", line);
            }
        }
        pl->rendered = ok;
    }
    if (failed)
        snprintf(p->note, sizeof p->note, "gnuplot (%s) failed on %zu of %zu plots; first: %s", gnuplot, failed,
                 p->n, first_failure);
    return IBEX_OK;
}

ibex_status ibex_report_plot_dumb(const ibex_report_plots *p, size_t i, const char *gnuplot, int width,
                                  int height, FILE *out, ibex_err *err)
{
    if (!p || i >= p->n || !gnuplot || !out || width < 20 || height < 8)
        return ibex_err_set(err, IBEX_ERR_INVALID, "text plot: bad arguments");
    const char *tmpdir = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/ibex-plot-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir))
        return ibex_err_set(err, IBEX_ERR_IO, "%s: cannot create a temporary directory: %s", dir, strerror(errno));
    const plot *pl = &p->v[i];
    ibex_status st = write_plot_files(pl, dir, err);
    if (st == IBEX_OK) {
        char expr[128], script[160];
        snprintf(expr, sizeof expr, "dumb=1; dumb_size='%d,%d'", width, height);
        snprintf(script, sizeof script, "%s.gp", pl->name);
        char *argv[] = {"gnuplot", "-e", expr, script, NULL};
        char *buf = malloc(65536);
        if (!buf) {
            st = ibex_err_set(err, IBEX_ERR_NOMEM, "text plot: out of memory");
        } else {
            int rc = run_gnuplot(gnuplot, dir, argv, false, buf, 65536);
            if (rc == 0)
                fputs(buf, out);
            else
                st = ibex_err_set(err, IBEX_ERR_BACKEND, "%s.gp: gnuplot exit status %d", pl->name, rc);
            free(buf);
        }
    }
    char path[4096 + 160];
    snprintf(path, sizeof path, "%s/%s.dat", dir, pl->name);
    remove(path);
    snprintf(path, sizeof path, "%s/%s.gp", dir, pl->name);
    remove(path);
    rmdir(dir);
    return st;
}
