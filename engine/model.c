/* model.c — loading a Llama-family model from GGUF (keys, tensors, shape checks,
 * tokenizer) and writing any loaded model back out as GGUF. */
#include "engine/model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"

ibex_model_params ibex_model_default_params(void) {
    return (ibex_model_params){.wtype = IBEX_TYPE_F16, .seed = 0x1bec5eed, .ctx_len = 0, .n_threads = 0};
}

int64_t ibex_model_kv_bytes_per_token(const ibex_model_config *c, int elem_bytes) {
    return 2 * (int64_t)c->n_layers * c->n_kv_heads * c->head_dim * elem_bytes;
}

int64_t ibex_model_config_n_params(const ibex_model_config *c, bool tied_output) {
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t per_layer = d * q + 2 * d * kv + q * d + 3 * d * (int64_t)c->ffn_dim + 2 * d;
    return (int64_t)c->vocab_size * d * (tied_output ? 1 : 2) + c->n_layers * per_layer + d;
}

int64_t ibex_model_config_weight_bytes(const ibex_model_config *c, bool tied_output, ibex_type t) {
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t f = c->ffn_dim;
    int64_t rows_d = (int64_t)ibex_type_row_bytes(t, d), rows_q = (int64_t)ibex_type_row_bytes(t, q);
    int64_t rows_f = (int64_t)ibex_type_row_bytes(t, f);
    int64_t layer = rows_d * (q + 2 * kv) + rows_q * d + rows_d * 2 * f + rows_f * d + 2 * d * 4;
    return rows_d * c->vocab_size * (tied_output ? 1 : 2) + c->n_layers * layer + d * 4;
}

ibex_status ibex_model_own(ibex_model *m, void *buf, ibex_err *err) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) {
            ibex_free(buf);
            return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory tracking model buffers");
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = buf;
    return IBEX_OK;
}

void ibex_model_free(ibex_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) ibex_free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    ibex_tokenizer_free(m->tok);
    ibex_gguf_close(m->gguf);
    free(m);
}

/* ---- GGUF loading ---- */

/* Finds tensor name with the expected ggml dims [ne0, ne1] (ne1 = 1 for vectors). */
static ibex_status find_tensor(ibex_model *m, const char *name, int64_t ne0, int64_t ne1,
                               bool required, const ibex_gguf_tensor **out, ibex_err *err) {
    const char *path = ibex_gguf_path(m->gguf);
    const ibex_gguf_tensor *t = ibex_gguf_find_tensor(m->gguf, name);
    *out = t;
    if (!t) {
        if (!required) return IBEX_OK;
        return ibex_err_set(err, IBEX_ERR_NOT_FOUND, "%s: required tensor '%s' is missing", path, name);
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return ibex_err_set(err, IBEX_ERR_FORMAT,
                            "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                            "], expected [%" PRId64 ", %" PRId64 "] from the model's metadata",
                            path, name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], ne0, ne1);
    m->n_params += t->ne[0] * t->ne[1];
    m->weight_bytes += (int64_t)t->nbytes;
    return IBEX_OK;
}

static ibex_status load_matrix(ibex_model *m, const char *name, int64_t n_in, int64_t n_out,
                               ibex_weight *w, ibex_err *err) {
    const ibex_gguf_tensor *t;
    ibex_status s = find_tensor(m, name, n_in, n_out, true, &t, err);
    if (s) return s;
    const ibex_type_traits *tr = ibex_type_traits_get(t->type);
    if (!tr->compute)
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                            "%s: tensor '%s' has type %s, which ibex cannot compute with yet "
                            "(supported: F32, F16, BF16, Q8_0, Q4_0; requantize with "
                            "`ibex model quantize IN OUT q8_0|q4_0` from an F16/F32 file)",
                            ibex_gguf_path(m->gguf), name, tr->name);
    *w = (ibex_weight){.data = t->data, .type = t->type, .n_in = n_in, .n_out = n_out};
    return IBEX_OK;
}

