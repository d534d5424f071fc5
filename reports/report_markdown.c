/* report_markdown.c — report.md: what was run, the results per point, where the time
 * goes per op, the GPU activity CUPTI recorded (per kernel, per op, roofline), the cost
 * of the instruments themselves, the KV cache and memory, the plots with a reading of
 * each, and the metric formulas, all from results.json. */
#include "reports/reports.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
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
    const char *thp = ibex_report_str(r, "machine/huge_pages");
    if (thp)
        snprintf(b + strlen(b), sizeof b - strlen(b), ", huge pages: %s", thp);
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

/* A timed figure with its spread over the repetitions (report_noise.c). */
static void cell_spread(FILE *out, const json_t *pt, const char *metric, bool seconds, const char *missing)
{
    ibex_report_spread s;
    char b[128];
    ibex_report_spread_get(pt, metric, &s);
    cell(out, ibex_report_fmt_spread(&s, seconds, "", missing, b, sizeof b));
}

/* TPOT and ITL need a request that streamed two tokens or more: without one (beam
 * search emits its hypothesis at the end, or every output was 1 token) they are
 * undefined, not 0. */
static const char *undefined_if_no_pairs(const json_t *pt, const char *what)
{
    const char *st = ibex_report_str(pt, "status");
    if (st && strcmp(st, "ok") != 0)
        return "-";
    char path[64];
    snprintf(path, sizeof path, "metrics/%s/count", what);
    double c = ibex_report_num(pt, path);
    return !isfinite(c) || c == 0 ? "undefined" : "-";
}

/* Busy-machine and starvation warnings of the points (conditions.warning), one block
 * at the top of the report: a figure measured under load is slower and noisier. */
static void conditions_warnings(const json_t *r, FILE *out)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t i, nw = 0, np = json_array_size(pts);
    const json_t *pt;
    json_array_foreach(pts, i, pt) {
        const char *w = ibex_report_str(pt, "conditions/warning");
        nw += w && *w;
    }
    if (nw == 0)
        return;
    fprintf(out, "> **Busy machine:** %zu of %zu points were measured while the machine was busy or ibex was "
                 "starved of CPU; their timings are slower and noisier than on an idle machine:\n",
            nw, np);
    size_t shown = 0;
    json_array_foreach(pts, i, pt) {
        const char *w = ibex_report_str(pt, "conditions/warning");
        if (!w || !*w)
            continue;
        if (shown++ == 8) {
            fprintf(out, "> - … and %zu more\n", nw - 8);
            break;
        }
        const char *label = ibex_report_str(pt, "label");
        fprintf(out, "> - point %zu (%s): %s\n", i, label ? label : "-", w);
    }
    fputc('\n', out);
}

/* Points run past the model's trained context (model_ctx, model.beyond_trained_ctx):
 * the engine's cost there is real, the text it writes is not the model's. */
static void beyond_ctx_notes(const json_t *r, FILE *out)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t i;
    const json_t *pt;
    size_t n = 0;
    json_array_foreach(pts, i, pt) {
        if (!json_is_true(ibex_report_get(pt, "model/beyond_trained_ctx")))
            continue;
        if (n++ == 0)
            fputs("> **Context raised (model_ctx):**\n", out);
        const char *label = ibex_report_str(pt, "label");
        fprintf(out, "> - point %zu (%s): context %.0f, beyond the trained context (%.0f): timings valid, output quality not\n",
                i, label ? label : "-", ibex_report_num(pt, "model/ctx_len"), ibex_report_num(pt, "model/trained_ctx"));
    }
    if (n)
        fputc('\n', out);
}

