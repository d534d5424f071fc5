/* forward.c — the Llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU)
 * over a batch of sequences, on any backend, with per-op timing and analytic counts.
 *
 * On a device backend a step is built to wait for the device once (for the logits):
 *  - token ids, positions, KV slots and block tables are packed into one pinned host
 *    buffer and uploaded with one queued copy (be->host_alloc; without it, plain uploads);
 *  - the logits rows come back with one queued copy into pinned memory, then one sync;
 *  - every device buffer is sized when the context is created or at its first call
 *    (block tables: the pool's block size is known then), so later steps allocate
 *    nothing unless a call outgrows them (more logits rows than min(max_tokens, 256), a
 *    table past the model's context);
 *  - a pure decode step on a backend with attention_batch runs every sequence's attention
 *    in one call, its per-sequence descriptors packed into the same staging upload;
 *  - where the backend has the fused ops: Q|K|V and gate|up weights concatenated at load
 *    (weight_cat) and computed by one matmul each (matmul_split, matmul_swiglu), RoPE
 *    of Q and K with the K/V store of every sequence in one call (rope_kv), and the two
 *    residual adds inside the O and down matmuls (matmul_add). Analytic FLOPs/bytes and
 *    call counts stay those of the unfused ops, so reports compare across backends. */
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
    bool dev;  /* the backend has its own memory: buffers below are device pointers */
    ibex_err dev_err; /* the first device error met while timing ops */
    /* the weights as the backend addresses them (= the model's on the host) */
    const void *tok_embd;          /* (vocab, dim) */
    const float *output_norm;      /* (dim) */
    const void *output;            /* (vocab, dim) */
    ibex_layer_weights *layers;    /* n_layers, device copies of m->layers' pointers */
    /* activations, one row per token (backend memory) */
    float *x;      /* (max_tokens, dim) residual stream */
    float *xb;     /* (max_tokens, max(dim, q_dim)) normed input / op output */
    float *q;      /* (max_tokens, n_heads·head_dim) */
    float *k, *v;  /* (max_tokens, n_kv_heads·head_dim) */
    float *att;    /* (max_tokens, n_heads·head_dim) */
    float *hb;     /* (max_tokens, ffn_dim) */
    float *hb2;    /* (max_tokens, ffn_dim) */
    int32_t *tok;  /* (max_tokens) host */
    int32_t *pos;  /* (max_tokens) host */
    int32_t *d_tok, *d_pos; /* (max_tokens) backend copies (= tok, pos on the host) */
    float *logits; /* (logit_rows, vocab), grown on demand (backend memory) */
    int32_t logit_rows;
    int32_t *h_tables, *d_tables; /* every sequence's block table of a call, concatenated */
    int64_t table_cap;
    /* device staging (be->host_alloc): one pinned buffer and its device twin holding, per
     * call, tok[T] | pos[T] | slots[T] | tables[...] | attention descriptors (decode); one upload */
    int32_t *h_stage, *d_stage;
    int64_t stage_cap;   /* int32 entries */
    int32_t stage_bs;    /* block size the tables part was sized for */
    int32_t *d_slots;    /* this call's KV slot per token (inside d_stage) */
    const int32_t *cur_tok, *cur_pos; /* this call's ids and positions as ops read them */
    float *h_logits;     /* (logit_rows, vocab) pinned mirror of logits */
    /* fused weights per layer (NULL: not fused) */
    const void **w_qkv;  /* n_layers: wq|wk|wv rows */
    const void **w_gu;   /* n_layers: w_gate|w_up rows */
    ibex_dev_counters dev0; /* counters at the start of the current call */
    bool graphs;            /* capture decode steps into a graph (ibex_forward_set_graphs) */
    ibex_err graph_err;     /* why capture failed and graphs went off, status 0 if not */
    bool marks;             /* the backend has device marks: ops are timed by them */
    struct { int op, a, b; } pending[4096]; /* marked ops of the call, read after its sync */
    int n_pending;
    /* a pure decode step on a backend with attention_batch: every sequence's
     * ibex_attn_seq, packed after the tables in the staging buffer (NULL otherwise) */
    ibex_attn_seq *h_aseq;
    const ibex_attn_seq *d_aseq;
    const int32_t **seq_table; /* (seq_cap) per sequence of a call: its table as the backend reads it */
    int32_t *seq_first;        /* (seq_cap) first block of a contiguous run, −1 when paged */
    int seq_cap;
};

static const char *k_op_names[IBEX_OP_COUNT] = {
    "embed", "rmsnorm", "matmul_qkv", "rope", "kv_write", "attention", "matmul_o", "matmul_ffn", "silu_mul", "add",
    "output", "logits"};

const char *ibex_op_name(ibex_op op) { return (unsigned)op < IBEX_OP_COUNT ? k_op_names[op] : "?"; }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* An activation buffer of bytes in the backend's memory. */
static void *act_alloc(ibex_forward *f, size_t bytes, ibex_err *err) {
    if (f->dev) return f->be->alloc(f->be, bytes, IBEX_BUF_ACTIVATIONS, err);
    void *p = ibex_alloc(IBEX_MEM_ACTIVATIONS, bytes, 0);
    if (!p) ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory allocating %zu bytes of activations", bytes);
    return p;
}

static void act_free(ibex_forward *f, void *p) {
    if (!p) return;
    if (f->dev)
        f->be->dealloc(f->be, p);
    else
        ibex_free(p);
}

