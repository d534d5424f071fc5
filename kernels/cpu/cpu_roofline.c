/* cpu_roofline.c — the CPU backend's measured roofline: the read bandwidth of all its
 * threads streaming a buffer far larger than the last-level cache (read_bandwidth), and
 * the peak F32 multiply-add rate of all its threads (peak_flops). Reports place decode
 * (bytes per token × tokens/s) against the first and prefill FLOP rates against the
 * second; both run on the backend's own worker pool, so they measure what the kernels
 * can reach with the same threads under the same load.
 *
 * Design notes:
 *  1. Read: the buffer is cut into many chunks claimed dynamically by the pool's threads
 *     (cpu_pool.c), so a thread the scheduler puts aside does not hold the figure back
 *     more than it holds back a matmul. Each chunk is read with wide loads into several
 *     independent XOR accumulators (one-cycle latency: the loop is bound by loads, not by
 *     a dependency chain) and nothing is written back except one word per chunk: a
 *     read-only stream, like a decode matmul's weights. A memcpy would count writes and
 *     their read-for-ownership traffic, and one thread cannot draw the bandwidth of all.
 *  2. FLOPs: each item runs 16 independent FMA chains (≥ latency × ports on current x86:
 *     4 cycles × 2 ports) on registers only, for a fixed count, so the figure is the
 *     execution units' ceiling at the vector width this build compiles to.
 *  3. Both: one warm-up (page faults, clock ramp, the wide-vector license), then RF_RUNS
 *     timed runs; the median is returned. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/hostmem.h"

#define RF_RUNS 5
#define RF_READ_CHUNK (4u << 20)  /* bytes per read item */
#define RF_FMA_ITERS (1 << 18)    /* iterations of 16 FMAs per flops item */
#define RF_FMA_ITEMS_PER_THREAD 4

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- read bandwidth ---- */

/* XOR of the n bytes at p (n a multiple of 256), read in 256-byte steps; unaligned loads,
 * as fast as aligned ones on an aligned buffer, so read_stream can take any region. */
static uint64_t read_range(const unsigned char *p, size_t n) {
#if defined(__AVX512F__)
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 256) {
        a0 = _mm512_xor_si512(a0, _mm512_loadu_si512((const void *)(p + i)));
        a1 = _mm512_xor_si512(a1, _mm512_loadu_si512((const void *)(p + i + 64)));
        a2 = _mm512_xor_si512(a2, _mm512_loadu_si512((const void *)(p + i + 128)));
        a3 = _mm512_xor_si512(a3, _mm512_loadu_si512((const void *)(p + i + 192)));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    return (uint64_t)_mm512_reduce_or_epi64(a0);
#elif IBEX_CPU_AVX2
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a0, 0) ^ (uint64_t)_mm256_extract_epi64(a0, 3);
#else
    uint64_t a[8] = {0};
    const uint64_t *q = (const uint64_t *)(const void *)p;
    for (size_t i = 0; i < n / 8; i += 8)
        for (int l = 0; l < 8; l++) a[l] ^= q[i + l];
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
#endif
}

/* Median seconds of `runs` (≤ RF_RUNS) passes of fn over n items on the backend's pool,
 * after one warm-up pass (design note 3). */
