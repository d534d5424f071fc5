/* cmd_opbench.c — `ibex opbench`: single-op microbenchmarks on one backend, where the
 * whole-model runs cannot isolate an effect:
 *
 *   attention  decode attention (one query token after ctx−1 cached ones) for every
 *              context length × KV layout (contiguous run / shuffled paged table) ×
 *              attention kernel (the CUDA backend's materialized, paged, split_k): the
 *              paged-vs-contiguous and O(n)-per-token decode costs, per kernel;
 *   matmul     the products of decode (T = 1) and prefill (T > 1 tokens) at a model's
 *              shapes, as achieved bytes/s of weights against the measured read
 *              bandwidth and GFLOP/s against the measured peak FMA rate (`ibex roofline`);
 *   copy       the memory roofline itself: the backend's read stream on all its threads
 *              where it has one (the roofline), and device-to-device copies (CUDA) or a
 *              one-thread memcpy (CPU, read + write counted; shown, never the roofline:
 *              one thread cannot draw what two threads of a matmul draw).
 *
 * Timing: K calls are queued back to back and the device is synchronised once
 * (be->sync), so launch latency overlaps as it does in a real step; per-call time is
 * the batch time / K, reported as the median over repetitions (min–max beside it).
 * Results to stdout (Markdown table, or --json), progress to stderr. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/backends.h"
#include "engine/kv.h"
#include "harness/cli.h"
#include "kernels/dtype.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex opbench [options]\n"
            "      --backend B        cpu | cuda | cuda:N | auto (default auto)\n"
            "      --op LIST          attention,matmul,copy (default all three)\n"
            "      --ctx LIST         decode context lengths (default 1024,4096,16384)\n"
            "      --heads N          query heads (default 32)\n"
            "      --kv-heads N       KV heads (default 8)\n"
            "      --head-dim N       (default 128)\n"
            "      --block-size N     paged block size in tokens (default 16)\n"
            "      --kv-dtype LIST    attention: KV cache types f16,bf16,f32 (default f16)\n"
            "      --dim N            matmul: model dimension (default 4096)\n"
            "      --ffn N            matmul: feed-forward dimension (default 11008)\n"
            "      --tokens LIST      matmul: tokens per call (default 1)\n"
            "      --dtype TYPE       matmul weights f16 | bf16 | f32 (default f16)\n"
            "      --copy-bytes SIZE  copy: buffer size (default 1GiB: beyond any last-level cache)\n"
            "  -r, --repetitions N    timed repetitions (default 7)\n"
            "  -t, --threads N        CPU threads (default all cores)\n"
            "      --json             print JSON instead of a Markdown table\n");
}

typedef struct bench {
    ibex_backend *be;
    bool dev;
    int reps;
    json_t *rows;
} bench;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- memory on the backend ---- */

static void *bmalloc(bench *b, size_t bytes, ibex_err *err) {
    if (b->dev) return b->be->alloc(b->be, bytes, IBEX_BUF_WORKSPACE, err);
    void *p = ibex_alloc(IBEX_MEM_OTHER, bytes, 1);
    if (!p) ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for %zu bytes", bytes);
    return p;
}

static void bfree(bench *b, void *p) {
    if (!p) return;
    if (b->dev)
        b->be->dealloc(b->be, p);
    else
        ibex_free(p);
}

static ibex_status bput(bench *b, void *dst, const void *src, size_t bytes, ibex_err *err) {
    if (b->dev) return b->be->upload(b->be, dst, src, bytes, err);
    memcpy(dst, src, bytes);
    return IBEX_OK;
}

static ibex_status bsync(bench *b, ibex_err *err) { return b->dev ? b->be->sync(b->be, err) : IBEX_OK; }

/* Uniform values in [−1, 1) from a counter hash: the same inputs on every backend. */
static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (seed + i) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        x[i] = (float)((z >> 40) * (1.0 / 8388608.0)) - 1.0f;
    }
}

/* ---- timing ---- */

typedef void (*op_fn)(bench *b, void *ctx);

/* Per-call seconds of n ops (n ≤ 2) timed side by side: each repetition times k queued
 * calls of every op, alternating which goes first (A B, B A, ...) so drift and a neighbour's
 * load fall on both alike; st[o] gets op o's median / min / max, and with two ops ratio
 * gets the median / min / max of the per-repetition ratios t1 / t0 (paired, so the ratio
 * holds when the machine's speed moves between repetitions). */
