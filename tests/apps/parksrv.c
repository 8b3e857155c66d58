/* SPDX-License-Identifier: MIT */
/* A libbaton dispatch worker that keeps per-connection state: each line a
 * client sends is answered "gen G count N from F", N counting the lines of that
 * connection and F the tag it came with ("gen1" when generation 1 parked it, "-"
 * for none). On DRAIN (or SIGTERM) it parks every open connection, all in one
 * baton_park_many(), with its count in a state of BATON_STATE_MAX bytes (the
 * rest a pattern the next one checks; --state-bytes N for less) and the tag
 * "genG", so that the next generation continues the count on the same TCP
 * connection: live handoff, end to end.
 * With --hold it drains as a websocket server would: it keeps serving its open
 * connections (exiting once the clients closed them all) and parks them only
 * when batond finishes its generation early (DRAIN with BATON_DRAIN_NOW).
 * With --lazy-ms N it reads nothing for N ms after READY=1 (a slow start).
 * With --park-flood N it is hostile instead: once ready, it parks N pipe ends
 * while serving (never asked to), as fast as its channel takes them, then
 * serves on. */
#include <baton.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_CONNS 2048

static struct pollfd pfds[2 + MAX_CONNS];
static uint32_t counts[MAX_CONNS];
static char froms[MAX_CONNS][BATON_TAG_MAX + 1];
static size_t n_conns;
static uint8_t state[MAX_CONNS][BATON_STATE_MAX];
static size_t state_bytes = BATON_STATE_MAX;

static void drop(size_t i)
{
	n_conns--;
	pfds[2 + i] = pfds[2 + n_conns];
	counts[i] = counts[n_conns];
	memcpy(froms[i], froms[n_conns], sizeof(froms[i]));
}

static void park_all(const char *gen)
{
	char tag[BATON_TAG_MAX + 1];
	static struct baton_park_conn conns[MAX_CONNS];
	snprintf(tag, sizeof(tag), "gen%s", gen ? gen : "?");
	for (size_t i = 0; i < n_conns; i++) {
		memcpy(state[i], &counts[i], sizeof(counts[i]));
		for (size_t k = sizeof(uint32_t); k < state_bytes; k++)
			state[i][k] = (uint8_t)k;
		conns[i] = (struct baton_park_conn){.fd = pfds[2 + i].fd,
						    .listener = "http",
						    .tag = tag,
						    .state = state[i],
						    .state_len = state_bytes};
	}
	int r = baton_park_many(conns, n_conns);
	/* What could not be parked is closed. */
	for (size_t i = r > 0 ? (size_t)r : 0; i < n_conns; i++)
		close(pfds[2 + i].fd);
	if (r < (int)n_conns)
		fprintf(stderr, "parksrv: parked %d of %zu connections: %s\n", r < 0 ? 0 : r,
			n_conns, r < 0 ? strerror(-r) : "");
	baton_conn_done((unsigned)n_conns);
	n_conns = 0;
}

/* The count a parked connection carried, 0 if its state is not whole. */
static uint32_t adopted_count(const struct baton_event *ev)
{
	const uint8_t *p = ev->state;
	uint32_t count = 0;
	if (ev->state_len != state_bytes)
		return 0;
	for (size_t k = sizeof(uint32_t); k < state_bytes; k++)
		if (p[k] != (uint8_t)k)
			return 0;
	memcpy(&count, p, sizeof(count));
	return count;
}

/* Parks @n pipe ends without being asked. Returns false if batond cut the
 * channel. */
static bool park_flood(long n)
{
	for (long i = 0; i < n; i++) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			return true;
		int r = baton_park(p[0], "http", NULL, NULL, 0);
		close(p[0]);
		close(p[1]);
		if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) {
			fprintf(stderr, "parksrv: batond cut the channel after %ld parks\n", i);
			return false;
		}
	}
	fprintf(stderr, "parksrv: parked %ld connections unasked\n", n);
	return true;
}

