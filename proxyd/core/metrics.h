/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Counters for the admin endpoint's /metrics (Prometheus text format) and status page.
 *
 * Every worker counts into blocks of its own (WorkerMetrics): only that worker's thread
 * writes them, with relaxed loads and stores (a plain add on x86, no lock, no atomic
 * read-modify-write, no cache line written by two threads), and a scrape sums them over the
 * workers. A block ("slot") belongs to one key: a server, a location of a server, or an
 * upstream server (group + address), numbered by the MetricsRegistry. Keys are names, not
 * configuration objects, so the counts of a location go on across reloads; the objects
 * cache their number (metrics_id) on first use.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "balancer.h"
#include "buf.h"
#include "config.h"

#define METRICS_IDS_MAX 4096u /* keys; more are not counted (proxyd_metrics_keys_dropped_total) */
#define METRICS_PAGE 64u
#define METRICS_BUCKETS 12u /* finite histogram buckets (+Inf is the count) */

typedef struct MetricsSlot {
        /* requests [scheme: http, https][protocol: HTTP/1.0, HTTP/1.1][status class 1xx..5xx] */
        _Atomic uint64_t requests[2][2][5];
        _Atomic uint64_t bytes_in, bytes_out;
        _Atomic uint64_t buckets[METRICS_BUCKETS]; /* not cumulative; summed up at scrape */
        _Atomic uint64_t count;
        _Atomic uint64_t sum_usec;
} MetricsSlot;

typedef struct WorkerMetrics {
        _Atomic(MetricsSlot *) pages[METRICS_IDS_MAX / METRICS_PAGE]; /* published by the owner */
        _Atomic uint64_t tls_handshakes, tls_handshake_failures;
} WorkerMetrics;

typedef enum MetricsKind {
        METRICS_SERVER,
        METRICS_LOCATION,
        METRICS_PEER,
} MetricsKind;

typedef struct MetricsKey {
        MetricsKind kind;
        char *a; /* server name / upstream group */
        char *b; /* location ("prefix /api/") / server address; NULL for a server */
} MetricsKey;

typedef struct MetricsRegistry {
        pthread_mutex_t lock;
        MetricsKey *keys; /* id i+1 is keys[i] */
        unsigned n;
        atomic_uint_fast64_t dropped;
} MetricsRegistry;

int metrics_registry_new(MetricsRegistry **ret);
MetricsRegistry *metrics_registry_free(MetricsRegistry *r);

/* The key's number (1..METRICS_IDS_MAX), made on first use and cached in *cache; 0 when the
 * registry is full. Any thread. */
unsigned metrics_server_id(MetricsRegistry *r, const Server *s);
unsigned metrics_location_id(MetricsRegistry *r, const Server *s, const Location *loc);
unsigned metrics_peer_id(MetricsRegistry *r, const char *group, const Peer *p);

void worker_metrics_done(WorkerMetrics *m);

/* The worker's slot for id (allocated on first use), or NULL (id 0, out of memory). Owner only. */
MetricsSlot *worker_metrics_slot(WorkerMetrics *m, unsigned id);

/* A counter of the calling worker: no other thread writes it. */
static inline void metrics_add(_Atomic uint64_t *c, uint64_t v) {
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

static inline void metrics_tls_handshake(WorkerMetrics *m, bool ok) {
        metrics_add(&m->tls_handshakes, 1);
        if (!ok)
                metrics_add(&m->tls_handshake_failures, 1);
}

/* Bucket index for a duration: the first upper bound >= usec, METRICS_BUCKETS for +Inf. */
unsigned metrics_bucket(uint64_t usec);
extern const uint64_t metrics_bucket_usec[METRICS_BUCKETS];

/* One finished exchange, as the request path reports it (proxy/admin-http.c builds it). */
typedef struct MetricsExchange {
        const Server *server; /* NULL: none chosen (a bad request head) */
        const Location *loc;  /* NULL: none */
        int status;
        bool tls;
        int minor; /* HTTP/1.minor */
        uint64_t bytes_in, bytes_out;
        uint64_t duration_usec;
        const char *group;      /* the upstream group of the last attempt, or NULL */
        const Peer *peer;       /* its server, or NULL */
        uint64_t upstream_usec; /* from that attempt's start to the end of the response */
} MetricsExchange;

void metrics_count_exchange(WorkerMetrics *m, MetricsRegistry *reg, const MetricsExchange *e);

/* One id's slot summed over the workers (what a scrape reads: admin-render.c). */
typedef struct MetricsSum {
        uint64_t requests[2][2][5];
        uint64_t bytes_in, bytes_out;
        uint64_t buckets[METRICS_BUCKETS];
        uint64_t count;
        uint64_t sum_usec;
} MetricsSum;

/* Labels: a Prometheus label value, escaped (\\, \", \n). */
int metrics_append_label(Buf *b, const char *v);
