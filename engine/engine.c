/* engine.c — the step API: request queue, static and continuous schedulers,
 * preemption by recompute, and the glue between the KV manager, the forward pass and
 * the sampler.
 *
 * Design notes
 *  1. A request's token list is its prompt followed by its outputs. n_done counts the
 *     tokens whose K/V are in the cache; the tokens still to process are
 *     [n_done, n_prompt + n_out). Prefill, decode and recompute after preemption are
 *     the same thing: process a chunk of the pending tokens; when a chunk reaches the
 *     end, the logits of its last token give the next output token.
 *  2. Running requests are kept in admission order. Preemption takes the most
 *     recently admitted unfinished one, frees all its blocks (all or nothing) and puts
 *     it at the front of the waiting queue with n_done = 0: when readmitted it
 *     recomputes prompt + outputs, and since the CPU kernels give bit-identical results
 *     for a token whether it is processed alone or in a batch, its greedy tokens are
 *     the ones it would have produced uninterrupted.
 *  3. Admission is FCFS: the head of the queue blocks the rest when it does not fit.
 *  4. Static: a batch is formed only when nothing is running; finished members keep
 *     their slot and their blocks until the whole batch is done (idle_slot_steps).
 *     Continuous: finished requests release their blocks at once; admission happens
 *     at every step.
 *  5. Policy none keeps no cache between steps: every step reserves blocks for the
 *     whole history, recomputes it, and releases them.
 *  6. Per step, decodes are scheduled before prefill chunks; max_step_tokens bounds
 *     the sum (chunked prefill). */
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>

#include "engine/alloc.h"
#include "engine/forward.h"
#include "engine/sampler.h"

typedef enum { REQ_WAITING, REQ_RUNNING, REQ_FINISHED } req_state;

typedef struct req {
    int32_t *toks; /* (n_prompt + max_new) prompt, then outputs */
    int32_t n_prompt, n_out, max_new;
    bool ignore_eos;
    req_state state;
    ibex_finish_reason reason;
    int32_t seq;      /* KV handle, −1 when holding none */
    int32_t n_done;   /* tokens in the cache */
    int64_t admitted; /* admission stamp (larger = newer) */
} req;

struct ibex_engine {
    const ibex_model *m;
    ibex_backend *be;
    ibex_engine_config cfg;
    ibex_kv *kv;
    ibex_forward *fwd;
    req *reqs; /* indexed by id */
    int64_t n_reqs, cap_reqs;
    int64_t *waiting; /* ids, FCFS; head at waiting_head */
    int64_t waiting_head, waiting_len, waiting_cap;
    int64_t *running; /* ids in admission order */
    int32_t n_running;
    int64_t admit_stamp;
    ibex_step_info last;
    ibex_engine_totals tot;
    /* per-step scratch, sized for max_batch */
    ibex_fwd_seq *batch;
    int64_t *batch_req;
    int32_t *chunk;
    float *logits;
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
    ibex_engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->m = m;
    e->be = be;
    e->cfg = *cfg;
    if (!(e->kv = ibex_kv_new(&m->cfg, &cfg->kv, err))) goto fail;
    int32_t B = cfg->max_batch;
    e->running = malloc((size_t)B * sizeof *e->running);
    e->batch = malloc((size_t)B * sizeof *e->batch);
    e->batch_req = malloc((size_t)B * sizeof *e->batch_req);
    e->chunk = malloc((size_t)B * sizeof *e->chunk);
    if (!e->running || !e->batch || !e->batch_req || !e->chunk) goto oom;
    if (cfg->compute) {
        int32_t cap = cfg->max_step_tokens > 0 ? cfg->max_step_tokens : 2048;
        if (!(e->fwd = ibex_forward_new(m, be, cap, err))) goto fail;
        e->logits = ibex_alloc(IBEX_MEM_ACTIVATIONS, (size_t)B * m->cfg.vocab_size * sizeof(float), 0);
        if (!e->logits) goto oom;
    }
    return e;
oom:
    ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory creating the engine");
fail:
    ibex_engine_free(e);
    return NULL;
}

void ibex_engine_free(ibex_engine *e) {
    if (!e) return;
    for (int64_t i = 0; i < e->n_reqs; i++) free(e->reqs[i].toks);
    free(e->reqs);
    free(e->waiting);
    free(e->running), free(e->batch), free(e->batch_req), free(e->chunk);
    ibex_free(e->logits);
    ibex_forward_free(e->fwd);
    ibex_kv_free(e->kv);
    free(e);
}