static double median_pass_s(ibex_backend *be, void (*fn)(void *, int64_t, int64_t, int), void *job, int64_t n,
                            int runs) {
    double t[RF_RUNS];
    ibex_cpu_parallel(be, fn, job, n, 1e30); /* warm-up */
    for (int r = 0; r < runs; r++) {
        const double t0 = now_s();
        ibex_cpu_parallel(be, fn, job, n, 1e30);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    return t[runs / 2];
}

/* chunked reads of regions: one item per chunk (design note 1) */
struct rs_job {
    const unsigned char **p; /* chunk starts */
    size_t *n;               /* chunk lengths, multiples of 256 */
    _Atomic uint64_t sink;   /* keeps the loads alive */
};

static void rs_chunks(void *arg, int64_t c0, int64_t c1, int tid) {
    (void)tid;
    struct rs_job *j = arg;
    uint64_t x = 0;
    for (int64_t c = c0; c < c1; c++) x ^= read_range(j->p[c], j->n[c]);
    atomic_fetch_xor_explicit(&j->sink, x, memory_order_relaxed);
}

/* Bytes/s of the backend's threads reading the n regions ptr[i] (bytes[i] each, rounded
 * down to 256) once per pass, cut into items of `chunk` bytes: median of `runs` passes
 * after a warm-up. `what` names the entry in errors. */
static double read_regions(ibex_backend *be, const void *const *ptr, const size_t *bytes, int n, size_t chunk,
                           int runs, const char *what, ibex_err *err) {
    size_t total = 0, chunks = 0;
    for (int i = 0; i < n; i++) chunks += (bytes[i] / 256 * 256 + chunk - 1) / chunk;
    struct rs_job j = {.p = malloc((chunks ? chunks : 1) * sizeof *j.p), .n = malloc((chunks ? chunks : 1) * sizeof *j.n)};
    if (!j.p || !j.n) {
        free(j.p), free(j.n);
        ibex_err_set(err, IBEX_ERR_NOMEM, "CPU %s: out of memory for %zu chunks", what, chunks);
        return 0;
    }
    size_t c = 0;
    for (int i = 0; i < n; i++) {
        const size_t b = bytes[i] / 256 * 256;
        for (size_t o = 0; o < b; o += chunk, c++) {
            j.p[c] = (const unsigned char *)ptr[i] + o;
            j.n[c] = b - o < chunk ? b - o : chunk;
            total += j.n[c];
        }
    }
    if (total < 4096) {
        free(j.p), free(j.n);
        ibex_err_set(err, IBEX_ERR_INVALID, "CPU %s: %zu bytes to read (at least 4096)", what, total);
        return 0;
    }
    const double t = median_pass_s(be, rs_chunks, &j, (int64_t)chunks, runs);
    free(j.p), free(j.n);
    if (!(t > 0)) {
        ibex_err_set(err, IBEX_ERR_BACKEND, "CPU %s: a read of %zu bytes timed at 0 s", what, total);
        return 0;
    }
    return (double)total / t;
}

/* Bytes/s of the backend's threads reading `bytes` (rounded down to 256; at least 4096),
 * median of RF_RUNS runs after a warm-up (design notes 1, 3). A buffer that fits a cache
 * measures that cache: the roofline needs one far larger than the last level. */
double ibex_cpu_read_bandwidth(ibex_backend *be, size_t bytes, ibex_err *err) {
    bytes &= ~(size_t)255;
    if (bytes < 4096) {
        ibex_err_set(err, IBEX_ERR_INVALID, "CPU read_bandwidth: %zu bytes (at least 4096)", bytes);
        return 0;
    }
    unsigned char *buf = ibex_host_alloc(bytes); /* the page size weights and KV get */
    if (!buf) {
        ibex_err_set(err, IBEX_ERR_NOMEM, "CPU read_bandwidth: no memory for a %zu-byte buffer", bytes);
        return 0;
    }
    for (size_t i = 0; i < bytes; i += 4096) buf[i] = (unsigned char)(i >> 12); /* fault every page in */
    memset(buf, 0x5a, bytes);
    const void *p = buf;
    const double bw = read_regions(be, &p, &bytes, 1, RF_READ_CHUNK, RF_RUNS, "read_bandwidth", err);
    free(buf);
    return bw;
}

/* ---- reading given regions (read_stream) ---- */

#define RS_CHUNK (1u << 20) /* bytes per item: a 4 MiB weight matrix is still 4 items */
#define RS_RUNS 3

/* Bytes/s of the backend's threads reading the n regions ptr[i] (bytes[i] each, rounded
 * down to 256) once, all regions in one job of 1 MiB items: median of RS_RUNS passes after
 * a warm-up pass. The runner reads a model's own weights with it between repetitions, so
 * decode is set against a stream of the very same pages, taken minutes (not a run) apart. */
double ibex_cpu_read_stream(ibex_backend *be, const void *const *ptr, const size_t *bytes, int n, ibex_err *err) {
    return read_regions(be, ptr, bytes, n, RS_CHUNK, RS_RUNS, "read_stream", err);
}

/* ---- peak FMA rate ---- */

#if defined(__AVX512F__)
#define RF_VL 16
#elif IBEX_CPU_AVX2
#define RF_VL 8
#else
#define RF_VL 1
#endif

struct fl_job {
    _Atomic uint32_t sink;
};

/* RF_FMA_ITERS × 16 independent FMAs per item (design note 2). a·b + c with b < 1 stays
 * finite and normal: a converges to c / (1 − b). */
static void fma_items(void *arg, int64_t i0, int64_t i1, int tid) {
    (void)tid;
    struct fl_job *j = arg;
    for (int64_t it = i0; it < i1; it++) {
#if defined(__AVX512F__)
        __m512 a[16];
        const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-3f);
        for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps((float)(k + it));
        for (int i = 0; i < RF_FMA_ITERS; i++) {
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) a[k] = _mm512_fmadd_ps(a[k], b, c);
        }
        __m512 s = a[0];
        for (int k = 1; k < 16; k++) s = _mm512_add_ps(s, a[k]);
        const float f = _mm512_reduce_add_ps(s);
#elif IBEX_CPU_AVX2
        __m256 a[16];
        const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-3f);
        for (int k = 0; k < 16; k++) a[k] = _mm256_set1_ps((float)(k + it));
        for (int i = 0; i < RF_FMA_ITERS; i++) {
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) a[k] = _mm256_fmadd_ps(a[k], b, c);
        }
        __m256 s = a[0];
        for (int k = 1; k < 16; k++) s = _mm256_add_ps(s, a[k]);
        const float f = ibex_cpu_hsum8(s);
#else
        float a[16];
        for (int k = 0; k < 16; k++) a[k] = (float)(k + it);
        for (int i = 0; i < RF_FMA_ITERS; i++)
            for (int k = 0; k < 16; k++) a[k] = fmaf(a[k], 0.999999f, 1e-3f);
        float f = 0;
        for (int k = 0; k < 16; k++) f += a[k];
#endif
        uint32_t u;
        memcpy(&u, &f, 4);
        atomic_fetch_xor_explicit(&j->sink, u, memory_order_relaxed);
    }
}

/* F32 FLOP/s (2 per FMA lane) of the backend's threads, median of RF_RUNS runs after a
 * warm-up (design notes 2, 3). */
double ibex_cpu_peak_flops(ibex_backend *be, ibex_err *err) {
    struct fl_job j = {0};
    const int64_t n = (int64_t)ibex_cpu_threads(be) * RF_FMA_ITEMS_PER_THREAD;
    const double flops = (double)n * RF_FMA_ITERS * 16.0 * RF_VL * 2.0;
    const double t = median_pass_s(be, fma_items, &j, n, RF_RUNS);
    if (!(t > 0)) {
        ibex_err_set(err, IBEX_ERR_BACKEND, "CPU peak_flops: a run timed at 0 s");
        return 0;
    }
    return flops / t;
}
