/* report_claims.c — the seed-claims report (claims.h): each claim of the article set
 * beside what the suite's scenarios measured, with a verdict and by how much.
 *
 * Design notes:
 *   1. Every claim is one function reading only results.json values (through
 *      ibex_report_num/str) and the article's own numbers. A missing scenario, a
 *      failed point or an absent key ends in "not measured: <why>", never a guess.
 *   2. Times of a point are the medians over its timed repetitions (metrics.*); op
 *      times (ops.prefill.OP.ns) are totals over the repetitions, so they are divided
 *      by metrics.repetitions.
 *   3. Exponents come from ibex_report_power_fit (least squares in log-log space), so
 *      this report and the plots of the same run agree. */
#include "reports/claims.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reports/reports.h"

/* The article's numbers (the only constants here). */
#define ART_KV_BYTES 1.6e9         /* "KV Cache 占用显存高达 1.6GB" */
#define ART_KV_SHARE 0.60          /* "占了总显存的 60% 以上" */
#define ART_UTIL_BEFORE 0.30       /* "从 30% 提升到 70%+" */
#define ART_UTIL_AFTER 0.70
#define ART_INT8_SAVING 0.50
#define ART_INT4_SAVING 0.75
#define ART_INT8_SPEEDUP 0.20
#define ART_INT4_SPEEDUP 0.40
#define ART_F16_7B_BYTES 14e9      /* "7B 模型从 14GB → 6GB" */
#define ART_SMALL_7B_BYTES 6e9
#define ART_CTX_TOKENS 2048
#define ART_LAYERS 32

/* Llama-2-13B's published shape, for the model whose KV cache the article's 1.6 GB
 * describes (2 · 40 · 40 · 128 · 2 B · 2048 tokens = 1,677,721,600 B). */
#define L2_13B_LAYERS 40
#define L2_13B_KV_HEADS 40
#define L2_13B_HEAD_DIM 128

/* ---------------------------------------------------------------- roles */

enum { R_NAIVE, R_DECODING, R_KV7B, R_KVMEM, R_QUAD, R_BATCH, R_PAGED, R_QUANT, R_COUNT };
static const char *const k_roles[R_COUNT] = {"naive_vs_cache", "decoding", "kv_7b",         "kv_memory",
                                             "quadratic",      "batching", "naive_vs_paged", "quantization"};

typedef struct cl_src {
    const char *name; /* the sub's name, NULL when none matched */
    json_t *res;      /* its results (owned), NULL when not measured */
    char why[700];    /* why res is NULL */
} cl_src;

typedef struct cl_ctx {
    cl_src src[R_COUNT];
} cl_ctx;

static bool role_matches(const char *name, const char *role) {
    size_t n = strlen(name), r = strlen(role);
    if (strcmp(name, role) == 0) return true;
    return n > r + 1 && name[n - r - 1] == '_' && strcmp(name + n - r, role) == 0;
}

/* ---------------------------------------------------------------- text helpers */

static void app(char *buf, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Appends to buf (always terminated; silently truncated at cap). */
static void app(char *buf, size_t cap, const char *fmt, ...) {
    size_t l = strlen(buf);
    if (l + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + l, cap - l, fmt, ap);
    va_end(ap);
}

typedef struct fbuf {
    char s[48];
} fbuf;

static fbuf fsec(double s) {
    fbuf b;
    ibex_report_fmt_seconds(s, b.s, sizeof b.s);
    return b;
}
static fbuf fbytes(double v) {
    fbuf b;
    ibex_report_fmt_bytes(v, b.s, sizeof b.s);
    return b;
}
/* Bytes in decimal GB with the binary value beside: "1.07 GB (1.00 GiB)". */
static fbuf fgb(double v) {
    fbuf b;
    snprintf(b.s, sizeof b.s, "%.2f GB (%.2f GiB)", v / 1e9, v / 1073741824.0);
    return b;
}
static fbuf fnum(double v) {
    fbuf b;
    if (!isfinite(v)) snprintf(b.s, sizeof b.s, "-");
    else snprintf(b.s, sizeof b.s, "%.3g", v);
    return b;
}

/* ---------------------------------------------------------------- rows */

static ibex_claim_row *row_new(ibex_claims *c, const char *id, const char *claim, const char *source) {
    ibex_claim_row *r = &c->rows[c->n_rows++];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->claim, sizeof r->claim, "%s", claim);
    snprintf(r->source, sizeof r->source, "%s", source ? source : "-");
    r->verdict = IBEX_CLAIM_NOT_MEASURED;
    return r;
}

static void num(ibex_claim_row *r, const char *name, double v) {
    if (r->n_nums >= IBEX_CLAIMS_MAX_NUMS) return;
    snprintf(r->nums[r->n_nums].name, sizeof r->nums[r->n_nums].name, "%s", name);
    r->nums[r->n_nums++].value = v;
}

static void not_measured(ibex_claim_row *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void not_measured(ibex_claim_row *r, const char *fmt, ...) {
    char why[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    r->verdict = IBEX_CLAIM_NOT_MEASURED;
    snprintf(r->measured, sizeof r->measured, "not measured: %s", why);
    snprintf(r->assessment, sizeof r->assessment, "cannot be checked without this measurement");
}

/* Records r as not measured and leaves the claim function. */
#define NM_RETURN(...)                                                                                                 \
    do {                                                                                                               \
        not_measured(__VA_ARGS__);                                                                                     \
        return;                                                                                                        \
    } while (0)

/* ---------------------------------------------------------------- point access */

static bool pt_ok(const json_t *p) {
    const char *st = ibex_report_str(p, "status");
    return st && strcmp(st, "ok") == 0;
}

static const char *pstr(const json_t *p, const char *key) {
    char path[128];
    snprintf(path, sizeof path, "params/%s", key);
    const char *s = ibex_report_str(p, path);
    return s ? s : "";
}

/* A parameter: a number, or a length's fixed "value", else the swept value. */
static double pnum(const json_t *p, const char *key) {
    char path[128];
    snprintf(path, sizeof path, "params/%s", key);
    double v = ibex_report_num(p, path);
    if (isnan(v)) {
        snprintf(path, sizeof path, "params/%s/value", key);
        v = ibex_report_num(p, path);
    }
    if (isnan(v)) v = ibex_report_swept_num(p, key);
    return v;
}

static double reps_of(const json_t *p) {
    double r = ibex_report_num(p, "metrics/repetitions");
    return isfinite(r) && r >= 1 ? r : 1;
}

/* Total time of a point: metrics.wall_s, else prefill_s + decode_s. */
static double total_s(const json_t *p) {
    double t = ibex_report_num(p, "metrics/wall_s");
    if (!isfinite(t) || t <= 0) t = ibex_report_num(p, "metrics/prefill_s") + ibex_report_num(p, "metrics/decode_s");
    return t;
}

static const json_t *points_of(const json_t *res) { return json_object_get(res, "points"); }

/* Number of ok points and of all points. */
static void count_ok(const json_t *res, size_t *ok, size_t *all) {
    *ok = *all = 0;
    const json_t *pts = points_of(res);
    size_t i;
    const json_t *p;
    json_array_foreach(pts, i, p) {
        (*all)++;
        if (pt_ok(p)) (*ok)++;
    }
}

/* The first error message among the points, for "not measured" lines. */
static const char *first_point_error(const json_t *res) {
    const json_t *pts = points_of(res);
    size_t i;
    const json_t *p;
    json_array_foreach(pts, i, p) {
        const char *e = ibex_report_str(p, "error");
        if (e && *e) return e;
    }
    return NULL;
}

/* Sorts x ascending, carrying y and z (z may be NULL). */
static void sort3(double *x, double *y, double *z, size_t n) {
    for (size_t i = 1; i < n; i++) {
        double a = x[i], b = y[i], c = z ? z[i] : 0;
        size_t j = i;
        while (j > 0 && x[j - 1] > a) {
            x[j] = x[j - 1], y[j] = y[j - 1];
            if (z) z[j] = z[j - 1];
            j--;
        }
        x[j] = a, y[j] = b;
        if (z) z[j] = c;
    }
}

/* Index of x == v (within 0.5), or -1. */
static int find_x(const double *x, size_t n, double v) {
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i] - v) < 0.5) return (int)i;
    return -1;
}

#define MAXP 256

/* ---------------------------------------------------------------- noise and quick mode */

/* Whether a scenario ran with --quick (results.json "quick", or scenario.quick). */
static bool res_quick(const json_t *res) {
    return json_is_true(json_object_get(res, "quick")) || json_is_true(ibex_report_get(res, "scenario/quick"));
}

/* A timed figure a verdict rests on: its median and the interval of its repetitions
 * (report_noise.c: the CI of the median when the runner gave one, else the range). */
typedef struct fig {
    double v, lo, hi, cv;
    size_t n;
    bool noisy;
    char what[96];
    char reason[80];
} fig;

static fig fig_of(const json_t *pt, const char *metric, const char *what) {
    fig f;
    memset(&f, 0, sizeof f);
    ibex_report_spread s;
    ibex_report_spread_get(pt, metric, &s);
    f.v = s.median;
    f.lo = isfinite(s.lo) ? fmin(s.lo, s.median) : s.median;
    f.hi = isfinite(s.hi) ? fmax(s.hi, s.median) : s.median;
    f.cv = s.cv;
    f.n = s.n;
    f.noisy = s.noisy;
    snprintf(f.what, sizeof f.what, "%s", what);
    snprintf(f.reason, sizeof f.reason, "%s", s.reason);
    /* A point measured on a busy machine (conditions.busy, the runner's judgement of
     * load and CPU share) drifts with the load between points, which the spread of its
     * own repetitions does not show: comparing it with another point proves nothing. */
    if (json_is_true(ibex_report_get(pt, "conditions/busy"))) {
        f.noisy = true;
        f.cv = NAN;
        f.n = 0;
        const char *w = ibex_report_str(pt, "conditions/warning");
        snprintf(f.reason, sizeof f.reason, "busy machine%s%s", w ? ": " : "", w ? w : "");
    }
    return f;
}

/* A figure with its value and nothing known of its spread (an exact counter, or a
 * total of other figures). */
static fig fig_exact(double v, const char *what) {
    fig f;
    memset(&f, 0, sizeof f);
    f.v = f.lo = f.hi = v;
    f.cv = NAN;
    snprintf(f.what, sizeof f.what, "%s", what);
    return f;
}

typedef ibex_claim_verdict (*judge_fn)(const double *v, const void *ctx);

static const char *vname(ibex_claim_verdict v) { return ibex_claim_verdict_name(v); }

/* The verdict fn gives at the figures' medians, unless it cannot be trusted: any figure
 * noisy or under-sampled (then "inconclusive (noisy: …)"), or a verdict that changes
 * somewhere in the box of the figures' intervals (every corner is tried: the dead zone
 * around each threshold is as wide as the spread measured). r->note says why. */
static ibex_claim_verdict judged(ibex_claim_row *r, const fig *f, int nf, judge_fn fn, const void *ctx) {
    double v[8];
    for (int i = 0; i < nf; i++) v[i] = f[i].v;
    ibex_claim_verdict c = fn(v, ctx);
    int noisy = 0, first = -1;
    for (int i = 0; i < nf; i++)
        if (f[i].noisy) noisy++, first = first < 0 ? i : first;
    if (noisy) {
        const fig *q = &f[first];
        if (q->n > 0 && q->n < 3)
            snprintf(r->note, sizeof r->note, "under-sampled: %s has %zu repetition%s", q->what, q->n,
                     q->n == 1 ? "" : "s");
        else if (isfinite(q->cv) && q->cv > IBEX_REPORT_CV_MAX)
            snprintf(r->note, sizeof r->note, 100 * q->cv < 15 ? "noisy: %s CV %.1f %%" : "noisy: %s CV %.0f %%",
                     q->what, 100 * q->cv); /* 10.4 % must not read as 10 % */
        else
            snprintf(r->note, sizeof r->note, "noisy: %s (%s)", q->what, q->reason[0] ? q->reason : "flagged noisy");
        if (noisy > 1) app(r->note, sizeof r->note, "; %d more figure%s", noisy - 1, noisy > 2 ? "s" : "");
        return IBEX_CLAIM_INCONCLUSIVE;
    }
    for (unsigned corner = 0; corner < (1u << nf); corner++) {
        for (int i = 0; i < nf; i++) v[i] = (corner >> i) & 1 ? f[i].hi : f[i].lo;
        ibex_claim_verdict o = fn(v, ctx);
        if (o != c) {
            snprintf(r->note, sizeof r->note,
                     "the spread of the repetitions straddles a threshold: %s at the medians, %s within the spread", vname(c),
                     vname(o));
            return IBEX_CLAIM_INCONCLUSIVE;
        }
    }
    return c;
}

