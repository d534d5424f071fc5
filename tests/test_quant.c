/* test_quant.c — Q8_0 / Q4_0 weights: ggml's block quantizers on hand-worked blocks, the
 * quantized matmul (cpu_matmul_q.c: SIMD and portable paths, every tile and tail) against
 * a naive double-precision reference with an explicit error bound, embedding lookup of a
 * quantized table, `ibex model quantize` on a small file, and synthetic models generated
 * in F32 then quantized. Outputs are poisoned with NaN first, so an element a kernel
 * forgot to write fails every comparison. The byte-for-byte comparison with the `gguf`
 * package's quantizer is tests/gguf_quant.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/dtype.h"
#include "tests/test_rand.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

/* ---- the quantizers on blocks worked out by hand ---- */

/* amax = 127 gives d = 1, so q = roundf(x): halves round away from zero (2.5 -> 3, not
 * the 2 of round-to-even), as ggml's roundf does. */
Test(quant, q8_0_block_by_hand) {
    float x[32] = {127.0f, 2.5f, -2.5f, 0.5f, -126.6f, 1.49f};
    uint8_t b[34];
    cr_assert(ibex_quantize_q8_0(b, x, 32));
    uint16_t d;
    memcpy(&d, b, 2);
    cr_assert_eq(d, 0x3c00, "d = %#x, expected F16 1.0", d);
    const int8_t want[6] = {127, 3, -3, 1, -127, 1};
    for (int j = 0; j < 6; j++) cr_assert_eq((int8_t)b[2 + j], want[j], "q[%d] = %d, want %d", j, (int8_t)b[2 + j], want[j]);
    for (int j = 6; j < 32; j++) cr_assert_eq(b[2 + j], 0);
    /* an all-zero block: d = 0 and every quant 0, no division by zero */
    float z[32] = {0};
    cr_assert(ibex_quantize_q8_0(b, z, 32));
    for (int j = 0; j < 34; j++) cr_assert_eq(b[j], 0);
    cr_assert(!ibex_quantize_q8_0(b, x, 31), "a partial block must be refused");
}

/* The element of largest magnitude is −16, so d = −16/−8 = 2 and q = min(15, (int)(x/2 + 8.5));
 * element j sits in the low nibble of byte j, element j+16 in the high nibble. */
Test(quant, q4_0_block_by_hand) {
    float x[32] = {0};
    x[0] = -16.0f; /* -> 0 */
    x[1] = 1.0f;   /* 9.0 -> 9 */
    x[2] = -1.0f;  /* 8.0 -> 8 */
    x[3] = 14.9f;  /* 15.95 -> 15 */
    x[16] = 15.0f; /* 16.0 -> clamped 15 */
    x[17] = -3.0f; /* 7.0 -> 7 */
    uint8_t b[18];
    cr_assert(ibex_quantize_q4_0(b, x, 32));
    uint16_t d;
    memcpy(&d, b, 2);
    cr_assert_eq(d, 0x4000, "d = %#x, expected F16 2.0", d);
    cr_assert_eq(b[2], 0x00 | (15 << 4), "byte 0 = %#x", b[2]);
    cr_assert_eq(b[3], 9 | (7 << 4), "byte 1 = %#x", b[3]);
    cr_assert_eq(b[4], 8 | (8 << 4), "byte 2 = %#x", b[4]);
    cr_assert_eq(b[5], 15 | (8 << 4), "byte 3 = %#x", b[5]);
    /* a positive extreme gives a negative d and still maps exactly to quant 0 */
    float y[32] = {16.0f};
    cr_assert(ibex_quantize_q4_0(b, y, 32));
    memcpy(&d, b, 2);
    cr_assert_eq(d, 0xc000, "d = %#x, expected F16 -2.0", d);
    float back[32];
    cr_assert(ibex_row_to_f32(back, b, IBEX_TYPE_Q4_0, 32));
    cr_assert_eq(back[0], 16.0f);
    cr_assert_eq(back[1], 0.0f);
}

