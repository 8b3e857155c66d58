/* SPDX-License-Identifier: MIT */
/* The notify socket as other processes meet it: where it lives and who can
 * reach it, what a flood of datagrams from a process that is no worker costs
 * batond, and that batond takes none of its own workers for an impostor. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define NOBODY		65534
#define FLOOD_DATAGRAMS 100000

static void notify_dir(const struct batond *b, char *out, size_t len)
{
	snprintf(out, len, "%s.notify", b->sock);
}

static void notify_path(const struct batond *b, char *out, size_t len)
{
	snprintf(out, len, "%s.notify/notify", b->sock);
}

/* NOTIFY_SOCKET as a worker was given it, from its /proc/PID/environ. */
static void worker_notify_socket(pid_t pid, char *out, size_t len)
{
	char path[64], env[16384];
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	size_t n = fread(env, 1, sizeof(env) - 1, f);
	fclose(f);
	env[n] = 0;
	for (size_t i = 0; i < n; i += strlen(env + i) + 1)
		if (strncmp(env + i, "NOTIFY_SOCKET=", 14) == 0) {
			snprintf(out, len, "%s", env + i + 14);
			return;
		}
	fail_msg("worker %d has no NOTIFY_SOCKET", (int)pid);
}

static int count_log_lines(const struct batond *b, const char *needle)
{
	FILE *f = fopen(b->log, "re");
	if (!f)
		return 0;
	char line[2048];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* Datagrams the log accounts for as dropped: one per line naming a sender that
 * is no worker, plus the counts of the lines that sum up the rest. */
static long long dropped_in_log(const struct batond *b)
{
	FILE *f = fopen(b->log, "re");
	if (!f)
		return 0;
	char line[2048];
	long long n = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *p;
		if (strstr(line, "which is not a worker"))
			n++;
		else if ((p = strstr(line, "notify: ")) && strstr(p, " more datagrams dropped"))
			n += atoll(p + strlen("notify: "));
	}
	fclose(f);
	return n;
}

static int send_datagram(const char *path, const char *msg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	int r =
	    sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* Waits (bounded) for @pid to exit; kills it if it does not. Returns its
 * status, or -1 if it had to be killed. */
static int wait_child(pid_t pid, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int status;
	pid_t r;
	while ((r = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(10000);
	if (r == pid)
		return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Runs batond on b->conf when it is expected to refuse to start; returns its
 * exit status. */
static int batond_run_to_failure(const struct batond *b)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		dup2(fd, 2);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		dup2(null, 0);
		dup2(null, 1);
		execl(BATOND_PATH, "batond", "-c", b->conf, (char *)NULL);
		_exit(127);
	}
	return wait_child(pid, 10000);
}

static const char hello_app[] =
    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
    "app web {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http\" }\n  workers = 2\n}\n";

static void notify_socket_is_a_path_in_a_directory_only_batonds_user_can_enter(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, hello_app);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char dir[400], path[400], given[400];
	notify_dir(&b, dir, sizeof(dir));
	notify_path(&b, path, sizeof(path));
	worker_notify_socket(app_worker_pid(&b, "web", 0), given, sizeof(given));
	assert_string_equal(given, path); /* a path, not an abstract address */
	struct stat st;
	assert_int_equal(lstat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_uid, geteuid());
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, geteuid());

	/* Gone with batond: the stop is answered before batond has closed it. */
	char out[256];
	assert_int_equal(batonctl(&b, out, sizeof(out), "stop", NULL), 0);
	long long deadline = now_ms() + 5000;
	while (access(dir, F_OK) == 0 && now_ms() < deadline)
		usleep(10000);
	assert_int_equal(access(dir, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(batond_stop(&b), 0);
}

static void another_user_cannot_reach_the_notify_socket(void **state)
{
	if (geteuid() != 0)
		skip(); /* becoming another user takes root */
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, hello_app);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char path[400];
	notify_path(&b, path, sizeof(path));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gid_t none[1];
		if (setgroups(0, none) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
		    setresuid(NOBODY, NOBODY, NOBODY) < 0)
			_exit(2);
		_exit(send_datagram(path, "READY=1\nSTATUS=from nobody") == -EACCES ? 0 : 1);
	}
	assert_int_equal(wait_child(pid, 10000), 0);
	/* What nobody could not do, root can: the socket itself works. */
	assert_int_equal(send_datagram(path, "STATUS=from root"), 0);
	char want[96];
	snprintf(want, sizeof(want), "dropped datagram from pid %d, which is not a worker",
		 (int)getpid());
	assert_true(batond_wait_log(&b, want, 5000));
	assert_int_equal(batond_stop(&b), 0);
}

