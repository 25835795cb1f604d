/* SPDX-License-Identifier: MIT */
/* The decision cache of forward authentication, on a clock the tests move by hand. */

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth-cache.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define T0 (1000 * SEC)

static void put(AuthCache *c, const char *key, int status, const char *data, uint64_t expires, uint64_t now) {
        ck_assert_int_eq(auth_cache_put(c, key, strlen(key), status, data, data ? strlen(data) : 0, expires, now), 0);
}

/* 1 and the value as a string (in buf), or 0 */
static int get(AuthCache *c, const char *key, uint64_t now, int *status, char *buf, size_t size) {
        void *d = NULL;
        size_t n = 0;
        int r = auth_cache_get(c, key, strlen(key), now, status, &d, &n);
        ck_assert_int_ge(r, 0);
        if (r == 1) {
                ck_assert_uint_lt(n, size);
                if (n > 0)
                        memcpy(buf, d, n);
                buf[n] = 0;
        } else
                ck_assert_ptr_null(d);
        free(d);
        return r;
}

START_TEST(test_put_get_expire) {
        AuthCache *c;
        char buf[64];
        int status = 0;

        ck_assert_int_eq(auth_cache_new(1 << 20, &c), 0);
        ck_assert_int_eq(get(c, "k", T0, &status, buf, sizeof(buf)), 0);
        put(c, "k", 200, "X-User: alice\r\n", T0 + 5 * SEC, T0);
        ck_assert_int_eq(get(c, "k", T0 + 1, &status, buf, sizeof(buf)), 1);
        ck_assert_int_eq(status, 200);
        ck_assert_str_eq(buf, "X-User: alice\r\n");
        /* another key is another decision */
        ck_assert_int_eq(get(c, "k2", T0 + 1, &status, buf, sizeof(buf)), 0);
        /* a key is compared whole, not by its hash or its prefix */
        ck_assert_int_eq(get(c, "", T0 + 1, &status, buf, sizeof(buf)), 0);
        ck_assert_int_eq(get(c, "kk", T0 + 1, &status, buf, sizeof(buf)), 0);
        /* valid up to the expiry, not at it */
        ck_assert_int_eq(get(c, "k", T0 + 5 * SEC - 1, &status, buf, sizeof(buf)), 1);
        ck_assert_int_eq(get(c, "k", T0 + 5 * SEC, &status, buf, sizeof(buf)), 0);
        /* an expired entry met is dropped */
        ck_assert_uint_eq(auth_cache_count(c), 0);
        ck_assert_uint_eq(auth_cache_bytes(c), 0);
        auth_cache_free(c);
}
END_TEST

START_TEST(test_replace_and_empty_value) {
        AuthCache *c;
        char buf[64];
        int status = 0;

        ck_assert_int_eq(auth_cache_new(1 << 20, &c), 0);
        put(c, "k", 200, NULL, T0 + SEC, T0);
        ck_assert_int_eq(get(c, "k", T0, &status, buf, sizeof(buf)), 1);
        ck_assert_int_eq(status, 200);
        ck_assert_str_eq(buf, "");
        put(c, "k", 401, "WWW-Authenticate: Basic\r\n", T0 + 2 * SEC, T0);
        ck_assert_uint_eq(auth_cache_count(c), 1);
        ck_assert_int_eq(get(c, "k", T0 + SEC + 1, &status, buf, sizeof(buf)), 1);
        ck_assert_int_eq(status, 401);
        ck_assert_str_eq(buf, "WWW-Authenticate: Basic\r\n");
        /* an entry that is already expired is not stored */
        put(c, "old", 200, NULL, T0, T0);
        ck_assert_int_eq(get(c, "old", T0, &status, buf, sizeof(buf)), 0);
        auth_cache_free(c);
}
END_TEST

