/* SPDX-License-Identifier: MIT */
/* Health checks of one generation. A round is one health-exec run (told the
 * generation and its workers' pids), or one health-url request to each ready
 * worker: batond connects to a private loopback listener of its own, and
 * hands the accepted end to that worker over its channel as a connection of
 * the app's listener, so that the probe reaches exactly that generation,
 * which a request to the shared listener could not. Rounds follow each other
 * health-interval apart until the owner frees the check or health-failures
 * rounds in a row failed. */
#include "health.h"
#include "channel.h"
#include "generation.h"
#include "log.h"
#include "proto.h"
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define REASON_MAX  240
#define OUTPUT_KEEP 200 /* of a health-exec's output, for the reason */

/* A health-exec run: its process, its output, and the check it belongs to. */
struct probe_proc {
	struct health *h;
	pid_t pid;
	sd_event_source *child_src;
	int out_fd;
	sd_event_source *out_src;
	char out[OUTPUT_KEEP + 1];
	size_t out_len;
	bool timed_out;
};

/* A health-url request to one worker. */
struct http_probe {
	struct health *h;
	unsigned worker;
	int listen_fd; /* batond's private listener, until it accepted */
	int fd;	       /* batond's end, the client */
	sd_event_source *src;
	char buf[256];
	size_t len;
	bool done, ok;
	char reason[REASON_MAX];
};

struct health {
	sd_event *event;
	struct health_target t;
	const struct health_ops *ops;
	void *userdata;
	enum health_state state;
	unsigned rounds, failed_in_row;
	char reason[REASON_MAX];
	sd_event_source *timer; /* the next round, or this round's timeout */
	struct probe_proc *proc;
	struct http_probe *http;
	unsigned n_http;
};

static uint64_t now_usec(const struct health *h)
{
	uint64_t now = 0;
	sd_event_now(h->event, CLOCK_MONOTONIC, &now);
	return now;
}

static int arm(struct health *h, uint64_t delay_usec, sd_event_time_handler_t fn)
{
	h->timer = sd_event_source_disable_unref(h->timer);
	return sd_event_add_time(h->event, &h->timer, CLOCK_MONOTONIC, now_usec(h) + delay_usec,
				 1000, fn, h);
}

static void round_start(struct health *h);

static int on_next_round(sd_event_source *s, uint64_t usec, void *userdata)
{
	round_start(userdata);
	return 0;
}

static void http_close(struct http_probe *p)
{
	p->src = sd_event_source_disable_unref(p->src);
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	if (p->fd >= 0)
		close(p->fd);
	p->listen_fd = p->fd = -1;
}

/* Frees @p and its output; its child source is the caller's. */
static void proc_free(struct probe_proc *p)
{
	sd_event_source_disable_unref(p->out_src);
	if (p->out_fd >= 0)
		close(p->out_fd);
	free(p);
}

/* A health-exec run that nobody waits for any more (the check was freed):
 * killed with its process group. Its child source goes to the event loop
 * (floating), which reaps it when it exits, or at the loop's end. */
static void proc_orphan(struct probe_proc *p)
{
	kill(-p->pid, SIGKILL);
	sd_event_source_set_userdata(p->child_src, NULL);
	if (sd_event_source_set_child_process_own(p->child_src, 1) < 0 ||
	    sd_event_source_set_floating(p->child_src, 1) < 0)
		log_warn("health-exec (pid %d): killed, but may stay a zombie", (int)p->pid);
	sd_event_source_unref(p->child_src);
	proc_free(p);
}

static void proc_read(struct probe_proc *p)
{
	char buf[4096];
	ssize_t n;
	while (p->out_fd >= 0 && (n = read(p->out_fd, buf, sizeof(buf))) > 0) {
		size_t keep =
		    (size_t)n < OUTPUT_KEEP - p->out_len ? (size_t)n : OUTPUT_KEEP - p->out_len;
		memcpy(p->out + p->out_len, buf, keep);
		p->out_len += keep;
	}
	p->out[p->out_len] = '\0';
}

/* The round is over: every probe ended (or the timeout ended them). */
static void round_end(struct health *h, bool ok, const char *reason)
{
	for (unsigned i = 0; i < h->n_http; i++)
		http_close(&h->http[i]);
	free(h->http);
	h->http = NULL;
	h->n_http = 0;
	h->rounds++;
	if (ok) {
		h->failed_in_row = 0;
		h->state = HEALTH_PASSING;
	} else {
		h->failed_in_row++;
		snprintf(h->reason, sizeof(h->reason), "%s", reason);
		h->state =
		    h->failed_in_row >= h->t.cfg->health_failures ? HEALTH_FAILED : HEALTH_FAILING;
		log_warn("%s: generation %u: health check failed (%u of %u in a row): %s",
			 h->t.cfg->name, h->t.g->id, h->failed_in_row, h->t.cfg->health_failures,
			 reason);
	}
	h->timer = sd_event_source_disable_unref(h->timer);
	if (h->state != HEALTH_FAILED && arm(h, h->t.cfg->health_interval_usec, on_next_round) < 0)
		log_err("%s: generation %u: cannot arm the next health check", h->t.cfg->name,
			h->t.g->id);
	h->ops->changed(h->userdata, ok);
}

