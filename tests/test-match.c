/* SPDX-License-Identifier: MIT */
/* Rules and their conditions (policy/match.c) and the pattern syntax (config-rules.c). */

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "config-schema.h" /* parse_access_rule */
#include "match.h"
#include "util.h"

/* ---- patterns ---- */

typedef struct PatternCase {
        const char *pattern;
        const char *value;
        int match;   /* match_pattern(), negation not applied */
        bool negate; /* what pattern_parse says */
} PatternCase;

static const PatternCase pattern_cases[] = {
        { "GET", "GET", 1, false },
        { "GET", "GETX", 0, false },
        { "GET", "get", 0, false },
        { "GET", "", 0, false },
        { "=~x", "~x", 1, false },       /* "=": the rest is literal */
        { "=", "", 1, false },           /* exactly empty */
        { "=^a", "^a", 1, false },
        { "^Mozilla/", "Mozilla/5.0", 1, false },
        { "^Mozilla/", "Mozilla", 0, false },
        { "^", "anything", 1, false },   /* empty prefix */
        { "~bot", "Googlebot/2.1", 1, false },
        { "~bot", "GoogleBOT/2.1", 0, false },
        { "~*bot", "GoogleBOT/2.1", 1, false },
        { "~^(GET|HEAD)$", "HEAD", 1, false },
        { "~^(GET|HEAD)$", "HEADX", 0, false },
        { "~", "", 1, false },           /* empty regex: any value */
        { "*", "", 1, false },
        { "*", "x", 1, false },
        { "!*", "x", 1, true },          /* "absent": the positive test is "present" */
        { "!GET", "GET", 1, true },
        { "!^a", "b", 0, true },
        { "!~*x", "X", 1, true },
        { "a b", "a b", 1, false },
        { "~a.c", "a\nc", 0, false },    /* "." does not match a newline */
        { "~\\d+", "12", 1, false },
        /* regexes that are plain text (matched without PCRE2) */
        { "~*BadBot", "a badbot here", 1, false },
        { "~*badbot", "xBADBOT", 1, false },
        { "~*badbot", "badbo", 0, false },
        { "~badbot", "BadBot", 0, false },
        { "~^curl/", "curl/8.1", 1, false },
        { "~^curl/", "xcurl/8.1", 0, false },
        { "~*^CURL", "curl", 1, false },
        { "~a\\.b", "a.b", 1, false },
        { "~a\\.b", "axb", 0, false },
        { "~^", "", 1, false },
        { "!~*bot", "ROBOT", 1, true },
};

START_TEST(test_pattern) {
        const PatternCase *t = &pattern_cases[_i];
        Pattern p = {};
        bool neg = !t->negate;
        const char *err = NULL;

        ck_assert_msg(pattern_parse(t->pattern, &p, &neg, &err) == 0, "%s: %s", t->pattern, err);
        ck_assert_msg(neg == t->negate, "%s: negate %d", t->pattern, neg);
        ck_assert_msg(match_pattern(&p, t->value, strlen(t->value)) == t->match, "%s against \"%s\": want %d",
                      t->pattern, t->value, t->match);
        pattern_done(&p);
}
END_TEST

