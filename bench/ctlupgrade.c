/* SPDX-License-Identifier: MIT */
/* ctlupgrade: batond's own part of an upgrade, without batonctl's start-up (make
 * bench). Connected to batond's control socket before it begins, it sends K
 * CTL_UPGRADE requests, one every --spacing-ms, each after the answer to the
 * one before, and appends a line per upgrade to --log:
 *   i sent_us reply_us status
 * (CLOCK_MONOTONIC: the request sent, the whole answer received; status: the
 * reply's code, 0 for done). bench/run.sh pairs each with the new generation's
 * main() and READY=1 from examples/hello's --startup-log.
 *
 *   ctlupgrade --socket PATH --app NAME --upgrades K --spacing-ms S --log FILE */
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct proto_msg msg;

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The next message, waiting up to 30 s. */
static int receive(int fd)
{
	for (;;) {
		int r = proto_recv(fd, ROLE_CONTROL_CLIENT, &msg);
		if (r != -EAGAIN)
			return r;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 30000) <= 0)
			return -ETIMEDOUT;
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"app", required_argument, NULL, 'a'},
	    {"upgrades", required_argument, NULL, 'n'},
	    {"spacing-ms", required_argument, NULL, 'i'},
	    {"log", required_argument, NULL, 'l'},
	    {0},
	};
	const char *path = NULL, *app = NULL, *log_path = NULL;
	long n = 0, spacing_ms = 0;
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 's':
			path = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'n':
			n = atol(optarg);
			break;
		case 'i':
			spacing_ms = atol(optarg);
			break;
		case 'l':
			log_path = optarg;
			break;
		default:
			return 2;
		}
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!path || !app || !log_path || n < 1 || spacing_ms < 0 ||
	    strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: ctlupgrade --socket PATH --app NAME --upgrades K "
				"--spacing-ms S --log FILE\n");
		return 2;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "ctlupgrade: %s: %s\n", path, strerror(errno));
		return 1;
	}
	FILE *log = fopen(log_path, "ae");
	if (!log || proto_send(fd, MSG_HELLO, 0, 0, "ctlupgrade", 10, NULL, 0) < 0 ||
	    receive(fd) != 1 || msg.hdr.type != MSG_HELLO) {
		fprintf(stderr, "ctlupgrade: no HELLO from batond\n");
		return 1;
	}
	int failed = 0;
	for (long i = 1; i <= n; i++) {
		usleep((useconds_t)spacing_ms * 1000);
		long long sent = now_us();
		if (proto_send(fd, MSG_CTL_UPGRADE, CTL_FRAMES, (uint32_t)i, app, strlen(app), NULL,
			       0) < 0)
			return 1;
		int32_t code = -1;
		const char *text = "";
		do {
			if (receive(fd) != 1 || proto_parse_status(&msg, &code, &text) < 0) {
				fprintf(stderr, "ctlupgrade: upgrade %ld: no answer\n", i);
				return 1;
			}
		} while (msg.hdr.flags & CTL_MORE);
		long long reply = now_us();
		fprintf(log, "%ld %lld %lld %d\n", i, sent, reply, (int)code);
		fflush(log);
		failed += code != 0;
		if (code != 0)
			fprintf(stderr, "ctlupgrade: upgrade %ld: %s\n", i, text);
	}
	return failed ? 1 : 0;
}