/* The first line of @text, control characters as spaces, for a reason. */
static void first_line(char *text)
{
	text[strcspn(text, "\n")] = '\0';
	for (char *c = text; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
}

static int on_proc_exit(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct probe_proc *p = userdata;
	if (!p)
		return 0; /* orphaned (proc_orphan): sd-event reaps it */
	struct health *h = p->h;
	proc_read(p);
	first_line(p->out);
	char reason[REASON_MAX];
	bool ok = !p->timed_out && si->si_code == CLD_EXITED && si->si_status == 0;
	if (p->timed_out)
		snprintf(reason, sizeof(reason), "health-exec %s timed out after %.3g s",
			 h->t.cfg->health_argv[0], (double)h->t.cfg->health_timeout_usec / 1e6);
	else if (si->si_code == CLD_EXITED)
		snprintf(reason, sizeof(reason), "health-exec %s exited with status %d%s%s",
			 h->t.cfg->health_argv[0], si->si_status, *p->out ? ": " : "", p->out);
	else
		snprintf(reason, sizeof(reason), "health-exec %s was killed by signal %s%s%s",
			 h->t.cfg->health_argv[0], sigabbrev_np(si->si_status) ?: "?",
			 *p->out ? ": " : "", p->out);
	/* Its process group may live on (a daemon it started): not ours to
	 * keep. It is still a zombie here (sd-event reaps it after this), so
	 * its group's id is not anybody else's yet. */
	kill(-p->pid, SIGKILL);
	sd_event_source_unref(p->child_src);
	proc_free(p);
	h->proc = NULL;
	round_end(h, ok, reason);
	return 0;
}

static int on_proc_output(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct probe_proc *p = userdata;
	proc_read(p);
	if (revents & (EPOLLHUP | EPOLLERR))
		p->out_src = sd_event_source_disable_unref(p->out_src);
	return 0;
}

static int on_round_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct health *h = userdata;
	if (h->proc) {
		/* Killed now; its exit ends the round. */
		h->proc->timed_out = true;
		kill(-h->proc->pid, SIGKILL);
		return 0;
	}
	char reason[REASON_MAX] = "";
	bool ok = true;
	for (unsigned i = 0; i < h->n_http; i++) {
		struct http_probe *p = &h->http[i];
		if (!p->done) {
			p->done = true;
			snprintf(p->reason, sizeof(p->reason),
				 "worker %u: health-url %s: no answer within %.3g s", p->worker,
				 h->t.cfg->health_url, (double)h->t.cfg->health_timeout_usec / 1e6);
		}
		if (ok && !p->ok) {
			ok = false;
			snprintf(reason, sizeof(reason), "%s", p->reason);
		}
	}
	round_end(h, ok, reason);
	return 0;
}

