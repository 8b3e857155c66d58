/* SPDX-License-Identifier: MIT */
/* Control socket. A request may be answered later (upgrade, stop): the answer
 * is tracked by a ctl_req that outlives its connection if the client goes
 * away, in which case the answer is simply not sent. Answers queue on their
 * connection and leave in frames as fast as the client reads: batond never
 * waits for a client, and a client that stops reading is dropped. */
#include "control.h"
#include "app.h"
#include "batond.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "reexec.h"
#include "reload.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTL_MAX_CONNS 128
/* A client that takes none of its answer for this long is dropped: what batond
 * holds for slow clients is at most CTL_MAX_CONNS answers, each of at most
 * PROTO_REPLY_MAX_BYTES, for at most this long after their last progress. */
#define CTL_STALL_USEC (10 * 1000 * 1000ULL)

struct ctl_conn;

struct ctl_req {
	struct ctl_conn *conn; /* NULL once the client is gone */
	uint32_t id;
	unsigned pending; /* app outcomes still to come */
	int code;
	char *text; /* accumulated lines */
	size_t text_len;
	bool stop;	      /* answered when batond has stopped */
	bool reexec;	      /* answered by the new image, or on failure (reexec.c) */
	bool frames;	      /* the client reassembles frames (CTL_FRAMES) */
	bool wait_drain;      /* upgrades answer once the old generations are gone */
	struct ctl_req *next; /* in conn->reqs */
};

/* An answer on its way out: MSG_HELLO, or MSG_CTL_REPLY in frames. */
struct ctl_out {
	uint8_t type;
	uint32_t id;
	int32_t code;
	size_t text_len;
	size_t sent; /* text bytes in frames sent */
	struct ctl_out *next;
	char text[];
};

struct ctl_conn {
	struct control *ctl;
	int fd;
	uid_t uid;	/* the peer's, at connect (SO_PEERCRED) */
	bool read_only; /* admitted by read-group only: status and metrics */
	sd_event_source *src;
	sd_event_source *stall_timer; /* armed while answers wait for the client */
	bool hello;
	bool broken; /* cannot answer any more: closed at the next event */
	unsigned errors;
	struct ctl_req *reqs;
	struct ctl_out *out, **out_tail; /* in order; reading stops while any wait */
	struct ctl_conn *prev, *next;
};

struct control {
	struct daemon *d;
	int fd;
	int reserve_fd; /* /dev/null, given up to answer a client when out of fds */
	sd_event_source *src;
	sd_event_source *resume_timer; /* listening again after running out of fds */
	char *path;
	/* Who may do what (set_groups): root and batond's uid everything, members
	 * of group everything, members of read_group what only reads. */
	gid_t group, read_group;
	bool has_group, has_read_group;
	char *group_name, *read_group_name;
	unsigned n_conns;
	struct ctl_conn *conns;
};

static void out_drop(struct ctl_conn *c)
{
	while (c->out) {
		struct ctl_out *o = c->out;
		c->out = o->next;
		free(o);
	}
	c->out_tail = &c->out;
}

static void conn_close(struct ctl_conn *c)
{
	for (struct ctl_req *r = c->reqs, *next; r; r = next) {
		next = r->next;
		r->conn = NULL;
		if (r->stop) /* nobody else holds a stop request */
			free(r);
	}
	out_drop(c);
	sd_event_source_disable_unref(c->stall_timer);
	sd_event_source_disable_unref(c->src);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->ctl->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->ctl->n_conns--;
	free(c);
}

static int on_stall(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct ctl_conn *c = userdata;
	size_t left = 0;
	for (struct ctl_out *o = c->out; o; o = o->next)
		left += o->text_len - o->sent;
	log_warn("control: dropping a client that took nothing of its answer for %llu s "
		 "(%zu bytes left)",
		 CTL_STALL_USEC / 1000000, left);
	conn_close(c);
	return 0;
}

/* Sends the head answer's next frames. Returns 0 once it is all sent, -EAGAIN
 * when the socket is full, or another negative errno. */
static int out_send(struct ctl_conn *c, struct ctl_out *o)
{
	if (o->type == MSG_HELLO)
		return proto_send(c->fd, MSG_HELLO, 0, o->id, o->text, o->text_len, NULL, 0);
	for (;;) {
		size_t left = o->text_len - o->sent;
		/* Frames end on character boundaries: each one is valid UTF-8. */
		size_t n = proto_utf8_cut(o->text + o->sent, left, PROTO_STATUS_TEXT_MAX);
		uint16_t flags = n < left ? CTL_MORE : 0;
		int r = proto_send_status_frame(c->fd, MSG_CTL_REPLY, flags, o->id, o->code,
						o->text + o->sent, n);
		if (r < 0)
			return r;
		o->sent += n;
		if (!flags)
			return 0;
	}
}

