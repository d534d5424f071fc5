/* report_markdown.c — report.md: what was run, the results per point, where the time
 * goes per op, the KV cache and memory, the plots with a reading of each, and the
 * metric formulas, all from results.json. */
#include "reports/reports.h"

#include <math.h>
#include <string.h>

#define MAX_SWEPT 64

/* Writes s as one Markdown table cell's text: '|' escaped, line breaks as spaces. */
static void cell(FILE *out, const char *s)
{
    fputs("| ", out);
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
    fputc(' ', out);
}

static void header(FILE *out, const char *const *cols, size_t n, const char **swept, size_t nk)
{
    cell(out, cols[0]);
    for (size_t k = 0; k < nk; k++)
        cell(out, swept[k]);
    for (size_t c = 1; c < n; c++)
        cell(out, cols[c]);
    fputs("|\n", out);
    for (size_t c = 0; c < n + nk; c++)
        fputs(c == 0 ? "|---" : "|---:", out);
    fputs("|\n", out);
}

static void cell_seconds(FILE *out, const json_t *pt, const char *path)
{
    char b[64];
    cell(out, ibex_report_fmt_seconds(ibex_report_num(pt, path), b, sizeof b));
}

static void cell_value(FILE *out, const json_t *pt, const char *path, const char *unit, double scale)
{
    char b[64];
    cell(out, ibex_report_fmt_value(ibex_report_num(pt, path) * scale, unit, b, sizeof b));
}

static void cell_bytes(FILE *out, const json_t *pt, const char *path)
{
    char b[64];
    cell(out, ibex_report_fmt_bytes(ibex_report_num(pt, path), b, sizeof b));
}

static void cell_int(FILE *out, const json_t *pt, const char *path)
{
    char b[64];
    double v = ibex_report_num(pt, path);
    if (isfinite(v))
        snprintf(b, sizeof b, "%.0f", v);
    else
        snprintf(b, sizeof b, "-");
    cell(out, b);
}

static void cell_pct(FILE *out, const json_t *pt, const char *path)
{
    char b[64];
    double v = ibex_report_num(pt, path);
    if (isfinite(v))
        snprintf(b, sizeof b, "%.1f%%", 100.0 * v);
    else
        snprintf(b, sizeof b, "-");
    cell(out, b);
}

static void cells_index_swept(FILE *out, const json_t *pt, size_t i, const char **swept, size_t nk)
{
    char b[256];
    double idx = ibex_report_num(pt, "index");
    snprintf(b, sizeof b, "%.0f", isfinite(idx) ? idx : (double)i);
    cell(out, b);
    for (size_t k = 0; k < nk; k++)
        cell(out, ibex_report_swept_text(pt, swept[k], b, sizeof b));
}

