/* roofline.c — measuring a backend's roofline through its optional read_bandwidth and
 * peak_flops entries (kernels/backend.h), and its JSON form (docs/RESULTS.md "roofline"). */
#include "harness/roofline.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ibex_status ibex_roofline_measure(ibex_backend *be, size_t bytes, bool single_thread, ibex_roofline *out,
                                  ibex_err *err) {
    const double t0 = mono_s();
    memset(out, 0, sizeof *out);
    snprintf(out->kind, sizeof out->kind, "%s", be->name ? be->name : "?");
    out->threads = ibex_backend_threads(be);
    out->bytes = bytes;
    snprintf(out->method, sizeof out->method,
             "read_stream: %d thread(s) reading %zu MiB (median of 5); peak_fma: %d thread(s) of independent "
             "F32 FMA chains (median of 5)",
             out->threads, bytes >> 20, out->threads);
    ibex_err e = {0};
    if (be->read_bandwidth) out->read_bw = be->read_bandwidth(be, bytes, &e);
    if (be->peak_flops) out->peak_flops = be->peak_flops(be, &e);
    if (single_thread && be->set_threads && out->threads > 1) {
        be->set_threads(be, 1);
        if (be->read_bandwidth) out->read_bw_1t = be->read_bandwidth(be, bytes, &e);
        if (be->peak_flops) out->peak_flops_1t = be->peak_flops(be, &e);
        be->set_threads(be, out->threads);
    } else if (single_thread && out->threads == 1) {
        out->read_bw_1t = out->read_bw, out->peak_flops_1t = out->peak_flops;
    }
    out->measure_s = mono_s() - t0;
    if (out->read_bw > 0) return IBEX_OK;
    if (!e.status) ibex_err_set(&e, IBEX_ERR_UNSUPPORTED, "backend %s measures no read bandwidth", out->kind);
    if (err) *err = e;
    return e.status;
}

static json_t *pos_or_null(double v) { return v > 0 ? json_real(v) : json_null(); }

json_t *ibex_roofline_json(const ibex_roofline *r) {
    json_t *o = json_pack("{s:s,s:s,s:i,s:I}", "kind", r->kind, "method", r->method, "threads", r->threads, "bytes",
                          (json_int_t)r->bytes);
    json_object_set_new(o, "read_bandwidth_bytes_per_s", pos_or_null(r->read_bw));
    json_object_set_new(o, "peak_flops_per_s", pos_or_null(r->peak_flops));
    if (r->read_bw_1t > 0 || r->peak_flops_1t > 0)
        json_object_set_new(o, "single_thread",
                            json_pack("{s:o,s:o}", "read_bandwidth_bytes_per_s", pos_or_null(r->read_bw_1t),
                                      "peak_flops_per_s", pos_or_null(r->peak_flops_1t)));
    json_object_set_new(o, "measure_s", json_real(r->measure_s));
    return o;
}
