/* test_cupti.c — tests of harness/cupti: record buffers built by hand with the record
 * structs this build parses (no GPU needed: cuptiActivityGetNextRecord walks any
 * buffer), checked against values worked out in the comments: parsing of every kind,
 * interned names, origin-relative times, per-kernel and per-op tables, op attribution
 * through external-correlation records that come a buffer later, NVTX ranges paired
 * across buffers, dropped counts, the results.json object, broken buffers, and
 * ibex_cupti_start on whatever machine runs the test (an error without a GPU), and the
 * per-point policy (instrument_overhead.yaml's off and nvtx points untraced) through an
 * in-process stand-in for CUPTI's control calls. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef IBEX_HAVE_CUPTI
#define IBEX_CUPTI_RECORD_TYPES
#endif
#include "harness/cupti.h"
#include "harness/scenario.h"

#define NEAR(got, want, tol)                                                                       \
    cr_expect(fabs((double)(got) - (double)(want)) <= (tol), "%s = %.17g, want %.17g (tol %g)",    \
              #got, (double)(got), (double)(want), (double)(tol))

#ifndef IBEX_HAVE_CUPTI

Test(cupti, unsupported_without_cupti)
{
    ibex_err e = {0};
    cr_assert_null(ibex_cupti_new(&e));
    cr_expect_eq(e.status, IBEX_ERR_UNSUPPORTED);
    cr_expect_str_eq(e.msg, "this ibex was built without CUPTI");
    memset(&e, 0, sizeof e);
    cr_expect_eq(ibex_cupti_start(NULL, &e), IBEX_ERR_UNSUPPORTED);
    cr_expect_str_eq(e.msg, "this ibex was built without CUPTI");
    cr_expect_eq(ibex_cupti_flush(NULL, &e), IBEX_ERR_UNSUPPORTED);
    cr_expect_eq(ibex_cupti_stop(NULL, &e), IBEX_ERR_UNSUPPORTED);
    uint8_t b[8] = {0};
    cr_expect_eq(ibex_cupti_consume(NULL, b, sizeof b, 0, &e), IBEX_ERR_UNSUPPORTED);
    cr_expect(!ibex_cupti_attributes_ops(NULL));
    int64_t n = -1;
    cr_expect_null(ibex_cupti_events(NULL, &n));
    cr_expect_eq(n, 0);
}

Test(cupti, record_parsing)
{
    cr_skip_test("built without CUPTI: record parsing needs libcupti");
}

#else

/* ---------------------------------------------------------------- buffer building */

#define T0 1000000000ull /* the origin every test sets */

typedef struct bufb {
    uint8_t *p;
    size_t n, cap;
} bufb;

/* Appends one record. CUPTI steps from record to record by the record struct's size;
 * every struct used here is a multiple of 8 bytes, as CUPTI's buffers need. */
static void put(bufb *b, const void *rec, size_t size) {
    cr_assert_eq(size % 8, 0, "record size %zu is not a multiple of 8", size);
    if (b->n + size > b->cap) {
        b->cap = b->cap ? 2 * b->cap + size : 4096 + size;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, rec, size);
    b->n += size;
}

static void put_kernel(bufb *b, const char *name, uint64_t start, uint64_t end, uint32_t corr) {
    ibex_cupti_kernel_record k;
    memset(&k, 0, sizeof k);
    k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
    k.name = name;
    k.start = start, k.end = end, k.correlationId = corr;
    k.deviceId = 0, k.streamId = 7;
    k.gridX = 64, k.gridY = 2, k.gridZ = 1, k.blockX = 128, k.blockY = 1, k.blockZ = 1;
    k.registersPerThread = 40, k.staticSharedMemory = 1024, k.dynamicSharedMemory = 2048;
    put(b, &k, sizeof k);
}

static void put_memcpy(bufb *b, CUpti_ActivityMemcpyKind dir, uint64_t bytes, uint64_t start, uint64_t end,
                       uint32_t corr) {
    ibex_cupti_memcpy_record m;
    memset(&m, 0, sizeof m);
    m.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
    m.copyKind = (uint8_t)dir, m.bytes = bytes, m.start = start, m.end = end, m.correlationId = corr;
    m.deviceId = 0, m.streamId = 7;
    put(b, &m, sizeof m);
}

static void put_memset(bufb *b, uint64_t bytes, uint64_t start, uint64_t end, uint32_t corr) {
    ibex_cupti_memset_record m;
    memset(&m, 0, sizeof m);
    m.kind = CUPTI_ACTIVITY_KIND_MEMSET;
    m.bytes = bytes, m.start = start, m.end = end, m.correlationId = corr, m.streamId = 7;
    put(b, &m, sizeof m);
}

static void put_memory(bufb *b, bool alloc, CUpti_ActivityMemoryKind mk, uint64_t bytes, uint64_t t) {
    ibex_cupti_memory_record m;
    memset(&m, 0, sizeof m);
    m.kind = CUPTI_ACTIVITY_KIND_MEMORY2;
    m.memoryOperationType =
        alloc ? CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION : CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE;
    m.memoryKind = mk, m.bytes = bytes, m.timestamp = t, m.deviceId = 0;
    m.streamId = CUPTI_INVALID_STREAM_ID;
    put(b, &m, sizeof m);
}

static void put_marker(bufb *b, CUpti_ActivityFlag flags, uint32_t id, const char *name, const char *domain,
                       uint64_t t) {
    ibex_cupti_marker_record m;
    memset(&m, 0, sizeof m);
    m.kind = CUPTI_ACTIVITY_KIND_MARKER;
    m.flags = flags, m.id = id, m.name = name, m.domain = domain, m.timestamp = t;
    m.objectKind = CUPTI_ACTIVITY_OBJECT_THREAD;
    m.objectId.pt.processId = 100, m.objectId.pt.threadId = 4242;
    put(b, &m, sizeof m);
}

