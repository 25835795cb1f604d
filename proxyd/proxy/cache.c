/* SPDX-License-Identifier: MIT */
/*
 * The cache in the request path (cache.h): the lookup when routing chose a caching location,
 * the tee that fills a new object from the upstream source, revalidation (304 merged), stale
 * copies for failing origins, invalidation by unsafe methods, PURGE, and the Cache-Status
 * field. The cache source that serves stored objects and collapsed requests is in
 * cache-source.c, the background refresh in cache-refresh.c.
 */
#include <stdio.h>
#include <time.h>

#include "cache-internal.h"
#include "cache-policy.h"
#include "cache-refresh.h"
#include "cache-store.h"
#include "cache.h"
#include "exchange.h"
#include "log.h"

/* struct CacheState: cache-internal.h */

/* ---- small helpers ---- */

static char *expand(const VarTemplate *t, const RequestInfo *ri) {
        Buf b = {};
        if (var_expand(&b, t, ri) < 0 || buf_append(&b, "", 1) < 0) {
                buf_free(&b);
                return NULL;
        }
        char *s = strdup(buf_head(&b));
        buf_free(&b);
        return s;
}

/* cache_bypass / cache_no_store: set, and expands to something other than "" or "0" */
static bool template_true(const VarTemplate *t, const RequestInfo *ri) {
        if (!t)
                return false;
        _cleanup_free_ char *v = expand(t, ri);
        return v && *v && !streq(v, "0");
}

static bool field_is(const HttpHeader *h, const char *name) {
        return memcaseeq(h->name, h->name_len, name);
}

/* The stored head's fields (parsed once, when the object was made), with room for `extra`
 * more (into c->fields). */
static size_t parse_stored(CacheState *c, const CacheObject *o, size_t extra) {
        free(c->fields);
        c->fields = malloc((o->n_fields + extra + 1) * sizeof(HttpHeader));
        if (!c->fields)
                return SIZE_MAX;
        memcpy(c->fields, o->fields, o->n_fields * sizeof(HttpHeader));
        return o->n_fields;
}

static const HttpHeader *stored_field(const HttpHeader *f, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (field_is(&f[i], name))
                        return &f[i];
        return NULL;
}

/* A field the cache keeps in a stored head: not hop-by-hop, not framing, not Age. */
static bool field_kept(const HttpHeader *h, const HttpHeader *all, size_t n) {
        return !http1_is_hop_by_hop(h->name, h->name_len) && !field_is(h, "Content-Length") &&
               !field_is(h, "Transfer-Encoding") && !field_is(h, "Age") &&
               !http1_connection_lists(all, n, h->name, h->name_len);
}

/* The fields whose Connection may name other fields (for field_kept), or NULL when every
 * Connection field says only keep-alive or close, which name none: then no field is looked
 * up in them (a response head is not scanned once per field). */
static const HttpHeader *connection_fields(const HttpResponse *r) {
        for (size_t i = 0; i < r->n_headers; i++) {
                const HttpHeader *h = &r->headers[i];
                if (field_is(h, "Connection") && !memcaseeq(h->value, h->value_len, "keep-alive") &&
                    !memcaseeq(h->value, h->value_len, "close"))
                        return r->headers;
        }
        return NULL;
}

static int append_field(Buf *b, const HttpHeader *h) {
        int r = buf_append(b, h->name, h->name_len);
        if (r >= 0)
                r = buf_append(b, ": ", 2);
        if (r >= 0)
                r = buf_append(b, h->value, h->value_len);
        if (r >= 0)
                r = buf_append(b, "\r\n", 2);
        return r;
}

/* If-None-Match against a stored ETag, by the weak comparison (RFC 9110 13.1.2). */
static bool etag_matches(const char *list, const HttpHeader *etag) {
        if (!etag)
                return false;
        const char *tag = etag->value;
        size_t tl = etag->value_len;
        if (tl > 2 && tag[0] == 'W' && tag[1] == '/')
                tag += 2, tl -= 2;
        for (const char *p = list; *p;) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (*p == '*')
                        return true;
                const char *s = p;
                if (p[0] == 'W' && p[1] == '/')
                        s = p += 2;
                if (*p != '"')
                        break;
                p = strchr(p + 1, '"');
                if (!p)
                        break;
                p++;
                if ((size_t) (p - s) == tl && memcmp(s, tag, tl) == 0)
                        return true;
        }
        return false;
}

/* The fetch this request claimed is over: requests waiting for it look again. */
static void release_claim(CacheState *c) {
        if (c->claimed) {
                cache_store_fill_done(c->claim_id);
                c->claimed = false;
        }
}

void cache_set_word(CacheState *c, const char *w) {
        if (!c->refresh || !c->word)
                c->word = w; /* a refresh's access entry says REFRESH whatever the outcome */
}

/* ---- serving a stored object ---- */

static bool client_not_modified(const CacheState *c, const HttpHeader *f, size_t n, const CacheObject *o) {
        if (o->status != 200)
                return false;
        if (c->if_none_match)
                return etag_matches(c->if_none_match, stored_field(f, n, "ETag"));
        const HttpHeader *lm = stored_field(f, n, "Last-Modified");
        time_t t;
        return c->has_ims && lm && http_date_parse(lm->value, lm->value_len, &t) == 0 && t <= c->ims;
}

