/* report_write.c — the terminal summary of a run, and ibex_report_write_all, which
 * regenerates every file of a run directory from its results.json. */
#include "reports/reports.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- terminal */

/* Display width of UTF-8 text (code points; every one is one column here). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Writes s right-aligned (left when left) in a field of width columns, truncating
 * with "..." when it is wider. */
static void put_col(FILE *out, const char *s, size_t width, bool left)
{
    size_t w = text_width(s);
    if (w > width) {
        /* Truncate on a code point boundary, leaving room for "...". */
        size_t cols = 0, k = 0;
        while (s[k] && cols + 3 < width) {
            k++;
            while (((unsigned char)s[k] & 0xC0) == 0x80)
                k++;
            cols++;
        }
        fprintf(out, "%.*s...", (int)k, s);
        return;
    }
    if (!left)
        for (size_t i = w; i < width; i++)
            fputc(' ', out);
    fputs(s, out);
    if (left)
        for (size_t i = w; i < width; i++)
            fputc(' ', out);
}

ibex_status ibex_report_terminal(const json_t *results, FILE *out, ibex_err *err)
{
    if (!results || !out)
        return ibex_err_set(err, IBEX_ERR_INVALID, "terminal summary: results or output missing");
    const json_t *pts = ibex_report_get(results, "points");
    size_t np = json_array_size(pts);
    const char *name = ibex_report_str(results, "scenario/name");
    const json_t *comp = ibex_report_get(results, "complete");
    fprintf(out, "ibex: %s, %zu point%s%s\n", name ? name : "(unnamed scenario)", np, np == 1 ? "" : "s",
            json_is_false(comp) ? " (INCOMPLETE)" : "");

    size_t lw = 5;
    for (size_t i = 0; i < np; i++) {
        const char *l = ibex_report_str(json_array_get(pts, i), "label");
        if (l && text_width(l) > lw)
            lw = text_width(l);
    }
    if (lw > 44)
        lw = 44;
    static const char *heads[] = {"out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "prefill tok/s", "dec ms/tok",
                                  "KV util"};
    static const size_t widths[] = {10, 9, 9, 9, 13, 10, 8};
    fputs("  #  ", out);
    put_col(out, "point", lw, true);
    fputs("  status ", out);
    for (size_t c = 0; c < sizeof heads / sizeof heads[0]; c++) {
        fputc(' ', out);
        put_col(out, heads[c], widths[c], false);
    }
    fputc('\n', out);
    for (size_t i = 0; i < np; i++) {
        const json_t *pt = json_array_get(pts, i);
        char b[64];
        fprintf(out, "%3zu  ", i);
        const char *l = ibex_report_str(pt, "label");
        put_col(out, l ? l : "-", lw, true);
        const char *st = ibex_report_str(pt, "status");
        fputs("  ", out);
        put_col(out, st ? st : "-", 7, true);
        const char *cells[7];
        char buf[7][64];
        cells[0] = ibex_report_fmt_value(ibex_report_num(pt, "metrics/output_tok_per_s"), "", buf[0], 64);
        cells[1] = ibex_report_fmt_seconds(ibex_report_num(pt, "metrics/ttft/p50"), buf[1], 64);
        cells[2] = ibex_report_fmt_seconds(ibex_report_num(pt, "metrics/ttft/p99"), buf[2], 64);
        cells[3] = ibex_report_fmt_seconds(ibex_report_num(pt, "metrics/tpot/p50"), buf[3], 64);
        /* no request streamed two tokens (beam search, 1-token outputs): undefined, not 0 */
        double tc = ibex_report_num(pt, "metrics/tpot/count");
        if (st && strcmp(st, "ok") == 0 && !isfinite(ibex_report_num(pt, "metrics/tpot/p50")) && !(tc > 0))
            cells[3] = "undefined";
        cells[4] = ibex_report_fmt_value(ibex_report_num(pt, "metrics/prefill_tok_per_s"), "", buf[4], 64);
        cells[5] = ibex_report_fmt_value(ibex_report_num(pt, "metrics/decode_ms_per_token"), "", buf[5], 64);
        double u = ibex_report_num(pt, "kv/utilisation_time_weighted");
        if (!isfinite(u))
            u = ibex_report_num(pt, "kv/utilisation_mean");
        if (isfinite(u))
            snprintf(b, sizeof b, "%.1f%%", 100.0 * u);
        else
            snprintf(b, sizeof b, "-");
        cells[6] = b;
        for (size_t c = 0; c < 7; c++) {
            fputc(' ', out);
            put_col(out, cells[c], widths[c], false);
        }
        fputc('\n', out);
    }

    /* The main curve as text, when gnuplot is there; the summary stands without it. */
    char gp[4096];
    if (ibex_report_gnuplot_find(gp, sizeof gp, NULL, 0)) {
        ibex_err perr;
        ibex_report_plots *plots = ibex_report_plots_plan(results, &perr);
        if (plots && ibex_report_plots_count(plots) > 0) {
            fprintf(out, "\n%s\n", ibex_report_plot_title(plots, 0));
            if (ibex_report_plot_dumb(plots, 0, gp, 90, 26, out, &perr) == IBEX_OK) {
                const char *reading = ibex_report_plot_reading(plots, 0);
                if (reading && reading[0])
                    fprintf(out, "%s\n", reading);
            }
        }
        ibex_report_plots_free(plots);
    }
    if (ferror(out))
        return ibex_err_set(err, IBEX_ERR_IO, "terminal summary: write failed");
    return IBEX_OK;
}