/* Sends what is queued until done or the socket is full; then waits for
 * EPOLLOUT instead of reading more requests. */
static void conn_flush(struct ctl_conn *c)
{
	bool progress = false;
	while (c->out && !c->broken) {
		struct ctl_out *o = c->out;
		size_t sent = o->sent;
		int r = out_send(c, o);
		progress = progress || o->sent != sent;
		if (r == -EAGAIN)
			break;
		if (r < 0) {
			log_warn("control: cannot answer request %u: %s", o->id, strerror(-r));
			c->broken = true;
			break;
		}
		progress = true;
		c->out = o->next;
		if (!c->out)
			c->out_tail = &c->out;
		free(o);
	}
	if (c->broken)
		out_drop(c);
	if (!c->out) {
		/* EPOLLIN also brings the hang-up that closes a broken connection. */
		sd_event_source_set_io_events(c->src, EPOLLIN);
		if (c->stall_timer)
			sd_event_source_set_enabled(c->stall_timer, SD_EVENT_OFF);
		return;
	}
	sd_event_source_set_io_events(c->src, EPOLLOUT);
	int enabled = SD_EVENT_OFF;
	if (c->stall_timer)
		sd_event_source_get_enabled(c->stall_timer, &enabled);
	if (!progress && enabled != SD_EVENT_OFF)
		return;
	if (!c->stall_timer) {
		if (sd_event_add_time_relative(c->ctl->d->event, &c->stall_timer, CLOCK_MONOTONIC,
					       CTL_STALL_USEC, 100 * 1000, on_stall, c) < 0)
			log_warn("control: a slow client will not be timed out: out of resources");
		return;
	}
	sd_event_source_set_time_relative(c->stall_timer, CTL_STALL_USEC);
	sd_event_source_set_enabled(c->stall_timer, SD_EVENT_ONESHOT);
}

static struct ctl_out *out_new(uint8_t type, uint32_t id, int32_t code, const char *text,
			       size_t text_len)
{
	struct ctl_out *o = malloc(sizeof(*o) + text_len + 1);
	if (!o)
		return NULL;
	*o = (struct ctl_out){.type = type, .id = id, .code = code, .text_len = text_len};
	memcpy(o->text, text, text_len);
	o->text[text_len] = 0;
	return o;
}

/* Queues an answer and sends what the socket takes. An answer larger than one
 * frame goes to a client that did not ask for frames as an error, never cut. */
static void conn_answer(struct ctl_conn *c, uint8_t type, uint32_t id, int32_t code,
			const char *text, size_t text_len, bool frames)
{
	char why[256];
	if (c->broken)
		return;
	if (text_len > PROTO_REPLY_MAX_BYTES || (!frames && text_len > PROTO_STATUS_TEXT_MAX)) {
		if (text_len > PROTO_REPLY_MAX_BYTES)
			snprintf(why, sizeof(why),
				 "the answer is %zu bytes, more than the %d an answer may have",
				 text_len, PROTO_REPLY_MAX_BYTES);
		else
			snprintf(why, sizeof(why),
				 "the answer is %zu bytes, more than one message holds, and this "
				 "client cannot take it in several: use batonctl %s",
				 text_len, BATON_VERSION);
		log_warn("control: request %u: %s", id, why);
		code = EMSGSIZE;
		text = why;
		text_len = strlen(why);
	}
	struct ctl_out *o = out_new(type, id, code, text, text_len);
	if (!o) {
		static const char oom[] = "batond is out of memory";
		o = out_new(MSG_CTL_REPLY, id, ENOMEM, oom, sizeof(oom) - 1);
	}
	if (!o) {
		log_warn("control: cannot answer request %u: out of memory", id);
		c->broken = true;
		return;
	}
	*c->out_tail = o;
	c->out_tail = &o->next;
	if (c->out == o)
		conn_flush(c);
}

static void conn_reply(struct ctl_conn *c, uint32_t id, int code, const char *text)
{
	conn_answer(c, MSG_CTL_REPLY, id, code, text, strlen(text), false);
}

static void req_unlink(struct ctl_req *req)
{
	if (!req->conn)
		return;
	for (struct ctl_req **p = &req->conn->reqs; *p; p = &(*p)->next)
		if (*p == req) {
			*p = req->next;
			break;
		}
}

static void req_finish(struct ctl_req *req)
{
	if (req->conn)
		conn_answer(req->conn, MSG_CTL_REPLY, req->id, req->code,
			    req->text ? req->text : "", req->text ? req->text_len - 1 : 0,
			    req->frames);
	req_unlink(req);
	free(req->text);
	free(req);
}