static const void *dev_weight(ibex_forward *f, const void *host, size_t bytes, ibex_err *err) {
    return f->dev ? f->be->weight(f->be, host, bytes, err) : host;
}

/* Points f's weight table at the backend's copies (uploading them on a device). */
static ibex_status map_weights(ibex_forward *f, ibex_err *err) {
    const ibex_model *m = f->m;
    const ibex_model_config *c = &m->cfg;
    if (!f->dev) {
        f->tok_embd = m->tok_embd.data, f->output_norm = m->output_norm, f->output = m->output.data;
        f->layers = m->layers;
        return IBEX_OK;
    }
    f->layers = calloc((size_t)c->n_layers, sizeof *f->layers);
    if (!f->layers) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    const size_t nb = (size_t)c->dim * sizeof(float);
    if (!(f->tok_embd = dev_weight(f, m->tok_embd.data, ibex_weight_bytes(&m->tok_embd), err)) ||
        !(f->output_norm = dev_weight(f, m->output_norm, nb, err)) ||
        !(f->output = dev_weight(f, m->output.data, ibex_weight_bytes(&m->output), err)))
        return IBEX_ERR_BACKEND;
    if (f->be->weight_cat) {
        f->w_qkv = calloc((size_t)c->n_layers, sizeof *f->w_qkv);
        f->w_gu = calloc((size_t)c->n_layers, sizeof *f->w_gu);
        if (!f->w_qkv || !f->w_gu) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < c->n_layers; l++) {
        const ibex_layer_weights *L = &m->layers[l];
        ibex_layer_weights *D = &f->layers[l];
        *D = *L;
        /* Q|K|V and gate|up as one tensor each when their types agree: the unfused ops
         * address the parts inside it, so nothing is uploaded twice */
        ibex_weight *groups[2][3] = {{&D->wq, &D->wk, &D->wv}, {&D->w_gate, &D->w_up, NULL}};
        const void **fused[2] = {f->w_qkv ? &f->w_qkv[l] : NULL, f->w_gu ? &f->w_gu[l] : NULL};
        for (int g = 0; g < 2 && fused[0]; g++) {
            const int n = groups[g][2] ? 3 : 2;
            const void *hosts[3];
            size_t bytes[3];
            bool same = true;
            for (int i = 0; i < n; i++) {
                hosts[i] = groups[g][i]->data, bytes[i] = ibex_weight_bytes(groups[g][i]);
                same &= groups[g][i]->type == groups[g][0]->type && groups[g][i]->n_in == groups[g][0]->n_in;
            }
            if (!same) continue;
            const char *cat = f->be->weight_cat(f->be, hosts, bytes, n, err);
            if (!cat) return IBEX_ERR_BACKEND;
            *fused[g] = cat;
            for (int i = 0; i < n; i++) groups[g][i]->data = cat, cat += bytes[i];
        }
        ibex_weight *dw[] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->w_gate, &D->w_up, &D->w_down};
        for (size_t i = 0; i < sizeof dw / sizeof *dw; i++) {
            const bool in_qkv = i < 3 && f->w_qkv && f->w_qkv[l], in_gu = (i == 4 || i == 5) && f->w_gu && f->w_gu[l];
            if (in_qkv || in_gu) continue;
            if (!(dw[i]->data = dev_weight(f, dw[i]->data, ibex_weight_bytes(dw[i]), err))) return IBEX_ERR_BACKEND;
        }
        if (!(D->attn_norm = dev_weight(f, L->attn_norm, nb, err)) ||
            !(D->ffn_norm = dev_weight(f, L->ffn_norm, nb, err)))
            return IBEX_ERR_BACKEND;
    }
    return IBEX_OK;
}

ibex_forward *ibex_forward_new(const ibex_model *m, ibex_backend *be, int32_t max_tokens, ibex_err *err) {
    if (max_tokens <= 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "max tokens per forward call must be positive (got %d)", max_tokens);
        return NULL;
    }
    ibex_forward *f = calloc(1, sizeof *f);
    if (!f) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const ibex_model_config *c = &m->cfg;
    f->m = m;
    f->be = be;
    f->max_tokens = max_tokens;
    f->layer = -1;
    f->dev = be->alloc != NULL;
    f->marks = f->dev && be->mark && be->mark_elapsed_ms && be->marks_reset;
    {   /* graphs are opt-in: IBEX_CUDA_GRAPHS=1, or ibex_forward_set_graphs */
        const char *g = getenv("IBEX_CUDA_GRAPHS");
        f->graphs = g && g[0] == '1' && be->graph_begin && be->graph_end;
    }
    if (f->dev && (!be->dealloc || !be->weight || !be->upload || !be->download || !be->copy || !be->sync)) {
        ibex_err_set(err, IBEX_ERR_BACKEND, "backend %s has device memory but not every memory op", be->name);
        goto fail;
    }
    if (map_weights(f, err)) {
        ibex_err_prefix(err, "uploading the weights of %s to %s", m->name, be->name);
        goto fail;
    }
    size_t T = (size_t)max_tokens, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = qd > (size_t)c->dim ? qd : (size_t)c->dim;
    if (!(f->x = act_alloc(f, T * c->dim * 4, err)) || !(f->xb = act_alloc(f, T * wide * 4, err)) ||
        !(f->q = act_alloc(f, T * qd * 4, err)) || !(f->k = act_alloc(f, T * kvd * 4, err)) ||
        !(f->v = act_alloc(f, T * kvd * 4, err)) || !(f->att = act_alloc(f, T * qd * 4, err)) ||
        !(f->hb = act_alloc(f, T * c->ffn_dim * 4, err)) || !(f->hb2 = act_alloc(f, T * c->ffn_dim * 4, err)))
        goto fail_act;
    if (!(f->tok = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * 4, 0)) || !(f->pos = ibex_alloc(IBEX_MEM_ACTIVATIONS, T * 4, 0))) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        goto fail_act;
    }
    if (f->dev) {
        if (!(f->d_tok = act_alloc(f, T * 4, err)) || !(f->d_pos = act_alloc(f, T * 4, err))) goto fail_act;
        /* logits rows for a decode batch of up to 256 sequences, so decode never grows them */
        int32_t rows = max_tokens < 256 ? max_tokens : 256;
        if (!(f->logits = act_alloc(f, (size_t)rows * c->vocab_size * sizeof(float), err))) goto fail_act;
        f->logit_rows = rows;
        if (be->host_alloc && be->host_free &&
            !(f->h_logits = be->host_alloc(be, (size_t)rows * c->vocab_size * sizeof(float), err)))
            goto fail_act;
    } else {
        f->d_tok = f->tok, f->d_pos = f->pos;
    }
    return f;
