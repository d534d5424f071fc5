/* test_gguf.c — GGUF reader and writer: round trips of every value and tensor type,
 * every malformed-file check (files built byte by byte so offsets are known), a
 * truncation sweep over every prefix of a valid file, and random byte flips. */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/gguf.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

/* ---- helpers ---- */

static void tmp_path(char *buf, size_t cap, const char *tag) {
    snprintf(buf, cap, "%s/ibex_test_gguf_%ld_%s.gguf", IBEX_TEST_TMPDIR, (long)getpid(), tag);
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

/* A byte builder for hand-made files. */
typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_raw(bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        b->p = realloc(b->p, c);
        cr_assert_not_null(b->p);
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_raw(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) { bb_raw(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_raw(b, &v, 8); }
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_zeros(bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) bb_u8(b, 0);
}
static void bb_pad(bb *b, size_t align) { bb_zeros(b, (align - b->n % align) % align); }
static void bb_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bb_raw(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_key(bb *b, const char *key, uint32_t type) {
    bb_str(b, key);
    bb_u32(b, type);
}
static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
static void bb_put_u32(bb *b, size_t off, uint32_t v) { memcpy(b->p + off, &v, 4); }
static void bb_put_u64(bb *b, size_t off, uint64_t v) { memcpy(b->p + off, &v, 8); }

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    if (n) cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    cr_assert_eq(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* Offsets of the fields of the minimal file, for patching. */
typedef struct min_offs {
    size_t version, n_tensors, n_kv;
    size_t kv0, kv0_type;   /* "general.architecture" = "llama" */
    size_t kv1, kv1_type, kv1_val; /* "test.n" = u32 7 */
    size_t tinfo, n_dims, ne0, ne1, ttype, toffset;
    size_t data; /* start of the data section */
} min_offs;

/* header(v3, 1 tensor, 2 kvs), tensor "w" F32 [32, 2] at offset 0, 256 data bytes. */
static min_offs build_min(bb *b) {
    min_offs o;
    bb_hdr(b, 3, 1, 2);
    o.version = 4;
    o.n_tensors = 8;
    o.n_kv = 16;
    o.kv0 = b->n;
    o.kv0_type = b->n + 8 + strlen("general.architecture");
    bb_key(b, "general.architecture", IBEX_GGUF_STRING);
    bb_str(b, "llama");
    o.kv1 = b->n;
    o.kv1_type = b->n + 8 + strlen("test.n");
    bb_key(b, "test.n", IBEX_GGUF_U32);
    o.kv1_val = b->n;
    bb_u32(b, 7);
    o.tinfo = b->n;
    o.n_dims = b->n + 8 + 1;
    o.ne0 = o.n_dims + 4;
    o.ne1 = o.ne0 + 8;
    o.ttype = o.ne1 + 8;
    o.toffset = o.ttype + 4;
    bb_tinfo(b, "w", 2, (const uint64_t[]){32, 2}, IBEX_TYPE_F32, 0);
    bb_pad(b, 32);
    o.data = b->n;
    for (int i = 0; i < 256; i++) bb_u8(b, (uint8_t)(i * 7 + 1));
    return o;
}

/* Opens b as a file and expects failure with status want and a message holding sub
 * and the path. */
static void expect_fail(const bb *b, const char *tag, ibex_status want, const char *sub) {
    char path[512];
    tmp_path(path, sizeof path, tag);
    write_bytes(path, b->p, b->n);
    ibex_err err = {0};
    ibex_gguf *g = ibex_gguf_open(path, &err);
    cr_assert_null(g, "%s: open succeeded, expected failure containing '%s'", tag, sub);
    cr_assert_eq(err.status, want, "%s: status %s, expected %s: %s", tag,
                 ibex_status_to_string(err.status), ibex_status_to_string(want), err.msg);
    cr_assert_not_null(strstr(err.msg, sub), "%s: message '%s' lacks '%s'", tag, err.msg, sub);
    cr_assert_not_null(strstr(err.msg, path), "%s: message '%s' lacks the path", tag, err.msg);
    unlink(path);
}

static ibex_gguf *open_ok(const bb *b, const char *tag, char *path, size_t cap) {
    tmp_path(path, cap, tag);
    write_bytes(path, b->p, b->n);
    ibex_err err = {0};
    ibex_gguf *g = ibex_gguf_open(path, &err);
    cr_assert_not_null(g, "%s: %s", tag, err.msg);
    return g;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- round trips ---- */

static const uint8_t k_u8s[] = {0, 1, 255};
static const int8_t k_i8s[] = {-128, 0, 127};
static const uint16_t k_u16s[] = {0, 65535, 1234};
static const int16_t k_i16s[] = {-32768, 32767, -5};
static const uint32_t k_u32s[] = {0, 4294967295u, 42};
static const int32_t k_i32s[] = {INT32_MIN, INT32_MAX, -1};
static const float k_f32s[] = {0.5f, -1.25e-20f, 3.0e38f};
static const uint8_t k_bools[] = {1, 0, 1};
static const uint64_t k_u64s[] = {0, UINT64_MAX, 1ull << 40};
static const int64_t k_i64s[] = {INT64_MIN, INT64_MAX, -7};
static const double k_f64s[] = {1e300, -2.5, 0.0};
static const char *const k_strs[] = {"alpha", "", "g\xc3\xa4mma with spaces"};

typedef struct tspec {
    const char *name;
    ibex_type type;
    uint32_t n_dims;
    int64_t ne[4];
    size_t nbytes;
    uint8_t *data;
} tspec;

static void make_tensors(tspec *ts, int *n) {
    static const tspec base[] = {
        {"f32.vec", IBEX_TYPE_F32, 1, {7, 1, 1, 1}, 7 * 4, NULL},
        {"f16.mat", IBEX_TYPE_F16, 2, {5, 3, 1, 1}, 5 * 3 * 2, NULL},
        {"bf16.cube", IBEX_TYPE_BF16, 3, {2, 3, 4, 1}, 24 * 2, NULL},
        {"q8_0.4d", IBEX_TYPE_Q8_0, 4, {64, 2, 1, 3}, 2 * 34 * 6, NULL},
        {"blk.0.attn_q.weight", IBEX_TYPE_Q4_0, 2, {96, 3, 1, 1}, 3 * 18 * 3, NULL},
    };
    *n = (int)(sizeof base / sizeof base[0]);
    for (int i = 0; i < *n; i++) {
        ts[i] = base[i];
        ts[i].data = malloc(ts[i].nbytes);
        for (size_t j = 0; j < ts[i].nbytes; j++) ts[i].data[j] = (uint8_t)rng_next();
    }
}

static void fill_writer(ibex_gguf_writer *w, tspec *ts, int nt) {
    ibex_gguf_writer_set_u32(w, "dup", 1); /* replaced below, keeps its position */
    ibex_gguf_writer_set_u8(w, "v.u8", 200);
    ibex_gguf_writer_set_i8(w, "v.i8", -100);
    ibex_gguf_writer_set_u16(w, "v.u16", 60000);
    ibex_gguf_writer_set_i16(w, "v.i16", -30000);
    ibex_gguf_writer_set_u32(w, "v.u32", 4000000000u);
    ibex_gguf_writer_set_i32(w, "v.i32", -2000000000);
    ibex_gguf_writer_set_f32(w, "v.f32", 1.5e-5f);
    ibex_gguf_writer_set_bool(w, "v.bool", true);
    ibex_gguf_writer_set_str(w, "v.str", "hello, gguf");
    ibex_gguf_writer_set_str(w, "v.empty", "");
    ibex_gguf_writer_set_u64(w, "v.u64", UINT64_MAX - 3);
    ibex_gguf_writer_set_i64(w, "v.i64", INT64_MIN + 5);
    ibex_gguf_writer_set_f64(w, "v.f64", -3.141592653589793);
    ibex_gguf_writer_set_arr(w, "a.u8", IBEX_GGUF_U8, k_u8s, 3);
    ibex_gguf_writer_set_arr(w, "a.i8", IBEX_GGUF_I8, k_i8s, 3);
    ibex_gguf_writer_set_arr(w, "a.u16", IBEX_GGUF_U16, k_u16s, 3);
    ibex_gguf_writer_set_arr(w, "a.i16", IBEX_GGUF_I16, k_i16s, 3);
    ibex_gguf_writer_set_arr(w, "a.u32", IBEX_GGUF_U32, k_u32s, 3);
    ibex_gguf_writer_set_arr(w, "a.i32", IBEX_GGUF_I32, k_i32s, 3);
    ibex_gguf_writer_set_arr(w, "a.f32", IBEX_GGUF_F32, k_f32s, 3);
    ibex_gguf_writer_set_arr(w, "a.bool", IBEX_GGUF_BOOL, k_bools, 3);
    ibex_gguf_writer_set_arr(w, "a.u64", IBEX_GGUF_U64, k_u64s, 3);
    ibex_gguf_writer_set_arr(w, "a.i64", IBEX_GGUF_I64, k_i64s, 3);
    ibex_gguf_writer_set_arr(w, "a.f64", IBEX_GGUF_F64, k_f64s, 3);
    ibex_gguf_writer_set_arr(w, "a.empty", IBEX_GGUF_I32, NULL, 0);
    ibex_gguf_writer_set_arr_str(w, "a.str", k_strs, 3);
    ibex_gguf_writer_set_str(w, "dup", "second");
    for (int i = 0; i < nt; i++)
        ibex_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, ts[i].data);
}

static void check_scalars(const ibex_gguf *g) {
    ibex_err err = {0};
    const ibex_gguf_value *v;
    v = ibex_gguf_get(g, "v.u8");
    cr_assert(v && v->type == IBEX_GGUF_U8 && v->u == 200);
    v = ibex_gguf_get(g, "v.i8");
    cr_assert(v && v->type == IBEX_GGUF_I8 && v->i == -100);
    v = ibex_gguf_get(g, "v.u16");
    cr_assert(v && v->type == IBEX_GGUF_U16 && v->u == 60000);
    v = ibex_gguf_get(g, "v.i16");
    cr_assert(v && v->type == IBEX_GGUF_I16 && v->i == -30000);
    v = ibex_gguf_get(g, "v.u32");
    cr_assert(v && v->type == IBEX_GGUF_U32 && v->u == 4000000000u);
    v = ibex_gguf_get(g, "v.i32");
    cr_assert(v && v->type == IBEX_GGUF_I32 && v->i == -2000000000);
    v = ibex_gguf_get(g, "v.f32");
    cr_assert(v && v->type == IBEX_GGUF_F32 && v->f == (double)1.5e-5f);
    v = ibex_gguf_get(g, "v.bool");
    cr_assert(v && v->type == IBEX_GGUF_BOOL && v->u == 1);
    v = ibex_gguf_get(g, "v.str");
    cr_assert(v && v->type == IBEX_GGUF_STRING && v->s.len == 11 &&
              memcmp(v->s.data, "hello, gguf", 11) == 0);
    v = ibex_gguf_get(g, "v.empty");
    cr_assert(v && v->type == IBEX_GGUF_STRING && v->s.len == 0);
    v = ibex_gguf_get(g, "v.u64");
    cr_assert(v && v->type == IBEX_GGUF_U64 && v->u == UINT64_MAX - 3);
    v = ibex_gguf_get(g, "v.i64");
    cr_assert(v && v->type == IBEX_GGUF_I64 && v->i == INT64_MIN + 5);
    v = ibex_gguf_get(g, "v.f64");
    cr_assert(v && v->type == IBEX_GGUF_F64 && v->f == -3.141592653589793);
    cr_assert_null(ibex_gguf_get(g, "v.missing"));

    /* "dup" kept its first position and took its last value. */
    cr_assert_str_eq(ibex_gguf_key_at(g, 0), "dup");
    v = ibex_gguf_value_at(g, 0);
    cr_assert(v->type == IBEX_GGUF_STRING && v->s.len == 6 && memcmp(v->s.data, "second", 6) == 0);

    /* Typed getters. */
    uint32_t u32 = 0;
    cr_assert_eq(ibex_gguf_get_u32(g, "v.u32", &u32, &err), IBEX_OK);
    cr_assert_eq(u32, 4000000000u);
    cr_assert_eq(ibex_gguf_get_u32(g, "v.u8", &u32, &err), IBEX_OK);
    cr_assert_eq(u32, 200);
    int64_t i64 = 0;
    cr_assert_eq(ibex_gguf_get_i64(g, "v.i64", &i64, &err), IBEX_OK);
    cr_assert_eq(i64, INT64_MIN + 5);
    cr_assert_eq(ibex_gguf_get_i64(g, "v.i16", &i64, &err), IBEX_OK);
    cr_assert_eq(i64, -30000);
    cr_assert_eq(ibex_gguf_get_i64(g, "v.u32", &i64, &err), IBEX_OK);
    cr_assert_eq(i64, 4000000000);
    float f = 0;
    cr_assert_eq(ibex_gguf_get_f32(g, "v.f32", &f, &err), IBEX_OK);
    cr_assert_float_eq(f, 1.5e-5f, 1e-12f);
    cr_assert_eq(ibex_gguf_get_f32(g, "v.f64", &f, &err), IBEX_OK);
    cr_assert_float_eq(f, -3.1415927f, 1e-6f);
    bool b = false;
    cr_assert_eq(ibex_gguf_get_bool(g, "v.bool", &b, &err), IBEX_OK);
    cr_assert(b);
    char buf[64];
    cr_assert_eq(ibex_gguf_get_str(g, "v.str", buf, sizeof buf, &err), IBEX_OK);
    cr_assert_str_eq(buf, "hello, gguf");
    cr_assert_eq(ibex_gguf_get_str(g, "v.str", buf, 6, &err), IBEX_OK);
    cr_assert_str_eq(buf, "hello");
    cr_assert_eq(ibex_gguf_get_str(g, "v.empty", buf, sizeof buf, &err), IBEX_OK);
    cr_assert_str_eq(buf, "");
}

static void check_arrays(const ibex_gguf *g) {
    ibex_err err = {0};
    const ibex_gguf_value *a = NULL;
#define CHECK_ARR(key, et, vals, conv)                                                      \
    do {                                                                                    \
        cr_assert_eq(ibex_gguf_get_arr(g, key, et, &a, &err), IBEX_OK, "%s", err.msg);     \
        cr_assert_eq(a->arr.type, et);                                                      \
        cr_assert_eq(a->arr.n, 3);                                                          \
        cr_assert_null(a->arr.strs);                                                        \
        for (uint64_t i_ = 0; i_ < 3; i_++) cr_assert(conv(a, i_) == (vals)[i_], key "[%d]", (int)i_); \
    } while (0)
    CHECK_ARR("a.u8", IBEX_GGUF_U8, k_u8s, ibex_gguf_arr_i64);
    CHECK_ARR("a.i8", IBEX_GGUF_I8, k_i8s, ibex_gguf_arr_i64);
    CHECK_ARR("a.u16", IBEX_GGUF_U16, k_u16s, ibex_gguf_arr_i64);
    CHECK_ARR("a.i16", IBEX_GGUF_I16, k_i16s, ibex_gguf_arr_i64);
    CHECK_ARR("a.u32", IBEX_GGUF_U32, k_u32s, ibex_gguf_arr_i64);
    CHECK_ARR("a.i32", IBEX_GGUF_I32, k_i32s, ibex_gguf_arr_i64);
    CHECK_ARR("a.i32", IBEX_GGUF_I32, k_i32s, ibex_gguf_arr_f64);
    CHECK_ARR("a.f32", IBEX_GGUF_F32, k_f32s, (float)ibex_gguf_arr_f64);
    CHECK_ARR("a.bool", IBEX_GGUF_BOOL, k_bools, ibex_gguf_arr_i64);
    CHECK_ARR("a.u64", IBEX_GGUF_U64, k_u64s, (uint64_t)ibex_gguf_arr_i64);
    CHECK_ARR("a.i64", IBEX_GGUF_I64, k_i64s, ibex_gguf_arr_i64);
    CHECK_ARR("a.f64", IBEX_GGUF_F64, k_f64s, ibex_gguf_arr_f64);
#undef CHECK_ARR
    cr_assert_eq(ibex_gguf_get_arr(g, "a.empty", IBEX_GGUF_VTYPE_COUNT, &a, &err), IBEX_OK);
    cr_assert_eq(a->arr.type, IBEX_GGUF_I32);
    cr_assert_eq(a->arr.n, 0);
    cr_assert_eq(ibex_gguf_get_arr(g, "a.str", IBEX_GGUF_STRING, &a, &err), IBEX_OK);
    cr_assert_eq(a->arr.n, 3);
    cr_assert_not_null(a->arr.strs);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(a->arr.strs[i].len, strlen(k_strs[i]));
        cr_assert(memcmp(a->arr.strs[i].data, k_strs[i], strlen(k_strs[i])) == 0);
    }
}

static void check_tensors(const ibex_gguf *g, const tspec *ts, int nt, uint32_t align) {
    cr_assert_eq(ibex_gguf_n_tensors(g), nt);
    cr_assert_eq(ibex_gguf_alignment(g), align);
    cr_assert_eq(ibex_gguf_data_offset(g) % align, 0);
    const uint8_t *base = NULL;
    for (int i = 0; i < nt; i++) {
        const ibex_gguf_tensor *t = ibex_gguf_tensor_at(g, i);
        cr_assert_str_eq(t->name, ts[i].name);
        cr_assert_eq(ibex_gguf_find_tensor(g, ts[i].name), t);
        cr_assert_eq(t->type, ts[i].type);
        cr_assert_eq(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < 4; d++) cr_assert_eq(t->ne[d], ts[i].ne[d], "%s ne[%d]", t->name, d);
        cr_assert_eq(t->nbytes, ts[i].nbytes, "%s nbytes", t->name);
        cr_assert_eq(t->offset % align, 0, "%s offset %" PRIu64, t->name, t->offset);
        cr_assert(memcmp(t->data, ts[i].data, ts[i].nbytes) == 0, "%s bytes differ", t->name);
        const uint8_t *section = (const uint8_t *)t->data - t->offset;
        if (!base) base = section;
        cr_assert_eq(section, base, "all tensors share one data section");
        /* The map is page-aligned, so section-relative alignment is absolute too. */
        cr_assert_eq((uintptr_t)t->data % align, 0, "%s data pointer misaligned", t->name);
    }
    cr_assert_null(ibex_gguf_find_tensor(g, "nope"));
    cr_assert_null(ibex_gguf_tensor_at(g, nt));
}

Test(gguf, round_trip_every_type) {
    tspec ts[8];
    int nt;
    make_tensors(ts, &nt);
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    cr_assert_not_null(w);
    fill_writer(w, ts, nt);
    char path[512], tmp[520];
    tmp_path(path, sizeof path, "roundtrip");
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, path, &err), IBEX_OK, "%s", err.msg);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(!file_exists(tmp), "the temporary file was left behind");
    ibex_gguf_writer_free(w);

    ibex_gguf *g = ibex_gguf_open(path, &err);
    cr_assert_not_null(g, "%s", err.msg);
    cr_assert_str_eq(ibex_gguf_path(g), path);
    cr_assert_eq(ibex_gguf_version(g), 3);
    cr_assert_eq(ibex_gguf_n_kv(g), 27);
    check_scalars(g);
    check_arrays(g);
    check_tensors(g, ts, nt, 32);
    /* The last tensor is padded too: data end = last offset + padded size. */
    const ibex_gguf_tensor *last = ibex_gguf_tensor_at(g, nt - 1);
    uint64_t end = ibex_gguf_data_offset(g) + last->offset + (last->nbytes + 31) / 32 * 32;
    cr_assert_eq(ibex_gguf_file_size(g), end);
    ibex_gguf_close(g);
    for (int i = 0; i < nt; i++) free(ts[i].data);
    unlink(path);
}

Test(gguf, round_trip_alignment_64) {
    tspec ts[8];
    int nt;
    make_tensors(ts, &nt);
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    fill_writer(w, ts, nt);
    ibex_gguf_writer_set_u32(w, "general.alignment", 64);
    char path[512];
    tmp_path(path, sizeof path, "align64");
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, path, &err), IBEX_OK, "%s", err.msg);
    ibex_gguf_writer_free(w);
    ibex_gguf *g = ibex_gguf_open(path, &err);
    cr_assert_not_null(g, "%s", err.msg);
    uint32_t a = 0;
    cr_assert_eq(ibex_gguf_get_u32(g, "general.alignment", &a, &err), IBEX_OK);
    cr_assert_eq(a, 64);
    check_scalars(g);
    check_arrays(g);
    check_tensors(g, ts, nt, 64);
    /* Some tensor must sit at a multiple of 64 that is not a multiple of 128, or the
     * test could not tell 64 from a larger alignment; the sizes above guarantee it. */
    bool odd = false;
    for (int i = 0; i < nt; i++) odd |= ibex_gguf_tensor_at(g, i)->offset % 128 == 64;
    cr_assert(odd);
    ibex_gguf_close(g);
    for (int i = 0; i < nt; i++) free(ts[i].data);
    unlink(path);
}

