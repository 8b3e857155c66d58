/* SPDX-License-Identifier: MIT */
/* testsrv: an unmodified systemd-style server for baton's integration tests. It knows nothing
 * of baton: libsystemd's sd_listen_fds_with_names() gives it its sockets, sd_notify() says
 * READY/STATUS/STOPPING. It serves HTTP/1.1 on every inherited stream listener, echoes on every
 * datagram one, drains on SIGTERM, and can misbehave on request (see usage()). */

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define IN_MAX_BYTES	16384
#define OUT_MAX_BYTES	1024
#define DGRAM_MAX_BYTES 65536
#define BATCH		64    /* accepts or datagrams per wake-up, for fairness */
#define DRAIN_GRACE_MS	1000  /* how long an idle keep-alive connection may still send */
#define LINGER_MS	2000  /* after our last response, wait this long for the client's EOF */
#define IDLE_TIMEOUT_MS 60000 /* an idle keep-alive connection outside a drain */
#define SWEEP_PERIOD_MS 50

enum handle_kind { H_STREAM_LISTENER, H_DGRAM_LISTENER, H_CONN, H_SIGNAL };

struct handle {
	enum handle_kind kind;
	int fd;
};

struct listener {
	struct handle h; /* first: epoll data points here */
	char *name;
	struct listener *next;
};

struct conn {
	struct handle h; /* first: epoll data points here */
	char in[IN_MAX_BYTES];
	size_t in_len;
	char out[OUT_MAX_BYTES];
	size_t out_len;
	size_t out_off;
	bool close_after_write;
	bool lingering;
	uint64_t last_active_ms;
	uint64_t linger_deadline_ms;
	uint32_t events; /* what epoll watches now */
	struct conn *prev, *next;
};

struct options {
	uint64_t ready_delay_ms;
	uint64_t accept_delay_ms; /* after READY=1, before the first accept */
	bool never_ready;
	int exit_before_ready; /* -1: no */
	bool no_notify;
	bool ignore_term;
	const char *dump_path;
	int64_t crash_after_ms; /* -1: no */
	const char *status;
};

static struct {
	struct options opt;
	int epoll_fd;
	struct handle signal;
	struct listener *listeners;
	struct conn *conns;
	size_t n_conns;
	bool ready_sent;
	bool accepting; /* its stream listeners are in the epoll set */
	bool draining;
	uint64_t start_ms;
	uint64_t ready_ms;
	uint64_t drain_start_ms;
	uint64_t next_sweep_ms;
	char body[256];
	size_t body_len;
} srv = {.epoll_fd = -1, .signal = {.kind = H_SIGNAL, .fd = -1}};

static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "testsrv[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void notify(const char *state)
{
	int r;

	if (srv.opt.no_notify)
		return;
	r = sd_notify(0, state);
	if (r < 0)
		say("sd_notify(%s): %s", state, strerror(-r));
}

/* ---- --dump: what the process was handed, for the tests to inspect. ---- */

static const char *fdname_of(int fd, char *buf, size_t cap)
{
	const char *names = getenv("LISTEN_FDNAMES"), *count = getenv("LISTEN_FDS");
	long n = count ? strtol(count, NULL, 10) : 0;

	if (fd < SD_LISTEN_FDS_START || fd >= SD_LISTEN_FDS_START + n)
		return NULL;
	if (!names)
		return "unknown";
	for (int i = SD_LISTEN_FDS_START; names && i <= fd; i++) {
		const char *colon = strchr(names, ':');
		size_t len = colon ? (size_t)(colon - names) : strlen(names);

		if (i == fd) {
			if (len >= cap)
				len = cap - 1;
			memcpy(buf, names, len);
			buf[len] = '\0';
			return buf;
		}
		names = colon ? colon + 1 : NULL;
	}
	return "unknown";
}

static const char *socket_type_of(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return NULL;
	switch (type) {
	case SOCK_STREAM:
		return "stream";
	case SOCK_DGRAM:
		return "dgram";
	case SOCK_SEQPACKET:
		return "seqpacket";
	default:
		return "other";
	}
}

/* Writes FILE.tmp and renames it, so a test that sees FILE sees all of it. Runs before this
 * process opens anything, so the fd list is exactly what it inherited. */