/* Sets r's verdict to judged(...) and, when that is inconclusive, turns the assessment
 * (written for the medians) into a reading that concludes nothing. */
static void set_verdict(ibex_claim_row *r, ibex_claim_verdict v) {
    r->verdict = v;
    if (v == IBEX_CLAIM_INCONCLUSIVE) {
        char a[sizeof r->assessment];
        snprintf(a, sizeof a, "No verdict (%s). At the medians alone it would read: %s", r->note, r->assessment);
        snprintf(r->assessment, sizeof r->assessment, "%s", a);
    }
}

/* Marks r not judged in quick mode: the run kept too little of the experiment. */
static void not_judged(ibex_claim_row *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void not_judged(ibex_claim_row *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof r->note, fmt, ap);
    va_end(ap);
    r->verdict = IBEX_CLAIM_NOT_JUDGED;
    char a[sizeof r->assessment];
    /* the reading the medians would give is left out: a quick run's numbers are in the
       measured column, but no wording here may read as a verdict */
    snprintf(a, sizeof a, "Not judged in quick mode (%s); run without --quick to judge.", r->note);
    snprintf(r->assessment, sizeof r->assessment, "%s", a);
}

/* A point with the measured figure at x of a sorted series. */
typedef struct xpt {
    double x, t;
    const json_t *p;
} xpt;

static int cmp_xpt(const void *a, const void *b) {
    double x = ((const xpt *)a)->x, y = ((const xpt *)b)->x;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- a: no cache */

typedef struct a_ctx {
    double n0a, n0b, n1a, n1b; /* the two longest output lengths of each policy */
} a_ctx;

/* v: no-cache total at n0a, n0b; cached total at n1a, n1b. Judged on the local
 * exponents between the two longest runs, never on the fit over all of them: the fit
 * is pulled down by the short runs, where costs paid once per step weigh most. */
static ibex_claim_verdict judge_a(const double *v, const void *c) {
    const a_ctx *x = c;
    double l0 = log(v[1] / v[0]) / log(x->n0b / x->n0a), l1 = log(v[3] / v[2]) / log(x->n1b / x->n1a);
    if (l0 >= 1.5 && l0 - l1 >= 0.4) return IBEX_CLAIM_HOLDS;
    if (l0 - l1 >= 0.15) return IBEX_CLAIM_PARTLY;
    return IBEX_CLAIM_WRONG;
}

static void claim_a(ibex_claims *c, const cl_ctx *x) {
    const cl_src *s = &x->src[R_NAIVE];
    ibex_claim_row *r = row_new(c, "a",
                                "Generating text is autoregressive: \"when the 10th character is generated, the model has "
                                "already run full inference 10 times\"; the longer the sequence, the slower",
                                s->name ? s->name : k_roles[R_NAIVE]);
    if (!s->res) NM_RETURN(r, "%s", s->why);
    /* the cached policy: contiguous when present, else the first other one */
    const char *cached = NULL;
    size_t i;
    const json_t *p;
    json_array_foreach(points_of(s->res), i, p) {
        const char *pol = pstr(p, "kv.policy");
        if (!pt_ok(p) || !strcmp(pol, "none")) continue;
        if (!cached || !strcmp(pol, "contiguous")) cached = pol;
    }
    xpt a0[MAXP], a1[MAXP];
    size_t k0 = 0, k1 = 0;
    double prompt = NAN;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p)) continue;
        const char *pol = pstr(p, "kv.policy");
        double n = pnum(p, "workload.output_tokens"), t = total_s(p);
        if (!isfinite(n) || !isfinite(t) || t <= 0) continue;
        prompt = pnum(p, "workload.prompt_tokens");
        if (!strcmp(pol, "none") && k0 < MAXP) a0[k0++] = (xpt){n, t, p};
        else if (cached && !strcmp(pol, cached) && k1 < MAXP) a1[k1++] = (xpt){n, t, p};
    }
    if (k0 < 2 || k1 < 2) {
        const char *e = first_point_error(s->res);
        NM_RETURN(r, "%s: needs at least 2 output lengths with status ok for kv.policy none and a cached "
                            "policy (got %zu and %zu)%s%s", s->name, k0, k1, e ? "; first error: " : "", e ? e : "");
    }
    qsort(a0, k0, sizeof *a0, cmp_xpt);
    qsort(a1, k1, sizeof *a1, cmp_xpt);
    double n0[MAXP], t0[MAXP], n1[MAXP], t1[MAXP];
    for (size_t j = 0; j < k0; j++) n0[j] = a0[j].x, t0[j] = a0[j].t;
    for (size_t j = 0; j < k1; j++) n1[j] = a1[j].x, t1[j] = a1[j].t;
    double b0 = NAN, b1 = NAN, r20 = NAN, r21 = NAN;
    bool f0 = ibex_report_power_fit(n0, t0, k0, NULL, &b0, &r20);
    bool f1 = ibex_report_power_fit(n1, t1, k1, NULL, &b1, &r21);
    if (!f0 || !f1) NM_RETURN(r, "%s: the output lengths do not differ, no exponent can be fitted", s->name);
    /* the local exponent between the two longest runs: where the curve is heading once
       the costs paid once per step (output layer, sampling) stop dominating */
    double l0 = log(t0[k0 - 1] / t0[k0 - 2]) / log(n0[k0 - 1] / n0[k0 - 2]);
    double l1 = log(t1[k1 - 1] / t1[k1 - 2]) / log(n1[k1 - 1] / n1[k1 - 2]);
    double pt0a = t0[0] / n0[0], pt0b = t0[k0 - 1] / n0[k0 - 1];
    double pt1a = t1[0] / n1[0], pt1b = t1[k1 - 1] / n1[k1 - 1];
    /* slowdown at the largest output length both policies ran */
    double slow = NAN, slow_n = NAN;
    for (size_t a = 0; a < k0; a++) {
        int j = find_x(n1, k1, n0[a]);
        if (j >= 0 && t1[j] > 0) slow = t0[a] / t1[j], slow_n = n0[a];
    }
    num(r, "exp_none", b0);
    num(r, "exp_cache", b1);
    num(r, "local_exp_none", l0);
    num(r, "local_exp_cache", l1);
    num(r, "r2_none", r20);
    num(r, "r2_cache", r21);
    num(r, "per_token_growth_none", pt0b / pt0a);
    num(r, "per_token_growth_cache", pt1b / pt1a);
    num(r, "slowdown_at_max_n", slow);
    char w0[4][96];
    fig f[4];
    snprintf(w0[0], sizeof w0[0], "wall_s of none at n=%g", n0[k0 - 2]);
    snprintf(w0[1], sizeof w0[1], "wall_s of none at n=%g", n0[k0 - 1]);
    snprintf(w0[2], sizeof w0[2], "wall_s of %s at n=%g", cached, n1[k1 - 2]);
    snprintf(w0[3], sizeof w0[3], "wall_s of %s at n=%g", cached, n1[k1 - 1]);
    const json_t *fp[4] = {a0[k0 - 2].p, a0[k0 - 1].p, a1[k1 - 2].p, a1[k1 - 1].p};
    const double fv[4] = {t0[k0 - 2], t0[k0 - 1], t1[k1 - 2], t1[k1 - 1]};
    for (int j = 0; j < 4; j++) {
        f[j] = fig_of(fp[j], "wall_s", w0[j]);
        if (!isfinite(f[j].v) || fabs(f[j].v - fv[j]) > 1e-12 * fv[j]) f[j] = fig_exact(fv[j], w0[j]);
    }
    char sp[4][128];
    for (int j = 0; j < 4; j++) {
        ibex_report_spread z;
        ibex_report_spread_get(fp[j], "wall_s", &z);
        ibex_report_fmt_spread(&z, true, "", "-", sp[j], sizeof sp[j]);
    }
    /* a fit through 2 points is exact by construction (R² 1): report none */
    char fit0[96] = "", fit1[96] = "";
    if (k0 >= 3) snprintf(fit0, sizeof fit0, "fitted total ∝ n^%.2f (R² %.3f), ", b0, r20);
    if (k1 >= 3) snprintf(fit1, sizeof fit1, "∝ n^%.2f (R² %.3f), ", b1, r21);
    app(r->measured, sizeof r->measured,
        "1 request, %g-token prompt, n = %g..%g output tokens. No cache (none): total %s at n=%g → %s at n=%g, %slocal "
        "exponent %.2f between n=%g (%s) and %g (%s); per generated token %s → %s (×%.2f). %s cache: total %s → %s, "
        "%slocal %.2f (%s, %s); per token %s → %s (×%.2f).",
        prompt, n0[0], n0[k0 - 1], fsec(t0[0]).s, n0[0], fsec(t0[k0 - 1]).s, n0[k0 - 1], fit0, l0, n0[k0 - 2], sp[0],
        n0[k0 - 1], sp[1], fsec(pt0a).s, fsec(pt0b).s, pt0b / pt0a, cached, fsec(t1[0]).s, fsec(t1[k1 - 1]).s, fit1, l1,
        sp[2], sp[3], fsec(pt1a).s, fsec(pt1b).s, pt1b / pt1a);
    if (isfinite(slow)) app(r->measured, sizeof r->measured, " At n=%g no cache is ×%.1f slower.", slow_n, slow);
    a_ctx ac = {n0[k0 - 2], n0[k0 - 1], n1[k1 - 2], n1[k1 - 1]};
    ibex_claim_verdict v = judge_a(fv, &ac);
    if (v == IBEX_CLAIM_HOLDS)
        snprintf(r->assessment, sizeof r->assessment,
                 "Right without a KV cache: the cost of the k-th token grows with k (×%.1f per token from n=%g to "
                 "%g) and the total heads for n² (local exponent %.2f between the two longest runs; n^%.2f fitted over "
                 "the whole range, where costs paid once per step whatever the length, the output layer and sampling, "
                 "still weigh). With a cache the total grows as n^%.2f locally: the article describes cache-less "
                 "decoding, which no serving engine does.",
                 pt0b / pt0a, n0[0], n0[k0 - 1], l0, b0, l1);
    else if (v == IBEX_CLAIM_PARTLY)
        snprintf(r->assessment, sizeof r->assessment,
                 "Partly: without a cache the total grows faster (local exponent %.2f against %.2f with one), but short "
                 "of the n² the article's \"k full runs\" implies.",
                 l0, l1);
    else
        snprintf(r->assessment, sizeof r->assessment,
                 "Not seen: between the two longest runs the total grows as n^%.2f without a cache and n^%.2f with one.",
                 l0, l1);
    if (res_quick(s->res) && (k0 < 3 || k1 < 3)) {
        not_judged(r, "%zu output lengths per policy; the local exponent between the two longest runs needs the full sweep",
                   k0 < k1 ? k0 : k1);
        return;
    }
    set_verdict(r, judged(r, f, 4, judge_a, &ac));
}

/* ---------------------------------------------------------------- b: decoding */

/* v: per-step decode time of greedy, sample, widest beam. */
static ibex_claim_verdict judge_b(const double *v, const void *c) {
    (void)c;
    double sx = v[1] / v[0], bx = v[2] / v[0];
    if (sx > 1.05 && bx > sx) return IBEX_CLAIM_HOLDS;
    if (bx > 1.05) return IBEX_CLAIM_PARTLY;
    return IBEX_CLAIM_WRONG;
}

