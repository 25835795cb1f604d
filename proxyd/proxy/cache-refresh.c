/* SPDX-License-Identifier: MIT */
/*
 * Background refresh (cache-refresh.h). The refresh is an ordinary exchange under a session
 * of its own (Refresh): routing, limits, the upstream source with its retries and timeouts,
 * the cache's hooks (revalidation with the stored validators, the tee, the store at the end)
 * all run as for a client's request; only the session differs, which sends nowhere: every
 * send_* takes everything, and nothing is ever blocked. Its deadlines sit in the worker's
 * heap under a TimerNode with a fire callback of its own; the worker ends a refresh that is
 * still running when its loop is over (WorkerTask). A refresh runs under the configuration
 * generation of the request that started it, as that request did, so a reload lets it end
 * normally.
 */
#include "cache-refresh.h"
#include "cache-store.h"
#include "exchange.h"
#include "log.h"

#define REFRESH_RUN_BUDGET 64 /* steps per event before other work gets its turn */

typedef struct Refresh {
        Session s; /* first: the exchange's ex->s */
        WorkerTask task;
        TimerNode timer;
        WorkerGen *gen;
        Exchange *ex;
        bool resume;    /* ran out of its step budget: go on from the timer */
        char *claim_id; /* until the exchange's cache state takes it */
        /* the request to replay, GET with the client's fields */
        HttpRequest req;
        char *target;
        HttpHeader *fields;
        Buf copy;
} Refresh;

static const SessionOps refresh_ops;

static Refresh *refresh_of_timer(TimerNode *t) {
        return (Refresh *) ((char *) t - offsetof(Refresh, timer));
}

static Refresh *refresh_of_task(WorkerTask *t) {
        return (Refresh *) ((char *) t - offsetof(Refresh, task));
}

static void refresh_free(Refresh *r) {
        Worker *w = r->s.worker;

        if (r->ex) {
                if (r->ex->status == 0)
                        r->ex->status = 499;
                r->ex = exchange_free(r->ex);
        }
        if (r->claim_id)
                cache_store_fill_done(r->claim_id);
        free(r->claim_id);
        worker_timer_remove(w, &r->timer);
        worker_task_remove(w, &r->task);
        r->gen = worker_gen_unref(r->gen);
        free(r->target);
        free(r->fields);
        buf_free(&r->copy);
        free(r);
}

static void refresh_update_timer(Refresh *r) {
        TimeoutKind kind;
        uint64_t d = exchange_deadline(r->ex, &kind);

        if (d == USEC_INFINITY)
                worker_timer_remove(r->s.worker, &r->timer);
        else
                (void) worker_timer_set(r->s.worker, &r->timer, d);
}

static void refresh_run(Session *s) {
        Refresh *r = (Refresh *) s;
        Exchange *ex = r->ex;

        for (unsigned i = 0; exchange_step(ex) > 0; i++)
                if (i >= REFRESH_RUN_BUDGET) {
                        r->resume = true;
                        (void) worker_timer_set(s->worker, &r->timer, worker_now(s->worker));
                        return;
                }
        if (ex->resp_done && !exchange_has_output(ex)) {
                r->ex = NULL;
                exchange_end(ex); /* the cache stores what was filled, the access entry is written */
                refresh_free(r);
                return;
        }
        refresh_update_timer(r);
}

static void refresh_begin(Refresh *r) {
        r->ex = exchange_new(&r->s, r->gen, NULL);
        if (!r->ex) {
                refresh_free(r);
                return;
        }
        r->ex->req = r->req;
        int k = exchange_begin(r->ex);
        if (k < 0) {
                log_warning_errno(k, "%s: background refresh of %s failed", ex_text(r->ex), r->target);
                Exchange *ex = r->ex;
                r->ex = NULL;
                ex->status = 500;
                exchange_end(ex);
                refresh_free(r);
                return;
        }
        refresh_run(&r->s);
}

static void refresh_on_timer(TimerNode *t) {
        Refresh *r = refresh_of_timer(t);
        TimeoutKind kind;

        if (!r->ex) {
                refresh_begin(r);
                return;
        }
        if (r->resume) {
                r->resume = false;
                refresh_run(&r->s);
                return;
        }
        uint64_t d = exchange_deadline(r->ex, &kind);
        if (d == USEC_INFINITY)
                return;
        if (worker_now(r->s.worker) + TIMER_ACCURACY_USEC < d) {
                (void) worker_timer_set(r->s.worker, &r->timer, d);
                return;
        }
        exchange_timeout(r->ex, kind);
        refresh_run(&r->s);
}

