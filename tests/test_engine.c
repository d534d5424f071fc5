/* test_engine.c — the step API and schedulers: every KV policy and both schedulers
 * give the same greedy tokens; preemption by recompute changes nothing; the budget
 * is never exceeded and everything is returned at the end; accounting-only mode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

#define NREQ 6
#define NEW 10

static ibex_model *g_model;

static void setup(void) {
    ibex_model_params p = ibex_model_default_params();
    ibex_err err = {0};
    g_model = ibex_model_load("synthetic:tiny", &p, &err);
    cr_assert(g_model, "%s", err.msg);
}
static void teardown(void) { ibex_model_free(g_model); }

typedef struct outcome {
    int32_t toks[NREQ][NEW];
    int32_t n[NREQ];
    ibex_engine_totals tot;
    int64_t peak_reserved;
} outcome;

static void prompt_of(int i, int32_t *p, int32_t *n) {
    *n = 3 + i * 7; /* 3, 10, 17, ... 38 */
    for (int j = 0; j < *n; j++) p[j] = 3 + (i * 131 + j * 17) % 30000;
}

/* Runs NREQ requests to completion, checking invariants after every step. */
static outcome run(ibex_kv_policy pol, ibex_sched_policy sched, int64_t budget, int32_t block, int32_t batch,
                   int32_t step_tokens) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.policy = pol;
    cfg.kv.budget_bytes = budget;
    cfg.kv.block_size = block;
    cfg.sched = sched;
    cfg.max_batch = batch;
    cfg.max_step_tokens = step_tokens;
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    ibex_engine *e = ibex_engine_new(g_model, be, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    int64_t ids[NREQ];
    for (int i = 0; i < NREQ; i++) {
        int32_t p[64], n;
        prompt_of(i, p, &n);
        ibex_request_params rp = ibex_request_default_params(); /* static batches drain unevenly */
        rp.max_new_tokens = NEW - i;
        rp.ignore_eos = true;
        ids[i] = ibex_engine_submit(e, p, n, &rp, &err);
        cr_assert_geq(ids[i], 0, "%s", err.msg);
    }
    ibex_token_event ev[64];
    int guard = 0;
    ibex_kv_stats ks;
    while (ibex_engine_has_work(e)) {
        int nev = ibex_engine_step(e, ev, 64, &err);
        cr_assert_geq(nev, 0, "%s", err.msg);
        cr_assert(ibex_kv_check(ibex_engine_kv(e), &err), "invariant broken at step %d: %s", guard, err.msg);
        ibex_kv_stats_get(ibex_engine_kv(e), &ks);
        cr_assert_leq(ks.bytes_reserved, ks.bytes_pool);
        cr_assert_leq(ks.blocks_used, ks.n_blocks);
        cr_assert_lt(++guard, 10000, "engine does not make progress");
    }
    outcome o = {0};
    for (int i = 0; i < NREQ; i++) {
        const int32_t *t = ibex_engine_output(e, ids[i], &o.n[i]);
        cr_assert_eq(o.n[i], NEW - i);
        memcpy(o.toks[i], t, (size_t)o.n[i] * sizeof *t);
    }
    o.tot = *ibex_engine_totals_get(e);
    ibex_kv_stats_get(ibex_engine_kv(e), &ks);
    cr_assert_eq(ks.blocks_used, 0, "blocks leaked");
    cr_assert_eq(ks.bytes_reserved, 0);
    cr_assert_eq(ks.bytes_used, 0);
    o.peak_reserved = ks.peak_reserved;
    ibex_engine_free(e);
    ibex_backend_free(be);
    return o;
}

static void same_tokens(const outcome *a, const outcome *b, const char *what) {
    for (int i = 0; i < NREQ; i++)
        cr_assert(memcmp(a->toks[i], b->toks[i], sizeof a->toks[i]) == 0, "%s: request %d differs", what, i);
}

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 600);