static void claim_b(ibex_claims *c, const cl_ctx *x) {
    const cl_src *s = &x->src[R_DECODING];
    ibex_claim_row *r = row_new(c, "b",
                                "Decoding strategies: greedy search is fast, random sampling medium, beam search slow "
                                "(\"like having the AI write 5 essays at once and pick the best\")",
                                s->name ? s->name : k_roles[R_DECODING]);
    if (!s->res) NM_RETURN(r, "%s", s->why);
    /* timing on paged KV when measured (what serving engines use), else the first policy */
    const char *tpol = NULL;
    size_t i;
    const json_t *p;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p)) continue;
        const char *pol = pstr(p, "kv.policy");
        if (!tpol || !strcmp(pol, "paged")) tpol = pol;
    }
    const json_t *greedy = NULL, *sample = NULL, *sample_n = NULL, *beam = NULL;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p) || strcmp(pstr(p, "kv.policy"), tpol)) continue;
        const char *st = pstr(p, "decoding.strategy");
        double n = pnum(p, "decoding.n"), w = pnum(p, "decoding.beam_width");
        if (!strcmp(st, "greedy") && !greedy) greedy = p;
        else if (!strcmp(st, "sample") && (!(n > 1)) && !sample) sample = p;
        else if (!strcmp(st, "sample") && n > 1 && (!sample_n || n > pnum(sample_n, "decoding.n"))) sample_n = p;
        else if (!strcmp(st, "beam") && (!beam || w > pnum(beam, "decoding.beam_width"))) beam = p;
    }
    double g_ms = greedy ? ibex_report_num(greedy, "metrics/decode_ms_per_token") : NAN;
    double s_ms = sample ? ibex_report_num(sample, "metrics/decode_ms_per_token") : NAN;
    double b_ms = beam ? ibex_report_num(beam, "metrics/decode_ms_per_token") : NAN;
    if (!isfinite(g_ms) || !isfinite(s_ms) || !isfinite(b_ms) || g_ms <= 0) {
        const char *e = first_point_error(s->res);
        if (res_quick(s->res) && !(greedy && sample && beam)) {
            snprintf(r->measured, sizeof r->measured,
                     "quick run: greedy %s, sample (n=1) %s, beam %s.", greedy ? "ran" : "not run",
                     sample ? "ran" : "not run", beam ? "ran" : "not run");
            not_judged(r, "quick mode kept the first and last decoding strategies only; greedy, sampling and beam "
                          "search all need to run");
            return;
        }
        NM_RETURN(r, "%s: needs greedy, sample (n=1) and beam points with status ok and decode steps "
                            "(greedy %s, sample %s, beam %s)%s%s", s->name, greedy ? "found" : "missing",
                            sample ? "found" : "missing", beam ? "found" : "missing", e ? "; first error: " : "",
                            e ? e : "");
    }
    int width = (int)pnum(beam, "decoding.beam_width");
    double sx = s_ms / g_ms, bx = b_ms / g_ms;
    num(r, "greedy_step_ms", g_ms);
    num(r, "sample_vs_greedy", sx);
    num(r, "beam_vs_greedy", bx);
    num(r, "beam_width", width);
    fig f[3] = {fig_of(greedy, "decode_ms_per_token", "decode ms/step of greedy"),
                fig_of(sample, "decode_ms_per_token", "decode ms/step of sample"),
                fig_of(beam, "decode_ms_per_token", "decode ms/step of the widest beam")};
    char g_sp[128];
    {
        ibex_report_spread z;
        ibex_report_spread_get(greedy, "decode_ms_per_token", &z);
        ibex_report_fmt_spread(&z, false, "ms", "-", g_sp, sizeof g_sp);
    }
    app(r->measured, sizeof r->measured, "%s KV, per decode step (the time of one token of the answer): greedy %s", tpol,
        g_sp);
    /* every point of the timing policy, in file order */
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p) || strcmp(pstr(p, "kv.policy"), tpol) || p == greedy) continue;
        const char *st = pstr(p, "decoding.strategy");
        double ms = ibex_report_num(p, "metrics/decode_ms_per_token");
        double n = pnum(p, "decoding.n"), w = pnum(p, "decoding.beam_width"), tp = pnum(p, "decoding.top_p");
        char what[64];
        if (!strcmp(st, "beam")) snprintf(what, sizeof what, "beam %g", w);
        else if (!strcmp(st, "sample") && n > 1) snprintf(what, sizeof what, "sample n=%g", n);
        else if (!strcmp(st, "sample") && isfinite(tp) && tp < 1) snprintf(what, sizeof what, "sample top-p %g", tp);
        else snprintf(what, sizeof what, "%s", st);
        ibex_report_spread z;
        char b[128];
        ibex_report_spread_get(p, "decode_ms_per_token", &z);
        app(r->measured, sizeof r->measured, "; %s %s (×%.2f)", what, ibex_report_fmt_spread(&z, false, "ms", "-", b, sizeof b),
            ms / g_ms);
        double otps = ibex_report_num(p, "metrics/output_tok_per_s"), htps = ibex_report_num(p, "metrics/hypothesis_tok_per_s");
        if (!strcmp(st, "beam") && isfinite(otps) && isfinite(htps))
            app(r->measured, sizeof r->measured, " [output %.0f tok/s, hypothesis %.0f tok/s]", otps, htps);
    }
    double gs = ibex_report_num(greedy, "sampler/ns_per_token"), ss = ibex_report_num(sample, "sampler/ns_per_token"),
           bs = ibex_report_num(beam, "sampler/ns_per_token");
    app(r->measured, sizeof r->measured, ". Sampler per token: greedy %s, sample %s, beam %d %s", fsec(gs * 1e-9).s,
        fsec(ss * 1e-9).s, width, fsec(bs * 1e-9).s);
    num(r, "sampler_greedy_ns", gs);
    num(r, "sampler_sample_ns", ss);
    /* KV of the widest beam under each policy */
    double kv_c = NAN, kv_p = NAN;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p) || strcmp(pstr(p, "decoding.strategy"), "beam") || pnum(p, "decoding.beam_width") != width) continue;
        if (!strcmp(pstr(p, "kv.policy"), "contiguous")) kv_c = ibex_report_num(p, "kv/peak_reserved");
        if (!strcmp(pstr(p, "kv.policy"), "paged")) kv_p = ibex_report_num(p, "kv/peak_reserved");
    }
    if (isfinite(kv_c) && isfinite(kv_p) && kv_c > 0) {
        app(r->measured, sizeof r->measured, ". KV peak reserved for beam %d: contiguous %s, paged %s (%+.0f%%)", width,
            fbytes(kv_c).s, fbytes(kv_p).s, (kv_p / kv_c - 1) * 100);
        num(r, "beam_kv_contiguous", kv_c);
        num(r, "beam_kv_paged", kv_p);
    }
    app(r->measured, sizeof r->measured, ".");
    double v3[3] = {g_ms, s_ms, b_ms};
    ibex_claim_verdict v = judge_b(v3, NULL);
    if (v == IBEX_CLAIM_HOLDS) {
        snprintf(r->assessment, sizeof r->assessment,
                 "Right in order: sampling costs %+.0f%% per step over greedy (the sampler's softmax and sort), beam "
                 "search of width %d ×%.2f (it decodes %d sequences every step).",
                 (sx - 1) * 100, width, bx, width);
    } else if (v == IBEX_CLAIM_PARTLY) {
        if (sx <= 1.05)
            snprintf(r->assessment, sizeof r->assessment,
                     "Beam search is slow (×%.2f per step at width %d: it decodes %d sequences every step), but "
                     "sampling is not measurably slower than greedy (×%.2f per step): the sampler is small beside "
                     "the forward pass, so \"medium\" is not a speed class of its own.",
                     bx, width, width, sx);
        else
            snprintf(r->assessment, sizeof r->assessment,
                     "Beam search is slower than greedy (×%.2f at width %d) but sampling is slower still (×%.2f).", bx,
                     width, sx);
    } else {
        snprintf(r->assessment, sizeof r->assessment,
                 "Beam search of width %d is not slower than greedy here (×%.2f per step); sampling ×%.2f.", width, bx,
                 sx);
    }
    set_verdict(r, judged(r, f, 3, judge_b, NULL));
}

/* ---------------------------------------------------------------- c: KV size */

/* The first ok point of res whose model name mentions "7b" and has the numbers at
 * key, or NULL. */
static const json_t *find_7b_point(const json_t *res, const char *key) {
    size_t i;
    const json_t *p;
    json_array_foreach(points_of(res), i, p) {
        const char *m = ibex_report_str(p, "model/name");
        if (pt_ok(p) && m && strcasestr(m, "7b") && ibex_report_get(p, key)) return p;
    }
    return NULL;
}

/* A 7B point from the first of the roles that has one; its source in *src. */
static const json_t *find_7b(const cl_ctx *x, const int *roles, int n, const char *key, const char **src) {
    for (int k = 0; k < n; k++) {
        const cl_src *s = &x->src[roles[k]];
        if (!s->res) continue;
        const json_t *p = find_7b_point(s->res, key);
        if (p) {
            *src = s->name;
            return p;
        }
    }
    return NULL;
}

/* "why" for a 7B number missing from every role listed. */
static void why_no_7b(const cl_ctx *x, const int *roles, int n, char *buf, size_t cap) {
    buf[0] = '\0';
    for (int k = 0; k < n; k++) {
        const cl_src *s = &x->src[roles[k]];
        app(buf, cap, "%s%s: %s", k ? "; " : "", s->name ? s->name : k_roles[roles[k]],
            s->res ? "no ok point of a 7B model" : s->why);
    }
}

static void claim_c(ibex_claims *c, const cl_ctx *x) {
    static const int roles[] = {R_KV7B, R_KVMEM, R_PAGED};
    const char *src = NULL;
    const json_t *fp = find_7b(x, roles, 3, "model/kv_bytes_per_token_f16", &src);
    const cl_src *s = &x->src[R_KV7B];
    ibex_claim_row *r = row_new(c, "c",
                                "A 32-layer Llama-2-7B processing a 2048-token sequence: \"the KV cache takes up to "
                                "1.6 GB of GPU memory\"",
                                s->name ? s->name : k_roles[R_KV7B]);
    if (!fp) {
        char why[1400];
        why_no_7b(x, roles, 3, why, sizeof why);
        NM_RETURN(r, "%s", why);
    }
    double bpt = ibex_report_num(fp, "model/kv_bytes_per_token_f16");
    double layers = ibex_report_num(fp, "model/n_layers");
    double exact = bpt * ART_CTX_TOKENS; /* 2 · layers · kv_heads · head_dim · 2 B · 2048 */
    double width = bpt / (2 * layers * 2);  /* kv_heads · head_dim */
    /* Llama-2-13B (40 layers, 40 KV heads of 128) at 2048 tokens in F16: the model whose
       cache the article's 1.6 GB describes */
    double b13 = 2.0 * L2_13B_LAYERS * L2_13B_KV_HEADS * L2_13B_HEAD_DIM * 2 * ART_CTX_TOKENS;
    num(r, "kv_bytes_per_token_f16", bpt);
    num(r, "kv_2048_formula_bytes", exact);
    num(r, "article_over_formula", ART_KV_BYTES / exact);
    num(r, "llama2_13b_2048_f16_bytes", b13);
    app(r->measured, sizeof r->measured,
        "Formula (%s, %s): 2 (K and V) · %g layers · %g (KV heads · head dim) · 2 B (F16) · 2048 tokens = %.0f B = %s; "
        "F32 would be %s.",
        ibex_report_str(fp, "model/name"), src, layers, width, exact, fgb(exact).s, fgb(2 * exact).s);
    /* measured: the accounting-only run holding one 2048-token sequence */
    const json_t *mp = s->res ? find_7b_point(s->res, "kv/peak_used") : NULL;
    bool quick_short = false;
    if (mp) {
        double used = ibex_report_num(mp, "kv/peak_used"), resv = ibex_report_num(mp, "kv/peak_reserved");
        double bpt_run = ibex_report_num(mp, "model/kv_bytes_per_token");
        double tokens = bpt_run > 0 ? used / bpt_run : NAN;
        num(r, "measured_peak_used", used);
        num(r, "measured_tokens", tokens);
        quick_short = res_quick(s->res) && !(fabs(tokens - ART_CTX_TOKENS) < 0.5);
        if (quick_short)
            app(r->measured, sizeof r->measured,
                " Measured: not judged in quick mode (the quick run held %.0f tokens, not 2048).", tokens);
        else
            app(r->measured, sizeof r->measured,
                " Measured (%s, KV %s, accounting only): peak used %.0f B = %s for %.0f tokens (peak reserved %s, "
                "block-rounded)%s.",
                s->name, pstr(mp, "kv.dtype"), used, fgb(used).s, tokens, fbytes(resv).s,
                fabs(tokens - ART_CTX_TOKENS) < 0.5 && !strcmp(pstr(mp, "kv.dtype"), "f16")
                    ? (fabs(used - exact) < 0.5 ? ", equal to the formula" : ", NOT equal to the formula")
                    : "");
    } else {
        app(r->measured, sizeof r->measured, " Measured: not measured (%s).", s->res ? "no ok 7B point" : s->why);
    }
    if (isfinite(layers) && layers != ART_LAYERS)
        app(r->measured, sizeof r->measured, " (The model measured has %g layers, the article's %d.)", layers, ART_LAYERS);
    double ratio = ART_KV_BYTES / exact;
    double tokens_16 = ART_KV_BYTES / bpt;
    num(r, "article_tokens_at_f16", tokens_16);
    double dev = fabs(ratio - 1);
    /* the verdict rests on exact bytes (the formula, and the measured counter equal to
       it): no noise, and quick mode cannot change it */
    r->verdict = dev <= 0.10 ? IBEX_CLAIM_HOLDS : dev <= 0.25 ? IBEX_CLAIM_PARTLY : IBEX_CLAIM_WRONG;
    snprintf(r->assessment, sizeof r->assessment,
             "%s: a 2048-token sequence of Llama-2-7B holds exactly %s of F16 KV cache; the article's 1.6 GB is %+.0f%% "
             "(×%.2f) off, and matches neither F16 nor F32 (%s, %+.0f%% off); at F16, 1.6 GB is the cache of %.0f "
             "tokens. It is the size for Llama-2-13B (40 layers, 40 KV heads of 128) at 2048 tokens in F16: 2 · 40 · "
             "40 · 128 · 2 B · 2048 = %.0f B = %s.",
             r->verdict == IBEX_CLAIM_HOLDS ? "Right" : r->verdict == IBEX_CLAIM_PARTLY ? "Roughly" : "Wrong",
             fgb(exact).s, (ratio - 1) * 100, ratio, fgb(2 * exact).s, (ART_KV_BYTES / (2 * exact) - 1) * 100,
             tokens_16, b13, fgb(b13).s);
}

