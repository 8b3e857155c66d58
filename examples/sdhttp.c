/* SPDX-License-Identifier: MIT */
/* sdhttp: a tiny HTTP/1.1 server that runs under batond (or systemd) using nothing but the
 * socket-activation contract: no libsystemd, no libbaton, just environment variables, inherited
 * file descriptors and one datagram. Read it top to bottom; it is meant as a template.
 *
 *   LISTEN_PID=<our pid>  LISTEN_FDS=<n>  LISTEN_FDNAMES=<name:name:...>
 *       n listening sockets, at fd 3, 4, ..., 3+n-1
 *   NOTIFY_SOCKET=<path, or @abstract>
 *       where to send "READY=1" once we serve, and "STOPPING=1" when we drain
 *
 * An upgrade under batond: the new generation gets the *same* listening sockets, says READY=1,
 * and only then the old one gets SIGTERM. The old one must then stop accepting, finish what it
 * has and exit; the sockets stay open in batond and the new generation, so no client is refused.
 *
 * Run alone (no LISTEN_FDS) it binds 127.0.0.1:8080 itself. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, pipe2, signalfd: built standalone too */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_FDS_START 3 /* fixed by the contract */
#define MAX_LISTENERS	 16
#define MAX_CONNS	 1024
#define DRAIN_GRACE_MS	 1000 /* an idle keep-alive client may send one more request */
#define LINGER_MS	 2000 /* after the last response, wait this long for the client's EOF */

struct conn {
	int fd;		   /* -1: free slot */
	char in[4096 + 1]; /* + 1 for a terminating NUL */
	size_t in_len;
	char out[512];
	size_t out_len, out_off;
	bool close_after_write; /* the response said "Connection: close" */
	bool lingering;		/* half-closed, waiting for the client's EOF */
	long long since_ms;	/* last activity, or when lingering started */
};

static int listeners[MAX_LISTENERS];
static int n_listeners;
static struct conn conns[MAX_CONNS];
static int n_conns;
static int conns_top; /* slots at or above this are all free: loops stop here */
static volatile sig_atomic_t stop_requested;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the contract: sockets in ---- */

/* Returns how many listening sockets we were given (0 if none). The variables are only meant
 * for us if LISTEN_PID is our pid: a child we start must not think they are its own. */
static int listen_fds(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	int n;

	if (!pid || !fds || atol(pid) != (long)getpid())
		return 0;
	n = atoi(fds);
	if (n <= 0 || n > MAX_LISTENERS)
		return 0;
	for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + n; fd++) {
		int listening = 0;
		socklen_t len = sizeof(listening);

		/* Inherited without close-on-exec (they had to survive exec): set it now, so
		 * that nothing we might start inherits them by accident. */
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		/* The listener is shared with batond and the other generation. O_NONBLOCK is
		 * shared too; every holder polls before it accepts, so that suits them all. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
			fprintf(stderr, "sdhttp: fd %d is not a listening socket, ignored\n", fd);
			continue;
		}
		listeners[n_listeners++] = fd;
	}
	fprintf(stderr, "sdhttp: %d socket(s) from LISTEN_FDS, names \"%s\"\n", n,
		names ? names : "");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
}

static int listen_fallback(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(8080)};
	int one = 1, fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	listeners[n_listeners++] = fd;
	fprintf(stderr, "sdhttp: not socket-activated, listening on 127.0.0.1:8080\n");
	return 0;
}

/* ---- the contract: notifications out ---- */

/* One datagram to NOTIFY_SOCKET. "@name" is an abstract socket: a NUL byte, then name. */
static void notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return; /* nobody listens: fine */
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	/* The receiver learns who we are from our credentials (SO_PASSCRED on its side). */
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		fprintf(stderr, "sdhttp: notify %s: %s\n", path, strerror(errno));
	close(fd);
}

/* ---- HTTP ---- */

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	n_conns--;
}

static void conn_accept(int listener)
{
	/* Batch a few: another worker may take the rest (EAGAIN is normal here). */
	for (int i = 0; i < 32; i++) {
		int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c = NULL;

		if (fd < 0)
			return;
		for (int j = 0; j < MAX_CONNS && !c; j++) /* lowest free slot: keeps loops short */
			if (conns[j].fd < 0)
				c = &conns[j];
		if (!c) {
			close(fd); /* full: a real server would stop accepting instead */
			return;
		}
		*c = (struct conn){.fd = fd, .since_ms = now_ms()};
		n_conns++;
		if (c - conns >= conns_top)
			conns_top = (int)(c - conns) + 1;
	}
}

