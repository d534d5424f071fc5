/* cupti.h — GPU activity tracing with CUPTI: kernels, memory copies and sets,
 * allocations and NVTX ranges as the GPU saw them, attributed to engine ops, and the
 * per-kernel / per-op tables that go into results.json.
 *
 * Use (the runner):
 *
 *     ibex_cupti *c = ibex_cupti_new(&err);
 *     if (ibex_cupti_start(c, &err) != IBEX_OK) { ...fall back to event timers... }
 *     for each point:
 *         ibex_cupti_clear(c);
 *         for each op: ibex_cupti_push_op(c, op); <launches>; ibex_cupti_pop_op(c);
 *         <synchronize the device>; ibex_cupti_flush(c, &err);
 *         json_t *j = ibex_cupti_to_json(c, op_names, n_ops, wall_ns);
 *     ibex_cupti_stop(c, &err); ibex_cupti_free(c);
 *
 * One tracer per process: CUPTI's buffer callbacks carry no user pointer, so the
 * started tracer is a process-wide singleton and a second ibex_cupti_start fails until
 * the first is stopped or freed. Call ibex_cupti_start before the first CUDA call of the
 * process (before the CUDA backend is created) so every kernel is seen. NVTX ranges
 * reach CUPTI only when NVTX_INJECTION64_PATH names libcupti.so.
 *
 * Without CUPTI at build time (IBEX_HAVE_CUPTI undefined) every function that can fail
 * returns IBEX_ERR_UNSUPPORTED with "this ibex was built without CUPTI"; ibex_cupti_new
 * returns NULL.
 *
 * Times: every ns value is relative to the tracer's origin, the cuptiGetTimestamp value
 * taken by ibex_cupti_start (ibex_cupti_set_origin sets it when replaying buffers).
 * Records from before the origin keep their negative times (nothing is clamped).
 *
 * results.json "gpu" object (ibex_cupti_to_json):
 *
 *   { "events": N, "dropped": N, "unknown_records": N, "bad_buffers": N, "untimed": N,
 *     "span_ns": first GPU activity start .. last end (kernels, memcpy, memset),
 *     "busy_ns": length of the union of those intervals,
 *     "wall_ns": the caller's wall time (null when it gave <= 0),
 *     "busy_fraction": busy_ns / wall_ns (busy_ns / span_ns when no wall time),
 *     "kernel_ns": sum of kernel durations, "kernel_calls": N,
 *     "kernels": [ { "name", "op", "op_name", "calls", "total_ns", "mean_ns",
 *                    "min_ns", "max_ns", "share" } ... ]       (total_ns descending)
 *     "by_op":   [ { "op", "name", "kernels", "kernel_ns", "memcpys", "memcpy_ns",
 *                    "memcpy_bytes", "memsets", "memset_ns", "share" } ... ]  (op ascending, -1 last)
 *     "memcpy":  { "HtoD": { "count", "bytes", "total_ns", "gb_per_s" }, ... }  (directions seen)
 *     "memset":  { "count", "bytes", "total_ns" },
 *     "memory":  { "allocs", "alloc_bytes", "frees", "free_bytes", "peak_bytes" },
 *     "ranges":  [ { "name", "domain", "calls", "total_ns", "mean_ns", "min_ns", "max_ns" } ... ] }
 *
 *   op -1 means "launched outside any pushed op"; op_name/name are null when the caller
 *   gave no name for that op. share = total_ns / kernel_ns (kernels and by_op rows).
 *   gb_per_s = bytes / total_ns (1 byte/ns = 1 GB/s). mean_ns = total_ns / calls.
 *   peak_bytes = the highest running sum of allocated minus freed bytes, in time order. */
#ifndef IBEX_CUPTI_H
#define IBEX_CUPTI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kernels/status.h"

typedef struct ibex_cupti ibex_cupti;

typedef enum ibex_gpu_event_kind {
    IBEX_GPU_KERNEL, /* one kernel execution */
    IBEX_GPU_MEMCPY, /* one memory copy; name says the direction ("memcpy HtoD") */
    IBEX_GPU_MEMSET, /* one memset */
    IBEX_GPU_MEMORY, /* one allocation or release (an instant: start_ns == end_ns) */
    IBEX_GPU_MARKER, /* one NVTX range (start/end pair) or instantaneous marker */
} ibex_gpu_event_kind;

/* ibex_gpu_event.flags */
enum {
    IBEX_GPU_UNTIMED = 1u << 0, /* CUPTI could not time it (start = end = 0 in the record):
                                 * times are 0 and every table skips it */
    IBEX_GPU_OPEN = 1u << 1,    /* marker: start seen, end not (yet): end_ns == start_ns */
    IBEX_GPU_RELEASE = 1u << 2, /* memory: a release (free) rather than an allocation */
};

