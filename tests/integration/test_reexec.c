/* SPDX-License-Identifier: MIT */
/* batond re-exec: the same pid runs a new program with every socket, worker
 * and held connection it had, under load, without a failed request; and a new
 * program that cannot take over leaves the running one serving, and says why. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>

#define REEXECS 20

static void write_file(const char *path, mode_t mode, const char *text)
{
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* 20 re-execs under load: every one answered by the new image, 0 failed
 * requests, and batond's pid, its workers' pids and its fd count unchanged. */
static void reexecs_under_load(const char *app)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n"
		 "  workers = 2\n%s}\n",
		 app, strcmp(app, HELLO_PATH) == 0 ? "  mode = dispatch\n" : "");
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	pid_t before[2], after[2];
	assert_int_equal(worker_pids(&b, "ready", before, 2), 2);
	int fds = count_fds_settled(b.pid);
	char lg_out[400], out[1024];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 8, LOADGEN_CEILING_MS, lg_out);
	for (int i = 0; i < REEXECS; i++) {
		int rc = batonctl(&b, out, sizeof(out), "reexec", NULL);
		if (rc != 0 || !strstr(out, "now runs")) {
			batond_dump_log(&b);
			fail_msg("re-exec %d: exit %d: %s", i + 1, rc, out);
		}
	}
	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	/* The same process (our child still), the same workers, the same fds. */
	assert_int_equal(kill(b.pid, 0), 0);
	struct json_object *st = status_json(&b);
	assert_int_equal(json_object_get_int(json_object_object_get(st, "pid")), b.pid);
	json_object_put(st);
	assert_int_equal(worker_pids(&b, "ready", after, 2), 2);
	assert_true((after[0] == before[0] && after[1] == before[1]) ||
		    (after[0] == before[1] && after[1] == before[0]));
	assert_int_equal(count_fds_when(b.pid, fds, 3000), fds);
	/* Dispatch: each worker's completion counter came along (its workers count
	 * there, and send no CONN_DONE): every connection is seen finished. */
	if (strcmp(app, HELLO_PATH) == 0)
		assert_true(wait_status_sum(&b, "load", 0, 5000));
	assert_int_equal(app_status(&b, "web", "upgrades"), 0);
	assert_int_equal(app_status(&b, "web", "restarts"), 0);
	/* And what it restored works on: an upgrade, then the workers' exit. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batond_stop(&b), 0);
}

static void twenty_reexecs_under_load_in_inherit_mode_lose_nothing(void **state)
{
	reexecs_under_load(TESTSRV_PATH);
}

static void twenty_reexecs_under_load_in_dispatch_mode_lose_nothing(void **state)
{
	reexecs_under_load(HELLO_PATH);
}

/* Each broken program is refused with its reason, and batond serves on. */
static void a_broken_new_batond_leaves_the_running_one_serving(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b,
			    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			    "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			    "  workers = 2\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	pid_t before[2], after[2];
	assert_int_equal(worker_pids(&b, "ready", before, 2), 2);
	char exits[400], crashes[400], noexec[400], restore[400], script[2048];
	snprintf(exits, sizeof(exits), "%s/exits", b.dir);
	write_file(exits, 0755, "#!/bin/sh\nexit 1\n");
	snprintf(crashes, sizeof(crashes), "%s/crashes", b.dir);
	write_file(crashes, 0755, "#!/bin/sh\nkill -SEGV $$\n");
	snprintf(noexec, sizeof(noexec), "%s/noexec", b.dir);
	write_file(noexec, 0644, "#!/bin/sh\nexit 0\n");
	/* Passes the check, then crashes in the restore itself: its first read of
	 * the state (crashlib), after which the batond before takes over again. */
	snprintf(restore, sizeof(restore), "%s/crashes-restoring", b.dir);
	snprintf(script, sizeof(script),
		 "#!/bin/sh\ncase \" $* \" in *--reexec-check*) exec %s \"$@\";; esac\n"
		 "LD_PRELOAD=%s ASAN_OPTIONS=\"$ASAN_OPTIONS:verify_asan_link_order=0\" "
		 "exec %s \"$@\"\n",
		 BATOND_PATH, CRASHLIB_PATH, BATOND_PATH);
	write_file(restore, 0755, script);
	int fds = count_fds_settled(b.pid);
	char lg_out[400], out[2048];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 8, LOADGEN_CEILING_MS, lg_out);
	struct {
		const char *path, *why;
	} broken[] = {
	    {exits, "exited with status 1 while checking the state"},
	    {crashes, "was killed by signal 11 (SIGSEGV) while checking the state"},
	    {noexec, "Permission denied"},
	    {restore, "crashed while restoring the state (signal 11)"},
	};
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		int rc = batonctl(&b, out, sizeof(out), "reexec", "--binary", broken[i].path, NULL);
		if (rc != 1 || !strstr(out, broken[i].why)) {
			batond_dump_log(&b);
			fail_msg("reexec --binary %s: exit %d: %s", broken[i].path, rc, out);
		}
		assert_non_null(strstr(out, "batond goes on unchanged")
				    ?: strstr(out, "serves on"));
	}
	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	assert_int_equal(kill(b.pid, 0), 0);
	assert_int_equal(worker_pids(&b, "ready", after, 2), 2);
	assert_true((after[0] == before[0] && after[1] == before[1]) ||
		    (after[0] == before[1] && after[1] == before[0]));
	assert_int_equal(count_fds_when(b.pid, fds, 3000), fds);
	/* The running program still re-execs. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "reexec", NULL), 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* One line out, one line back (parksrv's "gen G count N from F"). */
