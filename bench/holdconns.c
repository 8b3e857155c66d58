/* SPDX-License-Identifier: MIT */
/* holdconns: long-lived clients for bench/run.sh. Opens N connections to a line
 * server on 127.0.0.1 (tests/apps/parksrv: one line in, one line out), has
 * each answered once, so that they are the serving generation's, prints
 * "holdconns: held N" and holds them, idle, until SIGTERM or SIGINT.
 *
 *   holdconns --port PORT --connections N
 *
 * Exits 0 after the signal, 1 when a connection could not be made or was not
 * answered within 10 s. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* One line back on @fd, within its receive timeout. */
static int read_line(int fd)
{
	char c;
	for (;;) {
		ssize_t n = read(fd, &c, 1);
		if (n == 1 && c == '\n')
			return 0;
		if (n == 1)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		return n == 0 ? -ECONNRESET : -errno;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"connections", required_argument, NULL, 'c'},
	    {0},
	};
	long port = 0, n = 0;
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		if (o == 'p')
			port = atol(optarg);
		else if (o == 'c')
			n = atol(optarg);
		else
			return 2;
	}
	if (port < 1 || port > 65535 || n < 1 || n > 100000) {
		fprintf(stderr, "usage: holdconns --port PORT --connections N (1 to 100000)\n");
		return 2;
	}
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	int *fds = calloc((size_t)n, sizeof(int));
	if (!fds)
		return 1;
	struct sockaddr_in to = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 10};
	for (long i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 ||
		    setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
		    connect(fds[i], (struct sockaddr *)&to, sizeof(to)) < 0 ||
		    write(fds[i], "x\n", 2) != 2) {
			fprintf(stderr, "holdconns: connection %ld: %s\n", i + 1, strerror(errno));
			return 1;
		}
	}
	for (long i = 0; i < n; i++) {
		int r = read_line(fds[i]);
		if (r < 0) {
			fprintf(stderr, "holdconns: connection %ld not answered: %s\n", i + 1,
				strerror(-r));
			return 1;
		}
	}
	printf("holdconns: held %ld\n", n);
	fflush(stdout);
	int sig;
	sigwait(&stop, &sig);
	for (long i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	return 0;
}
