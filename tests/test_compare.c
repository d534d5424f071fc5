/* test_compare.c — tests of the regression gate (reports/compare.h, reports/
 * mann_whitney.h): the smallest achievable p-value, matching by parameters, the
 * direction-aware timing decision (significant AND above the floor), inconclusive
 * cases (too few repetitions, noisy side), exact counters and --allow-counter,
 * instruction counts, informative timings across machines, and loading files, run
 * folders and suites. The results.json inputs are built by hand: repetition k of a
 * point takes (1 + spread * k) * slow seconds, so every expected verdict is known. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reports/compare.h"
#include "reports/mann_whitney.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

/* ---------------------------------------------------------------- fixtures */

typedef struct fx {
    int reps;          /* timed repetitions per point */
    double slow;       /* every time multiplied by this, every rate divided */
    double spread;     /* relative step between repetitions */
    int peak_delta;    /* added to kv.peak_reserved of the first point */
    const char *cpu;   /* provenance.cpu_model */
    bool reversed;     /* points written in the other order */
    const char *other; /* kv.policy of the second point */
    bool noisy;        /* noise.wall_s.noisy on every point */
    bool busy;         /* conditions.busy on every point */
    double instr;      /* instructions count per point (0: none) */
    const char *scope; /* instructions.scope (NULL: none) */
} fx;

static fx fx_default(void) { return (fx){.reps = 9, .slow = 1.0, .spread = 0.01, .cpu = "Test CPU", .other = "paged"}; }

static json_t *mk_point(const fx *f, const char *policy, int idx) {
    json_t *reps = json_array();
    for (int k = 0; k < f->reps; k++) {
        double v = (1.0 + f->spread * k) * f->slow;
        /* today's fields plus the contract's, and per-op ms */
        json_array_append_new(reps, json_pack("{s:f,s:f,s:f,s:f,s:f,s:i,s:{s:{s:f}}}", "wall_s", v, "output_tok_per_s",
                                              32.0 / v, "prefill_s", 0.25 * v, "decode_s", 0.75 * v, "ttft_p50", 0.25 * v,
                                              "steps", 16, "ops", "decode", "matmul", 500.0 * v));
    }
    json_t *p = json_pack("{s:i,s:s,s:s,s:n,s:{s:s},s:{s:s,s:i,s:s,s:i,s:i},s:{s:f,s:f,s:i},"
                          "s:{s:I,s:i,s:I,s:I,s:I,s:i,s:i},s:{s:{s:{s:f,s:i,s:f,s:f}}},s:o}",
                          "index", idx, "label", policy, "status", "ok", "error", "swept", "kv.policy", policy, "params",
                          "model", "synthetic:tiny", "threads", 1, "kv.policy", policy, "repeat", f->reps, "seed", 1,
                          "metrics", "wall_s", f->slow, "output_tok_per_s", 32.0 / f->slow, "steps", 16, "kv",
                          "pool_bytes", (json_int_t)1048576, "n_blocks", 64, "peak_reserved",
                          (json_int_t)(4096 + (idx == 0 ? f->peak_delta : 0)), "peak_used", (json_int_t)4000,
                          "fragmentation_peak", (json_int_t)96, "preemptions", 0, "max_concurrent", 2, "ops", "decode",
                          "matmul", "ns", 1e6, "calls", 10, "flops", 1e9, "bytes", 2e6, "repetitions", reps);
    if (f->noisy)
        json_object_set_new(p, "noise", json_pack("{s:{s:b,s:s}}", "wall_s", "noisy", 1, "reason", "cv 30 %"));
    if (f->busy) json_object_set_new(p, "conditions", json_pack("{s:b,s:i}", "busy", 1, "threads", 1));
    if (f->instr > 0) {
        json_t *in = json_pack("{s:f,s:s}", "count", f->instr, "tool", "callgrind");
        if (f->scope) json_object_set_new(in, "scope", json_string(f->scope));
        json_object_set_new(p, "instructions", in);
    }
    return p;
}

static json_t *mk_results(const fx *f) {
    json_t *pts = json_array();
    json_t *a = mk_point(f, "contiguous", 0), *b = mk_point(f, f->other, 1);
    json_array_append_new(pts, f->reversed ? b : a);
    json_array_append_new(pts, f->reversed ? a : b);
    return json_pack("{s:i,s:{s:s,s:s,s:s,s:s,s:b,s:i,s:s},s:b,s:o}", "schema_version", 1, "provenance", "cpu_model",
                     f->cpu, "compiler", "gcc 12.2.0", "c_flags", "-O3", "build_type", "Release", "native", 1,
                     "cpu_cores", 2, "hostname", "h", "complete", 1, "points", pts);
}

