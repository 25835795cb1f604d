/* SPDX-License-Identifier: MIT */
/* A shared cache's decisions (cache-policy.h). */
#include <errno.h>
#include <stdio.h>

#include "cache-policy.h"
#include "util.h"

static bool name_is(const HttpHeader *h, const char *name) {
        return memcaseeq(h->name, h->name_len, name);
}

void cache_response_info(CacheResponseInfo *ri, int status, const HttpHeader *h, size_t n) {
        *ri = (CacheResponseInfo){ .status = status };
        cache_control_from_headers(&ri->cc, h, n);
        for (size_t i = 0; i < n; i++) {
                /* the first letter rules out most fields without a comparison */
                char c0 = h[i].name_len > 0 ? (char) (h[i].name[0] | 0x20) : 0;
                if (c0 != 'd' && c0 != 'e' && c0 != 'l' && c0 != 'a' && c0 != 'v' && c0 != 's')
                        continue;
                if (name_is(&h[i], "Date") && !ri->has_date)
                        ri->has_date = http_date_parse(h[i].value, h[i].value_len, &ri->date) == 0;
                else if (name_is(&h[i], "Expires")) {
                        /* RFC 9111 5.3: an invalid Expires (e.g. "0") means already expired; a
                         * second one makes it invalid as well */
                        ri->expires_valid = !ri->has_expires &&
                                            http_date_parse(h[i].value, h[i].value_len, &ri->expires) == 0;
                        ri->has_expires = true;
                } else if (name_is(&h[i], "Last-Modified") && !ri->has_last_modified)
                        ri->has_last_modified =
                                http_date_parse(h[i].value, h[i].value_len, &ri->last_modified) == 0;
                else if (name_is(&h[i], "ETag"))
                        ri->has_etag = true;
                else if (name_is(&h[i], "Age")) {
                        uint64_t v;
                        if (parse_uint64(h[i].value, h[i].value_len, &v) == 0)
                                ri->age = (int64_t) MIN(v, (uint64_t) CC_DELTA_MAX);
                } else if (name_is(&h[i], "Vary") && http_list_has(h[i].value, h[i].value_len, "*"))
                        ri->vary_star = true;
                else if (name_is(&h[i], "Set-Cookie"))
                        ri->set_cookie = true;
        }
}

bool cache_status_heuristic(int status) {
        switch (status) {
        case 200: case 203: case 204: case 206: case 300: case 301: case 308:
        case 404: case 405: case 410: case 414: case 501:
                return true;
        default:
                return false;
        }
}

/* Final statuses proxyd understands well enough to store (RFC 9111 3: "understood"); 206 is
 * left out: proxyd stores complete responses only. */
static bool status_storable(int status) {
        if (status == 206)
                return false;
        return cache_status_heuristic(status) || status == 302 || status == 303 || status == 307 ||
               status == 403 || status == 500 || status == 502 || status == 503 || status == 504;
}

bool cache_shareable_with_authorization(unsigned flags, bool s_maxage) {
        return (flags & (CC_MUST_REVALIDATE | CC_PUBLIC)) || s_maxage;
}

const char *cache_not_storable(HttpMethod method, const CacheControl *req_cc, bool authorization,
                               const CacheResponseInfo *r, bool fallback, bool heuristic) {
        const CacheControl *cc = &r->cc;

        if (method != HTTP_METHOD_GET)
                return "method";
        if (!status_storable(r->status))
                return "status";
        if ((req_cc->flags & CC_NO_STORE) || (cc->flags & CC_NO_STORE))
                return "no-store";
        /* a shared cache: private (qualified or not) is never stored */
        if (cc->flags & CC_PRIVATE)
                return "private";
        if (authorization && !cache_shareable_with_authorization(cc->flags, cc->s_maxage != CC_UNSET))
                return "authorization";
        if (r->vary_star)
                return "vary-star";
        /* Set-Cookie: the RFC allows storing it, but a response that sets a cookie is nearly
         * always personal; like nginx and Varnish, only when the origin says public */
        if (r->set_cookie && !(cc->flags & CC_PUBLIC) && cc->s_maxage == CC_UNSET)
                return "set-cookie";
        if ((cc->flags & CC_PUBLIC) || r->has_expires || cc->max_age != CC_UNSET || cc->s_maxage != CC_UNSET ||
            fallback)
                return NULL;
        /* no-cache responses are stored (they are revalidated on every use) */
        if (cc->flags & CC_NO_CACHE)
                return NULL;
        if (heuristic && cache_status_heuristic(r->status) && r->has_last_modified)
                return NULL;
        return "no-freshness";
}