static void exchange(int fd, char *reply, size_t len)
{
	assert_true(line_exchange(fd, reply, len));
}

/* Worker @index's pid once it is a ready process other than @not. */
static pid_t ready_worker(const struct batond *b, unsigned index, pid_t not )
{
	long long deadline = now_ms() + 20000;
	for (;;) {
		pid_t pids[4];
		int n = worker_pids(b, "ready", pids, 4);
		pid_t pid = app_worker_pid(b, "web", index);
		for (int i = 0; i < n; i++)
			if (pids[i] == pid && pid != not )
				return pid;
		if (now_ms() > deadline)
			fail_msg("worker %u not ready again", index);
		usleep(10000);
	}
}

/* A connection parked with its state while no worker could take it is held by
 * batond across a re-exec, and the next worker continues it. To have one held
 * with nothing under way: worker 0 crashes until its restart waits 6.4 s, and
 * worker 1 is scaled away meanwhile, parking its connection. */
static void a_parked_connection_with_its_state_survives_a_reexec(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n  workers = 2\n  hold-timeout = 60\n}\n",
		 PARKSRV_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	/* Least-loaded: one connection on each worker. */
	int fd[2];
	char reply[64], out[2048];
	/* The answer after the re-exec waits for worker 0's 6.4 s back-off. */
	struct timeval tv = {.tv_sec = 30};
	for (int i = 0; i < 2; i++) {
		fd[i] = tcp_connect(b.port);
		assert_true(fd[i] >= 0);
		setsockopt(fd[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		exchange(fd[i], reply, sizeof(reply));
		assert_string_equal(reply, "gen 1 count 1 from -\n");
	}
	assert_true(wait_status_sum(&b, "load", 2, 5000));
	/* Back-off doubles from 100 ms per crash: the seventh waits 6.4 s. */
	pid_t pid = ready_worker(&b, 0, 0);
	for (int crash = 1; crash <= 7; crash++) {
		assert_int_equal(kill(pid, SIGKILL), 0);
		if (crash < 7)
			pid = ready_worker(&b, 0, pid);
	}
	assert_true(batond_wait_log(&b, "restarting in 6400 ms", 5000));
	/* Worker 1 drains and parks its connection, with its count as state. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "scale", "web", "1", NULL), 0);
	assert_true(wait_status_sum(&b, "held", 1, 3000));
	int rc = batonctl(&b, out, sizeof(out), "reexec", NULL);
	if (rc != 0) {
		batond_dump_log(&b);
		fail_msg("reexec: exit %d: %s", rc, out);
	}
	/* Still held by the new image (its worker restarts only later)... */
	assert_int_equal(status_sum(&b, "held"), 1);
	/* ...and the restarted worker 0 continues the count, on the same TCP
	 * connection, with the state and tag generation 1 parked it with. */
	exchange(fd[1], reply, sizeof(reply));
	assert_string_equal(reply, "gen 1 count 2 from gen1\n");
	close(fd[0]);
	close(fd[1]);
	assert_int_equal(batond_stop(&b), 0);
}

/* A generation draining in the background (an upgrade returns once the new
 * one is ready) drains on in the new image: its worker (parksrv --hold, which
 * serves its open connections while it drains) still answers on the same
 * connection, and the generation goes once that client does. */
static void a_generation_draining_during_a_reexec_drains_on(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\", \"--hold\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n  drain-timeout = 60\n}\n",
		 PARKSRV_PATH);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	int fd = tcp_connect(b.port);
	assert_true(fd >= 0);
	char reply[64], out[1024];
	exchange(fd, reply, sizeof(reply));
	assert_string_equal(reply, "gen 1 count 1 from -\n");
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_true(wait_workers(&b, "draining", 1, 10000));
	assert_int_equal(batonctl(&b, out, sizeof(out), "reexec", NULL), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	assert_true(wait_workers(&b, "draining", 1, 100));
	exchange(fd, reply, sizeof(reply));
	assert_string_equal(reply, "gen 1 count 2 from -\n");
	close(fd);
	assert_true(batond_wait_log(&b, "web: generation 1 gone", 20000));
	assert_true(wait_workers(&b, "draining", 0, 10000));
	assert_int_equal(batond_stop(&b), 0);
}

/* What an upgrade pinned (the generation it replaced) is still there to roll
 * back to after a re-exec. */
static void a_reexec_keeps_what_rollback_goes_back_to(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	char out[2048];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
	assert_int_equal(batonctl(&b, out, sizeof(out), "reexec", NULL), 0);
	int rc = batonctl(&b, out, sizeof(out), "rollback", "web", NULL);
	if (rc != 0) {
		batond_dump_log(&b);
		fail_msg("rollback after a re-exec: exit %d: %s", rc, out);
	}
	assert_int_equal(app_status(&b, "web", "serving"), 3);
	assert_true(batond_log_contains(&b, "generation 1"));
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batond_stop(&b), 0);
}

