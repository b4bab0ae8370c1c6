/* LD_PRELOAD shim for benchmarks/cluster_durability.py's machine crash: after
 * each successful fsync(2) or fdatasync(2) of a regular file, appends
 * "<path> <size>\n" to the file named by $FSYNC_LOG, <size> being the file's
 * size when the call began: bytes certainly on disk (what was written later
 * may or may not be covered, so it counts as not).  A power loss keeps a file
 * up to its last such size at worst; the kernel's own writeback may save more.
 *
 *   cc -shared -fPIC -O2 -o fsync_log.so fsync_log.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void note(int fd, off_t size) {
    const char *log = getenv("FSYNC_LOG");
    char link[64], path[4096], line[4200];
    ssize_t length;
    int out;
    if (log == NULL || size < 0) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    length = readlink(link, path, sizeof path - 1);
    if (length <= 0) return;
    path[length] = '\0';
    length = snprintf(line, sizeof line, "%s %lld\n", path, (long long) size);
    /* O_APPEND: lines from Redis' threads and its rewrite child stay whole. */
    out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (out < 0) return;
    if (write(out, line, (size_t) length) != length) { /* the log is best effort */ }
    close(out);
}

static off_t regular_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return st.st_size;
}

int fsync(int fd) {
    static int (*real)(int);
    off_t size = regular_size(fd);
    int result;
    if (real == NULL) real = (int (*)(int)) dlsym(RTLD_NEXT, "fsync");
    result = real(fd);
    if (result == 0) note(fd, size);
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    off_t size = regular_size(fd);
    int result;
    if (real == NULL) real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    result = real(fd);
    if (result == 0) note(fd, size);
    return result;
}
