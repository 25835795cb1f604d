/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "log.h"

static atomic_int max_level = LOG_INFO;
static bool use_journal;

static const char *level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",   [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

/* stderr is the journal's stream when JOURNAL_STREAM names its device and inode. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_open(void) {
        use_journal = stderr_is_journal();
}

bool log_to_journal(void) {
        return use_journal;
}

void log_set_max_level(int level) {
        atomic_store(&max_level, level);
}

int log_get_max_level(void) {
        return atomic_load_explicit(&max_level, memory_order_relaxed);
}

static void write_line(const char *s, size_t n) {
        /* One write per entry: lines of different threads never interleave. */
        while (n > 0) {
                ssize_t k = write(STDERR_FILENO, s, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return;
                }
                s += k;
                n -= (size_t) k;
        }
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...) {
        int saved = errno;
        char msg[2048];
        va_list ap;

        if (error < 0)
                error = -error;
        if (level > log_get_max_level())
                return -error;

        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -error;
        if ((size_t) n >= sizeof(msg))
                n = sizeof(msg) - 1;
        if (error > 0)
                snprintf(msg + n, sizeof(msg) - (size_t) n, ": %s", strerror(error));

        if (use_journal) {
                char codefile[256], codeline[32];
                snprintf(codefile, sizeof(codefile), "CODE_FILE=%s", file);
                snprintf(codeline, sizeof(codeline), "CODE_LINE=%d", line);
                if (error > 0)
                        sd_journal_send_with_location(codefile, codeline, func, "MESSAGE=%s", msg,
                                                      "PRIORITY=%i", level, "ERRNO=%i", error, NULL);
                else
                        sd_journal_send_with_location(codefile, codeline, func, "MESSAGE=%s", msg,
                                                      "PRIORITY=%i", level, NULL);
        } else {
                char out[2200];
                int k = snprintf(out, sizeof(out), "%s: %s\n", level_names[level & 7], msg);
                if (k > 0)
                        write_line(out, MIN((size_t) k, sizeof(out) - 1));
        }
        errno = saved;
        return -error;
}

void log_upstream_event(int level, const char *group, const char *server, const char *event, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        if (level > log_get_max_level())
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (use_journal) {
                sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%i", level, "PROXYD_UPSTREAM_GROUP=%s", group ?: "",
                                "PROXYD_UPSTREAM_SERVER=%s", server ?: "", "PROXYD_UPSTREAM_EVENT=%s", event, NULL);
                return;
        }
        char out[1200];
        int k = snprintf(out, sizeof(out), "%s: %s\n", level_names[level & 7], msg);
        if (k > 0)
                write_line(out, MIN((size_t) k, sizeof(out) - 1));
}

#define ACCESS_LINE_MAX 4096

/* "12.345": a duration in milliseconds with microseconds */
static void format_ms(char dur[static 32], uint64_t usec) {
        snprintf(dur, 32, "%llu.%03llu", (unsigned long long) (usec / 1000), (unsigned long long) (usec % 1000));
}

/* One access line, "\n"-terminated (cut to fit): PREFIX then k=v fields. Returns its length. */
static size_t access_format(char *out, size_t size, const char *prefix, const AccessEntry *e) {
        char dur[32];
        format_ms(dur, e->duration_usec);
        int k = snprintf(out, size,
                         "%sclient=%s server=%s method=%s uri=%s status=%d upstream=%s upstream_status=%d "
                         "bytes=%llu bytes_received=%llu duration_ms=%s request_id=%s protocol=%s%s%s%s%s%s%s%s%s%s%s\n",
                         prefix, e->client, e->server ?: "-", e->method, e->uri, e->status, e->upstream ?: "-",
                         e->upstream_status, (unsigned long long) e->bytes_sent,
                         (unsigned long long) e->bytes_received, dur, e->request_id, e->protocol ?: "-",
                         e->cache ? " cache=" : "", e->cache ?: "", e->reason ? " reason=" : "", e->reason ?: "",
                         e->limit ? " limit=" : "", e->limit ?: "", e->peer ? " peer=" : "", e->peer ?: "",
                         e->auth ? " auth=" : "", e->auth ?: "");
        if (k <= 0 || size < 2)
                return 0;
        if ((size_t) k >= size) {
                k = (int) size - 1;
                out[k - 1] = '\n';
        }
        return (size_t) k;
}

