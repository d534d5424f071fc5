/* test_rand.h — seeded random inputs shared by the kernel tests (CPU and CUDA): a
 * splitmix64 stream, uniform floats, and NaN-filled buffers for poisoning outputs. */
#ifndef IBEX_TEST_RAND_H
#define IBEX_TEST_RAND_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static inline float rng_uniform(rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_next(r) >> 40) * 0x1p-24);
}

/* n values uniform in [lo, hi), malloc'ed (at least one element). */
static inline float *rand_vec(rng *r, int64_t n, float lo, float hi) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = rng_uniform(r, lo, hi);
    return v;
}

/* n NaNs, malloc'ed (at least one element). */
static inline float *nan_vec(int64_t n) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = NAN;
    return v;
}

#endif
