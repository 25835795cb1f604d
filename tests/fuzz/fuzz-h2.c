/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/2 session (proxyd/proxy/h2.c) fed a client's bytes. The input is what a client
 * sends after the TLS handshake (starting with the connection preface, or not), read in
 * pieces of pseudo-random sizes; writes sometimes take only part of what is offered. The
 * exchange layer is a stub: a request for /local gets a local response, any other is
 * answered by an "echo" source that streams the request body back (so the body and
 * response paths, flow control and the data source run). After the input, the deadline slot
 * fires a few times with the clock moved on (the idle, ping, header-block and stall
 * deadlines), then the connection is closed.
 *
 * Invariants: every request the session builds has a method, a target of visible ASCII, a
 * Host field at host_index when one is set, and lower-case field names; sanitizers and the
 * leak checker do the rest (every stream and its exchange freed with the connection).
 */

#include <nghttp2/nghttp2.h>
#include <string.h>

#include "config-schema.h"
#include "exchange.h"
#include "fuzz.h"
#include "h2.h"

static const uint8_t *in_data;
static size_t in_size, in_off;
static uint64_t rng;
static bool conn_closed;
static H2Conn *conn;
static Worker worker;
static char scratch[WORKER_READ_SCRATCH];
static HttpHeader *hdr_scratch;
static size_t n_hdr_scratch;

static unsigned next_rand(void) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return (unsigned) (rng >> 33);
}

/* ---- the worker and the stream ---- */

WorkerGen *worker_gen_ref(WorkerGen *wg) {
        if (wg)
                wg->refs++;
        return wg;
}

WorkerGen *worker_gen_unref(WorkerGen *wg) {
        if (wg)
                wg->refs--;
        return NULL;
}

int worker_timer_set(Worker *w, TimerNode *t, uint64_t when) {
        (void) w;
        t->when = when;
        t->idx = 0;
        return 0;
}

void worker_timer_remove(Worker *w, TimerNode *t) {
        (void) w;
        t->idx = TIMER_NOT_QUEUED;
}

char *worker_read_scratch(Worker *w) {
        (void) w;
        return scratch;
}

HttpHeader *worker_header_scratch(Worker *w, size_t n) {
        (void) w;
        if (n > n_hdr_scratch) {
                HttpHeader *a = realloc(hdr_scratch, n * sizeof(HttpHeader));
                if (!a)
                        return NULL;
                hdr_scratch = a;
                n_hdr_scratch = n;
        }
        return hdr_scratch;
}

ssize_t stream_read(Stream *s, void *buf, size_t n) {
        (void) s;
        if (in_off >= in_size)
                return -EAGAIN;
        size_t piece = 1 + next_rand() % 200;
        size_t k = MIN(n, MIN(in_size - in_off, piece));
        memcpy(buf, in_data + in_off, k);
        in_off += k;
        return (ssize_t) k;
}

ssize_t stream_write(Stream *s, const void *buf, size_t n) {
        (void) s;
        (void) buf;
        unsigned r = next_rand() % 8;
        if (r == 0)
                return -EAGAIN;
        return (ssize_t) (r == 1 && n > 1 ? n / 2 : n);
}

const char *tls_stream_client_subject(const Stream *s) {
        (void) s;
        return NULL;
}

int log_get_max_level(void) {
        return LOG_DEBUG;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...) {
        (void) level;
        (void) file;
        (void) line;
        (void) func;
        (void) fmt;
        return -error;
}

const char *session_text(const Session *s) {
        (void) s;
        return "fuzz";
}

const char *exchange_text(const Exchange *ex) {
        (void) ex;
        return "fuzz";
}

const ResponseFields *exchange_rules_fields(const Exchange *ex, int status, ResponseFields *buf) {
        (void) ex;
        (void) status;
        (void) buf;
        return NULL;
}

/* ---- the exchange layer ---- */

static int local_step(Exchange *ex) {
        (void) ex;
        return 0;
}

static bool local_no(const Exchange *ex) {
        (void) ex;
        return false;
}

static uint64_t no_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        (void) ex;
        *ret_kind = TIMEOUT_NONE;
        return USEC_INFINITY;
}

static void no_timeout(Exchange *ex, TimeoutKind kind) {
        (void) ex;
        (void) kind;
}

