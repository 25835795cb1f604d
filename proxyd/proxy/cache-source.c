/* SPDX-License-Identifier: MIT */
/*
 * The cache source (source_cache): a stored object given to the session (cache_serve() sent
 * the head, the step sends the body), and request collapsing: a request whose object another
 * request is fetching waits in this source, woken by an eventfd of its worker that the
 * fetching side writes (from whichever worker it runs in) whenever the fetch changes; once
 * the fetch's response head is known and its length too, the waiting request is served from
 * the object as it fills, byte for byte as the fetch stores it, and if that fill fails its
 * response is cut (its Content-Length was sent, so the client sees the cut). A request that
 * cannot follow (a range, a conditional, HEAD, another variant) waits until the object is
 * stored, as before.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "cache-internal.h"
#include "log.h"

#define CACHE_WAIT_POLL (20 * USEC_PER_MSEC)
#define CACHE_WAIT_MAX (5 * USEC_PER_SEC) /* as nginx's proxy_cache_lock_timeout */

/* Per worker: the eventfd that fetches in any worker write when an object that requests here
 * wait for (or follow) changes, and those requests. */
typedef struct CacheWake {
        Worker *w;
        int fd;
        WorkerIo io;
        WorkerTask task;
        CacheState *list;
        unsigned pass;
} CacheWake;

static _Thread_local CacheWake *wake;

static int wait_check(Exchange *ex, CacheState *c);

/* How far the body can be served: all of it, or what the fetch followed has filled. */
static uint64_t available(const CacheState *c) {
        if (!c->following)
                return c->end;
        return MIN(atomic_load_explicit(&c->obj->filled, memory_order_acquire), c->end);
}

/* The body from the object's file: spliced file -> pipe -> client socket (no copy in user
 * space), or read into a buffer and given to the session where it cannot splice (TLS,
 * HTTP/2). Either way the bytes come from the file checked when it was opened. */
static int unreadable(Exchange *ex, CacheState *c, ssize_t k) {
        log_warning("%s: cannot read the stored body of %s: %s", ex_text(ex), c->key,
                    k < 0 ? strerror(errno) : "short file");
        exchange_cut(ex, "stored body unreadable");
        return 1;
}