/* If-Range (RFC 9110 13.1.5): a strong ETag match, or exactly the stored Last-Modified. */
static bool if_range_holds(const char *v, const HttpHeader *f, size_t n) {
        const HttpHeader *h;
        if (v[0] == '"' || (v[0] == 'W' && v[1] == '/')) {
                h = stored_field(f, n, "ETag");
                return v[0] == '"' && h && h->value_len == strlen(v) && memcmp(h->value, v, h->value_len) == 0;
        }
        h = stored_field(f, n, "Last-Modified");
        return h && h->value_len == strlen(v) && memcmp(h->value, v, h->value_len) == 0;
}

/* One "bytes=first-last", "bytes=first-" or "bytes=-suffix" of a body of len bytes: 1 with
 * [*first, *end), 0 to answer with the whole body (no or several ranges, or not bytes),
 * -1 when not satisfiable (416). */
static int parse_range(const char *v, uint64_t len, uint64_t *first, uint64_t *end) {
        uint64_t a = 0, b = 0;
        const char *p = v;
        bool has_a = false, has_b = false;

        if (strncasecmp(p, "bytes=", 6) != 0 || strchr(p, ','))
                return 0;
        p += 6;
        while (*p == ' ')
                p++;
        for (; *p >= '0' && *p <= '9'; p++, has_a = true)
                if (a > UINT64_MAX / 10 - 10)
                        return 0;
                else
                        a = a * 10 + (uint64_t) (*p - '0');
        if (*p++ != '-')
                return 0;
        for (; *p >= '0' && *p <= '9'; p++, has_b = true)
                if (b > UINT64_MAX / 10 - 10)
                        return 0;
                else
                        b = b * 10 + (uint64_t) (*p - '0');
        while (*p == ' ')
                p++;
        if (*p || (!has_a && !has_b) || (has_a && has_b && b < a))
                return 0;
        if (!has_a) {
                /* the last b bytes */
                if (b == 0)
                        return -1;
                *first = b >= len ? 0 : len - b;
                *end = len;
                return len > 0 ? 1 : -1;
        }
        if (a >= len)
                return -1;
        *first = a;
        *end = has_b ? MIN(b + 1, len) : len;
        return 1;
}

/* Give o to the session: the head now, the body from cache_step. */
int cache_serve(Exchange *ex, CacheState *c, CacheObject *o) {
        const LocationSettings *s = ex_settings(ex);
        size_t n = parse_stored(c, o, 4); /* Age, Cache-Status, Content-Length, Content-Range */
        time_t now = time(NULL);

        if (n == SIZE_MAX)
                return -ENOMEM;
        if (o != c->obj) {
                cache_object_unref(c->obj);
                c->obj = o;
        }
        bool not_modified = client_not_modified(c, c->fields, n, o);
        int64_t age = cache_current_age(&o->times, now);
        (void) cache_format_uint(c->age_text, sizeof(c->age_text), (uint64_t) MAX(MIN(age, CC_DELTA_MAX), 0));
        c->fields[n++] = (HttpHeader){ "Age", 3, c->age_text, strlen(c->age_text) };
        if (c->st.fwd == CACHE_FWD_NONE) {
                c->st.has_ttl = true;
                c->st.ttl = o->times.lifetime - age;
        }
        if (s->cache_status_header) {
                cache_status_format(&c->st, c->status_text, sizeof(c->status_text));
                c->fields[n++] = (HttpHeader){ "Cache-Status", 12, c->status_text, strlen(c->status_text) };
        }
        bool bodiless = not_modified || c->head || o->status == 204 || o->status == 304;
        int status = not_modified ? 304 : o->status;
        uint64_t first = 0, end = c->following ? c->stream_len : o->body_len;
        int range = 0;
        if (c->range && status == 200 && !bodiless && (!c->if_range || if_range_holds(c->if_range, c->fields, n)))
                range = parse_range(c->range, o->body_len, &first, &end);
        if (range > 0) {
                status = 206;
                snprintf(c->range_text, sizeof(c->range_text), "bytes %llu-%llu/%llu", (unsigned long long) first,
                         (unsigned long long) end - 1, (unsigned long long) o->body_len);
                c->fields[n++] = (HttpHeader){ "Content-Range", 13, c->range_text, strlen(c->range_text) };
        } else if (range < 0) {
                /* 416 with the stored fields and an empty body */
                status = 416;
                first = end = 0;
                snprintf(c->range_text, sizeof(c->range_text), "bytes */%llu", (unsigned long long) o->body_len);
                c->fields[n++] = (HttpHeader){ "Content-Range", 13, c->range_text, strlen(c->range_text) };
        }
        if (c->head && !not_modified) {
                snprintf(c->length_text, sizeof(c->length_text), "%llu", (unsigned long long) o->body_len);
                c->fields[n++] = (HttpHeader){ "Content-Length", 14, c->length_text, strlen(c->length_text) };
        }
        c->resp = (HttpResponse){
                .version_minor = 1,
                .status = status,
                .headers = c->fields,
                .n_headers = n,
                .body = bodiless ? HTTP_BODY_NONE : HTTP_BODY_LENGTH,
                .content_length = bodiless ? 0 : end - first,
                .keep_alive = true,
        };
        ex->status = c->resp.status;
        ex->src = &source_cache;
        ex->resp_head_done = true;
        ex->resp_done = bodiless || end == first;
        ex->resp_truncated = false;
        c->serving = true;
        c->off = first;
        c->end = end;
        if (c->file_fd < 0 && !bodiless && end > first && !o->body) {
                /* a body not kept in memory: from its file. (A body in memory is written from
                 * there: splicing its file instead was measured slower for 1 MiB hits, as the
                 * pipe hands the socket page-sized pieces.) */
                int fd = cache_object_open(o, &c->file_off);
                if (fd >= 0)
                        c->file_fd = fd;
                else if (!o->body)
                        return fd;
        }
        return ex->s->ops->send_head(ex, &c->resp);
}


