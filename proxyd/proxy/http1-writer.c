/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "http1-writer.h"
#include "session.h"

static int append_http_values(Buf *out, const HttpRequest *req, const VarSegment *seg, const char *name,
                              const char *sep) {
        bool first = true;
        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                bool match = seg ? var_http_name_matches(seg, h->name, h->name_len)
                                 : name && memcaseeq(h->name, h->name_len, name);
                if (!match)
                        continue;
                if (!first && buf_append_str(out, sep) < 0)
                        return -ENOMEM;
                if (buf_append(out, h->value, h->value_len) < 0)
                        return -ENOMEM;
                first = false;
        }
        return first ? 0 : 1;
}

static bool all_tchar(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("!#$%&'*+-.^_`|~", c)))
                        return false;
        }
        return n > 0;
}

/* RFC 7239 element for this hop: for=192.0.2.1;proto=https;host=example.com, an IPv6 client
 * as for="[2001:db8::1]", a client over a unix socket as for=unknown; host quoted when it is
 * not a token. */
static int append_forwarded(Buf *out, const RequestInfo *ri) {
        const char *a = ri->remote_addr;
        int r;

        if (streq(a, "unix:") || !*a)
                r = buf_append_str(out, "for=unknown");
        else if (strchr(a, ':'))
                r = buf_printf(out, "for=\"[%s]\"", a);
        else
                r = buf_printf(out, "for=%s", a);
        if (r >= 0)
                r = buf_printf(out, ";proto=%s", ri->scheme);
        if (r >= 0 && ri->host_len > 0) {
                bool q = !all_tchar(ri->host, ri->host_len);
                r = buf_printf(out, ";host=%s%.*s%s", q ? "\"" : "", (int) ri->host_len, ri->host, q ? "\"" : "");
        }
        return r;
}

/* $arg_NAME, $cookie_NAME: the first one, as sent. */
static int append_pair(Buf *out, const RequestInfo *ri, const VarSegment *seg) {
        const char *v;
        size_t len, pos = 0;

        if (seg->id == VAR_ARG)
                return ri->args && http1_next_pair(ri->args, ri->args_len, '&', seg->text, seg->len, &pos, &v, &len)
                               ? buf_append(out, v, len)
                               : 0;
        for (size_t i = 0; i < ri->req->n_headers; i++) {
                const HttpHeader *h = &ri->req->headers[i];
                pos = 0;
                if (memcaseeq(h->name, h->name_len, "Cookie") &&
                    http1_next_pair(h->value, h->value_len, ';', seg->text, seg->len, &pos, &v, &len))
                        return buf_append(out, v, len);
        }
        return 0;
}

int var_expand(Buf *out, const VarTemplate *t, const RequestInfo *ri) {
        const HttpRequest *req = ri->req;
        int r = 0;

        for (size_t i = 0; i < t->n_segs && r >= 0; i++) {
                const VarSegment *seg = &t->segs[i];
                switch (seg->id) {
                case VAR_LITERAL:
                        r = buf_append(out, seg->text, seg->len);
                        break;
                case VAR_HOST:
                        r = buf_append(out, ri->host, ri->host_len);
                        break;
                case VAR_REMOTE_ADDR:
                        r = buf_append_str(out, ri->remote_addr);
                        break;
                case VAR_REMOTE_PORT:
                        r = buf_append_uint(out, ri->remote_port);
                        break;
                case VAR_SCHEME:
                        r = buf_append_str(out, ri->scheme);
                        break;
                case VAR_REQUEST_URI:
                        r = buf_append(out, req->target, req->target_len);
                        break;
                case VAR_URI:
                        r = buf_append(out, ri->uri, ri->uri_len);
                        break;
                case VAR_ARGS:
                        if (ri->args)
                                r = buf_append(out, ri->args, ri->args_len);
                        break;
                case VAR_SERVER_NAME:
                        r = buf_append_str(out, ri->server_name);
                        break;
                case VAR_SERVER_PORT:
                        r = buf_append_uint(out, ri->server_port);
                        break;
                case VAR_PROXY_HOST:
                        r = buf_append_str(out, ri->proxy_host);
                        break;
                case VAR_PROXY_ADD_X_FORWARDED_FOR:
                        r = append_http_values(out, req, NULL, "X-Forwarded-For", ", ");
                        if (r > 0)
                                r = buf_append(out, ", ", 2);
                        if (r >= 0)
                                r = buf_append_str(out, ri->remote_addr);
                        break;
                case VAR_REQUEST_ID:
                        r = buf_append_str(out, ri->request_id);
                        break;
                case VAR_REQUEST_METHOD:
                        r = buf_append(out, req->method, req->method_len);
                        break;
                case VAR_HTTP:
                        r = append_http_values(out, req, seg, NULL, ", ");
                        break;
                case VAR_SSL_CLIENT_S_DN:
                        if (ri->ssl_client_s_dn)
                                r = buf_append_str(out, ri->ssl_client_s_dn);
                        break;
                case VAR_REALIP_REMOTE_ADDR:
                        r = buf_append_str(out, ri->realip_remote_addr ?: ri->remote_addr);
                        break;
                case VAR_FORWARDED:
                        r = append_forwarded(out, ri);
                        break;
                case VAR_PROXY_ADD_FORWARDED:
                        r = append_http_values(out, req, NULL, "Forwarded", ", ");
                        if (r > 0)
                                r = buf_append(out, ", ", 2);
                        if (r >= 0)
                                r = append_forwarded(out, ri);
                        break;
                case VAR_ARG:
                case VAR_COOKIE:
                        r = append_pair(out, ri, seg);
                        break;
                case _VAR_MAX:
                        break;
                }
        }
        return r < 0 ? r : 0;
}

