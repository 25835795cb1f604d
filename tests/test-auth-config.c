/* SPDX-License-Identifier: MIT */
/* auth_request in the configuration: its defaults, the inheritance defaults -> server ->
 * location -> rule, false switching it off, the upstream of pass, and the decision tables
 * made for the ones with a cache. */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth-cache.h"
#include "config-schema.h"
#include "config-text.h"
#include "util.h"

static char tmp_dir[] = "/tmp/proxyd-test-auth-config-XXXXXX";

static int load_text(const char *text, Config **c, ConfigDiags *d) {
        return config_load_text(tmp_dir, text, c, d);
}

static const Location *location(const Config *c, size_t server, size_t i) {
        ck_assert_uint_lt(server, c->n_servers);
        ck_assert_uint_lt(i, c->servers[server]->n_locations);
        return c->servers[server]->locations[i];
}

START_TEST(test_inheritance) {
        static const char text[] =
                "upstreams = { authsvc = { servers = ( { address = \"127.0.0.1:9001\"; } ); }; };\n"
                "defaults = { set_header = { X-Forwarded-For = \"$proxy_add_x_forwarded_for\"; };\n"
                "  auth_request = { pass = \"http://127.0.0.1:9000/verify\"; }; };\n"
                "servers = (\n"
                "  { name = \"a\"; listen = [ \"127.0.0.1:8001\" ];\n"
                "    locations = (\n"
                "      { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:1\"; },\n"
                "      { prefix = \"/off/\"; auth_request = false; proxy_pass = \"http://127.0.0.1:1\"; },\n"
                "      { prefix = \"/own/\"; proxy_pass = \"http://127.0.0.1:1\";\n"
                "        auth_request = { pass = \"http://authsvc\"; method = \"HEAD\"; headers = \"X-Token\";\n"
                "                         copy_headers = [ \"X-User\", \"X-Groups\" ]; timeout = \"2s\";\n"
                "                         cache = \"5s\"; cache_key = \"$http_x_token\"; cache_size = \"1m\"; };\n"
                "        rules = ( { cookie = { open = \"1\"; }; auth_request = false; } ); }\n"
                "    ); },\n"
                "  { name = \"b\"; listen = [ \"127.0.0.1:8002\" ]; auth_request = false;\n"
                "    locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:1\"; } ); }\n"
                ");\n";
        Config *c = NULL;
        ConfigDiags d = {};

        ck_assert_int_eq(load_text(text, &c, &d), 0);
        ck_assert_uint_eq(d.n, 0);
        /* one from defaults, one of /own/ */
        ck_assert_uint_eq(c->n_auth_requests, 2);

        const AuthRequest *dflt = location(c, 0, 0)->s.auth_request;
        ck_assert_ptr_nonnull(dflt);
        ck_assert_str_eq(dflt->pass->text, "http://127.0.0.1:9000/verify");
        ck_assert_str_eq(dflt->pass->uri, "/verify");
        ck_assert_str_eq(dflt->pass->upstream->name, "127.0.0.1:9000");
        ck_assert_str_eq(dflt->method, "GET");
        ck_assert_uint_eq(dflt->n_headers, 2);
        ck_assert_str_eq(dflt->headers[0], "Authorization");
        ck_assert_str_eq(dflt->headers[1], "Cookie");
        ck_assert_uint_eq(dflt->n_copy_headers, 0);
        ck_assert_uint_eq(dflt->timeout, 5 * USEC_PER_SEC);
        ck_assert_uint_eq(dflt->cache, 0);
        ck_assert_ptr_null(dflt->cache_key);
        ck_assert_uint_eq(dflt->cache_size, 4u << 20);
        ck_assert_ptr_null(location(c, 0, 1)->s.auth_request);

        const Location *own = location(c, 0, 2);
        const AuthRequest *a = own->s.auth_request;
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_ne(a, dflt);
        ck_assert_str_eq(a->pass->upstream->name, "authsvc");
        ck_assert_ptr_null(a->pass->uri);
        ck_assert_str_eq(a->method, "HEAD");
        ck_assert_uint_eq(a->n_headers, 1);
        ck_assert_str_eq(a->headers[0], "X-Token");
        ck_assert_uint_eq(a->n_copy_headers, 2);
        ck_assert_str_eq(a->copy_headers[1], "X-Groups");
        ck_assert_uint_eq(a->timeout, 2 * USEC_PER_SEC);
        ck_assert_uint_eq(a->cache, 5 * USEC_PER_SEC);
        ck_assert_str_eq(a->cache_key->source, "$http_x_token");
        ck_assert_uint_eq(a->cache_size, 1u << 20);
        /* a rule takes the setting like any location-level one */
        ck_assert_uint_eq(own->n_rules, 1);
        ck_assert_ptr_null(own->rules[0].loc->s.auth_request);
        /* a server switches the inherited one off for its locations */
        ck_assert_ptr_null(location(c, 1, 0)->s.auth_request);
        ck_assert_ptr_null(c->servers[1]->s.auth_request);
        ck_assert_ptr_eq(c->servers[0]->s.auth_request, dflt);

        /* decision tables for the ones with a cache only */
        ck_assert_int_eq(auth_caches_setup(c), 0);
        ck_assert_ptr_null(dflt->rt);
        ck_assert_ptr_nonnull(a->rt);
        ck_assert_int_eq(auth_cache_put(a->rt, "k", 1, 200, NULL, 0, 10, 1), 0);
        ck_assert_uint_eq(auth_cache_count(a->rt), 1);
        config_diags_clear(&d);
        config_unref(c); /* frees the tables too */
}
END_TEST

