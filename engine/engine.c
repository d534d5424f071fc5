/* engine.c — the step API: request queue, static and continuous schedulers,
 * preemption by recompute, sequence groups for n > 1 sampling and beam search, and
 * the glue between the KV manager, the forward pass and the sampler.
 *
 * Design notes
 *  1. A request is a sequence group of branches. Each branch's token list is the
 *     prompt followed by its outputs; n_done counts the tokens whose K/V are in its
 *     cache, and the tokens still to process are [n_done, n_prompt + n_out). Prefill,
 *     decode and recompute after preemption are the same thing: process a chunk of the
 *     pending tokens; when a chunk reaches the end, the logits of its last token
 *     choose the next token.
 *  2. A group starts with one branch. At its first token it widens: n > 1 samples or W
 *     beams fork branch 0 at the end of the prompt (paged: shared blocks,
 *     copy-on-write; contiguous: copies; none: nothing to share). A fork that finds no
 *     free blocks leaves the branch empty, and it recomputes its prompt when scheduled.
 *  3. Beam search (HF-style): the live beams' top 2W continuations by cumulative
 *     log-probability are merged; an EOS among the best W candidates ends a hypothesis
 *     with score logprob / length^penalty; the best W non-EOS candidates are the next
 *     beams. A parent's first child keeps its sequence, further children fork it,
 *     childless parents are freed. The search ends when W hypotheses are finished and
 *     (early stopping, or) no live beam can beat the worst of them, or at max length.
 *     A beam's last pending token is processed only in a step that processes the last
 *     pending token of every live beam of its group, so all beams choose together.
 *  4. Running requests are kept in admission order. Preemption takes the newest
 *     unfinished group and frees every branch (all or nothing), putting it at the front
 *     of the waiting queue; readmitted, each branch recomputes prompt + outputs. The
 *     CPU kernels give bit-identical results for a token alone or in a batch, so the
 *     greedy tokens are those of an uninterrupted run.
 *  5. Admission is FCFS: the head of the queue blocks the rest when it does not fit.
 *     max_batch counts requests (groups). Paged (unless kv.reserve_prompt) reserves
 *     nothing at admission: blocks are taken by each prefill chunk as it is planned
 *     (plan_branch), so reserved tracks written tokens. A group is admitted when the
 *     free blocks, less what the running groups' next chunks need, cover its own first
 *     chunk (an admission credit, so one step does not admit more than it can feed);
 *     when blocks still run out, the newest group is preempted (note 4).
 *  6. Static: a batch forms only when nothing runs; finished members keep their slot and
 *     blocks until the whole batch is done (idle_slot_steps). Continuous: finished
 *     groups release their blocks at once; admission happens at every step.
 *  7. Policy none keeps no cache between steps: every step reserves blocks for each
 *     branch's whole history, recomputes it, and releases them.
 *  8. Per step, decodes are scheduled before prefill chunks; max_step_tokens bounds
 *     the sum (chunked prefill). */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/alloc.h"
#include "engine/forward.h"

typedef enum { REQ_WAITING, REQ_RUNNING, REQ_FINISHED } req_state;

typedef struct branch {
    int32_t *toks; /* (n_prompt + max_new) prompt, then outputs */
    int32_t n_out;
    int32_t seq;    /* KV handle, −1 when holding none */
    int32_t n_done; /* tokens in the cache */
    double logprob; /* Σ log P of its outputs */
    bool finished;
    ibex_finish_reason reason;
    ibex_rng rng;
    const float *logits; /* this step's logits row, or NULL */
} branch;

typedef struct hyp { /* a finished beam */
    int32_t *out;
    int32_t n;
    double logprob, score;
} hyp;

typedef struct req {
    ibex_request_params p;
    int32_t n_prompt;
    int32_t width; /* n or W */
    req_state state;
    int64_t admitted;
    bool widened;
    branch *br; /* (width) */
    int32_t n_br;
    hyp *hyps; /* (width) best first */
    int32_t n_hyps;
} req;

typedef struct plan {
    int64_t req;
    int32_t br;
    int32_t chunk;
} plan;

typedef struct cand {
    int32_t parent, tok;
    double lp, total; /* token log-prob, cumulative score */
} cand;

struct ibex_engine {
    const ibex_model *m;
    ibex_backend *be;
    ibex_span_fn span; /* (optional) trace / NVTX hook */
    void *span_ctx;
    const char *span_open; /* the step phase whose span is open */
    ibex_engine_config cfg;
    ibex_kv *kv;
    ibex_forward *fwd;
    ibex_sampler *sampler;
    req *reqs; /* indexed by id */
    int64_t n_reqs, cap_reqs;
    int64_t *waiting; /* ids, FCFS; head at waiting_head; capacity = cap_reqs */
    int64_t waiting_head, waiting_len;
    int64_t *running; /* ids in admission order */
    int32_t n_running;
    int64_t admit_stamp;
    ibex_step_info last;
    ibex_engine_totals tot;
    /* per-step scratch, grown on demand */
    plan *plan;
    ibex_fwd_seq *batch;
    int32_t cap_plan, n_plan, cap_batch;
    float *logits;
    int32_t cap_logit_rows;
    float *lsm;  /* (vocab) log-softmax scratch */
    cand *cands; /* beam candidates */
    int32_t cap_cands;
    cand *sel; /* beam selection: the chosen continuations */
    int32_t cap_sel;
};

