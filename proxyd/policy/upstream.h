/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Run-time state of upstream groups: one UpstreamRuntime per Upstream per configuration
 * generation, holding the group's current PeerSet (replaced when DNS answers change), the
 * selection lock, and the passive health accounting. Shared by every worker thread; the
 * health checker and the resolver (manager thread) update it. No event loop, no logging:
 * state changes are returned for the caller to log.
 *
 * Locking: selection runs under a small per-group mutex, which makes round-robin exact
 * across threads; the PeerSet pointer is swapped under the same mutex, so a replaced set is
 * released at once. Peers are reference counted: a request, a health probe or a set holding
 * a peer keeps it alive, so a peer dropped from DNS stays valid until its last request ends.
 * Counters read outside the lock (active, down_until, healthy) are atomics.
 */

#include <pthread.h>

#include "balancer.h"
#include "config.h"

typedef struct UpstreamRuntime {
        const Upstream *up;
        pthread_mutex_t lock;
        PeerSet *set; /* under lock */
} UpstreamRuntime;

typedef enum PeerChange {
        PEER_UNCHANGED,
        PEER_WENT_DOWN, /* max_fails reached within fail_timeout */
        PEER_CAME_UP,   /* a request succeeded on a peer that had been marked down */
} PeerChange;

/*
 * Create a runtime for every upstream of c (Upstream.rt, freed with the Config). Passive and
 * active health state of peers with the same upstream name and address in `old` (may be
 * NULL) is carried over, so a reload neither forgets a dead server nor resurrects it.
 */
int upstream_runtimes_setup(Config *c, const Config *old);

/*
 * Choose a peer for one attempt of a request, skipping the peers in `tried` (compared by
 * pointer). The returned peer is already acquired (active count and reference taken under
 * the group lock, so max_conns and least_conn stay exact between threads): call
 * peer_release() when the attempt ends. NULL: no usable peer (answer 502 at once).
 */
Peer *upstream_pick(UpstreamRuntime *rt, const struct sockaddr *client, Peer *const *tried, size_t n_tried,
                    uint64_t now_usec, uint64_t *rng);
/* The same with the key of balance = "hash" (ignored by the other algorithms). */
Peer *upstream_pick_key(UpstreamRuntime *rt, const struct sockaddr *client, const void *key, size_t key_len,
                        Peer *const *tried, size_t n_tried, uint64_t now_usec, uint64_t *rng);

Peer *peer_ref(Peer *p);
Peer *peer_unref(Peer *p); /* returns NULL */
void peer_acquire(Peer *p); /* active++ and a reference */
void peer_release(Peer *p); /* active-- and drops the reference */

/* Passive health: the outcome of one attempt (failed: connect error, timeout, invalid
 * response head, or a status listed in next_upstream). */
PeerChange peer_report(Peer *p, bool failed, uint64_t now_usec);

/* Usable for new requests now (not down, healthy, not marked failed). */
bool peer_is_up(const Peer *p, uint64_t now_usec);

/* The current set with a reference (release with peer_set_unref), or NULL. */
PeerSet *upstream_runtime_peers(UpstreamRuntime *rt);
PeerSet *peer_set_unref(PeerSet *s);

/* Replace the peers of the server entry `entry` (conf: that entry's first UpstreamServer)
 * with these addresses; peers whose address stays keep their state. Returns 1 if the set
 * changed, 0 if not, or -errno. Manager thread. */
int upstream_runtime_set_entry_addresses(UpstreamRuntime *rt, const UpstreamServer *conf,
                                         const struct sockaddr_storage *addrs, const socklen_t *lens, size_t n);

/* Peers usable now / all peers, over every upstream of c (for STATUS=). */
void upstream_count_up(const Config *c, unsigned *up, unsigned *total);

/* "10.0.0.1:80", "[::1]:80", "unix:/path" */
void peer_format_address(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