static struct ctl_req *req_new(struct ctl_conn *c, const struct proto_msg *m, unsigned pending)
{
	struct ctl_req *req = calloc(1, sizeof(*req));
	if (!req)
		return NULL;
	req->conn = c;
	req->id = m->hdr.request_id;
	req->frames = m->hdr.flags & CTL_FRAMES;
	req->wait_drain = m->hdr.type == MSG_CTL_UPGRADE && (m->hdr.flags & CTL_WAIT_DRAIN);
	req->pending = pending;
	req->next = c->reqs;
	c->reqs = req;
	return req;
}

/* One app's upgrade outcome. Lines accumulate; the first failure's code wins. */
static void on_upgrade_done(void *userdata, int code, const char *text)
{
	struct ctl_req *req = userdata;
	size_t add = strlen(text) + 1;
	char *t = realloc(req->text, req->text_len + add + 1);
	if (t) {
		req->text = t;
		if (req->text_len)
			req->text[req->text_len - 1] = '\n';
		memcpy(req->text + req->text_len, text, add);
		req->text_len += add;
	}
	if (code && !req->code)
		req->code = code;
	if (--req->pending == 0)
		req_finish(req);
}

/* @name for a message: printable ASCII as is, any other byte as \xHH. */
static void quote_name(char *buf, size_t cap, const uint8_t *name, size_t len)
{
	size_t used = 0;
	for (size_t i = 0; i < len && i < PROTO_NAME_MAX && used + 8 < cap; i++) {
		uint8_t b = name[i];
		if (b > 0x20 && b < 0x7f && b != '"' && b != '\\')
			buf[used++] = (char)b;
		else
			used += (size_t)snprintf(buf + used, cap - used, "\\x%02x", b);
	}
	snprintf(buf + used, cap - used, "%s", len > PROTO_NAME_MAX ? "..." : "");
}

/* A waiter whose outcome is a line of @userdata's reply. */
static struct app_waiter *reload_waiter(void *userdata)
{
	struct ctl_req *req = userdata;
	struct app_waiter *w = calloc(1, sizeof(*w));
	if (w) {
		w->done = on_upgrade_done;
		w->userdata = userdata;
		w->wait_drain = req->wait_drain;
	}
	return w;
}

/* The reload is under way with @n_pending app outcomes to come (each a line),
 * or failed with @text (the file's errors). */
static void on_reload_started(void *userdata, int code, unsigned n_pending, const char *text)
{
	struct ctl_req *req = userdata;
	req->pending = n_pending + 1; /* the line of this call, below */
	on_upgrade_done(req, code < 0 ? -code : 0,
			text && text[0] ? text
			: n_pending	? "configuration read"
					: "configuration read; no apps to upgrade");
}

/* reload, and upgrade without an app: the configuration is read again; with
 * @upgrade every app also starts a new generation. */
static void handle_reload(struct ctl_conn *c, const struct proto_msg *m, bool upgrade)
{
	struct daemon *d = c->ctl->d;
	if (d->stopping) {
		conn_reply(c, m->hdr.request_id, ESHUTDOWN, "batond is stopping");
		return;
	}
	struct ctl_req *req = req_new(c, m, 1);
	if (!req) {
		conn_reply(c, m->hdr.request_id, ENOMEM, "out of memory");
		return;
	}
	reload_request(d, upgrade, reload_waiter, on_reload_started, req);
}

/* The app @m names in its payload, or NULL with the reason answered. */
static struct app *named_app(struct ctl_conn *c, const struct proto_msg *m)
{
	struct daemon *d = c->ctl->d;
	const char *name = (const char *)m->payload;
	size_t name_len = m->hdr.payload_bytes;
	/* Checked as the config checks names: "web\0junk" must not mean "web". */
	if (!proto_name_valid(name, name_len)) {
		char shown[PROTO_NAME_MAX * 4 + 8], text[512];
		quote_name(shown, sizeof(shown), m->payload, name_len);
		snprintf(text, sizeof(text),
			 "invalid app name \"%s\": names are 1 to %d characters of A-Z a-z 0-9 "
			 "_ . -",
			 shown, PROTO_NAME_MAX);
		log_warn("control: %s", text);
		conn_reply(c, m->hdr.request_id, EINVAL, text);
		return NULL;
	}
	for (size_t i = 0; i < d->n_apps; i++)
		if (strcmp(d->apps[i]->cfg->name, name) == 0)
			return d->apps[i];
	char text[128];
	snprintf(text, sizeof(text), "unknown app \"%.64s\"", name);
	conn_reply(c, m->hdr.request_id, ENOENT, text);
	return NULL;
}

