/* cupti.c — CUPTI activity tracing: hands CUPTI record buffers, parses the completed
 * ones into ibex_gpu_event lists with interned names and origin-relative times,
 * attributes kernels to engine ops through external correlation, and aggregates the
 * per-kernel, per-op, memcpy, allocation and NVTX-range tables of results.json.
 *
 * Design notes
 *
 * States (one tracer):
 *
 *     idle --start--> started --stop--> stopped --start--> started ...
 *       ^  (start fails: state unchanged, nothing enabled)
 *     clear: any state, drops collected data only.  free: stops first if started.
 *
 * Invariants:
 *  1. At most one tracer is started per process: g_active is that tracer or NULL, and
 *     only start (claiming) and stop (releasing) change it, under g_mu. CUPTI's buffer
 *     callbacks have no user pointer; g_active is how they find the tracer.
 *  2. Lock order is g_mu then c->mu. No CUPTI function is called with either held,
 *     because cuptiActivityFlushAll waits for the completion callback, which may run on
 *     CUPTI's worker thread and take both.
 *  3. Every field under "guarded by mu" changes only with c->mu held; the completion
 *     callback and the caller's thread both reach them.
 *  4. Every event name and domain points into c's string pool (never into a CUPTI
 *     buffer or a caller's string), so buffers are freed right after parsing.
 *  5. An event with op == -1 whose correlation id has no mapping yet is in pending[];
 *     after every consume each pending event is looked up again (the external
 *     correlation record may come in a later buffer than its kernel).
 *  6. A marker event with IBEX_GPU_OPEN has its id in open_marks (value: its index);
 *     an end record whose start has not come yet waits in early_ends (value: end ns).
 *  7. origin is taken once, by the first successful start (or set_origin); every event
 *     time is record time minus origin.
 *  8. Buffers given to CUPTI are IBEX_CUPTI_BUF bytes aligned to IBEX_CUPTI_ALIGN and
 *     freed by the completion callback, whether or not a tracer is started then. */
#ifdef IBEX_HAVE_CUPTI
#define IBEX_CUPTI_RECORD_TYPES /* the record structs, from cupti.h */
#endif
#include "harness/cupti.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef IBEX_HAVE_CUPTI

static const char no_cupti[] = "this ibex was built without CUPTI";