static void put_corr(bufb *b, CUpti_ExternalCorrelationKind kind, uint64_t ext, uint32_t corr) {
    ibex_cupti_extcorr_record x;
    memset(&x, 0, sizeof x);
    x.kind = CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION;
    x.externalKind = kind, x.externalId = ext, x.correlationId = corr;
    put(b, &x, sizeof x);
}

/* A kind ibex does not keep or know: a NAME record (CUpti_ActivityName). */
static void put_unknown(bufb *b) {
    CUpti_ActivityName r;
    memset(&r, 0, sizeof r);
    r.kind = CUPTI_ACTIVITY_KIND_NAME;
    r.name = "thread 1";
    put(b, &r, sizeof r);
}

static void put_driver_api(bufb *b, uint32_t corr) {
    ibex_cupti_api_record r;
    memset(&r, 0, sizeof r);
    r.kind = CUPTI_ACTIVITY_KIND_DRIVER;
    r.start = T0 + 5, r.end = T0 + 6, r.correlationId = corr;
    put(b, &r, sizeof r);
}

static ibex_cupti *new_tracer(void) {
    ibex_err e = {0};
    ibex_cupti *c = ibex_cupti_new(&e);
    cr_assert_not_null(c, "%s", e.msg);
    ibex_cupti_set_origin(c, T0);
    return c;
}

static void consume_ok(ibex_cupti *c, bufb *b, uint64_t dropped) {
    ibex_err e = {0};
    cr_assert_eq(ibex_cupti_consume(c, b->p, b->n, dropped, &e), IBEX_OK, "%s", e.msg);
}

static const ibex_gpu_event *find(const ibex_cupti *c, ibex_gpu_event_kind kind, uint32_t corr_or_id, int nth) {
    int64_t n;
    const ibex_gpu_event *ev = ibex_cupti_events(c, &n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t key = kind == IBEX_GPU_MARKER ? ev[i].marker_id : ev[i].correlation;
        if (ev[i].kind == kind && key == corr_or_id && nth-- == 0) return &ev[i];
    }
    return NULL;
}

/* ---------------------------------------------------------------- the standard trace
 *
 * Buffer A (origin T0; times below are ns after T0):
 *   kernels  gemm     1000..1100 (100)  corr 11      -> op 3
 *            gemm     1200..1500 (300)  corr 12      -> op 3
 *            gemm     1600..1800 (200)  corr 13      -> op 3
 *            rmsnorm  1900..1950 (50)   corr 14      -> op 3
 *            gemm     2000..2400 (400)  corr 15      -> op 5
 *   memcpy   HtoD 4096 B     0..1024 (1024 ns: 4 GB/s)  corr 16 -> op 3
 *            DtoH 1000 B  2500..3000 (500 ns: 2 GB/s)   corr 17 -> no op
 *   memset   512 B        3000..3100 (100)           corr 18 -> op 5
 *   memory   alloc device 1 MiB @10, alloc device 2 MiB @20, free device 1 MiB @30,
 *            alloc pinned 512 KiB @40: live 1, 3, 2, 2.5 MiB -> peak 3 MiB
 *   markers  "step" (domain "ibex") start @900 id 7, end @3200 -> a 2300 ns range;
 *            "tick" instantaneous @1000 id 8
 *   one NAME record (unknown to ibex), one DRIVER API record (ignored)
 *   = 17 records, 14 events
 * Buffer B (later): external correlations CUSTOM0 11,12,13,14,16 -> 3; 15,18 -> 5;
 *   one CUSTOM1 19 -> 9 (ignored) = 8 records
 *
 * Kernel rows: gemm/op3 3 calls 600 ns (mean 200, min 100, max 300); gemm/op5 1 call
 * 400; rmsnorm/op3 1 call 50. kernel_ns = 1050 over 5 calls.
 * Ops: 3: 4 kernels 650 ns, 1 memcpy 1024 ns 4096 B; 5: 1 kernel 400 ns, 1 memset 100 ns;
 *      -1: 1 memcpy 500 ns 1000 B.
 * Activity intervals [0,1024] [1000,1100] [1200,1500] [1600,1800] [1900,1950]
 * [2000,2400] [2500,3000] [3000,3100]: union 1100+300+200+50+400+600 = 2650 ns; span
 * 0..3100 = 3100 ns. */

typedef struct trace {
    bufb a, b;
    char *gemm1, *gemm2, *rms, *step, *dom, *tick; /* heap names, wiped after consuming */
} trace;

static char *heap_str(const char *s) {
    char *p = strdup(s);
    cr_assert_not_null(p);
    return p;
}

static void build_trace(trace *t) {
    memset(t, 0, sizeof *t);
    /* Two copies of "gemm": interning must give both kernels the same name pointer. */
    t->gemm1 = heap_str("gemm"), t->gemm2 = heap_str("gemm"), t->rms = heap_str("rmsnorm");
    t->step = heap_str("step"), t->dom = heap_str("ibex"), t->tick = heap_str("tick");
    bufb *a = &t->a;
    put_marker(a, CUPTI_ACTIVITY_FLAG_MARKER_START, 7, t->step, t->dom, T0 + 900);
    put_kernel(a, t->gemm1, T0 + 1000, T0 + 1100, 11);
    put_kernel(a, t->gemm2, T0 + 1200, T0 + 1500, 12);
    put_unknown(a);
    put_kernel(a, t->gemm1, T0 + 1600, T0 + 1800, 13);
    put_kernel(a, t->rms, T0 + 1900, T0 + 1950, 14);
    put_kernel(a, t->gemm2, T0 + 2000, T0 + 2400, 15);
    put_memcpy(a, CUPTI_ACTIVITY_MEMCPY_KIND_HTOD, 4096, T0 + 0, T0 + 1024, 16);
    put_memcpy(a, CUPTI_ACTIVITY_MEMCPY_KIND_DTOH, 1000, T0 + 2500, T0 + 3000, 17);
    put_memset(a, 512, T0 + 3000, T0 + 3100, 18);
    put_memory(a, true, CUPTI_ACTIVITY_MEMORY_KIND_DEVICE, 1 << 20, T0 + 10);
    put_memory(a, true, CUPTI_ACTIVITY_MEMORY_KIND_DEVICE, 2 << 20, T0 + 20);
    put_memory(a, false, CUPTI_ACTIVITY_MEMORY_KIND_DEVICE, 1 << 20, T0 + 30);
    put_memory(a, true, CUPTI_ACTIVITY_MEMORY_KIND_PINNED, 512 << 10, T0 + 40);
    put_marker(a, CUPTI_ACTIVITY_FLAG_MARKER_INSTANTANEOUS, 8, t->tick, NULL, T0 + 1000);
    put_driver_api(a, 11);
    put_marker(a, CUPTI_ACTIVITY_FLAG_MARKER_END, 7, NULL, NULL, T0 + 3200);
    bufb *b = &t->b;
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 3, 11);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 3, 12);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 3, 13);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 3, 14);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 5, 15);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 3, 16);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 5, 18);
    put_corr(b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM1, 9, 19);
}

