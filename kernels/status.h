/* status.h — the status codes and error record shared by every ibex library.
 *
 * Library code never exits or prints: it returns an ibex_status and, where the
 * caller passed an ibex_err, a message naming the file, the place and the problem.
 * Only main() decides what to show and whether to stop. */
#ifndef IBEX_STATUS_H
#define IBEX_STATUS_H

#include <stddef.h>

typedef enum ibex_status {
    IBEX_OK = 0,
    IBEX_ERR_IO,          /* open/read/write/mmap failed */
    IBEX_ERR_FORMAT,      /* a file's contents are malformed */
    IBEX_ERR_UNSUPPORTED, /* well-formed, but ibex does not handle it (type, version) */
    IBEX_ERR_INVALID,     /* an argument or parameter is impossible */
    IBEX_ERR_NOMEM,       /* an allocation failed or a budget is exceeded */
    IBEX_ERR_NOT_FOUND,   /* a required key, tensor or name is missing */
    IBEX_ERR_BACKEND,     /* a compute backend failed (CUDA, cuBLAS) */
} ibex_status;

/* Filled by the function that fails; msg is always NUL-terminated. */
typedef struct ibex_err {
    ibex_status status;
    char msg[512];
} ibex_err;

const char *ibex_status_to_string(ibex_status s);

/* Records status s and a printf-style message in e (e may be NULL). Returns s,
 * so callers can write `return ibex_err_set(e, IBEX_ERR_FORMAT, "...")`.
 * A message already set is replaced. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
ibex_status ibex_err_set(ibex_err *e, ibex_status s, const char *fmt, ...);

/* Prepends "prefix: " to an existing message, for adding context on the way up. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ibex_err_prefix(ibex_err *e, const char *fmt, ...);

#endif
