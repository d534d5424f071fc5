/* gguf.h — GGUF v3 reader (mmap'd, bounds-checked) and writer.
 *
 * The reader validates the whole header, every metadata pair and every tensor info
 * at open time, so after ibex_gguf_open() succeeds every pointer it hands out lies
 * inside the mapped file. Any malformed file yields NULL and an error naming the
 * file, the byte offset and the problem; it never reads out of bounds.
 *
 * The writer collects metadata and tensor references and writes a file that
 * llama.cpp's gguf readers (and the `gguf` Python package) load. */
#ifndef IBEX_GGUF_H
#define IBEX_GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/status.h"

#define IBEX_GGUF_MAGIC "GGUF"
#define IBEX_GGUF_VERSION 3
#define IBEX_GGUF_DEFAULT_ALIGNMENT 32
#define IBEX_GGUF_MAX_DIMS 4
#define IBEX_GGUF_MAX_NAME 64

typedef enum ibex_gguf_vtype {
    IBEX_GGUF_U8 = 0,
    IBEX_GGUF_I8 = 1,
    IBEX_GGUF_U16 = 2,
    IBEX_GGUF_I16 = 3,
    IBEX_GGUF_U32 = 4,
    IBEX_GGUF_I32 = 5,
    IBEX_GGUF_F32 = 6,
    IBEX_GGUF_BOOL = 7,
    IBEX_GGUF_STRING = 8,
    IBEX_GGUF_ARRAY = 9,
    IBEX_GGUF_U64 = 10,
    IBEX_GGUF_I64 = 11,
    IBEX_GGUF_F64 = 12,
    IBEX_GGUF_VTYPE_COUNT
} ibex_gguf_vtype;

const char *ibex_gguf_vtype_name(ibex_gguf_vtype t);

/* A string inside the mapped file: not NUL-terminated. */
typedef struct ibex_gguf_str {
    uint64_t len;
    const char *data;
} ibex_gguf_str;

/* A metadata value. Scalars are decoded; arrays point into the map (elements may be
 * unaligned: read them with the ibex_gguf_arr_* accessors). */
typedef struct ibex_gguf_value {
    ibex_gguf_vtype type;
    union {
        uint64_t u;        /* U8, U16, U32, U64, and BOOL (0/1) */
        int64_t i;         /* I8, I16, I32, I64 */
        double f;          /* F32, F64 */
        ibex_gguf_str s;   /* STRING */
        struct {
            ibex_gguf_vtype type; /* element type */
            uint64_t n;           /* element count */
            const void *data;     /* first element in the map */
            const ibex_gguf_str *strs; /* STRING arrays: n decoded strings, else NULL */
        } arr;
    };
} ibex_gguf_value;

typedef struct ibex_gguf_tensor {
    char name[IBEX_GGUF_MAX_NAME + 1]; /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[IBEX_GGUF_MAX_DIMS]; /* ggml order, fastest first; unused dims are 1 */
    ibex_type type;
    uint64_t offset;  /* relative to the data section */
    uint64_t nbytes;  /* ibex_type_row_bytes(type, ne[0]) · ne[1] · ne[2] · ne[3] */
    const void *data; /* inside the map, checked to lie within the file */
} ibex_gguf_tensor;

typedef struct ibex_gguf ibex_gguf;

/* Opens, maps and validates path. On error returns NULL with err set; nothing leaks. */
ibex_gguf *ibex_gguf_open(const char *path, ibex_err *err);
void ibex_gguf_close(ibex_gguf *g);

const char *ibex_gguf_path(const ibex_gguf *g);
uint32_t ibex_gguf_version(const ibex_gguf *g);
uint32_t ibex_gguf_alignment(const ibex_gguf *g);
uint64_t ibex_gguf_file_size(const ibex_gguf *g);
uint64_t ibex_gguf_data_offset(const ibex_gguf *g); /* start of the tensor data section */

int64_t ibex_gguf_n_kv(const ibex_gguf *g);
/* Key i as a NUL-terminated string owned by g. */
const char *ibex_gguf_key_at(const ibex_gguf *g, int64_t i);
const ibex_gguf_value *ibex_gguf_value_at(const ibex_gguf *g, int64_t i);
/* Value of key, or NULL if absent. */
const ibex_gguf_value *ibex_gguf_get(const ibex_gguf *g, const char *key);

