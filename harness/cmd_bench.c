/* cmd_bench.c — `ibex bench`: llama-bench-style one-liners. As in llama-bench, prompt
 * processing and text generation are separate tests (-p 512 -n 128 gives pp512 and
 * tg128; -pg 512,128 adds the combined pp512+tg128; -d generates after a context of
 * that many tokens), every comma list or range multiplies the tests, and each test
 * reports t/s as mean ± sd over its repetitions. Each test is a point run through the
 * same runner as scenario files (its requests arriving at once, warm-up, repetitions);
 * one row per test goes to stdout as md (default), csv, json, jsonl or sql, with
 * llama-bench's field names plus ibex's own (KV policy, concurrency, weights).
 * Progress goes to stderr. */
#include "harness/bench.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model.h"
#include "harness/cli.h"
#include "harness/runner.h"
#include "harness/scenario.h"
#include "reports/reports.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex bench [options]   (lists are comma-separated; ranges first-last, first-last+step, first-last*mult)\n"
            "  -m, --model LIST        models (default synthetic:small)\n"
            "  -p, --n-prompt LIST     prompt-processing tests of that many tokens (default 512; 0 = none)\n"
            "  -n, --n-gen LIST        text-generation tests of that many tokens (default 128; 0 = none)\n"
            "  -pg P,N                 a prompt + generation test (repeatable: -pg 512,128 -pg 1024,256)\n"
            "  -d, --n-depth LIST      context tokens before each generation test (default 0)\n"
            "  -c, --concurrency LIST  concurrent requests per test, all arriving at once (default 1)\n"
            "      --kv LIST           KV policy none,contiguous,paged (default contiguous)\n"
            "  -t, --threads LIST      threads (default 0 = all cores; the table shows the resolved count)\n"
            "  -ctk, --kv-dtype LIST   KV cache element type f16,bf16,f32 (default f16, as llama-bench)\n"
            "      --dtype LIST        synthetic weights f32,f16,bf16 (default f16)\n"
            "  -r, --repetitions N     timed repetitions (default 5)\n"
            "      --no-warmup         no warm-up run before the repetitions (default: one)\n"
            "  -o, --output FORMAT     md (default) | csv | json | jsonl | sql\n"
            "      --progress          redraw progress per repetition on stderr\n"
            "      --out DIR           keep results.json and the reports in DIR\n"
            "t/s: pp = concurrency x prompt tokens / prefill time; tg = concurrency x generated tokens /\n"
            "decode time (after the context of -d tokens); pg = concurrency x (prompt + generated) / wall time.\n"
            "Per-op profiling stays off; -b (llama-bench's logical batch) does not exist here: use -c.\n"
            "A test longer than the model's context raises it, as llama-bench's n_ctx = p + n + d does (model_ctx:\n"
            "auto): such a point is marked beyond_trained_ctx (timings valid, output quality not).\n");
}

/* ---------------------------------------------------------------- lists */

/* A decimal number >= 0 at s; *big is set when it exceeds INT_MAX (or long long). */
static bool parse_ll(const char *s, const char **end, long long *v, bool *big) {
    if (*s < '0' || *s > '9') return false;
    char *e;
    errno = 0;
    *v = strtoll(s, &e, 10);
    *end = e;
    if (errno == ERANGE || *v > INT_MAX) *big = true;
    return !*big;
}