static const char *k_sched_names[] = {"static", "continuous"};

const char *ibex_sched_policy_name(ibex_sched_policy p) { return (unsigned)p < 2 ? k_sched_names[p] : "?"; }

bool ibex_sched_policy_from_name(const char *s, ibex_sched_policy *out) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(s, k_sched_names[i])) return *out = (ibex_sched_policy)i, true;
    return false;
}

ibex_engine_config ibex_engine_default_config(void) {
    return (ibex_engine_config){
        .kv = {.policy = IBEX_KV_CONTIGUOUS, .budget_bytes = 256ll << 20, .block_size = 16, .elem_bytes = 4},
        .sched = IBEX_SCHED_CONTINUOUS,
        .max_batch = 8,
        .max_step_tokens = 2048,
        .max_seq_len = 0,
        .compute = true,
    };
}

ibex_request_params ibex_request_default_params(void) {
    return (ibex_request_params){.max_new_tokens = 16,
                                 .decoding = IBEX_DECODE_SAMPLE,
                                 .sampling = ibex_sampler_default_params(),
                                 .n = 1,
                                 .beam_width = 1,
                                 .length_penalty = 1.0f};
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

ibex_engine *ibex_engine_new(const ibex_model *m, ibex_backend *be, const ibex_engine_config *cfg, ibex_err *err) {
    if (cfg->max_batch < 1 || cfg->max_batch > 65536) {
        ibex_err_set(err, IBEX_ERR_INVALID, "batch size %d is impossible (1..65536)", cfg->max_batch);
        return NULL;
    }
    if (cfg->max_step_tokens < 0 || cfg->max_seq_len < 0) {
        ibex_err_set(err, IBEX_ERR_INVALID, "max step tokens and max sequence length must not be negative");
        return NULL;
    }
    if (cfg->compute && !be) {
        ibex_err_set(err, IBEX_ERR_INVALID, "compute is on but no backend was given");
        return NULL;
    }
    if (cfg->compute != !cfg->kv.no_compute) {
        ibex_err_set(err, IBEX_ERR_INVALID, "engine compute and KV no_compute settings disagree");
        return NULL;
    }
    /* the backend must compute with the cache's element type */
    if (cfg->compute && ibex_kv_type_check(be, ibex_kv_config_type(&cfg->kv), err)) return NULL;
    ibex_engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->m = m;
    e->be = be;
    e->cfg = *cfg;
    e->cfg.kv.be = cfg->compute ? be : NULL; /* the pool lives where the backend computes */
    if (!(e->kv = ibex_kv_new(&m->cfg, &e->cfg.kv, err))) goto fail;
    if (!(e->running = malloc((size_t)cfg->max_batch * sizeof *e->running))) goto oom;
    if (!(e->sampler = ibex_sampler_new(m->cfg.vocab_size))) goto oom;
    if (!(e->lsm = malloc((size_t)m->cfg.vocab_size * sizeof *e->lsm))) goto oom;
    if (cfg->compute) {
        int32_t cap = cfg->max_step_tokens > 0 ? cfg->max_step_tokens : 2048;
        if (!(e->fwd = ibex_forward_new(m, be, cap, err))) goto fail;
    }
    return e;
oom:
    ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory creating the engine");
fail:
    ibex_engine_free(e);
    return NULL;
}

static void free_req(req *r) {
    for (int32_t b = 0; b < r->n_br; b++) free(r->br[b].toks);
    for (int32_t h = 0; h < r->n_hyps; h++) free(r->hyps[h].out);
    free(r->br);
    free(r->hyps);
}

void ibex_engine_free(ibex_engine *e) {
    if (!e) return;
    for (int64_t i = 0; i < e->n_reqs; i++) free_req(&e->reqs[i]);
    free(e->reqs);
    free(e->waiting);
    free(e->running);
    free(e->plan), free(e->batch), free(e->cands), free(e->sel), free(e->lsm);
    ibex_free(e->logits);
    ibex_sampler_free(e->sampler);
    ibex_forward_free(e->fwd);
    ibex_kv_free(e->kv);
    free(e);
}

static int32_t reservation(const ibex_engine *e, int32_t n_prompt, int32_t max_new) {
    return e->cfg.max_seq_len > 0 ? e->cfg.max_seq_len : n_prompt + max_new;
}

int64_t ibex_engine_submit(ibex_engine *e, const int32_t *prompt, int32_t n_prompt, const ibex_request_params *p,
                           ibex_err *err) {
    const ibex_model_config *c = &e->m->cfg;
    if (n_prompt <= 0) return ibex_err_set(err, IBEX_ERR_INVALID, "request has an empty prompt"), -1;
    if (p->max_new_tokens <= 0)
        return ibex_err_set(err, IBEX_ERR_INVALID, "max new tokens must be positive (got %d)", p->max_new_tokens), -1;
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return ibex_err_set(err, IBEX_ERR_INVALID, "prompt token %d (position %d) is outside the vocabulary 0..%d",
                                prompt[i], i, c->vocab_size - 1),
                   -1;
    int32_t width;
    if (p->decoding == IBEX_DECODE_SAMPLE) {
        if (ibex_sampler_params_check(&p->sampling, err)) return -1;
        if (p->n < 1 || p->n > 1024)
            return ibex_err_set(err, IBEX_ERR_INVALID, "n (parallel samples) must be 1..1024, got %d", p->n), -1;
        width = p->n;
    } else if (p->decoding == IBEX_DECODE_BEAM) {
        if (p->beam_width < 1 || p->beam_width > 1024)
            return ibex_err_set(err, IBEX_ERR_INVALID, "beam width must be 1..1024, got %d", p->beam_width), -1;
        if (!isfinite(p->length_penalty))
            return ibex_err_set(err, IBEX_ERR_INVALID, "length penalty must be a finite number"), -1;
        width = p->beam_width;
    } else {
        return ibex_err_set(err, IBEX_ERR_INVALID, "unknown decoding strategy %d", (int)p->decoding), -1;
    }
    int64_t total = (int64_t)n_prompt + p->max_new_tokens;
    if (total > c->ctx_len)
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "prompt (%d tokens) + max new tokens (%d) exceeds the model's context length %d", n_prompt,
                            p->max_new_tokens, c->ctx_len),
               -1;
    if (e->cfg.kv.policy == IBEX_KV_CONTIGUOUS && e->cfg.max_seq_len > 0 && total > e->cfg.max_seq_len)
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "request needs %lld tokens but the contiguous reservation (max_seq_len) is %d",
                            (long long)total, e->cfg.max_seq_len),
               -1;
    if (e->cfg.max_step_tokens > 0 && width > e->cfg.max_step_tokens)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%d sequences cannot decode together within %d tokens per step",
                            width, e->cfg.max_step_tokens),
               -1;
    /* Worst case: every branch holds its whole sequence (contiguous: its reservation). */
    int64_t per = e->cfg.kv.policy == IBEX_KV_CONTIGUOUS ? reservation(e, n_prompt, p->max_new_tokens) : total;
    if (per < total) per = total;
    int64_t bs = e->cfg.kv.block_size, need_blocks = width * ((per + bs - 1) / bs);
    ibex_kv_stats ks;
    ibex_kv_stats_get(e->kv, &ks);
    if (need_blocks > ks.n_blocks)
        return ibex_err_set(err, IBEX_ERR_NOMEM,
                            "request needs %lld KV blocks (%d sequence%s of %lld tokens) but the whole budget holds %d "
                            "blocks of %d tokens",
                            (long long)need_blocks, width, width > 1 ? "s" : "", (long long)per, ks.n_blocks,
                            e->cfg.kv.block_size),
               -1;
    /* The waiting queue can hold every request, so a preempted one always fits back. */
    if (e->n_reqs == e->cap_reqs) {
        int64_t cap = e->cap_reqs ? 2 * e->cap_reqs : 64;
        req *r = realloc(e->reqs, (size_t)cap * sizeof *r);
        if (!r) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory queueing a request"), -1;
        e->reqs = r;
        int64_t *w = realloc(e->waiting, (size_t)cap * sizeof *w);
        if (!w) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory queueing a request"), -1;
        e->waiting = w, e->cap_reqs = cap;
    }
    if (e->waiting_head + e->waiting_len == e->cap_reqs) { /* len < cap, so head > 0 */
        memmove(e->waiting, e->waiting + e->waiting_head, (size_t)e->waiting_len * sizeof *e->waiting);
        e->waiting_head = 0;
    }
    req *r = &e->reqs[e->n_reqs];
    *r = (req){.p = *p, .n_prompt = n_prompt, .width = width, .state = REQ_WAITING};
    r->br = calloc((size_t)width, sizeof *r->br);
    r->hyps = p->decoding == IBEX_DECODE_BEAM ? calloc((size_t)width, sizeof *r->hyps) : NULL;
    int32_t *toks = malloc((size_t)total * sizeof *toks);
    if (!r->br || (p->decoding == IBEX_DECODE_BEAM && !r->hyps) || !toks) {
        free(r->br), free(r->hyps), free(toks);
        return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory queueing a request"), -1;
    }
    memcpy(toks, prompt, (size_t)n_prompt * sizeof *prompt);
    r->br[0] = (branch){.toks = toks, .seq = -1};
    ibex_rng_seed(&r->br[0].rng, p->sampling.seed);
    r->n_br = 1;
    e->waiting[e->waiting_head + e->waiting_len++] = e->n_reqs;
    return e->n_reqs++;
}

