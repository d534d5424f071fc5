/* test_kvcache.c — the KV-cache manager: hand-worked byte accounting for paged and
 * contiguous policies, copy-on-write and fork copies on real pool data, first-fit
 * fragmentation, randomized operation sequences checked against every invariant and
 * against predictions made from the public API, and accounting-only parity. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/kvcache.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

/* 2 layers · 2 KV heads · head_dim 4: kv bytes per token = 2·2·2·4·4 = 128 (F32). */
static const ibex_model_config CFG = {.dim = 8, .n_layers = 2, .n_heads = 2, .n_kv_heads = 2, .head_dim = 4,
                                      .ffn_dim = 16, .vocab_size = 32, .ctx_len = 64, .rope_dim = 4,
                                      .norm_eps = 1e-5f, .rope_base = 10000.0f};
#define TOK ((int64_t)2 * 2 * 2 * 4 * 4) /* 128 */
#define NCOMP 32                          /* floats per token over every layer's K and V: 2·2·2·4 */

/* A manager with a pool of element type t (budget in blocks of that type). */
static ibex_kv *mk_t(ibex_kv_policy policy, int32_t n_blocks, int32_t bs, bool no_compute, ibex_type t) {
    ibex_kv_config c = {.policy = policy, .block_size = bs, .no_compute = no_compute};
    cr_assert(ibex_kv_config_set_type(&c, t));
    c.budget_bytes = (int64_t)n_blocks * bs * TOK / 4 * c.elem_bytes;
    ibex_err e = {0};
    ibex_kv *kv = ibex_kv_new(&CFG, &c, &e);
    cr_assert(kv, "ibex_kv_new: %s", e.msg);
    return kv;
}

static ibex_kv *mk(ibex_kv_policy policy, int32_t n_blocks, int32_t bs, bool no_compute) {
    return mk_t(policy, n_blocks, bs, no_compute, IBEX_TYPE_F32);
}

static ibex_kv_stats st(const ibex_kv *kv) {
    ibex_kv_stats s;
    ibex_kv_stats_get(kv, &s);
    return s;
}

static void check_ok(const ibex_kv *kv) {
    ibex_err e = {0};
    cr_assert(ibex_kv_check(kv, &e), "ibex_kv_check: %s", e.msg);
}

/* ---- pool data through views ---- */

/* Address of one K (which 0) or V element of token pos, in the pool's element type. */
static void *elem(ibex_kv *kv, int32_t seq, int layer, int which, int32_t pos, int h, int d) {
    int32_t nt = 0;
    const int32_t *t = ibex_kv_seq_table(kv, seq, &nt);
    ibex_kv_view v = ibex_kv_pool_view(ibex_kv_pool_of(kv), layer, t);
    cr_assert(pos / v.block_size < nt);
    const size_t esz = v.type == IBEX_TYPE_F32 ? 4 : 2;
    char *base = which ? v.v : v.k;
    int64_t phys = (int64_t)v.block_table[pos / v.block_size] * v.block_size + pos % v.block_size;
    return base + (size_t)((phys * v.n_kv_heads + h) * v.head_dim + d) * esz;
}

static void set_elem(void *p, ibex_type t, float x) {
    if (t == IBEX_TYPE_F32) memcpy(p, &x, 4);
    else {
        uint16_t h = t == IBEX_TYPE_F16 ? ibex_f32_to_f16(x) : ibex_f32_to_bf16(x);
        memcpy(p, &h, 2);
    }
}

