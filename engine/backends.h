/* backends.h — choosing a compute backend by name, as users write it on the command
 * line and in scenarios: "cpu", "cuda", "cuda:N" (device N), or "auto" (CUDA device 0
 * when one is usable, else the CPU). */
#ifndef IBEX_BACKENDS_H
#define IBEX_BACKENDS_H

#include <stdbool.h>

#include "kernels/backend.h"

/* Whether this build contains the CUDA backend. */
bool ibex_backend_cuda_built(void);

/* Opens the backend `name` with n_threads CPU threads (<= 0: all cores; the CUDA
 * backend uses them for nothing). NULL with err set when the name is unknown or the
 * backend cannot start — "cuda" on a machine without a device is an error, never a
 * silent CPU run. For "auto", *note (if not NULL) receives why the CPU was chosen,
 * or "" when CUDA was. */
ibex_backend *ibex_backend_open(const char *name, int n_threads, const char **note, ibex_err *err);

/* True if name is one ibex_backend_open understands (for validating scenarios). */
bool ibex_backend_name_valid(const char *name);

#endif