static void what_was_run(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t np = json_array_size(pts), n_ok = 0;
    for (size_t i = 0; i < np; i++) {
        const char *st = ibex_report_str(json_array_get(pts, i), "status");
        n_ok += st && strcmp(st, "ok") == 0;
    }
    char b[512], c[64];
    fputs("## What was run\n\n| | |\n|---|---|\n", out);
    const char *name = ibex_report_str(r, "scenario/name");
    const char *path = ibex_report_str(r, "scenario/path");
    snprintf(b, sizeof b, "%s%s%s%s", name ? name : "(unnamed)", path ? " (" : "", path ? path : "", path ? ")" : "");
    cell(out, "scenario");
    cell(out, b);
    fputs("|\n", out);
    const json_t *q = ibex_report_get(r, "scenario/quick");
    if (json_is_boolean(q)) {
        cell(out, "quick mode");
        cell(out, json_is_true(q) ? "yes (reduced sizes and repetitions)" : "no");
        fputs("|\n", out);
    }
    cell(out, "swept");
    b[0] = '\0';
    for (size_t k = 0; k < nk; k++)
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s", k ? ", " : "", swept[k]);
    cell(out, nk ? b : "nothing (a single point)");
    fputs("|\n", out);
    snprintf(b, sizeof b, "%zu (%zu ok)", np, n_ok);
    cell(out, "points");
    cell(out, b);
    fputs("|\n", out);
    const json_t *comp = ibex_report_get(r, "complete");
    cell(out, "complete");
    cell(out, json_is_true(comp)    ? "yes"
              : json_is_false(comp) ? "**no** (interrupted, or a point failed)"
                                    : "-");
    fputs("|\n", out);
    const char *ver = ibex_report_str(r, "ibex/version"), *commit = ibex_report_str(r, "ibex/commit"),
               *bt = ibex_report_str(r, "ibex/build_type");
    snprintf(b, sizeof b, "%s, commit %s, %s build", ver ? ver : "-", commit ? commit : "-", bt ? bt : "-");
    cell(out, "ibex");
    cell(out, b);
    fputs("|\n", out);
    const char *cpu = ibex_report_str(r, "machine/cpu");
    double cores = ibex_report_num(r, "machine/cores");
    const char *gpu = ibex_report_str(r, "machine/gpu");
    snprintf(b, sizeof b, "%s", cpu ? cpu : "-");
    if (isfinite(cores))
        snprintf(b + strlen(b), sizeof b - strlen(b), ", %.0f cores", cores);
    double mem = ibex_report_num(r, "machine/memory_bytes");
    if (isfinite(mem))
        snprintf(b + strlen(b), sizeof b - strlen(b), ", %s memory", ibex_report_fmt_bytes(mem, c, sizeof c));
    snprintf(b + strlen(b), sizeof b - strlen(b), ", GPU: %s", gpu ? gpu : "none");
    cell(out, "machine");
    cell(out, b);
    fputs("|\n", out);
    const char *ts = ibex_report_str(r, "timestamp");
    cell(out, "timestamp");
    cell(out, ts ? ts : "-");
    fputs("|\n", out);
    const json_t *p0 = json_array_get(pts, 0);
    if (p0) {
        const char *model = ibex_report_str(p0, "model/name");
        if (!model)
            model = ibex_report_str(p0, "params/model");
        double np_ = ibex_report_num(p0, "model/n_params"), wb = ibex_report_num(p0, "model/weight_bytes");
        snprintf(b, sizeof b, "%s", model ? model : "-");
        if (isfinite(np_))
            snprintf(b + strlen(b), sizeof b - strlen(b), ", %.3g M parameters", np_ / 1e6);
        if (isfinite(wb))
            snprintf(b + strlen(b), sizeof b - strlen(b), ", %s of weights", ibex_report_fmt_bytes(wb, c, sizeof c));
        cell(out, "model (point 0)");
        cell(out, b);
        fputs("|\n", out);
        const char *be = ibex_report_str(p0, "params/backend"), *w = ibex_report_str(p0, "params/weights");
        double th = ibex_report_num(p0, "params/threads"), rep = ibex_report_num(p0, "params/repeat"),
               wu = ibex_report_num(p0, "params/warmup");
        snprintf(b, sizeof b, "%s", be ? be : "-");
        if (isfinite(th))
            snprintf(b + strlen(b), sizeof b - strlen(b), ", %.0f threads", th);
        if (w)
            snprintf(b + strlen(b), sizeof b - strlen(b), ", %s weights", w);
        if (isfinite(wu) && isfinite(rep))
            snprintf(b + strlen(b), sizeof b - strlen(b), ", %.0f warm-up + %.0f timed repetitions", wu, rep);
        cell(out, "backend (point 0)");
        cell(out, b);
        fputs("|\n", out);
    }
    fputc('\n', out);
    if (bt && (strcmp(bt, "Debug") == 0 || strcmp(bt, "debug") == 0))
        fputs("> **Warning:** this is a Debug build; its timings are not representative.\n\n", out);
    if (json_is_false(comp))
        fputs("> **Warning:** the run is incomplete; some points are missing or failed.\n\n", out);
    size_t n_acct = 0;
    for (size_t i = 0; i < np; i++)
        n_acct += json_is_false(ibex_report_get(json_array_get(pts, i), "params/compute"));
    if (n_acct > 0) {
        if (n_acct == np)
            fputs("> **Accounting only:** every point ran with `compute: false`", out);
        else
            fprintf(out, "> **Accounting only:** %zu of %zu points ran with `compute: false`", n_acct, np);
        fputs(" (no weights loaded, no forward pass). Their KV and memory numbers are exact; their times and "
              "throughputs measure only the scheduler's bookkeeping, so no timing plot (prefill time, latency "
              "CDFs, throughput) is drawn for them.\n\n",
              out);
    }
}

