/* SPDX-License-Identifier: MIT */
/* Metrics: the Prometheus text exposition of batond's state, and a minimal
 * HTTP/1.x server for GET /metrics on batond's own loop. The server never
 * blocks and bounds what a client can make batond hold: METRICS_MAX_CONNS
 * connections (accepting pauses beyond, the kernel backlog holds the rest),
 * METRICS_REQUEST_MAX_BYTES of request each, METRICS_CONN_USEC per
 * connection from accept to close. One request per connection: every answer
 * says Connection: close. */
#include "metrics.h"
#include "app.h"
#include "batond.h"
#include "dispatch.h"
#include "generation.h"
#include "listener.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define METRICS_MAX_CONNS	  16
#define METRICS_REQUEST_MAX_BYTES 8192
#define METRICS_CONN_USEC	  (10 * 1000 * 1000ULL)

/* ---- Rendering ----------------------------------------------------------- */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped, as the format
 * wants. Names in batond.conf cannot hold them; this is for what may come. */
static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void app_sample(FILE *f, const char *name, const struct app *a, unsigned long long v)
{
	fprintf(f, "%s{app=\"", name);
	label_value(f, a->cfg->name);
	fprintf(f, "\"} %llu\n", v);
}

/* The app that dispatches listener @i, and the listener's index in it. */
static const struct app *dispatcher(const struct daemon *d, size_t i, size_t *ret_index)
{
	for (size_t k = 0; k < d->n_apps; k++) {
		const struct app *a = d->apps[k];
		for (size_t j = 0; a->cfg->mode == SERVE_DISPATCH && j < a->cfg->n_listeners; j++)
			if (a->cfg->listener_idx[j] == i) {
				*ret_index = j;
				return a;
			}
	}
	return NULL;
}

enum listener_counter { ACCEPTED, HELD, TIMED_OUT };

static void render_listeners(const struct daemon *d, FILE *f)
{
	static const struct {
		const char *name, *type, *help;
	} families[] = {
	    [ACCEPTED] = {"baton_listener_connections_accepted_total", "counter",
			  "Connections batond accepted on a listener of a dispatch app."},
	    [HELD] = {"baton_listener_connections_held", "gauge",
		      "Accepted connections held for want of a ready worker."},
	    [TIMED_OUT] = {"baton_listener_connections_timed_out_total", "counter",
			   "Held connections closed at hold-timeout."},
	};
	for (size_t c = 0; c < sizeof(families) / sizeof(families[0]); c++) {
		family(f, families[c].name, families[c].type, families[c].help);
		for (size_t i = 0; i < d->cfg->n_listeners; i++) {
			size_t j;
			const struct app *a = dispatcher(d, i, &j);
			if (!a)
				continue;
			struct dispatch_listener_stats st;
			dispatch_listener_stats(a->dispatch, j, &st);
			unsigned long long v = c == ACCEPTED ? st.accepted
					       : c == HELD   ? st.held
							     : st.timed_out;
			fprintf(f, "%s{listener=\"", families[c].name);
			label_value(f, d->cfg->listeners[i].name);
			fputs("\",app=\"", f);
			label_value(f, a->cfg->name);
			fprintf(f, "\"} %llu\n", v);
		}
	}
}

static void render_states(const struct daemon *d, FILE *f)
{
	family(f, "baton_generations", "gauge", "Generations of an app by state.");
	for (size_t i = 0; i < d->n_apps; i++) {
		const struct app *a = d->apps[i];
		for (int s = GEN_STARTING; s <= GEN_GONE; s++) {
			unsigned n = 0;
			for (size_t k = 0; k < a->n_gens; k++)
				n += a->gens[k]->state == (enum gen_state)s;
			fputs("baton_generations{app=\"", f);
			label_value(f, a->cfg->name);
			fprintf(f, "\",state=\"%s\"} %u\n", gen_state_name(s), n);
		}
	}
	family(f, "baton_workers", "gauge", "Workers of an app, of every generation, by state.");
	for (size_t i = 0; i < d->n_apps; i++) {
		const struct app *a = d->apps[i];
		for (int s = WORKER_STARTING; s <= WORKER_EXITED; s++) {
			unsigned n = 0;
			for (size_t k = 0; k < a->n_gens; k++)
				for (unsigned w = 0; w < a->gens[k]->n_workers; w++)
					n += a->gens[k]->workers[w]->state == (enum worker_state)s;
			fputs("baton_workers{app=\"", f);
			label_value(f, a->cfg->name);
			fprintf(f, "\",state=\"%s\"} %u\n", worker_state_name(s), n);
		}
	}
}

