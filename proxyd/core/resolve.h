/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Asynchronous re-resolution of upstream server names (`resolve = "30s"`) with c-ares in the
 * manager's event loop. Each name is queried again after min(resolve interval, answer TTL),
 * at most once a second, through the configured `resolver` servers (DNS only) or, without
 * them, as /etc/resolv.conf and /etc/hosts say. A changed answer replaces that server's peers
 * in the group: peers whose address stays keep their state, new requests go to the new
 * addresses, and addresses that disappear drain (requests in flight finish; idle pooled
 * connections to them expire). A failed query keeps the current addresses. Does not log:
 * changes and errors go to the callback.
 */

#include <systemd/sd-event.h>

#include "config.h"
#include "upstream.h"

typedef struct Resolver Resolver;

/* addresses: "A, B" after a change (NULL on error); error: NULL, or why the query failed
 * (reported when the outcome changes, not on every retry). */
typedef void (*ResolveChanged)(const Upstream *u, const UpstreamServer *s, const char *addresses,
                               const char *error, void *userdata);

/* Takes a reference on c (its runtimes must be set up). Queries start at once. cb may be NULL. */
int resolver_new(sd_event *e, Config *c, ResolveChanged cb, void *userdata, Resolver **ret);
Resolver *resolver_free(Resolver *r);
