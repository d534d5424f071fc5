/* test_engine.c — the step API and schedulers: every KV policy and both schedulers
 * give the same greedy tokens; preemption by recompute changes nothing; the budget
 * is never exceeded and everything is returned at the end; accounting-only mode. */
#include <criterion/criterion.h>
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
        ibex_request_params rp = {.max_new_tokens = NEW - i, .ignore_eos = true}; /* static batches drain unevenly */
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
        ibex_request_params rp = {.max_new_tokens = 64 + r % 200, .ignore_eos = true};
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
    ibex_request_params rp = {.max_new_tokens = 10};
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
