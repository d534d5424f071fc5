/* test_model.c — model loading: synthetic presets (determinism, published parameter
 * counts, KV formula), synthetic -> GGUF -> load round trip, and the errors a bad
 * GGUF model file gets. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/kv.h"
#include "engine/model.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

static ibex_model *load(const char *src, ibex_type t, uint64_t seed, int threads) {
    ibex_model_params p = ibex_model_default_params();
    p.wtype = t;
    p.seed = seed;
    p.n_threads = threads;
    ibex_err err = {0};
    ibex_model *m = ibex_model_load(src, &p, &err);
    cr_assert(m, "%s: %s", src, err.msg);
    return m;
}

static size_t wbytes(const ibex_weight *w) { return ibex_type_row_bytes(w->type, w->n_in) * (size_t)w->n_out; }

static bool same_weights(const ibex_model *a, const ibex_model *b) {
    if (memcmp(&a->cfg, &b->cfg, sizeof a->cfg) != 0) return false;
    if (memcmp(a->tok_embd.data, b->tok_embd.data, wbytes(&a->tok_embd))) return false;
    if (memcmp(a->output.data, b->output.data, wbytes(&a->output))) return false;
    if (memcmp(a->output_norm, b->output_norm, (size_t)a->cfg.dim * 4)) return false;
    for (int l = 0; l < a->cfg.n_layers; l++) {
        const ibex_layer_weights *x = &a->layers[l], *y = &b->layers[l];
        const ibex_weight *wx[] = {&x->wq, &x->wk, &x->wv, &x->wo, &x->w_gate, &x->w_up, &x->w_down};
        const ibex_weight *wy[] = {&y->wq, &y->wk, &y->wv, &y->wo, &y->w_gate, &y->w_up, &y->w_down};
        for (int i = 0; i < 7; i++)
            if (wx[i]->type != wy[i]->type || memcmp(wx[i]->data, wy[i]->data, wbytes(wx[i]))) return false;
        if (memcmp(x->attn_norm, y->attn_norm, (size_t)a->cfg.dim * 4)) return false;
        if (memcmp(x->ffn_norm, y->ffn_norm, (size_t)a->cfg.dim * 4)) return false;
    }
    return true;
}

Test(synthetic, weights_are_deterministic_across_runs_and_threads) {
    ibex_model *a = load("synthetic:tiny", IBEX_TYPE_F16, 7, 1);
    ibex_model *b = load("synthetic:tiny", IBEX_TYPE_F16, 7, 2);
    ibex_model *c = load("synthetic:tiny", IBEX_TYPE_F16, 8, 2);
    cr_assert(same_weights(a, b), "same seed, different thread counts: weights differ");
    cr_assert(!same_weights(a, c), "different seeds gave identical weights");
    ibex_model_free(a), ibex_model_free(b), ibex_model_free(c);
}

Test(synthetic, weights_have_the_documented_scale) {
    ibex_model *m = load("synthetic:small", IBEX_TYPE_F32, 1, 2);
    const ibex_weight *w = &m->layers[3].wq;
    const float *d = w->data;
    double s = 0, s2 = 0;
    int64_t n = w->n_in * w->n_out;
    for (int64_t i = 0; i < n; i++) s += d[i], s2 += (double)d[i] * d[i];
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    cr_assert_lt(fabs(mean), 1e-3);
    cr_assert_float_eq(sd, 1.0 / sqrt(768.0), 2e-3 / sqrt(768.0) * 10, "wq sd %g", sd);
    ibex_model_free(m);
}

Test(synthetic, presets_match_published_shapes) {
    const ibex_synthetic_preset *p = ibex_synthetic_find("llama2-7b");
    cr_assert(p);
    /* Llama-2-7B has 6,738,415,616 parameters (untied embeddings). */
    cr_assert_eq(ibex_model_config_n_params(&p->cfg, false), 6738415616LL);
    /* KV = 2 · 32 layers · 32 kv heads · 128 · 2 bytes = 512 KiB per token: 1 GiB at 2048. */
    cr_assert_eq(ibex_model_kv_bytes_per_token(&p->cfg, 2), 524288);
    cr_assert_eq(ibex_model_kv_bytes_per_token(&p->cfg, 2) * 2048, 1LL << 30);
    /* llama-bench prints 12.55 GiB for Llama-2-7B F16: 6,738,149,376 matrix weights · 2 B + 266,240 norm gains · 4 B. */
    cr_assert_eq(ibex_model_config_weight_bytes(&p->cfg, false, IBEX_TYPE_F16), 13477363712LL);
    const ibex_synthetic_preset *t = ibex_synthetic_find("tinyllama-1.1b");
    cr_assert_eq(t->cfg.n_kv_heads, 4);
    cr_assert_eq(ibex_model_kv_bytes_per_token(&t->cfg, 2), 2 * 22 * 4 * 64 * 2);
    cr_assert_eq(ibex_synthetic_find("tiny")->cfg.dim, 288);
    cr_assert_null(ibex_synthetic_find("huge"));
    ibex_err err = {0};
    cr_assert_null(ibex_model_load("synthetic:huge", NULL, &err));
    cr_assert(strstr(err.msg, "unknown synthetic model 'huge'") && strstr(err.msg, "tiny"), "%s", err.msg);
}

