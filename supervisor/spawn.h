/* SPDX-License-Identifier: MIT */
/* fork + exec of one worker under the socket-activation contract. Owns nothing
 * after it returns: the caller gets the pid, its end of the channel and the
 * exec-status pipe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* What the worker runs as, set in the child before exec (borrowed). */
struct spawn_creds {
	bool set_ids; /* uid, gid and groups below apply */
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
	const char *working_directory; /* NULL: batond's */
	bool set_umask;
	mode_t umask;
	bool no_new_privileges;
	uint64_t ambient_caps; /* with set_ids: kept across setresuid, raised ambient */
	struct spawn_limit {
		int resource; /* RLIMIT_NOFILE... */
		bool set;
		rlim_t value; /* soft and hard */
	} limits[3];
};

/* The step of the child's set-up that failed, reported with its errno. */
enum spawn_step {
	SPAWN_EXEC,
	SPAWN_FDS,
	SPAWN_LIMITS,
	SPAWN_GROUPS,
	SPAWN_GID,
	SPAWN_UID,
	SPAWN_CHDIR,
	SPAWN_NO_NEW_PRIVS,
	SPAWN_CGROUP,
	SPAWN_CAPS,
};

/* What the exec-status pipe carries when the child fails: written in one
 * write(2), so it arrives whole or not at all. */
struct spawn_failure {
	int32_t err;
	int32_t step; /* enum spawn_step */
};

/* "exec", "setgroups", "setresuid"... for messages. */
const char *spawn_step_name(enum spawn_step step);

struct spawn_req {
	char *const *argv;     /* argv[0] is the absolute path executed */
	int program_fd;	       /* O_PATH of argv[0] to execute instead, or -1 */
	char *const *app_env;  /* "K=V" from the config, may be NULL */
	const int *listen_fds; /* borrowed; duplicated to 3.. in the child */
	size_t n_listen_fds;
	const char *listen_names; /* "a:b:c" */
	const char *notify_socket;
	const char *app;
	unsigned generation;
	unsigned worker;
	const struct spawn_creds *creds; /* NULL: as batond */
	/* Its cgroups (borrowed, O_CLOEXEC; cgroup_join_fds): first the directory
	 * of its cgroup2 leaf, which it is cloned into (or, where clone3 cannot,
	 * writes itself into before anything else) and must take it; then
	 * cgroup.procs files of the v1 hierarchies' limits, which it writes
	 * itself into. */
	const int *cgroup_fds;
	size_t n_cgroup_fds;
	/* The worker's stdout and stderr (fds 1 and 2): @stdio_fd (borrowed; a
	 * pipe batond reads), or with @stdio_journal a journal stream of its own
	 * whose identifier is @app, connected in the child; neither: batond's. */
	int stdio_fd;
	bool stdio_journal;
};

/* Starts the worker. On success returns 0 with:
 *   *ret_pid      the child's pid,
 *   *ret_channel  batond's end of the SOCK_SEQPACKET channel (BATON_FD in the child),
 *   *ret_exec_fd  a pipe that reads EOF once exec succeeded, or a struct
 *                 spawn_failure then EOF if the set-up or exec failed (the
 *                 child then exits 127).
 * All returned fds are O_CLOEXEC|O_NONBLOCK. Returns a negative errno if the
 * fork itself failed. */
int spawn_worker(const struct spawn_req *req, pid_t *ret_pid, int *ret_channel, int *ret_exec_fd);

/* A health-exec probe (health.c): @argv with @envp, as @creds (may be NULL),
 * in a process group of its own, stdin /dev/null, stdout and stderr to a pipe.
 * Returns 0 with its pid and the pipe's read end (O_CLOEXEC|O_NONBLOCK) in
 * *ret_output_fd; a set-up or exec that fails in the child writes
 * "STEP: REASON" there and exits 127. Returns a negative errno if nothing
 * could be started. */
int spawn_probe(char *const *argv, char *const *envp, const struct spawn_creds *creds,
		pid_t *ret_pid, int *ret_output_fd);
