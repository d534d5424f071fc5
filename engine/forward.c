/* forward.c — the Llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU)
 * over a batch of sequences, on any backend, with per-op timing and analytic counts. */
#include "engine/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/alloc.h"

struct ibex_forward {
    const ibex_model *m;
    ibex_backend *be;
    int32_t max_tokens;
    bool profiling;
    ibex_op_stats st;
    ibex_span_fn span;
    void *span_ctx;
    int layer; /* the layer being computed, −1 outside */
    /* activations, one row per token */
    float *x;      /* (max_tokens, dim) residual stream */
    float *xb;     /* (max_tokens, max(dim, q_dim)) normed input / op output */
    float *q;      /* (max_tokens, n_heads·head_dim) */
    float *k, *v;  /* (max_tokens, n_kv_heads·head_dim) */
    float *att;    /* (max_tokens, n_heads·head_dim) */
    float *hb;     /* (max_tokens, ffn_dim) */
    float *hb2;    /* (max_tokens, ffn_dim) */
    int32_t *tok;  /* (max_tokens) */
    int32_t *pos;  /* (max_tokens) */
    float *logits; /* (logit_rows, vocab), grown on demand */
    int32_t logit_rows;
};

static const char *k_op_names[IBEX_OP_COUNT] = {
    "embed", "rmsnorm", "matmul_qkv", "rope", "kv_write", "attention", "matmul_o", "matmul_ffn", "silu_mul", "add",
    "output"};

const char *ibex_op_name(ibex_op op) { return (unsigned)op < IBEX_OP_COUNT ? k_op_names[op] : "?"; }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

ibex_forward *ibex_forward_new(const ibex_model *m, ibex_backend *be, int32_t max_tokens, ibex_err *err) {
    if (max_tokens <= 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "max tokens per forward call must be positive (got %d)", max_tokens);
        return NULL;
    }
    ibex_forward *f = calloc(1, sizeof *f);
    if (!f) goto oom;
    const ibex_model_config *c = &m->cfg;
    f->m = m;
    f->be = be;
    f->max_tokens = max_tokens;
    f->layer = -1;
    size_t T = (size_t)max_tokens, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = qd > (size_t)c->dim ? qd : (size_t)c->dim;
    if (!(f->x = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * c->dim * 4, 0)) ||
        !(f->xb = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * wide * 4, 0)) ||
        !(f->q = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * qd * 4, 0)) ||
        !(f->k = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * kvd * 4, 0)) ||
        !(f->v = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * kvd * 4, 0)) ||
        !(f->att = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * qd * 4, 0)) ||
        !(f->hb = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * c->ffn_dim * 4, 0)) ||
        !(f->hb2 = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * c->ffn_dim * 4, 0)) ||
        !(f->tok = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * 4, 0)) || !(f->pos = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * 4, 0)))
        goto oom;
    return f;
oom:
    ibex_forward_free(f);
    ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory allocating activations for %d tokens", max_tokens);
    return NULL;
}

void ibex_forward_free(ibex_forward *f) {
    if (!f) return;
    ibex_free(f->x), ibex_free(f->xb), ibex_free(f->q), ibex_free(f->k), ibex_free(f->v);
    ibex_free(f->att), ibex_free(f->hb), ibex_free(f->hb2), ibex_free(f->tok), ibex_free(f->pos);
    ibex_free(f->logits);
    free(f);
}

int32_t ibex_forward_max_tokens(const ibex_forward *f) { return f->max_tokens; }
void ibex_forward_set_profiling(ibex_forward *f, bool on) { f->profiling = on; }
void ibex_forward_set_span_hook(ibex_forward *f, ibex_span_fn fn, void *ctx) { f->span = fn, f->span_ctx = ctx; }
const ibex_op_stats *ibex_forward_stats(const ibex_forward *f) { return &f->st; }
void ibex_forward_reset_stats(ibex_forward *f) { memset(&f->st, 0, sizeof f->st); }

/* Times the statement when profiling, reports it to the span hook, and adds its
 * analytic counts. */
