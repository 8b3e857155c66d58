/* SPDX-License-Identifier: MIT */
/* The worker channel seen from a real libbaton worker (tests/apps/askfd). */
#include "harness.h"

#include <netinet/in.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bool wait_file(const char *path, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	while (access(path, F_OK) != 0) {
		if (now_ms() > deadline)
			return false;
		usleep(10000);
	}
	return true;
}

/* The three lines askfd wrote to @DIR@/asked, once it has written them. */
static void read_askfd_report(const struct batond *b, char line[3][256])
{
	char asked[400];
	snprintf(asked, sizeof(asked), "%s/asked", b->dir);
	if (!wait_file(asked, 10000)) {
		batond_dump_log(b);
		fail_msg("the worker did not report");
	}
	FILE *f = fopen(asked, "re");
	assert_non_null(f);
	for (int i = 0; i < 3; i++)
		assert_non_null(fgets(line[i], 256, f));
	fclose(f);
}

static void worker_gets_its_own_listeners_by_name_and_never_another_apps(void **state)
{
	struct batond b;
	batond_prepare(&b);
	int other_port = free_port();
	char conf[2048];
	snprintf(conf, sizeof(conf),
		 "listener http  { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "listener admin { address = \"tcp://127.0.0.1:%d\" }\n"
		 "app web {\n  exec = { \"%s\", \"@DIR@/asked\", \"http\", \"http\", \"admin\" }\n"
		 "  listeners = { \"http\" }\n}\n"
		 "app other {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"admin\" }\n}\n",
		 other_port, ASKFD_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	char line[3][256];
	read_askfd_report(&b, line);
	char want[128];
	/* The first comes from LISTEN_FDS, the second from batond over the channel:
	 * another fd of the same socket. */
	snprintf(want, sizeof(want), "http fd 3 port %d\n", b.port);
	assert_string_equal(line[0], want);
	int fd = -1, port = -1;
	assert_int_equal(sscanf(line[1], "http fd %d port %d", &fd, &port), 2);
	assert_true(fd > 3);
	assert_int_equal(port, b.port);
	assert_string_equal(line[2], "admin error No such file or directory\n");
	assert_true(
	    batond_wait_log(&b, "listener \"admin\" is not a listener of app \"web\"", 5000));
	assert_int_equal(batond_stop(&b), 0);
}

static void bad_messages_from_a_worker_are_refused_with_their_fds_closed(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\", \"--bad-first\", \"@DIR@/asked\", \"http\", "
		 "\"http\" }\n  listeners = { \"http\" }\n}\n",
		 ASKFD_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	char line[3][256];
	read_askfd_report(&b, line);
	/* batond closed the fd that came with a message that takes none (its
	 * last copy: the pipe reads EOF)... */
	assert_string_equal(line[0], "bad-messages: fd closed\n");
	assert_true(batond_wait_log(&b, "bad message on channel: Bad message", 5000));
	assert_true(batond_wait_log(&b, "bad message on channel: Protocol error", 5000));
	/* ...and the channel still answers: the second "http" comes over it. */
	int fd = -1, port = -1;
	assert_int_equal(sscanf(line[2], "http fd %d port %d", &fd, &port), 2);
	assert_true(fd > 3);
	assert_int_equal(port, b.port);
	assert_int_equal(batond_stop(&b), 0);
}

/* One line out, one line back, on an open connection. */
static void exchange(int fd, char *reply, size_t len)
{
	assert_true(line_exchange(fd, reply, len));
}

static void parked_connection_continues_in_the_next_generation(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n}\n",
		 PARKSRV_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	/* Three connections: their parked states (8 KiB each) do not fit one
	 * message of a worker channel together. */
	int fd[3];
	char reply[64], want[64];
	for (int i = 0; i < 3; i++) {
		fd[i] = tcp_connect(b.port);
		assert_true(fd[i] >= 0);
		for (int n = 1; n <= i + 1; n++) {
			exchange(fd[i], reply, sizeof(reply));
			snprintf(want, sizeof(want), "gen 1 count %d from -\n", n);
			assert_string_equal(reply, want);
		}
	}
	char out[1024];
	for (int gen = 2; gen <= 3; gen++) {
		assert_int_equal(
		    batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
		/* The upgrade is answered once the new generation serves; the old
		 * one parks its connections as it drains, and --wait-drain waits
		 * for that. Same TCP connections, no reconnect: the next
		 * generation continues each count, from a state of BATON_STATE_MAX bytes, with the
		 * tag the generation before gave. */
		for (int i = 0; i < 3; i++) {
			exchange(fd[i], reply, sizeof(reply));
			snprintf(want, sizeof(want), "gen %d count %d from gen%d\n", gen, i + gen,
				 gen - 1);
			assert_string_equal(reply, want);
		}
	}
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	assert_int_equal(batond_stop(&b), 0);
}

/* 500 connections, each with its count as state: the old generation parks them
 * all at once (in PARKs of up to 253), batond hands them on in CONNs of up to
 * 253, and every one answers the new generation, on the same TCP connection,
 * with its count carried over. batond keeps none of them. */
#define MANY_PARKED 500

static void hundreds_of_parked_connections_go_over_in_batches_and_every_one_answers(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\", \"--state-bytes\", \"16\" }\n"
		 "  listeners = { \"http\" }\n  mode = dispatch\n}\n",
		 PARKSRV_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	int fds_before = count_fds_settled(b.pid);
	static int fd[MANY_PARKED];
	char reply[64], want[64];
	for (int i = 0; i < MANY_PARKED; i++) {
		fd[i] = tcp_connect(b.port);
		assert_true(fd[i] >= 0);
		for (int n = 1; n <= 1 + i % 2; n++) {
			exchange(fd[i], reply, sizeof(reply));
			snprintf(want, sizeof(want), "gen 1 count %d from -\n", n);
			assert_string_equal(reply, want);
		}
	}
	char out[1024];
	for (int gen = 2; gen <= 3; gen++) {
		assert_int_equal(
		    batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
		for (int i = 0; i < MANY_PARKED; i++) {
			exchange(fd[i], reply, sizeof(reply));
			snprintf(want, sizeof(want), "gen %d count %d from gen%d\n", gen,
				 gen + i % 2, gen - 1);
			if (strcmp(reply, want) != 0)
				fail_msg("connection %d: \"%s\", not \"%s\"", i, reply, want);
		}
	}
	assert_int_equal(app_status(&b, "web", "parks_refused"), 0);
	/* Handed on: batond holds what it held before the upgrades (and the
	 * program the last one replaced, for a rollback). */
	int fds_after = fds_before + pinned_fds(&b, "web");
	assert_int_equal(count_fds_when(b.pid, fds_after, 5000), fds_after);
	for (int i = 0; i < MANY_PARKED; i++)
		close(fd[i]);
	assert_int_equal(batond_stop(&b), 0);
}

static void limit_fds_to_1024(void)
{
	struct rlimit rl = {1024, 1024};
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* batond may hold half its fds' worth of connections (512 here): 800 parked
 * at once, while the next generation reads nothing yet (--lazy-ms), are more.
 * It stops reading the parks until the next generation took what it holds, and
 * the worker waits: none is refused, every one answers. */
#define OVER_HELD 800

static void more_parked_connections_than_batond_may_hold_all_go_over(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\", \"--state-bytes\", \"16\", \"--lazy-ms\", "
		 "\"500\" }\n  listeners = { \"http\" }\n  mode = dispatch\n  hold-max = 1000\n}\n",
		 PARKSRV_PATH);
	batond_write_config(&b, conf);
	batond_start_in(&b, limit_fds_to_1024);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	static int fd[OVER_HELD];
	char reply[64], out[1024];
	for (int i = 0; i < OVER_HELD; i++) {
		fd[i] = tcp_connect(b.port);
		assert_true(fd[i] >= 0);
		exchange(fd[i], reply, sizeof(reply));
		assert_string_equal(reply, "gen 1 count 1 from -\n");
	}
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
	for (int i = 0; i < OVER_HELD; i++) {
		exchange(fd[i], reply, sizeof(reply));
		if (strcmp(reply, "gen 2 count 2 from gen1\n") != 0)
			fail_msg("connection %d: \"%s\"", i, reply);
	}
	assert_int_equal(app_status(&b, "web", "parks_refused"), 0);
	assert_false(batond_log_contains(&b, "refused"));
	for (int i = 0; i < OVER_HELD; i++)
		close(fd[i]);
	assert_int_equal(batond_stop(&b), 0);
}

/* A worker that parks connections while serving (never asked to drain) gets
 * them refused and closed; at the third it is cut off. batond keeps no fd of
 * them: it had 19,998 once, and could no longer fork. */
static void a_worker_that_floods_park_while_serving_is_cut_off_and_batond_keeps_no_fd(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\", \"--park-flood\", \"20000\" }\n"
		 "  listeners = { \"http\" }\n  mode = dispatch\n  workers = 2\n}\n",
		 PARKSRV_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	/* Three refusals per worker, then its channel is closed. */
	assert_true(wait_workers(&b, "ready", 2, 10000));
	long long deadline = now_ms() + 20000;
	while (app_status(&b, "web", "parks_refused") < 6 && now_ms() < deadline)
		usleep(10000);
	assert_int_equal(app_status(&b, "web", "parks_refused"), 6);
	assert_true(batond_wait_log(&b, "parked a connection: refused, it is not draining", 5000));
	assert_true(batond_wait_log(&b, "channel closed", 5000));
	/* batond holds its listeners, sockets and two workers' fds: a few dozen. */
	int fds = count_fds_settled(b.pid);
	if (fds > 40)
		fail_msg("batond holds %d fds after the flood", fds);
	/* And it still starts workers and answers its control socket. */
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(worker_gets_its_own_listeners_by_name_and_never_another_apps),
	    harness_test(bad_messages_from_a_worker_are_refused_with_their_fds_closed),
	    harness_test(parked_connection_continues_in_the_next_generation),
	    harness_test(hundreds_of_parked_connections_go_over_in_batches_and_every_one_answers),
	    harness_test(more_parked_connections_than_batond_may_hold_all_go_over),
	    harness_test(a_worker_that_floods_park_while_serving_is_cut_off_and_batond_keeps_no_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