fail_act:
    ibex_err_prefix(err, "activations for %d tokens", max_tokens);
fail:
    ibex_forward_free(f);
    return NULL;
}

void ibex_forward_free(ibex_forward *f) {
    if (!f) return;
    act_free(f, f->x), act_free(f, f->xb), act_free(f, f->q), act_free(f, f->k), act_free(f, f->v);
    act_free(f, f->att), act_free(f, f->hb), act_free(f, f->hb2), act_free(f, f->logits);
    if (f->dev) {
        act_free(f, f->d_tok), act_free(f, f->d_pos), act_free(f, f->d_tables), act_free(f, f->d_stage);
        if (f->h_stage) f->be->host_free(f->be, f->h_stage);
        if (f->h_logits) f->be->host_free(f->be, f->h_logits);
        free(f->layers); /* the weights themselves belong to the backend's cache */
        free(f->w_qkv), free(f->w_gu);
    }
    ibex_free(f->tok), ibex_free(f->pos), ibex_free(f->h_tables);
    free(f->seq_table), free(f->seq_first);
    free(f);
}

int32_t ibex_forward_max_tokens(const ibex_forward *f) { return f->max_tokens; }
void ibex_forward_set_profiling(ibex_forward *f, bool on) { f->profiling = on; }
void ibex_forward_set_graphs(ibex_forward *f, bool on) {
    f->graphs = on && f->be->graph_begin && f->be->graph_end;
    memset(&f->graph_err, 0, sizeof f->graph_err);
}
bool ibex_forward_graphs(const ibex_forward *f, ibex_err *why_off) {
    if (why_off) *why_off = f->graph_err;
    return f->graphs;
}
void ibex_forward_set_span_hook(ibex_forward *f, ibex_span_fn fn, void *ctx) { f->span = fn, f->span_ctx = ctx; }
const ibex_op_stats *ibex_forward_stats(const ibex_forward *f) { return &f->st; }
void ibex_forward_reset_stats(ibex_forward *f) { memset(&f->st, 0, sizeof f->st); }

void ibex_op_stats_delta(ibex_op_stats *acc, const ibex_op_stats *before, const ibex_op_stats *after) {
    for (int o = 0; o < IBEX_OP_COUNT; o++) {
        acc->ns[o] += after->ns[o] - before->ns[o];
        acc->calls[o] += after->calls[o] - before->calls[o];
        acc->flops[o] += after->flops[o] - before->flops[o];
        acc->bytes[o] += after->bytes[o] - before->bytes[o];
    }
    acc->runs += after->runs - before->runs;
    acc->dev.launches += after->dev.launches - before->dev.launches;
    acc->dev.syncs += after->dev.syncs - before->dev.syncs;
    acc->dev.allocs += after->dev.allocs - before->dev.allocs;
    acc->dev.frees += after->dev.frees - before->dev.frees;
    acc->dev.h2d_bytes += after->dev.h2d_bytes - before->dev.h2d_bytes;
    acc->dev.d2h_bytes += after->dev.d2h_bytes - before->dev.d2h_bytes;
    acc->dev.d2d_bytes += after->dev.d2d_bytes - before->dev.d2d_bytes;
    acc->dev.graph_launches += after->dev.graph_launches - before->dev.graph_launches;
    acc->dev.graph_builds += after->dev.graph_builds - before->dev.graph_builds;
}

/* Adds the device work since dev0 to the stats (end of a call). */
static void count_dev(ibex_forward *f) {
    f->st.runs++;
    if (!f->be->get_counters) return;
    ibex_dev_counters now;
    f->be->get_counters(f->be, &now);
    ibex_op_stats a = {0}, b = {0};
    a.dev = f->dev0, b.dev = now;
    ibex_op_stats_delta(&f->st, &a, &b);
}

/* Waits for the device so an op's wall time covers its kernels; keeps the first error. */
static void dev_wait(ibex_forward *f) {
    ibex_err e = {0};
    if (f->be->sync(f->be, &e) && f->dev_err.status == IBEX_OK) f->dev_err = e;
}

/* Device marks of the current call: op k ran from mark[k].a to mark[k].b; read after
 * the call's sync. */
