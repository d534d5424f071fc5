/* reports.h — every report ibex derives from a results.json (docs/RESULTS.md):
 * results.csv, report.md, gnuplot scripts and images under plots/, and the compact
 * summary `ibex run` and `ibex report` print on the terminal.
 *
 * reports/ never runs the engine and does not depend on harness/: its only input is
 * the parsed results.json (a jansson json_t), so `ibex report DIR` regenerates exactly
 * what `ibex run` wrote. Writers never fail on a missing optional key (older or partial
 * files): a missing value is an empty CSV cell, a "-" in a table, or a series left out
 * of a plot.
 *
 * gnuplot is an external program, found on PATH (or named by the environment variable
 * IBEX_GNUPLOT; IBEX_GNUPLOT=none disables it) and run with fork+exec. Without it the
 * scripts and data are still written and report.md says why the images are missing.
 *
 * Errors are returned as an ibex_status with a message in the caller's ibex_err (which
 * may be NULL); nothing here prints except into the FILE the caller passes. */
#ifndef IBEX_REPORTS_H
#define IBEX_REPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "kernels/status.h"

/* The results.json schema version this code reads. */
#define IBEX_REPORT_SCHEMA_VERSION 1

/* ---------------------------------------------------------------- loading */

/* Loads and checks a results.json. dir_or_file is either the file or a run directory
 * (then DIR/results.json is read). Checks: the root is an object, schema_version is
 * present and equals IBEX_REPORT_SCHEMA_VERSION, "points" (when present) is an array.
 * Returns a new reference the caller releases with json_decref, or NULL with:
 *   IBEX_ERR_IO          the file cannot be opened ("PATH: No such file or directory");
 *   IBEX_ERR_FORMAT      malformed JSON ("PATH:LINE:COLUMN: jansson's message") or a
 *                        wrong shape ("PATH: schema_version is missing");
 *   IBEX_ERR_UNSUPPORTED another schema version ("PATH: schema_version 2 ..."). */
json_t *ibex_report_load(const char *dir_or_file, ibex_err *err);

/* ---------------------------------------------------------------- accessors */

/* The value at a '/'-separated path of object keys below root ("metrics/ttft/p50",
 * "swept/workload.prompt_tokens": keys may contain dots, never '/'), or NULL when any
 * step is missing or not an object. Borrowed. Cannot fail. */
const json_t *ibex_report_get(const json_t *root, const char *path);

/* The number at path (integer or real), or NaN when missing, null or not a number. */
double ibex_report_num(const json_t *root, const char *path);

/* The string at path, or NULL when missing or not a string. Borrowed. */
const char *ibex_report_str(const json_t *root, const char *path);

/* The swept keys of a run, in sweep order: scenario.swept, or (when absent) the union
 * of the points' "swept" objects in order of first appearance. Fills keys[0..max-1]
 * with borrowed strings and returns how many there are in all (which may exceed max).
 * Cannot fail. */
size_t ibex_report_swept_keys(const json_t *results, const char **keys, size_t max);

/* A point's value of swept key `key` as text, written into buf (always terminated):
 * a string as is, a number in its shortest exact form, anything else as compact JSON,
 * "" when missing. Returns buf. */
char *ibex_report_swept_text(const json_t *point, const char *key, char *buf, size_t n);

/* A point's value of swept key `key` as a number: a JSON number, or a string that
 * parses completely as one ("128"), or for a distribution parameter its "value"
 * ({"dist": "fixed", "value": 128}); NaN otherwise. */
double ibex_report_swept_num(const json_t *point, const char *key);

/* ---------------------------------------------------------------- formatting */

/* Human-readable values for tables and readings, written into buf and returned, with
 * three significant digits: seconds with an adapted unit ("850 ns", "12.3 ms",
 * "1.23 s"), bytes in binary units ("512 B", "1.50 MiB"), and a plain value with an
 * optional unit ("1234 tok/s", "0.512"). NaN gives "-". */
char *ibex_report_fmt_seconds(double s, char *buf, size_t n);
char *ibex_report_fmt_bytes(double bytes, char *buf, size_t n);
char *ibex_report_fmt_value(double v, const char *unit, char *buf, size_t n);

/* ---------------------------------------------------------------- the power-law fit */

/* y = a * x^b by ordinary least squares on (ln x, ln y): b = Sxy / Sxx,
 * ln a = mean(ln y) - b mean(ln x), r2 = 1 - SS_res / SS_tot in log space (1 when every
 * ln y is equal). Points whose x or y is not finite and > 0 are skipped. Returns false
 * (outputs untouched) when fewer than 2 points remain or all their x are equal.
 * Any output pointer may be NULL. */
