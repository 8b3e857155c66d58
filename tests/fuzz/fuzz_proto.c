/* SPDX-License-Identifier: MIT */
/* libFuzzer target for shim/proto.c. The first input byte is how many fds (0..253,
 * dups of /dev/null) go with the datagram; the rest is the datagram, sent raw over
 * a SOCK_SEQPACKET socketpair and received once by every role. Record payloads and
 * the raw input are walked with proto_conn_get. An fd leak aborts. */
#include "proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int sv[2] = {-1, -1};
static int devnull = -1;
static int baseline_fds;
static struct proto_msg msg;

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void setup_once(void)
{
	int bytes = 1 << 20;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	/* Room for the largest datagram (and MSG_TRUNC beyond it). */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		abort();
	baseline_fds = count_fds();
}

/* Reads every byte a record points at, so that ASan sees any overrun. */
static void walk_records(const uint8_t *buf, size_t len)
{
	size_t offset = 0;
	struct proto_conn c;
	volatile uint8_t sink = 0;
	while (proto_conn_get(buf, len, &offset, &c) == 0) {
		for (size_t i = 0; i < c.name_len; i++)
			sink ^= (uint8_t)c.name[i];
		for (size_t i = 0; i < c.tag_len; i++)
			sink ^= (uint8_t)c.tag[i];
		for (size_t i = 0; i < c.addr_len; i++)
			sink ^= ((const uint8_t *)c.addr)[i];
		for (size_t i = 0; i < c.state_len; i++)
			sink ^= ((const uint8_t *)c.state)[i];
		if (offset > len)
			abort();
	}
	(void)sink;
}

static int send_raw(const uint8_t *data, size_t size, size_t nfds)
{
	int fds[PROTO_MAX_FDS];
	for (size_t i = 0; i < nfds; i++)
		fds[i] = devnull;
	struct iovec iov = {.iov_base = (void *)data, .iov_len = size};
	return proto_send_raw(sv[0], &iov, 1, fds, nfds) < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (sv[0] < 0)
		setup_once();
	size_t nfds = data[0] % (PROTO_MAX_FDS + 1);
	data++;
	size--;
	for (int role = ROLE_CONTROL_SERVER; role <= ROLE_WORKER_CLIENT; role++) {
		if (send_raw(data, size, nfds) < 0)
			break; /* larger than the socket takes: nothing to receive */
		int r = proto_recv(sv[1], (enum proto_role)role, &msg);
		if (r == 1) {
			uint8_t type = msg.hdr.type;
			if (type == MSG_CONN || type == MSG_PARK)
				walk_records(msg.payload, msg.hdr.payload_bytes);
			if (type == MSG_ERROR || type == MSG_CTL_REPLY) {
				int32_t code;
				const char *text;
				if (proto_parse_status(&msg, &code, &text) == 0 &&
				    strlen(text) > size)
					abort();
			}
			if (msg.nfds > 0)
				close(proto_msg_take_fd(&msg, msg.nfds - 1));
			proto_msg_release(&msg);
		} else if (r > 1 || msg.nfds != 0) {
			abort();
		}
		/* One datagram in, one out: nothing may be left queued. */
		if (proto_recv(sv[1], ROLE_WORKER_CLIENT, &msg) != -EAGAIN)
			abort();
	}
	walk_records(data, size);
	if (count_fds() != baseline_fds)
		abort(); /* a received fd leaked */
	return 0;
}
