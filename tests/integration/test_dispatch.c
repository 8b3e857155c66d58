/* SPDX-License-Identifier: MIT */
/* Dispatch mode end to end: batond accepts, workers (examples/hello, a libbaton
 * app) receive the connections over their channel. */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void start_dispatch(struct batond *b, const char *exec, const char *app_options)
{
	batond_prepare(b);
	char conf[2048];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\"  tag = \"h1\" }\n"
		 "app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n%s}\n",
		 exec, app_options);
	batond_write_config(b, conf);
	batond_start(b);
}

/* The value of KEY=N in loadgen's summary line. */
static long loadgen_field(const char *out_path, const char *key)
{
	FILE *f = fopen(out_path, "re");
	assert_non_null(f);
	char line[4096], pattern[64];
	long v = -1;
	snprintf(pattern, sizeof(pattern), " %s=", key);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "loadgen: ", 9) == 0 && strstr(line, pattern))
			v = strtol(strstr(line, pattern) + strlen(pattern), NULL, 10);
	fclose(f);
	return v;
}

static void run_load(struct batond *b, int ms, long *ok)
{
	char out[400];
	snprintf(out, sizeof(out), "%s/loadgen.out", b->dir);
	long failed;
	pid_t lg = loadgen_start(b, 4, ms, out);
	assert_int_equal(loadgen_wait(lg, out, ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(*ok > 0);
}

/* How many of @pid's fds are a worker's shared completion counter. */
static int counter_pages(pid_t pid)
{
	char dir[64], path[400], target[128];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t len = readlink(path, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = 0;
		n += strncmp(target, "/memfd:baton-done", 17) == 0;
	}
	closedir(d);
	return n;
}

static void dispatch_delivers_every_connection_exactly_once_without_leaking_fds(void **state)
{
	struct batond b;
	start_dispatch(&b, HELLO_PATH, "  workers = 2\n");
	assert_true(wait_workers(&b, "ready", 2, 10000));
	pid_t workers[2];
	assert_int_equal(worker_pids(&b, "ready", workers, 2), 2);
	/* Each libbaton worker counts what it finished in a page batond reads
	 * (least-loaded placement and "load" below), not in CONN_DONE messages. */
	assert_int_equal(counter_pages(b.pid), 2);
	int batond_fds = count_fds_settled(b.pid);
	int worker_fds[2] = {count_fds_settled(workers[0]), count_fds_settled(workers[1])};

	long ok;
	run_load(&b, 1500, &ok);
	/* One loadgen request is one connection: accepted once, delivered once. */
	assert_int_equal(status_sum(&b, "accepted"), ok);
	assert_int_equal(status_sum(&b, "delivered"), ok);
	assert_true(wait_status_sum(&b, "load", 0, 5000)); /* every one reported done */
	assert_int_equal(status_sum(&b, "held"), 0);
	assert_int_equal(count_fds_when(b.pid, batond_fds, 3000), batond_fds);
	assert_int_equal(count_fds_when(workers[0], worker_fds[0], 3000), worker_fds[0]);
	assert_int_equal(count_fds_when(workers[1], worker_fds[1], 3000), worker_fds[1]);
	assert_int_equal(batond_stop(&b), 0);
}

/* A worker writes what it likes in its completion counter: batond believes
 * no more finished than it sent, nothing that goes back, and never faults on
 * the page (sealed: the worker can neither shrink nor grow it). */
static void a_worker_lying_in_its_counter_is_bounded_by_what_batond_sent(void **state)
{
	struct batond b;
	start_dispatch(&b, LIAR_PATH "\", \"@DIR@/liar.out", "");
	assert_true(wait_workers(&b, "ready", 1, 10000));
	int batond_fds = count_fds_settled(b.pid);
	char body[256];
	for (int i = 0; i < 20; i++) {
		assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
		assert_string_equal(body, "liar\n");
	}
	char path[400], line[2][128];
	snprintf(path, sizeof(path), "%s/liar.out", b.dir);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	for (int i = 0; i < 2; i++)
		assert_non_null(fgets(line[i], sizeof(line[i]), f));
	fclose(f);
	assert_string_equal(line[0], "shrink: Operation not permitted\n");
	assert_string_equal(line[1], "grow: Operation not permitted\n");
	assert_int_equal(status_sum(&b, "delivered"), 20);
	/* Its first UINT64_MAX counted as every connection sent until then (1 to
	 * 3, as the reads fell), and nothing after it: the liar looks busy, not
	 * idle, and least-loaded would send it less. */
	long long load = status_sum(&b, "load");
	assert_true(load >= 15 && load <= 20);
	assert_int_equal(count_fds_when(b.pid, batond_fds, 3000), batond_fds);
	assert_int_equal(batond_stop(&b), 0);
}

static void dispatch_survives_twenty_upgrades_under_load(void **state)
{
	struct batond b;
	start_dispatch(&b, HELLO_PATH, "  workers = 2\n");
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char lg_out[400], out[1024];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	/* Twenty upgrades while the load runs, however long they take. */
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);
	for (int i = 1; i <= 20; i++)
		if (batonctl(&b, out, sizeof(out), "upgrade", "web", NULL) != 0)
			fail_msg("upgrade %d: %s", i, out);
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	assert_int_equal(app_status(&b, "web", "upgrades"), 20);
	assert_int_equal(app_status(&b, "web", "serving"), 21);
	/* Every connection accepted was delivered and reported done. */
	assert_true(wait_status_sum(&b, "load", 0, 10000));
	assert_int_equal(status_sum(&b, "held"), 0);
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "generation 21 "));
	assert_int_equal(batond_stop(&b), 0);
}

