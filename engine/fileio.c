/* fileio.c — opening input files safely (see fileio.h): regular files only, never
 * blocking on a FIFO or a device. */
#include "engine/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *ibex_file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

ibex_status ibex_check_regular(const char *path, ibex_err *err) {
    struct stat st;
    if (stat(path, &st) != 0) return ibex_err_set(err, IBEX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ibex_err_set(err, IBEX_ERR_IO, "%s: is %s, not a regular file", path, ibex_file_kind(st.st_mode));
    return IBEX_OK;
}

int ibex_open_regular(const char *path, ibex_err *err) {
    /* stat first: opening some devices has side effects even with O_NONBLOCK. */
    if (ibex_check_regular(path, err) != IBEX_OK) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    /* fstat again: the path may have been replaced between stat and open. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: is %s, not a regular file", path, ibex_file_kind(st.st_mode));
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

FILE *ibex_fopen_regular(const char *path, ibex_err *err) {
    int fd = ibex_open_regular(path, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}
