/* kvcache.c — the KV-cache manager: block accounting, block tables, copy-on-write and
 * contiguous runs over one pool of fixed-size blocks (see kvcache.h for the policies).
 *
 * ---- Design notes -------------------------------------------------------------------
 *
 * The pool has n_blocks blocks of block_size tokens. Every block id b in [0, n_blocks)
 * has a reference count ref[b]; a sequence owns a block table (logical block i ->
 * physical block) and a filled length len. A sequence's token count in its logical
 * block i is clamp(len − i·bs, 0, bs). ibex_kv_check verifies, after any call:
 *
 *   (1) ref[b] equals the number of live sequence tables that contain b, and no table
 *       contains a block twice.
 *   (2) The free stack holds exactly the blocks with ref 0, each once, and free_pos
 *       is its inverse (free_pos[b] is b's slot in the stack, −1 for a used block).
 *       So free blocks + used blocks partition the pool: blocks_used = n_blocks − n_free.
 *   (3) No table holds a free block (follows from (1) and (2), checked anyway).
 *   (4) Contiguous policy: every table is one run b, b+1, ..., and ref[b] <= 1 (no
 *       sharing); a sequence whose run is reserved never changes its table again.
 *   (5) Every sequence has len <= capacity = table length · block_size.
 *   (6) The counters match a recount from scratch: fill[b] = max over the sequences
 *       holding b of their tokens in b (0 for a free block); used_tokens = Σ fill;
 *       table_entries = Σ table lengths; seqs_holding = sequences with a non-empty table.
 *       Every byte figure in ibex_kv_stats derives from these exactly:
 *         bytes_reserved     = (n_blocks − n_free) · block_bytes
 *         bytes_used         = used_tokens · kv bytes per token
 *         bytes_shared_saved = (table_entries − blocks_used) · block_bytes
 *                            = Σ_b max(ref[b] − 1, 0) · block_bytes
 *
 * A block's life (paged; contiguous and none never leave ref <= 1):
 *
 *                 reserve / CoW target / contiguous run
 *        +------+ ---------------------------------> +-------------+
 *        | free |                                     | owned ref 1 |
 *        | ref 0| <--------------------------------- +-------------+
 *        +------+   free (last holder) / CoW away        |      ^
 *                   from a block whose other       fork  |      | free / CoW away
 *                   holder already left             (+1) v      | (down to one holder)
 *                                                   +--------------+
 *                                                   | shared ref>1 | --+ fork (+1),
 *                                                   +--------------+ <-+ free/CoW (−1)
 *
 * A shared block is never written: prepare_write moves the writer onto a private copy
 * first, so the tokens in a shared block are frozen, and fill[b] only falls when the
 * holder with the most tokens leaves. That is the one case that needs a rescan of
 * the tables (refill); growth and the last holder leaving are O(1) per block.
 *
 * Free list order: a stack. It starts with block 0 on top, so a fresh pool hands out
 * 0, 1, 2, ...; a freed sequence's blocks go back so that its first block is on top.
 * Contiguous admission ignores the order: first fit by scanning ref[] from block 0,
 * then removes the run's blocks from the stack through free_pos (O(1) each).
 * ------------------------------------------------------------------------------------ */
#include "engine/kvcache.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include "engine/alloc.h"

typedef struct kv_seq {
    int32_t *table; /* (cap) logical block -> physical block id */
    int32_t n_table, cap;
    int32_t len;  /* filled tokens */
    bool live;    /* the handle is in use */
    bool run;     /* contiguous: the one run is reserved; capacity is final */
} kv_seq;

struct ibex_kv {
    ibex_kv_config cfg;
    ibex_model_config mc;
    int64_t token_bytes; /* kv bytes per token at cfg.elem_bytes */
    int64_t block_bytes; /* block_size · token_bytes */
    int32_t bs;
    int32_t n_blocks;
    ibex_kv_pool *pool; /* NULL with no_compute */

