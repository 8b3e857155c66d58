/* SPDX-License-Identifier: MIT */
/* Unit tests of shim/proto.c: every message type round trips over a real
 * SOCK_SEQPACKET socketpair, and every malformed datagram is refused with its fds
 * closed. Each test checks /proc/self/fd before and after. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto.h"
#include "fds.h"

static struct proto_msg msg; /* 66 KiB: not on the stack */

struct fixture {
	int sv[2];     /* [0] sends, [1] receives */
	int fds_start; /* /proc/self/fd count before the socketpair */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->fds_start = count_fds(0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sv) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 2; i++)
		if (f->sv[i] >= 0)
			close(f->sv[i]);
	int leaked = count_fds(0) - f->fds_start;
	free(f);
	return leaked == 0 ? 0 : -1; /* cmocka fails the test */
}

/* @n fds, each a dup of one pipe end, O_CLOEXEC. */
static void make_fds(int *fds, size_t n, int *pipe_out)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	for (size_t i = 0; i < n; i++) {
		fds[i] = fcntl(p[0], F_DUPFD_CLOEXEC, 0);
		assert_true(fds[i] >= 0);
	}
	close(p[0]);
	*pipe_out = p[1];
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;
	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev);
}

/* Arbitrary bytes and fds, bypassing proto_send's checks. */
static void raw_send(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	assert_int_equal(proto_send_raw(sock, &iov, 1, fds, nfds), (ssize_t)len);
}

/* A header followed by @payload_sent bytes of payload, sent raw. */
static void raw_send_msg(int sock, struct proto_hdr hdr, size_t payload_sent, const int *fds,
			 size_t nfds)
{
	static uint8_t buf[sizeof(struct proto_hdr) + PROTO_MAX_PAYLOAD + 16];
	memcpy(buf, &hdr, sizeof(hdr));
	memset(buf + sizeof(hdr), 'x', payload_sent);
	raw_send(sock, buf, sizeof(hdr) + payload_sent, fds, nfds);
}

static struct proto_hdr hdr_of(uint8_t type, uint32_t payload_bytes, uint16_t nfds)
{
	return (struct proto_hdr){
	    .version = PROTO_VERSION,
	    .type = type,
	    .payload_bytes = payload_bytes,
	    .nfds = nfds,
	};
}

/* Sends nothing more: the next receive must see the message we send now, proving
 * a refused datagram left the channel usable. */
static void assert_channel_still_works(struct fixture *f, enum proto_role role)
{
	assert_int_equal(proto_send(f->sv[0], MSG_HELLO, 0, 7, "ok", 2, NULL, 0), 0);
	assert_int_equal(proto_recv(f->sv[1], role, &msg), 1);
	assert_int_equal(msg.hdr.type, MSG_HELLO);
	assert_int_equal(msg.hdr.request_id, 7);
}

/* ---- Round trips ---------------------------------------------------------- */

struct round_trip {
	uint8_t type;
	enum proto_role role;
	uint16_t flags;
	const char *payload;
	size_t payload_bytes;
	size_t nfds;
};

#define S(literal) literal, sizeof(literal) - 1