/* If c->in holds a whole request, queue the response to it. May close c. */
static void conn_process(struct conn *c, bool draining)
{
	static const char fmt[] = "hello from generation %s pid %d\n";
	const char *gen = getenv("BATON_GENERATION");
	char *end, body[128];
	size_t head_len;
	bool keep_alive;
	int body_len;

	c->in[c->in_len] = '\0';
	end = strstr(c->in, "\r\n\r\n");
	if (!end) {
		if (c->in_len == sizeof(c->in) - 1)
			conn_close(c); /* headers too big: just hang up */
		return;
	}
	head_len = (size_t)(end - c->in) + 4;
	end[2] = '\0'; /* headers only, for the searches below */
	/* HTTP/1.1 keeps the connection unless told otherwise; we also close when we drain
	 * and when a request has a body (this server does not read bodies). */
	keep_alive = strstr(c->in, " HTTP/1.1\r\n") && !strcasestr(c->in, "\nConnection: close") &&
		     !strcasestr(c->in, "\nContent-Length:") &&
		     !strcasestr(c->in, "\nTransfer-Encoding:") && !draining;
	body_len = snprintf(body, sizeof(body), fmt, gen ? gen : "0", (int)getpid());
	c->out_len = (size_t)snprintf(c->out, sizeof(c->out),
				      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				      "Content-Length: %d\r\nConnection: %s\r\n\r\n%s",
				      body_len, keep_alive ? "keep-alive" : "close", body);
	c->out_off = 0;
	c->close_after_write = !keep_alive;
	memmove(c->in, c->in + head_len, c->in_len - head_len);
	c->in_len -= head_len;
}

static void conn_io(struct conn *c, short revents, bool draining)
{
	if (c->out_len > 0 && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_close(c);
			return;
		}
		if (n > 0)
			c->out_off += (size_t)n;
		if (c->out_off < c->out_len)
			return;
		c->out_len = c->out_off = 0;
		if (c->close_after_write) {
			/* Half-close, then wait for the client's EOF. close() with unread input
			 * would send a reset, which can destroy the response in flight. */
			shutdown(c->fd, SHUT_WR);
			c->lingering = true;
			c->since_ms = now_ms();
			return;
		}
		conn_process(c, draining); /* a pipelined request may be waiting */
		return;
	}
	if (revents & (POLLIN | POLLERR | POLLHUP)) {
		char discard[1024];
		char *dst = c->lingering ? discard : c->in + c->in_len;
		size_t cap = c->lingering ? sizeof(discard) : sizeof(c->in) - 1 - c->in_len;
		ssize_t n = recv(c->fd, dst, cap, 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_close(c); /* client gone (or done, if lingering) */
			return;
		}
		if (n > 0 && !c->lingering) {
			c->in_len += (size_t)n;
			c->since_ms = now_ms();
			conn_process(c, draining);
		}
	}
}

/* ---- signals and the loop ---- */

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Stop accepting: drop our copies of the listeners. Never shutdown() or listen() on them: they
 * are the same sockets batond and the next generation accept on. */
static void drain_start(void)
{
	notify("STOPPING=1");
	for (int i = 0; i < n_listeners; i++)
		close(listeners[i]);
	n_listeners = 0;
	fprintf(stderr, "sdhttp[%d]: draining, %d connection(s) open\n", (int)getpid(), n_conns);
}

int main(void)
{
	struct sigaction sa = {.sa_handler = on_stop_signal};
	sigset_t stop_signals, wait_mask;
	long long drain_since = 0;
	bool draining = false;

	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	signal(SIGPIPE, SIG_IGN);
	/* SIGTERM stays blocked except inside ppoll(), so it cannot slip in between our check of
	 * stop_requested and going to sleep. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigprocmask(SIG_BLOCK, &stop_signals, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (listen_fds() == 0 && listen_fallback() < 0) {
		perror("sdhttp: 127.0.0.1:8080");
		return 1;
	}
	notify("READY=1\nSTATUS=serving");

	for (;;) {
		struct pollfd pfd[MAX_LISTENERS + MAX_CONNS];
		struct conn *owner[MAX_LISTENERS + MAX_CONNS];
		struct timespec tick = {.tv_nsec = 100 * 1000000};
		long long now = now_ms();
		int n = 0;

		if (stop_requested && !draining) {
			draining = true;
			drain_since = now;
			drain_start();
		}
		/* Close what no longer needs us: lingering connections past their time, and
		 * while draining, idle keep-alive connections once the grace is over. Never one
		 * in the middle of a request. */
		while (conns_top > 0 && conns[conns_top - 1].fd < 0)
			conns_top--;
		for (int i = 0; i < conns_top; i++) {
			struct conn *c = &conns[i];
			bool idle = c->in_len == 0 && c->out_len == 0;

			if (c->fd < 0)
				continue;
			if ((c->lingering && now - c->since_ms >= LINGER_MS) ||
			    (draining && !c->lingering && idle &&
			     now - drain_since >= DRAIN_GRACE_MS &&
			     now - c->since_ms >= DRAIN_GRACE_MS / 10))
				conn_close(c);
		}
		if (draining && n_conns == 0)
			break;

		for (int i = 0; i < n_listeners; i++, n++) {
			pfd[n] = (struct pollfd){.fd = listeners[i], .events = POLLIN};
			owner[n] = NULL;
		}
		for (int i = 0; i < conns_top; i++) {
			if (conns[i].fd < 0)
				continue;
			pfd[n] = (struct pollfd){.fd = conns[i].fd,
						 .events = conns[i].out_len ? POLLOUT : POLLIN};
			owner[n++] = &conns[i];
		}
		if (ppoll(pfd, (nfds_t)n, &tick, &wait_mask) < 0)
			continue; /* EINTR: a stop signal, seen at the top */
		for (int i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (owner[i])
				conn_io(owner[i], pfd[i].revents, draining);
			else if (!draining)
				conn_accept(pfd[i].fd);
		}
	}
	fprintf(stderr, "sdhttp[%d]: drained, bye\n", (int)getpid());
	return 0;
}