/* Typed lookups. Each returns IBEX_OK and stores the value; IBEX_ERR_NOT_FOUND if the
 * key is absent (err untouched, *out untouched, so defaults can be preset);
 * IBEX_ERR_FORMAT with err naming file, key, expected and actual type when the
 * value has the wrong type or does not fit. Integer getters accept any integer type
 * whose value fits; float getters accept F32/F64. */
ibex_status ibex_gguf_get_u32(const ibex_gguf *g, const char *key, uint32_t *out, ibex_err *err);
ibex_status ibex_gguf_get_i64(const ibex_gguf *g, const char *key, int64_t *out, ibex_err *err);
ibex_status ibex_gguf_get_f32(const ibex_gguf *g, const char *key, float *out, ibex_err *err);
ibex_status ibex_gguf_get_bool(const ibex_gguf *g, const char *key, bool *out, ibex_err *err);
/* Copies a string value into buf (NUL-terminated, truncated to cap). */
ibex_status ibex_gguf_get_str(const ibex_gguf *g, const char *key, char *buf, uint64_t cap,
                              ibex_err *err);
/* An array value whose elements have type etype (any element type if etype is
 * IBEX_GGUF_VTYPE_COUNT). */
ibex_status ibex_gguf_get_arr(const ibex_gguf *g, const char *key, ibex_gguf_vtype etype,
                              const ibex_gguf_value **out, ibex_err *err);

/* Element i of a numeric array as double / int64 (bool as 0/1). i must be < n. */
double ibex_gguf_arr_f64(const ibex_gguf_value *arr, uint64_t i);
int64_t ibex_gguf_arr_i64(const ibex_gguf_value *arr, uint64_t i);

int64_t ibex_gguf_n_tensors(const ibex_gguf *g);
const ibex_gguf_tensor *ibex_gguf_tensor_at(const ibex_gguf *g, int64_t i);
const ibex_gguf_tensor *ibex_gguf_find_tensor(const ibex_gguf *g, const char *name);

/* ---- writer ---- */

typedef struct ibex_gguf_writer ibex_gguf_writer;

ibex_gguf_writer *ibex_gguf_writer_new(void);
void ibex_gguf_writer_free(ibex_gguf_writer *w);

/* Metadata setters; a key set twice keeps the last value. Keys and strings are
 * copied. They can only fail on allocation, reported by ibex_gguf_writer_write(). */
void ibex_gguf_writer_set_u8(ibex_gguf_writer *w, const char *key, uint8_t v);
void ibex_gguf_writer_set_i8(ibex_gguf_writer *w, const char *key, int8_t v);
void ibex_gguf_writer_set_u16(ibex_gguf_writer *w, const char *key, uint16_t v);
void ibex_gguf_writer_set_i16(ibex_gguf_writer *w, const char *key, int16_t v);
void ibex_gguf_writer_set_u32(ibex_gguf_writer *w, const char *key, uint32_t v);
void ibex_gguf_writer_set_i32(ibex_gguf_writer *w, const char *key, int32_t v);
void ibex_gguf_writer_set_u64(ibex_gguf_writer *w, const char *key, uint64_t v);
void ibex_gguf_writer_set_i64(ibex_gguf_writer *w, const char *key, int64_t v);
void ibex_gguf_writer_set_f32(ibex_gguf_writer *w, const char *key, float v);
void ibex_gguf_writer_set_f64(ibex_gguf_writer *w, const char *key, double v);
void ibex_gguf_writer_set_bool(ibex_gguf_writer *w, const char *key, bool v);
void ibex_gguf_writer_set_str(ibex_gguf_writer *w, const char *key, const char *v);
/* Numeric/bool array of n elements of etype, copied from data (native little-endian). */
void ibex_gguf_writer_set_arr(ibex_gguf_writer *w, const char *key, ibex_gguf_vtype etype,
                              const void *data, uint64_t n);
/* String array; strs[i] are NUL-terminated and copied. */
void ibex_gguf_writer_set_arr_str(ibex_gguf_writer *w, const char *key, const char *const *strs,
                                  uint64_t n);

/* Adds a tensor; data is NOT copied and must stay valid until write returns.
 * ne is in ggml order (fastest first). */
void ibex_gguf_writer_add_tensor(ibex_gguf_writer *w, const char *name, ibex_type type,
                                 uint32_t n_dims, const int64_t *ne, const void *data);

/* Writes the file atomically (path.tmp, then rename). The alignment is the value of
 * general.alignment if set, else 32. Validates names, dims and types first. */
ibex_status ibex_gguf_writer_write(ibex_gguf_writer *w, const char *path, ibex_err *err);

#endif