ibex_cupti *ibex_cupti_new(ibex_err *err) {
    ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
    return NULL;
}
void ibex_cupti_free(ibex_cupti *c) { (void)c; }
ibex_status ibex_cupti_start(ibex_cupti *c, ibex_err *err) {
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
ibex_status ibex_cupti_flush(ibex_cupti *c, ibex_err *err) {
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
ibex_status ibex_cupti_stop(ibex_cupti *c, ibex_err *err) {
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
bool ibex_cupti_attributes_ops(const ibex_cupti *c) { return false; }
void ibex_cupti_clear(ibex_cupti *c) { (void)c; }
void ibex_cupti_push_op(ibex_cupti *c, int32_t op) { (void)c, (void)op; }
void ibex_cupti_pop_op(ibex_cupti *c) { (void)c; }
const ibex_gpu_event *ibex_cupti_events(const ibex_cupti *c, int64_t *n) {
    if (n) *n = 0;
    return NULL;
}
ibex_status ibex_cupti_copy_events(const ibex_cupti *c, ibex_gpu_event **out, int64_t *n, ibex_err *err) {
    if (out) *out = NULL;
    if (n) *n = 0;
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
uint64_t ibex_cupti_dropped(const ibex_cupti *c) { return 0; }
void ibex_cupti_get_stats(const ibex_cupti *c, ibex_cupti_stats *out) {
    if (out) memset(out, 0, sizeof *out);
}
uint64_t ibex_cupti_origin(const ibex_cupti *c) { return 0; }
const char *ibex_cupti_library(void) { return ""; }
bool ibex_cupti_started(const ibex_cupti *c) { return false; }
ibex_status ibex_cupti_for_point(ibex_cupti *c, bool want, ibex_err *err) {
    (void)c, (void)want, (void)err;
    return IBEX_OK; /* no tracer can exist */
}
bool ibex_cupti_stand_in(void) { return false; }
int ibex_cupti_stand_in_enabled(void) { return 0; }
double ibex_cupti_host_origin_s(const ibex_cupti *c) { return 0; }
void ibex_cupti_set_origin(ibex_cupti *c, uint64_t origin_ns) { (void)c, (void)origin_ns; }
ibex_status ibex_cupti_consume(ibex_cupti *c, uint8_t *buf, size_t valid_bytes, uint64_t dropped, ibex_err *err) {
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
ibex_status ibex_cupti_kernel_table(const ibex_cupti *c, ibex_cupti_kernel_row **rows, int64_t *n,
                                    ibex_err *err) {
    if (rows) *rows = NULL;
    if (n) *n = 0;
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
ibex_status ibex_cupti_op_table(const ibex_cupti *c, ibex_cupti_op_row **rows, int64_t *n, ibex_err *err) {
    if (rows) *rows = NULL;
    if (n) *n = 0;
    return ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "%s", no_cupti);
}
json_t *ibex_cupti_to_json(const ibex_cupti *c, const char *const *op_names, int n_ops, double wall_ns) {
    return NULL;
}

#else /* IBEX_HAVE_CUPTI */

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include <cupti.h>
#include <dlfcn.h>

#include "kernels/cuda/cuda_libs.h"

enum { IBEX_CUPTI_BUF = 8 << 20, IBEX_CUPTI_ALIGN = 8 };

/* ---------------------------------------------------------------- libcupti, opened at run time */

/* libcupti.so.13 is opened by the first ibex_cupti_new (a point asking for `cupti`), not
 * linked: ibex starts without it, and a run without `cupti` points never loads it. */
#ifndef IBEX_CUPTI_LIBDIR
#define IBEX_CUPTI_LIBDIR ""
#endif
#define CU_FN(name) __typeof__(cupti##name) *name
static struct {
    CU_FN(ActivityDisable);
    CU_FN(ActivityEnable);
    CU_FN(ActivityFlushAll);
    CU_FN(ActivityGetNextRecord);
    CU_FN(ActivityGetNumDroppedRecords);
    CU_FN(ActivityPopExternalCorrelationId);
    CU_FN(ActivityPushExternalCorrelationId);
    CU_FN(ActivityRegisterCallbacks);
    CU_FN(GetResultString);
    CU_FN(GetTimestamp);
    CU_FN(GetVersion);
} cu;
#undef CU_FN
static pthread_mutex_t g_load_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_loaded;
static char g_lib_path[512];

static ibex_status cupti_load(ibex_err *err) {
    pthread_mutex_lock(&g_load_mu);
    if (g_loaded) {
        pthread_mutex_unlock(&g_load_mu);
        return IBEX_OK;
    }
    static const char *const subdirs[] = {"extras/CUPTI/lib64", "lib64", "lib", NULL};
    void *h = ibex_cuda_dlopen("libcupti.so.13", "CUPTI", subdirs, IBEX_CUPTI_LIBDIR, g_lib_path, sizeof g_lib_path,
                               err);
    if (!h) {
        pthread_mutex_unlock(&g_load_mu);
        return IBEX_ERR_UNSUPPORTED;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
#define CU_SYM(name) {(void **)&cu.name, "cupti" #name}
        CU_SYM(ActivityDisable), CU_SYM(ActivityEnable), CU_SYM(ActivityFlushAll), CU_SYM(ActivityGetNextRecord),
        CU_SYM(ActivityGetNumDroppedRecords), CU_SYM(ActivityPopExternalCorrelationId),
        CU_SYM(ActivityPushExternalCorrelationId), CU_SYM(ActivityRegisterCallbacks), CU_SYM(GetResultString),
        CU_SYM(GetTimestamp), CU_SYM(GetVersion),
#undef CU_SYM
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
            ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "cupti: %s has no symbol %s (is it CUPTI 13?)", g_lib_path,
                         syms[i].name);
            dlclose(h);
            g_lib_path[0] = '\0';
            pthread_mutex_unlock(&g_load_mu);
            return IBEX_ERR_UNSUPPORTED;
        }
    }
    g_loaded = true;
    pthread_mutex_unlock(&g_load_mu);
    return IBEX_OK;
}

const char *ibex_cupti_library(void) {
    pthread_mutex_lock(&g_load_mu);
    const char *p = g_loaded ? g_lib_path : "";
    pthread_mutex_unlock(&g_load_mu);
    return p;
}

/* ---------------------------------------------------------------- stand-in (tests only) */

static double mono_s(void);

/* Bit k set: activity kind k enabled (kinds are small enum values). */
static uint64_t g_si_enabled;

static CUptiResult CUPTIAPI si_enable(CUpti_ActivityKind k) {
    if ((unsigned)k < 64) g_si_enabled |= 1ull << (unsigned)k;
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_disable(CUpti_ActivityKind k) {
    if ((unsigned)k < 64) g_si_enabled &= ~(1ull << (unsigned)k);
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_flush(uint32_t flag) {
    (void)flag;
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_dropped(CUcontext ctx, uint32_t stream, size_t *n) {
    (void)ctx, (void)stream;
    *n = 0;
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_pop(CUpti_ExternalCorrelationKind k, uint64_t *last) {
    (void)k;
    if (last) *last = 0;
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_push(CUpti_ExternalCorrelationKind k, uint64_t id) {
    (void)k, (void)id;
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_register(CUpti_BuffersCallbackRequestFunc rq, CUpti_BuffersCallbackCompleteFunc cp) {
    (void)rq, (void)cp;
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_result_string(CUptiResult r, const char **str) {
    (void)r;
    *str = "CUPTI stand-in";
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_timestamp(uint64_t *t) {
    *t = (uint64_t)(mono_s() * 1e9);
    return CUPTI_SUCCESS;
}
static CUptiResult CUPTIAPI si_version(uint32_t *v) {
    *v = IBEX_CUPTI_RECORDS_API;
    return CUPTI_SUCCESS;
}

bool ibex_cupti_stand_in(void) {
    ibex_err e = {0};
    if (cupti_load(&e) != IBEX_OK) return false; /* parsing still needs the real library */
    pthread_mutex_lock(&g_load_mu);
    cu.ActivityEnable = si_enable, cu.ActivityDisable = si_disable, cu.ActivityFlushAll = si_flush;
    cu.ActivityGetNumDroppedRecords = si_dropped, cu.ActivityPopExternalCorrelationId = si_pop;
    cu.ActivityPushExternalCorrelationId = si_push, cu.ActivityRegisterCallbacks = si_register;
    cu.GetResultString = si_result_string, cu.GetTimestamp = si_timestamp, cu.GetVersion = si_version;
    g_si_enabled = 0;
    pthread_mutex_unlock(&g_load_mu);
    return true;
}

int ibex_cupti_stand_in_enabled(void) { return __builtin_popcountll(g_si_enabled); }


typedef enum tracer_state { TRACER_IDLE, TRACER_STARTED, TRACER_STOPPED } tracer_state;

/* ---------------------------------------------------------------- string pool */

/* Interned NUL-terminated strings: equal contents give the same pointer, so tables
 * group by pointer. Storage is a list of chunks that never move. */
typedef struct strpool {
    char **chunks;
    size_t n_chunks, cap_chunks;
    size_t used, room; /* bytes used / size of the newest chunk */
    const char **slots; /* open addressing, NULL = empty */
    uint64_t *hashes;
    size_t n, cap;      /* strings / slots (a power of two) */
} strpool;

static uint64_t str_hash(const char *s, size_t *len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    const char *p = s;
    for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    *len = (size_t)(p - s);
    return h;
}

static void pool_free(strpool *p) {
    for (size_t i = 0; i < p->n_chunks; i++) free(p->chunks[i]);
    free(p->chunks);
    free(p->slots);
    free(p->hashes);
    memset(p, 0, sizeof *p);
}

static bool pool_grow_slots(strpool *p) {
    size_t cap = p->cap ? 2 * p->cap : 256;
    const char **slots = calloc(cap, sizeof *slots);
    uint64_t *hashes = calloc(cap, sizeof *hashes);
    if (!slots || !hashes) {
        free(slots);
        free(hashes);
        return false;
    }
    for (size_t i = 0; i < p->cap; i++) {
        if (!p->slots[i]) continue;
        size_t j = p->hashes[i] & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = p->slots[i], hashes[j] = p->hashes[i];
    }
    free(p->slots);
    free(p->hashes);
    p->slots = slots, p->hashes = hashes, p->cap = cap;
    return true;
}

/* The pool's copy of s, or NULL when out of memory. */
static const char *pool_intern(strpool *p, const char *s) {
    size_t len;
    uint64_t h = str_hash(s, &len);
    if ((p->n + 1) * 10 > p->cap * 7 && !pool_grow_slots(p)) return NULL;
    size_t j = h & (p->cap - 1);
    for (; p->slots[j]; j = (j + 1) & (p->cap - 1))
        if (p->hashes[j] == h && strcmp(p->slots[j], s) == 0) return p->slots[j];
    if (!p->n_chunks || p->room - p->used < len + 1) {
        if (p->n_chunks == p->cap_chunks) {
            size_t cap = p->cap_chunks ? 2 * p->cap_chunks : 16;
            char **ch = realloc(p->chunks, cap * sizeof *ch);
            if (!ch) return NULL;
            p->chunks = ch, p->cap_chunks = cap;
        }
        size_t room = len + 1 > 65536 ? len + 1 : 65536;
        char *chunk = malloc(room);
        if (!chunk) return NULL;
        p->chunks[p->n_chunks++] = chunk;
        p->used = 0, p->room = room;
    }
    char *dst = p->chunks[p->n_chunks - 1] + p->used;
    memcpy(dst, s, len + 1);
    p->used += len + 1;
    p->slots[j] = dst, p->hashes[j] = h, p->n++;
    return dst;
}

/* ---------------------------------------------------------------- u32 -> i64 map */

typedef struct u32map {
    uint32_t *keys;
    int64_t *vals;
    uint8_t *used;
    size_t n, cap; /* cap: a power of two */
} u32map;

static size_t u32_slot(uint32_t x, size_t cap) {
    x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15, x *= 0x846ca68bu, x ^= x >> 16;
    return x & (cap - 1);
}

static void map_free(u32map *m) {
    free(m->keys);
    free(m->vals);
    free(m->used);
    memset(m, 0, sizeof *m);
}

static bool map_get(const u32map *m, uint32_t key, int64_t *val) {
    if (!m->n) return false;
    for (size_t j = u32_slot(key, m->cap); m->used[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == key) {
            *val = m->vals[j];
            return true;
        }
    return false;
}

/* Inserts or replaces; false when out of memory. */
static bool map_put(u32map *m, uint32_t key, int64_t val) {
    if ((m->n + 1) * 10 > m->cap * 7) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        u32map g = {.keys = malloc(cap * sizeof(uint32_t)), .vals = malloc(cap * sizeof(int64_t)),
                    .used = calloc(cap, 1), .cap = cap};
        if (!g.keys || !g.vals || !g.used) {
            map_free(&g);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->used[i]) continue;
            size_t j = u32_slot(m->keys[i], cap);
            while (g.used[j]) j = (j + 1) & (cap - 1);
            g.keys[j] = m->keys[i], g.vals[j] = m->vals[i], g.used[j] = 1;
        }
        g.n = m->n;
        map_free(m);
        *m = g;
    }
    size_t j = u32_slot(key, m->cap);
    for (; m->used[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == key) {
            m->vals[j] = val;
            return true;
        }
    m->keys[j] = key, m->vals[j] = val, m->used[j] = 1, m->n++;
    return true;
}

/* ---------------------------------------------------------------- the tracer */

/* Activity kinds start enables; required ones make start fail when CUPTI refuses. */
static const struct {
    CUpti_ActivityKind kind;
    const char *name;
    bool required;
} kinds[] = {
    {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "CONCURRENT_KERNEL", true},
    {CUPTI_ACTIVITY_KIND_MEMCPY, "MEMCPY", true},
    {CUPTI_ACTIVITY_KIND_MEMSET, "MEMSET", true},
    {CUPTI_ACTIVITY_KIND_MEMORY2, "MEMORY2", false},
    {CUPTI_ACTIVITY_KIND_MARKER, "MARKER", false},
    /* External-correlation records are emitted for API records, so an API kind must be
     * on (nvFuser's CUPTI profiler found the same); ibex skips the records. Enabled
     * before EXTERNAL_CORRELATION, which start enables only if this one is on. */
    {CUPTI_ACTIVITY_KIND_DRIVER, "DRIVER", false},
    /* ibex's launches are runtime calls (cudart, cuBLAS): their external correlation
     * comes with RUNTIME records, so attribution needs this kind beside DRIVER */
    {CUPTI_ACTIVITY_KIND_RUNTIME, "RUNTIME", false},
    {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, "EXTERNAL_CORRELATION", false},
};
enum { N_KINDS = sizeof kinds / sizeof kinds[0], KIND_DRIVER = 5, KIND_RUNTIME = 6, KIND_EXTCORR = 7 };

/* Which record table a CUPTI API version needs (the branches of cupti.h's table). A
 * libcupti whose branch differs from the headers' writes records of other layouts. */
static int record_table(uint32_t v) {
    if (v < 19) return 0;
    if (v <= 23) return 1;
    if (v <= 25) return 2;
    if (v <= 28) return 3;
    if (v >= 130000 && v < 130200) return 4;
    return -1;
}

struct ibex_cupti {
    tracer_state state;  /* changed only by start/stop, on the caller's thread */
    unsigned enabled;    /* bit i: kinds[i] is enabled in CUPTI */
    pthread_mutex_t mu;
    /* guarded by mu: */
    bool have_origin;
    uint64_t origin;     /* cuptiGetTimestamp ns */
    double host_origin_s; /* CLOCK_MONOTONIC s at the same moment */
    ibex_gpu_event *ev;
    int64_t n_ev, cap_ev;
    strpool names;
    u32map corr;         /* correlation id -> op */
    u32map open_marks;   /* marker id -> index of its open event (-1: closed) */
    u32map early_ends;   /* marker id -> end ns, for an end seen before its start */
    int64_t *pending;    /* indices of events still waiting for an op */
    int64_t n_pending, cap_pending;
    ibex_cupti_stats st;
    bool has_buf_err;    /* a buffer from CUPTI failed to parse since the last flush */
    ibex_err buf_err;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static ibex_cupti *g_active;      /* the started tracer (invariant 1) */
static bool g_callbacks;          /* cuptiActivityRegisterCallbacks done (guarded by g_mu) */

static void lock(const ibex_cupti *c) { pthread_mutex_lock((pthread_mutex_t *)&c->mu); }
static void unlock(const ibex_cupti *c) { pthread_mutex_unlock((pthread_mutex_t *)&c->mu); }

static const char *cupti_str(CUptiResult r) {
    const char *s = NULL;
    if (cu.GetResultString(r, &s) != CUPTI_SUCCESS || !s) return "unknown CUPTI error";
    return s;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

ibex_cupti *ibex_cupti_new(ibex_err *err) {
    if (cupti_load(err) != IBEX_OK) return NULL;
    ibex_cupti *c = calloc(1, sizeof *c);
    if (!c) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: out of memory for the tracer");
        return NULL;
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: cannot create the tracer's mutex");
        return NULL;
    }
    c->state = TRACER_IDLE;
    return c;
}

static void clear_locked(ibex_cupti *c) {
    free(c->ev);
    free(c->pending);
    c->ev = NULL, c->n_ev = c->cap_ev = 0;
    c->pending = NULL, c->n_pending = c->cap_pending = 0;
    pool_free(&c->names);
    map_free(&c->corr);
    map_free(&c->open_marks);
    map_free(&c->early_ends);
    memset(&c->st, 0, sizeof c->st);
    c->has_buf_err = false;
}

void ibex_cupti_free(ibex_cupti *c) {
    if (!c) return;
    if (c->state == TRACER_STARTED) ibex_cupti_stop(c, NULL);
    clear_locked(c);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void ibex_cupti_clear(ibex_cupti *c) {
    if (!c) return;
    lock(c);
    clear_locked(c);
    unlock(c);
}

/* ---------------------------------------------------------------- CUPTI callbacks */

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    void *p = NULL;
    if (posix_memalign(&p, IBEX_CUPTI_ALIGN, IBEX_CUPTI_BUF) != 0) p = NULL;
    *buffer = p; /* NULL: CUPTI drops the records and counts them as dropped */
    *size = p ? IBEX_CUPTI_BUF : 0;
    *max_records = 0; /* as many as fit */
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
    size_t dropped = 0;
    if (cu.ActivityGetNumDroppedRecords(ctx, stream, &dropped) != CUPTI_SUCCESS) dropped = 0;
    pthread_mutex_lock(&g_mu);
    ibex_cupti *c = g_active;
    if (c) {
        ibex_err e = {0};
        if (ibex_cupti_consume(c, buffer, valid, dropped, &e) != IBEX_OK) {
            lock(c);
            if (!c->has_buf_err) c->has_buf_err = true, c->buf_err = e;
            unlock(c);
        }
    }
    pthread_mutex_unlock(&g_mu);
    free(buffer);
}

/* ---------------------------------------------------------------- start / stop */

static void disable_all(ibex_cupti *c) {
    for (int i = 0; i < N_KINDS; i++)
        if (c->enabled & (1u << i)) cu.ActivityDisable(kinds[i].kind);
    c->enabled = 0;
}

static void release_slot(ibex_cupti *c) {
    pthread_mutex_lock(&g_mu);
    if (g_active == c) g_active = NULL;
    pthread_mutex_unlock(&g_mu);
}

ibex_status ibex_cupti_start(ibex_cupti *c, ibex_err *err) {
    if (!c) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: no tracer");
    if (c->state == TRACER_STARTED) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: tracer already started");
    uint32_t version = 0;
    CUptiResult r = cu.GetVersion(&version);
    if (r != CUPTI_SUCCESS)
        return ibex_err_set(err, IBEX_ERR_BACKEND, "cupti: cuptiGetVersion failed: %s", cupti_str(r));
    if (record_table(version) != record_table(IBEX_CUPTI_RECORDS_API))
        return ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                            "cupti: the loaded libcupti has API version %u but ibex was built with CUPTI %u "
                            "headers, whose activity record layouts differ: rebuild ibex against this CUDA toolkit",
                            (unsigned)version, (unsigned)IBEX_CUPTI_RECORDS_API);
    pthread_mutex_lock(&g_mu);
    if (g_active) {
        pthread_mutex_unlock(&g_mu);
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "cupti: another ibex tracer is already started in this process "
                            "(CUPTI's buffer callbacks allow one)");
    }
    g_active = c;
    bool registered = g_callbacks;
    pthread_mutex_unlock(&g_mu);

    if (!registered) {
        if ((r = cu.ActivityRegisterCallbacks(buffer_requested, buffer_completed)) != CUPTI_SUCCESS) {
            release_slot(c);
            return ibex_err_set(err, IBEX_ERR_BACKEND,
                                "cupti: cannot register activity buffer callbacks: %s (is another profiler attached?)",
                                cupti_str(r));
        }
        pthread_mutex_lock(&g_mu);
        g_callbacks = true;
        pthread_mutex_unlock(&g_mu);
    }
    for (int i = 0; i < N_KINDS; i++) {
        if (i == KIND_EXTCORR && !(c->enabled & ((1u << KIND_DRIVER) | (1u << KIND_RUNTIME)))) continue;
        r = cu.ActivityEnable(kinds[i].kind);
        if (r == CUPTI_SUCCESS) {
            c->enabled |= 1u << i;
        } else if (kinds[i].required) {
            disable_all(c);
            release_slot(c);
            return ibex_err_set(err, IBEX_ERR_BACKEND,
                                "cupti: cannot trace %s activity: %s (no GPU or driver, or another profiler "
                                "attached)",
                                kinds[i].name, cupti_str(r));
        }
    }
    lock(c);
    bool have = c->have_origin;
    unlock(c);
    if (!have) {
        uint64_t t = 0;
        double h0 = mono_s();
        r = cu.GetTimestamp(&t);
        double h1 = mono_s();
        if (r != CUPTI_SUCCESS) {
            disable_all(c);
            release_slot(c);
            return ibex_err_set(err, IBEX_ERR_BACKEND, "cupti: cuptiGetTimestamp failed: %s", cupti_str(r));
        }
        lock(c);
        c->origin = t, c->host_origin_s = 0.5 * (h0 + h1), c->have_origin = true;
        unlock(c);
    }
    c->state = TRACER_STARTED;
    return IBEX_OK;
}

/* The parse error a CUPTI buffer left since the last call, if any (and forgets it). */
static ibex_status take_buf_err(ibex_cupti *c, ibex_err *err) {
    lock(c);
    bool had = c->has_buf_err;
    ibex_err e = c->buf_err;
    c->has_buf_err = false;
    unlock(c);
    if (!had) return IBEX_OK;
    return ibex_err_set(err, e.status, "%s", e.msg);
}

ibex_status ibex_cupti_flush(ibex_cupti *c, ibex_err *err) {
    if (!c) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: no tracer");
    if (c->state == TRACER_IDLE) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: flush before start");
    if (c->state == TRACER_STARTED) {
        CUptiResult r = cu.ActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        if (r != CUPTI_SUCCESS)
            return ibex_err_set(err, IBEX_ERR_BACKEND, "cupti: cuptiActivityFlushAll failed: %s", cupti_str(r));
    }
    return take_buf_err(c, err);
}

ibex_status ibex_cupti_stop(ibex_cupti *c, ibex_err *err) {
    if (!c || c->state != TRACER_STARTED) return IBEX_OK;
    /* Flush, disable, flush again: records made between the first flush and the
     * disable are not lost. */
    CUptiResult r1 = cu.ActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    disable_all(c);
    CUptiResult r2 = cu.ActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    release_slot(c);
    c->state = TRACER_STOPPED;
    ibex_status s = take_buf_err(c, err);
    if (s != IBEX_OK) return s;
    CUptiResult r = r1 != CUPTI_SUCCESS ? r1 : r2;
    if (r != CUPTI_SUCCESS)
        return ibex_err_set(err, IBEX_ERR_BACKEND, "cupti: cuptiActivityFlushAll failed at stop: %s", cupti_str(r));
    return IBEX_OK;
}

bool ibex_cupti_started(const ibex_cupti *c) { return c && c->state == TRACER_STARTED; }

ibex_status ibex_cupti_for_point(ibex_cupti *c, bool want, ibex_err *err) {
    if (!c || want == ibex_cupti_started(c)) return IBEX_OK;
    return want ? ibex_cupti_start(c, err) : ibex_cupti_stop(c, err);
}

bool ibex_cupti_attributes_ops(const ibex_cupti *c) {
    return c && c->state == TRACER_STARTED && (c->enabled & (1u << KIND_EXTCORR));
}

void ibex_cupti_push_op(ibex_cupti *c, int32_t op) {
    if (!ibex_cupti_attributes_ops(c) || op < 0) return;
    cu.ActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, (uint64_t)op);
}

void ibex_cupti_pop_op(ibex_cupti *c) {
    if (!ibex_cupti_attributes_ops(c)) return;
    cu.ActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, NULL);
}

/* ---------------------------------------------------------------- accessors */

const ibex_gpu_event *ibex_cupti_events(const ibex_cupti *c, int64_t *n) {
    if (!c) {
        if (n) *n = 0;
        return NULL;
    }
    lock(c);
    const ibex_gpu_event *ev = c->ev;
    if (n) *n = c->n_ev;
    unlock(c);
    return ev;
}

ibex_status ibex_cupti_copy_events(const ibex_cupti *c, ibex_gpu_event **out, int64_t *n, ibex_err *err) {
    *out = NULL, *n = 0;
    if (!c) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: no tracer");
    lock(c);
    if (c->n_ev) {
        *out = malloc((size_t)c->n_ev * sizeof **out);
        if (!*out) {
            unlock(c);
            return ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: out of memory copying %lld events", (long long)c->n_ev);
        }
        memcpy(*out, c->ev, (size_t)c->n_ev * sizeof **out);
        *n = c->n_ev;
    }
    unlock(c);
    return IBEX_OK;
}

uint64_t ibex_cupti_dropped(const ibex_cupti *c) {
    if (!c) return 0;
    lock(c);
    uint64_t d = c->st.dropped;
    unlock(c);
    return d;
}

void ibex_cupti_get_stats(const ibex_cupti *c, ibex_cupti_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    lock(c);
    *out = c->st;
    unlock(c);
}

uint64_t ibex_cupti_origin(const ibex_cupti *c) {
    if (!c) return 0;
    lock(c);
    uint64_t o = c->origin;
    unlock(c);
    return o;
}

double ibex_cupti_host_origin_s(const ibex_cupti *c) {
    if (!c) return 0;
    lock(c);
    double h = c->host_origin_s;
    unlock(c);
    return h;
}

void ibex_cupti_set_origin(ibex_cupti *c, uint64_t origin_ns) {
    if (!c) return;
    lock(c);
    c->origin = origin_ns, c->have_origin = true;
    unlock(c);
}

/* ---------------------------------------------------------------- parsing */

static const char *const memcpy_dirs[] = {
    [CUPTI_ACTIVITY_MEMCPY_KIND_UNKNOWN] = "unknown", [CUPTI_ACTIVITY_MEMCPY_KIND_HTOD] = "HtoD",
    [CUPTI_ACTIVITY_MEMCPY_KIND_DTOH] = "DtoH",       [CUPTI_ACTIVITY_MEMCPY_KIND_HTOA] = "HtoA",
    [CUPTI_ACTIVITY_MEMCPY_KIND_ATOH] = "AtoH",       [CUPTI_ACTIVITY_MEMCPY_KIND_ATOA] = "AtoA",
    [CUPTI_ACTIVITY_MEMCPY_KIND_ATOD] = "AtoD",       [CUPTI_ACTIVITY_MEMCPY_KIND_DTOA] = "DtoA",
    [CUPTI_ACTIVITY_MEMCPY_KIND_DTOD] = "DtoD",       [CUPTI_ACTIVITY_MEMCPY_KIND_HTOH] = "HtoH",
    [CUPTI_ACTIVITY_MEMCPY_KIND_PTOP] = "PtoP",
};
enum { N_MEMCPY_DIRS = sizeof memcpy_dirs / sizeof memcpy_dirs[0] };

static const char *const memory_kinds[] = {
    [CUPTI_ACTIVITY_MEMORY_KIND_UNKNOWN] = "unknown",
    [CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE] = "pageable",
    [CUPTI_ACTIVITY_MEMORY_KIND_PINNED] = "pinned",
    [CUPTI_ACTIVITY_MEMORY_KIND_DEVICE] = "device",
    [CUPTI_ACTIVITY_MEMORY_KIND_ARRAY] = "array",
    [CUPTI_ACTIVITY_MEMORY_KIND_MANAGED] = "managed",
    [CUPTI_ACTIVITY_MEMORY_KIND_DEVICE_STATIC] = "device static",
    [CUPTI_ACTIVITY_MEMORY_KIND_MANAGED_STATIC] = "managed static",
};

static int64_t rel(const ibex_cupti *c, uint64_t t) { return (int64_t)(t - c->origin); }

/* Sets start/end from a record's timestamps; both 0 (or end before start) means CUPTI
 * could not time it. */
static void set_times(ibex_cupti *c, ibex_gpu_event *e, uint64_t start, uint64_t end) {
    if ((start == 0 && end == 0) || end < start) {
        e->flags |= IBEX_GPU_UNTIMED;
        e->start_ns = e->end_ns = 0;
        c->st.untimed++;
    } else {
        e->start_ns = rel(c, start), e->end_ns = rel(c, end);
    }
}

/* A new zeroed event at the end of c->ev (op -1), or NULL when out of memory. */
static ibex_gpu_event *new_event(ibex_cupti *c, ibex_gpu_event_kind kind) {
    if (c->n_ev == c->cap_ev) {
        int64_t cap = c->cap_ev ? 2 * c->cap_ev : 4096;
        ibex_gpu_event *ev = realloc(c->ev, (size_t)cap * sizeof *ev);
        if (!ev) return NULL;
        c->ev = ev, c->cap_ev = cap;
    }
    ibex_gpu_event *e = &c->ev[c->n_ev];
    memset(e, 0, sizeof *e);
    e->kind = kind, e->op = -1;
    return e;
}

/* Commits the event new_event returned, attributing it to an op when its correlation
 * is known and queueing it otherwise (invariant 5). */
static bool commit_event(ibex_cupti *c, bool attribute) {
    ibex_gpu_event *e = &c->ev[c->n_ev];
    if (attribute) {
        int64_t op;
        if (map_get(&c->corr, e->correlation, &op)) {
            e->op = (int32_t)op;
        } else {
            if (c->n_pending == c->cap_pending) {
                int64_t cap = c->cap_pending ? 2 * c->cap_pending : 1024;
                int64_t *p = realloc(c->pending, (size_t)cap * sizeof *p);
                if (!p) return false;
                c->pending = p, c->cap_pending = cap;
            }
            c->pending[c->n_pending++] = c->n_ev;
        }
    }
    c->n_ev++;
    c->st.events++;
    return true;
}

static void resolve_pending(ibex_cupti *c) {
    int64_t kept = 0;
    for (int64_t i = 0; i < c->n_pending; i++) {
        ibex_gpu_event *e = &c->ev[c->pending[i]];
        int64_t op;
        if (map_get(&c->corr, e->correlation, &op))
            e->op = (int32_t)op;
        else
            c->pending[kept++] = c->pending[i];
    }
    c->n_pending = kept;
}

/* Parses one record into c. *size is the record's size for kinds ibex knows, 0 for
 * unknown kinds (CUPTI knows the size; ibex cannot check what follows). false only
 * when out of memory. */
static bool parse_record(ibex_cupti *c, const CUpti_Activity *rec, size_t *size) {
    *size = 0;
    switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const ibex_cupti_kernel_record *k = (const void *)rec;
        *size = sizeof *k;
        ibex_gpu_event *e = new_event(c, IBEX_GPU_KERNEL);
        if (!e || !(e->name = pool_intern(&c->names, k->name ? k->name : "(unnamed kernel)"))) return false;
        set_times(c, e, k->start, k->end);
        e->device = k->deviceId, e->stream = k->streamId, e->correlation = k->correlationId;
        e->grid[0] = k->gridX, e->grid[1] = k->gridY, e->grid[2] = k->gridZ;
        e->block[0] = k->blockX, e->block[1] = k->blockY, e->block[2] = k->blockZ;
        e->registers = k->registersPerThread;
        e->shared_bytes = k->staticSharedMemory + k->dynamicSharedMemory;
        return commit_event(c, true);
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const ibex_cupti_memcpy_record *m = (const void *)rec;
        *size = sizeof *m;
        char name[32];
        snprintf(name, sizeof name, "memcpy %s", m->copyKind < N_MEMCPY_DIRS ? memcpy_dirs[m->copyKind] : "unknown");
        ibex_gpu_event *e = new_event(c, IBEX_GPU_MEMCPY);
        if (!e || !(e->name = pool_intern(&c->names, name))) return false;
        set_times(c, e, m->start, m->end);
        e->bytes = (int64_t)m->bytes;
        e->device = m->deviceId, e->stream = m->streamId, e->correlation = m->correlationId;
        return commit_event(c, true);
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const ibex_cupti_memset_record *m = (const void *)rec;
        *size = sizeof *m;
        ibex_gpu_event *e = new_event(c, IBEX_GPU_MEMSET);
        if (!e || !(e->name = pool_intern(&c->names, "memset"))) return false;
        set_times(c, e, m->start, m->end);
        e->bytes = (int64_t)m->bytes;
        e->device = m->deviceId, e->stream = m->streamId, e->correlation = m->correlationId;
        return commit_event(c, true);
    }
    case CUPTI_ACTIVITY_KIND_MEMORY2: {
        const ibex_cupti_memory_record *m = (const void *)rec;
        *size = sizeof *m;
        bool alloc = m->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION;
        bool release = m->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE;
        if (!alloc && !release) {
            c->st.ignored++;
            return true;
        }
        char name[48];
        unsigned mk = (unsigned)m->memoryKind;
        snprintf(name, sizeof name, "%s %s", alloc ? "alloc" : "free",
                 mk < sizeof memory_kinds / sizeof memory_kinds[0] ? memory_kinds[mk] : "unknown");
        ibex_gpu_event *e = new_event(c, IBEX_GPU_MEMORY);
        if (!e || !(e->name = pool_intern(&c->names, name))) return false;
        if (release) e->flags |= IBEX_GPU_RELEASE;
        set_times(c, e, m->timestamp, m->timestamp);
        e->bytes = (int64_t)m->bytes;
        e->device = m->deviceId, e->correlation = m->correlationId;
        e->stream = m->streamId == CUPTI_INVALID_STREAM_ID ? 0 : m->streamId;
        return commit_event(c, true);
    }
    case CUPTI_ACTIVITY_KIND_MARKER: {
        const ibex_cupti_marker_record *m = (const void *)rec;
        *size = sizeof *m;
        bool inst = m->flags & CUPTI_ACTIVITY_FLAG_MARKER_INSTANTANEOUS;
        bool start = m->flags & CUPTI_ACTIVITY_FLAG_MARKER_START;
        bool end = m->flags & CUPTI_ACTIVITY_FLAG_MARKER_END;
        if (end && !start && !inst) {
            int64_t at = m->timestamp ? rel(c, m->timestamp) : INT64_MIN, idx;
            if (map_get(&c->open_marks, m->id, &idx) && idx >= 0) {
                ibex_gpu_event *e = &c->ev[idx];
                e->flags &= ~(uint32_t)IBEX_GPU_OPEN;
                if (at == INT64_MIN || at < e->start_ns) {
                    if (!(e->flags & IBEX_GPU_UNTIMED)) c->st.untimed++;
                    e->flags |= IBEX_GPU_UNTIMED;
                } else {
                    e->end_ns = at;
                }
                return map_put(&c->open_marks, m->id, -1);
            }
            return map_put(&c->early_ends, m->id, at); /* its start comes in a later buffer */
        }
        if (!inst && !start) { /* NVTX sync markers and the like */
            c->st.ignored++;
            return true;
        }
        ibex_gpu_event *e = new_event(c, IBEX_GPU_MARKER);
        if (!e || !(e->name = pool_intern(&c->names, m->name ? m->name : ""))) return false;
        if (m->domain && !(e->domain = pool_intern(&c->names, m->domain))) return false;
        e->marker_id = m->id;
        if (m->objectKind == CUPTI_ACTIVITY_OBJECT_THREAD) e->thread = m->objectId.pt.threadId;
        set_times(c, e, m->timestamp, m->timestamp);
        if (start && !inst) {
            int64_t at;
            if (map_get(&c->early_ends, m->id, &at) && at != INT64_MAX) {
                if (!(e->flags & IBEX_GPU_UNTIMED) && at != INT64_MIN && at >= e->start_ns)
                    e->end_ns = at;
                else if (!(e->flags & IBEX_GPU_UNTIMED))
                    e->flags |= IBEX_GPU_UNTIMED, c->st.untimed++;
                if (!map_put(&c->early_ends, m->id, INT64_MAX)) return false; /* consumed */
            } else {
                e->flags |= IBEX_GPU_OPEN;
                if (!map_put(&c->open_marks, m->id, c->n_ev)) return false;
            }
        }
        return commit_event(c, false);
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const ibex_cupti_extcorr_record *x = (const void *)rec;
        *size = sizeof *x;
        if (x->externalKind != CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0 || x->externalId > INT32_MAX) {
            c->st.ignored++;
            return true;
        }
        c->st.correlations++;
        return map_put(&c->corr, x->correlationId, (int64_t)x->externalId);
    }
    case CUPTI_ACTIVITY_KIND_DRIVER:
    case CUPTI_ACTIVITY_KIND_RUNTIME:
        *size = sizeof(ibex_cupti_api_record);
        c->st.ignored++;
        return true;
    default:
        c->st.unknown++;
        return true;
    }
}

ibex_status ibex_cupti_consume(ibex_cupti *c, uint8_t *buf, size_t valid_bytes, uint64_t dropped, ibex_err *err) {
    if (!c) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: no tracer");
    if (!buf && valid_bytes) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: NULL buffer of %zu bytes", valid_bytes);
    ibex_status s = IBEX_OK;
    lock(c);
    c->st.buffers++;
    c->st.dropped += dropped;
    CUpti_Activity *rec = NULL;
    long long idx = 0;
    size_t known_end = 0; /* where the last record of a known size ends */
    bool last_known = true;
    while (valid_bytes) {
        CUptiResult r = cu.ActivityGetNextRecord(buf, valid_bytes, &rec);
        if (r == CUPTI_ERROR_MAX_LIMIT_REACHED) {
            if (last_known && known_end != valid_bytes) {
                c->st.bad_buffers++;
                s = ibex_err_set(err, IBEX_ERR_FORMAT,
                                 "cupti: buffer of %zu valid bytes: %zu trailing bytes after record %lld (byte %zu) "
                                 "are not a whole record (truncated buffer?)",
                                 valid_bytes, valid_bytes - known_end, idx, known_end);
            }
            break;
        }
        if (r != CUPTI_SUCCESS) {
            c->st.bad_buffers++;
            if (last_known)
                s = ibex_err_set(err, IBEX_ERR_FORMAT, "cupti: buffer of %zu valid bytes: record %lld at byte %zu: %s",
                                 valid_bytes, idx, known_end, cupti_str(r));
            else
                s = ibex_err_set(err, IBEX_ERR_FORMAT,
                                 "cupti: buffer of %zu valid bytes: record %lld (after a record of unknown kind): %s",
                                 valid_bytes, idx, cupti_str(r));
            break;
        }
        c->st.records++;
        size_t size;
        if (!parse_record(c, rec, &size)) {
            s = ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: out of memory parsing record %lld", idx);
            break;
        }
        last_known = size != 0;
        if (last_known) known_end = (size_t)((uint8_t *)rec - buf) + size;
        idx++;
    }
    resolve_pending(c);
    unlock(c);
    return s;
}

/* ---------------------------------------------------------------- aggregation */

static int64_t dur(const ibex_gpu_event *e) { return e->end_ns - e->start_ns; }

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

/* One timed event reduced to its grouping key and duration. */
typedef struct group_key {
    const char *name, *domain; /* interned: compared by pointer */
    int32_t op;
    int64_t dur;
} group_key;

static int cmp_group_key(const void *a, const void *b) {
    const group_key *x = a, *y = b;
    int c = cmp_ptr(x->name, y->name);
    if (c) return c;
    c = cmp_ptr(x->domain, y->domain);
    if (c) return c;
    return (x->op > y->op) - (x->op < y->op);
}

static int cmp_kernel_rows(const void *a, const void *b) {
    const ibex_cupti_kernel_row *x = a, *y = b;
    if (x->total_ns != y->total_ns) return x->total_ns > y->total_ns ? -1 : 1;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return (x->op > y->op) - (x->op < y->op);
}

/* Groups the timed, closed events of one kind by (name, domain, op) — by (name, domain)
 * when !by_op, and then row.op is -1 — into rows sorted like the kernel table. When
 * domains is given, (*domains)[i] is row i's domain (malloc'ed, like *rows). */
static ibex_status group_locked(const ibex_cupti *c, ibex_gpu_event_kind kind, bool by_op,
                                ibex_cupti_kernel_row **rows, const char ***domains, int64_t *n, ibex_err *err) {
    *rows = NULL, *n = 0;
    if (domains) *domains = NULL;
    int64_t m = 0;
    for (int64_t i = 0; i < c->n_ev; i++)
        if (c->ev[i].kind == kind && !(c->ev[i].flags & (IBEX_GPU_UNTIMED | IBEX_GPU_OPEN))) m++;
    if (!m) return IBEX_OK;
    group_key *key = malloc((size_t)m * sizeof *key);
    ibex_cupti_kernel_row *r = malloc((size_t)m * sizeof *r);
    const char **dom = malloc((size_t)m * sizeof *dom);
    if (!key || !r || !dom) {
        free(key), free(r), free(dom);
        return ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: out of memory aggregating %lld events", (long long)m);
    }
    m = 0;
    for (int64_t i = 0; i < c->n_ev; i++) {
        const ibex_gpu_event *e = &c->ev[i];
        if (e->kind == kind && !(e->flags & (IBEX_GPU_UNTIMED | IBEX_GPU_OPEN)))
            key[m++] = (group_key){e->name, e->domain, by_op ? e->op : -1, dur(e)};
    }
    qsort(key, (size_t)m, sizeof *key, cmp_group_key);
    int64_t k = 0;
    for (int64_t i = 0; i < m;) {
        ibex_cupti_kernel_row row = {.name = key[i].name, .op = key[i].op, .min_ns = INT64_MAX, .max_ns = INT64_MIN};
        int64_t j = i;
        for (; j < m && cmp_group_key(&key[i], &key[j]) == 0; j++) {
            row.calls++, row.total_ns += key[j].dur;
            if (key[j].dur < row.min_ns) row.min_ns = key[j].dur;
            if (key[j].dur > row.max_ns) row.max_ns = key[j].dur;
        }
        row.mean_ns = (double)row.total_ns / (double)row.calls;
        dom[k] = key[i].domain;
        r[k++] = row;
        i = j;
    }
    free(key);
    if (domains) {
        /* Rows grouped without ops have op -1: carry the group index there through the
         * sort to keep each row's domain with it. */
        const char **d = malloc((size_t)k * sizeof *d);
        if (!d) {
            free(r), free(dom);
            return ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: out of memory aggregating %lld rows", (long long)k);
        }
        for (int64_t i = 0; i < k; i++) r[i].op = (int32_t)i;
        qsort(r, (size_t)k, sizeof *r, cmp_kernel_rows);
        for (int64_t i = 0; i < k; i++) d[i] = dom[r[i].op], r[i].op = -1;
        *domains = d;
    } else {
        qsort(r, (size_t)k, sizeof *r, cmp_kernel_rows);
    }
    free(dom);
    *rows = r, *n = k;
    return IBEX_OK;
}

ibex_status ibex_cupti_kernel_table(const ibex_cupti *c, ibex_cupti_kernel_row **rows, int64_t *n,
                                    ibex_err *err) {
    *rows = NULL, *n = 0;
    if (!c) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: no tracer");
    lock(c);
    ibex_status s = group_locked(c, IBEX_GPU_KERNEL, true, rows, NULL, n, err);
    unlock(c);
    return s;
}

static int cmp_op(int32_t a, int32_t b) {
    if (a == b) return 0;
    if (a < 0) return 1; /* -1 last */
    if (b < 0) return -1;
    return a < b ? -1 : 1;
}

static int cmp_op_rows(const void *a, const void *b) {
    return cmp_op(((const ibex_cupti_op_row *)a)->op, ((const ibex_cupti_op_row *)b)->op);
}

static ibex_status op_table_locked(const ibex_cupti *c, ibex_cupti_op_row **rows, int64_t *n, ibex_err *err) {
    *rows = NULL, *n = 0;
    /* Ops are small dense ids: find them with a sort of the distinct values. */
    int64_t m = 0;
    for (int64_t i = 0; i < c->n_ev; i++) {
        const ibex_gpu_event *e = &c->ev[i];
        if ((e->kind == IBEX_GPU_KERNEL || e->kind == IBEX_GPU_MEMCPY || e->kind == IBEX_GPU_MEMSET) &&
            !(e->flags & IBEX_GPU_UNTIMED))
            m++;
    }
    if (!m) return IBEX_OK;
    ibex_cupti_op_row *r = calloc((size_t)m, sizeof *r);
    if (!r) return ibex_err_set(err, IBEX_ERR_NOMEM, "cupti: out of memory for the op table");
    int64_t k = 0;
    for (int64_t i = 0; i < c->n_ev; i++) {
        const ibex_gpu_event *e = &c->ev[i];
        if ((e->kind == IBEX_GPU_KERNEL || e->kind == IBEX_GPU_MEMCPY || e->kind == IBEX_GPU_MEMSET) &&
            !(e->flags & IBEX_GPU_UNTIMED))
            r[k++].op = e->op;
    }
    qsort(r, (size_t)k, sizeof *r, cmp_op_rows);
    int64_t u = 0;
    for (int64_t i = 0; i < k; i++)
        if (!u || r[u - 1].op != r[i].op) r[u++] = (ibex_cupti_op_row){.op = r[i].op};
    for (int64_t i = 0; i < c->n_ev; i++) {
        const ibex_gpu_event *e = &c->ev[i];
        if (e->flags & IBEX_GPU_UNTIMED) continue;
        if (e->kind != IBEX_GPU_KERNEL && e->kind != IBEX_GPU_MEMCPY && e->kind != IBEX_GPU_MEMSET) continue;
        int64_t lo = 0, hi = u - 1; /* binary search in the sorted distinct ops */
        while (lo < hi) {
            int64_t mid = (lo + hi) / 2;
            if (cmp_op(r[mid].op, e->op) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        ibex_cupti_op_row *row = &r[lo];
        if (e->kind == IBEX_GPU_KERNEL)
            row->kernels++, row->kernel_ns += dur(e);
        else if (e->kind == IBEX_GPU_MEMCPY)
            row->memcpys++, row->memcpy_ns += dur(e), row->memcpy_bytes += e->bytes;
        else
            row->memsets++, row->memset_ns += dur(e);
    }
    *rows = r, *n = u;
    return IBEX_OK;
}

ibex_status ibex_cupti_op_table(const ibex_cupti *c, ibex_cupti_op_row **rows, int64_t *n, ibex_err *err) {
    *rows = NULL, *n = 0;
    if (!c) return ibex_err_set(err, IBEX_ERR_INVALID, "cupti: no tracer");
    lock(c);
    ibex_status s = op_table_locked(c, rows, n, err);
    unlock(c);
    return s;
}

/* ---------------------------------------------------------------- JSON */

typedef struct interval {
    int64_t a, b;
} interval;

static int cmp_interval(const void *x, const void *y) {
    const interval *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

static json_t *op_name_json(const char *const *op_names, int n_ops, int32_t op) {
    if (op_names && op >= 0 && op < n_ops && op_names[op]) return json_string(op_names[op]);
    return json_null();
}

static json_t *to_json_locked(const ibex_cupti *c, const char *const *op_names, int n_ops, double wall_ns) {
    ibex_cupti_kernel_row *kr = NULL, *rr = NULL;
    ibex_cupti_op_row *orow = NULL;
    const char **rdom = NULL;
    int64_t nk = 0, nr = 0, no = 0;
    interval *iv = NULL, *mem = NULL;
    json_t *j = NULL;
    if (group_locked(c, IBEX_GPU_KERNEL, true, &kr, NULL, &nk, NULL) != IBEX_OK ||
        group_locked(c, IBEX_GPU_MARKER, false, &rr, &rdom, &nr, NULL) != IBEX_OK ||
        op_table_locked(c, &orow, &no, NULL) != IBEX_OK)
        goto done;

    /* Activity intervals (kernels, memcpy, memset) for span and busy time; memory
     * events (time, signed bytes) for the peak. */
    int64_t n_iv = 0, n_mem = 0, kernel_ns = 0, kernel_calls = 0;
    int64_t mc_count[N_MEMCPY_DIRS] = {0}, mc_bytes[N_MEMCPY_DIRS] = {0}, mc_ns[N_MEMCPY_DIRS] = {0};
    int64_t ms_count = 0, ms_bytes = 0, ms_ns = 0;
    int64_t allocs = 0, alloc_bytes = 0, frees = 0, free_bytes = 0;
    if (c->n_ev) {
        iv = malloc((size_t)c->n_ev * sizeof *iv);
        mem = malloc((size_t)c->n_ev * sizeof *mem);
        if (!iv || !mem) goto done;
    }
    for (int64_t i = 0; i < c->n_ev; i++) {
        const ibex_gpu_event *e = &c->ev[i];
        if (e->flags & IBEX_GPU_UNTIMED) continue;
        switch (e->kind) {
        case IBEX_GPU_KERNEL:
            kernel_ns += dur(e), kernel_calls++;
            iv[n_iv++] = (interval){e->start_ns, e->end_ns};
            break;
        case IBEX_GPU_MEMCPY:
            for (int d = 0; d < N_MEMCPY_DIRS; d++)
                if (strcmp(e->name + 7, memcpy_dirs[d]) == 0) {
                    mc_count[d]++, mc_bytes[d] += e->bytes, mc_ns[d] += dur(e);
                    break;
                }
            iv[n_iv++] = (interval){e->start_ns, e->end_ns};
            break;
        case IBEX_GPU_MEMSET:
            ms_count++, ms_bytes += e->bytes, ms_ns += dur(e);
            iv[n_iv++] = (interval){e->start_ns, e->end_ns};
            break;
        case IBEX_GPU_MEMORY:
            if (e->flags & IBEX_GPU_RELEASE)
                frees++, free_bytes += e->bytes, mem[n_mem++] = (interval){e->start_ns, -e->bytes};
            else
                allocs++, alloc_bytes += e->bytes, mem[n_mem++] = (interval){e->start_ns, e->bytes};
            break;
        case IBEX_GPU_MARKER:
            break;
        }
    }
    int64_t span = 0, busy = 0;
    if (n_iv) {
        qsort(iv, (size_t)n_iv, sizeof *iv, cmp_interval);
        int64_t lo = iv[0].a, hi = iv[0].b, first = iv[0].a, last = iv[0].b;
        for (int64_t i = 1; i < n_iv; i++) {
            if (iv[i].b > last) last = iv[i].b;
            if (iv[i].a > hi) {
                busy += hi - lo;
                lo = iv[i].a, hi = iv[i].b;
            } else if (iv[i].b > hi) {
                hi = iv[i].b;
            }
        }
        busy += hi - lo;
        span = last - first;
    }
    /* Peak: allocations before releases at the same instant (cmp_interval sorts by
     * time, then signed bytes ascending, so flip to put positive first). */
    int64_t peak = 0, live = 0;
    for (int64_t i = 0; i < n_mem; i++) mem[i].b = -mem[i].b;
    if (n_mem) qsort(mem, (size_t)n_mem, sizeof *mem, cmp_interval);
    for (int64_t i = 0; i < n_mem; i++) {
        live -= mem[i].b;
        if (live > peak) peak = live;
    }

    j = json_object();
    json_t *kernels = json_array(), *by_op = json_array(), *memcpy_o = json_object(), *ranges = json_array();
    if (!j || !kernels || !by_op || !memcpy_o || !ranges) {
        json_decref(kernels), json_decref(by_op), json_decref(memcpy_o), json_decref(ranges);
        json_decref(j), j = NULL;
        goto done;
    }
    double denom = wall_ns > 0 ? wall_ns : (double)span;
    json_object_set_new(j, "events", json_integer(c->n_ev));
    json_object_set_new(j, "dropped", json_integer((json_int_t)c->st.dropped));
    json_object_set_new(j, "unknown_records", json_integer(c->st.unknown));
    json_object_set_new(j, "bad_buffers", json_integer(c->st.bad_buffers));
    json_object_set_new(j, "untimed", json_integer(c->st.untimed));
    json_object_set_new(j, "span_ns", json_integer(span));
    json_object_set_new(j, "busy_ns", json_integer(busy));
    json_object_set_new(j, "wall_ns", wall_ns > 0 ? json_real(wall_ns) : json_null());
    json_object_set_new(j, "busy_fraction", denom > 0 ? json_real((double)busy / denom) : json_null());
    json_object_set_new(j, "kernel_ns", json_integer(kernel_ns));
    json_object_set_new(j, "kernel_calls", json_integer(kernel_calls));
    for (int64_t i = 0; i < nk; i++) {
        const ibex_cupti_kernel_row *r = &kr[i];
        json_array_append_new(
            kernels, json_pack("{s:s,s:i,s:o,s:I,s:I,s:f,s:I,s:I,s:f}", "name", r->name, "op", (int)r->op, "op_name",
                               op_name_json(op_names, n_ops, r->op), "calls", (json_int_t)r->calls, "total_ns",
                               (json_int_t)r->total_ns, "mean_ns", r->mean_ns, "min_ns", (json_int_t)r->min_ns,
                               "max_ns", (json_int_t)r->max_ns, "share",
                               kernel_ns > 0 ? (double)r->total_ns / (double)kernel_ns : 0.0));
    }
    json_object_set_new(j, "kernels", kernels);
    for (int64_t i = 0; i < no; i++) {
        const ibex_cupti_op_row *r = &orow[i];
        json_array_append_new(
            by_op, json_pack("{s:i,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "op", (int)r->op, "name",
                             op_name_json(op_names, n_ops, r->op), "kernels", (json_int_t)r->kernels, "kernel_ns",
                             (json_int_t)r->kernel_ns, "memcpys", (json_int_t)r->memcpys, "memcpy_ns",
                             (json_int_t)r->memcpy_ns, "memcpy_bytes", (json_int_t)r->memcpy_bytes, "memsets",
                             (json_int_t)r->memsets, "memset_ns", (json_int_t)r->memset_ns, "share",
                             kernel_ns > 0 ? (double)r->kernel_ns / (double)kernel_ns : 0.0));
    }
    json_object_set_new(j, "by_op", by_op);
    for (int d = 0; d < N_MEMCPY_DIRS; d++) {
        if (!mc_count[d]) continue;
        json_object_set_new(memcpy_o, memcpy_dirs[d],
                            json_pack("{s:I,s:I,s:I,s:o}", "count", (json_int_t)mc_count[d], "bytes",
                                      (json_int_t)mc_bytes[d], "total_ns", (json_int_t)mc_ns[d], "gb_per_s",
                                      mc_ns[d] > 0 ? json_real((double)mc_bytes[d] / (double)mc_ns[d]) : json_null()));
    }
    json_object_set_new(j, "memcpy", memcpy_o);
    json_object_set_new(j, "memset",
                        json_pack("{s:I,s:I,s:I}", "count", (json_int_t)ms_count, "bytes", (json_int_t)ms_bytes,
                                  "total_ns", (json_int_t)ms_ns));
    json_object_set_new(j, "memory",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "allocs", (json_int_t)allocs, "alloc_bytes",
                                  (json_int_t)alloc_bytes, "frees", (json_int_t)frees, "free_bytes",
                                  (json_int_t)free_bytes, "peak_bytes", (json_int_t)peak));
    for (int64_t i = 0; i < nr; i++) {
        const ibex_cupti_kernel_row *r = &rr[i];
        json_array_append_new(ranges, json_pack("{s:s,s:o,s:I,s:I,s:f,s:I,s:I}", "name", r->name, "domain",
                                                rdom[i] ? json_string(rdom[i]) : json_null(), "calls",
                                                (json_int_t)r->calls, "total_ns", (json_int_t)r->total_ns, "mean_ns",
                                                r->mean_ns, "min_ns", (json_int_t)r->min_ns, "max_ns",
                                                (json_int_t)r->max_ns));
    }
    json_object_set_new(j, "ranges", ranges);
done:
    free(kr), free(rr), free(rdom), free(orow), free(iv), free(mem);
    return j;
}

json_t *ibex_cupti_to_json(const ibex_cupti *c, const char *const *op_names, int n_ops, double wall_ns) {
    if (!c) return NULL;
    lock(c);
    json_t *j = to_json_locked(c, op_names, n_ops, wall_ns);
    unlock(c);
    return j;
}

#endif /* IBEX_HAVE_CUPTI */
