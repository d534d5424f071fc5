/* cpu_pool.c — the CPU backend's persistent worker pool: one set of threads created with
 * the backend, reused by every op, that spins only briefly and then sleeps, so that a
 * multi-threaded run on a busy machine neither burns the CPU other processes need nor
 * waits for a thread the scheduler has put aside.
 *
 * Design notes:
 *  1. A job is "run fn(arg, i0, i1, tid) over [0, n)". The caller cuts [0, n) into at
 *     most POOL_CHUNKS_PER_THREAD·threads contiguous chunks, publishes the job, wakes the
 *     workers and then claims chunks itself like any worker. Chunks are claimed one at a
 *     time from a shared counter, so if a worker is descheduled (a busy machine) or still
 *     asleep, the threads that do run take its share instead of waiting for it. Which
 *     thread runs a chunk never changes its arithmetic: ops make each output element a
 *     function of its index only, so results are identical for any thread count.
 *  2. The job state is one 64-bit word: generation (32 bits) | chunk count (16) | next
 *     unclaimed chunk (16). A chunk is claimed by a compare-and-swap on the whole word, so
 *     a thread holding a stale view (an older job) can never claim in the new one by
 *     mistake, and a successful claim pins the job (its fn/arg stay valid) until that
 *     chunk is counted in `done`.
 *  3. The caller returns when done == chunk count. It never waits for a worker that has
 *     not claimed anything, only for chunks in progress.
 *  4. Waiting, both for a new job (workers) and for the last chunks (caller), spins for at
 *     most spin_ns with a pause instruction, then sleeps on a futex (a condition
 *     variable off Linux). Sleep and wake follow the Dekker pattern with sequentially
 *     consistent atomics: the sleeper announces itself (sleepers++ / caller_waiting = 1)
 *     before re-checking the word it sleeps on, the waker changes that word before
 *     looking for sleepers, so one of the two always sees the other: no lost wakeups.
 *  5. Re-entrancy: a job submitted while the pool is busy (from inside a job, by a worker
 *     or the caller, or concurrently by another thread) runs inline on the submitting
 *     thread with tid 0, so nesting cannot deadlock.
 *  6. Free: only between jobs. It raises `quit`, bumps the wake word, wakes every sleeper
 *     and joins; a spinning or sleeping worker sees the new word and exits.
 *  7. Workers block every signal (so the program's handlers run on its own threads) and
 *     are named "ibex-cpu-N" for top, perf and debuggers. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels/cpu/cpu_internal.h"

/* Default spin budget before sleeping (IBEX_CPU_SPIN_US overrides it, 0 = sleep at once).
 * Long enough that workers stay awake across the short serial stretches between two
 * parallel ops of one forward pass (a norm, a rope: a few microseconds), short enough
 * that a machine full of other work loses at most this much per wait; a futex wake costs
 * a few microseconds more than a spinning hand-off. */
#define POOL_SPIN_NS_DEFAULT 50000

/* Chunks per thread: enough that a descheduled thread's share is spread over the others
 * in pieces, few enough that claiming (one CAS) stays negligible. */
#define POOL_CHUNKS_PER_THREAD 8
#define POOL_MAX_CHUNKS 0xffff

struct ibex_cpu_pool {
    int n_threads;    /* caller + workers */
    uint64_t spin_ns; /* spin budget of every wait */
    pthread_t *tids;
    struct pool_worker *workers;

    /* job description: written by the caller before publishing `state`, read by threads
     * that claimed a chunk of it (design note 2) */
    ibex_cpu_task fn;
    void *arg;
    int64_t n;

    _Alignas(64) _Atomic uint64_t state; /* gen << 32 | n_chunks << 16 | next */
    _Alignas(64) _Atomic uint32_t done;  /* chunks finished in the current job */
    _Atomic uint32_t caller_waiting;     /* caller sleeps (or is about to) on `done` */
    _Alignas(64) _Atomic uint32_t wake;  /* bumped per job and at quit; workers sleep on it */
    _Atomic uint32_t sleepers;           /* workers asleep (or about to be) on `wake` */
    _Atomic uint32_t quit;
    _Alignas(64) _Atomic uint32_t busy;  /* a job is in flight (design note 5) */
    uint32_t gen;                        /* last generation published (caller only) */

#if !defined(__linux__)
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

struct pool_worker {
    ibex_cpu_pool *pool;
    int tid;
};

/* ---- waiting ---- */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *w != v or spin_ns is spent; true if it changed. */
static bool spin_while_eq(_Atomic uint32_t *w, uint32_t v, uint64_t spin_ns) {
    if (spin_ns == 0) return atomic_load_explicit(w, memory_order_acquire) != v;
    uint64_t deadline = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != v) return true;
        cpu_relax();
        if ((i & 31) == 31) { /* the clock costs ~20 ns: read it every 32 pauses */
            const uint64_t t = now_ns();
            if (!deadline) deadline = t + spin_ns;
            else if (t >= deadline) return false;
        }
    }
}

/* Sleeps while *w == v (returns at once if it differs; may return spuriously). */
static void sleep_while_eq(ibex_cpu_pool *p, _Atomic uint32_t *w, uint32_t v) {
#if defined(__linux__)
    (void)p;
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
#else
    pthread_mutex_lock(&p->mu);
    if (atomic_load(w) == v) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
#endif
}

/* Wakes every thread sleeping on w (whose value the caller has just changed). */
static void wake_all(ibex_cpu_pool *p, _Atomic uint32_t *w) {
#if defined(__linux__)
    (void)p;
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)w;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
#endif
}

