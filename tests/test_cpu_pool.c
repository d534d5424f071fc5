/* test_cpu_pool.c — the CPU backend's worker pool (kernels/cpu/cpu_pool.c): every index of
 * a job runs exactly once for any n and thread count (more threads than cores included),
 * thousands of back-to-back jobs lose no wakeup, sleeping workers wake for a job and are
 * joined by free, nested and concurrent submissions run inline instead of deadlocking, and
 * the backend's set_threads creates exactly threads − 1 workers (none for one thread).
 * A hang is a failure: each test has a timeout. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_internal.h"

/* ---- helpers ---- */

struct count_job {
    _Atomic int *hits; /* hits[i]: times item i ran */
    int64_t n;
    int n_threads;
    _Atomic int bad; /* a range outside [0, n) or a tid outside [0, threads) */
};

static void count_items(void *arg, int64_t i0, int64_t i1, int tid) {
    struct count_job *j = arg;
    if (i0 < 0 || i1 > j->n || i0 >= i1 || tid < 0 || tid >= j->n_threads) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add_explicit(&j->hits[i], 1, memory_order_relaxed);
}

/* Runs one counting job of n items and asserts each item ran once. */
static void check_once(ibex_cpu_pool *p, int64_t n) {
    struct count_job j = {calloc((size_t)(n > 0 ? n : 1), sizeof(_Atomic int)), n, ibex_cpu_pool_threads(p), 0};
    cr_assert_not_null(j.hits);
    ibex_cpu_pool_run(p, count_items, &j, n);
    cr_assert_eq(atomic_load(&j.bad), 0, "bad range or tid (threads %d, n %lld)", j.n_threads, (long long)n);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&j.hits[i]), 1, "item %lld ran %d times (threads %d, n %lld)", (long long)i,
                     atomic_load(&j.hits[i]), j.n_threads, (long long)n);
    free(j.hits);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each item blocks until `want` items have started (or 20 s pass): the job can only
 * finish if that many distinct threads, workers included, take part. */
struct meet_job {
    _Atomic int arrived;
    int want;
    _Atomic int timed_out;
    _Atomic unsigned tids; /* bit per tid that ran an item */
};

static void meet(void *arg, int64_t i0, int64_t i1, int tid) {
    struct meet_job *j = arg;
    atomic_fetch_or(&j->tids, 1u << tid);
    atomic_fetch_add(&j->arrived, (int)(i1 - i0));
    const double t0 = now_s();
    while (atomic_load(&j->arrived) < j->want) {
        if (now_s() - t0 > 20.0) {
            atomic_store(&j->timed_out, 1);
            return;
        }
        sched_yield();
    }
}

static void check_meet(ibex_cpu_pool *p) {
    const int nt = ibex_cpu_pool_threads(p);
    struct meet_job j = {0, nt, 0, 0};
    ibex_cpu_pool_run(p, meet, &j, nt); /* nt items, nt chunks: one per thread */
    cr_assert_eq(atomic_load(&j.timed_out), 0, "the %d threads never all joined the job", nt);
    cr_assert_eq(atomic_load(&j.tids), (1u << nt) - 1, "tids that ran: %#x", atomic_load(&j.tids));
}

static int n_tasks(void) { /* threads of this process */
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* Thread count once it equals expect, or after 1 s: a joined thread's /proc entry may
 * outlive the join by a moment. */
static int n_tasks_settled(int expect) {
    int n = n_tasks();
    for (int i = 0; i < 200 && n != expect; i++) {
        usleep(5000);
        n = n_tasks();
    }
    return n;
}

/* ---- tests ---- */

Test(cpu_pool, one_thread_is_no_pool) {
    cr_assert_null(ibex_cpu_pool_new(1));
    cr_assert_null(ibex_cpu_pool_new(0));
    cr_assert_eq(ibex_cpu_pool_threads(NULL), 1);
    check_once(NULL, 100); /* a NULL pool runs inline */
}

Test(cpu_pool, every_index_exactly_once, .timeout = 120) {
    static const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 9, 16, 17, 63, 64, 65, 100, 127, 1000, 4099, 70001, 1000003};
    for (int nt = 2; nt <= 8; nt++) {
        ibex_cpu_pool *p = ibex_cpu_pool_new(nt);
        cr_assert_not_null(p);
        cr_assert_eq(ibex_cpu_pool_threads(p), nt);
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) check_once(p, sizes[k]);
        check_once(p, 0); /* nothing to do: returns */
        ibex_cpu_pool_free(p);
    }
    ibex_cpu_pool *p = ibex_cpu_pool_new(24); /* far more threads than cores */
    cr_assert_not_null(p);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) check_once(p, sizes[k]);
    ibex_cpu_pool_free(p);
}

/* Back-to-back jobs: a wakeup lost between two of them hangs (timeout) or skips items. */
Test(cpu_pool, thousands_of_jobs, .timeout = 120) {
    const int counts[] = {2, 3, 8};
    for (int c = 0; c < 3; c++) {
        ibex_cpu_pool *p = ibex_cpu_pool_new(counts[c]);
        cr_assert_not_null(p);
        for (int rep = 0; rep < 3000; rep++) {
            check_once(p, 1 + rep % 37);
            if (rep % 500 == 499) usleep(2000); /* let the workers fall asleep now and then */
        }
        ibex_cpu_pool_free(p);
    }
}

/* Workers asleep (a pause far longer than the spin) must wake for the next job and take
 * part in it: the job needs every thread. */
