/* SPDX-License-Identifier: MIT */
#pragma once

/* One worker thread: its own sd_event loop, its own client connections and upstream pool.
 * Workers share only the read-only configuration generation and the listening sockets.
 *
 * The thread blocks in an epoll instance of its own (io_fd) with three kinds of entries:
 * the listening sockets (EPOLLEXCLUSIVE, so a new connection wakes one idle worker, not all
 * of them), its sd-event loop (sd_event_get_fd()), which runs the wake-ups from other
 * threads and the worker's few timers whenever it has something to do, and a second epoll
 * instance (conn_fd) holding its connections' sockets, from which one epoll_wait() takes a
 * whole batch of socket events (worker-io.h). Connection deadlines live in a heap whose
 * earliest entry bounds the wait. docs/architecture.md says why it is built this way. */

#include <pthread.h>
#include <stdatomic.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "log.h"
#include "listener.h"
#include "metrics.h"
#include "pool.h"
#include "timerheap.h"
#include "tls.h"
#include "worker-io.h"

typedef struct Conn Conn;

/* Work a worker runs that is no client connection (the cache's background refreshes): the
 * worker ends what is left of it when its loop is over, before its upstream pool closes
 * (abort unlinks the task: worker_task_remove). */
typedef struct WorkerTask WorkerTask;
struct WorkerTask {
        WorkerTask *prev, *next;
        void (*abort)(WorkerTask *t);
};

/* What a worker sees of the process it runs in, filled in by whoever runs the workers (the
 * manager): the sessions it runs on the connections it accepts, its sibling workers (to hand
 * connections over), the listening sockets, and whom to tell that a command was carried out
 * or that the thread ended. This keeps the worker independent of the manager and of the
 * protocol its sessions speak. */
/* The client sessions a worker runs (HTTP/1 connections: conn.h). */
typedef struct WorkerSessionOps {
        /* a new client connection on listening socket `listener`; owns fd */
        int (*accepted)(Worker *w, int fd, size_t listener, unsigned local_port, const struct sockaddr *peer,
                        socklen_t peerlen);
        /* a deadline in the worker's heap came (or may have come) */
        void (*timeout)(TimerNode *t);
        /* graceful stop: idle sessions close now, busy ones after their current response */
        void (*drain_all)(Worker *w);
        /* close every session now */
        void (*abort_all)(Worker *w);
} WorkerSessionOps;

typedef struct WorkerHost {
        const WorkerSessionOps *sessions;
        Worker *workers;
        unsigned n_workers;
        const ListenerSet *listeners;
        void (*ack)(void *userdata);                            /* any thread */
        void (*exited)(void *userdata, Worker *w, int error);   /* from the worker's thread */
        void *userdata;
        MetricsRegistry *metrics; /* keys of the workers' counters */
        struct Admin *admin;      /* the admin endpoint's link to the manager (admin.h) */
} WorkerHost;

#define WORKER_PIPES 16
#define WORKER_PIPE_SIZE (256 * 1024)

/* A configuration as the workers use it: the Config plus the servers each listener serves. */
typedef struct Generation {
        atomic_uint refcount;
        uint64_t number;
        Config *config;
        ListenerServers *listener_servers;
        size_t n_listeners;
        TlsServerContext **tls_servers; /* per listener, NULL for plain sockets */
        TlsClientSet *tls_clients;      /* for https upstreams */
        AccessFile *access_file;        /* access_log = "/path"; NULL: the journal */
} Generation;

Generation *generation_ref(Generation *g);
Generation *generation_unref(Generation *g);

/* A worker's own handle on a generation: refs is touched by that worker's thread only,
 * so taking a reference per request costs no atomic operation. */
typedef struct WorkerGen {
        Generation *gen;
        unsigned refs;
        Worker *worker;
} WorkerGen;

WorkerGen *worker_gen_ref(WorkerGen *wg);
WorkerGen *worker_gen_unref(WorkerGen *wg);

typedef struct WorkerStats {
        atomic_uint_fast64_t requests;
        atomic_uint_fast64_t accepted;
        atomic_uint connections; /* open client connections, including ones handed over but not yet set up */
} WorkerStats;