/* A loaded run, as ibex_compare_load returns it. */
static json_t *mk_run(const fx *f) { return json_pack("[{s:s,s:o}]", "member", "", "results", mk_results(f)); }

static ibex_compare_result *run_cmp(const fx *fa, const fx *fb, const ibex_compare_opts *o) {
    json_t *a = mk_run(fa), *b = mk_run(fb);
    ibex_compare_opts d = ibex_compare_opts_default();
    ibex_err err = {0};
    ibex_compare_result *r = ibex_compare_runs(a, b, o ? o : &d, &err);
    cr_assert_not_null(r, "%s", err.msg);
    json_decref(a), json_decref(b);
    return r;
}

static const ibex_compare_row *row(const ibex_compare_result *r, const char *point, const char *metric) {
    for (size_t i = 0; i < r->n_rows; i++)
        if (!strcmp(r->rows[i].point, point) && !strcmp(r->rows[i].metric, metric)) return &r->rows[i];
    cr_assert_fail("no row %s / %s", point, metric);
    return NULL;
}

/* ---------------------------------------------------------------- Mann–Whitney */

Test(compare, min_p_matches_complete_separation) {
    cr_assert_gt(ibex_mann_whitney_min_p(3, 3), 0.05, "3 vs 3 can never reach 0.05");
    cr_assert_lt(ibex_mann_whitney_min_p(4, 4), 0.05);
    cr_assert_float_eq(ibex_mann_whitney_min_p(5, 5), 0.0122, 5e-4);
    cr_assert_eq(ibex_mann_whitney_min_p(0, 9), 1.0);
    /* the bound is what the test itself returns on fully separated samples */
    double a[6] = {1, 2, 3, 4, 5, 6}, b[7] = {10, 11, 12, 13, 14, 15, 16};
    ibex_mann_whitney m;
    cr_assert_eq(ibex_mann_whitney_compute(a, 6, b, 7, &m, NULL), IBEX_OK);
    cr_assert_float_eq(m.p, ibex_mann_whitney_min_p(6, 7), 1e-12);
}

/* ---------------------------------------------------------------- decisions */

Test(compare, same_runs_pass) {
    fx f = fx_default();
    ibex_compare_result *r = run_cmp(&f, &f, NULL);
    cr_assert_eq(r->n_matched, 2);
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    cr_assert_eq(r->n_regressions + r->n_changed + r->n_inconclusive, 0);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_PASS);
    cr_assert_eq(row(r, "paged", "kv.peak_reserved")->verdict, IBEX_CMP_PASS);
    cr_assert_eq(row(r, "paged", "ops.decode.matmul.flops")->kind, IBEX_CMP_COUNTER);
    ibex_compare_free(r);
}

Test(compare, every_timing_25pct_slower_fails_naming_metrics) {
    fx a = fx_default(), b = fx_default();
    b.slow = 1.25;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(ibex_compare_exit_code(r), 1);
    static const char *const m[] = {"wall_s", "output_tok_per_s", "prefill_s", "decode_s", "ttft_p50", "ops.decode.matmul"};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        const ibex_compare_row *w = row(r, "contiguous", m[i]);
        cr_assert_eq(w->verdict, IBEX_CMP_REGRESSION, "%s: %s", m[i], ibex_cmp_verdict_name(w->verdict));
        cr_assert_lt(w->p, 0.05);
    }
    cr_assert_float_eq(row(r, "contiguous", "wall_s")->change, 0.25, 1e-9);
    cr_assert_eq(r->n_regressions, 12, "6 timings x 2 points, got %zu", r->n_regressions);
    cr_assert_eq(r->n_changed, 0);
    char *txt = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&txt, &len);
    cr_assert_eq(ibex_compare_markdown(r, f, NULL), IBEX_OK);
    fclose(f);
    cr_assert_not_null(strstr(txt, "**FAIL**"));
    cr_assert_not_null(strstr(txt, "- paged: output_tok_per_s (REGRESSION)"), "%s", txt);
    free(txt);
    ibex_compare_free(r);
}

Test(compare, faster_is_improved_not_regression) {
    fx a = fx_default(), b = fx_default();
    b.slow = 0.8; /* times lower, tok/s higher: both better */
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_IMPROVED);
    cr_assert_eq(row(r, "contiguous", "output_tok_per_s")->verdict, IBEX_CMP_IMPROVED);
    ibex_compare_free(r);
}

