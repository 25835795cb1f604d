/* SPDX-License-Identifier: MIT */
#pragma once

/* The top-level context: configuration generations, listening sockets, worker threads,
 * signals (reload, stop), readiness/status/watchdog towards the service manager. */

#include <systemd/sd-event.h>

#include "health.h"
#include "metrics.h"
#include "listener.h"
#include "resolve.h"
#include "worker.h"

typedef struct Manager Manager;

struct Manager {
        sd_event *event;
        char *config_path;

        ListenerSet listeners;
        Generation *gen;
        uint64_t next_gen;
        HealthChecker *health; /* active checks of the current generation's upstreams */
        Resolver *resolver;    /* re-resolution of its upstream names */

        Worker *workers;
        unsigned n_workers;
        const WorkerSessionOps *sessions;
        WorkerHost worker_host; /* the workers' view of this manager */
        atomic_uint n_exited;

        int ack_fd; /* eventfd: workers -> manager */
        sd_event_source *ack_source;
        sd_event_source *watchdog_timer;
        sd_event_source *status_timer;
        sd_event_source *shutdown_timer;
        sd_event_source *ticket_timer;
        TlsTicketKeys *ticket_keys; /* session ticket master key, rotated on a timer */

        bool ready_sent;
        bool reload_pending; /* waiting for workers to apply a new generation */
        bool stopping;
        int exit_code;
        uint64_t watchdog_usec;
        uint64_t ping_seq;
        bool watchdog_missed;

        uint64_t status_last_requests;
        uint64_t status_last_time;
        char last_reload_error[256];

        MetricsRegistry *metrics; /* keys of the workers' counters */
        struct Admin *admin;      /* the admin endpoint's commands (admin.c) */
};

/* sessions: what runs on the accepted connections (the HTTP/1 session: conn_sessions). */
int manager_new(const char *config_path, const WorkerSessionOps *sessions, Manager **ret);
Manager *manager_free(Manager *m);
int manager_run(Manager *m);
/* Reload the configuration (SIGHUP, or the admin endpoint). 0: the new generation is on its
 * way to the workers (READY=1 follows when all serve it); <0: it failed, last_reload_error
 * says why ("file:line: why") and the old one keeps serving. */
int manager_reload(Manager *m);