/* A connection accepted by one worker and handed to a less loaded one. */
typedef struct HandedConn {
        int fd;
        size_t listener;
        unsigned local_port;
        struct sockaddr_storage peer;
        socklen_t peerlen;
} HandedConn;

struct Worker {
        const WorkerHost *host;
        unsigned index;
        pthread_t thread;
        bool thread_started;
        sd_event *event;

        /* Commands from the manager thread, under lock; wake_fd (eventfd) wakes the loop. */
        pthread_mutex_t lock;
        int wake_fd;
        sd_event_source *wake_source;
        int io_fd;                       /* the epoll instance the thread waits in */
        struct epoll_event *io_batch;    /* events being dispatched: [io_next, io_n) are still to come */
        int io_n, io_next;
        WorkerIo event_io;               /* the sd-event loop's entry in io_fd */
        int conn_fd;                     /* epoll instance of the connection sockets (worker-io.h) */
        WorkerIo conns_io;               /* conn_fd's entry in io_fd */
        bool conns_ready;                /* conn_fd has events: take a batch */
        bool event_run;                  /* the sd-event loop has work: run it before waiting */
        uint64_t now;                    /* CLOCK_MONOTONIC when the last wait returned */
        Generation *pending_gen;
        HandedConn *handed;
        size_t n_handed, cap_handed;
        bool cmd_drain;
        bool cmd_exit;
        uint64_t ping_seq;
        atomic_uint_fast64_t pong_seq; /* last ping this loop answered: watchdog liveness */
        atomic_uint_fast64_t applied_gen; /* generation number the worker serves */

        WorkerGen *gen;
        struct AcceptSlot **accept_slots; /* per listening socket */
        size_t n_accept_slots;
        sd_event_source *accept_retry;

        Conn *conns;
        unsigned n_conns;
        WorkerTask *tasks;             /* non-client work in progress */
        TimerHeap timers;              /* every connection's next deadline */
        unsigned n_exchanges;          /* requests in progress */
        uint64_t exchanges_since_trim; /* finished since the heap was last trimmed */
        sd_event_source *trim_timer;
        bool draining;
        bool refusing; /* at max_connections (logged once per episode) */

        Pool pool;
        AccessBuf access_buf; /* access log lines not yet written to the file */
        int pipes[WORKER_PIPES][2]; /* empty pipes kept for splicing bodies */
        unsigned n_pipes;
        char *read_scratch;         /* WORKER_READ_SCRATCH bytes: first read of a new request head */
        HttpHeader *header_scratch; /* parsed header fields of the head being handled */
        size_t n_header_scratch;
        uint64_t rng;
        unsigned rr;

        WorkerStats stats;
        WorkerMetrics metrics; /* written by this thread only, summed by scrapes */
};

int worker_init(Worker *w, const WorkerHost *host, unsigned index);
int worker_start(Worker *w);
void worker_join(Worker *w);
void worker_done(Worker *w);

/* Manager -> worker (any thread). */
void worker_post_generation(Worker *w, Generation *g);
void worker_post_drain(Worker *w);
void worker_post_exit(Worker *w);
void worker_post_ping(Worker *w, uint64_t seq);

/* Worker-internal. */
void worker_conn_closed(Worker *w);
uint64_t worker_random(Worker *w);
/* The loop's clock: CLOCK_MONOTONIC, read once per loop iteration. */
static inline uint64_t worker_now(const Worker *w) {
        return w->now;
}
void worker_task_add(Worker *w, WorkerTask *t);
void worker_task_remove(Worker *w, WorkerTask *t);

/* Connection deadlines (the earliest one bounds the loop's wait). */
int worker_timer_set(Worker *w, TimerNode *t, uint64_t when);
void worker_timer_remove(Worker *w, TimerNode *t);

#define WORKER_READ_SCRATCH 16384u
char *worker_read_scratch(Worker *w);

/* Pipes for splice(): an empty one from the worker's cache (or a new one, non-blocking, of
 * WORKER_PIPE_SIZE bytes); put back when empty, else closed (its contents are garbage). */
int worker_pipe_get(Worker *w, int fds[2]);
void worker_pipe_put(Worker *w, int fds[2], bool empty);

/* An array of at least n header slots, reused by every head this worker parses. */
HttpHeader *worker_header_scratch(Worker *w, size_t n);