static void results_table(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    static const char *cols[] = {"#",        "status",   "wall",     "output tok/s",  "total tok/s",
                                 "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",      "ITL p99",
                                 "E2E p99",  "prefill tok/s", "decode ms/token", "KV util"};
    fputs("## Results\n\nMedians over the timed repetitions; latency percentiles pooled over them.\n\n", out);
    header(out, cols, sizeof cols / sizeof cols[0], swept, nk);
    const json_t *pts = ibex_report_get(r, "points");
    size_t i;
    const json_t *pt;
    json_array_foreach(pts, i, pt) {
        cells_index_swept(out, pt, i, swept, nk);
        const char *st = ibex_report_str(pt, "status");
        cell(out, st ? st : "-");
        cell_seconds(out, pt, "metrics/wall_s");
        cell_value(out, pt, "metrics/output_tok_per_s", "", 1);
        cell_value(out, pt, "metrics/total_tok_per_s", "", 1);
        cell_seconds(out, pt, "metrics/ttft/p50");
        cell_seconds(out, pt, "metrics/ttft/p99");
        cell_seconds(out, pt, "metrics/tpot/p50");
        cell_seconds(out, pt, "metrics/tpot/p99");
        cell_seconds(out, pt, "metrics/itl/p99");
        cell_seconds(out, pt, "metrics/e2e/p99");
        cell_value(out, pt, "metrics/prefill_tok_per_s", "", 1);
        cell_value(out, pt, "metrics/decode_ms_per_token", "", 1);
        cell_pct(out, pt, "kv/utilisation_mean");
        fputs("|\n", out);
    }
    fputc('\n', out);
    bool any_fail = false;
    json_array_foreach(pts, i, pt) {
        const char *st = ibex_report_str(pt, "status");
        if (!st || strcmp(st, "ok") == 0)
            continue;
        if (!any_fail)
            fputs("Points that did not finish:\n\n", out);
        any_fail = true;
        const char *label = ibex_report_str(pt, "label"), *e = ibex_report_str(pt, "error");
        fprintf(out, "- point %zu (%s): %s%s%s\n", i, label ? label : "-", st, e ? ": " : "", e ? e : "");
    }
    if (any_fail)
        fputc('\n', out);
}

/* The per-op table of one point: share of the phase's op time, GFLOP/s and GB/s
 * (flops / ns is GFLOP/s, bytes / ns is GB/s). */
static void op_table(const json_t *pt, FILE *out)
{
    const json_t *pre = ibex_report_get(pt, "ops/prefill"), *dec = ibex_report_get(pt, "ops/decode");
    double tot[2] = {0, 0};
    const json_t *ph[2] = {pre, dec};
    for (int k = 0; k < 2; k++) {
        const char *name;
        const json_t *v;
        json_object_foreach((json_t *)ph[k], name, v) {
            double ns = ibex_report_num(v, "ns");
            if (isfinite(ns))
                tot[k] += ns;
        }
    }
    fputs("| op | prefill share | prefill GFLOP/s | prefill GB/s | decode share | decode GFLOP/s | decode GB/s |\n"
          "|---|---:|---:|---:|---:|---:|---:|\n",
          out);
    /* Rows: prefill's ops in order, then any op only decode has. */
    for (int k = 0; k < 2; k++) {
        const char *name;
        const json_t *v;
        json_object_foreach((json_t *)ph[k], name, v) {
            if (k == 1 && json_object_get(pre, name))
                continue;
            cell(out, name);
            for (int j = 0; j < 2; j++) {
                const json_t *o = json_object_get(ph[j], name);
                double ns = ibex_report_num(o, "ns"), fl = ibex_report_num(o, "flops"),
                       by = ibex_report_num(o, "bytes");
                char b[64];
                if (isfinite(ns) && tot[j] > 0)
                    snprintf(b, sizeof b, "%.1f%%", 100.0 * ns / tot[j]);
                else
                    snprintf(b, sizeof b, "-");
                cell(out, b);
                cell(out, ibex_report_fmt_value(ns > 0 ? fl / ns : NAN, "", b, sizeof b));
                cell(out, ibex_report_fmt_value(ns > 0 ? by / ns : NAN, "", b, sizeof b));
            }
            fputs("|\n", out);
        }
    }
    char a[64], b[64];
    fprintf(out, "\nOp time over the timed repetitions: prefill %s, decode %s.",
            ibex_report_fmt_seconds(tot[0] > 0 ? tot[0] * 1e-9 : NAN, a, sizeof a),
            ibex_report_fmt_seconds(tot[1] > 0 ? tot[1] * 1e-9 : NAN, b, sizeof b));
    double sns = ibex_report_num(pt, "sampler/ns_per_token");
    if (isfinite(sns))
        fprintf(out, " Sampler: %s per token.", ibex_report_fmt_seconds(sns * 1e-9, a, sizeof a));
    fputs("\n\n", out);
}

/* One compact table for a phase: a row per point, the share of each op (union of op
 * names, first appearance first) and the phase's overall GFLOP/s and GB/s. */
