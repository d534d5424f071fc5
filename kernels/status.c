/* status.c — status names and the error record helpers. */
#include "kernels/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ibex_status_to_string(ibex_status s) {
    switch (s) {
    case IBEX_OK: return "ok";
    case IBEX_ERR_IO: return "I/O error";
    case IBEX_ERR_FORMAT: return "malformed input";
    case IBEX_ERR_UNSUPPORTED: return "unsupported";
    case IBEX_ERR_INVALID: return "invalid argument";
    case IBEX_ERR_NOMEM: return "out of memory";
    case IBEX_ERR_NOT_FOUND: return "not found";
    case IBEX_ERR_BACKEND: return "backend error";
    }
    return "unknown status";
}

ibex_status ibex_err_set(ibex_err *e, ibex_status s, const char *fmt, ...) {
    if (!e) return s;
    e->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return s;
}

void ibex_err_prefix(ibex_err *e, const char *fmt, ...) {
    if (!e) return;
    char head[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", head, old);
}