/* Round trip on random rows through ibex_row_from_f32: |dequant − x| ≤ d/2 (Q8_0), ≤ |d|
 * (Q4_0: truncation after +8.5 is rounding, but the clamp at 15 can cost a full step), plus
 * |q|·|d_f16 − d| because the quants are computed with the unrounded d: ≤ 127·d·2^−11 and
 * 8·d·2^−11. */
Test(quant, round_trip_error_bounds) {
    rng r = {99};
    const int n = 32 * 40;
    float *x = rand_vec(&r, n, -3.0f, 3.0f), back[32 * 40];
    uint8_t q8[40 * 34], q4[40 * 18];
    cr_assert(ibex_row_from_f32(q8, x, IBEX_TYPE_Q8_0, n));
    cr_assert(ibex_row_from_f32(q4, x, IBEX_TYPE_Q4_0, n));
    cr_assert(ibex_row_to_f32(back, q8, IBEX_TYPE_Q8_0, n));
    for (int i = 0; i < n; i++) {
        uint16_t dh;
        memcpy(&dh, q8 + (i / 32) * 34, 2);
        const float d = ibex_f16_to_f32(dh);
        cr_assert(fabsf(back[i] - x[i]) <= (0.5f + 127.0f / 2048.0f) * d * 1.001f + 1e-6f, "q8 elem %d: %g vs %g (d %g)", i, back[i], x[i], d);
    }
    cr_assert(ibex_row_to_f32(back, q4, IBEX_TYPE_Q4_0, n));
    for (int i = 0; i < n; i++) {
        uint16_t dh;
        memcpy(&dh, q4 + (i / 32) * 18, 2);
        const float d = fabsf(ibex_f16_to_f32(dh));
        cr_assert(fabsf(back[i] - x[i]) <= (1.0f + 8.0f / 2048.0f) * d * 1.001f + 1e-6f, "q4 elem %d: %g vs %g (d %g)", i, back[i], x[i], d);
    }
    free(x);
}

/* ---- quantized matmul ---- */

/* Random quantized weights (rows of rb bytes) and their exact values in double. */
static uint8_t *make_qweights(rng *r, ibex_type t, int n_out, int n_in, double **deq) {
    const size_t rb = ibex_type_row_bytes(t, n_in);
    uint8_t *w = malloc(rb * (size_t)n_out);
    double *d = malloc((size_t)n_out * n_in * sizeof(double));
    float *row = malloc((size_t)n_in * sizeof(float));
    cr_assert(w && d && row);
    for (int o = 0; o < n_out; o++) {
        /* rows of different scales, so a scale applied to the wrong row shows */
        const float s = 0.25f + (float)(o % 7);
        for (int k = 0; k < n_in; k++) row[k] = s * rng_uniform(r, -1.0f, 1.0f);
        cr_assert(ibex_row_from_f32(w + rb * (size_t)o, row, t, n_in));
        cr_assert(ibex_row_to_f32(row, w + rb * (size_t)o, t, n_in));
        for (int k = 0; k < n_in; k++) d[(int64_t)o * n_in + k] = row[k];
    }
    free(row);
    *deq = d;
    return w;
}

/* Checks y against Σ w·x in double with the bound of cpu_matmul_q.c's numerics: each
 * activation is rounded to within amax_b/254 of its block's largest |x| (plus float
 * rounding), so |y − ref| ≤ S·(1.001/254 + 1e-5) with S = Σ_k |w_k|·amax_b(k). */