static int append_field(Buf *out, const char *name, const char *value, size_t len) {
        int r = buf_append_str(out, name);
        if (r >= 0)
                r = buf_append(out, ": ", 2);
        if (r >= 0)
                r = buf_append(out, value, len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

static int append_content_length(Buf *out, uint64_t n) {
        int r = buf_append_str(out, "Content-Length: ");
        if (r >= 0)
                r = buf_append_uint(out, n);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

static int append_status_line(Buf *out, int status, const char *reason, size_t len) {
        int r = buf_reserve(out, len + 512);
        if (r >= 0)
                r = buf_append_str(out, "HTTP/1.1 ");
        if (r >= 0)
                r = buf_append_uint(out, (uint64_t) status);
        if (r >= 0)
                r = buf_append(out, " ", 1);
        if (r >= 0)
                r = buf_append(out, reason, len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

/* A field value must not carry CR, LF, NUL or other controls (a decoded $uri could):
 * such bytes are percent-encoded. */
int http1_append_field_value(Buf *out, const char *v, size_t n) {
        static const char hex[] = "0123456789ABCDEF";
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) v[i];
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                        char esc[3] = { '%', hex[ch >> 4], hex[ch & 15] };
                        if (buf_append(out, esc, 3) < 0)
                                return -ENOMEM;
                } else if (buf_append(out, v + i, 1) < 0)
                        return -ENOMEM;
        }
        return 0;
}

typedef enum FieldClass {
        FIELD_OTHER,
        FIELD_HOST,
        FIELD_CONTENT_LENGTH,
        FIELD_TRANSFER_ENCODING,
        FIELD_EXPECT,
        FIELD_UPGRADE,
        FIELD_HOP, /* other hop-by-hop fields (RFC 9110 7.6.1) */
} FieldClass;

/* Classify a field name with one length switch and at most one comparison (this runs for
 * every field of every message). */
static FieldClass field_class(const char *n, size_t len) {
#define IS(lit) memcaseeq_lower(n, lit, len) /* len is the literal's */
        switch (len) {
        case 2:
                return IS("te") ? FIELD_HOP : FIELD_OTHER;
        case 4:
                return IS("host") ? FIELD_HOST : FIELD_OTHER;
        case 6:
                return IS("expect") ? FIELD_EXPECT : FIELD_OTHER;
        case 7:
                if ((n[0] | 0x20) == 'u')
                        return IS("upgrade") ? FIELD_UPGRADE : FIELD_OTHER;
                return IS("trailer") ? FIELD_HOP : FIELD_OTHER;
        case 10:
                if ((n[0] | 0x20) == 'c')
                        return IS("connection") ? FIELD_HOP : FIELD_OTHER;
                return IS("keep-alive") ? FIELD_HOP : FIELD_OTHER;
        case 14:
                return IS("content-length") ? FIELD_CONTENT_LENGTH : FIELD_OTHER;
        case 16:
                return IS("proxy-connection") ? FIELD_HOP : FIELD_OTHER;
        case 17:
                return IS("transfer-encoding") ? FIELD_TRANSFER_ENCODING : FIELD_OTHER;
        case 18:
                return IS("proxy-authenticate") ? FIELD_HOP : FIELD_OTHER;
        default:
                return FIELD_OTHER;
        }
#undef IS
}

/* The tokens of a message's Connection fields (the fields they name are hop-by-hop too).
 * "close", "keep-alive" and "upgrade" name fields that are dropped anyway. */
typedef struct ConnTokens {
        struct {
                const char *p;
                size_t len;
        } tok[16];
        size_t n;
        bool overflow;
} ConnTokens;

static void conn_tokens_collect(ConnTokens *t, const HttpHeader *h, size_t n) {
        t->n = 0;
        t->overflow = false;
        for (size_t i = 0; i < n; i++) {
                if (h[i].name_len != 10 || !memcaseeq_lower(h[i].name, "connection", 10))
                        continue;
                const char *p = h[i].value, *e = h[i].value + h[i].value_len;
                while (p < e) {
                        while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
                                p++;
                        const char *start = p;
                        while (p < e && *p != ',' && *p != ' ' && *p != '\t')
                                p++;
                        size_t len = (size_t) (p - start);
                        if (len == 0 || (len == 5 && memcaseeq_lower(start, "close", 5)) ||
                            (len == 10 && memcaseeq_lower(start, "keep-alive", 10)) ||
                            (len == 7 && memcaseeq_lower(start, "upgrade", 7)))
                                continue;
                        if (t->n == ELEMENTSOF(t->tok)) {
                                t->overflow = true;
                                continue;
                        }
                        t->tok[t->n].p = start;
                        t->tok[t->n].len = len;
                        t->n++;
                }
        }
}

static bool conn_tokens_name(const ConnTokens *t, const HttpHeader *all, size_t n_all, const char *name, size_t len) {
        if (t->overflow)
                return http1_connection_lists(all, n_all, name, len);
        for (size_t i = 0; i < t->n; i++)
                if (t->tok[i].len == len && strncasecmp(t->tok[i].p, name, len) == 0)
                        return true;
        return false;
}

/* A field line as received, when it was written in canonical form ("Name: value" + CRLF,
 * single space, no trailing whitespace), is copied in one piece; otherwise it is rebuilt. The
 * head is complete, so the bytes after the value are its line end. */
static int append_header_line(Buf *out, const HttpHeader *h) {
        const char *end = h->value + h->value_len;
        if (h->value == h->name + h->name_len + 2 && h->name[h->name_len + 1] == ' ' && end[0] == '\r')
                return buf_append(out, h->name, (size_t) (end + 2 - h->name));
        int r = buf_append(out, h->name, h->name_len);
        if (r >= 0)
                r = buf_append(out, ": ", 2);
        if (r >= 0)
                r = buf_append(out, h->value, h->value_len);
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r;
}

static bool framing_header(const char *name, size_t len) {
        return memcaseeq(name, len, "Content-Length") || memcaseeq(name, len, "Transfer-Encoding");
}

static bool header_set_by_config(const LocationSettings *s, const char *name, size_t len) {
        for (size_t i = 0; i < s->n_set_header; i++)
                if (memcaseeq(name, len, s->set_header[i].name))
                        return true;
        return false;
}

int http1_write_request_head(Buf *out, const RequestInfo *ri, const char *target, size_t target_len,
                             const LocationSettings *s, HttpBodyKind body, uint64_t content_length,
                             bool keep_alive, const HttpHeader *upgrade) {
        const HttpRequest *req = ri->req;
        bool host_set = false, connection_set = false;
        Buf tmp = {};
        int r;

        r = buf_reserve(out, req->method_len + target_len + 512);
        if (r >= 0)
                r = buf_append(out, req->method, req->method_len);
        if (r >= 0)
                r = buf_append(out, " ", 1);
        if (r >= 0)
                r = buf_append(out, target, target_len);
        if (r >= 0)
                r = buf_append_str(out, " HTTP/1.1\r\n");

        for (size_t i = 0; i < s->n_set_header && r >= 0; i++) {
                const HeaderSetting *h = &s->set_header[i];
                if (strcasecmp(h->name, "Host") == 0)
                        host_set = true;
                if (strcasecmp(h->name, "Connection") == 0)
                        connection_set = true;
                /* Upgrade is proxyd's decision (upgrade_protocols): set_header = { Upgrade =
                 * "$http_upgrade"; } from nginx configurations sends the filtered value. */
                if (strcasecmp(h->name, "Upgrade") == 0)
                        continue;
                if (!h->value || framing_header(h->name, strlen(h->name)))
                        continue;
                buf_reset(&tmp);
                r = var_expand(&tmp, h->value, ri);
                if (r < 0 || buf_len(&tmp) == 0)
                        continue; /* an empty value sends no field, as in nginx */
                r = buf_append_str(out, h->name);
                if (r >= 0)
                        r = buf_append(out, ": ", 2);
                if (r >= 0)
                        r = http1_append_field_value(out, buf_head(&tmp), buf_len(&tmp));
                if (r >= 0)
                        r = buf_append(out, "\r\n", 2);
        }
        buf_free(&tmp);
        if (r >= 0 && !host_set)
                r = append_field(out, "Host", ri->proxy_host, strlen(ri->proxy_host));

        ConnTokens tokens;
        conn_tokens_collect(&tokens, req->headers, req->n_headers);
        for (size_t i = 0; i < req->n_headers && r >= 0; i++) {
                const HttpHeader *h = &req->headers[i];
                if (field_class(h->name, h->name_len) != FIELD_OTHER ||
                    conn_tokens_name(&tokens, req->headers, req->n_headers, h->name, h->name_len) ||
                    header_set_by_config(s, h->name, h->name_len))
                        continue;
                r = append_header_line(out, h);
        }

        if (r >= 0 && body == HTTP_BODY_LENGTH)
                r = append_content_length(out, content_length);
        else if (r >= 0 && body == HTTP_BODY_CHUNKED)
                r = buf_append_str(out, "Transfer-Encoding: chunked\r\n");
        else if (r >= 0 && (req->method_id == HTTP_METHOD_POST || req->method_id == HTTP_METHOD_PUT ||
                            req->method_id == HTTP_METHOD_PATCH))
                r = buf_append_str(out, "Content-Length: 0\r\n");
        if (r >= 0 && upgrade) {
                r = buf_append_str(out, "Upgrade: ");
                if (r >= 0)
                        r = buf_append(out, upgrade->value, upgrade->value_len);
                if (r >= 0)
                        r = buf_append(out, "\r\n", 2);
        }
        if (r >= 0 && upgrade && !connection_set)
                r = buf_append_str(out, "Connection: upgrade\r\n");
        else if (r >= 0 && !keep_alive && !connection_set)
                r = buf_append_str(out, "Connection: close\r\n");
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r < 0 ? r : 0;
}

static bool header_hidden(const LocationSettings *s, const char *name, size_t len) {
        for (size_t i = 0; i < s->n_hide_header; i++)
                if (memcaseeq(name, len, s->hide_header[i]))
                        return true;
        return false;
}

static bool extra_replaces(const ResponseFields *x, const char *name, size_t len) {
        for (size_t i = 0; x && i < x->s->n_replace_header; i++)
                if (x->s->replace_header[i].value && memcaseeq(name, len, x->s->replace_header[i].name))
                        return true;
        return false;
}

static int append_literal_fields(Buf *out, const HeaderSetting *a, size_t n) {
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                const VarTemplate *t = a[i].value;
                if (!t || !var_template_is_literal(t) || t->n_segs == 0)
                        continue;
                r = append_field(out, a[i].name, t->segs[0].text, t->segs[0].len);
        }
        return r;
}

static int append_extra(Buf *out, const ResponseFields *x) {
        int r;

        if (!x)
                return 0;
        if (x->s->fields_rendered)
                r = x->s->fields_text_len > 0 ? buf_append(out, x->s->fields_text, x->s->fields_text_len) : 0;
        else {
                r = append_literal_fields(out, x->s->add_header, x->s->n_add_header);
                if (r >= 0)
                        r = append_literal_fields(out, x->s->replace_header, x->s->n_replace_header);
        }
        if (r >= 0 && x->lines_len > 0)
                r = buf_append(out, x->lines, x->lines_len);
        return r;
}

int http1_write_response_head(Buf *out, const HttpResponse *resp, const LocationSettings *s,
                              HttpBodyKind framing, bool keep_alive, int client_minor, const ResponseFields *extra) {
        int r;

        if (resp->reason_len > 0)
                r = append_status_line(out, resp->status, resp->reason, resp->reason_len);
        else
                r = append_status_line(out, resp->status, http1_status_text(resp->status),
                                       strlen(http1_status_text(resp->status)));

        ConnTokens tokens;
        bool cl_seen = false;
        const ResponseFields *replacing = extra && extra->s->n_replace_header > 0 ? extra : NULL;
        conn_tokens_collect(&tokens, resp->headers, resp->n_headers);
        for (size_t i = 0; i < resp->n_headers && r >= 0; i++) {
                const HttpHeader *h = &resp->headers[i];
                FieldClass fc = field_class(h->name, h->name_len);
                if (fc == FIELD_UPGRADE && resp->status == 101) {
                        r = append_field(out, "Upgrade", h->value, h->value_len);
                        continue;
                }
                if (fc == FIELD_HOP || fc == FIELD_UPGRADE || fc == FIELD_TRANSFER_ENCODING ||
                    conn_tokens_name(&tokens, resp->headers, resp->n_headers, h->name, h->name_len) ||
                    header_hidden(s, h->name, h->name_len) ||
                    (replacing && extra_replaces(replacing, h->name, h->name_len)))
                        continue;
                /* Content-Length is rewritten canonically below, except on bodiless responses
                 * (HEAD, 304) where the upstream's value describes the representation: then it
                 * is passed once, even if the upstream repeated an identical value. */
                if (fc == FIELD_CONTENT_LENGTH) {
                        if (framing != HTTP_BODY_NONE || cl_seen)
                                continue;
                        cl_seen = true;
                }
                r = append_header_line(out, h);
        }
        if (r >= 0)
                r = append_extra(out, extra);
        if (r >= 0 && framing == HTTP_BODY_LENGTH)
                r = append_content_length(out, resp->content_length);
        else if (r >= 0 && framing == HTTP_BODY_CHUNKED)
                r = buf_append_str(out, "Transfer-Encoding: chunked\r\n");
        if (r >= 0 && resp->status == 101)
                r = buf_append_str(out, "Connection: upgrade\r\n");
        else if (r >= 0 && !keep_alive)
                r = buf_append_str(out, "Connection: close\r\n");
        else if (r >= 0 && client_minor == 0)
                r = buf_append_str(out, "Connection: keep-alive\r\n");
        if (r >= 0)
                r = buf_append(out, "\r\n", 2);
        return r < 0 ? r : 0;
}

int http1_write_local_response(Buf *out, const LocalResponse *l, bool keep_alive, bool head_only,
                               const ResponseFields *extra) {
        char page[512];
        const int status = l->status;
        const char *text = http1_status_text(status), *body = l->body, *content_type = l->content_type;
        size_t body_len = l->body_len;
        int r;

        if (!body) {
                int n = snprintf(page, sizeof(page),
                                 "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
                                 "<center><h1>%d %s</h1></center>\r\n<hr><center>proxyd</center>\r\n"
                                 "</body>\r\n</html>\r\n",
                                 status, text, status, text);
                body = page;
                body_len = (size_t) MIN(n, (int) sizeof(page) - 1);
                content_type = "text/html";
        }
        r = buf_printf(out, "HTTP/1.1 %d %s\r\n", status, text);
        if (r >= 0 && !extra_replaces(extra, "Server", 6))
                r = buf_append_str(out, "Server: proxyd\r\n");
        if (r >= 0 && !extra_replaces(extra, "Content-Type", 12))
                r = buf_printf(out, "Content-Type: %s\r\n", content_type ?: "text/plain");
        if (r >= 0)
                r = buf_printf(out, "Content-Length: %zu\r\n", body_len);
        if (r >= 0 && l->location)
                r = buf_printf(out, "Location: %s\r\n", l->location);
        if (r >= 0 && l->retry_after > 0)
                r = buf_printf(out, "Retry-After: %u\r\n", l->retry_after);
        if (r >= 0 && l->allow)
                r = buf_printf(out, "Allow: %s\r\n", l->allow);
        if (r >= 0)
                r = append_extra(out, extra);
        if (r >= 0)
                r = buf_append_str(out, keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
        if (r >= 0 && !head_only && body_len > 0)
                r = buf_append(out, body, body_len);
        return r < 0 ? r : 0;
}
