/* SPDX-License-Identifier: MIT */
/* Who gets the stop signal on a drain (kill-mode): a pre-fork server whose
 * master stops its workers loses no request under the default (mixed), and a
 * wrapper script that does not exec drains its program with kill-mode group. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void upgrade_or_fail(const struct batond *b, int n)
{
	char out[1024];
	if (batonctl(b, out, sizeof(out), "upgrade", "web", NULL) != 0) {
		batond_dump_log(b);
		fail_msg("upgrade %d: %s", n, out);
	}
}

/* The pid in the body of a response from generation @gen ("gen=G pid=P ..."). */
static pid_t serving_pid(const struct batond *b, int gen)
{
	char body[256], want[32];
	int pid = 0;
	int status = http_get(b->port, body, sizeof(body));
	snprintf(want, sizeof(want), "gen=%d ", gen);
	if (status != 200 || strncmp(body, want, strlen(want)) != 0 ||
	    sscanf(body + strlen(want), "pid=%d", &pid) != 1) {
		batond_dump_log(b);
		fail_msg("expected 200 from generation %d, got %d: %s", gen, status, body);
	}
	return pid;
}

/* The case: a pre-fork master and its two workers per batond worker,
 * the load on while twenty upgrades run one after the other. The stop signal
 * reaches only the masters, which let their workers finish what they serve. */
static void prefork_server_loses_no_request_over_twenty_upgrades_in_mixed_kill_mode(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"" PREFORKSRV_PATH "\" }\n"
				"  listeners = { \"http\" }\n  workers = 2\n"
				"  drain-timeout = 30\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char lg_out[400];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 8, LOADGEN_CEILING_MS, lg_out);
	for (int i = 1; i <= 20; i++)
		upgrade_or_fail(&b, i);
	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	serving_pid(&b, 21);
	/* Every old generation stopped by itself, none was killed at drain-timeout. */
	assert_false(batond_log_contains(&b, "SIGKILL"));
	assert_int_equal(batond_stop(&b), 0);
}

/* Starts app web as DIR/wrapper, a script that runs testsrv as its child, not
 * by exec (the inner sh sets LISTEN_PID to what becomes testsrv's pid), with
 * @options. Returns testsrv's pid, from its answer. */
static pid_t start_wrapped_testsrv(struct batond *b, const char *options)
{
	batond_prepare(b);
	char path[400], conf[1024];
	snprintf(path, sizeof(path), "%s/wrapper", b->dir);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n/bin/sh -c 'LISTEN_PID=$$ exec %s --no-notify'\n", TESTSRV_PATH);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/wrapper\" }\n  listeners = { \"http\" }\n"
		 "  ready = immediate\n%s}\n",
		 options);
	batond_write_config(b, conf);
	batond_start(b);
	assert_true(wait_workers(b, "ready", 1, 10000));
	return serving_pid(b, 1);
}

static pid_t batonctl_start(const struct batond *b, const char *cmd, const char *option,
			    const char *app)
{
	pid_t ctl = fork();
	assert_true(ctl >= 0);
	if (ctl == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		dup2(null, 1);
		execl(BATONCTL_PATH, "batonctl", "-s", b->sock, cmd, option, app, (char *)NULL);
		_exit(127);
	}
	return ctl;
}

/* Waits for our child @pid while reaping what comes to this process as
 * subreaper: the wrapper's program, once the wrapper died. batond waits for a
 * worker's process group to be empty, and an unreaped zombie is still in it.
 * batond itself is left alone unless it is @pid. Returns @pid's exit status
 * (-1 if killed); *ret_status is @program's wait status if it was reaped. */
static int wait_reaping(const struct batond *b, pid_t pid, pid_t program, int *ret_status)
{
	long long deadline = now_ms() + 60000;
	while (now_ms() < deadline) {
		siginfo_t si = {0};
		int status;
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid <= 0) {
			usleep(5000);
			continue;
		}
		if (si.si_pid == b->pid && pid != b->pid) {
			batond_dump_log(b);
			fail_msg("batond exited while pid %d ran", (int)pid);
		}
		waitpid(si.si_pid, &status, 0);
		if (si.si_pid == program)
			*ret_status = status;
		if (si.si_pid == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	}
	batond_dump_log(b);
	fail_msg("pid %d did not exit within 60 s", (int)pid);
	return -1;
}

/* `batonctl upgrade --wait-drain web`, reaping. Returns batonctl's exit status. */
static int upgrade_reaping(const struct batond *b, pid_t program, int *ret_status)
{
	*ret_status = -1;
	int rc = wait_reaping(b, batonctl_start(b, "upgrade", "--wait-drain", "web"), program,
			      ret_status);
	/* With cgroups batond waits until the program is dead, not reaped: its
	 * zombie, ours, may still be there. */
	if (*ret_status == -1 && waitpid(program, ret_status, 0) != program)
		*ret_status = -1;
	return rc;
}

/* batond_stop, reaping what the last generation's wrapper leaves to us. */
static int stop_reaping(struct batond *b)
{
	int ignored;
	batonctl_start(b, "stop", NULL, NULL); /* reaped on the way: batond may exit first */
	int rc = wait_reaping(b, b->pid, 0, &ignored);
	b->pid = 0;
	batond_stop(b); /* removes the directory */
	return rc;
}

/* The wrapper passes no signal on: only a signal to its whole group stops its
 * program, which then drains and exits by itself, long before drain-timeout. */
static void a_wrapper_scripts_program_drains_on_the_stop_signal_in_group_kill_mode(void **state)
{
	struct batond b;
	pid_t old = start_wrapped_testsrv(&b, "  kill-mode = group\n  drain-timeout = 20\n");
	int status; /* not asserted: the wrapper may reap it before it dies itself */
	assert_int_equal(upgrade_reaping(&b, old, &status), 0);
	char drained[64];
	snprintf(drained, sizeof(drained), "testsrv[%d]: drained, exiting", (int)old);
	assert_true(batond_log_contains(&b, drained)); /* its stderr is batond's */
	assert_false(batond_log_contains(&b, "SIGKILL"));
	assert_int_equal(kill(old, 0), -1);
	assert_int_equal(errno, ESRCH);
	serving_pid(&b, 2);
	assert_int_equal(stop_reaping(&b), 0);
}

/* The other side of the default: the stop signal goes to the wrapper alone,
 * and what it started is waited for, then killed at drain-timeout. */
static void a_wrapper_scripts_program_is_killed_at_drain_timeout_in_mixed_kill_mode(void **state)
{
	struct batond b;
	pid_t old = start_wrapped_testsrv(&b, "  drain-timeout = 0.2\n");
	char pgid_of_wrapper[160];
	pid_t wrapper;
	assert_int_equal(worker_pids(&b, "ready", &wrapper, 1), 1);
	int status;
	assert_int_equal(upgrade_reaping(&b, old, &status), 0);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	lingering_killed_line(&b, 1, 0, wrapper, pgid_of_wrapper, sizeof(pgid_of_wrapper));
	assert_true(batond_log_contains(&b, pgid_of_wrapper));
	serving_pid(&b, 2);
	assert_int_equal(stop_reaping(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(prefork_server_loses_no_request_over_twenty_upgrades_in_mixed_kill_mode),
	    harness_test(a_wrapper_scripts_program_drains_on_the_stop_signal_in_group_kill_mode),
	    harness_test(a_wrapper_scripts_program_is_killed_at_drain_timeout_in_mixed_kill_mode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
