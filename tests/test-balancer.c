/* SPDX-License-Identifier: MIT */

#include <arpa/inet.h>
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "balancer.h"
#include "config.h"
#include "upstream.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define MAXS 8

/* A hand-built group: n servers on 10.0.0.(i+1):80. */
typedef struct Group {
        Config c;
        Upstream u;
        Upstream *ups[1];
        UpstreamServer s[MAXS];
} Group;

static void group_init(Group *g, size_t n, const unsigned *weights, UpstreamBalance b) {
        memset(g, 0, sizeof(*g));
        g->u.name = (char *) "g";
        g->u.servers = g->s;
        g->u.n_servers = n;
        g->u.balance = b;
        g->ups[0] = &g->u;
        g->c.upstreams = g->ups;
        g->c.n_upstreams = 1;
        for (size_t i = 0; i < n; i++) {
                struct sockaddr_in *in = (struct sockaddr_in *) &g->s[i].addr;
                in->sin_family = AF_INET;
                in->sin_port = htons(80);
                in->sin_addr.s_addr = htonl(0x0a000001 + (uint32_t) i);
                g->s[i].addrlen = sizeof(*in);
                g->s[i].weight = weights ? weights[i] : 1;
                g->s[i].max_fails = 1;
                g->s[i].fail_timeout = 10 * SEC;
                g->s[i].entry = (unsigned) i;
                g->s[i].port = 80;
        }
        ck_assert_int_eq(upstream_runtimes_setup(&g->c, NULL), 0);
}

static void group_done(Group *g) {
        g->u.rt_free(g->u.rt);
        g->u.rt = NULL;
}

static Peer *peer_of(Group *g, size_t i) {
        Peer *p = g->u.rt->set->peers[i];
        return p;
}

static size_t index_of(Group *g, const Peer *p) {
        for (size_t i = 0; i < g->u.rt->set->n; i++)
                if (g->u.rt->set->peers[i] == p)
                        return i;
        ck_abort_msg("peer not in set");
        return SIZE_MAX;
}

/* Pick once and release at once; returns the index, or -1. */
static int pick1(Group *g, const struct sockaddr *client, uint64_t now, uint64_t *rng) {
        Peer *p = upstream_pick(g->u.rt, client, NULL, 0, now, rng);
        if (!p)
                return -1;
        int i = (int) index_of(g, p);
        peer_release(p);
        return i;
}

START_TEST(test_smooth_wrr_sequence) {
        static const unsigned w[] = { 5, 1, 1 };
        Group g;
        char seq[22] = "";
        uint64_t rng = 1;

        group_init(&g, 3, w, BALANCE_ROUND_ROBIN);
        for (int i = 0; i < 21; i++)
                seq[i] = (char) ('a' + pick1(&g, NULL, 1, &rng));
        ck_assert_str_eq(seq, "aabacaaaabacaaaabacaa");
        group_done(&g);
}
END_TEST

typedef struct ThreadArg {
        Group *g;
        unsigned counts[MAXS];
        unsigned n;
} ThreadArg;

static void *rr_thread(void *arg) {
        ThreadArg *a = arg;
        uint64_t rng = 7;
        for (unsigned i = 0; i < a->n; i++) {
                Peer *p = upstream_pick(a->g->u.rt, NULL, NULL, 0, 1, &rng);
                a->counts[index_of(a->g, p)]++;
                peer_release(p);
        }
        return NULL;
}

START_TEST(test_rr_exact_across_threads) {
        Group g;
        ThreadArg a[2] = { { .g = &g, .n = 5000 }, { .g = &g, .n = 5000 } };
        pthread_t t[2];
        unsigned total[3] = {};

        group_init(&g, 3, NULL, BALANCE_ROUND_ROBIN);
        for (int i = 0; i < 2; i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, rr_thread, &a[i]), 0);
        for (int i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < 3; i++)
                total[i] = a[0].counts[i] + a[1].counts[i];
        ck_assert_uint_eq(total[0], 3334);
        ck_assert_uint_eq(total[1], 3333);
        ck_assert_uint_eq(total[2], 3333);
        ck_assert_uint_eq(atomic_load(&peer_of(&g, 0)->requests), 3334);
        group_done(&g);
}
END_TEST

