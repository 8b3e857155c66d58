/* SPDX-License-Identifier: MIT */
/* Apps: which generation serves, upgrades with rollback, serialisation of
 * generations starting, the bound on those draining (max-draining) and the
 * app's share of batond's stop. Generations mark what happens
 * to them; app_settle decides what it means. Nothing here touches a process
 * directly. */
#include "app.h"
#include "channel.h"
#include "dispatch.h"
#include "generation.h"
#include "health.h"
#include "log.h"
#include "reexec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define START_BACKOFF_BASE_USEC (500 * 1000ULL)
#define START_BACKOFF_MAX_USEC	(30 * 1000000ULL)
#define PROBATION_RESTARTS	3 /* restarts on probation that revert to the pinned one */

static void upgrade_begin(struct app *a);
static void unpin(struct app *a);
static void health_stop(struct app *a);
static void gen_failed(struct app *a, struct gen *g);

/* Records the outcome of an upgrade; returns it, for the waiters. */
static const char *__attribute__((format(printf, 2, 3)))
outcome(struct app *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->counters.last_outcome, sizeof(a->counters.last_outcome), fmt, ap);
	va_end(ap);
	return a->counters.last_outcome;
}

static void mark(struct app *a)
{
	a->dirty = true;
	a->env->ops->changed(a->env->userdata);
}

static void on_gen_changed(void *userdata, struct gen *g)
{
	mark(userdata);
}

static void on_gen_conn_done(void *userdata, struct gen *g, unsigned worker, uint32_t n)
{
	struct app *a = userdata;
	dispatch_conn_done(a->dispatch, g->id, worker, n);
}

static int on_gen_park(void *userdata, struct gen *g, int fd, const struct proto_conn *rec)
{
	struct app *a = userdata;
	int r = dispatch_park(a->dispatch, fd, rec);
	if (r == 0)
		mark(a); /* delivered to the serving generation once settled */
	return r;
}

static void on_gen_park_refused(void *userdata, struct gen *g)
{
	struct app *a = userdata;
	a->counters.parks_refused++;
}

static void on_gen_restarted(void *userdata, struct gen *g)
{
	struct app *a = userdata;
	a->counters.restarts++;
	if (g->id == a->probation_gen) {
		a->probation_restarts++;
		mark(a); /* probation_check decides */
	}
}

static const struct gen_ops app_gen_ops = {
    .changed = on_gen_changed,
    .conn_done = on_gen_conn_done,
    .park = on_gen_park,
    .park_refused = on_gen_park_refused,
    .restarted = on_gen_restarted,
};

static void on_health_changed(void *userdata, bool ok)
{
	struct app *a = userdata;
	a->counters.health_failures += !ok;
	mark(a);
}

static void on_health_sent(void *userdata, unsigned gen_id, unsigned index)
{
	struct app *a = userdata;
	dispatch_sent_aside(a->dispatch, gen_id, index);
}

static const struct health_ops app_health_ops = {
    .changed = on_health_changed,
    .sent = on_health_sent,
};

static struct channel *serving_channel(void *userdata, unsigned gen_id, unsigned index)
{
	struct app *a = userdata;
	struct gen *g = a->serving && a->serving->id == gen_id ? a->serving
			: a->canary && a->canary->id == gen_id ? a->canary
							       : NULL;
	return g ? gen_ready_channel(g, index) : NULL;
}

static const struct dispatch_ops app_dispatch_ops = {.ready_channel = serving_channel};

struct config_ref *config_ref_new(struct config *cfg)
{
	struct config_ref *r = malloc(sizeof(*r));
	if (!r) {
		config_free(cfg);
		return NULL;
	}
	*r = (struct config_ref){.cfg = cfg, .refs = 1};
	return r;
}

void config_ref_put(struct config_ref *r)
{
	if (!r || --r->refs > 0)
		return;
	config_free(r->cfg);
	free(r);
}

/* What one configuration of the app gives its generations. Held by the app
 * (its version, a reload's next one) and by every generation started from it,
 * with duplicates of the listeners it names: a listener a reload removed stays
 * open while a generation may still accept on it. */
struct app_version {
	unsigned refs;
	struct config_ref *root;
	const struct app_cfg *cfg;
	int *listen_fds;	   /* in LISTEN_FDS order */
	const char **listen_names; /* parallel to listen_fds */
	char *listen_names_joined; /* "a:b" */
	struct gen_env gen_env;
};

static struct app_version *version_get(struct app_version *v)
{
	v->refs++;
	return v;
}

static void version_put(struct app_version *v)
{
	if (!v || --v->refs > 0)
		return;
	for (size_t i = 0; v->listen_fds && i < v->cfg->n_listeners; i++)
		if (v->listen_fds[i] >= 0)
			close(v->listen_fds[i]);
	free(v->listen_fds);
	free(v->listen_names);
	free(v->listen_names_joined);
	config_ref_put(v->root);
	free(v);
}

static struct app_version *version_of(const struct gen *g)
{
	return (struct app_version *)((char *)g->env - offsetof(struct app_version, gen_env));
}

/* @listener_fds: batond's, parallel to root->cfg->listeners, duplicated; or
 * with @adopt, the version's own, in the app's listener order, taken. */
