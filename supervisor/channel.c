/* Worker channels, batond's side. Every message is validated by the protocol
 * (proto_recv with ROLE_WORKER_SERVER); a peer that keeps sending bad messages
 * is dropped. Received fds are closed unless a handler takes them. */
#include "channel.h"
#include "app.h"
#include "batond.h"
#include "dispatch.h"
#include "generation.h"
#include "log.h"
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHANNEL_MAX_ERRORS 3

static void reply_listener(struct worker *w, const struct proto_msg *m)
{
	struct app *a = w->gen->app;
	const char *name = (const char *)m->payload;
	/* In dispatch mode batond accepts: a worker gets connections, not listeners. */
	for (size_t i = 0; a->cfg->mode == SERVE_INHERIT && i < a->cfg->n_listeners; i++) {
		if (strlen(name) != m->hdr.payload_bytes)
			break; /* an embedded NUL: no listener has that name */
		if (strcmp(a->d->cfg->listeners[a->cfg->listener_idx[i]].name, name) != 0)
			continue;
		/* batond keeps its reference: the kernel duplicates the fd in flight. */
		int r = proto_send(w->channel_fd, MSG_LISTENER, 0, m->hdr.request_id, name,
				   strlen(name), &a->listen_fds[i], 1);
		if (r < 0)
			log_warn("%s: worker %u (pid %d): cannot send listener \"%s\": %s",
				 a->cfg->name, w->index, (int)w->pid, name, strerror(-r));
		return;
	}
	char text[200];
	if (a->cfg->mode == SERVE_DISPATCH)
		snprintf(text, sizeof(text),
			 "app \"%s\" is in dispatch mode: connections arrive on the channel",
			 a->cfg->name);
	else
		snprintf(text, sizeof(text), "listener \"%.64s\" is not a listener of app \"%s\"",
			 name, a->cfg->name);
	log_warn("%s: worker %u (pid %d) asked for %s", a->cfg->name, w->index, (int)w->pid, text);
	proto_send_status(w->channel_fd, MSG_ERROR, m->hdr.request_id, ENOENT, text);
}

static void handle_park(struct worker *w, struct proto_msg *m)
{
	struct proto_conn rec;
	size_t off = 0;
	if (proto_conn_get(m->payload, m->hdr.payload_bytes, &off, &rec) < 0) {
		log_warn("%s: worker %u (pid %d): bad PARK record; connection closed",
			 w->gen->app->cfg->name, w->index, (int)w->pid);
		return; /* proto_msg_release closes the fd */
	}
	dispatch_park(w, proto_msg_take_fd(m, 0), &rec);
}

static int on_channel(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct worker *w = userdata;
	if (revents & EPOLLOUT) {
		w->channel_full = false;
		sd_event_source_set_io_events(s, EPOLLIN);
		if (w->drain_pending)
			channel_send_drain(w); /* watches again if still full */
		dispatch_kick(w->gen->app->dispatch);
	}
	if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	/* Heap, not stack: a message with its payload is 64 KiB. */
	static struct proto_msg *m;
	if (!m && !(m = malloc(sizeof(*m)))) {
		log_err("channel: out of memory");
		return 0;
	}
	for (int budget = 32; budget > 0; budget--) {
		int r = proto_recv(fd, ROLE_WORKER_SERVER, m);
		if (r == -EAGAIN)
			return 0;
		if (r == 0) {
			channel_detach(w);
			return 0;
		}
		if (r == -ECONNRESET)
			/* The worker closed its end with messages of ours unread (it
			 * exited without reading DRAIN, say). The kernel reports that
			 * first, once; what it sent before closing is still queued. */
			continue;
		if (r < 0) {
			log_warn("%s: worker %u (pid %d): bad message on channel: %s",
				 w->gen->app->cfg->name, w->index, (int)w->pid, strerror(-r));
			if (++w->channel_errors >= CHANNEL_MAX_ERRORS) {
				log_warn("%s: worker %u (pid %d): channel closed",
					 w->gen->app->cfg->name, w->index, (int)w->pid);
				channel_detach(w);
				return 0;
			}
			continue;
		}
		switch (m->hdr.type) {
		case MSG_HELLO:
			break;
		case MSG_LISTENER_GET:
			reply_listener(w, m);
			break;
		case MSG_CONN_DONE: {
			uint32_t n;
			memcpy(&n, m->payload, sizeof(n));
			dispatch_conn_done(w, n);
			break;
		}
		case MSG_PARK:
			handle_park(w, m);
			break;
		}
		proto_msg_release(m);
	}
	return 0;
}

/* A SEQPACKET datagram must fit the send buffer, less the kernel's 32 bytes,
 * header included. */
static size_t payload_max(int fd)
{
	int sndbuf = 0;
	socklen_t len = sizeof(sndbuf);
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0 || sndbuf < 1024)
		sndbuf = 1024;
	size_t max = (size_t)sndbuf - 32 - sizeof(struct proto_hdr);
	return max < PROTO_MAX_PAYLOAD ? max : PROTO_MAX_PAYLOAD;
}

void channel_attach(struct worker *w)
{
	w->channel_payload_max = payload_max(w->channel_fd);
	int r = sd_event_add_io(w->gen->app->d->event, &w->channel_src, w->channel_fd, EPOLLIN,
				on_channel, w);
	if (r < 0) {
		log_warn("%s: worker %u: channel unwatched: %s", w->gen->app->cfg->name, w->index,
			 strerror(-r));
		channel_detach(w);
	}
	w->channel_errors = 0;
}

void channel_detach(struct worker *w)
{
	w->channel_src = sd_event_source_disable_unref(w->channel_src);
	if (w->channel_fd >= 0)
		close(w->channel_fd);
	w->channel_fd = -1;
}

void channel_watch_writable(struct worker *w)
{
	if (w->channel_src)
		sd_event_source_set_io_events(w->channel_src, EPOLLIN | EPOLLOUT);
}

void channel_send_drain(struct worker *w)
{
	w->drain_pending = false;
	if (w->channel_fd < 0)
		return;
	int r = proto_send(w->channel_fd, MSG_DRAIN, 0, 0, NULL, 0, NULL, 0);
	if (r == -EAGAIN) {
		/* Connections sent before fill its channel: DRAIN follows them. */
		w->drain_pending = true;
		channel_watch_writable(w);
	} else if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
		log_warn("%s: worker %u (pid %d): cannot send DRAIN: %s", w->gen->app->cfg->name,
			 w->index, (int)w->pid, strerror(-r));
	}
}
