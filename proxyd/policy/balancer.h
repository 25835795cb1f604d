/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Peers and load-balancing algorithms. A Peer is one address of one configured server entry;
 * a PeerSet is the immutable list of peers an upstream group currently has. The algorithms
 * are an ops table (one `pick` per UpstreamBalance); they read the peers' shared counters
 * (atomics) and update the selection state (current_weight), which the caller protects with
 * the group's lock. Pure: no event loop, no logging.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* Weights are scaled so that slow start can ramp in small steps. */
#define BALANCER_WEIGHT_SCALE 100

typedef struct Peer {
        atomic_uint refs;
        const UpstreamServer *conf; /* the configured entry: weight, max_fails, backup, ... */
        struct sockaddr_storage addr;
        socklen_t addrlen;
        char text[128]; /* "10.0.0.1:80", "[::1]:80", "unix:/run/x.sock" */

        /* selection state: under the group lock */
        int64_t current_weight;

        /* shared by all threads */
        atomic_uint active;                    /* requests using the peer now */
        atomic_uint fails;                     /* passive failures in the current window */
        atomic_uint_fast64_t fail_window_start;
        atomic_uint_fast64_t down_until;       /* passive: unusable before this time */
        atomic_bool passive_down;              /* marked down and not yet seen working again */
        atomic_bool sole;                      /* the group's only peer: never marked down (as nginx) */
        atomic_bool healthy;                   /* active checks; true at start */
        atomic_uint check_fails, check_passes; /* consecutive results (health checker only) */
        atomic_uint_fast64_t recovered_at;     /* start of the slow-start ramp; 0: none */
        atomic_uint_fast64_t requests;         /* total picks */

        /* Runtime control (proxyd ctl, admin endpoint): set by the manager thread, read by
         * every worker's picks at once. Kept over a reload when the server's configuration
         * did not change (upstream.c). */
        atomic_int admin;             /* PeerAdmin */
        atomic_uint weight_override;  /* 0: the configured weight */
        atomic_uint_fast64_t checks_passed, checks_failed; /* active health check results */
        atomic_uint_fast64_t failures;                     /* failed attempts, ever */
        atomic_uint metrics_id;       /* set on first use (metrics.c) */
} Peer;

typedef struct HashRing HashRing;
typedef enum PeerAdmin {
        PEER_ADMIN_NONE,
        PEER_ADMIN_DRAIN,    /* no new requests; in-flight ones finish; health checks go on */
        PEER_ADMIN_DISABLED, /* no new requests and no health checks (maintenance) */
} PeerAdmin;

/* What an operator sees (metrics, status page, proxyd ctl). */
typedef enum PeerState {
        PEER_STATE_UP,
        PEER_STATE_DOWN,      /* `down` in the configuration, or max_fails reached */
        PEER_STATE_UNHEALTHY, /* failed its active health checks */
        PEER_STATE_DRAINING,
        PEER_STATE_DISABLED,
        _PEER_STATE_MAX,
} PeerState;

PeerState peer_state(const Peer *p, uint64_t now);
const char *peer_state_name(PeerState s);

typedef struct PeerSet {
        atomic_uint refs;
        HashRing *ring; /* balance = "hash": built at the first pick (under the group lock) */
        size_t n;
        Peer *peers[];
} PeerSet;

/* What a pick needs to know about the request. */
typedef struct PickRequest {
        const struct sockaddr *client; /* ip_hash key; NULL or AF_UNIX: an empty key */
        const void *key;               /* hash: the expanded hash_key */
        size_t key_len;
        Peer *const *tried;            /* peers already tried for this request (compared by pointer) */
        size_t n_tried;
        uint64_t now;        /* CLOCK_MONOTONIC usec */
        uint64_t slow_start; /* usec; 0: off */
        uint64_t *rng;       /* xorshift64 state of the calling thread */
} PickRequest;

typedef struct BalancerOps {
        const char *name;
        /* Choose among the usable peers of `set` with conf->backup == backup, or NULL. */
        Peer *(*pick)(PeerSet *set, bool backup, const PickRequest *req);
} BalancerOps;

const BalancerOps *balancer_ops(UpstreamBalance b);

/* Primary peers first, backup peers only when no primary one is usable. Does not acquire. */
Peer *balancer_pick(UpstreamBalance b, PeerSet *set, const PickRequest *req);

/* Usable now: not `down`, not marked down by failures, healthy, below max_conns, not tried. */
bool peer_usable(const Peer *p, const PickRequest *req);

/* The weight in use now (scaled by BALANCER_WEIGHT_SCALE), less while slow start ramps it up
 * from a tenth to full. */
uint64_t peer_effective_weight(const Peer *p, uint64_t now, uint64_t slow_start);

/* Rendezvous score of a peer for a client key (exposed for tests). */
double balancer_hrw_score(const Peer *p, const uint8_t *key, size_t key_len, uint64_t weight);

uint64_t balancer_random(uint64_t *state);

/* Points on the consistent-hashing ring per unit of weight (as nginx's ketama). */
#define BALANCER_RING_POINTS 160
void hash_ring_free(HashRing *r);