    int32_t *ref;      /* (n_blocks) reference counts */
    int32_t *fill;     /* (n_blocks) max tokens any holder has in the block */
    int32_t *free_ids; /* (n_blocks) stack of free blocks; top = free_ids[n_free − 1] */
    int32_t *free_pos; /* (n_blocks) slot of b in free_ids, −1 if used */
    int32_t n_free;
    int32_t *mark;  /* (n_blocks) refill scratch: −1, or the recounted fill */
    int32_t *dirty; /* (n_blocks) blocks waiting for a refill */

    kv_seq *seqs; /* (cap_seqs) handle slots */
    int32_t n_seqs, cap_seqs;

    int64_t used_tokens;   /* Σ fill */
    int64_t table_entries; /* Σ n_table over live sequences */
    int32_t seqs_holding;  /* live sequences with n_table > 0 */
    int64_t peak_reserved, peak_used;
    int32_t max_seqs;
    int64_t cow_copies, fork_copies;
};

/* ---- policy names ---- */

static const char *const policy_names[] = {"none", "contiguous", "paged"};

const char *ibex_kv_policy_name(ibex_kv_policy p) {
    if ((int)p < 0 || (int)p >= 3) return "unknown";
    return policy_names[p];
}

bool ibex_kv_policy_from_name(const char *s, ibex_kv_policy *out) {
    if (!s) return false;
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, policy_names[i]) == 0) {
            if (out) *out = (ibex_kv_policy)i;
            return true;
        }
    }
    return false;
}

/* ---- small helpers ---- */

static int64_t div_up(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Tokens a sequence of len tokens has in its logical block i. */
static int32_t tokens_in(int32_t len, int32_t i, int32_t bs) {
    int64_t t = (int64_t)len - (int64_t)i * bs;
    return t <= 0 ? 0 : (t >= bs ? bs : (int32_t)t);
}

static kv_seq *seq_get(const ibex_kv *kv, int32_t seq) {
    if (!kv || seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].live) return NULL;
    return &kv->seqs[seq];
}

/* Makes s->table hold at least n entries. On failure nothing changes. */
static bool table_grow(kv_seq *s, int32_t n) {
    if (n <= s->cap) return true;
    int32_t cap = s->cap ? s->cap : 8;
    while (cap < n) cap = cap > INT32_MAX / 2 ? n : cap * 2;
    int32_t *t = ibex_alloc(IBEX_MEM_OTHER, (size_t)cap * sizeof *t, 0);
    if (!t) return false;
    if (s->n_table) memcpy(t, s->table, (size_t)s->n_table * sizeof *t);
    ibex_free(s->table);
    s->table = t;
    s->cap = cap;
    return true;
}

static int32_t free_pop(ibex_kv *kv) {
    int32_t b = kv->free_ids[--kv->n_free];
    kv->free_pos[b] = -1;
    return b;
}

/* Removes a given free block b from the stack (swap with the top). */
static void free_take(ibex_kv *kv, int32_t b) {
    int32_t p = kv->free_pos[b];
    int32_t last = kv->free_ids[--kv->n_free];
    kv->free_ids[p] = last;
    kv->free_pos[last] = p;
    kv->free_pos[b] = -1;
}

static void free_push(ibex_kv *kv, int32_t b) {
    kv->free_pos[b] = kv->n_free;
    kv->free_ids[kv->n_free++] = b;
}

static void note_peaks(ibex_kv *kv) {
    int64_t reserved = (int64_t)(kv->n_blocks - kv->n_free) * kv->block_bytes;
    int64_t used = kv->used_tokens * kv->token_bytes;
    if (reserved > kv->peak_reserved) kv->peak_reserved = reserved;
    if (used > kv->peak_used) kv->peak_used = used;
    if (kv->seqs_holding > kv->max_seqs) kv->max_seqs = kv->seqs_holding;
}

/* A block leaves a holder that had `had` tokens in it; the holder's table no longer
 * lists it. Frees the block at ref 0; queues a refill if the holder may have set fill. */
static void block_drop(ibex_kv *kv, int32_t b, int32_t had, int32_t *n_dirty) {
    if (--kv->ref[b] == 0) {
        kv->used_tokens -= kv->fill[b];
        kv->fill[b] = 0;
        free_push(kv, b);
    } else if (had > 0 && had == kv->fill[b] && kv->mark[b] < 0) {
        kv->mark[b] = 0;
        kv->dirty[(*n_dirty)++] = b;
    }
}

