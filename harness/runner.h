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
} ibex_run_opts;

/* Runs s. Returns IBEX_OK when every point ran (or the run was interrupted: then
 * *interrupted is set and results.json says complete: false); an error only when
 * results.json cannot be written. A point that fails is recorded with its error and
 * the run goes on. */
ibex_status ibex_run_scenario(const ibex_scenario *s, const ibex_run_opts *o, ibex_err *err);

/* Creates dir and its parents (like mkdir -p). */
ibex_status ibex_mkdir_p(const char *dir, ibex_err *err);

#endif
