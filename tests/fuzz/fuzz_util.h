/* fuzz_util.h — shared by the libFuzzer targets: the input as a file the readers under
 * test can open (they take paths), in memory (memfd), never on disk. */
#ifndef IBEX_FUZZ_UTIL_H
#define IBEX_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* A broken invariant: say which, then abort (libFuzzer saves the input as crash-*). */
#define FUZZ_FAIL(...) (fprintf(stderr, "fuzz invariant broken: " __VA_ARGS__), fputc('\n', stderr), abort())

/* Writes data into a fresh memfd; *path gets "/proc/self/fd/N". Returns the fd (close
 * it when done) or -1. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("ibex-fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