/* Recomputes fill for the queued blocks with one pass over every live table:
 * O(Σ table lengths + n_dirty). */
static void refill(ibex_kv *kv, int32_t n_dirty) {
    if (n_dirty == 0) return;
    for (int32_t s = 0; s < kv->n_seqs; s++) {
        const kv_seq *q = &kv->seqs[s];
        if (!q->live) continue;
        for (int32_t i = 0; i < q->n_table; i++) {
            int32_t b = q->table[i];
            if (kv->mark[b] < 0) continue;
            int32_t t = tokens_in(q->len, i, kv->bs);
            if (t > kv->mark[b]) kv->mark[b] = t;
        }
    }
    for (int32_t k = 0; k < n_dirty; k++) {
        int32_t b = kv->dirty[k];
        kv->used_tokens += kv->mark[b] - kv->fill[b];
        kv->fill[b] = kv->mark[b];
        kv->mark[b] = -1;
    }
}

/* Copies block src to block dst in every layer's K and V. */
static void block_copy(ibex_kv *kv, int32_t dst, int32_t src) {
    if (kv->pool) ibex_kv_pool_copy_block(kv->pool, dst, src);
}

/* First fit: the lowest b such that blocks b .. b+k−1 are all free, or −1. O(n_blocks). */
static int32_t find_run(const ibex_kv *kv, int32_t k) {
    int32_t start = 0, have = 0;
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        if (kv->ref[b] != 0) {
            have = 0;
            start = b + 1;
            continue;
        }
        if (++have == k) return start;
    }
    return -1;
}

/* ---- lifetime ---- */

void ibex_kv_free(ibex_kv *kv) {
    if (!kv) return;
    for (int32_t s = 0; s < kv->n_seqs; s++) ibex_free(kv->seqs[s].table);
    ibex_free(kv->seqs);
    ibex_free(kv->ref);
    ibex_free(kv->fill);
    ibex_free(kv->free_ids);
    ibex_free(kv->free_pos);
    ibex_free(kv->mark);
    ibex_free(kv->dirty);
    if (kv->cfg.spare && !*kv->cfg.spare)
        *kv->cfg.spare = kv->pool; /* parked for the next ibex_kv_new of the same shape */
    else
        ibex_kv_pool_free(kv->pool);
    ibex_free(kv);
}

ibex_type ibex_kv_config_type(const ibex_kv_config *cfg) {
    return cfg->dtype == IBEX_TYPE_F32 && cfg->elem_bytes == 2 ? IBEX_TYPE_F16 : cfg->dtype;
}

bool ibex_kv_config_set_type(ibex_kv_config *cfg, ibex_type t) {
    if (t != IBEX_TYPE_F32 && t != IBEX_TYPE_F16 && t != IBEX_TYPE_BF16) return false;
    cfg->dtype = t;
    cfg->elem_bytes = t == IBEX_TYPE_F32 ? 4 : 2;
    return true;
}

