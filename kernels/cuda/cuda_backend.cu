/* cuda_backend.cu — the CUDA backend: its constructor, device memory tracked by kind, the
 * weight cache, host<->device copies, sync with its sticky error, device_info and
 * copy_bandwidth. Each op lives in its own cuda_<op>.cu.
 *
 * Design notes:
 *  1. Ownership. The backend owns every device buffer it hands out: alloc'ed buffers until
 *     dealloc (or the backend's free), weight copies and the op scratch until the backend's
 *     free, plus one stream, one cuBLAS handle and its workspace. free() releases all of
 *     them, so a caller that forgets a dealloc leaks nothing past the backend.
 *  2. Stream. All work goes to one non-blocking stream (it never waits on the legacy
 *     default stream). Ops only queue kernels and return; upload, download, weight and
 *     sync wait for the stream. cuBLAS is bound to the same stream, so the order of ops is
 *     the order of calls.
 *  3. Error model. Ops return nothing, so a failing CUDA or cuBLAS call (or an unsupported
 *     type or head_dim) is recorded as the backend's sticky error: the first one since the
 *     last sync wins, with the statement, function, file, line and error string. sync()
 *     returns it and clears it. Functions with an ibex_err (upload, download, weight,
 *     alloc...) also fill it directly. A device that is full is not sticky: alloc returns
 *     NULL with IBEX_ERR_NOMEM and the caller may retry smaller. Nothing here exits or
 *     prints. After a device fault (illegal address) CUDA itself fails every later call,
 *     so every sync keeps reporting it.
 *  4. Memory accounting. Every cudaMalloc goes through ibex_cuda_buf_alloc, which records
 *     (bytes asked, kind) in a hash map keyed by the device pointer; dealloc subtracts
 *     exactly what alloc added, and the peak is the most bytes held at once. Weights count
 *     as IBEX_BUF_WEIGHTS; the cuBLAS workspace, the op scratch and copy_bandwidth's
 *     temporary buffers as IBEX_BUF_WORKSPACE. Not counted: the CUDA context and cuBLAS's
 *     own handle state (mem_total − mem_free shows them).
 *  5. Weights are cached by host pointer: the second weight() call with the same pointer
 *     (tied embeddings) returns the same device copy without uploading again. So a host
 *     tensor must outlive its use by the backend: another tensor later placed at the same
 *     address would get the old copy (the runner opens one backend per point).
 *  6. Why a hand-written matrix-vector kernel (cuda_matmul.cu): decode at batch 1 reads
 *     every weight once per token, so it is bound by HBM bandwidth, not FLOPs. cuBLAS would
 *     need x converted to F16/BF16 (losing precision the CPU keeps); the matvec kernel
 *     streams F16/BF16 weight rows with 128-bit loads and keeps x and the sums in F32.
 *     cuBLAS (tensor cores) takes T > 4, where reuse of each weight makes it compute bound.
 *  7. Libraries: cudart is linked statically and cuBLAS is opened at run time
 *     (cuda_cublas.cu, before anything else in the constructor), so the binary needs no
 *     CUDA shared library to start and a missing cuBLAS is this constructor's error.
 *  8. Counters (get_counters): every launch check, cuBLAS call and graph launch adds to
 *     launches, every stream or event wait to syncs, every cudaMalloc/cudaFree to
 *     allocs/frees, every copy its bytes by direction. They are what the tests of "one
 *     sync, no allocation per decode step" read, and results.json's device_counters.
 *  9. Pinned staging (host_alloc): copies from or to those buffers are queued without a
 *     wait; the forward pass packs a step's ids, positions, KV slots and block tables in
 *     one and reads the logits back through another, so a step waits once.
 * 10. Marks (mark/mark_elapsed_ms): events recorded between ops, read after the step's
 *     sync: per-op device times without a wait per op.
 * 11. Graphs (graph_begin/graph_end): stream capture in thread-local mode, so a sync or a
 *     cudaMalloc inside it fails the capture instead of running; the executable graph is
 *     kept and updated in place (cudaGraphExecUpdate) while the topology stays the same.
 * 12. Threads: a backend serves one host thread at a time; every entry point first makes
 *     the backend's device current, so that thread may change between calls. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_attention.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_elementwise.cuh"
#include "kernels/cuda/cuda_embed.cuh"
#include "kernels/cuda/cuda_kv.cuh"
#include "kernels/cuda/cuda_matmul.cuh"
#include "kernels/cuda/cuda_norm.cuh"
#include "kernels/cuda/cuda_rope.cuh"

/* cuBLAS workspace: NVIDIA's recommendation for Hopper is 32 MiB. */
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
/* Op scratch at construction: split-K sizes its partials to about sm_count·32 of
 * (head_dim+2) floats (132·32·258·4 B ≈ 4.4 MiB on an H100 at head_dim 256), and the F16
 * copy of x for T ≤ 64 tokens of 8192 is 1 MiB: 16 MiB, so a decode step never grows it. */
#define SCRATCH_INITIAL_BYTES ((size_t)16 << 20)
/* copy_bandwidth: timed copies after the warm-up (odd, so the median is one sample). */
#define BW_REPS 11

/* ---- errors ---- */

/* "kernels/cuda/x.cu" out of nvcc's absolute __FILE__. */
static const char *short_file(const char *file) {
    const char *k = strstr(file, "kernels/");
    return k ? k : file;
}