START_TEST(test_weighted_counts) {
        static const unsigned w[] = { 3, 2, 1 };
        Group g;
        unsigned c[3] = {};
        uint64_t rng = 1;

        group_init(&g, 3, w, BALANCE_ROUND_ROBIN);
        for (int i = 0; i < 6000; i++)
                c[pick1(&g, NULL, 1, &rng)]++;
        ck_assert_uint_eq(c[0], 3000);
        ck_assert_uint_eq(c[1], 2000);
        ck_assert_uint_eq(c[2], 1000);
        group_done(&g);
}
END_TEST

START_TEST(test_skip_rules) {
        Group g;
        uint64_t rng = 1;
        Peer *tried[2];

        group_init(&g, 4, NULL, BALANCE_ROUND_ROBIN);
        g.s[3].backup = true;
        g.s[0].down = true;                            /* configured down */
        atomic_store(&peer_of(&g, 1)->healthy, false); /* failed active checks */
        /* only 2 is usable among primaries */
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(pick1(&g, NULL, 1, &rng), 2);
        /* tried: falls to the backup */
        tried[0] = peer_of(&g, 2);
        Peer *p = upstream_pick(g.u.rt, NULL, tried, 1, 1, &rng);
        ck_assert_ptr_eq(p, peer_of(&g, 3));
        /* max_conns: the backup is busy */
        g.s[3].max_conns = 1;
        tried[1] = NULL;
        ck_assert_ptr_null(upstream_pick(g.u.rt, NULL, tried, 1, 1, &rng));
        peer_release(p);
        /* passive down until fail_timeout */
        PeerChange ch = peer_report(peer_of(&g, 2), true, 100 * SEC);
        ck_assert_int_eq(ch, PEER_WENT_DOWN);
        ck_assert_int_eq(pick1(&g, NULL, 100 * SEC, &rng), 3);
        ck_assert_int_eq(pick1(&g, NULL, 110 * SEC - 1, &rng), 3);
        ck_assert_int_eq(pick1(&g, NULL, 110 * SEC, &rng), 2);
        /* all unusable: NULL */
        g.s[3].down = true;
        ck_assert_ptr_null(upstream_pick(g.u.rt, NULL, NULL, 0, 105 * SEC, &rng));
        group_done(&g);
}
END_TEST