/* Wipes and frees everything the records pointed at: the tracer must hold copies. */
static void wipe_trace(trace *t) {
    char *s[] = {t->gemm1, t->gemm2, t->rms, t->step, t->dom, t->tick};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        memset(s[i], 'X', strlen(s[i]));
        free(s[i]);
    }
    memset(t->a.p, 0xAB, t->a.cap);
    memset(t->b.p, 0xAB, t->b.cap);
    free(t->a.p);
    free(t->b.p);
    memset(t, 0, sizeof *t);
}

/* The standard trace consumed in two buffers (dropped 3 then 4), buffers wiped. */
static ibex_cupti *standard(void) {
    ibex_cupti *c = new_tracer();
    trace t;
    build_trace(&t);
    consume_ok(c, &t.a, 3);
    consume_ok(c, &t.b, 4);
    wipe_trace(&t);
    return c;
}

/* ---------------------------------------------------------------- parsing */

Test(cupti, every_record_parsed)
{
    ibex_cupti *c = standard();
    ibex_cupti_stats st;
    ibex_cupti_get_stats(c, &st);
    cr_expect_eq(st.buffers, 2);
    cr_expect_eq(st.records, 17 + 8);
    cr_expect_eq(st.events, 14);
    cr_expect_eq(st.correlations, 7);
    cr_expect_eq(st.ignored, 2, "driver API record and the CUSTOM1 correlation: %lld", (long long)st.ignored);
    cr_expect_eq(st.unknown, 1);
    cr_expect_eq(st.untimed, 0);
    cr_expect_eq(st.bad_buffers, 0);
    int64_t n;
    const ibex_gpu_event *ev = ibex_cupti_events(c, &n);
    cr_assert_eq(n, 14);
    int count[5] = {0};
    for (int64_t i = 0; i < n; i++) count[ev[i].kind]++;
    cr_expect_eq(count[IBEX_GPU_KERNEL], 5);
    cr_expect_eq(count[IBEX_GPU_MEMCPY], 2);
    cr_expect_eq(count[IBEX_GPU_MEMSET], 1);
    cr_expect_eq(count[IBEX_GPU_MEMORY], 4);
    cr_expect_eq(count[IBEX_GPU_MARKER], 2);

    const ibex_gpu_event *k = find(c, IBEX_GPU_KERNEL, 11, 0);
    cr_assert_not_null(k);
    cr_expect_eq(k->grid[0], 64);
    cr_expect_eq(k->grid[1], 2);
    cr_expect_eq(k->grid[2], 1);
    cr_expect_eq(k->block[0], 128);
    cr_expect_eq(k->registers, 40);
    cr_expect_eq(k->shared_bytes, 1024 + 2048);
    cr_expect_eq(k->stream, 7);
    cr_expect_eq(k->flags, 0);

    const ibex_gpu_event *m = find(c, IBEX_GPU_MEMCPY, 16, 0);
    cr_assert_not_null(m);
    cr_expect_str_eq(m->name, "memcpy HtoD");
    cr_expect_eq(m->bytes, 4096);
    m = find(c, IBEX_GPU_MEMCPY, 17, 0);
    cr_assert_not_null(m);
    cr_expect_str_eq(m->name, "memcpy DtoH");
    cr_expect_eq(m->bytes, 1000);
    const ibex_gpu_event *s = find(c, IBEX_GPU_MEMSET, 18, 0);
    cr_assert_not_null(s);
    cr_expect_str_eq(s->name, "memset");
    cr_expect_eq(s->bytes, 512);
    cr_expect_eq(s->end_ns - s->start_ns, 100);

    int allocs = 0, frees = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ev[i].kind != IBEX_GPU_MEMORY) continue;
        cr_expect_eq(ev[i].start_ns, ev[i].end_ns, "memory events are instants");
        cr_expect_eq(ev[i].stream, 0, "CUPTI_INVALID_STREAM_ID becomes 0");
        if (ev[i].flags & IBEX_GPU_RELEASE) {
            frees++;
            cr_expect_str_eq(ev[i].name, "free device");
            cr_expect_eq(ev[i].bytes, 1 << 20);
            cr_expect_eq(ev[i].start_ns, 30);
        } else {
            allocs++;
            cr_expect(strcmp(ev[i].name, "alloc device") == 0 || strcmp(ev[i].name, "alloc pinned") == 0,
                      "%s", ev[i].name);
        }
    }
    cr_expect_eq(allocs, 3);
    cr_expect_eq(frees, 1);

    const ibex_gpu_event *r = find(c, IBEX_GPU_MARKER, 7, 0);
    cr_assert_not_null(r);
    cr_expect_str_eq(r->name, "step");
    cr_assert_not_null(r->domain);
    cr_expect_str_eq(r->domain, "ibex");
    cr_expect_eq(r->start_ns, 900);
    cr_expect_eq(r->end_ns, 3200);
    cr_expect_eq(r->flags, 0, "range closed: flags %u", r->flags);
    cr_expect_eq(r->thread, 4242);
    const ibex_gpu_event *tick = find(c, IBEX_GPU_MARKER, 8, 0);
    cr_assert_not_null(tick);
    cr_expect_str_eq(tick->name, "tick");
    cr_expect_null(tick->domain);
    cr_expect_eq(tick->start_ns, 1000);
    cr_expect_eq(tick->end_ns, 1000);
    ibex_cupti_free(c);
}

