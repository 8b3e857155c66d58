/* SPDX-License-Identifier: MIT */
/* shim/proto.c under a kernel that says EINTR, EAGAIN, short writes and truncated
 * reads when we ask it to: sendmsg and recvmsg are wrapped at link time
 * (-Wl,--wrap=sendmsg,--wrap=recvmsg). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "fds.h"

ssize_t __real_sendmsg(int fd, const struct msghdr *mh, int flags);
ssize_t __real_recvmsg(int fd, struct msghdr *mh, int flags);

/* What the next calls return instead of doing the work. */
static struct {
	int send_eintr, send_errno, send_short;
	int recv_eintr, recv_errno, recv_set_flags;
	int send_calls, recv_calls;
} fake;

ssize_t __wrap_sendmsg(int fd, const struct msghdr *mh, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *mh, int flags)
{
	fake.send_calls++;
	if (fake.send_eintr > 0) {
		fake.send_eintr--;
		errno = EINTR;
		return -1;
	}
	if (fake.send_errno) {
		errno = fake.send_errno;
		return -1;
	}
	ssize_t n = __real_sendmsg(fd, mh, flags);
	return fake.send_short && n > 0 ? n - 1 : n;
}

ssize_t __wrap_recvmsg(int fd, struct msghdr *mh, int flags);
ssize_t __wrap_recvmsg(int fd, struct msghdr *mh, int flags)
{
	fake.recv_calls++;
	if (fake.recv_eintr > 0) {
		fake.recv_eintr--;
		errno = EINTR;
		return -1;
	}
	if (fake.recv_errno) {
		errno = fake.recv_errno;
		return -1;
	}
	ssize_t n = __real_recvmsg(fd, mh, flags);
	if (n >= 0)
		mh->msg_flags |= fake.recv_set_flags;
	return n;
}

static struct proto_msg msg;

struct fixture {
	int sv[2];
	int fds_start;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	memset(&fake, 0, sizeof(fake));
	f->fds_start = count_fds(0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sv) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->sv[0]);
	close(f->sv[1]);
	int leaked = count_fds(0) - f->fds_start;
	free(f);
	return leaked == 0 ? 0 : -1;
}

static int send_listener(struct fixture *f)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	int r = proto_send(f->sv[0], MSG_LISTENER, 0, 1, "http", 4, &p[0], 1);
	close(p[0]);
	close(p[1]);
	return r;
}

static void send_retries_eintr(void **state)
{
	struct fixture *f = *state;
	fake.send_eintr = 3;
	assert_int_equal(send_listener(f), 0);
	assert_int_equal(fake.send_calls, 4);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	assert_int_equal(msg.nfds, 1);
	proto_msg_release(&msg);
}

static void send_reports_eagain_and_sends_nothing(void **state)
{
	struct fixture *f = *state;
	fake.send_errno = EAGAIN;
	assert_int_equal(send_listener(f), -EAGAIN);
	fake.send_errno = EWOULDBLOCK;
	assert_int_equal(send_listener(f), -EAGAIN);
	fake.send_errno = 0;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EAGAIN);
}

static void short_write_is_an_error(void **state)
{
	struct fixture *f = *state;
	fake.send_short = 1;
	assert_int_equal(proto_send(f->sv[0], MSG_HELLO, 0, 0, "hi", 2, NULL, 0), -EIO);
	fake.send_short = 0;
	/* The fake only lied about the length: the datagram itself went whole. */
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
}

static void recv_retries_eintr(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(send_listener(f), 0);
	fake.recv_eintr = 2;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	assert_int_equal(fake.recv_calls, 3);
	assert_int_equal(msg.nfds, 1);
	proto_msg_release(&msg);
}

static void recv_reports_eagain_and_the_message_waits(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(send_listener(f), 0);
	fake.recv_errno = EWOULDBLOCK;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EAGAIN);
	fake.recv_errno = ECONNRESET;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -ECONNRESET);
	fake.recv_errno = 0;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	proto_msg_release(&msg);
}

static void truncated_read_closes_the_fds_that_came(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(send_listener(f), 0);
	assert_int_equal(send_listener(f), 0);
	fake.recv_set_flags = MSG_TRUNC;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EMSGSIZE);
	fake.recv_set_flags = MSG_CTRUNC;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EMSGSIZE);
	assert_int_equal(msg.nfds, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(send_retries_eintr),
	    T(send_reports_eagain_and_sends_nothing),
	    T(short_write_is_an_error),
	    T(recv_retries_eintr),
	    T(recv_reports_eagain_and_the_message_waits),
	    T(truncated_read_closes_the_fds_that_came),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
