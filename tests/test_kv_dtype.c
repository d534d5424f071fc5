/* test_kv_dtype.c — the KV cache's element type end to end: F16 and BF16 caches in the
 * forward pass against an F32 cache (close, not equal), paged == contiguous tokens with an
 * F16 cache, the engine refusing a type its backend does not compute with, and a pool
 * reused across engines (stale contents) giving the tokens of a fresh one. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/kvcache.h"
#include "engine/model.h"

static ibex_model *g_model;

static void setup(void) {
    ibex_model_params p = ibex_model_default_params();
    p.wtype = IBEX_TYPE_F32;
    ibex_err err = {0};
    g_model = ibex_model_load("synthetic:tiny", &p, &err);
    cr_assert(g_model, "%s", err.msg);
}
static void teardown(void) { ibex_model_free(g_model); }

TestSuite(kv_dtype, .init = setup, .fini = teardown, .timeout = 600);

/* Logits of every position of toks[n]: a prefill of the first half, then token by token
 * (so both the tile and the decode paths of attention read the cache). */
static void logits_with(ibex_type t, const int32_t *toks, int n, float *logits) {
    const ibex_model *m = g_model;
    const int V = m->cfg.vocab_size, half = n / 2;
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    ibex_kv_pool *pool = ibex_kv_pool_new_typed(&m->cfg, 4, 16, t, NULL, &err);
    ibex_forward *f = ibex_forward_new(m, be, 64, &err);
    cr_assert(be && pool && f, "%s", err.msg);
    cr_assert_eq(pool->type, t);
    int32_t table[4] = {2, 0, 3, 1}; /* paged, out of order */
    ibex_fwd_seq sq = {.tokens = toks, .n_tokens = half, .pos0 = 0, .block_table = table, .logits = logits,
                       .all_logits = true};
    cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
    for (int i = half; i < n; i++) {
        ibex_fwd_seq d = {.tokens = toks + i, .n_tokens = 1, .pos0 = i, .block_table = table,
                          .logits = logits + (size_t)i * V};
        cr_assert_eq(ibex_forward_run(f, pool, &d, 1, &err), IBEX_OK, "%s", err.msg);
    }
    ibex_forward_free(f);
    ibex_kv_pool_free(pool);
    ibex_backend_free(be);
}

/* max |a − b| over max |b|, per row of V, the worst row. */
static double worst_row_rel(const float *a, const float *b, int rows, int V) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double mx = 0, scale = 0;
        for (int i = 0; i < V; i++) {
            const size_t k = (size_t)r * V + i;
            mx = fmax(mx, fabs((double)a[k] - b[k])), scale = fmax(scale, fabs((double)b[k]));
        }
        worst = fmax(worst, mx / scale);
    }
    return worst;
}

/* Rounding K and V to F16 moves each element by at most 2^-11 relative (BF16: 2^-8); over
 * the tiny model's 6 layers the logits move by a few times that. Tolerances: 1e-2 (F16)
 * and 5e-2 (BF16) of the row's largest logit, ~20× the per-element rounding and far
 * below what a wrong widening, a wrong element size or a misplaced row gives (O(1)).
 * The logits must also differ from F32's: equal bits would mean the type was ignored. */
Test(kv_dtype, f16_and_bf16_logits_close_to_f32) {
    const int n = 40, V = g_model->cfg.vocab_size;
    int32_t toks[40];
    for (int i = 0; i < n; i++) toks[i] = 5 + (i * 7919) % (V - 5);
    float *ref = malloc((size_t)n * V * 4), *got = malloc((size_t)n * V * 4);
    logits_with(IBEX_TYPE_F32, toks, n, ref);
    const ibex_type types[] = {IBEX_TYPE_F16, IBEX_TYPE_BF16};
    const double tol[] = {1e-2, 5e-2};
    for (int i = 0; i < 2; i++) {
        logits_with(types[i], toks, n, got);
        const double rel = worst_row_rel(got, ref, n, V);
        cr_log_info("%s cache: worst row's logits off by %.3g of its maximum", ibex_type_name(types[i]), rel);
        cr_assert_lt(rel, tol[i], "%s cache: logits off by %.3g of the row maximum (tol %g)",
                     ibex_type_name(types[i]), rel, tol[i]);
        cr_assert_gt(rel, 0.0, "%s cache gave F32's exact logits: the type was not used", ibex_type_name(types[i]));
    }
    free(ref), free(got);
}

#define NREQ 4
#define NEW 12

typedef struct outcome {
    int32_t toks[NREQ][NEW];
} outcome;

