/* backends.c — backend selection by name, and the CUDA entry points of builds without
 * the CUDA backend (so callers need no #ifdef). */
#include "engine/backends.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(IBEX_HAVE_CUDA)
ibex_backend *ibex_backend_cuda_new(int device, ibex_err *err) {
    ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                 "this ibex was built without the CUDA backend (configure with the CUDA toolkit installed, "
                 "or -DIBEX_CUDA=ON to make its absence an error)");
    return NULL;
}
int ibex_cuda_device_count(void) { return 0; }
bool ibex_backend_cuda_built(void) { return false; }
#else
bool ibex_backend_cuda_built(void) { return true; }
#endif

/* Parses "cuda" or "cuda:N"; false if name is neither. */
static bool cuda_device(const char *name, int *dev) {
    if (!strcmp(name, "cuda")) {
        *dev = 0;
        return true;
    }
    if (strncmp(name, "cuda:", 5) || !name[5]) return false;
    char *end;
    errno = 0;
    long v = strtol(name + 5, &end, 10);
    if (errno || *end || v < 0 || v > 1023) return false;
    *dev = (int)v;
    return true;
}

bool ibex_backend_name_valid(const char *name) {
    int dev;
    return name && (!strcmp(name, "cpu") || !strcmp(name, "auto") || cuda_device(name, &dev));
}

ibex_backend *ibex_backend_open(const char *name, int n_threads, const char **note, ibex_err *err) {
    static char why[600];
    int dev = 0;
    if (note) *note = "";
    if (!name || !strcmp(name, "cpu")) {
        ibex_backend *be = ibex_backend_cpu_new(n_threads);
        if (!be) ibex_err_set(err, IBEX_ERR_NOMEM, "cannot create the CPU backend");
        return be;
    }
    if (!strcmp(name, "auto")) {
        ibex_err e = {0};
        ibex_backend *be = ibex_cuda_device_count() > 0 ? ibex_backend_cuda_new(0, &e) : NULL;
        if (be) return be;
        if (!e.status) ibex_err_set(&e, IBEX_ERR_UNSUPPORTED, "%s", ibex_backend_cuda_built() ? "no CUDA device" : "no CUDA backend in this build");
        snprintf(why, sizeof why, "backend auto: %s; using the CPU", e.msg);
        if (note) *note = why;
        return ibex_backend_open("cpu", n_threads, NULL, err);
    }
    if (cuda_device(name, &dev)) {
        ibex_backend *be = ibex_backend_cuda_new(dev, err);
        if (!be) ibex_err_prefix(err, "backend %s", name);
        return be;
    }
    ibex_err_set(err, IBEX_ERR_INVALID, "unknown backend '%s' (expected cpu, cuda, cuda:N or auto)", name);
    return NULL;
}