static void every_message_type_round_trips(void **state)
{
	struct fixture *f = *state;
	uint8_t conn_rec[128];
	size_t conn_len = 0;
	struct proto_conn c = {.name = "http", .name_len = 4, .state = "st", .state_len = 2};
	assert_int_equal(proto_conn_put(conn_rec, sizeof(conn_rec), &conn_len, &c), 0);
	const struct round_trip cases[] = {
	    {MSG_HELLO, ROLE_WORKER_CLIENT, 0, S("batond 0.1.0"), 0},
	    {MSG_HELLO, ROLE_WORKER_SERVER, 0, S("libbaton 0.1.0 pid 1"), 0},
	    {MSG_HELLO, ROLE_CONTROL_SERVER, 0, S(""), 0},
	    {MSG_ERROR, ROLE_WORKER_CLIENT, 0, S("\x02\0\0\0no such listener"), 0},
	    {MSG_ERROR, ROLE_CONTROL_CLIENT, 0, S("\x16\0\0\0"), 0},
	    {MSG_CTL_STATUS, ROLE_CONTROL_SERVER, CTL_JSON, S(""), 0},
	    {MSG_CTL_UPGRADE, ROLE_CONTROL_SERVER, 0, S("web"), 0},
	    {MSG_CTL_STOP, ROLE_CONTROL_SERVER, 0, S(""), 0},
	    {MSG_CTL_REPLY, ROLE_CONTROL_CLIENT, 0, S("\0\0\0\0fine"), 0},
	    {MSG_LISTENER_GET, ROLE_WORKER_SERVER, 0, S("http"), 0},
	    {MSG_LISTENER, ROLE_WORKER_CLIENT, 0, S("http"), 1},
	    {MSG_DRAIN, ROLE_WORKER_CLIENT, 0, S(""), 0},
	    {MSG_CONN, ROLE_WORKER_CLIENT, 0, (const char *)conn_rec, conn_len, 1},
	    {MSG_CONN_DONE, ROLE_WORKER_SERVER, 0, S("\x03\0\0\0"), 0},
	    {MSG_PARK, ROLE_WORKER_SERVER, 0, (const char *)conn_rec, conn_len, 1},
	    {MSG_HELLO, ROLE_WORKER_SERVER, HELLO_DONE_COUNTER, S("libbaton 0.2.0 pid 1"), 0},
	    {MSG_DONE_COUNTER, ROLE_WORKER_CLIENT, 0, S(""), 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct round_trip *t = &cases[i];
		int fds[1], keep;
		make_fds(fds, t->nfds, &keep);
		assert_int_equal(proto_send(f->sv[0], t->type, t->flags, 100 + (uint32_t)i,
					    t->payload, t->payload_bytes, fds, t->nfds),
				 0);
		assert_int_equal(proto_recv(f->sv[1], t->role, &msg), 1);
		assert_int_equal(msg.hdr.version, PROTO_VERSION);
		assert_int_equal(msg.hdr.type, t->type);
		assert_int_equal(msg.hdr.flags, t->flags);
		assert_int_equal(msg.hdr.request_id, 100 + i);
		assert_int_equal(msg.hdr.payload_bytes, t->payload_bytes);
		assert_memory_equal(msg.payload, t->payload, t->payload_bytes);
		assert_int_equal(msg.payload[t->payload_bytes], 0);
		assert_int_equal(msg.nfds, t->nfds);
		for (size_t k = 0; k < t->nfds; k++) {
			assert_same_file(msg.fds[k], fds[k]);
			assert_true(fcntl(msg.fds[k], F_GETFD) & FD_CLOEXEC);
		}
		proto_msg_release(&msg);
		close_fds(fds, t->nfds);
		close(keep);
	}
}

static void status_payload_round_trips(void **state)
{
	struct fixture *f = *state;
	int32_t code;
	const char *text;
	assert_int_equal(proto_send_status(f->sv[0], MSG_ERROR, 9, ENOENT, "no listener \"x\""), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	assert_int_equal(proto_parse_status(&msg, &code, &text), 0);
	assert_int_equal(code, ENOENT);
	assert_string_equal(text, "no listener \"x\"");
	assert_int_equal(proto_send_status(f->sv[0], MSG_CTL_REPLY, 1, 0, NULL), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), 1);
	assert_int_equal(proto_parse_status(&msg, &code, &text), 0);
	assert_int_equal(code, 0);
	assert_string_equal(text, "");
}

/* 'a' then é (2 bytes) repeated: the byte at PROTO_STATUS_TEXT_MAX is the second
 * half of an é, which must not be sent alone. */
static void a_status_text_longer_than_a_frame_is_cut_between_characters(void **state)
{
	struct fixture *f = *state;
	size_t len = 1 + 2 * 40000;
	char *text = malloc(len + 1);
	int32_t code;
	const char *got;
	text[0] = 'a';
	for (size_t i = 1; i < len; i += 2)
		memcpy(text + i, "\xc3\xa9", 2);
	text[len] = 0;
	assert_int_equal(proto_send_status(f->sv[0], MSG_CTL_REPLY, 3, 0, text), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), 1);
	assert_int_equal(proto_parse_status(&msg, &code, &got), 0);
	assert_int_equal(strlen(got), PROTO_STATUS_TEXT_MAX - 1);
	assert_memory_equal(got, text, PROTO_STATUS_TEXT_MAX - 1);
	assert_int_equal(msg.hdr.flags, 0);
	free(text);
}