Test(cupti, names_interned_and_survive_the_buffer)
{
    ibex_cupti *c = standard(); /* the names and buffers are already wiped and freed */
    const ibex_gpu_event *k1 = find(c, IBEX_GPU_KERNEL, 11, 0), *k2 = find(c, IBEX_GPU_KERNEL, 12, 0);
    const ibex_gpu_event *k4 = find(c, IBEX_GPU_KERNEL, 14, 0);
    cr_assert(k1 && k2 && k4);
    cr_expect_str_eq(k1->name, "gemm");
    cr_expect_str_eq(k2->name, "gemm");
    cr_expect_eq(k1->name, k2->name, "equal names from two different strings share one pointer");
    cr_expect_str_eq(k4->name, "rmsnorm");
    const ibex_gpu_event *r = find(c, IBEX_GPU_MARKER, 7, 0);
    cr_assert_not_null(r);
    cr_expect_str_eq(r->name, "step");
    cr_expect_str_eq(r->domain, "ibex");
    ibex_cupti_free(c);
}

Test(cupti, times_relative_to_origin)
{
    ibex_cupti *c = new_tracer();
    cr_expect_eq(ibex_cupti_origin(c), T0);
    bufb b = {0};
    put_kernel(&b, "early", T0 - 500, T0 - 100, 1); /* before the origin: kept negative */
    put_kernel(&b, "late", T0 + 123456789, T0 + 123456999, 2);
    consume_ok(c, &b, 0);
    free(b.p);
    const ibex_gpu_event *e = find(c, IBEX_GPU_KERNEL, 1, 0), *l = find(c, IBEX_GPU_KERNEL, 2, 0);
    cr_assert(e && l);
    cr_expect_eq(e->start_ns, -500);
    cr_expect_eq(e->end_ns, -100);
    cr_expect_eq(l->start_ns, 123456789);
    cr_expect_eq(l->end_ns, 123456999);
    ibex_cupti_free(c);
}

Test(cupti, untimed_records_flagged_and_skipped)
{
    ibex_cupti *c = new_tracer();
    bufb b = {0};
    put_kernel(&b, "k", 0, 0, 1);               /* CUPTI: no timestamps collected */
    put_kernel(&b, "k", T0 + 10, T0 + 30, 2);
    put_kernel(&b, "k", T0 + 50, T0 + 40, 3);   /* end before start: not trusted */
    consume_ok(c, &b, 0);
    free(b.p);
    ibex_cupti_stats st;
    ibex_cupti_get_stats(c, &st);
    cr_expect_eq(st.events, 3);
    cr_expect_eq(st.untimed, 2);
    cr_expect(find(c, IBEX_GPU_KERNEL, 1, 0)->flags & IBEX_GPU_UNTIMED);
    cr_expect(find(c, IBEX_GPU_KERNEL, 3, 0)->flags & IBEX_GPU_UNTIMED);
    ibex_cupti_kernel_row *rows;
    int64_t n;
    ibex_err e = {0};
    cr_assert_eq(ibex_cupti_kernel_table(c, &rows, &n, &e), IBEX_OK, "%s", e.msg);
    cr_assert_eq(n, 1);
    cr_expect_eq(rows[0].calls, 1);
    cr_expect_eq(rows[0].total_ns, 20);
    free(rows);
    ibex_cupti_free(c);
}

/* ---------------------------------------------------------------- attribution */

Test(cupti, ops_from_correlations_in_a_later_buffer)
{
    ibex_cupti *c = new_tracer();
    trace t;
    build_trace(&t);
    consume_ok(c, &t.a, 0);
    int64_t n;
    const ibex_gpu_event *ev = ibex_cupti_events(c, &n);
    for (int64_t i = 0; i < n; i++) cr_expect_eq(ev[i].op, -1, "no correlation yet, event %lld", (long long)i);
    consume_ok(c, &t.b, 0);
    wipe_trace(&t);
    const uint32_t corr[] = {11, 12, 13, 14, 15, 16, 17, 18};
    const int32_t want[] = {3, 3, 3, 3, 5, 3, -1, 5};
    for (int i = 0; i < 8; i++) {
        const ibex_gpu_event *e = find(c, i < 5 ? IBEX_GPU_KERNEL : i < 7 ? IBEX_GPU_MEMCPY : IBEX_GPU_MEMSET, corr[i], 0);
        cr_assert_not_null(e, "corr %u", corr[i]);
        cr_expect_eq(e->op, want[i], "corr %u: op %d, want %d", corr[i], e->op, want[i]);
    }
    const ibex_gpu_event *r = find(c, IBEX_GPU_MARKER, 7, 0);
    cr_expect_eq(r->op, -1, "markers carry no op");
    ibex_cupti_free(c);
}

Test(cupti, ops_from_correlations_before_the_kernel)
{
    /* CUPTI's usual order: the correlation record precedes the activity record. */
    ibex_cupti *c = new_tracer();
    bufb b = {0};
    put_corr(&b, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, 17, 100);
    put_kernel(&b, "attn", T0 + 1, T0 + 2, 100);
    put_kernel(&b, "attn", T0 + 3, T0 + 4, 101);
    consume_ok(c, &b, 0);
    free(b.p);
    cr_expect_eq(find(c, IBEX_GPU_KERNEL, 100, 0)->op, 17);
    cr_expect_eq(find(c, IBEX_GPU_KERNEL, 101, 0)->op, -1);
    ibex_cupti_free(c);
}

