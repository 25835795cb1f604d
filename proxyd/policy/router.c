/* SPDX-License-Identifier: MIT */

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include "router.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Reduce a Host value to the bare name: "[v6]:port" -> "[v6]", "name:port" -> "name",
 * one trailing dot dropped. */
static size_t host_bare_len(const char *host, size_t len) {
        if (len > 0 && host[0] == '[') {
                const char *close = memchr(host, ']', len);
                if (close)
                        len = (size_t)(close - host) + 1;
        } else {
                const char *colon = memchr(host, ':', len);
                if (colon)
                        len = (size_t)(colon - host);
        }
        if (len > 0 && host[len - 1] == '.')
                len--;
        return len;
}

static bool host_eq(const char *host, size_t len, const char *name, size_t name_len) {
        return len == name_len && strncasecmp(host, name, len) == 0;
}

/* How well a server name matches: 0 no match, otherwise a rank where an exact name beats
 * every wildcard, a longer "*.suffix" (or ".suffix") beats a shorter one, and leading
 * wildcards beat trailing ones ("mail.*"). */
enum {
        RANK_NONE = 0,
        RANK_TAIL = 1,             /* + length of the fixed part */
        RANK_HEAD = 1 + (1 << 20), /* + length of the suffix */
        RANK_EXACT = 1 + (2 << 20),
};

static unsigned name_rank(const char *host, size_t len, const char *name) {
        size_t name_len = strlen(name);

        if (name_len > 1 << 19)
                return RANK_NONE;

        if (name_len >= 2 && name[0] == '*' && name[1] == '.') {
                /* "*.example.com": any name ending in ".example.com" (nginx lets the
                 * label before it be empty, so ".example.com" itself matches too). */
                const char *suffix = name + 1;
                size_t slen = name_len - 1;

                if (len >= slen && host_eq(host + len - slen, slen, suffix, slen))
                        return RANK_HEAD + (unsigned)slen;
                return RANK_NONE;
        }

        if (name_len >= 2 && name[0] == '.') {
                /* ".example.com": "example.com" itself (as an exact name) and every
                 * name below it (as "*.example.com"). */
                if (host_eq(host, len, name + 1, name_len - 1))
                        return RANK_EXACT;
                if (len >= name_len && host_eq(host + len - name_len, name_len, name, name_len))
                        return RANK_HEAD + (unsigned)name_len;
                return RANK_NONE;
        }

        if (name_len >= 2 && name[name_len - 1] == '*' && name[name_len - 2] == '.') {
                /* "mail.*": at least one label after "mail.". */
                size_t plen = name_len - 1;

                if (len > plen && host_eq(host, plen, name, plen))
                        return RANK_TAIL + (unsigned)plen;
                return RANK_NONE;
        }

        if (host_eq(host, len, name, name_len))
                return RANK_EXACT;
        return RANK_NONE;
}

Server *router_select_server(Server *const *servers, size_t n, const char *host, size_t host_len) {
        Server *best = NULL;
        unsigned best_rank = RANK_NONE;

        if (!servers || n == 0)
                return NULL;
        if (!host || host_len == 0)
                return servers[0];

        host_len = host_bare_len(host, host_len);
        if (host_len == 0)
                return servers[0];

        for (size_t i = 0; i < n; i++) {
                const Server *s = servers[i];

                if (!s)
                        continue;
                for (size_t j = 0; j < s->n_server_names; j++) {
                        unsigned rank;

                        if (!s->server_names[j])
                                continue;
                        rank = name_rank(host, host_len, s->server_names[j]);
                        /* Strictly better only: on a tie the earlier server keeps it. */
                        if (rank > best_rank) {
                                best_rank = rank;
                                best = servers[i];
                        }
                }
        }

        return best ?: servers[0];
}

/* 1: match, 0: no match, -1: the match could not be decided (no memory, match or depth
 * limit, invalid UTF in a UTF pattern). */