static void a_reply_frame_carries_its_flags_and_exactly_its_bytes(void **state)
{
	struct fixture *f = *state;
	int32_t code;
	const char *got;
	assert_int_equal(
	    proto_send_status_frame(f->sv[0], MSG_CTL_REPLY, CTL_MORE, 5, 0, "abcdef", 3), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), 1);
	assert_int_equal(msg.hdr.flags, CTL_MORE);
	assert_int_equal(msg.hdr.request_id, 5);
	assert_int_equal(proto_parse_status(&msg, &code, &got), 0);
	assert_string_equal(got, "abc");
	static char big[PROTO_STATUS_TEXT_MAX + 1];
	assert_int_equal(
	    proto_send_status_frame(f->sv[0], MSG_CTL_REPLY, 0, 5, 0, big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), -EAGAIN);
}

static void utf8_cuts_fall_between_characters(void **state)
{
	/* a, é (c3 a9), € (e2 82 ac), 😀 (f0 9f 98 80) */
	const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	size_t len = strlen(s);
	size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10};
	for (size_t max = 0; max <= len; max++)
		assert_int_equal(proto_utf8_cut(s, len, max), want[max]);
	assert_int_equal(proto_utf8_cut(s, len, 100), len);
	/* Not UTF-8: continuation bytes all along. The cut backs off 3 at most. */
	const char *junk = "\x80\x80\x80\x80\x80\x80\x80\x80";
	assert_int_equal(proto_utf8_cut(junk, 8, 6), 6);
}

static void names_are_what_the_config_allows(void **state)
{
	char longest[PROTO_NAME_MAX + 1];
	memset(longest, 'a', sizeof(longest));
	assert_true(proto_name_valid("web", 3));
	assert_true(proto_name_valid("A-z_0.9", 7));
	assert_true(proto_name_valid(longest, PROTO_NAME_MAX));
	assert_false(proto_name_valid(longest, PROTO_NAME_MAX + 1));
	assert_false(proto_name_valid("", 0));
	assert_false(proto_name_valid("web\0junk", 8));
	assert_false(proto_name_valid("web/x", 5));
	assert_false(proto_name_valid("we b", 4));
	assert_false(proto_name_valid("w\xc3\xa9"
				      "b",
				      4));
	assert_false(proto_name_valid("web\n", 4));
	assert_false(proto_name_valid("a:b", 3)); /* ':' separates LISTEN_FDNAMES */
}