static int file_step(Exchange *ex, CacheState *c) {
        const SessionOps *so = ex->s->ops;

        if (so->send_blocked(ex))
                return 0; /* the head first */
        if (so->send_pipe && !c->no_splice && !ex->has_pipe) {
                if (worker_pipe_get(ex->s->worker, ex->pipe) < 0)
                        c->no_splice = true;
                else
                        ex->has_pipe = true;
        }
        if (so->send_pipe && !c->no_splice) {
                if (ex->pipe_len == 0) {
                        loff_t at = (loff_t) (c->file_off + c->off);
                        ssize_t k = splice(c->file_fd, &at, ex->pipe[1], NULL,
                                           (size_t) MIN(c->end - c->off, (uint64_t) WORKER_PIPE_SIZE),
                                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                        if (k <= 0)
                                return unreadable(ex, c, k);
                        ex->pipe_len = (size_t) k;
                }
                ssize_t n = so->send_pipe(ex, ex->pipe[0], ex->pipe_len, c->off + ex->pipe_len == c->end);
                if (n == -EOPNOTSUPP) {
                        /* what the pipe holds is dropped with it (closed at the end); the body
                         * is read from c->off on */
                        c->no_splice = true;
                        return 1;
                }
                if (n == 0 || n == -EAGAIN)
                        return 0;
                if (n < 0) {
                        exchange_client_failed(ex, (int) -n);
                        return 1;
                }
                ex->pipe_len -= (size_t) n;
                c->off += (uint64_t) n;
        } else {
                if (!c->fbuf && !(c->fbuf = malloc(BODY_BUF_SIZE)))
                        return exchange_fail(ex, 500, "out of memory"), 1;
                if (c->fbuf_pos == c->fbuf_len) {
                        ssize_t k = pread(c->file_fd, c->fbuf, (size_t) MIN(c->end - c->off, (uint64_t) BODY_BUF_SIZE),
                                          (off_t) (c->file_off + c->off));
                        if (k <= 0)
                                return unreadable(ex, c, k);
                        c->fbuf_len = (size_t) k;
                        c->fbuf_pos = 0;
                }
                size_t left = c->fbuf_len - c->fbuf_pos;
                ssize_t n = so->send_data(ex, c->fbuf + c->fbuf_pos, left, c->off + left == c->end);
                if (n < 0) {
                        exchange_client_failed(ex, (int) -n);
                        return 1;
                }
                if (n == 0)
                        return 0;
                c->fbuf_pos += (size_t) n;
                c->off += (uint64_t) n;
        }
        if (c->off >= c->end)
                ex->resp_done = true;
        return 1;
}

static int cache_step(Exchange *ex) {
        CacheState *c = ex->cache;

        if (c && c->wait) {
                if (!c->woken)
                        return 0;
                c->woken = false;
                return wait_check(ex, c);
        }
        if (!c || !c->serving || ex->resp_done)
                return 0;
        const CacheObject *o = c->obj;
        if (c->file_fd >= 0)
                return file_step(ex, c);
        uint64_t avail = available(c);
        if (c->off >= avail) {
                if (!c->following || !atomic_load_explicit(&o->fill_failed, memory_order_acquire))
                        return 0;
                /* the response being stored was cut: so is this one (its length was sent) */
                log_info("%s: the response for %s being stored was cut; so is this one", ex_text(ex), c->key);
                cache_wake_unlist(c);
                exchange_cut(ex, "the response followed was cut");
                return 1;
        }
        ssize_t k = ex->s->ops->send_data(ex, o->body + c->off, (size_t) (avail - c->off), avail == c->end);
        if (k < 0) {
                exchange_client_failed(ex, (int) -k);
                return 1;
        }
        if (k == 0)
                return 0;
        c->off += (uint64_t) k;
        if (c->off >= c->end) {
                ex->resp_done = true;
                cache_wake_unlist(c);
        }
        return 1;
}

static bool cache_has_output(const Exchange *ex) {
        const CacheState *c = ex->cache;
        return c && c->serving && !ex->resp_done && c->off < available(c);
}

static uint64_t cache_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        const CacheState *c = ex->cache;
        if (!c || !c->wait)
                return source_no_deadline(ex, ret_kind);
        *ret_kind = TIMEOUT_CACHE_WAIT;
        return c->next_poll;
}


static void cache_timeout(Exchange *ex, TimeoutKind kind) {
        CacheState *c = ex->cache;
        uint64_t now = ex_now(ex);

        if (kind != TIMEOUT_CACHE_WAIT || !c || !c->wait)
                return;
        if (now >= c->wait_start + CACHE_WAIT_MAX) {
                cache_wait_over(ex, c);
                return;
        }
        if (wait_check(ex, c) == 0)
                c->next_poll = c->listed ? c->wait_start + CACHE_WAIT_MAX : now + CACHE_WAIT_POLL;
}

const SourceOps source_cache = {
        .name = "cache",
        .step = cache_step,
        .wants_body = source_no_body,
        .has_output = cache_has_output,
        .deadline = cache_deadline,
        .timeout = cache_timeout,
        .finish = source_no_finish, /* the object is let go with the exchange (cache_exchange_free) */
};

/* ---- waiting for another request's fetch ---- */

void cache_wake_unlist(CacheState *c) {
        if (!c->listed)
                return;
        if (c->wprev)
                c->wprev->wnext = c->wnext;
        else
                wake->list = c->wnext;
        if (c->wnext)
                c->wnext->wprev = c->wprev;
        c->wprev = c->wnext = NULL;
        c->listed = false;
}

/* A fetch that requests of this worker wait for changed: run their sessions (each run may
 * end other exchanges of the list, so the list is walked again from its head each time). */
static void on_cache_wake(void *userdata, uint32_t revents) {
        CacheWake *k = userdata;
        uint64_t v;
        (void) revents;

        (void) !read(k->fd, &v, sizeof(v));
        unsigned pass = ++k->pass;
        for (;;) {
                CacheState *c = k->list;
                while (c && c->woken_pass == pass)
                        c = c->wnext;
                if (!c)
                        break;
                c->woken_pass = pass;
                c->woken = true;
                c->ex->s->ops->run(c->ex->s);
        }
}

static void cache_wake_abort(WorkerTask *t) {
        CacheWake *k = (CacheWake *) ((char *) t - offsetof(CacheWake, task));

        worker_task_remove(k->w, &k->task);
        cache_store_unwatch(k->fd);
        worker_io_forget(k->w, &k->io);
        close(k->fd);
        while (k->list)
                cache_wake_unlist(k->list);
        free(k);
        wake = NULL;
}