/* Norm gains are used as F32 whatever their stored type. */
static ibex_status load_vector(ibex_model *m, const char *name, int64_t n, const float **out,
                               ibex_err *err) {
    const ibex_gguf_tensor *t;
    ibex_status s = find_tensor(m, name, n, 1, true, &t, err);
    if (s) return s;
    if (t->type == IBEX_TYPE_F32 && ((uintptr_t)t->data % 4) == 0) {
        *out = t->data;
        return IBEX_OK;
    }
    float *buf = ibex_alloc(IBEX_MEM_WEIGHTS, (size_t)n * sizeof(float), 0);
    if (!buf) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory converting '%s'", name);
    if (!ibex_row_to_f32(buf, t->data, t->type, n)) {
        ibex_free(buf);
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, cannot convert to F32",
                            ibex_gguf_path(m->gguf), name, ibex_type_name(t->type));
    }
    *out = buf;
    return ibex_model_own(m, buf, err);
}

/* Reads a required (or defaulted) positive integer key "llama.<suffix>". */
static ibex_status get_int_key(const ibex_gguf *g, const char *arch, const char *suffix, bool required,
                               int64_t dflt, int64_t max, int32_t *out, ibex_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = dflt;
    ibex_status s = ibex_gguf_get_i64(g, key, &v, err);
    if (s == IBEX_ERR_NOT_FOUND) {
        if (required)
            return ibex_err_set(err, IBEX_ERR_NOT_FOUND, "%s: required key '%s' is missing",
                                ibex_gguf_path(g), key);
        v = dflt;
    } else if (s) {
        return s;
    }
    if (v <= 0 || v > max)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: key '%s' = %" PRId64 " is out of range (1..%" PRId64 ")",
                            ibex_gguf_path(g), key, v, max);
    *out = (int32_t)v;
    return IBEX_OK;
}

static ibex_status get_float_key(const ibex_gguf *g, const char *arch, const char *suffix, bool required,
                                 float dflt, float *out, ibex_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float v = dflt;
    ibex_status s = ibex_gguf_get_f32(g, key, &v, err);
    if (s == IBEX_ERR_NOT_FOUND) {
        if (required)
            return ibex_err_set(err, IBEX_ERR_NOT_FOUND, "%s: required key '%s' is missing",
                                ibex_gguf_path(g), key);
        v = dflt;
    } else if (s) {
        return s;
    }
    if (!(v > 0))
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: key '%s' = %g must be positive", ibex_gguf_path(g), key, v);
    *out = v;
    return IBEX_OK;
}

/* Builds the tokenizer from tokenizer.ggml.* keys. A file without a usable vocabulary
 * still loads (token ids work); m->tok_error says why text does not. */
