/* compare.c — `ibex compare`'s library: loading runs and suites, matching points by
 * parameters, the per-metric decisions (MWU + floor for timings, exact counters,
 * instruction counts), provenance warnings, and the Markdown / JSON reports. The rules
 * are in compare.h; why they are what they are is in docs/COMPARE.md. */
#include "reports/compare.h"

#include <dirent.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reports/mann_whitney.h"
#include "reports/reports.h"

/* ---------------------------------------------------------------- names and options */

const char *ibex_cmp_verdict_name(ibex_cmp_verdict v) {
    switch (v) {
    case IBEX_CMP_PASS: return "pass";
    case IBEX_CMP_IMPROVED: return "improved";
    case IBEX_CMP_REGRESSION: return "REGRESSION";
    case IBEX_CMP_INCONCLUSIVE: return "inconclusive";
    case IBEX_CMP_CHANGED: return "CHANGED";
    case IBEX_CMP_ALLOWED: return "allowed";
    case IBEX_CMP_MISSING: return "missing";
    }
    return "?";
}

ibex_compare_opts ibex_compare_opts_default(void) {
    return (ibex_compare_opts){.threshold = 0.05, .alpha = 0.05, .instr_threshold = 0.01,
                               .timings = IBEX_CMP_TIMINGS_STRICT};
}

/* The timing metrics of a repetition (the results.json contract), with their direction.
 * `summary` is where an older file without per-repetition samples keeps the median. */
static const struct {
    const char *name;
    bool higher_is_better;
    const char *summary;
} k_timings[] = {
    {"wall_s", false, "metrics/wall_s"},
    {"cpu_s", false, NULL}, /* per-repetition CPU time, where a run records it: robust to time-slicing */
    {"output_tok_per_s", true, "metrics/output_tok_per_s"},
    {"total_tok_per_s", true, "metrics/total_tok_per_s"},
    {"hypothesis_tok_per_s", true, "metrics/hypothesis_tok_per_s"},
    {"prefill_tok_per_s", true, "metrics/prefill_tok_per_s"},
    {"decode_tok_per_s", true, "metrics/decode_tok_per_s"},
    {"decode_ms_per_token", false, "metrics/decode_ms_per_token"},
    {"prefill_s", false, "metrics/prefill_s"},
    {"decode_s", false, "metrics/decode_s"},
    {"ttft_p50", false, "metrics/ttft/p50"},
    {"ttft_p90", false, "metrics/ttft/p90"},
    {"ttft_p99", false, "metrics/ttft/p99"},
    {"tpot_p50", false, "metrics/tpot/p50"},
    {"tpot_p99", false, "metrics/tpot/p99"},
    {"itl_p50", false, "metrics/itl/p50"},
    {"itl_p99", false, "metrics/itl/p99"},
    {"e2e_p50", false, "metrics/e2e/p50"},
    {"e2e_p99", false, "metrics/e2e/p99"},
};

/* The exact counters of COMMON contract (ops.*.*.flops / .bytes are added per op). */
static const char *const k_counters[] = {
    "kv/pool_bytes",     "kv/n_blocks",   "kv/peak_reserved",     "kv/peak_used",   "kv/fragmentation_peak",
    "kv/max_concurrent", "kv/preemptions", "kv/recomputed_tokens", "kv/cow_copies", "kv/fork_copies",
    "kv/prefill_tokens", "kv/decode_tokens", "metrics/steps",
};

/* Whether name matches one of the comma-separated fnmatch patterns in list. */
static bool in_list(const char *list, const char *name) {
    if (!list) return false;
    const char *s = list;
    while (*s) {
        size_t n = strcspn(s, ",");
        char pat[160];
        if (n > 0 && n < sizeof pat) {
            memcpy(pat, s, n), pat[n] = 0;
            if (!fnmatch(pat, name, 0)) return true;
        }
        s += n;
        if (*s == ',') s++;
    }
    return false;
}

static bool wanted(const ibex_compare_opts *o, const char *metric) { return !o->metrics || in_list(o->metrics, metric); }

/* ---------------------------------------------------------------- loading */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static json_t *member(const char *name, json_t *results) {
    json_t *m = json_pack("{s:s,s:o}", "member", name, "results", results);
    if (!m) json_decref(results);
    return m;
}

