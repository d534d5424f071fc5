/* test_devpath.c — the forward pass and the engine on a backend with its own memory,
 * without a GPU: a "shadow device" backend computes with the CPU kernels but keeps
 * every buffer in its own registered allocations, copies only through upload /
 * download / copy, and flags any op handed a pointer it did not allocate (a host
 * pointer reaching a device kernel is exactly the bug that crashes on a GPU). The
 * results must be bit-identical to the plain CPU path. Also: the engine's span hook
 * (what NVTX and the trace see) is balanced and complete. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"

/* ---- the shadow device ---- */

#define SH_MAX 4096

typedef struct shadow {
    ibex_backend be;
    ibex_backend *cpu;
    struct {
        char *p;
        size_t bytes;
        ibex_buf_kind kind;
        const void *host; /* weights: the host tensor it mirrors */
    } buf[SH_MAX];
    int n;
    int violations;
    char first_violation[160];
    int64_t uploads, downloads, copies, syncs, weight_uploads;
} shadow;

static shadow *sh_of(ibex_backend *be) { return (shadow *)be; }

/* Is [p, p+bytes) inside one registered buffer? */
static bool sh_owns(shadow *s, const void *p, size_t bytes) {
    const char *c = p;
    for (int i = 0; i < s->n; i++)
        if (c >= s->buf[i].p && c + bytes <= s->buf[i].p + s->buf[i].bytes) return true;
    return false;
}

static void sh_check(shadow *s, const void *p, size_t bytes, const char *what) {
    if (p && sh_owns(s, p, bytes)) return;
    if (!s->violations++) snprintf(s->first_violation, sizeof s->first_violation, "%s: %p", what, p);
}

static void *sh_register(shadow *s, size_t bytes, ibex_buf_kind kind, const void *host) {
    cr_assert_lt(s->n, SH_MAX, "shadow registry full");
    char *p = calloc(1, bytes ? bytes : 1);
    cr_assert(p);
    s->buf[s->n].p = p, s->buf[s->n].bytes = bytes, s->buf[s->n].kind = kind, s->buf[s->n].host = host;
    s->n++;
    return p;
}

static void *sh_alloc(ibex_backend *be, size_t bytes, ibex_buf_kind kind, ibex_err *err) {
    return sh_register(sh_of(be), bytes, kind, NULL);
}

static void sh_dealloc(ibex_backend *be, void *p) {
    shadow *s = sh_of(be);
    if (!p) return;
    for (int i = 0; i < s->n; i++)
        if (s->buf[i].p == p) {
            free(p);
            s->buf[i] = s->buf[--s->n];
            return;
        }
    sh_check(s, NULL, 0, "dealloc of an unknown pointer");
}

static const void *sh_weight(ibex_backend *be, const void *host, size_t bytes, ibex_err *err) {
    shadow *s = sh_of(be);
    for (int i = 0; i < s->n; i++)
        if (s->buf[i].host == host && s->buf[i].kind == IBEX_BUF_WEIGHTS) return s->buf[i].p;
    void *d = sh_register(s, bytes, IBEX_BUF_WEIGHTS, host);
    memcpy(d, host, bytes);
    s->weight_uploads++;
    return d;
}

static ibex_status sh_upload(ibex_backend *be, void *dst, const void *src, size_t bytes, ibex_err *err) {
    shadow *s = sh_of(be);
    sh_check(s, dst, bytes, "upload destination");
    if (sh_owns(s, src, 1)) sh_check(s, NULL, 0, "upload from device memory");
    memcpy(dst, src, bytes);
    s->uploads++;
    return IBEX_OK;
}

static ibex_status sh_download(ibex_backend *be, void *dst, const void *src, size_t bytes, ibex_err *err) {
    shadow *s = sh_of(be);
    sh_check(s, src, bytes, "download source");
    if (sh_owns(s, dst, 1)) sh_check(s, NULL, 0, "download into device memory");
    memcpy(dst, src, bytes);
    s->downloads++;
    return IBEX_OK;
}

static void sh_copy(ibex_backend *be, void *dst, const void *src, size_t bytes) {
    shadow *s = sh_of(be);
    sh_check(s, dst, bytes, "copy destination");
    sh_check(s, src, bytes, "copy source");
    memmove(dst, src, bytes);
    s->copies++;
}

