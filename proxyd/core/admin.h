/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The admin endpoint's core: what the request path (proxy/admin-http.c) asks of the rest of
 * proxyd. Reading is done in the asking worker's thread (metrics, status: counters and peer
 * state are readable from any thread); changing is done by the manager thread, so that
 * commands are applied one at a time to the newest configuration generation, in order with
 * reloads (whose carry-over of peer state then cannot miss a change). A worker submits an
 * AdminRequest; the manager carries it out and hands the result back to that worker, whose
 * loop is woken through an eventfd of its own (made on its first request).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "health.h"
#include "worker.h"

typedef struct Admin Admin;

/* What the admin commands need of the process (the manager fills it in). */
typedef struct AdminHost {
        sd_event *event; /* the manager's loop: commands run there */
        unsigned n_workers;
        Generation *(*generation)(void *userdata); /* the newest configuration generation */
        HealthChecker *(*health)(void *userdata);  /* its active health checks */
        /* Reload: 0, the new generation is on its way (admin_reload_done follows), or <0 and
         * *ret_error says "file:line: why". */
        int (*reload)(void *userdata, const char **ret_error);
        void *userdata;
} AdminHost;

typedef enum AdminAction {
        ADMIN_DRAIN,
        ADMIN_DISABLE,
        ADMIN_ENABLE,
        ADMIN_WEIGHT,
        ADMIN_CHECK,
        ADMIN_RELOAD,
        ADMIN_PURGE, /* the response cache: one key, or every key starting with it ("...*") */
        _ADMIN_ACTION_MAX,
} AdminAction;

const char *admin_action_name(AdminAction a);
int admin_action_from_name(const char *name); /* -EINVAL if unknown */

typedef struct AdminRequest AdminRequest;
typedef void (*AdminReplied)(Worker *w, AdminRequest *req);

struct AdminRequest {
        AdminAction action;
        char *group;  /* upstream group */
        char *server; /* a peer's address ("127.0.0.1:8081") or the entry as written */
        unsigned weight;
        char *key; /* ADMIN_PURGE: a cache key, or a prefix ending in '*' */
        bool have_cred; /* the caller came over a unix socket: SO_PEERCRED */
        pid_t pid;
        uid_t uid;
        char who[64]; /* "pid 123 uid 0" or the client address */

        /* the asking side (its thread only) */
        Worker *worker;
        void *waiter; /* the exchange waiting for the answer; NULL once it ended */
        AdminReplied replied;
        AdminRequest *wnext; /* in the worker's list of requests waiting for an answer */

        /* the answer (manager thread) */
        int status;       /* HTTP status */
        Buf body;         /* JSON */
        unsigned pending; /* health checks still running */
        bool ok;          /* for ADMIN_CHECK: every probe passed */
        AdminRequest *next;
};

int admin_new(const AdminHost *host, Admin **ret);
Admin *admin_free(Admin *a);

/* Worker thread: queue req for the manager; req->replied(w, req) runs later in w's loop and
 * owns req (admin_request_free). */
int admin_submit(Admin *a, Worker *w, AdminRequest *req);
AdminRequest *admin_request_free(AdminRequest *req);
/* Worker thread: the waiter ended before its answer came (the answer will find no waiter). */
void admin_forget(Admin *a, Worker *w, void *waiter);

/* Manager thread: the outcome of a reload (ok: every worker serves the new generation). */
void admin_reload_done(Admin *a, bool ok, const char *error);
/* Manager thread: a reload from any source was tried (counted for the metrics). */
void admin_note_reload(Admin *a, bool failed, const char *error);

typedef struct AdminCounters {
        uint64_t reloads, reload_failures;
        uint64_t started; /* CLOCK_MONOTONIC usec */
        char last_error[256];
} AdminCounters;
void admin_counters(Admin *a, AdminCounters *ret); /* any thread */

/* Worker thread: the bodies of the read-only endpoints, from the worker's generation. */
int admin_render_metrics(Admin *a, Worker *w, Buf *out);
int admin_render_status(Admin *a, Worker *w, Buf *out);
int admin_render_upstreams(Admin *a, Worker *w, Buf *out, bool text); /* text: for proxyd ctl list */

/* JSON string (quotes included), escaped. */
int json_append_string(Buf *b, const char *s);
