/* SPDX-License-Identifier: MIT */
/* The limit table and its token bucket, on a clock the tests move by hand. */

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-schema.h"
#include "limit.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define MS USEC_PER_MSEC
#define T0 (1000 * SEC)

static LimitResult check(LimitTable *t, const LimitParams *p, const char *key, uint64_t now, LimitVerdict *v,
                         LimitHold *h) {
        LimitVerdict dummy;
        ck_assert_int_eq(limit_check(t, p, key, strlen(key), now, v ?: &dummy, h), 0);
        return (v ?: &dummy)->result;
}

/* rate=1r/s, no burst: one request a second, the next one rejected until a second passed */
START_TEST(test_rate_no_burst) {
        LimitTable *t;
        LimitParams p = { .rate = 1000000 };
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(100, &t), 0);
        ck_assert_int_eq(check(t, &p, "a", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "a", T0 + 10 * MS, &v, NULL), LIMIT_REJECT_RATE);
        /* the bucket drains in a second from the last accepted request: 990 ms to go */
        ck_assert_uint_eq(v.retry_after_usec, 990 * MS);
        /* a rejected request does not move the bucket */
        ck_assert_int_eq(check(t, &p, "a", T0 + 999 * MS, &v, NULL), LIMIT_REJECT_RATE);
        ck_assert_int_eq(check(t, &p, "a", T0 + 1000 * MS, &v, NULL), LIMIT_PASS);
        /* another key has its own bucket */
        ck_assert_int_eq(check(t, &p, "b", T0 + 1000 * MS, &v, NULL), LIMIT_PASS);
        limit_table_unref(t);
}
END_TEST

/* rate=10r/s burst=5 nodelay: 6 at once pass (1 + burst), the 7th is rejected; each 100 ms
 * frees one slot */
START_TEST(test_burst_nodelay) {
        LimitTable *t;
        LimitParams p = { .rate = 10000000, .burst = 5, .nodelay = true };
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(100, &t), 0);
        for (int i = 0; i < 6; i++) {
                ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_PASS);
                ck_assert_uint_eq(v.delay_usec, 0);
        }
        ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_REJECT_RATE);
        ck_assert_uint_eq(v.retry_after_usec, 100 * MS);
        ck_assert_int_eq(check(t, &p, "k", T0 + 99 * MS, &v, NULL), LIMIT_REJECT_RATE);
        ck_assert_int_eq(check(t, &p, "k", T0 + 100 * MS, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0 + 100 * MS, &v, NULL), LIMIT_REJECT_RATE);
        /* after 600 ms (plus the one just taken) the bucket is empty again: 6 pass */
        for (int i = 0; i < 6; i++)
                ck_assert_int_eq(check(t, &p, "k", T0 + 700 * MS, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0 + 700 * MS, &v, NULL), LIMIT_REJECT_RATE);
        limit_table_unref(t);
}
END_TEST

/* Without nodelay the excess waits: at 10r/s the requests of a burst are spaced 100 ms
 * apart; delay=2 lets the first two excess requests through at once (nginx delay=). */
START_TEST(test_burst_delay) {
        LimitTable *t;
        LimitParams p = { .rate = 10000000, .burst = 4 };
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(100, &t), 0);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_PASS);
        for (unsigned i = 1; i <= 4; i++) {
                ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_DELAY);
                ck_assert_uint_eq(v.delay_usec, i * 100 * MS);
        }
        ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_REJECT_RATE);

        p.delay = 2;
        ck_assert_int_eq(check(t, &p, "d", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "d", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "d", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "d", T0, &v, NULL), LIMIT_DELAY);
        ck_assert_uint_eq(v.delay_usec, 100 * MS);
        ck_assert_int_eq(check(t, &p, "d", T0, &v, NULL), LIMIT_DELAY);
        ck_assert_uint_eq(v.delay_usec, 200 * MS);
        ck_assert_int_eq(check(t, &p, "d", T0, &v, NULL), LIMIT_REJECT_RATE);
        limit_table_unref(t);
}
END_TEST

/* Rates below one a second: 0.5r/s (30r/m) lets one request through every 2 s */
START_TEST(test_rate_slow) {
        LimitTable *t;
        LimitParams p = { .rate = 500000 };
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(100, &t), 0);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0 + 1999 * MS, &v, NULL), LIMIT_REJECT_RATE);
        ck_assert_uint_eq(v.retry_after_usec, 1 * MS);
        ck_assert_int_eq(check(t, &p, "k", T0 + 2000 * MS, &v, NULL), LIMIT_PASS);
        limit_table_unref(t);
}
END_TEST

START_TEST(test_conn) {
        LimitTable *t;
        LimitParams p = { .conn = 2 };
        LimitHold a = {}, b = {}, c = {};
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(100, &t), 0);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, &a), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, &b), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, &c), LIMIT_REJECT_CONN);
        ck_assert_ptr_null(c.table);
        ck_assert_int_eq(check(t, &p, "other", T0, &v, &c), LIMIT_PASS);
        limit_release(&c);
        limit_release(&a);
        ck_assert_ptr_null(a.table);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, &a), LIMIT_PASS);
        limit_release(&a);
        limit_release(&b);
        limit_release(&b); /* twice: nothing */
        limit_table_unref(t);
}
END_TEST

