/* runner.h — runs every point of a scenario through the engine's step API: workload
 * and arrivals, warm-up and timed repetitions, probes, metrics, and results.json
 * (docs/RESULTS.md), rewritten after every point so nothing measured is lost. */
#ifndef IBEX_RUNNER_H
#define IBEX_RUNNER_H

#include <signal.h>
#include <stdbool.h>

#include "harness/scenario.h"
#include "kernels/status.h"

typedef struct ibex_run_opts {
    const char *out_dir;                  /* results.json goes here (created if missing) */
    bool quick;                           /* recorded in results.json */
    bool progress_tty;                    /* redraw one progress line (else plain lines) */
    volatile sig_atomic_t *interrupted;   /* set by a signal handler: stop at the next step */
    int *failed_points;                   /* (optional) receives how many points failed */
    /* (optional) a shard (`ibex run --shard K/N`, harness/shard.h): run only these point
       indices (ascending, global), recorded as results.json "shard" {k, n, points,
       total_points}; shard_n 0 runs every point */
    int32_t shard_k, shard_n;
    const int32_t *shard_points;
    int32_t n_shard_points;
    const char *scenario_sha256;          /* (optional) recorded as scenario.sha256 */
} ibex_run_opts;

/* Runs s. Returns IBEX_OK when every point ran (or the run was interrupted: then
 * *interrupted is set and results.json says complete: false); an error only when
 * results.json cannot be written. A point that fails is recorded with its error and
 * the run goes on. */
ibex_status ibex_run_scenario(const ibex_scenario *s, const ibex_run_opts *o, ibex_err *err);

/* ibex's own share of the 1-min load average, to tell its threads from other work:
 * an exponential average of its CPU-s per s with the load average's 60 s time
 * constant, updated at every sample. */
typedef struct ibex_load_probe {
    double t, cpu; /* the last sample: wall (s) and process CPU time (s) */
    double own;    /* the average so far */
} ibex_load_probe;

/* Starts a probe now (own = 0). Cannot fail. */
void ibex_load_probe_start(ibex_load_probe *p);

/* Reads the 1-min load average into *load1 (NaN when unreadable), updates the probe
 * and returns ibex's own share of it. Cannot fail. */
double ibex_load_probe_sample(ibex_load_probe *p, double *load1);

/* CPU time of the whole process (every thread), s; NaN if unreadable. */
double ibex_process_cpu_s(void);

/* CPUs this process may run on (affinity mask, else online CPUs); at least 1. */
int ibex_online_cpus(void);

/* Creates dir and its parents (like mkdir -p). */
ibex_status ibex_mkdir_p(const char *dir, ibex_err *err);

#endif
