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
 * The hooks are declared in exchange.h (the exchange calls them); this header is what the
 * rest of the daemon may call.
 *
 * Why a tee in the upstream source rather than wrapped session ops: the session ops belong
 * to the session (an HTTP/2 connection shares one table and one Session among its streams,
 * and conn_of() casts Exchange.s back to the connection), so wrapping them would need a
 * shadow Session per exchange with every op forwarded; the tee is one call at the one place
 * where body bytes are taken by the session, with the count it took.
 */

#include <stddef.h>

/* Take every variant of one URL (a cache key) / of every key starting with prefix out of
 * the cache, now; returns how many objects. For the admin interface and PURGE. */
size_t cache_purge(const char *url);
size_t cache_purge_prefix(const char *prefix);
