/* SPDX-License-Identifier: MIT */
/* batond's configuration reload: re-reads and validates the whole file, then
 * applies the difference to listeners and apps. A file with an error changes
 * nothing. Serialised with upgrades: a reload asked for while one runs waits
 * for it. Owns the reloads queued. */
#pragma once

#include <stdbool.h>

#include "app.h"

struct daemon;

/* Makes a waiter for one app's outcome of a reload (NULL: nobody waits). */
typedef struct app_waiter *(*reload_waiter_t)(void *userdata);
/* Told once the reload is under way: @code 0 with @n_pending app outcomes to
 * come through the waiters made, or a negative errno with @text (the file's
 * errors, one FILE:LINE line each) and none to come. */
typedef void (*reload_started_t)(void *userdata, int code, unsigned n_pending, const char *text);

/* Reloads d->cfg->path. @upgrade: every app also gets a new generation, as
 * `batonctl upgrade` (a new binary on disk, with or without a new
 * configuration); else only apps whose configuration changed. */
void reload_request(struct daemon *d, bool upgrade, reload_waiter_t waiter,
		    reload_started_t started, void *userdata);
/* Runs what is queued once no upgrade is running; frees apps a reload removed
 * once they have stopped. Called when batond settles. */
void reload_settle(struct daemon *d);
/* Batond stops: queued reloads are told, removed apps freed. */
void reload_stop(struct daemon *d);