Test(gguf, hand_built_minimal_and_version_2) {
    bb b = {0};
    min_offs o = build_min(&b);
    char path[512];
    ibex_gguf *g = open_ok(&b, "min", path, sizeof path);
    cr_assert_eq(ibex_gguf_data_offset(g), o.data);
    const ibex_gguf_tensor *t = ibex_gguf_find_tensor(g, "w");
    cr_assert_not_null(t);
    cr_assert_eq(t->ne[0], 32);
    cr_assert_eq(t->ne[1], 2);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->nbytes, 256);
    cr_assert_eq(((const uint8_t *)t->data)[3], 3 * 7 + 1);
    char arch[16];
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_get_str(g, "general.architecture", arch, sizeof arch, &err), IBEX_OK);
    cr_assert_str_eq(arch, "llama");
    ibex_gguf_close(g);
    unlink(path);

    bb_put_u32(&b, o.version, 2);
    g = open_ok(&b, "v2", path, sizeof path);
    cr_assert_eq(ibex_gguf_version(g), 2);
    ibex_gguf_close(g);
    unlink(path);
    free(b.p);
}

Test(gguf, getters_type_errors_and_absent_keys) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 6);
    bb_key(&b, "neg", IBEX_GGUF_I32);
    bb_u32(&b, (uint32_t)-5);
    bb_key(&b, "big", IBEX_GGUF_U64);
    bb_u64(&b, (1ull << 63) + 1);
    bb_key(&b, "name", IBEX_GGUF_STRING);
    bb_str(&b, "x");
    bb_key(&b, "flag", IBEX_GGUF_U8);
    bb_u8(&b, 1);
    bb_key(&b, "ids", IBEX_GGUF_ARRAY);
    bb_u32(&b, IBEX_GGUF_I32);
    bb_u64(&b, 1);
    bb_u32(&b, 9);
    bb_key(&b, "fits", IBEX_GGUF_I64);
    bb_u64(&b, 4294967295ull);
    char path[512];
    ibex_gguf *g = open_ok(&b, "getters", path, sizeof path);

    ibex_err err = {0};
    uint32_t u32 = 0;
    cr_assert_eq(ibex_gguf_get_u32(g, "fits", &u32, &err), IBEX_OK);
    cr_assert_eq(u32, 4294967295u);
    cr_assert_eq(ibex_gguf_get_u32(g, "neg", &u32, &err), IBEX_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "'neg'"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "does not fit"), "%s", err.msg);
    cr_assert_eq(ibex_gguf_get_u32(g, "name", &u32, &err), IBEX_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "key 'name' has type string, expected u32"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
    int64_t i64 = 0;
    cr_assert_eq(ibex_gguf_get_i64(g, "big", &i64, &err), IBEX_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "does not fit in i64"), "%s", err.msg);
    cr_assert_eq(ibex_gguf_get_i64(g, "neg", &i64, &err), IBEX_OK);
    cr_assert_eq(i64, -5);
    bool flag = false;
    cr_assert_eq(ibex_gguf_get_bool(g, "flag", &flag, &err), IBEX_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "has type u8, expected bool"), "%s", err.msg);
    float f = 0;
    cr_assert_eq(ibex_gguf_get_f32(g, "neg", &f, &err), IBEX_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "expected f32"), "%s", err.msg);
    char buf[8];
    cr_assert_eq(ibex_gguf_get_str(g, "flag", buf, sizeof buf, &err), IBEX_ERR_FORMAT);
    const ibex_gguf_value *arr = NULL;
    cr_assert_eq(ibex_gguf_get_arr(g, "ids", IBEX_GGUF_F32, &arr, &err), IBEX_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "has type array of i32, expected array of f32"), "%s",
                       err.msg);
    cr_assert_eq(ibex_gguf_get_arr(g, "name", IBEX_GGUF_VTYPE_COUNT, &arr, &err),
                 IBEX_ERR_FORMAT);
    cr_assert_null(arr);
    cr_assert_eq(ibex_gguf_get_arr(g, "ids", IBEX_GGUF_I32, &arr, &err), IBEX_OK);
    cr_assert_eq(ibex_gguf_arr_i64(arr, 0), 9);

    /* Absent: NOT_FOUND, err and *out untouched. */
    ibex_err sentinel = {.status = IBEX_ERR_BACKEND};
    strcpy(sentinel.msg, "untouched");
    u32 = 77;
    i64 = 78;
    f = 79.0f;
    flag = true;
    strcpy(buf, "keep");
    arr = (const ibex_gguf_value *)&sentinel;
    cr_assert_eq(ibex_gguf_get_u32(g, "absent", &u32, &sentinel), IBEX_ERR_NOT_FOUND);
    cr_assert_eq(ibex_gguf_get_i64(g, "absent", &i64, &sentinel), IBEX_ERR_NOT_FOUND);
    cr_assert_eq(ibex_gguf_get_f32(g, "absent", &f, &sentinel), IBEX_ERR_NOT_FOUND);
    cr_assert_eq(ibex_gguf_get_bool(g, "absent", &flag, &sentinel), IBEX_ERR_NOT_FOUND);
    cr_assert_eq(ibex_gguf_get_str(g, "absent", buf, sizeof buf, &sentinel), IBEX_ERR_NOT_FOUND);
    cr_assert_eq(ibex_gguf_get_arr(g, "absent", IBEX_GGUF_I32, &arr, &sentinel),
                 IBEX_ERR_NOT_FOUND);
    cr_assert(u32 == 77 && i64 == 78 && f == 79.0f && flag);
    cr_assert_str_eq(buf, "keep");
    cr_assert_eq((const void *)arr, (const void *)&sentinel);
    cr_assert_eq(sentinel.status, IBEX_ERR_BACKEND);
    cr_assert_str_eq(sentinel.msg, "untouched");
    ibex_gguf_close(g);
    unlink(path);
    free(b.p);
}