static void conn_carries_253_fds_with_253_records(void **state)
{
	struct fixture *f = *state;
	static uint8_t payload[PROTO_MAX_PAYLOAD];
	int fds[PROTO_MAX_FDS], keep;
	size_t len = 0;
	make_fds(fds, PROTO_MAX_FDS, &keep);
	for (size_t i = 0; i < PROTO_MAX_FDS; i++) {
		char name[16], tag[16];
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)i)};
		uint32_t st = (uint32_t)i * 7;
		int name_len = snprintf(name, sizeof(name), "l%zu", i);
		int tag_len = snprintf(tag, sizeof(tag), "t%zu", i * 3);
		struct proto_conn c = {
		    .flags = i % 2 ? CONN_ADOPTED : 0,
		    .name = name,
		    .name_len = (uint8_t)name_len,
		    .tag = tag,
		    .tag_len = (uint8_t)(i % 5 ? tag_len : 0),
		    .addr = &sin,
		    .addr_len = sizeof(sin),
		    .state = &st,
		    .state_len = (uint16_t)(i % 3 ? sizeof(st) : 0),
		};
		assert_int_equal(proto_conn_put(payload, sizeof(payload), &len, &c), 0);
	}
	assert_int_equal(proto_send(f->sv[0], MSG_CONN, 0, 0, payload, len, fds, PROTO_MAX_FDS), 0);
	close_fds(fds, PROTO_MAX_FDS);
	close(keep);

	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	assert_int_equal(msg.nfds, PROTO_MAX_FDS);
	size_t offset = 0;
	for (size_t i = 0; i < PROTO_MAX_FDS; i++) {
		struct proto_conn c;
		char name[16];
		struct sockaddr_in sin;
		assert_int_equal(proto_conn_get(msg.payload, msg.hdr.payload_bytes, &offset, &c),
				 0);
		snprintf(name, sizeof(name), "l%zu", i);
		assert_int_equal(c.name_len, strlen(name));
		assert_memory_equal(c.name, name, c.name_len);
		assert_int_equal(c.flags, i % 2 ? CONN_ADOPTED : 0);
		assert_int_equal(c.tag_len != 0, i % 5 != 0);
		assert_int_equal(c.addr_len, sizeof(sin));
		memcpy(&sin, c.addr, sizeof(sin));
		assert_int_equal(ntohs(sin.sin_port), i);
		if (i % 3) {
			uint32_t st;
			assert_int_equal(c.state_len, 4);
			memcpy(&st, c.state, 4);
			assert_int_equal(st, i * 7);
		} else {
			assert_null(c.state);
		}
		assert_true(fcntl(msg.fds[i], F_GETFD) & FD_CLOEXEC);
	}
	assert_int_equal(offset, msg.hdr.payload_bytes);
	/* Take a few; release closes the rest. */
	int taken = proto_msg_take_fd(&msg, 5);
	assert_true(taken >= 0);
	assert_int_equal(proto_msg_take_fd(&msg, 5), -EBADF);
	assert_int_equal(proto_msg_take_fd(&msg, PROTO_MAX_FDS), -EBADF);
	close(taken);
	proto_msg_release(&msg);
	proto_msg_release(&msg); /* twice is safe */
}

/* ---- Refused on receive --------------------------------------------------- */

