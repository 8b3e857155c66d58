/* SPDX-License-Identifier: MIT */
/* batond end to end: a real batond, real workers (tests/apps/testsrv, a plain
 * systemd program), real sockets on 127.0.0.1, the real batonctl. */
#include "harness.h"

#include <dirent.h>
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

/* The app's exec is DIR/app, a script that runs testsrv with @args: tests swap
 * it between generations to make the next one fail in a chosen way. */
static void write_app(const struct batond *b, const char *args)
{
	char tmp[400], path[400];
	snprintf(tmp, sizeof(tmp), "%s/app.tmp", b->dir);
	snprintf(path, sizeof(path), "%s/app", b->dir);
	FILE *f = fopen(tmp, "we");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\nexec %s %s\n", TESTSRV_PATH, args);
	fclose(f);
	assert_int_equal(chmod(tmp, 0755), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void start_app(struct batond *b, const char *app_options, const char *args)
{
	batond_prepare(b);
	write_app(b, args);
	char conf[2048];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/app\" }\n  listeners = { \"http\" }\n%s}\n",
		 app_options);
	batond_write_config(b, conf);
	batond_start(b);
}

static void assert_serves_generation(const struct batond *b, int gen)
{
	char body[256], want[32];
	int status = http_get(b->port, body, sizeof(body));
	snprintf(want, sizeof(want), "gen=%d ", gen);
	if (status != 200 || !strstr(body, want)) {
		batond_dump_log(b);
		fail_msg("expected 200 from generation %d, got %d: %s", gen, status, body);
	}
}

static void assert_output(const char *out, const char *needle)
{
	if (!strstr(out, needle))
		fail_msg("expected \"%s\" in output:\n%s", needle, out);
}

static void wait_ready(struct batond *b, int n)
{
	if (!wait_workers(b, "ready", n, 10000)) {
		batond_dump_log(b);
		fail_msg("%d workers not ready within 10 s", n);
	}
}

static void serves_requests_from_an_unmodified_systemd_program(void **state)
{
	struct batond b;
	start_app(&b, "  workers = 2\n", "");
	wait_ready(&b, 2);
	for (int i = 0; i < 20; i++)
		assert_serves_generation(&b, 1);
	char out[4096];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_output(out, "app web: generation 1 serving");
	assert_output(out, "listener http: tcp://127.0.0.1:");
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--json", NULL), 0);
	assert_output(out, "\"name\":\"web\",\"serving\":1");
	assert_int_equal(batond_stop(&b), 0);
}

static void upgrade_reports_ready_and_drained_timings(void **state)
{
	struct batond b;
	start_app(&b, "", "--ready-delay-ms 50");
	wait_ready(&b, 1);
	char out[1024];
	int rc = batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL);
	assert_int_equal(rc, 0);
	assert_output(out, "web: generation 2 ready in ");
	assert_output(out, " ms; the generations before it drained ");
	assert_serves_generation(&b, 2);
	/* Without an app name every app is upgraded. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", NULL), 0);
	assert_output(out, "web: generation 3 ready in ");
	assert_serves_generation(&b, 3);
	assert_int_equal(batond_stop(&b), 0);
}

static void upgrade_rolls_back_when_new_binary_is_missing(void **state)
{
	struct batond b;
	start_app(&b, "", "");
	wait_ready(&b, 1);
	char app[400], out[1024];
	snprintf(app, sizeof(app), "%s/app", b.dir);
	assert_int_equal(unlink(app), 0);
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	char want[600];
	snprintf(want, sizeof(want),
		 "web: generation 2 exited with status 127 before READY=1 (exec %s: No such "
		 "file or directory); generation 1 still serving",
		 app);
	assert_output(out, want);
	assert_serves_generation(&b, 1);
	assert_int_equal(app_status(&b, "web", "rollbacks"), 1);
	assert_int_equal(batond_stop(&b), 0);
}

/* While generation 2 starts and fails, generation 1 answers every request. */
static void check_rollback_keeps_serving(const char *args, const char *app_options,
					 const char *want)
{
	struct batond b;
	start_app(&b, app_options, "");
	wait_ready(&b, 1);
	write_app(&b, args);
	char lg_out[400], out[1024];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, 1500, lg_out);
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	assert_output(out, want);
	long ok, failed;
	assert_int_equal(loadgen_wait(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	assert_serves_generation(&b, 1);
	assert_int_equal(batond_stop(&b), 0);
}

static void upgrade_rolls_back_when_new_generation_exits_before_ready(void **state)
{
	check_rollback_keeps_serving(
	    "--exit-before-ready 3", "",
	    "web: generation 2 exited with status 3 before READY=1; generation 1 still serving");
}

static void upgrade_rolls_back_when_new_generation_is_never_ready(void **state)
{
	check_rollback_keeps_serving(
	    "--never-ready", "  ready-timeout = 1\n",
	    "web: generation 2 not ready within 1 s (ready-timeout); generation 1 still serving");
}

static void ready_immediate_needs_no_notification(void **state)
{
	struct batond b;
	start_app(&b, "  ready = immediate\n", "--no-notify");
	wait_ready(&b, 1);
	assert_serves_generation(&b, 1);
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_serves_generation(&b, 2);
	assert_int_equal(batond_stop(&b), 0);
}

static void drain_kills_a_worker_that_ignores_the_stop_signal(void **state)
{
	struct batond b;
	start_app(&b, "  drain-timeout = 2\n", "--ignore-term");
	wait_ready(&b, 1);
	pid_t old;
	assert_int_equal(worker_pids(&b, "ready", &old, 1), 1);
	char out[1024];
	/* The upgrade is done once generation 2 is ready: 1 drains on. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_output(out, "; generation 1 draining (drain-timeout 2 s)");
	/* --wait-drain: done once 1 and 2 (which ignores it too) are gone. */
	long long t0 = now_ms();
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
	assert_output(out, "web: generation 3 ready in ");
	assert_output(out, "; the generations before it drained ");
	assert_true(now_ms() - t0 >= 900); /* it waited for generation 2's drain-timeout */
	assert_true(batond_log_contains(&b, "still running after drain-timeout, sending SIGKILL"));
	/* batond answers from its child handler and reaps right after: a zombie
	 * may outlive the answer by an instant. */
	long long deadline = now_ms() + 2000;
	while (kill(old, 0) == 0 && now_ms() < deadline)
		usleep(1000);
	assert_int_equal(kill(old, 0), -1);
	assert_int_equal(errno, ESRCH);
	assert_int_equal(batond_stop(&b), 0); /* SIGKILL after drain-timeout again */
}

/* The pid of the process named @comm in process group @pgid, or 0. */
static pid_t find_in_group(pid_t pgid, const char *comm)
{
	pid_t found = 0;
	DIR *d = opendir("/proc");
	assert_non_null(d);
	for (struct dirent *e; !found && (e = readdir(d));) {
		char path[300], line[512], name[64];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		int pid, ppid, pgrp;
		char st;
		if (fgets(line, sizeof(line), f) &&
		    sscanf(line, "%d (%63[^)]) %c %d %d", &pid, name, &st, &ppid, &pgrp) == 5 &&
		    pgrp == pgid && strcmp(name, comm) == 0)
			found = pid;
		fclose(f);
	}
	closedir(d);
	return found;
}

/* The app is a wrapper script that runs testsrv as its child, not by exec (the
 * inner sh sets LISTEN_PID to what becomes testsrv's pid). Returns testsrv's
 * pid, with the wrapper's (the worker's) in *wrapper. */
static pid_t start_wrapped_app(struct batond *b, const char *args, pid_t *wrapper)
{
	batond_prepare(b);
	char path[400];
	snprintf(path, sizeof(path), "%s/wrapper", b->dir);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n/bin/sh -c 'LISTEN_PID=$$ exec %s --no-notify %s'\nexit 0\n",
		TESTSRV_PATH, args);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	batond_write_config(b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			       "app web {\n  exec = { \"@DIR@/wrapper\" }\n"
			       "  listeners = { \"http\" }\n  ready = immediate\n"
			       "  kill-mode = group\n  drain-timeout = 1\n}\n");
	batond_start(b);
	wait_ready(b, 1);
	assert_int_equal(worker_pids(b, "ready", wrapper, 1), 1);
	/* Ready at the wrapper's exec: its program comes an instant later. */
	pid_t program = 0;
	long long deadline = now_ms() + 5000;
	while (!(program = find_in_group(*wrapper, "testsrv")) && now_ms() < deadline)
		usleep(1000);
	assert_true(program > 0);
	return program;
}

/* `batonctl upgrade web` in the background while this process reaps the orphans
 * it receives as their subreaper (the wrapper's program, once the wrapper died):
 * batond waits for a worker's process group to be empty, and a zombie is still
 * in it. Returns batonctl's exit status. */
/* With cgroups batond waits until the old processes are dead, not reaped:
 * their zombies, ours as subreaper, may still be there. */
static void reap_zombies(const struct batond *b)
{
	for (;;) {
		siginfo_t si = {0};
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid <= 0 ||
		    si.si_pid == b->pid)
			return;
		waitpid(si.si_pid, NULL, 0);
	}
}