/* One activity record ibex keeps. Strings are interned in the tracer: valid until
 * ibex_cupti_clear or ibex_cupti_free, whatever happens to CUPTI's buffers. */
typedef struct ibex_gpu_event {
    ibex_gpu_event_kind kind;
    uint32_t flags;          /* IBEX_GPU_* */
    const char *name;        /* kernel: as CUPTI gives it (mangled C++ names stay mangled);
                              * "memcpy HtoD" ...; "memset"; "alloc device" / "free pinned" ...;
                              * marker: the NVTX message ("" if none) */
    const char *domain;      /* marker: the NVTX domain, NULL for the default domain */
    int64_t start_ns;        /* relative to the origin, may be negative */
    int64_t end_ns;          /* >= start_ns */
    int64_t bytes;           /* memcpy / memset / memory; 0 otherwise */
    uint32_t device;         /* CUDA device id (markers: 0) */
    uint32_t stream;         /* CUDA stream id (markers, synchronous allocations: 0) */
    uint32_t thread;         /* markers: the OS thread id that pushed the range; 0 otherwise */
    uint32_t correlation;    /* CUPTI correlation id (links to the launching API call) */
    uint32_t marker_id;      /* markers: the NVTX range id */
    int32_t op;              /* the op id pushed (ibex_cupti_push_op) when it was launched;
                              * -1 if none (or not known yet: see ibex_cupti_consume) */
    int32_t grid[3];         /* kernels: launch configuration; 0 otherwise */
    int32_t block[3];
    int32_t registers;       /* per thread */
    int32_t shared_bytes;    /* static + dynamic shared memory per block */
} ibex_gpu_event;

/* Counters over everything consumed since the last clear. */
typedef struct ibex_cupti_stats {
    int64_t buffers;      /* buffers consumed */
    int64_t bad_buffers;  /* buffers whose walk stopped on an error */
    int64_t records;      /* records walked */
    int64_t events;       /* records kept as ibex_gpu_event (a range's start+end make one) */
    int64_t correlations; /* external-correlation records seen */
    int64_t ignored;      /* known kinds ibex does not keep (driver API records, NVTX sync
                           * markers, other external-correlation kinds) */
    int64_t unknown;      /* records of kinds ibex does not know, skipped */
    int64_t untimed;      /* kept events flagged IBEX_GPU_UNTIMED */
    uint64_t dropped;     /* records CUPTI dropped (cuptiActivityGetNumDroppedRecords), summed */
} ibex_cupti_stats;

/* Per (kernel name, op): rows sorted by total_ns descending (then name, then op). */
typedef struct ibex_cupti_kernel_row {
    const char *name; /* interned, see ibex_gpu_event */
    int32_t op;
    int64_t calls;
    int64_t total_ns;
    int64_t min_ns;
    int64_t max_ns;
    double mean_ns; /* total_ns / calls */
} ibex_cupti_kernel_row;

/* Per op id (-1: outside any op): rows sorted by op ascending, -1 last. */
typedef struct ibex_cupti_op_row {
    int32_t op;
    int64_t kernels;
    int64_t kernel_ns;
    int64_t memcpys;
    int64_t memcpy_ns;
    int64_t memcpy_bytes;
    int64_t memsets;
    int64_t memset_ns;
} ibex_cupti_op_row;

/* A tracer in the idle state (nothing enabled in CUPTI). NULL with err set when out of
 * memory or when built without CUPTI. */
ibex_cupti *ibex_cupti_new(ibex_err *err);

/* The libcupti file the first successful ibex_cupti_new opened ("" before that, or in a
 * build without CUPTI). The binary does not link libcupti: ibex_cupti_new opens it (see
 * kernels/cuda/cuda_libs.h for where it looks) and fails with err naming it when absent. */
const char *ibex_cupti_library(void);

/* Whether c is started (recording activity); false for NULL. The runner stops the
 * tracer for points that do not ask for `cupti` and starts it again for those that do
 * (ibex_cupti_for_point). */
bool ibex_cupti_started(const ibex_cupti *c);

/* The per-point policy: CUPTI traces exactly the points that ask for it, so a point
 * with instruments off or nvtx measures no CUPTI overhead. want: the point's instruments
 * are `cupti`. Starts c when want and it is not started, stops it (flush, disable every
 * kind) when !want and it is; nothing otherwise. NULL c is a no-op (IBEX_OK). Returns
 * start's or stop's status. */
ibex_status ibex_cupti_for_point(ibex_cupti *c, bool want, ibex_err *err);

/* Tests only: makes CUPTI's control calls (enable/disable, flush, register, timestamps,
 * version, correlation push/pop) go to an in-process stand-in that accepts them and
 * keeps the set of enabled activity kinds, so the start/stop policy can be checked on a
 * machine without a GPU; record parsing still uses libcupti. Call before ibex_cupti_new.
 * false in builds without CUPTI, or when libcupti cannot be opened. */