static void check_against_ref(const char *what, const float *y, const double *wd, const float *x, int T, int n_in,
                              int n_out) {
    double worst = 0.0;
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * n_in;
        for (int o = 0; o < n_out; o++) {
            double ref = 0.0, S = 0.0;
            for (int b = 0; b < n_in / 32; b++) {
                double amax = 0.0;
                for (int k = 32 * b; k < 32 * b + 32; k++) amax = fmax(amax, fabs((double)xt[k]));
                for (int k = 32 * b; k < 32 * b + 32; k++) {
                    ref += wd[(int64_t)o * n_in + k] * xt[k];
                    S += fabs(wd[(int64_t)o * n_in + k]) * amax;
                }
            }
            const double tol = S * (1.001 / 254.0 + 1e-5), e = fabs((double)y[(int64_t)t * n_out + o] - ref);
            cr_assert(e <= tol, "%s: y[%d][%d] = %.9g, reference %.9g, error %.3g > bound %.3g", what, t, o,
                      y[(int64_t)t * n_out + o], ref, e, tol);
            if (tol > 0) worst = fmax(worst, e / tol);
        }
    }
    /* The bound is not vacuous: random data use a sizeable part of it. */
    cr_assert(worst > 1e-3, "%s: errors implausibly far below the bound (%g): is x quantized at all?", what, worst);
}

/* The float route (prefill, T ≥ IBEX_CPU_Q_FLOAT_MIN_T; numerics note 6): x is not
 * rounded, so y is the sequential F32 sum of the exact products, within
 * n_in·2⁻²⁴·Σ|w·x| of the double reference — about 250 times tighter than the integer
 * route's bound at n_in = 2048, so quantized activations would fail it. */
static void check_against_ref_float(const char *what, const float *y, const double *wd, const float *x, int T,
                                    int n_in, int n_out) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++) {
            double ref = 0.0, S = 0.0;
            for (int k = 0; k < n_in; k++) {
                const double p = wd[(int64_t)o * n_in + k] * x[(int64_t)t * n_in + k];
                ref += p, S += fabs(p);
            }
            const double tol = 1.01 * n_in * 0x1p-24 * S + 1e-30, e = fabs((double)y[(int64_t)t * n_out + o] - ref);
            cr_assert(e <= tol, "%s (float route): y[%d][%d] = %.9g, reference %.9g, error %.3g > bound %.3g", what, t,
                      o, y[(int64_t)t * n_out + o], ref, e, tol);
        }
}

static void check_q_matmul(ibex_type t, int T, int n_in, int n_out, uint64_t seed) {
    rng r = {seed};
    double *wd;
    uint8_t *w = make_qweights(&r, t, n_out, n_in, &wd);
    float *x = rand_vec(&r, (int64_t)T * n_in, -2.0f, 2.0f);
    const size_t rb = ibex_type_row_bytes(t, n_in);
    const int64_t ny = (int64_t)T * n_out;
    float *y1 = nan_vec(ny), *y2 = nan_vec(ny), *yp = nan_vec(ny), *yd = nan_vec(n_out);
    char what[96];
    snprintf(what, sizeof what, "%s T=%d n_in=%d n_out=%d", ibex_type_name(t), T, n_in, n_out);

    ibex_backend *be = ibex_backend_cpu_new(1);
    cr_assert_not_null(be);
    const bool fl = T >= IBEX_CPU_Q_FLOAT_MIN_T; /* which route the call takes (numerics notes 1, 6) */
    be->matmul(be, y1, x, w, t, T, n_in, n_out);
    if (fl)
        check_against_ref_float(what, y1, wd, x, T, n_in, n_out);
    else
        check_against_ref(what, y1, wd, x, T, n_in, n_out);
    be->set_threads(be, 2);
    be->matmul(be, y2, x, w, t, T, n_in, n_out);
    cr_assert(memcmp(y1, y2, (size_t)ny * 4) == 0, "%s: 1 and 2 threads differ", what);
    if (!fl) {
        /* within the integer route, a token alone == the same token in a batch, bit for bit
         * (numerics note 2) */
        for (int j = 0; j < T; j++) {
            be->matmul(be, yd, x + (int64_t)j * n_in, w, t, 1, n_in, n_out);
            cr_assert(memcmp(yd, y1 + (int64_t)j * n_out, (size_t)n_out * 4) == 0, "%s: token %d alone differs", what,
                      j);
        }
    } else {
        /* within the float route too: the first IBEX_CPU_Q_FLOAT_MIN_T tokens alone (other
         * tiles and tails) give the same bits */
        const int Tm = IBEX_CPU_Q_FLOAT_MIN_T;
        float *ym = nan_vec((int64_t)Tm * n_out);
        be->matmul(be, ym, x, w, t, Tm, n_in, n_out);
        cr_assert(memcmp(ym, y1, (size_t)Tm * n_out * 4) == 0, "%s: the first %d tokens alone differ", what, Tm);
        free(ym);
    }
    /* the portable path, over every row at once (its own tails) */
    ibex_cpu_mm_rows_q_portable(t, yp, x, (const char *)w, rb, T, n_in, n_out, 0, n_out);
    if (fl)
        check_against_ref_float(what, yp, wd, x, T, n_in, n_out);
    else
        check_against_ref(what, yp, wd, x, T, n_in, n_out);
#if IBEX_CPU_AVX2
    /* With FMA compiled in, both paths do the same float operations in the same order. */
    cr_assert(memcmp(y1, yp, (size_t)ny * 4) == 0, "%s: SIMD and portable paths differ", what);
#endif
    ibex_backend_free(be);
    free(w), free(wd), free(x), free(y1), free(y2), free(yp), free(yd);
}

