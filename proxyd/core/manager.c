/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "admin.h"
#include "cache-store.h"
#include "daemon.h"
#include "log.h"
#include "auth-cache.h"
#include "limit.h"
#include "manager.h"
#include "upstream.h"

#define STATUS_INTERVAL_USEC (5 * USEC_PER_SEC)

static unsigned cpu_count(void) {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
                return (unsigned) CPU_COUNT(&set);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned) n : 1;
}

static void log_diags(const ConfigDiags *d) {
        for (size_t i = 0; i < d->n; i++) {
                const ConfigDiag *x = &d->items[i];
                int level = x->warning ? LOG_WARNING : LOG_ERR;
                /* the priority says whether it is a warning */
                if (x->file && x->line > 0)
                        log_full_errno(level, 0, "%s:%d: %s", x->file, x->line, x->message);
                else if (x->file)
                        log_full_errno(level, 0, "%s: %s", x->file, x->message);
                else
                        log_full_errno(level, 0, "%s", x->message);
        }
}

static void first_error(const ConfigDiags *d, char *buf, size_t size) {
        for (size_t i = 0; i < d->n; i++) {
                if (d->items[i].warning)
                        continue;
                snprintf(buf, size, "%s:%d: %s", d->items[i].file ?: "?", d->items[i].line, d->items[i].message);
                return;
        }
        snprintf(buf, size, "unknown error");
}

/* The cache store's directory (the first configuration's; CacheDirectory= gives
 * $CACHE_DIRECTORY) and limits (every configuration's). */
static void manager_configure_cache(const Config *c) {
        char dir[PATH_MAX] = "/var/cache/proxyd";
        const char *env = getenv("CACHE_DIRECTORY");

        if (c->cache_path)
                snprintf(dir, sizeof(dir), "%s", c->cache_path);
        else if (env && *env)
                snprintf(dir, sizeof(dir), "%.*s", (int) strcspn(env, ":"), env); /* the first of a list */
        cache_store_configure(c->cache_disk_size > 0 ? dir : NULL, c->cache_memory_size, c->cache_disk_size);
}

/* Load and validate a configuration and bind what it needs; nothing is swapped yet. */
static int manager_build_generation(Manager *m, Generation **ret) {
        ConfigDiags diags = {};
        Config *c = NULL;
        ListenerServers *ls = NULL;
        int r;

        r = config_load(m->config_path, &c, &diags);
        if (r >= 0)
                r = tls_check_config(c, &diags);
        log_diags(&diags);
        if (r < 0) {
                if (diags.n_errors == 0)
                        log_error_errno(r, "Failed to load configuration %s", m->config_path);
                first_error(&diags, m->last_reload_error, sizeof(m->last_reload_error));
                config_diags_clear(&diags);
                config_unref(c);
                return r;
        }
        config_diags_clear(&diags);
        manager_configure_cache(c);

        /* Peers, balancer state; health carried over from the generation being replaced. */
        r = upstream_runtimes_setup(c, m->gen ? m->gen->config : NULL);
        if (r >= 0)
                r = limit_tables_setup(c, m->gen ? m->gen->config : NULL);
        if (r >= 0)
                r = auth_caches_setup(c);
        if (r < 0) {
                log_error_errno(r, "Failed to set up upstream state");
                snprintf(m->last_reload_error, sizeof(m->last_reload_error), "out of memory");
                config_unref(c);
                return r;
        }

        r = listeners_bind(&m->listeners, c, &ls);
        if (r < 0) {
                snprintf(m->last_reload_error, sizeof(m->last_reload_error), "listening sockets do not match");
                config_unref(c);
                return r;
        }

        Generation *g = calloc(1, sizeof(Generation));
        if (!g) {
                listener_servers_free(ls, m->listeners.n);
                config_unref(c);
                return -ENOMEM;
        }
        atomic_init(&g->refcount, 1);
        g->config = c;
        g->listener_servers = ls;
        g->n_listeners = m->listeners.n;

        /* TLS: certificates and keys are read here, so a reload re-reads them, and a broken
         * pair fails the reload while the old ones keep serving. */
        _cleanup_free_ char *err = NULL;
        g->tls_servers = calloc(g->n_listeners ?: 1, sizeof(TlsServerContext *));
        r = g->tls_servers ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < g->n_listeners; i++)
                if (ls[i].n > 0 && ls[i].servers[0]->n_tls_certificates > 0)
                        r = tls_server_context_new(ls[i].servers, ls[i].n, m->ticket_keys, &g->tls_servers[i], &err);
        if (r >= 0)
                r = tls_client_set_new(c, &g->tls_clients, &err);
        if (r >= 0 && c->access_log_file) {
                /* opened by every generation: `systemctl reload` after a rotation starts a new file */
                r = access_file_open(c->access_log_file, &g->access_file);
                if (r < 0) {
                        log_error_errno(r, "%s:%d: cannot open the access log \"%s\": %s", c->access_log_src ?: "?",
                                        c->access_log_line, c->access_log_file, strerror(-r));
                        snprintf(m->last_reload_error, sizeof(m->last_reload_error), "cannot open the access log %s",
                                 c->access_log_file);
                        generation_unref(g);
                        return r;
                }
        }
        if (r < 0) {
                log_error_errno(r, "TLS setup failed: %s", err ?: "out of memory");
                snprintf(m->last_reload_error, sizeof(m->last_reload_error), "TLS: %s", err ?: "out of memory");
                generation_unref(g);
                return r;
        }

        g->number = ++m->next_gen;
        c->generation = g->number;
        *ret = g;
        return 0;
}