json_t *ibex_compare_load(const char *path, ibex_err *err) {
    struct stat st;
    if (!path || stat(path, &st)) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: no such file or folder", path ? path : "(null)");
        return NULL;
    }
    json_t *out = json_array();
    if (!out) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        return NULL;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/results.json", path);
    if (S_ISREG(st.st_mode) || !stat(p, &st)) { /* one run */
        json_t *r = ibex_report_load(path, err);
        if (!r || json_array_append_new(out, member("", r))) {
            json_decref(out);
            return NULL;
        }
        return out;
    }
    /* a suite: every sub-folder holding a results.json, in name order */
    DIR *d = opendir(path);
    if (!d) {
        json_decref(out);
        ibex_err_set(err, IBEX_ERR_IO, "%s: cannot open the folder", path);
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s/results.json", path, de->d_name);
        if (stat(p, &st) || !S_ISREG(st.st_mode)) continue;
        if (n == cap) {
            char **g = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *g);
            if (!g) break;
            names = g;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    ibex_status fail = IBEX_OK;
    for (size_t i = 0; i < n && !fail; i++) {
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        json_t *r = ibex_report_load(p, err);
        if (!r || json_array_append_new(out, member(names[i], r))) fail = r ? IBEX_ERR_NOMEM : err->status;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!fail && n == 0) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: neither a results.json, a run folder nor a suite (no sub-folder has a results.json)",
                     path);
        fail = IBEX_ERR_IO;
    }
    if (fail) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- the result */

static bool push_str(char ***a, size_t *n, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **g = realloc(*a, (*n + 1) * sizeof *g);
    if (!g) return false;
    *a = g;
    return (g[*n] = strdup(buf)) ? (++*n, true) : false;
}

static ibex_compare_row *push_row(ibex_compare_result *r, size_t *cap) {
    if (r->n_rows == *cap) {
        ibex_compare_row *g = realloc(r->rows, (*cap = *cap ? 2 * *cap : 64) * sizeof *g);
        if (!g) return NULL;
        r->rows = g;
    }
    ibex_compare_row *w = &r->rows[r->n_rows++];
    memset(w, 0, sizeof *w);
    w->base = w->new_ = w->change = w->p = NAN;
    return w;
}

void ibex_compare_free(ibex_compare_result *r) {
    if (!r) return;
    free(r->rows);
    for (size_t i = 0; i < r->n_unmatched_base; i++) free(r->unmatched_base[i]);
    for (size_t i = 0; i < r->n_unmatched_new; i++) free(r->unmatched_new[i]);
    for (size_t i = 0; i < r->n_warnings; i++) free(r->warnings[i]);
    free(r->unmatched_base), free(r->unmatched_new), free(r->warnings);
    free(r);
}

int ibex_compare_exit_code(const ibex_compare_result *r) {
    if (!r || r->n_matched == 0) return 2;
    return r->n_regressions || r->n_changed ? 1 : 0;
}

/* ---------------------------------------------------------------- provenance */

/* A provenance field as text, with the pre-provenance location as fallback; "" when
 * absent. */
static void prov_text(const json_t *res, const char *key, const char *old, char *buf, size_t n) {
    const json_t *v = ibex_report_get(res, key);
    if (!v && old) v = ibex_report_get(res, old);
    buf[0] = 0;
    if (!v || json_is_null(v)) return;
    if (json_is_string(v)) {
        snprintf(buf, n, "%s", json_string_value(v));
    } else {
        char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        snprintf(buf, n, "%s", t ? t : "");
        free(t);
    }
}

/* Adds a warning per differing provenance field; returns whether the machine and build
 * match (the fields that decide whether timings are comparable). */
static bool provenance(ibex_compare_result *r, const json_t *base, const json_t *nw) {
    static const struct {
        const char *key, *old;
        bool machine; /* decides comparability of timings */
    } f[] = {
        {"provenance/cpu_model", "machine/cpu", true},   {"provenance/cpu_cores", "machine/cores", true},
        {"provenance/compiler", NULL, true},             {"provenance/c_flags", NULL, true},
        {"provenance/build_type", "ibex/build_type", true}, {"provenance/native", NULL, true},
        {"provenance/hostname", NULL, true},             {"provenance/threads_default", NULL, false},
        {"provenance/omp_env", NULL, false},             {"provenance/mem_total_bytes", "machine/memory_bytes", false},
        {"machine/huge_pages", NULL, false}, /* weights and KV on 2 MiB pages or not: 1.3x on attention */
    };
    bool same = true;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        char a[512], b[512];
        prov_text(base, f[i].key, f[i].old, a, sizeof a);
        prov_text(nw, f[i].key, f[i].old, b, sizeof b);
        if (!strcmp(a, b)) continue;
        if (f[i].machine) same = false;
        push_str(&r->warnings, &r->n_warnings, "%s differs: BASE '%s', NEW '%s'", strchr(f[i].key, '/') + 1,
                 a[0] ? a : "(not recorded)", b[0] ? b : "(not recorded)");
    }
    /* a machine is only known to match when both runs recorded their provenance */
    if (!json_is_object(json_object_get(base, "provenance")) || !json_is_object(json_object_get(nw, "provenance"))) {
        bool pa = json_is_object(json_object_get(base, "provenance")), pb = json_is_object(json_object_get(nw, "provenance"));
        push_str(&r->warnings, &r->n_warnings, "%s no provenance: cannot tell whether the machines match",
                 !pa && !pb ? "BASE and NEW have" : pa ? "NEW has" : "BASE has");
        same = false;
    }
    const json_t *da = ibex_report_get(base, "provenance/git_dirty"), *db = ibex_report_get(nw, "provenance/git_dirty");
    if (json_is_true(da)) push_str(&r->warnings, &r->n_warnings, "BASE was built from a tree with uncommitted changes");
    if (json_is_true(db)) push_str(&r->warnings, &r->n_warnings, "NEW was built from a tree with uncommitted changes");
    return same;
}

