/* mann_whitney.h — the two-sided Mann–Whitney U test (rank-sum) of two samples, used
 * by `ibex compare` (reports/compare.c) on per-repetition timings and re-exported by
 * harness/metrics.h with the other metric formulas. It lives in reports/ because the
 * reports library must not depend on harness/ (docs/ARCHITECTURE.md), while harness/
 * links reports/. Pure computation: no I/O. */
#ifndef IBEX_MANN_WHITNEY_H
#define IBEX_MANN_WHITNEY_H

#include <stddef.h>

#include "kernels/status.h"

/* Two-sided Mann–Whitney U test of samples a (n_a) and b (n_b), normal approximation
 * with tie and continuity corrections (what google-benchmark's compare.py gets from
 * scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")):
 *
 *   pool a and b, rank them 1..N (N = n_a + n_b), ties getting the mean of their ranks;
 *   U_a = R_a - n_a (n_a + 1) / 2  (R_a = sum of a's ranks),  U_b = n_a n_b - U_a;
 *   mu = n_a n_b / 2;  sigma^2 = n_a n_b / 12 * ((N + 1) - sum_t (t^3 - t) / (N (N - 1)))
 *   over tie groups of size t;  z = sign(U_a - mu) * max(|U_a - mu| - 1/2, 0) / sigma;
 *   p = erfc(|z| / sqrt 2)  (= 2 * P(Z > |z|)).
 *
 * When sigma = 0 (every value equal) z = 0 and p = 1. z > 0 means a tends larger.
 * The approximation is poor for tiny samples: google-benchmark asks for >= 9 each, and
 * `ibex compare` calls a metric inconclusive when ibex_mann_whitney_min_p(n_a, n_b)
 * is above its alpha. */
typedef struct ibex_mann_whitney {
    double u_a; /* U of sample a: pairs (i, j) with a_i > b_j, ties counting 1/2 */
    double u_b; /* n_a n_b - u_a */
    double u;   /* min(u_a, u_b), the value tables quote */
    double z;
    double p; /* two-sided p-value in [0, 1] */
    size_t n_a;
    size_t n_b;
} ibex_mann_whitney;

/* Runs the test. Errors: IBEX_ERR_INVALID when n_a or n_b is 0, a pointer is NULL or a
 * value is NaN; IBEX_ERR_NOMEM. Inputs are not modified. On error *out is untouched. */
ibex_status ibex_mann_whitney_compute(const double *a, size_t n_a, const double *b, size_t n_b,
                                      ibex_mann_whitney *out, ibex_err *e);

/* The smallest two-sided p-value the test above can return for samples of n_a and n_b
 * values: complete separation (U_a = 0) without ties,
 *   p_min = erfc(((n_a n_b / 2) - 1/2) / sigma / sqrt 2),  sigma^2 = n_a n_b (N + 1) / 12.
 * When p_min > alpha no data can be significant: 3 vs 3 gives 0.081, 4 vs 4 gives
 * 0.030, 5 vs 5 gives 0.012. 1 when n_a or n_b is 0. Cannot fail. */
double ibex_mann_whitney_min_p(size_t n_a, size_t n_b);

#endif
