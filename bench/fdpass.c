/* SPDX-License-Identifier: MIT */
/* fdpass: how many fds per second baton's wire protocol passes, beside raw
 * sendmsg/recvmsg on the same kind of socket, in the same run (bench/run.sh).
 *
 *   fdpass [--ms 400] [--rounds 5]
 *
 * For 1 and 253 fds per message, over an AF_UNIX SOCK_SEQPACKET socketpair, one thread
 * sends a message and receives it on the other end, then closes the received fds:
 *   proto: proto_send(MSG_CONN) with one connection record per fd (as batond sends),
 *          proto_recv(ROLE_WORKER_CLIENT) with its checks, proto_msg_release;
 *   raw:   sendmsg of the same bytes with one SCM_RIGHTS, recvmsg, close each fd.
 * Each case runs --ms per round; the rounds alternate proto and raw, and the median
 * round is reported. Output, one line per fds-per-message:
 *   fdpass: fds=N proto_fds_per_s=.. raw_fds_per_s=.. ratio=..
 */
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 15

static struct proto_msg msg;
static uint8_t payload[PROTO_MAX_PAYLOAD];
static size_t payload_len;
static uint8_t rbuf[PROTO_MAX_PAYLOAD + 64];
static int fds[PROTO_MAX_FDS];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The MSG_CONN payload batond would send for @n connections. */
static void build_payload(size_t n)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(40000),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		struct proto_conn c = {.name = "http",
				       .name_len = 4,
				       .tag = "http",
				       .tag_len = 4,
				       .addr = &sin,
				       .addr_len = sizeof(sin)};
		if (proto_conn_put(payload, sizeof(payload), &off, &c) < 0) {
			fprintf(stderr, "fdpass: proto_conn_put failed\n");
			exit(1);
		}
	}
	payload_len = off;
}

static int one_proto(int s[2], size_t n)
{
	int r = proto_send(s[0], MSG_CONN, 0, 0, payload, payload_len, fds, n);
	if (r < 0)
		return r;
	r = proto_recv(s[1], ROLE_WORKER_CLIENT, &msg);
	if (r != 1)
		return r < 0 ? r : -EPIPE;
	if (msg.nfds != n)
		return -EBADMSG;
	proto_msg_release(&msg);
	return 0;
}

static int one_raw(int s[2], size_t n)
{
	struct proto_hdr h = {.version = PROTO_VERSION,
			      .type = MSG_CONN,
			      .payload_bytes = (uint32_t)payload_len,
			      .nfds = (uint16_t)n};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
			       {.iov_base = payload, .iov_len = payload_len}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct msghdr mh = {.msg_iov = iov,
			    .msg_iovlen = 2,
			    .msg_control = control.buf,
			    .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
	memset(control.buf, 0, sizeof(control.buf));
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	if (sendmsg(s[0], &mh, MSG_NOSIGNAL) < 0)
		return -errno;

	struct iovec riov = {.iov_base = rbuf, .iov_len = sizeof(rbuf)};
	struct msghdr rh = {.msg_iov = &riov,
			    .msg_iovlen = 1,
			    .msg_control = control.buf,
			    .msg_controllen = sizeof(control.buf)};
	if (recvmsg(s[1], &rh, MSG_CMSG_CLOEXEC) < 0)
		return -errno;
	size_t got = 0;
	for (cm = CMSG_FIRSTHDR(&rh); cm; cm = CMSG_NXTHDR(&rh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int in[PROTO_MAX_FDS];
		memcpy(in, CMSG_DATA(cm), k * sizeof(int));
		for (size_t i = 0; i < k; i++)
			close(in[i]);
		got += k;
	}
	return got == n ? 0 : -EBADMSG;
}

/* fds per second over @ms of back-to-back messages. */
static double run_case(int (*one)(int[2], size_t), int s[2], size_t n, double ms)
{
	double t0 = now_s(), t;
	unsigned long msgs = 0;
	do {
		for (int i = 0; i < 64; i++) {
			int r = one(s, n);
			if (r < 0) {
				fprintf(stderr, "fdpass: %zu fds: %s\n", n, strerror(-r));
				exit(1);
			}
		}
		msgs += 64;
		t = now_s();
	} while (t - t0 < ms / 1000.0);
	return (double)msgs * (double)n / (t - t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double ms = 400;
	int rounds = 5;
	static const struct option longopts[] = {
	    {"ms", required_argument, NULL, 'm'}, {"rounds", required_argument, NULL, 'r'}, {0}};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'm')
			ms = atof(optarg);
		else if (c == 'r')
			rounds = atoi(optarg);
		else {
			fprintf(stderr, "Usage: fdpass [--ms 400] [--rounds 5]\n");
			return 2;
		}
	}
	if (rounds < 1 || rounds > MAX_ROUNDS || ms <= 0) {
		fprintf(stderr, "fdpass: --rounds 1..%d, --ms > 0\n", MAX_ROUNDS);
		return 2;
	}
	int base = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (base < 0) {
		perror("fdpass: socket");
		return 1;
	}
	for (int i = 0; i < PROTO_MAX_FDS; i++)
		if ((fds[i] = dup(base)) < 0) {
			perror("fdpass: dup");
			return 1;
		}
	int s[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s) < 0) {
		perror("fdpass: socketpair");
		return 1;
	}
	static const size_t sizes[] = {1, PROTO_MAX_FDS};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		double p[MAX_ROUNDS], r[MAX_ROUNDS];
		build_payload(n);
		run_case(one_proto, s, n, ms / 4); /* warm up */
		run_case(one_raw, s, n, ms / 4);
		for (int i = 0; i < rounds; i++) {
			if (i % 2 == 0) {
				p[i] = run_case(one_proto, s, n, ms);
				r[i] = run_case(one_raw, s, n, ms);
			} else {
				r[i] = run_case(one_raw, s, n, ms);
				p[i] = run_case(one_proto, s, n, ms);
			}
		}
		qsort(p, (size_t)rounds, sizeof(double), cmp_double);
		qsort(r, (size_t)rounds, sizeof(double), cmp_double);
		double pm = p[rounds / 2], rm = r[rounds / 2];
		printf("fdpass: fds=%zu proto_fds_per_s=%.0f raw_fds_per_s=%.0f ratio=%.3f\n", n,
		       pm, rm, pm / rm);
		fflush(stdout);
	}
	return 0;
}
