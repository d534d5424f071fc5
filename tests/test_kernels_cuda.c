/* test_kernels_cuda.c — the CUDA backend against the CPU backend (ibex_backend_cpu_new(1)),
 * op by op, on fixed-seed random inputs, by normalized error sqrt(Σ(a−b)²/Σb²): F32 ops
 * to 1e-6 (matmul 2e-6, attention 5e-6: long F32 sums in different orders), the F16/BF16
 * matmul to the rounding of x that its cuBLAS path does (the matrix-vector path keeps x in
 * F32 and must match to 1e-5). Device outputs are poisoned
 * with NaN first, so an element an op forgot to write fails the comparison, and unused
 * KV-cache slots are NaN so a kernel reading past the causal limit fails too. Also: both
 * matmul paths, the three attention forms against each other through paged and contiguous
 * layouts, kv_write layouts, memory accounting by kind, the weight cache, the sticky error
 * and sync, copy and copy_bandwidth, and a bad device id.
 *
 * Every test needs a CUDA device and skips (reported as skipped, not passed) without one,
 * or in builds without the CUDA backend. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/dtype.h"
#include "tests/test_rand.h"

#if IBEX_HAVE_CUDA
#include "kernels/cuda/cuda_attention.cuh"
#include "kernels/cuda/cuda_matmul.cuh"
#else
/* Without the CUDA backend every test here is skipped; the quantized matmul test still
 * compiles against the matvec limit of kernels/cuda/cuda_matmul.cuh. */
#define IBEX_CUDA_MATVEC_MAX_T 4
#endif

/* ---- helpers ---- */

/* sqrt(Σ(a−b)² / Σb²); NaN anywhere gives +inf so every threshold check fails. */
static double nerr(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        const double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* The CUDA backend on device 0, or the test is skipped. */
static ibex_backend *gpu_or_skip(void) {
#if IBEX_HAVE_CUDA
    if (ibex_cuda_device_count() > 0) {
        ibex_err err = {0};
        ibex_backend *be = ibex_backend_cuda_new(0, &err);
        cr_assert_not_null(be, "ibex_backend_cuda_new(0): %s", err.msg);
        return be;
    }
#endif
    cr_skip_test("no CUDA device");
    return NULL; /* not reached */
}

static ibex_backend *cpu_be(void) {
    ibex_backend *be = ibex_backend_cpu_new(1);
    cr_assert_not_null(be);
    return be;
}

/* A device buffer of kind holding a copy of bytes of host memory. */
static void *dup_kind(ibex_backend *be, const void *host, size_t bytes, ibex_buf_kind kind) {
    ibex_err err = {0};
    void *d = be->alloc(be, bytes, kind, &err);
    cr_assert_not_null(d, "alloc of %zu bytes: %s", bytes, err.msg);
    cr_assert_eq(be->upload(be, d, host, bytes, &err), IBEX_OK, "upload: %s", err.msg);
    return d;
}

static void *dup_to(ibex_backend *be, const void *host, size_t bytes) {
    return dup_kind(be, host, bytes, IBEX_BUF_ACTIVATIONS);
}

/* n device floats, all NaN. */
static float *dev_nan(ibex_backend *be, int64_t n) {
    float *h = nan_vec(n);
    float *d = dup_to(be, h, (size_t)n * sizeof(float));
    free(h);
    return d;
}

/* A malloc'ed host copy of n device floats. */
static float *fetch(ibex_backend *be, const float *d, int64_t n) {
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(h);
    ibex_err err = {0};
    cr_assert_eq(be->download(be, h, d, (size_t)n * sizeof(float), &err), IBEX_OK, "download: %s", err.msg);
    return h;
}

static void expect_sync_ok(ibex_backend *be) {
    ibex_err err = {0};
    cr_assert_eq(be->sync(be, &err), IBEX_OK, "sync: %s", err.msg);
}

static ibex_dev_counters counters(ibex_backend *be) {
    ibex_dev_counters c = {0};
    cr_assert_not_null(be->get_counters, "get_counters is filled");
    be->get_counters(be, &c);
    return c;
}

/* Whether the CUDA matmul takes its matrix-vector path for these arguments. */
static bool uses_matvec(ibex_type t, int T, int n_in, const void *w, const float *x) {
#if IBEX_HAVE_CUDA
    return ibex_cuda_matmul_path(t, T, n_in, w, x) == IBEX_CUDA_MM_MATVEC;
#else
    (void)t, (void)T, (void)n_in, (void)w, (void)x;
    return false;
#endif
}

/* ---- backend object ---- */

Test(kernels_cuda, constructor_fills_every_entry) {
    ibex_backend *be = gpu_or_skip();
    cr_assert_str_eq(be->name, "cuda");
    cr_assert(be->matmul && be->rmsnorm && be->rope && be->softmax && be->silu_mul && be->add &&
              be->embed && be->kv_write && be->attention && be->free);
    cr_assert(be->alloc && be->dealloc && be->weight && be->upload && be->download && be->copy &&
              be->sync && be->set_attention && be->device_info && be->copy_bandwidth);
    cr_assert(be->get_counters && be->host_alloc && be->host_free && be->weight_cat && be->matmul_split &&
              be->matmul_add && be->matmul_swiglu && be->rope_kv);
    ibex_device_info info;
    be->device_info(be, &info);
    cr_assert(info.name[0] != '\0');
    cr_assert(info.cc_major > 0 && info.sm_count > 0, "cc %d.%d, %d SMs", info.cc_major, info.cc_minor,
              info.sm_count);
    cr_assert(info.mem_total > 0 && info.mem_free > 0 && info.mem_free <= info.mem_total);
    /* the cuBLAS workspace is the only buffer of a fresh backend */
    cr_assert_eq(info.buf_bytes[IBEX_BUF_WEIGHTS], 0);
    cr_assert_eq(info.buf_bytes[IBEX_BUF_KV], 0);
    cr_assert_eq(info.buf_bytes[IBEX_BUF_ACTIVATIONS], 0);
    cr_assert(info.buf_bytes[IBEX_BUF_WORKSPACE] > 0);
    ibex_err err = {0};
    cr_assert_eq(be->set_attention(be, IBEX_ATTN_IMPL_COUNT, &err), IBEX_ERR_INVALID);
    cr_assert_eq(be->set_attention(be, IBEX_ATTN_SPLIT_K, &err), IBEX_OK);
    expect_sync_ok(be);
    ibex_backend_free(be);
}

Test(kernels_cuda, bad_device_id_gives_null_and_message) {
    ibex_backend *be = gpu_or_skip();
    ibex_backend_free(be);
#if IBEX_HAVE_CUDA
    const int n = ibex_cuda_device_count();
    const int bad[2] = {n, -1};
    for (int i = 0; i < 2; i++) {
        ibex_err err = {0};
        cr_assert_null(ibex_backend_cuda_new(bad[i], &err), "device %d accepted", bad[i]);
        cr_assert_neq(err.status, IBEX_OK);
        cr_assert(strstr(err.msg, "does not exist") != NULL, "message: %s", err.msg);
    }
#endif
}

/* ---- memory ---- */

Test(kernels_cuda, alloc_dealloc_accounting_is_exact_by_kind) {
    ibex_backend *be = gpu_or_skip();
    ibex_device_info i0, i1, i2, i3;
    be->device_info(be, &i0);
    ibex_err err = {0};
    void *a = be->alloc(be, 1000, IBEX_BUF_KV, &err);
    void *b = be->alloc(be, 4096, IBEX_BUF_ACTIVATIONS, &err);
    void *c = be->alloc(be, 123, IBEX_BUF_WORKSPACE, &err);
    cr_assert(a && b && c, "alloc: %s", err.msg);
    be->device_info(be, &i1);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_KV], i0.buf_bytes[IBEX_BUF_KV] + 1000);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_ACTIVATIONS], i0.buf_bytes[IBEX_BUF_ACTIVATIONS] + 4096);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_WORKSPACE], i0.buf_bytes[IBEX_BUF_WORKSPACE] + 123);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_WEIGHTS], i0.buf_bytes[IBEX_BUF_WEIGHTS]);
    int64_t held = 0;
    for (int k = 0; k < IBEX_BUF_KIND_COUNT; k++) held += i1.buf_bytes[k];
    cr_assert(i1.buf_peak >= held);

    /* alloc zeroes */
    unsigned char z[1000];
    memset(z, 0xab, sizeof z);
    cr_assert_eq(be->download(be, z, a, sizeof z, &err), IBEX_OK, "%s", err.msg);
    for (size_t k = 0; k < sizeof z; k++) cr_assert_eq(z[k], 0, "byte %zu not zeroed", k);

    be->dealloc(be, b);
    be->device_info(be, &i2);
    cr_assert_eq(i2.buf_bytes[IBEX_BUF_ACTIVATIONS], i0.buf_bytes[IBEX_BUF_ACTIVATIONS]);
    cr_assert_eq(i2.buf_bytes[IBEX_BUF_KV], i1.buf_bytes[IBEX_BUF_KV]);
    be->dealloc(be, a);
    be->dealloc(be, c);
    be->dealloc(be, NULL); /* no-op */
    be->device_info(be, &i3);
    for (int k = 0; k < IBEX_BUF_KIND_COUNT; k++) cr_assert_eq(i3.buf_bytes[k], i0.buf_bytes[k], "kind %d", k);
    cr_assert_eq(i3.buf_peak, i1.buf_peak, "the peak does not go down");
    expect_sync_ok(be);

    /* dealloc of a pointer the backend does not own is a sticky error, then cleared */
    int not_ours;
    be->dealloc(be, &not_ours);
    cr_assert_eq(be->sync(be, &err), IBEX_ERR_INVALID);
    cr_assert(strstr(err.msg, "not allocated") != NULL, "%s", err.msg);
    expect_sync_ok(be);
    ibex_backend_free(be);
}

