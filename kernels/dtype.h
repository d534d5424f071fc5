/* dtype.h — the tensor element types ibex knows, with GGUF's numbering, and the
 * scalar conversions between them.
 *
 * The enum values are ggml's type ids as stored in GGUF tensor infos, so a type read
 * from a file can be cast directly after ibex_type_traits_get() accepts it. Types ggml
 * defines but ibex cannot compute with are still named, so an error can say
 * "unsupported tensor type Q6_K" instead of "unknown type 14". */
#ifndef IBEX_DTYPE_H
#define IBEX_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ibex_type {
    IBEX_TYPE_F32 = 0,
    IBEX_TYPE_F16 = 1,
    IBEX_TYPE_Q4_0 = 2,
    IBEX_TYPE_Q4_1 = 3,
    IBEX_TYPE_Q5_0 = 6,
    IBEX_TYPE_Q5_1 = 7,
    IBEX_TYPE_Q8_0 = 8,
    IBEX_TYPE_Q8_1 = 9,
    IBEX_TYPE_Q2_K = 10,
    IBEX_TYPE_Q3_K = 11,
    IBEX_TYPE_Q4_K = 12,
    IBEX_TYPE_Q5_K = 13,
    IBEX_TYPE_Q6_K = 14,
    IBEX_TYPE_Q8_K = 15,
    IBEX_TYPE_I8 = 24,
    IBEX_TYPE_I16 = 25,
    IBEX_TYPE_I32 = 26,
    IBEX_TYPE_I64 = 27,
    IBEX_TYPE_F64 = 28,
    IBEX_TYPE_BF16 = 30,
    IBEX_TYPE_COUNT = 41, /* one past the largest id the table may hold */
} ibex_type;

typedef struct ibex_type_traits {
    const char *name;   /* "F32", "Q8_0", ... as llama.cpp prints them */
    int block_size;     /* elements per block (1 for plain types) */
    size_t type_size;   /* bytes per block */
    bool compute;       /* ibex's kernels can use it as a weight type (F32, F16, BF16, Q8_0, Q4_0) */
} ibex_type_traits;

/* Traits of GGUF type id t, or NULL if t names no type ibex knows. Never fails otherwise. */
const ibex_type_traits *ibex_type_traits_get(uint32_t t);

/* Name of t ("F16"), or "?" for an unknown id. */
const char *ibex_type_name(uint32_t t);

/* Parses a case-insensitive name ("f16", "Q8_0"); returns false if unknown. */
bool ibex_type_from_name(const char *name, ibex_type *out);

/* Bytes of a row of n elements of type t. n must be a multiple of the block size;
 * returns 0 when it is not (or t is unknown), which callers treat as a shape error. */
size_t ibex_type_row_bytes(ibex_type t, int64_t n);

/* IEEE half and bfloat16 conversions; f32->f16/bf16 round to nearest even, keep
 * NaN a NaN and saturate to infinity like the hardware instructions do. */
float ibex_f16_to_f32(uint16_t h);
uint16_t ibex_f32_to_f16(float f);
float ibex_bf16_to_f32(uint16_t h);
uint16_t ibex_f32_to_bf16(float f);

/* Converts n elements of a row of type t (F32, F16, BF16, and Q8_0/Q4_0 blocks) to
 * F32. Returns false if t has no dequantizer. */
bool ibex_row_to_f32(float *dst, const void *src, ibex_type t, int64_t n);

/* Converts n F32 values into a row of type t (F32, F16, BF16, Q8_0, Q4_0; the block
 * types need n a multiple of 32). Returns false otherwise. */
bool ibex_row_from_f32(void *dst, const float *src, ibex_type t, int64_t n);

/* ggml's round-to-nearest block quantizers (see dtype.c): n F32 values, n a multiple of
 * 32, into n/32 blocks of 34 (Q8_0) or 18 (Q4_0) bytes, byte-identical to ggml's
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref. Return false when n % 32 != 0. */
bool ibex_quantize_q8_0(void *dst, const float *src, int64_t n);
bool ibex_quantize_q4_0(void *dst, const float *src, int64_t n);

#endif