Test(gguf, nested_arrays_read) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_key(&b, "nest", IBEX_GGUF_ARRAY);
    bb_u32(&b, IBEX_GGUF_ARRAY);
    bb_u64(&b, 2);
    bb_u32(&b, IBEX_GGUF_U8); /* [1, 2] */
    bb_u64(&b, 2);
    bb_u8(&b, 1);
    bb_u8(&b, 2);
    bb_u32(&b, IBEX_GGUF_STRING); /* ["ab"] */
    bb_u64(&b, 1);
    bb_str(&b, "ab");
    char path[512];
    ibex_gguf *g = open_ok(&b, "nested", path, sizeof path);
    const ibex_gguf_value *v = ibex_gguf_get(g, "nest");
    cr_assert(v && v->type == IBEX_GGUF_ARRAY && v->arr.type == IBEX_GGUF_ARRAY && v->arr.n == 2);
    ibex_gguf_close(g);
    unlink(path);
    free(b.p);
}

/* ---- malformed files ---- */

Test(gguf, rejects_small_magic_version) {
    bb b = {0};
    bb_raw(&b, "GGU", 3);
    expect_fail(&b, "small", IBEX_ERR_FORMAT, "too small");
    b.n = 0;
    expect_fail(&b, "empty", IBEX_ERR_FORMAT, "too small");

    b.n = 0;
    build_min(&b);
    memcpy(b.p, "GGML", 4);
    expect_fail(&b, "magic", IBEX_ERR_FORMAT, "magic 47 47 4d 4c ('GGML')");
    b.p[0] = 0;
    expect_fail(&b, "magic2", IBEX_ERR_FORMAT, "('.GML')");

    b.n = 0;
    min_offs o = build_min(&b);
    bb_put_u32(&b, o.version, 1);
    expect_fail(&b, "v1", IBEX_ERR_UNSUPPORTED, "version 1");
    bb_put_u32(&b, o.version, 4);
    expect_fail(&b, "v4", IBEX_ERR_UNSUPPORTED, "version 4");
    bb_put_u32(&b, o.version, 0x03000000);
    expect_fail(&b, "vbe", IBEX_ERR_UNSUPPORTED, "not supported");

    b.n = 6;
    expect_fail(&b, "trunc_version", IBEX_ERR_FORMAT, "truncated at offset 4 while reading the version");
    free(b.p);
}

