/* cmd_compare.c — `ibex compare BASE NEW`: the performance-regression gate. Loads two
 * runs (results.json, run folders or suites), compares them with reports/compare.h and
 * prints the Markdown table to stdout (and --json FILE). Exit codes: 0 no regression,
 * 1 a regression or a changed counter, 2 usage errors or incomparable inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli.h"
#include "reports/compare.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex compare BASE NEW [options]\n"
            "  BASE, NEW are results.json files, run folders, or suites (folders of run folders).\n"
            "  Points are matched by their parameters; timings are compared with the Mann-Whitney U\n"
            "  test on the per-repetition samples plus a relative floor, exact counters must be equal.\n"
            "  --threshold PCT        relative floor for timing changes (default 5%%; '5%%' or 0.05)\n"
            "  --alpha A              significance level (default 0.05)\n"
            "  --metrics LIST         only these metrics (comma list of names or patterns: 'wall_s,ops.decode.*')\n"
            "  --allow-counter LIST   counters allowed to change (names or patterns: 'kv.peak_*')\n"
            "  --timings MODE         strict (default): timing regressions fail; info: shown only;\n"
            "                         auto: strict when the machine and build match BASE's provenance\n"
            "  --instr-threshold PCT  floor for instruction counts (default 1%%)\n"
            "  --ignore-noise         gate timings even where a run marked them noisy\n"
            "  --json FILE            also write the comparison as JSON\n"
            "  -q, --quiet            print only the summary line\n"
            "exit: 0 no regression, 1 regression or changed counter, 2 usage error or nothing comparable\n"
            "docs/COMPARE.md explains the decisions.\n");
}

/* "5%", "5 %" or "0.05" as a fraction. */
static bool parse_pct(const char *opt, const char *s, double *out) {
    if (!s) {
        fprintf(stderr, "ibex compare: %s needs a value\n", opt);
        return false;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == ' ') buf[--n] = 0;
    bool pct = n && buf[n - 1] == '%';
    if (pct) buf[--n] = 0;
    while (n && buf[n - 1] == ' ') buf[--n] = 0;
    double v;
    if (!ibex_cli_float("compare", opt, buf, 0, pct ? 1000 : 10, &v)) return false;
    *out = pct ? v / 100.0 : v;
    return true;
}

int ibex_cmd_compare(int argc, char **argv) {
    ibex_compare_opts o = ibex_compare_opts_default();
    const char *paths[2] = {NULL, NULL}, *json_out = NULL;
    int npath = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--threshold")) {
            if (!parse_pct(a, v, &o.threshold)) return 2;
            i++;
        } else if (!strcmp(a, "--instr-threshold")) {
            if (!parse_pct(a, v, &o.instr_threshold)) return 2;
            i++;
        } else if (!strcmp(a, "--alpha")) {
            if (!ibex_cli_float("compare", a, v, 1e-9, 0.5, &o.alpha)) return 2;
            i++;
        } else if (!strcmp(a, "--metrics") && v) {
            o.metrics = argv[++i];
        } else if (!strcmp(a, "--allow-counter") && v) {
            o.allow = argv[++i];
        } else if (!strcmp(a, "--timings") && v) {
            if (!strcmp(v, "strict")) o.timings = IBEX_CMP_TIMINGS_STRICT;
            else if (!strcmp(v, "info")) o.timings = IBEX_CMP_TIMINGS_INFO;
            else if (!strcmp(v, "auto")) o.timings = IBEX_CMP_TIMINGS_AUTO;
            else {
                fprintf(stderr, "ibex compare: --timings: '%s' is not strict, info or auto\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--ignore-noise")) {
            o.ignore_noise = true;
        } else if (!strcmp(a, "--json") && v) {
            json_out = argv[++i];
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            static const char *const opts[] = {"--threshold", "--alpha", "--metrics", "--allow-counter", "--timings",
                                               "--instr-threshold", "--ignore-noise", "--json", "--quiet", "--help", NULL};
            const char *s = ibex_cli_suggest(a, opts);
            fprintf(stderr, "ibex compare: unknown option or missing value '%s'%s%s%s\n", a, s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            return 2;
        } else if (npath < 2) {
            paths[npath++] = a;
        } else {
            fprintf(stderr, "ibex compare: one BASE and one NEW, got a third: '%s'\n", a);
            return 2;
        }
    }
    if (npath != 2) {
        usage(stderr);
        return 2;
    }
    ibex_err err = {0};
    json_t *base = ibex_compare_load(paths[0], &err);
    if (!base) {
        fprintf(stderr, "ibex compare: BASE: %s\n", err.msg);
        return 2;
    }
    json_t *nw = ibex_compare_load(paths[1], &err);
    if (!nw) {
        fprintf(stderr, "ibex compare: NEW: %s\n", err.msg);
        json_decref(base);
        return 2;
    }
    ibex_compare_result *r = ibex_compare_runs(base, nw, &o, &err);
    json_decref(base), json_decref(nw);
    if (!r) {
        fprintf(stderr, "ibex compare: %s\n", err.msg);
        return 2;
    }
    int rc = ibex_compare_exit_code(r);
    if (quiet) {
        printf("%s: %zu regression(s), %zu changed counter(s), %zu inconclusive, %zu matched point(s)\n",
               rc == 0 ? "PASS" : rc == 1 ? "FAIL" : "INCOMPARABLE", r->n_regressions, r->n_changed, r->n_inconclusive,
               r->n_matched);
    } else if (ibex_compare_markdown(r, stdout, &err)) {
        fprintf(stderr, "ibex compare: %s\n", err.msg);
    }
    if (rc == 2)
        fprintf(stderr, "ibex compare: no point of NEW matches a point of BASE by parameters (%zu only in BASE, %zu only in NEW)\n",
                r->n_unmatched_base, r->n_unmatched_new);
    if (json_out) {
        json_t *j = ibex_compare_to_json(r);
        if (!j || json_dump_file(j, json_out, JSON_INDENT(1))) {
            fprintf(stderr, "ibex compare: --json: cannot write %s\n", json_out);
            if (rc == 0) rc = 2;
        }
        json_decref(j);
    }
    ibex_compare_free(r);
    return rc;
}
