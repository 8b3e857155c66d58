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
#include <sched.h>
#include <sys/mount.h>
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
#include <json-c/json.h>

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

/* A fresh b with a copy of the test server that nobody may run, wherever the
 * build tree is (/root is 0700), in b's directory, made enterable. */
static void prepare_for_nobody(struct batond *b)
{
	batond_prepare(b);
	assert_int_equal(chmod(b->dir, 0755), 0);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "cp %s %s/testsrv && chmod 0755 %s/testsrv", TESTSRV_PATH,
		 b->dir, b->dir);
	assert_int_equal(system(cmd), 0);
}

static void start_as_nobody(struct batond *b, const char *extra)
{
	char conf[2048];
	prepare_for_nobody(b);
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
	proc_line(pid, "status", "CapAmb:\t", v, sizeof(v));
	assert_string_equal(v, "0000000000000000"); /* none unless listed */
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
	char out[2048], want[400];
	assert_int_not_equal(batond_check(&b, out, sizeof(out)), 0);
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

/* ambient-capabilities: the worker, running as nobody, has exactly those
 * (permitted, effective, inheritable, ambient) and binds a port below 1024
 * with them; a name batond does not know, or the option without a user, is
 * FILE:LINE. */
static void ambient_capabilities_are_exactly_those_listed(void **state)
{
	struct batond b;
	start_as_nobody(&b, "  ambient-capabilities = { \"CAP_NET_BIND_SERVICE\" }\n");
	assert_true(wait_workers(&b, "ready", 1, 10000));
	pid_t pid;
	assert_int_equal(worker_pids(&b, "ready", &pid, 1), 1);
	char v[256];
	static const char *const sets[] = {"CapInh:\t", "CapPrm:\t", "CapEff:\t", "CapAmb:\t"};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		proc_line(pid, "status", sets[i], v, sizeof(v));
		if (strcmp(v, "0000000000000400") != 0)
			fail_msg("%s%s, not CAP_NET_BIND_SERVICE alone", sets[i], v);
	}
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batond_stop(&b), 0);

	batond_prepare(&b);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
				"  ambient-capabilities = { \"CAP_NET_BIND_SERVICE\", \"CAP_NO_SUCH\" }\n"
				"}\n");
	char out[2048], want[400];
	assert_int_not_equal(batond_check(&b, out, sizeof(out)), 0);
	snprintf(want, sizeof(want),
		 "%s:6: app \"web\": ambient-capabilities: unknown capability \"CAP_NO_SUCH\"",
		 b.conf);
	if (!strstr(out, want))
		fail_msg("no \"%s\" in:\n%s", want, out);
	snprintf(want, sizeof(want), "%s:6: app \"web\": ambient-capabilities: set user too",
		 b.conf);
	if (!strstr(out, want))
		fail_msg("no \"%s\" in:\n%s", want, out);
	batond_stop(&b);
}

/* ---- cgroups -------------------------------------------------------------- */

/* Where cgroup2 is mounted ("" if it is not). */
static void cgroup2_mount(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	out[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char mnt[1024], type[64];
		const char *dash = strstr(line, " - ");
		if (dash && sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 &&
		    sscanf(dash + 3, "%63s", type) == 1 && strcmp(type, "cgroup2") == 0) {
			snprintf(out, len, "%s", mnt);
			break;
		}
	}
	if (f)
		fclose(f);
}

/* The path of @pid's cgroup2 cgroup, as /proc/PID/cgroup names it. */
static void cgroup_of(pid_t pid, char *out, size_t len)
{
	proc_line(pid, "cgroup", "0::", out, len);
}

/* True if @path ends with @suffix. */
static bool ends_with(const char *path, const char *suffix)
{
	size_t n = strlen(path), k = strlen(suffix);
	return n >= k && strcmp(path + n - k, suffix) == 0;
}

static bool skip_without_cgroups(const struct batond *b)
{
	if (batond_uses_cgroups(b))
		return false;
	fprintf(stderr, "SKIPPED: batond has no cgroups here (no writable cgroup2)\n");
	return true;
}