static int version_make(struct app *a, struct config_ref *root, const struct app_cfg *cfg,
			const int *listener_fds, bool adopt, struct app_version **ret)
{
	struct app_version *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->refs = 1;
	v->root = root;
	root->refs++;
	v->cfg = cfg;
	size_t n = cfg->n_listeners ? cfg->n_listeners : 1, joined_len = 1;
	v->listen_fds = malloc(n * sizeof(int));
	v->listen_names = calloc(n, sizeof(char *));
	for (size_t i = 0; i < cfg->n_listeners; i++)
		joined_len += strlen(root->cfg->listeners[cfg->listener_idx[i]].name) + 1;
	v->listen_names_joined = calloc(1, joined_len);
	for (size_t i = 0; v->listen_fds && i < n; i++)
		v->listen_fds[i] = -1;
	if (!v->listen_fds || !v->listen_names || !v->listen_names_joined) {
		version_put(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		size_t idx = cfg->listener_idx[i];
		v->listen_fds[i] =
		    adopt ? listener_fds[i] : fcntl(listener_fds[idx], F_DUPFD_CLOEXEC, 3);
		if (v->listen_fds[i] < 0) {
			int r = -errno;
			version_put(v);
			return r;
		}
		v->listen_names[i] = root->cfg->listeners[idx].name;
		if (i)
			strcat(v->listen_names_joined, ":");
		strcat(v->listen_names_joined, v->listen_names[i]);
	}
	v->gen_env = (struct gen_env){
	    .event = a->env->event,
	    .cfg = cfg,
	    .listen_fds = v->listen_fds,
	    .listen_names = v->listen_names,
	    .listen_names_joined = v->listen_names_joined,
	    .notify_socket = a->env->notify_socket(a->env->userdata, cfg),
	    .spawn = a->env->spawn,
	    .ops = &app_gen_ops,
	    .userdata = a,
	    .cgroups = a->env->cgroups,
	};
	*ret = v;
	return 0;
}

static int version_new(struct app *a, struct config_ref *root, const struct app_cfg *cfg,
		       const int *listener_fds, struct app_version **ret)
{
	return version_make(a, root, cfg, listener_fds, false, ret);
}

/* The app runs @v from now on (the reference is the app's). */
static void use_version(struct app *a, struct app_version *v)
{
	/* Dispatch moves what it holds over by listener name: the old version's
	 * names must still be there while it does. */
	dispatch_set_config(a->dispatch, v->root->cfg, v->cfg, v->listen_fds);
	if (a->version)
		version_put(a->version);
	a->version = v;
	a->cfg = v->cfg;
}

int app_new(const struct app_env *env, struct config_ref *root, const struct app_cfg *cfg,
	    const int *listener_fds, struct app **ret)
{
	struct app *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->env = env;
	a->cfg = cfg;
	a->next_gen_id = 1;
	a->pinned_program_fd = -1;
	struct app_version *v;
	int r = version_new(a, root, cfg, listener_fds, &v);
	if (r < 0) {
		free(a);
		return r;
	}
	r = dispatch_new(env->event, &app_dispatch_ops, a, &a->dispatch);
	if (r < 0) {
		version_put(v);
		free(a);
		return r;
	}
	use_version(a, v);
	*ret = a;
	return 0;
}

static void waiters_finish(struct app_waiter **list, int code, const char *text)
{
	struct app_waiter *w = *list;
	*list = NULL;
	while (w) {
		struct app_waiter *next = w->next;
		w->done(w->userdata, code, text);
		free(w);
		w = next;
	}
}

void app_free(struct app *a)
{
	if (!a)
		return;
	waiters_finish(&a->waiters, ESHUTDOWN, "batond is stopping");
	waiters_finish(&a->next_waiters, ESHUTDOWN, "batond is stopping");
	waiters_finish(&a->drain_waiters, ESHUTDOWN, "batond is stopping");
	for (size_t i = 0; i < a->n_gens; i++) {
		struct app_version *v = version_of(a->gens[i]);
		gen_free(a->gens[i]);
		version_put(v);
	}
	health_stop(a);
	free(a->gens);
	sd_event_source_disable_unref(a->start_timer);
	sd_event_source_disable_unref(a->canary_timer);
	unpin(a);
	dispatch_free(a->dispatch);
	version_put(a->version);
	version_put(a->next_version);
	free(a);
}

static void unpin(struct app *a)
{
	version_put(a->pinned);
	if (a->pinned_program_fd >= 0)
		close(a->pinned_program_fd);
	a->pinned = NULL;
	a->pinned_program_fd = -1;
	a->pinned_gen = 0;
	a->probation_gen = 0;
}

/* @old, just replaced, is what batonctl rollback and probation go back to. */
static void pin(struct app *a, const struct gen *old)
{
	unpin(a);
	a->pinned = version_get(version_of(old));
	a->pinned_program_fd =
	    old->program_fd >= 0 ? fcntl(old->program_fd, F_DUPFD_CLOEXEC, 3) : -1;
	a->pinned_gen = old->id;
}

static void gens_remove(struct app *a, struct gen *g)
{
	for (size_t i = 0; i < a->n_gens; i++)
		if (a->gens[i] == g) {
			memmove(&a->gens[i], &a->gens[i + 1],
				(a->n_gens - i - 1) * sizeof(*a->gens));
			a->n_gens--;
			return;
		}
}

/* Starts the next generation as a->starting, with @n_workers (0: all of
 * them), from the pinned configuration and program with @pinned. Returns 0 or
 * a negative errno. */
static int start_generation(struct app *a, unsigned n_workers, bool pinned)
{
	/* Room first: a generation that runs must always be tracked. */
	struct gen **gens = realloc(a->gens, (a->n_gens + 1) * sizeof(*gens));
	if (!gens)
		return -ENOMEM;
	a->gens = gens;
	struct app_version *v = pinned ? a->pinned : a->next_version ? a->next_version : a->version;
	struct gen *g;
	if (!n_workers)
		n_workers = a->scale ? a->scale : v->cfg->workers;
	int r = gen_start(&v->gen_env, a->next_gen_id, n_workers,
			  pinned ? a->pinned_program_fd : -1, &g);
	if (r < 0)
		return r;
	version_get(v);
	a->next_gen_id++;
	a->gens[a->n_gens++] = g;
	a->starting = g;
	return 0;
}

static int on_start_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct app *a = userdata;
	a->start_timer = sd_event_source_disable_unref(a->start_timer);
	app_start(a);
	return 0;
}

static void schedule_start(struct app *a)
{
	uint64_t delay = START_BACKOFF_BASE_USEC << (a->start_failures < 8 ? a->start_failures : 8);
	if (delay > START_BACKOFF_MAX_USEC)
		delay = START_BACKOFF_MAX_USEC;
	a->start_failures++;
	log_info("%s: retrying start in %llu ms", a->cfg->name, (unsigned long long)delay / 1000);
	int r = sd_event_add_time_relative(a->env->event, &a->start_timer, CLOCK_MONOTONIC, delay,
					   1000, on_start_timer, a);
	if (r < 0)
		log_err("%s: cannot arm start timer: %s; app stays down until an upgrade",
			a->cfg->name, strerror(-r));
}

void app_start(struct app *a)
{
	if (a->stopping || a->starting)
		return;
	int r = start_generation(a, 0, false);
	if (r < 0) {
		log_err("%s: cannot start generation %u: %s", a->cfg->name, a->next_gen_id,
			strerror(-r));
		schedule_start(a);
	}
}

void app_upgrade(struct app *a, struct app_waiter *w)
{
	if (a->stopping) {
		if (w) {
			w->done(w->userdata, ESHUTDOWN, "batond is stopping");
			free(w);
		}
		return;
	}
	/* A generation still coming up (an upgrade's, or the first): join the
	 * next upgrade, which starts as soon as it is ready or failed. */
	if (a->upgrade_running || a->starting) {
		if (w) {
			w->next = a->next_waiters;
			a->next_waiters = w;
		}
		a->upgrade_queued = true;
		return;
	}
	if (w) {
		w->next = a->waiters;
		a->waiters = w;
	}
	upgrade_begin(a);
	mark(a);
}

