/* dtype.c — the type table (ggml ids, block sizes, bytes per block), scalar F16/BF16
 * conversions, and the Q8_0/Q4_0 block (de)quantizers, used by the GGUF code, the
 * synthetic generator, `ibex model quantize` and the kernels.
 *
 * The quantizers are ggml's reference round-to-nearest formulas (quantize_row_q8_0_ref
 * and quantize_row_q4_0_ref in ggml-quants.c, mirrored by the `gguf` Python package's
 * quants.py), so a tensor quantized here has the bytes llama-quantize --pure writes for
 * the same F32 input: the scale d is computed in F32, the quants with the unrounded
 * 1/d, and only then is d rounded to F16 (nearest even) for storage. */
#include "kernels/dtype.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* Block layouts from ggml-common.h: Q4_0 {f16 d; u8 qs[16]} = 18 B per 32,
 * Q8_0 {f16 d; i8 qs[32]} = 34 B per 32, K-quants 256-element super-blocks. */
static const ibex_type_traits k_traits[IBEX_TYPE_COUNT] = {
    [IBEX_TYPE_F32] = {"F32", 1, 4, true},
    [IBEX_TYPE_F16] = {"F16", 1, 2, true},
    [IBEX_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [IBEX_TYPE_Q4_1] = {"Q4_1", 32, 20, false},
    [IBEX_TYPE_Q5_0] = {"Q5_0", 32, 22, false},
    [IBEX_TYPE_Q5_1] = {"Q5_1", 32, 24, false},
    [IBEX_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [IBEX_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [IBEX_TYPE_Q2_K] = {"Q2_K", 256, 84, false},
    [IBEX_TYPE_Q3_K] = {"Q3_K", 256, 110, false},
    [IBEX_TYPE_Q4_K] = {"Q4_K", 256, 144, false},
    [IBEX_TYPE_Q5_K] = {"Q5_K", 256, 176, false},
    [IBEX_TYPE_Q6_K] = {"Q6_K", 256, 210, false},
    [IBEX_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [IBEX_TYPE_I8] = {"I8", 1, 1, false},
    [IBEX_TYPE_I16] = {"I16", 1, 2, false},
    [IBEX_TYPE_I32] = {"I32", 1, 4, false},
    [IBEX_TYPE_I64] = {"I64", 1, 8, false},
    [IBEX_TYPE_F64] = {"F64", 1, 8, false},
    [IBEX_TYPE_BF16] = {"BF16", 1, 2, true},
};

const ibex_type_traits *ibex_type_traits_get(uint32_t t) {
    if (t >= IBEX_TYPE_COUNT || !k_traits[t].name) return NULL;
    return &k_traits[t];
}

const char *ibex_type_name(uint32_t t) {
    const ibex_type_traits *tr = ibex_type_traits_get(t);
    return tr ? tr->name : "?";
}

bool ibex_type_from_name(const char *name, ibex_type *out) {
    for (int t = 0; t < IBEX_TYPE_COUNT; t++) {
        if (k_traits[t].name && strcasecmp(k_traits[t].name, name) == 0) {
            *out = (ibex_type)t;
            return true;
        }
    }
    return false;
}

size_t ibex_type_row_bytes(ibex_type t, int64_t n) {
    const ibex_type_traits *tr = ibex_type_traits_get((uint32_t)t);
    if (!tr || n < 0 || n % tr->block_size != 0) return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float ibex_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        /* zero or subnormal: man · 2^−24 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t ibex_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan; keep nan quiet and non-zero */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: infinity */
    if (ax < 0x38800000u) {
        /* result is subnormal or zero: round ax·2^24 to nearest even integer */
        float v = bits_f32(ax) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t exp = ((ax >> 23) - 112) << 10;
    uint32_t man = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = exp | man;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carry may bump the exponent */
    return (uint16_t)(sign | h);
}

float ibex_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t ibex_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

bool ibex_row_to_f32(float *dst, const void *src, ibex_type t, int64_t n) {
    switch (t) {
    case IBEX_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    case IBEX_TYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ibex_f16_to_f32(s[i]);
        return true;
    }
    case IBEX_TYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ibex_bf16_to_f32(s[i]);
        return true;
    }
    case IBEX_TYPE_Q8_0: {
        const uint8_t *b = src;
        for (int64_t i = 0; i < n; i += 32, b += 34) {
            uint16_t dh;
            memcpy(&dh, b, 2);
            float d = ibex_f16_to_f32(dh);
            for (int j = 0; j < 32; j++) dst[i + j] = (float)(int8_t)b[2 + j] * d;
        }
        return n % 32 == 0;
    }
    case IBEX_TYPE_Q4_0: {
        const uint8_t *b = src;
        for (int64_t i = 0; i < n; i += 32, b += 18) {
            uint16_t dh;
            memcpy(&dh, b, 2);
            float d = ibex_f16_to_f32(dh);
            for (int j = 0; j < 16; j++) {
                dst[i + j] = (float)((b[2 + j] & 0x0f) - 8) * d;
                dst[i + j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
            }
        }
        return n % 32 == 0;
    }
    default: return false;
    }
}

bool ibex_row_from_f32(void *dst, const float *src, ibex_type t, int64_t n) {
    switch (t) {
    case IBEX_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return true;
    case IBEX_TYPE_F16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = ibex_f32_to_f16(src[i]);
        return true;
    }
    case IBEX_TYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = ibex_f32_to_bf16(src[i]);
        return true;
    }
    case IBEX_TYPE_Q8_0: return ibex_quantize_q8_0(dst, src, n);
    case IBEX_TYPE_Q4_0: return ibex_quantize_q4_0(dst, src, n);
    default: return false;
    }
}

/* roundf (halves away from zero) without the libm call, exact for every finite x:
 * x − truncf(x) is exact, so comparing it with 0.5 decides as roundf does. */
static inline float round_half_away(float x) {
    const float r = truncf(x);
    return fabsf(x - r) >= 0.5f ? r + copysignf(1.0f, x) : r;
}

/* Q8_0: d = max|x| / 127, q = roundf(x / d) (half away from zero, as C's roundf). The
 * maximum is ggml's MAX(a, b) = a > b ? a : b, which differs from fmaxf only for NaN. */
bool ibex_quantize_q8_0(void *dst, const float *src, int64_t n) {
    if (n % 32) return false;
    uint8_t *b = dst;
    for (int64_t i = 0; i < n; i += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float a = fabsf(src[i + j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ibex_f32_to_f16(d);
        memcpy(b, &dh, 2);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)round_half_away(src[i + j] * id);
    }
    return true;
}

/* Q4_0: m = the element of largest magnitude, with its sign (the first one on a tie);
 * d = m / −8, q = min(15, (int8)(x/d + 8.5)). The sign makes the extreme element map to
 * quant 0 exactly (−8·d = m), so the asymmetric range [−8, 7] loses nothing at the end
 * that matters most. */
bool ibex_quantize_q4_0(void *dst, const float *src, int64_t n) {
    if (n % 32) return false;
    uint8_t *b = dst;
    for (int64_t i = 0; i < n; i += 32, b += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float v = src[i + j];
            if (amax < fabsf(v)) {
                amax = fabsf(v);
                max = v;
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = ibex_f32_to_f16(d);
        memcpy(b, &dh, 2);
        for (int j = 0; j < 16; j++) {
            const float x0 = src[i + j] * id, x1 = src[i + j + 16] * id;
            const int8_t q0 = (int8_t)(x0 + 8.5f), q1 = (int8_t)(x1 + 8.5f);
            const uint8_t u0 = (uint8_t)(q0 < 15 ? q0 : 15), u1 = (uint8_t)(q1 < 15 ? q1 : 15);
            b[2 + j] = (uint8_t)(u0 | (u1 << 4));
        }
    }
    return true;
}
