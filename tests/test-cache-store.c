/* SPDX-License-Identifier: MIT */
/* The cache store: index, variants, purges, memory and disk LRU, damaged files (each test
 * runs in a process of its own: the store is one per process). */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cache-store.h"
#include "util.h"

static char dir[64];

static void setup(void) {
        snprintf(dir, sizeof(dir), "/tmp/test-cache-store-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));) {
                char p[PATH_MAX];
                snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
                (void) unlink(p);
        }
        if (d)
                closedir(d);
        (void) rmdir(dir);
}

static void put(const char *key, const char *variant, const char *body, size_t len) {
        CacheObject *o = cache_object_new(key, variant, variant[0] ? "accept" : "", "X-A: 1\r\n", 8);
        ck_assert_ptr_nonnull(o);
        o->status = 200;
        o->times = (CacheEntryTimes){ .lifetime = 60, .response_time = 1000, .swr = -1, .sie = -1 };
        ck_assert_int_eq(cache_object_append(o, body, len), 0);
        cache_store_insert(o);
}

static bool has(const char *key, const char *variant, const char *body) {
        CacheObject *o = cache_store_lookup(key, variant);
        bool r = o && o->body_len == strlen(body) && memcmp(o->body, body, o->body_len) == 0;
        cache_object_unref(o);
        return r;
}

static size_t files(void) {
        size_t n = 0;
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));)
                n += e->d_name[0] != '.';
        if (d)
                closedir(d);
        return n;
}

START_TEST(test_variants_and_purge) {
        Buf names = {};
        cache_store_configure(dir, 1 << 20, 1 << 20);
        ck_assert_int_eq(cache_store_vary("http://a/x", &names), 0);
        put("http://a/x", "accept:text/html\n", "html", 4);
        put("http://a/x", "accept:text/plain\n", "plain", 5);
        put("http://a/y", "", "y", 1);
        put("http://b/z", "", "z", 1);
        ck_assert_int_eq(cache_store_vary("http://a/x", &names), 1);
        ck_assert_int_eq(buf_append(&names, "", 1), 0);
        ck_assert_str_eq(buf_head(&names), "accept");
        ck_assert(has("http://a/x", "accept:text/html\n", "html"));
        ck_assert(has("http://a/x", "accept:text/plain\n", "plain"));
        ck_assert(!has("http://a/x", "accept:image/png\n", ""));
        ck_assert_uint_eq(files(), 4);
        /* a new object for the same key and variant replaces the old one (same file) */
        put("http://a/y", "", "y2", 2);
        ck_assert(has("http://a/y", "", "y2"));
        ck_assert_uint_eq(files(), 4);
        ck_assert_uint_eq(cache_store_purge("http://a/x"), 2);
        ck_assert(!has("http://a/x", "accept:text/html\n", "html"));
        ck_assert_uint_eq(cache_store_purge_prefix("http://a/"), 1);
        ck_assert(has("http://b/z", "", "z"));
        ck_assert_uint_eq(files(), 1);
        CacheStats st;
        cache_store_stats(&st);
        ck_assert_uint_eq(st.objects, 1);
        ck_assert_uint_eq(st.purged, 3);
        buf_free(&names);
}
END_TEST

START_TEST(test_ref_outlives_purge) {
        cache_store_configure(NULL, 1 << 20, 0);
        put("k", "", "still here", 10);
        CacheObject *o = cache_store_lookup("k", "");
        ck_assert_ptr_nonnull(o);
        ck_assert_uint_eq(cache_store_purge("k"), 1);
        ck_assert_ptr_null(cache_store_lookup("k", ""));
        ck_assert_int_eq(memcmp(o->body, "still here", 10), 0); /* the reader's copy lives on */
        cache_object_unref(o);
}
END_TEST

START_TEST(test_memory_lru) {
        char body[1000];
        memset(body, 'm', sizeof(body));
        body[999] = 0;
        cache_store_configure(NULL, 2500, 0); /* memory only: room for two */
        put("1", "", body, 999);
        put("2", "", body, 999);
        ck_assert(has("1", "", body)); /* 1 is now used last */
        put("3", "", body, 999);
        ck_assert(has("1", "", body));
        ck_assert(!has("2", "", body));
        ck_assert(has("3", "", body));
        CacheStats st;
        cache_store_stats(&st);
        ck_assert_uint_eq(st.evictions, 1);
        ck_assert_uint_le(st.memory_bytes, 2500);
}
END_TEST

START_TEST(test_disk_lru_and_reload) {
        char body[1000];
        memset(body, 'd', sizeof(body));
        body[999] = 0;
        cache_store_configure(dir, 0, 2600); /* nothing in memory: every hit reads the file */
        put("1", "", body, 999);
        put("2", "", body, 999);
        ck_assert(has("1", "", body));
        ck_assert(has("2", "", body));
        put("3", "", body, 999);
        ck_assert_uint_eq(files(), 2);
        ck_assert(!has("1", "", body));
        ck_assert(has("3", "", body));
}
END_TEST