Test(kernels_cuda, weight_cache_returns_one_copy_per_host_pointer) {
    ibex_backend *be = gpu_or_skip();
    const size_t n = 2500;
    rng r = {11};
    float *h1 = rand_vec(&r, (int64_t)n, -1.0f, 1.0f), *h2 = rand_vec(&r, (int64_t)n, -1.0f, 1.0f);
    ibex_device_info i0, i1;
    be->device_info(be, &i0);
    ibex_err err = {0};
    const void *w1 = be->weight(be, h1, n * 4, &err);
    cr_assert_not_null(w1, "%s", err.msg);
    be->device_info(be, &i1);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_WEIGHTS], i0.buf_bytes[IBEX_BUF_WEIGHTS] + (int64_t)(n * 4));
    cr_assert_eq(be->weight(be, h1, n * 4, &err), w1, "second call must hit the cache");
    cr_assert_eq(be->weight(be, h1, n * 2, &err), w1, "a prefix is the same tensor");
    be->device_info(be, &i1);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_WEIGHTS], i0.buf_bytes[IBEX_BUF_WEIGHTS] + (int64_t)(n * 4));
    memset(&err, 0, sizeof err);
    cr_assert_null(be->weight(be, h1, n * 8, &err), "larger than the cached copy");
    cr_assert_neq(err.status, IBEX_OK);
    const void *w2 = be->weight(be, h2, n * 4, &err);
    cr_assert(w2 && w2 != w1);
    float *back = fetch(be, w1, (int64_t)n);
    cr_assert(memcmp(back, h1, n * 4) == 0, "weight contents");
    free(back);
    /* weights are not dealloc'able: sticky error, nothing freed */
    be->dealloc(be, (void *)w1);
    cr_assert_eq(be->sync(be, &err), IBEX_ERR_INVALID);
    be->device_info(be, &i1);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_WEIGHTS], i0.buf_bytes[IBEX_BUF_WEIGHTS] + (int64_t)(n * 8));
    expect_sync_ok(be);
    ibex_backend_free(be);
    free(h1), free(h2);
}

Test(kernels_cuda, copy_and_copy_bandwidth) {
    ibex_backend *be = gpu_or_skip();
    const int64_t n = 100003;
    rng r = {12};
    float *x = rand_vec(&r, n, -1.0f, 1.0f);
    float *a = dup_to(be, x, (size_t)n * 4), *b = dev_nan(be, n);
    be->copy(be, b, a, (size_t)n * 4);
    expect_sync_ok(be);
    float *y = fetch(be, b, n);
    cr_assert(memcmp(x, y, (size_t)n * 4) == 0);
    ibex_device_info i0, i1;
    be->device_info(be, &i0);
    ibex_err err = {0};
    const double bw = be->copy_bandwidth(be, (size_t)64 << 20, &err);
    /* a figure, not a speed: the emulator's copies run at host speed under any load */
    cr_assert(isfinite(bw) && bw > 0, "copy bandwidth %g B/s: %s", bw, err.msg);
    be->device_info(be, &i1);
    cr_assert_eq(i1.buf_bytes[IBEX_BUF_WORKSPACE], i0.buf_bytes[IBEX_BUF_WORKSPACE], "temporaries freed");
    int64_t held = 0;
    for (int k = 0; k < IBEX_BUF_KIND_COUNT; k++) held += i0.buf_bytes[k];
    cr_assert(i1.buf_peak >= held + 2 * ((int64_t)64 << 20), "temporaries counted while held");
    /* the read-only roofline: a figure, its buffer returned, one launch per timed read
     * plus the warm-up; and the data-sheet figure beside it */
    ibex_dev_counters c0 = {0}, c1 = {0};
    be->get_counters(be, &c0);
    const double rbw = be->read_bandwidth(be, (size_t)4 << 20, &err);
    be->get_counters(be, &c1);
    cr_assert(isfinite(rbw) && rbw > 0, "read bandwidth %g B/s: %s", rbw, err.msg);
    cr_assert_eq(c1.launches - c0.launches, 12, "warm-up and 11 timed reads");
    cr_assert_eq(c1.allocs - c0.allocs, 1);
    cr_assert_eq(c1.frees - c0.frees, 1);
    ibex_device_info i2;
    be->device_info(be, &i2);
    cr_assert_eq(i2.buf_bytes[IBEX_BUF_WORKSPACE], i0.buf_bytes[IBEX_BUF_WORKSPACE], "read buffer freed");
    cr_assert(i2.spec_bandwidth > 1e11, "data-sheet bandwidth %g B/s", i2.spec_bandwidth);
    expect_sync_ok(be);
    free(x), free(y);
    ibex_backend_free(be);
}

Test(kernels_cuda, sticky_error_from_an_op_reaches_sync_once) {
    ibex_backend *be = gpu_or_skip();
    const int n_in = 64, n_out = 8;
    uint8_t wq[8 * 2 * 34];
    memset(wq, 0, sizeof wq);
    float x[64];
    for (int k = 0; k < n_in; k++) x[k] = 1.0f;
    void *dw = dup_kind(be, wq, sizeof wq, IBEX_BUF_WEIGHTS);
    float *dx = dup_to(be, x, sizeof x), *dy = dev_nan(be, n_out);
    be->matmul(be, dy, dx, dw, IBEX_TYPE_Q4_1, 1, n_in, n_out); /* a type no CUDA kernel computes */
    ibex_err err = {0};
    cr_assert_eq(be->sync(be, &err), IBEX_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "Q4_1") != NULL, "%s", err.msg);
    float *y = fetch(be, dy, n_out);
    for (int k = 0; k < n_out; k++) cr_assert(isnan(y[k]), "unsupported matmul must leave NaN");
    free(y);
    expect_sync_ok(be); /* cleared */
    ibex_backend_free(be);
}

/* ---- matmul ---- */

/* Row-major [n_out][n_in] weights of type t from uniform values in [−1, 1). */
static void *make_weights(rng *r, ibex_type t, int n_out, int n_in, size_t *bytes) {
    float *src = rand_vec(r, (int64_t)n_out * n_in, -1.0f, 1.0f);
    const size_t rb = ibex_type_row_bytes(t, n_in);
    cr_assert(rb > 0);
    void *w = malloc(rb * (size_t)n_out);
    cr_assert_not_null(w);
    for (int o = 0; o < n_out; o++)
        cr_assert(ibex_row_from_f32((char *)w + rb * (size_t)o, src + (int64_t)o * n_in, t, n_in));
    free(src);
    *bytes = rb * (size_t)n_out;
    return w;
}

/* One matmul on both backends. x_misalign shifts x by one float on the device, which
 * must send F16/BF16 decode to cuBLAS (the matvec kernel needs 16-byte alignment). */
static void check_matmul(ibex_backend *gpu, ibex_backend *cpu, ibex_type t, int T, int n_in, int n_out,
                         bool x_misalign, uint64_t seed) {
    rng r = {seed};
    size_t wb;
    void *w = make_weights(&r, t, n_out, n_in, &wb);
    const int64_t nx = (int64_t)T * n_in, ny = (int64_t)T * n_out;
    float *x = rand_vec(&r, nx, -1.0f, 1.0f);
    float *ref = nan_vec(ny);
    cpu->matmul(cpu, ref, x, w, t, T, n_in, n_out);

    void *dw = dup_kind(gpu, w, wb, IBEX_BUF_WEIGHTS);
    float *xbuf = dev_nan(gpu, nx + 1);
    float *dx = xbuf + (x_misalign ? 1 : 0);
    ibex_err err = {0};
    cr_assert_eq(gpu->upload(gpu, dx, x, (size_t)nx * 4, &err), IBEX_OK, "%s", err.msg);
    float *dy = dev_nan(gpu, ny);
    const bool matvec = uses_matvec(t, T, n_in, dw, dx);
    const bool want = t != IBEX_TYPE_F32 && T <= 4 && n_in % 8 == 0 && !x_misalign;
    cr_assert_eq(matvec, want, "%s T=%d n_in=%d: path", ibex_type_name(t), T, n_in);
    gpu->matmul(gpu, dy, dx, dw, t, T, n_in, n_out);
    expect_sync_ok(gpu);
    float *y = fetch(gpu, dy, ny);
    /* cuBLAS rounds x to the weight type: F16 keeps 11 significant bits (rms relative error
     * ~2e-4), BF16 8 bits (~1.6e-3); matvec and F32 only reorder F32 sums */
    const double tol = t == IBEX_TYPE_F32 ? 2e-6 : matvec ? 1e-5 : t == IBEX_TYPE_F16 ? 1e-3 : 5e-3;
    const double e = nerr(y, ref, ny);
    cr_assert(e <= tol, "%s T=%d n_in=%d n_out=%d (%s%s): error %g > %g", ibex_type_name(t), T, n_in, n_out,
              matvec ? "matvec" : "cublas", x_misalign ? ", misaligned x" : "", e, tol);
    gpu->dealloc(gpu, dw);
    gpu->dealloc(gpu, xbuf);
    gpu->dealloc(gpu, dy);
    free(w), free(x), free(ref), free(y);
}

