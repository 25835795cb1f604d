/* SPDX-License-Identifier: MIT */

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <check.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "router.h"
#include "util.h"

/* nginx's automatic 301 for a proxying location named like the path plus "/". */
Location *router_auto_redirect(const Server *s, const char *path, size_t path_len);

#define MAX_LOCS 8
#define MAX_REQS 12
#define NONE (-1)

typedef struct LocSpec {
        LocationMatch match;
        const char *pattern;
        bool stop_regex;
        bool proxy;
} LocSpec;

typedef struct RouteReq {
        const char *path; /* normalized path */
        int expect;       /* index of the chosen location, NONE for 404 */
        size_t match_len; /* expected *ret_match_len */
        int redirect;     /* index of the location router_auto_redirect() names, NONE */
} RouteReq;

typedef struct RouteScenario {
        const char *name;
        LocSpec locs[MAX_LOCS];
        RouteReq reqs[MAX_REQS];
} RouteScenario;

/* clang-format off */
#define P(p) { MATCH_PREFIX, p, false, false }
#define PP(p) { MATCH_PREFIX, p, false, true }
#define STOP(p) { MATCH_PREFIX, p, true, false }
#define STOPP(p) { MATCH_PREFIX, p, true, true }
#define EX(p) { MATCH_EXACT, p, false, false }
#define EXP(p) { MATCH_EXACT, p, false, true }
#define RE(p) { MATCH_REGEX, p, false, false }
#define IRE(p) { MATCH_IREGEX, p, false, false }
#define REQ(path, idx, len) { path, idx, len, NONE }
#define REDIR(path, idx, len, redir) { path, idx, len, redir }

