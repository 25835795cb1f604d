/* SPDX-License-Identifier: MIT */
/*
 * The admin endpoint's read-only answers, made in the asking worker's thread from its
 * configuration generation, the workers' counters (summed here) and the peers' shared state:
 * /metrics (Prometheus text format 0.0.4, which OpenMetrics parsers accept too), the status
 * page's JSON and the list of upstream servers.
 */
#include <stddef.h>
#include <stdio.h>

#include "admin.h"
#include "cache-store.h"
#include "limit.h"
#include "upstream.h"

static const char *const class_names[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
static const char *const proto_names[2] = {"HTTP/1.0", "HTTP/1.1"};
static const char *const scheme_names[2] = {"http", "https"};

/* One key's slot summed over the workers. */
static void metrics_sum(Worker *workers, unsigned n_workers, unsigned id, MetricsSum *ret) {
        *ret = (MetricsSum){};
        if (id == 0 || id > METRICS_IDS_MAX)
                return;
        for (unsigned w = 0; w < n_workers; w++) {
                const MetricsSlot *p = atomic_load_explicit(
                        &workers[w].metrics.pages[(id - 1) / METRICS_PAGE], memory_order_acquire);
                if (!p)
                        continue;
                const MetricsSlot *s = &p[(id - 1) % METRICS_PAGE];
                for (unsigned a = 0; a < 2; a++)
                        for (unsigned b = 0; b < 2; b++)
                                for (unsigned c = 0; c < 5; c++)
                                        ret->requests[a][b][c] += atomic_load_explicit(&s->requests[a][b][c],
                                                                                       memory_order_relaxed);
                ret->bytes_in += atomic_load_explicit(&s->bytes_in, memory_order_relaxed);
                ret->bytes_out += atomic_load_explicit(&s->bytes_out, memory_order_relaxed);
                for (unsigned k = 0; k < METRICS_BUCKETS; k++)
                        ret->buckets[k] += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
                ret->count += atomic_load_explicit(&s->count, memory_order_relaxed);
                ret->sum_usec += atomic_load_explicit(&s->sum_usec, memory_order_relaxed);
        }
}

typedef struct Totals {
        uint64_t connections, accepted, requests, active, idle_upstream, tls, tls_failed;
} Totals;

static void totals(const WorkerHost *m, Totals *t) {
        *t = (Totals){};
        for (unsigned i = 0; i < m->n_workers; i++) {
                Worker *w = &m->workers[i];
                t->connections += atomic_load_explicit(&w->stats.connections, memory_order_relaxed);
                t->accepted += atomic_load_explicit(&w->stats.accepted, memory_order_relaxed);
                t->requests += atomic_load_explicit(&w->stats.requests, memory_order_relaxed);
                /* plain fields of the worker's own: a relaxed read of a word is all we need */
                t->active += __atomic_load_n(&w->n_exchanges, __ATOMIC_RELAXED);
                t->idle_upstream += __atomic_load_n(&w->pool.n_idle, __ATOMIC_RELAXED);
                t->tls += atomic_load_explicit(&w->metrics.tls_handshakes, memory_order_relaxed);
                t->tls_failed +=
                        atomic_load_explicit(&w->metrics.tls_handshake_failures, memory_order_relaxed);
        }
}

/* The configuration's servers, and the built-in admin server last when there is one. */
static size_t n_servers(const Config *c) {
        return c->n_servers + (c->admin_builtin ? 1 : 0);
}

static const Server *server_at(const Config *c, size_t i) {
        return i < c->n_servers ? c->servers[i] : c->admin_builtin;
}

static const char *location_label(const Location *loc, char *buf, size_t size) {
        static const char *const kinds[] = {
                [MATCH_EXACT] = "=", [MATCH_PREFIX] = "", [MATCH_REGEX] = "~", [MATCH_IREGEX] = "~*"};
        snprintf(buf, size, "%s%s%s", kinds[loc->match], *kinds[loc->match] ? " " : "", loc->pattern ?: "");
        return buf;
}

static void header(Buf *b, const char *name, const char *type, const char *help) {
        (void)buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `name{k1="v1",k2="v2"` (the caller closes the braces) */
static void series(Buf *b, const char *name, const char *k1, const char *v1, const char *k2,
                   const char *v2) {
        (void)buf_printf(b, "%s{%s=\"", name, k1);
        (void)metrics_append_label(b, v1);
        (void)buf_append(b, "\"", 1);
        if (k2) {
                (void)buf_printf(b, ",%s=\"", k2);
                (void)metrics_append_label(b, v2);
                (void)buf_append(b, "\"", 1);
        }
}

static void histogram(Buf *b, const char *name, const char *k1, const char *v1, const char *k2,
                      const char *v2, const MetricsSum *s) {
        uint64_t cum = 0;
        for (unsigned i = 0; i < METRICS_BUCKETS; i++) {
                cum += s->buckets[i];
                series(b, name, k1, v1, k2, v2);
                (void)buf_printf(b, ",le=\"%g\"} %llu\n", (double)metrics_bucket_usec[i] / 1e6,
                                 (unsigned long long)cum);
        }
        series(b, name, k1, v1, k2, v2);
        (void)buf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)s->count);
}