/* ---- jobs ---- */

static inline uint64_t pack(uint32_t gen, uint32_t n_chunks, uint32_t next) {
    return (uint64_t)gen << 32 | (uint64_t)n_chunks << 16 | next;
}

/* Claims and runs chunks of whatever job is current until none is left (design note 2). */
static void help(ibex_cpu_pool *p, int tid) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        const uint32_t nch = (uint32_t)(s >> 16) & 0xffff, next = (uint32_t)s & 0xffff;
        if (next >= nch) return;
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* s now holds the fresh word */
        /* chunk `next` of n_chunks is ours; the job cannot finish before we count it */
        const int64_t n = p->n;
        const int64_t i0 = (int64_t)((__int128)n * next / nch);
        const int64_t i1 = (int64_t)((__int128)n * (next + 1) / nch);
        p->fn(p->arg, i0, i1, tid);
        const uint32_t d = atomic_fetch_add_explicit(&p->done, 1, memory_order_seq_cst) + 1;
        if (d == nch && atomic_load_explicit(&p->caller_waiting, memory_order_seq_cst))
            wake_all(p, &p->done);
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    struct pool_worker *wk = arg;
    ibex_cpu_pool *p = wk->pool;
    char name[16];
    snprintf(name, sizeof name, "ibex-cpu-%d", wk->tid);
    pthread_setname_np(pthread_self(), name);
    uint32_t seen = 0; /* `wake` starts at 0 before any worker exists */
    for (;;) {
        const uint32_t w = atomic_load_explicit(&p->wake, memory_order_acquire);
        if (w != seen) {
            seen = w;
            if (atomic_load_explicit(&p->quit, memory_order_acquire)) return NULL;
            help(p, wk->tid);
            continue;
        }
        if (spin_while_eq(&p->wake, seen, p->spin_ns)) continue;
        atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&p->wake, memory_order_seq_cst) == seen) sleep_while_eq(p, &p->wake, seen);
        atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
    }
}

void ibex_cpu_pool_run(ibex_cpu_pool *p, ibex_cpu_task fn, void *arg, int64_t n) {
    if (n <= 0) return;
    uint32_t expect = 0;
    if (!p || p->n_threads < 2 || n == 1 ||
        !atomic_compare_exchange_strong_explicit(&p->busy, &expect, 1, memory_order_acquire,
                                                 memory_order_relaxed)) {
        fn(arg, 0, n, 0);
        return;
    }
    int64_t nch64 = (int64_t)p->n_threads * POOL_CHUNKS_PER_THREAD;
    if (nch64 > n) nch64 = n;
    if (nch64 > POOL_MAX_CHUNKS) nch64 = POOL_MAX_CHUNKS;
    const uint32_t nch = (uint32_t)nch64;

    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    p->gen++;
    atomic_store_explicit(&p->state, pack(p->gen, nch, 0), memory_order_release);
    atomic_fetch_add_explicit(&p->wake, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) wake_all(p, &p->wake);

    help(p, 0);

    /* design note 3: only chunks in progress on other threads remain */
    for (;;) {
        uint32_t d = atomic_load_explicit(&p->done, memory_order_acquire);
        if (d == nch) break;
        if (spin_while_eq(&p->done, d, p->spin_ns)) continue;
        /* a worker holds a chunk and is slow or descheduled: sleep rather than spin */
        atomic_store_explicit(&p->caller_waiting, 1, memory_order_seq_cst);
        while ((d = atomic_load_explicit(&p->done, memory_order_seq_cst)) != nch) sleep_while_eq(p, &p->done, d);
        atomic_store_explicit(&p->caller_waiting, 0, memory_order_relaxed);
        break;
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}

/* ---- lifetime ---- */

ibex_cpu_pool *ibex_cpu_pool_new(int n_threads) {
    if (n_threads < 2) return NULL;
    ibex_cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    const int nw = n_threads - 1;
    p->tids = calloc((size_t)nw, sizeof *p->tids);
    p->workers = calloc((size_t)nw, sizeof *p->workers);
    if (!p->tids || !p->workers) {
        free(p->tids);
        free(p->workers);
        free(p);
        return NULL;
    }
#if !defined(__linux__)
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    p->spin_ns = POOL_SPIN_NS_DEFAULT;
    const char *env = getenv("IBEX_CPU_SPIN_US");
    if (env && *env) {
        char *end;
        const double us = strtod(env, &end);
        if (*end == '\0' && us >= 0.0 && us <= 1e6) p->spin_ns = (uint64_t)(us * 1e3);
    }
    p->n_threads = 1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* inherited by the workers (design note 7) */
    for (int i = 0; i < nw; i++) {
        p->workers[i] = (struct pool_worker){.pool = p, .tid = i + 1};
        if (pthread_create(&p->tids[i], NULL, worker_main, &p->workers[i]) != 0) break;
        p->n_threads++; /* fewer threads than asked if the system refuses more */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->n_threads < 2) {
        ibex_cpu_pool_free(p);
        return NULL;
    }
    return p;
}

int ibex_cpu_pool_threads(const ibex_cpu_pool *p) { return p ? p->n_threads : 1; }

void ibex_cpu_pool_free(ibex_cpu_pool *p) {
    if (!p) return;
    atomic_store_explicit(&p->quit, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&p->wake, 1, memory_order_seq_cst);
    wake_all(p, &p->wake);
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->tids[i], NULL);
#if !defined(__linux__)
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p->tids);
    free(p->workers);
    free(p);
}
