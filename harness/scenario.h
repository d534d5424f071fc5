/* scenario.h — scenario files (YAML) and their expansion into sweep points.
 *
 * A scenario fixes settings and sweeps some of them. Every setting has a dotted key
 * (`kv.policy`, `workload.prompt_tokens`, `decoding.top_p`); the same keys are used at
 * the top level of the file (nested maps or dotted keys), in `sweep:` (lists crossed
 * into every combination) and in `zip:` (lists of equal length advanced together, as
 * one sweep dimension). Schema and examples: scenarios/README.md.
 *
 * Errors name the file, line and column, the key, and suggest the closest valid key
 * or value: `quadratic.yaml:12:5: unknown key 'bach_size' (did you mean 'batch'?)`.
 * Impossible values (negative lengths, block size 0, an unknown model preset) are
 * refused at parse time, before anything runs. */
#ifndef IBEX_SCENARIO_H
#define IBEX_SCENARIO_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

typedef enum ibex_dist_kind { IBEX_DIST_FIXED, IBEX_DIST_UNIFORM, IBEX_DIST_NORMAL, IBEX_DIST_LOGNORMAL } ibex_dist_kind;

/* A token-length distribution; samples are rounded and clamped to [min, max]. */
typedef struct ibex_dist {
    ibex_dist_kind kind;
    double value;    /* FIXED */
    double mean, sd; /* NORMAL; LOGNORMAL: of the underlying normal (log space) */
    double min, max; /* UNIFORM bounds; clamps for NORMAL/LOGNORMAL */
} ibex_dist;

typedef enum ibex_arrival_kind {
    IBEX_ARRIVAL_OFFLINE,     /* every request at t = 0 */
    IBEX_ARRIVAL_CONCURRENCY, /* a closed loop keeping `concurrency` requests in flight */
    IBEX_ARRIVAL_POISSON,     /* exponential gaps at `rate` requests/s */
    IBEX_ARRIVAL_GAMMA,       /* gamma gaps at `rate`, shape = burstiness (1 = Poisson, < 1 burstier) */
} ibex_arrival_kind;

/* What instruments a point runs under (each includes the ones before it):
 * off    nothing beyond ibex's own timers;
 * nvtx   NVTX3 ranges (domain "ibex") for steps, phases, layers and ops — free unless a
 *        tool such as Nsight Systems is attached;
 * cupti  CUPTI activity tracing of the GPU: kernels, copies, allocations, NVTX ranges. */
typedef enum ibex_instruments { IBEX_INSTR_OFF, IBEX_INSTR_NVTX, IBEX_INSTR_CUPTI } ibex_instruments;

const char *ibex_instruments_name(ibex_instruments i);

/* One fully resolved run configuration: what a sweep point is. */
typedef struct ibex_point {
    char model[256];    /* model: synthetic:NAME or a GGUF path (relative to the scenario file) */
    char backend[16];   /* backend: cpu | cuda | auto */
    int32_t threads;    /* threads: 0 = all cores */
    ibex_type weights;  /* weights: f32 | f16 | bf16 (synthetic models) */
    int32_t model_ctx;  /* model_ctx: N sets the model's context length (llama.cpp's -c; past the
                           trained one the run is flagged beyond_trained_ctx); 0 = the model's own */
    bool model_ctx_auto; /* model_ctx: auto — the model's own, raised to the longest request when
                            that is longer (what llama-bench does; ibex bench sets it) */
    ibex_engine_config engine; /* kv.policy, kv.block_size, kv.budget, kv.dtype, scheduler, batch,
                                  max_step_tokens, max_seq_len, compute */
    ibex_request_params request; /* decoding.strategy (greedy|sample|beam), decoding.temperature,
                                    decoding.top_k, decoding.top_p, decoding.min_p,
                                    decoding.repeat_penalty, decoding.n, decoding.beam_width,
                                    decoding.length_penalty, decoding.early_stopping,
                                    workload.ignore_eos; max_new_tokens comes from the workload */
    int32_t requests;              /* workload.requests */
    ibex_dist prompt_tokens;       /* workload.prompt_tokens: N or {dist, ...} */
    ibex_dist output_tokens;       /* workload.output_tokens */
    char prompts_file[256];        /* workload.file: JSONL of {"prompt": text} or {"prompt_tokens": N,
                                      "output_tokens": M} (relative to the scenario file) */
    ibex_arrival_kind arrival;     /* workload.arrival: offline | concurrency | poisson | gamma */
    double rate;                   /* workload.rate (requests/s) */
    double burstiness;             /* workload.burstiness (gamma shape) */
    int32_t concurrency;           /* workload.concurrency */
    int32_t warmup;                /* warmup: untimed repetitions */
    int32_t repeat;                /* repeat: timed repetitions (with repeat: auto, the minimum, 3) */
    bool repeat_auto;              /* repeat: auto — repeat until the CI of wall_s's median is within
                                      ci_target of the median, or repeat_max repetitions */
    int32_t repeat_max;            /* repeat_max: the cap of repeat: auto (default 10) */
    double ci_target;              /* ci_target: relative half-width of the median's CI (default 0.05) */
    double noise_cv_max;           /* noise.cv_max: CV above which a figure is noisy (default 0.10) */
    uint64_t seed;                 /* seed: workload, sampling and arrivals */
    double slo_ttft, slo_tpot, slo_e2e; /* slo.ttft / slo.tpot / slo.e2e in seconds; 0 = none */
    bool profile_ops;              /* profile: per-op timing */
    ibex_instruments instruments;  /* instruments: off | nvtx | cupti */
    ibex_attn_impl attention;      /* attention: auto | materialized | paged | split_k (CUDA kernels) */
    char quality_text[256];        /* quality.text: perplexity on this UTF-8 file ("" = none; relative to
                                      the scenario file; harness/quality.c) */
    int32_t quality_ctx;           /* quality.ctx: tokens per perplexity chunk (default 128) */
    int32_t quality_chunks;        /* quality.chunks: at most this many chunks (0 = every whole chunk) */
} ibex_point;

