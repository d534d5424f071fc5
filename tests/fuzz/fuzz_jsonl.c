/* fuzz_jsonl.c — libFuzzer target for the JSONL workload reader's line parser
 * (harness/workload_file.c): each line either parses into numbers inside 1..ctx or is
 * refused with "FILE:LINE:COL: problem"; nothing is narrowed before it is checked. */
#include <stdint.h>
#include <string.h>

#include "harness/workload_file.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int32_t ctx = 2048;
    int lineno = 0;
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (data + i)) + 1 : size - i;
        lineno++;
        ibex_jsonl_req r;
        ibex_err err = {0};
        if (ibex_jsonl_parse_line((const char *)data + i, len, "fuzz.jsonl", lineno, ctx, &r, &err) == IBEX_OK) {
            if (!r.blank) {
                if (r.prompt_tokens < 0 || r.prompt_tokens > ctx || r.output_tokens < 0 || r.output_tokens > ctx)
                    FUZZ_FAIL("line %d: numbers out of range: %d %d", lineno, r.prompt_tokens, r.output_tokens);
                if (!r.text && r.prompt_tokens < 1) FUZZ_FAIL("line %d: no prompt", lineno);
                if (r.text && r.text[0] == '\0') FUZZ_FAIL("line %d: empty text prompt", lineno);
            }
            ibex_jsonl_req_clear(&r);
        } else if (strncmp(err.msg, "fuzz.jsonl:", 11) != 0) {
            FUZZ_FAIL("line %d: refusal not placed: %s", lineno, err.msg);
        }
        i += len;
    }
    return 0;
}
