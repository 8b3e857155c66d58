/* SPDX-License-Identifier: MIT */
/* hello: a small HTTP server built on libbaton, and the one app every benchmark
 * scenario runs (bench/run.sh), so that they differ only in how an upgrade happens.
 *
 *   hello [--port P] [--reuseport] [--startup-delay-ms MS] [--startup-log FILE]
 *
 * It sleeps its start-up delay (0 unless asked: the benchmarks stand in for an
 * application's own start-up work with it), then takes its listener: the one named
 * "http" from batond or systemd (inherit mode), none when batond dispatches
 * connections to it (dispatch mode), or, run alone, binds 127.0.0.1:P itself
 * (P from --port, else $PORT, else 8080; with SO_REUSEPORT when asked). Then it
 * says READY=1 on NOTIFY_SOCKET (nothing when unset). With --startup-log it appends
 * "generation pid startup_us ready_us" to FILE: the time from main() to READY=1, and
 * when READY=1 was sent (CLOCK_MONOTONIC).
 *
 * Every request gets "hello from baton generation N pid P" (N from BATON_GENERATION)
 * with Connection: close; but GET /healthz, for batond's health-url, gets status
 * 200, or the one --health-status asks (a broken release stands in with 503). On SIGTERM or DRAIN
 * it closes its copy of the listener (never shutdown() or listen(): batond and the next generation
 * share it), finishes what it has, and exits. One poll loop over a signalfd, the baton channel, the
 * listener and the connections. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, signalfd: built standalone too */
#endif
#include <baton.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS	1024
#define IDLE_TIMEOUT_MS 10000
#define FIXED_SLOTS	3 /* signalfd, baton channel, listener */

struct conn {
	bool from_batond; /* dispatched: tell batond when done (its load signal) */
	bool health;	  /* GET /healthz */
	size_t got;
	char request[2048];
	size_t sent;
	long long deadline_ms;
};

static struct pollfd pfds[FIXED_SLOTS + MAX_CONNS];
static struct conn conns[MAX_CONNS];
static size_t n_conns;
static char response[256], health_response[128];
static size_t response_len, health_response_len;
static unsigned health_status = 200;
static bool draining;

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long now_ms(void)
{
	return now_us() / 1000;
}

static void make_response(void)
{
	const char *gen = getenv("BATON_GENERATION");
	char body[128];
	int body_len = snprintf(body, sizeof(body), "hello from baton generation %s pid %d\n",
				gen ? gen : "0", (int)getpid());
	response_len = (size_t)snprintf(response, sizeof(response),
					"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
					"Content-Length: %d\r\nConnection: close\r\n\r\n%s",
					body_len, body);
	health_response_len = (size_t)snprintf(
	    health_response, sizeof(health_response),
	    "HTTP/1.1 %u %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", health_status,
	    health_status >= 200 && health_status < 400 ? "OK" : "Unhealthy");
}

static int bind_own_listener(unsigned port, bool reuseport)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 4096) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int add_conn(int fd, bool from_batond)
{
	if (n_conns == MAX_CONNS) {
		close(fd);
		if (from_batond)
			baton_conn_done(1);
		return -EMFILE;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK); /* our own connection, not shared */
	pfds[FIXED_SLOTS + n_conns] = (struct pollfd){.fd = fd, .events = POLLIN};
	conns[n_conns] =
	    (struct conn){.from_batond = from_batond, .deadline_ms = now_ms() + IDLE_TIMEOUT_MS};
	n_conns++;
	return 0;
}

static void drop_conn(size_t i)
{
	close(pfds[FIXED_SLOTS + i].fd);
	if (conns[i].from_batond)
		baton_conn_done(1);
	n_conns--;
	pfds[FIXED_SLOTS + i] = pfds[FIXED_SLOTS + n_conns];
	conns[i] = conns[n_conns];
}

/* Reads until the end of the request head, then writes the answer. Returns false
 * when the connection is finished. */
