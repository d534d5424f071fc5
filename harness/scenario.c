/* scenario.c — scenario files (YAML, read with libyaml's document API) and their
 * expansion into sweep points.
 *
 * Design notes:
 *   1. Parsing flattens the file into (dotted key, scalar text, line:column) items:
 *      `kv: {policy: paged}` and `kv.policy: paged` give the same item, so nested maps
 *      and dotted keys are equivalent by construction. The sweep and zip lists are kept
 *      as text too (scn_def, stored in ibex_scenario.priv), so quick mode can shrink
 *      them and expand again.
 *   2. Every value, top level or swept, reaches a point through ibex_point_set: a sweep
 *      value is validated exactly like the same value written at the top level.
 *   3. A point is: defaults, then the top-level items, then the point's swept items.
 *      Within each layer, items are applied by rank (stable): a distribution's plain
 *      length first, then `*.dist` and `decoding.strategy`, then everything else, so
 *      `{min: 1, max: 9, dist: uniform}` means the same in any key order (setting
 *      `dist` resets the distribution's other fields).
 *   4. Sweep dimensions are the sweep keys in file order, plus the zip lists as one
 *      dimension placed where `zip:` stands relative to `sweep:`. The last dimension
 *      varies fastest.
 *   5. Errors carry "file:line:column" of the offending node (libyaml marks are
 *      0-based; messages are 1-based). Cross-field problems found by the point check
 *      are placed at the item that set the key to blame, else at the top of the file.
 *   6. A file with a top-level `suite:` key is a suite: only name, description, report
 *      and suite are read; each listed file is loaded (depth 1) to check it, then
 *      freed. At depth 1 a `suite:` key is an error, so suites cannot nest or loop. */
#include "harness/scenario.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "engine/fileio.h"
#include "harness/cli.h"

#define SCN_MAX_POINTS 100000
/* workload.rate bounds (requests/s) and the longest expected arrival span a Poisson or
 * gamma workload may ask for (requests / rate): a typo like 1e-9 would sleep for years. */
#define SCN_MIN_RATE 1e-6
#define SCN_MAX_RATE 1e9
#define SCN_MAX_ARRIVAL_SPAN_S 86400.0
/* Memory the sweep expansion may take (points × (point + swept keys × value)). */
#define SCN_MAX_EXPAND_BYTES (64.0 * 1024 * 1024)

/* ---- the keys ------------------------------------------------------------------- */

/* Every settable (leaf) key, canonical spelling. */
static const char *const k_keys[] = {
    "model", "backend", "threads", "weights", "model_ctx",
    "kv.policy", "kv.block_size", "kv.budget", "kv.dtype", "kv.max_seq_len",
    "scheduler", "batch", "max_step_tokens", "compute",
    "decoding.strategy", "decoding.temperature", "decoding.top_k", "decoding.top_p", "decoding.min_p",
    "decoding.repeat_penalty", "decoding.repeat_last_n", "decoding.n", "decoding.beam_width",
    "decoding.length_penalty", "decoding.early_stopping",
    "workload.requests",
    "workload.prompt_tokens", "workload.prompt_tokens.dist", "workload.prompt_tokens.min",
    "workload.prompt_tokens.max", "workload.prompt_tokens.mean", "workload.prompt_tokens.sd",
    "workload.prompt_tokens.value",
    "workload.output_tokens", "workload.output_tokens.dist", "workload.output_tokens.min",
    "workload.output_tokens.max", "workload.output_tokens.mean", "workload.output_tokens.sd",
    "workload.output_tokens.value",
    "workload.file", "workload.arrival", "workload.rate", "workload.burstiness", "workload.concurrency",
    "workload.ignore_eos",
    "warmup", "repeat", "seed", "slo.ttft", "slo.tpot", "slo.e2e", "profile", "instruments", "attention",
    "kv.reserve_prompt", "repeat_max", "ci_target", "noise.cv_max", /* runner: noise guard, paged reservation */
    "quality.text", "quality.ctx", "quality.chunks", /* runner: perplexity (quality.c) */
    NULL};

static const char *const k_instr_names[] = {"off", "nvtx", "cupti", NULL};

const char *ibex_instruments_name(ibex_instruments i) {
    return (unsigned)i <= IBEX_INSTR_CUPTI ? k_instr_names[i] : "?";
}

/* Keys whose value may be a map of subkeys. */
static const char *const k_sections[] = {"kv", "decoding", "workload", "slo", "noise", "quality",
                                         "workload.prompt_tokens", "workload.output_tokens", NULL};

/* Top-level keys that are not point settings. */
static const char *const k_meta[] = {"name", "description", "sweep", "zip", "suite", "report", NULL};

/* The keys a suite file may hold, and the suite report kinds. */
static const char *const k_suite_keys[] = {"name", "description", "suite", "report", NULL};
static const char *const k_report_kinds[] = {"claims", NULL};

/* Other spellings accepted as the same key. */
static const struct {
    const char *from, *to;
} k_key_aliases[] = {{"max_seq_len", "kv.max_seq_len"}};

/* Spellings from other tools, used only for "did you mean" (never accepted). */
static const struct {
    const char *from, *to;
} k_key_hints[] = {
    {"batch_size", "batch"},          {"max_batch", "batch"},           {"max_batch_size", "batch"},
    {"max_num_seqs", "batch"},        {"num_requests", "workload.requests"}, {"num_prompts", "workload.requests"},
    {"input_len", "workload.prompt_tokens"}, {"output_len", "workload.output_tokens"},
    {"max_tokens", "workload.output_tokens"}, {"max_new_tokens", "workload.output_tokens"},
    {"request_rate", "workload.rate"}, {"temp", "decoding.temperature"}, {"beam_size", "decoding.beam_width"},
    {"num_beams", "decoding.beam_width"}, {"iterations", "repeat"}, {"repetitions", "repeat"},
    {"warmups", "warmup"},            {"sched", "scheduler"},           {"scheduling", "scheduler"},
    {"kv_policy", "kv.policy"},       {"kv_budget", "kv.budget"},       {"block", "kv.block_size"},
};

static bool in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return true;
    return false;
}

/* The canonical leaf key for key, or NULL if key is not a setting. */
static const char *canon_key(const char *key) {
    for (const char *const *k = k_keys; *k; k++)
        if (strcmp(key, *k) == 0) return *k;
    for (size_t i = 0; i < sizeof k_key_aliases / sizeof k_key_aliases[0]; i++)
        if (strcmp(key, k_key_aliases[i].from) == 0) return k_key_aliases[i].to;
    return NULL;
}

static bool is_dist_key(const char *k) {
    return strcmp(k, "workload.prompt_tokens") == 0 || strcmp(k, "workload.output_tokens") == 0;
}

/* Application order within a layer (design note 3). */
static int key_rank(const char *k) {
    if (is_dist_key(k)) return 0;
    size_t n = strlen(k);
    if (strcmp(k, "decoding.strategy") == 0 || (n > 5 && strcmp(k + n - 5, ".dist") == 0)) return 1;
    return 2;
}

static const char *last_part(const char *k) {
    const char *d = strrchr(k, '.');
    return d ? d + 1 : k;
}

/* Best-distance candidate over the three key lists, within the usual typo limit. */
static const char *closest_key(const char *word, bool last_parts, int *dist) {
    const char *const *lists[] = {k_keys, k_sections, k_meta};
    const char *best = NULL;
    int bd = 1 << 30;
    for (int l = 0; l < 3; l++) {
        for (const char *const *c = lists[l]; *c; c++) {
            int d = ibex_cli_edit_distance(word, last_parts ? last_part(*c) : *c);
            if (d < bd) bd = d, best = *c;
        }
    }
    *dist = bd;
    return best;
}

/* Keeps cand as the best guess when d edits over a word of n characters is a plausible
 * typo (d <= n/3 + 1) and a smaller share of the word than the best so far. */
static void consider(const char *cand, int d, size_t n, const char **best, double *score) {
    if (!cand || n == 0 || d > (int)n / 3 + 1) return;
    double sc = (double)d / (double)n;
    if (sc < *score) *score = sc, *best = cand;
}

/* A plausible intended key for an unknown one, or NULL: a spelling other tools use, else
 * the closest (relative to the length compared) of a close spelling of the whole key,
 * the same name under another section, or a close spelling of one '_'-separated part
 * ("bach_size" -> "batch"). */
static const char *suggest_key(const char *word) {
    const char *lw = last_part(word);
    for (size_t i = 0; i < sizeof k_key_hints / sizeof k_key_hints[0]; i++)
        if (strcmp(lw, k_key_hints[i].from) == 0) return k_key_hints[i].to;
    const char *best = NULL, *c;
    double score = 1e9;
    int d;
    c = closest_key(word, false, &d);
    consider(c, d, strlen(word), &best, &score);
    c = closest_key(lw, true, &d);
    consider(c, d, strlen(lw), &best, &score);
    char part[64];
    const char *s = lw;
    while (*s) {
        size_t n = strcspn(s, "_");
        if (n >= 3 && n < sizeof part && n < strlen(lw)) {
            memcpy(part, s, n);
            part[n] = '\0';
            c = closest_key(part, true, &d);
            consider(c, d, n, &best, &score);
        }
        s += n;
        if (*s == '_') s++;
    }
    return best;
}

