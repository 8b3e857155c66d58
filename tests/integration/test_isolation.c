/* SPDX-License-Identifier: MIT */
/* Apps that run as their own user: credentials, limits, directory and
 * no_new_privs as the worker sees them, and what such a worker can no longer
 * do to batond. Needs root (to start workers as nobody). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
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

static uid_t nobody_uid;
static gid_t nobody_gid;

static int need_root_and_nobody(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	if (geteuid() != 0 || !pw) {
		fprintf(stderr, "SKIPPED: needs root and a user \"nobody\" (workers are started as "
				"nobody)\n");
		return -1;
	}
	nobody_uid = pw->pw_uid;
	nobody_gid = pw->pw_gid;
	return 0;
}

/* The line of /proc/PID/FILE that starts with @key, without it. */
static void proc_line(pid_t pid, const char *file, const char *key, char *out, size_t len)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	out[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0) {
			snprintf(out, len, "%s", line + strlen(key));
			out[strcspn(out, "\n")] = 0;
			break;
		}
	fclose(f);
}

/* A copy of the test server that nobody may run, wherever the build tree is
 * (/root is 0700), in b's directory, made enterable. */
static void start_as_nobody(struct batond *b, const char *extra)
{
	batond_prepare(b);
	assert_int_equal(chmod(b->dir, 0755), 0);
	char cmd[700], conf[2048];
	snprintf(cmd, sizeof(cmd), "cp %s %s/testsrv && chmod 0755 %s/testsrv", TESTSRV_PATH,
		 b->dir, b->dir);
	assert_int_equal(system(cmd), 0);
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/testsrv\" }\n  listeners = { \"http\" }\n"
		 "  user = \"nobody\"\n%s}\n",
		 extra);
	batond_write_config(b, conf);
	batond_start(b);
}

static void a_worker_runs_as_its_apps_user_with_its_limits_and_directory(void **state)
{
	struct batond b;
	start_as_nobody(&b, "  working-directory = \"/\"\n  umask = 0027\n"
			    "  limit-nofile = 1000\n  limit-core = 0\n");
	assert_true(wait_workers(&b, "ready", 1, 10000)); /* READY=1 reached batond */
	pid_t pid;
	assert_int_equal(worker_pids(&b, "ready", &pid, 1), 1);
	char v[256], want[128];
	proc_line(pid, "status", "Uid:\t", v, sizeof(v));
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", nobody_uid, nobody_uid, nobody_uid,
		 nobody_uid);
	assert_string_equal(v, want);
	proc_line(pid, "status", "Gid:\t", v, sizeof(v));
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", nobody_gid, nobody_gid, nobody_gid,
		 nobody_gid);
	assert_string_equal(v, want);
	proc_line(pid, "status", "Groups:\t", v, sizeof(v));
	assert_null(strstr(v, "0 ")); /* none of root's groups */
	proc_line(pid, "status", "NoNewPrivs:\t", v, sizeof(v));
	assert_string_equal(v, "1");
	proc_line(pid, "status", "CapEff:\t", v, sizeof(v));
	assert_string_equal(v, "0000000000000000");
	proc_line(pid, "status", "Umask:\t", v, sizeof(v));
	assert_string_equal(v, "0027");
	proc_line(pid, "limits", "Max open files", v, sizeof(v));
	assert_non_null(strstr(v, "1000                 1000"));
	proc_line(pid, "limits", "Max core file size", v, sizeof(v));
	assert_non_null(strstr(v, "0                    0"));
	char cwd[64], path[300];
	snprintf(cwd, sizeof(cwd), "/proc/%d/cwd", (int)pid);
	ssize_t n = readlink(cwd, path, sizeof(path) - 1);
	assert_true(n > 0);
	path[n] = 0;
	assert_string_equal(path, "/");
	/* It serves on its inherited listener, and upgrades work the same way. */
	char body[256], out[1024];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "gen=2 "));
	assert_int_equal(batond_stop(&b), 0);
}