static void upgrade_begin(struct app *a)
{
	if (a->canary) {
		/* Queued behind the canary's start. */
		char text[200];
		snprintf(text, sizeof(text),
			 "%s: generation %u is a canary: batonctl promote %s, or rollback %s, "
			 "before the next upgrade",
			 a->cfg->name, a->canary->id, a->cfg->name, a->cfg->name);
		log_warn("%s", text);
		waiters_finish(&a->waiters, EBUSY, text);
		return;
	}
	bool revert = a->revert_requested;
	a->revert_requested = false;
	if (revert && !a->pinned) {
		char text[200];
		snprintf(text, sizeof(text), "%s: nothing to roll back to: no generation is pinned",
			 a->cfg->name);
		waiters_finish(&a->waiters, ESRCH, text);
		return;
	}
	a->upgrade_running = true;
	a->start_timer = sd_event_source_disable_unref(a->start_timer);
	/* canary = N: the new generation starts with N workers beside the serving
	 * one, and gets the rest once promoted. A rollback is no canary. */
	const struct app_version *v = revert		? a->pinned
				      : a->next_version ? a->next_version
							: a->version;
	unsigned full = a->scale ? a->scale : v->cfg->workers;
	unsigned canary = a->serving && !revert && v->cfg->canary < full ? v->cfg->canary : 0;
	a->revert_gen = revert ? a->next_gen_id : 0;
	a->starting_canary = canary > 0;
	a->canary_of = full;
	if (canary)
		log_info("%s: upgrade: starting generation %u as a canary, %u of %u workers",
			 a->cfg->name, a->next_gen_id, canary, full);
	else if (revert)
		log_info("%s: rollback: starting generation %u from generation %u's program and "
			 "configuration (%s)",
			 a->cfg->name, a->next_gen_id, a->pinned_gen, a->revert_reason);
	else
		log_info("%s: upgrade: starting generation %u%s", a->cfg->name, a->next_gen_id,
			 a->serving ? "" : " (no generation serving)");
	int r = start_generation(a, canary, revert);
	if (r < 0) {
		if (a->next_version && !revert) {
			version_put(a->next_version);
			a->next_version = NULL;
			a->config_stale = true;
		}
		const char *text = outcome(
		    a, "%s: cannot start generation %u: %s%s", a->cfg->name, a->next_gen_id,
		    strerror(-r), a->serving ? "; the serving generation still serves" : "");
		log_err("%s", text);
		a->counters.rollbacks++;
		a->upgrade_running = false;
		waiters_finish(&a->waiters, ECANCELED, text);
	}
}

/* An upgrade ended (either way; what it drains may drain on): run the one
 * queued behind it, if any. */
static void upgrade_settled(struct app *a)
{
	a->upgrade_running = false;
	if (!a->upgrade_queued || a->stopping)
		return;
	a->upgrade_queued = false;
	a->waiters = a->next_waiters;
	a->next_waiters = NULL;
	upgrade_begin(a);
}

/* The waiters of the upgrade that made @g ready: told now, or, with
 * --wait-drain, once every generation before @g is gone (drained_check). */
static void upgrade_done(struct app *a, struct gen *g, const char *text)
{
	struct app_waiter *w = a->waiters, *now = NULL;
	a->waiters = NULL;
	while (w) {
		struct app_waiter *next = w->next;
		if (w->wait_drain) {
			w->until_gen = g->id;
			w->ready_usec = g->ready_usec;
			w->ready_in_usec = g->ready_usec - g->started_usec;
			w->next = a->drain_waiters;
			a->drain_waiters = w;
		} else {
			w->next = now;
			now = w;
		}
		w = next;
	}
	waiters_finish(&now, 0, text);
}

/* Tells the --wait-drain waiters whose older generations are all gone. */
static void drained_check(struct app *a)
{
	unsigned oldest = a->n_gens ? a->gens[0]->id : 0; /* a->gens is in id order */
	for (struct app_waiter **p = &a->drain_waiters; *p;) {
		struct app_waiter *w = *p;
		if (oldest && oldest < w->until_gen) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		uint64_t now;
		if (sd_event_now(a->env->event, CLOCK_MONOTONIC, &now) < 0)
			now = w->ready_usec;
		char text[200];
		snprintf(text, sizeof(text),
			 "%s: generation %u ready in %llu ms; the generations before it drained "
			 "%llu ms later",
			 a->cfg->name, w->until_gen, (unsigned long long)w->ready_in_usec / 1000,
			 (unsigned long long)(now - w->ready_usec) / 1000);
		w->done(w->userdata, 0, text);
		free(w);
	}
}

/* Whether @old, just replaced, serves on for overlap before it drains. */
static bool retires_later(const struct app *a, const struct gen *old)
{
	return a->cfg->overlap_usec && old->state == GEN_READY;
}

/* What retire() does to @old (NULL: nothing), for an outcome's text. */
static void retire_text(const struct app *a, const struct gen *old, char *what, size_t len)
{
	if (!old)
		snprintf(what, len, "nothing to drain");
	else if (retires_later(a, old))
		snprintf(what, len, "generation %u serves on for %.3g s (overlap), then drains",
			 old->id, (double)a->cfg->overlap_usec / 1e6);
	else
		snprintf(what, len, "generation %u draining (drain-timeout %.3g s)", old->id,
			 (double)a->cfg->drain_timeout_usec / 1e6);
}

/* @old served until its successor became ready: it drains, now or after
 * overlap. */
static void retire(struct app *a, struct gen *old)
{
	if (!old)
		return;
	if (retires_later(a, old)) {
		int r = gen_drain_later(old, a->cfg->overlap_usec);
		if (r == 0)
			return;
		log_warn("%s: generation %u drains now, without its overlap: %s", a->cfg->name,
			 old->id, strerror(-r));
	}
	gen_drain(old);
}

/* @g serves from now on, with every worker. Returns the generation that
 * served, for the caller to retire(). */
static struct gen *take_over(struct app *a, struct gen *g)
{
	struct gen *old = a->serving;
	a->serving = g;
	struct app_version *v = version_of(g);
	if (v != a->version) {
		/* Started from a reload's configuration: the app runs it now. */
		if (v == a->next_version)
			a->next_version = NULL; /* its reference passes to a->version */
		else
			version_get(v);
		use_version(a, v);
		a->config_stale = false;
	}
	/* batonctl scale's count, or the file's if it changed meanwhile. */
	gen_scale(g, a->scale ? a->scale : a->cfg->workers);
	dispatch_serve(a->dispatch, g->id, g->n_workers); /* new connections go to it from now */
	/* What it replaced is pinned for a rollback; after a rollback nothing is
	 * (the generation rolled back from must not come back by itself). */
	bool revert = g->id == a->revert_gen;
	if (old && !revert)
		pin(a, old);
	else if (revert)
		unpin(a);
	a->probation_gen = 0;
	uint64_t now;
	if (a->pinned && a->cfg->probation_usec &&
	    sd_event_now(a->env->event, CLOCK_MONOTONIC, &now) >= 0) {
		a->probation_gen = g->id;
		a->probation_until_usec = now + a->cfg->probation_usec;
		a->probation_restarts = 0;
	}
	return old;
}