static void results_table(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    static const char *cols[] = {"#",        "status",   "wall",     "output tok/s",  "total tok/s",
                                 "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",      "ITL p99",
                                 "E2E p99",  "prefill tok/s", "decode ms/token", "KV util"};
    fputs("## Results\n\nMedians over the timed repetitions (latency percentiles pooled over them), each with "
          "its spread over the repetitions: median ± sd (CV = sd / mean); `(n=1)`: one repetition, no spread "
          "known. ⚠ marks a noisy figure (CV above 10 % or fewer than 3 repetitions): do not conclude from it "
          "alone. TPOT and ITL are *undefined* when no request streamed two tokens or more (beam search emits "
          "its answer at the end).\n\n",
          out);
    header(out, cols, sizeof cols / sizeof cols[0], swept, nk);
    const json_t *pts = ibex_report_get(r, "points");
    size_t i;
    const json_t *pt;
    size_t noisy_pts = 0;
    json_array_foreach(pts, i, pt) {
        cells_index_swept(out, pt, i, swept, nk);
        const char *st = ibex_report_str(pt, "status");
        cell(out, st ? st : "-");
        cell_spread(out, pt, "wall_s", true, "-");
        cell_spread(out, pt, "output_tok_per_s", false, "-");
        cell_spread(out, pt, "total_tok_per_s", false, "-");
        cell_spread(out, pt, "ttft_p50", true, "-");
        cell_spread(out, pt, "ttft_p99", true, "-");
        cell_spread(out, pt, "tpot_p50", true, undefined_if_no_pairs(pt, "tpot"));
        cell_spread(out, pt, "tpot_p99", true, undefined_if_no_pairs(pt, "tpot"));
        cell_spread(out, pt, "itl_p99", true, undefined_if_no_pairs(pt, "itl"));
        cell_spread(out, pt, "e2e_p99", true, "-");
        cell_spread(out, pt, "prefill_tok_per_s", false, "-");
        cell_spread(out, pt, "decode_ms_per_token", false, "-");
        double ut = ibex_report_num(pt, "kv/utilisation_time_weighted");
        cell_pct(out, pt, isfinite(ut) ? "kv/utilisation_time_weighted" : "kv/utilisation_mean");
        fputs("|\n", out);
        const json_t *nm = ibex_report_get(pt, "noisy_metrics");
        noisy_pts += json_is_array(nm) && json_array_size(nm) > 0;
    }
    fputc('\n', out);
    if (noisy_pts) {
        fprintf(out, "Noisy figures (the runner's noise guard, `noisy_metrics`):\n\n");
        json_array_foreach(pts, i, pt) {
            const json_t *nm = ibex_report_get(pt, "noisy_metrics");
            if (!json_is_array(nm) || json_array_size(nm) == 0)
                continue;
            fprintf(out, "- point %zu:", i);
            size_t k;
            const json_t *m;
            json_array_foreach(nm, k, m) {
                if (!json_is_string(m))
                    continue;
                char path[128];
                snprintf(path, sizeof path, "noise/%s/reason", json_string_value(m));
                const char *why = ibex_report_str(pt, path);
                fprintf(out, "%s %s%s%s%s", k ? "," : "", json_string_value(m), why ? " (" : "", why ? why : "",
                        why ? ")" : "");
            }
            fputc('\n', out);
        }
        fputc('\n', out);
    }
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

/* Perplexity next to speed (the scenario's `quality:` key, harness/quality.c); only when
 * some point measured it. */
static void quality_table(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t i;
    const json_t *pt;
    double base = NAN;
    json_array_foreach(pts, i, pt) {
        const double p = ibex_report_num(pt, "quality/perplexity");
        if (isfinite(p)) {
            base = p;
            break;
        }
    }
    if (!isfinite(base))
        return;
    static const char *cols[] = {"#",          "prefill tok/s", "decode ms/token", "weight bytes", "perplexity",
                                 "vs first",   "NLL (nats/token)", "tokens scored", "text (ctx)"};
    fputs("## Quality\n\nPerplexity of each point's model on a text file: exp of the mean negative "
          "log-likelihood of the scored tokens (the second half of each chunk of *ctx* tokens, as llama.cpp's "
          "`perplexity`), beside the point's speed. *vs first* compares with the first point that measured it.\n\n",
          out);
    header(out, cols, sizeof cols / sizeof cols[0], swept, nk);
    json_array_foreach(pts, i, pt) {
        cells_index_swept(out, pt, i, swept, nk);
        cell_spread(out, pt, "prefill_tok_per_s", false, "-");
        cell_spread(out, pt, "decode_ms_per_token", false, "-");
        cell_bytes(out, pt, "memory/weights");
        const double p = ibex_report_num(pt, "quality/perplexity"), nll = ibex_report_num(pt, "quality/nll_mean");
        char b[96];
        if (isfinite(p)) {
            snprintf(b, sizeof b, "%.6g", p);
            cell(out, b);
            snprintf(b, sizeof b, "%+.2f%%", 100.0 * (p / base - 1.0));
            cell(out, b);
            snprintf(b, sizeof b, "%.5f", nll);
            cell(out, b);
            cell_int(out, pt, "quality/tokens_scored");
            const char *t = ibex_report_str(pt, "quality/text");
            snprintf(b, sizeof b, "%s (%.0f)", t ? t : "?", ibex_report_num(pt, "quality/ctx"));
            cell(out, b);
        } else {
            for (int k = 0; k < 5; k++)
                cell(out, "-");
        }
        fputs("|\n", out);
    }
    fputc('\n', out);
}

/* Spread of a point's paired weight reads (max / min - 1) above which report.md warns. */
#define IBEX_ROOF_MOVED 0.10

/* Every CPU point's decode and prefill against the run's measured roofline
 * (results.json points[].roofline; docs/RESULTS.md). Nothing when no point has one
 * (CUDA runs place their ops against the GPU roofline in the GPU section). */
static void roofline_section(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t i;
    const json_t *pt, *first = NULL;
    json_array_foreach(pts, i, pt) {
        const char *kind = ibex_report_str(pt, "roofline/kind");
        if (kind && strcmp(kind, "none") && !first)
            first = pt;
    }
    if (!first)
        return;
    char b1[64], b2[64];
    const char *method = ibex_report_str(first, "roofline/method"), *src = ibex_report_str(first, "roofline/source");
    fprintf(out, "## Against the roofline\n\nRoofline of this machine, %s: %s. Method: %s.\n\n",
             src ? src : "measured", ibex_report_str(first, "roofline/kind"), method ? method : "-");
    fputs("*decode of roofline* is the analytic bytes the decode steps read (weights and KV cache, "
          "`ops.decode.*.bytes`) per second of decode (= bytes per token × decode tok/s) over the measured read "
          "bandwidth; *prefill of peak* is the analytic FLOPs of the prefill steps per second over the measured "
          "peak F32 FMA rate. Medians over repetitions. *paired*: the model's own weight matrices read by the "
          "point's threads before the first timed repetition and after each; every repetition's decode is set "
          "against the mean of the two reads around it (*decode of paired*), so bandwidth the machine lends or "
          "withdraws between repetitions moves both sides; *moved* is the spread of those reads (max / min - 1).\n\n",
          out);
    static const char *cols[] = {"#", "threads", "read GB/s", "decode GB/s", "decode of roofline",
                                 "paired read GB/s", "decode of paired", "moved",
                                 "peak GFLOP/s", "prefill GFLOP/s", "prefill of peak"};
    header(out, cols, sizeof cols / sizeof cols[0], swept, nk);
    json_array_foreach(pts, i, pt) {
        const char *kind = ibex_report_str(pt, "roofline/kind");
        if (!kind)
            continue;
        cells_index_swept(out, pt, i, swept, nk);
        if (!strcmp(kind, "none")) {
            const char *e = ibex_report_str(pt, "roofline/error");
            snprintf(b1, sizeof b1, "not measured: %.40s", e ? e : "-");
            cell(out, b1);
            for (int k = 0; k < 9; k++)
                cell(out, "-");
            fputs("|\n", out);
            continue;
        }
        cell_int(out, pt, "roofline/threads");
        const double vals[4] = {ibex_report_num(pt, "roofline/read_bandwidth_bytes_per_s"),
                                ibex_report_num(pt, "roofline/decode_bytes_per_s"),
                                ibex_report_num(pt, "roofline/peak_flops_per_s"),
                                ibex_report_num(pt, "roofline/prefill_flops_per_s")};
        for (int k = 0; k < 2; k++) {
            snprintf(b2, sizeof b2, isfinite(vals[k]) ? "%.2f" : "-", vals[k] / 1e9);
            cell(out, b2);
        }
        cell_pct(out, pt, "roofline/decode_fraction");
        const double prd = ibex_report_num(pt, "roofline/paired/read_bytes_per_s");
        snprintf(b2, sizeof b2, isfinite(prd) ? "%.2f" : "-", prd / 1e9);
        cell(out, b2);
        cell_pct(out, pt, "roofline/paired/decode_fraction");
        cell_pct(out, pt, "roofline/paired/read_spread");
        for (int k = 2; k < 4; k++) {
            snprintf(b2, sizeof b2, isfinite(vals[k]) ? "%.1f" : "-", vals[k] / 1e9);
            cell(out, b2);
        }
        cell_pct(out, pt, "roofline/prefill_fraction");
        fputs("|\n", out);
    }
    fputc('\n', out);
    /* a fraction is only as good as the bandwidth under it: name the points where it moved */
    bool warned = false;
    json_array_foreach(pts, i, pt) {
        const double sp = ibex_report_num(pt, "roofline/paired/read_spread");
        if (!(sp > IBEX_ROOF_MOVED))
            continue;
        if (!warned)
            fprintf(out, "**Warning:** the machine's read bandwidth moved by more than %.0f%% during these points "
                         "(reads of the weights between repetitions); their fractions of the roofline are uncertain "
                         "by as much:",
                    100.0 * IBEX_ROOF_MOVED);
        fprintf(out, " #%zu (%.0f%%)", i, 100.0 * sp);
        warned = true;
    }
    if (warned)
        fputs(".\n\n", out);
}

static void kv_table(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    static const char *cols[] = {"#",           "policy",         "block",       "pool",
                                 "peak reserved", "peak used",    "util at peak", "util time-weighted",
                                 "util (step mean)", "frag (peak)",
                                 "max concurrent", "preemptions", "recomputed tok", "extra prefill",
                                 "weights", "activations (peak)", "process RSS (peak)"};
    fputs("## KV cache and memory\n\nUtilisation is used / reserved KV bytes: *at peak* at the step of peak "
          "reservation, *time-weighted* summed over the steps weighted by their wall time, *step mean* the plain "
          "mean over steps (which over-weighs the short steps of chunked prefill). Fragmentation is reserved - "
          "used. The cost of paging: preemptions, recomputed tokens and *extra prefill* (recomputed / first-time "
          "prefill tokens).\n\n",
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
        cell_pct(out, pt, "kv/utilisation_at_peak");
        cell_pct(out, pt, "kv/utilisation_time_weighted");
        cell_pct(out, pt, "kv/utilisation_mean");
        cell_bytes(out, pt, "kv/fragmentation_peak");
        cell_int(out, pt, "kv/max_concurrent");
        cell_int(out, pt, "kv/preemptions");
        cell_int(out, pt, "kv/recomputed_tokens");
        double rs = ibex_report_num(pt, "kv/recompute_share");
        double rt = ibex_report_num(pt, "kv/recomputed_tokens"), pf = ibex_report_num(pt, "kv/prefill_tokens");
        if (!isfinite(rs) && isfinite(rt) && pf > rt) /* prefill_tokens includes the recomputed ones */
            rs = rt / (pf - rt);
        char b[64];
        if (isfinite(rs))
            snprintf(b, sizeof b, "+%.1f%%", 100 * rs);
        else
            snprintf(b, sizeof b, "-");
        cell(out, b);
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

/* ---------------------------------------------------------------- GPU activity */

/* "62.5 %" of a fraction, "-" when not a number. */
static char *fmt_share(double f, char *b, size_t n)
{
    if (isfinite(f))
        snprintf(b, n, "%.1f %%", 100.0 * f);
    else
        snprintf(b, n, "-");
    return b;
}

/* A relative difference in percent with its sign: "+2.0 %", "−3.1 %" (minus sign),
 * "0.0 %" when it rounds to zero; "-" when not a number. */
static char *fmt_rel(double pct, char *b, size_t n)
{
    if (!isfinite(pct)) {
        snprintf(b, n, "-");
        return b;
    }
    char num[64];
    snprintf(num, sizeof num, "%.1f", fabs(pct));
    if (strcmp(num, "0.0") == 0)
        snprintf(b, n, "0.0 %%");
    else
        snprintf(b, n, "%s%s %%", pct < 0 ? "−" : "+", num);
    return b;
}

/* A fixed-point number, "-" when not a number. */
static char *fmt_fixed(double v, int decimals, char *b, size_t n)
{
    if (isfinite(v))
        snprintf(b, n, "%.*f", decimals, v);
    else
        snprintf(b, n, "-");
    return b;
}

static char *fmt_count(double v, char *b, size_t n) { return fmt_fixed(v, 0, b, n); }

/* A kernel-table cell: the op's name, "(outside any op)" for op -1, "op N" unnamed. */
static const char *op_label(const json_t *row, const char *name_key, char *b, size_t n)
{
    const char *name = ibex_report_str(row, name_key);
    double op = ibex_report_num(row, "op");
    if (name)
        return name;
    if (isfinite(op) && op < 0)
        return "(outside any op)";
    if (isfinite(op))
        snprintf(b, n, "op %.0f", op);
    else
        snprintf(b, n, "-");
    return b;
}

static void point_heading(const json_t *pt, size_t i, FILE *out)
{
    double idx = ibex_report_num(pt, "index");
    const char *label = ibex_report_str(pt, "label");
    fprintf(out, "### GPU activity of point %.0f: %s\n\n", isfinite(idx) ? idx : (double)i, label ? label : "");
}

static void device_line(const json_t *pt, FILE *out)
{
    const json_t *dev = json_object_get(pt, "device");
    const char *be = ibex_report_str(pt, "backend_used"), *att = ibex_report_str(pt, "attention_used");
    char b[64], c[64];
    fputs("Device: ", out);
    if (json_is_object(dev)) {
        const char *name = ibex_report_str(dev, "name");
        double maj = ibex_report_num(dev, "cc_major"), min = ibex_report_num(dev, "cc_minor"),
               sms = ibex_report_num(dev, "sm_count"), tot = ibex_report_num(dev, "mem_total"),
               fr = ibex_report_num(dev, "mem_free_at_start");
        fputs(name ? name : "(unnamed)", out);
        if (isfinite(maj) && isfinite(min))
            fprintf(out, ", compute capability %.0f.%.0f", maj, min);
        if (isfinite(sms))
            fprintf(out, ", %.0f SMs", sms);
        if (isfinite(tot))
            fprintf(out, ", %s memory", ibex_report_fmt_bytes(tot, b, sizeof b));
        if (isfinite(fr))
            fprintf(out, " (%s free at start)", ibex_report_fmt_bytes(fr, c, sizeof c));
    } else {
        fputs("not recorded", out);
    }
    if (be)
        fprintf(out, "; backend %s", be);
    if (att)
        fprintf(out, ", attention %s", att);
    fputs(".\n\n", out);
}

/* Writes a kernel name as a code span in a table cell. */
static void cell_kernel(FILE *out, const char *shown, int mark)
{
    char b[512];
    size_t k = 0;
    b[k++] = '`';
    for (const char *s = shown; *s && k + 2 < sizeof b - 16; s++)
        b[k++] = *s == '`' ? '\'' : *s;
    b[k++] = '`';
    b[k] = '\0';
    if (mark > 0)
        snprintf(b + k, sizeof b - k, " [%d]", mark);
    cell(out, b);
}

#define TOP_KERNELS 20

/* The kernels of one point, the top TOP_KERNELS by total time. Shortened names that
 * collide (different full names) get a numbered note with the full name. */
static void kernel_table(const json_t *g, FILE *out)
{
    const json_t *ks = json_object_get(g, "kernels");
    size_t nk = json_array_size(ks);
    if (nk == 0) {
        fputs("No kernels were recorded.\n\n", out);
        return;
    }
    /* Rows by total_ns, largest first (the tracer writes them so; sorted here to be
     * sure), ties in file order. */
    size_t *ord = malloc(nk * sizeof *ord);
    if (!ord)
        return;
    for (size_t i = 0; i < nk; i++)
        ord[i] = i;
    for (size_t i = 1; i < nk; i++) { /* insertion sort: stable, n is small */
        size_t v = ord[i], j = i;
        double tv = ibex_report_num(json_array_get(ks, v), "total_ns");
        while (j > 0) {
            double tp = ibex_report_num(json_array_get(ks, ord[j - 1]), "total_ns");
            if (!(isfinite(tv) && (!isfinite(tp) || tv > tp)))
                break;
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = v;
    }
    size_t shown = nk < TOP_KERNELS ? nk : TOP_KERNELS;
    char names[TOP_KERNELS][IBEX_KERNEL_NAME_BUF];
    int mark[TOP_KERNELS] = {0}, n_marks = 0;
    for (size_t i = 0; i < shown; i++) {
        const char *full = ibex_report_str(json_array_get(ks, ord[i]), "name");
        ibex_report_kernel_short_name(full, names[i], sizeof names[i]);
    }
    /* One mark per distinct full name among colliding short names. */
    for (size_t i = 0; i < shown; i++) {
        if (mark[i])
            continue;
        const char *fi = ibex_report_str(json_array_get(ks, ord[i]), "name");
        for (size_t j = 0; j < shown; j++) {
            const char *fj = ibex_report_str(json_array_get(ks, ord[j]), "name");
            if (j == i || strcmp(names[i], names[j]) != 0 || !fi || !fj || strcmp(fi, fj) == 0)
                continue;
            mark[i] = ++n_marks;
            for (size_t k = i + 1; k < shown; k++) { /* the same kernel under other ops */
                const char *fk = ibex_report_str(json_array_get(ks, ord[k]), "name");
                if (fk && strcmp(fk, fi) == 0)
                    mark[k] = mark[i];
            }
            break;
        }
    }
    double kernel_ns = ibex_report_num(g, "kernel_ns");
    fputs("| kernel | op | calls | total ms | mean µs | share |\n|---|---|---:|---:|---:|---:|\n", out);
    for (size_t i = 0; i < shown; i++) {
        const json_t *k = json_array_get(ks, ord[i]);
        char b[64];
        cell_kernel(out, names[i], mark[i]);
        cell(out, op_label(k, "op_name", b, sizeof b));
        cell(out, fmt_count(ibex_report_num(k, "calls"), b, sizeof b));
        cell(out, fmt_fixed(ibex_report_num(k, "total_ns") * 1e-6, 3, b, sizeof b));
        cell(out, fmt_fixed(ibex_report_num(k, "mean_ns") * 1e-3, 2, b, sizeof b));
        double share = ibex_report_num(k, "share");
        if (!isfinite(share) && kernel_ns > 0)
            share = ibex_report_num(k, "total_ns") / kernel_ns;
        cell(out, fmt_share(share, b, sizeof b));
        fputs("|\n", out);
    }
    fputc('\n', out);
    if (nk > shown) {
        double rest = 0, calls = 0;
        for (size_t i = shown; i < nk; i++) {
            double t = ibex_report_num(json_array_get(ks, ord[i]), "total_ns"),
                   c = ibex_report_num(json_array_get(ks, ord[i]), "calls");
            rest += isfinite(t) ? t : 0;
            calls += isfinite(c) ? c : 0;
        }
        char a[64], b[64];
        fprintf(out, "%zu more kernel rows not shown: %s in %.0f calls (%s of kernel time).\n\n", nk - shown,
                ibex_report_fmt_seconds(rest * 1e-9, a, sizeof a), calls,
                fmt_share(kernel_ns > 0 ? rest / kernel_ns : NAN, b, sizeof b));
    }
    for (int m = 1; m <= n_marks; m++)
        for (size_t i = 0; i < shown; i++)
            if (mark[i] == m) {
                fprintf(out, "- [%d] `%s`\n", m, ibex_report_str(json_array_get(ks, ord[i]), "name"));
                break;
            }
    if (n_marks)
        fputc('\n', out);
    fputs("Names are demangled, without their parameter lists; `kernels.csv` has every kernel under its full "
          "name.\n\n",
          out);
    free(ord);
}

static void op_activity_table(const json_t *g, FILE *out)
{
    const json_t *ops = json_object_get(g, "by_op");
    if (json_array_size(ops) == 0)
        return;
    fputs("GPU time per engine op (the op that launched each kernel and copy):\n\n"
          "| op | kernel time | share | kernels | memcpys | memcpy time | memcpy bytes | memsets |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|\n",
          out);
    size_t i;
    const json_t *o;
    json_array_foreach(ops, i, o) {
        char b[64];
        cell(out, op_label(o, "name", b, sizeof b));
        cell(out, ibex_report_fmt_seconds(ibex_report_num(o, "kernel_ns") * 1e-9, b, sizeof b));
        cell(out, fmt_share(ibex_report_num(o, "share"), b, sizeof b));
        cell(out, fmt_count(ibex_report_num(o, "kernels"), b, sizeof b));
        cell(out, fmt_count(ibex_report_num(o, "memcpys"), b, sizeof b));
        bool copies = ibex_report_num(o, "memcpys") > 0; /* NaN too: nothing to show */
        cell(out, copies ? ibex_report_fmt_seconds(ibex_report_num(o, "memcpy_ns") * 1e-9, b, sizeof b) : "-");
        cell(out, copies ? ibex_report_fmt_bytes(ibex_report_num(o, "memcpy_bytes"), b, sizeof b) : "-");
        cell(out, fmt_count(ibex_report_num(o, "memsets"), b, sizeof b));
        fputs("|\n", out);
    }
    fputc('\n', out);
}

/* Copies per direction, memsets and device allocations, in one paragraph. */
static void copies_line(const json_t *g, FILE *out)
{
    const json_t *mc = json_object_get(g, "memcpy"), *ms = json_object_get(g, "memset"),
                 *mem = json_object_get(g, "memory");
    bool any = false;
    const char *dir;
    const json_t *v;
    char a[64], b[64], c[64], d[64];
    json_object_foreach((json_t *)mc, dir, v) {
        fprintf(out, "%s %s %s in %s copies, %s (%s GB/s)", any ? ";" : "Copies:", dir,
                ibex_report_fmt_bytes(ibex_report_num(v, "bytes"), a, sizeof a),
                fmt_count(ibex_report_num(v, "count"), b, sizeof b),
                ibex_report_fmt_seconds(ibex_report_num(v, "total_ns") * 1e-9, c, sizeof c),
                ibex_report_fmt_value(ibex_report_num(v, "gb_per_s"), "", d, sizeof d));
        any = true;
    }
    double nset = ibex_report_num(ms, "count");
    if (isfinite(nset) && nset > 0) {
        fprintf(out, "%s %s in %.0f memsets, %s", any ? ";" : "Memsets:",
                ibex_report_fmt_bytes(ibex_report_num(ms, "bytes"), a, sizeof a), nset,
                ibex_report_fmt_seconds(ibex_report_num(ms, "total_ns") * 1e-9, b, sizeof b));
        any = true;
    }
    if (any)
        fputs(".", out);
    double allocs = ibex_report_num(mem, "allocs");
    if (isfinite(allocs)) {
        fprintf(out, "%sDevice allocations: %.0f (%s), frees: %s (%s), peak %s.", any ? " " : "", allocs,
                ibex_report_fmt_bytes(ibex_report_num(mem, "alloc_bytes"), a, sizeof a),
                fmt_count(ibex_report_num(mem, "frees"), b, sizeof b),
                ibex_report_fmt_bytes(ibex_report_num(mem, "free_bytes"), c, sizeof c),
                ibex_report_fmt_bytes(ibex_report_num(mem, "peak_bytes"), d, sizeof d));
        any = true;
    }
    if (any)
        fputs("\n\n", out);
}

static void roofline_table(const json_t *g, FILE *out)
{
    const json_t *roof = json_object_get(g, "roofline");
    if (json_array_size(roof) == 0)
        return;
    double bw = ibex_report_num(g, "copy_bandwidth_bytes_per_s");
    char a[64];
    if (isfinite(bw) && bw > 0)
        fprintf(out, "Roofline: each op's analytic bytes and FLOPs over its kernel time, against the measured "
                     "device copy bandwidth of %s GB/s (the memory roofline).\n\n",
                ibex_report_fmt_value(bw * 1e-9, "", a, sizeof a));
    else
        fputs("Roofline: each op's analytic bytes and FLOPs over its kernel time (the device copy bandwidth was "
              "not measured, so there is no share of it).\n\n",
              out);
    fputs("| op | kernel time | bytes | achieved GB/s | of copy bandwidth | TFLOP/s |\n"
          "|---|---:|---:|---:|---:|---:|\n",
          out);
    size_t i;
    const json_t *r;
    json_array_foreach(roof, i, r) {
        char b[64];
        const char *op = ibex_report_str(r, "op");
        cell(out, op ? op : "-");
        cell(out, ibex_report_fmt_seconds(ibex_report_num(r, "kernel_ns") * 1e-9, b, sizeof b));
        cell(out, ibex_report_fmt_bytes(ibex_report_num(r, "bytes"), b, sizeof b));
        double bps = ibex_report_num(r, "bytes_per_s"), frac = ibex_report_num(r, "bandwidth_fraction");
        if (!isfinite(frac) && isfinite(bw) && bw > 0)
            frac = bps / bw;
        cell(out, ibex_report_fmt_value(bps * 1e-9, "", b, sizeof b));
        cell(out, fmt_share(frac, b, sizeof b));
        cell(out, ibex_report_fmt_value(ibex_report_num(r, "flops_per_s") * 1e-12, "", b, sizeof b));
        fputs("|\n", out);
    }
    fputc('\n', out);
}

#define TOP_RANGES 10

static void ranges_table(const json_t *g, FILE *out)
{
    const json_t *rs = json_object_get(g, "ranges");
    size_t n = json_array_size(rs);
    if (n == 0)
        return;
    fputs("NVTX ranges as CUPTI saw them:\n\n| range | domain | calls | total | mean |\n|---|---|---:|---:|---:|\n",
          out);
    for (size_t i = 0; i < n && i < TOP_RANGES; i++) {
        const json_t *r = json_array_get(rs, i);
        char b[64];
        const char *name = ibex_report_str(r, "name"), *dom = ibex_report_str(r, "domain");
        cell(out, name && name[0] ? name : "(unnamed)");
        cell(out, dom ? dom : "(default)");
        cell(out, fmt_count(ibex_report_num(r, "calls"), b, sizeof b));
        cell(out, ibex_report_fmt_seconds(ibex_report_num(r, "total_ns") * 1e-9, b, sizeof b));
        cell(out, ibex_report_fmt_seconds(ibex_report_num(r, "mean_ns") * 1e-9, b, sizeof b));
        fputs("|\n", out);
    }
    if (n > TOP_RANGES)
        fprintf(out, "\n%zu more ranges not shown.\n", n - TOP_RANGES);
    fputc('\n', out);
}

/* One point's GPU activity: device, busy fraction, dropped records, the tables. */
static void gpu_point(const json_t *pt, size_t i, FILE *out)
{
    const json_t *g = json_object_get(pt, "gpu");
    point_heading(pt, i, out);
    const char *gerr = ibex_report_str(g, "error");
    if (gerr) {
        fprintf(out, "CUPTI did not record this point: %s.\n\n", gerr);
        return;
    }
    device_line(pt, out);
    char a[64], b[64], c[64], d[64];
    double busy = ibex_report_num(g, "busy_ns"), wall = ibex_report_num(g, "wall_ns"),
           span = ibex_report_num(g, "span_ns"), frac = ibex_report_num(g, "busy_fraction");
    bool has_wall = isfinite(wall) && wall > 0;
    fprintf(out, "GPU busy %s of the %s: %s of kernels, copies and sets (overlaps counted once) in %s",
            fmt_share(frac, a, sizeof a), has_wall ? "step wall time" : "GPU activity span",
            ibex_report_fmt_seconds(busy * 1e-9, b, sizeof b),
            ibex_report_fmt_seconds((has_wall ? wall : span) * 1e-9, c, sizeof c));
    if (has_wall)
        fprintf(out, " (activity span %s)", ibex_report_fmt_seconds(span * 1e-9, d, sizeof d));
    fprintf(out, ". Kernels: %s in %s launches.", ibex_report_fmt_seconds(ibex_report_num(g, "kernel_ns") * 1e-9, a,
                                                                          sizeof a),
            fmt_count(ibex_report_num(g, "kernel_calls"), b, sizeof b));
    double events = ibex_report_num(g, "events"), dropped = ibex_report_num(g, "dropped");
    if (isfinite(events))
        fprintf(out, " %.0f activity records", events);
    if (isfinite(dropped) && dropped == 0)
        fputs(isfinite(events) ? ", none dropped" : " No activity records were dropped", out);
    fputs(".\n\n", out);
    if (isfinite(dropped) && dropped > 0)
        fprintf(out, "> **Warning:** CUPTI dropped %.0f activity records (its buffers filled faster than they were "
                     "drained): every total below is a lower bound.\n\n",
                dropped);
    const char *ferr = ibex_report_str(g, "flush_error");
    if (ferr)
        fprintf(out, "> **Warning:** reading CUPTI's buffers failed (%s); the records of that buffer are missing.\n\n",
                ferr);
    kernel_table(g, out);
    op_activity_table(g, out);
    copies_line(g, out);
    roofline_table(g, out);
    ranges_table(g, out);
}

static bool asked_for_cupti(const json_t *pt)
{
    const char *in = ibex_report_str(pt, "params/instruments");
    return in && strcmp(in, "cupti") == 0;
}

/* GPU activity of every point that has a "gpu" object, and why CUPTI did not run where
 * it was asked for and could not start. Nothing when neither exists. */
static void gpu_section(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    const char *cerr = ibex_report_str(r, "cupti_error");
    size_t i, n_gpu = 0;
    const json_t *pt;
    json_array_foreach(pts, i, pt) n_gpu += json_is_object(json_object_get(pt, "gpu"));
    if (n_gpu == 0 && !cerr)
        return;
    fputs("## GPU activity (CUPTI)\n\n", out);
    if (cerr) {
        fprintf(out, "> **CUPTI did not run:** %s.", cerr);
        size_t n_asked = 0;
        json_array_foreach(pts, i, pt) {
            if (!asked_for_cupti(pt) || json_object_get(pt, "gpu"))
                continue;
            double idx = ibex_report_num(pt, "index");
            fprintf(out, "%s%.0f", n_asked ? ", " : " Points asking for `instruments: cupti` ran without it: ",
                    isfinite(idx) ? idx : (double)i);
            n_asked++;
        }
        fputs(n_asked ? " (their per-op times come from host timers).\n\n" : "\n\n", out);
    }
    if (n_gpu == 0)
        return;
    fputs("Kernels, copies and sets as the GPU ran them, recorded by CUPTI over the last timed repetition of each "
          "point run with `instruments: cupti`. Kernel shares are of the summed kernel time; GPU busy is the "
          "union of kernel, copy and set intervals over the summed step time.\n\n",
          out);
    if (n_gpu >= 2) {
        fputs("| # ", out);
        for (size_t k = 0; k < nk; k++)
            cell(out, swept[k]);
        fputs("| GPU busy | kernel time | launches | top kernel | top share | dropped |\n|---", out);
        for (size_t k = 0; k < nk + 6; k++)
            fputs(k == nk + 3 ? "|---" : "|---:", out);
        fputs("|\n", out);
        json_array_foreach(pts, i, pt) {
            const json_t *g = json_object_get(pt, "gpu");
            if (!json_is_object(g))
                continue;
            char b[IBEX_KERNEL_NAME_BUF];
            cells_index_swept(out, pt, i, swept, nk);
            if (ibex_report_str(g, "error")) {
                cell(out, "CUPTI error");
                for (int k = 0; k < 5; k++)
                    cell(out, "-");
                fputs("|\n", out);
                continue;
            }
            cell(out, fmt_share(ibex_report_num(g, "busy_fraction"), b, sizeof b));
            cell(out, ibex_report_fmt_seconds(ibex_report_num(g, "kernel_ns") * 1e-9, b, sizeof b));
            cell(out, fmt_count(ibex_report_num(g, "kernel_calls"), b, sizeof b));
            const json_t *ks = json_object_get(g, "kernels"), *top = json_array_get(ks, 0);
            for (size_t k = 1; k < json_array_size(ks); k++)
                if (ibex_report_num(json_array_get(ks, k), "total_ns") > ibex_report_num(top, "total_ns"))
                    top = json_array_get(ks, k);
            if (top) {
                cell_kernel(out, ibex_report_kernel_short_name(ibex_report_str(top, "name"), b, sizeof b), 0);
                cell(out, fmt_share(ibex_report_num(top, "share"), b, sizeof b));
            } else {
                cell(out, "-");
                cell(out, "-");
            }
            cell(out, fmt_count(ibex_report_num(g, "dropped"), b, sizeof b));
            fputs("|\n", out);
        }
        fputc('\n', out);
    }
    json_array_foreach(pts, i, pt) {
        if (json_is_object(json_object_get(pt, "gpu")))
            gpu_point(pt, i, out);
    }
}

/* ---------------------------------------------------------------- instrumentation overhead */

/* The instruments levels in order of cost; unknown ones sort after. */
static int instr_rank(const char *s)
{
    static const char *k_levels[] = {"off", "nvtx", "cupti"};
    for (int k = 0; k < 3; k++)
        if (strcmp(s, k_levels[k]) == 0)
            return k;
    return 3;
}

/* params without "instruments" (a new reference), or NULL when the point has no
 * instruments level. */
static json_t *params_but_instruments(const json_t *pt)
{
    const json_t *p = json_object_get(pt, "params");
    if (!json_is_string(json_object_get(p, "instruments")))
        return NULL;
    json_t *c = json_copy((json_t *)p);
    if (c)
        json_object_del(c, "instruments");
    return c;
}

static void overhead_row(FILE *out, const char *group, const json_t *pt, size_t i, const json_t *base)
{
    static const char *k_metrics[] = {"metrics/decode_tok_per_s", "metrics/output_tok_per_s"};
    char b[64];
    cell(out, group);
    double idx = ibex_report_num(pt, "index");
    snprintf(b, sizeof b, "%.0f", isfinite(idx) ? idx : (double)i);
    cell(out, b);
    cell(out, ibex_report_str(pt, "params/instruments"));
    for (int m = 0; m < 2; m++) {
        double v = ibex_report_num(pt, k_metrics[m]), v0 = ibex_report_num(base, k_metrics[m]);
        cell(out, ibex_report_fmt_value(v, "", b, sizeof b));
        if (pt == base)
            cell(out, "baseline");
        else
            cell(out, fmt_rel(v0 != 0 ? 100.0 * (v - v0) / v0 : NAN, b, sizeof b));
    }
    fputs("|\n", out);
}

/* Groups of points whose params are equal except "instruments", with at least two
 * levels: each level's median decode and output throughput and its difference from the
 * group's baseline ("off", else its least instrumented level). */
static void overhead_section(const json_t *r, FILE *out, const char **swept, size_t nk)
{
    const json_t *pts = ibex_report_get(r, "points");
    size_t np = json_array_size(pts);
    if (np < 2)
        return;
    json_t **key = calloc(np, sizeof *key);
    int *group = malloc(np * sizeof *group);
    if (!key || !group) {
        free(key);
        free(group);
        return;
    }
    for (size_t i = 0; i < np; i++) {
        key[i] = params_but_instruments(json_array_get(pts, i));
        group[i] = -1;
    }
    bool header_done = false;
    for (size_t i = 0; i < np; i++) {
        if (!key[i] || group[i] >= 0)
            continue;
        /* members of i's group, in rank order then file order */
        size_t *mem = malloc(np * sizeof *mem), nm = 0;
        if (!mem)
            break;
        bool levels = false;
        const char *first = ibex_report_str(json_array_get(pts, i), "params/instruments");
        for (size_t j = i; j < np; j++) {
            if (!key[j] || group[j] >= 0 || !json_equal(key[i], key[j]))
                continue;
            group[j] = (int)i;
            const char *lv = ibex_report_str(json_array_get(pts, j), "params/instruments");
            levels |= strcmp(lv, first) != 0;
            size_t k = nm++;
            while (k > 0 && instr_rank(ibex_report_str(json_array_get(pts, mem[k - 1]), "params/instruments")) >
                                instr_rank(lv)) {
                mem[k] = mem[k - 1];
                k--;
            }
            mem[k] = j;
        }
        if (levels) {
            if (!header_done) {
                fputs("## Instrumentation overhead\n\nPoints that differ only in `instruments`: median decode and "
                      "output throughput of each level, and the relative difference from the group's baseline, "
                      "`instruments: off` (in a group without `off`, its least instrumented level).\n\n"
                      "| configuration | # | instruments | decode tok/s | vs baseline | output tok/s | vs baseline |\n"
                      "|---|---:|---|---:|---:|---:|---:|\n",
                      out);
                header_done = true;
            }
            const json_t *p0 = json_array_get(pts, mem[0]);
            char grp[512] = "", b[256];
            for (size_t k = 0; k < nk; k++) {
                if (strcmp(swept[k], "instruments") == 0)
                    continue;
                size_t l = strlen(grp);
                snprintf(grp + l, sizeof grp - l, "%s%s=%s", l ? " " : "", swept[k],
                         ibex_report_swept_text(p0, swept[k], b, sizeof b));
            }
            for (size_t k = 0; k < nm; k++)
                overhead_row(out, grp[0] ? grp : "(all points)", json_array_get(pts, mem[k]), mem[k], p0);
        }
        free(mem);
    }
    if (header_done)
        fputc('\n', out);
    for (size_t i = 0; i < np; i++)
        json_decref(key[i]);
    free(key);
    free(group);
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
    conditions_warnings(results, out);
    beyond_ctx_notes(results, out);
    what_was_run(results, out, swept, nk);
    if (ibex_report_md_merge(results, out, err)) /* the shards of a merged run (report_merge.c) */
        return IBEX_ERR_IO;
    results_table(results, out, swept, nk);
    ops_section(results, out, swept, nk);
    roofline_section(results, out, swept, nk);
    gpu_section(results, out, swept, nk);
    overhead_section(results, out, swept, nk);
    quality_table(results, out, swept, nk);
    kv_table(results, out, swept, nk);
    plots_section(plots, out);
    definitions(results, out);
    fputs("---\nGenerated by `ibex report` from `results.json`; regenerate with `ibex report DIR`.\n", out);
    if (ferror(out))
        return ibex_err_set(err, IBEX_ERR_IO, "markdown: write failed");
    return IBEX_OK;
}
