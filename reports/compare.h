/* compare.h — the performance-regression gate behind `ibex compare BASE NEW`: loads two
 * runs (results.json files, run folders, or suites = folders whose sub-folders are
 * runs), matches their points by parameters, and decides per metric.
 *
 * Decision rules (docs/COMPARE.md has the reasoning):
 *  - Timings (per-repetition samples of wall time, tok/s, prefill/decode time, latency
 *    percentiles, per-op ms) are compared by the two-sided Mann–Whitney U test
 *    (reports/mann_whitney.h) on the raw repetitions, and by the relative change of the
 *    medians. Direction-aware: "worse" is lower for rates (…_per_s), higher otherwise.
 *    regression  = p < alpha AND worse by more than the threshold;
 *    improved    = p < alpha AND better by more than the threshold;
 *    inconclusive= either side marked noisy (noise.METRIC.noisy, or conditions.busy
 *                  for every timing of the point), or the sample sizes
 *                  cannot reach alpha (ibex_mann_whitney_min_p(n_a, n_b) > alpha), or
 *                  a side has no samples;
 *    pass        = otherwise.
 *  - Exact counters (KV bytes and blocks, preemptions, tokens, steps, analytic FLOPs and
 *    bytes per op) must be equal: any difference is "changed", a failure unless the
 *    counter matches an --allow-counter pattern ("allowed").
 *  - Instruction counts (point.instructions, written by scenarios/ci_gate.sh from
 *    callgrind) are one deterministic sample each: a regression when they grow by more
 *    than instr_threshold.
 * Timings may be "informative": still computed and shown, never a failure (the CI gate
 * uses this when the machine differs from the baseline's).
 *
 * Library code: nothing printed except into the FILE the caller passes; errors come
 * back in an ibex_err. */
#ifndef IBEX_COMPARE_H
#define IBEX_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "kernels/status.h"

typedef enum ibex_cmp_verdict {
    IBEX_CMP_PASS = 0,     /* timing: no significant change beyond the floor; counter: equal */
    IBEX_CMP_IMPROVED,     /* timing: significantly better beyond the floor */
    IBEX_CMP_REGRESSION,   /* timing or instructions: significantly worse beyond the floor */
    IBEX_CMP_INCONCLUSIVE, /* timing: noisy side, too few samples, or no samples */
    IBEX_CMP_CHANGED,      /* counter differs: a failure */
    IBEX_CMP_ALLOWED,      /* counter differs, allowed by --allow-counter */
    IBEX_CMP_MISSING,      /* present on one side only (reported, not a failure) */
} ibex_cmp_verdict;

/* "pass", "improved", "REGRESSION", "inconclusive", "CHANGED", "allowed", "missing". */
const char *ibex_cmp_verdict_name(ibex_cmp_verdict v);

typedef enum ibex_cmp_kind { IBEX_CMP_TIMING, IBEX_CMP_COUNTER, IBEX_CMP_INSTRUCTIONS } ibex_cmp_kind;

/* How timing regressions count: strict (fail), informative (shown only), or auto
 * (strict when both runs carry a provenance and their machines match: same
 * cpu_model, cpu_cores, compiler, c_flags, build_type, native flag and hostname;
 * informative otherwise, so a CI runner that is not the baseline's machine never fails
 * on timings). */
typedef enum ibex_cmp_timings { IBEX_CMP_TIMINGS_STRICT, IBEX_CMP_TIMINGS_INFO, IBEX_CMP_TIMINGS_AUTO } ibex_cmp_timings;

typedef struct ibex_compare_opts {
    double threshold;       /* relative floor for timings, 0.05 = 5 % */
    double alpha;           /* significance level of the MWU test */
    double instr_threshold; /* relative floor for instruction counts, 0.01 = 1 % */
    const char *metrics;    /* comma list of fnmatch patterns restricting the metrics
                             * compared (timings and counters), NULL = all */
    const char *allow;      /* comma list of fnmatch patterns of counters allowed to change */
    ibex_cmp_timings timings;
    bool ignore_noise;      /* compare timings even where a side is marked noisy */
} ibex_compare_opts;

