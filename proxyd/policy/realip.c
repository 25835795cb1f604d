/* SPDX-License-Identifier: MIT */
/* The client's address from X-Forwarded-For / X-Real-IP / Forwarded. See realip.h. */
#include <arpa/inet.h>

#include "realip.h"
#include "util.h"

#define REALIP_ENTRIES_MAX 100 /* entries looked at, from the right */

static bool is_ows(char c) {
        return c == ' ' || c == '\t';
}

int realip_parse_addr(const char *s, size_t n, struct sockaddr_storage *ret) {
        char tmp[INET6_ADDRSTRLEN];
        const char *host = s, *port = NULL;
        size_t hl = n;
        uint64_t pv = 0;

        if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
                s++, n -= 2, host = s, hl = n;
        if (n > 0 && s[0] == '[') {
                const char *rb = memchr(s, ']', n);
                if (!rb)
                        return -EINVAL;
                host = s + 1;
                hl = (size_t) (rb - host);
                if (rb + 1 < s + n) {
                        if (rb[1] != ':')
                                return -EINVAL;
                        port = rb + 2;
                }
        } else {
                const char *colon = memchr(s, ':', n);
                /* one colon: IPv4 with a port; more: a bare IPv6 address */
                if (colon && !memchr(colon + 1, ':', (size_t) (s + n - colon - 1))) {
                        hl = (size_t) (colon - s);
                        port = colon + 1;
                }
        }
        if (port && (parse_uint64(port, (size_t) (s + n - port), &pv) < 0 || pv > 65535))
                return -EINVAL;
        if (hl == 0 || hl >= sizeof(tmp))
                return -EINVAL;
        memcpy(tmp, host, hl);
        tmp[hl] = 0;
        memset(ret, 0, sizeof(*ret));
        struct sockaddr_in *in = (struct sockaddr_in *) ret;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;
        if (s[0] != '[' && inet_pton(AF_INET, tmp, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t) pv);
                return 0;
        }
        if (inet_pton(AF_INET6, tmp, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) pv);
                return 0;
        }
        return -EINVAL;
}

/* The for= value of one Forwarded element (pairs separated by ';'), or NULL. */
static const char *forwarded_for(const char *e, size_t n, size_t *ret_len) {
        const char *end = e + n;
        while (e < end) {
                const char *semi = e;
                bool q = false;
                while (semi < end && (q || *semi != ';')) {
                        if (*semi == '"')
                                q = !q;
                        semi++;
                }
                const char *k = e;
                while (k < semi && is_ows(*k))
                        k++;
                if (semi - k > 4 && strncasecmp(k, "for=", 4) == 0) {
                        const char *v = k + 4, *ve = semi;
                        while (ve > v && is_ows(ve[-1]))
                                ve--;
                        *ret_len = (size_t) (ve - v);
                        return v;
                }
                e = semi + 1;
        }
        return NULL;
}

int realip_walk(const char *value, size_t len, RealIpSyntax syntax, bool recursive, const AccessRule *trusted,
                size_t n_trusted, struct sockaddr_storage *ret) {
        const char *end = value + len;
        bool found = false;

        for (int k = 0; k < REALIP_ENTRIES_MAX && end > value; k++) {
                /* the entry between the last comma (outside quotes) before `end` and `end` */
                const char *start = end;
                bool q = false;
                while (start > value && (q || start[-1] != ',')) {
                        if (start[-1] == '"')
                                q = !q;
                        start--;
                }
                const char *a = start, *b = end;
                end = start > value ? start - 1 : value;
                while (a < b && is_ows(*a))
                        a++;
                while (b > a && is_ows(b[-1]))
                        b--;
                if (a == b)
                        continue; /* empty list elements are allowed (RFC 9110 5.6.1) */
                if (syntax == REALIP_FORWARDED) {
                        size_t fl = 0;
                        const char *f = forwarded_for(a, (size_t) (b - a), &fl);
                        if (!f)
                                break;
                        a = f, b = f + fl;
                }
                struct sockaddr_storage ss;
                if (realip_parse_addr(a, (size_t) (b - a), &ss) < 0)
                        break;
                *ret = ss;
                found = true;
                if (!recursive || !cidr_match(trusted, n_trusted, (struct sockaddr *) &ss))
                        break;
        }
        return found ? 1 : 0;
}
