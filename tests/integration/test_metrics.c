/* SPDX-License-Identifier: MIT */
/* What batond shows of itself to monitoring: its metrics as Prometheus meets
 * them (GET /metrics over HTTP and `batonctl metrics`, checked by promtool,
 * with the counts of what the test did), what the metrics server does with
 * anything else, and its lines in the journal with their fields. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define PROMTOOL "/usr/bin/promtool"
#define CURL	 "/usr/bin/curl"

/* Starts a dispatch app of 2 examples/hello workers, metrics on @metrics_port
 * (the control section is line 1). */
static void start_with_metrics(struct batond *b, int metrics_port)
{
	batond_prepare(b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "metrics { address = \"tcp://127.0.0.1:%d\" }\n"
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n  workers = 2\n}\n",
		 metrics_port);
	batond_write_config(b, conf);
	batond_start(b);
	assert_true(wait_workers(b, "ready", 2, 10000));
}

/* Runs @argv with stdin from @in (or /dev/null) and stdout+stderr into
 * @out_path; returns its exit status. */
static int run(const char *const *argv, const char *in, const char *out_path)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int i = open(in ? in : "/dev/null", O_RDONLY | O_CLOEXEC);
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (i < 0 || o < 0)
			_exit(126);
		dup2(i, 0);
		dup2(o, 1);
		dup2(o, 2);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *path)
{
	static char buf[256 * 1024];
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

/* promtool check metrics on the file at @path: lint and syntax. */
static void assert_promtool_passes(const struct batond *b, const char *path)
{
	char out[400];
	snprintf(out, sizeof(out), "%s/promtool.out", b->dir);
	const char *argv[] = {PROMTOOL, "check", "metrics", NULL};
	if (run(argv, path, out) != 0)
		fail_msg("promtool check metrics refused %s:\n%s\n---\n%s", path, slurp(out),
			 slurp(path));
}

static void assert_sample(const char *text, const char *sample)
{
	char line[256];
	snprintf(line, sizeof(line), "\n%s\n", sample);
	if (!strstr(text, line))
		fail_msg("expected the sample \"%s\" in:\n%s", sample, text);
}

/* The value of a sample without labels, e.g. process_open_fds. */
static double sample_value(const char *text, const char *name)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "\n%s ", name);
	const char *p = strstr(text, prefix);
	if (!p)
		fail_msg("no sample %s in:\n%s", name, text);
	return strtod(p + strlen(prefix), NULL);
}

/* What the test did, as both ways of asking show it. */
static void assert_counts(const char *text)
{
	assert_sample(text, "baton_build_info{version=\"" BATON_VERSION "\"} 1");
	assert_sample(text, "baton_app_serving_generation{app=\"web\"} 2");
	assert_sample(text, "baton_app_upgrades_total{app=\"web\"} 1");
	assert_sample(text, "baton_app_rollbacks_total{app=\"web\"} 0");
	assert_sample(text, "baton_app_health_checks_failed_total{app=\"web\"} 0");
	assert_sample(text, "baton_app_worker_restarts_total{app=\"web\"} 0");
	/* Generation 1 drained (upgrade --wait-drain), in less than 60 s. */
	assert_sample(text, "baton_app_drain_duration_seconds_count{app=\"web\"} 1");
	assert_sample(text, "baton_app_drain_duration_seconds_bucket{app=\"web\",le=\"+Inf\"} 1");
	assert_sample(text, "baton_app_drain_duration_seconds_bucket{app=\"web\",le=\"60\"} 1");
	assert_true(sample_value(text, "baton_app_drain_duration_seconds_sum{app=\"web\"}") > 0);
	assert_sample(text, "baton_workers{app=\"web\",state=\"ready\"} 2");
	assert_sample(text, "baton_workers{app=\"web\",state=\"starting\"} 0");
	assert_sample(text,
		      "baton_listener_connections_accepted_total{listener=\"http\",app=\"web\"} 5");
	assert_sample(text, "baton_listener_connections_held{listener=\"http\",app=\"web\"} 0");
	assert_sample(
	    text, "baton_listener_connections_timed_out_total{listener=\"http\",app=\"web\"} 0");
	assert_true(sample_value(text, "process_open_fds") > 3);
	assert_true(sample_value(text, "process_resident_memory_bytes") > 0);
}