int ibex_bench_expand_list(const char *opt, const char *s, bool numeric, char out[][128], int cap, char *why,
                           size_t why_n) {
    if (!s || !*s) {
        snprintf(why, why_n, "%s needs a value", opt);
        return -1;
    }
    int n = 0;
    for (const char *item = s;;) {
        size_t len = strcspn(item, ",");
        char tok[128];
        if (len == 0) {
            snprintf(why, why_n, "%s: empty item in '%s'", opt, s);
            return -1;
        }
        if (len >= sizeof tok) {
            snprintf(why, why_n, "%s: item too long in '%s'", opt, s);
            return -1;
        }
        memcpy(tok, item, len), tok[len] = 0;
        if (!numeric) {
            if (n == cap) goto too_many;
            snprintf(out[n++], 128, "%s", tok);
        } else {
            long long a, b = 0, step = 1;
            const char *e;
            char op = '+';
            bool big = false;
            if (!parse_ll(tok, &e, &a, &big)) goto bad_number;
            if (*e == 0) {
                b = a;
            } else if (*e == '-') {
                if (!parse_ll(e + 1, &e, &b, &big)) goto bad_number;
                if (*e == '+' || *e == '*') {
                    op = *e;
                    if (!parse_ll(e + 1, &e, &step, &big)) goto bad_number;
                }
                if (*e) goto bad_number;
                if (b < a) {
                    snprintf(why, why_n, "%s: empty range '%s' (first > last)", opt, tok);
                    return -1;
                }
                if (op == '+' ? step <= 0 : step <= 1 || a == 0) {
                    snprintf(why, why_n, "%s: bad range '%s' (a step must be > 0, a factor > 1 from a first value > 0)", opt,
                             tok);
                    return -1;
                }
            } else {
                goto bad_number;
            }
            if (0) {
            bad_number:
                if (big) snprintf(why, why_n, "%s: number too large in '%s' (at most %d)", opt, tok, INT_MAX);
                else snprintf(why, why_n, "%s: '%s' is not a number >= 0 or a range first-last[+step|*mult]", opt, tok);
                return -1;
            }
            /* a, b, step <= INT_MAX, so v + step and v * step fit in long long */
            for (long long v = a; v <= b; v = op == '+' ? v + step : v * step) {
                if (n == cap) goto too_many;
                snprintf(out[n++], 128, "%lld", v);
            }
        }
        item += len;
        if (!*item) break;
        item++; /* the comma; an item after a trailing comma is empty */
    }
    return n;
too_many:
    snprintf(why, why_n, "%s: more than %d values in '%s'", opt, cap, s);
    return -1;
}

/* ---------------------------------------------------------------- tests */

enum { L_MODEL, L_PROMPT, L_GEN, L_DEPTH, L_CONC, L_KV, L_THREADS, L_DTYPE, L_KVT, L_COUNT };
#define MAXV 64
#define MAX_PG 16

typedef enum { T_PP, T_TG, T_PG } test_kind;

/* What one point measures: its llama-bench test and the numbers that make its t/s. */
typedef struct bench_test {
    test_kind kind;
    long n_prompt, n_gen, n_depth, conc;
} bench_test;

/* The shape of a GGUF model, to size its KV pool; the last one read is kept, as a bench
 * asks for the same model for test after test. */
typedef struct gguf_shape {
    char path[256];
    ibex_model_config cfg;
} gguf_shape;

static const ibex_model_config *gguf_config(const char *path, gguf_shape *c) {
    if (c->path[0] && !strcmp(c->path, path)) return &c->cfg;
    ibex_err err = {0};
    ibex_model *m = ibex_model_load(path, NULL, &err); /* mmap'd: no weight is read */
    if (!m) return NULL;
    c->cfg = m->cfg;
    snprintf(c->path, sizeof c->path, "%s", path);
    ibex_model_free(m);
    return &c->cfg;
}

static void test_name(const bench_test *t, char *buf, size_t n) {
    if (t->kind == T_PP) snprintf(buf, n, "pp%ld", t->n_prompt);
    else if (t->kind == T_TG) snprintf(buf, n, "tg%ld", t->n_gen);
    else snprintf(buf, n, "pp%ld+tg%ld", t->n_prompt, t->n_gen);
    if (t->n_depth > 0) snprintf(buf + strlen(buf), n - strlen(buf), " @ d%ld", t->n_depth);
}

/* The per-repetition samples of a test: time in ns and tokens per second. */
static size_t test_samples(const bench_test *t, const json_t *pt, double *ns, double *ts, size_t cap) {
    const char *key = t->kind == T_PP ? "prefill_s" : t->kind == T_TG ? "decode_s" : "wall_s";
    double tokens = (double)t->conc * (double)(t->kind == T_PP ? t->n_prompt : t->kind == T_TG ? t->n_gen
                                                                                                : t->n_prompt + t->n_gen);
    size_t n = 0, k;
    const json_t *rep;
    json_array_foreach(json_object_get(pt, "repetitions"), k, rep) {
        double s = json_number_value(json_object_get(rep, key));
        if (s > 0 && n < cap) ns[n] = s * 1e9, ts[n] = tokens / s, n++;
    }
    return n;
}

