/* test_kernels_cpu.c — the CPU backend's ops against naive scalar references written here
 * (plain loops in double, attention with materialised scores and a full softmax), on
 * fixed-seed random inputs with odd sizes; plus paged == contiguous attention, thread-count
 * invariance and softmax/rope edge cases. Outputs are poisoned with NaN first so that an
 * element the op forgot to write fails the comparison. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/dtype.h"
#include "tests/test_rand.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

/* ---- helpers ---- */

/* sum (a−b)² / sum b²; NaN anywhere gives +inf so every threshold check fails. */
static double nmse(const float *a, const double *b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        const double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0.0 ? num / den : num;
}

static double nmse_f(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        const double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? num / den : num;
}

static ibex_backend *new_be(int n_threads) {
    ibex_backend *be = ibex_backend_cpu_new(n_threads);
    cr_assert_not_null(be);
    return be;
}

/* Weights of type t from F32 values; *deq receives the exact values the kernel sees. */
static void *make_weights(rng *r, ibex_type t, int n_out, int n_in, float **deq) {
    const int64_t n = (int64_t)n_out * n_in;
    float *src = rand_vec(r, n, -1.0f, 1.0f);
    const size_t rb = ibex_type_row_bytes(t, n_in);
    cr_assert(rb > 0);
    void *w = malloc(rb * (size_t)n_out);
    float *d = malloc((size_t)n * sizeof(float));
    cr_assert(w && d);
    for (int o = 0; o < n_out; o++) {
        char *row = (char *)w + rb * (size_t)o;
        if (t == IBEX_TYPE_Q8_0) { /* d = max|x|/127, q = round(x/d) */
            for (int b = 0; b < n_in; b += 32) {
                const float *x = src + (int64_t)o * n_in + b;
                float amax = 0.0f;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
                const float sc = amax / 127.0f;
                uint8_t *blk = (uint8_t *)row + (b / 32) * 34;
                const uint16_t dh = ibex_f32_to_f16(sc);
                memcpy(blk, &dh, 2);
                for (int j = 0; j < 32; j++) blk[2 + j] = (uint8_t)(int8_t)lroundf(sc > 0 ? x[j] / sc : 0);
            }
        } else {
            cr_assert(ibex_row_from_f32(row, src + (int64_t)o * n_in, t, n_in));
        }
        cr_assert(ibex_row_to_f32(d + (int64_t)o * n_in, row, t, n_in));
    }
    free(src);
    *deq = d;
    return w;
}

static void ref_matmul(double *y, const float *x, const float *w, int T, int n_in, int n_out) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++) {
            double s = 0.0;
            for (int k = 0; k < n_in; k++) s += (double)x[(int64_t)t * n_in + k] * w[(int64_t)o * n_in + k];
            y[(int64_t)t * n_out + o] = s;
        }
}

/* ---- backend object ---- */

Test(kernels_cpu, constructor_fills_every_op) {
    ibex_backend *be = new_be(0);
    cr_assert_str_eq(be->name, "cpu");
    cr_assert(be->set_threads && be->matmul && be->rmsnorm && be->rope && be->softmax &&
              be->silu_mul && be->add && be->embed && be->kv_write && be->attention && be->free);
    be->set_threads(be, 3);
    be->set_threads(be, -1);
    ibex_backend_free(be);
    ibex_backend_free(NULL);
}

/* ---- matmul ---- */

static void check_matmul(ibex_type t, int T, int n_in, int n_out, double tol, uint64_t seed) {
    rng r = {seed};
    float *wd;
    void *w = make_weights(&r, t, n_out, n_in, &wd);
    float *x = rand_vec(&r, (int64_t)T * n_in, -1.0f, 1.0f);
    float *y = nan_vec((int64_t)T * n_out);
    double *ref = malloc((size_t)T * n_out * sizeof(double));
    ref_matmul(ref, x, wd, T, n_in, n_out);
    ibex_backend *be = new_be(2);
    be->matmul(be, y, x, w, t, T, n_in, n_out);
    const double e = nmse(y, ref, (int64_t)T * n_out);
    cr_assert(e < tol, "matmul %s T=%d n_in=%d n_out=%d: nmse %g >= %g", ibex_type_name(t), T, n_in,
              n_out, e, tol);
    ibex_backend_free(be);
    free(w), free(wd), free(x), free(y), free(ref);
}

static const int k_T[] = {1, 3, 17};
static const int k_nin[] = {288, 100, 768, 37};
static const int k_nout[] = {67, 300, 16, 5};

static void check_matmul_all(ibex_type t, double tol) {
    for (size_t a = 0; a < sizeof k_T / sizeof *k_T; a++)
        for (size_t b = 0; b < sizeof k_nin / sizeof *k_nin; b++)
            check_matmul(t, k_T[a], k_nin[b], k_nout[(a + b) % 4], tol, 100 + a * 10 + b);
}

Test(kernels_cpu, matmul_f32) { check_matmul_all(IBEX_TYPE_F32, 1e-10); }
/* the reference uses the same dequantized weights, so only the summation order differs */
Test(kernels_cpu, matmul_f16) { check_matmul_all(IBEX_TYPE_F16, 1e-10); }
Test(kernels_cpu, matmul_bf16) { check_matmul_all(IBEX_TYPE_BF16, 1e-10); }
/* Q8_0 rows go through cpu_matmul_q.c, which also rounds the activations to 8 bits
 * (relative error ~1/254 per block): nmse ~1e-5 here; tests/test_quant.c bounds it exactly. */
Test(kernels_cpu, matmul_q8_0_generic_path) {
    check_matmul(IBEX_TYPE_Q8_0, 3, 288, 67, 1e-4, 7);
    check_matmul(IBEX_TYPE_Q8_0, 1, 64, 300, 1e-4, 8);
}

Test(kernels_cpu, matmul_larger_shapes) {
    check_matmul(IBEX_TYPE_F16, 64, 256, 200, 1e-10, 11); /* more than one token block */
    check_matmul(IBEX_TYPE_F16, 1, 2048, 771, 1e-10, 12);
}