typedef struct op_stats {
    double med, lo, hi;
} op_stats;

static double median_sorted(const double *s, int n) { return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]); }

static ibex_status time_ops(bench *b, op_fn fn, void *const *ctx, int n, op_stats *st, op_stats *ratio, ibex_err *err) {
    ibex_status rc;
    double one = 0;
    for (int o = 0; o < n; o++) {
        fn(b, ctx[o]); /* warm-up: first-touch, lazy workspace, cuBLAS heuristics */
        if ((rc = bsync(b, err))) return rc;
        double t0 = ibex_cli_now_s();
        fn(b, ctx[o]);
        if ((rc = bsync(b, err))) return rc;
        one = fmax(one, ibex_cli_now_s() - t0);
    }
    int k = one > 0.05 ? 1 : one > 0 ? (int)fmin(200.0, ceil(0.05 / one)) : 200; /* ~50 ms per repetition */
    double *s = malloc((size_t)b->reps * 3 * sizeof *s);
    if (!s) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    for (int r = 0; r < b->reps; r++)
        for (int i = 0; i < n; i++) {
            const int o = r % 2 ? n - 1 - i : i;
            double t = ibex_cli_now_s();
            for (int c = 0; c < k; c++) fn(b, ctx[o]);
            if ((rc = bsync(b, err))) {
                free(s);
                return rc;
            }
            s[o * b->reps + r] = (ibex_cli_now_s() - t) / k;
        }
    if (n == 2 && ratio) {
        double *q = s + 2 * b->reps;
        for (int r = 0; r < b->reps; r++) q[r] = s[b->reps + r] / s[r];
        qsort(q, (size_t)b->reps, sizeof *q, cmp_double);
        *ratio = (op_stats){median_sorted(q, b->reps), q[0], q[b->reps - 1]};
    }
    for (int o = 0; o < n; o++) {
        double *x = s + o * b->reps;
        qsort(x, (size_t)b->reps, sizeof *x, cmp_double);
        st[o] = (op_stats){median_sorted(x, b->reps), x[0], x[b->reps - 1]};
    }
    free(s);
    return IBEX_OK;
}

/* Median / min / max seconds per call of fn over b->reps repetitions of k queued calls. */
static ibex_status time_op(bench *b, op_fn fn, void *ctx, double *med, double *lo, double *hi, ibex_err *err) {
    op_stats st = {0};
    ibex_status rc = time_ops(b, fn, &ctx, 1, &st, NULL, err);
    if (!rc) *med = st.med, *lo = st.lo, *hi = st.hi;
    return rc;
}

static void add_row(bench *b, const char *op, const char *variant, double med, double lo, double hi, double bytes,
                    double flops, json_t *extra) {
    json_t *r = json_pack("{s:s,s:s,s:f,s:f,s:f,s:f,s:f}", "op", op, "variant", variant, "median_s", med, "min_s", lo,
                          "max_s", hi, "bytes", bytes, "flops", flops);
    json_object_set_new(r, "bytes_per_s", json_real(bytes / med));
    json_object_set_new(r, "flops_per_s", json_real(flops / med));
    if (extra) json_object_update(r, extra), json_decref(extra);
    json_array_append_new(b->rows, r);
}

/* ---- attention ---- */

typedef struct attn_ctx {
    float *out, *q, *k, *v;
    int32_t *table;
    ibex_kv_view view;
    int ctx, heads;
    float scale;
} attn_ctx;

static void attn_call(bench *b, void *p) {
    attn_ctx *a = p;
    b->be->attention(b->be, a->out, a->q, &a->view, 1, a->ctx - 1, a->heads, a->scale);
}

/* Decode attention over a cache of element type kvt (F32, F16, BF16): bytes are the K and
 * V rows read, ctx · 2 · kv_heads · head_dim · element size, so GB/s is the cache's read
 * rate. */
