/* SPDX-License-Identifier: MIT */
/* The PROXY protocol parser and writer: each header whole, by every prefix, and with the
 * bytes that follow it. */

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy-protocol.h"
#include "util.h"

#define V2 "\r\n\r\n\0\r\nQUIT\n"

typedef struct Case {
        const char *name;
        const char *data;
        size_t len;     /* 0: strlen(data) */
        ssize_t expect; /* header length, 0 (incomplete) or -EINVAL */
        bool has_addr;
        const char *src; /* "ADDR PORT" */
        const char *dst;
} Case;

#define C(n, d, l, e) .name = n, .data = d, .len = l, .expect = e
#define ADDR(s, d) .has_addr = true, .src = s, .dst = d
static const Case cases[] = {
        { C("v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 0, 45), ADDR("192.0.2.1 56324", "198.51.100.2 443") },
        { C("v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 4711 80\r\n", 0, 36), ADDR("2001:db8::1 4711", "::1 80") },
        { C("v1 unknown", "PROXY UNKNOWN\r\n", 0, 15) },
        { C("v1 unknown with addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", 0, 35) },
        { C("v1 port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n", 0, -EINVAL) },
        { C("v1 leading zero port", "PROXY TCP4 1.2.3.4 5.6.7.8 01 1\r\n", 0, -EINVAL) },
        { C("v1 v6 address as TCP4", "PROXY TCP4 ::1 ::1 1 1\r\n", 0, -EINVAL) },
        { C("v1 two spaces", "PROXY TCP4 1.2.3.4  5.6.7.8 1 1\r\n", 0, -EINVAL) },
        { C("v1 missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, -EINVAL) },
        { C("v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 0, -EINVAL) },
        { C("v1 UDP", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL) },
        { C("v1 no CRLF within 107 bytes", "PROXY TCP6 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, -EINVAL) },
        { C("v1 lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL) },
        { C("http instead", "GET / HTTP/1.1\r\n\r\n", 0, -EINVAL) },
        { C("tls instead", "\x16\x03\x01\x02\x00", 0, -EINVAL) },
        { C("v2 tcp4", V2 "\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb", 28, 28), ADDR("192.0.2.1 56324", "198.51.100.2 443") },
        { C("v2 tcp4 with a TLV", V2 "\x21\x11\x00\x13\x0a\x00\x00\x01\x0a\x00\x00\x02\x00\x50\x01\xbb\x04\x00\x04xyzw", 35, 35), ADDR("10.0.0.1 80", "10.0.0.2 443") },
        { C("v2 tcp6", V2 "\x21\x21\x00\x24"
             "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
             "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
             "\x12\x67\x00\x50", 52, 52), ADDR("2001:db8::1 4711", "::1 80") },
        { C("v2 local", V2 "\x20\x00\x00\x00", 16, 16) },
        { C("v2 local with bytes", V2 "\x20\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 28, 28) },
        { C("v2 unspec", V2 "\x21\x00\x00\x00", 16, 16) },
        { C("v2 version 1", V2 "\x11\x11\x00\x00", 16, -EINVAL) },
        { C("v2 command 2", V2 "\x22\x11\x00\x00", 16, -EINVAL) },
        { C("v2 short for ipv4", V2 "\x21\x11\x00\x04\x01\x02\x03\x04", 20, -EINVAL) },
        { C("v2 too long", V2 "\x21\x11\xff\xff", 16, -EINVAL) },
        { C("v2 bad signature", "\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00", 16, -EINVAL) },
};

static void check_addr(const struct sockaddr_storage *ss, const char *want) {
        char a[INET6_ADDRSTRLEN], text[80];
        unsigned port;

        if (ss->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const void *) ss;
                inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
                port = ntohs(in->sin_port);
        } else {
                const struct sockaddr_in6 *in6 = (const void *) ss;
                ck_assert_int_eq(ss->ss_family, AF_INET6);
                inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
                port = ntohs(in6->sin6_port);
        }
        snprintf(text, sizeof(text), "%s %u", a, port);
        ck_assert_str_eq(text, want);
}

START_TEST(test_cases) {
        const Case *c = &cases[_i];
        size_t len = c->len ?: strlen(c->data);
        const char *err = NULL;
        ProxyHeader h;
        ssize_t n;

        /* exact-size copy, plus a copy with a request after it */
        char *buf = malloc(len + 18);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, c->data, len);
        memcpy(buf + len, "GET / HTTP/1.1\r\n\r\n", 18);

        n = proxy_header_parse(buf, len, &h, &err);
        ck_assert_msg(n == c->expect, "%s: got %zd (%s), want %zd", c->name, n, err ?: "", c->expect);
        if (n < 0)
                ck_assert_ptr_nonnull(err);
        if (n > 0) {
                ck_assert(h.has_addr == c->has_addr);
                if (c->has_addr) {
                        check_addr(&h.src, c->src);
                        check_addr(&h.dst, c->dst);
                }
                ck_assert_int_eq(proxy_header_parse(buf, len + 18, &h, &err), n);
                /* every prefix: not complete yet, never an error */
                for (size_t k = 0; k < (size_t) n; k++)
                        ck_assert_msg(proxy_header_parse(buf, k, &h, &err) == 0, "%s: prefix %zu", c->name, k);
        }
        if (n < 0) {
                /* an error shows by the prefix that breaks the rule at the latest */
                bool seen = false;
                for (size_t k = 0; k <= len; k++) {
                        ssize_t m = proxy_header_parse(buf, k, &h, &err);
                        ck_assert(m == 0 || m == -EINVAL);
                        if (m < 0)
                                seen = true;
                        else
                                ck_assert_msg(!seen, "%s: an error at a prefix, then none at %zu", c->name, k);
                }
        }
        free(buf);
}
END_TEST

/* What proxyd writes to upstreams parses back to the same addresses. */
START_TEST(test_write_roundtrip) {
        struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(40000) };
        struct sockaddr_in d4 = { .sin_family = AF_INET, .sin_port = htons(8080) };
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
        struct sockaddr_in6 d6 = { .sin6_family = AF_INET6, .sin6_port = htons(2) };
        char out[128];
        ProxyHeader h;
        ssize_t n;

        inet_pton(AF_INET, "203.0.113.9", &s4.sin_addr);
        inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
        inet_pton(AF_INET6, "2001:db8::9", &s6.sin6_addr);
        inet_pton(AF_INET6, "::1", &d6.sin6_addr);

        n = proxy_header_write(1, (void *) &s4, (void *) &d4, out, sizeof(out));
        ck_assert_int_eq(n, (ssize_t) strlen("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8080\r\n"));
        ck_assert(memcmp(out, "PROXY TCP4 203.0.113.9 127.0.0.1 40000 8080\r\n", (size_t) n) == 0);
        for (int v = 1; v <= 2; v++) {
                n = proxy_header_write(v, (void *) &s6, (void *) &d6, out, sizeof(out));
                ck_assert_int_gt(n, 0);
                ck_assert_int_eq(proxy_header_parse(out, (size_t) n, &h, NULL), n);
                ck_assert_int_eq(h.version, v);
                check_addr(&h.src, "2001:db8::9 1");
                check_addr(&h.dst, "::1 2");
                n = proxy_header_write(v, (void *) &s4, (void *) &d4, out, sizeof(out));
                ck_assert_int_eq(proxy_header_parse(out, (size_t) n, &h, NULL), n);
                check_addr(&h.src, "203.0.113.9 40000");
        }
        /* no addresses (unix, mixed families): UNKNOWN / LOCAL */
        n = proxy_header_write(1, (void *) &s4, (void *) &d6, out, sizeof(out));
        ck_assert_int_eq(n, 15);
        ck_assert(memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0);
        n = proxy_header_write(2, NULL, NULL, out, sizeof(out));
        ck_assert_int_eq(n, 16);
        ck_assert_int_eq(proxy_header_parse(out, 16, &h, NULL), 16);
        ck_assert(!h.has_addr);
        ck_assert_int_eq(proxy_header_write(2, (void *) &s6, (void *) &d6, out, 20), -ENOBUFS);
        ck_assert_int_eq(proxy_header_write(1, (void *) &s6, (void *) &d6, out, 20), -ENOBUFS);
}
END_TEST

static Suite *proxy_protocol_suite(void) {
        Suite *s = suite_create("proxy-protocol");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_cases, 0, (int) ELEMENTSOF(cases));
        tcase_add_test(tc, test_write_roundtrip);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(proxy_protocol_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