/* ---------------------------------------------------------------- matching */

typedef struct pt_ref {
    const json_t *pt;
    const json_t *res; /* the run it belongs to */
    char *key;         /* member + canonical params */
    char label[320];
    bool used;
} pt_ref;

/* Parameters that do not change what a point measures: a base with 10 repetitions
 * matches a new run with 5. */
static const char *const k_ignored_params[] = {"repeat", "warmup"};

static size_t collect(const json_t *runs, pt_ref **out) {
    size_t n = 0, cap = 0;
    *out = NULL;
    size_t ri;
    const json_t *run;
    json_array_foreach(runs, ri, run) {
        const char *mem = json_string_value(json_object_get(run, "member"));
        const json_t *res = json_object_get(run, "results");
        const json_t *pts = json_object_get(res, "points");
        size_t i;
        const json_t *pt;
        json_array_foreach(pts, i, pt) {
            if (n == cap) {
                pt_ref *g = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof *g);
                if (!g) return n;
                *out = g;
            }
            pt_ref *p = &(*out)[n];
            memset(p, 0, sizeof *p);
            p->pt = pt, p->res = res;
            json_t *par = json_deep_copy(json_object_get(pt, "params"));
            char *canon = NULL;
            if (par && json_is_object(par)) {
                for (size_t k = 0; k < sizeof k_ignored_params / sizeof *k_ignored_params; k++)
                    json_object_del(par, k_ignored_params[k]);
                canon = json_dumps(par, JSON_COMPACT | JSON_SORT_KEYS);
            }
            json_decref(par);
            const char *lab = json_string_value(json_object_get(pt, "label"));
            char idx[32];
            snprintf(idx, sizeof idx, "point %zu", i);
            if (!lab || !*lab) lab = idx;
            snprintf(p->label, sizeof p->label, "%s%s%s", mem && *mem ? mem : "", mem && *mem ? ": " : "", lab);
            size_t kl = strlen(mem ? mem : "") + strlen(canon ? canon : lab) + 2;
            p->key = malloc(kl);
            if (p->key) snprintf(p->key, kl, "%s\x1f%s", mem ? mem : "", canon ? canon : lab);
            free(canon);
            n++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- the decisions */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, size_t n) {
    if (!n) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The per-repetition samples of a metric: repetitions[k].NAME, or with ops_phase set,
 * repetitions[k].ops.PHASE.NAME. Non-numbers are skipped. Returns the count. */
static size_t samples(const json_t *pt, const char *ops_phase, const char *name, double *v, size_t cap) {
    const json_t *reps = json_object_get(pt, "repetitions");
    size_t n = 0, k;
    const json_t *rep;
    json_array_foreach(reps, k, rep) {
        const json_t *x = ops_phase ? json_object_get(json_object_get(json_object_get(rep, "ops"), ops_phase), name)
                                    : json_object_get(rep, name);
        if (json_is_object(x)) x = json_object_get(x, "ms"); /* tolerate {"ms": ...} per op */
        if (json_is_number(x) && n < cap && isfinite(json_number_value(x))) v[n++] = json_number_value(x);
    }
    return n;
}

/* A metric is noisy on a side when the run says so (noise.METRIC.noisy), or when the
 * whole point ran on a busy machine or starved (conditions.busy): its timings then
 * measure the neighbours as much as the code. */
static bool noisy(const json_t *pt, const char *metric) {
    return json_is_true(json_object_get(json_object_get(json_object_get(pt, "noise"), metric), "noisy")) ||
           json_is_true(json_object_get(json_object_get(pt, "conditions"), "busy"));
}

#define MAX_REPS 4096

static bool timing_row(ibex_compare_result *r, size_t *cap, const ibex_compare_opts *o, const char *label,
                       const pt_ref *a, const pt_ref *b, const char *metric, const char *ops_phase, const char *name,
                       bool higher, const char *summary) {
    static double va[MAX_REPS], vb[MAX_REPS];
    size_t na = samples(a->pt, ops_phase, name, va, MAX_REPS), nb = samples(b->pt, ops_phase, name, vb, MAX_REPS);
    double sa = summary ? ibex_report_num(a->pt, summary) : NAN, sb = summary ? ibex_report_num(b->pt, summary) : NAN;
    if (!na && !nb && isnan(sa) && isnan(sb)) return true; /* neither side has this metric */
    ibex_compare_row *w = push_row(r, cap);
    if (!w) return false;
    snprintf(w->point, sizeof w->point, "%s", label);
    snprintf(w->metric, sizeof w->metric, "%s", metric);
    w->kind = IBEX_CMP_TIMING;
    w->higher_is_better = higher;
    w->n_base = na, w->n_new = nb;
    ibex_mann_whitney mw;
    if (na && nb && !ibex_mann_whitney_compute(va, na, vb, nb, &mw, NULL)) w->p = mw.p;
    w->base = na ? median_of(va, na) : sa;
    w->new_ = nb ? median_of(vb, nb) : sb;
    w->change = w->base != 0 && isfinite(w->base) && isfinite(w->new_) ? (w->new_ - w->base) / fabs(w->base) : NAN;
    double worse = higher ? -w->change : w->change; /* > 0: worse */
    double min_p = ibex_mann_whitney_min_p(na, nb);
    if (!na || !nb) {
        w->verdict = IBEX_CMP_INCONCLUSIVE;
        snprintf(w->note, sizeof w->note, "no per-repetition samples in %s", !na && !nb ? "either run" : !na ? "BASE" : "NEW");
    } else if (!o->ignore_noise && (noisy(a->pt, name) || noisy(b->pt, name))) {
        w->verdict = IBEX_CMP_INCONCLUSIVE;
        snprintf(w->note, sizeof w->note, "marked noisy in %s",
                 noisy(a->pt, name) && noisy(b->pt, name) ? "both runs" : noisy(a->pt, name) ? "BASE" : "NEW");
    } else if (min_p > o->alpha) {
        w->verdict = IBEX_CMP_INCONCLUSIVE;
        snprintf(w->note, sizeof w->note, "too few repetitions (%zu vs %zu): the smallest p is %.3g > alpha %.3g", na, nb,
                 min_p, o->alpha);
    } else if (isnan(w->change) || isnan(w->p) || w->p >= o->alpha || fabs(worse) <= o->threshold) {
        w->verdict = IBEX_CMP_PASS;
    } else {
        w->verdict = worse > 0 ? IBEX_CMP_REGRESSION : IBEX_CMP_IMPROVED;
    }
    if (w->verdict == IBEX_CMP_REGRESSION && r->timings_informative) {
        snprintf(w->note, sizeof w->note, "informative: the machine or build differs from BASE's");
    } else if (w->verdict == IBEX_CMP_REGRESSION) {
        r->n_regressions++;
    }
    if (w->verdict == IBEX_CMP_INCONCLUSIVE) r->n_inconclusive++;
    if (w->verdict == IBEX_CMP_IMPROVED) r->n_improved++;
    return true;
}

/* Per-op times are a family of ~20-40 separate tests per point: at alpha 0.05 each, an
 * A/A pair would raise about one false alarm per point (seen: 1 in 5 idle A/A pairs,
 * every alarm an ops.* row). They are therefore corrected for multiplicity with Holm's
 * step-down rule: sort the family's p-values, reject the k-th smallest (k = 0, 1, ...)
 * while p_k <= alpha / (m - k), and stop at the first that is not. The whole-run metrics
 * (wall, tok/s, TTFT/TPOT/ITL/E2E) stay uncorrected: they are one measurement seen
 * through several lenses, strongly correlated, and correcting them would blind the gate
 * at the repetition counts CI can afford. Rows [first, n_rows) of r are the family. */
static void holm_ops(ibex_compare_result *r, const ibex_compare_opts *o, size_t first) {
    size_t idx[512], m = 0;
    for (size_t i = first; i < r->n_rows && m < sizeof idx / sizeof idx[0]; i++) {
        const ibex_compare_row *w = &r->rows[i];
        if (w->kind == IBEX_CMP_TIMING && isfinite(w->p) &&
            (w->verdict == IBEX_CMP_PASS || w->verdict == IBEX_CMP_REGRESSION || w->verdict == IBEX_CMP_IMPROVED))
            idx[m++] = i;
    }
    for (size_t i = 1; i < m; i++) /* insertion sort by p: m is small */
        for (size_t j = i; j > 0 && r->rows[idx[j - 1]].p > r->rows[idx[j]].p; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1], idx[j - 1] = t;
        }
    bool stopped = false;
    for (size_t k = 0; k < m; k++) {
        ibex_compare_row *w = &r->rows[idx[k]];
        double level = o->alpha / (double)(m - k);
        if (!stopped && w->p <= level) continue;
        stopped = true;
        if (w->verdict == IBEX_CMP_PASS) continue;
        if (w->verdict == IBEX_CMP_REGRESSION && !r->timings_informative) r->n_regressions--;
        if (w->verdict == IBEX_CMP_IMPROVED) r->n_improved--;
        w->verdict = IBEX_CMP_PASS;
        snprintf(w->note, sizeof w->note, "not significant after Holm's correction over %zu op times (p %.3g > %.3g)", m,
                 w->p, level);
    }
}

static bool counter_row(ibex_compare_result *r, size_t *cap, const ibex_compare_opts *o, const char *label,
                        const json_t *va, const json_t *vb, const char *metric) {
    bool ha = json_is_number(va), hb = json_is_number(vb);
    if (!ha && !hb) return true;
    ibex_compare_row *w = push_row(r, cap);
    if (!w) return false;
    snprintf(w->point, sizeof w->point, "%s", label);
    snprintf(w->metric, sizeof w->metric, "%s", metric);
    w->kind = IBEX_CMP_COUNTER;
    w->base = ha ? json_number_value(va) : NAN;
    w->new_ = hb ? json_number_value(vb) : NAN;
    bool eq = ha && hb && (json_is_integer(va) && json_is_integer(vb)
                               ? json_integer_value(va) == json_integer_value(vb)
                               : w->base == w->new_);
    if (ha && hb && w->base != 0) w->change = (w->new_ - w->base) / fabs(w->base);
    if (!ha || !hb) {
        w->verdict = IBEX_CMP_MISSING;
        snprintf(w->note, sizeof w->note, "only in %s", ha ? "BASE" : "NEW");
    } else if (eq) {
        w->verdict = IBEX_CMP_PASS;
    } else if (in_list(o->allow, metric)) {
        w->verdict = IBEX_CMP_ALLOWED, r->n_allowed++;
    } else {
        w->verdict = IBEX_CMP_CHANGED, r->n_changed++;
        if (json_is_integer(va) && json_is_integer(vb))
            snprintf(w->note, sizeof w->note, "differs by %+lld", (long long)(json_integer_value(vb) - json_integer_value(va)));
    }
    return true;
}

/* point.instructions: a number, or {"count": N, "tool": "callgrind", "scope": "..."};
 * tool is written as "TOOL" or "TOOL (SCOPE)" into buf (or left empty). */
static double instructions(const json_t *pt, char *tool, size_t n) {
    const json_t *v = json_object_get(pt, "instructions");
    tool[0] = 0;
    if (json_is_object(v)) {
        const char *t = json_string_value(json_object_get(v, "tool")), *sc = json_string_value(json_object_get(v, "scope"));
        if (t) snprintf(tool, n, "%s%s%s%s", t, sc ? " (" : "", sc ? sc : "", sc ? ")" : "");
        v = json_object_get(v, "count");
    }
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static bool instr_row(ibex_compare_result *r, size_t *cap, const ibex_compare_opts *o, const char *label, const pt_ref *a,
                      const pt_ref *b) {
    char ta[160], tb[160];
    double ia = instructions(a->pt, ta, sizeof ta), ib = instructions(b->pt, tb, sizeof tb);
    if (isnan(ia) && isnan(ib)) return true;
    ibex_compare_row *w = push_row(r, cap);
    if (!w) return false;
    snprintf(w->point, sizeof w->point, "%s", label);
    snprintf(w->metric, sizeof w->metric, "instructions");
    w->kind = IBEX_CMP_INSTRUCTIONS;
    w->base = ia, w->new_ = ib;
    w->n_base = !isnan(ia), w->n_new = !isnan(ib);
    if (isnan(ia) || isnan(ib)) {
        w->verdict = IBEX_CMP_MISSING;
        snprintf(w->note, sizeof w->note, "only in %s", isnan(ia) ? "NEW" : "BASE");
        return true;
    }
    w->change = ia != 0 ? (ib - ia) / fabs(ia) : NAN;
    if (ta[0] && tb[0] && strcmp(ta, tb)) {
        w->verdict = IBEX_CMP_INCONCLUSIVE, r->n_inconclusive++;
        snprintf(w->note, sizeof w->note, "counted by different tools (%s vs %s)", ta, tb);
    } else if (isfinite(w->change) && w->change > o->instr_threshold) {
        w->verdict = IBEX_CMP_REGRESSION, r->n_regressions++;
        snprintf(w->note, sizeof w->note, "more than %.3g %% more instructions", o->instr_threshold * 100);
    } else if (isfinite(w->change) && w->change < -o->instr_threshold) {
        w->verdict = IBEX_CMP_IMPROVED, r->n_improved++;
    } else {
        w->verdict = IBEX_CMP_PASS;
    }
    return true;
}

/* The union of op names under ops.PHASE in a and b (for counters) or in their
 * repetitions (for timings), into a JSON object used as a set. */
static void op_names(const json_t *pt, const char *phase, json_t *set) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(json_object_get(pt, "ops"), phase), k, v) json_object_set_new(set, k, json_true());
    size_t i;
    const json_t *rep;
    json_array_foreach(json_object_get(pt, "repetitions"), i, rep) {
        json_object_foreach((json_t *)json_object_get(json_object_get(rep, "ops"), phase), k, v)
            json_object_set_new(set, k, json_true());
    }
}