START_TEST(test_passive_window) {
        Group g;

        group_init(&g, 2, NULL, BALANCE_ROUND_ROBIN);
        g.s[0].max_fails = 3;
        Peer *p = peer_of(&g, 0);
        ck_assert_int_eq(peer_report(p, true, 1 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, true, 2 * SEC), PEER_UNCHANGED);
        /* the window (10 s) expired: counting starts again */
        ck_assert_int_eq(peer_report(p, true, 12 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, true, 13 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, true, 14 * SEC), PEER_WENT_DOWN);
        ck_assert(!peer_is_up(p, 20 * SEC));
        ck_assert(peer_is_up(p, 24 * SEC));
        /* tried again after fail_timeout and fails again: still down, reported once */
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(peer_report(p, true, 25 * SEC), PEER_UNCHANGED);
        ck_assert(!peer_is_up(p, 26 * SEC));
        ck_assert_int_eq(peer_report(p, false, 40 * SEC), PEER_CAME_UP);
        ck_assert_int_eq(peer_report(p, false, 41 * SEC), PEER_UNCHANGED);
        /* a success resets the count */
        ck_assert_int_eq(peer_report(p, true, 50 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, true, 51 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, false, 52 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, true, 53 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(peer_report(p, true, 54 * SEC), PEER_UNCHANGED);
        ck_assert(peer_is_up(p, 54 * SEC));
        /* max_fails = 0: never marked down */
        g.s[0].max_fails = 0;
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(peer_report(p, true, 60 * SEC), PEER_UNCHANGED);
        ck_assert(peer_is_up(p, 60 * SEC));
        group_done(&g);

        /* the only server of a group is never marked down (as nginx) */
        uint64_t rng = 1;
        group_init(&g, 1, NULL, BALANCE_ROUND_ROBIN);
        p = peer_of(&g, 0);
        ck_assert(atomic_load(&p->sole));
        ck_assert_int_eq(peer_report(p, true, 1 * SEC), PEER_UNCHANGED);
        ck_assert_int_eq(pick1(&g, NULL, 2 * SEC, &rng), 0);
        group_done(&g);
}
END_TEST

START_TEST(test_least_conn) {
        static const unsigned w[] = { 1, 1, 2 };
        Group g;
        uint64_t rng = 1;
        Peer *held[8];

        group_init(&g, 3, w, BALANCE_LEAST_CONN);
        /* all idle: ties broken by weighted round-robin (2 gets half) */
        unsigned c[3] = {};
        for (int i = 0; i < 400; i++)
                c[pick1(&g, NULL, 1, &rng)]++;
        ck_assert_uint_eq(c[0], 100);
        ck_assert_uint_eq(c[1], 100);
        ck_assert_uint_eq(c[2], 200);
        /* held requests: each new pick goes where active/weight is lowest */
        for (int i = 0; i < 8; i++)
                held[i] = upstream_pick(g.u.rt, NULL, NULL, 0, 1, &rng);
        ck_assert_uint_eq(atomic_load(&peer_of(&g, 0)->active), 2);
        ck_assert_uint_eq(atomic_load(&peer_of(&g, 1)->active), 2);
        ck_assert_uint_eq(atomic_load(&peer_of(&g, 2)->active), 4);
        peer_release(held[0]);
        peer_release(held[1]);
        peer_release(held[2]);
        unsigned a0 = atomic_load(&peer_of(&g, 0)->active), a1 = atomic_load(&peer_of(&g, 1)->active),
                 a2 = atomic_load(&peer_of(&g, 2)->active);
        Peer *p = upstream_pick(g.u.rt, NULL, NULL, 0, 1, &rng);
        size_t k = index_of(&g, p);
        unsigned ak = k == 0 ? a0 : k == 1 ? a1 : a2;
        unsigned wk = w[k];
        /* no other peer has a strictly lower load */
        ck_assert(!(a0 * wk < ak * 1) && !(a1 * wk < ak * 1) && !(a2 * wk < ak * 2));
        peer_release(p);
        for (int i = 3; i < 8; i++)
                peer_release(held[i]);
        group_done(&g);
}
END_TEST

static struct sockaddr_in client_addr(uint32_t i) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        a.sin_addr.s_addr = htonl(0xc0a80000 + i);
        return a;
}

START_TEST(test_ip_hash_consistent) {
        Group g;
        uint64_t rng = 1;
        enum { N = 10000 };
        static int first[N];
        unsigned c[4] = {};

        group_init(&g, 4, NULL, BALANCE_IP_HASH);
        for (uint32_t i = 0; i < N; i++) {
                struct sockaddr_in a = client_addr(i);
                first[i] = pick1(&g, (struct sockaddr *) &a, 1, &rng);
                c[first[i]]++;
                /* sticky */
                ck_assert_int_eq(pick1(&g, (struct sockaddr *) &a, 1, &rng), first[i]);
        }
        for (int k = 0; k < 4; k++)
                ck_assert_msg(c[k] > 2200 && c[k] < 2800, "server %d got %u", k, c[k]);
        /* take server 2 out: only its clients move, and they spread over the others */
        g.s[2].down = true;
        unsigned moved_to[4] = {};
        for (uint32_t i = 0; i < N; i++) {
                struct sockaddr_in a = client_addr(i);
                int now = pick1(&g, (struct sockaddr *) &a, 1, &rng);
                if (first[i] != 2)
                        ck_assert_int_eq(now, first[i]);
                else
                        moved_to[now]++;
        }
        ck_assert_uint_eq(moved_to[2], 0);
        for (int k = 0; k < 4; k++)
                if (k != 2)
                        ck_assert_msg(moved_to[k] > c[2] / 5, "server %d got %u of the moved", k, moved_to[k]);
        /* a retry goes elsewhere */
        g.s[2].down = false;
        struct sockaddr_in a = client_addr(1);
        Peer *p = upstream_pick(g.u.rt, (struct sockaddr *) &a, NULL, 0, 1, &rng);
        Peer *tried[1] = { p };
        Peer *q = upstream_pick(g.u.rt, (struct sockaddr *) &a, tried, 1, 1, &rng);
        ck_assert_ptr_nonnull(q);
        ck_assert_ptr_ne(p, q);
        peer_release(p);
        peer_release(q);
        group_done(&g);
}
END_TEST

START_TEST(test_ip_hash_weighted) {
        static const unsigned w[] = { 1, 3 };
        Group g;
        uint64_t rng = 1;
        unsigned c[2] = {};

        group_init(&g, 2, w, BALANCE_IP_HASH);
        for (uint32_t i = 0; i < 10000; i++) {
                struct sockaddr_in a = client_addr(i);
                c[pick1(&g, (struct sockaddr *) &a, 1, &rng)]++;
        }
        ck_assert_msg(c[1] > 7100 && c[1] < 7900, "weight 3 got %u of 10000", c[1]);
        group_done(&g);
}
END_TEST

START_TEST(test_random_two) {
        static const unsigned w[] = { 1, 1, 2 };
        Group g;
        uint64_t rng = 42;
        unsigned c[3] = {};

        group_init(&g, 3, w, BALANCE_RANDOM);
        for (int i = 0; i < 10000; i++)
                c[pick1(&g, NULL, 1, &rng)]++;
        /* idle: weighted random (ties keep the first choice) */
        ck_assert_msg(c[0] > 2200 && c[0] < 2800, "%u", c[0]);
        ck_assert_msg(c[1] > 2200 && c[1] < 2800, "%u", c[1]);
        ck_assert_msg(c[2] > 4600 && c[2] < 5400, "%u", c[2]);
        /* a loaded peer loses every comparison */
        for (int i = 0; i < 50; i++)
                peer_acquire(peer_of(&g, 2));
        memset(c, 0, sizeof(c));
        for (int i = 0; i < 1000; i++)
                c[pick1(&g, NULL, 1, &rng)]++;
        ck_assert_uint_eq(c[2], 0);
        for (int i = 0; i < 50; i++)
                peer_release(peer_of(&g, 2));
        group_done(&g);
}
END_TEST

START_TEST(test_slow_start) {
        Group g;
        uint64_t rng = 1;

        group_init(&g, 2, NULL, BALANCE_ROUND_ROBIN);
        g.u.slow_start = 100 * SEC;
        Peer *p = peer_of(&g, 1);
        atomic_store(&p->recovered_at, 1000 * SEC);
        ck_assert_uint_eq(peer_effective_weight(p, 1000 * SEC, g.u.slow_start), BALANCER_WEIGHT_SCALE / 10);
        ck_assert_uint_eq(peer_effective_weight(p, 1050 * SEC, g.u.slow_start), 55);
        ck_assert_uint_eq(peer_effective_weight(p, 1100 * SEC, g.u.slow_start), BALANCER_WEIGHT_SCALE);
        ck_assert_uint_eq(peer_effective_weight(p, 1100 * SEC, 0), BALANCER_WEIGHT_SCALE);
        /* right after recovery: about 1 in 11 requests */
        unsigned c[2] = {};
        for (int i = 0; i < 1100; i++)
                c[pick1(&g, NULL, 1000 * SEC, &rng)]++;
        ck_assert_uint_eq(c[1], 100);
        group_done(&g);
}
END_TEST

START_TEST(test_entry_addresses) {
        Group g;
        uint64_t rng = 1;
        struct sockaddr_storage a[3] = {};
        socklen_t l[3];

        group_init(&g, 2, NULL, BALANCE_ROUND_ROBIN);
        Peer *old0 = peer_of(&g, 0), *old1 = peer_of(&g, 1);
        peer_report(old1, true, 5 * SEC); /* down: must survive the change */
        Peer *held = upstream_pick(g.u.rt, NULL, NULL, 0, 6 * SEC, &rng);
        ck_assert_ptr_eq(held, old0);

        /* entry 1 now resolves to its old address plus a new one */
        a[0] = g.s[1].addr;
        l[0] = g.s[1].addrlen;
        struct sockaddr_in *in = (struct sockaddr_in *) &a[1];
        in->sin_family = AF_INET;
        in->sin_port = htons(80);
        in->sin_addr.s_addr = htonl(0x0a0000aa);
        l[1] = sizeof(*in);
        ck_assert_int_eq(upstream_runtime_set_entry_addresses(g.u.rt, &g.s[1], a, l, 2), 1);
        ck_assert_int_eq(upstream_runtime_set_entry_addresses(g.u.rt, &g.s[1], a, l, 2), 0);
        ck_assert_uint_eq(g.u.rt->set->n, 3);
        ck_assert_ptr_eq(peer_of(&g, 0), old0);
        ck_assert_ptr_eq(peer_of(&g, 1), old1);
        ck_assert(!peer_is_up(peer_of(&g, 1), 6 * SEC));
        ck_assert_str_eq(peer_of(&g, 2)->text, "10.0.0.170:80");
        ck_assert_ptr_eq(peer_of(&g, 2)->conf, &g.s[1]);

        /* entry 0 disappears from DNS: the held peer stays valid until released */
        ck_assert_int_eq(upstream_runtime_set_entry_addresses(g.u.rt, &g.s[0], a, l, 0), 1);
        ck_assert_uint_eq(g.u.rt->set->n, 2);
        ck_assert_str_eq(held->text, "10.0.0.1:80");
        peer_report(held, false, 7 * SEC);
        peer_release(held);

        unsigned total, up;
        upstream_count_up(&g.c, &up, &total);
        ck_assert_uint_eq(total, 2);
        group_done(&g);
}
END_TEST

START_TEST(test_carry_over) {
        Group g1, g2;

        group_init(&g1, 2, NULL, BALANCE_ROUND_ROBIN);
        ck_assert_int_eq(peer_report(peer_of(&g1, 1), true, now_usec(CLOCK_MONOTONIC)), PEER_WENT_DOWN);
        memset(&g2, 0, sizeof(g2));
        g2 = g1;
        g2.u.servers = g2.s;
        g2.ups[0] = &g2.u;
        g2.c.upstreams = g2.ups;
        g2.u.rt = NULL;
        ck_assert_int_eq(upstream_runtimes_setup(&g2.c, &g1.c), 0);
        ck_assert(peer_is_up(peer_of(&g2, 0), now_usec(CLOCK_MONOTONIC)));
        ck_assert(!peer_is_up(peer_of(&g2, 1), now_usec(CLOCK_MONOTONIC)));
        ck_assert_ptr_ne(peer_of(&g2, 1), peer_of(&g1, 1));
        unsigned up, total;
        upstream_count_up(&g2.c, &up, &total);
        ck_assert_uint_eq(up, 1);
        ck_assert_uint_eq(total, 2);
        group_done(&g1);
        group_done(&g2);
}
END_TEST

/* Runtime control: drained and disabled peers get no pick, a weight override counts, and a
 * reload keeps the overrides of servers whose configuration did not change only. */
START_TEST(test_admin_state) {
        Group g1, g2;
        uint64_t rng = 1, now = now_usec(CLOCK_MONOTONIC);
        unsigned counts[4] = {};

        group_init(&g1, 4, NULL, BALANCE_ROUND_ROBIN);
        atomic_store(&peer_of(&g1, 0)->admin, PEER_ADMIN_DRAIN);
        atomic_store(&peer_of(&g1, 1)->admin, PEER_ADMIN_DISABLED);
        atomic_store(&peer_of(&g1, 2)->weight_override, 3);
        ck_assert_str_eq(peer_state_name(peer_state(peer_of(&g1, 0), now)), "draining");
        ck_assert_str_eq(peer_state_name(peer_state(peer_of(&g1, 1), now)), "disabled");
        ck_assert_str_eq(peer_state_name(peer_state(peer_of(&g1, 2), now)), "up");
        for (int i = 0; i < 8; i++)
                counts[pick1(&g1, NULL, now, &rng)]++;
        ck_assert_uint_eq(counts[0], 0);
        ck_assert_uint_eq(counts[1], 0);
        ck_assert_uint_eq(counts[2], 6);
        ck_assert_uint_eq(counts[3], 2);

        g2 = g1;
        g2.u.servers = g2.s;
        g2.ups[0] = &g2.u;
        g2.c.upstreams = g2.ups;
        g2.u.rt = NULL;
        g2.s[1].weight = 2; /* server 1's configuration changed: its override goes */
        ck_assert_int_eq(upstream_runtimes_setup(&g2.c, &g1.c), 0);
        ck_assert_int_eq(atomic_load(&peer_of(&g2, 0)->admin), PEER_ADMIN_DRAIN);
        ck_assert_int_eq(atomic_load(&peer_of(&g2, 1)->admin), PEER_ADMIN_NONE);
        ck_assert_uint_eq(atomic_load(&peer_of(&g2, 2)->weight_override), 3);
        ck_assert_uint_eq(atomic_load(&peer_of(&g2, 2)->requests), 6); /* counts go on */
        group_done(&g1);
        group_done(&g2);
}
END_TEST

static Config *load_text(const char *text, ConfigDiags *d) {
        /* diagnostics stay in d for the caller to check */
        char path[] = "/tmp/test-balancer-XXXXXX";
        int fd = mkstemp(path);
        Config *c = NULL;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        int r = config_load(path, &c, d);
        unlink(path);
        return r < 0 ? NULL : c;
}

START_TEST(test_config_upstream_fields) {
        ConfigDiags d = {};
        Config *c = load_text(
                "resolver = [ \"127.0.0.1:5353\", \"[::1]:53\", \"::1\" ];\n"
                "upstreams = { u = {\n"
                "  balance = \"least_conn\";\n"
                "  next_upstream = [ \"error\", \"http_503\", \"non_idempotent\" ];\n"
                "  next_upstream_tries = 3; next_upstream_timeout = \"5s\"; slow_start = \"30s\";\n"
                "  health_check = { path = \"/hz\"; interval = \"1s\"; timeout = \"500ms\"; status = [ 200, 204 ];"
                " fails = 2; passes = 3; };\n"
                "  servers = ( { address = \"127.0.0.1:81\"; max_conns = 7; },\n"
                "              { address = \"no-such-name.invalid:82\"; resolve = \"10s\"; },\n"
                "              { address = \"unix:/run/x.sock\"; backup = true; } );\n"
                "}; };\n"
                "servers = ( { name = \"s\"; listen = [ \"127.0.0.1:8080\" ]; locations = ( { prefix = \"/\"; proxy_pass = \"http://u\"; } ); } );\n",
                &d);
        ck_assert_ptr_nonnull(c);
        Upstream *u = NULL;
        for (size_t i = 0; i < c->n_upstreams; i++)
                if (!c->upstreams[i]->implicit)
                        u = c->upstreams[i];
        ck_assert_ptr_nonnull(u);
        ck_assert_uint_eq(u->next_upstream,
                          NEXT_UPSTREAM_ERROR | NEXT_UPSTREAM_HTTP_503 | NEXT_UPSTREAM_NON_IDEMPOTENT);
        ck_assert_uint_eq(u->next_upstream_tries, 3);
        ck_assert_uint_eq(u->next_upstream_timeout, 5 * SEC);
        ck_assert_uint_eq(u->slow_start, 30 * SEC);
        ck_assert_ptr_nonnull(u->health_check);
        ck_assert_str_eq(u->health_check->path, "/hz");
        ck_assert_uint_eq(u->health_check->interval, 1 * SEC);
        ck_assert_uint_eq(u->health_check->timeout, 500 * USEC_PER_MSEC);
        ck_assert_uint_eq(u->health_check->n_statuses, 2);
        ck_assert_uint_eq(u->health_check->statuses[1], 204);
        ck_assert_uint_eq(u->health_check->fails, 2);
        ck_assert_uint_eq(u->health_check->passes, 3);
        ck_assert_uint_eq(u->n_servers, 3);
        ck_assert_uint_eq(u->servers[0].max_conns, 7);
        ck_assert_str_eq(u->servers[0].host, "127.0.0.1");
        ck_assert_uint_eq(u->servers[0].port, 81);
        ck_assert_uint_eq(u->servers[1].resolve_interval, 10 * SEC);
        ck_assert_uint_eq(u->servers[1].addrlen, 0); /* not resolvable yet: a warning */
        ck_assert_uint_eq(u->servers[1].entry, 1);
        ck_assert_ptr_null(u->servers[2].host);
        ck_assert_uint_eq(u->servers[2].entry, 2);
        ck_assert_uint_ge(d.n, 1);
        ck_assert_uint_eq(d.n_errors, 0);

        ck_assert_int_eq(upstream_runtimes_setup(c, NULL), 0);
        ck_assert_uint_eq(u->rt->set->n, 2); /* the unresolved name has no peer yet */
        ck_assert_str_eq(u->rt->set->peers[1]->text, "unix:/run/x.sock");
        config_diags_clear(&d);
        config_unref(c); /* frees the runtimes */

        /* defaults */
        c = load_text("upstreams = { u = { servers = ( { address = \"127.0.0.1:81\"; } ); }; };\n"
                      "servers = ( { name = \"s\"; listen = [ \"127.0.0.1:8080\" ]; locations = ( { prefix = \"/\"; proxy_pass = \"http://u\"; } ); } );\n",
                      &d);
        ck_assert_ptr_nonnull(c);
        for (size_t i = 0; i < c->n_upstreams; i++) {
                ck_assert_uint_eq(c->upstreams[i]->next_upstream, NEXT_UPSTREAM_ERROR | NEXT_UPSTREAM_TIMEOUT);
                ck_assert_ptr_null(c->upstreams[i]->health_check);
        }
        config_diags_clear(&d);
        config_unref(c);

        /* errors */
        Config *bad = load_text("upstreams = { u = { next_upstream = [ \"off\", \"error\" ]; "
                                "servers = ( { address = \"no-such-name.invalid:82\"; } ); }; };\n",
                                &d);
        ck_assert_ptr_null(bad);
        ck_assert_uint_ge(d.n_errors, 2);
        config_diags_clear(&d);
}
END_TEST

static int pick_key(Group *g, const char *key, Peer *const *tried, size_t n_tried) {
        uint64_t rng = 1;
        Peer *p = upstream_pick_key(g->u.rt, NULL, key, strlen(key), tried, n_tried, 1, &rng);
        if (!p)
                return -1;
        int i = (int) g->s[index_of(g, p)].entry;
        peer_release(p);
        return i;
}

/* balance = "hash": removing one of 8 servers moves only the keys it had, about an eighth;
 * a server down or tried sends its keys on to the next on the ring; weights count. */
START_TEST(test_hash_consistent) {
        enum { N = 20000 };
        static int first[N];
        static const unsigned w[] = { 1, 1, 2 };
        unsigned c[MAXS] = {}, moved = 0;
        Group g;
        char key[32];

        group_init(&g, MAXS, NULL, BALANCE_HASH);
        for (int i = 0; i < N; i++) {
                snprintf(key, sizeof(key), "/obj/%d", i);
                first[i] = pick_key(&g, key, NULL, 0);
                ck_assert_int_ge(first[i], 0);
                ck_assert_int_eq(pick_key(&g, key, NULL, 0), first[i]);
                c[first[i]]++;
        }
        for (int k = 0; k < MAXS; k++)
                ck_assert_msg(c[k] > N / MAXS * 6 / 10 && c[k] < N / MAXS * 14 / 10, "server %d got %u", k, c[k]);

        /* server 4 removed from the group (a new set, as after a reload or DNS change) */
        group_done(&g);
        memmove(&g.s[4], &g.s[5], (MAXS - 5) * sizeof(UpstreamServer));
        g.u.n_servers = MAXS - 1;
        ck_assert_int_eq(upstream_runtimes_setup(&g.c, NULL), 0);
        for (int i = 0; i < N; i++) {
                snprintf(key, sizeof(key), "/obj/%d", i);
                int now = pick_key(&g, key, NULL, 0);
                if (first[i] != 4)
                        ck_assert_msg(now == first[i], "key %d moved from %d to %d", i, first[i], now);
                else {
                        ck_assert_int_ne(now, 4);
                        moved++;
                }
        }
        ck_assert_uint_eq(moved, c[4]);
        ck_assert_msg(moved > N / MAXS / 2 && moved < N / MAXS * 3 / 2, "%u of %d keys moved", moved, N);

        /* a server down: its keys go on, the others stay; tried: the next server */
        g.s[0].down = true;
        for (int i = 0; i < 2000; i++) {
                snprintf(key, sizeof(key), "/obj/%d", i);
                int now = pick_key(&g, key, NULL, 0);
                ck_assert_int_ne(now, 0);
                if (first[i] != 0 && first[i] != 4)
                        ck_assert_int_eq(now, first[i]);
        }
        g.s[0].down = false;
        uint64_t rng = 1;
        Peer *p = upstream_pick_key(g.u.rt, NULL, "k", 1, NULL, 0, 1, &rng);
        Peer *tried[1] = { p };
        ck_assert_int_ne(pick_key(&g, "k", tried, 1), (int) g.s[index_of(&g, p)].entry);
        peer_release(p);
        group_done(&g);

        /* weights: twice the points, about twice the keys */
        unsigned wc[3] = {};
        group_init(&g, 3, w, BALANCE_HASH);
        for (int i = 0; i < N; i++) {
                snprintf(key, sizeof(key), "/w/%d", i);
                wc[pick_key(&g, key, NULL, 0)]++;
        }
        ck_assert_msg(wc[2] > wc[0] * 3 / 2 && wc[2] > wc[1] * 3 / 2, "weights %u %u %u", wc[0], wc[1], wc[2]);
        group_done(&g);
}
END_TEST

static Suite *balancer_suite(void) {
        Suite *s = suite_create("balancer");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_smooth_wrr_sequence);
        tcase_add_test(tc, test_rr_exact_across_threads);
        tcase_add_test(tc, test_weighted_counts);
        tcase_add_test(tc, test_skip_rules);
        tcase_add_test(tc, test_passive_window);
        tcase_add_test(tc, test_least_conn);
        tcase_add_test(tc, test_ip_hash_consistent);
        tcase_add_test(tc, test_ip_hash_weighted);
        tcase_add_test(tc, test_hash_consistent);
        tcase_add_test(tc, test_random_two);
        tcase_add_test(tc, test_slow_start);
        tcase_add_test(tc, test_entry_addresses);
        tcase_add_test(tc, test_carry_over);
        tcase_add_test(tc, test_admin_state);
        tcase_add_test(tc, test_config_upstream_fields);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(balancer_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
