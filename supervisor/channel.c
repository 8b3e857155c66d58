/* SPDX-License-Identifier: MIT */
/* Worker channels, batond's side. Every message is validated by the protocol
 * (proto_recv with ROLE_WORKER_SERVER); a peer that keeps sending bad messages
 * is dropped. Received fds are closed unless a handler takes them. */
#include "channel.h"
#include "log.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHANNEL_MAX_ERRORS  3
#define CHANNEL_RECV_BUDGET 32 /* messages per wake-up, so one worker cannot starve the loop */

struct channel {
	struct channel *prev, *next; /* every channel: the receive gate reaches them all */
	int fd;			     /* -1 once closed */
	sd_event_source *src;
	const struct channel_ops *ops;
	void *userdata;
	uint64_t id;
	unsigned errors;
	bool full;	      /* the last send hit EAGAIN: EPOLLOUT is watched */
	bool drain_pending;   /* DRAIN found the channel full */
	uint16_t drain_flags; /* of the DRAIN pending */
	bool said_hello;      /* the worker runs libbaton (it may park) */
	bool paused;	      /* found the receive gate closed: EPOLLIN is not watched */
	size_t payload_max;
	int done_fd;		      /* the memfd of MSG_DONE_COUNTER, or -1 */
	const uint64_t *done_counter; /* mapped read-only; the worker adds to it */
	uint64_t done_seen;	      /* what of it was reported to conn_done */
	char app[PROTO_NAME_MAX + 1]; /* copied: a reload may free the configuration */
	char who[128];
};

/* One receive buffer for every channel: a message with its payload is 64 KiB,
 * and handlers never receive on another channel while they run. */
static struct proto_msg recv_msg;

static struct channel *all_channels;
static bool gate_closed; /* channel_receiving(false): batond holds what its fds allow */

/* The worker's finished-connection counter (docs/protocol.md, "Completion
 * counts"): a memfd batond creates, seals to its size (the worker cannot shrink
 * it under batond's mapping: no SIGBUS) and maps read-only (batond never writes
 * what the worker can). Also how a re-exec's counter is taken back. */
static int counter_map(struct channel *ch, int fd)
{
	struct stat sb;
	int seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, &sb) < 0 || seals < 0)
		return -errno;
	if (!(seals & F_SEAL_SHRINK) || sb.st_size < (off_t)sizeof(uint64_t))
		return -EBADF;
	void *p = mmap(NULL, sizeof(uint64_t), PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	ch->done_counter = p;
	ch->done_fd = fd;
	return 0;
}

static void counter_free(struct channel *ch)
{
	if (ch->done_counter)
		munmap((void *)ch->done_counter, sizeof(uint64_t));
	if (ch->done_fd >= 0)
		close(ch->done_fd);
	ch->done_counter = NULL;
	ch->done_fd = -1;
}

/* A worker that asked for it (HELLO_DONE_COUNTER) counts its finished
 * connections in a page batond reads when it places connections, instead of
 * a MSG_CONN_DONE (a sendmsg, and a wake-up of batond) every few. Without it
 * (no memory, a full channel) the worker goes on with MSG_CONN_DONE. */