static void check_matmul_type(ibex_type t, uint64_t seed) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int Ts[] = {1, 2, 3, 4, 17, 64};
    const int shapes[][2] = {{256, 96}, {100, 33}, {1000, 300}}; /* n_in, n_out; 100 % 8 != 0 */
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t i = 0; i < sizeof Ts / sizeof *Ts; i++)
            check_matmul(gpu, cpu, t, Ts[i], shapes[s][0], shapes[s][1], false, seed + 10 * s + i);
    check_matmul(gpu, cpu, t, 1, 256, 40, true, seed + 99);
    check_matmul(gpu, cpu, t, 3, 512, 40, true, seed + 98);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* ---- quantized matmul (cuda_matmul_q.cu) ----
 * The reference is the CPU's F32 matmul of the exactly dequantized weights (not the CPU's
 * Q8_0/Q4_0 kernels, whose decode rounds x to 8 bits): the GPU's matrix-vector path keeps
 * x and the sums in F32 and must match to 1e-5; its prefill path rounds x and d·q to F16
 * (1e-3, as the F16 cuBLAS path). */
static float *dequantized(const void *w, ibex_type t, int n_out, int n_in) {
    float *f = malloc((size_t)n_out * n_in * sizeof *f);
    cr_assert_not_null(f);
    const size_t rb = ibex_type_row_bytes(t, n_in);
    for (int o = 0; o < n_out; o++)
        cr_assert(ibex_row_to_f32(f + (int64_t)o * n_in, (const char *)w + rb * (size_t)o, t, n_in));
    return f;
}

static void check_matmul_q(ibex_backend *gpu, ibex_backend *cpu, ibex_type t, int T, int n_in, int n_out,
                           bool x_misalign, bool add, uint64_t seed) {
    rng r = {seed};
    size_t wb;
    void *w = make_weights(&r, t, n_out, n_in, &wb);
    float *wf = dequantized(w, t, n_out, n_in);
    const int64_t nx = (int64_t)T * n_in, ny = (int64_t)T * n_out;
    float *x = rand_vec(&r, nx, -1.0f, 1.0f), *y0 = rand_vec(&r, ny, -1.0f, 1.0f);
    float *ref = nan_vec(ny);
    cpu->matmul(cpu, ref, x, wf, IBEX_TYPE_F32, T, n_in, n_out);
    if (add) cpu->add(cpu, ref, y0, ny);
    void *dw = dup_kind(gpu, w, wb, IBEX_BUF_WEIGHTS);
    float *xbuf = dev_nan(gpu, nx + 1), *dx = xbuf + (x_misalign ? 1 : 0);
    ibex_err err = {0};
    cr_assert_eq(gpu->upload(gpu, dx, x, (size_t)nx * 4, &err), IBEX_OK, "%s", err.msg);
    float *dy = add ? dup_to(gpu, y0, (size_t)ny * 4) : dev_nan(gpu, ny);
    if (add)
        gpu->matmul_add(gpu, dy, dx, dw, t, T, n_in, n_out);
    else
        gpu->matmul(gpu, dy, dx, dw, t, T, n_in, n_out);
    expect_sync_ok(gpu);
    float *y = fetch(gpu, dy, ny);
    const bool matvec = T <= IBEX_CUDA_MATVEC_MAX_T && !x_misalign;
    const double tol = matvec ? 1e-5 : 1e-3, e = nerr(y, ref, ny);
    cr_assert(e <= tol, "%s T=%d n_in=%d n_out=%d (%s%s%s): error %g > %g", ibex_type_name(t), T, n_in, n_out,
              matvec ? "matvec" : "dequantize + cuBLAS", x_misalign ? ", misaligned x" : "", add ? ", add" : "", e,
              tol);
    /* F16 rounding of x and d·q leaves a trace: the prefill path is not secretly F32 */
    if (!matvec) cr_assert(e > 1e-6, "%s T=%d: prefill error %g implausibly small", ibex_type_name(t), T, e);
    gpu->dealloc(gpu, dw), gpu->dealloc(gpu, xbuf), gpu->dealloc(gpu, dy);
    free(w), free(wf), free(x), free(y0), free(ref), free(y);
}

static void check_matmul_q_type(ibex_type t, uint64_t seed) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int Ts[] = {1, 2, 4, 5, 17};
    /* n_in (whole blocks), n_out: 256, 1024 and 1280 take the matvec's shared-memory path
     * (rows 16-byte aligned; 1280 = a full 32-block tile and a part one), 64 its direct one */
    const int shapes[][2] = {{256, 96}, {64, 33}, {1024, 70}, {1280, 20}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t i = 0; i < sizeof Ts / sizeof *Ts; i++)
            check_matmul_q(gpu, cpu, t, Ts[i], shapes[s][0], shapes[s][1], false, false, seed + 10 * s + i);
    check_matmul_q(gpu, cpu, t, 1, 256, 40, true, false, seed + 99); /* misaligned x: the cuBLAS path */
    check_matmul_q(gpu, cpu, t, 1, 128, 40, false, true, seed + 98); /* matmul_add, both paths */
    check_matmul_q(gpu, cpu, t, 6, 128, 40, false, true, seed + 97);
    /* a row that is not whole blocks: a sticky error naming the type, and NaN */
    uint8_t wq[4 * 34] = {0};
    float xs[40] = {0};
    void *dw = dup_kind(gpu, wq, sizeof wq, IBEX_BUF_WEIGHTS);
    float *dx = dup_to(gpu, xs, sizeof xs), *dy = dev_nan(gpu, 2);
    gpu->matmul(gpu, dy, dx, dw, t, 1, 40, 2);
    ibex_err err = {0};
    cr_assert_eq(gpu->sync(gpu, &err), IBEX_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, ibex_type_name(t)) != NULL, "%s", err.msg);
    float *y = fetch(gpu, dy, 2);
    cr_assert(isnan(y[0]) && isnan(y[1]));
    free(y);
    gpu->dealloc(gpu, dw), gpu->dealloc(gpu, dx), gpu->dealloc(gpu, dy);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

Test(kernels_cuda, matmul_q8_0) { check_matmul_q_type(IBEX_TYPE_Q8_0, 400); }
Test(kernels_cuda, matmul_q4_0) { check_matmul_q_type(IBEX_TYPE_Q4_0, 500); }

/* Embedding rows of a Q8_0 / Q4_0 table are dequantized exactly. */
Test(kernels_cuda, embed_q8_0_q4_0) {
    ibex_backend *gpu = gpu_or_skip();
    const ibex_type types[2] = {IBEX_TYPE_Q8_0, IBEX_TYPE_Q4_0};
    const int vocab = 9, dim = 96, T = 4;
    const int32_t toks[4] = {8, 0, 3, 3};
    for (int ti = 0; ti < 2; ti++) {
        rng r = {600 + (uint64_t)ti};
        size_t wb;
        void *w = make_weights(&r, types[ti], vocab, dim, &wb);
        float *wf = dequantized(w, types[ti], vocab, dim);
        void *dw = dup_kind(gpu, w, wb, IBEX_BUF_WEIGHTS);
        int32_t *dt = dup_to(gpu, toks, sizeof toks);
        float *dy = dev_nan(gpu, (int64_t)T * dim);
        gpu->embed(gpu, dy, dw, types[ti], dt, T, dim);
        expect_sync_ok(gpu);
        float *y = fetch(gpu, dy, (int64_t)T * dim);
        for (int i = 0; i < T; i++)
            for (int k = 0; k < dim; k++)
                cr_assert_eq(y[i * dim + k], wf[toks[i] * dim + k], "%s token %d elem %d", ibex_type_name(types[ti]),
                             i, k);
        gpu->dealloc(gpu, dw), gpu->dealloc(gpu, dt), gpu->dealloc(gpu, dy);
        free(w), free(wf), free(y);
    }
    ibex_backend_free(gpu);
}

Test(kernels_cuda, matmul_f32) { check_matmul_type(IBEX_TYPE_F32, 100); }
Test(kernels_cuda, matmul_f16) { check_matmul_type(IBEX_TYPE_F16, 200); }
Test(kernels_cuda, matmul_bf16) { check_matmul_type(IBEX_TYPE_BF16, 300); }

/* ---- row-wise and element-wise ops ---- */

Test(kernels_cuda, rmsnorm) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int shapes[][2] = {{5, 1000}, {3, 4096}, {2, 7}};
    for (size_t s = 0; s < 3; s++) {
        const int T = shapes[s][0], n = shapes[s][1];
        const int64_t N = (int64_t)T * n;
        rng r = {400 + s};
        float *x = rand_vec(&r, N, -2.0f, 2.0f), *g = rand_vec(&r, n, 0.5f, 1.5f), *ref = nan_vec(N);
        cpu->rmsnorm(cpu, ref, x, g, T, n, 1e-5f);
        float *dx = dup_to(gpu, x, (size_t)N * 4), *dg = dup_to(gpu, g, (size_t)n * 4), *dy = dev_nan(gpu, N);
        gpu->rmsnorm(gpu, dy, dx, dg, T, n, 1e-5f);
        gpu->rmsnorm(gpu, dx, dx, dg, T, n, 1e-5f); /* in place */
        expect_sync_ok(gpu);
        float *y = fetch(gpu, dy, N), *yi = fetch(gpu, dx, N);
        cr_assert(nerr(y, ref, N) <= 1e-6, "T=%d n=%d: %g", T, n, nerr(y, ref, N));
        cr_assert(memcmp(y, yi, (size_t)N * 4) == 0, "in place differs");
        free(x), free(g), free(ref), free(y), free(yi);
    }
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

