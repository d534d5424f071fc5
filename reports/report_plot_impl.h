/* report_plot_impl.h — private to the plot files of reports/: the plot model (plots,
 * line series, bar categories and their readings), the helpers every plot family
 * shares, and one planner per family. Not installed, not for the harness: the public
 * interface is ibex_report_plots_* in reports.h. */
#ifndef IBEX_REPORT_PLOT_IMPL_H
#define IBEX_REPORT_PLOT_IMPL_H

#include "reports/reports.h"

#include <stdbool.h>
#include <stddef.h>

#define MAX_SWEPT 64
#define MAX_CDF_POINTS 8
#define MAX_BAR_COLS 4

enum plot_kind { PLOT_LINES, PLOT_BARS };

typedef struct series {
    char *title;
    size_t n, cap;
    double *x, *y;
    double *lo, *hi; /* NULL, or (n) error-bar ends from the repetitions (NaN: no bar there) */
    int lc;          /* gnuplot line colour index, 0 = the default cycle */
    int pt;          /* gnuplot point type, 0 = the default cycle */
    bool dashed;     /* drawn dashed (a companion of the solid series of the same colour) */
    int lw;          /* line width, 0 = the default */
    bool points;     /* drawn as points only (one sample: a line or a step would draw nothing) */
    bool reference;  /* a reference (slope n, n², a budget): thin grey dashes, no markers */
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
    series *s;       /* PLOT_LINES: (ns) series */
    size_t ns;
    char **cat; /* PLOT_BARS: (ncat) categories */
    size_t ncat;
    size_t ncol;
    char coltitle[MAX_BAR_COLS][128];
    bool col_y2[MAX_BAR_COLS];
    double *val;      /* (ncat, ncol) */
    double hline; /* PLOT_BARS: > 0 draws a horizontal reference line at this y (a budget) */
    char hline_title[128];
    char *reading;
    bool rendered;
} plot;

struct ibex_report_plots {
    plot *v;
    size_t n, cap;
    bool oom;
    char note[1024];
};

/* ---- the model (report_plots.c) ---- */
char *ibex_plot_dup_str(ibex_report_plots *P, const char *s);
/* Appends printf text to the growing string *s (NULL starts one). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void ibex_plot_appendf(ibex_report_plots *P, char **s, const char *fmt, ...);
plot *ibex_plot_new(ibex_report_plots *P, const char *name, const char *title, enum plot_kind kind);
series *ibex_plot_add_series(ibex_report_plots *P, plot *p, const char *title);
void ibex_plot_series_push(ibex_report_plots *P, series *s, double x, double y);
/* Sets the error bar of the last pushed point: lo..hi around its y (NaN: none). */
void ibex_plot_series_bar(ibex_report_plots *P, series *s, double lo, double hi);
/* Pushes (x, the point's figure for metric × scale) with the spread of its repetitions
 * as an error bar when there are 2 or more (report_noise.c). */
void ibex_plot_push_timed(ibex_report_plots *P, series *s, double x, const json_t *pt, const char *metric,
                          double scale);
/* Adds reference slopes y ∝ x^1 and y ∝ x^2 through the first point of s (a series of
 * p, index si), spanning s's x range: what linear and quadratic growth look like. */
void ibex_plot_add_slopes(ibex_report_plots *P, plot *p, size_t si);
void ibex_plot_series_sort(series *s);
void ibex_plot_free(plot *p);
void ibex_plot_drop_last(ibex_report_plots *P);
bool ibex_plot_prune_series(ibex_report_plots *P, plot *p, size_t min_n);

/* ---- reading results.json for plots (report_plots.c) ---- */
void ibex_plot_group_label(const json_t *pt, const char **keys, size_t nk, const char *skip, char *buf, size_t n);
const char *ibex_plot_short_key(const char *key);
void ibex_plot_category_label(const json_t *pt, size_t idx, const char **keys, size_t nk, char *buf, size_t n);
size_t ibex_plot_distinct_groups(const json_t *const *pts, size_t np, const char **keys, size_t nk,
                                 const char *skip, char (*groups)[256], size_t max);
double ibex_plot_point_reps(const json_t *pt);
double ibex_plot_ops_ns(const json_t *pt, const char *phase, const char *only, const char *except);
double ibex_plot_fit_b(const series *s, double *r2);
double ibex_plot_series_y_at_max_x(const series *s);
plot *ibex_plot_plan_bars(ibex_report_plots *P, const char *name, const char *title, const json_t *const *pts,
                          size_t np, const char **keys, size_t nk, size_t ncol, const char *const *paths,
                          const char *const *titles, const double *scale, const bool *y2);
plot *ibex_plot_plan_vs(ibex_report_plots *P, const char *name, const char *title, const json_t *const *pts,
                        size_t np, const char **keys, size_t nk, const char *xk, size_t nm,
                        const char *const *paths, const char *const *mtitles, double scale);
void ibex_plot_read_range(ibex_report_plots *P, plot *p, const char *xk, const char *what, const char *unit);
bool ibex_plot_key_numeric(const json_t *const *pts, size_t np, const char *key);
bool ibex_plot_key_swept(const char **keys, size_t nk, const char *key);
double ibex_plot_point_tokens(const json_t *pt, const char *key);
void ibex_plot_short_group_label(const json_t *pt, const char **keys, size_t nk, bool (*skip)(const char *key),
                                 char *buf, size_t n);
int ibex_plot_cmp_double(const void *pa, const void *pb);

/* ---- the families ---- */
/* report_plot_scaling.c */
void ibex_plot_plan_prompt_scaling(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                                   size_t nk);
void ibex_plot_plan_output_scaling(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                                   size_t nk);
/* report_plot_kv.c */
void ibex_plot_kv_config(const json_t *pt, const char **keys, size_t nk, char *buf, size_t n);
bool ibex_plot_policy_is_none(const json_t *pt);
void ibex_plot_plan_kv(ibex_report_plots *P, const json_t *const *all, size_t nall, const char **keys, size_t nk);
bool ibex_plot_plan_kv_vs_seq(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                              size_t nk);
/* report_plot_batching.c */
void ibex_plot_plan_batching(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                             size_t nk, const char **xk_out);
/* report_plot_decoding.c */
void ibex_plot_plan_decoding(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                             size_t nk, bool timing);
/* report_plot_latency.c */
double ibex_plot_pct_sorted(const double *s, size_t n, double q);
void ibex_plot_plan_cdf(ibex_report_plots *P, const json_t *const *pts, size_t np, const char *metric,
                        const char *display);

#endif
