/* cmd_bench.c — `ibex bench`: llama-bench-style one-liners. Comma lists and ranges
 * (-p 128,512  -n 32-128*2  -b 1,4  --kv contiguous,paged) expand to every combination;
 * each combination is a point run through the same runner as scenario files (batch
 * requests arriving at once, warm-up, repetitions), and one table row per point goes
 * to stdout as md (default), csv, json or jsonl. Progress goes to stderr. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/cli.h"
#include "harness/runner.h"
#include "harness/scenario.h"
#include "reports/reports.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex bench [options]   (every list is comma-separated; ranges a-b+s or a-b*m)\n"
            "  -m, --model LIST       models (default synthetic:small)\n"
            "  -p, --n-prompt LIST    prompt tokens (default 512)\n"
            "  -n, --n-gen LIST       generated tokens (default 128)\n"
            "  -b, --batch LIST       concurrent requests (default 1)\n"
            "      --kv LIST          none,contiguous,paged (default contiguous)\n"
            "  -t, --threads LIST     threads (default all cores)\n"
            "      --dtype LIST       synthetic weights f32,f16,bf16 (default f16)\n"
            "  -r, --repetitions N    timed repetitions (default 5), after one warm-up\n"
            "  -o, --output FORMAT    md (default) | csv | json | jsonl\n"
            "      --out DIR          keep results.json and the reports in DIR\n");
}

/* Expands "1,2,8-32*2,100-300+100" into strings; numbers only for ranges. */
static int expand_list(const char *opt, const char *s, char out[][128], int cap) {
    int n = 0;
    char buf[1024];
    if (!s || strlen(s) >= sizeof buf) {
        fprintf(stderr, "ibex bench: %s needs a value\n", opt);
        return -1;
    }
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long a, b, step;
        char op;
        int used = 0;
        if (sscanf(tok, "%ld-%ld%c%ld%n", &a, &b, &op, &step, &used) == 4 && tok[used] == 0 &&
            (op == '+' || op == '*')) {
            if (a <= 0 || b < a || step <= (op == '*' ? 1 : 0)) {
                fprintf(stderr, "ibex bench: %s: bad range '%s' (a-b+step or a-b*factor, 0 < a <= b)\n", opt, tok);
                return -1;
            }
            for (long v = a; v <= b; v = op == '+' ? v + step : v * step) {
                if (n == cap) goto too_many;
                snprintf(out[n++], 128, "%ld", v);
            }
        } else {
            if (n == cap) goto too_many;
            snprintf(out[n++], 128, "%s", tok);
        }
    }
    if (n == 0) fprintf(stderr, "ibex bench: %s: empty list\n", opt);
    return n ? n : -1;
too_many:
    fprintf(stderr, "ibex bench: %s: more than %d values\n", opt, cap);
    return -1;
}

enum { K_MODEL, K_PROMPT, K_GEN, K_BATCH, K_KV, K_THREADS, K_DTYPE, K_COUNT };
static const char *k_keys[K_COUNT] = {"model", "workload.prompt_tokens", "workload.output_tokens", "batch",
                                      "kv.policy", "threads", "weights"};
#define MAXV 64