Test(kernels_cuda, rope) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int T = 6;
    const int32_t pos[6] = {0, 1, 17, 1000, 4095, 100000};
    const struct {
        int n_heads, head_dim, rope_dim;
        float base;
    } cases[] = {{4, 64, 64, 10000.0f}, {4, 64, 32, 10000.0f}, {3, 128, 128, 500000.0f}, {6, 48, 48, 10000.0f}};
    int32_t *dpos = dup_to(gpu, pos, sizeof pos);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int64_t N = (int64_t)T * cases[c].n_heads * cases[c].head_dim;
        rng r = {500 + c};
        float *x = rand_vec(&r, N, -1.0f, 1.0f);
        float *dx = dup_to(gpu, x, (size_t)N * 4);
        cpu->rope(cpu, x, pos, T, cases[c].n_heads, cases[c].head_dim, cases[c].rope_dim, cases[c].base);
        gpu->rope(gpu, dx, dpos, T, cases[c].n_heads, cases[c].head_dim, cases[c].rope_dim, cases[c].base);
        expect_sync_ok(gpu);
        float *y = fetch(gpu, dx, N);
        const double e = nerr(y, x, N);
        cr_assert(e <= 1e-6, "case %zu: error %g", c, e);
        gpu->dealloc(gpu, dx);
        free(x), free(y);
    }
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

Test(kernels_cuda, softmax) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int shapes[][2] = {{7, 1000}, {3, 1}, {2, 5000}, {4, 33}};
    for (size_t s = 0; s < 4; s++) {
        const int T = shapes[s][0], n = shapes[s][1];
        const int64_t N = (int64_t)T * n;
        rng r = {600 + s};
        float *x = rand_vec(&r, N, -20.0f, 20.0f);
        float *dx = dup_to(gpu, x, (size_t)N * 4);
        cpu->softmax(cpu, x, T, n);
        gpu->softmax(gpu, dx, T, n);
        expect_sync_ok(gpu);
        float *y = fetch(gpu, dx, N);
        cr_assert(nerr(y, x, N) <= 1e-6, "T=%d n=%d: %g", T, n, nerr(y, x, N));
        free(x), free(y);
    }
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

Test(kernels_cuda, silu_mul_and_add) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int64_t n = 100003;
    rng r = {700};
    float *g = rand_vec(&r, n, -8.0f, 8.0f), *u = rand_vec(&r, n, -2.0f, 2.0f), *ref = nan_vec(n);
    float *dg = dup_to(gpu, g, (size_t)n * 4), *du = dup_to(gpu, u, (size_t)n * 4), *dy = dev_nan(gpu, n);
    cpu->silu_mul(cpu, ref, g, u, n);
    gpu->silu_mul(gpu, dy, dg, du, n);
    gpu->silu_mul(gpu, dg, dg, du, n); /* y == gate */
    expect_sync_ok(gpu);
    float *y = fetch(gpu, dy, n), *yi = fetch(gpu, dg, n);
    cr_assert(nerr(y, ref, n) <= 1e-6, "silu_mul: %g", nerr(y, ref, n));
    cr_assert(memcmp(y, yi, (size_t)n * 4) == 0, "in place differs");
    /* add is one IEEE addition per element on both: from the same inputs, the same bits */
    float *dref = dup_to(gpu, ref, (size_t)n * 4);
    cpu->add(cpu, ref, u, n);
    gpu->add(gpu, dref, du, n);
    expect_sync_ok(gpu);
    free(y);
    y = fetch(gpu, dref, n);
    cr_assert(memcmp(y, ref, (size_t)n * 4) == 0, "add differs");
    free(g), free(u), free(ref), free(y), free(yi);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

Test(kernels_cuda, embed_f32_f16_bf16) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int vocab = 50, dim = 300, T = 6;
    const int32_t tok[6] = {0, 49, 7, 7, 23, 1};
    int32_t *dtok = dup_to(gpu, tok, sizeof tok);
    const ibex_type types[3] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};
    for (int ti = 0; ti < 3; ti++) {
        rng r = {800 + (uint64_t)ti};
        size_t tb;
        void *table = make_weights(&r, types[ti], vocab, dim, &tb);
        float *ref = nan_vec((int64_t)T * dim);
        cpu->embed(cpu, ref, table, types[ti], tok, T, dim);
        void *dt = dup_kind(gpu, table, tb, IBEX_BUF_WEIGHTS);
        float *dy = dev_nan(gpu, (int64_t)T * dim);
        gpu->embed(gpu, dy, dt, types[ti], dtok, T, dim);
        expect_sync_ok(gpu);
        float *y = fetch(gpu, dy, (int64_t)T * dim);
        /* widening F16/BF16 to F32 is exact on both */
        cr_assert(memcmp(y, ref, (size_t)T * dim * 4) == 0, "%s rows differ", ibex_type_name(types[ti]));
        free(table), free(ref), free(y);
    }
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* ---- KV cache and attention ---- */

/* A random permutation of 0..n−1. */
static int32_t *shuffled(int n, uint64_t seed) {
    int32_t *p = malloc((size_t)n * sizeof(int32_t));
    cr_assert_not_null(p);
    for (int i = 0; i < n; i++) p[i] = i;
    rng r = {seed};
    for (int i = n - 1; i > 0; i--) { /* Fisher–Yates */
        const int j = (int)(rng_next(&r) % (uint64_t)(i + 1));
        const int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

/* ---- typed KV pools (F16/BF16 cache) ---- */

static const ibex_type k_kv_types[3] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};

static size_t kv_elem(ibex_type t) { return t == IBEX_TYPE_F32 ? 4 : 2; }

/* x rounded to type t (nearest even) and widened back: what a pool of t holds of x. */
static float kv_round(float x, ibex_type t) {
    if (t == IBEX_TYPE_F16) return ibex_f16_to_f32(ibex_f32_to_f16(x));
    if (t == IBEX_TYPE_BF16) return ibex_bf16_to_f32(ibex_f32_to_bf16(x));
    return x;
}

/* n F32 values as a malloc'ed pool of type t (rounded to nearest even). */
static void *kv_pack(const float *x, int64_t n, ibex_type t) {
    void *p = malloc((size_t)(n > 0 ? n : 1) * kv_elem(t));
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++) {
        if (t == IBEX_TYPE_F16)
            ((uint16_t *)p)[i] = ibex_f32_to_f16(x[i]);
        else if (t == IBEX_TYPE_BF16)
            ((uint16_t *)p)[i] = ibex_f32_to_bf16(x[i]);
        else
            ((float *)p)[i] = x[i];
    }
    return p;
}

/* A pool of type t (n elements) fetched from the device and widened to F32, malloc'ed. */
static float *kv_fetch(ibex_backend *be, const void *d, int64_t n, ibex_type t) {
    void *raw = malloc((size_t)(n > 0 ? n : 1) * kv_elem(t));
    float *w = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert(raw && w);
    ibex_err err = {0};
    cr_assert_eq(be->download(be, raw, d, (size_t)n * kv_elem(t), &err), IBEX_OK, "download: %s", err.msg);
    for (int64_t i = 0; i < n; i++)
        w[i] = t == IBEX_TYPE_F16    ? ibex_f16_to_f32(((uint16_t *)raw)[i])
               : t == IBEX_TYPE_BF16 ? ibex_bf16_to_f32(((uint16_t *)raw)[i])
                                     : ((float *)raw)[i];
    free(raw);
    return w;
}

/* Both of two float arrays NaN at the same places and equal bit for bit elsewhere. */
static bool same_floats(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return false;
        if (!isnan(a[i]) && memcmp(&a[i], &b[i], 4) != 0) return false;
    }
    return true;
}

/* kv_write through a shuffled table and through a contiguous run writes the same slots
 * as the CPU's kv_write (which always reads the table, consistent with the run). */
Test(kernels_cuda, kv_write_paged_and_contiguous) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int bs = 16, n_kv = 2, hd = 64, n_pool = 12, T = 20, pos0 = 5;
    const int64_t row = (int64_t)n_kv * hd, pool = (int64_t)n_pool * bs * row;
    rng r = {900};
    float *k = rand_vec(&r, T * row, -1.0f, 1.0f), *v = rand_vec(&r, T * row, -1.0f, 1.0f);
    float *kp0 = rand_vec(&r, pool, -1.0f, 1.0f), *vp0 = rand_vec(&r, pool, -1.0f, 1.0f);
    int32_t *perm = shuffled(n_pool, 901);
    int32_t run[12];
    for (int b = 0; b < n_pool; b++) run[b] = b < 3 ? 3 + b : 0; /* blocks 3, 4, 5 */
    float *dk = dup_to(gpu, k, (size_t)(T * row) * 4), *dv = dup_to(gpu, v, (size_t)(T * row) * 4);
    for (int ti = 0; ti < 3; ti++) {
        /* F16/BF16 pools: the CPU's F32 result rounded element by element (nearest even),
         * compared bit for bit: a kernel that truncated, or wrote F32 into a 16-bit pool,
         * differs */
        const ibex_type t = k_kv_types[ti];
        for (int layout = 0; layout < 2; layout++) {
            const int32_t *table = layout == 0 ? perm : run;
            float *kp = malloc((size_t)pool * 4), *vp = malloc((size_t)pool * 4);
            for (int64_t e = 0; e < pool; e++) kp[e] = kv_round(kp0[e], t), vp[e] = kv_round(vp0[e], t);
            ibex_kv_view hv = {.k = kp, .v = vp, .block_table = table, .block_size = bs, .n_kv_heads = n_kv,
                               .head_dim = hd, .contiguous = layout == 1, .first_block = 3};
            cpu->kv_write(cpu, &hv, k, v, T, pos0);
            for (int64_t e = 0; e < pool; e++) kp[e] = kv_round(kp[e], t), vp[e] = kv_round(vp[e], t);
            void *hk0 = kv_pack(kp0, pool, t), *hv0 = kv_pack(vp0, pool, t);
            void *dkp = dup_kind(gpu, hk0, (size_t)pool * kv_elem(t), IBEX_BUF_KV);
            void *dvp = dup_kind(gpu, hv0, (size_t)pool * kv_elem(t), IBEX_BUF_KV);
            int32_t *dt = dup_to(gpu, table, (size_t)n_pool * 4);
            ibex_kv_view dvw = hv;
            dvw.k = dkp, dvw.v = dvp, dvw.block_table = dt, dvw.type = t;
            gpu->kv_write(gpu, &dvw, dk, dv, T, pos0);
            expect_sync_ok(gpu);
            float *gk = kv_fetch(gpu, dkp, pool, t), *gv = kv_fetch(gpu, dvp, pool, t);
            cr_assert(same_floats(gk, kp, pool), "K pool differs (%s, %s)", ibex_type_name(t),
                      layout ? "contiguous" : "paged");
            cr_assert(same_floats(gv, vp, pool), "V pool differs (%s, %s)", ibex_type_name(t),
                      layout ? "contiguous" : "paged");
            gpu->dealloc(gpu, dkp), gpu->dealloc(gpu, dvp), gpu->dealloc(gpu, dt);
            free(kp), free(vp), free(gk), free(gv), free(hk0), free(hv0);
        }
    }
    free(k), free(v), free(kp0), free(vp0), free(perm);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* kv_type_ok says F32, F16, BF16; a pool of another type is a sticky error, not a write. */