ibex_status ibex_cuda_fail(ibex_cuda_ctx *ctx, ibex_err *err, ibex_status st, const char *stmt,
                           const char *func, const char *file, int line, const char *why) {
    (void)cudaGetLastError(); /* so the next launch check does not report this call again */
    char msg[sizeof(((ibex_err *)0)->msg)];
    snprintf(msg, sizeof msg, "CUDA: %.200s failed: %s (in %s, %s:%d)", stmt, why, func,
             short_file(file), line);
    if (ctx && ctx->err.status == IBEX_OK) ibex_err_set(&ctx->err, st, "%s", msg);
    return ibex_err_set(err, st, "%s", msg);
}

void ibex_cuda_record(ibex_cuda_ctx *ctx, ibex_status st, const char *fmt, ...) {
    if (ctx->err.status != IBEX_OK) return;
    char msg[sizeof ctx->err.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ibex_err_set(&ctx->err, st, "%s", msg);
}

/* ---- pointer map ---- */

static size_t map_slot(uintptr_t k, size_t mask) {
    uint64_t z = (uint64_t)k;
    z ^= z >> 33;
    z *= 0xff51afd7ed558ccdull;
    z ^= z >> 33;
    return (size_t)z & mask;
}

static ibex_cuda_entry *map_find(const ibex_cuda_map *m, uintptr_t key) {
    if (m->cap == 0 || key == 0) return NULL;
    const size_t mask = m->cap - 1;
    for (size_t i = map_slot(key, mask);; i = (i + 1) & mask) {
        if (m->e[i].key == key) return &m->e[i];
        if (m->e[i].key == 0) return NULL; /* load ≤ 1/2: an empty slot always exists */
    }
}

/* Inserts en (its key must not be present). False on host allocation failure. */
static bool map_put(ibex_cuda_map *m, const ibex_cuda_entry *en) {
    if ((m->len + 1) * 2 > m->cap) {
        const size_t ncap = m->cap ? m->cap * 2 : 64;
        ibex_cuda_entry *ne = (ibex_cuda_entry *)calloc(ncap, sizeof *ne);
        if (!ne) return false;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->e[i].key == 0) continue;
            size_t j = map_slot(m->e[i].key, ncap - 1);
            while (ne[j].key != 0) j = (j + 1) & (ncap - 1);
            ne[j] = m->e[i];
        }
        free(m->e);
        m->e = ne;
        m->cap = ncap;
    }
    const size_t mask = m->cap - 1;
    size_t i = map_slot(en->key, mask);
    while (m->e[i].key != 0) i = (i + 1) & mask;
    m->e[i] = *en;
    m->len++;
    return true;
}

/* Removes the entry at slot (from map_find), shifting later members of its probe run back
 * so that lookups never stop early at the hole. */
static void map_del(ibex_cuda_map *m, ibex_cuda_entry *slot) {
    const size_t mask = m->cap - 1;
    size_t hole = (size_t)(slot - m->e), j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (m->e[j].key == 0) break;
        const size_t home = map_slot(m->e[j].key, mask);
        /* entry j may move into the hole unless its home lies cyclically in (hole, j] */
        const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            m->e[hole] = m->e[j];
            hole = j;
        }
    }
    memset(&m->e[hole], 0, sizeof m->e[hole]);
    m->len--;
}

/* ---- tracked memory ---- */

static const char *kind_name(int kind) {
    static const char *const names[IBEX_BUF_KIND_COUNT] = {"weights", "KV cache", "activations",
                                                           "workspace"};
    return (unsigned)kind < IBEX_BUF_KIND_COUNT ? names[kind] : "?";
}

void *ibex_cuda_buf_alloc(ibex_cuda_ctx *ctx, size_t bytes, ibex_buf_kind kind, bool weight,
                          ibex_err *err) {
    const size_t n = bytes ? bytes : 1; /* a real, distinct pointer even for 0 bytes */
    void *p = NULL;
    ctx->cnt.allocs++;
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        ibex_err_set(err, e == cudaErrorMemoryAllocation ? IBEX_ERR_NOMEM : IBEX_ERR_BACKEND,
                     "CUDA: cudaMalloc of %zu bytes (%s) on device %d failed: %s "
                     "(this backend holds %.1f MiB)",
                     bytes, kind_name(kind), ctx->device, cudaGetErrorString(e),
                     (double)ctx->held_total / 1048576.0);
        return NULL;
    }
    if (IBEX_CUDA_TRY(ctx, err, cudaMemsetAsync(p, 0, n, ctx->stream)) != IBEX_OK) {
        (void)ibex_cuda_stream_sync(ctx);
        (void)cudaFree(p);
        (void)cudaGetLastError();
        return NULL;
    }
    ibex_cuda_entry en;
    memset(&en, 0, sizeof en);
    en.key = (uintptr_t)p;
    en.dev = p;
    en.bytes = bytes;
    en.kind = (int)kind;
    en.weight = weight;
    if (!map_put(&ctx->bufs, &en)) {
        (void)ibex_cuda_stream_sync(ctx);
        (void)cudaFree(p);
        ibex_err_set(err, IBEX_ERR_NOMEM, "CUDA: out of host memory for the buffer table");
        return NULL;
    }
    ctx->held[kind] += (int64_t)bytes;
    ctx->held_total += (int64_t)bytes;
    if (ctx->held_total > ctx->peak) ctx->peak = ctx->held_total;
    return p;
}