/* ---- the request ---- */

/* Drop the client's own conditionals: a request the cache will store must get a full
 * response (the client's conditionals are answered from what is stored). */
static bool conditional_field(const HttpHeader *h, void *userdata) {
        (void) userdata;
        return field_is(h, "If-None-Match") || field_is(h, "If-Modified-Since") || field_is(h, "If-Range") ||
               field_is(h, "Range");
}

/* The request goes on (upstream, or waiting): the Vary values of what comes back are looked
 * up in a copy of its fields, made before any of them is dropped. */
static int keep_request_fields(CacheState *c) {
        if (c->req_copied)
                return c->req_fields || c->n_req_fields == 0 ? 0 : -ENOMEM;
        const HttpHeader *f = c->req_fields;
        c->req_fields = NULL;
        c->req_copied = true;
        if (cache_copy_fields(f, c->n_req_fields, &c->req_copy, &c->req_fields) < 0) {
                c->req_fields = NULL;
                return -ENOMEM;
        }
        return 0;
}

static void drop_conditionals(Exchange *ex) {
        (void) keep_request_fields(ex->cache); /* a failure shows in cache_request */
        http1_request_drop_fields(&ex->req, conditional_field, NULL);
}

int cache_copy_fields(const HttpHeader *h, size_t n, Buf *copy, HttpHeader **ret) {
        HttpHeader *f = calloc(n ? n : 1, sizeof(HttpHeader));
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (buf_append(copy, h[i].name, h[i].name_len) < 0 || buf_append(copy, h[i].value, h[i].value_len) < 0) {
                        free(f);
                        return -ENOMEM;
                }
        /* pointers once the copy no longer moves */
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
                f[i] = (HttpHeader){ buf_head(copy) + off, h[i].name_len, buf_head(copy) + off + h[i].name_len,
                                     h[i].value_len };
                off += h[i].name_len + h[i].value_len;
        }
        *ret = f;
        return 0;
}


static bool is_purge(const Exchange *ex) {
        return ex->method_id == HTTP_METHOD_OTHER && streq(ex->method, "PURGE");
}

static int answer_purge(Exchange *ex, CacheState *c) {
        size_t n, kl = strlen(c->key);
        if (kl > 0 && c->key[kl - 1] == '*') {
                c->key[kl - 1] = 0;
                n = cache_purge_prefix(c->key);
        } else
                n = cache_purge(c->key);
        log_info("%s: PURGE %s: %zu object(s) removed", ex_text(ex), c->key, n);
        cache_set_word(c, "PURGE");
        return exchange_local_response(ex, n > 0 ? 200 : 404, "text/plain", n > 0 ? "purged\n" : "not in the cache\n",
                                       n > 0 ? 7 : 17, NULL, ex->req_done);
}

/* The fetch of a key and variant, as claimed in the store: "KEY\nVARIANT". */
static char *claim_id_of(const char *key, const Buf *variant) {
        size_t kl = strlen(key), vl = buf_len(variant) ? strlen(buf_head(variant)) : 0;
        char *id = malloc(kl + vl + 2);
        if (!id)
                return NULL;
        memcpy(id, key, kl);
        id[kl] = '\n';
        if (vl)
                memcpy(id + kl + 1, buf_head(variant), vl);
        id[kl + 1 + vl] = 0;
        return id;
}

/* A stale object within stale-while-revalidate was served: one refresh per object at a
 * time (the fetch claim; while another request fetches it, no refresh starts). */
static void start_refresh(Exchange *ex, CacheState *c, const Buf *variant) {
        _cleanup_free_ char *id = NULL;

        if (!c->may_store || !(id = claim_id_of(c->key, variant)))
                return;
        if (!cache_store_fill_claim(id))
                return; /* a refresh (or a fetch) of it runs already */
        int r = cache_refresh_start(ex, id);
        if (r < 0 && r != -ESHUTDOWN)
                log_warning_errno(r, "%s: cannot start the background refresh of %s", ex_text(ex), c->key);
}


/* The request of a background refresh: the stored object (stale) is revalidated, or what is
 * fetched replaces it; the fetch claim is the refresh's. */
static int refresh_request(Exchange *ex, CacheState *c) {
        Buf variant = {};
        CacheObject *o = cache_lookup(c, &variant);

        buf_free(&variant);
        c->claim_id = cache_refresh_take_claim(ex->s);
        c->claimed = c->claim_id != NULL;
        ex->reason = "background refresh";
        cache_set_word(c, "REFRESH");
        if (o) {
                c->obj = o;
                c->revalidate = true;
                c->st.fwd = CACHE_FWD_STALE;
        }
        drop_conditionals(ex);
        return 0;
}