/* The generation on probation goes back to the pinned one, as batonctl
 * rollback does, for a->revert_reason. */
static void probation_revert(struct app *a)
{
	log_err("%s: %s: rolling back to generation %u's program and configuration", a->cfg->name,
		a->revert_reason, a->pinned_gen);
	a->probation_gen = 0;
	a->revert_requested = true;
	app_upgrade(a, NULL);
}

/* A generation on probation whose workers restarted PROBATION_RESTARTS times
 * within it: back to the pinned one. */
static void probation_check(struct app *a)
{
	uint64_t now;
	if (!a->probation_gen || a->stopping ||
	    sd_event_now(a->env->event, CLOCK_MONOTONIC, &now) < 0)
		return;
	if (now >= a->probation_until_usec) {
		log_info("%s: generation %u passed its probation", a->cfg->name, a->probation_gen);
		a->probation_gen = 0;
		return;
	}
	if (a->probation_restarts < PROBATION_RESTARTS)
		return;
	snprintf(a->revert_reason, sizeof(a->revert_reason),
		 "generation %u restarted %u times within its probation of %.3g s",
		 a->probation_gen, a->probation_restarts, (double)a->cfg->probation_usec / 1e6);
	probation_revert(a);
}

/* ---- Health checks -------------------------------------------------------- */

static void health_stop(struct app *a)
{
	health_free(a->health);
	a->health = NULL;
}

/* Checks @g with its configuration's health check, if it has one, from now
 * on (a check of another generation ends). Returns false when it has none. */
static bool health_watch(struct app *a, struct gen *g)
{
	if (a->health && health_gen(a->health) == g)
		return true;
	health_stop(a);
	struct app_version *v = version_of(g);
	const struct app_cfg *cfg = v->cfg;
	if (!cfg->health_argv && !cfg->health_url)
		return false;
	const struct listener_cfg *l =
	    cfg->health_url ? &v->root->cfg->listeners[cfg->listener_idx[cfg->health_listener]]
			    : NULL;
	struct health_target t = {.g = g,
				  .cfg = cfg,
				  .listener_name = l ? l->name : NULL,
				  .listener_tag = l ? l->tag : NULL};
	int r = health_start(a->env->event, &t, &app_health_ops, a, &a->health);
	if (r < 0) {
		/* Not tried is not healthy: the generation fails its check. */
		log_err("%s: generation %u: cannot start its health check: %s", a->cfg->name, g->id,
			strerror(-r));
		a->health = NULL;
	}
	return true;
}

/* Whether a->starting, @g, ready, may take over: at once without a health
 * check (or with nothing serving, which it could only replace by nothing);
 * else once a round passed. After health-failures failed rounds it fails,
 * as a generation that never became ready: the serving one serves on. */
static bool health_gate(struct app *a, struct gen *g)
{
	if (!a->serving || a->stopping || !health_watch(a, g))
		return true;
	enum health_state st = a->health ? health_state(a->health) : HEALTH_FAILED;
	if (st == HEALTH_PASSING)
		return true;
	if (st != HEALTH_FAILED)
		return false;
	snprintf(g->reason, sizeof(g->reason),
		 "generation %u failed %u health check%s in a row: %s", g->id,
		 a->health ? health_failed_in_row(a->health) : 1,
		 a->health && health_failed_in_row(a->health) > 1 ? "s" : "",
		 a->health ? health_reason(a->health) : "it could not be started");
	g->failed = true;
	health_stop(a);
	a->starting = NULL;
	gen_failed(a, g);
	return false;
}

/* A check of a generation no longer tried ends; one that failed health-failures
 * times rolls the canary back, or the generation on probation. */
static void health_settle(struct app *a)
{
	struct gen *g = a->health ? health_gen(a->health) : NULL;
	if (!g)
		return;
	bool probation = a->serving == g && a->probation_gen == g->id;
	if (a->stopping || (g != a->starting && g != a->canary && !probation)) {
		health_stop(a);
		return;
	}
	if (health_state(a->health) != HEALTH_FAILED || g == a->starting)
		return;
	char why[400];
	unsigned failed = health_failed_in_row(a->health);
	snprintf(why, sizeof(why), "generation %u failed %u health check%s in a row%s: %s", g->id,
		 failed, failed == 1 ? "" : "s", probation ? " within its probation" : "",
		 health_reason(a->health));
	health_stop(a);
	if (probation) {
		snprintf(a->revert_reason, sizeof(a->revert_reason), "%s", why);
		probation_revert(a);
		return;
	}
	char text[800];
	app_rollback(a, text, sizeof(text));
	log_err("%s", outcome(a, "%s: canary %s; rolled back, generation %u serving", a->cfg->name,
			      why, a->serving ? a->serving->id : 0));
}

const char *app_gen_health(const struct app *a, const struct gen *g, char *buf, size_t len)
{
	if (!a->health || health_gen(a->health) != g)
		return NULL;
	const struct health *h = a->health;
	switch (health_state(h)) {
	case HEALTH_PENDING:
		snprintf(buf, len, "checking");
		break;
	case HEALTH_PASSING:
		snprintf(buf, len, "passing (%u rounds)", health_rounds(h));
		break;
	case HEALTH_FAILING:
	case HEALTH_FAILED:
		snprintf(buf, len, "failing, %u of %u in a row: %s", health_failed_in_row(h),
			 version_of(g)->cfg->health_failures, health_reason(h));
		break;
	}
	return buf;
}

static int on_canary_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct app *a = userdata;
	char text[800];
	int r = app_promote(a, text, sizeof(text));
	if (r == 0)
		log_info("%s (canary-time)", text);
	else if (r == -EAGAIN && a->canary &&
		 sd_event_source_set_time_relative(
		     s, version_of(a->canary)->cfg->health_interval_usec) >= 0 &&
		 sd_event_source_set_enabled(s, SD_EVENT_ONESHOT) >= 0)
		log_warn("%s (canary-time: promoted once a health check passes)", text);
	return 0;
}

/* The canary is one no longer (promoted, rolled back or gone). */
static void canary_end(struct app *a)
{
	a->canary = NULL;
	a->canary_timer = sd_event_source_disable_unref(a->canary_timer);
	dispatch_canary(a->dispatch, 0, 0, 0, 1);
}

