/* SPDX-License-Identifier: MIT */
/* Status rendering. Reads batond's state; changes nothing. */
#include "status.h"
#include "app.h"
#include "batond.h"
#include "cgroup.h"
#include "channel.h"
#include "dispatch.h"
#include "generation.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Length of the UTF-8 character at @s (1-4), 0 if the bytes there are not
 * one, or -1 if they are the start of one that the string's end cuts short. */
static int utf8_char_len(const unsigned char *s)
{
	unsigned char c = s[0];
	int n;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000;
	else
		return 0;
	unsigned cp = c & (0x7f >> n);
	for (int i = 1; i < n; i++) {
		if (s[i] == 0)
			return -1;
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* Text that came from outside batond (a worker's STATUS=, cut to a fixed field
 * by generation.c), made valid UTF-8: a character the field's end cut short is
 * left out and any other byte that is not UTF-8 becomes U+FFFD. With
 * @escape_controls, control characters become \xHH, so that a STATUS= cannot
 * drive the operator's terminal. Returns a malloc'd string, NULL when out of
 * memory. */
static char *clean_text(const char *text, bool escape_controls)
{
	const unsigned char *s = (const unsigned char *)(text ? text : "");
	/* At most 4 bytes for each byte read: \xHH. */
	char *out = malloc(strlen((const char *)s) * 4 + 1);
	size_t used = 0;
	if (!out)
		return NULL;
	while (*s) {
		int n = utf8_char_len(s);
		if (n < 0)
			break;
		if (n == 0) {
			memcpy(out + used, "\xef\xbf\xbd", 3);
			used += 3;
			s++;
		} else if (escape_controls && (*s < 0x20 || *s == 0x7f)) {
			used += (size_t)sprintf(out + used, "\\x%02x", *s);
			s++;
		} else {
			memcpy(out + used, s, (size_t)n);
			used += (size_t)n;
			s += n;
		}
	}
	out[used] = 0;
	return out;
}

static void put_text(FILE *f, const char *text)
{
	char *clean = clean_text(text, true);
	if (clean)
		fputs(clean, f);
	free(clean);
}

/* json-c escapes control characters but copies every other byte as it is,
 * invalid UTF-8 included, which strict parsers refuse: hence clean_text. */
static struct json_object *json_text(const char *text)
{
	char *clean = clean_text(text, false);
	struct json_object *o = clean ? json_object_new_string(clean) : NULL;
	free(clean);
	return o;
}

/* The dispatch counters of listener @i, if a dispatch app accepts on it. */
static bool dispatch_stats(const struct daemon *d, size_t i, struct dispatch_listener_stats *ret)
{
	for (size_t k = 0; k < d->n_apps; k++) {
		const struct app *a = d->apps[k];
		for (size_t j = 0; a->cfg->mode == SERVE_DISPATCH && j < a->cfg->n_listeners; j++)
			if (a->cfg->listener_idx[j] == i) {
				dispatch_listener_stats(a->dispatch, j, ret);
				return true;
			}
	}
	return false;
}

static struct dispatch_worker_stats worker_stats(const struct app *a, const struct worker *w)
{
	struct dispatch_worker_stats st;
	channel_poll_done(w->channel);
	dispatch_worker_stats(a->dispatch, w->gen->id, w->index, &st);
	return st;
}

static double seconds_since(const struct daemon *d, uint64_t usec)
{
	return usec ? (double)(daemon_now_usec(d) - usec) / 1e6 : 0;
}

static double seconds_until(const struct daemon *d, uint64_t usec)
{
	uint64_t now = daemon_now_usec(d);
	return usec > now ? (double)(usec - now) / 1e6 : 0;
}

/* What @g does for its app: starting, checking (ready, an upgrade's, its
 * health check not passed yet), serving, canary (ready, takes its share
 * of new connections beside the serving one), overlapping (ready, serves on
 * until its drain, see overlap), draining, finishing (draining, finished
 * early by max-draining) or gone. */
static const char *gen_role(const struct app *a, const struct gen *g)
{
	switch (g->state) {
	case GEN_STARTING:
		return "starting";
	case GEN_READY:
		return g == a->serving	  ? "serving"
		       : g == a->canary	  ? "canary"
		       : g == a->starting ? "checking"
					  : "overlapping";
	case GEN_DRAINING:
		return g->finishing ? "finishing" : "draining";
	case GEN_GONE:
		break;
	}
	return "gone";
}

/* Builds the status object. Every helper below returns false once anything
 * could not be allocated: the caller then frees the whole tree. */
static bool add(struct json_object *obj, const char *key, struct json_object *val)
{
	if (!val)
		return false;
	if (json_object_object_add(obj, key, val) < 0) {
		json_object_put(val);
		return false;
	}
	return true;
}

static bool append(struct json_object *array, struct json_object *val)
{
	if (!val)
		return false;
	if (json_object_array_add(array, val) < 0) {
		json_object_put(val);
		return false;
	}
	return true;
}

/* Seconds with three decimals, as the text output has them: json-c's default
 * would print 17 digits. */
static struct json_object *json_seconds(double s)
{
	char text[32];
	snprintf(text, sizeof(text), "%.3f", s);
	return json_object_new_double_s(s, text);
}

static bool add_uint(struct json_object *obj, const char *key, uint64_t v)
{
	return add(obj, key, json_object_new_uint64(v));
}

static bool add_bool(struct json_object *obj, const char *key, bool v)
{
	return add(obj, key, json_object_new_boolean(v));
}

static struct json_object *json_listener(const struct daemon *d, size_t i)
{
	const struct listener_rt *l = &d->listeners[i];
	struct json_object *o = json_object_new_object();
	struct dispatch_listener_stats st;
	bool ok = o && add(o, "name", json_text(l->cfg->name)) &&
		  add(o, "address", json_text(l->cfg->address)) &&
		  add(o, "fd", json_object_new_int(l->fd)) &&
		  add_bool(o, "from_systemd", l->adopted);
	if (ok && dispatch_stats(d, i, &st))
		ok = add_uint(o, "accepted", st.accepted) && add_uint(o, "held", st.held) &&
		     add_uint(o, "timed_out", st.timed_out);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static struct json_object *json_worker(const struct daemon *d, const struct app *a,
				       const struct worker *w)
{
	struct json_object *o = json_object_new_object();
	struct dispatch_worker_stats st = worker_stats(a, w);
	bool ok =
	    o && add_uint(o, "index", w->index) && add(o, "pid", json_object_new_int(w->pid)) &&
	    add(o, "state", json_object_new_string(worker_state_name(w->state))) &&
	    add(o, "uptime_s", json_seconds(w->pid ? seconds_since(d, w->started_usec) : 0)) &&
	    add_uint(o, "restarts", w->restarts) && add(o, "status", json_text(w->status)) &&
	    add_uint(o, "delivered", st.delivered) && add_uint(o, "load", st.load);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static struct json_object *json_generation(const struct daemon *d, const struct app *a,
					   const struct gen *g)
{
	struct json_object *o = json_object_new_object();
	struct json_object *workers = json_object_new_array();
	long long conns = app_gen_connections(a, g);
	bool ok = o && workers && add_uint(o, "id", g->id) &&
		  add(o, "state", json_object_new_string(gen_state_name(g->state))) &&
		  add(o, "uptime_s", json_seconds(seconds_since(d, g->started_usec))) &&
		  add(o, "role", json_object_new_string(gen_role(a, g))) &&
		  add_uint(o, "parked", g->parks);
	if (ok && g->state == GEN_DRAINING)
		ok = add(o, "kill_in_s", json_seconds(seconds_until(d, g->timer_usec)));
	if (ok && g->state == GEN_READY && g->drain_at_usec)
		ok = add(o, "drain_in_s", json_seconds(seconds_until(d, g->drain_at_usec)));
	if (ok && conns >= 0)
		ok = add_uint(o, "connections", (uint64_t)conns);
	char health[400];
	if (ok && app_gen_health(a, g, health, sizeof(health)))
		ok = add(o, "health", json_text(health));
	uint64_t memory, cpu_usec, tasks;
	if (ok && gen_cgroup_stats(g, &memory, &cpu_usec, &tasks)) {
		ok = add(o, "cgroup", json_text(cgroup_path(g->cgroup))) &&
		     (memory == UINT64_MAX || add_uint(o, "memory_bytes", memory)) &&
		     (cpu_usec == UINT64_MAX ||
		      add(o, "cpu_s", json_seconds((double)cpu_usec / 1e6))) &&
		     add_uint(o, "tasks", tasks);
	}
	for (unsigned i = 0; ok && i < g->n_workers; i++)
		ok = append(workers, json_worker(d, a, g->workers[i]));
	if (ok && add(o, "workers", workers))
		return o;
	if (!ok)
		json_object_put(workers);
	json_object_put(o);
	return NULL;
}

static struct json_object *json_app(const struct daemon *d, const struct app *a)
{
	struct json_object *o = json_object_new_object();
	struct json_object *gens = json_object_new_array();
	bool ok = o && gens && add(o, "name", json_text(a->cfg->name)) &&
		  add_uint(o, "serving", a->serving ? a->serving->id : 0) &&
		  add_uint(o, "upgrades", a->counters.upgrades) &&
		  add_uint(o, "rollbacks", a->counters.rollbacks) &&
		  add_uint(o, "restarts", a->counters.restarts) &&
		  add_uint(o, "parks_refused", a->counters.parks_refused) &&
		  add_uint(o, "finished_early", a->counters.finished_early) &&
		  add_uint(o, "health_failures", a->counters.health_failures) &&
		  add_uint(o, "max_draining", a->cfg->max_draining) &&
		  add_uint(o, "canary", a->canary ? a->canary->id : 0) &&
		  add_bool(o, "config_current", !a->config_stale) &&
		  add_uint(o, "scaled_to", a->scale) &&
		  add_bool(o, "upgrade_running", a->upgrade_running) &&
		  add(o, "last_outcome", json_text(a->counters.last_outcome));
	double probation_s = a->probation_gen ? seconds_until(d, a->probation_until_usec) : 0;
	ok = ok && add_uint(o, "pinned", a->pinned_gen) &&
	     add_uint(o, "probation", a->probation_gen) &&
	     add(o, "probation_s", json_seconds(probation_s));
	for (size_t k = 0; ok && k < a->n_gens; k++)
		ok = append(gens, json_generation(d, a, a->gens[k]));
	if (ok && add(o, "generations", gens))
		return o;
	if (!ok)
		json_object_put(gens);
	json_object_put(o);
	return NULL;
}

static struct json_object *json_status(const struct daemon *d)
{
	struct json_object *o = json_object_new_object();
	struct json_object *listeners = json_object_new_array();
	struct json_object *apps = json_object_new_array();
	bool ok = o && listeners && apps && add_uint(o, "schema", STATUS_JSON_SCHEMA) &&
		  add(o, "version", json_object_new_string(BATON_VERSION)) &&
		  add(o, "pid", json_object_new_int(getpid())) &&
		  add(o, "uptime_s", json_seconds(seconds_since(d, d->started_usec))) &&
		  add(o, "cgroups", json_text(cgroups_mode(d->cgroups)));
	for (size_t i = 0; ok && i < d->cfg->n_listeners; i++)
		ok = append(listeners, json_listener(d, i));
	for (size_t i = 0; ok && i < d->n_apps; i++)
		ok = append(apps, json_app(d, d->apps[i]));
	if (ok) {
		ok = add(o, "listeners", listeners);
		listeners = NULL; /* o's now, or freed by add */
	}
	if (ok) {
		ok = add(o, "apps", apps);
		apps = NULL;
	}
	json_object_put(listeners);
	json_object_put(apps);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* One line of JSON; NULL when out of memory. */
static char *render_json(const struct daemon *d)
{
	struct json_object *o = json_status(d);
	if (!o)
		return NULL;
	size_t len;
	const char *text = json_object_to_json_string_length(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	char *buf = text ? malloc(len + 2) : NULL;
	if (buf) {
		memcpy(buf, text, len);
		memcpy(buf + len, "\n", 2);
	}
	json_object_put(o);
	return buf;
}

/* ", cgroup app-web/gen-3: memory 12.3 MiB, cpu 0.25 s, 4 tasks" */
static void render_cgroup(const struct gen *g, FILE *f)
{
	uint64_t memory, cpu_usec, tasks;
	if (!gen_cgroup_stats(g, &memory, &cpu_usec, &tasks))
		return;
	fprintf(f, ", cgroup %s:", cgroup_path(g->cgroup));
	if (memory != UINT64_MAX)
		fprintf(f, " memory %.1f MiB,", (double)memory / (1024 * 1024));
	if (cpu_usec != UINT64_MAX)
		fprintf(f, " cpu %.2f s,", (double)cpu_usec / 1e6);
	fprintf(f, " %llu task%s", (unsigned long long)tasks, tasks == 1 ? "" : "s");
}

static void render_text(const struct daemon *d, FILE *f)
{
	fprintf(f, "batond %s, pid %d, up %.1f s\n", BATON_VERSION, (int)getpid(),
		seconds_since(d, d->started_usec));
	fprintf(f, "cgroups: %s\n", cgroups_mode(d->cgroups));
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		const struct listener_rt *l = &d->listeners[i];
		struct dispatch_listener_stats st;
		fprintf(f, "listener %s: ", l->cfg->name);
		put_text(f, l->cfg->address);
		fprintf(f, ", fd %d%s", l->fd, l->adopted ? ", from systemd" : "");
		if (dispatch_stats(d, i, &st))
			fprintf(f, ", accepted %llu, held %u, timed out %llu",
				(unsigned long long)st.accepted, st.held,
				(unsigned long long)st.timed_out);
		fputc('\n', f);
	}
	for (size_t i = 0; i < d->n_apps; i++) {
		const struct app *a = d->apps[i];
		fprintf(f, "app %s: ", a->cfg->name);
		if (a->serving)
			fprintf(f, "generation %u serving", a->serving->id);
		else
			fprintf(f, "no generation serving");
		if (a->canary)
			fprintf(f, ", generation %u a canary (%u of %u workers)", a->canary->id,
				a->canary->n_workers, a->canary_of);
		if (a->probation_gen)
			fprintf(f, ", on probation for %.1f s more",
				seconds_until(d, a->probation_until_usec));
		if (a->pinned_gen)
			fprintf(f, ", generation %u pinned for rollback", a->pinned_gen);
		fprintf(f, "; %u upgrade%s, %u rolled back, %u restart%s%s\n", a->counters.upgrades,
			a->counters.upgrades == 1 ? "" : "s", a->counters.rollbacks,
			a->counters.restarts, a->counters.restarts == 1 ? "" : "s",
			a->upgrade_running ? "; upgrade in progress" : "");
		if (a->counters.finished_early)
			fprintf(f, "  %u draining generation%s finished early (max-draining %u)\n",
				a->counters.finished_early,
				a->counters.finished_early == 1 ? "" : "s", a->cfg->max_draining);
		if (a->config_stale)
			fputs("  runs its previous configuration: the file's failed to start\n", f);
		if (a->scale)
			fprintf(f, "  scaled to %u worker%s by batonctl, until the next reload\n",
				a->scale, a->scale == 1 ? "" : "s");
		if (a->counters.last_outcome[0]) {
			fputs("  last upgrade: ", f);
			put_text(f, a->counters.last_outcome);
			fputc('\n', f);
		}
		for (size_t k = 0; k < a->n_gens; k++) {
			const struct gen *g = a->gens[k];
			long long conns = app_gen_connections(a, g);
			fprintf(f, "  generation %u: %s, up %.1f s", g->id, gen_role(a, g),
				seconds_since(d, g->started_usec));
			if (g->state == GEN_DRAINING)
				fprintf(f, ", SIGKILL in %.1f s", seconds_until(d, g->timer_usec));
			if (g->state == GEN_READY && g->drain_at_usec)
				fprintf(f, ", drains in %.1f s",
					seconds_until(d, g->drain_at_usec));
			if (conns >= 0)
				fprintf(f, ", %lld connection%s open", conns,
					conns == 1 ? "" : "s");
			if (g->parks)
				fprintf(f, ", %u parked", g->parks);
			char health[400];
			if (app_gen_health(a, g, health, sizeof(health))) {
				fputs(", health ", f);
				put_text(f, health);
			}
			render_cgroup(g, f);
			fputc('\n', f);
			for (unsigned w = 0; w < g->n_workers; w++) {
				const struct worker *wk = g->workers[w];
				fprintf(f, "    worker %u: pid %d, %s", wk->index, (int)wk->pid,
					worker_state_name(wk->state));
				if (wk->pid)
					fprintf(f, ", up %.1f s",
						seconds_since(d, wk->started_usec));
				if (wk->restarts)
					fprintf(f, ", %u restarts", wk->restarts);
				if (a->cfg->mode == SERVE_DISPATCH) {
					struct dispatch_worker_stats st = worker_stats(a, wk);
					fprintf(f, ", delivered %llu, load %llu",
						(unsigned long long)st.delivered,
						(unsigned long long)st.load);
				}
				if (wk->status[0]) {
					fputs(", status: ", f);
					put_text(f, wk->status);
				}
				fputc('\n', f);
			}
		}
	}
}

char *status_render(const struct daemon *d, bool json)
{
	if (json)
		return render_json(d);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	render_text(d, f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

bool status_every_app_serves(const struct daemon *d)
{
	for (size_t i = 0; i < d->n_apps; i++)
		if (!d->apps[i]->serving)
			return false;
	return true;
}
