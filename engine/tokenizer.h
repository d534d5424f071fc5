/* tokenizer.h — SentencePiece-style (GGUF `tokenizer.ggml.model = llama`) tokenizer
 * built from a GGUF vocabulary: score-driven pair merging over UTF-8 characters,
 * byte fallback through <0xNN> tokens, a "▁" (U+2581) for every space and a dummy
 * leading space, BOS/EOS ids from the file.
 *
 * The vocabulary is copied out of whatever it was built from, so the tokenizer
 * outlives the GGUF map or the synthetic arrays. */
#ifndef IBEX_TOKENIZER_H
#define IBEX_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

/* GGUF tokenizer.ggml.token_type values. */
enum {
    IBEX_TOKEN_NORMAL = 1,
    IBEX_TOKEN_UNKNOWN = 2,
    IBEX_TOKEN_CONTROL = 3,
    IBEX_TOKEN_USER_DEFINED = 4,
    IBEX_TOKEN_UNUSED = 5,
    IBEX_TOKEN_BYTE = 6,
};

typedef struct ibex_tokenizer ibex_tokenizer;

/* Builds a tokenizer from n_vocab tokens (NUL-terminated UTF-8 pieces), their scores
 * and token types (types may be NULL: all NORMAL, except "<0xNN>" pieces which count
 * as BYTE). bos/eos/unk may be -1 for "none". Duplicate pieces are allowed (the first
 * id wins). On error returns NULL, err set (e.g. bos/eos/unk out of range). */
ibex_tokenizer *ibex_tokenizer_new(const char *const *tokens, const float *scores,
                                   const int32_t *types, int32_t n_vocab, int32_t bos_id,
                                   int32_t eos_id, int32_t unk_id, bool add_bos, ibex_err *err);
void ibex_tokenizer_free(ibex_tokenizer *t);

int32_t ibex_tokenizer_n_vocab(const ibex_tokenizer *t);
int32_t ibex_tokenizer_bos(const ibex_tokenizer *t);
int32_t ibex_tokenizer_eos(const ibex_tokenizer *t);
bool ibex_tokenizer_add_bos(const ibex_tokenizer *t);

/* The piece of token id (owned by t, NUL-terminated), storing its score and type
 * where the pointers are non-NULL; NULL if id is out of range. */
const char *ibex_tokenizer_piece(const ibex_tokenizer *t, int32_t id, float *score, int32_t *type);

/* Encodes UTF-8 text (len bytes; invalid UTF-8 bytes go through byte fallback) into
 * out[0..cap). Prepends BOS if add_bos. Returns the number of tokens, which may
 * exceed cap (then only cap were written: call again with a larger buffer), or −1
 * with err set on allocation failure or NULL arguments. */
int64_t ibex_tokenizer_encode(const ibex_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t *out, int64_t cap, ibex_err *err);

/* The bytes token id stands for, given the previous token (SentencePiece drops the
 * leading space of the first piece after BOS / at the start): "▁" becomes ' ', "<0xNN>"
 * becomes the byte NN, control tokens give "". Writes up to cap bytes to buf, returns
 * the full length. prev = −1 means "start of text". */
size_t ibex_tokenizer_decode_piece(const ibex_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                   size_t cap);

/* Decodes a whole id sequence; returns a malloc'd NUL-terminated string (caller frees),
 * NULL on allocation failure. decode(encode(s)) == s for any NUL-free byte string s
 * without a literal U+2581 (normalised like a space), given a vocabulary holding "▁"
 * and all 256 byte tokens (the synthetic vocabulary does). */
char *ibex_tokenizer_decode(const ibex_tokenizer *t, const int32_t *ids, int64_t n);

#endif
