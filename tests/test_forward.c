/* test_forward.c — the forward pass: a hand-computable model checked against closed
 * forms, batched prefill against token-by-token decode, mixed batches against solo
 * runs, paged against contiguous block tables, and thread-count invariance. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"

/* ---- a model built by hand: F32 weights owned by the test ---- */

typedef struct hand {
    ibex_model m;
    ibex_layer_weights layer;
    float emb[8 * 4], out[8 * 4], ones[4], zeros[64], eye[16], wq[16], wk[16];
} hand;

static void hand_init(hand *h, int dim, int vocab) {
    memset(h, 0, sizeof *h);
    ibex_model_config *c = &h->m.cfg;
    *c = (ibex_model_config){.dim = dim, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = dim,
                             .ffn_dim = 4, .vocab_size = vocab, .ctx_len = 64, .rope_dim = dim,
                             .norm_eps = 1e-6f, .rope_base = 10000.0f};
    for (int i = 0; i < dim; i++) h->ones[i] = 1.0f, h->eye[i * dim + i] = 1.0f;
    ibex_weight W = {.type = IBEX_TYPE_F32, .n_in = dim, .n_out = dim};
    h->layer.attn_norm = h->ones;
    h->layer.ffn_norm = h->ones;
    W.data = h->zeros, h->layer.wq = W, h->layer.wk = W;
    W.data = h->eye, h->layer.wv = W, h->layer.wo = W;
    /* gate = 0 makes silu(gate)·up = 0: the MLP adds nothing */
    h->layer.w_gate = (ibex_weight){h->zeros, IBEX_TYPE_F32, dim, 4};
    h->layer.w_up = (ibex_weight){h->zeros, IBEX_TYPE_F32, dim, 4};
    h->layer.w_down = (ibex_weight){h->zeros, IBEX_TYPE_F32, 4, dim};
    h->m.layers = &h->layer;
    h->m.tok_embd = (ibex_weight){h->emb, IBEX_TYPE_F32, dim, vocab};
    h->m.output = (ibex_weight){h->out, IBEX_TYPE_F32, dim, vocab};
    h->m.output_norm = h->ones;
}

static void rmsn(double *y, const double *x, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r;
}

static void run_all_logits(const ibex_model *m, const int32_t *toks, int n, float *logits, int threads) {
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(threads);
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 1, 64, &err);
    ibex_forward *f = ibex_forward_new(m, be, 64, &err);
    cr_assert(be && pool && f, "%s", err.msg);
    int32_t table[1] = {0};
    ibex_fwd_seq sq = {.tokens = toks, .n_tokens = n, .pos0 = 0, .block_table = table, .logits = logits,
                       .all_logits = true};
    cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
    ibex_forward_free(f);
    ibex_kv_pool_free(pool);
    ibex_backend_free(be);
}

/* wq = wk = 0: every score is 0, attention is the plain mean of the values, so
 * x_p = e_p + mean_{j<=p} rmsnorm(e_j) and logits_p = W_out · rmsnorm(x_p). */
Test(forward, hand_model_uniform_attention) {
    hand h;
    hand_init(&h, 4, 3);
    const float emb[3][4] = {{1, 0, 0, 0}, {0, 2, 0, -1}, {0.5f, 0.5f, 0.5f, 3}};
    const float out[3][4] = {{1, 0, 0, 0}, {0, 1, 1, 0}, {0.25f, -1, 0, 2}};
    memcpy(h.emb, emb, sizeof emb);
    memcpy(h.out, out, sizeof out);
    int32_t toks[3] = {2, 0, 1};
    float logits[3 * 3];
    run_all_logits(&h.m, toks, 3, logits, 1);
    double mean[4] = {0};
    for (int p = 0; p < 3; p++) {
        double e[4], n[4], x[4], xn[4];
        for (int i = 0; i < 4; i++) e[i] = emb[toks[p]][i];
        rmsn(n, e, 4, 1e-6);
        for (int i = 0; i < 4; i++) mean[i] = (mean[i] * p + n[i]) / (p + 1), x[i] = e[i] + mean[i];
        rmsn(xn, x, 4, 1e-6);
        for (int v = 0; v < 3; v++) {
            double want = 0;
            for (int i = 0; i < 4; i++) want += out[v][i] * xn[i];
            cr_assert_float_eq(logits[p * 3 + v], want, 1e-5, "pos %d vocab %d: got %f want %f", p, v,
                               logits[p * 3 + v], want);
        }
    }
}

