/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "log.h"
#include "worker.h"

#define ACCEPT_BATCH 32
#define ACCEPT_RETRY_USEC (100 * USEC_PER_MSEC)

typedef struct AcceptSlot {
        WorkerIo io;
        Worker *worker;
        int fd;
        size_t index;
        unsigned port; /* the listener's local port, for $server_port */
        bool armed;    /* in the worker's epoll instance */
} AcceptSlot;

Generation *generation_ref(Generation *g) {
        if (g)
                atomic_fetch_add(&g->refcount, 1);
        return g;
}

Generation *generation_unref(Generation *g) {
        if (!g)
                return NULL;
        if (atomic_fetch_sub(&g->refcount, 1) != 1)
                return NULL;
        for (size_t i = 0; g->tls_servers && i < g->n_listeners; i++)
                tls_server_context_free(g->tls_servers[i]);
        free(g->tls_servers);
        tls_client_set_free(g->tls_clients);
        access_file_unref(g->access_file);
        listener_servers_free(g->listener_servers, g->n_listeners);
        config_unref(g->config);
        free(g);
        return NULL;
}

WorkerGen *worker_gen_ref(WorkerGen *wg) {
        if (wg)
                wg->refs++;
        return wg;
}

WorkerGen *worker_gen_unref(WorkerGen *wg) {
        if (!wg || --wg->refs > 0)
                return NULL;
        generation_unref(wg->gen);
        free(wg);
        return NULL;
}

uint64_t worker_random(Worker *w) {
        /* xorshift64*: request ids and tie-breaking, not cryptography */
        uint64_t x = w->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        w->rng = x;
        return x * UINT64_C(2685821657736338717);
}

/* ---- connection sockets: one epoll instance per worker (worker-io.h) ---- */

#define WORKER_IO_BATCH 256