static float get_elem(const void *p, ibex_type t) {
    if (t == IBEX_TYPE_F32) {
        float x;
        memcpy(&x, p, 4);
        return x;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return t == IBEX_TYPE_F16 ? ibex_f16_to_f32(h) : ibex_bf16_to_f32(h);
}

/* Every K and V element of token pos gets tag·NCOMP + its component index (rounded to
 * the pool's type: distinct tags stay distinct for the tags the tests use). */
static void put_token(ibex_kv *kv, int32_t seq, int32_t pos, int32_t tag) {
    const ibex_type t = ibex_kv_pool_of(kv)->type;
    int comp = 0;
    for (int l = 0; l < CFG.n_layers; l++)
        for (int w = 0; w < 2; w++)
            for (int h = 0; h < CFG.n_kv_heads; h++)
                for (int d = 0; d < CFG.head_dim; d++)
                    set_elem(elem(kv, seq, l, w, pos, h, d), t, (float)tag * NCOMP + comp++);
}

static bool token_is(ibex_kv *kv, int32_t seq, int32_t pos, int32_t tag) {
    const ibex_type t = ibex_kv_pool_of(kv)->type;
    int comp = 0;
    for (int l = 0; l < CFG.n_layers; l++)
        for (int w = 0; w < 2; w++)
            for (int h = 0; h < CFG.n_kv_heads; h++)
                for (int d = 0; d < CFG.head_dim; d++) {
                    char want[4];
                    set_elem(want, t, (float)tag * NCOMP + comp++);
                    if (get_elem(elem(kv, seq, l, w, pos, h, d), t) != get_elem(want, t)) return false;
                }
    return true;
}

/* ---- hand-worked accounting ---- */

Test(kvcache, paged_hand_accounting) {
    const int64_t BB = 4 * TOK; /* block bytes */
    ibex_kv *kv = mk(IBEX_KV_PAGED, 10, 4, false);
    ibex_kv_stats s = st(kv);
    cr_assert_eq(s.block_bytes, BB);
    cr_assert_eq(s.n_blocks, 10);
    cr_assert_eq(s.bytes_pool, 10 * BB);
    cr_assert_eq(s.largest_free_run, 10);

    int32_t a = ibex_kv_seq_new(kv);
    cr_assert_eq(s.seqs, 0);
    cr_assert_eq(ibex_kv_blocks_needed(kv, a, 6), 2);
    cr_assert(ibex_kv_seq_reserve(kv, a, 6, 0));
    s = st(kv);
    cr_assert_eq(s.blocks_used, 2);
    cr_assert_eq(s.bytes_reserved, 2 * BB);
    cr_assert_eq(s.bytes_used, 0);
    cr_assert_eq(s.seqs, 1);
    cr_assert_eq(ibex_kv_seq_capacity(kv, a), 8);
    cr_assert_eq(ibex_kv_free_blocks(kv), 8);

    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 6));
    s = st(kv);
    cr_assert_eq(ibex_kv_seq_len(kv, a), 6);
    cr_assert_eq(s.bytes_used, 6 * TOK);
    cr_assert_eq(s.bytes_fragmented, 2 * BB - 6 * TOK); /* 2 tokens of the last block */
    cr_assert_eq(s.bytes_fragmented, 2 * TOK);
    cr_assert_eq(s.bytes_shared_saved, 0);

    int32_t b = ibex_kv_seq_fork(kv, a, 6);
    cr_assert_geq(b, 0);
    cr_assert_neq(b, a);
    s = st(kv);
    cr_assert_eq(s.blocks_used, 2);
    cr_assert_eq(s.bytes_reserved, 2 * BB);
    cr_assert_eq(s.bytes_used, 6 * TOK);
    cr_assert_eq(s.bytes_shared_saved, 2 * BB);
    cr_assert_eq(s.seqs, 2);
    cr_assert_eq(s.max_seqs, 2);
    cr_assert_eq(ibex_kv_seq_len(kv, b), 6);
    cr_assert_eq(ibex_kv_seq_capacity(kv, b), 8);
    int32_t na = 0, nb = 0;
    const int32_t *ta = ibex_kv_seq_table(kv, a, &na);
    const int32_t *tb = ibex_kv_seq_table(kv, b, &nb);
    cr_assert_eq(na, 2);
    cr_assert_eq(nb, 2);
    cr_assert_eq(ta[0], tb[0]);
    cr_assert_eq(ta[1], tb[1]);
    int32_t a0 = ta[0], a1 = ta[1];
    check_ok(kv);

    /* B grows by one token: capacity 8 covers it, the write lands in shared block 1. */
    cr_assert(ibex_kv_seq_reserve(kv, b, 7, 0));
    cr_assert_eq(st(kv).blocks_used, 2);
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 6, 1));
    s = st(kv);
    cr_assert_eq(s.cow_copies, 1);
    cr_assert_eq(s.blocks_used, 3);
    cr_assert_eq(s.bytes_reserved, 3 * BB);
    cr_assert_eq(s.bytes_used, (4 + 2 + 3) * TOK); /* shared block 0, A's block 1, B's copy */
    cr_assert_eq(s.bytes_fragmented, 3 * BB - 9 * TOK);
    cr_assert_eq(s.bytes_shared_saved, 1 * BB);
    ta = ibex_kv_seq_table(kv, a, &na);
    tb = ibex_kv_seq_table(kv, b, &nb);
    cr_assert_eq(ta[0], a0);
    cr_assert_eq(ta[1], a1);
    cr_assert_eq(tb[0], a0);
    cr_assert_neq(tb[1], a1);
    check_ok(kv);

    /* Block 1 is now private to each: no more copies. */
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 6, 1));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 6, 2));
    s = st(kv);
    cr_assert_eq(s.cow_copies, 1);
    cr_assert_eq(s.bytes_used, (4 + 4 + 3) * TOK);
    cr_assert_eq(s.peak_reserved, 3 * BB);
    cr_assert_eq(s.peak_used, 11 * TOK);
    check_ok(kv);

    ibex_kv_seq_free(kv, a);
    s = st(kv);
    cr_assert_eq(s.blocks_used, 2);
    cr_assert_eq(s.bytes_used, 7 * TOK);
    cr_assert_eq(s.bytes_shared_saved, 0);
    cr_assert_eq(s.seqs, 1);
    cr_assert_eq(s.peak_reserved, 3 * BB);
    cr_assert_eq(s.peak_used, 11 * TOK);
    cr_assert_eq(ibex_kv_seq_len(kv, a), -1);
    check_ok(kv);

    ibex_kv_reset_peaks(kv);
    s = st(kv);
    cr_assert_eq(s.peak_reserved, 2 * BB);
    cr_assert_eq(s.peak_used, 7 * TOK);
    cr_assert_eq(s.max_seqs, 1);

    ibex_kv_seq_free(kv, b);
    s = st(kv);
    cr_assert_eq(s.blocks_used, 0);
    cr_assert_eq(s.bytes_reserved, 0);
    cr_assert_eq(s.bytes_used, 0);
    cr_assert_eq(s.seqs, 0);
    cr_assert_eq(ibex_kv_free_blocks(kv), 10);
    check_ok(kv);
    ibex_kv_free(kv);
}

/* A fork of a prefix shares a partially filled block holding fewer of its tokens: the
 * block's fill is the largest holder's, and falls when that holder moves away. */
Test(kvcache, paged_shared_fill_follows_largest_holder) {
    ibex_kv *kv = mk(IBEX_KV_PAGED, 8, 4, true);
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 8, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 7));
    int32_t b = ibex_kv_seq_fork(kv, a, 5); /* 4 + 1 tokens of A's 4 + 3 */
    int32_t c = ibex_kv_seq_fork(kv, a, 5);
    cr_assert(b >= 0 && c >= 0);
    ibex_kv_stats s = st(kv);
    cr_assert_eq(s.blocks_used, 2);
    cr_assert_eq(s.bytes_used, 7 * TOK);
    cr_assert_eq(s.bytes_shared_saved, 4 * 4 * TOK); /* two blocks, each with 2 extra holders */
    cr_assert_eq(ibex_kv_seq_capacity(kv, b), 8);
    check_ok(kv);

    /* A rewrites position 6: it copies block 1 away; the old block keeps B and C's 1 token. */
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 6, 1));
    s = st(kv);
    cr_assert_eq(s.cow_copies, 1);
    cr_assert_eq(s.blocks_used, 3);
    cr_assert_eq(s.bytes_used, (4 + 1 + 3) * TOK);
    check_ok(kv);

    ibex_kv_seq_free(kv, a); /* A's private block 1 goes; block 0 stays with B and C */
    s = st(kv);
    cr_assert_eq(s.blocks_used, 2);
    cr_assert_eq(s.bytes_used, 5 * TOK);
    check_ok(kv);
    int32_t a2 = ibex_kv_seq_new(kv);
    cr_assert_eq(a2, a, "freed handles are reused");
    ibex_kv_seq_free(kv, a2);

    /* B writes into the block it shares with C: one copy, fill unchanged for C's. */
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 5, 2));
    s = st(kv);
    cr_assert_eq(s.cow_copies, 2);
    cr_assert_eq(s.bytes_used, (4 + 1 + 3) * TOK);
    check_ok(kv);
    ibex_kv_seq_free(kv, b);
    ibex_kv_seq_free(kv, c);
    s = st(kv);
    cr_assert_eq(s.blocks_used, 0);
    cr_assert_eq(s.bytes_used, 0);
    check_ok(kv);
    ibex_kv_free(kv);
}

