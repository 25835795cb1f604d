/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What cache.c (the request, the upstream's response, the tee, the end) and cache-source.c
 * (the cache source: serving stored objects, waiting for and following another request's
 * fetch) share: an exchange's cache state.
 */

#include <time.h>

#include "cache-policy.h"
#include "cache-store.h"
#include "exchange.h"

typedef struct CacheState {
        char *key;
        CacheObject *obj;  /* the stored object in question (hit, stale, revalidated) */
        CacheObject *fill; /* being filled from the upstream response */
        CacheControl req_cc;
        bool authorization, head, may_store, revalidate, takeover, serving, invalidate;
        bool head_as_get; /* a HEAD miss fetched as GET, to be stored (its body not sent) */
        bool refresh;     /* the exchange is a background refresh (cache-refresh.c) */
        /* request collapsing: the fetch of claim_id is this request's (claimed) or another's
         * (wait: woken by the worker's CacheWake whenever that fetch changes, for at most
         * CACHE_WAIT_MAX; polled every CACHE_WAIT_POLL when the worker has no eventfd);
         * following: served from that fetch's object as it fills (stream_len bytes in all) */
        char *claim_id;
        bool claimed, wait, following, woken, listed;
        unsigned woken_pass;
        uint64_t wait_start, next_poll, stream_len;
        Exchange *ex;                  /* while listed */
        struct CacheState *wprev, *wnext; /* in the worker's CacheWake list */
        time_t request_time;
        CacheStatusInfo st;
        const char *word;
        uint64_t off, end;   /* the body bytes given to the session so far, and where they stop */
        /* the body from the object's file (cache-source.c): spliced through ex->pipe, or read
         * into fbuf where the session cannot splice */
        int file_fd;
        uint64_t file_off;
        char *fbuf;
        size_t fbuf_len, fbuf_pos;
        bool no_splice;
        char *range, *if_range; /* the client's Range and If-Range */
        uint64_t expect_len; /* a Content-Length response's length, else UINT64_MAX */
        uint64_t spill_at;   /* a fill of unknown length longer than this goes to its file */
        /* the client's conditionals, answered from the cache */
        char *if_none_match;
        bool has_ims;
        time_t ims;
        /* a copy of the request's fields, to select the variant once Vary is known */
        Buf req_copy;
        HttpHeader *req_fields; /* the request's (during cache_request), then req_copy's */
        size_t n_req_fields;
        bool req_copied;
        /* for invalidating Location / Content-Location of the same origin */
        char *scheme, *host;
        char *invalidate_paths[2];
        /* the head given to the session */
        HttpHeader *fields;
        HttpResponse resp;
        char status_text[160], age_text[24], length_text[24], range_text[80];
} CacheState;
/* cache.c */
/* Give o to the session: the head now, the body from the cache source's step. */
int cache_serve(Exchange *ex, CacheState *c, CacheObject *o);
/* The stored object for the request's key and the variant its fields select (into variant),
 * with c->st.fwd saying how a miss missed. */
CacheObject *cache_lookup(CacheState *c, Buf *variant);
void cache_set_word(CacheState *c, const char *w);

/* cache-source.c */
void cache_wake_unlist(CacheState *c);
/* The fetch this request waited for is over (or took too long): the object it stored, if
 * fresh, else the upstream after all. */
void cache_wait_over(Exchange *ex, CacheState *c);