static const RouteScenario scenarios[] = {
        {
                /* The example of nginx's documentation of `location`, answers as nginx gave them. */
                "nginx-docs",
                { EX("/"), P("/"), P("/documents/"), STOP("/images/"), IRE("\\.(gif|jpg|jpeg)$") },
                {
                        REQ("/", 0, 1),
                        REQ("/index.html", 1, 1),
                        REQ("/documents/document.html", 2, 11),
                        REQ("/images/1.gif", 3, 8),
                        REQ("/documents/1.jpg", 4, 0),
                        REQ("/documents/1.JPG", 4, 0),
                        REQ("/Images/1.gif", 4, 0),
                        REQ("/images", 1, 1),
                        REQ("/documents", 1, 1),
                        REQ("/1.gifx", 1, 1),
                },
        },
        {
                /* Regexes in file order, the first match wins, even over a longer prefix. */
                "regex-order",
                { RE("^/a"), RE("^/ab"), P("/abc") },
                {
                        REQ("/abc", 0, 0),
                        REQ("/abd", 0, 0),
                        REQ("/x", NONE, 0),
                        REQ("/", NONE, 0),
                },
        },
        {
                /* The longest prefix wins whatever the order; equal prefixes: the first. */
                "longest-prefix",
                { P("/a/"), P("/a/b/c/"), P("/a/b/"), P("/a/b/"), P("/a/b/c/d") },
                {
                        REQ("/a/b/c/d", 4, 8),
                        REQ("/a/b/c/de", 4, 8),
                        REQ("/a/b/c/", 1, 7),
                        REQ("/a/b/x", 2, 5),
                        REQ("/a/x", 0, 3),
                        REQ("/a", NONE, 0),
                        REQ("/b/a/", NONE, 0),
                },
        },
        {
                /* ^~ stops the regex search only when it is the longest prefix. */
                "stop-regex",
                { STOP("/a/"), P("/a/b/"), RE("\\.x$"), STOP("/a/b/c/") },
                {
                        REQ("/a/f.x", 0, 3),
                        REQ("/a/b/f.x", 2, 0),
                        REQ("/a/b/f.y", 1, 5),
                        REQ("/a/b/c/f.x", 3, 7),
                        REQ("/f.x", 2, 0),
                },
        },
        {
                /* Exact beats everything; it matches only the whole path. */
                "exact",
                { STOP("/a"), P("/a/b"), RE("b$"), EX("/a/b"), EX("/x") },
                {
                        REQ("/a/b", 3, 4),
                        REQ("/a/bb", 2, 0),
                        REQ("/a/bc", 1, 4),
                        REQ("/x", 4, 2),
                        REQ("/x/", NONE, 0),
                        REQ("/xy", NONE, 0),
                        REQ("/a", 0, 2),
                },
        },
        {
                /* Case-sensitive prefixes and regexes, caseless iregex; regexes see the decoded
                 * normalized path. */
                "case-and-bytes",
                { P("/API/"), RE("^/api/X$"), IRE("^/api/y$"), RE("^/a b/\xc3\xa9$"), RE("\\?") },
                {
                        REQ("/api/X", 1, 0),
                        REQ("/api/x", NONE, 0),
                        REQ("/api/Y", 2, 0),
                        REQ("/API/Y", 2, 0),
                        REQ("/API/Z", 0, 5),
                        REQ("/a b/\xc3\xa9", 3, 0),
                        REQ("/a?b", 4, 0),
                },
        },
        {
                /* Regexes fall through to the longest prefix when none matches. */
                "regex-fallback",
                { P("/"), RE("\\.php$"), P("/static/"), RE("^/static/.*\\.css$") },
                {
                        REQ("/static/a.js", 2, 8),
                        REQ("/static/a.css", 3, 0),
                        REQ("/static/a.php", 1, 0),
                        REQ("/index.php", 1, 0),
                        REQ("/index.html", 0, 1),
                },
        },
        {
                /* The automatic redirect, as nginx does it: a proxying location named like the
                 * path plus "/" (prefix, ^~ or exact), unless a location is named like the path;
                 * regexes do not prevent it; non-proxying locations never redirect. */
                "auto-redirect",
                { PP("/api/"), RE("api"), EXP("/exact/"), P("/static/"), PP("/p/"), P("/p"),
                  STOPP("/s/"), EX("/e") },
                {
                        REDIR("/api", 1, 0, 0),
                        REDIR("/api/", 1, 0, NONE),
                        REDIR("/exact", NONE, 0, 2),
                        REDIR("/static", NONE, 0, NONE),
                        REDIR("/p", 5, 2, NONE),
                        REDIR("/s", NONE, 0, 6),
                        REDIR("/e", 7, 2, NONE),
                        REDIR("/", NONE, 0, NONE),
                },
        },
        {
                "redirect-exact-name",
                { PP("/api/"), EX("/api"), P("/") },
                {
                        REDIR("/api", 1, 4, NONE),
                        REDIR("/ap", 2, 1, NONE),
                },
        },
        {
                /* Paths backends may read as other paths get no location (404): "..;" and ".;"
                 * segments (path parameters stripped, then dot segments resolved) and overlong
                 * UTF-8 ("%c0%ae" is '.' to lenient decoders). Neighbours still route. */
                "ambiguous-paths",
                { P("/admin"), P("/"), PP("/api/"), PP("/.;/") },
                {
                        REQ("/api/..;/admin", NONE, 0),
                        REQ("/api/.;/admin", NONE, 0),
                        REQ("/api/..;jsessionid=1/admin", NONE, 0),
                        REQ("/a/..;", NONE, 0),
                        REDIR("/.;", NONE, 0, NONE),
                        REQ("/api/\xc0\xae\xc0\xae/admin", NONE, 0),
                        REQ("/x\xc1\x9c", NONE, 0),
                        REQ("/\xe0\x80\xae", NONE, 0),
                        REQ("/\xf0\x80\x80\xae", NONE, 0),
                        REQ("/api/a;p=1/...;/x.;/a..;", 2, 5),
                        REQ("/caf\xc3\xa9/\xc0/\xe0\xa0\x80/\xf0\x90\x80\x80", 1, 1),
                        REDIR("/api", 1, 1, 2),
                },
        },
        {
                /* A regex match that cannot be decided fails closed: the prefix behind it
                 * must not take the request ((*UTF) pattern, path not valid UTF-8). */
                "regex-error",
                { RE("(*UTF)^/secret"), P("/") },
                {
                        REQ("/secret", 0, 0),
                        REQ("/secret\xff", NONE, 0),
                        REQ("/x\xff", NONE, 0),
                        REQ("/x", 1, 1),
                },
        },
};

/* clang-format on */

static ProxyPass dummy_proxy = {.text = (char *)"http://127.0.0.1:1/", .uri = (char *)"/"};

