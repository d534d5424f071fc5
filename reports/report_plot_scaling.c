/* report_plot_scaling.c — time against length: prefill time (whole, attention, other
 * ops) and decode ms/step against the prompt length, total time and time per token
 * against the output length, each with power-law fits in the titles and readings. */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Prefill time and decode ms/token against the prompt length. */
void ibex_plot_plan_prompt_scaling(ibex_report_plots *P, const json_t *const *pts, size_t np,
                                const char **keys, size_t nk)
{
    const char *xk = "workload.prompt_tokens";
    char groups[16][256];
    size_t ng = ibex_plot_distinct_groups(pts, np, keys, nk, xk, groups, 16);

    /* Prefill: whole, attention and the other ops per group. */
    plot *p = ibex_plot_new(P, "prefill_scaling", "Prefill time vs prompt length", PLOT_LINES);
    if (!p)
        return;
    snprintf(p->xlabel, sizeof p->xlabel, "prompt tokens");
    snprintf(p->ylabel, sizeof p->ylabel, "time per repetition (s)");
    p->logx = p->logy = true;
    p->logbase = 2;
    p->xtics_data = true; /* a tick at every prompt length run: a log axis over 256..2047 has one decade tick */
    for (size_t g = 0; g < ng; g++) {
        ibex_plot_add_series(P, p, "prefill");
        ibex_plot_add_series(P, p, "attention");
        ibex_plot_add_series(P, p, "other ops");
        if (P->oom)
            return;
        /* Taken after the three additions: ibex_plot_add_series may move the array. */
        series *whole = &p->s[p->ns - 3], *att = &p->s[p->ns - 2], *rest = &p->s[p->ns - 1];
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            ibex_plot_group_label(pts[i], keys, nk, xk, gl, sizeof gl);
            if (strcmp(gl, groups[g]) != 0)
                continue;
            double x = ibex_report_swept_num(pts[i], xk);
            double reps = ibex_plot_point_reps(pts[i]);
            double w = ibex_report_num(pts[i], "metrics/prefill_s");
            if (!isfinite(w))
                w = ibex_plot_ops_ns(pts[i], "prefill", NULL, NULL) * 1e-9 / reps;
            if (isfinite(ibex_report_num(pts[i], "metrics/prefill_s")))
                ibex_plot_push_timed(P, whole, x, pts[i], "prefill_s", 1.0);
            else
                ibex_plot_series_push(P, whole, x, w);
            double a = ibex_plot_ops_ns(pts[i], "prefill", "attention", NULL) * 1e-9 / reps;
            ibex_plot_series_push(P, att, x, a);
            /* the attention op's bar: its own repetitions, else the relative spread of
               the whole prefill (report_noise.c) */
            ibex_report_spread sp;
            if (ibex_report_spread_get(pts[i], "attention_prefill_s", &sp) && sp.n >= 2 && isfinite(sp.lo) &&
                sp.median > 0)
                ibex_plot_series_bar(P, att, a * fmin(sp.lo / sp.median, 1), a * fmax(sp.hi / sp.median, 1));
            ibex_plot_series_push(P, rest, x, ibex_plot_ops_ns(pts[i], "prefill", NULL, "attention") * 1e-9 / reps);
        }
        if (P->oom)
            return;
        /* Titles carry the fit; the reading says the same in words. */
        series *three[3] = {whole, att, rest};
        const char *what[3] = {"prefill", "attention", "other ops"};
        double b[3], r2[3];
        for (int k = 0; k < 3; k++) {
            ibex_plot_series_sort(three[k]);
            b[k] = ibex_plot_fit_b(three[k], &r2[k]);
            char t[512];
            if (isfinite(b[k]))
                snprintf(t, sizeof t, "%s%s%s  n^%.2f (R² %.3f)", what[k], groups[g][0] ? " " : "", groups[g],
                         b[k], r2[k]);
            else
                snprintf(t, sizeof t, "%s%s%s", what[k], groups[g][0] ? " " : "", groups[g]);
            free(three[k]->title);
            three[k]->title = ibex_plot_dup_str(P, t);
        }
        if (whole->n >= 2 || att->n >= 2) {
            const series *ref = whole->n >= 2 ? whole : att;
            if (groups[g][0])
                ibex_plot_appendf(P, &p->reading, "%s%s: prefill time", p->reading ? " " : "", groups[g]);
            else
                ibex_plot_appendf(P, &p->reading, "%sPrefill time", p->reading ? " " : "");
            if (isfinite(b[0]))
                ibex_plot_appendf(P, &p->reading, " grows as n^%.2f (R² %.3f) over %.0f..%.0f prompt tokens", b[0], r2[0],
                        ref->x[0], ref->x[ref->n - 1]);
            else
                ibex_plot_appendf(P, &p->reading, " could not be fitted over %.0f..%.0f prompt tokens", ref->x[0],
                        ref->x[ref->n - 1]);
            if (isfinite(b[1]))
                ibex_plot_appendf(P, &p->reading, "; attention alone as n^%.2f (R² %.3f)", b[1], r2[1]);
            if (isfinite(b[2]))
                ibex_plot_appendf(P, &p->reading, ", the other ops as n^%.2f (R² %.3f)", b[2], r2[2]);
            double a_last = ibex_plot_series_y_at_max_x(att), r_last = ibex_plot_series_y_at_max_x(rest);
            if (att->n && rest->n && att->x[att->n - 1] == rest->x[rest->n - 1] && a_last + r_last > 0)
                ibex_plot_appendf(P, &p->reading, ". At %.0f tokens attention is %.1f%% of the prefill op time",
                        att->x[att->n - 1], 100.0 * a_last / (a_last + r_last));
            ibex_plot_appendf(P, &p->reading, ".");
        }
    }
    /* n and n² through the first prefill point: quadratic attention shows as a curve
       parallel to n², linear ops as one parallel to n */
    if (!P->oom && p->ns >= 1 && p->s[0].n >= 2) {
        ibex_plot_add_slopes(P, p, 0);
        ibex_plot_appendf(P, &p->reading, "%sGrey dotted lines: slopes n and n² through the first prefill point, for "
                                          "reference. Error bars: the spread of the repetitions.",
                          p->reading ? " " : "");
    }
    if (!ibex_plot_prune_series(P, p, 1) || P->oom)
        goto decode;
    if (!p->reading)
        ibex_plot_appendf(P, &p->reading, "Too few points to fit a power law (at least 2 prompt lengths are needed).");
    if (!P->oom)
        ibex_plot_appendf(P, &p->reading,
                " An exponent of 2 means the time quadruples when the prompt doubles (quadratic attention); "
                "1 means linear (matmuls, norms).");