Test(engine, every_policy_and_scheduler_gives_the_same_tokens) {
    const int64_t big = 64ll << 20;
    outcome ref = run(IBEX_KV_CONTIGUOUS, IBEX_SCHED_CONTINUOUS, big, 16, 4, 0);
    outcome paged = run(IBEX_KV_PAGED, IBEX_SCHED_CONTINUOUS, big, 16, 4, 0);
    outcome paged1 = run(IBEX_KV_PAGED, IBEX_SCHED_CONTINUOUS, big, 1, 3, 0);
    outcome none = run(IBEX_KV_NONE, IBEX_SCHED_CONTINUOUS, big, 16, 4, 0);
    outcome stat = run(IBEX_KV_CONTIGUOUS, IBEX_SCHED_STATIC, big, 16, 4, 0);
    outcome statp = run(IBEX_KV_PAGED, IBEX_SCHED_STATIC, big, 16, 2, 0);
    outcome chunked = run(IBEX_KV_PAGED, IBEX_SCHED_CONTINUOUS, big, 16, 6, 8);
    same_tokens(&ref, &paged, "paged");
    same_tokens(&ref, &paged1, "paged, block 1");
    same_tokens(&ref, &none, "none");
    same_tokens(&ref, &stat, "static");
    same_tokens(&ref, &statp, "static paged");
    same_tokens(&ref, &chunked, "chunked prefill");
    /* static keeps finished requests in their slots; continuous never does */
    cr_assert_gt(stat.tot.idle_slot_steps, 0);
    cr_assert_eq(ref.tot.idle_slot_steps, 0);
    /* none recomputes the whole history every step: far more prefill work */
    cr_assert_gt(none.tot.prefill_tokens, 5 * ref.tot.prefill_tokens);
    cr_assert_eq(ref.tot.preemptions, 0);
}

Test(engine, preemption_recomputes_identical_tokens) {
    const int64_t big = 64ll << 20;
    outcome ref = run(IBEX_KV_PAGED, IBEX_SCHED_CONTINUOUS, big, 16, 6, 0);
    /* tiny: 2·6·6·48·4 = 13,824 B per token; 12 blocks of 4 tokens = 48 tokens for
     * six requests of up to 48 tokens each: preemption is unavoidable */
    int64_t small = 12 * 4 * 13824;
    outcome tight = run(IBEX_KV_PAGED, IBEX_SCHED_CONTINUOUS, small, 4, 6, 0);
    cr_assert_gt(tight.tot.preemptions, 0, "the tight budget did not force preemption");
    cr_assert_gt(tight.tot.recomputed_tokens, 0);
    cr_assert_leq(tight.peak_reserved, small);
    same_tokens(&ref, &tight, "preempted run");
}

Test(engine, contiguous_reserves_per_request_paged_grows) {
    /* Peak reservation: contiguous holds whole prompt+max_new runs from admission,
     * paged only what has been written, so paged's peak is never larger. */
    const int64_t big = 64ll << 20;
    outcome c = run(IBEX_KV_CONTIGUOUS, IBEX_SCHED_CONTINUOUS, big, 16, 6, 0);
    outcome p = run(IBEX_KV_PAGED, IBEX_SCHED_CONTINUOUS, big, 16, 6, 0);
    cr_assert_leq(p.peak_reserved, c.peak_reserved);
    /* hand-worked: all six run at once; contiguous reserves ceil((n_i + 10)/16) blocks
     * each, n_i = 3 + 7i and max new 10 − i: 13,19,25,31,37,43 tokens -> 1,2,2,2,3,3 = 13 blocks */
    cr_assert_eq(c.peak_reserved, 13 * 16 * 13824);
}