bool ibex_cuda_buf_free(ibex_cuda_ctx *ctx, void *p) {
    ibex_cuda_entry *en = map_find(&ctx->bufs, (uintptr_t)p);
    if (!en) return false;
    ctx->held[en->kind] -= (int64_t)en->bytes;
    ctx->held_total -= (int64_t)en->bytes;
    map_del(&ctx->bufs, en);
    /* queued kernels may still read p: let them finish first */
    (void)IBEX_CUDA_TRY(ctx, NULL, ibex_cuda_stream_sync(ctx));
    ctx->cnt.frees++;
    (void)IBEX_CUDA_TRY(ctx, NULL, cudaFree(p));
    return true;
}

void *ibex_cuda_scratch(ibex_cuda_ctx *ctx, size_t bytes) {
    if (ctx->scratch && bytes <= ctx->scratch_bytes) return ctx->scratch;
    /* grow by half again, in whole MiB, so a context that grows token by token does not
     * reallocate at every step; fall back to the exact size when the device is tight */
    const size_t mib = (size_t)1 << 20;
    const size_t want = (bytes + bytes / 2 + mib - 1) & ~(mib - 1);
    if (ctx->scratch) ibex_cuda_buf_free(ctx, ctx->scratch); /* waits for the stream */
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    ibex_err e;
    memset(&e, 0, sizeof e);
    size_t got = want;
    void *p = ibex_cuda_buf_alloc(ctx, want, IBEX_BUF_WORKSPACE, false, &e);
    if (!p) {
        got = bytes;
        p = ibex_cuda_buf_alloc(ctx, bytes, IBEX_BUF_WORKSPACE, false, &e);
    }
    if (!p) {
        ibex_cuda_record(ctx, e.status, "CUDA: op scratch of %zu bytes: %s", bytes, e.msg);
        return NULL;
    }
    ctx->scratch = p;
    ctx->scratch_bytes = got;
    return p;
}

/* ---- the memory entry points ---- */

static void *cuda_alloc(ibex_backend *be, size_t bytes, ibex_buf_kind kind, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if ((unsigned)kind >= IBEX_BUF_KIND_COUNT) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CUDA alloc: unknown buffer kind %d", (int)kind);
        return NULL;
    }
    IBEX_CUDA_CHECK_RET(ctx, err, ibex_cuda_enter(ctx), NULL);
    return ibex_cuda_buf_alloc(ctx, bytes, kind, false, err);
}

static void cuda_dealloc(ibex_backend *be, void *p) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (!p) return;
    const ibex_cuda_entry *en = map_find(&ctx->bufs, (uintptr_t)p);
    if (!en) {
        ibex_cuda_record(ctx, IBEX_ERR_INVALID,
                         "CUDA dealloc: %p was not allocated by this backend (or is freed already)", p);
        return;
    }
    if (en->weight) {
        ibex_cuda_record(ctx, IBEX_ERR_INVALID,
                         "CUDA dealloc: %p is a cached weight; weights are freed with the backend", p);
        return;
    }
    if (ibex_cuda_enter(ctx) != cudaSuccess) (void)cudaGetLastError();
    ibex_cuda_buf_free(ctx, p);
}

static const void *cuda_weight(ibex_backend *be, const void *host, size_t bytes, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (!host) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CUDA weight: NULL host pointer");
        return NULL;
    }
    const ibex_cuda_entry *en = map_find(&ctx->weights, (uintptr_t)host);
    if (en) {
        if (bytes > en->bytes) {
            ibex_err_set(err, IBEX_ERR_INVALID,
                         "CUDA weight: host tensor %p was uploaded with %zu bytes, now asked for %zu",
                         host, en->bytes, bytes);
            return NULL;
        }
        return en->dev;
    }
    IBEX_CUDA_CHECK_RET(ctx, err, ibex_cuda_enter(ctx), NULL);
    void *d = ibex_cuda_buf_alloc(ctx, bytes, IBEX_BUF_WEIGHTS, true, err);
    if (!d) return NULL;
    ctx->cnt.h2d_bytes += (int64_t)bytes;
    if (bytes > 0 &&
        (IBEX_CUDA_TRY(ctx, err, cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, ctx->stream)) != IBEX_OK ||
         IBEX_CUDA_TRY(ctx, err, ibex_cuda_stream_sync(ctx)) != IBEX_OK)) {
        ibex_cuda_buf_free(ctx, d);
        return NULL;
    }
    ibex_cuda_entry w;
    memset(&w, 0, sizeof w);
    w.key = (uintptr_t)host;
    w.dev = d;
    w.bytes = bytes;
    w.kind = IBEX_BUF_WEIGHTS;
    w.weight = true;
    if (!map_put(&ctx->weights, &w)) {
        ibex_cuda_buf_free(ctx, d);
        ibex_err_set(err, IBEX_ERR_NOMEM, "CUDA weight: out of host memory for the weight cache");
        return NULL;
    }
    return d;
}

/* n tensors end to end in one device buffer, cached under key hosts[0] + n (weights are
 * at least 2-byte aligned, so the key never equals a plain weight's host pointer; n < 8
 * keeps it inside the first tensor, so no other tensor's address collides). */
