/* SPDX-License-Identifier: MIT */
/* Unit tests of libbaton (shim/baton.c) through its public API: the environment
 * contract, and a fake batond on the other end of a socketpair. Each test checks
 * /proc/self/fd before and after. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"
#include "proto.h"
#include "fds.h"

static struct proto_msg msg; /* the fake batond's receive buffer, main thread */

static void clear_env(void)
{
	const char *vars[] = {"LISTEN_FDS", "LISTEN_PID",    "LISTEN_FDNAMES",
			      "BATON_FD",   "NOTIFY_SOCKET", NULL};
	for (int i = 0; vars[i]; i++)
		unsetenv(vars[i]);
}

static void setenv_int(const char *name, long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%ld", v);
	setenv(name, buf, 1);
}

static int setup(void **state)
{
	static int fds_start;
	clear_env();
	fds_start = count_fds(0);
	*state = &fds_start;
	return 0;
}

static int teardown(void **state)
{
	baton_close();
	clear_env();
	return count_fds(0) == *(int *)*state ? 0 : -1; /* cmocka fails the test */
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;
	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev);
}

/* Puts @n sockets at fds 3, 4, ... as systemd would: not O_CLOEXEC. */
static void place_listeners(int n)
{
	for (int i = 0; i < n; i++) {
		if (fcntl(3 + i, F_GETFD) >= 0)
			fail_msg("fd %d is taken: clear_low_fds did not run", 3 + i);
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(s >= 0);
		if (s != 3 + i) {
			assert_int_equal(dup2(s, 3 + i), 3 + i);
			close(s);
		} else {
			assert_int_equal(fcntl(s, F_SETFD, 0), 0);
		}
	}
	setenv_int("LISTEN_PID", getpid());
	setenv_int("LISTEN_FDS", n);
}

/* A channel: returns batond's end, BATON_FD names the worker's. */
static int make_channel(void)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	setenv_int("BATON_FD", sv[1]);
	return sv[0];
}

/* baton_init() on a fresh channel, and the HELLO it sends read by "batond". */
static int init_with_channel(void)
{
	int batond = make_channel();
	assert_int_equal(baton_init(0), 0);
	assert_int_equal(proto_recv(batond, ROLE_WORKER_SERVER, &msg), 1);
	assert_int_equal(msg.hdr.type, MSG_HELLO);
	return batond;
}

/* ---- Environment ---------------------------------------------------------- */

static void without_environment_everything_says_not_available(void **state)
{
	struct baton_event ev;
	assert_int_equal(baton_listener("http"), -ENXIO);
	assert_int_equal(baton_fd(), -ENXIO);
	assert_int_equal(baton_next_event(&ev), -ENXIO);
	assert_int_equal(baton_conn_done(1), -ENXIO);
	assert_int_equal(baton_park(0, "http", NULL, NULL, 0), -ENXIO);
	assert_int_equal(baton_listeners(NULL, 0), 0);
	assert_int_equal(baton_notify("READY=1"), 0);
	assert_int_equal(baton_ready(), 0);
	assert_int_equal(baton_init(0), -EALREADY);
	baton_close();
	assert_int_equal(baton_init(0x80), -EINVAL);
	assert_int_equal(baton_listener(""), -EINVAL);
	assert_int_equal(baton_listener(NULL), -EINVAL);
}

static void listen_pid_of_another_process_means_the_fds_are_not_ours(void **state)
{
	setenv_int("LISTEN_PID", getpid() + 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "a:b", 1);
	assert_int_equal(baton_init(0), 0);
	assert_int_equal(baton_listeners(NULL, 0), 0);
	assert_int_equal(baton_listener("a"), -ENXIO);
}

static void listen_fds_must_be_a_plain_decimal_number(void **state)
{
	const char *bad[] = {"",   "x",	  "1x", " 1",	      "+1",
			     "-1", "0x1", "1 ", "2147483645", "99999999999999999999999",
			     NULL};
	setenv_int("LISTEN_PID", getpid());
	for (int i = 0; bad[i]; i++) {
		setenv("LISTEN_FDS", bad[i], 1);
		assert_int_equal(baton_init(0), -EINVAL);
	}
	setenv("LISTEN_FDS", "0", 1);
	setenv("LISTEN_PID", "12ab", 1);
	assert_int_equal(baton_init(0), -EINVAL);
	setenv("LISTEN_PID", "0", 1);
	assert_int_equal(baton_init(0), -EINVAL);
	setenv_int("LISTEN_PID", getpid());
	assert_int_equal(baton_init(0), 0); /* LISTEN_FDS=0: nothing inherited */
	assert_int_equal(baton_listener("http"), -ENXIO);
}

