/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "balancer.h"
#include "util.h"

uint64_t balancer_random(uint64_t *state) {
        /* xorshift64*: spreading load, not cryptography */
        uint64_t x = *state ?: UINT64_C(0x9e3779b97f4a7c15);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        return x * UINT64_C(2685821657736338717);
}

bool peer_usable(const Peer *p, const PickRequest *req) {
        unsigned max_conns = p->conf->max_conns;

        if (p->conf->down || !atomic_load_explicit(&p->healthy, memory_order_relaxed) ||
            atomic_load_explicit(&p->admin, memory_order_relaxed) != PEER_ADMIN_NONE)
                return false;
        if (atomic_load_explicit(&p->down_until, memory_order_relaxed) > req->now &&
            !atomic_load_explicit(&p->sole, memory_order_relaxed))
                return false;
        if (max_conns > 0 && atomic_load_explicit(&p->active, memory_order_relaxed) >= max_conns)
                return false;
        for (size_t i = 0; i < req->n_tried; i++)
                if (req->tried[i] == p)
                        return false;
        return true;
}

uint64_t peer_effective_weight(const Peer *p, uint64_t now, uint64_t slow_start) {
        unsigned cw = atomic_load_explicit(&p->weight_override, memory_order_relaxed) ?: p->conf->weight;
        uint64_t w = (uint64_t) MAX(cw, 1u) * BALANCER_WEIGHT_SCALE;
        uint64_t since, low;

        if (slow_start == 0)
                return w;
        since = atomic_load_explicit(&p->recovered_at, memory_order_relaxed);
        if (atomic_load_explicit(&p->passive_down, memory_order_relaxed))
                since = MAX(since, (uint64_t) atomic_load_explicit(&p->down_until, memory_order_relaxed));
        if (since == 0 || now >= since + slow_start)
                return w;
        low = MAX(w / 10, 1);
        if (now <= since)
                return low;
        return low + (uint64_t) ((double) (w - low) * (double) (now - since) / (double) slow_start);
}

PeerState peer_state(const Peer *p, uint64_t now) {
        switch (atomic_load_explicit(&p->admin, memory_order_relaxed)) {
        case PEER_ADMIN_DRAIN:
                return PEER_STATE_DRAINING;
        case PEER_ADMIN_DISABLED:
                return PEER_STATE_DISABLED;
        }
        if (p->conf->down)
                return PEER_STATE_DOWN;
        if (!atomic_load_explicit(&p->healthy, memory_order_relaxed))
                return PEER_STATE_UNHEALTHY;
        if (atomic_load_explicit(&p->down_until, memory_order_relaxed) > now &&
            !atomic_load_explicit(&p->sole, memory_order_relaxed))
                return PEER_STATE_DOWN;
        return PEER_STATE_UP;
}

const char *peer_state_name(PeerState s) {
        static const char *const names[_PEER_STATE_MAX] = {
                [PEER_STATE_UP] = "up",
                [PEER_STATE_DOWN] = "down",
                [PEER_STATE_UNHEALTHY] = "unhealthy",
                [PEER_STATE_DRAINING] = "draining",
                [PEER_STATE_DISABLED] = "disabled",
        };
        return s < _PEER_STATE_MAX ? names[s] : "?";
}

/* a->active / wa < b->active / wb, without division */
static int load_cmp(unsigned aa, uint64_t wa, unsigned ab, uint64_t wb) {
        unsigned __int128 x = (unsigned __int128) aa * wb, y = (unsigned __int128) ab * wa;
        return x < y ? -1 : x > y ? 1 : 0;
}

static bool candidate(const Peer *p, bool backup, const PickRequest *req) {
        return p->conf->backup == backup && peer_usable(p, req);
}

/* Smooth weighted round-robin: every candidate gains its weight, the one with the highest
 * current weight wins and gives back the total. Weights 5,1,1 give a a b a c a a. */
static Peer *pick_round_robin(PeerSet *set, bool backup, const PickRequest *req) {
        Peer *best = NULL;
        int64_t total = 0;

        for (size_t i = 0; i < set->n; i++) {
                Peer *p = set->peers[i];
                if (!candidate(p, backup, req))
                        continue;
                int64_t w = (int64_t) peer_effective_weight(p, req->now, req->slow_start);
                p->current_weight += w;
                total += w;
                if (!best || p->current_weight > best->current_weight)
                        best = p;
        }
        if (best)
                best->current_weight -= total;
        return best;
}