static void no_finish(Exchange *ex) {
        (void) ex;
}

const SourceOps source_local = { .name = "local", .step = local_step, .wants_body = local_no,
                                 .has_output = local_no, .deadline = no_deadline, .timeout = no_timeout,
                                 .finish = no_finish };

int exchange_local_response(Exchange *ex, int status, const char *content_type, const char *body,
                            size_t body_len, const char *location, bool keep_alive) {
        (void) keep_alive;
        ex->src = &source_local;
        ex->status = status;
        ex->resp_done = true;
        ex->local = (LocalResponse){ .status = status, .content_type = content_type, .body = body,
                                     .body_len = body_len, .location = location };
        return ex->s->ops->send_local(ex, &ex->local);
}

void exchange_cut(Exchange *ex, const char *reason) {
        ex->reason = reason;
        ex->resp_truncated = ex->resp_done = true;
}

void exchange_fail(Exchange *ex, int status, const char *reason) {
        if (ex->client_head_sent || ex->resp_head_done) {
                exchange_cut(ex, reason);
                return;
        }
        ex->reason = reason;
        (void) exchange_local_response(ex, status, NULL, NULL, 0, NULL, false);
}

void exchange_reject(Exchange *ex, int status, const char *reason, size_t offset) {
        (void) offset;
        ex->reason = reason;
        (void) exchange_local_response(ex, status, NULL, NULL, 0, NULL, false);
}

/* The echo source: a chunked 200 with the request body as its body. */
static int echo_step(Exchange *ex) {
        const SessionOps *o = ex->s->ops;
        int progress = 0;

        if (ex->resp_done)
                return 0;
        if (!ex->resp_head_done) {
                HttpHeader h[2] = { { "Content-Type", 12, "text/plain", 10 }, { "X-Echo", 6, "1", 1 } };
                HttpResponse r = { .version_minor = 1, .status = 200, .headers = h, .n_headers = 2,
                                   .body = HTTP_BODY_CHUNKED };
                ex->resp_head_done = true;
                if (o->send_head(ex, &r) < 0) {
                        exchange_cut(ex, "head");
                        return 1;
                }
                progress = 1;
        }
        while (!ex->req_done && !o->send_blocked(ex)) {
                const char *p;
                size_t n;
                int r = o->body_peek(ex, &p, &n);
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        exchange_fail(ex, r == -EFBIG ? 413 : 400, "body");
                        return 1;
                }
                if (r == 0) {
                        ex->req_done = true;
                        break;
                }
                FUZZ_CHECK(n > 0, "body_peek gave an empty run");
                ssize_t k = o->send_data(ex, p, n, false);
                if (k < 0) {
                        exchange_cut(ex, "client");
                        return 1;
                }
                if (k == 0)
                        break;
                o->body_consume(ex, (size_t) k);
                progress = 1;
        }
        if (ex->req_done && !ex->resp_done) {
                (void) o->send_end(ex);
                ex->resp_done = true;
                progress = 1;
        }
        return progress;
}

static bool echo_wants_body(const Exchange *ex) {
        return !ex->req_done;
}

static const SourceOps source_echo = { .name = "echo", .step = echo_step, .wants_body = echo_wants_body,
                                       .has_output = local_no, .deadline = no_deadline,
                                       .timeout = no_timeout, .finish = no_finish };

Exchange *exchange_new(Session *s, WorkerGen *gen, void *stream) {
        Exchange *ex = calloc(1, sizeof(Exchange));
        if (!ex)
                return NULL;
        ex->s = s;
        ex->gen = gen;
        ex->stream = stream;
        ex->minor = 1;
        return ex;
}

Exchange *exchange_free(Exchange *ex) {
        if (ex) {
                free(ex->method);
                free(ex->target);
                free(ex);
        }
        return NULL;
}