/* A waiter whose outcome answers @m, or NULL with the reason answered. */
static struct app_waiter *answer_waiter(struct ctl_conn *c, const struct proto_msg *m)
{
	if (c->ctl->d->stopping) {
		conn_reply(c, m->hdr.request_id, ESHUTDOWN, "batond is stopping");
		return NULL;
	}
	struct ctl_req *req = req_new(c, m, 1);
	struct app_waiter *w = req ? reload_waiter(req) : NULL;
	if (!w) {
		if (req) {
			req_unlink(req);
			free(req);
		}
		conn_reply(c, m->hdr.request_id, ENOMEM, "out of memory");
	}
	return w;
}

static void handle_upgrade(struct ctl_conn *c, const struct proto_msg *m)
{
	if (m->hdr.payload_bytes == 0) {
		handle_reload(c, m, true);
		return;
	}
	struct app *only = named_app(c, m);
	if (!only)
		return;
	struct app_waiter *w = answer_waiter(c, m);
	if (w)
		app_upgrade(only, w);
}

/* promote APP, rollback APP: what becomes of its canary; without one,
 * rollback starts the pinned generation again, answered as an upgrade. */
static void handle_canary(struct ctl_conn *c, const struct proto_msg *m)
{
	struct app *a = named_app(c, m);
	if (!a)
		return;
	if (m->hdr.type == MSG_CTL_ROLLBACK && !a->canary) {
		struct app_waiter *w = answer_waiter(c, m);
		if (w)
			app_revert(a, w);
		return;
	}
	char text[800];
	int r = m->hdr.type == MSG_CTL_PROMOTE ? app_promote(a, text, sizeof(text))
					       : app_rollback(a, text, sizeof(text));
	conn_reply(c, m->hdr.request_id, -r, text);
}

/* "APP N": app APP runs N workers from now on (app_scale). */
static void handle_scale(struct ctl_conn *c, const struct proto_msg *m)
{
	struct daemon *d = c->ctl->d;
	char text[256];
	const char *payload = (const char *)m->payload;
	const char *space = memchr(payload, ' ', m->hdr.payload_bytes);
	size_t name_len = space ? (size_t)(space - payload) : 0;
	char *end;
	errno = 0;
	unsigned long n = space ? strtoul(space + 1, &end, 10) : 0;
	if (!space || !proto_name_valid(payload, name_len) || errno || end == space + 1 || *end ||
	    space[1] == '-' || n < 1 || n > 1024) {
		conn_reply(c, m->hdr.request_id, EINVAL,
			   "scale: expected an app name and a number of workers from 1 to 1024");
		return;
	}
	struct app *a = NULL;
	for (size_t i = 0; i < d->n_apps && !a; i++)
		if (strlen(d->apps[i]->cfg->name) == name_len &&
		    memcmp(d->apps[i]->cfg->name, payload, name_len) == 0)
			a = d->apps[i];
	if (!a) {
		snprintf(text, sizeof(text), "unknown app \"%.*s\"", (int)name_len, payload);
		conn_reply(c, m->hdr.request_id, ENOENT, text);
		return;
	}
	int r = app_scale(a, (unsigned)n);
	if (r == -EBUSY)
		snprintf(text, sizeof(text),
			 "%s: no generation serving now: the next one starts %lu worker%s",
			 a->cfg->name, n, n == 1 ? "" : "s");
	else if (r < 0)
		snprintf(text, sizeof(text), "%s: cannot scale: %s", a->cfg->name, strerror(-r));
	else
		snprintf(text, sizeof(text), "%s: generation %u runs %lu worker%s", a->cfg->name,
			 a->serving->id, n, n == 1 ? "" : "s");
	conn_reply(c, m->hdr.request_id, r < 0 && r != -EBUSY ? -r : 0, text);
}

/* Payload: the absolute path of the program to run, or empty for the one
 * batond started as. */
static void handle_reexec(struct ctl_conn *c, const struct proto_msg *m)
{
	const char *path = (const char *)m->payload;
	size_t len = m->hdr.payload_bytes;
	if (len && (strlen(path) != len || path[0] != '/' || len >= PATH_MAX)) {
		conn_reply(c, m->hdr.request_id, EINVAL,
			   "reexec: the program must be an absolute path");
		return;
	}
	struct ctl_req *req = req_new(c, m, 1);
	if (!req) {
		conn_reply(c, m->hdr.request_id, ENOMEM, "out of memory");
		return;
	}
	req->reexec = true;
	/* Told only of a failure: success is answered by the new image. */
	reexec_request(c->ctl->d, len ? path : NULL, on_upgrade_done, req);
}

enum peer_access { PEER_DENIED, PEER_READ, PEER_ALL };

/* What the peer of @fd may do, from the credentials and groups the kernel
 * recorded when it connected (SO_PEERCRED, SO_PEERGROUPS): nothing read later
 * from /proc, where its pid may be another process's by then. */