/* The free list is a stack: a fresh pool hands out 0, 1, 2, ...; a freed sequence's
 * blocks come back in table order, so runs stay reproducible. */
Test(kvcache, paged_free_list_is_deterministic) {
    ibex_kv *kv = mk(IBEX_KV_PAGED, 8, 2, true);
    int32_t a = ibex_kv_seq_new(kv), b = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 6, 0));
    cr_assert(ibex_kv_seq_reserve(kv, b, 2, 0));
    int32_t n = 0;
    const int32_t *t = ibex_kv_seq_table(kv, a, &n);
    cr_assert_eq(n, 3);
    cr_assert(t[0] == 0 && t[1] == 1 && t[2] == 2);
    cr_assert_eq(ibex_kv_seq_table(kv, b, &n)[0], 3);
    ibex_kv_seq_free(kv, a);
    int32_t c = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, c, 8, 0));
    t = ibex_kv_seq_table(kv, c, &n);
    cr_assert_eq(n, 4);
    cr_assert(t[0] == 0 && t[1] == 1 && t[2] == 2 && t[3] == 4, "got %d %d %d %d", t[0], t[1], t[2], t[3]);
    check_ok(kv);
    ibex_kv_free(kv);
}

Test(kvcache, paged_reserve_and_cow_are_all_or_nothing) {
    ibex_kv *kv = mk(IBEX_KV_PAGED, 3, 4, true);
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert_not(ibex_kv_seq_reserve(kv, a, 13, 0), "13 tokens need 4 of 3 blocks");
    cr_assert_eq(st(kv).blocks_used, 0);
    cr_assert_eq(ibex_kv_seq_capacity(kv, a), 0);
    cr_assert(ibex_kv_seq_reserve(kv, a, 8, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 8));
    cr_assert_not(ibex_kv_seq_prepare_write(kv, a, 8, 1), "position 8 is beyond capacity 8");
    int32_t b = ibex_kv_seq_fork(kv, a, 8);
    cr_assert_geq(b, 0);
    /* Rewriting both shared blocks needs two copies; only one block is free. */
    ibex_kv_stats before = st(kv);
    cr_assert_not(ibex_kv_seq_prepare_write(kv, b, 0, 8));
    ibex_kv_stats after = st(kv);
    cr_assert_eq(after.cow_copies, before.cow_copies);
    cr_assert_eq(after.blocks_used, before.blocks_used);
    cr_assert_eq(after.bytes_used, before.bytes_used);
    check_ok(kv);
    /* One copy fits. */
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 7, 1));
    cr_assert_eq(st(kv).cow_copies, 1);
    cr_assert_eq(ibex_kv_free_blocks(kv), 0);
    check_ok(kv);
    ibex_kv_free(kv);
}

/* ---- contiguous ---- */

Test(kvcache, contiguous_reserves_whole_runs) {
    const int64_t BB = 4 * TOK;
    const int32_t max_seq_len = 32; /* 8 blocks of 4 */
    ibex_kv *kv = mk(IBEX_KV_CONTIGUOUS, 20, 4, false);
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert_eq(ibex_kv_blocks_needed(kv, -1, max_seq_len), 8);
    cr_assert(ibex_kv_seq_reserve(kv, a, 5, max_seq_len));
    cr_assert_eq(ibex_kv_seq_capacity(kv, a), 32);
    int32_t n = 0;
    const int32_t *t = ibex_kv_seq_table(kv, a, &n);
    cr_assert_eq(n, 8);
    for (int i = 0; i < 8; i++) cr_assert_eq(t[i], i);
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 5));
    ibex_kv_stats s = st(kv);
    cr_assert_eq(s.bytes_reserved, 8 * BB);
    cr_assert_eq(s.bytes_used, 5 * TOK);
    cr_assert_eq(s.bytes_fragmented, 8 * BB - 5 * TOK);
    cr_assert_float_eq((double)s.bytes_used / (double)s.bytes_reserved, 5.0 / 32.0, 1e-12);

    int32_t b = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, b, 3, max_seq_len));
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 0, 3));
    t = ibex_kv_seq_table(kv, b, &n);
    cr_assert_eq(t[0], 8);
    s = st(kv);
    cr_assert_eq(s.bytes_reserved, 16 * BB);
    cr_assert_float_eq((double)s.bytes_used / (double)s.bytes_reserved, 8.0 / 64.0, 1e-12);
    cr_assert_eq(s.largest_free_run, 4);

    int32_t c = ibex_kv_seq_new(kv);
    cr_assert_not(ibex_kv_seq_reserve(kv, c, 1, max_seq_len), "8 blocks wanted, 4 free");
    cr_assert(ibex_kv_seq_reserve(kv, c, 16, 0), "4 blocks fit");
    /* A run is final: growing past it fails, within it is a no-op. */
    cr_assert_not(ibex_kv_seq_reserve(kv, a, 33, 0));
    cr_assert(ibex_kv_seq_reserve(kv, a, 32, 0));
    cr_assert_not(ibex_kv_seq_reserve(kv, c, 17, 0));
    cr_assert_eq(st(kv).blocks_used, 20);
    cr_assert_eq(ibex_kv_seq_fork(kv, a, 5), -1, "no room for a copy of A's run");
    check_ok(kv);
    ibex_kv_free(kv);
}

