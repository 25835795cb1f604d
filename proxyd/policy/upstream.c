/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/un.h>
#include <time.h>

#include "upstream.h"
#include "util.h"

#define ENTRY_ADDRS_MAX 64 /* addresses kept for one re-resolved name */

void peer_format_address(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char a[INET6_ADDRSTRLEN];

        if (len == 0 || !sa) {
                snprintf(buf, size, "(unresolved)");
                return;
        }
        switch (sa->sa_family) {
        case AF_INET: {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
                snprintf(buf, size, "%s:%u", a, ntohs(in->sin_port));
                break;
        }
        case AF_INET6: {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
                snprintf(buf, size, "[%s]:%u", a, ntohs(in6->sin6_port));
                break;
        }
        case AF_UNIX:
                snprintf(buf, size, "unix:%.*s",
                         (int) strnlen(((const struct sockaddr_un *) sa)->sun_path,
                                       sizeof(((const struct sockaddr_un *) sa)->sun_path)),
                         ((const struct sockaddr_un *) sa)->sun_path);
                break;
        default:
                snprintf(buf, size, "?");
        }
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr_storage *b,
                      socklen_t blen) {
        return alen == blen && memcmp(a, b, alen) == 0;
}

static Peer *peer_new(const UpstreamServer *conf, const struct sockaddr_storage *addr, socklen_t len) {
        Peer *p = calloc(1, sizeof(Peer));

        if (!p)
                return NULL;
        atomic_init(&p->refs, 1);
        p->conf = conf;
        memcpy(&p->addr, addr, MIN((size_t) len, sizeof(p->addr)));
        p->addrlen = len;
        peer_format_address((const struct sockaddr *) &p->addr, len, p->text, sizeof(p->text));
        atomic_init(&p->healthy, true);
        return p;
}

Peer *peer_ref(Peer *p) {
        if (p)
                atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
        return p;
}

Peer *peer_unref(Peer *p) {
        if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
                free(p);
        return NULL;
}

void peer_acquire(Peer *p) {
        peer_ref(p);
        atomic_fetch_add_explicit(&p->active, 1, memory_order_relaxed);
}

void peer_release(Peer *p) {
        if (!p)
                return;
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_relaxed);
        peer_unref(p);
}

static void peer_set_mark_sole(PeerSet *s) {
        for (size_t i = 0; i < s->n; i++)
                atomic_store(&s->peers[i]->sole, s->n == 1);
}

static PeerSet *peer_set_new(size_t cap) {
        PeerSet *s = calloc(1, sizeof(PeerSet) + cap * sizeof(Peer *));

        if (s)
                atomic_init(&s->refs, 1);
        return s;
}

PeerSet *peer_set_unref(PeerSet *s) {
        if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
                for (size_t i = 0; i < s->n; i++)
                        peer_unref(s->peers[i]);
                hash_ring_free(s->ring);
                free(s);
        }
        return NULL;
}

PeerSet *upstream_runtime_peers(UpstreamRuntime *rt) {
        PeerSet *s;

        if (!rt)
                return NULL;
        pthread_mutex_lock(&rt->lock);
        s = rt->set;
        if (s)
                atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&rt->lock);
        return s;
}

static void upstream_runtime_free(UpstreamRuntime *rt) {
        if (!rt)
                return;
        peer_set_unref(rt->set);
        pthread_mutex_destroy(&rt->lock);
        free(rt);
}

static const Upstream *find_old_upstream(const Config *old, const Upstream *u) {
        if (!old)
                return NULL;
        for (size_t i = 0; i < old->n_upstreams; i++) {
                const Upstream *o = old->upstreams[i];
                if (o->implicit == u->implicit && streq(o->name, u->name) && o->rt)
                        return o;
        }
        return NULL;
}

/* The server entry is configured the same way in both generations (its address aside). */
static bool same_server_conf(const UpstreamServer *a, const UpstreamServer *b) {
        return streq_ptr(a->address, b->address) && a->weight == b->weight && a->max_fails == b->max_fails &&
               a->fail_timeout == b->fail_timeout && a->backup == b->backup && a->down == b->down &&
               a->max_conns == b->max_conns;
}