/* This worker's CacheWake, made the first time a request waits; NULL without an eventfd (the
 * waiting requests poll then). */
static CacheWake *wake_get(Worker *w) {
        if (wake)
                return wake;
        CacheWake *k = calloc(1, sizeof(CacheWake));
        if (!k)
                return NULL;
        k->w = w;
        k->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        k->io = (WorkerIo){ .handler = on_cache_wake, .userdata = k };
        if (k->fd < 0 || worker_io_add(w, k->fd, EPOLLIN | EPOLLET, &k->io) < 0) {
                log_warning_errno(errno, "cache: no wake-up for collapsed requests; they poll");
                if (k->fd >= 0)
                        close(k->fd);
                free(k);
                return NULL;
        }
        k->task.abort = cache_wake_abort;
        worker_task_add(w, &k->task);
        return wake = k;
}

bool cache_wait(Exchange *ex) {
        CacheState *c = ex->cache;

        if (!c || !c->wait)
                return false;
        ex->src = &source_cache;
        c->wait_start = ex_now(ex);
        c->next_poll = c->wait_start; /* the first look is from the deadline heap, at once */
        CacheWake *k = wake_get(ex->s->worker);
        if (k) {
                c->ex = ex;
                c->wnext = k->list;
                if (k->list)
                        k->list->wprev = c;
                k->list = c;
                c->listed = true;
        }
        return true;
}

/* May this request be served from the object of the fetch it waits for while it fills? A
 * whole 200-style answer of that length, fresh, of the request's variant: no conditionals, no
 * range, no HEAD (those wait until it is stored). */
static bool may_follow(const CacheState *c, const CacheObject *o) {
        if (c->range || c->if_none_match || c->has_ims || c->head || o->status == 204 || o->status == 304)
                return false;
        if (cache_verdict(&o->times, &c->req_cc, time(NULL)) != CACHE_USE ||
            (c->authorization && !cache_shareable_with_authorization(o->times.flags, o->times.s_maxage)))
                return false;
        Buf variant = {};
        bool same = cache_vary_values(o->vary, c->req_fields, c->n_req_fields, &variant) >= 0 &&
                    buf_append(&variant, "", 1) >= 0 && streq(buf_head(&variant), o->variant);
        buf_free(&variant);
        return same;
}

/* Look at the fetch waited for: gone (stored or not: look it up), filling an object this
 * request may follow (serve it as it fills), or not yet. 1 when something changed. */
static int wait_check(Exchange *ex, CacheState *c) {
        CacheObject *o = NULL;
        int r = cache_store_fill_watch(c->claim_id, c->listed ? wake->fd : -1, &o);

        if (r == 0) {
                cache_wait_over(ex, c);
                return 1;
        }
        if (r == 1 || !may_follow(c, o)) {
                cache_object_unref(o);
                return 0;
        }
        c->wait = false;
        c->following = true;
        c->stream_len = o->body_cap;
        c->st.collapsed = true;
        cache_store_count(true);
        cache_set_word(c, "HIT");
        if (cache_serve(ex, c, o) < 0)
                exchange_fail(ex, 500, "cannot serve from the cache");
        return 1;
}

/* The fetch this request waited for is over (or took too long): the object it stored, if
 * fresh, else the upstream after all. */
void cache_wait_over(Exchange *ex, CacheState *c) {
        Buf variant = {};
        CacheObject *o = cache_lookup(c, &variant);

        buf_free(&variant);
        c->wait = false;
        cache_wake_unlist(c);
        c->st.collapsed = true;
        if (o && cache_verdict(&o->times, &c->req_cc, time(NULL)) == CACHE_USE &&
            (!c->authorization || cache_shareable_with_authorization(o->times.flags, o->times.s_maxage))) {
                cache_store_count(true);
                cache_set_word(c, "HIT");
                if (cache_serve(ex, c, o) < 0)
                        exchange_fail(ex, 500, "cannot serve from the cache");
                return;
        }
        cache_object_unref(o);
        cache_store_count(false);
        c->claimed = cache_store_fill_claim(c->claim_id);
        ex->src = &source_upstream;
        (void) exchange_connect(ex);
}