static void truncated_header_is_refused_and_its_fds_closed(void **state)
{
	struct fixture *f = *state;
	struct proto_hdr h = hdr_of(MSG_HELLO, 0, 0);
	int fds[3], keep;
	raw_send(f->sv[0], &h, 10, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	make_fds(fds, 3, &keep);
	raw_send(f->sv[0], &h, 1, fds, 3);
	close_fds(fds, 3);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	assert_int_equal(msg.nfds, 0);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void payload_length_mismatch_is_refused(void **state)
{
	struct fixture *f = *state;
	raw_send_msg(f->sv[0], hdr_of(MSG_HELLO, 10, 0), 5, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	raw_send_msg(f->sv[0], hdr_of(MSG_HELLO, 2, 0), 5, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void payload_shorter_than_its_type_needs_is_refused(void **state)
{
	struct fixture *f = *state;
	raw_send_msg(f->sv[0], hdr_of(MSG_CONN_DONE, 2, 0), 2, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_SERVER, &msg), -EBADMSG);
	raw_send_msg(f->sv[0], hdr_of(MSG_ERROR, 0, 0), 0, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), -EBADMSG);
	assert_channel_still_works(f, ROLE_WORKER_SERVER);
}

static void unknown_type_is_refused_and_its_fds_closed(void **state)
{
	struct fixture *f = *state;
	const uint8_t types[] = {0, MSG_TYPE_MAX, 200, 255};
	for (size_t i = 0; i < sizeof(types); i++) {
		int fd, keep;
		make_fds(&fd, 1, &keep);
		raw_send_msg(f->sv[0], hdr_of(types[i], 0, 1), 0, &fd, 1);
		close(fd);
		close(keep);
		assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	}
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void unknown_version_or_reserved_bits_are_refused(void **state)
{
	struct fixture *f = *state;
	struct proto_hdr h = hdr_of(MSG_HELLO, 0, 0);
	h.version = PROTO_VERSION + 1;
	raw_send_msg(f->sv[0], h, 0, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	h.version = 0;
	raw_send_msg(f->sv[0], h, 0, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	h = hdr_of(MSG_HELLO, 0, 0);
	h.reserved = 1;
	raw_send_msg(f->sv[0], h, 0, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void fds_on_a_type_that_takes_none_are_refused_and_closed(void **state)
{
	struct fixture *f = *state;
	int fds[2], keep;
	make_fds(fds, 2, &keep);
	raw_send_msg(f->sv[0], hdr_of(MSG_DRAIN, 0, 2), 0, fds, 2);
	raw_send_msg(f->sv[0], hdr_of(MSG_HELLO, 0, 1), 0, fds, 1);
	close_fds(fds, 2);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void more_fds_than_the_type_allows_are_refused_and_closed(void **state)
{
	struct fixture *f = *state;
	int fds[2], keep;
	make_fds(fds, 2, &keep);
	raw_send_msg(f->sv[0], hdr_of(MSG_LISTENER, 4, 2), 4, fds, 2);
	raw_send_msg(f->sv[0], hdr_of(MSG_CONN_DONE, 4, 2), 4, fds, 2);
	close_fds(fds, 2);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_SERVER, &msg), -EBADMSG);
	/* A type that needs an fd, sent without. */
	raw_send_msg(f->sv[0], hdr_of(MSG_LISTENER, 4, 0), 4, NULL, 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

/* A PARK carries 1 to 253 connections, one record per fd, nothing after the last. */
static void a_park_of_many_connections_round_trips_and_its_records_are_checked(void **state)
{
	struct fixture *f = *state;
	static uint8_t payload[PROTO_MAX_PAYLOAD];
	size_t len = 0;
	int fds[PROTO_MAX_FDS], keep;
	make_fds(fds, PROTO_MAX_FDS, &keep);
	for (size_t i = 0; i < PROTO_MAX_FDS; i++) {
		struct proto_conn c = {
		    .name = "http", .name_len = 4, .state = &i, .state_len = sizeof(i)};
		assert_int_equal(proto_conn_put(payload, sizeof(payload), &len, &c), 0);
	}
	assert_int_equal(proto_send(f->sv[0], MSG_PARK, 0, 1, payload, len, fds, PROTO_MAX_FDS), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_SERVER, &msg), 1);
	assert_int_equal(msg.nfds, PROTO_MAX_FDS);
	assert_int_equal(proto_conns_check(msg.payload, msg.hdr.payload_bytes, msg.nfds), 0);
	/* One record more or less than fds, or bytes after the last, is refused. */
	assert_int_equal(proto_conns_check(msg.payload, msg.hdr.payload_bytes, msg.nfds - 1),
			 -EBADMSG);
	assert_int_equal(proto_conns_check(msg.payload, msg.hdr.payload_bytes, msg.nfds + 1),
			 -EBADMSG);
	assert_int_equal(proto_conns_check(msg.payload, msg.hdr.payload_bytes + 4, msg.nfds),
			 -EBADMSG);
	proto_msg_release(&msg);
	close_fds(fds, PROTO_MAX_FDS);
	close(keep);
}

/* proto_close_fds closes exactly what it is given, runs and strays alike. */
static void close_fds_closes_runs_and_strays_and_nothing_else(void **state)
{
	int fds[40], keep;
	make_fds(fds, 40, &keep);
	int before = count_fds(0);
	/* Every other one of the first 20 (strays), then the last 20 (a run,
	 * shuffled): the ones left out stay open. */
	int batch[30];
	size_t n = 0;
	for (size_t i = 0; i < 20; i += 2)
		batch[n++] = fds[i];
	for (size_t i = 39; i >= 20; i--)
		batch[n++] = fds[i];
	proto_close_fds(batch, n);
	assert_int_equal(count_fds(0), before - 30);
	for (size_t i = 0; i < 40; i++)
		assert_int_equal(fcntl(fds[i], F_GETFD) >= 0, i < 20 && i % 2 == 1);
	for (size_t i = 1; i < 20; i += 2)
		close(fds[i]);
	close(keep);
}

static void header_fd_count_must_match_the_fds_received(void **state)
{
	struct fixture *f = *state;
	int fds[3], keep;
	make_fds(fds, 3, &keep);
	raw_send_msg(f->sv[0], hdr_of(MSG_CONN, 8, 2), 8, fds, 3);
	raw_send_msg(f->sv[0], hdr_of(MSG_CONN, 8, 3), 8, fds, 2);
	close_fds(fds, 3);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EBADMSG);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void a_type_the_role_does_not_take_is_refused_and_its_fds_closed(void **state)
{
	struct fixture *f = *state;
	int fd, keep;
	make_fds(&fd, 1, &keep);
	/* batond must not accept connections from a worker... */
	assert_int_equal(proto_send(f->sv[0], MSG_CONN, 0, 0, "\0\0\0\0\0\0\0\0", 8, &fd, 1), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_SERVER, &msg), -EPROTO);
	/* ...nor the control socket a listener, nor a worker a control request. */
	assert_int_equal(proto_send(f->sv[0], MSG_LISTENER, 0, 0, "http", 4, &fd, 1), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), -EPROTO);
	assert_int_equal(proto_send(f->sv[0], MSG_CTL_STOP, 0, 0, NULL, 0, NULL, 0), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EPROTO);
	assert_int_equal(proto_send(f->sv[0], MSG_LISTENER_GET, 0, 0, "x", 1, NULL, 0), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_SERVER, &msg), -EPROTO);
	/* A completion counter goes to a worker only: neither batond nor batonctl
	 * takes a page from its peer. */
	assert_int_equal(proto_send(f->sv[0], MSG_DONE_COUNTER, 0, 0, NULL, 0, &fd, 1), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_SERVER, &msg), -EPROTO);
	assert_int_equal(proto_send(f->sv[0], MSG_DONE_COUNTER, 0, 0, NULL, 0, &fd, 1), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_CONTROL_CLIENT, &msg), -EPROTO);
	/* ...and it carries exactly one fd. */
	assert_int_equal(proto_send(f->sv[0], MSG_DONE_COUNTER, 0, 0, NULL, 0, NULL, 0), -EINVAL);
	close(fd);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], 99, &msg), -EINVAL);
	assert_channel_still_works(f, ROLE_CONTROL_SERVER);
}

