/* SPDX-License-Identifier: MIT */
/* libbaton, the API of include/baton.h. Owns the process-wide state: the inherited
 * listeners, the channel to batond (BATON_FD) and the queue of events received on
 * it. The wire format is proto.c's; this file never logs, exits or aborts. */
#include "baton.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef BATON_VERSION
#define BATON_VERSION "0"
#endif

#define LISTEN_FDS_START   3
#define REQUEST_TIMEOUT_MS 5000 /* baton_listener() waiting for batond */
#define SEND_TIMEOUT_MS	   1000 /* a full channel: batond is not reading */
/* A PARK waits longer: batond stops reading parks while it holds what its fds
 * allow, until the next generation took half of it (docs/protocol.md). */
#define PARK_TIMEOUT_MS 5000

_Static_assert(BATON_NAME_MAX == PROTO_NAME_MAX, "names fit both ways");
_Static_assert(BATON_TAG_MAX == PROTO_TAG_MAX, "tags fit both ways");
_Static_assert(BATON_STATE_MAX == PROTO_STATE_MAX, "parked state fits both ways");
_Static_assert(BATON_CONN_ADOPTED == CONN_ADOPTED, "one flag value");

struct inherited {
	int fd; /* -1 once handed out */
	char name[BATON_NAME_MAX + 1];
};

/* One received message waiting to become events: a DRAIN, or the connections of
 * a MSG_CONN not yet handed out (records already validated). */
struct batch {
	struct batch *next;
	enum baton_event_type type;
	unsigned drain_flags; /* BATON_DRAIN_NOW */
	uint8_t *payload;
	size_t payload_bytes;
	size_t offset; /* of the next record */
	int *fds;      /* slots handed out are -1 */
	size_t nfds;
	size_t next_fd;
};

/* A baton_listener() request waiting for its answer. */
struct request {
	uint32_t id;
	const char *name;
	int result; /* fd or negative errno, once answered */
};

static struct {
	bool initialised;
	struct inherited *listeners;
	size_t n_listeners;
	int channel; /* -1: no BATON_FD */
	bool channel_eof;
	bool park_many; /* batond's HELLO said PARK may carry a batch */
	uint32_t last_request_id;
	uint32_t done_pending;	   /* MSG_CONN_DONE count not sent yet */
	uint64_t *done_counter;	   /* batond's MSG_DONE_COUNTER page, mapped: counts go there */
	uint64_t conns_handed;	   /* connections returned by baton_next_event() */
	uint64_t conns_done;	   /* connections reported by baton_conn_done() */
	long long done_since_msec; /* when the oldest unsent count was reported */
	struct batch *head, *tail;
	struct batch *retired; /* holds the state bytes of the last event returned */
	struct proto_msg *msg; /* 66 KiB receive buffer, not on the caller's stack */
} st = {.channel = -1};

static const char *const env_names[] = {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "BATON_FD"};

/* A plain decimal number: digits only, no sign, no space, at most @max. */
static int parse_decimal(const char *s, unsigned long max, unsigned long *ret)
{
	unsigned long v = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned digit = (unsigned)(*s - '0');
		if (v > (max - digit) / 10)
			return -EINVAL;
		v = v * 10 + digit;
	}
	*ret = v;
	return 0;
}

static int set_fd_flag(int fd, int flag)
{
	int flags = fcntl(fd, F_GETFD);
	if (flags < 0 || (!(flags & flag) && fcntl(fd, F_SETFD, flags | flag) < 0))
		return -errno;
	return 0;
}

/* Splits LISTEN_FDNAMES into @n names; absent, every name is "unknown". */
static int read_names(struct inherited *ls, size_t n)
{
	const char *p = getenv("LISTEN_FDNAMES");
	for (size_t i = 0; i < n; i++) {
		if (!p) {
			strcpy(ls[i].name, "unknown");
			continue;
		}
		size_t len = strcspn(p, ":");
		/* Fewer or more names than fds, or a name too long. */
		if (p[len] != (i + 1 == n ? '\0' : ':') || len > BATON_NAME_MAX)
			return -EINVAL;
		memcpy(ls[i].name, p, len);
		ls[i].name[len] = 0;
		p += len + 1;
	}
	return 0;
}