bool ibex_engine_has_work(const ibex_engine *e) { return e->waiting_len > 0 || e->n_running > 0; }

static bool is_beam(const req *r) { return r->p.decoding == IBEX_DECODE_BEAM; }

const int32_t *ibex_engine_output(const ibex_engine *e, int64_t id, int32_t *n) {
    if (id < 0 || id >= e->n_reqs) return NULL;
    const req *r = &e->reqs[id];
    if (is_beam(r) && r->state == REQ_FINISHED && r->n_hyps > 0) {
        *n = r->hyps[0].n;
        return r->hyps[0].out;
    }
    *n = r->br[0].n_out;
    return r->br[0].toks + r->n_prompt;
}

int32_t ibex_engine_n_outputs(const ibex_engine *e, int64_t id) {
    if (id < 0 || id >= e->n_reqs) return 0;
    const req *r = &e->reqs[id];
    return is_beam(r) && r->state == REQ_FINISHED ? r->n_hyps : r->n_br;
}

const int32_t *ibex_engine_output_at(const ibex_engine *e, int64_t id, int32_t i, int32_t *n, double *logprob,
                                     double *score) {
    if (id < 0 || id >= e->n_reqs || i < 0 || i >= ibex_engine_n_outputs(e, id)) return NULL;
    const req *r = &e->reqs[id];
    if (is_beam(r) && r->state == REQ_FINISHED) {
        const hyp *h = &r->hyps[i];
        *n = h->n;
        if (logprob) *logprob = h->logprob;
        if (score) *score = h->score;
        return h->out;
    }
    const branch *b = &r->br[i];
    *n = b->n_out;
    if (logprob) *logprob = b->logprob;
    if (score) *score = b->logprob;
    return b->toks + r->n_prompt;
}