static void listen_fdnames_must_name_every_fd(void **state)
{
	place_listeners(2);
	const char *bad[] = {"a", "a:b:c", "", "a:b:", NULL};
	for (int i = 0; bad[i]; i++) {
		setenv("LISTEN_FDNAMES", bad[i], 1);
		assert_int_equal(baton_init(0), -EINVAL);
	}
	char longname[BATON_NAME_MAX + 4];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	longname[0] = ':';
	setenv("LISTEN_FDNAMES", longname, 1);
	assert_int_equal(baton_init(0), -EINVAL);
	setenv("LISTEN_FDNAMES", "a:", 1); /* an empty name is a name */
	assert_int_equal(baton_init(0), 0);
	assert_int_equal(baton_listener("a"), 3);
	assert_int_equal(baton_listener("b"), -ENOENT);
	close(3);
	/* baton_close() in teardown closes fd 4, never handed out. */
}

static void listen_fds_must_be_open(void **state)
{
	place_listeners(1);
	setenv("LISTEN_FDS", "3", 1);
	assert_int_equal(baton_init(0), -EBADF);
	close(3);
}

static void inherited_listeners_are_handed_out_once_by_name(void **state)
{
	place_listeners(3);
	setenv("LISTEN_FDNAMES", "http:admin:http", 1);
	assert_int_equal(baton_init(0), 0);
	for (int fd = 3; fd < 6; fd++)
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_string_equal(getenv("LISTEN_FDS"), "3"); /* kept without the flag */
	assert_int_equal(baton_listener("admin"), 4);
	assert_int_equal(baton_listener("admin"), -ENOENT);
	assert_int_equal(baton_listener("http"), 3);
	struct baton_listener ls[2];
	assert_int_equal(baton_listeners(NULL, 0), 1);
	assert_int_equal(baton_listeners(ls, 0), -ENOBUFS);
	assert_int_equal(baton_listeners(ls, 2), 1);
	assert_int_equal(ls[0].fd, 5);
	assert_string_equal(ls[0].name, "http");
	assert_int_equal(baton_listeners(ls, 2), 0);
	for (int fd = 3; fd < 6; fd++)
		close(fd);
}

static void listeners_without_names_are_unknown_and_closed_unless_taken(void **state)
{
	place_listeners(2);
	int before = count_fds(0);
	assert_int_equal(baton_init(BATON_INIT_UNSET_ENV), 0);
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_PID"));
	struct baton_listener ls[2];
	assert_int_equal(baton_listeners(NULL, 0), 2);
	assert_int_equal(baton_listener("unknown"), 3);
	baton_close(); /* closes 4, not 3: 3 is ours */
	assert_int_equal(count_fds(0), before - 1);
	assert_true(fcntl(3, F_GETFD) >= 0);
	close(3);
	assert_int_equal(baton_listeners(ls, 2), 0);
}

static void baton_fd_must_be_a_plain_decimal_number(void **state)
{
	const char *bad[] = {"", "x", "-1", "+3", "3 ", "99999999999", NULL};
	for (int i = 0; bad[i]; i++) {
		setenv("BATON_FD", bad[i], 1);
		assert_int_equal(baton_init(0), -EINVAL);
	}
}

static void baton_fd_must_be_open(void **state)
{
	int batond = make_channel();
	int worker = atoi(getenv("BATON_FD"));
	close(worker);
	assert_int_equal(baton_init(0), -EBADF);
	close(batond);
}

