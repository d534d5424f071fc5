/* test_reports.c — tests of reports/: results.csv (header, rows, quoting, round trip),
 * report.md (tables, formulas, fitted exponents), the plot plan and its readings,
 * gnuplot rendering (skipped without gnuplot), the loader's errors and tolerance of
 * missing optional keys. The results.json inputs are built by hand here: prefill
 * attention takes exactly c * n^2 ns and the other ops exactly d * n ns. */
#include <criterion/criterion.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reports/reports.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

#define N_PTS 4
static const int k_prompt[N_PTS] = {128, 256, 512, 1024};
#define REPS 3
#define ATT_C 10.0   /* attention ns per repetition = ATT_C * n^2 */
#define OTHER_D 5000 /* other ops ns per repetition = OTHER_D * n */

static const char *k_formula_ttft = "TTFT = t_1 - t_a (includes queueing and prefill)";
static const char *k_formula_out = "output throughput = sum output tokens / W";

/* ---------------------------------------------------------------- fixtures */

static json_t *summary(double base)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "count", 8, "mean", base, "sd", base / 10, "min",
                     base * 0.9, "max", base * 1.2, "p50", base, "p90", base * 1.1, "p99", base * 1.2);
}

static json_t *op(double ns, double flops, double bytes)
{
    return json_pack("{s:f, s:i, s:f, s:f}", "ns", ns, "calls", 12, "flops", flops, "bytes", bytes);
}

static json_t *raw_samples(double base, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(base * (1.0 + 0.05 * i)));
    return a;
}

/* Point i of the prompt sweep; policy may be NULL (not swept). */
static json_t *make_point(int i, int n, const char *policy, double util)
{
    char label[128], nstr[32];
    snprintf(nstr, sizeof nstr, "%d", n);
    if (policy)
        snprintf(label, sizeof label, "workload.prompt_tokens=%d kv.policy=%s", n, policy);
    else
        snprintf(label, sizeof label, "workload.prompt_tokens=%d", n);
    double att = ATT_C * (double)n * n * REPS, other = (double)OTHER_D * n * REPS;
    json_t *swept = json_pack("{s:s}", "workload.prompt_tokens", nstr);
    if (policy)
        json_object_set_new(swept, "kv.policy", json_string(policy));
    json_t *pt = json_pack("{s:i, s:s, s:s, s:n, s:o}", "index", i, "label", label, "status", "ok", "error",
                           "swept", swept);
    json_object_set_new(pt, "params",
                        json_pack("{s:s, s:s, s:i, s:s, s:i, s:i, s:{s:s, s:i}}", "model", "synthetic:small",
                                  "backend", "cpu", "threads", 2, "weights", "F16", "warmup", 1, "repeat", REPS,
                                  "workload.prompt_tokens", "dist", "fixed", "value", n));
    json_object_set_new(pt, "model",
                        json_pack("{s:s, s:I, s:I}", "name", "synthetic:small", "n_params", (json_int_t)134217728,
                                  "weight_bytes", (json_int_t)268435456));
    json_t *m = json_object();
    json_object_set_new(m, "wall_s", json_real(0.25 + 0.1 * i));
    json_object_set_new(m, "ttft", summary(0.01 * (i + 1)));
    json_object_set_new(m, "tpot", summary(0.002));
    json_object_set_new(m, "itl", summary(0.002));
    json_object_set_new(m, "e2e", summary(0.05 * (i + 1)));
    json_object_set_new(m, "output_tok_per_s", json_real(100.0 + i));
    json_object_set_new(m, "total_tok_per_s", json_real(300.5 + i));
    json_object_set_new(m, "req_per_s", json_real(2.0));
    json_object_set_new(m, "goodput_req_per_s", json_real(2.0));
    json_object_set_new(m, "prefill_tok_per_s", json_real(1500.0));
    json_object_set_new(m, "decode_tok_per_s", json_real(140.0));
    json_object_set_new(m, "prefill_s", json_real((att + other) / REPS * 1e-9));
    json_object_set_new(m, "decode_s", json_real(0.5));
    json_object_set_new(m, "decode_ms_per_token", json_real(7.0 * pow(n / 128.0, 0.1)));
    json_object_set_new(m, "steps", json_integer(65));
    json_object_set_new(pt, "metrics", m);
    json_object_set_new(pt, "kv",
                        json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:i, s:i}", "policy", policy ? policy : "none",
                                  "block_size", 16, "pool_bytes", (json_int_t)268435456, "peak_reserved",
                                  (json_int_t)(1000 + i), "peak_used", (json_int_t)900, "utilisation_mean", util,
                                  "max_concurrent", policy && strcmp(policy, "paged") == 0 ? 8 : 2, "preemptions",
                                  0));
    json_object_set_new(pt, "memory",
                        json_pack("{s:I, s:I, s:I, s:I}", "weights", (json_int_t)268435456, "kv_peak_reserved",
                                  (json_int_t)1000, "activations_peak", (json_int_t)5000000, "process_peak_rss",
                                  (json_int_t)400000000));
    json_object_set_new(
        pt, "ops",
        json_pack("{s:{s:o, s:o}, s:{s:o, s:o}}", "prefill", "attention", op(att, 4.0 * n * n, 1e6), "matmul_qkv",
                  op(other, 2e9, 3e8), "decode", "attention", op(1e6, 1e6, 1e6), "matmul_qkv", op(2e6, 2e9, 3e8)));
    json_object_set_new(pt, "sampler", json_pack("{s:f, s:i}", "ns_per_token", 130000.0, "calls", 248));
    json_t *reps = json_array();
    for (int r = 0; r < REPS; r++)
        json_array_append_new(reps, json_pack("{s:f}", "wall_s", 0.25));
    json_object_set_new(pt, "repetitions", reps);
    json_object_set_new(pt, "raw",
                        json_pack("{s:o, s:o, s:o, s:o}", "ttft", raw_samples(0.01 * (i + 1), 8), "tpot",
                                  raw_samples(0.002, 8), "itl", raw_samples(0.002, 20), "e2e",
                                  raw_samples(0.05 * (i + 1), 8)));
    return pt;
}

static json_t *make_results_swept(int npts, bool with_policy)
{
    json_t *r = json_pack("{s:i, s:{s:s, s:s, s:s}, s:{s:s, s:i, s:I, s:n}, s:s, s:b}", "schema_version", 1, "ibex",
                          "version", "0.1.0", "commit", "abc123def456", "build_type", "Release", "machine", "cpu",
                          "Test CPU", "cores", 2, "memory_bytes", (json_int_t)25769803776LL, "gpu", "timestamp",
                          "2026-11-24T20:55:00Z", "complete", 1);
    json_t *swept = json_pack("[s]", "workload.prompt_tokens");
    if (with_policy)
        json_array_append_new(swept, json_string("kv.policy"));
    json_object_set_new(r, "scenario",
                        json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", "quadratic", "path", "scenarios/quadratic.yaml",
                                  "description", "Prefill cost against prompt length.", "quick", 0, "swept", swept));
    json_object_set_new(r, "metric_definitions",
                        json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "name", "TTFT", "formula", k_formula_ttft,
                                  "unit", "s", "name", "output throughput", "formula", k_formula_out, "unit",
                                  "tokens/s"));
    json_t *pts = json_array();
    int idx = 0;
    for (int i = 0; i < npts; i++) {
        if (with_policy) {
            json_array_append_new(pts, make_point(idx++, k_prompt[i], "contiguous", 0.17));
            json_array_append_new(pts, make_point(idx++, k_prompt[i], "paged", 0.979));
        } else {
            json_array_append_new(pts, make_point(idx++, k_prompt[i], NULL, 0.5));
        }
    }
    json_object_set_new(r, "points", pts);
    return r;
}

static json_t *make_results(void) { return make_results_swept(N_PTS, false); }

/* A fresh directory under IBEX_TEST_TMPDIR; buf receives its path. */
static void make_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "%s/reports-XXXXXX", IBEX_TEST_TMPDIR);
    cr_assert_not_null(mkdtemp(buf), "mkdtemp %s", buf);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* The whole file as a malloc'd string (NULL when unreadable); *len receives its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    size_t got = fread(b, 1, (size_t)sz, f);
    fclose(f);
    b[got] = '\0';
    if (len)
        *len = got;
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Output of a writer into a malloc'd string. */
typedef ibex_status (*writer_fn)(const json_t *, FILE *, ibex_err *);
static char *capture(writer_fn fn, const json_t *r, ibex_status *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ibex_err e = {0};
    *st = fn(r, f, &e);
    fclose(f);
    return buf;
}

__attribute__((noinline)) static char *capture_md(const json_t *r, const ibex_report_plots *p, ibex_status *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ibex_err e = {0};
    *st = ibex_report_markdown(r, p, f, &e);
    fclose(f);
    return buf;
}

/* ---------------------------------------------------------------- a CSV reader */

#define MAX_ROWS 16
#define MAX_FIELDS 64
typedef struct csv {
    size_t nrows;
    size_t nf[MAX_ROWS];
    char *f[MAX_ROWS][MAX_FIELDS];
} csv;

/* RFC 4180 parse of text into rows of fields; fails the test on malformed text. */
static void csv_parse(const char *s, csv *c)
{
    memset(c, 0, sizeof *c);
    while (*s) {
        cr_assert_lt(c->nrows, MAX_ROWS);
        size_t r = c->nrows++;
        for (;;) {
            char field[2048];
            size_t k = 0;
            if (*s == '"') {
                s++;
                for (;;) {
                    cr_assert_neq(*s, '\0', "unterminated quoted field");
                    if (*s == '"' && s[1] == '"') {
                        field[k++] = '"';
                        s += 2;
                    } else if (*s == '"') {
                        s++;
                        break;
                    } else {
                        field[k++] = *s++;
                    }
                }
            } else {
                while (*s && *s != ',' && *s != '\n')
                    field[k++] = *s++;
            }
            field[k] = '\0';
            cr_assert_lt(c->nf[r], MAX_FIELDS);
            c->f[r][c->nf[r]++] = strdup(field);
            if (*s == ',') {
                s++;
                continue;
            }
            cr_assert_eq(*s, '\n', "row %zu does not end with a newline", r);
            s++;
            break;
        }
    }
}

static void csv_free(csv *c)
{
    for (size_t r = 0; r < c->nrows; r++)
        for (size_t k = 0; k < c->nf[r]; k++)
            free(c->f[r][k]);
}

static int csv_col(const csv *c, const char *name)
{
    for (size_t k = 0; k < c->nf[0]; k++)
        if (strcmp(c->f[0][k], name) == 0)
            return (int)k;
    cr_assert_fail("no CSV column %s", name);
    return -1;
}

/* ---------------------------------------------------------------- CSV */