bool ibex_report_power_fit(const double *x, const double *y, size_t n, double *a, double *b,
                           double *r2);

/* ---------------------------------------------------------------- noise */

/* CV above which a figure is noisy when results.json carries no noise object (the
 * runner's default noise.cv_max). */
#define IBEX_REPORT_CV_MAX 0.10

/* The spread of one timed figure of a point over its repetitions. */
typedef struct ibex_report_spread {
    size_t n;           /* repetitions behind the figure; 0 when unknown */
    double median;      /* the figure itself (metrics.*, else the median of the repetitions) */
    double sd, cv;      /* sample sd and sd / |mean| over the repetitions; NaN when n < 2 */
    double lo, hi;      /* the interval verdicts use (NaN when n < 2): noise.M.ci_lo..ci_hi
                           (~95 % CI of the median, order statistics) when given, else the
                           min..max of the repetitions */
    bool is_ci;         /* lo..hi is a CI of the median (false: the range of the repetitions) */
    bool noisy;         /* noise.M.noisy when given, else n < 3 or cv > IBEX_REPORT_CV_MAX */
    bool proxy;         /* the repetitions of another metric were scaled (see below) */
    char reason[80];    /* why noisy ("cv 14.2% > 10%", "under-sampled: n=1"); "" otherwise */
} ibex_report_spread;

/* The spread of timed metric `metric` of a point, by its name in repetitions[] and
 * noise{} ("wall_s", "prefill_s", "decode_ms_per_token", "output_tok_per_s",
 * "ttft_p50", ... or "attention_prefill_s": ops.prefill.attention per repetition).
 * Read from noise.<metric> when present; else computed from repetitions[k].<metric>;
 * else, for a metric the repetitions lack, from a proxy they hold, each repetition's
 * value scaled by the figure over the proxy's median (decode_ms_per_token and
 * decode_tok_per_s from decode_s, prefill_tok_per_s and attention_prefill_s from
 * prefill_s): same relative spread, proxy set. Returns false (out zeroed, NaN figures)
 * when the point has no value for the metric. */
bool ibex_report_spread_get(const json_t *point, const char *metric, ibex_report_spread *out);

/* "12.3 ± 0.4 ms (CV 3 %)" (seconds: the unit follows the figure), "1234 ± 56 tok/s
 * (CV 4 %)" (unit given, seconds false), "12.3 ms (n=1)" with one repetition, the bare
 * figure when n is unknown, then " ⚠" when noisy. A NaN figure gives `missing`
 * ("-", or "undefined" for TPOT/ITL that no request defined). Returns buf. */
char *ibex_report_fmt_spread(const ibex_report_spread *s, bool seconds, const char *unit, const char *missing,
                             char *buf, size_t n);

/* ---------------------------------------------------------------- CSV */

/* Writes results.csv to out: a header row, then one row per point:
 *   index,label,status, every swept key (sweep order), wall_s, output_tok_per_s,
 *   total_tok_per_s, req_per_s, goodput_req_per_s, prefill_tok_per_s, decode_tok_per_s,
 *   decode_ms_per_token, ttft_p50,ttft_p90,ttft_p99, tpot_p50,tpot_p90,tpot_p99,
 *   itl_p50,itl_p99, e2e_p50,e2e_p99, kv_peak_reserved,kv_peak_used,
 *   kv_utilisation_mean, kv_max_concurrent, kv_preemptions, memory_weights,
 *   memory_process_peak_rss, error
 * RFC 4180 quoting (a field holding , " CR LF or edge spaces is quoted, " doubled),
 * "\n" line ends; times in seconds and sizes in bytes as in results.json; integers
 * printed exactly, reals in their shortest form that parses back to the same double;
 * missing values empty. The same results give byte-identical output.
 * Errors: IBEX_ERR_INVALID (results or out NULL), IBEX_ERR_IO (a write failed). */
ibex_status ibex_report_csv(const json_t *results, FILE *out, ibex_err *err);

/* Whether any point has GPU kernel rows (a non-empty "gpu"/"kernels" array): then
 * ibex_report_write_all writes kernels.csv. Cannot fail. */
bool ibex_report_has_kernels(const json_t *results);

/* Writes kernels.csv to out: a header row, then one row per (point, kernel) of every
 * point with a "gpu" object, points in file order, kernels in their results.json order
 * (total_ns descending):
 *   index,label,kernel,op,calls,total_ns,mean_ns,min_ns,max_ns,share
 * kernel is the full name as CUPTI gave it (mangled C++ names stay mangled); op is the
 * op's name (op_name), or its id when it has none (-1: launched outside any op).
 * Quoting and number formats as in ibex_report_csv. A run without GPU activity gives
 * the header alone. Errors: IBEX_ERR_INVALID (results or out NULL), IBEX_ERR_IO. */
