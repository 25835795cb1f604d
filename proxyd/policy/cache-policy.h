/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What a shared cache may do with a response (RFC 9111, RFC 5861): store it, how long it is
 * fresh, how old it is, whether a request may be answered with it, which variant it is.
 * Pure: times are seconds (time_t), and every input is passed in. Where the RFC leaves the
 * choice to the cache, the comments say what proxyd chose.
 */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "cache-control.h"
#include "http1.h"

/* What the policy reads from a response head. */
typedef struct CacheResponseInfo {
        int status;
        CacheControl cc;
        bool has_date, has_expires, expires_valid, has_last_modified, has_etag;
        time_t date, expires, last_modified;
        int64_t age;      /* the Age field, 0 when absent or invalid */
        bool vary_star;   /* Vary: * */
        bool set_cookie;  /* a Set-Cookie field */
} CacheResponseInfo;

void cache_response_info(CacheResponseInfo *ri, int status, const HttpHeader *h, size_t n);

/* Statuses RFC 9110 15.1 defines as heuristically cacheable. */
bool cache_status_heuristic(int status);

/* Why a response to method (with request directives req_cc and an Authorization field when
 * authorization) may not be stored, or NULL when it may. fallback: the location gives a
 * validity time for this status (cache_valid), which counts as explicit freshness. */
const char *cache_not_storable(HttpMethod method, const CacheControl *req_cc, bool authorization,
                               const CacheResponseInfo *r, bool fallback, bool heuristic);

/* Freshness lifetime in seconds (RFC 9111 4.2.1): s-maxage, max-age, Expires - Date (Date
 * missing: response_time), then the location's fallback for the status (>= 0, or -1 when
 * none), then heuristic_pct % of Date - Last-Modified for heuristically cacheable statuses
 * (0: no heuristic); else 0. */
int64_t cache_freshness_lifetime(const CacheResponseInfo *r, time_t response_time, int64_t fallback,
                                 unsigned heuristic_pct);

/* corrected_initial_age of RFC 9111 4.2.3; current_age = it + (now - response_time). */
int64_t cache_initial_age(const CacheResponseInfo *r, time_t request_time, time_t response_time);

/* What a stored response's directives allow. */
typedef struct CacheEntryTimes {
        int64_t lifetime;    /* freshness lifetime */
        int64_t initial_age; /* corrected initial age */
        time_t response_time;
        unsigned flags;      /* CC_* of the stored response */
        bool s_maxage;       /* the response had s-maxage (implies proxy-revalidate) */
        int64_t swr, sie;    /* stale-while-revalidate, stale-if-error of the response (-1: none) */
} CacheEntryTimes;

typedef enum CacheVerdict {
        CACHE_USE,         /* fresh (or stale within the request's max-stale): serve it */
        CACHE_USE_REFRESH, /* stale within stale-while-revalidate: serve it, refresh it */
        CACHE_VALIDATE,    /* ask the origin (conditionally when there is a validator) */
} CacheVerdict;

int64_t cache_current_age(const CacheEntryTimes *t, time_t now);
/* May a stored response answer a request with directives req (RFC 9111 4.2, 4.2.4, 5.2.1)? */
CacheVerdict cache_verdict(const CacheEntryTimes *t, const CacheControl *req, time_t now);
/* The origin failed (error, timeout or 5xx): may the stale response be served instead?
 * configured: the location's cache_use_stale allows it for this failure. */
bool cache_stale_on_error(const CacheEntryTimes *t, const CacheControl *req, time_t now, bool configured);

/* RFC 9111 3.5: a response to a request with Authorization may be stored (and used for
 * other requests) only with must-revalidate, public or s-maxage. */
bool cache_shareable_with_authorization(unsigned flags, bool s_maxage);

/* Vary: the response's field names, lower case, sorted, without duplicates, joined with ','
 * into out. 0, -EINVAL for "*" (never matches), -ENOMEM. */
int cache_vary_names(const HttpHeader *h, size_t n, Buf *out);
/* The request's values for those names ("name:value\n" each, several fields of a name joined
 * with ',', whitespace around commas dropped): two requests select the same variant exactly
 * when their strings are equal. */
int cache_vary_values(const char *names, const HttpHeader *req, size_t n, Buf *out);

/* The first entry that names status (or "any"), in seconds; -1 when none does. */
int64_t cache_valid_lookup(char *const *entries, size_t n, int status);

/* The Cache-Status field value (RFC 9211) for this cache. */
typedef enum CacheFwd {
        CACHE_FWD_NONE,     /* a hit */
        CACHE_FWD_BYPASS,   /* the configuration said not to use the cache */
        CACHE_FWD_METHOD,   /* the method is not cacheable */
        CACHE_FWD_URI_MISS, /* nothing stored for the key */
        CACHE_FWD_VARY_MISS,
        CACHE_FWD_MISS,     /* stored, but not usable (e.g. Authorization) */
        CACHE_FWD_REQUEST,  /* the request's directives asked to go forward */
        CACHE_FWD_STALE,    /* stored and stale: revalidated or refetched */
} CacheFwd;

typedef struct CacheStatusInfo {
        CacheFwd fwd;
        int fwd_status;  /* the origin's status, 0: none */
        bool has_ttl;
        int64_t ttl;     /* freshness left (negative: stale), for hits and stores */
        bool stored;
        bool collapsed;
        const char *detail; /* e.g. "stale-if-error", or NULL */
} CacheStatusInfo;

/* "proxyd; hit; ttl=30" into buf; returns buf. */
const char *cache_status_format(const CacheStatusInfo *i, char *buf, size_t size);
/* v in decimal into buf (terminated, cut to size); returns its length. */
size_t cache_format_uint(char *buf, size_t size, uint64_t v);


