/* SPDX-License-Identifier: MIT */
/* Notify socket: a path datagram socket in a directory only batond's user can
 * enter. Datagrams are parsed sd_notify-style (newline-separated KEY=VALUE) and
 * handed on by sender pid; any fds a sender attaches (FDSTORE=1 is systemd's
 * business, not ours) are closed on receipt. A flood costs bounded work per
 * wake-up and no log line per datagram. */
#include "notify.h"
#include "log.h"
#include "reexec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define NOTIFY_RECV_BUDGET	  32 /* datagrams per wake-up, so a flood cannot starve the loop */
#define NOTIFY_DROP_INTERVAL_USEC (10 * 1000000ULL) /* one line per interval sums up drops */
#define NOTIFY_RECENT_MAX	  64 /* senders remembered after the handler knew them */
/* Before child sources (SD_EVENT_PRIORITY_NORMAL): a worker's last datagram
 * (STOPPING=1, then exit) is queued before its exit is seen, and must be read
 * while it is still a worker. */
#define NOTIFY_PRIORITY (SD_EVENT_PRIORITY_NORMAL - 1)

/* A socket of its own for workers of another user (notify_socket_for). */
struct user_socket {
	uid_t uid;
	int fd;
	sd_event_source *src;
	char name[32]; /* in the directory: "notify-UID" */
	char *address;
};

struct notify {
	int fd;
	int dir_fd;
	char *dir;
	char *address;
	sd_event_source *src;
	struct user_socket *users;
	size_t n_users;
	notify_handler_t handler;
	void *userdata;
	/* Drops: the first is logged, then counted until a quiet interval. */
	sd_event_source *drop_timer;
	bool counting_drops;
	unsigned drops;
	pid_t last_drop_pid;
	/* A ring of workers that spoke, to tell a worker that has exited since (its
	 * datagram read after its exit was handled) from a process that never was one. */
	pid_t recent[NOTIFY_RECENT_MAX];
	unsigned recent_next;
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

static bool was_worker(const struct notify *n, pid_t pid)
{
	for (unsigned i = 0; i < NOTIFY_RECENT_MAX; i++)
		if (n->recent[i] == pid)
			return true;
	return false;
}

static void remember(struct notify *n, pid_t pid)
{
	if (was_worker(n, pid))
		return;
	n->recent[n->recent_next] = pid;
	n->recent_next = (n->recent_next + 1) % NOTIFY_RECENT_MAX;
}

static void log_drops(struct notify *n)
{
	log_warn("notify: %u more datagrams dropped, the last from pid %d", n->drops,
		 (int)n->last_drop_pid);
	n->drops = 0;
}

static int on_drop_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct notify *n = userdata;
	if (n->drops == 0) {
		n->counting_drops = false; /* quiet: the next drop is logged again */
		return 0;
	}
	log_drops(n);
	if (sd_event_source_set_time_relative(s, NOTIFY_DROP_INTERVAL_USEC) < 0 ||
	    sd_event_source_set_enabled(s, SD_EVENT_ONESHOT) < 0)
		n->counting_drops = false;
	return 0;
}

