/* tokenizer.c — the SentencePiece-style (GGUF `llama`) tokenizer of tokenizer.h.
 *
 * Design notes
 *
 * Encoding, as llama.cpp does for `tokenizer.ggml.model = llama`:
 *   1. Normalise: every ' ' becomes "▁" (U+2581, E2 96 81) and one "▁" is prepended
 *      (the dummy prefix) when the text is non-empty.
 *   2. Split into UTF-8 characters. A byte that does not start a well-formed UTF-8
 *      sequence (stray continuation, C0/C1/F5..FF, truncated, overlong or surrogate
 *      sequence) is a character of its own, one byte long.
 *   3. Merge: while some adjacent pair of symbols concatenates to a mergeable vocab
 *      piece, merge the pair whose piece has the highest score (ties: leftmost).
 *      Candidate pairs sit in a binary max-heap; merged-away entries are not removed
 *      but skipped when popped (lazy invalidation), so n characters cost O(n log n).
 *   4. Emit: each final symbol that is a mergeable vocab piece gives its id; any other
 *      symbol (always a single character) gives one <0xNN> token per byte, or unk
 *      where the vocabulary lacks that byte token, or nothing if there is no unk.
 *
 * Invariants of the merge (what makes lazy invalidation sound):
 *   I1. Symbols only grow: a merge adds the right symbol's bytes to the left one and
 *       sets the right one's length to 0. Symbols never split.
 *   I2. A heap entry (L, R, size) is current iff L and R are both alive (length > 0)
 *       and len(L) + len(R) == size; then R is still L's right neighbour, because a
 *       change of neighbour implies a merge that grew L or R or killed one (I1).
 *   I3. Every current adjacent pair whose concatenation is mergeable is in the heap:
 *       all are pushed at the start, and the two new pairs a merge creates are pushed
 *       right after it. Merges <= n - 1, so the heap never holds more than 3n entries.
 *   I4. The heap orders by score, then by left symbol index; symbol indices increase
 *       left to right, so "smallest index" is "leftmost".
 *
 * Mergeable pieces are NORMAL and USER_DEFINED tokens only: CONTROL (<s>), UNKNOWN,
 * UNUSED and BYTE tokens never come out of text by matching their piece. When a piece
 * occurs more than once, the first mergeable id wins.
 *
 * Decoding a piece: NORMAL/USER_DEFINED pieces have each "▁" turned into ' ', and
 * their leading space dropped when prev is -1 (start of text) or BOS; BYTE tokens give
 * their byte; CONTROL and UNUSED give ""; UNKNOWN gives its piece text verbatim (e.g.
 * "<unk>"), so lost input stays visible. With these rules decode(encode(s)) == s for
 * every NUL-free byte string s that does not itself contain U+2581, provided the
 * vocabulary has a "▁" piece and all 256 byte tokens (true of SentencePiece vocabs):
 * a literal "▁" in the input is normalised exactly like a space (also in llama.cpp
 * and SentencePiece), so it comes back as ' '.
 */
#include "engine/tokenizer.h"

#include <stdlib.h>
#include <string.h>

struct ibex_tokenizer {
    int32_t n_vocab;
    char *pieces;    /* every piece, NUL-terminated, back to back */
    size_t *off;     /* (n_vocab) start of piece i in pieces */
    size_t *len;     /* (n_vocab) byte length of piece i */
    float *scores;   /* (n_vocab) */
    uint8_t *types;  /* (n_vocab) IBEX_TOKEN_* */
    int32_t *table;  /* (table_mask + 1) open-addressing slots: mergeable id, or -1 */
    size_t table_mask;
    int32_t byte_id[256]; /* byte -> id of its <0xNN> token, or -1 */
    int32_t bos, eos, unk;
    bool add_bos;
};

/* "▁" (U+2581) in UTF-8. */
static const char k_space[3] = {(char)0xE2, (char)0x96, (char)0x81};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int hex_digit(char c, bool upper_only) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (!upper_only && c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte a "<0xNN>" piece stands for, or -1 if s[0..n) is not of that form. */
static int parse_byte_piece(const char *s, size_t n, bool upper_only) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3], upper_only), lo = hex_digit(s[4], upper_only);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

static bool mergeable(uint8_t type) {
    return type == IBEX_TOKEN_NORMAL || type == IBEX_TOKEN_USER_DEFINED;
}