static void baton_fd_must_be_a_unix_seqpacket_socket(void **state)
{
	int p[2], sv[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	setenv_int("BATON_FD", p[0]);
	assert_int_equal(baton_init(0), -ENOTSOCK);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	setenv_int("BATON_FD", sv[0]);
	assert_int_equal(baton_init(0), -EPROTOTYPE);
	int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	setenv_int("BATON_FD", udp);
	assert_int_equal(baton_init(0), -EPROTOTYPE);
	close(udp);
	close(sv[0]);
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}

static void channel_says_hello_and_is_adopted_nonblocking_and_cloexec(void **state)
{
	int batond = make_channel();
	int worker = atoi(getenv("BATON_FD"));
	assert_int_equal(fcntl(worker, F_SETFD, 0), 0);
	assert_int_equal(baton_init(BATON_INIT_UNSET_ENV), 0);
	assert_null(getenv("BATON_FD"));
	assert_int_equal(baton_fd(), worker);
	assert_true(fcntl(worker, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(worker, F_GETFL) & O_NONBLOCK);
	assert_int_equal(proto_recv(batond, ROLE_WORKER_SERVER, &msg), 1);
	assert_int_equal(msg.hdr.type, MSG_HELLO);
	char want[64];
	snprintf(want, sizeof(want), "libbaton %s pid %d", BATON_VERSION, (int)getpid());
	assert_string_equal((char *)msg.payload, want);
	struct baton_event ev;
	assert_int_equal(baton_next_event(&ev), 0);
	/* batond's own HELLO is taken in silently. */
	assert_int_equal(proto_send(batond, MSG_HELLO, 0, 0, "batond", 6, NULL, 0), 0);
	assert_int_equal(baton_next_event(&ev), 0);
	close(batond);
}

/* ---- A fake batond answering MSG_LISTENER_GET on a thread ----------------- */

struct fake_batond {
	int sock;
	int listener;	/* what to answer with */
	int error;	/* answer MSG_ERROR with this errno instead */
	bool stale;	/* first answer a request that was never made */
	char asked[80]; /* the name asked for */
};

static void *fake_batond_main(void *arg)
{
	struct fake_batond *b = arg;
	struct proto_msg *m = malloc(sizeof(*m));
	for (;;) {
		struct pollfd pfd = {.fd = b->sock, .events = POLLIN};
		if (poll(&pfd, 1, 5000) != 1)
			break;
		if (proto_recv(b->sock, ROLE_WORKER_SERVER, m) != 1)
			break;
		if (m->hdr.type != MSG_LISTENER_GET)
			continue;
		snprintf(b->asked, sizeof(b->asked), "%.*s", 64, (char *)m->payload);
		uint32_t id = m->hdr.request_id;
		if (b->stale)
			proto_send(b->sock, MSG_LISTENER, 0, id + 1000, m->payload,
				   m->hdr.payload_bytes, &b->listener, 1);
		if (b->error)
			proto_send_status(b->sock, MSG_ERROR, id, b->error, "no such listener");
		else
			proto_send(b->sock, MSG_LISTENER, 0, id, m->payload, m->hdr.payload_bytes,
				   &b->listener, 1);
		break;
	}
	free(m);
	return NULL;
}

static int ask_fake_batond(struct fake_batond *b, const char *name)
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fake_batond_main, b), 0);
	int r = baton_listener(name);
	pthread_join(t, NULL);
	return r;
}

static void listener_by_name_comes_from_batond(void **state)
{
	struct fake_batond b = {.stale = true};
	b.sock = init_with_channel();
	b.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int fd = ask_fake_batond(&b, "http");
	assert_true(fd >= 0);
	assert_string_equal(b.asked, "http");
	assert_same_file(fd, b.listener);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	close(b.listener);
	close(b.sock);
}

static void inherited_listeners_come_first_then_batond(void **state)
{
	place_listeners(1);
	setenv("LISTEN_FDNAMES", "http", 1);
	struct fake_batond b = {0};
	b.sock = init_with_channel();
	b.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(baton_listener("http"), 3);
	int fd = ask_fake_batond(&b, "http"); /* the inherited one was handed out */
	assert_same_file(fd, b.listener);
	close(fd);
	close(3);
	close(b.listener);
	close(b.sock);
}

static void batond_refusal_is_returned_as_its_errno(void **state)
{
	struct fake_batond b = {.error = ENOENT};
	b.sock = init_with_channel();
	assert_int_equal(ask_fake_batond(&b, "nope"), -ENOENT);
	close(b.sock);
}

static void batond_gone_is_reported_not_waited_for(void **state)
{
	int batond = init_with_channel();
	close(batond);
	int r = baton_listener("http");
	assert_true(r == -EPIPE || r == -ECONNRESET);
	struct baton_event ev;
	assert_int_equal(baton_next_event(&ev), -ECONNRESET);
	assert_int_equal(baton_next_event(&ev), -ECONNRESET);
	assert_int_equal(baton_conn_done(1), -ECONNRESET);
}

/* ---- Events --------------------------------------------------------------- */