Test(kernels_cuda, kv_types_supported_and_refused) {
    ibex_backend *gpu = gpu_or_skip();
    cr_assert_not_null(gpu->kv_type_ok);
    cr_assert(gpu->kv_type_ok(gpu, IBEX_TYPE_F32) && gpu->kv_type_ok(gpu, IBEX_TYPE_F16) &&
              gpu->kv_type_ok(gpu, IBEX_TYPE_BF16));
    cr_assert(!gpu->kv_type_ok(gpu, IBEX_TYPE_Q8_0) && !gpu->kv_type_ok(gpu, IBEX_TYPE_F64));
    float *d = dev_nan(gpu, 64);
    const int32_t t0 = 0;
    int32_t *dt = dup_to(gpu, &t0, sizeof t0);
    ibex_kv_view kv = {.k = d, .v = d + 32, .block_table = dt, .block_size = 1, .n_kv_heads = 1, .head_dim = 32,
                       .type = IBEX_TYPE_Q8_0};
    gpu->kv_write(gpu, &kv, d, d, 1, 0);
    ibex_err err = {0};
    cr_assert_eq(gpu->sync(gpu, &err), IBEX_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "Q8_0") != NULL, "%s", err.msg);
    gpu->dealloc(gpu, d), gpu->dealloc(gpu, dt);
    ibex_backend_free(gpu);
}

/* Host pools holding tokens 0..n_tok−1 of K/V ([n_tok][n_kv·hd]) at the slots table gives;
 * every other slot NaN. */
static void fill_pool(float *kp, float *vp, const float *K, const float *V, const int32_t *table, int n_tok,
                      int bs, int64_t row, int64_t pool) {
    for (int64_t e = 0; e < pool; e++) kp[e] = vp[e] = NAN;
    for (int t = 0; t < n_tok; t++) {
        const int64_t slot = (int64_t)table[t / bs] * bs + t % bs;
        memcpy(kp + slot * row, K + (int64_t)t * row, (size_t)row * 4);
        memcpy(vp + slot * row, V + (int64_t)t * row, (size_t)row * 4);
    }
}

static const ibex_attn_impl k_forms[4] = {IBEX_ATTN_MATERIALIZED, IBEX_ATTN_PAGED, IBEX_ATTN_SPLIT_K,
                                          IBEX_ATTN_AUTO};

/* T queries at pos0.. with GQA (n_heads 8, n_kv_heads 2): every form, through a shuffled
 * table and through a contiguous run, against the CPU and against each other. KV pools of
 * type t: the CPU reads an F32 pool of the same values (K and V rounded to t first), so a
 * kernel that widened wrongly, or read 16-bit pools as F32, fails. */
static void check_attention_t(ibex_backend *gpu, ibex_backend *cpu, int T, int pos0, int hd, uint64_t seed,
                              ibex_type t) {
    const int n_heads = 8, n_kv = 2, bs = 16;
    const int n_tok = pos0 + T, n_blocks = (n_tok + bs - 1) / bs, n_pool = n_blocks + 3, first = 2;
    const int64_t row = (int64_t)n_kv * hd, pool = (int64_t)n_pool * bs * row;
    const int64_t nq = (int64_t)T * n_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    rng r = {seed};
    float *K = rand_vec(&r, n_tok * row, -1.0f, 1.0f), *V = rand_vec(&r, n_tok * row, -1.0f, 1.0f);
    for (int64_t e = 0; e < n_tok * row; e++) K[e] = kv_round(K[e], t), V[e] = kv_round(V[e], t);
    /* large-ish queries: a peaked softmax, so the online rescaling matters */
    float *q = rand_vec(&r, nq, -3.0f, 3.0f);
    int32_t *perm = shuffled(n_pool, seed + 1);
    int32_t *run = malloc((size_t)n_pool * sizeof(int32_t));
    for (int b = 0; b < n_pool; b++) run[b] = b < n_blocks ? first + b : 0;
    float *kp = malloc((size_t)pool * 4), *vp = malloc((size_t)pool * 4);
    cr_assert(run && kp && vp);

    /* the CPU reference, through the shuffled table */
    fill_pool(kp, vp, K, V, perm, n_tok, bs, row, pool);
    ibex_kv_view hv = {.k = kp, .v = vp, .block_table = perm, .block_size = bs, .n_kv_heads = n_kv, .head_dim = hd};
    float *ref = nan_vec(nq);
    cpu->attention(cpu, ref, q, &hv, T, pos0, n_heads, scale);

    float *dq = dup_to(gpu, q, (size_t)nq * 4);
    float *outs[2][4];
    for (int layout = 0; layout < 2; layout++) {
        const int32_t *table = layout == 0 ? perm : run;
        fill_pool(kp, vp, K, V, table, n_tok, bs, row, pool);
        void *tkp = kv_pack(kp, pool, t), *tvp = kv_pack(vp, pool, t);
        void *dkp = dup_kind(gpu, tkp, (size_t)pool * kv_elem(t), IBEX_BUF_KV);
        void *dvp = dup_kind(gpu, tvp, (size_t)pool * kv_elem(t), IBEX_BUF_KV);
        free(tkp), free(tvp);
        int32_t *dt = dup_to(gpu, table, (size_t)n_pool * 4);
        ibex_kv_view dv = {.k = dkp, .v = dvp, .block_table = dt, .block_size = bs, .n_kv_heads = n_kv,
                           .head_dim = hd, .contiguous = layout == 1, .first_block = layout == 1 ? first : 0,
                           .type = t};
        for (int f = 0; f < 4; f++) {
            ibex_err err = {0};
            cr_assert_eq(gpu->set_attention(gpu, k_forms[f], &err), IBEX_OK);
            float *dout = dev_nan(gpu, nq);
            gpu->attention(gpu, dout, dq, &dv, T, pos0, n_heads, scale);
            expect_sync_ok(gpu);
            outs[layout][f] = fetch(gpu, dout, nq);
            gpu->dealloc(gpu, dout);
            /* 5e-6: both backends sum up to 1501 weighted V rows one key after another in
             * F32 (~1e-6 apart at 1500 keys); a wrong mask, mapping or rescale is > 1e-2 */
            const double e = nerr(outs[layout][f], ref, nq);
            cr_assert(e <= 5e-6, "%s (%s, %s KV) T=%d pos0=%d hd=%d: error %g vs the CPU",
                      ibex_attn_impl_name(k_forms[f]), layout ? "contiguous" : "paged", ibex_type_name(t), T, pos0, hd,
                      e);
        }
        for (int f = 0; f < 4; f++) { /* the forms against each other (the paged one) */
            const double ef = nerr(outs[layout][f], outs[layout][1], nq);
            cr_assert(ef <= 5e-6, "%s vs paged T=%d pos0=%d hd=%d: %g", ibex_attn_impl_name(k_forms[f]), T, pos0, hd, ef);
        }
        gpu->dealloc(gpu, dkp), gpu->dealloc(gpu, dvp), gpu->dealloc(gpu, dt);
    }
    /* the arithmetic depends on logical positions only: both layouts give the same bits */
    for (int f = 0; f < 4; f++) {
        cr_assert(memcmp(outs[0][f], outs[1][f], (size_t)nq * 4) == 0, "%s: paged and contiguous layouts differ",
                  ibex_attn_impl_name(k_forms[f]));
        free(outs[0][f]), free(outs[1][f]);
    }
    cr_assert_eq(gpu->set_attention(gpu, IBEX_ATTN_AUTO, NULL), IBEX_OK);
    gpu->dealloc(gpu, dq);
    free(K), free(V), free(q), free(perm), free(run), free(kp), free(vp), free(ref);
}

static void check_attention(ibex_backend *gpu, ibex_backend *cpu, int T, int pos0, int hd, uint64_t seed) {
    check_attention_t(gpu, cpu, T, pos0, hd, seed, IBEX_TYPE_F32);
}

Test(kernels_cuda, attention_prefill_forms_layouts_gqa) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int hds[] = {64, 128};
    for (int h = 0; h < 2; h++) {
        check_attention(gpu, cpu, 7, 0, hds[h], 1000 + h);
        check_attention(gpu, cpu, 7, 37, hds[h], 1010 + h);
    }
    /* head_dims that are not multiples of 32 (stories15M: 48) or of 4 (scalar K loads) */
    check_attention(gpu, cpu, 5, 20, 48, 1020);
    check_attention(gpu, cpu, 3, 40, 20, 1021);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