/* Each token's row is the same whether computed alone (decode) or in a batch (prefill),
 * and whatever the thread count. */
Test(kernels_cpu, matmul_batch_and_thread_invariant) {
    const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};
    const int T = 17, n_in = 100, n_out = 301;
    for (int ti = 0; ti < 3; ti++) {
        rng r = {42 + (uint64_t)ti};
        float *wd;
        void *w = make_weights(&r, types[ti], n_out, n_in, &wd);
        float *x = rand_vec(&r, (int64_t)T * n_in, -1.0f, 1.0f);
        float *y1 = nan_vec((int64_t)T * n_out), *y2 = nan_vec((int64_t)T * n_out),
              *y3 = nan_vec((int64_t)T * n_out), *yd = nan_vec(n_out);
        ibex_backend *be = new_be(1);
        be->matmul(be, y1, x, w, types[ti], T, n_in, n_out);
        be->set_threads(be, 2);
        be->matmul(be, y2, x, w, types[ti], T, n_in, n_out);
        be->set_threads(be, 3);
        be->matmul(be, y3, x, w, types[ti], T, n_in, n_out);
        cr_assert(memcmp(y1, y2, (size_t)T * n_out * 4) == 0, "1 vs 2 threads differ (%s)", ibex_type_name(types[ti]));
        cr_assert(memcmp(y1, y3, (size_t)T * n_out * 4) == 0, "1 vs 3 threads differ");
        for (int t = 0; t < T; t++) {
            be->matmul(be, yd, x + (int64_t)t * n_in, w, types[ti], 1, n_in, n_out);
            cr_assert(memcmp(yd, y1 + (int64_t)t * n_out, (size_t)n_out * 4) == 0,
                      "token %d alone differs from the batch (%s)", t, ibex_type_name(types[ti]));
        }
        ibex_backend_free(be);
        free(w), free(wd), free(x), free(y1), free(y2), free(y3), free(yd);
    }
}

/* The packed prefill GEMM path (T >= 8): odd shapes against the double reference, and
 * every token's row bit-identical to that token computed alone (decode) — the exactness
 * contract of cpu_matmul.c. Shapes: n_in with a scalar tail (not a multiple of 8/16),
 * n_in below one vector, n_in long enough for several K blocks and for panels smaller
 * than a thread's run of rows (5632+3: 44-row panels), n_out not a multiple of 4 (rows
 * left over from the quads), T with a token tail (8..21). Catches a wrong packed index,
 * a missed K block or spill, a dropped tail row/token, or a changed summation order. */
Test(kernels_cpu, matmul_gemm_path_odd_shapes_and_decode_identity) {
    const ibex_type types[] = {IBEX_TYPE_F16, IBEX_TYPE_BF16, IBEX_TYPE_F32};
    const int shapes[][3] = {/* T, n_in, n_out */
                             {8, 37, 67},   {9, 100, 301},  {13, 2053, 33}, {21, 5635, 35},
                             {11, 15, 9},   {16, 1024, 64}, {19, 520, 7},   {9, 4100, 130},
                             {10, 5635, 101}}; /* one thread: panels of 44, 44 and 13 rows */
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int ti = 0; ti < 3; ti++) {
            const int T = shapes[si][0], n_in = shapes[si][1], n_out = shapes[si][2];
            rng r = {900 + si * 7 + (uint64_t)ti};
            float *wd;
            void *w = make_weights(&r, types[ti], n_out, n_in, &wd);
            float *x = rand_vec(&r, (int64_t)T * n_in, -1.0f, 1.0f);
            float *y = nan_vec((int64_t)T * n_out), *yd = nan_vec(n_out);
            double *ref = malloc((size_t)T * n_out * sizeof(double));
            ref_matmul(ref, x, wd, T, n_in, n_out);
            ibex_backend *be = new_be(si % 2 ? 2 : 1);
            be->matmul(be, y, x, w, types[ti], T, n_in, n_out);
            const double e = nmse(y, ref, (int64_t)T * n_out);
            cr_assert(e < 1e-10, "%s T=%d n_in=%d n_out=%d: nmse %g", ibex_type_name(types[ti]), T, n_in, n_out, e);
            for (int t = 0; t < T; t++) {
                be->matmul(be, yd, x + (int64_t)t * n_in, w, types[ti], 1, n_in, n_out);
                cr_assert(memcmp(yd, y + (int64_t)t * n_out, (size_t)n_out * 4) == 0,
                          "%s T=%d n_in=%d n_out=%d: token %d alone differs from the batch", ibex_type_name(types[ti]),
                          T, n_in, n_out, t);
            }
            ibex_backend_free(be);
            free(w), free(wd), free(x), free(y), free(yd), free(ref);
        }
}

/* The measured roofline entries: positive figures on a small buffer, one-thread and
 * multi-thread, and a refusal (not a made-up figure) for a buffer below one chunk. */
Test(kernels_cpu, roofline_read_bandwidth_and_peak_flops) {
    ibex_backend *be = new_be(2);
    cr_assert(be->read_bandwidth && be->peak_flops, "the CPU backend has both roofline entries");
    ibex_err err = {0};
    const double bw = be->read_bandwidth(be, (size_t)32 << 20, &err);
    cr_assert(bw > 1e8 && bw < 1e13, "read bandwidth %g B/s: %s", bw, err.msg);
    const double fl = be->peak_flops(be, &err);
    cr_assert(fl > 1e8 && fl < 1e14, "peak %g FLOP/s: %s", fl, err.msg);
    ibex_err e2 = {0};
    cr_assert_eq(be->read_bandwidth(be, 1000, &e2), 0.0);
    cr_assert_eq(e2.status, IBEX_ERR_INVALID);
    cr_assert(strstr(e2.msg, "read_bandwidth"), "message names the entry: %s", e2.msg);
    be->set_threads(be, 1);
    cr_assert(be->read_bandwidth(be, (size_t)16 << 20, &err) > 0);
    ibex_backend_free(be);
}

/* read_stream over given regions (the paired roofline's weight reads): unaligned starts
 * and odd lengths are read within their bounds (the sanitizer build catches a read past
 * one), a positive figure comes back, and a total under 4096 bytes is refused by name. */
