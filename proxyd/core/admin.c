/* SPDX-License-Identifier: MIT */
/*
 * The admin endpoint's commands, carried out in the manager thread: drain, disable, enable,
 * weight, forced health checks, reload, cache purge. See admin.h.
 */
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <systemd/sd-journal.h>

#include "admin.h"
#include "cache-store.h"
#include "health.h"
#include "log.h"
#include "upstream.h"

typedef struct AdminWorkerLink {
        Admin *admin;
        int fd;                  /* eventfd: manager -> this worker */
        sd_event_source *source; /* in the worker's loop, added from its thread */
        AdminRequest *replies;   /* under admin->lock */
        AdminRequest *waiting;   /* submitted, not answered yet: the worker's thread only */
} AdminWorkerLink;

struct Admin {
        AdminHost host;
        pthread_mutex_t lock;
        AdminRequest *queue; /* worker -> manager, under lock */
        int fd;
        sd_event_source *source;
        AdminRequest *waiting_reload; /* waiting for the outcome of a reload (manager thread) */
        AdminWorkerLink *links;
        unsigned n_links;
        atomic_uint_fast64_t reloads, reload_failures;
        char last_error[256]; /* of the last failed reload, under lock */
        uint64_t started;
};

void admin_counters(Admin *a, AdminCounters *ret) {
        ret->reloads = atomic_load(&a->reloads);
        ret->reload_failures = atomic_load(&a->reload_failures);
        ret->started = a->started;
        pthread_mutex_lock(&a->lock);
        memcpy(ret->last_error, a->last_error, sizeof(ret->last_error));
        pthread_mutex_unlock(&a->lock);
}

static const char *const action_names[_ADMIN_ACTION_MAX] = {
        [ADMIN_DRAIN] = "drain",   [ADMIN_DISABLE] = "disable", [ADMIN_ENABLE] = "enable",
        [ADMIN_WEIGHT] = "weight", [ADMIN_CHECK] = "check",     [ADMIN_RELOAD] = "reload",
        [ADMIN_PURGE] = "purge",
};

const char *admin_action_name(AdminAction a) {
        return a < _ADMIN_ACTION_MAX ? action_names[a] : "?";
}

int admin_action_from_name(const char *name) {
        for (int i = 0; i < _ADMIN_ACTION_MAX; i++)
                if (streq(action_names[i], name))
                        return i;
        return -EINVAL;
}

AdminRequest *admin_request_free(AdminRequest *req) {
        if (!req)
                return NULL;
        free(req->group);
        free(req->server);
        free(req->key);
        buf_free(&req->body);
        free(req);
        return NULL;
}

int json_append_string(Buf *b, const char *s) {
        int r = buf_append(b, "\"", 1);
        for (const unsigned char *p = (const unsigned char *)(s ?: ""); *p && r >= 0; p++) {
                if (*p == '"' || *p == '\\')
                        r = buf_printf(b, "\\%c", *p);
                else if (*p < 0x20)
                        r = buf_printf(b, "\\u%04x", *p);
                else
                        r = buf_append(b, p, 1);
        }
        return r < 0 ? r : buf_append(b, "\"", 1);
}

/* ---- the way back to the worker ---- */

static void admin_reply(Admin *a, AdminRequest *req) {
        AdminWorkerLink *l = &a->links[req->worker->index];
        uint64_t one = 1;

        pthread_mutex_lock(&a->lock);
        req->next = l->replies;
        l->replies = req;
        pthread_mutex_unlock(&a->lock);
        (void)write(l->fd, &one, sizeof(one));
}

static void reply_error(Admin *a, AdminRequest *req, int status, const char *fmt, ...) _printf_(4, 5);
static void reply_error(Admin *a, AdminRequest *req, int status, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        req->status = status;
        buf_reset(&req->body);
        (void)buf_append_str(&req->body, "{\"ok\":false,\"error\":");
        (void)json_append_string(&req->body, msg);
        (void)buf_append_str(&req->body, "}\n");
        admin_reply(a, req);
}

