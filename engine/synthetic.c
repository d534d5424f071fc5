/* synthetic.c — built-in model presets with real shapes and deterministic weights,
 * so every shape from stories15M to Llama-2-70B can be run or simulated with no file.
 *
 * Weights: element i of a tensor is a counter-based hash of (seed, tensor name, i)
 * mapped to a uniform value of the chosen standard deviation, so the weights are
 * identical for every thread count and every run, and any tensor can be generated
 * independently. Scales keep activations finite and logits informative:
 *   token_embd  σ = 1               (rows are the residual stream's input)
 *   wq, wk      σ = 1/√dim           → q·k/√head_dim has σ ≈ 1 (attention is neither
 *                                     uniform nor one-hot)
 *   wv, wo      σ = 1/√dim
 *   gate, up    σ = 1/√dim;  down σ = 1/√ffn_dim
 *   output      σ = 1.5/√dim         → logits σ ≈ 1.5 over the vocabulary
 *   norm gains  1 ± 0.1
 * With --dtype q8_0 / q4_0 each matrix row is drawn in F32 exactly as above and then
 * quantized with ggml's round-to-nearest formulas (ibex_row_from_f32), so a quantized
 * synthetic model is the F32 one run through `llama-quantize --pure`; norms stay F32.
 *
 * Vocabulary: a SentencePiece-style table that round-trips any byte string:
 *   0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF> (byte fallback), then "▁" and the
 *   printable ASCII characters, then pseudo-syllable pieces ("▁ka", "ron", ...) until
 *   the preset's vocabulary size is filled, so generated text looks like words. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/alloc.h"
#include "engine/model.h"

/* dims: dim, layers, heads, kv heads, head_dim, ffn, vocab, ctx, rope_dim, eps, rope base */
static const ibex_synthetic_preset k_presets[] = {
    {"tiny", "stories15M", {288, 6, 6, 6, 48, 768, 32000, 2048, 48, 1e-5f, 10000.0f}},
    {"small", "stories110M", {768, 12, 12, 12, 64, 2048, 32000, 2048, 64, 1e-5f, 10000.0f}},
    {"tinyllama-1.1b", "TinyLlama-1.1B", {2048, 22, 32, 4, 64, 5632, 32000, 2048, 64, 1e-5f, 10000.0f}},
    {"llama2-7b", "Llama-2-7B", {4096, 32, 32, 32, 128, 11008, 32000, 4096, 128, 1e-5f, 10000.0f}},
    {"llama2-13b", "Llama-2-13B", {5120, 40, 40, 40, 128, 13824, 32000, 4096, 128, 1e-5f, 10000.0f}},
    {"llama2-70b", "Llama-2-70B", {8192, 80, 64, 8, 128, 28672, 32000, 4096, 128, 1e-5f, 10000.0f}},
    {"llama3-8b", "Llama-3-8B", {4096, 32, 32, 8, 128, 14336, 128256, 8192, 128, 1e-5f, 500000.0f}},
    {"mistral-7b", "Mistral-7B-v0.1", {4096, 32, 32, 8, 128, 14336, 32000, 32768, 128, 1e-5f, 10000.0f}},
    {NULL, NULL, {0}},
};

const ibex_synthetic_preset *ibex_synthetic_presets(void) { return k_presets; }

const ibex_synthetic_preset *ibex_synthetic_find(const char *name) {
    for (const ibex_synthetic_preset *p = k_presets; p->name; p++)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

static inline uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t name_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then mixed with the seed */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return mix64(h ^ mix64(seed));
}

/* Uniform in [−1, 1) from 32 random bits. */
static inline float unit(uint32_t bits) { return (float)bits * (2.0f / 4294967296.0f) - 1.0f; }

/* Fills rows·cols elements of type t with uniform values of standard deviation sigma
 * around mean. */
static void fill(void *dst, ibex_type t, int64_t rows, int64_t cols, uint64_t key, float mean, float sigma,
                 int n_threads) {
    const float a = sigma * 1.7320508f; /* uniform on [−a, a] has σ = a/√3 */
    size_t row_bytes = ibex_type_row_bytes(t, cols);
#pragma omp parallel num_threads(n_threads) if (rows * cols > 65536)
    {
        float *buf = malloc((size_t)cols * sizeof *buf);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!buf) continue;
            uint64_t base = (uint64_t)(r * cols);
            for (int64_t c = 0; c < cols; c += 2) {
                uint64_t h = mix64(key ^ ((base + (uint64_t)c) * 0xd1342543de82ef95ull));
                buf[c] = mean + a * unit((uint32_t)h);
                if (c + 1 < cols) buf[c + 1] = mean + a * unit((uint32_t)(h >> 32));
            }
            ibex_row_from_f32((char *)dst + (size_t)r * row_bytes, buf, t, cols);
        }
        free(buf);
    }
}