Test(kernels_cpu, read_stream_reads_unaligned_regions_within_bounds) {
    ibex_backend *be = new_be(2);
    cr_assert(be->read_stream, "the CPU backend has read_stream");
    const size_t sz[3] = {(3u << 20) + 77, 5000, 300};
    unsigned char *buf[3];
    const void *ptr[3];
    for (int i = 0; i < 3; i++) {
        buf[i] = malloc(sz[i] + 3);
        memset(buf[i], 0x11 * (i + 1), sz[i] + 3);
        ptr[i] = buf[i] + 3; /* not 64-byte aligned */
    }
    size_t len[3] = {sz[0], sz[1], sz[2]};
    ibex_err err = {0};
    const double bw = be->read_stream(be, ptr, len, 3, &err);
    cr_assert(bw > 1e8 && bw < 1e13, "read_stream %g B/s: %s", bw, err.msg);
    ibex_err e2 = {0};
    len[0] = 1000, len[1] = 255, len[2] = 2000; /* 768 + 0 + 1792 bytes in whole 256-byte steps */
    cr_assert_eq(be->read_stream(be, ptr, len, 3, &e2), 0.0);
    cr_assert_eq(e2.status, IBEX_ERR_INVALID);
    cr_assert(strstr(e2.msg, "read_stream") && strstr(e2.msg, "2560 bytes"), "message: %s", e2.msg);
    for (int i = 0; i < 3; i++) free(buf[i]);
    ibex_backend_free(be);
}

/* A hand-checked product: catches transposed layouts that a random test might too. */
Test(kernels_cpu, matmul_known_values) {
    const float w[2 * 3] = {1, 2, 3, 4, 5, 6}; /* rows are outputs */
    const float x[2 * 3] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    float y[4];
    for (int i = 0; i < 4; i++) y[i] = NAN;
    ibex_backend *be = new_be(1);
    be->matmul(be, y, x, w, IBEX_TYPE_F32, 2, 3, 2);
    cr_assert_float_eq(y[0], -2.0f, 1e-6f);
    cr_assert_float_eq(y[1], -2.0f, 1e-6f);
    cr_assert_float_eq(y[2], 3.0f, 1e-6f);
    cr_assert_float_eq(y[3], 7.5f, 1e-6f);
    ibex_backend_free(be);
}

/* ---- rmsnorm, softmax, silu_mul, add, embed ---- */

Test(kernels_cpu, rmsnorm) {
    const int sizes[][2] = {{1, 288}, {3, 100}, {17, 768}, {2, 5}};
    for (int c = 0; c < 4; c++) {
        const int T = sizes[c][0], n = sizes[c][1];
        rng r = {200 + (uint64_t)c};
        float *x = rand_vec(&r, (int64_t)T * n, -2.0f, 2.0f), *g = rand_vec(&r, n, 0.5f, 1.5f);
        float *y = nan_vec((int64_t)T * n);
        double *ref = malloc((size_t)T * n * sizeof(double));
        const float eps = c == 3 ? 0.5f : 1e-5f; /* a large eps shows whether it is added */
        for (int t = 0; t < T; t++) {
            double ss = 0.0;
            for (int k = 0; k < n; k++) ss += (double)x[t * n + k] * x[t * n + k];
            const double inv = 1.0 / sqrt(ss / n + eps);
            for (int k = 0; k < n; k++) ref[t * n + k] = x[t * n + k] * inv * g[k];
        }
        ibex_backend *be = new_be(2);
        be->rmsnorm(be, y, x, g, T, n, eps);
        cr_assert(nmse(y, ref, (int64_t)T * n) < 1e-10, "rmsnorm T=%d n=%d", T, n);
        be->rmsnorm(be, x, x, g, T, n, eps); /* in place */
        cr_assert(memcmp(x, y, (size_t)T * n * 4) == 0, "in-place rmsnorm differs");
        ibex_backend_free(be);
        free(x), free(g), free(y), free(ref);
    }
}

Test(kernels_cpu, softmax_matches_reference_and_sums_to_one) {
    const int sizes[][2] = {{1, 288}, {3, 100}, {17, 768}, {2, 7}, {1, 32000}};
    for (int c = 0; c < 5; c++) {
        const int T = sizes[c][0], n = sizes[c][1];
        rng r = {300 + (uint64_t)c};
        float *x = rand_vec(&r, (int64_t)T * n, -10.0f, 10.0f);
        double *ref = malloc((size_t)T * n * sizeof(double));
        for (int t = 0; t < T; t++) {
            double mx = -INFINITY, s = 0.0;
            for (int k = 0; k < n; k++) mx = fmax(mx, x[t * n + k]);
            for (int k = 0; k < n; k++) s += ref[t * n + k] = exp((double)x[t * n + k] - mx);
            for (int k = 0; k < n; k++) ref[t * n + k] /= s;
        }
        ibex_backend *be = new_be(2);
        be->softmax(be, x, T, n);
        cr_assert(nmse(x, ref, (int64_t)T * n) < 1e-10, "softmax T=%d n=%d", T, n);
        for (int t = 0; t < T; t++) {
            double s = 0.0;
            for (int k = 0; k < n; k++) s += x[t * n + k];
            cr_assert(fabs(s - 1.0) < 1e-5, "row %d sums to %g", t, s);
        }
        ibex_backend_free(be);
        free(x), free(ref);
    }
}

Test(kernels_cpu, softmax_large_inputs) {
    float x[19] = {1000.0f, -1000.0f};
    for (int i = 2; i < 19; i++) x[i] = (i % 2) ? -1000.0f : 88.0f;
    ibex_backend *be = new_be(1);
    be->softmax(be, x, 1, 19);
    for (int i = 0; i < 19; i++) cr_assert(!isnan(x[i]) && x[i] >= 0.0f, "x[%d] = %g", i, x[i]);
    cr_assert_float_eq(x[0], 1.0f, 1e-6f);
    cr_assert_float_eq(x[1], 0.0f, 1e-30f);
    float y[3] = {-1000.0f, -1000.0f, -1001.0f}; /* all very negative: relative values matter */
    be->softmax(be, y, 1, 3);
    const double e = exp(-1.0), s = 2.0 + e;
    cr_assert_float_eq(y[0], 1.0 / s, 1e-6);
    cr_assert_float_eq(y[2], e / s, 1e-6);
    ibex_backend_free(be);
}

