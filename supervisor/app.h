/* SPDX-License-Identifier: MIT */
/* An app: its generations, its upgrades (with rollback) and its stop. Decides
 * what a generation's readiness, failure or end means, once per loop turn in
 * app_settle.
 *
 * An upgrade: start generation g+1 as `starting`; when it is ready it becomes
 * `serving`, the upgrade is done, and the one before drains in the background
 * (after `overlap` seconds in which it serves on). If g+1 fails, it is drained
 * and g keeps serving (rollback). A request while a generation starts joins
 * the next upgrade, which begins once that generation is ready or failed; any
 * number of generations may be draining, each with its own drain-timeout, at
 * most max-draining of them: beyond, the oldest is finished early. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "generation.h"

struct dispatch;

/* Someone waiting for an upgrade's outcome: code 0 (done) or ECANCELED (rolled
 * back) or ESHUTDOWN (batond stopping), text one line naming the app. Called
 * once; the app frees nothing of the waiter's userdata. */
typedef void (*app_done_t)(void *userdata, int code, const char *text);

struct app_waiter {
	app_done_t done;
	void *userdata;
	/* Done only once every generation older than the new one is gone, not
	 * when the new one is ready (batonctl upgrade --wait-drain). */
	bool wait_drain;
	unsigned until_gen;	/* wait_drain: the generation that became ready */
	uint64_t ready_usec;	/* and when */
	uint64_t ready_in_usec; /* how long it took */
	struct app_waiter *next;
};

struct app_ops {
	/* Something changed that app_settle must look at. Only marks: the owner
	 * calls app_settle from its loop (a deferred event source), not from here. */
	void (*changed)(void *userdata);
};

/* A loaded configuration, shared by batond and by every app version made from
 * it: freed once nothing runs from it any more. */
struct config_ref {
	struct config *cfg;
	unsigned refs;
};

/* Takes @cfg (freed on failure too); refs 1. NULL when out of memory. */
struct config_ref *config_ref_new(struct config *cfg);
void config_ref_put(struct config_ref *r);

struct app_version;

/* What apps take from batond: borrowed, outlives them. */
struct app_env {
	sd_event *event;
	/* NOTIFY_SOCKET for the workers of @cfg (a socket their user may reach). */
	const char *(*notify_socket)(void *userdata, const struct app_cfg *cfg);
	int (*spawn)(const struct spawn_req *req, pid_t *ret_pid, int *ret_channel,
		     int *ret_exec_fd);
	const struct app_ops *ops;
	void *userdata;
	struct cgroups *cgroups; /* NULL: none (cgroup.h) */
};

/* The drain durations of an app's generations that served, from the start of
 * their drain to the end of their last process, counted per upper bound
 * (seconds, inclusive; not cumulative): baton_app_drain_duration_seconds. */
#define APP_DRAIN_BUCKETS 10
extern const double app_drain_bucket_seconds[APP_DRAIN_BUCKETS];

struct app_counters {
	unsigned upgrades;	 /* completed */
	unsigned rollbacks;	 /* failed new generations */
	unsigned restarts;	 /* crashed workers restarted */
	unsigned parks_refused;	 /* parked connections batond closed instead */
	unsigned finished_early; /* draining generations finished early (max-draining) */
	unsigned health_failures; /* failed rounds of health checks */
	/* Drains that took at most app_drain_bucket_seconds[i] (and more than the
	 * bucket before); longer ones count only in drains. */
	unsigned long long drain_buckets[APP_DRAIN_BUCKETS];
	unsigned long long drains;
	uint64_t drain_usec_sum;
	char last_outcome[800];
};