static void ops_compact(const json_t *r, FILE *out, const char *phase, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    const char *names[64];
    size_t nn = 0;
    size_t i;
    const json_t *pt;
    json_array_foreach(pts, i, pt) {
        const json_t *ph = json_object_get(json_object_get(pt, "ops"), phase);
        const char *name;
        const json_t *v;
        json_object_foreach((json_t *)ph, name, v) {
            size_t j = 0;
            while (j < nn && strcmp(names[j], name) != 0)
                j++;
            if (j == nn && nn < 64)
                names[nn++] = name;
        }
    }
    if (nn == 0)
        return;
    fprintf(out, "### %s: share of op time per point\n\n", phase);
    cell(out, "#");
    for (size_t k = 0; k < nk; k++)
        cell(out, swept[k]);
    for (size_t j = 0; j < nn; j++)
        cell(out, names[j]);
    cell(out, "op time");
    cell(out, "GFLOP/s");
    cell(out, "GB/s");
    fputs("|\n", out);
    for (size_t c = 0; c < 1 + nk + nn + 3; c++)
        fputs(c == 0 ? "|---" : "|---:", out);
    fputs("|\n", out);
    json_array_foreach(pts, i, pt) {
        const json_t *ph = json_object_get(json_object_get(pt, "ops"), phase);
        if (!json_is_object(ph))
            continue;
        double tot = 0, fl = 0, by = 0;
        const char *name;
        const json_t *v;
        json_object_foreach((json_t *)ph, name, v) {
            double ns = ibex_report_num(v, "ns"), f = ibex_report_num(v, "flops"), b = ibex_report_num(v, "bytes");
            tot += isfinite(ns) ? ns : 0;
            fl += isfinite(f) ? f : 0;
            by += isfinite(b) ? b : 0;
        }
        cells_index_swept(out, pt, i, swept, nk);
        char b[64];
        for (size_t j = 0; j < nn; j++) {
            double ns = ibex_report_num(json_object_get(ph, names[j]), "ns");
            if (isfinite(ns) && tot > 0)
                snprintf(b, sizeof b, "%.1f%%", 100.0 * ns / tot);
            else
                snprintf(b, sizeof b, "-");
            cell(out, b);
        }
        cell(out, ibex_report_fmt_seconds(tot > 0 ? tot * 1e-9 : NAN, b, sizeof b));
        cell(out, ibex_report_fmt_value(tot > 0 ? fl / tot : NAN, "", b, sizeof b));
        cell(out, ibex_report_fmt_value(tot > 0 ? by / tot : NAN, "", b, sizeof b));
        fputs("|\n", out);
    }
    fputc('\n', out);
}

/* Up to 4 points: a full table each. More: a compact table per phase, then the full
 * table of the last point with ops (usually the largest). */
static void ops_section(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t i, n_ops = 0;
    const json_t *pt, *last = NULL;
    size_t last_i = 0;
    json_array_foreach(pts, i, pt) {
        if (json_is_object(ibex_report_get(pt, "ops"))) {
            n_ops++;
            last = pt;
            last_i = i;
        }
    }
    if (n_ops == 0)
        return;
    fputs("## Where the time goes (per op)\n\nShare of each phase's op time (summed over the timed "
          "repetitions), and achieved GFLOP/s and GB/s from the analytic FLOP and byte counts.\n\n",
          out);
    if (n_ops > 4) {
        ops_compact(r, out, "prefill", swept, nk);
        ops_compact(r, out, "decode", swept, nk);
    }
    json_array_foreach(pts, i, pt) {
        if (!json_is_object(ibex_report_get(pt, "ops")) || (n_ops > 4 && pt != last))
            continue;
        const char *label = ibex_report_str(pt, "label");
        double idx = ibex_report_num(pt, "index");
        fprintf(out, "### %s %.0f: %s\n\n", n_ops > 4 ? "Detail of the last point," : "Point",
                isfinite(idx) ? idx : (double)(n_ops > 4 ? last_i : i), label ? label : "");
        op_table(pt, out);
    }
}

