/* SPDX-License-Identifier: MIT */
/* Cache-Control parsing, HTTP dates and the shared-cache decisions (RFC 9111, RFC 5861). */
#include <check.h>
#include <stdio.h>

#include "cache-control.h"
#include "cache-policy.h"
#include "util.h"

static CacheControl cc_of(const char *v) {
        CacheControl cc;
        cache_control_init(&cc);
        cache_control_parse(&cc, v, strlen(v));
        return cc;
}

START_TEST(test_cc_basic) {
        CacheControl cc = cc_of("public, max-age=60, s-maxage=\"120\", must-revalidate, foo=bar, x");
        ck_assert(cc.flags & CC_PUBLIC);
        ck_assert(cc.flags & CC_MUST_REVALIDATE);
        ck_assert(!(cc.flags & CC_INVALID));
        ck_assert_int_eq(cc.max_age, 60);
        ck_assert_int_eq(cc.s_maxage, 120);
        ck_assert_int_eq(cc.max_stale, CC_UNSET);

        cc = cc_of("NO-STORE,No-Cache=\"Set-Cookie, X\" ,private");
        ck_assert(cc.flags & CC_NO_STORE);
        ck_assert(cc.flags & CC_NO_CACHE);
        ck_assert(cc.flags & CC_PRIVATE);
        ck_assert_int_eq(cc.max_age, CC_UNSET);

        cc = cc_of("max-stale, min-fresh=5, only-if-cached");
        ck_assert_int_eq(cc.max_stale, CC_DELTA_MAX);
        ck_assert_int_eq(cc.min_fresh, 5);
        ck_assert(cc.flags & CC_ONLY_IF_CACHED);

        cc = cc_of("stale-while-revalidate=30, stale-if-error=600, immutable");
        ck_assert_int_eq(cc.stale_while_revalidate, 30);
        ck_assert_int_eq(cc.stale_if_error, 600);
}
END_TEST

START_TEST(test_cc_invalid) {
        CacheControl cc = cc_of("max-age=abc");
        ck_assert(cc.flags & CC_INVALID);
        ck_assert_int_eq(cc.max_age, 0); /* consider it stale */

        cc = cc_of("max-age=60, max-age=10");
        ck_assert(cc.flags & CC_INVALID);
        ck_assert_int_eq(cc.max_age, 10);

        cc = cc_of("max-age=99999999999999999999");
        ck_assert_int_eq(cc.max_age, CC_DELTA_MAX);

        cc = cc_of("max-age=\"5");
        ck_assert(cc.flags & CC_INVALID);
        ck_assert_int_eq(cc.max_age, CC_UNSET);

        cc = cc_of(",,, ,  ");
        ck_assert_uint_eq(cc.flags, 0);
        cc = cc_of("private=\"a,b\", max-age=3");
        ck_assert(cc.flags & CC_PRIVATE);
        ck_assert_int_eq(cc.max_age, 3);
}
END_TEST

START_TEST(test_dates) {
        time_t t;
        ck_assert_int_eq(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t), 0);
        ck_assert_int_eq(t, 784111777);
        ck_assert_int_eq(http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t), 0);
        ck_assert_int_eq(t, 784111777);
        ck_assert_int_eq(http_date_parse("Sun Nov  6 08:49:37 1994", 24, &t), 0);
        ck_assert_int_eq(t, 784111777);
        ck_assert_int_eq(http_date_parse("0", 1, &t), -EINVAL);
        ck_assert_int_eq(http_date_parse("Sun, 06 Nov 1994 08:49:37 UTC", 29, &t), -EINVAL);
        ck_assert_int_eq(http_date_parse("Sun, 06 Xyz 1994 08:49:37 GMT", 29, &t), -EINVAL);
        char buf[40];
        ck_assert_str_eq(http_date_format(784111777, buf, sizeof(buf)), "Sun, 06 Nov 1994 08:49:37 GMT");
}
END_TEST

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

START_TEST(test_lifetime) {
        CacheResponseInfo ri;
        const HttpHeader h1[] = { H("Cache-Control", "max-age=60, s-maxage=30"),
                                  H("Date", "Sun, 06 Nov 1994 08:49:37 GMT") };
        cache_response_info(&ri, 200, h1, 2);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 784111777, -1, 10), 30); /* s-maxage first */

        const HttpHeader h2[] = { H("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                                  H("Expires", "Sun, 06 Nov 1994 08:59:37 GMT") };
        cache_response_info(&ri, 200, h2, 2);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 0, -1, 10), 600);

        const HttpHeader h3[] = { H("Expires", "0") };
        cache_response_info(&ri, 200, h3, 1);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 784111777, 300, 10), 0); /* invalid: expired */

        const HttpHeader h4[] = { H("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                                  H("Last-Modified", "Sun, 06 Nov 1994 07:49:37 GMT") };
        cache_response_info(&ri, 200, h4, 2);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 784111777, -1, 10), 360);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 784111777, -1, 0), 0);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 784111777, 5, 10), 5); /* cache_valid first */
        cache_response_info(&ri, 302, h4, 2);
        ck_assert_int_eq(cache_freshness_lifetime(&ri, 784111777, -1, 10), 0); /* not heuristic */
}
END_TEST