Test(reports, csv_header_and_rows)
{
    json_t *r = make_results();
    ibex_status st;
    char *text = capture(ibex_report_csv, r, &st);
    cr_assert_eq(st, IBEX_OK);
    csv c;
    csv_parse(text, &c);
    static const char *expect[] = {"index", "label", "status", "workload.prompt_tokens", "wall_s",
                                   "output_tok_per_s", "total_tok_per_s", "req_per_s", "goodput_req_per_s",
                                   "prefill_tok_per_s", "decode_tok_per_s", "decode_ms_per_token", "ttft_p50",
                                   "ttft_p90", "ttft_p99", "tpot_p50", "tpot_p90", "tpot_p99", "itl_p50", "itl_p99",
                                   "e2e_p50", "e2e_p99", "kv_peak_reserved", "kv_peak_used", "kv_utilisation_mean",
                                   "kv_max_concurrent", "kv_preemptions", "memory_weights",
                                   "memory_process_peak_rss", "error"};
    size_t ne = sizeof expect / sizeof expect[0];
    cr_assert_eq(c.nf[0], ne, "header has %zu fields, want %zu", c.nf[0], ne);
    for (size_t k = 0; k < ne; k++)
        cr_assert_str_eq(c.f[0][k], expect[k]);
    cr_assert_eq(c.nrows, 1 + N_PTS);
    int cw = csv_col(&c, "wall_s"), ct = csv_col(&c, "ttft_p99"), ck = csv_col(&c, "kv_peak_reserved"),
        cp = csv_col(&c, "workload.prompt_tokens"), cu = csv_col(&c, "kv_utilisation_mean");
    for (int i = 0; i < N_PTS; i++) {
        char **row = c.f[1 + i];
        cr_assert_eq(c.nf[1 + i], ne, "row %d has %zu fields", i, c.nf[1 + i]);
        char want[64];
        snprintf(want, sizeof want, "%d", i);
        cr_assert_str_eq(row[0], want);
        snprintf(want, sizeof want, "workload.prompt_tokens=%d", k_prompt[i]);
        cr_assert_str_eq(row[1], want);
        cr_assert_str_eq(row[2], "ok");
        snprintf(want, sizeof want, "%d", k_prompt[i]);
        cr_assert_str_eq(row[cp], want);
        /* Reals parse back exactly; integers are printed exactly. */
        cr_assert_eq(strtod(row[cw], NULL), 0.25 + 0.1 * i, "wall_s %s", row[cw]);
        cr_assert_eq(strtod(row[ct], NULL), 0.01 * (i + 1) * 1.2, "ttft_p99 %s", row[ct]);
        snprintf(want, sizeof want, "%d", 1000 + i);
        cr_assert_str_eq(row[ck], want);
        cr_assert_str_eq(row[cu], "0.5");
        cr_assert_str_eq(row[ne - 1], "", "error is empty for ok points");
    }
    csv_free(&c);
    free(text);
    json_decref(r);
}

Test(reports, csv_quotes_and_missing_values)
{
    json_t *r = make_results_swept(1, false);
    json_t *bad = json_pack("{s:i, s:s, s:s, s:s, s:{s:s}}", "index", 1, "label", " lead, \"quoted\"", "status",
                            "error", "error", "out of memory, \"KV\"\nline two", "swept", "workload.prompt_tokens",
                            "2048");
    json_array_append_new(json_object_get(r, "points"), bad);
    ibex_status st;
    char *text = capture(ibex_report_csv, r, &st);
    cr_assert_eq(st, IBEX_OK);
    csv c;
    csv_parse(text, &c);
    cr_assert_eq(c.nrows, 3);
    cr_assert_eq(c.nf[2], c.nf[0]);
    cr_assert_str_eq(c.f[2][1], " lead, \"quoted\"");
    cr_assert_str_eq(c.f[2][2], "error");
    cr_assert_str_eq(c.f[2][c.nf[0] - 1], "out of memory, \"KV\"\nline two");
    cr_assert_str_eq(c.f[2][csv_col(&c, "wall_s")], "");
    cr_assert_str_eq(c.f[2][csv_col(&c, "ttft_p50")], "");
    cr_assert_str_eq(c.f[2][csv_col(&c, "workload.prompt_tokens")], "2048");
    cr_assert(strstr(text, "\"out of memory, \"\"KV\"\"\nline two\"") != NULL, "RFC 4180 quoting:\n%s", text);
    csv_free(&c);
    free(text);
    json_decref(r);
}

/* ---------------------------------------------------------------- fit */

Test(reports, power_fit_exact_and_degenerate)
{
    double x[5] = {128, 256, 512, 1024, 2048}, y[5], a, b, r2;
    for (int i = 0; i < 5; i++)
        y[i] = 3.5 * x[i] * x[i];
    cr_assert(ibex_report_power_fit(x, y, 5, &a, &b, &r2));
    cr_assert_float_eq(b, 2.0, 1e-12);
    cr_assert_float_eq(a, 3.5, 1e-9);
    cr_assert_float_eq(r2, 1.0, 1e-12);
    /* Noisy data: R² below 1, exponent near 1. */
    double yn[5] = {100, 210, 390, 820, 1590};
    cr_assert(ibex_report_power_fit(x, yn, 5, NULL, &b, &r2));
    cr_assert(b > 0.95 && b < 1.05, "b = %g", b);
    cr_assert(r2 < 1.0 && r2 > 0.99, "r2 = %g", r2);
    /* Non-positive points are skipped, not fitted. */
    double yz[5] = {0, 2 * 256.0, -1, 2 * 1024.0, 2 * 2048.0};
    cr_assert(ibex_report_power_fit(x, yz, 5, NULL, &b, NULL));
    cr_assert_float_eq(b, 1.0, 1e-12);
    double same[3] = {5, 5, 5};
    b = 42;
    cr_assert_not(ibex_report_power_fit(same, y, 3, NULL, &b, NULL));
    cr_assert_eq(b, 42, "outputs untouched on failure");
    cr_assert_not(ibex_report_power_fit(x, y, 1, NULL, &b, NULL));
}

/* ---------------------------------------------------------------- plots and readings */

static size_t find_plot(const ibex_report_plots *p, const char *name)
{
    for (size_t i = 0; i < ibex_report_plots_count(p); i++)
        if (strcmp(ibex_report_plot_name(p, i), name) == 0)
            return i;
    cr_assert_fail("no plot %s", name);
    return 0;
}

Test(reports, plan_prompt_sweep_fits_quadratic_attention)
{
    json_t *r = make_results();
    ibex_err e = {0};
    ibex_report_plots *p = ibex_report_plots_plan(r, &e);
    cr_assert_not_null(p, "%s", e.msg);
    const char *reading = ibex_report_plot_reading(p, find_plot(p, "prefill_scaling"));
    cr_assert(strstr(reading, "attention alone as n^2.00 (R² 1.000)") != NULL, "%s", reading);
    cr_assert(strstr(reading, "the other ops as n^1.00") != NULL, "%s", reading);
    cr_assert(strstr(reading, "over 128..1024 prompt tokens") != NULL, "%s", reading);
    /* At 1024 tokens: attention 10 * 1024^2 vs other 5000 * 1024 ns: 10485760 / 15605760. */
    char want[64];
    snprintf(want, sizeof want, "attention is %.1f%%", 100.0 * 10485760.0 / (10485760.0 + 5120000.0));
    cr_assert(strstr(reading, want) != NULL, "want '%s' in: %s", want, reading);
    /* Decode per token follows n^0.1 exactly. */
    const char *dr = ibex_report_plot_reading(p, find_plot(p, "decode_vs_prompt"));
    cr_assert(strstr(dr, "n^0.10") != NULL, "%s", dr);
    cr_assert(strstr(dr, "Median time of one decode step (decode_s / decode steps)") != NULL, "%s", dr);
    cr_assert(strstr(dr, "7 ms per decode step at 128 prompt tokens") != NULL, "%s", dr);
    find_plot(p, "cdf_ttft");
    find_plot(p, "cdf_itl");
    ibex_report_plots_free(p);
    json_decref(r);
}

Test(reports, plan_kv_policy_reading)
{
    json_t *r = make_results_swept(2, true);
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    const char *reading = ibex_report_plot_reading(p, find_plot(p, "kv_utilisation"));
    cr_assert(strstr(reading, "contiguous keeps 17.0% of reserved KV in use on average vs 97.9% for paged") != NULL,
              "%s", reading);
    cr_assert(strstr(reading, "contiguous 2; paged 8") != NULL, "%s", reading);
    find_plot(p, "kv_memory");
    /* Two prefill groups, one per policy. */
    reading = ibex_report_plot_reading(p, find_plot(p, "prefill_scaling"));
    cr_assert(strstr(reading, "kv.policy=contiguous: prefill time grows as n^") != NULL, "%s", reading);
    cr_assert(strstr(reading, "kv.policy=paged: prefill time grows as n^") != NULL, "%s", reading);
    ibex_report_plots_free(p);
    json_decref(r);
}

/* ---------------------------------------------------------------- plot selection */

/* A bare results.json with the given swept keys (NULL-terminated) and no points. */
static json_t *make_run(const char *name, const char *const *swept)
{
    json_t *sw = json_array();
    for (size_t k = 0; swept[k]; k++)
        json_array_append_new(sw, json_string(swept[k]));
    json_t *r = json_pack("{s:i, s:{s:s, s:o}, s:b, s:[]}", "schema_version", 1, "scenario", "name", name, "swept",
                          sw, "complete", 1, "points");
    return r;
}

/* Appends a point: swept values as "key", "value" string pairs (NULL-terminated),
 * params.compute, batch, policy, prompt and output tokens; metrics and KV as given. */
static json_t *add_point(json_t *r, bool compute, int batch, const char *policy, int prompt, int output,
                         const char *const *swept)
{
    json_t *pts = json_object_get(r, "points");
    size_t idx = json_array_size(pts);
    json_t *sw = json_object();
    char label[512] = "";
    for (size_t k = 0; swept[k]; k += 2) {
        json_object_set_new(sw, swept[k], json_string(swept[k + 1]));
        snprintf(label + strlen(label), sizeof label - strlen(label), "%s%s=%s", k ? " " : "", swept[k],
                 swept[k + 1]);
    }
    json_t *pt = json_pack("{s:i, s:s, s:s, s:o}", "index", (int)idx, "label", label, "status", "ok", "swept", sw);
    json_object_set_new(pt, "params",
                        json_pack("{s:b, s:i, s:s, s:s, s:i, s:{s:s, s:i}, s:{s:s, s:i}}", "compute", compute,
                                  "batch", batch, "kv.policy", policy, "kv.dtype", "f16", "repeat", 1,
                                  "workload.prompt_tokens", "dist", "fixed", "value", prompt,
                                  "workload.output_tokens", "dist", "fixed", "value", output));
    json_object_set_new(pt, "model", json_pack("{s:s, s:I}", "name", "synthetic:llama2-7b", "kv_bytes_per_token",
                                               (json_int_t)524288));
    json_object_set_new(pt, "metrics",
                        json_pack("{s:f, s:f, s:f, s:o, s:o}", "wall_s", 1e-4, "output_tok_per_s", 1e6,
                                  "decode_ms_per_token", 1e-3, "ttft", summary(1e-5), "tpot", summary(1e-6)));
    json_object_set_new(pt, "raw", json_pack("{s:o, s:o, s:o}", "ttft", raw_samples(1e-5, 4), "e2e",
                                             raw_samples(1e-4, 4), "itl", raw_samples(1e-6, 8)));
    json_array_append_new(pts, pt);
    return pt;
}