/* @g, started with `canary` workers, takes their share of new connections
 * beside the serving generation. */
static void become_canary(struct app *a, struct gen *g)
{
	a->canary = g;
	dispatch_canary(a->dispatch, g->id, g->n_workers, g->n_workers, a->canary_of);
	uint64_t t = version_of(g)->cfg->canary_usec;
	if (t && sd_event_add_time_relative(a->env->event, &a->canary_timer, CLOCK_MONOTONIC, t,
					    10000, on_canary_timer, a) < 0)
		log_warn("%s: cannot arm canary-time: generation %u stays a canary until "
			 "batonctl promote",
			 a->cfg->name, g->id);
	char until[64] = "";
	if (t)
		snprintf(until, sizeof(until), ", promoted in %.3g s (canary-time)",
			 (double)t / 1e6);
	const char *text = outcome(
	    a,
	    "%s: generation %u ready in %llu ms as a canary: %u of %u workers beside generation "
	    "%u%s; batonctl promote %s, or rollback %s",
	    a->cfg->name, g->id, (unsigned long long)(g->ready_usec - g->started_usec) / 1000,
	    g->n_workers, a->canary_of, a->serving->id, until, a->cfg->name, a->cfg->name);
	log_info("%s", text);
	upgrade_done(a, g, text);
	upgrade_settled(a);
}

static void gen_ready(struct app *a, struct gen *g)
{
	a->start_failures = 0;
	bool canary = a->starting_canary;
	a->starting_canary = false;
	if (a->stopping) {
		gen_drain(g);
		return;
	}
	if (canary && a->serving && a->upgrade_running) {
		become_canary(a, g);
		return;
	}
	struct gen *old = take_over(a, g);
	char what[160];
	retire_text(a, old, what, sizeof(what));
	/* Told before the answer: once batonctl upgrade returns, the generation
	 * it replaced has its DRAIN and stop signal (or its overlap timer), and
	 * a request sent then finds the new one, as scripts expect. Answering
	 * first saved 0.6 ms of READY=1 to the reply (bench/ctlupgrade), and let
	 * an old worker still accept, or answer on a connection it was about to
	 * park, after the upgrade had returned. */
	retire(a, old);
	if (a->upgrade_running && g->id == a->revert_gen) {
		a->counters.rollbacks++;
		const char *text =
		    outcome(a, "%s: rolled back (%s): generation %u ready in %llu ms; %s",
			    a->cfg->name, a->revert_reason, g->id,
			    (unsigned long long)(g->ready_usec - g->started_usec) / 1000, what);
		upgrade_done(a, g, text);
	} else if (a->upgrade_running) {
		a->counters.upgrades++;
		const char *text =
		    outcome(a, "%s: generation %u ready in %llu ms; %s", a->cfg->name, g->id,
			    (unsigned long long)(g->ready_usec - g->started_usec) / 1000, what);
		upgrade_done(a, g, text);
	}
	if (a->upgrade_running || a->upgrade_queued)
		upgrade_settled(a);
}

static void gen_failed(struct app *a, struct gen *g)
{
	a->starting_canary = false;
	gen_drain(g);
	if (a->stopping)
		return;
	if (!a->upgrade_running) {
		/* First start (or a restart with nothing serving): retry with backoff.
		 * generation.c logged the reason. */
		if (a->upgrade_queued)
			upgrade_settled(a);
		else
			schedule_start(a);
		return;
	}
	a->counters.rollbacks++;
	bool reload = version_of(g) == a->next_version;
	if (reload) {
		/* The configuration loaded last does not start: keep the one before. */
		version_put(a->next_version);
		a->next_version = NULL;
		a->config_stale = true;
	}
	char serving[96] = "no generation serving";
	if (a->serving)
		snprintf(serving, sizeof(serving), "generation %u still serving%s", a->serving->id,
			 reload ? " with its previous configuration" : "");
	const char *text = outcome(a, "%s: %s; %s", a->cfg->name, g->reason, serving);
	log_err("upgrade rolled back: %s", text);
	waiters_finish(&a->waiters, ECANCELED, text);
	upgrade_settled(a);
	if (!a->serving && !a->starting && !a->stopping)
		schedule_start(a);
}

const double app_drain_bucket_seconds[APP_DRAIN_BUCKETS] = {0.01, 0.05, 0.1, 0.5, 1,
							    5,	  10,	30,  60,  300};

static void drain_observe(struct app_counters *c, uint64_t usec)
{
	for (size_t i = 0; i < APP_DRAIN_BUCKETS; i++)
		if ((double)usec <= app_drain_bucket_seconds[i] * 1e6) {
			c->drain_buckets[i]++;
			break;
		}
	c->drains++;
	c->drain_usec_sum += usec;
}

static void gen_gone(struct app *a, struct gen *g)
{
	if (a->health && health_gen(a->health) == g)
		health_stop(a);
	/* A generation that served and was replaced, not one that failed to start. */
	if (g->ready_usec && g->drain_started_usec && g->gone_usec >= g->drain_started_usec)
		drain_observe(&a->counters, g->gone_usec - g->drain_started_usec);
	if (a->serving == g) {
		a->serving = NULL;
		dispatch_serve(a->dispatch, 0, 0);
	}
	if (a->starting == g)
		a->starting = NULL;
	if (a->canary == g)
		canary_end(a);
	if (g->finishing) {
		unsigned parked = g->parks - g->parks_at_finish;
		log_warn("%s: generation %u, finished early, is gone: %u connection%s parked to "
			 "generation %u",
			 a->cfg->name, g->id, parked, parked == 1 ? "" : "s",
			 a->serving ? a->serving->id : 0);
	}
	gens_remove(a, g);
	dispatch_forget(a->dispatch, g->id);
	struct app_version *v = version_of(g);
	gen_free(g);
	version_put(v);
}

static bool same_string(const char *x, const char *y)
{
	return x == y || (x && y && strcmp(x, y) == 0);
}

static bool same_limit(const struct app_limit *x, const struct app_limit *y)
{
	return x->set == y->set && (!x->set || x->value == y->value);
}

/* What a process is made in: user, groups, directory, umask, limits, cgroup limits. */
static bool same_credentials(const struct app_cfg *x, const struct app_cfg *y)
{
	if (x->set_ids != y->set_ids ||
	    (x->set_ids && (x->uid != y->uid || x->gid != y->gid || x->n_groups != y->n_groups ||
			    memcmp(x->groups, y->groups, x->n_groups * sizeof(gid_t)) != 0)))
		return false;
	return same_string(x->working_directory, y->working_directory) &&
	       x->set_umask == y->set_umask && (!x->set_umask || x->umask == y->umask) &&
	       x->no_new_privileges == y->no_new_privileges && x->ambient_caps == y->ambient_caps &&
	       same_limit(&x->limit_nofile, &y->limit_nofile) &&
	       same_limit(&x->limit_core, &y->limit_core) &&
	       same_limit(&x->limit_nproc, &y->limit_nproc) &&
	       /* Written to the app's cgroup when a generation starts. */
	       same_limit(&x->memory_max, &y->memory_max) &&
	       same_limit(&x->tasks_max, &y->tasks_max) && x->cpu_weight == y->cpu_weight;
}