static void render_apps(const struct daemon *d, FILE *f)
{
	static const struct {
		const char *name, *type, *help;
	} families[] = {
	    {"baton_app_serving_generation", "gauge",
	     "Id of the generation serving an app, 0 when none serves."},
	    {"baton_app_upgrade_running", "gauge", "1 while an upgrade of the app runs."},
	    {"baton_app_config_current", "gauge",
	     "0 when the app runs its previous configuration: the file's failed to start."},
	    {"baton_app_upgrades_total", "counter", "Upgrades of the app completed."},
	    {"baton_app_rollbacks_total", "counter",
	     "New generations of the app that failed, the previous one serving on."},
	    {"baton_app_worker_restarts_total", "counter",
	     "Workers of the app restarted after they exited outside an upgrade."},
	    {"baton_app_parked_connections_refused_total", "counter",
	     "Live connections the app's workers parked that batond closed instead."},
	    {"baton_app_health_checks_failed_total", "counter",
	     "Rounds of the app's health checks (health-exec, health-url) that failed."},
	};
	for (size_t c = 0; c < sizeof(families) / sizeof(families[0]); c++) {
		family(f, families[c].name, families[c].type, families[c].help);
		for (size_t i = 0; i < d->n_apps; i++) {
			const struct app *a = d->apps[i];
			const unsigned long long values[] = {
			    a->serving ? a->serving->id : 0,
			    a->upgrade_running,
			    !a->config_stale,
			    a->counters.upgrades,
			    a->counters.rollbacks,
			    a->counters.restarts,
			    a->counters.parks_refused,
			    a->counters.health_failures,
			};
			_Static_assert(sizeof(values) / sizeof(values[0]) ==
					   sizeof(families) / sizeof(families[0]),
				       "a value for each family");
			app_sample(f, families[c].name, a, values[c]);
		}
	}
}

/* How long generations took to drain, per app: a histogram in seconds. */
static void render_drains(const struct daemon *d, FILE *f)
{
	static const char name[] = "baton_app_drain_duration_seconds";
	family(f, name, "histogram",
	       "Time a replaced generation of the app took to drain, from its drain to the end "
	       "of its last process.");
	for (size_t i = 0; i < d->n_apps; i++) {
		const struct app *a = d->apps[i];
		const struct app_counters *c = &a->counters;
		unsigned long long cumulative = 0;
		for (size_t k = 0; k < APP_DRAIN_BUCKETS; k++) {
			cumulative += c->drain_buckets[k];
			fprintf(f, "%s_bucket{app=\"", name);
			label_value(f, a->cfg->name);
			fprintf(f, "\",le=\"%g\"} %llu\n", app_drain_bucket_seconds[k], cumulative);
		}
		fprintf(f, "%s_bucket{app=\"", name);
		label_value(f, a->cfg->name);
		fprintf(f, "\",le=\"+Inf\"} %llu\n", c->drains);
		fprintf(f, "%s_sum{app=\"", name);
		label_value(f, a->cfg->name);
		fprintf(f, "\"} %.6f\n", (double)c->drain_usec_sum / 1e6);
		fprintf(f, "%s_count{app=\"", name);
		label_value(f, a->cfg->name);
		fprintf(f, "\"} %llu\n", c->drains);
	}
}

/* Open fds, counted in /proc/self/fd (the directory's own fd left out). */
static long count_open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	long n = 0;
	if (!dir)
		return -1;
	for (struct dirent *e; (e = readdir(dir));)
		n += e->d_name[0] != '.';
	closedir(dir);
	return n - 1;
}

