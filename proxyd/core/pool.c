/* SPDX-License-Identifier: MIT */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "log.h"
#include "pool.h"
#include "util.h"

struct PoolBucket {
        PoolBucket *next;
        struct sockaddr_storage addr;
        socklen_t addrlen;
        char *tls_key; /* NULL for plain connections */
        UpConn *idle; /* most recently used first */
        unsigned n_idle;
};

void pool_init(Pool *p, Worker *w, const uint64_t *now) {
        *p = (Pool){ .worker = w, .now = now };
}

static void bucket_unlink(UpConn *u) {
        PoolBucket *b = u->bucket;
        if (!b)
                return;
        if (u->idle_prev)
                u->idle_prev->idle_next = u->idle_next;
        else
                b->idle = u->idle_next;
        if (u->idle_next)
                u->idle_next->idle_prev = u->idle_prev;
        u->idle_next = u->idle_prev = NULL;
        u->bucket = NULL;
        b->n_idle--;
        u->pool->n_idle--;
}

UpConn *upconn_free(UpConn *u) {
        if (!u)
                return NULL;
        bucket_unlink(u);
        if (u->io.handler)
                worker_io_forget(u->worker, &u->io);
        stream_close(&u->stream);
        free(u->tls_key);
        free(u);
        return NULL;
}

void pool_done(Pool *p) {
        PoolBucket *b = p->buckets;
        while (b) {
                PoolBucket *next = b->next;
                while (b->idle)
                        upconn_free(b->idle);
                free(b->tls_key);
                free(b);
                b = next;
        }
        p->buckets = NULL;
}

static void on_upconn_io(void *userdata, uint32_t revents) {
        UpConn *u = userdata;

        if (u->handler) {
                u->handler(u, revents, u->userdata);
                return;
        }
        /* Idle in the pool: whatever arrives (EOF, RST, unsolicited bytes) ends it. A late
         * "writable" edge alone says nothing. */
        if (!(revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
        log_debug("idle upstream connection to %s closed by the server or sent unsolicited data", u->addr_text);
        upconn_free(u);
}

static PoolBucket *bucket_find(Pool *p, const struct sockaddr_storage *addr, socklen_t len, const char *tls_key,
                               bool create) {
        for (PoolBucket *b = p->buckets; b; b = b->next)
                if (b->addrlen == len && memcmp(&b->addr, addr, len) == 0 && streq_ptr(b->tls_key, tls_key))
                        return b;
        if (!create)
                return NULL;
        PoolBucket *b = calloc(1, sizeof(PoolBucket));
        if (!b)
                return NULL;
        if (tls_key && !(b->tls_key = strdup(tls_key))) {
                free(b);
                return NULL;
        }
        memcpy(&b->addr, addr, len);
        b->addrlen = len;
        b->next = p->buckets;
        p->buckets = b;
        return b;
}

/* An idle connection is usable if the server neither closed it nor sent anything. Whatever
 * arrives while it is idle produces an event that closes it (on_upconn_io); one that arrived
 * in the batch being dispatched but is not handled yet shows as pending (worker_io_pending),
 * and only then is the socket itself asked. */
static bool upconn_healthy(UpConn *u) {
        char c;
        if (!worker_io_pending(u->worker, &u->io))
                return true;
        ssize_t n = recv(u->stream.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static char *tls_key_new(const UpTls *tls) {
        char *k = NULL;
        if (!tls)
                return NULL;
        if (asprintf(&k, "%p|%s|%s|%d", (void *) tls->ctx, tls->sni ?: "", tls->verify_name ?: "", tls->verify) < 0)
                return NULL;
        return k;
}

static uint64_t pool_now(Pool *p) {
        return *p->now;
}

void pool_sweep(Pool *p, uint64_t now) {
        for (PoolBucket *b = p->buckets; b; b = b->next)
                for (UpConn *u = b->idle, *next; u; u = next) {
                        next = u->idle_next;
                        if (u->idle_deadline <= now)
                                upconn_free(u);
                }
}

int pool_get(Pool *p, const struct sockaddr_storage *addr, socklen_t addrlen, const char *text, const UpTls *tls,
             UpConnHandler handler, void *userdata, UpConn **ret) {
        _cleanup_free_ char *tls_key = tls_key_new(tls);
        PoolBucket *b;
        UpConn *u;
        int fd, r;

        if (tls && !tls_key)
                return -ENOMEM;
        b = bucket_find(p, addr, addrlen, tls_key, false);

        /* Idle timeouts are enforced lazily (here and in pool_sweep): no timer per connection. */
        uint64_t now = b && b->idle ? pool_now(p) : 0;
        while (b && b->idle) {
                u = b->idle;
                bucket_unlink(u);
                if (u->idle_deadline <= now || !upconn_healthy(u)) {
                        upconn_free(u);
                        continue;
                }
                u->handler = handler;
                u->userdata = userdata;
                u->reused = true;
                u->rd_ready = false;
                u->wr_ready = true;
                *ret = u;
                return 0;
        }

        u = calloc(1, sizeof(UpConn));
        if (!u)
                return -ENOMEM;
        u->worker = p->worker;
        u->pool = p;
        u->stream = STREAM_NULL;
        memcpy(&u->addr, addr, addrlen);
        u->addrlen = addrlen;
        snprintf(u->addr_text, sizeof(u->addr_text), "%s", text);

        fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                free(u);
                return r;
        }
        stream_init_plain(&u->stream, fd);
        if (addr->ss_family != AF_UNIX) {
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (tls) {
                r = tls_stream_client_init(&u->stream, fd, tls->ctx, tls->sni, tls->verify_name, tls->verify);
                if (r < 0) {
                        upconn_free(u);
                        return r;
                }
                u->tls_key = TAKE_PTR(tls_key);
        }
        if (connect(fd, (const struct sockaddr *) addr, addrlen) < 0) {
                if (errno != EINPROGRESS) {
                        r = -errno;
                        upconn_free(u);
                        return r;
                }
                u->connecting = true;
        } else {
                u->tcp_connected = true;
                u->wr_ready = true;
                /* with TLS the handshake still has to run: the socket's writability starts it */
                u->connecting = tls != NULL;
        }

        /* Edge-triggered, registered once (see conn.c). */
        u->io = (WorkerIo){ .handler = on_upconn_io, .userdata = u };
        r = worker_io_add(p->worker, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &u->io);
        if (r < 0) {
                u->io.handler = NULL;
                upconn_free(u);
                return r;
        }
        u->handler = handler;
        u->userdata = userdata;
        *ret = u;
        return 0;
}

void pool_put(Pool *p, UpConn *u, const Upstream *up) {
        PoolBucket *b;

        u->handler = NULL;
        u->userdata = NULL;
        /* A connection whose FIN (or error) was seen, even in an event consumed while its last
         * response was read, is closed: edge-triggered, nothing would report it again. */
        if (up->keepalive == 0 || u->requests >= up->keepalive_requests || u->connecting || u->rdhup) {
                upconn_free(u);
                return;
        }
        b = bucket_find(p, &u->addr, u->addrlen, u->tls_key, true);
        if (!b || b->n_idle >= up->keepalive) {
                upconn_free(u);
                return;
        }
        u->idle_deadline = pool_now(p) + up->keepalive_timeout;
        u->idle_next = b->idle;
        u->idle_prev = NULL;
        if (b->idle)
                b->idle->idle_prev = u;
        b->idle = u;
        b->n_idle++;
        u->bucket = b;
        p->n_idle++;
}
