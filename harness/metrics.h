/* metrics.h — the metric definitions of ibex: summary statistics, per-request
 * latencies (TTFT, E2E, TPOT, ITL), throughput and goodput, the power-law fit used for
 * scaling claims ("attention is O(n^2)"), the Mann–Whitney U test used by the
 * regression gate, and the formula texts every report prints verbatim.
 *
 * Pure computation: no I/O, no engine dependency, nothing printed. All times are in
 * seconds (doubles). Functions that cannot fail return a value; those that can return
 * an ibex_status and, where the caller passes an ibex_err, a message.
 *
 * Definitions (the same words are in ibex_metric_defs()):
 *
 *   Percentile (numpy's default "linear" method): sort the n samples ascending into
 *   s[0..n-1]; for q in [0, 100] let h = q/100 * (n-1), i = floor(h), f = h - i; then
 *   P(q) = s[i] + f * (s[i+1] - s[i])   (P(q) = s[n-1] when i = n-1).
 *   So P(0) = min, P(100) = max, P(50) = the median, and [1,2,3,4] gives
 *   P(50) = 2.5, P(90) = 3.7. n = 0 gives NaN.
 *
 *   sd is the sample standard deviation, sqrt(sum (x - mean)^2 / (n-1)); 0 when n < 2.
 *
 *   Per request, with arrival time t_a and output-token times t_1 <= ... <= t_n:
 *     TTFT = t_1 - t_a             (includes queueing and prefill)
 *     E2E  = t_n - t_a
 *     TPOT = (E2E - TTFT) / (n - 1)  for n >= 2 and t_n > t_1, else undefined (NaN):
 *            tokens that all arrived at once (beam search) were not streamed
 *     ITL  = every gap t_{k+1} - t_k > 0, pooled over all requests (a gap of 0 joins
 *            tokens delivered in the same event and is not a latency)
 *
 *   Over a run of wall time W (given by the caller, not derived from the timestamps):
 *     output throughput  = sum output tokens / W
 *     total throughput   = sum (input + output) tokens / W
 *     request throughput = requests / W
 *     goodput            = requests meeting every SLO / W
 */
#ifndef IBEX_METRICS_H
#define IBEX_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

/* ---------------------------------------------------------------- summaries */

/* Summary of a sample. NaN inputs are skipped (they mark undefined values, such as the
 * TPOT of a one-token request), so count is the number of non-NaN samples. With
 * count = 0 every other field is NaN; with count = 1 sd is 0 and the rest equal the
 * sample. */
typedef struct ibex_summary {
    size_t count;
    double mean;
    double sd; /* sample sd (n-1 denominator); 0 when count < 2 */
    double min;
    double max;
    double p50;
    double p90;
    double p99;
} ibex_summary;

/* Percentile q in [0, 100] of sorted (ascending, no NaN) data, by the definition above.
 * NaN when n = 0 or q is outside [0, 100] or NaN. Cannot fail otherwise. */
double ibex_percentile_sorted(const double *sorted, size_t n, double q);

/* Percentile q in [0, 100] of x in any order; NaN entries are skipped; x is not
 * modified (a sorted copy is made and freed). *out is NaN when no sample remains.
 * Errors: IBEX_ERR_INVALID (q outside [0, 100], or x NULL with n > 0),
 * IBEX_ERR_NOMEM. On error *out is untouched. */
ibex_status ibex_percentile(const double *x, size_t n, double q, double *out, ibex_err *e);

/* Fills *out with the summary of x[0..n-1] (any order, not modified; NaN skipped).
 * Errors: IBEX_ERR_INVALID (x NULL with n > 0), IBEX_ERR_NOMEM. On error *out is
 * untouched. */
ibex_status ibex_summarize(const double *x, size_t n, ibex_summary *out, ibex_err *e);

/* ---------------------------------------------------------------- requests */

/* The raw timestamps of one request, as observed by the harness. Borrowed: the token
 * times belong to the caller. */
typedef struct ibex_request_times {
    double arrival;            /* s, when the request entered the system */
    const double *token_times; /* (n_out) s, when each output token was emitted */
    size_t n_out;              /* output tokens */
    int64_t n_in;              /* prompt (input) tokens, for total throughput */
} ibex_request_times;

/* Latency metrics of one request, in seconds; NaN where undefined. */
typedef struct ibex_request_metrics {
    double ttft; /* t_1 - arrival; NaN when n_out = 0 */
    double e2e;  /* t_n - arrival; NaN when n_out = 0 */
    double tpot; /* (e2e - ttft) / (n_out - 1); NaN when n_out < 2 or all came at once */
    size_t n_out;
    int64_t n_in;
} ibex_request_metrics;

/* Checks r and computes its metrics into *out. Valid means: all times finite, n_in >= 0,
 * token_times non-NULL when n_out > 0, t_1 >= arrival and token times non-decreasing.
 * Errors: IBEX_ERR_INVALID naming the offending token; *out is then untouched. */