static void set_kv(json_t *pt, const char *policy, double reserved, double used, double util, int conc)
{
    json_object_set_new(pt, "kv",
                        json_pack("{s:s, s:f, s:f, s:f, s:f, s:i}", "policy", policy, "pool_bytes",
                                  80.0 * 1073741824.0, "peak_reserved", reserved, "peak_used", used,
                                  "utilisation_mean", util, "max_concurrent", conc));
}

/* Occurrences of needle in s. */
static size_t count_str(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (size_t i = 0; s[i]; i++)
        n += strncmp(s + i, needle, len) == 0;
    return n;
}

static bool has_plot(const ibex_report_plots *p, const char *name)
{
    for (size_t i = 0; i < ibex_report_plots_count(p); i++)
        if (strcmp(ibex_report_plot_name(p, i), name) == 0)
            return true;
    return false;
}

#define BPT 524288.0

/* kv_memory: prompt x policy x batch, accounting only. Contiguous reserves prompt +
 * output tokens per request, paged whole 16-token blocks; `output` tokens each. */
static json_t *make_kv_memory(int output)
{
    static const char *keys[] = {"workload.prompt_tokens", "kv.policy", "batch", NULL};
    json_t *r = make_run("kv_memory", keys);
    static const int prompts[] = {512, 1024, 2048};
    static const int batches[] = {1, 32};
    static const char *pols[] = {"contiguous", "paged"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            for (int b = 0; b < 2; b++) {
                char ps[16], bs[16];
                snprintf(ps, sizeof ps, "%d", prompts[i]);
                snprintf(bs, sizeof bs, "%d", batches[b]);
                const char *sw[] = {"workload.prompt_tokens", ps, "kv.policy", pols[j], "batch", bs, NULL};
                json_t *pt = add_point(r, false, batches[b], pols[j], prompts[i], output, sw);
                double toks = prompts[i] + output;
                double held = j == 0 ? toks : ceil(toks / 16.0) * 16.0;
                set_kv(pt, pols[j], batches[b] * held * BPT, batches[b] * (toks - 1) * BPT, j == 0 ? 0.9 : 0.99,
                       batches[b]);
            }
    return r;
}

Test(reports, accounting_only_points_get_no_timing_plots)
{
    json_t *r = make_kv_memory(64);
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    static const char *timing[] = {"prefill_scaling", "decode_vs_prompt", "cdf_ttft", "cdf_e2e", "cdf_itl",
                                   "throughput_vs_batch", "latency_vs_batch", "kv_utilisation", "kv_memory"};
    for (size_t k = 0; k < sizeof timing / sizeof timing[0]; k++)
        cr_assert_not(has_plot(p, timing[k]), "accounting-only run has plot %s", timing[k]);
    cr_assert_eq(ibex_report_plots_count(p), 2, "%zu plots", ibex_report_plots_count(p));
    cr_assert_str_eq(ibex_report_plot_name(p, 0), "kv_memory_vs_length");
    const char *rd = ibex_report_plot_reading(p, 0);
    cr_assert(strstr(rd, "exactly 524288 bytes (512 KiB)") != NULL, "%s", rd);
    char want[256];
    double res = 32.0 * 2112 * BPT;
    snprintf(want, sizeof want,
             "At 2048+64 tokens and batch 32, contiguous reserves 33.0 GiB (%.0f bytes = 32 x 2112 x 524288)", res);
    cr_assert(strstr(rd, want) != NULL, "want '%s' in: %s", want, rd);
    cr_assert(strstr(rd, "contiguous and paged reserve exactly the same bytes") != NULL, "%s", rd);
    const char *ru = ibex_report_plot_reading(p, find_plot(p, "kv_utilisation_vs_length"));
    cr_assert(strstr(ru, "contiguous: 90.0% on average") != NULL, "%s", ru);
    cr_assert(strstr(ru, "paged: 99.0% on average") != NULL, "%s", ru);

    /* report.md says it once, and re-renders to the same bytes. */
    ibex_status st;
    char *md = capture_md(r, p, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(md, "**Accounting only:** every point ran with `compute: false`") != NULL, "%s", md);
    cr_assert_eq(count_str(md, "Accounting only"), 1, "said once");
    char *md2 = capture_md(r, p, &st);
    cr_assert_str_eq(md, md2);
    free(md);
    free(md2);

    /* The script uses log2 axes with a tic at each length. */
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    ibex_err e = {0};
    cr_assert_eq(ibex_report_plots_render(p, dir, NULL, "off", &e), IBEX_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/kv_memory_vs_length.gp", dir);
    char *gp = slurp(path, NULL);
    cr_assert_not_null(gp);
    cr_assert(strstr(gp, "set logscale x 2\n") != NULL, "%s", gp);
    cr_assert(strstr(gp, "set xtics (576, 1088, 2112)\n") != NULL, "%s", gp);
    cr_assert(strstr(gp, " dt 2 lw 2 title 'contiguous batch=32 used'") != NULL, "%s", gp);
    free(gp);
    rm_tree(dir);
    ibex_report_plots_free(p);
    json_decref(r);
}

Test(reports, accounting_only_policies_compared_point_by_point)
{
    /* 60 output tokens: paged rounds each sequence up to whole 16-token blocks. */
    json_t *r = make_kv_memory(60);
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    const char *rd = ibex_report_plot_reading(p, find_plot(p, "kv_memory_vs_length"));
    char want[256];
    snprintf(want, sizeof want, "paged reserves x%.3f to x%.3f what contiguous reserves", 2112.0 / 2108.0,
             576.0 / 572.0);
    cr_assert(strstr(rd, want) != NULL, "want '%s' in: %s", want, rd);
    snprintf(want, sizeof want, "At 2048+60 tokens and batch 32, contiguous reserves");
    cr_assert(strstr(rd, want) != NULL, "%s", rd);
    snprintf(want, sizeof want, "paged reserves 33.0 GiB (%.0f bytes, x%.3f of 32 x 2108 x 524288)",
             32.0 * 2112 * BPT, 2112.0 / 2108.0);
    cr_assert(strstr(rd, want) != NULL, "want '%s' in: %s", want, rd);
    ibex_report_plots_free(p);
    json_decref(r);
}

/* naive_vs_cache: output tokens x policy none/contiguous. Wall time is exactly
 * c n^2 without a cache and d n with one; the time per token c' n and constant. */
static json_t *make_naive_vs_cache(void)
{
    static const char *keys[] = {"workload.output_tokens", "kv.policy", NULL};
    json_t *r = make_run("naive_vs_cache", keys);
    static const int ns[] = {32, 64, 128, 256};
    static const char *pols[] = {"none", "contiguous"};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) {
            char os[16];
            snprintf(os, sizeof os, "%d", ns[i]);
            const char *sw[] = {"workload.output_tokens", os, "kv.policy", pols[j], NULL};
            json_t *pt = add_point(r, true, 1, pols[j], 32, ns[i], sw);
            double n = ns[i];
            json_t *m = json_object_get(pt, "metrics");
            json_object_set_new(m, "wall_s", json_real(j == 0 ? 2e-5 * n * n : 1e-3 * n));
            json_object_set_new(m, "tpot", summary(j == 0 ? 4e-5 * n : 1e-3));
            set_kv(pt, pols[j], 1e6, 9e5, j == 0 ? NAN : 0.6, 1);
        }
    return r;
}

Test(reports, naive_vs_cache_fits_quadratic_and_linear_totals)
{
    json_t *r = make_naive_vs_cache();
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    cr_assert_str_eq(ibex_report_plot_name(p, 0), "total_time_vs_output");
    const char *rd = ibex_report_plot_reading(p, 0);
    cr_assert(strstr(rd, "kv.policy=none: total time grows as n^2.00 (R² 1.000) over 32..256 output tokens") != NULL,
              "%s", rd);
    cr_assert(strstr(rd, "kv.policy=contiguous: total time grows as n^1.00 (R² 1.000)") != NULL, "%s", rd);
    /* At n = 256: 2e-5 * 256^2 = 1.31 s vs 1e-3 * 256 = 256 ms. */
    char want[128];
    snprintf(want, sizeof want, "At n=256: none 1.31 s vs contiguous 256 ms, none/contiguous = x%.2f",
             2e-5 * 256 * 256 / (1e-3 * 256));
    cr_assert(strstr(rd, want) != NULL, "want '%s' in: %s", want, rd);
    const char *rt = ibex_report_plot_reading(p, find_plot(p, "token_time_vs_output"));
    cr_assert(strstr(rt, "kv.policy=none: 1.28 ms at n=32 to 10.2 ms at n=256 (x8.00; n^1.00)") != NULL, "%s", rt);
    cr_assert(strstr(rt, "kv.policy=contiguous: 1.00 ms at n=32 to 1.00 ms at n=256 (x1.00; n^0.00)") != NULL,
              "%s", rt);
    /* The generic throughput plot is replaced; policy none holds no cache to compare. */
    cr_assert_not(has_plot(p, "throughput_vs_workload.output_tokens"));
    cr_assert_not(has_plot(p, "throughput_vs_workload_output_tokens"));
    cr_assert_not(has_plot(p, "kv_utilisation"));
    cr_assert(has_plot(p, "cdf_ttft"), "timed points keep their latency CDFs");
    ibex_report_plots_free(p);
    json_decref(r);
}

Test(reports, kv_bars_tell_repeated_policies_apart)
{
    /* naive_vs_paged: contiguous twice, with two kv.max_seq_len, and paged. */
    static const char *keys[] = {"kv.policy", "kv.max_seq_len", NULL};
    json_t *r = make_run("naive_vs_paged", keys);
    static const char *pols[] = {"contiguous", "contiguous", "paged"};
    static const char *msl[] = {"4096", "0", "0"};
    static const double util[] = {0.21, 0.72, 0.985};
    static const int conc[] = {40, 158, 312};
    for (int i = 0; i < 3; i++) {
        const char *sw[] = {"kv.policy", pols[i], "kv.max_seq_len", msl[i], NULL};
        json_t *pt = add_point(r, false, 512, pols[i], 500, 500, sw);
        set_kv(pt, pols[i], 80.0 * 1073741824.0, util[i] * 80.0 * 1073741824.0, util[i], conc[i]);
    }
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    const char *rd = ibex_report_plot_reading(p, find_plot(p, "kv_utilisation"));
    cr_assert(strstr(rd, "contiguous kv.max_seq_len=4096 keeps 21.0% of reserved KV in use on average vs 72.0% for "
                         "contiguous kv.max_seq_len=0, 98.5% for paged kv.max_seq_len=0") != NULL,
              "%s", rd);
    cr_assert(strstr(rd, "contiguous kv.max_seq_len=4096 40; contiguous kv.max_seq_len=0 158; paged kv.max_seq_len=0 "
                         "312") != NULL,
              "%s", rd);
    const char *rm = ibex_report_plot_reading(p, find_plot(p, "kv_memory"));
    cr_assert(strstr(rm, "contiguous, max_seq_len=4096: peak reserved 80.0 GiB, peak used 16.8 GiB (79.0% less)") !=
                  NULL,
              "%s", rm);
    cr_assert_not(has_plot(p, "throughput_vs_kv.max_seq_len") || has_plot(p, "throughput_vs_kv_max_seq_len"),
                  "accounting only: no throughput plot");
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    cr_assert_eq(ibex_report_plots_render(p, dir, NULL, NULL, NULL), IBEX_OK);
    snprintf(path, sizeof path, "%s/kv_utilisation.dat", dir);
    char *dat = slurp(path, NULL);
    cr_assert_not_null(dat);
    cr_assert(strstr(dat, "\n\"contiguous, max_seq_len=4096\" 21 40\n") != NULL, "%s", dat);
    cr_assert(strstr(dat, "\n\"contiguous, max_seq_len=0\" 72 158\n") != NULL, "%s", dat);
    cr_assert(strstr(dat, "\n\"paged, max_seq_len=0\" 98.5 312\n") != NULL, "%s", dat);
    free(dat);
    rm_tree(dir);
    ibex_report_plots_free(p);
    json_decref(r);
}

/* ---------------------------------------------------------------- Markdown */

Test(reports, markdown_tables_formulas_and_readings)
{
    json_t *r = make_results();
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    ibex_status st;
    char *md = capture_md(r, p, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(md, "# ibex report: quadratic\n") != NULL);
    cr_assert(strstr(md, "Prefill cost against prompt length.") != NULL);
    cr_assert(strstr(md, "abc123def456") != NULL);
    cr_assert(strstr(md, "| # | workload.prompt_tokens | status |") != NULL, "%s", md);
    /* Result rows: index, swept value, status, wall time with unit. */
    cr_assert(strstr(md, "| 0 | 128 | ok | 250 ± 0 ms (CV 0 %) |") != NULL, "%s", md);
    cr_assert(strstr(md, "| 3 | 1024 | ok | 550 ± 0 ms (CV 0 %) |") != NULL, "%s", md);
    /* Per-op rows: 1024 tokens, attention share 67.2% (see the plan test). */
    cr_assert(strstr(md, "### Point 3: workload.prompt_tokens=1024") != NULL);
    cr_assert(strstr(md, "| attention | 67.2% |") != NULL, "%s", md);
    /* Formulas verbatim. */
    cr_assert(strstr(md, k_formula_ttft) != NULL);
    cr_assert(strstr(md, k_formula_out) != NULL);
    cr_assert(strstr(md, "attention alone as n^2.00") != NULL);
    /* Not rendered yet: no image links. */
    cr_assert(strstr(md, "![") == NULL);
    free(md);
    ibex_report_plots_free(p);
    json_decref(r);
}

/* ---------------------------------------------------------------- files */

static void write_results(const char *dir, const json_t *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/results.json", dir);
    cr_assert_eq(json_dump_file(r, path, JSON_INDENT(2)), 0);
}

Test(reports, write_all_without_gnuplot_and_round_trip)
{
    setenv("IBEX_GNUPLOT", "none", 1);
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    json_t *r = make_results();
    write_results(dir, r);
    ibex_err e = {0};
    cr_assert_eq(ibex_report_write_all(dir, &e), IBEX_OK, "%s", e.msg);

    snprintf(path, sizeof path, "%s/results.csv", dir);
    size_t len1, len2;
    char *csv1 = slurp(path, &len1);
    cr_assert_not_null(csv1);
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md1 = slurp(path, NULL);
    cr_assert_not_null(md1);
    cr_assert(strstr(md1, "Plots skipped:** plotting is disabled (IBEX_GNUPLOT=none)") != NULL, "%s", md1);
    snprintf(path, sizeof path, "%s/plots/prefill_scaling.gp", dir);
    cr_assert_gt(file_size(path), 0);
    snprintf(path, sizeof path, "%s/plots/prefill_scaling.dat", dir);
    char *dat = slurp(path, NULL);
    cr_assert_not_null(dat);
    cr_assert(strstr(dat, "\n1024 ") != NULL, "%s", dat);
    free(dat);
    snprintf(path, sizeof path, "%s/results.csv.tmp", dir);
    cr_assert_eq(access(path, F_OK), -1, "no .tmp left behind");
    snprintf(path, sizeof path, "%s/report.md.tmp", dir);
    cr_assert_eq(access(path, F_OK), -1, "no .tmp left behind");

    /* The CSV on disk is what ibex_report_csv writes for the same results. */
    ibex_status st;
    char *mem = capture(ibex_report_csv, r, &st);
    cr_assert_str_eq(mem, csv1);
    free(mem);

    /* Regenerating from the same results.json gives the same bytes. */
    cr_assert_eq(ibex_report_write_all(dir, &e), IBEX_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    char *csv2 = slurp(path, &len2);
    cr_assert_eq(len1, len2);
    cr_assert_eq(memcmp(csv1, csv2, len1), 0, "CSV differs after regeneration");
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md2 = slurp(path, NULL);
    cr_assert_str_eq(md1, md2);
    free(csv1);
    free(csv2);
    free(md1);
    free(md2);
    json_decref(r);
    rm_tree(dir);
}

Test(reports, write_all_with_gnuplot_renders_images)
{
    unsetenv("IBEX_GNUPLOT");
    char gp[4096];
    if (!ibex_report_gnuplot_find(gp, sizeof gp, NULL, 0))
        cr_skip_test("gnuplot is not installed");
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    json_t *r = make_results_swept(N_PTS, true);
    write_results(dir, r);
    ibex_err e = {0};
    cr_assert_eq(ibex_report_write_all(dir, &e), IBEX_OK, "%s", e.msg);
    static const char *names[] = {"prefill_scaling", "decode_vs_prompt", "kv_utilisation", "kv_memory", "cdf_ttft",
                                  "cdf_e2e", "cdf_itl"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/plots/%s.png", dir, names[i]);
        cr_assert_gt(file_size(path), 0, "%s", path);
        snprintf(path, sizeof path, "%s/plots/%s.svg", dir, names[i]);
        cr_assert_gt(file_size(path), 0, "%s", path);
        snprintf(path, sizeof path, "%s/plots/%s.png.tmp", dir, names[i]);
        cr_assert_eq(access(path, F_OK), -1);
    }
    snprintf(path, sizeof path, "%s/plots/prefill_scaling.png", dir);
    char *png = slurp(path, NULL);
    cr_assert(memcmp(png, "\x89PNG", 4) == 0, "a PNG file");
    free(png);
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md = slurp(path, NULL);
    cr_assert(strstr(md, "![Prefill time vs prompt length](plots/prefill_scaling.png)") != NULL, "%s", md);
    cr_assert(strstr(md, "Plots skipped") == NULL, "%s", md);
    free(md);
    json_decref(r);
    rm_tree(dir);
}

Test(reports, terminal_summary)
{
    json_t *r = make_results();
    ibex_status st;
    char *t = capture(ibex_report_terminal, r, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(t, "ibex: quadratic, 4 points\n") != NULL, "%s", t);
    cr_assert(strstr(t, "workload.prompt_tokens=1024") != NULL, "%s", t);
    cr_assert(strstr(t, "TTFT p50") != NULL);
    char gp[4096];
    if (ibex_report_gnuplot_find(gp, sizeof gp, NULL, 0))
        cr_assert(strstr(t, "attention alone as n^2.00") != NULL, "text plot and its reading:\n%s", t);
    free(t);
    json_decref(r);
}

/* ---------------------------------------------------------------- loading */

Test(reports, load_malformed_names_file_line_column)
{
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/results.json", dir);
    write_text(path, "{\n  \"schema_version\": 1,\n  \"points\": [1,, 2]\n}\n");
    ibex_err e = {0};
    cr_assert_null(ibex_report_load(dir, &e));
    cr_assert_eq(e.status, IBEX_ERR_FORMAT);
    char want[4300];
    snprintf(want, sizeof want, "%s:3:", path);
    cr_assert(strncmp(e.msg, want, strlen(want)) == 0, "message '%s' should start with '%s'", e.msg, want);
    /* write_all reports the same error and writes nothing. */
    ibex_err e2 = {0};
    cr_assert_eq(ibex_report_write_all(dir, &e2), IBEX_ERR_FORMAT);
    cr_assert_str_eq(e2.msg, e.msg);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    cr_assert_eq(access(path, F_OK), -1);
    rm_tree(dir);
}

Test(reports, load_checks_schema_version_and_existence)
{
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/results.json", dir);
    ibex_err e = {0};
    cr_assert_null(ibex_report_load(dir, &e));
    cr_assert_eq(e.status, IBEX_ERR_IO);
    cr_assert(strstr(e.msg, path) != NULL, "%s", e.msg);

    write_text(path, "{\"schema_version\": 2, \"points\": []}");
    cr_assert_null(ibex_report_load(path, &e));
    cr_assert_eq(e.status, IBEX_ERR_UNSUPPORTED);
    cr_assert(strstr(e.msg, "schema_version 2") != NULL, "%s", e.msg);

    write_text(path, "{\"points\": []}");
    cr_assert_null(ibex_report_load(path, &e));
    cr_assert_eq(e.status, IBEX_ERR_FORMAT);
    cr_assert(strstr(e.msg, "schema_version is missing") != NULL, "%s", e.msg);

    write_text(path, "{\"schema_version\": 1, \"points\": {}}");
    cr_assert_null(ibex_report_load(path, &e));
    cr_assert_eq(e.status, IBEX_ERR_FORMAT);

    write_text(path, "{\"schema_version\": 1, \"points\": []}");
    json_t *r = ibex_report_load(path, &e);
    cr_assert_not_null(r, "%s", e.msg);
    json_decref(r);
    rm_tree(dir);
}

Test(reports, missing_optional_keys_do_not_crash)
{
    setenv("IBEX_GNUPLOT", "none", 1);
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/results.json", dir);
    write_text(path, "{\"schema_version\": 1, \"scenario\": {\"swept\": [\"batch\"]},\n"
                     " \"points\": [{\"index\": 0}, {\"status\": \"ok\", \"swept\": {\"batch\": 4},\n"
                     "   \"metrics\": {\"ttft\": {}}, \"kv\": null, \"ops\": {\"prefill\": {\"attention\": {}}},\n"
                     "   \"raw\": {\"ttft\": []}}, 7]}");
    ibex_err e = {0};
    json_t *r = ibex_report_load(dir, &e);
    cr_assert_not_null(r, "%s", e.msg);
    ibex_status st;
    char *text = capture(ibex_report_csv, r, &st);
    cr_assert_eq(st, IBEX_OK);
    csv c;
    csv_parse(text, &c);
    cr_assert_eq(c.nrows, 4);
    cr_assert_str_eq(c.f[2][csv_col(&c, "batch")], "4");
    cr_assert_str_eq(c.f[1][csv_col(&c, "batch")], "");
    cr_assert_str_eq(c.f[2][csv_col(&c, "ttft_p50")], "");
    cr_assert_str_eq(c.f[3][0], "2", "a point without index gets its position");
    csv_free(&c);
    free(text);
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(md, "# ibex report: (unnamed scenario)") != NULL);
    free(md);
    char *t = capture(ibex_report_terminal, r, &st);
    cr_assert_eq(st, IBEX_OK);
    free(t);
    json_decref(r);
    cr_assert_eq(ibex_report_write_all(dir, &e), IBEX_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/report.md", dir);
    cr_assert_gt(file_size(path), 0);
    rm_tree(dir);

    /* The smallest valid file. */
    json_t *empty = json_pack("{s:i}", "schema_version", 1);
    text = capture(ibex_report_csv, empty, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strncmp(text, "index,label,status,wall_s,", 26) == 0, "%s", text);
    free(text);
    md = capture_md(empty, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    free(md);
    ibex_report_plots *p = ibex_report_plots_plan(empty, NULL);
    cr_assert_not_null(p);
    cr_assert_eq(ibex_report_plots_count(p), 0);
    ibex_report_plots_free(p);
    json_decref(empty);
}

/* ---------------------------------------------------------------- accessors */

Test(reports, accessors_and_formatting)
{
    json_t *r = make_results();
    const json_t *pt = json_array_get(json_object_get(r, "points"), 2);
    cr_assert_float_eq(ibex_report_num(pt, "metrics/ttft/p50"), 0.03, 1e-15);
    cr_assert_float_eq(ibex_report_num(pt, "params/workload.prompt_tokens/value"), 512, 0);
    cr_assert(isnan(ibex_report_num(pt, "metrics/nope")));
    cr_assert(isnan(ibex_report_num(pt, "label")));
    cr_assert_str_eq(ibex_report_str(pt, "label"), "workload.prompt_tokens=512");
    cr_assert_float_eq(ibex_report_swept_num(pt, "workload.prompt_tokens"), 512, 0);
    cr_assert(isnan(ibex_report_swept_num(pt, "kv.policy")));
    const char *keys[4];
    cr_assert_eq(ibex_report_swept_keys(r, keys, 4), 1);
    cr_assert_str_eq(keys[0], "workload.prompt_tokens");
    char b[64];
    cr_assert_str_eq(ibex_report_fmt_seconds(0.0123, b, sizeof b), "12.3 ms");
    cr_assert_str_eq(ibex_report_fmt_seconds(1.5, b, sizeof b), "1.50 s");
    cr_assert_str_eq(ibex_report_fmt_seconds(NAN, b, sizeof b), "-");
    cr_assert_str_eq(ibex_report_fmt_bytes(1.5 * 1048576, b, sizeof b), "1.50 MiB");
    cr_assert_str_eq(ibex_report_fmt_bytes(512, b, sizeof b), "512 B");
    cr_assert_str_eq(ibex_report_fmt_value(1234.4, "tok/s", b, sizeof b), "1234 tok/s");
    json_decref(r);
}

/* ---------------------------------------------------------------- GPU sections */

/* One kernel row of a "gpu" object (harness/cupti.h). op_name NULL writes null. */
static json_t *gpu_kernel(const char *name, int op, const char *op_name, int calls, json_int_t total,
                          json_int_t min, json_int_t max, json_int_t kernel_ns)
{
    json_t *k = json_pack("{s:s, s:i, s:o, s:i, s:I, s:f, s:I, s:I, s:f}", "name", name, "op", op, "op_name",
                          op_name ? json_string(op_name) : json_null(), "calls", calls, "total_ns", total, "mean_ns",
                          (double)total / calls, "min_ns", min, "max_ns", max, "share", (double)total / kernel_ns);
    cr_assert_not_null(k);
    return k;
}

/* A "gpu" object with hand-chosen numbers: kernel time 8 ms, of which attention
 * 5 ms (62.5 %), matmul_qkv 2 ms (25 %), a kernel outside any op 1 ms (12.5 %); busy
 * 6 ms of 8 ms wall (75 %); a 2 TB/s copy bandwidth; attention moves 5 GB and does
 * 10 GFLOP in its 5 ms: 1000 GB/s (50 % of the copy bandwidth) and 2.00 TFLOP/s. */
static json_t *make_gpu(json_int_t dropped)
{
    const json_int_t kns = 8000000;
    json_t *ks = json_array();
    json_array_append_new(ks, gpu_kernel("_ZN4ibex4cuda10attn_pagedILi128EfEEvPKT0_", 3, "attention", 100, 5000000,
                                         40000, 90000, kns));
    json_array_append_new(ks, gpu_kernel("gemv", 1, "matmul_qkv", 200, 2000000, 9000, 12000, kns));
    json_array_append_new(ks, gpu_kernel("_Z14rmsnorm_kernelPfPKfS1_if", -1, NULL, 50, 1000000, 19000, 21000, kns));
    json_t *ops = json_pack("[{s:i, s:s, s:i, s:I, s:i, s:I, s:I, s:i, s:I, s:f},"
                            " {s:i, s:s, s:i, s:I, s:i, s:I, s:I, s:i, s:I, s:f},"
                            " {s:i, s:n, s:i, s:I, s:i, s:I, s:I, s:i, s:I, s:f}]",
                            "op", 1, "name", "matmul_qkv", "kernels", 200, "kernel_ns", (json_int_t)2000000, "memcpys",
                            0, "memcpy_ns", (json_int_t)0, "memcpy_bytes", (json_int_t)0, "memsets", 0, "memset_ns",
                            (json_int_t)0, "share", 0.25, "op", 3, "name", "attention", "kernels", 100, "kernel_ns",
                            (json_int_t)5000000, "memcpys", 0, "memcpy_ns", (json_int_t)0, "memcpy_bytes",
                            (json_int_t)0, "memsets", 0, "memset_ns", (json_int_t)0, "share", 0.625, "op", -1, "name",
                            "kernels", 50, "kernel_ns", (json_int_t)1000000, "memcpys", 3, "memcpy_ns",
                            (json_int_t)30000, "memcpy_bytes", (json_int_t)3145728, "memsets", 1, "memset_ns",
                            (json_int_t)2000, "share", 0.125);
    cr_assert_not_null(ops);
    json_t *g = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:i, s:o, s:o}", "events",
                          (json_int_t)354, "dropped", dropped, "unknown_records", (json_int_t)0, "bad_buffers",
                          (json_int_t)0, "untimed", (json_int_t)0, "span_ns", (json_int_t)7000000, "busy_ns",
                          (json_int_t)6000000, "wall_ns", (json_int_t)8000000, "busy_fraction", 0.75, "kernel_ns",
                          kns, "kernel_calls", 350, "kernels", ks, "by_op", ops);
    cr_assert_not_null(g);
    json_object_set_new(g, "memcpy",
                        json_pack("{s:{s:i, s:I, s:I, s:f}}", "HtoD", "count", 3, "bytes", (json_int_t)3145728,
                                  "total_ns", (json_int_t)30000, "gb_per_s", 104.8576));
    json_object_set_new(g, "memset", json_pack("{s:i, s:I, s:I}", "count", 1, "bytes", (json_int_t)1024, "total_ns",
                                               (json_int_t)2000));
    json_object_set_new(g, "memory", json_pack("{s:i, s:I, s:i, s:I, s:I}", "allocs", 4, "alloc_bytes",
                                               (json_int_t)4194304, "frees", 1, "free_bytes", (json_int_t)1048576,
                                               "peak_bytes", (json_int_t)4194304));
    json_object_set_new(g, "ranges", json_pack("[{s:s, s:s, s:i, s:I, s:f, s:I, s:I}]", "name", "step", "domain",
                                               "ibex", "calls", 10, "total_ns", (json_int_t)7500000, "mean_ns",
                                               750000.0, "min_ns", (json_int_t)700000, "max_ns",
                                               (json_int_t)800000));
    json_object_set_new(g, "copy_bandwidth_bytes_per_s", json_real(2e12));
    json_t *roof = json_pack("[{s:s, s:I, s:f, s:f, s:f, s:f, s:f}, {s:s, s:I, s:f, s:f, s:f, s:f, s:f}]", "op",
                             "matmul_qkv", "kernel_ns", (json_int_t)2000000, "bytes", 1e9, "flops", 1e9,
                             "bytes_per_s", 5e11, "flops_per_s", 5e11, "bandwidth_fraction", 0.25, "op", "attention",
                             "kernel_ns", (json_int_t)5000000, "bytes", 5e9, "flops", 1e10, "bytes_per_s", 1e12,
                             "flops_per_s", 2e12, "bandwidth_fraction", 0.5);
    cr_assert_not_null(roof);
    json_object_set_new(g, "roofline", roof);
    return g;
}

/* Marks a point of make_results as a CUDA point with a device. */
static void set_cuda(json_t *pt, const char *instruments)
{
    json_object_set_new(json_object_get(pt, "params"), "instruments", json_string(instruments));
    json_object_set_new(pt, "backend_used", json_string("cuda"));
    json_object_set_new(pt, "attention_used", json_string("paged"));
    json_object_set_new(pt, "device", json_pack("{s:s, s:i, s:i, s:i, s:I, s:I}", "name", "NVIDIA H100 80GB HBM3",
                                                "cc_major", 9, "cc_minor", 0, "sm_count", 132, "mem_total",
                                                (json_int_t)85899345920LL, "mem_free_at_start",
                                                (json_int_t)84825604096LL));
}

/* make_results with GPU activity on points 1 and 3 (3 dropping records and carrying
 * two kernels whose short names collide), and a CUPTI error on point 2. */
static json_t *make_gpu_results(void)
{
    json_t *r = make_results();
    json_t *pts = json_object_get(r, "points");
    for (int i = 1; i < 4; i++)
        set_cuda(json_array_get(pts, i), "cupti");
    json_object_set_new(json_array_get(pts, 1), "gpu", make_gpu(0));
    json_t *g3 = make_gpu(7);
    json_t *ks = json_object_get(g3, "kernels");
    json_array_append_new(ks, gpu_kernel("_Z6reduceIfEvPT_", 2, "rmsnorm", 4, 1000, 200, 300, 8000000));
    json_array_append_new(ks, gpu_kernel("_Z6reduceIfEvPT_i", 2, "rmsnorm", 4, 800, 150, 250, 8000000));
    json_array_append_new(ks, gpu_kernel("fused,\"odd\" kernel", 4, "add", 1, 100, 100, 100, 8000000));
    /* a name longer than any fixed buffer (CUTLASS kernels reach thousands of bytes) */
    char long_name[3001];
    memset(long_name, 'x', 3000);
    long_name[3000] = '\0';
    json_array_append_new(ks, gpu_kernel(long_name, 4, "add", 1, 50, 50, 50, 8000000));
    json_object_set_new(json_array_get(pts, 3), "gpu", g3);
    json_object_set_new(json_array_get(pts, 2), "gpu",
                        json_pack("{s:s}", "error", "cudaDeviceSynchronize: an illegal memory access was encountered"));
    return r;
}

Test(reports, kernel_short_names)
{
    static const struct {
        const char *in, *out;
    } k_cases[] = {
        {"_Z14rmsnorm_kernelPfPKfS1_if", "rmsnorm_kernel"},
        {"_ZN4ibex4cuda10attn_pagedILi128EfEEvPKT0_", "ibex::cuda::attn_paged<128, float>"},
        {"_Z4convILin1EEvv", "conv<-1>"},
        {"_Z1fILb1EEvv", "f<true>"},
        {"_ZN12_GLOBAL__N_16kernelEv", "kernel"},
        {"_ZN40_INTERNAL_a1b2c3d4_9_kernels_cu_123456784ibex6kernelEv", "ibex::kernel"},
        {"_ZNSt6vectorIiSaIiEE9push_backERKi", "std::vector<int, std::allocator<int>>::push_back"},
        /* S_ is "ibex", the first prefix seen */
        {"_ZN4ibex6kernelINS_4castEEEvv", "ibex::kernel<ibex::cast>"},
        {"_ZN4ibex4gemvIN6__half4typeELi256ELb0EEEvPKT_", "ibex::gemv<__half::type, 256, false>"},
        {"_ZN7cutlass7Kernel2I52cutlass_80_tensorop_s1688gemm_128x128_32x3_nn_align4EEvNT_6ParamsE",
         "cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_128x128_32x3_nn_align4>"},
        /* too long: qualifiers inside the arguments go, then nested argument lists */
        {"_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_11FillFunctorIfEESt5arrayIPcLm1EEEEviT0_T1_",
         "at::native::vectorized_elementwise_kernel<4, FillFunctor<…>, array<…>>"},
        /* not understood: as given */
        {"_Zgarbage", "_Zgarbage"},
        {"_Z", "_Z"},
        {"_Z4convIXadL_Z1fvEEEvv", "_Z4convIXadL_Z1fvEEEvv"},
        {"ampere_sgemm_128x64_tn", "ampere_sgemm_128x64_tn"},
        /* a truncated length must not read past the end */
        {"_Z99short", "_Z99short"},
    };
    char b[512];
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++)
        cr_assert_str_eq(ibex_report_kernel_short_name(k_cases[i].in, b, sizeof b), k_cases[i].out, "%s",
                         k_cases[i].in);
    cr_assert_str_eq(ibex_report_kernel_short_name(NULL, b, sizeof b), "?");
    /* A long plain name keeps 80 characters: its head and tail around "…". */
    const char *cublas = "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_"
                         "segment_k_off_kernel__5x_cublas";
    ibex_report_kernel_short_name(cublas, b, sizeof b);
    cr_assert_str_eq(b, "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128…nt_k_off_kernel__5x_cublas");
    /* Nesting deeper than the demangler reads: given up on, shown as given (cut). */
    char deep[4096] = "_Z1fI";
    for (int i = 0; i < 3000; i++)
        strcat(deep, "P");
    strcat(deep, "iE");
    ibex_report_kernel_short_name(deep, b, sizeof b);
    cr_assert(strncmp(b, "_Z1fIPPPP", 9) == 0 && strstr(b, "P…P") != NULL && strcmp(b + strlen(b) - 4, "PPiE") == 0,
              "%s", b);
    /* A small buffer is filled and terminated. */
    char small[8];
    cr_assert_str_eq(ibex_report_kernel_short_name("_Z14rmsnorm_kernelPf", small, sizeof small), "rmsnor"
                                                                                               "m");
}