bool ibex_engine_finished(const ibex_engine *e, int64_t id) {
    return id >= 0 && id < e->n_reqs && e->reqs[id].state == REQ_FINISHED;
}

const ibex_step_info *ibex_engine_last_step(const ibex_engine *e) { return &e->last; }
const ibex_engine_totals *ibex_engine_totals_get(const ibex_engine *e) { return &e->tot; }
ibex_kv *ibex_engine_kv(ibex_engine *e) { return e->kv; }
struct ibex_forward *ibex_engine_forward(ibex_engine *e) { return e->fwd; }

static void release_branch(ibex_engine *e, branch *b) {
    if (b->seq >= 0) ibex_kv_seq_free(e->kv, b->seq);
    b->seq = -1;
    b->n_done = 0;
}

static void release_group(ibex_engine *e, req *r) {
    for (int32_t b = 0; b < r->n_br; b++) release_branch(e, &r->br[b]);
}

/* Reserves what a newly admitted group needs now; false (nothing held) if it does not
 * fit. Contiguous reserves each branch's whole run; paged the blocks of its pending
 * tokens; none checks that the whole history would fit this step. */
static bool paged_lazy(const ibex_engine *e) {
    return e->cfg.kv.policy == IBEX_KV_PAGED && !e->cfg.kv.reserve_prompt;
}

/* Blocks group r needs beyond what it holds for its next chunk of at most cap tokens per
 * branch (design note 5). */
static int64_t next_chunk_blocks(const ibex_engine *e, const req *r, int32_t cap) {
    int64_t need = 0;
    for (int32_t b = 0; b < r->n_br; b++) {
        const branch *br = &r->br[b];
        if (br->finished) continue;
        int32_t pending = r->n_prompt + br->n_out - br->n_done;
        need += ibex_kv_blocks_needed(e->kv, br->seq, br->n_done + (pending < cap ? pending : cap));
    }
    return need;
}

static bool admit(ibex_engine *e, req *r) {
    if (paged_lazy(e)) { /* blocks come with the chunks (note 5); the caller checked the credit */
        for (int32_t b = 0; b < r->n_br; b++) {
            branch *br = &r->br[b];
            if (br->finished) continue;
            if ((br->seq = ibex_kv_seq_new(e->kv)) < 0) {
                release_group(e, r);
                return false;
            }
        }
        return true;
    }
    if (e->cfg.kv.policy == IBEX_KV_NONE) {
        int32_t need = 0;
        for (int32_t b = 0; b < r->n_br; b++)
            if (!r->br[b].finished) need += ibex_kv_blocks_needed(e->kv, -1, r->n_prompt + r->br[b].n_out);
        return need <= ibex_kv_free_blocks(e->kv);
    }
    for (int32_t b = 0; b < r->n_br; b++) {
        branch *br = &r->br[b];
        if (br->finished) continue;
        int32_t seq = ibex_kv_seq_new(e->kv);
        int32_t rsv = e->cfg.kv.policy == IBEX_KV_CONTIGUOUS ? reservation(e, r->n_prompt, r->p.max_new_tokens) : 0;
        if (seq < 0 || !ibex_kv_seq_reserve(e->kv, seq, r->n_prompt + br->n_out, rsv)) {
            if (seq >= 0) ibex_kv_seq_free(e->kv, seq);
            release_group(e, r);
            return false;
        }
        br->seq = seq;
    }
    return true;
}

static void remove_running(ibex_engine *e, int32_t i) {
    memmove(e->running + i, e->running + i + 1, (size_t)(e->n_running - i - 1) * sizeof *e->running);
    e->n_running--;
}

/* Preempts the newest unfinished running group (design note 4). Returns its id. */
static int64_t preempt_newest(ibex_engine *e) {
    for (int32_t i = e->n_running - 1; i >= 0; i--) {
        req *r = &e->reqs[e->running[i]];
        if (r->state != REQ_RUNNING) continue;
        int64_t id = e->running[i];
        e->tot.preemptions++;
        for (int32_t b = 0; b < r->n_br; b++) e->tot.recomputed_tokens += r->br[b].n_done;
        release_group(e, r);
        r->state = REQ_WAITING;
        remove_running(e, i);
        if (e->waiting_head > 0) {
            e->waiting[--e->waiting_head] = id;
        } else { /* waiting_len < cap_reqs: the queue holds every request */
            memmove(e->waiting + 1, e->waiting, (size_t)e->waiting_len * sizeof *e->waiting);
            e->waiting[0] = id;
        }
        e->waiting_len++;
        e->last.preempted++;
        return id;
    }
    return -1;
}

