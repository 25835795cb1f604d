/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "buf.h"
#include "util.h"

static const struct {
        const char *in;
        int ret;
        uint64_t usec;
} durations[] = {
        { "500ms", 0, 500 * USEC_PER_MSEC },
        { "5s", 0, 5 * USEC_PER_SEC },
        { "2m", 0, 120 * USEC_PER_SEC },
        { "1h", 0, 3600 * USEC_PER_SEC },
        { "1d", 0, 86400 * USEC_PER_SEC },
        { "7", 0, 7 * USEC_PER_SEC },
        { "0", 0, 0 },
        { "0ms", 0, 0 },
        { "", -EINVAL, 0 },
        { "s", -EINVAL, 0 },
        { "5x", -EINVAL, 0 },
        { "5 s", -EINVAL, 0 },
        { " 5s", -EINVAL, 0 },
        { "-5s", -EINVAL, 0 },
        { "+5s", -EINVAL, 0 },
        { "5sec", -EINVAL, 0 },
        { "1.5s", -EINVAL, 0 },
        { "5S", -EINVAL, 0 },
        { "18446744073709551616", -EINVAL, 0 },  /* 2^64 */
        { "18446744073709551615ms", -EINVAL, 0 }, /* overflow after scaling */
        { "213503983d", -EINVAL, 0 },              /* > 2^64 usec */
        { "213503982d", 0, UINT64_C(213503982) * 86400 * USEC_PER_SEC },
};

START_TEST(test_parse_duration) {
        uint64_t v = 12345;
        int r = parse_duration(durations[_i].in, &v);

        ck_assert_msg(r == durations[_i].ret, "\"%s\": %d", durations[_i].in, r);
        if (r == 0)
                ck_assert_uint_eq(v, durations[_i].usec);
        else
                ck_assert_uint_eq(v, 12345); /* untouched on error */
}
END_TEST

static const struct {
        const char *in;
        int ret;
        uint64_t v;
} sizes[] = {
        { "512", 0, 512 },
        { "16k", 0, 16384 },
        { "16K", 0, 16384 },
        { "1m", 0, 1048576 },
        { "1M", 0, 1048576 },
        { "1g", 0, UINT64_C(1) << 30 },
        { "0", 0, 0 },
        { "", -EINVAL, 0 },
        { "k", -EINVAL, 0 },
        { "1kb", -EINVAL, 0 },
        { "1t", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "1 k", -EINVAL, 0 },
        { "17179869184g", -EINVAL, 0 }, /* 2^34 g = 2^64 */
        { "17179869183g", 0, UINT64_C(17179869183) << 30 },
        { "99999999999999999999", -EINVAL, 0 },
};

START_TEST(test_parse_size) {
        uint64_t v = 777;
        int r = parse_size(sizes[_i].in, &v);

        ck_assert_msg(r == sizes[_i].ret, "\"%s\": %d", sizes[_i].in, r);
        if (r == 0)
                ck_assert_uint_eq(v, sizes[_i].v);
}
END_TEST

START_TEST(test_parse_uint64) {
        uint64_t v = 0;

        ck_assert_int_eq(parse_uint64("18446744073709551615", 20, &v), 0);
        ck_assert_uint_eq(v, UINT64_MAX);
        ck_assert_int_eq(parse_uint64("18446744073709551616", 20, &v), -EINVAL);
        ck_assert_int_eq(parse_uint64("123abc", 3, &v), 0);
        ck_assert_uint_eq(v, 123);
        ck_assert_int_eq(parse_uint64("123abc", 4, &v), -EINVAL);
        ck_assert_int_eq(parse_uint64("", 0, &v), -EINVAL);
        ck_assert_int_eq(parse_uint64("+1", 2, &v), -EINVAL);
        ck_assert_int_eq(parse_uint64(" 1", 2, &v), -EINVAL);
}
END_TEST

START_TEST(test_format_duration) {
        char buf[32];
        uint64_t v = 0;

        ck_assert_str_eq(format_duration(5 * USEC_PER_SEC, buf, sizeof(buf)), "5s");
        ck_assert_str_eq(format_duration(1500 * USEC_PER_MSEC, buf, sizeof(buf)), "1500ms");
        ck_assert_str_eq(format_duration(120 * USEC_PER_SEC, buf, sizeof(buf)), "2m");
        ck_assert_str_eq(format_duration(86400 * USEC_PER_SEC, buf, sizeof(buf)), "1d");
        ck_assert_str_eq(format_duration(0, buf, sizeof(buf)), "0");
        ck_assert_str_eq(format_duration(1, buf, sizeof(buf)), "1us");
        ck_assert_str_eq(format_duration(USEC_INFINITY, buf, sizeof(buf)), "infinity");
        /* round trip */
        for (size_t i = 0; i < ELEMENTSOF(durations); i++) {
                if (durations[i].ret != 0)
                        continue;
                format_duration(durations[i].usec, buf, sizeof(buf));
                ck_assert_int_eq(parse_duration(buf, &v), 0);
                ck_assert_uint_eq(v, durations[i].usec);
        }
}
END_TEST