static int32_t reservation(const ibex_engine *e, const req *r) {
    return e->cfg.max_seq_len > 0 ? e->cfg.max_seq_len : r->n_prompt + r->max_new;
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
    req tmp = {.n_prompt = n_prompt, .max_new = p->max_new_tokens};
    int64_t worst = e->cfg.kv.policy == IBEX_KV_CONTIGUOUS && reservation(e, &tmp) > total ? reservation(e, &tmp) : total;
    ibex_kv_stats ks;
    ibex_kv_stats_get(e->kv, &ks);
    int64_t need_blocks = (worst + e->cfg.kv.block_size - 1) / e->cfg.kv.block_size;
    if (need_blocks > ks.n_blocks)
        return ibex_err_set(err, IBEX_ERR_NOMEM,
                            "request needs %lld KV blocks (%lld tokens) but the whole budget holds %d blocks of %d tokens",
                            (long long)need_blocks, (long long)worst, ks.n_blocks, e->cfg.kv.block_size),
               -1;
    /* The waiting queue can hold every request, so a preempted one always fits back. */
    if (e->n_reqs == e->cap_reqs) {
        int64_t cap = e->cap_reqs ? 2 * e->cap_reqs : 64;
        req *r = realloc(e->reqs, (size_t)cap * sizeof *r);
        if (!r) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory queueing a request"), -1;
        e->reqs = r, e->cap_reqs = cap;
        int64_t *w = realloc(e->waiting, (size_t)cap * sizeof *w);
        if (!w) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory queueing a request"), -1;
        e->waiting = w, e->waiting_cap = cap;
    }
    if (e->waiting_head + e->waiting_len == e->waiting_cap) { /* len < cap, so head > 0 */
        memmove(e->waiting, e->waiting + e->waiting_head, (size_t)e->waiting_len * sizeof *e->waiting);
        e->waiting_head = 0;
    }
    req *r = &e->reqs[e->n_reqs];
    *r = (req){.n_prompt = n_prompt, .max_new = p->max_new_tokens, .ignore_eos = p->ignore_eos, .seq = -1,
               .state = REQ_WAITING};
    if (!(r->toks = malloc((size_t)total * sizeof *r->toks)))
        return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory queueing a request"), -1;
    memcpy(r->toks, prompt, (size_t)n_prompt * sizeof *prompt);
    e->waiting[e->waiting_head + e->waiting_len++] = e->n_reqs;
    return e->n_reqs++;
}

bool ibex_engine_has_work(const ibex_engine *e) { return e->waiting_len > 0 || e->n_running > 0; }

const int32_t *ibex_engine_output(const ibex_engine *e, int64_t id, int32_t *n) {
    if (id < 0 || id >= e->n_reqs) return NULL;
    *n = e->reqs[id].n_out;
    return e->reqs[id].toks + e->reqs[id].n_prompt;
}

const ibex_step_info *ibex_engine_last_step(const ibex_engine *e) { return &e->last; }
const ibex_engine_totals *ibex_engine_totals_get(const ibex_engine *e) { return &e->tot; }
ibex_kv *ibex_engine_kv(ibex_engine *e) { return e->kv; }
struct ibex_forward *ibex_engine_forward(ibex_engine *e) { return e->fwd; }

static void release(ibex_engine *e, req *r) {
    if (r->seq >= 0) ibex_kv_seq_free(e->kv, r->seq);
    r->seq = -1;
    r->n_done = 0;
}

/* Reserves what a newly admitted request needs now; false (nothing held) if it does
 * not fit. Contiguous reserves its whole run; paged the blocks of its pending tokens;
 * none checks that its whole history would fit this step. */
static bool admit(ibex_engine *e, req *r) {
    int32_t total = r->n_prompt + r->n_out;
    if (e->cfg.kv.policy == IBEX_KV_NONE) return ibex_kv_blocks_needed(e->kv, -1, total) <= ibex_kv_free_blocks(e->kv);
    int32_t seq = ibex_kv_seq_new(e->kv);
    if (seq < 0) return false;
    if (!ibex_kv_seq_reserve(e->kv, seq, total, e->cfg.kv.policy == IBEX_KV_CONTIGUOUS ? reservation(e, r) : 0)) {
        ibex_kv_seq_free(e->kv, seq);
        return false;
    }
    r->seq = seq;
    return true;
}