static void marks_read(ibex_forward *f) {
    for (int i = 0; i < f->n_pending; i++) {
        const double ms = f->be->mark_elapsed_ms(f->be, f->pending[i].a, f->pending[i].b);
        if (ms == ms) f->st.ns[f->pending[i].op] += ms * 1e6;
    }
    f->n_pending = 0;
    f->be->marks_reset(f->be);
}

/* A device mark; when the backend has none left, waits, reads the pending ones, retries. */
static int mark_now(ibex_forward *f) {
    int m = f->be->mark(f->be);
    if (m < 0) {
        dev_wait(f);
        marks_read(f);
        m = f->be->mark(f->be);
    }
    return m;
}

/* The mark that starts an op. Each pending op holds two marks, and the pending table
 * holds 4096 (the CUDA backend keeps 8192 marks): when it is full, wait and read it
 * first (a step of more than 4095 ops, e.g. per-sequence attention at batch 128). */
static int op_start(ibex_forward *f) {
    if (f->n_pending >= (int)(sizeof f->pending / sizeof f->pending[0]) - 1) {
        dev_wait(f);
        marks_read(f);
    }
    return mark_now(f);
}

static void op_marked(ibex_forward *f, ibex_op op, int a) {
    const int b = mark_now(f);
    if (a < 0 || b < 0 || f->n_pending == (int)(sizeof f->pending / sizeof f->pending[0])) return;
    f->pending[f->n_pending].op = op, f->pending[f->n_pending].a = a, f->pending[f->n_pending].b = b;
    f->n_pending++;
}

/* Times the statement when profiling, reports it to the span hook, and adds its
 * analytic counts. On a device with marks the time is device time between two marks
 * (no wait: read after the call's one sync); else each op waits for the device. */
#define IBEX_OP(f, op, fl, by, stmt)                                                                                   \
    do {                                                                                                               \
        if ((f)->span) (f)->span((f)->span_ctx, true, k_op_names[op], (f)->layer);                                     \
        const bool marked_ = (f)->profiling && (f)->marks;                                                             \
        const int m0_ = marked_ ? op_start(f) : -1;                                                                    \
        double t0_ = (f)->profiling && !marked_ ? now_ns() : 0;                                                        \
        stmt;                                                                                                          \
        if (marked_) {                                                                                                 \
            op_marked(f, op, m0_);                                                                                     \
        } else if ((f)->profiling) {                                                                                   \
            if ((f)->dev) dev_wait(f);                                                                                 \
            (f)->st.ns[op] += now_ns() - t0_;                                                                          \
        }                                                                                                              \
        if ((f)->span) (f)->span((f)->span_ctx, false, k_op_names[op], (f)->layer);                                    \
        (f)->st.calls[op]++;                                                                                           \
        (f)->st.flops[op] += (double)(fl);                                                                             \
        (f)->st.bytes[op] += (double)(by);                                                                             \
    } while (0)

/* The analytic counts of an op whose work a fused op did (no time of its own). */
static void count_only(ibex_forward *f, ibex_op op, double fl, double by) {
    f->st.calls[op]++;
    f->st.flops[op] += fl;
    f->st.bytes[op] += by;
}

static double wbytes(const ibex_weight *w) { return (double)ibex_type_row_bytes(w->type, w->n_in) * (double)w->n_out; }

static void mm(ibex_forward *f, ibex_op op, float *y, const float *x, const ibex_weight *w, int T) {
    double fl = 2.0 * T * (double)w->n_in * (double)w->n_out;
    double by = wbytes(w) + 4.0 * T * (double)(w->n_in + w->n_out);
    IBEX_OP(f, op, fl, by, f->be->matmul(f->be, y, x, w->data, w->type, T, (int)w->n_in, (int)w->n_out));
}

/* Copies bytes within the backend's memory. */
static void dcopy(ibex_forward *f, void *dst, const void *src, size_t bytes) {
    if (f->dev)
        f->be->copy(f->be, dst, src, bytes);
    else
        memcpy(dst, src, bytes);
}

/* Makes every sequence's block table addressable by the backend: on the host the
 * caller's tables are used as they are; on a device they are concatenated and
 * uploaded in one copy. tables[s] receives sequence s's table. */
static ibex_status stage_tables(ibex_forward *f, const ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs,
                                const int32_t **tables, ibex_err *err) {
    if (!f->dev) {
        for (int s = 0; s < n_seqs; s++) tables[s] = seqs[s].block_table;
        return IBEX_OK;
    }
    const int64_t bs = pool->block_size;
    int64_t total = 0;
    for (int s = 0; s < n_seqs; s++) total += (seqs[s].pos0 + seqs[s].n_tokens + bs - 1) / bs;
    if (total > f->table_cap) {
        int64_t cap = total > 2 * f->table_cap ? total : 2 * f->table_cap;
        act_free(f, f->d_tables);
        ibex_free(f->h_tables);
        f->table_cap = 0;
        f->h_tables = ibex_alloc(IBEX_MEM_ACTIVATIONS, (size_t)cap * sizeof(int32_t), 0);
        f->d_tables = f->h_tables ? act_alloc(f, (size_t)cap * sizeof(int32_t), err) : NULL;
        if (!f->h_tables || !f->d_tables)
            return err && err->status ? err->status
                                      : ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for %lld block-table entries",
                                                     (long long)cap);
        f->table_cap = cap;
    }
    int64_t off = 0;
    for (int s = 0; s < n_seqs; s++) {
        int64_t n = (seqs[s].pos0 + seqs[s].n_tokens + bs - 1) / bs;
        memcpy(f->h_tables + off, seqs[s].block_table, (size_t)n * sizeof(int32_t));
        tables[s] = f->d_tables + off;
        off += n;
    }
    return f->be->upload(f->be, f->d_tables, f->h_tables, (size_t)total * sizeof(int32_t), err);
}