static const int k_T[] = {1, 3, 17, 50, 61}; /* 50, 61: the float route, its tiles and tails */
static const int k_nin[] = {32, 288, 2048};
static const int k_nout[] = {1, 5, 67, 301};

static void check_all(ibex_type t) {
    for (size_t a = 0; a < sizeof k_T / sizeof *k_T; a++)
        for (size_t b = 0; b < sizeof k_nin / sizeof *k_nin; b++)
            for (size_t c = 0; c < sizeof k_nout / sizeof *k_nout; c++)
                check_q_matmul(t, k_T[a], k_nin[b], k_nout[c], 1000 + 100 * a + 10 * b + c);
}

Test(quant, matmul_q8_0_against_reference) { check_all(IBEX_TYPE_Q8_0); }
Test(quant, matmul_q4_0_against_reference) { check_all(IBEX_TYPE_Q4_0); }

/* T·n_in above the per-thread activation cache (Q_CACHE_MAX = 2^20 elements): the
 * chunk-by-chunk quantization path, which must give the same bits as the cached one
 * (check_q_matmul's decode == prefill comparison runs T = 1 through the cache). */
Test(quant, matmul_uncached_activations) {
    check_q_matmul(IBEX_TYPE_Q8_0, 17, 65536, 5, 77);
    check_q_matmul(IBEX_TYPE_Q4_0, 17, 65536, 3, 78);
}

/* A row-group call writes rows [r0, r1) of every token and nothing else. */
Test(quant, row_group_writes_only_its_rows) {
    const ibex_type types[2] = {IBEX_TYPE_Q8_0, IBEX_TYPE_Q4_0};
    for (int ti = 0; ti < 2; ti++) {
        rng r = {7 + (uint64_t)ti};
        const int T = 5, n_in = 96, n_out = 23;
        double *wd;
        uint8_t *w = make_qweights(&r, types[ti], n_out, n_in, &wd);
        float *x = rand_vec(&r, (int64_t)T * n_in, -1.0f, 1.0f), *y = nan_vec((int64_t)T * n_out);
        ibex_cpu_mm_rows_q(types[ti], y, x, (const char *)w, ibex_type_row_bytes(types[ti], n_in), T, n_in, n_out, 3,
                           14);
        for (int j = 0; j < T; j++)
            for (int o = 0; o < n_out; o++)
                cr_assert(isnan(y[j * n_out + o]) == (o < 3 || o >= 14), "%s y[%d][%d] = %g",
                          ibex_type_name(types[ti]), j, o, y[j * n_out + o]);
        free(w), free(wd), free(x), free(y);
    }
}