static void carry_state(Peer *p, const Upstream *u, const Upstream *o, PeerSet *old_set) {
        if (!old_set)
                return;
        for (size_t i = 0; i < old_set->n; i++) {
                Peer *q = old_set->peers[i];
                if (!same_addr(&q->addr, q->addrlen, &p->addr, p->addrlen))
                        continue;
                atomic_store(&p->fails, atomic_load(&q->fails));
                atomic_store(&p->fail_window_start, atomic_load(&q->fail_window_start));
                atomic_store(&p->down_until, atomic_load(&q->down_until));
                atomic_store(&p->passive_down, atomic_load(&q->passive_down));
                atomic_store(&p->recovered_at, atomic_load(&q->recovered_at));
                atomic_store(&p->checks_passed, atomic_load(&q->checks_passed));
                atomic_store(&p->checks_failed, atomic_load(&q->checks_failed));
                atomic_store(&p->failures, atomic_load(&q->failures));
                atomic_store(&p->requests, atomic_load(&q->requests));
                /* Runtime overrides stay unless the configuration changed the server. */
                if (same_server_conf(p->conf, q->conf)) {
                        atomic_store(&p->admin, atomic_load(&q->admin));
                        atomic_store(&p->weight_override, atomic_load(&q->weight_override));
                }
                if (u->health_check && o->health_check) {
                        atomic_store(&p->healthy, atomic_load(&q->healthy));
                        atomic_store(&p->check_fails, atomic_load(&q->check_fails));
                        atomic_store(&p->check_passes, atomic_load(&q->check_passes));
                }
                return;
        }
}

static int runtime_new(Upstream *u, const Config *old, UpstreamRuntime **ret) {
        const Upstream *o = find_old_upstream(old, u);
        PeerSet *old_set = o ? upstream_runtime_peers(o->rt) : NULL;
        UpstreamRuntime *rt = calloc(1, sizeof(UpstreamRuntime));
        int r = -ENOMEM;

        if (!rt)
                goto out;
        pthread_mutex_init(&rt->lock, NULL);
        rt->up = u;
        rt->set = peer_set_new(u->n_servers);
        if (!rt->set)
                goto out;
        for (size_t i = 0; i < u->n_servers; i++) {
                const UpstreamServer *s = &u->servers[i];
                if (s->addrlen == 0)
                        continue; /* not resolved yet */
                Peer *p = peer_new(s, &s->addr, s->addrlen);
                if (!p)
                        goto out;
                carry_state(p, u, o, old_set);
                rt->set->peers[rt->set->n++] = p;
        }
        peer_set_mark_sole(rt->set);
        *ret = TAKE_PTR(rt);
        r = 0;
out:
        upstream_runtime_free(rt);
        peer_set_unref(old_set);
        return r;
}

int upstream_runtimes_setup(Config *c, const Config *old) {
        for (size_t i = 0; i < c->n_upstreams; i++) {
                Upstream *u = c->upstreams[i];
                UpstreamRuntime *rt;
                int r;

                if (u->rt)
                        continue;
                r = runtime_new(u, old, &rt);
                if (r < 0)
                        return r;
                u->rt = rt;
                u->rt_free = upstream_runtime_free;
        }
        return 0;
}

Peer *upstream_pick(UpstreamRuntime *rt, const struct sockaddr *client, Peer *const *tried, size_t n_tried,
                    uint64_t now_usec, uint64_t *rng) {
        return upstream_pick_key(rt, client, NULL, 0, tried, n_tried, now_usec, rng);
}

Peer *upstream_pick_key(UpstreamRuntime *rt, const struct sockaddr *client, const void *key, size_t key_len,
                        Peer *const *tried, size_t n_tried, uint64_t now_usec, uint64_t *rng) {
        PickRequest req = {
                .client = client,
                .key = key,
                .key_len = key_len,
                .tried = tried,
                .n_tried = n_tried,
                .now = now_usec,
                .slow_start = rt ? rt->up->slow_start : 0,
                .rng = rng,
        };
        Peer *p;

        if (!rt)
                return NULL;
        pthread_mutex_lock(&rt->lock);
        p = balancer_pick(rt->up->balance, rt->set, &req);
        if (p) {
                peer_acquire(p);
                atomic_fetch_add_explicit(&p->requests, 1, memory_order_relaxed);
        }
        pthread_mutex_unlock(&rt->lock);
        return p;
}

