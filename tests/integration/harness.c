/* SPDX-License-Identifier: MIT */
/* Integration test harness; see harness.h. Waits are polls bounded in time,
 * never fixed sleeps standing in for an event. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>

#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>

/* Copies, not pointers: a failed test has left the frame its batond lived in. */
static struct batond running[8];

/* Orphaned workers of a batond that had to be killed come to us, not to init. */
__attribute__((constructor)) static void become_subreaper(void)
{
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

static void track(const struct batond *b, bool on)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
		struct batond *slot = &running[i];
		if (on && slot->dir[0] == 0) {
			*slot = *b;
			return;
		}
		if (!on && slot->dir[0] && strcmp(slot->dir, b->dir) == 0) {
			memset(slot, 0, sizeof(*slot));
			return;
		}
	}
}

/* Every batond this process started, for its cgroups (see remove_cgroups). */
static pid_t batond_pids[256];

/* A cgroup directory and everything below: its processes killed
 * (cgroup.kill, or one by one from cgroup.procs in a v1 hierarchy), then
 * removed from the leaves up, each waited for (bounded) until empty. */
static void remove_cgroup_tree(const char *dir)
{
	char path[PATH_MAX];
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_type == DT_DIR && strcmp(e->d_name, ".") != 0 &&
		    strcmp(e->d_name, "..") != 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			remove_cgroup_tree(path);
		}
	closedir(d);
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	long long deadline = now_ms() + 5000;
	while (rmdir(dir) < 0 && errno == EBUSY && now_ms() < deadline) {
		FILE *f = fopen(path, "re");
		for (int pid; f && fscanf(f, "%d", &pid) == 1;)
			kill(pid, SIGKILL);
		if (f)
			fclose(f);
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* True if a batond runs in the batond-@pid cgroup2 directory under this
 * process's cgroup (its supervisor leaf is populated): pids are reused (often:
 * pid_max may be 32768), and batond-PID may be a new batond's, another test's. */
static bool batond_runs_in(const char *mnt, pid_t pid)
{
	char own[1024] = "", path[2200], line[256];
	FILE *f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "0::", 3) == 0) {
			snprintf(own, sizeof(own), "%s", line + 3);
			own[strcspn(own, "\n")] = 0;
		}
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s%s/batond-%d/supervisor/cgroup.events", mnt,
		 strcmp(own, "/") ? own : "", (int)pid);
	bool populated = false;
	if ((f = fopen(path, "re"))) {
		while (fgets(line, sizeof(line), f))
			populated |= strcmp(line, "populated 1\n") == 0;
		fclose(f);
	}
	return populated;
}

/* Removes the cgroups a batond started by hand (@pid, gone now) made:
 * batond-PID under this process's cgroup in every cgroup hierarchy, even when
 * it was killed before it could. By path; nothing else is touched, and nothing
 * where a batond runs. */
static void remove_cgroups(pid_t pid)
{
	FILE *mounts = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	while (mounts && fgets(line, sizeof(line), mounts)) {
		char mnt[1024], type[64];
		const char *dash = strstr(line, " - ");
		if (dash && sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 &&
		    sscanf(dash + 3, "%63s", type) == 1 && strcmp(type, "cgroup2") == 0 &&
		    batond_runs_in(mnt, pid)) {
			fclose(mounts);
			return;
		}
	}
	if (mounts)
		rewind(mounts);
	while (mounts && fgets(line, sizeof(line), mounts)) {
		char mnt[1024], type[64];
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %1023s", mnt) != 1 ||
		    sscanf(dash + 3, "%63s", type) != 1 ||
		    (strcmp(type, "cgroup") != 0 && strcmp(type, "cgroup2") != 0))
			continue;
		FILE *own = fopen("/proc/self/cgroup", "re");
		char entry[4096];
		while (own && fgets(entry, sizeof(entry), own)) {
			entry[strcspn(entry, "\n")] = 0;
			const char *p = strchr(entry, ':');
			p = p ? strchr(p + 1, ':') : NULL;
			if (!p)
				continue;
			char dir[PATH_MAX];
			snprintf(dir, sizeof(dir), "%s%s/batond-%d", mnt,
				 strcmp(p + 1, "/") ? p + 1 : "", (int)pid);
			if (access(dir, F_OK) == 0) {
				char kill_path[PATH_MAX + 16];
				snprintf(kill_path, sizeof(kill_path), "%s/cgroup.kill", dir);
				int fd = open(kill_path, O_WRONLY | O_CLOEXEC);
				if (fd >= 0) {
					(void)!write(fd, "1", 1);
					close(fd);
				}
				remove_cgroup_tree(dir);
			}
		}
		if (own)
			fclose(own);
	}
	if (mounts)
		fclose(mounts);
}