static void drop(struct notify *n, pid_t pid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void drop(struct notify *n, pid_t pid, const char *fmt, ...)
{
	n->last_drop_pid = pid;
	if (n->counting_drops) {
		n->drops++;
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	log_msgv(LOG_WARNING, "notify: dropped datagram ", fmt, ap);
	va_end(ap);
	if (sd_event_source_set_time_relative(n->drop_timer, NOTIFY_DROP_INTERVAL_USEC) >= 0 &&
	    sd_event_source_set_enabled(n->drop_timer, SD_EVENT_ONESHOT) >= 0)
		n->counting_drops = true;
}

/* Lets the rest of the loop run between batches while a flood lasts, and puts
 * the socket back before child sources once it is empty. */
/* A socket whose budget ran out drops to normal priority until its queue is
 * empty: a flood cannot keep the rest of the loop waiting. */
static void set_flooded(sd_event_source *s, bool flooded)
{
	int64_t want = flooded ? SD_EVENT_PRIORITY_NORMAL : NOTIFY_PRIORITY, now;
	if (sd_event_source_get_priority(s, &now) >= 0 && now != want)
		sd_event_source_set_priority(s, want);
}

static void receive_one(struct notify *n, char *buf, ssize_t len, struct msghdr *mh)
{
	struct ucred cred = {.pid = 0};
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(cred)))
			memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
	if (cred.pid <= 0) {
		drop(n, 0, "without credentials");
		return;
	}
	if (mh->msg_flags & MSG_TRUNC) {
		drop(n, cred.pid, "from pid %d: longer than 4 KiB", (int)cred.pid);
		return;
	}
	buf[len] = 0;
	struct notify_state st = {0};
	parse(buf, &st);
	if (n->handler(n->userdata, cred.pid, &st))
		remember(n, cred.pid);
	else if (was_worker(n, cred.pid))
		log_debug("notify: dropped datagram from pid %d, a worker that has exited",
			  (int)cred.pid);
	else
		drop(n, cred.pid, "from pid %d, which is not a worker", (int)cred.pid);
}

static int on_notify(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct notify *n = userdata;
	for (int budget = NOTIFY_RECV_BUDGET; budget > 0; budget--) {
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
			if (errno == EAGAIN)
				set_flooded(s, false);
			else
				log_warn("notify: recvmsg: %s", strerror(errno));
			return 0;
		}
		close_cmsg_fds(&mh);
		receive_one(n, buf, len, &mh);
	}
	set_flooded(s, true);
	return 0;
}

static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	return r;
}

/* Creates @dir mode 0700, or takes it over if it is a directory of ours (never
 * through a symlink), and returns an fd of it: what is bound inside is bound
 * in the directory checked here, whatever happens to the path meanwhile. */
static int open_private_dir(const char *dir, int *ret_fd, char *err, size_t err_len)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fail(err, err_len, -errno, "notify socket directory %s: %s", dir,
			    strerror(errno));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int r = -errno;
		return fail(err, err_len, r, "notify socket directory %s: %s", dir,
			    r == -ELOOP || r == -ENOTDIR ? "exists and is not a directory"
							 : strerror(-r));
	}
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) < 0)
		r = fail(err, err_len, -errno, "notify socket directory %s: %s", dir,
			 strerror(errno));
	else if (st.st_uid != geteuid())
		r = fail(err, err_len, -EPERM,
			 "notify socket directory %s: owned by uid %u, not by batond's uid %u", dir,
			 (unsigned)st.st_uid, (unsigned)geteuid());
	else if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
		r = fail(err, err_len, -errno, "notify socket directory %s: chmod 0700: %s", dir,
			 strerror(errno));
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* Binds @fd to @name inside @dir_fd, replacing a stale socket file. */
static int bind_in_dir(int fd, int dir_fd, const char *name, const char *address)
{
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	/* Through the directory fd, not the path; the path only without /proc. */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dir_fd, name);
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == ENOENT && access("/proc/self/fd", F_OK) < 0) {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", address);
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	r = r < 0 ? -errno : 0;
	umask(old);
	return r;
}

