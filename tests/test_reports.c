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

static char *capture_md(const json_t *r, const ibex_report_plots *p, ibex_status *st)
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
    cr_assert(strstr(gp, " dt 2 title 'contiguous batch=32 used'") != NULL, "%s", gp);
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
    cr_assert(strstr(md, "| 0 | 128 | ok | 250 ms |") != NULL, "%s", md);
    cr_assert(strstr(md, "| 3 | 1024 | ok | 550 ms |") != NULL, "%s", md);
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