/* ---------------------------------------------------------------- d: KV share */

static void claim_d(ibex_claims *c, const cl_ctx *x) {
    const cl_src *s = &x->src[R_KVMEM];
    ibex_claim_row *r = row_new(c, "d", "\"The KV cache takes more than 60% of total GPU memory, severely limiting concurrency\"",
                                s->name ? s->name : k_roles[R_KVMEM]);
    if (!s->res) NM_RETURN(r, "%s", s->why);
    /* the prompt length closest to 2048 (log distance) and the policy: paged first, as it
       reserves what the tokens need (contiguous may reserve a whole context per sequence) */
    double best = NAN;
    const char *pol = NULL;
    size_t i;
    const json_t *p;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p)) continue;
        double n = pnum(p, "workload.prompt_tokens");
        if (!isfinite(n) || n <= 0) continue;
        if (isnan(best) || fabs(log(n / ART_CTX_TOKENS)) < fabs(log(best / ART_CTX_TOKENS))) best = n;
        const char *pp = pstr(p, "kv.policy");
        if (!pol || !strcmp(pp, "paged")) pol = pp;
    }
    double bb[MAXP], share[MAXP], kvb[MAXP];
    size_t k = 0;
    const json_t *ref = NULL;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p) || !pol || strcmp(pstr(p, "kv.policy"), pol) || pnum(p, "workload.prompt_tokens") != best) continue;
        double kv = ibex_report_num(p, "kv/peak_reserved"), w = ibex_report_num(p, "model/weight_bytes_by_type/F16");
        double b = pnum(p, "batch");
        if (!isfinite(kv) || !isfinite(w) || !isfinite(b) || k >= MAXP) continue;
        bb[k] = b, kvb[k] = kv, share[k++] = kv / (kv + w);
        ref = p;
    }
    if (k == 0 || !ref) {
        const char *e = first_point_error(s->res);
        NM_RETURN(r, "%s: no ok point with kv.peak_reserved and model.weight_bytes_by_type.F16%s%s", s->name,
                            e ? "; first error: " : "", e ? e : "");
    }
    sort3(bb, share, kvb, k);
    double w = ibex_report_num(ref, "model/weight_bytes_by_type/F16");
    double out_tok = pnum(ref, "workload.output_tokens"), budget = pnum(ref, "kv.budget");
    double bpt = ibex_report_num(ref, "model/kv_bytes_per_token");
    /* one sequence's KV, measured: peak reserved / batch at the largest batch */
    double per_seq = kvb[k - 1] / bb[k - 1];
    double seq_tokens = per_seq / bpt;
    /* B·s / (B·s + W) > 0.6  ⇔  B > 1.5 · W / s */
    double b_star = floor(ART_KV_SHARE / (1 - ART_KV_SHARE) * w / per_seq) + 1;
    /* kv.budget is the KV pool alone: the weights sit on top of it, so the device
       holds budget + weights and the pool alone bounds concurrency */
    double max_conc = floor(budget / per_seq);
    double share_full = budget / (budget + w);
    num(r, "weights_f16_bytes", w);
    num(r, "share_smallest_batch", share[0]);
    num(r, "share_largest_batch", share[k - 1]);
    num(r, "batch_passing_60pct", b_star);
    num(r, "seq_bytes", per_seq);
    num(r, "max_concurrent_in_budget", max_conc);
    num(r, "share_pool_full", share_full);
    app(r->measured, sizeof r->measured,
        "%s (%s KV, F16 weights %s): prompts of %g + %g output tokens; KV share = KV peak reserved / (KV + weights): ",
        ibex_report_str(ref, "model/name"), pol, fbytes(w).s, best, out_tok);
    for (size_t j = 0; j < k; j++)
        app(r->measured, sizeof r->measured, "%sbatch %g: %s = %.1f%%", j ? ", " : "", bb[j], fbytes(kvb[j]).s,
            share[j] * 100);
    /* the other policy beside it, when it reserves differently */
    const char *other = NULL;
    char oth[400] = "";
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p) || !strcmp(pstr(p, "kv.policy"), pol) || pnum(p, "workload.prompt_tokens") != best) continue;
        double kv = ibex_report_num(p, "kv/peak_reserved");
        if (!isfinite(kv)) continue;
        other = pstr(p, "kv.policy");
        app(oth, sizeof oth, "%sbatch %g: %.1f%%", oth[0] ? ", " : "", pnum(p, "batch"), kv / (kv + w) * 100);
    }
    if (other)
        app(r->measured, sizeof r->measured, " (%s KV: %s)", other, oth);
    app(r->measured, sizeof r->measured,
        ". One sequence holds %s (%.0f tokens); KV passes 60%% from %.0f concurrent sequences (B · %s > 1.5 × %s). "
        "The %s KV pool (kv.budget) holds at most %.0f such sequences; the weights sit on top of it (%s + %s = %s "
        "of device memory), and with the pool full KV is %.1f%% of KV + weights.",
        fbytes(per_seq).s, seq_tokens, b_star, fbytes(per_seq).s, fbytes(w).s, fbytes(budget).s, max_conc,
        fbytes(budget).s, fbytes(w).s, fbytes(budget + w).s, share_full * 100);
    if (res_quick(s->res) && !(fabs(best - ART_CTX_TOKENS) < 0.5)) {
        not_judged(r, "the quick run's prompt closest to 2048 tokens is %g", best);
        return;
    }
    /* exact counters: no noise to weigh */
    if (share[0] > ART_KV_SHARE) {
        r->verdict = IBEX_CLAIM_HOLDS;
        snprintf(r->assessment, sizeof r->assessment,
                 "Right: KV is %.0f%% of KV + weights already at batch %g; the %s pool holds %.0f sequences of %.0f "
                 "tokens, so KV memory bounds concurrency.",
                 share[0] * 100, bb[0], fbytes(budget).s, max_conc, seq_tokens);
    } else if (b_star <= max_conc) {
        r->verdict = IBEX_CLAIM_PARTLY;
        snprintf(r->assessment, sizeof r->assessment,
                 "Only under load: at batch %g the KV cache is %.1f%% of KV + weights, not > 60%%; it passes 60%% from "
                 "%.0f concurrent %.0f-token sequences, and the %s pool (with %s of weights on top) does cap "
                 "concurrency at %.0f such sequences, where KV is %.0f%% of the memory used (right).",
                 bb[0], share[0] * 100, b_star, seq_tokens, fbytes(budget).s, fbytes(w).s, max_conc, share_full * 100);
    } else {
        r->verdict = IBEX_CLAIM_WRONG;
        snprintf(r->assessment, sizeof r->assessment,
                 "Wrong at this size: KV reaches at most %.1f%% (batch %g), and passing 60%% would take %.0f sequences, "
                 "more than the %.0f the pool holds.",
                 share[k - 1] * 100, bb[k - 1], b_star, max_conc);
    }
}

/* ---------------------------------------------------------------- e: O(n²) */

typedef struct e_ctx {
    double x1, x2; /* the article's 512 and 2048 as run */
} e_ctx;

/* v: attention at x1, x2; whole prefill at x1, x2. Judged on the local exponents
 * between the article's own points, 512 and 2048. */
static ibex_claim_verdict judge_e(const double *v, const void *c) {
    const e_ctx *x = c;
    double ba = log(v[1] / v[0]) / log(x->x2 / x->x1), bp = log(v[3] / v[2]) / log(x->x2 / x->x1);
    bool att_ok = ba >= 1.6 && ba <= 2.4;
    bool whole_ok = fabs(pow(4, bp) / 16 - 1) <= 0.25;
    return att_ok && whole_ok ? IBEX_CLAIM_HOLDS : att_ok ? IBEX_CLAIM_PARTLY : IBEX_CLAIM_WRONG;
}

