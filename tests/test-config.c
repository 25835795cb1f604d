/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>

#include "config-text.h"
#include "config-schema.h"
#include "config.h"
#include "util.h"

static char data_dir[4096];
static char tmp_dir[] = "/tmp/proxyd-test-config-XXXXXX";

static void setup_env(void) {
        const char *d = getenv("TEST_DATA_DIR");
        char creds[4200];

        ck_assert_msg(d, "TEST_DATA_DIR not set");
        snprintf(data_dir, sizeof(data_dir), "%s/config", d);
        snprintf(creds, sizeof(creds), "%s/creds", data_dir);
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
}

static char *diags_text(const ConfigDiags *d) {
        char *s = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&s, &n);

        ck_assert_ptr_nonnull(f);
        config_diags_print(d, f);
        fclose(f);
        return s;
}

static int load_fixture(const char *rel, Config **c, ConfigDiags *d) {
        char path[8192];

        setup_env();
        snprintf(path, sizeof(path), "%s/%s", data_dir, rel);
        return config_load(path, c, d);
}

/* Write text to <tmp>/t.conf and load it. */
static int load_text(const char *text, Config **c, ConfigDiags *d) {
        setup_env();
        return config_load_text(tmp_dir, text, c, d);
}

static const HeaderSetting *header(const LocationSettings *s, const char *name) {
        for (size_t i = 0; i < s->n_set_header; i++)
                if (strcasecmp(s->set_header[i].name, name) == 0)
                        return &s->set_header[i];
        return NULL;
}

/* ---- the contract's example ---- */

START_TEST(test_example) {
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;
        int r = load_fixture("example.conf", &c, &d);

        txt = diags_text(&d);
        ck_assert_msg(r == 0, "load failed: %s", txt);
        ck_assert_uint_eq(d.n_errors, 0);
        ck_assert_uint_eq(c->workers, 0);
        ck_assert_int_eq(c->log_level, LOG_INFO);
        ck_assert(c->access_log);
        ck_assert_uint_eq(c->shutdown_timeout, 30 * USEC_PER_SEC);
        ck_assert_uint_eq(c->n_resolver, 1);
        ck_assert_str_eq(c->resolver[0], "127.0.0.53");
        ck_assert_uint_eq(c->n_files, 1);

        /* upstreams: two named + implicit 127.0.0.1:9000 and unix:/run/app.sock */
        ck_assert_uint_eq(c->n_upstreams, 4);
        Upstream *api = c->upstreams[0];
        ck_assert_str_eq(api->name, "api_backend");
        ck_assert(!api->implicit);
        ck_assert_int_eq(api->balance, BALANCE_ROUND_ROBIN);
        ck_assert_uint_eq(api->keepalive, 32);
        ck_assert_uint_eq(api->keepalive_timeout, 60 * USEC_PER_SEC);
        ck_assert_uint_eq(api->keepalive_requests, 1000);
        ck_assert_uint_ge(api->n_servers, 3);
        ck_assert_str_eq(api->servers[0].address, "127.0.0.11:8080");
        ck_assert_uint_eq(api->servers[0].weight, 2);
        ck_assert_int_eq(api->servers[0].addr.ss_family, AF_INET);
        ck_assert_uint_eq(ntohs(((struct sockaddr_in *) &api->servers[0].addr)->sin_port), 8080);
        ck_assert_str_eq(api->servers[1].address, "localhost:8080");
        ck_assert_uint_eq(api->servers[1].weight, 1);
        ck_assert_uint_eq(api->servers[1].max_fails, 1);
        ck_assert_uint_eq(api->servers[1].fail_timeout, 10 * USEC_PER_SEC);
        UpstreamServer *last = &api->servers[api->n_servers - 1];
        ck_assert_str_eq(last->address, "unix:/run/backend.sock");
        ck_assert_int_eq(last->addr.ss_family, AF_UNIX);
        ck_assert_str_eq(((struct sockaddr_un *) &last->addr)->sun_path, "/run/backend.sock");
        ck_assert(last->backup);
        ck_assert_int_eq(c->upstreams[1]->balance, BALANCE_LEAST_CONN);
        ck_assert_ptr_nonnull(api->file);
        ck_assert_int_eq(api->line, 29);

        ck_assert_uint_eq(c->n_servers, 1);
        Server *s = c->servers[0];
        ck_assert_str_eq(s->name, "main");
        ck_assert_uint_eq(s->n_server_names, 2);
        ck_assert_str_eq(s->server_names[1], "*.example.com");
        ck_assert_uint_eq(s->n_tls_certificates, 1);
        ck_assert(strstr(s->tls_certificates[0].key, "/creds/example.key"));
        ck_assert_uint_eq(s->limits.max_head_size, HTTP_LIMITS_DEFAULT.max_head_size);

        ck_assert_uint_eq(c->n_listens, 2);
        ck_assert_int_eq(c->listens[0].kind, LISTEN_NAME);
        ck_assert_str_eq(c->listens[0].text, "http");
        ck_assert_int_eq(c->listens[1].kind, LISTEN_INET);
        ck_assert_uint_eq(ntohs(((struct sockaddr_in *) &c->listens[1].addr)->sin_port), 8443);
        ck_assert_ptr_eq(c->listens[1].servers[0], s);

        ck_assert_uint_eq(s->n_locations, 5);
        Location *l0 = s->locations[0], *l1 = s->locations[1], *l2 = s->locations[2], *l3 = s->locations[3],
                 *l4 = s->locations[4];
        ck_assert_int_eq(l0->match, MATCH_EXACT);
        ck_assert_int_eq(l0->return_status, 200);
        ck_assert_str_eq(l0->return_body, "ok\n");
        ck_assert_ptr_null(l0->proxy);
        ck_assert_int_eq(l1->match, MATCH_PREFIX);
        ck_assert_ptr_eq(l1->proxy->upstream, api);
        ck_assert_str_eq(l1->proxy->uri, "/");
        ck_assert_str_eq(l1->proxy->proxy_host, "api_backend");
        ck_assert(l2->stop_regex);
        ck_assert_ptr_null(l2->proxy->uri);
        ck_assert(l2->proxy->upstream->implicit);
        ck_assert_str_eq(l2->proxy->upstream->name, "127.0.0.1:9000");
        ck_assert_str_eq(l2->proxy->proxy_host, "127.0.0.1:9000");
        ck_assert_int_eq(l3->match, MATCH_REGEX);
        ck_assert_ptr_nonnull(l3->re);
        ck_assert_ptr_eq(l3->proxy->upstream, c->upstreams[1]);
        ck_assert_str_eq(l4->proxy->proxy_host, "localhost");
        ck_assert_ptr_null(l4->proxy->uri);
        ck_assert_str_eq(l4->proxy->upstream->name, "unix:/run/app.sock");

        /* defaults reach every location */
        ck_assert_uint_eq(l4->s.n_set_header, 4);
        ck_assert_str_eq(header(&l4->s, "x-real-ip")->value->source, "$remote_addr");
        ck_assert_uint_eq(l4->s.n_hide_header, 1);
        ck_assert_str_eq(l4->s.hide_header[0], "x-powered-by");
        ck_assert_uint_eq(l4->s.n_access, 3);
        ck_assert_uint_eq(l4->s.connect_timeout, 5 * USEC_PER_SEC);
        ck_assert(strstr(l4->s.ssl_trusted_certificate, "/creds/ca.pem"));
        ck_assert_uint_eq(s->s.n_access, 3);
        /* it forwards the client address: no warning about that */
        ck_assert_ptr_null(strstr(txt, "forwarding"));
        config_diags_clear(&d);
        ck_assert_ptr_null(config_unref(c));
}
END_TEST