START_TEST(test_strndup_lower) {
        _cleanup_free_ char *s = strndup_lower("X-Real-IP!", 9);

        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s, "x-real-ip");
        ck_assert(memcaseeq("HoSt", 4, "host"));
        ck_assert(!memcaseeq("Hos", 3, "host"));
        ck_assert(streq_ptr(NULL, NULL));
        ck_assert(!streq_ptr("a", NULL));
}
END_TEST

/* memcaseeq_lower against a byte-by-byte reference, for every length up to 24 and every
 * byte value in every position: letters match either case, nothing else but itself. */
START_TEST(test_memcaseeq_lower) {
        char lower[24], s[24];

        for (size_t n = 0; n <= sizeof(s); n++) {
                for (size_t i = 0; i < n; i++)
                        lower[i] = (char) ('a' + (i * 7) % 26);
                memcpy(s, lower, n);
                ck_assert(memcaseeq_lower(s, lower, n));
                for (size_t at = 0; at < n; at++) {
                        for (int c = 0; c < 256; c++) {
                                s[at] = (char) c;
                                bool want = ascii_tolower((char) c) == lower[at];
                                ck_assert_msg(memcaseeq_lower(s, lower, n) == want, "n %zu at %zu byte %d", n, at, c);
                        }
                        s[at] = lower[at];
                }
        }
        /* the neighbours of the letters stay themselves */
        ck_assert(!memcaseeq_lower("@[`{@[`{@", "`{@[`{@[`", 9));
        ck_assert(memcaseeq_lower("X-FORWARDED-Proto", "x-forwarded-proto", 17));
}
END_TEST

START_TEST(test_now_usec) {
        uint64_t a = now_usec(CLOCK_MONOTONIC), b = now_usec(CLOCK_MONOTONIC);

        ck_assert_uint_gt(a, 0);
        ck_assert_uint_ge(b, a);
}
END_TEST

START_TEST(test_buf) {
        Buf b = {};

        ck_assert_int_eq(buf_append_str(&b, "hello "), 0);
        ck_assert_int_eq(buf_printf(&b, "%s %d", "world", 42), 0);
        ck_assert_uint_eq(buf_len(&b), 14);
        ck_assert(memeq(buf_head(&b), buf_len(&b), "hello world 42"));
        buf_consume(&b, 6);
        ck_assert(memeq(buf_head(&b), buf_len(&b), "world 42"));
        buf_compact(&b);
        ck_assert_uint_eq(b.start, 0);
        ck_assert(memeq(buf_head(&b), buf_len(&b), "world 42"));
        /* growth keeps content */
        for (int i = 0; i < 1000; i++)
                ck_assert_int_eq(buf_append(&b, "0123456789", 10), 0);
        ck_assert_uint_eq(buf_len(&b), 8 + 10000);
        ck_assert(memcmp(buf_head(&b), "world 42012", 11) == 0);
        ck_assert_int_eq(buf_reserve(&b, 100), 0);
        ck_assert_uint_ge(buf_space(&b), 100);
        ck_assert_int_eq(buf_reserve(&b, SIZE_MAX), -ENOMEM);
        buf_consume(&b, buf_len(&b));
        ck_assert_uint_eq(buf_len(&b), 0);
        ck_assert_uint_eq(b.start, 0);
        buf_free(&b);
        ck_assert_ptr_null(b.data);
        ck_assert_uint_eq(b.cap, 0);
        buf_free(&b);
}
END_TEST

START_TEST(test_host_strip_port) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "localhost", "localhost" },        { "localhost:8443", "localhost" },
                { "example.test:443", "example.test" }, { "[::1]:8443", "::1" },
                { "[::1]", "::1" },                  { "::1", "::1" },
                { "127.0.0.1:9", "127.0.0.1" },      { "", "" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char buf[64];
                snprintf(buf, sizeof(buf), "%s", cases[i].in);
                host_strip_port(buf);
                ck_assert_msg(strcmp(buf, cases[i].out) == 0, "%s -> %s, expected %s", cases[i].in, buf,
                              cases[i].out);
        }
}
END_TEST

static Suite *util_suite(void) {
        Suite *s = suite_create("util");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_parse_duration, 0, ELEMENTSOF(durations));
        tcase_add_loop_test(tc, test_parse_size, 0, ELEMENTSOF(sizes));
        tcase_add_test(tc, test_parse_uint64);
        tcase_add_test(tc, test_host_strip_port);
        tcase_add_test(tc, test_format_duration);
        tcase_add_test(tc, test_strndup_lower);
        tcase_add_test(tc, test_memcaseeq_lower);
        tcase_add_test(tc, test_now_usec);
        tcase_add_test(tc, test_buf);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(util_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
