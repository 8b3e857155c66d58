/* SPDX-License-Identifier: MIT */
/* The state batond's modules share: the loop, the configuration, the listeners
 * batond holds for the whole of its life, and the apps. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "app.h"
#include "config.h"

struct cgroups;
struct notify;
struct control;
struct metrics;
struct reexec;

struct listener_rt {
	const struct listener_cfg *cfg;
	int fd;	      /* batond's own reference: never closed while an app may need it */
	bool adopted; /* came from systemd (LISTEN_FDS), not bound by us */
	bool taken_back; /* from the workers of a batond killed before (recover.c) */
	bool kept;	 /* reload.c, while it builds the new table: the same socket */
	bool fresh;	 /* bound by batond, not handed to any worker yet */
};

/* What batond last told its service manager. */
struct service_state {
	bool ready_sent;
	bool reloading;
	char status[512];
};

struct daemon {
	sd_event *event;
	struct config *cfg;	    /* the configuration in force: config->cfg */
	struct config_ref *config; /* shared with the app versions made from it */
	struct listener_rt *listeners; /* parallel to cfg->listeners */
	int *listener_fds;	       /* their fds, parallel too, for the apps */
	struct app_env app_env;	       /* what every app borrows */
	struct app **apps;	       /* the apps of cfg */
	struct app **retired;	       /* apps a reload removed, draining */
	size_t n_retired;
	struct reload_req *reloads;    /* queued behind an upgrade */
	size_t n_apps;
	struct notify *notify;
	struct control *control;
	struct cgroups *cgroups; /* NULL: workers tracked by process group */
	struct recover *recover; /* the state file; orphans of a batond killed before */
	struct metrics *metrics; /* GET /metrics, if the configuration asks */
	struct reexec *reexec;	 /* a re-exec in progress (reexec.c) */
	bool stopping;
	sd_event_source *settle; /* enabled when an app has something to settle */
	uint64_t started_usec;
	struct service_state service;
};

/* Drains every app, then leaves the loop. Idempotent. */
void daemon_stop(struct daemon *d);
/* Something changed: the apps settle on the loop's next turn. */
void daemon_mark(struct daemon *d);
/* Sets the blocking mode @mode needs on listener @l. */
void daemon_set_blocking_mode(struct listener_rt *l, enum serve_mode mode);
/* What every app borrows from batond (d->app_env), set once. */
void daemon_init_app_env(struct daemon *d);
/* A worker's notify datagram (notify_handler_t). */
struct notify_state;
bool daemon_on_notify(void *userdata, pid_t pid, const struct notify_state *st);
/* Monotonic now, in µs, from the loop's cached time. */
uint64_t daemon_now_usec(const struct daemon *d);