typedef struct Built {
        Server server;
        Location locs[MAX_LOCS];
        Location *ptrs[MAX_LOCS];
} Built;

static void build(const LocSpec *specs, Built *b) {
        memset(b, 0, sizeof(*b));
        for (size_t i = 0; i < MAX_LOCS && specs[i].pattern; i++) {
                Location *l = &b->locs[i];

                l->match = specs[i].match;
                l->pattern = (char *)specs[i].pattern;
                l->pattern_len = strlen(specs[i].pattern);
                l->stop_regex = specs[i].stop_regex;
                l->proxy = specs[i].proxy ? &dummy_proxy : NULL;
                if (l->match == MATCH_REGEX || l->match == MATCH_IREGEX) {
                        int err;
                        PCRE2_SIZE off;

                        l->re = pcre2_compile((PCRE2_SPTR)l->pattern, PCRE2_ZERO_TERMINATED,
                                              l->match == MATCH_IREGEX ? PCRE2_CASELESS : 0, &err, &off,
                                              NULL);
                        ck_assert_msg(l->re, "regex %s does not compile", l->pattern);
                }
                b->ptrs[i] = l;
                b->server.n_locations = i + 1;
        }
        b->server.locations = b->ptrs;
}

static void unbuild(Built *b) {
        for (size_t i = 0; i < b->server.n_locations; i++)
                pcre2_code_free(b->locs[i].re);
}

static const char *describe(const Built *b, const Location *l) {
        static char buf[128];

        if (!l)
                return "(none)";
        snprintf(buf, sizeof(buf), "#%td %s", l - b->locs, l->pattern);
        return buf;
}

START_TEST(test_locations) {
        const RouteScenario *sc = &scenarios[_i];
        Built b;

        build(sc->locs, &b);
        for (size_t i = 0; i < MAX_REQS && sc->reqs[i].path; i++) {
                const RouteReq *q = &sc->reqs[i];
                size_t plen = strlen(q->path), len = 4242;
                Location *want = q->expect == NONE ? NULL : &b.locs[q->expect];
                Location *got, *redir;

                got = router_select_location(&b.server, q->path, plen, &len);
                ck_assert_msg(got == want, "%s: %s: got %s", sc->name, q->path, describe(&b, got));
                ck_assert_msg(len == q->match_len, "%s: %s: match_len %zu, expected %zu", sc->name, q->path,
                              len, q->match_len);
                /* The out-parameter is optional. */
                ck_assert_ptr_eq(router_select_location(&b.server, q->path, plen, NULL), want);

                redir = router_auto_redirect(&b.server, q->path, plen);
                want = q->redirect == NONE ? NULL : &b.locs[q->redirect];
                ck_assert_msg(redir == want, "%s: %s: redirect %s", sc->name, q->path, describe(&b, redir));
        }
        unbuild(&b);
}
END_TEST

START_TEST(test_location_counted_path) {
        /* Only path_len bytes count: "/a" must not be seen as "/a/b". */
        Built b;
        const LocSpec specs[] = {EX("/a/b"), P("/a/"), RE("b$"), {0}};
        size_t len;

        build(specs, &b);
        ck_assert_ptr_null(router_select_location(&b.server, "/a/b", 2, &len));
        ck_assert_ptr_eq(router_select_location(&b.server, "/a/bc", 4, &len), &b.locs[0]);
        ck_assert_uint_eq(len, 4);
        ck_assert_ptr_eq(router_select_location(&b.server, "/a/bc/", 3, &len), &b.locs[1]);
        ck_assert_ptr_eq(router_auto_redirect(&b.server, "/a/x", 2), NULL);
        unbuild(&b);

        /* No locations at all: 404. */
        Server empty = {0};
        len = 7;
        ck_assert_ptr_null(router_select_location(&empty, "/", 1, &len));
        ck_assert_uint_eq(len, 0);
        ck_assert_ptr_null(router_auto_redirect(&empty, "/", 1));
}
END_TEST

