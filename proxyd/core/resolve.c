/* SPDX-License-Identifier: MIT */
#include <ares.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>

#include "resolve.h"
#include "util.h"

#define RESOLVE_MIN_USEC USEC_PER_SEC /* never query a name more often than this */
#define RESOLVE_ADDRS_MAX 64
#define RESOLVE_QUERY_TIMEOUT_MS 2000
#define RESOLVE_QUERY_TRIES 2

typedef struct ResolveEntry {
        Resolver *r;
        Upstream *up;
        const UpstreamServer *conf; /* first UpstreamServer of the entry */
        sd_event_source *timer;
        bool in_flight;
        int last_status; /* ARES_* of the previous answer, to report changes only */
} ResolveEntry;

typedef struct AresFd {
        int fd;
        sd_event_source *source;
} AresFd;

struct Resolver {
        sd_event *event;
        Config *config;
        ares_channel channel;
        bool have_channel;
        bool library_init;
        bool freeing;
        sd_event_source *ares_timer;
        AresFd *fds;
        size_t n_fds;
        ResolveEntry *entries;
        size_t n_entries;
        ResolveChanged cb;
        void *userdata;
};

static int ares_to_errno(int status) {
        switch (status) {
        case ARES_SUCCESS:
                return 0;
        case ARES_ENOMEM:
                return -ENOMEM;
        case ARES_EBADSTR:
        case ARES_EBADFAMILY:
                return -EINVAL;
        default:
                return -EIO;
        }
}

static void resolver_arm_ares_timer(Resolver *r) {
        struct timeval tv, *tvp;
        uint64_t now = 0;

        if (!r->have_channel || !r->ares_timer)
                return;
        tvp = ares_timeout(r->channel, NULL, &tv);
        if (!tvp) {
                (void) sd_event_source_set_enabled(r->ares_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_now(r->event, CLOCK_MONOTONIC, &now);
        (void) sd_event_source_set_time(r->ares_timer,
                                        now + (uint64_t) tv.tv_sec * USEC_PER_SEC + (uint64_t) tv.tv_usec);
        (void) sd_event_source_set_enabled(r->ares_timer, SD_EVENT_ONESHOT);
}

static int on_ares_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Resolver *r = userdata;

        ares_process_fd(r->channel, (revents & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
                        (revents & EPOLLOUT) ? fd : ARES_SOCKET_BAD);
        resolver_arm_ares_timer(r);
        return 0;
}

static int on_ares_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Resolver *r = userdata;

        ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        resolver_arm_ares_timer(r);
        return 0;
}

/* c-ares tells which of its sockets it wants watched, and for what. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable) {
        Resolver *r = data;
        uint32_t events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
        size_t i;

        for (i = 0; i < r->n_fds; i++)
                if (r->fds[i].fd == fd)
                        break;
        if (events == 0) {
                if (i < r->n_fds) {
                        sd_event_source_disable_unref(r->fds[i].source);
                        r->fds[i] = r->fds[--r->n_fds];
                }
                return;
        }
        if (i < r->n_fds) {
                (void) sd_event_source_set_io_events(r->fds[i].source, events);
                return;
        }
        if (r->freeing)
                return;
        AresFd *a = reallocarray(r->fds, r->n_fds + 1, sizeof(AresFd));
        if (!a)
                return; /* the query times out */
        r->fds = a;
        a[r->n_fds].fd = fd;
        if (sd_event_add_io(r->event, &a[r->n_fds].source, fd, events, on_ares_io, r) >= 0)
                r->n_fds++;
}

