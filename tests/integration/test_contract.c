/* SPDX-License-Identifier: MIT */
/* The spawn contract as a worker sees it, from the inside: environment, fds,
 * names; and the notify socket's check of who speaks. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Each worker dumps what it was handed to DIR/dump.<app>.<worker>. */
static void write_dumping_app(const struct batond *b)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/app", b->dir);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\nexec %s --dump %s/dump.$BATON_APP.$BATON_WORKER\n", TESTSRV_PATH,
		b->dir);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
}

static char *read_dump(const struct batond *b, const char *app, int worker)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/dump.%s.%d", b->dir, app, worker);
	long long deadline = now_ms() + 10000;
	while (access(path, F_OK) != 0) {
		if (now_ms() > deadline)
			fail_msg("no dump at %s", path);
		usleep(10000);
	}
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	static char buf[2][8192];
	char *dump = buf[worker & 1];
	size_t n = fread(dump, 1, sizeof(buf[0]) - 1, f);
	dump[n] = 0;
	fclose(f);
	return dump;
}

static bool has_line(const char *dump, const char *line)
{
	size_t len = strlen(line);
	for (const char *p = dump; (p = strstr(p, line)); p += len)
		if ((p == dump || p[-1] == '\n') && (p[len] == '\n' || p[len] == 0))
			return true;
	return false;
}

static void assert_line(const char *dump, const char *line)
{
	if (!has_line(dump, line))
		fail_msg("no line \"%s\" in:\n%s", line, dump);
}

/* The standard signals (1 to 31) of mask @key ("SigIgn") in a dump. glibc's
 * own two real-time signals may come ignored from whoever started batond
 * (signal() cannot reset them): not the worker contract's. */
static unsigned long long std_signals(const char *dump, const char *key)
{
	char want[32];
	snprintf(want, sizeof(want), "\n%s=", key);
	const char *p = strstr(dump, want);
	if (!p)
		fail_msg("no %s in:\n%s", key, dump);
	return strtoull(p + strlen(want), NULL, 16) & 0x7fffffffULL;
}

/* The numbers of the fds listed in a dump, as "0 1 2 3". */
static void fd_list(const char *dump, char *out, size_t len)
{
	out[0] = 0;
	for (const char *p = dump; (p = strstr(p, "\nfd ")); p++) {
		int fd = atoi(p + 4);
		size_t used = strlen(out);
		snprintf(out + used, len - used, "%s%d", used ? " " : "", fd);
	}
}

static void start_two_apps(struct batond *b)
{
	batond_prepare(b);
	write_dumping_app(b);
	batond_write_config(
	    b, "listener http  { address = \"tcp://127.0.0.1:@PORT@\" }\n"
	       "listener admin { address = \"unix:@DIR@/admin.sock\" }\n"
	       "app web {\n  exec = { \"@DIR@/app\" }\n  listeners = { \"http\", \"admin\" }\n"
	       "  workers = 2\n}\n"
	       "app side {\n  exec = { \"@DIR@/app\" }\n  listeners = { \"admin\" }\n}\n");
	batond_start(b);
	assert_true(wait_workers(b, "ready", 3, 10000));
}

static void spawn_contract_seen_from_inside_a_worker(void **state)
{
	struct batond b;
	start_two_apps(&b);
	for (int w = 0; w < 2; w++) {
		const char *dump = read_dump(&b, "web", w);
		/* LISTEN_PID is the worker's own pid, as batonctl status shows it. */
		char want[128];
		pid_t pid = app_worker_pid(&b, "web", (unsigned)w);
		assert_true(pid > 0);
		snprintf(want, sizeof(want), "LISTEN_PID=%d", (int)pid);
		assert_line(dump, want);
		assert_line(dump, "LISTEN_FDS=2");
		assert_line(dump, "LISTEN_FDNAMES=http:admin");
		/* SIGPIPE ignored, as systemd's IgnoreSIGPIPE=yes: a worker whose
		 * output pipe lost its reader (batond killed) gets EPIPE, not death.
		 * Every other signal as default and unblocked. */
		assert_int_equal(std_signals(dump, "SigIgn"), 1ULL << (SIGPIPE - 1));
		assert_int_equal(std_signals(dump, "SigBlk"), 0);
		assert_line(dump, "BATON_FD=5");
		assert_line(dump, "BATON_APP=web");
		assert_line(dump, "BATON_GENERATION=1");
		snprintf(want, sizeof(want), "BATON_WORKER=%d", w);
		assert_line(dump, want);
		char notify[400];
		snprintf(notify, sizeof(notify), "NOTIFY_SOCKET=%s.notify/notify", b.sock);
		assert_line(dump, notify);
		char fds[256];
		fd_list(dump, fds, sizeof(fds));
		assert_string_equal(fds, "0 1 2 3 4 5"); /* nothing else leaked in */
		assert_non_null(strstr(dump, "type=stream name=http\n"));
		assert_non_null(strstr(dump, "type=stream name=admin\n"));
		assert_non_null(strstr(dump, "\nfd 5 socket:"));
		assert_non_null(strstr(dump, "type=seqpacket\n"));
	}
	assert_int_equal(batond_stop(&b), 0);
}

static void a_worker_sees_only_its_own_apps_listeners(void **state)
{
	struct batond b;
	start_two_apps(&b);
	const char *dump = read_dump(&b, "side", 0);
	assert_line(dump, "LISTEN_FDS=1");
	assert_line(dump, "LISTEN_FDNAMES=admin");
	assert_line(dump, "BATON_FD=4");
	char fds[256];
	fd_list(dump, fds, sizeof(fds));
	assert_string_equal(fds, "0 1 2 3 4");
	assert_non_null(strstr(dump, "type=stream name=admin\n"));
	assert_null(strstr(dump, "name=http"));
	assert_int_equal(batond_stop(&b), 0);
}

static void notify_from_a_process_that_is_no_worker_is_dropped_and_logged(void **state)
{
	struct batond b;
	start_two_apps(&b);
	const char *dump = read_dump(&b, "web", 0);
	const char *p = strstr(dump, "\nNOTIFY_SOCKET=/");
	assert_non_null(p);
	p += strlen("\nNOTIFY_SOCKET=");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strcspn(p, "\n");
	assert_true(len < sizeof(sa.sun_path));
	memcpy(sa.sun_path, p, len);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	const char msg[] = "READY=1\nSTATUS=impostor";
	assert_int_equal(sendto(fd, msg, sizeof(msg) - 1, 0, (struct sockaddr *)&sa, sizeof(sa)),
			 (ssize_t)sizeof(msg) - 1);
	close(fd);
	char want[64];
	snprintf(want, sizeof(want), "dropped datagram from pid %d, which is not a worker",
		 (int)getpid());
	assert_true(batond_wait_log(&b, want, 5000));
	char out[8192];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_null(strstr(out, "impostor"));
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(spawn_contract_seen_from_inside_a_worker),
	    harness_test(a_worker_sees_only_its_own_apps_listeners),
	    harness_test(notify_from_a_process_that_is_no_worker_is_dropped_and_logged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