static int dump_write(const char *path)
{
	extern char **environ;
	int fds[1024], n_fds = 0, r = 0, fd;
	char tmp[PATH_MAX];
	DIR *dir;
	FILE *f;

	dir = opendir("/proc/self/fd");
	if (!dir)
		return -errno;
	for (struct dirent *de;
	     (de = readdir(dir)) && n_fds < (int)(sizeof(fds) / sizeof(fds[0]));) {
		char *end;
		long v = strtol(de->d_name, &end, 10);

		if (de->d_name[0] == '.' || *end || v == dirfd(dir))
			continue;
		fds[n_fds++] = (int)v;
	}
	closedir(dir);

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		unlink(tmp);
		return r;
	}
	for (char **e = environ; *e; e++)
		if (!strncmp(*e, "LISTEN_", 7) || !strncmp(*e, "NOTIFY_", 7) ||
		    !strncmp(*e, "BATON_", 6))
			fprintf(f, "%s\n", *e);
	/* The signals it was started with ignored and blocked, as /proc says. */
	FILE *st = fopen("/proc/self/status", "re");
	char line[256];
	while (st && fgets(line, sizeof(line), st))
		if (!strncmp(line, "SigIgn:", 7) || !strncmp(line, "SigBlk:", 7))
			fprintf(f, "%.6s=%s", line, line + 8);
	if (st)
		fclose(st);
	for (int i = 0; i < n_fds; i++) {
		char link[64], target[PATH_MAX], name[256];
		const char *fdname = fdname_of(fds[i], name, sizeof(name)), *type;
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fds[i]);
		len = readlink(link, target, sizeof(target) - 1);
		if (len < 0)
			continue; /* closed meanwhile: it was the dump's own */
		target[len] = '\0';
		fprintf(f, "fd %d %s", fds[i], target);
		type = strncmp(target, "socket:", 7) ? NULL : socket_type_of(fds[i]);
		if (type)
			fprintf(f, " type=%s", type);
		if (fdname)
			fprintf(f, " name=%s", fdname);
		fputc('\n', f);
	}
	fprintf(f, "END\n");
	if (fflush(f) != 0 || ferror(f))
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* ---- connections ---- */

static int watch(struct handle *h, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = h};

	if (epoll_ctl(srv.epoll_fd, op, h->fd, &ev) < 0)
		return -errno;
	return 0;
}

static void conn_free(struct conn *c)
{
	/* close() also takes it out of the epoll set. */
	close(c->h.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv.n_conns--;
	free(c);
}

static void conn_want(struct conn *c, uint32_t events)
{
	if (c->events == events)
		return;
	if (watch(&c->h, events, EPOLL_CTL_MOD) < 0) {
		say("epoll_ctl: %s", strerror(errno));
		return;
	}
	c->events = events;
}

static bool conn_idle(const struct conn *c)
{
	return c->in_len == 0 && c->out_len == 0 && !c->lingering;
}

static void conn_linger(struct conn *c)
{
	/* Half-close and wait for the client's EOF: a close() with unread input would reset the
	 * connection and could destroy the response before the client read it. */
	shutdown(c->h.fd, SHUT_WR);
	c->lingering = true;
	c->in_len = 0;
	c->linger_deadline_ms = now_ms() + LINGER_MS;
	conn_want(c, EPOLLIN);
}

/* The value of header @name in the request head (after the request line), from
 * just after its ':' to the end of its line; NULL if absent. */
static const char *header_value(const char *head, size_t len, const char *name,
				const char **value_end)
{
	size_t nlen = strlen(name);
	const char *line = memmem(head, len, "\r\n", 2), *end = head + len;

	while (line && line + 2 < end) {
		const char *eol;

		line += 2;
		eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		if (!eol)
			break;
		if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
		    !strncasecmp(line, name, nlen)) {
			*value_end = eol;
			return line + nlen + 1;
		}
		line = eol;
	}
	return NULL;
}

static bool header_has(const char *head, size_t len, const char *name, const char *token)
{
	size_t tlen = strlen(token);
	const char *eol, *p = header_value(head, len, name, &eol);

	for (; p && p + tlen <= eol; p++)
		if (!strncasecmp(p, token, tlen))
			return true;
	return false;
}