/* In a child running as nobody: 0 if @what succeeded, else the errno. */
static int as_nobody(int (*what)(const struct batond *), const struct batond *b)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(nobody_gid, nobody_gid, nobody_gid) < 0 ||
		    setresuid(nobody_uid, nobody_uid, nobody_uid) < 0)
			_exit(255);
		_exit(what(b));
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int connect_control(const struct batond *b)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(b->sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, b->sock, strlen(b->sock) + 1);
	return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
}

/* Takes batond's listener (its fd, as batonctl status names it) from batond. */
static int steal_listener(const struct batond *b)
{
	int pidfd = pidfd_open(b->pid, 0);
	if (pidfd < 0)
		return errno;
	for (int fd = 3; fd < 64; fd++)
		if (pidfd_getfd(pidfd, fd, 0) >= 0)
			return 0;
		else if (errno != EBADF)
			return errno;
	return EBADF;
}

static void a_process_of_the_apps_user_cannot_reach_batond(void **state)
{
	struct batond b;
	start_as_nobody(&b, "");
	assert_true(wait_workers(&b, "ready", 1, 10000));
	assert_int_equal(as_nobody(connect_control, &b), EACCES);
	assert_int_equal(as_nobody(steal_listener, &b), EPERM);
	assert_int_equal(batond_stop(&b), 0);
}

/* What the child could not do before exec is the reason the generation gives. */
static void a_worker_that_cannot_enter_its_directory_says_so(void **state)
{
	struct batond b;
	char dir[400];
	start_as_nobody(&b, ""); /* a first app, to have b's paths */
	assert_true(wait_workers(&b, "ready", 1, 10000));
	snprintf(dir, sizeof(dir), "%s/private", b.dir);
	assert_int_equal(mkdir(dir, 0700), 0); /* root's, nobody may not enter */
	char conf[2048], out[2048];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/testsrv\" }\n  listeners = { \"http\" }\n"
		 "  user = \"nobody\"\n  working-directory = \"%s\"\n}\n",
		 dir);
	batond_write_config(&b, conf);
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 1);
	char want[600];
	snprintf(want, sizeof(want), "(chdir %s: Permission denied)", dir);
	if (!strstr(out, want))
		fail_msg("no \"%s\" in: %s", want, out);
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	assert_int_equal(batond_stop(&b), 0);
}

static void check_names_file_and_line_of_an_unknown_user_and_a_missing_directory(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b,
			    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			    "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			    "  user = \"no-such-user-here\"\n"
			    "  working-directory = \"/no/such/dir\"\n  umask = 0999\n}\n");
	char cmd[800], out[2048], want[400];
	snprintf(cmd, sizeof(cmd), "%s --check -c %s 2>&1", BATOND_PATH, b.conf);
	FILE *p = popen(cmd, "re");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	assert_int_not_equal(pclose(p), 0);
	snprintf(want, sizeof(want), "%s:6: app \"web\": user: no such user \"no-such-user-here\"",
		 b.conf);
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof(want),
		 "%s:7: app \"web\": working-directory: /no/such/dir: No such file or directory",
		 b.conf);
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof(want), "%s:8: app \"web\": umask:", b.conf);
	assert_non_null(strstr(out, want));
	batond_stop(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(a_worker_runs_as_its_apps_user_with_its_limits_and_directory),
	    harness_test(a_process_of_the_apps_user_cannot_reach_batond),
	    harness_test(a_worker_that_cannot_enter_its_directory_says_so),
	    harness_test(check_names_file_and_line_of_an_unknown_user_and_a_missing_directory),
	};
	/* Without root, say why and count as skipped (ctest: SKIP_REGULAR_EXPRESSION). */
	if (need_root_and_nobody(NULL) < 0) {
		printf("[  SKIPPED ] every test: not root, or no user nobody\n");
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