ibex_kv *ibex_kv_new(const ibex_model_config *c, const ibex_kv_config *cfg, ibex_err *err) {
    if (!c || !cfg) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV cache: no model config or KV config given");
        return NULL;
    }
    if ((int)cfg->policy < 0 || (int)cfg->policy > IBEX_KV_PAGED) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV cache: unknown policy %d", (int)cfg->policy);
        return NULL;
    }
    if (cfg->block_size < 1 || cfg->block_size > 256) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV block size %d is outside 1..256 tokens", (int)cfg->block_size);
        return NULL;
    }
    if (cfg->elem_bytes != 2 && cfg->elem_bytes != 4) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV element size %d bytes is neither 2 (F16) nor 4 (F32)",
                     (int)cfg->elem_bytes);
        return NULL;
    }
    const ibex_type dtype = ibex_kv_config_type(cfg);
    if ((dtype != IBEX_TYPE_F32 && dtype != IBEX_TYPE_F16 && dtype != IBEX_TYPE_BF16) ||
        (dtype == IBEX_TYPE_F32) != (cfg->elem_bytes == 4)) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV element type %s and element size %d bytes disagree",
                     ibex_type_name(dtype), (int)cfg->elem_bytes);
        return NULL;
    }
    if (c->n_layers < 1 || c->n_kv_heads < 1 || c->head_dim < 1) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV cache: model shape %d layers x %d KV heads x %d head dim is empty",
                     (int)c->n_layers, (int)c->n_kv_heads, (int)c->head_dim);
        return NULL;
    }
    int64_t token_bytes = ibex_model_kv_bytes_per_token(c, cfg->elem_bytes);
    int64_t block_bytes = (int64_t)cfg->block_size * token_bytes;
    int64_t n_blocks = cfg->budget_bytes > 0 ? cfg->budget_bytes / block_bytes : 0;
    if (n_blocks < 1) {
        ibex_err_set(err, IBEX_ERR_INVALID,
                     "KV budget of %lld bytes is smaller than one block of %lld bytes (%d tokens of %lld bytes)",
                     (long long)cfg->budget_bytes, (long long)block_bytes, (int)cfg->block_size,
                     (long long)token_bytes);
        return NULL;
    }
    if (n_blocks > INT32_MAX / 2) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV budget of %lld bytes gives %lld blocks of %lld bytes, more than %d",
                     (long long)cfg->budget_bytes, (long long)n_blocks, (long long)block_bytes, INT32_MAX / 2);
        return NULL;
    }

    ibex_kv *kv = ibex_alloc(IBEX_MEM_OTHER, sizeof *kv, 1);
    if (!kv) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for the KV cache manager");
        return NULL;
    }
    kv->cfg = *cfg;
    kv->mc = *c;
    kv->token_bytes = token_bytes;
    kv->block_bytes = block_bytes;
    kv->bs = cfg->block_size;
    kv->n_blocks = (int32_t)n_blocks;
    size_t nb = (size_t)n_blocks * sizeof(int32_t);
    kv->ref = ibex_alloc(IBEX_MEM_OTHER, nb, 1);
    kv->fill = ibex_alloc(IBEX_MEM_OTHER, nb, 1);
    kv->free_ids = ibex_alloc(IBEX_MEM_OTHER, nb, 0);
    kv->free_pos = ibex_alloc(IBEX_MEM_OTHER, nb, 0);
    kv->mark = ibex_alloc(IBEX_MEM_OTHER, nb, 0);
    kv->dirty = ibex_alloc(IBEX_MEM_OTHER, nb, 0);
    if (!kv->ref || !kv->fill || !kv->free_ids || !kv->free_pos || !kv->mark || !kv->dirty) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory for the KV block tables of %lld blocks", (long long)n_blocks);
        ibex_kv_free(kv);
        return NULL;
    }
    for (int32_t i = 0; i < kv->n_blocks; i++) {
        kv->free_ids[i] = kv->n_blocks - 1 - i; /* block 0 on top */
        kv->free_pos[kv->n_blocks - 1 - i] = i;
        kv->mark[i] = -1;
    }
    kv->n_free = kv->n_blocks;
    if (!cfg->no_compute) {
        if (cfg->spare && ibex_kv_pool_fits(*cfg->spare, c, kv->n_blocks, kv->bs, dtype, cfg->be)) {
            kv->pool = *cfg->spare; /* stale contents are never read: see kv.h */
            *cfg->spare = NULL;
        } else {
            kv->pool = ibex_kv_pool_new_typed(c, kv->n_blocks, kv->bs, dtype, cfg->be, err);
        }
        if (!kv->pool) {
            ibex_err_prefix(err, "KV cache (%s, %lld blocks of %d tokens)", ibex_kv_policy_name(cfg->policy),
                            (long long)n_blocks, (int)cfg->block_size);
            ibex_kv_free(kv);
            return NULL;
        }
    }
    return kv;
}

const ibex_kv_config *ibex_kv_config_of(const ibex_kv *kv) { return kv ? &kv->cfg : NULL; }

ibex_kv_pool *ibex_kv_pool_of(ibex_kv *kv) { return kv ? kv->pool : NULL; }

/* ---- sequences ---- */

