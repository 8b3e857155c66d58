/* SPDX-License-Identifier: MIT */
/* A batond killed without a service manager: the one started after it takes
 * the listeners back from the workers it left (no socket is bound anew, no
 * client refused) and drains those workers once its own serve. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Waits (bounded) for @pid, a worker orphaned to this test (its subreaper);
 * true if it exited with status 0 (drained, not killed). */
static bool reaped(pid_t pid, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int status;
	while (waitpid(pid, &status, WNOHANG) != pid)
		if (now_ms() > deadline)
			return false;
		else
			usleep(10000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		print_message("pid %d: %s %d\n", (int)pid,
			      WIFEXITED(status) ? "exited with status" : "killed by signal",
			      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void a_batond_killed_without_systemd_takes_its_listener_back_from_its_workers(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b,
			    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			    "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			    "  workers = 2\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	pid_t old[2];
	assert_int_equal(worker_pids(&b, "ready", old, 2), 2);
	char path[400];
	snprintf(path, sizeof(path), "%s.state", b.sock);
	assert_int_equal(access(path, F_OK), 0); /* batond records its workers */
	char lg_out[400];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);

	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	batond_kill9(&b);
	/* Its workers serve on meanwhile; the new batond binds nothing anew. */
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	batond_start(&b);
	char want[160];
	snprintf(want, sizeof(want), "taken back from pid %d", (int)old[0]);
	if (!batond_log_contains(&b, want)) {
		snprintf(want, sizeof(want), "taken back from pid %d", (int)old[1]);
		assert_true(batond_log_contains(&b, want));
	}
	assert_true(wait_workers(&b, "ready", 2, 10000));
	/* Once the new generation serves, the old workers drain and exit, saying
	 * so on their stdout, whose pipe lost its reader with the batond before:
	 * the new one reads it (else their first line would end them: SIGPIPE). */
	assert_true(reaped(old[0], 20000));
	assert_true(reaped(old[1], 20000));
	assert_true(batond_wait_log(&b, "]: drained, exiting", 5000));
	assert_true(
	    batond_wait_log(&b, "every worker of the batond before this one is gone", 5000));

	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_int_equal(failed, 0); /* nothing refused, reset or lost */
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	pid_t now[2];
	assert_int_equal(worker_pids(&b, "ready", now, 2), 2);
	assert_true(now[0] != old[0] && now[0] != old[1]);
	assert_int_equal(batond_stop(&b), 0);
}

/* Field 22 of /proc/self/stat: this process's start time, as batond checks it. */
static unsigned long long own_start(void)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "re");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	unsigned long long ticks = 0;
	const char *p = strrchr(buf, ')');
	assert_int_equal(sscanf(p + 2,
				"%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
				"%*d %*d %*d %*d %llu",
				&ticks),
			 1);
	return ticks;
}

/* The state file is a hint: a process it names that is no worker of the app
 * (here this test, with its true start time) keeps its fds. */
static void a_state_file_naming_foreign_processes_gives_nothing_away(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n");
	/* This test process is no worker of app web: its fds stay its own. */
	char path[400];
	snprintf(path, sizeof(path), "%s.state", b.sock);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f,
		"{\"workers\":[{\"app\":\"web\",\"generation\":1,\"pid\":%d,\"start\":%llu},"
		"{\"app\":\"web\",\"generation\":1,\"pid\":1,\"start\":1}]}",
		(int)getpid(), own_start());
	fclose(f);
	batond_start(&b);
	assert_false(batond_log_contains(&b, "taken back"));
	assert_false(batond_log_contains(&b, "orphaned by the batond before"));
	assert_true(wait_workers(&b, "ready", 1, 10000));
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(a_batond_killed_without_systemd_takes_its_listener_back_from_its_workers),
	    harness_test(a_state_file_naming_foreign_processes_gives_nothing_away),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
