/* SPDX-License-Identifier: MIT */
#pragma once

/* The service manager protocol: sd_notify messages and the watchdog interval. */

#include <stdint.h>

#include "util.h"

void daemon_notify_ready(const char *status);
void daemon_notify_reloading(void); /* RELOADING=1 with MONOTONIC_USEC= */
void daemon_notify_stopping(const char *status);
void daemon_notify_status(const char *fmt, ...) _printf_(1, 2);
void daemon_notify_watchdog(void);
/* Watchdog interval in usec, or 0 when no watchdog is requested. */
uint64_t daemon_watchdog_usec(void);