static void on_peer_state(Peer *p, const char *upstream, bool up, const char *reason, void *userdata) {
        if (up)
                log_upstream_event(LOG_NOTICE, upstream, p->text, "healthy",
                                   "upstream %s: server %s (%s) is healthy again", upstream, p->text, p->conf->address);
        else
                log_upstream_event(LOG_WARNING, upstream, p->text, "unhealthy", "upstream %s: server %s (%s) is unhealthy: %s",
                                   upstream, p->text, p->conf->address, reason ?: "health check failed");
}

static void on_resolved(const Upstream *u, const UpstreamServer *s, const char *addresses, const char *error,
                        void *userdata) {
        if (addresses)
                log_upstream_event(LOG_NOTICE, u->name, s->address, "resolved",
                                   "upstream %s server %s: addresses now %s", u->name, s->address, addresses);
        else
                log_upstream_event(LOG_WARNING, u->name, s->address, "resolve-failed",
                                   "upstream %s server %s: cannot resolve %s: %s; keeping the current addresses",
                                   u->name, s->address, s->host, error ?: "unknown error");
}

/* Active checks and re-resolution follow the current generation. */
static int manager_start_upstream_watch(Manager *m) {
        int r;

        m->health = health_checker_free(m->health);
        m->resolver = resolver_free(m->resolver);
        r = health_checker_new(m->event, m->gen->config, m->gen->tls_clients, on_peer_state, m, &m->health);
        if (r < 0)
                return log_error_errno(r, "Failed to start upstream health checks");
        r = resolver_new(m->event, m->gen->config, on_resolved, m, &m->resolver);
        if (r < 0)
                return log_error_errno(r, "Failed to start the upstream resolver");
        return 0;
}

static uint64_t manager_sum(Manager *m, int which) {
        uint64_t s = 0;
        for (unsigned i = 0; i < m->n_workers; i++) {
                WorkerStats *st = &m->workers[i].stats;
                if (which == 0)
                        s += atomic_load_explicit(&st->requests, memory_order_relaxed);
                else
                        s += atomic_load_explicit(&st->connections, memory_order_relaxed);
        }
        return s;
}