Test(gguf, rejects_truncation_and_huge_counts) {
    bb b = {0};
    min_offs o = build_min(&b);
    size_t full = b.n;
    b.n = o.kv1_type + 2;
    expect_fail(&b, "trunc_type", IBEX_ERR_FORMAT, "truncated at offset");
    expect_fail(&b, "trunc_type2", IBEX_ERR_FORMAT, "the value type of metadata pair 1 ('test.n')");
    b.n = o.toffset + 3;
    expect_fail(&b, "trunc_toff", IBEX_ERR_FORMAT, "tensor 'w'");
    b.n = full - 1;
    expect_fail(&b, "trunc_data", IBEX_ERR_FORMAT, "outside the file");
    b.n = full;

    bb_put_u64(&b, o.n_kv, UINT64_MAX);
    expect_fail(&b, "nkv_max", IBEX_ERR_FORMAT, "metadata pair count 18446744073709551615 runs past the end");
    bb_put_u64(&b, o.n_kv, 2);
    bb_put_u64(&b, o.n_tensors, 1ull << 62);
    expect_fail(&b, "nt_huge", IBEX_ERR_FORMAT, "tensor count");
    bb_put_u64(&b, o.n_tensors, 1);
    /* Each count fits alone, not together. */
    bb_put_u64(&b, o.n_tensors, (full - 24) / 32);
    bb_put_u64(&b, o.n_kv, (full - 24) / 13);
    expect_fail(&b, "together", IBEX_ERR_FORMAT, "cannot fit");
    bb_put_u64(&b, o.n_tensors, 1);
    bb_put_u64(&b, o.n_kv, 2);

    bb_put_u64(&b, o.kv0, 1ull << 62); /* key length */
    expect_fail(&b, "keylen", IBEX_ERR_FORMAT, "the key has length 4611686018427387904, which runs past the end");
    bb_put_u64(&b, o.kv0, strlen("general.architecture"));
    bb_put_u64(&b, o.kv0_type + 4, 1ull << 62); /* string value length */
    expect_fail(&b, "strlen", IBEX_ERR_FORMAT, "runs past the end");
    bb_put_u64(&b, o.kv0_type + 4, 5);
    bb_put_u64(&b, o.tinfo, UINT64_MAX); /* tensor name length */
    expect_fail(&b, "namelen", IBEX_ERR_FORMAT, "the tensor name has length");
    free(b.p);

    /* Array counts: numeric, string and nested arrays. */
    const uint32_t etypes[] = {IBEX_GGUF_U64, IBEX_GGUF_STRING, IBEX_GGUF_ARRAY};
    for (int k = 0; k < 3; k++) {
        bb a = {0};
        bb_hdr(&a, 3, 0, 1);
        bb_key(&a, "arr", IBEX_GGUF_ARRAY);
        bb_u32(&a, etypes[k]);
        bb_u64(&a, (1ull << 62) + 1);
        bb_zeros(&a, 64);
        expect_fail(&a, "arrcount", IBEX_ERR_FORMAT, "array count 4611686018427387905 runs past the end");
        /* A string array whose 3rd element's length runs past the end. */
        free(a.p);
    }
    bb s = {0};
    bb_hdr(&s, 3, 0, 1);
    bb_key(&s, "tokens", IBEX_GGUF_ARRAY);
    bb_u32(&s, IBEX_GGUF_STRING);
    bb_u64(&s, 3);
    bb_str(&s, "a");
    bb_str(&s, "b");
    bb_u64(&s, 1ull << 62);
    bb_raw(&s, "cccc", 4);
    expect_fail(&s, "strarr", IBEX_ERR_FORMAT, "a string array element has length");
    free(s.p);
}