/* @pid, which batond said was gone, is: dead and reaped. A cgroup is empty as
 * its last process exits, an instant before that process is a zombie we can
 * reap: waited for, bounded. */
static void assert_gone(const struct batond *b, pid_t pid)
{
	long long deadline = now_ms() + 5000;
	while (kill(pid, 0) == 0 && now_ms() < deadline) {
		reap_zombies(b);
		usleep(1000);
	}
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
}

static int upgrade_reaping_orphans(const struct batond *b)
{
	pid_t ctl = fork();
	assert_true(ctl >= 0);
	if (ctl == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		dup2(null, 1);
		execl(BATONCTL_PATH, "batonctl", "-s", b->sock, "upgrade", "--wait-drain", "web",
		      (char *)NULL);
		_exit(127);
	}
	long long deadline = now_ms() + 20000;
	while (now_ms() < deadline) {
		siginfo_t si = {0};
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid > 0 &&
		    si.si_pid != b->pid) {
			int status;
			waitpid(si.si_pid, &status, 0);
			if (si.si_pid == ctl) {
				reap_zombies(b);
				return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
			}
			continue;
		}
		usleep(5000);
	}
	kill(ctl, SIGKILL);
	waitpid(ctl, NULL, 0);
	fail_msg("batonctl upgrade did not return within 20 s");
	return -1;
}