Test(kvcache, contiguous_first_fit_fragments) {
    ibex_kv *kv = mk(IBEX_KV_CONTIGUOUS, 12, 4, true);
    int32_t a = ibex_kv_seq_new(kv), b = ibex_kv_seq_new(kv), c = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 16, 0)); /* blocks 0..3 */
    cr_assert(ibex_kv_seq_reserve(kv, b, 12, 0)); /* 4..6 */
    cr_assert(ibex_kv_seq_reserve(kv, c, 16, 0)); /* 7..10 */
    int32_t n = 0;
    cr_assert_eq(ibex_kv_seq_table(kv, c, &n)[0], 7);
    ibex_kv_seq_free(kv, b);
    ibex_kv_stats s = st(kv);
    cr_assert_eq(ibex_kv_free_blocks(kv), 4); /* 4, 5, 6 and 11 */
    cr_assert_eq(s.largest_free_run, 3);
    check_ok(kv);

    int32_t d = ibex_kv_seq_new(kv);
    cr_assert_eq(ibex_kv_blocks_needed(kv, d, 16), 4);
    cr_assert_not(ibex_kv_seq_reserve(kv, d, 16, 0), "4 free blocks, but no run of 4");
    cr_assert_eq(ibex_kv_seq_capacity(kv, d), 0);
    cr_assert(ibex_kv_seq_reserve(kv, d, 2, 0)); /* one block: first fit is block 4 */
    cr_assert_eq(ibex_kv_seq_table(kv, d, &n)[0], 4);
    int32_t e = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, e, 8, 0)); /* two blocks: 5, 6 */
    const int32_t *t = ibex_kv_seq_table(kv, e, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(t[0], 5);
    cr_assert_eq(t[1], 6);
    s = st(kv);
    cr_assert_eq(s.largest_free_run, 1);
    check_ok(kv);
    ibex_kv_free(kv);
}

static void fork_copies_data(ibex_type type) {
    ibex_kv *kv = mk_t(IBEX_KV_CONTIGUOUS, 16, 4, false, type);
    const int64_t tok = TOK / 4 * ibex_kv_pool_of(kv)->elem_bytes; /* kv bytes per token at this type */
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 10, 24)); /* 6 blocks */
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 10));
    for (int p = 0; p < 10; p++) put_token(kv, a, p, 100 + p);
    int32_t b = ibex_kv_seq_fork(kv, a, 10);
    cr_assert_geq(b, 0);
    ibex_kv_stats s = st(kv);
    cr_assert_eq(s.fork_copies, 3); /* ceil(10 / 4) filled blocks */
    cr_assert_eq(s.cow_copies, 0);
    cr_assert_eq(s.blocks_used, 12);
    cr_assert_eq(s.bytes_used, 20 * tok);
    cr_assert_eq(s.bytes_shared_saved, 0);
    cr_assert_eq(ibex_kv_seq_capacity(kv, b), 24);
    cr_assert_eq(ibex_kv_seq_len(kv, b), 10);
    int32_t n = 0;
    const int32_t *t = ibex_kv_seq_table(kv, b, &n);
    cr_assert_eq(n, 6);
    for (int i = 0; i < 6; i++) cr_assert_eq(t[i], 6 + i);
    for (int p = 0; p < 10; p++) cr_assert(token_is(kv, b, p, 100 + p), "copy differs at token %d", p);
    /* The copy is private: writing B leaves A alone. */
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 9, 1));
    put_token(kv, b, 9, 999);
    cr_assert(token_is(kv, a, 9, 109));
    cr_assert(token_is(kv, b, 9, 999));
    /* A fork of a prefix copies only the blocks that prefix fills. */
    int32_t c = ibex_kv_seq_fork(kv, a, 4);
    cr_assert_eq(c, -1, "no run of 6 left (4 free)");
    ibex_kv_seq_free(kv, b);
    c = ibex_kv_seq_fork(kv, a, 4);
    cr_assert_geq(c, 0);
    cr_assert_eq(st(kv).fork_copies, 3 + 1);
    cr_assert(token_is(kv, c, 3, 103));
    check_ok(kv);
    ibex_kv_free(kv);
}

/* Fork copies of an F16 or BF16 pool: a copy addressed in 4-byte elements would copy the
 * wrong blocks, one sized in 2-byte units for an F32 pool would drop half of each. */
Test(kvcache, contiguous_fork_copies_data) { fork_copies_data(IBEX_TYPE_F32); }
Test(kvcache, contiguous_fork_copies_data_f16) { fork_copies_data(IBEX_TYPE_F16); }
Test(kvcache, contiguous_fork_copies_data_bf16) { fork_copies_data(IBEX_TYPE_BF16); }

/* ---- copy-on-write with real data ---- */

static void cow_preserves_data(ibex_type type) {
    ibex_kv *kv = mk_t(IBEX_KV_PAGED, 8, 4, false, type);
    cr_assert_not_null(ibex_kv_pool_of(kv));
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 6, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 6));
    for (int p = 0; p < 6; p++) put_token(kv, a, p, 10 + p);

    int32_t b = ibex_kv_seq_fork(kv, a, 6);
    cr_assert(ibex_kv_seq_reserve(kv, b, 8, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, b, 6, 2));
    cr_assert_eq(st(kv).cow_copies, 1);
    put_token(kv, b, 6, 500);
    put_token(kv, b, 7, 501);
    /* A keeps its data and its two tokens of block 1; B sees the copied prefix. */
    for (int p = 0; p < 6; p++) {
        cr_assert(token_is(kv, a, p, 10 + p), "A changed at %d", p);
        cr_assert(token_is(kv, b, p, 10 + p), "B lost the prefix at %d", p);
    }
    cr_assert(token_is(kv, b, 6, 500));
    cr_assert(token_is(kv, b, 7, 501));
    /* A's own continuation must not leak into B. */
    cr_assert(ibex_kv_seq_reserve(kv, a, 7, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 6, 1));
    put_token(kv, a, 6, 77);
    cr_assert(token_is(kv, b, 6, 500));
    cr_assert(token_is(kv, a, 6, 77));
    cr_assert_eq(st(kv).cow_copies, 1);
    check_ok(kv);
    ibex_kv_free(kv);
}