/* True if a process of @a's generations and one of @b's start the same: same
 * program, arguments, environment, credentials, mode and listening sockets.
 * (How many of them run changes in place.) */
static bool starts_the_same(const struct app_version *a, const struct app_version *b)
{
	const struct app_cfg *x = a->cfg, *y = b->cfg;
	if (x->mode != y->mode || x->n_listeners != y->n_listeners || !same_credentials(x, y))
		return false;
	size_t i = 0;
	for (; x->argv[i] && y->argv[i]; i++)
		if (strcmp(x->argv[i], y->argv[i]) != 0)
			return false;
	if (x->argv[i] || y->argv[i])
		return false;
	i = 0;
	for (; x->environment && y->environment && x->environment[i] && y->environment[i]; i++)
		if (strcmp(x->environment[i], y->environment[i]) != 0)
			return false;
	bool x_more = x->environment && x->environment[i];
	bool y_more = y->environment && y->environment[i];
	if (x_more || y_more)
		return false;
	for (i = 0; i < x->n_listeners; i++) {
		struct stat sx, sy;
		if (strcmp(a->listen_names[i], b->listen_names[i]) != 0 ||
		    fstat(a->listen_fds[i], &sx) < 0 || fstat(b->listen_fds[i], &sy) < 0 ||
		    sx.st_ino != sy.st_ino || sx.st_dev != sy.st_dev)
			return false;
	}
	return true;
}

void app_reconfigure(struct app *a, struct config_ref *root, const struct app_cfg *cfg,
		     const int *listener_fds, bool upgrade, struct app_waiter *w)
{
	struct app_version *v;
	int r = version_new(a, root, cfg, listener_fds, &v);
	if (r < 0) {
		char text[200];
		snprintf(text, sizeof(text), "%s: cannot apply the configuration: %s", a->cfg->name,
			 strerror(-r));
		log_err("%s", text);
		if (w) {
			w->done(w->userdata, ECANCELED, text);
			free(w);
		}
		return;
	}
	if (a->next_version || !starts_the_same(a->version, v)) {
		version_put(a->next_version);
		a->next_version = v;
		log_info("%s: new configuration: upgrading to it", cfg->name);
		app_upgrade(a, w);
		return;
	}
	if (upgrade) {
		/* The same configuration, a new binary perhaps: the upgrade takes
		 * the new version along. */
		version_put(a->next_version);
		a->next_version = v;
		app_upgrade(a, w);
		return;
	}
	/* Nothing a process is started with changed: the generations running
	 * take it as they are (timers armed from now on use its values). */
	for (size_t i = 0; i < a->n_gens; i++) {
		struct gen *g = a->gens[i];
		struct app_version *old = version_of(g);
		g->env = &version_get(v)->gen_env;
		version_put(old);
	}
	use_version(a, v);
	a->config_stale = false;
	a->scale = 0; /* the file's count from now on */
	if (a->serving && gen_scale(a->serving, cfg->workers) < 0)
		log_warn("%s: cannot start more workers now; the next upgrade starts %u", cfg->name,
			 cfg->workers);
	log_info("%s: new configuration applied in place", cfg->name);
	if (w) {
		char text[200];
		snprintf(text, sizeof(text), "%s: configuration applied in place", cfg->name);
		w->done(w->userdata, 0, text);
		free(w);
	}
	mark(a);
}

int app_promote(struct app *a, char *text, size_t len)
{
	struct gen *g = a->canary;
	if (!g) {
		snprintf(text, len, "%s: no canary to promote", a->cfg->name);
		return -ESRCH;
	}
	if (a->health && health_gen(a->health) == g && health_state(a->health) != HEALTH_PASSING) {
		snprintf(text, len,
			 "%s: canary generation %u not promoted: its last health check "
			 "failed (%s)",
			 a->cfg->name, g->id, health_reason(a->health));
		return -EAGAIN;
	}
	canary_end(a);
	unsigned was = g->n_workers;
	struct gen *old = take_over(a, g);
	char what[160];
	retire_text(a, old, what, sizeof(what));
	retire(a, old);
	a->counters.upgrades++;
	snprintf(text, len, "%s",
		 outcome(a, "%s: generation %u promoted from %u to %u workers; %s", a->cfg->name,
			 g->id, was, g->n_workers, what));
	log_info("%s", text);
	mark(a);
	return 0;
}

int app_rollback(struct app *a, char *text, size_t len)
{
	struct gen *g = a->canary;
	if (!g) {
		snprintf(text, len, "%s: no canary to roll back", a->cfg->name);
		return -ESRCH;
	}
	canary_end(a);
	gen_drain(g);
	bool reload = version_of(g) == a->next_version;
	if (reload) {
		/* The configuration loaded last is refused: keep the one before. */
		version_put(a->next_version);
		a->next_version = NULL;
		a->config_stale = true;
	}
	a->counters.rollbacks++;
	snprintf(text, len, "%s",
		 outcome(a, "%s: canary generation %u rolled back; generation %u serving%s",
			 a->cfg->name, g->id, a->serving ? a->serving->id : 0,
			 reload ? " with its previous configuration" : ""));
	log_info("%s", text);
	mark(a);
	return 0;
}

void app_revert(struct app *a, struct app_waiter *w)
{
	if (!a->pinned) {
		char text[200];
		snprintf(text, sizeof(text),
			 "%s: nothing to roll back to: no canary, and no generation is pinned",
			 a->cfg->name);
		if (w) {
			w->done(w->userdata, ESRCH, text);
			free(w);
		}
		return;
	}
	snprintf(a->revert_reason, sizeof(a->revert_reason), "batonctl rollback");
	a->revert_requested = true;
	app_upgrade(a, w);
}

int app_scale(struct app *a, unsigned n)
{
	if (a->stopping)
		return -ESHUTDOWN;
	a->scale = n;
	log_info("%s: scaling to %u worker%s", a->cfg->name, n, n == 1 ? "" : "s");
	int r = a->serving ? gen_scale(a->serving, n) : -EBUSY;
	mark(a);
	return r;
}

