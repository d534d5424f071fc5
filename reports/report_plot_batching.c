/* report_plot_batching.c — throughput and latency percentiles against batch size or
 * concurrency; bars per point when only the scheduler varies. */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Throughput and latency against batch or concurrency; bars when only the scheduler
 * varies. */
void ibex_plot_plan_batching(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                          size_t nk, const char **xk_out)
{
    const char *xk = NULL;
    if (ibex_plot_key_swept(keys, nk, "batch") && ibex_plot_key_numeric(pts, np, "batch"))
        xk = "batch";
    else if (ibex_plot_key_swept(keys, nk, "workload.concurrency") && ibex_plot_key_numeric(pts, np, "workload.concurrency"))
        xk = "workload.concurrency";
    *xk_out = xk;
    if (!xk) {
        static const char *paths[] = {"metrics/output_tok_per_s", "metrics/ttft/p99"};
        static const char *titles[] = {"output tok/s (left)", "TTFT p99 ms (right)"};
        static const double scale[] = {1.0, 1000.0};
        static const bool y2[] = {false, true};
        plot *p = ibex_plot_plan_bars(P, "scheduler", "Throughput and tail latency per point", pts, np, keys, nk, 2,
                            paths, titles, scale, y2);
        if (!p)
            return;
        snprintf(p->ylabel, sizeof p->ylabel, "output tokens/s");
        snprintf(p->y2label, sizeof p->y2label, "TTFT p99 (ms)");
        for (size_t i = 0; i < p->ncat; i++) {
            char a[64], b[64];
            ibex_plot_appendf(P, &p->reading, "%s%s: %s, TTFT p99 %s.", p->reading ? " " : "", p->cat[i],
                    ibex_report_fmt_value(ibex_report_num(pts[i], "metrics/output_tok_per_s"), "tok/s", a,
                                          sizeof a),
                    ibex_report_fmt_seconds(ibex_report_num(pts[i], "metrics/ttft/p99"), b, sizeof b));
        }
        return;
    }
    char name[128];
    static const char *tp[] = {"metrics/output_tok_per_s"};
    static const char *tt[] = {"output tok/s"};
    snprintf(name, sizeof name, "throughput_vs_%s", xk);
    plot *p = ibex_plot_plan_vs(P, name, "Output throughput vs batch size", pts, np, keys, nk, xk, 1, tp, tt, 1.0);
    if (p) {
        snprintf(p->ylabel, sizeof p->ylabel, "output tokens/s");
        p->logx = true;
        ibex_plot_read_range(P, p, xk, "throughput", "tok/s");
    }
    static const char *lp[] = {"metrics/ttft/p50", "metrics/ttft/p99", "metrics/tpot/p50", "metrics/tpot/p99"};
    static const char *lt[] = {"TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99"};
    snprintf(name, sizeof name, "latency_vs_%s", xk);
    p = ibex_plot_plan_vs(P, name, "Latency percentiles vs batch size", pts, np, keys, nk, xk, 4, lp, lt, 1000.0);
    if (p) {
        snprintf(p->ylabel, sizeof p->ylabel, "ms");
        p->logx = p->logy = true;
        ibex_plot_read_range(P, p, xk, "latency", "ms");
    }
}
