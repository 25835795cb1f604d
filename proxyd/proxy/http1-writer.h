/* SPDX-License-Identifier: MIT */
#pragma once

/* Serializes message heads from parsed form (proxyd is a normalizing proxy: nothing is
 * relayed raw). Hop-by-hop fields are dropped, framing headers are written canonically. */

#include "buf.h"
#include "config.h"
#include "http1.h"

/* What variables in set_header values are expanded from. */
typedef struct RequestInfo {
        const HttpRequest *req;
        const char *remote_addr;
        unsigned remote_port;
        const char *scheme;
        const char *host; /* $host: lower case, no port */
        size_t host_len;
        const char *uri; /* normalized path */
        size_t uri_len;
        const char *args;
        size_t args_len;
        const char *server_name;
        unsigned server_port;
        const char *proxy_host;
        const char *request_id;
        const char *ssl_client_s_dn; /* verified client certificate subject, NULL if none */
        const char *realip_remote_addr; /* the connection's peer, before real_ip_* (NULL: remote_addr) */
} RequestInfo;

int var_expand(Buf *out, const VarTemplate *t, const RequestInfo *ri);
/* A field value with CR, LF, NUL and other controls percent-encoded (a decoded $uri has them). */
int http1_append_field_value(Buf *out, const char *v, size_t n);

/* Response fields from the configuration (add_header, replace_header): the upstream's fields
 * named in replace_header are dropped, the fields of add and replace whose values have no variables
 * are written from their text, and `lines` ("Name: value" CRLF ..., the others, expanded for
 * this request) is appended as it is. */
typedef struct ResponseFields {
        /* add_header, replace_header and, when fields_rendered, the fields of both without
         * variables as one text rendered with the configuration (else written one by one) */
        const LocationSettings *s;
        const char *lines;
        size_t lines_len;
} ResponseFields;

/* Request head to the upstream. body: NONE, LENGTH (content_length) or CHUNKED.
 * keep_alive false adds "Connection: close". upgrade (the Upgrade field to send: the
 * client's, filtered by upgrade_protocols; or NULL) asks the upstream to switch protocols:
 * "Upgrade: ..." is sent, and "Connection: upgrade" unless set_header sets Connection. A
 * set_header for Upgrade is never sent as such: Upgrade is always this decision's. */
int http1_write_request_head(Buf *out, const RequestInfo *ri, const char *target, size_t target_len,
                             const LocationSettings *s, HttpBodyKind body, uint64_t content_length,
                             bool keep_alive, const HttpHeader *upgrade);

/* Response head to the client, from the upstream's parsed response.
 * framing: LENGTH (resp->content_length), CHUNKED (proxyd re-chunks), NONE (bodiless:
 * the upstream's Content-Length is passed unchanged), UNTIL_CLOSE (raw until close).
 * A 101 keeps the upstream's Upgrade field and says "Connection: upgrade". */
int http1_write_response_head(Buf *out, const HttpResponse *resp, const LocationSettings *s,
                              HttpBodyKind framing, bool keep_alive, int client_minor, const ResponseFields *extra);

/* A response proxyd makes itself (errors, `return`; session.h). l->body NULL: the standard
 * error page. extra may replace its Server and Content-Type fields. */
typedef struct LocalResponse LocalResponse;
int http1_write_local_response(Buf *out, const LocalResponse *l, bool keep_alive, bool head_only,
                               const ResponseFields *extra);