PeerChange peer_report(Peer *p, bool failed, uint64_t now_usec) {
        const UpstreamServer *s = p->conf;

        if (!failed) {
                if (atomic_load_explicit(&p->fails, memory_order_relaxed) != 0)
                        atomic_store_explicit(&p->fails, 0, memory_order_relaxed);
                if (atomic_load_explicit(&p->passive_down, memory_order_relaxed) &&
                    atomic_exchange(&p->passive_down, false)) {
                        atomic_store(&p->recovered_at, now_usec);
                        atomic_store(&p->down_until, 0);
                        return PEER_CAME_UP;
                }
                return PEER_UNCHANGED;
        }
        atomic_fetch_add_explicit(&p->failures, 1, memory_order_relaxed);
        if (s->max_fails == 0 || atomic_load_explicit(&p->sole, memory_order_relaxed))
                return PEER_UNCHANGED; /* failure accounting disabled; a sole server is always tried */
        uint64_t start = atomic_load(&p->fail_window_start);
        if (now_usec >= start + s->fail_timeout) {
                /* a new window; a concurrent reset loses at most a failure or two */
                atomic_store(&p->fail_window_start, now_usec);
                atomic_store(&p->fails, 0);
        }
        if (atomic_fetch_add(&p->fails, 1) + 1 < s->max_fails)
                return PEER_UNCHANGED;
        atomic_store(&p->fails, 0);
        atomic_store(&p->down_until, now_usec + s->fail_timeout);
        if (!atomic_exchange(&p->passive_down, true))
                return PEER_WENT_DOWN;
        return PEER_UNCHANGED;
}

bool peer_is_up(const Peer *p, uint64_t now_usec) {
        return peer_state(p, now_usec) == PEER_STATE_UP;
}

int upstream_runtime_set_entry_addresses(UpstreamRuntime *rt, const UpstreamServer *conf,
                                         const struct sockaddr_storage *addrs, const socklen_t *lens, size_t n) {
        PeerSet *old, *new = NULL;
        size_t n_entry = 0, matched = 0, insert_at = SIZE_MAX;
        int r = 0;

        if (!rt)
                return -EINVAL;
        n = MIN(n, (size_t) ENTRY_ADDRS_MAX);
        pthread_mutex_lock(&rt->lock);
        old = rt->set;
        for (size_t i = 0; i < old->n; i++) {
                Peer *p = old->peers[i];
                if (p->conf->entry != conf->entry)
                        continue;
                if (insert_at == SIZE_MAX)
                        insert_at = i;
                n_entry++;
                for (size_t k = 0; k < n; k++)
                        if (same_addr(&p->addr, p->addrlen, &addrs[k], lens[k])) {
                                matched++;
                                break;
                        }
        }
        if (n_entry == n && matched == n)
                goto out; /* unchanged */

        new = peer_set_new(old->n - n_entry + n);
        if (!new) {
                r = -ENOMEM;
                goto out;
        }
        if (insert_at == SIZE_MAX)
                insert_at = old->n;
        for (size_t i = 0; i <= old->n; i++) {
                if (i == insert_at)
                        for (size_t k = 0; k < n; k++) {
                                Peer *q = NULL;
                                bool dup = false;
                                for (size_t j = 0; j < new->n; j++)
                                        if (new->peers[j]->conf->entry == conf->entry &&
                                            same_addr(&new->peers[j]->addr, new->peers[j]->addrlen, &addrs[k], lens[k]))
                                                dup = true;
                                if (dup)
                                        continue;
                                for (size_t j = 0; j < old->n && !q; j++)
                                        if (old->peers[j]->conf->entry == conf->entry &&
                                            same_addr(&old->peers[j]->addr, old->peers[j]->addrlen, &addrs[k], lens[k]))
                                                q = peer_ref(old->peers[j]);
                                if (!q) {
                                        q = peer_new(conf, &addrs[k], lens[k]);
                                        if (!q) {
                                                new = peer_set_unref(new);
                                                r = -ENOMEM;
                                                goto out;
                                        }
                                }
                                new->peers[new->n++] = q;
                        }
                if (i < old->n && old->peers[i]->conf->entry != conf->entry)
                        new->peers[new->n++] = peer_ref(old->peers[i]);
        }
        peer_set_mark_sole(new);
        rt->set = new;
        r = 1;
out:
        pthread_mutex_unlock(&rt->lock);
        if (r > 0)
                peer_set_unref(old);
        return r;
}

void upstream_count_up(const Config *c, unsigned *up, unsigned *total) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        unsigned u = 0, t = 0;

        for (size_t i = 0; c && i < c->n_upstreams; i++) {
                PeerSet *s = upstream_runtime_peers(c->upstreams[i]->rt);
                if (!s)
                        continue;
                for (size_t k = 0; k < s->n; k++) {
                        t++;
                        if (peer_is_up(s->peers[k], now))
                                u++;
                }
                peer_set_unref(s);
        }
        *up = u;
        *total = t;
}