static void claim_e(ibex_claims *c, const cl_ctx *x) {
    const cl_src *s = &x->src[R_QUAD];
    ibex_claim_row *r = row_new(c, "e",
                                "\"Transformer compute is quadratic in sequence length (O(n²))\": relative compute 512 → "
                                "1×, 1024 → 4×, 2048 → 16×",
                                s->name ? s->name : k_roles[R_QUAD]);
    if (!s->res) NM_RETURN(r, "%s", s->why);
    double n[MAXP], ta[MAXP], tp[MAXP], idx[MAXP];
    const json_t *pp[MAXP];
    size_t k = 0;
    size_t i;
    const json_t *p;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p) || k >= MAXP) continue;
        double len = pnum(p, "workload.prompt_tokens");
        double att = ibex_report_num(p, "ops/prefill/attention/ns") / reps_of(p) * 1e-9;
        double pre = ibex_report_num(p, "metrics/prefill_s");
        if (!isfinite(len) || !isfinite(att) || !isfinite(pre) || att <= 0 || pre <= 0) continue;
        pp[k] = p, idx[k] = (double)k;
        n[k] = len, ta[k] = att, tp[k++] = pre;
    }
    if (k < 2) {
        const char *e = first_point_error(s->res);
        NM_RETURN(r, "%s: needs at least 3 prompt lengths with status ok and per-op times "
                            "(ops.prefill.attention; profile: true) (got %zu)%s%s", s->name, k, e ? "; first error: " : "",
                            e ? e : "");
    }
    /* sort by n, carrying the point order in idx */
    for (size_t a = 1; a < k; a++)
        for (size_t b = a; b > 0 && n[b - 1] > n[b]; b--) {
            double t;
            t = n[b], n[b] = n[b - 1], n[b - 1] = t;
            t = ta[b], ta[b] = ta[b - 1], ta[b - 1] = t;
            t = tp[b], tp[b] = tp[b - 1], tp[b - 1] = t;
            t = idx[b], idx[b] = idx[b - 1], idx[b - 1] = t;
        }
    double ba = NAN, bp = NAN, r2a = NAN, r2p = NAN;
    ibex_report_power_fit(n, ta, k, NULL, &ba, &r2a);
    ibex_report_power_fit(n, tp, k, NULL, &bp, &r2p);
    int i512 = find_x(n, k, 512), i1024 = find_x(n, k, 1024), i2048 = find_x(n, k, 2048);
    if (i2048 < 0) i2048 = find_x(n, k, 2047);
    const json_t *first = NULL;
    json_array_foreach(points_of(s->res), i, p) if (pt_ok(p) && !first) first = p;
    app(r->measured, sizeof r->measured, "Prefill of one prompt, n = %g..%g tokens", n[0], n[k - 1]);
    if (first && ibex_report_str(first, "model/name"))
        app(r->measured, sizeof r->measured, " (%s)", ibex_report_str(first, "model/name"));
    app(r->measured, sizeof r->measured, ". Attention op: ");
    for (size_t j = 0; j < k; j++) {
        ibex_report_spread z;
        char b[128];
        ibex_report_spread_get(pp[(size_t)idx[j]], "attention_prefill_s", &z);
        app(r->measured, sizeof r->measured, "%s%g: %s", j ? ", " : "", n[j], ibex_report_fmt_spread(&z, true, "", "-", b, sizeof b));
    }
    app(r->measured, sizeof r->measured, ". Whole prefill: ");
    for (size_t j = 0; j < k; j++) {
        ibex_report_spread z;
        char b[128];
        ibex_report_spread_get(pp[(size_t)idx[j]], "prefill_s", &z);
        app(r->measured, sizeof r->measured, "%s%g: %s", j ? ", " : "", n[j], ibex_report_fmt_spread(&z, true, "", "-", b, sizeof b));
    }
    double share_max = ta[k - 1] / tp[k - 1];
    num(r, "attention_share_at_max_n", share_max);
    app(r->measured, sizeof r->measured, ". Attention is %.0f%% of prefill at %g tokens and %.0f%% at %g.",
        ta[0] / tp[0] * 100, n[0], share_max * 100, n[k - 1]);
    if (k < 3 || i512 < 0 || i2048 < 0) {
        if (k >= 2 && isfinite(ba))
            app(r->measured, sizeof r->measured, " (%zu lengths: no exponent is reported from fewer than 3.)", k);
        if (res_quick(s->res)) {
            not_judged(r, "%zu prompt lengths ran (%g..%g); the exponent needs at least 3, including the article's 512 "
                          "and 2048",
                       k, n[0], n[k - 1]);
            return;
        }
        NM_RETURN(r, "%s: needs at least 3 prompt lengths including 512 and 2048 (or 2047) with status ok (got %zu: "
                     "%g..%g)", s->name, k, n[0], n[k - 1]);
    }
    /* the local exponents between the article's points, and the ratios they give */
    double x1 = n[i512], x2 = n[i2048];
    double la = log(ta[i2048] / ta[i512]) / log(x2 / x1), lp = log(tp[i2048] / tp[i512]) / log(x2 / x1);
    double a2 = pow(4, la), p2 = pow(4, lp);
    double a1 = i1024 >= 0 ? ta[i1024] / ta[i512] : NAN, p1 = i1024 >= 0 ? tp[i1024] / tp[i512] : NAN;
    num(r, "exp_attention", ba);
    num(r, "exp_prefill", bp);
    num(r, "local_exp_attention", la);
    num(r, "local_exp_prefill", lp);
    num(r, "attention_2048_over_512", a2);
    num(r, "prefill_2048_over_512", p2);
    num(r, "attention_1024_over_512", a1);
    num(r, "prefill_1024_over_512", p1);
    app(r->measured, sizeof r->measured,
        " Between the article's points %g and %g: attention ∝ n^%.2f locally (2048/512 → ×%.1f; 1024/512 → ×%.2f), "
        "whole prefill ∝ n^%.2f (2048/512 → ×%.1f; 1024/512 → ×%.2f)%s. Fitted over all %zu lengths: attention n^%.2f "
        "(R² %.3f), prefill n^%.2f (R² %.3f).",
        x1, x2, la, a2, a1, lp, p2, p1, fabs(x2 - 2048) > 0.5 ? " (2047 stands for 2048: ratios are read off n^b)" : "",
        k, ba, r2a, bp, r2p);
    fig f[4] = {fig_of(pp[(size_t)idx[i512]], "attention_prefill_s", "attention time at 512"),
                fig_of(pp[(size_t)idx[i2048]], "attention_prefill_s", "attention time at 2048"),
                fig_of(pp[(size_t)idx[i512]], "prefill_s", "prefill time at 512"),
                fig_of(pp[(size_t)idx[i2048]], "prefill_s", "prefill time at 2048")};
    /* the op totals are what the verdict uses: keep their values, the spread is relative */
    const double fv[4] = {ta[i512], ta[i2048], tp[i512], tp[i2048]};
    for (int j = 0; j < 4; j++) {
        double rel_lo = isfinite(f[j].v) && f[j].v > 0 ? f[j].lo / f[j].v : 1, rel_hi = isfinite(f[j].v) && f[j].v > 0 ? f[j].hi / f[j].v : 1;
        f[j].v = fv[j], f[j].lo = fv[j] * rel_lo, f[j].hi = fv[j] * rel_hi;
    }
    e_ctx ec = {x1, x2};
    ibex_claim_verdict v = judge_e(fv, &ec);
    /* what dominates the prefill at the longest prompt, from attention's share there */
    char dom[400];
    if (share_max >= 0.5)
        snprintf(dom, sizeof dom,
                 "attention is already %.0f%% of the prefill at %g tokens, but the other ops (matrix multiplications, "
                 "linear in n) still take %.0f%%, so the whole grows slower than attention",
                 share_max * 100, n[k - 1], (1 - share_max) * 100);
    else
        snprintf(dom, sizeof dom,
                 "the other ops (matrix multiplications, linear in n) are %.0f%% of the prefill at %g tokens, attention "
                 "%.0f%%",
                 (1 - share_max) * 100, n[k - 1], share_max * 100);
    if (v == IBEX_CLAIM_HOLDS)
        snprintf(r->assessment, sizeof r->assessment,
                 "Right for attention (n^%.2f between 512 and 2048, ×%.1f) and for the whole prefill here (×%.1f, "
                 "n^%.2f): attention is %.0f%% of the prefill at %g tokens.",
                 la, a2, p2, lp, share_max * 100, n[k - 1]);
    else if (v == IBEX_CLAIM_PARTLY)
        snprintf(r->assessment, sizeof r->assessment,
                 "Right for the attention op (n^%.2f between 512 and 2048: ×%.1f against the article's 16×), wrong for "
                 "the whole model: the prefill grows as n^%.2f there, 2048/512 = ×%.1f instead of 16× (%.0f%% %s), "
                 "because %s.",
                 la, a2, lp, p2, fabs(1 - p2 / 16) * 100, p2 < 16 ? "below" : "above", dom);
    else
        snprintf(r->assessment, sizeof r->assessment,
                 "Not seen at these lengths: between 512 and 2048 attention grows as n^%.2f (×%.1f), the whole prefill "
                 "as n^%.2f (×%.1f), against the article's n² (16×); %s.",
                 la, a2, lp, p2, dom);
    set_verdict(r, judged(r, f, 4, judge_e, &ec));
}

/* ---------------------------------------------------------------- f: batching */

typedef struct bat_pt {
    double batch, tps, steps, idle, requests;
    const json_t *p;
} bat_pt;

/* v: output tok/s of static, continuous at the compared batch; ctx: static's idle
 * slot-step share (an exact counter). */
static ibex_claim_verdict judge_f(const double *v, const void *c) {
    double idle = *(const double *)c;
    if (v[1] / v[0] >= 1.10) return IBEX_CLAIM_HOLDS;
    if (isfinite(idle) && idle >= 0.10) return IBEX_CLAIM_PARTLY;
    return IBEX_CLAIM_WRONG;
}

static void claim_f(ibex_claims *c, const cl_ctx *x) {
    const cl_src *s = &x->src[R_BATCH];
    ibex_claim_row *r = row_new(c, "f",
                                "\"Batching is inefficient\": requests arrive at random with different output lengths, "
                                "the GPU \"waits for the last task\"; per-request management wastes resources",
                                s->name ? s->name : k_roles[R_BATCH]);
    if (!s->res) NM_RETURN(r, "%s", s->why);
    bat_pt st[MAXP], ct[MAXP];
    size_t ks = 0, kc = 0;
    size_t i;
    const json_t *p, *ref = NULL;
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p)) continue;
        bat_pt b = {pnum(p, "batch"), ibex_report_num(p, "metrics/output_tok_per_s"), ibex_report_num(p, "metrics/steps"),
                    ibex_report_num(p, "kv/idle_slot_steps"), pnum(p, "workload.requests"), p};
        if (!isfinite(b.batch) || !isfinite(b.tps)) continue;
        const char *sc = pstr(p, "scheduler");
        if (!strcmp(sc, "static") && ks < MAXP) st[ks++] = b;
        else if (!strcmp(sc, "continuous") && kc < MAXP) ct[kc++] = b;
        ref = p;
    }
    /* the comparison point: the largest batch run by both schedulers that is smaller than
       the number of requests (where a freed slot can be refilled), else the largest > 1 */
    int bs = -1, bc = -1;
    bool refill = false;
    for (size_t a = 0; a < ks; a++)
        for (size_t b = 0; b < kc; b++) {
            if (st[a].batch != ct[b].batch || st[a].batch <= 1) continue;
            bool rf = st[a].batch < st[a].requests;
            if (bs < 0 || (rf && !refill) || (rf == refill && st[a].batch > st[bs].batch)) bs = (int)a, bc = (int)b, refill = rf;
        }
    if (bs < 0 || !ref) {
        const char *e = first_point_error(s->res);
        NM_RETURN(r, "%s: needs static and continuous points with status ok at the same batch > 1%s%s", s->name,
                  e ? "; first error: " : "", e ? e : "");
    }
    const bat_pt *S = &st[bs], *C = &ct[bc];
    double ratio = C->tps / S->tps;
    double idle = isfinite(S->idle) && S->steps > 0 ? S->idle / (S->batch * S->steps) : NAN;
    double steps_ratio = C->steps > 0 ? S->steps / C->steps : NAN;
    num(r, "batch", S->batch);
    num(r, "continuous_over_static", ratio);
    num(r, "static_tok_per_s", S->tps);
    num(r, "continuous_tok_per_s", C->tps);
    num(r, "static_idle_slot_share", idle);
    num(r, "static_over_continuous_steps", steps_ratio);
    app(r->measured, sizeof r->measured,
        "%g requests at once (%s), prompts %s..%s, outputs %s..%s tokens. Output throughput static vs continuous: ",
        S->requests, ibex_report_str(ref, "model/name") ? ibex_report_str(ref, "model/name") : "?",
        fnum(ibex_report_num(ref, "params/workload.prompt_tokens/min")).s,
        fnum(ibex_report_num(ref, "params/workload.prompt_tokens/max")).s,
        fnum(ibex_report_num(ref, "params/workload.output_tokens/min")).s,
        fnum(ibex_report_num(ref, "params/workload.output_tokens/max")).s);
    double one = NAN;
    int first = 1;
    for (size_t a = 0; a < ks; a++) {
        if (st[a].batch == 1) one = st[a].tps;
        for (size_t b = 0; b < kc; b++)
            if (ct[b].batch == st[a].batch) {
                app(r->measured, sizeof r->measured, "%sbatch %g: %s vs %s tok/s (×%.2f)", first ? "" : "; ", st[a].batch,
                    fnum(st[a].tps).s, fnum(ct[b].tps).s, ct[b].tps / st[a].tps);
                first = 0;
            }
    }
    app(r->measured, sizeof r->measured, ". At batch %g static batching takes %g steps against %g (×%.2f)", S->batch,
        S->steps, C->steps, steps_ratio);
    if (isfinite(idle))
        app(r->measured, sizeof r->measured, " and leaves %.0f%% of its slot-steps idle (%g of %g × %g)", idle * 100,
            S->idle, S->batch, S->steps);
    if (isfinite(one) && one > 0) {
        app(r->measured, sizeof r->measured, ". Batch %g over one request at a time: ×%.2f", S->batch,
            fmax(S->tps, C->tps) / one);
        num(r, "batched_over_one", fmax(S->tps, C->tps) / one);
    }
    app(r->measured, sizeof r->measured, ".");
    if (!refill)
        app(r->measured, sizeof r->measured,
            " (No batch smaller than the number of requests was run: no slot could be refilled, so the schedulers "
            "cannot differ much.)");
    double fv[2] = {S->tps, C->tps};
    ibex_claim_verdict v = judge_f(fv, &idle);
    if (v == IBEX_CLAIM_HOLDS) {
        snprintf(r->assessment, sizeof r->assessment,
                 "Right: at batch %g static batching (each batch waits for its longest request) delivers %.0f%% of "
                 "the output throughput of continuous batching, which refills free slots every step (×%.2f).",
                 S->batch, 100 / ratio, ratio);
    } else if (v == IBEX_CLAIM_PARTLY) {
        snprintf(r->assessment, sizeof r->assessment,
                 "The waste is real but costs little time here: static batching leaves %.0f%% of its slots idle and "
                 "needs ×%.2f the steps, yet delivers ×%.2f of continuous batching's throughput, because on this CPU a "
                 "step with fewer live sequences is cheaper. On a GPU, where a decode step costs about the same at any "
                 "occupancy (memory-bound), the step count rules and the article is right.",
                 idle * 100, steps_ratio, 1 / ratio);
    } else {
        snprintf(r->assessment, sizeof r->assessment,
                 "Not seen: continuous batching delivered ×%.2f the output throughput of static batching at batch %g, "
                 "and static batching left %.0f%% of its slot-steps idle.",
                 ratio, S->batch, isfinite(idle) ? idle * 100 : 0.0);
    }
    char ws[64], wc[64];
    snprintf(ws, sizeof ws, "output tok/s of static at batch %g", S->batch);
    snprintf(wc, sizeof wc, "output tok/s of continuous at batch %g", C->batch);
    fig f[2] = {fig_of(S->p, "output_tok_per_s", ws), fig_of(C->p, "output_tok_per_s", wc)};
    set_verdict(r, judged(r, f, 2, judge_f, &idle));
}