static const void *cuda_weight_cat(ibex_backend *be, const void *const *hosts, const size_t *bytes, int n,
                                   ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (n < 1 || n > 7 || !hosts || !bytes || !hosts[0]) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CUDA weight_cat: %d tensors (1..7 with host pointers)", n);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += bytes[i];
    const uintptr_t key = (uintptr_t)hosts[0] + (uintptr_t)n;
    const ibex_cuda_entry *en = map_find(&ctx->weights, key);
    if (en) {
        if (total != en->bytes) {
            ibex_err_set(err, IBEX_ERR_INVALID, "CUDA weight_cat: tensors at %p were joined as %zu bytes, now %zu",
                         hosts[0], en->bytes, total);
            return NULL;
        }
        return en->dev;
    }
    IBEX_CUDA_CHECK_RET(ctx, err, ibex_cuda_enter(ctx), NULL);
    char *d = (char *)ibex_cuda_buf_alloc(ctx, total, IBEX_BUF_WEIGHTS, true, err);
    if (!d) return NULL;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (bytes[i] && IBEX_CUDA_TRY(ctx, err, cudaMemcpyAsync(d + off, hosts[i], bytes[i], cudaMemcpyHostToDevice,
                                                                ctx->stream)) != IBEX_OK) {
            ibex_cuda_buf_free(ctx, d);
            return NULL;
        }
        off += bytes[i];
    }
    ctx->cnt.h2d_bytes += (int64_t)total;
    if (IBEX_CUDA_TRY(ctx, err, ibex_cuda_stream_sync(ctx)) != IBEX_OK) {
        ibex_cuda_buf_free(ctx, d);
        return NULL;
    }
    ibex_cuda_entry w;
    memset(&w, 0, sizeof w);
    w.key = key;
    w.dev = d;
    w.bytes = total;
    w.kind = IBEX_BUF_WEIGHTS;
    w.weight = true;
    if (!map_put(&ctx->weights, &w)) {
        ibex_cuda_buf_free(ctx, d);
        ibex_err_set(err, IBEX_ERR_NOMEM, "CUDA weight_cat: out of host memory for the weight cache");
        return NULL;
    }
    return d;
}

/* True when [p, p+bytes) lies in one pinned buffer from cuda_host_alloc. */
static bool is_pinned(const ibex_cuda_ctx *ctx, const void *p, size_t bytes) {
    const char *c = (const char *)p;
    for (int i = 0; i < ctx->n_pinned; i++)
        if (c >= ctx->pinned[i].p && c + bytes <= ctx->pinned[i].p + ctx->pinned[i].bytes) return true;
    return false;
}

static void *cuda_host_alloc(ibex_backend *be, size_t bytes, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    IBEX_CUDA_CHECK_RET(ctx, err, ibex_cuda_enter(ctx), NULL);
    if (ctx->n_pinned == ctx->cap_pinned) {
        const int cap = ctx->cap_pinned ? 2 * ctx->cap_pinned : 8;
        void *np = realloc(ctx->pinned, (size_t)cap * sizeof *ctx->pinned);
        if (!np) {
            ibex_err_set(err, IBEX_ERR_NOMEM, "CUDA host_alloc: out of host memory for the pinned table");
            return NULL;
        }
        ctx->pinned = (struct ibex_cuda_ctx::ibex_cuda_pinned *)np;
        ctx->cap_pinned = cap;
    }
    void *p = NULL;
    IBEX_CUDA_CHECK_RET(ctx, err, cudaMallocHost(&p, bytes ? bytes : 1), NULL);
    ctx->pinned[ctx->n_pinned].p = (char *)p;
    ctx->pinned[ctx->n_pinned].bytes = bytes;
    ctx->n_pinned++;
    return p;
}

static void cuda_host_free(ibex_backend *be, void *p) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (!p) return;
    for (int i = 0; i < ctx->n_pinned; i++) {
        if (ctx->pinned[i].p != p) continue;
        ctx->pinned[i] = ctx->pinned[--ctx->n_pinned];
        /* a queued copy may still read or write it */
        (void)IBEX_CUDA_TRY(ctx, NULL, ibex_cuda_stream_sync(ctx));
        (void)IBEX_CUDA_TRY(ctx, NULL, cudaFreeHost(p));
        return;
    }
    ibex_cuda_record(ctx, IBEX_ERR_INVALID, "CUDA host_free: %p is not pinned memory of this backend", p);
}

/* From pinned memory the copy is only queued (the caller leaves src alone until the next
 * sync); from any other memory it waits, so the caller may reuse src at once. */
static ibex_status cuda_upload(ibex_backend *be, void *dst, const void *src, size_t bytes, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (bytes == 0) return IBEX_OK;
    IBEX_CUDA_CHECK(ctx, err, ibex_cuda_enter(ctx));
    ctx->cnt.h2d_bytes += (int64_t)bytes;
    IBEX_CUDA_CHECK(ctx, err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream));
    if (!is_pinned(ctx, src, bytes)) IBEX_CUDA_CHECK(ctx, err, ibex_cuda_stream_sync(ctx));
    return IBEX_OK;
}