Test(reports, markdown_gpu_activity)
{
    json_t *r = make_gpu_results();
    ibex_status st;
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert_eq(count_str(md, "## GPU activity (CUPTI)\n"), 1, "%s", md);
    /* the sections sit after the per-op breakdown and before the KV table */
    cr_assert(strstr(md, "## Where the time goes") < strstr(md, "## GPU activity"));
    cr_assert(strstr(md, "## GPU activity") < strstr(md, "## KV cache and memory"));
    /* summary over the points with a gpu object */
    cr_assert(strstr(md, "| 1 | 256 | 75.0 % | 8.00 ms | 350 | `ibex::cuda::attn_paged<128, float>` | 62.5 % | 0 |") !=
                  NULL,
              "%s", md);
    cr_assert(strstr(md, "| 2 | 512 | CUPTI error | - | - | - | - | - |") != NULL, "%s", md);
    /* point 1 in detail */
    const char *p1 = strstr(md, "### GPU activity of point 1: workload.prompt_tokens=256\n");
    cr_assert_not_null(p1, "%s", md);
    cr_assert(strstr(p1, "Device: NVIDIA H100 80GB HBM3, compute capability 9.0, 132 SMs, 80.0 GiB memory (79.0 GiB "
                         "free at start); backend cuda, attention paged.\n") != NULL,
              "%s", p1);
    cr_assert(strstr(p1, "GPU busy 75.0 % of the step wall time: 6.00 ms of kernels, copies and sets (overlaps "
                         "counted once) in 8.00 ms (activity span 7.00 ms). Kernels: 8.00 ms in 350 launches. 354 "
                         "activity records, none dropped.\n") != NULL,
              "%s", p1);
    cr_assert(strstr(p1, "| kernel | op | calls | total ms | mean µs | share |\n") != NULL);
    cr_assert(strstr(p1, "| `ibex::cuda::attn_paged<128, float>` | attention | 100 | 5.000 | 50.00 | 62.5 % |\n") !=
                  NULL,
              "%s", p1);
    cr_assert(strstr(p1, "| `gemv` | matmul_qkv | 200 | 2.000 | 10.00 | 25.0 % |\n") != NULL, "%s", p1);
    cr_assert(strstr(p1, "| `rmsnorm_kernel` | (outside any op) | 50 | 1.000 | 20.00 | 12.5 % |\n") != NULL, "%s",
              p1);
    /* per op */
    cr_assert(strstr(p1, "| attention | 5.00 ms | 62.5 % | 100 | 0 | - | - | 0 |\n") != NULL, "%s", p1);
    cr_assert(strstr(p1, "| (outside any op) | 1.00 ms | 12.5 % | 50 | 3 | 30.0 µs | 3.00 MiB | 1 |\n") != NULL, "%s",
              p1);
    cr_assert(strstr(p1, "Copies: HtoD 3.00 MiB in 3 copies, 30.0 µs (105 GB/s); 1.00 KiB in 1 memsets, 2.00 µs. "
                         "Device allocations: 4 (4.00 MiB), frees: 1 (1.00 MiB), peak 4.00 MiB.\n") != NULL,
              "%s", p1);
    /* roofline */
    cr_assert(strstr(p1, "measured device copy bandwidth of 2000 GB/s") != NULL, "%s", p1);
    cr_assert(strstr(p1, "| attention | 5.00 ms | 4.66 GiB | 1000 | 50.0 % | 2.00 |\n") != NULL, "%s", p1);
    cr_assert(strstr(p1, "| matmul_qkv | 2.00 ms | 954 MiB | 500 | 25.0 % | 0.5 |\n") != NULL, "%s", p1);
    cr_assert(strstr(p1, "| step | ibex | 10 | 7.50 ms | 750 µs |\n") != NULL, "%s", p1);
    /* the error point says why */
    const char *p2 = strstr(md, "### GPU activity of point 2: workload.prompt_tokens=512\n");
    cr_assert_not_null(p2);
    const char *why = "### GPU activity of point 2: workload.prompt_tokens=512\n\nCUPTI did not record this point: "
                      "cudaDeviceSynchronize: an illegal memory access was encountered.\n\n";
    cr_assert(strncmp(p2, why, strlen(why)) == 0, "%s", p2);
    /* point 3: dropped records warned about; colliding short names get numbered notes */
    const char *p3 = strstr(md, "### GPU activity of point 3: workload.prompt_tokens=1024\n");
    cr_assert_not_null(p3);
    cr_assert(strstr(p3, "354 activity records.\n") != NULL, "%s", p3);
    cr_assert(strstr(p3, "> **Warning:** CUPTI dropped 7 activity records") != NULL, "%s", p3);
    cr_assert(strstr(p3, "| `reduce<float>` [1] | rmsnorm | 4 | 0.001 | 0.25 | 0.0 % |\n") != NULL, "%s", p3);
    cr_assert(strstr(p3, "| `reduce<float>` [2] | rmsnorm | 4 | 0.001 | 0.20 | 0.0 % |\n") != NULL, "%s", p3);
    cr_assert(strstr(p3, "\n\n- [1] `_Z6reduceIfEvPT_`\n- [2] `_Z6reduceIfEvPT_i`\n\n") != NULL, "%s", p3);
    cr_assert(strstr(p3, "| `fused,\"odd\" kernel` | add | 1 |") != NULL, "%s", p3);
    /* point 0 ran without a gpu object: no section of its own */
    cr_assert(strstr(md, "### GPU activity of point 0") == NULL, "%s", md);
    cr_assert(strstr(md, "CUPTI did not run") == NULL, "no top-level error here");
    free(md);
    json_decref(r);
}