/* A regex that is plain text is matched without PCRE2, with PCRE2's answers. */
START_TEST(test_regex_as_text) {
        static const struct {
                const char *pattern;
                PatternOp op;
        } patterns[] = {
                { "~bot", PATTERN_REGEX_TEXT },    { "~*BOT", PATTERN_REGEX_TEXT },
                { "~^Mozilla/", PATTERN_REGEX_START }, { "~*^mozilla/5", PATTERN_REGEX_START },
                { "~a\\.b", PATTERN_REGEX_TEXT },   { "~*a\\+b\\\\", PATTERN_REGEX_TEXT },
                { "~x-y_z;q=1 @#%&'\"~", PATTERN_REGEX_TEXT },
                { "~", PATTERN_REGEX_TEXT },        { "~^", PATTERN_REGEX_START },
                { "~a.b", PATTERN_REGEX },         { "~bot$", PATTERN_REGEX },
                { "~a|b", PATTERN_REGEX },         { "~a\\d", PATTERN_REGEX },
                { "~*k", PATTERN_REGEX_TEXT },     { "~a^b", PATTERN_REGEX },
                { "~ab*", PATTERN_REGEX },         { "~a{2}", PATTERN_REGEX },
                { "~\xc3\xa9", PATTERN_REGEX },    { "~*(?i)x", PATTERN_REGEX },
                { "~*googlebot/2", PATTERN_REGEX_TEXT }, { "~*bot\\.html", PATTERN_REGEX_TEXT },
                { "~*botbot", PATTERN_REGEX_TEXT }, { "~Googlebot/", PATTERN_REGEX_TEXT },
                { "~*a.b", PATTERN_REGEX },        { "~*a\\.B", PATTERN_REGEX_TEXT },
                { "~*bo", PATTERN_REGEX_TEXT },    { "~*otbo", PATTERN_REGEX_TEXT },
        };
        static const char *const values[] = {
                "", "bot", "BOT", "Googlebot/2.1", "Mozilla/5.0 (X11)", "mozilla/5", "xMozilla/", "a.b", "axb",
                "A+B\\", "a+b\\c", "x-y_z;q=1 @#%&'\"~", "X-Y_Z;Q=1 @#%&'\"~", "K", "\xe2\x84\xaa", "\xc3\xa9",
                "\xc3\x89", "ab", "a^b", "b",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "xxxxxxxxxxxxxxxxxxxxxxBxxxxxxxxxxxxxxxxxxxxxxxxBoTxxxxxxxxxxxxxxxxxxx",
                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc2\xc2" "bobobobotBOT", "a.ba.ba.ba.ba.ba.bA.B", "kkkkkkkkkkkkkkkkk",
                "xxxxxxxbo", "xxxxxxbot", "xxxxxxxxxBotx", "bbbbbbbbbbbbbot", "bobotbot", "xbot", "Botbotbo",
        };

        for (size_t i = 0; i < ELEMENTSOF(patterns); i++) {
                const char *src = patterns[i].pattern + 1;
                bool caseless = *src == '*', neg;
                Pattern p = {};
                int errcode;
                PCRE2_SIZE off;

                src += caseless;
                ck_assert_int_eq(pattern_parse(patterns[i].pattern, &p, &neg, NULL), 0);
                ck_assert_msg(p.op == patterns[i].op, "%s: op %d", patterns[i].pattern, p.op);
                pcre2_code *re = pcre2_compile((PCRE2_SPTR) src, PCRE2_ZERO_TERMINATED, caseless ? PCRE2_CASELESS : 0,
                                               &errcode, &off, NULL);
                pcre2_match_data *md = pcre2_match_data_create(1, NULL);
                ck_assert_ptr_nonnull(re);
                for (size_t k = 0; k < ELEMENTSOF(values); k++) {
                        size_t n = strlen(values[k]);
                        int want = pcre2_match(re, (PCRE2_SPTR) values[k], n, 0, 0, md, NULL) >= 0;
                        ck_assert_msg(match_pattern(&p, values[k], n) == want, "%s against \"%s\": want %d",
                                      patterns[i].pattern, values[k], want);
                }
                pcre2_match_data_free(md);
                pcre2_code_free(re);
                pattern_done(&p);
        }
}
END_TEST

START_TEST(test_pattern_errors) {
        static const char *const bad[] = { "~(", "~*[a", "!~x(" };
        Pattern p = {};
        bool neg;
        const char *err = NULL;

        ck_assert_int_eq(pattern_parse(bad[_i], &p, &neg, &err), -EINVAL);
        ck_assert_ptr_nonnull(err);
}
END_TEST

/* ---- conditions ---- */

static HttpHeader hdr(const char *name, const char *value) {
        return (HttpHeader) { .name = name, .name_len = strlen(name), .value = value, .value_len = strlen(value) };
}

