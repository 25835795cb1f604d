/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Logging: native journal entries (sd_journal_send) when stderr is connected to the
 * journal (JOURNAL_STREAM), else one line per entry on stderr. Thread-safe; every entry
 * is written with a single syscall so lines from different workers never interleave.
 */

#include <stdint.h>
#include <syslog.h>

#include "util.h"

void log_open(void);
void log_set_max_level(int level);
int log_get_max_level(void);
bool log_to_journal(void);

/* Returns -abs(error) when error != 0, so callers can `return log_error_errno(r, ...)`. */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *fmt, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...) \
        log_internal(level, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...)                                           \
        do {                                                     \
                if (log_get_max_level() >= LOG_DEBUG)            \
                        log_full_errno(LOG_DEBUG, 0, __VA_ARGS__); \
        } while (0)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)

/* An upstream server changed state (event: "down", "up", "unhealthy", "healthy", "resolved",
 * "resolve-failed"): a readable message plus PROXYD_UPSTREAM_GROUP=, PROXYD_UPSTREAM_SERVER=
 * and PROXYD_UPSTREAM_EVENT= in the journal, so `journalctl PROXYD_UPSTREAM_EVENT=down` works. */
void log_upstream_event(int level, const char *group, const char *server, const char *event, const char *fmt, ...)
        _printf_(5, 6);

/* One structured entry per request (PROXYD_* journal fields; `access: k=v ...` on stderr). */
typedef struct AccessEntry {
        const char *client;   /* "IP:PORT" */
        const char *server;   /* server name */
        const char *method;
        const char *uri;      /* request-target as received */
        int status;
        const char *upstream; /* upstream address, NULL if none */
        int upstream_status;  /* 0 if none */
        uint64_t bytes_sent;  /* to the client, head + body */
        uint64_t bytes_received; /* from the client, head + body */
        uint64_t duration_usec;
        const char *request_id;
        const char *reason;   /* why proxyd produced the status itself (error cases), or NULL */
        const char *limit;    /* the limit that rejected or delayed the request, or NULL */
        const char *peer;     /* the proxy in front when the client address came from a header, or NULL */
        const char *cache;    /* the cache's word (HIT, MISS, ...), NULL where no cache is on */
        const char *protocol; /* the client's: "HTTP/1.1", "HTTP/2.0" */
        const char *auth;     /* forward authentication's outcome (allow, deny, ...), NULL where none */
} AccessEntry;

void log_access(const AccessEntry *e);

/* The access log as a file (access_log = "/path"): opened by each configuration generation
 * (so a reload reopens it, e.g. after rotation), shared by the workers, refcounted. */
typedef struct AccessFile AccessFile;
int access_file_open(const char *path, AccessFile **ret); /* -errno */
AccessFile *access_file_ref(AccessFile *f);
AccessFile *access_file_unref(AccessFile *f); /* thread-safe; closes at 0; returns NULL */

/* A worker's block of access log lines: appended per request, written with one write() when
 * it holds ACCESS_BUF_SIZE bytes, when the target file changes, on the worker's once-a-second
 * sweep and when the worker stops. Lines from different workers never interleave (O_APPEND,
 * whole lines per write). */
#define ACCESS_BUF_SIZE (64 * 1024)
typedef struct AccessBuf {
        AccessFile *file;
        char *data;
        size_t len;
} AccessBuf;
void access_buf_add(AccessBuf *b, AccessFile *f, const AccessEntry *e);
void access_buf_flush(AccessBuf *b);
void access_buf_done(AccessBuf *b); /* flush, release the file and the buffer */