static ibex_status unknown_key(ibex_err *err, const char *where, const char *key) {
    const char *sug = suggest_key(key);
    const char *sep = where && *where ? ": " : "";
    if (!where) where = "";
    if (sug) return ibex_err_set(err, IBEX_ERR_INVALID, "%s%sunknown key '%s' (did you mean '%s'?)", where, sep, key, sug);
    return ibex_err_set(err, IBEX_ERR_INVALID, "%s%sunknown key '%s' (see scenarios/README.md for the keys)", where, sep,
                        key);
}

/* ---- value parsing (silent: the problem goes into why) -------------------------- */

static ibex_status bad(ibex_err *err, const char *where, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static ibex_status bad(ibex_err *err, const char *where, const char *key, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (where && *where) return ibex_err_set(err, IBEX_ERR_INVALID, "%s: %s: %s", where, key, msg);
    return ibex_err_set(err, IBEX_ERR_INVALID, "%s: %s", key, msg);
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out, char *why, size_t cap) {
    if (!*s) {
        snprintf(why, cap, "needs a value");
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (isspace((unsigned char)s[0]) || end == s || *end) {
        snprintf(why, cap, "'%s' is not an integer", s);
        return false;
    }
    if (errno == ERANGE || v < lo || v > hi) {
        if (hi == INT32_MAX || hi == INT64_MAX)
            snprintf(why, cap, "must be at least %lld (got %s)", (long long)lo, s);
        else
            snprintf(why, cap, "must be in %lld..%lld (got %s)", (long long)lo, (long long)hi, s);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_i32(const char *s, int64_t lo, int64_t hi, int32_t *out, char *why, size_t cap) {
    int64_t v;
    if (!parse_i64(s, lo, hi, &v, why, cap)) return false;
    *out = (int32_t)v;
    return true;
}

/* A finite number in the interval lo..hi (open or closed at each end). */
static bool parse_f64(const char *s, double lo, bool lo_open, double hi, bool hi_open, double *out, char *why,
                      size_t cap) {
    if (!*s) {
        snprintf(why, cap, "needs a value");
        return false;
    }
    char *end;
    double v = strtod(s, &end);
    if (isspace((unsigned char)s[0]) || end == s || *end || !isfinite(v)) {
        snprintf(why, cap, "'%s' is not a finite number", s);
        return false;
    }
    if ((lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi)) {
        char l[32], h[32];
        snprintf(l, sizeof l, "%g", lo);
        snprintf(h, sizeof h, "%g", hi);
        snprintf(why, cap, "%s is out of range %c%s, %s%c", s, lo_open ? '(' : '[', isinf(lo) ? "-inf" : l,
                 isinf(hi) ? "inf" : h, hi_open ? ')' : ']');
        return false;
    }
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out, char *why, size_t cap) {
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) return *out = true, true;
        if (strcasecmp(s, f[i]) == 0) return *out = false, true;
    }
    snprintf(why, cap, "'%s' is not a boolean (true or false)", s);
    return false;
}

/* A byte size: "268435456", "512MiB", "1.5 GB" (KiB.. powers of 1024, KB.. of 1000,
 * K/M/G/T of 1024; suffixes case-insensitive). Must be > 0. */
static bool parse_size(const char *s, int64_t *out, char *why, size_t cap) {
    static const struct {
        const char *suffix;
        double mul;
    } units[] = {{"", 1},     {"b", 1},         {"k", 1024.0},          {"kib", 1024.0},  {"kb", 1e3},
                 {"m", 1048576.0}, {"mib", 1048576.0}, {"mb", 1e6},        {"g", 1073741824.0},
                 {"gib", 1073741824.0}, {"gb", 1e9}, {"t", 1099511627776.0}, {"tib", 1099511627776.0},
                 {"tb", 1e12}};
    char *end;
    double v = strtod(s, &end);
    if (*s && !isspace((unsigned char)s[0]) && end != s && isfinite(v)) {
        while (*end == ' ') end++;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (strcasecmp(end, units[i].suffix) == 0) {
                double b = v * units[i].mul;
                if (b < 1 || b > 9.0e18) {
                    snprintf(why, cap, "size %s is out of range (at least 1 byte)", s);
                    return false;
                }
                *out = (int64_t)b;
                return true;
            }
        }
    }
    snprintf(why, cap, "'%s' is not a size (e.g. 256MiB, 80GiB, 1.5GB, 4096)", s);
    return false;
}

/* Seconds, with an optional unit: "0.2", "200ms", "150us", "2s". >= 0. */
static bool parse_seconds(const char *s, double *out, char *why, size_t cap) {
    char *end;
    double v = strtod(s, &end);
    if (*s && !isspace((unsigned char)s[0]) && end != s && isfinite(v) && v >= 0) {
        while (*end == ' ') end++;
        double mul = 0;
        if (!*end || strcmp(end, "s") == 0) mul = 1;
        else if (strcmp(end, "ms") == 0) mul = 1e-3;
        else if (strcmp(end, "us") == 0) mul = 1e-6;
        if (mul > 0) {
            *out = v * mul;
            return true;
        }
    }
    snprintf(why, cap, "'%s' is not a duration >= 0 (seconds, or with ms/us/s)", s);
    return false;
}

static void join_names(const char *const *names, char *buf, size_t cap) {
    buf[0] = '\0';
    for (const char *const *n = names; *n; n++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", n == names ? "" : ", ", *n);
    }
}

/* Index of s (case-insensitive) in names, or −1 with why suggesting the closest. */
static int parse_enum(const char *s, const char *const *names, char *why, size_t cap) {
    for (int i = 0; names[i]; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    char all[256];
    join_names(names, all, sizeof all);
    const char *sug = *s ? ibex_cli_suggest(s, names) : NULL;
    if (sug)
        snprintf(why, cap, "unknown value '%s' (did you mean '%s'?)", s, sug);
    else
        snprintf(why, cap, "unknown value '%s' (expected one of: %s)", s, all);
    return -1;
}

/* ---- points ----------------------------------------------------------------------- */

ibex_point ibex_point_default(void) {
    ibex_point p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "synthetic:tiny");
    snprintf(p.backend, sizeof p.backend, "cpu");
    p.threads = 0;
    p.weights = IBEX_TYPE_F16;
    p.quality_ctx = 128;
    p.engine = ibex_engine_default_config();
    /* kv.dtype f16 unless set: the cache type llama.cpp and vLLM default to */
    ibex_kv_config_set_type(&p.engine.kv, IBEX_TYPE_F16);
    p.request = ibex_request_default_params();
    p.requests = 8;
    p.prompt_tokens = (ibex_dist){.kind = IBEX_DIST_FIXED, .value = 128, .min = 128, .max = 128};
    p.output_tokens = (ibex_dist){.kind = IBEX_DIST_FIXED, .value = 32, .min = 32, .max = 32};
    p.arrival = IBEX_ARRIVAL_OFFLINE;
    p.rate = 1.0;
    p.burstiness = 1.0;
    p.concurrency = 8;
    p.warmup = 1;
    p.repeat = 3;
    p.repeat_max = 10;
    p.ci_target = 0.05;
    p.noise_cv_max = 0.10;
    p.seed = 1;
    p.request.sampling.seed = 1;
    p.instruments = IBEX_INSTR_NVTX;
    p.attention = IBEX_ATTN_AUTO;
    return p;
}

static const char *const k_dist_names[] = {"fixed", "uniform", "normal", "lognormal", NULL};

/* Sets one field of a length distribution. sub is NULL for the plain form (a fixed
 * length), else dist|min|max|mean|sd|value. Setting dist resets the other fields
 * (min 1, max 0 = not given yet). */
static ibex_status set_dist(ibex_dist *d, const char *sub, const char *value, const char *where, const char *key,
                            ibex_err *err) {
    char why[256];
    int32_t n;
    double f;
    if (!sub || strcmp(sub, "value") == 0) {
        if (sub && d->kind != IBEX_DIST_FIXED)
            return bad(err, where, key, "value applies to dist: fixed (this distribution is %s)", k_dist_names[d->kind]);
        if (!parse_i32(value, 1, INT32_MAX, &n, why, sizeof why)) return bad(err, where, key, "%s", why);
        *d = (ibex_dist){.kind = IBEX_DIST_FIXED, .value = n, .min = n, .max = n};
        return IBEX_OK;
    }
    if (strcmp(sub, "dist") == 0) {
        int e = parse_enum(value, k_dist_names, why, sizeof why);
        if (e < 0) return bad(err, where, key, "%s", why);
        *d = (ibex_dist){.kind = (ibex_dist_kind)e, .min = 1, .max = 0};
        return IBEX_OK;
    }
    if (strcmp(sub, "min") == 0 || strcmp(sub, "max") == 0) {
        if (d->kind == IBEX_DIST_FIXED)
            return bad(err, where, key, "a fixed length has no %s (set dist: uniform, normal or lognormal first)", sub);
        if (!parse_i32(value, 1, INT32_MAX, &n, why, sizeof why)) return bad(err, where, key, "%s", why);
        if (sub[1] == 'i') d->min = n;
        else d->max = n;
        return IBEX_OK;
    }
    if (strcmp(sub, "mean") == 0) {
        if (!parse_f64(value, -INFINITY, true, INFINITY, true, &f, why, sizeof why)) return bad(err, where, key, "%s", why);
        d->mean = f;
        return IBEX_OK;
    }
    if (strcmp(sub, "sd") == 0) {
        if (!parse_f64(value, 0, false, INFINITY, true, &f, why, sizeof why)) return bad(err, where, key, "%s", why);
        d->sd = f;
        return IBEX_OK;
    }
    return unknown_key(err, where, key);
}

static ibex_status set_model(ibex_point *p, const char *value, const char *where, const char *key, ibex_err *err) {
    if (!*value) return bad(err, where, key, "needs a value (synthetic:NAME or a GGUF path)");
    if (strlen(value) >= sizeof p->model) return bad(err, where, key, "path too long (at most %zu bytes)", sizeof p->model - 1);
    if (strncmp(value, "synthetic:", 10) == 0 && !ibex_synthetic_find(value + 10)) {
        const char *names[64];
        int n = 0;
        for (const ibex_synthetic_preset *pr = ibex_synthetic_presets(); pr->name && n < 63; pr++) names[n++] = pr->name;
        names[n] = NULL;
        char all[512];
        join_names(names, all, sizeof all);
        const char *sug = value[10] ? ibex_cli_suggest(value + 10, names) : NULL;
        if (sug) return bad(err, where, key, "unknown synthetic preset '%s' (did you mean 'synthetic:%s'?)", value + 10, sug);
        return bad(err, where, key, "unknown synthetic preset '%s' (presets: %s)", value + 10, all);
    }
    snprintf(p->model, sizeof p->model, "%s", value);
    return IBEX_OK;
}

ibex_status ibex_point_set(ibex_point *p, const char *key, const char *value, const char *where, ibex_err *err) {
    const char *k = key ? canon_key(key) : NULL;
    if (!k) return unknown_key(err, where, key ? key : "(null)");
    if (!value) value = "";
    char why[256];
    double f;
    bool b;
    int e;
#define SCN_FAIL() return bad(err, where, key, "%s", why)

    if (strncmp(k, "workload.prompt_tokens", 22) == 0)
        return set_dist(&p->prompt_tokens, k[22] ? k + 23 : NULL, value, where, key, err);
    if (strncmp(k, "workload.output_tokens", 22) == 0)
        return set_dist(&p->output_tokens, k[22] ? k + 23 : NULL, value, where, key, err);

    if (strcmp(k, "model") == 0) return set_model(p, value, where, key, err);
    if (strcmp(k, "backend") == 0) {
        static const char *const names[] = {"cpu", "cuda", "auto", NULL};
        if ((e = parse_enum(value, names, why, sizeof why)) < 0) SCN_FAIL();
        snprintf(p->backend, sizeof p->backend, "%s", names[e]);
    } else if (strcmp(k, "threads") == 0) {
        if (!parse_i32(value, 0, 4096, &p->threads, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "weights") == 0) {
        static const char *const names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", NULL};
        static const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16, IBEX_TYPE_Q8_0,
                                          IBEX_TYPE_Q4_0};
        if ((e = parse_enum(value, names, why, sizeof why)) < 0) SCN_FAIL();
        p->weights = types[e];
    } else if (strcmp(k, "model_ctx") == 0) {
        p->model_ctx_auto = strcmp(value, "auto") == 0;
        if (p->model_ctx_auto) {
            p->model_ctx = 0;
        } else if (!parse_i32(value, 1, 1 << 24, &p->model_ctx, why, sizeof why)) {
            return bad(err, where, key, "%s (a context length in tokens, or auto)", why);
        }
    } else if (strcmp(k, "kv.policy") == 0) {
        static const char *const names[] = {"none", "contiguous", "paged", NULL};
        ibex_kv_policy pol;
        if (parse_enum(value, names, why, sizeof why) < 0 || !ibex_kv_policy_from_name(value, &pol)) SCN_FAIL();
        p->engine.kv.policy = pol;
    } else if (strcmp(k, "kv.block_size") == 0) {
        if (!parse_i32(value, 1, 256, &p->engine.kv.block_size, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "kv.budget") == 0) {
        if (!parse_size(value, &p->engine.kv.budget_bytes, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "kv.dtype") == 0) {
        static const char *const names[] = {"f32", "f16", "bf16", NULL};
        ibex_type t;
        if (parse_enum(value, names, why, sizeof why) < 0 || !ibex_kv_type_from_name(value, &t)) SCN_FAIL();
        ibex_kv_config_set_type(&p->engine.kv, t);
    } else if (strcmp(k, "kv.max_seq_len") == 0) {
        if (!parse_i32(value, 0, INT32_MAX, &p->engine.max_seq_len, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "scheduler") == 0) {
        static const char *const names[] = {"static", "continuous", NULL};
        if ((e = parse_enum(value, names, why, sizeof why)) < 0) SCN_FAIL();
        p->engine.sched = e == 0 ? IBEX_SCHED_STATIC : IBEX_SCHED_CONTINUOUS;
    } else if (strcmp(k, "batch") == 0) {
        if (!parse_i32(value, 1, 65536, &p->engine.max_batch, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "max_step_tokens") == 0) {
        if (!parse_i32(value, 0, INT32_MAX, &p->engine.max_step_tokens, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "compute") == 0) {
        if (!parse_bool(value, &b, why, sizeof why)) SCN_FAIL();
        p->engine.compute = b;
        p->engine.kv.no_compute = !b;
    } else if (strcmp(k, "decoding.strategy") == 0) {
        static const char *const names[] = {"greedy", "sample", "beam", NULL};
        if ((e = parse_enum(value, names, why, sizeof why)) < 0) SCN_FAIL();
        if (e == 0) {
            p->request.decoding = IBEX_DECODE_SAMPLE;
            p->request.sampling.temperature = 0.0f;
        } else if (e == 1) {
            p->request.decoding = IBEX_DECODE_SAMPLE;
            /* sampling at temperature 0 would be greedy: give it the usual default */
            if (p->request.sampling.temperature == 0.0f) p->request.sampling.temperature = 0.8f;
        } else {
            p->request.decoding = IBEX_DECODE_BEAM;
        }
    } else if (strcmp(k, "decoding.temperature") == 0) {
        if (!parse_f64(value, 0, false, INFINITY, true, &f, why, sizeof why)) SCN_FAIL();
        p->request.sampling.temperature = (float)f;
    } else if (strcmp(k, "decoding.top_k") == 0) {
        if (!parse_i32(value, 0, INT32_MAX, &p->request.sampling.top_k, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "decoding.top_p") == 0) {
        if (!parse_f64(value, 0, true, 1, false, &f, why, sizeof why)) SCN_FAIL();
        p->request.sampling.top_p = (float)f;
    } else if (strcmp(k, "decoding.min_p") == 0) {
        if (!parse_f64(value, 0, false, 1, false, &f, why, sizeof why)) SCN_FAIL();
        p->request.sampling.min_p = (float)f;
    } else if (strcmp(k, "decoding.repeat_penalty") == 0) {
        if (!parse_f64(value, 0, true, INFINITY, true, &f, why, sizeof why)) SCN_FAIL();
        p->request.sampling.repeat_penalty = (float)f;
    } else if (strcmp(k, "decoding.repeat_last_n") == 0) {
        if (!parse_i32(value, 0, INT32_MAX, &p->request.sampling.repeat_last_n, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "decoding.n") == 0) {
        if (!parse_i32(value, 1, 1024, &p->request.n, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "decoding.beam_width") == 0) {
        if (!parse_i32(value, 1, 1024, &p->request.beam_width, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "decoding.length_penalty") == 0) {
        if (!parse_f64(value, -INFINITY, true, INFINITY, true, &f, why, sizeof why)) SCN_FAIL();
        p->request.length_penalty = (float)f;
    } else if (strcmp(k, "decoding.early_stopping") == 0) {
        if (!parse_bool(value, &p->request.early_stopping, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "workload.requests") == 0) {
        if (!parse_i32(value, 1, 10000000, &p->requests, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "quality.text") == 0) {
        if (strlen(value) >= sizeof p->quality_text)
            return bad(err, where, key, "path too long (at most %zu bytes)", sizeof p->quality_text - 1);
        snprintf(p->quality_text, sizeof p->quality_text, "%s", value);
    } else if (strcmp(k, "quality.ctx") == 0) {
        if (!parse_i32(value, 4, 1 << 20, &p->quality_ctx, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "quality.chunks") == 0) {
        if (!parse_i32(value, 0, 1 << 20, &p->quality_chunks, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "workload.file") == 0) {
        if (!*value) return bad(err, where, key, "needs a value (a JSONL file)");
        if (strlen(value) >= sizeof p->prompts_file)
            return bad(err, where, key, "path too long (at most %zu bytes)", sizeof p->prompts_file - 1);
        snprintf(p->prompts_file, sizeof p->prompts_file, "%s", value);
    } else if (strcmp(k, "workload.arrival") == 0) {
        static const char *const names[] = {"offline", "concurrency", "poisson", "gamma", NULL};
        if ((e = parse_enum(value, names, why, sizeof why)) < 0) SCN_FAIL();
        p->arrival = (ibex_arrival_kind)e;
    } else if (strcmp(k, "workload.rate") == 0) {
        /* Bounded so arrival gaps stay finite and sleepable (1e-300 overflowed time_t). */
        if (!parse_f64(value, SCN_MIN_RATE, false, SCN_MAX_RATE, false, &p->rate, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "workload.burstiness") == 0) {
        if (!parse_f64(value, 1e-3, false, 1e3, false, &p->burstiness, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "workload.concurrency") == 0) {
        if (!parse_i32(value, 1, 1000000, &p->concurrency, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "workload.ignore_eos") == 0) {
        if (!parse_bool(value, &p->request.ignore_eos, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "warmup") == 0) {
        if (!parse_i32(value, 0, 1000000, &p->warmup, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "repeat") == 0) {
        p->repeat_auto = strcmp(value, "auto") == 0; /* auto: at least `repeat` (3), until ci_target or repeat_max */
        if (p->repeat_auto) p->repeat = p->repeat < 3 ? 3 : p->repeat;
        else if (!parse_i32(value, 1, 1000000, &p->repeat, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "repeat_max") == 0) {
        if (!parse_i32(value, 1, 1000000, &p->repeat_max, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "ci_target") == 0) {
        if (!parse_f64(value, 0, true, 1, false, &p->ci_target, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "noise.cv_max") == 0) {
        if (!parse_f64(value, 0, true, INFINITY, true, &p->noise_cv_max, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "kv.reserve_prompt") == 0) {
        if (!parse_bool(value, &p->engine.kv.reserve_prompt, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "seed") == 0) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, value[0] == '0' && (value[1] == 'x' || value[1] == 'X') ? 16 : 10);
        if (!isdigit((unsigned char)value[0]) || *end || errno == ERANGE)
            return bad(err, where, key, "'%s' is not an integer in 0..2^64-1", value);
        p->seed = v;
        p->request.sampling.seed = v;
    } else if (strncmp(k, "slo.", 4) == 0) {
        if (!parse_seconds(value, &f, why, sizeof why)) SCN_FAIL();
        if (k[4] == 't' && k[5] == 't') p->slo_ttft = f;
        else if (k[4] == 't') p->slo_tpot = f;
        else p->slo_e2e = f;
    } else if (strcmp(k, "profile") == 0) {
        if (!parse_bool(value, &p->profile_ops, why, sizeof why)) SCN_FAIL();
    } else if (strcmp(k, "instruments") == 0) {
        if ((e = parse_enum(value, k_instr_names, why, sizeof why)) < 0) SCN_FAIL();
        p->instruments = (ibex_instruments)e;
    } else if (strcmp(k, "attention") == 0) {
        static const char *const names[] = {"auto", "materialized", "paged", "split_k", NULL};
        if ((e = parse_enum(value, names, why, sizeof why)) < 0 || !ibex_attn_impl_from_name(names[e], &p->attention))
            SCN_FAIL();
    } else {
        return unknown_key(err, where, key);
    }
#undef SCN_FAIL
    return IBEX_OK;
}

/* The longest length a distribution can produce. */
static int64_t dist_max(const ibex_dist *d) {
    return d->kind == IBEX_DIST_FIXED ? (int64_t)d->value : (int64_t)d->max;
}

static ibex_status check_dist(const ibex_dist *d, const char *key, const char *where, ibex_err *err,
                              const char **blame) {
    *blame = key;
    if (d->kind == IBEX_DIST_FIXED) {
        if (d->value < 1) return bad(err, where, key, "dist fixed needs value (a length >= 1)");
        return IBEX_OK;
    }
    if (d->max < 1)
        return bad(err, where, key, "dist %s needs max (the longest length%s)", k_dist_names[d->kind],
                   d->kind == IBEX_DIST_UNIFORM ? "" : "; samples are clamped to [min, max]");
    if (d->min > d->max) return bad(err, where, key, "min %.0f > max %.0f", d->min, d->max);
    return IBEX_OK;
}

int64_t ibex_point_longest(const ibex_point *p) {
    return dist_max(&p->prompt_tokens) + dist_max(&p->output_tokens);
}

int64_t ibex_point_ctx(const ibex_point *p, int64_t own_ctx) {
    if (p->model_ctx > 0) return p->model_ctx;
    const int64_t longest = ibex_point_longest(p);
    return p->model_ctx_auto && longest > own_ctx ? longest : own_ctx;
}

/* The point check, also naming the keys to blame ("a|b": the first one set) so the
 * scenario can place the message at the item that set it. */
static ibex_status check_point(const ibex_point *p, const char *where, ibex_err *err, const char **blame) {
    ibex_status st;
    if ((st = check_dist(&p->prompt_tokens, "workload.prompt_tokens", where, err, blame)) != IBEX_OK) return st;
    if ((st = check_dist(&p->output_tokens, "workload.output_tokens", where, err, blame)) != IBEX_OK) return st;
    *blame = "decoding";
    if (p->request.decoding == IBEX_DECODE_SAMPLE) {
        ibex_err e2 = {0};
        if (ibex_sampler_params_check(&p->request.sampling, &e2) != IBEX_OK) return bad(err, where, "decoding", "%s", e2.msg);
    }
    int64_t prompt = dist_max(&p->prompt_tokens), out = dist_max(&p->output_tokens);
    int64_t longest = prompt + out;
    if (p->arrival == IBEX_ARRIVAL_POISSON || p->arrival == IBEX_ARRIVAL_GAMMA) {
        double span = p->requests / p->rate;
        if (span > SCN_MAX_ARRIVAL_SPAN_S) {
            *blame = "workload.rate|workload.requests";
            return bad(err, where, "workload.rate",
                       "%g requests/s for %d requests means about %.3g s (%.3g h) of arrivals on average, more than "
                       "the %.0f h limit: raise workload.rate or lower workload.requests",
                       p->rate, p->requests, span, span / 3600.0, SCN_MAX_ARRIVAL_SPAN_S / 3600.0);
        }
    }
    if (p->model_ctx_auto && p->prompts_file[0]) {
        /* the file's longest request is known only when the runner reads it */
        *blame = "model_ctx|workload.file";
        return bad(err, where, "model_ctx", "auto needs the request lengths of workload.prompt_tokens/output_tokens, "
                                            "not a workload.file: give model_ctx a number");
    }
    if (strncmp(p->model, "synthetic:", 10) == 0) {
        const ibex_synthetic_preset *pr = ibex_synthetic_find(p->model + 10);
        *blame = "model";
        if (!pr) return bad(err, where, "model", "unknown synthetic preset '%s'", p->model + 10);
        const ibex_model_config *c = &pr->cfg;
        const int64_t ctx = ibex_point_ctx(p, c->ctx_len);
        if (longest > ctx) {
            /* a prompt that alone is too long is the prompt's fault, not the output's */
            bool prompt_alone = prompt > ctx;
            *blame = prompt_alone ? "workload.prompt_tokens|model_ctx|model"
                                  : "workload.output_tokens|workload.prompt_tokens|model_ctx|model";
            if (p->model_ctx > 0)
                return bad(err, where, prompt_alone ? "workload.prompt_tokens" : "workload.output_tokens",
                           "the longest request (%lld prompt + %lld output = %lld tokens) exceeds model_ctx %lld",
                           (long long)prompt, (long long)out, (long long)longest, (long long)ctx);
            return bad(err, where, prompt_alone ? "workload.prompt_tokens" : "workload.output_tokens",
                       "the longest request (%lld prompt + %lld output = %lld tokens) exceeds the context length %d of %s; "
                       "set model_ctx: %lld (or --ctx %lld) to run beyond the trained context",
                       (long long)prompt, (long long)out, (long long)longest, c->ctx_len, p->model, (long long)longest,
                       (long long)longest);
        }
        if (p->engine.max_seq_len > ctx) {
            *blame = "kv.max_seq_len|model_ctx|model";
            return bad(err, where, "kv.max_seq_len", "%d exceeds the context length %lld of %s%s", p->engine.max_seq_len,
                       (long long)ctx, p->model, p->model_ctx > 0 ? " (model_ctx)" : "; set model_ctx to raise it");
        }
        /* One sequence of the longest request, block-rounded, for each of its n samples
         * or beams at once — what the engine refuses at submit otherwise. */
        const ibex_kv_config *kv = &p->engine.kv;
        int64_t block_bytes = ibex_model_kv_bytes_per_token(c, kv->elem_bytes) * kv->block_size;
        int64_t pool_blocks = block_bytes > 0 ? kv->budget_bytes / block_bytes : 0;
        int64_t tokens = longest;
        if (kv->policy == IBEX_KV_CONTIGUOUS && p->engine.max_seq_len > tokens) tokens = p->engine.max_seq_len;
        int64_t seq_blocks = (tokens + kv->block_size - 1) / kv->block_size;
        int64_t copies = p->request.decoding == IBEX_DECODE_BEAM ? p->request.beam_width : p->request.n;
        int64_t need = seq_blocks * copies;
        if (need > pool_blocks) {
            char have_s[32], need_s[32];
            ibex_cli_bytes(pool_blocks * block_bytes, have_s, sizeof have_s);
            ibex_cli_bytes(need * block_bytes, need_s, sizeof need_s);
            *blame = "kv.budget|kv|workload.output_tokens|workload.prompt_tokens";
            return bad(err, where, "kv.budget",
                       "%lld bytes hold %lld blocks of %d tokens (%s), but one sequence of the longest request "
                       "(%lld tokens) × %lld %s needs %lld blocks = %lld bytes (%s)",
                       (long long)kv->budget_bytes, (long long)pool_blocks, kv->block_size, have_s, (long long)tokens,
                       (long long)copies,
                       p->request.decoding == IBEX_DECODE_BEAM ? "beams" : (copies == 1 ? "sequence" : "samples"),
                       (long long)need, (long long)(need * block_bytes), need_s);
        }
    }
    struct stat fst;
    if (p->prompts_file[0] && stat(p->prompts_file, &fst) == 0 && !S_ISREG(fst.st_mode)) {
        *blame = "workload.file";
        return bad(err, where, "workload.file", "'%s' is %s, not a regular file", p->prompts_file,
                   ibex_file_kind(fst.st_mode));
    }
    if (strncmp(p->model, "synthetic:", 10) != 0 && stat(p->model, &fst) == 0 && !S_ISREG(fst.st_mode)) {
        *blame = "model";
        return bad(err, where, "model", "'%s' is %s, not a regular file", p->model, ibex_file_kind(fst.st_mode));
    }
    if (p->quality_text[0] && (stat(p->quality_text, &fst) != 0 || !S_ISREG(fst.st_mode) ||
                               access(p->quality_text, R_OK) != 0)) {
        *blame = "quality.text|quality";
        int e = errno;
        if (stat(p->quality_text, &fst) == 0 && !S_ISREG(fst.st_mode))
            return bad(err, where, "quality.text", "'%s' is %s, not a regular file", p->quality_text,
                       ibex_file_kind(fst.st_mode));
        if (where && *where)
            return ibex_err_set(err, IBEX_ERR_IO, "%s: quality.text: cannot read '%s': %s", where, p->quality_text,
                                strerror(e));
        return ibex_err_set(err, IBEX_ERR_IO, "quality.text: cannot read '%s': %s", p->quality_text, strerror(e));
    }
    if (p->prompts_file[0] && access(p->prompts_file, R_OK) != 0) {
        *blame = "workload.file";
        int e = errno;
        if (where && *where)
            return ibex_err_set(err, IBEX_ERR_IO, "%s: workload.file: cannot read '%s': %s", where, p->prompts_file, strerror(e));
        return ibex_err_set(err, IBEX_ERR_IO, "workload.file: cannot read '%s': %s", p->prompts_file, strerror(e));
    }
    *blame = NULL;
    return IBEX_OK;
}

ibex_status ibex_point_check(const ibex_point *p, const char *where, ibex_err *err) {
    const char *blame;
    return check_point(p, where, err, &blame);
}

/* ---- the parsed definition (ibex_scenario.priv) ---------------------------------- */

typedef struct scn_item {
    char key[64]; /* canonical dotted key */
    char *value;  /* scalar text (owned) */
    int line, col; /* 1-based */
} scn_item;

typedef struct scn_list {
    char key[64];
    int line, col; /* the key */
    int n;
    scn_item *vals; /* n values, each with its own mark */
} scn_list;

typedef struct scn_dim {
    int first, count; /* lists[first .. first+count) advance together */
    int len;
    bool zip;
} scn_dim;

typedef struct scn_def {
    char file[512];  /* name used in messages */
    scn_item *set;   /* top-level settings, sorted by rank (stable) */
    int n_set, cap_set;
    scn_list *lists; /* sweep/zip lists, grouped by dimension */
    int n_lists, cap_lists;
    scn_dim *dims;
    int n_dims, cap_dims;
    int sweep_line, sweep_col; /* where a "too many points" error goes */
} scn_def;

static void def_free(scn_def *d) {
    if (!d) return;
    for (int i = 0; i < d->n_set; i++) free(d->set[i].value);
    for (int l = 0; l < d->n_lists; l++) {
        for (int i = 0; i < d->lists[l].n; i++) free(d->lists[l].vals[i].value);
        free(d->lists[l].vals);
    }
    free(d->set);
    free(d->lists);
    free(d->dims);
    free(d);
}

static bool grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

/* ---- YAML walking ----------------------------------------------------------------- */

typedef struct scn_parse {
    const char *file;
    yaml_document_t *doc;
    scn_def *def;
    ibex_scenario *s;
    ibex_err *err;
    int depth; /* 0: the file given; 1: a file listed by a suite */
} scn_parse;

static ibex_status perr(scn_parse *ps, const yaml_node_t *n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static ibex_status perr(scn_parse *ps, const yaml_node_t *n, const char *fmt, ...) {
    char msg[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ibex_err_set(ps->err, IBEX_ERR_INVALID, "%s:%zu:%zu: %s", ps->file, n->start_mark.line + 1,
                        n->start_mark.column + 1, msg);
}

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_MAPPING_NODE ? "a map" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

/* A scalar's text as a new string (NULL on allocation failure). */
static char *scalar_dup(const yaml_node_t *n) {
    char *s = malloc(n->data.scalar.length + 1);
    if (!s) return NULL;
    memcpy(s, n->data.scalar.value, n->data.scalar.length);
    s[n->data.scalar.length] = '\0';
    return s;
}

static bool scalar_is(const yaml_node_t *n, const char *s) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
           memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

static bool is_null(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (n->data.scalar.length == 0 || scalar_is(n, "~") || scalar_is(n, "null"));
}

/* Fails on a key written twice in the same map (libyaml keeps both). */
static ibex_status check_dup_keys(scn_parse *ps, const yaml_node_t *map) {
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++) {
        yaml_node_t *ka = yaml_document_get_node(ps->doc, a->key);
        if (!ka || ka->type != YAML_SCALAR_NODE) continue;
        for (yaml_node_pair_t *b = map->data.mapping.pairs.start; b < a; b++) {
            yaml_node_t *kb = yaml_document_get_node(ps->doc, b->key);
            if (kb && kb->type == YAML_SCALAR_NODE && kb->data.scalar.length == ka->data.scalar.length &&
                memcmp(kb->data.scalar.value, ka->data.scalar.value, ka->data.scalar.length) == 0)
                return perr(ps, ka, "duplicate key '%.*s' (first at line %zu)", (int)ka->data.scalar.length,
                            (const char *)ka->data.scalar.value, kb->start_mark.line + 1);
        }
    }
    return IBEX_OK;
}

/* The key of a pair as text in buf (a scalar, < 64 bytes), joined to prefix. */
static ibex_status pair_key(scn_parse *ps, const yaml_node_t *kn, const char *prefix, char *buf, size_t cap) {
    if (!kn || kn->type != YAML_SCALAR_NODE) return perr(ps, kn, "a key must be a scalar, not %s", node_kind(kn));
    size_t pl = prefix ? strlen(prefix) + 1 : 0;
    if (pl + kn->data.scalar.length >= cap)
        return perr(ps, kn, "unknown key '%.*s' (too long)", (int)kn->data.scalar.length, (const char *)kn->data.scalar.value);
    if (prefix) snprintf(buf, cap, "%s.%.*s", prefix, (int)kn->data.scalar.length, (const char *)kn->data.scalar.value);
    else snprintf(buf, cap, "%.*s", (int)kn->data.scalar.length, (const char *)kn->data.scalar.value);
    return IBEX_OK;
}

static ibex_status add_setting(scn_parse *ps, const char *key, const yaml_node_t *kn, const yaml_node_t *vn) {
    scn_def *d = ps->def;
    for (int i = 0; i < d->n_set; i++)
        if (strcmp(d->set[i].key, key) == 0)
            return perr(ps, kn, "duplicate key '%s' (first set at line %d, column %d)", key, d->set[i].line, d->set[i].col);
    if (!grow((void **)&d->set, &d->cap_set, d->n_set + 1, sizeof *d->set))
        return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
    scn_item *it = &d->set[d->n_set];
    snprintf(it->key, sizeof it->key, "%s", key);
    it->value = scalar_dup(vn);
    if (!it->value) return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
    it->line = (int)vn->start_mark.line + 1;
    it->col = (int)vn->start_mark.column + 1;
    d->n_set++;
    return IBEX_OK;
}

/* Flattens a map of settings under prefix (NULL at the top level) into def->set. */
static ibex_status walk_settings(scn_parse *ps, const yaml_node_t *map, const char *prefix) {
    ibex_status st = check_dup_keys(ps, map);
    if (st != IBEX_OK) return st;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(ps->doc, pr->key), *vn = yaml_document_get_node(ps->doc, pr->value);
        char full[64];
        if ((st = pair_key(ps, kn, prefix, full, sizeof full)) != IBEX_OK) return st;
        if (!prefix && in_list(full, k_meta)) continue; /* handled by the caller */
        const char *c = canon_key(full);
        bool section = in_list(full, k_sections);
        if (!c && !section) {
            const char *sug = suggest_key(full);
            if (sug) return perr(ps, kn, "unknown key '%s' (did you mean '%s'?)", full, sug);
            return perr(ps, kn, "unknown key '%s' (see scenarios/README.md for the keys)", full);
        }
        if (vn->type == YAML_MAPPING_NODE) {
            if (!section) return perr(ps, vn, "%s: expected a scalar, got a map", full);
            if ((st = walk_settings(ps, vn, full)) != IBEX_OK) return st;
        } else if (vn->type == YAML_SEQUENCE_NODE) {
            return perr(ps, vn, "%s: expected %s, got a list (to try several values, list them under sweep:)", full,
                        section && !c ? "a map" : "a scalar");
        } else {
            if (!c) return perr(ps, vn, "%s: expected a map of its keys, got a scalar", full);
            if ((st = add_setting(ps, c, kn, vn)) != IBEX_OK) return st;
        }
    }
    return IBEX_OK;
}

/* Reads one list (a sweep or zip entry) into a new scn_list. */
static ibex_status read_list(scn_parse *ps, const char *what, const yaml_node_t *kn, const yaml_node_t *vn) {
    scn_def *d = ps->def;
    char key[64];
    ibex_status st = pair_key(ps, kn, NULL, key, sizeof key);
    if (st != IBEX_OK) return st;
    const char *c = canon_key(key);
    if (!c) {
        if (in_list(key, k_sections))
            return perr(ps, kn, "%s: '%s' is a section; sweep one of its keys (e.g. '%s.%s')", what, key, key,
                        strcmp(key, "kv") == 0 ? "policy" : strcmp(key, "decoding") == 0 ? "temperature"
                        : strcmp(key, "slo") == 0 ? "ttft" : "requests");
        if (in_list(key, k_meta)) return perr(ps, kn, "%s: '%s' cannot be swept", what, key);
        const char *sug = suggest_key(key);
        if (sug) return perr(ps, kn, "%s: unknown key '%s' (did you mean '%s'?)", what, key, sug);
        return perr(ps, kn, "%s: unknown key '%s' (see scenarios/README.md for the keys)", what, key);
    }
    for (int l = 0; l < d->n_lists; l++)
        if (strcmp(d->lists[l].key, c) == 0)
            return perr(ps, kn, "%s: '%s' is already swept (line %d)", what, c, d->lists[l].line);
    if (vn->type != YAML_SEQUENCE_NODE)
        return perr(ps, vn, "%s: %s: expected a list of values, got %s", what, c, node_kind(vn));
    int n = (int)(vn->data.sequence.items.top - vn->data.sequence.items.start);
    if (n == 0) return perr(ps, vn, "%s: %s: empty list (give at least one value)", what, c);
    if (!grow((void **)&d->lists, &d->cap_lists, d->n_lists + 1, sizeof *d->lists))
        return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
    scn_list *L = &d->lists[d->n_lists];
    memset(L, 0, sizeof *L);
    snprintf(L->key, sizeof L->key, "%s", c);
    L->line = (int)kn->start_mark.line + 1;
    L->col = (int)kn->start_mark.column + 1;
    L->vals = calloc((size_t)n, sizeof *L->vals);
    if (!L->vals) return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
    d->n_lists++; /* owned from here on, even if a value below fails */
    for (int i = 0; i < n; i++) {
        yaml_node_t *en = yaml_document_get_node(ps->doc, vn->data.sequence.items.start[i]);
        if (!en || en->type != YAML_SCALAR_NODE)
            return perr(ps, en ? en : vn, "%s: %s: value %d: expected a scalar, got %s", what, c, i + 1,
                        en ? node_kind(en) : "nothing");
        scn_item *it = &L->vals[i];
        snprintf(it->key, sizeof it->key, "%s", c);
        it->value = scalar_dup(en);
        if (!it->value) return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
        it->line = (int)en->start_mark.line + 1;
        it->col = (int)en->start_mark.column + 1;
        L->n++;
    }
    return IBEX_OK;
}

static ibex_status add_dim(scn_parse *ps, int first, int count, bool zip) {
    scn_def *d = ps->def;
    if (!grow((void **)&d->dims, &d->cap_dims, d->n_dims + 1, sizeof *d->dims))
        return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
    d->dims[d->n_dims++] = (scn_dim){.first = first, .count = count, .len = d->lists[first].n, .zip = zip};
    return IBEX_OK;
}

static ibex_status read_sweep(scn_parse *ps, const yaml_node_t *vn) {
    if (is_null(vn)) return IBEX_OK;
    if (vn->type != YAML_MAPPING_NODE) return perr(ps, vn, "sweep: expected a map of key: [values], got %s", node_kind(vn));
    ibex_status st = check_dup_keys(ps, vn);
    if (st != IBEX_OK) return st;
    for (yaml_node_pair_t *pr = vn->data.mapping.pairs.start; pr < vn->data.mapping.pairs.top; pr++) {
        int first = ps->def->n_lists;
        st = read_list(ps, "sweep", yaml_document_get_node(ps->doc, pr->key), yaml_document_get_node(ps->doc, pr->value));
        if (st != IBEX_OK) return st;
        if ((st = add_dim(ps, first, 1, false)) != IBEX_OK) return st;
    }
    return IBEX_OK;
}

static ibex_status read_zip(scn_parse *ps, const yaml_node_t *vn) {
    if (is_null(vn)) return IBEX_OK;
    if (vn->type != YAML_MAPPING_NODE) return perr(ps, vn, "zip: expected a map of key: [values], got %s", node_kind(vn));
    ibex_status st = check_dup_keys(ps, vn);
    if (st != IBEX_OK) return st;
    int first = ps->def->n_lists;
    for (yaml_node_pair_t *pr = vn->data.mapping.pairs.start; pr < vn->data.mapping.pairs.top; pr++) {
        st = read_list(ps, "zip", yaml_document_get_node(ps->doc, pr->key), yaml_document_get_node(ps->doc, pr->value));
        if (st != IBEX_OK) return st;
        const scn_list *a = &ps->def->lists[first], *b = &ps->def->lists[ps->def->n_lists - 1];
        if (b->n != a->n)
            return ibex_err_set(ps->err, IBEX_ERR_INVALID,
                                "%s:%d:%d: zip: %s has %d values but %s has %d (zipped lists advance together and "
                                "must be the same length)",
                                ps->file, b->line, b->col, b->key, b->n, a->key, a->n);
    }
    if (ps->def->n_lists > first) return add_dim(ps, first, ps->def->n_lists - first, true);
    return IBEX_OK;
}

static ibex_status read_text(scn_parse *ps, const yaml_node_t *kn, const yaml_node_t *vn, char *dst, size_t cap) {
    if (vn->type != YAML_SCALAR_NODE)
        return perr(ps, vn, "%.*s: expected a scalar, got %s", (int)kn->data.scalar.length,
                    (const char *)kn->data.scalar.value, node_kind(vn));
    if (vn->data.scalar.length >= cap)
        return perr(ps, vn, "%.*s: too long (at most %zu characters)", (int)kn->data.scalar.length,
                    (const char *)kn->data.scalar.value, cap - 1);
    memcpy(dst, vn->data.scalar.value, vn->data.scalar.length);
    dst[vn->data.scalar.length] = '\0';
    return IBEX_OK;
}

static ibex_status read_suite_root(scn_parse *ps, const yaml_node_t *root, const yaml_node_t *suite_key);

/* The whole document: meta keys, settings, sweep and zip (or a suite, design note 6). */
static ibex_status read_root(scn_parse *ps, const yaml_node_t *root) {
    if (root->type != YAML_MAPPING_NODE)
        return perr(ps, root, "the top level must be a map of settings, not %s", node_kind(root));
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(ps->doc, pr->key);
        if (kn && scalar_is(kn, "suite")) return read_suite_root(ps, root, kn);
    }
    ibex_status st = walk_settings(ps, root, NULL);
    if (st != IBEX_OK) return st;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(ps->doc, pr->key), *vn = yaml_document_get_node(ps->doc, pr->value);
        if (scalar_is(kn, "name")) st = read_text(ps, kn, vn, ps->s->name, sizeof ps->s->name);
        else if (scalar_is(kn, "description")) st = read_text(ps, kn, vn, ps->s->description, sizeof ps->s->description);
        else if (scalar_is(kn, "sweep") || scalar_is(kn, "zip")) {
            if (!ps->def->sweep_line) {
                ps->def->sweep_line = (int)kn->start_mark.line + 1;
                ps->def->sweep_col = (int)kn->start_mark.column + 1;
            }
            st = scalar_is(kn, "sweep") ? read_sweep(ps, vn) : read_zip(ps, vn);
        } else if (scalar_is(kn, "report")) {
            st = perr(ps, kn, "report: only a suite file (one with suite: [a.yaml, ...]) takes a report");
        }
        if (st != IBEX_OK) return st;
    }
    /* a key both set and swept is fine (the sweep wins); swept in both sweep and zip is not
       (read_list checks every earlier list) */
    return IBEX_OK;
}

/* Stable sort of items by rank (insertion sort: lists are short). */
static void sort_by_rank(scn_item **a, int n) {
    for (int i = 1; i < n; i++) {
        scn_item *x = a[i];
        int r = key_rank(x->key), j = i - 1;
        while (j >= 0 && key_rank(a[j]->key) > r) a[j + 1] = a[j], j--;
        a[j + 1] = x;
    }
}

/* ---- expansion -------------------------------------------------------------------- */

static bool is_abs(const char *p) { return p[0] == '/'; }

/* dir/path into buf unless path is absolute (or dir empty). */
static bool resolve_path(const char *dir, char *path, size_t cap) {
    if (!path[0] || is_abs(path) || !dir[0]) return true;
    char tmp[1024];
    int n = snprintf(tmp, sizeof tmp, "%s/%s", dir, path);
    if (n < 0 || (size_t)n >= cap) return false;
    memcpy(path, tmp, (size_t)n + 1);
    return true;
}

/* The item among items[0..n) that set key (or a subkey of it), latest first. */
static const scn_item *find_item(scn_item *const *items, int n, const char *key) {
    size_t kl = strlen(key);
    for (int i = n - 1; i >= 0; i--)
        if (strncmp(items[i]->key, key, kl) == 0 && (items[i]->key[kl] == '\0' || items[i]->key[kl] == '.'))
            return items[i];
    return NULL;
}

/* Expands d into a new points array and swept table (replacing nothing on failure). */
static ibex_status expand(const ibex_scenario *s, const scn_def *d, ibex_point **out_points,
                          ibex_sweep_value **out_swept, int32_t *out_n, ibex_err *err) {
    int64_t total = 1;
    for (int i = 0; i < d->n_dims; i++) {
        total *= d->dims[i].len;
        if (total > SCN_MAX_POINTS)
            return ibex_err_set(err, IBEX_ERR_INVALID,
                                "%s:%d:%d: sweep: more than %d points (reduce the lists or split the scenario)", d->file,
                                d->sweep_line, d->sweep_col, SCN_MAX_POINTS);
    }
    int nl = d->n_lists;
    double bytes = (double)total * ((double)sizeof(ibex_point) + (double)nl * sizeof(ibex_sweep_value));
    if (bytes > SCN_MAX_EXPAND_BYTES)
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "%s:%d:%d: sweep: %lld points × %d swept keys would take %.0f MiB to expand (limit %.0f "
                            "MiB): reduce the lists or split the scenario",
                            d->file, d->sweep_line, d->sweep_col, (long long)total, nl, bytes / 1048576.0,
                            SCN_MAX_EXPAND_BYTES / 1048576.0);
    ibex_point *pts = calloc((size_t)total, sizeof *pts);
    ibex_sweep_value *sw = nl ? calloc((size_t)total * (size_t)nl, sizeof *sw) : NULL;
    scn_item **top = calloc((size_t)d->n_set + 1, sizeof *top);
    scn_item **mine = calloc((size_t)nl + 1, sizeof *mine);
    scn_item **all = calloc((size_t)(d->n_set + nl) + 1, sizeof *all);
    int *idx = calloc((size_t)d->n_dims + 1, sizeof *idx);
    ibex_status st = IBEX_OK;
    if (!pts || (nl && !sw) || !top || !mine || !all || !idx) {
        st = ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory for %lld points", d->file, (long long)total);
        goto done;
    }
    for (int i = 0; i < d->n_set; i++) top[i] = &d->set[i];
    sort_by_rank(top, d->n_set);

    for (int64_t pi = 0; pi < total; pi++) {
        /* decompose pi: last dimension fastest */
        int64_t r = pi;
        for (int k = d->n_dims - 1; k >= 0; k--) {
            idx[k] = (int)(r % d->dims[k].len);
            r /= d->dims[k].len;
        }
        int nm = 0;
        for (int k = 0; k < d->n_dims; k++)
            for (int l = d->dims[k].first; l < d->dims[k].first + d->dims[k].count; l++)
                mine[nm++] = &d->lists[l].vals[idx[k]];
        for (int l = 0; l < nm; l++) {
            ibex_sweep_value *v = &sw[pi * nl + l];
            snprintf(v->key, sizeof v->key, "%s", mine[l]->key);
            snprintf(v->value, sizeof v->value, "%s", mine[l]->value);
        }
        sort_by_rank(mine, nm);

        ibex_point p = ibex_point_default();
        char where[600];
        for (int i = 0; i < d->n_set + nm; i++) {
            const scn_item *it = i < d->n_set ? top[i] : mine[i - d->n_set];
            snprintf(where, sizeof where, "%s:%d:%d", d->file, it->line, it->col);
            if ((st = ibex_point_set(&p, it->key, it->value, where, err)) != IBEX_OK) goto done;
        }
        if (strncmp(p.model, "synthetic:", 10) != 0 && !resolve_path(s->dir, p.model, sizeof p.model)) {
            const scn_item *it = find_item(mine, nm, "model");
            if (!it) it = find_item(top, d->n_set, "model");
            st = ibex_err_set(err, IBEX_ERR_INVALID, "%s:%d:%d: model: path too long after joining '%s'", d->file,
                              it ? it->line : 1, it ? it->col : 1, s->dir);
            goto done;
        }
        if (!resolve_path(s->dir, p.quality_text, sizeof p.quality_text)) {
            const scn_item *it = find_item(mine, nm, "quality.text");
            if (!it) it = find_item(top, d->n_set, "quality.text");
            st = ibex_err_set(err, IBEX_ERR_INVALID, "%s:%d:%d: quality.text: path too long after joining '%s'",
                              d->file, it ? it->line : 1, it ? it->col : 1, s->dir);
            goto done;
        }
        if (!resolve_path(s->dir, p.prompts_file, sizeof p.prompts_file)) {
            const scn_item *it = find_item(mine, nm, "workload.file");
            if (!it) it = find_item(top, d->n_set, "workload.file");
            st = ibex_err_set(err, IBEX_ERR_INVALID, "%s:%d:%d: workload.file: path too long after joining '%s'",
                              d->file, it ? it->line : 1, it ? it->col : 1, s->dir);
            goto done;
        }
        const char *blame = NULL;
        if (check_point(&p, "", NULL, &blame) != IBEX_OK) {
            /* place the message at the item that set the blamed key, name the point */
            for (int i = 0; i < d->n_set; i++) all[i] = top[i];
            for (int i = 0; i < nm; i++) all[d->n_set + i] = mine[i];
            /* blame: keys to try in turn ("a|b"), then the first one's sections */
            const scn_item *it = NULL;
            char b[128];
            snprintf(b, sizeof b, "%s", blame ? blame : "");
            for (char *tok = b; tok && *tok && !it;) {
                char *bar = strchr(tok, '|');
                if (bar) *bar = '\0';
                it = find_item(all, d->n_set + nm, tok);
                tok = bar ? bar + 1 : NULL;
            }
            snprintf(b, sizeof b, "%s", blame ? blame : "");
            b[strcspn(b, "|")] = '\0';
            while (b[0] && !it) {
                char *dot = strrchr(b, '.');
                if (!dot) break;
                *dot = '\0';
                it = find_item(all, d->n_set + nm, b);
            }
            if (!it && nm) it = mine[nm - 1];
            int n = snprintf(where, sizeof where, "%s:%d:%d", d->file, it ? it->line : 1, it ? it->col : 1);
            for (int l = 0; l < nl && n > 0 && (size_t)n < sizeof where; l++)
                n += snprintf(where + n, sizeof where - (size_t)n, "%s%s=%s", l ? ", " : " (", sw[pi * nl + l].key,
                              sw[pi * nl + l].value);
            if (nl && n > 0 && (size_t)n < sizeof where) snprintf(where + n, sizeof where - (size_t)n, ")");
            st = check_point(&p, where, err, &blame);
            goto done;
        }
        pts[pi] = p;
    }
done:
    free(top);
    free(mine);
    free(all);
    free(idx);
    if (st != IBEX_OK) {
        free(pts);
        free(sw);
        return st;
    }
    *out_points = pts;
    *out_swept = sw;
    *out_n = (int32_t)total;
    return IBEX_OK;
}

/* ---- suites (design note 6) ------------------------------------------------------- */

static ibex_scenario *load_depth(const char *path, int depth, ibex_err *err);

/* A suite file: name, description, report and the listed files, each loaded once to
 * check it. */
static ibex_status read_suite_root(scn_parse *ps, const yaml_node_t *root, const yaml_node_t *suite_key) {
    if (ps->depth > 0)
        return perr(ps, suite_key, "suite: nested suites are not supported (a suite lists scenario files, not suites)");
    ibex_status st = check_dup_keys(ps, root);
    if (st != IBEX_OK) return st;
    ibex_scenario *s = ps->s;
    const yaml_node_t *list = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(ps->doc, pr->key), *vn = yaml_document_get_node(ps->doc, pr->value);
        char key[64];
        if ((st = pair_key(ps, kn, NULL, key, sizeof key)) != IBEX_OK) return st;
        if (!in_list(key, k_suite_keys)) {
            if (canon_key(key) || in_list(key, k_sections) || in_list(key, k_meta))
                return perr(ps, kn,
                            "'%s' cannot be set in a suite file: a suite holds only name, description, report and "
                            "suite (put settings in the scenario files it lists)",
                            key);
            const char *sug = ibex_cli_suggest(key, k_suite_keys);
            if (sug) return perr(ps, kn, "unknown key '%s' in a suite file (did you mean '%s'?)", key, sug);
            return perr(ps, kn, "unknown key '%s' in a suite file (a suite holds only name, description, report and suite)",
                        key);
        }
        if (!strcmp(key, "name")) st = read_text(ps, kn, vn, s->name, sizeof s->name);
        else if (!strcmp(key, "description")) st = read_text(ps, kn, vn, s->description, sizeof s->description);
        else if (!strcmp(key, "suite")) list = vn;
        else { /* report */
            if (vn->type != YAML_SCALAR_NODE) return perr(ps, vn, "report: expected a scalar, got %s", node_kind(vn));
            char *v = scalar_dup(vn), why[300];
            if (!v) return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
            int k = parse_enum(v, k_report_kinds, why, sizeof why);
            free(v);
            if (k < 0) return perr(ps, vn, "report: %s", why);
            snprintf(s->report, sizeof s->report, "%s", k_report_kinds[k]);
        }
        if (st != IBEX_OK) return st;
    }
    /* the files last, so the suite's own keys are checked before any file is read */
    if (!list || list->type != YAML_SEQUENCE_NODE)
        return perr(ps, list ? list : suite_key, "suite: expected a list of scenario files, got %s",
                    list ? node_kind(list) : "nothing");
    int n = (int)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n == 0) return perr(ps, list, "suite: empty list (give at least one scenario file)");
    s->suite = calloc((size_t)n, sizeof *s->suite);
    if (!s->suite) return ibex_err_set(ps->err, IBEX_ERR_NOMEM, "%s: out of memory", ps->file);
    for (int i = 0; i < n; i++) {
        yaml_node_t *en = yaml_document_get_node(ps->doc, list->data.sequence.items.start[i]);
        if (!en || en->type != YAML_SCALAR_NODE || is_null(en))
            return perr(ps, en ? en : list, "suite: item %d: expected a scenario file name, got %s", i + 1,
                        en && en->type != YAML_SCALAR_NODE ? node_kind(en) : "nothing");
        char *path = s->suite[i];
        size_t cap = sizeof s->suite[i];
        if (en->data.scalar.length >= cap) return perr(ps, en, "suite: item %d: path too long", i + 1);
        memcpy(path, en->data.scalar.value, en->data.scalar.length);
        path[en->data.scalar.length] = '\0';
        if (!resolve_path(s->dir, path, cap))
            return perr(ps, en, "suite: item %d: path too long after joining '%s'", i + 1, s->dir);
        for (int j = 0; j < i; j++)
            if (!strcmp(s->suite[j], path))
                return perr(ps, en, "suite: '%s' is listed twice (items %d and %d)", path, j + 1, i + 1);
        if (access(path, R_OK) != 0) {
            int e = errno;
            st = perr(ps, en, "suite: item %d: cannot read '%s': %s", i + 1, path, strerror(e));
            if (ps->err) ps->err->status = IBEX_ERR_IO;
            return IBEX_ERR_IO;
        }
        ibex_err sub = {0};
        ibex_scenario *child = load_depth(path, 1, &sub);
        if (!child) {
            ibex_status code = sub.status != IBEX_OK ? sub.status : IBEX_ERR_INVALID;
            perr(ps, en, "suite: %s", sub.msg);
            if (ps->err) ps->err->status = code;
            return code;
        }
        ibex_scenario_free(child);
        s->n_suite = i + 1;
    }
    return IBEX_OK;
}

/* ---- public ----------------------------------------------------------------------- */

/* Sets s->name from the base name of file, without a .yaml/.yml extension. */
static void default_name(ibex_scenario *s, const char *file) {
    const char *b = strrchr(file, '/');
    b = b ? b + 1 : file;
    snprintf(s->name, sizeof s->name, "%s", b);
    size_t n = strlen(s->name);
    if (n > 5 && strcmp(s->name + n - 5, ".yaml") == 0) s->name[n - 5] = '\0';
    else if (n > 4 && strcmp(s->name + n - 4, ".yml") == 0) s->name[n - 4] = '\0';
}

/* Parses text into s (whose path/dir are already set); depth 1 for a file a suite lists. */
static ibex_status parse_into(ibex_scenario *s, const char *text, size_t len, const char *file, int depth,
                              ibex_err *err) {
    scn_def *d = calloc(1, sizeof *d);
    if (!d) return ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory", file);
    snprintf(d->file, sizeof d->file, "%s", file);
    s->priv = d;
    default_name(s, file);

    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return ibex_err_set(err, IBEX_ERR_NOMEM, "%s: cannot start the YAML parser", file);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        ibex_status st;
        if (parser.context)
            st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%zu:%zu: YAML syntax error: %s %s (line %zu, column %zu)", file,
                              parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                              parser.problem ? parser.problem : "error", parser.context, parser.context_mark.line + 1,
                              parser.context_mark.column + 1);
        else
            st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%zu:%zu: YAML syntax error: %s", file,
                              parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                              parser.problem ? parser.problem : "error");
        yaml_parser_delete(&parser);
        return st;
    }
    ibex_status st = IBEX_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:1:1: empty scenario (expected a map of settings)", file);
    } else {
        scn_parse ps = {.file = file, .doc = &doc, .def = d, .s = s, .err = err, .depth = depth};
        st = read_root(&ps, root);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (st != IBEX_OK) return st;
    if (s->n_suite > 0) return IBEX_OK; /* a suite has no points of its own */
    s->n_swept = d->n_lists;
    return expand(s, d, &s->points, &s->swept, &s->n_points, err);
}

ibex_scenario *ibex_scenario_parse(const char *text, size_t len, const char *name, ibex_err *err) {
    if (!name) name = "<scenario>";
    ibex_scenario *s = calloc(1, sizeof *s);
    if (!s) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", name);
    s->dir[0] = '\0'; /* relative paths stay relative to the working directory */
    if (parse_into(s, text ? text : "", text ? len : 0, name, 0, err) != IBEX_OK) {
        ibex_scenario_free(s);
        return NULL;
    }
    return s;
}

static ibex_scenario *load_depth(const char *path, int depth, ibex_err *err) {
    FILE *f = ibex_fopen_regular(path, err); /* a FIFO or directory is refused, never waited on */
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    int rerr = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (rerr) {
        free(buf);
        ibex_err_set(err, IBEX_ERR_IO, "%s: read error: %s", path, strerror(rerr));
        return NULL;
    }
    ibex_scenario *s = calloc(1, sizeof *s);
    if (!s) {
        free(buf);
        ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(s->dir, sizeof s->dir, ".");
    else if (slash == path) snprintf(s->dir, sizeof s->dir, "/");
    else snprintf(s->dir, sizeof s->dir, "%.*s", (int)(slash - path), path);
    ibex_status st = parse_into(s, buf, len, path, depth, err);
    free(buf);
    if (st != IBEX_OK) {
        ibex_scenario_free(s);
        return NULL;
    }
    return s;
}

#ifndef IBEX_BIN_TO_SCENARIOS
#define IBEX_BIN_TO_SCENARIOS "../share/ibex/scenarios"
#endif

bool ibex_scenario_find(const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s", name);
    if (access(name, F_OK) == 0 || strchr(name, '/') || !*name) return access(name, F_OK) == 0;
    char exe[1024], dirs[2][1100];
    int nd = 0;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dirs[nd++], sizeof dirs[0], "%s/%s", exe, IBEX_BIN_TO_SCENARIOS);
        }
    }
#ifdef IBEX_SOURCE_SCENARIOS
    snprintf(dirs[nd++], sizeof dirs[0], "%s", IBEX_SOURCE_SCENARIOS);
#endif
    static const char *const ext[] = {"", ".yaml"};
    for (int d = 0; d < nd; d++)
        for (int e = 0; e < 2; e++) {
            char cand[1300];
            snprintf(cand, sizeof cand, "%s/%s%s", dirs[d], name, ext[e]);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && strlen(cand) < cap) {
                snprintf(path, cap, "%s", cand);
                return true;
            }
        }
    return false;
}

ibex_scenario *ibex_scenario_load(const char *path, ibex_err *err) { return load_depth(path, 0, err); }

void ibex_scenario_free(ibex_scenario *s) {
    if (!s) return;
    def_free(s->priv);
    free(s->suite);
    free(s->points);
    free(s->swept);
    free(s);
}

/* Keeps values first and last of list L (the caller decides whether both stay). */
static void list_keep_ends(scn_list *L, bool both) {
    if (L->n <= 1) return;
    for (int i = 1; i < L->n - 1; i++) free(L->vals[i].value);
    if (both) {
        L->vals[1] = L->vals[L->n - 1];
        L->n = 2;
    } else {
        free(L->vals[L->n - 1].value);
        L->n = 1;
    }
}

static void cap_dist(ibex_dist *d, double cap) {
    if (d->kind == IBEX_DIST_FIXED) {
        if (d->value > cap) d->value = cap;
        d->min = d->max = d->value;
    } else {
        if (d->max > cap) d->max = cap;
        if (d->min > d->max) d->min = d->max;
    }
}

void ibex_scenario_quick(ibex_scenario *s) {
    if (!s || !s->priv || s->n_suite > 0) return;
    scn_def *d = s->priv;
    for (int k = 0; k < d->n_dims; k++) {
        scn_dim *dm = &d->dims[k];
        if (dm->len <= 1) continue;
        bool both = false; /* keep the last too unless every list ends where it starts */
        for (int l = dm->first; l < dm->first + dm->count; l++)
            if (strcmp(d->lists[l].vals[0].value, d->lists[l].vals[dm->len - 1].value) != 0) both = true;
        for (int l = dm->first; l < dm->first + dm->count; l++) list_keep_ends(&d->lists[l], both);
        dm->len = both ? 2 : 1;
    }
    ibex_point *pts;
    ibex_sweep_value *sw;
    int32_t n;
    ibex_err e = {0};
    if (expand(s, d, &pts, &sw, &n, &e) == IBEX_OK) {
        /* every kept value was valid before, so this only fails on allocation */
        free(s->points);
        free(s->swept);
        s->points = pts;
        s->swept = sw;
        s->n_points = n;
    }
    /* Lengths a sweep varies keep their values: the point is the curve, and a capped
     * value would contradict the point's label. Fixed lengths are capped. */
    bool prompt_swept = false, output_swept = false, requests_swept = false;
    for (int32_t k = 0; k < s->n_swept && s->n_points > 0; k++) {
        prompt_swept |= strncmp(s->swept[k].key, "workload.prompt_tokens", 22) == 0;
        output_swept |= strncmp(s->swept[k].key, "workload.output_tokens", 22) == 0;
        requests_swept |= strcmp(s->swept[k].key, "workload.requests") == 0;
    }
    for (int32_t i = 0; i < s->n_points; i++) {
        ibex_point *p = &s->points[i];
        if (p->requests > 4 && !requests_swept) p->requests = 4;
        p->repeat = 1;
        p->warmup = 0;
        if (!output_swept) cap_dist(&p->output_tokens, 16);
        if (!prompt_swept) cap_dist(&p->prompt_tokens, 128);
    }
}