int64_t cache_freshness_lifetime(const CacheResponseInfo *r, time_t response_time, int64_t fallback,
                                 unsigned heuristic_pct) {
        const CacheControl *cc = &r->cc;
        time_t date = r->has_date ? r->date : response_time;

        if (cc->s_maxage != CC_UNSET)
                return cc->s_maxage;
        if (cc->max_age != CC_UNSET)
                return cc->max_age;
        if (r->has_expires) {
                if (!r->expires_valid)
                        return 0;
                return r->expires > date ? (int64_t) (r->expires - date) : 0;
        }
        if (fallback >= 0)
                return fallback;
        if (heuristic_pct > 0 && cache_status_heuristic(r->status) && r->has_last_modified &&
            r->last_modified < date)
                return (int64_t) (date - r->last_modified) * (int64_t) heuristic_pct / 100;
        return 0;
}

int64_t cache_initial_age(const CacheResponseInfo *r, time_t request_time, time_t response_time) {
        int64_t apparent = r->has_date && response_time > r->date ? (int64_t) (response_time - r->date) : 0;
        int64_t delay = response_time > request_time ? (int64_t) (response_time - request_time) : 0;
        int64_t corrected = r->age + delay;
        return MAX(apparent, corrected);
}

int64_t cache_current_age(const CacheEntryTimes *t, time_t now) {
        int64_t resident = now > t->response_time ? (int64_t) (now - t->response_time) : 0;
        return t->initial_age + resident;
}

/* must-revalidate, proxy-revalidate (and s-maxage, which implies it) forbid stale use */
static bool no_stale(const CacheEntryTimes *t) {
        return (t->flags & (CC_MUST_REVALIDATE | CC_PROXY_REVALIDATE)) || t->s_maxage;
}

CacheVerdict cache_verdict(const CacheEntryTimes *t, const CacheControl *req, time_t now) {
        int64_t age = cache_current_age(t, now);
        int64_t left = t->lifetime - age; /* > 0: fresh */

        if ((t->flags & CC_NO_CACHE) || (req->flags & CC_NO_CACHE))
                return CACHE_VALIDATE;
        /* max-age=0 (a browser's reload) always revalidates: ages are whole seconds, and a
         * copy 0.9 s old would otherwise pass as "not older than 0" */
        if (req->max_age != CC_UNSET && (age > req->max_age || req->max_age == 0))
                return CACHE_VALIDATE;
        if (left > 0) {
                if (req->min_fresh != CC_UNSET && left < req->min_fresh)
                        return CACHE_VALIDATE;
                return CACHE_USE;
        }
        if (no_stale(t))
                return CACHE_VALIDATE;
        if (req->max_stale != CC_UNSET && -left <= req->max_stale)
                return CACHE_USE;
        if (t->swr >= 0 && -left <= t->swr)
                return CACHE_USE_REFRESH;
        return CACHE_VALIDATE;
}

bool cache_stale_on_error(const CacheEntryTimes *t, const CacheControl *req, time_t now, bool configured) {
        int64_t stale = cache_current_age(t, now) - t->lifetime;

        if (no_stale(t) || (t->flags & CC_NO_CACHE))
                return false;
        if (req->stale_if_error != CC_UNSET)
                return stale <= req->stale_if_error;
        if (t->sie >= 0 && stale <= t->sie)
                return true;
        return configured;
}

/* ---- Vary ---- */

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int cache_vary_names(const HttpHeader *h, size_t n, Buf *out) {
        char *names[64];
        size_t k = 0;
        int r = 0;

        for (size_t i = 0; i < n && r == 0; i++) {
                if (!name_is(&h[i], "Vary"))
                        continue;
                const char *v = h[i].value, *e = v + h[i].value_len;
                while (v < e && r == 0) {
                        while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
                                v++;
                        const char *s = v;
                        while (v < e && *v != ',' && *v != ' ' && *v != '\t')
                                v++;
                        if (v == s)
                                continue;
                        if (v - s == 1 && *s == '*') {
                                r = -EINVAL;
                                break;
                        }
                        if (k == ELEMENTSOF(names)) {
                                r = -EINVAL; /* too many to match: never stored */
                                break;
                        }
                        names[k] = strndup_lower(s, (size_t) (v - s));
                        if (!names[k])
                                r = -ENOMEM;
                        else
                                k++;
                }
        }
        if (r == 0) {
                qsort(names, k, sizeof(char *), cmp_str);
                for (size_t i = 0; i < k && r == 0; i++) {
                        if (i > 0 && streq(names[i], names[i - 1]))
                                continue;
                        if (buf_len(out) > 0)
                                r = buf_append(out, ",", 1);
                        if (r == 0)
                                r = buf_append_str(out, names[i]);
                }
        }
        for (size_t i = 0; i < k; i++)
                free(names[i]);
        return r < 0 ? r : 0;
}

