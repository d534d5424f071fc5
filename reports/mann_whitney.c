/* mann_whitney.c — the Mann–Whitney U test (see mann_whitney.h for the formula) and the
 * smallest p-value it can reach for given sample sizes. Pure computation, no I/O. */
#include "reports/mann_whitney.h"

#include <math.h>
#include <stdlib.h>

typedef struct mw_item {
    double v;
    int from_a;
} mw_item;

static int cmp_mw_item(const void *pa, const void *pb)
{
    const mw_item *a = pa, *b = pb;
    return (a->v > b->v) - (a->v < b->v);
}

ibex_status ibex_mann_whitney_compute(const double *a, size_t n_a, const double *b, size_t n_b,
                                      ibex_mann_whitney *out, ibex_err *e)
{
    if (n_a == 0 || n_b == 0)
        return ibex_err_set(e, IBEX_ERR_INVALID,
                            "Mann-Whitney: both samples need values (got %zu and %zu)", n_a, n_b);
    if (!a || !b)
        return ibex_err_set(e, IBEX_ERR_INVALID, "Mann-Whitney: NULL sample");
    for (size_t i = 0; i < n_a; i++)
        if (isnan(a[i]))
            return ibex_err_set(e, IBEX_ERR_INVALID, "Mann-Whitney: sample a[%zu] is NaN", i);
    for (size_t i = 0; i < n_b; i++)
        if (isnan(b[i]))
            return ibex_err_set(e, IBEX_ERR_INVALID, "Mann-Whitney: sample b[%zu] is NaN", i);

    size_t N = n_a + n_b;
    mw_item *it = malloc(N * sizeof *it);
    if (!it)
        return ibex_err_set(e, IBEX_ERR_NOMEM, "Mann-Whitney: cannot allocate %zu items", N);
    for (size_t i = 0; i < n_a; i++)
        it[i] = (mw_item){a[i], 1};
    for (size_t i = 0; i < n_b; i++)
        it[n_a + i] = (mw_item){b[i], 0};
    qsort(it, N, sizeof *it, cmp_mw_item);

    /* Ranks are 1-based; a tie group occupying sorted positions [i, j) shares the
     * midrank (i + 1 + j) / 2. */
    double r_a = 0.0, tie_sum = 0.0;
    for (size_t i = 0; i < N;) {
        size_t j = i + 1;
        while (j < N && it[j].v == it[i].v)
            j++;
        double rank = (double)(i + 1 + j) / 2.0, t = (double)(j - i);
        for (size_t k = i; k < j; k++)
            if (it[k].from_a)
                r_a += rank;
        tie_sum += t * t * t - t;
        i = j;
    }
    free(it);

    double na = (double)n_a, nb = (double)n_b, dn = (double)N;
    ibex_mann_whitney r = {.n_a = n_a, .n_b = n_b};
    r.u_a = r_a - na * (na + 1.0) / 2.0;
    r.u_b = na * nb - r.u_a;
    r.u = fmin(r.u_a, r.u_b);
    double mu = na * nb / 2.0;
    double var = N > 1 ? na * nb / 12.0 * ((dn + 1.0) - tie_sum / (dn * (dn - 1.0))) : 0.0;
    double d = r.u_a - mu;
    if (var <= 0.0) {
        r.z = 0.0;
        r.p = 1.0;
    } else {
        double mag = fmax(fabs(d) - 0.5, 0.0) / sqrt(var);
        r.z = d < 0.0 ? -mag : mag;
        r.p = fmin(1.0, erfc(mag / sqrt(2.0)));
    }
    *out = r;
    return IBEX_OK;
}

double ibex_mann_whitney_min_p(size_t n_a, size_t n_b)
{
    if (n_a == 0 || n_b == 0)
        return 1.0;
    double na = (double)n_a, nb = (double)n_b, dn = na + nb;
    double var = na * nb / 12.0 * (dn + 1.0);
    double mag = fmax(na * nb / 2.0 - 0.5, 0.0) / sqrt(var);
    return fmin(1.0, erfc(mag / sqrt(2.0)));
}