static void mean_sd(const double *v, size_t n, double *mean, double *sd) {
    double m = 0, q = 0;
    for (size_t i = 0; i < n; i++) m += v[i];
    m = n ? m / (double)n : NAN;
    for (size_t i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(q / (double)(n - 1)) : 0;
}

/* One output row with llama-bench's field names, then ibex's. */

/* A count from results.json as a JSON integer, or null where the point never got that far
 * (a model that failed to load has no size): casting NaN to an integer is undefined. */
static json_t *int_or_null(double v) {
    return isfinite(v) && fabs(v) < 9.2e18 ? json_integer((json_int_t)v) : json_null();
}
static json_t *row_json(const json_t *res, const json_t *pt, const bench_test *t) {
    double ns[1024], ts[1024];
    size_t n = test_samples(t, pt, ns, ts, 1024);
    double avg_ns, sd_ns, avg_ts, sd_ts;
    mean_sd(ns, n, &avg_ns, &sd_ns);
    mean_sd(ts, n, &avg_ts, &sd_ts);
    json_t *sns = json_array(), *sts = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(sns, json_integer((json_int_t)llround(ns[i]))),
                                   json_array_append_new(sts, json_real(ts[i]));
    double thr = ibex_report_num(pt, "conditions/threads");
    if (!(thr > 0)) thr = ibex_report_num(pt, "params/threads");
    if (!(thr > 0)) thr = (double)sysconf(_SC_NPROCESSORS_ONLN); /* threads 0 = all cores */
    const char *model = ibex_report_str(pt, "params/model"), *w = ibex_report_str(pt, "params/weights");
    char type[160];
    snprintf(type, sizeof type, "%s %s", model ? model : "?", w ? w : "");
    const char *kvt = ibex_report_str(pt, "params/kv.dtype");
    const char *gpu = ibex_report_str(pt, "device/name");
    const char *be = ibex_report_str(pt, "backend_used");
    if (!be) be = ibex_report_str(pt, "params/backend");
    const char *st = ibex_report_str(pt, "status");
    json_t *o = json_object();
    json_object_set_new(o, "build_commit", json_string(ibex_report_str(res, "ibex/commit") ? ibex_report_str(res, "ibex/commit") : ""));
    json_object_set_new(o, "build_number", json_integer(0));
    json_object_set_new(o, "cpu_info", json_string(ibex_report_str(res, "machine/cpu") ? ibex_report_str(res, "machine/cpu") : ""));
    json_object_set_new(o, "gpu_info", json_string(gpu ? gpu : ""));
    json_object_set_new(o, "backends", json_string(be ? be : "cpu"));
    json_object_set_new(o, "model_filename", json_string(model ? model : ""));
    json_object_set_new(o, "model_type", json_string(type));
    json_object_set_new(o, "model_size", int_or_null(ibex_report_num(pt, "model/weight_bytes")));
    json_object_set_new(o, "model_n_params", int_or_null(ibex_report_num(pt, "model/n_params")));
    json_object_set_new(o, "n_batch", int_or_null(ibex_report_num(pt, "params/max_step_tokens")));
    json_object_set_new(o, "n_threads", int_or_null(thr));
    json_object_set_new(o, "type_k", json_string(kvt ? kvt : ""));
    json_object_set_new(o, "type_v", json_string(kvt ? kvt : ""));
    json_object_set_new(o, "n_prompt", json_integer(t->kind == T_TG ? 0 : t->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(t->kind == T_PP ? 0 : t->n_gen));
    json_object_set_new(o, "n_depth", json_integer(t->n_depth));
    json_object_set_new(o, "test_time", json_string(ibex_report_str(res, "timestamp") ? ibex_report_str(res, "timestamp") : ""));
    json_object_set_new(o, "avg_ns", n ? json_integer((json_int_t)llround(avg_ns)) : json_null());
    json_object_set_new(o, "stddev_ns", n ? json_integer((json_int_t)llround(sd_ns)) : json_null());
    json_object_set_new(o, "avg_ts", n ? json_real(avg_ts) : json_null());
    json_object_set_new(o, "stddev_ts", n ? json_real(sd_ts) : json_null());
    json_object_set_new(o, "samples_ns", sns);
    json_object_set_new(o, "samples_ts", sts);
    /* ibex's own columns */
    json_object_set_new(o, "kv_policy", json_string(ibex_report_str(pt, "params/kv.policy") ? ibex_report_str(pt, "params/kv.policy") : ""));
    json_object_set_new(o, "concurrency", json_integer(t->conc));
    json_object_set_new(o, "weights", json_string(w ? w : ""));
    json_object_set_new(o, "status", json_string(st ? st : "?"));
    const char *er = ibex_report_str(pt, "error");
    json_object_set_new(o, "error", er ? json_string(er) : json_null());
    return o;
}

/* The columns of csv and sql, in order, with their SQL types. */
static const struct {
    const char *name, *sql;
} k_cols[] = {
    {"build_commit", "TEXT"}, {"build_number", "INTEGER"}, {"cpu_info", "TEXT"}, {"gpu_info", "TEXT"},
    {"backends", "TEXT"}, {"model_filename", "TEXT"}, {"model_type", "TEXT"}, {"model_size", "INTEGER"},
    {"model_n_params", "INTEGER"}, {"n_batch", "INTEGER"}, {"n_threads", "INTEGER"}, {"type_k", "TEXT"},
    {"type_v", "TEXT"}, {"n_prompt", "INTEGER"}, {"n_gen", "INTEGER"}, {"n_depth", "INTEGER"}, {"test_time", "TEXT"},
    {"avg_ns", "INTEGER"}, {"stddev_ns", "INTEGER"}, {"avg_ts", "REAL"}, {"stddev_ts", "REAL"}, {"samples_ns", "TEXT"},
    {"samples_ts", "TEXT"}, {"kv_policy", "TEXT"}, {"concurrency", "INTEGER"}, {"weights", "TEXT"}, {"status", "TEXT"},
    {"error", "TEXT"},
};
#define N_COLS (sizeof k_cols / sizeof k_cols[0])

/* A value as csv/sql text: strings quoted (quote doubled), arrays as space-separated
 * numbers in a string (as llama-bench does), null as NULL (sql) or empty (csv). */
static void put_value(FILE *f, const json_t *v, bool sql) {
    if (!v || json_is_null(v)) {
        fputs(sql ? "NULL" : "", f);
    } else if (json_is_integer(v)) {
        fprintf(f, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        fprintf(f, "%.6f", json_real_value(v));
    } else {
        const char q = sql ? '\'' : '"';
        fputc(q, f);
        if (json_is_array(v)) {
            size_t i;
            const json_t *x;
            json_array_foreach(v, i, x) {
                if (i) fputc(' ', f);
                if (json_is_integer(x)) fprintf(f, "%lld", (long long)json_integer_value(x));
                else fprintf(f, "%.6f", json_number_value(x));
            }
        } else {
            for (const char *c = json_string_value(v); c && *c; c++) {
                if (*c == q) fputc(q, f);
                fputc(*c, f);
            }
        }
        fputc(q, f);
    }
}

static void print_rows(FILE *f, const char *fmt, json_t *rows, const bench_test *tests) {
    size_t i;
    json_t *r;
    if (!strcmp(fmt, "json")) {
        char *txt = json_dumps(rows, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (txt) fprintf(f, "%s\n", txt);
        free(txt);
    } else if (!strcmp(fmt, "jsonl")) {
        json_array_foreach(rows, i, r) {
            char *txt = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (txt) fprintf(f, "%s\n", txt);
            free(txt);
        }
    } else if (!strcmp(fmt, "csv") || !strcmp(fmt, "sql")) {
        bool sql = !strcmp(fmt, "sql");
        if (sql) {
            fprintf(f, "CREATE TABLE IF NOT EXISTS test (\n");
            for (size_t c = 0; c < N_COLS; c++) fprintf(f, "  %s %s%s\n", k_cols[c].name, k_cols[c].sql, c + 1 < N_COLS ? "," : "");
            fprintf(f, ");\n");
        } else {
            for (size_t c = 0; c < N_COLS; c++) fprintf(f, "%s%s", c ? "," : "", k_cols[c].name);
            fprintf(f, "\n");
        }
        json_array_foreach(rows, i, r) {
            if (sql) {
                fprintf(f, "INSERT INTO test (");
                for (size_t c = 0; c < N_COLS; c++) fprintf(f, "%s%s", c ? ", " : "", k_cols[c].name);
                fprintf(f, ") VALUES (");
            }
            for (size_t c = 0; c < N_COLS; c++) {
                if (c) fputs(sql ? ", " : ",", f);
                put_value(f, json_object_get(r, k_cols[c].name), sql);
            }
            fprintf(f, sql ? ");\n" : "\n");
        }
    } else { /* md, llama-bench's columns plus ibex's KV policy and concurrency */
        fprintf(f, "| model | size | params | backend | threads | type_k | kv | conc | test | t/s |\n"
                   "| --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | ---: |\n");
        json_array_foreach(rows, i, r) {
            char name[64], ts[96], sz[32];
            test_name(&tests[i], name, sizeof name);
            if (json_is_number(json_object_get(r, "avg_ts")))
                snprintf(ts, sizeof ts, "%.2f ± %.2f", json_number_value(json_object_get(r, "avg_ts")),
                         json_number_value(json_object_get(r, "stddev_ts")));
            else
                snprintf(ts, sizeof ts, "%s", json_string_value(json_object_get(r, "status")));
            double np = (double)json_integer_value(json_object_get(r, "model_n_params"));
            char nps[32] = "-";
            if (json_is_integer(json_object_get(r, "model_n_params")))
                snprintf(nps, sizeof nps, "%.2f %s", np >= 1e9 ? np / 1e9 : np / 1e6, np >= 1e9 ? "B" : "M");
            if (json_is_integer(json_object_get(r, "model_size")))
                ibex_report_fmt_bytes((double)json_integer_value(json_object_get(r, "model_size")), sz, sizeof sz);
            else
                snprintf(sz, sizeof sz, "-");
            fprintf(f, "| %s | %s | %s | %s | %lld | %s | %s | %lld | %s | %s |\n",
                    json_string_value(json_object_get(r, "model_type")), sz, nps,
                    json_string_value(json_object_get(r, "backends")),
                    (long long)json_integer_value(json_object_get(r, "n_threads")),
                    json_string_value(json_object_get(r, "type_k")), json_string_value(json_object_get(r, "kv_policy")),
                    (long long)json_integer_value(json_object_get(r, "concurrency")), name, ts);
        }
    }
}

/* ---------------------------------------------------------------- the command */

int ibex_cmd_bench(int argc, char **argv) {
    static char vals[L_COUNT][MAXV][128];
    int nv[L_COUNT] = {0};
    const char *defaults[L_COUNT] = {"synthetic:small", "512", "128", "0", "1", "contiguous", "0", "f16", "f16"};
    long pg[MAX_PG][2];
    int npg = 0;
    const char *fmt = "md", *out = NULL;
    int64_t reps = 5;
    bool warmup = true, progress = false;
    char why[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = -1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            k = L_MODEL;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            k = L_PROMPT;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            k = L_GEN;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) {
            k = L_DEPTH;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--concurrency")) {
            k = L_CONC;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size") || !strcmp(a, "--batch") || !strcmp(a, "-ub")) {
            fprintf(stderr,
                    "ibex bench: %s: llama-bench's -b/-ub set the logical/physical batch size of one prompt, which ibex\n"
                    "does not have (a prefill runs whole, up to max_step_tokens); for concurrent requests use -c/--concurrency\n",
                    a);
            return 2;
        } else if (!strcmp(a, "--kv")) {
            k = L_KV;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            k = L_THREADS;
        } else if (!strcmp(a, "--dtype")) {
            k = L_DTYPE;
        } else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k") || !strcmp(a, "--kv-dtype")) {
            k = L_KVT; /* llama-bench's -ctk: K and V share the type here */
        } else if (!strcmp(a, "-pg")) {
            char two[2][128];
            int m = ibex_bench_expand_list(a, v, true, two, 2, why, sizeof why);
            if (m != 2 || strchr(v, '-') || strchr(v, '*') || strchr(v, '+')) {
                fprintf(stderr, "ibex bench: %s\n", m < 0 ? why : "-pg: needs two numbers P,N (prompt, generated tokens)");
                return 2;
            }
            if (npg == MAX_PG) {
                fprintf(stderr, "ibex bench: -pg: at most %d pairs\n", MAX_PG);
                return 2;
            }
            pg[npg][0] = atol(two[0]), pg[npg][1] = atol(two[1]);
            if (pg[npg][0] <= 0 || pg[npg][1] <= 0) {
                fprintf(stderr, "ibex bench: -pg: '%s': both P and N must be > 0\n", v);
                return 2;
            }
            npg++, i++;
            continue;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            if (!ibex_cli_int("bench", a, v, 1, 1000, &reps)) return 2;
            i++;
            continue;
        } else if (!strcmp(a, "--no-warmup")) {
            warmup = false;
            continue;
        } else if (!strcmp(a, "--progress")) {
            progress = true;
            continue;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            if (strcmp(v, "md") && strcmp(v, "csv") && strcmp(v, "json") && strcmp(v, "jsonl") && strcmp(v, "sql")) {
                fprintf(stderr, "ibex bench: -o: '%s' is not md, csv, json, jsonl or sql\n", v);
                return 2;
            }
            fmt = v, i++;
            continue;
        } else if (!strcmp(a, "--out") && v) {
            out = v, i++;
            continue;
        } else {
            static const char *const opts[] = {"--model", "--n-prompt", "--n-gen", "--n-depth", "--concurrency", "--kv",
                                               "--threads", "--dtype", "--kv-dtype", "--cache-type-k", "--repetitions", "--no-warmup", "--progress",
                                               "--output", "--out", "--help", NULL};
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            fprintf(stderr, "ibex bench: unknown option or missing value '%s'%s%s%s\n", a, s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            return 2;
        }
        bool numeric = k != L_MODEL && k != L_KV && k != L_DTYPE && k != L_KVT;
        if ((nv[k] = ibex_bench_expand_list(a, v, numeric, vals[k], MAXV, why, sizeof why)) < 0) {
            fprintf(stderr, "ibex bench: %s\n", why);
            return 2;
        }
        i++;
    }
    for (int k = 0; k < L_COUNT; k++)
        if (nv[k] == 0) snprintf(vals[k][0], 128, "%s", defaults[k]), nv[k] = 1;
    for (int j = 0; j < nv[L_CONC]; j++)
        if (atol(vals[L_CONC][j]) < 1) {
            fprintf(stderr, "ibex bench: -c: concurrency must be >= 1, got %s\n", vals[L_CONC][j]);
            return 2;
        }

    /* The tests of one configuration: pp for every -p > 0 (context 0 only: ibex cannot
     * time the last P tokens of a prefill apart from the first D), tg for every -n > 0
     * at every depth, pg for every pair (depth 0 only, for the same reason). */
    int n_kinds = 0;
    static bench_test kinds[2 * MAXV * MAXV + MAXV * MAX_PG];
    int skipped = 0;
    for (int d = 0; d < nv[L_DEPTH]; d++) {
        long depth = atol(vals[L_DEPTH][d]);
        for (int j = 0; j < nv[L_PROMPT]; j++) {
            long p = atol(vals[L_PROMPT][j]);
            if (p <= 0) continue;
            if (depth > 0) skipped++;
            else kinds[n_kinds++] = (bench_test){T_PP, p, 0, 0, 0};
        }
        for (int j = 0; j < nv[L_GEN]; j++) {
            long g = atol(vals[L_GEN][j]);
            if (g > 0) kinds[n_kinds++] = (bench_test){T_TG, 0, g, depth, 0};
        }
        for (int j = 0; j < npg; j++) {
            if (depth > 0) skipped++;
            else kinds[n_kinds++] = (bench_test){T_PG, pg[j][0], pg[j][1], 0, 0};
        }
    }
    if (skipped)
        fprintf(stderr, "ibex bench: note: %d prompt test(s) at depth > 0 left out (a prefill after a context cannot be timed "
                        "apart from it here); generation tests run at every depth\n", skipped);
    if (n_kinds == 0) {
        fprintf(stderr, "ibex bench: no test to run (-p, -n and -pg give none)\n");
        return 2;
    }
    int64_t total = n_kinds;
    for (int k = 0; k < L_COUNT; k++)
        if (k != L_PROMPT && k != L_GEN && k != L_DEPTH) total *= nv[k];
    if (total > 10000) {
        fprintf(stderr, "ibex bench: %lld tests is too many (10000 at most)\n", (long long)total);
        return 2;
    }
    static const int conf_lists[] = {L_MODEL, L_DTYPE, L_THREADS, L_KV, L_KVT, L_CONC};
    const int n_conf = sizeof conf_lists / sizeof *conf_lists;
    static const char *conf_keys[] = {"model", "weights", "threads", "kv.policy", "kv.dtype", "batch"};
    ibex_scenario *s = calloc(1, sizeof *s);
    bench_test *tests = calloc((size_t)total, sizeof *tests);
    if (!s || !tests) {
        free(s), free(tests);
        fprintf(stderr, "ibex bench: out of memory\n");
        return 1;
    }
    /* swept keys: those of the configuration lists that vary, and always the lengths */
    const char *swept[8];
    int n_swept = 0;
    for (int c = 0; c < n_conf; c++)
        if (nv[conf_lists[c]] > 1) swept[n_swept++] = conf_keys[c];
    swept[n_swept++] = "workload.prompt_tokens", swept[n_swept++] = "workload.output_tokens";
    s->points = calloc((size_t)total, sizeof *s->points);
    s->swept = calloc((size_t)total * n_swept, sizeof *s->swept);
    if (!s->points || !s->swept) {
        ibex_scenario_free(s), free(tests);
        fprintf(stderr, "ibex bench: out of memory\n");
        return 1;
    }
    snprintf(s->name, sizeof s->name, "bench");
    snprintf(s->path, sizeof s->path, "(ibex bench)");
    snprintf(s->description, sizeof s->description, "ibex bench one-liner");
    s->n_points = (int32_t)total;
    s->n_swept = n_swept;
    ibex_err err = {0};
    char rstr[32];
    snprintf(rstr, sizeof rstr, "%lld", (long long)reps);
    gguf_shape gguf_cache = {0};
    for (int64_t i = 0; i < total; i++) {
        ibex_point *p = &s->points[i];
        *p = ibex_point_default();
        int64_t rem = i;
        int idx[8];
        bench_test t = kinds[rem % n_kinds]; /* tests fastest, as llama-bench lists them */
        rem /= n_kinds;
        for (int c = n_conf - 1; c >= 0; c--) idx[c] = (int)(rem % nv[conf_lists[c]]), rem /= nv[conf_lists[c]];
        t.conc = atol(vals[L_CONC][idx[n_conf - 1]]);
        tests[i] = t;
        /* pp: the prompt and the one token its prefill step samples; tg: a context of
         * max(depth, 1) tokens, then n_gen decode steps; pg: prompt + n_gen tokens */
        long prompt = t.kind == T_TG ? (t.n_depth > 1 ? t.n_depth : 1) : t.n_prompt;
        long gen = t.kind == T_PP ? 1 : t.kind == T_TG ? t.n_gen + 1 : t.n_gen;
        char ps[32], gs[32];
        snprintf(ps, sizeof ps, "%ld", prompt), snprintf(gs, sizeof gs, "%ld", gen);
        /* model_ctx: auto — like llama-bench (n_ctx = p + n + d), a test longer than the
         * model's context raises it, and the point records beyond_trained_ctx */
        const char *kv[][2] = {{"repeat", rstr}, {"warmup", warmup ? "1" : "0"}, {"workload.ignore_eos", "true"},
                               {"model_ctx", "auto"},
                               {"workload.requests", vals[L_CONC][idx[n_conf - 1]]}, {"max_step_tokens", "4096"},
                               {"workload.prompt_tokens", ps}, {"workload.output_tokens", gs}, {"kv.budget", "1GiB"}};
        for (size_t j = 0; j < sizeof kv / sizeof kv[0]; j++)
            if (ibex_point_set(p, kv[j][0], kv[j][1], NULL, &err)) goto bad;
        static const char *opt_names[] = {"-m", "--dtype", "-t", "--kv", "-ctk", "-c"};
        for (int c = 0; c < n_conf; c++)
            if (ibex_point_set(p, conf_keys[c], vals[conf_lists[c]][idx[c]], opt_names[c], &err)) goto bad;
        /* The KV pool holds exactly the test's requests for a synthetic model (instead
         * of a 1 GiB pool zeroed at every repetition); a GGUF keeps the 1 GiB unless the
         * test needs more (a long -d on a 7B model: 0.5 MiB per token in F16). */
        {
            const ibex_model_config *mc = NULL;
            if (!strncmp(p->model, "synthetic:", 10)) {
                const ibex_synthetic_preset *pr = ibex_synthetic_find(p->model + 10);
                if (pr) mc = &pr->cfg;
            } else {
                mc = gguf_config(p->model, &gguf_cache); /* NULL: the run reports the file's problem */
            }
            if (mc) {
                int64_t bs = p->engine.kv.block_size, blocks = (prompt + gen + bs - 1) / bs + 1;
                int64_t need = t.conc * blocks * bs * ibex_model_kv_bytes_per_token(mc, p->engine.kv.elem_bytes);
                if (mc != &gguf_cache.cfg || need > p->engine.kv.budget_bytes) p->engine.kv.budget_bytes = need;
            }
        }
        char where[96];
        char tn[64];
        test_name(&t, tn, sizeof tn);
        snprintf(where, sizeof where, "test %s", tn);
        if (ibex_point_check(p, where, &err)) goto bad;
        for (int j = 0; j < n_swept; j++) {
            ibex_sweep_value *sv = &s->swept[i * n_swept + j];
            snprintf(sv->key, sizeof sv->key, "%s", swept[j]);
            const char *val = !strcmp(swept[j], "workload.prompt_tokens") ? ps : !strcmp(swept[j], "workload.output_tokens") ? gs : NULL;
            for (int c = 0; c < n_conf && !val; c++)
                if (!strcmp(swept[j], conf_keys[c])) val = vals[conf_lists[c]][idx[c]];
            snprintf(sv->value, sizeof sv->value, "%s", val ? val : "");
        }
    }
    char dir[1024];
    if (out) {
        snprintf(dir, sizeof dir, "%s", out);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/ibex-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "ibex bench: cannot create a temporary directory in %s: %s\n", tmp && *tmp ? tmp : "/tmp",
                    strerror(errno));
            ibex_scenario_free(s), free(tests);
            return 1;
        }
    }
    static volatile sig_atomic_t never;
    ibex_run_opts o = {.out_dir = dir, .progress_tty = progress && isatty(2), .interrupted = &never};
    ibex_status st = ibex_run_scenario(s, &o, &err);
    ibex_scenario_free(s);
    if (st) {
        fprintf(stderr, "ibex bench: %s\n", err.msg);
        free(tests);
        return 1;
    }
    json_t *res = ibex_report_load(dir, &err);
    if (!res) {
        fprintf(stderr, "ibex bench: %s\n", err.msg);
        free(tests);
        return 1;
    }
    const json_t *pts = json_object_get(res, "points");
    json_t *rows = json_array();
    int rc = 0;
    for (size_t i = 0; i < json_array_size(pts) && i < (size_t)total; i++) {
        const json_t *pt = json_array_get(pts, i);
        json_array_append_new(rows, row_json(res, pt, &tests[i]));
        const char *pst = ibex_report_str(pt, "status");
        if (!pst || strcmp(pst, "ok")) rc = 1;
    }
    print_rows(stdout, fmt, rows, tests);
    json_decref(rows);
    free(tests);
    if (out) {
        if (ibex_report_write_all(dir, &err)) fprintf(stderr, "ibex bench: reports: %s\n", err.msg), rc = 1;
    } else {
        char p1[1100];
        static const char *files[] = {"results.json", "trace.json"};
        for (int i = 0; i < 2; i++) snprintf(p1, sizeof p1, "%s/%s", dir, files[i]), remove(p1);
        rmdir(dir);
    }
    json_decref(res);
    return rc;
bad:
    fprintf(stderr, "ibex bench: %s\n", err.msg);
    ibex_scenario_free(s), free(tests);
    return 2;
}
