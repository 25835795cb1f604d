/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "health.h"
#include "stream.h"
#include "tls.h"
#include "util.h"

#define PROBE_RESPONSE_MAX 512 /* the status line must fit */

typedef struct Check Check;
typedef struct Probe Probe;

struct Check {
        HealthChecker *h;
        Upstream *up;
        sd_event_source *timer;
        /* https: the first location that reaches this group over https gives the TLS
         * settings (trust, client certificate, verification, name); NULL: plain HTTP */
        const LocationSettings *tls;
        TlsClientContext *tls_ctx; /* for those settings, from the generation's client set */
        char *tls_name;            /* name sent as SNI and verified */
};

struct Probe {
        HealthChecker *h;
        Check *check;
        Peer *peer;
        Stream stream; /* plain or TLS over the probe's socket */
        sd_event_source *io;
        sd_event_source *timer;
        bool connected;
        char req[1024];
        size_t req_len, req_off;
        char resp[PROBE_RESPONSE_MAX];
        size_t resp_len;
        HealthProbeDone done; /* a check forced through the admin endpoint: its caller */
        void *done_userdata;
        Probe *next, *prev;
};

struct HealthChecker {
        sd_event *event;
        Config *config;
        Check *checks;
        size_t n_checks;
        Probe *probes;
        PeerStateChanged cb;
        void *userdata;
};

static Probe *probe_free(Probe *p) {
        if (!p)
                return NULL;
        if (p->prev)
                p->prev->next = p->next;
        else if (p->h->probes == p)
                p->h->probes = p->next;
        if (p->next)
                p->next->prev = p->prev;
        sd_event_source_disable_unref(p->io);
        sd_event_source_disable_unref(p->timer);
        stream_close(&p->stream);
        peer_unref(p->peer);
        free(p);
        return NULL;
}

static bool status_expected(const HealthCheck *hc, unsigned status) {
        if (hc->n_statuses == 0)
                return status >= 200 && status < 400;
        for (size_t i = 0; i < hc->n_statuses; i++)
                if (hc->statuses[i] == status)
                        return true;
        return false;
}

/* One result: count it and flip the peer when a threshold is reached. Frees the probe. */
static void probe_done(Probe *p, bool ok, const char *reason) {
        const HealthCheck *hc = p->check->up->health_check;
        HealthChecker *h = p->h;
        Peer *peer = p->peer;
        bool changed = false, up = false;

        atomic_fetch_add_explicit(ok ? &peer->checks_passed : &peer->checks_failed, 1, memory_order_relaxed);
        if (ok) {
                atomic_store(&peer->check_fails, 0);
                unsigned n = atomic_fetch_add(&peer->check_passes, 1) + 1;
                if (!atomic_load(&peer->healthy) && n >= hc->passes) {
                        uint64_t now = 0;
                        (void) sd_event_now(h->event, CLOCK_MONOTONIC, &now);
                        atomic_store(&peer->recovered_at, now);
                        atomic_store(&peer->healthy, true);
                        changed = up = true;
                }
        } else {
                atomic_store(&peer->check_passes, 0);
                unsigned n = atomic_fetch_add(&peer->check_fails, 1) + 1;
                if (atomic_load(&peer->healthy) && n >= hc->fails) {
                        atomic_store(&peer->healthy, false);
                        changed = true;
                }
        }
        peer_ref(peer);
        const char *name = p->check->up->name;
        HealthProbeDone done = p->done;
        void *done_userdata = p->done_userdata;
        probe_free(p);
        if (done)
                done(peer, ok, ok ? NULL : reason, done_userdata);
        if (changed && h->cb)
                h->cb(peer, name, up, up ? "health check passed" : reason, h->userdata);
        peer_unref(peer);
}

static void probe_fail_errno(Probe *p, const char *what, int err) {
        char reason[160];
        snprintf(reason, sizeof(reason), "health check %s: %s", what, strerror(err));
        probe_done(p, false, reason);
}