/* @pid's cgroup v1 path in the hierarchy of controller @ctl ("" if none). */
static void v1_cgroup_of(pid_t pid, const char *ctl, char *out, size_t len)
{
	char path[64], line[1024], want[64];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	snprintf(want, sizeof(want), ",%s,", ctl);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		char *ctls = strchr(line, ':'), *p = ctls ? strchr(ctls + 1, ':') : NULL;
		if (!p)
			continue;
		*p++ = 0;
		char list[256];
		snprintf(list, sizeof(list), ",%s,", ctls + 1);
		if (strstr(list, want)) {
			p[strcspn(p, "\n")] = 0;
			snprintf(out, len, "%s", p);
		}
	}
	fclose(f);
}

/* A limit of @pid's app: @v2_file two levels above its cgroup2 leaf
 * (app-NAME/gen-G/worker-W), or @v1_file above its cgroup of controller @ctl
 * (app-NAME/gen-G) in a hybrid layout. */
static unsigned long long app_limit(pid_t pid, const char *ctl, const char *v2_file,
				    const char *v1_file)
{
	char mnt[1024], leaf[1024], path[3000], text[64];
	cgroup2_mount(mnt, sizeof(mnt));
	cgroup_of(pid, leaf, sizeof(leaf));
	snprintf(path, sizeof(path), "%s%s/../../%s", mnt, leaf, v2_file);
	FILE *f = fopen(path, "re");
	if (!f) {
		char v1[1024];
		v1_cgroup_of(pid, ctl, v1, sizeof(v1));
		assert_true(v1[0] != 0);
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/../%s", ctl, v1, v1_file);
		f = fopen(path, "re");
	}
	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	assert_non_null(fgets(text, sizeof(text), f));
	fclose(f);
	return strtoull(text, NULL, 10);
}

/* A member of generation @id of app web in status --json, -1 if absent. */
static long long gen_member(const struct batond *b, unsigned id, const char *key)
{
	struct json_object *st = status_json(b), *apps, *v;
	long long n = -1;
	assert_true(json_object_object_get_ex(st, "apps", &apps));
	struct json_object *gens =
	    json_object_object_get(json_object_array_get_idx(apps, 0), "generations");
	for (size_t i = 0; i < json_object_array_length(gens); i++) {
		struct json_object *g = json_object_array_get_idx(gens, i);
		if (json_object_get_int(json_object_object_get(g, "id")) == (int)id &&
		    json_object_object_get_ex(g, key, &v))
			n = json_object_get_int64(v);
	}
	json_object_put(st);
	return n;
}