/* The systemd contract: LISTEN_PID must be ours, else the fds are not for us. */
static int read_listen_fds(struct inherited **ret, size_t *ret_n)
{
	const char *pid_env = getenv("LISTEN_PID"), *fds_env = getenv("LISTEN_FDS");
	unsigned long pid, n;
	if (!pid_env || !fds_env)
		return 0;
	if (parse_decimal(pid_env, INT_MAX, &pid) < 0 || pid == 0)
		return -EINVAL;
	if ((pid_t)pid != getpid())
		return 0;
	if (parse_decimal(fds_env, INT_MAX - LISTEN_FDS_START, &n) < 0)
		return -EINVAL;
	/* Check every fd is open before allocating for a huge count. */
	for (unsigned long i = 0; i < n; i++)
		if (fcntl(LISTEN_FDS_START + (int)i, F_GETFD) < 0)
			return -EBADF;
	if (n == 0)
		return 0;
	struct inherited *ls = calloc(n, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	int r = read_names(ls, n);
	for (size_t i = 0; r == 0 && i < n; i++) {
		ls[i].fd = LISTEN_FDS_START + (int)i;
		r = set_fd_flag(ls[i].fd, FD_CLOEXEC);
	}
	if (r < 0) {
		free(ls);
		return r;
	}
	*ret = ls;
	*ret_n = n;
	return 0;
}

static int read_baton_fd(int *ret)
{
	const char *env = getenv("BATON_FD");
	unsigned long fd;
	int type, domain;
	socklen_t len = sizeof(type);
	if (!env)
		return 0;
	if (parse_decimal(env, INT_MAX, &fd) < 0)
		return -EINVAL;
	if (fcntl((int)fd, F_GETFD) < 0)
		return -EBADF;
	if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return -errno;
	len = sizeof(domain);
	if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return -errno;
	if (type != SOCK_SEQPACKET || domain != AF_UNIX)
		return -EPROTOTYPE;
	int r = set_fd_flag((int)fd, FD_CLOEXEC);
	if (r < 0)
		return r;
	int fl = fcntl((int)fd, F_GETFL);
	if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	*ret = (int)fd;
	return 0;
}

/* Milliseconds of @clock: CLOCK_MONOTONIC for deadlines, the _COARSE one
 * where a tick's precision is plenty and the call is on every connection. */
static long long now_ms(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for @events on @fd until @deadline_ms. Returns 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, long long deadline_ms)
{
	for (;;) {
		long long left = deadline_ms - now_ms(CLOCK_MONOTONIC);
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = events};
		int n = poll(&pfd, 1, (int)(left > INT_MAX ? INT_MAX : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* proto_send on the non-blocking channel, waiting a bounded time when it is full. */
static int channel_send(int fd, uint8_t type, uint16_t flags, uint32_t id, const void *payload,
			size_t len, const int *fds, size_t nfds, int timeout_ms)
{
	long long deadline = now_ms(CLOCK_MONOTONIC) + timeout_ms;
	for (;;) {
		int r = proto_send(fd, type, flags, id, payload, len, fds, nfds);
		if (r != -EAGAIN)
			return r;
		r = wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return r == -ETIMEDOUT ? -EAGAIN : r;
	}
}

static int send_hello(int fd)
{
	char hello[64];
	int len =
	    snprintf(hello, sizeof(hello), "libbaton %s pid %d", BATON_VERSION, (int)getpid());
	/* HELLO_DONE_COUNTER: a batond that knows it answers with a page to count
	 * finished connections in; an older one ignores the flag. */
	return channel_send(fd, MSG_HELLO, HELLO_DONE_COUNTER, 0, hello, (size_t)len, NULL, 0,
			    SEND_TIMEOUT_MS);
}

int baton_init(unsigned flags)
{
	struct inherited *ls = NULL;
	size_t n_ls = 0;
	int channel = -1;
	struct proto_msg *msg = NULL;
	if (st.initialised)
		return -EALREADY;
	if (flags & ~BATON_INIT_UNSET_ENV)
		return -EINVAL;

	int r = read_listen_fds(&ls, &n_ls);
	if (r < 0)
		goto fail;
	r = read_baton_fd(&channel);
	if (r < 0)
		goto fail;
	if (channel >= LISTEN_FDS_START && (size_t)(channel - LISTEN_FDS_START) < n_ls) {
		r = -EINVAL; /* the channel cannot also be a listener */
		goto fail;
	}
	if (channel >= 0) {
		msg = malloc(sizeof(*msg));
		if (!msg) {
			r = -ENOMEM;
			goto fail;
		}
		r = send_hello(channel);
		if (r < 0)
			goto fail;
	}
	if (flags & BATON_INIT_UNSET_ENV)
		for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
			unsetenv(env_names[i]);
	st.listeners = ls;
	st.n_listeners = n_ls;
	st.channel = channel;
	st.msg = msg;
	st.initialised = true;
	return 0;
fail:
	free(msg);
	free(ls);
	return r;
}

static int ensure_init(void)
{
	return st.initialised ? 0 : baton_init(0);
}

static void batch_free(struct batch *b)
{
	if (!b)
		return;
	for (size_t i = b->next_fd; i < b->nfds; i++)
		if (b->fds[i] >= 0)
			close(b->fds[i]);
	free(b->fds);
	free(b->payload);
	free(b);
}

void baton_close(void)
{
	if (!st.initialised)
		return;
	while (st.head) {
		struct batch *b = st.head;
		st.head = b->next;
		batch_free(b);
	}
	batch_free(st.retired);
	if (st.done_counter)
		munmap(st.done_counter, sizeof(*st.done_counter));
	if (st.channel >= 0)
		close(st.channel);
	for (size_t i = 0; i < st.n_listeners; i++)
		if (st.listeners[i].fd >= 0)
			close(st.listeners[i].fd);
	free(st.listeners);
	free(st.msg);
	/* The fds the environment names are now closed or the application's. */
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
	memset(&st, 0, sizeof(st));
	st.channel = -1;
}

/* ---- Listeners ------------------------------------------------------------ */

int baton_listeners(struct baton_listener *out, size_t max)
{
	int r = ensure_init();
	if (r < 0)
		return r;
	size_t n = 0;
	for (size_t i = 0; i < st.n_listeners; i++)
		n += st.listeners[i].fd >= 0;
	if (!out)
		return (int)n;
	if (max < n)
		return -ENOBUFS;
	n = 0;
	for (size_t i = 0; i < st.n_listeners; i++) {
		if (st.listeners[i].fd < 0)
			continue;
		out[n].fd = st.listeners[i].fd;
		memcpy(out[n].name, st.listeners[i].name, sizeof(out[n].name));
		st.listeners[i].fd = -1;
		n++;
	}
	return (int)n;
}

/* ---- Receiving ------------------------------------------------------------ */

static void queue_batch(struct batch *b)
{
	if (st.tail)
		st.tail->next = b;
	else
		st.head = b;
	st.tail = b;
}

/* Checks every record of a MSG_CONN (one per fd, nothing after the last) and
 * queues it, taking its fds. */
static int queue_conns(struct proto_msg *m)
{
	size_t offset = 0, len = m->hdr.payload_bytes;
	struct proto_conn c;
	for (size_t i = 0; i < m->nfds; i++)
		if (proto_conn_get(m->payload, len, &offset, &c) < 0)
			return -EBADMSG;
	if (offset != len)
		return -EBADMSG;

	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->type = BATON_EVENT_CONN;
	b->payload = malloc(len);
	b->fds = malloc(m->nfds * sizeof(int));
	if (!b->payload || !b->fds) {
		batch_free(b);
		return -ENOMEM;
	}
	memcpy(b->payload, m->payload, len);
	b->payload_bytes = len;
	for (size_t i = 0; i < m->nfds; i++)
		b->fds[i] = proto_msg_take_fd(m, i);
	b->nfds = m->nfds;
	queue_batch(b);
	return 1;
}

/* MSG_DONE_COUNTER: from now on baton_conn_done() adds to the page's first
 * 8 bytes, and batond reads them when it places connections; what was kept
 * for a MSG_CONN_DONE goes there too. A page that cannot be mapped leaves the
 * worker on MSG_CONN_DONE. */
static void take_counter(struct proto_msg *m)
{
	int fd = proto_msg_take_fd(m, 0);
	struct stat sb;
	if (!st.done_counter && fstat(fd, &sb) == 0 && sb.st_size >= (off_t)sizeof(uint64_t)) {
		void *p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			st.done_counter = p;
			__atomic_fetch_add(st.done_counter, st.done_pending, __ATOMIC_RELEASE);
			st.done_pending = 0;
		}
	}
	close(fd);
}

static int queue_drain(uint16_t flags)
{
	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->type = BATON_EVENT_DRAIN;
	b->drain_flags = flags & DRAIN_NOW ? BATON_DRAIN_NOW : 0;
	queue_batch(b);
	return 1;
}

/* MSG_LISTENER or MSG_ERROR: the answer to @req when the request ids match; a
 * stale or unsolicited answer is dropped (its fd closed by the caller). */
static int answer(struct request *req, struct proto_msg *m)
{
	if (!req || m->hdr.request_id != req->id)
		return 0;
	if (m->hdr.type == MSG_ERROR) {
		int32_t code;
		const char *text;
		proto_parse_status(m, &code, &text);
		req->result = code > 0 && code < 4096 ? -code : -EPROTO;
	} else if (m->hdr.payload_bytes != strlen(req->name) ||
		   memcmp(m->payload, req->name, m->hdr.payload_bytes) != 0) {
		req->result = -EPROTO; /* a listener, but not the one asked for */
	} else {
		req->result = proto_msg_take_fd(m, 0);
	}
	return 2;
}

/* Receives one message and files it. Returns 1 when it queued events, 2 when it
 * answered @req, 0 for nothing to report (HELLO, stale answer), -EAGAIN, or an
 * error (-ECONNRESET for a closed channel, a bad message dropped). */
static int channel_read_one(struct request *req)
{
	if (st.channel_eof)
		return -ECONNRESET;
	struct proto_msg *m = st.msg;
	int r = proto_recv(st.channel, ROLE_WORKER_CLIENT, m);
	if (r == 0 || r == -ECONNRESET) {
		st.channel_eof = true;
		return -ECONNRESET;
	}
	if (r < 0)
		return r;
	switch (m->hdr.type) {
	case MSG_DRAIN:
		r = queue_drain(m->hdr.flags);
		break;
	case MSG_CONN:
		r = queue_conns(m);
		break;
	case MSG_LISTENER:
	case MSG_ERROR:
		r = answer(req, m);
		break;
	case MSG_HELLO:
		if (m->hdr.flags & HELLO_PARK_MANY)
			st.park_many = true;
		r = 0;
		break;
	case MSG_DONE_COUNTER:
		take_counter(m);
		r = 0;
		break;
	default: /* proto_recv refused every type a worker does not take */
		r = 0;
		break;
	}
	proto_msg_release(m);
	return r;
}

/* MSG_CONN_DONE is batond's load signal, not an acknowledgement: while the
 * worker is busy, counts are sent in batches (every DONE_BATCH connections or
 * DONE_DELAY_MSEC), which spares a message and a wake-up of batond per
 * connection; the moment the worker has nothing left, the count goes at once,
 * so an idle worker never looks busy. */
#define DONE_BATCH	32
#define DONE_DELAY_MSEC 10

static bool done_due(void)
{
	return st.conns_done >= st.conns_handed || st.done_pending >= DONE_BATCH ||
	       now_ms(CLOCK_MONOTONIC_COARSE) - st.done_since_msec >= DONE_DELAY_MSEC;
}

static int flush_done(void)
{
	if (st.done_pending == 0 || !done_due())
		return 0;
	uint32_t count = st.done_pending;
	int r = proto_send(st.channel, MSG_CONN_DONE, 0, 0, &count, sizeof(count), NULL, 0);
	if (r == -EAGAIN)
		return 0; /* kept for the next call */
	if (r < 0)
		return r;
	st.done_pending = 0;
	return 0;
}

int baton_listener(const char *name)
{
	size_t len = name ? strlen(name) : 0;
	if (len == 0 || len > BATON_NAME_MAX)
		return -EINVAL;
	int r = ensure_init();
	if (r < 0)
		return r;
	for (size_t i = 0; i < st.n_listeners; i++)
		if (st.listeners[i].fd >= 0 && strcmp(st.listeners[i].name, name) == 0) {
			int fd = st.listeners[i].fd;
			st.listeners[i].fd = -1;
			return fd;
		}
	if (st.channel < 0)
		return st.n_listeners > 0 ? -ENOENT : -ENXIO;
	if (st.channel_eof)
		return -ECONNRESET;

	struct request req = {.id = ++st.last_request_id, .name = name};
	if (req.id == 0)
		req.id = ++st.last_request_id; /* 0 means "no request" on the wire */
	r = channel_send(st.channel, MSG_LISTENER_GET, 0, req.id, name, len, NULL, 0,
			 SEND_TIMEOUT_MS);
	if (r < 0)
		return r;
	long long deadline = now_ms(CLOCK_MONOTONIC) + REQUEST_TIMEOUT_MS;
	for (;;) {
		r = channel_read_one(&req);
		if (r == 2)
			return req.result;
		if (r == -EAGAIN)
			r = wait_fd(st.channel, POLLIN, deadline);
		/* A bad message in between is dropped; keep waiting for the answer. */
		if (r < 0 && r != -EPROTO && r != -EBADMSG && r != -EMSGSIZE)
			return r;
	}
}

/* ---- Events --------------------------------------------------------------- */

int baton_fd(void)
{
	int r = ensure_init();
	if (r < 0)
		return r;
	return st.channel >= 0 ? st.channel : -ENXIO;
}

static void fill_conn(struct batch *b, struct baton_event *ev)
{
	struct proto_conn c;
	/* Cannot fail: queue_conns checked every record. */
	proto_conn_get(b->payload, b->payload_bytes, &b->offset, &c);
	ev->fd = b->fds[b->next_fd];
	b->fds[b->next_fd++] = -1;
	ev->flags = c.flags;
	memcpy(ev->listener, c.name, c.name_len);
	ev->listener[c.name_len] = 0;
	memcpy(ev->tag, c.tag, c.tag_len);
	ev->tag[c.tag_len] = 0;
	if (c.addr_len)
		memcpy(&ev->peer, c.addr, c.addr_len);
	ev->peer_len = c.addr_len;
	ev->state = c.state;
	ev->state_len = c.state_len;
}

int baton_next_event(struct baton_event *ev)
{
	int r = ensure_init();
	if (r < 0)
		return r;
	if (st.channel < 0)
		return -ENXIO;
	batch_free(st.retired);
	st.retired = NULL;
	flush_done();
	while (!st.head) {
		r = channel_read_one(NULL);
		if (r == -EAGAIN)
			return 0;
		if (r < 0)
			return r;
	}
	struct batch *b = st.head;
	struct baton_event e = {.type = b->type, .fd = -1, .flags = b->drain_flags};
	if (b->type == BATON_EVENT_CONN) {
		fill_conn(b, &e);
		st.conns_handed++;
	}
	if (b->next_fd == b->nfds) {
		st.head = b->next;
		if (!st.head)
			st.tail = NULL;
		st.retired = b; /* e.state points into it until the next call */
	}
	*ev = e;
	return 1;
}

static int channel_usable(void)
{
	int r = ensure_init();
	if (r < 0)
		return r;
	if (st.channel < 0)
		return -ENXIO;
	return st.channel_eof ? -ECONNRESET : 0;
}

int baton_conn_done(unsigned count)
{
	int r = channel_usable();
	if (r < 0)
		return r;
	st.conns_done += count;
	if (st.done_counter) {
		__atomic_fetch_add(st.done_counter, count, __ATOMIC_RELEASE);
		return 0;
	}
	if (st.done_pending == 0)
		st.done_since_msec = now_ms(CLOCK_MONOTONIC_COARSE);
	st.done_pending =
	    count > UINT32_MAX - st.done_pending ? UINT32_MAX : st.done_pending + count;
	return flush_done();
}

static int park_check(const struct baton_park_conn *c)
{
	size_t name_len = c->listener ? strlen(c->listener) : 0,
	       tag_len = c->tag ? strlen(c->tag) : 0;
	if (c->fd < 0)
		return -EBADF;
	if (name_len == 0 || name_len > BATON_NAME_MAX || tag_len > BATON_TAG_MAX ||
	    (c->state_len && !c->state) || (c->peer_len && !c->peer) ||
	    c->peer_len > sizeof(struct sockaddr_storage))
		return -EINVAL;
	if (c->state_len > BATON_STATE_MAX)
		return -EMSGSIZE;
	return 0;
}

/* Appends @c's record to @buf (capacity @cap) at *offset. Returns 0, -EMSGSIZE
 * when it does not fit, or -EBADF. */
static int park_put(uint8_t *buf, size_t cap, size_t *offset, const struct baton_park_conn *c)
{
	struct sockaddr_storage peer;
	socklen_t peer_len = c->peer_len;
	if (c->peer) {
		memcpy(&peer, c->peer, peer_len);
	} else {
		peer_len = sizeof(peer);
		if (getpeername(c->fd, (struct sockaddr *)&peer, &peer_len) < 0) {
			if (errno == EBADF)
				return -EBADF;
			peer_len = 0; /* not connected, or not a socket: parked all the same */
		}
	}
	struct proto_conn rec = {
	    .name = c->listener,
	    .name_len = (uint8_t)strlen(c->listener),
	    .tag = c->tag,
	    .tag_len = (uint8_t)(c->tag ? strlen(c->tag) : 0),
	    .addr = &peer,
	    .addr_len = (uint16_t)(peer_len > sizeof(peer) ? sizeof(peer) : peer_len),
	    .state = c->state,
	    .state_len = (uint16_t)c->state_len,
	};
	return proto_conn_put(buf, cap, offset, &rec);
}

/* batond's HELLO (which says whether PARK takes batches) answers ours: it is
 * queued by now, unless batond has not read ours yet. Events read meanwhile
 * are queued for baton_next_event(). */
static void read_pending(void)
{
	for (int i = 0; i < 64 && !st.park_many; i++) {
		int r = channel_read_one(NULL);
		if (r < 0 && r != -EPROTO && r != -EBADMSG && r != -EMSGSIZE)
			return;
	}
}

/* Waits until batond has read everything we sent (nothing left in our send
 * queue), at most PARK_TIMEOUT_MS: a worker that exits right after parking
 * then leaves nothing for batond to read all at once, past the number of
 * connections its fds let it hold. No event says "read": 1 ms naps. */
static void wait_taken(void)
{
	long long deadline = now_ms(CLOCK_MONOTONIC) + PARK_TIMEOUT_MS;
	int queued = 0;
	while (ioctl(st.channel, SIOCOUTQ, &queued) == 0 && queued > 0 &&
	       now_ms(CLOCK_MONOTONIC) < deadline) {
		struct timespec nap = {.tv_nsec = 1000 * 1000};
		nanosleep(&nap, NULL);
	}
}

int baton_park_many(const struct baton_park_conn *conns, size_t n)
{
	if (n > INT_MAX || (n && !conns))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int r = park_check(&conns[i]);
		if (r < 0)
			return r;
	}
	int r = channel_usable();
	if (r < 0 || n == 0)
		return r;
	read_pending();
	size_t per_msg = st.park_many ? PROTO_MAX_FDS : 1, cap = proto_payload_max(st.channel);
	uint8_t *buf = malloc(PROTO_MAX_PAYLOAD);
	if (!buf)
		return -ENOMEM;
	size_t parked = 0;
	while (parked < n) {
		int fds[PROTO_MAX_FDS];
		size_t len = 0, k = 0;
		for (; k < per_msg && parked + k < n; k++) {
			r = park_put(buf, cap, &len, &conns[parked + k]);
			if (r < 0)
				break;
			fds[k] = conns[parked + k].fd;
		}
		/* Not even one fits: the state limit keeps that from happening
		 * unless the application shrank the channel's send buffer. */
		if (k == 0)
			break;
		uint32_t id = ++st.last_request_id;
		r = channel_send(st.channel, MSG_PARK, 0, id ? id : ++st.last_request_id, buf, len,
				 fds, k, PARK_TIMEOUT_MS);
		if (r < 0)
			break;
		proto_close_fds(fds, k); /* batond has them now */
		parked += k;
		r = 0;
	}
	free(buf);
	if (parked > 0)
		wait_taken();
	return parked > 0 ? (int)parked : r;
}

int baton_park(int fd, const char *listener, const char *tag, const void *state, size_t state_len)
{
	struct baton_park_conn c = {
	    .fd = fd, .listener = listener, .tag = tag, .state = state, .state_len = state_len};
	int r = baton_park_many(&c, 1);
	return r < 0 ? r : 0;
}

/* ---- Notify --------------------------------------------------------------- */

int baton_notify(const char *state)
{
	if (!state || !*state)
		return -EINVAL;
	const char *addr = getenv("NOTIFY_SOCKET");
	if (!addr || !*addr)
		return 0;
	if (addr[0] != '/' && addr[0] != '@')
		return -EAFNOSUPPORT;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(addr);
	/* A path needs its NUL inside sun_path; an abstract name has none. */
	if (len > sizeof(sa.sun_path) || (addr[0] == '/' && len == sizeof(sa.sun_path)))
		return -EINVAL;
	memcpy(sa.sun_path, addr, len);
	if (addr[0] == '@')
		sa.sun_path[0] = 0;
	socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);

	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ssize_t n;
	do
		n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, sa_len);
	while (n < 0 && errno == EINTR);
	int r = n < 0 ? -errno : 1;
	close(fd);
	return r;
}

int baton_ready(void)
{
	return baton_notify("READY=1");
}

int baton_status(const char *fmt, ...)
{
	char buf[sizeof("STATUS=") + 4096];
	va_list ap;
	if (!fmt)
		return -EINVAL;
	memcpy(buf, "STATUS=", 7);
	va_start(ap, fmt);
	int n = vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	return baton_notify(buf);
}