Test(kernels_cuda, attention_decode_long_context_splits) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
#if IBEX_HAVE_CUDA
    ibex_device_info info;
    gpu->device_info(gpu, &info);
    int chunk = 0;
    const int n_splits = ibex_cuda_attention_splits(info.sm_count, 1, 1500, 8, &chunk);
    cr_assert(n_splits > 1 && chunk % 32 == 0 && (int64_t)n_splits * chunk >= 1501 &&
                  (int64_t)(n_splits - 1) * chunk < 1501,
              "1501 keys in %d splits of %d", n_splits, chunk);
    cr_assert_eq(ibex_cuda_attention_pick(IBEX_ATTN_AUTO, 1, 1500), IBEX_ATTN_SPLIT_K);
    cr_assert_eq(ibex_cuda_attention_pick(IBEX_ATTN_AUTO, 7, 37), IBEX_ATTN_PAGED);
    cr_assert_eq(ibex_cuda_attention_pick(IBEX_ATTN_MATERIALIZED, 1, 1500), IBEX_ATTN_MATERIALIZED);
#endif
    check_attention(gpu, cpu, 1, 1500, 64, 1100);
    check_attention(gpu, cpu, 1, 1500, 128, 1101);
    check_attention(gpu, cpu, 3, 700, 128, 1102); /* several decode rows, each its own split count */
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* F16 and BF16 KV pools through every form: prefill (T = 5) and decode (T = 1, the grouped
 * kernel under AUTO, with splits at 700 keys), paged and contiguous. */
Test(kernels_cuda, attention_f16_bf16_kv) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    for (int ti = 1; ti < 3; ti++) {
        check_attention_t(gpu, cpu, 5, 20, 64, 1200 + ti, k_kv_types[ti]);
        check_attention_t(gpu, cpu, 1, 700, 128, 1210 + ti, k_kv_types[ti]);
        check_attention_t(gpu, cpu, 1, 37, 48, 1220 + ti, k_kv_types[ti]);
    }
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* ---- batched decode attention (attention_batch) ---- */

/* n_seq sequences of n_keys[s] keys (their one query at position n_keys[s] − 1), sequence s
 * paged through a shuffled set of blocks when paged[s], else a contiguous run; pools of
 * type t; n_heads query heads over n_kv KV heads of hd. attention_batch must equal the
 * CPU's attention of each sequence alone (on the widened F32 pool), in a number of launches
 * that does not depend on n_seq; returns the launches. */
static int64_t check_batch_again(ibex_backend *gpu, ibex_backend *cpu, int n_seq, const int *n_keys,
                                 const bool *paged, int n_heads, int n_kv, int hd, ibex_type t, uint64_t seed,
                                 bool again);
static int64_t check_batch(ibex_backend *gpu, ibex_backend *cpu, int n_seq, const int *n_keys, const bool *paged,
                           int n_heads, int n_kv, int hd, ibex_type t, uint64_t seed) {
    return check_batch_again(gpu, cpu, n_seq, n_keys, paged, n_heads, n_kv, hd, t, seed, false);
}

/* check_batch; with `again`, the same call is then run twice more into a NaN-filled
 * output: once as it was, once with the emulator running the grid's blocks last to first
 * (EMU_BLOCK_ORDER; no effect on a GPU, whose block order varies anyway). Both must give
 * the first call's bits: the split arrival counters are back at 0 after a launch (a
 * kernel that left them counted would combine no split the second time, leaving NaN), and
 * the combination does not depend on which split's block came last. */
static int64_t check_batch_again(ibex_backend *gpu, ibex_backend *cpu, int n_seq, const int *n_keys,
                                 const bool *paged, int n_heads, int n_kv, int hd, ibex_type t, uint64_t seed,
                                 bool again) {
    const int bs = 16;
    const int64_t row = (int64_t)n_kv * hd, qd = (int64_t)n_heads * hd;
    int n_blocks = 0, nb[8], max_keys = 0;
    cr_assert(n_seq <= 8);
    for (int s = 0; s < n_seq; s++) {
        nb[s] = (n_keys[s] + bs - 1) / bs;
        n_blocks += nb[s];
        if (n_keys[s] > max_keys) max_keys = n_keys[s];
    }
    const int n_pool = n_blocks + 2;
    const int64_t pool = (int64_t)n_pool * bs * row;
    rng r = {seed};
    /* physical blocks: a shuffled order; a contiguous sequence gets a run of them */
    int32_t *perm = shuffled(n_pool, seed + 1);
    int32_t *tables = malloc((size_t)n_blocks * sizeof(int32_t));
    ibex_attn_seq seqs[8];
    float *kp = malloc((size_t)pool * 4), *vp = malloc((size_t)pool * 4);
    cr_assert(tables && kp && vp);
    for (int64_t e = 0; e < pool; e++) kp[e] = vp[e] = NAN;
    /* blocks 1..: runs for the contiguous sequences first, then the shuffled rest (block 0
     * is never used, so a kernel reading a table entry of 0 meets NaN) */
    int next_run = 1, off = 0;
    int used_in_perm = 0;
    int contiguous_blocks = 0;
    for (int s = 0; s < n_seq; s++)
        if (!paged[s]) contiguous_blocks += nb[s];
    for (int s = 0; s < n_seq; s++) {
        seqs[s].n_keys = n_keys[s];
        seqs[s].table_off = off;
        seqs[s].first_block = paged[s] ? -1 : next_run;
        for (int b = 0; b < nb[s]; b++) {
            if (!paged[s]) {
                tables[off + b] = next_run + b;
            } else {
                int32_t blk;
                do blk = perm[used_in_perm++];
                while (blk == 0 || blk <= contiguous_blocks);
                tables[off + b] = blk;
            }
        }
        if (!paged[s]) next_run += nb[s];
        off += nb[s];
    }
    float *q = rand_vec(&r, n_seq * qd, -3.0f, 3.0f);
    float *ref = nan_vec(n_seq * qd);
    for (int s = 0; s < n_seq; s++) {
        float *K = rand_vec(&r, (int64_t)n_keys[s] * row, -1.0f, 1.0f), *V = rand_vec(&r, (int64_t)n_keys[s] * row, -1.0f, 1.0f);
        for (int tk = 0; tk < n_keys[s]; tk++) {
            const int64_t slot = (int64_t)tables[seqs[s].table_off + tk / bs] * bs + tk % bs;
            for (int64_t e = 0; e < row; e++) {
                kp[slot * row + e] = kv_round(K[(int64_t)tk * row + e], t);
                vp[slot * row + e] = kv_round(V[(int64_t)tk * row + e], t);
            }
        }
        free(K), free(V);
    }
    for (int s = 0; s < n_seq; s++) { /* the CPU, one sequence at a time */
        ibex_kv_view hv = {.k = kp, .v = vp, .block_table = tables + seqs[s].table_off, .block_size = bs,
                           .n_kv_heads = n_kv, .head_dim = hd};
        cpu->attention(cpu, ref + s * qd, q + s * qd, &hv, 1, n_keys[s] - 1, n_heads, 1.0f / sqrtf((float)hd));
    }
    void *tkp = kv_pack(kp, pool, t), *tvp = kv_pack(vp, pool, t);
    void *dkp = dup_kind(gpu, tkp, (size_t)pool * kv_elem(t), IBEX_BUF_KV);
    void *dvp = dup_kind(gpu, tvp, (size_t)pool * kv_elem(t), IBEX_BUF_KV);
    int32_t *dt = dup_to(gpu, tables, (size_t)n_blocks * 4);
    ibex_attn_seq *dseqs = dup_to(gpu, seqs, sizeof seqs[0] * (size_t)n_seq);
    float *dq = dup_to(gpu, q, (size_t)(n_seq * qd) * 4), *dout = dev_nan(gpu, n_seq * qd);
    ibex_kv_view dv = {.k = dkp, .v = dvp, .block_table = dt, .block_size = bs, .n_kv_heads = n_kv, .head_dim = hd,
                       .type = t};
    ibex_dev_counters c0 = counters(gpu);
    gpu->attention_batch(gpu, dout, dq, &dv, dseqs, seqs, n_seq, n_heads, 1.0f / sqrtf((float)hd));
    const int64_t launches = counters(gpu).launches - c0.launches;
    expect_sync_ok(gpu);
    float *got = fetch(gpu, dout, n_seq * qd);
    for (int s = 0; s < n_seq; s++) {
        const double e = nerr(got + s * qd, ref + s * qd, qd);
        cr_assert(e <= 5e-6, "batch of %d, sequence %d (%d keys, %s, %s KV, %d/%d heads, hd %d): error %g vs the CPU",
                  n_seq, s, n_keys[s], paged[s] ? "paged" : "contiguous", ibex_type_name(t), n_heads, n_kv, hd, e);
    }
    for (int rerun = 0; again && rerun < 2; rerun++) {
        gpu->dealloc(gpu, dout);
        dout = dev_nan(gpu, n_seq * qd);
        if (rerun) setenv("EMU_BLOCK_ORDER", "reverse", 1);
        const ibex_dev_counters c1 = counters(gpu);
        gpu->attention_batch(gpu, dout, dq, &dv, dseqs, seqs, n_seq, n_heads, 1.0f / sqrtf((float)hd));
        cr_assert_eq(counters(gpu).launches - c1.launches, launches);
        expect_sync_ok(gpu);
        unsetenv("EMU_BLOCK_ORDER");
        float *got2 = fetch(gpu, dout, n_seq * qd);
        cr_assert(!memcmp(got2, got, (size_t)(n_seq * qd) * 4), "batch of %d (%s KV): the %s call differs from the first",
                  n_seq, ibex_type_name(t), rerun ? "blocks-reversed" : "second");
        free(got2);
    }
    void *bufs[] = {dkp, dvp, dt, dseqs, dq, dout};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) gpu->dealloc(gpu, bufs[i]);
    free(perm), free(tables), free(kp), free(vp), free(q), free(ref), free(got), free(tkp), free(tvp);
    return launches;
}