/* Every worker killed with SIGKILL at once, three times, while the load runs. */
static void dispatch_holds_connections_while_every_worker_restarts(void **state)
{
	struct batond b;
	start_dispatch(&b, HELLO_PATH, "  workers = 2\n");
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char lg_out[400];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);
	const int rounds = 3;
	for (int round = 0; round < rounds; round++) {
		pid_t pids[2];
		assert_int_equal(worker_pids(&b, "ready", pids, 2), 2);
		kill(pids[0], SIGKILL);
		kill(pids[1], SIGKILL);
		/* Both restarted: two ready workers, neither of them a killed one. */
		long long deadline = now_ms() + 20000;
		pid_t now[2] = {pids[0], pids[1]};
		while (worker_pids(&b, "ready", now, 2) != 2 || now[0] == pids[0] ||
		       now[0] == pids[1] || now[1] == pids[0] || now[1] == pids[1])
			if (now_ms() > deadline)
				fail_msg("round %d: the workers did not come back", round + 1);
	}
	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_int_equal(app_status(&b, "web", "restarts"), 2 * rounds);
	/* Never refused: the listener stays open and batond holds what arrives
	 * while no worker is ready. The only losses are connections the killed
	 * workers had taken: those they had read (at most one per client) and
	 * those in their channels. A SIGKILLed process closes its fds only after
	 * tearing down its memory (slow under ASan), so batond may still send to it
	 * meanwhile: the channel's bound, 22 single-connection messages per worker
	 * (docs/dispatch.md), is what holds. */
	assert_int_equal(loadgen_field(lg_out, "refused"), 0);
	assert_true(ok > 0);
	if (failed > rounds * (4L + 2 * 22))
		fail_msg("%ld requests failed over %d rounds of kill -9", failed, rounds);
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batond_stop(&b), 0);
}

/* GET / from source address @src; returns the serving worker's pid or -1. */
static int pid_serving(const char *src, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in from = {.sin_family = AF_INET};
	inet_pton(AF_INET, src, &from.sin_addr);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int pid = -1;
	const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char buf[2048];
	size_t used = 0;
	ssize_t n;
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) == 0 &&
	    connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 &&
	    write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1) {
		while (used < sizeof(buf) - 1 &&
		       (n = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0)
			used += (size_t)n;
		buf[used] = 0;
		const char *p = strstr(buf, " pid ");
		if (p)
			pid = atoi(p + 5);
	}
	close(fd);
	return pid;
}

static void sticky_policy_sends_a_peer_to_the_same_worker(void **state)
{
	struct batond b;
	start_dispatch(&b, HELLO_PATH, "  workers = 3\n  policy = sticky\n");
	assert_true(wait_workers(&b, "ready", 3, 10000));
	const char *peers[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
	int distinct[5], n_distinct = 0;
	for (int p = 0; p < 5; p++) {
		int first = pid_serving(peers[p], b.port);
		assert_true(first > 0);
		for (int i = 0; i < 10; i++)
			assert_int_equal(pid_serving(peers[p], b.port), first);
		bool seen = false;
		for (int k = 0; k < n_distinct; k++)
			seen |= distinct[k] == first;
		if (!seen)
			distinct[n_distinct++] = first;
	}
	assert_true(n_distinct >= 2); /* five peers do not all hash to one of three workers */
	assert_int_equal(batond_stop(&b), 0);
}

static void write_script(const struct batond *b, const char *name, const char *body)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", b->dir, name);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
}