static void metrics_over_http_and_batonctl_pass_promtool_and_count_what_happened(void **state)
{
	if (access(PROMTOOL, X_OK) != 0) {
		print_message("skipped: " PROMTOOL " is missing (apt-get install prometheus)\n");
		skip();
	}
	if (access(CURL, X_OK) != 0) {
		print_message("skipped: " CURL " is missing (apt-get install curl)\n");
		skip();
	}
	struct batond b;
	int metrics_port = free_port();
	start_with_metrics(&b, metrics_port);
	char body[256], out[4096];
	for (int i = 0; i < 5; i++)
		assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);

	char path[400], url[128];
	snprintf(path, sizeof(path), "%s/http.prom", b.dir);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", metrics_port);
	const char *curl[] = {CURL, "-sS", "--fail", "--max-time", "10", url, NULL};
	assert_int_equal(run(curl, NULL, path), 0);
	assert_promtool_passes(&b, path);
	assert_counts(slurp(path));

	snprintf(path, sizeof(path), "%s/batonctl.prom", b.dir);
	const char *ctl[] = {BATONCTL_PATH, "-s", b.sock, "metrics", NULL};
	assert_int_equal(run(ctl, NULL, path), 0);
	assert_promtool_passes(&b, path);
	assert_counts(slurp(path));
	assert_int_equal(batond_stop(&b), 0);
}

/* Sends @request (may be empty) to the metrics port and reads until batond
 * closes (bounded): returns what came. */
static const char *exchange(int port, const char *request, size_t len)
{
	static char answer[4096];
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (len)
		assert_int_equal(send(s, request, len, MSG_NOSIGNAL), (ssize_t)len);
	size_t got = 0;
	for (;;) {
		/* 20 s: batond closes an idle connection at 10. */
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, 20000) != 1)
			fail_msg("batond did not close the connection; got:\n%.*s", (int)got,
				 answer);
		ssize_t n = recv(s, answer + got, sizeof(answer) - 1 - got, 0);
		if (n < 0 && errno == ECONNRESET)
			break;
		assert_true(n >= 0);
		if (n == 0)
			break; /* closed */
		got += (size_t)n;
	}
	close(s);
	answer[got] = 0;
	return answer;
}

static void assert_status_line(const char *answer, const char *status)
{
	if (strncmp(answer, status, strlen(status)) != 0)
		fail_msg("expected \"%s\", got:\n%s", status, answer);
}