/* A datagram socket with SO_PASSCRED, bound at @name in the directory. */
static int open_socket(struct notify *n, const char *name, const char *address, int *ret_fd)
{
	int one = 1, r = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    (r = bind_in_dir(fd, n->dir_fd, name, address)) < 0) {
		r = r < 0 ? r : -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static int watch(struct notify *n, sd_event *event);

int notify_open(sd_event *event, const char *dir, notify_handler_t handler, void *userdata,
		struct notify **ret, char *err, size_t err_len)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
	size_t len = strlen(dir) + 1 + strlen(NOTIFY_SOCKET_NAME);
	if (dir[0] != '/')
		return fail(err, err_len, -EINVAL, "notify socket directory %s: not absolute", dir);
	if (len > max)
		return fail(err, err_len, -ENAMETOOLONG,
			    "notify socket %s/%s: path too long (%zu bytes, at most %zu)", dir,
			    NOTIFY_SOCKET_NAME, len, max);
	struct notify *n = calloc(1, sizeof(*n));
	if (!n)
		return fail(err, err_len, -ENOMEM, "notify socket: %s", strerror(ENOMEM));
	n->fd = -1;
	n->dir_fd = -1;
	n->handler = handler;
	n->userdata = userdata;
	n->dir = strdup(dir);
	n->address = malloc(len + 1);
	int r;
	if (!n->dir || !n->address) {
		r = fail(err, err_len, -ENOMEM, "notify socket: %s", strerror(ENOMEM));
		goto fail;
	}
	snprintf(n->address, len + 1, "%s/%s", dir, NOTIFY_SOCKET_NAME);
	r = open_private_dir(dir, &n->dir_fd, err, err_len);
	if (r < 0)
		goto fail;
	r = open_socket(n, NOTIFY_SOCKET_NAME, n->address, &n->fd);
	if (r < 0) {
		fail(err, err_len, r, "notify socket %s: %s", n->address, strerror(-r));
		goto fail;
	}
	if ((r = watch(n, event)) < 0) {
		fail(err, err_len, r, "notify socket %s: event source: %s", n->address,
		     strerror(-r));
		goto fail;
	}
	*ret = n;
	return 0;
fail:
	notify_close(n);
	return r;
}

const char *notify_address(const struct notify *n)
{
	return n->address;
}