static void offer_counter(struct channel *ch)
{
	int fd = memfd_create("baton-done", MFD_CLOEXEC | MFD_ALLOW_SEALING), r = 0;
	if (fd < 0)
		r = -errno;
	else if (ftruncate(fd, PROTO_DONE_COUNTER_BYTES) < 0 ||
		 fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		r = -errno;
	else
		r = counter_map(ch, fd);
	if (r == 0)
		r = proto_send(ch->fd, MSG_DONE_COUNTER, 0, 0, NULL, 0, &fd, 1);
	if (r < 0) {
		if (r != -EAGAIN && r != -EPIPE && r != -ECONNRESET)
			log_warn("%s: no shared completion counter, CONN_DONE it is: %s", ch->who,
				 strerror(-r));
		if (ch->done_fd != fd && fd >= 0)
			close(fd);
		counter_free(ch);
	}
}

void channel_poll_done(struct channel *ch)
{
	if (!ch || !ch->done_counter)
		return;
	uint64_t now = __atomic_load_n(ch->done_counter, __ATOMIC_ACQUIRE);
	/* The worker writes it: a count that went back is no news, and one far
	 * ahead is bounded where it is used (never more done than delivered). */
	if (now <= ch->done_seen)
		return;
	uint64_t n = now - ch->done_seen;
	ch->done_seen = now;
	ch->ops->conn_done(ch->userdata, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
}

static void channel_close(struct channel *ch)
{
	ch->src = sd_event_source_disable_unref(ch->src);
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
}

/* EPOLLIN unless paused, EPOLLOUT while full. With neither, the source is off:
 * a worker that hung up would otherwise wake the loop (EPOLLHUP) for nothing
 * until the gate opens. */
static void watch(struct channel *ch)
{
	if (!ch->src)
		return;
	uint32_t events = (ch->paused ? 0 : EPOLLIN) | (ch->full ? EPOLLOUT : 0);
	if (events) {
		sd_event_source_set_io_events(ch->src, events);
		sd_event_source_set_enabled(ch->src, SD_EVENT_ON);
	} else {
		sd_event_source_set_enabled(ch->src, SD_EVENT_OFF);
	}
}

static void watch_writable(struct channel *ch)
{
	ch->full = true;
	watch(ch);
}

void channel_receiving(bool on)
{
	if (gate_closed != on)
		return;
	gate_closed = !on;
	for (struct channel *ch = all_channels; on && ch; ch = ch->next)
		if (ch->paused) {
			ch->paused = false;
			watch(ch); /* what is queued wakes the loop again */
		}
}

static void reply_listener(struct channel *ch, const struct proto_msg *m)
{
	const char *name = (const char *)m->payload;
	/* An embedded NUL: no listener has that name. */
	int fd = strlen(name) == m->hdr.payload_bytes ? ch->ops->listener_fd(ch->userdata, name)
						      : -ENOENT;
	if (fd >= 0) {
		/* batond keeps its reference: the kernel duplicates the fd in flight. */
		int r = proto_send(ch->fd, MSG_LISTENER, 0, m->hdr.request_id, name, strlen(name),
				   &fd, 1);
		if (r < 0)
			log_warn("%s: cannot send listener \"%s\": %s", ch->who, name,
				 strerror(-r));
		return;
	}
	char text[200];
	if (fd == -EOPNOTSUPP)
		snprintf(text, sizeof(text),
			 "app \"%s\" is in dispatch mode: connections arrive on the channel",
			 ch->app);
	else
		snprintf(text, sizeof(text), "listener \"%.64s\" is not a listener of app \"%s\"",
			 name, ch->app);
	log_warn("%s asked for a listener: %s", ch->who, text);
	proto_send_status(ch->fd, MSG_ERROR, m->hdr.request_id, ENOENT, text);
}

/* One record per fd, each handed on (or refused and closed) on its own: one
 * refusal closes that connection, not the batch. Returns false if the worker
 * misbehaved (a bad record closes the whole message's fds). */
static bool handle_park(struct channel *ch, struct proto_msg *m)
{
	if (proto_conns_check(m->payload, m->hdr.payload_bytes, m->nfds) < 0) {
		log_warn("%s: bad PARK record; %zu connection%s closed", ch->who, m->nfds,
			 m->nfds == 1 ? "" : "s");
		return false; /* proto_msg_release closes the fds */
	}
	bool ok = true;
	size_t off = 0;
	for (size_t i = 0; i < m->nfds; i++) {
		struct proto_conn rec;
		proto_conn_get(m->payload, m->hdr.payload_bytes, &off, &rec);
		if (ch->ops->park(ch->userdata, proto_msg_take_fd(m, i), &rec) == -EPERM)
			ok = false;
	}
	return ok;
}

/* Our HELLO answers the worker's: it says what this batond takes (PARK in
 * batches). A worker that does not see it (full channel, an older batond)
 * parks one connection per message, which every batond takes. */
static int reply_hello(struct channel *ch)
{
	static const char hello[] = "batond " BATON_VERSION;
	int r =
	    proto_send(ch->fd, MSG_HELLO, HELLO_PARK_MANY, 0, hello, sizeof(hello) - 1, NULL, 0);
	if (r < 0 && r != -EAGAIN && r != -EPIPE && r != -ECONNRESET)
		log_warn("%s: cannot answer HELLO: %s", ch->who, strerror(-r));
	return r;
}

/* Returns false if the worker misbehaved. */
static bool handle(struct channel *ch, struct proto_msg *m)
{
	switch (m->hdr.type) {
	case MSG_HELLO:
		ch->said_hello = true;
		if (reply_hello(ch) == 0 && (m->hdr.flags & HELLO_DONE_COUNTER) &&
		    !ch->done_counter)
			offer_counter(ch);
		break;
	case MSG_LISTENER_GET:
		reply_listener(ch, m);
		break;
	case MSG_CONN_DONE: {
		uint32_t n;
		memcpy(&n, m->payload, sizeof(n));
		ch->ops->conn_done(ch->userdata, n);
		break;
	}
	case MSG_PARK:
		return handle_park(ch, m);
	}
	return true;
}

/* A bad message, or one the worker may not send now: after a few, the worker
 * is cut off. */
static void count_error(struct channel *ch)
{
	if (++ch->errors >= CHANNEL_MAX_ERRORS) {
		log_warn("%s: channel closed", ch->who);
		channel_close(ch);
	}
}

/* Handles up to @budget messages; @force: even with the gate closed (the
 * worker is gone: what it sent is read now or never). */
static void receive(struct channel *ch, unsigned budget, bool force)
{
	struct proto_msg *m = &recv_msg;
	for (; budget > 0 && ch->fd >= 0; budget--) {
		if (gate_closed && !force) {
			ch->paused = true;
			watch(ch);
			return;
		}
		int r = proto_recv(ch->fd, ROLE_WORKER_SERVER, m);
		if (r == -EAGAIN)
			return;
		if (r == 0) {
			channel_close(ch);
			return;
		}
		if (r == -ECONNRESET)
			/* The worker closed its end with messages of ours unread (it
			 * exited without reading DRAIN, say). The kernel reports that
			 * first, once; what it sent before closing is still queued. */
			continue;
		if (r < 0) {
			log_warn("%s: bad message on channel: %s", ch->who, strerror(-r));
			count_error(ch);
			continue;
		}
		bool ok = handle(ch, m);
		proto_msg_release(m);
		if (!ok)
			count_error(ch);
	}
}

static int on_channel(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct channel *ch = userdata;
	if (revents & EPOLLOUT) {
		ch->full = false;
		watch(ch);
		if (ch->drain_pending)
			channel_send_drain(ch, 0); /* watches again if still full */
		ch->ops->writable(ch->userdata);
	}
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
		receive(ch, CHANNEL_RECV_BUDGET, false);
	return 0;
}

void channel_flush_input(struct channel *ch)
{
	if (ch)
		receive(ch, UINT_MAX, true);
	channel_poll_done(ch);
}

/* Channel ids go on across a re-exec: a new image starts above the old one's. */
static uint64_t next_id = 1;

int channel_new(sd_event *event, int fd, const struct channel_ops *ops, void *userdata,
		const char *app, const char *who, struct channel **ret)
{
	struct channel *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		close(fd);
		return -ENOMEM;
	}
	ch->fd = fd;
	ch->done_fd = -1;
	ch->next = all_channels;
	if (all_channels)
		all_channels->prev = ch;
	all_channels = ch;
	ch->ops = ops;
	ch->userdata = userdata;
	ch->id = next_id++;
	ch->payload_max = proto_payload_max(fd);
	snprintf(ch->app, sizeof(ch->app), "%s", app);
	snprintf(ch->who, sizeof(ch->who), "%s", who);
	int r = sd_event_add_io(event, &ch->src, fd, EPOLLIN, on_channel, ch);
	if (r < 0) {
		channel_free(ch);
		return r;
	}
	*ret = ch;
	return 0;
}

void channel_free(struct channel *ch)
{
	if (!ch)
		return;
	channel_close(ch);
	counter_free(ch);
	if (ch->prev)
		ch->prev->next = ch->next;
	else
		all_channels = ch->next;
	if (ch->next)
		ch->next->prev = ch->prev;
	free(ch);
}

uint64_t channel_id(const struct channel *ch)
{
	return ch->id;
}

int channel_fd(const struct channel *ch)
{
	return ch->fd;
}

bool channel_drain_pending(const struct channel *ch, uint16_t *ret_flags)
{
	*ret_flags = ch->drain_flags;
	return ch->drain_pending;
}

uint64_t channel_next_id(void)
{
	return next_id;
}

int channel_restore(sd_event *event, int fd, const struct channel_carry *carry,
		    const struct channel_ops *ops, void *userdata, const char *app, const char *who,
		    struct channel **ret)
{
	if (carry->id >= next_id)
		next_id = carry->id + 1;
	struct channel *ch;
	int r = channel_new(event, fd, ops, userdata, app, who, &ch);
	if (r == 0 && carry->done_fd >= 0 && (r = counter_map(ch, carry->done_fd)) < 0)
		channel_free(ch);
	if (r < 0) {
		if (carry->done_fd >= 0)
			close(carry->done_fd);
		return r;
	}
	ch->id = carry->id;
	ch->said_hello = carry->said_hello;
	ch->done_seen = carry->done_seen;
	if (carry->drain_pending)
		channel_send_drain(ch, carry->drain_flags); /* the old image found it full */
	*ret = ch;
	return 0;
}

void channel_restore_next_id(uint64_t id)
{
	if (id > next_id)
		next_id = id;
}

bool channel_is_open(const struct channel *ch)
{
	return ch->fd >= 0;
}

bool channel_can_send(const struct channel *ch)
{
	return ch->fd >= 0 && !ch->full;
}

size_t channel_payload_max(const struct channel *ch)
{
	return ch->payload_max;
}

int channel_send_conns(struct channel *ch, const void *payload, size_t len, const int *fds,
		       size_t n)
{
	if (ch->fd < 0)
		return -ENOTCONN;
	int r = proto_send(ch->fd, MSG_CONN, 0, 0, payload, len, fds, n);
	if (r == -EAGAIN)
		watch_writable(ch);
	else if (r == -EPIPE || r == -ECONNRESET || r == -ECONNREFUSED || r == -ENOTCONN)
		/* The worker is gone (a dead SEQPACKET peer refuses): nothing more
		 * goes to it, its exit follows. */
		ch->full = true;
	return r;
}

void channel_send_drain(struct channel *ch, uint16_t flags)
{
	/* A DRAIN still pending goes as one with this one's flags. */
	flags |= ch->drain_pending ? ch->drain_flags : 0;
	ch->drain_pending = false;
	ch->drain_flags = 0;
	if (ch->fd < 0)
		return;
	int r = proto_send(ch->fd, MSG_DRAIN, flags, 0, NULL, 0, NULL, 0);
	if (r == -EAGAIN) {
		/* Connections sent before fill its channel: DRAIN follows them. */
		ch->drain_pending = true;
		ch->drain_flags = flags;
		watch_writable(ch);
	} else if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
		log_warn("%s: cannot send DRAIN: %s", ch->who, strerror(-r));
	}
}

bool channel_said_hello(const struct channel *ch)
{
	return ch && ch->said_hello;
}

int channel_done_counter(const struct channel *ch, uint64_t *ret_seen)
{
	*ret_seen = ch->done_seen;
	return ch->done_fd;
}