Test(compare, significant_but_below_floor_passes) {
    fx a = fx_default(), b = fx_default();
    a.spread = b.spread = 0.001;
    b.slow = 1.03; /* fully separated (p ~ 4e-4) but 3 % < 5 % */
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    const ibex_compare_row *w = row(r, "contiguous", "wall_s");
    cr_assert_lt(w->p, 0.05);
    cr_assert_eq(w->verdict, IBEX_CMP_PASS);
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    ibex_compare_opts o = ibex_compare_opts_default();
    o.threshold = 0.02;
    ibex_compare_free(r);
    r = run_cmp(&a, &b, &o);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_REGRESSION, "a 2 %% floor catches 3 %%");
    ibex_compare_free(r);
}

Test(compare, big_but_not_significant_passes) {
    fx a = fx_default(), b = fx_default();
    a.spread = b.spread = 0.5; /* overlapping samples: 1..5 vs 1.1..5.4 */
    b.slow = 1.1;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    const ibex_compare_row *w = row(r, "contiguous", "wall_s");
    cr_assert_gt(w->change, 0.05);
    cr_assert_geq(w->p, 0.05);
    cr_assert_eq(w->verdict, IBEX_CMP_PASS);
    ibex_compare_free(r);
}

Test(compare, too_few_repetitions_are_inconclusive) {
    fx a = fx_default(), b = fx_default();
    a.reps = b.reps = 3;
    b.slow = 1.5;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    const ibex_compare_row *w = row(r, "contiguous", "wall_s");
    cr_assert_eq(w->verdict, IBEX_CMP_INCONCLUSIVE);
    cr_assert_not_null(strstr(w->note, "too few repetitions"), "%s", w->note);
    cr_assert_eq(r->n_regressions, 0);
    cr_assert_gt(r->n_inconclusive, 0);
    ibex_compare_free(r);
}

Test(compare, noisy_side_is_inconclusive) {
    fx a = fx_default(), b = fx_default();
    b.slow = 1.25, b.noisy = true;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_INCONCLUSIVE);
    cr_assert_eq(row(r, "contiguous", "decode_s")->verdict, IBEX_CMP_REGRESSION, "only wall_s is marked noisy");
    ibex_compare_free(r);
    ibex_compare_opts o = ibex_compare_opts_default();
    o.ignore_noise = true;
    r = run_cmp(&a, &b, &o);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_REGRESSION);
    ibex_compare_free(r);
}

Test(compare, busy_side_makes_every_timing_inconclusive) {
    fx a = fx_default(), b = fx_default();
    b.slow = 1.25, b.busy = true, b.peak_delta = 1;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_INCONCLUSIVE);
    cr_assert_eq(row(r, "paged", "ops.decode.matmul")->verdict, IBEX_CMP_INCONCLUSIVE);
    cr_assert_eq(r->n_regressions, 0);
    cr_assert_eq(ibex_compare_exit_code(r), 1, "counters are still strict on a busy machine");
    ibex_compare_free(r);
}

/* ---------------------------------------------------------------- counters */

Test(compare, kv_counter_off_by_one_fails_naming_it) {
    fx a = fx_default(), b = fx_default();
    b.peak_delta = 1;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(ibex_compare_exit_code(r), 1);
    cr_assert_eq(r->n_changed, 1);
    cr_assert_eq(r->n_regressions, 0);
    const ibex_compare_row *w = row(r, "contiguous", "kv.peak_reserved");
    cr_assert_eq(w->verdict, IBEX_CMP_CHANGED);
    cr_assert_str_eq(w->note, "differs by +1");
    cr_assert_eq(row(r, "paged", "kv.peak_reserved")->verdict, IBEX_CMP_PASS);
    ibex_compare_free(r);
    ibex_compare_opts o = ibex_compare_opts_default();
    o.allow = "kv.pool_bytes,kv.peak_*";
    r = run_cmp(&a, &b, &o);
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    cr_assert_eq(row(r, "contiguous", "kv.peak_reserved")->verdict, IBEX_CMP_ALLOWED);
    ibex_compare_free(r);
}

Test(compare, metrics_filter) {
    fx a = fx_default(), b = fx_default();
    b.slow = 1.25, b.peak_delta = 1;
    ibex_compare_opts o = ibex_compare_opts_default();
    o.metrics = "ops.decode.*";
    ibex_compare_result *r = run_cmp(&a, &b, &o);
    for (size_t i = 0; i < r->n_rows; i++) cr_assert_eq(strncmp(r->rows[i].metric, "ops.decode.", 11), 0, "%s", r->rows[i].metric);
    cr_assert_eq(r->n_changed, 0);
    cr_assert_eq(r->n_regressions, 2, "ops.decode.matmul on both points");
    ibex_compare_free(r);
}