static void anything_but_get_metrics_is_answered_with_an_error_and_closed(void **state)
{
	struct batond b;
	int metrics_port = free_port();
	start_with_metrics(&b, metrics_port);
	int fds = count_fds_settled(b.pid);
	static const char get[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	const char *a = exchange(metrics_port, get, sizeof(get) - 1);
	assert_status_line(a, "HTTP/1.1 200 OK\r\n");
	assert_non_null(
	    strstr(a, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	static const char garbage[] = "garbage\r\n\r\n";
	assert_status_line(exchange(metrics_port, garbage, sizeof(garbage) - 1),
			   "HTTP/1.1 400 Bad Request\r\n");
	static const char other[] = "GET /other HTTP/1.1\r\n\r\n";
	assert_status_line(exchange(metrics_port, other, sizeof(other) - 1),
			   "HTTP/1.1 404 Not Found\r\n");
	static const char post[] = "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
	assert_status_line(exchange(metrics_port, post, sizeof(post) - 1),
			   "HTTP/1.1 405 Method Not Allowed\r\n");
	/* A request head larger than 8 KiB that never ends. */
	static char big[9000];
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	memset(big + 26, 'a', sizeof(big) - 26);
	assert_status_line(exchange(metrics_port, big, sizeof(big)),
			   "HTTP/1.1 400 Bad Request\r\n");
	/* HEAD: the headers only. */
	static const char head[] = "HEAD /metrics HTTP/1.1\r\n\r\n";
	a = exchange(metrics_port, head, sizeof(head) - 1);
	assert_status_line(a, "HTTP/1.1 200 OK\r\n");
	assert_null(strstr(a, "baton_build_info"));
	/* Every connection batond took is closed again. */
	assert_int_equal(count_fds_when(b.pid, fds, 3000), fds);
	assert_int_equal(batond_stop(&b), 0);
}

static void a_client_that_sends_nothing_is_closed_at_the_connection_time_limit(void **state)
{
	struct batond b;
	int metrics_port = free_port();
	start_with_metrics(&b, metrics_port);
	int fds = count_fds_settled(b.pid);
	long long t0 = now_ms();
	assert_string_equal(exchange(metrics_port, "", 0), "");
	print_message("an idle client was closed after %lld ms\n", now_ms() - t0);
	assert_int_equal(count_fds_when(b.pid, fds, 3000), fds);
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200); /* serving on */
	assert_int_equal(batond_stop(&b), 0);
}

static void a_metrics_address_in_use_stops_start_up_with_file_and_line(void **state)
{
	int taken = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(taken, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(taken, 1), 0);
	assert_int_equal(getsockname(taken, (struct sockaddr *)&sa, &len), 0);
	struct batond b;
	batond_prepare(&b);
	char conf[512];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "metrics { address = \"tcp://127.0.0.1:%d\" }\n",
		 ntohs(sa.sin_port));
	batond_write_config(&b, conf);
	char out[400], want[300];
	snprintf(out, sizeof(out), "%s/batond.out", b.dir);
	const char *argv[] = {BATOND_PATH, "-c", b.conf, NULL};
	assert_int_equal(run(argv, NULL, out), 1);
	snprintf(want, sizeof(want),
		 "batond.conf:3: metrics: address \"tcp://127.0.0.1:%d\": Address already in use",
		 ntohs(sa.sin_port));
	if (!strstr(slurp(out), want))
		fail_msg("expected \"%s\" in:\n%s", want, slurp(out));
	close(taken);
	batond_stop(&b);
}

/* The datagrams batond sends to the journal ("NAME=value" lines), read until
 * one has a line starting with each of @want (NULL-terminated), bounded:
 * returns that one. */
static const char *journal_entry_with(int journal, const char *const *want)
{
	static char entry[8192];
	long long deadline = now_ms() + 10000;
	for (;;) {
		struct pollfd p = {.fd = journal, .events = POLLIN};
		int left = (int)(deadline - now_ms());
		if (left <= 0 || poll(&p, 1, left) != 1)
			fail_msg("no journal entry with %s within 10 s", want[0]);
		/* A newline first: each field is found as "\nNAME=value". */
		entry[0] = '\n';
		ssize_t n = recv(journal, entry + 1, sizeof(entry) - 2, 0);
		assert_true(n > 0);
		entry[n + 1] = 0;
		bool all = true;
		for (int i = 0; want[i] && all; i++) {
			char line[256];
			snprintf(line, sizeof(line), "\n%s", want[i]);
			all = strstr(entry, line) != NULL;
		}
		if (all)
			return entry;
	}
}

/* Under systemd (stderr is the journal's stream: JOURNAL_STREAM), a line about
 * a worker goes to the journal with APP=, GENERATION=, WORKER=, WORKER_PID=.
 * The journal here is a datagram socket of the test's, at journald's path in a
 * mount namespace of its own. */
static void worker_lines_reach_the_journal_with_their_fields(void **state)
{
	journal_namespace_enter();
	int journal = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/socket"};
	assert_int_equal(bind(journal, (struct sockaddr *)&sa, sizeof(sa)), 0);

	struct batond b;
	batond_prepare(&b);
	batond_log_is_journal_stream(&b);
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	unsetenv("JOURNAL_STREAM");
	assert_true(wait_workers(&b, "ready", 1, 10000));
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	char pid[64];
	snprintf(pid, sizeof(pid), "WORKER_PID=%d\n", (int)app_worker_pid(&b, "web", 0));
	const char *ready[] = {"MESSAGE=web: generation 2 worker 0 (pid ",
			       "APP=web\n",
			       "GENERATION=2\n",
			       "WORKER=0\n",
			       pid,
			       "PRIORITY=6\n",
			       "SYSLOG_IDENTIFIER=batond\n",
			       NULL};
	journal_entry_with(journal, ready);
	/* A line about a generation: no worker fields. */
	const char *gone[] = {"MESSAGE=web: generation 1 gone", "APP=web\n", "GENERATION=1\n",
			      NULL};
	assert_null(strstr(journal_entry_with(journal, gone), "\nWORKER"));
	/* Lines without an app still take the stream, with their priority. */
	assert_true(batond_log_contains(&b, "<6>batond " BATON_VERSION " running 1 app"));
	assert_false(batond_log_contains(&b, "worker 0 (pid"));
	assert_int_equal(batond_stop(&b), 0);
	close(journal);
	journal_namespace_leave();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(metrics_over_http_and_batonctl_pass_promtool_and_count_what_happened),
	    harness_test(anything_but_get_metrics_is_answered_with_an_error_and_closed),
	    harness_test(a_client_that_sends_nothing_is_closed_at_the_connection_time_limit),
	    harness_test(a_metrics_address_in_use_stops_start_up_with_file_and_line),
	    harness_test(worker_lines_reach_the_journal_with_their_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