static bool serve(size_t i, short revents)
{
	struct pollfd *p = &pfds[FIXED_SLOTS + i];
	struct conn *c = &conns[i];
	if (p->events & POLLIN) {
		ssize_t n = read(p->fd, c->request + c->got, sizeof(c->request) - 1 - c->got);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return false;
		if (n > 0)
			c->got += (size_t)n;
		c->request[c->got] = 0;
		if (!strstr(c->request, "\r\n\r\n") && !strstr(c->request, "\n\n") &&
		    c->got < sizeof(c->request) - 1)
			return true;
		p->events = POLLOUT;
		c->health = strncmp(c->request, "GET /healthz ", 13) == 0;
	} else if (revents & (POLLERR | POLLHUP)) {
		return false;
	}
	const char *out = c->health ? health_response : response;
	size_t len = c->health ? health_response_len : response_len;
	ssize_t n = send(p->fd, out + c->sent, len - c->sent, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	c->sent += (size_t)n;
	return c->sent < len;
}

/* Stop taking new work: out of the poll set, then close our copy. */
static void stop_accepting(void)
{
	if (pfds[2].fd >= 0) {
		close(pfds[2].fd);
		pfds[2].fd = -1;
	}
	if (!draining)
		baton_notify("STOPPING=1");
	draining = true;
}

static void handle_baton_events(void)
{
	struct baton_event ev;
	int r;
	while ((r = baton_next_event(&ev)) != 0) {
		if (r == -EPROTO || r == -EBADMSG || r == -EMSGSIZE)
			continue; /* a bad message was dropped */
		if (r < 0) {
			pfds[1].fd = -1; /* batond is gone: keep serving what we have */
			return;
		}
		if (ev.type == BATON_EVENT_DRAIN)
			stop_accepting();
		else if (ev.type == BATON_EVENT_CONN)
			add_conn(ev.fd, true);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: hello [--port P] [--reuseport] [--startup-delay-ms 0] "
		   "[--startup-log FILE] [--health-status 200]\n");
}

int main(int argc, char **argv)
{
	long long t0 = now_us();
	const char *port_env = getenv("PORT");
	unsigned port = port_env ? (unsigned)strtoul(port_env, NULL, 10) : 8080;
	long delay_ms = 0;
	bool reuseport = false;
	const char *startup_log = NULL;
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"reuseport", no_argument, NULL, 'r'},
	    {"startup-delay-ms", required_argument, NULL, 'd'},
	    {"startup-log", required_argument, NULL, 'l'},
	    {"health-status", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'p':
			port = (unsigned)strtoul(optarg, &end, 10);
			if (*end || port == 0 || port > 65535) {
				fprintf(stderr, "hello: --port %s: not a port\n", optarg);
				return 2;
			}
			break;
		case 'r':
			reuseport = true;
			break;
		case 'd':
			delay_ms = strtol(optarg, &end, 10);
			if (*end || delay_ms < 0 || delay_ms > 600000) {
				fprintf(stderr, "hello: --startup-delay-ms %s: bad\n", optarg);
				return 2;
			}
			break;
		case 'l':
			startup_log = optarg;
			break;
		case 's':
			health_status = (unsigned)strtoul(optarg, &end, 10);
			if (*end || health_status < 100 || health_status > 599) {
				fprintf(stderr, "hello: --health-status %s: not an HTTP status\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	/* SIGTERM during the start-up delay is handled once the loop runs. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, "hello: signalfd: %s\n", strerror(errno));
		return 1;
	}

	struct timespec delay = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000};
	while (nanosleep(&delay, &delay) < 0 && errno == EINTR)
		;

	bool own_listener = false;
	int listener;
	/* A channel to batond and no listener passed: dispatch mode, where batond
	 * sends connections and would only refuse a request for a listener. */
	if (baton_fd() >= 0 && baton_listeners(NULL, 0) == 0)
		listener = -ENOENT;
	else
		listener = baton_listener("http");
	if (listener == -ENXIO) {
		listener = bind_own_listener(port, reuseport);
		own_listener = true;
	}
	if (listener < 0 && listener != -ENOENT) {
		fprintf(stderr, "hello: listener \"http\": %s\n", strerror(-listener));
		return 1;
	}
	/* A shared listener: O_NONBLOCK (shared too) is what every holder wants. */
	if (listener >= 0 && !own_listener) {
		int fl = fcntl(listener, F_GETFL);
		if (fl >= 0 && !(fl & O_NONBLOCK))
			fcntl(listener, F_SETFL, fl | O_NONBLOCK);
	}

	make_response();
	int channel = baton_fd();
	pfds[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
	pfds[1] = (struct pollfd){.fd = channel >= 0 ? channel : -1, .events = POLLIN};
	/* No listener of that name: batond dispatches connections to us. */
	pfds[2] = (struct pollfd){.fd = listener >= 0 ? listener : -1, .events = POLLIN};
	long long t_ready = now_us(), startup_us = t_ready - t0;
	baton_ready();
	if (startup_log) {
		FILE *f = fopen(startup_log, "ae");
		if (f) {
			const char *gen = getenv("BATON_GENERATION");
			fprintf(f, "%s %d %lld %lld\n", gen ? gen : "0", (int)getpid(), startup_us,
				t_ready);
			fclose(f);
		}
	}
	if (channel >= 0)
		handle_baton_events(); /* anything queued before we polled */

	while (!draining || n_conns > 0) {
		/* With every slot taken, leave clients in the kernel backlog. */
		pfds[2].events = n_conns < MAX_CONNS ? POLLIN : 0;
		int n = poll(pfds, FIXED_SLOTS + n_conns, 1000);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "hello: poll: %s\n", strerror(errno));
			return 1;
		}
		if (n > 0 && pfds[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				stop_accepting();
		}
		if (n > 0 && pfds[1].fd >= 0 && pfds[1].revents)
			handle_baton_events();
		if (n > 0 && pfds[2].fd >= 0 && (pfds[2].revents & POLLIN)) {
			int fd;
			while (n_conns < MAX_CONNS &&
			       (fd = accept4(pfds[2].fd, NULL, NULL,
					     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
				add_conn(fd, false);
		}
		long long now = now_ms();
		for (size_t i = n_conns; i-- > 0;) {
			short revents = pfds[FIXED_SLOTS + i].revents;
			bool keep = true;
			if (revents)
				keep = serve(i, revents);
			if (keep && now > conns[i].deadline_ms)
				keep = false; /* idle too long */
			if (!keep)
				drop_conn(i);
		}
	}
	close(sfd);
	baton_close();
	return 0;
}