int exchange_begin(Exchange *ex) {
        const HttpRequest *req = &ex->req;

        FUZZ_CHECK(req->method_len > 0 && req->target_len > 0, "empty method or target");
        for (size_t i = 0; i < req->target_len; i++)
                FUZZ_CHECK(req->target[i] > 0x20 && req->target[i] < 0x7f, "target byte %d", req->target[i]);
        if (req->host_index >= 0) {
                FUZZ_CHECK((size_t) req->host_index < req->n_headers, "host_index out of range");
                FUZZ_CHECK(req->headers[req->host_index].name_len == 4, "host_index is not Host");
        }
        for (size_t i = 0; i < req->n_headers; i++)
                for (size_t k = 0; k < req->headers[i].name_len && (int) i != req->host_index; k++)
                        FUZZ_CHECK(!(req->headers[i].name[k] >= 'A' && req->headers[i].name[k] <= 'Z'),
                                   "upper-case field name");
        ex->method = strndup(req->method, req->method_len);
        ex->target = strndup(req->target, req->target_len);
        if (!ex->method || !ex->target)
                return -ENOMEM;
        ex->method_id = req->method_id;
        Generation *g = ex->gen->gen;
        ex->server = g->listener_servers[0].servers[0];
        ex->req_done = req->body == HTTP_BODY_NONE;
        if (req->target_len == 6 && memcmp(req->target, "/local", 6) == 0)
                return exchange_local_response(ex, 200, "text/plain", "hello\n", 6, NULL, true);
        ex->src = &source_echo;
        return 0;
}

/* no source of this stub answers 101: no tunnel runs */
int tunnel_init_ops(Tunnel *t, const TunnelEndOps *client_ops, void *client_ctx, bool *client_rd, bool *client_wr,
                    Stream *up, bool *up_rd, bool *up_wr, Buf *from_up) {
        (void) t, (void) client_ops, (void) client_ctx, (void) client_rd, (void) client_wr, (void) up, (void) up_rd,
                (void) up_wr, (void) from_up;
        return -EOPNOTSUPP;
}

int tunnel_pump(Tunnel *t) {
        (void) t;
        return -EOPNOTSUPP;
}

uint64_t exchange_deadline(const Exchange *ex, TimeoutKind *ret_kind) {
        return ex->src ? ex->src->deadline(ex, ret_kind) : no_deadline(ex, ret_kind);
}

void exchange_timeout(Exchange *ex, TimeoutKind kind) {
        (void) ex;
        (void) kind;
}

void exchange_end(Exchange *ex) {
        exchange_free(ex);
}

void exchange_log(Exchange *ex) {
        FUZZ_CHECK(ex->method && ex->target, "an access entry without method or target");
}

/* ---- the run ---- */

static void on_close(void *owner) {
        (void) owner;
        conn_closed = true;
        conn = h2_conn_free(conn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static Server server;
        static Server *servers[1] = { &server };
        static ListenerServers ls = { .servers = servers, .n = 1 };
        static Generation gen = { .listener_servers = &ls, .n_listeners = 1 };
        static WorkerGen wg = { .gen = &gen, .worker = &worker };
        static bool init;

        if (!init) {
                FUZZ_CHECK(settings_builtin(&server.s) == 0, "settings");
                server.limits = HTTP_LIMITS_DEFAULT;
                server.s.http2_max_header_list_size = 4096;
                server.s.client_max_body_size = 100000;
                init = true;
        }
        in_data = data;
        in_size = size;
        in_off = 0;
        rng = size;
        conn_closed = false;
        worker.now = 1000 * USEC_PER_SEC;
        worker.gen = &wg;

        Stream client = { .fd = -1 };
        bool rd = true, wr = true, rdhup = false;
        TimerNode timer = TIMER_NODE_INIT;
        Session base = { .worker = &worker, .listener = 0 };
        H2Host host = { .client = &client, .rd_ready = &rd, .wr_ready = &wr, .rdhup = &rdhup, .timer = &timer,
                        .gen = &wg, .close = on_close };
        Buf in = {};

        if (h2_conn_new(&base, &host, &in, &conn) < 0)
                return 0;
        for (unsigned round = 0; !conn_closed && round < 10000 && (in_off < in_size || round == 0); round++) {
                rd = wr = true;
                h2_conn_run(conn);
        }
        for (unsigned i = 0; !conn_closed && i < 8; i++) {
                worker.now += 40 * USEC_PER_SEC;
                wr = true;
                h2_conn_timeout(conn);
        }
        if (!conn_closed)
                on_close(NULL);
        FUZZ_CHECK(wg.refs == 0, "the connection's configuration reference was not dropped");
        return 0;
}