Test(kvcache, paged_cow_preserves_data) { cow_preserves_data(IBEX_TYPE_F32); }
Test(kvcache, paged_cow_preserves_data_f16) { cow_preserves_data(IBEX_TYPE_F16); }
Test(kvcache, paged_cow_preserves_data_bf16) { cow_preserves_data(IBEX_TYPE_BF16); }

/* ---- randomized operation sequences ---- */

#define MAXH 24
#define MAXT 64

typedef struct shadow {
    bool live;
    int32_t len;
    int32_t tag[MAXT]; /* the tag of each filled token */
} shadow;

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static int32_t rnd(uint64_t *s, int32_t n) { return (int32_t)(rng_next(s) % (uint64_t)n); }

/* Holders of each block, recounted from the tables (for predictions). */
static void holders(ibex_kv *kv, const shadow *sh, int32_t *cnt, int32_t nb) {
    memset(cnt, 0, (size_t)nb * sizeof *cnt);
    for (int h = 0; h < MAXH; h++) {
        if (!sh[h].live) continue;
        int32_t n = 0;
        const int32_t *t = ibex_kv_seq_table(kv, h, &n);
        for (int i = 0; i < n; i++) cnt[t[i]]++;
    }
}

static void stats_eq(const ibex_kv_stats *x, const ibex_kv_stats *y) {
    cr_assert_eq(x->block_bytes, y->block_bytes);
    cr_assert_eq(x->n_blocks, y->n_blocks);
    cr_assert_eq(x->blocks_used, y->blocks_used);
    cr_assert_eq(x->bytes_pool, y->bytes_pool);
    cr_assert_eq(x->bytes_reserved, y->bytes_reserved);
    cr_assert_eq(x->bytes_used, y->bytes_used);
    cr_assert_eq(x->bytes_fragmented, y->bytes_fragmented);
    cr_assert_eq(x->peak_reserved, y->peak_reserved);
    cr_assert_eq(x->peak_used, y->peak_used);
    cr_assert_eq(x->seqs, y->seqs);
    cr_assert_eq(x->max_seqs, y->max_seqs);
    cr_assert_eq(x->cow_copies, y->cow_copies);
    cr_assert_eq(x->fork_copies, y->fork_copies);
    cr_assert_eq(x->bytes_shared_saved, y->bytes_shared_saved);
    cr_assert_eq(x->largest_free_run, y->largest_free_run);
}

/* Runs n_ops random operations on kvs[0..n_kv) in lockstep (same results required),
 * checking invariants, predictions and, for managers with a pool, every token's data. */
