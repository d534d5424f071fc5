/* test_engine.c — the step API and schedulers: every KV policy and both schedulers
 * give the same greedy tokens; preemption by recompute changes nothing; the budget
 * is never exceeded and everything is returned at the end; accounting-only mode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/sampler.h"

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
        /* B counts requests: never more running than the batch holds */
        cr_assert_leq(ibex_engine_last_step(e)->running, batch, "step %d runs %d > max_batch %d", guard,
                      ibex_engine_last_step(e)->running, batch);
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

/* ---- scheduling decisions, one at a time (accounting only: the same scheduler and KV
 * manager without a forward pass, so every step is exactly predictable) ---- */

/* An accounting-only engine on the tiny model: paged, block bs, a pool of n_blocks. */
static ibex_engine *acct_engine(int32_t bs, int32_t n_blocks, int32_t batch, int32_t step_tokens, bool reserve_prompt) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.compute = false;
    int64_t per_tok = ibex_model_kv_bytes_per_token(&g_model->cfg, 4); /* 13,824 B */
    cfg.kv = (ibex_kv_config){.policy = IBEX_KV_PAGED, .budget_bytes = (int64_t)n_blocks * bs * per_tok,
                              .block_size = bs, .elem_bytes = 4, .no_compute = true,
                              .reserve_prompt = reserve_prompt};
    cfg.max_batch = batch;
    cfg.max_step_tokens = step_tokens;
    ibex_err err = {0};
    ibex_engine *e = ibex_engine_new(g_model, NULL, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    return e;
}

static int64_t submit_n(ibex_engine *e, int32_t n_prompt, int32_t n_new) {
    int32_t p[256];
    for (int i = 0; i < n_prompt; i++) p[i] = 3 + (i * 7) % 1000;
    ibex_request_params rp = ibex_request_default_params();
    rp.max_new_tokens = n_new;
    rp.ignore_eos = true;
    ibex_err err = {0};
    int64_t id = ibex_engine_submit(e, p, n_prompt, &rp, &err);
    cr_assert_geq(id, 0, "%s", err.msg);
    return id;
}

static bool emitted(const ibex_token_event *ev, int n, int64_t id) {
    for (int k = 0; k < n; k++)
        if (ev[k].req == id) return true;
    return false;
}

/* Two requests of 8 + 12 tokens in a pool of 8 blocks of 4 tokens: both fit until each
 * holds 16 tokens (4 blocks), then writing token 17 needs a fifth block. The newest
 * (B) must give way: in that step A still gets its token and B none, B's 16 cached
 * tokens are recomputed, and A finishes first. */
Test(engine, preemption_takes_the_newest_request) {
    ibex_engine *e = acct_engine(4, 8, 2, 0, false);
    int64_t a = submit_n(e, 8, 12), b = submit_n(e, 8, 12);
    ibex_token_event ev[64];
    ibex_err err = {0};
    int steps = 0, preempt_step = -1, a_done = -1, b_done = -1;
    while (ibex_engine_has_work(e)) {
        int n = ibex_engine_step(e, ev, 64, &err);
        cr_assert_geq(n, 0, "%s", err.msg);
        cr_assert(ibex_kv_check(ibex_engine_kv(e), &err), "%s", err.msg);
        if (ibex_engine_last_step(e)->preempted > 0 && preempt_step < 0) {
            preempt_step = steps;
            cr_assert(emitted(ev, n, a), "step %d: the oldest request (A) got no token: it was preempted", steps);
            cr_assert(!emitted(ev, n, b), "step %d: the newest request (B) still got a token", steps);
        }
        if (a_done < 0 && ibex_engine_finished(e, a)) a_done = steps;
        if (b_done < 0 && ibex_engine_finished(e, b)) b_done = steps;
        cr_assert_lt(++steps, 1000);
    }
    /* step 0 prefills both (8 tokens, token 1 each); step s writes token 8 + s; step 8
     * writes token 16 (the 4th block is full), step 9 needs the 5th block */
    cr_assert_eq(preempt_step, 9, "preemption at step %d", preempt_step);
    const ibex_engine_totals *t = ibex_engine_totals_get(e);
    cr_assert_eq(t->preemptions, 1);
    cr_assert_eq(t->recomputed_tokens, 16, "recomputed %lld", (long long)t->recomputed_tokens);
    cr_assert_lt(a_done, b_done, "A finished at step %d, B at %d", a_done, b_done);
    ibex_engine_free(e);
}