Test(kernels_cpu, silu_mul_and_add) {
    const int64_t sizes[] = {1, 100, 2048, 100003};
    for (int c = 0; c < 4; c++) {
        const int64_t n = sizes[c];
        rng r = {400 + (uint64_t)c};
        float *g = rand_vec(&r, n, -12.0f, 12.0f), *u = rand_vec(&r, n, -2.0f, 2.0f);
        float *y = nan_vec(n);
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) ref[i] = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        ibex_backend *be = new_be(2);
        be->silu_mul(be, y, g, u, n);
        cr_assert(nmse(y, ref, n) < 1e-10, "silu_mul n=%lld", (long long)n);
        be->silu_mul(be, g, g, u, n); /* in place */
        cr_assert(memcmp(g, y, (size_t)n * 4) == 0, "in-place silu_mul differs");
        for (int64_t i = 0; i < n; i++) ref[i] = (double)y[i] + u[i];
        be->add(be, y, u, n);
        cr_assert(nmse(y, ref, n) < 1e-14, "add n=%lld", (long long)n);
        ibex_backend_free(be);
        free(g), free(u), free(y), free(ref);
    }
    /* extreme gates: silu(−100) ≈ 0, silu(100) = 100, no NaN */
    float gate[2] = {-100.0f, 100.0f}, up[2] = {1.0f, 1.0f}, out[2];
    ibex_backend *be = new_be(1);
    be->silu_mul(be, out, gate, up, 2);
    cr_assert(fabsf(out[0]) < 1e-30f && out[1] == 100.0f, "silu extremes %g %g", out[0], out[1]);
    ibex_backend_free(be);
}

Test(kernels_cpu, embed_rows) {
    const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};
    const int vocab = 50, dim = 100, T = 5;
    const int32_t tokens[5] = {3, 49, 0, 3, 17};
    for (int ti = 0; ti < 3; ti++) {
        rng r = {500 + (uint64_t)ti};
        float *deq;
        void *table = make_weights(&r, types[ti], vocab, dim, &deq);
        float *y = nan_vec((int64_t)T * dim);
        ibex_backend *be = new_be(2);
        be->embed(be, y, table, types[ti], tokens, T, dim);
        for (int i = 0; i < T; i++)
            cr_assert(memcmp(y + i * dim, deq + tokens[i] * dim, (size_t)dim * 4) == 0,
                      "embed %s token %d", ibex_type_name(types[ti]), i);
        ibex_backend_free(be);
        free(table), free(deq), free(y);
    }
}

/* ---- rope ---- */

static void ref_rope(double *out, const float *x, const int32_t *pos, int T, int n_heads, int hd,
                     int rope_dim, double base) {
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++) {
            const float *v = x + ((int64_t)t * n_heads + h) * hd;
            double *o = out + ((int64_t)t * n_heads + h) * hd;
            for (int d = 0; d < hd; d++) o[d] = v[d];
            for (int i = 0; i < rope_dim / 2; i++) {
                const double th = pos[t] * pow(base, -2.0 * i / rope_dim);
                o[2 * i] = v[2 * i] * cos(th) - v[2 * i + 1] * sin(th);
                o[2 * i + 1] = v[2 * i] * sin(th) + v[2 * i + 1] * cos(th);
            }
        }
}

Test(kernels_cpu, rope_matches_formula) {
    struct { int T, n_heads, hd, rope_dim; float base; } cases[] = {
        {1, 8, 64, 64, 10000.0f}, {3, 6, 48, 48, 10000.0f}, {17, 2, 64, 32, 500000.0f},
        {2, 3, 200, 160, 10000.0f}};
    for (int c = 0; c < 4; c++) {
        const int T = cases[c].T, nh = cases[c].n_heads, hd = cases[c].hd;
        rng r = {600 + (uint64_t)c};
        const int64_t n = (int64_t)T * nh * hd;
        float *x = rand_vec(&r, n, -1.0f, 1.0f);
        int32_t *pos = malloc((size_t)T * sizeof(int32_t));
        for (int t = 0; t < T; t++) pos[t] = (int32_t)(rng_next(&r) % 5000); /* arbitrary order */
        double *ref = malloc((size_t)n * sizeof(double));
        ref_rope(ref, x, pos, T, nh, hd, cases[c].rope_dim, cases[c].base);
        ibex_backend *be = new_be(2);
        be->rope(be, x, pos, T, nh, hd, cases[c].rope_dim, cases[c].base);
        cr_assert(nmse(x, ref, n) < 1e-10, "rope case %d: nmse %g", c, nmse(x, ref, n));
        ibex_backend_free(be);
        free(x), free(pos), free(ref);
    }
}

Test(kernels_cpu, rope_identity_at_zero_and_known_rotation) {
    ibex_backend *be = new_be(1);
    rng r = {700};
    float *x = rand_vec(&r, 2 * 64, -1.0f, 1.0f);
    float *orig = malloc(2 * 64 * sizeof(float));
    memcpy(orig, x, 2 * 64 * sizeof(float));
    const int32_t zero[1] = {0};
    be->rope(be, x, zero, 1, 2, 64, 64, 10000.0f);
    cr_assert(memcmp(x, orig, 2 * 64 * sizeof(float)) == 0, "pos 0 must be the identity");
    /* head_dim 4, rope_dim 4, base 100, pos 2: pair 0 turns by 2 rad, pair 1 by 2/10 rad */
    float v[4] = {1.0f, 0.0f, 0.0f, 1.0f};
    const int32_t p2[1] = {2};
    be->rope(be, v, p2, 1, 1, 4, 4, 100.0f);
    cr_assert_float_eq(v[0], (float)cos(2.0), 1e-6f);
    cr_assert_float_eq(v[1], (float)sin(2.0), 1e-6f);
    cr_assert_float_eq(v[2], (float)-sin(0.2), 1e-6f);
    cr_assert_float_eq(v[3], (float)cos(0.2), 1e-6f);
    /* rope_dim 2 < head_dim 4: only the first pair turns */
    float w[4] = {1.0f, 0.0f, 1.0f, 0.0f};
    be->rope(be, w, p2, 1, 1, 4, 2, 100.0f);
    cr_assert_float_eq(w[0], (float)cos(2.0), 1e-6f);
    cr_assert(w[2] == 1.0f && w[3] == 0.0f, "dims past rope_dim must not move");
    ibex_backend_free(be);
    free(x), free(orig);
}

