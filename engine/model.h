/* model.h — a Llama-family model: its shape (from GGUF keys or a synthetic preset),
 * its weights (pointers into the GGUF map, or buffers the engine generated), and its
 * tokenizer.
 *
 * Sources:
 *   path/to/model.gguf   GGUF v2/v3, general.architecture = llama, mmap'd
 *   synthetic:NAME       a built-in preset (ibex_synthetic_presets()), weights drawn
 *                        deterministically from a seed at load time. */
#ifndef IBEX_MODEL_H
#define IBEX_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

typedef struct ibex_model_config {
    int32_t dim;        /* embedding_length */
    int32_t n_layers;   /* block_count */
    int32_t n_heads;    /* attention.head_count */
    int32_t n_kv_heads; /* attention.head_count_kv (= n_heads without GQA) */
    int32_t head_dim;   /* dim / n_heads */
    int32_t ffn_dim;    /* feed_forward_length */
    int32_t vocab_size;
    int32_t ctx_len;    /* context_length: the longest sequence the model supports */
    int32_t rope_dim;   /* rope.dimension_count (= head_dim by default) */
    float norm_eps;     /* attention.layer_norm_rms_epsilon */
    float rope_base;    /* rope.freq_base (10000 by default) */
} ibex_model_config;

/* A weight matrix: n_out rows of n_in elements (GGUF dims [n_in, n_out]). */
typedef struct ibex_weight {
    const void *data;
    ibex_type type;
    int64_t n_in, n_out;
} ibex_weight;

/* Bytes of w's data: n_out rows of ibex_type_row_bytes(type, n_in). */
static inline size_t ibex_weight_bytes(const ibex_weight *w) {
    return ibex_type_row_bytes(w->type, w->n_in) * (size_t)w->n_out;
}

typedef struct ibex_layer_weights {
    const float *attn_norm; /* (dim) */
    ibex_weight wq;         /* (n_heads·head_dim, dim) */
    ibex_weight wk;         /* (n_kv_heads·head_dim, dim) */
    ibex_weight wv;         /* (n_kv_heads·head_dim, dim) */
    ibex_weight wo;         /* (dim, n_heads·head_dim) */
    const float *ffn_norm;  /* (dim) */
    ibex_weight w_gate;     /* (ffn_dim, dim) */
    ibex_weight w_up;       /* (ffn_dim, dim) */
    ibex_weight w_down;     /* (dim, ffn_dim) */
} ibex_layer_weights;

typedef struct ibex_model ibex_model;

struct ibex_model {
    ibex_model_config cfg;
    char name[128];   /* general.name or the preset name */
    char source[512]; /* what was asked for: a path or synthetic:NAME */
    ibex_type wtype;  /* the dominant matrix weight type (general.file_type's meaning) */
    bool tied_output; /* output.weight absent: logits use token_embd */

    ibex_weight tok_embd;     /* (vocab, dim) */
    const float *output_norm; /* (dim) */
    ibex_weight output;       /* (vocab, dim), = tok_embd when tied */
    ibex_layer_weights *layers; /* n_layers */

    ibex_tokenizer *tok; /* NULL if the vocabulary cannot be used for text */
    char tok_error[256]; /* why tok is NULL */

    int32_t trained_ctx;  /* the context length as loaded (GGUF context_length, the preset's or
                             ibex_model_params.ctx_len); cfg.ctx_len may be raised past it by
                             ibex_model_set_ctx: RoPE has no limit, but quality there is unknown */
    int64_t n_params;     /* elements of every weight tensor */
    int64_t weight_bytes; /* bytes of every weight tensor as stored */

    /* ownership (private to model.c / synthetic.c) */
    ibex_gguf *gguf;
    void **owned;
    int n_owned, cap_owned;
};

typedef struct ibex_model_params {
    ibex_type wtype;  /* synthetic: matrix weight type (F32, F16, BF16, Q8_0, Q4_0); default F16 */
    uint64_t seed;    /* synthetic: weight seed; default 0x1bec5eed */
    int32_t ctx_len;  /* synthetic: override the preset's context length if > 0 */
    int n_threads;    /* threads for generating synthetic weights (<= 0: all cores) */
    bool shape_only;  /* synthetic: no weights at all (accounting-only runs); forward must not run */
} ibex_model_params;