#define IBEX_OP(f, op, fl, by, stmt)                                                                                   \
    do {                                                                                                               \
        if ((f)->span) (f)->span((f)->span_ctx, true, k_op_names[op], (f)->layer);                                     \
        double t0_ = (f)->profiling ? now_ns() : 0;                                                                    \
        stmt;                                                                                                          \
        if ((f)->profiling) (f)->st.ns[op] += now_ns() - t0_;                                                          \
        if ((f)->span) (f)->span((f)->span_ctx, false, k_op_names[op], (f)->layer);                                    \
        (f)->st.calls[op]++;                                                                                           \
        (f)->st.flops[op] += (double)(fl);                                                                             \
        (f)->st.bytes[op] += (double)(by);                                                                             \
    } while (0)

static double wbytes(const ibex_weight *w) { return (double)ibex_type_row_bytes(w->type, w->n_in) * (double)w->n_out; }

static void mm(ibex_forward *f, ibex_op op, float *y, const float *x, const ibex_weight *w, int T) {
    double fl = 2.0 * T * (double)w->n_in * (double)w->n_out;
    double by = wbytes(w) + 4.0 * T * (double)(w->n_in + w->n_out);
    IBEX_OP(f, op, fl, by, f->be->matmul(f->be, y, x, w->data, w->type, T, (int)w->n_in, (int)w->n_out));
}

