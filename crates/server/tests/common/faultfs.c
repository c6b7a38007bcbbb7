/*
 * faultfs: an LD_PRELOAD shim that makes the disk fail under a running
 * synod, for the fail-stop tests. Inert until the file named by
 * SYNOD_FAULT_TRIGGER exists; from then on (for good, as a dead disk) calls
 * on files under SYNOD_FAULT_DIR fail:
 *
 *   SYNOD_FAULT=fsync-eio     fsync and fdatasync return EIO
 *   SYNOD_FAULT=write-enospc  write, pwrite and pwritev return ENOSPC
 *
 * Only files under SYNOD_FAULT_DIR are touched, so the process can still
 * log (stderr) and talk. Each injected failure is reported on stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static volatile int triggered;

/* Whether the fault `mode` is armed and fd is a file under the faulty dir. */
static int faulty(int fd, const char *mode) {
    const char *want = getenv("SYNOD_FAULT");
    const char *trigger = getenv("SYNOD_FAULT_TRIGGER");
    const char *dir = getenv("SYNOD_FAULT_DIR");
    if (!want || !trigger || !dir || strcmp(want, mode) != 0)
        return 0;
    if (!triggered) {
        if (access(trigger, F_OK) != 0)
            return 0;
        triggered = 1;
    }
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    size_t dlen = strlen(dir);
    if (strncmp(path, dir, dlen) != 0 || (path[dlen] != '/' && path[dlen] != 0))
        return 0;
    char msg[4200];
    int len = snprintf(msg, sizeof msg, "faultfs: injecting %s on %s\n", mode, path);
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_write)
        real_write = dlsym(RTLD_NEXT, "write");
    if (len > 0)
        real_write(2, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg - 1);
    return 1;
}

#define REAL(name) \
    static __typeof__(name) *real; \
    if (!real) real = dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync);
    if (faulty(fd, "fsync-eio")) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    if (faulty(fd, "fsync-eio")) { errno = EIO; return -1; }
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    if (faulty(fd, "write-enospc")) { errno = ENOSPC; return -1; }
    return real(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    if (faulty(fd, "write-enospc")) { errno = ENOSPC; return -1; }
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    REAL(pwrite64);
    if (faulty(fd, "write-enospc")) { errno = ENOSPC; return -1; }
    return real(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev);
    if (faulty(fd, "write-enospc")) { errno = ENOSPC; return -1; }
    return real(fd, iov, iovcnt);
}