static long header_long(const char *head, size_t len, const char *name)
{
	const char *eol, *p = header_value(head, len, name, &eol);
	if (!p)
		return 0;
	long v = strtol(p, NULL, 10);
	return v < 0 ? -1 : v;
}

static void respond(struct conn *c, int status, const char *reason, bool head_only, bool keep)
{
	const char *body = status == 200 ? srv.body : "";
	size_t body_len = status == 200 ? srv.body_len : 0;
	int n;

	n = snprintf(c->out, sizeof(c->out),
		     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		     "Connection: %s\r\n\r\n%s",
		     status, reason, body_len, keep ? "keep-alive" : "close",
		     head_only ? "" : body);
	c->out_len = n < 0 ? 0 : (size_t)n < sizeof(c->out) ? (size_t)n : sizeof(c->out) - 1;
	c->out_off = 0;
	c->close_after_write = !keep;
}

/* Takes one complete request off c->in, if there is one, and queues its response. */
static void conn_process(struct conn *c)
{
	const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	size_t head_len, total;
	char method[16];
	int minor = -1;
	long body_len;
	bool keep;

	if (!end) {
		if (c->in_len == sizeof(c->in))
			respond(c, 431, "Request Header Fields Too Large", false, false);
		return;
	}
	head_len = (size_t)(end - c->in) + 4;
	if (sscanf(c->in, "%15s %*s HTTP/1.%d", method, &minor) != 2 || minor < 0 || minor > 1) {
		respond(c, 400, "Bad Request", false, false);
		return;
	}
	if (header_has(c->in, head_len, "transfer-encoding", "chunked")) {
		respond(c, 501, "Not Implemented", false, false);
		return;
	}
	body_len = header_long(c->in, head_len, "content-length");
	if (body_len < 0 || (size_t)body_len > sizeof(c->in) - head_len) {
		respond(c, 413, "Content Too Large", false, false);
		return;
	}
	total = head_len + (size_t)body_len;
	if (c->in_len < total)
		return; /* the body is still on its way: mid-request */

	keep = minor == 1 ? !header_has(c->in, head_len, "connection", "close")
			  : header_has(c->in, head_len, "connection", "keep-alive");
	/* A draining server finishes this request and tells the client to go elsewhere. */
	if (srv.draining)
		keep = false;
	respond(c, 200, "OK", !strcmp(method, "HEAD"), keep);
	memmove(c->in, c->in + total, c->in_len - total);
	c->in_len -= total;
}