static void refresh_abort(WorkerTask *t) {
        Refresh *r = refresh_of_task(t);
        if (r->ex)
                log_debug("%s: background refresh of %s ended with the worker", ex_text(r->ex), r->target);
        refresh_free(r);
}

/* The client's request as a GET with the same target and fields, in memory of its own. */
static int copy_request(Refresh *r, const HttpRequest *req) {
        size_t n = req->n_headers;

        r->target = strndup(req->target, req->target_len);
        if (!r->target || cache_copy_fields(req->headers, n, &r->copy, &r->fields) < 0)
                return -ENOMEM;
        r->req = (HttpRequest){
                .method = "GET",
                .method_len = 3,
                .method_id = HTTP_METHOD_GET,
                .target = r->target,
                .target_len = req->target_len,
                .version_minor = 1,
                .headers = r->fields,
                .n_headers = n,
                .body = HTTP_BODY_NONE,
                .connection = req->connection,
                .keep_alive = true,
                .host_index = req->host_index,
                .upgrade_index = -1,
        };
        return 0;
}

int cache_refresh_start(const Exchange *client, const char *claim_id) {
        Worker *w = client->s->worker;
        Refresh *r = NULL;
        int k = -ENOMEM;

        if (w->draining) {
                k = -ESHUTDOWN;
                goto fail;
        }
        r = calloc(1, sizeof(Refresh));
        if (!r)
                goto fail;
        r->s = (Session){
                .ops = &refresh_ops,
                .worker = w,
                .listener = client->s->listener,
                .local_port = client->s->local_port,
                .remote_port = client->remote_port,
                .tls = client->s->tls,
                .fd = -EBADF,
        };
        memcpy(r->s.remote_addr, client->remote_addr, sizeof(r->s.remote_addr));
        memcpy(&r->s.remote_sa, &client->remote_sa, sizeof(r->s.remote_sa));
        r->timer = TIMER_NODE_INIT;
        r->timer.fire = refresh_on_timer;
        r->task.abort = refresh_abort;
        r->claim_id = strdup(claim_id);
        if (!r->claim_id) {
                free(r);
                r = NULL;
                goto fail;
        }
        r->gen = worker_gen_ref(client->gen);
        worker_task_add(w, &r->task);
        k = copy_request(r, &client->req);
        if (k >= 0)
                k = worker_timer_set(w, &r->timer, worker_now(w));
        if (k < 0) {
                refresh_free(r); /* releases the claim */
                return k;
        }
        return 0;
fail:
        cache_store_fill_done(claim_id);
        return k;
}

bool cache_refresh_session(const Session *s) {
        return s->ops == &refresh_ops;
}

char *cache_refresh_take_claim(Session *s) {
        Refresh *r = (Refresh *) s;
        char *id = r->claim_id;
        r->claim_id = NULL;
        return id;
}

/* ---- the session: it sends nowhere ---- */

static int refresh_body_peek(Exchange *ex, const char **ret, size_t *ret_len) {
        (void) ex, (void) ret, (void) ret_len;
        return 0;
}

static void refresh_body_consume(Exchange *ex, size_t n) {
        (void) ex, (void) n;
}

static int refresh_send_interim(Exchange *ex, int status, const HttpResponse *resp) {
        (void) ex, (void) status, (void) resp;
        return 0;
}

static int refresh_send_head(Exchange *ex, const HttpResponse *resp) {
        ex->client_head_sent = true;
        ex->status = resp->status;
        return 0;
}

static int refresh_send_local(Exchange *ex, const LocalResponse *l) {
        ex->status = l->status;
        return 0;
}

static ssize_t refresh_send_data(Exchange *ex, const char *p, size_t n, bool last) {
        (void) p, (void) last;
        ex->bytes_sent += n;
        return (ssize_t) n;
}

static int refresh_send_end(Exchange *ex) {
        (void) ex;
        return 0;
}

static bool refresh_send_blocked(const Exchange *ex) {
        (void) ex;
        return false;
}

static const char *refresh_client_subject(const Exchange *ex) {
        (void) ex;
        return NULL;
}

static const SessionOps refresh_ops = {
        .run = refresh_run,
        .body_peek = refresh_body_peek,
        .body_consume = refresh_body_consume,
        .send_interim = refresh_send_interim,
        .send_head = refresh_send_head,
        .send_local = refresh_send_local,
        .send_data = refresh_send_data,
        .send_end = refresh_send_end,
        .send_pipe = NULL,
        .send_blocked = refresh_send_blocked,
        .client_subject = refresh_client_subject,
        .local_address = NULL,
};