ibex_status ibex_report_kernels_csv(const json_t *results, FILE *out, ibex_err *err);

/* ---------------------------------------------------------------- plots */

/* The plots chosen for a run, with their data and a one-paragraph reading of each.
 * Opaque; made by ibex_report_plots_plan, released by ibex_report_plots_free. */
typedef struct ibex_report_plots ibex_report_plots;

/* Chooses the plots from what was swept (only points with status "ok"):
 *  - workload.prompt_tokens swept: prefill time vs prompt tokens (log-log; whole
 *    prefill, attention, the other ops; fitted exponent and R² in the key), and decode
 *    ms/token vs prompt tokens; one series per value of the other swept keys;
 *  - kv.policy swept: KV utilisation and max concurrency per point, and KV peak
 *    reserved/used per point;
 *  - batch, workload.concurrency or scheduler swept: output throughput and TTFT/TPOT
 *    p50/p99 vs batch (or concurrency), one series per value of the other swept keys;
 *  - a decoding.* key swept: decode tok/s and KV peak reserved per point;
 *  - workload.output_tokens swept with compute: total time and per-token time vs n
 *    (log-log, power fit per series: ~n² without a cache, ~n with one);
 *  - every other numeric swept key (not decoding.*): output throughput vs that key;
 *  - always (when raw samples exist): the CDF of raw TTFT, E2E and ITL, at most 8
 *    points each.
 * Accounting-only points (params.compute false) never enter timing plots; with
 * prompt or output tokens swept they get KV memory and utilisation vs prompt + output
 * tokens (log2). KV bars leave out policy none and need at least two KV
 * configurations (kv.policy plus any other swept kv.* key).
 * Pure computation, no I/O. Returns NULL with IBEX_ERR_INVALID (results NULL) or
 * IBEX_ERR_NOMEM. A run with nothing to plot gives an empty set, not an error. */
ibex_report_plots *ibex_report_plots_plan(const json_t *results, ibex_err *err);

/* Frees p and everything it owns; NULL is allowed. */
void ibex_report_plots_free(ibex_report_plots *p);

/* Number of plots in p, and the i-th plot's file stem ("prefill_scaling"), title,
 * reading (the paragraph for report.md), and whether its .png was rendered by the last
 * ibex_report_plots_render. i must be < count. Strings are owned by p. */
size_t ibex_report_plots_count(const ibex_report_plots *p);
const char *ibex_report_plot_name(const ibex_report_plots *p, size_t i);
const char *ibex_report_plot_title(const ibex_report_plots *p, size_t i);
const char *ibex_report_plot_reading(const ibex_report_plots *p, size_t i);
bool ibex_report_plot_rendered(const ibex_report_plots *p, size_t i);

/* Why images are missing after ibex_report_plots_render ("gnuplot was not found on
 * PATH", "gnuplot failed on 1 of 6 plots: ..."), or "" when every plot was rendered. */
const char *ibex_report_plots_note(const ibex_report_plots *p);

/* Writes NAME.dat and NAME.gp for every plot into plots_dir (created if missing), each
 * atomically, then, when gnuplot is non-NULL (a path to the program), runs it on each
 * script from inside plots_dir to make NAME.png (pngcairo, else png) and NAME.svg; the
 * images are written under .tmp names and renamed once gnuplot exits with status 0.
 * A script can be rerun by hand: `cd plots && gnuplot NAME.gp`.
 * gnuplot failing on a plot is not an error: it is recorded in the plot's rendered
 * flag and in ibex_report_plots_note. gnuplot NULL records `why_no_gnuplot` (may be
 * NULL) as the note. Errors: IBEX_ERR_IO (a directory or file cannot be written),
 * IBEX_ERR_INVALID (p or plots_dir NULL). */
ibex_status ibex_report_plots_render(ibex_report_plots *p, const char *plots_dir,
                                     const char *gnuplot, const char *why_no_gnuplot,
                                     ibex_err *err);

/* Draws plot i as text with gnuplot's `dumb` terminal, width x height characters, into
 * out. The script and data go to a fresh temporary directory that is removed after.
 * Errors: IBEX_ERR_INVALID (bad arguments), IBEX_ERR_IO (temporary files),
 * IBEX_ERR_BACKEND (gnuplot exited with an error; its first output line is quoted). */
ibex_status ibex_report_plot_dumb(const ibex_report_plots *p, size_t i, const char *gnuplot, int width,
                                  int height, FILE *out, ibex_err *err);