/* A decodes while B's 40-token prompt is prefilled in chunks of at most 8 tokens per
 * step: decodes are planned first (design note 8), so A gets a token in every step
 * and B's chunks take what is left (7 tokens). Planning prefill first would starve A
 * for five steps. */
Test(engine, decodes_are_planned_before_prefill_chunks) {
    ibex_engine *e = acct_engine(16, 64, 4, 8, false);
    int64_t a = submit_n(e, 4, 12);
    ibex_token_event ev[64];
    ibex_err err = {0};
    int n = ibex_engine_step(e, ev, 64, &err); /* A's prefill and first token */
    cr_assert(n == 1 && emitted(ev, n, a), "%s", err.msg);
    int64_t b = submit_n(e, 40, 4);
    for (int step = 1; !ibex_engine_finished(e, a); step++) {
        n = ibex_engine_step(e, ev, 64, &err);
        cr_assert_geq(n, 0, "%s", err.msg);
        const ibex_step_info *si = ibex_engine_last_step(e);
        cr_assert(emitted(ev, n, a), "step %d: the decoding request got no token (prefill %d, decode %d tokens)",
                  step, si->prefill_tokens, si->decode_tokens);
        cr_assert_leq(si->prefill_tokens + si->decode_tokens, 8);
        if (step <= 5) cr_assert_eq(si->prefill_tokens, step < 6 ? 7 : 5, "step %d", step);
        cr_assert_lt(step, 100);
    }
    (void)b;
    ibex_engine_free(e);
}

/* Admission never runs more requests than max_batch, and with enough waiting it runs
 * exactly max_batch. */
Test(engine, running_never_exceeds_max_batch) {
    for (int batch = 1; batch <= 3; batch++) {
        ibex_engine *e = acct_engine(16, 256, batch, 0, false);
        for (int i = 0; i < 7; i++) submit_n(e, 5 + i, 3 + i % 3);
        ibex_token_event ev[64];
        ibex_err err = {0};
        int32_t most = 0;
        while (ibex_engine_has_work(e)) {
            cr_assert_geq(ibex_engine_step(e, ev, 64, &err), 0, "%s", err.msg);
            const ibex_step_info *si = ibex_engine_last_step(e);
            cr_assert_leq(si->running, batch, "batch %d: %d running", batch, si->running);
            cr_assert_leq(si->seqs, batch);
            most = si->running > most ? si->running : most;
        }
        cr_assert_eq(ibex_engine_totals_get(e)->max_running, batch);
        cr_assert_eq(most, batch > 1 ? batch : 1);
        ibex_engine_free(e);
    }
}

/* Paged takes blocks as tokens are written (prefill chunks included): a 40-token
 * prompt in chunks of 8 holds ceil(written / 4) blocks after every step; with
 * kv.reserve_prompt it holds all 10 prompt blocks from the first step. */
Test(engine, paged_takes_blocks_per_chunk_unless_reserve_prompt) {
    for (int rp = 0; rp < 2; rp++) {
        ibex_engine *e = acct_engine(4, 64, 2, 8, rp);
        submit_n(e, 40, 6);
        ibex_token_event ev[64];
        ibex_err err = {0};
        int64_t per_tok = ibex_model_kv_bytes_per_token(&g_model->cfg, 4);
        for (int step = 0; ibex_engine_has_work(e); step++) {
            cr_assert_geq(ibex_engine_step(e, ev, 64, &err), 0, "%s", err.msg);
            ibex_kv_stats ks;
            ibex_kv_stats_get(ibex_engine_kv(e), &ks);
            if (!ibex_engine_has_work(e)) break; /* released at the end */
            int64_t written = ks.bytes_used / per_tok;
            int64_t want_blocks = rp && written < 40 ? 10 : (written + 3) / 4;
            cr_assert_eq(written, step < 5 ? 8 * (step + 1) : 40 + (step - 4), "step %d", step);
            cr_assert_eq(ks.blocks_used, want_blocks, "reserve_prompt %d, step %d: %d blocks for %lld tokens", rp, step,
                         ks.blocks_used, (long long)written);
        }
        ibex_engine_free(e);
    }
}

