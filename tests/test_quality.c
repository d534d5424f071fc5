/* test_quality.c — perplexity on a text file (harness/quality.c) against an independent
 * computation from the forward pass's logits, and its errors (each naming the file). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "harness/quality.h"
#include "kernels/backend.h"

static const char *k_text =
    "The tide came in over the flats at noon, and the wading birds moved up the shore ahead of it, "
    "stepping back a little at a time as if the water were a guest they did not want to offend. "
    "By evening the channel was full again and the boats that had leaned on their keels all "
    "afternoon stood upright, ready to go out with the dark.";

static char *write_tmp(const char *text) {
    char *path = strdup("/tmp/ibex_quality_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static ibex_model *tiny(ibex_type t) {
    ibex_model_params p = ibex_model_default_params();
    p.wtype = t;
    ibex_err err = {0};
    ibex_model *m = ibex_model_load("synthetic:tiny", &p, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* The same perplexity, computed here from the forward pass's logits in double, chunk by
 * chunk, scoring positions ctx/2 .. ctx−2 (quality.h's contract). */
static double ref_ppl(const ibex_model *m, ibex_backend *be, const char *text, int ctx, int max_chunks,
                      int64_t *scored) {
    ibex_err err = {0};
    const size_t len = strlen(text);
    int32_t *toks = malloc((len + 1) * sizeof *toks);
    const int64_t n = ibex_tokenizer_encode(m->tok, text, len, false, toks, (int64_t)len + 1, &err);
    cr_assert(n >= ctx);
    const int V = m->cfg.vocab_size;
    float *logits = malloc((size_t)ctx * V * sizeof *logits);
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 1, ctx, &err);
    ibex_forward *f = ibex_forward_new(m, be, ctx, &err);
    cr_assert(pool && f && logits, "%s", err.msg);
    int chunks = (int)(n / ctx);
    if (max_chunks > 0 && chunks > max_chunks) chunks = max_chunks;
    double nll = 0.0;
    *scored = 0;
    const int32_t table[1] = {0};
    for (int c = 0; c < chunks; c++) {
        ibex_fwd_seq sq = {.tokens = toks + (int64_t)c * ctx, .n_tokens = ctx, .block_table = table,
                           .logits = logits, .all_logits = true, .contiguous = true};
        cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
        for (int j = ctx / 2; j < ctx - 1; j++) {
            double z = 0.0; /* plain sum of exp without the max shift: fine at these logit sizes */
            for (int v = 0; v < V; v++) z += exp((double)logits[(int64_t)j * V + v]);
            nll += log(z) - logits[(int64_t)j * V + toks[(int64_t)c * ctx + j + 1]];
            (*scored)++;
        }
    }
    ibex_forward_free(f), ibex_kv_pool_free(pool), free(logits), free(toks);
    return exp(nll / (double)*scored);
}

Test(quality, perplexity_matches_an_independent_computation) {
    ibex_model *m = tiny(IBEX_TYPE_F16);
    ibex_backend *be = ibex_backend_cpu_new(1);
    char *path = write_tmp(k_text);
    const int ctx = 24, max_chunks[2] = {0, 2};
    for (int i = 0; i < 2; i++) {
        ibex_ppl q;
        ibex_err err = {0};
        cr_assert_eq(ibex_perplexity(m, be, path, ctx, max_chunks[i], &q, &err), IBEX_OK, "%s", err.msg);
        int64_t scored;
        const double want = ref_ppl(m, be, k_text, ctx, max_chunks[i], &scored);
        cr_assert_eq(q.n_scored, scored, "scored %lld, want %lld", (long long)q.n_scored, (long long)scored);
        cr_assert_eq(q.n_scored, (int64_t)q.n_chunks * (ctx - 1 - ctx / 2));
        if (max_chunks[i]) cr_assert_eq(q.n_chunks, max_chunks[i]);
        cr_assert(fabs(q.ppl - want) <= 1e-9 * want, "ppl %.12g, reference %.12g", q.ppl, want);
        cr_assert(fabs(exp(q.nll_mean) - q.ppl) <= 1e-9 * q.ppl);
        /* a random model is no better than chance: far above 1 */
        cr_assert(q.ppl > 10.0, "ppl %g", q.ppl);
    }
    unlink(path), free(path);
    ibex_backend_free(be), ibex_model_free(m);
}

/* Quantized weights move the perplexity a little, not wildly (Q8_0 within 1 %). */
Test(quality, q8_0_perplexity_is_close_to_f16) {
    ibex_backend *be = ibex_backend_cpu_new(1);
    char *path = write_tmp(k_text);
    double ppl[2];
    const ibex_type types[2] = {IBEX_TYPE_F16, IBEX_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        ibex_model *m = tiny(types[i]);
        ibex_ppl q;
        ibex_err err = {0};
        cr_assert_eq(ibex_perplexity(m, be, path, 32, 0, &q, &err), IBEX_OK, "%s", err.msg);
        ppl[i] = q.ppl;
        ibex_model_free(m);
    }
    cr_assert(ppl[0] != ppl[1], "Q8_0 gave the F16 number exactly: were the weights quantized?");
    cr_assert(fabs(ppl[1] / ppl[0] - 1.0) < 0.01, "F16 %g, Q8_0 %g", ppl[0], ppl[1]);
    unlink(path), free(path);
    ibex_backend_free(be);
}

Test(quality, errors_name_the_file) {
    ibex_model *m = tiny(IBEX_TYPE_F16);
    ibex_backend *be = ibex_backend_cpu_new(1);
    ibex_ppl q;
    ibex_err err = {0};
    cr_assert_neq(ibex_perplexity(m, be, "/nonexistent/ppl.txt", 16, 0, &q, &err), IBEX_OK);
    cr_assert(strstr(err.msg, "/nonexistent/ppl.txt"), "%s", err.msg);
    char *path = write_tmp("too short");
    err = (ibex_err){0};
    cr_assert_neq(ibex_perplexity(m, be, path, 64, 0, &q, &err), IBEX_OK);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "fewer than one chunk"), "%s", err.msg);
    err = (ibex_err){0};
    cr_assert_neq(ibex_perplexity(m, be, path, 1 << 20, 0, &q, &err), IBEX_OK);
    cr_assert(strstr(err.msg, "quality.ctx"), "%s", err.msg);
    unlink(path), free(path);
    ibex_backend_free(be), ibex_model_free(m);
}
