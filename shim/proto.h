/* SPDX-License-Identifier: MIT */
/* The baton wire protocol: framing of one message over AF_UNIX SOCK_SEQPACKET with
 * its fds. Written once, linked into libbaton, batond and batonctl. It never logs
 * and never allocates; it owns no socket. docs/protocol.md describes it for others. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define PROTO_VERSION	  1
#define PROTO_MAX_PAYLOAD (64 * 1024)
#define PROTO_MAX_FDS	  253 /* SCM_MAX_FD */
#define PROTO_NAME_MAX	  64  /* listener and app names, without NUL */
#define PROTO_TAG_MAX	  64
#define PROTO_STATE_MAX	  8192 /* state of a parked connection: fits a worker channel */
/* MSG_DONE_COUNTER's memfd: its size (sealed), and the counter at offset 0, a
 * uint64 the worker adds its finished connections to (docs/protocol.md). */
#define PROTO_DONE_COUNTER_BYTES 4096

/* Fixed header, host byte order (both ends are on one host), 16 bytes. */
struct proto_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t payload_bytes;
	uint32_t request_id;
	uint16_t nfds;
	uint16_t reserved; /* 0 on send, checked on receive */
};
_Static_assert(sizeof(struct proto_hdr) == 16, "wire header is 16 bytes");

enum proto_type {
	MSG_HELLO = 1,	  /* both ways, first message on a channel; payload: text identity */
	MSG_ERROR,	  /* reply: int32 errno, then text */
	MSG_CTL_STATUS,	  /* batonctl -> batond; flags: CTL_JSON */
	MSG_CTL_UPGRADE,  /* payload: app name, empty for every app */
	MSG_CTL_STOP,	  /* stop batond: drain everything and exit */
	MSG_CTL_REPLY,	  /* batond -> batonctl: int32 status (0 ok), then text */
	MSG_LISTENER_GET, /* worker -> batond: listener name */
	MSG_LISTENER,	  /* batond -> worker: listener name, 1 fd */
	MSG_DRAIN,	  /* batond -> worker: stop taking new work */
	MSG_CONN,	  /* batond -> worker: 1..253 connections, records in payload */
	MSG_CONN_DONE,	  /* worker -> batond: uint32 count of finished connections */
	MSG_PARK,	  /* worker -> batond: 1..253 live connections, records in payload */
	MSG_CTL_RELOAD,	  /* batonctl -> batond: read the configuration again, apply it */
	MSG_CTL_SCALE,	  /* batonctl -> batond: "APP N", run N workers of APP */
	MSG_CTL_METRICS,  /* batonctl -> batond: the Prometheus text exposition */
	MSG_CTL_REEXEC,	  /* batonctl -> batond: exec a new batond in place; payload: its path or
			     empty */
	MSG_CTL_PROMOTE,  /* batonctl -> batond: app name: its canary serves, with every worker */
	MSG_CTL_ROLLBACK, /* batonctl -> batond: app name: its canary drains */
	MSG_DONE_COUNTER, /* batond -> worker: 1 fd, the shared page of its finished-connection
			     count (HELLO_DONE_COUNTER) */
	MSG_TYPE_MAX,
};

#define CTL_JSON	0x0001 /* MSG_CTL_STATUS: answer in JSON */
#define CTL_FRAMES	0x0002 /* any control request: the client takes a reply in frames */
#define CTL_MORE	0x0004 /* MSG_CTL_REPLY: another frame of this reply follows */
#define CTL_CHECK	0x0008 /* MSG_CTL_STATUS: code ESRCH if an app has no serving generation */
#define CTL_WAIT_DRAIN	0x0010 /* MSG_CTL_UPGRADE: answer once the old generations are gone too */
#define DRAIN_NOW	0x0020 /* MSG_DRAIN: finish now, park live connections; SIGKILL follows */
#define HELLO_PARK_MANY 0x0040 /* batond's MSG_HELLO on a worker channel: PARK may carry 1..253 */
#define HELLO_DONE_COUNTER 0x0080 /* a worker's MSG_HELLO: it takes MSG_DONE_COUNTER */
#define CONN_ADOPTED	0x0001 /* conn record: parked by a previous generation */

/* Text of one MSG_CTL_REPLY / MSG_ERROR frame, after the int32 code. */
#define PROTO_STATUS_TEXT_MAX (PROTO_MAX_PAYLOAD - 4)
/* The largest reply batond sends in frames, and batonctl reassembles. */
#define PROTO_REPLY_MAX_BYTES (16 * 1024 * 1024)

/* Which types a receiver accepts: a channel's fd policy. */
enum proto_role {
	ROLE_CONTROL_SERVER, /* batond's control socket: requests, never fds */
	ROLE_CONTROL_CLIENT, /* batonctl: replies, never fds */
	ROLE_WORKER_SERVER,  /* batond's end of a worker channel */
	ROLE_WORKER_CLIENT,  /* the worker's end (libbaton) */
};

/* A received message. fds[] slots that were taken are -1; proto_msg_release()
 * closes every fd nobody took. */
struct proto_msg {
	struct proto_hdr hdr;
	uint8_t payload[PROTO_MAX_PAYLOAD + 1]; /* +1: room for a terminating NUL */
	int fds[PROTO_MAX_FDS];
	size_t nfds;
};