static const HttpHeader request_headers[] = {
        { "Host", 4, "example.com", 11 },
        { "User-Agent", 10, "curl/7.88.1", 11 },
        { "Cookie", 6, "a=1; session=admin42;flag", 25 },
        { "cookie", 6, "b=2", 3 },
        { "X-Multi", 7, "one", 3 },
        { "x-multi", 7, "two", 3 },
};

static struct sockaddr_in client4;
static struct sockaddr_in6 client6;
static struct sockaddr_un client_unix;

static MatchRequest request(void) {
        static const char args[] = "debug&lang=de&x=1&x=2&empty=&e%3Dq=3";

        client4 = (struct sockaddr_in) { .sin_family = AF_INET };
        inet_pton(AF_INET, "10.1.2.3", &client4.sin_addr);
        return (MatchRequest) {
                .method = "POST",
                .method_len = 4,
                .https = false,
                .server_port = 8080,
                .client = (const struct sockaddr *) &client4,
                .headers = request_headers,
                .n_headers = ELEMENTSOF(request_headers),
                .args = args,
                .args_len = strlen(args),
        };
}

/* A condition of kind on name with pattern (header, arg, cookie). */
static Condition field_cond(ConditionKind kind, const char *name, const char *pattern) {
        Condition c = { .kind = kind, .name = strdup(name), .name_len = strlen(name) };

        ck_assert_int_eq(pattern_parse(pattern, &c.pattern, &c.negate, NULL), 0);
        return c;
}

static void cond_done(Condition *c) {
        free(c->name);
        pattern_done(&c->pattern);
}

typedef struct FieldCase {
        ConditionKind kind;
        const char *name; /* header names lower case, as the configuration stores them */
        const char *pattern;
        int holds;
} FieldCase;

static const FieldCase field_cases[] = {
        { COND_HEADER, "user-agent", "~*^curl/", 1 },
        { COND_HEADER, "user-agent", "!~*^curl/", 0 },
        { COND_HEADER, "user-agent", "^wget", 0 },
        { COND_HEADER, "host", "example.com", 1 },
        { COND_HEADER, "x-multi", "two", 1 },         /* any field of the name */
        { COND_HEADER, "x-multi", "!two", 0 },        /* negation: none of them */
        { COND_HEADER, "x-absent", "*", 0 },
        { COND_HEADER, "x-absent", "!*", 1 },
        { COND_HEADER, "x-absent", "!x", 1 },         /* absent: no field matches */
        { COND_ARG, "lang", "de", 1 },
        { COND_ARG, "lang", "^d", 1 },
        { COND_ARG, "Lang", "de", 0 },                /* names are case-sensitive */
        { COND_ARG, "x", "2", 1 },                    /* any occurrence */
        { COND_ARG, "debug", "*", 1 },                /* without "=" */
        { COND_ARG, "debug", "", 1 },
        { COND_ARG, "empty", "", 1 },
        { COND_ARG, "nope", "*", 0 },
        { COND_ARG, "nope", "!*", 1 },
        { COND_ARG, "e%3Dq", "3", 1 },                /* as sent, not decoded */
        { COND_ARG, "e=q", "*", 0 },
        { COND_ARG, "ang", "*", 0 },                  /* whole names only */
        { COND_COOKIE, "session", "^admin", 1 },
        { COND_COOKIE, "session", "admin", 0 },
        { COND_COOKIE, "a", "1", 1 },
        { COND_COOKIE, "b", "2", 1 },                 /* a second Cookie field */
        { COND_COOKIE, "flag", "*", 1 },
        { COND_COOKIE, "ession", "*", 0 },
        { COND_COOKIE, "lang", "*", 0 },              /* a query argument is no cookie */
        { COND_COOKIE, "session", "!~^admin", 0 },
};

