/* Notify socket. Datagrams are parsed sd_notify-style: newline-separated
 * KEY=VALUE. Any fds a sender attaches (FDSTORE=1 is systemd's business, not
 * ours) are closed on receipt. */
#include "notify.h"
#include "log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct notify {
	int fd;
	sd_event_source *src;
	notify_handler_t handler;
	void *userdata;
	char address[64];
	/* rate limit for "unknown sender" logs: at most 5 lines per 10 s */
	uint64_t unknown_window_usec;
	unsigned unknown_in_window;
	unsigned unknown_suppressed;
};

static void close_cmsg_fds(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			close(fd);
		}
	}
}

static void parse(char *buf, struct notify_state *st)
{
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (strcmp(line, "READY=1") == 0)
			st->ready = true;
		else if (strcmp(line, "STOPPING=1") == 0)
			st->stopping = true;
		else if (strncmp(line, "STATUS=", 7) == 0)
			st->status = line + 7;
	}
}

static void log_unknown(struct notify *n, pid_t pid)
{
	uint64_t now;
	sd_event_now(sd_event_source_get_event(n->src), CLOCK_MONOTONIC, &now);
	if (now - n->unknown_window_usec > 10 * 1000000ULL) {
		if (n->unknown_suppressed)
			log_warn("notify: %u more datagrams from unknown senders dropped",
				 n->unknown_suppressed);
		n->unknown_window_usec = now;
		n->unknown_in_window = 0;
		n->unknown_suppressed = 0;
	}
	if (n->unknown_in_window++ < 5)
		log_warn("notify: dropped datagram from pid %d, which is not a worker", (int)pid);
	else
		n->unknown_suppressed++;
}

static int on_notify(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct notify *n = userdata;
	/* Drain what is queued, bounded so that a flood cannot starve the loop. */
	for (int budget = 64; budget > 0; budget--) {
		char buf[4097];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 253)];
		} control;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
		struct msghdr mh = {
		    .msg_iov = &iov,
		    .msg_iovlen = 1,
		    .msg_control = control.buf,
		    .msg_controllen = sizeof(control.buf),
		};
		ssize_t len = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("notify: recvmsg: %s", strerror(errno));
			return 0;
		}
		close_cmsg_fds(&mh);
		struct ucred cred = {.pid = 0};
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS &&
			    cm->cmsg_len == CMSG_LEN(sizeof(cred)))
				memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
		if (cred.pid <= 0 || (mh.msg_flags & MSG_TRUNC)) {
			log_warn("notify: dropped datagram %s",
				 cred.pid <= 0 ? "without credentials" : "longer than 4 KiB");
			continue;
		}
		buf[len] = 0;
		struct notify_state st = {0};
		parse(buf, &st);
		if (!n->handler(n->userdata, cred.pid, &st))
			log_unknown(n, cred.pid);
	}
	return 0;
}

int notify_open(sd_event *event, notify_handler_t handler, void *userdata, struct notify **ret)
{
	struct notify *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->handler = handler;
	n->userdata = userdata;
	int r;
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->fd < 0) {
		r = -errno;
		goto fail;
	}
	int one = 1;
	if (setsockopt(n->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		r = -errno;
		goto fail;
	}
	/* Abstract: nothing to clean up on disk, gone with the last fd. The name is
	 * unique per batond process and kernel-assigned to avoid clashes. */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (bind(n->fd, (struct sockaddr *)&sa, sizeof(sa_family_t)) < 0) { /* autobind */
		r = -errno;
		goto fail;
	}
	socklen_t sl = sizeof(sa);
	if (getsockname(n->fd, (struct sockaddr *)&sa, &sl) < 0) {
		r = -errno;
		goto fail;
	}
	size_t name_len = sl - offsetof(struct sockaddr_un, sun_path) - 1;
	n->address[0] = '@';
	memcpy(n->address + 1, sa.sun_path + 1, name_len);
	n->address[1 + name_len] = 0;
	r = sd_event_add_io(event, &n->src, n->fd, EPOLLIN, on_notify, n);
	if (r < 0)
		goto fail;
	*ret = n;
	return 0;
fail:
	if (n->fd >= 0)
		close(n->fd);
	free(n);
	return r;
}

const char *notify_address(const struct notify *n)
{
	return n->address;
}

void notify_close(struct notify *n)
{
	if (!n)
		return;
	sd_event_source_disable_unref(n->src);
	close(n->fd);
	free(n);
}