Test(compare, instructions_gate) {
    fx a = fx_default(), b = fx_default();
    a.instr = 1e9, b.instr = 1.02e9;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(row(r, "contiguous", "instructions")->verdict, IBEX_CMP_REGRESSION);
    cr_assert_eq(ibex_compare_exit_code(r), 1);
    ibex_compare_free(r);
    b.instr = 1.005e9;
    r = run_cmp(&a, &b, NULL);
    cr_assert_eq(row(r, "contiguous", "instructions")->verdict, IBEX_CMP_PASS);
    ibex_compare_free(r);
    b.instr = 2e9, b.scope = "ibex_engine_step"; /* counted over another scope: not comparable */
    r = run_cmp(&a, &b, NULL);
    cr_assert_eq(row(r, "contiguous", "instructions")->verdict, IBEX_CMP_INCONCLUSIVE);
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    ibex_compare_free(r);
}

/* ---------------------------------------------------------------- matching, provenance */

Test(compare, matches_by_params_not_index) {
    fx a = fx_default(), b = fx_default();
    b.reversed = true;
    b.reps = 7; /* "repeat" does not take part in matching */
    b.slow = 1.25;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(r->n_matched, 2);
    cr_assert_eq(r->n_unmatched_base + r->n_unmatched_new, 0);
    /* matched by index, contiguous would meet paged's equal data; by params the
     * counters still agree and only the slowdown shows */
    cr_assert_eq(r->n_changed, 0);
    cr_assert_eq(row(r, "paged", "wall_s")->verdict, IBEX_CMP_REGRESSION);
    ibex_compare_free(r);
}

Test(compare, unmatched_points_reported_and_nothing_matched_is_2) {
    fx a = fx_default(), b = fx_default();
    b.other = "none";
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    cr_assert_eq(r->n_matched, 1);
    cr_assert_eq(r->n_unmatched_base, 1);
    cr_assert_str_eq(r->unmatched_base[0], "paged");
    cr_assert_str_eq(r->unmatched_new[0], "none");
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    ibex_compare_free(r);
    json_t *empty = json_pack("[{s:s,s:{s:i,s:[]}}]", "member", "", "results", "schema_version", 1, "points");
    json_t *ra = mk_run(&a);
    ibex_compare_opts o = ibex_compare_opts_default();
    r = ibex_compare_runs(ra, empty, &o, NULL);
    cr_assert_eq(ibex_compare_exit_code(r), 2);
    ibex_compare_free(r);
    json_decref(empty), json_decref(ra);
}

Test(compare, other_machine_makes_timings_informative_under_auto) {
    fx a = fx_default(), b = fx_default();
    b.slow = 1.25, b.cpu = "Other CPU", b.peak_delta = 0;
    ibex_compare_opts o = ibex_compare_opts_default();
    o.timings = IBEX_CMP_TIMINGS_AUTO;
    ibex_compare_result *r = run_cmp(&a, &b, &o);
    cr_assert(r->timings_informative);
    cr_assert_eq(row(r, "contiguous", "wall_s")->verdict, IBEX_CMP_REGRESSION);
    cr_assert_eq(r->n_regressions, 0, "informative regressions do not fail");
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    bool warned = false;
    for (size_t i = 0; i < r->n_warnings; i++) warned |= strstr(r->warnings[i], "cpu_model differs") != NULL;
    cr_assert(warned);
    ibex_compare_free(r);
    b.peak_delta = 1; /* counters stay strict on any machine */
    r = run_cmp(&a, &b, &o);
    cr_assert_eq(ibex_compare_exit_code(r), 1);
    ibex_compare_free(r);
    b.cpu = "Test CPU", b.peak_delta = 0; /* same machine: auto is strict */
    r = run_cmp(&a, &b, &o);
    cr_assert_not(r->timings_informative);
    cr_assert_eq(ibex_compare_exit_code(r), 1);
    ibex_compare_free(r);
}

/* ---------------------------------------------------------------- loading */