/* A run of consecutive blocks b0, b0+1, ... covering the sequence's tokens? */
static bool is_run(const ibex_fwd_seq *sq, int32_t block_size) {
    int32_t n = (sq->pos0 + sq->n_tokens + block_size - 1) / block_size;
    for (int32_t i = 1; i < n; i++)
        if (sq->block_table[i] != sq->block_table[0] + i) return false;
    return true;
}

/* Device staging with pinned memory: sizes the buffers for T tokens and total table
 * entries (the first call sizes the tables part for max_tokens sequences of the model's
 * whole context; a call past that grows it), packs tok | pos | slots | tables, and
 * queues one upload. tables[s] receives sequence s's table on the device. */
static ibex_status stage_pinned(ibex_forward *f, const ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs,
                                int T, const int32_t **tables, ibex_err *err) {
    const ibex_model_config *c = &f->m->cfg;
    const int64_t bs = pool->block_size;
    int64_t total = 0;
    for (int s = 0; s < n_seqs; s++) total += (seqs[s].pos0 + seqs[s].n_tokens + bs - 1) / bs;
    /* a decode step's attention descriptors (attention_batch), 3 int32 each */
    const bool aseq = f->be->attention_batch && T == n_seqs;
    const int64_t need = 3 * (int64_t)T + total + (aseq ? 3 * (int64_t)n_seqs : 0);
    if (need > f->stage_cap || f->stage_bs != pool->block_size) {
        int64_t per_seq = ((int64_t)(c->ctx_len > 0 ? c->ctx_len : 1) + bs - 1) / bs;
        int64_t cap = 6 * (int64_t)f->max_tokens + (int64_t)f->max_tokens * per_seq;
        if (cap < need) cap = need + need / 2;
        if (f->h_stage) f->be->host_free(f->be, f->h_stage);
        act_free(f, f->d_stage);
        f->h_stage = NULL, f->d_stage = NULL, f->stage_cap = 0;
        if (!(f->h_stage = f->be->host_alloc(f->be, (size_t)cap * sizeof(int32_t), err)) ||
            !(f->d_stage = act_alloc(f, (size_t)cap * sizeof(int32_t), err)))
            return err && err->status ? err->status : IBEX_ERR_NOMEM;
        f->stage_cap = cap;
        f->stage_bs = pool->block_size;
    }
    int32_t *h = f->h_stage;
    int64_t off = 3 * (int64_t)T;
    for (int s = 0, i = 0; s < n_seqs; s++) {
        const ibex_fwd_seq *sq = &seqs[s];
        for (int j = 0; j < sq->n_tokens; j++, i++) {
            const int32_t t = sq->pos0 + j;
            h[i] = sq->tokens[j];
            h[T + i] = t;
            h[2 * T + i] = (int32_t)(sq->block_table[t / bs] * bs + t % bs);
        }
        const int64_t n = (sq->pos0 + sq->n_tokens + bs - 1) / bs;
        memcpy(h + off, sq->block_table, (size_t)n * sizeof(int32_t));
        tables[s] = f->d_stage + off;
        off += n;
    }
    f->h_aseq = NULL, f->d_aseq = NULL;
    if (aseq) { /* table_off counts from the staging base, which attention_batch gets as the table */
        f->h_aseq = (ibex_attn_seq *)(h + off);
        f->d_aseq = (const ibex_attn_seq *)(f->d_stage + off);
        for (int s = 0; s < n_seqs; s++) {
            f->h_aseq[s].n_keys = seqs[s].pos0 + 1;
            f->h_aseq[s].first_block = seqs[s].contiguous && is_run(&seqs[s], pool->block_size) ? seqs[s].block_table[0] : -1;
            f->h_aseq[s].table_off = (int32_t)(tables[s] - f->d_stage);
        }
    }
    f->cur_tok = f->d_stage, f->cur_pos = f->d_stage + T, f->d_slots = f->d_stage + 2 * T;
    return f->be->upload(f->be, f->d_stage, f->h_stage, (size_t)need * sizeof(int32_t), err);
}


static ibex_status run_layers(ibex_forward *f, ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs, int T,
                              int64_t R, ibex_err *err);

ibex_status ibex_forward_run(ibex_forward *f, ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs,
                             ibex_err *err) {
    if (f->dev && f->be->get_counters) f->be->get_counters(f->be, &f->dev0);
    const ibex_model_config *c = &f->m->cfg;
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
    ibex_status st = run_layers(f, pool, seqs, n_seqs, T, R, err);
    if (f->marks && f->profiling) marks_read(f); /* the call has synchronised */
    count_dev(f);
    return st;
}