const char *notify_socket_for(struct notify *n, sd_event *event, uid_t uid, char *err,
			      size_t err_len)
{
	if (uid == geteuid())
		return n->address;
	for (size_t i = 0; i < n->n_users; i++)
		if (n->users[i].uid == uid)
			return n->users[i].address;
	struct user_socket *users = realloc(n->users, (n->n_users + 1) * sizeof(*users));
	if (!users) {
		fail(err, err_len, -ENOMEM, "notify socket: %s", strerror(ENOMEM));
		return NULL;
	}
	n->users = users;
	struct user_socket *u = &users[n->n_users];
	*u = (struct user_socket){.uid = uid, .fd = -1};
	snprintf(u->name, sizeof(u->name), "%s-%u", NOTIFY_SOCKET_NAME, (unsigned)uid);
	int r = -ENOMEM;
	if (asprintf(&u->address, "%s/%s", n->dir, u->name) < 0) {
		u->address = NULL;
		goto fail;
	}
	if (strlen(u->address) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	/* The directory lets others through to a name they know, lists nothing;
	 * the socket is the user's alone (0600). */
	if (fchmod(n->dir_fd, 0711) < 0 || (r = open_socket(n, u->name, u->address, &u->fd)) < 0 ||
	    fchownat(n->dir_fd, u->name, uid, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0 ||
	    (r = sd_event_add_io(event, &u->src, u->fd, EPOLLIN, on_notify, n)) < 0 ||
	    (r = sd_event_source_set_priority(u->src, NOTIFY_PRIORITY)) < 0) {
		r = r < 0 ? r : -errno;
		goto fail;
	}
	n->n_users++;
	return u->address;
fail:
	fail(err, err_len, r, "notify socket %s/%s for uid %u: %s", n->dir, u->name, (unsigned)uid,
	     strerror(-r));
	sd_event_source_disable_unref(u->src);
	if (u->fd >= 0) {
		close(u->fd);
		unlinkat(n->dir_fd, u->name, 0);
	}
	free(u->address);
	return NULL;
}

void notify_close(struct notify *n)
{
	if (!n)
		return;
	if (n->drops)
		log_drops(n);
	sd_event_source_disable_unref(n->src);
	sd_event_source_disable_unref(n->drop_timer);
	if (n->fd >= 0)
		close(n->fd);
	for (size_t i = 0; i < n->n_users; i++) {
		sd_event_source_disable_unref(n->users[i].src);
		close(n->users[i].fd);
		if (n->dir_fd >= 0)
			unlinkat(n->dir_fd, n->users[i].name, 0);
		free(n->users[i].address);
	}
	free(n->users);
	/* Only a directory that passed open_private_dir is ours to clean. */
	if (n->dir_fd >= 0) {
		unlinkat(n->dir_fd, NOTIFY_SOCKET_NAME, 0);
		close(n->dir_fd);
		rmdir(n->dir);
	}
	free(n->address);
	free(n->dir);
	free(n);
}

struct json_object *notify_save(const struct notify *n, struct reexec_save *s)
{
	struct json_object *j = json_object_new_object(), *users = json_object_new_array();
	rx_set_int(j, "fd", reexec_keep_fd(s, n->fd));
	rx_set_int(j, "dir_fd", reexec_keep_fd(s, n->dir_fd));
	rx_set_str(j, "dir", n->dir); /* where it was made: the control socket may have moved since */
	for (size_t i = 0; i < n->n_users; i++) {
		struct json_object *uj = json_object_new_object();
		rx_set_int(uj, "uid", n->users[i].uid);
		rx_set_int(uj, "fd", reexec_keep_fd(s, n->users[i].fd));
		json_object_array_add(users, uj);
	}
	rx_set(j, "users", users);
	return j;
}

/* The sources notify_open adds, for a socket it has. */
static int watch(struct notify *n, sd_event *event)
{
	int r;
	if ((r = sd_event_add_io(event, &n->src, n->fd, EPOLLIN, on_notify, n)) < 0 ||
	    (r = sd_event_source_set_priority(n->src, NOTIFY_PRIORITY)) < 0 ||
	    (r = sd_event_add_time_relative(event, &n->drop_timer, CLOCK_MONOTONIC,
					    NOTIFY_DROP_INTERVAL_USEC, 0, on_drop_timer, n)) < 0 ||
	    (r = sd_event_source_set_enabled(n->drop_timer, SD_EVENT_OFF)) < 0)
		return r;
	return 0;
}

int notify_restore(sd_event *event, const char *dir, notify_handler_t handler, void *userdata,
		   struct json_object *j, struct notify **ret)
{
	dir = rx_str(j, "dir") ?: dir;
	size_t n_users = rx_len(j, "users");
	struct notify *n = calloc(1, sizeof(*n));
	if (!n || !(n->users = calloc(n_users ? n_users : 1, sizeof(*n->users))) ||
	    !(n->dir = strdup(dir)) || asprintf(&n->address, "%s/%s", dir, NOTIFY_SOCKET_NAME) < 0)
		return -ENOMEM;
	n->handler = handler;
	n->userdata = userdata;
	n->fd = (int)rx_int(j, "fd", -1);
	n->dir_fd = (int)rx_int(j, "dir_fd", -1);
	if (n->fd < 0 || n->dir_fd < 0)
		return -EBADMSG;
	int r = watch(n, event);
	for (size_t i = 0; i < n_users && r >= 0; i++) {
		struct json_object *uj = rx_at(j, "users", i);
		struct user_socket *u = &n->users[i];
		*u = (struct user_socket){.uid = (uid_t)rx_int(uj, "uid", 0),
					  .fd = (int)rx_int(uj, "fd", -1)};
		snprintf(u->name, sizeof(u->name), "%s-%u", NOTIFY_SOCKET_NAME, (unsigned)u->uid);
		if (u->fd < 0)
			return -EBADMSG;
		if (asprintf(&u->address, "%s/%s", dir, u->name) < 0)
			return -ENOMEM;
		if ((r = sd_event_add_io(event, &u->src, u->fd, EPOLLIN, on_notify, n)) < 0 ||
		    (r = sd_event_source_set_priority(u->src, NOTIFY_PRIORITY)) < 0)
			return r;
		n->n_users++;
	}
	if (r < 0)
		return r;
	*ret = n;
	return 0;
}