/* The request fields the cache looks at, found in one pass (the first of each name, as
 * http1_find_header; -1: none). */
typedef struct RequestFields {
        int pragma, cache_control, authorization, inm, range, if_range, ims;
} RequestFields;

static void request_fields(const HttpRequest *req, RequestFields *rf) {
        *rf = (RequestFields){ -1, -1, -1, -1, -1, -1, -1 };
        for (size_t i = 0; i < req->n_headers; i++) {
                const HttpHeader *h = &req->headers[i];
                int *slot = NULL;
                switch (h->name_len > 0 ? h->name[0] | 0x20 : 0) {
                case 'p':
                        slot = field_is(h, "Pragma") ? &rf->pragma : NULL;
                        break;
                case 'c':
                        slot = field_is(h, "Cache-Control") ? &rf->cache_control : NULL;
                        break;
                case 'a':
                        slot = field_is(h, "Authorization") ? &rf->authorization : NULL;
                        break;
                case 'r':
                        slot = field_is(h, "Range") ? &rf->range : NULL;
                        break;
                case 'i':
                        slot = field_is(h, "If-None-Match")       ? &rf->inm
                               : field_is(h, "If-Range")          ? &rf->if_range
                               : field_is(h, "If-Modified-Since") ? &rf->ims
                                                                  : NULL;
                        break;
                default:
                        break;
                }
                if (slot && *slot < 0)
                        *slot = (int) i;
        }
}

/* An object served from its file (not in memory): that file open, or a miss without it. */
static CacheObject *file_or_miss(CacheState *c, CacheObject *o) {
        if (!o || o->body)
                return o;
        int fd = cache_object_open(o, &c->file_off);
        if (fd >= 0) {
                c->file_fd = fd;
                return o;
        }
        cache_object_unref(o);
        c->st.fwd = CACHE_FWD_MISS;
        return NULL;
}

