/* runner.c — the scenario runner: for each point, a workload of requests with
 * seeded lengths and arrival times goes through a fresh engine per repetition; token
 * events are timestamped, per-op time is split between prefill and decode steps, KV
 * accounting is sampled per step, and everything lands in results.json. */
#include "harness/runner.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdlib.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "engine/alloc.h"
#include "engine/backends.h"
#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "harness/cli.h"
#include "harness/cupti.h"
#include "harness/metrics.h"
#include "harness/roofline.h"
#include "kernels/hostmem.h"
#include "harness/nvtx.h"
#include "harness/quality.h"
#include "harness/workload_file.h"
#include "engine/fileio.h"
#include "ibex_build.h"


ibex_status ibex_mkdir_p(const char *dir, ibex_err *err) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return ibex_err_set(err, IBEX_ERR_INVALID, "output path too long: %s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return ibex_err_set(err, IBEX_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return ibex_err_set(err, IBEX_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    return IBEX_OK;
}

/* ---- workload ---- */

static double normal01(ibex_rng *r) { /* Box–Muller */
    double u1 = ibex_rng_uniform(r), u2 = ibex_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int32_t sample_len(const ibex_dist *d, ibex_rng *r) {
    double v;
    switch (d->kind) {
    case IBEX_DIST_FIXED: v = d->value; break;
    case IBEX_DIST_UNIFORM: v = d->min + floor(ibex_rng_uniform(r) * (d->max - d->min + 1)); break;
    case IBEX_DIST_NORMAL: v = d->mean + d->sd * normal01(r); break;
    case IBEX_DIST_LOGNORMAL: v = exp(d->mean + d->sd * normal01(r)); break;
    default: v = 1;
    }
    v = floor(v + 0.5);
    if (d->kind != IBEX_DIST_FIXED) {
        if (d->min > 0 && v < d->min) v = d->min;
        if (d->max > 0 && v > d->max) v = d->max;
    }
    return v < 1 ? 1 : (int32_t)v;
}

/* Gamma(shape k, scale 1) by Marsaglia–Tsang (k < 1 through the boost k+1). */
static double gamma_sample(ibex_rng *r, double k) {
    if (k < 1.0) return gamma_sample(r, k + 1.0) * pow(ibex_rng_uniform(r) + 1e-300, 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = normal01(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = ibex_rng_uniform(r);
        if (log(u + 1e-300) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

typedef struct wreq {
    int32_t *prompt;
    int32_t n_prompt, n_out;
    double arrival; /* offset from the run start; concurrency: set at submission */
    int64_t id;     /* engine id once submitted, else −1 */
    double *times;  /* (n_out) branch-0 token times */
    int32_t n_times;
    int64_t tokens_all; /* tokens of every branch */
    uint64_t nvtx;      /* its NVTX range while in flight */
} wreq;

typedef struct workload {
    wreq *r;
    int32_t n;
} workload;

static void workload_free(workload *w) {
    for (int32_t i = 0; i < w->n; i++) free(w->r[i].prompt), free(w->r[i].times);
    free(w->r);
    w->r = NULL, w->n = 0;
}

/* Reads workload.file: JSONL lines {"prompt": "text"} or {"prompt_tokens": N}, with an
 * optional "output_tokens": M (else the output distribution is sampled); each line is
 * checked by ibex_jsonl_parse_line (workload_file.c). */
static ibex_status load_prompts_file(const ibex_point *pt, const ibex_model *m, workload *w, ibex_rng *rng,
                                     ibex_err *err) {
    FILE *f = ibex_fopen_regular(pt->prompts_file, err); /* a FIFO is refused, not waited on */
    if (!f) {
        ibex_err_prefix(err, "workload.file");
        return err->status;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    ibex_status st = IBEX_OK;
    while (w->n < pt->requests && (len = getline(&line, &cap, f)) > 0) {
        lineno++;
        ibex_jsonl_req jr;
        if ((st = ibex_jsonl_parse_line(line, (size_t)len, pt->prompts_file, lineno, m->cfg.ctx_len, &jr, err))) break;
        if (jr.blank) continue;
        wreq *q = &w->r[w->n];
        if (jr.text) {
            if (!m->tok) {
                st = ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s:%d: text prompts need a tokenizer: %s", pt->prompts_file,
                                  lineno, m->tok_error);
                ibex_jsonl_req_clear(&jr);
                break;
            }
            const char *s = jr.text;
            int64_t n = ibex_tokenizer_encode(m->tok, s, strlen(s), true, NULL, 0, err);
            if (n > m->cfg.ctx_len) {
                st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d: the prompt is %lld tokens, more than the context length %d",
                                  pt->prompts_file, lineno, (long long)n, m->cfg.ctx_len);
                ibex_jsonl_req_clear(&jr);
                break;
            }
            q->prompt = malloc((size_t)(n > 0 ? n : 1) * sizeof *q->prompt);
            if (n <= 0 || !q->prompt) {
                st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d: empty prompt", pt->prompts_file, lineno);
                ibex_jsonl_req_clear(&jr);
                break;
            }
            q->n_prompt = (int32_t)ibex_tokenizer_encode(m->tok, s, strlen(s), true, q->prompt, n, err);
        } else {
            q->n_prompt = jr.prompt_tokens;
            q->prompt = malloc((size_t)q->n_prompt * sizeof *q->prompt);
            if (!q->prompt) {
                st = ibex_err_set(err, IBEX_ERR_NOMEM, "%s:%d: out of memory for %d prompt tokens", pt->prompts_file,
                                  lineno, q->n_prompt);
                ibex_jsonl_req_clear(&jr);
                break;
            }
            for (int32_t j = 0; j < q->n_prompt; j++)
                q->prompt[j] = 3 + (int32_t)(ibex_rng_next(rng) % (uint64_t)(m->cfg.vocab_size - 3));
        }
        q->n_out = jr.output_tokens > 0 ? jr.output_tokens : sample_len(&pt->output_tokens, rng);
        ibex_jsonl_req_clear(&jr);
        w->n++;
    }
    free(line);
    fclose(f);
    if (!st && w->n == 0) st = ibex_err_set(err, IBEX_ERR_FORMAT, "%s holds no prompts", pt->prompts_file);
    return st;
}

static ibex_status make_workload(const ibex_point *pt, const ibex_model *m, workload *w, ibex_err *err) {
    ibex_rng rng;
    ibex_rng_seed(&rng, pt->seed);
    w->r = calloc((size_t)pt->requests, sizeof *w->r);
    w->n = 0;
    if (!w->r) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    ibex_status st = IBEX_OK;
    if (pt->prompts_file[0]) {
        st = load_prompts_file(pt, m, w, &rng, err);
    } else {
        for (int32_t i = 0; i < pt->requests; i++) {
            wreq *q = &w->r[i];
            q->n_prompt = sample_len(&pt->prompt_tokens, &rng);
            q->n_out = sample_len(&pt->output_tokens, &rng);
            if (!(q->prompt = malloc((size_t)q->n_prompt * sizeof *q->prompt))) {
                st = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
                break;
            }
            for (int32_t j = 0; j < q->n_prompt; j++)
                q->prompt[j] = 3 + (int32_t)(ibex_rng_next(&rng) % (uint64_t)(m->cfg.vocab_size - 3));
            w->n++;
        }
    }
    if (st) return st;
    double t = 0;
    for (int32_t i = 0; i < w->n; i++) {
        wreq *q = &w->r[i];
        if (pt->arrival == IBEX_ARRIVAL_POISSON) t += -log(1.0 - ibex_rng_uniform(&rng)) / pt->rate;
        if (pt->arrival == IBEX_ARRIVAL_GAMMA) t += gamma_sample(&rng, pt->burstiness) / (pt->rate * pt->burstiness);
        q->arrival = t;
        q->id = -1;
        if (!(q->times = malloc((size_t)q->n_out * sizeof *q->times)))
            return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
    }
    return IBEX_OK;
}

/* ---- trace: spans of the last timed repetition of each point ---- */

/* Trace times are integer nanoseconds. The file holds them as microseconds with three
 * decimals (ns / 1000 written with at most 15 significant digits, which a double holds
 * exactly), so a reader gets the same integer nanoseconds back and a child that ends
 * with its parent still ends with it: no rounding can make it outlive the parent. */
static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t s_to_ns(double s) { return (int64_t)llround(s * 1e9); }

typedef struct span_ev {
    int64_t t; /* ns since the repetition started */
    const char *name;
    int32_t layer;
    bool begin;
} span_ev;

typedef struct kv_sample {
    int64_t t;
    int32_t blocks;
    int64_t reserved, used;
} kv_sample;

typedef struct tracer {
    int64_t t0;     /* the repetition's start (CLOCK_MONOTONIC ns) */
    double t0_s;    /* the same in ibex_cli_now_s seconds */
    int64_t origin; /* where the trace's 0 lies on the repetition's clock: run start − t0 (<= 0) */
    span_ev *ev;
    size_t n, cap;
    kv_sample *kv;
    size_t n_kv, cap_kv;
    bool oom;
} tracer;

static void tracer_push(tracer *tr, int64_t t, const char *name, int layer, bool begin) {
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? 2 * tr->cap : 4096;
        span_ev *e = realloc(tr->ev, cap * sizeof *e);
        if (!e) {
            tr->oom = true;
            return;
        }
        tr->ev = e, tr->cap = cap;
    }
    tr->ev[tr->n++] = (span_ev){.t = t, .name = name, .layer = layer, .begin = begin};
}

/* What listens to the engine's spans during a repetition: the trace, NVTX, CUPTI's
 * external correlation (which op launched each kernel). */
typedef struct instr {
    tracer *tr;  /* NULL: no trace this repetition */
    bool nvtx;
    ibex_cupti *cupti; /* NULL: no CUPTI this repetition */
    bool cupti_ok;     /* CUPTI is running (this point's other repetitions go untraced) */
} instr;

/* The engine op a span name is, or −1 (span names are ibex_op_name's pointers). */
static int op_of(const char *name) {
    for (int o = 0; o < IBEX_OP_COUNT; o++)
        if (name == ibex_op_name((ibex_op)o)) return o;
    return -1;
}

static void on_span(void *ctx, bool begin, const char *name, int layer) {
    instr *in = ctx;
    if (in->tr) tracer_push(in->tr, now_ns() - in->tr->t0, name, layer, begin);
    if (in->nvtx) {
        if (begin)
            ibex_nvtx_push(name, layer);
        else
            ibex_nvtx_pop();
    }
    if (in->cupti) {
        int op = op_of(name);
        if (op >= 0) {
            if (begin)
                ibex_cupti_push_op(in->cupti, op);
            else
                ibex_cupti_pop_op(in->cupti);
        }
    }
}

static void tracer_kv(tracer *tr, int64_t t, const ibex_kv_stats *ks) {
    if (tr->n_kv == tr->cap_kv) {
        size_t cap = tr->cap_kv ? 2 * tr->cap_kv : 1024;
        kv_sample *k = realloc(tr->kv, cap * sizeof *k);
        if (!k) {
            tr->oom = true;
            return;
        }
        tr->kv = k, tr->cap_kv = cap;
    }
    tr->kv[tr->n_kv++] = (kv_sample){t, ks->blocks_used, ks->bytes_reserved, ks->bytes_used};
}

static void tracer_free(tracer *tr) {
    free(tr->ev);
    free(tr->kv);
    memset(tr, 0, sizeof *tr);
}

/* ns as exact microseconds (see above). */
static json_t *us(int64_t ns) { return json_real((double)ns / 1000.0); }

/* A complete event from t0 to t1 (ns on the trace's clock). */
static json_t *x_event(const char *name, const char *cat, int pid, int tid, int64_t t0, int64_t t1) {
    json_t *x = json_pack("{s:s,s:s,s:s,s:i,s:i}", "name", name, "cat", cat, "ph", "X", "pid", pid, "tid", tid);
    json_object_set_new(x, "ts", us(t0));
    json_object_set_new(x, "dur", us(t1 > t0 ? t1 - t0 : 0));
    return x;
}

/* An async begin ("b") or end ("e") event of track id (one row per request). */
static json_t *async_event(const char *name, int pid, int64_t id, bool begin, int64_t t) {
    json_t *x = json_pack("{s:s,s:s,s:s,s:i,s:i,s:I}", "name", name, "cat", "request", "ph", begin ? "b" : "e", "pid",
                          pid, "tid", 1, "id", (json_int_t)id);
    json_object_set_new(x, "ts", us(t));
    return x;
}

/* Trace category of a span name: "step", a step's phase, "layer", a layer's half
 * ("block": attn, mlp), or an op. */
static const char *span_category(const char *name) {
    static const char *const phases[] = {"schedule", "prefill", "decode", "sampling", "release"};
    if (!strcmp(name, "layer")) return "layer";
    if (!strcmp(name, "step")) return "step";
    if (!strcmp(name, "attn") || !strcmp(name, "mlp")) return "block";
    for (size_t i = 0; i < sizeof phases / sizeof *phases; i++)
        if (!strcmp(name, phases[i])) return "phase";
    return "op";
}

/* A matched span: begin and end times (ns, trace clock) and its parent (index or −1). */
typedef struct span_pair {
    size_t b;       /* index of the begin event */
    int64_t t0, t1;
    long parent;
} span_pair;

/* Appends the point's trace events (Chrome trace-event format) to events: one process
 * per point; thread 1 holds steps > phases > layers > halves > ops, threads 2 and 3 the
 * GPU's kernels and copies (CUPTI), one async row per request (id = pid * 1e6 + i), and
 * a counter track the KV blocks in use. Times are relative to the run's start.
 *
 * Nesting is enforced here, not hoped for: spans are matched with a stack, then each
 * span is clamped into its parent ([max(t0, parent t0), min(t1, parent t1)]) in
 * begin order, so the parent is final before its children are clamped. */
static void tracer_emit(const tracer *tr, const workload *w, int pid, const char *label, json_t *events) {
    json_array_append_new(events, json_pack("{s:s,s:s,s:i,s:i,s:{s:s}}", "name", "process_name", "ph", "M", "pid", pid,
                                            "tid", 0, "args", "name", label));
    json_array_append_new(events, json_pack("{s:s,s:s,s:i,s:i,s:{s:s}}", "name", "thread_name", "ph", "M", "pid", pid,
                                            "tid", 1, "args", "name", "engine (steps, layers, ops)"));
    const int64_t off = -tr->origin; /* repetition clock -> trace clock */
    span_pair *sp = malloc((tr->n / 2 + 1) * sizeof *sp);
    long *open = malloc((tr->n / 2 + 1) * sizeof *open); /* the stack of open pairs */
    size_t np = 0, depth = 0;
    if (sp && open) {
        for (size_t i = 0; i < tr->n; i++) {
            const span_ev *e = &tr->ev[i];
            if (e->begin) {
                if (np > tr->n / 2) break; /* more begins than ends: the rest never closed */
                sp[np] = (span_pair){.b = i, .t0 = e->t + off, .t1 = -1, .parent = depth ? open[depth - 1] : -1};
                open[depth++] = (long)np++;
                continue;
            }
            if (depth == 0) continue; /* unmatched end: cannot happen, the hooks are paired */
            sp[open[--depth]].t1 = e->t + off;
        }
        /* pairs are numbered in begin order: a parent comes before its children */
        for (size_t k = 0; k < np; k++) {
            span_pair *q = &sp[k];
            if (q->t1 < 0) continue; /* never ended (an error mid-step): dropped */
            if (q->t1 < q->t0) q->t1 = q->t0;
            if (q->parent >= 0) {
                const span_pair *pa = &sp[q->parent];
                if (pa->t1 < 0) {
                    q->t1 = -1;
                    continue;
                }
                if (q->t0 < pa->t0) q->t0 = pa->t0;
                if (q->t1 > pa->t1) q->t1 = pa->t1;
                if (q->t0 > q->t1) q->t0 = q->t1;
            }
            const span_ev *b = &tr->ev[q->b];
            const char *cat = span_category(b->name);
            char name[64];
            if (!strcmp(cat, "layer"))
                snprintf(name, sizeof name, "layer %d", b->layer);
            else
                snprintf(name, sizeof name, "%s", b->name);
            json_t *x = x_event(name, cat, pid, 1, q->t0, q->t1);
            if (b->layer >= 0) json_object_set_new(x, "args", json_pack("{s:i}", "layer", b->layer));
            json_array_append_new(events, x);
        }
    }
    free(sp), free(open);
    for (int32_t i = 0; i < w->n; i++) {
        const wreq *q = &w->r[i];
        if (q->n_times == 0) continue;
        char name[64];
        snprintf(name, sizeof name, "request %d", i);
        int64_t id = (int64_t)pid * 1000000 + i;
        int64_t ta = s_to_ns(q->arrival) + off, t1 = s_to_ns(q->times[0]) + off,
                tn = s_to_ns(q->times[q->n_times - 1]) + off;
        if (t1 < ta) t1 = ta;
        if (tn < t1) tn = t1;
        json_t *b = async_event(name, pid, id, true, ta);
        json_object_set_new(b, "args", json_pack("{s:i,s:i}", "prompt_tokens", q->n_prompt, "output_tokens", q->n_times));
        json_array_append_new(events, b);
        json_array_append_new(events, async_event("queue + prefill (TTFT)", pid, id, true, ta));
        json_array_append_new(events, async_event("queue + prefill (TTFT)", pid, id, false, t1));
        if (tn > t1) {
            json_array_append_new(events, async_event("decode", pid, id, true, t1));
            json_array_append_new(events, async_event("decode", pid, id, false, tn));
        }
        json_array_append_new(events, async_event(name, pid, id, false, tn));
    }
    for (size_t i = 0; i < tr->n_kv; i++) {
        json_t *c = json_pack("{s:s,s:s,s:i,s:{s:i,s:I,s:I}}", "name", "KV cache", "ph", "C", "pid", pid, "args",
                              "blocks in use", tr->kv[i].blocks, "bytes reserved", (json_int_t)tr->kv[i].reserved,
                              "bytes used", (json_int_t)tr->kv[i].used);
        json_object_set_new(c, "ts", us(tr->kv[i].t + off));
        json_array_append_new(events, c);
    }
}

/* ---- one repetition ---- */

typedef struct rep_result {
    double wall_s, prefill_s, decode_s;
    int64_t decode_steps, prefill_tokens, decode_tokens, steps, tokens_all;
    ibex_op_stats ops[2]; /* [0] prefill steps, [1] decode-only steps */
    double sample_ns[2], sched_ns[2]; /* sampling; the rest of a step's wall time beyond ops and sampling */
    int64_t n_steps[2];
    ibex_engine_totals tot;
    ibex_kv_stats ks;
    double cpu_s;            /* process CPU time over the repetition */
    int64_t *kv_res, *kv_used; /* (n_kv) bytes reserved / used after each step */
    double *kv_dt;           /* (n_kv) the step's wall time */
    size_t n_kv, cap_kv;
    bool interrupted;
} rep_result;

static void rep_free(rep_result *rr) {
    free(rr->kv_res), free(rr->kv_used), free(rr->kv_dt);
    rr->kv_res = rr->kv_used = NULL, rr->kv_dt = NULL;
    rr->n_kv = rr->cap_kv = 0;
}

static bool rep_kv_push(rep_result *rr, int64_t reserved, int64_t used, double dt) {
    if (rr->n_kv == rr->cap_kv) {
        size_t cap = rr->cap_kv ? 2 * rr->cap_kv : 1024;
        int64_t *a = realloc(rr->kv_res, cap * sizeof *a);
        if (!a) return false;
        rr->kv_res = a;
        if (!(a = realloc(rr->kv_used, cap * sizeof *a))) return false;
        rr->kv_used = a;
        double *d = realloc(rr->kv_dt, cap * sizeof *d);
        if (!d) return false;
        rr->kv_dt = d, rr->cap_kv = cap;
    }
    rr->kv_res[rr->n_kv] = reserved, rr->kv_used[rr->n_kv] = used, rr->kv_dt[rr->n_kv] = dt;
    rr->n_kv++;
    return true;
}

/* CPU time of the whole process (every thread), s. */
static double process_cpu_s(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)) return NAN;
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void op_delta(ibex_op_stats *acc, const ibex_op_stats *before, const ibex_op_stats *after) {
    ibex_op_stats_delta(acc, before, after); /* also the device counters (engine/forward.h) */
}

static ibex_status run_rep(const ibex_point *pt, const ibex_model *m, ibex_backend *be, workload *w,
                           volatile sig_atomic_t *interrupted, instr *in, rep_result *rr, ibex_kv_pool **kv_spare,
                           ibex_err *err) {
    tracer *tr = in->tr;
    memset(rr, 0, sizeof *rr);
    /* the repetitions of a point share one KV pool (no fresh allocation and first-touch
     * faults per repetition; nothing reads a slot before writing it) */
    ibex_engine_config ec = pt->engine;
    ec.kv.spare = kv_spare;
    ibex_engine *e = ibex_engine_new(m, be, &ec, err);
    if (!e) return err->status;
    ibex_forward *fwd = ibex_engine_forward(e);
    /* instruments: cupti without a running tracer falls back to per-op timers */
    const bool op_timers = pt->profile_ops || (pt->instruments == IBEX_INSTR_CUPTI && !in->cupti && !in->cupti_ok);
    if (fwd) ibex_forward_set_profiling(fwd, op_timers);
    /* A step emits one token per running branch, and a finishing beam search its whole
     * best hypothesis: size for both. */
    int32_t width = pt->request.n > pt->request.beam_width ? pt->request.n : pt->request.beam_width, max_out = 1;
    for (int32_t i = 0; i < w->n; i++) max_out = w->r[i].n_out > max_out ? w->r[i].n_out : max_out;
    int cap = pt->engine.max_batch * (width + max_out);
    ibex_token_event *ev = malloc((size_t)cap * sizeof *ev);
    int64_t *owner = malloc((size_t)w->n * sizeof *owner); /* engine id -> workload index */
    ibex_status st = IBEX_OK;
    if (!ev || !owner) {
        st = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int32_t i = 0; i < w->n; i++) w->r[i].id = -1, w->r[i].n_times = 0, w->r[i].tokens_all = 0;
    const bool timed_arrivals = pt->engine.compute &&
                                (pt->arrival == IBEX_ARRIVAL_POISSON || pt->arrival == IBEX_ARRIVAL_GAMMA);
    int32_t next = 0, in_flight = 0, done = 0;
    double cpu0 = process_cpu_s();
    double t0 = ibex_cli_now_s();
    if (tr) tr->t0 = now_ns(), tr->t0_s = t0;
    const bool hook = tr || in->nvtx || in->cupti;
    if (hook) ibex_engine_set_span_hook(e, on_span, in);
    while (done < w->n) {
        if (*interrupted) {
            rr->interrupted = true;
            break;
        }
        double now = ibex_cli_now_s() - t0;
        /* submit what has arrived */
        while (next < w->n) {
            wreq *q = &w->r[next];
            if (pt->arrival == IBEX_ARRIVAL_CONCURRENCY) {
                if (in_flight >= pt->concurrency) break;
                q->arrival = now;
            } else if (timed_arrivals && q->arrival > now) {
                break;
            } else if (!timed_arrivals) {
                q->arrival = pt->arrival == IBEX_ARRIVAL_OFFLINE ? 0 : q->arrival;
            }
            ibex_request_params rp = pt->request;
            rp.max_new_tokens = q->n_out;
            int64_t id = ibex_engine_submit(e, q->prompt, q->n_prompt, &rp, err);
            if (id < 0) {
                ibex_err_prefix(err, "request %d (prompt %d, output %d tokens)", next, q->n_prompt, q->n_out);
                st = err->status;
                goto out;
            }
            owner[id] = next;
            q->id = id;
            if (in->nvtx) q->nvtx = ibex_nvtx_start("request", next);
            next++, in_flight++;
        }
        if (!ibex_engine_has_work(e)) { /* idle until the next arrival */
            if (next >= w->n) break;    /* nothing left to arrive or to run */
            double wait = w->r[next].arrival - (ibex_cli_now_s() - t0);
            if (wait > 0) { /* at most 0.1 s at a time: Ctrl-C/SIGTERM is seen, time_t never overflows */
                if (wait > 0.1) wait = 0.1;
                struct timespec ts = {0, (long)(wait * 1e9)};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        ibex_op_stats before;
        if (fwd) before = *ibex_forward_stats(fwd);
        double sample_before = ibex_engine_totals_get(e)->sample_ns;
        double ts = ibex_cli_now_s();
        if (hook) on_span(in, true, "step", -1);
        int nev = ibex_engine_step(e, ev, cap, err);
        double te = ibex_cli_now_s();
        /* IBEX_DEBUG_SLOWDOWN_PCT=P busy-waits P % of each step's time: the injected
         * slowdown that proves the regression gate (docs/COMPARE.md). Unset: no cost. */
        static double slow = -1;
        if (slow < 0) slow = getenv("IBEX_DEBUG_SLOWDOWN_PCT") ? fmax(atof(getenv("IBEX_DEBUG_SLOWDOWN_PCT")), 0) / 100 : 0;
        if (slow > 0) for (double until = te + (te - ts) * slow; (te = ibex_cli_now_s()) < until;) {}
        if (hook) on_span(in, false, "step", -1);
        if (nev < 0) {
            st = err->status;
            goto out;
        }
        const ibex_step_info *si = ibex_engine_last_step(e);
        bool prefill = si->prefill_tokens > 0;
        if (prefill)
            rr->prefill_s += te - ts;
        else if (si->decode_tokens > 0)
            rr->decode_s += te - ts, rr->decode_steps++;
        if (fwd) op_delta(&rr->ops[prefill ? 0 : 1], &before, ibex_forward_stats(fwd));
        if (fwd && op_timers) { /* step time not spent in ops or sampling: scheduling, KV, batch setup */
            const ibex_op_stats *after = ibex_forward_stats(fwd);
            double ops_ns = 0, smp = ibex_engine_totals_get(e)->sample_ns - sample_before;
            for (int o = 0; o < IBEX_OP_COUNT; o++) ops_ns += after->ns[o] - before.ns[o];
            int ph = prefill ? 0 : 1;
            rr->sample_ns[ph] += smp;
            rr->sched_ns[ph] += (te - ts) * 1e9 - ops_ns - smp;
            rr->n_steps[ph]++;
        }
        for (int k = 0; k < nev; k++) {
            wreq *q = &w->r[owner[ev[k].req]];
            q->tokens_all++;
            if (ev[k].branch == 0 && q->n_times < q->n_out) q->times[q->n_times++] = te - t0;
        }
        for (int32_t i = 0; i < next; i++) { /* requests that finished this step */
            wreq *q = &w->r[i];
            if (q->id >= 0 && ibex_engine_finished(e, q->id)) {
                q->id = -2 - q->id; /* mark counted, keep the engine id recoverable */
                if (in->nvtx) ibex_nvtx_end(q->nvtx);
                done++, in_flight--;
            }
        }
        ibex_kv_stats ks;
        ibex_kv_stats_get(ibex_engine_kv(e), &ks);
        if (tr) tracer_kv(tr, now_ns() - tr->t0, &ks);
        if (!rep_kv_push(rr, ks.bytes_reserved, ks.bytes_used, te - ts)) {
            st = ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    rr->wall_s = ibex_cli_now_s() - t0;
    rr->cpu_s = process_cpu_s() - cpu0;
    rr->tot = *ibex_engine_totals_get(e);
    ibex_kv_stats_get(ibex_engine_kv(e), &rr->ks);
    for (int32_t i = 0; i < w->n; i++) rr->tokens_all += w->r[i].tokens_all;
out:
    free(ev);
    free(owner);
    ibex_engine_free(e);
    return st;
}

/* ---- GPU activity (CUPTI) ---- */

/* What the whole run shares: the CUPTI tracer, when a point asked for it and it
 * started (it must start before the first CUDA call of the process). */
typedef struct run_globals {
    ibex_cupti *cupti;
    char cupti_error[512]; /* why CUPTI is not running, "" if it is or was not wanted */
    int64_t run_t0_ns;     /* the run's start: time 0 of trace.json */
    ibex_load_probe probe; /* ibex's own share of the load average */
    struct run_roof {      /* the measured roofline per (backend, threads) asked (roofline_prepare) */
        char backend[16];
        int threads;
        bool ok;
        ibex_roofline r;
        char error[256];
    } roof[8];
    int n_roof;
} run_globals;

/* Reads the repetition's GPU activity: the per-kernel / per-op tables into P.gpu, each
 * op's achieved bandwidth and FLOP rate (analytic bytes and FLOPs over its kernel time)
 * against the measured copy bandwidth, and the kernels on their own trace tracks. */
static void gpu_activity(ibex_cupti *c, ibex_backend *be, const rep_result *rr, json_t *P, const tracer *tr, int pid,
                         json_t *events) {
    ibex_err err = {0};
    if (be && be->sync && be->sync(be, &err)) {
        json_object_set_new(P, "gpu", json_pack("{s:s}", "error", err.msg));
        return;
    }
    ibex_status fst = ibex_cupti_flush(c, &err);
    const char *names[IBEX_OP_COUNT];
    for (int o = 0; o < IBEX_OP_COUNT; o++) names[o] = ibex_op_name((ibex_op)o);
    json_t *g = ibex_cupti_to_json(c, names, IBEX_OP_COUNT, (rr->prefill_s + rr->decode_s) * 1e9);
    if (!g) return;
    if (fst) json_object_set_new(g, "flush_error", json_string(err.msg));
    /* roofline per op class */
    double bw = be && be->copy_bandwidth ? be->copy_bandwidth(be, (size_t)1 << 30, &err) : 0;
    json_object_set_new(g, "copy_bandwidth_bytes_per_s", bw > 0 ? json_real(bw) : json_null());
    /* the roofline: a read-only stream where the backend has one (copies flatter kernels) */
    double rbw = be && be->read_bandwidth ? be->read_bandwidth(be, (size_t)1 << 30, &err) : 0;
    ibex_device_info dvi = {0};
    if (be && be->device_info) be->device_info(be, &dvi);
    json_object_set_new(g, "read_bandwidth_bytes_per_s", rbw > 0 ? json_real(rbw) : json_null());
    json_object_set_new(g, "spec_bandwidth_bytes_per_s", dvi.spec_bandwidth > 0 ? json_real(dvi.spec_bandwidth) : json_null());
    json_object_set_new(g, "roofline_kind", json_string(rbw > 0 ? "read_stream" : "copy"));
    if (rbw > 0) bw = rbw;
    ibex_cupti_op_row *rows = NULL;
    int64_t n = 0;
    json_t *roof = json_array();
    if (!ibex_cupti_op_table(c, &rows, &n, &err)) {
        for (int64_t i = 0; i < n; i++) {
            int op = rows[i].op;
            if (op < 0 || op >= IBEX_OP_COUNT || rows[i].kernel_ns <= 0) continue;
            double bytes = rr->ops[0].bytes[op] + rr->ops[1].bytes[op];
            double flops = rr->ops[0].flops[op] + rr->ops[1].flops[op];
            double secs = rows[i].kernel_ns * 1e-9;
            json_t *r = json_pack("{s:s,s:I,s:f,s:f,s:f,s:f}", "op", names[op], "kernel_ns", (json_int_t)rows[i].kernel_ns,
                                  "bytes", bytes, "flops", flops, "bytes_per_s", bytes / secs, "flops_per_s",
                                  flops / secs);
            json_object_set_new(r, "bandwidth_fraction", bw > 0 ? json_real(bytes / secs / bw) : json_null());
            json_array_append_new(roof, r);
        }
    }
    free(rows);
    json_object_set_new(g, "roofline", roof);
    json_object_set_new(P, "gpu", g);
    if (!tr || !events) return;
    /* GPU tracks: tid 2 kernels, tid 3 copies and sets, on the host timeline */
    ibex_gpu_event *ev = NULL;
    int64_t ne = 0;
    if (ibex_cupti_copy_events(c, &ev, &ne, &err)) return;
    /* CUPTI's time 0 on the trace's clock (ns) */
    int64_t off = s_to_ns(ibex_cupti_host_origin_s(c) - tr->t0_s) - tr->origin;
    json_array_append_new(events, json_pack("{s:s,s:s,s:i,s:i,s:{s:s}}", "name", "thread_name", "ph", "M", "pid", pid,
                                            "tid", 2, "args", "name", "GPU kernels (CUPTI)"));
    json_array_append_new(events, json_pack("{s:s,s:s,s:i,s:i,s:{s:s}}", "name", "thread_name", "ph", "M", "pid", pid,
                                            "tid", 3, "args", "name", "GPU copies (CUPTI)"));
    for (int64_t i = 0; i < ne; i++) {
        const ibex_gpu_event *e = &ev[i];
        if (e->flags & IBEX_GPU_UNTIMED) continue;
        int tid = e->kind == IBEX_GPU_KERNEL ? 2 : e->kind == IBEX_GPU_MEMCPY || e->kind == IBEX_GPU_MEMSET ? 3 : 0;
        if (!tid) continue;
        int64_t t0 = off + e->start_ns, t1 = off + e->end_ns;
        json_t *x = x_event(e->name ? e->name : "?", tid == 2 ? "kernel" : "memcpy", pid, tid, t0, t1);
        json_t *args = json_object();
        if (e->op >= 0 && e->op < IBEX_OP_COUNT) json_object_set_new(args, "op", json_string(names[e->op]));
        if (tid == 2) {
            json_object_set_new(args, "grid", json_pack("[i,i,i]", e->grid[0], e->grid[1], e->grid[2]));
            json_object_set_new(args, "block", json_pack("[i,i,i]", e->block[0], e->block[1], e->block[2]));
        } else {
            json_object_set_new(args, "bytes", json_integer((json_int_t)e->bytes));
        }
        json_object_set_new(x, "args", args);
        json_array_append_new(events, x);
    }
    free(ev);
}

/* ---- JSON helpers ---- */

static json_t *summary_json(const ibex_summary *s) {
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)s->count));
#define IBEX_F(k) json_object_set_new(o, #k, isfinite(s->k) ? json_real(s->k) : json_null())
    IBEX_F(mean);
    IBEX_F(sd);
    IBEX_F(min);
    IBEX_F(max);
    IBEX_F(p50);
    IBEX_F(p90);
    IBEX_F(p99);
#undef IBEX_F
    return o;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *dist_json(const ibex_dist *d) {
    static const char *names[] = {"fixed", "uniform", "normal", "lognormal"};
    json_t *o = json_object();
    json_object_set_new(o, "dist", json_string(names[d->kind]));
    if (d->kind == IBEX_DIST_FIXED) {
        json_object_set_new(o, "value", json_real(d->value));
    } else {
        if (d->kind != IBEX_DIST_UNIFORM) {
            json_object_set_new(o, "mean", json_real(d->mean));
            json_object_set_new(o, "sd", json_real(d->sd));
        }
        json_object_set_new(o, "min", json_real(d->min));
        json_object_set_new(o, "max", json_real(d->max));
    }
    return o;
}

/* ---- perplexity (quality.c): the scenario's `quality:` key ---- */

static void quality_params_json(json_t *o, const ibex_point *p) {
    json_object_set_new(o, "quality.text", json_string(p->quality_text));
    json_object_set_new(o, "quality.ctx", json_integer(p->quality_ctx));
    json_object_set_new(o, "quality.chunks", json_integer(p->quality_chunks));
}

/* The point's "quality" object ({perplexity, nll_mean, tokens_scored, ...}), or NULL
 * with err set (the point then fails, naming the file). Run after the timed repetitions,
 * so it changes none of their figures. */
static json_t *quality_json(const ibex_point *pt, const ibex_model *m, ibex_backend *be, ibex_err *err) {
    ibex_ppl q;
    const double t0 = (double)now_ns();
    if (ibex_perplexity(m, be, pt->quality_text, pt->quality_ctx, pt->quality_chunks, &q, err) != IBEX_OK) return NULL;
    const char *base = strrchr(pt->quality_text, '/');
    return json_pack("{s:f,s:f,s:I,s:I,s:i,s:i,s:s,s:f}", "perplexity", q.ppl, "nll_mean", q.nll_mean,
                     "tokens_scored", (json_int_t)q.n_scored, "text_tokens", (json_int_t)q.n_text, "chunks",
                     q.n_chunks, "ctx", q.ctx, "text", base ? base + 1 : pt->quality_text, "seconds",
                     ((double)now_ns() - t0) / 1e9);
}

static json_t *params_json(const ibex_point *p) {
    static const char *arrivals[] = {"offline", "concurrency", "poisson", "gamma"};
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(p->model));
    json_object_set_new(o, "backend", json_string(p->backend));
    json_object_set_new(o, "threads", json_integer(p->threads));
    json_object_set_new(o, "weights", json_string(ibex_type_name(p->weights)));
    /* only when set: ibex compare matches points by their params, and the baselines of
     * runs before model_ctx existed must still match */
    if (p->model_ctx_auto) json_object_set_new(o, "model_ctx", json_string("auto"));
    else if (p->model_ctx > 0) json_object_set_new(o, "model_ctx", json_integer(p->model_ctx));
    json_object_set_new(o, "kv.policy", json_string(ibex_kv_policy_name(p->engine.kv.policy)));
    json_object_set_new(o, "kv.block_size", json_integer(p->engine.kv.block_size));
    json_object_set_new(o, "kv.budget", json_integer(p->engine.kv.budget_bytes));
    json_object_set_new(o, "kv.dtype", json_string(ibex_kv_type_name(ibex_kv_config_type(&p->engine.kv))));
    json_object_set_new(o, "kv.max_seq_len", json_integer(p->engine.max_seq_len));
    json_object_set_new(o, "scheduler", json_string(ibex_sched_policy_name(p->engine.sched)));
    json_object_set_new(o, "batch", json_integer(p->engine.max_batch));
    json_object_set_new(o, "max_step_tokens", json_integer(p->engine.max_step_tokens));
    json_object_set_new(o, "compute", json_boolean(p->engine.compute));
    const ibex_request_params *r = &p->request;
    json_object_set_new(o, "decoding.strategy",
                        json_string(r->decoding == IBEX_DECODE_BEAM       ? "beam"
                                    : r->sampling.temperature > 0 ? "sample"
                                                                          : "greedy"));
    json_object_set_new(o, "decoding.temperature", json_real(r->sampling.temperature));
    json_object_set_new(o, "decoding.top_k", json_integer(r->sampling.top_k));
    json_object_set_new(o, "decoding.top_p", json_real(r->sampling.top_p));
    json_object_set_new(o, "decoding.min_p", json_real(r->sampling.min_p));
    json_object_set_new(o, "decoding.repeat_penalty", json_real(r->sampling.repeat_penalty));
    json_object_set_new(o, "decoding.n", json_integer(r->n));
    json_object_set_new(o, "decoding.beam_width", json_integer(r->decoding == IBEX_DECODE_BEAM ? r->beam_width : 1));
    json_object_set_new(o, "decoding.length_penalty", json_real(r->length_penalty));
    json_object_set_new(o, "workload.requests", json_integer(p->requests));
    json_object_set_new(o, "workload.prompt_tokens", dist_json(&p->prompt_tokens));
    json_object_set_new(o, "workload.output_tokens", dist_json(&p->output_tokens));
    if (p->prompts_file[0]) json_object_set_new(o, "workload.file", json_string(p->prompts_file));
    if (p->quality_text[0]) quality_params_json(o, p);
    json_object_set_new(o, "workload.arrival", json_string(arrivals[p->arrival]));
    json_object_set_new(o, "workload.rate", num(p->rate));
    json_object_set_new(o, "workload.burstiness", num(p->burstiness));
    json_object_set_new(o, "workload.concurrency", json_integer(p->concurrency));
    json_object_set_new(o, "warmup", json_integer(p->warmup));
    json_object_set_new(o, "repeat", json_integer(p->repeat));
    json_object_set_new(o, "seed", json_integer((json_int_t)p->seed));
    json_object_set_new(o, "slo.ttft", num(p->slo_ttft));
    json_object_set_new(o, "slo.tpot", num(p->slo_tpot));
    json_object_set_new(o, "slo.e2e", num(p->slo_e2e));
    json_object_set_new(o, "profile", json_boolean(p->profile_ops));
    json_object_set_new(o, "instruments", json_string(ibex_instruments_name(p->instruments)));
    json_object_set_new(o, "attention", json_string(ibex_attn_impl_name(p->attention)));
    return o;
}

static json_t *ops_json(const ibex_op_stats *s, double sample_ns, double sched_ns, int64_t steps) {
    json_t *o = json_object();
    if (steps > 0) { /* not ops of the model: no FLOPs or bytes */
        json_object_set_new(o, "sampling", json_pack("{s:f,s:I,s:f,s:f}", "ns", sample_ns, "calls", (json_int_t)steps,
                                                     "flops", 0.0, "bytes", 0.0));
        json_object_set_new(o, "scheduler", json_pack("{s:f,s:I,s:f,s:f}", "ns", sched_ns > 0 ? sched_ns : 0.0, "calls",
                                                      (json_int_t)steps, "flops", 0.0, "bytes", 0.0));
    }
    for (int k = 0; k < IBEX_OP_COUNT; k++) {
        if (s->calls[k] == 0) continue;
        json_object_set_new(o, ibex_op_name((ibex_op)k),
                            json_pack("{s:f,s:I,s:f,s:f}", "ns", s->ns[k], "calls", (json_int_t)s->calls[k], "flops",
                                      s->flops[k], "bytes", s->bytes[k]));
    }
    return o;
}

static double median(double *v, int n) {
    for (int i = 1; i < n; i++) /* insertion sort: n is the repetition count */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n == 0 ? NAN : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- per-repetition metrics, noise, compact raw samples ---- */

/* The timed figures of one repetition (results.json repetitions[k] and noise). */
enum {
    RM_WALL, RM_OUTPUT, RM_HYPOTHESIS, RM_TOTAL, RM_PREFILL_TPS, RM_DECODE_TPS, RM_DECODE_MS, RM_PREFILL_S,
    RM_DECODE_S, RM_TTFT_P50, RM_TTFT_P90, RM_TTFT_P99, RM_TPOT_P50, RM_TPOT_P99, RM_ITL_P50, RM_ITL_P99,
    RM_E2E_P50, RM_E2E_P99, RM_REQ_PER_S, RM_GOODPUT, RM_COUNT
};

static const char *const k_rep_metrics[RM_COUNT] = {
    "wall_s",   "output_tok_per_s", "hypothesis_tok_per_s", "total_tok_per_s", "prefill_tok_per_s",
    "decode_tok_per_s", "decode_ms_per_token", "prefill_s", "decode_s", "ttft_p50", "ttft_p90", "ttft_p99",
    "tpot_p50", "tpot_p99", "itl_p50", "itl_p99", "e2e_p50", "e2e_p99", "req_per_s", "goodput_req_per_s"};

/* One repetition's per-op time in ms ({OP: ms}), sampling included when timed. */
static json_t *ops_ms_json(const ibex_op_stats *s, double sample_ns, int64_t steps) {
    json_t *o = json_object();
    if (steps > 0) json_object_set_new(o, "sampling", json_real(sample_ns * 1e-6));
    for (int k = 0; k < IBEX_OP_COUNT; k++)
        if (s->calls[k] > 0) json_object_set_new(o, ibex_op_name((ibex_op)k), json_real(s->ns[k] * 1e-6));
    return o;
}

/* Raw samples stay compact: a 2000-request point has hundreds of thousands of ITL
 * gaps. The summaries (metrics.itl) are computed over all of them; raw.itl keeps at
 * most IBEX_RAW_MAX evenly spaced order statistics (the sorted gaps at ranks
 * round(i (n-1) / (IBEX_RAW_MAX-1))), which draw the same CDF; raw.itl_count is n. */
#define IBEX_RAW_MAX 4096

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static json_t *itl_raw_json(double *gaps, size_t n, size_t *count) {
    json_t *a = json_array();
    *count = n;
    if (n == 0) return a;
    qsort(gaps, n, sizeof *gaps, cmp_dbl);
    size_t keep = n < IBEX_RAW_MAX ? n : IBEX_RAW_MAX;
    for (size_t i = 0; i < keep; i++) {
        size_t r = keep == n ? i : (size_t)llround((double)i * (double)(n - 1) / (double)(keep - 1));
        json_array_append_new(a, json_real(gaps[r]));
    }
    return a;
}

/* The last repetition's KV bytes per step; above IBEX_RAW_MAX steps every stride-th step
 * (stride recorded) plus the step of peak reserved. */
static json_t *kv_steps_json(const rep_result *rr) {
    size_t stride = rr->n_kv > IBEX_RAW_MAX ? (rr->n_kv + IBEX_RAW_MAX - 1) / IBEX_RAW_MAX : 1, peak = 0;
    for (size_t i = 0; i < rr->n_kv; i++)
        if (rr->kv_res[i] > rr->kv_res[peak]) peak = i;
    json_t *res = json_array(), *used = json_array(), *step = json_array();
    for (size_t i = 0; i < rr->n_kv; i++) {
        if (i % stride && i != peak) continue;
        json_array_append_new(res, json_integer(rr->kv_res[i]));
        json_array_append_new(used, json_integer(rr->kv_used[i]));
        if (stride > 1) json_array_append_new(step, json_integer((json_int_t)i));
    }
    json_t *o = json_pack("{s:o,s:o,s:I}", "reserved", res, "used", used, "stride", (json_int_t)stride);
    if (stride > 1)
        json_object_set_new(o, "step", step);
    else
        json_decref(step);
    return o;
}

/* ---- machine load ---- */

double ibex_process_cpu_s(void) { return process_cpu_s(); }

int ibex_online_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void ibex_load_probe_start(ibex_load_probe *p) {
    p->t = ibex_cli_now_s();
    p->cpu = process_cpu_s();
    p->own = 0;
}

double ibex_load_probe_sample(ibex_load_probe *p, double *load1) {
    double la[1];
    *load1 = getloadavg(la, 1) == 1 ? la[0] : NAN;
    double t = ibex_cli_now_s(), c = process_cpu_s(), dt = t - p->t;
    if (dt > 0 && isfinite(c) && isfinite(p->cpu)) { /* the kernel's 1-min average: decay exp(-dt / 60 s) */
        double a = exp(-dt / 60.0);
        p->own = p->own * a + (c - p->cpu) / dt * (1.0 - a);
    }
    p->t = t, p->cpu = c;
    return p->own;
}

/* ---- the roofline (docs/RESULTS.md "roofline") ---- */

/* Bytes streamed per measurement: far beyond any last-level cache (260 MiB on the
 * machine this was written on). */
#define RUN_ROOFLINE_BYTES ((size_t)1 << 30)

/* Measures the roofline once per run for every distinct (backend, threads) of the CPU
 * compute points, before any point runs: a one-off second or two that the points' own
 * timings never include. CUDA points keep their gpu.roofline (measured per point from
 * CUPTI). The measurement's 1 GiB buffer would otherwise stay in the process's peak RSS
 * (memory.process_peak_rss), so the peak is reset afterwards (Linux clear_refs 5); at
 * this moment no model is loaded, so nothing of the run's own peak is lost. */
static void roofline_prepare(const ibex_scenario *s, run_globals *gx) {
    for (int32_t i = 0; i < s->n_points; i++) {
        const ibex_point *pt = &s->points[i];
        if (!pt->engine.compute) continue;
        if (strcmp(pt->backend, "cpu") && !(strcmp(pt->backend, "auto") == 0 && ibex_cuda_device_count() == 0)) continue;
        bool have = false;
        for (int k = 0; k < gx->n_roof && !have; k++)
            have = gx->roof[k].threads == pt->threads && !strcmp(gx->roof[k].backend, pt->backend);
        if (have || gx->n_roof >= (int)(sizeof gx->roof / sizeof gx->roof[0])) continue;
        struct run_roof *e = &gx->roof[gx->n_roof++];
        memset(e, 0, sizeof *e);
        snprintf(e->backend, sizeof e->backend, "%s", pt->backend);
        e->threads = pt->threads;
        ibex_err err = {0};
        const char *note = "";
        ibex_backend *be = ibex_backend_open(pt->backend, pt->threads, &note, &err);
        if (be) {
            fprintf(stderr, "ibex run: measuring the roofline (%s, %d thread(s))...\n", be->name,
                    ibex_backend_threads(be));
            e->ok = ibex_roofline_measure(be, RUN_ROOFLINE_BYTES, false, &e->r, &err) == IBEX_OK;
            ibex_backend_free(be);
        }
        if (!e->ok) snprintf(e->error, sizeof e->error, "%s", err.msg[0] ? err.msg : "not measured");
    }
    if (gx->n_roof > 0) {
        FILE *f = fopen("/proc/self/clear_refs", "w");
        if (f) fputs("5", f), fclose(f);
    }
}

static const struct run_roof *roofline_for(const run_globals *gx, const ibex_point *pt) {
    for (int k = 0; k < gx->n_roof; k++)
        if (gx->roof[k].threads == pt->threads && !strcmp(gx->roof[k].backend, pt->backend)) return &gx->roof[k];
    return NULL;
}

/* ---- the paired roofline: the model's weights read between repetitions ---- */

/* The weight matrices a decode step streams (every layer's seven, the output head): their
 * regions for be->read_stream. Returns the count (0 when the model has none or on no
 * memory; *ptr / *bytes are then NULL). */
static int weight_regions(const ibex_model *m, const void ***ptr, size_t **bytes, size_t *total) {
    const int n = m->cfg.n_layers * 7 + 1;
    *ptr = calloc((size_t)n, sizeof **ptr), *bytes = calloc((size_t)n, sizeof **bytes), *total = 0;
    if (!*ptr || !*bytes || !m->layers) {
        free(*ptr), free(*bytes), *ptr = NULL, *bytes = NULL;
        return 0;
    }
    int k = 0;
    for (int32_t l = 0; l < m->cfg.n_layers; l++) {
        const ibex_layer_weights *L = &m->layers[l];
        const ibex_weight *w[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++)
            if (w[i]->data) (*ptr)[k] = w[i]->data, (*bytes)[k++] = ibex_weight_bytes(w[i]);
    }
    if (m->output.data) (*ptr)[k] = m->output.data, (*bytes)[k++] = ibex_weight_bytes(&m->output);
    for (int i = 0; i < k; i++) *total += (*bytes)[i];
    return k;
}

/* Median of the finite values of v[0, n) (reorders v); NaN if none. */
static double median_finite(double *v, int n) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) v[m++] = v[i];
    if (m == 0) return NAN;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

/* The point's "roofline": the run's measured figures and where the point's decode and
 * prefill sit against them. dec_bw: per repetition, analytic bytes of the decode-only
 * steps (weights + KV read, ops.decode.*.bytes) / their wall time, which is decode bytes
 * per token × decode tok/s; pre_fl: analytic FLOPs of the prefill steps / their time. */
static json_t *roofline_point_json(const struct run_roof *e, double *dec_bw, double *pre_fl, int n, const double *brk,
                                   int n_brk, size_t brk_bytes) {
    if (!e->ok) return json_pack("{s:s,s:s}", "kind", "none", "error", e->error);
    json_t *o = ibex_roofline_json(&e->r);
    json_object_set_new(o, "source", json_string("measured once per run before the first point (ibex roofline)"));
    if (n_brk >= 2 && n_brk == n + 1) {
        /* repetition k between reads k and k + 1: its decode over their mean (paired, so a
         * machine whose bandwidth moves between repetitions moves both sides) */
        double *fr = malloc((size_t)n * sizeof *fr), *rd = malloc((size_t)n_brk * sizeof *rd);
        double lo = 0, hi = 0;
        if (fr && rd) {
            lo = INFINITY;
            for (int k = 0; k < n; k++) fr[k] = dec_bw[k] / (0.5 * (brk[k] + brk[k + 1]));
            for (int k = 0; k < n_brk; k++) rd[k] = brk[k], lo = fmin(lo, brk[k]), hi = fmax(hi, brk[k]);
        }
        if (fr && rd && lo > 0) { /* every read measured (a failed one is 0) */
            json_t *pr = json_object();
            json_object_set_new(pr, "method", json_string("the model's weight matrices read once by the point's "
                                                          "threads before the first timed repetition and after "
                                                          "each (median of 3 passes)"));
            json_object_set_new(pr, "weights_bytes", json_integer((json_int_t)brk_bytes));
            json_object_set_new(pr, "reads", json_integer(n_brk));
            json_object_set_new(pr, "read_bytes_per_s", num(median_finite(rd, n_brk)));
            json_object_set_new(pr, "read_min_bytes_per_s", num(lo));
            json_object_set_new(pr, "read_max_bytes_per_s", num(hi));
            json_object_set_new(pr, "read_spread", num(lo > 0 ? hi / lo - 1.0 : NAN));
            json_object_set_new(pr, "decode_fraction", num(median_finite(fr, n)));
            json_object_set_new(o, "paired", pr);
        }
        free(fr), free(rd);
    }
    const double bw = median_finite(dec_bw, n), fl = median_finite(pre_fl, n);
    json_object_set_new(o, "decode_bytes_per_s", num(bw));
    json_object_set_new(o, "decode_fraction", num(e->r.read_bw > 0 ? bw / e->r.read_bw : NAN));
    json_object_set_new(o, "prefill_flops_per_s", num(fl));
    json_object_set_new(o, "prefill_fraction", num(e->r.peak_flops > 0 ? fl / e->r.peak_flops : NAN));
    return o;
}

/* ---- the point ---- */

typedef struct model_cache {
    char key[400];
    ibex_model *m;
} model_cache;

static ibex_model *get_model(model_cache *mc, const ibex_point *pt, ibex_err *err) {
    char key[400];
    bool shape_only = !pt->engine.compute && strncmp(pt->model, "synthetic:", 10) == 0;
    snprintf(key, sizeof key, "%s|%d|%d", pt->model, (int)pt->weights, shape_only);
    if (mc->m && !strcmp(mc->key, key)) return mc->m;
    ibex_model_free(mc->m);
    mc->m = NULL;
    ibex_model_params mp = ibex_model_default_params();
    mp.wtype = pt->weights;
    mp.shape_only = shape_only;
    mp.n_threads = pt->threads;
    mc->m = ibex_model_load(pt->model, &mp, err);
    if (mc->m) snprintf(mc->key, sizeof mc->key, "%s", key);
    return mc->m;
}

static json_t *run_point(const ibex_scenario *s, int32_t idx, model_cache *mc, const ibex_run_opts *o,
                         json_t *trace_events, run_globals *gx) {
    const ibex_point *pt = &s->points[idx];
    ibex_kv_pool *kv_spare = NULL; /* the KV pool the repetitions pass on (run_rep) */
    json_t *P = json_object();
    json_object_set_new(P, "index", json_integer(idx));
    char label[1024] = "";
    json_t *sw = json_object();
    for (int32_t k = 0; k < s->n_swept; k++) {
        const ibex_sweep_value *v = &s->swept[(size_t)idx * s->n_swept + k];
        json_object_set_new(sw, v->key, json_string(v->value));
        size_t len = strlen(label);
        snprintf(label + len, sizeof label - len, "%s%s=%s", k ? " " : "", v->key, v->value);
    }
    if (!label[0]) snprintf(label, sizeof label, "point %d", idx);
    json_object_set_new(P, "label", json_string(label));
    json_object_set_new(P, "swept", sw);
    json_object_set_new(P, "params", params_json(pt));
    ibex_err err = {0};
    workload w = {0};
    ibex_backend *be = NULL;
    ibex_model *m = NULL;
    const char *status = "ok";
    json_t *reps = json_array();
    json_t *raw_ttft = json_array(), *raw_tpot = json_array(), *raw_itl = json_array(), *raw_e2e = json_array();
    json_t *kv_steps = NULL;
    size_t itl_count = 0;
    /* the backend before the model: a missing GPU fails the point before gigabytes of
     * synthetic weights are generated for it */
    if (pt->engine.compute) {
        const char *note = "";
        if (!(be = ibex_backend_open(pt->backend, pt->threads, &note, &err))) goto fail;
        if (note[0]) fprintf(stderr, "ibex run: %s: %s\n", label, note);
        json_object_set_new(P, "backend_used", json_string(be->name));
        if (be->set_attention) {
            if (be->set_attention(be, pt->attention, &err)) goto fail;
            json_object_set_new(P, "attention_used", json_string(ibex_attn_impl_name(pt->attention)));
        } else if (pt->attention != IBEX_ATTN_AUTO) {
            fprintf(stderr, "ibex run: %s: attention: %s applies to the CUDA backend; the %s backend has one kernel\n",
                    label, ibex_attn_impl_name(pt->attention), be->name);
        }
        if (be->device_info) {
            ibex_device_info di;
            be->device_info(be, &di);
            json_object_set_new(P, "device", json_pack("{s:s,s:i,s:i,s:i,s:I,s:I}", "name", di.name, "cc_major",
                                                       di.cc_major, "cc_minor", di.cc_minor, "sm_count", di.sm_count,
                                                       "mem_total", (json_int_t)di.mem_total, "mem_free_at_start",
                                                       (json_int_t)di.mem_free));
        }
    }
    if (!(m = get_model(mc, pt, &err))) goto fail;
    /* the model is cached across points: every point sets its own context (model_ctx,
     * llama.cpp's -c), the loaded one when it asks for none */
    {
        const int64_t ctx = ibex_point_ctx(pt, m->trained_ctx);
        if (ibex_model_set_ctx(m, ctx > INT32_MAX ? INT32_MAX : (int32_t)ctx, &err)) goto fail;
        /* a GGUF's context is known only now (a preset's was checked with the scenario):
         * refuse here with the fix rather than at the engine's first submit */
        const int64_t longest = ibex_point_longest(pt);
        if (!pt->prompts_file[0] && longest > m->cfg.ctx_len) {
            if (pt->model_ctx > 0)
                ibex_err_set(&err, IBEX_ERR_INVALID, "the longest request (%lld tokens) exceeds model_ctx %d",
                             (long long)longest, m->cfg.ctx_len);
            else
                ibex_err_set(&err, IBEX_ERR_INVALID,
                             "the longest request (%lld tokens) exceeds the context length %d of %s; set model_ctx: %lld "
                             "to run beyond the trained context",
                             (long long)longest, m->cfg.ctx_len, m->name, (long long)longest);
            goto fail;
        }
    }
    json_object_set_new(P, "model",
                        json_pack("{s:s,s:I,s:I,s:I,s:i,s:i,s:i}", "name", m->name, "n_params", (json_int_t)m->n_params,
                                  "weight_bytes", (json_int_t)m->weight_bytes, "kv_bytes_per_token",
                                  (json_int_t)ibex_model_kv_bytes_per_token(&m->cfg, pt->engine.kv.elem_bytes),
                                  "n_layers", m->cfg.n_layers, "dim", m->cfg.dim, "ctx_len", m->cfg.ctx_len));
    {   /* weight bytes of the same shape in every storage type (norms F32), for the quantization claims */
        json_t *by = json_object();
        static const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16, IBEX_TYPE_Q8_0, IBEX_TYPE_Q4_0};
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            json_object_set_new(by, ibex_type_name(types[t]),
                                json_integer((json_int_t)ibex_model_config_weight_bytes(&m->cfg, m->tied_output, types[t])));
        json_object_set_new(json_object_get(P, "model"), "weight_bytes_by_type", by);
        /* past the trained context the timings are valid, the output quality is not */
        json_object_set_new(json_object_get(P, "model"), "trained_ctx", json_integer(m->trained_ctx));
        json_object_set_new(json_object_get(P, "model"), "beyond_trained_ctx", json_boolean(ibex_model_beyond_trained(m)));
        if (ibex_model_beyond_trained(m))
            fprintf(stderr, "ibex run: %s: context %d is beyond the trained context (%d) of %s: timings valid, output quality not\n",
                    label, m->cfg.ctx_len, m->trained_ctx, m->name);
        json_object_set_new(json_object_get(P, "model"), "kv_bytes_per_token_f16",
                            json_integer((json_int_t)ibex_model_kv_bytes_per_token(&m->cfg, 2)));
    }
    if (make_workload(pt, m, &w, &err)) goto fail;
    ibex_mem_reset_peaks();
    /* repeat: auto grows the timed repetitions one at a time up to repeat_max (never in
     * quick mode, which asks for one repetition) */
    const bool auto_rep = pt->repeat_auto && !o->quick;
    int n_rep = pt->repeat, n_total = pt->warmup + pt->repeat;
    int n_cap = auto_rep && pt->repeat_max > n_rep ? pt->repeat_max : n_rep;
    const double cv_max = pt->noise_cv_max > 0 ? pt->noise_cv_max : 0.10;
    double *rv[RM_COUNT];
    bool rv_ok = true;
    for (int q = 0; q < RM_COUNT; q++) rv_ok &= (rv[q] = calloc((size_t)n_cap, sizeof *rv[q])) != NULL;
    double *util = calloc((size_t)n_cap, sizeof *util), *util_pk = calloc((size_t)n_cap, sizeof *util_pk),
           *util_tw = calloc((size_t)n_cap, sizeof *util_tw);
    double *roof_bw = calloc((size_t)n_cap, sizeof *roof_bw), *roof_fl = calloc((size_t)n_cap, sizeof *roof_fl);
    /* the paired roofline (CPU): the weights read before the first timed repetition and
     * after each, outside every timed region */
    const void **wr_ptr = NULL;
    size_t *wr_bytes = NULL, wr_total = 0;
    const int wr_n = be && be->read_stream && m && roofline_for(gx, pt) ? weight_regions(m, &wr_ptr, &wr_bytes, &wr_total) : 0;
    double *brk = wr_n ? calloc((size_t)n_cap + 1, sizeof *brk) : NULL;
    int n_brk = 0;
    ibex_op_stats ops[2] = {0};
    double smp_ns[2] = {0}, sch_ns[2] = {0};
    int64_t n_st[2] = {0};
    rep_result rr = {0}, last = {0};
    bool have_last = false;
    int done_reps = 0;
    ibex_request_times *rt = calloc((size_t)w.n, sizeof *rt);
    double *gaps = NULL; /* every ITL gap of every timed repetition */
    size_t n_gaps = 0, cap_gaps = 0;
    ibex_slo slo = {pt->slo_ttft, pt->slo_tpot, pt->slo_e2e};
    double sample_ns = 0;
    int64_t sample_calls = 0;
    double cpu_timed = 0, wall_timed = 0;
    double load_start = NAN, own_start = ibex_load_probe_sample(&gx->probe, &load_start);
    if (!rv_ok || !util || !util_pk || !util_tw || !rt || !roof_bw || !roof_fl) {
        ibex_err_set(&err, IBEX_ERR_NOMEM, "out of memory");
        goto fail_reps;
    }
    if (gx->cupti) { /* CUPTI traces only the points that ask for it (so off/nvtx measure no CUPTI) */
        ibex_err ce = {0};
        (void)ibex_cupti_for_point(gx->cupti, pt->instruments == IBEX_INSTR_CUPTI, &ce);
    }
    for (int r = 0;; r++) {
        if (r >= n_total) { /* planned repetitions done: repeat: auto may add one */
            if (!auto_rep || done_reps >= n_cap || done_reps == 0) break;
            ibex_noise nz;
            if (ibex_noise_compute(rv[RM_WALL], (size_t)done_reps, cv_max, &nz, NULL)) break;
            double hw = ibex_noise_rel_halfwidth(&nz);
            if (isfinite(hw) && hw <= pt->ci_target) break;
        }
        bool timed = r >= pt->warmup;
        if (o->progress_tty)
            fprintf(stderr, "\r\033[K[%d/%d] %s  %s %d/%d%s", idx + 1, s->n_points, label, timed ? "rep" : "warm-up",
                    timed ? r - pt->warmup + 1 : r + 1, timed ? n_rep : pt->warmup, auto_rep && timed ? " (auto)" : "");
        tracer tr = {0};
        bool trace_this = r == n_total - 1 && trace_events; /* the last planned timed repetition */
        bool cupti_this = r == n_total - 1 && gx->cupti && pt->instruments == IBEX_INSTR_CUPTI;
        instr in = {.tr = trace_this ? &tr : NULL, .nvtx = pt->instruments >= IBEX_INSTR_NVTX,
                    .cupti = cupti_this ? gx->cupti : NULL, .cupti_ok = gx->cupti != NULL};
        if (cupti_this) { /* only this repetition's activity: drain and drop what came before */
            ibex_err ce = {0};
            if (be && be->sync) be->sync(be, &ce);
            ibex_cupti_flush(gx->cupti, &ce);
            ibex_cupti_clear(gx->cupti);
        }
        if (brk && timed && n_brk == 0) brk[n_brk++] = be->read_stream(be, wr_ptr, wr_bytes, wr_n, NULL);
        ibex_status st = run_rep(pt, m, be, &w, o->interrupted, &in, &rr, &kv_spare, &err);
        if (trace_this) tr.origin = gx->run_t0_ns - tr.t0;
        if (cupti_this && !st && !rr.interrupted) gpu_activity(gx->cupti, be, &rr, P, trace_this ? &tr : NULL,
                                                              idx, trace_events);
        if (trace_this && !st && !rr.interrupted && !tr.oom) tracer_emit(&tr, &w, idx, label, trace_events);
        tracer_free(&tr);
        if (st) {
            rep_free(&rr);
            break;
        }
        if (rr.interrupted) {
            status = "interrupted";
            rep_free(&rr);
            break;
        }
        if (!timed) {
            rep_free(&rr);
            continue;
        }
        int k = done_reps++;
        cpu_timed += rr.cpu_s, wall_timed += rr.wall_s;
        if (brk && n_brk == k + 1) brk[n_brk++] = be->read_stream(be, wr_ptr, wr_bytes, wr_n, NULL);
        for (int32_t i = 0; i < w.n; i++)
            rt[i] = (ibex_request_times){.arrival = w.r[i].arrival, .token_times = w.r[i].times,
                                         .n_out = (size_t)w.r[i].n_times, .n_in = w.r[i].n_prompt};
        ibex_run_metrics rm;
        if (ibex_run_metrics_compute(rt, (size_t)w.n, rr.wall_s > 0 ? rr.wall_s : 1e-9, &slo, &rm, &err)) {
            rep_free(&rr);
            goto fail_reps;
        }
        for (int32_t i = 0; i < w.n; i++) {
            ibex_request_metrics qm;
            if (ibex_request_metrics_compute(&rt[i], &qm, NULL)) continue;
            json_array_append_new(raw_ttft, num(qm.ttft));
            if (isfinite(qm.tpot)) json_array_append_new(raw_tpot, json_real(qm.tpot));
            json_array_append_new(raw_e2e, num(qm.e2e));
            if (rt[i].n_out < 2) continue;
            if (n_gaps + rt[i].n_out > cap_gaps) {
                size_t c = cap_gaps ? cap_gaps : 4096;
                while (c < n_gaps + rt[i].n_out) c *= 2;
                double *g = realloc(gaps, c * sizeof *g);
                if (!g) {
                    rep_free(&rr);
                    ibex_err_set(&err, IBEX_ERR_NOMEM, "out of memory");
                    goto fail_reps;
                }
                gaps = g, cap_gaps = c;
            }
            n_gaps += ibex_request_itl(&rt[i], gaps + n_gaps);
        }
        double *x = NULL;
#define IBEX_RM(id, v) (x = rv[id], x[k] = (v))
        IBEX_RM(RM_WALL, rr.wall_s);
        IBEX_RM(RM_OUTPUT, rr.tokens_all / rr.wall_s);
        IBEX_RM(RM_HYPOTHESIS, rr.tot.output_tokens / rr.wall_s);
        IBEX_RM(RM_TOTAL, (rm.input_tokens + rr.tokens_all) / rr.wall_s);
        IBEX_RM(RM_PREFILL_TPS, rr.prefill_s > 0 ? rr.tot.prefill_tokens / rr.prefill_s : NAN);
        IBEX_RM(RM_DECODE_TPS, rr.decode_s > 0 ? rr.tot.decode_tokens / rr.decode_s : NAN);
        IBEX_RM(RM_DECODE_MS, rr.decode_steps > 0 ? 1e3 * rr.decode_s / rr.decode_steps : NAN);
        IBEX_RM(RM_PREFILL_S, rr.prefill_s);
        IBEX_RM(RM_DECODE_S, rr.decode_s);
        IBEX_RM(RM_TTFT_P50, rm.ttft.p50);
        IBEX_RM(RM_TTFT_P90, rm.ttft.p90);
        IBEX_RM(RM_TTFT_P99, rm.ttft.p99);
        IBEX_RM(RM_TPOT_P50, rm.tpot.p50);
        IBEX_RM(RM_TPOT_P99, rm.tpot.p99);
        IBEX_RM(RM_ITL_P50, rm.itl.p50);
        IBEX_RM(RM_ITL_P99, rm.itl.p99);
        IBEX_RM(RM_E2E_P50, rm.e2e.p50);
        IBEX_RM(RM_E2E_P99, rm.e2e.p99);
        IBEX_RM(RM_REQ_PER_S, rm.req_per_s);
        IBEX_RM(RM_GOODPUT, rm.goodput_req_per_s);
#undef IBEX_RM
        (void)x;
        double um = 0;
        int64_t un = 0;
        for (size_t i = 0; i < rr.n_kv; i++)
            if (rr.kv_res[i] > 0) um += (double)rr.kv_used[i] / (double)rr.kv_res[i], un++;
        util[k] = un ? um / un : NAN;
        ibex_kv_util_run(rr.kv_res, rr.kv_used, rr.kv_dt, rr.n_kv, &util_pk[k], &util_tw[k]);
        { /* against the roofline: achieved analytic bytes/s of decode, FLOP/s of prefill */
            double db = 0, pf = 0;
            for (int o2 = 0; o2 < IBEX_OP_COUNT; o2++) db += rr.ops[1].bytes[o2], pf += rr.ops[0].flops[o2];
            roof_bw[k] = rr.decode_s > 0 && db > 0 ? db / rr.decode_s : NAN;
            roof_fl[k] = rr.prefill_s > 0 && pf > 0 ? pf / rr.prefill_s : NAN;
        }
        for (int q = 0; q < 2; q++) {
            op_delta(&ops[q], &(ibex_op_stats){0}, &rr.ops[q]);
            smp_ns[q] += rr.sample_ns[q], sch_ns[q] += rr.sched_ns[q], n_st[q] += rr.n_steps[q];
        }
        sample_ns += rr.tot.sample_ns;
        sample_calls += rr.tot.sample_calls;
        json_t *R = json_object();
        for (int q = 0; q < RM_COUNT; q++) json_object_set_new(R, k_rep_metrics[q], num(rv[q][k]));
        json_object_set_new(R, "steps", json_integer(rr.tot.steps));
        json_object_set_new(R, "cpu_s", num(rr.cpu_s));
        json_object_set_new(R, "kv_utilisation_time_weighted", num(util_tw[k]));
        json_object_set_new(R, "ops", json_pack("{s:o,s:o}", "prefill", ops_ms_json(&rr.ops[0], rr.sample_ns[0], rr.n_steps[0]),
                                                "decode", ops_ms_json(&rr.ops[1], rr.sample_ns[1], rr.n_steps[1])));
        json_array_append_new(reps, R);
        if (have_last) rep_free(&last);
        last = rr;
        rr = (rep_result){0};
        have_last = true;
    }
    {
        double load_end = NAN, own_end = ibex_load_probe_sample(&gx->probe, &load_end);
        int threads = be ? ibex_backend_threads(be) : 1;
        ibex_load_sample ls = {.n_cpus = ibex_online_cpus(), .threads = threads, .load1_start = load_start,
                               .load1_end = load_end, .own_start = own_start, .own_end = own_end, .cpu_s = cpu_timed,
                               .wall_s = wall_timed,
                               .check_starved = done_reps > 0 && !(pt->engine.compute &&
                                                                   (pt->arrival == IBEX_ARRIVAL_POISSON ||
                                                                    pt->arrival == IBEX_ARRIVAL_GAMMA))};
        char warning[256];
        bool busy = done_reps > 0 && ibex_load_judge(&ls, warning, sizeof warning);
        json_t *C = json_object();
        json_object_set_new(C, "threads", json_integer(threads));
        json_object_set_new(C, "load1_start", num(load_start));
        json_object_set_new(C, "load1_end", num(load_end));
        json_object_set_new(C, "own_load_start", num(own_start));
        json_object_set_new(C, "own_load_end", num(own_end));
        json_object_set_new(C, "cpu_s", done_reps ? num(cpu_timed) : json_null());
        json_object_set_new(C, "wall_s", done_reps ? num(wall_timed) : json_null());
        json_object_set_new(C, "cpu_per_wall", done_reps && wall_timed > 0 ? num(cpu_timed / wall_timed) : json_null());
        json_object_set_new(C, "busy", json_boolean(busy));
        json_object_set_new(C, "warning", busy ? json_string(warning) : json_null());
        json_object_set_new(P, "conditions", C);
        if (busy) {
            if (o->progress_tty) fprintf(stderr, "\r\033[K");
            fprintf(stderr, "ibex run: point %d: %s\n", idx + 1, warning);
        }
    }
    if (done_reps > 0) {
        json_t *M = json_object();
        /* pooled latency summaries over every timed repetition; undefined (no request
         * streamed two tokens) is null */
        const char *names[3] = {"ttft", "tpot", "e2e"};
        json_t *arrs[3] = {raw_ttft, raw_tpot, raw_e2e};
        for (int a = 0; a < 3; a++) {
            size_t n = json_array_size(arrs[a]);
            double *v = malloc((n ? n : 1) * sizeof *v);
            for (size_t i = 0; v && i < n; i++) v[i] = json_is_number(json_array_get(arrs[a], i))
                                                           ? json_number_value(json_array_get(arrs[a], i))
                                                           : NAN;
            ibex_summary su;
            if (v && !ibex_summarize(v, n, &su, NULL))
                json_object_set_new(M, names[a], su.count ? summary_json(&su) : json_null());
            free(v);
        }
        ibex_summary su;
        if (!ibex_summarize(gaps, n_gaps, &su, NULL)) json_object_set_new(M, "itl", su.count ? summary_json(&su) : json_null());
        json_object_set_new(M, "wall_s", num(median(rv[RM_WALL], done_reps)));
        json_object_set_new(M, "output_tok_per_s", num(median(rv[RM_OUTPUT], done_reps)));
        json_object_set_new(M, "hypothesis_tok_per_s", num(median(rv[RM_HYPOTHESIS], done_reps)));
        json_object_set_new(M, "total_tok_per_s", num(median(rv[RM_TOTAL], done_reps)));
        json_object_set_new(M, "req_per_s", num(median(rv[RM_REQ_PER_S], done_reps)));
        json_object_set_new(M, "goodput_req_per_s", num(median(rv[RM_GOODPUT], done_reps)));
        json_object_set_new(M, "prefill_tok_per_s", num(median(rv[RM_PREFILL_TPS], done_reps)));
        json_object_set_new(M, "decode_tok_per_s", num(median(rv[RM_DECODE_TPS], done_reps)));
        json_object_set_new(M, "prefill_s", num(median(rv[RM_PREFILL_S], done_reps)));
        json_object_set_new(M, "decode_s", num(median(rv[RM_DECODE_S], done_reps)));
        json_object_set_new(M, "decode_ms_per_token", num(median(rv[RM_DECODE_MS], done_reps)));
        json_object_set_new(M, "steps", json_integer(last.tot.steps));
        json_object_set_new(M, "repetitions", json_integer(done_reps));
        json_object_set_new(P, "metrics", M);
        const struct run_roof *rf = be ? roofline_for(gx, pt) : NULL;
        if (rf) json_object_set_new(P, "roofline", roofline_point_json(rf, roof_bw, roof_fl, done_reps, brk, n_brk, wr_total));
        /* the spread of every repetition metric */
        json_t *N = json_object(), *noisy = json_array();
        for (int q = 0; q < RM_COUNT; q++) {
            ibex_noise nz;
            if (ibex_noise_compute(rv[q], (size_t)done_reps, cv_max, &nz, NULL)) continue;
            if (nz.n == 0) continue; /* undefined in every repetition (TPOT of beam search) */
            json_t *z = json_object();
            json_object_set_new(z, "n", json_integer((json_int_t)nz.n));
            json_object_set_new(z, "median", num(nz.median));
            json_object_set_new(z, "mean", num(nz.mean));
            json_object_set_new(z, "sd", num(nz.sd));
            json_object_set_new(z, "cv", num(nz.cv));
            json_object_set_new(z, "ci_lo", num(nz.ci_lo));
            json_object_set_new(z, "ci_hi", num(nz.ci_hi));
            json_object_set_new(z, "ci_level", num(nz.ci_level));
            json_object_set_new(z, "noisy", json_boolean(nz.noisy));
            json_object_set_new(z, "reason", nz.noisy ? json_string(nz.reason) : json_null());
            json_object_set_new(N, k_rep_metrics[q], z);
            if (nz.noisy) json_array_append_new(noisy, json_string(k_rep_metrics[q]));
        }
        json_object_set_new(P, "noise", N);
        json_object_set_new(P, "noisy_metrics", noisy);
        json_object_set_new(P, "noise_settings",
                            json_pack("{s:f,s:b,s:i,s:f}", "cv_max", cv_max, "repeat_auto", auto_rep, "repeat_max", n_cap,
                                      "ci_target", pt->ci_target));
        int64_t first_time = last.tot.prefill_tokens - last.tot.recomputed_tokens;
        json_t *K = json_pack(
            "{s:s,s:i,s:o,s:I,s:i,s:I,s:I,s:o,s:I,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "policy",
            ibex_kv_policy_name(pt->engine.kv.policy), "block_size", pt->engine.kv.block_size, "reserve_prompt",
            pt->engine.kv.policy == IBEX_KV_PAGED ? json_boolean(pt->engine.kv.reserve_prompt) : json_null(),
            "pool_bytes", (json_int_t)last.ks.bytes_pool, "n_blocks", last.ks.n_blocks, "peak_reserved",
            (json_int_t)last.ks.peak_reserved, "peak_used", (json_int_t)last.ks.peak_used, "utilisation_mean",
            num(median(util, done_reps)), "fragmentation_peak", (json_int_t)(last.ks.peak_reserved - last.ks.peak_used),
            "max_concurrent", last.tot.max_running, "preemptions", (json_int_t)last.tot.preemptions, "recomputed_tokens",
            (json_int_t)last.tot.recomputed_tokens, "cow_copies", (json_int_t)last.ks.cow_copies, "fork_copies",
            (json_int_t)last.ks.fork_copies, "idle_slot_steps", (json_int_t)last.tot.idle_slot_steps, "prefill_tokens",
            (json_int_t)last.tot.prefill_tokens, "decode_tokens", (json_int_t)last.tot.decode_tokens);
        json_object_set_new(K, "utilisation_at_peak", num(median(util_pk, done_reps)));
        json_object_set_new(K, "utilisation_time_weighted", num(median(util_tw, done_reps)));
        json_object_set_new(K, "utilisation_kind",
                            json_string("utilisation_at_peak = used / reserved at the step of peak reserved; "
                                        "utilisation_time_weighted = sum(used x step time) / sum(reserved x step "
                                        "time); utilisation_mean = unweighted mean over steps (medians over "
                                        "repetitions)"));
        json_object_set_new(K, "recompute_share",
                            first_time > 0 ? json_real((double)last.tot.recomputed_tokens / (double)first_time)
                                           : json_null());
        json_object_set_new(P, "kv", K);
        ibex_mem_stats ms;
        ibex_mem_stats_get(&ms);
        json_object_set_new(P, "memory",
                            json_pack("{s:I,s:I,s:I,s:I}", "weights", (json_int_t)m->weight_bytes, "kv_peak_reserved",
                                      (json_int_t)last.ks.peak_reserved, "activations_peak",
                                      (json_int_t)ms.peak[IBEX_MEM_ACTIVATIONS], "process_peak_rss",
                                      (json_int_t)ibex_mem_process_peak_rss()));
        if (pt->quality_text[0] && pt->engine.compute) {
            json_t *Q = quality_json(pt, m, be, &err);
            if (!Q) {
                if (have_last) rep_free(&last);
                goto fail_reps;
            }
            json_object_set_new(P, "quality", Q);
        }
        json_object_set_new(P, "ops", json_pack("{s:o,s:o}", "prefill", ops_json(&ops[0], smp_ns[0], sch_ns[0], n_st[0]),
                                                "decode", ops_json(&ops[1], smp_ns[1], sch_ns[1], n_st[1])));
        if (ops[1].runs > 0 && be && be->get_counters) { /* device work per decode forward call, all repetitions */
            const ibex_dev_counters *dc = &ops[1].dev;
            const double n = (double)ops[1].runs;
            json_object_set_new(P, "device_counters", json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "decode_calls",
                (json_int_t)ops[1].runs, "launches_per_step", dc->launches / n, "syncs_per_step", dc->syncs / n,
                "allocs_per_step", dc->allocs / n, "h2d_bytes_per_step", dc->h2d_bytes / n, "d2h_bytes_per_step",
                dc->d2h_bytes / n, "d2d_bytes_per_step", dc->d2d_bytes / n));
        }
        json_object_set_new(P, "sampler", json_pack("{s:o,s:I}", "ns_per_token",
                                                    num(sample_calls ? sample_ns / sample_calls : NAN), "calls",
                                                    (json_int_t)sample_calls));
        kv_steps = kv_steps_json(&last);
        json_decref(raw_itl);
        raw_itl = itl_raw_json(gaps, n_gaps, &itl_count);
    }
    if (have_last) rep_free(&last);
fail_reps:
    rep_free(&rr);
    for (int q = 0; q < RM_COUNT; q++) free(rv[q]);
    free(util), free(util_pk), free(util_tw), free(rt), free(gaps), free(roof_bw), free(roof_fl);
    free(brk), free(wr_ptr), free(wr_bytes);
    if (err.msg[0] && strcmp(status, "interrupted")) status = "error";
    goto done;
fail:
    status = "error";
done:
    ibex_kv_pool_free(kv_spare);
    json_object_set_new(P, "status", json_string(status));
    json_object_set_new(P, "error", err.msg[0] && !strcmp(status, "error") ? json_string(err.msg) : json_null());
    json_object_set_new(P, "repetitions", reps);
    json_t *raw = json_pack("{s:o,s:o,s:o,s:o}", "ttft", raw_ttft, "tpot", raw_tpot, "itl", raw_itl, "e2e", raw_e2e);
    if (kv_steps) json_object_set_new(raw, "kv_steps", kv_steps);
    json_object_set_new(raw, "itl_count", json_integer((json_int_t)itl_count));
    json_object_set_new(P, "raw", raw);
    workload_free(&w);
    ibex_backend_free(be);
    return P;
}

/* ---- the run ---- */

static json_t *machine_json(void) {
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(cpu, sizeof cpu, "%s", c + 2);
                    cpu[strcspn(cpu, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long long mem = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    json_t *o = json_pack("{s:s,s:i,s:I,s:n}", "cpu", cpu, "cores", (int)cores, "memory_bytes", (json_int_t)mem, "gpu");
    /* weights, KV pools and the roofline's buffer are advised onto 2 MiB pages
     * (kernels/hostmem.h): whether the kernel honours that changes every bandwidth figure */
    json_object_set_new(o, "huge_pages", json_string(ibex_host_thp_off() ? "withheld (IBEX_HUGEPAGES=0)" : ibex_host_thp_mode()));
    return o;
}

/* The first line of a small file, trimmed, into buf ("" when unreadable). */
static void read_line(const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(buf, (int)cap, f)) buf[strcspn(buf, "\n")] = 0;
    fclose(f);
}

/* "512K" / "32M" (sysfs cache sizes) in bytes; −1 when unparsable. */
static int64_t parse_cache_size(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s) return -1;
    if (*end == 'K') v <<= 10;
    else if (*end == 'M') v <<= 20;
    else if (*end == 'G') v <<= 30;
    return v;
}

/* Where and how this binary was built and where it runs (docs/RESULTS.md). */
static json_t *provenance_json(void) {
    json_t *p = json_object();
    json_object_set_new(p, "ibex_version", json_string(IBEX_VERSION));
    json_object_set_new(p, "git_commit", json_string(IBEX_GIT_COMMIT));
    json_object_set_new(p, "git_dirty", IBEX_GIT_DIRTY < 0 ? json_null() : json_boolean(IBEX_GIT_DIRTY > 0));
    char comp[128];
    snprintf(comp, sizeof comp, "%s %s", !strcmp(IBEX_COMPILER_ID, "GNU") ? "gcc" : !strcmp(IBEX_COMPILER_ID, "Clang") ? "clang" : IBEX_COMPILER_ID,
             IBEX_COMPILER_VERSION);
    json_object_set_new(p, "compiler", json_string(comp));
    json_object_set_new(p, "c_flags", json_string(IBEX_C_FLAGS));
    json_object_set_new(p, "build_type", json_string(IBEX_BUILD_TYPE));
    json_object_set_new(p, "native", json_boolean(IBEX_NATIVE_BUILD));
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) snprintf(cpu, sizeof cpu, "%s", c + 2), cpu[strcspn(cpu, "\n")] = 0;
                break;
            }
        fclose(f);
    }
    json_object_set_new(p, "cpu_model", json_string(cpu));
    json_object_set_new(p, "cpu_cores", json_integer(ibex_online_cpus()));
    int64_t l2 = -1, l3 = -1;
    for (int i = 0; i < 8; i++) { /* cpu0's caches: level and size of each index */
        char path[128], lv[32], sz[32], ty[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        read_line(path, lv, sizeof lv);
        if (!lv[0]) break;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        read_line(path, sz, sizeof sz);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        read_line(path, ty, sizeof ty);
        if (!strcmp(ty, "Instruction")) continue;
        if (!strcmp(lv, "2")) l2 = parse_cache_size(sz);
        if (!strcmp(lv, "3")) l3 = parse_cache_size(sz);
    }
    json_object_set_new(p, "l2_bytes", l2 > 0 ? json_integer(l2) : json_null());
    json_object_set_new(p, "l3_bytes", l3 > 0 ? json_integer(l3) : json_null());
    long long mem = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    json_object_set_new(p, "mem_total_bytes", mem > 0 ? json_integer(mem) : json_null());
    char host[256] = "";
    if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "unknown");
    json_object_set_new(p, "hostname", json_string(host));
    /* the node as the cluster names it (Slurm's node name when run by Slurm), and the job */
    const char *node = getenv("SLURMD_NODENAME");
    json_object_set_new(p, "node", json_string(node && *node ? node : host));
    if (getenv("SLURM_JOB_ID")) {
        json_t *sl = json_object();
        static const char *const vars[] = {"SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                           "SLURM_JOB_PARTITION", "SLURM_CLUSTER_NAME", "SLURM_RESTART_COUNT"};
        for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
            if (getenv(vars[i])) json_object_set_new(sl, vars[i] + 6, json_string(getenv(vars[i])));
        json_object_set_new(p, "slurm", sl);
    }
    json_t *omp = json_object();
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "OMP_", 4) && strncmp(*e, "GOMP_", 5) && strncmp(*e, "KMP_", 4)) continue;
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - *e), *e);
        json_object_set_new(omp, key, json_string(eq + 1));
    }
    json_object_set_new(p, "omp_env", omp);
    json_object_set_new(p, "threads_default", json_integer(ibex_online_cpus()));
    return p;
}