/* The id of the mergeable piece equal to s[0..n), or -1. */
static int32_t find_piece(const ibex_tokenizer *t, const char *s, size_t n) {
    size_t i = (size_t)fnv1a(s, n) & t->table_mask;
    for (;;) {
        int32_t id = t->table[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->pieces + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->table_mask;
    }
}

void ibex_tokenizer_free(ibex_tokenizer *t) {
    if (!t) return;
    free(t->pieces);
    free(t->off);
    free(t->len);
    free(t->scores);
    free(t->types);
    free(t->table);
    free(t);
}

static bool id_ok(int32_t id, int32_t n_vocab) {
    return id == -1 || (id >= 0 && id < n_vocab);
}

/* Contract: see tokenizer.h. scores may also be NULL (all 0: ties merge leftmost).
 * types may contain 0 (GGUF "undefined"), taken as NORMAL; other values outside
 * 1..6 are an error. On error nothing is leaked and NULL is returned. */
ibex_tokenizer *ibex_tokenizer_new(const char *const *tokens, const float *scores,
                                   const int32_t *types, int32_t n_vocab, int32_t bos_id,
                                   int32_t eos_id, int32_t unk_id, bool add_bos, ibex_err *err) {
    if (!tokens) {
        ibex_err_set(err, IBEX_ERR_INVALID, "tokenizer: token array is NULL");
        return NULL;
    }
    if (n_vocab <= 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "tokenizer: n_vocab is %d, must be > 0", (int)n_vocab);
        return NULL;
    }
    const struct {
        const char *name;
        int32_t id;
    } special[3] = {{"bos", bos_id}, {"eos", eos_id}, {"unk", unk_id}};
    for (int k = 0; k < 3; k++) {
        if (!id_ok(special[k].id, n_vocab)) {
            ibex_err_set(err, IBEX_ERR_INVALID,
                         "tokenizer: %s id %d out of range (must be -1 or in [0, %d))",
                         special[k].name, (int)special[k].id, (int)n_vocab);
            return NULL;
        }
    }
    size_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (!tokens[i]) {
            ibex_err_set(err, IBEX_ERR_INVALID, "tokenizer: token %d is NULL", (int)i);
            return NULL;
        }
        if (types && (types[i] < 0 || types[i] > IBEX_TOKEN_BYTE)) {
            ibex_err_set(err, IBEX_ERR_INVALID, "tokenizer: token %d ('%s') has unknown type %d",
                         (int)i, tokens[i], (int)types[i]);
            return NULL;
        }
        size_t n = strlen(tokens[i]);
        if (n > SIZE_MAX - 1 - total) {
            ibex_err_set(err, IBEX_ERR_NOMEM, "tokenizer: vocabulary text too large");
            return NULL;
        }
        total += n + 1;
    }

    size_t nv = (size_t)n_vocab;
    ibex_tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->n_vocab = n_vocab;
    t->bos = bos_id;
    t->eos = eos_id;
    t->unk = unk_id;
    t->add_bos = add_bos;
    t->pieces = malloc(total);
    t->off = malloc(nv * sizeof *t->off);
    t->len = malloc(nv * sizeof *t->len);
    t->scores = malloc(nv * sizeof *t->scores);
    t->types = malloc(nv);
    /* Load factor <= 1/2 keeps linear probes short. */
    size_t cap = 16;
    while (cap < 2 * nv) cap *= 2;
    t->table = malloc(cap * sizeof *t->table);
    t->table_mask = cap - 1;
    if (!t->pieces || !t->off || !t->len || !t->scores || !t->types || !t->table) goto nomem;

    for (size_t i = 0; i < cap; i++) t->table[i] = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t pos = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        size_t n = strlen(tokens[i]);
        memcpy(t->pieces + pos, tokens[i], n + 1);
        t->off[i] = pos;
        t->len[i] = n;
        pos += n + 1;
        t->scores[i] = scores ? scores[i] : 0.0f;
        uint8_t type;
        if (types)
            type = types[i] == 0 ? IBEX_TOKEN_NORMAL : (uint8_t)types[i];
        else
            type = parse_byte_piece(tokens[i], n, true) >= 0 ? IBEX_TOKEN_BYTE : IBEX_TOKEN_NORMAL;
        t->types[i] = type;

        if (type == IBEX_TOKEN_BYTE) {
            int b = parse_byte_piece(tokens[i], n, false);
            if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = i;
        } else if (mergeable(type)) {
            size_t h = (size_t)fnv1a(tokens[i], n) & t->table_mask;
            for (;;) {
                int32_t id = t->table[h];
                if (id < 0) {
                    t->table[h] = i;
                    break;
                }
                if (t->len[id] == n && memcmp(t->pieces + t->off[id], tokens[i], n) == 0)
                    break; /* duplicate: the first id wins */
                h = (h + 1) & t->table_mask;
            }
        }
    }
    return t;