int32_t ibex_kv_seq_new(ibex_kv *kv) {
    if (!kv) return -1;
    for (int32_t s = 0; s < kv->n_seqs; s++) {
        if (!kv->seqs[s].live) {
            kv->seqs[s].live = true;
            return s;
        }
    }
    if (kv->n_seqs == kv->cap_seqs) {
        if (kv->cap_seqs > INT32_MAX / 2) return -1;
        int32_t cap = kv->cap_seqs ? kv->cap_seqs * 2 : 16;
        kv_seq *q = ibex_alloc(IBEX_MEM_OTHER, (size_t)cap * sizeof *q, 1);
        if (!q) return -1;
        if (kv->n_seqs) memcpy(q, kv->seqs, (size_t)kv->n_seqs * sizeof *q);
        ibex_free(kv->seqs);
        kv->seqs = q;
        kv->cap_seqs = cap;
    }
    int32_t s = kv->n_seqs++;
    kv->seqs[s] = (kv_seq){.live = true};
    return s;
}

bool ibex_kv_seq_reserve(ibex_kv *kv, int32_t seq, int32_t n_tokens, int32_t reserve_tokens) {
    kv_seq *s = seq_get(kv, seq);
    if (!s || n_tokens < 0) return false;
    int32_t bs = kv->bs;

    if (kv->cfg.policy == IBEX_KV_CONTIGUOUS) {
        if (s->run) return n_tokens <= s->n_table * bs;
        int64_t want = n_tokens > reserve_tokens ? n_tokens : reserve_tokens;
        int64_t k = div_up(want, bs);
        if (k == 0) return true; /* nothing to reserve yet; the first real call makes the run */
        if (k > kv->n_free) return false;
        int32_t b0 = find_run(kv, (int32_t)k);
        if (b0 < 0 || !table_grow(s, (int32_t)k)) return false;
        for (int32_t i = 0; i < k; i++) {
            free_take(kv, b0 + i);
            kv->ref[b0 + i] = 1;
            s->table[i] = b0 + i;
        }
        s->n_table = (int32_t)k;
        s->run = true;
        kv->table_entries += k;
        kv->seqs_holding++;
        note_peaks(kv);
        return true;
    }

    int64_t need = div_up(n_tokens, bs) - s->n_table;
    if (need <= 0) return true;
    if (need > kv->n_free || !table_grow(s, s->n_table + (int32_t)need)) return false;
    if (s->n_table == 0) kv->seqs_holding++;
    for (int32_t i = 0; i < need; i++) {
        int32_t b = free_pop(kv);
        kv->ref[b] = 1;
        s->table[s->n_table++] = b;
    }
    kv->table_entries += need;
    note_peaks(kv);
    return true;
}

bool ibex_kv_seq_prepare_write(ibex_kv *kv, int32_t seq, int32_t pos, int32_t n) {
    kv_seq *s = seq_get(kv, seq);
    if (!s || pos < 0 || n < 0 || (int64_t)pos + n > (int64_t)s->n_table * kv->bs) return false;
    int32_t bs = kv->bs;

    if (n > 0) {
        int32_t i0 = pos / bs, i1 = (pos + n - 1) / bs;
        int32_t shared = 0;
        for (int32_t i = i0; i <= i1; i++) shared += kv->ref[s->table[i]] > 1;
        if (shared > kv->n_free) return false;
        int32_t n_dirty = 0;
        for (int32_t i = i0; i <= i1 && shared > 0; i++) {
            int32_t old = s->table[i];
            if (kv->ref[old] <= 1) continue;
            int32_t b = free_pop(kv);
            block_copy(kv, b, old);
            kv->ref[b] = 1;
            s->table[i] = b;
            int32_t t = tokens_in(s->len, i, bs);
            kv->fill[b] = t;
            kv->used_tokens += t;
            block_drop(kv, old, t, &n_dirty);
            kv->cow_copies++;
            shared--;
        }
        refill(kv, n_dirty);
    }

    int32_t end = pos + n;
    if (end > s->len) {
        /* Only the blocks between the old and new length gain tokens. */
        int32_t i0 = s->len / bs, i1 = (end - 1) / bs;
        for (int32_t i = i0; i <= i1; i++) {
            int32_t b = s->table[i];
            int32_t t = tokens_in(end, i, bs);
            if (t > kv->fill[b]) {
                kv->used_tokens += t - kv->fill[b];
                kv->fill[b] = t;
            }
        }
        s->len = end;
    }
    note_peaks(kv);
    return true;
}