/* ---- KV cache and attention ---- */

typedef struct kv_case {
    int T, pos0, n_heads, n_kv, hd;
} kv_case;

/* A cache of n_tok tokens with block size bs and element type t, blocks in shuffled
 * physical order, every byte of the pool first poisoned with 0xff (NaN in F32, F16 and
 * BF16); filled through the backend's kv_write in two calls. */
typedef struct kv_cache {
    void *k, *v;
    int32_t *table;
    ibex_kv_view view;
} kv_cache;

static void kv_cache_init_t(kv_cache *c, ibex_backend *be, const float *K, const float *V, int n_tok, int bs,
                            int n_kv, int hd, int split, uint64_t seed, ibex_type t) {
    const int n_blocks = (n_tok + bs - 1) / bs, n_pool = n_blocks + 2;
    const size_t esz = t == IBEX_TYPE_F32 ? 4 : 2;
    const size_t pool = (size_t)n_pool * bs * n_kv * hd * esz;
    c->k = malloc(pool);
    c->v = malloc(pool);
    memset(c->k, 0xff, pool);
    memset(c->v, 0xff, pool);
    c->table = malloc((size_t)n_blocks * sizeof(int32_t));
    int32_t *perm = malloc((size_t)n_pool * sizeof(int32_t));
    for (int i = 0; i < n_pool; i++) perm[i] = i;
    rng r = {seed};
    for (int i = n_pool - 1; i > 0; i--) { /* Fisher–Yates */
        const int j = (int)(rng_next(&r) % (uint64_t)(i + 1));
        const int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    memcpy(c->table, perm, (size_t)n_blocks * sizeof(int32_t));
    free(perm);
    c->view = (ibex_kv_view){.k = c->k, .v = c->v, .block_table = c->table, .block_size = bs,
                             .n_kv_heads = n_kv, .head_dim = hd, .type = t};
    const int64_t row = (int64_t)n_kv * hd;
    be->kv_write(be, &c->view, K, V, split, 0);
    be->kv_write(be, &c->view, K + split * row, V + split * row, n_tok - split, split);
}

static void kv_cache_init(kv_cache *c, ibex_backend *be, const float *K, const float *V, int n_tok,
                          int bs, int n_kv, int hd, int split, uint64_t seed) {
    kv_cache_init_t(c, be, K, V, n_tok, bs, n_kv, hd, split, seed, IBEX_TYPE_F32);
}

static void kv_cache_free(kv_cache *c) {
    free(c->k), free(c->v), free(c->table);
}

/* x[n] rounded to type t and back: the values a cache of type t holds. */
static float *rounded_copy(const float *x, int64_t n, ibex_type t) {
    float *y = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        y[i] = t == IBEX_TYPE_F16 ? ibex_f16_to_f32(ibex_f32_to_f16(x[i]))
             : t == IBEX_TYPE_BF16 ? ibex_bf16_to_f32(ibex_f32_to_bf16(x[i])) : x[i];
    return y;
}

/* The naive reference: materialised scores, a full softmax and P·V, all in double. */
static void ref_attention(double *out, const float *q, const float *K, const float *V, int T,
                          int pos0, int nh, int n_kv, int hd, float scale) {
    const int n_tok = pos0 + T;
    double *s = malloc((size_t)n_tok * sizeof(double));
    for (int i = 0; i < T; i++)
        for (int h = 0; h < nh; h++) {
            const int kvh = h / (nh / n_kv), n = pos0 + i + 1;
            const float *qh = q + ((int64_t)i * nh + h) * hd;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < n; j++) {
                double d = 0.0;
                for (int e = 0; e < hd; e++) d += (double)qh[e] * K[((int64_t)j * n_kv + kvh) * hd + e];
                s[j] = d * scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < n; j++) sum += s[j] = exp(s[j] - mx);
            double *o = out + ((int64_t)i * nh + h) * hd;
            for (int e = 0; e < hd; e++) {
                double a = 0.0;
                for (int j = 0; j < n; j++) a += s[j] * V[((int64_t)j * n_kv + kvh) * hd + e];
                o[e] = a / sum;
            }
        }
    free(s);
}

/* Attention of kc over a cache of type t against the double reference on the rounded K
 * and V (so only the kernel's F32 arithmetic differs: nmse < 1e-10 as for F32), then the
 * bit-exactness promises: a contiguous view (first_block, no table walk) == paged views of
 * block sizes 16, 1 and 5 in shuffled order, 1 thread == 2 threads, and each row decoded
 * alone == the same row of the prefill. */