static void truncated_control_data_is_refused_and_what_arrived_closed(void **state)
{
	struct fixture *f = *state;
	int fds[10], keep;
	make_fds(fds, 10, &keep);
	uint8_t rec[128];
	size_t len = 0;
	struct proto_conn c = {.name = "a", .name_len = 1};
	for (int i = 0; i < 10; i++)
		assert_int_equal(proto_conn_put(rec, sizeof(rec), &len, &c), 0);
	assert_int_equal(proto_send(f->sv[0], MSG_CONN, 0, 0, rec, len, fds, 10), 0);
	assert_int_equal(proto_send(f->sv[0], MSG_CONN, 0, 0, rec, len, fds, 10), 0);
	close_fds(fds, 10);
	close(keep);
	/* Room for 2 of 10 fds: the kernel installs 2 and sets MSG_CTRUNC. */
	assert_int_equal(
	    proto_recv_buf(f->sv[1], ROLE_WORKER_CLIENT, &msg, CMSG_SPACE(sizeof(int) * 2)),
	    -EMSGSIZE);
	assert_int_equal(msg.nfds, 0);
	assert_int_equal(proto_recv_buf(f->sv[1], ROLE_WORKER_CLIENT, &msg, 0), -EMSGSIZE);
	assert_int_equal(proto_recv_buf(f->sv[1], ROLE_WORKER_CLIENT, &msg, 1 << 20), -EINVAL);
	assert_channel_still_works(f, ROLE_WORKER_CLIENT);
}