/* The process_* metrics every Prometheus client library exports, from
 * /proc/self: the names dashboards expect. */
static void render_process(FILE *f)
{
	long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
	long fds = count_open_fds();
	struct rlimit rl;
	if (fds >= 0) {
		family(f, "process_open_fds", "gauge", "Open file descriptors of batond.");
		fprintf(f, "process_open_fds %ld\n", fds);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		family(f, "process_max_fds", "gauge", "batond's limit of open file descriptors.");
		fprintf(f, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	unsigned long long vsize_pages, rss_pages;
	FILE *statm = fopen("/proc/self/statm", "re");
	if (statm && fscanf(statm, "%llu %llu", &vsize_pages, &rss_pages) == 2) {
		family(f, "process_virtual_memory_bytes", "gauge",
		       "Virtual memory size of batond in bytes.");
		fprintf(f, "process_virtual_memory_bytes %llu\n",
			vsize_pages * (unsigned long long)page);
		family(f, "process_resident_memory_bytes", "gauge",
		       "Resident memory size of batond in bytes.");
		fprintf(f, "process_resident_memory_bytes %llu\n",
			rss_pages * (unsigned long long)page);
	}
	if (statm)
		fclose(statm);
	/* /proc/self/stat: the command may hold spaces and parentheses; the
	 * fields after it start past the last ')'. utime and stime are fields
	 * 14 and 15, starttime 22 (ticks since boot). */
	char buf[1024];
	unsigned long long utime, stime, start_ticks, boot_time = 0;
	FILE *stat = fopen("/proc/self/stat", "re");
	size_t n = stat ? fread(buf, 1, sizeof(buf) - 1, stat) : 0;
	if (stat)
		fclose(stat);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (p && sscanf(p + 2,
			"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
			"%*d %*d %*d %llu",
			&utime, &stime, &start_ticks) == 3) {
		family(f, "process_cpu_seconds_total", "counter",
		       "User and system CPU time batond spent, in seconds.");
		fprintf(f, "process_cpu_seconds_total %.2f\n",
			(double)(utime + stime) / (double)ticks);
		FILE *sys = fopen("/proc/stat", "re");
		while (sys && fgets(buf, sizeof(buf), sys))
			if (sscanf(buf, "btime %llu", &boot_time) == 1)
				break;
		if (sys)
			fclose(sys);
		if (boot_time) {
			family(f, "process_start_time_seconds", "gauge",
			       "Start time of batond since the Unix epoch, in seconds.");
			fprintf(f, "process_start_time_seconds %.2f\n",
				(double)boot_time + (double)start_ticks / (double)ticks);
		}
	}
}

char *metrics_render(const struct daemon *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	family(f, "baton_build_info", "gauge", "Version of batond, in the label; always 1.");
	fprintf(f, "baton_build_info{version=\"%s\"} 1\n", BATON_VERSION);
	render_apps(d, f);
	render_drains(d, f);
	render_states(d, f);
	render_listeners(d, f);
	render_process(f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- Serving GET /metrics ------------------------------------------------ */

struct metrics_conn {
	struct metrics *m;
	int fd;
	sd_event_source *io;
	sd_event_source *timer; /* METRICS_CONN_USEC from accept */
	size_t request_len;
	char *answer; /* once the request is read */
	size_t answer_len, sent;
	bool lingering; /* answer sent, write side shut: reading to EOF before close */
	struct metrics_conn *prev, *next;
	char request[METRICS_REQUEST_MAX_BYTES];
};

struct metrics {
	struct daemon *d;
	int fd;
	sd_event_source *src;
	sd_event_source *resume_timer; /* accepting again after running out of fds */
	unsigned n_conns;
	struct metrics_conn *conns;
};

static void conn_close(struct metrics_conn *c)
{
	struct metrics *m = c->m;
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timer);
	close(c->fd);
	free(c->answer);
	if (c->prev)
		c->prev->next = c->next;
	else
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	/* Accepting pauses while every slot is taken: one is free again. */
	if (m->n_conns-- == METRICS_MAX_CONNS)
		sd_event_source_set_enabled(m->src, SD_EVENT_ON);
	free(c);
}

static int on_conn_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct metrics_conn *c = userdata;
	log_debug("metrics: closing a connection after %llu s", METRICS_CONN_USEC / 1000000);
	conn_close(c);
	return 0;
}

/* Sends what the socket takes of the answer; once all of it is out, shuts the
 * write side and reads what the client still sends until it closes: closing
 * with unread data would reset the connection, and the answer with it.
 * Returns false when the connection is closed. */
static bool conn_flush(struct metrics_conn *c)
{
	while (c->sent < c->answer_len) {
		ssize_t n = send(c->fd, c->answer + c->sent, c->answer_len - c->sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			sd_event_source_set_io_events(c->io, EPOLLOUT);
			return true;
		}
		if (n < 0) {
			conn_close(c);
			return false;
		}
		c->sent += (size_t)n;
	}
	shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	sd_event_source_set_io_events(c->io, EPOLLIN);
	return true;
}

/* Queues the answer: @status with its reason, then @body (not sent for HEAD). */
static void conn_answer(struct metrics_conn *c, const char *status, const char *extra_headers,
			const char *content_type, const char *body, bool head)
{
	size_t body_len = strlen(body);
	int n = asprintf(&c->answer,
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n%s",
			 status, content_type, body_len, extra_headers, head ? "" : body);
	if (n < 0) {
		c->answer = NULL;
		conn_close(c);
		return;
	}
	c->answer_len = (size_t)n;
	conn_flush(c);
}

static void conn_error(struct metrics_conn *c, const char *status, const char *extra_headers)
{
	char body[128];
	snprintf(body, sizeof(body), "%s\n", status);
	conn_answer(c, status, extra_headers, "text/plain; charset=utf-8", body, false);
}

static bool is_token(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return len > 0;
}

/* The request line of a complete request head: GET or HEAD of /metrics (any
 * query ignored) gets the metrics; anything else an error. */
static void conn_handle(struct metrics_conn *c)
{
	char *line = c->request;
	size_t line_len = strcspn(line, "\r\n");
	line[line_len] = 0;
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp2 || !is_token(line, (size_t)(sp1 - line)) || sp1[1] != '/' ||
	    (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)) {
		conn_error(c, "400 Bad Request", "");
		return;
	}
	*sp1 = *sp2 = 0;
	const char *method = line, *target = sp1 + 1;
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		conn_error(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
		return;
	}
	if (strncmp(target, "/metrics", 8) != 0 || (target[8] && target[8] != '?')) {
		conn_error(c, "404 Not Found", "");
		return;
	}
	char *body = metrics_render(c->m->d);
	if (!body) {
		conn_error(c, "503 Service Unavailable", "");
		return;
	}
	conn_answer(c, "200 OK", "", "text/plain; version=0.0.4; charset=utf-8", body, head);
	free(body);
}

/* The end of the request head, if it has come: a blank line. */
static bool request_complete(const struct metrics_conn *c)
{
	return memmem(c->request, c->request_len, "\r\n\r\n", 4) ||
	       memmem(c->request, c->request_len, "\n\n", 2);
}

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct metrics_conn *c = userdata;
	if (c->answer && !c->lingering) {
		conn_flush(c);
		return 0;
	}
	for (;;) {
		char discard[4096];
		/* One byte kept for the NUL conn_handle puts after the line. */
		size_t room = sizeof(c->request) - 1 - c->request_len;
		char *into = c->lingering ? discard : c->request + c->request_len;
		ssize_t n = recv(fd, into, c->lingering ? sizeof(discard) : room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) { /* the client closed, or reset */
			conn_close(c);
			return 0;
		}
		if (c->lingering)
			continue;
		c->request_len += (size_t)n;
		c->request[c->request_len] = 0;
		if (request_complete(c)) {
			conn_handle(c);
			return 0;
		}
		if (c->request_len == sizeof(c->request) - 1) {
			conn_error(c, "400 Bad Request", "");
			return 0;
		}
	}
}