/* Queues the step's device work, embedding to the logits copy (no wait). */
static ibex_status queue_ops(ibex_forward *f, ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs, int T,
                             int64_t R, bool pinned, ibex_err *err) {
    const ibex_model *m = f->m;
    const ibex_model_config *c = &m->cfg;
    ibex_backend *be = f->be;
    ibex_status st = IBEX_OK;
    const int d = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const float scale = 1.0f / sqrtf((float)c->head_dim);
    /* the fused ops need device staging (the slots) and, for the matmuls, fused weights */
    const bool fuse_rope = pinned && be->rope_kv; /* rope_kv stores rows of the pool's type (kv.type) */
    const bool fuse_add = f->dev && be->matmul_add;
    IBEX_OP(f, IBEX_OP_EMBED, 0, 4.0 * T * d * 2,
            be->embed(be, f->x, f->tok_embd, m->tok_embd.type, f->cur_tok, T, d));

    for (int l = 0; l < c->n_layers; l++) {
        const ibex_layer_weights *L = &f->layers[l];
        f->layer = l;
        if (f->span) f->span(f->span_ctx, true, "layer", l), f->span(f->span_ctx, true, "attn", l);
        IBEX_OP(f, IBEX_OP_RMSNORM, 4.0 * T * d, 8.0 * T * d, be->rmsnorm(be, f->xb, f->x, L->attn_norm, T, d, c->norm_eps));
        if (f->w_qkv && f->w_qkv[l] && be->matmul_split) {
            float *ys[3] = {f->q, f->k, f->v};
            const int n_outs[3] = {qd, kvd, kvd};
            const ibex_weight *w3[3] = {&L->wq, &L->wk, &L->wv};
            double fl = 0, by = 0;
            for (int i = 0; i < 3; i++) {
                fl += 2.0 * T * (double)w3[i]->n_in * (double)w3[i]->n_out;
                by += wbytes(w3[i]) + 4.0 * T * (double)(w3[i]->n_in + w3[i]->n_out);
            }
            IBEX_OP(f, IBEX_OP_MATMUL_QKV, fl / 3, by / 3,
                    be->matmul_split(be, ys, n_outs, 3, f->xb, f->w_qkv[l], L->wq.type, T, (int)L->wq.n_in));
            count_only(f, IBEX_OP_MATMUL_QKV, fl / 3, by / 3);
            count_only(f, IBEX_OP_MATMUL_QKV, fl / 3, by / 3);
        } else {
            mm(f, IBEX_OP_MATMUL_QKV, f->q, f->xb, &L->wq, T);
            mm(f, IBEX_OP_MATMUL_QKV, f->k, f->xb, &L->wk, T);
            mm(f, IBEX_OP_MATMUL_QKV, f->v, f->xb, &L->wv, T);
        }
        if (fuse_rope) {
            ibex_kv_view kv = ibex_kv_pool_view(pool, l, NULL);
            IBEX_OP(f, IBEX_OP_ROPE, 6.0 * T * (qd + kvd) / 2, 8.0 * T * (qd + kvd),
                    be->rope_kv(be, f->q, f->k, f->v, kv.k, kv.v, kv.type, f->d_slots, f->cur_pos, T, c->n_heads, c->n_kv_heads,
                                c->head_dim, c->rope_dim, c->rope_base));
            for (int s = 0; s < n_seqs; s++) count_only(f, IBEX_OP_KV_WRITE, 0, (8.0 + 2 * pool->elem_bytes) * seqs[s].n_tokens * kvd);
        } else {
            IBEX_OP(f, IBEX_OP_ROPE, 6.0 * T * (qd + kvd) / 2, 8.0 * T * (qd + kvd), {
                be->rope(be, f->q, f->cur_pos, T, c->n_heads, c->head_dim, c->rope_dim, c->rope_base);
                be->rope(be, f->k, f->cur_pos, T, c->n_kv_heads, c->head_dim, c->rope_dim, c->rope_base);
            });
        }
        /* a decode step with attention_batch: one call for every sequence (counted as
         * n_seqs attention calls with the same analytic FLOPs/bytes as one call each) */
        const bool one_call = f->d_aseq != NULL;
        double att_fl = 0, att_by = 0;
        for (int s = 0, off = 0; s < n_seqs; off += seqs[s].n_tokens, s++) {
            const ibex_fwd_seq *sq = &seqs[s];
            ibex_kv_view kv = ibex_kv_pool_view(pool, l, f->seq_table[s]);
            kv.contiguous = f->seq_first[s] >= 0;
            kv.first_block = kv.contiguous ? f->seq_first[s] : 0;
            /* kv_write reads K and V in F32 and stores them at the pool's element size */
            if (!fuse_rope)
                IBEX_OP(f, IBEX_OP_KV_WRITE, 0, (8.0 + 2 * pool->elem_bytes) * sq->n_tokens * kvd,
                        be->kv_write(be, &kv, f->k + (size_t)off * kvd, f->v + (size_t)off * kvd, sq->n_tokens,
                                     sq->pos0));
            /* Query i sees pos0+i+1 keys: Σ = n·pos0 + n(n+1)/2 query-key pairs; each pair
             * costs a q·k and a p·v dot of head_dim per head (2 FLOPs per multiply-add). */
            double pairs = (double)sq->n_tokens * sq->pos0 + (double)sq->n_tokens * (sq->n_tokens + 1) / 2.0;
            double keys = (double)sq->pos0 + sq->n_tokens;
            if (one_call) {
                att_fl += 4.0 * pairs * c->n_heads * c->head_dim, att_by += 8.0 * keys * kvd + 8.0 * sq->n_tokens * qd;
                continue;
            }
            IBEX_OP(f, IBEX_OP_ATTENTION, 4.0 * pairs * c->n_heads * c->head_dim,
                    2.0 * pool->elem_bytes * keys * kvd + 8.0 * sq->n_tokens * qd,
                    be->attention(be, f->att + (size_t)off * qd, f->q + (size_t)off * qd, &kv, sq->n_tokens, sq->pos0,
                                  c->n_heads, scale));
        }
        if (one_call) {
            ibex_kv_view kv = ibex_kv_pool_view(pool, l, f->d_stage);
            IBEX_OP(f, IBEX_OP_ATTENTION, att_fl, att_by,
                    be->attention_batch(be, f->att, f->q, &kv, f->d_aseq, f->h_aseq, n_seqs, c->n_heads, scale));
            f->st.calls[IBEX_OP_ATTENTION] += n_seqs - 1;
        }
        if (fuse_add) {
            const ibex_weight *w = &L->wo;
            IBEX_OP(f, IBEX_OP_MATMUL_O, 2.0 * T * (double)w->n_in * (double)w->n_out,
                    wbytes(w) + 4.0 * T * (double)(w->n_in + w->n_out),
                    be->matmul_add(be, f->x, f->att, w->data, w->type, T, (int)w->n_in, (int)w->n_out));
            count_only(f, IBEX_OP_ADD, (double)T * d, 12.0 * T * d);
        } else {
            mm(f, IBEX_OP_MATMUL_O, f->xb, f->att, &L->wo, T);
            IBEX_OP(f, IBEX_OP_ADD, (double)T * d, 12.0 * T * d, be->add(be, f->x, f->xb, (int64_t)T * d));
        }
        if (f->span) f->span(f->span_ctx, false, "attn", l), f->span(f->span_ctx, true, "mlp", l);
        IBEX_OP(f, IBEX_OP_RMSNORM, 4.0 * T * d, 8.0 * T * d, be->rmsnorm(be, f->xb, f->x, L->ffn_norm, T, d, c->norm_eps));
        if (f->w_gu && f->w_gu[l] && be->matmul_swiglu) {
            const ibex_weight *g = &L->w_gate, *u = &L->w_up;
            const double fl = 2.0 * T * (double)g->n_in * (double)g->n_out + 2.0 * T * (double)u->n_in * (double)u->n_out;
            const double by = wbytes(g) + 4.0 * T * (double)(g->n_in + g->n_out) + wbytes(u) +
                              4.0 * T * (double)(u->n_in + u->n_out);
            IBEX_OP(f, IBEX_OP_MATMUL_FFN, fl / 2, by / 2,
                    be->matmul_swiglu(be, f->hb, f->hb2, f->xb, f->w_gu[l], g->type, T, (int)g->n_in, c->ffn_dim));
            count_only(f, IBEX_OP_MATMUL_FFN, fl / 2, by / 2);
            count_only(f, IBEX_OP_SILU_MUL, 6.0 * T * c->ffn_dim, 12.0 * T * c->ffn_dim);
        } else {
            mm(f, IBEX_OP_MATMUL_FFN, f->hb, f->xb, &L->w_gate, T);
            mm(f, IBEX_OP_MATMUL_FFN, f->hb2, f->xb, &L->w_up, T);
            IBEX_OP(f, IBEX_OP_SILU_MUL, 6.0 * T * c->ffn_dim, 12.0 * T * c->ffn_dim,
                    be->silu_mul(be, f->hb, f->hb, f->hb2, (int64_t)T * c->ffn_dim));
        }
        if (fuse_add) {
            const ibex_weight *w = &L->w_down;
            IBEX_OP(f, IBEX_OP_MATMUL_FFN, 2.0 * T * (double)w->n_in * (double)w->n_out,
                    wbytes(w) + 4.0 * T * (double)(w->n_in + w->n_out),
                    be->matmul_add(be, f->x, f->hb, w->data, w->type, T, (int)w->n_in, (int)w->n_out));
            count_only(f, IBEX_OP_ADD, (double)T * d, 12.0 * T * d);
        } else {
            mm(f, IBEX_OP_MATMUL_FFN, f->xb, f->hb, &L->w_down, T);
            IBEX_OP(f, IBEX_OP_ADD, (double)T * d, 12.0 * T * d, be->add(be, f->x, f->xb, (int64_t)T * d));
        }
        if (f->span) f->span(f->span_ctx, false, "mlp", l), f->span(f->span_ctx, false, "layer", l);
    }
    f->layer = -1;

    if (R > 0) {
        /* Gather the rows that need logits, so the output matrix is read once per call;
         * when every row does (a decode step), the norm reads them in place instead */
        int r = 0;
        if (R < T) {
            for (int s = 0, off = 0; s < n_seqs; off += seqs[s].n_tokens, s++) {
                if (!seqs[s].logits) continue;
                int first = seqs[s].all_logits ? 0 : seqs[s].n_tokens - 1;
                int n = seqs[s].n_tokens - first;
                dcopy(f, f->xb + (size_t)r * d, f->x + (size_t)(off + first) * d, (size_t)n * d * sizeof(float));
                r += n;
            }
        }
        IBEX_OP(f, IBEX_OP_RMSNORM, 4.0 * R * d, 8.0 * R * d,
                be->rmsnorm(be, f->xb, R < T ? f->xb : f->x, f->output_norm, (int)R, d, c->norm_eps));
        ibex_weight out = m->output;
        out.data = f->output;
        mm(f, IBEX_OP_OUTPUT, f->logits, f->xb, &out, (int)R);
        r = 0;
        const size_t row_bytes = (size_t)c->vocab_size * sizeof(float);
        IBEX_OP(f, IBEX_OP_LOGITS, 0, 8.0 * R * c->vocab_size, {
            if (pinned) { /* one queued copy of every row */
                st = be->download(be, f->h_logits, f->logits, (size_t)R * row_bytes, err);
            } else {
                for (int s = 0; s < n_seqs && st == IBEX_OK; s++) {
                    if (!seqs[s].logits) continue;
                    int n = seqs[s].all_logits ? seqs[s].n_tokens : 1;
                    size_t bytes = (size_t)n * row_bytes;
                    const float *src = f->logits + (size_t)r * c->vocab_size;
                    if (f->dev)
                        st = be->download(be, seqs[s].logits, src, bytes, err);
                    else
                        memcpy(seqs[s].logits, src, bytes);
                    r += n;
                }
            }
        });
    }
    return st;
}

