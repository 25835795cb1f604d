/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The state of client policy on the request path (exchange-policy.c): who the client is (the
 * PROXY protocol on the connection, real_ip_* per request) and the per-client limits a
 * request holds. The functions are declared in exchange.h.
 */

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

#include "limit.h"


typedef struct ExchangePolicy {
        size_t n_holds;
        uint64_t delay_until; /* the request waits for a rate limit until then (source_limit_wait) */
        const char *limit;    /* the limit that rejected or delayed the request (access entry) */
        char *hash_key;       /* balance = "hash": the expanded key */
        size_t hash_key_len;
        /* [0, n_holds); last: the exchange does not zero it (limit_check() sets what it gives) */
        LimitHold holds[CONFIG_LIMITS_PER_LOCATION];
} ExchangePolicy;

