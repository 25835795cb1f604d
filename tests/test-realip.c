/* SPDX-License-Identifier: MIT */
/* The client address behind trusted proxies: header walks, right to left. */

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-schema.h"
#include "realip.h"
#include "util.h"

typedef struct Case {
        const char *value;
        RealIpSyntax syntax;
        bool recursive;
        const char *want; /* "ADDR PORT", or NULL: none found */
} Case;

/* trusted: 10.0.0.0/8, 2001:db8::/32 */
static const Case cases[] = {
        { .value = "203.0.113.7", .want = "203.0.113.7 0" },
        { .value = "203.0.113.7, 10.0.0.2", .want = "10.0.0.2 0" },
        { .value = "203.0.113.7, 10.0.0.2", .recursive = true, .want = "203.0.113.7 0" },
        { .value = "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3", .recursive = true, .want = "203.0.113.7 0" },
        /* all trusted: the leftmost */
        { .value = "10.1.1.1, 10.0.0.2", .recursive = true, .want = "10.1.1.1 0" },
        /* garbage ends the walk; what was taken before it stands */
        { .value = "evil, 10.0.0.2", .recursive = true, .want = "10.0.0.2 0" },
        { .value = "203.0.113.7, garbage", .recursive = true, .want = NULL },
        { .value = "203.0.113.7, garbage", .want = NULL },
        { .value = "", .want = NULL },
        { .value = " , ,", .want = NULL },
        { .value = "203.0.113.7,,  ", .want = "203.0.113.7 0" },
        { .value = "203.0.113.7:4711", .want = "203.0.113.7 4711" },
        { .value = "2001:db8::5, [2001:db8::6]:80", .recursive = true, .want = "2001:db8::5 0" },
        { .value = "2001:db9::5, [2001:db8::6]:80", .recursive = true, .want = "2001:db9::5 0" },
        { .value = "[2001:db8::6]:80", .want = "2001:db8::6 80" },
        { .value = "203.0.113.7:99999", .want = NULL },
        { .value = "[1.2.3.4]", .want = NULL },
        { .value = "::ffff:10.0.0.9, 203.0.113.1", .recursive = true, .want = "203.0.113.1 0" },
        /* RFC 7239 */
        { .value = "for=192.0.2.60;proto=http;by=203.0.113.43", .syntax = REALIP_FORWARDED, .want = "192.0.2.60 0" },
        { .value = "for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\"", .syntax = REALIP_FORWARDED,
          .want = "2001:db8:cafe::17 4711" },
        { .value = "for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\"", .syntax = REALIP_FORWARDED, .recursive = true,
          .want = "192.0.2.43 0" },
        { .value = "For=\"_hidden\", for=10.0.0.5", .syntax = REALIP_FORWARDED, .recursive = true, .want = "10.0.0.5 0" },
        { .value = "for=unknown", .syntax = REALIP_FORWARDED, .want = NULL },
        { .value = "proto=https;host=\"a,b\"", .syntax = REALIP_FORWARDED, .want = NULL },
        { .value = "proto=https; for=198.51.100.17 ;host=\"x,y\"", .syntax = REALIP_FORWARDED, .want = "198.51.100.17 0" },
};

static void format(const struct sockaddr_storage *ss, char *out, size_t size) {
        char a[INET6_ADDRSTRLEN];
        if (ss->ss_family == AF_INET) {
                const struct sockaddr_in *in = (const void *) ss;
                inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
                snprintf(out, size, "%s %u", a, ntohs(in->sin_port));
        } else {
                const struct sockaddr_in6 *in6 = (const void *) ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
                snprintf(out, size, "%s %u", a, ntohs(in6->sin6_port));
        }
}

START_TEST(test_walk) {
        const Case *c = &cases[_i];
        AccessRule trusted[2];
        struct sockaddr_storage ss;
        char got[80];

        ck_assert_int_eq(parse_cidr("10.0.0.0/8", &trusted[0]), 0);
        ck_assert_int_eq(parse_cidr("2001:db8::/32", &trusted[1]), 0);
        /* exact-size copy: no reading past the value */
        char *v = malloc(strlen(c->value) + 1);
        memcpy(v, c->value, strlen(c->value) + 1);
        int r = realip_walk(v, strlen(v), c->syntax, c->recursive, trusted, 2, &ss);
        free(v);
        if (!c->want) {
                ck_assert_msg(r == 0, "\"%s\": found an address", c->value);
                return;
        }
        ck_assert_msg(r == 1, "\"%s\": nothing found", c->value);
        format(&ss, got, sizeof(got));
        ck_assert_msg(streq(got, c->want), "\"%s\": got %s, want %s", c->value, got, c->want);
}
END_TEST

START_TEST(test_cidr) {
        AccessRule r;
        struct sockaddr_storage ss;

        ck_assert_int_eq(parse_cidr("192.168.0.0/16", &r), 0);
        ck_assert_int_eq(realip_parse_addr("192.168.7.1", 11, &ss), 0);
        ck_assert(cidr_match(&r, 1, (struct sockaddr *) &ss));
        ck_assert_int_eq(realip_parse_addr("192.169.7.1", 11, &ss), 0);
        ck_assert(!cidr_match(&r, 1, (struct sockaddr *) &ss));
        ck_assert(!cidr_match(&r, 0, (struct sockaddr *) &ss));
        ck_assert_int_eq(parse_cidr("unix:", &r), 0);
        ck_assert(cidr_match(&r, 1, (struct sockaddr *) &(struct sockaddr) { .sa_family = AF_UNIX }));
        ck_assert_int_lt(parse_cidr("all", &r), 0);
        ck_assert_int_lt(parse_cidr("10.0.0.0/33", &r), 0);
        ck_assert_int_lt(parse_cidr("", &r), 0);
        ck_assert_int_lt(parse_cidr("deny 1.2.3.4", &r), 0);
}
END_TEST

static Suite *realip_suite(void) {
        Suite *s = suite_create("realip");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_walk, 0, (int) ELEMENTSOF(cases));
        tcase_add_test(tc, test_cidr);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(realip_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
