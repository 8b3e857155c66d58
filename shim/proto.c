/* SPDX-License-Identifier: MIT */
/* Framing and fd passing of the baton protocol. Owns no socket and no fd beyond
 * the ones a received message holds until the caller takes or releases them. */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct type_rule {
	uint16_t min_fds;
	uint16_t max_fds;
	uint32_t min_payload;
};

static const struct type_rule type_rules[MSG_TYPE_MAX] = {
    [MSG_HELLO] = {0, 0, 0},	    [MSG_ERROR] = {0, 0, 4},
    [MSG_CTL_STATUS] = {0, 0, 0},   [MSG_CTL_UPGRADE] = {0, 0, 0},
    [MSG_CTL_STOP] = {0, 0, 0},	    [MSG_CTL_REPLY] = {0, 0, 4},
    [MSG_LISTENER_GET] = {0, 0, 1}, [MSG_LISTENER] = {1, 1, 1},
    [MSG_DRAIN] = {0, 0, 0},	    [MSG_CONN] = {1, PROTO_MAX_FDS, 8},
    [MSG_CONN_DONE] = {0, 0, 4},    [MSG_PARK] = {1, PROTO_MAX_FDS, 8},
    [MSG_CTL_RELOAD] = {0, 0, 0},   [MSG_CTL_SCALE] = {0, 0, 3},
    [MSG_CTL_METRICS] = {0, 0, 0},  [MSG_CTL_REEXEC] = {0, 0, 0},
    [MSG_CTL_PROMOTE] = {0, 0, 1},  [MSG_CTL_ROLLBACK] = {0, 0, 1},
    [MSG_DONE_COUNTER] = {1, 1, 0},
};

#define BIT(t) (1u << (t))
static const uint32_t role_accepts[] = {
    [ROLE_CONTROL_SERVER] = BIT(MSG_HELLO) | BIT(MSG_CTL_STATUS) | BIT(MSG_CTL_UPGRADE) |
			    BIT(MSG_CTL_STOP) | BIT(MSG_CTL_RELOAD) | BIT(MSG_CTL_SCALE) |
			    BIT(MSG_CTL_METRICS) | BIT(MSG_CTL_REEXEC) | BIT(MSG_CTL_PROMOTE) |
			    BIT(MSG_CTL_ROLLBACK),
    [ROLE_CONTROL_CLIENT] = BIT(MSG_HELLO) | BIT(MSG_CTL_REPLY) | BIT(MSG_ERROR),
    [ROLE_WORKER_SERVER] =
	BIT(MSG_HELLO) | BIT(MSG_LISTENER_GET) | BIT(MSG_CONN_DONE) | BIT(MSG_PARK),
    [ROLE_WORKER_CLIENT] = BIT(MSG_HELLO) | BIT(MSG_ERROR) | BIT(MSG_LISTENER) | BIT(MSG_DRAIN) |
			   BIT(MSG_CONN) | BIT(MSG_DONE_COUNTER),
};

static int type_check(uint8_t type, size_t payload_bytes, size_t nfds)
{
	if (type == 0 || type >= MSG_TYPE_MAX)
		return -EPROTO;
	const struct type_rule *r = &type_rules[type];
	if (nfds < r->min_fds || nfds > r->max_fds || payload_bytes < r->min_payload)
		return -EBADMSG;
	return 0;
}

/* Control buffer for the largest fd array, aligned for struct cmsghdr, with room
 * for the SCM_CREDENTIALS message the kernel adds when the socket has SO_PASSCRED:
 * without it a full MSG_CONN on such a socket would come back MSG_CTRUNC. */
union proto_cmsg {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS) + CMSG_SPACE(sizeof(struct ucred))];
};