static int on_worker_reply(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AdminWorkerLink *l = userdata;
        AdminRequest *list;
        uint64_t v;

        (void)read(fd, &v, sizeof(v));
        pthread_mutex_lock(&l->admin->lock);
        list = l->replies;
        l->replies = NULL;
        pthread_mutex_unlock(&l->admin->lock);
        while (list) {
                AdminRequest *req = list;
                list = req->next;
                req->next = NULL;
                for (AdminRequest **p = &l->waiting; *p; p = &(*p)->wnext)
                        if (*p == req) {
                                *p = req->wnext;
                                break;
                        }
                req->replied(req->worker, req);
        }
        return 0;
}

void admin_forget(Admin *a, Worker *w, void *waiter) {
        for (AdminRequest *req = a->links[w->index].waiting; req; req = req->wnext)
                if (req->waiter == waiter)
                        req->waiter = NULL;
}

int admin_submit(Admin *a, Worker *w, AdminRequest *req) {
        AdminWorkerLink *l = &a->links[w->index];
        uint64_t one = 1;
        int r;

        if (!l->source) {
                r = sd_event_add_io(w->event, &l->source, l->fd, EPOLLIN, on_worker_reply, l);
                if (r < 0)
                        return r;
        }
        req->worker = w;
        req->wnext = l->waiting;
        l->waiting = req;
        pthread_mutex_lock(&a->lock);
        req->next = a->queue;
        a->queue = req;
        pthread_mutex_unlock(&a->lock);
        (void)write(a->fd, &one, sizeof(one));
        return 0;
}

/* ---- carrying out commands (manager thread) ---- */

static void admin_log(const AdminRequest *req, const char *fmt, ...) _printf_(2, 3);
static void admin_log(const AdminRequest *req, const char *fmt, ...) {
        char msg[768];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (log_to_journal()) {
                sd_journal_send("MESSAGE=%s (by %s)", msg, req->who, "PRIORITY=%i", LOG_NOTICE,
                                "PROXYD_ADMIN_ACTION=%s", admin_action_name(req->action),
                                "PROXYD_ADMIN_PID=%lld", req->have_cred ? (long long)req->pid : -1LL,
                                "PROXYD_ADMIN_UID=%lld", req->have_cred ? (long long)req->uid : -1LL,
                                "PROXYD_UPSTREAM_GROUP=%s", req->group ?: "", "PROXYD_UPSTREAM_SERVER=%s",
                                req->server ?: "", "PROXYD_CACHE_KEY=%s", req->key ?: "", NULL);
                return;
        }
        log_notice("%s (by %s)", msg, req->who);
}

static Upstream *find_group(const Config *c, const char *name) {
        for (size_t i = 0; c && name && i < c->n_upstreams; i++)
                if (streq(c->upstreams[i]->name, name))
                        return c->upstreams[i];
        return NULL;
}

static bool peer_matches(const Peer *p, const char *server) {
        return server && (streq(p->text, server) || streq(p->conf->address, server));
}

/* A forced check is answered when its last probe ended; the command itself holds one count
 * while it starts them (a probe may fail at once). */
static void check_finish(Admin *a, AdminRequest *req) {
        if (--req->pending > 0)
                return;
        (void)buf_printf(&req->body, "],\"ok\":%s}\n", req->ok ? "true" : "false");
        req->status = 200;
        admin_reply(a, req);
}

static void on_probe_done(Peer *p, bool ok, const char *reason, void *userdata) {
        AdminRequest *req = userdata;
        Admin *a = req->worker->host->admin;

        if (req->pending == 0)
                return;
        if (buf_len(&req->body) > 0 && buf_head(&req->body)[buf_len(&req->body) - 1] == '}')
                (void)buf_append(&req->body, ",", 1);
        (void)buf_append_str(&req->body, "{\"server\":");
        (void)json_append_string(&req->body, p->text);
        (void)buf_printf(&req->body, ",\"result\":\"%s\"", ok ? "pass" : "fail");
        if (reason) {
                (void)buf_append_str(&req->body, ",\"reason\":");
                (void)json_append_string(&req->body, reason);
        }
        (void)buf_append(&req->body, "}", 1);
        if (!ok)
                req->ok = false;
        check_finish(a, req);
}