static void histogram_tail(Buf *b, const char *base, const char *k1, const char *v1, const char *k2,
                           const char *v2, const MetricsSum *s) {
        char n[128];
        snprintf(n, sizeof(n), "%s_sum", base);
        series(b, n, k1, v1, k2, v2);
        (void)buf_printf(b, "} %.6f\n", (double)s->sum_usec / 1e6);
        snprintf(n, sizeof(n), "%s_count", base);
        series(b, n, k1, v1, k2, v2);
        (void)buf_printf(b, "} %llu\n", (unsigned long long)s->count);
}

static void requests_by_class(Buf *b, const char *name, const char *k1, const char *v1, const char *k2,
                              const char *v2, const MetricsSum *s) {
        for (unsigned sc = 0; sc < 2; sc++)
                for (unsigned p = 0; p < 2; p++)
                        for (unsigned c = 0; c < 5; c++) {
                                if (s->requests[sc][p][c] == 0)
                                        continue;
                                series(b, name, k1, v1, k2, v2);
                                (void)buf_printf(b, ",code=\"%s\",protocol=\"%s\",scheme=\"%s\"} %llu\n",
                                                 class_names[c], proto_names[p], scheme_names[sc],
                                                 (unsigned long long)s->requests[sc][p][c]);
                        }
}

typedef void (*PeerVisit)(Buf *b, const Upstream *u, const Peer *p, void *userdata);

static void for_each_peer(const Config *c, Buf *b, PeerVisit visit, void *userdata) {
        for (size_t i = 0; i < c->n_upstreams; i++) {
                PeerSet *set = upstream_runtime_peers(c->upstreams[i]->rt);
                for (size_t k = 0; set && k < set->n; k++)
                        visit(b, c->upstreams[i], set->peers[k], userdata);
                peer_set_unref(set);
        }
}

typedef struct PeerMetric {
        const char *name;
        const WorkerHost *m;
        uint64_t now;
} PeerMetric;

static unsigned peer_weight(const Peer *p) {
        return atomic_load(&p->weight_override) ?: p->conf->weight;
}

static void visit_peer(Buf *b, const Upstream *u, const Peer *p, void *userdata) {
        PeerMetric *pm = userdata;
        const char *n = pm->name;
        uint64_t v = 0;

        if (streq(n, "proxyd_upstream_server_state")) {
                PeerState st = peer_state(p, pm->now);
                for (PeerState s = 0; s < _PEER_STATE_MAX; s++) {
                        series(b, n, "upstream", u->name, "server", p->text);
                        (void)buf_printf(b, ",state=\"%s\"} %d\n", peer_state_name(s), s == st);
                }
                return;
        }
        if (streq(n, "proxyd_upstream_response_duration_seconds")) {
                MetricsSum s;
                metrics_sum(pm->m->workers, pm->m->n_workers, metrics_peer_id(pm->m->metrics, u->name, p),
                            &s);
                histogram(b, "proxyd_upstream_response_duration_seconds_bucket", "upstream", u->name,
                          "server", p->text, &s);
                histogram_tail(b, n, "upstream", u->name, "server", p->text, &s);
                return;
        }
        if (streq(n, "proxyd_upstream_server_health_checks_total")) {
                series(b, n, "upstream", u->name, "server", p->text);
                (void)buf_printf(b, ",result=\"pass\"} %llu\n",
                                 (unsigned long long)atomic_load(&p->checks_passed));
                series(b, n, "upstream", u->name, "server", p->text);
                (void)buf_printf(b, ",result=\"fail\"} %llu\n",
                                 (unsigned long long)atomic_load(&p->checks_failed));
                return;
        }
        if (streq(n, "proxyd_upstream_server_active_requests"))
                v = atomic_load(&p->active);
        else if (streq(n, "proxyd_upstream_server_weight"))
                v = peer_weight(p);
        else if (streq(n, "proxyd_upstream_server_selected_total"))
                v = atomic_load(&p->requests);
        else if (streq(n, "proxyd_upstream_server_failures_total"))
                v = atomic_load(&p->failures);
        series(b, n, "upstream", u->name, "server", p->text);
        (void)buf_printf(b, "} %llu\n", (unsigned long long)v);
}