static bool grow(void **p, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return true;
    int32_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* Adds (id, branch, chunk) to the plan after making room in its cache. Returns false
 * if the group itself had to be preempted. */
static bool plan_branch(ibex_engine *e, int64_t id, int32_t bi, int32_t take, int32_t *budget, bool *oom) {
    req *r = &e->reqs[id];
    branch *b = &r->br[bi];
    for (;;) {
        if (b->seq < 0 && (b->seq = ibex_kv_seq_new(e->kv)) < 0) return *oom = true, false;
        if (ibex_kv_seq_reserve(e->kv, b->seq, b->n_done + take, 0) &&
            ibex_kv_seq_prepare_write(e->kv, b->seq, b->n_done, take))
            break;
        int64_t victim = preempt_newest(e);
        for (int32_t k = 0; k < e->n_plan;) { /* drop the victim's branches from the plan */
            if (e->plan[k].req == victim) {
                *budget += e->plan[k].chunk;
                memmove(e->plan + k, e->plan + k + 1, (size_t)(e->n_plan - k - 1) * sizeof *e->plan);
                e->n_plan--;
            } else {
                k++;
            }
        }
        if (victim == id || victim < 0) return false;
    }
    if (!grow((void **)&e->plan, &e->cap_plan, e->n_plan + 1, sizeof *e->plan)) return *oom = true, false;
    e->plan[e->n_plan++] = (plan){.req = id, .br = bi, .chunk = take};
    *budget -= take;
    return true;
}

/* Plans one running group: sampling branches independently; a beam group so that its
 * beams reach their last token in the same step (design note 3). */
static void plan_group(ibex_engine *e, int64_t id, bool decode_pass, int32_t *budget, bool *oom) {
    req *r = &e->reqs[id];
    int32_t sum = 0, live = 0;
    for (int32_t b = 0; b < r->n_br; b++)
        if (!r->br[b].finished) sum += r->n_prompt + r->br[b].n_out - r->br[b].n_done, live++;
    if (live == 0) return;
    bool decoding = sum == live; /* every live branch has exactly one pending token */
    if (decoding != decode_pass) return;
    bool whole = !is_beam(r) || live == 1 || sum <= *budget;
    for (int32_t b = 0; b < r->n_br && r->state == REQ_RUNNING; b++) {
        branch *br = &r->br[b];
        if (br->finished) continue;
        int32_t pending = r->n_prompt + br->n_out - br->n_done;
        int32_t take = pending;
        if (!whole) take = pending - 1; /* keep the last token for the step all beams finish in */
        if (take > *budget) take = *budget;
        if (take <= 0) continue;
        if (!plan_branch(e, id, b, take, budget, oom)) return;
    }
}

/* A deterministic stand-in token for accounting-only runs (never BOS/EOS/unk). */
static int32_t filler_token(const ibex_engine *e, int64_t id, int32_t branch_i, int32_t index) {
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull ^ (uint64_t)(index + 1) * 0xbf58476d1ce4e5b9ull ^
                 (uint64_t)branch_i * 0x94d049bb133111ebull;
    h ^= h >> 31;
    int32_t v = e->m->cfg.vocab_size;
    return v > 3 ? 3 + (int32_t)(h % (uint64_t)(v - 3)) : 0;
}

static int32_t eos_id(const ibex_engine *e) { return e->m->tok ? ibex_tokenizer_eos(e->m->tok) : -1; }

/* Makes a new branch of r continuing from parent's state: shares (or copies) the
 * parent's cache. Returns false only on allocation failure. */
static bool fork_branch(ibex_engine *e, req *r, const branch *parent, branch *child, uint64_t seed) {
    int32_t total = r->n_prompt + r->p.max_new_tokens;
    *child = *parent;
    child->toks = malloc((size_t)total * sizeof *child->toks);
    if (!child->toks) return false;
    memcpy(child->toks, parent->toks, (size_t)(r->n_prompt + parent->n_out) * sizeof *child->toks);
    child->seq = -1;
    child->n_done = 0;
    if (parent->seq >= 0 && parent->n_done > 0) {
        child->seq = ibex_kv_seq_fork(e->kv, parent->seq, parent->n_done);
        if (child->seq >= 0) child->n_done = parent->n_done; /* else: recompute later (note 2) */
    }
    if (child->seq >= 0) e->tot.forks++;
    ibex_rng_seed(&child->rng, seed);
    return true;
}

static void append(ibex_engine *e, req *r, branch *b, int32_t tok, double lp) {
    b->toks[r->n_prompt + b->n_out++] = tok;
    b->logprob += lp;
    e->tot.output_tokens++;
}

static void emit(int *nev, ibex_token_event *ev, int cap, int64_t id, int32_t br, int32_t tok, int32_t index,
                 int64_t step, ibex_finish_reason why) {
    if (*nev < cap)
        ev[(*nev)++] = (ibex_token_event){.req = id, .branch = br, .token = tok, .index = index, .step = step,
                                          .finished = why != IBEX_FINISH_NONE, .reason = why};
}

/* A branch chooses its next token when all its tokens have been processed: with
 * compute, it then has this step's logits row. */
static bool ready(const ibex_engine *e, const req *r, const branch *b) {
    if (b->finished) return false;
    return e->cfg.compute ? b->logits != NULL : b->n_done == r->n_prompt + b->n_out;
}

/* Sampling (greedy, temperature, n > 1): each ready branch draws its token. */
static bool sample_group(ibex_engine *e, int64_t id, ibex_token_event *ev, int cap, int *nev) {
    req *r = &e->reqs[id];
    if (!r->widened && ready(e, r, &r->br[0])) {
        r->widened = true;
        for (int32_t i = 1; i < r->width; i++) {
            if (!fork_branch(e, r, &r->br[0], &r->br[i], r->p.sampling.seed + (uint64_t)i * 0x9e3779b97f4a7c15ull))
                return false;
            r->n_br++;
        }
    }
    int32_t eos = eos_id(e);
    for (int32_t i = 0; i < r->n_br; i++) {
        branch *b = &r->br[i];
        if (!ready(e, r, b)) continue;
        float lp = 0;
        int32_t tok = e->cfg.compute ? ibex_sampler_sample(e->sampler, b->logits, &r->p.sampling, &b->rng, b->toks,
                                                           r->n_prompt + b->n_out, &lp)
                                     : filler_token(e, id, i, b->n_out);
        e->tot.sample_calls++;
        append(e, r, b, tok, lp);
        ibex_finish_reason why = IBEX_FINISH_NONE;
        if (b->n_out >= r->p.max_new_tokens)
            why = IBEX_FINISH_LENGTH;
        else if (tok == eos && !r->p.ignore_eos && e->cfg.compute)
            why = IBEX_FINISH_EOS;
        if (why != IBEX_FINISH_NONE) b->finished = true, b->reason = why;
        emit(nev, ev, cap, id, i, tok, b->n_out - 1, e->tot.steps, why);
    }
    return true;
}

static double final_score(const req *r, double logprob, int32_t len) {
    return logprob / pow((double)(len > 0 ? len : 1), (double)r->p.length_penalty);
}

/* Records a finished hypothesis, keeping the best width of them, best first. */
static bool add_hyp(req *r, const branch *b, int32_t extra_tok, double logprob) {
    int32_t n = b->n_out + (extra_tok >= 0);
    double score = final_score(r, logprob, n);
    if (r->n_hyps == r->width && score <= r->hyps[r->n_hyps - 1].score) return true;
    int32_t *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!out) return false;
    memcpy(out, b->toks + r->n_prompt, (size_t)b->n_out * sizeof *out);
    if (extra_tok >= 0) out[n - 1] = extra_tok;
    if (r->n_hyps == r->width) free(r->hyps[--r->n_hyps].out);
    int32_t k = r->n_hyps;
    while (k > 0 && r->hyps[k - 1].score < score) r->hyps[k] = r->hyps[k - 1], k--;
    r->hyps[k] = (hyp){.out = out, .n = n, .logprob = logprob, .score = score};
    r->n_hyps++;
    return true;
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->total != y->total) return x->total > y->total ? -1 : 1;
    if (x->parent != y->parent) return x->parent < y->parent ? -1 : 1;
    return x->tok < y->tok ? -1 : x->tok > y->tok;
}