static void entry_schedule(ResolveEntry *e, uint64_t delay) {
        uint64_t now = 0;

        (void) sd_event_now(e->r->event, CLOCK_MONOTONIC, &now);
        (void) sd_event_source_set_time(e->timer, now + MAX(delay, RESOLVE_MIN_USEC));
        (void) sd_event_source_set_enabled(e->timer, SD_EVENT_ONESHOT);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *result) {
        ResolveEntry *e = arg;
        Resolver *r = e->r;
        struct sockaddr_storage addrs[RESOLVE_ADDRS_MAX];
        socklen_t lens[RESOLVE_ADDRS_MAX];
        uint64_t ttl = UINT64_MAX;
        size_t n = 0;
        int k;

        e->in_flight = false;
        if (r->freeing || status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
                ares_freeaddrinfo(result);
                return;
        }
        if (status == ARES_SUCCESS && result) {
                for (struct ares_addrinfo_node *ai = result->nodes; ai && n < RESOLVE_ADDRS_MAX; ai = ai->ai_next) {
                        struct sockaddr_storage ss = {};
                        socklen_t len;
                        bool dup = false;

                        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
                                len = sizeof(struct sockaddr_in);
                                memcpy(&ss, ai->ai_addr, len);
                                ((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) e->conf->port);
                        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
                                len = sizeof(struct sockaddr_in6);
                                memcpy(&ss, ai->ai_addr, len);
                                ((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) e->conf->port);
                        } else
                                continue;
                        for (size_t i = 0; i < n; i++)
                                if (lens[i] == len && memcmp(&addrs[i], &ss, len) == 0)
                                        dup = true;
                        if (dup)
                                continue;
                        addrs[n] = ss;
                        lens[n++] = len;
                        if (ai->ai_ttl > 0)
                                ttl = MIN(ttl, (uint64_t) ai->ai_ttl * USEC_PER_SEC);
                }
                if (n == 0)
                        status = ARES_ENODATA;
        }
        ares_freeaddrinfo(result);

        if (status != ARES_SUCCESS) {
                if (status != e->last_status && r->cb)
                        r->cb(e->up, e->conf, NULL, ares_strerror(status), r->userdata);
                e->last_status = status;
                entry_schedule(e, e->conf->resolve_interval);
                return;
        }
        e->last_status = status;
        k = upstream_runtime_set_entry_addresses(e->up->rt, e->conf, addrs, lens, n);
        if (k > 0 && r->cb) {
                char text[1024] = "";
                size_t off = 0;
                for (size_t i = 0; i < n && off < sizeof(text); i++) {
                        char a[128];
                        peer_format_address((const struct sockaddr *) &addrs[i], lens[i], a, sizeof(a));
                        int m = snprintf(text + off, sizeof(text) - off, "%s%s", i > 0 ? ", " : "", a);
                        if (m < 0)
                                break;
                        off += (size_t) m;
                }
                r->cb(e->up, e->conf, text, NULL, r->userdata);
        }
        entry_schedule(e, MIN(e->conf->resolve_interval, ttl));
}

static int on_entry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ResolveEntry *e = userdata;
        struct ares_addrinfo_hints hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = ARES_AI_NOSORT,
        };

        if (e->in_flight)
                return 0;
        e->in_flight = true;
        ares_getaddrinfo(e->r->channel, e->conf->host, NULL, &hints, on_addrinfo, e);
        resolver_arm_ares_timer(e->r);
        return 0;
}