static void conn_write(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n =
		    send(c->h.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				conn_want(c, EPOLLOUT);
				return;
			}
			conn_free(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out_len = c->out_off = 0;
	if (c->close_after_write) {
		conn_linger(c);
		return;
	}
	/* Pipelined requests already read are answered before reading more. */
	conn_process(c);
	if (c->out_len > 0) {
		conn_write(c);
		return;
	}
	conn_want(c, EPOLLIN);
}

static void conn_read(struct conn *c)
{
	for (;;) {
		char discard[4096];
		char *dst = c->lingering ? discard : c->in + c->in_len;
		size_t cap = c->lingering ? sizeof(discard) : sizeof(c->in) - c->in_len;
		ssize_t n;

		if (cap == 0)
			break;
		n = recv(c->h.fd, dst, cap, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_free(c);
			return;
		}
		if (n == 0) {
			/* The client is gone; whatever it half-sent cannot be answered. */
			conn_free(c);
			return;
		}
		c->last_active_ms = now_ms();
		if (!c->lingering)
			c->in_len += (size_t)n;
	}
	if (c->lingering)
		return;
	conn_process(c);
	if (c->out_len > 0)
		conn_write(c);
}

static void listener_accept(struct listener *l)
{
	for (int i = 0; i < BATCH; i++) {
		int fd = accept4(l->h.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* EAGAIN: another worker took it. Anything else (EMFILE) is retried on
			 * the next wake-up; the connection waits in the kernel's queue. */
			if (errno != EAGAIN)
				say("accept on \"%s\": %s", l->name, strerror(errno));
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->h = (struct handle){.kind = H_CONN, .fd = fd};
		c->events = EPOLLIN;
		c->last_active_ms = now_ms();
		if (watch(&c->h, EPOLLIN, EPOLL_CTL_ADD) < 0) {
			close(fd);
			free(c);
			return;
		}
		c->next = srv.conns;
		if (srv.conns)
			srv.conns->prev = c;
		srv.conns = c;
		srv.n_conns++;
	}
}

static void dgram_echo(struct listener *l)
{
	static char buf[DGRAM_MAX_BYTES];

	for (int i = 0; i < BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		ssize_t n = recvfrom(l->h.fd, buf, sizeof(buf), MSG_DONTWAIT,
				     (struct sockaddr *)&peer, &peer_len);
		if (n < 0)
			return; /* EAGAIN: drained, or another worker got it */
		/* An unbound AF_UNIX sender has no address to answer to. */
		if (peer_len > sizeof(sa_family_t))
			(void)sendto(l->h.fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
				     (struct sockaddr *)&peer, peer_len);
	}
}

/* ---- life cycle ---- */

static void drain_start(void)
{
	if (srv.draining)
		return;
	srv.draining = true;
	srv.drain_start_ms = now_ms();
	say("draining: %zu connections open", srv.n_conns);
	notify("STOPPING=1");
	/* The listeners are shared with batond and the next generation: never shutdown() or
	 * listen() on them. Forget them, then close our copies. */
	while (srv.listeners) {
		struct listener *l = srv.listeners;

		srv.listeners = l->next;
		epoll_ctl(srv.epoll_fd, EPOLL_CTL_DEL, l->h.fd, NULL);
		close(l->h.fd);
		free(l->name);
		free(l);
	}
	srv.next_sweep_ms = 0;
}

static void sweep(uint64_t now)
{
	struct conn *c = srv.conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->lingering) {
			if (now >= c->linger_deadline_ms)
				conn_free(c);
		} else if (conn_idle(c)) {
			/* Never in the middle of a request: only a connection with nothing
			 * read and nothing to write is closed, and while draining only once
			 * the client had DRAIN_GRACE_MS to send one more request. */
			if (srv.draining ? now >= srv.drain_start_ms + DRAIN_GRACE_MS &&
					       now >= c->last_active_ms + DRAIN_GRACE_MS / 10
					 : now >= c->last_active_ms + IDLE_TIMEOUT_MS)
				conn_free(c);
		}
	}
	srv.next_sweep_ms = now + SWEEP_PERIOD_MS;
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(srv.signal.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		say("got signal %u", si.ssi_signo);
		drain_start();
	}
}

/* --accept-delay-ms is over: the stream listeners join the epoll set. */
static void accept_start(void)
{
	srv.accepting = true;
	say("accepting, %" PRIu64 " ms after READY=1", now_ms() - srv.ready_ms);
	for (struct listener *l = srv.listeners; l; l = l->next)
		if (l->h.kind == H_STREAM_LISTENER && watch(&l->h, EPOLLIN, EPOLL_CTL_ADD) < 0)
			say("epoll_ctl on fd %d: %s", l->h.fd, strerror(errno));
}

static void become_ready(void)
{
	srv.ready_sent = true;
	srv.ready_ms = now_ms();
	if (srv.opt.exit_before_ready >= 0) {
		say("exiting with %d instead of becoming ready", srv.opt.exit_before_ready);
		exit(srv.opt.exit_before_ready);
	}
	if (srv.opt.never_ready)
		return;
	notify("READY=1");
}