static const struct {
        const char *name, *type, *help;
} peer_metrics[] = {
        {"proxyd_upstream_server_state", "gauge",
         "1 for the state the upstream server is in (up, down, unhealthy, draining, disabled)"},
        {"proxyd_upstream_server_active_requests", "gauge", "Requests the upstream server is handling now"},
        {"proxyd_upstream_server_weight", "gauge", "Weight in use (configured, or set at run time)"},
        {"proxyd_upstream_server_selected_total", "counter", "Times the balancer chose the upstream server"},
        {"proxyd_upstream_server_failures_total", "counter",
         "Failed attempts (connect errors, timeouts, invalid heads, next_upstream statuses)"},
        {"proxyd_upstream_server_health_checks_total", "counter", "Active health check results"},
        {"proxyd_upstream_response_duration_seconds", "histogram",
         "From the start of the attempt (connect or pooled connection) to the end of the response"},
};

/* The response cache's store is one per process: its counters are read under its lock. */
static void cache_metrics(Buf *out) {
        static const struct {
                const char *name, *type, *help;
                size_t offset;
        } fams[] = {
                {"proxyd_cache_hits_total", "counter", "Requests answered from the cache (fresh or stale)",
                 offsetof(CacheStats, hits)},
                {"proxyd_cache_misses_total", "counter",
                 "Requests of cacheable locations that went to the upstream (miss, expired, bypass)",
                 offsetof(CacheStats, misses)},
                {"proxyd_cache_stores_total", "counter", "Responses stored in the cache",
                 offsetof(CacheStats, stores)},
                {"proxyd_cache_evictions_total", "counter",
                 "Objects (or their in-memory copies) dropped to keep the cache within its sizes",
                 offsetof(CacheStats, evictions)},
                {"proxyd_cache_purged_total", "counter", "Objects taken out by PURGE or the admin endpoint",
                 offsetof(CacheStats, purged)},
                {"proxyd_cache_objects", "gauge", "Objects in the cache", offsetof(CacheStats, objects)},
                {"proxyd_cache_memory_bytes", "gauge", "Bytes of cached bodies in memory",
                 offsetof(CacheStats, memory_bytes)},
                {"proxyd_cache_disk_bytes", "gauge", "Bytes of cache files on disk",
                 offsetof(CacheStats, disk_bytes)},
        };
        CacheStats st;

        cache_store_stats(&st);
        for (size_t i = 0; i < ELEMENTSOF(fams); i++) {
                uint64_t v;
                memcpy(&v, (const char *)&st + fams[i].offset, sizeof(v));
                header(out, fams[i].name, fams[i].type, fams[i].help);
                (void)buf_printf(out, "%s %llu\n", fams[i].name, (unsigned long long)v);
        }
}