/* Defaults: threshold 5 %, alpha 0.05, instr_threshold 1 %, everything compared,
 * nothing allowed, timings strict, noise respected. */
ibex_compare_opts ibex_compare_opts_default(void);

typedef struct ibex_compare_row {
    char point[320];   /* the point's label ("member: label" in a suite) */
    char metric[128];  /* "output_tok_per_s", "ops.decode.matmul", "kv.peak_reserved" */
    ibex_cmp_kind kind;
    bool higher_is_better;
    double base, new_; /* medians (timings) or values (counters); NaN when missing */
    double change;     /* (new - base) / base; NaN when undefined */
    double p;          /* MWU p-value; NaN for counters or when not computed */
    size_t n_base, n_new;
    ibex_cmp_verdict verdict;
    char note[160];    /* why inconclusive, "informative", ... ("" when nothing to say) */
} ibex_compare_row;

typedef struct ibex_compare_result {
    ibex_compare_row *rows;
    size_t n_rows;
    char **unmatched_base; /* labels of points only in BASE */
    size_t n_unmatched_base;
    char **unmatched_new;  /* labels of points only in NEW */
    size_t n_unmatched_new;
    char **warnings;       /* provenance differences, noisy/busy conditions, ... */
    size_t n_warnings;
    size_t n_matched;      /* matched point pairs */
    size_t n_regressions;  /* timing/instruction regressions that fail */
    size_t n_changed;      /* counters that changed and are not allowed */
    size_t n_inconclusive, n_improved, n_allowed;
    bool timings_informative; /* as resolved from opts.timings */
    double threshold, alpha;  /* as used */
} ibex_compare_result;

/* Loads a run for comparison: a results.json file, a run folder (FOLDER/results.json),
 * or a suite folder (no results.json, sub-folders that have one; each member's points
 * get the member's folder name as prefix). Returns a new JSON array of
 * {"member": name or "", "results": results.json} objects (sorted by member), or NULL
 * with IBEX_ERR_IO / IBEX_ERR_FORMAT / IBEX_ERR_UNSUPPORTED naming the path. */
json_t *ibex_compare_load(const char *path, ibex_err *err);

/* Compares two loaded runs (as from ibex_compare_load). Returns NULL with
 * IBEX_ERR_INVALID (NULL arguments, options out of range) or IBEX_ERR_NOMEM. No matched
 * point is not an error here: n_matched = 0 (the CLI exits 2). Free with
 * ibex_compare_free. */
ibex_compare_result *ibex_compare_runs(const json_t *base, const json_t *new_, const ibex_compare_opts *opts,
                                       ibex_err *err);

void ibex_compare_free(ibex_compare_result *r);

/* 0 = no failing row, 1 = a regression or a changed counter, 2 = nothing matched. */
int ibex_compare_exit_code(const ibex_compare_result *r);

/* Writes the Markdown report: warnings, unmatched points, one table per point (metric,
 * base, new, change %, p-value, verdict; counters only when they differ, plus a count
 * of the equal ones), and a summary line naming every failing metric.
 * Errors: IBEX_ERR_INVALID, IBEX_ERR_IO. */
ibex_status ibex_compare_markdown(const ibex_compare_result *r, FILE *out, ibex_err *err);

/* The result as JSON (every row, counters included): {"exit_code", "threshold",
 * "alpha", "timings_informative", "summary": {...}, "warnings": [...],
 * "unmatched_base": [...], "unmatched_new": [...], "rows": [{"point", "metric",
 * "kind", "base", "new", "change", "p", "n_base", "n_new", "verdict", "note"}]}.
 * NULL only when out of memory. */
json_t *ibex_compare_to_json(const ibex_compare_result *r);

#endif