/* Fewest active requests per unit of weight; ties broken by smooth weighted round-robin. */
static Peer *pick_least_conn(PeerSet *set, bool backup, const PickRequest *req) {
        Peer *best = NULL, *rr = NULL;
        unsigned best_active = 0;
        uint64_t best_w = 1;
        int64_t total = 0;

        for (size_t i = 0; i < set->n; i++) {
                Peer *p = set->peers[i];
                if (!candidate(p, backup, req))
                        continue;
                unsigned a = atomic_load_explicit(&p->active, memory_order_relaxed);
                uint64_t w = peer_effective_weight(p, req->now, req->slow_start);
                if (!best || load_cmp(a, w, best_active, best_w) < 0) {
                        best = p;
                        best_active = a;
                        best_w = w;
                }
        }
        if (!best)
                return NULL;
        for (size_t i = 0; i < set->n; i++) {
                Peer *p = set->peers[i];
                if (!candidate(p, backup, req))
                        continue;
                unsigned a = atomic_load_explicit(&p->active, memory_order_relaxed);
                uint64_t w = peer_effective_weight(p, req->now, req->slow_start);
                if (load_cmp(a, w, best_active, best_w) != 0)
                        continue;
                p->current_weight += (int64_t) w;
                total += (int64_t) w;
                if (!rr || p->current_weight > rr->current_weight)
                        rr = p;
        }
        if (!rr)
                return best;
        rr->current_weight -= total;
        return rr;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
        const uint8_t *d = data;
        for (size_t i = 0; i < n; i++) {
                h ^= d[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static uint64_t mix64(uint64_t x) {
        x ^= x >> 30;
        x *= UINT64_C(0xbf58476d1ce4e5b9);
        x ^= x >> 27;
        x *= UINT64_C(0x94d049bb133111eb);
        x ^= x >> 31;
        return x;
}

static const void *addr_bytes(const struct sockaddr *sa, socklen_t len, size_t *ret_n) {
        if (!sa)
                goto none;
        switch (sa->sa_family) {
        case AF_INET:
                *ret_n = 4;
                return &((const struct sockaddr_in *) sa)->sin_addr;
        case AF_INET6: {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a)) {
                        *ret_n = 4;
                        return &a->s6_addr[12];
                }
                *ret_n = 16;
                return a;
        }
        case AF_UNIX:
                if (len > offsetof(struct sockaddr_un, sun_path)) {
                        const char *path = ((const struct sockaddr_un *) sa)->sun_path;
                        *ret_n = strnlen(path, len - offsetof(struct sockaddr_un, sun_path));
                        return path;
                }
                break;
        }
none:
        *ret_n = 0;
        return "";
}

double balancer_hrw_score(const Peer *p, const uint8_t *key, size_t key_len, uint64_t weight) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        const void *pa;
        size_t pn;

        /* The peer is identified by its address and port, so that a re-resolved name that
         * keeps an address keeps its clients. */
        pa = addr_bytes((const struct sockaddr *) &p->addr, p->addrlen, &pn);
        h = fnv1a(h, pa, pn);
        if (p->addr.ss_family == AF_INET)
                h = fnv1a(h, &((const struct sockaddr_in *) &p->addr)->sin_port, 2);
        else if (p->addr.ss_family == AF_INET6)
                h = fnv1a(h, &((const struct sockaddr_in6 *) &p->addr)->sin6_port, 2);
        h = mix64(h ^ mix64(fnv1a(UINT64_C(0x84222325cbf29ce4), key, key_len)));
        /* Weighted rendezvous hashing: the highest weight / -ln(u), u uniform in (0, 1). */
        double u = ((double) (h >> 11) + 0.5) * 0x1.0p-53;
        return (double) weight / -log(u);
}

/* Rendezvous (highest random weight) hashing over the client address: removing a peer moves
 * only the clients it had; a retry goes to the client's next-best peer. */
static Peer *pick_ip_hash(PeerSet *set, bool backup, const PickRequest *req) {
        Peer *best = NULL;
        double best_score = 0;
        size_t kn;
        const void *key = addr_bytes(req->client, sizeof(struct sockaddr_storage), &kn);

        if (req->client && req->client->sa_family == AF_UNIX)
                kn = 0; /* clients over a unix socket share one key */
        for (size_t i = 0; i < set->n; i++) {
                Peer *p = set->peers[i];
                if (!candidate(p, backup, req))
                        continue;
                double s = balancer_hrw_score(p, key, kn, peer_effective_weight(p, req->now, req->slow_start));
                if (!best || s > best_score) {
                        best = p;
                        best_score = s;
                }
        }
        return best;
}

static Peer *weighted_random(PeerSet *set, bool backup, const PickRequest *req, const Peer *except) {
        uint64_t total = 0, r;

        for (size_t i = 0; i < set->n; i++) {
                Peer *p = set->peers[i];
                if (p != except && candidate(p, backup, req))
                        total += peer_effective_weight(p, req->now, req->slow_start);
        }
        if (total == 0)
                return NULL;
        r = balancer_random(req->rng) % total;
        for (size_t i = 0; i < set->n; i++) {
                Peer *p = set->peers[i];
                if (p == except || !candidate(p, backup, req))
                        continue;
                uint64_t w = peer_effective_weight(p, req->now, req->slow_start);
                if (r < w)
                        return p;
                r -= w;
        }
        return NULL;
}