static void random_ops(ibex_kv **kvs, int n_kv, uint64_t seed, int n_ops) {
    const ibex_kv_config *cfg = ibex_kv_config_of(kvs[0]);
    const int32_t bs = cfg->block_size;
    const ibex_kv_policy pol = cfg->policy;
    shadow sh[MAXH] = {0};
    int32_t cnt[512];
    int32_t tag = 1;
    uint64_t rs = seed;
    int n_ok[5] = {0}, n_fail[5] = {0};
    ibex_kv_stats s0 = st(kvs[0]);
    cr_assert_leq(s0.n_blocks, 512);

    for (int op = 0; op < n_ops; op++) {
        int kind = rnd(&rs, 10);
        int32_t live[MAXH], n_live = 0;
        for (int h = 0; h < MAXH; h++)
            if (sh[h].live) live[n_live++] = h;
        int32_t h = n_live ? live[rnd(&rs, n_live)] : -1;
        ibex_kv_stats before = st(kvs[0]);
        bool ok = false;
        int k = 0;

        if (kind <= 1 || h < 0) { /* new */
            k = 0;
            if (n_live >= MAXH - 2) continue;
            int32_t id = ibex_kv_seq_new(kvs[0]);
            for (int m = 1; m < n_kv; m++) cr_assert_eq(ibex_kv_seq_new(kvs[m]), id);
            cr_assert(id >= 0 && id < MAXH && !sh[id].live, "handle %d", id);
            sh[id] = (shadow){.live = true};
            ok = true;
        } else if (kind <= 3) { /* reserve */
            k = 1;
            int32_t cap = ibex_kv_seq_capacity(kvs[0], h);
            int32_t n = sh[h].len + 1 + rnd(&rs, 12);
            if (n > MAXT) n = MAXT;
            int32_t rt = rnd(&rs, 2) ? 8 + rnd(&rs, 24) : 0;
            int32_t need = ibex_kv_blocks_needed(kvs[0], h, n);
            bool expect;
            if (pol == IBEX_KV_CONTIGUOUS) {
                int32_t want = (n > rt ? n : rt);
                expect = cap > 0 ? n <= cap : before.largest_free_run >= (want + bs - 1) / bs;
            } else {
                expect = need <= before.n_blocks - before.blocks_used;
            }
            ok = ibex_kv_seq_reserve(kvs[0], h, n, rt);
            for (int m = 1; m < n_kv; m++) cr_assert_eq(ibex_kv_seq_reserve(kvs[m], h, n, rt), ok);
            cr_assert_eq(ok, expect, "op %d: reserve %d tokens (+%d) of seq %d", op, n, rt, h);
            if (ok) cr_assert_geq(ibex_kv_seq_capacity(kvs[0], h), n);
        } else if (kind <= 6) { /* write: append, or rewrite a tail */
            k = 2;
            int32_t cap = ibex_kv_seq_capacity(kvs[0], h);
            int32_t pos = sh[h].len;
            if (rnd(&rs, 4) == 0 && sh[h].len > 0) pos = rnd(&rs, sh[h].len);
            if (cap - pos <= 0) continue;
            int32_t n = 1 + rnd(&rs, cap - pos < 6 ? cap - pos : 6);
            holders(kvs[0], sh, cnt, before.n_blocks);
            int32_t nt = 0;
            const int32_t *t = ibex_kv_seq_table(kvs[0], h, &nt);
            int32_t shared = 0;
            for (int32_t i = pos / bs; i <= (pos + n - 1) / bs; i++) shared += cnt[t[i]] > 1;
            bool expect = shared <= before.n_blocks - before.blocks_used;
            ok = ibex_kv_seq_prepare_write(kvs[0], h, pos, n);
            for (int m = 1; m < n_kv; m++) cr_assert_eq(ibex_kv_seq_prepare_write(kvs[m], h, pos, n), ok);
            cr_assert_eq(ok, expect, "op %d: write [%d, %d) of seq %d", op, pos, pos + n, h);
            if (ok) {
                cr_assert_eq(st(kvs[0]).cow_copies - before.cow_copies, shared);
                for (int32_t p = pos; p < pos + n; p++) {
                    sh[h].tag[p] = tag;
                    for (int m = 0; m < n_kv; m++)
                        if (ibex_kv_pool_of(kvs[m])) put_token(kvs[m], h, p, tag);
                    tag++;
                }
                if (pos + n > sh[h].len) sh[h].len = pos + n;
            }
        } else if (kind <= 7) { /* fork */
            k = 3;
            if (n_live >= MAXH - 2) continue;
            int32_t n = sh[h].len ? rnd(&rs, sh[h].len + 1) : 0;
            int32_t nt = 0;
            ibex_kv_seq_table(kvs[0], h, &nt);
            int32_t id = ibex_kv_seq_fork(kvs[0], h, n);
            for (int m = 1; m < n_kv; m++) cr_assert_eq(ibex_kv_seq_fork(kvs[m], h, n), id);
            if (pol == IBEX_KV_NONE) cr_assert_eq(id, -1);
            if (pol == IBEX_KV_PAGED) cr_assert_geq(id, 0);
            if (pol == IBEX_KV_CONTIGUOUS)
                cr_assert_eq(id >= 0, nt == 0 || before.largest_free_run >= nt, "op %d: fork of %d blocks", op, nt);
            ok = id >= 0;
            if (ok) {
                cr_assert(id < MAXH && !sh[id].live);
                sh[id] = (shadow){.live = true, .len = n};
                memcpy(sh[id].tag, sh[h].tag, (size_t)n * sizeof(int32_t));
                cr_assert_eq(ibex_kv_seq_len(kvs[0], id), n);
                int32_t fork_blocks = (n + bs - 1) / bs;
                if (pol == IBEX_KV_CONTIGUOUS)
                    cr_assert_eq(st(kvs[0]).fork_copies - before.fork_copies, fork_blocks);
                else
                    cr_assert_eq(st(kvs[0]).blocks_used, before.blocks_used);
            }
        } else { /* free */
            k = 4;
            for (int m = 0; m < n_kv; m++) ibex_kv_seq_free(kvs[m], h);
            sh[h].live = false;
            ok = true;
        }
        if (ok) n_ok[k]++;
        else n_fail[k]++;

        for (int m = 0; m < n_kv; m++) {
            check_ok(kvs[m]);
            ibex_kv_stats s = st(kvs[m]);
            cr_assert_leq(s.blocks_used, s.n_blocks);
            cr_assert_leq(s.bytes_reserved, s.bytes_pool);
            cr_assert_leq(s.bytes_used, s.bytes_reserved);
            cr_assert_geq(s.bytes_shared_saved, 0);
            if (!ok) stats_eq(&s, &before); /* a failed call changes nothing */
            if (m > 0) {
                ibex_kv_stats s0m = st(kvs[0]);
                stats_eq(&s, &s0m);
            }
            for (int q = 0; q < MAXH; q++) {
                if (!sh[q].live) continue;
                cr_assert_eq(ibex_kv_seq_len(kvs[m], q), sh[q].len);
                int32_t n0 = 0, n1 = 0;
                const int32_t *t0 = ibex_kv_seq_table(kvs[0], q, &n0);
                const int32_t *t1 = ibex_kv_seq_table(kvs[m], q, &n1);
                cr_assert_eq(n0, n1);
                if (n0) cr_assert(memcmp(t0, t1, (size_t)n0 * sizeof *t0) == 0, "tables differ");
                if (!ibex_kv_pool_of(kvs[m])) continue;
                for (int32_t p = 0; p < sh[q].len; p++)
                    cr_assert(token_is(kvs[m], q, p, sh[q].tag[p]), "op %d: seq %d token %d lost its data", op, q,
                              p);
            }
        }
    }
    /* The sequence exercised both outcomes of the interesting operations. */
    cr_assert_gt(n_ok[1], 10);
    cr_assert_gt(n_ok[2], 10);
    cr_assert_gt(n_ok[4], 10);
    cr_assert_gt(n_fail[1], 0, "reserve never ran out of blocks");
    if (pol != IBEX_KV_NONE) cr_assert_gt(n_ok[3], 10);

    for (int q = 0; q < MAXH; q++)
        if (sh[q].live)
            for (int m = 0; m < n_kv; m++) ibex_kv_seq_free(kvs[m], q);
    for (int m = 0; m < n_kv; m++) {
        check_ok(kvs[m]);
        ibex_kv_stats s = st(kvs[m]);
        cr_assert_eq(s.blocks_used, 0);
        cr_assert_eq(s.bytes_reserved, 0);
        cr_assert_eq(s.bytes_used, 0);
        cr_assert_eq(s.bytes_shared_saved, 0);
        cr_assert_eq(s.seqs, 0);
        cr_assert_eq(s.largest_free_run, s.n_blocks);
        cr_assert_eq(ibex_kv_free_blocks(kvs[m]), s.n_blocks, "blocks leaked");
        cr_assert_geq(s.peak_reserved, s.bytes_pool / 2);
    }
}

Test(kvcache, random_paged_with_data) {
    ibex_kv *kv = mk(IBEX_KV_PAGED, 24, 4, false);
    random_ops(&kv, 1, 0x9e3779b97f4a7c15ull, 4000);
    cr_assert_gt(st(kv).cow_copies, 10);
    ibex_kv_free(kv);
}