static void admin_change_peers(Admin *a, AdminRequest *req, Upstream *u) {
        PeerSet *set = upstream_runtime_peers(u->rt);
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        unsigned n = 0;

        buf_reset(&req->body);
        req->ok = true;
        if (req->action == ADMIN_CHECK) {
                if (!u->health_check) {
                        peer_set_unref(set);
                        reply_error(a, req, 409, "upstream %s has no health_check", u->name);
                        return;
                }
                (void)buf_append_str(&req->body, "{\"results\":[");
                req->pending = 1;
        } else
                (void)buf_append_str(&req->body, "{\"ok\":true,\"servers\":[");
        for (size_t i = 0; set && i < set->n; i++) {
                Peer *p = set->peers[i];
                if (!peer_matches(p, req->server))
                        continue;
                n++;
                if (req->action == ADMIN_CHECK) {
                        req->pending++;
                        int r = health_checker_probe_now(a->host.health(a->host.userdata), u, p,
                                                         on_probe_done, req);
                        if (r < 0)
                                on_probe_done(p, false, "the health check could not start", req);
                        continue;
                }
                switch (req->action) {
                case ADMIN_DRAIN:
                        atomic_store(&p->admin, PEER_ADMIN_DRAIN);
                        break;
                case ADMIN_DISABLE:
                        atomic_store(&p->admin, PEER_ADMIN_DISABLED);
                        break;
                case ADMIN_ENABLE:
                        atomic_store(&p->admin, PEER_ADMIN_NONE);
                        break;
                case ADMIN_WEIGHT:
                        atomic_store(&p->weight_override, req->weight);
                        break;
                default:
                        break;
                }
                if (req->action == ADMIN_WEIGHT)
                        admin_log(req, "upstream %s: server %s weight set to %u", u->name, p->text,
                                  req->weight);
                else
                        admin_log(req, "upstream %s: server %s %s", u->name, p->text,
                                  req->action == ADMIN_DRAIN     ? "draining"
                                  : req->action == ADMIN_DISABLE ? "disabled"
                                                                 : "enabled");
                if (n > 1)
                        (void)buf_append(&req->body, ",", 1);
                (void)buf_append_str(&req->body, "{\"server\":");
                (void)json_append_string(&req->body, p->text);
                (void)buf_printf(&req->body, ",\"state\":\"%s\",\"active\":%u}",
                                 peer_state_name(peer_state(p, now)), atomic_load(&p->active));
        }
        peer_set_unref(set);
        if (n == 0) {
                reply_error(a, req, 404, "upstream %s has no server %s", u->name, req->server ?: "(none)");
                return;
        }
        if (req->action == ADMIN_CHECK) {
                admin_log(req, "upstream %s: health check of %s forced", u->name, req->server);
                check_finish(a, req); /* answered when the last probe ends */
                return;
        }
        (void)buf_append_str(&req->body, "]}\n");
        req->status = 200;
        admin_reply(a, req);
}

/* The cache's purge takes the store's lock for a walk of its index: done here rather than
 * in a worker, whose clients would wait meanwhile. */
static void admin_purge(Admin *a, AdminRequest *req) {
        size_t kl = strlen(req->key), n;
        bool prefix = kl > 0 && req->key[kl - 1] == '*';

        if (prefix) {
                req->key[kl - 1] = 0;
                n = cache_store_purge_prefix(req->key);
                req->key[kl - 1] = '*';
        } else
                n = cache_store_purge(req->key);
        admin_log(req, "cache purge of %s: %zu object(s) removed", req->key, n);
        buf_reset(&req->body);
        (void)buf_append_str(&req->body, "{\"ok\":true,\"key\":");
        (void)json_append_string(&req->body, req->key);
        (void)buf_printf(&req->body, ",\"prefix\":%s,\"purged\":%zu}\n", prefix ? "true" : "false", n);
        req->status = 200;
        admin_reply(a, req);
}

