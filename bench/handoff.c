/* SPDX-License-Identifier: MIT */
/* handoff: the clients of `make bench-scale` (bench/scale.sh). Opens N
 * connections to a line server (bench/handoffsrv) and has each answered once,
 * so that the serving generation holds them all with their state; runs the
 * upgrade command; waits until the new generation adopted all N (the stats
 * file handoffsrv writes, bench/handoff.h), then sends one more line on every
 * connection and checks each answer: a newer generation, the count carried
 * over.
 *
 *   handoff --port PORT --connections N --upgrade "CMD ARG..." --stats FILE
 *           [--adopted "CMD ARG..."] [--per-process 15000] [--timeout-ms 120000]
 *
 * --adopted runs once all N are adopted (or the time is up), before the answers.
 *
 * The clients are split over processes of at most --per-process connections
 * (RLIMIT_NOFILE), each from its own source address (127.0.0.1, .2, ...): one
 * address has fewer ephemeral ports than 100,000 connections need. Prints:
 *   handoff: connections=N ok=O lost=L wrong=W unanswered=U parked=P adopted=A
 *            handoff_ms=H park_ms=K connect_ms=C upgrade_ms=G answer_ms=R
 * handoff_ms: the first baton_park_many() of the old generation to the last
 * connection its successor adopted; park_ms: the longest baton_park_many().
 * lost: closed or reset; wrong: answered by the same generation or with a count
 * not carried over; unanswered: nothing within the timeout. Exit 0 when every
 * connection answered right, 1 otherwise, 2 for bad usage. */
#include "handoff.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000 /* connected, then answered, before the next: the backlog holds them */

struct client {
	int fd;
	unsigned gen;  /* of the first answer */
	char line[32]; /* the answer being read */
	unsigned len;
	bool done;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_one(unsigned source, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	struct sockaddr_in from = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK + source)};
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0 ||
	    connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* Sends a line on clients [from, to) and reads every answer, until @deadline.
 * Returns how many answered; each answer is left in c->line. */
static long exchange(int ep, struct client *cs, long from, long to, long long deadline, long *lost)
{
	for (long i = from; i < to; i++) {
		struct client *c = &cs[i];
		c->len = 0;
		c->done = false;
		if (c->fd < 0)
			continue;
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
		if (write(c->fd, "x\n", 2) != 2 || epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
			close(c->fd);
			c->fd = -1;
			(*lost)++;
		}
	}
	long answered = 0, waiting = 0;
	for (long i = from; i < to; i++)
		waiting += cs[i].fd >= 0;
	static struct epoll_event evs[1024];
	while (waiting > 0) {
		long long left = deadline - now_ms();
		if (left <= 0)
			break;
		int n = epoll_wait(ep, evs, 1024, left > 1000 ? 1000 : (int)left);
		for (int k = 0; k < n; k++) {
			struct client *c = &cs[evs[k].data.u64];
			ssize_t r = read(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r > 0) {
				c->len += (unsigned)r;
				c->line[c->len] = 0;
				if (!memchr(c->line, '\n', c->len) && c->len < sizeof(c->line) - 1)
					continue;
				c->done = true;
				answered++;
			} else {
				close(c->fd); /* leaves the epoll set */
				c->fd = -1;
				(*lost)++;
			}
			waiting--;
			if (c->fd >= 0)
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		}
	}
	return answered;
}

