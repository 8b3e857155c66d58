/* fork + exec of one worker under the socket-activation contract. Owns nothing
 * after it returns: the caller gets the pid, its end of the channel and the
 * exec-status pipe. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

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
};

/* Starts the worker. On success returns 0 with:
 *   *ret_pid      the child's pid,
 *   *ret_channel  batond's end of the SOCK_SEQPACKET channel (BATON_FD in the child),
 *   *ret_exec_fd  a pipe that reads EOF once exec succeeded, or the exec errno
 *                 (int) then EOF if it failed (the child then exits 127).
 * All returned fds are O_CLOEXEC|O_NONBLOCK. Returns a negative errno if the
 * fork itself failed. */
int spawn_worker(const struct spawn_req *req, pid_t *ret_pid, int *ret_channel, int *ret_exec_fd);