static void exec_round(struct health *h)
{
	const struct app_cfg *cfg = h->t.cfg;
	struct gen *g = h->t.g;
	size_t n_env = 0;
	while (cfg->environment && cfg->environment[n_env])
		n_env++;
	char **envp = calloc(n_env + 5, sizeof(char *));
	char *pids = calloc(g->n_workers + 1, 12);
	char *app = NULL, *gen = NULL, *worker_pids = NULL;
	if (!envp || !pids || asprintf(&app, "BATON_APP=%s", cfg->name) < 0 ||
	    asprintf(&gen, "BATON_GENERATION=%u", g->id) < 0) {
		app = gen = NULL;
		goto fail_oom;
	}
	for (unsigned i = 0; i < g->n_workers; i++)
		if (g->workers[i]->pid > 0)
			sprintf(pids + strlen(pids), "%s%d", *pids ? " " : "",
				(int)g->workers[i]->pid);
	if (asprintf(&worker_pids, "BATON_WORKER_PIDS=%s", pids) < 0) {
		worker_pids = NULL;
		goto fail_oom;
	}
	/* As a service's ExecStart gets it: a PATH and what the app sets. */
	size_t k = 0;
	envp[k++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (size_t i = 0; i < n_env; i++)
		envp[k++] = cfg->environment[i];
	envp[k++] = app;
	envp[k++] = gen;
	envp[k++] = worker_pids;
	struct spawn_creds creds;
	gen_spawn_creds(cfg, &creds);
	struct probe_proc *p = calloc(1, sizeof(*p));
	int r = p ? spawn_probe(cfg->health_argv, envp, &creds, &p->pid, &p->out_fd) : -ENOMEM;
	if (r == 0) {
		p->h = h;
		h->proc = p;
		r = sd_event_add_child(h->event, &p->child_src, p->pid, WEXITED, on_proc_exit, p);
		if (r < 0) {
			/* Without a child source it could not be reaped: kill it, and
			 * reap it if it is gone already (it may stay a zombie). */
			kill(-p->pid, SIGKILL);
			waitpid(p->pid, NULL, WNOHANG);
			h->proc = NULL;
			sd_event_source_unref(p->child_src);
			proc_free(p);
			p = NULL;
		} else if (sd_event_add_io(h->event, &p->out_src, p->out_fd, EPOLLIN,
					   on_proc_output, p) < 0) {
			/* Its output unread: it would block once the pipe is full. */
			close(p->out_fd);
			p->out_fd = -1;
		}
	} else {
		free(p);
	}
	free(envp);
	free(pids);
	free(app);
	free(gen);
	free(worker_pids);
	if (r < 0) {
		char reason[REASON_MAX];
		snprintf(reason, sizeof(reason), "health-exec %s: cannot start it: %s",
			 cfg->health_argv[0], strerror(-r));
		round_end(h, false, reason);
	}
	return;
fail_oom:
	free(envp);
	free(pids);
	free(app);
	free(gen);
	round_end(h, false, "out of memory");
}

/* The round ends once every probe did. */
static void http_round_check(struct health *h)
{
	for (unsigned i = 0; i < h->n_http; i++)
		if (!h->http[i].done)
			return;
	for (unsigned i = 0; i < h->n_http; i++)
		if (!h->http[i].ok) {
			char reason[REASON_MAX];
			snprintf(reason, sizeof(reason), "%s", h->http[i].reason);
			round_end(h, false, reason);
			return;
		}
	round_end(h, true, "");
}

static void http_finish(struct http_probe *p, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void http_finish(struct http_probe *p, bool ok, const char *fmt, ...)
{
	struct health *h = p->h;
	p->done = true;
	p->ok = ok;
	int n = snprintf(p->reason, sizeof(p->reason), "worker %u: health-url %s: ", p->worker,
			 h->t.cfg->health_url);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->reason + n, sizeof(p->reason) - (size_t)n, fmt, ap);
	va_end(ap);
	http_close(p);
	http_round_check(h);
}

/* The answer: a status line "HTTP/1.x NNN ...", 200-399 passes; the rest is
 * read and dropped until the worker closes (Connection: close), so that it
 * never writes to a closed socket. */
static int on_http_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct http_probe *p = userdata;
	char drop[4096];
	ssize_t n;
	for (;;) {
		bool have_line = memchr(p->buf, '\n', p->len) != NULL;
		char *into = have_line ? drop : p->buf + p->len;
		size_t room = have_line ? sizeof(drop) : sizeof(p->buf) - 1 - p->len;
		n = room ? read(fd, into, room) : 0;
		if (n <= 0)
			break;
		if (!have_line)
			p->len += (size_t)n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	int err = n < 0 ? errno : 0;
	p->buf[p->len] = '\0';
	int major, minor, status = 0;
	char text[64] = "";
	if (sscanf(p->buf, "HTTP/%d.%d %3d %63[^\r\n]", &major, &minor, &status, text) < 3 ||
	    !memchr(p->buf, '\n', p->len)) {
		first_line(p->buf);
		if (p->len == 0)
			http_finish(p, false, "%s",
				    err ? strerror(err) : "closed without an answer");
		else
			http_finish(p, false, "not an HTTP status line: \"%.60s\"", p->buf);
	} else if (status >= 200 && status < 400) {
		http_finish(p, true, "%d", status);
	} else {
		http_finish(p, false, "HTTP %d%s%s", status, *text ? " " : "", text);
	}
	return 0;
}

/* Batond's private listener took the connection: its other end goes to the
 * worker as a connection of the app's listener, then the request. */
static int http_deliver(struct http_probe *p)
{
	struct health *h = p->h;
	int conn = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return -errno;
	p->src = sd_event_source_disable_unref(p->src);
	close(p->listen_fd);
	p->listen_fd = -1;
	struct channel *ch = gen_ready_channel(h->t.g, p->worker);
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	uint8_t payload[512];
	size_t off = 0;
	int r = !ch							      ? -ESRCH
		: getsockname(p->fd, (struct sockaddr *)&peer, &peer_len) < 0 ? -errno
									      : 0;
	if (r == 0) {
		struct proto_conn rec = {
		    .name = h->t.listener_name,
		    .name_len = (uint8_t)strlen(h->t.listener_name),
		    .tag = h->t.listener_tag,
		    .tag_len = (uint8_t)(h->t.listener_tag ? strlen(h->t.listener_tag) : 0),
		    .addr = &peer,
		    .addr_len = (uint16_t)peer_len,
		};
		r = proto_conn_put(payload, sizeof(payload), &off, &rec);
	}
	if (r == 0)
		r = channel_send_conns(ch, payload, off, &conn, 1);
	close(conn); /* sent: the worker has its copy */
	if (r < 0)
		return r == -EAGAIN ? -ENOBUFS : r;
	h->ops->sent(h->userdata, h->t.g->id, p->worker);
	char req[512];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: batond-health\r\n"
			 "Connection: close\r\n\r\n",
			 h->t.cfg->health_path, h->t.cfg->health_host);
	if (n < 0 || (size_t)n >= sizeof(req))
		return -ENAMETOOLONG;
	/* An established socket's empty buffer takes it whole. */
	if (write(p->fd, req, (size_t)n) != n)
		return -errno;
	return sd_event_add_io(h->event, &p->src, p->fd, EPOLLIN, on_http_readable, p);
}

