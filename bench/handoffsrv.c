/* SPDX-License-Identifier: MIT */
/* handoffsrv: the app of `make bench-scale` (bench/scale.sh). A libbaton line
 * server for many connections (epoll): it takes connections from batond
 * (dispatch mode; in inherit mode it accepts on its listener "http") and
 * answers each line with "gen G count C\n", C counting the
 * lines of that connection. Its per-connection state is that count and a
 * check word, 16 bytes. On DRAIN (or SIGTERM) it parks every open connection
 * with its state in one baton_park_many() and exits; the next generation
 * adopts them and continues each count on the same TCP connection.
 *
 *   handoffsrv --stats FILE
 *
 * FILE (bench/handoff.h: a struct handoff_slot per generation and worker,
 * MAP_SHARED) gets, in CLOCK_MONOTONIC nanoseconds, when this worker began and
 * ended parking and how many it parked, or how many it adopted and when the
 * first and the latest came: the clients (bench/handoff) read it. */
#include "handoff.h"

#include <baton.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define STATE_CHECK 0x6261746fu /* "bato" */

struct conn_state {
	uint32_t count;
	uint32_t check;
	uint64_t pad; /* 16 bytes in all: "a small state blob" */
};

static struct conn_state *conns;  /* by fd */
static struct sockaddr_in *peers; /* by fd: the client's address, kept for parking */
static bool *open_fd;		  /* by fd */
static int max_fd = -1;
static size_t fd_cap, n_open;
static int ep;
static const char *gen = "?";
static struct handoff_slot *slot; /* this worker's, in the stats file */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool add_conn(int fd, uint32_t count, const struct sockaddr_storage *peer)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if ((size_t)fd >= fd_cap || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return false;
	}
	conns[fd] = (struct conn_state){.count = count, .check = STATE_CHECK};
	peers[fd] = (struct sockaddr_in){0};
	if (peer && peer->ss_family == AF_INET)
		memcpy(&peers[fd], peer, sizeof(peers[fd]));
	open_fd[fd] = true;
	n_open++;
	if (fd > max_fd)
		max_fd = fd;
	return true;
}

static void drop_conn(int fd)
{
	open_fd[fd] = false;
	n_open--;
	close(fd); /* leaves the epoll set with its last reference */
	baton_conn_done(1);
}

/* Parks every open connection, in fd order, and exits. */
static void park_all(void)
{
	struct baton_park_conn *list = calloc(n_open ? n_open : 1, sizeof(*list));
	size_t n = 0;
	for (int fd = 0; list && fd <= max_fd; fd++)
		if (open_fd[fd])
			list[n++] = (struct baton_park_conn){.fd = fd,
							     .listener = "http",
							     .tag = gen,
							     .state = &conns[fd],
							     .state_len = sizeof(conns[fd])};
	/* The peer batond gave with the connection: no getpeername() each. */
	for (size_t i = 0; list && i < n; i++)
		if (peers[list[i].fd].sin_family == AF_INET) {
			list[i].peer = (const struct sockaddr *)&peers[list[i].fd];
			list[i].peer_len = sizeof(struct sockaddr_in);
		}
	slot->park_first_ns = now_ns();
	int r = n ? baton_park_many(list, n) : 0;
	slot->park_last_ns = now_ns();
	slot->parked = r > 0 ? (uint64_t)r : 0;
	exit(r == (int)n ? 0 : 1);
}

static void serve(int fd)
{
	char buf[512];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_conn(fd);
		return;
	}
	for (ssize_t k = 0; k < n; k++) {
		if (buf[k] != '\n')
			continue;
		char reply[64];
		int len =
		    snprintf(reply, sizeof(reply), "gen %s count %u\n", gen, ++conns[fd].count);
		if (write(fd, reply, (size_t)len) != len) {
			drop_conn(fd);
			return;
		}
	}
}