/* Two weighted random choices; the one with fewer active requests per weight wins. */
static Peer *pick_random(PeerSet *set, bool backup, const PickRequest *req) {
        Peer *a = weighted_random(set, backup, req, NULL), *b;

        if (!a)
                return NULL;
        b = weighted_random(set, backup, req, a);
        if (!b)
                return a;
        if (load_cmp(atomic_load_explicit(&b->active, memory_order_relaxed),
                     peer_effective_weight(b, req->now, req->slow_start),
                     atomic_load_explicit(&a->active, memory_order_relaxed),
                     peer_effective_weight(a, req->now, req->slow_start)) < 0)
                return b;
        return a;
}

/* Consistent hashing (ketama): every peer owns weight * BALANCER_RING_POINTS points on a ring
 * of 64-bit hashes, a key belongs to the first point at or after its hash. Removing one of N
 * equal peers moves only the keys its points had, about 1/N of them; the others stay where
 * they were. A key whose peer is unusable (or was tried) walks on to the next points. */
typedef struct RingPoint {
        uint64_t hash;
        uint32_t peer;
} RingPoint;

struct HashRing {
        size_t n;
        RingPoint points[];
};

void hash_ring_free(HashRing *r) {
        free(r);
}

static int point_cmp(const void *a, const void *b) {
        const RingPoint *x = a, *y = b;
        if (x->hash != y->hash)
                return x->hash < y->hash ? -1 : 1;
        return x->peer < y->peer ? -1 : x->peer > y->peer;
}

static uint64_t peer_identity_hash(const Peer *p) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        size_t pn;
        const void *pa = addr_bytes((const struct sockaddr *) &p->addr, p->addrlen, &pn);

        h = fnv1a(h, pa, pn);
        if (p->addr.ss_family == AF_INET)
                h = fnv1a(h, &((const struct sockaddr_in *) &p->addr)->sin_port, 2);
        else if (p->addr.ss_family == AF_INET6)
                h = fnv1a(h, &((const struct sockaddr_in6 *) &p->addr)->sin6_port, 2);
        return h;
}

static HashRing *ring_build(const PeerSet *set) {
        size_t total = 0, k = 0;
        HashRing *r;

        for (size_t i = 0; i < set->n; i++)
                total += (size_t) MAX(set->peers[i]->conf->weight, 1u) * BALANCER_RING_POINTS;
        r = malloc(sizeof(HashRing) + total * sizeof(RingPoint));
        if (!r)
                return NULL;
        for (size_t i = 0; i < set->n; i++) {
                uint64_t id = peer_identity_hash(set->peers[i]);
                size_t pts = (size_t) MAX(set->peers[i]->conf->weight, 1u) * BALANCER_RING_POINTS;
                for (size_t j = 0; j < pts; j++)
                        r->points[k++] = (RingPoint){ .hash = mix64(id ^ mix64(j + 1)), .peer = (uint32_t) i };
        }
        r->n = total;
        qsort(r->points, total, sizeof(RingPoint), point_cmp);
        return r;
}

static Peer *pick_hash(PeerSet *set, bool backup, const PickRequest *req) {
        size_t lo = 0, hi;
        uint64_t h;

        if (!set->ring) {
                set->ring = ring_build(set);
                if (!set->ring)
                        return NULL;
        }
        if (set->ring->n == 0)
                return NULL;
        h = mix64(fnv1a(UINT64_C(0xcbf29ce484222325), req->key ?: "", req->key ? req->key_len : 0));
        hi = set->ring->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (set->ring->points[mid].hash < h)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (size_t k = 0; k < set->ring->n; k++) {
                Peer *p = set->peers[set->ring->points[(lo + k) % set->ring->n].peer];
                if (candidate(p, backup, req))
                        return p;
        }
        return NULL;
}

static const BalancerOps ops_table[] = {
        [BALANCE_ROUND_ROBIN] = { .name = "round_robin", .pick = pick_round_robin },
        [BALANCE_LEAST_CONN] = { .name = "least_conn", .pick = pick_least_conn },
        [BALANCE_IP_HASH] = { .name = "ip_hash", .pick = pick_ip_hash },
        [BALANCE_RANDOM] = { .name = "random", .pick = pick_random },
        [BALANCE_HASH] = { .name = "hash", .pick = pick_hash },
};

const BalancerOps *balancer_ops(UpstreamBalance b) {
        if ((size_t) b >= ELEMENTSOF(ops_table))
                return &ops_table[BALANCE_ROUND_ROBIN];
        return &ops_table[b];
}

Peer *balancer_pick(UpstreamBalance b, PeerSet *set, const PickRequest *req) {
        const BalancerOps *ops = balancer_ops(b);
        Peer *p;

        if (!set)
                return NULL;
        p = ops->pick(set, false, req);
        if (!p)
                p = ops->pick(set, true, req);
        return p;
}