static ibex_status load_tokenizer(ibex_model *m, ibex_err *err) {
    const ibex_gguf *g = m->gguf;
    const char *path = ibex_gguf_path(g);
    char model[64] = "";
    ibex_status s = ibex_gguf_get_str(g, "tokenizer.ggml.model", model, sizeof model, err);
    if (s == IBEX_ERR_NOT_FOUND) {
        snprintf(m->tok_error, sizeof m->tok_error, "%s has no tokenizer (tokenizer.ggml.model is absent)", path);
        return IBEX_OK;
    }
    if (s) return s;
    if (strcmp(model, "llama") != 0) {
        snprintf(m->tok_error, sizeof m->tok_error,
                 "%s: tokenizer model '%s' is not supported yet (only 'llama' SentencePiece); use --prompt-ids",
                 path, model);
        return IBEX_OK;
    }
    const ibex_gguf_value *toks, *scores = NULL, *types = NULL;
    if ((s = ibex_gguf_get_arr(g, "tokenizer.ggml.tokens", IBEX_GGUF_STRING, &toks, err))) {
        if (s == IBEX_ERR_NOT_FOUND)
            return ibex_err_set(err, s, "%s: required key 'tokenizer.ggml.tokens' is missing", path);
        return s;
    }
    s = ibex_gguf_get_arr(g, "tokenizer.ggml.scores", IBEX_GGUF_F32, &scores, err);
    if (s && s != IBEX_ERR_NOT_FOUND) return s;
    s = ibex_gguf_get_arr(g, "tokenizer.ggml.token_type", IBEX_GGUF_VTYPE_COUNT, &types, err);
    if (s && s != IBEX_ERR_NOT_FOUND) return s;
    uint64_t n = toks->arr.n;
    if (n == 0 || n > INT32_MAX)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %" PRIu64 " entries", path, n);
    if (scores && scores->arr.n != n)
        return ibex_err_set(err, IBEX_ERR_FORMAT,
                            "%s: tokenizer.ggml.scores has %" PRIu64 " entries but tokens has %" PRIu64, path,
                            scores->arr.n, n);
    if (types && types->arr.n != n)
        return ibex_err_set(err, IBEX_ERR_FORMAT,
                            "%s: tokenizer.ggml.token_type has %" PRIu64 " entries but tokens has %" PRIu64, path,
                            types->arr.n, n);
    if (types && (types->arr.type == IBEX_GGUF_STRING || types->arr.type == IBEX_GGUF_ARRAY ||
                  types->arr.type == IBEX_GGUF_F32 || types->arr.type == IBEX_GGUF_F64))
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be an integer array", path);

    /* NUL-terminated copies of the pieces in one block. */
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += toks->arr.strs[i].len + 1;
    char *text = malloc(total);
    char **ptrs = malloc(n * sizeof *ptrs);
    float *sc = malloc(n * sizeof *sc);
    int32_t *ty = malloc(n * sizeof *ty);
    if (!text || !ptrs || !sc || !ty) {
        free(text), free(ptrs), free(sc), free(ty);
        return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory reading the vocabulary of %s", path);
    }
    char *p = text;
    for (uint64_t i = 0; i < n; i++) {
        ptrs[i] = p;
        memcpy(p, toks->arr.strs[i].data, toks->arr.strs[i].len);
        p[toks->arr.strs[i].len] = 0;
        p += toks->arr.strs[i].len + 1;
        sc[i] = scores ? (float)ibex_gguf_arr_f64(scores, i) : 0.0f;
        ty[i] = types ? (int32_t)ibex_gguf_arr_i64(types, i) : IBEX_TOKEN_NORMAL;
    }
    int64_t bos = 1, eos = 2, unk = 0;
    bool add_bos = true;
    ibex_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &bos, NULL);
    ibex_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &eos, NULL);
    ibex_gguf_get_i64(g, "tokenizer.ggml.unknown_token_id", &unk, NULL);
    ibex_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, NULL);
    if (bos >= (int64_t)n) bos = -1;
    if (eos >= (int64_t)n) eos = -1;
    if (unk >= (int64_t)n) unk = -1;
    ibex_err terr = {0};
    m->tok = ibex_tokenizer_new((const char *const *)ptrs, sc, ty, (int32_t)n, (int32_t)bos, (int32_t)eos,
                                (int32_t)unk, add_bos, &terr);
    free(text), free(ptrs), free(sc), free(ty);
    if (!m->tok) return ibex_err_set(err, terr.status, "%s: bad vocabulary: %s", path, terr.msg);
    return IBEX_OK;
}