static ibex_status gen_matrix(ibex_model *m, const char *name, ibex_type t, int64_t n_in, int64_t n_out,
                              float sigma, uint64_t seed, int n_threads, ibex_weight *w, ibex_err *err) {
    size_t bytes = ibex_type_row_bytes(t, n_in) * (size_t)n_out;
    void *buf = ibex_alloc(IBEX_MEM_WEIGHTS, bytes, 0);
    if (!buf)
        return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory generating %s (%zu bytes) of %s", name, bytes,
                            m->source);
    fill(buf, t, n_out, n_in, name_key(seed, name), 0.0f, sigma, n_threads);
    *w = (ibex_weight){.data = buf, .type = t, .n_in = n_in, .n_out = n_out};
    m->n_params += n_in * n_out;
    m->weight_bytes += (int64_t)bytes;
    return ibex_model_own(m, buf, err);
}

static ibex_status gen_norm(ibex_model *m, const char *name, int64_t n, uint64_t seed, const float **out,
                            ibex_err *err) {
    float *buf = ibex_alloc(IBEX_MEM_WEIGHTS, (size_t)n * sizeof *buf, 0);
    if (!buf) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory generating %s", name);
    fill(buf, IBEX_TYPE_F32, 1, n, name_key(seed, name), 1.0f, 0.1f / 1.7320508f, 1);
    *out = buf;
    m->n_params += n;
    m->weight_bytes += n * (int64_t)sizeof(float);
    return ibex_model_own(m, buf, err);
}

/* The synthetic vocabulary described at the top of the file. */
static ibex_tokenizer *synthetic_vocab(int32_t n_vocab, ibex_err *err) {
    static const char cons[] = "bcdfghklmnprstvz", vow[] = "aeiou";
    char **pieces = calloc((size_t)n_vocab, sizeof *pieces);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    ibex_tokenizer *tok = NULL;
    if (!pieces || !scores || !types) goto oom;
    int32_t n = 0;
#define IBEX_PUSH(str, score, type)                                                                                    \
    do {                                                                                                               \
        if (n < n_vocab) {                                                                                             \
            if (!(pieces[n] = strdup(str))) goto oom;                                                                  \
            scores[n] = (score), types[n] = (type), n++;                                                               \
        }                                                                                                              \
    } while (0)
    IBEX_PUSH("<unk>", 0.0f, IBEX_TOKEN_UNKNOWN);
    IBEX_PUSH("<s>", 0.0f, IBEX_TOKEN_CONTROL);
    IBEX_PUSH("</s>", 0.0f, IBEX_TOKEN_CONTROL);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        IBEX_PUSH(s, 0.0f, IBEX_TOKEN_BYTE);
    }
    IBEX_PUSH("\xe2\x96\x81", -1.0f, IBEX_TOKEN_NORMAL);
    for (int ch = 0x21; ch < 0x7f; ch++) {
        char s[2] = {(char)ch, 0};
        IBEX_PUSH(s, -2.0f, IBEX_TOKEN_NORMAL);
    }
    /* Syllable pieces: level k has k syllables, with and without the word marker. */
    int nc = (int)strlen(cons), nv = (int)strlen(vow), ns = nc * nv;
    float score = -3.0f;
    for (int level = 1; level <= 3 && n < n_vocab; level++) {
        int64_t count = 1;
        for (int k = 0; k < level; k++) count *= ns;
        for (int64_t i = 0; i < count && n < n_vocab; i++) {
            char word[32], *w = word;
            int64_t v = i;
            for (int k = 0; k < level; k++, v /= ns) {
                *w++ = cons[(v % ns) / nv];
                *w++ = vow[(v % ns) % nv];
            }
            *w = 0;
            char marked[40];
            snprintf(marked, sizeof marked, "\xe2\x96\x81%s", word);
            IBEX_PUSH(marked, score, IBEX_TOKEN_NORMAL);
            IBEX_PUSH(word, score - 0.5f, IBEX_TOKEN_NORMAL);
            score -= 1e-3f;
        }
    }
    for (int32_t i = 0; n < n_vocab; i++) { /* only reached for vocabularies > 1M pieces */
        char s[32];
        snprintf(s, sizeof s, "<extra_%d>", i);
        IBEX_PUSH(s, -1e9f, IBEX_TOKEN_UNUSED);
    }