bool ibex_cupti_stand_in(void);
/* Tests only: activity kinds the stand-in has enabled now (0 when nothing is traced). */
int ibex_cupti_stand_in_enabled(void);

/* Stops the tracer if it is started (errors ignored), then frees it. NULL is a no-op. */
void ibex_cupti_free(ibex_cupti *c);

/* idle/stopped -> started: claims the process-wide tracer slot, registers the buffer
 * callbacks, enables kernel, memcpy and memset activity (required) and allocation,
 * NVTX marker, driver-API and external-correlation activity (best effort: driver-API
 * records are what CUPTI hangs external correlations on, so external correlation is
 * enabled only with them; ibex skips them), then takes the origin timestamp. A restart
 * after stop keeps the first origin and the events. On failure (no GPU or driver,
 * another CUPTI subscriber, another ibex tracer started, a libcupti whose record
 * layouts differ from the headers ibex was built with) nothing stays enabled, the
 * state is unchanged and err says why: the runner then carries on with CUDA event
 * timers. */
ibex_status ibex_cupti_start(ibex_cupti *c, ibex_err *err);

/* Whether the started tracer can attribute kernels to ops (external correlation and
 * driver-API activity are enabled); false when not started. */
bool ibex_cupti_attributes_ops(const ibex_cupti *c);

/* Forces CUPTI to hand back every buffer, including partly filled ones
 * (cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED)); all completed records are
 * then parsed into c. Records of work still running on the GPU come later: synchronize
 * the device first. Returns IBEX_ERR_FORMAT if a buffer failed to parse since the last
 * flush (its good records are kept). No-op when stopped; IBEX_ERR_INVALID when idle. */
ibex_status ibex_cupti_flush(ibex_cupti *c, ibex_err *err);

/* started -> stopped: flush, disable every kind start enabled, release the tracer
 * slot. Events stay readable. No-op when not started. */
ibex_status ibex_cupti_stop(ibex_cupti *c, ibex_err *err);

/* Drops the events, the interned names, the correlation map, the unpaired NVTX
 * markers and the counters; tracing (and the origin) go on. Flush first, or records
 * from before the clear arrive after it. */
void ibex_cupti_clear(ibex_cupti *c);

/* External correlation: push an op id (>= 0) before an op's launches and pop after.
 * CUPTI then emits an EXTERNAL_CORRELATION record (kind CUSTOM0) mapping each launch's
 * correlation id to op, and ibex uses it to set ibex_gpu_event.op. The stack is per
 * thread and nests (the innermost op wins). No-ops unless c is started with external
 * correlation enabled. */
void ibex_cupti_push_op(ibex_cupti *c, int32_t op);
void ibex_cupti_pop_op(ibex_cupti *c);

/* The events parsed so far, in the order their records were consumed (not time order).
 * The array is owned by c and valid until the next consume, flush, clear or free: read
 * it after ibex_cupti_stop, or after ibex_cupti_flush while no GPU work is in flight
 * (CUPTI delivers full buffers from its own thread at any time). ibex_cupti_copy_events
 * takes a snapshot safely at any time. */
const ibex_gpu_event *ibex_cupti_events(const ibex_cupti *c, int64_t *n);

/* A malloc'ed copy of the events (free() it); names stay owned by c. *out = NULL and
 * *n = 0 for no events. IBEX_ERR_NOMEM on allocation failure. */
ibex_status ibex_cupti_copy_events(const ibex_cupti *c, ibex_gpu_event **out, int64_t *n, ibex_err *err);

/* Records CUPTI dropped (buffers full or not supplied), summed over buffers. */
uint64_t ibex_cupti_dropped(const ibex_cupti *c);
void ibex_cupti_get_stats(const ibex_cupti *c, ibex_cupti_stats *out);

/* The origin (cuptiGetTimestamp ns) and CLOCK_MONOTONIC seconds read at the same
 * moment, for placing GPU events on the host timeline: host_s = host_origin_s +
 * event_ns * 1e-9. Both 0 before the first start. set_origin sets the CUPTI origin for
 * buffers consumed afterwards (replays and tests); the host origin is left alone. */
uint64_t ibex_cupti_origin(const ibex_cupti *c);
double ibex_cupti_host_origin_s(const ibex_cupti *c);
void ibex_cupti_set_origin(ibex_cupti *c, uint64_t origin_ns);