/* One beam-search step once every live beam has its logits (design note 3). */
static bool beam_group(ibex_engine *e, int64_t id, ibex_token_event *ev, int cap, int *nev) {
    req *r = &e->reqs[id];
    const int32_t W = r->width, V = e->m->cfg.vocab_size, K = 2 * W < V ? 2 * W : V;
    for (int32_t b = 0; b < r->n_br; b++)
        if (!r->br[b].finished && !ready(e, r, &r->br[b])) return true; /* not all beams are ready */
    if (!grow((void **)&e->cands, &e->cap_cands, r->n_br * K, sizeof *e->cands)) return false;
    int32_t nc = 0;
    for (int32_t b = 0; b < r->n_br; b++) {
        const branch *br = &r->br[b];
        cand *top = e->cands + nc;
        int32_t nt = 0;
        if (e->cfg.compute) {
            ibex_log_softmax(e->lsm, br->logits, V);
            for (int32_t t = 0; t < V; t++) { /* top K by insertion; K is small */
                float lp = e->lsm[t];
                if (nt == K && lp <= top[nt - 1].lp) continue;
                int32_t k = nt < K ? nt++ : K - 1;
                while (k > 0 && top[k - 1].lp < lp) top[k] = top[k - 1], k--;
                top[k] = (cand){.parent = b, .tok = t, .lp = lp, .total = br->logprob + lp};
            }
        } else { /* accounting only: K stand-in continuations of decreasing score per beam */
            for (int32_t j = 0; j < K; j++)
                top[nt++] = (cand){.parent = b, .tok = filler_token(e, id, b, br->n_out * K + j), .lp = -1.0 - j,
                                   .total = br->logprob - 1.0 - j};
        }
        nc += nt;
    }
    qsort(e->cands, (size_t)nc, sizeof *e->cands, cmp_cand);
    e->tot.sample_calls += r->n_br;
    int32_t eos = eos_id(e), cur_len = r->br[0].n_out + 1;
    if (!grow((void **)&e->sel, &e->cap_sel, W, sizeof *e->sel)) return false;
    int32_t nn = 0;
    for (int32_t k = 0; k < nc && nn < W; k++) {
        const cand *c = &e->cands[k];
        if (c->tok == eos && !r->p.ignore_eos && e->cfg.compute) {
            if (k < W && !add_hyp(r, &r->br[c->parent], c->tok, c->total)) return false;
            continue;
        }
        e->sel[nn++] = *c;
    }
    bool at_length = cur_len >= r->p.max_new_tokens;
    bool done = nn == 0 || at_length;
    if (!done && r->n_hyps >= W) {
        double best_live = final_score(r, e->sel[0].total, cur_len);
        done = r->p.early_stopping || r->hyps[r->n_hyps - 1].score >= best_live;
    }
    /* Build the next beams: a parent's first child keeps its branch, others fork it. */
    branch *old = r->br;
    int32_t n_old = r->n_br;
    branch *nb = calloc((size_t)W, sizeof *nb);
    bool *kept = calloc((size_t)n_old, sizeof *kept);
    if (!nb || !kept) return free(nb), free(kept), false;
    for (int32_t i = 0; i < nn; i++) {
        int32_t parent = e->sel[i].parent;
        if (!kept[parent]) {
            kept[parent] = true;
            nb[i] = old[parent];
        } else {
            if (!fork_branch(e, r, &old[parent], &nb[i], 0)) return free(nb), free(kept), false;
        }
        nb[i].logits = NULL;
        append(e, r, &nb[i], e->sel[i].tok, e->sel[i].lp);
    }
    for (int32_t b = 0; b < n_old; b++)
        if (!kept[b]) release_branch(e, &old[b]), free(old[b].toks);
    free(kept);
    free(old);
    r->br = nb;
    r->n_br = nn;
    r->widened = true;
    if (!done) return true;
    for (int32_t b = 0; b < r->n_br; b++) /* live beams at the end count as hypotheses */
        if (!add_hyp(r, &r->br[b], -1, r->br[b].logprob)) return false;
    for (int32_t b = 0; b < r->n_br; b++) r->br[b].finished = true, r->br[b].reason = IBEX_FINISH_LENGTH;
    if (r->n_hyps > 0) { /* beam search streams nothing: the best hypothesis comes out at the end */
        const hyp *h = &r->hyps[0];
        bool by_eos = h->n > 0 && h->out[h->n - 1] == eos && !r->p.ignore_eos;
        for (int32_t i = 0; i < h->n; i++)
            emit(nev, ev, cap, id, 0, h->out[i], i, e->tot.steps,
                 i + 1 < h->n ? IBEX_FINISH_NONE : by_eos ? IBEX_FINISH_EOS : IBEX_FINISH_LENGTH);
    }
    return true;
}