START_TEST(test_storable) {
        CacheResponseInfo ri;
        CacheControl none = cc_of(""), nostore = cc_of("no-store");
        const HttpHeader ok[] = { H("Cache-Control", "max-age=60") };
        cache_response_info(&ri, 200, ok, 1);
        ck_assert_ptr_null(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, false, true));
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_POST, &none, false, &ri, false, true), "method");
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &nostore, false, &ri, false, true), "no-store");
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &none, true, &ri, false, true), "authorization");

        const HttpHeader pub[] = { H("Cache-Control", "public") };
        cache_response_info(&ri, 200, pub, 1);
        ck_assert_ptr_null(cache_not_storable(HTTP_METHOD_GET, &none, true, &ri, false, true));
        const HttpHeader smax[] = { H("Cache-Control", "s-maxage=5") };
        cache_response_info(&ri, 200, smax, 1);
        ck_assert_ptr_null(cache_not_storable(HTTP_METHOD_GET, &none, true, &ri, false, true));

        const HttpHeader priv[] = { H("Cache-Control", "private, max-age=60") };
        cache_response_info(&ri, 200, priv, 1);
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, false, true), "private");

        const HttpHeader vary[] = { H("Cache-Control", "max-age=60"), H("Vary", "Accept, *") };
        cache_response_info(&ri, 200, vary, 2);
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, false, true), "vary-star");

        const HttpHeader bare[] = { H("Content-Type", "text/plain") };
        cache_response_info(&ri, 200, bare, 1);
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, false, true), "no-freshness");
        ck_assert_ptr_null(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, true, true));
        cache_response_info(&ri, 206, ok, 1);
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, false, true), "status");

        const HttpHeader cookie[] = { H("Cache-Control", "max-age=60"), H("Set-Cookie", "a=b") };
        cache_response_info(&ri, 200, cookie, 2);
        ck_assert_str_eq(cache_not_storable(HTTP_METHOD_GET, &none, false, &ri, false, true), "set-cookie");
}
END_TEST

START_TEST(test_age) {
        CacheResponseInfo ri;
        const HttpHeader h[] = { H("Date", "Sun, 06 Nov 1994 08:49:37 GMT"), H("Age", "10") };
        cache_response_info(&ri, 200, h, 2);
        /* apparent age 5, corrected age value 10 + 2 */
        ck_assert_int_eq(cache_initial_age(&ri, 784111780, 784111782), 12);
        const HttpHeader h2[] = { H("Date", "Sun, 06 Nov 1994 08:49:37 GMT") };
        cache_response_info(&ri, 200, h2, 1);
        ck_assert_int_eq(cache_initial_age(&ri, 784111800, 784111800), 23);
        CacheEntryTimes t = { .lifetime = 60, .initial_age = 12, .response_time = 1000, .swr = -1, .sie = -1 };
        ck_assert_int_eq(cache_current_age(&t, 1010), 22);
}
END_TEST

START_TEST(test_verdict) {
        CacheEntryTimes t = { .lifetime = 60, .initial_age = 0, .response_time = 1000, .swr = -1, .sie = -1 };
        CacheControl none = cc_of("");
        ck_assert_int_eq(cache_verdict(&t, &none, 1059), CACHE_USE);
        ck_assert_int_eq(cache_verdict(&t, &none, 1060), CACHE_VALIDATE);
        CacheControl nc = cc_of("no-cache");
        ck_assert_int_eq(cache_verdict(&t, &nc, 1001), CACHE_VALIDATE);
        CacheControl ma = cc_of("max-age=5");
        ck_assert_int_eq(cache_verdict(&t, &ma, 1005), CACHE_USE);
        ck_assert_int_eq(cache_verdict(&t, &ma, 1006), CACHE_VALIDATE);
        CacheControl mf = cc_of("min-fresh=20");
        ck_assert_int_eq(cache_verdict(&t, &mf, 1040), CACHE_USE);
        ck_assert_int_eq(cache_verdict(&t, &mf, 1041), CACHE_VALIDATE);
        CacheControl ms = cc_of("max-stale=10");
        ck_assert_int_eq(cache_verdict(&t, &ms, 1070), CACHE_USE);
        ck_assert_int_eq(cache_verdict(&t, &ms, 1071), CACHE_VALIDATE);
        CacheControl msany = cc_of("max-stale");
        ck_assert_int_eq(cache_verdict(&t, &msany, 99999), CACHE_USE);

        t.flags = CC_MUST_REVALIDATE;
        ck_assert_int_eq(cache_verdict(&t, &msany, 1061), CACHE_VALIDATE);
        ck_assert(!cache_stale_on_error(&t, &none, 1061, true));
        t.flags = 0;
        t.s_maxage = true; /* implies proxy-revalidate */
        ck_assert_int_eq(cache_verdict(&t, &msany, 1061), CACHE_VALIDATE);
        t.s_maxage = false;
        t.flags = CC_NO_CACHE;
        ck_assert_int_eq(cache_verdict(&t, &none, 1001), CACHE_VALIDATE);
        t.flags = 0;

        t.swr = 30;
        ck_assert_int_eq(cache_verdict(&t, &none, 1080), CACHE_USE_REFRESH);
        ck_assert_int_eq(cache_verdict(&t, &none, 1091), CACHE_VALIDATE);

        t.sie = 100;
        ck_assert(cache_stale_on_error(&t, &none, 1150, false));
        ck_assert(!cache_stale_on_error(&t, &none, 1161, false));
        ck_assert(cache_stale_on_error(&t, &none, 5000, true));
        CacheControl rsie = cc_of("stale-if-error=5");
        ck_assert(!cache_stale_on_error(&t, &rsie, 1070, true));
        ck_assert(cache_stale_on_error(&t, &rsie, 1065, false));
}
END_TEST