/* Runs @cmd (split at spaces) and waits for it. Returns its exit status. */
static int run(char *cmd)
{
	char *argv[64];
	int argc = 0;
	for (char *tok = strtok(cmd, " "); tok && argc < 63; tok = strtok(NULL, " "))
		argv[argc++] = tok;
	argv[argc] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* What one client process reports. */
struct report {
	long held, ok, lost, wrong, unanswered;
};

static bool read_all(int fd, void *buf, size_t len)
{
	return read(fd, buf, len) == (ssize_t)len;
}

/* One client process: connections [0, n) from source address 127.0.0.1 +
 * @source. Reports after the first exchange, waits for a byte on @go, then
 * exchanges again and reports. */
static int client(unsigned source, long n, int port, long long deadline, int up, int go)
{
	struct client *cs = calloc((size_t)n, sizeof(*cs));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct report rep = {0};
	if (!cs || ep < 0)
		return 1;
	for (long from = 0; from < n; from += BATCH) {
		long to = from + BATCH < n ? from + BATCH : n;
		for (long i = from; i < to; i++) {
			cs[i].fd = connect_one(source, port);
			if (cs[i].fd < 0) {
				fprintf(stderr, "handoff: connection %ld from 127.0.0.%u: %s\n",
					i + 1, source + 1, strerror(-cs[i].fd));
				return 1;
			}
		}
		rep.held += exchange(ep, cs, from, to, deadline, &rep.lost);
		for (long i = from; i < to; i++)
			if (!cs[i].done || sscanf(cs[i].line, "gen %u", &cs[i].gen) != 1)
				cs[i].gen = 0;
	}
	if (write(up, &rep, sizeof(rep)) != sizeof(rep))
		return 1;
	long long timeout_ms = deadline;
	if (!read_all(go, &timeout_ms, sizeof(timeout_ms)))
		return 1;
	rep = (struct report){0};
	long answered = exchange(ep, cs, 0, n, now_ms() + timeout_ms, &rep.lost);
	for (long i = 0; i < n; i++) {
		unsigned g, count;
		if (!cs[i].done)
			continue;
		if (sscanf(cs[i].line, "gen %u count %u", &g, &count) == 2 && g > cs[i].gen &&
		    count == 2)
			rep.ok++;
		else if (rep.wrong++ == 0)
			fprintf(stderr, "handoff: a connection answered \"%.*s\"\n",
				(int)strcspn(cs[i].line, "\n"), cs[i].line);
	}
	rep.unanswered = n - answered - rep.lost;
	return write(up, &rep, sizeof(rep)) == sizeof(rep) ? 0 : 1;
}

/* Adopted by generation @gen so far, and when the first and the latest came. */
static uint64_t adopted_by(void *map, unsigned gen, uint64_t *first_ns, uint64_t *last_ns)
{
	uint64_t n = 0;
	*first_ns = UINT64_MAX;
	*last_ns = 0;
	for (unsigned w = 0; w < HANDOFF_WORKERS; w++) {
		struct handoff_slot *s = handoff_slot(map, gen, w);
		uint64_t k = __atomic_load_n(&s->adopted, __ATOMIC_ACQUIRE);
		if (!k)
			continue;
		n += k;
		if (s->adopted_first_ns < *first_ns)
			*first_ns = s->adopted_first_ns;
		if (s->adopted_last_ns > *last_ns)
			*last_ns = s->adopted_last_ns;
	}
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"connections", required_argument, NULL, 'c'},
	    {"upgrade", required_argument, NULL, 'u'},
	    {"stats", required_argument, NULL, 's'},
	    {"adopted", required_argument, NULL, 'a'},
	    {"per-process", required_argument, NULL, 'P'},
	    {"timeout-ms", required_argument, NULL, 'T'},
	    {0},
	};
	long port = 0, n = 0, timeout_ms = 120000, per_process = 15000;
	char *upgrade = NULL, *after_adopted = NULL;
	const char *stats = NULL;
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 'p':
			port = atol(optarg);
			break;
		case 'c':
			n = atol(optarg);
			break;
		case 'u':
			upgrade = optarg;
			break;
		case 's':
			stats = optarg;
			break;
		case 'a':
			after_adopted = optarg;
			break;
		case 'P':
			per_process = atol(optarg);
			break;
		case 'T':
			timeout_ms = atol(optarg);
			break;
		default:
			return 2;
		}
	}
	long procs = per_process > 0 ? (n + per_process - 1) / per_process : 0;
	if (port < 1 || port > 65535 || n < 1 || per_process < 1 || per_process > 25000 ||
	    procs > 200 || !upgrade || !stats || timeout_ms < 1) {
		fprintf(stderr,
			"usage: handoff --port PORT --connections N --upgrade CMD --stats FILE "
			"[--per-process 1..25000] [--timeout-ms MS]\n");
		return 2;
	}
	int sfd = open(stats, O_RDONLY | O_CLOEXEC);
	void *map =
	    sfd < 0 ? MAP_FAILED : mmap(NULL, HANDOFF_STATS_BYTES, PROT_READ, MAP_SHARED, sfd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "handoff: %s: %s\n", stats, strerror(errno));
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	long long deadline = now_ms() + timeout_ms, t0 = now_ms();
	int up[2], go[2];
	if (pipe2(up, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
		return 1;
	pid_t pids[200];
	for (long p = 0; p < procs; p++) {
		long share = p + 1 < procs ? per_process : n - per_process * (procs - 1);
		pids[p] = fork();
		if (pids[p] == 0) {
			/* Only the parent writes go: its exit reads as EOF here. */
			close(up[0]);
			close(go[1]);
			_exit(client((unsigned)p, share, (int)port, deadline, up[1], go[0]));
		}
		if (pids[p] < 0)
			return 1;
	}
	/* Ours closed: a client process that dies reads as EOF, not as a wait. */
	close(up[1]);
	close(go[0]);
	struct report sum = {0}, rep;
	for (long p = 0; p < procs; p++) {
		if (!read_all(up[0], &rep, sizeof(rep))) {
			fprintf(stderr, "handoff: a client process failed before the upgrade\n");
			return 1;
		}
		sum.held += rep.held;
	}
	long long t1 = now_ms();
	if (sum.held < n) {
		fprintf(stderr,
			"handoff: only %ld of %ld connections answered before the upgrade\n",
			sum.held, n);
		return 1;
	}
	int rc = run(upgrade);
	long long t2 = now_ms();
	if (rc != 0)
		fprintf(stderr, "handoff: the upgrade command exited %d\n", rc);
	uint64_t first_ns, last_ns, adopted;
	while ((adopted = adopted_by(map, 2, &first_ns, &last_ns)) < (uint64_t)n &&
	       now_ms() < deadline)
		usleep(1000);
	long long t3 = now_ms();
	if (after_adopted)
		run(after_adopted);
	/* The answers get a time of their own: the wait for the adoption may have
	 * used all of it. */
	long long answer_timeout_ms[200];
	for (long p = 0; p < procs; p++)
		answer_timeout_ms[p] = timeout_ms;
	if (write(go[1], answer_timeout_ms, sizeof(long long) * (size_t)procs) !=
	    (ssize_t)(sizeof(long long) * (size_t)procs))
		return 1;
	for (long p = 0; p < procs; p++) {
		if (!read_all(up[0], &rep, sizeof(rep))) {
			fprintf(stderr, "handoff: a client process failed after the upgrade\n");
			return 1;
		}
		sum.ok += rep.ok;
		sum.lost += rep.lost;
		sum.wrong += rep.wrong;
		sum.unanswered += rep.unanswered;
	}
	long long t4 = now_ms();
	/* Read now: an old worker writes its figures once its last PARK went. */
	uint64_t park_first = UINT64_MAX, park_ms_max = 0, parked = 0, most = 0, dropped = 0;
	for (unsigned w = 0; w < HANDOFF_WORKERS; w++) {
		const struct handoff_slot *s = handoff_slot(map, 2, w);
		most = s->adopted > most ? s->adopted : most;
		dropped += s->dropped;
	}
	for (unsigned w = 0; w < HANDOFF_WORKERS; w++) {
		const struct handoff_slot *s = handoff_slot(map, 1, w);
		if (!s->park_first_ns)
			continue;
		parked += s->parked;
		if (s->park_first_ns < park_first)
			park_first = s->park_first_ns;
		if (s->park_last_ns > s->park_first_ns &&
		    s->park_last_ns - s->park_first_ns > park_ms_max)
			park_ms_max = s->park_last_ns - s->park_first_ns;
	}
	for (long p = 0; p < procs; p++)
		waitpid(pids[p], NULL, 0);
	double handoff_ms = park_first != UINT64_MAX && last_ns > park_first
				? (double)(last_ns - park_first) / 1e6
				: -1;
	printf("handoff: connections=%ld ok=%ld lost=%ld wrong=%ld unanswered=%ld parked=%llu "
	       "adopted=%llu handoff_ms=%.1f park_ms=%.1f connect_ms=%lld upgrade_ms=%lld "
	       "adopt_wait_ms=%lld answer_ms=%lld processes=%ld most_adopted=%llu "
	       "dropped_messages=%llu\n",
	       n, sum.ok, sum.lost, sum.wrong, sum.unanswered, (unsigned long long)parked,
	       (unsigned long long)adopted, handoff_ms, (double)park_ms_max / 1e6, t1 - t0, t2 - t1,
	       t3 - t2, t4 - t3, procs, (unsigned long long)most, (unsigned long long)dropped);
	return sum.ok == n && rc == 0 ? 0 : 1;
}
