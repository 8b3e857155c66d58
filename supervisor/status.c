/* Status rendering. Reads batond's state; changes nothing. */
#include "status.h"
#include "app.h"
#include "batond.h"
#include "dispatch.h"
#include "generation.h"

#include <stdio.h>
#include <stdlib.h>
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

/* Writes text that came from outside batond (a worker's STATUS=, cut to a fixed
 * field by generation.c) as valid UTF-8: a character the field's end cut short
 * is left out, any other byte that is not UTF-8 becomes U+FFFD, and control
 * characters are escaped (\uXXXX in JSON, \xHH in text, so that a STATUS= cannot
 * drive the operator's terminal). */
static void put_text(FILE *f, const char *text, bool json)
{
	const unsigned char *s = (const unsigned char *)(text ? text : "");
	while (*s) {
		int n = utf8_char_len(s);
		if (n < 0)
			break;
		if (n == 0) {
			fputs("\xef\xbf\xbd", f);
			s++;
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(f, json ? "\\u%04x" : "\\x%02x", *s);
			s++;
		} else if (json && (*s == '"' || *s == '\\')) {
			fprintf(f, "\\%c", *s);
			s++;
		} else {
			fwrite(s, 1, (size_t)n, f);
			s += n;
		}
	}
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	put_text(f, s, true);
	fputc('"', f);
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
	dispatch_worker_stats(a->dispatch, w->gen->id, w->index, &st);
	return st;
}

static double seconds_since(const struct daemon *d, uint64_t usec)
{
	return usec ? (double)(daemon_now_usec(d) - usec) / 1e6 : 0;
}

static void render_json(const struct daemon *d, FILE *f)
{
	fprintf(f, "{\"version\":\"%s\",\"pid\":%d,\"uptime_s\":%.3f,\"listeners\":[",
		BATON_VERSION, (int)getpid(), seconds_since(d, d->started_usec));
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		const struct listener_rt *l = &d->listeners[i];
		fprintf(f, "%s{\"name\":", i ? "," : "");
		json_string(f, l->cfg->name);
		fprintf(f, ",\"address\":");
		json_string(f, l->cfg->address);
		fprintf(f, ",\"fd\":%d,\"from_systemd\":%s", l->fd, l->adopted ? "true" : "false");
		struct dispatch_listener_stats st;
		if (dispatch_stats(d, i, &st))
			fprintf(f, ",\"accepted\":%llu,\"held\":%u,\"timed_out\":%llu",
				(unsigned long long)st.accepted, st.held,
				(unsigned long long)st.timed_out);
		fputc('}', f);
	}
	fprintf(f, "],\"apps\":[");
	for (size_t i = 0; i < d->n_apps; i++) {
		const struct app *a = d->apps[i];
		fprintf(f, "%s{\"name\":", i ? "," : "");
		json_string(f, a->cfg->name);
		fprintf(f,
			",\"serving\":%u,\"upgrades\":%u,\"rollbacks\":%u,\"restarts\":%u,"
			"\"parks_refused\":%u,\"config_current\":%s,\"scaled_to\":%u,"
			"\"upgrade_running\":%s,\"last_outcome\":",
			a->serving ? a->serving->id : 0, a->counters.upgrades,
			a->counters.rollbacks, a->counters.restarts, a->counters.parks_refused,
			a->config_stale ? "false" : "true", a->scale,
			a->upgrade_running ? "true" : "false");
		json_string(f, a->counters.last_outcome);
		fprintf(f, ",\"generations\":[");
		for (size_t k = 0; k < a->n_gens; k++) {
			const struct gen *g = a->gens[k];
			fprintf(f, "%s{\"id\":%u,\"state\":\"%s\",\"uptime_s\":%.3f,\"workers\":[",
				k ? "," : "", g->id, gen_state_name(g->state),
				seconds_since(d, g->started_usec));
			for (unsigned w = 0; w < g->n_workers; w++) {
				const struct worker *wk = g->workers[w];
				fprintf(f,
					"%s{\"index\":%u,\"pid\":%d,\"state\":\"%s\","
					"\"uptime_s\":%.3f,\"restarts\":%u,\"status\":",
					w ? "," : "", wk->index, (int)wk->pid,
					worker_state_name(wk->state),
					wk->pid ? seconds_since(d, wk->started_usec) : 0,
					wk->restarts);
				json_string(f, wk->status);
				struct dispatch_worker_stats st = worker_stats(a, wk);
				fprintf(f, ",\"delivered\":%llu,\"load\":%llu",
					(unsigned long long)st.delivered,
					(unsigned long long)st.load);
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fprintf(f, "]}");
	}
	fprintf(f, "]}\n");
}

static void render_text(const struct daemon *d, FILE *f)
{
	fprintf(f, "batond %s, pid %d, up %.1f s\n", BATON_VERSION, (int)getpid(),
		seconds_since(d, d->started_usec));
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		const struct listener_rt *l = &d->listeners[i];
		struct dispatch_listener_stats st;
		fprintf(f, "listener %s: ", l->cfg->name);
		put_text(f, l->cfg->address, false);
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
		fprintf(f, "; %u upgrade%s, %u rolled back, %u restart%s%s\n", a->counters.upgrades,
			a->counters.upgrades == 1 ? "" : "s", a->counters.rollbacks,
			a->counters.restarts, a->counters.restarts == 1 ? "" : "s",
			a->upgrade_running ? "; upgrade in progress" : "");
		if (a->config_stale)
			fputs("  runs its previous configuration: the file's failed to start\n", f);
		if (a->scale)
			fprintf(f, "  scaled to %u worker%s by batonctl, until the next reload\n",
				a->scale, a->scale == 1 ? "" : "s");
		if (a->counters.last_outcome[0]) {
			fputs("  last upgrade: ", f);
			put_text(f, a->counters.last_outcome, false);
			fputc('\n', f);
		}
		for (size_t k = 0; k < a->n_gens; k++) {
			const struct gen *g = a->gens[k];
			fprintf(f, "  generation %u: %s, up %.1f s\n", g->id,
				gen_state_name(g->state), seconds_since(d, g->started_usec));
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
					put_text(f, wk->status, false);
				}
				fputc('\n', f);
			}
		}
	}
}

char *status_render(const struct daemon *d, bool json)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	if (json)
		render_json(d, f);
	else
		render_text(d, f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
