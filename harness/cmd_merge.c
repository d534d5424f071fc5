/* cmd_merge.c — `ibex merge OUT DIR...`: joins the result folders of `ibex run --shard
 * K/N` (one scenario, or a suite: then scenario by scenario) into one result folder, as
 * if one process had run every point, then writes every report the way `ibex run`
 * does (docs/CLUSTER.md).
 *
 * Checks, before anything is written: every folder comes from the same scenario file
 * (scenario.sha256), the same N and --quick; no shard is given twice; every point index
 * 0..total-1 is measured exactly once (a point a shard left "interrupted" counts as not
 * measured). A duplicated point is always an error; missing points are an error unless
 * --allow-missing, which merges what there is and marks the result incomplete
 * (complete: false, merge.missing_points, a warning at the top of report.md). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness/cli.h"
#include "harness/runner.h"
#include "reports/claims.h"
#include "reports/reports.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ibex merge OUT DIR... [--allow-missing]\n"
               "  joins the folders written by 'ibex run FILE --shard K/N --out DIR' (K = 1..N) into OUT:\n"
               "  results.json with every point in its global order and each shard's provenance, then\n"
               "  results.csv, report.md, plots (and claims.md for a suite), as 'ibex run' writes them.\n"
               "  The folders must come from the same scenario file (same SHA-256), N and --quick, and\n"
               "  cover every point exactly once.\n"
               "  --allow-missing  merge even when points are missing (a shard that did not run or was\n"
               "                   interrupted): OUT is marked incomplete and report.md lists what is missing\n"
               "exit: 0 merged; 1 missing or duplicated points, different scenarios, unreadable folders, or a\n"
               "failed point; 2 bad arguments. docs/CLUSTER.md runs a sweep on a Slurm cluster.\n");
}

/* Writes root to dir/name atomically (NAME.tmp, then rename). */
static bool dump(json_t *root, const char *dir, const char *name, size_t flags) {
    char p[1200], t[1300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    snprintf(t, sizeof t, "%s.tmp", p);
    if (json_dump_file(root, t, flags) || rename(t, p)) {
        fprintf(stderr, "ibex merge: cannot write %s: %s\n", p, strerror(errno));
        remove(t);
        return false;
    }
    return true;
}

/* Appends ", N" (or "N" first) to a growing list, eliding after `max` entries. */
static void list_add(char *buf, size_t cap, int *count, long long v, int max) {
    size_t l = strlen(buf);
    if (*count < max) snprintf(buf + l, cap - l, "%s%lld", *count ? ", " : "", v);
    else if (*count == max) snprintf(buf + l, cap - l, ", ...");
    (*count)++;
}

/* What a shard's machine is, for flagging points measured on different kinds: the CPU
 * model and the GPU (the first point's device), "CPU model + GPU" or the CPU alone. */
static void machine_kind(const json_t *res, char *buf, size_t n, const char **gpu) {
    const char *cpu = ibex_report_str(res, "provenance/cpu_model");
    *gpu = NULL;
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(res, "points"), i, p) {
        const char *g = ibex_report_str(p, "device/name");
        if (g) {
            *gpu = g;
            break;
        }
    }
    snprintf(buf, n, "%s%s%s", cpu ? cpu : "unknown CPU", *gpu ? " + " : "", *gpu ? *gpu : "");
}

/* Merges the run folders dirs[0..n-1] (each holding a sharded results.json; missing
 * ones are allowed with allow_missing, dirs[i] then NULL-loaded and skipped) into out.
 * what names the run in messages ("" or "suite scenario X: "). Returns 0, or 1 after
 * printing why. *complete receives whether every point was measured and ok. */