static ibex_status sh_sync(ibex_backend *be, ibex_err *err) {
    sh_of(be)->syncs++;
    return IBEX_OK;
}

/* Ops: check every pointer, then run the CPU kernel. */
static void sh_matmul(ibex_backend *be, float *y, const float *x, const void *w, ibex_type wt, int T, int ni, int no) {
    shadow *s = sh_of(be);
    sh_check(s, y, (size_t)T * no * 4, "matmul y");
    sh_check(s, x, (size_t)T * ni * 4, "matmul x");
    sh_check(s, w, ibex_type_row_bytes(wt, ni) * (size_t)no, "matmul w");
    s->cpu->matmul(s->cpu, y, x, w, wt, T, ni, no);
}
static void sh_rmsnorm(ibex_backend *be, float *y, const float *x, const float *g, int T, int n, float eps) {
    shadow *s = sh_of(be);
    sh_check(s, y, (size_t)T * n * 4, "rmsnorm y"), sh_check(s, x, (size_t)T * n * 4, "rmsnorm x");
    sh_check(s, g, (size_t)n * 4, "rmsnorm g");
    s->cpu->rmsnorm(s->cpu, y, x, g, T, n, eps);
}
static void sh_rope(ibex_backend *be, float *x, const int32_t *pos, int T, int nh, int hd, int rd, float base) {
    shadow *s = sh_of(be);
    sh_check(s, x, (size_t)T * nh * hd * 4, "rope x"), sh_check(s, pos, (size_t)T * 4, "rope pos");
    s->cpu->rope(s->cpu, x, pos, T, nh, hd, rd, base);
}
static void sh_softmax(ibex_backend *be, float *x, int T, int n) {
    shadow *s = sh_of(be);
    sh_check(s, x, (size_t)T * n * 4, "softmax x");
    s->cpu->softmax(s->cpu, x, T, n);
}
static void sh_silu_mul(ibex_backend *be, float *y, const float *g, const float *u, int64_t n) {
    shadow *s = sh_of(be);
    sh_check(s, y, (size_t)n * 4, "silu y"), sh_check(s, g, (size_t)n * 4, "silu gate"), sh_check(s, u, (size_t)n * 4, "silu up");
    s->cpu->silu_mul(s->cpu, y, g, u, n);
}
static void sh_add(ibex_backend *be, float *y, const float *x, int64_t n) {
    shadow *s = sh_of(be);
    sh_check(s, y, (size_t)n * 4, "add y"), sh_check(s, x, (size_t)n * 4, "add x");
    s->cpu->add(s->cpu, y, x, n);
}
static void sh_embed(ibex_backend *be, float *y, const void *table, ibex_type et, const int32_t *tok, int T, int dim) {
    shadow *s = sh_of(be);
    sh_check(s, y, (size_t)T * dim * 4, "embed y"), sh_check(s, table, 1, "embed table");
    sh_check(s, tok, (size_t)T * 4, "embed tokens");
    s->cpu->embed(s->cpu, y, table, et, tok, T, dim);
}
static void check_view(shadow *s, const ibex_kv_view *kv, int ntok) {
    sh_check(s, kv->k, 4, "kv k"), sh_check(s, kv->v, 4, "kv v");
    int nb = (ntok + kv->block_size - 1) / kv->block_size;
    sh_check(s, kv->block_table, (size_t)nb * 4, "kv block table");
    if (kv->contiguous) /* the flag must describe the table truthfully */
        for (int i = 0; i < nb; i++)
            if (kv->block_table[i] != kv->first_block + i) sh_check(s, NULL, 0, "contiguous view over a non-run table");
}
static void sh_kv_write(ibex_backend *be, const ibex_kv_view *kv, const float *k, const float *v, int T, int pos0) {
    shadow *s = sh_of(be);
    check_view(s, kv, pos0 + T);
    size_t n = (size_t)T * kv->n_kv_heads * kv->head_dim * 4;
    sh_check(s, k, n, "kv_write k"), sh_check(s, v, n, "kv_write v");
    s->cpu->kv_write(s->cpu, kv, k, v, T, pos0);
}
static void sh_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv, int T, int pos0, int nh,
                         float scale) {
    shadow *s = sh_of(be);
    check_view(s, kv, pos0 + T);
    size_t n = (size_t)T * nh * kv->head_dim * 4;
    sh_check(s, out, n, "attention out"), sh_check(s, q, n, "attention q");
    s->cpu->attention(s->cpu, out, q, kv, T, pos0, nh, scale);
}
static void sh_free(ibex_backend *be) {
    shadow *s = sh_of(be);
    for (int i = 0; i < s->n; i++) free(s->buf[i].p);
    s->n = 0;
    ibex_backend_free(s->cpu);
}