Test(reports, markdown_gpu_top_kernels_only)
{
    json_t *r = make_results();
    json_t *pt = json_array_get(json_object_get(r, "points"), 0);
    json_t *g = make_gpu(0);
    json_t *ks = json_array();
    char name[64];
    /* 25 kernels of 25, 24, ... 1 µs, smallest first in the file: the top 20 shown;
     * 5 left: 15 µs in 5 calls */
    for (int i = 24; i >= 0; i--) {
        snprintf(name, sizeof name, "k%02d", i);
        json_array_append_new(ks, gpu_kernel(name, 0, "embedding", 1, (25 - i) * 1000, 1, 1, 325000));
    }
    json_object_set_new(g, "kernels", ks);
    json_object_set_new(g, "kernel_ns", json_integer(325000));
    json_object_set_new(pt, "gpu", g);
    ibex_status st;
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(md, "| `k19` | embedding |") != NULL, "%s", md);
    cr_assert(strstr(md, "| `k20` |") == NULL, "%s", md);
    cr_assert(strstr(md, "| `k00` | embedding | 1 | 0.025 | 25.00 | 7.7 % |\n| `k01` |") != NULL, "%s", md);
    cr_assert(strstr(md, "5 more kernel rows not shown: 15.0 µs in 5 calls (4.6 % of kernel time).\n") != NULL, "%s",
              md);
    cr_assert(strstr(md, "`kernels.csv` has every kernel") != NULL);
    free(md);
    json_decref(r);
}