/* The cgroups of every batond started that is gone now. */
static void remove_stale_cgroups(void)
{
	for (size_t i = 0; i < sizeof(batond_pids) / sizeof(batond_pids[0]); i++)
		if (batond_pids[i] > 0 && kill(batond_pids[i], 0) < 0 && errno == ESRCH) {
			remove_cgroups(batond_pids[i]);
			batond_pids[i] = 0;
		}
}

static void remember_batond(pid_t pid)
{
	static bool registered;
	if (!registered)
		registered = atexit(remove_stale_cgroups) == 0;
	for (size_t i = 0; i < sizeof(batond_pids) / sizeof(batond_pids[0]); i++)
		if (batond_pids[i] == 0) {
			batond_pids[i] = pid;
			return;
		}
}

/* Kills every remaining child of this process by pid and reaps it. */
static void kill_children(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		char path[300], line[512];
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		int pid = 0, ppid = 0;
		if (fgets(line, sizeof(line), f)) {
			const char *p = strrchr(line, ')');
			pid = atoi(line);
			if (p)
				sscanf(p + 1, " %*c %d", &ppid);
		}
		fclose(f);
		if (ppid == getpid() && pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
	closedir(d);
}

int harness_teardown(void **state)
{
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (running[i].dir[0]) {
			struct batond b = running[i];
			batond_dump_log(&b);
			batond_stop(&b);
		}
	kill_children();
	remove_stale_cgroups();
	return 0;
}

void journal_namespace_enter(void)
{
	if (geteuid() != 0) {
		print_message("skipped: needs root for a mount namespace with a journal socket\n");
		skip();
	}
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/run", "tmpfs", 0, "mode=0755") < 0) {
		print_message("skipped: cannot make a mount namespace: %s\n", strerror(errno));
		skip();
	}
	assert_int_equal(mkdir("/run/systemd", 0755), 0);
	assert_int_equal(mkdir("/run/systemd/journal", 0755), 0);
}

void journal_namespace_leave(void)
{
	umount2("/run", MNT_DETACH);
}

void batond_log_is_journal_stream(const struct batond *b)
{
	struct stat st;
	int log = open(b->log, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(log >= 0 && fstat(log, &st) == 0);
	close(log);
	char stream[64];
	snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", stream, 1);
}

long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

void batond_prepare(struct batond *b)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->dir, sizeof(b->dir), "/tmp/baton-test.XXXXXX");
	assert_non_null(mkdtemp(b->dir));
	snprintf(b->conf, sizeof(b->conf), "%s/batond.conf", b->dir);
	snprintf(b->sock, sizeof(b->sock), "%s/batond.sock", b->dir);
	snprintf(b->log, sizeof(b->log), "%s/batond.log", b->dir);
	b->port = free_port();
}

static void fput_replaced(FILE *f, const char *body, const struct batond *b)
{
	for (const char *p = body; *p;) {
		if (strncmp(p, "@PORT@", 6) == 0) {
			fprintf(f, "%d", b->port);
			p += 6;
		} else if (strncmp(p, "@DIR@", 5) == 0) {
			fputs(b->dir, f);
			p += 5;
		} else if (strncmp(p, "@TESTSRV@", 9) == 0) {
			fputs(TESTSRV_PATH, f);
			p += 9;
		} else if (strncmp(p, "@HELLO@", 7) == 0) {
			fputs(HELLO_PATH, f);
			p += 7;
		} else {
			fputc(*p++, f);
		}
	}
}

void batond_write_config(struct batond *b, const char *body)
{
	FILE *f = fopen(b->conf, "we");
	assert_non_null(f);
	fprintf(f, "control { socket = \"%s\" }\n", b->sock);
	fput_replaced(f, body, b);
	fclose(f);
}

static bool control_answers(const struct batond *b)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(b->sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, b->sock, strlen(b->sock) + 1);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

void batond_start(struct batond *b)
{
	batond_start_in(b, NULL);
}

