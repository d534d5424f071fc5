/* report_plot_decoding.c — decode speed and KV memory per decoding strategy (greedy,
 * sampling, beam widths). */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Decode speed and KV memory per decoding strategy; KV memory alone when timing is
 * false (accounting-only points, whose times mean nothing). */
void ibex_plot_plan_decoding(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys, size_t nk,
                          bool timing)
{
    static const char *paths[] = {"metrics/decode_tok_per_s", "kv/peak_reserved"};
    static const char *titles[] = {"decode tok/s (left)", "KV peak reserved MiB (right)"};
    static const double scale[] = {1.0, 1.0 / 1048576.0};
    static const bool y2[] = {false, true}, y1[] = {false};
    plot *p = timing ? ibex_plot_plan_bars(P, "decoding", "Decode speed and KV memory per decoding strategy", pts, np, keys,
                                 nk, 2, paths, titles, scale, y2)
                     : ibex_plot_plan_bars(P, "decoding", "KV memory per decoding strategy", pts, np, keys, nk, 1,
                                 paths + 1, titles + 1, scale + 1, y1);
    if (!p)
        return;
    if (timing) {
        snprintf(p->ylabel, sizeof p->ylabel, "decode tokens/s");
        snprintf(p->y2label, sizeof p->y2label, "KV peak reserved (MiB)");
    } else {
        snprintf(p->ylabel, sizeof p->ylabel, "KV peak reserved (MiB)");
    }
    for (size_t i = 0; i < p->ncat; i++) {
        char a[64], b[64];
        if (timing)
            ibex_plot_appendf(P, &p->reading, "%s%s: %s decode, %s peak KV.", p->reading ? " " : "", p->cat[i],
                    ibex_report_fmt_value(ibex_report_num(pts[i], "metrics/decode_tok_per_s"), "tok/s", a,
                                          sizeof a),
                    ibex_report_fmt_bytes(ibex_report_num(pts[i], "kv/peak_reserved"), b, sizeof b));
        else
            ibex_plot_appendf(P, &p->reading, "%s%s: %s peak KV.", p->reading ? " " : "", p->cat[i],
                    ibex_report_fmt_bytes(ibex_report_num(pts[i], "kv/peak_reserved"), b, sizeof b));
    }
}