static void every_generation_runs_in_a_cgroup_of_its_own_with_its_apps_limits(void **state)
{
	struct batond b;
	start_as_nobody(
	    &b, "  workers = 2\n  memory-max = 64M\n  tasks-max = 40\n  cpu-weight = 250\n");
	assert_true(wait_workers(&b, "ready", 2, 10000));
	if (skip_without_cgroups(&b)) {
		assert_int_equal(batond_stop(&b), 0);
		return;
	}
	char cg[1024], want[64], out[4096];
	for (unsigned i = 0; i < 2; i++) {
		cgroup_of(app_worker_pid(&b, "web", i), cg, sizeof(cg));
		snprintf(want, sizeof(want), "/app-web/gen-1/worker-%u", i);
		if (!ends_with(cg, want))
			fail_msg("worker %u is in %s, not in .../batond-%d%s", i, cg, (int)b.pid,
				 want);
	}
	/* batond is in a leaf of its own, beside its apps. */
	cgroup_of(b.pid, cg, sizeof(cg));
	assert_true(ends_with(cg, "/supervisor"));
	pid_t w0 = app_worker_pid(&b, "web", 0);
	assert_int_equal(app_limit(w0, "memory", "memory.max", "memory.limit_in_bytes"),
			 64 * 1024 * 1024);
	assert_int_equal(app_limit(w0, "pids", "pids.max", "pids.max"), 40);
	/* cpu.shares is cpu.weight * 1024 / 100 in cgroup v1. */
	unsigned long long weight = app_limit(w0, "cpu", "cpu.weight", "cpu.shares");
	assert_true(weight == 250 || weight == 250 * 1024 / 100);
	/* Status counts what the generation's cgroup holds. */
	assert_true(gen_member(&b, 1, "memory_bytes") > 0);
	assert_true(gen_member(&b, 1, "tasks") >= 2);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "cgroups: cgroup2 "));
	assert_non_null(strstr(out, "generation 1: serving"));
	assert_non_null(strstr(out, ", cgroup app-web/gen-1: memory "));

	/* A re-executed batond finds its cgroups again by name. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "reexec", NULL), 0);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, ", cgroup app-web/gen-1: memory "));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
	cgroup_of(app_worker_pid(&b, "web", 0), cg, sizeof(cg));
	assert_true(ends_with(cg, "/app-web/gen-2/worker-0"));
	/* Gone means its cgroup is empty, and then removed. */
	char mnt[1024], gen1[2200];
	cgroup2_mount(mnt, sizeof(mnt));
	snprintf(gen1, sizeof(gen1), "%s%s", mnt, cg);
	strcpy(strstr(gen1, "/gen-2/"), "/gen-1");
	assert_int_equal(access(gen1, F_OK), -1);
	assert_int_equal(batond_stop(&b), 0);
}

/* Writes b's DIR/app.sh: "#!/bin/sh" and @body, where every %s is the test
 * server's path. */
static void write_app_script(const struct batond *b, const char *body)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/app.sh", b->dir);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fputs("#!/bin/sh\n", f);
	for (const char *p = body; *p; p++)
		if (p[0] == '%' && p[1] == 's')
			fputs(TESTSRV_PATH, f), p++;
		else
			fputc(*p, f);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
}

/* App web runs DIR/app.sh (@body), with @extra options; started and ready. */
static void start_script_app(struct batond *b, const char *body, const char *extra)
{
	char conf[1024];
	batond_prepare(b);
	write_app_script(b, body);
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/app.sh\" }\n  listeners = { \"http\" }\n%s}\n",
		 extra);
	batond_write_config(b, conf);
	batond_start(b);
	assert_true(wait_workers(b, "ready", 1, 10000));
}

/* A script worker that double-forks a daemon into a session of its own
 * (which the process group never sees): the daemon dies with its generation,
 * at drain-timeout. */
static void a_daemon_a_worker_forked_dies_when_its_generation_drains(void **state)
{
	struct batond b;
	char path[400], out[2048];
	start_script_app(&b,
			 "( setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid )\n"
			 "exec %s\n",
			 "  working-directory = \"@DIR@\"\n  drain-timeout = 0.5\n");
	if (skip_without_cgroups(&b)) {
		assert_int_equal(batond_stop(&b), 0);
		return;
	}
	snprintf(path, sizeof(path), "%s/daemon.pid", b.dir);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	int daemon = 0;
	assert_int_equal(fscanf(f, "%d", &daemon), 1);
	fclose(f);
	assert_int_equal(kill(daemon, 0), 0);
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL), 0);
	/* Dead when batond said its generation was gone; reaped by us, the
	 * subreaper it was orphaned to. */
	int status;
	assert_int_equal(waitpid(daemon, &status, WNOHANG), daemon);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(batond_log_contains(&b, "web: generation 1 worker 0: processes of its cgroup "
					    "still running after drain-timeout, killing them "
					    "(cgroup.kill)"));
	assert_int_equal(batond_stop(&b), 0);
}

/* The attack of issue 14: a new binary that daemonizes with setsid and exits
 * is refused, and what it left must not serve on. Without cgroups it would
 * (docs/security.md says so). */