static int request_inner(Exchange *ex, const RequestInfo *ri) {
        const LocationSettings *s = ex_settings(ex);
        const HttpRequest *req = &ex->req;
        CacheState *c;

        if (!s || !s->cache || ex->upgrade)
                return 0;
        bool safe = ex->method_id == HTTP_METHOD_GET || ex->method_id == HTTP_METHOD_HEAD;
        bool unsafe = !safe && ex->method_id != HTTP_METHOD_OPTIONS && ex->method_id != HTTP_METHOD_TRACE;
        if (!safe && !unsafe)
                return 0;
        c = ex->cache = calloc(1, sizeof(CacheState));
        if (!c)
                return -ENOMEM;
        c->file_fd = -EBADF;
        c->request_time = time(NULL);
        c->expect_len = UINT64_MAX;
        c->key = expand(s->cache_key, ri);
        if (!c->key)
                return -ENOMEM;
        if (is_purge(ex) && s->cache_purge) {
                int r = answer_purge(ex, c);
                return r < 0 ? r : 1;
        }
        if (unsafe) {
                /* RFC 9111 4.4: a non-error response invalidates the target URI (and the
                 * Location and Content-Location of the same origin) */
                c->invalidate = true;
                c->scheme = strdup(ri->scheme);
                c->host = strndup(ri->host, ri->host_len);
                return c->scheme && c->host ? 0 : -ENOMEM;
        }

        c->refresh = cache_refresh_session(ex->s);
        if (c->refresh)
                /* the cache's own request: none of the client's directives */
                cache_control_from_headers(&c->req_cc, NULL, 0);
        else
                cache_control_from_headers(&c->req_cc, req->headers, req->n_headers);
        RequestFields rf;
        request_fields(req, &rf);
        int pragma = rf.pragma, inm = rf.inm, rg = rf.range, ir = rf.if_range, ims = rf.ims;
        if (pragma >= 0 && rf.cache_control < 0 &&
            http_list_has(req->headers[pragma].value, req->headers[pragma].value_len, "no-cache"))
                c->req_cc.flags |= CC_NO_CACHE; /* RFC 9111 5.4 */
        c->authorization = rf.authorization >= 0;
        c->head = ex->method_id == HTTP_METHOD_HEAD;
        c->may_store = !template_true(s->cache_no_store, ri);
        if (inm >= 0 && !(c->if_none_match = strndup(req->headers[inm].value, req->headers[inm].value_len)))
                return -ENOMEM;
        if (rg >= 0 && !(c->range = strndup(req->headers[rg].value, req->headers[rg].value_len)))
                return -ENOMEM;
        if (ir >= 0 && !(c->if_range = strndup(req->headers[ir].value, req->headers[ir].value_len)))
                return -ENOMEM;
        if (ims >= 0)
                c->has_ims = http_date_parse(req->headers[ims].value, req->headers[ims].value_len, &c->ims) == 0;
        /* the request's own fields while this runs; copied only when the request goes on
         * (cache_request) */
        c->req_fields = req->headers;
        c->n_req_fields = req->n_headers;

        if (c->refresh)
                return refresh_request(ex, c);
        if (template_true(s->cache_bypass, ri)) {
                c->st.fwd = CACHE_FWD_BYPASS;
                cache_set_word(c, "BYPASS");
                cache_store_count(false);
                c->may_store = c->may_store && !c->head;
                if (c->may_store)
                        drop_conditionals(ex);
                return 0;
        }

        Buf variant = {};
        CacheObject *o = cache_lookup(c, &variant);
        if (!o && c->may_store && s->cache_min_uses > 1 && cache_store_use(c->key) < s->cache_min_uses)
                c->may_store = false; /* not asked for often enough yet */
        if (!o && c->may_store) {
                /* request collapsing: one fetch per key and variant at a time */
                if (!(c->claim_id = claim_id_of(c->key, &variant))) {
                        buf_free(&variant);
                        return -ENOMEM;
                }
                c->claimed = cache_store_fill_claim(c->claim_id);
                c->wait = !c->claimed;
        }
        if (o && c->authorization && !cache_shareable_with_authorization(o->times.flags, o->times.s_maxage)) {
                cache_object_unref(o);
                o = NULL;
                c->st.fwd = CACHE_FWD_MISS;
        }
        o = file_or_miss(c, o);
        if (o) {
                time_t now = time(NULL);
                CacheVerdict v = cache_verdict(&o->times, &c->req_cc, now);
                if (v == CACHE_USE || v == CACHE_USE_REFRESH) {
                        cache_store_count(true);
                        cache_set_word(c, cache_current_age(&o->times, now) < o->times.lifetime ? "HIT" : "STALE");
                        if (v == CACHE_USE_REFRESH) {
                                c->st.detail = "stale-while-revalidate";
                                c->st.fwd = CACHE_FWD_STALE;
                                start_refresh(ex, c, &variant);
                        }
                        buf_free(&variant);
                        int r = cache_serve(ex, c, o);
                        if (r >= 0)
                                /* the body at once: the session writes it with the head queued
                                 * (one writev for a small object) */
                                (void) exchange_step(ex);
                        return r < 0 ? r : 1;
                }
                c->obj = o;
                c->revalidate = true; /* with the stored validators, if any (cache_request_head) */
                c->st.fwd = (c->req_cc.flags & CC_NO_CACHE) || c->req_cc.max_age != CC_UNSET ||
                                            c->req_cc.min_fresh != CC_UNSET
                                    ? CACHE_FWD_REQUEST
                                    : CACHE_FWD_STALE;
        }
        buf_free(&variant);
        if (c->req_cc.flags & CC_ONLY_IF_CACHED) {
                /* RFC 9111 5.2.1.7 */
                cache_set_word(c, "MISS");
                int r = exchange_local_response(ex, 504, NULL, NULL, 0, NULL, ex->req_done);
                return r < 0 ? r : 1;
        }
        if (!c->wait)
                cache_store_count(false);
        cache_set_word(c, o ? "EXPIRED" : "MISS");
        if (c->may_store || c->obj)
                drop_conditionals(ex);
        if (c->head && c->may_store && !c->obj) {
                /* as nginx's proxy_cache_convert_head: fetch the GET, store it, send its head */
                c->head_as_get = true;
                ex->req.method = "GET";
                ex->req.method_len = 3;
                ex->req.method_id = ex->method_id = HTTP_METHOD_GET;
        } else if (c->head)
                c->may_store = false;
        return 0;
}

/* The stored object for the request's key and the variant its fields select (into
 * variant), with c->st.fwd saying how a miss missed. */
int cache_request(Exchange *ex, const RequestInfo *ri) {
        int r = request_inner(ex, ri);
        CacheState *c = ex->cache;

        if (!c)
                return r;
        if (r != 0 && !c->req_copied) {
                /* answered: nothing looks at the request's fields again */
                c->req_fields = NULL;
                c->n_req_fields = 0;
                return r;
        }
        return r != 0 ? r : keep_request_fields(c);
}

CacheObject *cache_lookup(CacheState *c, Buf *variant) {
        bool vary;
        CacheObject *o = cache_store_lookup_request(c->key, c->req_fields, c->n_req_fields, variant, &vary);
        c->st.fwd = o ? CACHE_FWD_NONE : vary ? CACHE_FWD_VARY_MISS : CACHE_FWD_URI_MISS;
        return o;
}

int cache_request_head(Exchange *ex, Buf *head) {
        CacheState *c = ex->cache;

        if (!c || !c->obj || !c->revalidate || buf_len(head) < 4)
                return 0;
        size_t n = parse_stored(c, c->obj, 0);
        if (n == SIZE_MAX)
                return -ENOMEM;
        const HttpHeader *etag = stored_field(c->fields, n, "ETag"), *lm = stored_field(c->fields, n, "Last-Modified");
        if (!etag && !lm) {
                c->revalidate = false;
                return 0;
        }
        head->end -= 2; /* the blank line */
        int r = 0;
        if (etag)
                r = append_field(head, &(HttpHeader){ "If-None-Match", 13, etag->value, etag->value_len });
        if (r >= 0 && lm)
                r = append_field(head, &(HttpHeader){ "If-Modified-Since", 17, lm->value, lm->value_len });
        if (r >= 0)
                r = buf_append(head, "\r\n", 2);
        return r;
}

/* ---- the upstream's response ---- */