void app_stop(struct app *a)
{
	a->stopping = true;
	health_stop(a);
	a->start_timer = sd_event_source_disable_unref(a->start_timer);
	a->canary_timer = sd_event_source_disable_unref(a->canary_timer);
	waiters_finish(&a->waiters, ESHUTDOWN, "batond is stopping");
	waiters_finish(&a->next_waiters, ESHUTDOWN, "batond is stopping");
	waiters_finish(&a->drain_waiters, ESHUTDOWN, "batond is stopping");
	a->upgrade_queued = false;
	a->upgrade_running = false;
	dispatch_stop(a->dispatch);
	for (size_t i = 0; i < a->n_gens; i++)
		gen_drain(a->gens[i]);
	mark(a);
}

bool app_is_stopped(const struct app *a)
{
	return a->n_gens == 0;
}

bool app_notify(struct app *a, pid_t pid, bool ready, bool stopping, const char *status)
{
	for (size_t i = 0; i < a->n_gens; i++)
		if (gen_notify(a->gens[i], pid, ready, stopping, status))
			return true;
	return false;
}

/* Connections open on @g's workers, as far as batond knows them: those it
 * dispatched and that were not reported finished. -1 in inherit mode. */
long long app_gen_connections(const struct app *a, const struct gen *g)
{
	if (a->cfg->mode != SERVE_DISPATCH)
		return -1;
	long long n = 0;
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct dispatch_worker_stats st;
		channel_poll_done(g->workers[i]->channel);
		dispatch_worker_stats(a->dispatch, g->id, g->workers[i]->index, &st);
		n += (long long)st.load;
	}
	return n;
}

/* At most max-draining generations drain at once: beyond, the oldest ones
 * are finished early (gen_finish), their live connections parked to the
 * serving generation where their workers run libbaton. */
static void bound_draining(struct app *a)
{
	if (a->stopping)
		return;
	unsigned draining = 0;
	for (size_t i = 0; i < a->n_gens; i++)
		draining += a->gens[i]->state == GEN_DRAINING && !a->gens[i]->finishing;
	for (size_t i = 0; i < a->n_gens && draining > a->cfg->max_draining; i++) {
		struct gen *g = a->gens[i];
		if (g->state != GEN_DRAINING || g->finishing)
			continue;
		long long open = app_gen_connections(a, g);
		char conns[64] = "its open connections unknown (inherit mode)";
		if (open >= 0)
			snprintf(conns, sizeof(conns), "%lld connection%s open", open,
				 open == 1 ? "" : "s");
		log_warn("%s: %u generations draining, max-draining is %u: finishing generation %u "
			 "early, %s",
			 a->cfg->name, draining, a->cfg->max_draining, g->id, conns);
		a->counters.finished_early++;
		gen_finish(g);
		draining--;
	}
}

void app_settle(struct app *a)
{
	if (!a->dirty)
		return;
	/* Each step may mark again (a failed generation drained with nothing
	 * left is gone at once): settle until nothing moves. */
	while (a->dirty) {
		a->dirty = false;
		struct gen *g = a->starting;
		if (g && g->state == GEN_READY && health_gate(a, g)) {
			a->starting = NULL;
			gen_ready(a, g);
		} else if (g && g->failed && a->starting == g) {
			a->starting = NULL;
			gen_failed(a, g);
		}
		for (size_t i = 0; i < a->n_gens;)
			if (a->gens[i]->state == GEN_GONE)
				gen_gone(a, a->gens[i]); /* removes it from a->gens */
			else
				i++;
		bound_draining(a);
		health_settle(a);
	}
	drained_check(a);
	probation_check(a);
	health_settle(a);
	if (a->serving) {
		gen_retire_done(a->serving);
		dispatch_serve(a->dispatch, a->serving->id, a->serving->n_workers);
	}
	if (a->canary)
		dispatch_canary(a->dispatch, a->canary->id, a->canary->n_workers,
				a->canary->n_workers, a->canary_of);
	dispatch_kick(a->dispatch);
}

const char *app_reexec_busy(const struct app *a)
{
	if (a->upgrade_running || a->upgrade_queued || a->starting)
		return "an upgrade is under way";
	if (a->next_version)
		return "a reload is under way";
	if (a->waiters || a->next_waiters)
		return "an upgrade has someone waiting for it";
	if (a->drain_waiters)
		return "an upgrade --wait-drain waits for a drain";
	if (a->canary)
		return "a canary runs: batonctl promote or rollback it first";
	if (a->probation_gen)
		return "a generation is on probation";
	if (a->health)
		return "a health check runs";
	return NULL;
}

/* Index of @v in @versions (added if new). */
static size_t version_index(const struct app_version ***versions, size_t *n,
			    const struct app_version *v, struct reexec_save *s)
{
	for (size_t i = 0; i < *n; i++)
		if ((*versions)[i] == v)
			return i;
	const struct app_version **grown = realloc(*versions, (*n + 1) * sizeof(*grown));
	if (!grown) {
		s->failed = true;
		return 0;
	}
	*versions = grown;
	grown[*n] = v;
	return (*n)++;
}

struct json_object *app_save(const struct app *a, bool retired, struct reexec_save *s)
{
	struct json_object *j = json_object_new_object(), *gens = json_object_new_array(),
			   *versions = json_object_new_array(),
			   *counters = json_object_new_object();
	const struct app_version **vs = NULL;
	size_t n_vs = 0;
	rx_set_str(j, "name", a->cfg->name);
	rx_set_bool(j, "retired", retired);
	rx_set_int(j, "version", (int64_t)version_index(&vs, &n_vs, a->version, s));
	/* What batonctl rollback goes back to. */
	rx_set_int(j, "pinned", a->pinned ? (int64_t)version_index(&vs, &n_vs, a->pinned, s) : -1);
	rx_set_int(j, "pinned_program_fd", reexec_keep_fd(s, a->pinned_program_fd));
	rx_set_int(j, "pinned_gen", a->pinned_gen);
	for (size_t i = 0; i < a->n_gens; i++) {
		struct json_object *gj = gen_save(a->gens[i], s);
		rx_set_int(gj, "version",
			   (int64_t)version_index(&vs, &n_vs, version_of(a->gens[i]), s));
		json_object_array_add(gens, gj);
	}
	for (size_t i = 0; i < n_vs; i++) {
		struct json_object *vj = json_object_new_object(), *fds = json_object_new_array();
		rx_set_int(vj, "config", reexec_config_index(s, vs[i]->root));
		rx_set_str(vj, "app", vs[i]->cfg->name);
		for (size_t k = 0; k < vs[i]->cfg->n_listeners; k++)
			json_object_array_add(
			    fds, json_object_new_int(reexec_keep_fd(s, vs[i]->listen_fds[k])));
		rx_set(vj, "fds", fds);
		json_object_array_add(versions, vj);
	}
	free(vs);
	rx_set(j, "versions", versions);
	rx_set(j, "gens", gens);
	rx_set_int(j, "serving", a->serving ? a->serving->id : 0);
	rx_set_bool(j, "config_stale", a->config_stale);
	rx_set_int(j, "scale", a->scale);
	rx_set_int(j, "next_gen_id", a->next_gen_id);
	rx_set_int(j, "start_failures", a->start_failures);
	rx_set_int(counters, "upgrades", a->counters.upgrades);
	rx_set_int(counters, "rollbacks", a->counters.rollbacks);
	rx_set_int(counters, "restarts", a->counters.restarts);
	rx_set_int(counters, "parks_refused", a->counters.parks_refused);
	rx_set_int(counters, "finished_early", a->counters.finished_early);
	rx_set_int(counters, "health_failures", a->counters.health_failures);
	struct json_object *buckets = json_object_new_array();
	for (size_t i = 0; i < APP_DRAIN_BUCKETS; i++)
		json_object_array_add(buckets,
				      json_object_new_int64((int64_t)a->counters.drain_buckets[i]));
	rx_set(counters, "drain_buckets", buckets);
	rx_set_int(counters, "drains", (int64_t)a->counters.drains);
	rx_set_int(counters, "drain_usec_sum", (int64_t)a->counters.drain_usec_sum);
	rx_set_str(counters, "last_outcome", a->counters.last_outcome);
	rx_set(j, "counters", counters);
	rx_set(j, "dispatch", dispatch_save(a->dispatch, s));
	return j;
}