static void a_refused_binary_that_daemonizes_leaves_nothing_serving(void **state)
{
	struct batond b;
	char out[2048], body[256];
	start_script_app(&b, "exec %s\n", "");
	if (skip_without_cgroups(&b)) {
		assert_int_equal(batond_stop(&b), 0);
		return;
	}
	write_app_script(&b, "setsid sh -c 'LISTEN_PID=$$ exec %s --no-notify' &\nexit 0\n");
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
		if (!strstr(body, "gen=1 "))
			fail_msg("request %d answered by the refused generation: %s", i, body);
	}
	assert_true(batond_log_contains(&b, "web: generation 2 worker 0: left processes in its "
					    "cgroup app-web/gen-2/worker-0: killing them"));
	assert_int_equal(batond_stop(&b), 0);
}

/* batond in a mount namespace whose cgroup2 is read-only: it cannot make its
 * cgroup. */
static void cgroup2_read_only(void)
{
	char mnt[1024];
	cgroup2_mount(mnt, sizeof(mnt));
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    (mnt[0] && mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0))
		_exit(126);
}

static void without_cgroups_workers_are_tracked_by_process_group_and_batond_says_so(void **state)
{
	struct batond b;
	char conf[1024], out[2048], body[256];
	batond_prepare(&b);
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
		 "  workers = 2\n}\n");
	batond_write_config(&b, conf);
	batond_start_in(&b, cgroup2_read_only);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	assert_false(batond_uses_cgroups(&b));
	char mnt[1024], own[1024], want[3000];
	cgroup2_mount(mnt, sizeof(mnt));
	cgroup_of(getpid(), own, sizeof(own));
	snprintf(want, sizeof(want),
		 "cgroups: none used, workers are tracked by process group: cannot make "
		 "%s%s/batond-%d: Read-only file system",
		 mnt, strcmp(own, "/") ? own : "", (int)b.pid);
	if (!batond_log_contains(&b, want)) {
		batond_dump_log(&b);
		fail_msg("no \"%s\" in batond's log", want);
	}
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "cgroups: none (process groups)\n"));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "gen=2 "));
	/* Said once, at start-up, not per generation. */
	FILE *f = fopen(b.log, "re");
	char line[2048];
	int said = 0;
	while (f && fgets(line, sizeof(line), f))
		said += strstr(line, "workers are tracked by process group") != NULL;
	fclose(f);
	assert_int_equal(said, 1);
	assert_int_equal(batond_stop(&b), 0);
}

/* A batond killed by hand cannot remove its cgroups: the next one started
 * there does, once nothing runs in them. */
static void the_cgroups_of_a_killed_batond_are_removed_by_the_next_one(void **state)
{
	struct batond b;
	start_script_app(&b, "exec %s\n", "");
	if (skip_without_cgroups(&b)) {
		assert_int_equal(batond_stop(&b), 0);
		return;
	}
	pid_t worker = app_worker_pid(&b, "web", 0), killed = b.pid;
	char mnt[1024], own[1024], base[2200], want[2400];
	cgroup2_mount(mnt, sizeof(mnt));
	cgroup_of(getpid(), own, sizeof(own));
	snprintf(base, sizeof(base), "%s%s/batond-%d", mnt, strcmp(own, "/") ? own : "",
		 (int)killed);
	batond_kill9(&b);
	/* Its worker, orphaned to us, goes too. */
	assert_int_equal(kill(worker, SIGKILL), 0);
	assert_int_equal(waitpid(worker, NULL, 0), worker);
	assert_int_equal(access(base, F_OK), 0);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	assert_int_equal(access(base, F_OK), -1);
	snprintf(want, sizeof(want), "cgroups: removed %s, left by a batond that is gone", base);
	assert_true(batond_log_contains(&b, want));
	assert_int_equal(batond_stop(&b), 0);
}

/* ---- notify-access ------------------------------------------------------- */

/* App web runs as nobody a script that says READY=1 through systemd-notify, a
 * child of the worker (which, not root, cannot claim the worker's pid: the
 * datagram carries systemd-notify's own), then execs the test server without
 * notifying; notify-access = @access. @setup as for batond_start_in. */
