/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The traffic policy of an exchange, called from routing (exchange.c) and from the response
 * heads (exchange-upstream.c) through these few hooks: a location's rules (match.c), the
 * variables of `return`, and the response fields of add_header / replace_header.
 */

#include "exchange.h"

/* What routing found out about the request, for the rules and the proxy part. */
typedef struct Route {
        const char *host, *origin, *norm, *args;
        size_t host_len, origin_len, norm_len, args_len;
        size_t match_len; /* of a prefix location */
} Route;

/* The variables of the request (RequestInfo) from the exchange and its route; host_lower
 * holds $host. $proxy_host is the location's proxy_pass host, or "". */
void exchange_request_info(const Exchange *ex, const Route *rt, char host_lower[static 256], RequestInfo *ri);

/* Once the location is chosen (ex->loc; NULL for a 404): the first of its rules whose
 * conditions hold makes ex->loc that rule's location; response fields with variables are
 * expanded. 0: go on; 1: answered (a condition could not be decided: 500); <0: -errno. */
int exchange_policy_route(Exchange *ex, const Route *rt, size_t head_len);

/* Answer with ex->loc's `return`, body and Location with their variables expanded. */
int exchange_policy_return(Exchange *ex, const Route *rt, bool keep_alive);

/* The configured response fields for a response with this status (in *buf), or NULL. */
const ResponseFields *exchange_policy_fields(const Exchange *ex, int status, ResponseFields *buf);

void exchange_policy_free(Exchange *ex);
