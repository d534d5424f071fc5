/* report_plots.c — the plot model shared by every plot family (plots, series, bars and
 * their readings), the helpers the families share, and ibex_report_plots_plan, which
 * chooses the plots of a run from what was swept. One file per family draws them:
 * report_plot_scaling.c (prefill/decode/total time against lengths), report_plot_kv.c
 * (KV memory and utilisation), report_plot_batching.c (throughput and latency against
 * batch), report_plot_decoding.c (decoding strategies), report_plot_latency.c (CDFs of
 * raw latencies); report_plot_gnuplot.c writes the scripts and runs gnuplot.
 *
 * Design notes:
 *  1. Planning is pure computation over results.json; rendering is the only I/O, so
 *     report.md and the terminal summary can use the readings without gnuplot.
 *  2. Op totals in results.json cover every timed repetition; they are divided by the
 *     number of repetitions so they share the unit of prefill_s (per repetition).
 *     Exponents do not depend on that scale.
 *  3. Accounting-only points (params.compute false) never reach a timing plot
 *     (prefill, decode, throughput, latency, CDFs): their times measure only the
 *     bookkeeping. Their exact KV bytes are plotted against the sequence length. */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small helpers */

char *ibex_plot_dup_str(ibex_report_plots *P, const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        P->oom = true;
    return d;
}

/* Appends printf text to the growing string *s (NULL starts one). */
void ibex_plot_appendf(ibex_report_plots *P, char **s, const char *fmt, ...)
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

plot *ibex_plot_new(ibex_report_plots *P, const char *name, const char *title, enum plot_kind kind)
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

series *ibex_plot_add_series(ibex_report_plots *P, plot *p, const char *title)
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
    ns->title = ibex_plot_dup_str(P, title);
    return ns;
}

void ibex_plot_series_push(ibex_report_plots *P, series *s, double x, double y)
{
    if (P->oom || !s || !isfinite(x) || !isfinite(y))
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        double **arr[4] = {&s->x, &s->y, &s->lo, &s->hi};
        for (int k = 0; k < 4; k++) {
            double *r = realloc(*arr[k], cap * sizeof *r);
            if (!r) {
                P->oom = true;
                return;
            }
            *arr[k] = r;
        }
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->lo[s->n] = s->hi[s->n] = NAN;
    s->n++;
}

void ibex_plot_series_bar(ibex_report_plots *P, series *s, double lo, double hi)
{
    if (P->oom || !s || s->n == 0)
        return;
    s->lo[s->n - 1] = lo;
    s->hi[s->n - 1] = hi;
}

void ibex_plot_push_timed(ibex_report_plots *P, series *s, double x, const json_t *pt, const char *metric,
                          double scale)
{
    ibex_report_spread sp;
    if (!ibex_report_spread_get(pt, metric, &sp))
        return;
    size_t before = s ? s->n : 0;
    ibex_plot_series_push(P, s, x, sp.median * scale);
    if (s && s->n > before && sp.n >= 2 && isfinite(sp.lo) && isfinite(sp.hi))
        ibex_plot_series_bar(P, s, fmin(sp.lo, sp.median) * scale, fmax(sp.hi, sp.median) * scale);
}

void ibex_plot_add_slopes(ibex_report_plots *P, plot *p, size_t si)
{
    if (P->oom || !p || si >= p->ns || p->s[si].n < 2)
        return;
    ibex_plot_series_sort(&p->s[si]);
    double x0 = p->s[si].x[0], y0 = p->s[si].y[0], x1 = p->s[si].x[p->s[si].n - 1];
    if (!(x0 > 0) || !(y0 > 0) || !(x1 > x0))
        return;
    static const char *const titles[2] = {"∝ n (reference: linear)", "∝ n² (reference: quadratic)"};
    for (int k = 1; k <= 2; k++) {
        series *r = ibex_plot_add_series(P, p, titles[k - 1]);
        if (!r)
            return;
        r->reference = true;
        r->lw = k; /* n² a little heavier, so the two can be told apart in grey */
        ibex_plot_series_push(P, r, x0, y0);
        ibex_plot_series_push(P, r, x1, y0 * pow(x1 / x0, k));
    }
}
void ibex_plot_series_sort(series *s)
{
    for (size_t i = 1; i < s->n; i++) /* insertion sort: sweeps are short */
        for (size_t j = i; j > 0 && s->x[j - 1] > s->x[j]; j--) {
            double *arr[4] = {s->x, s->y, s->lo, s->hi};
            for (int k = 0; k < 4; k++) {
                double t = arr[k][j];
                arr[k][j] = arr[k][j - 1];
                arr[k][j - 1] = t;
            }
        }
}
void ibex_plot_free(plot *p)
{
    for (size_t i = 0; i < p->ns; i++) {
        free(p->s[i].title);
        free(p->s[i].x);
        free(p->s[i].y);
        free(p->s[i].lo);
        free(p->s[i].hi);
    }
    free(p->s);
    for (size_t i = 0; i < p->ncat; i++)
        free(p->cat[i]);
    free(p->cat);
    free(p->val);
    free(p->reading);
}