static ibex_status load_gguf(ibex_model *m, const char *path, ibex_err *err) {
    m->gguf = ibex_gguf_open(path, err);
    if (!m->gguf) return err ? err->status : IBEX_ERR_IO;
    const ibex_gguf *g = m->gguf;
    ibex_status s;
    char arch[64] = "";
    if ((s = ibex_gguf_get_str(g, "general.architecture", arch, sizeof arch, err))) {
        if (s == IBEX_ERR_NOT_FOUND)
            return ibex_err_set(err, s, "%s: required key 'general.architecture' is missing", path);
        return s;
    }
    if (strcmp(arch, "llama") != 0)
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                            "%s: architecture '%s' is not supported (ibex runs the 'llama' family)", path, arch);
    ibex_model_config *c = &m->cfg;
    if ((s = get_int_key(g, arch, "embedding_length", true, 0, 1 << 20, &c->dim, err)) ||
        (s = get_int_key(g, arch, "block_count", true, 0, 4096, &c->n_layers, err)) ||
        (s = get_int_key(g, arch, "feed_forward_length", true, 0, 1 << 22, &c->ffn_dim, err)) ||
        (s = get_int_key(g, arch, "attention.head_count", true, 0, 4096, &c->n_heads, err)) ||
        (s = get_int_key(g, arch, "context_length", true, 0, 1 << 24, &c->ctx_len, err)) ||
        (s = get_int_key(g, arch, "attention.head_count_kv", false, c->n_heads, 4096, &c->n_kv_heads, err)) ||
        (s = get_float_key(g, arch, "attention.layer_norm_rms_epsilon", true, 0, &c->norm_eps, err)) ||
        (s = get_float_key(g, arch, "rope.freq_base", false, 10000.0f, &c->rope_base, err)))
        return s;
    if (c->dim % c->n_heads != 0)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d",
                            path, c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads != 0)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", path,
                            c->n_heads, c->n_kv_heads);
    c->head_dim = c->dim / c->n_heads;
    if ((s = get_int_key(g, arch, "rope.dimension_count", false, c->head_dim, c->head_dim, &c->rope_dim, err)))
        return s;
    if (c->rope_dim % 2)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: rope.dimension_count %d must be even", path, c->rope_dim);
    snprintf(m->name, sizeof m->name, "%s", path);
    ibex_gguf_get_str(g, "general.name", m->name, sizeof m->name, NULL);

    const ibex_gguf_tensor *emb = ibex_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return ibex_err_set(err, IBEX_ERR_NOT_FOUND, "%s: required tensor 'token_embd.weight' is missing", path);
    if (emb->ne[1] <= 0 || emb->ne[1] > INT32_MAX)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: token_embd.weight has an impossible vocabulary size", path);
    c->vocab_size = (int32_t)emb->ne[1];
    int64_t vocab_key = 0;
    char key[160];
    snprintf(key, sizeof key, "%s.vocab_size", arch);
    if (ibex_gguf_get_i64(g, key, &vocab_key, NULL) == IBEX_OK && vocab_key != c->vocab_size)
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: %s = %" PRId64 " but token_embd.weight has %d rows", path, key,
                            vocab_key, c->vocab_size);

    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    const ibex_gguf_tensor *t;
    if ((s = find_tensor(m, "token_embd.weight", d, c->vocab_size, true, &t, err))) return s;
    /* The embedding lookup dequantizes one row per token (ibex_row_to_f32), so the table
     * may be any type ibex computes with, quantized ones included. */
    if (!ibex_type_traits_get(t->type)->compute)
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                            "%s: tensor 'token_embd.weight' has type %s, which ibex cannot read "
                            "(supported: F32, F16, BF16, Q8_0, Q4_0)",
                            path, ibex_type_name(t->type));
    m->tok_embd = (ibex_weight){.data = t->data, .type = t->type, .n_in = d, .n_out = c->vocab_size};
    m->wtype = t->type;
    if ((s = load_vector(m, "output_norm.weight", d, &m->output_norm, err))) return s;
    if (ibex_gguf_find_tensor(g, "output.weight")) {
        if ((s = load_matrix(m, "output.weight", d, c->vocab_size, &m->output, err))) return s;
    } else {
        m->tied_output = true;
        m->output = m->tok_embd;
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        ibex_layer_weights *L = &m->layers[l];
        char nm[96];
#define IBEX_TN(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix), nm)
        if ((s = load_vector(m, IBEX_TN("attn_norm"), d, &L->attn_norm, err)) ||
            (s = load_matrix(m, IBEX_TN("attn_q"), d, q, &L->wq, err)) ||
            (s = load_matrix(m, IBEX_TN("attn_k"), d, kv, &L->wk, err)) ||
            (s = load_matrix(m, IBEX_TN("attn_v"), d, kv, &L->wv, err)) ||
            (s = load_matrix(m, IBEX_TN("attn_output"), q, d, &L->wo, err)) ||
            (s = load_vector(m, IBEX_TN("ffn_norm"), d, &L->ffn_norm, err)) ||
            (s = load_matrix(m, IBEX_TN("ffn_gate"), d, c->ffn_dim, &L->w_gate, err)) ||
            (s = load_matrix(m, IBEX_TN("ffn_up"), d, c->ffn_dim, &L->w_up, err)) ||
            (s = load_matrix(m, IBEX_TN("ffn_down"), c->ffn_dim, d, &L->w_down, err)))
            return s;
#undef IBEX_TN
        if (l == 0) m->wtype = L->wq.type;
    }
    return load_tokenizer(m, err);
}