static int on_resume(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct metrics *m = userdata;
	if (m->n_conns < METRICS_MAX_CONNS)
		sd_event_source_set_enabled(m->src, SD_EVENT_ON);
	return 0;
}

/* Out of fds, the pending connection would keep the socket readable and
 * batond spinning: stop accepting for a second. */
static void pause_accept(struct metrics *m)
{
	log_warn("metrics: accept: %s; pausing for 1 s", strerror(errno));
	sd_event_source_set_enabled(m->src, SD_EVENT_OFF);
	if (!m->resume_timer &&
	    sd_event_add_time_relative(m->d->event, &m->resume_timer, CLOCK_MONOTONIC, 1000 * 1000,
				       10000, on_resume, m) < 0) {
		sd_event_source_set_enabled(m->src, SD_EVENT_ON);
		return;
	}
	sd_event_source_set_time_relative(m->resume_timer, 1000 * 1000);
	sd_event_source_set_enabled(m->resume_timer, SD_EVENT_ONESHOT);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct metrics *m = userdata;
	for (int budget = 16; budget > 0 && m->n_conns < METRICS_MAX_CONNS; budget--) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0 && (errno == EMFILE || errno == ENFILE)) {
			pause_accept(m);
			return 0;
		}
		if (cfd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("metrics: accept: %s", strerror(errno));
			return 0;
		}
		struct metrics_conn *c = calloc(1, sizeof(*c));
		if (!c || sd_event_add_io(m->d->event, &c->io, cfd, EPOLLIN, on_conn, c) < 0 ||
		    sd_event_add_time_relative(m->d->event, &c->timer, CLOCK_MONOTONIC,
					       METRICS_CONN_USEC, 100 * 1000, on_conn_timeout,
					       c) < 0) {
			log_warn("metrics: cannot take a connection: out of resources");
			if (c)
				sd_event_source_disable_unref(c->io);
			free(c);
			close(cfd);
			continue;
		}
		c->m = m;
		c->fd = cfd;
		c->next = m->conns;
		if (m->conns)
			m->conns->prev = c;
		m->conns = c;
		m->n_conns++;
	}
	if (m->n_conns == METRICS_MAX_CONNS)
		sd_event_source_set_enabled(m->src, SD_EVENT_OFF);
	return 0;
}