/* A shape that is not whole blocks cannot be computed: NaN, not garbage. */
Test(quant, partial_block_rows_give_nan) {
    float x[40] = {0}, y[2];
    uint8_t w[2 * 34] = {0};
    ibex_backend *be = ibex_backend_cpu_new(1);
    be->matmul(be, y, x, w, IBEX_TYPE_Q8_0, 1, 40, 2);
    cr_assert(isnan(y[0]) && isnan(y[1]));
    ibex_backend_free(be);
}

/* Embedding rows of a quantized table are dequantized exactly. */
Test(quant, embed_dequantizes_rows) {
    rng r = {5};
    double *wd;
    uint8_t *w = make_qweights(&r, IBEX_TYPE_Q4_0, 10, 64, &wd);
    float *y = nan_vec(3 * 64);
    const int32_t toks[3] = {9, 0, 4};
    ibex_backend *be = ibex_backend_cpu_new(1);
    be->embed(be, y, w, IBEX_TYPE_Q4_0, toks, 3, 64);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 64; k++) cr_assert_eq((double)y[i * 64 + k], wd[toks[i] * 64 + k]);
    ibex_backend_free(be);
    free(w), free(wd), free(y);
}

/* ---- ibex model quantize ---- */

Test(quant, quantize_gguf_file) {
    const char *in = IBEX_TEST_TMPDIR "/quant_in.gguf", *out = IBEX_TEST_TMPDIR "/quant_out.gguf";
    rng r = {11};
    float *mat = rand_vec(&r, 64 * 6, -1.0f, 1.0f), *vec = rand_vec(&r, 64, 0.9f, 1.1f), *odd = rand_vec(&r, 48 * 2, -1, 1);
    uint16_t mat16[64 * 6];
    for (int i = 0; i < 64 * 6; i++) mat16[i] = ibex_f32_to_f16(mat[i]);
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_str(w, "general.architecture", "llama");
    ibex_gguf_writer_set_u32(w, "general.file_type", 1);
    const char *strs[3] = {"a", "bc", ""};
    ibex_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, 3);
    const int32_t ints[3] = {1, -2, 3};
    ibex_gguf_writer_set_arr(w, "x.ints", IBEX_GGUF_I32, ints, 3);
    ibex_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", IBEX_TYPE_F16, 2, (const int64_t[]){64, 6}, mat16);
    ibex_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", IBEX_TYPE_F32, 1, (const int64_t[]){64}, vec);
    ibex_gguf_writer_add_tensor(w, "odd.weight", IBEX_TYPE_F32, 2, (const int64_t[]){48, 2}, odd);
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, in, &err), IBEX_OK, "%s", err.msg);
    ibex_gguf_writer_free(w);

    ibex_quantize_stats st;
    cr_assert_eq(ibex_model_quantize_gguf(in, out, IBEX_TYPE_Q4_0, &st, &err), IBEX_OK, "%s", err.msg);
    cr_assert_eq(st.n_quantized, 1);
    cr_assert_eq(st.n_kept, 2);
    ibex_gguf *g = ibex_gguf_open(out, &err);
    cr_assert_not_null(g, "%s", err.msg);
    uint32_t ft = 0, qv = 0;
    cr_assert_eq(ibex_gguf_get_u32(g, "general.file_type", &ft, NULL), IBEX_OK);
    cr_assert_eq(ft, 2, "file_type %u, llama.cpp's MOSTLY_Q4_0 is 2", ft);
    cr_assert_eq(ibex_gguf_get_u32(g, "general.quantization_version", &qv, NULL), IBEX_OK);
    cr_assert_eq(qv, 2);
    const ibex_gguf_value *toks, *iv;
    cr_assert_eq(ibex_gguf_get_arr(g, "tokenizer.ggml.tokens", IBEX_GGUF_STRING, &toks, NULL), IBEX_OK);
    cr_assert(toks->arr.n == 3 && toks->arr.strs[1].len == 2 && !memcmp(toks->arr.strs[1].data, "bc", 2));
    cr_assert_eq(ibex_gguf_get_arr(g, "x.ints", IBEX_GGUF_I32, &iv, NULL), IBEX_OK);
    cr_assert_eq(ibex_gguf_arr_i64(iv, 1), -2);
    const ibex_gguf_tensor *tq = ibex_gguf_find_tensor(g, "blk.0.attn_q.weight");
    const ibex_gguf_tensor *tn = ibex_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    const ibex_gguf_tensor *to = ibex_gguf_find_tensor(g, "odd.weight");
    cr_assert(tq && tn && to);
    cr_assert_eq(tq->type, IBEX_TYPE_Q4_0);
    cr_assert_eq(tn->type, IBEX_TYPE_F32);
    cr_assert_eq(to->type, IBEX_TYPE_F32, "rows of 48 are not whole blocks: kept");
    cr_assert(memcmp(tn->data, vec, 64 * 4) == 0);
    /* the quantized bytes are those of the F16 values (what the file held) quantized */
    float row[64];
    uint8_t want[2 * 18];
    for (int o = 0; o < 6; o++) {
        for (int k = 0; k < 64; k++) row[k] = ibex_f16_to_f32(mat16[o * 64 + k]);
        cr_assert(ibex_quantize_q4_0(want, row, 64));
        cr_assert(memcmp((const uint8_t *)tq->data + o * 36, want, 36) == 0, "row %d", o);
    }
    ibex_gguf_close(g);
    cr_assert_neq(ibex_model_quantize_gguf(in, out, IBEX_TYPE_Q4_1, NULL, &err), IBEX_OK);
    cr_assert(strstr(err.msg, "Q4_1"), "%s", err.msg);
    free(mat), free(vec), free(odd);
}