Test(cupti, nvtx_ranges_pair_across_buffers)
{
    ibex_cupti *c = new_tracer();
    bufb a = {0}, b = {0};
    put_marker(&a, CUPTI_ACTIVITY_FLAG_MARKER_START, 1, "prefill", "ibex", T0 + 100);
    put_marker(&b, CUPTI_ACTIVITY_FLAG_MARKER_END, 1, NULL, NULL, T0 + 400);
    consume_ok(c, &a, 0);
    const ibex_gpu_event *r = find(c, IBEX_GPU_MARKER, 1, 0);
    cr_assert_not_null(r);
    cr_expect(r->flags & IBEX_GPU_OPEN, "a start without its end is open");
    cr_expect_eq(r->end_ns, r->start_ns);
    consume_ok(c, &b, 0);
    r = find(c, IBEX_GPU_MARKER, 1, 0);
    cr_expect_eq(r->flags, 0);
    cr_expect_eq(r->start_ns, 100);
    cr_expect_eq(r->end_ns, 400);

    /* The end's buffer first (another thread's buffer can complete earlier). */
    bufb d = {0}, e = {0};
    put_marker(&d, CUPTI_ACTIVITY_FLAG_MARKER_END, 2, NULL, NULL, T0 + 900);
    put_marker(&e, CUPTI_ACTIVITY_FLAG_MARKER_START, 2, "decode", "ibex", T0 + 600);
    consume_ok(c, &d, 0);
    cr_expect_null(find(c, IBEX_GPU_MARKER, 2, 0), "an end alone makes no event");
    consume_ok(c, &e, 0);
    r = find(c, IBEX_GPU_MARKER, 2, 0);
    cr_assert_not_null(r);
    cr_expect_eq(r->flags, 0);
    cr_expect_eq(r->start_ns, 600);
    cr_expect_eq(r->end_ns, 900);
    ibex_cupti_stats st;
    ibex_cupti_get_stats(c, &st);
    cr_expect_eq(st.events, 2);
    free(a.p), free(b.p), free(d.p), free(e.p);
    ibex_cupti_free(c);
}

Test(cupti, dropped_summed)
{
    ibex_cupti *c = standard(); /* dropped 3 + 4 */
    cr_expect_eq(ibex_cupti_dropped(c), 7);
    bufb b = {0};
    put_kernel(&b, "k", T0, T0 + 1, 1);
    consume_ok(c, &b, 10);
    free(b.p);
    cr_expect_eq(ibex_cupti_dropped(c), 17);
    ibex_err e = {0};
    cr_expect_eq(ibex_cupti_consume(c, NULL, 0, 5, &e), IBEX_OK, "an empty buffer still reports drops");
    cr_expect_eq(ibex_cupti_dropped(c), 22);
    ibex_cupti_free(c);
}

/* ---------------------------------------------------------------- tables */

Test(cupti, kernel_table_exact)
{
    ibex_cupti *c = standard();
    ibex_cupti_kernel_row *r;
    int64_t n;
    ibex_err e = {0};
    cr_assert_eq(ibex_cupti_kernel_table(c, &r, &n, &e), IBEX_OK, "%s", e.msg);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(r[0].name, "gemm");
    cr_expect_eq(r[0].op, 3);
    cr_expect_eq(r[0].calls, 3);
    cr_expect_eq(r[0].total_ns, 600);
    NEAR(r[0].mean_ns, 200.0, 0);
    cr_expect_eq(r[0].min_ns, 100);
    cr_expect_eq(r[0].max_ns, 300);
    cr_expect_str_eq(r[1].name, "gemm");
    cr_expect_eq(r[1].op, 5);
    cr_expect_eq(r[1].calls, 1);
    cr_expect_eq(r[1].total_ns, 400);
    cr_expect_eq(r[1].min_ns, 400);
    cr_expect_eq(r[1].max_ns, 400);
    cr_expect_str_eq(r[2].name, "rmsnorm");
    cr_expect_eq(r[2].op, 3);
    cr_expect_eq(r[2].calls, 1);
    cr_expect_eq(r[2].total_ns, 50);
    NEAR(r[2].mean_ns, 50.0, 0);
    free(r);
    ibex_cupti_free(c);
}

Test(cupti, op_table_exact)
{
    ibex_cupti *c = standard();
    ibex_cupti_op_row *r;
    int64_t n;
    ibex_err e = {0};
    cr_assert_eq(ibex_cupti_op_table(c, &r, &n, &e), IBEX_OK, "%s", e.msg);
    cr_assert_eq(n, 3);
    cr_expect_eq(r[0].op, 3);
    cr_expect_eq(r[0].kernels, 4);
    cr_expect_eq(r[0].kernel_ns, 650);
    cr_expect_eq(r[0].memcpys, 1);
    cr_expect_eq(r[0].memcpy_ns, 1024);
    cr_expect_eq(r[0].memcpy_bytes, 4096);
    cr_expect_eq(r[0].memsets, 0);
    cr_expect_eq(r[1].op, 5);
    cr_expect_eq(r[1].kernels, 1);
    cr_expect_eq(r[1].kernel_ns, 400);
    cr_expect_eq(r[1].memcpys, 0);
    cr_expect_eq(r[1].memsets, 1);
    cr_expect_eq(r[1].memset_ns, 100);
    cr_expect_eq(r[2].op, -1, "unattributed last");
    cr_expect_eq(r[2].kernels, 0);
    cr_expect_eq(r[2].memcpys, 1);
    cr_expect_eq(r[2].memcpy_ns, 500);
    cr_expect_eq(r[2].memcpy_bytes, 1000);
    free(r);
    ibex_cupti_free(c);
}

static json_int_t jint(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "'%s' is not an integer", key);
    return json_integer_value(v);
}

static double jnum(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_number(v), "'%s' is not a number", key);
    return json_number_value(v);
}

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_string(v), "'%s' is not a string", key);
    return json_string_value(v);
}