/* ---- sampling at a tiny temperature ---- */

/* T = 1e-37: (l - max) / T sends every non-best logit to -inf and keeps the best at 0;
 * dividing the unshifted logits instead overflows every logit above ~34 to +inf, and
 * the draw is among ties. Logits up to 60 here. */
Test(engine, tiny_temperature_samples_the_greedy_token) {
    const int32_t n = 512;
    float *x = malloc(n * sizeof *x);
    ibex_sampler *s = ibex_sampler_new(n);
    cr_assert(x && s);
    ibex_rng r;
    ibex_rng_seed(&r, 11);
    for (int c = 0; c < 50; c++) {
        uint64_t h = 0x9e3779b97f4a7c15ull * (uint64_t)(c + 1);
        for (int32_t i = 0; i < n; i++) {
            h ^= h >> 29, h *= 0xbf58476d1ce4e5b9ull, h ^= h >> 32;
            x[i] = 20.0f + 40.0f * (float)((h >> 11) * 0x1.0p-53);
        }
        int32_t g = ibex_sample_greedy(x, n);
        ibex_sampler_params p = ibex_sampler_default_params();
        p.temperature = 1e-37f;
        for (int k = 0; k < 4; k++)
            cr_assert_eq(ibex_sampler_sample(s, x, &p, &r, NULL, 0, NULL), g, "case %d draw %d", c, k);
    }
    ibex_sampler_free(s);
    free(x);
}

/* ---- GQA and long context at model level ---- */

/* A hand-built model with 2 query heads per KV head (4 heads, 2 KV heads) and random
 * F32 weights, run through the forward pass with a paged KV pool over 100 tokens (a
 * 70-token prefill, then 30 single-token decodes: attention spans more than 64 keys,
 * so the kernel's softmax rescale across key chunks is exercised), compared with a
 * naive float64 Llama written out below. */
enum { GD = 32, GL = 2, GH = 4, GKV = 2, GHD = 8, GF = 48, GV = 40, GT = 100, GBS = 16 };

typedef struct gqa_model {
    ibex_model m;
    ibex_layer_weights layers[GL];
    float *buf;
} gqa_model;

static float grand(uint64_t *st) {
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*st >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void gqa_build(gqa_model *g) {
    memset(g, 0, sizeof *g);
    g->m.cfg = (ibex_model_config){.dim = GD, .n_layers = GL, .n_heads = GH, .n_kv_heads = GKV, .head_dim = GHD,
                                   .ffn_dim = GF, .vocab_size = GV, .ctx_len = 256, .rope_dim = GHD,
                                   .norm_eps = 1e-5f, .rope_base = 10000.0f};
    size_t per_layer = 2 * GD + GH * GHD * GD + 2 * GKV * GHD * GD + GD * GH * GHD + 3 * GF * GD;
    size_t total = per_layer * GL + 2 * GV * GD + GD;
    g->buf = malloc(total * sizeof *g->buf);
    cr_assert(g->buf);
    uint64_t st = 42;
    for (size_t i = 0; i < total; i++) g->buf[i] = 0.5f * grand(&st);
    float *p = g->buf;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l < GL; l++) {
        ibex_layer_weights *L = &g->layers[l];
        float *an = TAKE(GD), *fn = TAKE(GD);
        for (int i = 0; i < GD; i++) an[i] = 1.0f + 0.2f * an[i], fn[i] = 1.0f + 0.2f * fn[i];
        L->attn_norm = an, L->ffn_norm = fn;
        L->wq = (ibex_weight){TAKE(GH * GHD * GD), IBEX_TYPE_F32, GD, GH * GHD};
        L->wk = (ibex_weight){TAKE(GKV * GHD * GD), IBEX_TYPE_F32, GD, GKV * GHD};
        L->wv = (ibex_weight){TAKE(GKV * GHD * GD), IBEX_TYPE_F32, GD, GKV * GHD};
        L->wo = (ibex_weight){TAKE(GD * GH * GHD), IBEX_TYPE_F32, GH * GHD, GD};
        L->w_gate = (ibex_weight){TAKE(GF * GD), IBEX_TYPE_F32, GD, GF};
        L->w_up = (ibex_weight){TAKE(GF * GD), IBEX_TYPE_F32, GD, GF};
        L->w_down = (ibex_weight){TAKE(GD * GF), IBEX_TYPE_F32, GF, GD};
    }
    g->m.tok_embd = (ibex_weight){TAKE(GV * GD), IBEX_TYPE_F32, GD, GV};
    g->m.output = (ibex_weight){TAKE(GV * GD), IBEX_TYPE_F32, GD, GV};
    float *on = TAKE(GD);
    for (int i = 0; i < GD; i++) on[i] = 1.0f;
    g->m.output_norm = on;
#undef TAKE
    g->m.layers = g->layers;
    g->m.wtype = IBEX_TYPE_F32;
}