static void a_wrapper_scripts_program_is_drained_with_it(void **state)
{
	struct batond b;
	pid_t wrapper, old = start_wrapped_app(&b, "", &wrapper);
	assert_serves_generation(&b, 1);
	assert_int_equal(upgrade_reaping_orphans(&b), 0);
	/* The stop signal went to the wrapper's whole process group, and batond
	 * waited for the group, not only for the wrapper. */
	assert_gone(&b, old);
	assert_serves_generation(&b, 2);
	assert_int_equal(batond_stop(&b), 0);
}

static void drain_timeout_kills_what_a_wrapper_left_behind(void **state)
{
	struct batond b;
	pid_t wrapper, old = start_wrapped_app(&b, "--ignore-term", &wrapper);
	/* Serving, it ignores SIGTERM by now: just after its exec it did not yet. */
	assert_serves_generation(&b, 1);
	assert_int_equal(upgrade_reaping_orphans(&b), 0);
	char want[160];
	lingering_killed_line(&b, 1, 0, wrapper, want, sizeof(want));
	assert_true(batond_log_contains(&b, want));
	assert_gone(&b, old);
	assert_serves_generation(&b, 2);
	assert_int_equal(batond_stop(&b), 0);
}

static void copy_file(const char *from, const char *to)
{
	char tmp[420], cmd[1000];
	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, tmp);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(chmod(tmp, 0755), 0);
	assert_int_equal(rename(tmp, to), 0); /* a new file in place, as deploys do */
}