static ibex_status bench_attention_t(bench *b, const int32_t *ctxs, int n_ctx, int heads, int kv_heads, int hd, int bs,
                                     ibex_type kvt, ibex_err *err) {
    ibex_status st = IBEX_OK;
    static const ibex_attn_impl impls[] = {IBEX_ATTN_MATERIALIZED, IBEX_ATTN_PAGED, IBEX_ATTN_SPLIT_K};
    const int n_impl = b->be->set_attention ? 3 : 1;
    const size_t esz = kvt == IBEX_TYPE_F32 ? 4 : 2;
    const char *tn = ibex_kv_type_name(kvt);
    for (int c = 0; c < n_ctx && !st; c++) {
        const int ctx = ctxs[c], nb = (ctx + bs - 1) / bs;
        const size_t kvd = (size_t)kv_heads * hd, pool = (size_t)nb * bs * kvd;
        attn_ctx a = {.ctx = ctx, .heads = heads, .scale = 1.0f / sqrtf((float)hd)};
        float *h = malloc(pool * sizeof *h);
        void *hc = malloc(pool * esz);
        int32_t *perm = malloc((size_t)nb * sizeof *perm), *run = malloc((size_t)nb * sizeof *run);
        if (!h || !hc || !perm || !run) st = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        if (!st && (!(a.k = bmalloc(b, pool * esz, err)) || !(a.v = bmalloc(b, pool * esz, err)) ||
                    !(a.q = bmalloc(b, (size_t)heads * hd * 4, err)) || !(a.out = bmalloc(b, (size_t)heads * hd * 4, err)) ||
                    !(a.table = bmalloc(b, (size_t)nb * 2 * sizeof(int32_t), err))))
            st = err->status;
        if (!st) { /* K and V rounded to the cache type as kv_write would store them */
            fill(h, pool, 11), ibex_row_from_f32(hc, h, kvt, (int64_t)pool), st = bput(b, a.k, hc, pool * esz, err);
            if (!st) fill(h, pool, 22), ibex_row_from_f32(hc, h, kvt, (int64_t)pool), st = bput(b, a.v, hc, pool * esz, err);
            if (!st) fill(h, (size_t)heads * hd, 33), st = bput(b, a.q, h, (size_t)heads * hd * 4, err);
        }
        if (!st) { /* table 0: the run 0..nb−1; table 1: a seeded shuffle of it */
            uint64_t s = 0x5eed + (uint64_t)ctx;
            for (int i = 0; i < nb; i++) run[i] = perm[i] = i;
            for (int i = nb - 1; i > 0; i--) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                int j = (int)((s >> 33) % (uint64_t)(i + 1)), t = perm[i];
                perm[i] = perm[j], perm[j] = t;
            }
            if (!(st = bput(b, a.table, run, (size_t)nb * 4, err))) st = bput(b, a.table + nb, perm, (size_t)nb * 4, err);
        }
        const double kv_bytes = 2.0 * ctx * kvd * esz, flops = 4.0 * ctx * heads * hd;
        attn_ctx lay[2] = {a, a};
        for (int layout = 0; layout < 2; layout++)
            lay[layout].view = (ibex_kv_view){.k = a.k, .v = a.v, .block_table = a.table + (layout ? nb : 0),
                                              .block_size = bs, .n_kv_heads = kv_heads, .head_dim = hd,
                                              .contiguous = layout == 0, .first_block = 0, .type = kvt};
        for (int im = 0; im < n_impl && !st; im++) {
            if (b->be->set_attention && (st = b->be->set_attention(b->be, impls[im], err))) break;
            const char *kn = n_impl > 1 ? ibex_attn_impl_name(impls[im]) : b->be->name;
            op_stats ts[2] = {{0}}, ratio = {0};
            void *cs[2] = {&lay[0], &lay[1]};
            fprintf(stderr, "\r\033[Kattention ctx %d %s contiguous / paged %s", ctx, tn, kn);
            if ((st = time_ops(b, attn_call, cs, 2, ts, &ratio, err))) break;
            for (int layout = 0; layout < 2; layout++) {
                char var[96];
                snprintf(var, sizeof var, "ctx=%d kv=%s %s %s", ctx, tn, layout ? "paged" : "contiguous", kn);
                json_t *ex = json_pack("{s:i,s:s,s:s,s:s}", "ctx", ctx, "layout", layout ? "paged" : "contiguous",
                                       "kernel", kn, "kv_dtype", tn);
                if (layout) /* the paged overhead, from the paired repetitions */
                    json_object_set_new(ex, "paged_over_contiguous",
                                        json_pack("{s:f,s:f,s:f}", "median", ratio.med, "min", ratio.lo, "max", ratio.hi));
                add_row(b, "attention", var, ts[layout].med, ts[layout].lo, ts[layout].hi, kv_bytes, flops, ex);
            }
        }
        if (b->be->set_attention) b->be->set_attention(b->be, IBEX_ATTN_AUTO, NULL);
        bfree(b, a.k), bfree(b, a.v), bfree(b, a.q), bfree(b, a.out), bfree(b, a.table);
        free(h), free(hc), free(perm), free(run);
    }
    fprintf(stderr, "\r\033[K");
    return st;
}