/* Into pinned memory the copy is only queued (valid after the next sync). */
static ibex_status cuda_download(ibex_backend *be, void *dst, const void *src, size_t bytes, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (bytes == 0) return IBEX_OK;
    IBEX_CUDA_CHECK(ctx, err, ibex_cuda_enter(ctx));
    ctx->cnt.d2h_bytes += (int64_t)bytes;
    IBEX_CUDA_CHECK(ctx, err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    if (!is_pinned(ctx, dst, bytes)) IBEX_CUDA_CHECK(ctx, err, ibex_cuda_stream_sync(ctx));
    return IBEX_OK;
}

static void cuda_copy(ibex_backend *be, void *dst, const void *src, size_t bytes) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (bytes == 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    ctx->cnt.d2d_bytes += (int64_t)bytes;
    IBEX_CUDA_CHECK_OP(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
}

static ibex_status cuda_sync(ibex_backend *be, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (IBEX_CUDA_TRY(ctx, NULL, ibex_cuda_enter(ctx)) == IBEX_OK)
        (void)IBEX_CUDA_TRY(ctx, NULL, ibex_cuda_stream_sync(ctx));
    const ibex_status st = ctx->err.status;
    if (st == IBEX_OK) return IBEX_OK;
    if (err) *err = ctx->err;
    memset(&ctx->err, 0, sizeof ctx->err);
    return st;
}

static ibex_status cuda_set_attention(ibex_backend *be, ibex_attn_impl impl, ibex_err *err) {
    if ((unsigned)impl >= IBEX_ATTN_IMPL_COUNT)
        return ibex_err_set(err, IBEX_ERR_INVALID, "CUDA: unknown attention implementation %d", (int)impl);
    ibex_cuda_ctx_of(be)->attn = impl;
    return IBEX_OK;
}

static void cuda_device_info(ibex_backend *be, ibex_device_info *out) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", ctx->name);
    out->cc_major = ctx->cc_major;
    out->cc_minor = ctx->cc_minor;
    out->sm_count = ctx->sm_count;
    for (int k = 0; k < IBEX_BUF_KIND_COUNT; k++) out->buf_bytes[k] = ctx->held[k];
    out->buf_peak = ctx->peak;
    out->spec_bandwidth = ctx->spec_bw;
    size_t free_b = 0, total_b = 0;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    IBEX_CUDA_CHECK_OP(ctx, cudaMemGetInfo(&free_b, &total_b));
    out->mem_free = (int64_t)free_b;
    out->mem_total = (int64_t)total_b;
}

static int cuda_mark(ibex_backend *be) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (ctx->n_marks >= IBEX_CUDA_MAX_MARKS) return -1;
    if (!ctx->marks && !(ctx->marks = (cudaEvent_t *)calloc(IBEX_CUDA_MAX_MARKS, sizeof *ctx->marks))) return -1;
    if (IBEX_CUDA_TRY(ctx, NULL, ibex_cuda_enter(ctx)) != IBEX_OK) return -1;
    if (ctx->n_marks == ctx->n_created) {
        if (IBEX_CUDA_TRY(ctx, NULL, cudaEventCreate(&ctx->marks[ctx->n_created])) != IBEX_OK) return -1;
        ctx->n_created++;
    }
    if (IBEX_CUDA_TRY(ctx, NULL, cudaEventRecord(ctx->marks[ctx->n_marks], ctx->stream)) != IBEX_OK) return -1;
    return ctx->n_marks++;
}

static double cuda_mark_elapsed_ms(ibex_backend *be, int a, int b) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    float ms = 0.0f;
    if (a < 0 || b < 0 || a >= ctx->n_marks || b >= ctx->n_marks ||
        cudaEventElapsedTime(&ms, ctx->marks[a], ctx->marks[b]) != cudaSuccess) {
        (void)cudaGetLastError();
        return NAN;
    }
    return (double)ms;
}

static void cuda_marks_reset(ibex_backend *be) { ibex_cuda_ctx_of(be)->n_marks = 0; }

