/* SPDX-License-Identifier: MIT */
/* batonctl and batond's own life: errors a user sees, signals, start-up
 * refusals, serialised upgrades. */
#include "harness.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
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
#include <json-c/json.h>

#define WEB_APP "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n"
#define HTTP	"listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"

static void start_web(struct batond *b, const char *extra)
{
	batond_prepare(b);
	char conf[2048];
	snprintf(conf, sizeof(conf), "%s%s%s", HTTP, WEB_APP, extra);
	batond_write_config(b, conf);
	batond_start(b);
	assert_true(wait_workers(b, "ready", 1, 10000));
}

static void assert_output(const char *out, const char *needle)
{
	if (!strstr(out, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, out);
}

/* Runs a program with @argv, output into @out; returns its exit status. With
 * @uid >= 0 it runs as that user. */
/* As run(), as @uid with gid @uid and @group (>= 0) as its only supplementary
 * group. */
static int run_in_group(const char *const *argv, int uid, int group, char *out, size_t len);

static int run(const char *const *argv, int uid, char *out, size_t len)
{
	return run_in_group(argv, uid, -1, out, len);
}

static int run_in_group(const char *const *argv, int uid, int group, char *out, size_t len)
{
	char path[] = "/tmp/baton-run.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		gid_t supplementary = (gid_t)group;
		if (group >= 0 && setgroups(1, &supplementary) < 0)
			_exit(126);
		if (uid >= 0 && (setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0))
			_exit(126);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	ssize_t n = pread(fd, out, len - 1, 0);
	out[n > 0 ? n : 0] = 0;
	close(fd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void batonctl_names_an_unknown_app(void **state)
{
	struct batond b;
	start_web(&b, "");
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "nope", NULL), 5);
	assert_output(out, "unknown app \"nope\"");
	assert_int_equal(batond_stop(&b), 0);
}

static void batonctl_without_batond_names_the_socket(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 3);
	char want[400];
	snprintf(want, sizeof(want), "no batond running at %s", b.sock);
	assert_output(out, want);
	assert_int_equal(batond_stop(&b), -1); /* nothing was running */
}

static void the_control_sockets_missing_directories_are_created(void **state)
{
	struct batond b;
	batond_prepare(&b);
	snprintf(b.sock, sizeof(b.sock), "%s/run/baton/batond.sock", b.dir);
	batond_write_config(&b, HTTP WEB_APP);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000)); /* status exits 6 before */
	char out[4096];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	struct stat st;
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/run/baton", b.dir);
	assert_int_equal(stat(dir, &st), 0);
	mode_t mask = umask(0);
	umask(mask);
	assert_int_equal(st.st_mode & 07777, 0755 & ~mask);
	assert_int_equal(batond_stop(&b), 0);
}

static void upgrade_of_a_batond_without_apps_answers_at_once(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, HTTP);
	batond_start(&b);
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", NULL), 0);
	assert_output(out, "no apps to upgrade");
	assert_int_equal(batond_stop(&b), 0);
}

/* A copy of batonctl that anyone may run (/root is 0700), in b's directory. */
static void batonctl_for_anyone(const struct batond *b, char *path, size_t len)
{
	snprintf(path, len, "%s/batonctl", b->dir);
	const char *cp[] = {"/bin/cp", BATONCTL_PATH, path, NULL};
	char out[1024];
	assert_int_equal(run(cp, -1, out, sizeof(out)), 0);
}

static void batonctl_of_another_user_is_refused(void **state)
{
	if (geteuid() != 0)
		skip();
	struct batond b;
	/* The socket itself lets anyone connect: batond's SO_PEERCRED check refuses. */
	batond_prepare(&b);
	assert_int_equal(chmod(b.dir, 0755), 0);
	char conf[2048];
	snprintf(conf, sizeof(conf), "%s%s", HTTP, WEB_APP);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_int_equal(chmod(b.sock, 0666), 0); /* batond made it 0600 */
	char ctl[400], out[1024], want[300];
	batonctl_for_anyone(&b, ctl, sizeof(ctl));
	const char *argv[] = {ctl, "-s", b.sock, "status", NULL};
	assert_int_equal(run(argv, 65534, out, sizeof(out)), 4);
	snprintf(want, sizeof(want),
		 "permission denied: uid 65534 is not root, batond's uid (%u) or a member of a "
		 "control group (none is configured: control { group = ... })",
		 (unsigned)geteuid());
	assert_output(out, want);
	/* With the socket's own mode, the kernel refuses first: same exit code. */
	assert_int_equal(chmod(b.sock, 0600), 0);
	assert_int_equal(run(argv, 65534, out, sizeof(out)), 4);
	assert_output(out, "permission denied");
	assert_int_equal(batond_stop(&b), 0);
}

static void status_json_is_valid_json(void **state)
{
	struct batond b;
	start_web(&b, "");
	char out[16384];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--json", NULL), 0);
	char path[400];
	snprintf(path, sizeof(path), "%s/status.json", b.dir);
	FILE *f = fopen(path, "we");
	fputs(out, f);
	fclose(f);
	if (access("/usr/bin/python3", X_OK) == 0) {
		const char *argv[] = {
		    "/usr/bin/python3", "-c",
		    "import json,sys; d=json.load(open(sys.argv[1])); "
		    "assert d['apps'][0]['name']=='web'; "
		    "assert d['apps'][0]['generations'][0]['workers'][0]['pid']>0",
		    path, NULL};
		char res[1024];
		if (run(argv, -1, res, sizeof(res)) != 0)
			fail_msg("not valid JSON (%s):\n%s", res, out);
	}
	assert_output(out, "\"listeners\":[{\"name\":\"http\"");
	assert_int_equal(batond_stop(&b), 0);
}

