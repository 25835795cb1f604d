/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "util.h"

char *strndup_lower(const char *s, size_t n) {
        char *r = malloc(n + 1);
        if (!r)
                return NULL;
        for (size_t i = 0; i < n; i++)
                r[i] = ascii_tolower(s[i]);
        r[n] = 0;
        return r;
}

int parse_uint64(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                unsigned d = (unsigned) (s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EINVAL;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

/* Split "123unit" into its digits and the unit suffix. */
static int split_number(const char *s, uint64_t *ret_n, const char **ret_unit) {
        size_t i = 0;

        if (!s)
                return -EINVAL;
        while (s[i] >= '0' && s[i] <= '9')
                i++;
        if (i == 0)
                return -EINVAL;
        if (parse_uint64(s, i, ret_n) < 0)
                return -EINVAL;
        *ret_unit = s + i;
        return 0;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *ret) {
        if (b != 0 && a > UINT64_MAX / b)
                return -EINVAL;
        *ret = a * b;
        return 0;
}

int parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "", USEC_PER_SEC },
                { "ms", USEC_PER_MSEC },
                { "s", USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
                { "d", 86400 * USEC_PER_SEC },
        };
        const char *unit;
        uint64_t n, v;

        if (split_number(s, &n, &unit) < 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(unit, units[i].suffix)) {
                        if (mul_checked(n, units[i].usec, &v) < 0 || v == USEC_INFINITY)
                                return -EINVAL;
                        *ret_usec = v;
                        return 0;
                }
        return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret) {
        const char *unit;
        uint64_t n, mult;

        if (split_number(s, &n, &unit) < 0)
                return -EINVAL;
        if (unit[0] == 0)
                mult = 1;
        else if (unit[1] != 0)
                return -EINVAL;
        else if (unit[0] == 'k' || unit[0] == 'K')
                mult = UINT64_C(1) << 10;
        else if (unit[0] == 'm' || unit[0] == 'M')
                mult = UINT64_C(1) << 20;
        else if (unit[0] == 'g' || unit[0] == 'G')
                mult = UINT64_C(1) << 30;
        else
                return -EINVAL;
        return mul_checked(n, mult, ret);
}

const char *format_duration(uint64_t usec, char *buf, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },
                { "ms", USEC_PER_MSEC },
        };

        if (!buf || size == 0)
                return NULL;
        if (usec == USEC_INFINITY) {
                snprintf(buf, size, "infinity");
                return buf;
        }
        if (usec == 0) {
                snprintf(buf, size, "0");
                return buf;
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (usec % units[i].usec == 0) {
                        snprintf(buf, size, "%" PRIu64 "%s", usec / units[i].usec, units[i].suffix);
                        return buf;
                }
        snprintf(buf, size, "%" PRIu64 "us", usec);
        return buf;
}

uint64_t now_usec(int clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

void host_strip_port(char *n) {
        if (n[0] == '[') {
                char *rb = strchr(n, ']');
                if (rb)
                        *rb = 0;
                memmove(n, n + 1, strlen(n));
        } else {
                char *colon = strrchr(n, ':');
                if (colon && strchr(n, ':') == colon)
                        *colon = 0;
        }
}