/* ---- synthetic models: generated in F32, then quantized ---- */

Test(quant, synthetic_quantized_weights) {
    ibex_model_params p = ibex_model_default_params();
    p.ctx_len = 64;
    p.wtype = IBEX_TYPE_F32;
    ibex_err err = {0};
    ibex_model *m32 = ibex_model_load("synthetic:tiny", &p, &err);
    cr_assert_not_null(m32, "%s", err.msg);
    const ibex_type types[2] = {IBEX_TYPE_Q8_0, IBEX_TYPE_Q4_0};
    for (int ti = 0; ti < 2; ti++) {
        p.wtype = types[ti];
        ibex_model *m = ibex_model_load("synthetic:tiny", &p, &err);
        cr_assert_not_null(m, "%s", err.msg);
        cr_assert_eq(m->tok_embd.type, types[ti]);
        cr_assert_eq(m->output.type, types[ti]);
        cr_assert_eq(m->layers[2].w_down.type, types[ti]);
        cr_assert_eq(m->weight_bytes, ibex_model_config_weight_bytes(&m->cfg, false, types[ti]));
        /* a row of the quantized model is the F32 model's row quantized */
        const ibex_weight *a = &m32->layers[1].wv, *b = &m->layers[1].wv;
        const size_t rb = ibex_type_row_bytes(types[ti], a->n_in);
        uint8_t *want = malloc(rb);
        for (int o = 0; o < 3; o++) {
            cr_assert(ibex_row_from_f32(want, (const float *)a->data + o * a->n_in, types[ti], a->n_in));
            cr_assert(memcmp(want, (const uint8_t *)b->data + o * rb, rb) == 0, "%s row %d", ibex_type_name(types[ti]), o);
        }
        free(want);
        ibex_model_free(m);
    }
    ibex_model_free(m32);
}