static void a_second_batond_on_the_same_control_socket_refuses_to_start(void **state)
{
	struct batond b;
	start_web(&b, "");
	/* Same control socket, another port. */
	char conf2[400];
	snprintf(conf2, sizeof(conf2), "%s/second.conf", b.dir);
	FILE *f = fopen(conf2, "we");
	fprintf(f,
		"control { socket = \"%s\" }\n"
		"listener http { address = \"tcp://127.0.0.1:%d\" }\n"
		"app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n}\n",
		b.sock, free_port(), TESTSRV_PATH);
	fclose(f);
	const char *argv[] = {BATOND_PATH, "-c", conf2, NULL};
	char out[4096];
	assert_int_equal(run(argv, -1, out, sizeof(out)), 1);
	assert_output(out, "is in use by a running batond");
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200); /* the first serves on */
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* Sends @sig to batond and waits for its exit status; checks its workers are gone. */
/* Receives one message within 5 s (proto_recv itself never waits). */
static int recv_within(int fd, struct proto_msg *m)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	return proto_recv(fd, ROLE_CONTROL_CLIENT, m);
}

static void assert_bad_request_reply(int fd, int code, const char *text)
{
	static struct proto_msg m;
	assert_int_equal(recv_within(fd, &m), 1);
	assert_int_equal(m.hdr.type, MSG_CTL_REPLY);
	int32_t got_code;
	const char *got_text;
	assert_int_equal(proto_parse_status(&m, &got_code, &got_text), 0);
	assert_int_equal(got_code, code);
	assert_string_equal(got_text, text);
}

static void a_bad_request_is_refused_with_its_fds_closed_and_batond_goes_on(void **state)
{
	struct batond b;
	start_web(&b, "");
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, b.sock);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);

	/* A HELLO with an fd (the control socket takes none), then two bytes. */
	struct proto_hdr h = {
	    .version = PROTO_VERSION, .type = MSG_HELLO, .payload_bytes = 4, .nfds = 1};
	struct iovec hello[2] = {{&h, sizeof(h)}, {"test", 4}};
	assert_int_equal(proto_send_raw(s, hello, 2, &p[1], 1), sizeof(h) + 4);
	close(p[1]);
	struct iovec junk = {"xy", 2};
	assert_int_equal(proto_send_raw(s, &junk, 1, NULL, 0), 2);
	assert_bad_request_reply(s, EBADMSG, "bad request: Bad message");
	assert_bad_request_reply(s, EPROTO, "bad request: Protocol error");
	/* batond closed the fd it was sent, its last copy: the pipe reads EOF. */
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	char c;
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);

	/* The third bad request in a row: answered, then the connection is closed. */
	assert_int_equal(proto_send_raw(s, &junk, 1, NULL, 0), 2);
	assert_bad_request_reply(s, EPROTO, "bad request: Protocol error");
	static struct proto_msg m;
	assert_int_equal(recv_within(s, &m), 0);
	close(s);

	char out[4096];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_true(batond_log_contains(&b, "control: bad request: Bad message"));
	assert_int_equal(batond_stop(&b), 0);
}