static enum peer_access peer_access(const struct control *ctl, int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
		return PEER_DENIED;
	if (cred->uid == 0 || cred->uid == geteuid())
		return PEER_ALL;
	gid_t small[64], *groups = small;
	len = sizeof(small);
	int r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
	if (r < 0 && errno == ERANGE && (groups = malloc(len)))
		r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
	size_t n = r == 0 ? len / sizeof(gid_t) : 0;
	bool in_group = ctl->has_group && cred->gid == ctl->group;
	bool in_read_group = ctl->has_read_group && cred->gid == ctl->read_group;
	for (size_t i = 0; i < n; i++) {
		in_group |= ctl->has_group && groups[i] == ctl->group;
		in_read_group |= ctl->has_read_group && groups[i] == ctl->read_group;
	}
	if (groups != small)
		free(groups);
	return in_group ? PEER_ALL : in_read_group ? PEER_READ : PEER_DENIED;
}

/* ' or a member of group "baton"', or what would configure one. */
static void who_may_change(const struct control *ctl, char *buf, size_t len)
{
	if (ctl->has_group)
		snprintf(buf, len, "root, batond's uid (%u) or a member of group \"%s\"",
			 (unsigned)geteuid(), ctl->group_name);
	else
		snprintf(buf, len,
			 "root, batond's uid (%u) or a member of a control group (none is "
			 "configured: control { group = ... })",
			 (unsigned)geteuid());
}

/* Copies the groups of @cfg's control section. */
static int set_groups(struct control *ctl, const struct config *cfg)
{
	char *name = cfg->control_group ? strdup(cfg->control_group) : NULL;
	char *read_name = cfg->control_read_group ? strdup(cfg->control_read_group) : NULL;
	if ((cfg->control_group && !name) || (cfg->control_read_group && !read_name)) {
		free(name);
		free(read_name);
		return -ENOMEM;
	}
	free(ctl->group_name);
	free(ctl->read_group_name);
	ctl->group_name = name;
	ctl->read_group_name = read_name;
	ctl->has_group = cfg->control_gid != (gid_t)-1 && name;
	ctl->group = ctl->has_group ? cfg->control_gid : 0;
	ctl->has_read_group = cfg->control_read_gid != (gid_t)-1 && read_name;
	ctl->read_group = ctl->has_read_group ? cfg->control_read_gid : 0;
	return 0;
}

static void handle_message(struct ctl_conn *c, const struct proto_msg *m)
{
	struct daemon *d = c->ctl->d;
	if (m->hdr.type == MSG_HELLO) {
		char hello[64];
		snprintf(hello, sizeof(hello), "batond %s pid %d", BATON_VERSION, (int)getpid());
		conn_answer(c, MSG_HELLO, m->hdr.request_id, 0, hello, strlen(hello), false);
		c->hello = true;
		return;
	}
	if (!c->hello) {
		conn_reply(c, m->hdr.request_id, EPROTO, "the first message must be HELLO");
		return;
	}
	if (c->read_only && m->hdr.type != MSG_CTL_STATUS && m->hdr.type != MSG_CTL_METRICS) {
		static const char *const names[] = {[MSG_CTL_UPGRADE] = "upgrade",
						    [MSG_CTL_RELOAD] = "reload",
						    [MSG_CTL_SCALE] = "scale",
						    [MSG_CTL_REEXEC] = "reexec",
						    [MSG_CTL_STOP] = "stop"};
		const char *what =
		    m->hdr.type < sizeof(names) / sizeof(names[0]) && names[m->hdr.type]
			? names[m->hdr.type]
			: "this request";
		char text[512], who[256];
		who_may_change(c->ctl, who, sizeof(who));
		snprintf(text, sizeof(text),
			 "permission denied: %s changes batond, and uid %u may only read (a member "
			 "of group \"%s\"): it takes %s",
			 what, (unsigned)c->uid, c->ctl->read_group_name ?: "", who);
		log_warn("control: %s", text);
		conn_reply(c, m->hdr.request_id, EACCES, text);
		return;
	}
	switch (m->hdr.type) {
	case MSG_CTL_STATUS:
	case MSG_CTL_METRICS: {
		bool status = m->hdr.type == MSG_CTL_STATUS;
		char *text = status ? status_render(d, m->hdr.flags & CTL_JSON) : metrics_render(d);
		/* CTL_CHECK: the status all the same, with ESRCH for an app not served. */
		int code =
		    status && (m->hdr.flags & CTL_CHECK) && !status_every_app_serves(d) ? ESRCH : 0;
		if (text)
			conn_answer(c, MSG_CTL_REPLY, m->hdr.request_id, code, text, strlen(text),
				    m->hdr.flags & CTL_FRAMES);
		else
			conn_reply(c, m->hdr.request_id, ENOMEM, "out of memory");
		free(text);
		break;
	}
	case MSG_CTL_UPGRADE:
		handle_upgrade(c, m);
		break;
	case MSG_CTL_RELOAD:
		handle_reload(c, m, false);
		break;
	case MSG_CTL_SCALE:
		handle_scale(c, m);
		break;
	case MSG_CTL_REEXEC:
		handle_reexec(c, m);
		break;
	case MSG_CTL_PROMOTE:
	case MSG_CTL_ROLLBACK:
		handle_canary(c, m);
		break;
	case MSG_CTL_STOP: {
		struct ctl_req *req = req_new(c, m, 1);
		if (!req) {
			conn_reply(c, m->hdr.request_id, ENOMEM, "out of memory");
			break;
		}
		req->stop = true;
		log_info("control: stop requested");
		daemon_stop(d);
		break;
	}
	}
}

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct ctl_conn *c = userdata;
	static struct proto_msg *m;
	if (revents & EPOLLOUT)
		conn_flush(c);
	if (c->broken) {
		conn_close(c);
		return 0;
	}
	if (c->out)
		return 0; /* the next request once this answer is out */
	if (!m && !(m = malloc(sizeof(*m))))
		return 0;
	for (int budget = 16; budget > 0; budget--) {
		int r = proto_recv(fd, ROLE_CONTROL_SERVER, m);
		if (r == -EAGAIN)
			return 0;
		if (r == 0 || r == -ECONNRESET) {
			conn_close(c);
			return 0;
		}
		if (r < 0) {
			char text[64];
			snprintf(text, sizeof(text), "bad request: %s", strerror(-r));
			log_warn("control: %s", text);
			conn_reply(c, 0, -r, text);
			if (++c->errors >= 3) {
				conn_close(c);
				return 0;
			}
		} else {
			handle_message(c, m);
			proto_msg_release(m);
		}
		if (c->broken) {
			conn_close(c);
			return 0;
		}
		if (c->out)
			return 0;
	}
	return 0;
}