/* Defaults: synthetic:tiny, cpu, all threads, f16, contiguous KV 256MiB block 16 F32,
 * continuous, batch 8, greedy, 8 requests of 128 prompt / 32 output tokens offline,
 * warmup 1, repeat 3, seed 1, no SLOs. */
ibex_point ibex_point_default(void);

/* Sets key (dotted) to the scalar text value, validating it. where is a location
 * prefix for messages ("file.yaml:12:5"). Returns IBEX_OK, or IBEX_ERR_INVALID with a
 * message naming where, key and the problem (with a suggestion for unknown keys or
 * enum values). Distribution and arrival maps are set through their dotted subkeys
 * (`workload.prompt_tokens.dist`, `.min`, ...). */
ibex_status ibex_point_set(ibex_point *p, const char *key, const char *value, const char *where, ibex_err *err);

/* The context length a point runs with for a model whose own is own_ctx: model_ctx
 * when set, else own_ctx, raised under model_ctx: auto to the longest request of the
 * workload's distributions (maximum prompt + maximum output tokens). */
int64_t ibex_point_ctx(const ibex_point *p, int64_t own_ctx);

/* The longest request of the workload's distributions: maximum prompt + maximum output
 * tokens (a workload.file's are known only when it is read). */
int64_t ibex_point_longest(const ibex_point *p);

/* Cross-field checks (min <= max, budget holds one sequence of the longest request,
 * beam width within the budget...). */
ibex_status ibex_point_check(const ibex_point *p, const char *where, ibex_err *err);

/* A swept key and the value it takes at a point, for labels and report columns. */
typedef struct ibex_sweep_value {
    char key[64];
    char value[128];
} ibex_sweep_value;

/* A suite is a file whose `suite:` lists other scenario files (relative to the suite's
 * folder); it holds no settings of its own, only name, description and report. Every
 * listed file is parsed and checked when the suite loads; a listed file that is itself
 * a suite is refused (suites do not nest). A suite has no points: `ibex run` runs each
 * listed scenario in turn, then writes the suite's report. */
typedef struct ibex_scenario {
    char path[512];
    char name[128];         /* name: (default: the file's base name) */
    char description[1024]; /* description: */
    char dir[512];          /* the file's folder, for relative paths */
    int32_t n_suite;        /* suite files only: how many scenario files suite: lists (0 otherwise) */
    char (*suite)[512];     /* n_suite paths, joined to dir (as given when absolute) */
    char report[32];        /* report: the suite's combined report ("claims"), "" when none */
    int32_t n_points;       /* 0 for a suite */
    ibex_point *points;     /* every combination, in sweep order (last key fastest) */
    ibex_sweep_value *swept; /* n_points × n_swept: the swept values of each point */
    int32_t n_swept;
    void *priv;             /* the parsed sweep definition (scenario.c) */
} ibex_scenario;

/* Parses and expands a scenario file. NULL with err set on any problem. */
/* Resolves what `ibex run NAME` names into path (cap bytes): NAME itself when it exists;
 * otherwise, for a bare name (no '/'), NAME or NAME.yaml in the installed scenarios folder
 * (<exe dir>/../share/ibex/scenarios, found from /proc/self/exe, so a relocated install
 * works) and then in the source tree's scenarios/ (a build-tree binary). Returns false
 * (path = NAME) when nothing matches, so the caller's open reports the error. */
bool ibex_scenario_find(const char *name, char *path, size_t cap);

ibex_scenario *ibex_scenario_load(const char *path, ibex_err *err);
/* The same from YAML text in memory (name is used in messages). */
ibex_scenario *ibex_scenario_parse(const char *text, size_t len, const char *name, ibex_err *err);
void ibex_scenario_free(ibex_scenario *s);

/* Keeps the first and last value of every swept list (plus the fixed settings) and
 * sets repeat 1 and warmup 0, and caps what is not swept: requests at 4, prompt /
 * output lengths at 128 / 16 tokens (swept values keep their labels true). Does
 * nothing to a suite (the caller applies it to each scenario the suite lists). */
void ibex_scenario_quick(ibex_scenario *s);

#endif