decode:
    if (P->oom)
        return;
    p = ibex_plot_new(P, "decode_vs_prompt", "Decode time per step vs prompt length", PLOT_LINES);
    if (!p)
        return;
    snprintf(p->xlabel, sizeof p->xlabel, "prompt tokens");
    snprintf(p->ylabel, sizeof p->ylabel, "decode ms per step (one token per running request)");
    p->logx = p->logy = true;
    p->logbase = 2;
    for (size_t g = 0; g < ng; g++) {
        series *s = ibex_plot_add_series(P, p, groups[g][0] ? groups[g] : "decode");
        if (P->oom)
            return;
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            ibex_plot_group_label(pts[i], keys, nk, xk, gl, sizeof gl);
            if (strcmp(gl, groups[g]) == 0)
                ibex_plot_push_timed(P, s, ibex_report_swept_num(pts[i], xk), pts[i], "decode_ms_per_token", 1.0);
        }
        ibex_plot_series_sort(s);
        if (s->n == 0)
            continue;
        double r2, b = ibex_plot_fit_b(s, &r2);
        char t[512];
        if (isfinite(b)) {
            snprintf(t, sizeof t, "%s  n^%.2f (R² %.3f)", s->title, b, r2);
            free(s->title);
            s->title = ibex_plot_dup_str(P, t);
        }
        ibex_plot_appendf(P, &p->reading, "%s%s%s%.3g ms per decode step at %.0f prompt tokens", p->reading ? " " : "",
                groups[g], groups[g][0] ? ": " : "", s->y[0], s->x[0]);
        if (s->n >= 2) {
            ibex_plot_appendf(P, &p->reading, ", %.3g ms at %.0f", s->y[s->n - 1], s->x[s->n - 1]);
            if (s->y[0] > 0 && s->x[0] > 0)
                ibex_plot_appendf(P, &p->reading, " (x%.2f for a x%.2f longer prompt", s->y[s->n - 1] / s->y[0],
                        s->x[s->n - 1] / s->x[0]);
            if (isfinite(b))
                ibex_plot_appendf(P, &p->reading, "; n^%.2f, R² %.3f", b, r2);
            if (s->y[0] > 0 && s->x[0] > 0)
                ibex_plot_appendf(P, &p->reading, ")");
        }
        ibex_plot_appendf(P, &p->reading, ".");
    }
    if (!ibex_plot_prune_series(P, p, 1) || P->oom)
        return;
    /* The metric is per step: say how many tokens a step makes when every point agrees. */
    double batch = ibex_report_num(pts[0], "params/batch");
    for (size_t i = 1; i < np && isfinite(batch); i++)
        if (ibex_report_num(pts[i], "params/batch") != batch)
            batch = NAN;
    char *head = NULL;
    ibex_plot_appendf(P, &head, "Median time of one decode step (decode_s / decode steps");
    if (isfinite(batch) && batch == 1)
        ibex_plot_appendf(P, &head, "; batch 1, so one step is one token");
    else if (isfinite(batch))
        ibex_plot_appendf(P, &head, "; up to %.0f requests per batch, each step makes one token for each running request",
                batch);
    ibex_plot_appendf(P, &head, ") against the prompt length, which sets the context every step attends over. %s",
            p->reading ? p->reading : "");
    ibex_plot_appendf(P, &head, " A step reads every weight once (independent of the context) and every cached K and V "
                      "(linear in the context): an exponent near 0 means the weight reads dominate, near 1 "
                      "that attention over the KV cache does.");
    if (P->oom) {
        free(head);
        return;
    }
    free(p->reading);
    p->reading = head;
}

