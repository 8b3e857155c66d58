/* SPDX-License-Identifier: MIT */
/* preforksrv: a pre-fork HTTP/1.1 server, libc only, that stops the way many real ones do.
 * The master takes the inherited listener (fd 3, the systemd contract), forks two workers
 * into its own process group, and says READY=1 once both run. On SIGTERM or SIGINT it closes
 * the stop pipe: each worker stops accepting, finishes the request it is serving and exits;
 * the master waits for them and exits 0. A worker that gets SIGTERM itself dies at once
 * (default action), in the middle of a request: signalling the whole group loses requests.
 * Each response waits 5 to 20 ms first, so a request is often in flight. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_FD     3
#define N_WORKERS     2
#define IN_MAX_BYTES  4096
#define IO_TIMEOUT_MS 5000 /* a client that stalls does not hold a worker for good */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "preforksrv[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* READY=1 on NOTIFY_SOCKET, as sd_notify() sends it ('@': an abstract address). */
static int notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET"), msg[] = "READY=1";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = path ? strlen(path) : 0;
	int fd, r = 0;

	if (len == 0)
		return 0;
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Reads the request head, waits, answers and closes. Connection: close. */
static void serve(int fd, const char *body, unsigned n)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
	char in[IN_MAX_BYTES], out[512];
	size_t len = 0;
	int head_len;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (len < sizeof(in) && !memmem(in, len, "\r\n\r\n", 4)) {
		ssize_t r = read(fd, in + len, sizeof(in) - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return;
		}
		len += (size_t)r;
	}
	pause_ms(5 + (long)(n * 7 % 16));
	head_len = snprintf(out, sizeof(out),
			    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			    "Connection: close\r\n\r\n%s",
			    strlen(body), body);
	for (size_t off = 0; head_len > 0 && off < (size_t)head_len;) {
		ssize_t r = write(fd, out + off, (size_t)head_len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(fd);
}

/* A worker: serves until the stop pipe closes, then exits. Its signals are the defaults. */
static int worker_main(int index, int stop_fd, int ready_fd)
{
	const char *gen = getenv("BATON_GENERATION"), *worker = getenv("BATON_WORKER");
	struct pollfd pfds[2] = {{.fd = LISTEN_FD, .events = POLLIN},
				 {.fd = stop_fd, .events = POLLIN}};
	char body[160];
	unsigned served = 0;

	snprintf(body, sizeof(body), "gen=%.40s pid=%d worker=%.40s.%d\n", gen ? gen : "0",
		 (int)getpid(), worker ? worker : "0", index);
	if (write(ready_fd, "r", 1) != 1)
		return 1;
	close(ready_fd);
	for (;;) {
		if (poll(pfds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			say("poll: %s", strerror(errno));
			return 1;
		}
		if (pfds[1].revents)
			break; /* the master closed the stop pipe */
		if (!(pfds[0].revents & POLLIN))
			continue;
		int fd = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* EAGAIN: the other worker (or generation) took it */
		serve(fd, body, served++ + (unsigned)index);
	}
	/* Stop accepting: forget the shared listener and close our copy, never shutdown(). */
	close(LISTEN_FD);
	return 0;
}

static int check_contract(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int type = 0;
	socklen_t len = sizeof(type);

	if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1) {
		say("no listener passed (LISTEN_PID, LISTEN_FDS)");
		return -EBADF;
	}
	if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
		say("fd %d is not a stream socket", LISTEN_FD);
		return -ENOTSOCK;
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return 0;
}

int main(void)
{
	int stop_pipe[2], ready_pipe[2], flags, sig, status, r, code = 0;
	sigset_t mask, old_mask;
	unsigned running = 0;
	char c;

	if (check_contract() < 0)
		return 1;
	/* O_NONBLOCK is shared with every holder of the listener: the workers poll before they
	 * accept, and a blocking accept() would hang one whose connection the other took. */
	flags = fcntl(LISTEN_FD, F_GETFL);
	if (flags >= 0 && !(flags & O_NONBLOCK))
		(void)fcntl(LISTEN_FD, F_SETFL, flags | O_NONBLOCK);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	/* Blocked before the forks, so that no signal is missed; the workers unblock them. */
	if (sigprocmask(SIG_BLOCK, &mask, &old_mask) < 0 || pipe2(stop_pipe, O_CLOEXEC) < 0 ||
	    pipe2(ready_pipe, O_CLOEXEC) < 0) {
		say("setup: %s", strerror(errno));
		return 1;
	}
	for (int i = 0; i < N_WORKERS; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			say("fork: %s", strerror(errno));
			code = 1;
			break;
		}
		if (pid == 0) {
			sigprocmask(SIG_SETMASK, &old_mask, NULL);
			close(stop_pipe[1]);
			close(ready_pipe[0]);
			_exit(worker_main(i, stop_pipe[0], ready_pipe[1]));
		}
		running++;
	}
	close(stop_pipe[0]);
	close(ready_pipe[1]);
	close(LISTEN_FD); /* the master serves nothing */
	for (unsigned ready = 0; code == 0 && ready < N_WORKERS; ready++)
		if (read(ready_pipe[0], &c, 1) != 1) {
			say("a worker died before it was ready");
			code = 1;
		}
	close(ready_pipe[0]);
	if (code == 0 && (r = notify_ready()) < 0)
		say("READY=1: %s", strerror(-r));

	while (code == 0 && (sig = sigwaitinfo(&mask, NULL)) != SIGTERM && sig != SIGINT) {
		if (sig != SIGCHLD)
			continue;
		while (running > 0 && waitpid(-1, &status, WNOHANG) > 0)
			running--;
		if (running < N_WORKERS) {
			say("a worker exited on its own; stopping");
			code = 1;
		}
	}
	close(stop_pipe[1]); /* every worker finishes its request and exits */
	while (running > 0)
		if (waitpid(-1, &status, 0) > 0)
			running--;
		else if (errno != EINTR)
			break;
	return code;
}