static void drain_is_one_event(void **state)
{
	int batond = init_with_channel();
	struct baton_event ev;
	assert_int_equal(baton_next_event(&ev), 0);
	assert_int_equal(proto_send(batond, MSG_DRAIN, 0, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(baton_next_event(&ev), 1);
	assert_int_equal(ev.type, BATON_EVENT_DRAIN);
	assert_int_equal(baton_next_event(&ev), 0);
	close(batond);
}

/* Sends one MSG_CONN of @n connections: socketpair ends, records "l<i>" with an
 * AF_INET address of port i; every third is adopted with a tag and state. Keeps
 * the other ends in @peers. */
static void send_conns(int batond, int n, int *peers)
{
	static uint8_t payload[PROTO_MAX_PAYLOAD];
	int fds[PROTO_MAX_FDS];
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		fds[i] = sv[0];
		peers[i] = sv[1];
		char name[16], tag[16];
		snprintf(name, sizeof(name), "l%d", i);
		snprintf(tag, sizeof(tag), "session-%d", i);
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)i)};
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		uint32_t st = (uint32_t)i;
		bool adopted = i % 3 == 0;
		struct proto_conn c = {
		    .flags = adopted ? CONN_ADOPTED : 0,
		    .name = name,
		    .name_len = (uint8_t)strlen(name),
		    .tag = tag,
		    .tag_len = adopted ? (uint8_t)strlen(tag) : 0,
		    .addr = &sin,
		    .addr_len = sizeof(sin),
		    .state = &st,
		    .state_len = adopted ? sizeof(st) : 0,
		};
		assert_int_equal(proto_conn_put(payload, sizeof(payload), &len, &c), 0);
	}
	assert_int_equal(proto_send(batond, MSG_CONN, 0, 0, payload, len, fds, (size_t)n), 0);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

static void a_conn_message_of_253_is_253_events_in_order(void **state)
{
	int batond = init_with_channel();
	int peers[PROTO_MAX_FDS];
	send_conns(batond, PROTO_MAX_FDS, peers);
	assert_int_equal(proto_send(batond, MSG_DRAIN, 0, 0, NULL, 0, NULL, 0), 0);
	for (int i = 0; i < PROTO_MAX_FDS; i++) {
		struct baton_event ev;
		char name[16];
		assert_int_equal(baton_next_event(&ev), 1);
		assert_int_equal(ev.type, BATON_EVENT_CONN);
		snprintf(name, sizeof(name), "l%d", i);
		assert_string_equal(ev.listener, name);
		assert_true(fcntl(ev.fd, F_GETFD) & FD_CLOEXEC);
		/* The fd is the other end of peers[i]: a byte goes through. */
		assert_int_equal(write(peers[i], "x", 1), 1);
		char c;
		assert_int_equal(read(ev.fd, &c, 1), 1);
		assert_int_equal(ev.peer_len, sizeof(struct sockaddr_in));
		struct sockaddr_in *sin = (struct sockaddr_in *)&ev.peer;
		assert_int_equal(ntohs(sin->sin_port), i);
		if (i % 3 == 0) {
			uint32_t st;
			assert_int_equal(ev.flags, BATON_CONN_ADOPTED);
			snprintf(name, sizeof(name), "session-%d", i);
			assert_string_equal(ev.tag, name);
			assert_int_equal(ev.state_len, 4);
			memcpy(&st, ev.state, 4);
			assert_int_equal(st, i);
		} else {
			assert_int_equal(ev.flags, 0);
			assert_string_equal(ev.tag, "");
			assert_null(ev.state);
		}
		close(ev.fd);
		close(peers[i]);
	}
	struct baton_event ev;
	assert_int_equal(baton_next_event(&ev), 1);
	assert_int_equal(ev.type, BATON_EVENT_DRAIN);
	assert_int_equal(baton_next_event(&ev), 0);
	close(batond);
}

static void queued_connections_are_closed_by_baton_close(void **state)
{
	int batond = init_with_channel();
	int peers[20];
	send_conns(batond, 10, peers);
	send_conns(batond, 10, peers + 10);
	struct baton_event ev;
	assert_int_equal(baton_next_event(&ev), 1);
	close(ev.fd);
	baton_close();
	/* Every end batond sent is closed: the peers see EOF. */
	for (int i = 0; i < 20; i++) {
		char c;
		assert_int_equal(read(peers[i], &c, 1), 0);
		close(peers[i]);
	}
	close(batond);
}