static int merge_run(const char *out, const char *const *dirs, int n, bool allow_missing, const char *what,
                     bool *complete) {
    int rc = 1;
    *complete = false;
    json_t **res = calloc((size_t)n, sizeof *res);
    const json_t **at = NULL; /* the measured point of each global index */
    int *from = NULL, *plan = NULL; /* the folder it came from; the shard it was planned for */
    json_t *merged = NULL, *trace = NULL;
    if (!res) goto nomem;
    int ref = -1;
    for (int i = 0; i < n; i++) {
        ibex_err err = {0};
        char p[1200];
        snprintf(p, sizeof p, "%s/results.json", dirs[i]);
        if (allow_missing && access(p, F_OK)) {
            fprintf(stderr, "ibex merge: %s%s: no results.json (the shard never ran this); left out\n", what, dirs[i]);
            continue;
        }
        if (!(res[i] = ibex_report_load(dirs[i], &err))) {
            fprintf(stderr, "ibex merge: %s%s\n", what, err.msg);
            goto done;
        }
        if (!json_is_object(json_object_get(res[i], "shard"))) {
            fprintf(stderr, "ibex merge: %s%s: results.json has no \"shard\": it was not run with 'ibex run --shard K/N'\n",
                    what, dirs[i]);
            goto done;
        }
        if (ref < 0) ref = i;
    }
    if (ref < 0) {
        fprintf(stderr, "ibex merge: %sno shard folder to merge\n", what);
        goto done;
    }
    const char *hash = ibex_report_str(res[ref], "scenario/sha256");
    const int N = (int)ibex_report_num(res[ref], "shard/n");
    const long long total = (long long)ibex_report_num(res[ref], "shard/total_points");
    const json_t *quick = ibex_report_get(res[ref], "scenario/quick");
    if (!hash || N < 1 || total < 0 || total > 100000000) {
        fprintf(stderr, "ibex merge: %s%s: results.json lacks scenario.sha256 or shard.n/total_points\n", what,
                dirs[ref]);
        goto done;
    }
    int *seen_k = calloc((size_t)N + 1, sizeof *seen_k); /* folder index + 1 per shard number */
    if (!seen_k) goto nomem;
    for (int i = 0; i < n; i++) {
        if (!res[i]) continue;
        const char *h = ibex_report_str(res[i], "scenario/sha256");
        int k = (int)ibex_report_num(res[i], "shard/k"), ni = (int)ibex_report_num(res[i], "shard/n");
        const char *why = NULL;
        if (!h || strcmp(h, hash)) why = "another scenario file (its SHA-256 differs)";
        else if (ni != N) why = "another shard count";
        else if ((long long)ibex_report_num(res[i], "shard/total_points") != total) why = "another number of points";
        else if (!json_equal((json_t *)quick, (json_t *)ibex_report_get(res[i], "scenario/quick")))
            why = "another --quick setting";
        if (why) {
            fprintf(stderr, "ibex merge: %s%s (shard %d/%d, scenario %.12s...) and %s (shard %d/%d, scenario %.12s...) "
                            "come from %s\n", what, dirs[ref], (int)ibex_report_num(res[ref], "shard/k"), N, hash,
                    dirs[i], k, ni, h ? h : "(none)", why);
            free(seen_k);
            goto done;
        }
        if (k < 1 || k > N) {
            fprintf(stderr, "ibex merge: %s%s: shard %d/%d is out of range\n", what, dirs[i], k, N);
            free(seen_k);
            goto done;
        }
        if (seen_k[k]) {
            fprintf(stderr, "ibex merge: %sshard %d/%d is given twice: %s and %s (a requeued task writes its own folder "
                            "again; give each shard once)\n", what, k, N, dirs[seen_k[k] - 1], dirs[i]);
            free(seen_k);
            goto done;
        }
        seen_k[k] = i + 1;
    }
    at = calloc((size_t)total + 1, sizeof *at);
    from = calloc((size_t)total + 1, sizeof *from);
    plan = calloc((size_t)total + 1, sizeof *plan);
    if (!at || !from || !plan) {
        free(seen_k);
        goto nomem;
    }
    char dup[2048] = "";
    int n_dup = 0;
    for (int i = 0; i < n; i++) {
        if (!res[i]) continue;
        int k = (int)ibex_report_num(res[i], "shard/k");
        size_t j;
        const json_t *v, *p;
        json_array_foreach(ibex_report_get(res[i], "shard/points"), j, v) {
            long long x = json_integer_value(v);
            if (x >= 0 && x < total) plan[x] = k;
        }
        json_array_foreach(json_object_get(res[i], "points"), j, p) {
            const json_t *ix = json_object_get(p, "index");
            long long x = json_is_integer(ix) ? json_integer_value(ix) : -1;
            if (x < 0 || x >= total) {
                fprintf(stderr, "ibex merge: %s%s: point %zu has index %lld, outside 0..%lld\n", what, dirs[i], j, x,
                        total - 1);
                free(seen_k);
                goto done;
            }
            const char *st = json_string_value(json_object_get(p, "status"));
            if (st && !strcmp(st, "interrupted")) continue; /* a partial point: not measured */
            if (at[x]) {
                size_t l = strlen(dup);
                if (n_dup < 8)
                    snprintf(dup + l, sizeof dup - l, "\n  point %lld (%s) is in %s (shard %d/%d) and in %s (shard %d/%d)",
                             x, json_string_value(json_object_get(p, "label")), dirs[from[x]],
                             (int)ibex_report_num(res[from[x]], "shard/k"), N, dirs[i], k, N);
                n_dup++;
                continue;
            }
            at[x] = p, from[x] = i;
        }
    }
    if (n_dup) {
        fprintf(stderr, "ibex merge: %s%d point%s measured twice:%s%s\n", what, n_dup, n_dup == 1 ? "" : "s", dup,
                n_dup > 8 ? "\n  ..." : "");
        free(seen_k);
        goto done;
    }
    /* what is missing, by the shard that was to measure it */
    long long n_missing = 0;
    json_t *missing = json_array();
    char msg[4096] = "";
    for (int k = 1; k <= N; k++) {
        char pts[512] = "";
        int c = 0;
        for (long long x = 0; x < total; x++)
            if (!at[x] && plan[x] == k) list_add(pts, sizeof pts, &c, x, 20);
        if (!c) continue;
        size_t l = strlen(msg);
        const json_t *r = seen_k[k] ? res[seen_k[k] - 1] : NULL;
        snprintf(msg + l, sizeof msg - l, "\n  shard %d/%d (%s, %s): %d point%s not measured: %s", k, N,
                 dirs[seen_k[k] - 1], json_is_true(json_object_get(r, "complete")) ? "complete" : "marked incomplete",
                 c, c == 1 ? "" : "s", pts);
    }
    {
        char pts[512] = "", given[256] = "", absent[256] = "";
        int c = 0, cg = 0, ca = 0;
        for (long long x = 0; x < total; x++)
            if (!at[x] && !plan[x]) list_add(pts, sizeof pts, &c, x, 20);
        for (int k = 1; k <= N; k++) {
            if (seen_k[k]) list_add(given, sizeof given, &cg, k, 30);
            else list_add(absent, sizeof absent, &ca, k, 30);
        }
        if (c) {
            size_t l = strlen(msg);
            snprintf(msg + l, sizeof msg - l, "\n  %d point%s of shards not given (given: %s of %d; not given: %s): %s", c,
                     c == 1 ? "" : "s", given, N, absent, pts);
        }
    }
    for (long long x = 0; x < total; x++)
        if (!at[x]) n_missing++, json_array_append_new(missing, json_integer(x));
    free(seen_k);
    if (n_missing && !allow_missing) {
        fprintf(stderr, "ibex merge: %s%lld of %lld points missing:%s\n"
                        "ibex merge: rerun those shards (their folders are overwritten), or merge what there is with "
                        "--allow-missing (the result is marked incomplete)\n", what, n_missing, total, msg);
        json_decref(missing);
        goto done;
    }
    if (n_missing)
        fprintf(stderr, "ibex merge: %swarning: %lld of %lld points missing (merged with --allow-missing, marked "
                        "incomplete):%s\n", what, n_missing, total, msg);

    /* the merged results.json: the first shard's header, every point in global order */
    merged = json_deep_copy(res[ref]);
    if (!merged) {
        json_decref(missing);
        goto nomem;
    }
    json_object_del(merged, "shard");
    json_t *points = json_array();
    int failed = 0;
    bool all_ok = n_missing == 0;
    for (long long x = 0; x < total; x++) {
        if (!at[x]) continue;
        json_t *p = json_deep_copy(at[x]);
        json_object_set_new(p, "shard", json_integer((json_int_t)ibex_report_num(res[from[x]], "shard/k")));
        const char *st = json_string_value(json_object_get(p, "status"));
        failed += st && !strcmp(st, "error");
        all_ok &= st && !strcmp(st, "ok");
        json_array_append_new(points, p);
    }
    json_object_set_new(merged, "points", points);
    json_object_set_new(merged, "failed_points", json_integer(failed));
    json_object_set_new(merged, "complete", json_boolean(all_ok));
    json_t *shards = json_array();
    char kinds[4][320];
    int n_kinds = 0;
    for (int i = 0; i < n; i++) {
        if (!res[i]) continue;
        char kind[320];
        const char *gpu;
        machine_kind(res[i], kind, sizeof kind, &gpu);
        bool known = false;
        for (int q = 0; q < n_kinds && q < 4; q++) known |= !strcmp(kinds[q], kind);
        if (!known && n_kinds < 4) snprintf(kinds[n_kinds], sizeof kinds[0], "%s", kind);
        n_kinds += !known;
        json_t *measured = json_array();
        for (long long x = 0; x < total; x++)
            if (at[x] && from[x] == i) json_array_append_new(measured, json_integer(x));
        const json_t *prov = json_object_get(res[i], "provenance");
        json_t *sh = json_pack("{s:I,s:I,s:s,s:o,s:O,s:O,s:s?,s:s?,s:s?,s:s,s:s?,s:O?}",
                               "k", (json_int_t)ibex_report_num(res[i], "shard/k"), "n", (json_int_t)N, "dir", dirs[i],
                               "points", measured, "complete", json_object_get(res[i], "complete") ? json_object_get(res[i], "complete") : json_false(),
                               "timestamp", json_object_get(res[i], "timestamp") ? json_object_get(res[i], "timestamp") : json_null(),
                               "node", ibex_report_str(prov, "node") ? ibex_report_str(prov, "node") : ibex_report_str(prov, "hostname"),
                               "hostname", ibex_report_str(prov, "hostname"), "cpu_model", ibex_report_str(prov, "cpu_model"),
                               "machine_kind", kind, "gpu_model", gpu, "provenance", (json_t *)prov);
        if (!sh) {
            json_decref(missing);
            goto nomem;
        }
        if (!gpu) json_object_set_new(sh, "gpu_model", json_null());
        json_array_append_new(shards, sh);
    }
    json_object_set_new(merged, "merge",
                        json_pack("{s:i,s:o,s:o,s:b,s:b}", "n", N, "shards", shards, "missing_points", missing,
                                  "allow_missing", allow_missing, "mixed_machines", n_kinds > 1));
    if (n_kinds > 1) {
        fprintf(stderr, "ibex merge: %swarning: the shards ran on %d kinds of machine:", what, n_kinds);
        for (int q = 0; q < n_kinds && q < 4; q++) fprintf(stderr, "%s %s", q ? ";" : "", kinds[q]);
        fprintf(stderr, " (timings across them are not comparable; report.md lists which point ran where)\n");
    }
    ibex_err err = {0};
    if (ibex_mkdir_p(out, &err)) {
        fprintf(stderr, "ibex merge: %s\n", err.msg);
        goto done;
    }
    if (!dump(merged, out, "results.json", JSON_INDENT(1) | JSON_REAL_PRECISION(10))) goto done;
    /* trace.json: every shard's events (a point's events carry its global index as pid) */
    trace = json_pack("{s:[],s:s}", "traceEvents", "displayTimeUnit", "ms");
    bool any_trace = false;
    for (int i = 0; i < n; i++) {
        if (!res[i]) continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/trace.json", dirs[i]);
        json_t *t = json_load_file(p, 0, NULL);
        if (json_is_array(json_object_get(t, "traceEvents"))) {
            json_array_extend(json_object_get(trace, "traceEvents"), json_object_get(t, "traceEvents"));
            any_trace = true;
        }
        json_decref(t);
    }
    if (any_trace && !dump(trace, out, "trace.json", JSON_COMPACT | JSON_REAL_PRECISION(15))) goto done;
    *complete = all_ok;
    rc = 0;
    goto done;
nomem:
    fprintf(stderr, "ibex merge: out of memory\n");
done:
    for (int i = 0; res && i < n; i++) json_decref(res[i]);
    free(res);
    free(at), free(from), free(plan);
    json_decref(merged);
    json_decref(trace);
    return rc;
}