/* "HTTP/1.x NNN ..." */
static int parse_status_line(const char *s, size_t n, unsigned *ret) {
        if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
                return -EINVAL;
        for (int i = 9; i < 12; i++)
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
        if (n > 12 && s[12] != ' ' && s[12] != '\r' && s[12] != '\n')
                return -EINVAL;
        *ret = (unsigned) ((s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0'));
        return 0;
}

/* Wait for what the stream needs next to do what the probe wants (TLS may need to write
 * while the probe wants to read, and the other way round). */
static void probe_wait(Probe *p, uint32_t wanted) {
        (void) sd_event_source_set_io_events(p->io, stream_events(&p->stream, wanted));
}

static int on_probe_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Probe *p = userdata;

        if (!p->connected) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err == 0 && (revents & (EPOLLERR | EPOLLHUP)) && !(revents & EPOLLOUT))
                        err = ECONNREFUSED;
                if (err != 0) {
                        probe_fail_errno(p, "connect", err);
                        return 0;
                }
                p->connected = true;
                const Check *ck = p->check;
                if (ck->tls) {
                        /* the session cache is keyed by the peer address: set up once connected */
                        int r = ck->tls_ctx ? tls_stream_client_init(&p->stream, fd, ck->tls_ctx,
                                                                     ck->tls->ssl_server_name ? ck->tls_name : NULL,
                                                                     ck->tls_name, ck->tls->ssl_verify)
                                            : -ENOENT;
                        if (r < 0) {
                                probe_fail_errno(p, "TLS setup", -r);
                                return 0;
                        }
                }
        }
        if (tls_stream_is_tls(&p->stream) && !tls_stream_handshake_done(&p->stream)) {
                int r = tls_stream_handshake(&p->stream);
                if (r == -EAGAIN) {
                        probe_wait(p, 0);
                        return 0;
                }
                if (r < 0) {
                        char reason[256];
                        snprintf(reason, sizeof(reason), "health check TLS handshake: %s",
                                 tls_stream_error(&p->stream) ?: strerror(-r));
                        probe_done(p, false, reason);
                        return 0;
                }
        }
        while (p->req_off < p->req_len) {
                ssize_t n = stream_write(&p->stream, p->req + p->req_off, p->req_len - p->req_off);
                if (n == -EAGAIN) {
                        probe_wait(p, EPOLLOUT);
                        return 0;
                }
                if (n < 0) {
                        probe_fail_errno(p, "send", (int) -n);
                        return 0;
                }
                p->req_off += (size_t) n;
        }
        for (;;) {
                ssize_t n = stream_read(&p->stream, p->resp + p->resp_len, sizeof(p->resp) - p->resp_len);
                if (n == -EAGAIN) {
                        probe_wait(p, EPOLLIN);
                        return 0;
                }
                if (n < 0) {
                        probe_fail_errno(p, "receive", (int) -n);
                        return 0;
                }
                if (n == 0) {
                        probe_done(p, false, "health check: connection closed before a status line");
                        return 0;
                }
                p->resp_len += (size_t) n;
                const char *nl = memchr(p->resp, '\n', p->resp_len);
                if (nl) {
                        unsigned status;
                        char reason[96];
                        if (parse_status_line(p->resp, (size_t) (nl - p->resp), &status) < 0) {
                                probe_done(p, false, "health check: invalid status line");
                                return 0;
                        }
                        if (status_expected(p->check->up->health_check, status)) {
                                probe_done(p, true, NULL);
                                return 0;
                        }
                        snprintf(reason, sizeof(reason), "health check: status %u", status);
                        probe_done(p, false, reason);
                        return 0;
                }
                if (p->resp_len == sizeof(p->resp)) {
                        probe_done(p, false, "health check: status line too long");
                        return 0;
                }
        }
}

static int on_probe_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        probe_done(userdata, false, "health check timed out");
        return 0;
}

