/* SPDX-License-Identifier: MIT */
/* File helpers of the cache's disk store (cache-file.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cache-file.h"
#include "util.h"

/* A fast 64-bit checksum over words (not cryptographic: it catches torn and truncated files). */
uint64_t cache_checksum(uint64_t h, const void *p, size_t n) {
        const unsigned char *b = p;
        while (n >= 8) {
                uint64_t w;
                memcpy(&w, b, 8);
                h = (h ^ w) * UINT64_C(0x9e3779b97f4a7c15);
                h ^= h >> 29;
                b += 8;
                n -= 8;
        }
        while (n-- > 0) {
                h = (h ^ *b++) * UINT64_C(0x100000001b3);
                h ^= h >> 29;
        }
        return h;
}

int cache_write_all(int fd, struct iovec *iov, int n) {
        while (n > 0) {
                ssize_t k = writev(fd, iov, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                while (n > 0 && (size_t) k >= iov->iov_len) {
                        k -= (ssize_t) iov->iov_len;
                        iov++;
                        n--;
                }
                if (n > 0) {
                        iov->iov_base = (char *) iov->iov_base + k;
                        iov->iov_len -= (size_t) k;
                }
        }
        return 0;
}

int cache_read_exact(int fd, void *p, size_t n) {
        char *b = p;
        while (n > 0) {
                ssize_t k = read(fd, b, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                b += k;
                n -= (size_t) k;
        }
        return 0;
}

char *cache_read_string(int fd, size_t n) {
        char *s = malloc(n + 1);
        if (!s)
                return NULL;
        if (cache_read_exact(fd, s, n) < 0) {
                free(s);
                return NULL;
        }
        s[n] = 0;
        return s;
}

/* n bytes from in at in_off to the end of out, in the kernel where it can (copy_file_range),
 * else through a buffer. */
int cache_copy_range(int in, uint64_t in_off, int out, uint64_t n) {
        bool kernel = true;
        _cleanup_free_ char *buf = NULL;
        while (n > 0) {
                ssize_t k = -1;
                size_t want = (size_t) MIN(n, (uint64_t) 1 << 30);
                if (kernel) {
                        loff_t off = (loff_t) in_off;
                        k = copy_file_range(in, &off, out, NULL, want, 0);
                        if (k < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
                                kernel = false;
                                continue;
                        }
                } else {
                        want = MIN(want, (size_t) 256 * 1024);
                        if (!buf && !(buf = malloc(want)))
                                return -ENOMEM;
                        k = pread(in, buf, want, (off_t) in_off);
                        if (k > 0) {
                                int r = cache_write_all(out, &(struct iovec){ buf, (size_t) k }, 1);
                                if (r < 0)
                                        return r;
                        }
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                in_off += (uint64_t) k;
                n -= (uint64_t) k;
        }
        return 0;
}