static int version_restore(struct app *a, const struct reexec_load *ld, struct json_object *vj,
			   struct app_version **ret)
{
	int64_t c = rx_int(vj, "config", -1);
	if (c < 0 || (size_t)c >= ld->n_configs)
		return -EBADMSG;
	struct config_ref *root = ld->configs[c];
	const struct app_cfg *cfg = config_find_app(root->cfg, rx_str(vj, "app") ?: "");
	struct json_object *fds_j;
	if (!cfg || !json_object_object_get_ex(vj, "fds", &fds_j) ||
	    json_object_array_length(fds_j) != cfg->n_listeners)
		return -EBADMSG;
	int fds[cfg->n_listeners ? cfg->n_listeners : 1];
	for (size_t k = 0; k < cfg->n_listeners; k++)
		if ((fds[k] = json_object_get_int(json_object_array_get_idx(fds_j, k))) < 0)
			return -EBADMSG;
	return version_make(a, root, cfg, fds, true, ret);
}

int app_restore(const struct app_env *env, const struct reexec_load *ld, struct json_object *j,
		struct app **ret)
{
	size_t n_vs = rx_len(j, "versions"), n_gens = rx_len(j, "gens");
	int64_t vi = rx_int(j, "version", -1);
	if (vi < 0 || (size_t)vi >= n_vs)
		return -EBADMSG;
	struct app *a = calloc(1, sizeof(*a));
	struct app_version **vs = calloc(n_vs ? n_vs : 1, sizeof(*vs));
	if (!a || !vs || !(a->gens = calloc(n_gens ? n_gens : 1, sizeof(*a->gens))))
		return -ENOMEM;
	a->env = env;
	a->pinned_program_fd = -1;
	int r = 0;
	for (size_t i = 0; i < n_vs && r >= 0; i++)
		r = version_restore(a, ld, rx_at(j, "versions", i), &vs[i]);
	if (r < 0 || (r = dispatch_new(env->event, &app_dispatch_ops, a, &a->dispatch)) < 0)
		return r;
	use_version(a, version_get(vs[vi]));
	int64_t pinned = rx_int(j, "pinned", -1);
	if (pinned >= (int64_t)n_vs)
		return -EBADMSG;
	if (pinned >= 0) {
		a->pinned = version_get(vs[pinned]);
		a->pinned_program_fd = (int)rx_int(j, "pinned_program_fd", -1);
		a->pinned_gen = (unsigned)rx_int(j, "pinned_gen", 0);
	}
	unsigned serving = (unsigned)rx_int(j, "serving", 0);
	for (size_t i = 0; i < n_gens; i++) {
		struct json_object *gj = rx_at(j, "gens", i);
		int64_t gv = rx_int(gj, "version", -1);
		if (gv < 0 || (size_t)gv >= n_vs)
			return -EBADMSG;
		struct gen *g;
		if ((r = gen_restore(&vs[gv]->gen_env, gj, &g)) < 0)
			return r;
		version_get(vs[gv]);
		a->gens[a->n_gens++] = g;
		if (g->id == serving)
			a->serving = g;
	}
	if (serving && !a->serving)
		return -EBADMSG;
	a->config_stale = rx_bool(j, "config_stale");
	a->scale = (unsigned)rx_int(j, "scale", 0);
	a->next_gen_id = (unsigned)rx_int(j, "next_gen_id", 1);
	a->start_failures = (unsigned)rx_int(j, "start_failures", 0);
	struct json_object *c = json_object_object_get_ex(j, "counters", &c) ? c : NULL;
	a->counters.upgrades = (unsigned)rx_int(c, "upgrades", 0);
	a->counters.rollbacks = (unsigned)rx_int(c, "rollbacks", 0);
	a->counters.restarts = (unsigned)rx_int(c, "restarts", 0);
	a->counters.parks_refused = (unsigned)rx_int(c, "parks_refused", 0);
	a->counters.finished_early = (unsigned)rx_int(c, "finished_early", 0);
	a->counters.health_failures = (unsigned)rx_int(c, "health_failures", 0);
	struct json_object *buckets;
	if (c && json_object_object_get_ex(c, "drain_buckets", &buckets) &&
	    json_object_is_type(buckets, json_type_array))
		for (size_t i = 0; i < APP_DRAIN_BUCKETS && i < json_object_array_length(buckets);
		     i++)
			a->counters.drain_buckets[i] = (unsigned long long)json_object_get_int64(
			    json_object_array_get_idx(buckets, i));
	a->counters.drains = (unsigned long long)rx_int(c, "drains", 0);
	a->counters.drain_usec_sum = (uint64_t)rx_int(c, "drain_usec_sum", 0);
	snprintf(a->counters.last_outcome, sizeof(a->counters.last_outcome), "%s",
		 rx_str(c, "last_outcome") ?: "");
	struct json_object *dj;
	if (json_object_object_get_ex(j, "dispatch", &dj) &&
	    (r = dispatch_restore(a->dispatch, dj)) < 0)
		return r;
	for (size_t i = 0; i < n_vs; i++)
		version_put(vs[i]); /* the app's and its generations' references remain */
	free(vs);
	/* No generation at all (its first start kept failing): start again. */
	if (a->n_gens == 0)
		app_start(a);
	mark(a);
	*ret = a;
	return 0;
}