/* The bytes held stay under the bound: the least recently used entries go first. */
START_TEST(test_bounded_lru) {
        AuthCache *c;
        char key[32], buf[64];
        int status;

        ck_assert_int_eq(auth_cache_new(4096, &c), 0);
        put(c, "keep", 200, "v", T0 + 100 * SEC, T0);
        for (int i = 0; i < 1000; i++) {
                snprintf(key, sizeof(key), "key-%d", i);
                put(c, key, 200, "0123456789", T0 + 100 * SEC, T0);
                ck_assert_uint_le(auth_cache_bytes(c), 4096);
                /* "keep" is used all the time: never the least recently used one */
                ck_assert_int_eq(get(c, "keep", T0 + 1, &status, buf, sizeof(buf)), 1);
        }
        ck_assert_uint_gt(auth_cache_count(c), 10);
        ck_assert_uint_lt(auth_cache_count(c), 1000);
        /* the newest are there, the oldest are gone */
        ck_assert_int_eq(get(c, "key-999", T0 + 1, &status, buf, sizeof(buf)), 1);
        ck_assert_int_eq(get(c, "key-0", T0 + 1, &status, buf, sizeof(buf)), 0);
        /* a value larger than the whole table is not stored, and drops nothing */
        size_t before = auth_cache_count(c);
        char *big = malloc(8192);
        memset(big, 'x', 8191);
        big[8191] = 0;
        put(c, "big", 200, big, T0 + 100 * SEC, T0);
        free(big);
        ck_assert_int_eq(get(c, "big", T0 + 1, &status, buf, sizeof(buf)), 0);
        ck_assert_uint_eq(auth_cache_count(c), before);
        /* nor is a key over AUTH_CACHE_KEY_MAX */
        char *longkey = malloc(AUTH_CACHE_KEY_MAX + 2);
        memset(longkey, 'k', AUTH_CACHE_KEY_MAX + 1);
        longkey[AUTH_CACHE_KEY_MAX + 1] = 0;
        put(c, longkey, 200, NULL, T0 + 100 * SEC, T0);
        ck_assert_int_eq(get(c, longkey, T0 + 1, &status, buf, sizeof(buf)), 0);
        free(longkey);
        auth_cache_free(c);
}
END_TEST

/* Many keys in few buckets: chains hold them apart. */
START_TEST(test_many_keys) {
        AuthCache *c;
        char key[32], want[32], buf[64];
        int status;

        ck_assert_int_eq(auth_cache_new(1 << 20, &c), 0);
        for (int i = 0; i < 3000; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                snprintf(want, sizeof(want), "v%d", i);
                put(c, key, i % 2 ? 403 : 200, want, T0 + 10 * SEC, T0);
        }
        for (int i = 0; i < 3000; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                snprintf(want, sizeof(want), "v%d", i);
                ck_assert_int_eq(get(c, key, T0 + 1, &status, buf, sizeof(buf)), 1);
                ck_assert_int_eq(status, i % 2 ? 403 : 200);
                ck_assert_str_eq(buf, want);
        }
        auth_cache_free(c);
}
END_TEST

typedef struct {
        AuthCache *c;
        int id;
} Worker;

static void *hammer(void *arg) {
        Worker *w = arg;
        char key[32];
        for (int i = 0; i < 20000; i++) {
                snprintf(key, sizeof(key), "k%d", (i * 7 + w->id) % 500);
                if (i % 3 == 0)
                        (void) auth_cache_put(w->c, key, strlen(key), 200, key, strlen(key), T0 + SEC, T0);
                else {
                        void *d = NULL;
                        size_t n;
                        int st;
                        if (auth_cache_get(w->c, key, strlen(key), T0, &st, &d, &n) == 1 &&
                            (n != strlen(key) || memcmp(d, key, n) != 0))
                                abort(); /* a value that is not this key's */
                        free(d);
                }
        }
        return NULL;
}

/* Shared by worker threads: concurrent puts and gets see only whole, matching values. */
START_TEST(test_threads) {
        AuthCache *c;
        pthread_t t[4];
        Worker w[4];

        ck_assert_int_eq(auth_cache_new(16384, &c), 0);
        for (int i = 0; i < 4; i++) {
                w[i] = (Worker){ c, i };
                ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        ck_assert_uint_le(auth_cache_bytes(c), 16384);
        ck_assert_uint_gt(auth_cache_count(c), 0);
        auth_cache_free(c);
}
END_TEST

int main(void) {
        Suite *s = suite_create("auth-cache");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_put_get_expire);
        tcase_add_test(tc, test_replace_and_empty_value);
        tcase_add_test(tc, test_bounded_lru);
        tcase_add_test(tc, test_many_keys);
        tcase_add_test(tc, test_threads);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