static ibex_status cuda_graph_begin(ibex_backend *be, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (ctx->capturing) return ibex_err_set(err, IBEX_ERR_INVALID, "CUDA graph_begin: already capturing");
    if (ctx->err.status) { /* an earlier error belongs to the caller's next sync, not to this graph */
        if (err) *err = ctx->err;
        return ctx->err.status;
    }
    IBEX_CUDA_CHECK(ctx, err, ibex_cuda_enter(ctx));
    IBEX_CUDA_CHECK(ctx, err, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
    ctx->capturing = true;
    ctx->launches_at_capture = ctx->cnt.launches;
    return IBEX_OK;
}

static ibex_status cuda_graph_end(ibex_backend *be, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (!ctx->capturing) return ibex_err_set(err, IBEX_ERR_INVALID, "CUDA graph_end: not capturing");
    ctx->capturing = false;
    /* captured kernels are not launches: the graph launch below is the one */
    ctx->cnt.launches = ctx->launches_at_capture;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(ctx->stream, &g);
    if (e != cudaSuccess || ctx->err.status) {
        /* an op failed inside the capture (a sync, an allocation, a bad launch): nothing
         * ran; the error is this capture's, not the stream's */
        char why[sizeof ctx->err.msg];
        snprintf(why, sizeof why, "%s", ctx->err.status ? ctx->err.msg : cudaGetErrorString(e));
        memset(&ctx->err, 0, sizeof ctx->err);
        if (g) (void)cudaGraphDestroy(g);
        (void)cudaGetLastError();
        return ibex_err_set(err, IBEX_ERR_BACKEND, "CUDA graph capture failed: %s", why);
    }
    bool updated = false;
    if (ctx->gexec) {
        cudaGraphExecUpdateResultInfo info;
        memset(&info, 0, sizeof info);
        updated = cudaGraphExecUpdate(ctx->gexec, g, &info) == cudaSuccess;
        if (!updated) {
            (void)cudaGetLastError();
            (void)cudaGraphExecDestroy(ctx->gexec);
            ctx->gexec = NULL;
        }
    }
    if (!updated) {
        e = cudaGraphInstantiate(&ctx->gexec, g, 0);
        if (e != cudaSuccess) {
            ctx->gexec = NULL;
            (void)cudaGraphDestroy(g);
            return ibex_cuda_fail(NULL, err, IBEX_ERR_BACKEND, "cudaGraphInstantiate", __func__, __FILE__, __LINE__,
                                  cudaGetErrorString(e));
        }
        ctx->cnt.graph_builds++;
    }
    (void)cudaGraphDestroy(g);
    ctx->cnt.launches++;
    ctx->cnt.graph_launches++;
    IBEX_CUDA_CHECK(ctx, err, cudaGraphLaunch(ctx->gexec, ctx->stream));
    return IBEX_OK;
}

static void cuda_get_counters(ibex_backend *be, ibex_dev_counters *out) { *out = ibex_cuda_ctx_of(be)->cnt; }

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* A warm-up copy, then BW_REPS timed device-to-device copies of bytes, each between its
 * own pair of events; bytes/s = 2·bytes / median time (each byte is read and written). */
static double cuda_copy_bandwidth(ibex_backend *be, size_t bytes, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    void *a = NULL, *b = NULL;
    cudaEvent_t ev[2 * BW_REPS];
    float ms[BW_REPS];
    int n_ev = 0;
    double result = 0.0;
    if (bytes == 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CUDA copy_bandwidth: 0 bytes");
        return 0.0;
    }
    IBEX_CUDA_CHECK_RET(ctx, err, ibex_cuda_enter(ctx), 0.0);
    a = ibex_cuda_buf_alloc(ctx, bytes, IBEX_BUF_WORKSPACE, false, err);
    if (a) b = ibex_cuda_buf_alloc(ctx, bytes, IBEX_BUF_WORKSPACE, false, err);
    if (!a || !b) goto done;
    for (; n_ev < 2 * BW_REPS; n_ev++)
        if (IBEX_CUDA_TRY(ctx, err, cudaEventCreate(&ev[n_ev])) != IBEX_OK) goto done;
    if (IBEX_CUDA_TRY(ctx, err, cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, ctx->stream)) != IBEX_OK)
        goto done;
    for (int r = 0; r < BW_REPS; r++) {
        if (IBEX_CUDA_TRY(ctx, err, cudaEventRecord(ev[2 * r], ctx->stream)) != IBEX_OK ||
            IBEX_CUDA_TRY(ctx, err, cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, ctx->stream)) != IBEX_OK ||
            IBEX_CUDA_TRY(ctx, err, cudaEventRecord(ev[2 * r + 1], ctx->stream)) != IBEX_OK)
            goto done;
    }
    ctx->cnt.syncs++;
    if (IBEX_CUDA_TRY(ctx, err, cudaEventSynchronize(ev[2 * BW_REPS - 1])) != IBEX_OK) goto done;
    for (int r = 0; r < BW_REPS; r++)
        if (IBEX_CUDA_TRY(ctx, err, cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1])) != IBEX_OK)
            goto done;
    qsort(ms, BW_REPS, sizeof ms[0], cmp_float);
    if (ms[BW_REPS / 2] > 0.0f) {
        result = 2.0 * (double)bytes / ((double)ms[BW_REPS / 2] * 1e-3);
    } else {
        ibex_err_set(err, IBEX_ERR_BACKEND, "CUDA copy_bandwidth: a copy of %zu bytes timed at 0 ms", bytes);
    }
done:
    for (int i = 0; i < n_ev; i++) (void)cudaEventDestroy(ev[i]);
    if (b) ibex_cuda_buf_free(ctx, b);
    if (a) ibex_cuda_buf_free(ctx, a);
    return result;
}

#define READ_THREADS 256

/* Streams n 16-byte words in, grid-stride, evict-first; the XOR of everything is written
 * only if it equals a value it practically never does, so the loads stay live and nothing
 * but one word per grid is ever written. */
