/* report_plot_decoding.c — decode speed and KV memory per decoding strategy (greedy,
 * sampling, beam widths). */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Decode speed and KV memory per decoding strategy; KV memory alone when timing is
 * false (accounting-only points, whose times mean nothing). */
void ibex_plot_plan_decoding(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                             size_t nk, bool timing)
{
    /* Output tok/s counts the tokens returned to the user (beam: the returned
     * hypotheses); hypothesis tok/s every sequence-token computed (beam width x steps),
     * the work done, not the speed a user sees. Older results have only decode tok/s,
     * which counts hypotheses. */
    bool have_hyp = false;
    for (size_t i = 0; i < np; i++)
        have_hyp |= isfinite(ibex_report_num(pts[i], "metrics/hypothesis_tok_per_s")) != 0;
    const char *paths[] = {"metrics/output_tok_per_s",
                           have_hyp ? "metrics/hypothesis_tok_per_s" : "metrics/decode_tok_per_s",
                           "kv/peak_reserved"};
    const char *titles[] = {"output tok/s: returned tokens (left)",
                            have_hyp ? "hypothesis tok/s: every sequence-token computed (left)"
                                     : "decode tok/s, every sequence-token computed (left)",
                            "KV peak reserved MiB (right)"};
    static const double scale[] = {1.0, 1.0, 1.0 / 1048576.0};
    static const bool y2[] = {false, false, true}, y1[] = {false};
    plot *p = timing ? ibex_plot_plan_bars(P, "decoding", "Output speed, work and KV memory per decoding strategy", pts,
                                           np, keys, nk, 3, paths, titles, scale, y2)
                     : ibex_plot_plan_bars(P, "decoding", "KV memory per decoding strategy", pts, np, keys, nk, 1,
                                           paths + 2, titles + 2, scale + 2, y1);
    if (!p)
        return;
    if (timing) {
        snprintf(p->ylabel, sizeof p->ylabel, "tokens/s");
        snprintf(p->y2label, sizeof p->y2label, "KV peak reserved (MiB)");
    } else {
        snprintf(p->ylabel, sizeof p->ylabel, "KV peak reserved (MiB)");
    }
    for (size_t i = 0; i < p->ncat; i++) {
        char a[64], b[64], h[64];
        if (timing)
            ibex_plot_appendf(P, &p->reading, "%s%s: %s output (%s computed), %s peak KV.", p->reading ? " " : "",
                              p->cat[i],
                              ibex_report_fmt_value(ibex_report_num(pts[i], "metrics/output_tok_per_s"), "tok/s", a,
                                                    sizeof a),
                              ibex_report_fmt_value(ibex_report_num(pts[i], paths[1]), "tok/s", h, sizeof h),
                              ibex_report_fmt_bytes(ibex_report_num(pts[i], "kv/peak_reserved"), b, sizeof b));
        else
            ibex_plot_appendf(P, &p->reading, "%s%s: %s peak KV.", p->reading ? " " : "", p->cat[i],
                              ibex_report_fmt_bytes(ibex_report_num(pts[i], "kv/peak_reserved"), b, sizeof b));
    }
    if (timing)
        ibex_plot_appendf(P, &p->reading, " Output tok/s is what a user sees (returned tokens / wall time); the "
                                          "computed rate counts every hypothesis a beam or n > 1 decodes, so a wide beam "
                                          "computes more yet returns less.");
}