Test(kernels_cuda, attention_batch_matches_cpu_per_sequence_in_one_launch) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    cr_assert_not_null(gpu->attention_batch);
    const int keys5[5] = {1, 37, 300, 17, 900};
    const bool mixed[5] = {true, false, true, false, true};
    for (int ti = 0; ti < 3; ti++) {
        const ibex_type t = k_kv_types[ti];
        /* a batch of 5 (GQA 8/2, hd 64) and the same kernel for 1 sequence: the same launches */
        const int64_t l5 = check_batch_again(gpu, cpu, 5, keys5, mixed, 8, 2, 64, t, 1300 + ti, ti == 1);
        const int64_t l1 = check_batch_again(gpu, cpu, 1, keys5 + 4, mixed + 4, 8, 2, 64, t, 1310 + ti, ti == 2);
        /* one launch, split or not (900 keys split; the last split's block combines them) */
        cr_assert(l5 == 1 && l1 == 1, "%s: %lld launches for 5 sequences, %lld for 1", ibex_type_name(t),
                  (long long)l5, (long long)l1);
    }
    /* 72 keys: 2 splits (of 48 and 24 keys); the 10-key sequence has one of the 2 */
    const int keys72[2] = {72, 10};
    cr_assert_eq(check_batch_again(gpu, cpu, 2, keys72, mixed, 8, 2, 64, IBEX_TYPE_F32, 1305, true), 1);
    /* no GQA (llama2-7b's 32/32 shape scaled down), hd 128, every sequence paged and contiguous */
    const int keys3[3] = {65, 5, 200};
    const bool all_paged[3] = {true, true, true}, none_paged[3] = {false, false, false};
    check_batch(gpu, cpu, 3, keys3, all_paged, 4, 4, 128, IBEX_TYPE_F16, 1320);
    check_batch(gpu, cpu, 3, keys3, none_paged, 4, 4, 128, IBEX_TYPE_F32, 1321);
    /* a group wider than one block (40 heads of 128 over 1 KV head: chunks of 16, 16, 8) */
    const int keys2[2] = {40, 19};
    check_batch(gpu, cpu, 2, keys2, mixed, 40, 1, 128, IBEX_TYPE_BF16, 1330);
    /* an explicit form runs per sequence (the comparison path), still right */
    ibex_err err = {0};
    cr_assert_eq(gpu->set_attention(gpu, IBEX_ATTN_PAGED, &err), IBEX_OK);
    const int64_t lp = check_batch(gpu, cpu, 5, keys5, mixed, 8, 2, 64, IBEX_TYPE_F16, 1340);
    cr_assert_eq(lp, 5, "paged form: one launch per sequence");
    cr_assert_eq(gpu->set_attention(gpu, IBEX_ATTN_AUTO, &err), IBEX_OK);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* The grouped decode kernel's sizing rules. */
Test(kernels_cuda, decode_kernel_sizing) {
#if IBEX_HAVE_CUDA
    cr_assert_eq(ibex_cuda_decode_heads_per_block(4, 128), 4);
    cr_assert_eq(ibex_cuda_decode_heads_per_block(40, 128), 16);
    cr_assert_eq(ibex_cuda_decode_heads_per_block(8, 256), 8);
    cr_assert_eq(ibex_cuda_decode_heads_per_block(64, 1), 32);
    cr_assert(ibex_cuda_attention_grouped(IBEX_ATTN_AUTO, 1, 32, 8));
    cr_assert(!ibex_cuda_attention_grouped(IBEX_ATTN_AUTO, 2, 32, 8));
    cr_assert(!ibex_cuda_attention_grouped(IBEX_ATTN_SPLIT_K, 1, 32, 8));
    cr_assert(!ibex_cuda_attention_grouped(IBEX_ATTN_AUTO, 1, 6, 4));
    int chunk = 0;
    /* llama2-7b at batch 1 on 132 SMs: 32 blocks, 4096 keys -> 17 splits wanted (528 blocks,
     * 4 per SM), 241 keys each rounded up to 256: 16 splits (512 blocks) */
    const int n = ibex_cuda_decode_splits(132, 32, 4096, &chunk);
    cr_assert(n == 16 && chunk == 256,
              "%d splits of %d", n, chunk);
    /* short contexts do not split (>= 64 keys per split); a full GPU does not split */
    cr_assert_eq(ibex_cuda_decode_splits(132, 32, 60, &chunk), 1);
    cr_assert_eq(ibex_cuda_decode_splits(132, 128 * 32, 4096, &chunk), 1);
    cr_assert_leq(ibex_cuda_decode_splits(132, 1, 1 << 20, &chunk), 256);
    /* a launch splits only with fewer block groups than it has arrival counters */
    const int nc = ibex_cuda_decode_counters(132);
    cr_assert_eq(ibex_cuda_decode_splits(132, nc, 1 << 20, &chunk), 1);
    cr_assert_gt(ibex_cuda_decode_splits(132, nc - 1, 1 << 20, &chunk), 1);
    cr_assert_eq(ibex_cuda_decode_splits(8, ibex_cuda_decode_counters(8), 1 << 20, &chunk), 1);
#else
    cr_skip_test("no CUDA backend in this build");
#endif
}

Test(kernels_cuda, attention_unsupported_head_dim_is_a_sticky_error) {
    ibex_backend *gpu = gpu_or_skip();
    const int hd = 320, n_heads = 2;
    float *dq = dev_nan(gpu, n_heads * hd), *dout = dev_nan(gpu, n_heads * hd);
    float *dk = dev_nan(gpu, 16 * hd), *dvv = dev_nan(gpu, 16 * hd);
    const int32_t t0 = 0;
    int32_t *dt = dup_to(gpu, &t0, sizeof t0);
    ibex_kv_view kv = {.k = dk, .v = dvv, .block_table = dt, .block_size = 16, .n_kv_heads = 1, .head_dim = hd};
    gpu->attention(gpu, dout, dq, &kv, 1, 0, n_heads, 0.1f);
    ibex_err err = {0};
    cr_assert_eq(gpu->sync(gpu, &err), IBEX_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "head_dim 320") != NULL, "%s", err.msg);
    expect_sync_ok(gpu);
    ibex_backend_free(gpu);
}

/* ---- fused decode ops, staging, counters (issue 15) ---- */

/* matmul_split (Q|K|V rows into three buffers), matmul_add (y += x·Wᵀ) and
 * matmul_swiglu (silu(x·Gᵀ)·(x·Uᵀ)) against the CPU's matmul, add and silu_mul; at
 * decode sizes with 16-bit weights each must be ONE launch. */
static void check_fused(ibex_backend *gpu, ibex_backend *cpu, ibex_type t, int T, uint64_t seed) {
    const int n_in = 64, nq = 48, nk = 16, nf = 40;
    rng r = {seed};
    size_t wb3, wb2;
    void *w3 = make_weights(&r, t, nq + 2 * nk, n_in, &wb3); /* Q|K|V */
    void *w2 = make_weights(&r, t, 2 * nf, n_in, &wb2);      /* gate|up */
    const size_t rb = ibex_type_row_bytes(t, n_in);
    float *x = rand_vec(&r, (int64_t)T * n_in, -1.0f, 1.0f);
    float *y0 = rand_vec(&r, (int64_t)T * nq, -1.0f, 1.0f);
    void *dw3 = dup_kind(gpu, w3, wb3, IBEX_BUF_WEIGHTS), *dw2 = dup_kind(gpu, w2, wb2, IBEX_BUF_WEIGHTS);
    float *dx = dup_to(gpu, x, (size_t)T * n_in * 4);
    const bool matvec = uses_matvec(t, T, n_in, dw3, dx);
    /* split */
    float *dq = dev_nan(gpu, (int64_t)T * nq), *dk = dev_nan(gpu, (int64_t)T * nk), *dv = dev_nan(gpu, (int64_t)T * nk);
    float *ys[3] = {dq, dk, dv};
    const int n_outs[3] = {nq, nk, nk};
    ibex_dev_counters c0 = counters(gpu);
    gpu->matmul_split(gpu, ys, n_outs, 3, dx, dw3, t, T, n_in);
    ibex_dev_counters c1 = counters(gpu);
    if (matvec) cr_assert_eq(c1.launches - c0.launches, 1, "%s T=%d: split is one launch", ibex_type_name(t), T);
    expect_sync_ok(gpu);
    const double tol = t == IBEX_TYPE_F32 ? 2e-6 : matvec ? 1e-5 : t == IBEX_TYPE_F16 ? 1e-3 : 5e-3;
    size_t off = 0;
    for (int s = 0; s < 3; s++) {
        float *ref = nan_vec((int64_t)T * n_outs[s]);
        cpu->matmul(cpu, ref, x, (const char *)w3 + off, t, T, n_in, n_outs[s]);
        float *got = fetch(gpu, ys[s], (int64_t)T * n_outs[s]);
        const double e = nerr(got, ref, (int64_t)T * n_outs[s]);
        cr_assert(e <= tol, "%s T=%d split part %d: error %g > %g", ibex_type_name(t), T, s, e, tol);
        off += rb * (size_t)n_outs[s];
        free(ref), free(got);
    }
    /* add: y0 += x·Qᵀ */
    float *dy = dup_to(gpu, y0, (size_t)T * nq * 4);
    c0 = counters(gpu);
    gpu->matmul_add(gpu, dy, dx, dw3, t, T, n_in, nq);
    c1 = counters(gpu);
    if (matvec) cr_assert_eq(c1.launches - c0.launches, 1, "%s T=%d: matmul_add is one launch", ibex_type_name(t), T);
    expect_sync_ok(gpu);
    {
        float *ref = nan_vec((int64_t)T * nq);
        cpu->matmul(cpu, ref, x, w3, t, T, n_in, nq);
        cpu->add(cpu, ref, y0, (int64_t)T * nq);
        float *got = fetch(gpu, dy, (int64_t)T * nq);
        const double e = nerr(got, ref, (int64_t)T * nq);
        cr_assert(e <= tol, "%s T=%d matmul_add: error %g > %g", ibex_type_name(t), T, e, tol);
        free(ref), free(got);
    }
    /* swiglu */
    float *dh = dev_nan(gpu, (int64_t)T * nf), *dtmp = dev_nan(gpu, (int64_t)T * nf);
    c0 = counters(gpu);
    gpu->matmul_swiglu(gpu, dh, dtmp, dx, dw2, t, T, n_in, nf);
    c1 = counters(gpu);
    if (matvec) cr_assert_eq(c1.launches - c0.launches, 1, "%s T=%d: swiglu is one launch", ibex_type_name(t), T);
    expect_sync_ok(gpu);
    {
        float *g = nan_vec((int64_t)T * nf), *u = nan_vec((int64_t)T * nf);
        cpu->matmul(cpu, g, x, w2, t, T, n_in, nf);
        cpu->matmul(cpu, u, x, (const char *)w2 + rb * (size_t)nf, t, T, n_in, nf);
        cpu->silu_mul(cpu, g, g, u, (int64_t)T * nf);
        float *got = fetch(gpu, dh, (int64_t)T * nf);
        const double e = nerr(got, g, (int64_t)T * nf);
        cr_assert(e <= 2 * tol, "%s T=%d swiglu: error %g > %g", ibex_type_name(t), T, e, 2 * tol);
        free(g), free(u), free(got);
    }
    void *bufs[] = {dw3, dw2, dx, dq, dk, dv, dy, dh, dtmp};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) gpu->dealloc(gpu, bufs[i]);
    free(w3), free(w2), free(x), free(y0);
}