ibex_model *ibex_model_load(const char *source, const ibex_model_params *p, ibex_err *err) {
    ibex_model_params dp = ibex_model_default_params();
    if (!p) p = &dp;
    if (!source || !*source) {
        ibex_err_set(err, IBEX_ERR_INVALID, "no model given");
        return NULL;
    }
    ibex_model *m = calloc(1, sizeof *m);
    if (!m) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(m->source, sizeof m->source, "%s", source);
    ibex_status s;
    if (strncmp(source, "synthetic:", 10) == 0) {
        const ibex_synthetic_preset *pr = ibex_synthetic_find(source + 10);
        if (!pr) {
            char names[512] = "";
            for (const ibex_synthetic_preset *q = ibex_synthetic_presets(); q->name; q++) {
                strncat(names, q->name, sizeof names - strlen(names) - 1);
                if (q[1].name) strncat(names, ", ", sizeof names - strlen(names) - 1);
            }
            ibex_err_set(err, IBEX_ERR_NOT_FOUND, "unknown synthetic model '%s' (presets: %s)", source + 10, names);
            ibex_model_free(m);
            return NULL;
        }
        s = ibex_synthetic_build(m, pr, p, err);
    } else {
        s = load_gguf(m, source, err);
    }
    if (s) {
        ibex_model_free(m);
        return NULL;
    }
    m->trained_ctx = m->cfg.ctx_len;
    return m;
}

ibex_status ibex_model_set_ctx(ibex_model *m, int32_t ctx, ibex_err *err) {
    if (ctx > (1 << 24))
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: context length %d is over the limit of %d tokens", m->source,
                            (int)ctx, 1 << 24);
    m->cfg.ctx_len = ctx > 0 ? ctx : m->trained_ctx;
    return IBEX_OK;
}

/* ---- GGUF writing ---- */

/* general.file_type values (llama.cpp's llama_ftype). */
static uint32_t file_type_of(ibex_type t) {
    switch (t) {
    case IBEX_TYPE_F32: return 0;
    case IBEX_TYPE_F16: return 1;
    case IBEX_TYPE_Q4_0: return 2;
    case IBEX_TYPE_Q8_0: return 7;
    case IBEX_TYPE_BF16: return 32;
    default: return 0;
    }
}

static void add_matrix(ibex_gguf_writer *w, const char *name, const ibex_weight *wt) {
    int64_t ne[2] = {wt->n_in, wt->n_out};
    ibex_gguf_writer_add_tensor(w, name, wt->type, 2, ne, wt->data);
}

static void add_vector(ibex_gguf_writer *w, const char *name, const float *v, int64_t n) {
    ibex_gguf_writer_add_tensor(w, name, IBEX_TYPE_F32, 1, &n, v);
}

ibex_status ibex_model_write_gguf(const ibex_model *m, const char *path, ibex_err *err) {
    const ibex_model_config *c = &m->cfg;
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    if (!w) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    ibex_gguf_writer_set_str(w, "general.architecture", "llama");
    ibex_gguf_writer_set_str(w, "general.name", m->name);
    ibex_gguf_writer_set_u32(w, "general.file_type", file_type_of(m->wtype));
    ibex_gguf_writer_set_u32(w, "general.alignment", IBEX_GGUF_DEFAULT_ALIGNMENT);
    ibex_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->ctx_len);
    ibex_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    ibex_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    ibex_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn_dim);
    ibex_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    ibex_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    ibex_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    ibex_gguf_writer_set_f32(w, "llama.rope.freq_base", c->rope_base);
    ibex_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->rope_dim);
    ibex_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);

    const char **pieces = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    ibex_status s = IBEX_OK;
    if (m->tok) {
        int32_t n = ibex_tokenizer_n_vocab(m->tok);
        pieces = calloc((size_t)n, sizeof *pieces);
        scores = malloc((size_t)n * sizeof *scores);
        types = malloc((size_t)n * sizeof *types);
        if (!pieces || !scores || !types) {
            s = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int32_t i = 0; i < n; i++) {
            pieces[i] = ibex_tokenizer_piece(m->tok, i, &scores[i], &types[i]);
        }
        ibex_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
        ibex_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", pieces, (uint64_t)n);
        ibex_gguf_writer_set_arr(w, "tokenizer.ggml.scores", IBEX_GGUF_F32, scores, (uint64_t)n);
        ibex_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", IBEX_GGUF_I32, types, (uint64_t)n);
        if (ibex_tokenizer_bos(m->tok) >= 0)
            ibex_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)ibex_tokenizer_bos(m->tok));
        if (ibex_tokenizer_eos(m->tok) >= 0)
            ibex_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)ibex_tokenizer_eos(m->tok));
        ibex_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
        ibex_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", ibex_tokenizer_add_bos(m->tok));
    }

    add_matrix(w, "token_embd.weight", &m->tok_embd);
    add_vector(w, "output_norm.weight", m->output_norm, c->dim);
    if (!m->tied_output) add_matrix(w, "output.weight", &m->output);
    for (int l = 0; l < c->n_layers; l++) {
        const ibex_layer_weights *L = &m->layers[l];
        char nm[96];
#define IBEX_TN(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix), nm)
        add_vector(w, IBEX_TN("attn_norm"), L->attn_norm, c->dim);
        add_matrix(w, IBEX_TN("attn_q"), &L->wq);
        add_matrix(w, IBEX_TN("attn_k"), &L->wk);
        add_matrix(w, IBEX_TN("attn_v"), &L->wv);
        add_matrix(w, IBEX_TN("attn_output"), &L->wo);
        add_vector(w, IBEX_TN("ffn_norm"), L->ffn_norm, c->dim);
        add_matrix(w, IBEX_TN("ffn_gate"), &L->w_gate);
        add_matrix(w, IBEX_TN("ffn_up"), &L->w_up);
        add_matrix(w, IBEX_TN("ffn_down"), &L->w_down);
#undef IBEX_TN
    }
    s = ibex_gguf_writer_write(w, path, err);