static void times_of(CacheEntryTimes *t, const CacheResponseInfo *info, const LocationSettings *s, time_t request_time,
                     time_t response_time) {
        int64_t fallback = cache_valid_lookup(s->cache_valid, s->n_cache_valid, info->status);
        *t = (CacheEntryTimes){
                .lifetime = cache_freshness_lifetime(info, response_time, fallback, s->cache_heuristic),
                .initial_age = cache_initial_age(info, request_time, response_time),
                .response_time = response_time,
                .flags = info->cc.flags,
                .s_maxage = info->cc.s_maxage != CC_UNSET,
                .swr = info->cc.stale_while_revalidate,
                .sie = info->cc.stale_if_error,
        };
}

/* A 304 from the revalidation: the stored head updated with its fields (RFC 9111 3.2 / 4.3.4),
 * stored again with the same body. */
static CacheObject *merge_304(Exchange *ex, CacheState *c, const HttpResponse *r) {
        const CacheObject *old = c->obj;
        size_t n = parse_stored(c, old, 0);
        const HttpHeader *conn = connection_fields(r);
        Buf head = {};
        int k = 0;

        if (n == SIZE_MAX || (!old->body && !old->on_disk))
                return NULL;
        for (size_t i = 0; i < n && k >= 0; i++) {
                bool replaced = false;
                for (size_t j = 0; j < r->n_headers && !replaced; j++)
                        replaced = c->fields[i].name_len == r->headers[j].name_len &&
                                   strncasecmp(c->fields[i].name, r->headers[j].name, c->fields[i].name_len) == 0 &&
                                   field_kept(&r->headers[j], conn, r->n_headers);
                if (!replaced)
                        k = append_field(&head, &c->fields[i]);
        }
        for (size_t j = 0; j < r->n_headers && k >= 0; j++)
                if (field_kept(&r->headers[j], conn, r->n_headers))
                        k = append_field(&head, &r->headers[j]);
        CacheObject *o = k >= 0 ? cache_object_new(old->key, old->variant, old->vary, buf_head(&head) ?: "",
                                                   buf_len(&head))
                                : NULL;
        buf_free(&head);
        /* the body: copied in memory, or (only on disk) file to file into the new object's
         * file, which replaces the old one when it is inserted */
        if (!o || (old->body ? cache_object_append(o, old->body, (size_t) old->body_len)
                             : cache_object_copy_body(o, c->obj)) < 0) {
                log_debug("%s: 304 for %s not merged: the body could not be copied", ex_text(ex), c->key);
                cache_object_unref(o);
                return NULL;
        }
        o->status = old->status;
        size_t m = parse_stored(c, o, 0);
        if (m == SIZE_MAX) {
                cache_object_unref(o);
                return NULL;
        }
        CacheResponseInfo info;
        cache_response_info(&info, o->status, c->fields, m);
        times_of(&o->times, &info, ex_settings(ex), c->request_time, time(NULL));
        return o;
}

static unsigned stale_flag(int status) {
        switch (status) {
        case 500:
                return CACHE_STALE_HTTP_500;
        case 502:
                return CACHE_STALE_HTTP_502;
        case 503:
                return CACHE_STALE_HTTP_503;
        case 504:
                return CACHE_STALE_HTTP_504;
        default:
                return 0;
        }
}

typedef struct KeepFields {
        const HttpHeader *conn; /* connection_fields() */
        size_t n;
} KeepFields;

static bool keep_field(const HttpHeader *h, void *userdata) {
        const KeepFields *kf = userdata;
        return field_kept(h, kf->conn, kf->n);
}

/* Start filling an object from a response that may be stored; c->st says so. */
static int start_fill(Exchange *ex, CacheState *c, const HttpResponse *r) {
        const LocationSettings *s = ex_settings(ex);
        CacheResponseInfo info;
        Buf names = {}, variant = {};
        int k;

        cache_response_info(&info, r->status, r->headers, r->n_headers);
        int64_t fallback = cache_valid_lookup(s->cache_valid, s->n_cache_valid, r->status);
        const char *why = cache_not_storable(HTTP_METHOD_GET, &c->req_cc, c->authorization, &info, fallback >= 0,
                                             s->cache_heuristic > 0);
        if (!why && r->body == HTTP_BODY_LENGTH && r->content_length > s->cache_max_object_size)
                why = "size";
        if (!why && (k = cache_vary_names(r->headers, r->n_headers, &names)) < 0)
                why = k == -EINVAL ? "vary" : "memory";
        if (why) {
                log_debug("%s: response for %s not stored: %s", ex_text(ex), c->key, why);
                buf_free(&names);
                return 0;
        }
        const HttpHeader *conn = connection_fields(r);
        k = buf_append(&names, "", 1);
        if (k >= 0)
                k = cache_vary_values(buf_head(&names), c->req_fields, c->n_req_fields, &variant);
        if (k >= 0)
                k = buf_append(&variant, "", 1);
        if (k >= 0) {
                KeepFields kf = { conn, r->n_headers };
                c->fill = cache_object_new_fields(c->key, buf_head(&variant), buf_head(&names), r->headers,
                                                  r->n_headers, keep_field, &kf);
                k = c->fill ? 0 : -ENOMEM;
        }
        buf_free(&names);
        buf_free(&variant);
        if (k < 0)
                return k;
        c->fill->status = r->status;
        times_of(&c->fill->times, &info, s, c->request_time, time(NULL));
        if (r->body == HTTP_BODY_LENGTH && r->content_length > cache_store_spill_size()) {
                /* more than the memory tier keeps: to its file as it arrives (else, without a
                 * disk, in memory as any other) */
                k = cache_object_spill(c->fill, r->content_length);
                if (k < 0)
                        log_debug("%s: response for %s filled in memory: %s", ex_text(ex), c->key, strerror(-k));
        } else if (c->claimed && r->body == HTTP_BODY_LENGTH &&
                   cache_object_reserve(c->fill, r->content_length) >= 0)
                /* requests collapsed into this fetch follow the object as it fills */
                cache_store_fill_publish(c->claim_id, c->fill);
        c->expect_len = r->body == HTTP_BODY_LENGTH ? r->content_length : r->body == HTTP_BODY_NONE ? 0 : UINT64_MAX;
        /* without a length, the fill goes to its file once it is more than the memory tier
         * keeps; requests collapsed into it wait until it is stored */
        c->spill_at = c->expect_len == UINT64_MAX ? cache_store_spill_size() : UINT64_MAX;
        ex->cache_tee = true;
        c->st.stored = true;
        c->st.has_ttl = true;
        c->st.ttl = c->fill->times.lifetime - c->fill->times.initial_age;
        return 0;
}