Test(reports, markdown_cupti_could_not_start)
{
    json_t *r = make_results();
    json_object_set_new(r, "cupti_error", json_string("this ibex was built without CUPTI"));
    json_t *pts = json_object_get(r, "points");
    set_cuda(json_array_get(pts, 0), "cupti");
    set_cuda(json_array_get(pts, 1), "nvtx");
    set_cuda(json_array_get(pts, 2), "cupti");
    ibex_status st;
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(md, "## GPU activity (CUPTI)\n\n> **CUPTI did not run:** this ibex was built without CUPTI. "
                         "Points asking for `instruments: cupti` ran without it: 0, 2 (their per-op times come from "
                         "host timers).\n") != NULL,
              "%s", md);
    cr_assert(strstr(md, "### GPU activity of point") == NULL, "no per-point GPU detail");
    free(md);
    json_decref(r);
}

/* Three points differing only in instruments (file order nvtx, off, cupti), a pair
 * without "off", and a point alone in its configuration. */
static json_t *make_overhead_results(void)
{
    static const struct {
        int prompt;
        const char *instr;
        double decode, output;
    } k_pts[] = {{128, "nvtx", 102, 50.5}, {128, "off", 100, 50}, {128, "cupti", 97, 49},
                 {512, "nvtx", 200, 80},   {512, "cupti", 190, 80}, {1024, "off", 300, 90}};
    json_t *r = make_results_swept(0, false);
    json_array_append_new(json_object_get(json_object_get(r, "scenario"), "swept"), json_string("instruments"));
    json_t *pts = json_object_get(r, "points");
    for (int i = 0; i < 6; i++) {
        json_t *pt = make_point(i, k_pts[i].prompt, NULL, 0.5);
        json_object_set_new(json_object_get(pt, "params"), "instruments", json_string(k_pts[i].instr));
        json_object_set_new(json_object_get(pt, "swept"), "instruments", json_string(k_pts[i].instr));
        json_object_set_new(json_object_get(pt, "metrics"), "decode_tok_per_s", json_real(k_pts[i].decode));
        json_object_set_new(json_object_get(pt, "metrics"), "output_tok_per_s", json_real(k_pts[i].output));
        json_array_append_new(pts, pt);
    }
    return r;
}