ibex_status ibex_request_metrics_compute(const ibex_request_times *r, ibex_request_metrics *out,
                                         ibex_err *e);

/* Writes the positive inter-token gaps of r (t_{k+1} - t_k > 0) to gaps[] and returns
 * their number (0 when n_out < 2 or every token came at once). gaps must hold max(n_out - 1, 0) doubles. Does not
 * validate; call ibex_request_metrics_compute first. Cannot fail. */
size_t ibex_request_itl(const ibex_request_times *r, double *gaps);

/* Service-level objectives, in seconds. A limit of 0 or NaN means "no limit". */
typedef struct ibex_slo {
    double ttft; /* TTFT <= ttft */
    double tpot; /* TPOT <= tpot; a request with undefined (NaN) TPOT passes */
    double e2e;  /* E2E  <= e2e */
} ibex_slo;

/* True when m meets every limit of slo (slo NULL: no limits). A request with no output
 * token (n_out = 0) never meets the SLOs: it produced nothing a user could see.
 * Cannot fail. */
bool ibex_slo_met(const ibex_request_metrics *m, const ibex_slo *slo);

/* A run's pooled latency metrics and throughputs. */
typedef struct ibex_run_metrics {
    size_t n_requests;
    size_t n_good;          /* requests meeting every SLO */
    int64_t input_tokens;   /* sum n_in */
    int64_t output_tokens;  /* sum n_out */
    double wall_s;          /* as given by the caller */
    ibex_summary ttft;      /* over requests with n_out >= 1 */
    ibex_summary tpot;      /* over requests with n_out >= 2 */
    ibex_summary itl;       /* over every gap of every request */
    ibex_summary e2e;       /* over requests with n_out >= 1 */
    double output_tok_per_s;  /* output_tokens / wall_s */
    double total_tok_per_s;   /* (input_tokens + output_tokens) / wall_s */
    double req_per_s;         /* n_requests / wall_s */
    double goodput_req_per_s; /* n_good / wall_s */
} ibex_run_metrics;

/* Computes every request's metrics, pools them into summaries and divides by wall_s.
 * slo may be NULL (no limits: every request with output is good).
 * Errors: IBEX_ERR_INVALID (wall_s not finite and > 0, reqs NULL with n > 0, or an
 * invalid request, named by index), IBEX_ERR_NOMEM. On error *out is untouched. */
ibex_status ibex_run_metrics_compute(const ibex_request_times *reqs, size_t n, double wall_s,
                                     const ibex_slo *slo, ibex_run_metrics *out, ibex_err *e);

/* ---------------------------------------------------------------- memory */

/* KV utilisation = used / reserved (a fraction in [0, 1]); NaN when reserved = 0. */
double ibex_kv_utilisation(int64_t used_bytes, int64_t reserved_bytes);

/* KV fragmentation = reserved - used, in bytes. */
int64_t ibex_kv_fragmentation(int64_t used_bytes, int64_t reserved_bytes);

/* ---------------------------------------------------------------- power-law fit */

/* y = a * x^b fitted by ordinary least squares on (ln x, ln y):
 *   ln y = ln a + b ln x,  b = Sxy / Sxx,  ln a = mean(ln y) - b mean(ln x),
 *   r2 = 1 - SS_res / SS_tot of the log-log fit (1 when every ln y is equal, since the
 *   line then fits exactly). */
typedef struct ibex_power_fit {
    double a;  /* prefactor, in y's unit */
    double b;  /* exponent: 2 means y quadruples when x doubles */
    double r2; /* coefficient of determination in log-log space */
    size_t n;
} ibex_power_fit;

/* Fits y = a * x^b to n points. Errors: IBEX_ERR_INVALID when n < 2, a pointer is
 * NULL, any x or y is not finite and > 0, or all x are equal. On error *out is
 * untouched. */
ibex_status ibex_power_fit_compute(const double *x, const double *y, size_t n, ibex_power_fit *out,
                                   ibex_err *e);

/* ---------------------------------------------------------------- Mann–Whitney U */

/* The test lives in reports/ (the compare library needs it and reports/ must not depend
 * on harness/); included here so callers of the metric formulas keep one header. */
#include "reports/mann_whitney.h"

/* ---------------------------------------------------------------- noise */

/* The spread of one timed figure over a point's repetitions.
 *
 *   median, mean, sd (sample, n-1) and cv = sd / |mean| over the n non-NaN values.
 *   CI of the median, distribution-free (binomial order statistics): with the values
 *   sorted x_(1) <= ... <= x_(n), the number of values below the true median is
 *   Binomial(n, 1/2), so for 1 <= j <= n/2
 *       P(x_(j) <= median <= x_(n-j+1)) >= 1 - 2 * sum_{i=0}^{j-1} C(n, i) / 2^n.
 *   j is the largest such rank whose coverage is still >= 95 %; [ci_lo, ci_hi] =
 *   [x_(j), x_(n-j+1)] and ci_level is that exact coverage. No j qualifies for n < 6
 *   (n = 5 with the extremes covers 93.75 %): then ci_lo, ci_hi and ci_level are NaN.
 *   noisy: n < 3 ("under-sampled: n=2") or cv > cv_max ("cv 14.2% > 10%"). */