void batond_start_in(struct batond *b, void (*setup)(void))
{
	b->pid = fork();
	assert_true(b->pid >= 0);
	if (b->pid == 0) {
		if (setup)
			setup();
		int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		dup2(fd, 2);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		dup2(null, 0);
		dup2(null, 1);
		execl(BATOND_PATH, "batond", "-c", b->conf, (char *)NULL);
		_exit(127);
	}
	track(b, true);
	remember_batond(b->pid);
	long long deadline = now_ms() + 10000;
	while (!control_answers(b)) {
		int status;
		if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
			b->pid = 0;
			track(b, false);
			batond_dump_log(b);
			fail_msg("batond exited during start-up");
		}
		if (now_ms() > deadline) {
			batond_dump_log(b);
			fail_msg("batond's control socket did not answer within 10 s");
		}
		pause_ms(10);
	}
	/* The control socket listens before batond binds its listeners; a status
	 * answered comes from the event loop, which runs once they are bound. Its
	 * apps may not serve yet (exit 6). */
	char out[256];
	int rc = batonctl(b, out, sizeof(out), "status", NULL);
	if (rc != 0 && rc != 6) {
		batond_dump_log(b);
		fail_msg("batond's first status failed: %s", out);
	}
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) < 0 && errno == EISDIR)
			remove_dir(path);
	}
	closedir(d);
	rmdir(dir);
}