int main(int argc, char **argv)
{
	const char *gen = getenv("BATON_GENERATION");
	long flood = 0, lazy_ms = 0;
	bool hold = false, draining = false;
	for (int i = 1; i < argc; i++) {
		bool has_value = i + 1 < argc;
		if (strcmp(argv[i], "--hold") == 0) {
			hold = true;
		} else if (strcmp(argv[i], "--park-flood") == 0 && has_value) {
			flood = atol(argv[++i]);
		} else if (strcmp(argv[i], "--lazy-ms") == 0 && has_value) {
			lazy_ms = atol(argv[++i]);
		} else if (strcmp(argv[i], "--state-bytes") == 0 && has_value) {
			state_bytes = strtoul(argv[++i], NULL, 10);
			if (state_bytes < sizeof(uint32_t) || state_bytes > BATON_STATE_MAX) {
				fprintf(stderr, "parksrv: --state-bytes: 4 to %d\n",
					BATON_STATE_MAX);
				return 2;
			}
		} else {
			fprintf(stderr, "parksrv: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	pfds[0] = (struct pollfd){.fd = signalfd(-1, &mask, SFD_CLOEXEC), .events = POLLIN};
	pfds[1] = (struct pollfd){.fd = baton_fd(), .events = POLLIN};
	if (pfds[1].fd < 0) {
		fprintf(stderr, "parksrv: no channel to batond: %s\n", strerror(-pfds[1].fd));
		return 1;
	}
	baton_ready();
	if (lazy_ms > 0) /* a slow start after READY=1: nothing read meanwhile */
		poll(NULL, 0, (int)lazy_ms);
	if (flood && !park_flood(flood)) {
		/* Nothing to serve without a channel: wait for the stop signal. */
		struct signalfd_siginfo si;
		while (read(pfds[0].fd, &si, sizeof(si)) < 0 && errno == EINTR)
			;
		return 0;
	}
	for (;;) {
		if (draining && n_conns == 0)
			return 0; /* every client is done */
		if (poll(pfds, 2 + n_conns, -1) < 0 && errno != EINTR)
			return 1;
		if (pfds[0].revents && hold) {
			struct signalfd_siginfo si;
			if (read(pfds[0].fd, &si, sizeof(si)) < 0 && errno != EINTR)
				return 1;
			draining = true;
		} else if (pfds[0].revents) {
			park_all(gen);
			return 0;
		}
		struct baton_event ev;
		int r;
		while (pfds[1].revents && (r = baton_next_event(&ev)) != 0) {
			if (r == -ECONNRESET)
				return 1;
			if (r < 0)
				continue;
			if (ev.type == BATON_EVENT_DRAIN && hold && !(ev.flags & BATON_DRAIN_NOW)) {
				draining = true;
				continue;
			}
			if (ev.type == BATON_EVENT_DRAIN) {
				park_all(gen);
				return 0;
			}
			if (n_conns == MAX_CONNS) {
				close(ev.fd);
				baton_conn_done(1);
				continue;
			}
			pfds[2 + n_conns] = (struct pollfd){.fd = ev.fd, .events = POLLIN};
			snprintf(froms[n_conns], sizeof(froms[n_conns]), "%s",
				 ev.tag[0] ? ev.tag : "-");
			counts[n_conns++] = ev.flags & BATON_CONN_ADOPTED ? adopted_count(&ev) : 0;
		}
		for (size_t i = n_conns; i-- > 0;) {
			if (!pfds[2 + i].revents)
				continue;
			char buf[512];
			ssize_t n = read(pfds[2 + i].fd, buf, sizeof(buf));
			if (n <= 0) {
				close(pfds[2 + i].fd);
				baton_conn_done(1);
				drop(i);
				continue;
			}
			for (ssize_t k = 0; k < n; k++) {
				if (buf[k] != '\n')
					continue;
				char reply[128];
				int len =
				    snprintf(reply, sizeof(reply), "gen %s count %u from %s\n",
					     gen ? gen : "?", ++counts[i], froms[i]);
				if (write(pfds[2 + i].fd, reply, (size_t)len) != len)
					break;
			}
		}
	}
}