struct app {
	const struct app_env *env;
	const struct app_cfg *cfg;	  /* of the version it runs */
	struct app_version *version;	  /* what its generations start from */
	struct app_version *next_version; /* a reload's, for the next upgrade; or NULL */
	bool config_stale; /* the file's configuration failed to start: runs the one before */
	unsigned scale;	   /* batonctl scale's worker count until the next reload; 0: the file's */
	struct gen **gens; /* every generation not yet freed, oldest first */
	size_t n_gens;
	unsigned next_gen_id;
	/* Every generation in a->gens is one of: a->starting; a->serving (the
	 * newest ready one); ready but no longer serving new work, its drain
	 * planned (drain_at_usec: overlap); draining; or gone (freed in
	 * app_settle). There is no `replacing` generation any more: an upgrade
	 * settles when its generation is ready, whatever still drains. */
	struct gen *starting; /* the generation being brought up, or NULL */
	struct gen *serving;  /* the newest ready generation, or NULL */
	/* A ready generation newer than a->serving that runs `canary` workers
	 * and takes their share of new connections beside it, until batonctl
	 * promote (it serves, with every worker) or rollback (it drains). An
	 * upgrade is refused meanwhile. */
	struct gen *canary;
	unsigned canary_of;		  /* the worker count it is a share of */
	bool starting_canary;		  /* a->starting is to be a canary */
	sd_event_source *canary_timer;	  /* canary-time: promotes it */
	/* The configuration and program (O_PATH, -1 if none) of the generation
	 * replaced last, for batonctl rollback and probation; NULL when nothing
	 * is pinned (before the first upgrade, after a rollback). */
	struct app_version *pinned;
	int pinned_program_fd;
	unsigned pinned_gen;
	unsigned probation_gen;	       /* serving on probation (0: none) */
	uint64_t probation_until_usec; /* CLOCK_MONOTONIC */
	unsigned probation_restarts;   /* its workers' restarts since it took over */
	bool revert_requested;	       /* the next upgrade starts from the pinned one */
	unsigned revert_gen;	       /* the generation such an upgrade started */
	char revert_reason[400];
	struct app_waiter *waiters;	  /* of the upgrade in progress */
	struct app_waiter *next_waiters;  /* of the upgrade queued behind it */
	struct app_waiter *drain_waiters; /* --wait-drain: upgrades done, older ones draining */
	bool upgrade_running;		  /* its generation (a->starting) is not ready yet */
	bool upgrade_queued;
	bool stopping;
	bool dirty;		 /* app_settle has something to look at */
	unsigned start_failures; /* consecutive failed first starts, for backoff */
	sd_event_source *start_timer;
	struct dispatch *dispatch; /* accepts for dispatch apps; relays parked connections */
	/* The health check (health-exec, health-url) of the generation being
	 * tried: a->starting once ready (it takes over once a round passes),
	 * then as the canary or on probation; NULL otherwise. */
	struct health *health;
	struct app_counters counters;
};

/* App @cfg of configuration @root (a reference is taken); @listener_fds are
 * batond's, parallel to root->cfg->listeners (the app keeps duplicates). */
int app_new(const struct app_env *env, struct config_ref *root, const struct app_cfg *cfg,
	    const int *listener_fds, struct app **ret);
void app_free(struct app *a);
/* Starts the first generation. */
void app_start(struct app *a);
/* Upgrade: start generation g+1, wait for ready, drain g; rollback on failure.
 * @w (may be NULL) is told the outcome. */
void app_upgrade(struct app *a, struct app_waiter *w);
/* A reload: @cfg (of @root, @listener_fds as for app_new) is the app's
 * configuration from now on. If what a process is started with did not change,
 * it applies at once, to the running generations too (timeouts, policy, hold
 * limits...). Else it takes an upgrade: the new generation runs it once ready,
 * and if that generation fails the app keeps the configuration it had
 * (config_stale). @upgrade: a new generation all the same (a new binary on
 * disk). @w (may be NULL) is told the outcome. */
void app_reconfigure(struct app *a, struct config_ref *root, const struct app_cfg *cfg,
		     const int *listener_fds, bool upgrade, struct app_waiter *w);
/* batonctl scale: the serving generation runs @n workers from now on (new
 * ones started, the highest drained), and so do the upgrades after it, until a
 * reload sets the count of the file again. Returns 0 or a negative errno. */
int app_scale(struct app *a, unsigned n);
/* batonctl promote: the canary serves, with every worker, and the generation
 * it ran beside drains. batonctl rollback: the canary drains, the serving
 * generation takes every new connection again. Each returns 0 with the outcome
 * in @text, or -ESRCH (no canary) with the reason. */
int app_promote(struct app *a, char *text, size_t len);
int app_rollback(struct app *a, char *text, size_t len);
/* batonctl rollback without a canary: a new generation from the pinned
 * configuration and program, as an upgrade (readiness, then the current one
 * drains); @w (may be NULL) is told the outcome, ESRCH when nothing is pinned. */
void app_revert(struct app *a, struct app_waiter *w);
/* Drain every generation; app_is_stopped once nothing is left. */
void app_stop(struct app *a);
bool app_is_stopped(const struct app *a);
bool app_notify(struct app *a, pid_t pid, bool ready, bool stopping, const char *status);
/* Across a re-exec (reexec.c). Why @a cannot be carried now (an upgrade or
 * a reload under way), or NULL. */
const char *app_reexec_busy(const struct app *a);
/* @a as JSON (@retired: removed by a reload, draining), its fds recorded in
 * @s; and an app made again from that with @env. On failure nothing is
 * freed or closed (reexec.h). */
struct json_object;
struct reexec_save;
struct reexec_load;
struct json_object *app_save(const struct app *a, bool retired, struct reexec_save *s);
int app_restore(const struct app_env *env, const struct reexec_load *ld, struct json_object *j,
		struct app **ret);
/* Acts on what the generations marked since the last call: a starting
 * generation ready or failed, generations gone (freed here), connections that
 * may move. Call once per loop turn, outside any generation's callback. */
void app_settle(struct app *a);
/* Connections open on @g's workers as far as batond knows (dispatch mode:
 * sent and not reported finished), or -1 when it does not (inherit mode). */
long long app_gen_connections(const struct app *a, const struct gen *g);
/* What @g's health check says ("passing", "failing 1 of 3: REASON"...), for
 * status; NULL when it is not being checked. */
const char *app_gen_health(const struct app *a, const struct gen *g, char *buf, size_t len);