Test(gguf, rejects_bad_metadata) {
    bb b = {0};
    min_offs o = build_min(&b);
    bb_put_u32(&b, o.kv1_type, 99);
    expect_fail(&b, "vtype", IBEX_ERR_FORMAT, "invalid value type 99");
    bb_put_u32(&b, o.kv1_type, IBEX_GGUF_VTYPE_COUNT);
    expect_fail(&b, "vtype13", IBEX_ERR_FORMAT, "invalid value type 13");
    free(b.p);

    b = (bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_key(&b, "arr", IBEX_GGUF_ARRAY);
    bb_u32(&b, 77);
    bb_u64(&b, 0);
    expect_fail(&b, "etype", IBEX_ERR_FORMAT, "invalid array element type 77");
    free(b.p);

    b = (bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_key(&b, "", IBEX_GGUF_U8);
    bb_u8(&b, 0);
    expect_fail(&b, "emptykey", IBEX_ERR_FORMAT, "empty key");
    free(b.p);

    b = (bb){0};
    bb_hdr(&b, 3, 0, 3);
    bb_key(&b, "a.b", IBEX_GGUF_U8);
    bb_u8(&b, 0);
    bb_key(&b, "c", IBEX_GGUF_U8);
    bb_u8(&b, 0);
    bb_key(&b, "a.b", IBEX_GGUF_STRING);
    bb_str(&b, "x");
    expect_fail(&b, "dupkey", IBEX_ERR_FORMAT, "duplicate key 'a.b' (first defined at offset 24)");
    free(b.p);

    b = (bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_key(&b, "general.alignment", IBEX_GGUF_U64);
    bb_u64(&b, 64);
    expect_fail(&b, "align_type", IBEX_ERR_FORMAT, "'general.alignment' has type u64, expected u32");
    free(b.p);

    const uint32_t bad_aligns[] = {0, 48, 3};
    for (int i = 0; i < 3; i++) {
        b = (bb){0};
        bb_hdr(&b, 3, 0, 1);
        bb_key(&b, "general.alignment", IBEX_GGUF_U32);
        bb_u32(&b, bad_aligns[i]);
        expect_fail(&b, "align_pow2", IBEX_ERR_FORMAT, "is not a power of two");
        free(b.p);
    }

    /* Nesting deeper than the reader allows. */
    b = (bb){0};
    bb_hdr(&b, 3, 0, 1);
    bb_key(&b, "deep", IBEX_GGUF_ARRAY);
    for (int d = 0; d < 20; d++) {
        bb_u32(&b, IBEX_GGUF_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, IBEX_GGUF_U8);
    bb_u64(&b, 0);
    expect_fail(&b, "deep", IBEX_ERR_FORMAT, "nested deeper");
    free(b.p);
}

Test(gguf, rejects_bad_tensor_infos) {
    bb b = {0};
    min_offs o = build_min(&b);
    bb_put_u32(&b, o.n_dims, 0);
    expect_fail(&b, "ndims0", IBEX_ERR_FORMAT, "n_dims 0 is outside 1..4");
    bb_put_u32(&b, o.n_dims, 5);
    expect_fail(&b, "ndims5", IBEX_ERR_FORMAT, "n_dims 5 is outside 1..4");
    bb_put_u32(&b, o.n_dims, 2);

    bb_put_u64(&b, o.ne1, 0);
    expect_fail(&b, "dim0", IBEX_ERR_FORMAT, "ne[1] = 0 is not a positive size");
    bb_put_u64(&b, o.ne1, 1ull << 63);
    expect_fail(&b, "dimneg", IBEX_ERR_FORMAT, "is not a positive size");
    bb_put_u64(&b, o.ne1, 1ull << 62);
    expect_fail(&b, "overflow", IBEX_ERR_FORMAT, "element count overflows");
    bb_put_u64(&b, o.ne1, 1ull << 57); /* 32 · 2^57 elements fit in int64, 4 · that in bytes does not */
    expect_fail(&b, "byteovf", IBEX_ERR_FORMAT, "byte size overflows");
    bb_put_u64(&b, o.ne1, 2);

    bb_put_u32(&b, o.ttype, 99);
    expect_fail(&b, "ttype99", IBEX_ERR_FORMAT, "unknown tensor type id 99");
    bb_put_u32(&b, o.ttype, 16); /* an IQ type ggml defines and ibex does not */
    expect_fail(&b, "ttype16", IBEX_ERR_UNSUPPORTED, "unknown tensor type id 16");
    bb_put_u32(&b, o.ttype, IBEX_TYPE_F32);

    bb_put_u64(&b, o.ne0, 16);
    bb_put_u32(&b, o.ttype, IBEX_TYPE_Q8_0);
    expect_fail(&b, "block", IBEX_ERR_FORMAT, "ne[0] = 16 is not a multiple of the Q8_0 block size 32");
    bb_put_u64(&b, o.ne0, 32);
    bb_put_u32(&b, o.ttype, IBEX_TYPE_F32);

    bb_put_u64(&b, o.toffset, 8);
    expect_fail(&b, "toffalign", IBEX_ERR_FORMAT, "not a multiple of the alignment 32");
    bb_put_u64(&b, o.toffset, 32);
    expect_fail(&b, "outside", IBEX_ERR_FORMAT, "lies outside the file");
    bb_put_u64(&b, o.toffset, UINT64_MAX - 31); /* data_offset + offset wraps */
    expect_fail(&b, "outside_wrap", IBEX_ERR_FORMAT, "lies outside the file");
    bb_put_u64(&b, o.toffset, 0);

    /* Sanity: the unpatched file still opens, so each failure above was the patch. */
    char path[512];
    ibex_gguf *g = open_ok(&b, "unpatched", path, sizeof path);
    ibex_gguf_close(g);
    unlink(path);
    free(b.p);

    /* Name of 65 bytes; a name with a NUL. */
    char longname[66];
    memset(longname, 'n', 65);
    longname[65] = '\0';
    b = (bb){0};
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, longname, 1, (const uint64_t[]){1}, IBEX_TYPE_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 4);
    expect_fail(&b, "longname", IBEX_ERR_FORMAT, "is 65 bytes, longer than 64");
    free(b.p);
}

/* Two F32 [8] tensors "a" and name2 at offsets 0 and off2, 64 data bytes. */
static void build_two(bb *b, const char *name2, uint64_t off2) {
    bb_hdr(b, 3, 2, 0);
    bb_tinfo(b, "a", 1, (const uint64_t[]){8}, IBEX_TYPE_F32, 0);
    bb_tinfo(b, name2, 1, (const uint64_t[]){8}, IBEX_TYPE_F32, off2);
    bb_pad(b, 32);
    bb_zeros(b, 64);
}

Test(gguf, rejects_duplicate_and_overlapping_tensors) {
    bb b = {0};
    build_two(&b, "b", 32);
    char path[512];
    ibex_gguf *g = open_ok(&b, "two", path, sizeof path);
    cr_assert_eq(ibex_gguf_n_tensors(g), 2);
    cr_assert_eq(ibex_gguf_find_tensor(g, "b")->offset, 32);
    ibex_gguf_close(g);
    unlink(path);
    free(b.p);

    b = (bb){0};
    build_two(&b, "a", 32);
    expect_fail(&b, "duptensor", IBEX_ERR_FORMAT, "duplicate tensor name 'a'");
    free(b.p);

    b = (bb){0};
    build_two(&b, "b", 0);
    expect_fail(&b, "overlap", IBEX_ERR_FORMAT, "overlap");
    free(b.p);

    /* 48-byte tensor at 0 and another at 32 overlap by 16 bytes. */
    b = (bb){0};
    bb_hdr(&b, 3, 2, 0);
    bb_tinfo(&b, "big", 1, (const uint64_t[]){12}, IBEX_TYPE_F32, 0);
    bb_tinfo(&b, "small", 1, (const uint64_t[]){8}, IBEX_TYPE_F32, 32);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, "overlap2", IBEX_ERR_FORMAT, "tensors 'big' [0, 48) and 'small' [32, 64) overlap");
    free(b.p);
}

Test(gguf, open_missing_file_is_io) {
    ibex_err err = {0};
    cr_assert_null(ibex_gguf_open(IBEX_TEST_TMPDIR "/ibex_no_such_dir/x.gguf", &err));
    cr_assert_eq(err.status, IBEX_ERR_IO);
    cr_assert_not_null(strstr(err.msg, "ibex_no_such_dir/x.gguf"), "%s", err.msg);
    cr_assert_null(ibex_gguf_open(IBEX_TEST_TMPDIR, &err));
    cr_assert_eq(err.status, IBEX_ERR_IO);
}

/* ---- fuzz-like sweeps ---- */

/* A valid file with a string array, a nested array, an f32 array, alignment 64 and two
 * tensors, the last ending exactly at the end of the file (so every proper prefix is
 * invalid). */
static void build_rich(bb *b) {
    bb_hdr(b, 3, 2, 6);
    bb_key(b, "general.architecture", IBEX_GGUF_STRING);
    bb_str(b, "llama");
    bb_key(b, "general.alignment", IBEX_GGUF_U32);
    bb_u32(b, 64);
    bb_key(b, "tokenizer.ggml.tokens", IBEX_GGUF_ARRAY);
    bb_u32(b, IBEX_GGUF_STRING);
    bb_u64(b, 4);
    bb_str(b, "<s>");
    bb_str(b, "");
    bb_str(b, "hello");
    bb_str(b, "\xe2\x96\x81world");
    bb_key(b, "tokenizer.ggml.scores", IBEX_GGUF_ARRAY);
    bb_u32(b, IBEX_GGUF_F32);
    bb_u64(b, 3);
    for (int i = 0; i < 3; i++) {
        float f = -1.0f * (float)i;
        bb_raw(b, &f, 4);
    }
    bb_key(b, "nest", IBEX_GGUF_ARRAY);
    bb_u32(b, IBEX_GGUF_ARRAY);
    bb_u64(b, 2);
    bb_u32(b, IBEX_GGUF_I16);
    bb_u64(b, 1);
    bb_raw(b, "\x01\x02", 2);
    bb_u32(b, IBEX_GGUF_STRING);
    bb_u64(b, 1);
    bb_str(b, "z");
    bb_key(b, "flag", IBEX_GGUF_BOOL);
    bb_u8(b, 1);
    bb_tinfo(b, "tok_embd", 2, (const uint64_t[]){32, 2}, IBEX_TYPE_Q8_0, 0);
    bb_tinfo(b, "norm", 1, (const uint64_t[]){6}, IBEX_TYPE_F16, 128);
    bb_pad(b, 64);
    for (int i = 0; i < 128 + 12; i++) bb_u8(b, (uint8_t)i);
}

/* Touches everything an opened file hands out, so ASan sees any bad pointer. */
static uint64_t touch_all(const ibex_gguf *g) {
    uint64_t sum = 0;
    for (int64_t i = 0; i < ibex_gguf_n_kv(g); i++) {
        sum += strlen(ibex_gguf_key_at(g, i));
        const ibex_gguf_value *v = ibex_gguf_value_at(g, i);
        if (v->type == IBEX_GGUF_STRING && v->s.len) sum += (uint8_t)v->s.data[v->s.len - 1];
        if (v->type == IBEX_GGUF_ARRAY) {
            for (uint64_t k = 0; k < v->arr.n && k < 1000; k++) sum += (uint64_t)ibex_gguf_arr_i64(v, k);
            if (v->arr.strs)
                for (uint64_t k = 0; k < v->arr.n; k++)
                    if (v->arr.strs[k].len) sum += (uint8_t)v->arr.strs[k].data[v->arr.strs[k].len - 1];
        }
    }
    for (int64_t i = 0; i < ibex_gguf_n_tensors(g); i++) {
        const ibex_gguf_tensor *t = ibex_gguf_tensor_at(g, i);
        const uint8_t *d = t->data;
        sum += d[0] + d[t->nbytes - 1];
        cr_assert_eq(ibex_gguf_find_tensor(g, t->name), t);
    }
    return sum;
}

Test(gguf, truncation_sweep_every_prefix) {
    bb b = {0};
    build_rich(&b);
    char path[512];
    ibex_gguf *g = open_ok(&b, "rich", path, sizeof path);
    cr_assert_eq(ibex_gguf_alignment(g), 64);
    cr_assert_eq(ibex_gguf_data_offset(g) + 128 + 12, b.n);
    touch_all(g);
    ibex_gguf_close(g);
    for (size_t len = 0; len < b.n; len++) {
        write_bytes(path, b.p, len);
        ibex_err err = {0};
        g = ibex_gguf_open(path, &err);
        cr_assert_null(g, "prefix of %zu of %zu bytes opened", len, b.n);
        cr_assert(err.status == IBEX_ERR_FORMAT || (len == 0 && err.status == IBEX_ERR_IO),
                  "prefix %zu: status %s: %s", len, ibex_status_to_string(err.status), err.msg);
        cr_assert_not_null(strstr(err.msg, path), "prefix %zu: %s", len, err.msg);
    }
    unlink(path);
    free(b.p);
}

Test(gguf, random_byte_flips_never_crash) {
    bb b = {0};
    build_rich(&b);
    char path[512];
    tmp_path(path, sizeof path, "flip");
    uint8_t *copy = malloc(b.n);
    /* The data section is opaque bytes; flip inside the header and infos. */
    size_t meta = b.n - 140;
    int opened = 0, failed = 0;
    rng_state = 12345;
    for (int it = 0; it < 400; it++) {
        memcpy(copy, b.p, b.n);
        int flips = 1 + (int)(rng_next() % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = rng_next() % meta;
            uint64_t r = rng_next();
            /* Mostly single-bit flips, sometimes a whole random byte or a large length. */
            if (r % 4 == 0)
                copy[at] = (uint8_t)(r >> 8);
            else if (r % 4 == 1)
                copy[at] = 0xff;
            else
                copy[at] ^= (uint8_t)(1u << ((r >> 8) % 8));
        }
        write_bytes(path, copy, b.n);
        ibex_err err = {.status = IBEX_OK, .msg = ""};
        ibex_gguf *g = ibex_gguf_open(path, &err);
        if (g) {
            opened++;
            touch_all(g);
            ibex_gguf_close(g);
        } else {
            failed++;
            cr_assert_neq(err.status, IBEX_OK, "iteration %d", it);
            cr_assert(strlen(err.msg) > strlen(path), "iteration %d: empty message", it);
        }
    }
    cr_assert_gt(failed, 100, "flips should usually break the file (%d failed)", failed);
    cr_assert_gt(opened, 0, "some flips (e.g. in string bytes) keep it valid");
    free(copy);
    unlink(path);
    free(b.p);
}

/* ---- writer validation ---- */

static void expect_write_fail(ibex_gguf_writer *w, const char *tag, ibex_status want,
                              const char *sub) {
    char path[512], tmp[520];
    tmp_path(path, sizeof path, tag);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, path, &err), want, "%s: %s", tag, err.msg);
    cr_assert_not_null(strstr(err.msg, sub), "%s: '%s' lacks '%s'", tag, err.msg, sub);
    cr_assert_not_null(strstr(err.msg, path), "%s: '%s' lacks the path", tag, err.msg);
    cr_assert(!file_exists(path), "%s: file created", tag);
    cr_assert(!file_exists(tmp), "%s: temporary file left", tag);
    ibex_gguf_writer_free(w);
}

