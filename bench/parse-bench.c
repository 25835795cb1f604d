/* SPDX-License-Identifier: MIT */
/*
 * Micro-benchmark of the HTTP/1 head parser (proxyd/http/http1.c).
 *
 * Build (from the top of the source tree; no meson target, benchmarks are not tests):
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE -Iproxyd/base -Iproxyd/http -o parse-bench bench/parse-bench.c \
 *      proxyd/http/http1.c proxyd/http/http1-fields.c proxyd/http/http1-chunked.c proxyd/base/util.c
 * Run:
 *   ./parse-bench                     wall-clock ns per parse for every head
 *   ./parse-bench HEAD N              parse HEAD N times (for callgrind), HEAD one of
 *                                     curl, browser, nginx, browser-split
 * Instructions per parse: run under callgrind with two repeat counts and divide the
 * difference of the totals by the difference of the counts, e.g.
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null ./parse-bench nginx 1000
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null ./parse-bench nginx 11000
 *   -> ("Collected" of the second - of the first) / 10000
 *
 * Heads: curl (curl 7.88-like GET, 84 bytes, 3 fields), browser (Chromium-like GET
 * with cookies, 549 bytes, 14 fields), nginx (nginx 1.22 response to a 100-byte
 * static file, 252 bytes, 8 fields), browser-split (the browser head arriving in
 * 5 reads: the parser is called on 128, 256, 384, 512 and 549 bytes of the same
 * buffer; the figure is for all 5 calls).
 *
 * Instructions per parse (callgrind 3.19, gcc 12 -O2, x86-64 with SSE2), before:
 * byte-at-a-time scanner with a bounds and limit check per byte and strncasecmp()
 * per field; after: the run-skipping scanner now in proxyd/http/http1.c.
 *
 *   head              before    after   ratio
 *   curl                3694     1145    3.2x
 *   browser            20085     3081    6.5x
 *   nginx               9314     1847    5.0x
 *   browser-split      63290     9190    6.9x
 *
 * Per byte of head: curl 44 -> 13.6, browser 36.6 -> 5.6, nginx 37 -> 7.3; what is
 * left is mostly fixed cost per field and per call.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http1.h"

static const char curl_head[] =
        "GET /small HTTP/1.1\r\n"
        "Host: 127.0.0.1:18080\r\n"
        "User-Agent: curl/7.88.1\r\n"
        "Accept: */*\r\n"
        "\r\n";

static const char browser_head[] =
        "GET /static/app/main.3f9a2c.js?v=20240514 HTTP/1.1\r\n"
        "Host: www.example.com\r\n"
        "Connection: keep-alive\r\n"
        "sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
        "sec-ch-ua-mobile: ?0\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36\r\n"
        "sec-ch-ua-platform: \"Linux\"\r\n"
        "Accept: */*\r\n"
        "Sec-Fetch-Site: same-origin\r\n"
        "Sec-Fetch-Mode: no-cors\r\n"
        "Sec-Fetch-Dest: script\r\n"
        "Referer: https://www.example.com/\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        "Cookie: sid=8f2b1c9e; theme=dark\r\n"
        "\r\n";

static const char nginx_head[] =
        "HTTP/1.1 200 OK\r\n"
        "Server: nginx/1.22.1\r\n"
        "Date: Tue, 14 May 2024 10:00:00 GMT\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Length: 100\r\n"
        "Last-Modified: Tue, 14 May 2024 09:00:00 GMT\r\n"
        "Connection: keep-alive\r\n"
        "ETag: \"66433690-64\"\r\n"
        "Accept-Ranges: bytes\r\n"
        "\r\n";

static HttpHeader hdrs[100];

static ssize_t parse_req(const char *buf, size_t len) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpRequest req;
        HttpError err;

        return http1_parse_request(buf, len, &lim, &req, hdrs, 100, &err);
}

static ssize_t parse_resp(const char *buf, size_t len) {
        const HttpLimits lim = HTTP_LIMITS_DEFAULT;
        HttpResponse resp;
        HttpError err;

        return http1_parse_response(buf, len, &lim, HTTP_METHOD_GET, &resp, hdrs, 100, &err);
}

static ssize_t run_curl(const char *buf) {
        return parse_req(buf, sizeof(curl_head) - 1);
}

static ssize_t run_browser(const char *buf) {
        return parse_req(buf, sizeof(browser_head) - 1);
}

static ssize_t run_nginx(const char *buf) {
        return parse_resp(buf, sizeof(nginx_head) - 1);
}

static ssize_t run_browser_split(const char *buf) {
        ssize_t r = 0;

        for (size_t k = 128; k < sizeof(browser_head) - 1; k += 128)
                r += parse_req(buf, k);
        return r + parse_req(buf, sizeof(browser_head) - 1);
}

typedef ssize_t (*RunFn)(const char *buf);

static RunFn run_of(const char *which) {
        if (strcmp(which, "curl") == 0)
                return run_curl;
        if (strcmp(which, "browser") == 0)
                return run_browser;
        if (strcmp(which, "nginx") == 0)
                return run_nginx;
        if (strcmp(which, "browser-split") == 0)
                return run_browser_split;
        return NULL;
}

static const char *head_of(const char *which) {
        if (strcmp(which, "curl") == 0)
                return curl_head;
        if (strcmp(which, "nginx") == 0)
                return nginx_head;
        if (strcmp(which, "browser") == 0 || strcmp(which, "browser-split") == 0)
                return browser_head;
        return NULL;
}

/* The head in a heap buffer of its own size, as it would sit in a connection buffer. */
static char *copy_head(const char *head) {
        size_t n = strlen(head);
        char *b = malloc(n);
        if (!b)
                exit(EXIT_FAILURE);
        memcpy(b, head, n);
        return b;
}

int main(int argc, char **argv) {
        static const char *const all[] = { "curl", "browser", "nginx", "browser-split" };
        volatile ssize_t sink = 0;

        if (argc == 3) {
                const char *head = head_of(argv[1]);
                long n = atol(argv[2]);
                if (!head || n < 0) {
                        fprintf(stderr, "usage: %s [curl|browser|nginx|browser-split N]\n", argv[0]);
                        return EXIT_FAILURE;
                }
                RunFn run = run_of(argv[1]);
                char *b = copy_head(head);
                if (run(b) <= 0) {
                        fprintf(stderr, "%s: head does not parse\n", argv[1]);
                        return EXIT_FAILURE;
                }
                for (long i = 0; i < n; i++)
                        sink += run(b);
                free(b);
                return EXIT_SUCCESS;
        }

        for (size_t h = 0; h < sizeof(all) / sizeof(all[0]); h++) {
                const long n = 2000000;
                RunFn run = run_of(all[h]);
                char *b = copy_head(head_of(all[h]));
                struct timespec t0, t1;

                if (run(b) <= 0) {
                        fprintf(stderr, "%s: head does not parse\n", all[h]);
                        return EXIT_FAILURE;
                }
                clock_gettime(CLOCK_MONOTONIC, &t0);
                for (long i = 0; i < n; i++)
                        sink += run(b);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                double ns = ((double) (t1.tv_sec - t0.tv_sec) * 1e9 + (double) (t1.tv_nsec - t0.tv_nsec)) /
                            (double) n;
                printf("%-14s %4zu bytes  %7.1f ns/parse\n", all[h], strlen(head_of(all[h])), ns);
                free(b);
        }
        return EXIT_SUCCESS;
}