done:
    free(pieces), free(scores), free(types);
    ibex_gguf_writer_free(w);
    return s;
}

/* ---- quantizing a GGUF file (`ibex model quantize`) ---- */

/* Should tensor t become type qt? llama-quantize's --pure rule: every matrix named
 * "*.weight" (token_embd and output included) whose rows are whole blocks; vectors
 * (norm gains) never. */
static bool quantize_this(const ibex_gguf_tensor *t, ibex_type qt) {
    const size_t n = strlen(t->name);
    if (t->n_dims < 2 || n < 7 || strcmp(t->name + n - 7, ".weight") != 0) return false;
    if (t->ne[0] % ibex_type_traits_get(qt)->block_size != 0) return false;
    return t->type != qt;
}

/* Copies metadata pair i of g into w verbatim. */
static ibex_status copy_kv(const ibex_gguf *g, int64_t i, ibex_gguf_writer *w, ibex_err *err) {
    const char *key = ibex_gguf_key_at(g, i);
    const ibex_gguf_value *v = ibex_gguf_value_at(g, i);
    switch (v->type) {
    case IBEX_GGUF_U8: ibex_gguf_writer_set_u8(w, key, (uint8_t)v->u); break;
    case IBEX_GGUF_I8: ibex_gguf_writer_set_i8(w, key, (int8_t)v->i); break;
    case IBEX_GGUF_U16: ibex_gguf_writer_set_u16(w, key, (uint16_t)v->u); break;
    case IBEX_GGUF_I16: ibex_gguf_writer_set_i16(w, key, (int16_t)v->i); break;
    case IBEX_GGUF_U32: ibex_gguf_writer_set_u32(w, key, (uint32_t)v->u); break;
    case IBEX_GGUF_I32: ibex_gguf_writer_set_i32(w, key, (int32_t)v->i); break;
    case IBEX_GGUF_U64: ibex_gguf_writer_set_u64(w, key, v->u); break;
    case IBEX_GGUF_I64: ibex_gguf_writer_set_i64(w, key, v->i); break;
    case IBEX_GGUF_F32: ibex_gguf_writer_set_f32(w, key, (float)v->f); break;
    case IBEX_GGUF_F64: ibex_gguf_writer_set_f64(w, key, v->f); break;
    case IBEX_GGUF_BOOL: ibex_gguf_writer_set_bool(w, key, v->u != 0); break;
    case IBEX_GGUF_STRING: {
        char *s = malloc(v->s.len + 1);
        if (!s) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory copying key '%s'", key);
        memcpy(s, v->s.data, v->s.len);
        s[v->s.len] = 0;
        ibex_gguf_writer_set_str(w, key, s);
        free(s);
        break;
    }
    case IBEX_GGUF_ARRAY:
        if (v->arr.type == IBEX_GGUF_STRING) {
            char **strs = calloc(v->arr.n ? v->arr.n : 1, sizeof *strs);
            ibex_status s = strs ? IBEX_OK : IBEX_ERR_NOMEM;
            for (uint64_t k = 0; k < v->arr.n && !s; k++) {
                if (!(strs[k] = malloc(v->arr.strs[k].len + 1))) {
                    s = IBEX_ERR_NOMEM;
                    break;
                }
                memcpy(strs[k], v->arr.strs[k].data, v->arr.strs[k].len);
                strs[k][v->arr.strs[k].len] = 0;
            }
            if (!s) ibex_gguf_writer_set_arr_str(w, key, (const char *const *)strs, v->arr.n);
            for (uint64_t k = 0; strs && k < v->arr.n; k++) free(strs[k]);
            free(strs);
            if (s) return ibex_err_set(err, s, "out of memory copying key '%s'", key);
        } else if (v->arr.type == IBEX_GGUF_ARRAY) {
            return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s: key '%s' is an array of arrays, which ibex cannot copy",
                                ibex_gguf_path(g), key);
        } else {
            ibex_gguf_writer_set_arr(w, key, v->arr.type, v->arr.data, v->arr.n);
        }
        break;
    default:
        return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: key '%s' has value type %d", ibex_gguf_path(g), key,
                            (int)v->type);
    }
    return IBEX_OK;
}

