/* An app: its generations, its upgrades (serialised, with rollback) and its
 * stop. Decides what a generation's readiness, failure or end means. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

struct daemon;
struct dispatch;
struct gen;

/* Someone waiting for an upgrade's outcome: code 0 (done) or ECANCELED (rolled
 * back) or ESHUTDOWN (batond stopping), text one line naming the app. Called
 * once; the app frees nothing of the waiter's userdata. */
typedef void (*app_done_t)(void *userdata, int code, const char *text);

struct app_waiter {
	app_done_t done;
	void *userdata;
	struct app_waiter *next;
};

struct app_counters {
	unsigned upgrades;  /* completed */
	unsigned rollbacks; /* failed new generations */
	unsigned restarts;  /* crashed workers restarted */
	char last_outcome[800];
};

struct app {
	struct daemon *d;
	const struct app_cfg *cfg;
	int *listen_fds;    /* batond's fds of this app's listeners, in LISTEN_FDS order */
	char *listen_names; /* "a:b" */
	struct gen **gens;  /* every generation not yet gone, oldest first */
	size_t n_gens;
	unsigned next_gen_id;
	struct gen *starting;		 /* the generation being brought up, or NULL */
	struct gen *serving;		 /* the ready generation, or NULL */
	struct gen *replacing;		 /* the generation an upgrade in progress drains */
	struct app_waiter *waiters;	 /* of the upgrade in progress */
	struct app_waiter *next_waiters; /* of the upgrade queued behind it */
	bool upgrade_running;
	bool upgrade_queued;
	unsigned start_failures; /* consecutive failed first starts, for backoff */
	struct sd_event_source *start_timer;
	struct dispatch *dispatch; /* accepts for dispatch apps; relays parked connections */
	struct app_counters counters;
};

int app_new(struct daemon *d, const struct app_cfg *cfg, struct app **ret);
void app_free(struct app *a);
/* Starts the first generation. */
void app_start(struct app *a);
/* Upgrade: start generation g+1, wait for ready, drain g; rollback on failure.
 * @w (may be NULL) is told the outcome. Serialised: a request during an
 * upgrade joins the next one. */
void app_upgrade(struct app *a, struct app_waiter *w);
/* Drain every generation; daemon_app_stopped() once nothing is left. */
void app_stop(struct app *a);
bool app_is_stopped(const struct app *a);
bool app_notify(struct app *a, pid_t pid, bool ready, bool stopping, const char *status);

/* Called by generation.c. */
void app_gen_ready(struct app *a, struct gen *g);
void app_gen_failed(struct app *a, struct gen *g);
void app_gen_gone(struct app *a, struct gen *g);
void app_worker_restarted(struct app *a);
