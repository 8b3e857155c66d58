/* SPDX-License-Identifier: MIT */
/* liar: a dispatch worker that lies in its shared completion counter (dispatch
 * tests). It speaks the protocol itself: HELLO with HELLO_DONE_COUNTER, then it
 * maps the page of MSG_DONE_COUNTER and tries to shrink and to grow it (batond
 * seals it: batond must never fault on it), writing how that went to OUTFILE
 * ("shrink: MESSAGE" and "grow: MESSAGE"). It answers each connection of a
 * MSG_CONN with a short HTTP response and then writes, in turn, UINT64_MAX and 0
 * to the counter: far more finished than batond ever sent, then fewer than
 * before. Says READY=1 and exits on DRAIN or when batond closes the channel.
 * Usage: liar OUTFILE */
#include <baton.h>

#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static struct proto_msg msg;

static void answer(int fd)
{
	static const char response[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
				       "Connection: close\r\n\r\nliar\n";
	char buf[2048];
	size_t got = 0;
	ssize_t n;
	/* The request head, however it arrives. */
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		got += (size_t)n;
		buf[got] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	if (write(fd, response, sizeof(response) - 1) < 0)
		perror("liar: write");
	close(fd);
}

int main(int argc, char **argv)
{
	const char *env = getenv("BATON_FD");
	if (argc != 2 || !env) {
		fprintf(stderr, "usage: liar OUTFILE (under batond)\n");
		return 2;
	}
	int channel = atoi(env);
	static const char hello[] = "liar";
	if (proto_send(channel, MSG_HELLO, HELLO_DONE_COUNTER, 0, hello, sizeof(hello) - 1, NULL,
		       0) < 0)
		return 1;
	baton_ready();
	volatile uint64_t *counter = NULL;
	uint64_t lies = 0;
	for (;;) {
		int r = proto_recv(channel, ROLE_WORKER_CLIENT, &msg);
		if (r == -EAGAIN) {
			struct pollfd pfd = {.fd = channel, .events = POLLIN};
			poll(&pfd, 1, -1);
			continue;
		}
		if (r <= 0 || msg.hdr.type == MSG_DRAIN)
			break;
		if (msg.hdr.type == MSG_DONE_COUNTER && !counter) {
			int fd = proto_msg_take_fd(&msg, 0);
			void *p =
			    mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			FILE *f = fopen(argv[1], "we");
			if (p == MAP_FAILED || !f)
				return 1;
			counter = p;
			fprintf(f, "shrink: %s\n", ftruncate(fd, 0) < 0 ? strerror(errno) : "done");
			fprintf(f, "grow: %s\n",
				ftruncate(fd, 1 << 20) < 0 ? strerror(errno) : "done");
			fclose(f);
			close(fd);
		} else if (msg.hdr.type == MSG_CONN) {
			for (size_t i = 0; i < msg.nfds; i++) {
				answer(proto_msg_take_fd(&msg, i));
				if (counter)
					*counter = lies++ % 2 ? 0 : UINT64_MAX;
			}
		}
		proto_msg_release(&msg);
	}
	proto_msg_release(&msg);
	return 0;
}
