/* SPDX-License-Identifier: MIT */
/* A libbaton worker for tests: asks for each listener named on the command line,
 * writes what it got to OUTFILE ("NAME fd N port P" or "NAME error MESSAGE"),
 * says READY=1 and waits for SIGTERM. Usage: askfd [--bad-first] OUTFILE NAME...
 * With --bad-first it first sends batond two bad messages on BATON_FD, one with a
 * pipe's write end attached, and writes "bad-messages: fd closed" once batond has
 * closed that fd (the pipe reads EOF) or "bad-messages: fd kept" after 5 s. */
#include <baton.h>

#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *send_bad_messages(void)
{
	const char *env = getenv("BATON_FD");
	int channel = env ? atoi(env) : -1;
	int p[2];
	if (channel < 0 || pipe2(p, O_CLOEXEC) < 0)
		return "not sent";
	uint32_t one = 1;
	/* MSG_CONN_DONE takes no fd. */
	struct proto_hdr h = {.version = PROTO_VERSION, .type = MSG_CONN_DONE,
			      .payload_bytes = sizeof(one), .nfds = 1};
	struct iovec iov[2] = {{&h, sizeof(h)}, {&one, sizeof(one)}};
	ssize_t r1 = proto_send_raw(channel, iov, 2, &p[1], 1);
	close(p[1]);
	/* A type nobody knows. */
	struct proto_hdr unknown = {.version = PROTO_VERSION, .type = 200};
	struct iovec iov2 = {&unknown, sizeof(unknown)};
	ssize_t r2 = proto_send_raw(channel, &iov2, 1, NULL, 0);
	if (r1 < 0 || r2 < 0) {
		close(p[0]);
		return "not sent";
	}
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	char c;
	bool closed = poll(&pfd, 1, 5000) == 1 && read(p[0], &c, 1) == 0;
	close(p[0]);
	return closed ? "fd closed" : "fd kept";
}

int main(int argc, char **argv)
{
	bool bad_first = argc > 1 && strcmp(argv[1], "--bad-first") == 0;
	if (bad_first) {
		argv++;
		argc--;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: askfd [--bad-first] OUTFILE NAME...\n");
		return 2;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return 1;
	if (bad_first)
		fprintf(f, "bad-messages: %s\n", send_bad_messages());
	for (int i = 2; i < argc; i++) {
		int fd = baton_listener(argv[i]);
		if (fd < 0) {
			fprintf(f, "%s error %s\n", argv[i], strerror(-fd));
			continue;
		}
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		getsockname(fd, (struct sockaddr *)&sa, &len);
		fprintf(f, "%s fd %d port %d\n", argv[i], fd, ntohs(sa.sin_port));
	}
	fclose(f);
	rename(tmp, argv[1]);
	baton_ready();
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sig;
	sigwait(&mask, &sig);
	baton_close();
	return 0;
}