/* A suite: each shard folder holds suite.json and one folder per listed scenario. */
static int merge_suite(const char *out, char **dirs, int n, bool allow_missing) {
    json_t **man = calloc((size_t)n, sizeof *man);
    int rc = 1;
    if (!man) return 1;
    for (int i = 0; i < n; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/suite.json", dirs[i]);
        json_error_t je;
        if (!(man[i] = json_load_file(p, 0, &je))) {
            fprintf(stderr, "ibex merge: %s: %s (the first folder is a suite's shard, so every folder must be)\n", p,
                    je.text);
            goto done;
        }
        const char *h0 = ibex_report_str(man[0], "sha256"), *h = ibex_report_str(man[i], "sha256");
        if (!h || !h0 || strcmp(h, h0) || ibex_report_num(man[i], "shard/n") != ibex_report_num(man[0], "shard/n") ||
            !json_equal(json_object_get(man[i], "quick"), json_object_get(man[0], "quick")) ||
            !json_equal(json_object_get(man[i], "scenarios"), json_object_get(man[0], "scenarios"))) {
            fprintf(stderr, "ibex merge: %s and %s are shards of different suites (suite file SHA-256, shard count, "
                            "--quick or listed scenarios differ)\n", dirs[0], dirs[i]);
            goto done;
        }
    }
    ibex_err err = {0};
    if (ibex_mkdir_p(out, &err)) {
        fprintf(stderr, "ibex merge: %s\n", err.msg);
        goto done;
    }
    const json_t *names = json_object_get(man[0], "scenarios");
    size_t n_sub = json_array_size(names);
    ibex_claims_sub *subs = calloc(n_sub + 1, sizeof *subs);
    char(*subdir)[1100] = calloc(n_sub + 1, sizeof *subdir);
    char(*errs)[200] = calloc(n_sub + 1, sizeof *errs);
    char(*in)[1100] = calloc((size_t)n * (n_sub + 1), sizeof *in);
    const char **inp = calloc((size_t)n, sizeof *inp);
    ibex_claims *claims = calloc(1, sizeof *claims);
    bool complete = true;
    rc = 0;
    if (!subs || !subdir || !errs || !in || !inp || !claims) {
        fprintf(stderr, "ibex merge: out of memory\n");
        rc = 1;
        goto free_subs;
    }
    for (size_t s = 0; s < n_sub; s++) {
        const char *name = json_string_value(json_array_get(names, s));
        subs[s].name = name;
        for (int i = 0; i < n; i++) {
            snprintf(in[(size_t)i * n_sub + s], sizeof in[0], "%s/%s", dirs[i], name);
            inp[i] = in[(size_t)i * n_sub + s];
        }
        snprintf(subdir[s], sizeof subdir[s], "%s/%s", out, name);
        char what[200];
        snprintf(what, sizeof what, "scenario %s: ", name);
        bool sub_complete = false;
        fprintf(stderr, "ibex merge: [%zu/%zu] %s -> %s/\n", s + 1, n_sub, name, subdir[s]);
        if (merge_run(subdir[s], inp, n, allow_missing, what, &sub_complete)) {
            snprintf(errs[s], sizeof errs[s], "its shards could not be merged (see ibex merge's messages)");
            subs[s].error = errs[s];
            complete = false;
            rc = 1;
            continue;
        }
        subs[s].dir = subdir[s];
        complete &= sub_complete;
        if (ibex_report_write_all(subdir[s], &err)) fprintf(stderr, "ibex merge: %s: reports: %s\n", name, err.msg);
    }
    {
        json_t *m = json_deep_copy(man[0]);
        json_object_del(m, "shard");
        json_object_set_new(m, "merged_from", json_integer(n));
        char p[1200];
        snprintf(p, sizeof p, "%s/suite.json", out);
        if (json_dump_file(m, p, JSON_INDENT(1))) fprintf(stderr, "ibex merge: cannot write %s\n", p);
        json_decref(m);
    }
    const char *report = ibex_report_str(man[0], "report");
    if (report && !strcmp(report, "claims")) { /* the suite's report, as ibex run writes it */
        const char *desc = ibex_report_str(man[0], "description");
        if (ibex_report_claims(out, ibex_report_str(man[0], "name"), desc ? desc : "", subs, n_sub, complete, claims,
                               &err)) {
            fprintf(stderr, "ibex merge: claims report: %s\n", err.msg);
            rc = 1;
        } else {
            if (ibex_claims_terminal(claims, stdout, &err)) fprintf(stderr, "ibex merge: %s\n", err.msg);
            fprintf(stderr, "claims report in %s/: claims.md, claims.csv; each scenario's reports in %s/<name>/\n", out,
                    out);
        }
    } else {
        for (size_t s = 0; s < n_sub; s++) printf("%s: %s\n", subs[s].name, subs[s].dir ? subs[s].dir : errs[s]);
    }
    if (!complete) fprintf(stderr, "ibex merge: the merged suite is incomplete (see each scenario's report.md)\n");
free_subs:
    free(subs), free(subdir), free(errs), free(in), free(inp), free(claims);
done:
    for (int i = 0; i < n; i++) json_decref(man[i]);
    free(man);
    return rc;
}

