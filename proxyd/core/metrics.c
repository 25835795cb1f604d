/* SPDX-License-Identifier: MIT */
/* Per-worker counters and the registry of their keys. See metrics.h. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

/* Upper bounds of the histogram buckets, in usec: 5ms .. 10s (Prometheus' defaults, plus 1ms
 * and 2.5ms for a proxy whose answers are often that fast). */
const uint64_t metrics_bucket_usec[METRICS_BUCKETS] = {
        1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000,
};

unsigned metrics_bucket(uint64_t usec) {
        for (unsigned i = 0; i < METRICS_BUCKETS; i++)
                if (usec <= metrics_bucket_usec[i])
                        return i;
        return METRICS_BUCKETS;
}

int metrics_registry_new(MetricsRegistry **ret) {
        MetricsRegistry *r = calloc(1, sizeof(MetricsRegistry));
        if (!r)
                return -ENOMEM;
        pthread_mutex_init(&r->lock, NULL);
        *ret = r;
        return 0;
}

MetricsRegistry *metrics_registry_free(MetricsRegistry *r) {
        if (!r)
                return NULL;
        for (unsigned i = 0; i < r->n; i++) {
                free(r->keys[i].a);
                free(r->keys[i].b);
        }
        free(r->keys);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
}

static unsigned registry_lookup(MetricsRegistry *r, MetricsKind kind, const char *a, const char *b) {
        unsigned id = 0;

        pthread_mutex_lock(&r->lock);
        for (unsigned i = 0; i < r->n && id == 0; i++)
                if (r->keys[i].kind == kind && streq(r->keys[i].a, a) && streq_ptr(r->keys[i].b, b))
                        id = i + 1;
        if (id == 0 && r->n < METRICS_IDS_MAX) {
                MetricsKey *k = reallocarray(r->keys, r->n + 1, sizeof(MetricsKey));
                if (k) {
                        r->keys = k;
                        k[r->n] = (MetricsKey){.kind = kind, .a = strdup(a), .b = b ? strdup(b) : NULL};
                        if (k[r->n].a && (!b || k[r->n].b))
                                id = ++r->n;
                        else {
                                free(k[r->n].a);
                                free(k[r->n].b);
                        }
                }
        }
        pthread_mutex_unlock(&r->lock);
        if (id == 0)
                atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return id;
}

static unsigned cached_id(atomic_uint *cache, MetricsRegistry *r, MetricsKind kind, const char *a,
                          const char *b) {
        unsigned id = atomic_load_explicit(cache, memory_order_relaxed);
        if (_likely_(id != 0))
                return id;
        id = registry_lookup(r, kind, a, b);
        atomic_store_explicit(cache, id, memory_order_relaxed);
        return id;
}

unsigned metrics_server_id(MetricsRegistry *r, const Server *s) {
        return cached_id((atomic_uint *)&s->metrics_id, r, METRICS_SERVER, s->name ?: "", NULL);
}

static const char *const match_names[] = {[MATCH_EXACT] = "exact",
                                          [MATCH_PREFIX] = "prefix",
                                          [MATCH_REGEX] = "regex",
                                          [MATCH_IREGEX] = "iregex"};

unsigned metrics_location_id(MetricsRegistry *r, const Server *s, const Location *loc) {
        unsigned id = atomic_load_explicit((atomic_uint *)&loc->metrics_id, memory_order_relaxed);
        char key[512];

        if (_likely_(id != 0))
                return id;
        snprintf(key, sizeof(key), "%s %s", match_names[loc->match], loc->pattern ?: "");
        return cached_id((atomic_uint *)&loc->metrics_id, r, METRICS_LOCATION, s->name ?: "", key);
}

unsigned metrics_peer_id(MetricsRegistry *r, const char *group, const Peer *p) {
        return cached_id((atomic_uint *)&p->metrics_id, r, METRICS_PEER, group, p->text);
}

MetricsSlot *worker_metrics_slot(WorkerMetrics *m, unsigned id) {
        if (id == 0 || id > METRICS_IDS_MAX)
                return NULL;
        unsigned page = (id - 1) / METRICS_PAGE;
        MetricsSlot *p = atomic_load_explicit(&m->pages[page], memory_order_relaxed);
        if (_unlikely_(!p)) {
                p = calloc(METRICS_PAGE, sizeof(MetricsSlot));
                if (!p)
                        return NULL;
                /* release: a scrape that sees the pointer sees zeroed counters */
                atomic_store_explicit(&m->pages[page], p, memory_order_release);
        }
        return &p[(id - 1) % METRICS_PAGE];
}

void worker_metrics_done(WorkerMetrics *m) {
        for (size_t i = 0; i < ELEMENTSOF(m->pages); i++)
                free(atomic_exchange(&m->pages[i], NULL));
}

static void count_duration(MetricsSlot *s, uint64_t usec) {
        unsigned b = metrics_bucket(usec);
        if (b < METRICS_BUCKETS)
                metrics_add(&s->buckets[b], 1);
        metrics_add(&s->count, 1);
        metrics_add(&s->sum_usec, usec);
}

void metrics_count_exchange(WorkerMetrics *m, MetricsRegistry *reg, const MetricsExchange *e) {
        MetricsSlot *s;

        if (!e->server || !reg)
                return;
        unsigned cls = e->status >= 100 && e->status < 600 ? (unsigned)(e->status / 100 - 1) : 4;
        unsigned proto = e->minor >= 1 ? 1 : 0, scheme = e->tls ? 1 : 0;

        s = worker_metrics_slot(m, metrics_server_id(reg, e->server));
        if (s) {
                metrics_add(&s->requests[scheme][proto][cls], 1);
                metrics_add(&s->bytes_in, e->bytes_in);
                metrics_add(&s->bytes_out, e->bytes_out);
                count_duration(s, e->duration_usec);
        }
        if (e->loc) {
                s = worker_metrics_slot(m, metrics_location_id(reg, e->server, e->loc));
                if (s)
                        metrics_add(&s->requests[scheme][proto][cls], 1);
        }
        if (e->peer && e->group) {
                s = worker_metrics_slot(m, metrics_peer_id(reg, e->group, e->peer));
                if (s) {
                        metrics_add(&s->requests[scheme][proto][cls], 1);
                        count_duration(s, e->upstream_usec);
                }
        }
}

int metrics_append_label(Buf *b, const char *v) {
        int r = 0;
        for (const char *p = v ?: ""; *p && r >= 0; p++) {
                if (*p == '\\' || *p == '"')
                        r = buf_printf(b, "\\%c", *p);
                else if (*p == '\n')
                        r = buf_append_str(b, "\\n");
                else
                        r = buf_append(b, p, 1);
        }
        return r;
}