int admin_render_metrics(Admin *a, Worker *w, Buf *out) {
        const WorkerHost *m = w->host;
        const Config *c = w->gen->gen->config;
        MetricsRegistry *reg = w->host->metrics;
        AdminCounters ac;
        Totals t;
        char lb[512];

        totals(m, &t);
        admin_counters(a, &ac);
        (void)buf_printf(out,
                         "# HELP proxyd_build_info proxyd's version\n# TYPE proxyd_build_info gauge\n"
                         "proxyd_build_info{version=\"%s\"} 1\n",
                         PROXYD_VERSION);
        header(out, "proxyd_workers", "gauge", "Worker threads");
        (void)buf_printf(out, "proxyd_workers %u\n", m->n_workers);
        header(out, "proxyd_config_generation", "gauge", "Number of the configuration generation served");
        (void)buf_printf(out, "proxyd_config_generation %llu\n", (unsigned long long)w->gen->gen->number);
        header(out, "proxyd_reloads_total", "counter",
               "Configuration reloads tried (SIGHUP or the admin endpoint)");
        (void)buf_printf(out, "proxyd_reloads_total %llu\n", (unsigned long long)ac.reloads);
        header(out, "proxyd_reload_failures_total", "counter",
               "Reloads that failed (the old configuration kept serving)");
        (void)buf_printf(out, "proxyd_reload_failures_total %llu\n", (unsigned long long)ac.reload_failures);
        header(out, "proxyd_connections", "gauge", "Open client connections");
        (void)buf_printf(out, "proxyd_connections %llu\n", (unsigned long long)t.connections);
        header(out, "proxyd_connections_accepted_total", "counter", "Client connections accepted");
        (void)buf_printf(out, "proxyd_connections_accepted_total %llu\n", (unsigned long long)t.accepted);
        header(out, "proxyd_requests_active", "gauge", "Requests in progress");
        (void)buf_printf(out, "proxyd_requests_active %llu\n", (unsigned long long)t.active);
        header(out, "proxyd_upstream_idle_connections", "gauge",
               "Idle upstream connections in the keep-alive pools");
        (void)buf_printf(out, "proxyd_upstream_idle_connections %llu\n",
                         (unsigned long long)t.idle_upstream);
        header(out, "proxyd_tls_handshakes_total", "counter",
               "TLS handshakes with clients, finished or failed");
        (void)buf_printf(out, "proxyd_tls_handshakes_total %llu\n", (unsigned long long)t.tls);
        header(out, "proxyd_tls_handshake_failures_total", "counter",
               "TLS handshakes with clients that failed");
        (void)buf_printf(out, "proxyd_tls_handshake_failures_total %llu\n",
                         (unsigned long long)t.tls_failed);

        header(out, "proxyd_server_requests_total", "counter",
               "Requests by server, status class and protocol");
        for (size_t i = 0; i < n_servers(c); i++) {
                MetricsSum s;
                metrics_sum(m->workers, m->n_workers, metrics_server_id(reg, server_at(c, i)), &s);
                requests_by_class(out, "proxyd_server_requests_total", "server", server_at(c, i)->name, NULL,
                                  NULL, &s);
        }
        header(out, "proxyd_requests_total", "counter",
               "Requests by server, location, status class and protocol");
        for (size_t i = 0; i < n_servers(c); i++)
                for (size_t k = 0; k < server_at(c, i)->n_locations; k++) {
                        const Location *loc = server_at(c, i)->locations[k];
                        MetricsSum s;
                        metrics_sum(m->workers, m->n_workers, metrics_location_id(reg, server_at(c, i), loc),
                                    &s);
                        requests_by_class(out, "proxyd_requests_total", "server", server_at(c, i)->name,
                                          "location", location_label(loc, lb, sizeof(lb)), &s);
                }
        header(out, "proxyd_request_duration_seconds", "histogram",
               "From a request's first byte to the end of its response, by server");
        for (size_t i = 0; i < n_servers(c); i++) {
                MetricsSum s;
                metrics_sum(m->workers, m->n_workers, metrics_server_id(reg, server_at(c, i)), &s);
                histogram(out, "proxyd_request_duration_seconds_bucket", "server", server_at(c, i)->name,
                          NULL, NULL, &s);
                histogram_tail(out, "proxyd_request_duration_seconds", "server", server_at(c, i)->name, NULL,
                               NULL, &s);
        }
        header(out, "proxyd_received_bytes_total", "counter",
               "Bytes received from clients (heads and bodies)");
        for (size_t i = 0; i < n_servers(c); i++) {
                MetricsSum s;
                metrics_sum(m->workers, m->n_workers, metrics_server_id(reg, server_at(c, i)), &s);
                series(out, "proxyd_received_bytes_total", "server", server_at(c, i)->name, NULL, NULL);
                (void)buf_printf(out, "} %llu\n", (unsigned long long)s.bytes_in);
        }
        header(out, "proxyd_sent_bytes_total", "counter", "Bytes sent to clients (heads and bodies)");
        for (size_t i = 0; i < n_servers(c); i++) {
                MetricsSum s;
                metrics_sum(m->workers, m->n_workers, metrics_server_id(reg, server_at(c, i)), &s);
                series(out, "proxyd_sent_bytes_total", "server", server_at(c, i)->name, NULL, NULL);
                (void)buf_printf(out, "} %llu\n", (unsigned long long)s.bytes_out);
        }
        for (size_t i = 0; i < ELEMENTSOF(peer_metrics); i++) {
                PeerMetric pm = {.name = peer_metrics[i].name, .m = m, .now = now_usec(CLOCK_MONOTONIC)};
                header(out, peer_metrics[i].name, peer_metrics[i].type, peer_metrics[i].help);
                for_each_peer(c, out, visit_peer, &pm);
        }
        cache_metrics(out);
        header(out, "proxyd_limit_rejected_total", "counter",
               "Requests answered 429 by a per-client limit, by the limit that rejected them");
        for (size_t i = 0; i < c->n_limits; i++) {
                series(out, "proxyd_limit_rejected_total", "limit", c->limits[i]->name, NULL, NULL);
                (void)buf_printf(out, "} %llu\n", (unsigned long long)limit_rejected(c->limits[i]->rt));
        }
        header(out, "proxyd_metrics_keys_dropped_total", "counter",
               "Series not counted because the registry of servers, locations and upstream servers is full");
        (void)buf_printf(out, "proxyd_metrics_keys_dropped_total %llu\n",
                         (unsigned long long)atomic_load(&reg->dropped));
        return 0;
}