/* ---------------------------------------------------------------- g: paging */

/* The KV utilisation a point's verdict uses, and which one it is: used/reserved at the
 * step of peak reservation when results.json has it (what a full pool looks like),
 * else time-weighted, else the plain mean over steps (older files). */
static double util_of(const json_t *p, const char **kind) {
    double u = ibex_report_num(p, "kv/utilisation_at_peak");
    if (isfinite(u)) {
        *kind = "at peak reservation";
        return u;
    }
    u = ibex_report_num(p, "kv/utilisation_time_weighted");
    if (isfinite(u)) {
        *kind = "time-weighted over the steps";
        return u;
    }
    *kind = "mean over steps";
    return ibex_report_num(p, "kv/utilisation_mean");
}

static void claim_g(ibex_claims *c, const cl_ctx *x) {
    const cl_src *s = &x->src[R_PAGED];
    ibex_claim_row *r = row_new(c, "g",
                                "vLLM's PagedAttention \"raises GPU memory utilisation from 30% to 70%+\"",
                                s->name ? s->name : k_roles[R_PAGED]);
    if (!s->res) NM_RETURN(r, "%s", s->why);
    double worst_c = NAN, best_c = NAN, paged = NAN, mc_worst = NAN, mc_paged = NAN;
    size_t i;
    const json_t *p, *ref = NULL, *pp = NULL;
    const char *kind = "mean over steps";
    char parts[1024] = "";
    json_array_foreach(points_of(s->res), i, p) {
        if (!pt_ok(p)) continue;
        const char *pol = pstr(p, "kv.policy");
        const char *k;
        double u = util_of(p, &k), mc = ibex_report_num(p, "kv/max_concurrent");
        double msl = pnum(p, "kv.max_seq_len");
        if (!isfinite(u)) continue;
        ref = p;
        kind = k;
        if (!strcmp(pol, "paged")) {
            paged = u, mc_paged = mc, pp = p;
            app(parts, sizeof parts, "%spaged (%g-token blocks) %.1f%% (at most %g sequences at once)", parts[0] ? "; " : "",
                pnum(p, "kv.block_size"), u * 100, mc);
        } else if (!strcmp(pol, "contiguous")) {
            if (isnan(worst_c) || u < worst_c) worst_c = u, mc_worst = mc;
            if (isnan(best_c) || u > best_c) best_c = u;
            if (msl > 0)
                app(parts, sizeof parts, "%scontiguous reserving %g tokens per request %.1f%% (at most %g at once)",
                    parts[0] ? "; " : "", msl, u * 100, mc);
            else
                app(parts, sizeof parts, "%scontiguous reserving prompt + max new tokens %.1f%% (at most %g at once)",
                    parts[0] ? "; " : "", u * 100, mc);
        }
    }
    if (isnan(paged) || isnan(worst_c) || !ref) {
        const char *e = first_point_error(s->res);
        NM_RETURN(r, "%s: needs contiguous and paged points with status ok and a KV utilisation%s%s",
                            s->name, e ? "; first error: " : "", e ? e : "");
    }
    num(r, "util_contiguous_worst", worst_c);
    num(r, "util_contiguous_best", best_c);
    num(r, "util_paged", paged);
    num(r, "max_concurrent_paged", mc_paged);
    num(r, "max_concurrent_contiguous_worst", mc_worst);
    app(r->measured, sizeof r->measured,
        "%g requests on %s, %s KV budget; KV utilisation (bytes of real tokens / bytes reserved, %s): %s.",
        pnum(ref, "workload.requests"), ibex_report_str(ref, "model/name") ? ibex_report_str(ref, "model/name") : "?",
        fbytes(pnum(ref, "kv.budget")).s, kind, parts);
    /* the price of paging: preemptions and the prefill work they make redone */
    char cost[400] = "";
    if (pp) {
        double pre = ibex_report_num(pp, "kv/preemptions"), rec = ibex_report_num(pp, "kv/recomputed_tokens");
        double share = ibex_report_num(pp, "kv/recompute_share"), pf = ibex_report_num(pp, "kv/prefill_tokens");
        /* kv.prefill_tokens counts every prefill token, the recomputed ones too */
        if (!isfinite(share) && isfinite(rec) && pf > rec) share = rec / (pf - rec);
        if (isfinite(pre) && isfinite(rec)) {
            num(r, "paged_preemptions", pre);
            num(r, "paged_recomputed_tokens", rec);
            if (isfinite(share)) num(r, "paged_recompute_share", share);
            if (pre > 0)
                snprintf(cost, sizeof cost,
                         " Paging has a price here: %.0f preemptions (a sequence evicted when blocks ran out), %.0f tokens "
                         "recomputed%s%.0f%s of prefill work.",
                         pre, rec, isfinite(share) ? ", +" : "", isfinite(share) ? share * 100 : 0,
                         isfinite(share) ? "%" : "");
            else
                snprintf(cost, sizeof cost, " Paging cost nothing extra here: no preemption, no token recomputed.");
            app(r->measured, sizeof r->measured, "%s", cost);
        }
    }
    if (res_quick(s->res) && pnum(ref, "workload.requests") < 100) {
        not_judged(r, "quick mode capped the workload at %g requests, too few to fill the KV budget",
                   pnum(ref, "workload.requests"));
        return;
    }
    /* exact counters: no noise to weigh */
    if (paged >= ART_UTIL_AFTER && worst_c <= 0.45) {
        r->verdict = IBEX_CLAIM_HOLDS;
        snprintf(r->assessment, sizeof r->assessment,
                 "Right, and understated: per-request reservation uses %.0f%% (article ~%.0f%%; vLLM paper 20.4–38.2%%), "
                 "paging %.1f%% (article \"70%%+\"; vLLM > 96%%), and paging runs ×%.1f as many sequences at once.%s",
                 worst_c * 100, ART_UTIL_BEFORE * 100, paged * 100, mc_paged / mc_worst, cost);
    } else if (paged >= ART_UTIL_AFTER && paged > best_c) {
        r->verdict = IBEX_CLAIM_PARTLY;
        snprintf(r->assessment, sizeof r->assessment,
                 "Paging reaches %.1f%% (article 70%%+), but the per-request reservation here already uses %.0f%%, "
                 "not ~%.0f%%.%s",
                 paged * 100, worst_c * 100, ART_UTIL_BEFORE * 100, cost);
    } else {
        r->verdict = IBEX_CLAIM_WRONG;
        snprintf(r->assessment, sizeof r->assessment,
                 "Not seen: paged utilisation %.1f%% against contiguous %.1f%%..%.1f%%.%s", paged * 100, worst_c * 100,
                 best_c * 100, cost);
    }
}

/* ---------------------------------------------------------------- h: quantization */

static const int k_7b_roles[] = {R_KV7B, R_KVMEM, R_PAGED};

/* The quantization scenario's ok points by weight type (params.weights "F16", "Q8_0",
 * "Q4_0", any case), and a line on the points that failed. Returns how many of the
 * three ran. */
static int quant_points(const cl_src *s, const json_t *pt[3], char *failed, size_t cap) {
    static const char *const names[3] = {"f16", "q8_0", "q4_0"};
    pt[0] = pt[1] = pt[2] = NULL;
    failed[0] = '\0';
    if (!s->res) return 0;
    size_t i;
    const json_t *p;
    int n = 0;
    json_array_foreach(points_of(s->res), i, p) {
        const char *w = pstr(p, "weights");
        for (int k = 0; k < 3; k++) {
            if (strcasecmp(w, names[k]) != 0) continue;
            if (pt_ok(p)) {
                if (!pt[k]) pt[k] = p, n++;
            } else {
                const char *e = ibex_report_str(p, "error");
                app(failed, cap, "%s%s: %s", failed[0] ? "; " : "", names[k], e && *e ? e : "failed");
            }
        }
    }
    return n;
}

static void claim_h1(ibex_claims *c, const cl_ctx *x) {
    const char *src = NULL;
    const json_t *p = find_7b(x, k_7b_roles, 3, "model/weight_bytes_by_type", &src);
    const cl_src *qs = &x->src[R_QUANT];
    ibex_claim_row *r = row_new(c, "h1",
                                "Quantization memory: INT8 (1 byte/parameter) saves 50%, INT4 (0.5 byte) 75%; \"a 7B "
                                "model goes from 14 GB to 6 GB\"",
                                src ? src : k_roles[R_KV7B]);
    if (!p) {
        char why[1400];
        why_no_7b(x, k_7b_roles, 3, why, sizeof why);
        NM_RETURN(r, "%s", why);
    }
    double f16 = ibex_report_num(p, "model/weight_bytes_by_type/F16");
    double q8 = ibex_report_num(p, "model/weight_bytes_by_type/Q8_0");
    double q4 = ibex_report_num(p, "model/weight_bytes_by_type/Q4_0");
    if (!isfinite(f16) || !isfinite(q8) || !isfinite(q4) || f16 <= 0)
        NM_RETURN(r, "%s: model.weight_bytes_by_type lacks F16, Q8_0 or Q4_0", src);
    double s8 = 1 - q8 / f16, s4 = 1 - q4 / f16;
    num(r, "f16_bytes", f16);
    num(r, "q8_0_bytes", q8);
    num(r, "q4_0_bytes", q4);
    num(r, "q8_0_saving", s8);
    num(r, "q4_0_saving", s4);
    /* measured: the weights the quantization scenario actually loaded */
    const json_t *qp[3];
    char failed[700];
    int nq = quant_points(qs, qp, failed, sizeof failed);
    if (qp[0] && (qp[1] || qp[2])) {
        double m16 = ibex_report_num(qp[0], "memory/weights");
        app(r->measured, sizeof r->measured, "Loaded weights (%s, %s, memory.weights): F16 %s",
            ibex_report_str(qp[0], "model/name") ? ibex_report_str(qp[0], "model/name") : "?", qs->name, fbytes(m16).s);
        static const char *const tn[3] = {"F16", "Q8_0", "Q4_0"};
        for (int k = 1; k < 3; k++) {
            if (!qp[k]) continue;
            double m = ibex_report_num(qp[k], "memory/weights");
            app(r->measured, sizeof r->measured, ", %s %s (%+.1f%%)", tn[k], fbytes(m).s, (m / m16 - 1) * 100);
            num(r, k == 1 ? "measured_q8_0_saving" : "measured_q4_0_saving", 1 - m / m16);
        }
        app(r->measured, sizeof r->measured, ".%s%s", failed[0] ? " Failed: " : "", failed);
    } else {
        app(r->measured, sizeof r->measured, "Loaded weights: not measured (%s).",
            !qs->res ? qs->why : failed[0] ? failed : nq ? "no F16 point beside a quantized one" : "no point ran");
    }
    bool ok8 = fabs(s8 - ART_INT8_SAVING) <= 0.05, ok4 = fabs(s4 - ART_INT4_SAVING) <= 0.05;
    bool ok16 = fabs(f16 / ART_F16_7B_BYTES - 1) <= 0.10;
    double d8 = fabs(q8 / ART_SMALL_7B_BYTES - 1), d4 = fabs(q4 / ART_SMALL_7B_BYTES - 1);
    bool ok6 = fmin(d8, d4) <= 0.15;
    int good = ok8 + ok4 + ok16 + ok6;
    num(r, "parts_holding", good);
    r->verdict = good == 4 ? IBEX_CLAIM_HOLDS : good > 0 ? IBEX_CLAIM_PARTLY : IBEX_CLAIM_WRONG;
    snprintf(r->assessment, sizeof r->assessment,
             "From the exact bytes of the %s shapes (%s; norms F32): F16 %s, Q8_0 (8.5 bits/weight with its scales) %s, "
             "Q4_0 (4.5 bits/weight) %s. Savings %s: −%.1f%% and −%.1f%% against −50%% and −75%% (the per-block scales "
             "cost 0.5 bit per weight). \"14 GB\" for F16 is %s (%.2f GB; the article is %+.0f%% off). \"6 GB\" is %s: "
             "the article is %+.0f%% off Q8_0's %.2f GB and %+.0f%% off Q4_0's %.2f GB.",
             ibex_report_str(p, "model/name"), src, fgb(f16).s, fgb(q8).s, fgb(q4).s, ok8 && ok4 ? "about right" : "off",
             s8 * 100, s4 * 100, ok16 ? "right" : "wrong", f16 / 1e9, (ART_F16_7B_BYTES / f16 - 1) * 100,
             ok6 ? "close to one of them" : "neither", (ART_SMALL_7B_BYTES / q8 - 1) * 100, q8 / 1e9,
             (ART_SMALL_7B_BYTES / q4 - 1) * 100, q4 / 1e9);
}