/* Every KV type of the comma-separated list kvts the backend computes with (the others
 * are named on stderr and left out). */
static ibex_status bench_attention(bench *b, const int32_t *ctxs, int n_ctx, int heads, int kv_heads, int hd, int bs,
                                   const char *kvts, ibex_err *err) {
    ibex_status st = IBEX_OK;
    for (const char *p = kvts; *p && !st;) {
        const size_t n = strcspn(p, ",");
        char name[16];
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        ibex_type t = IBEX_TYPE_F32;
        ibex_kv_type_from_name(name, &t); /* checked when the options were read */
        ibex_err why = {0};
        if (ibex_kv_type_check(b->be, t, &why))
            fprintf(stderr, "ibex opbench: attention: %s: left out\n", why.msg);
        else
            st = bench_attention_t(b, ctxs, n_ctx, heads, kv_heads, hd, bs, t, err);
        p += n + (p[n] == ',');
    }
    return st;
}

/* ---- matmul ---- */

typedef struct mm_ctx {
    float *y, *x;
    void *w;
    ibex_type t;
    int T, n_in, n_out;
} mm_ctx;

static void mm_call(bench *b, void *p) {
    mm_ctx *m = p;
    b->be->matmul(b->be, m->y, m->x, m->w, m->t, m->T, m->n_in, m->n_out);
}

static ibex_status bench_matmul(bench *b, int dim, int ffn, const int32_t *tokens, int n_tok, ibex_type t,
                                ibex_err *err) {
    const int shapes[][2] = {{dim, dim}, {dim, ffn}, {ffn, dim}}; /* q/k/v/o, gate/up, down: n_in, n_out */
    ibex_status st = IBEX_OK;
    for (int si = 0; si < 3 && !st; si++) {
        const int n_in = shapes[si][0], n_out = shapes[si][1];
        const size_t wb = ibex_type_row_bytes(t, n_in) * (size_t)n_out;
        float *hf = malloc((size_t)n_in * n_out * sizeof *hf);
        void *hw = malloc(wb);
        mm_ctx m = {.t = t, .n_in = n_in, .n_out = n_out};
        int tmax = 1;
        for (int i = 0; i < n_tok; i++) tmax = tokens[i] > tmax ? tokens[i] : tmax;
        if (!hf || !hw) st = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        if (!st) {
            fill(hf, (size_t)n_in * n_out, 44);
            for (int r = 0; r < n_out; r++)
                if (!ibex_row_from_f32((char *)hw + ibex_type_row_bytes(t, n_in) * r, hf + (size_t)r * n_in, t, n_in))
                    st = ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "cannot store %s weights", ibex_type_name(t));
        }
        if (!st && (!(m.w = bmalloc(b, wb, err)) || !(m.x = bmalloc(b, (size_t)tmax * n_in * 4, err)) ||
                    !(m.y = bmalloc(b, (size_t)tmax * n_out * 4, err))))
            st = err->status;
        if (!st && !(st = bput(b, m.w, hw, wb, err))) {
            fill(hf, (size_t)tmax * n_in, 55);
            st = bput(b, m.x, hf, (size_t)tmax * n_in * 4, err);
        }
        for (int i = 0; i < n_tok && !st; i++) {
            m.T = tokens[i];
            double med = 0, lo = 0, hi = 0;
            fprintf(stderr, "\r\033[Kmatmul %dx%d T=%d", n_in, n_out, m.T);
            if ((st = time_op(b, mm_call, &m, &med, &lo, &hi, err))) break;
            char var[96];
            snprintf(var, sizeof var, "%s %d→%d T=%d", ibex_type_name(t), n_in, n_out, m.T);
            add_row(b, "matmul", var, med, lo, hi, (double)wb + 4.0 * m.T * (n_in + n_out), 2.0 * m.T * n_in * n_out,
                    json_pack("{s:i,s:i,s:i,s:s}", "n_in", n_in, "n_out", n_out, "tokens", m.T, "dtype",
                              ibex_type_name(t)));
        }
        bfree(b, m.w), bfree(b, m.x), bfree(b, m.y);
        free(hf), free(hw);
    }
    fprintf(stderr, "\r\033[K");
    return st;
}