static void manager_update_status(Manager *m) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        uint64_t req = manager_sum(m, 0), conns = manager_sum(m, 1);
        double rate = 0;
        unsigned up = 0, total = 0;
        CacheStats cs;
        char cache[160] = "";

        upstream_count_up(m->gen->config, &up, &total);
        cache_store_stats(&cs);
        if (cs.hits + cs.misses + cs.objects > 0)
                snprintf(cache, sizeof(cache),
                         ", cache: %llu hits, %llu misses, %llu objects, %llu bytes in memory, %llu on disk, "
                         "%llu evictions",
                         (unsigned long long) cs.hits, (unsigned long long) cs.misses, (unsigned long long) cs.objects,
                         (unsigned long long) cs.memory_bytes, (unsigned long long) cs.disk_bytes,
                         (unsigned long long) cs.evictions);
        if (m->status_last_time > 0 && now > m->status_last_time)
                rate = (double) (req - m->status_last_requests) * 1e6 / (double) (now - m->status_last_time);
        m->status_last_time = now;
        m->status_last_requests = req;
        daemon_notify_status("%u workers, %llu connections, %llu requests (%.1f/s), upstreams: %u/%u servers up%s, "
                             "configuration #%llu%s%s",
                             m->n_workers, (unsigned long long) conns, (unsigned long long) req, rate, up, total, cache,
                             (unsigned long long) m->gen->number, m->last_reload_error[0] ? "; last reload failed: " : "",
                             m->last_reload_error);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        manager_update_status(m);
        (void) sd_event_source_set_time(s, usec + STATUS_INTERVAL_USEC);
        return 0;
}

static bool workers_applied(Manager *m, uint64_t gen) {
        for (unsigned i = 0; i < m->n_workers; i++)
                if (atomic_load(&m->workers[i].applied_gen) < gen)
                        return false;
        return true;
}

static int on_ack(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        uint64_t v;

        (void) read(m->ack_fd, &v, sizeof(v));
        if (atomic_load(&m->n_exited) >= m->n_workers) {
                (void) sd_event_exit(m->event, m->exit_code);
                return 0;
        }
        if (m->stopping)
                return 0;
        if (!workers_applied(m, m->gen->number))
                return 0;
        if (!m->ready_sent) {
                m->ready_sent = true;
                log_info("proxyd %s started: %u workers, %zu listening sockets", PROXYD_VERSION, m->n_workers,
                         m->listeners.n);
                daemon_notify_ready(NULL);
                manager_update_status(m);
        } else if (m->reload_pending) {
                m->reload_pending = false;
                log_info("Configuration #%llu applied", (unsigned long long) m->gen->number);
                daemon_notify_ready(NULL);
                manager_update_status(m);
                admin_reload_done(m->admin, true, NULL);
        }
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) manager_reload(userdata);
        return 0;
}

int manager_reload(Manager *m) {
        Generation *g = NULL;
        int r;

        if (m->stopping)
                return -ESHUTDOWN;
        daemon_notify_reloading();
        log_info("Reloading configuration from %s", m->config_path);
        m->last_reload_error[0] = 0;
        r = manager_build_generation(m, &g);
        if (r < 0) {
                log_error("Reload failed, still serving configuration #%llu: %s", (unsigned long long) m->gen->number,
                          m->last_reload_error);
                daemon_notify_ready(NULL);
                manager_update_status(m);
                admin_note_reload(m->admin, true, m->last_reload_error);
                return r;
        }
        admin_note_reload(m->admin, false, NULL);
        log_set_max_level(g->config->log_level);
        if (g->config->workers != 0 && g->config->workers != m->n_workers)
                log_notice("workers = %u takes effect at the next restart", g->config->workers);
        generation_unref(m->gen);
        m->gen = g;
        (void) manager_start_upstream_watch(m);
        m->reload_pending = true;
        for (unsigned i = 0; i < m->n_workers; i++)
                worker_post_generation(&m->workers[i], g);
        /* READY=1 follows once every worker serves the new generation (on_ack). */
        return 0;
}

static int on_ticket_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r = tls_ticket_keys_rotate(m->ticket_keys);
        if (r < 0)
                log_warning_errno(r, "Failed to rotate the TLS session ticket key");
        (void) sd_event_source_set_time(s, usec + TLS_TICKET_ROTATE_SEC * USEC_PER_SEC);
        return 0;
}

