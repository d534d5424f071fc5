/* report_plot_kv.c — KV-cache plots: utilisation, concurrency and peak memory per KV
 * configuration (bars), and exact KV bytes and utilisation against the sequence length
 * for accounting-only sweeps (lines). */
#include "reports/report_plot_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A point's KV configuration: its kv.policy, then every other swept kv.* key
 * ("contiguous kv.max_seq_len=4096"), so that one policy run with two settings reads
 * as two configurations. */
void ibex_plot_kv_config(const json_t *pt, const char **keys, size_t nk, char *buf, size_t n)
{
    char v[128];
    ibex_report_swept_text(pt, "kv.policy", v, sizeof v);
    if (!v[0]) {
        const char *pol = ibex_report_str(pt, "kv/policy");
        snprintf(v, sizeof v, "%s", pol ? pol : "?");
    }
    size_t len = (size_t)snprintf(buf, n, "%s", v);
    for (size_t k = 0; k < nk && len < n; k++) {
        if (strncmp(keys[k], "kv.", 3) != 0 || strcmp(keys[k], "kv.policy") == 0)
            continue;
        ibex_report_swept_text(pt, keys[k], v, sizeof v);
        int w = snprintf(buf + len, n - len, " %s=%s", keys[k], v);
        if (w < 0 || (size_t)w >= n - len) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)w;
    }
}

bool ibex_plot_policy_is_none(const json_t *pt)
{
    const char *pol = ibex_report_str(pt, "params/kv.policy");
    if (!pol)
        pol = ibex_report_str(pt, "kv/policy");
    return pol && strcmp(pol, "none") == 0;
}

/* The utilisation every point of pts has, best first: used / reserved at the step of
 * peak reservation, time-weighted over the steps, or the plain mean over steps (older
 * results); *what names it for labels and readings. */
static const char *util_path(const json_t *const *pts, size_t np, const char **what)
{
    static const char *const paths[] = {"kv/utilisation_at_peak", "kv/utilisation_time_weighted",
                                        "kv/utilisation_mean"};
    static const char *const words[] = {"at peak reservation", "time-weighted", "mean over steps"};
    for (int k = 0; k < 2; k++) {
        size_t have = 0;
        for (size_t i = 0; i < np; i++)
            have += isfinite(ibex_report_num(pts[i], paths[k])) != 0;
        if (have > 0 && have == np) {
            *what = words[k];
            return paths[k];
        }
    }
    *what = words[2];
    return paths[2];
}

/* KV utilisation, concurrency and peak memory per point, the reading aggregated per
 * KV configuration. Points with policy none hold no cache and are left out; nothing
 * is drawn unless at least two configurations remain to compare. */