/* dim 2, wq = wk = I: RoPE rotates q and k by pos radians (θ = pos · base^0), so
 * score(p, j) = (q_p · k_j)/√2 with q_p = R(p)·n_p, k_j = R(j)·n_j, n = rmsnorm(e). */
Test(forward, hand_model_rope_attention) {
    hand h;
    hand_init(&h, 2, 2);
    h.m.cfg.ffn_dim = 4;
    const float emb[2][2] = {{1, 0}, {0.3f, -1}};
    const float out[2][2] = {{1, 0}, {0, 1}};
    memcpy(h.emb, emb, sizeof emb);
    memcpy(h.out, out, sizeof out);
    h.layer.wq = (ibex_weight){h.eye, IBEX_TYPE_F32, 2, 2};
    h.layer.wk = h.layer.wq;
    int32_t toks[4] = {0, 1, 1, 0};
    float logits[4 * 2];
    run_all_logits(&h.m, toks, 4, logits, 1);
    double n[4][2], q[4][2];
    for (int p = 0; p < 4; p++) {
        double e[2] = {emb[toks[p]][0], emb[toks[p]][1]};
        rmsn(n[p], e, 2, 1e-6);
        q[p][0] = n[p][0] * cos(p) - n[p][1] * sin(p);
        q[p][1] = n[p][0] * sin(p) + n[p][1] * cos(p);
    }
    for (int p = 0; p < 4; p++) {
        double s[4], mx = -1e30, sum = 0, att[2] = {0, 0};
        for (int j = 0; j <= p; j++) s[j] = (q[p][0] * q[j][0] + q[p][1] * q[j][1]) / sqrt(2.0), mx = fmax(mx, s[j]);
        for (int j = 0; j <= p; j++) s[j] = exp(s[j] - mx), sum += s[j];
        for (int j = 0; j <= p; j++) att[0] += s[j] / sum * n[j][0], att[1] += s[j] / sum * n[j][1];
        double x[2] = {emb[toks[p]][0] + att[0], emb[toks[p]][1] + att[1]}, xn[2];
        rmsn(xn, x, 2, 1e-6);
        cr_assert_float_eq(logits[p * 2 + 0], xn[0], 1e-5, "pos %d", p);
        cr_assert_float_eq(logits[p * 2 + 1], xn[1], 1e-5, "pos %d", p);
    }
}

/* ---- synthetic:tiny ---- */

static ibex_model *tiny(ibex_type t) {
    ibex_model_params p = ibex_model_default_params();
    p.wtype = t;
    ibex_err err = {0};
    ibex_model *m = ibex_model_load("synthetic:tiny", &p, &err);
    cr_assert(m, "%s", err.msg);
    return m;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double mx = 0, scale = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)a[i] - b[i])), scale = fmax(scale, fabs((double)b[i]));
    return mx / scale;
}