/* A bad auth_request makes the location invalid, with the line of the problem. */
START_TEST(test_errors) {
        static const char text[] =
                "servers = ( { name = \"a\"; listen = [ \"127.0.0.1:8001\" ]; set_header = { X-Real-IP = \"$remote_addr\"; };\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:1\";\n"
                "    auth_request = {\n"
                "      pass = \"http://127.0.0.1:9000/\";\n"
                "      copy_headers = [ \"X-User\", \"Transfer-Encoding\" ];\n"
                "    }; } ); } );\n";
        Config *c = NULL;
        ConfigDiags d = {};

        ck_assert_int_eq(load_text(text, &c, &d), -EINVAL);
        ck_assert_uint_eq(d.n_errors, 1);
        ck_assert_int_eq(d.items[0].line, 5);
        ck_assert_ptr_nonnull(strstr(d.items[0].message, "Transfer-Encoding"));
        config_diags_clear(&d);
        config_unref(c);

        /* an auth request carries no PROXY protocol header */
        static const char pp[] =
                "upstreams = { a = { proxy_protocol = \"v1\"; servers = ( { address = \"127.0.0.1:9000\"; } ); }; };\n"
                "servers = ( { name = \"a\"; listen = [ \"127.0.0.1:8001\" ];\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:1\";\n"
                "    auth_request = { pass = \"http://a/\"; }; } ); } );\n";
        c = NULL;
        ck_assert_int_eq(load_text(pp, &c, &d), -EINVAL);
        ck_assert_uint_eq(d.n_errors, 1);
        ck_assert_int_eq(d.items[0].line, 4);
        ck_assert_ptr_nonnull(strstr(d.items[0].message, "PROXY protocol"));
        config_diags_clear(&d);
        config_unref(c);
}
END_TEST

int main(void) {
        if (!mkdtemp(tmp_dir)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        Suite *s = suite_create("auth-config");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_inheritance);
        tcase_add_test(tc, test_errors);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        char p[300];
        snprintf(p, sizeof(p), "%s/t.conf", tmp_dir);
        unlink(p);
        rmdir(tmp_dir);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
