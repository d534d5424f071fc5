/* fuzz_tokenizer.c — libFuzzer target for the tokenizer (engine/tokenizer.c). The input
 * is "PIECES\0TEXT": up to 64 extra vocabulary pieces (newline-separated, scored by
 * position) beside <unk>, <s>, </s> (control), the 256 byte tokens and "▁", then a text
 * to encode. Encoding never
 * fails, every id is in the vocabulary, and decode(encode(text)) == text for any text
 * without NUL or a literal U+2581 (the tokenizer's documented round trip). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t)(nul - data) : 0;
    const char *text = (const char *)(nul ? nul + 1 : data);
    size_t tlen = nul ? size - plen - 1 : size;

    enum { MAX_EXTRA = 64, BASE = 3 + 256 + 1 };
    char *pieces[BASE + MAX_EXTRA];
    float scores[BASE + MAX_EXTRA];
    int32_t n = 0;
    pieces[n++] = strdup("<unk>");
    pieces[n++] = strdup("<s>");
    pieces[n++] = strdup("</s>");
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        pieces[n++] = strdup(buf);
    }
    pieces[n++] = strdup("\xe2\x96\x81");
    for (size_t i = 0; i < plen && n < BASE + MAX_EXTRA;) {
        size_t j = i;
        while (j < plen && data[j] != '\n') j++;
        if (j > i) pieces[n++] = strndup((const char *)data + i, j - i);
        i = j + 1;
    }
    int32_t types[BASE + MAX_EXTRA];
    for (int32_t i = 0; i < n; i++) {
        scores[i] = i < BASE ? -1000.0f : (float)-(i - BASE);
        types[i] = i == 0 ? IBEX_TOKEN_UNKNOWN : i < 3 ? IBEX_TOKEN_CONTROL : i < 3 + 256 ? IBEX_TOKEN_BYTE : IBEX_TOKEN_NORMAL;
    }
    ibex_err err = {0};
    ibex_tokenizer *t = ibex_tokenizer_new((const char *const *)pieces, scores, types, n, 1, 2, 0, true, &err);
    for (int32_t i = 0; i < n; i++) free(pieces[i]);
    if (!t) {
        if (!err.msg[0]) FUZZ_FAIL("ibex_tokenizer_new failed without a message");
        return 0;
    }
    int64_t k = ibex_tokenizer_encode(t, text, tlen, true, NULL, 0, &err);
    if (k < 0) FUZZ_FAIL("encode failed: %s", err.msg);
    int32_t *ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids);
    if (ids && ibex_tokenizer_encode(t, text, tlen, true, ids, k, &err) == k) {
        for (int64_t i = 0; i < k; i++)
            if (ids[i] < 0 || ids[i] >= ibex_tokenizer_n_vocab(t)) FUZZ_FAIL("id %d outside the vocabulary", ids[i]);
        char *back = ibex_tokenizer_decode(t, ids, k);
        bool plain = !memchr(text, 0, tlen) && !memmem(text, tlen, "\xe2\x96\x81", 3);
        if (back && plain && (strlen(back) != tlen || memcmp(back, text, tlen) != 0))
            FUZZ_FAIL("round trip: %zu bytes in, %zu bytes back", tlen, strlen(back));
        free(back);
    }
    free(ids);
    ibex_tokenizer_free(t);
    return 0;
}
