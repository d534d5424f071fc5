/* quality.h — model quality measured next to speed: perplexity of a model on a text
 * file (the scenario key `quality: {text: FILE, ctx: N, chunks: K}`). */
#ifndef IBEX_QUALITY_H
#define IBEX_QUALITY_H

#include <stdint.h>

#include "engine/model.h"
#include "kernels/backend.h"
#include "kernels/status.h"

typedef struct ibex_ppl {
    double ppl;         /* exp(mean negative log-likelihood) over the scored tokens */
    double nll_mean;    /* mean −ln p(token | context), nats */
    int64_t n_scored;   /* tokens scored */
    int64_t n_text;     /* tokens the text encodes to (no BOS) */
    int32_t n_chunks;   /* chunks of ctx tokens evaluated */
    int32_t ctx;
} ibex_ppl;

/* Perplexity of m on the UTF-8 text file at path, computed on backend be: the text is
 * encoded with the model's tokenizer (no BOS), cut into consecutive chunks of ctx tokens
 * (at most max_chunks; 0 = all whole chunks), each evaluated from an empty cache with the
 * logits of every position; as llama.cpp's `perplexity` does, only the second half of a
 * chunk is scored (positions ctx/2 .. ctx−2 predicting the next token), so every scored
 * token sees at least ctx/2 tokens of context. Log-softmax in double.
 * Errors (status, err naming path): unreadable or empty file, a model without a text
 * tokenizer, ctx outside [4, the model's context length], or a text shorter than one chunk. */
ibex_status ibex_perplexity(const ibex_model *m, ibex_backend *be, const char *path, int32_t ctx, int32_t max_chunks,
                            ibex_ppl *out, ibex_err *err);

#endif
