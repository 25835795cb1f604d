/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "daemon.h"

void daemon_notify_ready(const char *status) {
        if (status)
                sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        else
                sd_notify(0, "READY=1");
}

void daemon_notify_reloading(void) {
        sd_notifyf(0, "RELOADING=1\nSTATUS=Reloading configuration...\nMONOTONIC_USEC=%llu",
                   (unsigned long long) now_usec(CLOCK_MONOTONIC));
}

void daemon_notify_stopping(const char *status) {
        sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status ?: "Stopping...");
}

void daemon_notify_status(const char *fmt, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        sd_notifyf(0, "STATUS=%s", buf);
}

void daemon_notify_watchdog(void) {
        sd_notify(0, "WATCHDOG=1");
}

uint64_t daemon_watchdog_usec(void) {
        uint64_t usec = 0;
        if (sd_watchdog_enabled(0, &usec) <= 0)
                return 0;
        return usec;
}