Test(cpu_pool, sleeping_workers_wake_and_take_part, .timeout = 120) {
    for (int nt = 2; nt <= 5; nt++) {
        ibex_cpu_pool *p = ibex_cpu_pool_new(nt);
        cr_assert_not_null(p);
        for (int rep = 0; rep < 20; rep++) {
            check_meet(p); /* right after the previous job: workers may still spin */
            usleep(20000); /* 20 ms: now they sleep */
            check_meet(p);
        }
        ibex_cpu_pool_free(p);
    }
}

Test(cpu_pool, free_joins_sleeping_spinning_and_idle_workers, .timeout = 60) {
    const int base = n_tasks();
    ibex_cpu_pool *p = ibex_cpu_pool_new(6);
    cr_assert_not_null(p);
    cr_assert_eq(n_tasks(), base + 5);
    ibex_cpu_pool_free(p); /* never ran a job */
    cr_assert_eq(n_tasks_settled(base), base);

    p = ibex_cpu_pool_new(6);
    check_once(p, 1000);
    usleep(20000);
    ibex_cpu_pool_free(p); /* workers asleep */
    cr_assert_eq(n_tasks_settled(base), base);

    p = ibex_cpu_pool_new(6);
    check_once(p, 1000);
    ibex_cpu_pool_free(p); /* workers most likely still spinning */
    cr_assert_eq(n_tasks_settled(base), base);
}

struct nest_job {
    ibex_cpu_pool *p;
    struct count_job *inner; /* one per outer item */
    int64_t n_inner;
};

static void nest_outer(void *arg, int64_t i0, int64_t i1, int tid) {
    struct nest_job *j = arg;
    for (int64_t i = i0; i < i1; i++) ibex_cpu_pool_run(j->p, count_items, &j->inner[i], j->n_inner);
}

/* A job submitted from inside a job (by the caller or a worker) runs inline. */
Test(cpu_pool, nested_jobs_do_not_deadlock, .timeout = 60) {
    ibex_cpu_pool *p = ibex_cpu_pool_new(4);
    cr_assert_not_null(p);
    enum { OUTER = 40, INNER = 300 };
    struct count_job inner[OUTER];
    for (int i = 0; i < OUTER; i++)
        inner[i] = (struct count_job){calloc(INNER, sizeof(_Atomic int)), INNER, 4, 0};
    struct nest_job j = {p, inner, INNER};
    ibex_cpu_pool_run(p, nest_outer, &j, OUTER);
    for (int i = 0; i < OUTER; i++) {
        cr_assert_eq(atomic_load(&inner[i].bad), 0);
        for (int k = 0; k < INNER; k++) cr_assert_eq(atomic_load(&inner[i].hits[k]), 1, "outer %d item %d", i, k);
        free(inner[i].hits);
    }
    check_once(p, 999); /* and the pool still works afterwards */
    ibex_cpu_pool_free(p);
}

struct submitter {
    ibex_cpu_pool *p;
    int ok;
};

static void *submit_many(void *arg) {
    struct submitter *s = arg;
    s->ok = 1;
    for (int rep = 0; rep < 500 && s->ok; rep++) {
        const int64_t n = 1 + rep % 50;
        struct count_job j = {calloc((size_t)n, sizeof(_Atomic int)), n, ibex_cpu_pool_threads(s->p), 0};
        ibex_cpu_pool_run(s->p, count_items, &j, n);
        for (int64_t i = 0; i < n; i++)
            if (atomic_load(&j.hits[i]) != 1) s->ok = 0;
        if (atomic_load(&j.bad)) s->ok = 0;
        free(j.hits);
    }
    return NULL;
}

/* Two threads submitting to one pool at once: one of them runs inline, both complete. */
Test(cpu_pool, concurrent_submitters, .timeout = 60) {
    ibex_cpu_pool *p = ibex_cpu_pool_new(3);
    cr_assert_not_null(p);
    struct submitter s[2] = {{p, 0}, {p, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&t[i], NULL, submit_many, &s[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    cr_assert(s[0].ok && s[1].ok);
    ibex_cpu_pool_free(p);
}

/* The backend owns the pool: -t 1 starts no thread, set_threads resizes it, get_threads
 * reports what runs, free joins every worker. */
Test(cpu_pool, backend_threads_follow_set_threads, .timeout = 60) {
    const int base = n_tasks();
    ibex_backend *be = ibex_backend_cpu_new(1);
    cr_assert_not_null(be);
    cr_assert_eq(ibex_backend_threads(be), 1);
    cr_assert_eq(n_tasks(), base, "one thread must create no worker");

    const int sizes[] = {4, 2, 8, 1, 3, 3};
    for (int k = 0; k < 6; k++) {
        be->set_threads(be, sizes[k]);
        cr_assert_eq(ibex_backend_threads(be), sizes[k]);
        cr_assert_eq(n_tasks_settled(base + sizes[k] - 1), base + sizes[k] - 1, "after set_threads(%d)", sizes[k]);
        /* a parallel op on the resized pool: 64 × 300 · 200 multiply-adds */
        const int T = 64, n_in = 300, n_out = 200;
        float *x = calloc((size_t)T * n_in, 4), *w = calloc((size_t)n_out * n_in, 4), *y = malloc((size_t)T * n_out * 4);
        for (int i = 0; i < T * n_in; i++) x[i] = 1.0f;
        for (int i = 0; i < n_out * n_in; i++) w[i] = (float)(i / n_in);
        be->matmul(be, y, x, w, IBEX_TYPE_F32, T, n_in, n_out);
        for (int t = 0; t < T; t++)
            for (int r = 0; r < n_out; r++) cr_assert_eq(y[t * n_out + r], (float)r * n_in);
        free(x), free(w), free(y);
    }
    be->set_threads(be, 0); /* all cores */
    cr_assert_geq(ibex_backend_threads(be), 1);
    ibex_backend_free(be);
    cr_assert_eq(n_tasks_settled(base), base, "free must join every worker");
}