/* ---- copy ---- */

typedef struct cp_ctx {
    void *dst, *src;
    size_t bytes;
} cp_ctx;

static void cp_call(bench *b, void *p) {
    cp_ctx *c = p;
    memcpy(c->dst, c->src, c->bytes);
}

static ibex_status bench_copy(bench *b, int64_t bytes, ibex_err *err) {
    if (b->be->read_bandwidth) { /* the roofline (see the file comment) */
        double bw = b->be->read_bandwidth(b->be, (size_t)bytes, err);
        if (!(bw > 0)) return err && err->status ? err->status : ibex_err_set(err, IBEX_ERR_BACKEND, "no bandwidth");
        double t = (double)bytes / bw;
        char var[64];
        snprintf(var, sizeof var, "read stream (%d threads)", ibex_backend_threads(b->be));
        add_row(b, "read", var, t, t, t, (double)bytes, 0, NULL);
    }
    if (b->be->copy_bandwidth) {
        double bw = b->be->copy_bandwidth(b->be, (size_t)bytes, err);
        if (!(bw > 0)) return err && err->status ? err->status : ibex_err_set(err, IBEX_ERR_BACKEND, "no bandwidth");
        double t = 2.0 * bytes / bw;
        add_row(b, "copy", "device to device", t, t, t, 2.0 * bytes, 0, NULL);
        return IBEX_OK;
    }
    if (b->dev) return IBEX_OK; /* a device backend without a copy benchmark: nothing honest to report */
    cp_ctx c = {.bytes = (size_t)bytes};
    c.src = ibex_alloc(IBEX_MEM_OTHER, c.bytes, 1), c.dst = ibex_alloc(IBEX_MEM_OTHER, c.bytes, 1);
    ibex_status st = IBEX_OK;
    double med = 0, lo = 0, hi = 0;
    if (!c.src || !c.dst)
        st = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for two %lld-byte buffers", (long long)bytes);
    else if (!(st = time_op(b, cp_call, &c, &med, &lo, &hi, err)))
        add_row(b, "copy", "memcpy (one thread)", med, lo, hi, 2.0 * bytes, 0, NULL);
    ibex_free(c.src), ibex_free(c.dst);
    return st;
}

/* ---- the command ---- */

static bool has(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    return false;
}