static int on_shutdown_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        log_notice("shutdown_timeout expired, closing the remaining connections");
        for (unsigned i = 0; i < m->n_workers; i++)
                worker_post_exit(&m->workers[i]);
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->stopping) {
                /* a second signal: stop now */
                on_shutdown_timer(NULL, 0, m);
                return 0;
        }
        m->stopping = true;
        daemon_notify_stopping("Stopping: finishing in-flight requests");
        log_info("Stopping: no new connections, draining %llu open ones (up to %llums)",
                 (unsigned long long) manager_sum(m, 1),
                 (unsigned long long) (m->gen->config->shutdown_timeout / USEC_PER_MSEC));
        for (unsigned i = 0; i < m->n_workers; i++)
                worker_post_drain(&m->workers[i]);
        (void) sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC,
                                          m->gen->config->shutdown_timeout, USEC_PER_MSEC, on_shutdown_timer, m);
        return 0;
}

/* The watchdog is fed only while every worker loop answers pings: a stuck worker (or a
 * stuck manager) stops the pings and the service manager restarts proxyd. */
static int on_watchdog_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        bool all = true;

        for (unsigned i = 0; i < m->n_workers; i++)
                if (atomic_load(&m->workers[i].pong_seq) != m->ping_seq)
                        all = false;
        if (all) {
                daemon_notify_watchdog();
                m->watchdog_missed = false;
        } else if (!m->watchdog_missed) {
                m->watchdog_missed = true;
                log_warning("A worker did not answer the watchdog ping in time");
        }
        if (all || m->ping_seq == 0) {
                m->ping_seq++;
                for (unsigned i = 0; i < m->n_workers; i++)
                        worker_post_ping(&m->workers[i], m->ping_seq);
        }
        (void) sd_event_source_set_time(s, usec + m->watchdog_usec / 4);
        return 0;
}

static void manager_worker_ack(void *userdata) {
        Manager *m = userdata;
        uint64_t one = 1;
        (void) write(m->ack_fd, &one, sizeof(one));
}

static void manager_worker_exited(void *userdata, Worker *w, int error) {
        Manager *m = userdata;
        if (error < 0)
                m->exit_code = 1;
        atomic_fetch_add(&m->n_exited, 1);
        manager_worker_ack(m);
}

/* What the admin endpoint's commands see of the manager (admin.h). */
static Generation *admin_generation(void *userdata) {
        return ((Manager *) userdata)->gen;
}

static HealthChecker *admin_health(void *userdata) {
        return ((Manager *) userdata)->health;
}

static int admin_reload(void *userdata, const char **ret_error) {
        Manager *m = userdata;
        int r = manager_reload(m);
        *ret_error = m->last_reload_error;
        return r;
}