Test(gguf, writer_validates) {
    float data[64] = {0};
    ibex_gguf_writer *w;

    w = ibex_gguf_writer_new();
    char longname[80];
    memset(longname, 'x', 65);
    longname[65] = '\0';
    ibex_gguf_writer_add_tensor(w, longname, IBEX_TYPE_F32, 1, (const int64_t[]){4}, data);
    expect_write_fail(w, "w_long", IBEX_ERR_INVALID, "65 bytes");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_add_tensor(w, "t", IBEX_TYPE_F32, 1, (const int64_t[]){4}, data);
    ibex_gguf_writer_add_tensor(w, "t", IBEX_TYPE_F32, 1, (const int64_t[]){4}, data);
    expect_write_fail(w, "w_dup", IBEX_ERR_INVALID, "duplicate tensor name 't'");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_add_tensor(w, "t", IBEX_TYPE_F32, 5, (const int64_t[]){1, 1, 1, 1, 1}, data);
    expect_write_fail(w, "w_ndims", IBEX_ERR_INVALID, "n_dims 5");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_add_tensor(w, "t", (ibex_type)16, 1, (const int64_t[]){4}, data);
    expect_write_fail(w, "w_type", IBEX_ERR_INVALID, "unknown tensor type id 16");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_add_tensor(w, "t", IBEX_TYPE_Q4_0, 1, (const int64_t[]){48}, data);
    expect_write_fail(w, "w_block", IBEX_ERR_INVALID, "block size 32");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_add_tensor(w, "t", IBEX_TYPE_F32, 2, (const int64_t[]){4, 0}, data);
    expect_write_fail(w, "w_dim0", IBEX_ERR_INVALID, "ne[1] = 0");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_u32(w, "general.alignment", 48);
    expect_write_fail(w, "w_align", IBEX_ERR_INVALID, "power of two");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_u64(w, "general.alignment", 64);
    expect_write_fail(w, "w_align_t", IBEX_ERR_INVALID, "expected u32");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_u8(w, "", 1);
    expect_write_fail(w, "w_emptykey", IBEX_ERR_INVALID, "empty metadata key");

    w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_arr(w, "bad", IBEX_GGUF_STRING, data, 1);
    expect_write_fail(w, "w_arrtype", IBEX_ERR_INVALID, "'bad'");

    /* Unwritable destination: IO error naming the path, nothing left behind. */
    w = ibex_gguf_writer_new();
    ibex_err err = {0};
    const char *nodir = IBEX_TEST_TMPDIR "/ibex_no_such_dir/out.gguf";
    cr_assert_eq(ibex_gguf_writer_write(w, nodir, &err), IBEX_ERR_IO);
    cr_assert_not_null(strstr(err.msg, nodir), "%s", err.msg);
    ibex_gguf_writer_free(w);
}