Test(kvcache, random_contiguous_with_data) {
    ibex_kv *kv = mk(IBEX_KV_CONTIGUOUS, 40, 4, false);
    random_ops(&kv, 1, 0x1234567887654321ull, 4000);
    cr_assert_gt(st(kv).fork_copies, 10);
    cr_assert_eq(st(kv).cow_copies, 0);
    ibex_kv_free(kv);
}

Test(kvcache, random_none_with_data) {
    ibex_kv *kv = mk(IBEX_KV_NONE, 24, 4, false);
    random_ops(&kv, 1, 0xfeedfacecafebeefull, 3000);
    ibex_kv_free(kv);
}

Test(kvcache, random_paged_block_size_one) {
    ibex_kv *kv = mk(IBEX_KV_PAGED, 64, 1, true);
    random_ops(&kv, 1, 42, 3000);
    ibex_kv_free(kv);
}

/* ---- accounting only ---- */

Test(kvcache, no_compute_matches_compute) {
    ibex_kv_policy pols[] = {IBEX_KV_PAGED, IBEX_KV_CONTIGUOUS, IBEX_KV_NONE};
    for (int i = 0; i < 3; i++) {
        ibex_kv *kvs[2] = {mk(pols[i], 24, 4, false), mk(pols[i], 24, 4, true)};
        cr_assert_not_null(ibex_kv_pool_of(kvs[0]));
        cr_assert_null(ibex_kv_pool_of(kvs[1]));
        random_ops(kvs, 2, 0xabcdef0123ull + (uint64_t)i, 2000);
        ibex_kv_free(kvs[0]);
        ibex_kv_free(kvs[1]);
    }
}

Test(kvcache, f16_accounting_halves_bytes) {
    /* The same budget holds twice the blocks at 2 bytes per element. */
    ibex_kv_config c = {.policy = IBEX_KV_PAGED, .budget_bytes = 10 * 4 * TOK, .block_size = 4,
                        .elem_bytes = 2, .no_compute = true};
    ibex_err e = {0};
    ibex_kv *kv = ibex_kv_new(&CFG, &c, &e);
    cr_assert(kv, "%s", e.msg);
    cr_assert_null(ibex_kv_pool_of(kv));
    ibex_kv_stats s = st(kv);
    cr_assert_eq(s.block_bytes, 4 * TOK / 2);
    cr_assert_eq(s.n_blocks, 20);
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 5, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 5));
    s = st(kv);
    cr_assert_eq(s.bytes_used, 5 * TOK / 2);
    cr_assert_eq(s.bytes_reserved, 2 * 4 * TOK / 2);
    ibex_kv_free(kv);
}

/* A compute pool of F16 or BF16 holds the bytes the accounting says: half of F32's for
 * the same blocks, so kv.pool_bytes and the memory reports show real bytes. */
Test(kvcache, f16_compute_pool_is_half_the_bytes) {
    const ibex_type types[] = {IBEX_TYPE_F16, IBEX_TYPE_BF16};
    for (int i = 0; i < 2; i++) {
        ibex_mem_stats m0, m1;
        ibex_mem_stats_get(&m0);
        ibex_kv *kv = mk_t(IBEX_KV_PAGED, 10, 4, false, types[i]);
        ibex_mem_stats_get(&m1);
        ibex_kv_pool *p = ibex_kv_pool_of(kv);
        cr_assert_not_null(p);
        cr_assert_eq(p->type, types[i]);
        cr_assert_eq(p->bytes, 10 * 4 * TOK / 2);
        cr_assert_eq(st(kv).bytes_pool, p->bytes);
        cr_assert_eq(m1.live[IBEX_MEM_KV] - m0.live[IBEX_MEM_KV], 10 * 4 * TOK / 2);
        ibex_kv_view v = ibex_kv_pool_view(p, 1, NULL);
        cr_assert_eq(v.type, types[i], "the view carries the element type to the kernels");
        cr_assert_eq((char *)v.v - (char *)v.k, 10 * 4 * TOK / 2 / 2 / CFG.n_layers);
        ibex_kv_free(kv);
    }
}

/* The spare slot carries one pool from a freed manager to the next of the same shape (no
 * new allocation, no zero-fill) and refuses a pool of another shape or type. */
Test(kvcache, spare_pool_is_reused_when_it_fits) {
    ibex_kv_pool *spare = NULL;
    ibex_kv_config c = {.policy = IBEX_KV_PAGED, .budget_bytes = 8 * 4 * TOK / 2, .block_size = 4, .spare = &spare};
    cr_assert(ibex_kv_config_set_type(&c, IBEX_TYPE_F16));
    ibex_err e = {0};
    ibex_kv *kv = ibex_kv_new(&CFG, &c, &e);
    cr_assert(kv, "%s", e.msg);
    ibex_kv_pool *first = ibex_kv_pool_of(kv);
    ibex_kv_free(kv);
    cr_assert_eq(spare, first, "freeing parks the pool in the empty slot");
    ibex_mem_stats m0, m1;
    ibex_mem_stats_get(&m0);
    kv = ibex_kv_new(&CFG, &c, &e);
    ibex_mem_stats_get(&m1);
    cr_assert_eq(ibex_kv_pool_of(kv), first, "the same shape takes the parked pool");
    cr_assert_null(spare);
    cr_assert_eq(m1.live[IBEX_MEM_KV], m0.live[IBEX_MEM_KV], "no second pool was allocated");
    /* a second manager while the first holds the pool: the slot is empty, so it allocates */
    ibex_kv *kv2 = ibex_kv_new(&CFG, &c, &e);
    cr_assert_neq(ibex_kv_pool_of(kv2), first);
    ibex_kv_free(kv);
    cr_assert_eq(spare, first);
    ibex_kv_free(kv2); /* the slot is taken: this pool is freed */
    cr_assert_eq(spare, first);
    /* another type does not fit */
    cr_assert(ibex_kv_config_set_type(&c, IBEX_TYPE_BF16));
    kv = ibex_kv_new(&CFG, &c, &e);
    cr_assert(kv, "%s", e.msg);
    cr_assert_neq(ibex_kv_pool_of(kv), first);
    cr_assert_eq(ibex_kv_pool_of(kv)->type, IBEX_TYPE_BF16);
    cr_assert_eq(spare, first, "a pool that does not fit stays parked");
    ibex_kv_free(kv); /* the slot is taken: the BF16 pool is freed, not swapped in */
    cr_assert_eq(spare, first);
    ibex_kv_pool_free(spare);
}