void ibex_plot_drop_last(ibex_report_plots *P)
{
    if (P->n == 0)
        return;
    ibex_plot_free(&P->v[P->n - 1]);
    P->n--;
}

/* Removes series with fewer than min_n points; drops the plot when none remains.
 * Returns whether the plot is kept. */
bool ibex_plot_prune_series(ibex_report_plots *P, plot *p, size_t min_n)
{
    size_t k = 0;
    for (size_t i = 0; i < p->ns; i++) {
        if (p->s[i].n >= min_n) {
            ibex_plot_series_sort(&p->s[i]);
            p->s[k++] = p->s[i];
        } else {
            free(p->s[i].title);
            free(p->s[i].x);
            free(p->s[i].y);
            free(p->s[i].lo);
            free(p->s[i].hi);
        }
    }
    p->ns = k;
    if (k == 0) {
        ibex_plot_drop_last(P);
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
void ibex_plot_group_label(const json_t *pt, const char **keys, size_t nk, const char *skip, char *buf,
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
const char *ibex_plot_short_key(const char *key)
{
    const char *d = strrchr(key, '.');
    return d ? d + 1 : key;
}

/* The category of a point in bar plots: its swept values joined by ", ", a word as is
 * ("paged") and a number with its short key ("max_seq_len=4096") so that points
 * sharing a word stay distinguishable; or its label, or its index. */
void ibex_plot_category_label(const json_t *pt, size_t idx, const char **keys, size_t nk, char *buf,
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
                    ? snprintf(buf + len, n - len, "%s%s=%s", len ? ", " : "", ibex_plot_short_key(keys[k]), v)
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
size_t ibex_plot_distinct_groups(const json_t *const *pts, size_t np, const char **keys, size_t nk,
                              const char *skip, char (*groups)[256], size_t max)
{
    size_t ng = 0;
    for (size_t i = 0; i < np; i++) {
        char g[256];
        ibex_plot_group_label(pts[i], keys, nk, skip, g, sizeof g);
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
double ibex_plot_point_reps(const json_t *pt)
{
    const json_t *r = json_object_get(pt, "repetitions");
    if (json_is_array(r) && json_array_size(r) > 0)
        return (double)json_array_size(r);
    double rep = ibex_report_num(pt, "params/repeat");
    return isfinite(rep) && rep >= 1 ? rep : 1.0;
}

/* Sum of ops.<phase>.*.ns over every op (only = NULL), one op, or all but one. */
double ibex_plot_ops_ns(const json_t *pt, const char *phase, const char *only, const char *except)
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

double ibex_plot_fit_b(const series *s, double *r2)
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

double ibex_plot_series_y_at_max_x(const series *s)
{
    return s && s->n ? s->y[s->n - 1] : NAN;
}

/* ---------------------------------------------------------------- shared plans */

/* Bar plot with one category per ok point and up to MAX_BAR_COLS columns read from
 * the given paths (scaled). Columns without any value are left out; a plot without
 * columns is dropped. Returns the plot or NULL. */
plot *ibex_plot_plan_bars(ibex_report_plots *P, const char *name, const char *title, const json_t *const *pts,
                       size_t np, const char **keys, size_t nk, size_t ncol, const char *const *paths,
                       const char *const *titles, const double *scale, const bool *y2)
{
    plot *p = ibex_plot_new(P, name, title, PLOT_BARS);
    if (!p)
        return NULL;
    p->cat = calloc(np ? np : 1, sizeof *p->cat);
    p->val = malloc((np ? np : 1) * MAX_BAR_COLS * sizeof *p->val);
    if (!p->cat || !p->val) {
        P->oom = true;
        return NULL;
    }
    /* Categories name only the swept keys whose value differs between these points: a
     * one-value sweep (kept to survive --quick) would only lengthen every label. */
    const char *vk[MAX_SWEPT];
    size_t nvk = 0;
    for (size_t k = 0; k < nk && nvk < MAX_SWEPT; k++) {
        char v0[256], vi[256];
        ibex_report_swept_text(pts[0], keys[k], v0, sizeof v0);
        bool varies = false;
        for (size_t i = 1; i < np && !varies; i++)
            varies = strcmp(ibex_report_swept_text(pts[i], keys[k], vi, sizeof vi), v0) != 0;
        if (varies)
            vk[nvk++] = keys[k];
    }
    for (size_t i = 0; i < np; i++) {
        char c[256];
        if (nvk > 0)
            ibex_plot_category_label(pts[i], i, vk, nvk, c, sizeof c);
        else
            ibex_plot_category_label(pts[i], i, keys, nk, c, sizeof c);
        p->cat[p->ncat++] = ibex_plot_dup_str(P, c);
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
        ibex_plot_drop_last(P);
        return NULL;
    }
    return p;
}

/* One value per point for a metric as a line plot against a numeric swept key, one
 * series per value of the other swept keys. */
plot *ibex_plot_plan_vs(ibex_report_plots *P, const char *name, const char *title, const json_t *const *pts,
                     size_t np, const char **keys, size_t nk, const char *xk, size_t nm, const char *const *paths,
                     const char *const *mtitles, double scale)
{
    char groups[16][256];
    size_t ng = ibex_plot_distinct_groups(pts, np, keys, nk, xk, groups, 16);
    plot *p = ibex_plot_new(P, name, title, PLOT_LINES);
    if (!p)
        return NULL;
    snprintf(p->xlabel, sizeof p->xlabel, "%s", xk);
    for (size_t g = 0; g < ng; g++)
        for (size_t m = 0; m < nm; m++) {
            char t[512];
            snprintf(t, sizeof t, "%s%s%s", mtitles[m], groups[g][0] ? " " : "", groups[g]);
            series *s = ibex_plot_add_series(P, p, t);
            if (P->oom)
                return NULL;
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                ibex_plot_group_label(pts[i], keys, nk, xk, gl, sizeof gl);
                if (strcmp(gl, groups[g]) == 0)
                {
                    /* a timed metric ("metrics/ttft/p99" is "ttft_p99" in repetitions)
                       gets the spread of its repetitions as an error bar */
                    char metric[96];
                    snprintf(metric, sizeof metric, "%s", strncmp(paths[m], "metrics/", 8) == 0 ? paths[m] + 8 : "");
                    for (char *c = metric; *c; c++)
                        if (*c == '/')
                            *c = '_';
                    double x = ibex_report_swept_num(pts[i], xk);
                    if (metric[0])
                        ibex_plot_push_timed(P, s, x, pts[i], metric, scale);
                    else
                        ibex_plot_series_push(P, s, x, ibex_report_num(pts[i], paths[m]) * scale);
                }
            }
        }
    if (!ibex_plot_prune_series(P, p, 1) || P->oom)
        return NULL;
    return p;
}

/* "X at k=a to Y at k=b" for each series of a plot, into the reading. */
void ibex_plot_read_range(ibex_report_plots *P, plot *p, const char *xk, const char *what, const char *unit)
{
    for (size_t i = 0; i < p->ns; i++) {
        const series *s = &p->s[i];
        char a[64], b[64];
        if (s->n >= 2) {
            ibex_plot_appendf(P, &p->reading, "%s%s goes from %s at %s=%g to %s at %s=%g (x%.2f)", p->reading ? " " : "",
                    s->title, ibex_report_fmt_value(s->y[0], unit, a, sizeof a), xk, s->x[0],
                    ibex_report_fmt_value(s->y[s->n - 1], unit, b, sizeof b), xk, s->x[s->n - 1],
                    s->y[0] != 0 ? s->y[s->n - 1] / s->y[0] : NAN);
            /* The peak matters when it is not at either end (a saturation point). */
            size_t best = 0;
            for (size_t k = 1; k < s->n; k++)
                if (s->y[k] > s->y[best])
                    best = k;
            if (best != 0 && best != s->n - 1)
                ibex_plot_appendf(P, &p->reading, ", peaking at %s at %s=%g",
                        ibex_report_fmt_value(s->y[best], unit, a, sizeof a), xk, s->x[best]);
            ibex_plot_appendf(P, &p->reading, ".");
        } else {
            ibex_plot_appendf(P, &p->reading, "%s%s: %s at %s=%g.", p->reading ? " " : "", s->title,
                    ibex_report_fmt_value(s->y[0], unit, a, sizeof a), xk, s->x[0]);
        }
    }
    (void)what;
}

bool ibex_plot_key_numeric(const json_t *const *pts, size_t np, const char *key)
{
    if (np == 0)
        return false;
    for (size_t i = 0; i < np; i++)
        if (!isfinite(ibex_report_swept_num(pts[i], key)))
            return false;
    return true;
}

bool ibex_plot_key_swept(const char **keys, size_t nk, const char *key)
{
    for (size_t k = 0; k < nk; k++)
        if (strcmp(keys[k], key) == 0)
            return true;
    return false;
}

/* A token count of a point: its swept value, else the fixed value in params
 * ({"dist": "fixed", "value": 64} or a bare number); NaN for other distributions. */
double ibex_plot_point_tokens(const json_t *pt, const char *key)
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
void ibex_plot_short_group_label(const json_t *pt, const char **keys, size_t nk, bool (*skip)(const char *key),
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
                    ? snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", ibex_plot_short_key(keys[k]), v)
                    : snprintf(buf + len, n - len, "%s%s", len ? " " : "", v);
        if (w < 0 || (size_t)w >= n - len) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
}

int ibex_plot_cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* ---------------------------------------------------------------- choosing the plots */

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
        if (nt > 0 && ibex_plot_key_swept(keys, nk, pk) && ibex_plot_key_numeric(timed, nt, pk))
            ibex_plot_plan_prompt_scaling(P, timed, nt, keys, nk);
        bool output_plan = nt > 0 && ibex_plot_key_swept(keys, nk, ok) && ibex_plot_key_numeric(timed, nt, ok);
        if (output_plan)
            ibex_plot_plan_output_scaling(P, timed, nt, keys, nk);
        bool kv_lines = false;
        if (na > 0 && (ibex_plot_key_swept(keys, nk, pk) || ibex_plot_key_swept(keys, nk, ok)))
            kv_lines = ibex_plot_plan_kv_vs_seq(P, acct, na, keys, nk);
        if (ibex_plot_key_swept(keys, nk, "kv.policy") && !kv_lines)
            ibex_plot_plan_kv(P, pts, np, keys, nk);
        const char *batch_key = NULL;
        if (nt > 0 && (ibex_plot_key_swept(keys, nk, "batch") || ibex_plot_key_swept(keys, nk, "workload.concurrency") ||
                       ibex_plot_key_swept(keys, nk, "scheduler")))
            ibex_plot_plan_batching(P, timed, nt, keys, nk, &batch_key);
        bool decoding = false;
        for (size_t k = 0; k < nk; k++)
            decoding |= strncmp(keys[k], "decoding.", 9) == 0;
        if (decoding)
            ibex_plot_plan_decoding(P, pts, np, keys, nk, na == 0);
        /* Generic: output throughput against every other numeric swept key, for the
         * timed points. decoding.* keys have their bars; the lengths their plots. */
        for (size_t k = 0; k < nk && !P->oom && nt > 0; k++) {
            if (strcmp(keys[k], pk) == 0 || (output_plan && strcmp(keys[k], ok) == 0) ||
                (batch_key && strcmp(keys[k], batch_key) == 0) || strncmp(keys[k], "decoding.", 9) == 0)
                continue;
            if (!ibex_plot_key_numeric(timed, nt, keys[k]))
                continue;
            char name[160], title[256];
            static const char *tp[] = {"metrics/output_tok_per_s"};
            static const char *tt[] = {"output tok/s"};
            snprintf(name, sizeof name, "throughput_vs_%s", keys[k]);
            snprintf(title, sizeof title, "Output throughput vs %s", keys[k]);
            plot *p = ibex_plot_plan_vs(P, name, title, timed, nt, keys, nk, keys[k], 1, tp, tt, 1.0);
            if (p) {
                snprintf(p->ylabel, sizeof p->ylabel, "output tokens/s");
                ibex_plot_read_range(P, p, keys[k], "throughput", "tok/s");
            }
        }
        if (nt > 0) {
            ibex_plot_plan_cdf(P, timed, nt, "ttft", "TTFT");
            ibex_plot_plan_cdf(P, timed, nt, "e2e", "E2E latency");
            ibex_plot_plan_cdf(P, timed, nt, "itl", "ITL");
        }
    }
    free(pts);
    for (size_t i = 0; i < P->n && !P->oom; i++)
        if (!P->v[i].reading)
            P->v[i].reading = ibex_plot_dup_str(P, "");
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
        ibex_plot_free(&p->v[i]);
    free(p->v);
    free(p);
}

size_t ibex_report_plots_count(const ibex_report_plots *p) { return p ? p->n : 0; }
const char *ibex_report_plot_name(const ibex_report_plots *p, size_t i) { return p->v[i].name; }
const char *ibex_report_plot_title(const ibex_report_plots *p, size_t i) { return p->v[i].title; }
const char *ibex_report_plot_reading(const ibex_report_plots *p, size_t i) { return p->v[i].reading; }
bool ibex_report_plot_rendered(const ibex_report_plots *p, size_t i) { return p->v[i].rendered; }
const char *ibex_report_plots_note(const ibex_report_plots *p) { return p ? p->note : ""; }