void log_access(const AccessEntry *e) {
        if (use_journal) {
                char dur[32];
                format_ms(dur, e->duration_usec);
                sd_journal_send("MESSAGE=%s %s %s %d %llu %sms%s%s", e->client, e->method, e->uri, e->status,
                                (unsigned long long) e->bytes_sent, dur, e->reason ? " " : "",
                                e->reason ?: "",
                                "PRIORITY=%i", LOG_INFO,
                                "PROXYD_ACCESS=1",
                                "PROXYD_CLIENT=%s", e->client,
                                "PROXYD_SERVER=%s", e->server ?: "",
                                "PROXYD_METHOD=%s", e->method,
                                "PROXYD_URI=%s", e->uri,
                                "PROXYD_STATUS=%d", e->status,
                                "PROXYD_UPSTREAM=%s", e->upstream ?: "",
                                "PROXYD_UPSTREAM_STATUS=%d", e->upstream_status,
                                "PROXYD_BYTES=%llu", (unsigned long long) e->bytes_sent,
                                "PROXYD_BYTES_RECEIVED=%llu", (unsigned long long) e->bytes_received,
                                "PROXYD_DURATION_USEC=%llu", (unsigned long long) e->duration_usec,
                                "PROXYD_REQUEST_ID=%s", e->request_id,
                                "PROXYD_REASON=%s", e->reason ?: "",
                                "PROXYD_LIMIT=%s", e->limit ?: "",
                                "PROXYD_PEER=%s", e->peer ?: "",
                                "PROXYD_CACHE_STATUS=%s", e->cache ?: "",
                                "PROXYD_AUTH=%s", e->auth ?: "",
                                "PROXYD_PROTOCOL=%s", e->protocol ?: "",
                                NULL);
                return;
        }

        char out[ACCESS_LINE_MAX];
        size_t k = access_format(out, sizeof(out), "access: ", e);
        if (k > 0)
                write_line(out, k);
}

/* ---- the access log as a file ---- */

struct AccessFile {
        atomic_uint refs;
        int fd;
        char *path;
        atomic_bool failing; /* a write failed: said once until writes work again */
};

int access_file_open(const char *path, AccessFile **ret) {
        AccessFile *f = calloc(1, sizeof(AccessFile));
        if (!f)
                return -ENOMEM;
        f->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (f->fd < 0) {
                int r = -errno;
                free(f);
                return r;
        }
        f->path = strdup(path);
        if (!f->path) {
                close(f->fd);
                free(f);
                return -ENOMEM;
        }
        atomic_init(&f->refs, 1);
        atomic_init(&f->failing, false);
        *ret = f;
        return 0;
}

AccessFile *access_file_ref(AccessFile *f) {
        if (f)
                atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
        return f;
}

AccessFile *access_file_unref(AccessFile *f) {
        if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
                return NULL;
        close(f->fd);
        free(f->path);
        free(f);
        return NULL;
}

void access_buf_flush(AccessBuf *b) {
        size_t off = 0;

        if (b->len == 0 || !b->file)
                return;
        while (off < b->len) {
                ssize_t n = write(b->file->fd, b->data + off, b->len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        /* disk full, file system gone read-only...: these lines are lost; say so
                         * once, not once per block */
                        if (!atomic_exchange(&b->file->failing, true))
                                log_error_errno(n < 0 ? errno : EIO, "Cannot write the access log %s, dropping entries",
                                                b->file->path);
                        break;
                }
                off += (size_t) n;
        }
        if (off == b->len && atomic_load_explicit(&b->file->failing, memory_order_relaxed) &&
            atomic_exchange(&b->file->failing, false))
                log_notice("Writing the access log %s again", b->file->path);
        b->len = 0;
}

void access_buf_add(AccessBuf *b, AccessFile *f, const AccessEntry *e) {
        if (b->file != f) {
                access_buf_flush(b);
                access_file_unref(b->file);
                b->file = access_file_ref(f);
        }
        if (!b->data) {
                b->data = malloc(ACCESS_BUF_SIZE);
                if (!b->data)
                        return;
        }
        if (ACCESS_BUF_SIZE - b->len < ACCESS_LINE_MAX)
                access_buf_flush(b);

        /* "2026-11-27T10:20:30.123Z " then the k=v fields; the seconds part is formatted once
         * a second per thread */
        static __thread time_t last_sec = -1;
        static __thread char stamp[32];
        struct timespec ts;
        char prefix[64];

        clock_gettime(CLOCK_REALTIME, &ts);
        if (ts.tv_sec != last_sec) {
                struct tm tm;
                gmtime_r(&ts.tv_sec, &tm);
                strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
                last_sec = ts.tv_sec;
        }
        snprintf(prefix, sizeof(prefix), "%s.%03ldZ ", stamp, ts.tv_nsec / 1000000);
        b->len += access_format(b->data + b->len, ACCESS_BUF_SIZE - b->len, prefix, e);
}

void access_buf_done(AccessBuf *b) {
        access_buf_flush(b);
        b->file = access_file_unref(b->file);
        free(b->data);
        b->data = NULL;
        b->len = 0;
}