/* v: decode tok/s of F16, Q8_0, Q4_0. holds: both speed-ups within 10 points of the
 * article's +20 % / +40 %; partly: both quantized types > 5 % faster than F16; wrong:
 * otherwise. */
static ibex_claim_verdict judge_h2(const double *v, const void *c) {
    (void)c;
    double s8 = v[1] / v[0] - 1, s4 = v[2] / v[0] - 1;
    if (fabs(s8 - ART_INT8_SPEEDUP) <= 0.10 && fabs(s4 - ART_INT4_SPEEDUP) <= 0.10) return IBEX_CLAIM_HOLDS;
    if (s8 > 0.05 && s4 > 0.05) return IBEX_CLAIM_PARTLY;
    return IBEX_CLAIM_WRONG;
}

static void claim_h2(ibex_claims *c, const cl_ctx *x) {
    const cl_src *qs = &x->src[R_QUANT];
    const char *src = NULL;
    const json_t *p = find_7b(x, k_7b_roles, 3, "model/weight_bytes_by_type", &src);
    ibex_claim_row *r = row_new(c, "h2", "Quantization speed: INT8 \"~20% faster\", INT4 \"~40% faster\"",
                                qs->name ? qs->name : k_roles[R_QUANT]);
    double f16 = p ? ibex_report_num(p, "model/weight_bytes_by_type/F16") : NAN;
    double q8 = p ? ibex_report_num(p, "model/weight_bytes_by_type/Q8_0") : NAN;
    double q4 = p ? ibex_report_num(p, "model/weight_bytes_by_type/Q4_0") : NAN;
    char ceiling[600] = "";
    if (isfinite(f16) && isfinite(q8) && isfinite(q4) && q8 > 0 && q4 > 0) {
        num(r, "ceiling_q8_0_speedup", f16 / q8);
        num(r, "ceiling_q4_0_speedup", f16 / q4);
        snprintf(ceiling, sizeof ceiling,
                 " ESTIMATE beside it, not a measurement: batch-1 decode is bound by memory bandwidth, so the ceiling "
                 "speed-up is the ratio of weight bytes (%s): Q8_0 ×%.2f (%+.0f%%), Q4_0 ×%.2f (%+.0f%%), which real "
                 "kernels reach only in part (dequantization costs compute).",
                 src, f16 / q8, (f16 / q8 - 1) * 100, f16 / q4, (f16 / q4 - 1) * 100);
    }
    const json_t *qp[3];
    char failed[700];
    quant_points(qs, qp, failed, sizeof failed);
    double t[3] = {NAN, NAN, NAN};
    for (int k = 0; k < 3; k++)
        if (qp[k]) t[k] = ibex_report_num(qp[k], "metrics/decode_tok_per_s");
    if (qs->res && res_quick(qs->res) && !failed[0] && (!qp[0] || !qp[1] || !qp[2])) {
        snprintf(r->measured, sizeof r->measured, "quick run: F16 %s, Q8_0 %s, Q4_0 %s.", qp[0] ? "ran" : "not run",
                 qp[1] ? "ran" : "not run", qp[2] ? "ran" : "not run");
        snprintf(r->assessment, sizeof r->assessment, "%s", ceiling + (ceiling[0] ? 1 : 0));
        not_judged(r, "quick mode kept the first and last weight types only");
        return;
    }
    if (!qs->res || !qp[0] || !qp[1] || !qp[2] || !isfinite(t[0]) || !isfinite(t[1]) || !isfinite(t[2]) || t[0] <= 0) {
        char why[1200];
        if (!qs->res) snprintf(why, sizeof why, "%s", qs->why);
        else if (failed[0]) snprintf(why, sizeof why, "points failed: %s", failed);
        else snprintf(why, sizeof why, "%s: needs f16, q8_0 and q4_0 points with status ok and decode steps", qs->name);
        r->verdict = IBEX_CLAIM_NOT_MEASURED;
        snprintf(r->measured, sizeof r->measured, "not measured (%s).", why);
        snprintf(r->assessment, sizeof r->assessment, "cannot be checked without this measurement.%s", ceiling);
        return;
    }
    static const char *const tn[3] = {"F16", "Q8_0", "Q4_0"};
    fig f[3];
    app(r->measured, sizeof r->measured, "Batch-1 decode on %s (%s): ",
        ibex_report_str(qp[0], "model/name") ? ibex_report_str(qp[0], "model/name") : "?", qs->name);
    for (int k = 0; k < 3; k++) {
        char w[64], b[128];
        snprintf(w, sizeof w, "decode tok/s of %s", tn[k]);
        f[k] = fig_of(qp[k], "decode_tok_per_s", w);
        ibex_report_spread z;
        ibex_report_spread_get(qp[k], "decode_tok_per_s", &z);
        app(r->measured, sizeof r->measured, "%s%s %s", k ? ", " : "", tn[k], ibex_report_fmt_spread(&z, false, "tok/s", "-", b, sizeof b));
        if (k) app(r->measured, sizeof r->measured, " (%+.0f%%)", (t[k] / t[0] - 1) * 100);
    }
    app(r->measured, sizeof r->measured, ".");
    /* perplexity beside the speed when the scenario measured it (its `quality:` key) */
    double ppl[3];
    for (int k = 0; k < 3; k++) ppl[k] = ibex_report_num(qp[k], "quality/perplexity");
    if (isfinite(ppl[0]) && isfinite(ppl[1]) && isfinite(ppl[2]) && ppl[0] > 0) {
        const char *txt = ibex_report_str(qp[0], "quality/text");
        app(r->measured, sizeof r->measured,
            " Perplexity on %s (ctx %.0f, %.0f tokens scored): F16 %.5g, Q8_0 %.5g (%+.2f%%), Q4_0 %.5g (%+.2f%%)%s.",
            txt ? txt : "?", ibex_report_num(qp[0], "quality/ctx"), ibex_report_num(qp[0], "quality/tokens_scored"),
            ppl[0], ppl[1], (ppl[1] / ppl[0] - 1) * 100, ppl[2], (ppl[2] / ppl[0] - 1) * 100,
            strncmp(ibex_report_str(qp[0], "model/name") ? ibex_report_str(qp[0], "model/name") : "", "synthetic", 9)
                    == 0
                ? " (random synthetic weights: the change is the formats' rounding, not a language model's quality)"
                : "");
        num(r, "q8_0_perplexity_ratio", ppl[1] / ppl[0]);
        num(r, "q4_0_perplexity_ratio", ppl[2] / ppl[0]);
    }
    num(r, "q8_0_speedup", t[1] / t[0]);
    num(r, "q4_0_speedup", t[2] / t[0]);
    ibex_claim_verdict v = judge_h2(t, NULL);
    snprintf(r->assessment, sizeof r->assessment, "%s: Q8_0 decodes %+.0f%% and Q4_0 %+.0f%% against F16 (article +20%% "
             "and +40%%).%s",
             v == IBEX_CLAIM_HOLDS ? "Right" : v == IBEX_CLAIM_PARTLY ? "Faster, by other amounts" : "Not seen",
             (t[1] / t[0] - 1) * 100, (t[2] / t[0] - 1) * 100, ceiling);
    set_verdict(r, judged(r, f, 3, judge_h2, NULL));
}

/* ---------------------------------------------------------------- evaluation */

const char *ibex_claim_verdict_name(ibex_claim_verdict v) {
    switch (v) {
    case IBEX_CLAIM_HOLDS: return "holds";
    case IBEX_CLAIM_PARTLY: return "partly";
    case IBEX_CLAIM_WRONG: return "wrong";
    case IBEX_CLAIM_INCONCLUSIVE: return "inconclusive";
    case IBEX_CLAIM_NOT_JUDGED: return "not judged";
    default: return "not measured";
    }
}

const ibex_claim_row *ibex_claims_row(const ibex_claims *c, const char *id) {
    if (!c || !id) return NULL;
    for (int i = 0; i < c->n_rows; i++)
        if (!strcmp(c->rows[i].id, id)) return &c->rows[i];
    return NULL;
}

double ibex_claim_value(const ibex_claim_row *r, const char *name) {
    if (!r || !name) return NAN;
    for (int i = 0; i < r->n_nums; i++)
        if (!strcmp(r->nums[i].name, name)) return r->nums[i].value;
    return NAN;
}

ibex_status ibex_claims_evaluate(const ibex_claims_sub *subs, size_t n, ibex_claims *out, ibex_err *err) {
    if (!out || (n > 0 && !subs)) return ibex_err_set(err, IBEX_ERR_INVALID, "claims: no output or no scenarios given");
    if (n > IBEX_CLAIMS_MAX_SUBS)
        return ibex_err_set(err, IBEX_ERR_INVALID, "claims: %zu scenarios, at most %d", n, IBEX_CLAIMS_MAX_SUBS);
    out->n_subs = 0;
    out->n_rows = 0;
    out->warnings[0] = '\0';
    out->quick = false;
    json_t *loaded[IBEX_CLAIMS_MAX_SUBS] = {0};
    char why[IBEX_CLAIMS_MAX_SUBS][640];
    for (size_t i = 0; i < n; i++) {
        const ibex_claims_sub *sb = &subs[i];
        why[i][0] = '\0';
        if (sb->error && *sb->error) {
            snprintf(why[i], sizeof why[i], "%s: %s", sb->name ? sb->name : "?", sb->error);
        } else if (!sb->dir) {
            snprintf(why[i], sizeof why[i], "%s: did not run", sb->name ? sb->name : "?");
        } else {
            ibex_err e = {0};
            loaded[i] = ibex_report_load(sb->dir, &e);
            if (!loaded[i]) snprintf(why[i], sizeof why[i], "%s", e.msg);
        }
        snprintf(out->subs[i].name, sizeof out->subs[i].name, "%s", sb->name ? sb->name : "?");
        snprintf(out->subs[i].dir, sizeof out->subs[i].dir, "%s", sb->dir ? sb->dir : "");
        if (!loaded[i]) {
            snprintf(out->subs[i].status, sizeof out->subs[i].status, "not measured: %s", why[i]);
        } else {
            size_t ok, all;
            count_ok(loaded[i], &ok, &all);
            const json_t *cf = json_object_get(loaded[i], "complete");
            if (json_is_true(cf) && ok == all)
                snprintf(out->subs[i].status, sizeof out->subs[i].status, "ok (%zu point%s)", all, all == 1 ? "" : "s");
            else
                snprintf(out->subs[i].status, sizeof out->subs[i].status,
                         "incomplete: %zu of %zu points ok (interrupted or a point failed)", ok, all);
        }
        out->n_subs++;
        if (loaded[i]) {
            size_t nw = 0, np = 0, k;
            const json_t *pt, *w1 = NULL;
            json_array_foreach(points_of(loaded[i]), k, pt) {
                np++;
                const json_t *w = ibex_report_get(pt, "conditions/warning");
                if (json_is_string(w) && json_string_length(w) > 0) {
                    nw++;
                    if (!w1) w1 = w;
                }
            }
            if (nw)
                app(out->warnings, sizeof out->warnings, "%s%s: %zu of %zu points measured on a busy machine (%s).",
                    out->warnings[0] ? " " : "", out->subs[i].name, nw, np, json_string_value(w1));
            if (res_quick(loaded[i])) out->quick = true;
        }
    }
    cl_ctx x;
    memset(&x, 0, sizeof x);
    for (int r = 0; r < R_COUNT; r++) {
        cl_src *s = &x.src[r];
        for (size_t i = 0; i < n && !s->name; i++) {
            if (!subs[i].name || !role_matches(subs[i].name, k_roles[r])) continue;
            s->name = subs[i].name;
            s->res = loaded[i];
            if (!s->res) snprintf(s->why, sizeof s->why, "%s", why[i]);
        }
        if (!s->name)
            snprintf(s->why, sizeof s->why, "no scenario named '%s' (or '*_%s') in the suite", k_roles[r], k_roles[r]);
    }
    claim_a(out, &x);
    claim_b(out, &x);
    claim_c(out, &x);
    claim_d(out, &x);
    claim_e(out, &x);
    claim_f(out, &x);
    claim_g(out, &x);
    claim_h1(out, &x);
    claim_h2(out, &x);
    for (size_t i = 0; i < n; i++) json_decref(loaded[i]);
    return IBEX_OK;
}

/* ---------------------------------------------------------------- writers */