static void http_fail(struct http_probe *p, int r)
{
	http_finish(p, false, "%s",
		    r == -ENOBUFS ? "its channel is full"
		    : r == -ESRCH ? "the worker is not ready any more"
				  : strerror(-r));
}

static int on_http_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct http_probe *p = userdata;
	int r = http_deliver(p);
	if (r < 0 && r != -EAGAIN)
		http_fail(p, r);
	return 0;
}

/* batond's end connects to a private loopback listener of its own. Loopback
 * usually completes the handshake inside connect(); when the kernel defers
 * it (softirqs under load), the listener says when. */
static int http_probe_start(struct http_probe *p)
{
	struct health *h = p->h;
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (p->listen_fd < 0 || p->fd < 0 ||
	    bind(p->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(p->listen_fd, 1) < 0 ||
	    getsockname(p->listen_fd, (struct sockaddr *)&addr, &len) < 0)
		return -errno;
	if (connect(p->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS)
		return -errno;
	int r = http_deliver(p);
	if (r == -EAGAIN && p->listen_fd >= 0)
		r = sd_event_add_io(h->event, &p->src, p->listen_fd, EPOLLIN, on_http_accept, p);
	return r;
}

static void http_round(struct health *h)
{
	struct gen *g = h->t.g;
	h->http = calloc(g->n_workers ? g->n_workers : 1, sizeof(*h->http));
	if (!h->http) {
		round_end(h, false, "out of memory");
		return;
	}
	for (unsigned i = 0; i < g->n_workers; i++)
		if (gen_ready_channel(g, i))
			h->http[h->n_http++] = (struct http_probe){
			    .h = h, .worker = i, .listen_fd = -1, .fd = -1, .done = false};
	if (h->n_http == 0) {
		char reason[REASON_MAX];
		snprintf(reason, sizeof(reason), "no worker of generation %u is ready", g->id);
		round_end(h, false, reason);
		return;
	}
	/* All started before any may end the round (one that fails at once
	 * ends it only with the last). */
	unsigned n = h->n_http;
	int err[n];
	for (unsigned i = 0; i < n; i++)
		err[i] = http_probe_start(&h->http[i]);
	for (unsigned i = 0; i < n && h->http; i++)
		if (err[i] < 0 && !h->http[i].done)
			http_fail(&h->http[i], err[i]);
}

static void round_start(struct health *h)
{
	if (arm(h, h->t.cfg->health_timeout_usec, on_round_timeout) < 0) {
		round_end(h, false, "cannot arm the health check's timeout");
		return;
	}
	if (h->t.cfg->health_argv)
		exec_round(h);
	else
		http_round(h);
}

int health_start(sd_event *event, const struct health_target *t, const struct health_ops *ops,
		 void *userdata, struct health **ret)
{
	struct health *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	*h = (struct health){.event = event, .t = *t, .ops = ops, .userdata = userdata};
	round_start(h);
	*ret = h;
	return 0;
}

void health_free(struct health *h)
{
	if (!h)
		return;
	h->timer = sd_event_source_disable_unref(h->timer);
	for (unsigned i = 0; i < h->n_http; i++)
		http_close(&h->http[i]);
	free(h->http);
	if (h->proc)
		proc_orphan(h->proc);
	free(h);
}

struct gen *health_gen(const struct health *h)
{
	return h->t.g;
}

enum health_state health_state(const struct health *h)
{
	return h->state;
}

const char *health_reason(const struct health *h)
{
	return h->reason;
}

unsigned health_rounds(const struct health *h)
{
	return h->rounds;
}

unsigned health_failed_in_row(const struct health *h)
{
	return h->failed_in_row;
}