static void print_row(FILE *f, const char *fmt, const json_t *pt, bool header) {
    static const char *cols[] = {"model", "weights", "threads", "kv", "batch", "prompt", "gen",
                                 "prefill t/s", "decode t/s", "TTFT p50 s", "TPOT p50 s", "KV peak MiB", "status"};
    const int nc = sizeof cols / sizeof cols[0];
    bool md = !strcmp(fmt, "md");
    if (header) {
        if (md || !strcmp(fmt, "csv")) {
            for (int i = 0; i < nc; i++) fprintf(f, md ? "| %s " : i ? ",%s" : "%s", cols[i]);
            fprintf(f, md ? "|\n" : "\n");
            if (md) {
                for (int i = 0; i < nc; i++) fprintf(f, i < 7 ? "|---" : "|---:");
                fprintf(f, "|\n");
            }
        }
        return;
    }
    const json_t *par = json_object_get(pt, "params");
    char vals[13][96];
    snprintf(vals[0], 96, "%s", ibex_report_str(pt, "params/model") ? ibex_report_str(pt, "params/model") : "");
    snprintf(vals[1], 96, "%s", ibex_report_str(pt, "params/weights") ? ibex_report_str(pt, "params/weights") : "");
    snprintf(vals[2], 96, "%g", ibex_report_num(pt, "params/threads"));
    snprintf(vals[3], 96, "%s", ibex_report_str(pt, "params/kv.policy") ? ibex_report_str(pt, "params/kv.policy") : "");
    snprintf(vals[4], 96, "%g", ibex_report_num(pt, "params/batch"));
    snprintf(vals[5], 96, "%g", ibex_report_num(pt, "params/workload.prompt_tokens/value"));
    snprintf(vals[6], 96, "%g", ibex_report_num(pt, "params/workload.output_tokens/value"));
    snprintf(vals[7], 96, "%.2f", ibex_report_num(pt, "metrics/prefill_tok_per_s"));
    snprintf(vals[8], 96, "%.2f", ibex_report_num(pt, "metrics/decode_tok_per_s"));
    snprintf(vals[9], 96, "%.4f", ibex_report_num(pt, "metrics/ttft/p50"));
    snprintf(vals[10], 96, "%.4f", ibex_report_num(pt, "metrics/tpot/p50"));
    snprintf(vals[11], 96, "%.2f", ibex_report_num(pt, "kv/peak_reserved") / 1048576.0);
    snprintf(vals[12], 96, "%s", ibex_report_str(pt, "status") ? ibex_report_str(pt, "status") : "");
    (void)par;
    if (md) {
        for (int i = 0; i < nc; i++) fprintf(f, "| %s ", vals[i]);
        fprintf(f, "|\n");
    } else if (!strcmp(fmt, "csv")) {
        for (int i = 0; i < nc; i++) fprintf(f, i ? ",\"%s\"" : "\"%s\"", vals[i]);
        fprintf(f, "\n");
    } else { /* jsonl: the whole point, one line */
        char *line = json_dumps(pt, JSON_COMPACT);
        if (line) fprintf(f, "%s\n", line);
        free(line);
    }
}