static void start_notifying_through_a_helper(struct batond *b, const char *access,
					     void (*setup)(void))
{
	char path[400], conf[2048];
	prepare_for_nobody(b);
	snprintf(path, sizeof(path), "%s/app.sh", b->dir);
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f,
		"#!/bin/sh\nsystemd-notify --ready --status=\"helper says ready\"\n"
		"exec %s/testsrv --no-notify\n",
		b->dir);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@DIR@/app.sh\" }\n  listeners = { \"http\" }\n"
		 "  user = \"nobody\"\n  notify-access = %s\n  ready-timeout = 3\n}\n",
		 access);
	batond_write_config(b, conf);
	batond_start_in(b, setup);
}

/* With cgroups (@setup NULL, skipped where batond has none) or by process
 * group (@setup cgroup2_read_only). */
static void check_a_helper_makes_the_worker_ready(void (*setup)(void))
{
	struct batond b;
	char body[256], out[4096];
	start_notifying_through_a_helper(&b, "all", setup);
	if (setup)
		assert_false(batond_uses_cgroups(&b));
	else if (skip_without_cgroups(&b)) {
		batond_stop(&b);
		return;
	}
	if (!wait_workers(&b, "ready", 1, 10000)) {
		batond_dump_log(&b);
		fail_msg("READY=1 from systemd-notify did not make the worker ready");
	}
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "status: helper says ready"));
	/* And so does the next generation's. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	assert_false(batond_log_contains(&b, "which is not a worker"));
	assert_int_equal(batond_stop(&b), 0);
}

static void notify_access_all_takes_ready_from_a_helper_in_the_workers_cgroup(void **state)
{
	check_a_helper_makes_the_worker_ready(NULL);
}

static void notify_access_all_takes_ready_from_a_helper_in_the_workers_process_group(void **state)
{
	check_a_helper_makes_the_worker_ready(cgroup2_read_only);
}

static void notify_access_main_drops_a_helpers_ready(void **state)
{
	struct batond b;
	start_notifying_through_a_helper(&b, "main", NULL);
	/* The first generation never becomes ready: batond says why and retries. */
	if (!batond_wait_log(&b, "which is not a worker", 10000) ||
	    !batond_wait_log(&b, "generation 1 not ready within 3 s (ready-timeout)", 10000)) {
		batond_dump_log(&b);
		fail_msg("a helper's READY=1 was not dropped under notify-access = main");
	}
	assert_int_equal(app_status(&b, "web", "serving"), 0);
	batond_stop(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(a_worker_runs_as_its_apps_user_with_its_limits_and_directory),
	    harness_test(a_process_of_the_apps_user_cannot_reach_batond),
	    harness_test(a_worker_that_cannot_enter_its_directory_says_so),
	    harness_test(check_names_file_and_line_of_an_unknown_user_and_a_missing_directory),
	    harness_test(ambient_capabilities_are_exactly_those_listed),
	    harness_test(every_generation_runs_in_a_cgroup_of_its_own_with_its_apps_limits),
	    harness_test(a_daemon_a_worker_forked_dies_when_its_generation_drains),
	    harness_test(a_refused_binary_that_daemonizes_leaves_nothing_serving),
	    harness_test(without_cgroups_workers_are_tracked_by_process_group_and_batond_says_so),
	    harness_test(the_cgroups_of_a_killed_batond_are_removed_by_the_next_one),
	    harness_test(notify_access_all_takes_ready_from_a_helper_in_the_workers_cgroup),
	    harness_test(notify_access_all_takes_ready_from_a_helper_in_the_workers_process_group),
	    harness_test(notify_access_main_drops_a_helpers_ready),
	};
	/* Without root, say why and count as skipped (ctest: SKIP_REGULAR_EXPRESSION). */
	if (need_root_and_nobody(NULL) < 0) {
		printf("[  SKIPPED ] every test: not root, or no user nobody\n");
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
