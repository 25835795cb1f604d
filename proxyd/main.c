/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

#include "config-merge.h"
#include "config.h"
#include "ctl.h"
#include "conn.h"
#include "log.h"
#include "manager.h"
#include "tls.h"

static const char *arg_config = NULL;
static bool arg_test = false;
static bool arg_dump = false;

static void help(void) {
        printf("Usage: proxyd [OPTIONS]\n"
               "\n"
               "A reverse proxy for systemd machines.\n"
               "\n"
               "  -c, --config=FILE   configuration file (default: $PROXYD_CONFIG or %s);\n"
               "                      drop-ins are read from FILE.d/*.conf\n"
               "  -t, --test          check the configuration and exit\n"
               "      --dump          print the merged configuration and exit\n"
               "      --version       print the version and exit\n"
               "  -h, --help          show this help\n"
               "\n"
               "\n"
               "  proxyd ctl COMMAND  control a running proxyd through its admin socket (proxyd ctl --help)\n"
               "\n"
               "Signals: SIGHUP reloads the configuration, SIGTERM stops after in-flight requests.\n",
               PROXYD_CONFIG_PATH);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_DUMP };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "test", no_argument, NULL, 't' },
                { "dump", no_argument, NULL, ARG_DUMP },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:th", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 't':
                        arg_test = true;
                        break;
                case ARG_DUMP:
                        arg_dump = true;
                        break;
                case ARG_VERSION:
                        printf("proxyd %s\n", PROXYD_VERSION);
                        return 0;
                case 'h':
                        help();
                        return 0;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "proxyd: unexpected argument \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/* -t for access_log = "/path": an existing file must open for appending, a missing one must be
 * creatable. Nothing is created: a file made by root here could not be opened by the service's
 * own user later. Returns 0, or -EINVAL with a diagnostic. */
static int check_access_log(const Config *c, ConfigDiags *diags) {
        int e = 0, fd = open(c->access_log_file, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);

        if (fd >= 0)
                close(fd);
        else if (errno != ENOENT)
                e = errno;
        else {
                _cleanup_free_ char *dir = strdup(c->access_log_file);
                if (!dir)
                        return -ENOMEM;
                char *slash = strrchr(dir, '/');
                if (slash == dir)
                        slash[1] = 0; /* "/x": the root directory */
                else
                        *slash = 0;
                if (access(dir, W_OK | X_OK) < 0)
                        e = errno;
        }
        if (e == 0)
                return 0;
        int r = config_diag_add(diags, c->access_log_src, c->access_log_line, false,
                                "cannot open the access log \"%s\": %s", c->access_log_file, strerror(e));
        return r < 0 ? r : -EINVAL;
}

static int check_config(const char *path) {
        ConfigDiags diags = {};
        Config *c = NULL;
        int r = config_load(path, &c, &diags);

        if (r >= 0)
                r = tls_check_config(c, &diags); /* certificates, keys, priority strings */
        if (r >= 0 && c->access_log_file)
                r = check_access_log(c, &diags);
        config_diags_print(&diags, stderr);
        config_diags_clear(&diags);
        if (r < 0) {
                if (r != -EINVAL)
                        fprintf(stderr, "%s: %s\n", path, strerror(-r));
                fprintf(stderr, "configuration test failed\n");
                config_unref(c);
                return EXIT_FAILURE;
        }
        if (arg_dump)
                config_dump(c, stdout);
        else
                printf("configuration OK\n");
        config_unref(c);
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        Manager *m = NULL;
        sigset_t ss;
        int r;

        if (argc > 1 && streq(argv[1], "ctl"))
                return ctl_main(argc - 1, argv + 1);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (!arg_config)
                arg_config = getenv("PROXYD_CONFIG");
        if (!arg_config || !*arg_config)
                arg_config = PROXYD_CONFIG_PATH;

        if (arg_test || arg_dump)
                return check_config(arg_config);

        log_open();
        signal(SIGPIPE, SIG_IGN);
        /* Every connection costs descriptors (a tunnel six): use all the hard limit allows.
         * The shipped unit sets LimitNOFILE= and forbids setrlimit(), which is fine. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        /* Signals are handled by the manager's event loop; every thread inherits the mask. */
        sigemptyset(&ss);
        sigaddset(&ss, SIGHUP);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        pthread_sigmask(SIG_BLOCK, &ss, NULL);

        r = manager_new(arg_config, &conn_sessions, &m);
        if (r < 0) {
                log_error("Not starting: the configuration %s could not be put in service", arg_config);
                return EXIT_FAILURE;
        }
        r = manager_run(m);
        manager_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