Test(cupti, json_fields_and_numbers)
{
    ibex_cupti *c = standard();
    /* Op 3 has a name, op 5 is beyond the array: null. */
    const char *names[] = {"embed", NULL, "rope", "matmul"};
    json_t *j = ibex_cupti_to_json(c, names, 4, 5300.0);
    cr_assert_not_null(j);
    cr_expect_eq(jint(j, "events"), 14);
    cr_expect_eq(jint(j, "dropped"), 7);
    cr_expect_eq(jint(j, "unknown_records"), 1);
    cr_expect_eq(jint(j, "bad_buffers"), 0);
    cr_expect_eq(jint(j, "untimed"), 0);
    cr_expect_eq(jint(j, "span_ns"), 3100);
    cr_expect_eq(jint(j, "busy_ns"), 2650);
    NEAR(jnum(j, "wall_ns"), 5300.0, 0);
    NEAR(jnum(j, "busy_fraction"), 2650.0 / 5300.0, 1e-12);
    cr_expect_eq(jint(j, "kernel_ns"), 1050);
    cr_expect_eq(jint(j, "kernel_calls"), 5);

    json_t *k = json_object_get(j, "kernels");
    cr_assert(json_is_array(k));
    cr_assert_eq(json_array_size(k), 3);
    json_t *k0 = json_array_get(k, 0);
    cr_expect_str_eq(jstr(k0, "name"), "gemm");
    cr_expect_eq(jint(k0, "op"), 3);
    cr_expect_str_eq(jstr(k0, "op_name"), "matmul");
    cr_expect_eq(jint(k0, "calls"), 3);
    cr_expect_eq(jint(k0, "total_ns"), 600);
    NEAR(jnum(k0, "mean_ns"), 200.0, 0);
    cr_expect_eq(jint(k0, "min_ns"), 100);
    cr_expect_eq(jint(k0, "max_ns"), 300);
    NEAR(jnum(k0, "share"), 600.0 / 1050.0, 1e-12);
    json_t *k1 = json_array_get(k, 1);
    cr_expect_eq(jint(k1, "op"), 5);
    cr_expect(json_is_null(json_object_get(k1, "op_name")), "op 5 has no name");

    json_t *o = json_object_get(j, "by_op");
    cr_assert(json_is_array(o));
    cr_assert_eq(json_array_size(o), 3);
    json_t *o0 = json_array_get(o, 0), *o2 = json_array_get(o, 2);
    cr_expect_eq(jint(o0, "op"), 3);
    cr_expect_str_eq(jstr(o0, "name"), "matmul");
    cr_expect_eq(jint(o0, "kernels"), 4);
    cr_expect_eq(jint(o0, "kernel_ns"), 650);
    cr_expect_eq(jint(o0, "memcpys"), 1);
    cr_expect_eq(jint(o0, "memcpy_ns"), 1024);
    cr_expect_eq(jint(o0, "memcpy_bytes"), 4096);
    cr_expect_eq(jint(o0, "memsets"), 0);
    cr_expect_eq(jint(o0, "memset_ns"), 0);
    NEAR(jnum(o0, "share"), 650.0 / 1050.0, 1e-12);
    cr_expect_eq(jint(o2, "op"), -1);
    cr_expect(json_is_null(json_object_get(o2, "name")));
    cr_expect_eq(jint(o2, "memcpy_bytes"), 1000);
    NEAR(jnum(o2, "share"), 0.0, 0);

    json_t *mc = json_object_get(j, "memcpy");
    cr_assert(json_is_object(mc));
    cr_expect_eq(json_object_size(mc), 2, "only the directions seen");
    json_t *h = json_object_get(mc, "HtoD"), *d = json_object_get(mc, "DtoH");
    cr_assert(h && d);
    cr_expect_eq(jint(h, "count"), 1);
    cr_expect_eq(jint(h, "bytes"), 4096);
    cr_expect_eq(jint(h, "total_ns"), 1024);
    NEAR(jnum(h, "gb_per_s"), 4.0, 1e-12);
    NEAR(jnum(d, "gb_per_s"), 2.0, 1e-12);

    json_t *ms = json_object_get(j, "memset");
    cr_expect_eq(jint(ms, "count"), 1);
    cr_expect_eq(jint(ms, "bytes"), 512);
    cr_expect_eq(jint(ms, "total_ns"), 100);

    json_t *mem = json_object_get(j, "memory");
    cr_expect_eq(jint(mem, "allocs"), 3);
    cr_expect_eq(jint(mem, "alloc_bytes"), (1 << 20) + (2 << 20) + (512 << 10));
    cr_expect_eq(jint(mem, "frees"), 1);
    cr_expect_eq(jint(mem, "free_bytes"), 1 << 20);
    cr_expect_eq(jint(mem, "peak_bytes"), 3 << 20);

    json_t *rg = json_object_get(j, "ranges");
    cr_assert(json_is_array(rg));
    cr_assert_eq(json_array_size(rg), 2);
    json_t *r0 = json_array_get(rg, 0), *r1 = json_array_get(rg, 1);
    cr_expect_str_eq(jstr(r0, "name"), "step");
    cr_expect_str_eq(jstr(r0, "domain"), "ibex");
    cr_expect_eq(jint(r0, "calls"), 1);
    cr_expect_eq(jint(r0, "total_ns"), 2300);
    cr_expect_str_eq(jstr(r1, "name"), "tick");
    cr_expect(json_is_null(json_object_get(r1, "domain")));
    cr_expect_eq(jint(r1, "total_ns"), 0);
    json_decref(j);

    /* No wall time: the fraction is over the span. */
    j = ibex_cupti_to_json(c, NULL, 0, 0);
    cr_assert_not_null(j);
    cr_expect(json_is_null(json_object_get(j, "wall_ns")));
    NEAR(jnum(j, "busy_fraction"), 2650.0 / 3100.0, 1e-12);
    cr_expect(json_is_null(json_object_get(json_array_get(json_object_get(j, "kernels"), 0), "op_name")));
    json_decref(j);
    ibex_cupti_free(c);
}

