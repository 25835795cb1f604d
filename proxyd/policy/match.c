/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "match.h"
#include "util.h"

/* One match block per thread (one pair is all a yes/no match needs), freed at thread exit. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_free(void *p) {
        pcre2_match_data_free(p);
}

static void md_init(void) {
        (void) pthread_key_create(&md_key, md_free);
}

static pcre2_match_data *thread_match_data(void) {
        pcre2_match_data *md;

        (void) pthread_once(&md_once, md_init);
        md = pthread_getspecific(md_key);
        if (!md) {
                md = pcre2_match_data_create(1, NULL);
                if (md && pthread_setspecific(md_key, md) != 0) {
                        pcre2_match_data_free(md);
                        md = NULL;
                }
        }
        return md;
}

/* The NUL-terminated tok is s (n bytes). */
static bool token_is(const char *tok, const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (tok[i] != s[i])
                        return false;
        return tok[n] == 0;
}

/* A regex that is plain text: at v (which has room for it), or anywhere in v. */
static bool text_is_at(const Pattern *p, const char *v) {
        return p->caseless ? memcaseeq_lower(v, p->text, p->len) : memcmp(v, p->text, p->len) == 0;
}

/* Caseless: the candidates for the text's first character are found eight bytes at a time
 * (a byte equal to it after ascii_lower8 has its high bit set in m, perhaps with false ones above
 * it, which the comparison rules out), in increasing order. */
static bool text_found_caseless(const Pattern *p, const char *v, size_t len) {
        const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
        const uint64_t first = ones * (uint8_t) p->text[0];
        size_t starts = len - p->len + 1, i = 0; /* positions the text may start at */

        for (; i < starts && i + 8 <= len; i += 8) {
                uint64_t x = ascii_lower8(load_u64(v + i)) ^ first;
                for (uint64_t m = (x - ones) & ~x & high; m; m &= m - 1) {
                        size_t at = i + (size_t) __builtin_ctzll(m) / 8;
                        if (at >= starts)
                                return false;
                        if (memcaseeq_lower(v + at, p->text, p->len))
                                return true;
                }
        }
        for (; i < starts; i++)
                if (ascii_tolower(v[i]) == p->text[0] && memcaseeq_lower(v + i, p->text, p->len))
                        return true;
        return false;
}

static bool text_found(const Pattern *p, const char *v, size_t len) {
        if (len < p->len)
                return false;
        if (p->len == 0)
                return true;
        if (!p->caseless)
                return memmem(v, len, p->text, p->len) != NULL;
        return text_found_caseless(p, v, len);
}

int match_pattern(const Pattern *p, const char *value, size_t len) {
        pcre2_match_data *md;
        int rc;

        switch (p->op) {
        case PATTERN_PRESENT:
                return 1;
        case PATTERN_EXACT:
                return len == p->len && memcmp(value, p->text, len) == 0;
        case PATTERN_PREFIX:
                return len >= p->len && memcmp(value, p->text, p->len) == 0;
        case PATTERN_REGEX_TEXT:
                return text_found(p, value, len);
        case PATTERN_REGEX_START:
                return len >= p->len && text_is_at(p, value);
        case PATTERN_REGEX:
                md = thread_match_data();
                if (!md)
                        return -1;
                rc = pcre2_match(p->re, (PCRE2_SPTR) (len ? value : ""), len, 0, 0, md, NULL);
                if (rc >= 0) /* 0: more groups than the one pair: matched all the same */
                        return 1;
                return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
        }
        return -1;
}

static bool header_name_is(const HttpHeader *h, const char *lower, size_t len) {
        return h->name_len == len && memcaseeq_lower(h->name, lower, len);
}

/* 1 when some pair of s (a query or a Cookie field) named c->name matches. */
static int match_pairs(const Condition *c, const char *s, size_t n, char sep) {
        const char *v;
        size_t len, pos = 0;

        while (http1_next_pair(s, n, sep, c->name, c->name_len, &pos, &v, &len)) {
                int k = match_pattern(&c->pattern, v, len);
                if (k != 0)
                        return k;
        }
        return 0;
}

/* Inlined where the rules are tested: most conditions are decided in a few instructions. */
static inline __attribute__((always_inline)) int match_positive(const Condition *c, const MatchRequest *r) {
        int k, res = 0;

        switch (c->kind) {
        case COND_SCHEME:
                for (size_t i = 0; i < c->n_tokens; i++)
                        if (streq(c->tokens[i], r->https ? "https" : "http"))
                                return 1;
                return 0;
        case COND_SERVER_PORT:
                for (size_t i = 0; i < c->n_ports; i++)
                        if (c->ports[i] == r->server_port)
                                return 1;
                return 0;
        case COND_METHOD:
                for (size_t i = 0; i < c->n_tokens; i++)
                        if (token_is(c->tokens[i], r->method, r->method_len))
                                return 1;
                return 0;
        case COND_CLIENT:
                return access_rule_find(c->nets, c->n_nets, r->client) >= 0;
        case COND_HEADER:
                for (size_t i = 0; i < r->n_headers; i++) {
                        const HttpHeader *h = &r->headers[i];
                        if (!header_name_is(h, c->name, c->name_len))
                                continue;
                        k = match_pattern(&c->pattern, h->value, h->value_len);
                        if (k != 0)
                                return k;
                }
                return 0;
        case COND_ARG:
                return r->args ? match_pairs(c, r->args, r->args_len, '&') : 0;
        case COND_COOKIE:
                for (size_t i = 0; i < r->n_headers && res == 0; i++)
                        if (header_name_is(&r->headers[i], "cookie", 6))
                                res = match_pairs(c, r->headers[i].value, r->headers[i].value_len, ';');
                return res;
        case _COND_MAX:
                break;
        }
        return -1;
}

static inline int condition_holds(const Condition *c, const MatchRequest *r) {
        int k = match_positive(c, r);

        if (k < 0)
                return k;
        return c->negate ? !k : k;
}

int match_condition(const Condition *c, const MatchRequest *r) {
        return condition_holds(c, r);
}

int match_rules(const Rule *rules, size_t n, const MatchRequest *r, size_t *ret_index) {
        for (size_t i = 0; i < n; i++) {
                int k = 1;

                if ((rules[i].skip_methods >> r->method_id) & 1)
                        continue; /* its method condition does not hold */
                for (size_t j = 0; j < rules[i].n_conds && k == 1; j++)
                        k = condition_holds(&rules[i].conds[j], r);
                if (k < 0)
                        return -1;
                if (k == 1) {
                        *ret_index = i;
                        return 1;
                }
        }
        return 0;
}