START_TEST(test_damaged_file) {
        cache_store_configure(dir, 0, 1 << 20);
        put("k", "", "0123456789", 10);
        ck_assert(has("k", "", "0123456789"));
        /* flip one body byte in the file */
        DIR *d = opendir(dir);
        char p[PATH_MAX] = "";
        for (struct dirent *e; (e = readdir(d));)
                if (e->d_name[0] != '.')
                        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        closedir(d);
        int fd = open(p, O_RDWR);
        ck_assert_int_ge(fd, 0);
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_int_eq(pwrite(fd, "X", 1, st.st_size - 8 - 3), 1);
        close(fd);
        ck_assert(!has("k", "", "0123456789"));
        ck_assert(!has("k", "", "0123456X89"));
        ck_assert_uint_eq(files(), 0); /* removed */
}
END_TEST

START_TEST(test_scan) {
        /* files left by an earlier run: complete ones are indexed, the rest removed */
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/tmp.1.1", dir);
        FILE *f = fopen(p, "w");
        fputs("unfinished", f);
        fclose(f);
        snprintf(p, sizeof(p), "%s/0123456789abcdef0123456789abcdef", dir);
        f = fopen(p, "w");
        fputs("not an object", f);
        fclose(f);
        cache_store_configure(dir, 1 << 20, 1 << 20);
        ck_assert(!has("x", "", ""));
        ck_assert_uint_eq(files(), 0);
}
END_TEST

/* A fill of unknown length that goes to its file midway: the file is completed (length,
 * checksum) when it is inserted, and read back whole; one cut before its end leaves no file. */
START_TEST(test_spill_unknown_length) {
        char body[1003];
        for (size_t i = 0; i < sizeof(body) - 1; i++)
                body[i] = (char) ('a' + i % 23);
        body[sizeof(body) - 1] = 0;
        cache_store_configure(dir, 16, 1 << 20);
        CacheObject *o = cache_object_new("u", "", "", "X-A: 1\r\n", 8);
        ck_assert_ptr_nonnull(o);
        o->status = 200;
        o->times = (CacheEntryTimes){ .lifetime = 60, .response_time = 1000, .swr = -1, .sie = -1 };
        ck_assert_int_eq(cache_object_append(o, body, 13), 0);
        ck_assert_int_eq(cache_object_spill(o, UINT64_MAX), 0);
        ck_assert_ptr_null(o->body);
        ck_assert_int_eq(cache_object_append(o, body + 13, 500), 0);
        ck_assert_int_eq(cache_object_append(o, body + 513, 489), 0);
        cache_store_insert(o);
        ck_assert_uint_eq(files(), 1);
        ck_assert(has("u", "", body));

        CacheObject *cut = cache_object_new("v", "", "", "X-A: 1\r\n", 8);
        ck_assert_int_eq(cache_object_spill(cut, UINT64_MAX), 0);
        ck_assert_int_eq(cache_object_append(cut, body, 100), 0);
        ck_assert_uint_eq(files(), 2); /* its temporary file */
        cache_object_unref(cut);
        ck_assert_uint_eq(files(), 1);
}
END_TEST

/* An object on disk only gets a new head: a new file with the body copied file to file
 * replaces the old one. */
START_TEST(test_copy_body) {
        char body[1000];
        memset(body, 'c', sizeof(body));
        body[999] = 0;
        cache_store_configure(dir, 0, 1 << 20);
        put("k", "", body, 999);
        Buf variant = {};
        bool vary;
        CacheObject *old = cache_store_lookup_request("k", NULL, 0, &variant, &vary);
        buf_free(&variant);
        ck_assert_ptr_nonnull(old);
        ck_assert_ptr_null(old->body);
        CacheObject *o = cache_object_new("k", "", "", "X-A: 2\r\n", 8);
        ck_assert_int_eq(cache_object_copy_body(o, old), 0);
        o->status = 200;
        o->times = (CacheEntryTimes){ .lifetime = 120, .response_time = 2000, .swr = -1, .sie = -1 };
        cache_store_insert(o);
        cache_object_unref(old);
        ck_assert_uint_eq(files(), 1);
        CacheObject *n = cache_store_lookup("k", "");
        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(n->head, "X-A: 2\r\n");
        ck_assert_int_eq(n->times.lifetime, 120);
        ck_assert(n->body_len == 999 && memcmp(n->body, body, 999) == 0);
        cache_object_unref(n);
}
END_TEST

START_TEST(test_collapsing_claims) {
        cache_store_configure(NULL, 1 << 20, 0);
        ck_assert_int_eq(cache_store_fill_claim("k\n"), 1);
        ck_assert_int_eq(cache_store_fill_claim("k\n"), 0);
        ck_assert(cache_store_fill_pending("k\n"));
        ck_assert_int_eq(cache_store_fill_claim("k\nother"), 1);
        cache_store_fill_done("k\n");
        ck_assert(!cache_store_fill_pending("k\n"));
        ck_assert(cache_store_fill_pending("k\nother"));
        cache_store_fill_done("k\nother");
}
END_TEST

static Suite *store_suite(void) {
        Suite *s = suite_create("cache-store");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_variants_and_purge);
        tcase_add_test(tc, test_ref_outlives_purge);
        tcase_add_test(tc, test_memory_lru);
        tcase_add_test(tc, test_disk_lru_and_reload);
        tcase_add_test(tc, test_damaged_file);
        tcase_add_test(tc, test_scan);
        tcase_add_test(tc, test_spill_unknown_length);
        tcase_add_test(tc, test_copy_body);
        tcase_add_test(tc, test_collapsing_claims);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(store_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