Test(cupti, json_of_nothing)
{
    ibex_cupti *c = new_tracer();
    json_t *j = ibex_cupti_to_json(c, NULL, 0, 1000.0);
    cr_assert_not_null(j);
    cr_expect_eq(jint(j, "events"), 0);
    cr_expect_eq(jint(j, "span_ns"), 0);
    NEAR(jnum(j, "busy_fraction"), 0.0, 0);
    cr_expect_eq(json_array_size(json_object_get(j, "kernels")), 0);
    cr_expect_eq(json_object_size(json_object_get(j, "memcpy")), 0);
    json_decref(j);
    ibex_cupti_free(c);
}

/* ---------------------------------------------------------------- clear, copy */

Test(cupti, clear_drops_everything_and_goes_on)
{
    ibex_cupti *c = standard();
    ibex_cupti_clear(c);
    int64_t n;
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 0);
    ibex_cupti_stats st;
    ibex_cupti_get_stats(c, &st);
    cr_expect_eq(st.records, 0);
    cr_expect_eq(st.dropped, 0);
    cr_expect_eq(ibex_cupti_origin(c), T0, "the origin survives a clear");
    /* The correlation map went too: kernel 11 is unattributed now. */
    bufb b = {0};
    put_kernel(&b, "gemm", T0 + 5, T0 + 9, 11);
    consume_ok(c, &b, 0);
    free(b.p);
    const ibex_gpu_event *k = find(c, IBEX_GPU_KERNEL, 11, 0);
    cr_assert_not_null(k);
    cr_expect_eq(k->op, -1);
    cr_expect_str_eq(k->name, "gemm");
    cr_expect_eq(k->end_ns - k->start_ns, 4);
    ibex_cupti_free(c);
}

Test(cupti, copy_events_snapshot)
{
    ibex_cupti *c = standard();
    int64_t n, m;
    const ibex_gpu_event *ev = ibex_cupti_events(c, &n);
    ibex_gpu_event *copy;
    ibex_err e = {0};
    cr_assert_eq(ibex_cupti_copy_events(c, &copy, &m, &e), IBEX_OK, "%s", e.msg);
    cr_assert_eq(m, n);
    cr_expect(memcmp(copy, ev, (size_t)n * sizeof *ev) == 0);
    free(copy);
    ibex_cupti_clear(c);
    cr_assert_eq(ibex_cupti_copy_events(c, &copy, &m, &e), IBEX_OK);
    cr_expect_null(copy);
    cr_expect_eq(m, 0);
    ibex_cupti_free(c);
}

/* ---------------------------------------------------------------- broken buffers */

Test(cupti, truncated_buffer_is_an_error)
{
    ibex_cupti *c = new_tracer();
    bufb b = {0};
    put_kernel(&b, "whole", T0 + 1, T0 + 2, 1);
    size_t one = b.n;
    put_kernel(&b, "cut", T0 + 3, T0 + 4, 2);
    ibex_err e = {0};
    /* The second record cut 16 bytes in. */
    cr_expect_eq(ibex_cupti_consume(c, b.p, one + 16, 0, &e), IBEX_ERR_FORMAT);
    cr_expect(strstr(e.msg, "16 trailing bytes") != NULL, "%s", e.msg);
    int64_t n;
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 1, "the whole record before the cut is kept");
    /* Only part of the first record. */
    memset(&e, 0, sizeof e);
    cr_expect_eq(ibex_cupti_consume(c, b.p, one - 8, 0, &e), IBEX_ERR_FORMAT);
    cr_expect(strstr(e.msg, "trailing bytes") != NULL, "%s", e.msg);
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 1);
    ibex_cupti_stats st;
    ibex_cupti_get_stats(c, &st);
    cr_expect_eq(st.bad_buffers, 2);
    free(b.p);
    ibex_cupti_free(c);
}

Test(cupti, garbage_buffer_is_an_error)
{
    ibex_cupti *c = new_tracer();
    bufb b = {0};
    put_kernel(&b, "good", T0 + 1, T0 + 2, 1);
    size_t good = b.n;
    uint8_t junk[256];
    memset(junk, 0xff, sizeof junk);
    put(&b, junk, sizeof junk);
    ibex_err e = {0};
    cr_expect_eq(ibex_cupti_consume(c, b.p, b.n, 0, &e), IBEX_ERR_FORMAT);
    cr_expect(strstr(e.msg, "record 1") != NULL && strstr(e.msg, "CUPTI_ERROR") != NULL, "%s", e.msg);
    int64_t n;
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 1);

    /* Pseudo-random junk from the first byte (fixed seed): errors, never crashes. The
     * kind field would have to land on one of CUPTI's few kinds to be read as a record. */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 64; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        if ((uint32_t)(junk[0] | junk[1] << 8 | junk[2] << 16 | (uint32_t)junk[3] << 24) < 1024) continue;
        memset(&e, 0, sizeof e);
        cr_expect_eq(ibex_cupti_consume(c, junk, 8 + (size_t)round * 3, 0, &e), IBEX_ERR_FORMAT, "round %d", round);
    }
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 1);
    memset(&e, 0, sizeof e);
    cr_expect_eq(ibex_cupti_consume(c, NULL, 64, 0, &e), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_cupti_consume(c, b.p, good, 0, &e), IBEX_OK, "the tracer still works: %s", e.msg);
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 2);
    free(b.p);
    ibex_cupti_free(c);
}

Test(cupti, unknown_kinds_skipped)
{
    ibex_cupti *c = new_tracer();
    bufb b = {0};
    put_unknown(&b);
    put_kernel(&b, "after", T0 + 1, T0 + 2, 1);
    put_unknown(&b);
    put_unknown(&b);
    consume_ok(c, &b, 0);
    free(b.p);
    ibex_cupti_stats st;
    ibex_cupti_get_stats(c, &st);
    cr_expect_eq(st.unknown, 3);
    cr_expect_eq(st.records, 4);
    cr_expect_eq(st.events, 1);
    cr_expect_not_null(find(c, IBEX_GPU_KERNEL, 1, 0));
    ibex_cupti_free(c);
}

/* ---------------------------------------------------------------- CUPTI itself */