static void reexec_refuses_while_an_upgrade_runs(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"@TESTSRV@\", \"--never-ready\" }\n"
				"  listeners = { \"http\" }\n  ready-timeout = 60\n}\n");
	batond_start(&b);
	/* The first generation never becomes ready: its start is under way. */
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "reexec", NULL), 1);
	assert_non_null(strstr(out, "cannot re-exec now: web: an upgrade is under way"));
	assert_int_equal(batond_stop(&b), 0);
}

/* A state newer than the program that reads it (a re-exec into an older
 * batond) is refused with both versions: its members may be ones it must not
 * ignore (a worker's completion counter). */
static void a_state_newer_than_the_new_program_is_refused_with_its_version(void **state)
{
	char dir[] = "/tmp/baton-test.XXXXXX", path[64], err_path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);
	snprintf(err_path, sizeof(err_path), "%s/err", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"format\":\"baton-reexec-state\",\"version\":99,\"written_by\":\"batond 9.9\"}",
	      f);
	fclose(f);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(path, O_RDONLY), err = open(err_path, O_WRONLY | O_CREAT, 0600);
		if (fd < 0 || err < 0 || dup2(fd, 3) < 0 || dup2(err, 2) < 0)
			_exit(99);
		execl(BATOND_PATH, "batond", "--reexec-check=3", (char *)NULL);
		_exit(98);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	char text[1024] = "";
	f = fopen(err_path, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	assert_non_null(strstr(text, "reexec check: the state has version 99, written by batond "
				     "9.9; this batond (" BATON_VERSION ") reads versions 1 to 2"));
	unlink(path);
	unlink(err_path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(twenty_reexecs_under_load_in_inherit_mode_lose_nothing),
	    harness_test(twenty_reexecs_under_load_in_dispatch_mode_lose_nothing),
	    harness_test(a_broken_new_batond_leaves_the_running_one_serving),
	    harness_test(a_parked_connection_with_its_state_survives_a_reexec),
	    harness_test(a_generation_draining_during_a_reexec_drains_on),
	    harness_test(a_reexec_keeps_what_rollback_goes_back_to),
	    harness_test(reexec_refuses_while_an_upgrade_runs),
	    harness_test(a_state_newer_than_the_new_program_is_refused_with_its_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