static void last_logits(const ibex_model *m, float *out) {
    ibex_err err = {0};
    ibex_backend *be = ibex_backend_cpu_new(2);
    ibex_kv_pool *pool = ibex_kv_pool_new(&m->cfg, 1, 16, &err);
    ibex_forward *f = ibex_forward_new(m, be, 16, &err);
    int32_t toks[6] = {1, 300, 301, 302, 5000, 17}, table[1] = {0};
    ibex_fwd_seq sq = {.tokens = toks, .n_tokens = 6, .block_table = table, .logits = out};
    cr_assert_eq(ibex_forward_run(f, pool, &sq, 1, &err), IBEX_OK, "%s", err.msg);
    ibex_forward_free(f), ibex_kv_pool_free(pool), ibex_backend_free(be);
}

Test(synthetic, gguf_round_trip_gives_same_model_and_logits) {
    static const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};
    for (int i = 0; i < 3; i++) {
        ibex_model *a = load("synthetic:tiny", types[i], 3, 2);
        char path[512];
        snprintf(path, sizeof path, "%s/model_rt_%s.gguf", IBEX_TEST_TMPDIR, ibex_type_name(types[i]));
        ibex_err err = {0};
        cr_assert_eq(ibex_model_write_gguf(a, path, &err), IBEX_OK, "%s", err.msg);
        ibex_model *b = ibex_model_load(path, NULL, &err);
        cr_assert(b, "%s", err.msg);
        cr_assert(same_weights(a, b), "%s: weights changed through GGUF", path);
        cr_assert_eq(a->n_params, b->n_params);
        cr_assert_eq(a->weight_bytes, b->weight_bytes);
        cr_assert_eq(b->wtype, types[i]);
        cr_assert_eq(ibex_tokenizer_n_vocab(b->tok), 32000);
        for (int32_t id = 0; id < 32000; id += 997) {
            float sa, sb;
            int32_t ta, tb;
            cr_assert_str_eq(ibex_tokenizer_piece(a->tok, id, &sa, &ta), ibex_tokenizer_piece(b->tok, id, &sb, &tb));
            cr_assert(sa == sb && ta == tb);
        }
        float *la = malloc(32000 * 4), *lb = malloc(32000 * 4);
        last_logits(a, la);
        last_logits(b, lb);
        cr_assert(memcmp(la, lb, 32000 * 4) == 0, "logits differ after the GGUF round trip");
        free(la), free(lb);
        ibex_model_free(a), ibex_model_free(b);
        remove(path);
    }
}

/* ---- bad model files: a valid tiny llama, then one thing broken ---- */

enum { D = 64, FF = 96, V = 300, L = 2, H = 4 };

typedef enum { BREAK_NONE, BREAK_ARCH, BREAK_MISSING_KEY, BREAK_SHAPE, BREAK_MISSING_TENSOR, BREAK_QUANT,
               BREAK_HEADS, BREAK_KEY_TYPE, BREAK_TIED } breakage;

static void write_llama(const char *path, breakage br) {
    static float buf[V * D * 2];
    static uint8_t q8[(V * D / 32) * 34];
    for (int i = 0; i < V * D * 2; i++) buf[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    memset(q8, 0, sizeof q8);
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_str(w, "general.architecture", br == BREAK_ARCH ? "gpt2" : "llama");
    ibex_gguf_writer_set_u32(w, "llama.context_length", 128);
    ibex_gguf_writer_set_u32(w, "llama.embedding_length", D);
    if (br != BREAK_MISSING_KEY) ibex_gguf_writer_set_u32(w, "llama.block_count", L);
    ibex_gguf_writer_set_u32(w, "llama.feed_forward_length", FF);
    if (br == BREAK_KEY_TYPE)
        ibex_gguf_writer_set_str(w, "llama.attention.head_count", "four");
    else
        ibex_gguf_writer_set_u32(w, "llama.attention.head_count", H);
    ibex_gguf_writer_set_u32(w, "llama.attention.head_count_kv", br == BREAK_HEADS ? 3 : 2);
    ibex_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    int64_t emb[2] = {D, V}, vec[1] = {D};
    ibex_gguf_writer_add_tensor(w, "token_embd.weight", IBEX_TYPE_F32, 2, emb, buf);
    ibex_gguf_writer_add_tensor(w, "output_norm.weight", IBEX_TYPE_F32, 1, vec, buf);
    if (br != BREAK_TIED) ibex_gguf_writer_add_tensor(w, "output.weight", IBEX_TYPE_F32, 2, emb, buf);
    char nm[64];
    for (int l = 0; l < L; l++) {
        int64_t q[2] = {D, D}, kv[2] = {D, D / H * 2}, up[2] = {D, FF}, down[2] = {FF, D};
        if (br == BREAK_SHAPE && l == 1) kv[1] = D;
#define ADD(suffix, type, nd, ne, data)                                                                                \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix), ibex_gguf_writer_add_tensor(w, nm, type, nd, ne, data)
        ADD("attn_norm", IBEX_TYPE_F32, 1, vec, buf);
        ADD("attn_q", br == BREAK_QUANT ? IBEX_TYPE_Q4_1 : IBEX_TYPE_F32, 2, q, br == BREAK_QUANT ? (void *)q8 : buf);
        ADD("attn_k", IBEX_TYPE_F32, 2, kv, buf);
        ADD("attn_v", IBEX_TYPE_F32, 2, kv, buf);
        ADD("attn_output", IBEX_TYPE_F32, 2, q, buf);
        ADD("ffn_norm", IBEX_TYPE_F32, 1, vec, buf);
        ADD("ffn_gate", IBEX_TYPE_F32, 2, up, buf);
        if (!(br == BREAK_MISSING_TENSOR && l == 1)) ADD("ffn_up", IBEX_TYPE_F32, 2, up, buf);
        ADD("ffn_down", IBEX_TYPE_F32, 2, down, buf);
#undef ADD
    }
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, path, &err), IBEX_OK, "%s", err.msg);
    ibex_gguf_writer_free(w);
}