static void after_a_rollback_a_restarted_worker_runs_the_binary_it_started_with(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char bin[400];
	snprintf(bin, sizeof(bin), "%s/bin", b.dir);
	copy_file(TESTSRV_PATH, bin);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"@DIR@/bin\" }\n"
				"  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	wait_ready(&b, 1);
	/* A bad build replaces the binary: the upgrade rolls back. */
	copy_file("/bin/false", bin);
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	assert_output(out, "generation 1 still serving");
	/* Generation 1's worker crashes: it comes back as generation 1's binary. */
	pid_t old;
	assert_int_equal(worker_pids(&b, "ready", &old, 1), 1);
	assert_int_equal(kill(old, SIGKILL), 0);
	long long deadline = now_ms() + 10000;
	pid_t now = old;
	while ((worker_pids(&b, "ready", &now, 1) != 1 || now == old) && now_ms() < deadline)
		usleep(20000);
	if (now == old) {
		batond_dump_log(&b);
		fail_msg("generation 1's worker did not come back");
	}
	assert_serves_generation(&b, 1);
	assert_int_equal(batond_stop(&b), 0);
}

static void a_restarted_worker_that_is_never_ready_is_killed_after_ready_timeout(void **state)
{
	struct batond b;
	batond_prepare(&b);
	/* Ready the first time, then it crashes; restarted, it is never ready. */
	char path[400];
	snprintf(path, sizeof(path), "%s/app", b.dir);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f,
		"#!/bin/sh\nif [ -e '%s/once' ]; then exec %s --never-ready; fi\n"
		": > '%s/once'\nexec %s --crash-after-ms 300\n",
		b.dir, TESTSRV_PATH, b.dir, TESTSRV_PATH);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"@DIR@/app\" }\n"
				"  listeners = { \"http\" }\n  ready-timeout = 1\n}\n");
	batond_start(&b);
	if (!batond_wait_log(&b, "not ready within 1 s of its restart (ready-timeout); killing it",
			     10000)) {
		batond_dump_log(&b);
		fail_msg("the restarted worker was not killed after ready-timeout");
	}
	/* Killed, it counts as a crash: restarted again with the next back-off. */
	assert_true(batond_wait_log(&b, "restarting in 200 ms", 5000));
	assert_int_equal(batond_stop(&b), 0);
}

static void crashed_worker_is_restarted_and_the_listener_stays_open(void **state)
{
	struct batond b;
	start_app(&b, "", "");
	wait_ready(&b, 1);
	for (int round = 0; round < 3; round++) {
		pid_t pid;
		assert_int_equal(worker_pids(&b, "ready", &pid, 1), 1);
		assert_int_equal(kill(pid, SIGKILL), 0);
		/* Clients wait in the kernel backlog while the worker is restarted:
		 * the request succeeds, it is never refused. */
		assert_serves_generation(&b, 1);
		/* It may answer before batond has read its READY=1. */
		wait_ready(&b, 1);
		pid_t now;
		assert_int_equal(worker_pids(&b, "ready", &now, 1), 1);
		assert_int_not_equal(now, pid);
	}
	assert_int_equal(app_status(&b, "web", "restarts"), 3);
	/* Backoff grows with consecutive crashes. */
	assert_true(batond_log_contains(&b, "restarting in 100 ms"));
	assert_true(batond_log_contains(&b, "restarting in 200 ms"));
	assert_true(batond_log_contains(&b, "restarting in 400 ms"));
	assert_int_equal(batond_stop(&b), 0);
}

static void environment_of_the_config_wins_over_batonds_own(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b,
			    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			    "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			    "  environment = { \"APP_FOO=from config\" }\n}\n");
	setenv("APP_FOO", "from batond", 1);
	setenv("APP_BAR", "from batond", 1);
	batond_start(&b);
	unsetenv("APP_FOO");
	unsetenv("APP_BAR");
	wait_ready(&b, 1);
	pid_t pid;
	assert_int_equal(worker_pids(&b, "ready", &pid, 1), 1);
	/* The worker's whole environment: each name once, the config's value. */
	char path[64], env[65536];
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	size_t len = fread(env, 1, sizeof(env) - 1, f);
	fclose(f);
	int foo = 0, bar = 0;
	for (size_t i = 0; i < len; i += strlen(env + i) + 1) {
		if (strncmp(env + i, "APP_FOO=", 8) == 0) {
			assert_string_equal(env + i, "APP_FOO=from config");
			foo++;
		}
		if (strncmp(env + i, "APP_BAR=", 8) == 0) {
			assert_string_equal(env + i, "APP_BAR=from batond");
			bar++;
		}
	}
	assert_int_equal(foo, 1);
	assert_int_equal(bar, 1);
	assert_int_equal(batond_stop(&b), 0);
}