/* ---- JSON for the status page and proxyd ctl ---- */

static void json_peer(Buf *b, const WorkerHost *m, const Upstream *u, const Peer *p, uint64_t now) {
        MetricsSum s;
        metrics_sum(m->workers, m->n_workers, metrics_peer_id(m->metrics, u->name, p), &s);
        (void)buf_append_str(b, "{\"server\":");
        (void)json_append_string(b, p->text);
        (void)buf_append_str(b, ",\"address\":");
        (void)json_append_string(b, p->conf->address);
        (void)buf_printf(
                b,
                ",\"state\":\"%s\",\"weight\":%u,\"configured_weight\":%u,\"backup\":%s,\"active\":%u,"
                "\"selected\":%llu,\"failures\":%llu,\"checks_passed\":%llu,\"checks_failed\":%llu,"
                "\"responses\":%llu,\"response_time_sum\":%.6f}",
                peer_state_name(peer_state(p, now)), peer_weight(p), p->conf->weight,
                p->conf->backup ? "true" : "false", atomic_load(&p->active),
                (unsigned long long)atomic_load(&p->requests), (unsigned long long)atomic_load(&p->failures),
                (unsigned long long)atomic_load(&p->checks_passed),
                (unsigned long long)atomic_load(&p->checks_failed), (unsigned long long)s.count,
                (double)s.sum_usec / 1e6);
}

static void json_upstreams(Buf *b, const WorkerHost *m, const Config *c) {
        static const char *const balance[] = {"round_robin", "least_conn", "ip_hash", "random"};
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        (void)buf_append(b, "[", 1);
        for (size_t i = 0; i < c->n_upstreams; i++) {
                const Upstream *u = c->upstreams[i];
                PeerSet *set = upstream_runtime_peers(u->rt);
                (void)buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
                (void)json_append_string(b, u->name);
                (void)buf_printf(b, ",\"implicit\":%s,\"balance\":\"%s\",\"health_check\":%s,\"servers\":[",
                                 u->implicit ? "true" : "false", balance[u->balance],
                                 u->health_check ? "true" : "false");
                for (size_t k = 0; set && k < set->n; k++) {
                        if (k)
                                (void)buf_append(b, ",", 1);
                        json_peer(b, m, u, set->peers[k], now);
                }
                peer_set_unref(set);
                (void)buf_append_str(b, "]}");
        }
        (void)buf_append(b, "]", 1);
}