static int probe_start(Check *ck, Peer *peer, uint64_t now, HealthProbeDone done, void *done_userdata) {
        HealthChecker *h = ck->h;
        const HealthCheck *hc = ck->up->health_check;
        const UpstreamServer *conf = peer->conf;
        Probe *p;
        int r;

        p = calloc(1, sizeof(Probe));
        if (!p)
                return -ENOMEM;
        p->done = done;
        p->done_userdata = done_userdata;
        p->h = h;
        p->check = ck;
        p->peer = peer_ref(peer);
        p->stream = STREAM_NULL;
        p->next = h->probes;
        if (h->probes)
                h->probes->prev = p;
        h->probes = p;

        r = snprintf(p->req, sizeof(p->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: proxyd-health-check\r\n\r\n",
                     hc->path, conf->host ? conf->address : ck->up->name);
        if (r < 0 || (size_t) r >= sizeof(p->req)) {
                probe_done(p, false, "health check: request too long");
                return 0;
        }
        p->req_len = (size_t) r;

        int fd = socket(peer->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                probe_fail_errno(p, "socket", errno);
                return 0;
        }
        stream_init_plain(&p->stream, fd); /* TLS starts once connected (on_probe_io) */
        if (connect(fd, (const struct sockaddr *) &peer->addr, peer->addrlen) < 0 && errno != EINPROGRESS) {
                probe_fail_errno(p, "connect", errno);
                return 0;
        }
        r = sd_event_add_io(h->event, &p->io, fd, EPOLLOUT, on_probe_io, p);
        if (r >= 0)
                r = sd_event_add_time(h->event, &p->timer, CLOCK_MONOTONIC, now + hc->timeout, 0, on_probe_timer, p);
        if (r < 0)
                probe_fail_errno(p, "setup", -r);
        return 0;
}

static bool probe_running(HealthChecker *h, const Peer *peer) {
        for (Probe *p = h->probes; p; p = p->next)
                if (p->peer == peer)
                        return true;
        return false;
}

static int on_check_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Check *ck = userdata;
        PeerSet *set = upstream_runtime_peers(ck->up->rt);

        for (size_t i = 0; set && i < set->n; i++) {
                Peer *peer = set->peers[i];
                if (peer->conf->down || probe_running(ck->h, peer) ||
                    atomic_load(&peer->admin) == PEER_ADMIN_DISABLED)
                        continue;
                (void) probe_start(ck, peer, usec, NULL, NULL);
        }
        peer_set_unref(set);
        (void) sd_event_source_set_time(s, usec + ck->up->health_check->interval);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

HealthChecker *health_checker_free(HealthChecker *h) {
        if (!h)
                return NULL;
        while (h->probes) {
                Probe *p = h->probes;
                if (p->done)
                        p->done(p->peer, false, "the health checker was restarted by a reload", p->done_userdata);
                probe_free(p);
        }
        for (size_t i = 0; i < h->n_checks; i++) {
                sd_event_source_disable_unref(h->checks[i].timer);
                free(h->checks[i].tls_name);
        }
        free(h->checks);
        sd_event_unref(h->event);
        config_unref(h->config);
        free(h);
        return NULL;
}

/* The first location that reaches u over https, or NULL. */
static const Location *https_location_of(const Config *c, const Upstream *u) {
        for (size_t i = 0; i < c->n_servers; i++)
                for (size_t j = 0; j < c->servers[i]->n_locations; j++) {
                        const Location *loc = c->servers[i]->locations[j];
                        if (loc->proxy && loc->proxy->https && loc->proxy->upstream == u)
                                return loc;
                }
        return NULL;
}

/* The name a probe sends (SNI) and verifies: ssl_name when it is a literal, else (the
 * default "$proxy_host", or anything needing a request) the proxy_pass host, without a port
 * or IPv6 brackets, as a request would have it. */
static char *probe_tls_name(const Location *loc) {
        const VarTemplate *t = loc->s.ssl_name;
        const char *src = t && var_template_is_literal(t) ? t->source : loc->proxy->proxy_host;
        char *n = strdup(src ?: "");
        if (!n)
                return NULL;
        host_strip_port(n);
        return n;
}

int health_checker_new(sd_event *e, Config *c, const TlsClientSet *tls, PeerStateChanged cb, void *userdata,
                       HealthChecker **ret) {
        HealthChecker *h;
        size_t n = 0;
        int r;

        h = calloc(1, sizeof(HealthChecker));
        if (!h)
                return -ENOMEM;
        h->event = sd_event_ref(e);
        h->config = config_ref(c);
        h->cb = cb;
        h->userdata = userdata;
        for (size_t i = 0; i < c->n_upstreams; i++)
                if (c->upstreams[i]->health_check && c->upstreams[i]->rt)
                        n++;
        if (n > 0) {
                h->checks = calloc(n, sizeof(Check));
                if (!h->checks) {
                        health_checker_free(h);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < c->n_upstreams; i++) {
                Upstream *u = c->upstreams[i];
                if (!u->health_check || !u->rt)
                        continue;
                Check *ck = &h->checks[h->n_checks++];
                ck->h = h;
                ck->up = u;
                const Location *loc = https_location_of(c, u);
                if (loc) {
                        ck->tls = &loc->s;
                        ck->tls_ctx = tls ? tls_client_set_get(tls, &loc->s) : NULL;
                        ck->tls_name = probe_tls_name(loc);
                        if (!ck->tls_name) {
                                health_checker_free(h);
                                return -ENOMEM;
                        }
                }
                /* The first round runs at once. */
                r = sd_event_add_time_relative(e, &ck->timer, CLOCK_MONOTONIC, 0, 10 * USEC_PER_MSEC,
                                               on_check_timer, ck);
                if (r < 0) {
                        health_checker_free(h);
                        return r;
                }
                (void) sd_event_source_set_enabled(ck->timer, SD_EVENT_ON);
        }
        *ret = h;
        return 0;
}

int health_checker_probe_now(HealthChecker *h, const Upstream *u, Peer *peer, HealthProbeDone done,
                             void *userdata) {
        uint64_t now = 0;

        for (size_t i = 0; h && i < h->n_checks; i++) {
                if (h->checks[i].up != u)
                        continue;
                (void) sd_event_now(h->event, CLOCK_MONOTONIC, &now);
                return probe_start(&h->checks[i], peer, now, done, userdata);
        }
        return -EOPNOTSUPP;
}