int32_t ibex_kv_seq_fork(ibex_kv *kv, int32_t src, int32_t n_tokens) {
    kv_seq *s = seq_get(kv, src);
    if (!s || n_tokens < 0 || n_tokens > s->len || kv->cfg.policy == IBEX_KV_NONE) return -1;
    int32_t bs = kv->bs;
    int32_t k = (int32_t)div_up(n_tokens, bs); /* blocks holding the shared tokens */

    if (kv->cfg.policy == IBEX_KV_PAGED) {
        int32_t d = ibex_kv_seq_new(kv);
        if (d < 0) return -1;
        kv_seq *q = &kv->seqs[d];
        s = &kv->seqs[src]; /* seq_new may have moved the array */
        if (!table_grow(q, k)) {
            q->live = false;
            return -1;
        }
        for (int32_t i = 0; i < k; i++) {
            q->table[i] = s->table[i];
            kv->ref[s->table[i]]++;
        }
        /* The fork's tokens in each block are <= src's, so no fill changes. */
        q->n_table = k;
        q->len = n_tokens;
        kv->table_entries += k;
        if (k > 0) kv->seqs_holding++;
        note_peaks(kv);
        return d;
    }

    /* contiguous: a private run as large as src's, filled blocks copied */
    int32_t run = s->n_table;
    int32_t b0 = 0;
    if (run > 0) {
        if (run > kv->n_free || (b0 = find_run(kv, run)) < 0) return -1;
    }
    int32_t d = ibex_kv_seq_new(kv);
    if (d < 0) return -1;
    kv_seq *q = &kv->seqs[d];
    s = &kv->seqs[src];
    if (!table_grow(q, run)) {
        q->live = false;
        return -1;
    }
    for (int32_t i = 0; i < run; i++) {
        int32_t b = b0 + i;
        free_take(kv, b);
        kv->ref[b] = 1;
        q->table[i] = b;
        if (i < k) {
            block_copy(kv, b, s->table[i]);
            int32_t t = tokens_in(n_tokens, i, bs);
            kv->fill[b] = t;
            kv->used_tokens += t;
        }
    }
    q->n_table = run;
    q->len = n_tokens;
    q->run = s->run;
    kv->fork_copies += k;
    kv->table_entries += run;
    if (run > 0) kv->seqs_holding++;
    note_peaks(kv);
    return d;
}

void ibex_kv_seq_free(ibex_kv *kv, int32_t seq) {
    kv_seq *s = seq_get(kv, seq);
    if (!s) return;
    int32_t n = s->n_table, len = s->len;
    /* Off the books first, so a refill no longer sees this table. */
    s->live = false;
    s->n_table = 0;
    s->len = 0;
    s->run = false;
    if (n > 0) kv->seqs_holding--;
    kv->table_entries -= n;
    int32_t n_dirty = 0;
    for (int32_t i = n - 1; i >= 0; i--) /* last block pushed first: table[0] ends on top */
        block_drop(kv, s->table[i], tokens_in(len, i, kv->bs), &n_dirty);
    refill(kv, n_dirty);
    note_peaks(kv);
}

const int32_t *ibex_kv_seq_table(const ibex_kv *kv, int32_t seq, int32_t *n_blocks) {
    const kv_seq *s = seq_get(kv, seq);
    if (n_blocks) *n_blocks = s ? s->n_table : 0;
    return s ? s->table : NULL;
}

int32_t ibex_kv_seq_len(const ibex_kv *kv, int32_t seq) {
    const kv_seq *s = seq_get(kv, seq);
    return s ? s->len : -1;
}

int32_t ibex_kv_seq_capacity(const ibex_kv *kv, int32_t seq) {
    const kv_seq *s = seq_get(kv, seq);
    return s ? s->n_table * kv->bs : -1;
}

int32_t ibex_kv_blocks_needed(const ibex_kv *kv, int32_t seq, int32_t n_tokens) {
    if (!kv || n_tokens < 0) return 0;
    int32_t have = 0;
    if (seq >= 0) {
        const kv_seq *s = seq_get(kv, seq);
        if (s) have = s->n_table;
    }
    int64_t need = div_up(n_tokens, kv->bs) - have;
    return need > 0 ? (int32_t)need : 0;
}