static void a_bad_conn_message_is_dropped_with_its_fds(void **state)
{
	int batond = init_with_channel();
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	int fds[2] = {p[0], p[0]};
	uint8_t payload[64] = {0};
	size_t len = 0;
	struct proto_conn c = {.name = "a", .name_len = 1};
	assert_int_equal(proto_conn_put(payload, sizeof(payload), &len, &c), 0);
	/* Two fds, one record. */
	assert_int_equal(proto_send(batond, MSG_CONN, 0, 0, payload, len, fds, 2), 0);
	/* One fd, one record and trailing bytes. */
	assert_int_equal(proto_send(batond, MSG_CONN, 0, 0, payload, len + 8, fds, 1), 0);
	/* One fd, a record longer than the payload. */
	payload[2] = 40;
	assert_int_equal(proto_send(batond, MSG_CONN, 0, 0, payload, len, fds, 1), 0);
	/* Not a type batond sends. */
	assert_int_equal(proto_send(batond, MSG_PARK, 0, 0, payload, len, fds, 1), 0);
	close(p[0]);
	struct baton_event ev;
	assert_int_equal(baton_next_event(&ev), -EBADMSG);
	assert_int_equal(baton_next_event(&ev), -EBADMSG);
	assert_int_equal(baton_next_event(&ev), -EBADMSG);
	assert_int_equal(baton_next_event(&ev), -EPROTO);
	assert_int_equal(baton_next_event(&ev), 0);
	/* Every copy of the pipe's read end is gone. */
	assert_int_equal(write(p[1], "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(p[1]);
	close(batond);
}

static void conn_done_counts_reach_batond_even_through_a_full_channel(void **state)
{
	int batond = init_with_channel();
	unsigned calls = 0;
	/* Far more than the socket holds: the surplus is coalesced, not lost. */
	for (; calls < 5000; calls++)
		assert_int_equal(baton_conn_done(1), 0);
	uint64_t total = 0;
	for (int round = 0; round < 2; round++) {
		while (proto_recv(batond, ROLE_WORKER_SERVER, &msg) == 1) {
			uint32_t n;
			assert_int_equal(msg.hdr.type, MSG_CONN_DONE);
			memcpy(&n, msg.payload, 4);
			total += n;
		}
		assert_int_equal(baton_conn_done(0), 0); /* flushes what was kept */
	}
	assert_int_equal(total, calls);
	close(batond);
}

/* Sums the MSG_CONN_DONE counts waiting on batond's end. */
static uint64_t done_received(int batond)
{
	uint64_t total = 0;
	while (proto_recv(batond, ROLE_WORKER_SERVER, &msg) == 1) {
		uint32_t n;
		assert_int_equal(msg.hdr.type, MSG_CONN_DONE);
		memcpy(&n, msg.payload, 4);
		total += n;
	}
	return total;
}

static void conn_done_is_batched_while_busy_and_sent_at_once_when_idle(void **state)
{
	int batond = init_with_channel();
	int peers[3];
	send_conns(batond, 3, peers);
	struct baton_event ev[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(baton_next_event(&ev[i]), 1);
	/* Two of three finished, quickly: nothing sent yet. */
	assert_int_equal(baton_conn_done(1), 0);
	assert_int_equal(baton_conn_done(1), 0);
	assert_int_equal(done_received(batond), 0);
	/* The last one: the worker is idle, batond hears of all three at once. */
	assert_int_equal(baton_conn_done(1), 0);
	assert_int_equal(done_received(batond), 3);
	for (int i = 0; i < 3; i++) {
		close(ev[i].fd);
		close(peers[i]);
	}
	close(batond);
}

/* batond's side of MSG_DONE_COUNTER: a sealed memfd, mapped. */
static volatile uint64_t *send_counter(int batond)
{
	int fd = memfd_create("baton-done", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, PROTO_DONE_COUNTER_BYTES), 0);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	void *p = mmap(NULL, PROTO_DONE_COUNTER_BYTES, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(proto_send(batond, MSG_DONE_COUNTER, 0, 0, NULL, 0, &fd, 1), 0);
	close(fd);
	return p;
}

static void conn_done_goes_to_the_shared_counter_once_batond_gives_one(void **state)
{
	int batond = make_channel();
	assert_int_equal(baton_init(0), 0);
	assert_int_equal(proto_recv(batond, ROLE_WORKER_SERVER, &msg), 1);
	assert_int_equal(msg.hdr.type, MSG_HELLO);
	assert_true(msg.hdr.flags & HELLO_DONE_COUNTER); /* it asks for one */
	int peers[3];
	send_conns(batond, 3, peers);
	struct baton_event ev[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(baton_next_event(&ev[i]), 1);
	/* Finished before the counter came, busy: kept for a MSG_CONN_DONE. */
	assert_int_equal(baton_conn_done(1), 0);
	assert_int_equal(done_received(batond), 0);
	volatile uint64_t *counter = send_counter(batond);
	struct baton_event none;
	assert_int_equal(baton_next_event(&none), 0);
	assert_int_equal(*counter, 1); /* what was kept went there */
	assert_int_equal(baton_conn_done(1), 0);
	assert_int_equal(baton_conn_done(1), 0); /* idle: it would have been sent now */
	assert_int_equal(*counter, 3);
	assert_int_equal(done_received(batond), 0); /* and no message at all */
	for (int i = 0; i < 3; i++) {
		close(ev[i].fd);
		close(peers[i]);
	}
	/* The page's fd was closed once mapped (the teardown counts fds). */
	munmap((void *)counter, PROTO_DONE_COUNTER_BYTES);
	close(batond);
}

/* A fake batond that reads what is parked while baton_park_many() waits for
 * it to be read: @want messages into msgs[]. */
struct park_reader {
	int fd;
	size_t want, got;
	struct proto_msg msgs[4];
	pthread_t thread;
};

static void *park_reader_main(void *arg)
{
	struct park_reader *pr = arg;
	time_t deadline = time(NULL) + 10;
	while (pr->got < pr->want && time(NULL) < deadline) {
		struct pollfd pfd = {.fd = pr->fd, .events = POLLIN};
		if (poll(&pfd, 1, 100) > 0 &&
		    proto_recv(pr->fd, ROLE_WORKER_SERVER, &pr->msgs[pr->got]) == 1)
			pr->got++;
	}
	return NULL;
}

static struct park_reader *park_reader_start(int fd, size_t want)
{
	static struct park_reader pr;
	pr.fd = fd;
	pr.want = want;
	pr.got = 0;
	assert_int_equal(pthread_create(&pr.thread, NULL, park_reader_main, &pr), 0);
	return &pr;
}

static void park_reader_join(struct park_reader *pr)
{
	pthread_join(pr->thread, NULL);
	assert_int_equal(pr->got, pr->want);
}

static void park_hands_the_connection_and_its_state_to_batond(void **state)
{
	int batond = init_with_channel();
	int lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lst, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lst, 1), 0);
	assert_int_equal(getsockname(lst, (struct sockaddr *)&sin, &sl), 0);
	int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(client, (struct sockaddr *)&sin, sizeof(sin)), 0);
	int conn = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
	assert_true(conn >= 0);
	struct sockaddr_in client_addr;
	sl = sizeof(client_addr);
	assert_int_equal(getsockname(client, (struct sockaddr *)&client_addr, &sl), 0);

	char toolong[BATON_NAME_MAX + 2];
	memset(toolong, 'x', sizeof(toolong) - 1);
	toolong[sizeof(toolong) - 1] = 0;
	assert_int_equal(baton_park(conn, toolong, NULL, NULL, 0), -EINVAL);
	assert_int_equal(baton_park(conn, NULL, NULL, NULL, 0), -EINVAL);
	assert_int_equal(baton_park(conn, "", NULL, NULL, 0), -EINVAL);
	assert_int_equal(baton_park(conn, "ws", NULL, NULL, 1), -EINVAL);
	static const char big[BATON_STATE_MAX + 1];
	assert_int_equal(baton_park(conn, "ws", NULL, big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(baton_park(-1, NULL, NULL, NULL, 0), -EBADF);
	int before = count_fds(0);
	struct park_reader *pr = park_reader_start(batond, 1);
	assert_int_equal(baton_park(conn, "ws", "user-42", "cursor=7", 8), 0);
	park_reader_join(pr);
	/* Closed on success; "batond" received its copy (maybe under its number). */
	assert_int_equal(count_fds(0), before);
	struct proto_msg *m = &pr->msgs[0];
	assert_int_equal(m->hdr.type, MSG_PARK);
	struct proto_conn c;
	size_t off = 0;
	assert_int_equal(proto_conn_get(m->payload, m->hdr.payload_bytes, &off, &c), 0);
	assert_memory_equal(c.name, "ws", 2);
	assert_memory_equal(c.tag, "user-42", 7);
	assert_int_equal(c.state_len, 8);
	assert_memory_equal(c.state, "cursor=7", 8);
	assert_int_equal(c.addr_len, sizeof(struct sockaddr_in));
	struct sockaddr_in peer;
	memcpy(&peer, c.addr, sizeof(peer));
	assert_int_equal(peer.sin_port, client_addr.sin_port);
	/* The parked fd is the live connection. */
	assert_int_equal(write(client, "y", 1), 1);
	char ch;
	assert_int_equal(read(m->fds[0], &ch, 1), 1);
	proto_msg_release(m);
	close(client);
	close(lst);
	close(batond);
}

/* Checks one MSG_PARK: its records against conns @first.. (state "c<i>", the
 * peer given for even i), each fd the live end of @peers[i]. Returns how many
 * it carried, its fds closed. */
static size_t check_parks(struct proto_msg *m, size_t first, const int *peers)
{
	assert_int_equal(m->hdr.type, MSG_PARK);
	assert_int_equal(proto_conns_check(m->payload, m->hdr.payload_bytes, m->nfds), 0);
	size_t off = 0;
	for (size_t k = 0; k < m->nfds; k++) {
		size_t i = first + k;
		struct proto_conn c;
		char want[16];
		assert_int_equal(proto_conn_get(m->payload, m->hdr.payload_bytes, &off, &c), 0);
		snprintf(want, sizeof(want), "c%zu", i);
		assert_int_equal(c.state_len, strlen(want));
		assert_memory_equal(c.state, want, c.state_len);
		assert_memory_equal(c.name, "ws", 2);
		if (i % 2 == 0) {
			struct sockaddr_in sin;
			assert_int_equal(c.addr_len, sizeof(sin));
			memcpy(&sin, c.addr, sizeof(sin));
			assert_int_equal(ntohs(sin.sin_port), 1000 + i);
		}
		char ch;
		assert_int_equal(write(peers[i], "z", 1), 1);
		assert_int_equal(read(m->fds[k], &ch, 1), 1);
	}
	size_t n = m->nfds;
	proto_msg_release(m);
	return n;
}

#define PARK_MANY 600

static void park_many_sends_up_to_253_per_message_once_batond_says_it_takes_them(void **state)
{
	int batond = init_with_channel();
	static int conn[PARK_MANY], peers[PARK_MANY];
	static char states[PARK_MANY][16];
	static struct sockaddr_in addrs[PARK_MANY];
	static struct baton_park_conn conns[PARK_MANY];
	for (size_t i = 0; i < PARK_MANY; i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		conn[i] = sv[0];
		peers[i] = sv[1];
		snprintf(states[i], sizeof(states[i]), "c%zu", i);
		addrs[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(1000 + i)};
		conns[i] = (struct baton_park_conn){.fd = conn[i],
						    .listener = "ws",
						    .state = states[i],
						    .state_len = strlen(states[i])};
		if (i % 2 == 0) {
			conns[i].peer = (const struct sockaddr *)&addrs[i];
			conns[i].peer_len = sizeof(addrs[i]);
		}
	}
	/* A bad entry anywhere: nothing is parked. */
	conns[5].state_len = BATON_STATE_MAX + 1;
	assert_int_equal(baton_park_many(conns, 8), -EMSGSIZE);
	conns[5].state_len = strlen(states[5]);
	conns[7].peer_len = sizeof(struct sockaddr_storage) + 1;
	assert_int_equal(baton_park_many(conns, 8), -EINVAL);
	conns[7].peer_len = 0;
	assert_int_equal(fcntl(conn[0], F_GETFD) >= 0, 1);
	assert_int_equal(proto_recv(batond, ROLE_WORKER_SERVER, &msg), -EAGAIN);

	/* batond has not said it takes batches: one connection per PARK. */
	int before = count_fds(0);
	struct park_reader *pr = park_reader_start(batond, 3);
	assert_int_equal(baton_park_many(conns, 3), 3);
	/* It returns once batond has read them. */
	assert_int_equal(pr->got, 3);
	park_reader_join(pr);
	assert_int_equal(count_fds(0), before); /* 3 closed here, 3 received by "batond" */
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(check_parks(&pr->msgs[i], i, peers), 1);
	assert_int_equal(count_fds(0), before - 3);

	/* Its HELLO says it does: the other 597 go in 253 + 253 + 91. */
	assert_int_equal(proto_send(batond, MSG_HELLO, HELLO_PARK_MANY, 0, "batond", 6, NULL, 0),
			 0);
	pr = park_reader_start(batond, 3);
	assert_int_equal(baton_park_many(conns + 3, PARK_MANY - 3), PARK_MANY - 3);
	park_reader_join(pr);
	assert_int_equal(check_parks(&pr->msgs[0], 3, peers), 253);
	assert_int_equal(check_parks(&pr->msgs[1], 256, peers), 253);
	assert_int_equal(check_parks(&pr->msgs[2], 509, peers), 91);
	assert_int_equal(count_fds(0), before - PARK_MANY);
	assert_int_equal(proto_recv(batond, ROLE_WORKER_SERVER, &msg), -EAGAIN);
	for (size_t i = 0; i < PARK_MANY; i++)
		close(peers[i]);
	close(batond);
}

/* ---- Notify --------------------------------------------------------------- */

static void notify_sends_one_datagram_to_a_path_or_abstract_socket(void **state)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/baton-test-notify-%d", (int)getpid());
	unlink(path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	char buf[128];
	assert_int_equal(baton_ready(), 1);
	ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "READY=1", 7);
	assert_int_equal(baton_status("serving %d", 5), 1);
	n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	assert_int_equal(n, 16);
	assert_memory_equal(buf, "STATUS=serving 5", 16);
	close(s);
	unlink(path);

	/* Abstract: "@name" is "\0name". */
	char abstract[64];
	snprintf(abstract, sizeof(abstract), "@baton-test-notify-%d", (int)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, abstract + 1, strlen(abstract) - 1);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(
	    bind(s, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(abstract))),
	    0);
	setenv("NOTIFY_SOCKET", abstract, 1);
	assert_int_equal(baton_notify("STOPPING=1"), 1);
	n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	assert_int_equal(n, 10);
	close(s);

	assert_int_equal(baton_notify(""), -EINVAL);
	assert_int_equal(baton_notify(NULL), -EINVAL);
	setenv("NOTIFY_SOCKET", "vsock:2:9", 1);
	assert_int_equal(baton_ready(), -EAFNOSUPPORT);
	setenv("NOTIFY_SOCKET", "/nonexistent/baton/notify", 1);
	assert_int_equal(baton_ready(), -ENOENT);
	char longpath[200];
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	setenv("NOTIFY_SOCKET", longpath, 1);
	assert_int_equal(baton_ready(), -EINVAL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* The LISTEN_FDS tests need fds 3.. free, and a test runner may leave its own
 * there (ctest passes its open log as fd 3): move them out of the way, once,
 * before any test counts fds. */
static void clear_low_fds(void)
{
	for (int fd = 3; fd < 3 + 16; fd++) {
		if (fcntl(fd, F_GETFD) < 0)
			continue;
		if (fcntl(fd, F_DUPFD_CLOEXEC, 256) < 0) {
			perror("test_shim: moving an inherited fd");
			exit(1);
		}
		close(fd);
	}
}

int main(void)
{
	clear_low_fds();
	const struct CMUnitTest tests[] = {
	    T(without_environment_everything_says_not_available),
	    T(listen_pid_of_another_process_means_the_fds_are_not_ours),
	    T(listen_fds_must_be_a_plain_decimal_number),
	    T(listen_fdnames_must_name_every_fd),
	    T(listen_fds_must_be_open),
	    T(inherited_listeners_are_handed_out_once_by_name),
	    T(listeners_without_names_are_unknown_and_closed_unless_taken),
	    T(baton_fd_must_be_a_plain_decimal_number),
	    T(baton_fd_must_be_open),
	    T(baton_fd_must_be_a_unix_seqpacket_socket),
	    T(channel_says_hello_and_is_adopted_nonblocking_and_cloexec),
	    T(listener_by_name_comes_from_batond),
	    T(inherited_listeners_come_first_then_batond),
	    T(batond_refusal_is_returned_as_its_errno),
	    T(batond_gone_is_reported_not_waited_for),
	    T(drain_is_one_event),
	    T(a_conn_message_of_253_is_253_events_in_order),
	    T(queued_connections_are_closed_by_baton_close),
	    T(a_bad_conn_message_is_dropped_with_its_fds),
	    T(conn_done_counts_reach_batond_even_through_a_full_channel),
	    T(conn_done_is_batched_while_busy_and_sent_at_once_when_idle),
	    T(conn_done_goes_to_the_shared_counter_once_batond_gives_one),
	    T(park_hands_the_connection_and_its_state_to_batond),
	    T(park_many_sends_up_to_253_per_message_once_batond_says_it_takes_them),
	    T(notify_sends_one_datagram_to_a_path_or_abstract_socket),
	};
	signal(SIGPIPE, SIG_IGN); /* tests write to pipes whose readers are gone */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