/* Finds gnuplot: the program named by IBEX_GNUPLOT when set (IBEX_GNUPLOT="" or
 * "none" disables plotting), else the first executable "gnuplot" on PATH. On success
 * writes its path into path[0..n-1] and returns true; otherwise returns false and
 * writes the reason into why[0..why_n-1] (why may be NULL). Cannot fail otherwise. */
bool ibex_report_gnuplot_find(char *path, size_t n, char *why, size_t why_n);

/* ---------------------------------------------------------------- Markdown */

/* Writes report.md to out: title; what was run (scenario, description, ibex version,
 * commit, build type, machine, timestamp, complete flag, swept keys); a results table
 * (swept columns and key metrics with units); failed points; the per-op breakdown
 * (prefill and decode: share of time, GFLOP/s, GB/s) of each point; when a point has a
 * "gpu" object or the run a "cupti_error", "GPU activity (CUPTI)": per point the device,
 * GPU busy fraction, dropped records, the top 20 kernels (shortened names, op, calls,
 * total, mean, share), GPU time per op, copies, the roofline per op and NVTX ranges, or
 * why CUPTI did not run; when points differ only in params.instruments, the
 * "Instrumentation overhead" table (decode and output tok/s per level against "off");
 * the KV and memory table; the plots (each embedded as ![](plots/NAME.png) when
 * rendered, with its reading); and the metric definitions from metric_definitions,
 * verbatim. Results without those GPU fields give no GPU sections.
 * plots may be NULL (no plot section). Same inputs, same bytes: nothing depends on the
 * current time. Errors: IBEX_ERR_INVALID (results or out NULL), IBEX_ERR_IO. */
ibex_status ibex_report_markdown(const json_t *results, const ibex_report_plots *plots, FILE *out,
                                 ibex_err *err);

/* The "Shards" section of report.md for a folder written by `ibex merge` (results.json
 * "merge"): a table of the shards (node, CPU, GPU, points, complete), a warning listing
 * the missing points of a partial merge, and a warning when the shards ran on different
 * kinds of machine (machine_kind: CPU model and GPU), naming the points of each kind.
 * Writes nothing for other results. Errors: IBEX_ERR_INVALID, IBEX_ERR_IO. */
ibex_status ibex_report_md_merge(const json_t *results, FILE *out, ibex_err *err);

/* Bytes enough for any name ibex_report_kernel_short_name writes. */
#define IBEX_KERNEL_NAME_BUF 256

/* A CUPTI kernel name shortened for a table, written into buf (always terminated) and
 * returned: an Itanium-mangled C++ name ("_Z...") is demangled to its qualified name and
 * template arguments, without the parameter list, anonymous and nvcc _INTERNAL_
 * namespaces left out ("_ZN4ibex4attnILi64EEEvPKf" gives "ibex::attn<64>"); a name the
 * demangler does not understand stays as given; the result is cut to 80 characters,
 * keeping its head and tail around a "…". NULL gives "?". Cannot fail. */
char *ibex_report_kernel_short_name(const char *name, char *buf, size_t n);

/* ---------------------------------------------------------------- terminal */

/* Writes a compact summary to out: one line per point (label, status, output tok/s,
 * TTFT p50/p99, TPOT p50, prefill tok/s, decode ms/token, KV utilisation), then, when
 * gnuplot is found, the first planned plot drawn with gnuplot's `dumb` terminal (its
 * script and data go to a temporary directory that is removed). A failing text plot
 * is left out silently. Errors: IBEX_ERR_INVALID (results or out NULL), IBEX_ERR_IO,
 * IBEX_ERR_NOMEM. */
ibex_status ibex_report_terminal(const json_t *results, FILE *out, ibex_err *err);

/* ---------------------------------------------------------------- everything */

/* Reads DIR/results.json and writes, each atomically (NAME.tmp then rename):
 * DIR/results.csv, DIR/kernels.csv (only when ibex_report_has_kernels),
 * DIR/plots/NAME.{dat,gp,png,svg} and DIR/report.md. A missing gnuplot
 * (or a plot gnuplot fails on) is not an error: report.md says which images are
 * missing and why. Errors: those of ibex_report_load, IBEX_ERR_IO when a file cannot
 * be written, IBEX_ERR_NOMEM. Files already written stay when a later one fails. */
ibex_status ibex_report_write_all(const char *dir, ibex_err *err);

/* Writes path atomically: fill(f, ctx, err) writes into PATH.tmp, which is flushed,
 * closed and renamed over path only when fill returned IBEX_OK and every write
 * succeeded; otherwise PATH.tmp is removed and path is left as it was.
 * Errors: fill's, or IBEX_ERR_IO naming the file. */
ibex_status ibex_report_write_atomic(const char *path,
                                     ibex_status (*fill)(FILE *f, void *ctx, ibex_err *err),
                                     void *ctx, ibex_err *err);

#endif