void ibex_plot_plan_kv(ibex_report_plots *P, const json_t *const *all, size_t nall, const char **keys, size_t nk)
{
    enum { MAXC = 16 };
    const json_t **pts = malloc((nall ? nall : 1) * sizeof *pts);
    if (!pts) {
        P->oom = true;
        return;
    }
    size_t np = 0;
    for (size_t i = 0; i < nall; i++)
        if (!ibex_plot_policy_is_none(all[i]))
            pts[np++] = all[i];
    const char *uwhat;
    const char *upath = util_path(pts, np, &uwhat);
    /* The reading aggregates per configuration: mean utilisation, highest concurrency
     * and largest peak reservation over that configuration's points. */
    char pol[MAXC][192];
    size_t npol = 0;
    double usum[MAXC] = {0}, conc[MAXC], resv[MAXC];
    size_t ucnt[MAXC] = {0};
    for (size_t i = 0; i < np; i++) {
        char v[192];
        ibex_plot_kv_config(pts[i], keys, nk, v, sizeof v);
        size_t j = 0;
        while (j < npol && strcmp(pol[j], v) != 0)
            j++;
        if (j == npol) {
            if (npol == MAXC)
                continue;
            snprintf(pol[npol], sizeof pol[0], "%s", v);
            conc[npol] = resv[npol] = NAN;
            npol++;
        }
        double u = ibex_report_num(pts[i], upath);
        if (isfinite(u)) {
            usum[j] += u;
            ucnt[j]++;
        }
        double c = ibex_report_num(pts[i], "kv/max_concurrent");
        if (isfinite(c) && !(c <= conc[j]))
            conc[j] = c;
        double r = ibex_report_num(pts[i], "kv/peak_reserved");
        if (isfinite(r) && !(r <= resv[j]))
            resv[j] = r;
    }
    if (npol < 2) {
        free(pts);
        return;
    }

    const char *u_paths[] = {upath, "kv/max_concurrent"};
    char ut[96];
    snprintf(ut, sizeof ut, "KV utilisation %s (%%, left)", uwhat);
    const char *u_titles[] = {ut, "max concurrent requests (right)"};
    static const double u_scale[] = {100.0, 1.0};
    static const bool u_y2[] = {false, true};
    plot *p = ibex_plot_plan_bars(P, "kv_utilisation", "KV utilisation and concurrency per point", pts, np, keys, nk, 2,
                        u_paths, u_titles, u_scale, u_y2);
    if (p) {
        snprintf(p->ylabel, sizeof p->ylabel, "utilisation %s, used/reserved (%%)", uwhat);
        snprintf(p->y2label, sizeof p->y2label, "max concurrent requests");
    }
    char *reading = NULL;
    bool any_u = false;
    for (size_t j = 0; j < npol; j++)
        any_u |= ucnt[j] > 0;
    if (any_u) {
        size_t shown = 0;
        for (size_t j = 0; j < npol; j++) {
            if (!ucnt[j])
                continue;
            double pct = 100.0 * usum[j] / (double)ucnt[j];
            if (shown == 0)
                ibex_plot_appendf(P, &reading, "%s keeps %.1f%% of reserved KV in use on average", pol[j], pct);
            else
                ibex_plot_appendf(P, &reading, "%s%.1f%% for %s", shown == 1 ? " vs " : ", ", pct, pol[j]);
            shown++;
        }
        ibex_plot_appendf(P, &reading, " (utilisation %s, averaged over each configuration's points).", uwhat);
    }
    bool any_c = false;
    for (size_t j = 0; j < npol; j++)
        any_c |= isfinite(conc[j]) != 0;
    if (any_c) {
        ibex_plot_appendf(P, &reading, "%sHighest concurrency:", reading ? " " : "");
        for (size_t j = 0; j < npol; j++)
            if (isfinite(conc[j]))
                ibex_plot_appendf(P, &reading, " %s %.0f;", pol[j], conc[j]);
        if (reading)
            reading[strlen(reading) - 1] = '.';
    }
    bool any_r = false;
    for (size_t j = 0; j < npol; j++)
        any_r |= isfinite(resv[j]) != 0;
    if (any_r) {
        ibex_plot_appendf(P, &reading, "%sLargest peak KV reservation:", reading ? " " : "");
        for (size_t j = 0; j < npol; j++)
            if (isfinite(resv[j])) {
                char b[64];
                ibex_plot_appendf(P, &reading, " %s %s;", pol[j], ibex_report_fmt_bytes(resv[j], b, sizeof b));
            }
        if (reading)
            reading[strlen(reading) - 1] = '.';
    }
    if (P->oom) {
        free(reading);
        free(pts);
        return;
    }
    if (p)
        p->reading = reading ? ibex_plot_dup_str(P, reading) : ibex_plot_dup_str(P, "No KV measurements in these points.");

    /* GiB once the largest reservation reaches 4 GiB, else MiB. */
    double rmax = 0;
    for (size_t j = 0; j < npol; j++)
        if (isfinite(resv[j]))
            rmax = fmax(rmax, resv[j]);
    double pool_b = ibex_report_num(pts[0], "kv/pool_bytes");
    if (isfinite(pool_b))
        rmax = fmax(rmax, pool_b); /* the budget line shares the axis */
    bool gib = rmax >= 4.0 * 1073741824.0;
    static const char *m_paths[] = {"kv/peak_reserved", "kv/peak_used"};
    const char *m_titles[] = {gib ? "peak reserved (GiB)" : "peak reserved (MiB)",
                              gib ? "peak used (GiB)" : "peak used (MiB)"};
    const double unit = gib ? 1073741824.0 : 1048576.0, m_scale[] = {1.0 / unit, 1.0 / unit};
    static const bool m_y2[] = {false, false};
    plot *q = ibex_plot_plan_bars(P, "kv_memory", "KV peak reserved and used per point", pts, np, keys, nk, 2, m_paths,
                        m_titles, m_scale, m_y2);
    if (q) {
        snprintf(q->ylabel, sizeof q->ylabel, "%s", gib ? "GiB" : "MiB");
        double pool = ibex_report_num(pts[0], "kv/pool_bytes");
        if (isfinite(pool) && pool > 0) {
            char pb[64];
            q->hline = pool / unit;
            snprintf(q->hline_title, sizeof q->hline_title, "KV budget (pool) %s",
                     ibex_report_fmt_bytes(pool, pb, sizeof pb));
        }
        for (size_t i = 0; i < q->ncat; i++) {
            double r = ibex_report_num(pts[i], "kv/peak_reserved"), u = ibex_report_num(pts[i], "kv/peak_used");
            char a[64], b[64];
            if (!isfinite(r))
                continue;
            ibex_plot_appendf(P, &q->reading, "%s%s: peak reserved %s, peak used %s", q->reading ? " " : "", q->cat[i],
                    ibex_report_fmt_bytes(r, a, sizeof a), ibex_report_fmt_bytes(u, b, sizeof b));
            if (isfinite(u) && r > 0)
                ibex_plot_appendf(P, &q->reading, " (%.1f%% less)", 100.0 * (r - u) / r);
            ibex_plot_appendf(P, &q->reading, ".");
        }
        ibex_plot_appendf(P, &q->reading, "%sThe gap between the bars is reserved but unused memory (internal "
                                "fragmentation and over-reservation).",
                q->reading ? " " : "");
    }
    free(reading);
    free(pts);
}