/* probation = 30: a new build that crashes soon after READY=1 (a script that
 * runs testsrv --crash-after-ms 300) restarts 3 times within its probation,
 * and batond goes back to generation 1's binary (the file the path named then,
 * since replaced) and configuration. No request is refused meanwhile: the
 * listener stays open while workers crash. */
static void a_build_that_crash_loops_on_probation_is_rolled_back_to_the_pinned_binary(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char bin[400];
	snprintf(bin, sizeof(bin), "%s/app", b.dir);
	copy_file(TESTSRV_PATH, bin);
	batond_write_config(&b,
			    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			    "app web {\n  exec = { \"@DIR@/app\" }\n  listeners = { \"http\" }\n"
			    "  workers = 2\n  probation = 30\n}\n");
	batond_start(&b);
	wait_ready(&b, 2);
	char lg_out[400], out[2048];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);
	write_app(&b, "--crash-after-ms 300");
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_output(out, "web: generation 2 ready in ");
	if (!batond_wait_log(&b,
			     "web: generation 2 restarted 3 times within its probation of 30 s: "
			     "rolling back to generation 1's program and configuration",
			     30000) ||
	    !batond_wait_log(&b, "web: generation 3 ready in ", 30000)) {
		batond_dump_log(&b);
		fail_msg("no rollback");
	}
	assert_serves_generation(&b, 3);
	/* Generation 3 runs the file generation 1 ran, no longer at that path. */
	pid_t pid;
	assert_int_equal(worker_pids(&b, "ready", &pid, 1), 1);
	char exe[64], target[512], want[512];
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(exe, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = 0;
	snprintf(want, sizeof(want), "%s (deleted)", bin);
	assert_string_equal(target, want);
	/* The reason, in status and the log. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_output(out, "last upgrade: web: rolled back (generation 2 restarted 3 times "
			   "within its probation of 30 s): generation 3 ready in ");
	assert_int_equal(app_status(&b, "web", "rollbacks"), 1);
	assert_int_equal(app_status(&b, "web", "pinned"), 0);
	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_true(ok > 0);
	FILE *f = fopen(lg_out, "re");
	char line[2048];
	long refused = -1;
	while (f && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, " refused=");
		if (strncmp(line, "loadgen: ", 9) == 0 && p)
			refused = atol(p + 9);
	}
	if (f)
		fclose(f);
	assert_int_equal(refused, 0);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(serves_requests_from_an_unmodified_systemd_program),
	    harness_test(upgrade_reports_ready_and_drained_timings),
	    harness_test(upgrade_rolls_back_when_new_binary_is_missing),
	    harness_test(upgrade_rolls_back_when_new_generation_exits_before_ready),
	    harness_test(upgrade_rolls_back_when_new_generation_is_never_ready),
	    harness_test(ready_immediate_needs_no_notification),
	    harness_test(drain_kills_a_worker_that_ignores_the_stop_signal),
	    harness_test(a_wrapper_scripts_program_is_drained_with_it),
	    harness_test(drain_timeout_kills_what_a_wrapper_left_behind),
	    harness_test(crashed_worker_is_restarted_and_the_listener_stays_open),
	    harness_test(after_a_rollback_a_restarted_worker_runs_the_binary_it_started_with),
	    harness_test(a_build_that_crash_loops_on_probation_is_rolled_back_to_the_pinned_binary),
	    harness_test(a_restarted_worker_that_is_never_ready_is_killed_after_ready_timeout),
	    harness_test(environment_of_the_config_wins_over_batonds_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