nomem:
    ibex_tokenizer_free(t);
    ibex_err_set(err, IBEX_ERR_NOMEM, "tokenizer: out of memory building a %d-token vocabulary",
                 (int)n_vocab);
    return NULL;
}

int32_t ibex_tokenizer_n_vocab(const ibex_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t ibex_tokenizer_bos(const ibex_tokenizer *t) { return t ? t->bos : -1; }
int32_t ibex_tokenizer_eos(const ibex_tokenizer *t) { return t ? t->eos : -1; }
bool ibex_tokenizer_add_bos(const ibex_tokenizer *t) { return t && t->add_bos; }

const char *ibex_tokenizer_piece(const ibex_tokenizer *t, int32_t id, float *score, int32_t *type) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    if (score) *score = t->scores[id];
    if (type) *type = t->types[id];
    return t->pieces + t->off[id];
}

/* ---- encoding ---------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 character at s[0..n) (n >= 1), or 1 if s[0] does
 * not start one (RFC 3629 table: no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t want;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) want = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        want = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        want = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    if (n < want || s[1] < lo || s[1] > hi) return 1;
    for (size_t k = 2; k < want; k++)
        if ((s[k] & 0xC0) != 0x80) return 1;
    return want;
}

typedef struct sym {
    size_t off, n;        /* bytes [off, off + n) of the normalised text; n == 0: merged away */
    int64_t prev, next;   /* neighbours, -1 at the ends */
} sym;

typedef struct bigram {
    int64_t left, right;  /* symbol indices */
    float score;
    size_t size;          /* len(left) + len(right) when pushed (invariant I2) */
} bigram;

/* True if a should pop before b: higher score, then leftmost. */
static bool bigram_before(const bigram *a, const bigram *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

typedef struct heap {
    bigram *v;
    size_t n;
} heap;

/* Capacity is reserved up front (invariant I3), so pushing cannot fail. */
static void heap_push(heap *h, bigram b) {
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bigram_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

static void try_add_bigram(const ibex_tokenizer *t, const char *text, const sym *s, heap *h,
                           int64_t left, int64_t right) {
    if (left < 0 || right < 0) return;
    size_t size = s[left].n + s[right].n;
    int32_t id = find_piece(t, text + s[left].off, size);
    if (id < 0) return;
    heap_push(h, (bigram){left, right, t->scores[id], size});
}

/* Contract: see tokenizer.h. text may be NULL only when len == 0; out may be NULL
 * when cap <= 0 (to count). add_bos with no BOS in the vocabulary adds nothing. */
int64_t ibex_tokenizer_encode(const ibex_tokenizer *t, const char *text, size_t len, bool add_bos,
                              int32_t *out, int64_t cap, ibex_err *err) {
    if (!t || (!text && len > 0) || (!out && cap > 0)) {
        ibex_err_set(err, IBEX_ERR_INVALID, "tokenizer: encode called with a NULL argument");
        return -1;
    }
    int64_t count = 0;
#define EMIT(id)                                  \
    do {                                          \
        if (count < cap) out[count] = (id);       \
        count++;                                  \
    } while (0)

    if (add_bos && t->bos >= 0) EMIT(t->bos);
    if (len == 0) return count;

    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    /* norm_len = 3 (dummy prefix) + len + 2 * spaces, checked for overflow. */
    size_t max_syms = SIZE_MAX / (3 * sizeof(bigram) + sizeof(sym) + 1);
    if (len > max_syms - 3 || spaces > (max_syms - 3 - len) / 2) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "tokenizer: text of %zu bytes is too long", len);
        return -1;
    }
    size_t norm_len = 3 + len + 2 * spaces;
    char *norm = malloc(norm_len);
    sym *s = malloc(norm_len * sizeof *s);
    heap h = {malloc(3 * norm_len * sizeof *h.v), 0};
    if (!norm || !s || !h.v) {
        free(norm);
        free(s);
        free(h.v);
        ibex_err_set(err, IBEX_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
        return -1;
    }
    memcpy(norm, k_space, 3);
    size_t p = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(norm + p, k_space, 3);
            p += 3;
        } else {
            norm[p++] = text[i];
        }
    }

    int64_t n_sym = 0;
    for (size_t off = 0; off < norm_len;) {
        size_t n = utf8_char_len((const unsigned char *)norm + off, norm_len - off);
        s[n_sym] = (sym){off, n, n_sym - 1, -1};
        if (n_sym > 0) s[n_sym - 1].next = n_sym;
        n_sym++;
        off += n;
    }

    for (int64_t i = 1; i < n_sym; i++) try_add_bigram(t, norm, s, &h, i - 1, i);
    while (h.n > 0) {
        bigram b = heap_pop(&h);
        sym *l = &s[b.left], *r = &s[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale (I2) */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        try_add_bigram(t, norm, s, &h, l->prev, b.left);
        try_add_bigram(t, norm, s, &h, b.left, l->next);
    }

    for (int64_t i = 0; i >= 0; i = s[i].next) {
        int32_t id = find_piece(t, norm + s[i].off, s[i].n);
        if (id >= 0) {
            EMIT(id);
            continue;
        }
        for (size_t k = 0; k < s[i].n; k++) {
            int32_t bid = t->byte_id[(unsigned char)norm[s[i].off + k]];
            if (bid >= 0)
                EMIT(bid);
            else if (t->unk >= 0)
                EMIT(t->unk);
        }
    }
#undef EMIT
    free(norm);
    free(s);
    free(h.v);
    return count;
}