Test(cupti, start_on_this_machine, .timeout = 120)
{
    ibex_err e = {0};
    ibex_cupti *c = ibex_cupti_new(&e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_expect_eq(ibex_cupti_flush(c, &e), IBEX_ERR_INVALID, "flush before start");
    memset(&e, 0, sizeof e);
    ibex_status s = ibex_cupti_start(c, &e);
    if (s != IBEX_OK) {
        /* No GPU or driver: an error that says so, and the tracer stays idle. */
        cr_expect(s == IBEX_ERR_BACKEND || s == IBEX_ERR_INVALID, "status %d", s);
        cr_expect(strstr(e.msg, "cupti") != NULL, "message: %s", e.msg);
        cr_log_info("CUPTI did not start here: %s", e.msg);
        cr_expect(!ibex_cupti_attributes_ops(c));
        cr_expect_eq(ibex_cupti_flush(c, &e), IBEX_ERR_INVALID, "still idle");
        cr_expect_eq(ibex_cupti_stop(c, &e), IBEX_OK, "stop when not started is a no-op");
        ibex_cupti_push_op(c, 1); /* no-ops when not started */
        ibex_cupti_pop_op(c);
        memset(&e, 0, sizeof e);
        cr_expect_neq(ibex_cupti_start(c, &e), IBEX_OK, "a second try fails the same way");
        cr_expect(e.msg[0] != 0);
        /* A failed start released the process-wide slot: another tracer gets the same
         * CUPTI error, not "another tracer is started". */
        ibex_cupti *d = ibex_cupti_new(&e);
        cr_assert_not_null(d);
        memset(&e, 0, sizeof e);
        cr_expect_neq(ibex_cupti_start(d, &e), IBEX_OK);
        cr_expect(strstr(e.msg, "another ibex tracer") == NULL, "%s", e.msg);
        ibex_cupti_free(d);
        ibex_cupti_free(c);
        return;
    }
    /* CUPTI started (a GPU machine): one tracer per process, and flush/stop work. */
    cr_expect_neq(ibex_cupti_origin(c), 0);
    cr_log_info("CUPTI started; op attribution %s", ibex_cupti_attributes_ops(c) ? "on" : "off");
    ibex_cupti *d = ibex_cupti_new(&e);
    cr_assert_not_null(d);
    memset(&e, 0, sizeof e);
    cr_expect_eq(ibex_cupti_start(d, &e), IBEX_ERR_INVALID);
    cr_expect(strstr(e.msg, "another ibex tracer") != NULL, "%s", e.msg);
    ibex_cupti_free(d);
    ibex_cupti_push_op(c, 4);
    ibex_cupti_pop_op(c);
    cr_expect_eq(ibex_cupti_flush(c, &e), IBEX_OK, "%s", e.msg);
    cr_expect_eq(ibex_cupti_stop(c, &e), IBEX_OK, "%s", e.msg);
    int64_t n;
    ibex_cupti_events(c, &n);
    cr_expect_eq(n, 0, "no CUDA work, no kernel events");
    cr_expect_eq(ibex_cupti_flush(c, &e), IBEX_OK, "flush after stop is a no-op");
    ibex_cupti_free(c);
}

/* instrument_overhead.yaml measures what each instruments level costs, so its `off` and
 * `nvtx` points must run with CUPTI disabled, whatever ran before them (the runner starts
 * the tracer before the first point when any point asks for cupti, and the points can
 * come in any order). The stand-in stands for CUPTI's control calls, so this runs
 * without a GPU: the enabled activity kinds after the runner's per-point call are the
 * ground truth. A runner that started CUPTI once for the whole run (the old behaviour)
 * leaves kinds enabled on the off and nvtx points and fails. */
Test(cupti, instrument_overhead_off_and_nvtx_points_are_untraced)
{
    if (!ibex_cupti_stand_in()) cr_skip_test("libcupti cannot be opened here");
    ibex_err e = {0};
    ibex_scenario *s = ibex_scenario_load(IBEX_SOURCE_DIR "/scenarios/instrument_overhead.yaml", &e);
    cr_assert_not_null(s, "%s", e.msg);
    ibex_cupti *c = ibex_cupti_new(&e);
    cr_assert_not_null(c, "%s", e.msg);
    cr_assert_eq(ibex_cupti_start(c, &e), IBEX_OK, "run start (instruments_setup): %s", e.msg);
    cr_assert_gt(ibex_cupti_stand_in_enabled(), 0, "the stand-in sees what start enables");
    int seen[3] = {0};
    /* the file's order (off, nvtx, cupti), then reversed: a cupti point followed by the others */
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < s->n_points; k++) {
            const ibex_point *pt = &s->points[pass ? s->n_points - 1 - k : k];
            const bool want = pt->instruments == IBEX_INSTR_CUPTI;
            cr_assert_eq(ibex_cupti_for_point(c, want, &e), IBEX_OK, "%s", e.msg);
            const int kinds = ibex_cupti_stand_in_enabled();
            cr_assert_eq(kinds > 0, want, "point %d (instruments %s, pass %d): %d CUPTI activity kinds enabled", k,
                         ibex_instruments_name(pt->instruments), pass, kinds);
            cr_assert_eq(ibex_cupti_started(c), want);
            cr_assert_eq(ibex_cupti_attributes_ops(c), want, "ops attributed only on cupti points");
            seen[pt->instruments]++;
        }
    cr_assert(seen[IBEX_INSTR_OFF] == 2 && seen[IBEX_INSTR_NVTX] == 2 && seen[IBEX_INSTR_CUPTI] == 2,
              "the scenario sweeps off, nvtx and cupti (%d, %d, %d)", seen[0], seen[1], seen[2]);
    cr_assert_eq(ibex_cupti_for_point(NULL, true, &e), IBEX_OK, "no tracer (CUPTI could not start): no-op");
    ibex_cupti_free(c);
    cr_assert_eq(ibex_cupti_stand_in_enabled(), 0, "free stops the tracer");
    ibex_scenario_free(s);
}

#endif