Test(kvcache, memory_is_tracked_and_returned) {
    ibex_mem_stats m0, m1, m2;
    ibex_mem_stats_get(&m0);
    ibex_kv *kv = mk(IBEX_KV_PAGED, 10, 4, false);
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 40, 0));
    ibex_mem_stats_get(&m1);
    cr_assert_eq(m1.live[IBEX_MEM_KV] - m0.live[IBEX_MEM_KV], 10 * 4 * TOK, "the pool is the budget, exactly");
    cr_assert_gt(m1.live[IBEX_MEM_OTHER], m0.live[IBEX_MEM_OTHER]);
    ibex_kv_free(kv);
    ibex_mem_stats_get(&m2);
    cr_assert_eq(m2.live[IBEX_MEM_KV], m0.live[IBEX_MEM_KV]);
    cr_assert_eq(m2.live[IBEX_MEM_OTHER], m0.live[IBEX_MEM_OTHER]);
}

/* ---- errors and names ---- */

Test(kvcache, rejects_impossible_configs) {
    ibex_err e = {0};
    ibex_kv_config c = {.policy = IBEX_KV_PAGED, .budget_bytes = 1 << 20, .block_size = 0, .elem_bytes = 4};
    cr_assert_null(ibex_kv_new(&CFG, &c, &e));
    cr_assert_eq(e.status, IBEX_ERR_INVALID);
    cr_assert(strstr(e.msg, "block size 0"), "%s", e.msg);
    c.block_size = 257;
    cr_assert_null(ibex_kv_new(&CFG, &c, &e));
    cr_assert(strstr(e.msg, "257"), "%s", e.msg);

    c.block_size = 16;
    c.budget_bytes = 2047; /* one block is 16 · 128 = 2048 bytes */
    cr_assert_null(ibex_kv_new(&CFG, &c, &e));
    cr_assert_eq(e.status, IBEX_ERR_INVALID);
    cr_assert(strstr(e.msg, "2047"), "%s", e.msg);
    cr_assert(strstr(e.msg, "2048"), "%s", e.msg);
    c.budget_bytes = 2048;
    ibex_kv *kv = ibex_kv_new(&CFG, &c, &e);
    cr_assert(kv, "exactly one block fits: %s", e.msg);
    cr_assert_eq(st(kv).n_blocks, 1);
    ibex_kv_free(kv);
    c.budget_bytes = 2048 * 3 - 1; /* floor */
    kv = ibex_kv_new(&CFG, &c, &e);
    cr_assert_eq(st(kv).n_blocks, 2);
    ibex_kv_free(kv);

    c.dtype = IBEX_TYPE_BF16; /* a 2-byte type with 4-byte accounting */
    c.elem_bytes = 4;
    cr_assert_null(ibex_kv_new(&CFG, &c, &e));
    cr_assert(strstr(e.msg, "disagree"), "%s", e.msg);
    c.dtype = IBEX_TYPE_Q8_0;
    c.elem_bytes = 2;
    cr_assert_null(ibex_kv_new(&CFG, &c, &e));
    cr_assert(strstr(e.msg, "Q8_0"), "%s", e.msg);
    c.dtype = IBEX_TYPE_F32;
    c.elem_bytes = 3;
    c.no_compute = true;
    cr_assert_null(ibex_kv_new(&CFG, &c, &e));
    cr_assert_eq(e.status, IBEX_ERR_INVALID);
}

Test(kvcache, policy_names_round_trip) {
    ibex_kv_policy p;
    const ibex_kv_policy all[] = {IBEX_KV_NONE, IBEX_KV_CONTIGUOUS, IBEX_KV_PAGED};
    for (int i = 0; i < 3; i++) {
        cr_assert(ibex_kv_policy_from_name(ibex_kv_policy_name(all[i]), &p));
        cr_assert_eq(p, all[i]);
    }
    cr_assert_str_eq(ibex_kv_policy_name(IBEX_KV_PAGED), "paged");
    cr_assert_not(ibex_kv_policy_from_name("pagd", &p));
}

Test(kvcache, bad_handles_and_arguments) {
    ibex_kv *kv = mk(IBEX_KV_NONE, 4, 4, true);
    int32_t a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 4, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 4));
    cr_assert_eq(ibex_kv_seq_fork(kv, a, 4), -1, "none cannot fork");
    cr_assert_not(ibex_kv_seq_reserve(kv, 7, 4, 0));
    cr_assert_not(ibex_kv_seq_prepare_write(kv, a, -1, 1));
    cr_assert_eq(ibex_kv_seq_capacity(kv, 7), -1);
    int32_t n = 5;
    cr_assert_null(ibex_kv_seq_table(kv, 7, &n));
    cr_assert_eq(n, 0);
    ibex_kv_seq_free(kv, 7); /* no-op */
    ibex_kv_seq_free(kv, a);
    ibex_kv_seq_free(kv, a); /* twice: no-op */
    cr_assert_eq(ibex_kv_free_blocks(kv), 4);
    check_ok(kv);
    ibex_kv_free(kv);

    kv = mk(IBEX_KV_PAGED, 4, 4, true);
    a = ibex_kv_seq_new(kv);
    cr_assert(ibex_kv_seq_reserve(kv, a, 4, 0));
    cr_assert(ibex_kv_seq_prepare_write(kv, a, 0, 3));
    cr_assert_eq(ibex_kv_seq_fork(kv, a, 4), -1, "fork beyond the filled length");
    cr_assert_geq(ibex_kv_seq_fork(kv, a, 3), 0);
    ibex_kv_free(kv);
}