static bool compare_pair(ibex_compare_result *r, size_t *cap, const ibex_compare_opts *o, const pt_ref *a,
                         const pt_ref *b) {
    const char *label = a->label;
    const char *sa = json_string_value(json_object_get(a->pt, "status")), *sb = json_string_value(json_object_get(b->pt, "status"));
    if (sb && strcmp(sb, "ok") && (!sa || !strcmp(sa, "ok"))) {
        ibex_compare_row *w = push_row(r, cap);
        if (!w) return false;
        snprintf(w->point, sizeof w->point, "%s", label);
        snprintf(w->metric, sizeof w->metric, "status");
        w->kind = IBEX_CMP_COUNTER;
        w->verdict = IBEX_CMP_CHANGED, r->n_changed++;
        const char *msg = json_string_value(json_object_get(b->pt, "error"));
        snprintf(w->note, sizeof w->note, "NEW point is '%s'%s%s", sb, msg ? ": " : "", msg ? msg : "");
    }
    double ta = ibex_report_num(a->pt, "conditions/threads"), tb = ibex_report_num(b->pt, "conditions/threads");
    if (!isnan(ta) && !isnan(tb) && ta != tb)
        push_str(&r->warnings, &r->n_warnings, "%s: threads used differ (BASE %g, NEW %g)", label, ta, tb);
    if (json_is_true(ibex_report_get(a->pt, "conditions/busy")))
        push_str(&r->warnings, &r->n_warnings, "%s: BASE ran on a busy machine (its timings are inconclusive)", label);
    if (json_is_true(ibex_report_get(b->pt, "conditions/busy")))
        push_str(&r->warnings, &r->n_warnings, "%s: NEW ran on a busy machine (its timings are inconclusive)", label);

    for (size_t i = 0; i < sizeof k_timings / sizeof k_timings[0]; i++)
        if (wanted(o, k_timings[i].name) &&
            !timing_row(r, cap, o, label, a, b, k_timings[i].name, NULL, k_timings[i].name, k_timings[i].higher_is_better,
                        k_timings[i].summary))
            return false;
    static const char *const phases[] = {"prefill", "decode"};
    const size_t ops_first = r->n_rows;
    for (int ph = 0; ph < 2; ph++) {
        json_t *set = json_object();
        if (!set) return false;
        op_names(a->pt, phases[ph], set), op_names(b->pt, phases[ph], set);
        const char *op;
        json_t *v;
        bool ok = true;
        json_object_foreach(set, op, v) {
            char m[128];
            snprintf(m, sizeof m, "ops.%s.%s", phases[ph], op);
            if (ok && wanted(o, m)) ok = timing_row(r, cap, o, label, a, b, m, phases[ph], op, false, NULL);
            static const char *const cnt[] = {"flops", "bytes"};
            for (int c = 0; c < 2 && ok; c++) {
                char path[160];
                snprintf(m, sizeof m, "ops.%s.%s.%s", phases[ph], op, cnt[c]);
                snprintf(path, sizeof path, "ops/%s/%s/%s", phases[ph], op, cnt[c]);
                if (wanted(o, m))
                    ok = counter_row(r, cap, o, label, ibex_report_get(a->pt, path), ibex_report_get(b->pt, path), m);
            }
        }
        json_decref(set);
        if (!ok) return false;
    }
    holm_ops(r, o, ops_first);
    for (size_t i = 0; i < sizeof k_counters / sizeof k_counters[0]; i++) {
        char m[64];
        snprintf(m, sizeof m, "%s", k_counters[i]);
        *strchr(m, '/') = '.';
        if (wanted(o, m) &&
            !counter_row(r, cap, o, label, ibex_report_get(a->pt, k_counters[i]), ibex_report_get(b->pt, k_counters[i]), m))
            return false;
    }
    if (wanted(o, "instructions") && !instr_row(r, cap, o, label, a, b)) return false;
    return true;
}