static void oversized_datagram_is_refused_and_its_fds_closed(void **state)
{
	struct fixture *f = *state;
	int fd, keep;
	make_fds(&fd, 1, &keep);
	raw_send_msg(f->sv[0], hdr_of(MSG_HELLO, PROTO_MAX_PAYLOAD + 1, 1), PROTO_MAX_PAYLOAD + 1,
		     &fd, 1);
	close(fd);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EMSGSIZE);
	/* The largest payload still fits. */
	static uint8_t big[PROTO_MAX_PAYLOAD];
	memset(big, 'b', sizeof(big));
	assert_int_equal(proto_send(f->sv[0], MSG_HELLO, 0, 0, big, sizeof(big), NULL, 0), 0);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	assert_int_equal(msg.hdr.payload_bytes, PROTO_MAX_PAYLOAD);
	assert_int_equal(msg.payload[PROTO_MAX_PAYLOAD], 0);
}

static void empty_socket_is_eagain_and_closed_peer_is_eof(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EAGAIN);
	close(f->sv[0]);
	f->sv[0] = -1;
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 0);
}

/* ---- Refused on send ------------------------------------------------------ */

static void send_refuses_what_the_receiver_would(void **state)
{
	struct fixture *f = *state;
	static uint8_t big[PROTO_MAX_PAYLOAD + 1];
	int fds[PROTO_MAX_FDS + 1], keep;
	make_fds(fds, 2, &keep);
	assert_int_equal(proto_send(f->sv[0], 0, 0, 0, NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(proto_send(f->sv[0], MSG_TYPE_MAX, 0, 0, NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(proto_send(f->sv[0], MSG_DRAIN, 0, 0, NULL, 0, fds, 1), -EINVAL);
	assert_int_equal(proto_send(f->sv[0], MSG_LISTENER, 0, 0, "h", 1, fds, 2), -EINVAL);
	assert_int_equal(proto_send(f->sv[0], MSG_LISTENER, 0, 0, "h", 1, NULL, 0), -EINVAL);
	assert_int_equal(proto_send(f->sv[0], MSG_CONN_DONE, 0, 0, "x", 1, NULL, 0), -EINVAL);
	assert_int_equal(proto_send(f->sv[0], MSG_HELLO, 0, 0, big, sizeof(big), NULL, 0),
			 -EMSGSIZE);
	assert_int_equal(proto_send(f->sv[0], MSG_CONN, 0, 0, big, 8, fds, PROTO_MAX_FDS + 1),
			 -EMSGSIZE);
	close_fds(fds, 2);
	close(keep);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EAGAIN);
}

static void send_on_a_full_socket_is_eagain(void **state)
{
	struct fixture *f = *state;
	static uint8_t chunk[4096];
	int r, sent = 0;
	while ((r = proto_send(f->sv[0], MSG_HELLO, 0, 0, chunk, sizeof(chunk), NULL, 0)) == 0)
		sent++;
	assert_int_equal(r, -EAGAIN);
	assert_true(sent > 0);
	for (int i = 0; i < sent; i++)
		assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), 1);
	assert_int_equal(proto_recv(f->sv[1], ROLE_WORKER_CLIENT, &msg), -EAGAIN);
}

static void send_to_a_closed_peer_is_epipe(void **state)
{
	struct fixture *f = *state;
	close(f->sv[1]);
	f->sv[1] = -1;
	assert_int_equal(proto_send(f->sv[0], MSG_HELLO, 0, 0, NULL, 0, NULL, 0), -EPIPE);
}

/* ---- Connection records --------------------------------------------------- */

static void conn_records_refuse_bad_lengths(void **state)
{
	(void)state;
	uint8_t buf[512] = {0};
	size_t off = 0;
	struct proto_conn c;
	char name[PROTO_NAME_MAX + 1];
	memset(name, 'n', sizeof(name));

	/* Encoder: too long for the decoder, or no room. */
	c = (struct proto_conn){.name = name, .name_len = PROTO_NAME_MAX + 1};
	assert_int_equal(proto_conn_put(buf, sizeof(buf), &off, &c), -EINVAL);
	c = (struct proto_conn){.tag = name, .tag_len = PROTO_TAG_MAX + 1};
	assert_int_equal(proto_conn_put(buf, sizeof(buf), &off, &c), -EINVAL);
	c = (struct proto_conn){.addr = buf, .addr_len = sizeof(struct sockaddr_storage) + 1};
	assert_int_equal(proto_conn_put(buf, sizeof(buf), &off, &c), -EINVAL);
	c = (struct proto_conn){.name = name, .name_len = 10};
	assert_int_equal(proto_conn_put(buf, 16, &off, &c), -EMSGSIZE);
	assert_int_equal(off, 0);

	/* Decoder: shorter than the fixed part, longer than the payload, or over a
	 * limit. */
	assert_int_equal(proto_conn_get(buf, 7, &off, &c), -EBADMSG);
	uint8_t rec[8] = {0, 0, 4, 0, 0, 0, 0, 0}; /* name_len 4, nothing follows */
	assert_int_equal(proto_conn_get(rec, sizeof(rec), &off, &c), -EBADMSG);
	memset(buf, 0, sizeof(buf));
	buf[2] = PROTO_NAME_MAX + 1;
	assert_int_equal(proto_conn_get(buf, sizeof(buf), &off, &c), -EBADMSG);
	buf[2] = 0;
	buf[3] = PROTO_TAG_MAX + 1;
	assert_int_equal(proto_conn_get(buf, sizeof(buf), &off, &c), -EBADMSG);
	buf[3] = 0;
	uint16_t addr_len = sizeof(struct sockaddr_storage) + 1;
	memcpy(buf + 4, &addr_len, 2);
	assert_int_equal(proto_conn_get(buf, sizeof(buf), &off, &c), -EBADMSG);
	off = sizeof(buf) + 1;
	assert_int_equal(proto_conn_get(buf, sizeof(buf), &off, &c), -EBADMSG);
	/* An all-zero record is a valid empty one. */
	off = 0;
	memset(buf, 0, sizeof(buf));
	assert_int_equal(proto_conn_get(buf, 8, &off, &c), 0);
	assert_int_equal(off, 8);
	assert_null(c.addr);
	assert_null(c.state);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(every_message_type_round_trips),
	    T(status_payload_round_trips),
	    T(a_status_text_longer_than_a_frame_is_cut_between_characters),
	    T(a_reply_frame_carries_its_flags_and_exactly_its_bytes),
	    T(utf8_cuts_fall_between_characters),
	    T(names_are_what_the_config_allows),
	    T(conn_carries_253_fds_with_253_records),
	    T(truncated_header_is_refused_and_its_fds_closed),
	    T(payload_length_mismatch_is_refused),
	    T(payload_shorter_than_its_type_needs_is_refused),
	    T(unknown_type_is_refused_and_its_fds_closed),
	    T(unknown_version_or_reserved_bits_are_refused),
	    T(fds_on_a_type_that_takes_none_are_refused_and_closed),
	    T(more_fds_than_the_type_allows_are_refused_and_closed),
	    T(a_park_of_many_connections_round_trips_and_its_records_are_checked),
	    cmocka_unit_test(close_fds_closes_runs_and_strays_and_nothing_else),
	    T(header_fd_count_must_match_the_fds_received),
	    T(a_type_the_role_does_not_take_is_refused_and_its_fds_closed),
	    T(truncated_control_data_is_refused_and_what_arrived_closed),
	    T(oversized_datagram_is_refused_and_its_fds_closed),
	    T(empty_socket_is_eagain_and_closed_peer_is_eof),
	    T(send_refuses_what_the_receiver_would),
	    T(send_on_a_full_socket_is_eagain),
	    T(send_to_a_closed_peer_is_epipe),
	    T(conn_records_refuse_bad_lengths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