int main(int argc, char **argv)
{
	const char *stats = argc == 3 && strcmp(argv[1], "--stats") == 0 ? argv[2] : NULL;
	int sfd_stats = stats ? open(stats, O_RDWR | O_CLOEXEC) : -1;
	void *map = sfd_stats < 0 ? MAP_FAILED
				  : mmap(NULL, HANDOFF_STATS_BYTES, PROT_READ | PROT_WRITE,
					 MAP_SHARED, sfd_stats, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "usage: handoffsrv --stats FILE (%d bytes)\n", HANDOFF_STATS_BYTES);
		return 2;
	}
	unsigned g = (unsigned)atoi(getenv("BATON_GENERATION") ?: "0"),
		 w = (unsigned)atoi(getenv("BATON_WORKER") ?: "0");
	slot = handoff_slot(map, g, w);
	if (!slot) {
		fprintf(stderr, "handoffsrv: generation %u worker %u: no slot in the stats file\n",
			g, w);
		return 2;
	}
	gen = getenv("BATON_GENERATION") ?: "?";
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		rl.rlim_cur = 1 << 20;
	fd_cap = (size_t)rl.rlim_cur;
	conns = calloc(fd_cap, sizeof(*conns));
	open_fd = calloc(fd_cap, sizeof(*open_fd));
	peers = calloc(fd_cap, sizeof(*peers));
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	int chan = baton_fd();
	/* Dispatch mode: no listener inherited, none to ask batond for. */
	int lst = baton_listeners(NULL, 0) > 0 ? baton_listener("http") : -ENOENT;
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || !open_fd || !peers || sfd < 0 || chan < 0 || (lst < 0 && lst != -ENOENT) ||
	    ep < 0) {
		fprintf(stderr, "handoffsrv: cannot start: %s\n",
			strerror(chan < 0  ? -chan
				 : lst < 0 ? -lst
					   : errno));
		return 1;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = lst};
	if (lst >= 0) {
		/* A shared listener: O_NONBLOCK (shared too) is what every holder wants. */
		int fl = fcntl(lst, F_GETFL);
		if (fl >= 0 && !(fl & O_NONBLOCK))
			fcntl(lst, F_SETFL, fl | O_NONBLOCK);
		epoll_ctl(ep, EPOLL_CTL_ADD, lst, &ev);
	}
	ev.data.fd = chan;
	epoll_ctl(ep, EPOLL_CTL_ADD, chan, &ev);
	ev.data.fd = sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	baton_ready();

	static struct epoll_event evs[1024];
	for (;;) {
		int n = epoll_wait(ep, evs, 1024, -1);
		if (n < 0 && errno != EINTR)
			return 1;
		/* The channel first: a DRAIN that came with a line from a client
		 * parks that connection instead of answering it here. */
		bool channel = false, signalled = false;
		for (int i = 0; i < n; i++) {
			channel |= evs[i].data.fd == chan;
			signalled |= evs[i].data.fd == sfd;
		}
		if (signalled)
			park_all();
		struct baton_event be;
		int r;
		while (channel && (r = baton_next_event(&be)) != 0) {
			if (r == -ECONNRESET)
				return 1;
			if (r < 0) { /* its fds are gone: past our RLIMIT_NOFILE, say */
				slot->dropped++;
				continue;
			}
			if (be.type == BATON_EVENT_DRAIN)
				park_all();
			const struct conn_state *st = be.state;
			uint32_t count = 0;
			if ((be.flags & BATON_CONN_ADOPTED) && be.state_len == sizeof(*st) &&
			    st->check == STATE_CHECK)
				count = st->count;
			if (!add_conn(be.fd, count, be.peer_len ? &be.peer : NULL) ||
			    !(be.flags & BATON_CONN_ADOPTED))
				continue;
			uint64_t t = now_ns();
			if (slot->adopted == 0)
				slot->adopted_first_ns = t;
			slot->adopted_last_ns = t;
			/* Last: a reader that sees the count sees the time. */
			__atomic_store_n(&slot->adopted, slot->adopted + 1, __ATOMIC_RELEASE);
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == chan || fd == sfd)
				continue;
			if (fd != lst) {
				if (open_fd[fd])
					serve(fd);
				continue;
			}
			for (int k = 0; k < 256; k++) {
				int c = accept4(lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				if (c < 0)
					break;
				add_conn(c, 0, NULL);
			}
		}
	}
}