/* Total time and time per generated token against the number of output tokens, one
 * series per value of the other swept keys, with power-law fits: without a KV cache
 * (policy none) token k reruns the model over all earlier tokens, so the total grows
 * ~n^2; with one it grows ~n. */
void ibex_plot_plan_output_scaling(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                                size_t nk)
{
    enum { MAXG = 16 };
    const char *xk = "workload.output_tokens";
    char groups[MAXG][256];
    size_t ng = ibex_plot_distinct_groups(pts, np, keys, nk, xk, groups, MAXG);
    /* A short name per group for ratios: the policy alone when only it differs. */
    char gname[MAXG][256];
    int none_g = -1;
    for (size_t g = 0; g < ng; g++) {
        const char *pfx = "kv.policy=";
        bool only_policy = strncmp(groups[g], pfx, strlen(pfx)) == 0 && !strchr(groups[g], ' ');
        snprintf(gname[g], sizeof gname[0], "%s", only_policy ? groups[g] + strlen(pfx) : groups[g]);
        bool all_none = true, any = false;
        for (size_t i = 0; i < np; i++) {
            char gl[256];
            ibex_plot_group_label(pts[i], keys, nk, xk, gl, sizeof gl);
            if (strcmp(gl, groups[g]) == 0) {
                any = true;
                all_none &= ibex_plot_policy_is_none(pts[i]);
            }
        }
        if (any && all_none && none_g < 0)
            none_g = (int)g;
    }

    for (int which = 0; which < 2 && !P->oom; which++) {
        bool total = which == 0;
        plot *p = total ? ibex_plot_new(P, "total_time_vs_output", "Total time vs output length (log-log)", PLOT_LINES)
                        : ibex_plot_new(P, "token_time_vs_output", "Time per generated token vs output length",
                                   PLOT_LINES);
        if (!p)
            return;
        snprintf(p->xlabel, sizeof p->xlabel, "output tokens n");
        snprintf(p->ylabel, sizeof p->ylabel, "%s",
                 total ? "wall time per repetition (s)" : "ms per generated token (TPOT p50)");
        p->logx = p->logy = true;
        p->logbase = 2;
        double b[MAXG], r2[MAXG];
        for (size_t g = 0; g < ng; g++) {
            series *s = ibex_plot_add_series(P, p, groups[g][0] ? groups[g] : (total ? "total" : "per token"));
            if (P->oom)
                return;
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                ibex_plot_group_label(pts[i], keys, nk, xk, gl, sizeof gl);
                if (strcmp(gl, groups[g]) != 0)
                    continue;
                double x = ibex_report_swept_num(pts[i], xk);
                if (total)
                    ibex_plot_push_timed(P, s, x, pts[i], "wall_s", 1.0);
                else if (isfinite(ibex_report_num(pts[i], "metrics/tpot/p50")))
                    ibex_plot_push_timed(P, s, x, pts[i], "tpot_p50", 1e3);
                else
                    ibex_plot_push_timed(P, s, x, pts[i], "decode_ms_per_token", 1.0);
            }
            ibex_plot_series_sort(s);
            b[g] = ibex_plot_fit_b(s, &r2[g]);
            if (isfinite(b[g])) {
                char t[512];
                snprintf(t, sizeof t, "%s  n^%.2f (R² %.3f)", s->title, b[g], r2[g]);
                free(s->title);
                s->title = ibex_plot_dup_str(P, t);
            }
        }
        if (P->oom)
            return;
        /* Readings before pruning, while series g is still group g. */
        char *rd = NULL;
        if (total)
            ibex_plot_appendf(P, &rd, "Median wall time of a repetition against the number of output tokens n, with a "
                            "power-law fit per series.");
        else
            ibex_plot_appendf(P, &rd, "Median time per generated token after the first (TPOT p50) against the number of "
                            "output tokens n.");
        for (size_t g = 0; g < ng; g++) {
            const series *s = &p->s[g];
            if (s->n == 0)
                continue;
            char y0[64], y1[64];
            if (total) {
                ibex_report_fmt_seconds(s->y[0], y0, sizeof y0);
                ibex_report_fmt_seconds(s->y[s->n - 1], y1, sizeof y1);
            } else {
                ibex_report_fmt_seconds(s->y[0] * 1e-3, y0, sizeof y0);
                ibex_report_fmt_seconds(s->y[s->n - 1] * 1e-3, y1, sizeof y1);
            }
            ibex_plot_appendf(P, &rd, " %s%s", groups[g], groups[g][0] ? ": " : "");
            if (total && isfinite(b[g]))
                ibex_plot_appendf(P, &rd, "%s grows as n^%.2f (R² %.3f) over %.0f..%.0f output tokens (%s to %s).",
                        groups[g][0] ? "total time" : "Total time", b[g], r2[g], s->x[0], s->x[s->n - 1], y0, y1);
            else if (s->n >= 2)
                ibex_plot_appendf(P, &rd, "%s at n=%.0f to %s at n=%.0f (x%.2f%s", y0, s->x[0], y1, s->x[s->n - 1],
                        s->y[0] > 0 ? s->y[s->n - 1] / s->y[0] : NAN, isfinite(b[g]) ? "; " : ").");
            else
                ibex_plot_appendf(P, &rd, "%s at n=%.0f.", y0, s->x[0]);
            if (!total && s->n >= 2 && isfinite(b[g]))
                ibex_plot_appendf(P, &rd, "n^%.2f).", b[g]);
        }
        /* Ratios at the largest n every compared series reached. */
        if (ng >= 2) {
            size_t ref = none_g >= 0 ? (size_t)none_g : 0;
            const series *rs = &p->s[ref];
            for (size_t g = 0; g < ng && rs->n; g++) {
                const series *s = &p->s[g];
                if (g == ref || s->n == 0)
                    continue;
                double xmax = NAN, yr = NAN, yo = NAN;
                for (size_t k = 0; k < rs->n; k++)
                    for (size_t m = 0; m < s->n; m++)
                        if (rs->x[k] == s->x[m] && !(rs->x[k] <= xmax)) {
                            xmax = rs->x[k];
                            yr = rs->y[k];
                            yo = s->y[m];
                        }
                if (!isfinite(xmax) || !(yo > 0))
                    continue;
                char a[64], c[64];
                if (total) {
                    ibex_report_fmt_seconds(yr, a, sizeof a);
                    ibex_report_fmt_seconds(yo, c, sizeof c);
                } else {
                    ibex_report_fmt_seconds(yr * 1e-3, a, sizeof a);
                    ibex_report_fmt_seconds(yo * 1e-3, c, sizeof c);
                }
                ibex_plot_appendf(P, &rd, " At n=%.0f: %s %s vs %s %s, %s/%s = x%.2f.", xmax, gname[ref], a, gname[g], c,
                        gname[ref], gname[g], yr / yo);
            }
        }
        if (total)
            ibex_plot_appendf(P, &rd, " An exponent of 2 means the total quadruples when n doubles: without a KV cache "
                            "token k reruns the model over the prompt and all k-1 earlier tokens (nearer 1 while "
                            "the prompt dominates); with a cache each token costs about the same, so the total "
                            "grows as n^1.");
        else
            ibex_plot_appendf(P, &rd, " Without a KV cache the cost of a token grows with the sequence it recomputes; with "
                            "one it stays nearly flat (only attention over the cached K and V grows).");
        if (P->oom) {
            free(rd);
            return;
        }
        p->reading = rd;
        if (total && ng > 0) {
            /* slopes through the no-cache series when there is one, else the first */
            size_t anchor = none_g >= 0 ? (size_t)none_g : 0;
            if (p->s[anchor].n >= 2) {
                ibex_plot_add_slopes(P, p, anchor);
                ibex_plot_appendf(P, &p->reading, " Grey dotted lines: slopes n and n² through the first point of %s, "
                                                  "for reference.",
                                  groups[anchor][0] ? groups[anchor] : "the series");
            }
        }
        if (!ibex_plot_prune_series(P, p, 1))
            continue;
    }
}
