/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Active health checks, run in the manager's event loop: every `interval` each peer of an
 * upstream with a health_check gets `GET path HTTP/1.1` on a fresh non-blocking connection
 * (TLS when the group is reached over https);
 * the status line decides. `fails` consecutive failures mark the peer unhealthy (it gets no
 * new requests), `passes` consecutive successes mark it healthy again and start its slow
 * start. Peers are healthy until checks say otherwise. Never blocks; does not log: state
 * changes go to the callback.
 */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "tls.h"
#include "upstream.h"

typedef struct HealthChecker HealthChecker;

typedef void (*PeerStateChanged)(Peer *p, const char *upstream, bool up, const char *reason, void *userdata);

/* Takes a reference on c (its runtimes must be set up). tls: the client contexts of the same
 * configuration, for groups that a location reaches over https: their probes speak TLS with
 * that location's settings (the first such location). cb may be NULL. */
int health_checker_new(sd_event *e, Config *c, const TlsClientSet *tls, PeerStateChanged cb, void *userdata,
                       HealthChecker **ret);
HealthChecker *health_checker_free(HealthChecker *h);

/* Probe one peer of u now, besides the regular rounds; done gets its result (reason: why it
 * failed). -EOPNOTSUPP: u has no health_check. The result counts like any other. */
typedef void (*HealthProbeDone)(Peer *p, bool ok, const char *reason, void *userdata);
int health_checker_probe_now(HealthChecker *h, const Upstream *u, Peer *peer, HealthProbeDone done,
                             void *userdata);