ibex_compare_result *ibex_compare_runs(const json_t *base, const json_t *nw, const ibex_compare_opts *opts, ibex_err *err) {
    if (!json_is_array(base) || !json_is_array(nw) || !opts) {
        ibex_err_set(err, IBEX_ERR_INVALID, "compare: two loaded runs and options are needed");
        return NULL;
    }
    if (!(opts->threshold >= 0) || !(opts->alpha > 0 && opts->alpha < 1) || !(opts->instr_threshold >= 0)) {
        ibex_err_set(err, IBEX_ERR_INVALID, "compare: threshold %g, alpha %g or instruction threshold %g out of range",
                     opts->threshold, opts->alpha, opts->instr_threshold);
        return NULL;
    }
    ibex_compare_result *r = calloc(1, sizeof *r);
    pt_ref *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0, cap = 0;
    if (!r) goto nomem;
    r->threshold = opts->threshold, r->alpha = opts->alpha;
    const json_t *ra = json_object_get(json_array_get(base, 0), "results"), *rb = json_object_get(json_array_get(nw, 0), "results");
    bool same = provenance(r, ra, rb);
    r->timings_informative = opts->timings == IBEX_CMP_TIMINGS_INFO || (opts->timings == IBEX_CMP_TIMINGS_AUTO && !same);
    if (opts->timings == IBEX_CMP_TIMINGS_AUTO && !same)
        push_str(&r->warnings, &r->n_warnings, "timings are informative only: the machine or build differs from BASE's");
    na = collect(base, &pa), nb = collect(nw, &pb);
    for (size_t i = 0; i < na; i++) {
        size_t j = 0;
        while (j < nb && (pb[j].used || !pa[i].key || !pb[j].key || strcmp(pa[i].key, pb[j].key))) j++;
        if (j == nb) {
            if (!push_str(&r->unmatched_base, &r->n_unmatched_base, "%s", pa[i].label)) goto nomem;
            continue;
        }
        pb[j].used = pa[i].used = true;
        r->n_matched++;
        if (!compare_pair(r, &cap, opts, &pa[i], &pb[j])) goto nomem;
    }
    for (size_t j = 0; j < nb; j++)
        if (!pb[j].used && !push_str(&r->unmatched_new, &r->n_unmatched_new, "%s", pb[j].label)) goto nomem;
    for (size_t i = 0; i < na; i++) free(pa[i].key);
    for (size_t j = 0; j < nb; j++) free(pb[j].key);
    free(pa), free(pb);
    return r;
nomem:
    for (size_t i = 0; i < na; i++) free(pa[i].key);
    for (size_t j = 0; j < nb; j++) free(pb[j].key);
    free(pa), free(pb);
    ibex_compare_free(r);
    ibex_err_set(err, IBEX_ERR_NOMEM, "compare: out of memory");
    return NULL;
}

