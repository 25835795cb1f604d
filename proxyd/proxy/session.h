/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The two interfaces of an exchange (docs/architecture.md, "The data path"):
 *
 *     client session --- request head, decoded body ---> exchange ---> response source
 *     client session <-- response head, body, end ------ exchange <--- response source
 *
 * A client session speaks one client protocol and owns the client socket: parsing, framing,
 * keep-alive, closing, the client-side deadlines. The HTTP/1 connection (conn.c) is one and
 * runs one exchange at a time; an HTTP/2 connection runs one exchange per stream and passes
 * its stream in Exchange.stream. The exchange never touches the client socket or a client
 * buffer: it reads the request body through body_peek/body_consume and gives the response
 * through send_*; every one of them may refuse (-EAGAIN, 0 bytes accepted), which is the
 * backpressure in both directions, and the session runs the exchange again (exchange_step)
 * when that may have changed.
 *
 * A response source produces the response (source.h).
 */

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "http1.h"
#include "worker.h"

typedef struct Exchange Exchange;
typedef struct SessionOps SessionOps;

/* What the exchange knows of the client: the same for every client protocol. */
typedef struct Session {
        const SessionOps *ops;
        Worker *worker;
        size_t listener;
        unsigned local_port;
        char remote_addr[INET6_ADDRSTRLEN];
        unsigned remote_port;
        /* remote_addr's length and its hash as a limit key (the default key), worked out once
         * for the connection: remote_key_ok is cleared wherever remote_addr is set */
        bool remote_key_ok;
        size_t remote_addr_len;
        uint64_t remote_key_hash;
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } remote_sa; /* the balancer's ip_hash key, access rules; a unix peer keeps only its family */
        bool tls;     /* the client connection is TLS: $scheme is https */
        bool draining; /* a stop is in progress: the connection ends after the current response(s) */
        int fd;        /* the client socket, for the peer credentials of a unix client (SO_PEERCRED) */
} Session;

/* A response proxyd makes itself: an error page (body NULL) or `return`. */
typedef struct LocalResponse {
        int status;
        const char *content_type; /* NULL: text/html for error pages */
        const char *body;         /* NULL: the standard error page for status */
        size_t body_len;
        const char *location;     /* a Location field, or NULL */
        unsigned retry_after;     /* a Retry-After field (seconds), or 0 */
        const char *allow;        /* an Allow field (a 405 of proxyd's own resources), or NULL */
} LocalResponse;

struct SessionOps {
        /* Run the session now: called after an event on a socket of one of its exchanges'
         * sources (an upstream became readable or writable), never from inside a session op. */
        void (*run)(Session *s);
        /* The same after an event on the upstream socket of this exchange: a session with many
         * exchanges runs only that one (and may do so after the worker's batch of events, so
         * that the responses of one batch leave in one write). NULL: run. */
        void (*run_exchange)(Exchange *ex);

        /* The request body, decoded (no transfer framing). On 1, *ret and *ret_len hold body bytes
         * the session has (ret_len > 0); they stay valid until body_consume or the next peek.
         * 0: the body is complete, nothing more will come. -EAGAIN: nothing now; the session
         * reads on and runs the exchange when bytes arrived. Any other error ends the request
         * body; the session has logged why: -EBADMSG (invalid framing: 400), -EFBIG
         * (client_max_body_size: 413), -ECONNRESET (the client went away). */
        int (*body_peek)(Exchange *ex, const char **ret, size_t *ret_len);
        /* The request's trailer fields, once body_peek said the body is complete, as
         * "name: value\r\n" lines (sent upstream after a chunked body's last chunk); NULL: none.
         * NULL op: never any. */
        const char *(*body_trailers)(Exchange *ex, size_t *ret_len);
        /* n bytes of what body_peek gave were taken by the source (written to the upstream
         * socket): the session may drop them and read more (HTTP/2: WINDOW_UPDATE). */
        void (*body_consume)(Exchange *ex, size_t n);

        /* An interim response: r NULL is proxyd's own 100 Continue before a request body is read
         * (not sent when the client already sends the body); otherwise the upstream's 1xx head
         * (103 Early Hints, 102), which RFC 9110 15.2 says a proxy passes on (not to HTTP/1.0
         * clients). */
        int (*send_interim)(Exchange *ex, int status, const HttpResponse *r);
        /* The final response head from an upstream (its fields are filtered by the session's
         * serializer per the location's settings). r->body and r->content_length say what the
         * source knows of the length: HTTP_BODY_LENGTH (exactly that many bytes follow),
         * HTTP_BODY_NONE, or HTTP_BODY_CHUNKED / HTTP_BODY_UNTIL_CLOSE (unknown: the end is
         * send_end). Status 101: after it the session takes the source's connection as a
         * tunnel (Exchange.tunnel_pending). */
        int (*send_head)(Exchange *ex, const HttpResponse *r);
        /* A complete local response, head and body; the session drops any response output it
         * queued and did not write yet (nothing of a final head has reached the client). */
        int (*send_local)(Exchange *ex, const LocalResponse *l);
        /* Response body bytes: returns how many were taken (0: none now, the session runs the
         * exchange again when it can take more), or -errno when the client is gone (the
         * response is cut). last: these bytes end a body of known length. */
        ssize_t (*send_data)(Exchange *ex, const char *p, size_t n, bool last);
        /* Trailer fields of a chunked response, as "name: value\r\n" lines (checked by the
         * decoder), given before send_end; the session keeps what it wants of them. NULL op:
         * dropped. */
        int (*send_trailers)(Exchange *ex, const char *lines, size_t len);
        /* The end of a body of unknown length (the chunked last-chunk). */
        int (*send_end)(Exchange *ex);
        /* Response body bytes waiting in a pipe (splice): moves up to n of them to the client
         * and returns how many, 0 when the client cannot take any now, -errno when it is gone;
         * -EOPNOTSUPP when the session cannot splice at all (TLS, HTTP/2 framing, queued
         * output), and the source reads into user space instead. NULL: never. */
        ssize_t (*send_pipe)(Exchange *ex, int pipe_fd, size_t n, bool last);
        /* The session still holds response output it has not written: the source reads no
         * more from its upstream until this is false (the bound on buffered data). */
        bool (*send_blocked)(const Exchange *ex);

        /* The subject DN of the client's TLS certificate ($ssl_client_s_dn), or NULL. */
        const char *(*client_subject)(const Exchange *ex);
        /* The address the client connected to (the PROXY protocol towards upstreams). */
        int (*local_address)(const Exchange *ex, struct sockaddr_storage *ret, socklen_t *ret_len);
};

/* "address:port" of the client, for log lines, in a per-thread buffer valid until the next
 * call. */
const char *session_text(const Session *s);