static int on_resume(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct control *ctl = userdata;
	sd_event_source_set_enabled(ctl->src, SD_EVENT_ON);
	if (ctl->reserve_fd < 0)
		ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return 0;
}

/* Out of fds, the pending client would keep the listener readable and batond
 * spinning: give up the reserve fd for one accept, tell the client why, and
 * take the reserve back. Without a reserve, stop listening for a second. */
static void refuse_out_of_fds(struct control *ctl, int fd)
{
	static const char text[] = "batond is out of file descriptors";
	log_warn("control: accept: %s; answering \"%s\"", strerror(errno), text);
	if (ctl->reserve_fd >= 0) {
		close(ctl->reserve_fd);
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd >= 0) {
			proto_send_status(cfd, MSG_ERROR, 0, EMFILE, text);
			close(cfd);
		}
		ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (cfd >= 0)
			return;
	}
	sd_event_source_set_enabled(ctl->src, SD_EVENT_OFF);
	if (!ctl->resume_timer &&
	    sd_event_add_time_relative(ctl->d->event, &ctl->resume_timer, CLOCK_MONOTONIC,
				       1000 * 1000, 10000, on_resume, ctl) < 0) {
		sd_event_source_set_enabled(ctl->src, SD_EVENT_ON);
		return;
	}
	sd_event_source_set_time_relative(ctl->resume_timer, 1000 * 1000);
	sd_event_source_set_enabled(ctl->resume_timer, SD_EVENT_ONESHOT);
}

static int conn_add(struct control *ctl, int fd, struct ctl_conn **ret);

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct control *ctl = userdata;
	for (int budget = 16; budget > 0; budget--) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0 && (errno == EMFILE || errno == ENFILE)) {
			refuse_out_of_fds(ctl, fd);
			return 0;
		}
		if (cfd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("control: accept: %s", strerror(errno));
			return 0;
		}
		struct ucred cred = {0};
		if (ctl->n_conns >= CTL_MAX_CONNS) {
			char text[128];
			snprintf(text, sizeof(text),
				 "batond is busy: %d control connections are open", CTL_MAX_CONNS);
			log_warn("control: refused a connection: %s", text);
			proto_send_status(cfd, MSG_ERROR, 0, EBUSY, text);
			close(cfd);
			continue;
		}
		enum peer_access access = peer_access(ctl, cfd, &cred);
		if (access == PEER_DENIED) {
			char text[512], who[256];
			who_may_change(ctl, who, sizeof(who));
			int n = snprintf(text, sizeof(text), "permission denied: uid %u is not %s",
					 cred.uid, who);
			if (ctl->has_read_group && n > 0 && (size_t)n < sizeof(text))
				snprintf(text + n, sizeof(text) - (size_t)n,
					 "; members of group \"%s\" may read (status, metrics)",
					 ctl->read_group_name);
			log_warn("control: refused pid %d: %s", (int)cred.pid, text);
			proto_send_status(cfd, MSG_ERROR, 0, EACCES, text);
			close(cfd);
			continue;
		}
		struct ctl_conn *c;
		if (conn_add(ctl, cfd, &c) < 0) {
			log_warn("control: cannot take a connection: out of resources");
			close(cfd);
		}
	}
	return 0;
}