int manager_new(const char *config_path, const WorkerSessionOps *sessions, Manager **ret) {
        Manager *m = calloc(1, sizeof(Manager));
        int r;

        if (!m)
                return -ENOMEM;
        m->sessions = sessions;
        m->ack_fd = -EBADF;
        m->config_path = strdup(config_path);
        if (!m->config_path) {
                free(m);
                return -ENOMEM;
        }
        r = metrics_registry_new(&m->metrics);
        if (r < 0)
                goto fail;
        r = tls_ticket_keys_new(&m->ticket_keys);
        if (r < 0)
                goto fail;
        r = listeners_collect(&m->listeners);
        if (r < 0)
                goto fail;
        r = manager_build_generation(m, &m->gen);
        if (r < 0)
                goto fail;
        log_set_max_level(m->gen->config->log_level);

        r = sd_event_default(&m->event);
        if (r < 0)
                goto fail;
        m->ack_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (m->ack_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(m->event, &m->ack_source, m->ack_fd, EPOLLIN, on_ack, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGTERM, on_sigterm, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_sigterm, m);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &m->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                               USEC_PER_SEC, on_status_timer, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->status_timer, SD_EVENT_ON);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &m->ticket_timer, CLOCK_MONOTONIC,
                                               TLS_TICKET_ROTATE_SEC * USEC_PER_SEC, USEC_PER_SEC, on_ticket_timer, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->ticket_timer, SD_EVENT_ON);
        if (r >= 0)
                r = manager_start_upstream_watch(m);
        if (r < 0)
                goto fail;
        m->watchdog_usec = daemon_watchdog_usec();
        if (m->watchdog_usec > 0) {
                r = sd_event_add_time_relative(m->event, &m->watchdog_timer, CLOCK_MONOTONIC, m->watchdog_usec / 4,
                                               USEC_PER_MSEC, on_watchdog_timer, m);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->watchdog_timer, SD_EVENT_ON);
                if (r < 0)
                        goto fail;
        }

        m->n_workers = m->gen->config->workers ?: cpu_count();
        m->workers = calloc(m->n_workers, sizeof(Worker));
        if (!m->workers) {
                r = -ENOMEM;
                goto fail;
        }
        for (unsigned i = 0; i < m->n_workers; i++)
                m->workers[i].wake_fd = -EBADF;
        const AdminHost ah = {
                .event = m->event,
                .n_workers = m->n_workers,
                .generation = admin_generation,
                .health = admin_health,
                .reload = admin_reload,
                .userdata = m,
        };
        r = admin_new(&ah, &m->admin);
        if (r < 0)
                goto fail;
        *ret = m;
        return 0;
fail:
        manager_free(m);
        return r;
}

int manager_run(Manager *m) {
        unsigned started = 0;
        int r = 0;

        m->worker_host = (WorkerHost){
                .sessions = m->sessions,
                .workers = m->workers,
                .n_workers = m->n_workers,
                .listeners = &m->listeners,
                .ack = manager_worker_ack,
                .exited = manager_worker_exited,
                .userdata = m,
                .metrics = m->metrics,
                .admin = m->admin,
        };
        for (unsigned i = 0; i < m->n_workers; i++) {
                Worker *w = &m->workers[i];
                r = worker_init(w, &m->worker_host, i);
                if (r < 0)
                        break;
                WorkerGen *wg = calloc(1, sizeof(WorkerGen));
                if (!wg) {
                        r = -ENOMEM;
                        break;
                }
                wg->gen = generation_ref(m->gen);
                wg->refs = 1;
                wg->worker = w;
                w->gen = wg;
                r = worker_start(w);
                if (r < 0)
                        break;
                started++;
        }
        if (r < 0) {
                log_error_errno(r, "Failed to start worker threads");
                m->stopping = true;
                for (unsigned i = 0; i < started; i++)
                        worker_post_exit(&m->workers[i]);
                for (unsigned i = 0; i < started; i++)
                        worker_join(&m->workers[i]);
                return r;
        }

        r = sd_event_loop(m->event);
        for (unsigned i = 0; i < m->n_workers; i++)
                worker_post_exit(&m->workers[i]);
        for (unsigned i = 0; i < m->n_workers; i++)
                worker_join(&m->workers[i]);
        if (r < 0)
                return log_error_errno(r, "Event loop failed");
        log_info("Stopped");
        return m->exit_code > 0 ? -EIO : 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        m->admin = admin_free(m->admin);
        for (unsigned i = 0; m->workers && i < m->n_workers; i++)
                worker_done(&m->workers[i]);
        m->metrics = metrics_registry_free(m->metrics);
        free(m->workers);
        sd_event_source_disable_unref(m->ack_source);
        sd_event_source_disable_unref(m->watchdog_timer);
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->shutdown_timer);
        sd_event_source_disable_unref(m->ticket_timer);
        health_checker_free(m->health);
        resolver_free(m->resolver);
        if (m->ack_fd >= 0)
                close(m->ack_fd);
        generation_unref(m->gen);
        listeners_close(&m->listeners);
        tls_ticket_keys_free(m->ticket_keys);
        sd_event_unref(m->event);
        free(m->config_path);
        free(m);
        return NULL;
}