/* NREQ greedy requests to completion on an engine with cache type t. */
static outcome run(ibex_kv_policy pol, int32_t block, ibex_type t, ibex_kv_pool **spare) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.policy = pol;
    cfg.kv.budget_bytes = 16ll << 20;
    cfg.kv.block_size = block;
    cfg.kv.spare = spare;
    cr_assert(ibex_kv_config_set_type(&cfg.kv, t));
    cfg.max_batch = 3;
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    ibex_engine *e = ibex_engine_new(g_model, be, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    int64_t ids[NREQ];
    for (int i = 0; i < NREQ; i++) {
        int32_t p[64], n = 5 + i * 11;
        for (int j = 0; j < n; j++) p[j] = 3 + (i * 131 + j * 17) % 30000;
        ibex_request_params rp = ibex_request_default_params();
        rp.max_new_tokens = NEW;
        rp.ignore_eos = true;
        ids[i] = ibex_engine_submit(e, p, n, &rp, &err);
        cr_assert_geq(ids[i], 0, "%s", err.msg);
    }
    ibex_token_event ev[64];
    while (ibex_engine_has_work(e)) cr_assert_geq(ibex_engine_step(e, ev, 64, &err), 0, "%s", err.msg);
    outcome o;
    for (int i = 0; i < NREQ; i++) {
        int32_t n = 0;
        const int32_t *tk = ibex_engine_output(e, ids[i], &n);
        cr_assert_eq(n, NEW);
        memcpy(o.toks[i], tk, sizeof o.toks[i]);
    }
    ibex_engine_free(e);
    ibex_backend_free(be);
    return o;
}

static void same(const outcome *a, const outcome *b, const char *what) {
    for (int i = 0; i < NREQ; i++)
        cr_assert(memcmp(a->toks[i], b->toks[i], sizeof a->toks[i]) == 0, "%s: request %d differs", what, i);
}

/* Attention's arithmetic is a function of logical positions only, also when it widens
 * F16 rows: paged caches (blocks of 16 and of 1) give the contiguous cache's tokens. */
Test(kv_dtype, f16_paged_equals_contiguous_tokens) {
    outcome c = run(IBEX_KV_CONTIGUOUS, 16, IBEX_TYPE_F16, NULL);
    outcome p16 = run(IBEX_KV_PAGED, 16, IBEX_TYPE_F16, NULL);
    outcome p1 = run(IBEX_KV_PAGED, 1, IBEX_TYPE_F16, NULL);
    same(&c, &p16, "F16 paged, block 16");
    same(&c, &p1, "F16 paged, block 1");
    outcome b = run(IBEX_KV_CONTIGUOUS, 16, IBEX_TYPE_BF16, NULL);
    outcome bp = run(IBEX_KV_PAGED, 1, IBEX_TYPE_BF16, NULL);
    same(&b, &bp, "BF16 paged, block 1");
}

/* A pool handed on through the spare slot still holds the previous engine's K and V; the
 * next engine must give exactly a fresh pool's tokens (nothing reads before writing). */
Test(kv_dtype, reused_pool_gives_fresh_tokens) {
    ibex_kv_pool *spare = NULL;
    outcome fresh = run(IBEX_KV_PAGED, 16, IBEX_TYPE_F16, &spare);
    cr_assert_not_null(spare, "the first engine parked its pool");
    ibex_kv_pool *parked = spare;
    outcome again = run(IBEX_KV_PAGED, 16, IBEX_TYPE_F16, &spare);
    cr_assert_eq(spare, parked, "the second engine took and returned the same pool");
    same(&fresh, &again, "reused pool");
    ibex_kv_pool_free(spare);
}

static bool only_f32_f16(const ibex_backend *be, ibex_type t) {
    (void)be;
    return t == IBEX_TYPE_F32 || t == IBEX_TYPE_F16;
}

/* The engine asks the backend (kv_type_ok; NULL means F32 only) before building a cache it
 * could not compute with, and says which backend and type. */
Test(kv_dtype, engine_refuses_a_type_the_backend_lacks) {
    ibex_backend *cpu = ibex_backend_cpu_new(1);
    ibex_backend fake = *cpu;
    fake.kv_type_ok = NULL;
    ibex_engine_config cfg = ibex_engine_default_config();
    cr_assert(ibex_kv_config_set_type(&cfg.kv, IBEX_TYPE_F16));
    ibex_err err = {0};
    cr_assert_null(ibex_engine_new(g_model, &fake, &cfg, &err));
    cr_assert_eq(err.status, IBEX_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "backend cpu: KV cache type f16 not supported"), "%s", err.msg);
    fake.kv_type_ok = only_f32_f16;
    cr_assert(ibex_kv_config_set_type(&cfg.kv, IBEX_TYPE_BF16));
    err = (ibex_err){0};
    cr_assert_null(ibex_engine_new(g_model, &fake, &cfg, &err));
    cr_assert(strstr(err.msg, "KV cache type bf16 not supported"), "%s", err.msg);
    cr_assert(ibex_kv_config_set_type(&cfg.kv, IBEX_TYPE_F16));
    ibex_engine *e = ibex_engine_new(g_model, &fake, &cfg, &err);
    cr_assert(e, "a type the backend has: %s", err.msg);
    ibex_engine_free(e);
    /* accounting only computes nothing: any type goes */
    cfg.compute = false;
    cfg.kv.no_compute = true;
    cr_assert(ibex_kv_config_set_type(&cfg.kv, IBEX_TYPE_BF16));
    e = ibex_engine_new(g_model, NULL, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    ibex_engine_free(e);
    ibex_backend_free(cpu);
}