int ibex_cmd_bench(int argc, char **argv) {
    static char vals[K_COUNT][MAXV][128];
    int nv[K_COUNT] = {0};
    const char *defaults[K_COUNT] = {"synthetic:small", "512", "128", "1", "contiguous", "0", "f16"};
    const char *fmt = "md", *out = NULL;
    int64_t reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = -1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            k = K_MODEL;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            k = K_PROMPT;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            k = K_GEN;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            k = K_BATCH;
        } else if (!strcmp(a, "--kv")) {
            k = K_KV;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            k = K_THREADS;
        } else if (!strcmp(a, "--dtype")) {
            k = K_DTYPE;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            if (!ibex_cli_int("bench", a, v, 1, 1000, &reps)) return 2;
            i++;
            continue;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            if (strcmp(v, "md") && strcmp(v, "csv") && strcmp(v, "json") && strcmp(v, "jsonl")) {
                fprintf(stderr, "ibex bench: -o: '%s' is not md, csv, json or jsonl\n", v);
                return 2;
            }
            fmt = v, i++;
            continue;
        } else if (!strcmp(a, "--out") && v) {
            out = v, i++;
            continue;
        } else {
            static const char *const opts[] = {"--model", "--n-prompt", "--n-gen", "--batch", "--kv", "--threads",
                                               "--dtype", "--repetitions", "--output", "--out", "--help", NULL};
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            fprintf(stderr, "ibex bench: unknown option or missing value '%s'%s%s%s\n", a, s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            return 2;
        }
        if ((nv[k] = expand_list(a, v, vals[k], MAXV)) < 0) return 2;
        i++;
    }
    for (int k = 0; k < K_COUNT; k++)
        if (nv[k] == 0) snprintf(vals[k][0], 128, "%s", defaults[k]), nv[k] = 1;
    int64_t total = 1;
    for (int k = 0; k < K_COUNT; k++) total *= nv[k];
    if (total > 10000) {
        fprintf(stderr, "ibex bench: %lld combinations is too many (10000 at most)\n", (long long)total);
        return 2;
    }
    ibex_scenario *s = calloc(1, sizeof *s);
    int n_swept = 0, swept_k[K_COUNT];
    for (int k = 0; k < K_COUNT; k++)
        if (nv[k] > 1) swept_k[n_swept++] = k;
    s->points = calloc((size_t)total, sizeof *s->points);
    s->swept = calloc((size_t)total * (n_swept ? n_swept : 1), sizeof *s->swept);
    if (!s->points || !s->swept) {
        ibex_scenario_free(s);
        return 1;
    }
    snprintf(s->name, sizeof s->name, "bench");
    snprintf(s->path, sizeof s->path, "(ibex bench)");
    snprintf(s->description, sizeof s->description, "ibex bench one-liner");
    s->n_points = (int32_t)total;
    s->n_swept = n_swept;
    ibex_err err = {0};
    for (int64_t i = 0; i < total; i++) {
        ibex_point *p = &s->points[i];
        *p = ibex_point_default();
        int64_t rem = i;
        int idx[K_COUNT];
        for (int k = K_COUNT - 1; k >= 0; k--) idx[k] = (int)(rem % nv[k]), rem /= nv[k]; /* last key fastest */
        char reqs[32];
        snprintf(reqs, sizeof reqs, "%s", vals[K_BATCH][idx[K_BATCH]]);
        char rstr[32], budget[32];
        snprintf(rstr, sizeof rstr, "%lld", (long long)reps);
        snprintf(budget, sizeof budget, "%s", "1GiB");
        const char *kv[][2] = {{"repeat", rstr}, {"warmup", "1"}, {"profile", "true"}, {"workload.ignore_eos", "true"},
                               {"workload.requests", reqs}, {"kv.budget", budget}, {"max_step_tokens", "4096"}};
        for (size_t j = 0; j < sizeof kv / sizeof kv[0]; j++)
            if (ibex_point_set(p, kv[j][0], kv[j][1], "ibex bench", &err)) goto bad;
        for (int k = 0; k < K_COUNT; k++)
            if (ibex_point_set(p, k_keys[k], vals[k][idx[k]], "ibex bench", &err)) goto bad;
        if (ibex_point_check(p, "ibex bench", &err)) goto bad;
        for (int j = 0; j < n_swept; j++) {
            ibex_sweep_value *sv = &s->swept[i * n_swept + j];
            snprintf(sv->key, sizeof sv->key, "%s", k_keys[swept_k[j]]);
            snprintf(sv->value, sizeof sv->value, "%s", vals[swept_k[j]][idx[swept_k[j]]]);
        }
    }
    char dir[1024];
    if (out) {
        snprintf(dir, sizeof dir, "%s", out);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/ibex-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "ibex bench: cannot create a temporary directory\n");
            ibex_scenario_free(s);
            return 1;
        }
    }
    static volatile sig_atomic_t never;
    ibex_run_opts o = {.out_dir = dir, .progress_tty = isatty(2), .interrupted = &never};
    ibex_status st = ibex_run_scenario(s, &o, &err);
    ibex_scenario_free(s);
    if (st) {
        fprintf(stderr, "ibex bench: %s\n", err.msg);
        return 1;
    }
    json_t *res = ibex_report_load(dir, &err);
    if (!res) {
        fprintf(stderr, "ibex bench: %s\n", err.msg);
        return 1;
    }
    const json_t *pts = json_object_get(res, "points");
    if (!strcmp(fmt, "json")) {
        char *txt = json_dumps(res, JSON_INDENT(1));
        if (txt) puts(txt);
        free(txt);
    } else {
        print_row(stdout, fmt, NULL, true);
        for (size_t i = 0; i < json_array_size(pts); i++) print_row(stdout, fmt, json_array_get(pts, i), false);
    }
    int rc = 0;
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
    ibex_scenario_free(s);
    return 2;
}
