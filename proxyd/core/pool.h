/* SPDX-License-Identifier: MIT */
#pragma once

/* Upstream connections and the per-worker keep-alive pool. */

#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "stream.h"
#include "worker-io.h"
#include "tls.h"

typedef struct Worker Worker;
typedef struct UpConn UpConn;
typedef struct PoolBucket PoolBucket;
typedef struct Pool Pool;

/* Called by an owned upstream connection's io events. */
typedef void (*UpConnHandler)(UpConn *u, uint32_t revents, void *userdata);

struct UpConn {
        Worker *worker;
        Pool *pool;
        Stream stream;
        WorkerIo io;
        uint64_t idle_deadline; /* while idle: closed by pool_get/pool_sweep after this */
        struct sockaddr_storage addr;
        socklen_t addrlen;
        char addr_text[128];
        unsigned requests; /* requests sent on this connection */
        bool connecting;    /* not usable yet: TCP connect, then the TLS handshake if any */
        bool tcp_connected;
        bool reused;      /* taken from the pool */
        bool rd_ready;
        bool wr_ready;
        bool rdhup; /* the server's FIN (or an error) was seen */

        UpConnHandler handler; /* owner's callback; NULL while idle in the pool */
        void *userdata;

        char *tls_key; /* pool key part for TLS connections */
        PoolBucket *bucket; /* while idle */
        UpConn *idle_next, *idle_prev;
};

struct Pool {
        PoolBucket *buckets;
        Worker *worker;     /* whose epoll instance the connections are registered in */
        const uint64_t *now; /* the worker loop's clock */
        unsigned n_idle;
};

void pool_init(Pool *p, Worker *w, const uint64_t *now);
void pool_done(Pool *p); /* closes every idle connection */

/* TLS towards an upstream: the client context and the names for SNI and verification.
 * Connections are pooled per address and per these. */
typedef struct UpTls {
        TlsClientContext *ctx;
        const char *sni; /* NULL: no SNI */
        const char *verify_name;
        bool verify;
} UpTls;

/*
 * Get a connection to addr: an idle pooled one that is still healthy, or a new one with a
 * non-blocking connect in progress (u->connecting). tls NULL: plain. Returns 0 or -errno
 * (connect failed at once).
 */
int pool_get(Pool *p, const struct sockaddr_storage *addr, socklen_t addrlen, const char *text, const UpTls *tls,
             UpConnHandler handler, void *userdata, UpConn **ret);

/* Close idle connections whose keepalive_timeout has passed (called about once a second). */
void pool_sweep(Pool *p, uint64_t now);

/* Return a connection after a complete exchange; it is closed instead when the pool is
 * full, the upstream allows no more requests, or keepalive is 0. */
void pool_put(Pool *p, UpConn *u, const Upstream *up);

/* Close and free an owned connection. Returns NULL. */
UpConn *upconn_free(UpConn *u);