static int listeners_adopt(void)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	if (n < 0) {
		say("sd_listen_fds_with_names: %s", strerror(-n));
		return n;
	}
	if (n == 0)
		say("no sockets passed (LISTEN_FDS); serving nothing");
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i, flags;
		struct listener *l = calloc(1, sizeof(*l));
		bool stream = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0;
		bool dgram = sd_is_socket(fd, AF_UNSPEC, SOCK_DGRAM, -1) > 0;

		if (!l)
			return -ENOMEM;
		l->name = names[i];
		names[i] = NULL;
		l->h = (struct handle){.kind = stream ? H_STREAM_LISTENER : H_DGRAM_LISTENER,
				       .fd = fd};
		if (!stream && !dgram) {
			say("fd %d (\"%s\") is neither a stream listener nor a datagram socket; "
			    "leaving it alone",
			    fd, l->name);
			free(l->name);
			free(l);
			continue;
		}
		/* O_NONBLOCK is shared with every holder of this listener. batond and
		 * the other generations poll before accepting, as do systemd, nginx and Go,
		 * so a non-blocking listener suits them all; a blocking one could hang us
		 * in accept() when another worker takes the connection first. */
		flags = fcntl(fd, F_GETFL);
		if (flags >= 0 && !(flags & O_NONBLOCK))
			(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		/* With --accept-delay-ms, stream listeners wait for accept_start(). */
		if ((!stream || !srv.opt.accept_delay_ms) &&
		    watch(&l->h, EPOLLIN, EPOLL_CTL_ADD) < 0) {
			say("epoll_ctl on fd %d: %s", fd, strerror(errno));
			free(l->name);
			free(l);
			free(names);
			return -errno;
		}
		l->next = srv.listeners;
		srv.listeners = l;
	}
	free(names);
	return n;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: testsrv [OPTIONS]\n"
		   "A systemd socket-activated HTTP/1.1 server (and datagram echo) for tests.\n"
		   "  --ready-delay-ms N         send READY=1 after N ms (default 0)\n"
		   "  --accept-delay-ms N        after READY=1, wait N ms before the first\n"
		   "                             accept (a server that notifies too early)\n"
		   "  --never-ready              never send READY=1\n"
		   "  --exit-before-ready CODE   exit with CODE instead of sending READY=1\n"
		   "  --no-notify                never send anything to NOTIFY_SOCKET\n"
		   "  --ignore-term              ignore SIGTERM and SIGINT, keep serving\n"
		   "  --dump FILE                write env and inherited fds to FILE at start\n"
		   "  --crash-after-ms N         abort() after N ms\n"
		   "  --status TEXT              send STATUS=TEXT at start\n");
}