static shadow *shadow_new(void) {
    shadow *s = calloc(1, sizeof *s);
    cr_assert(s);
    s->cpu = ibex_backend_cpu_new(2);
    s->be = (ibex_backend){.name = "shadow", .matmul = sh_matmul, .rmsnorm = sh_rmsnorm, .rope = sh_rope,
                           .softmax = sh_softmax, .silu_mul = sh_silu_mul, .add = sh_add, .embed = sh_embed,
                           .kv_write = sh_kv_write, .attention = sh_attention, .alloc = sh_alloc,
                           .dealloc = sh_dealloc, .weight = sh_weight, .upload = sh_upload, .download = sh_download,
                           .copy = sh_copy, .sync = sh_sync};
    return s;
}

static void shadow_free(shadow *s) {
    sh_free(&s->be);
    free(s);
}

static int shadow_count(const shadow *s, ibex_buf_kind kind) {
    int n = 0;
    for (int i = 0; i < s->n; i++) n += s->buf[i].kind == kind;
    return n;
}

static ibex_model *load(const char *name) {
    ibex_model_params p = ibex_model_default_params();
    ibex_err err = {0};
    ibex_model *m = ibex_model_load(name, &p, &err);
    cr_assert(m, "%s", err.msg);
    return m;
}

/* ---- the forward pass ---- */

/* A mixed batch: sequence 0 prefills 9 tokens through a shuffled (paged) table,
 * sequence 1 decodes one token at position 21 through a contiguous run, sequence 2
 * prefills 5 tokens into a run not flagged contiguous; all logits rows asked for. */
static void mixed_batch(ibex_backend *be, const ibex_model *m, bool on_be, float *logits[3]) {
    ibex_err err = {0};
    const int bs = 4;
    ibex_kv_pool *pool = on_be ? ibex_kv_pool_new_on(&m->cfg, 32, bs, be, &err) : ibex_kv_pool_new(&m->cfg, 32, bs, &err);
    ibex_forward *f = ibex_forward_new(m, be, 64, &err);
    cr_assert(pool && f, "%s", err.msg);
    int32_t t0[9], t1[22], t2[5];
    for (int i = 0; i < 9; i++) t0[i] = 7 + i * 13;
    for (int i = 0; i < 22; i++) t1[i] = 100 + i * 3;
    for (int i = 0; i < 5; i++) t2[i] = 40 + i;
    int32_t tab0[3] = {17, 3, 29}, tab1[6] = {10, 11, 12, 13, 14, 15}, tab2[2] = {20, 21};
    /* give sequence 1 its first 21 tokens first (prefill), then the batch */
    float *tmp = malloc((size_t)m->cfg.vocab_size * sizeof *tmp);
    cr_assert(tmp);
    ibex_fwd_seq pre = {.tokens = t1, .n_tokens = 21, .pos0 = 0, .block_table = tab1, .logits = tmp, .contiguous = true};
    cr_assert_eq(ibex_forward_run(f, pool, &pre, 1, &err), IBEX_OK, "%s", err.msg);
    ibex_fwd_seq b[3] = {
        {.tokens = t0, .n_tokens = 9, .pos0 = 0, .block_table = tab0, .logits = logits[0], .all_logits = true},
        {.tokens = t1 + 21, .n_tokens = 1, .pos0 = 21, .block_table = tab1, .logits = logits[1], .contiguous = true},
        {.tokens = t2, .n_tokens = 5, .pos0 = 0, .block_table = tab2, .logits = logits[2]},
    };
    cr_assert_eq(ibex_forward_run(f, pool, b, 3, &err), IBEX_OK, "%s", err.msg);
    free(tmp);
    ibex_forward_free(f);
    ibex_kv_pool_free(pool);
}

