/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Cache-Control (RFC 9111 section 5.2) and HTTP-date (RFC 9110 section 5.6.7), parsed.
 * Pure. Directive names are case-insensitive; unknown extensions are ignored; a directive
 * given several times or with an invalid value is recorded so that the policy can choose the
 * conservative reading (RFC 9111 4.2.1: "consider the response to be stale").
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "http1.h"

enum {
        CC_NO_STORE = 1u << 0,
        CC_NO_CACHE = 1u << 1, /* unqualified, or no-cache="fields" (treated as unqualified) */
        CC_PRIVATE = 1u << 2,  /* unqualified, or private="fields" (treated as unqualified) */
        CC_PUBLIC = 1u << 3,
        CC_MUST_REVALIDATE = 1u << 4,
        CC_PROXY_REVALIDATE = 1u << 5,
        CC_ONLY_IF_CACHED = 1u << 6,
        CC_NO_TRANSFORM = 1u << 7,
        CC_MUST_UNDERSTAND = 1u << 8,
        CC_IMMUTABLE = 1u << 9,
        CC_INVALID = 1u << 10, /* a delta-seconds directive was repeated or had a bad value */
};

#define CC_UNSET INT64_C(-1)
#define CC_DELTA_MAX INT64_C(2147483648) /* RFC 9111 1.2.2: larger values are this */

typedef struct CacheControl {
        unsigned flags;
        /* delta-seconds; CC_UNSET when absent */
        int64_t max_age;
        int64_t s_maxage;
        int64_t max_stale; /* request; "max-stale" without a value: CC_DELTA_MAX */
        int64_t min_fresh; /* request */
        int64_t stale_while_revalidate; /* RFC 5861 */
        int64_t stale_if_error;         /* RFC 5861, request or response */
} CacheControl;

void cache_control_init(CacheControl *cc);
/* Add the directives of one Cache-Control field value. Never fails: what cannot be read is
 * skipped (a list element up to the next comma). */
void cache_control_parse(CacheControl *cc, const char *v, size_t n);
/* All Cache-Control fields of a head, in order. */
void cache_control_from_headers(CacheControl *cc, const HttpHeader *h, size_t n);

/* IMF-fixdate, RFC 850 and asctime forms; 0 on success, -EINVAL otherwise. */
int http_date_parse(const char *s, size_t n, time_t *ret);
/* IMF-fixdate into buf (at least 30 bytes); returns buf. */
const char *http_date_format(time_t t, char *buf, size_t size);

/* Whether a comma-separated field value lists token (case-insensitive), e.g. Vary or
 * Connection. "*" matches only "*". */
bool http_list_has(const char *v, size_t n, const char *token);

/* cache_valid entries: "CODE [CODE...] DURATION" or "any DURATION". 0 with the parts, or
 * -EINVAL. */
int cache_valid_parse(const char *s, int *codes, size_t max_codes, size_t *ret_n, bool *ret_any,
                      uint64_t *ret_usec);