Test(kernels_cuda, fused_matmuls_match_the_cpu_in_one_launch) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const ibex_type types[] = {IBEX_TYPE_F16, IBEX_TYPE_BF16, IBEX_TYPE_F32};
    const int Ts[] = {1, 3, 6};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 3; b++) check_fused(gpu, cpu, types[a], Ts[b], 700 + 10 * a + b);
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* rope_kv: Q and K rotated like the CPU's rope (FP32 angles: error grows with the
 * position, ~1e-4 at 4095), K and V rows stored at their slots, every other slot untouched. */
Test(kernels_cuda, rope_kv_matches_cpu_rope_and_kv_store) {
    ibex_backend *gpu = gpu_or_skip(), *cpu = cpu_be();
    const int T = 5, n_slots = 12;
    const int32_t pos[5] = {0, 1, 17, 1000, 4095}, slots[5] = {7, 0, 11, 3, 5};
    const struct {
        int n_heads, n_kv, head_dim, rope_dim;
        float base;
    } cases[] = {{4, 2, 64, 64, 10000.0f}, {4, 4, 64, 32, 10000.0f}, {6, 2, 48, 48, 500000.0f}};
    /* pools of F32, F16 and BF16: the stored rows are the rotated k and v rounded to the
     * pool's type (nearest even), bit for bit; q and k stay F32 */
    for (size_t c = 0; c < 3 * sizeof cases / sizeof *cases; c++) {
        const size_t ci = c % 3;
        const ibex_type t = k_kv_types[c / 3];
        const int hd = cases[ci].head_dim, qn = T * cases[ci].n_heads * hd, row = cases[ci].n_kv * hd, kn = T * row;
        rng r = {900 + ci};
        float *q = rand_vec(&r, qn, -1.0f, 1.0f), *k = rand_vec(&r, kn, -1.0f, 1.0f), *v = rand_vec(&r, kn, -1.0f, 1.0f);
        float *dq = dup_to(gpu, q, (size_t)qn * 4), *dk = dup_to(gpu, k, (size_t)kn * 4), *dv = dup_to(gpu, v, (size_t)kn * 4);
        float *nan_pool = nan_vec((int64_t)n_slots * row);
        void *hnan = kv_pack(nan_pool, (int64_t)n_slots * row, t);
        void *kp = dup_kind(gpu, hnan, (size_t)n_slots * row * kv_elem(t), IBEX_BUF_KV);
        void *vp = dup_kind(gpu, hnan, (size_t)n_slots * row * kv_elem(t), IBEX_BUF_KV);
        int32_t *dpos = dup_to(gpu, pos, sizeof pos), *dslots = dup_to(gpu, slots, sizeof slots);
        ibex_dev_counters c0 = counters(gpu);
        gpu->rope_kv(gpu, dq, dk, dv, kp, vp, t, dslots, dpos, T, cases[ci].n_heads, cases[ci].n_kv, hd,
                     cases[ci].rope_dim, cases[ci].base);
        cr_assert_eq(counters(gpu).launches - c0.launches, 1, "rope_kv is one launch");
        expect_sync_ok(gpu);
        cpu->rope(cpu, q, pos, T, cases[ci].n_heads, hd, cases[ci].rope_dim, cases[ci].base);
        cpu->rope(cpu, k, pos, T, cases[ci].n_kv, hd, cases[ci].rope_dim, cases[ci].base);
        float *gq = fetch(gpu, dq, qn), *gk = fetch(gpu, dk, kn);
        float *gkp = kv_fetch(gpu, kp, (int64_t)n_slots * row, t), *gvp = kv_fetch(gpu, vp, (int64_t)n_slots * row, t);
        cr_assert(nerr(gq, q, qn) <= 2e-4, "case %zu: q error %g", c, nerr(gq, q, qn));
        cr_assert(nerr(gk, k, kn) <= 2e-4, "case %zu: k error %g", c, nerr(gk, k, kn));
        for (int sl = 0; sl < n_slots; sl++) {
            int i = -1;
            for (int j = 0; j < T; j++)
                if (slots[j] == sl) i = j;
            for (int e = 0; e < row; e++) {
                const float kk = gkp[(int64_t)sl * row + e], vv = gvp[(int64_t)sl * row + e];
                if (i < 0) {
                    cr_assert(isnan(kk) && isnan(vv), "case %zu: slot %d was written", c, sl);
                } else {
                    cr_assert_eq(vv, kv_round(v[(int64_t)i * row + e], t), "case %zu (%s): v of token %d at slot %d",
                                 c, ibex_type_name(t), i, sl);
                    cr_assert_eq(kk, kv_round(gk[(int64_t)i * row + e], t), "case %zu (%s): k of token %d at slot %d",
                                 c, ibex_type_name(t), i, sl);
                }
            }
        }
        void *bufs[] = {dq, dk, dv, kp, vp, dpos, dslots};
        for (size_t b = 0; b < sizeof bufs / sizeof *bufs; b++) gpu->dealloc(gpu, bufs[b]);
        free(q), free(k), free(v), free(gq), free(gk), free(gkp), free(gvp), free(nan_pool), free(hnan);
    }
    ibex_backend_free(gpu);
    ibex_backend_free(cpu);
}

/* Copies from and to pinned memory are queued (no sync until sync()); from malloc'ed
 * memory they wait. Bytes, allocations and frees are counted. */
Test(kernels_cuda, pinned_copies_are_queued_and_counted) {
    ibex_backend *gpu = gpu_or_skip();
    ibex_err err = {0};
    const size_t n = 4096;
    float *pin = gpu->host_alloc(gpu, n * 4, &err), *plain = malloc(n * 4);
    cr_assert(pin && plain, "%s", err.msg);
    for (size_t i = 0; i < n; i++) pin[i] = (float)i, plain[i] = -(float)i;
    ibex_dev_counters c0 = counters(gpu);
    float *d = gpu->alloc(gpu, n * 4, IBEX_BUF_ACTIVATIONS, &err);
    cr_assert_not_null(d, "%s", err.msg);
    ibex_dev_counters c1 = counters(gpu);
    cr_assert_eq(c1.allocs - c0.allocs, 1);
    cr_assert_eq(gpu->upload(gpu, d, pin, n * 4, &err), IBEX_OK, "%s", err.msg);
    ibex_dev_counters c2 = counters(gpu);
    cr_assert_eq(c2.syncs, c1.syncs, "an upload from pinned memory does not wait");
    cr_assert_eq(c2.h2d_bytes - c1.h2d_bytes, (int64_t)(n * 4));
    cr_assert_eq(gpu->download(gpu, pin + 0, d, n * 4 / 2, &err), IBEX_OK, "%s", err.msg);
    cr_assert_eq(counters(gpu).syncs, c1.syncs, "a download into pinned memory does not wait");
    expect_sync_ok(gpu);
    cr_assert_eq(gpu->upload(gpu, d, plain, n * 4, &err), IBEX_OK, "%s", err.msg);
    ibex_dev_counters c3 = counters(gpu);
    cr_assert_eq(c3.syncs - c2.syncs, 2, "sync() and the upload from malloc'ed memory each wait once");
    float *back = fetch(gpu, d, n);
    for (size_t i = 0; i < n; i++) cr_assert_eq(back[i], -(float)i);
    for (size_t i = 0; i < n / 2; i++) cr_assert_eq(pin[i], (float)i, "pinned download landed");
    gpu->dealloc(gpu, d);
    cr_assert_eq(counters(gpu).frees - c3.frees, 1);
    gpu->host_free(gpu, pin);
    expect_sync_ok(gpu);
    free(plain), free(back);
    ibex_backend_free(gpu);
}