/* Quantizes the rows of t into dst (rows of ibex_type_row_bytes(qt, ne0) bytes). */
static bool quantize_tensor(void *dst, const ibex_gguf_tensor *t, ibex_type qt) {
    const int64_t n_in = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t rb_in = ibex_type_row_bytes(t->type, n_in), rb_out = ibex_type_row_bytes(qt, n_in);
    bool ok = true;
#pragma omp parallel reduction(&& : ok) if (rows * n_in > 65536)
    {
        float *buf = malloc((size_t)n_in * sizeof *buf);
        if (!buf) ok = false;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!buf) continue;
            ok = ok && ibex_row_to_f32(buf, (const char *)t->data + (size_t)r * rb_in, t->type, n_in) &&
                 ibex_row_from_f32((char *)dst + (size_t)r * rb_out, buf, qt, n_in);
        }
        free(buf);
    }
    return ok;
}

ibex_status ibex_model_quantize_gguf(const char *in, const char *out, ibex_type qt, ibex_quantize_stats *st,
                                     ibex_err *err) {
    if (qt != IBEX_TYPE_Q8_0 && qt != IBEX_TYPE_Q4_0)
        return ibex_err_set(err, IBEX_ERR_INVALID, "cannot quantize to %s (ibex quantizes to Q8_0 or Q4_0)",
                            ibex_type_name(qt));
    ibex_gguf *g = ibex_gguf_open(in, err);
    if (!g) return err ? err->status : IBEX_ERR_IO;
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    const int64_t nt = ibex_gguf_n_tensors(g);
    void **bufs = calloc((size_t)(nt > 0 ? nt : 1), sizeof *bufs);
    ibex_quantize_stats s0 = {0};
    ibex_status s = IBEX_OK;
    if (!w || !bufs) {
        s = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < ibex_gguf_n_kv(g) && !s; i++) s = copy_kv(g, i, w, err);
    if (s) goto done;
    ibex_gguf_writer_set_u32(w, "general.file_type", file_type_of(qt));
    ibex_gguf_writer_set_u32(w, "general.quantization_version", 2); /* ggml's GGML_QNT_VERSION */
    for (int64_t i = 0; i < nt; i++) {
        const ibex_gguf_tensor *t = ibex_gguf_tensor_at(g, i);
        s0.bytes_in += (int64_t)t->nbytes;
        if (!quantize_this(t, qt)) {
            ibex_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
            s0.n_kept++;
            s0.bytes_out += (int64_t)t->nbytes;
            continue;
        }
        const size_t bytes = ibex_type_row_bytes(qt, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        if (!(bufs[i] = malloc(bytes))) {
            s = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory quantizing '%s' (%zu bytes)", t->name, bytes);
            goto done;
        }
        if (!quantize_tensor(bufs[i], t, qt)) {
            s = ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which ibex cannot dequantize",
                             in, t->name, ibex_type_name(t->type));
            goto done;
        }
        ibex_gguf_writer_add_tensor(w, t->name, qt, t->n_dims, t->ne, bufs[i]);
        s0.n_quantized++;
        s0.bytes_out += (int64_t)bytes;
    }
    s = ibex_gguf_writer_write(w, out, err);
done:
    if (st) *st = s0;
    for (int64_t i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    ibex_gguf_writer_free(w);
    ibex_gguf_close(g);
    return s;
}
