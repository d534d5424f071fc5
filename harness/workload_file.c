/* workload_file.c — parsing and checking one line of a JSONL workload (see
 * workload_file.h). Nothing here allocates per request beyond the prompt text. */
#include "harness/workload_file.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void ibex_jsonl_req_clear(ibex_jsonl_req *r) {
    if (!r) return;
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* The 1-based column of "key" in line (the key's opening quote), or 1. */
static int key_col(const char *line, size_t len, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= len; i++)
        if (line[i] == '"' && memcmp(line + i + 1, key, kl) == 0 && line[i + 1 + kl] == '"') return (int)i + 1;
    return 1;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* An integer field in 1..hi into *out; absent leaves *out. */
static ibex_status int_field(json_t *o, const char *key, const char *line, size_t len, const char *file, int lineno,
                             int32_t hi, const char *hi_what, int32_t *out, ibex_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return IBEX_OK;
    int col = key_col(line, len, key);
    if (!json_is_integer(v))
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: %s must be an integer, not %s", file, lineno, col, key,
                            json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > hi)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: %s: %lld is out of range (1..%d, %s)", file, lineno, col,
                            key, (long long)x, hi, hi_what);
    *out = (int32_t)x;
    return IBEX_OK;
}

ibex_status ibex_jsonl_parse_line(const char *line, size_t len, const char *file, int lineno, int32_t ctx_len,
                                  ibex_jsonl_req *out, ibex_err *err) {
    memset(out, 0, sizeof *out);
    if (!file) file = "<workload>";
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')) i++;
    if (i == len) {
        out->blank = true;
        return IBEX_OK;
    }
    if (ctx_len < 1) return ibex_err_set(err, IBEX_ERR_INVALID, "%s:%d: model context length %d", file, lineno, ctx_len);
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!o)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: %s", file, lineno, je.column > 0 ? je.column : 1, je.text);
    ibex_status st = IBEX_OK;
    if (!json_is_object(o)) {
        st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: each line must be a JSON object, not %s", file, lineno,
                          (int)i + 1, json_kind(o));
        goto done;
    }
    json_t *text = json_object_get(o, "prompt"), *np = json_object_get(o, "prompt_tokens");
    if (text && np) {
        st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: give \"prompt\" (text) or \"prompt_tokens\", not both", file,
                          lineno, key_col(line, len, "prompt_tokens"));
        goto done;
    }
    if (text) {
        if (!json_is_string(text)) {
            st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: prompt must be a string, not %s", file, lineno,
                              key_col(line, len, "prompt"), json_kind(text));
            goto done;
        }
        if (json_string_length(text) == 0) {
            st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: empty prompt", file, lineno, key_col(line, len, "prompt"));
            goto done;
        }
    } else if (!np) {
        st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: needs \"prompt\" (text) or \"prompt_tokens\" (1..%d)", file,
                          lineno, (int)i + 1, ctx_len);
        goto done;
    }
    if ((st = int_field(o, "prompt_tokens", line, len, file, lineno, ctx_len, "the model's context length",
                        &out->prompt_tokens, err)))
        goto done;
    if ((st = int_field(o, "output_tokens", line, len, file, lineno, ctx_len, "the model's context length",
                        &out->output_tokens, err)))
        goto done;
    if (out->prompt_tokens && out->output_tokens && (int64_t)out->prompt_tokens + out->output_tokens > ctx_len) {
        st = ibex_err_set(err, IBEX_ERR_FORMAT,
                          "%s:%d:%d: prompt_tokens %d + output_tokens %d exceeds the model's context length %d", file,
                          lineno, key_col(line, len, "output_tokens"), out->prompt_tokens, out->output_tokens,
                          ctx_len);
        goto done;
    }
    if (text && !(out->text = strdup(json_string_value(text))))
        st = ibex_err_set(err, IBEX_ERR_NOMEM, "%s:%d: out of memory", file, lineno);
done:
    json_decref(o);
    if (st) memset(out, 0, sizeof *out);
    return st;
}
