/* fileio.h — opening input files safely: only regular files are read, and a FIFO,
 * device or directory given as a model, scenario or workload file is refused at once
 * instead of blocking in open() or read(). */
#ifndef IBEX_ENGINE_FILEIO_H
#define IBEX_ENGINE_FILEIO_H

#include <stdio.h>
#include <sys/types.h>

#include "kernels/status.h"

/* What kind of file mode is, for messages: "a directory", "a FIFO", ... */
const char *ibex_file_kind(mode_t mode);

/* Opens path read-only if it is a regular file. Opens with O_NONBLOCK (so a FIFO with no
 * writer does not block), checks the opened file with fstat, then clears O_NONBLOCK.
 * Returns the descriptor, or -1 with err set to "PATH: cannot open: REASON" or
 * "PATH: is a FIFO, not a regular file". */
int ibex_open_regular(const char *path, ibex_err *err);

/* The same as a stdio stream ("rb"); NULL with err set on failure. */
FILE *ibex_fopen_regular(const char *path, ibex_err *err);

/* Checks without opening that path exists and is a regular file (stat follows links).
 * Returns IBEX_OK, or an error naming the path and what it is. */
ibex_status ibex_check_regular(const char *path, ibex_err *err);

#endif