ibex_model_params ibex_model_default_params(void);

/* Loads a model from a GGUF path or "synthetic:NAME". On error returns NULL, err names
 * the file (or preset) and what is wrong; nothing leaks. */
ibex_model *ibex_model_load(const char *source, const ibex_model_params *p, ibex_err *err);
void ibex_model_free(ibex_model *m);

/* Sets the context length the engine allows (cfg.ctx_len) to ctx, 1..2^24, like
 * llama.cpp's -c: above trained_ctx the timings stay valid (nothing but the request
 * checks and KV sizing reads ctx_len) but the output quality is not the model's.
 * ctx <= 0 restores trained_ctx. */
ibex_status ibex_model_set_ctx(ibex_model *m, int32_t ctx, ibex_err *err);

/* Whether cfg.ctx_len is past the context the model was loaded with. */
static inline bool ibex_model_beyond_trained(const ibex_model *m) {
    return m->trained_ctx > 0 && m->cfg.ctx_len > m->trained_ctx;
}

/* Writes m as a GGUF v3 file (llama architecture, tokenizer included). */
ibex_status ibex_model_write_gguf(const ibex_model *m, const char *path, ibex_err *err);

/* What ibex_model_quantize_gguf did. */
typedef struct ibex_quantize_stats {
    int n_quantized;   /* tensors converted */
    int n_kept;        /* tensors copied as they were (vectors, rows not whole blocks, already the type) */
    int64_t bytes_in;  /* tensor data bytes read */
    int64_t bytes_out; /* tensor data bytes written */
} ibex_quantize_stats;

/* Writes a copy of the GGUF file in to out with every matrix named "*.weight" whose rows
 * are whole 32-element blocks quantized to qt (Q8_0 or Q4_0) by ggml's round-to-nearest
 * formulas, as `llama-quantize --pure` does: token_embd and output included, 1-D tensors
 * (norm gains) kept in their type. Every metadata pair is copied; general.file_type
 * and general.quantization_version (2) are set. Source matrices may be F32, F16, BF16 or
 * the other block type. st (optional) receives counts. On error out is not created. */
ibex_status ibex_model_quantize_gguf(const char *in, const char *out, ibex_type qt, ibex_quantize_stats *st,
                                     ibex_err *err);

/* KV-cache bytes per token for element size elem_bytes:
 * 2 (K and V) · n_layers · n_kv_heads · head_dim · elem_bytes. */
int64_t ibex_model_kv_bytes_per_token(const ibex_model_config *c, int elem_bytes);

/* Parameter count of a config (embeddings, every layer, norms, output unless tied). */
int64_t ibex_model_config_n_params(const ibex_model_config *c, bool tied_output);

/* Bytes of all weights if every matrix (embeddings included) were stored as type t
 * and the norm gains as F32, as llama.cpp's converters do. */
int64_t ibex_model_config_weight_bytes(const ibex_model_config *c, bool tied_output, ibex_type t);

/* ---- synthetic presets ---- */

typedef struct ibex_synthetic_preset {
    const char *name;
    const char *like; /* the real model whose shape it copies */
    ibex_model_config cfg;
} ibex_synthetic_preset;

/* The preset table, terminated by an entry with name == NULL. */
const ibex_synthetic_preset *ibex_synthetic_presets(void);
const ibex_synthetic_preset *ibex_synthetic_find(const char *name);

/* Internal: build a synthetic model into m (called by ibex_model_load). */
ibex_status ibex_synthetic_build(ibex_model *m, const ibex_synthetic_preset *pr,
                                 const ibex_model_params *p, ibex_err *err);
/* Internal: remember a buffer m owns (freed by ibex_model_free with ibex_free). */
ibex_status ibex_model_own(ibex_model *m, void *buf, ibex_err *err);

#endif