/* Server names as nginx chose them for the same Host values (measured). */
/* clang-format off */
static const char *names_default[] = { "x.invalid" };
static const char *names_wild[] = { "*.example.com" };
static const char *names_wild2[] = { "*.b.example.com" };
static const char *names_exact[] = { "other.test", "www.example.com" };
static const char *names_dot[] = { ".example.org" };
static const char *names_exorg[] = { "example.org", "www.example.com" };
static const char *names_tail[] = { "mail.*" };
static const char *names_tailhead[] = { "*.mail.net" };
static const char *names_upper[] = { "UPPER.Example.NET" };

#define SERVER(n) { .name = (char *) #n, .server_names = (char **) names_##n, \
                    .n_server_names = ELEMENTSOF(names_##n) }

static Server srv[] = {
        SERVER(default), SERVER(wild), SERVER(wild2), SERVER(exact), SERVER(dot),
        SERVER(exorg), SERVER(tail), SERVER(tailhead), SERVER(upper),
        { .name = (char *) "catchall" },
};

static const struct {
        const char *host;
        const char *server;
} host_cases[] = {
        { "example.com", "default" },
        { "a.example.com", "wild" },
        { "a.b.example.com", "wild2" },
        { "c.b.example.com", "wild2" },
        { "x.c.b.example.com", "wild2" },
        { "b.example.com", "wild" },
        { "www.example.com", "exact" },
        { "WWW.Example.COM", "exact" },
        { "www.example.com.", "exact" },
        { "www.example.com:8080", "exact" },
        { "www.example.com.:80", "exact" },
        { "x.www.example.com", "wild" },
        { "example.org", "dot" },
        { "a.example.org", "dot" },
        { "a.b.example.org", "dot" },
        { "xexample.org", "default" },
        { "mail.x", "tail" },
        { "mail.x.y", "tail" },
        { "mail", "default" },
        { "mail.mail.net", "tailhead" },
        { "upper.example.net", "upper" },
        { "nomatch", "default" },
        { "[::1]:80", "default" },
        { "[::1]", "default" },
        { "127.0.0.1:8080", "default" },
        { ":80", "default" },
        { ".", "default" },
        { "", "default" },
        { "com", "default" },
        { ".example.com", "wild" },
};

/* clang-format on */

START_TEST(test_servers) {
        Server *list[ELEMENTSOF(srv)];

        for (size_t i = 0; i < ELEMENTSOF(srv); i++)
                list[i] = &srv[i];

        for (size_t i = 0; i < ELEMENTSOF(host_cases); i++) {
                const char *h = host_cases[i].host;
                Server *s = router_select_server(list, ELEMENTSOF(list), h, strlen(h));

                ck_assert_ptr_nonnull(s);
                ck_assert_msg(streq(s->name, host_cases[i].server), "Host %s: got %s, expected %s", h,
                              s->name, host_cases[i].server);
        }

        /* No Host at all: the default server. */
        ck_assert_ptr_eq(router_select_server(list, ELEMENTSOF(list), NULL, 0), &srv[0]);
        /* Counted: "www.example.comX" cut to its first 15 bytes is the exact name. */
        ck_assert_ptr_eq(router_select_server(list, ELEMENTSOF(list), "www.example.comX", 15), &srv[3]);
        /* No servers. */
        ck_assert_ptr_null(router_select_server(list, 0, "a", 1));
}
END_TEST

START_TEST(test_server_default_is_first) {
        /* The first server of the list is the default, named or not, and ties go to the
         * earlier server. */
        Server *list[] = {&srv[9], &srv[5], &srv[3], &srv[1]};

        ck_assert_ptr_eq(router_select_server(list, 4, "nomatch", 7), &srv[9]);
        ck_assert_ptr_eq(router_select_server(list, 4, NULL, 0), &srv[9]);
        /* "www.example.com" is named by exorg and by exact: the earlier one (exorg) wins. */
        ck_assert_ptr_eq(router_select_server(list, 4, "www.example.com", 15), &srv[5]);
        ck_assert_ptr_eq(router_select_server(list, 4, "q.example.com", 13), &srv[1]);
        ck_assert_ptr_eq(router_select_server(list + 1, 1, "q.example.com", 13), &srv[5]);
}
END_TEST

static Suite *router_suite(void) {
        Suite *s = suite_create("router");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_locations, 0, (int)ELEMENTSOF(scenarios));
        tcase_add_test(tc, test_location_counted_path);
        tcase_add_test(tc, test_servers);
        tcase_add_test(tc, test_server_default_is_first);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(router_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