Test(reports, markdown_instrumentation_overhead)
{
    json_t *r = make_overhead_results();
    ibex_status st;
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert_eq(count_str(md, "## Instrumentation overhead\n"), 1, "%s", md);
    cr_assert(strstr(md, "relative difference from the group's baseline, `instruments: off`") != NULL, "%s", md);
    cr_assert(strstr(md, "| configuration | # | instruments | decode tok/s | vs baseline | output tok/s | vs baseline "
                         "|\n|---|---:|---|---:|---:|---:|---:|\n"
                         "| workload.prompt_tokens=128 | 1 | off | 100 | baseline | 50.0 | baseline |\n"
                         "| workload.prompt_tokens=128 | 0 | nvtx | 102 | +2.0 % | 50.5 | +1.0 % |\n"
                         "| workload.prompt_tokens=128 | 2 | cupti | 97.0 | −3.0 % | 49.0 | −2.0 % |\n"
                         "| workload.prompt_tokens=512 | 3 | nvtx | 200 | baseline | 80.0 | baseline |\n"
                         "| workload.prompt_tokens=512 | 4 | cupti | 190 | −5.0 % | 80.0 | 0.0 % |\n\n") != NULL,
              "%s", md);
    cr_assert(strstr(md, "| workload.prompt_tokens=1024 | 5 |") == NULL, "a point alone is no group");
    cr_assert(strstr(md, "GPU activity") == NULL);
    free(md);

    /* Another difference besides instruments (here the seed) splits the group. */
    json_object_set_new(json_object_get(json_array_get(json_object_get(r, "points"), 0), "params"), "seed",
                        json_integer(2));
    md = capture_md(r, NULL, &st);
    cr_assert(strstr(md, "| workload.prompt_tokens=128 | 0 | nvtx |") == NULL, "%s", md);
    cr_assert(strstr(md, "| workload.prompt_tokens=128 | 2 | cupti | 97.0 | −3.0 % |") != NULL, "%s", md);
    free(md);
    json_decref(r);
}

Test(reports, markdown_without_gpu_fields_is_unchanged)
{
    json_t *r = make_results_swept(N_PTS, true);
    ibex_status st;
    char *before = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert(strstr(before, "GPU") == NULL || strstr(before, "GPU activity") == NULL);
    cr_assert(strstr(before, "CUPTI") == NULL, "%s", before);
    cr_assert(strstr(before, "Instrumentation overhead") == NULL, "%s", before);
    /* What a CPU run now also writes (one instruments level, backend_used) changes
     * nothing. */
    size_t i;
    json_t *pt;
    json_array_foreach(json_object_get(r, "points"), i, pt) {
        json_object_set_new(json_object_get(pt, "params"), "instruments", json_string("nvtx"));
        json_object_set_new(json_object_get(pt, "params"), "attention", json_string("auto"));
        json_object_set_new(pt, "backend_used", json_string("cpu"));
    }
    char *after = capture_md(r, NULL, &st);
    cr_assert_str_eq(after, before);
    free(before);
    free(after);
    cr_assert_not(ibex_report_has_kernels(r));
    json_decref(r);
}

