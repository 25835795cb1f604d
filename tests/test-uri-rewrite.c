/* SPDX-License-Identifier: MIT */

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <check.h>
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "uri-rewrite.h"
#include "util.h"

/*
 * What nginx 1.22 sent upstream for one location and one request-target (measured by
 * running nginx against a recording backend; tests/integration/uri_cases.py holds the
 * same cases). status 0: forwarded, `expect` is the upstream request-target;
 * 400: the target is rejected; 404: the normalized path does not match the location;
 * 301: nginx redirects to the location (path + "/").
 * uri NULL: proxy_pass without URI, the original target is passed unchanged.
 */
typedef struct OracleCase {
        LocationMatch match;
        const char *pattern;
        const char *uri;
        const char *target;
        const char *expect;
        int status;
} OracleCase;

/* clang-format off */
static const OracleCase oracle_cases[] = {
        { MATCH_PREFIX, "/api/", NULL, "/api/users", "/api/users", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/users", "/users", 0 },
        { MATCH_PREFIX, "/api", "/", "/api/x", "//x", 0 },
        { MATCH_PREFIX, "/api", "/", "/api", "/", 0 },
        { MATCH_PREFIX, "/api", "/", "/apix", "/x", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api", NULL, 301 },
        { MATCH_PREFIX, "/api/", NULL, "/api", NULL, 301 },
        { MATCH_PREFIX, "/api/", "/v1/", "/api/users?id=10&x=y", "/v1/users?id=10&x=y", 0 },
        { MATCH_PREFIX, "/api/", "/v2", "/api/x", "/v2x", 0 },
        { MATCH_PREFIX, "/api/", NULL, "/api/users?id=10", "/api/users?id=10", 0 },
        { MATCH_PREFIX, "/", "/app/", "/", "/app/", 0 },
        { MATCH_PREFIX, "/", "/app/", "/index.html?a=b", "/app/index.html?a=b", 0 },
        { MATCH_PREFIX, "/", "/app/", "/a/b/c", "/app/a/b/c", 0 },
        { MATCH_EXACT, "/exact", "/dst", "/exact", "/dst", 0 },
        { MATCH_EXACT, "/exact", "/dst/", "/exact?q=1", "/dst/?q=1", 0 },
        { MATCH_EXACT, "/exact", NULL, "/exact?q=1", "/exact?q=1", 0 },
        { MATCH_EXACT, "/exact", "/dst", "/./exact", "/dst", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%20b", "/a%20b", 0 },
        { MATCH_PREFIX, "/api/", NULL, "/api/a%20b", "/api/a%20b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%2Fb", "/a/b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%2fb", "/a/b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%3Fb?c=d", "/a%3Fb?c=d", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%25b", "/a%25b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/caf%C3%A9", "/caf%C3%A9", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/caf%c3%a9", "/caf%C3%A9", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%E2%82%AC", "/%E2%82%AC", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a+b", "/a+b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%2Bb", "/a+b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%7Eb", "/a~b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%23b", "/a%23b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%22b%3C%3E%5C%5E%60%7B%7C%7D",
          "/a%22b%3C%3E%5C%5E%60%7B%7C%7D", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%01b%7F", "/a%01b%7F", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a;p=1,2&x=$y'(*)!", "/a;p=1,2&x=$y'(*)!", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%00b", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%2", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%zzb", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/../api/x", "/x", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/./x", "/x", 0 },
        { MATCH_PREFIX, "/api/", "/", "//api//x", "/x", 0 },
        { MATCH_PREFIX, "/api/", NULL, "//api//x", "//api//x", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%2e%2e/api/x", "/x", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%2E/x", "/x", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/..", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/.", "/x/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/../y/./z", "/y/z", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/.hidden/...", "/.hidden/...", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%2F%2Fx", "/x", 0 },
        { MATCH_PREFIX, "/", "/", "/a/../../x", NULL, 400 },
        { MATCH_PREFIX, "/", "/", "/..", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/x?", "/x", 0 },
        { MATCH_PREFIX, "/api/", NULL, "/api/x?", "/api/x?", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x?a=%20b&c=/../d", "/x?a=%20b&c=/../d", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x??a", "/x??a", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/../?a=1", "/?a=1", 0 },
        { MATCH_REGEX, "\\.php$", NULL, "/a/b.php?x=1", "/a/b.php?x=1", 0 },
        { MATCH_REGEX, "^/img/.*\\.png$", NULL, "/img/%41//./b.png", "/img/%41//./b.png", 0 },
        { MATCH_REGEX, "^/a b$", NULL, "/a%20b", "/a%20b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/...", "/x/...", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x./", "/x./", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/..%2F", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/%2e%2E", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/%2E%2E?q", "/?q", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%2?x", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/x?a=%00", "/x?a=%00", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/..?", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/./../api/y", "/y", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/./.", "/x/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x//./", "/x/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/.././../api/z", "/z", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/%2e", "/x/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/..a/b", "/..a/b", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a..", "/a..", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%2e%2e%2fapi/q", "/q", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x%2F..%2Fy", "/y", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x///", "/x/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%a", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/", "/api/.", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/./", "/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x%3F?y", "/x%3F?y", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/a%40b%3A%2C%3B%3D%26%24%2B%21%27%28%29%2A",
          "/a@b:,;=&$+!'()*", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%41%5A%61%7A%30%39%2D%2E%5F%7E", "/AZaz09-._~", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x%5C..%5Cy", "/x%5C..%5Cy", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/x/%2E", "/x/", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/%C3%A9?%C3%A9", "/%C3%A9?%C3%A9", 0 },
        { MATCH_PREFIX, "/api/", "/", "/api/.%2e/", NULL, 404 },
        { MATCH_PREFIX, "/api/", "/", "/api/..", NULL, 404 },
        { MATCH_PREFIX, "/api/", "/", "/api/%2E%2E", NULL, 404 },
        { MATCH_PREFIX, "/", "/r/", "/api/x/.%2e/%2e./y", "/r/y", 0 },
        { MATCH_PREFIX, "/", "/r/", "/api/x/../..", "/r/", 0 },
        { MATCH_PREFIX, "/", "/r/", "/api/..", "/r/", 0 },
        { MATCH_PREFIX, "/", "/r/", "/a/%2e%2e/%2E%2E/b", NULL, 400 },
        { MATCH_PREFIX, "/api/", "/v1/x/", "/api/a%20b?c=%20", "/v1/x/a%20b?c=%20", 0 },
        { MATCH_PREFIX, "/api/", "/v1/x/", "/api/", "/v1/x/", 0 },
        { MATCH_PREFIX, "/api/", "/v1/%20/", "/api/a", "/v1/%20/a", 0 },
        { MATCH_EXACT, "/exact", "/dst", "/exact?", "/dst", 0 },
        { MATCH_EXACT, "/exact", "/dst", "/exact/", NULL, 404 },
        { MATCH_EXACT, "/exact", "/dst", "//exact", "/dst", 0 },
};

/* clang-format on */

static bool location_matches(const OracleCase *c, const char *path, size_t len) {
        size_t plen = strlen(c->pattern);

        switch (c->match) {
        case MATCH_EXACT:
                return len == plen && memcmp(path, c->pattern, len) == 0;
        case MATCH_PREFIX:
                return len >= plen && memcmp(path, c->pattern, plen) == 0;
        default: {
                int err, rc;
                PCRE2_SIZE off;
                pcre2_code *re =
                        pcre2_compile((PCRE2_SPTR)c->pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
                pcre2_match_data *md;

                ck_assert_ptr_nonnull(re);
                md = pcre2_match_data_create_from_pattern(re, NULL);
                ck_assert_ptr_nonnull(md);
                rc = pcre2_match(re, (PCRE2_SPTR)path, len, 0, 0, md, NULL);
                pcre2_match_data_free(md);
                pcre2_code_free(re);
                return rc >= 0;
        }
        }
}

START_TEST(test_oracle) {
        const OracleCase *c = &oracle_cases[_i];
        _cleanup_free_ char *path = NULL, *out = NULL;
        const char *args = (const char *)1;
        size_t len = 12345, args_len = 12345;
        int r;

        r = uri_normalize(c->target, strlen(c->target), &path, &len, &args, &args_len);
        if (c->status == 400) {
                ck_assert_msg(r == -EINVAL, "%s: expected -EINVAL, got %d", c->target, r);
                ck_assert_ptr_null(path);
                return;
        }
        ck_assert_msg(r == 0, "%s: uri_normalize failed: %d", c->target, r);
        ck_assert_ptr_nonnull(path);
        ck_assert_uint_eq(strlen(path), len);

        if (c->status == 301) {
                /* Redirected to the location: the path is the pattern without its slash. */
                ck_assert(!location_matches(c, path, len));
                ck_assert_uint_eq(len + 1, strlen(c->pattern));
                ck_assert(memcmp(path, c->pattern, len) == 0);
                return;
        }
        if (c->status == 404) {
                ck_assert_msg(!location_matches(c, path, len), "%s: %s must not match", c->target, path);
                return;
        }
        ck_assert_int_eq(c->status, 0);
        ck_assert_msg(location_matches(c, path, len), "%s: normalized %s does not match %s", c->target, path,
                      c->pattern);

        if (!c->uri) {
                /* No URI: the target goes upstream exactly as received. */
                ck_assert_str_eq(c->target, c->expect);
                return;
        }

        r = uri_rewrite(path, len, c->match == MATCH_REGEX ? 0 : strlen(c->pattern), c->uri, args, args_len,
                        &out);
        ck_assert_int_eq(r, 0);
        ck_assert_msg(streq(out, c->expect), "%s -> %s (location %s, uri %s): got %s", c->target, c->expect,
                      c->pattern, c->uri, out);
}
END_TEST

typedef struct NormCase {
        const char *target;
        const char *path; /* NULL: -EINVAL */
        const char *args; /* NULL: no '?' */
} NormCase;

/* clang-format off */
static const NormCase norm_cases[] = {
        { "/", "/", NULL },
        { "/?", "/", "" },
        { "/?a=1", "/", "a=1" },
        { "/a?b?c", "/a", "b?c" },
        { "/a%3Fb?c", "/a?b", "c" },
        { "/a%25b", "/a%b", NULL },
        { "/a%2541", "/a%41", NULL },
        { "/a%2fb", "/a/b", NULL },
        { "/a%2F%2F%2Fb", "/a/b", NULL },
        { "/caf%C3%a9", "/caf\xc3\xa9", NULL },
        { "/a+b", "/a+b", NULL },
        { "//", "/", NULL },
        { "///a///b///", "/a/b/", NULL },
        { "/.", "/", NULL },
        { "/./", "/", NULL },
        { "/a/.", "/a/", NULL },
        { "/a/..", "/", NULL },
        { "/a/../", "/", NULL },
        { "/a/b/../c", "/a/c", NULL },
        { "/a/./b/./", "/a/b/", NULL },
        { "/a/b/../../c/../d", "/d", NULL },
        { "/a//..//b", "/b", NULL },
        { "/a/%2e/b", "/a/b", NULL },
        { "/a/%2E%2e/b", "/b", NULL },
        { "/a/.%2e", "/", NULL },
        { "/a/b%2F..%2F..%2Fc", "/c", NULL },
        { "/...", "/...", NULL },
        { "/..a", "/..a", NULL },
        { "/a..", "/a..", NULL },
        { "/.a/b.", "/.a/b.", NULL },
        { "/a/..?x=/../..", "/", "x=/../.." },
        { "/a#frag", "/a", NULL },
        { "/a?b#frag", "/a", "b" },
        { "/a#f?b", "/a", NULL },
        { "/a?%00", "/a", "%00" },
        { "/a?%zz", "/a", "%zz" },
        /* Errors. */
        { "", NULL, NULL },
        { "a/b", NULL, NULL },
        { "*", NULL, NULL },
        { "http://h/a", NULL, NULL },
        { "%2Fa", NULL, NULL },
        { "?a", NULL, NULL },
        { "/..", NULL, NULL },
        { "/../", NULL, NULL },
        { "/./..", NULL, NULL },
        { "//..", NULL, NULL },
        { "/a/../..", NULL, NULL },
        { "/a/../../b", NULL, NULL },
        { "/%2e%2e", NULL, NULL },
        { "/a/%2E%2E%2F%2e%2e/b", NULL, NULL },
        { "/%", NULL, NULL },
        { "/%2", NULL, NULL },
        { "/%2?a", NULL, NULL },
        { "/%g0", NULL, NULL },
        { "/%0g", NULL, NULL },
        { "/%%41", NULL, NULL },
        { "/a%00b", NULL, NULL },
        { "/%00", NULL, NULL },
};

/* clang-format on */

START_TEST(test_normalize) {
        const NormCase *c = &norm_cases[_i];
        _cleanup_free_ char *path = NULL;
        const char *args = NULL;
        size_t len = 0, args_len = 0;
        int r;

        r = uri_normalize(c->target, strlen(c->target), &path, &len, &args, &args_len);
        if (!c->path) {
                ck_assert_msg(r == -EINVAL, "%s: expected -EINVAL, got %d", c->target, r);
                ck_assert_ptr_null(path);
                return;
        }
        ck_assert_msg(r == 0, "%s: %d", c->target, r);
        ck_assert_msg(streq(path, c->path), "%s: got %s, expected %s", c->target, path, c->path);
        ck_assert_uint_eq(len, strlen(c->path));
        if (!c->args)
                ck_assert_ptr_null(args);
        else {
                ck_assert_ptr_nonnull(args);
                ck_assert_uint_eq(args_len, strlen(c->args));
                ck_assert(memcmp(args, c->args, args_len) == 0);
                /* The query points into the target. */
                ck_assert(args > c->target && args <= c->target + strlen(c->target));
        }
}
END_TEST

START_TEST(test_normalize_counted) {
        /* Only target_len bytes are read: what follows must not count. */
        const char buf[] = "/a/b/../c?q=1GARBAGE/..";
        _cleanup_free_ char *path = NULL, *p2 = NULL;
        const char *args;
        size_t len, args_len;

        ck_assert_int_eq(uri_normalize(buf, 13, &path, &len, &args, &args_len), 0);
        ck_assert_str_eq(path, "/a/c");
        ck_assert_uint_eq(args_len, 3);
        ck_assert(memcmp(args, "q=1", 3) == 0);

        /* A NUL byte never gets into a path, raw or as "%00". */
        ck_assert_int_eq(uri_normalize("/a\0b", 4, &p2, &len, NULL, NULL), -EINVAL);
        ck_assert_ptr_null(p2);
        ck_assert_int_eq(uri_normalize("/a%00b", 6, &p2, &len, NULL, NULL), -EINVAL);
        ck_assert_ptr_null(p2);
}
END_TEST

/* Escaping of the part after the location: nginx turned "%XX" for these bytes back into
 * "%XX" and sent every other byte decoded. Measured for all of 0x01..0xff. */
static bool nginx_escapes(unsigned c) {
        return c <= 0x20 || c >= 0x7f || c == '"' || c == '#' || c == '%' || c == '<' || c == '>' ||
               c == '?' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}';
}

START_TEST(test_escape_all_bytes) {
        for (unsigned c = 1; c < 256; c++) {
                _cleanup_free_ char *target = NULL, *path = NULL, *out = NULL;
                char expect[16];
                const char *args;
                size_t len, args_len;

                ck_assert_int_ge(asprintf(&target, "/api/a%%%02Xb", c), 0);
                ck_assert_int_eq(uri_normalize(target, strlen(target), &path, &len, &args, &args_len), 0);
                ck_assert_ptr_null(args);
                ck_assert_int_eq(uri_rewrite(path, len, 5, "/", args, args_len, &out), 0);

                if (c == '/')
                        snprintf(expect, sizeof(expect), "/a/b");
                else if (nginx_escapes(c))
                        snprintf(expect, sizeof(expect), "/a%%%02Xb", c);
                else
                        snprintf(expect, sizeof(expect), "/a%cb", (char)c);
                ck_assert_msg(streq(out, expect), "byte 0x%02x: got %s, expected %s", c, out, expect);
        }
}
END_TEST

START_TEST(test_rewrite_api) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        char *bad = (char *)0x1;

        /* Whole path matched: only the replacement (and the query) remain. */
        ck_assert_int_eq(uri_rewrite("/api/", 5, 5, "/", NULL, 0, &a), 0);
        ck_assert_str_eq(a, "/");
        /* An empty query is dropped; a NULL args pointer with a length is ignored. */
        ck_assert_int_eq(uri_rewrite("/api/x", 6, 5, "/", "", 0, &b), 0);
        ck_assert_str_eq(b, "/x");
        ck_assert_int_eq(uri_rewrite("/api/x", 6, 5, "/", NULL, 7, &c), 0);
        ck_assert_str_eq(c, "/x");
        /* The query is copied verbatim and only args_len bytes of it. */
        ck_assert_int_eq(uri_rewrite("/api/x", 6, 5, "/b/", "a=%20&b#", 6, &d), 0);
        ck_assert_str_eq(d, "/b/x?a=%20&");
        /* The replacement is used as written (it comes from the configuration). */
        ck_assert_int_eq(uri_rewrite("/a b", 4, 0, "/%20 ", NULL, 0, &e), 0);
        ck_assert_str_eq(e, "/%20 /a%20b");
        /* Matched length beyond the path is refused and leaves *ret alone. */
        ck_assert_int_eq(uri_rewrite("/api", 4, 5, "/", NULL, 0, &bad), -EINVAL);
        ck_assert_ptr_eq(bad, (char *)0x1);
}
END_TEST

/* Forwarded as received: does an RFC 3986 reading of the raw path land where proxyd routed? */
typedef struct RawCase {
        const char *target;
        int expect;
} RawCase;

/* clang-format off */
static const RawCase raw_cases[] = {
        { "/", 1 },
        { "/api/users?id=10", 1 },
        { "//api//x", 1 },
        { "/img/%41//./b.png", 1 },
        { "/a/b/../c", 1 },
        { "/a/%2e%2E/c", 1 },
        { "/a/.%2e/c/.", 1 },
        { "/a/..", 1 },
        { "/admin/.", 1 },
        { "/a%20b/", 1 },
        { "/x?a=/../..//", 1 },
        { "/public#/../admin/", 1 },
        /* An empty segment or an encoded '/' changes what ".." removes. */
        { "/admin//..", 0 },
        { "/admin/x//..", 0 },
        { "/admin/x%2F../..", 0 },
        { "/admin/x%2f..%2f..", 0 },
        /* Decoded, the backend may see dot segments proxyd resolved. */
        { "/admin%2F..%2Fpublic", 0 },
        { "/a%2F.%2Fb", 0 },
};
/* clang-format on */

START_TEST(test_raw_unambiguous) {
        const RawCase *c = &raw_cases[_i];
        _cleanup_free_ char *path = NULL;
        size_t len = 0;

        ck_assert_int_eq(uri_normalize(c->target, strlen(c->target), &path, &len, NULL, NULL), 0);
        ck_assert_msg(uri_raw_is_unambiguous(c->target, strlen(c->target), path, len) == c->expect,
                      "%s (normalized %s): expected %d", c->target, path, c->expect);
}
END_TEST

START_TEST(test_raw_unambiguous_api) {
        ck_assert_int_eq(uri_raw_is_unambiguous("x", 1, "/x", 2), -EINVAL);
        ck_assert_int_eq(uri_raw_is_unambiguous("", 0, "/", 1), -EINVAL);
        ck_assert_int_eq(uri_raw_is_unambiguous(NULL, 1, "/", 1), -EINVAL);
        /* Only target_len bytes count, and the whole normalized path must be matched. */
        ck_assert_int_eq(uri_raw_is_unambiguous("/a/b", 2, "/a", 2), 1);
        ck_assert_int_eq(uri_raw_is_unambiguous("/a/b", 4, "/a", 2), 0);
        ck_assert_int_eq(uri_raw_is_unambiguous("/a", 2, "/a/b", 4), 0);
        /* ".." above the root is never unambiguous (uri_normalize refuses it anyway). */
        ck_assert_int_eq(uri_raw_is_unambiguous("/..", 3, "/", 1), 0);
}
END_TEST

static Suite *uri_rewrite_suite(void) {
        Suite *s = suite_create("uri-rewrite");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_oracle, 0, (int)ELEMENTSOF(oracle_cases));
        tcase_add_loop_test(tc, test_normalize, 0, (int)ELEMENTSOF(norm_cases));
        tcase_add_test(tc, test_normalize_counted);
        tcase_add_test(tc, test_escape_all_bytes);
        tcase_add_test(tc, test_rewrite_api);
        tcase_add_loop_test(tc, test_raw_unambiguous, 0, (int)ELEMENTSOF(raw_cases));
        tcase_add_test(tc, test_raw_unambiguous_api);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(uri_rewrite_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
