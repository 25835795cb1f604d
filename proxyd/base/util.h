/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Hand over ownership of a pointer out of a _cleanup_ variable. */
#define TAKE_PTR(p)                      \
        ({                               \
                __typeof__(p) _p_ = (p); \
                (p) = NULL;              \
                _p_;                     \
        })
#define TAKE_FD(fd)               \
        ({                        \
                int _fd_ = (fd);  \
                (fd) = -EBADF;    \
                _fd_;             \
        })

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_INFINITY UINT64_MAX

static inline void freep(void *p) {
        free(*(void **) p);
}
static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
/* Case-insensitive comparison of a counted string with a C string. */
static inline bool memcaseeq(const char *s, size_t n, const char *lit) {
        size_t l = strlen(lit);
        return n == l && strncasecmp(s, lit, l) == 0;
}
static inline bool memeq(const char *s, size_t n, const char *lit) {
        size_t l = strlen(lit);
        return n == l && memcmp(s, lit, l) == 0;
}
static inline char ascii_tolower(char c) {
        return (c >= 'A' && c <= 'Z') ? (char) (c + 32) : c;
}

static inline uint64_t load_u64(const char *p) {
        uint64_t w;
        memcpy(&w, p, 8);
        return w;
}

/* The eight bytes of w with ASCII capitals in lower case (a byte above 0x7f stays). */
static inline uint64_t ascii_lower8(uint64_t w) {
        const uint64_t low7 = UINT64_C(0x7f7f7f7f7f7f7f7f), high = UINT64_C(0x8080808080808080);
        uint64_t h = w & low7;
        uint64_t ge_a = h + UINT64_C(0x3f3f3f3f3f3f3f3f); /* bit 7: at least 'A' */
        uint64_t gt_z = h + UINT64_C(0x2525252525252525); /* bit 7: above 'Z' */
        return w | ((ge_a & ~gt_z & ~w & high) >> 2);
}

/* s (n bytes) is lower (n bytes, lower case) but for the case of ASCII letters. From eight
 * bytes on, eight at a time, the last eight overlapping the ones before. */
static inline bool memcaseeq_lower(const char *s, const char *lower, size_t n) {
        if (n < 8) {
                for (size_t i = 0; i < n; i++)
                        if (ascii_tolower(s[i]) != lower[i])
                                return false;
                return true;
        }
        for (size_t i = 0; i + 8 < n; i += 8)
                if (ascii_lower8(load_u64(s + i)) != load_u64(lower + i))
                        return false;
        return ascii_lower8(load_u64(s + n - 8)) == load_u64(lower + n - 8);
}

/* Allocation that aborts on OOM is deliberately NOT provided: callers return -ENOMEM. */
char *strndup_lower(const char *s, size_t n);

/* "500ms", "5s", "2m", "1h", "1d", or a bare number of seconds. -EINVAL if malformed or out of range. */
int parse_duration(const char *s, uint64_t *ret_usec);
/* "512", "16k", "1m", "1g" (binary multiples, case-insensitive). */
int parse_size(const char *s, uint64_t *ret);
/* Decimal without sign, leading '+', spaces or overflow. */
int parse_uint64(const char *s, size_t n, uint64_t *ret);

/* Format usec back into the shortest exact duration string ("1500ms", "5s"). buf >= 32 bytes. */
const char *format_duration(uint64_t usec, char *buf, size_t size);

uint64_t now_usec(int clock); /* clock_gettime wrapper */

/* "host:port" -> "host", "[v6]:port" or "[v6]" -> "v6", in place; a bare IPv6 address (more
 * than one colon, no brackets) is left alone. The name TLS sends and verifies for a host. */
void host_strip_port(char *n);