ibex_status ibex_forward_run(ibex_forward *f, ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs,
                             ibex_err *err) {
    const ibex_model *m = f->m;
    const ibex_model_config *c = &m->cfg;
    ibex_backend *be = f->be;
    if (n_seqs <= 0) return ibex_err_set(err, IBEX_ERR_INVALID, "forward called with no sequences");
    int64_t T64 = 0, R = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (seqs[s].n_tokens <= 0 || seqs[s].pos0 < 0)
            return ibex_err_set(err, IBEX_ERR_INVALID, "sequence %d of the batch has %d tokens at position %d", s,
                                seqs[s].n_tokens, seqs[s].pos0);
        T64 += seqs[s].n_tokens;
        if (seqs[s].logits) R += seqs[s].all_logits ? seqs[s].n_tokens : 1;
    }
    if (T64 > f->max_tokens)
        return ibex_err_set(err, IBEX_ERR_INVALID, "batch of %lld tokens exceeds the forward context's %d",
                            (long long)T64, f->max_tokens);
    const int T = (int)T64;
    for (int s = 0, i = 0; s < n_seqs; s++) {
        for (int j = 0; j < seqs[s].n_tokens; j++, i++) {
            int32_t id = seqs[s].tokens[j];
            if (id < 0 || id >= c->vocab_size)
                return ibex_err_set(err, IBEX_ERR_INVALID, "token id %d is outside the vocabulary (0..%d)", id,
                                    c->vocab_size - 1);
            f->tok[i] = id;
            f->pos[i] = seqs[s].pos0 + j;
        }
    }
    if (R > f->logit_rows) {
        ibex_free(f->logits);
        f->logits = ibex_alloc(IBEX_MEM_ACTIVATIONS, (size_t)R * c->vocab_size * sizeof(float), 0);
        f->logit_rows = f->logits ? (int32_t)R : 0;
        if (!f->logits) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for %lld rows of logits", (long long)R);
    }

    const int d = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const float scale = 1.0f / sqrtf((float)c->head_dim);
    IBEX_OP(f, IBEX_OP_EMBED, 0, 4.0 * T * d * 2,
            be->embed(be, f->x, m->tok_embd.data, m->tok_embd.type, f->tok, T, d));

    for (int l = 0; l < c->n_layers; l++) {
        const ibex_layer_weights *L = &m->layers[l];
        f->layer = l;
        if (f->span) f->span(f->span_ctx, true, "layer", l);
        IBEX_OP(f, IBEX_OP_RMSNORM, 4.0 * T * d, 8.0 * T * d, be->rmsnorm(be, f->xb, f->x, L->attn_norm, T, d, c->norm_eps));
        mm(f, IBEX_OP_MATMUL_QKV, f->q, f->xb, &L->wq, T);
        mm(f, IBEX_OP_MATMUL_QKV, f->k, f->xb, &L->wk, T);
        mm(f, IBEX_OP_MATMUL_QKV, f->v, f->xb, &L->wv, T);
        IBEX_OP(f, IBEX_OP_ROPE, 6.0 * T * (qd + kvd) / 2, 8.0 * T * (qd + kvd), {
            be->rope(be, f->q, f->pos, T, c->n_heads, c->head_dim, c->rope_dim, c->rope_base);
            be->rope(be, f->k, f->pos, T, c->n_kv_heads, c->head_dim, c->rope_dim, c->rope_base);
        });
        for (int s = 0, off = 0; s < n_seqs; off += seqs[s].n_tokens, s++) {
            const ibex_fwd_seq *sq = &seqs[s];
            ibex_kv_view kv = ibex_kv_pool_view(pool, l, sq->block_table);
            IBEX_OP(f, IBEX_OP_KV_WRITE, 0, 16.0 * sq->n_tokens * kvd,
                    be->kv_write(be, &kv, f->k + (size_t)off * kvd, f->v + (size_t)off * kvd, sq->n_tokens, sq->pos0));
            /* Query i sees pos0+i+1 keys: Σ = n·pos0 + n(n+1)/2 query-key pairs; each pair
             * costs a q·k and a p·v dot of head_dim per head (2 FLOPs per multiply-add). */
            double pairs = (double)sq->n_tokens * sq->pos0 + (double)sq->n_tokens * (sq->n_tokens + 1) / 2.0;
            double keys = (double)sq->pos0 + sq->n_tokens;
            IBEX_OP(f, IBEX_OP_ATTENTION, 4.0 * pairs * c->n_heads * c->head_dim,
                    8.0 * keys * kvd + 8.0 * sq->n_tokens * qd,
                    be->attention(be, f->att + (size_t)off * qd, f->q + (size_t)off * qd, &kv, sq->n_tokens, sq->pos0,
                                  c->n_heads, scale));
        }
        mm(f, IBEX_OP_MATMUL_O, f->xb, f->att, &L->wo, T);
        IBEX_OP(f, IBEX_OP_ADD, (double)T * d, 12.0 * T * d, be->add(be, f->x, f->xb, (int64_t)T * d));
        IBEX_OP(f, IBEX_OP_RMSNORM, 4.0 * T * d, 8.0 * T * d, be->rmsnorm(be, f->xb, f->x, L->ffn_norm, T, d, c->norm_eps));
        mm(f, IBEX_OP_MATMUL_FFN, f->hb, f->xb, &L->w_gate, T);
        mm(f, IBEX_OP_MATMUL_FFN, f->hb2, f->xb, &L->w_up, T);
        IBEX_OP(f, IBEX_OP_SILU_MUL, 6.0 * T * c->ffn_dim, 12.0 * T * c->ffn_dim,
                be->silu_mul(be, f->hb, f->hb, f->hb2, (int64_t)T * c->ffn_dim));
        mm(f, IBEX_OP_MATMUL_FFN, f->xb, f->hb, &L->w_down, T);
        IBEX_OP(f, IBEX_OP_ADD, (double)T * d, 12.0 * T * d, be->add(be, f->x, f->xb, (int64_t)T * d));
        if (f->span) f->span(f->span_ctx, false, "layer", l);
    }
    f->layer = -1;

    if (R == 0) return IBEX_OK;
    /* Gather the rows that need logits, so the output matrix is read once per call. */
    int r = 0;
    for (int s = 0, off = 0; s < n_seqs; off += seqs[s].n_tokens, s++) {
        if (!seqs[s].logits) continue;
        int first = seqs[s].all_logits ? 0 : seqs[s].n_tokens - 1;
        int n = seqs[s].n_tokens - first;
        memcpy(f->xb + (size_t)r * d, f->x + (size_t)(off + first) * d, (size_t)n * d * sizeof(float));
        r += n;
    }
    IBEX_OP(f, IBEX_OP_RMSNORM, 4.0 * R * d, 8.0 * R * d, be->rmsnorm(be, f->xb, f->xb, m->output_norm, (int)R, d, c->norm_eps));
    mm(f, IBEX_OP_OUTPUT, f->logits, f->xb, &m->output, (int)R);
    r = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (!seqs[s].logits) continue;
        int n = seqs[s].all_logits ? seqs[s].n_tokens : 1;
        memcpy(seqs[s].logits, f->logits + (size_t)r * c->vocab_size, (size_t)n * c->vocab_size * sizeof(float));
        r += n;
    }
    return IBEX_OK;
}
