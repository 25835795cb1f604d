/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Background refresh (RFC 5861 stale-while-revalidate; cache-refresh.c): a stale object
 * within its stale-while-revalidate window is served at once, and one request per object
 * goes to the upstream meanwhile, run as an exchange whose session is no client: it takes
 * and drops whatever the exchange sends it, while the cache's tee stores the new object.
 */

#include <stdbool.h>

#include "buf.h"
#include "http1.h"

typedef struct Exchange Exchange;
typedef struct Session Session;

/* Refresh what client (during cache_request: its request head is valid) was just served
 * stale, as the fetch claim_id, which the caller claimed (cache_store_fill_claim) and which
 * the refresh now owns: released when it ends, whatever happens. 0, or -errno (then the
 * claim is released too). The exchange starts from the worker's deadline heap right after
 * the current event. */
int cache_refresh_start(const Exchange *client, const char *claim_id);
/* s is a refresh's session. */
bool cache_refresh_session(const Session *s);
/* The refresh's claim, handed to its exchange's cache state (the caller frees it), or NULL. */
char *cache_refresh_take_claim(Session *s);

/* Fields h[0..n) copied into copy, *ret an array of n fields pointing into it (cache.c). */
int cache_copy_fields(const HttpHeader *h, size_t n, Buf *copy, HttpHeader **ret);
