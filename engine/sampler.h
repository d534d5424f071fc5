/* sampler.h — choosing the next token from logits. Greedy for now; temperature,
 * top-k/top-p/min-p, penalties and beam search build on the same entry points. */
#ifndef IBEX_SAMPLER_H
#define IBEX_SAMPLER_H

#include <stdint.h>

/* Index of the largest of n logits (the lowest index among equals; NaN never wins).
 * Returns −1 if n <= 0. */
int32_t ibex_sample_greedy(const float *logits, int32_t n);

#endif
