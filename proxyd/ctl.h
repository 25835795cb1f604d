/* SPDX-License-Identifier: MIT */
#pragma once

/* `proxyd ctl ARGS...` (argv[0] is "ctl"): the admin endpoint's command-line client. */
int ctl_main(int argc, char *argv[]);