Test(forward, prefill_equals_token_by_token) {
    ibex_model *m = tiny(IBEX_TYPE_F32);
    const int n = 37, V = m->cfg.vocab_size;
    int32_t toks[37];
    for (int i = 0; i < n; i++) toks[i] = (i * 7919 + 13) % V;
    float *batched = malloc((size_t)n * V * 4), *single = malloc((size_t)n * V * 4);
    run_all_logits(m, toks, n, batched, 2);

    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 1, 64, &err);
    ibex_forward *f = ibex_forward_new(m, be, 1, &err);
    int32_t table[1] = {0};
    for (int i = 0; i < n; i++) {
        ibex_fwd_seq sq = {.tokens = &toks[i], .n_tokens = 1, .pos0 = i, .block_table = table,
                           .logits = single + (size_t)i * V};
        cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
    }
    for (int i = 0; i < n; i++) {
        double d = max_rel_diff(batched + (size_t)i * V, single + (size_t)i * V, (size_t)V);
        cr_assert_lt(d, 1e-5, "position %d: batched and incremental logits differ by %g (relative)", i, d);
        cr_assert_eq(ibex_sample_greedy(batched + (size_t)i * V, V), ibex_sample_greedy(single + (size_t)i * V, V));
    }
    /* the logits must be informative: not uniform, finite */
    double mn = 1e30, mx = -1e30;
    for (int i = 0; i < V; i++) mn = fmin(mn, batched[i]), mx = fmax(mx, batched[i]);
    cr_assert(isfinite(mn) && isfinite(mx) && mx - mn > 1.0, "logit range %g..%g", mn, mx);
    free(batched), free(single);
    ibex_forward_free(f), ibex_kv_pool_free(pool), ibex_backend_free(be), ibex_model_free(m);
}

/* Two sequences in one call, one paged through a shuffled block table and one in a
 * single contiguous block of the same pool, equal each sequence run alone. */
Test(forward, mixed_batch_paged_equals_solo) {
    ibex_model *m = tiny(IBEX_TYPE_F16);
    const int V = m->cfg.vocab_size, na = 40, nb = 9, bs = 8;
    int32_t a[40], b[9];
    for (int i = 0; i < na; i++) a[i] = 3 + (i * 31) % 500;
    for (int i = 0; i < nb; i++) b[i] = 700 + i * 11;
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    /* pool of 16 blocks of 8: a uses blocks {9,2,14,5,0} (paged), b uses 6,7 */
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 16, bs, &err);
    ibex_forward *f = ibex_forward_new(m, be, 64, &err);
    cr_assert(be && pool && f, "%s", err.msg);
    int32_t ta[5] = {9, 2, 14, 5, 0}, tb[2] = {6, 7};
    float *la = malloc((size_t)V * 4), *lb = malloc((size_t)V * 4);
    float *ra = malloc((size_t)V * 4), *rb = malloc((size_t)V * 4);
    /* prefill a (first 32) and b together, then decode one more token of each together */
    ibex_fwd_seq s2[2] = {{.tokens = a, .n_tokens = na - 1, .pos0 = 0, .block_table = ta, .logits = la},
                          {.tokens = b, .n_tokens = nb - 1, .pos0 = 0, .block_table = tb, .logits = lb}};
    cr_assert_eq(ibex_forward_run(f, pool, s2, 2, &err), IBEX_OK, "%s", err.msg);
    ibex_fwd_seq d2[2] = {{.tokens = a + na - 1, .n_tokens = 1, .pos0 = na - 1, .block_table = ta, .logits = la},
                          {.tokens = b + nb - 1, .n_tokens = 1, .pos0 = nb - 1, .block_table = tb, .logits = lb}};
    cr_assert_eq(ibex_forward_run(f, pool, d2, 2, &err), IBEX_OK, "%s", err.msg);

    /* reference: each alone, contiguous */
    ibex_kv_pool *solo = ibex_kv_pool_new(&m->cfg, 1, 64, &err);
    int32_t t0[1] = {0};
    ibex_fwd_seq sa = {.tokens = a, .n_tokens = na, .pos0 = 0, .block_table = t0, .logits = ra};
    cr_assert_eq(ibex_forward_run(f, solo, &sa, 1, &err), IBEX_OK, "%s", err.msg);
    ibex_fwd_seq sb = {.tokens = b, .n_tokens = nb, .pos0 = 0, .block_table = t0, .logits = rb};
    cr_assert_eq(ibex_forward_run(f, solo, &sb, 1, &err), IBEX_OK, "%s", err.msg);
    cr_assert_lt(max_rel_diff(la, ra, (size_t)V), 1e-5);
    cr_assert_lt(max_rel_diff(lb, rb, (size_t)V), 1e-5);
    free(la), free(lb), free(ra), free(rb);
    ibex_kv_pool_free(solo);
    ibex_forward_free(f), ibex_kv_pool_free(pool), ibex_backend_free(be), ibex_model_free(m);
}