int32_t ibex_kv_free_blocks(const ibex_kv *kv) { return kv ? kv->n_free : 0; }

/* ---- statistics ---- */

void ibex_kv_stats_get(const ibex_kv *kv, ibex_kv_stats *out) {
    memset(out, 0, sizeof *out);
    if (!kv) return;
    int32_t used = kv->n_blocks - kv->n_free;
    out->block_bytes = kv->block_bytes;
    out->n_blocks = kv->n_blocks;
    out->blocks_used = used;
    out->bytes_pool = (int64_t)kv->n_blocks * kv->block_bytes;
    out->bytes_reserved = (int64_t)used * kv->block_bytes;
    out->bytes_used = kv->used_tokens * kv->token_bytes;
    out->bytes_fragmented = out->bytes_reserved - out->bytes_used;
    out->peak_reserved = kv->peak_reserved;
    out->peak_used = kv->peak_used;
    out->seqs = kv->seqs_holding;
    out->max_seqs = kv->max_seqs;
    out->cow_copies = kv->cow_copies;
    out->fork_copies = kv->fork_copies;
    out->bytes_shared_saved = (kv->table_entries - used) * kv->block_bytes;
    int32_t best = 0, cur = 0;
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        cur = kv->ref[b] == 0 ? cur + 1 : 0;
        if (cur > best) best = cur;
    }
    out->largest_free_run = best;
}

void ibex_kv_reset_peaks(ibex_kv *kv) {
    if (!kv) return;
    kv->peak_reserved = (int64_t)(kv->n_blocks - kv->n_free) * kv->block_bytes;
    kv->peak_used = kv->used_tokens * kv->token_bytes;
    kv->max_seqs = kv->seqs_holding;
}

/* ---- invariants ---- */

