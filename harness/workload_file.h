/* workload_file.h — one line of a JSONL workload file (workload.file): {"prompt": "text"}
 * or {"prompt_tokens": N}, with an optional "output_tokens": M. Split from the runner so
 * the checks can be tested and fuzzed on their own. */
#ifndef IBEX_HARNESS_WORKLOAD_FILE_H
#define IBEX_HARNESS_WORKLOAD_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

typedef struct ibex_jsonl_req {
    bool blank;            /* the line holds only white space: skip it */
    char *text;            /* "prompt" (malloc'ed, NUL-terminated), or NULL */
    int32_t prompt_tokens; /* "prompt_tokens" (1..ctx_len), 0 when the prompt is text */
    int32_t output_tokens; /* "output_tokens" (1..ctx_len), 0 when absent */
} ibex_jsonl_req;

/* Parses line[0..len) (line lineno of file, for messages) into *out, which the caller
 * clears with ibex_jsonl_req_clear. Every number is range-checked against ctx_len (the
 * model's context) before it is narrowed, so 4294967298 is refused, not wrapped to 2.
 * Errors read "FILE:LINE:COL: problem". On error *out holds nothing to free. */
ibex_status ibex_jsonl_parse_line(const char *line, size_t len, const char *file, int lineno, int32_t ctx_len,
                                  ibex_jsonl_req *out, ibex_err *err);

void ibex_jsonl_req_clear(ibex_jsonl_req *r);

#endif