/* The table holds at most max_keys entries; keys with requests in progress are kept, and
 * when every entry has one, a new key is refused */
START_TEST(test_bounded) {
        LimitTable *t;
        LimitParams rp = { .rate = 1000000, .burst = 10, .nodelay = true }, p = { .conn = 1 };
        LimitHold h[4] = {};
        LimitVerdict v;
        char key[16];

        ck_assert_int_eq(limit_table_new(4, &t), 0);
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                ck_assert_int_eq(check(t, &rp, key, T0 + (uint64_t) i, &v, NULL), LIMIT_PASS);
                ck_assert_int_eq(check(t, &rp, key, T0 + (uint64_t) i, &v, NULL), LIMIT_PASS);
                ck_assert_uint_le(limit_table_size(t), 4);
        }
        limit_table_unref(t);
        ck_assert_int_eq(limit_table_new(4, &t), 0);
        for (int i = 0; i < 4; i++) {
                snprintf(key, sizeof(key), "h%d", i);
                ck_assert_int_eq(check(t, &p, key, T0, &v, &h[i]), LIMIT_PASS);
        }
        ck_assert_int_eq(check(t, &p, "new", T0, &v, NULL), LIMIT_REJECT_FULL);
        limit_release(&h[1]);
        ck_assert_int_eq(check(t, &p, "new", T0, &v, NULL), LIMIT_PASS);
        ck_assert_uint_eq(limit_table_size(t), 4);
        /* h1 was the entry given up */
        LimitHold x = {};
        ck_assert_int_eq(check(t, &p, "h0", T0, &v, &x), LIMIT_REJECT_CONN);
        for (int i = 0; i < 4; i++)
                limit_release(&h[i]);
        limit_table_unref(t);
}
END_TEST

/* Idle keys (bucket drained, nothing in progress, unused for LIMIT_IDLE_USEC) leave the table
 * as the cold end of the LRU list is passed, without the table being full. */
START_TEST(test_idle_eviction) {
        LimitTable *t;
        LimitParams p = { .rate = 1000000, .burst = 3, .nodelay = true };
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(1000, &t), 0);
        ck_assert_int_eq(check(t, &p, "a", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "a", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "b", T0, &v, NULL), LIMIT_PASS);
        ck_assert_uint_eq(limit_table_size(t), 2);
        ck_assert_int_eq(check(t, &p, "c", T0 + 30 * SEC, &v, NULL), LIMIT_PASS);
        ck_assert_uint_eq(limit_table_size(t), 3);
        /* a minute after their last request, "a" and "b" go; "c" was used since */
        ck_assert_int_eq(check(t, &p, "c", T0 + LIMIT_IDLE_USEC, &v, NULL), LIMIT_PASS);
        ck_assert_uint_eq(limit_table_size(t), 1);
        /* a bucket still holding excess stays however old: 50 requests of excess at 1r/s */
        p.burst = 100;
        for (int i = 0; i < 51; i++)
                ck_assert_int_eq(check(t, &p, "full", T0 + LIMIT_IDLE_USEC, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "d", T0 + 3 * LIMIT_IDLE_USEC / 2, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "e", T0 + 3 * LIMIT_IDLE_USEC / 2, &v, NULL), LIMIT_PASS);
        /* nothing went: "c" was used 30 s ago, "full" has 20 s of excess left */
        ck_assert_uint_eq(limit_table_size(t), 4);
        /* two minutes after: "c" and "full" (drained 10 s after it stopped) both go */
        ck_assert_int_eq(check(t, &p, "f", T0 + 2 * LIMIT_IDLE_USEC, &v, NULL), LIMIT_PASS);
        ck_assert_uint_eq(limit_table_size(t), 3);
        limit_table_unref(t);
}
END_TEST

/* Exact across threads: 4 threads take 1000 requests each from one key of a bucket that
 * never drains in that time; exactly 1 + burst pass. */
static LimitTable *shared;
static atomic_uint passed;

static void *hammer(void *arg) {
        LimitParams p = { .rate = 1000, .burst = 1499, .nodelay = true };
        (void) arg;
        for (int i = 0; i < 1000; i++) {
                LimitVerdict v;
                if (limit_check(shared, &p, "same", 4, T0, &v, NULL) == 0 && v.result == LIMIT_PASS)
                        atomic_fetch_add(&passed, 1);
        }
        return NULL;
}