typedef struct ibex_noise {
    size_t n;
    double median, mean, sd, cv;
    double ci_lo, ci_hi, ci_level; /* NaN when n < 6 */
    bool noisy;
    char reason[64]; /* "" when not noisy */
} ibex_noise;

/* Computes the spread of x[0..n-1] (any order, NaN skipped, not modified). cv_max is a
 * fraction (0.10 = 10 %). n = 0 (after skipping NaN) gives NaN figures, noisy with reason
 * "no samples". Errors: IBEX_ERR_INVALID (x NULL with n > 0), IBEX_ERR_NOMEM; on error
 * *out is untouched. */
ibex_status ibex_noise_compute(const double *x, size_t n, double cv_max, ibex_noise *out, ibex_err *e);

/* The 1-based ranks [j, n-j+1] of the distribution-free CI of the median of n samples at
 * coverage >= level (e.g. 0.95) and the exact coverage; false (nothing stored) when n is
 * too small for that level. Cannot fail otherwise. */
bool ibex_median_ci_ranks(size_t n, double level, size_t *lo_rank, size_t *hi_rank, double *coverage);

/* Half-width of the median's CI relative to the median, (ci_hi - ci_lo) / 2 / |median|;
 * NaN when the CI is undefined or the median is 0. `repeat: auto` repeats until this is
 * at most ci_target. */
double ibex_noise_rel_halfwidth(const ibex_noise *nz);

/* ---------------------------------------------------------------- machine load */

/* Inputs of the busy-machine judgement of one point. own_* is ibex's own share of the
 * load average (an exponential average of its CPU-s per s with the load average's 60 s
 * time constant), subtracted because the kernel counts ibex's threads in the load. */
typedef struct ibex_load_sample {
    int n_cpus;          /* online CPUs */
    int threads;         /* worker threads ibex used */
    double load1_start;  /* 1-min load average at the point's start */
    double load1_end;    /* ... and end */
    double own_start;    /* ibex's own share of load1_start */
    double own_end;      /* ... of load1_end */
    double cpu_s;        /* process CPU time over the timed repetitions */
    double wall_s;       /* their wall time */
    bool check_starved;  /* false when the point sleeps waiting for arrivals */
} ibex_load_sample;

/* True when the machine was busy or ibex was starved, with a one-line reason in
 * warning ("machine busy: load 7.9 on 2 CPUs, ibex got 0.4 CPU-s per s with 2
 * threads"); warning is "" when false. The rules (margin 0.75):
 *   busy     other load (load1 - own) at start or end > n_cpus - threads + 0.75, i.e.
 *            other work wanted more than the CPUs ibex's threads left free, unless
 *            ibex got cpu_s / wall_s >= 0.9 * threads (every CPU it could use);
 *   starved  cpu_s / wall_s < 0.6 (check_starved only): a computing run keeps at least
 *            its main thread busy, so less than 0.6 CPU-s per s means it waited for a CPU.
 * NaN loads (unreadable /proc/loadavg) are ignored. Cannot fail. */
bool ibex_load_judge(const ibex_load_sample *s, char *warning, size_t cap);

/* ---------------------------------------------------------------- KV over a run */

/* KV utilisation of a run sampled once per step: reserved[i] and used[i] bytes after
 * step i, which took dt[i] seconds.
 *   at_peak        = used / reserved at the step where reserved peaks (of the steps at
 *                    the peak, the one with most used: the peak's steady state);
 *   time_weighted  = sum(used[i] dt[i]) / sum(reserved[i] dt[i]).
 * NaN when nothing was ever reserved. Cannot fail. */
void ibex_kv_util_run(const int64_t *reserved, const int64_t *used, const double *dt, size_t n, double *at_peak,
                      double *time_weighted);

/* ---------------------------------------------------------------- definitions */

/* One metric as every report prints it. */
typedef struct ibex_metric_def {
    const char *key;     /* stable identifier used in results.json ("ttft") */
    const char *name;    /* display name ("TTFT") */
    const char *formula; /* ASCII text, printed verbatim */
    const char *unit;    /* "s", "tokens/s", ... */
} ibex_metric_def;

/* The table of every metric definition (static storage, never freed); *n receives its
 * length (n may be NULL). Cannot fail. */
const ibex_metric_def *ibex_metric_defs(size_t *n);

/* The definition whose key is key, or NULL. */
const ibex_metric_def *ibex_metric_def_find(const char *key);

#endif