static void write_results(const char *dir, const fx *f) {
    mkdir(dir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/results.json", dir);
    json_t *j = mk_results(f);
    cr_assert_eq(json_dump_file(j, p, 0), 0);
    json_decref(j);
}

Test(compare, load_file_folder_and_suite) {
    char root[256], d[512];
    snprintf(root, sizeof root, "%s/compare_load", IBEX_TEST_TMPDIR);
    mkdir(root, 0755);
    fx f = fx_default();
    snprintf(d, sizeof d, "%s/suite", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/suite/beta", root);
    write_results(d, &f);
    snprintf(d, sizeof d, "%s/suite/alpha", root);
    write_results(d, &f);
    ibex_err err = {0};
    json_t *s = ibex_compare_load(d, &err); /* a run folder */
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(json_array_size(s), 1);
    json_decref(s);
    snprintf(d, sizeof d, "%s/suite/alpha/results.json", root); /* the file */
    s = ibex_compare_load(d, &err);
    cr_assert_not_null(s, "%s", err.msg);
    json_decref(s);
    snprintf(d, sizeof d, "%s/suite", root); /* the suite: two members in name order */
    s = ibex_compare_load(d, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(json_array_size(s), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(s, 0), "member")), "alpha");
    ibex_compare_opts o = ibex_compare_opts_default();
    ibex_compare_result *r = ibex_compare_runs(s, s, &o, &err);
    cr_assert_eq(r->n_matched, 4);
    (void)row(r, "beta: paged", "wall_s");
    ibex_compare_free(r);
    json_decref(s);
    snprintf(d, sizeof d, "%s/nothing-here", root);
    cr_assert_null(ibex_compare_load(d, &err));
    cr_assert_not_null(strstr(err.msg, "nothing-here"), "%s", err.msg);
}

Test(compare, json_output_has_rows_and_exit_code) {
    fx a = fx_default(), b = fx_default();
    b.peak_delta = 1;
    ibex_compare_result *r = run_cmp(&a, &b, NULL);
    json_t *j = ibex_compare_to_json(r);
    cr_assert_not_null(j);
    cr_assert_eq(json_integer_value(json_object_get(j, "exit_code")), 1);
    cr_assert_eq(json_array_size(json_object_get(j, "rows")), r->n_rows);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "summary"), "changed_counters")), 1);
    json_decref(j);
    ibex_compare_free(r);
}

/* ---------------------------------------------------------------- multiplicity */

/* Adds 30 per-op times to every repetition of run (as ibex_compare_load returns it); op0
 * of every point is multiplied by op0_slow. */
static void add_ops(json_t *run, double op0_slow) {
    json_t *pts = json_object_get(json_object_get(json_array_get(run, 0), "results"), "points");
    size_t i, k;
    json_t *p, *rep;
    json_array_foreach(pts, i, p) {
        json_array_foreach(json_object_get(p, "repetitions"), k, rep) {
            json_t *dec = json_object_get(json_object_get(rep, "ops"), "decode");
            for (int j = 0; j < 30; j++) {
                char name[16];
                snprintf(name, sizeof name, "op%d", j);
                json_object_set_new(dec, name, json_real(100.0 * (1.0 + 0.02 * (double)k) * (j == 0 ? op0_slow : 1.0)));
            }
        }
    }
}

static ibex_compare_result *run_ops_cmp(double op0_slow) {
    fx f = fx_default();
    json_t *a = mk_run(&f), *b = mk_run(&f);
    add_ops(a, 1.0), add_ops(b, op0_slow);
    ibex_compare_opts o = ibex_compare_opts_default();
    ibex_err err = {0};
    ibex_compare_result *r = ibex_compare_runs(a, b, &o, &err);
    cr_assert_not_null(r, "%s", err.msg);
    json_decref(a), json_decref(b);
    return r;
}

/* One op of 31 moved by 7 % (repetitions 2 % apart, so the samples overlap): p below
 * 0.05 but above Holm's 0.05/31; alone it must not fail the gate. A 25 % move of the
 * same op (complete separation) still does. */
Test(compare, op_times_are_corrected_for_multiplicity) {
    ibex_compare_result *r = run_ops_cmp(1.07);
    const ibex_compare_row *w = row(r, "contiguous", "ops.decode.op0");
    cr_assert(w->p < 0.05 && w->p > 0.05 / 31, "fixture: p %g must lie between alpha/31 and alpha", w->p);
    cr_assert_eq(w->verdict, IBEX_CMP_PASS, "%s: %s", ibex_cmp_verdict_name(w->verdict), w->note);
    cr_assert_not_null(strstr(w->note, "Holm"), "%s", w->note);
    cr_assert_eq(r->n_regressions, 0);
    cr_assert_eq(ibex_compare_exit_code(r), 0);
    ibex_compare_free(r);
    r = run_ops_cmp(1.25);
    w = row(r, "contiguous", "ops.decode.op0");
    cr_assert_eq(w->verdict, IBEX_CMP_REGRESSION, "p %g: %s", w->p, ibex_cmp_verdict_name(w->verdict));
    cr_assert_eq(r->n_regressions, 2, "op0 of both points, got %zu", r->n_regressions);
    cr_assert_eq(ibex_compare_exit_code(r), 1);
    ibex_compare_free(r);
}
