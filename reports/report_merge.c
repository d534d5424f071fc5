/* report_merge.c — the "Shards" section of report.md for a folder written by `ibex
 * merge` (results.json "merge", docs/CLUSTER.md): which shard ran which points on
 * which node, the points a partial merge lacks, and a warning when the points were
 * measured on different kinds of machine (CPU model or GPU), whose timings are not
 * comparable with each other. */
#include <stdio.h>
#include <string.h>

#include "reports/reports.h"

/* "0, 3, 5" (at most max entries, then "..."), into buf. */
static const char *index_list(const json_t *a, char *buf, size_t n, size_t max) {
    buf[0] = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        size_t l = strlen(buf);
        if (i == max) {
            snprintf(buf + l, n - l, ", ... (%zu in all)", json_array_size(a));
            break;
        }
        snprintf(buf + l, n - l, "%s%lld", i ? ", " : "", (long long)json_integer_value(v));
    }
    return buf;
}

/* Table cell text: '|' and newlines would break the row. */
static void md_cell(FILE *out, const char *s) {
    fputs("| ", out);
    for (; s && *s; s++) fputc(*s == '|' ? '/' : *s == '\n' ? ' ' : *s, out);
    fputc(' ', out);
}

ibex_status ibex_report_md_merge(const json_t *results, FILE *out, ibex_err *err) {
    const json_t *m = ibex_report_get(results, "merge");
    if (!results || !out) return ibex_err_set(err, IBEX_ERR_INVALID, "report_md_merge: NULL argument");
    if (!json_is_object(m)) return IBEX_OK;
    const json_t *shards = json_object_get(m, "shards"), *missing = json_object_get(m, "missing_points");
    char b[1024];
    fprintf(out, "## Shards\n\nMerged by `ibex merge` from %zu shard folder%s of %lld (`ibex run --shard K/N`).\n\n",
            json_array_size(shards), json_array_size(shards) == 1 ? "" : "s",
            (long long)json_integer_value(json_object_get(m, "n")));
    if (json_array_size(missing) > 0)
        fprintf(out, "> **Warning:** incomplete merge: %zu point%s %s missing (merged with `--allow-missing`): %s.\n\n",
                json_array_size(missing), json_array_size(missing) == 1 ? "" : "s",
                json_array_size(missing) == 1 ? "is" : "are", index_list(missing, b, sizeof b, 40));
    /* kinds of machine, in shard order */
    const char *kinds[64];
    size_t n_kinds = 0, i;
    const json_t *s;
    json_array_foreach(shards, i, s) {
        const char *k = ibex_report_str(s, "machine_kind");
        if (!k) continue;
        bool known = false;
        for (size_t q = 0; q < n_kinds; q++) known |= !strcmp(kinds[q], k);
        if (!known && n_kinds < 64) kinds[n_kinds++] = k;
    }
    if (n_kinds > 1) {
        fprintf(out, "> **Warning:** the points were measured on %zu different kinds of machine; timings of points "
                     "measured on different kinds are not comparable:\n", n_kinds);
        for (size_t q = 0; q < n_kinds; q++) {
            fprintf(out, "> - %s: points ", kinds[q]);
            bool first = true;
            json_array_foreach(shards, i, s) {
                const char *k = ibex_report_str(s, "machine_kind");
                if (!k || strcmp(k, kinds[q]) || !json_array_size(json_object_get(s, "points"))) continue;
                fprintf(out, "%s%s", first ? "" : ", ", index_list(json_object_get(s, "points"), b, sizeof b, 40));
                first = false;
            }
            fputs(first ? "none\n" : "\n", out);
        }
        fputc('\n', out);
    }
    fputs("| shard | node | CPU | GPU | points | complete |\n|---|---|---|---|---|---|\n", out);
    json_array_foreach(shards, i, s) {
        snprintf(b, sizeof b, "%lld/%lld", (long long)json_integer_value(json_object_get(s, "k")),
                 (long long)json_integer_value(json_object_get(s, "n")));
        md_cell(out, b);
        md_cell(out, ibex_report_str(s, "node") ? ibex_report_str(s, "node") : "-");
        md_cell(out, ibex_report_str(s, "cpu_model") ? ibex_report_str(s, "cpu_model") : "-");
        md_cell(out, ibex_report_str(s, "gpu_model") ? ibex_report_str(s, "gpu_model") : "none");
        md_cell(out, index_list(json_object_get(s, "points"), b, sizeof b, 40));
        md_cell(out, json_is_true(json_object_get(s, "complete")) ? "yes" : "**no**");
        fputs("|\n", out);
    }
    fputc('\n', out);
    return ferror(out) ? ibex_err_set(err, IBEX_ERR_IO, "report.md: write failed") : IBEX_OK;
}