START_TEST(test_vary) {
        Buf names = {}, a = {}, b = {}, c = {};
        const HttpHeader resp[] = { H("Vary", "Accept-Encoding, ACCEPT"), H("Vary", "accept,x-y") };
        ck_assert_int_eq(cache_vary_names(resp, 2, &names), 0);
        ck_assert_int_eq(buf_append(&names, "", 1), 0);
        ck_assert_str_eq(buf_head(&names), "accept,accept-encoding,x-y");

        const HttpHeader r1[] = { H("Accept", "text/html ,  text/plain"), H("Accept-Encoding", "gzip") };
        const HttpHeader r2[] = { H("accept-encoding", "gzip"), H("ACCEPT", "text/html,text/plain") };
        const HttpHeader r3[] = { H("Accept", "text/html"), H("Accept-Encoding", "gzip") };
        ck_assert_int_eq(cache_vary_values(buf_head(&names), r1, 2, &a), 0);
        ck_assert_int_eq(cache_vary_values(buf_head(&names), r2, 2, &b), 0);
        ck_assert_int_eq(cache_vary_values(buf_head(&names), r3, 2, &c), 0);
        ck_assert_uint_eq(buf_len(&a), buf_len(&b));
        ck_assert_int_eq(memcmp(buf_head(&a), buf_head(&b), buf_len(&a)), 0);
        ck_assert(buf_len(&a) != buf_len(&c) || memcmp(buf_head(&a), buf_head(&c), buf_len(&a)) != 0);

        Buf star = {};
        const HttpHeader st[] = { H("Vary", "*") };
        ck_assert_int_eq(cache_vary_names(st, 1, &star), -EINVAL);
        buf_free(&names);
        buf_free(&a);
        buf_free(&b);
        buf_free(&c);
        buf_free(&star);
}
END_TEST

START_TEST(test_valid) {
        char *e[] = { "200 301 10m", "404 1m", "any 5s" };
        ck_assert_int_eq(cache_valid_lookup(e, 3, 200), 600);
        ck_assert_int_eq(cache_valid_lookup(e, 3, 301), 600);
        ck_assert_int_eq(cache_valid_lookup(e, 3, 404), 60);
        ck_assert_int_eq(cache_valid_lookup(e, 3, 500), 5);
        ck_assert_int_eq(cache_valid_lookup(e, 2, 500), -1);
        int codes[4];
        size_t n;
        bool any;
        uint64_t u;
        ck_assert_int_eq(cache_valid_parse("10m", codes, 4, &n, &any, &u), -EINVAL);
        ck_assert_int_eq(cache_valid_parse("200 abc", codes, 4, &n, &any, &u), -EINVAL);
        ck_assert_int_eq(cache_valid_parse("99 1m", codes, 4, &n, &any, &u), -EINVAL);
}
END_TEST

START_TEST(test_status_format) {
        char buf[128];
        CacheStatusInfo hit = { .fwd = CACHE_FWD_NONE, .has_ttl = true, .ttl = 42 };
        ck_assert_str_eq(cache_status_format(&hit, buf, sizeof(buf)), "proxyd; hit; ttl=42");
        CacheStatusInfo miss = { .fwd = CACHE_FWD_URI_MISS, .fwd_status = 200, .stored = true, .has_ttl = true,
                                 .ttl = 60 };
        ck_assert_str_eq(cache_status_format(&miss, buf, sizeof(buf)),
                         "proxyd; fwd=uri-miss; fwd-status=200; ttl=60; stored");
        CacheStatusInfo stale = { .fwd = CACHE_FWD_STALE, .fwd_status = 304 };
        ck_assert_str_eq(cache_status_format(&stale, buf, sizeof(buf)), "proxyd; fwd=stale; fwd-status=304");
}
END_TEST

static Suite *cache_suite(void) {
        Suite *s = suite_create("cache");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_cc_basic);
        tcase_add_test(tc, test_cc_invalid);
        tcase_add_test(tc, test_dates);
        tcase_add_test(tc, test_lifetime);
        tcase_add_test(tc, test_storable);
        tcase_add_test(tc, test_age);
        tcase_add_test(tc, test_verdict);
        tcase_add_test(tc, test_vary);
        tcase_add_test(tc, test_valid);
        tcase_add_test(tc, test_status_format);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(cache_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