static ibex_status run_layers(ibex_forward *f, ibex_kv_pool *pool, const ibex_fwd_seq *seqs, int n_seqs, int T,
                              int64_t R, ibex_err *err) {
    const ibex_model *m = f->m;
    const ibex_model_config *c = &m->cfg;
    ibex_backend *be = f->be;
    const bool pinned = f->dev && be->host_alloc && be->host_free;
    if (R > f->logit_rows) {
        act_free(f, f->logits);
        if (f->h_logits) be->host_free(be, f->h_logits), f->h_logits = NULL;
        f->logits = act_alloc(f, (size_t)R * c->vocab_size * sizeof(float), err);
        f->logit_rows = f->logits ? (int32_t)R : 0;
        if (f->logits && pinned &&
            !(f->h_logits = be->host_alloc(be, (size_t)R * c->vocab_size * sizeof(float), err))) {
            act_free(f, f->logits);
            f->logits = NULL, f->logit_rows = 0;
        }
        if (!f->logits) {
            ibex_err_prefix(err, "%lld rows of logits", (long long)R);
            return err && err->status ? err->status : IBEX_ERR_NOMEM;
        }
    }
    if (n_seqs > f->seq_cap) {
        const int32_t **t = realloc(f->seq_table, (size_t)n_seqs * sizeof *t);
        if (t) f->seq_table = t;
        int32_t *b = realloc(f->seq_first, (size_t)n_seqs * sizeof *b);
        if (b) f->seq_first = b;
        if (!t || !b) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for a batch of %d sequences", n_seqs);
        f->seq_cap = n_seqs;
    }
    ibex_status st;
    f->h_aseq = NULL, f->d_aseq = NULL; /* stage_pinned sets them for a decode step */
    if (pinned) {
        if ((st = stage_pinned(f, pool, seqs, n_seqs, T, f->seq_table, err))) return st;
    } else {
        if ((st = stage_tables(f, pool, seqs, n_seqs, f->seq_table, err))) return st;
    }
    for (int s = 0; s < n_seqs; s++)
        f->seq_first[s] = seqs[s].contiguous && is_run(&seqs[s], pool->block_size) ? seqs[s].block_table[0] : -1;
    if (!pinned) f->cur_tok = f->d_tok, f->cur_pos = f->d_pos;
    if (f->dev) {
        f->dev_err.status = IBEX_OK;
        if (!pinned && ((st = be->upload(be, f->d_tok, f->tok, (size_t)T * sizeof(int32_t), err)) ||
                        (st = be->upload(be, f->d_pos, f->pos, (size_t)T * sizeof(int32_t), err))))
            return st;
    }

    /* A pure decode step on a backend that captures graphs: captured and launched as one
     * graph (updated in place from the previous step's when only parameters changed). If
     * the capture fails, the step runs uncaptured and graphs stay off for this context. */
    const bool decode = T == n_seqs;
    if (f->graphs && pinned && decode && !f->profiling && be->graph_begin && be->graph_end) {
        ibex_err gerr = {0};
        const ibex_op_stats saved = f->st;
        if (be->graph_begin(be, &gerr) == IBEX_OK) {
            st = queue_ops(f, pool, seqs, n_seqs, T, R, pinned, &gerr);
            const ibex_status gst = be->graph_end(be, st ? NULL : &gerr);
            if (st == IBEX_OK && gst == IBEX_OK) goto queued;
        }
        f->st = saved; /* the ops run again below */
        f->graphs = false;
        f->graph_err = gerr;
    }
    if ((st = queue_ops(f, pool, seqs, n_seqs, T, R, pinned, err))) return st;
queued:
    if (R > 0) {
        const size_t row_bytes = (size_t)c->vocab_size * sizeof(float);
        int r = 0;
        if (pinned) { /* the step's one wait, then the rows to each caller's memory */
            if ((st = be->sync(be, err))) return st;
            for (int s = 0; s < n_seqs; s++) {
                if (!seqs[s].logits) continue;
                int n = seqs[s].all_logits ? seqs[s].n_tokens : 1;
                memcpy(seqs[s].logits, f->h_logits + (size_t)r * c->vocab_size, (size_t)n * row_bytes);
                r += n;
            }
            if (f->dev_err.status) {
                if (err) *err = f->dev_err;
                return f->dev_err.status;
            }
            return IBEX_OK;
        }
    }
    if (f->dev) {
        /* Ops queue work and cannot fail by themselves: a device error surfaces here. */
        if ((st = be->sync(be, err))) return st;
        if (f->dev_err.status) {
            if (err) *err = f->dev_err;
            return f->dev_err.status;
        }
    }
    return IBEX_OK;
}