/* Parses one completed buffer of valid_bytes bytes and adds dropped to the dropped
 * count. Walks records with cuptiActivityGetNextRecord until
 * CUPTI_ERROR_MAX_LIMIT_REACHED. Known kinds become events, external correlations fill
 * the correlation map, unknown kinds are counted and skipped. A walk that stops on any
 * other CUPTI error, or that leaves trailing bytes after the last whole record of a
 * known kind (a truncated buffer), returns IBEX_ERR_FORMAT naming the record and byte
 * offset; the records before it are kept. Names are copied, so buf may be freed or
 * reused afterwards. Records are trusted to come from CUPTI: a record of a valid kind
 * with a wild name pointer cannot be detected.
 *
 * Op attribution is resolved after every consume, so a correlation record in a later
 * buffer than its kernel still attributes it; until then the kernel's op is -1.
 * NVTX start/end records pair by id across buffers the same way.
 *
 * The buffer callback calls this; tests call it directly with hand-built buffers.
 * Thread-safe against the other functions here. */
ibex_status ibex_cupti_consume(ibex_cupti *c, uint8_t *buf, size_t valid_bytes, uint64_t dropped, ibex_err *err);

/* Aggregations over the timed events (untimed ones are skipped). *rows is malloc'ed
 * (free() it; NULL when *n = 0). IBEX_ERR_NOMEM on allocation failure. */
ibex_status ibex_cupti_kernel_table(const ibex_cupti *c, ibex_cupti_kernel_row **rows, int64_t *n,
                                    ibex_err *err);
ibex_status ibex_cupti_op_table(const ibex_cupti *c, ibex_cupti_op_row **rows, int64_t *n, ibex_err *err);

/* The results.json object described at the top of this file. op_names[i] names op i
 * (n_ops entries; NULL entries and ops outside [0, n_ops) get null names). wall_ns is
 * the host wall time of the traced window (the runner passes the sum of the step times
 * it measured); <= 0 means unknown. NULL only when out of memory. */
json_t *ibex_cupti_to_json(const ibex_cupti *c, const char *const *op_names, int n_ops, double wall_ns);

/* ---- record layouts (tests and replay tools only) ----
 * Define IBEX_CUPTI_RECORD_TYPES before including this header to get the CUPTI record
 * structs this build parses, chosen by CUPTI_API_VERSION (IBEX_CUPTI_RECORDS_API
 * overrides it to compile-check another branch). CUPTI writes records of exactly
 * these layouts; cuptiActivityGetNextRecord steps by their sizes. */
#if defined(IBEX_CUPTI_RECORD_TYPES) && defined(IBEX_HAVE_CUPTI)
#include <cupti.h>

#ifndef IBEX_CUPTI_RECORDS_API
#define IBEX_CUPTI_RECORDS_API CUPTI_API_VERSION
#endif

#if IBEX_CUPTI_RECORDS_API < 19
#error "ibex needs CUPTI from CUDA 12.0 or newer (CUPTI_API_VERSION >= 19)"
#elif IBEX_CUPTI_RECORDS_API <= 28
/* CUDA 12.0 (v19) .. 12.9 Update 1 (v28) */
typedef CUpti_ActivityKernel9 ibex_cupti_kernel_record;
#if IBEX_CUPTI_RECORDS_API >= 26 /* 12.8 */
typedef CUpti_ActivityMemcpy6 ibex_cupti_memcpy_record;
#else
typedef CUpti_ActivityMemcpy5 ibex_cupti_memcpy_record;
#endif
#if IBEX_CUPTI_RECORDS_API >= 24 /* 12.6 */
typedef CUpti_ActivityMemory4 ibex_cupti_memory_record;
#else
typedef CUpti_ActivityMemory3 ibex_cupti_memory_record;
#endif
#elif IBEX_CUPTI_RECORDS_API >= 130000 && IBEX_CUPTI_RECORDS_API < 130200
/* CUDA 13.0 and 13.1 */
typedef CUpti_ActivityKernel10 ibex_cupti_kernel_record;
typedef CUpti_ActivityMemcpy6 ibex_cupti_memcpy_record;
typedef CUpti_ActivityMemory4 ibex_cupti_memory_record;
#else
/* Not an error: the build goes on with the 13.0 layouts, and ibex_cupti_start refuses a
 * libcupti whose record table differs (record_table in cupti.c), with a message. */
#warning "CUPTI_API_VERSION is newer than ibex's record table (CUDA 13.2 replaced CUpti_ActivityKernel10 by CUpti_ActivityKernel11): CUPTI tracing will refuse to start; add this version's record structs in harness/cupti.h, checked against cupti_activity.h"
typedef CUpti_ActivityKernel10 ibex_cupti_kernel_record;
typedef CUpti_ActivityMemcpy6 ibex_cupti_memcpy_record;
typedef CUpti_ActivityMemory4 ibex_cupti_memory_record;
#endif
typedef CUpti_ActivityMemset4 ibex_cupti_memset_record;
typedef CUpti_ActivityMarker2 ibex_cupti_marker_record;
typedef CUpti_ActivityExternalCorrelation ibex_cupti_extcorr_record;
typedef CUpti_ActivityAPI ibex_cupti_api_record;
#endif

#endif