int metrics_open(struct daemon *d, int fd, struct metrics **ret)
{
	const struct config *cfg = d->cfg;
	*ret = NULL;
	if (!cfg->metrics_address)
		return 0;
	struct listener_cfg lc = {
	    .name = "metrics",
	    .line = cfg->metrics_line,
	    .address = cfg->metrics_address,
	    .addr = cfg->metrics_addr,
	    .backlog = 64,
	};
	char err[256];
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m) {
		log_err("metrics: out of memory");
		return -1;
	}
	m->d = d;
	m->fd = fd;
	if (fd < 0 && listener_open(&lc, &m->fd, err, sizeof(err)) < 0) {
		log_err("%s:%d: metrics: address \"%s\": %s", cfg->path, cfg->metrics_line,
			cfg->metrics_address, err);
		free(m);
		return -1;
	}
	int r = sd_event_add_io(d->event, &m->src, m->fd, EPOLLIN, on_accept, m);
	if (r < 0) {
		log_err("metrics: %s", strerror(-r));
		close(m->fd);
		free(m);
		return -1;
	}
	log_info("metrics: GET /metrics on %s", cfg->metrics_address);
	*ret = m;
	return 0;
}

int metrics_fd(const struct metrics *m)
{
	return m ? m->fd : -1;
}

void metrics_close(struct metrics *m)
{
	if (!m)
		return;
	while (m->conns)
		conn_close(m->conns);
	sd_event_source_disable_unref(m->src);
	sd_event_source_disable_unref(m->resume_timer);
	close(m->fd);
	free(m);
}