Test(forward, thread_count_does_not_change_logits) {
    ibex_model *m = tiny(IBEX_TYPE_BF16);
    const int n = 12, V = m->cfg.vocab_size;
    int32_t toks[12];
    for (int i = 0; i < n; i++) toks[i] = 100 + i * 97;
    float *l1 = malloc((size_t)n * V * 4), *l2 = malloc((size_t)n * V * 4);
    run_all_logits(m, toks, n, l1, 1);
    run_all_logits(m, toks, n, l2, 2);
    cr_assert(memcmp(l1, l2, (size_t)n * V * 4) == 0, "1 and 2 threads gave different logits");
    free(l1), free(l2);
    ibex_model_free(m);
}

Test(forward, rejects_bad_batches) {
    ibex_model *m = tiny(IBEX_TYPE_F16);
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(1);
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 1, 16, &err);
    ibex_forward *f = ibex_forward_new(m, be, 4, &err);
    int32_t table[1] = {0}, toks[5] = {1, 2, 3, 4, 5}, bad = 32000;
    ibex_fwd_seq too_many = {.tokens = toks, .n_tokens = 5, .block_table = table};
    cr_assert_eq(ibex_forward_run(f, pool, &too_many, 1, &err), IBEX_ERR_INVALID);
    cr_assert(strstr(err.msg, "exceeds"), "%s", err.msg);
    ibex_fwd_seq oov = {.tokens = &bad, .n_tokens = 1, .block_table = table};
    cr_assert_eq(ibex_forward_run(f, pool, &oov, 1, &err), IBEX_ERR_INVALID);
    cr_assert(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    ibex_fwd_seq empty = {.tokens = toks, .n_tokens = 0, .block_table = table};
    cr_assert_eq(ibex_forward_run(f, pool, &empty, 1, &err), IBEX_ERR_INVALID);
    ibex_forward_free(f), ibex_kv_pool_free(pool), ibex_backend_free(be), ibex_model_free(m);
}

Test(forward, profiling_counts_attention_flops) {
    ibex_model *m = tiny(IBEX_TYPE_F16);
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(1);
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 1, 64, &err);
    ibex_forward *f = ibex_forward_new(m, be, 64, &err);
    ibex_forward_set_profiling(f, true);
    int32_t table[1] = {0}, toks[10];
    for (int i = 0; i < 10; i++) toks[i] = i + 5;
    ibex_fwd_seq sq = {.tokens = toks, .n_tokens = 10, .block_table = table};
    cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK);
    const ibex_op_stats *st = ibex_forward_stats(f);
    /* 10 queries see 1..10 keys = 55 pairs; 4 FLOPs per pair per head dim per head per layer */
    double want = 55.0 * 4 * m->cfg.head_dim * m->cfg.n_heads * m->cfg.n_layers;
    cr_assert_float_eq(st->flops[IBEX_OP_ATTENTION], want, 1e-6);
    cr_assert_eq(st->calls[IBEX_OP_ATTENTION], m->cfg.n_layers);
    cr_assert_gt(st->ns[IBEX_OP_MATMUL_FFN], 0);
    ibex_forward_free(f), ibex_kv_pool_free(pool), ibex_backend_free(be), ibex_model_free(m);
}

Test(sampler, greedy_picks_first_max_and_skips_nan) {
    float a[5] = {1, 3, NAN, 3, -2};
    cr_assert_eq(ibex_sample_greedy(a, 5), 1);
    float b[3] = {NAN, NAN, -1};
    cr_assert_eq(ibex_sample_greedy(b, 3), 2);
    cr_assert_eq(ibex_sample_greedy(a, 0), -1);
}
