/* sampler.c — token selection from logits. */
#include "engine/sampler.h"

int32_t ibex_sample_greedy(const float *logits, int32_t n) {
    int32_t best = -1;
    float bv = 0;
    for (int32_t i = 0; i < n; i++) {
        float v = logits[i];
        if (v != v) continue; /* NaN */
        if (best < 0 || v > bv) best = i, bv = v;
    }
    return n > 0 && best < 0 ? 0 : best;
}