static void expect_failure(breakage br, ibex_status st, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad_model_%d.gguf", IBEX_TEST_TMPDIR, (int)br);
    write_llama(path, br);
    ibex_err err = {0};
    ibex_model *m = ibex_model_load(path, NULL, &err);
    cr_assert_null(m, "breakage %d loaded", (int)br);
    cr_assert_eq(err.status, st, "breakage %d: status %s, message: %s", (int)br, ibex_status_to_string(err.status),
                 err.msg);
    cr_assert(strstr(err.msg, needle), "breakage %d: message lacks '%s': %s", (int)br, needle, err.msg);
    cr_assert(strstr(err.msg, path), "message does not name the file: %s", err.msg);
    remove(path);
}

Test(model_gguf, valid_hand_written_llama_loads) {
    char path[512];
    snprintf(path, sizeof path, "%s/good_model.gguf", IBEX_TEST_TMPDIR);
    write_llama(path, BREAK_NONE);
    ibex_err err = {0};
    ibex_model *m = ibex_model_load(path, NULL, &err);
    cr_assert(m, "%s", err.msg);
    cr_assert_eq(m->cfg.n_kv_heads, 2);
    cr_assert_eq(m->cfg.head_dim, 16);
    cr_assert_eq(m->cfg.vocab_size, V);
    cr_assert_eq(m->cfg.rope_dim, 16);
    cr_assert_float_eq(m->cfg.rope_base, 10000.0f, 1e-3);
    cr_assert(!m->tied_output);
    cr_assert_null(m->tok, "no tokenizer keys, yet a tokenizer");
    cr_assert(strstr(m->tok_error, "no tokenizer"), "%s", m->tok_error);
    ibex_model_free(m);
    /* tied output: output.weight absent */
    write_llama(path, BREAK_TIED);
    m = ibex_model_load(path, NULL, &err);
    cr_assert(m, "%s", err.msg);
    cr_assert(m->tied_output && m->output.data == m->tok_embd.data);
    ibex_model_free(m);
    remove(path);
}

Test(model_gguf, bad_files_get_clear_errors) {
    expect_failure(BREAK_ARCH, IBEX_ERR_UNSUPPORTED, "architecture 'gpt2'");
    expect_failure(BREAK_MISSING_KEY, IBEX_ERR_NOT_FOUND, "'llama.block_count' is missing");
    expect_failure(BREAK_SHAPE, IBEX_ERR_FORMAT, "'blk.1.attn_k.weight' has shape [64, 64");
    expect_failure(BREAK_MISSING_TENSOR, IBEX_ERR_NOT_FOUND, "'blk.1.ffn_up.weight' is missing");
    expect_failure(BREAK_QUANT, IBEX_ERR_UNSUPPORTED, "type Q4_1");
    expect_failure(BREAK_HEADS, IBEX_ERR_FORMAT, "not a multiple of head_count_kv");
    expect_failure(BREAK_KEY_TYPE, IBEX_ERR_FORMAT, "llama.attention.head_count");
}

Test(model_gguf, missing_file_is_an_io_error) {
    ibex_err err = {0};
    cr_assert_null(ibex_model_load(IBEX_TEST_TMPDIR "/does-not-exist.gguf", NULL, &err));
    cr_assert_eq(err.status, IBEX_ERR_IO);
    cr_assert(strstr(err.msg, "does-not-exist.gguf"), "%s", err.msg);
}
