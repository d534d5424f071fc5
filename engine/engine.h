/* engine.h — the step API: submit requests, call step, get token events.
 *
 * One step is one iteration of the model over the scheduled batch: prefill chunks of
 * some sequences and single-token decodes of others share one forward call. Static and
 * continuous batching are scheduler policies behind the same calls; the harness never
 * reaches inside. With compute off (accounting-only), the same scheduler and KV manager
 * run without a forward pass and every request produces exactly max_new_tokens tokens,
 * so the memory story of a 70B model under an 80 GiB budget runs in seconds. */
#ifndef IBEX_ENGINE_H
#define IBEX_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/forward.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "kernels/backend.h"

typedef enum ibex_sched_policy {
    IBEX_SCHED_STATIC,     /* take up to B requests, run until the last finishes, nobody joins */
    IBEX_SCHED_CONTINUOUS, /* iteration-level: leave and join at every step (Orca) */
} ibex_sched_policy;

const char *ibex_sched_policy_name(ibex_sched_policy p);
bool ibex_sched_policy_from_name(const char *s, ibex_sched_policy *out);

typedef struct ibex_engine_config {
    ibex_kv_config kv;
    ibex_sched_policy sched;
    int32_t max_batch;       /* most sequences running at once (B) */
    int32_t max_step_tokens; /* tokens per step, chunking prefills (0: no limit) */
    int32_t max_seq_len;     /* contiguous reservation per sequence (0: prompt + max new tokens) */
    bool compute;            /* false: accounting only, no forward pass */
} ibex_engine_config;

ibex_engine_config ibex_engine_default_config(void);

typedef enum ibex_decoding { IBEX_DECODE_SAMPLE, IBEX_DECODE_BEAM } ibex_decoding;

typedef struct ibex_request_params {
    int32_t max_new_tokens;
    bool ignore_eos;
    ibex_decoding decoding;       /* SAMPLE covers greedy (temperature 0) */
    ibex_sampler_params sampling; /* SAMPLE: the sampler settings (seed per request) */
    int32_t n;                    /* SAMPLE: parallel samples from one prompt (>= 1) */
    int32_t beam_width;           /* BEAM: W >= 1 */
    float length_penalty;         /* BEAM: final score = logprob / length^penalty (1 by default) */
    bool early_stopping;          /* BEAM: stop as soon as W hypotheses are finished */
} ibex_request_params;

/* Greedy, one sequence, max_new_tokens 16, stop at EOS. */
ibex_request_params ibex_request_default_params(void);

typedef enum ibex_finish_reason { IBEX_FINISH_NONE, IBEX_FINISH_LENGTH, IBEX_FINISH_EOS } ibex_finish_reason;

typedef struct ibex_token_event {
    int64_t req;       /* the id ibex_engine_submit returned */
    int32_t branch;    /* which of the request's n samples (beam search: the best beam) */
    int32_t token;
    int32_t index;     /* 0 for the first output token */
    int64_t step;      /* the step that produced it */
    bool finished;
    ibex_finish_reason reason;
} ibex_token_event;

/* What one step did (ibex_engine_last_step) and the running totals. */
typedef struct ibex_step_info {
    int64_t step;
    int32_t seqs;            /* sequences in the forward batch */
    int32_t prefill_tokens;  /* prompt (and recomputed) tokens processed */
    int32_t decode_tokens;   /* single-token decodes */
    int32_t running, waiting;
    int32_t preempted;       /* sequences preempted during this step */
    int32_t idle_slots;      /* static: finished sequences still holding their slot */
} ibex_step_info;

typedef struct ibex_engine_totals {
    int64_t steps;
    int64_t prefill_tokens, decode_tokens, output_tokens;
    int64_t preemptions, recomputed_tokens;
    int64_t idle_slot_steps; /* static batching's waste: Σ idle_slots over steps */
    int32_t max_running;
    int64_t requests_finished;
    double sample_ns;        /* time spent choosing tokens (sampler and beam selection) */
    int64_t sample_calls;    /* branches sampled (one per token chosen) */
    int64_t forks;           /* sequences forked for n > 1 and beams */
} ibex_engine_totals;

typedef struct ibex_engine ibex_engine;

/* An engine for model m on backend be (be may be NULL when compute is off).
 * NULL with err set on bad settings (B < 1, budget too small, ...). */
ibex_engine *ibex_engine_new(const ibex_model *m, ibex_backend *be, const ibex_engine_config *cfg, ibex_err *err);
void ibex_engine_free(ibex_engine *e);

/* Queues a request (the prompt is copied). Returns its id (>= 0), or −1 with err set
 * when it can never run: empty prompt, an id outside the vocabulary, prompt + max new
 * tokens beyond the context length, impossible decoding settings, or more KV than the
 * whole pool for all its sequences (n or beam width of them) at once. */
int64_t ibex_engine_submit(ibex_engine *e, const int32_t *prompt, int32_t n_prompt, const ibex_request_params *p,
                           ibex_err *err);

/* Runs one iteration. Writes at most cap events and returns how many, or −1 with err
 * set (a forward failure). A step emits one event per sampled branch (at most
 * max_batch × n) plus, for each beam search that ends in it, its whole best
 * hypothesis (max_new_tokens events); cap = max_batch × (width + max_new_tokens)
 * always suffices. Events beyond cap are dropped. A step with nothing to run
 * returns 0. */
int ibex_engine_step(ibex_engine *e, ibex_token_event *ev, int cap, ibex_err *err);

/* True while any request is waiting or running. */
bool ibex_engine_has_work(const ibex_engine *e);

/* The output tokens of request id so far (NULL for an unknown id): branch 0 while
 * sampling, the best hypothesis once a beam search has finished. */
const int32_t *ibex_engine_output(const ibex_engine *e, int64_t id, int32_t *n);

/* Output i of a request: sample i of n, or the i-th best finished beam (by final
 * score). Stores its length, cumulative log-probability and final score (beam:
 * logprob / length^penalty; sampling: logprob). NULL when i is out of range. */
const int32_t *ibex_engine_output_at(const ibex_engine *e, int64_t id, int32_t i, int32_t *n, double *logprob,
                                     double *score);
int32_t ibex_engine_n_outputs(const ibex_engine *e, int64_t id);
bool ibex_engine_finished(const ibex_engine *e, int64_t id);

const ibex_step_info *ibex_engine_last_step(const ibex_engine *e);
const ibex_engine_totals *ibex_engine_totals_get(const ibex_engine *e);
ibex_kv *ibex_engine_kv(ibex_engine *e);
/* The forward context (per-op stats), NULL when compute is off. */
struct ibex_forward *ibex_engine_forward(ibex_engine *e);

/* Span hook for traces and NVTX: each step reports "schedule" (admission and
 * planning), "prefill" or "decode" (the forward call; "prefill" when any prompt token
 * is in it), "sampling" and "release", and the forward context its layers, "attn",
 * "mlp" and ops (see ibex_forward_set_span_hook). NULL turns it off. */
void ibex_engine_set_span_hook(ibex_engine *e, ibex_span_fn fn, void *ctx);

#endif
