/* SPDX-License-Identifier: MIT */
/* Worker spawn. Everything the child needs is prepared before fork(), so the
 * child only moves fds, formats its own pid and calls execve: it allocates
 * nothing and never returns into batond's code. */
#include "spawn.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

extern char **environ;

/* True if @kv's name is assigned in @env: the config's value wins over batond's. */
static int env_is_set_by(const char *kv, char *const *env)
{
	size_t name_len = strcspn(kv, "=");
	for (; env && *env; env++)
		if (strncmp(*env, kv, name_len) == 0 && (*env)[name_len] == '=')
			return 1;
	return 0;
}

struct child_env {
	char **envp;
	char *strings;	  /* one block holding the variables we add */
	char *listen_pid; /* "LISTEN_PID=" followed by room for the pid, set in the child */
};

static void child_env_free(struct child_env *ce)
{
	free(ce->envp);
	free(ce->strings);
}

static int child_env_build(const struct spawn_req *req, int channel_fd, struct child_env *ret)
{
	size_t n_inherit = 0, n_app = 0;
	for (char **e = environ; *e; e++)
		n_inherit++;
	for (char *const *e = req->app_env; e && *e; e++)
		n_app++;
	const size_t n_ours = 9;
	char **envp = calloc(n_inherit + n_app + n_ours + 1, sizeof(char *));
	char *strings = malloc(4096 + strlen(req->listen_names) + strlen(req->notify_socket) +
			       strlen(req->app));
	if (!envp || !strings) {
		free(envp);
		free(strings);
		return -ENOMEM;
	}
	size_t k = 0;
	for (char **e = environ; *e; e++)
		/* batond's own (its LISTEN_FDS, WATCHDOG_USEC...) describe batond. */
		if (!env_is_batonds(*e) && !env_is_set_by(*e, req->app_env))
			envp[k++] = *e;
	for (char *const *e = req->app_env; e && *e; e++)
		envp[k++] = *e;

	char *p = strings;
#define ADD(...)                                                                                   \
	do {                                                                                       \
		envp[k++] = p;                                                                     \
		p += sprintf(p, __VA_ARGS__) + 1;                                                  \
	} while (0)
	ADD("LISTEN_FDS=%zu", req->n_listen_fds);
	ADD("LISTEN_FDNAMES=%s", req->listen_names);
	ADD("NOTIFY_SOCKET=%s", req->notify_socket);
	ADD("BATON_FD=%d", channel_fd);
	ADD("BATON_APP=%s", req->app);
	ADD("BATON_GENERATION=%u", req->generation);
	ADD("BATON_WORKER=%u", req->worker);
#undef ADD
	ret->listen_pid = p;
	envp[k++] = p;
	strcpy(p, "LISTEN_PID=");
	envp[k] = NULL;
	ret->envp = envp;
	ret->strings = strings;
	return 0;
}

const char *spawn_step_name(enum spawn_step step)
{
	static const char *const names[] = {[SPAWN_EXEC] = "exec",
					    [SPAWN_FDS] = "placing its fds",
					    [SPAWN_LIMITS] = "setrlimit",
					    [SPAWN_GROUPS] = "setgroups",
					    [SPAWN_GID] = "setresgid",
					    [SPAWN_UID] = "setresuid",
					    [SPAWN_CHDIR] = "chdir",
					    [SPAWN_NO_NEW_PRIVS] = "no-new-privileges",
					    [SPAWN_CGROUP] = "joining its cgroup",
					    [SPAWN_CAPS] = "ambient capabilities"};
	return step >= 0 && (size_t)step < sizeof(names) / sizeof(names[0]) && names[step]
		   ? names[step]
		   : "set-up";
}

/* The worker's limits, then its groups, gid and uid (in that order: each
 * later one takes the right to do the earlier away), its directory, umask and
 * no_new_privs. In the child; async-signal-safe. Returns the failed step, with
 * errno set, or -1. */
