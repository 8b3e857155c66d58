/* SPDX-License-Identifier: MIT */
/* Recovery after batond was killed without a service manager (under systemd
 * the fd store does this): its workers serve on, orphaned, holding the
 * listeners (fd 3.. by the spawn contract). batond records its workers in a
 * state file beside its control socket; a batond started later takes the
 * listeners back from those orphans (pidfd_getfd), so no socket is ever
 * rebound and no client refused, and drains them once its own generations
 * serve. Owns the state file and the orphans' pidfds. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

struct config;
struct daemon;
struct listener_rt;
struct recover;

/* Reads the state file of @cfg's control socket, if any. Every recorded
 * process that is still the worker it was (same start time, its own
 * LISTEN_PID and BATON_APP) is kept to be drained, and for every listener of
 * its app still closed in @listeners (parallel to cfg->listeners) batond takes
 * the worker's copy if it is the configured socket. Never fails: what cannot
 * be recovered is logged and left to the normal bind. */
struct recover *recover_orphans(sd_event *event, const struct config *cfg,
				struct listener_rt *listeners);
/* The state file of @cfg's control socket, without reading it: a new image
 * after a re-exec, whose workers are its own children. NULL when out of memory. */
struct recover *recover_resume(sd_event *event, const struct config *cfg);
/* Orphans of a batond killed before are still running (a re-exec waits). */
bool recover_busy(const struct recover *rc);
/* Once every app serves: the stop signal to each orphan (as its app's
 * kill-mode says), SIGKILL to its process group after the app's
 * drain-timeout. Idempotent. */
void recover_drain(struct recover *rc);
/* Writes the state file if batond's workers changed since the last call. */
void recover_record(struct recover *rc, const struct daemon *d);
/* The control socket moved (reload): the state file goes beside it. */
void recover_move(struct recover *rc, const struct config *cfg);
/* Removes the state file (a clean stop leaves no worker behind). */
void recover_forget(struct recover *rc);
void recover_free(struct recover *rc);