Test(gguf, writer_output_is_byte_exact) {
    /* The writer's bytes for a tiny file equal the hand-built layout. */
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_str(w, "general.architecture", "llama");
    ibex_gguf_writer_set_u32(w, "test.n", 7);
    uint8_t data[256];
    for (int i = 0; i < 256; i++) data[i] = (uint8_t)(i * 7 + 1);
    ibex_gguf_writer_add_tensor(w, "w", IBEX_TYPE_F32, 2, (const int64_t[]){32, 2}, data);
    char path[512];
    tmp_path(path, sizeof path, "exact");
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, path, &err), IBEX_OK, "%s", err.msg);
    ibex_gguf_writer_free(w);
    size_t n;
    uint8_t *got = read_all(path, &n);
    bb b = {0};
    build_min(&b); /* 256 data bytes: already a multiple of 32, so no trailing pad */
    cr_assert_eq(n, b.n);
    cr_assert(memcmp(got, b.p, n) == 0);
    free(got);
    free(b.p);
    unlink(path);
}

Test(gguf, writer_empty_file_opens) {
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    char path[512];
    tmp_path(path, sizeof path, "empty_w");
    ibex_err err = {0};
    cr_assert_eq(ibex_gguf_writer_write(w, path, &err), IBEX_OK, "%s", err.msg);
    ibex_gguf_writer_free(w);
    ibex_gguf *g = ibex_gguf_open(path, &err);
    cr_assert_not_null(g, "%s", err.msg);
    cr_assert_eq(ibex_gguf_n_kv(g), 0);
    cr_assert_eq(ibex_gguf_n_tensors(g), 0);
    cr_assert_eq(ibex_gguf_file_size(g), 32); /* 24-byte header padded to 32 */
    ibex_gguf_close(g);
    unlink(path);
}

Test(gguf, vtype_names) {
    cr_assert_str_eq(ibex_gguf_vtype_name(IBEX_GGUF_U8), "u8");
    cr_assert_str_eq(ibex_gguf_vtype_name(IBEX_GGUF_STRING), "string");
    cr_assert_str_eq(ibex_gguf_vtype_name(IBEX_GGUF_F64), "f64");
    cr_assert_str_eq(ibex_gguf_vtype_name(IBEX_GGUF_VTYPE_COUNT), "?");
}