static void check_attention_t(kv_case kc, uint64_t seed, ibex_type t) {
    const int n_tok = kc.pos0 + kc.T, row = kc.n_kv * kc.hd;
    rng r = {seed};
    float *K = rand_vec(&r, (int64_t)n_tok * row, -1.0f, 1.0f);
    float *V = rand_vec(&r, (int64_t)n_tok * row, -1.0f, 1.0f);
    /* large-ish queries so the softmax is peaked and chunk rescaling matters */
    float *q = rand_vec(&r, (int64_t)kc.T * kc.n_heads * kc.hd, -3.0f, 3.0f);
    const int64_t n_out = (int64_t)kc.T * kc.n_heads * kc.hd;
    const float scale = 1.0f / sqrtf((float)kc.hd);
    double *ref = malloc((size_t)n_out * sizeof(double));
    float *Kr = rounded_copy(K, (int64_t)n_tok * row, t), *Vr = rounded_copy(V, (int64_t)n_tok * row, t);
    ref_attention(ref, q, Kr, Vr, kc.T, kc.pos0, kc.n_heads, kc.n_kv, kc.hd, scale);
    const char *tn = ibex_type_name(t);

    ibex_backend *be = new_be(2);
    /* contiguous: one block of capacity n_tok + 3, addressed through first_block */
    kv_cache cont;
    kv_cache_init_t(&cont, be, K, V, n_tok, n_tok + 3, kc.n_kv, kc.hd, kc.pos0, seed, t);
    cont.view.contiguous = true;
    cont.view.first_block = cont.table[0];
    float *oc = nan_vec(n_out);
    be->attention(be, oc, q, &cont.view, kc.T, kc.pos0, kc.n_heads, scale);
    const double e = nmse(oc, ref, n_out);
    cr_assert(e < 1e-10, "%s contiguous attention T=%d pos0=%d heads %d/%d hd=%d: nmse %g", tn, kc.T, kc.pos0,
              kc.n_heads, kc.n_kv, kc.hd, e);

    const int block_sizes[] = {16, 1, 5};
    for (int b = 0; b < 3; b++) {
        kv_cache paged;
        kv_cache_init_t(&paged, be, K, V, n_tok, block_sizes[b], kc.n_kv, kc.hd, kc.pos0 / 2, seed + 1 + b, t);
        float *op = nan_vec(n_out);
        be->attention(be, op, q, &paged.view, kc.T, kc.pos0, kc.n_heads, scale);
        cr_assert(memcmp(op, oc, (size_t)n_out * 4) == 0, "%s paged (bs %d) != contiguous, nmse %g", tn,
                  block_sizes[b], nmse_f(op, oc, n_out));
        /* thread count must not matter */
        be->set_threads(be, 1);
        float *o1 = nan_vec(n_out);
        be->attention(be, o1, q, &paged.view, kc.T, kc.pos0, kc.n_heads, scale);
        cr_assert(memcmp(o1, op, (size_t)n_out * 4) == 0, "%s: 1 vs 2 threads differ", tn);
        be->set_threads(be, 2);
        free(op), free(o1);
        kv_cache_free(&paged);
    }
    /* decode one token at a time gives the prefill's rows */
    float *od = nan_vec((int64_t)kc.n_heads * kc.hd);
    for (int i = 0; i < kc.T; i++) {
        const int64_t off = (int64_t)i * kc.n_heads * kc.hd;
        be->attention(be, od, q + off, &cont.view, 1, kc.pos0 + i, kc.n_heads, scale);
        cr_assert(memcmp(od, oc + off, (size_t)kc.n_heads * kc.hd * 4) == 0, "%s decode row %d differs", tn, i);
    }
    free(od);
    kv_cache_free(&cont);
    ibex_backend_free(be);
    free(K), free(V), free(Kr), free(Vr), free(q), free(ref), free(oc);
}

static void check_attention(kv_case kc, uint64_t seed) { check_attention_t(kc, seed, IBEX_TYPE_F32); }

Test(kernels_cpu, attention_gqa_contiguous_and_paged) {
    const kv_case cases[] = {
        {1, 0, 8, 2, 64},   {1, 37, 8, 2, 64},  {3, 5, 8, 2, 48},  {17, 50, 8, 2, 64},
        {17, 0, 8, 8, 48},  {3, 130, 4, 1, 64}, {2, 70, 6, 3, 20}, {5, 200, 8, 2, 100},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) check_attention(cases[c], 800 + c);
}

Test(kernels_cpu, attention_long_context) {
    check_attention((kv_case){2, 1500, 4, 2, 64}, 900);
}

/* Every cache type × GQA group 1 / 4 / 8 × head_dim 64 / 128 × decode (T = 1) and prefill
 * (T = 40: tiles of several rows, a chunk boundary inside the tile) at pos0 0 and > 0. A
 * kernel that widened F16 / BF16 wrongly, mixed up a group's query heads, or let a row
 * see a later key fails the reference; one whose arithmetic depended on the block layout,
 * the tile or the thread fails the bit-exact comparisons. */
Test(kernels_cpu, attention_types_groups_head_dims) {
    const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};
    const int groups[] = {1, 4, 8}, hds[] = {64, 128, 36}; /* 36: 32-lane slices, then the scalar tail */
    const int shapes[][2] = {{1, 0}, {1, 45}, {40, 0}, {40, 27}}; /* T, pos0 */
    uint64_t seed = 1000;
    for (int ti = 0; ti < 3; ti++)
        for (int g = 0; g < 3; g++)
            for (int h = 0; h < 3; h++)
                for (int s = 0; s < 4; s++) {
                    const int n_kv = groups[g] == 8 ? 1 : 2;
                    check_attention_t((kv_case){shapes[s][0], shapes[s][1], groups[g] * n_kv, n_kv, hds[h]}, seed++,
                                      types[ti]);
                }
}

/* Items that serve several KV heads per key chunk: 8 and 6 KV heads, so 1, 2, 3 and 4
 * threads group the heads 8 / 4 / 2 / 2 (6 / 3 / 2 / 1) per item; group 3 gives an odd
 * count of query vectors per KV head. Against the reference (a head of a group read with
 * another head's rows, or a pair of query vectors formed across two heads, fails it) and bit for bit across the thread counts (a grouping that
 * changed any vector's arithmetic fails that). */