bool ibex_kv_check(const ibex_kv *kv, ibex_err *err) {
    if (!kv) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV check: no manager");
        return false;
    }
    int32_t nb = kv->n_blocks, bs = kv->bs;
    /* Recount into scratch arrays, allocated here so the check changes nothing. */
    int32_t *cnt = ibex_alloc(IBEX_MEM_OTHER, (size_t)nb * sizeof *cnt, 1);
    int32_t *fil = ibex_alloc(IBEX_MEM_OTHER, (size_t)nb * sizeof *fil, 1);
    int32_t *last = ibex_alloc(IBEX_MEM_OTHER, (size_t)nb * sizeof *last, 0);
    bool ok = false;
    if (!cnt || !fil || !last) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "KV check: out of memory");
        goto done;
    }
    for (int32_t b = 0; b < nb; b++) last[b] = -1;

    int64_t entries = 0;
    int32_t holding = 0;
    for (int32_t si = 0; si < kv->n_seqs; si++) {
        const kv_seq *s = &kv->seqs[si];
        if (!s->live) {
            if (s->n_table != 0 || s->len != 0) {
                ibex_err_set(err, IBEX_ERR_INVALID, "KV check: freed handle %d still has %d blocks, %d tokens", si,
                             s->n_table, s->len);
                goto done;
            }
            continue;
        }
        if (s->len < 0 || (int64_t)s->len > (int64_t)s->n_table * bs) { /* (5) */
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (5): seq %d holds %d tokens but has capacity %lld", si,
                         s->len, (long long)s->n_table * bs);
            goto done;
        }
        entries += s->n_table;
        holding += s->n_table > 0;
        for (int32_t i = 0; i < s->n_table; i++) {
            int32_t b = s->table[i];
            if (b < 0 || b >= nb) {
                ibex_err_set(err, IBEX_ERR_INVALID, "KV check: seq %d block %d is %d, outside the pool of %d", si, i,
                             b, nb);
                goto done;
            }
            if (last[b] == si) { /* (1) */
                ibex_err_set(err, IBEX_ERR_INVALID, "KV check (1): seq %d holds block %d twice", si, b);
                goto done;
            }
            last[b] = si;
            cnt[b]++;
            int32_t t = tokens_in(s->len, i, bs);
            if (t > fil[b]) fil[b] = t;
            if (kv->cfg.policy == IBEX_KV_CONTIGUOUS && i > 0 && b != s->table[i - 1] + 1) { /* (4) */
                ibex_err_set(err, IBEX_ERR_INVALID, "KV check (4): seq %d is not one run (block %d is %d after %d)",
                             si, i, b, s->table[i - 1]);
                goto done;
            }
        }
        if (kv->cfg.policy == IBEX_KV_CONTIGUOUS && s->n_table > 0 && !s->run) { /* (4) */
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (4): seq %d holds %d blocks without a reserved run", si,
                         s->n_table);
            goto done;
        }
    }
    for (int32_t b = 0; b < nb; b++) {
        if (kv->ref[b] != cnt[b]) { /* (1) */
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (1): block %d has reference count %d but %d tables hold it",
                         b, kv->ref[b], cnt[b]);
            goto done;
        }
        if (kv->cfg.policy != IBEX_KV_PAGED && cnt[b] > 1) { /* (4) */
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (4): block %d is shared by %d tables under policy %s", b,
                         cnt[b], ibex_kv_policy_name(kv->cfg.policy));
            goto done;
        }
        if (kv->fill[b] != fil[b]) { /* (6) */
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (6): block %d counted %d filled tokens, recount gives %d", b,
                         kv->fill[b], fil[b]);
            goto done;
        }
        if (kv->mark[b] != -1) {
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check: block %d left marked for refill", b);
            goto done;
        }
    }
    /* (2), (3): the free stack is exactly the blocks with no holder, each once. */
    if (kv->n_free < 0 || kv->n_free > nb) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV check (2): %d free blocks in a pool of %d", kv->n_free, nb);
        goto done;
    }
    int32_t zero = 0;
    for (int32_t b = 0; b < nb; b++) zero += cnt[b] == 0;
    if (zero != kv->n_free) {
        ibex_err_set(err, IBEX_ERR_INVALID, "KV check (2): %d blocks have no holder but the free list has %d", zero,
                     kv->n_free);
        goto done;
    }
    for (int32_t p = 0; p < kv->n_free; p++) {
        int32_t b = kv->free_ids[p];
        if (b < 0 || b >= nb || kv->free_pos[b] != p) {
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (2): free list slot %d holds %d, not indexed back", p, b);
            goto done;
        }
        if (cnt[b] != 0) { /* (3) */
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (3): free block %d is held by %d tables", b, cnt[b]);
            goto done;
        }
    }
    for (int32_t b = 0; b < nb; b++) {
        if (cnt[b] > 0 && kv->free_pos[b] != -1) {
            ibex_err_set(err, IBEX_ERR_INVALID, "KV check (2): used block %d is indexed at free slot %d", b,
                         kv->free_pos[b]);
            goto done;
        }
    }
    /* (6): counters against the recount. */
    int64_t used_tokens = 0;
    for (int32_t b = 0; b < nb; b++) used_tokens += fil[b];
    if (used_tokens != kv->used_tokens || entries != kv->table_entries || holding != kv->seqs_holding) {
        ibex_err_set(err, IBEX_ERR_INVALID,
                     "KV check (6): counters say %lld tokens, %lld table entries, %d sequences; recount gives "
                     "%lld, %lld, %d",
                     (long long)kv->used_tokens, (long long)kv->table_entries, kv->seqs_holding,
                     (long long)used_tokens, (long long)entries, holding);
        goto done;
    }
    int64_t reserved = (int64_t)(nb - kv->n_free) * kv->block_bytes, used = used_tokens * kv->token_bytes;
    if (used > reserved || kv->peak_reserved < reserved || kv->peak_used < used || kv->max_seqs < holding) {
        ibex_err_set(err, IBEX_ERR_INVALID,
                     "KV check (6): %lld bytes used of %lld reserved, peaks %lld / %lld, max seqs %d of %d",
                     (long long)used, (long long)reserved, (long long)kv->peak_used, (long long)kv->peak_reserved,
                     kv->max_seqs, holding);
        goto done;
    }
    ok = true;
done:
    ibex_free(cnt);
    ibex_free(fil);
    ibex_free(last);
    return ok;
}