static int take_over(Exchange *ex, CacheState *c, const HttpResponse *r, const char *word) {
        cache_set_word(c, word);
        c->takeover = true;
        /* A body that is not read (a 5xx answered with a stale copy) may still be on its way:
         * that connection must not go back to the pool (cache_serve() clears the mark). */
        if (r->body != HTTP_BODY_NONE && !(r->body == HTTP_BODY_LENGTH && r->content_length == 0))
                ex->resp_truncated = true;
        return 1;
}

int cache_response(Exchange *ex, const HttpResponse **rp) {
        CacheState *c = ex->cache;
        const HttpResponse *r = *rp;
        const LocationSettings *s = ex_settings(ex);

        if (!c)
                return 0;
        if (c->invalidate) {
                for (size_t i = 0; i < r->n_headers; i++) {
                        const HttpHeader *h = &r->headers[i];
                        int slot = field_is(h, "Location") ? 0 : field_is(h, "Content-Location") ? 1 : -1;
                        if (slot >= 0 && !c->invalidate_paths[slot])
                                c->invalidate_paths[slot] = strndup(h->value, h->value_len);
                }
                return 0;
        }
        c->st.fwd_status = r->status;
        if (c->obj && c->revalidate && r->status == 304) {
                CacheObject *o = merge_304(ex, c, r);
                if (o) {
                        cache_store_insert(cache_object_ref(o));
                        cache_object_unref(c->obj);
                        c->obj = o;
                }
                return take_over(ex, c, r, "REVALIDATED");
        }
        if (c->obj && stale_flag(r->status) &&
            cache_stale_on_error(&c->obj->times, &c->req_cc, time(NULL), s->cache_use_stale & stale_flag(r->status))) {
                log_info("%s: upstream answered %d; serving the stale copy of %s", ex_text(ex), r->status, c->key);
                c->st.detail = "stale-if-error";
                return take_over(ex, c, r, "STALE");
        }
        if (c->may_store) {
                int k = start_fill(ex, c, r);
                if (k < 0)
                        return k;
        }
        if (!c->fill)
                release_claim(c); /* nothing will be stored: the requests waiting need not wait */
        if (c->head_as_get) {
                /* the client asked for HEAD: the session sends the head and swallows the body
                 * (framing NONE passes the upstream's Content-Length), the tee keeps it */
                ex->method_id = HTTP_METHOD_HEAD;
                c->resp = *r;
                c->resp.body = HTTP_BODY_NONE;
                *rp = &c->resp;
                r = &c->resp;
        }
        if (!s->cache_status_header)
                return 0;
        free(c->fields);
        c->fields = calloc(r->n_headers + 1, sizeof(HttpHeader));
        if (!c->fields)
                return -ENOMEM;
        memcpy(c->fields, r->headers, r->n_headers * sizeof(HttpHeader));
        cache_status_format(&c->st, c->status_text, sizeof(c->status_text));
        c->fields[r->n_headers] = (HttpHeader){ "Cache-Status", 12, c->status_text, strlen(c->status_text) };
        c->resp = *r;
        c->resp.headers = c->fields;
        c->resp.n_headers = r->n_headers + 1;
        *rp = &c->resp;
        return 0;
}

int cache_after_upstream_step(Exchange *ex) {
        CacheState *c = ex->cache;

        if (!c || !c->takeover)
                return 0;
        c->takeover = false;
        if (ex->src)
                ex->src->finish(ex); /* the upstream connection goes back to the pool if it can */
        int r = cache_serve(ex, c, c->obj);
        if (r < 0)
                exchange_fail(ex, 500, "cannot serve from the cache");
        return 1;
}