START_TEST(test_dump_reloads) {
        Config *c = NULL, *c2 = NULL;
        ConfigDiags d = {};
        char *out = NULL;
        size_t n = 0;
        FILE *f;

        ck_assert_int_eq(load_fixture("example.conf", &c, &d), 0);
        f = open_memstream(&out, &n);
        ck_assert_int_eq(config_dump(c, f), 0);
        fclose(f);
        ck_assert_ptr_nonnull(strstr(out, "X-Forwarded-For"));
        ck_assert_ptr_nonnull(strstr(out, "api_backend"));
        ck_assert_int_eq(load_text(out, &c2, &d), 0);
        ck_assert_uint_eq(c2->n_servers, 1);
        ck_assert_uint_eq(c2->servers[0]->n_locations, 5);
        ck_assert_uint_eq(c2->n_upstreams, c->n_upstreams);
        free(out);
        config_unref(c2);
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

START_TEST(test_refcount) {
        Config *c = NULL;
        ConfigDiags d = {};

        ck_assert_int_eq(load_fixture("order/main.conf", &c, &d), 0);
        ck_assert_ptr_eq(config_ref(c), c);
        ck_assert_uint_eq(atomic_load(&c->refcount), 2);
        ck_assert_ptr_null(config_unref(c));
        ck_assert_uint_eq(atomic_load(&c->refcount), 1);
        config_unref(c);
        ck_assert_ptr_null(config_ref(NULL));
        ck_assert_ptr_null(config_unref(NULL));
}
END_TEST

/* ---- drop-ins ---- */

START_TEST(test_dropin_order) {
        Config *c = NULL;
        ConfigDiags d = {};

        ck_assert_int_eq(load_fixture("order/main.conf", &c, &d), 0);
        /* a.conf (7), ab.conf (9), b.conf (3): lexical order, the last wins */
        ck_assert_uint_eq(c->workers, 3);
        ck_assert_uint_eq(c->n_files, 4);
        ck_assert(strstr(c->files[1], "/a.conf"));
        ck_assert(strstr(c->files[2], "/ab.conf"));
        ck_assert(strstr(c->files[3], "/b.conf"));
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

START_TEST(test_dropin_merge) {
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;
        int r = load_fixture("dropin/main.conf", &c, &d);

        txt = diags_text(&d);
        ck_assert_msg(r == 0, "%s", txt);
        /* scalar override; ignored.txt is not a drop-in */
        ck_assert_int_eq(c->log_level, LOG_NOTICE);
        ck_assert_uint_eq(c->workers, 2);
        ck_assert_uint_eq(c->n_files, 3);

        /* upstream a replaced whole: one server, keepalive back to its default */
        /* a replaced definition goes to the end; order of groups carries no meaning */
        Upstream *a = c->upstreams[1], *b = c->upstreams[0];
        ck_assert_str_eq(b->name, "b");
        ck_assert_str_eq(a->name, "a");
        ck_assert_uint_eq(a->n_servers, 1);
        ck_assert_str_eq(a->servers[0].address, "127.0.0.9:1009");
        ck_assert_uint_eq(a->keepalive, 32);
        ck_assert(strstr(a->file, "10-first.conf"));
        ck_assert_int_eq(a->line, 3);

        ck_assert_uint_eq(c->n_servers, 3);
        Server *one = c->servers[0], *two = c->servers[1], *three = c->servers[2];
        ck_assert_str_eq(one->name, "one");
        ck_assert_str_eq(two->name, "two");
        ck_assert_str_eq(three->name, "three");
        /* server key replaced, the rest kept */
        ck_assert_uint_eq(one->n_server_names, 2);
        ck_assert_str_eq(one->server_names[0], "uno.test");
        ck_assert_uint_eq(one->n_locations, 2);
        ck_assert_ptr_nonnull(header(&one->s, "X-Forwarded-For"));
        /* locations replaced whole */
        ck_assert_uint_eq(two->n_locations, 1);
        ck_assert_int_eq(two->locations[0]->match, MATCH_EXACT);
        ck_assert_str_eq(two->locations[0]->return_body, "two\n");
        ck_assert(strstr(two->locations[0]->file, "10-first.conf"));
        ck_assert_int_eq(two->locations[0]->line, 6);
        /* defaults: the later key wins, others kept */
        ck_assert_uint_eq(one->locations[0]->s.read_timeout, 10 * USEC_PER_SEC);
        ck_assert_uint_eq(one->locations[0]->s.send_timeout, 20 * USEC_PER_SEC);
        /* new server appended, sharing a listen with "one" */
        ck_assert_uint_eq(c->n_listens, 2);
        ck_assert_str_eq(c->listens[0].text, "8001");
        ck_assert_uint_eq(c->listens[0].n_servers, 2);
        ck_assert_ptr_eq(c->listens[0].servers[0], one);
        ck_assert_ptr_eq(c->listens[0].servers[1], three);
        ck_assert_uint_eq(c->listens[1].n_servers, 1);
        ck_assert_ptr_eq(c->listens[1].servers[0], two);
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

START_TEST(test_dropin_syntax_error) {
        char dir[300], path[400], dpath[400];
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL, *want = NULL;
        FILE *f;

        setup_env();
        snprintf(dir, sizeof(dir), "/tmp/proxyd-test-dropin-%d", (int) getpid());
        snprintf(path, sizeof(path), "%s/p.conf", dir);
        snprintf(dpath, sizeof(dpath), "%s/p.conf.d", dir);
        ck_assert_int_eq(mkdir(dir, 0700) == 0 || errno == EEXIST, 1);
        ck_assert_int_eq(mkdir(dpath, 0700) == 0 || errno == EEXIST, 1);
        f = fopen(path, "we");
        fputs("workers = 1;\n", f);
        fclose(f);
        snprintf(dpath, sizeof(dpath), "%s/p.conf.d/50-bad.conf", dir);
        f = fopen(dpath, "we");
        fputs("# comment\nworkers = 2;\n\nlog_level = ;\n", f);
        fclose(f);
        ck_assert_int_eq(config_load(path, &c, &d), -EINVAL);
        ck_assert_ptr_null(c);
        txt = diags_text(&d);
        ck_assert(asprintf(&want, "%s:4: syntax error", dpath) > 0);
        ck_assert_msg(strstr(txt, want), "got: %s", txt);
        unlink(dpath);
        snprintf(dpath, sizeof(dpath), "%s/p.conf.d", dir);
        rmdir(dpath);
        unlink(path);
        rmdir(dir);
        config_diags_clear(&d);
}
END_TEST

/* ---- inheritance ---- */

static const char inherit_conf[] =
        "defaults = { set_header = { X-Real-IP = \"$remote_addr\"; X-A = \"d\"; }; hide_header = [ \"X-Powered-By\" ];\n"
        "             read_timeout = \"7s\"; access = [ \"deny 192.0.2.1\" ]; };\n"
        "servers = ( { name = \"s\"; listen = [ \"127.0.0.1:8080\", \"[::1]:8080\", \"unix:/run/p.sock\" ];\n"
        "  set_header = { X-B = \"srv\"; x-a = \"server\"; }; hide_header = [ \"Server\" ]; send_timeout = \"3s\";\n"
        "  locations = (\n"
        "    { prefix = \"/a/\"; proxy_pass = \"http://127.0.0.1:1/x/\"; set_header = { X-C = \"loc $uri\"; X-B = \"\"; };\n"
        "      read_timeout = \"9s\"; access = [ \"allow 10.0.0.0/8\", \"deny all\" ]; buffering = false; },\n"
        "    { prefix = \"/b/\"; proxy_pass = \"http://127.0.0.1:1\"; hide_header = [ \"x-powered-by\", \"X-Other\" ]; },\n"
        "    { prefix = \"/c/\"; proxy_pass = \"http://127.0.0.1:1/\"; set_header = { X-Real-IP = \"\"; }; }\n"
        "  ); } );\n";

START_TEST(test_inheritance) {
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;
        int r = load_text(inherit_conf, &c, &d);

        txt = diags_text(&d);
        ck_assert_msg(r == 0, "%s", txt);
        Server *s = c->servers[0];
        Location *a = s->locations[0], *b = s->locations[1], *cc = s->locations[2];

        /* server level: defaults' X-Real-IP, X-A overridden (case-insensitive), X-B added */
        ck_assert_uint_eq(s->s.n_set_header, 3);
        ck_assert_str_eq(s->s.set_header[0].name, "X-Real-IP");
        ck_assert_str_eq(s->s.set_header[1].name, "X-A");
        ck_assert_str_eq(s->s.set_header[1].value->source, "server");
        ck_assert_str_eq(s->s.set_header[2].value->source, "srv");
        ck_assert_uint_eq(s->s.read_timeout, 7 * USEC_PER_SEC);
        ck_assert_uint_eq(s->s.send_timeout, 3 * USEC_PER_SEC);

        /* location a keeps the others, adds X-C, removes X-B */
        ck_assert_uint_eq(a->s.n_set_header, 4);
        ck_assert_str_eq(header(&a->s, "X-Real-IP")->value->source, "$remote_addr");
        ck_assert_str_eq(header(&a->s, "X-A")->value->source, "server");
        ck_assert_ptr_nonnull(header(&a->s, "X-B"));
        ck_assert_ptr_null(header(&a->s, "X-B")->value);
        ck_assert_str_eq(header(&a->s, "X-C")->value->source, "loc $uri");
        ck_assert_uint_eq(header(&a->s, "X-C")->value->n_segs, 2);
        ck_assert_uint_eq(a->s.read_timeout, 9 * USEC_PER_SEC);
        ck_assert_uint_eq(a->s.send_timeout, 3 * USEC_PER_SEC);
        ck_assert(!a->s.buffering);
        ck_assert(b->s.buffering);
        /* access: innermost list wins */
        ck_assert_uint_eq(a->s.n_access, 2);
        ck_assert(a->s.access[0].allow);
        ck_assert_uint_eq(b->s.n_access, 1);
        ck_assert(!b->s.access[0].allow);

        /* hide_header merges by name, lower case */
        ck_assert_uint_eq(a->s.n_hide_header, 2);
        ck_assert_uint_eq(b->s.n_hide_header, 3);
        ck_assert_str_eq(b->s.hide_header[2], "x-other");

        /* "" removes an inherited header in that location only */
        ck_assert_ptr_null(header(&cc->s, "X-Real-IP")->value);
        ck_assert_ptr_nonnull(header(&b->s, "X-Real-IP")->value);

        /* built-in defaults */
        ck_assert_uint_eq(b->s.connect_timeout, 5 * USEC_PER_SEC);
        ck_assert_uint_eq(b->s.client_header_timeout, 10 * USEC_PER_SEC);
        ck_assert_uint_eq(b->s.client_body_timeout, 60 * USEC_PER_SEC);
        ck_assert_uint_eq(b->s.keepalive_timeout, 75 * USEC_PER_SEC);
        ck_assert_uint_eq(b->s.client_max_body_size, 1024 * 1024);
        ck_assert(b->s.websocket && b->s.ssl_verify && b->s.ssl_server_name);
        ck_assert_ptr_null(b->s.ssl_trusted_certificate);
        ck_assert_str_eq(b->s.ssl_name->source, "$proxy_host");

        /* implicit upstream shared by the three locations */
        ck_assert_uint_eq(c->n_upstreams, 1);
        ck_assert_ptr_eq(a->proxy->upstream, b->proxy->upstream);
        ck_assert(a->proxy->upstream->implicit);

        /* listens */
        ck_assert_uint_eq(c->n_listens, 3);
        ck_assert_int_eq(c->listens[1].addr.ss_family, AF_INET6);
        ck_assert_int_eq(c->listens[2].kind, LISTEN_UNIX);
        ck_assert_int_eq(c->listens[0].line, 3);

        /* warnings: both trailing-slash mismatches? none here: /a/ -> /x/, /c/ -> / */
        ck_assert_ptr_null(strstr(txt, "trailing slash"));
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

/* ---- proxy_pass forms ---- */

START_TEST(test_proxy_pass_forms) {
        static const char conf[] =
                "upstreams = { grp = { servers = ( { address = \"127.0.0.1:81\"; } ); }; };\n"
                "servers = ( { name = \"s\"; listen = \"80\"; set_header = { X-Real-IP = \"$remote_addr\"; };\n"
                "  locations = (\n"
                "    { prefix = \"/1/\"; proxy_pass = \"http://grp/1/\"; },\n"
                "    { prefix = \"/2/\"; proxy_pass = \"http://127.0.0.1:8080/2/\"; },\n"
                "    { prefix = \"/3/\"; proxy_pass = \"https://127.0.0.1/3/\"; },\n"
                "    { prefix = \"/4/\"; proxy_pass = \"http://[::1]:82\"; },\n"
                "    { prefix = \"/5/\"; proxy_pass = \"http://unix:/run/x.sock:/5/\"; },\n"
                "    { prefix = \"/6/\"; proxy_pass = \"http://127.0.0.1:80/6/\"; },\n"
                "    { prefix = \"/7/\"; proxy_pass = \"http://127.0.0.1/7/\"; },\n"
                "    { iregex = \"^/8\"; proxy_pass = \"http://localhost:83\"; }\n"
                "  ); } );\n";
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;
        int r = load_text(conf, &c, &d);

        txt = diags_text(&d);
        ck_assert_msg(r == 0, "%s", txt);
        Location **L = c->servers[0]->locations;
        ck_assert_str_eq(L[0]->proxy->upstream->name, "grp");
        ck_assert(!L[0]->proxy->upstream->implicit);
        ck_assert_str_eq(L[0]->proxy->uri, "/1/");
        /* with a port it is a host name, not the group */
        ck_assert_int_ne(r, 0 - 1);
        ck_assert(L[2]->proxy->https);
        ck_assert_str_eq(L[2]->proxy->proxy_host, "127.0.0.1");
        ck_assert_str_eq(L[2]->proxy->upstream->name, "127.0.0.1:443");
        ck_assert_uint_eq(ntohs(((struct sockaddr_in *) &L[2]->proxy->upstream->servers[0].addr)->sin_port), 443);
        ck_assert_str_eq(L[3]->proxy->proxy_host, "[::1]:82");
        ck_assert_ptr_null(L[3]->proxy->uri);
        ck_assert_int_eq(L[3]->proxy->upstream->servers[0].addr.ss_family, AF_INET6);
        ck_assert_str_eq(L[4]->proxy->proxy_host, "localhost");
        ck_assert_str_eq(L[4]->proxy->uri, "/5/");
        ck_assert_int_eq(L[4]->proxy->upstream->servers[0].addr.ss_family, AF_UNIX);
        /* same host:port text shares one implicit upstream */
        ck_assert_ptr_eq(L[5]->proxy->upstream, L[6]->proxy->upstream);
        ck_assert_str_eq(L[6]->proxy->proxy_host, "127.0.0.1");
        ck_assert_str_eq(L[5]->proxy->proxy_host, "127.0.0.1:80");
        ck_assert_int_eq(L[7]->match, MATCH_IREGEX);
        ck_assert_uint_eq(L[3]->proxy->upstream->keepalive, 32);
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

/* ---- errors: every class, with its exact file:line ---- */

#define SRV "servers = ( { name = \"s\"; listen = \"8000\"; locations = ( { prefix = \"/\"; return = 200; } ); } );\n"
#define SRV_OPEN "servers = ( { name = \"s\"; listen = \"8000\";\n"

static const struct {
        const char *text;
        const char *want; /* after ".../t.conf" */
} errors[] = {
        { "workers = 1;\nlog_level = ;\n", ":2: syntax error" },
        { SRV "\nfoo = 1;\n", ":3: unknown setting \"foo\"" },
        { SRV "workers = \"x\";\n", ":2: \"workers\" must be an integer" },
        { SRV "workers = 100000;\n", ":2: \"workers\" must be between 0 and 1024" },
        { SRV "log_level = \"loud\";\n", ":2: invalid value \"loud\" for \"log_level\"" },
        { SRV "access_log = 1;\n", ":2: \"access_log\" must be true, false or an absolute file name" },
        { SRV "access_log = \"logs/access.log\";\n", ":2: \"access_log\" must be true, false or an absolute file name" },
        { SRV "defaults = {\n connect_timeout = \"5x\"; };\n", ":3: invalid duration \"5x\" for \"connect_timeout\"" },
        { SRV "defaults = {\n client_max_body_size = \"1t\"; };\n", ":3: invalid size \"1t\" for \"client_max_body_size\"" },
        { SRV "defaults = { tpyo = 1; };\n", ":2: unknown setting \"tpyo\"" },
        { SRV "defaults = {\n upgrade_protocols = [ \"websocket\", \"h2 c\" ]; };\n",
          ":3: \"upgrade_protocols\": \"h2 c\" is not a protocol name" },
        { SRV "defaults = {\n underscores_in_headers = 1; };\n", ":3: \"underscores_in_headers\" must be" },
        { SRV "defaults = {\n upgrade_protocols = [ \"websocket\", \"H2C\" ]; };\n",
          ":3: \"upgrade_protocols\": \"h2c\" cannot be tunnelled" },
        { SRV "\nproxy_pass = \"http://127.0.0.1\";\n", ":3: \"proxy_pass\" is only allowed inside a location" },
        { SRV "defaults = {\n proxy_pass = \"http://127.0.0.1\"; };\n", ":3: \"proxy_pass\" is only allowed inside a location" },
        { SRV_OPEN "proxy_pass = \"http://127.0.0.1\";\n locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: \"proxy_pass\" is only allowed inside a location" },
        { SRV_OPEN "locations = (\n { regex = \"^/x\"; proxy_pass = \"http://127.0.0.1/y\"; } ); } );\n",
          ":3: proxy_pass with a URI is not allowed in a regex location" },
        { SRV_OPEN "locations = (\n { iregex = \"^/x\"; proxy_pass = \"http://unix:/run/a.sock:/\"; } ); } );\n",
          ":3: proxy_pass with a URI is not allowed in a regex location" },
        { SRV_OPEN "set_header = {\n X-Foo = \"a $foo b\"; };\n locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":3: unknown variable \"$foo\"" },
        { SRV_OPEN "set_header = {\n X-Foo = \"${bar}\"; };\n locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":3: unknown variable \"${bar}\"" },
        { SRV_OPEN "set_header = {\n X-Foo = \"a $ b\"; };\n locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":3: invalid value \"a $ b\": \"$\" not followed by a variable name" },
        { "servers = ( { name = \"s\"; listen = \"1\"; locations = ( { prefix = \"/\"; return = 200; } ); },\n"
          "  { name = \"s\"; listen = \"2\"; locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: duplicate server name \"s\" (first defined at " },
        { "servers = (\n { listen = \"1\"; locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: a server needs a \"name\"" },
        { "servers = (\n { name = \"s\"; locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: server \"s\" has no \"listen\"" },
        { "workers = 1;\n", ": no servers configured" },
        { "servers = ( { name = \"s\";\n listen = [ \"http\", \"1.2.3:80\" ]; locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: invalid listen \"1.2.3:80\"" },
        { SRV_OPEN "listen = \"8001\"; locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: duplicate setting name" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; exact = \"/\"; return = 200; } ); } );\n",
          ":3: a location takes exactly one of exact, prefix, regex, iregex" },
        { SRV_OPEN "locations = (\n { return = 200; } ); } );\n", ":3: a location needs one of exact, prefix, regex or iregex" },
        { SRV_OPEN "locations = (\n { regex = \"/\";\n stop_regex = true; return = 200; } ); } );\n",
          ":4: \"stop_regex\" is only valid with \"prefix\"" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; return = 200; proxy_pass = \"http://127.0.0.1\"; } ); } );\n",
          ":3: a location takes either proxy_pass or return, not both" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; } ); } );\n", ":3: a location needs proxy_pass or return" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; return = 200; frobnicate = true; } ); } );\n",
          ":3: unknown setting \"frobnicate\"" },
        { SRV_OPEN "locations = (\n { regex = \"(ab\"; return = 200; } ); } );\n",
          ":3: invalid regex \"(ab\": missing closing parenthesis at offset 3" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; proxy_pass = \"http://no-such-host.invalid\"; } ); } );\n",
          ":3: host not found in proxy_pass \"http://no-such-host.invalid\"" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; proxy_pass = \"ftp://x\"; } ); } );\n",
          ":3: invalid proxy_pass \"ftp://x\": must start with http:// or https://" },
        { SRV_OPEN "locations = (\n { prefix = \"/\"; proxy_pass = \"http://unix:/run/x.sock\"; } ); } );\n",
          ":3: invalid proxy_pass \"http://unix:/run/x.sock\": expected http://unix:/PATH:[URI]" },
        { SRV "defaults = { access = [ \"allow 10.0.0.0/8\",\n \"allow 10.0.0.0/33\" ]; };\n",
          ":3: invalid access rule \"allow 10.0.0.0/33\"" },
        { SRV "defaults = { access = [\n \"permit all\" ]; };\n", ":3: invalid access rule \"permit all\"" },
        { SRV "defaults = {\n ssl_trusted_certificate = \"%d/missing.pem\"; };\n", ":3: cannot read \"" },
        { SRV "upstreams = {\n u = { keepalive = 1; }; };\n", ":3: upstream \"u\" has no servers" },
        { SRV "upstreams = { u = { servers = (\n { address = \"no-such-host.invalid:80\"; } ); }; };\n",
          ":3: upstream server \"no-such-host.invalid:80\": " },
        { SRV "upstreams = { u = { servers = (\n { addr = \"127.0.0.1:80\"; } ); }; };\n", ":3: unknown setting \"addr\"" },
        { SRV "upstreams = { u = {\n balance = \"fastest\"; servers = ( { address = \"127.0.0.1:80\"; } ); }; };\n",
          ":3: invalid value \"fastest\" for \"balance\"" },
        { SRV "upstreams = { u = { servers = ( { address = \"127.0.0.1:80\";\n weight = 0; } ); }; };\n",
          ":3: \"weight\" must be between 1 and 1000" },
        { SRV "upstreams = [ 1 ];\n", ":2: \"upstreams\" must be a group { ... }" },
        { SRV_OPEN "tls = {\n certificate = \"%d/example.pem\"; }; locations = ( { prefix = \"/\"; return = 200; } ); } );\n",
          ":2: tls needs both \"certificate\" and \"key\"" },
};

START_TEST(test_errors) {
        Config *c = (Config *) 0x1;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL, *want = NULL;
        int r;

        r = load_text(errors[_i].text, &c, &d);
        txt = diags_text(&d);
        ck_assert_msg(r == -EINVAL, "case %d: r=%d %s", _i, r, txt);
        ck_assert_ptr_eq(c, (Config *) 0x1);
        ck_assert_uint_ge(d.n_errors, 1);
        ck_assert(asprintf(&want, "%s/t.conf%s", tmp_dir, errors[_i].want) > 0);
        ck_assert_msg(strstr(txt, want), "case %d: want \"%s\"\ngot: %s", _i, want, txt);
        config_diags_clear(&d);
        ck_assert_uint_eq(d.n, 0);
}
END_TEST

START_TEST(test_credentials_unset) {
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;

        setup_env();
        ck_assert_int_eq(load_text(SRV "defaults = {\n ssl_trusted_certificate = \"%d/ca.pem\"; };\n", &c, &d), 0);
        config_unref(c);
        config_diags_clear(&d);
        unsetenv("CREDENTIALS_DIRECTORY");
        {
                char path[256];
                snprintf(path, sizeof(path), "%s/t.conf", tmp_dir);
                ck_assert_int_eq(config_load(path, &c, &d), -EINVAL);
        }
        txt = diags_text(&d);
        ck_assert_msg(strstr(txt, "t.conf:3: \"ssl_trusted_certificate\" uses %d but $CREDENTIALS_DIRECTORY is not set"),
                      "%s", txt);
        config_diags_clear(&d);
}
END_TEST

START_TEST(test_missing_file) {
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;

        ck_assert_int_eq(config_load("/nonexistent/proxyd.conf", &c, &d), -EINVAL);
        txt = diags_text(&d);
        ck_assert_msg(strstr(txt, "/nonexistent/proxyd.conf"), "%s", txt);
        config_diags_clear(&d);
}
END_TEST

/* ---- warnings ---- */

START_TEST(test_warnings) {
        static const char conf[] =
                "servers = ( { name = \"w\"; listen = \"8000\";\n"
                "  locations = (\n"
                "    { prefix = \"/api\";\n"
                "      proxy_pass = \"http://127.0.0.1:1/\"; },\n"
                "    { prefix = \"/v/\"; proxy_pass = \"http://127.0.0.1:1/v\"; },\n"
                "    { prefix = \"/s/\"; ssl_verify = false;\n"
                "      proxy_pass = \"https://127.0.0.1/\"; },\n"
                "    { prefix = \"/n/\"; ssl_server_name = false; proxy_pass = \"https://127.0.0.1/\"; },\n"
                "    { prefix = \"/ws/\"; websocket = false; set_header = { Upgrade = \"$http_upgrade\"; };\n"
                "      proxy_pass = \"http://127.0.0.1:1\"; },\n"
                "    { prefix = \"/ok/\"; proxy_pass = \"http://127.0.0.1:1/ok/\"; }\n"
                "  ); } );\n";
        Config *c = NULL;
        ConfigDiags d = {};
        _cleanup_free_ char *txt = NULL;
        char want[512];
        int r = load_text(conf, &c, &d);

        txt = diags_text(&d);
        ck_assert_msg(r == 0, "%s", txt);
        ck_assert_uint_eq(d.n_errors, 0);
        ck_assert_uint_eq(d.n, 6);
#define WANT(suffix)                                                       \
        do {                                                               \
                snprintf(want, sizeof(want), "%s/t.conf" suffix, tmp_dir); \
                ck_assert_msg(strstr(txt, want), "want %s\ngot %s", want, txt); \
        } while (0)
        WANT(":4: warning: prefix \"/api\" has no trailing slash");
        WANT(":5: warning: prefix \"/v/\" ends with a trailing slash");
        WANT(":7: warning: https upstream \"https://127.0.0.1/\" with ssl_verify = false");
        WANT(":8: warning: https upstream \"https://127.0.0.1/\" with ssl_server_name = false");
        WANT(":9: warning: set_header sets \"Upgrade\" but websocket = false");
        WANT(":1: warning: server \"w\" proxies without forwarding the client address");
        ck_assert_ptr_null(strstr(txt, "\"/ok/\""));
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

/* ---- access_check ---- */

static struct sockaddr_storage sa(const char *s) {
        struct sockaddr_storage ss = {};

        if (streq(s, "unix"))
                ss.ss_family = AF_UNIX;
        else if (inet_pton(AF_INET, s, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
                ss.ss_family = AF_INET;
        else {
                ck_assert_int_eq(inet_pton(AF_INET6, s, &((struct sockaddr_in6 *) &ss)->sin6_addr), 1);
                ss.ss_family = AF_INET6;
        }
        return ss;
}

static const struct {
        const char *addr;
        bool allowed;
} access_table[] = {
        { "10.1.2.3", true },       { "10.255.255.255", true }, { "11.0.0.1", false },
        { "192.168.1.7", false },   { "192.168.1.8", true },    { "192.168.1.9", true },
        { "::1", true },            { "::2", false },           { "2001:db8::1", true },
        { "2001:db8:1::1", false }, { "::ffff:10.9.9.9", true }, { "::ffff:11.9.9.9", false },
        { "unix", true },           { "127.0.0.2", false },
};

START_TEST(test_access) {
        static const char conf[] =
                SRV "defaults = { access = [ \"allow 10.0.0.0/8\", \"deny 192.168.1.7\", \"allow 192.168.1.0/24\",\n"
                    " \"allow ::1\", \"allow 2001:db8::/48\", \"allow 127.0.0.1\", \"deny all\" ]; };\n";
        static Config *c;
        ConfigDiags d = {};
        struct sockaddr_storage ss = sa(access_table[_i].addr);

        ck_assert_int_eq(load_text(conf, &c, &d), 0);
        const LocationSettings *s = &c->servers[0]->locations[0]->s;
        ck_assert_uint_eq(s->n_access, 7);
        ck_assert_msg(access_check(s->access, s->n_access, (struct sockaddr *) &ss) == access_table[_i].allowed,
                      "%s", access_table[_i].addr);
        ck_assert(access_check(NULL, 0, (struct sockaddr *) &ss));
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

START_TEST(test_access_host_bits) {
        Config *c = NULL;
        ConfigDiags d = {};
        struct sockaddr_storage in = sa("172.16.200.1"), out = sa("172.32.0.1");

        ck_assert_int_eq(load_text(SRV "defaults = { access = [ \"allow 172.16.99.99/12\", \"deny all\" ]; };\n", &c, &d), 0);
        const LocationSettings *s = &c->servers[0]->s;
        ck_assert_uint_eq(s->access[0].prefix, 12);
        ck_assert_uint_eq(s->access[0].addr[1], 16);
        ck_assert_uint_eq(s->access[0].addr[2], 0);
        ck_assert(access_check(s->access, s->n_access, (struct sockaddr *) &in));
        ck_assert(access_check(s->access, s->n_access, (struct sockaddr *) &out) == false);
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

START_TEST(test_upgrade_underscores) {
        Config *c = NULL;
        ConfigDiags d = {};

        ck_assert_int_eq(load_text(SRV "defaults = { underscores_in_headers = true; upgrade_protocols = \"X-Proto\"; };\n",
                                   &c, &d),
                         0);
        const LocationSettings *s = &c->servers[0]->locations[0]->s;
        ck_assert(s->underscores_in_headers);
        ck_assert_uint_eq(s->n_upgrade_protocols, 1);
        ck_assert_str_eq(s->upgrade_protocols[0], "x-proto");
        config_unref(c);
        config_diags_clear(&d);

        /* the built-in defaults */
        ck_assert_int_eq(load_text(SRV, &c, &d), 0);
        s = &c->servers[0]->locations[0]->s;
        ck_assert(!s->underscores_in_headers);
        ck_assert_uint_eq(s->n_upgrade_protocols, 1);
        ck_assert_str_eq(s->upgrade_protocols[0], "websocket");
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

/* ---- the settings tables and proxyd.conf(5) ---- */

typedef struct ManTag {
        char section[64];
        char nested[64]; /* the tag whose .RS block holds this one, or "" */
        char name[64];
        char paren[256];
        bool has_paren; /* the tag has a "(...)" */
        bool matched;
} ManTag;

/* Plain text of a piece of troff: \(dq -> ", \(en and \- -> -, font changes dropped. */
static void man_plain(const char *in, char *out, size_t size) {
        size_t n = 0;

        while (*in && n + 1 < size) {
                if (strncmp(in, "\\(dq", 4) == 0)
                        out[n++] = '"', in += 4;
                else if (strncmp(in, "\\(en", 4) == 0)
                        out[n++] = '-', in += 4;
                else if (strncmp(in, "\\-", 2) == 0)
                        out[n++] = '-', in += 2;
                else if (strncmp(in, "\\f", 2) == 0 && in[2])
                        in += 3;
                else
                        out[n++] = *in++;
        }
        out[n] = 0;
}

/* Split the arguments of a macro line (".BR name \" (type)\"") into args. */
static size_t man_args(const char *line, char args[][256], size_t max) {
        const char *p = strchr(line, ' ');
        size_t na = 0;

        while (p && *p && na < max) {
                size_t k = 0;
                while (*p == ' ')
                        p++;
                if (!*p)
                        break;
                if (*p == '"') {
                        for (p++; *p && *p != '"' && k + 1 < 256; p++)
                                args[na][k++] = *p;
                        if (*p)
                                p++;
                } else
                        while (*p && *p != ' ' && k + 1 < 256)
                                args[na][k++] = *p++;
                args[na++][k] = 0;
        }
        return na;
}

/* The tag line of a .TP: its bold setting names, and what its roman parts say in "(...)". */
static size_t man_tag(const char *line, const char *section, const char *nested, ManTag *tags, size_t n,
                      size_t max) {
        char args[8][256], rest[512] = "", *open, *close;
        bool all_bold = strncmp(line, ".B ", 3) == 0;
        size_t na = man_args(line, args, ELEMENTSOF(args)), first = n;

        for (size_t i = 0; i < na; i++) {
                char plain[256];

                man_plain(args[i], plain, sizeof(plain));
                if (!all_bold && i % 2 == 1)
                        strncat(rest, plain, sizeof(rest) - strlen(rest) - 1);
                else if (plain[0] && strspn(plain, "abcdefghijklmnopqrstuvwxyz_0123456789") == strlen(plain)) {
                        ck_assert_uint_lt(n, max);
                        tags[n] = (ManTag) {};
                        snprintf(tags[n].section, sizeof(tags[n].section), "%s", section);
                        snprintf(tags[n].nested, sizeof(tags[n].nested), "%s", nested);
                        snprintf(tags[n].name, sizeof(tags[n].name), "%s", plain);
                        n++;
                }
        }
        open = strchr(rest, '(');
        close = strrchr(rest, ')');
        for (size_t i = first; open && close > open && i < n; i++) {
                tags[i].has_paren = true;
                snprintf(tags[i].paren, sizeof(tags[i].paren), "%.*s", (int) (close - open - 1), open + 1);
        }
        return n;
}

/* Every .TP tag of man/proxyd.conf.5, with its section and the tag whose .RS block holds it. */
static size_t man_tags(ManTag *tags, size_t max) {
        char path[8192], line[1024], section[64] = "", stack[4][64] = {}, last[64] = "";
        size_t n = 0, depth = 0;
        bool tp = false;
        FILE *f;

        ck_assert_msg(getenv("TEST_DATA_DIR"), "TEST_DATA_DIR not set");
        snprintf(path, sizeof(path), "%s/../../man/proxyd.conf.5", getenv("TEST_DATA_DIR"));
        f = fopen(path, "re");
        ck_assert_msg(f, "cannot open %s", path);
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (strncmp(line, ".SH ", 4) == 0) {
                        man_plain(line + 4 + (line[4] == '"'), section, sizeof(section));
                        section[strcspn(section, "\"")] = 0;
                        depth = 0;
                } else if (streq(line, ".RS") && depth < ELEMENTSOF(stack))
                        snprintf(stack[depth++], sizeof(stack[0]), "%s", last);
                else if (streq(line, ".RE") && depth > 0)
                        depth--;
                else if (tp && line[0] == '.') {
                        size_t k = man_tag(line, section, depth > 0 ? stack[depth - 1] : "", tags, n, max);
                        if (k > n)
                                snprintf(last, sizeof(last), "%s", tags[k - 1].name);
                        n = k;
                }
                tp = streq(line, ".TP");
        }
        fclose(f);
        return n;
}

/* What the tag's parentheses must say for row ("integer 0-1024, default 0"), or NULL for none. */
static const char *expected_paren(const Setting *row, char *buf, size_t size) {
        char type[64];
        const char *t = schema_doc_type(row, type, sizeof(type));

        if (!t)
                return NULL;
        snprintf(buf, size, "%s%s%s%s", t, row->dflt ? ", default " : row->doc_default ? ", default: " : "",
                 row->dflt ?: row->doc_default ?: "", (row->flags & SF_REQUIRED) ? ", required" : "");
        return buf;
}

static const char *row_section(const SettingTable *t, const Setting *row) {
        return row->doc_section ?: t->title;
}

static bool section_has_table(const char *section) {
        for (size_t k = 0; k < SCHEMA_N_TABLES; k++)
                for (size_t i = 0; i < SCHEMA_TABLES[k]->n_rows; i++)
                        if (streq(row_section(SCHEMA_TABLES[k], &SCHEMA_TABLES[k]->rows[i]), section))
                                return true;
        return false;
}

/* One row against the man page's tags: found once, in its section, with its type and default. */
static void check_row(FILE *out, const SettingTable *t, const Setting *row, ManTag *tags, size_t n) {
        const char *section = row_section(t, row), *nested = t->nested ?: "", *want;
        char buf[256];
        ManTag *m = NULL;

        for (size_t j = 0; j < n; j++)
                if (streq(tags[j].section, section) && streq(tags[j].nested, nested) && streq(tags[j].name, row->name)) {
                        if (m)
                                fprintf(out, "%s (%s): documented twice\n", row->name, section);
                        m = &tags[j];
                }
        if (!m) {
                fprintf(out, "%s: in the tables, missing from section %s%s%s\n", row->name, section,
                        *nested ? " under " : "", nested);
                return;
        }
        m->matched = true;
        want = expected_paren(row, buf, sizeof(buf));
        if (!want != !m->has_paren || (want && !streq(want, m->paren)))
                fprintf(out, "%s (%s): the man page says \"(%s)\", the table \"(%s)\"\n", row->name, section,
                        m->has_paren ? m->paren : "", want ?: "");
}

/* man/proxyd.conf.5 documents exactly the settings of the tables, with their types and defaults. */
START_TEST(test_man_page_matches_tables) {
        static ManTag tags[256];
        size_t n = man_tags(tags, ELEMENTSOF(tags)), plen = 0;
        _cleanup_free_ char *problems = NULL;
        FILE *out = open_memstream(&problems, &plen);

        ck_assert_uint_gt(n, 60);
        for (size_t k = 0; k < SCHEMA_N_TABLES; k++)
                for (size_t i = 0; i < SCHEMA_TABLES[k]->n_rows; i++)
                        check_row(out, SCHEMA_TABLES[k], &SCHEMA_TABLES[k]->rows[i], tags, n);
        for (size_t j = 0; j < n; j++)
                if (!tags[j].matched && section_has_table(tags[j].section))
                        fprintf(out, "%s (%s%s%s): in proxyd.conf(5), not in the tables\n", tags[j].name,
                                tags[j].section, *tags[j].nested ? ", under " : "", tags[j].nested);
        fclose(out);
        ck_assert_msg(plen == 0, "proxyd.conf(5) and the settings tables differ:\n%s", problems);
}
END_TEST

/* Every row's default parses, and gives what the daemon's defaults are. */
START_TEST(test_table_defaults) {
        LocationSettings s = {};
        Config c = {};
        Upstream u = {};
        UpstreamServer us = {};
        HealthCheck h = {};

        ck_assert_int_eq(settings_builtin(&s), 0);
        ck_assert_uint_eq(s.client_max_request_line, HTTP_LIMITS_DEFAULT.max_request_line);
        ck_assert_uint_eq(s.client_max_header_line, HTTP_LIMITS_DEFAULT.max_field_size);
        ck_assert_uint_eq(s.client_max_header_size, HTTP_LIMITS_DEFAULT.max_head_size);
        ck_assert_uint_eq(s.client_max_headers, HTTP_LIMITS_DEFAULT.max_headers);
        ck_assert_uint_eq(s.client_max_chunk_overhead, HTTP_LIMITS_DEFAULT.max_chunk_overhead);
        ck_assert_uint_eq(s.connect_timeout, 5 * USEC_PER_SEC);
        ck_assert_uint_eq(s.client_body_min_rate, 1024);
        ck_assert_uint_eq(s.n_upgrade_protocols, 1);
        ck_assert_str_eq(s.ssl_name->source, "$proxy_host");
        settings_done(&s);
        ck_assert_int_eq(schema_defaults(&SCHEMA_TOP, SC_TOP, &c, NULL), 0);
        ck_assert_int_eq(c.log_level, LOG_INFO);
        ck_assert(c.access_log);
        ck_assert_uint_eq(c.max_connections, 10000);
        ck_assert_int_eq(schema_defaults(&SCHEMA_UPSTREAM, SC_UPSTREAM, &u, NULL), 0);
        ck_assert_uint_eq(u.next_upstream, NEXT_UPSTREAM_ERROR | NEXT_UPSTREAM_TIMEOUT);
        ck_assert_int_eq(schema_defaults(&SCHEMA_UPSTREAM_SERVER, SC_UPSTREAM_SERVER, &us, NULL), 0);
        ck_assert_uint_eq(us.fail_timeout, 10 * USEC_PER_SEC);
        ck_assert_int_eq(schema_defaults(&SCHEMA_HEALTH_CHECK, SC_HEALTH_CHECK, &h, NULL), 0);
        ck_assert_str_eq(h.path, "/");
        free(h.path);

        /* one row per name in a table, every row described */
        for (size_t k = 0; k < SCHEMA_N_TABLES; k++)
                for (size_t i = 0; i < SCHEMA_TABLES[k]->n_rows; i++) {
                        const Setting *row = &SCHEMA_TABLES[k]->rows[i];
                        ck_assert_int_eq(schema_find(SCHEMA_TABLES[k], row->name), (int) i);
                        ck_assert_msg(row->description && *row->description, "%s has no description", row->name);
                        ck_assert_uint_lt(i, SCHEMA_ROWS_MAX);
                }
}
END_TEST


static Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_example);
        tcase_add_test(tc, test_dump_reloads);
        tcase_add_test(tc, test_refcount);
        tcase_add_test(tc, test_dropin_order);
        tcase_add_test(tc, test_dropin_merge);
        tcase_add_test(tc, test_dropin_syntax_error);
        tcase_add_test(tc, test_inheritance);
        tcase_add_test(tc, test_proxy_pass_forms);
        tcase_add_loop_test(tc, test_errors, 0, ELEMENTSOF(errors));
        tcase_add_test(tc, test_credentials_unset);
        tcase_add_test(tc, test_missing_file);
        tcase_add_test(tc, test_warnings);
        tcase_add_loop_test(tc, test_access, 0, ELEMENTSOF(access_table));
        tcase_add_test(tc, test_access_host_bits);
        tcase_add_test(tc, test_upgrade_underscores);
        tcase_add_test(tc, test_man_page_matches_tables);
        tcase_add_test(tc, test_table_defaults);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr;
        int failed;

        if (!mkdtemp(tmp_dir)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        sr = srunner_create(config_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        {
                char p[256];
                snprintf(p, sizeof(p), "%s/t.conf", tmp_dir);
                unlink(p);
                rmdir(tmp_dir);
        }
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
