/* SPDX-License-Identifier: MIT */
/* The PROXY protocol, versions 1 and 2 (haproxy.org/download/1.8/doc/proxy-protocol.txt). */
#include <arpa/inet.h>
#include <stdio.h>

#include "proxy-protocol.h"
#include "util.h"

static const unsigned char V2_SIG[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

#define FAIL(msg)                       \
        do {                            \
                *ret_error = (msg);     \
                return -EINVAL;         \
        } while (0)

/* A decimal port 0..65535 without leading zeros (as the specification writes them). */
static int v1_port(const char *s, size_t n, uint16_t *ret) {
        uint64_t v;
        if (n == 0 || n > 5 || (n > 1 && s[0] == '0') || parse_uint64(s, n, &v) < 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int v1_addr(int family, const char *s, size_t n, uint16_t port, struct sockaddr_storage *ss) {
        char tmp[INET6_ADDRSTRLEN];

        if (n == 0 || n >= sizeof(tmp))
                return -EINVAL;
        memcpy(tmp, s, n);
        tmp[n] = 0;
        memset(ss, 0, sizeof(*ss));
        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) ss;
                in->sin_family = AF_INET;
                in->sin_port = htons(port);
                return inet_pton(AF_INET, tmp, &in->sin_addr) == 1 ? 0 : -EINVAL;
        }
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return inet_pton(AF_INET6, tmp, &in6->sin6_addr) == 1 ? 0 : -EINVAL;
}

/* "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n", "PROXY UNKNOWN ...\r\n" */
static ssize_t parse_v1(const char *b, size_t len, ProxyHeader *ret, const char **ret_error) {
        const char *end = NULL, *f[6];
        size_t fl[6], nf = 0, line;
        int family;

        for (size_t i = 0; i < len && i < PROXY_V1_MAX; i++) {
                if (b[i] == '\n')
                        FAIL("PROXY v1 line ends without CR");
                if (b[i] == '\r') {
                        if (i + 1 == len)
                                return 0;
                        if (b[i + 1] != '\n')
                                FAIL("PROXY v1 line: CR without LF");
                        end = b + i;
                        break;
                }
                if ((unsigned char) b[i] < 0x20 || (unsigned char) b[i] > 0x7e)
                        FAIL("PROXY v1 line has a control or non-ASCII byte");
        }
        if (!end) {
                if (len >= PROXY_V1_MAX)
                        FAIL("PROXY v1 line longer than 107 bytes");
                return 0;
        }
        line = (size_t) (end - b) + 2;
        if (line > PROXY_V1_MAX)
                FAIL("PROXY v1 line longer than 107 bytes");
        /* fields separated by single spaces */
        for (const char *p = b; p < end;) {
                const char *q = memchr(p, ' ', (size_t) (end - p));
                if (!q)
                        q = end;
                if (nf == ELEMENTSOF(f))
                        FAIL("PROXY v1 line has too many fields");
                f[nf] = p;
                fl[nf++] = (size_t) (q - p);
                p = q == end ? end : q + 1;
                if (q != end && p == end)
                        FAIL("PROXY v1 line ends with a space");
        }
        *ret = (ProxyHeader){ .version = 1 };
        if (nf >= 2 && memeq(f[1], fl[1], "UNKNOWN"))
                return (ssize_t) line; /* the rest is ignored, as the specification says */
        if (nf != 6)
                FAIL("PROXY v1 line needs protocol, two addresses and two ports");
        if (memeq(f[1], fl[1], "TCP4"))
                family = AF_INET;
        else if (memeq(f[1], fl[1], "TCP6"))
                family = AF_INET6;
        else
                FAIL("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
        uint16_t sp, dp;
        if (v1_port(f[4], fl[4], &sp) < 0 || v1_port(f[5], fl[5], &dp) < 0)
                FAIL("PROXY v1 line has an invalid port");
        if (v1_addr(family, f[2], fl[2], sp, &ret->src) < 0 || v1_addr(family, f[3], fl[3], dp, &ret->dst) < 0)
                FAIL("PROXY v1 line has an invalid address");
        ret->has_addr = true;
        return (ssize_t) line;
}

static ssize_t parse_v2(const unsigned char *b, size_t len, ProxyHeader *ret, const char **ret_error) {
        size_t total, body;

        if (len < 16)
                return 0;
        if ((b[12] >> 4) != 2)
                FAIL("PROXY v2 header with a version other than 2");
        if ((b[12] & 0x0f) > 1)
                FAIL("PROXY v2 header with an unknown command");
        body = (size_t) b[14] << 8 | b[15];
        total = 16 + body;
        if (total > PROXY_V2_MAX)
                FAIL("PROXY v2 header too long");
        if (len < total)
                return 0;
        *ret = (ProxyHeader){ .version = 2 };
        if ((b[12] & 0x0f) == 0)
                return (ssize_t) total; /* LOCAL: the proxy's own connection (health checks) */
        switch (b[13]) {
        case 0x11: { /* TCP over IPv4 */
                struct sockaddr_in *s = (struct sockaddr_in *) &ret->src, *d = (struct sockaddr_in *) &ret->dst;
                if (body < 12)
                        FAIL("PROXY v2 header too short for IPv4 addresses");
                s->sin_family = d->sin_family = AF_INET;
                memcpy(&s->sin_addr, b + 16, 4);
                memcpy(&d->sin_addr, b + 20, 4);
                memcpy(&s->sin_port, b + 24, 2);
                memcpy(&d->sin_port, b + 26, 2);
                ret->has_addr = true;
                break;
        }
        case 0x21: { /* TCP over IPv6 */
                struct sockaddr_in6 *s = (struct sockaddr_in6 *) &ret->src, *d = (struct sockaddr_in6 *) &ret->dst;
                if (body < 36)
                        FAIL("PROXY v2 header too short for IPv6 addresses");
                s->sin6_family = d->sin6_family = AF_INET6;
                memcpy(&s->sin6_addr, b + 16, 16);
                memcpy(&d->sin6_addr, b + 32, 16);
                memcpy(&s->sin6_port, b + 48, 2);
                memcpy(&d->sin6_port, b + 50, 2);
                ret->has_addr = true;
                break;
        }
        default:
                /* UNSPEC, UDP, unix: accepted, and the connection's addresses stand */
                break;
        }
        return (ssize_t) total; /* TLVs are skipped */
}

ssize_t proxy_header_parse(const void *buf, size_t len, ProxyHeader *ret, const char **ret_error) {
        const unsigned char *b = buf;
        const char *dummy;

        if (!ret_error)
                ret_error = &dummy;
        if (len == 0)
                return 0;
        if (b[0] == V2_SIG[0]) {
                if (memcmp(b, V2_SIG, MIN(len, sizeof(V2_SIG))) != 0)
                        FAIL("not a PROXY protocol header");
                return parse_v2(b, len, ret, ret_error);
        }
        if (memcmp(b, "PROXY ", MIN(len, (size_t) 6)) != 0)
                FAIL("not a PROXY protocol header");
        if (len < 6)
                return 0;
        return parse_v1(buf, len, ret, ret_error);
}

ssize_t proxy_header_write(int version, const struct sockaddr *src, const struct sockaddr *dst, void *out,
                           size_t size) {
        bool v4 = src && dst && src->sa_family == AF_INET && dst->sa_family == AF_INET;
        bool v6 = src && dst && src->sa_family == AF_INET6 && dst->sa_family == AF_INET6;
        const struct sockaddr_in *s4 = (const void *) src, *d4 = (const void *) dst;
        const struct sockaddr_in6 *s6 = (const void *) src, *d6 = (const void *) dst;

        if (version == 1) {
                char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
                int n;
                if (v4 || v6) {
                        inet_ntop(src->sa_family, v4 ? (const void *) &s4->sin_addr : (const void *) &s6->sin6_addr, a,
                                  sizeof(a));
                        inet_ntop(dst->sa_family, v4 ? (const void *) &d4->sin_addr : (const void *) &d6->sin6_addr, b,
                                  sizeof(b));
                        n = snprintf(out, size, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", a, b,
                                     ntohs(v4 ? s4->sin_port : s6->sin6_port), ntohs(v4 ? d4->sin_port : d6->sin6_port));
                } else
                        n = snprintf(out, size, "PROXY UNKNOWN\r\n");
                return n < 0 || (size_t) n >= size ? -ENOBUFS : n;
        }

        unsigned char *o = out;
        size_t body = v4 ? 12 : v6 ? 36 : 0;
        if (size < 16 + body)
                return -ENOBUFS;
        memcpy(o, V2_SIG, sizeof(V2_SIG));
        o[12] = (v4 || v6) ? 0x21 : 0x20; /* version 2; PROXY, or LOCAL without addresses */
        o[13] = v4 ? 0x11 : v6 ? 0x21 : 0x00;
        o[14] = 0;
        o[15] = (unsigned char) body;
        if (v4) {
                memcpy(o + 16, &s4->sin_addr, 4);
                memcpy(o + 20, &d4->sin_addr, 4);
                memcpy(o + 24, &s4->sin_port, 2);
                memcpy(o + 26, &d4->sin_port, 2);
        } else if (v6) {
                memcpy(o + 16, &s6->sin6_addr, 16);
                memcpy(o + 32, &d6->sin6_addr, 16);
                memcpy(o + 48, &s6->sin6_port, 2);
                memcpy(o + 50, &d6->sin6_port, 2);
        }
        return (ssize_t) (16 + body);
}