static void remove_running(ibex_engine *e, int32_t i) {
    memmove(e->running + i, e->running + i + 1, (size_t)(e->n_running - i - 1) * sizeof *e->running);
    e->n_running--;
}

/* Preempts the newest unfinished running request (design note 2). Returns its id. */
static int64_t preempt_newest(ibex_engine *e) {
    for (int32_t i = e->n_running - 1; i >= 0; i--) {
        req *r = &e->reqs[e->running[i]];
        if (r->state != REQ_RUNNING) continue;
        int64_t id = e->running[i];
        e->tot.preemptions++;
        e->tot.recomputed_tokens += r->n_done;
        release(e, r);
        r->state = REQ_WAITING;
        remove_running(e, i);
        if (e->waiting_head > 0) {
            e->waiting[--e->waiting_head] = id;
        } else { /* waiting_len < waiting_cap: the queue holds every request */
            memmove(e->waiting + 1, e->waiting, (size_t)e->waiting_len * sizeof *e->waiting);
            e->waiting[0] = id;
        }
        e->waiting_len++;
        e->last.preempted++;
        return id;
    }
    return -1;
}

/* A deterministic stand-in token for accounting-only runs (never BOS/EOS/unk). */
static int32_t filler_token(const ibex_engine *e, int64_t id, int32_t index) {
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull ^ (uint64_t)index * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    int32_t v = e->m->cfg.vocab_size;
    return v > 3 ? 3 + (int32_t)(h % (uint64_t)(v - 3)) : 0;
}