/* The x of the KV-vs-length plot: prompt + output tokens, or the prompt alone. */
static double seq_x(const json_t *pt, bool with_out)
{
    return ibex_plot_point_tokens(pt, "workload.prompt_tokens") + (with_out ? ibex_plot_point_tokens(pt, "workload.output_tokens") : 0);
}

static bool is_length_key(const char *k)
{
    return strcmp(k, "workload.prompt_tokens") == 0 || strcmp(k, "workload.output_tokens") == 0;
}

static bool is_length_or_kv_key(const char *k) { return is_length_key(k) || strncmp(k, "kv.", 3) == 0; }

/* KV memory (peak reserved and used, GiB) against the sequence length, prompt +
 * output tokens, one solid (reserved) and one dashed (used) line per value of the
 * other swept keys (policy, batch). Made for accounting-only points, whose byte counts
 * are exact and whose times mean nothing. Returns whether the plot was made. */
bool ibex_plot_plan_kv_vs_seq(ibex_report_plots *P, const json_t *const *pts, size_t np, const char **keys,
                           size_t nk)
{
    enum { MAXG = 16 };
    for (size_t i = 0; i < np; i++)
        if (!isfinite(ibex_plot_point_tokens(pts[i], "workload.prompt_tokens")))
            return false;
    bool with_out = true;
    for (size_t i = 0; i < np; i++)
        with_out &= isfinite(ibex_plot_point_tokens(pts[i], "workload.output_tokens")) != 0;
    /* One group per value of the other swept keys; its colour follows the keys that
     * are not kv.* (batch), its point type the KV configuration, so lines of two
     * policies that coincide still show both markers. */
    static const int point_types[] = {6, 4, 8, 10, 12, 14, 1, 2};
    char groups[MAXG][256], rests[MAXG][256], cfgs[MAXG][192];
    int lc[MAXG], ptype[MAXG];
    size_t ng = 0, nr = 0, ncf = 0;
    for (size_t i = 0; i < np; i++) {
        char g[256];
        ibex_plot_short_group_label(pts[i], keys, nk, is_length_key, g, sizeof g);
        size_t j = 0;
        while (j < ng && strcmp(groups[j], g) != 0)
            j++;
        if (j < ng || ng == MAXG)
            continue;
        snprintf(groups[ng], 256, "%s", g);
        char r[256], c[192];
        ibex_plot_short_group_label(pts[i], keys, nk, is_length_or_kv_key, r, sizeof r);
        ibex_plot_kv_config(pts[i], keys, nk, c, sizeof c);
        size_t k = 0;
        while (k < nr && strcmp(rests[k], r) != 0)
            k++;
        if (k == nr)
            snprintf(rests[nr++], 256, "%s", r);
        lc[ng] = (int)k + 1;
        k = 0;
        while (k < ncf && strcmp(cfgs[k], c) != 0)
            k++;
        if (k == ncf)
            snprintf(cfgs[ncf++], sizeof cfgs[0], "%s", c);
        ptype[ng] = point_types[k % (sizeof point_types / sizeof point_types[0])];
        ng++;
    }
    plot *p = ibex_plot_new(P, "kv_memory_vs_length", "KV cache memory vs sequence length", PLOT_LINES);
    if (!p)
        return false;
    snprintf(p->xlabel, sizeof p->xlabel, "%s",
             with_out ? "sequence length: prompt + output tokens" : "prompt tokens");
    snprintf(p->ylabel, sizeof p->ylabel, "KV bytes at peak (GiB)");
    p->logx = p->logy = true;
    p->logbase = 2;
    p->xtics_data = true;
    /* Every "reserved" line first, then every "used" line, thicker and dashed, on top:
     * a configuration whose used bytes equal another's reserved bytes (contiguous used
     * and paged reserved) must not vanish under it. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t g = 0; g < ng; g++) {
            char t[300];
            snprintf(t, sizeof t, "%s%s%s", groups[g], groups[g][0] ? " " : "", pass ? "used" : "reserved");
            series *s = ibex_plot_add_series(P, p, t);
            if (!s)
                return false;
            s->lc = lc[g];
            s->pt = ptype[g];
            if (pass) {
                s->dashed = true;
                s->lw = 2;
            }
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                ibex_plot_short_group_label(pts[i], keys, nk, is_length_key, gl, sizeof gl);
                if (strcmp(gl, groups[g]) != 0)
                    continue;
                ibex_plot_series_push(P, s, seq_x(pts[i], with_out),
                                      ibex_report_num(pts[i], pass ? "kv/peak_used" : "kv/peak_reserved") / 1073741824.0);
            }
        }
    /* the budget every configuration draws from, as a flat reference line */
    double pool = ibex_report_num(pts[0], "kv/pool_bytes");
    if (isfinite(pool) && pool > 0 && !P->oom) {
        double xlo = INFINITY, xhi = -INFINITY;
        for (size_t i = 0; i < np; i++) {
            double x = seq_x(pts[i], with_out);
            if (isfinite(x)) {
                xlo = fmin(xlo, x);
                xhi = fmax(xhi, x);
            }
        }
        char bt[128], b[64];
        snprintf(bt, sizeof bt, "KV budget (pool) %s", ibex_report_fmt_bytes(pool, b, sizeof b));
        series *s = ibex_plot_add_series(P, p, bt);
        if (s && isfinite(xlo)) {
            s->reference = true;
            s->lw = 2;
            ibex_plot_series_push(P, s, xlo, pool / 1073741824.0);
            ibex_plot_series_push(P, s, xhi, pool / 1073741824.0);
        }
    }
    if (!ibex_plot_prune_series(P, p, 1) || P->oom)
        return false;
    size_t mem_plot = P->n - 1;

    /* Utilisation against the same lengths, read per KV configuration. */
    const char *uwhat;
    const char *upath = util_path(pts, np, &uwhat);
    plot *q = ibex_plot_new(P, "kv_utilisation_vs_length", "KV utilisation vs sequence length", PLOT_LINES);
    if (q) {
        snprintf(q->xlabel, sizeof q->xlabel, "%s", p->xlabel);
        snprintf(q->ylabel, sizeof q->ylabel, "KV utilisation %s, used / reserved (%%)", uwhat);
        q->logx = true;
        q->logbase = 2;
        q->xtics_data = true;
        q->ymax = 102;
        for (size_t g = 0; g < ng && !P->oom; g++) {
            series *u = ibex_plot_add_series(P, q, groups[g][0] ? groups[g] : "utilisation");
            if (!u)
                break;
            u->lc = lc[g];
            u->pt = ptype[g];
            for (size_t i = 0; i < np; i++) {
                char gl[256];
                ibex_plot_short_group_label(pts[i], keys, nk, is_length_key, gl, sizeof gl);
                if (strcmp(gl, groups[g]) == 0)
                    ibex_plot_series_push(P, u, seq_x(pts[i], with_out), 100.0 * ibex_report_num(pts[i], upath));
            }
        }
        if (!P->oom && ibex_plot_prune_series(P, q, 1)) {
            ibex_plot_appendf(P, &q->reading, "Used / reserved KV bytes, %s, per point (accounting only, exact).",
                              uwhat);
            for (size_t c = 0; c < ncf; c++) {
                double sum = 0, lo = INFINITY, hi = -INFINITY, conc = NAN;
                size_t cnt = 0;
                for (size_t i = 0; i < np; i++) {
                    char ci[192];
                    ibex_plot_kv_config(pts[i], keys, nk, ci, sizeof ci);
                    if (strcmp(ci, cfgs[c]) != 0)
                        continue;
                    double u = ibex_report_num(pts[i], upath);
                    if (isfinite(u)) {
                        sum += u;
                        cnt++;
                        lo = fmin(lo, u);
                        hi = fmax(hi, u);
                    }
                    double m = ibex_report_num(pts[i], "kv/max_concurrent");
                    if (isfinite(m) && !(m <= conc))
                        conc = m;
                }
                if (cnt)
                    ibex_plot_appendf(P, &q->reading, " %s: %.1f%% on average (%.1f%% to %.1f%%)", cfgs[c],
                            100.0 * sum / (double)cnt, 100.0 * lo, 100.0 * hi);
                if (cnt && isfinite(conc))
                    ibex_plot_appendf(P, &q->reading, ", up to %.0f requests at once", conc);
                if (cnt)
                    ibex_plot_appendf(P, &q->reading, ".");
            }
        }
    }
    if (P->oom)
        return false;
    p = &P->v[mem_plot]; /* ibex_plot_new may have moved the array */

    char a[64], b[64];
    ibex_plot_appendf(P, &p->reading,
            "Peak KV bytes of the whole run against the sequence length%s; accounting only, so the bytes are "
            "exact. Solid lines: reserved (kv.peak_reserved); dashed: holding tokens (kv.peak_used).",
            with_out ? " (prompt + output tokens)" : "");
    double bpt = ibex_report_num(pts[0], "model/kv_bytes_per_token");
    const char *dt = ibex_report_str(pts[0], "params/kv.dtype");
    if (isfinite(bpt))
        ibex_plot_appendf(P, &p->reading, " Every token holds exactly %.0f bytes (%s) of K and V (model.kv_bytes_per_token%s%s).",
                bpt, ibex_report_fmt_bytes(bpt, a, sizeof a), dt ? ", kv.dtype " : "", dt ? dt : "");

    /* The headline: the largest batch, at the longest length every configuration of
     * that batch reached. */
    double bmax = NAN;
    for (size_t i = 0; i < np; i++) {
        double bt = ibex_report_num(pts[i], "params/batch");
        if (isfinite(bt) && !(bt <= bmax))
            bmax = bt;
    }
    char cfg[MAXG][192];
    size_t nc = 0;
    for (size_t i = 0; i < np; i++) {
        if (isfinite(bmax) && ibex_report_num(pts[i], "params/batch") != bmax)
            continue;
        char c[192];
        ibex_plot_kv_config(pts[i], keys, nk, c, sizeof c);
        size_t j = 0;
        while (j < nc && strcmp(cfg[j], c) != 0)
            j++;
        if (j == nc && nc < MAXG)
            snprintf(cfg[nc++], sizeof cfg[0], "%s", c);
    }
    double xbest = NAN;
    for (size_t i = 0; i < np; i++) {
        if (isfinite(bmax) && ibex_report_num(pts[i], "params/batch") != bmax)
            continue;
        double x = seq_x(pts[i], with_out);
        if (isfinite(xbest) && x <= xbest)
            continue;
        /* Every configuration of this batch has a point at x? */
        size_t have = 0;
        for (size_t c = 0; c < nc; c++)
            for (size_t k = 0; k < np; k++) {
                char ck[192];
                ibex_plot_kv_config(pts[k], keys, nk, ck, sizeof ck);
                double xk = seq_x(pts[k], with_out);
                if (strcmp(ck, cfg[c]) == 0 && xk == x &&
                    (!isfinite(bmax) || ibex_report_num(pts[k], "params/batch") == bmax)) {
                    have++;
                    break;
                }
            }
        if (have == nc)
            xbest = x;
    }
    if (isfinite(xbest)) {
        bool first = true;
        for (size_t c = 0; c < nc; c++)
            for (size_t k = 0; k < np; k++) {
                char ck[192];
                ibex_plot_kv_config(pts[k], keys, nk, ck, sizeof ck);
                double pr = ibex_plot_point_tokens(pts[k], "workload.prompt_tokens"),
                       out = with_out ? ibex_plot_point_tokens(pts[k], "workload.output_tokens") : 0;
                if (strcmp(ck, cfg[c]) != 0 || pr + out != xbest ||
                    (isfinite(bmax) && ibex_report_num(pts[k], "params/batch") != bmax))
                    continue;
                double res = ibex_report_num(pts[k], "kv/peak_reserved"),
                       used = ibex_report_num(pts[k], "kv/peak_used");
                if (first) {
                    if (with_out)
                        ibex_plot_appendf(P, &p->reading, " At %.0f+%.0f tokens", pr, out);
                    else
                        ibex_plot_appendf(P, &p->reading, " At %.0f prompt tokens", pr);
                    if (isfinite(bmax))
                        ibex_plot_appendf(P, &p->reading, " and batch %.0f", bmax);
                    ibex_plot_appendf(P, &p->reading, ", ");
                } else {
                    ibex_plot_appendf(P, &p->reading, "; ");
                }
                ibex_plot_appendf(P, &p->reading, "%s reserves %s (%.0f bytes", cfg[c], ibex_report_fmt_bytes(res, a, sizeof a),
                        res);
                double seqs = isfinite(bmax) ? bmax : 1;
                if (isfinite(bpt) && bpt > 0 && xbest > 0) {
                    double ideal = seqs * xbest * bpt;
                    if (res == ideal)
                        ibex_plot_appendf(P, &p->reading, " = %.0f x %.0f x %.0f", seqs, xbest, bpt);
                    else
                        ibex_plot_appendf(P, &p->reading, ", x%.3f of %.0f x %.0f x %.0f", res / ideal, seqs, xbest, bpt);
                }
                ibex_plot_appendf(P, &p->reading, ") and uses %s", ibex_report_fmt_bytes(used, b, sizeof b));
                first = false;
                break;
            }
        double pool_r = ibex_report_num(pts[0], "kv/pool_bytes");
        if (!first && isfinite(pool_r))
            ibex_plot_appendf(P, &p->reading, ", of the %s pool", ibex_report_fmt_bytes(pool_r, a, sizeof a));
        if (!first)
            ibex_plot_appendf(P, &p->reading, ".");
    }

    /* Policies compared point by point: the same length and other keys. */
    char ref[192] = "";
    double lo[MAXG], hi[MAXG];
    char other[MAXG][192];
    size_t no = 0;
    for (size_t i = 0; i < np; i++) {
        char ci[192];
        ibex_plot_kv_config(pts[i], keys, nk, ci, sizeof ci);
        if (!ref[0])
            snprintf(ref, sizeof ref, "%s", ci);
        if (strcmp(ci, ref) == 0)
            continue;
        char ri[256];
        ibex_plot_short_group_label(pts[i], keys, nk, is_length_or_kv_key, ri, sizeof ri);
        double xi = seq_x(pts[i], with_out);
        for (size_t k = 0; k < np; k++) {
            char ck[192], rk[256];
            ibex_plot_kv_config(pts[k], keys, nk, ck, sizeof ck);
            ibex_plot_short_group_label(pts[k], keys, nk, is_length_or_kv_key, rk, sizeof rk);
            double xk = seq_x(pts[k], with_out);
            double rr = ibex_report_num(pts[k], "kv/peak_reserved"), ro = ibex_report_num(pts[i], "kv/peak_reserved");
            if (strcmp(ck, ref) != 0 || strcmp(rk, ri) != 0 || !(xk == xi) || !(rr > 0) || !isfinite(ro))
                continue;
            size_t j = 0;
            while (j < no && strcmp(other[j], ci) != 0)
                j++;
            if (j == no) {
                if (no == MAXG)
                    break;
                snprintf(other[no], sizeof other[0], "%s", ci);
                lo[no] = INFINITY;
                hi[no] = -INFINITY;
                no++;
            }
            lo[j] = fmin(lo[j], ro / rr);
            hi[j] = fmax(hi[j], ro / rr);
            break;
        }
    }
    for (size_t j = 0; j < no; j++) {
        if (lo[j] == 1 && hi[j] == 1)
            ibex_plot_appendf(P, &p->reading, " At every length and batch both ran, %s and %s reserve exactly the same bytes.",
                    ref, other[j]);
        else if (lo[j] == hi[j])
            ibex_plot_appendf(P, &p->reading, " At every length and batch both ran, %s reserves x%.3f what %s reserves.",
                    other[j], lo[j], ref);
        else
            ibex_plot_appendf(P, &p->reading, " At the same length and batch, %s reserves x%.3f to x%.3f what %s reserves.",
                    other[j], lo[j], hi[j], ref);
    }
    return !P->oom;
}