#undef IBEX_PUSH
    tok = ibex_tokenizer_new((const char *const *)pieces, scores, types, n_vocab, 1, 2, 0, true, err);
    goto done;
oom:
    ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory building the synthetic vocabulary");
done:
    if (pieces)
        for (int32_t i = 0; i < n_vocab; i++) free(pieces[i]);
    free(pieces), free(scores), free(types);
    return tok;
}

ibex_status ibex_synthetic_build(ibex_model *m, const ibex_synthetic_preset *pr, const ibex_model_params *p,
                                 ibex_err *err) {
    ibex_model_config *c = &m->cfg;
    *c = pr->cfg;
    if (p->ctx_len > 0) c->ctx_len = p->ctx_len;
    const ibex_type_traits *tr = ibex_type_traits_get(p->wtype);
    if (!tr || !tr->compute)
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "synthetic weights of type %s are not supported (F32, F16, BF16, Q8_0, Q4_0)",
                            ibex_type_name(p->wtype));
    snprintf(m->name, sizeof m->name, "synthetic:%s", pr->name);
    m->wtype = p->wtype;
    int nt = p->n_threads;
#ifdef _OPENMP
    if (nt <= 0) nt = omp_get_num_procs();
#else
    nt = 1;
#endif
    if (p->shape_only) {
        m->n_params = ibex_model_config_n_params(c, false);
        m->weight_bytes = ibex_model_config_weight_bytes(c, false, p->wtype);
        m->tok = synthetic_vocab(c->vocab_size, err);
        return m->tok ? IBEX_OK : (err ? err->status : IBEX_ERR_NOMEM);
    }
    const uint64_t seed = p->seed;
    const int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    const float sd = 1.0f / sqrtf((float)d);
    ibex_status s;
    if ((s = gen_matrix(m, "token_embd.weight", p->wtype, d, c->vocab_size, 1.0f, seed, nt, &m->tok_embd, err)) ||
        (s = gen_norm(m, "output_norm.weight", d, seed, &m->output_norm, err)) ||
        (s = gen_matrix(m, "output.weight", p->wtype, d, c->vocab_size, 1.5f * sd, seed, nt, &m->output, err)))
        return s;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        ibex_layer_weights *L = &m->layers[l];
        char nm[96];
#define IBEX_TN(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, suffix), nm)
        if ((s = gen_norm(m, IBEX_TN("attn_norm"), d, seed, &L->attn_norm, err)) ||
            (s = gen_matrix(m, IBEX_TN("attn_q"), p->wtype, d, q, sd, seed, nt, &L->wq, err)) ||
            (s = gen_matrix(m, IBEX_TN("attn_k"), p->wtype, d, kv, sd, seed, nt, &L->wk, err)) ||
            (s = gen_matrix(m, IBEX_TN("attn_v"), p->wtype, d, kv, sd, seed, nt, &L->wv, err)) ||
            (s = gen_matrix(m, IBEX_TN("attn_output"), p->wtype, q, d, 1.0f / sqrtf((float)q), seed, nt, &L->wo, err)) ||
            (s = gen_norm(m, IBEX_TN("ffn_norm"), d, seed, &L->ffn_norm, err)) ||
            (s = gen_matrix(m, IBEX_TN("ffn_gate"), p->wtype, d, c->ffn_dim, sd, seed, nt, &L->w_gate, err)) ||
            (s = gen_matrix(m, IBEX_TN("ffn_up"), p->wtype, d, c->ffn_dim, sd, seed, nt, &L->w_up, err)) ||
            (s = gen_matrix(m, IBEX_TN("ffn_down"), p->wtype, c->ffn_dim, d, 1.0f / sqrtf((float)c->ffn_dim), seed, nt,
                            &L->w_down, err)))
            return s;
#undef IBEX_TN
    }
    m->tok = synthetic_vocab(c->vocab_size, err);
    return m->tok ? IBEX_OK : (err ? err->status : IBEX_ERR_NOMEM);
}