int ibex_engine_step(ibex_engine *e, ibex_token_event *ev, int cap, ibex_err *err) {
    const bool is_static = e->cfg.sched == IBEX_SCHED_STATIC;
    const bool none = e->cfg.kv.policy == IBEX_KV_NONE;
    e->last = (ibex_step_info){.step = e->tot.steps};

    /* Static: the batch ends when every member has finished; then release them all. */
    if (is_static && e->n_running > 0) {
        bool all_done = true;
        for (int32_t i = 0; i < e->n_running; i++) all_done &= e->reqs[e->running[i]].state == REQ_FINISHED;
        if (all_done) {
            for (int32_t i = 0; i < e->n_running; i++) release(e, &e->reqs[e->running[i]]);
            e->n_running = 0;
        }
    }
    /* Admission (design notes 3, 4). */
    if (!is_static || e->n_running == 0) {
        while (e->waiting_len > 0 && e->n_running < e->cfg.max_batch) {
            int64_t id = e->waiting[e->waiting_head];
            req *r = &e->reqs[id];
            if (!admit(e, r)) break;
            e->waiting_head++, e->waiting_len--;
            if (e->waiting_len == 0) e->waiting_head = 0;
            r->state = REQ_RUNNING;
            r->admitted = e->admit_stamp++;
            e->running[e->n_running++] = id;
        }
    }
    if (e->n_running > e->tot.max_running) e->tot.max_running = e->n_running;

    /* Plan: decodes first, then prefill chunks, within the token budget; make room in
     * the cache for each, preempting the newest when blocks run out. */
    int32_t budget = e->cfg.max_step_tokens > 0 ? e->cfg.max_step_tokens : INT32_MAX;
    if (e->fwd && budget > ibex_forward_max_tokens(e->fwd)) budget = ibex_forward_max_tokens(e->fwd);
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < e->n_running; i++) {
            int64_t id = e->running[i];
            req *r = &e->reqs[id];
            if (r->state != REQ_RUNNING) continue;
            int32_t total = r->n_prompt + r->n_out;
            int32_t pending = total - r->n_done;
            if ((pass == 0) != (pending == 1)) continue;
            int32_t take = pending < budget ? pending : budget;
            if (take <= 0) continue;
            /* Make room; the victim is always the newest unfinished request, so it sits at
             * index >= i and running[0..i] is unchanged by the preemption. */
            bool ok = false;
            for (;;) {
                if (r->seq < 0 && (r->seq = ibex_kv_seq_new(e->kv)) < 0) break;
                if (ibex_kv_seq_reserve(e->kv, r->seq, r->n_done + take, 0) &&
                    ibex_kv_seq_prepare_write(e->kv, r->seq, r->n_done, take)) {
                    ok = true;
                    break;
                }
                int64_t victim = preempt_newest(e);
                for (int k = 0; k < n; k++) { /* drop it from this step's plan */
                    if (e->batch_req[k] != victim) continue;
                    budget += e->chunk[k];
                    memmove(e->batch_req + k, e->batch_req + k + 1, (size_t)(n - k - 1) * sizeof *e->batch_req);
                    memmove(e->chunk + k, e->chunk + k + 1, (size_t)(n - k - 1) * sizeof *e->chunk);
                    n--;
                    break;
                }
                if (victim == id || victim < 0) break;
            }
            if (!ok) continue;
            e->batch_req[n] = id;
            e->chunk[n] = take;
            n++;
            budget -= take;
        }
    }
    for (int k = 0; k < n; k++) {
        const req *r = &e->reqs[e->batch_req[k]];
        if (r->n_prompt + r->n_out - r->n_done == 1)
            e->last.decode_tokens++;
        else
            e->last.prefill_tokens += e->chunk[k];
    }

    /* Forward. */
    int nev = 0;
    if (n > 0 && e->cfg.compute) {
        int nl = 0;
        for (int k = 0; k < n; k++) {
            req *r = &e->reqs[e->batch_req[k]];
            int32_t nb;
            bool ends = r->n_done + e->chunk[k] == r->n_prompt + r->n_out;
            e->batch[k] = (ibex_fwd_seq){.tokens = r->toks + r->n_done, .n_tokens = e->chunk[k], .pos0 = r->n_done,
                                         .block_table = ibex_kv_seq_table(e->kv, r->seq, &nb),
                                         .logits = ends ? e->logits + (size_t)nl++ * e->m->cfg.vocab_size : NULL};
        }
        if (ibex_forward_run(e->fwd, ibex_kv_pool_of(e->kv), e->batch, n, err)) return -1;
    }
    /* Sample and emit. */
    int32_t eos = e->m->tok ? ibex_tokenizer_eos(e->m->tok) : -1;
    for (int k = 0; k < n; k++) {
        int64_t id = e->batch_req[k];
        req *r = &e->reqs[id];
        r->n_done += e->chunk[k];
        if (r->n_done < r->n_prompt + r->n_out) continue; /* mid-prefill */
        int32_t tok = e->cfg.compute ? ibex_sample_greedy(e->batch[k].logits, e->m->cfg.vocab_size)
                                     : filler_token(e, id, r->n_out);
        r->toks[r->n_prompt + r->n_out++] = tok;
        e->tot.output_tokens++;
        ibex_finish_reason why = IBEX_FINISH_NONE;
        if (r->n_out >= r->max_new)
            why = IBEX_FINISH_LENGTH;
        else if (tok == eos && !r->ignore_eos && e->cfg.compute)
            why = IBEX_FINISH_EOS;
        if (nev < cap)
            ev[nev++] = (ibex_token_event){.req = id, .token = tok, .index = r->n_out - 1, .step = e->tot.steps,
                                           .finished = why != IBEX_FINISH_NONE, .reason = why};
        if (why != IBEX_FINISH_NONE) {
            r->state = REQ_FINISHED;
            r->reason = why;
            e->tot.requests_finished++;
        }
    }
    /* Release: finished requests (continuous), every cache (none). */
    for (int32_t i = e->n_running - 1; i >= 0; i--) {
        req *r = &e->reqs[e->running[i]];
        if (none) release(e, r);
        if (r->state == REQ_FINISHED && !is_static) {
            release(e, r);
            remove_running(e, i);
        }
    }
    for (int32_t i = 0; i < e->n_running; i++) e->last.idle_slots += e->reqs[e->running[i]].state == REQ_FINISHED;
    if (is_static) {
        bool all_done = e->n_running > 0;
        for (int32_t i = 0; i < e->n_running; i++) all_done &= e->reqs[e->running[i]].state == REQ_FINISHED;
        if (all_done) { /* the batch is over: free at once so accounting returns to zero */
            for (int32_t i = 0; i < e->n_running; i++) release(e, &e->reqs[e->running[i]]);
            e->n_running = 0;
            e->last.idle_slots = 0;
        }
    }
    e->last.seqs = n;
    e->last.running = e->n_running;
    e->last.waiting = (int32_t)e->waiting_len;
    e->tot.steps++;
    e->tot.prefill_tokens += e->last.prefill_tokens;
    e->tot.decode_tokens += e->last.decode_tokens;
    e->tot.idle_slot_steps += e->last.idle_slots;
    return nev;
}