Test(reports, kernels_csv_rows)
{
    json_t *r = make_gpu_results();
    cr_assert(ibex_report_has_kernels(r));
    ibex_status st;
    char *text = capture(ibex_report_kernels_csv, r, &st);
    cr_assert_eq(st, IBEX_OK);
    const char *expect =
        "index,label,kernel,op,calls,total_ns,mean_ns,min_ns,max_ns,share\n"
        "1,workload.prompt_tokens=256,_ZN4ibex4cuda10attn_pagedILi128EfEEvPKT0_,attention,100,5000000,50000,40000,"
        "90000,0.625\n"
        "1,workload.prompt_tokens=256,gemv,matmul_qkv,200,2000000,10000,9000,12000,0.25\n"
        "1,workload.prompt_tokens=256,_Z14rmsnorm_kernelPfPKfS1_if,-1,50,1000000,20000,19000,21000,0.125\n"
        "3,workload.prompt_tokens=1024,_ZN4ibex4cuda10attn_pagedILi128EfEEvPKT0_,attention,100,5000000,50000,40000,"
        "90000,0.625\n"
        "3,workload.prompt_tokens=1024,gemv,matmul_qkv,200,2000000,10000,9000,12000,0.25\n"
        "3,workload.prompt_tokens=1024,_Z14rmsnorm_kernelPfPKfS1_if,-1,50,1000000,20000,19000,21000,0.125\n"
        "3,workload.prompt_tokens=1024,_Z6reduceIfEvPT_,rmsnorm,4,1000,250,200,300,0.000125\n"
        "3,workload.prompt_tokens=1024,_Z6reduceIfEvPT_i,rmsnorm,4,800,200,150,250,0.0001\n"
        "3,workload.prompt_tokens=1024,\"fused,\"\"odd\"\" kernel\",add,1,100,100,100,100,1.25e-05\n";
    cr_assert(strncmp(text, expect, strlen(expect)) == 0, "%s", text);
    const char *last = text + strlen(expect);
    cr_assert_eq(strncmp(last, "3,workload.prompt_tokens=1024,xxx", 33), 0, "%s", last);
    cr_assert_eq(strspn(last + 30, "x"), 3000);
    cr_assert_str_eq(last + 3030, ",add,1,50,50,50,50,6.25e-06\n");
    free(text);
    /* No GPU: the header alone. */
    json_t *cpu = make_results();
    text = capture(ibex_report_kernels_csv, cpu, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert_str_eq(text, "index,label,kernel,op,calls,total_ns,mean_ns,min_ns,max_ns,share\n");
    free(text);
    json_decref(cpu);
    json_decref(r);
}

Test(reports, write_all_writes_kernels_csv_only_with_gpu_activity)
{
    setenv("IBEX_GNUPLOT", "none", 1);
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    json_t *r = make_results();
    write_results(dir, r);
    ibex_err e = {0};
    cr_assert_eq(ibex_report_write_all(dir, &e), IBEX_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/kernels.csv", dir);
    cr_assert_eq(access(path, F_OK), -1, "no kernels.csv for a CPU run");
    json_decref(r);

    r = make_gpu_results();
    write_results(dir, r);
    cr_assert_eq(ibex_report_write_all(dir, &e), IBEX_OK, "%s", e.msg);
    char *disk = slurp(path, NULL);
    cr_assert_not_null(disk);
    ibex_status st;
    char *mem = capture(ibex_report_kernels_csv, r, &st);
    cr_assert_str_eq(disk, mem);
    free(disk);
    free(mem);
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md = slurp(path, NULL);
    cr_assert(strstr(md, "## GPU activity (CUPTI)") != NULL);
    free(md);
    json_decref(r);
    rm_tree(dir);
}

/* ---------------------------------------------------------------- noise and undefined */

/* A point holding only what the spread reader looks at. */
static json_t *spread_point(json_t *metrics, json_t *reps, json_t *noise)
{
    json_t *pt = json_pack("{s:s, s:o}", "status", "ok", "metrics", metrics);
    if (reps)
        json_object_set_new(pt, "repetitions", reps);
    if (noise)
        json_object_set_new(pt, "noise", noise);
    return pt;
}

Test(reports, spread_from_repetitions_formats_median_sd_and_cv)
{
    /* wall 10, 12, 14 ms: sd 2 ms, mean 12 ms, CV 16.7 % > 10 %: noisy. The figure is
     * metrics.wall_s (the runner's median), never the mean. */
    json_t *pt = spread_point(json_pack("{s:f}", "wall_s", 0.012),
                              json_pack("[{s:f},{s:f},{s:f}]", "wall_s", 0.010, "wall_s", 0.014, "wall_s", 0.012), NULL);
    ibex_report_spread s;
    cr_assert(ibex_report_spread_get(pt, "wall_s", &s));
    cr_expect_eq(s.n, 3);
    cr_expect_float_eq(s.median, 0.012, 1e-15);
    cr_expect_float_eq(s.sd, 0.002, 1e-12);
    cr_expect_float_eq(s.cv, 0.002 / 0.012, 1e-12);
    cr_expect_float_eq(s.lo, 0.010, 1e-15);
    cr_expect_float_eq(s.hi, 0.014, 1e-15);
    cr_expect(!s.is_ci);
    cr_expect(s.noisy);
    cr_expect_str_eq(s.reason, "cv 16.7% > 10%");
    char b[128];
    cr_expect_str_eq(ibex_report_fmt_spread(&s, true, "", "-", b, sizeof b), "12.0 ± 2 ms (CV 17 %) ⚠");
    json_decref(pt);

    /* a quiet point: 100, 101, 99 tok/s, CV 1 % */
    pt = spread_point(json_pack("{s:f}", "output_tok_per_s", 100.0),
                      json_pack("[{s:f},{s:f},{s:f}]", "output_tok_per_s", 100.0, "output_tok_per_s", 101.0,
                                "output_tok_per_s", 99.0),
                      NULL);
    cr_assert(ibex_report_spread_get(pt, "output_tok_per_s", &s));
    cr_expect(!s.noisy);
    cr_expect_str_eq(ibex_report_fmt_spread(&s, false, "tok/s", "-", b, sizeof b), "100 ± 1 tok/s (CV 1.0 %)");
    json_decref(pt);

    /* one repetition: no spread known, under-sampled */
    pt = spread_point(json_pack("{s:f}", "wall_s", 2.5), json_pack("[{s:f}]", "wall_s", 2.5), NULL);
    cr_assert(ibex_report_spread_get(pt, "wall_s", &s));
    cr_expect_eq(s.n, 1);
    cr_expect(s.noisy);
    cr_expect_str_eq(s.reason, "under-sampled: n=1");
    cr_expect(isnan(s.lo));
    cr_expect_str_eq(ibex_report_fmt_spread(&s, true, "", "-", b, sizeof b), "2.50 s (n=1) ⚠");
    json_decref(pt);
}

Test(reports, spread_prefers_the_runner_noise_object_and_scales_a_proxy)
{
    json_t *noise = json_pack("{s:{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:b, s:s}}", "wall_s", "n", 8, "median", 1.0,
                              "mean", 1.0, "sd", 0.05, "cv", 0.05, "ci_lo", 0.97, "ci_hi", 1.04, "noisy", 1, "reason",
                              "busy machine");
    json_t *pt = spread_point(json_pack("{s:f}", "wall_s", 1.0), NULL, noise);
    ibex_report_spread s;
    cr_assert(ibex_report_spread_get(pt, "wall_s", &s));
    cr_expect_eq(s.n, 8);
    cr_expect(s.is_ci);
    cr_expect_float_eq(s.lo, 0.97, 1e-15);
    cr_expect_float_eq(s.hi, 1.04, 1e-15);
    cr_expect(s.noisy, "the runner's flag wins over the CV");
    cr_expect_str_eq(s.reason, "busy machine");
    json_decref(pt);

    /* decode_ms_per_token missing from the repetitions: scaled from decode_s */
    pt = spread_point(json_pack("{s:f}", "decode_ms_per_token", 10.0),
                      json_pack("[{s:f},{s:f},{s:f}]", "decode_s", 1.0, "decode_s", 2.0, "decode_s", 1.5), NULL);
    cr_assert(ibex_report_spread_get(pt, "decode_ms_per_token", &s));
    cr_expect(s.proxy);
    cr_expect_float_eq(s.lo, 10.0 / 1.5, 1e-12);
    cr_expect_float_eq(s.hi, 20.0 / 1.5, 1e-12);
    json_decref(pt);
}

Test(reports, undefined_tpot_and_itl_and_busy_warning_in_markdown)
{
    json_t *r = make_results();
    json_t *pt = json_array_get(json_object_get(r, "points"), 0);
    json_t *m = json_object_get(pt, "metrics");
    json_object_set_new(m, "tpot", json_pack("{s:i, s:n, s:n, s:n}", "count", 0, "p50", "p90", "p99"));
    json_object_set_new(m, "itl", json_pack("{s:i, s:n, s:n, s:n}", "count", 0, "p50", "p90", "p99"));
    json_object_set_new(pt, "conditions", json_pack("{s:i, s:s}", "threads", 2, "warning", "load 7.9 on 2 cores"));
    ibex_status st;
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_expect(strstr(md, "| undefined | undefined | undefined |") != NULL, "%s", md);
    cr_expect(strstr(md, "| 0.00") == NULL, "an undefined TPOT must not print as 0: %s", md);
    const char *warn = strstr(md, "> **Busy machine:** 1 of");
    cr_expect(warn != NULL, "%s", md);
    cr_expect(warn && warn < strstr(md, "## What was run"), "the warning comes first");
    cr_expect(strstr(md, "load 7.9 on 2 cores") != NULL);
    free(md);
    json_decref(r);
}

/* ---------------------------------------------------------------- plot references */

Test(reports, scaling_plots_get_ticks_slopes_error_bars_and_kv_a_budget)
{
    /* quadratic results whose points have three repetitions of prefill_s (±10 %) */
    json_t *r = make_results();
    size_t i;
    json_t *pt;
    json_array_foreach(json_object_get(r, "points"), i, pt) {
        double pf = json_real_value(json_object_get(json_object_get(pt, "metrics"), "prefill_s"));
        json_t *reps = json_pack("[{s:f},{s:f},{s:f}]", "prefill_s", 0.9 * pf, "prefill_s", pf, "prefill_s", 1.1 * pf);
        json_object_set_new(pt, "repetitions", reps);
    }
    ibex_report_plots *p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    char dir[4096], path[4200];
    make_tmpdir(dir, sizeof dir);
    ibex_err e = {0};
    cr_assert_eq(ibex_report_plots_render(p, dir, NULL, "off", &e), IBEX_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/prefill_scaling.gp", dir);
    char *gp = slurp(path, NULL);
    cr_assert_not_null(gp);
    cr_expect(strstr(gp, "set xtics (128, 256, 512, 1024)") != NULL, "a tick at every prompt length: %s", gp);
    cr_expect(strstr(gp, "title '∝ n (reference: linear)'") != NULL, "%s", gp);
    cr_expect(strstr(gp, "title '∝ n² (reference: quadratic)'") != NULL, "%s", gp);
    cr_expect(strstr(gp, "using 1:2:3:4 with yerrorlines") != NULL, "error bars from repetitions: %s", gp);
    free(gp);
    snprintf(path, sizeof path, "%s/prefill_scaling.dat", dir);
    char *dat = slurp(path, NULL);
    cr_assert_not_null(dat);
    /* the whole prefill at 128 tokens: its three repetitions span 0.9..1.1 of the median */
    double pf = json_real_value(
        json_object_get(json_object_get(json_array_get(json_object_get(r, "points"), 0), "metrics"), "prefill_s"));
    char want[128];
    snprintf(want, sizeof want, "\n128 %.9g %.9g %.9g\n", pf, 0.9 * pf, 1.1 * pf);
    cr_expect(strstr(dat, want) != NULL, "want '%s' in %s", want + 1, dat);
    free(dat);
    rm_tree(dir);
    ibex_report_plots_free(p);
    json_decref(r);

    /* KV bars: a budget line at the pool */
    r = make_results_swept(N_PTS, true);
    p = ibex_report_plots_plan(r, NULL);
    cr_assert_not_null(p);
    make_tmpdir(dir, sizeof dir);
    cr_assert_eq(ibex_report_plots_render(p, dir, NULL, "off", &e), IBEX_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/kv_memory.gp", dir);
    gp = slurp(path, NULL);
    cr_assert_not_null(gp);
    cr_expect(strstr(gp, "256 with lines lc rgb '#c00000' dt 2 lw 2 title 'KV budget (pool) 256 MiB'") != NULL, "%s",
              gp);
    cr_expect(strstr(gp, "set yrange [0:286.72]") != NULL, "headroom over the budget line: %s", gp);
    free(gp);
    rm_tree(dir);
    ibex_report_plots_free(p);
    json_decref(r);
}

/* Report.md places every point that has a measured roofline against it: the section, its
 * source, the figures in GB/s and GFLOP/s and the fractions as percentages; a point
 * whose roofline was not measured says so; a run without any roofline has no section
 * (catches the section keyed on the wrong field, a fraction printed as a raw ratio, or
 * GB/s printed in bytes). */
Test(reports, roofline_section_places_points_against_the_measured_roofline)
{
    json_t *r = make_results();
    ibex_status st;
    char *md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    cr_assert_null(strstr(md, "## Against the roofline"), "no roofline, no section");
    free(md);
    json_t *pts = json_object_get(r, "points");
    json_object_set_new(json_array_get(pts, 0), "roofline",
                        json_pack("{s:s, s:s, s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "kind", "cpu", "method",
                                  "read_stream: 2 thread(s) reading 1024 MiB", "source", "measured once per run",
                                  "threads", 2, "read_bandwidth_bytes_per_s", 24e9, "peak_flops_per_s", 150e9,
                                  "decode_bytes_per_s", 21.6e9, "decode_fraction", 0.9, "prefill_flops_per_s", 90e9,
                                  "prefill_fraction", 0.6));
    json_object_set_new(json_array_get(pts, 1), "roofline",
                        json_pack("{s:s, s:s}", "kind", "none", "error", "no memory for a buffer"));
    md = capture_md(r, NULL, &st);
    cr_assert_eq(st, IBEX_OK);
    const char *sec = strstr(md, "## Against the roofline");
    cr_assert_not_null(sec);
    cr_assert_not_null(strstr(sec, "measured once per run"), "the roofline's source is named");
    const char *row = strstr(sec, "| 24.00 | 21.60 | 90.0% | - | - | - | 150.0 | 90.0 | 60.0% |");
    cr_assert_not_null(row, "point 0's row:\n%s", sec);
    cr_assert_not_null(strstr(sec, "not measured: no memory for a buffer"), "point 1 says why");
    cr_assert_null(strstr(sec, "bandwidth moved"), "no paired reads, no warning");
    free(md);
    /* paired weight reads: their bandwidth, the paired fraction and the spread; a spread
     * over 10 % names the point in a warning */
    json_object_set_new(json_object_get(json_array_get(pts, 0), "roofline"), "paired",
                        json_pack("{s:f, s:f, s:f}", "read_bytes_per_s", 25e9, "decode_fraction", 0.87, "read_spread",
                                  0.04));
    md = capture_md(r, NULL, &st);
    sec = strstr(md, "## Against the roofline");
    cr_assert_not_null(strstr(sec, "| 24.00 | 21.60 | 90.0% | 25.00 | 87.0% | 4.0% | 150.0 |"), "paired row:\n%s", sec);
    cr_assert_null(strstr(sec, "bandwidth moved"), "4 %% is no warning");
    free(md);
    json_object_set_new(json_object_get(json_object_get(json_array_get(pts, 0), "roofline"), "paired"), "read_spread",
                        json_real(0.18));
    md = capture_md(r, NULL, &st);
    sec = strstr(md, "## Against the roofline");
    cr_assert_not_null(strstr(sec, "read bandwidth moved by more than 10% during these points"), "%s", sec);
    cr_assert_not_null(strstr(sec, " #0 (18%)."), "the point is named with its spread:\n%s", sec);
    free(md);
    json_decref(r);
}
