/* backend.c — names shared by every backend. */
#include "kernels/backend.h"

#include <string.h>

static const char *k_attn_names[IBEX_ATTN_IMPL_COUNT] = {"auto", "materialized", "paged", "split_k"};

const char *ibex_attn_impl_name(ibex_attn_impl a) {
    return (unsigned)a < IBEX_ATTN_IMPL_COUNT ? k_attn_names[a] : "?";
}

int ibex_attn_impl_from_name(const char *s, ibex_attn_impl *out) {
    for (int i = 0; i < IBEX_ATTN_IMPL_COUNT; i++)
        if (s && !strcmp(s, k_attn_names[i])) {
            *out = (ibex_attn_impl)i;
            return 1;
        }
    return 0;
}

int ibex_backend_threads(const ibex_backend *be) {
    int n = be && be->get_threads ? be->get_threads(be) : 1;
    return n > 0 ? n : 1;
}