Test(kernels_cpu, attention_kv_head_groups_per_item) {
    const kv_case cases[] = {{1, 300, 32, 8, 64}, {9, 100, 24, 6, 64}, {1, 77, 18, 6, 128}};
    const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16};
    uint64_t seed = 1300;
    for (int ti = 0; ti < 2; ti++)
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++, seed++) {
            const kv_case kc = cases[c];
            check_attention_t(kc, seed, types[ti]);
            const int n_tok = kc.pos0 + kc.T, row = kc.n_kv * kc.hd;
            rng r = {seed};
            float *K = rand_vec(&r, (int64_t)n_tok * row, -1.0f, 1.0f);
            float *V = rand_vec(&r, (int64_t)n_tok * row, -1.0f, 1.0f);
            float *q = rand_vec(&r, (int64_t)kc.T * kc.n_heads * kc.hd, -3.0f, 3.0f);
            const int64_t n_out = (int64_t)kc.T * kc.n_heads * kc.hd;
            ibex_backend *be = new_be(1);
            kv_cache paged;
            kv_cache_init_t(&paged, be, K, V, n_tok, 16, kc.n_kv, kc.hd, kc.pos0, seed, types[ti]);
            float *o1 = nan_vec(n_out), *on = nan_vec(n_out);
            be->attention(be, o1, q, &paged.view, kc.T, kc.pos0, kc.n_heads, 0.125f);
            for (int nt = 2; nt <= 4; nt++) {
                be->set_threads(be, nt);
                be->attention(be, on, q, &paged.view, kc.T, kc.pos0, kc.n_heads, 0.125f);
                cr_assert(memcmp(on, o1, (size_t)n_out * 4) == 0, "%s heads %d/%d: %d threads != 1 thread",
                          ibex_type_name(types[ti]), kc.n_heads, kc.n_kv, nt);
            }
            kv_cache_free(&paged);
            ibex_backend_free(be);
            free(K), free(V), free(q), free(o1), free(on);
        }
}

/* kv_write of an F16 / BF16 cache stores each element exactly as the scalar round-to-
 * nearest-even converters do (the F16C vector path included: a row of 8k + 3 elements
 * covers both paths), halfway cases, overflow to infinity, subnormals and NaN included. */
Test(kernels_cpu, kv_write_rounds_like_the_reference) {
    const int n_kv = 3, hd = 17, row = n_kv * hd, T = 4; /* 51 elements per token */
    rng r = {77};
    float *k = rand_vec(&r, (int64_t)T * row, -70000.0f, 70000.0f), *v = rand_vec(&r, (int64_t)T * row, -2.0f, 2.0f);
    const float special[] = {0.0f, -0.0f, 1.0f + 0x1p-11f, 1.0f + 0x1p-11f + 0x1p-23f, 1.0f + 3 * 0x1p-11f,
                             65504.0f, 65520.0f, -65519.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 1e-9f, INFINITY,
                             -INFINITY, NAN, 1.0f + 0x1p-8f, 1.0f + 0x1.8p-8f, 3.0e38f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) k[i] = v[i + 30] = special[i];
    for (int i = 0; i < row; i++) v[row + i] = k[i] * 1e-5f; /* small magnitudes near the subnormals */
    const int32_t table[2] = {1, 0};
    ibex_backend *be = new_be(1);
    const ibex_type types[] = {IBEX_TYPE_F16, IBEX_TYPE_BF16};
    for (int ti = 0; ti < 2; ti++) {
        uint16_t kp[2 * 2 * 51], vp[2 * 2 * 51]; /* 2 blocks of 2 tokens */
        memset(kp, 0xff, sizeof kp), memset(vp, 0xff, sizeof vp);
        ibex_kv_view view = {.k = kp, .v = vp, .block_table = table, .block_size = 2, .n_kv_heads = n_kv,
                             .head_dim = hd, .type = types[ti]};
        be->kv_write(be, &view, k, v, T, 0);
        for (int t = 0; t < T; t++) {
            const int slot = table[t / 2] * 2 + t % 2;
            for (int e = 0; e < row; e++) {
                const float xs[2] = {k[t * row + e], v[t * row + e]};
                const uint16_t got[2] = {kp[slot * row + e], vp[slot * row + e]};
                for (int w = 0; w < 2; w++) {
                    const uint16_t want = types[ti] == IBEX_TYPE_F16 ? ibex_f32_to_f16(xs[w]) : ibex_f32_to_bf16(xs[w]);
                    if (xs[w] != xs[w]) {
                        const float back = types[ti] == IBEX_TYPE_F16 ? ibex_f16_to_f32(got[w]) : ibex_bf16_to_f32(got[w]);
                        cr_assert(isnan(back), "%s: NaN stored as 0x%04x", ibex_type_name(types[ti]), got[w]);
                    } else {
                        cr_assert_eq(got[w], want, "%s token %d elem %d (%s) of %.9g: 0x%04x, want 0x%04x",
                                     ibex_type_name(types[ti]), t, e, w ? "v" : "k", (double)xs[w], got[w], want);
                    }
                }
            }
        }
    }
    ibex_backend_free(be);
    free(k), free(v);
}

/* kv_write through a block table puts token t at block_table[t / bs], slot t % bs. */
Test(kernels_cpu, kv_write_layout) {
    const int n_kv = 2, hd = 3, bs = 4, row = n_kv * hd;
    const int32_t table[3] = {2, 0, 1};
    float *k = nan_vec(3 * bs * row), *v = nan_vec(3 * bs * row);
    ibex_kv_view view = {.k = k, .v = v, .block_table = table, .block_size = bs, .n_kv_heads = n_kv, .head_dim = hd};
    float kin[3 * 6], vin[3 * 6];
    for (int i = 0; i < 18; i++) kin[i] = (float)i, vin[i] = (float)(100 + i);
    ibex_backend *be = new_be(1);
    be->kv_write(be, &view, kin, vin, 3, 3); /* tokens 3, 4, 5 */
    /* token 3: block 2 slot 3; token 4: block 0 slot 0; token 5: block 0 slot 1 */
    cr_assert(memcmp(k + (2 * bs + 3) * row, kin, row * 4) == 0);
    cr_assert(memcmp(k + (0 * bs + 0) * row, kin + row, row * 4) == 0);
    cr_assert(memcmp(v + (0 * bs + 1) * row, vin + 2 * row, row * 4) == 0);
    cr_assert(isnan(k[(0 * bs + 2) * row]) && isnan(k[(1 * bs + 0) * row]), "wrote outside the tokens");
    ibex_backend_free(be);
    free(k), free(v);
}