static int child_become(const struct spawn_creds *c)
{
	for (size_t i = 0; i < sizeof(c->limits) / sizeof(c->limits[0]); i++) {
		struct rlimit rl = {c->limits[i].value, c->limits[i].value};
		if (c->limits[i].set && setrlimit(c->limits[i].resource, &rl) < 0)
			return SPAWN_LIMITS;
	}
	if (c->set_ids) {
		if (setgroups(c->n_groups, c->groups) < 0)
			return SPAWN_GROUPS;
		if (setresgid(c->gid, c->gid, c->gid) < 0)
			return SPAWN_GID;
		/* Capabilities to keep survive the change of uid... */
		if (c->ambient_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
			return SPAWN_CAPS;
		if (setresuid(c->uid, c->uid, c->uid) < 0)
			return SPAWN_UID;
		/* ...and only those: permitted, inheritable and effective, then
		 * ambient, which is what an exec of a plain program keeps. */
		if (c->ambient_caps) {
			struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
			struct __user_cap_data_struct data[2] = {
			    {(uint32_t)c->ambient_caps, (uint32_t)c->ambient_caps,
			     (uint32_t)c->ambient_caps},
			    {(uint32_t)(c->ambient_caps >> 32), (uint32_t)(c->ambient_caps >> 32),
			     (uint32_t)(c->ambient_caps >> 32)}};
			if (syscall(SYS_capset, &hdr, data) < 0)
				return SPAWN_CAPS;
			for (int cap = 0; cap < 64; cap++)
				if ((c->ambient_caps >> cap & 1) &&
				    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
					return SPAWN_CAPS;
		}
	}
	if (c->working_directory && chdir(c->working_directory) < 0)
		return SPAWN_CHDIR;
	if (c->set_umask)
		umask(c->umask);
	if (c->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return SPAWN_NO_NEW_PRIVS;
	return -1;
}

/* The worker's stdout and stderr to a journal stream of its own, identified
 * by the app's name, with "<N>" prefixes read as priorities, as systemd does
 * for a service. Connected from the child, so that the journal records the
 * worker's pid, uid and cgroup (_PID=, _UID=), which batond's own lines about
 * it carry as WORKER_PID=. sd_journal_stream_fd makes only system calls
 * (socket, shutdown, setsockopt, connect, write of a header on the stack), so
 * it is safe between fork and exec of batond, which has one thread. Without
 * a journal to connect to, the worker keeps batond's stderr. */
static void child_journal_stream(const char *app)
{
	int fd = sd_journal_stream_fd(app, LOG_INFO, 1);
	if (fd < 0)
		return;
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
}

/* A child's signals as a service's: default dispositions, none blocked,
 * SIGPIPE ignored (systemd's IgnoreSIGPIPE=yes: SIGPIPE is for shell
 * pipelines; a worker whose stdout pipe lost its reader, batond killed until
 * the next one takes it back (recover.c), gets EPIPE and serves on). And a
 * process group of its own: a terminal's ^C reaches batond, which drains
 * workers in order, and a signal to the group reaches what it starts. In the
 * child; async-signal-safe. */
static void child_reset(void)
{
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < _NSIG; sig++)
		signal(sig, sig == SIGPIPE ? SIG_IGN : SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
}

/* Runs in the child. Only async-signal-safe calls from here on. @in_cgroup:
 * it was born in its cgroup2 leaf. */
static void __attribute__((noreturn)) child_exec(const struct spawn_req *req, struct child_env *ce,
						 int channel_fd, int exec_fd, bool in_cgroup)
{
	child_reset();
	int err = 0;
	/* First, while the fds are where batond opened them: everything the worker
	 * forks from now on is born in its cgroups. Its cgroup2 leaf, which
	 * batond tracks it by, must take it. The others (v1 hierarchies, for
	 * limits only) may have been removed by someone else meanwhile (a systemd
	 * that trims empty cgroups): without them it runs unlimited there rather
	 * than not at all. */
	if (req->n_cgroup_fds && !in_cgroup) {
		int procs = openat(req->cgroup_fds[0], "cgroup.procs", O_WRONLY | O_CLOEXEC);
		if (procs < 0 || write(procs, "0", 1) < 0)
			err = errno;
		if (procs >= 0)
			close(procs);
	}
	for (size_t i = 1; i < req->n_cgroup_fds && !err; i++)
		if (write(req->cgroup_fds[i], "0", 1) < 0)
			continue;
	if (err) {
		struct spawn_failure failure = {.err = err, .step = SPAWN_CGROUP};
		ssize_t w = write(exec_fd, &failure, sizeof(failure));
		(void)w;
		_exit(127);
	}

	size_t n = req->n_listen_fds;
	int high[n + 1];
	/* First lift every source above the target range, then place them, so that a
	 * source sitting at a target number is never overwritten before it is copied. */
	int floor = 3 + (int)n + 1;
	for (size_t i = 0; i <= n && !err; i++) {
		int src = i < n ? req->listen_fds[i] : channel_fd;
		high[i] = fcntl(src, F_DUPFD_CLOEXEC, floor);
		if (high[i] < 0)
			err = errno;
	}
	int exec_hi = err ? exec_fd : fcntl(exec_fd, F_DUPFD_CLOEXEC, floor);
	if (exec_hi < 0) {
		err = errno;
		exec_hi = exec_fd;
	}
	int program_hi = -1;
	if (!err && req->program_fd >= 0 &&
	    (program_hi = fcntl(req->program_fd, F_DUPFD_CLOEXEC, floor)) < 0)
		err = errno;
	int stdio_hi = -1;
	if (!err && req->stdio_fd >= 0 &&
	    (stdio_hi = fcntl(req->stdio_fd, F_DUPFD_CLOEXEC, floor)) < 0)
		err = errno;
	for (size_t i = 0; i <= n && !err; i++)
		if (dup2(high[i], 3 + (int)i) < 0) /* dup2 clears FD_CLOEXEC on the copy */
			err = errno;
	if (!err && stdio_hi >= 0 && (dup2(stdio_hi, 1) < 0 || dup2(stdio_hi, 2) < 0))
		err = errno;
	int step = SPAWN_FDS;
	if (!err && req->creds && (step = child_become(req->creds)) >= 0)
		err = errno;
	if (!err && req->stdio_journal)
		child_journal_stream(req->app);
	if (!err) {
		step = SPAWN_EXEC;
		/* Everything above our range closes at exec; the exec pipe stays usable
		 * until then. This also covers fds batond inherited without CLOEXEC. */
		close_range(3 + (unsigned)n + 1, ~0U, CLOSE_RANGE_CLOEXEC);
		char *pid = ce->listen_pid + strlen("LISTEN_PID=");
		/* Format getpid() without stdio. */
		char digits[16];
		int d = 0;
		for (pid_t v = getpid(); v > 0; v /= 10)
			digits[d++] = (char)('0' + v % 10);
		while (d > 0)
			*pid++ = digits[--d];
		*pid = 0;
		/* The file the generation started with. A script cannot run from a
		 * close-on-exec fd (its interpreter would open /dev/fd/N after the
		 * exec closed it: ENOENT); it runs by path. */
		if (program_hi >= 0)
			execveat(program_hi, "", req->argv, ce->envp, AT_EMPTY_PATH);
		if (program_hi < 0 || errno == ENOENT)
			execve(req->argv[0], req->argv, ce->envp);
		err = errno;
	}
	struct spawn_failure failure = {.err = err, .step = step < 0 ? SPAWN_EXEC : step};
	ssize_t w = write(exec_hi, &failure, sizeof(failure));
	(void)w;
	_exit(127);
}

/* fork(), with the child born in the cgroup2 directory @cgroup_dir_fd (-1:
 * none) where the kernel can (clone3's CLONE_INTO_CGROUP, Linux 5.7): moving
 * a running process into a cgroup, a write to cgroup.procs, takes the cgroup
 * threadgroup lock for writing, which waits for an RCU grace period: 4-12 ms
 * of every upgrade here (docs/benchmarks.md). Without clone3 (an older kernel,
 * a seccomp filter), or if the kernel refuses that cgroup, a plain fork: the
 * child then joins it itself and reports a failure as any set-up step.
 * *ret_in_cgroup tells which, in both processes. As fork, batond goes on as
 * soon as the child exists (no CLONE_VFORK). The raw syscall skips glibc's
 * fork handlers, which a single-threaded batond has none of, and leaves the
 * child's cached thread id wrong, which nothing before its exec reads. */
static pid_t fork_into(int cgroup_dir_fd, bool *ret_in_cgroup)
{
	*ret_in_cgroup = false;
	if (cgroup_dir_fd >= 0) {
		struct clone_args args = {.flags = CLONE_INTO_CGROUP,
					  .exit_signal = SIGCHLD,
					  .cgroup = (uint64_t)cgroup_dir_fd};
		pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
		if (pid >= 0) {
			*ret_in_cgroup = true;
			return pid;
		}
	}
	return fork();
}

int spawn_worker(const struct spawn_req *req, pid_t *ret_pid, int *ret_channel, int *ret_exec_fd)
{
	int pair[2], exec_pipe[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
		return -errno;
	/* The channel's send buffer bounds what a worker that dies takes with it in
	 * dispatch mode: the connections sent but not yet read. 16 KiB (the kernel
	 * doubles the 8 KiB asked) holds at most 4 messages of 64 connections, or 22
	 * of one (measured on Linux 6.x; docs/dispatch.md). */
	int sndbuf = 8192;
	if (setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0) {
		int r = -errno;
		close(pair[0]);
		close(pair[1]);
		return r;
	}
	if (pipe2(exec_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		int r = -errno;
		close(pair[0]);
		close(pair[1]);
		return r;
	}
	struct child_env ce;
	int channel_child_fd = 3 + (int)req->n_listen_fds;
	int r = child_env_build(req, channel_child_fd, &ce);
	if (r < 0)
		goto fail;

	bool in_cgroup;
	pid_t pid = fork_into(req->n_cgroup_fds ? req->cgroup_fds[0] : -1, &in_cgroup);
	if (pid < 0) {
		r = -errno;
		child_env_free(&ce);
		goto fail;
	}
	if (pid == 0) {
		close(exec_pipe[0]);
		close(pair[0]);
		child_exec(req, &ce, pair[1], exec_pipe[1], in_cgroup);
	}
	/* The child does the same; doing it here too means the group exists when
	 * batond next signals it, whichever of the two runs first. */
	setpgid(pid, pid);
	child_env_free(&ce);
	close(pair[1]);
	close(exec_pipe[1]);
	*ret_pid = pid;
	*ret_channel = pair[0];
	*ret_exec_fd = exec_pipe[0];
	return 0;
fail:
	close(pair[0]);
	close(pair[1]);
	close(exec_pipe[0]);
	close(exec_pipe[1]);
	return r;
}

/* Runs in the child. Only async-signal-safe calls from here on. */
static void __attribute__((noreturn))
child_probe(char *const *argv, char *const *envp, const struct spawn_creds *creds, int null_fd,
	    int out_fd)
{
	child_reset(); /* its own group: a timeout kills what it started too */
	int step = SPAWN_FDS;
	if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
		goto fail;
	if (creds && (step = child_become(creds)) >= 0)
		goto fail;
	step = SPAWN_EXEC;
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	execve(argv[0], argv, envp);
fail:;
	int err = errno;
	const char *what = spawn_step_name(step), *why = strerrordesc_np(err);
	struct iovec iov[4] = {{(void *)what, strlen(what)},
			       {": ", 2},
			       {(void *)(why ? why : "error"), strlen(why ? why : "error")},
			       {"\n", 1}};
	ssize_t w = writev(2, iov, 4);
	(void)w;
	_exit(127);
}

int spawn_probe(char *const *argv, char *const *envp, const struct spawn_creds *creds,
		pid_t *ret_pid, int *ret_output_fd)
{
	int out[2];
	if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0) {
		int r = -errno;
		close(out[0]);
		close(out[1]);
		return r;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(out[0]);
		/* Writes to its output block, as a shell's would: batond reads it. */
		int flags = fcntl(out[1], F_GETFL);
		if (flags >= 0)
			fcntl(out[1], F_SETFL, flags & ~O_NONBLOCK);
		child_probe(argv, envp, creds, null_fd, out[1]);
	}
	int r = pid < 0 ? -errno : 0;
	if (pid > 0)
		setpgid(pid, pid); /* as spawn_worker: the group exists for kill(-pid) */
	close(null_fd);
	close(out[1]);
	if (r < 0) {
		close(out[0]);
		return r;
	}
	*ret_pid = pid;
	*ret_output_fd = out[0];
	return 0;
}
