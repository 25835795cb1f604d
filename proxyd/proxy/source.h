/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Response sources: what produces an exchange's response once routing has decided
 * (docs/architecture.md, "The data path"). The exchange holds one source at a time
 * (Exchange.src) and runs it from exchange_step(); a source may hand the exchange to another
 * (a cache miss starts the upstream source; an upstream failure ends in the local source's
 * error page).
 *
 *   source_local     a response proxyd makes itself: `return`, redirects, error pages
 *                    (exchange.c)
 *   source_upstream  an upstream attempt: peer selection, the keep-alive pool, TLS, retries
 *                    per next_upstream, the request relayed and the response re-framed
 *                    (exchange-upstream.c)
 *
 * A source talks to the client only through the session ops (session.h); so a cache can be
 * a third source (serve a stored response through the same ops), and a background refresh is
 * the upstream source run under a session that stores what it is sent instead of writing it
 * to a client.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct Exchange Exchange;

typedef enum TimeoutKind {
        TIMEOUT_NONE,
        /* the session's (client side) */
        TIMEOUT_HEADER,
        TIMEOUT_KEEPALIVE,
        TIMEOUT_BODY,
        TIMEOUT_SEND,
        TIMEOUT_LINGER,
        TIMEOUT_TUNNEL,
        /* the source's */
        TIMEOUT_CONNECT,
        TIMEOUT_UP_READ,
        TIMEOUT_UP_SEND,
} TimeoutKind;

typedef struct SourceOps {
        const char *name;
        /* Make all the progress that can be made without blocking, in both directions
         * (request body to the source, response to the session). Returns 1 on progress. */
        int (*step)(Exchange *ex);
        /* The source would take request body bytes now (the session reads the client for it,
         * and its body deadlines run). */
        bool (*wants_body)(const Exchange *ex);
        /* The source holds response bytes the session has not taken yet. */
        bool (*has_output)(const Exchange *ex);
        /* The source's earliest deadline (USEC_INFINITY: none) and which one it is. */
        uint64_t (*deadline)(const Exchange *ex, TimeoutKind *ret_kind);
        /* That deadline passed. */
        void (*timeout)(Exchange *ex, TimeoutKind kind);
        /* The exchange ends (complete or not): give back what the source holds. */
        void (*finish)(Exchange *ex);
} SourceOps;

extern const SourceOps source_local;
extern const SourceOps source_upstream;
