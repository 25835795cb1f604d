/* SPDX-License-Identifier: MIT */
/*
 * config_load. The input is a configuration file; lines "#--dropin--" split it into the
 * main file and drop-ins (<main>.d/10.conf, 20.conf, ...), so the merge is fuzzed too.
 * The files are written to a private temporary directory under $TMPDIR (removed at exit;
 * libFuzzer may skip that when it stops on a finding) that also holds empty certificate
 * files for "%d/..." paths.
 *
 * Invariants: success exactly when no error diagnostic was produced; a loaded Config has
 * refcount 1, lists the main file first and can be dumped; every diagnostic has a message;
 * everything is freed (leaks are reported by LeakSanitizer).
 *
 * Host names are resolved with numeric lookups only (getaddrinfo is wrapped below), so
 * fuzzing never waits for DNS.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

#define MAX_DROPINS 4
#define SPLIT "#--dropin--\n"

static char dir[128];
static char main_path[160], dropin_dir[192];
static FILE *devnull;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
        static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
        struct addrinfo h = {};

        if (!real)
                real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **)) dlsym(
                        RTLD_NEXT, "getaddrinfo");
        if (!real)
                return EAI_FAIL;
        if (hints)
                h = *hints;
        h.ai_flags |= AI_NUMERICHOST;
        if (node && strcmp(node, "localhost") == 0)
                node = "127.0.0.1";
        return real(node, service, &h, res);
}

static void cleanup(void) {
        char p[320];

        for (int i = 0; i < MAX_DROPINS; i++) {
                snprintf(p, sizeof(p), "%s/%d0.conf", dropin_dir, i + 1);
                unlink(p);
        }
        rmdir(dropin_dir);
        unlink(main_path);
        for (const char *const *f = (const char *const[]) { "ca.pem", "example.pem", "example.key", NULL }; *f; f++) {
                snprintf(p, sizeof(p), "%s/%s", dir, *f);
                unlink(p);
        }
        rmdir(dir);
        if (devnull)
                fclose(devnull);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        char p[320];

        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp || strlen(tmp) > sizeof(dir) - 24)
                tmp = "/tmp";
        snprintf(dir, sizeof(dir), "%s/fuzz-config-XXXXXX", tmp);
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                abort();
        }
        snprintf(main_path, sizeof(main_path), "%s/proxyd.conf", dir);
        snprintf(dropin_dir, sizeof(dropin_dir), "%s.d", main_path);
        for (const char *const *f = (const char *const[]) { "ca.pem", "example.pem", "example.key", NULL }; *f; f++) {
                snprintf(p, sizeof(p), "%s/%s", dir, *f);
                int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd >= 0)
                        close(fd);
        }
        devnull = fopen("/dev/null", "we");
        atexit(cleanup);
        return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        FUZZ_CHECK(fd >= 0, "cannot create %s", path);
        while (len > 0) {
                ssize_t w = write(fd, data, len);
                FUZZ_CHECK(w > 0, "cannot write %s", path);
                data += w;
                len -= (size_t) w;
        }
        close(fd);
}

/* The next SPLIT line at or after p (at the start of a line). */
static const uint8_t *find_split(const uint8_t *start, const uint8_t *p, const uint8_t *end) {
        size_t sl = strlen(SPLIT);
        for (; (size_t) (end - p) >= sl; p++)
                if (memcmp(p, SPLIT, sl) == 0 && (p == start || p[-1] == '\n'))
                        return p;
        return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *end = data + size, *p = data, *s;
        char path[320];
        int n_dropins = 0;
        Config *c = NULL;
        ConfigDiags diags = {};

        if (!dir[0])
                LLVMFuzzerInitialize(NULL, NULL);

        /* main file, then drop-ins */
        s = find_split(data, p, end);
        write_file(main_path, p, (size_t) ((s ?: end) - p));
        for (int i = 0; i < MAX_DROPINS; i++) {
                snprintf(path, sizeof(path), "%s/%d0.conf", dropin_dir, i + 1);
                unlink(path);
        }
        rmdir(dropin_dir);
        while (s && n_dropins < MAX_DROPINS) {
                p = s + strlen(SPLIT);
                s = find_split(data, p, end);
                if (n_dropins == 0 && mkdir(dropin_dir, 0700) < 0 && errno != EEXIST)
                        break;
                snprintf(path, sizeof(path), "%s/%d0.conf", dropin_dir, ++n_dropins);
                write_file(path, p, (size_t) ((s ?: end) - p));
        }

        int r = config_load(main_path, &c, &diags);
        if (r == 0) {
                FUZZ_CHECK(c != NULL, "success without a Config");
                FUZZ_CHECK(diags.n_errors == 0, "success with %zu errors", diags.n_errors);
                FUZZ_CHECK(atomic_load(&c->refcount) == 1, "refcount %u", atomic_load(&c->refcount));
                FUZZ_CHECK(c->n_files >= 1 && strcmp(c->files[0], main_path) == 0, "main file not listed first");
                FUZZ_CHECK(c->n_files >= (size_t) n_dropins + 1, "%zu files for %d drop-ins", c->n_files, n_dropins);
                if (devnull)
                        FUZZ_CHECK(config_dump(c, devnull) >= 0, "dump failed");
                FUZZ_CHECK(config_ref(c) == c, "config_ref");
                FUZZ_CHECK(config_unref(c) == NULL, "config_unref");
                FUZZ_CHECK(config_unref(c) == NULL, "config_unref");
        } else {
                FUZZ_CHECK(c == NULL, "failure with a Config");
                FUZZ_CHECK(r != -EINVAL || diags.n_errors > 0, "-EINVAL without an error diagnostic");
                FUZZ_CHECK(r == -EINVAL || r == -ENOMEM, "config_load returned %d", r);
        }
        FUZZ_CHECK(diags.n_errors <= diags.n, "%zu errors of %zu diagnostics", diags.n_errors, diags.n);
        for (size_t i = 0; i < diags.n; i++)
                FUZZ_CHECK(diags.items[i].message != NULL, "diagnostic %zu without message", i);
        if (devnull)
                config_diags_print(&diags, devnull);
        config_diags_clear(&diags);
        return 0;
}