START_TEST(test_field_conditions) {
        const FieldCase *t = &field_cases[_i];
        MatchRequest r = request();
        Condition c = field_cond(t->kind, t->name, t->pattern);

        ck_assert_msg(match_condition(&c, &r) == t->holds, "%s %s \"%s\": want %d", t->kind == COND_HEADER ? "header"
                      : t->kind == COND_ARG ? "arg" : "cookie", t->name, t->pattern, t->holds);
        cond_done(&c);
}
END_TEST

/* Header names match whatever the case of their letters, and only then: '@' is not '`', '[' is
 * not '{', a byte above 0x7f is itself (in the eight-byte steps and in the rest). */
START_TEST(test_header_name_case) {
        static const struct {
                const char *field;
                bool match;
        } names[] = {
                { "X[Yz@Abcdefgh-Q", true },  { "x[yz@abcdefgh-q", true },  { "X[YZ@ABCDEFGH-Q", true },
                { "X{Yz@Abcdefgh-Q", false }, { "X[Yz`Abcdefgh-Q", false }, { "X[Yz@Abcdefgh-q\xc1", false },
                { "X[Yz@Abcdefgh_Q", false }, { "X[Yz@Abc\xe4" "efgh-Q", false }, { "X[Yz@Abcdefgh-", false },
                { "X[Yz@Abcdefgh-R", false }, { "Y[Yz@Abcdefgh-Q", false },
        };
        Condition c = field_cond(COND_HEADER, "x[yz@abcdefgh-q", "*");
        MatchRequest r = request();
        HttpHeader h[1];

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                h[0] = hdr(names[i].field, "v");
                r.headers = h;
                r.n_headers = 1;
                ck_assert_msg(match_condition(&c, &r) == names[i].match, "\"%s\"", names[i].field);
        }
        cond_done(&c);
}
END_TEST

START_TEST(test_no_args) {
        MatchRequest r = request();
        Condition c = field_cond(COND_ARG, "x", "*"), d = field_cond(COND_ARG, "x", "!*");

        r.args = NULL;
        r.args_len = 0;
        ck_assert_int_eq(match_condition(&c, &r), 0);
        ck_assert_int_eq(match_condition(&d, &r), 1);
        cond_done(&c);
        cond_done(&d);
}
END_TEST

START_TEST(test_method_scheme_port) {
        MatchRequest r = request();
        char *get_head[] = { "GET", "HEAD" }, *post[] = { "POST" }, *http[] = { "http" }, *https[] = { "https" };
        unsigned ports[] = { 80, 8080 }, other[] = { 443 };
        Condition m = { .kind = COND_METHOD, .tokens = get_head, .n_tokens = 2 };
        Condition p = { .kind = COND_METHOD, .tokens = post, .n_tokens = 1 };
        Condition s = { .kind = COND_SCHEME, .tokens = http, .n_tokens = 1 };
        Condition t = { .kind = COND_SCHEME, .tokens = https, .n_tokens = 1 };
        Condition port = { .kind = COND_SERVER_PORT, .ports = ports, .n_ports = 2 };
        Condition port2 = { .kind = COND_SERVER_PORT, .ports = other, .n_ports = 1 };

        ck_assert_int_eq(match_condition(&m, &r), 0);
        m.negate = true; /* [ "!GET", "!HEAD" ] */
        ck_assert_int_eq(match_condition(&m, &r), 1);
        ck_assert_int_eq(match_condition(&p, &r), 1);
        r.method = "POSTX"; /* whole methods only */
        r.method_len = 5;
        ck_assert_int_eq(match_condition(&p, &r), 0);
        r.method_len = 3; /* "POS" */
        ck_assert_int_eq(match_condition(&p, &r), 0);
        ck_assert_int_eq(match_condition(&s, &r), 1);
        ck_assert_int_eq(match_condition(&t, &r), 0);
        r.https = true;
        ck_assert_int_eq(match_condition(&s, &r), 0);
        ck_assert_int_eq(match_condition(&t, &r), 1);
        ck_assert_int_eq(match_condition(&port, &r), 1);
        ck_assert_int_eq(match_condition(&port2, &r), 0);
        port2.negate = true;
        ck_assert_int_eq(match_condition(&port2, &r), 1);
}
END_TEST