Test(devpath, forward_on_a_device_backend_is_bit_identical_and_passes_only_device_pointers) {
    ibex_model *m = load("synthetic:tiny");
    const int V = m->cfg.vocab_size;
    float *a[3], *b[3];
    const int rows[3] = {9, 1, 1};
    for (int i = 0; i < 3; i++) {
        a[i] = malloc((size_t)rows[i] * V * 4), b[i] = malloc((size_t)rows[i] * V * 4);
        for (int j = 0; j < rows[i] * V; j++) a[i][j] = b[i][j] = NAN; /* unwritten rows show */
    }
    ibex_backend *cpu = ibex_backend_cpu_new(2);
    mixed_batch(cpu, m, false, a);
    shadow *s = shadow_new();
    mixed_batch(&s->be, m, true, b);
    cr_assert_eq(s->violations, 0, "%d pointers not in device memory, first: %s", s->violations, s->first_violation);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < rows[i] * V; j++) {
            cr_assert(!isnan(b[i][j]), "sequence %d logit %d never written", i, j);
            cr_assert(a[i][j] == b[i][j], "sequence %d logit %d: cpu %g, device path %g", i, j, a[i][j], b[i][j]);
        }
    /* every weight uploaded once (tiny has tied or separate output: at most 1 + 2 + 9·layers tensors) */
    cr_assert_gt(s->weight_uploads, 0);
    cr_assert_leq(s->weight_uploads, 3 + 9 * m->cfg.n_layers);
    cr_assert_gt(s->downloads, 0);
    cr_assert_gt(s->syncs, 0);
    /* the forward context and pool freed what they allocated: only weights remain */
    cr_assert_eq(shadow_count(s, IBEX_BUF_ACTIVATIONS), 0, "activation buffers leaked");
    cr_assert_eq(shadow_count(s, IBEX_BUF_KV), 0, "KV pool leaked");
    cr_assert_eq(shadow_count(s, IBEX_BUF_WEIGHTS), s->weight_uploads);
    shadow_free(s);
    ibex_backend_free(cpu);
    for (int i = 0; i < 3; i++) free(a[i]), free(b[i]);
    ibex_model_free(m);
}

/* ---- the engine ---- */

typedef struct beams {
    int32_t toks[4][16];
    int32_t n[4];
    ibex_kv_stats ks;
} beams;

static beams beam_run(ibex_backend *be, const ibex_model *m, ibex_kv_policy pol) {
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.policy = pol;
    cfg.kv.budget_bytes = 8ll << 20;
    cfg.kv.block_size = 4;
    ibex_err err = {0};
    ibex_engine *e = ibex_engine_new(m, be, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    int32_t p[9];
    for (int i = 0; i < 9; i++) p[i] = 500 + i * 71;
    ibex_request_params rp = ibex_request_default_params();
    rp.decoding = IBEX_DECODE_BEAM;
    rp.beam_width = 4;
    rp.max_new_tokens = 12;
    rp.ignore_eos = true;
    int64_t id = ibex_engine_submit(e, p, 9, &rp, &err);
    cr_assert_geq(id, 0, "%s", err.msg);
    ibex_token_event ev[256];
    while (ibex_engine_has_work(e)) cr_assert_geq(ibex_engine_step(e, ev, 256, &err), 0, "%s", err.msg);
    beams out = {0};
    for (int i = 0; i < 4; i++) {
        double lp, sc;
        const int32_t *t = ibex_engine_output_at(e, id, i, &out.n[i], &lp, &sc);
        cr_assert(t && out.n[i] <= 16);
        memcpy(out.toks[i], t, (size_t)out.n[i] * 4);
    }
    ibex_kv_stats_get(ibex_engine_kv(e), &out.ks);
    ibex_engine_free(e);
    return out;
}

Test(devpath, engine_beams_on_a_device_backend_match_the_cpu) {
    ibex_model *m = load("synthetic:tiny");
    ibex_backend *cpu = ibex_backend_cpu_new(2);
    shadow *s = shadow_new();
    for (int pol = IBEX_KV_CONTIGUOUS; pol <= IBEX_KV_PAGED; pol++) {
        beams a = beam_run(cpu, m, (ibex_kv_policy)pol);
        int64_t copies0 = s->copies;
        beams b = beam_run(&s->be, m, (ibex_kv_policy)pol);
        cr_assert_eq(s->violations, 0, "%s: first violation %s", ibex_kv_policy_name(pol), s->first_violation);
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(a.n[i], b.n[i]);
            cr_assert(!memcmp(a.toks[i], b.toks[i], (size_t)a.n[i] * 4), "%s beam %d differs on the device path",
                      ibex_kv_policy_name(pol), i);
        }
        /* block copies (CoW under paged, fork copies under contiguous) went through be->copy */
        int64_t block_copies = b.ks.cow_copies + b.ks.fork_copies;
        cr_assert_gt(block_copies, 0);
        cr_assert_geq(s->copies - copies0, 2 * m->cfg.n_layers * block_copies, "KV block copies bypassed be->copy");
        cr_assert_eq(shadow_count(s, IBEX_BUF_KV), 0, "KV pool leaked");
    }
    shadow_free(s);
    ibex_backend_free(cpu);
    ibex_model_free(m);
}