static void admin_execute(Admin *a, AdminRequest *req) {
        if (req->action == ADMIN_PURGE) {
                admin_purge(a, req);
                return;
        }
        if (req->action == ADMIN_RELOAD) {
                const char *error = NULL;
                admin_log(req, "reload requested");
                int r = a->host.reload(a->host.userdata, &error);
                if (r < 0) {
                        reply_error(a, req, 422, "%s", error && *error ? error : strerror(-r));
                        return;
                }
                req->next = a->waiting_reload;
                a->waiting_reload = req;
                return;
        }
        Upstream *u = find_group(a->host.generation(a->host.userdata)->config, req->group);
        if (!u) {
                reply_error(a, req, 404, "no upstream group %s", req->group ?: "(none)");
                return;
        }
        admin_change_peers(a, req, u);
}

void admin_note_reload(Admin *a, bool failed, const char *error) {
        if (!a)
                return;
        atomic_fetch_add(&a->reloads, 1);
        if (failed)
                atomic_fetch_add(&a->reload_failures, 1);
        pthread_mutex_lock(&a->lock);
        snprintf(a->last_error, sizeof(a->last_error), "%s", failed ? error ?: "unknown error" : "");
        pthread_mutex_unlock(&a->lock);
}

void admin_reload_done(Admin *a, bool ok, const char *error) {
        AdminRequest *list = a ? a->waiting_reload : NULL;

        if (a)
                a->waiting_reload = NULL;
        while (list) {
                AdminRequest *req = list;
                list = req->next;
                if (!ok) {
                        reply_error(a, req, 422, "%s", error ?: "reload failed");
                        continue;
                }
                buf_reset(&req->body);
                (void)buf_printf(&req->body, "{\"ok\":true,\"generation\":%llu}\n",
                                 (unsigned long long)a->host.generation(a->host.userdata)->number);
                req->status = 200;
                admin_reply(a, req);
        }
}

static int on_admin_queue(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Admin *a = userdata;
        AdminRequest *list, *rev = NULL;
        uint64_t v;

        (void)read(fd, &v, sizeof(v));
        pthread_mutex_lock(&a->lock);
        list = a->queue;
        a->queue = NULL;
        pthread_mutex_unlock(&a->lock);
        while (list) { /* in the order they came */
                AdminRequest *n = list->next;
                list->next = rev;
                rev = list;
                list = n;
        }
        while (rev) {
                AdminRequest *req = rev;
                rev = req->next;
                req->next = NULL;
                admin_execute(a, req);
        }
        return 0;
}

int admin_new(const AdminHost *host, Admin **ret) {
        Admin *a = calloc(1, sizeof(Admin));
        int r;

        if (!a)
                return -ENOMEM;
        a->host = *host;
        a->fd = -EBADF;
        a->started = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_init(&a->lock, NULL);
        a->links = calloc(host->n_workers ?: 1, sizeof(AdminWorkerLink));
        if (!a->links) {
                admin_free(a);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < host->n_workers; i++) {
                a->links[i] = (AdminWorkerLink){.admin = a, .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
                a->n_links++;
                if (a->links[i].fd < 0) {
                        r = -errno;
                        admin_free(a);
                        return r;
                }
        }
        a->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        r = a->fd < 0 ? -errno : sd_event_add_io(host->event, &a->source, a->fd, EPOLLIN, on_admin_queue, a);
        if (r < 0) {
                admin_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

static void request_list_free(AdminRequest *list) {
        while (list) {
                AdminRequest *n = list->next;
                admin_request_free(list);
                list = n;
        }
}

/* After the workers stopped. */
Admin *admin_free(Admin *a) {
        if (!a)
                return NULL;
        for (unsigned i = 0; i < a->n_links; i++) {
                sd_event_source_disable_unref(a->links[i].source);
                if (a->links[i].fd >= 0)
                        close(a->links[i].fd);
                request_list_free(a->links[i].replies);
        }
        free(a->links);
        request_list_free(a->queue);
        request_list_free(a->waiting_reload);
        sd_event_source_disable_unref(a->source);
        if (a->fd >= 0)
                close(a->fd);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
}
