/* report_csv.c — results.csv: one row per sweep point, the swept keys and the main
 * metrics, in the units of results.json (seconds, bytes), for spreadsheets and scripts;
 * and kernels.csv: one row per (point, GPU kernel) from the points' CUPTI tables. */
#include "reports/reports.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The metric columns after the swept keys: CSV header name and results.json path. */
static const struct {
    const char *name;
    const char *path;
} k_columns[] = {
    {"wall_s", "metrics/wall_s"},
    {"output_tok_per_s", "metrics/output_tok_per_s"},
    {"total_tok_per_s", "metrics/total_tok_per_s"},
    {"req_per_s", "metrics/req_per_s"},
    {"goodput_req_per_s", "metrics/goodput_req_per_s"},
    {"prefill_tok_per_s", "metrics/prefill_tok_per_s"},
    {"decode_tok_per_s", "metrics/decode_tok_per_s"},
    {"decode_ms_per_token", "metrics/decode_ms_per_token"},
    {"ttft_p50", "metrics/ttft/p50"},
    {"ttft_p90", "metrics/ttft/p90"},
    {"ttft_p99", "metrics/ttft/p99"},
    {"tpot_p50", "metrics/tpot/p50"},
    {"tpot_p90", "metrics/tpot/p90"},
    {"tpot_p99", "metrics/tpot/p99"},
    {"itl_p50", "metrics/itl/p50"},
    {"itl_p99", "metrics/itl/p99"},
    {"e2e_p50", "metrics/e2e/p50"},
    {"e2e_p99", "metrics/e2e/p99"},
    {"kv_peak_reserved", "kv/peak_reserved"},
    {"kv_peak_used", "kv/peak_used"},
    {"kv_utilisation_mean", "kv/utilisation_mean"},
    {"kv_max_concurrent", "kv/max_concurrent"},
    {"kv_preemptions", "kv/preemptions"},
    {"memory_weights", "memory/weights"},
    {"memory_process_peak_rss", "memory/process_peak_rss"},
};

#define MAX_SWEPT 64

/* Writes one field with RFC 4180 quoting, preceded by a comma unless first. */
static void put_field(FILE *out, const char *s, bool first)
{
    if (!first)
        fputc(',', out);
    size_t len = strlen(s);
    bool quote = strpbrk(s, ",\"\r\n") != NULL ||
                 (len > 0 && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t'));
    if (!quote) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

/* A JSON scalar as CSV text: integers exactly, reals in their shortest exact form,
 * strings as is, true/false, anything else (missing, null, containers) empty. */
static void value_text(const json_t *v, char *buf, size_t n)
{
    buf[0] = '\0';
    if (json_is_integer(v)) {
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(buf, n, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    } else if (json_is_string(v)) {
        snprintf(buf, n, "%s", json_string_value(v));
    } else if (json_is_true(v)) {
        snprintf(buf, n, "true");
    } else if (json_is_false(v)) {
        snprintf(buf, n, "false");
    }
}

ibex_status ibex_report_csv(const json_t *results, FILE *out, ibex_err *err)
{
    if (!results || !out)
        return ibex_err_set(err, IBEX_ERR_INVALID, "csv: results or output missing");
    const char *swept[MAX_SWEPT];
    size_t n_swept = ibex_report_swept_keys(results, swept, MAX_SWEPT);
    if (n_swept > MAX_SWEPT)
        n_swept = MAX_SWEPT;

    put_field(out, "index", true);
    put_field(out, "label", false);
    put_field(out, "status", false);
    for (size_t k = 0; k < n_swept; k++)
        put_field(out, swept[k], false);
    for (size_t c = 0; c < sizeof k_columns / sizeof k_columns[0]; c++)
        put_field(out, k_columns[c].name, false);
    put_field(out, "error", false);
    fputc('\n', out);

    const json_t *pts = ibex_report_get(results, "points");
    size_t i;
    const json_t *pt;
    char buf[1024];
    json_array_foreach(pts, i, pt) {
        const json_t *idx = json_object_get(pt, "index");
        if (json_is_integer(idx))
            value_text(idx, buf, sizeof buf);
        else
            snprintf(buf, sizeof buf, "%zu", i);
        put_field(out, buf, true);
        value_text(json_object_get(pt, "label"), buf, sizeof buf);
        put_field(out, buf, false);
        value_text(json_object_get(pt, "status"), buf, sizeof buf);
        put_field(out, buf, false);
        for (size_t k = 0; k < n_swept; k++)
            put_field(out, ibex_report_swept_text(pt, swept[k], buf, sizeof buf), false);
        for (size_t c = 0; c < sizeof k_columns / sizeof k_columns[0]; c++) {
            value_text(ibex_report_get(pt, k_columns[c].path), buf, sizeof buf);
            put_field(out, buf, false);
        }
        value_text(json_object_get(pt, "error"), buf, sizeof buf);
        put_field(out, buf, false);
        fputc('\n', out);
    }
    if (ferror(out))
        return ibex_err_set(err, IBEX_ERR_IO, "csv: write failed");
    return IBEX_OK;
}

/* ---------------------------------------------------------------- kernels.csv */

bool ibex_report_has_kernels(const json_t *results)
{
    size_t i;
    const json_t *pt;
    json_array_foreach(ibex_report_get(results, "points"), i, pt) {
        if (json_array_size(ibex_report_get(pt, "gpu/kernels")) > 0)
            return true;
    }
    return false;
}

ibex_status ibex_report_kernels_csv(const json_t *results, FILE *out, ibex_err *err)
{
    if (!results || !out)
        return ibex_err_set(err, IBEX_ERR_INVALID, "kernels csv: results or output missing");
    static const char *k_head[] = {"index", "label", "kernel", "op", "calls", "total_ns", "mean_ns", "min_ns",
                                   "max_ns", "share"};
    /* the columns after kernel and op, straight from the kernel row */
    static const char *k_nums[] = {"calls", "total_ns", "mean_ns", "min_ns", "max_ns", "share"};
    for (size_t c = 0; c < sizeof k_head / sizeof k_head[0]; c++)
        put_field(out, k_head[c], c == 0);
    fputc('\n', out);
    const json_t *pts = ibex_report_get(results, "points");
    size_t i;
    const json_t *pt;
    char idx[64], label[1024], buf[1024];
    json_array_foreach(pts, i, pt) {
        const json_t *ks = ibex_report_get(pt, "gpu/kernels");
        if (!json_is_array(ks))
            continue;
        const json_t *ji = json_object_get(pt, "index");
        if (json_is_integer(ji))
            value_text(ji, idx, sizeof idx);
        else
            snprintf(idx, sizeof idx, "%zu", i);
        value_text(json_object_get(pt, "label"), label, sizeof label);
        size_t k;
        const json_t *row;
        json_array_foreach(ks, k, row) {
            put_field(out, idx, true);
            put_field(out, label, false);
            const json_t *name = json_object_get(row, "name"); /* C++ names can outgrow buf */
            if (json_is_string(name))
                put_field(out, json_string_value(name), false);
            else
                put_field(out, "", false);
            const json_t *on = json_object_get(row, "op_name");
            value_text(json_is_string(on) ? on : json_object_get(row, "op"), buf, sizeof buf);
            put_field(out, buf, false);
            for (size_t c = 0; c < sizeof k_nums / sizeof k_nums[0]; c++) {
                value_text(json_object_get(row, k_nums[c]), buf, sizeof buf);
                put_field(out, buf, false);
            }
            fputc('\n', out);
        }
    }
    if (ferror(out))
        return ibex_err_set(err, IBEX_ERR_IO, "kernels csv: write failed");
    return IBEX_OK;
}