static void held_connections_are_served_once_a_worker_is_ready(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char body_script[600];
	snprintf(body_script, sizeof(body_script), "sleep 0.5\nexec %s", HELLO_PATH);
	write_script(&b, "slow", body_script);
	batond_write_config(&b,
			    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			    "app web {\n  exec = { \"@DIR@/slow\" }\n  listeners = { \"http\" }\n"
			    "  mode = dispatch\n}\n");
	batond_start(&b);
	/* No worker is ready yet: batond holds the connection, then delivers it. */
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "generation 1 "));
	assert_int_equal(batond_stop(&b), 0);
}

/* A dispatch app whose worker is never ready: batond holds what it accepts. */
static void start_never_ready(struct batond *b, const char *app_options)
{
	batond_prepare(b);
	write_script(b, "never", "exec sleep 30");
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/never\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n%s}\n",
		 app_options);
	batond_write_config(b, conf);
	batond_start(b);
}

/* @n connections to batond's listener; the kernel backlog takes what batond
 * does not accept. */
static void connect_clients(const struct batond *b, int *fds, int n)
{
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)b->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&to, sizeof(to)), 0);
	}
}

static void hold_max_and_hold_timeout_bound_what_batond_holds(void **state)
{
	struct batond b;
	start_never_ready(&b, "  hold-max = 3\n  hold-timeout = 1\n");
	int fds[6];
	connect_clients(&b, fds, 6);
	assert_true(wait_status_sum(&b, "held", 3, 5000));
	assert_int_equal(status_sum(&b, "accepted"), 3); /* never more than hold-max */
	/* After hold-timeout the three are closed and the next three accepted. */
	assert_true(wait_status_sum(&b, "timed_out", 3, 5000));
	assert_true(wait_status_sum(&b, "accepted", 6, 5000));
	assert_true(wait_status_sum(&b, "timed_out", 6, 5000));
	char c;
	for (int i = 0; i < 6; i++) {
		assert_true(read(fds[i], &c, 1) <= 0); /* closed by batond, not answered */
		close(fds[i]);
	}
	assert_int_equal(batond_stop(&b), 0);
}

/* utime + stime of @pid in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	unsigned long long ut = 0, st = 0;
	char *p = strrchr(line, ')');
	assert_non_null(p);
	/* After "(comm)": state, then fields 4..13; utime and stime are 14 and 15. */
	assert_int_equal(
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
	return (long long)(ut + st);
}

static void accept_pauses_when_batond_runs_out_of_fds(void **state)
{
	struct batond b;
	start_never_ready(&b, "  hold-timeout = 3\n");
	/* Room for two more fds: the third connection meets EMFILE. */
	int n = count_fds_settled(b.pid);
	struct rlimit old;
	assert_int_equal(prlimit(b.pid, RLIMIT_NOFILE, NULL, &old), 0);
	/* The soft limit only: raising it back needs no privilege. */
	struct rlimit lim = {.rlim_cur = (rlim_t)n + 2, .rlim_max = old.rlim_max};
	assert_int_equal(prlimit(b.pid, RLIMIT_NOFILE, &lim, NULL), 0);
	int fds[6];
	connect_clients(&b, fds, 6);
	assert_true(batond_wait_log(&b, "pausing accept for 100 ms", 5000));
	/* Paused, not spinning on a listener that stays readable: about 10
	 * attempts a second cost batond next to nothing. */
	long long t0 = cpu_ticks(b.pid);
	usleep(1000 * 1000);
	long long used = cpu_ticks(b.pid) - t0;
	long hz = sysconf(_SC_CLK_TCK);
	if (used * 4 > hz)
		fail_msg("batond used %lld of %ld ticks in 1 s while out of fds", used, hz);
	/* batonctl is told why batond cannot take it, not left waiting. */
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 1);
	assert_non_null(strstr(out, "batond is out of file descriptors"));
	/* With fds again, batond takes what waited in the backlog. */
	if (prlimit(b.pid, RLIMIT_NOFILE, &old, NULL) < 0)
		fail_msg("prlimit %llu:%llu: %s", (unsigned long long)old.rlim_cur,
			 (unsigned long long)old.rlim_max, strerror(errno));
	assert_true(wait_status_sum(&b, "held", 6, 5000));
	for (int i = 0; i < 6; i++)
		close(fds[i]);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(dispatch_delivers_every_connection_exactly_once_without_leaking_fds),
	    harness_test(a_worker_lying_in_its_counter_is_bounded_by_what_batond_sent),
	    harness_test(dispatch_survives_twenty_upgrades_under_load),
	    harness_test(dispatch_holds_connections_while_every_worker_restarts),
	    harness_test(sticky_policy_sends_a_peer_to_the_same_worker),
	    harness_test(held_connections_are_served_once_a_worker_is_ready),
	    harness_test(hold_max_and_hold_timeout_bound_what_batond_holds),
	    harness_test(accept_pauses_when_batond_runs_out_of_fds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