int batond_stop(struct batond *b)
{
	int rc = -1;
	if (b->pid > 0) {
		char out[256];
		batonctl(b, out, sizeof(out), "stop", NULL);
		long long deadline = now_ms() + 15000;
		int status;
		pid_t r;
		while ((r = waitpid(b->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
			pause_ms(10);
		if (r == b->pid) {
			rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		} else {
			kill(b->pid, SIGKILL);
			waitpid(b->pid, &status, 0);
		}
		b->pid = 0;
	}
	track(b, false);
	remove_stale_cgroups();
	if (getenv("BATON_TEST_KEEP"))
		fprintf(stderr, "keeping %s\n", b->dir);
	else
		remove_dir(b->dir);
	return rc;
}

void batond_kill9(struct batond *b)
{
	assert_int_equal(kill(b->pid, SIGKILL), 0);
	assert_int_equal(waitpid(b->pid, NULL, 0), b->pid);
	b->pid = 0;
	track(b, false);
}

void batond_dump_log(const struct batond *b)
{
	FILE *f = fopen(b->log, "re");
	if (!f)
		return;
	char line[1024];
	fprintf(stderr, "---- batond log %s ----\n", b->log);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fprintf(stderr, "---- end of log ----\n");
	fclose(f);
}

bool batond_log_contains(const struct batond *b, const char *needle)
{
	FILE *f = fopen(b->log, "re");
	if (!f)
		return false;
	char line[2048];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

bool batond_wait_log(const struct batond *b, const char *needle, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	while (!batond_log_contains(b, needle)) {
		if (now_ms() > deadline)
			return false;
		pause_ms(10);
	}
	return true;
}

/* Runs @path with @argv, its stdout and stderr into @out; its exit status. */
static int run_captured(const char *path, const char *const *argv, char *out, size_t out_len)
{
	int pipefd[2];
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		execv(path, (char **)argv);
		_exit(127);
	}
	close(pipefd[1]);
	size_t used = 0;
	ssize_t r;
	char sink[256];
	while ((r = read(pipefd[0], used + 1 < out_len ? out + used : sink,
			 used + 1 < out_len ? out_len - used - 1 : sizeof(sink))) > 0)
		if (used + 1 < out_len)
			used += (size_t)r;
	out[used] = 0;
	close(pipefd[0]);
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int batonctl(const struct batond *b, char *out, size_t out_len, const char *arg1, ...)
{
	const char *argv[16] = {"batonctl", "-s", b->sock};
	int n = 3;
	va_list ap;
	va_start(ap, arg1);
	for (const char *a = arg1; a && n < 15; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return run_captured(BATONCTL_PATH, argv, out, out_len);
}

int batond_check(const struct batond *b, char *out, size_t out_len)
{
	const char *argv[] = {"batond", "--check", "-c", b->conf, NULL};
	return run_captured(BATOND_PATH, argv, out, out_len);
}

int tcp_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

bool line_exchange(int fd, char *reply, size_t len)
{
	if (write(fd, "x\n", 2) != 2)
		return false;
	size_t used = 0;
	while (used < len - 1) {
		if (read(fd, reply + used, 1) != 1)
			return false;
		if (reply[used++] == '\n')
			break;
	}
	reply[used] = 0;
	return true;
}

int http_get(int port, char *body, size_t body_len)
{
	int fd = tcp_connect(port);
	if (fd < 0)
		return fd;
	const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	if (write(fd, req, sizeof(req) - 1) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	char buf[8192];
	size_t used = 0;
	ssize_t r;
	while (used < sizeof(buf) - 1 && (r = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0)
		used += (size_t)r;
	int e = r < 0 ? -errno : 0;
	close(fd);
	buf[used] = 0;
	if (e)
		return e;
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -EBADMSG;
	const char *p = strstr(buf, "\r\n\r\n");
	snprintf(body, body_len, "%s", p ? p + 4 : "");
	return status;
}

int count_fds_settled(pid_t pid)
{
	long long deadline = now_ms() + 3000;
	int last = -1, n;
	while ((n = count_fds(pid)) != last && now_ms() < deadline) {
		last = n;
		pause_ms(100);
	}
	return n;
}

int count_fds_when(pid_t pid, int want, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	int n;
	while ((n = count_fds(pid)) != want && now_ms() < deadline)
		pause_ms(10);
	return n;
}

struct json_object *status_json(const struct batond *b)
{
	static char out[256 * 1024];
	int rc = batonctl(b, out, sizeof(out), "status", "--json", NULL);
	if (rc != 0 && rc != 6) /* 6: an app serves nothing, the status all the same */
		fail_msg("batonctl status --json: exit %d: %s", rc, out);
	enum json_tokener_error err;
	struct json_object *o = json_tokener_parse_verbose(out, &err);
	if (!o)
		fail_msg("batonctl status --json: %s: %s", json_tokener_error_desc(err), out);
	return o;
}

static long long sum_members(struct json_object *o, const char *key)
{
	long long sum = 0;
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			sum += sum_members(json_object_array_get_idx(o, i), key);
	} else if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, k, v)
		{
			if (strcmp(k, key) == 0 && json_object_is_type(v, json_type_int))
				sum += json_object_get_int64(v);
			else
				sum += sum_members(v, key);
		}
	}
	return sum;
}

long long status_sum(const struct batond *b, const char *key)
{
	struct json_object *st = status_json(b);
	long long sum = sum_members(st, key);
	json_object_put(st);
	return sum;
}

bool wait_status_sum(const struct batond *b, const char *key, long long want, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	while (status_sum(b, key) != want) {
		if (now_ms() > deadline)
			return false;
		pause_ms(10);
	}
	return true;
}

/* The member "apps"[i] whose name is @app, borrowed from @st. */
static struct json_object *find_app(struct json_object *st, const char *app)
{
	struct json_object *apps = json_object_object_get(st, "apps");
	for (size_t i = 0; i < json_object_array_length(apps); i++) {
		struct json_object *a = json_object_array_get_idx(apps, i);
		if (strcmp(json_object_get_string(json_object_object_get(a, "name")), app) == 0)
			return a;
	}
	fail_msg("no app \"%s\" in batonctl status --json", app);
	return NULL;
}

bool batond_uses_cgroups(const struct batond *b)
{
	struct json_object *st = status_json(b), *v;
	bool yes = json_object_object_get_ex(st, "cgroups", &v) &&
		   strncmp(json_object_get_string(v), "cgroup2 ", 8) == 0;
	json_object_put(st);
	return yes;
}

void lingering_killed_line(const struct batond *b, unsigned gen, unsigned worker, pid_t pgid,
			   char *buf, size_t len)
{
	if (batond_uses_cgroups(b))
		snprintf(buf, len,
			 "generation %u worker %u: processes of its cgroup still running after "
			 "drain-timeout, killing them (cgroup.kill)",
			 gen, worker);
	else
		snprintf(buf, len,
			 "generation %u worker %u: processes of its group %d still running after "
			 "drain-timeout, sending SIGKILL",
			 gen, worker, (int)pgid);
}

int pinned_fds(const struct batond *b, const char *app)
{
	return app_status(b, app, "pinned") != 0;
}

long long app_status(const struct batond *b, const char *app, const char *key)
{
	struct json_object *st = status_json(b), *v;
	if (!json_object_object_get_ex(find_app(st, app), key, &v))
		fail_msg("app \"%s\" has no \"%s\" in batonctl status --json", app, key);
	long long n = json_object_get_int64(v);
	json_object_put(st);
	return n;
}

pid_t app_worker_pid(const struct batond *b, const char *app, unsigned index)
{
	struct json_object *st = status_json(b);
	struct json_object *gens = json_object_object_get(find_app(st, app), "generations");
	size_t n = json_object_array_length(gens);
	pid_t pid = 0;
	if (n > 0) {
		struct json_object *workers =
		    json_object_object_get(json_object_array_get_idx(gens, n - 1), "workers");
		if (index < json_object_array_length(workers))
			pid = json_object_get_int(json_object_object_get(
			    json_object_array_get_idx(workers, index), "pid"));
	}
	json_object_put(st);
	return pid;
}

int worker_pids(const struct batond *b, const char *state, pid_t *pids, int max)
{
	struct json_object *st = status_json(b);
	struct json_object *apps = json_object_object_get(st, "apps");
	int n = 0;
	for (size_t i = 0; i < json_object_array_length(apps); i++) {
		struct json_object *gens =
		    json_object_object_get(json_object_array_get_idx(apps, i), "generations");
		for (size_t g = 0; g < json_object_array_length(gens); g++) {
			struct json_object *workers =
			    json_object_object_get(json_object_array_get_idx(gens, g), "workers");
			for (size_t w = 0; w < json_object_array_length(workers) && n < max; w++) {
				struct json_object *wk = json_object_array_get_idx(workers, w);
				pid_t pid = json_object_get_int(json_object_object_get(wk, "pid"));
				const char *ws =
				    json_object_get_string(json_object_object_get(wk, "state"));
				if (pid > 0 && ws && strcmp(ws, state) == 0)
					pids[n++] = pid;
			}
		}
	}
	json_object_put(st);
	return n;
}

bool wait_workers(const struct batond *b, const char *state, int n, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	pid_t pids[64];
	while (worker_pids(b, state, pids, 64) != n) {
		if (now_ms() > deadline)
			return false;
		pause_ms(20);
	}
	return true;
}

pid_t loadgen_start(const struct batond *b, int conns, int duration_ms, const char *out_path)
{
	return loadgen_start_with(b, conns, duration_ms, out_path, NULL);
}

pid_t loadgen_start_with(const struct batond *b, int conns, int duration_ms, const char *out_path,
			 const char *const *extra)
{
	/* Blocked from the fork on (the mask survives exec): a loadgen_stop that
	 * comes before loadgen runs is a pending signal loadgen takes at its
	 * start, ending the run with its report, not a kill without one. */
	sigset_t stop, old;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, &old);
	pid_t pid = fork();
	if (pid != 0)
		sigprocmask(SIG_SETMASK, &old, NULL);
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		char port[16], c[16], d[16];
		snprintf(port, sizeof(port), "%d", b->port);
		snprintf(c, sizeof(c), "%d", conns);
		snprintf(d, sizeof(d), "%d", duration_ms);
		const char *argv[24] = {"loadgen", "--port",	    port, "--connections",
					c,	   "--duration-ms", d};
		size_t n = 7;
		for (; extra && *extra && n < sizeof(argv) / sizeof(argv[0]) - 1; extra++)
			argv[n++] = *extra;
		argv[n] = NULL;
		execv(LOADGEN_PATH, (char **)argv);
		_exit(127);
	}
	return pid;
}

int loadgen_wait(pid_t pid, const char *out_path, long *ok, long *failed)
{
	int status;
	waitpid(pid, &status, 0);
	loadgen_report(out_path, ok, failed);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int loadgen_stop(pid_t pid, const char *out_path, long *ok, long *failed)
{
	kill(pid, SIGTERM);
	return loadgen_wait(pid, out_path, ok, failed);
}

double loadgen_stall_ms(const char *out_path)
{
	double stall = -1;
	FILE *f = fopen(out_path, "re");
	char line[2048];
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "stall longest %lf ms", &stall) == 1)
			break;
	if (f)
		fclose(f);
	return stall;
}

void loadgen_report(const char *out_path, long *ok, long *failed)
{
	*ok = *failed = -1;
	FILE *f = fopen(out_path, "re");
	if (f) {
		char line[2048];
		while (fgets(line, sizeof(line), f)) {
			fputs(line, stderr);
			if (strncmp(line, "loadgen: ", 9) == 0)
				sscanf(line, "loadgen: ok=%ld failed=%ld", ok, failed);
		}
		fclose(f);
	}
}