int ibex_cmd_opbench(int argc, char **argv) {
    const char *backend = "auto", *ops = "attention,matmul,copy", *dtype = "f16";
    const char *ctx_list = "1024,4096,16384", *tok_list = "1", *kv_dtypes = "f16";
    int64_t heads = 32, kv_heads = 8, hd = 128, bs = 16, dim = 4096, ffn = 11008, reps = 7, threads = 0, copy_bytes = 0;
    bool json_out = false;
    static const char *const opts[] = {"--backend", "--op", "--ctx", "--heads", "--kv-heads", "--head-dim",
                                       "--block-size", "--dim", "--ffn", "--tokens", "--dtype", "--kv-dtype", "--copy-bytes",
                                       "--repetitions", "--threads", "--json", "--help", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        struct {
            const char *name;
            int64_t *dst, lo, hi;
        } ints[] = {{"--heads", &heads, 1, 1024},       {"--kv-heads", &kv_heads, 1, 1024}, {"--head-dim", &hd, 1, 1024},
                    {"--block-size", &bs, 1, 4096},     {"--dim", &dim, 1, 1 << 20},         {"--ffn", &ffn, 1, 1 << 20},
                    {"--repetitions", &reps, 1, 1000},  {"-r", &reps, 1, 1000},              {"--threads", &threads, 1, 1024},
                    {"-t", &threads, 1, 1024}};
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++)
            if (!strcmp(a, ints[k].name)) {
                if (!ibex_cli_int("opbench", a, v, ints[k].lo, ints[k].hi, ints[k].dst)) return 2;
                i++, done = true;
            }
        if (done) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json_out = true;
        } else if (!strcmp(a, "--backend") && v) {
            backend = v, i++;
        } else if (!strcmp(a, "--op") && v) {
            ops = v, i++;
        } else if (!strcmp(a, "--ctx") && v) {
            ctx_list = v, i++;
        } else if (!strcmp(a, "--tokens") && v) {
            tok_list = v, i++;
        } else if (!strcmp(a, "--dtype") && v) {
            dtype = v, i++;
        } else if ((!strcmp(a, "--kv-dtype") || !strcmp(a, "-ctk")) && v) {
            kv_dtypes = v, i++;
        } else if (!strcmp(a, "--copy-bytes")) {
            if (!ibex_cli_size("opbench", a, v, &copy_bytes)) return 2;
            i++;
        } else {
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            fprintf(stderr, "ibex opbench: unknown option or missing value '%s'%s%s%s\n", a, s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            return 2;
        }
    }
    for (const char *p = ops; *p;) {
        size_t n = strcspn(p, ",");
        if (!((n == 9 && !strncmp(p, "attention", 9)) || (n == 6 && !strncmp(p, "matmul", 6)) ||
              (n == 4 && !strncmp(p, "copy", 4)))) {
            fprintf(stderr, "ibex opbench: --op: unknown op '%.*s' (expected attention, matmul, copy)\n", (int)n, p);
            return 2;
        }
        p += n + (p[n] == ',');
    }
    if (heads % kv_heads) {
        fprintf(stderr, "ibex opbench: --heads %lld is not a multiple of --kv-heads %lld\n", (long long)heads,
                (long long)kv_heads);
        return 2;
    }
    for (const char *p = kv_dtypes; *p;) {
        const size_t n = strcspn(p, ",");
        char name[16];
        ibex_type kt;
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        if (n >= sizeof name || !ibex_kv_type_from_name(name, &kt)) {
            fprintf(stderr, "ibex opbench: --kv-dtype: unknown type '%.*s' (expected f16, bf16, f32)\n", (int)n, p);
            return 2;
        }
        p += n + (p[n] == ',');
    }
    ibex_type t;
    if (!ibex_type_from_name(dtype, &t) || !ibex_type_traits_get(t)->compute) {
        fprintf(stderr, "ibex opbench: --dtype: unknown type '%s' (expected f16, bf16, f32)\n", dtype);
        return 2;
    }
    int32_t *ctxs = NULL, *toks = NULL, n_ctx = 0, n_tok = 0;
    if (!ibex_cli_int_list("opbench", "--ctx", ctx_list, &ctxs, &n_ctx) ||
        !ibex_cli_int_list("opbench", "--tokens", tok_list, &toks, &n_tok)) {
        free(ctxs);
        return 2;
    }
    for (int i = 0; i < n_ctx; i++)
        if (ctxs[i] < 1 || ctxs[i] > (1 << 22)) {
            fprintf(stderr, "ibex opbench: --ctx: %d is outside 1..%d\n", ctxs[i], 1 << 22);
            free(ctxs), free(toks);
            return 2;
        }
    for (int i = 0; i < n_tok; i++)
        if (toks[i] < 1 || toks[i] > 65536) {
            fprintf(stderr, "ibex opbench: --tokens: %d is outside 1..65536\n", toks[i]);
            free(ctxs), free(toks);
            return 2;
        }
    ibex_err err = {0};
    const char *note = "";
    bench b = {.reps = (int)reps, .rows = json_array()};
    b.be = ibex_backend_open(backend, (int)threads, &note, &err);
    int rc = 1;
    if (!b.be) {
        fprintf(stderr, "ibex opbench: %s\n", err.msg);
        goto out;
    }
    if (note[0]) fprintf(stderr, "ibex opbench: %s\n", note);
    b.dev = b.be->alloc != NULL;
    if (!copy_bytes) copy_bytes = 1ll << 30;
    ibex_status st = IBEX_OK;
    if (has(ops, "copy")) st = bench_copy(&b, copy_bytes, &err);
    if (!st && has(ops, "attention"))
        st = bench_attention(&b, ctxs, n_ctx, (int)heads, (int)kv_heads, (int)hd, (int)bs, kv_dtypes, &err);
    if (!st && has(ops, "matmul")) st = bench_matmul(&b, (int)dim, (int)ffn, toks, n_tok, t, &err);
    if (st) fprintf(stderr, "ibex opbench: %s\n", err.msg);

    /* what was measured is printed even after a failure */
    ibex_device_info di = {0};
    snprintf(di.name, sizeof di.name, "%s", b.be->name);
    if (b.be->device_info) b.be->device_info(b.be, &di);
    /* the memory roofline: the read stream where there is one, else the copy */
    double roof = 0, copy = 0;
    for (size_t i = 0; i < json_array_size(b.rows); i++) {
        json_t *r = json_array_get(b.rows, i);
        const char *op = json_string_value(json_object_get(r, "op"));
        if (!strcmp(op, "read")) roof = json_number_value(json_object_get(r, "bytes_per_s"));
        if (!strcmp(op, "copy")) copy = json_number_value(json_object_get(r, "bytes_per_s"));
    }
    const char *roof_kind = roof > 0 ? "read stream" : "copy";
    if (!(roof > 0)) roof = copy;
    /* the compute roofline, only when a matmul ran */
    double peak = 0;
    if (has(ops, "matmul") && b.be->peak_flops) peak = b.be->peak_flops(b.be, &err);
    for (size_t i = 0; i < json_array_size(b.rows); i++) {
        json_t *r = json_array_get(b.rows, i);
        double bps = json_number_value(json_object_get(r, "bytes_per_s"));
        double fps = json_number_value(json_object_get(r, "flops_per_s"));
        json_object_set_new(r, "roofline_fraction", roof > 0 ? json_real(bps / roof) : json_null());
        json_object_set_new(r, "peak_flops_fraction", peak > 0 && fps > 0 ? json_real(fps / peak) : json_null());
    }
    if (json_out) {
        json_t *o = json_pack("{s:s,s:s,s:I,s:O,s:s}", "backend", b.be->name, "device", di.name, "repetitions",
                              (json_int_t)reps, "rows", b.rows, "roofline_kind", roof_kind);
        json_object_set_new(o, "peak_flops_per_s", peak > 0 ? json_real(peak) : json_null());
        json_dumpf(o, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
        printf("\n");
        json_decref(o);
    } else {
        printf("backend %s, device %s; median of %lld repetitions (min–max); roofline = measured %s bandwidth",
               b.be->name, di.name, (long long)reps, roof_kind);
        if (peak > 0) printf("; peak = measured F32 FMA rate, %.1f GFLOP/s", peak / 1e9);
        printf("\n\n| op | variant | time µs | min–max µs | GB/s | of roofline | GFLOP/s | of peak |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|\n");
        for (size_t i = 0; i < json_array_size(b.rows); i++) {
            json_t *r = json_array_get(b.rows, i);
            double med = json_number_value(json_object_get(r, "median_s"));
            json_t *fr = json_object_get(r, "roofline_fraction");
            json_t *pf = json_object_get(r, "peak_flops_fraction");
            char frs[32] = "–", pfs[32] = "–";
            if (json_is_number(fr)) snprintf(frs, sizeof frs, "%.1f %%", 100 * json_number_value(fr));
            if (json_is_number(pf)) snprintf(pfs, sizeof pfs, "%.1f %%", 100 * json_number_value(pf));
            printf("| %s | %s | %.2f | %.2f–%.2f | %.1f | %s | %.1f | %s |\n", json_string_value(json_object_get(r, "op")),
                   json_string_value(json_object_get(r, "variant")), med * 1e6,
                   json_number_value(json_object_get(r, "min_s")) * 1e6,
                   json_number_value(json_object_get(r, "max_s")) * 1e6,
                   json_number_value(json_object_get(r, "bytes_per_s")) / 1e9, frs,
                   json_number_value(json_object_get(r, "flops_per_s")) / 1e9, pfs);
        }
        bool head = false; /* the paged overhead, per-repetition ratios of the interleaved runs */
        for (size_t i = 0; i < json_array_size(b.rows); i++) {
            json_t *r = json_array_get(b.rows, i), *po = json_object_get(r, "paged_over_contiguous");
            if (!po) continue;
            if (!head)
                printf("\npaged / contiguous time, median of %lld paired repetitions (min–max), layouts run "
                       "interleaved:\n\n| ctx | KV | kernel | paged / contiguous |\n|---:|---|---|---:|\n",
                       (long long)reps),
                    head = true;
            printf("| %lld | %s | %s | %.3f (%.3f–%.3f) |\n",
                   (long long)json_integer_value(json_object_get(r, "ctx")),
                   json_string_value(json_object_get(r, "kv_dtype")), json_string_value(json_object_get(r, "kernel")),
                   json_number_value(json_object_get(po, "median")), json_number_value(json_object_get(po, "min")),
                   json_number_value(json_object_get(po, "max")));
        }
    }
    rc = st ? 1 : 0;
out:
    json_decref(b.rows);
    ibex_backend_free(b.be);
    free(ctxs), free(toks);
    return rc;
}
