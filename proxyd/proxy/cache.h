/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The cache in the request path (docs/architecture.md, "The response cache"): a third
 * response source (source_cache) beside source_local and source_upstream, and the hooks the
 * exchange calls where a cache has a say. A hit is served from the store through the session
 * ops; a miss runs the upstream source, and what it gives the session is teed into a new
 * object (cache_tee, called where the upstream source hands body bytes to the session), which
 * is stored when the response ended complete; a revalidation's 304 is merged into the stored
 * head and the stored body is served; a failing origin can be answered with a stale copy.
 *
 * Why a tee in the upstream source rather than wrapped session ops: the session ops belong
 * to the session (an HTTP/2 connection shares one table and one Session among its streams,
 * and conn_of() casts Exchange.s back to the connection), so wrapping them would need a
 * shadow Session per exchange with every op forwarded; the tee is one call at the one place
 * where body bytes are taken by the session, with the count it took.
 */

#include "exchange.h"

/* Routing chose a location that proxies (ri: the request's variables, headers valid during
 * the call): purge, answer from the cache, or prepare to store. 1: the exchange was answered
 * (a hit, a purge, 504 for only-if-cached); 0: go to the upstream; <0: fatal. */
int cache_request(Exchange *ex, const RequestInfo *ri);
/* The upstream request head was written: add the validators of a revalidation. */
int cache_request_head(Exchange *ex, Buf *head);
/* The request is about to go upstream: true when another request for the same object is
 * being fetched (request collapsing); the exchange then waits in the cache source, and
 * is served the object once it is stored, or goes upstream after all. */
bool cache_wait(Exchange *ex);
/* The final upstream response head: 1 when the cache takes the response over (a 304 merged,
 * a stale copy for a 5xx; the caller sends nothing and ends the upstream response), else 0
 * with *r the head to send (Cache-Status added). <0: fatal. */
int cache_response(Exchange *ex, const HttpResponse **r);
/* After an upstream step: a response the cache took over starts being served. */
int cache_after_upstream_step(Exchange *ex);
/* Body bytes the session took from the upstream source. */
void cache_tee(Exchange *ex, const char *p, size_t n);
/* The upstream failed with status (502, 504) before any response head: 1 when a stale copy
 * is served instead. */
bool cache_upstream_failed(Exchange *ex, int status);
/* The exchange ends: store what was filled, invalidate what an unsafe method changed, count. */
void cache_exchange_end(Exchange *ex);
void cache_exchange_free(Exchange *ex);
/* The word for the access entry, or NULL. */
const char *cache_exchange_word(const Exchange *ex);

/* Take every variant of one URL (a cache key) / of every key starting with prefix out of
 * the cache, now; returns how many objects. For the admin interface and PURGE. */
size_t cache_purge(const char *url);
size_t cache_purge_prefix(const char *prefix);