static void net(AccessRule *a, const char *text) {
        char buf[128];

        snprintf(buf, sizeof(buf), "allow %s", text);
        ck_assert_int_eq(parse_access_rule(buf, a), 0);
}

START_TEST(test_client) {
        MatchRequest r = request();
        AccessRule nets[3];
        Condition c = { .kind = COND_CLIENT, .nets = nets, .n_nets = 2 };

        net(&nets[0], "192.168.0.0/16");
        net(&nets[1], "10.0.0.0/8");
        net(&nets[2], "::1");
        ck_assert_int_eq(match_condition(&c, &r), 1);
        inet_pton(AF_INET, "11.0.0.1", &client4.sin_addr);
        ck_assert_int_eq(match_condition(&c, &r), 0);
        c.negate = true;
        ck_assert_int_eq(match_condition(&c, &r), 1);
        c.negate = false;

        /* IPv6, and IPv4 mapped into IPv6 */
        client6 = (struct sockaddr_in6) { .sin6_family = AF_INET6 };
        inet_pton(AF_INET6, "::1", &client6.sin6_addr);
        r.client = (const struct sockaddr *) &client6;
        ck_assert_int_eq(match_condition(&c, &r), 0);
        c.n_nets = 3;
        ck_assert_int_eq(match_condition(&c, &r), 1);
        inet_pton(AF_INET6, "::ffff:10.9.9.9", &client6.sin6_addr);
        ck_assert_int_eq(match_condition(&c, &r), 1);
        inet_pton(AF_INET6, "2001:db8::1", &client6.sin6_addr);
        ck_assert_int_eq(match_condition(&c, &r), 0);

        /* a unix socket client is 127.0.0.1 */
        client_unix = (struct sockaddr_un) { .sun_family = AF_UNIX };
        r.client = (const struct sockaddr *) &client_unix;
        ck_assert_int_eq(match_condition(&c, &r), 0);
        net(&nets[2], "127.0.0.0/8");
        ck_assert_int_eq(match_condition(&c, &r), 1);
}
END_TEST

/* ---- rules: all conditions, the first rule wins ---- */

START_TEST(test_rules_order) {
        MatchRequest r = request();
        char *post[] = { "POST" };
        Condition c0[] = { field_cond(COND_HEADER, "user-agent", "~wget") };
        Condition c1[] = { { .kind = COND_METHOD, .tokens = post, .n_tokens = 1 },
                           field_cond(COND_ARG, "lang", "fr") };
        Condition c2[] = { { .kind = COND_METHOD, .tokens = post, .n_tokens = 1 },
                           field_cond(COND_COOKIE, "session", "^admin") };
        Condition c3[] = { field_cond(COND_HEADER, "host", "*") };
        Rule rules[] = {
                { .conds = c0, .n_conds = 1 },
                { .conds = c1, .n_conds = 2 }, /* method holds, lang does not */
                { .conds = c2, .n_conds = 2 }, /* both hold: this one */
                { .conds = c3, .n_conds = 1 }, /* holds too, but comes later */
        };
        size_t i = 99;

        ck_assert_int_eq(match_rules(rules, 4, &r, &i), 1);
        ck_assert_uint_eq(i, 2);
        ck_assert_int_eq(match_rules(rules, 2, &r, &i), 0);
        ck_assert_int_eq(match_rules(rules, 0, &r, &i), 0);
        r.method = "GET";
        r.method_len = 3;
        ck_assert_int_eq(match_rules(rules, 4, &r, &i), 1);
        ck_assert_uint_eq(i, 3);
        cond_done(&c0[0]);
        cond_done(&c1[1]);
        cond_done(&c2[1]);
        cond_done(&c3[0]);
}
END_TEST