static int step(ibex_engine *e, ibex_token_event *ev, int cap, ibex_err *err);

void ibex_engine_set_span_hook(ibex_engine *e, ibex_span_fn fn, void *ctx) {
    e->span = fn, e->span_ctx = ctx;
    if (e->fwd) ibex_forward_set_span_hook(e->fwd, fn, ctx);
}

#define SPAN(e, begin, name)                                                                                           \
    do {                                                                                                               \
        if ((e)->span) (e)->span((e)->span_ctx, begin, name, -1);                                                      \
    } while (0)

int ibex_engine_step(ibex_engine *e, ibex_token_event *ev, int cap, ibex_err *err) {
    SPAN(e, true, "schedule");
    int n = step(e, ev, cap, err);
    if (e->span_open) SPAN(e, false, e->span_open); /* a phase left open by an error */
    e->span_open = NULL;
    return n;
}

/* Ends the open phase span and begins the next one (NULL: none). */
static void phase(ibex_engine *e, const char *name) {
    if (!e->span) return;
    if (e->span_open) e->span(e->span_ctx, false, e->span_open, -1);
    if (name) e->span(e->span_ctx, true, name, -1);
    e->span_open = name;
}

static int step(ibex_engine *e, ibex_token_event *ev, int cap, ibex_err *err) {
    const bool is_static = e->cfg.sched == IBEX_SCHED_STATIC;
    const bool none = e->cfg.kv.policy == IBEX_KV_NONE;
    e->last = (ibex_step_info){.step = e->tot.steps};
    e->span_open = e->span ? "schedule" : NULL;

    int32_t budget = e->cfg.max_step_tokens > 0 ? e->cfg.max_step_tokens : INT32_MAX;
    if (e->fwd && budget > ibex_forward_max_tokens(e->fwd)) budget = ibex_forward_max_tokens(e->fwd);

    /* Admission (design notes 5, 6). */
    if (!is_static || e->n_running == 0) {
        int64_t credit = 0;
        if (paged_lazy(e)) {
            credit = ibex_kv_free_blocks(e->kv);
            for (int32_t i = 0; i < e->n_running; i++)
                if (e->reqs[e->running[i]].state == REQ_RUNNING) credit -= next_chunk_blocks(e, &e->reqs[e->running[i]], budget);
        }
        while (e->waiting_len > 0 && e->n_running < e->cfg.max_batch) {
            int64_t id = e->waiting[e->waiting_head];
            req *r = &e->reqs[id];
            if (paged_lazy(e)) {
                int64_t need = next_chunk_blocks(e, r, budget);
                if (need > credit && e->n_running > 0) break; /* alone, it fits: submit checked the pool */
                credit -= need;
            }
            if (!admit(e, r)) break;
            e->waiting_head++, e->waiting_len--;
            if (e->waiting_len == 0) e->waiting_head = 0;
            r->state = REQ_RUNNING;
            r->admitted = e->admit_stamp++;
            e->running[e->n_running++] = id;
        }
    }
    if (e->n_running > e->tot.max_running) e->tot.max_running = e->n_running;

    /* Plan: decodes first, then prefill chunks, within the token budget (note 8). */
    e->n_plan = 0;
    bool oom = false;
    for (int pass = 0; pass < 2; pass++)
        for (int32_t i = 0; i < e->n_running; i++) {
            int64_t id = e->running[i];
            if (e->reqs[id].state != REQ_RUNNING) continue;
            plan_group(e, id, pass == 0, &budget, &oom);
            if (i < e->n_running && e->running[i] != id) i--; /* this group was preempted */
        }
    if (oom) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory planning step %lld", (long long)e->tot.steps), -1;
    for (int32_t k = 0; k < e->n_plan; k++) {
        const req *r = &e->reqs[e->plan[k].req];
        const branch *b = &r->br[e->plan[k].br];
        if (r->n_prompt + b->n_out - b->n_done == 1)
            e->last.decode_tokens++;
        else
            e->last.prefill_tokens += e->plan[k].chunk;
    }

    /* Forward. */
    if (e->n_plan > 0 && e->cfg.compute) phase(e, e->last.prefill_tokens > 0 ? "prefill" : "decode");
    for (int32_t i = 0; i < e->n_running; i++) {
        req *r = &e->reqs[e->running[i]];
        for (int32_t b = 0; b < r->n_br; b++) r->br[b].logits = NULL;
    }
    if (e->n_plan > 0 && e->cfg.compute) {
        int32_t rows = 0;
        for (int32_t k = 0; k < e->n_plan; k++) {
            const req *r = &e->reqs[e->plan[k].req];
            const branch *b = &r->br[e->plan[k].br];
            rows += b->n_done + e->plan[k].chunk == r->n_prompt + b->n_out;
        }
        if (!grow((void **)&e->batch, &e->cap_batch, e->n_plan, sizeof *e->batch))
            return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory"), -1;
        if (rows > e->cap_logit_rows) {
            ibex_free(e->logits);
            e->logits = ibex_alloc(IBEX_MEM_ACTIVATIONS, (size_t)rows * e->m->cfg.vocab_size * sizeof(float), 0);
            e->cap_logit_rows = e->logits ? rows : 0;
            if (!e->logits) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for logits"), -1;
        }
        int32_t nl = 0;
        for (int32_t k = 0; k < e->n_plan; k++) {
            req *r = &e->reqs[e->plan[k].req];
            branch *b = &r->br[e->plan[k].br];
            int32_t nb;
            bool ends = b->n_done + e->plan[k].chunk == r->n_prompt + b->n_out;
            float *lg = ends ? e->logits + (size_t)nl++ * e->m->cfg.vocab_size : NULL;
            e->batch[k] = (ibex_fwd_seq){.tokens = b->toks + b->n_done, .n_tokens = e->plan[k].chunk,
                                         .pos0 = b->n_done, .block_table = ibex_kv_seq_table(e->kv, b->seq, &nb),
                                         .logits = lg, .contiguous = e->cfg.kv.policy == IBEX_KV_CONTIGUOUS};
            b->logits = lg;
        }
        if (ibex_forward_run(e->fwd, ibex_kv_pool_of(e->kv), e->batch, e->n_plan, err)) return -1;
    }
    for (int32_t k = 0; k < e->n_plan; k++) e->reqs[e->plan[k].req].br[e->plan[k].br].n_done += e->plan[k].chunk;

    /* Choose tokens, group by group, in admission order. */
    phase(e, "sampling");
    int nev = 0;
    double t0 = now_ns();
    for (int32_t i = 0; i < e->n_running; i++) {
        int64_t id = e->running[i];
        req *r = &e->reqs[id];
        if (r->state != REQ_RUNNING) continue;
        bool ok = is_beam(r) ? beam_group(e, id, ev, cap, &nev) : sample_group(e, id, ev, cap, &nev);
        if (!ok) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory choosing tokens"), -1;
        bool all = true;
        for (int32_t b = 0; b < r->n_br; b++) all &= r->br[b].finished;
        if (all && r->widened) {
            r->state = REQ_FINISHED;
            e->tot.requests_finished++;
        }
    }
    e->tot.sample_ns += now_ns() - t0;

    /* Release: every cache (none), finished groups (continuous), a drained static batch. */
    phase(e, "release");
    for (int32_t i = e->n_running - 1; i >= 0; i--) {
        req *r = &e->reqs[e->running[i]];
        if (none) release_group(e, r);
        if (r->state == REQ_FINISHED && !is_static) {
            release_group(e, r);
            remove_running(e, i);
        }
    }
    for (int32_t i = 0; i < e->n_running; i++) e->last.idle_slots += e->reqs[e->running[i]].state == REQ_FINISHED;
    if (is_static && e->last.idle_slots == e->n_running && e->n_running > 0) {
        for (int32_t i = 0; i < e->n_running; i++) release_group(e, &e->reqs[e->running[i]]);
        e->n_running = 0;
        e->last.idle_slots = 0;
    }
    e->last.seqs = e->n_plan;
    e->last.running = e->n_running;
    e->last.waiting = (int32_t)e->waiting_len;
    e->tot.steps++;
    e->tot.prefill_tokens += e->last.prefill_tokens;
    e->tot.decode_tokens += e->last.decode_tokens;
    e->tot.idle_slot_steps += e->last.idle_slots;
    return nev;
}