/* ---------------------------------------------------------------- reports */

static const char *fmt_val(const ibex_compare_row *w, double v, char *buf, size_t n) {
    if (isnan(v)) return "-";
    if (w->kind != IBEX_CMP_TIMING) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.4g", v);
    return buf;
}

static bool fails(const ibex_compare_result *r, const ibex_compare_row *w) {
    return w->verdict == IBEX_CMP_CHANGED ||
           (w->verdict == IBEX_CMP_REGRESSION && (w->kind != IBEX_CMP_TIMING || !r->timings_informative));
}

ibex_status ibex_compare_markdown(const ibex_compare_result *r, FILE *out, ibex_err *err) {
    if (!r || !out) return ibex_err_set(err, IBEX_ERR_INVALID, "compare report: NULL argument");
    fprintf(out, "# ibex compare\n\nthreshold %.3g %%, alpha %.3g, timings %s; %zu matched point(s)\n\n", r->threshold * 100,
            r->alpha, r->timings_informative ? "informative" : "gated", r->n_matched);
    for (size_t i = 0; i < r->n_warnings; i++) fprintf(out, "> warning: %s\n", r->warnings[i]);
    if (r->n_warnings) fprintf(out, "\n");
    for (size_t i = 0; i < r->n_unmatched_base; i++) fprintf(out, "- only in BASE: %s\n", r->unmatched_base[i]);
    for (size_t i = 0; i < r->n_unmatched_new; i++) fprintf(out, "- only in NEW: %s\n", r->unmatched_new[i]);
    if (r->n_unmatched_base || r->n_unmatched_new) fprintf(out, "\n");
    for (size_t i = 0; i < r->n_rows;) {
        size_t j = i, equal = 0;
        while (j < r->n_rows && !strcmp(r->rows[j].point, r->rows[i].point)) j++;
        fprintf(out, "## %s\n\n| metric | base | new | change | p-value | verdict |\n|---|---:|---:|---:|---:|---|\n",
                r->rows[i].point);
        for (size_t k = i; k < j; k++) {
            const ibex_compare_row *w = &r->rows[k];
            if (w->kind == IBEX_CMP_COUNTER && w->verdict == IBEX_CMP_PASS) {
                equal++;
                continue;
            }
            char b1[48], b2[48], ch[32], pv[32];
            if (isnan(w->change)) snprintf(ch, sizeof ch, "-");
            else snprintf(ch, sizeof ch, "%+.1f %%", w->change * 100);
            if (isnan(w->p)) snprintf(pv, sizeof pv, "-");
            else snprintf(pv, sizeof pv, "%.3g", w->p);
            fprintf(out, "| %s%s | %s | %s | %s | %s | %s%s%s |\n", w->metric,
                    w->kind == IBEX_CMP_TIMING ? (w->higher_is_better ? " (↑)" : " (↓)") : "",
                    fmt_val(w, w->base, b1, sizeof b1), fmt_val(w, w->new_, b2, sizeof b2), ch, pv,
                    ibex_cmp_verdict_name(w->verdict), w->note[0] ? ": " : "", w->note);
        }
        fprintf(out, "\n%zu exact counter(s) equal.\n\n", equal);
        i = j;
    }
    size_t n_fail = r->n_regressions + r->n_changed;
    fprintf(out, "**%s**: %zu regression(s), %zu changed counter(s), %zu improved, %zu inconclusive, %zu allowed.\n",
            r->n_matched == 0 ? "INCOMPARABLE (no point matched)" : n_fail ? "FAIL" : "PASS", r->n_regressions,
            r->n_changed, r->n_improved, r->n_inconclusive, r->n_allowed);
    if (n_fail) {
        fprintf(out, "\nFailing:");
        for (size_t k = 0; k < r->n_rows; k++)
            if (fails(r, &r->rows[k])) fprintf(out, "\n- %s: %s (%s)", r->rows[k].point, r->rows[k].metric,
                                               ibex_cmp_verdict_name(r->rows[k].verdict));
        fprintf(out, "\n");
    }
    if (ferror(out)) return ibex_err_set(err, IBEX_ERR_IO, "compare report: write failed");
    return IBEX_OK;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *str_array(char **s, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_string(s[i]));
    return a;
}