/* ---- spans ---- */

typedef struct span_log {
    const char *stack[64];
    int depth, max_depth;
    int64_t begins, unbalanced;
    int64_t n_schedule, n_prefill, n_decode, n_sampling, n_release, n_layer, n_attn, n_mlp, n_attention_op;
} span_log;

static void on_span(void *ctx, bool begin, const char *name, int layer) {
    span_log *l = ctx;
    if (begin) {
        l->begins++;
        if (l->depth < 64) l->stack[l->depth] = name;
        if (++l->depth > l->max_depth) l->max_depth = l->depth;
        l->n_schedule += !strcmp(name, "schedule");
        l->n_prefill += !strcmp(name, "prefill");
        l->n_decode += !strcmp(name, "decode");
        l->n_sampling += !strcmp(name, "sampling");
        l->n_release += !strcmp(name, "release");
        l->n_layer += !strcmp(name, "layer");
        l->n_attn += !strcmp(name, "attn");
        l->n_mlp += !strcmp(name, "mlp");
        l->n_attention_op += name == ibex_op_name(IBEX_OP_ATTENTION);
        return;
    }
    if (l->depth == 0 || (l->depth <= 64 && strcmp(l->stack[l->depth - 1], name))) l->unbalanced++;
    if (l->depth > 0) l->depth--;
}

Test(devpath, engine_spans_are_balanced_and_cover_every_phase) {
    ibex_model *m = load("synthetic:tiny");
    ibex_backend *cpu = ibex_backend_cpu_new(2);
    ibex_engine_config cfg = ibex_engine_default_config();
    ibex_err err = {0};
    ibex_engine *e = ibex_engine_new(m, cpu, &cfg, &err);
    cr_assert(e, "%s", err.msg);
    span_log log = {0};
    ibex_engine_set_span_hook(e, on_span, &log);
    int32_t p[5] = {5, 6, 7, 8, 9};
    ibex_request_params rp = ibex_request_default_params();
    rp.max_new_tokens = 4;
    rp.ignore_eos = true;
    cr_assert_geq(ibex_engine_submit(e, p, 5, &rp, &err), 0, "%s", err.msg);
    ibex_token_event ev[16];
    int steps = 0;
    while (ibex_engine_has_work(e)) {
        cr_assert_geq(ibex_engine_step(e, ev, 16, &err), 0, "%s", err.msg);
        steps++;
        cr_assert_eq(log.depth, 0, "spans left open after step %d", steps);
    }
    cr_assert_eq(log.unbalanced, 0);
    cr_assert_eq(steps, 4); /* prefill + first token, then 3 decodes */
    cr_assert_eq(log.n_schedule, steps);
    cr_assert_eq(log.n_sampling, steps);
    cr_assert_eq(log.n_release, steps);
    cr_assert_eq(log.n_prefill, 1);
    cr_assert_eq(log.n_decode, 3);
    cr_assert_eq(log.n_layer, 4 * m->cfg.n_layers);
    cr_assert_eq(log.n_attn, log.n_layer);
    cr_assert_eq(log.n_mlp, log.n_layer);
    cr_assert_eq(log.n_attention_op, log.n_layer);
    cr_assert_geq(log.max_depth, 4); /* decode > layer > attn > op */
    ibex_engine_free(e);
    ibex_backend_free(cpu);
    ibex_model_free(m);
}