static json_t *metric_defs_json(void) {
    json_t *a = json_array();
    size_t n = 0;
    const ibex_metric_def *d = ibex_metric_defs(&n);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "name", d[i].name, "formula", d[i].formula, "unit",
                                           d[i].unit));
    return a;
}

static ibex_status write_json(json_t *root, const char *dir, const char *name, ibex_err *err) {
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t flags = strcmp(name, "trace.json") ? JSON_INDENT(1) | JSON_REAL_PRECISION(10) : JSON_COMPACT | JSON_REAL_PRECISION(15);
    errno = 0;
    if (json_dump_file(root, tmp, flags) != 0) {
        int e = errno;
        remove(tmp);
        return ibex_err_set(err, IBEX_ERR_IO, "cannot write %s: %s", tmp, e ? strerror(e) : "write failed");
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return ibex_err_set(err, IBEX_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    }
    return IBEX_OK;
}

/* Starts CUPTI when a computing point asks for it, before any CUDA call of the
 * process; routes NVTX ranges to CUPTI too (NVTX_INJECTION64_PATH, unless the user set
 * it, e.g. to run under Nsight Systems). On failure the run goes on with per-op timers
 * (each op synchronised with the device) and the reason is recorded. */
static void instruments_setup(const ibex_scenario *s, run_globals *gx) {
    bool want = false;
    for (int32_t i = 0; i < s->n_points; i++)
        want |= s->points[i].instruments == IBEX_INSTR_CUPTI && s->points[i].engine.compute;
    if (!want) return;
    ibex_err err = {0};
    gx->cupti = ibex_cupti_new(&err); /* opens libcupti (not linked: cuda_libs.h) */
    if (gx->cupti && !getenv("NVTX_INJECTION64_PATH") && ibex_cupti_library()[0])
        setenv("NVTX_INJECTION64_PATH", ibex_cupti_library(), 0);
    if (!gx->cupti || ibex_cupti_start(gx->cupti, &err)) {
        ibex_cupti_free(gx->cupti);
        gx->cupti = NULL;
        snprintf(gx->cupti_error, sizeof gx->cupti_error, "%s", err.msg);
        fprintf(stderr, "ibex run: CUPTI cannot start (%s); continuing with per-op timers (CUDA events on the "
                        "device)\n", err.msg);
    }
}

ibex_status ibex_run_scenario(const ibex_scenario *s, const ibex_run_opts *o, ibex_err *err) {
    ibex_status st = ibex_mkdir_p(o->out_dir, err);
    if (st) return st;
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_t *root = json_object();
    json_object_set_new(root, "schema_version", json_integer(1));
    json_object_set_new(root, "ibex", json_pack("{s:s,s:s,s:s}", "version", IBEX_VERSION, "commit", IBEX_GIT_COMMIT,
                                                "build_type", IBEX_BUILD_TYPE));
    json_object_set_new(root, "machine", machine_json());
    json_object_set_new(root, "provenance", provenance_json());
    json_object_set_new(root, "failed_points", json_integer(0));
    json_object_set_new(root, "timestamp", json_string(stamp));
    json_object_set_new(root, "complete", json_false());
    json_t *swept = json_array();
    for (int32_t k = 0; k < s->n_swept && s->n_points > 0; k++) json_array_append_new(swept, json_string(s->swept[k].key));
    json_object_set_new(root, "scenario", json_pack("{s:s,s:s,s:s,s:b,s:o}", "name", s->name, "path", s->path,
                                                    "description", s->description, "quick", o->quick, "swept", swept));
    if (o->scenario_sha256)
        json_object_set_new(json_object_get(root, "scenario"), "sha256", json_string(o->scenario_sha256));
    json_object_set_new(json_object_get(root, "scenario"), "n_points", json_integer(s->n_points));
    const int32_t n_run = o->shard_n > 0 ? o->n_shard_points : s->n_points;
    if (o->shard_n > 0) { /* ibex merge joins shards by these (docs/CLUSTER.md) */
        json_t *ix = json_array();
        for (int32_t j = 0; j < o->n_shard_points; j++) json_array_append_new(ix, json_integer(o->shard_points[j]));
        json_object_set_new(root, "shard", json_pack("{s:i,s:i,s:o,s:i}", "k", o->shard_k, "n", o->shard_n, "points",
                                                     ix, "total_points", s->n_points));
    }
    json_object_set_new(root, "metric_definitions", metric_defs_json());
    json_t *points = json_array();
    json_object_set_new(root, "points", points);
    model_cache mc = {0};
    bool all_ok = true;
    json_t *trace = json_pack("{s:[],s:s}", "traceEvents", "displayTimeUnit", "ms");
    json_t *trace_events = json_object_get(trace, "traceEvents");
    run_globals gx = {0};
    gx.run_t0_ns = now_ns();
    ibex_load_probe_start(&gx.probe);
    int failed = 0;
    instruments_setup(s, &gx);
    if (gx.cupti_error[0]) json_object_set_new(root, "cupti_error", json_string(gx.cupti_error));
    roofline_prepare(s, &gx);
    if (gx.n_roof > 0) {
        json_t *ra = json_array();
        for (int k = 0; k < gx.n_roof; k++) {
            json_t *r = gx.roof[k].ok ? ibex_roofline_json(&gx.roof[k].r)
                                      : json_pack("{s:s,s:s}", "kind", "none", "error", gx.roof[k].error);
            json_object_set_new(r, "backend_asked", json_string(gx.roof[k].backend));
            json_object_set_new(r, "threads_asked", json_integer(gx.roof[k].threads));
            json_array_append_new(ra, r);
        }
        json_object_set_new(root, "rooflines", ra);
    }
    double t_start = ibex_cli_now_s();
    for (int32_t j = 0; j < n_run; j++) {
        const int32_t i = o->shard_n > 0 ? o->shard_points[j] : j; /* the point's global index */
        if (*o->interrupted) {
            all_ok = false;
            break;
        }
        double tp = ibex_cli_now_s();
        json_t *P = run_point(s, i, &mc, o, trace_events, &gx);
        const char *pst = json_string_value(json_object_get(P, "status"));
        all_ok &= pst && !strcmp(pst, "ok");
        failed += pst && !strcmp(pst, "error");
        json_object_set_new(root, "failed_points", json_integer(failed));
        json_array_append_new(points, P);
        double elapsed = ibex_cli_now_s() - t_start, eta = elapsed / (j + 1) * (n_run - j - 1);
        if (o->progress_tty) fprintf(stderr, "\r\033[K");
        json_t *M = json_object_get(P, "metrics");
        fprintf(stderr, "[%d/%d] %s: %s in %.1f s", j + 1, n_run, json_string_value(json_object_get(P, "label")),
                pst, ibex_cli_now_s() - tp);
        if (M && json_is_number(json_object_get(M, "output_tok_per_s")))
            fprintf(stderr, ", %.1f output tok/s", json_number_value(json_object_get(M, "output_tok_per_s")));
        if (!strcmp(pst, "error")) fprintf(stderr, ": %s", json_string_value(json_object_get(P, "error")));
        fprintf(stderr, "; ETA %.0f s\n", eta);
        if ((st = write_json(root, o->out_dir, "results.json", err))) break; /* keep what was measured */
        if ((st = write_json(trace, o->out_dir, "trace.json", err))) break;
    }
    if (o->failed_points) *o->failed_points = failed;
    ibex_model_free(mc.m);
    ibex_cupti_free(gx.cupti);
    if (!st) {
        json_object_set_new(root, "complete", json_boolean(all_ok && !*o->interrupted));
        st = write_json(root, o->out_dir, "results.json", err);
    }
    json_decref(root);
    json_decref(trace);
    return st;
}