ssize_t proto_send_raw(int sock, const struct iovec *iov, size_t iovcnt, const int *fds,
		       size_t nfds)
{
	if (nfds > PROTO_MAX_FDS)
		return -EMSGSIZE;
	union proto_cmsg control;
	struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt};
	if (nfds > 0) {
		memset(control.buf, 0, CMSG_SPACE(sizeof(int) * nfds));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

int proto_send(int sock, uint8_t type, uint16_t flags, uint32_t request_id, const void *payload,
	       size_t payload_bytes, const int *fds, size_t nfds)
{
	if (payload_bytes > PROTO_MAX_PAYLOAD || nfds > PROTO_MAX_FDS)
		return -EMSGSIZE;
	int r = type_check(type, payload_bytes, nfds);
	if (r < 0)
		return -EINVAL;

	struct proto_hdr hdr = {
	    .version = PROTO_VERSION,
	    .type = type,
	    .flags = flags,
	    .payload_bytes = (uint32_t)payload_bytes,
	    .request_id = request_id,
	    .nfds = (uint16_t)nfds,
	};
	struct iovec iov[2] = {
	    {.iov_base = &hdr, .iov_len = sizeof(hdr)},
	    {.iov_base = (void *)payload, .iov_len = payload_bytes},
	};
	ssize_t n = proto_send_raw(sock, iov, payload_bytes > 0 ? 2 : 1, fds, nfds);
	if (n < 0)
		return (int)n;
	/* SOCK_SEQPACKET sends all or nothing; anything else is a broken socket. */
	if ((size_t)n != sizeof(hdr) + payload_bytes)
		return -EIO;
	return 0;
}

static void close_fds(int *fds, size_t nfds)
{
	for (size_t i = 0; i < nfds; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* Collects every SCM_RIGHTS fd of @mh into msg->fds; any other control message
 * (credentials we did not ask for) is ignored, its data carries no fds. More fds
 * than fit cannot happen: the buffer is sized for SCM_MAX_FD and MSG_CTRUNC is
 * checked by the caller after this has closed what did arrive. */
static void collect_fds(struct msghdr *mh, struct proto_msg *msg)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *data = CMSG_DATA(cm);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, data + i * sizeof(int), sizeof(int));
			if (msg->nfds < PROTO_MAX_FDS)
				msg->fds[msg->nfds++] = fd;
			else
				close(fd);
		}
	}
}

int proto_recv(int sock, enum proto_role role, struct proto_msg *msg)
{
	return proto_recv_buf(sock, role, msg, sizeof(union proto_cmsg));
}

int proto_recv_buf(int sock, enum proto_role role, struct proto_msg *msg, size_t control_bytes)
{
	union proto_cmsg control;
	if ((unsigned)role > ROLE_WORKER_CLIENT || control_bytes > sizeof(control.buf))
		return -EINVAL;
	struct iovec iov[2] = {
	    {.iov_base = &msg->hdr, .iov_len = sizeof(msg->hdr)},
	    {.iov_base = msg->payload, .iov_len = PROTO_MAX_PAYLOAD},
	};
	struct msghdr mh = {
	    .msg_iov = iov,
	    .msg_iovlen = 2,
	    .msg_control = control_bytes > 0 ? control.buf : NULL,
	    .msg_controllen = control_bytes,
	};
	msg->nfds = 0;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	collect_fds(&mh, msg);

	int r;
	if (n == 0 && msg->nfds == 0)
		return 0; /* orderly shutdown: SEQPACKET has no empty messages of ours */
	if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		r = -EMSGSIZE;
	else if ((size_t)n < sizeof(msg->hdr) || msg->hdr.version != PROTO_VERSION ||
		 msg->hdr.reserved != 0)
		r = -EPROTO;
	else if (msg->hdr.payload_bytes != (size_t)n - sizeof(msg->hdr) ||
		 msg->hdr.nfds != msg->nfds)
		r = -EBADMSG;
	else if ((r = type_check(msg->hdr.type, msg->hdr.payload_bytes, msg->nfds)) < 0)
		;
	else if (!(role_accepts[role] & BIT(msg->hdr.type)))
		r = -EPROTO;
	else {
		msg->payload[msg->hdr.payload_bytes] = 0;
		return 1;
	}
	close_fds(msg->fds, msg->nfds);
	msg->nfds = 0;
	return r;
}

int proto_msg_take_fd(struct proto_msg *msg, size_t i)
{
	if (i >= msg->nfds || msg->fds[i] < 0)
		return -EBADF;
	int fd = msg->fds[i];
	msg->fds[i] = -1;
	return fd;
}

void proto_msg_release(struct proto_msg *msg)
{
	close_fds(msg->fds, msg->nfds);
	msg->nfds = 0;
}

int proto_send_status_frame(int sock, uint8_t type, uint16_t flags, uint32_t request_id,
			    int32_t code, const char *text, size_t text_bytes)
{
	uint8_t buf[4 + PROTO_STATUS_TEXT_MAX];
	if (text_bytes > PROTO_STATUS_TEXT_MAX)
		return -EMSGSIZE;
	memcpy(buf, &code, 4);
	if (text_bytes)
		memcpy(buf + 4, text, text_bytes);
	return proto_send(sock, type, flags, request_id, buf, 4 + text_bytes, NULL, 0);
}

int proto_send_status(int sock, uint8_t type, uint32_t request_id, int32_t code, const char *text)
{
	size_t len = text ? strlen(text) : 0;
	/* A reply is text for a human: cut, never fail, but never inside a character. */
	len = proto_utf8_cut(text, len, PROTO_STATUS_TEXT_MAX);
	return proto_send_status_frame(sock, type, 0, request_id, code, text, len);
}