static int worker_loop_add(Worker *w, int fd, uint32_t events, WorkerIo *io) {
        struct epoll_event ev = { .events = events, .data.ptr = io };
        return epoll_ctl(w->io_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int worker_io_add(Worker *w, int fd, uint32_t events, WorkerIo *io) {
        struct epoll_event ev = { .events = events, .data.ptr = io };
        return epoll_ctl(w->conn_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void worker_io_remove(Worker *w, int fd, WorkerIo *io) {
        (void) epoll_ctl(w->io_fd, EPOLL_CTL_DEL, fd, NULL);
        worker_io_forget(w, io);
}

void worker_io_forget(Worker *w, WorkerIo *io) {
        if (!io->pending)
                return;
        io->pending = false;
        for (int i = w->io_next; i < w->io_n; i++)
                if (w->io_batch[i].data.ptr == io)
                        w->io_batch[i].data.ptr = NULL;
}

bool worker_io_pending(const Worker *w, const WorkerIo *io) {
        return io->pending;
}

static void worker_dispatch_batch(Worker *w, int n) {
        w->io_n = n;
        for (int i = 0; i < n; i++)
                ((WorkerIo *) w->io_batch[i].data.ptr)->pending = true;
        for (w->io_next = 0; w->io_next < w->io_n;) {
                struct epoll_event *ev = &w->io_batch[w->io_next++];
                WorkerIo *io = ev->data.ptr;
                if (io) {
                        io->pending = false;
                        io->handler(io->userdata, ev->events);
                }
        }
        w->io_n = w->io_next = 0;
}

int worker_pipe_get(Worker *w, int fds[2]) {
        if (w->n_pipes > 0) {
                w->n_pipes--;
                fds[0] = w->pipes[w->n_pipes][0];
                fds[1] = w->pipes[w->n_pipes][1];
                return 0;
        }
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
                return -errno;
        /* bigger than the default 64 KiB: fewer splice() calls per large body; the pages are
         * taken only while data sits in the pipe (may fail over a user's pipe quota: harmless) */
        (void) fcntl(fds[1], F_SETPIPE_SZ, WORKER_PIPE_SIZE);
        return 0;
}

static void worker_close_pipes(Worker *w) {
        while (w->n_pipes > 0) {
                w->n_pipes--;
                close(w->pipes[w->n_pipes][0]);
                close(w->pipes[w->n_pipes][1]);
        }
}

void worker_pipe_put(Worker *w, int fds[2], bool empty) {
        if (empty && w->n_pipes < WORKER_PIPES) {
                w->pipes[w->n_pipes][0] = fds[0];
                w->pipes[w->n_pipes][1] = fds[1];
                w->n_pipes++;
        } else {
                close(fds[0]);
                close(fds[1]);
        }
        fds[0] = fds[1] = -EBADF;
}

char *worker_read_scratch(Worker *w) {
        if (!w->read_scratch)
                w->read_scratch = malloc(WORKER_READ_SCRATCH);
        return w->read_scratch;
}

HttpHeader *worker_header_scratch(Worker *w, size_t n) {
        if (n > w->n_header_scratch) {
                HttpHeader *a = reallocarray(w->header_scratch, n, sizeof(HttpHeader));
                if (!a)
                        return NULL;
                w->header_scratch = a;
                w->n_header_scratch = n;
        }
        return w->header_scratch;
}

static void worker_wake(Worker *w) {
        uint64_t one = 1;
        (void) write(w->wake_fd, &one, sizeof(one));
}

/* Level-triggered and exclusive: a pending connection wakes one of the workers waiting (an
 * exclusive entry cannot be modified, so pausing removes it and resuming adds it again). */
static int accept_slot_arm(AcceptSlot *slot, bool on) {
        Worker *w = slot->worker;
        if (on == slot->armed)
                return 0;
        if (on) {
                int r = worker_loop_add(w, slot->fd, EPOLLIN | EPOLLEXCLUSIVE, &slot->io);
                if (r < 0)
                        return log_warning_errno(r, "Worker %u: cannot wait for connections on fd %d", w->index,
                                                 slot->fd);
        } else
                worker_io_remove(w, slot->fd, &slot->io);
        slot->armed = on;
        return 0;
}

static void worker_set_accepting(Worker *w, bool on) {
        for (size_t i = 0; i < w->n_accept_slots; i++)
                if (w->accept_slots[i])
                        (void) accept_slot_arm(w->accept_slots[i], on);
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        if (!w->draining)
                worker_set_accepting(w, true);
        return 0;
}

/* All workers wait on the same listening sockets, and the kernel may wake the same one again
 * and again. A worker that accepted a connection while it holds clearly more connections than
 * another hands it over, so that every worker (and core) gets its share. "Clearly" grows with
 * the load: a hand-over costs a wake-up of the other thread, which short-lived connections
 * (one request each) should not pay for a difference of one or two. */
static Worker *worker_least_loaded(Worker *w) {
        const WorkerHost *m = w->host;
        Worker *best = w;
        unsigned best_load = atomic_load_explicit(&w->stats.connections, memory_order_relaxed);

        for (unsigned i = 0; i < m->n_workers; i++) {
                Worker *o = &m->workers[i];
                unsigned load = atomic_load_explicit(&o->stats.connections, memory_order_relaxed);
                if (o->draining || !o->thread_started)
                        continue;
                if (load + 2 + best_load / 8 < best_load) {
                        best = o;
                        best_load = load;
                }
        }
        return best;
}

/* Every worker is at max_connections: say so briefly (best effort, never blocking) and close. */
static void worker_refuse(Worker *w, int fd) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nServer: proxyd\r\nContent-Length: 0\r\n"
                                   "Retry-After: 1\r\nConnection: close\r\n\r\n";
        (void) send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        close(fd);
        if (!w->refusing) {
                w->refusing = true;
                log_warning("Worker %u: all workers at max_connections, refusing new connections with 503", w->index);
        }
}

static void worker_dispatch(Worker *w, int fd, size_t listener, unsigned port, const struct sockaddr *peer,
                            socklen_t len) {
        Worker *target = worker_least_loaded(w);
        unsigned max = w->gen->gen->config->max_connections;

        if (max > 0 && atomic_load_explicit(&target->stats.connections, memory_order_relaxed) >= max) {
                /* the least loaded one is full only if every one is; else take any with room */
                Worker *room = NULL;
                for (unsigned i = 0; i < w->host->n_workers && !room; i++) {
                        Worker *o = &w->host->workers[i];
                        if (!o->draining && o->thread_started &&
                            atomic_load_explicit(&o->stats.connections, memory_order_relaxed) < max)
                                room = o;
                }
                if (!room) {
                        worker_refuse(w, fd);
                        return;
                }
                target = room;
        }
        w->refusing = false;

        atomic_fetch_add_explicit(&target->stats.connections, 1, memory_order_relaxed);
        if (target == w) {
                (void) w->host->sessions->accepted(w, fd, listener, port, peer, len);
                return;
        }
        pthread_mutex_lock(&target->lock);
        if (target->n_handed == target->cap_handed) {
                size_t cap = target->cap_handed ? target->cap_handed * 2 : 16;
                HandedConn *n = realloc(target->handed, cap * sizeof(HandedConn));
                if (!n) {
                        pthread_mutex_unlock(&target->lock);
                        atomic_fetch_sub_explicit(&target->stats.connections, 1, memory_order_relaxed);
                        atomic_fetch_add_explicit(&w->stats.connections, 1, memory_order_relaxed);
                        (void) w->host->sessions->accepted(w, fd, listener, port, peer, len);
                        return;
                }
                target->handed = n;
                target->cap_handed = cap;
        }
        HandedConn *h = &target->handed[target->n_handed++];
        h->fd = fd;
        h->listener = listener;
        h->local_port = port;
        memcpy(&h->peer, peer, len);
        h->peerlen = len;
        pthread_mutex_unlock(&target->lock);
        worker_wake(target);
}

static void on_accept(void *userdata, uint32_t revents) {
        AcceptSlot *slot = userdata;
        Worker *w = slot->worker;
        int fd = slot->fd;

        for (unsigned i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
                struct sockaddr_storage ss;
                socklen_t len = sizeof(ss);
                int cfd = accept4(fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Out of descriptors or memory: stop accepting for a moment
                                 * instead of spinning on a socket that stays readable. */
                                log_warning_errno(errno, "accept() failed, pausing accepts for %llums",
                                                  (unsigned long long) (ACCEPT_RETRY_USEC / USEC_PER_MSEC));
                                worker_set_accepting(w, false);
                                (void) sd_event_source_set_time_relative(w->accept_retry, ACCEPT_RETRY_USEC);
                                (void) sd_event_source_set_enabled(w->accept_retry, SD_EVENT_ONESHOT);
                                w->event_run = true; /* so that sd-event arms the timer */
                                break;
                        }
                        log_warning_errno(errno, "accept() failed");
                        break;
                }
                atomic_fetch_add_explicit(&w->stats.accepted, 1, memory_order_relaxed);
                worker_dispatch(w, cfd, slot->index, slot->port, (struct sockaddr *) &ss, len);
        }
}

static int worker_add_accept_slots(Worker *w) {
        const ListenerSet *ls = w->host->listeners;
        size_t n = ls->n;

        if (n <= w->n_accept_slots)
                return 0;
        AcceptSlot **slots = realloc(w->accept_slots, n * sizeof(AcceptSlot *));
        if (!slots)
                return -ENOMEM;
        w->accept_slots = slots;
        for (size_t i = w->n_accept_slots; i < n; i++) {
                AcceptSlot *slot = calloc(1, sizeof(AcceptSlot));
                if (!slot)
                        return -ENOMEM;
                *slot = (AcceptSlot){ .io = { .handler = on_accept, .userdata = slot },
                                      .worker = w,
                                      .fd = ls->items[i].fd,
                                      .index = i,
                                      .port = sockaddr_port((struct sockaddr *) &ls->items[i].addr) };
                slots[i] = slot;
                w->n_accept_slots = i + 1;
                int r = accept_slot_arm(slot, true);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void worker_remove_accept_slots(Worker *w) {
        for (size_t i = 0; i < w->n_accept_slots; i++) {
                if (!w->accept_slots[i])
                        continue;
                (void) accept_slot_arm(w->accept_slots[i], false);
                free(w->accept_slots[i]);
                w->accept_slots[i] = NULL;
        }
}

static void worker_maybe_exit(Worker *w) {
        if (w->draining && w->n_conns == 0) {
                (void) sd_event_exit(w->event, 0);
                w->event_run = true;
        }
}

void worker_conn_closed(Worker *w) {
        w->n_conns--;
        atomic_fetch_sub_explicit(&w->stats.connections, 1, memory_order_relaxed);
        worker_maybe_exit(w);
}

static void worker_apply_generation(Worker *w, Generation *g) {
        WorkerGen *wg = calloc(1, sizeof(WorkerGen));
        if (!wg) {
                generation_unref(g);
                log_error("Worker %u: out of memory applying configuration", w->index);
                return;
        }
        wg->gen = g; /* takes the reference passed in */
        wg->refs = 1;
        wg->worker = w;
        worker_gen_unref(w->gen);
        w->gen = wg;
        (void) worker_add_accept_slots(w);
        atomic_store(&w->applied_gen, g->number);
}

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        uint64_t v;
        Generation *g;
        bool drain, exit_now;
        uint64_t ping;
        HandedConn *handed;
        size_t n_handed;

        (void) read(w->wake_fd, &v, sizeof(v));
        pthread_mutex_lock(&w->lock);
        g = w->pending_gen;
        w->pending_gen = NULL;
        handed = w->handed;
        n_handed = w->n_handed;
        w->handed = NULL;
        w->n_handed = w->cap_handed = 0;
        drain = w->cmd_drain;
        exit_now = w->cmd_exit;
        ping = w->ping_seq;
        pthread_mutex_unlock(&w->lock);

        if (g) {
                worker_apply_generation(w, g);
                w->host->ack(w->host->userdata);
        }
        for (size_t i = 0; i < n_handed; i++)
                (void) w->host->sessions->accepted(w, handed[i].fd, handed[i].listener, handed[i].local_port,
                                                   (struct sockaddr *) &handed[i].peer, handed[i].peerlen);
        free(handed);
        if (ping != atomic_load(&w->pong_seq)) {
                atomic_store(&w->pong_seq, ping);
                w->host->ack(w->host->userdata);
        }
        if (exit_now) {
                w->draining = true;
                worker_remove_accept_slots(w);
                w->host->sessions->abort_all(w);
                (void) sd_event_exit(w->event, 0);
                return 0;
        }
        if (drain && !w->draining) {
                w->draining = true;
                worker_remove_accept_slots(w);
                w->host->sessions->drain_all(w);
                worker_maybe_exit(w);
        }
        return 0;
}

int worker_init(Worker *w, const WorkerHost *host, unsigned index) {
        *w = (Worker){ .host = host, .index = index, .wake_fd = -EBADF, .io_fd = -EBADF, .conn_fd = -EBADF };
        pthread_mutex_init(&w->lock, NULL);
        if (getrandom(&w->rng, sizeof(w->rng), GRND_NONBLOCK) != sizeof(w->rng))
                w->rng = now_usec(CLOCK_MONOTONIC) ^ ((uint64_t) index << 32);
        w->rng |= 1;
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wake_fd < 0)
                return -errno;
        return 0;
}

#define TIMER_ACCURACY_USEC (1 * USEC_PER_MSEC)

void worker_task_add(Worker *w, WorkerTask *t) {
        t->prev = NULL;
        t->next = w->tasks;
        if (w->tasks)
                w->tasks->prev = t;
        w->tasks = t;
}

void worker_task_remove(Worker *w, WorkerTask *t) {
        if (t->prev)
                t->prev->next = t->next;
        else if (w->tasks == t)
                w->tasks = t->next;
        if (t->next)
                t->next->prev = t->prev;
        t->prev = t->next = NULL;
}

/* The heap's earliest deadline bounds the loop's wait (worker_wait_timeout()). */
int worker_timer_set(Worker *w, TimerNode *t, uint64_t when) {
        return timer_heap_set(&w->timers, t, when);
}

void worker_timer_remove(Worker *w, TimerNode *t) {
        timer_heap_remove(&w->timers, t);
}

/* Milliseconds epoll_wait() may sleep: until the earliest deadline (rounded up: a deadline
 * is never handled early), 0 when one is due or sd-event has work, -1 when nothing is due. */
static int worker_wait_timeout(Worker *w) {
        TimerNode *top = timer_heap_top(&w->timers);

        if (w->event_run)
                return 0;
        if (!top)
                return -1;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        if (top->when <= now + TIMER_ACCURACY_USEC)
                return 0;
        uint64_t ms = (top->when - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
        return ms > INT_MAX ? INT_MAX : (int) ms;
}

static void worker_run_timers(Worker *w) {
        /* Bounded: a connection re-queued for now (to resume work it yielded) gets its turn in
         * the next iteration, after the sockets, not again here. */
        size_t budget = w->timers.n;
        while (budget-- > 0) {
                TimerNode *t = timer_heap_top(&w->timers);
                if (!t || t->when > w->now + TIMER_ACCURACY_USEC)
                        break;
                timer_heap_remove(&w->timers, t);
                if (t->fire)
                        t->fire(t);
                else
                        w->host->sessions->timeout(t);
        }
}

/* The sd-event loop: run until it has nothing left to dispatch. Returns > 0 once it finished
 * (sd_event_exit()), 0 otherwise, < 0 on failure. */
static int worker_run_event(Worker *w) {
        w->event_run = false;
        for (;;) {
                int r = sd_event_run(w->event, 0);
                if (r < 0)
                        return r;
                if (sd_event_get_state(w->event) == SD_EVENT_FINISHED)
                        return 1;
                if (r == 0)
                        return 0;
        }
}

static void on_conns_ready(void *userdata, uint32_t revents) {
        Worker *w = userdata;
        w->conns_ready = true;
}

static void on_event_ready(void *userdata, uint32_t revents) {
        Worker *w = userdata;
        w->event_run = true;
}

static int worker_loop(Worker *w) {
        int r, code = 0;

        w->event_io = (WorkerIo){ .handler = on_event_ready, .userdata = w };
        r = worker_loop_add(w, sd_event_get_fd(w->event), EPOLLIN, &w->event_io);
        w->conns_io = (WorkerIo){ .handler = on_conns_ready, .userdata = w };
        if (r >= 0)
                r = worker_loop_add(w, w->conn_fd, EPOLLIN, &w->conns_io);
        if (r < 0)
                return r;
        w->now = now_usec(CLOCK_MONOTONIC);
        w->event_run = true;
        for (;;) {
                if (w->event_run) {
                        r = worker_run_event(w);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                }
                int n = epoll_wait(w->io_fd, w->io_batch, WORKER_IO_BATCH, worker_wait_timeout(w));
                if (n < 0 && errno != EINTR)
                        return -errno;
                w->now = now_usec(CLOCK_MONOTONIC);
                if (n > 0)
                        worker_dispatch_batch(w, n);
                if (w->conns_ready) {
                        w->conns_ready = false;
                        n = epoll_wait(w->conn_fd, w->io_batch, WORKER_IO_BATCH, 0);
                        if (n > 0)
                                worker_dispatch_batch(w, n);
                }
                worker_run_timers(w);
        }
        r = sd_event_get_exit_code(w->event, &code);
        return r < 0 ? r : code;
}

#define TRIM_INTERVAL_USEC (1 * USEC_PER_SEC)

/* Once a second: expired idle upstream connections are closed, and after a burst, once this
 * worker has no request in progress, free heap pages go back to the system (request buffers
 * are freed when a connection goes idle, but freed memory between live connections would
 * stay resident), so that idle connections cost only what they hold. */
static int on_trim_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        pool_sweep(&w->pool, usec);
        access_buf_flush(&w->access_buf);
        if (w->access_buf.file && w->access_buf.file != w->gen->gen->access_file)
                access_buf_done(&w->access_buf); /* a reload moved on: let the old file close */
        if (w->n_exchanges == 0)
                worker_close_pipes(w); /* an idle worker keeps no pipes */
        if (w->exchanges_since_trim > 0 && w->n_exchanges == 0) {
                w->exchanges_since_trim = 0;
#ifndef __SANITIZE_ADDRESS__
                /* (glibc's trim must not run beside AddressSanitizer's allocator: it upsets the
                 * arena bookkeeping glibc checks when a thread exits) */
                (void) malloc_trim(64 * 1024);
#endif
        }
        (void) sd_event_source_set_time(s, usec + TRIM_INTERVAL_USEC);
        return 0;
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        char name[16];
        int r;

        snprintf(name, sizeof(name), "proxyd-w%u", w->index);
        (void) pthread_setname_np(pthread_self(), name);

        r = sd_event_new(&w->event);
        if (r >= 0)
                r = sd_event_add_io(w->event, &w->wake_source, w->wake_fd, EPOLLIN, on_wake, w);
        if (r >= 0) {
                w->io_batch = calloc(WORKER_IO_BATCH, sizeof(struct epoll_event));
                w->io_fd = epoll_create1(EPOLL_CLOEXEC);
                w->conn_fd = epoll_create1(EPOLL_CLOEXEC);
                r = !w->io_batch ? -ENOMEM : w->io_fd < 0 || w->conn_fd < 0 ? -errno : 0;
        }
        if (r >= 0)
                r = sd_event_add_time(w->event, &w->accept_retry, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_accept_retry, w);
        if (r >= 0)
                (void) sd_event_source_set_enabled(w->accept_retry, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(w->event, &w->trim_timer, CLOCK_MONOTONIC, TRIM_INTERVAL_USEC,
                                               USEC_PER_SEC, on_trim_timer, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->trim_timer, SD_EVENT_ON);
        if (r >= 0)
                r = worker_add_accept_slots(w);
        if (r < 0) {
                log_error_errno(r, "Worker %u failed to start", w->index);
                w->host->exited(w->host->userdata, w, r);
                return NULL;
        }
        pool_init(&w->pool, w, &w->now);
        atomic_store(&w->applied_gen, w->gen->gen->number);
        w->host->ack(w->host->userdata);

        r = worker_loop(w);
        if (r < 0)
                log_error_errno(r, "Worker %u event loop failed", w->index);

        w->host->sessions->abort_all(w);
        while (w->tasks)
                w->tasks->abort(w->tasks);
        pool_done(&w->pool);
        access_buf_done(&w->access_buf);
        worker_remove_accept_slots(w);
        w->accept_retry = sd_event_source_disable_unref(w->accept_retry);
        w->trim_timer = sd_event_source_disable_unref(w->trim_timer);
        timer_heap_done(&w->timers);
        w->wake_source = sd_event_source_disable_unref(w->wake_source);
        w->event = sd_event_unref(w->event);
        w->host->exited(w->host->userdata, w, r);
        return NULL;
}

int worker_start(Worker *w) {
        int r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r != 0)
                return -r;
        w->thread_started = true;
        return 0;
}

void worker_join(Worker *w) {
        if (w->thread_started)
                pthread_join(w->thread, NULL);
        w->thread_started = false;
}

void worker_done(Worker *w) {
        for (size_t i = 0; i < w->n_handed; i++)
                close(w->handed[i].fd);
        free(w->handed);
        w->handed = NULL;
        w->n_handed = 0;
        generation_unref(w->pending_gen);
        w->pending_gen = NULL;
        w->gen = worker_gen_unref(w->gen);
        free(w->accept_slots);
        w->accept_slots = NULL;
        free(w->header_scratch);
        w->header_scratch = NULL;
        free(w->read_scratch);
        w->read_scratch = NULL;
        worker_close_pipes(w);
        if (w->wake_fd >= 0)
                close(w->wake_fd);
        w->wake_fd = -EBADF;
        if (w->io_fd >= 0)
                close(w->io_fd);
        w->io_fd = -EBADF;
        if (w->conn_fd >= 0)
                close(w->conn_fd);
        w->conn_fd = -EBADF;
        free(w->io_batch);
        w->io_batch = NULL;
        worker_metrics_done(&w->metrics);
        pthread_mutex_destroy(&w->lock);
}

void worker_post_generation(Worker *w, Generation *g) {
        pthread_mutex_lock(&w->lock);
        generation_unref(w->pending_gen);
        w->pending_gen = generation_ref(g);
        pthread_mutex_unlock(&w->lock);
        worker_wake(w);
}

void worker_post_drain(Worker *w) {
        pthread_mutex_lock(&w->lock);
        w->cmd_drain = true;
        pthread_mutex_unlock(&w->lock);
        worker_wake(w);
}

void worker_post_exit(Worker *w) {
        pthread_mutex_lock(&w->lock);
        w->cmd_exit = true;
        pthread_mutex_unlock(&w->lock);
        worker_wake(w);
}

void worker_post_ping(Worker *w, uint64_t seq) {
        pthread_mutex_lock(&w->lock);
        w->ping_seq = seq;
        pthread_mutex_unlock(&w->lock);
        worker_wake(w);
}