static int parse_num(const char *arg, const char *name, long long min, long long max,
		     long long *ret)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max) {
		say("--%s \"%s\": expected a number from %lld to %lld", name, arg, min, max);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"ready-delay-ms", required_argument, NULL, 'r'},
	    {"accept-delay-ms", required_argument, NULL, 'a'},
	    {"never-ready", no_argument, NULL, 'n'},
	    {"exit-before-ready", required_argument, NULL, 'x'},
	    {"no-notify", no_argument, NULL, 'N'},
	    {"ignore-term", no_argument, NULL, 'i'},
	    {"dump", required_argument, NULL, 'd'},
	    {"crash-after-ms", required_argument, NULL, 'c'},
	    {"status", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	long long v = 0;
	int c;

	*o = (struct options){.exit_before_ready = -1, .crash_after_ms = -1};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (parse_num(optarg, "ready-delay-ms", 0, INT_MAX, &v) < 0)
				return -EINVAL;
			o->ready_delay_ms = (uint64_t)v;
			break;
		case 'a':
			if (parse_num(optarg, "accept-delay-ms", 0, INT_MAX, &v) < 0)
				return -EINVAL;
			o->accept_delay_ms = (uint64_t)v;
			break;
		case 'n':
			o->never_ready = true;
			break;
		case 'x':
			if (parse_num(optarg, "exit-before-ready", 0, 255, &v) < 0)
				return -EINVAL;
			o->exit_before_ready = (int)v;
			break;
		case 'N':
			o->no_notify = true;
			break;
		case 'i':
			o->ignore_term = true;
			break;
		case 'd':
			o->dump_path = optarg;
			break;
		case 'c':
			if (parse_num(optarg, "crash-after-ms", 0, INT_MAX, &v) < 0)
				return -EINVAL;
			o->crash_after_ms = v;
			break;
		case 's':
			o->status = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		say("unexpected argument \"%s\"", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int setup(void)
{
	const char *gen = getenv("BATON_GENERATION"), *worker = getenv("BATON_WORKER");
	sigset_t mask;
	int r;

	srv.body_len =
	    (size_t)snprintf(srv.body, sizeof(srv.body), "gen=%.40s pid=%d worker=%.40s\n",
			     gen ? gen : "0", (int)getpid(), worker ? worker : "0");
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (srv.opt.ignore_term) {
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
	} else {
		sigprocmask(SIG_BLOCK, &mask, NULL);
		srv.signal.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
		if (srv.signal.fd < 0)
			return -errno;
	}
	signal(SIGPIPE, SIG_IGN);
	srv.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (srv.epoll_fd < 0)
		return -errno;
	if (srv.signal.fd >= 0 && watch(&srv.signal, EPOLLIN, EPOLL_CTL_ADD) < 0)
		return -errno;
	r = listeners_adopt();
	return r < 0 ? r : 0;
}

static int next_timeout_ms(uint64_t now)
{
	uint64_t next = UINT64_MAX;

	if (!srv.ready_sent && !srv.draining)
		next = srv.start_ms + srv.opt.ready_delay_ms;
	if (srv.ready_sent && !srv.accepting && !srv.draining)
		next = srv.ready_ms + srv.opt.accept_delay_ms;
	if (srv.opt.crash_after_ms >= 0 && srv.start_ms + (uint64_t)srv.opt.crash_after_ms < next)
		next = srv.start_ms + (uint64_t)srv.opt.crash_after_ms;
	if (srv.n_conns > 0 && srv.next_sweep_ms < next)
		next = srv.next_sweep_ms;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

int main(int argc, char **argv)
{
	int r;

	if (parse_options(argc, argv, &srv.opt) < 0)
		return 2;
	srv.start_ms = now_ms();
	srv.accepting = srv.opt.accept_delay_ms == 0;
	if (srv.opt.dump_path) {
		r = dump_write(srv.opt.dump_path);
		if (r < 0) {
			say("--dump %s: %s", srv.opt.dump_path, strerror(-r));
			return 1;
		}
	}
	r = setup();
	if (r < 0) {
		say("setup: %s", strerror(-r));
		return 1;
	}
	if (srv.opt.status) {
		char *msg;
		if (asprintf(&msg, "STATUS=%s", srv.opt.status) >= 0) {
			notify(msg);
			free(msg);
		}
	}

	for (;;) {
		struct epoll_event events[64];
		uint64_t now = now_ms();
		int n;

		if (srv.opt.crash_after_ms >= 0 &&
		    now >= srv.start_ms + (uint64_t)srv.opt.crash_after_ms) {
			struct rlimit no_core = {0, 0};
			say("crashing as asked (--crash-after-ms)");
			setrlimit(RLIMIT_CORE, &no_core); /* no core files in the test tree */
			abort();
		}
		if (!srv.ready_sent && !srv.draining &&
		    now >= srv.start_ms + srv.opt.ready_delay_ms)
			become_ready();
		if (srv.ready_sent && !srv.accepting && !srv.draining &&
		    now >= srv.ready_ms + srv.opt.accept_delay_ms)
			accept_start();
		if (srv.n_conns > 0 && now >= srv.next_sweep_ms)
			sweep(now);
		if (srv.draining && srv.n_conns == 0) {
			say("drained, exiting");
			return 0;
		}

		n = epoll_wait(srv.epoll_fd, events, 64, next_timeout_ms(now));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			say("epoll_wait: %s", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct handle *h = events[i].data.ptr;
			/* Read before dispatching: a connection frees itself when it is done. */
			enum handle_kind kind = h->kind;

			switch (kind) {
			case H_SIGNAL:
				on_signal();
				break;
			case H_STREAM_LISTENER:
				listener_accept((struct listener *)h);
				break;
			case H_DGRAM_LISTENER:
				dgram_echo((struct listener *)h);
				break;
			case H_CONN: {
				struct conn *c = (struct conn *)h;
				if (events[i].events & EPOLLOUT)
					conn_write(c);
				else
					conn_read(c);
				break;
			}
			}
			/* drain_start() may have freed listeners that later events point
			 * to: start over with a fresh epoll_wait(). */
			if (kind == H_SIGNAL)
				break;
		}
	}
}