json_t *ibex_compare_to_json(const ibex_compare_result *r) {
    if (!r) return NULL;
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < r->n_rows; i++) {
        const ibex_compare_row *w = &r->rows[i];
        static const char *const kinds[] = {"timing", "counter", "instructions"};
        json_array_append_new(
            rows, json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:I,s:I,s:s,s:b,s:s}", "point", w->point, "metric", w->metric,
                            "kind", kinds[w->kind], "base", num_or_null(w->base), "new", num_or_null(w->new_), "change",
                            num_or_null(w->change), "p", num_or_null(w->p), "n_base", (json_int_t)w->n_base, "n_new",
                            (json_int_t)w->n_new, "verdict", ibex_cmp_verdict_name(w->verdict), "fails", fails(r, w),
                            "note", w->note));
    }
    return json_pack("{s:i,s:f,s:f,s:b,s:{s:I,s:I,s:I,s:I,s:I,s:I},s:o,s:o,s:o,s:o}", "exit_code",
                     ibex_compare_exit_code(r), "threshold", r->threshold, "alpha", r->alpha, "timings_informative",
                     r->timings_informative, "summary", "matched", (json_int_t)r->n_matched, "regressions",
                     (json_int_t)r->n_regressions, "changed_counters", (json_int_t)r->n_changed, "improved",
                     (json_int_t)r->n_improved, "inconclusive", (json_int_t)r->n_inconclusive, "allowed",
                     (json_int_t)r->n_allowed, "warnings", str_array(r->warnings, r->n_warnings), "unmatched_base",
                     str_array(r->unmatched_base, r->n_unmatched_base), "unmatched_new",
                     str_array(r->unmatched_new, r->n_unmatched_new), "rows", rows);
}
