/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <stdio.h>

#include "util.h"
#include "vars.h"

START_TEST(test_compile_simple) {
        VarTemplate *t = NULL;
        const char *err = NULL;

        ck_assert_int_eq(var_template_compile("for=$remote_addr;proto=${scheme}x", &t, &err), 0);
        ck_assert_uint_eq(t->n_segs, 5);
        ck_assert_int_eq(t->segs[0].id, VAR_LITERAL);
        ck_assert_str_eq(t->segs[0].text, "for=");
        ck_assert_int_eq(t->segs[1].id, VAR_REMOTE_ADDR);
        ck_assert_str_eq(t->segs[2].text, ";proto=");
        ck_assert_int_eq(t->segs[3].id, VAR_SCHEME);
        ck_assert_str_eq(t->segs[4].text, "x");
        ck_assert_uint_eq(t->segs[4].len, 1);
        ck_assert_str_eq(t->source, "for=$remote_addr;proto=${scheme}x");
        ck_assert(!var_template_is_literal(t));
        t = var_template_free(t);
        ck_assert_ptr_null(t);
        ck_assert_ptr_null(var_template_free(NULL));
}
END_TEST

static const struct {
        const char *name;
        VarId id;
} all_vars[] = {
        { "host", VAR_HOST },
        { "remote_addr", VAR_REMOTE_ADDR },
        { "remote_port", VAR_REMOTE_PORT },
        { "scheme", VAR_SCHEME },
        { "request_uri", VAR_REQUEST_URI },
        { "uri", VAR_URI },
        { "args", VAR_ARGS },
        { "server_name", VAR_SERVER_NAME },
        { "server_port", VAR_SERVER_PORT },
        { "proxy_host", VAR_PROXY_HOST },
        { "proxy_add_x_forwarded_for", VAR_PROXY_ADD_X_FORWARDED_FOR },
        { "request_id", VAR_REQUEST_ID },
        { "request_method", VAR_REQUEST_METHOD },
};

START_TEST(test_all_vars) {
        char s[64], b[64];
        VarTemplate *t = NULL;

        snprintf(s, sizeof(s), "$%s", all_vars[_i].name);
        snprintf(b, sizeof(b), "${%s}", all_vars[_i].name);
        ck_assert_int_eq(var_template_compile(s, &t, NULL), 0);
        ck_assert_uint_eq(t->n_segs, 1);
        ck_assert_int_eq(t->segs[0].id, all_vars[_i].id);
        ck_assert_str_eq(var_name(all_vars[_i].id), all_vars[_i].name);
        t = var_template_free(t);
        ck_assert_int_eq(var_template_compile(b, &t, NULL), 0);
        ck_assert_uint_eq(t->n_segs, 1);
        ck_assert_int_eq(t->segs[0].id, all_vars[_i].id);
        t = var_template_free(t);
}
END_TEST

START_TEST(test_longest_name) {
        /* "$hostname" is not "$host" followed by "name" */
        VarTemplate *t = NULL;
        const char *err = NULL;

        ck_assert_int_eq(var_template_compile("$hostname", &t, &err), -EINVAL);
        ck_assert_str_eq(err, "unknown variable");
        ck_assert_int_eq(var_template_compile("${host}name", &t, &err), 0);
        ck_assert_uint_eq(t->n_segs, 2);
        ck_assert_int_eq(t->segs[0].id, VAR_HOST);
        ck_assert_str_eq(t->segs[1].text, "name");
        var_template_free(t);
        /* a non-name character ends the name */
        ck_assert_int_eq(var_template_compile("$host:$server_port", &t, &err), 0);
        ck_assert_uint_eq(t->n_segs, 3);
        ck_assert_int_eq(t->segs[2].id, VAR_SERVER_PORT);
        var_template_free(t);
}
END_TEST

START_TEST(test_http_vars) {
        VarTemplate *t = NULL;

        ck_assert_int_eq(var_template_compile("$http_X_Forwarded_Host", &t, NULL), 0);
        ck_assert_uint_eq(t->n_segs, 1);
        ck_assert_int_eq(t->segs[0].id, VAR_HTTP);
        ck_assert_str_eq(t->segs[0].text, "x_forwarded_host");
        ck_assert(var_http_name_matches(&t->segs[0], "X-Forwarded-Host", 16));
        ck_assert(var_http_name_matches(&t->segs[0], "x_forwarded_host", 16));
        ck_assert(!var_http_name_matches(&t->segs[0], "X-Forwarded-Hos", 15));
        ck_assert(!var_http_name_matches(&t->segs[0], "X-Forwarded-Hosx", 16));
        var_template_free(t);
        ck_assert_int_eq(var_template_compile("$http_", &t, NULL), -EINVAL);
}
END_TEST

static const char *const bad[] = {
        "$foo", "${foo}", "x$", "$", "$-x", "${host", "${}", "${ho st}", "$ host", "a$$$", "${http_}",
};

START_TEST(test_errors) {
        VarTemplate *t = (VarTemplate *) 0x1;
        const char *err = NULL;

        ck_assert_int_eq(var_template_compile(bad[_i], &t, &err), -EINVAL);
        ck_assert_ptr_nonnull(err);
        ck_assert_ptr_eq(t, (VarTemplate *) 0x1); /* untouched */
}
END_TEST

START_TEST(test_literal) {
        VarTemplate *t = NULL;

        ck_assert_int_eq(var_template_compile("plain text", &t, NULL), 0);
        ck_assert(var_template_is_literal(t));
        ck_assert_uint_eq(t->n_segs, 1);
        ck_assert_str_eq(t->segs[0].text, "plain text");
        var_template_free(t);
        ck_assert_int_eq(var_template_compile("", &t, NULL), 0);
        ck_assert(var_template_is_literal(t));
        ck_assert_uint_eq(t->n_segs, 0);
        var_template_free(t);
}
END_TEST

START_TEST(test_dollar_escape) {
        VarTemplate *t = NULL;

        ck_assert_int_eq(var_template_compile("costs $$5, $$$host", &t, NULL), 0);
        ck_assert_uint_eq(t->n_segs, 2);
        ck_assert_str_eq(t->segs[0].text, "costs $5, $");
        ck_assert_int_eq(t->segs[1].id, VAR_HOST);
        var_template_free(t);
}
END_TEST

START_TEST(test_too_long) {
        char *s = malloc(9000);
        VarTemplate *t = NULL;

        ck_assert_ptr_nonnull(s);
        memset(s, 'a', 8999);
        s[8999] = 0;
        ck_assert_int_eq(var_template_compile(s, &t, NULL), -EINVAL);
        free(s);
}
END_TEST

static Suite *vars_suite(void) {
        Suite *s = suite_create("vars");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_compile_simple);
        tcase_add_loop_test(tc, test_all_vars, 0, ELEMENTSOF(all_vars));
        tcase_add_test(tc, test_longest_name);
        tcase_add_test(tc, test_http_vars);
        tcase_add_loop_test(tc, test_errors, 0, ELEMENTSOF(bad));
        tcase_add_test(tc, test_literal);
        tcase_add_test(tc, test_too_long);
        tcase_add_test(tc, test_dollar_escape);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(vars_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