static void mv(double *y, const ibex_weight *w, const double *x) { /* y = W x, W (n_out, n_in) */
    const float *W = w->data;
    for (int64_t o = 0; o < w->n_out; o++) {
        double acc = 0;
        for (int64_t i = 0; i < w->n_in; i++) acc += (double)W[o * w->n_in + i] * x[i];
        y[o] = acc;
    }
}

static void rms(double *y, const double *x, const float *gain, double eps) {
    double ss = 0;
    for (int i = 0; i < GD; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / GD + eps);
    for (int i = 0; i < GD; i++) y[i] = x[i] * r * gain[i];
}

/* Rotates pairs (2i, 2i+1) of every head by pos · base^(-2i / head_dim). */
static void rope_ref(double *v, int n_heads, int pos) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < GHD / 2; i++) {
            double th = pos * pow(10000.0, -2.0 * i / GHD), c = cos(th), s = sin(th);
            double *q = v + h * GHD + 2 * i, a = q[0], b = q[1];
            q[0] = a * c - b * s, q[1] = a * s + b * c;
        }
}

/* logits[t][v] of the naive model over toks[0..GT). Query head h reads KV head
 * h / (GH / GKV). */
static void gqa_reference(const gqa_model *g, const int32_t *toks, double *logits) {
    static double K[GL][GT][GKV * GHD], V[GL][GT][GKV * GHD];
    const float *E = g->m.tok_embd.data;
    for (int t = 0; t < GT; t++) {
        double x[GD], xn[GD], q[GH * GHD], att[GH * GHD], o[GD], gt[GF], up[GF];
        for (int i = 0; i < GD; i++) x[i] = E[(int64_t)toks[t] * GD + i];
        for (int l = 0; l < GL; l++) {
            const ibex_layer_weights *L = &g->layers[l];
            rms(xn, x, L->attn_norm, 1e-5);
            mv(q, &L->wq, xn), mv(K[l][t], &L->wk, xn), mv(V[l][t], &L->wv, xn);
            rope_ref(q, GH, t), rope_ref(K[l][t], GKV, t);
            for (int h = 0; h < GH; h++) {
                int kvh = h / (GH / GKV);
                double sc[GT], mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < GHD; i++) d += q[h * GHD + i] * K[l][j][kvh * GHD + i];
                    sc[j] = d / sqrt((double)GHD);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int i = 0; i < GHD; i++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++) acc += sc[j] * V[l][j][kvh * GHD + i];
                    att[h * GHD + i] = acc / sum;
                }
            }
            mv(o, &L->wo, att);
            for (int i = 0; i < GD; i++) x[i] += o[i];
            rms(xn, x, L->ffn_norm, 1e-5);
            mv(gt, &L->w_gate, xn), mv(up, &L->w_up, xn);
            for (int i = 0; i < GF; i++) gt[i] = gt[i] / (1.0 + exp(-gt[i])) * up[i];
            mv(o, &L->w_down, gt);
            for (int i = 0; i < GD; i++) x[i] += o[i];
        }
        rms(xn, x, g->m.output_norm, 1e-5);
        mv(logits + (int64_t)t * GV, &g->m.output, xn);
    }
}