void cache_tee(Exchange *ex, const char *p, size_t n) {
        CacheState *c = ex->cache;

        if (!c || !c->fill)
                return;
        const LocationSettings *s = ex_settings(ex);
        if (c->fill->body_len + n > c->spill_at && c->fill->body_len + n <= s->cache_max_object_size) {
                /* a response of unknown length outgrows the memory tier: to its file from now on */
                c->spill_at = UINT64_MAX;
                int k = cache_object_spill(c->fill, UINT64_MAX);
                if (k < 0)
                        log_debug("%s: response for %s filled in memory: %s", ex_text(ex), c->key, strerror(-k));
        }
        if (c->fill->body_len + n <= s->cache_max_object_size && cache_object_append(c->fill, p, n) >= 0)
                cache_object_filled(c->fill);
        else {
                log_debug("%s: response for %s not stored: larger than cache_max_object_size", ex_text(ex), c->key);
                cache_object_fill_failed(c->fill);
                cache_object_unref(c->fill);
                c->fill = NULL;
                ex->cache_tee = false;
                release_claim(c);
        }
}

bool cache_upstream_failed(Exchange *ex, int status) {
        CacheState *c = ex->cache;

        if (c && c->head_as_get)
                ex->method_id = HTTP_METHOD_HEAD; /* an error page for a HEAD has no body */
        if (!c || !c->obj || c->serving || ex->client_head_sent || ex->resp_head_done)
                return false;
        unsigned flag = status == 504 ? CACHE_STALE_TIMEOUT : CACHE_STALE_ERROR;
        if (!cache_stale_on_error(&c->obj->times, &c->req_cc, time(NULL), ex_settings(ex)->cache_use_stale & flag))
                return false;
        log_info("%s: upstream failed (%d); serving the stale copy of %s", ex_text(ex), status, c->key);
        if (ex->src)
                ex->src->finish(ex);
        c->st.detail = "stale-if-error";
        cache_set_word(c, "STALE");
        if (cache_serve(ex, c, c->obj) < 0)
                return false;
        return true;
}

/* Location / Content-Location: a path, or an absolute URL of the request's origin. */
static void invalidate_reference(CacheState *c, const Exchange *ex, const char *ref) {
        const char *path = ref;
        size_t sl = strlen(c->scheme), hl = strlen(c->host);

        if (strncasecmp(ref, c->scheme, sl) == 0 && strncmp(ref + sl, "://", 3) == 0) {
                const char *h = ref + sl + 3;
                if (strncasecmp(h, c->host, hl) != 0 || (h[hl] != '/' && h[hl] != 0))
                        return; /* another origin: not ours to invalidate */
                path = h + hl;
        }
        if (path[0] != '/')
                return;
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t) (q - path) : strlen(path);
        HttpRequest req = { .target = path, .target_len = strlen(path), .host_index = -1, .upgrade_index = -1 };
        RequestInfo ri = { .req = &req, .scheme = c->scheme, .host = c->host, .host_len = hl, .uri = path,
                           .uri_len = plen, .args = q ? q + 1 : NULL, .args_len = q ? strlen(q + 1) : 0,
                           .remote_addr = "", .server_name = "", .proxy_host = "", .request_id = "" };
        _cleanup_free_ char *key = expand(ex_settings(ex)->cache_key, &ri);
        if (key)
                (void) cache_purge(key);
}

void cache_exchange_end(Exchange *ex) {
        CacheState *c = ex->cache;

        if (!c)
                return;
        if (c->fill) {
                bool complete = ex->resp_done && !ex->resp_truncated &&
                                (c->expect_len == UINT64_MAX || c->fill->body_len == c->expect_len);
                if (complete) {
                        cache_store_insert(c->fill);
                        c->fill = NULL;
                } else {
                        log_info("%s: response for %s not stored: it did not end complete", ex_text(ex), c->key);
                        cache_object_fill_failed(c->fill);
                }
        }
        release_claim(c);
        if (c->invalidate && ex->status >= 200 && ex->status < 400) {
                (void) cache_purge(c->key);
                for (size_t i = 0; i < ELEMENTSOF(c->invalidate_paths); i++)
                        if (c->invalidate_paths[i])
                                invalidate_reference(c, ex, c->invalidate_paths[i]);
        }
}

void cache_exchange_free(Exchange *ex) {
        CacheState *c = ex->cache;

        if (!c)
                return;
        if (c->fill)
                cache_object_fill_failed(c->fill); /* ended before it was complete */
        cache_wake_unlist(c);
        release_claim(c);
        free(c->claim_id);
        if (c->file_fd >= 0)
                close(c->file_fd);
        free(c->fbuf);
        cache_object_unref(c->obj);
        cache_object_unref(c->fill);
        free(c->key);
        free(c->if_none_match);
        free(c->range);
        free(c->if_range);
        buf_free(&c->req_copy);
        free(c->req_fields);
        free(c->scheme);
        free(c->host);
        for (size_t i = 0; i < ELEMENTSOF(c->invalidate_paths); i++)
                free(c->invalidate_paths[i]);
        free(c->fields);
        free(c);
        ex->cache = NULL;
}

const char *cache_exchange_word(const Exchange *ex) {
        return ex->cache ? ex->cache->word : NULL;
}

size_t cache_purge(const char *url) {
        return cache_store_purge(url);
}

size_t cache_purge_prefix(const char *prefix) {
        return cache_store_purge_prefix(prefix);
}