/* Sends one message; borrows fds (the caller closes them after success if it
 * keeps none). Returns 0, -EAGAIN when the socket is full, -EMSGSIZE, -EINVAL
 * for a type/fd-count mismatch, or another negative errno. Retries EINTR. */
int proto_send(int sock, uint8_t type, uint16_t flags, uint32_t request_id, const void *payload,
	       size_t payload_bytes, const int *fds, size_t nfds);

/* Sends @iovcnt buffers as one datagram, with @nfds fds in one SCM_RIGHTS
 * message and no check of what the bytes say: proto_send's transport, and how
 * tests and the fuzzer send malformed messages. Returns the bytes sent, -EAGAIN,
 * -EMSGSIZE for more than PROTO_MAX_FDS fds, or a negative errno. Retries EINTR. */
ssize_t proto_send_raw(int sock, const struct iovec *iov, size_t iovcnt, const int *fds,
		       size_t nfds);

/* Receives and validates one message for @role. Returns 1 with *msg filled, 0 on
 * orderly EOF, -EAGAIN, or a negative errno with every received fd closed:
 * -EPROTO bad header/version/unknown or unexpected type, -EBADMSG length or fd
 * count mismatch, -EMSGSIZE datagram or control data truncated. Retries EINTR.
 * The payload is NUL-terminated at payload_bytes for convenience. */
int proto_recv(int sock, enum proto_role role, struct proto_msg *msg);
/* proto_recv with a control buffer of @control_bytes (at most the full size): lets
 * tests provoke MSG_CTRUNC. Everyone else calls proto_recv. -EINVAL for a bad
 * role or size. */
int proto_recv_buf(int sock, enum proto_role role, struct proto_msg *msg, size_t control_bytes);

/* Takes fd @i out of @msg (slot becomes -1). Returns the fd or -EBADF. */
int proto_msg_take_fd(struct proto_msg *msg, size_t i);
/* Closes every fd not taken. Safe to call twice. */
void proto_msg_release(struct proto_msg *msg);

/* Payload helpers for MSG_ERROR / MSG_CTL_REPLY: int32 code + text. A text
 * longer than one frame is cut at the last UTF-8 character boundary that fits. */
int proto_send_status(int sock, uint8_t type, uint32_t request_id, int32_t code, const char *text);
/* One frame of such a reply: exactly @text_bytes of @text (at most
 * PROTO_STATUS_TEXT_MAX, else -EMSGSIZE), with @flags (CTL_MORE). Returns as
 * proto_send. */
int proto_send_status_frame(int sock, uint8_t type, uint16_t flags, uint32_t request_id,
			    int32_t code, const char *text, size_t text_bytes);
/* Parses such a payload: *ret_code and a pointer into msg->payload (NUL-terminated). */
int proto_parse_status(const struct proto_msg *msg, int32_t *ret_code, const char **ret_text);

/* The largest n <= @max_bytes such that text[0..n) does not end inside a UTF-8
 * character (@text_bytes is the text's length; n == text_bytes if it fits). Bytes
 * that are not UTF-8 are cut anywhere: it backs off 3 bytes at most. */
size_t proto_utf8_cut(const char *text, size_t text_bytes, size_t max_bytes);

/* True if @name (@name_bytes long, no NUL needed) is an app or listener name as
 * the config allows it: 1 to PROTO_NAME_MAX bytes of A-Z a-z 0-9 _ . - */
bool proto_name_valid(const char *name, size_t name_bytes);

/* One record per fd of MSG_CONN and MSG_PARK, packed back to
 * back in the payload, each starting at a 4-byte boundary:
 *   uint16 flags, uint8 name_len, uint8 tag_len, uint16 addr_len, uint16 state_len,
 *   name, tag, sockaddr (addr_len bytes), state (state_len bytes), pad to 4. */
struct proto_conn {
	uint16_t flags;
	const char *name; /* not NUL-terminated on decode: use name_len */
	uint8_t name_len;
	const char *tag;
	uint8_t tag_len;
	const void *addr; /* may be unaligned: memcpy into a sockaddr_storage */
	uint16_t addr_len;
	const void *state;
	uint16_t state_len;
};
/* Appends one record at *offset into buf (capacity cap). Returns 0, -EMSGSIZE, or
 * -EINVAL for a name, tag or address longer than the decoder accepts. */
int proto_conn_put(uint8_t *buf, size_t cap, size_t *offset, const struct proto_conn *conn);
/* Reads the record at *offset of a payload of @len bytes; pointers point into buf.
 * Returns 0 or -EBADMSG. */
int proto_conn_get(const uint8_t *buf, size_t len, size_t *offset, struct proto_conn *ret);
/* Checks that a payload of @len bytes is exactly @n records (a MSG_CONN's or a
 * MSG_PARK's, one per fd), nothing after the last. Returns 0 or -EBADMSG. */
int proto_conns_check(const uint8_t *buf, size_t len, size_t n);

/* The largest payload one message on @sock may carry: a SOCK_SEQPACKET datagram
 * must fit the socket's send buffer, less the kernel's 32 bytes, header included;
 * at most PROTO_MAX_PAYLOAD. */
size_t proto_payload_max(int sock);

/* Closes @n fds (taken; their order in @fds is lost): one close_range() per run
 * of consecutive numbers. fds received in one message, or accepted one after
 * the other, are mostly such a run: a batch costs one syscall, not one per fd. */
void proto_close_fds(int *fds, size_t n);