/* The control socket of @cfg, listening: born with its mode and group, in
 * directories nobody else can change. -EADDRINUSE when a live batond answers
 * there; another error with the reason in @err (not naming the path). */
static int bind_control(const struct config *cfg, int *ret_fd, char *err, size_t err_len)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, err_len, "socket: %s", strerror(errno));
		return -errno;
	}
	int r = unix_path_bind(fd, cfg->control_socket, cfg->control_mode, (uid_t)-1,
			       cfg->control_gid, true, err, err_len);
	if (r == 0 && listen(fd, 64) < 0) {
		r = -errno;
		snprintf(err, err_len, "listen: %s", strerror(errno));
		unlink(cfg->control_socket);
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int control_open(struct daemon *d, struct control **ret)
{
	const struct config *cfg = d->cfg;
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->d = d;
	ctl->fd = -1;
	ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int r;
	/* Looked up when the config was read: no NSS here. */
	if ((r = set_groups(ctl, cfg)) < 0) {
		log_err("control socket: %s", strerror(-r));
		goto fail;
	}
	char err[512];
	r = bind_control(cfg, &ctl->fd, err, sizeof(err));
	if (r == -EADDRINUSE) {
		log_err("control socket %s is in use by a running batond; not starting a second "
			"one",
			cfg->control_socket);
		goto fail;
	}
	if (r < 0) {
		log_err("control socket %s: %s", cfg->control_socket, err);
		goto fail;
	}
	ctl->path = strdup(cfg->control_socket);
	if (!ctl->path) {
		unlink(cfg->control_socket);
		r = -ENOMEM;
		log_err("control socket %s: %s", cfg->control_socket, strerror(-r));
		goto fail;
	}
	if ((r = sd_event_add_io(d->event, &ctl->src, ctl->fd, EPOLLIN, on_accept, ctl)) < 0) {
		log_err("control socket %s: %s", cfg->control_socket, strerror(-r));
		goto fail;
	}
	*ret = ctl;
	return 0;
fail:
	if (ctl->path)
		unlink(ctl->path);
	if (ctl->fd >= 0)
		close(ctl->fd);
	if (ctl->reserve_fd >= 0)
		close(ctl->reserve_fd);
	free(ctl->group_name);
	free(ctl->read_group_name);
	free(ctl->path);
	free(ctl);
	return r;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	for (struct ctl_conn *c = ctl->conns; c; c = c->next)
		for (struct ctl_req *req = c->reqs; req; req = req->next)
			if (req->stop)
				conn_reply(c, req->id, 0, "batond stopped"); /* if it fits now */
	while (ctl->conns)
		conn_close(ctl->conns);
	sd_event_source_disable_unref(ctl->src);
	sd_event_source_disable_unref(ctl->resume_timer);
	close(ctl->fd);
	if (ctl->reserve_fd >= 0)
		close(ctl->reserve_fd);
	unlink(ctl->path);
	free(ctl->group_name);
	free(ctl->read_group_name);
	free(ctl->path);
	free(ctl);
}

struct json_object *control_save(const struct control *ctl, struct reexec_save *s)
{
	struct json_object *j = json_object_new_object(), *conns = json_object_new_array();
	rx_set_int(j, "fd", reexec_keep_fd(s, ctl->fd));
	for (const struct ctl_conn *c = ctl->conns; c; c = c->next) {
		/* Only idle connections, and those waiting for this re-exec: an answer
		 * half sent cannot be finished by the new image (its client sees the
		 * connection close). */
		bool other = c->out || c->broken;
		for (const struct ctl_req *r = c->reqs; r; r = r->next)
			other |= !r->reexec;
		if (other)
			continue;
		struct json_object *cj = json_object_new_object(), *reqs = json_object_new_array();
		rx_set_int(cj, "fd", reexec_keep_fd(s, c->fd));
		rx_set_bool(cj, "hello", c->hello);
		for (const struct ctl_req *r = c->reqs; r; r = r->next) {
			struct json_object *rj = json_object_new_object();
			rx_set_int(rj, "id", r->id);
			rx_set_bool(rj, "frames", r->frames);
			json_object_array_add(reqs, rj);
		}
		rx_set(cj, "reexec_requests", reqs);
		json_object_array_add(conns, cj);
	}
	rx_set(j, "conns", conns);
	return j;
}

static int conn_add(struct control *ctl, int fd, struct ctl_conn **ret)
{
	struct ctl_conn *c = calloc(1, sizeof(*c));
	int r = c ? sd_event_add_io(ctl->d->event, &c->src, fd, EPOLLIN, on_conn, c) : -ENOMEM;
	if (r < 0) {
		free(c);
		return r;
	}
	c->ctl = ctl;
	c->fd = fd;
	c->out_tail = &c->out;
	/* Asked again of the kernel for a connection carried across a re-exec. */
	struct ucred cred = {0};
	c->read_only = peer_access(ctl, fd, &cred) != PEER_ALL;
	c->uid = cred.uid;
	ctl->n_conns++;
	c->next = ctl->conns;
	if (ctl->conns)
		ctl->conns->prev = c;
	ctl->conns = c;
	*ret = c;
	return 0;
}

int control_restore(struct daemon *d, struct json_object *j, struct control **ret)
{
	const struct config *cfg = d->cfg;
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl || !(ctl->path = strdup(cfg->control_socket)))
		return -ENOMEM;
	ctl->d = d;
	ctl->fd = (int)rx_int(j, "fd", -1);
	ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (set_groups(ctl, cfg) < 0)
		return -ENOMEM;
	if (ctl->fd < 0)
		return -EBADMSG;
	int r = sd_event_add_io(d->event, &ctl->src, ctl->fd, EPOLLIN, on_accept, ctl);
	for (size_t i = 0; i < rx_len(j, "conns") && r >= 0; i++) {
		struct json_object *cj = rx_at(j, "conns", i);
		struct ctl_conn *c;
		int fd = (int)rx_int(cj, "fd", -1);
		if (fd < 0)
			return -EBADMSG;
		if ((r = conn_add(ctl, fd, &c)) < 0)
			break;
		c->hello = rx_bool(cj, "hello");
		for (size_t k = 0; k < rx_len(cj, "reexec_requests"); k++) {
			struct json_object *rj = rx_at(cj, "reexec_requests", k);
			struct ctl_req *req = calloc(1, sizeof(*req));
			if (!req)
				return -ENOMEM;
			*req = (struct ctl_req){.conn = c,
						.id = (uint32_t)rx_int(rj, "id", 0),
						.frames = rx_bool(rj, "frames"),
						.reexec = true,
						.pending = 1,
						.next = c->reqs};
			c->reqs = req;
		}
	}
	if (r < 0)
		return r;
	*ret = ctl;
	return 0;
}