START_TEST(test_threads_exact) {
        pthread_t th[4];

        ck_assert_int_eq(limit_table_new(100000, &shared), 0);
        atomic_store(&passed, 0);
        for (int i = 0; i < 4; i++)
                ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
        for (int i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        ck_assert_uint_eq(atomic_load(&passed), 1500);
        shared = limit_table_unref(shared);
}
END_TEST

/* Keys longer than LIMIT_KEY_MAX that differ only beyond it are still different keys. */
START_TEST(test_long_keys) {
        LimitTable *t;
        LimitParams p = { .rate = 1000000 };
        char a[LIMIT_KEY_MAX + 10], b[LIMIT_KEY_MAX + 10];
        LimitVerdict v;

        memset(a, 'x', sizeof(a) - 1);
        a[sizeof(a) - 1] = 0;
        memcpy(b, a, sizeof(b));
        b[sizeof(b) - 2] = 'y';
        ck_assert_int_eq(limit_table_new(100, &t), 0);
        ck_assert_int_eq(check(t, &p, a, T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, b, T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, a, T0, &v, NULL), LIMIT_REJECT_RATE);
        ck_assert_int_eq(check(t, &p, "", T0, &v, NULL), LIMIT_PASS);
        limit_table_unref(t);
}
END_TEST

/* Keys that differ in one byte, or in length only, at every length around the hash's 8-byte
 * rounds, have buckets of their own. */
START_TEST(test_similar_keys) {
        LimitTable *t;
        LimitParams p = { .rate = 1000000 };
        char k[40];
        LimitVerdict v;

        memset(k, 'k', sizeof(k));
        ck_assert_int_eq(limit_table_new(1000, &t), 0); /* one shard: room for all 820 keys */
        for (size_t n = 0; n < sizeof(k); n++) {
                ck_assert_int_eq(limit_check(t, &p, k, n, T0, &v, NULL), 0);
                ck_assert_int_eq(v.result, LIMIT_PASS);
        }
        for (size_t n = 1; n < sizeof(k); n++)
                for (size_t at = 0; at < n; at++) {
                        k[at] = 'j';
                        ck_assert_int_eq(limit_check(t, &p, k, n, T0, &v, NULL), 0);
                        ck_assert_msg(v.result == LIMIT_PASS, "length %zu, byte %zu", n, at);
                        k[at] = 'k';
                        ck_assert_int_eq(limit_check(t, &p, k, n, T0, &v, NULL), 0);
                        ck_assert_int_eq(v.result, LIMIT_REJECT_RATE);
                }
        ck_assert_uint_eq(limit_table_size(t), sizeof(k) + sizeof(k) * (sizeof(k) - 1) / 2);
        limit_table_unref(t);
}
END_TEST

/* A high rate after a long pause: rate * elapsed does not fit in 64 bits; the bucket is empty
 * all the same. */
START_TEST(test_rate_high_long_pause) {
        LimitTable *t;
        LimitParams p = { .rate = 1000000 * UINT64_C(1000000), .burst = 2, .nodelay = true };
        LimitVerdict v;

        ck_assert_int_eq(limit_table_new(100, &t), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0, &v, NULL), LIMIT_REJECT_RATE);
        /* 10^12 millionths per second for 10^5 s: 10^23 > 2^64 */
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(check(t, &p, "k", T0 + 100000 * SEC, &v, NULL), LIMIT_PASS);
        ck_assert_int_eq(check(t, &p, "k", T0 + 100000 * SEC, &v, NULL), LIMIT_REJECT_RATE);
        limit_table_unref(t);
}
END_TEST

/* rate = "...": millionths of a request per second */
START_TEST(test_rate_parse) {
        static const struct {
                const char *text;
                uint64_t want; /* 0: invalid */
        } t[] = {
                { "10r/s", 10000000 }, { "1r/s", 1000000 }, { "600r/m", 10000000 }, { "1r/m", 16666 },
                { "0.5r/s", 500000 }, { "2.25r/s", 2250000 }, { "1000000r/s", 1000000000000 },
                { "1000001r/s", 0 }, { "0r/s", 0 }, { "10", 0 }, { "10 r/s", 0 }, { "r/s", 0 },
                { "1.r/s", 0 }, { "10r/h", 0 }, { "-1r/s", 0 }, { "0.0000001r/s", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                uint64_t v = 0;
                int r = config_rate_parse(t[i].text, &v);
                if (t[i].want == 0)
                        ck_assert_msg(r < 0, "%s accepted", t[i].text);
                else
                        ck_assert_msg(r == 0 && v == t[i].want, "%s: %d %llu", t[i].text, r, (unsigned long long) v);
        }
}
END_TEST

static Suite *limit_suite(void) {
        Suite *s = suite_create("limit");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_rate_no_burst);
        tcase_add_test(tc, test_burst_nodelay);
        tcase_add_test(tc, test_burst_delay);
        tcase_add_test(tc, test_rate_slow);
        tcase_add_test(tc, test_conn);
        tcase_add_test(tc, test_bounded);
        tcase_add_test(tc, test_idle_eviction);
        tcase_add_test(tc, test_threads_exact);
        tcase_add_test(tc, test_long_keys);
        tcase_add_test(tc, test_similar_keys);
        tcase_add_test(tc, test_rate_high_long_pause);
        tcase_add_test(tc, test_rate_parse);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(limit_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