/* ---------------------------------------------------------------- every file */

typedef struct md_ctx {
    const json_t *results;
    const ibex_report_plots *plots;
} md_ctx;

static ibex_status fill_csv(FILE *f, void *ctx, ibex_err *err) { return ibex_report_csv(ctx, f, err); }

static ibex_status fill_kernels_csv(FILE *f, void *ctx, ibex_err *err)
{
    return ibex_report_kernels_csv(ctx, f, err);
}

static ibex_status fill_md(FILE *f, void *ctx, ibex_err *err)
{
    const md_ctx *m = ctx;
    return ibex_report_markdown(m->results, m->plots, f, err);
}

ibex_status ibex_report_write_all(const char *dir, ibex_err *err)
{
    if (!dir)
        return ibex_err_set(err, IBEX_ERR_INVALID, "report: no directory given");
    struct stat st;
    if (stat(dir, &st) != 0)
        return ibex_err_set(err, IBEX_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ibex_err_set(err, IBEX_ERR_IO, "%s: not a directory", dir);
    json_t *results = ibex_report_load(dir, err);
    if (!results)
        return err ? err->status : IBEX_ERR_FORMAT;

    char path[4096];
    ibex_report_plots *plots = NULL;
    snprintf(path, sizeof path, "%s/results.csv", dir);
    ibex_status s = ibex_report_write_atomic(path, fill_csv, results, err);
    if (s != IBEX_OK)
        goto done;
    if (ibex_report_has_kernels(results)) {
        snprintf(path, sizeof path, "%s/kernels.csv", dir);
        s = ibex_report_write_atomic(path, fill_kernels_csv, results, err);
        if (s != IBEX_OK)
            goto done;
    }

    plots = ibex_report_plots_plan(results, err);
    if (!plots) {
        s = err ? err->status : IBEX_ERR_NOMEM;
        goto done;
    }
    char gp[4096], why[512];
    bool have_gp = ibex_report_gnuplot_find(gp, sizeof gp, why, sizeof why);
    snprintf(path, sizeof path, "%s/plots", dir);
    s = ibex_report_plots_render(plots, path, have_gp ? gp : NULL, why, err);
    if (s != IBEX_OK)
        goto done;

    md_ctx m = {results, plots};
    snprintf(path, sizeof path, "%s/report.md", dir);
    s = ibex_report_write_atomic(path, fill_md, &m, err);
done:
    ibex_report_plots_free(plots);
    json_decref(results);
    return s;
}