/* A regex that hits PCRE2's match limit is undecided: the caller fails closed. */
START_TEST(test_undecided) {
        static char value[4096];
        MatchRequest r = request();
        Condition c = field_cond(COND_HEADER, "x-long", "~^(a|aa)+$");
        HttpHeader h[1];
        Rule rule = { .conds = &c, .n_conds = 1 };
        size_t i;
        int k;

        memset(value, 'a', sizeof(value) - 2);
        value[sizeof(value) - 2] = 'b';
        h[0] = hdr("X-Long", value);
        r.headers = h;
        r.n_headers = 1;
        k = match_rules(&rule, 1, &r, &i);
        ck_assert_msg(k == -1, "catastrophic backtracking decided: %d", k);
        cond_done(&c);
}
END_TEST

/* ---- rules as the configuration builds them ---- */

static int load(const char *text, Config **c, ConfigDiags *d) {
        char path[] = "/tmp/proxyd-test-match-XXXXXX";
        int fd = mkstemp(path), r;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        r = config_load(path, c, d);
        unlink(path);
        return r;
}

static const HeaderSetting *find_header(const HeaderSetting *a, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (strcasecmp(a[i].name, name) == 0)
                        return &a[i];
        return NULL;
}

START_TEST(test_rules_config) {
        static const char text[] =
                "defaults = { add_header = { X-D = \"d\"; }; };\n"
                "servers = ( { name = \"m\"; listen = [ \"127.0.0.1:18097\" ];\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\"; read_timeout = \"7s\";\n"
                "    set_header = { X-Forwarded-For = \"$remote_addr\"; X-P = \"p\"; };\n"
                "    rules = (\n"
                "      { header = { User-Agent = \"~bot\"; }; method = \"!GET\"; return = 405; },\n"
                "      { cookie = { beta = \"1\"; }; read_timeout = \"9s\"; set_header = { X-R = \"r\"; }; }\n"
                "    ); } ); } );\n";
        Config *c = NULL;
        ConfigDiags d = {};
        const Location *loc;
        const Rule *r0, *r1;

        ck_assert_int_eq(load(text, &c, &d), 0);
        loc = c->servers[0]->locations[0];
        ck_assert_uint_eq(loc->n_rules, 2);
        r0 = &loc->rules[0];
        r1 = &loc->rules[1];
        ck_assert_int_eq(r0->line, 6);
        /* tested cheapest first: the method before the header, whatever the order written */
        ck_assert_uint_eq(r0->n_conds, 2);
        ck_assert_int_eq(r0->conds[0].kind, COND_METHOD);
        ck_assert(r0->conds[0].negate);
        ck_assert_int_eq(r0->conds[1].kind, COND_HEADER);
        ck_assert_str_eq(r0->conds[1].name, "user-agent");
        /* a return of its own; the other rule keeps the location's proxy_pass */
        ck_assert_int_eq(r0->loc->return_status, 405);
        ck_assert_ptr_null(r0->loc->proxy);
        ck_assert_ptr_eq(r1->loc->proxy, loc->proxy);
        ck_assert(r1->loc->proxy_borrowed);
        ck_assert_int_eq(r1->loc->match, MATCH_PREFIX);
        ck_assert_str_eq(r1->loc->pattern, "/");
        /* settings: the location's, with the rule's on top; headers merged by name */
        ck_assert_uint_eq(r0->loc->s.read_timeout, 7 * 1000000ULL);
        ck_assert_uint_eq(r1->loc->s.read_timeout, 9 * 1000000ULL);
        ck_assert_ptr_nonnull(find_header(r1->loc->s.set_header, r1->loc->s.n_set_header, "X-R"));
        ck_assert_ptr_nonnull(find_header(r1->loc->s.set_header, r1->loc->s.n_set_header, "X-P"));
        ck_assert_ptr_null(find_header(loc->s.set_header, loc->s.n_set_header, "X-R"));
        ck_assert_ptr_nonnull(find_header(r0->loc->s.add_header, r0->loc->s.n_add_header, "X-D"));

        /* and evaluated */
        HttpHeader h[] = { hdr("User-Agent", "somebot"), hdr("Cookie", "beta=1") };
        MatchRequest mr = request();
        size_t i = 9;
        mr.headers = h;
        mr.n_headers = 2;
        ck_assert_int_eq(match_rules(loc->rules, loc->n_rules, &mr, &i), 1);
        ck_assert_uint_eq(i, 0);
        mr.method = "GET";
        mr.method_len = 3;
        ck_assert_int_eq(match_rules(loc->rules, loc->n_rules, &mr, &i), 1);
        ck_assert_uint_eq(i, 1);
        mr.n_headers = 1;
        ck_assert_int_eq(match_rules(loc->rules, loc->n_rules, &mr, &i), 0);
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

/* The first location of the first server of a configuration that loads. */
static const Location *first_location(const char *text, Config **c, ConfigDiags *d) {
        ck_assert_int_eq(load(text, c, d), 0);
        return (*c)->servers[0]->locations[0];
}

/* A method rule is decided by the method's id where proxyd knows the method by name, and by its
 * tokens otherwise: both ways give the same answer. */
START_TEST(test_rules_method_ids) {
        static const char text[] =
                "servers = ( { name = \"m\"; listen = [ \"127.0.0.1:18097\" ];\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\";\n"
                "    rules = (\n"
                "      { method = [ \"DELETE\", \"PURGE\" ]; return = 405; },\n"
                "      { method = \"!GET\"; return = 403; }\n"
                "    ); } ); } );\n";
        static const struct {
                const char *method;
                int found;
                size_t index;
        } cases[] = {
                { "GET", 0, 0 }, { "DELETE", 1, 0 }, { "PURGE", 1, 0 }, { "POST", 1, 1 },
                { "get", 1, 1 }, { "DELETEX", 1, 1 }, { "HEAD", 1, 1 },
        };
        Config *c = NULL;
        ConfigDiags d = {};
        const Location *loc = first_location(text, &c, &d);

        ck_assert_uint_eq(loc->n_rules, 2);
        /* DELETE listed: not skipped; GET, POST...: skipped; an unknown method is never skipped */
        ck_assert_uint_eq((loc->rules[0].skip_methods >> HTTP_METHOD_DELETE) & 1, 0);
        ck_assert_uint_eq((loc->rules[0].skip_methods >> HTTP_METHOD_GET) & 1, 1);
        ck_assert_uint_eq((loc->rules[0].skip_methods >> HTTP_METHOD_PATCH) & 1, 1);
        ck_assert_uint_eq(loc->rules[0].skip_methods & 1u << HTTP_METHOD_OTHER, 0);
        /* "!GET": only GET is ruled out */
        ck_assert_uint_eq(loc->rules[1].skip_methods, 1u << HTTP_METHOD_GET);
        for (size_t k = 0; k < ELEMENTSOF(cases); k++)
                for (int by_id = 0; by_id < 2; by_id++) {
                        MatchRequest mr = request();
                        size_t i = 99;
                        mr.method = cases[k].method;
                        mr.method_len = strlen(cases[k].method);
                        mr.method_id = by_id ? http1_method_id(mr.method, mr.method_len) : HTTP_METHOD_OTHER;
                        ck_assert_msg(match_rules(loc->rules, loc->n_rules, &mr, &i) == cases[k].found,
                                      "%s (by id: %d)", cases[k].method, by_id);
                        if (cases[k].found)
                                ck_assert_msg(i == cases[k].index, "%s (by id: %d): rule %zu", cases[k].method, by_id, i);
                }
        config_unref(c);
        config_diags_clear(&d);
}
END_TEST

/* A rule's location has its limits linked as the location's are: the ones it inherits and the
 * ones it sets (a request the rule applied to ran them). */
START_TEST(test_rules_limits) {
        static const char text[] =
                "limits = { a = { rate = \"10r/s\"; }; b = { conn = 2; }; };\n"
                "servers = ( { name = \"m\"; listen = [ \"127.0.0.1:18097\" ];\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\"; limit = [ \"a\" ];\n"
                "    rules = ( { method = \"POST\"; read_timeout = \"9s\"; },\n"
                "              { method = \"PUT\"; limit = [ \"b\", \"a\" ]; } ); } ); } );\n";
        static const char unknown[] =
                "limits = { a = { rate = \"10r/s\"; }; };\n"
                "servers = ( { name = \"m\"; listen = [ \"127.0.0.1:18097\" ];\n"
                "  locations = ( { prefix = \"/\"; proxy_pass = \"http://127.0.0.1:9\";\n"
                "    rules = ( { method = \"PUT\"; limit = [ \"nope\" ]; } ); } ); } );\n";
        Config *c = NULL;
        ConfigDiags d = {};
        const Location *loc = first_location(text, &c, &d);

        ck_assert_uint_eq(loc->n_rules, 2);
        ck_assert_uint_eq(loc->rules[0].loc->s.n_limit, 1);
        ck_assert_ptr_nonnull(loc->rules[0].loc->s.limit_zones);
        ck_assert_ptr_eq(loc->rules[0].loc->s.limit_zones[0], loc->s.limit_zones[0]);
        ck_assert_str_eq(loc->rules[0].loc->s.limit_zones[0]->name, "a");
        ck_assert_uint_eq(loc->rules[1].loc->s.n_limit, 2);
        ck_assert_ptr_nonnull(loc->rules[1].loc->s.limit_zones);
        ck_assert_str_eq(loc->rules[1].loc->s.limit_zones[0]->name, "b");
        ck_assert_str_eq(loc->rules[1].loc->s.limit_zones[1]->name, "a");
        config_unref(c);
        config_diags_clear(&d);

        c = NULL;
        ck_assert_int_eq(load(unknown, &c, &d), -EINVAL);
        ck_assert_uint_ge(d.n_errors, 1);
        config_diags_clear(&d);
}
END_TEST

/* Every bad rule of a location is reported, not only the first. */
START_TEST(test_rules_all_reported) {
        static const char text[] =
                "servers = ( { name = \"m\"; listen = [ \"127.0.0.1:18097\" ];\n"
                "  locations = ( { prefix = \"/\"; return = 200; rules = (\n"
                "    { return = 403; },\n"
                "    { method = [ \"GET\", \"!PUT\" ]; return = 403; },\n"
                "    { server_port = 1; return = 403; }\n"
                "  ); } ); } );\n";
        Config *c = NULL;
        ConfigDiags d = {};

        ck_assert_int_eq(load(text, &c, &d), -EINVAL);
        ck_assert_uint_eq(d.n_errors, 3);
        ck_assert_int_eq(d.items[0].line, 3);
        ck_assert_int_eq(d.items[1].line, 4);
        ck_assert_int_eq(d.items[2].line, 5);
        config_diags_clear(&d);
}
END_TEST

static Suite *match_suite(void) {
        Suite *s = suite_create("match");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_pattern, 0, ELEMENTSOF(pattern_cases));
        tcase_add_loop_test(tc, test_pattern_errors, 0, 3);
        tcase_add_test(tc, test_regex_as_text);
        tcase_add_loop_test(tc, test_field_conditions, 0, ELEMENTSOF(field_cases));
        tcase_add_test(tc, test_header_name_case);
        tcase_add_test(tc, test_no_args);
        tcase_add_test(tc, test_method_scheme_port);
        tcase_add_test(tc, test_client);
        tcase_add_test(tc, test_rules_order);
        tcase_add_test(tc, test_undecided);
        tcase_add_test(tc, test_rules_config);
        tcase_add_test(tc, test_rules_method_ids);
        tcase_add_test(tc, test_rules_limits);
        tcase_add_test(tc, test_rules_all_reported);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(match_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