int admin_render_upstreams(Admin *a, Worker *w, Buf *out, bool text) {
        const WorkerHost *m = w->host;
        const Config *c = w->gen->gen->config;
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (!text) {
                json_upstreams(out, m, c);
                return buf_append(out, "\n", 1);
        }
        /* for proxyd ctl list: one line per server, columns aligned for the usual widths */
        (void)buf_printf(out, "%-16s %-24s %-10s %6s %6s %10s %8s %s\n", "GROUP", "SERVER", "STATE",
                         "WEIGHT", "ACTIVE", "SELECTED", "FAILURES", "CHECKS");
        for (size_t i = 0; i < c->n_upstreams; i++) {
                const Upstream *u = c->upstreams[i];
                PeerSet *set = upstream_runtime_peers(u->rt);
                for (size_t k = 0; set && k < set->n; k++) {
                        const Peer *p = set->peers[k];
                        char checks[48] = "-";
                        if (u->health_check)
                                snprintf(checks, sizeof(checks), "%llu/%llu",
                                         (unsigned long long)atomic_load(&p->checks_passed),
                                         (unsigned long long)atomic_load(&p->checks_failed));
                        (void)buf_printf(out, "%-16s %-24s %-10s %6u %6u %10llu %8llu %s\n", u->name,
                                         p->text, peer_state_name(peer_state(p, now)), peer_weight(p),
                                         atomic_load(&p->active),
                                         (unsigned long long)atomic_load(&p->requests),
                                         (unsigned long long)atomic_load(&p->failures), checks);
                }
                peer_set_unref(set);
        }
        return 0;
}

int admin_render_status(Admin *a, Worker *w, Buf *out) {
        const WorkerHost *m = w->host;
        const Config *c = w->gen->gen->config;
        AdminCounters ac;
        Totals t;

        totals(m, &t);
        admin_counters(a, &ac);
        (void)buf_printf(out,
                         "{\"version\":\"%s\",\"workers\":%u,\"generation\":%llu,\"uptime\":%.3f,"
                         "\"connections\":%llu,\"requests\":%llu,\"active\":%llu,\"reloads\":%llu,"
                         "\"reload_failures\":%llu,\"last_reload_error\":",
                         PROXYD_VERSION, m->n_workers, (unsigned long long)w->gen->gen->number,
                         (double)(now_usec(CLOCK_MONOTONIC) - ac.started) / 1e6,
                         (unsigned long long)t.connections, (unsigned long long)t.requests,
                         (unsigned long long)t.active, (unsigned long long)ac.reloads,
                         (unsigned long long)ac.reload_failures);
        (void)json_append_string(out, ac.last_error);
        (void)buf_append_str(out, ",\"servers\":[");
        for (size_t i = 0; i < n_servers(c); i++) {
                const Server *srv = server_at(c, i);
                MetricsSum s;
                uint64_t by_class[5] = {};
                metrics_sum(m->workers, m->n_workers, metrics_server_id(m->metrics, srv), &s);
                for (unsigned sc = 0; sc < 2; sc++)
                        for (unsigned p = 0; p < 2; p++)
                                for (unsigned k = 0; k < 5; k++)
                                        by_class[k] += s.requests[sc][p][k];
                (void)buf_append_str(out, i ? ",{\"name\":" : "{\"name\":");
                (void)json_append_string(out, srv->name);
                (void)buf_printf(
                        out,
                        ",\"admin\":%s,\"tls\":%s,\"requests\":%llu,\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,"
                        "\"4xx\":%llu,\"5xx\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_sum\":%."
                        "6f}",
                        srv->admin ? "true" : "false", srv->n_tls_certificates ? "true" : "false",
                        (unsigned long long)s.count, (unsigned long long)by_class[0],
                        (unsigned long long)by_class[1], (unsigned long long)by_class[2],
                        (unsigned long long)by_class[3], (unsigned long long)by_class[4],
                        (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out,
                        (double)s.sum_usec / 1e6);
        }
        (void)buf_append_str(out, "],\"upstreams\":");
        json_upstreams(out, m, c);
        return buf_append_str(out, "}\n");
}