Test(engine, gqa_long_context_matches_a_naive_reference) {
    gqa_model g;
    gqa_build(&g);
    int32_t toks[GT];
    uint64_t st = 7;
    for (int t = 0; t < GT; t++) toks[t] = (int32_t)((grand(&st) + 1.0f) * 0.5f * (GV - 1));
    double *ref = malloc((size_t)GT * GV * sizeof *ref);
    float *got = malloc((size_t)GT * GV * sizeof *got);
    cr_assert(ref && got);
    gqa_reference(&g, toks, ref);
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    const int nb = (GT + GBS - 1) / GBS;
    ibex_kv_pool *pool = ibex_kv_pool_new(&g.m.cfg, nb + 3, GBS, &err);
    ibex_forward *f = ibex_forward_new(&g.m, be, 128, &err);
    cr_assert(be && pool && f, "%s", err.msg);
    int32_t table[16];
    for (int i = 0; i < nb; i++) table[i] = (nb + 2 - i) % (nb + 3); /* scattered blocks, reversed */
    ibex_fwd_seq sq = {.tokens = toks, .n_tokens = 70, .pos0 = 0, .block_table = table, .logits = got,
                       .all_logits = true};
    cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
    for (int t = 70; t < GT; t++) {
        sq = (ibex_fwd_seq){.tokens = toks + t, .n_tokens = 1, .pos0 = t, .block_table = table,
                            .logits = got + (int64_t)t * GV};
        cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
    }
    double worst = 0;
    for (int t = 0; t < GT; t++)
        for (int v = 0; v < GV; v++) {
            double r = ref[(int64_t)t * GV + v], d = fabs(got[(int64_t)t * GV + v] - r) / (1.0 + fabs(r));
            worst = d > worst ? d : worst;
            cr_assert_leq(d, 2e-4, "position %d token %d: %g vs reference %g", t, v, got[(int64_t)t * GV + v], r);
        }
    cr_log_info("GQA forward vs float64 reference: worst relative difference %.3g", worst);
    ibex_forward_free(f);
    ibex_kv_pool_free(pool);
    ibex_backend_free(be);
    free(ref), free(got), free(g.buf);
}

/* Beam search with W = 4 returns one hypothesis of max_new_tokens tokens, all in the
 * step the search ends (what output tok/s counts), while every step computes a token
 * for each live beam (what hypothesis tok/s counts): W per step after the first. */
Test(engine, beam_returns_one_hypothesis_but_computes_every_beam) {
    ibex_engine *e = acct_engine(16, 256, 1, 0, false);
    int32_t p[8] = {3, 4, 5, 6, 7, 8, 9, 10};
    ibex_request_params rp = ibex_request_default_params();
    rp.decoding = IBEX_DECODE_BEAM;
    rp.beam_width = 4;
    rp.max_new_tokens = 6;
    rp.ignore_eos = true;
    ibex_err err = {0};
    int64_t id = ibex_engine_submit(e, p, 8, &rp, &err);
    cr_assert_geq(id, 0, "%s", err.msg);
    ibex_token_event ev[64];
    int returned = 0, steps_with_events = 0;
    while (ibex_engine_has_work(e)) {
        int n = ibex_engine_step(e, ev, 64, &err);
        cr_assert_geq(n, 0, "%s", err.msg);
        returned += n;
        steps_with_events += n > 0;
    }
    cr_assert_eq(returned, 6, "returned %d tokens", returned);
    cr_assert_eq(steps_with_events, 1, "a beam search delivers its hypothesis at once");
    /* step 0: the prompt's one token per beam (4); steps 1..5: 4 beams each */
    cr_assert_eq(ibex_engine_totals_get(e)->output_tokens, 4 * 6, "%lld",
                 (long long)ibex_engine_totals_get(e)->output_tokens);
    ibex_engine_free(e);
}
