/* SPDX-License-Identifier: MIT */
/* Workers' stdout and stderr: in batond's log as "APP[GEN.WORKER]: line"
 * (read from a pipe per worker, long lines in pieces, nothing held after a
 * generation is gone), or, when batond's stderr is the journal, a journal
 * stream of each worker's own named after the app. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define LONG_LINE_BYTES 2500 /* output.h: OUTPUT_LINE_MAX 1024: pieces of 1024, 1024, 452 */

static void upgrade_or_fail(const struct batond *b)
{
	char out[1024];
	if (batonctl(b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL) != 0) {
		batond_dump_log(b);
		fail_msg("upgrade: %s", out);
	}
}

static void wait_log_or_fail(const struct batond *b, const char *needle)
{
	if (!batond_wait_log(b, needle, 10000)) {
		batond_dump_log(b);
		fail_msg("batond's log has no \"%s\" within 10 s", needle);
	}
}

/* "PREFIX" followed by @n times 'x' and a newline: one logged piece. */
static void wait_piece(const struct batond *b, const char *prefix, int n)
{
	char needle[1200];
	int len = snprintf(needle, sizeof(needle), "%s", prefix);
	memset(needle + len, 'x', (size_t)n);
	needle[len + n] = '\n';
	needle[len + n + 1] = 0;
	wait_log_or_fail(b, needle);
}

static void worker_output_is_logged_line_by_line_with_app_generation_and_worker(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char body[1024];
	snprintf(body, sizeof(body),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n"
		 "  exec = { \"/bin/sh\", \"-c\", \"echo to stdout; echo to stderr >&2; "
		 "printf %%%ds '' | tr ' ' x; echo; exec @TESTSRV@\" }\n"
		 "  listeners = { \"http\" }\n"
		 "  workers = 2\n"
		 "}\n",
		 LONG_LINE_BYTES);
	batond_write_config(&b, body);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	wait_log_or_fail(&b, "web[1.0]: to stdout\n");
	wait_log_or_fail(&b, "web[1.0]: to stderr\n");
	wait_log_or_fail(&b, "web[1.1]: to stdout\n");
	wait_log_or_fail(&b, "web[1.1]: to stderr\n");
	/* A line longer than the bound comes in pieces, none lost. */
	wait_piece(&b, "web[1.1]: ", 1024);
	wait_piece(&b, "web[1.1]: ", LONG_LINE_BYTES - 2 * 1024);

	/* The pipes survive a re-exec: what generation 1 says after it (when it
	 * drains) is read by the new image. */
	char out[1024];
	if (batonctl(&b, out, sizeof(out), "reexec", NULL) != 0) {
		batond_dump_log(&b);
		fail_msg("reexec: %s", out);
	}
	upgrade_or_fail(&b);
	int fds = count_fds_settled(b.pid);
	wait_log_or_fail(&b, "web[2.0]: to stdout\n");
	/* What the old generation said while it drained, up to its exit. */
	wait_log_or_fail(&b, "web[1.0]: testsrv[");
	wait_log_or_fail(&b, "]: got signal 15\n");
	/* Its pipes went with it: more upgrades hold no more fds. */
	for (int i = 0; i < 3; i++)
		upgrade_or_fail(&b);
	assert_int_equal(count_fds_when(b.pid, fds, 10000), fds);
	wait_log_or_fail(&b, "web[5.1]: to stderr\n");
	assert_int_equal(batond_stop(&b), 0);
}

/* A worker's last words come before batond's line about its exit, and are
 * in the log when the failed upgrade's answer arrives: why it failed. */
static void a_failed_workers_last_words_come_before_its_exit(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\", \"--exit-before-ready\", \"3\" }\n"
		"  listeners = { \"http\" }\n}\n");
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 1);
	assert_non_null(strstr(out, "generation 2 exited with status 3 before READY=1"));
	FILE *f = fopen(b.log, "r");
	assert_non_null(f);
	static char log[1 << 16];
	size_t n = fread(log, 1, sizeof(log) - 1, f);
	log[n] = '\0';
	fclose(f);
	const char *words = strstr(log, "]: exiting with 3 instead of becoming ready\n");
	const char *exit = strstr(log, "web: generation 2 worker 0 (pid ");
	exit = exit ? strstr(exit, ") exited with status 3") : NULL;
	if (!words || !exit || words > exit)
		batond_dump_log(&b);
	assert_non_null(words);
	assert_non_null(exit);
	assert_true(words < exit);
	assert_int_equal(batond_stop(&b), 0);
}

/* Under systemd (JOURNAL_STREAM names batond's stderr) each worker's stdout
 * and stderr are a journal stream of its own, identified by the app's name and
 * connected by the worker itself (the journal records its pid); none of it
 * passes through batond. The journal's stream socket here is the test's, at
 * journald's path in a mount namespace of its own. */
static void worker_output_goes_to_a_journal_stream_named_after_the_app(void **state)
{
	journal_namespace_enter();
	int journal = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/stdout"};
	assert_int_equal(bind(journal, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(journal, 16), 0);

	struct batond b;
	batond_prepare(&b);
	batond_log_is_journal_stream(&b);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n"
				"  exec = { \"/bin/sh\", \"-c\", \"echo to the journal; exec "
				"@TESTSRV@\" }\n"
				"  listeners = { \"http\" }\n"
				"}\n");
	batond_start(&b);
	unsetenv("JOURNAL_STREAM");
	assert_true(wait_workers(&b, "ready", 1, 10000));

	struct pollfd p = {.fd = journal, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1);
	int conn = accept4(journal, NULL, NULL, SOCK_CLOEXEC);
	assert_true(conn >= 0);
	struct ucred cred;
	socklen_t len = sizeof(cred);
	assert_int_equal(getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
	assert_int_equal(cred.pid, app_worker_pid(&b, "web", 0));
	/* The stream's header (identifier, unit, priority, level prefix, and
	 * forward to syslog, kmsg, console), then the worker's own line. */
	static const char want[] = "web\n\n6\n1\n0\n0\n0\nto the journal\n";
	char got[sizeof(want)] = {0};
	size_t have = 0;
	struct timeval tv = {.tv_sec = 10};
	setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n;
	while (have < sizeof(want) - 1 && (n = read(conn, got + have, sizeof(want) - 1 - have)) > 0)
		have += (size_t)n;
	assert_string_equal(got, want);
	assert_false(batond_log_contains(&b, "to the journal"));
	assert_int_equal(batond_stop(&b), 0);
	close(conn);
	close(journal);
	journal_namespace_leave();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(worker_output_is_logged_line_by_line_with_app_generation_and_worker),
	    harness_test(a_failed_workers_last_words_come_before_its_exit),
	    harness_test(worker_output_goes_to_a_journal_stream_named_after_the_app),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