static void stop_by_signal(struct batond *b, int sig)
{
	pid_t pids[4];
	int n = worker_pids(b, "ready", pids, 4);
	assert_true(n >= 1);
	assert_int_equal(kill(b->pid, sig), 0);
	long long deadline = now_ms() + 10000;
	int status;
	pid_t r;
	while ((r = waitpid(b->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(10000);
	assert_int_equal(r, b->pid);
	b->pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (int i = 0; i < n; i++) {
		/* Our child reaper collects them; either way they no longer run. */
		assert_true(kill(pids[i], 0) < 0 || waitpid(pids[i], NULL, WNOHANG) == pids[i]);
	}
}

static void sigterm_and_sigint_drain_every_app_and_exit_zero(void **state)
{
	int sigs[] = {SIGTERM, SIGINT};
	for (int i = 0; i < 2; i++) {
		struct batond b;
		batond_prepare(&b);
		batond_write_config(&b,
				    HTTP "listener admin { address = \"unix:@DIR@/admin.sock\" }\n"
					 "app web {\n  exec = { \"@TESTSRV@\" }\n"
					 "  listeners = { \"http\", \"admin\" }\n}\n");
		batond_start(&b);
		assert_true(wait_workers(&b, "ready", 1, 10000));
		char admin[400];
		snprintf(admin, sizeof(admin), "%s/admin.sock", b.dir);
		assert_int_equal(access(admin, F_OK), 0);
		stop_by_signal(&b, sigs[i]);
		assert_true(batond_log_contains(&b, "stopping: draining every app"));
		assert_int_equal(access(admin, F_OK), -1); /* the path batond bound is gone */
		batond_stop(&b);
	}
}

static void sighup_upgrades_every_app(void **state)
{
	struct batond b;
	start_web(&b, "");
	assert_int_equal(kill(b.pid, SIGHUP), 0);
	assert_true(batond_wait_log(&b, "generation 1 gone", 10000));
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "gen=2 "));
	assert_int_equal(batond_stop(&b), 0);
}

static void concurrent_upgrades_are_serialised(void **state)
{
	struct batond b;
	start_web(&b, "");
	pid_t ctl[3];
	for (int i = 0; i < 3; i++) {
		ctl[i] = fork();
		assert_true(ctl[i] >= 0);
		if (ctl[i] == 0) {
			int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
			dup2(null, 1);
			execl(BATONCTL_PATH, "batonctl", "-s", b.sock, "upgrade", "web", NULL);
			_exit(127);
		}
	}
	for (int i = 0; i < 3; i++) {
		int status;
		assert_int_equal(waitpid(ctl[i], &status, 0), ctl[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	/* One generation starting at a time: generation N+1 starts only after N
	 * was ready (what N replaces may drain on meanwhile). Three requests, at
	 * least two upgrades (requests that arrive while one generation starts
	 * share the next). */
	FILE *f = fopen(b.log, "re");
	assert_non_null(f);
	char line[1024];
	int starting = 1, ready = 1;
	while (fgets(line, sizeof(line), f)) {
		int g, end = 0;
		const char *p;
		if ((p = strstr(line, "web: generation ")) &&
		    sscanf(p, "web: generation %d%n", &g, &end) == 1) {
			if (strncmp(p + end, " starting ", 10) == 0)
				starting = g;
			if (strncmp(p + end, " ready in ", 10) == 0)
				ready = g;
		}
		if (starting > ready + 1)
			fail_msg("generation %d started before generation %d was ready", starting,
				 ready);
	}
	fclose(f);
	assert_true(starting >= 3 && starting <= 4);
	assert_int_equal(app_status(&b, "web", "serving"), starting);
	assert_int_equal(batond_stop(&b), 0);
}

static void check_names_file_and_line_of_every_error(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:99999\" }\n"
		"app web {\n  exec = { \"/bin/true\" }\n  listeners = { \"htp\" }\n}\n");
	const char *argv[] = {BATOND_PATH, "--check", "-c", b.conf, NULL};
	char out[4096], want[1200];
	assert_int_equal(run(argv, -1, out, sizeof(out)), 1);
	snprintf(want, sizeof(want),
		 "%s:2: listener \"http\": address \"tcp://127.0.0.1:99999\": port out of range",
		 b.conf);
	assert_output(out, want);
	snprintf(want, sizeof(want), "%s:5: app \"web\": unknown listener \"htp\"", b.conf);
	assert_output(out, want);
	/* The programs, as the apps' users would execute them. */
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  listeners = { \"http\" }\n"
				"  exec = { \"/nonexistent/web\" }\n}\n"
				"app two {\n  listeners = { \"http\" }\n  user = \"nobody\"\n"
				"  exec = { \"@DIR@/not-executable\" }\n}\n"
				"app three {\n  exec = { \"/tmp\" }\n  listeners = { \"http\" }\n}\n"
				"app four {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
				"  user = \"nobody\"\n}\n");
	char script[400];
	snprintf(script, sizeof(script), "%s/not-executable", b.dir);
	FILE *f = fopen(script, "we");
	assert_non_null(f);
	fputs("#!/bin/sh\n", f);
	fclose(f);
	assert_int_equal(chmod(script, 0744), 0);
	assert_int_equal(run(argv, -1, out, sizeof(out)), 1);
	snprintf(want, sizeof(want),
		 "%s:5: app \"web\": exec /nonexistent/web: No such file or directory", b.conf);
	assert_output(out, want);
	/* The test's directory is root's, mode 0700: nobody cannot reach it. */
	snprintf(want, sizeof(want),
		 "%s:10: app \"two\": exec %s: directory %s is not searchable by user nobody "
		 "(mode 0700, owner 0:0)",
		 b.conf, script, b.dir);
	assert_output(out, want);
	assert_int_equal(chmod(b.dir, 0755), 0);
	assert_int_equal(run(argv, -1, out, sizeof(out)), 1);
	snprintf(want, sizeof(want),
		 "%s:10: app \"two\": exec %s: not executable by user nobody (mode 0744, owner 0:0)",
		 b.conf, script);
	assert_output(out, want);
	snprintf(want, sizeof(want), "%s:13: app \"three\": exec /tmp: not a regular file",
		 b.conf);
	assert_output(out, want);
	assert_null(strstr(out, "\"four\""));
	batond_write_config(&b, HTTP WEB_APP);
	assert_int_equal(run(argv, -1, out, sizeof(out)), 0);
	assert_output(out, ": ok");
	batond_stop(&b);
}

static void a_port_in_use_stops_start_up_with_file_line_and_address(void **state)
{
	struct batond b;
	start_web(&b, "");
	/* A second config with its own control socket but the first one's port. */
	char conf2[400], sock2[400];
	snprintf(conf2, sizeof(conf2), "%s/second.conf", b.dir);
	snprintf(sock2, sizeof(sock2), "%s/second.sock", b.dir);
	FILE *f = fopen(conf2, "we");
	fprintf(f,
		"control { socket = \"%s\" }\nlistener http { address = \"tcp://127.0.0.1:%d\" }\n",
		sock2, b.port);
	fclose(f);
	const char *argv[] = {BATOND_PATH, "-c", conf2, NULL};
	char out[4096], want[1200];
	assert_int_equal(run(argv, -1, out, sizeof(out)), 1);
	snprintf(want, sizeof(want),
		 "%s:2: listener \"http\": address \"tcp://127.0.0.1:%d\": Address already in use",
		 conf2, b.port);
	assert_output(out, want);
	assert_int_equal(batond_stop(&b), 0);
}

static void a_missing_binary_at_first_start_is_retried_while_batond_stays_up(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, HTTP "app web {\n  exec = { \"@DIR@/missing\" }\n"
				     "  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	char want[600];
	snprintf(want, sizeof(want),
		 "generation 1 exited with status 127 before READY=1 (exec %s/missing: No such "
		 "file or directory)",
		 b.dir);
	assert_true(batond_wait_log(&b, want, 5000));
	assert_true(batond_wait_log(&b, "retrying start in 500 ms", 5000));
	assert_true(batond_wait_log(&b, "retrying start in 1000 ms", 5000));
	assert_int_equal(app_status(&b, "web", "serving"), 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* ---- issue 12: the control socket's file, names, large answers ---------- */

/* A config of our own: batond_write_config's control section has the socket only. */
static void write_config_with_control(const struct batond *b, const char *control, const char *body)
{
	FILE *f = fopen(b->conf, "we");
	assert_non_null(f);
	fprintf(f, "control {\n  socket = \"%s\"\n%s}\n", b->sock, control);
	for (const char *p = body; *p; p++) {
		if (strncmp(p, "@PORT@", 6) == 0) {
			fprintf(f, "%d", b->port);
			p += 5;
		} else if (strncmp(p, "@TESTSRV@", 9) == 0) {
			fputs(TESTSRV_PATH, f);
			p += 8;
		} else {
			fputc(*p, f);
		}
	}
	fclose(f);
}

/* batond -c b->conf in the foreground, for start-up refusals. */
static int run_batond(const struct batond *b, char *out, size_t len)
{
	const char *argv[] = {BATOND_PATH, "-c", b->conf, NULL};
	return run(argv, -1, out, len);
}

/* Membership counts as the kernel recorded it at connect (SO_PEERGROUPS): a
 * supplementary group is enough. read-group admits to status and metrics
 * only, and a refusal says what would allow it. */
static void a_read_group_member_may_read_and_is_told_what_changing_takes(void **state)
{
	if (geteuid() != 0 || !getgrnam("adm") || !getgrnam("users"))
		skip(); /* other users, and groups adm and users */
	struct batond b;
	batond_prepare(&b);
	assert_int_equal(chmod(b.dir, 0755), 0);
	write_config_with_control(
	    &b, "  mode = 0666\n  group = \"adm\"\n  read-group = \"users\"\n", HTTP WEB_APP);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	gid_t adm = getgrnam("adm")->gr_gid, users = getgrnam("users")->gr_gid;
	char ctl[400], out[4096];
	batonctl_for_anyone(&b, ctl, sizeof(ctl));
	const char *status[] = {ctl, "-s", b.sock, "status", NULL};
	const char *metrics[] = {ctl, "-s", b.sock, "metrics", NULL};
	const char *upgrade[] = {ctl, "-s", b.sock, "upgrade", "web", NULL};
	assert_int_equal(run_in_group(status, 65534, (int)users, out, sizeof(out)), 0);
	assert_output(out, "app web: generation 1 serving");
	assert_int_equal(run_in_group(metrics, 65534, (int)users, out, sizeof(out)), 0);
	assert_int_equal(run_in_group(upgrade, 65534, (int)users, out, sizeof(out)), 4);
	char want[512];
	snprintf(
	    want, sizeof(want),
	    "permission denied: upgrade changes batond, and uid 65534 may only read (a member "
	    "of group \"users\"): it takes root, batond's uid (%u) or a member of group \"adm\"",
	    (unsigned)geteuid());
	assert_output(out, want);
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	/* A member of group: everything. */
	assert_int_equal(run_in_group(upgrade, 65534, (int)adm, out, sizeof(out)), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	/* Neither: refused at connect, told both. */
	assert_int_equal(run_in_group(status, 65534, 65534, out, sizeof(out)), 4);
	snprintf(want, sizeof(want),
		 "permission denied: uid 65534 is not root, batond's uid (%u) or a member of group "
		 "\"adm\"; members of group \"users\" may read (status, metrics)",
		 (unsigned)geteuid());
	assert_output(out, want);
	assert_int_equal(batond_stop(&b), 0);
}

static void the_control_socket_is_born_with_its_mode_and_group(void **state)
{
	if (geteuid() != 0)
		skip(); /* a group of someone else's */
	struct group *gr = getgrgid(65534);
	assert_non_null(gr);
	char control[200];
	snprintf(control, sizeof(control), "  mode = 0660\n  group = \"%s\"\n", gr->gr_name);
	struct batond b;
	batond_prepare(&b);
	write_config_with_control(&b, control, HTTP WEB_APP);
	batond_start(&b);
	struct stat st;
	assert_int_equal(lstat(b.sock, &st), 0);
	assert_int_equal(st.st_mode, S_IFSOCK | 0660);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(batond_stop(&b), 0);
}

static void a_control_socket_in_a_directory_others_can_write_is_refused(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char dir[280];
	snprintf(dir, sizeof(dir), "%.200s/shared", b.dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	snprintf(b.sock, sizeof(b.sock), "%s/batond.sock", dir);
	batond_write_config(&b, HTTP WEB_APP);
	char out[4096], want[1024];
	assert_int_equal(run_batond(&b, out, sizeof(out)), 1);
	snprintf(want, sizeof(want),
		 "control socket %s: directory %s is writable by others (mode 0777) and not "
		 "sticky and owned by root",
		 b.sock, dir);
	assert_output(out, want);
	assert_int_equal(access(b.sock, F_OK), -1);
	/* Sticky and root's, as /tmp: batond's file there is its own. */
	if (geteuid() == 0) {
		assert_int_equal(chmod(dir, 01777), 0);
		batond_start(&b);
		/* status exits 6 until the app serves. */
		assert_true(wait_workers(&b, "ready", 1, 10000));
		assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	}
	batond_stop(&b);
}

static void a_symlink_planted_at_the_control_socket_is_not_followed(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char victim[300];
	snprintf(victim, sizeof(victim), "%s/victim", b.dir);
	int fd = open(victim, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chmod(victim, 0600), 0);
	assert_int_equal(symlink(victim, b.sock), 0);
	char control[200] = "  mode = 0666\n";
	if (geteuid() == 0) { /* and the group of nobody's: nothing may reach the victim */
		struct group *gr = getgrgid(65534);
		assert_non_null(gr);
		snprintf(control, sizeof(control), "  mode = 0666\n  group = \"%s\"\n",
			 gr->gr_name);
	}
	write_config_with_control(&b, control, HTTP WEB_APP);
	char out[4096], want[1024];
	assert_int_equal(run_batond(&b, out, sizeof(out)), 1);
	snprintf(want, sizeof(want), "control socket %s: %s is a symbolic link, not a socket",
		 b.sock, b.sock);
	assert_output(out, want);
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_gid, getegid());
	assert_int_equal(lstat(b.sock, &st), 0);
	assert_true(S_ISLNK(st.st_mode));

	/* A link among the directories is not followed either. */
	char real[280], link[280];
	snprintf(real, sizeof(real), "%.200s/real", b.dir);
	snprintf(link, sizeof(link), "%.200s/link", b.dir);
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(symlink(real, link), 0);
	snprintf(b.sock, sizeof(b.sock), "%s/batond.sock", link);
	batond_write_config(&b, HTTP WEB_APP);
	assert_int_equal(run_batond(&b, out, sizeof(out)), 1);
	snprintf(want, sizeof(want),
		 "control socket %s: %s is a symbolic link: batond follows none in a socket path",
		 b.sock, link);
	assert_output(out, want);
	snprintf(want, sizeof(want), "%s/batond.sock", real);
	assert_int_equal(access(want, F_OK), -1);
	batond_stop(&b);
}

static int connect_raw(const struct batond *b)
{
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, b->sock);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return s;
}

static void send_hello(int s)
{
	assert_int_equal(proto_send(s, MSG_HELLO, 0, 0, "test", 4, NULL, 0), 0);
}

static void expect_hello(int s)
{
	static struct proto_msg m;
	assert_int_equal(recv_within(s, &m), 1);
	assert_int_equal(m.hdr.type, MSG_HELLO);
}

/* One answer, its frames put together; *ret_frames counts them. */
static char *read_answer(int s, uint32_t id, int32_t *ret_code, size_t *ret_len, int *ret_frames)
{
	static struct proto_msg m;
	char *text = NULL;
	size_t len = 0;
	int frames = 0;
	for (;;) {
		assert_int_equal(recv_within(s, &m), 1);
		assert_int_equal(m.hdr.type, MSG_CTL_REPLY);
		assert_int_equal(m.hdr.request_id, id);
		const char *part;
		assert_int_equal(proto_parse_status(&m, ret_code, &part), 0);
		size_t n = m.hdr.payload_bytes - 4;
		text = realloc(text, len + n + 1);
		memcpy(text + len, part, n);
		len += n;
		frames++;
		if (!(m.hdr.flags & CTL_MORE))
			break;
	}
	text[len] = 0;
	*ret_len = len;
	if (ret_frames)
		*ret_frames = frames;
	return text;
}

static void upgrade_raw(int s, uint32_t id, const char *name, size_t len, const char *want)
{
	assert_int_equal(proto_send(s, MSG_CTL_UPGRADE, CTL_FRAMES, id, name, len, NULL, 0), 0);
	int32_t code;
	size_t got_len;
	char *text = read_answer(s, id, &code, &got_len, NULL);
	assert_int_equal(code, EINVAL);
	assert_string_equal(text, want);
	free(text);
}

static void an_app_name_with_a_nul_or_a_byte_outside_the_alphabet_is_refused(void **state)
{
	struct batond b;
	start_web(&b, "");
	int s = connect_raw(&b);
	send_hello(s);
	expect_hello(s);
	/* Before: "web\0junk" was taken for "web" and upgraded it. */
	upgrade_raw(s, 7, "web\0junk", 8,
		    "invalid app name \"web\\x00junk\": names are 1 to 64 characters of A-Z a-z "
		    "0-9 _ . -");
	upgrade_raw(s, 8, "web\n", 4,
		    "invalid app name \"web\\x0a\": names are 1 to 64 characters of A-Z a-z 0-9 "
		    "_ . -");
	upgrade_raw(s, 9,
		    "w\xc3\xa9"
		    "b",
		    4,
		    "invalid app name \"w\\xc3\\xa9b\": names are 1 to 64 characters of A-Z a-z "
		    "0-9 _ . -");
	char longest[66];
	memset(longest, 'a', 65);
	longest[65] = 0;
	char want[256];
	snprintf(want, sizeof(want),
		 "invalid app name \"%.64s...\": names are 1 to 64 characters of A-Z a-z 0-9 _ . "
		 "-",
		 longest);
	upgrade_raw(s, 10, longest, 65, want);
	close(s);
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "we b", NULL), 1);
	assert_output(out, "invalid app name \"we\\x20b\"");
	assert_true(batond_log_contains(&b, "control: invalid app name \"web\\x00junk\""));
	assert_int_equal(app_status(&b, "web", "upgrades"), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	assert_int_equal(batond_stop(&b), 0);
}

#define MANY 1024
#define MANY_APP                                                                                   \
	"app many {\n  exec = { \"/bin/sleep\", \"3600\" }\n  listeners = { \"http\" }\n"          \
	"  ready = immediate\n  workers = 1024\n}\n"
#define BIG_OUT (8 * 1024 * 1024)

static int workers_in_state(struct json_object *st, const char *state)
{
	struct json_object *apps = json_object_object_get(st, "apps");
	int n = 0;
	for (size_t i = 0; i < json_object_array_length(apps); i++) {
		struct json_object *gens =
		    json_object_object_get(json_object_array_get_idx(apps, i), "generations");
		for (size_t g = 0; g < json_object_array_length(gens); g++) {
			struct json_object *ws =
			    json_object_object_get(json_object_array_get_idx(gens, g), "workers");
			for (size_t w = 0; w < json_object_array_length(ws); w++) {
				struct json_object *wk = json_object_array_get_idx(ws, w);
				const char *s =
				    json_object_get_string(json_object_object_get(wk, "state"));
				if (json_object_get_int(json_object_object_get(wk, "pid")) > 0 &&
				    s && strcmp(s, state) == 0)
					n++;
			}
		}
	}
	return n;
}

/* The whole text parses as one JSON object followed by a newline. */
static struct json_object *parse_whole(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	if (!o)
		fail_msg("not JSON (%s) in %zu bytes ending \"%s\"",
			 json_tokener_error_desc(json_tokener_get_error(tok)), len,
			 len > 80 ? text + len - 80 : text);
	/* json-c takes the newline after the object as blank space. */
	assert_int_equal(json_tokener_get_parse_end(tok), len);
	assert_int_equal(text[len - 1], '\n');
	json_tokener_free(tok);
	return o;
}

static void start_many(struct batond *b)
{
	batond_prepare(b);
	batond_write_config(b, HTTP MANY_APP);
	long long t0 = now_ms();
	batond_start(b);
	long long deadline = now_ms() + 120000;
	for (;;) {
		struct json_object *st = status_json(b);
		int ready = workers_in_state(st, "ready");
		json_object_put(st);
		if (ready == MANY)
			break;
		if (now_ms() > deadline)
			fail_msg("%d of %d workers ready after 120 s", ready, MANY);
		usleep(100 * 1000);
	}
	print_message("%d workers ready %lld ms after batond started\n", MANY, now_ms() - t0);
}

static void the_status_of_1024_workers_comes_whole_in_several_frames(void **state)
{
	struct batond b;
	start_many(&b);
	char *out = malloc(BIG_OUT);
	long long t0 = now_ms();
	assert_int_equal(batonctl(&b, out, BIG_OUT, "status", "--json", NULL), 0);
	size_t len = strlen(out);
	print_message("status --json: %zu bytes in %lld ms\n", len, now_ms() - t0);
	assert_true(len > PROTO_MAX_PAYLOAD); /* more than one frame: cut at 65,533 before */
	struct json_object *st = parse_whole(out, len);
	assert_int_equal(workers_in_state(st, "ready"), MANY);
	json_object_put(st);
	st = status_json(&b); /* the harness's reader too */
	assert_int_equal(workers_in_state(st, "ready"), MANY);
	json_object_put(st);

	assert_int_equal(batonctl(&b, out, BIG_OUT, "status", NULL), 0);
	len = strlen(out);
	print_message("status: %zu bytes\n", len);
	int lines = 0;
	for (const char *p = out; (p = strstr(p, "\n    worker ")); p++)
		lines++;
	assert_int_equal(lines, MANY);
	assert_int_equal(out[len - 1], '\n');

	/* A client that cannot put frames together gets an error, not a cut answer. */
	int s = connect_raw(&b);
	send_hello(s);
	assert_int_equal(proto_send(s, MSG_CTL_STATUS, CTL_JSON, 3, NULL, 0, NULL, 0), 0);
	expect_hello(s);
	int32_t code;
	int frames;
	char *text = read_answer(s, 3, &code, &len, &frames);
	assert_int_equal(code, EMSGSIZE);
	assert_int_equal(frames, 1);
	assert_output(text, "more than one message holds, and this client cannot take it in "
			    "several");
	free(text);
	close(s);
	free(out);
	assert_int_equal(batond_stop(&b), 0);
}

/* Sends HELLO and @n status requests (JSON, frames) without reading. */
static int flood(const struct batond *b, int n)
{
	int s = connect_raw(b);
	send_hello(s);
	for (int i = 1; i <= n; i++)
		assert_int_equal(proto_send(s, MSG_CTL_STATUS, CTL_JSON | CTL_FRAMES, (uint32_t)i,
					    NULL, 0, NULL, 0),
				 0);
	return s;
}

static void a_client_that_does_not_read_blocks_nobody_and_is_dropped_when_it_stalls(void **state)
{
	struct batond b;
	start_many(&b);
	int baseline = count_fds_settled(b.pid);
	/* Eight answers of ~100 KiB each: far more than a socket buffer holds. */
	int slow = flood(&b, 8), stuck = flood(&b, 8);
	char *out = malloc(BIG_OUT);
	long long t0 = now_ms();
	assert_int_equal(batonctl(&b, out, BIG_OUT, "status", "--json", NULL), 0);
	long long took = now_ms() - t0;
	print_message("status --json beside two clients that read nothing: %lld ms\n", took);
	assert_true(took < 5000);
	json_object_put(parse_whole(out, strlen(out)));

	/* The slow one reads at last: every answer whole, in order. */
	expect_hello(slow);
	for (uint32_t i = 1; i <= 8; i++) {
		int32_t code;
		size_t len;
		int frames;
		char *text = read_answer(slow, i, &code, &len, &frames);
		assert_int_equal(code, 0);
		assert_true(frames >= 2);
		struct json_object *st = parse_whole(text, len);
		assert_int_equal(workers_in_state(st, "ready"), MANY);
		json_object_put(st);
		free(text);
	}
	close(slow);

	/* The stuck one is dropped: what it finally reads ends before its answers do. */
	assert_true(batond_wait_log(&b,
				    "control: dropping a client that took nothing of its "
				    "answer for 10 s",
				    20000));
	static struct proto_msg m;
	int r, frames = 0, answers = 0;
	/* Closed by batond with requests of ours unread: the reset comes first (as
	 * batonctl knows), then what was sent, then EOF. */
	while ((r = recv_within(stuck, &m)) == 1 || r == -ECONNRESET)
		if (r == 1 && m.hdr.type == MSG_CTL_REPLY) {
			frames++;
			answers += !(m.hdr.flags & CTL_MORE);
		}
	assert_int_equal(r, 0);
	print_message("the dropped client got %d frames, %d whole answers of 8\n", frames, answers);
	assert_true(answers < 8);
	close(stuck);
	assert_int_equal(count_fds_when(b.pid, baseline, 3000), baseline);
	free(out);
	assert_int_equal(batond_stop(&b), 0);
}

static const char *worker_status(struct json_object *st, const char *app)
{
	struct json_object *apps = json_object_object_get(st, "apps");
	for (size_t i = 0; i < json_object_array_length(apps); i++) {
		struct json_object *a = json_object_array_get_idx(apps, i);
		if (strcmp(json_object_get_string(json_object_object_get(a, "name")), app) != 0)
			continue;
		struct json_object *gens = json_object_object_get(a, "generations");
		struct json_object *ws = json_object_object_get(
		    json_object_array_get_idx(gens, json_object_array_length(gens) - 1), "workers");
		return json_object_get_string(
		    json_object_object_get(json_object_array_get_idx(ws, 0), "status"));
	}
	return NULL;
}

static void a_workers_status_text_is_cut_between_characters(void **state)
{
	/* 100 × é (200 bytes) into a 128-byte field: cut in an é before. */
	char status[201] = "", want[201] = "", conf[2048];
	for (int i = 0; i < 100; i++)
		strcat(status, "\xc3\xa9");
	for (int i = 0; i < 63; i++)
		strcat(want, "\xc3\xa9");
	snprintf(conf, sizeof(conf),
		 HTTP "app web {\n  exec = { \"@TESTSRV@\", \"--status\", \"%s\" }\n"
		      "  listeners = { \"http\" }\n}\n",
		 status);
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	long long deadline = now_ms() + 5000;
	for (;;) {
		struct json_object *st = status_json(&b);
		const char *got = worker_status(st, "web");
		bool done = got && got[0];
		if (done)
			assert_string_equal(got, want);
		json_object_put(st);
		if (done)
			break;
		assert_true(now_ms() < deadline);
		usleep(20 * 1000);
	}
	char out[8192], line[300];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	snprintf(line, sizeof(line), ", status: %s\n", want);
	assert_output(out, line);
	assert_int_equal(batond_stop(&b), 0);
}

/* A batond that says "more" and hangs up: batonctl must not print what it got. */
static void batonctl_fails_on_an_answer_cut_short(void **state)
{
	struct batond b;
	batond_prepare(&b);
	int srv = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, b.sock);
	assert_int_equal(bind(srv, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(srv, 1), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static struct proto_msg m;
		int c = accept4(srv, NULL, NULL, SOCK_CLOEXEC);
		struct pollfd p = {.fd = c, .events = POLLIN};
		for (int got = 0; got < 2 && poll(&p, 1, 5000) == 1;)
			if (proto_recv(c, ROLE_CONTROL_SERVER, &m) == 1)
				got++;
		proto_send(c, MSG_HELLO, 0, 0, "fake", 4, NULL, 0);
		proto_send_status_frame(c, MSG_CTL_REPLY, CTL_MORE, m.hdr.request_id, 0,
					"{\"apps\":[", 9);
		_exit(0);
	}
	close(srv);
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--json", NULL), 1);
	assert_output(out, "batond closed the connection in the middle of its answer (9 bytes "
			   "received)");
	assert_null(strstr(out, "{\"apps\""));
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	batond_stop(&b);
}

/* Bytes a worker sends that are not UTF-8 or are control characters: the JSON
 * status stays valid UTF-8 (a strict parser takes it) and says what it is. */
static void status_json_has_its_schema_and_is_valid_utf8_whatever_workers_send(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, HTTP "app web {\n  exec = { \"@TESTSRV@\", \"--status\", "
				     "\"a\\xffb\\x01c\" }\n  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	static char out[16384];
	char status[64] = "";
	/* STATUS= comes after READY=1: wait for it. */
	for (long long deadline = now_ms() + 5000; !status[0];) {
		assert_true(now_ms() < deadline);
		assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--json", NULL), 0);
		struct json_tokener *tok = json_tokener_new();
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		struct json_object *st =
		    json_tokener_parse_ex(tok, out, (int)strlen(out) - 1); /* without the \n */
		if (!st)
			fail_msg("not strict UTF-8 JSON (%s):\n%s",
				 json_tokener_error_desc(json_tokener_get_error(tok)), out);
		json_tokener_free(tok);
		assert_int_equal(json_object_get_int(json_object_object_get(st, "schema")), 1);
		struct json_object *app =
		    json_object_array_get_idx(json_object_object_get(st, "apps"), 0);
		struct json_object *gen =
		    json_object_array_get_idx(json_object_object_get(app, "generations"), 0);
		struct json_object *w =
		    json_object_array_get_idx(json_object_object_get(gen, "workers"), 0);
		snprintf(status, sizeof(status), "%s",
			 json_object_get_string(json_object_object_get(w, "status")));
		json_object_put(st);
	}
	/* U+FFFD for 0xff; the control character escaped by JSON. */
	assert_string_equal(status, "a\xef\xbf\xbd"
				    "b\x01"
				    "c");
	assert_output(out, "\"status\":\"a\xef\xbf\xbd"
			   "b\\u0001c\"");
	assert_int_equal(batond_stop(&b), 0);
}

/* status: the status as always, exit 6 while an app has no serving
 * generation (text and JSON; --check, which asked for it before, changes
 * nothing); 0 once every app serves. */
static void status_exits_6_while_an_app_has_no_serving_generation(void **state)
{
	struct batond b;
	start_web(&b,
		  "app down {\n  exec = { \"/nonexistent/app\" }\n  listeners = { \"http\" }\n}\n");
	char out[8192];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 6);
	assert_output(out, "app web: generation 1 serving");
	assert_output(out, "app down: no generation serving");
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--json", NULL), 6);
	assert_output(out, "\"name\":\"down\",\"serving\":0");
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--check", NULL), 6);
	assert_int_equal(batond_stop(&b), 0);

	start_web(&b, "");
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--check", NULL), 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* A control socket that takes connections and never answers: batonctl gives
 * up at --timeout, says so, and exits 7. */
static void batonctl_gives_up_at_its_timeout_and_says_so(void **state)
{
	struct batond b;
	batond_prepare(&b);
	int srv = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, b.sock);
	assert_int_equal(bind(srv, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(srv, 8), 0); /* connections wait in the backlog, unanswered */
	char out[1024];
	assert_int_equal(batonctl(&b, out, sizeof(out), "--timeout", "0.2", "status", NULL), 7);
	assert_output(out, "batonctl: no answer from batond within 0.2 s\n");
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", "-t", "0.2", NULL), 7);
	assert_output(out, "no answer from batond within 0.2 s; batond goes on with the request");
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--timeout", "0", NULL), 2);
	assert_output(out, "--timeout: \"0\" is not a number of seconds");
	close(srv);
	batond_stop(&b);
}

static void batonctl_names_an_unknown_option_with_its_command(void **state)
{
	struct batond b;
	batond_prepare(&b); /* nothing runs: none of these reaches batond */
	char out[4096];
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", "--jsn", NULL), 2);
	assert_output(out, "batonctl: unknown option --jsn for status\n");
	assert_output(out, "Try 'batonctl status --help'.");
	assert_int_equal(batonctl(&b, out, sizeof(out), "stop", "-x", NULL), 2);
	assert_output(out, "batonctl: unknown option -x for stop\n");
	assert_int_equal(batonctl(&b, out, sizeof(out), "frob", NULL), 2);
	assert_output(out, "batonctl: unknown command \"frob\"\n");
	assert_int_equal(batonctl(&b, out, sizeof(out), "scale", "web", NULL), 2);
	assert_output(out, "batonctl: scale takes 2 arguments (APP N), not 1\n");
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--help", NULL), 0);
	assert_output(out,
		      "usage: batonctl [-s SOCKET] [-t SECONDS] upgrade [--wait-drain] [APP]\n");
	assert_output(out, "Exit status: 0 done;");
	assert_int_equal(batonctl(&b, out, sizeof(out), "--help", NULL), 0);
	assert_output(out, "  metrics ");
	assert_output(out, "7 no answer within --timeout");
	batond_stop(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(batonctl_names_an_unknown_app),
	    harness_test(batonctl_without_batond_names_the_socket),
	    harness_test(the_control_sockets_missing_directories_are_created),
	    harness_test(upgrade_of_a_batond_without_apps_answers_at_once),
	    harness_test(batonctl_of_another_user_is_refused),
	    harness_test(status_json_is_valid_json),
	    harness_test(a_second_batond_on_the_same_control_socket_refuses_to_start),
	    harness_test(a_bad_request_is_refused_with_its_fds_closed_and_batond_goes_on),
	    harness_test(sigterm_and_sigint_drain_every_app_and_exit_zero),
	    harness_test(sighup_upgrades_every_app),
	    harness_test(concurrent_upgrades_are_serialised),
	    harness_test(check_names_file_and_line_of_every_error),
	    harness_test(a_port_in_use_stops_start_up_with_file_line_and_address),
	    harness_test(a_missing_binary_at_first_start_is_retried_while_batond_stays_up),
	    harness_test(the_control_socket_is_born_with_its_mode_and_group),
	    harness_test(a_read_group_member_may_read_and_is_told_what_changing_takes),
	    harness_test(a_control_socket_in_a_directory_others_can_write_is_refused),
	    harness_test(a_symlink_planted_at_the_control_socket_is_not_followed),
	    harness_test(an_app_name_with_a_nul_or_a_byte_outside_the_alphabet_is_refused),
	    harness_test(the_status_of_1024_workers_comes_whole_in_several_frames),
	    harness_test(a_client_that_does_not_read_blocks_nobody_and_is_dropped_when_it_stalls),
	    harness_test(a_workers_status_text_is_cut_between_characters),
	    harness_test(batonctl_fails_on_an_answer_cut_short),
	    harness_test(status_json_has_its_schema_and_is_valid_utf8_whatever_workers_send),
	    harness_test(status_exits_6_while_an_app_has_no_serving_generation),
	    harness_test(batonctl_gives_up_at_its_timeout_and_says_so),
	    harness_test(batonctl_names_an_unknown_option_with_its_command),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
