/* roofline.h — the measured roofline of a backend (read bandwidth, peak FMA rate) as one
 * record that `ibex roofline` prints and the runner places every decode and prefill
 * figure against. */
#ifndef IBEX_ROOFLINE_H
#define IBEX_ROOFLINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "kernels/backend.h"

typedef struct ibex_roofline {
    char kind[16];     /* the backend's name: "cpu", "cuda" */
    char method[200];  /* how the figures were measured, for reports */
    int threads;       /* threads of the multi-thread figures */
    size_t bytes;      /* read buffer size */
    double read_bw;    /* bytes/s, all threads; 0 = not measured */
    double peak_flops; /* F32 FLOP/s, all threads; 0 = not measured */
    double read_bw_1t, peak_flops_1t; /* one thread (CPU, when asked); 0 = not measured */
    double measure_s;  /* wall time the measurement took */
} ibex_roofline;

/* Measures be's roofline with its current thread count over a read buffer of `bytes`,
 * and with one thread too when single_thread (the thread count is restored after).
 * Entries the backend lacks stay 0. Returns IBEX_OK when at least the read bandwidth was
 * measured, else an error in err (out still holds what was measured). */
ibex_status ibex_roofline_measure(ibex_backend *be, size_t bytes, bool single_thread, ibex_roofline *out,
                                  ibex_err *err);

/* {kind, method, threads, bytes, read_bandwidth_bytes_per_s, peak_flops_per_s,
 *  single_thread: {...} | absent, measure_s}; unmeasured figures are null. New ref. */
json_t *ibex_roofline_json(const ibex_roofline *r);

#endif
