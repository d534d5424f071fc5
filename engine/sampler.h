/* sampler.h — choosing the next token from logits: greedy, temperature, top-k, top-p
 * (nucleus), min-p and repetition penalty, applied in the usual order
 *   penalties -> temperature -> top-k -> top-p / min-p -> draw,
 * with a seeded PRNG per request, so the same seed gives the same tokens on every
 * run and every thread count. Beam search builds on ibex_log_softmax. */
#ifndef IBEX_SAMPLER_H
#define IBEX_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/status.h"

/* Index of the largest of n logits (the lowest index among equals; NaN never wins).
 * Returns −1 if n <= 0. */
int32_t ibex_sample_greedy(const float *logits, int32_t n);

/* xoshiro256** seeded through splitmix64. */
typedef struct ibex_rng {
    uint64_t s[4];
} ibex_rng;

void ibex_rng_seed(ibex_rng *r, uint64_t seed);
uint64_t ibex_rng_next(ibex_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double ibex_rng_uniform(ibex_rng *r);

typedef struct ibex_sampler_params {
    float temperature;    /* 0: greedy (after penalties); > 0: scale logits by 1/T */
    int32_t top_k;        /* keep the k most likely (0: off) */
    float top_p;          /* keep the smallest set whose probability reaches p (1: off) */
    float min_p;          /* drop tokens with p < min_p · p_max (0: off) */
    float repeat_penalty; /* 1: off; >1 penalises tokens of the recent history
                             (logit > 0 divided by it, logit <= 0 multiplied) */
    int32_t repeat_last_n; /* history window for the penalty (0: whole history given) */
    uint64_t seed;
} ibex_sampler_params;

/* Greedy: temperature 0, top-k 0, top-p 1, min-p 0, penalty 1, seed 0. */
ibex_sampler_params ibex_sampler_default_params(void);

/* IBEX_OK, or IBEX_ERR_INVALID with err naming the parameter and its valid range:
 * temperature < 0 or not finite, top_k < 0, top_p outside (0, 1], min_p outside
 * [0, 1], repeat_penalty <= 0, repeat_last_n < 0. */
ibex_status ibex_sampler_params_check(const ibex_sampler_params *p, ibex_err *err);

typedef struct ibex_sampler ibex_sampler;

/* Scratch for a vocabulary of n_vocab (candidate ids and probabilities); NULL on
 * allocation failure. One sampler per thread; it holds no per-request state. */
ibex_sampler *ibex_sampler_new(int32_t n_vocab);
void ibex_sampler_free(ibex_sampler *s);

/* Draws a token from logits (n_vocab floats, not modified) under p, using rng
 * (advanced by exactly one draw when temperature > 0, untouched when greedy).
 * history/n_history: the tokens the penalty looks at (may be NULL/0).
 * If logprob is non-NULL, stores log P(token) under the full unfiltered softmax
 * of the penalised, temperature-scaled logits (temperature 0: of the unpenalised raw
 * logits). Note repeat_last_n 0 means the whole history given (llama.cpp: 0 = off). */
int32_t ibex_sampler_sample(ibex_sampler *s, const float *logits, const ibex_sampler_params *p, ibex_rng *rng,
                            const int32_t *history, int32_t n_history, float *logprob);

/* out[i] = logits[i] − log Σ exp(logits) (out may equal logits). */
void ibex_log_softmax(float *out, const float *logits, int32_t n);

/* The filtered, renormalised distribution the sampler draws from (probs has n_vocab
 * entries, 0 for dropped tokens). For tests and for reports of the effective
 * vocabulary; greedy gives a one-hot. */
void ibex_sampler_distribution(ibex_sampler *s, const float *logits, const ibex_sampler_params *p,
                               const int32_t *history, int32_t n_history, float *probs);

#endif