/* ---- decoding ---------------------------------------------------------------------- */

/* Appends n bytes to buf[0..cap) at *pos, truncating at cap; *pos counts them all. */
static void put(char *buf, size_t cap, size_t *pos, const char *src, size_t n) {
    if (*pos < cap) {
        size_t room = cap - *pos;
        memcpy(buf + *pos, src, n < room ? n : room);
    }
    *pos += n;
}

/* Contract: see tokenizer.h. An id outside the vocabulary gives "". Never fails;
 * buf may be NULL when cap == 0. No NUL terminator is written. */
size_t ibex_tokenizer_decode_piece(const ibex_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                   size_t cap) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    const char *piece = t->pieces + t->off[id];
    size_t n = t->len[id], pos = 0;
    switch (t->types[id]) {
    case IBEX_TOKEN_CONTROL:
    case IBEX_TOKEN_UNUSED: return 0;
    case IBEX_TOKEN_UNKNOWN: put(buf, cap, &pos, piece, n); return pos;
    case IBEX_TOKEN_BYTE: {
        int b = parse_byte_piece(piece, n, false);
        if (b < 0) {
            put(buf, cap, &pos, piece, n);
        } else {
            char c = (char)b;
            put(buf, cap, &pos, &c, 1);
        }
        return pos;
    }
    default: break;
    }
    /* NORMAL / USER_DEFINED. */
    bool strip = prev == -1 || (t->bos >= 0 && prev == t->bos);
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && memcmp(piece + i, k_space, 3) == 0) {
            if (!(strip && i == 0)) put(buf, cap, &pos, " ", 1);
            i += 3;
        } else {
            if (strip && i == 0 && piece[0] == ' ') {
                i++;
                continue;
            }
            put(buf, cap, &pos, piece + i, 1);
            i++;
        }
    }
    return pos;
}

char *ibex_tokenizer_decode(const ibex_tokenizer *t, const int32_t *ids, int64_t n) {
    if (!t || (!ids && n > 0)) return NULL;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t k = ibex_tokenizer_decode_piece(t, i > 0 ? ids[i - 1] : -1, ids[i], NULL, 0);
        if (k > SIZE_MAX - 1 - total) return NULL;
        total += k;
    }
    char *str = malloc(total + 1);
    if (!str) return NULL;
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++)
        pos += ibex_tokenizer_decode_piece(t, i > 0 ? ids[i - 1] : -1, ids[i], str + pos,
                                           total - pos);
    str[pos] = '\0';
    return str;
}