/* Writes s into a Markdown table cell: '|' escaped, line breaks as spaces. */
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n' || *s == '\r') fputc(' ', f);
        else fputc(*s, f);
    }
}

static void count_verdicts(const ibex_claims *c, int counts[IBEX_CLAIM_VERDICTS]) {
    for (int k = 0; k < IBEX_CLAIM_VERDICTS; k++) counts[k] = 0;
    for (int i = 0; i < c->n_rows; i++) counts[c->rows[i].verdict]++;
}

ibex_status ibex_claims_markdown(const ibex_claims *c, FILE *f, ibex_err *err) {
    if (!c || !f) return ibex_err_set(err, IBEX_ERR_INVALID, "claims.md: no claims or no file");
    int cnt[IBEX_CLAIM_VERDICTS];
    count_verdicts(c, cnt);
    fprintf(f, "# Seed claims: the article against ibex — %s\n\n", c->suite[0] ? c->suite : "claims");
    if (!c->complete)
        fprintf(f, "> **Incomplete:** the suite was interrupted or a scenario did not run; the claims below use what "
                   "was measured, and the rest say \"not measured\".\n\n");
    if (c->description[0]) fprintf(f, "%s\n\n", c->description);
    fprintf(f, "The article: *为什么你问一个问题，AI 要“思考”好几秒？* (\"Why does the AI 'think' for several seconds "
               "when you ask a question?\", DESIGN.md seed 000). Its claims are quoted in English with its own numbers; "
               "every measured number below comes from the results.json of the scenario named beside it.\n\n");
    if (c->warnings[0])
        fprintf(f, "> **Busy machine:** %s Timings taken under load are slower and noisier; verdicts that rest on "
                   "them say \"inconclusive\" when the spread does not allow one.\n\n",
                c->warnings);
    if (c->quick)
        fprintf(f, "> **Quick mode:** one repetition per point and shortened sweeps. A claim whose experiment the "
                   "quick run did not keep says \"not judged\"; a timing with one repetition is under-sampled, so "
                   "its verdict is \"inconclusive\". Byte counts are exact in either mode.\n\n");
    fprintf(f, "**Verdicts:** %d hold, %d partly, %d wrong, %d inconclusive, %d not judged, %d not measured.\n\n",
            cnt[IBEX_CLAIM_HOLDS], cnt[IBEX_CLAIM_PARTLY], cnt[IBEX_CLAIM_WRONG], cnt[IBEX_CLAIM_INCONCLUSIVE],
            cnt[IBEX_CLAIM_NOT_JUDGED], cnt[IBEX_CLAIM_NOT_MEASURED]);
    fprintf(f, "## Scenarios run\n\n| scenario | status | report |\n|---|---|---|\n");
    for (int i = 0; i < c->n_subs; i++) {
        fputs("| ", f);
        md_cell(f, c->subs[i].name);
        fputs(" | ", f);
        md_cell(f, c->subs[i].status);
        fputs(" | ", f);
        if (c->subs[i].dir[0] && strncmp(c->subs[i].status, "not measured", 12) != 0) {
            fputs("[report.md](", f);
            md_cell(f, c->subs[i].dir);
            fputs("/report.md)", f);
        } else {
            fputs("-", f);
        }
        fputs(" |\n", f);
    }
    fprintf(f, "\n## Claims\n\n| # | the article says | ibex measured | verdict | right or wrong, by how much |\n"
               "|---|---|---|---|---|\n");
    for (int i = 0; i < c->n_rows; i++) {
        const ibex_claim_row *r = &c->rows[i];
        fprintf(f, "| %s | ", r->id);
        md_cell(f, r->claim);
        fputs(" | ", f);
        md_cell(f, r->measured);
        fputs(" *(", f);
        md_cell(f, r->source);
        fprintf(f, ")* | **%s**", ibex_claim_verdict_name(r->verdict));
        if (r->note[0] && (r->verdict == IBEX_CLAIM_INCONCLUSIVE || r->verdict == IBEX_CLAIM_NOT_JUDGED)) {
            fputs(" (", f);
            md_cell(f, r->note);
            fputc(')', f);
        }
        fputs(" | ", f);
        md_cell(f, r->assessment);
        fputs(" |\n", f);
    }
    fprintf(f,
            "\n## How the verdicts are decided\n\n"
            "Every timed figure is the median of its repetitions, shown with its spread (± sd, CV). A verdict that "
            "rests on timings is **inconclusive** when one of its figures is noisy (CV above 10 %%, the runner's "
            "noise guard, or fewer than 3 repetitions) or when the verdict would change anywhere within the spread "
            "of the repetitions (the CI of the median when there are enough, else their range: every corner is "
            "tried, so each threshold has a dead zone as wide as the noise). A quick run (`--quick`) that dropped "
            "what a claim needs says **not judged**; byte counts are exact and judged in either mode.\n\n"
            "- **a** holds when the no-cache total time grows with a local exponent (between the two longest runs, "
            "never the fit over all of them) ≥ 1.5 that is ≥ 0.4 above the cached one; partly when it is ≥ 0.15 "
            "above; wrong otherwise.\n"
            "- **b** holds when per-step decode time orders greedy < sampling (by > 5%%) < widest beam; partly when "
            "only the beam is > 5%% slower than greedy.\n"
            "- **c** the exact size is 2 · layers · KV heads · head dim · bytes · tokens (model.kv_bytes_per_token_f16 "
            "× 2048); holds within 10%% of the article, partly within 25%%.\n"
            "- **d** KV share = KV peak reserved / (KV + F16 weights), paged KV when measured; holds when > 60%% at "
            "the smallest batch, partly when 60%% is reachable within the KV pool (kv.budget over one sequence's "
            "bytes; the weights come on top of the pool).\n"
            "- **e** judged on the local exponents between the article's own points, 512 and 2048 (a 2047-token run "
            "stands for 2048): holds when attention's is in [1.6, 2.4] and the whole prefill's 2048/512 ratio (4^b) "
            "is within 25%% of 16×; partly when only attention is quadratic. Needs at least 3 prompt lengths.\n"
            "- **f** compares at the largest batch below the number of requests (where a freed slot can be "
            "refilled): holds when continuous batching gives ≥ 1.10× the output throughput of static batching; "
            "partly when it does not but static batching leaves ≥ 10%% of its slot-steps idle "
            "(kv.idle_slot_steps / (batch × steps)).\n"
            "- **g** KV utilisation at peak reservation (else time-weighted, else the mean over steps, as stated): "
            "holds when paged ≥ 70%% and the worst contiguous ≤ 45%%; partly when paged ≥ 70%% and above every "
            "contiguous. The price of paging (preemptions, recomputed tokens, extra prefill) is stated beside it.\n"
            "- **h1** four checks on the exact 7B bytes (Q8_0 saving within 5 points of 50%%, Q4_0 within 5 of 75%%, "
            "F16 within 10%% of 14 GB, 6 GB within 15%% of Q8_0 or Q4_0): all hold → holds, some → partly; the "
            "measured column shows the weights a quantized run actually loaded.\n"
            "- **h2** batch-1 decode tok/s of F16, Q8_0 and Q4_0 (claims_quantization): holds when both speed-ups "
            "are within 10 points of +20%% / +40%%, partly when both are > 5%%; not measured when those points "
            "failed (the reason is given).\n\n"
            "Timings are from a shared CPU machine: they rank strategies and show growth rates; the byte counts "
            "(c, d, g, h1) are exact and identical on every machine.\n");
    return ferror(f) ? ibex_err_set(err, IBEX_ERR_IO, "claims.md: write failed") : IBEX_OK;
}

/* One RFC 4180 field. */
static void csv_field(FILE *f, const char *s) {
    bool q = strpbrk(s, ",\"\r\n") != NULL || (s[0] == ' ') || (s[0] && s[strlen(s) - 1] == ' ');
    if (!q) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

ibex_status ibex_claims_csv(const ibex_claims *c, FILE *f, ibex_err *err) {
    if (!c || !f) return ibex_err_set(err, IBEX_ERR_INVALID, "claims.csv: no claims or no file");
    fputs("id,claim,source,verdict,measured,assessment,numbers\n", f);
    for (int i = 0; i < c->n_rows; i++) {
        const ibex_claim_row *r = &c->rows[i];
        char nums[1024] = "";
        for (int k = 0; k < r->n_nums; k++) app(nums, sizeof nums, "%s%s=%.17g", k ? ";" : "", r->nums[k].name, r->nums[k].value);
        csv_field(f, r->id);
        fputc(',', f);
        csv_field(f, r->claim);
        fputc(',', f);
        csv_field(f, r->source);
        fputc(',', f);
        csv_field(f, ibex_claim_verdict_name(r->verdict));
        fputc(',', f);
        csv_field(f, r->measured);
        fputc(',', f);
        csv_field(f, r->assessment);
        fputc(',', f);
        csv_field(f, nums);
        fputc('\n', f);
    }
    return ferror(f) ? ibex_err_set(err, IBEX_ERR_IO, "claims.csv: write failed") : IBEX_OK;
}

ibex_status ibex_claims_terminal(const ibex_claims *c, FILE *f, ibex_err *err) {
    if (!c || !f) return ibex_err_set(err, IBEX_ERR_INVALID, "claims: no claims or no file");
    int cnt[IBEX_CLAIM_VERDICTS];
    count_verdicts(c, cnt);
    fprintf(f, "Seed claims (%s)%s%s: %d hold, %d partly, %d wrong, %d inconclusive, %d not judged, %d not measured\n",
            c->suite[0] ? c->suite : "claims", c->complete ? "" : " [INCOMPLETE]", c->quick ? " [QUICK]" : "",
            cnt[IBEX_CLAIM_HOLDS], cnt[IBEX_CLAIM_PARTLY], cnt[IBEX_CLAIM_WRONG], cnt[IBEX_CLAIM_INCONCLUSIVE],
            cnt[IBEX_CLAIM_NOT_JUDGED], cnt[IBEX_CLAIM_NOT_MEASURED]);
    if (c->warnings[0]) fprintf(f, "Busy machine: %s\n", c->warnings);
    for (int i = 0; i < c->n_rows; i++) {
        const ibex_claim_row *r = &c->rows[i];
        fprintf(f, "\n[%s] %-12s %s\n", r->id, ibex_claim_verdict_name(r->verdict), r->claim);
        if (r->note[0] && (r->verdict == IBEX_CLAIM_INCONCLUSIVE || r->verdict == IBEX_CLAIM_NOT_JUDGED))
            fprintf(f, "     (%s)\n", r->note);
        fprintf(f, "     measured (%s): %s\n", r->source, r->measured);
        fprintf(f, "     verdict: %s\n", r->assessment);
    }
    return ferror(f) ? ibex_err_set(err, IBEX_ERR_IO, "claims: write failed") : IBEX_OK;
}

static ibex_status fill_md(FILE *f, void *ctx, ibex_err *err) { return ibex_claims_markdown(ctx, f, err); }
static ibex_status fill_csv(FILE *f, void *ctx, ibex_err *err) { return ibex_claims_csv(ctx, f, err); }

ibex_status ibex_report_claims(const char *suite_out_dir, const char *suite_name, const char *description,
                               const ibex_claims_sub *subs, size_t n, bool complete, ibex_claims *out,
                               ibex_err *err) {
    if (!suite_out_dir) return ibex_err_set(err, IBEX_ERR_INVALID, "claims: no output directory");
    ibex_claims *c = out ? out : calloc(1, sizeof *c);
    if (!c) return ibex_err_set(err, IBEX_ERR_NOMEM, "claims: out of memory");
    ibex_status st = ibex_claims_evaluate(subs, n, c, err);
    if (st == IBEX_OK) {
        snprintf(c->suite, sizeof c->suite, "%s", suite_name ? suite_name : "");
        snprintf(c->description, sizeof c->description, "%s", description ? description : "");
        c->complete = complete;
        /* links relative to the suite's directory */
        size_t l = strlen(suite_out_dir);
        for (int i = 0; i < c->n_subs; i++) {
            char *d = c->subs[i].dir;
            if (strncmp(d, suite_out_dir, l) == 0 && d[l] == '/') memmove(d, d + l + 1, strlen(d + l + 1) + 1);
        }
        char path[1200];
        snprintf(path, sizeof path, "%s/claims.md", suite_out_dir);
        st = ibex_report_write_atomic(path, fill_md, c, err);
        if (st == IBEX_OK) {
            snprintf(path, sizeof path, "%s/claims.csv", suite_out_dir);
            st = ibex_report_write_atomic(path, fill_csv, c, err);
        }
    }
    if (!out) free(c);
    return st;
}
