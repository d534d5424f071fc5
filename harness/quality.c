/* quality.c — perplexity of a model on a text file, the quality figure a scenario's
 * `quality:` key puts next to each point's speed (quality.h has the contract).
 *
 * Why second-half scoring: the first tokens of a chunk are predicted from almost no
 * context and would dominate the mean; llama.cpp's `perplexity` scores only the second
 * half of each chunk, and ibex does the same so its numbers mean the same thing (they are
 * comparable across ibex's precisions and backends on the same file and ctx; against
 * llama.cpp only with the same tokenizer, ctx and BOS handling — llama.cpp puts BOS first
 * in each chunk, ibex evaluates the raw text tokens). */
#include "harness/quality.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fileio.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/tokenizer.h"

/* The whole file as a NUL-terminated string (*len bytes), or NULL with err set. */
static char *read_text(const char *path, size_t *len, ibex_err *err) {
    FILE *f = ibex_fopen_regular(path, err);
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f)) {
            ibex_err_set(err, IBEX_ERR_IO, "quality.text: %s: read error", path);
            free(buf), buf = NULL;
            break;
        }
        if (feof(f)) break;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb, cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        if (!err || !err->status) ibex_err_set(err, IBEX_ERR_NOMEM, "quality.text: %s: out of memory", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

ibex_status ibex_perplexity(const ibex_model *m, ibex_backend *be, const char *path, int32_t ctx, int32_t max_chunks,
                            ibex_ppl *out, ibex_err *err) {
    memset(out, 0, sizeof *out);
    if (!m->tok)
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "quality.text: %s: the model has no text tokenizer", path);
    if (ctx < 4 || ctx > m->cfg.ctx_len)
        return ibex_err_set(err, IBEX_ERR_INVALID, "quality.ctx: %d is outside [4, %d] (the model's context length)",
                            ctx, m->cfg.ctx_len);
    size_t len = 0;
    char *text = read_text(path, &len, err);
    if (!text) return err && err->status ? err->status : IBEX_ERR_IO;
    ibex_status st = IBEX_OK;
    int32_t *toks = NULL;
    float *logits = NULL;
    ibex_kv_pool *pool = NULL;
    struct ibex_forward *f = NULL;
    /* at most one token per byte (byte fallback), so one call fills a len-token buffer */
    int64_t n = 0;
    if (!(toks = malloc((len + 1) * sizeof *toks))) {
        st = ibex_err_set(err, IBEX_ERR_NOMEM, "quality.text: %s: out of memory", path);
        goto done;
    }
    if (len && (n = ibex_tokenizer_encode(m->tok, text, len, false, toks, (int64_t)len + 1, err)) < 0) {
        st = err && err->status ? err->status : IBEX_ERR_NOMEM;
        goto done;
    }
    if (n < ctx) {
        st = ibex_err_set(err, IBEX_ERR_INVALID,
                          "quality.text: %s: %lld bytes encode to %lld tokens, fewer than one chunk of quality.ctx = "
                          "%d tokens",
                          path, (long long)len, (long long)n, ctx);
        goto done;
    }
    if (!(logits = malloc((size_t)ctx * (size_t)m->cfg.vocab_size * sizeof *logits))) {
        st = ibex_err_set(err, IBEX_ERR_NOMEM, "quality.text: %s: out of memory for %d × %d logits", path, ctx,
                          m->cfg.vocab_size);
        goto done;
    }
    /* one block of ctx tokens, in the backend's memory when it has its own */
    if (!(pool = ibex_kv_pool_new_on(&m->cfg, 1, ctx, be, err)) || !(f = ibex_forward_new(m, be, ctx, err))) {
        st = err && err->status ? err->status : IBEX_ERR_NOMEM;
        goto done;
    }
    int32_t chunks = (int32_t)(n / ctx);
    if (max_chunks > 0 && chunks > max_chunks) chunks = max_chunks;
    const int32_t V = m->cfg.vocab_size, first = ctx / 2;
    double nll = 0.0;
    int64_t scored = 0;
    const int32_t table[1] = {0};
    for (int32_t c = 0; c < chunks; c++) {
        const int32_t *ct = toks + (int64_t)c * ctx;
        ibex_fwd_seq sq = {.tokens = ct, .n_tokens = ctx, .pos0 = 0, .block_table = table, .logits = logits,
                           .all_logits = true, .contiguous = true};
        if ((st = ibex_forward_run(f, pool, &sq, 1, err)) != IBEX_OK) goto done;
        for (int32_t j = first; j < ctx - 1; j++) {
            const float *l = logits + (int64_t)j * V;
            double mx = -INFINITY, s = 0.0;
            for (int32_t v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int32_t v = 0; v < V; v++) s += exp((double)l[v] - mx);
            nll += mx + log(s) - (double)l[ct[j + 1]];
            scored++;
        }
    }
    if (!(scored > 0) || !isfinite(nll)) {
        st = ibex_err_set(err, IBEX_ERR_BACKEND, "quality.text: %s: the logits were not finite (%lld tokens scored)",
                          path, (long long)scored);
        goto done;
    }
    out->nll_mean = nll / (double)scored;
    out->ppl = exp(out->nll_mean);
    out->n_scored = scored;
    out->n_text = n;
    out->n_chunks = chunks;
    out->ctx = ctx;
done:
    ibex_forward_free(f);
    ibex_kv_pool_free(pool);
    free(text), free(toks), free(logits);
    return st;
}