static __global__ void __launch_bounds__(READ_THREADS)
read_stream_kernel(const uint4 *__restrict__ p, int64_t n, uint32_t *__restrict__ sink) {
    uint32_t acc = 0;
    const int64_t stride = (int64_t)gridDim.x * READ_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * READ_THREADS + threadIdx.x; i < n; i += stride) {
        const uint4 u = __ldcs(p + i);
        acc ^= u.x ^ u.y ^ u.z ^ u.w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

/* A warm-up, then BW_REPS timed read_stream_kernel runs over bytes (rounded down to 16),
 * each between its own events; bytes/s = bytes / median time. Grid: 8 blocks per SM. */
static double cuda_read_bandwidth(ibex_backend *be, size_t bytes, ibex_err *err) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    const int64_t n = (int64_t)(bytes / 16);
    void *a = NULL;
    cudaEvent_t ev[2 * BW_REPS];
    float ms[BW_REPS];
    int n_ev = 0;
    double result = 0.0;
    if (n <= 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CUDA read_bandwidth: %zu bytes (at least 16)", bytes);
        return 0.0;
    }
    IBEX_CUDA_CHECK_RET(ctx, err, ibex_cuda_enter(ctx), 0.0);
    const unsigned grid = (unsigned)(ctx->sm_count > 0 ? ctx->sm_count * 8 : 1024);
    if (!(a = ibex_cuda_buf_alloc(ctx, (size_t)n * 16 + 16, IBEX_BUF_WORKSPACE, false, err))) goto done;
    for (; n_ev < 2 * BW_REPS; n_ev++)
        if (IBEX_CUDA_TRY(ctx, err, cudaEventCreate(&ev[n_ev])) != IBEX_OK) goto done;
    read_stream_kernel<<<grid, READ_THREADS, 0, ctx->stream>>>((const uint4 *)a, n, (uint32_t *)((char *)a + n * 16));
    ctx->cnt.launches++;
    for (int r = 0; r < BW_REPS; r++) {
        if (IBEX_CUDA_TRY(ctx, err, cudaEventRecord(ev[2 * r], ctx->stream)) != IBEX_OK) goto done;
        read_stream_kernel<<<grid, READ_THREADS, 0, ctx->stream>>>((const uint4 *)a, n,
                                                                   (uint32_t *)((char *)a + n * 16));
        ctx->cnt.launches++;
        if (IBEX_CUDA_TRY(ctx, err, cudaGetLastError()) != IBEX_OK ||
            IBEX_CUDA_TRY(ctx, err, cudaEventRecord(ev[2 * r + 1], ctx->stream)) != IBEX_OK)
            goto done;
    }
    ctx->cnt.syncs++;
    if (IBEX_CUDA_TRY(ctx, err, cudaEventSynchronize(ev[2 * BW_REPS - 1])) != IBEX_OK) goto done;
    for (int r = 0; r < BW_REPS; r++)
        if (IBEX_CUDA_TRY(ctx, err, cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1])) != IBEX_OK) goto done;
    qsort(ms, BW_REPS, sizeof ms[0], cmp_float);
    if (ms[BW_REPS / 2] > 0.0f)
        result = (double)n * 16.0 / ((double)ms[BW_REPS / 2] * 1e-3);
    else
        ibex_err_set(err, IBEX_ERR_BACKEND, "CUDA read_bandwidth: a read of %zu bytes timed at 0 ms", bytes);
done:
    for (int i = 0; i < n_ev; i++) (void)cudaEventDestroy(ev[i]);
    if (a) ibex_cuda_buf_free(ctx, a);
    return result;
}

/* Releases everything ctx holds; safe on a partly built ctx. Never fails. */
static void ctx_release(ibex_cuda_ctx *ctx) {
    (void)ibex_cuda_enter(ctx);
    if (ctx->capturing) { /* a capture left open (an abandoned step): end it, run nothing */
        cudaGraph_t g = NULL;
        if (cudaStreamEndCapture(ctx->stream, &g) == cudaSuccess && g) (void)cudaGraphDestroy(g);
        ctx->capturing = false;
    }
    if (ctx->stream) (void)ibex_cuda_stream_sync(ctx);
    if (ctx->cublas) (void)ibex_cublas.destroy(ctx->cublas);
    for (size_t i = 0; i < ctx->bufs.cap; i++)
        if (ctx->bufs.e[i].key) (void)cudaFree(ctx->bufs.e[i].dev);
    if (ctx->gexec) (void)cudaGraphExecDestroy(ctx->gexec);
    for (int i = 0; i < ctx->n_created; i++) (void)cudaEventDestroy(ctx->marks[i]);
    free(ctx->marks);
    for (int i = 0; i < ctx->n_pinned; i++) (void)cudaFreeHost(ctx->pinned[i].p);
    free(ctx->pinned);
    free(ctx->bufs.e);
    free(ctx->weights.e);
    if (ctx->stream) (void)cudaStreamDestroy(ctx->stream);
    (void)cudaGetLastError();
    memset(ctx, 0, sizeof *ctx);
}

static void cuda_free(ibex_backend *be) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (!ctx) return;
    ctx_release(ctx);
    free(ctx);
    be->ctx = NULL;
}

/* ---- construction ---- */

extern "C" int ibex_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n > 0 ? n : 0;
}