Test(engine, accounting_only_simulates_a_7b_under_80gib) {
    ibex_model_params p = ibex_model_default_params();
    p.shape_only = true;
    ibex_err err = {0};
    ibex_model *m = ibex_model_load("synthetic:llama2-7b", &p, &err);
    cr_assert(m, "%s", err.msg);
    cr_assert_eq(m->n_params, 6738415616LL);
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.compute = false;
    cfg.kv = (ibex_kv_config){.policy = IBEX_KV_PAGED, .budget_bytes = 80ll << 30, .block_size = 16, .elem_bytes = 2,
                              .no_compute = true};
    cfg.max_batch = 256;
    ibex_engine *e = ibex_engine_new(m, NULL, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    int32_t prompt[1024];
    for (int i = 0; i < 1024; i++) prompt[i] = 3 + i;
    for (int r = 0; r < 300; r++) {
        ibex_request_params rp = ibex_request_default_params();
        rp.max_new_tokens = 64 + r % 200;
        rp.ignore_eos = true;
        cr_assert_geq(ibex_engine_submit(e, prompt, 100 + (r * 37) % 900, &rp, &err), 0, "%s", err.msg);
    }
    ibex_token_event ev[256];
    while (ibex_engine_has_work(e)) cr_assert_geq(ibex_engine_step(e, ev, 256, &err), 0, "%s", err.msg);
    const ibex_engine_totals *t = ibex_engine_totals_get(e);
    cr_assert_eq(t->requests_finished, 300);
    int64_t want = 0;
    for (int r = 0; r < 300; r++) want += 64 + r % 200;
    cr_assert_eq(t->output_tokens, want);
    ibex_kv_stats ks;
    ibex_kv_stats_get(ibex_engine_kv(e), &ks);
    /* 80 GiB / (16 tokens · 512 KiB) = 10,240 blocks */
    cr_assert_eq(ks.n_blocks, 10240);
    cr_assert_eq(ks.blocks_used, 0);
    cr_assert_gt(ks.max_seqs, 100);
    ibex_engine_free(e);
    ibex_model_free(m);
}

Test(engine, impossible_requests_are_refused) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.budget_bytes = 4 * 16 * 13824; /* 4 blocks of 16 tokens */
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(1);
    ibex_engine *e = ibex_engine_new(g_model, be, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    int32_t p[100] = {0};
    ibex_request_params rp = ibex_request_default_params();
    rp.max_new_tokens = 10;
    cr_assert_eq(ibex_engine_submit(e, p, 90, &rp, &err), -1);
    cr_assert(strstr(err.msg, "KV blocks"), "%s", err.msg);
    rp.max_new_tokens = 3000;
    cr_assert_eq(ibex_engine_submit(e, p, 10, &rp, &err), -1);
    cr_assert(strstr(err.msg, "context length"), "%s", err.msg);
    p[0] = -4;
    rp.max_new_tokens = 2;
    cr_assert_eq(ibex_engine_submit(e, p, 10, &rp, &err), -1);
    cr_assert(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    cr_assert_eq(ibex_engine_submit(e, p, 0, &rp, &err), -1);
    ibex_engine_free(e);
    cfg.max_batch = 0;
    cr_assert_null(ibex_engine_new(g_model, be, &cfg, &err));
    cr_assert(strstr(err.msg, "batch size"), "%s", err.msg);
    ibex_backend_free(be);
}

/* ---- decoding strategies through the step API ---- */

typedef struct run_out {
    int32_t n_out;
    int32_t toks[8][32];
    int32_t len[8];
    double lp[8];
    ibex_kv_stats ks;
} run_out;

static run_out decode_one(const ibex_model *m, ibex_kv_policy pol, const ibex_request_params *rp, const int32_t *prompt,
                          int32_t n_prompt) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.policy = pol;
    cfg.kv.budget_bytes = 32ll << 20;
    cfg.kv.block_size = 4;
    cfg.max_batch = 2;
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    ibex_engine *e = ibex_engine_new(m, be, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    int64_t id = ibex_engine_submit(e, prompt, n_prompt, rp, &err);
    cr_assert_geq(id, 0, "%s", err.msg);
    ibex_token_event ev[256];
    while (ibex_engine_has_work(e)) {
        cr_assert_geq(ibex_engine_step(e, ev, 256, &err), 0, "%s", err.msg);
        cr_assert(ibex_kv_check(ibex_engine_kv(e), &err), "%s", err.msg);
    }
    run_out o = {0};
    o.n_out = ibex_engine_n_outputs(e, id);
    for (int32_t i = 0; i < o.n_out && i < 8; i++) {
        double score;
        const int32_t *t = ibex_engine_output_at(e, id, i, &o.len[i], &o.lp[i], &score);
        cr_assert(t && o.len[i] <= 32);
        memcpy(o.toks[i], t, (size_t)o.len[i] * sizeof *t);
    }
    ibex_kv_stats_get(ibex_engine_kv(e), &o.ks);
    cr_assert_eq(o.ks.blocks_used, 0, "KV blocks leaked after the request");
    ibex_engine_free(e);
    ibex_backend_free(be);
    return o;
}

static bool same_out(const run_out *a, int ia, const run_out *b, int ib) {
    return a->len[ia] == b->len[ib] && !memcmp(a->toks[ia], b->toks[ib], (size_t)a->len[ia] * sizeof(int32_t));
}

Test(engine, beam_width_one_and_top_k_one_equal_greedy) {
    int32_t p[12];
    for (int i = 0; i < 12; i++) p[i] = 40 + i * 13;
    ibex_request_params g = ibex_request_default_params();
    g.max_new_tokens = 12;
    g.ignore_eos = true;
    run_out greedy = decode_one(g_model, IBEX_KV_PAGED, &g, p, 12);
    ibex_request_params b = g;
    b.decoding = IBEX_DECODE_BEAM;
    b.beam_width = 1;
    run_out beam1 = decode_one(g_model, IBEX_KV_PAGED, &b, p, 12);
    cr_assert(same_out(&greedy, 0, &beam1, 0), "beam width 1 differs from greedy");
    cr_assert_float_eq(greedy.lp[0], beam1.lp[0], 1e-4);
    ibex_request_params k = g;
    k.sampling.temperature = 1.0f;
    k.sampling.top_k = 1;
    k.sampling.seed = 99;
    run_out topk1 = decode_one(g_model, IBEX_KV_CONTIGUOUS, &k, p, 12);
    cr_assert(same_out(&greedy, 0, &topk1, 0), "top-k 1 differs from greedy");
}

Test(engine, beams_share_under_paged_and_copy_under_contiguous) {
    int32_t p[9];
    for (int i = 0; i < 9; i++) p[i] = 500 + i * 71;
    ibex_request_params b = ibex_request_default_params();
    b.decoding = IBEX_DECODE_BEAM;
    b.beam_width = 4;
    b.max_new_tokens = 14;
    b.ignore_eos = true;
    run_out paged = decode_one(g_model, IBEX_KV_PAGED, &b, p, 9);
    run_out contig = decode_one(g_model, IBEX_KV_CONTIGUOUS, &b, p, 9);
    run_out none = decode_one(g_model, IBEX_KV_NONE, &b, p, 9);
    cr_assert_eq(paged.n_out, 4);
    cr_assert_eq(contig.n_out, 4);
    for (int i = 0; i < 4; i++) {
        /* copy-on-write beams must see exactly what fully copied beams see */
        cr_assert(same_out(&paged, i, &contig, i), "beam %d: paged (CoW) and contiguous (copies) differ", i);
        cr_assert(same_out(&paged, i, &none, i), "beam %d: paged and none differ", i);
        cr_assert_float_eq(paged.lp[i], contig.lp[i], 1e-4);
        if (i) cr_assert_geq(paged.lp[i - 1] / 14, paged.lp[i] / 14 - 1e-9, "beams not best first");
    }
    cr_assert_gt(paged.ks.cow_copies, 0, "beams never triggered copy-on-write");
    cr_assert_eq(paged.ks.fork_copies, 0);
    cr_assert_gt(contig.ks.fork_copies, 0, "contiguous beams did not copy");
    cr_assert_eq(contig.ks.cow_copies, 0);
    cr_assert_lt(paged.ks.peak_reserved, contig.ks.peak_reserved, "sharing saved no KV memory");
}

Test(engine, parallel_samples_share_the_prompt_and_reproduce) {
    int32_t p[20];
    for (int i = 0; i < 20; i++) p[i] = 900 + i * 37;
    ibex_request_params s = ibex_request_default_params();
    s.sampling.temperature = 0.9f;
    s.sampling.top_p = 0.9f;
    s.sampling.seed = 1234;
    s.max_new_tokens = 10;
    s.ignore_eos = true;
    run_out one = decode_one(g_model, IBEX_KV_PAGED, &s, p, 20);
    s.n = 4;
    run_out paged = decode_one(g_model, IBEX_KV_PAGED, &s, p, 20);
    run_out contig = decode_one(g_model, IBEX_KV_CONTIGUOUS, &s, p, 20);
    run_out again = decode_one(g_model, IBEX_KV_PAGED, &s, p, 20);
    cr_assert_eq(paged.n_out, 4);
    cr_assert(same_out(&one, 0, &paged, 0), "sample 0 of n=4 differs from n=1 with the same seed");
    bool any_differ = false;
    for (int i = 0; i < 4; i++) {
        cr_assert(same_out(&paged, i, &contig, i), "sample %d: paged and contiguous differ", i);
        cr_assert(same_out(&paged, i, &again, i), "sample %d does not reproduce", i);
        if (i) any_differ |= !same_out(&paged, 0, &paged, i);
    }
    cr_assert(any_differ, "all four samples are identical");
    cr_assert_lt(paged.ks.peak_reserved, contig.ks.peak_reserved, "sharing the prompt saved no KV memory");
    cr_assert_gt(contig.ks.fork_copies, 0);
}

/* A bigram model built by hand: wq = wk = wv = wo = 0 and a zero MLP leave the
 * residual stream at the token's embedding, so logits depend on the current token
 * only. With one-hot embeddings e_k (dim 8), rmsnorm(e_k) = √8·e_k and
 * logits[j] = √8·W_out[j][k]; W_out[j][k] = log P(j|k)/√8 makes softmax exactly P. */
Test(engine, beam_search_finds_what_greedy_misses) {
    enum { V = 8 };
    static float emb[V * V], out[V * V], zeros[V * V], ones[V];
    double P[V][V];
    for (int k = 0; k < V; k++)
        for (int j = 0; j < V; j++) P[k][j] = 1.0 / V;
    /* from 0: 1 (0.5) beats 2 (0.4); from 1 everything is flat (0.125); from 2, 4 has 0.9 */
    for (int j = 0; j < V; j++) P[2][j] = 0.1 / 7;
    P[0][1] = 0.5, P[0][2] = 0.4;
    double rest = 1.0 - P[0][1] - P[0][2];
    for (int j = 0; j < V; j++)
        if (j != 1 && j != 2) P[0][j] = rest / (V - 2);
    P[2][4] = 0.9;
    for (int k = 0; k < V; k++) emb[k * V + k] = 1.0f, ones[k] = 1.0f;
    for (int k = 0; k < V; k++)
        for (int j = 0; j < V; j++) out[j * V + k] = (float)(log(P[k][j]) / sqrt((double)V));
    ibex_layer_weights L = {0};
    ibex_weight Z = {zeros, IBEX_TYPE_F32, V, V};
    L.attn_norm = L.ffn_norm = ones;
    L.wq = L.wk = L.wv = L.wo = L.w_gate = L.w_up = L.w_down = Z;
    ibex_model m = {0};
    m.cfg = (ibex_model_config){.dim = V, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = V, .ffn_dim = V,
                                .vocab_size = V, .ctx_len = 64, .rope_dim = V, .norm_eps = 1e-9f, .rope_base = 10000};
    m.layers = &L;
    m.tok_embd = (ibex_weight){emb, IBEX_TYPE_F32, V, V};
    m.output = (ibex_weight){out, IBEX_TYPE_F32, V, V};
    m.output_norm = ones;
    int32_t prompt[1] = {0};
    ibex_request_params g = ibex_request_default_params();
    g.max_new_tokens = 2;
    g.ignore_eos = true;
    run_out greedy = decode_one(&m, IBEX_KV_PAGED, &g, prompt, 1);
    cr_assert_eq(greedy.toks[0][0], 1);
    cr_assert_eq(greedy.toks[0][1], 0);
    cr_assert_float_eq(greedy.lp[0], log(0.5 * 0.125), 1e-4);
    ibex_request_params b = g;
    b.decoding = IBEX_DECODE_BEAM;
    b.beam_width = 2;
    b.length_penalty = 0.0f; /* score = total log-probability */
    run_out beam = decode_one(&m, IBEX_KV_PAGED, &b, prompt, 1);
    cr_assert_eq(beam.toks[0][0], 2, "beam search missed the better path");
    cr_assert_eq(beam.toks[0][1], 4);
    cr_assert_float_eq(beam.lp[0], log(0.4 * 0.9), 1e-4);
    cr_assert_gt(beam.lp[0], greedy.lp[0]);
}

Test(engine, impossible_decoding_settings_are_refused) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.budget_bytes = 8 * 16 * 13824; /* 8 blocks of 16 tokens */
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(1);
    ibex_engine *e = ibex_engine_new(g_model, be, &cfg, &err);
    int32_t p[20] = {5};
    ibex_request_params r = ibex_request_default_params();
    r.sampling.top_p = 1.5f;
    cr_assert_eq(ibex_engine_submit(e, p, 20, &r, &err), -1);
    cr_assert(strstr(err.msg, "top_p"), "%s", err.msg);
    r = ibex_request_default_params();
    r.sampling.temperature = -1;
    cr_assert_eq(ibex_engine_submit(e, p, 20, &r, &err), -1);
    cr_assert(strstr(err.msg, "temperature"), "%s", err.msg);
    r = ibex_request_default_params();
    r.decoding = IBEX_DECODE_BEAM;
    r.beam_width = 0;
    cr_assert_eq(ibex_engine_submit(e, p, 20, &r, &err), -1);
    cr_assert(strstr(err.msg, "beam width"), "%s", err.msg);
    r.beam_width = 8; /* 8 beams of 36 tokens = 24 blocks > 8 */
    cr_assert_eq(ibex_engine_submit(e, p, 20, &r, &err), -1);
    cr_assert(strstr(err.msg, "8 sequences"), "%s", err.msg);
    ibex_engine_free(e);
    ibex_backend_free(be);
}