size_t proto_utf8_cut(const char *text, size_t text_bytes, size_t max_bytes)
{
	if (text_bytes <= max_bytes)
		return text_bytes;
	/* text[n] is the first byte left out: a continuation byte there means the
	 * character before the cut is incomplete. */
	size_t n = max_bytes;
	for (int back = 0; back < 3 && n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80; back++)
		n--;
	if (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
		return max_bytes; /* not UTF-8 here: any cut will do */
	return n;
}

bool proto_name_valid(const char *name, size_t name_bytes)
{
	if (name_bytes < 1 || name_bytes > PROTO_NAME_MAX)
		return false;
	for (size_t i = 0; i < name_bytes; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

int proto_parse_status(const struct proto_msg *msg, int32_t *ret_code, const char **ret_text)
{
	if (msg->hdr.payload_bytes < 4)
		return -EBADMSG;
	memcpy(ret_code, msg->payload, 4);
	*ret_text = (const char *)msg->payload + 4;
	return 0;
}

#define CONN_FIXED 8

static size_t pad4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

int proto_conn_put(uint8_t *buf, size_t cap, size_t *offset, const struct proto_conn *c)
{
	/* Never write what proto_conn_get would refuse. */
	if (c->name_len > PROTO_NAME_MAX || c->tag_len > PROTO_TAG_MAX ||
	    c->addr_len > sizeof(struct sockaddr_storage))
		return -EINVAL;
	size_t len = CONN_FIXED + c->name_len + c->tag_len + c->addr_len + c->state_len;
	size_t start = *offset;
	if (start > cap || pad4(len) > cap - start)
		return -EMSGSIZE;
	uint8_t *p = buf + start;
	memcpy(p, &c->flags, 2);
	p[2] = c->name_len;
	p[3] = c->tag_len;
	memcpy(p + 4, &c->addr_len, 2);
	memcpy(p + 6, &c->state_len, 2);
	p += CONN_FIXED;
	if (c->name_len)
		memcpy(p, c->name, c->name_len);
	p += c->name_len;
	if (c->tag_len)
		memcpy(p, c->tag, c->tag_len);
	p += c->tag_len;
	if (c->addr_len)
		memcpy(p, c->addr, c->addr_len);
	p += c->addr_len;
	if (c->state_len)
		memcpy(p, c->state, c->state_len);
	memset(buf + start + len, 0, pad4(len) - len);
	*offset = start + pad4(len);
	return 0;
}

int proto_conn_get(const uint8_t *buf, size_t len, size_t *offset, struct proto_conn *ret)
{
	size_t start = *offset;
	if (start > len || len - start < CONN_FIXED)
		return -EBADMSG;
	const uint8_t *p = buf + start;
	struct proto_conn c = {0};
	memcpy(&c.flags, p, 2);
	c.name_len = p[2];
	c.tag_len = p[3];
	memcpy(&c.addr_len, p + 4, 2);
	memcpy(&c.state_len, p + 6, 2);
	size_t rec = CONN_FIXED + (size_t)c.name_len + c.tag_len + c.addr_len + c.state_len;
	if (rec > len - start || c.name_len > PROTO_NAME_MAX || c.tag_len > PROTO_TAG_MAX ||
	    c.addr_len > sizeof(struct sockaddr_storage))
		return -EBADMSG;
	p += CONN_FIXED;
	c.name = (const char *)p;
	p += c.name_len;
	c.tag = (const char *)p;
	p += c.tag_len;
	c.addr = c.addr_len ? p : NULL;
	p += c.addr_len;
	c.state = c.state_len ? p : NULL;
	*ret = c;
	size_t next = start + pad4(rec);
	*offset = next < len ? next : len;
	return 0;
}

int proto_conns_check(const uint8_t *buf, size_t len, size_t n)
{
	size_t offset = 0;
	struct proto_conn c;
	for (size_t i = 0; i < n; i++)
		if (proto_conn_get(buf, len, &offset, &c) < 0)
			return -EBADMSG;
	return offset == len ? 0 : -EBADMSG;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

void proto_close_fds(int *fds, size_t n)
{
	if (n > 1)
		qsort(fds, n, sizeof(*fds), cmp_int);
	for (size_t i = 0; i < n;) {
		if (fds[i] < 0) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < n && fds[j] == fds[j - 1] + 1)
			j++;
		/* A kernel without close_range (before 5.9): one by one. */
		if (j - i == 1 || close_range((unsigned)fds[i], (unsigned)fds[j - 1], 0) < 0)
			for (size_t k = i; k < j; k++)
				close(fds[k]);
		i = j;
	}
}

size_t proto_payload_max(int sock)
{
	int sndbuf = 0;
	socklen_t len = sizeof(sndbuf);
	if (getsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0 || sndbuf < 1024)
		sndbuf = 1024;
	size_t max = (size_t)sndbuf - 32 - sizeof(struct proto_hdr);
	return max < PROTO_MAX_PAYLOAD ? max : PROTO_MAX_PAYLOAD;
}