static void
a_flood_from_a_process_that_is_no_worker_costs_a_few_log_lines_and_no_upgrade(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, hello_app);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char path[400];
	notify_path(&b, path, sizeof(path));
	pid_t flooder = fork();
	assert_true(flooder >= 0);
	if (flooder == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		strcpy(sa.sun_path, path);
		int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		static const char msg[] = "READY=1\nSTATUS=flood";
		for (int i = 0; i < FLOOD_DATAGRAMS; i++)
			if (sendto(fd, msg, sizeof(msg) - 1, 0, (struct sockaddr *)&sa,
				   sizeof(sa)) < 0)
				_exit(1);
		_exit(0);
	}
	/* Workers' READY=1 gets through the flood: every upgrade completes. */
	char out[4096];
	for (int i = 0; i < 5; i++)
		if (batonctl(&b, out, sizeof(out), "upgrade", "web", NULL) != 0)
			fail_msg("upgrade %d during the flood: %s", i + 1, out);
	assert_int_equal(wait_child(flooder, 60000), 0);

	/* Every datagram accounted for, in a few lines. */
	long long deadline = now_ms() + 30000;
	while (dropped_in_log(&b) < FLOOD_DATAGRAMS && now_ms() < deadline)
		usleep(50000);
	if (dropped_in_log(&b) != FLOOD_DATAGRAMS) {
		batond_dump_log(&b);
		fail_msg("the log accounts for %lld dropped datagrams of %d", dropped_in_log(&b),
			 FLOOD_DATAGRAMS);
	}
	int lines = count_log_lines(&b, "notify: ");
	print_message("%d datagrams dropped in %d log lines\n", FLOOD_DATAGRAMS, lines);
	assert_true(count_log_lines(&b, "not a worker") <= 3);
	assert_true(lines <= 10);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_null(strstr(out, "flood"));
	assert_int_equal(app_status(&b, "web", "upgrades"), 5);
	assert_int_equal(batond_stop(&b), 0);
}

static void no_worker_is_taken_for_an_impostor_over_twenty_upgrades(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char body[1024];
	snprintf(body, sizeof(body),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "listener http2 { address = \"tcp://127.0.0.1:%d\" }\n"
		 "app inherit {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http\" }\n"
		 "  workers = 2\n}\n"
		 "app dispatch {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http2\" }\n"
		 "  workers = 2\n  mode = dispatch\n}\n",
		 free_port());
	batond_write_config(&b, body);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 4, 10000));
	char out[4096];
	/* --wait-drain: the old generations drain in the background, and the
	 * count below is of their last words. */
	for (int i = 0; i < 20; i++)
		if (batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", NULL) != 0)
			fail_msg("upgrade %d: %s", i + 1, out);
	/* Each drained worker's STOPPING=1 (sent just before it exits) was its own. */
	if (count_log_lines(&b, "is stopping") != 2 * 2 * 20 ||
	    count_log_lines(&b, "not a worker") != 0 ||
	    count_log_lines(&b, "asked for a listener") != 0) {
		batond_dump_log(&b);
		fail_msg("%d STOPPING=1 of 80 attributed, %d \"not a worker\", %d listener "
			 "requests in dispatch mode",
			 count_log_lines(&b, "is stopping"), count_log_lines(&b, "not a worker"),
			 count_log_lines(&b, "asked for a listener"));
	}
	assert_int_equal(batond_stop(&b), 0);
}