extern "C" ibex_backend *ibex_backend_cuda_new(int device, ibex_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    ibex_backend *be = NULL;
    ibex_cuda_ctx *ctx = NULL;
    cudaDeviceProp prop;
    /* cuBLAS is opened at run time (cuda_cublas.cu): without it the backend cannot start,
     * and the message names the library, whatever the state of the driver */
    if (ibex_cuda_cublas_load(err) != IBEX_OK) {
        (void)cudaGetLastError();
        return NULL;
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        /* With no NVIDIA driver at all the runtime says "driver version is insufficient". */
        ibex_err_set(err, IBEX_ERR_BACKEND, "no CUDA device: cudaGetDeviceCount: %s%s", cudaGetErrorString(e),
                     e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice
                         ? " (is an NVIDIA GPU with a CUDA 13 driver installed? nvidia-smi tells)"
                         : "");
        return NULL;
    }
    if (n <= 0) {
        ibex_err_set(err, IBEX_ERR_BACKEND, "no CUDA device: cudaGetDeviceCount found none");
        return NULL;
    }
    if (device < 0 || device >= n) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CUDA device %d does not exist (%d visible: 0..%d)", device, n, n - 1);
        return NULL;
    }
    be = (ibex_backend *)calloc(1, sizeof *be);
    ctx = (ibex_cuda_ctx *)calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        ibex_err_set(err, IBEX_ERR_NOMEM, "CUDA backend: out of host memory");
        return NULL;
    }
    ctx->device = device;
    ctx->attn = IBEX_ATTN_AUTO;
    memset(&prop, 0, sizeof prop);
    if (IBEX_CUDA_TRY(ctx, err, cudaSetDevice(device)) != IBEX_OK ||
        IBEX_CUDA_TRY(ctx, err, cudaGetDeviceProperties(&prop, device)) != IBEX_OK ||
        IBEX_CUDA_TRY(ctx, err, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) != IBEX_OK ||
        IBEX_CUBLAS_TRY(ctx, err, ibex_cublas.create(&ctx->cublas)) != IBEX_OK ||
        IBEX_CUBLAS_TRY(ctx, err, ibex_cublas.set_stream(ctx->cublas, ctx->stream)) != IBEX_OK)
        goto fail;
    snprintf(ctx->name, sizeof ctx->name, "%s", prop.name);
    ctx->cc_major = prop.major;
    ctx->cc_minor = prop.minor;
    ctx->sm_count = prop.multiProcessorCount;
    {   /* the data-sheet bandwidth: DDR, so two transfers per memory clock (kHz) per bus bit */
        int clk_khz = 0, bus_bits = 0;
        if (cudaDeviceGetAttribute(&clk_khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess &&
            cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
            ctx->spec_bw = 2.0 * (double)clk_khz * 1e3 * (double)bus_bits / 8.0;
        (void)cudaGetLastError();
    }
    /* our own workspace, so its bytes are counted; set after cublasSetStream, which resets
     * the handle to the default workspace pool */
    ctx->cublas_ws = ibex_cuda_buf_alloc(ctx, CUBLAS_WORKSPACE_BYTES, IBEX_BUF_WORKSPACE, false, err);
    if (!ctx->cublas_ws ||
        IBEX_CUBLAS_TRY(ctx, err, ibex_cublas.set_workspace(ctx->cublas, ctx->cublas_ws, CUBLAS_WORKSPACE_BYTES)) != IBEX_OK ||
        /* default math allows tensor cores for F16/BF16 inputs; F32 GEMMs ask for
         * CUBLAS_COMPUTE_32F_PEDANTIC per call (no TF32), see cuda_matmul.cu */
        IBEX_CUBLAS_TRY(ctx, err, ibex_cublas.set_math_mode(ctx->cublas, CUBLAS_DEFAULT_MATH)) != IBEX_OK)
        goto fail;
    /* the op scratch, sized now for decode (split-K partials, F16 copies of x at small
     * T), so that no decode step allocates; a large prefill may still grow it */
    if (!ibex_cuda_scratch(ctx, SCRATCH_INITIAL_BYTES)) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "CUDA: op scratch of %zu bytes: %s", (size_t)SCRATCH_INITIAL_BYTES, ctx->err.msg);
        goto fail;
    }
    if (!ibex_cuda_attention_init(ctx, err)) goto fail; /* decode attention's split counters */
    memset(&ctx->err, 0, sizeof ctx->err);

    be->name = "cuda";
    be->ctx = ctx;
    be->set_threads = NULL;
    be->matmul = ibex_cuda_matmul;
    be->rmsnorm = ibex_cuda_rmsnorm;
    be->rope = ibex_cuda_rope;
    be->softmax = ibex_cuda_softmax;
    be->silu_mul = ibex_cuda_silu_mul;
    be->add = ibex_cuda_add;
    be->embed = ibex_cuda_embed;
    be->kv_write = ibex_cuda_kv_write;
    be->attention = ibex_cuda_attention;
    be->attention_batch = ibex_cuda_attention_batch;
    be->kv_type_ok = ibex_cuda_kv_type_ok;
    be->alloc = cuda_alloc;
    be->dealloc = cuda_dealloc;
    be->weight = cuda_weight;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->sync = cuda_sync;
    be->set_attention = cuda_set_attention;
    be->device_info = cuda_device_info;
    be->copy_bandwidth = cuda_copy_bandwidth;
    be->read_bandwidth = cuda_read_bandwidth;
    be->get_counters = cuda_get_counters;
    be->graph_begin = cuda_graph_begin;
    be->graph_end = cuda_graph_end;
    be->mark = cuda_mark;
    be->mark_elapsed_ms = cuda_mark_elapsed_ms;
    be->marks_reset = cuda_marks_reset;
    be->host_alloc = cuda_host_alloc;
    be->host_free = cuda_host_free;
    be->weight_cat = cuda_weight_cat;
    be->matmul_split = ibex_cuda_matmul_split;
    be->matmul_add = ibex_cuda_matmul_add;
    be->matmul_swiglu = ibex_cuda_matmul_swiglu;
    be->rope_kv = ibex_cuda_rope_kv;
    be->free = cuda_free;
    return be;

fail:
    ibex_err_prefix(err, "CUDA device %d", device);
    ctx_release(ctx);
    free(ctx);
    free(be);
    return NULL;
}