static int regex_matches(const Location *l, const char *path, size_t path_len) {
        pcre2_match_data *md;
        int rc;

        if (!l->re)
                return 0;

        md = pcre2_match_data_create_from_pattern(l->re, NULL);
        if (!md)
                return -1;
        rc = pcre2_match(l->re, (PCRE2_SPTR)path, path_len, 0, 0, md, NULL);
        pcre2_match_data_free(md);

        if (rc >= 0)
                return 1;
        return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

/*
 * A normalized path that backends commonly read as another path than proxyd does, in a
 * way that can climb out of the location proxyd chose:
 *  - a segment ".;..." or "..;...": servers that strip path parameters (";...") from each
 *    segment before resolving dot segments read it as "." or "..", so "/api/..;/admin"
 *    is "/admin" to them while proxyd (and nginx) see a segment named "..;" below "/api/";
 *  - an overlong UTF-8 sequence (C0/C1 xx, E0 80..9F xx, F0 80..8F xx xx): never valid
 *    UTF-8, and lenient decoders turn "%c0%ae" into '.' and "%c0%af" into '/'.
 * nginx forwards both; proxyd refuses to route them (no location: 404).
 */
static bool path_is_ambiguous(const char *path, size_t path_len) {
        const unsigned char *p = (const unsigned char *)path;

        for (size_t i = 0; i < path_len; i++) {
                unsigned char next = i + 1 < path_len ? p[i + 1] : 0;

                if (p[i] == '/' && i + 2 < path_len && p[i + 1] == '.' &&
                    (p[i + 2] == ';' || (p[i + 2] == '.' && i + 3 < path_len && p[i + 3] == ';')))
                        return true;
                if ((p[i] == 0xc0 || p[i] == 0xc1) && next >= 0x80 && next <= 0xbf)
                        return true;
                if (p[i] == 0xe0 && next >= 0x80 && next <= 0x9f)
                        return true;
                if (p[i] == 0xf0 && next >= 0x80 && next <= 0x8f)
                        return true;
        }
        return false;
}

/* Exact match, or the longest prefix (the first of equal ones). */
static Location *find_static(const Server *s, const char *path, size_t path_len, bool *ret_exact) {
        Location *best = NULL;

        *ret_exact = false;
        for (size_t i = 0; i < s->n_locations; i++) {
                Location *l = s->locations[i];

                if (!l || !l->pattern)
                        continue;

                switch (l->match) {
                case MATCH_EXACT:
                        if (l->pattern_len == path_len && memcmp(l->pattern, path, path_len) == 0) {
                                *ret_exact = true;
                                return l;
                        }
                        break;
                case MATCH_PREFIX:
                        if (l->pattern_len <= path_len && memcmp(l->pattern, path, l->pattern_len) == 0 &&
                            (!best || l->pattern_len > best->pattern_len))
                                best = l;
                        break;
                default:
                        break;
                }
        }
        return best;
}

Location *router_select_location(const Server *s, const char *path, size_t path_len, size_t *ret_match_len) {
        Location *best;
        bool exact;

        if (ret_match_len)
                *ret_match_len = 0;
        if (!s || !path)
                return NULL;
        if (path_is_ambiguous(path, path_len))
                return NULL;

        best = find_static(s, path, path_len, &exact);
        if (best && (exact || best->stop_regex)) {
                if (ret_match_len)
                        *ret_match_len = best->pattern_len;
                return best;
        }

        for (size_t i = 0; i < s->n_locations; i++) {
                Location *l = s->locations[i];

                if (!l || (l->match != MATCH_REGEX && l->match != MATCH_IREGEX))
                        continue;
                /* An undecidable match fails closed: a regex location may be the one
                 * that denies, so no later location or the prefix may take the request. */
                switch (regex_matches(l, path, path_len)) {
                case 1:
                        return l;
                case 0:
                        break;
                default:
                        return NULL;
                }
        }

        if (best && ret_match_len)
                *ret_match_len = best->pattern_len;
        return best;
}

/*
 * nginx's automatic redirect: when no location is named exactly like the path and a proxying
 * prefix or exact location is named like the path plus "/", the client is sent a 301 to that
 * location (its pattern, then "?" and the query if there is one). Returns that location,
 * or NULL. Checked before router_select_location(); regex locations never prevent it.
 */
Location *router_auto_redirect(const Server *s, const char *path, size_t path_len);

Location *router_auto_redirect(const Server *s, const char *path, size_t path_len) {
        Location *redirect = NULL;

        if (!s || !path || path_len == 0)
                return NULL;
        if (path_is_ambiguous(path, path_len))
                return NULL;

        for (size_t i = 0; i < s->n_locations; i++) {
                Location *l = s->locations[i];

                if (!l || !l->pattern)
                        continue;
                if (l->match != MATCH_EXACT && l->match != MATCH_PREFIX)
                        continue;

                /* A location named exactly like the path takes the request itself. */
                if (l->pattern_len == path_len && memcmp(l->pattern, path, path_len) == 0)
                        return NULL;

                if (!redirect && l->proxy && l->pattern_len == path_len + 1 && l->pattern[path_len] == '/' &&
                    memcmp(l->pattern, path, path_len) == 0)
                        redirect = l;
        }
        return redirect;
}