static bool is_ip_literal(const char *host) {
        uint8_t buf[16];
        return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

Resolver *resolver_free(Resolver *r) {
        if (!r)
                return NULL;
        r->freeing = true;
        for (size_t i = 0; i < r->n_entries; i++)
                sd_event_source_disable_unref(r->entries[i].timer);
        if (r->have_channel)
                ares_destroy(r->channel); /* runs pending callbacks with ARES_EDESTRUCTION */
        for (size_t i = 0; i < r->n_fds; i++)
                sd_event_source_disable_unref(r->fds[i].source);
        free(r->fds);
        free(r->entries);
        sd_event_source_disable_unref(r->ares_timer);
        if (r->library_init)
                ares_library_cleanup();
        sd_event_unref(r->event);
        config_unref(r->config);
        free(r);
        return NULL;
}

static int resolver_setup_channel(Resolver *r) {
        struct ares_options o = {
                .sock_state_cb = on_sock_state,
                .sock_state_cb_data = r,
                .timeout = RESOLVE_QUERY_TIMEOUT_MS,
                .tries = RESOLVE_QUERY_TRIES,
        };
        int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
        const Config *c = r->config;
        int s;

        s = ares_library_init(ARES_LIB_INIT_ALL);
        if (s != ARES_SUCCESS)
                return ares_to_errno(s);
        r->library_init = true;
        if (c->n_resolver > 0) {
                /* Like nginx's resolver: DNS only, the names as written. */
                o.lookups = (char *) "b";
                o.domains = NULL;
                o.ndomains = 0;
                mask |= ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS;
        }
        s = ares_init_options(&r->channel, &o, mask);
        if (s != ARES_SUCCESS)
                return ares_to_errno(s);
        r->have_channel = true;
        if (c->n_resolver > 0) {
                char csv[2048] = "";
                size_t off = 0;
                for (size_t i = 0; i < c->n_resolver; i++) {
                        int m = snprintf(csv + off, sizeof(csv) - off, "%s%s", i > 0 ? "," : "", c->resolver[i]);
                        if (m < 0 || (size_t) m >= sizeof(csv) - off)
                                return -E2BIG;
                        off += (size_t) m;
                }
                s = ares_set_servers_ports_csv(r->channel, csv);
                if (s != ARES_SUCCESS)
                        return ares_to_errno(s);
        }
        s = sd_event_add_time(r->event, &r->ares_timer, CLOCK_MONOTONIC, 0, 0, on_ares_timer, r);
        if (s < 0)
                return s;
        return sd_event_source_set_enabled(r->ares_timer, SD_EVENT_OFF);
}

int resolver_new(sd_event *e, Config *c, ResolveChanged cb, void *userdata, Resolver **ret) {
        Resolver *r;
        size_t n = 0;
        int k;

        r = calloc(1, sizeof(Resolver));
        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(e);
        r->config = config_ref(c);
        r->cb = cb;
        r->userdata = userdata;

        for (size_t i = 0; i < c->n_upstreams; i++) {
                const Upstream *u = c->upstreams[i];
                for (size_t j = 0; j < u->n_servers; j++) {
                        const UpstreamServer *s = &u->servers[j];
                        if (j > 0 && u->servers[j - 1].entry == s->entry)
                                continue;
                        if (s->resolve_interval > 0 && s->host && !is_ip_literal(s->host) && u->rt)
                                n++;
                }
        }
        if (n == 0) {
                *ret = r;
                return 0;
        }
        r->entries = calloc(n, sizeof(ResolveEntry));
        if (!r->entries) {
                resolver_free(r);
                return -ENOMEM;
        }
        k = resolver_setup_channel(r);
        if (k < 0) {
                resolver_free(r);
                return k;
        }
        for (size_t i = 0; i < c->n_upstreams; i++) {
                Upstream *u = c->upstreams[i];
                for (size_t j = 0; j < u->n_servers; j++) {
                        const UpstreamServer *s = &u->servers[j];
                        if (j > 0 && u->servers[j - 1].entry == s->entry)
                                continue;
                        if (!(s->resolve_interval > 0 && s->host && !is_ip_literal(s->host) && u->rt))
                                continue;
                        ResolveEntry *en = &r->entries[r->n_entries++];
                        en->r = r;
                        en->up = u;
                        en->conf = s;
                        en->last_status = ARES_SUCCESS;
                        /* The first query runs at once. */
                        k = sd_event_add_time_relative(e, &en->timer, CLOCK_MONOTONIC, 0, 0, on_entry_timer, en);
                        if (k < 0) {
                                resolver_free(r);
                                return k;
                        }
                }
        }
        *ret = r;
        return 0;
}
