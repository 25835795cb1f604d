/* SPDX-License-Identifier: MIT */
#pragma once

/* A location's rules against a request: the first rule whose conditions all hold. Pure; no
 * logging, no allocation per request (a regex match uses a per-thread match block). */

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "http1.h"

/* What the conditions see of a request. */
typedef struct MatchRequest {
        const char *method;
        size_t method_len;
        HttpMethod method_id; /* HTTP_METHOD_OTHER: told by method alone */
        bool https;
        unsigned server_port;
        const struct sockaddr *client; /* AF_UNIX counts as 127.0.0.1, as in access */
        const HttpHeader *headers;
        size_t n_headers;
        const char *args; /* the query, without "?"; NULL: none */
        size_t args_len;
} MatchRequest;

/* 1: the pattern matches the value, 0: not, -1: the match could not be decided (a regex's
 * match limit, no memory). The condition's negation is not applied here. */
int match_pattern(const Pattern *p, const char *value, size_t len);

/* 1: the condition holds, 0: not, -1: undecided. */
int match_condition(const Condition *c, const MatchRequest *r);

/* The first of n rules whose conditions all hold: 1 and *ret_index, 0: none, -1: a condition
 * could not be decided (the caller fails closed). */
int match_rules(const Rule *rules, size_t n, const MatchRequest *r, size_t *ret_index);
