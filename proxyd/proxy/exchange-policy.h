/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Client policy on the request path: who the client is (the PROXY protocol on the
 * connection, real_ip_* per request) and the per-client limits of a location. conn.c and
 * exchange.c call these hooks; the logic is here and in the pure modules (proxy-protocol.c,
 * realip.c, limit.c).
 */

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

#include "limit.h"


typedef struct Exchange Exchange;
typedef struct Session Session;
struct RequestInfo;
struct SourceOps;

/* The connection's own client address while a request runs under one taken from a header. */
typedef struct SessionPeer {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa;
        char addr[INET6_ADDRSTRLEN];
        unsigned port;
        bool replaced; /* the Session's remote_* hold a request's address */
} SessionPeer;

typedef struct ExchangePolicy {
        LimitHold holds[CONFIG_LIMITS_PER_LOCATION];
        size_t n_holds;
        uint64_t delay_until; /* the request waits for a rate limit until then (source_limit_wait) */
        const char *limit;    /* the limit that rejected or delayed the request (access entry) */
        char *hash_key;       /* balance = "hash": the expanded key */
        size_t hash_key_len;
} ExchangePolicy;

/* A new client connection: 1 when it must start with a PROXY protocol header, 0 when not,
 * -EPERM when it must but comes from an address not in proxy_protocol_from (logged). */
int session_expects_proxy_header(Session *s);
/* Take the PROXY protocol header from fd (before anything else, TLS included): 0 done
 * (s->remote_* say whose connection it is), -EAGAIN not complete yet (edge-triggered: wait for
 * bytes), another -errno: the connection must be closed (a bad header, logged). */
int session_read_proxy_header(Session *s, int fd, bool hup);
/* The connection's own address again (a new request starts). */
void session_client_reset(Session *s);
/* The address of the connection's peer (after the PROXY protocol), whatever the request says. */
const char *session_peer_text(const Session *s);

/* exchange.c, once the location is known: real_ip_* of s. 0, or -ENOMEM. */
int exchange_client_identity(Exchange *ex, const LocationSettings *s);
/* The limits of s for a request about to be proxied. 0: go on (perhaps delayed: then the
 * exchange's source is source_limit_wait until ex->pol.delay_until), 1: answered (429),
 * <0: error. */
int exchange_limits(Exchange *ex, const struct RequestInfo *ri, const LocationSettings *s);
/* The upstream's hash_key, when it balances by hash; and its PROXY protocol header, in front
 * of the request head (ex->req_head, empty so far). */
int exchange_upstream_prepare(Exchange *ex, const struct RequestInfo *ri);
void exchange_policy_done(Exchange *ex);

/* A request a rate limit delays: nothing happens until ex->pol.delay_until, then the upstream
 * source starts. */
extern const struct SourceOps source_limit_wait;