/* A control socket at @len bytes: b->dir, then a name of the rest. */
static void control_socket_of_length(struct batond *b, size_t len)
{
	size_t dir_len = strlen(b->dir);
	assert_true(len > dir_len + 6 && len < sizeof(b->sock));
	memcpy(b->sock, b->dir, dir_len);
	b->sock[dir_len] = '/';
	memset(b->sock + dir_len + 1, 'c', len - dir_len - 1 - 5);
	memcpy(b->sock + len - 5, ".sock", 6);
	assert_int_equal(strlen(b->sock), len);
}

static void the_longest_control_socket_path_leaves_room_for_the_notify_socket(void **state)
{
	struct batond b;
	batond_prepare(&b);
	control_socket_of_length(&b, 93);
	batond_write_config(&b, hello_app);
	batond_start(&b);
	/* hello's READY=1 reaches batond over a 107-byte path. */
	assert_true(wait_workers(&b, "ready", 2, 10000));
	assert_int_equal(batond_stop(&b), 0);
}

static void a_control_socket_path_too_long_for_the_notify_socket_is_refused(void **state)
{
	struct batond b;
	batond_prepare(&b);
	control_socket_of_length(&b, 94);
	batond_write_config(&b, hello_app);
	assert_int_equal(batond_run_to_failure(&b), 1);
	if (!batond_log_contains(&b, "path too long (108 bytes, at most 107): the control "
				     "socket's path must be at most 93 bytes")) {
		batond_dump_log(&b);
		fail_msg("no reason given");
	}
	char dir[400];
	notify_dir(&b, dir, sizeof(dir));
	assert_int_equal(access(dir, F_OK), -1);
	assert_int_equal(access(b.sock, F_OK), -1);
	batond_stop(&b);
}

static void a_stale_notify_socket_is_replaced_and_a_loose_directory_tightened(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, hello_app);
	/* What a batond killed with SIGKILL leaves: a socket file nobody reads. */
	char dir[400], path[400];
	notify_dir(&b, dir, sizeof(dir));
	notify_path(&b, path, sizeof(path));
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(batond_stop(&b), 0);
}

static void a_notify_directory_batond_cannot_trust_is_refused(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, hello_app);
	char dir[400], elsewhere[400];
	notify_dir(&b, dir, sizeof(dir));
	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", b.dir);
	assert_int_equal(mkdir(elsewhere, 0700), 0);
	assert_int_equal(symlink(elsewhere, dir), 0);
	assert_int_equal(batond_run_to_failure(&b), 1);
	assert_true(batond_log_contains(&b, "exists and is not a directory"));
	char inside[500];
	snprintf(inside, sizeof(inside), "%s/notify", elsewhere);
	assert_int_equal(access(inside, F_OK), -1); /* nothing bound through the link */
	if (geteuid() == 0) {
		assert_int_equal(unlink(dir), 0);
		assert_int_equal(mkdir(dir, 0700), 0);
		assert_int_equal(chown(dir, NOBODY, NOBODY), 0);
		assert_int_equal(batond_run_to_failure(&b), 1);
		assert_true(batond_log_contains(&b, "owned by uid 65534, not by batond's uid 0"));
	}
	batond_stop(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(notify_socket_is_a_path_in_a_directory_only_batonds_user_can_enter),
	    harness_test(another_user_cannot_reach_the_notify_socket),
	    harness_test(
		a_flood_from_a_process_that_is_no_worker_costs_a_few_log_lines_and_no_upgrade),
	    harness_test(no_worker_is_taken_for_an_impostor_over_twenty_upgrades),
	    harness_test(the_longest_control_socket_path_leaves_room_for_the_notify_socket),
	    harness_test(a_control_socket_path_too_long_for_the_notify_socket_is_refused),
	    harness_test(a_stale_notify_socket_is_replaced_and_a_loose_directory_tightened),
	    harness_test(a_notify_directory_batond_cannot_trust_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