void control_reexec_done(struct control *ctl, int code, const char *text)
{
	for (struct ctl_conn *c = ctl->conns; c; c = c->next)
		for (struct ctl_req *req = c->reqs, *next; req; req = next) {
			next = req->next;
			if (req->reexec)
				on_upgrade_done(req, code, text);
		}
}

int control_prepare(const struct control *ctl, const struct config *nc, int *ret_fd, char *err,
		    size_t err_len)
{
	*ret_fd = -1;
	if (strcmp(nc->control_socket, ctl->path) == 0)
		return 0; /* mode and group change in place */
	char why[512];
	int r = bind_control(nc, ret_fd, why, sizeof(why));
	if (r == -EADDRINUSE)
		snprintf(err, err_len, "%s is in use by a running batond", nc->control_socket);
	else if (r < 0)
		snprintf(err, err_len, "%s: %s", nc->control_socket, why);
	return r;
}

void control_apply(struct control *ctl, const struct config *nc, int fd)
{
	if (set_groups(ctl, nc) < 0)
		log_warn("control: out of memory: who may connect stays as it was");
	if (fd < 0) {
		/* The same path: its directories were checked when it was bound. */
		if (fchmodat(AT_FDCWD, ctl->path, nc->control_mode, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fchownat(AT_FDCWD, ctl->path, (uid_t)-1, nc->control_gid, AT_SYMLINK_NOFOLLOW) <
			0)
			log_warn("control socket %s: cannot apply its new mode or group: %s",
				 ctl->path, strerror(errno));
		return;
	}
	char *path = strdup(nc->control_socket);
	sd_event_source *src = NULL;
	int r = path ? sd_event_add_io(ctl->d->event, &src, fd, EPOLLIN, on_accept, ctl) : -ENOMEM;
	if (r < 0) {
		log_err("control socket %s: %s; batond stays at %s", nc->control_socket,
			strerror(-r), ctl->path);
		free(path);
		close(fd);
		unlink(nc->control_socket);
		return;
	}
	/* Clients connected already keep their connections. */
	sd_event_source_disable_unref(ctl->src);
	close(ctl->fd);
	unlink(ctl->path);
	log_info("control socket: %s, was %s", path, ctl->path);
	free(ctl->path);
	ctl->path = path;
	ctl->fd = fd;
	ctl->src = src;
}