static void kv_table(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    static const char *cols[] = {"#",           "policy",         "block",       "pool",
                                 "peak reserved", "peak used",    "util (mean)", "frag (peak)",
                                 "max concurrent", "preemptions", "recomputed tok", "weights",
                                 "activations (peak)", "process RSS (peak)"};
    fputs("## KV cache and memory\n\nUtilisation is used / reserved KV bytes, averaged over steps; "
          "fragmentation is reserved - used.\n\n",
          out);
    header(out, cols, sizeof cols / sizeof cols[0], swept, nk);
    const json_t *pts = ibex_report_get(r, "points");
    size_t i;
    const json_t *pt;
    json_array_foreach(pts, i, pt) {
        cells_index_swept(out, pt, i, swept, nk);
        const char *pol = ibex_report_str(pt, "kv/policy");
        cell(out, pol ? pol : "-");
        cell_int(out, pt, "kv/block_size");
        cell_bytes(out, pt, "kv/pool_bytes");
        cell_bytes(out, pt, "kv/peak_reserved");
        cell_bytes(out, pt, "kv/peak_used");
        cell_pct(out, pt, "kv/utilisation_mean");
        cell_bytes(out, pt, "kv/fragmentation_peak");
        cell_int(out, pt, "kv/max_concurrent");
        cell_int(out, pt, "kv/preemptions");
        cell_int(out, pt, "kv/recomputed_tokens");
        cell_bytes(out, pt, "memory/weights");
        cell_bytes(out, pt, "memory/activations_peak");
        cell_bytes(out, pt, "memory/process_peak_rss");
        fputs("|\n", out);
    }
    fputc('\n', out);
}

static void plots_section(const ibex_report_plots *plots, FILE *out)
{
    size_t n = ibex_report_plots_count(plots);
    if (n == 0)
        return;
    fputs("## Plots\n\n", out);
    const char *note = ibex_report_plots_note(plots);
    if (note[0])
        fprintf(out, "> **Plots skipped:** %s. The gnuplot scripts and their data are in `plots/`; "
                     "render them with `cd plots && gnuplot NAME.gp`.\n\n",
                note);
    for (size_t i = 0; i < n; i++) {
        const char *name = ibex_report_plot_name(plots, i);
        fprintf(out, "### %s\n\n", ibex_report_plot_title(plots, i));
        if (ibex_report_plot_rendered(plots, i))
            fprintf(out, "![%s](plots/%s.png)\n\n", ibex_report_plot_title(plots, i), name);
        else
            fputs("*(image not rendered)*\n\n", out);
        const char *reading = ibex_report_plot_reading(plots, i);
        if (reading && reading[0])
            fprintf(out, "%s\n\n", reading);
        fprintf(out, "Script `plots/%s.gp`, data `plots/%s.dat`", name, name);
        if (ibex_report_plot_rendered(plots, i))
            fprintf(out, ", vector image `plots/%s.svg`", name);
        fputs(".\n\n", out);
    }
}

static void definitions(const json_t *r, FILE *out)
{
    const json_t *defs = ibex_report_get(r, "metric_definitions");
    if (!json_is_array(defs) || json_array_size(defs) == 0)
        return;
    fputs("## Metric definitions\n\n", out);
    size_t i;
    const json_t *d;
    json_array_foreach(defs, i, d) {
        const char *name = ibex_report_str(d, "name"), *key = ibex_report_str(d, "key"),
                   *f = ibex_report_str(d, "formula"), *unit = ibex_report_str(d, "unit");
        fprintf(out, "- **%s**", name ? name : key ? key : "?");
        if (unit && unit[0])
            fprintf(out, " (%s)", unit);
        fprintf(out, ": %s\n", f ? f : "-");
    }
    fputc('\n', out);
}

ibex_status ibex_report_markdown(const json_t *results, const ibex_report_plots *plots, FILE *out,
                                 ibex_err *err)
{
    if (!results || !out)
        return ibex_err_set(err, IBEX_ERR_INVALID, "markdown: results or output missing");
    const char *swept[MAX_SWEPT];
    size_t nk = ibex_report_swept_keys(results, swept, MAX_SWEPT);
    if (nk > MAX_SWEPT)
        nk = MAX_SWEPT;
    const char *name = ibex_report_str(results, "scenario/name");
    fprintf(out, "# ibex report: %s\n\n", name ? name : "(unnamed scenario)");
    const char *desc = ibex_report_str(results, "scenario/description");
    if (desc && desc[0])
        fprintf(out, "%s\n\n", desc);
    what_was_run(results, out, swept, nk);
    results_table(results, out, swept, nk);
    ops_section(results, out, swept, nk);
    kv_table(results, out, swept, nk);
    plots_section(plots, out);
    definitions(results, out);
    fputs("---\nGenerated by `ibex report` from `results.json`; regenerate with `ibex report DIR`.\n", out);
    if (ferror(out))
        return ibex_err_set(err, IBEX_ERR_IO, "markdown: write failed");
    return IBEX_OK;
}