/* The remaining ops give the same bits with 1 and 2 threads at sizes that go parallel. */
Test(kernels_cpu, elementwise_thread_invariant) {
    const int T = 64, n = 1000;
    const int64_t N = (int64_t)T * n;
    rng r = {1000};
    float *x = rand_vec(&r, N, -5.0f, 5.0f), *g = rand_vec(&r, n, 0.5f, 1.5f), *u = rand_vec(&r, N, -1.0f, 1.0f);
    float *a[2];
    int32_t pos[64];
    for (int i = 0; i < T; i++) pos[i] = 3 * i + 1;
    for (int th = 0; th < 2; th++) {
        ibex_backend *be = new_be(th + 1);
        float *y = nan_vec(N), *s = malloc((size_t)N * 4), *sm = malloc((size_t)N * 4), *ro = malloc((size_t)N * 4);
        memcpy(s, x, (size_t)N * 4);
        memcpy(ro, x, (size_t)N * 4);
        be->rmsnorm(be, y, x, g, T, n, 1e-6f);
        be->silu_mul(be, s, s, u, N);
        memcpy(sm, x, (size_t)N * 4);
        be->softmax(be, sm, T, n);
        be->rope(be, ro, pos, T, 10, 100, 64, 10000.0f);
        a[th] = malloc((size_t)N * 4 * 4);
        memcpy(a[th], y, (size_t)N * 4);
        memcpy(a[th] + N, s, (size_t)N * 4);
        memcpy(a[th] + 2 * N, sm, (size_t)N * 4);
        memcpy(a[th] + 3 * N, ro, (size_t)N * 4);
        free(y), free(s), free(sm), free(ro);
        ibex_backend_free(be);
    }
    cr_assert(memcmp(a[0], a[1], (size_t)N * 4 * 4) == 0, "1 vs 2 threads differ");
    free(a[0]), free(a[1]), free(x), free(g), free(u);
}

/* Every op at sizes that go to the worker pool, with 1 to 8 threads (more than this
 * machine's cores) and with one backend resized in place: the same bits each time. The
 * Q8_0 matmul takes the generic path with its per-thread row buffers. */
#define ALL_OPS_OUT(T_, n_, mm_out_, att_out_) ((int64_t)(T_) * (n_) * 5 + (mm_out_) * 2 + (att_out_))
static void all_ops(ibex_backend *be, float *out) {
    enum { T = 160, N = 1000, MT = 33, MIN = 256, MOUT = 300, AT = 9, APOS = 100, NH = 8, NKV = 2, HD = 64 };
    rng r = {4242};
    const int64_t TN = (int64_t)T * N;
    float *x = rand_vec(&r, TN, -5.0f, 5.0f), *g = rand_vec(&r, N, 0.5f, 1.5f), *u = rand_vec(&r, TN, -1.0f, 1.0f);
    float *o = out;
    int32_t pos[T];
    for (int i = 0; i < T; i++) pos[i] = 7 * i + 3;
    be->rmsnorm(be, o, x, g, T, N, 1e-6f);
    o += TN;
    memcpy(o, x, (size_t)TN * 4);
    be->silu_mul(be, o, o, u, TN);
    o += TN;
    memcpy(o, x, (size_t)TN * 4);
    be->softmax(be, o, T, N);
    o += TN;
    memcpy(o, x, (size_t)TN * 4);
    be->rope(be, o, pos, T, 10, 100, 64, 10000.0f);
    o += TN;
    memcpy(o, x, (size_t)TN * 4);
    be->add(be, o, u, TN); /* 160000 elements: above add's higher threshold */
    o += TN;
    const ibex_type mt[2] = {IBEX_TYPE_F16, IBEX_TYPE_Q8_0};
    float *xm = rand_vec(&r, (int64_t)MT * MIN, -1.0f, 1.0f);
    for (int k = 0; k < 2; k++) {
        float *wd;
        void *w = make_weights(&r, mt[k], MOUT, MIN, &wd);
        be->matmul(be, o, xm, w, mt[k], MT, MIN, MOUT);
        o += (int64_t)MT * MOUT;
        free(w), free(wd);
    }
    const int n_tok = APOS + AT, row = NKV * HD;
    float *K = rand_vec(&r, (int64_t)n_tok * row, -1.0f, 1.0f), *V = rand_vec(&r, (int64_t)n_tok * row, -1.0f, 1.0f);
    float *q = rand_vec(&r, (int64_t)AT * NH * HD, -3.0f, 3.0f);
    kv_cache c;
    kv_cache_init(&c, be, K, V, n_tok, 16, NKV, HD, APOS, 99);
    be->attention(be, o, q, &c.view, AT, APOS, NH, 0.125f);
    kv_cache_free(&c);
    free(x), free(g), free(u), free(xm), free(K), free(V), free(q);
}

Test(kernels_cpu, every_op_identical_for_1_to_8_threads) {
    const int64_t n_out = ALL_OPS_OUT(160, 1000, (int64_t)33 * 300, (int64_t)9 * 8 * 64);
    float *ref = nan_vec(n_out), *got = nan_vec(n_out);
    ibex_backend *be1 = new_be(1);
    all_ops(be1, ref);
    ibex_backend_free(be1);
    for (int64_t i = 0; i < n_out; i++) cr_assert(!isnan(ref[i]), "element %lld not written", (long long)i);
    ibex_backend *resized = new_be(1);
    for (int nt = 2; nt <= 8; nt++) {
        ibex_backend *be = new_be(nt);
        cr_assert_eq(ibex_backend_threads(be), nt);
        for (int64_t i = 0; i < n_out; i++) got[i] = NAN;
        all_ops(be, got);
        cr_assert(memcmp(ref, got, (size_t)n_out * 4) == 0, "%d threads differ from 1", nt);
        ibex_backend_free(be);
        resized->set_threads(resized, nt);
        for (int64_t i = 0; i < n_out; i++) got[i] = NAN;
        all_ops(resized, got);
        cr_assert(memcmp(ref, got, (size_t)n_out * 4) == 0, "resized to %d threads differs from 1", nt);
    }
    ibex_backend_free(resized);
    free(ref), free(got);
}