int ibex_cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    bool allow_missing = false;
    char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    int n = 0;
    if (!dirs) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            free(dirs);
            return 0;
        } else if (!strcmp(argv[i], "--allow-missing")) {
            allow_missing = true;
        } else if (argv[i][0] == '-') {
            static const char *const opts[] = {"--allow-missing", "--help", NULL};
            const char *s = ibex_cli_suggest(argv[i], opts);
            fprintf(stderr, "ibex merge: unexpected option '%s'%s%s%s\n", argv[i], s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            free(dirs);
            return 2;
        } else if (!out) {
            out = argv[i];
        } else {
            dirs[n++] = argv[i];
        }
    }
    if (!out || n == 0) {
        usage(stderr);
        free(dirs);
        return 2;
    }
    for (int i = 0; i < n; i++) { /* OUT must not be one of the inputs: it is rewritten */
        char a[4096], b[4096];
        if (realpath(out, a) && realpath(dirs[i], b) && !strcmp(a, b)) {
            fprintf(stderr, "ibex merge: OUT (%s) is also an input folder; give a new folder\n", out);
            free(dirs);
            return 2;
        }
    }
    if (allow_missing) { /* a shard that never started has no folder at all */
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (access(dirs[i], F_OK)) fprintf(stderr, "ibex merge: %s does not exist; left out (--allow-missing)\n", dirs[i]);
            else dirs[m++] = dirs[i];
        }
        n = m;
        if (n == 0) {
            fprintf(stderr, "ibex merge: none of the folders exists\n");
            free(dirs);
            return 1;
        }
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/suite.json", dirs[0]);
    int rc;
    if (!access(p, F_OK)) {
        rc = merge_suite(out, dirs, n, allow_missing);
    } else {
        bool complete = false;
        rc = merge_run(out, (const char *const *)dirs, n, allow_missing, "", &complete);
        if (!rc) {
            fprintf(stderr, "ibex merge: %d folder%s -> %s/%s\n", n, n == 1 ? "" : "s", out,
                    complete ? "" : " (incomplete)");
            rc = ibex_cmd_render(out);
        }
    }
    free(dirs);
    return rc;
}