/* one field value, OWS around commas dropped */
static int append_normalized(Buf *out, const char *v, size_t n) {
        int r = 0;
        bool pending_comma = false;
        size_t i = 0;

        while (i < n && r == 0) {
                while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                        i++;
                size_t s = i;
                while (i < n && v[i] != ',')
                        i++;
                size_t e = i;
                while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                        e--;
                if (e == s)
                        continue;
                if (pending_comma)
                        r = buf_append(out, ",", 1);
                if (r == 0)
                        r = buf_append(out, v + s, e - s);
                pending_comma = true;
        }
        return r;
}

int cache_vary_values(const char *names, const HttpHeader *req, size_t n, Buf *out) {
        const char *p = names;
        int r = 0;

        while (*p && r == 0) {
                const char *c = strchr(p, ',');
                size_t nl = c ? (size_t) (c - p) : strlen(p);
                r = buf_append(out, p, nl);
                if (r == 0)
                        r = buf_append(out, ":", 1);
                bool first = true;
                for (size_t i = 0; i < n && r == 0; i++) {
                        if (req[i].name_len != nl || strncasecmp(req[i].name, p, nl) != 0)
                                continue;
                        if (!first)
                                r = buf_append(out, ",", 1);
                        if (r == 0)
                                r = append_normalized(out, req[i].value, req[i].value_len);
                        first = false;
                }
                if (r == 0)
                        r = buf_append(out, "\n", 1);
                p = c ? c + 1 : p + nl;
        }
        return r;
}

/* ---- cache_valid ---- */

int64_t cache_valid_lookup(char *const *entries, size_t n, int status) {
        for (size_t i = 0; i < n; i++) {
                int codes[32];
                size_t k;
                bool any;
                uint64_t usec;
                if (cache_valid_parse(entries[i], codes, ELEMENTSOF(codes), &k, &any, &usec) < 0)
                        continue;
                bool hit = any;
                for (size_t j = 0; j < k && !hit; j++)
                        hit = codes[j] == status;
                if (hit)
                        return (int64_t) (usec / USEC_PER_SEC);
        }
        return -1;
}

/* ---- Cache-Status ---- */

/* Appending to a bounded buffer without printf (this runs for every response of a caching
 * location): what does not fit is dropped, the result always terminated. */
typedef struct Out {
        char *p;
        size_t n, size;
} Out;

static void out_str(Out *o, const char *s) {
        size_t l = strlen(s), room = o->size - 1 - o->n; /* size > 0, n < size */
        l = MIN(l, room);
        memcpy(o->p + o->n, s, l);
        o->n += l;
}

static void out_int(Out *o, int64_t v) {
        char t[24];
        size_t k = sizeof(t);
        uint64_t u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;
        t[--k] = 0;
        do
                t[--k] = (char) ('0' + u % 10);
        while ((u /= 10) > 0);
        if (v < 0)
                t[--k] = '-';
        out_str(o, t + k);
}

const char *cache_status_format(const CacheStatusInfo *i, char *buf, size_t size) {
        static const char *const fwd[] = {
                [CACHE_FWD_BYPASS] = "bypass",     [CACHE_FWD_METHOD] = "method",
                [CACHE_FWD_URI_MISS] = "uri-miss", [CACHE_FWD_VARY_MISS] = "vary-miss",
                [CACHE_FWD_MISS] = "miss",         [CACHE_FWD_REQUEST] = "request",
                [CACHE_FWD_STALE] = "stale",
        };
        Out o = { buf, 0, size };

        if (size == 0)
                return buf;
        out_str(&o, "proxyd");
        if (i->fwd == CACHE_FWD_NONE)
                out_str(&o, "; hit");
        else {
                out_str(&o, "; fwd=");
                out_str(&o, fwd[i->fwd]);
                if (i->fwd_status > 0) {
                        out_str(&o, "; fwd-status=");
                        out_int(&o, i->fwd_status);
                }
        }
        if (i->has_ttl) {
                out_str(&o, "; ttl=");
                out_int(&o, i->ttl);
        }
        if (i->stored)
                out_str(&o, "; stored");
        if (i->collapsed)
                out_str(&o, "; collapsed");
        if (i->detail) {
                out_str(&o, "; detail=");
                out_str(&o, i->detail);
        }
        buf[o.n] = 0;
        return buf;
}

size_t cache_format_uint(char *buf, size_t size, uint64_t v) {
        Out o = { buf, 0, size };
        if (size == 0)
                return 0;
        out_int(&o, v > INT64_MAX ? INT64_MAX : (int64_t) v);
        buf[o.n] = 0;
        return o.n;
}
