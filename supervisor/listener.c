/* SPDX-License-Identifier: MIT */
/* Listening sockets: parses listener addresses, binds them, and checks sockets
 * inherited from systemd against the config. Decides nothing about who gets a
 * socket and never logs: reasons go to the caller's buffer. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define SOMAXCONN_PATH "/proc/sys/net/core/somaxconn"

static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the reason into @err and returns @r, so error paths stay one line. */
static int fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && err_len > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int parse_port(const char *text, uint16_t *ret_port, char *err, size_t err_len)
{
	unsigned long port = 0;

	if (*text == '\0')
		return fail(err, err_len, -EINVAL, "missing port");
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return fail(err, err_len, -EINVAL, "port \"%s\" is not a number", text);
		port = port * 10 + (unsigned long)(*p - '0');
		if (port > 65535)
			break;
	}
	/* Port 0 would make the kernel pick a new port on every start. */
	if (port == 0 || port > 65535)
		return fail(err, err_len, -EINVAL, "port out of range");
	*ret_port = (uint16_t)port;
	return 0;
}

/* HOST:PORT or [V6]:PORT, after the scheme. @want_v6 is set for tcp6:// and udp6://. */
static int parse_inet(const char *hostport, bool want_v6, struct listen_addr *a, char *err,
		      size_t err_len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	size_t host_len;
	uint16_t port;
	bool bracketed = hostport[0] == '[';
	int r;

	if (bracketed) {
		const char *close = strchr(hostport, ']');
		if (!close)
			return fail(err, err_len, -EINVAL, "missing ']' after IPv6 address");
		if (close[1] != ':')
			return fail(err, err_len, -EINVAL, "missing port");
		host_len = (size_t)(close - hostport - 1);
		hostport++;
		colon = close + 1;
	} else {
		colon = strrchr(hostport, ':');
		if (!colon)
			return fail(err, err_len, -EINVAL, "missing port");
		host_len = (size_t)(colon - hostport);
		if (memchr(hostport, ':', host_len))
			return fail(err, err_len, -EINVAL,
				    "IPv6 address must be in brackets, as [::1]:PORT");
	}
	if (host_len == 0)
		return fail(err, err_len, -EINVAL, "missing host");
	if (host_len >= sizeof(host))
		return fail(err, err_len, -EINVAL, "host is not a numeric address");
	memcpy(host, hostport, host_len);
	host[host_len] = '\0';

	r = parse_port(colon + 1, &port, err, err_len);
	if (r < 0)
		return r;

	if (bracketed || want_v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;

		if (strchr(host, '%'))
			return fail(err, err_len, -EINVAL, "IPv6 zone ids are not supported");
		if (strcmp(host, "*") == 0)
			sin6->sin6_addr = in6addr_any;
		else if (strcmp(host, "localhost") == 0)
			sin6->sin6_addr = in6addr_loopback;
		else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return fail(err, err_len, -EINVAL, "\"%s\" is not a numeric IPv6 address",
				    host);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		a->family = AF_INET6;
		a->sa_len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;

		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (strcmp(host, "localhost") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return fail(err, err_len, -EINVAL,
				    "\"%s\" is not a numeric IPv4 address (names are not resolved)",
				    host);
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		a->family = AF_INET;
		a->sa_len = sizeof(*sin);
	}
	return 0;
}

static int parse_unix(const char *path, struct listen_addr *a, char *err, size_t err_len)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&a->sa;
	size_t len;

	a->abstract = path[0] == '@';
	if (a->abstract)
		path++;
	len = strlen(path);
	if (len == 0)
		return fail(err, err_len, -EINVAL, "missing socket path");
	if (!a->abstract && path[0] != '/')
		return fail(err, err_len, -EINVAL, "unix socket path must be absolute");
	/* A path needs its NUL in sun_path; an abstract name needs the leading NUL. */
	if (len >= sizeof(sun->sun_path))
		return fail(err, err_len, -EINVAL,
			    "unix socket path is too long (at most %zu bytes)",
			    sizeof(sun->sun_path) - 1);

	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path + a->abstract, path, len);
	memcpy(a->path, path, len + 1);
	a->family = AF_UNIX;
	a->socktype = SOCK_STREAM;
	/* One byte more than the name: a path's trailing NUL, or an abstract name's
	 * leading one (abstract names are not NUL-terminated; the length counts). */
	a->sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
	return 0;
}

int listen_addr_parse(const char *text, struct listen_addr *ret, char *err, size_t err_len)
{
	static const struct {
		const char *prefix;
		int socktype;
		bool v6;
	} schemes[] = {
	    {"tcp://", SOCK_STREAM, false},
	    {"tcp6://", SOCK_STREAM, true},
	    {"udp://", SOCK_DGRAM, false},
	    {"udp6://", SOCK_DGRAM, true},
	};
	struct listen_addr a = {0};
	int r;

	if (strncmp(text, "unix:", 5) == 0) {
		r = parse_unix(text + 5, &a, err, err_len);
		if (r < 0)
			return r;
		*ret = a;
		return 0;
	}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i].prefix);

		if (strncmp(text, schemes[i].prefix, n) != 0)
			continue;
		r = parse_inet(text + n, schemes[i].v6, &a, err, err_len);
		if (r < 0)
			return r;
		a.socktype = schemes[i].socktype;
		*ret = a;
		return 0;
	}
	return fail(err, err_len, -EINVAL,
		    "unknown scheme (expected tcp://, tcp6://, udp://, udp6:// or unix:)");
}

static int probe_connect(const char *path, int socktype)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, r;

	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	fd = socket(AF_UNIX, socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int unix_path_claim(const char *path)
{
	static const int socktypes[] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};
	struct stat st;
	int r = -EPROTOTYPE;

	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;

	/* Someone accepting (or with a full queue: EAGAIN) still owns the path. A
	 * live stream server sees one connection that closes at once. */
	for (size_t i = 0; i < sizeof(socktypes) / sizeof(socktypes[0]) && r == -EPROTOTYPE; i++)
		r = probe_connect(path, socktypes[i]);
	if (r == 0 || r == -EAGAIN || r == -EINPROGRESS)
		return -EADDRINUSE;
	if (r != -ECONNREFUSED)
		return r;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Refuses a directory that someone other than root or batond's user could
 * change an entry of: they could swap the socket file (or a directory on the
 * way) between bind() and what batond does to it next. A sticky directory of
 * root's (/tmp) lets nobody replace what batond created there. */
static int check_dir_owner(int dirfd, const char *shown, char *err, size_t err_len)
{
	struct stat st;
	uid_t me = geteuid();

	if (fstat(dirfd, &st) < 0)
		return fail(err, err_len, -errno, "%s: %s", shown, strerror(errno));
	if (st.st_uid != 0 && st.st_uid != me)
		return me == 0 ? fail(err, err_len, -EPERM,
				      "directory %s belongs to uid %u, not to root", shown,
				      (unsigned)st.st_uid)
			       : fail(err, err_len, -EPERM,
				      "directory %s belongs to uid %u, neither root nor batond's "
				      "uid %u",
				      shown, (unsigned)st.st_uid, (unsigned)me);
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !((st.st_mode & S_ISVTX) && st.st_uid == 0))
		return fail(err, err_len, -EPERM,
			    "directory %s is writable by others (mode %04o) and not sticky and "
			    "owned by root",
			    shown, (unsigned)(st.st_mode & 07777));
	return 0;
}

/* Opens the directory @path's last component is in, one component at a time
 * with O_NOFOLLOW, each checked by check_dir_owner. Returns an O_PATH fd. */
static int open_socket_dir(const char *path, bool make_dirs, char *err, size_t err_len)
{
	const char *base = strrchr(path, '/');
	char shown[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char name[sizeof(shown)];
	int dirfd, r;

	base = base ? base + 1 : path;
	dirfd = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return fail(err, err_len, -errno, "%s: %s", path[0] == '/' ? "/" : ".",
			    strerror(errno));
	r = check_dir_owner(dirfd, path[0] == '/' ? "/" : ".", err, err_len);
	for (const char *p = path; r >= 0;) {
		const char *end;
		int next;

		while (*p == '/')
			p++;
		if (p >= base)
			break;
		end = strchr(p, '/'); /* base follows the last '/': end < base */
		snprintf(shown, sizeof(shown), "%.*s", (int)(end - path), path);
		snprintf(name, sizeof(name), "%.*s", (int)(end - p), p);
		p = end;
		next = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && make_dirs) {
			if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST) {
				r = fail(err, err_len, -errno, "cannot create directory %s: %s",
					 shown, strerror(errno));
				break;
			}
			next = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			struct stat st;
			int e = errno;

			if ((e == ELOOP || e == ENOTDIR) &&
			    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				r = fail(err, err_len, -ELOOP,
					 "%s is a symbolic link: batond follows none in a socket "
					 "path",
					 shown);
			else
				r = fail(err, err_len, -e, "%s: %s", shown, strerror(e));
			break;
		}
		close(dirfd);
		dirfd = next;
		r = check_dir_owner(dirfd, shown, err, err_len);
	}
	if (r < 0) {
		close(dirfd);
		return r;
	}
	return dirfd;
}

int unix_path_bind(int fd, const char *path, mode_t mode, uid_t uid, gid_t gid, bool make_dirs,
		   char *err, size_t err_len)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *base = strrchr(path, '/');
	struct stat st;
	mode_t old_umask = 0;
	int dirfd, r;

	base = base ? base + 1 : path;
	if (strlen(path) >= sizeof(sun.sun_path))
		return fail(err, err_len, -ENAMETOOLONG, "%s: path too long (at most %zu bytes)",
			    path, sizeof(sun.sun_path) - 1);
	if (*base == '\0')
		return fail(err, err_len, -EINVAL, "%s: no file name", path);
	dirfd = open_socket_dir(path, make_dirs, err, err_len);
	if (dirfd < 0)
		return dirfd;

	/* The directories are batond's now: nobody else can change the path. */
	if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
		r = fail(err, err_len, -ENOTSOCK, "%s is a symbolic link, not a socket", path);
		goto out;
	}
	r = unix_path_claim(path);
	if (r == -EADDRINUSE)
		fail(err, err_len, r, "socket file is in use by a live process");
	else if (r == -ENOTSOCK)
		fail(err, err_len, r, "%s exists and is not a socket", path);
	else if (r < 0)
		fail(err, err_len, r, "%s: %s", path, strerror(-r));
	if (r < 0)
		goto out;

	/* Linux creates the file with the mode of the socket's own inode less the
	 * umask (checked on this kernel): fchmod before bind under umask 0 gives the
	 * file its mode as it is born, and no chmod by path ever follows. */
	if (mode != (mode_t)-1 && fchmod(fd, mode & 07777) < 0) {
		r = fail(err, err_len, -errno, "fchmod: %s", strerror(errno));
		goto out;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (mode != (mode_t)-1)
		old_umask = umask(0);
	r = bind(fd, (const struct sockaddr *)&sun, sizeof(sun)) < 0 ? -errno : 0;
	if (mode != (mode_t)-1)
		umask(old_umask);
	if (r < 0) {
		fail(err, err_len, r, "%s", strerror(-r));
		goto out;
	}
	/* Only root could have replaced it; if so, it is not ours to change. */
	if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode)) {
		r = fail(err, err_len, -EBUSY, "%s was replaced after bind", path);
		goto out;
	}
	/* On the entry, not through it: AT_SYMLINK_NOFOLLOW, in a directory only
	 * batond's user can change. Nobody can connect before listen(). */
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    fchownat(dirfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
		r = fail(err, err_len, -errno, "chown %s: %s", path, strerror(errno));
		unlinkat(dirfd, base, 0);
	}
out:
	close(dirfd);
	return r;
}

static int somaxconn(void)
{
	FILE *f = fopen(SOMAXCONN_PATH, "re");
	int value = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &value) != 1)
		value = -1;
	fclose(f);
	return value;
}

static int parse_id(const char *text, unsigned long *ret)
{
	char *end;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	*ret = strtoul(text, &end, 10);
	return (*end || errno || *ret >= (uid_t)-1) ? -EINVAL : 0;
}

/* chown(1) spelling: "user", "user:group", "user:" (the user's login group) or
 * ":group"; names or numbers. What is not given stays -1 (unchanged). */
static int resolve_owner(const char *owner, uid_t *ret_uid, gid_t *ret_gid, char *err,
			 size_t err_len)
{
	char user[256];
	const char *colon = strchr(owner, ':');
	const char *group = colon ? colon + 1 : "";
	size_t user_len = colon ? (size_t)(colon - owner) : strlen(owner);
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1, login_gid = (gid_t)-1;
	unsigned long id;

	if (user_len >= sizeof(user))
		return fail(err, err_len, -EINVAL, "owner \"%s\": user name too long", owner);
	memcpy(user, owner, user_len);
	user[user_len] = '\0';

	if (user_len > 0 && parse_id(user, &id) == 0) {
		uid = (uid_t)id;
	} else if (user_len > 0) {
		struct passwd *pw;

		errno = 0;
		pw = getpwnam(user);
		if (!pw)
			return fail(err, err_len, errno ? -errno : -ENOENT,
				    "owner \"%s\": unknown user \"%s\"", owner, user);
		uid = pw->pw_uid;
		login_gid = pw->pw_gid;
	}

	if (*group && parse_id(group, &id) == 0) {
		gid = (gid_t)id;
	} else if (*group) {
		struct group *gr;

		errno = 0;
		gr = getgrnam(group);
		if (!gr)
			return fail(err, err_len, errno ? -errno : -ENOENT,
				    "owner \"%s\": unknown group \"%s\"", owner, group);
		gid = gr->gr_gid;
	} else if (colon) {
		gid = login_gid;
	}
	*ret_uid = uid;
	*ret_gid = gid;
	return 0;
}

static int set_int_opt(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

int listener_open(const struct listener_cfg *cfg, int *ret_fd, char *err, size_t err_len)
{
	const struct listen_addr *a = &cfg->addr;
	bool unix_path = a->family == AF_UNIX && !a->abstract;
	bool bound = false;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	int fd, r, backlog, max_backlog;

	if (unix_path && cfg->owner) {
		r = resolve_owner(cfg->owner, &uid, &gid, err, err_len);
		if (r < 0)
			return r;
	}

	fd = socket(a->family, a->socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail(err, err_len, -errno, "socket: %s", strerror(errno));

	if (a->family != AF_UNIX && a->socktype == SOCK_STREAM) {
		r = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (r < 0) {
			fail(err, err_len, r, "SO_REUSEADDR: %s", strerror(-r));
			goto fail;
		}
	}
	if (cfg->reuseport) {
		r = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
		if (r < 0) {
			fail(err, err_len, r, "SO_REUSEPORT: %s", strerror(-r));
			goto fail;
		}
	}
	if (a->family == AF_INET6) {
		r = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
		if (r < 0) {
			fail(err, err_len, r, "IPV6_V6ONLY: %s", strerror(-r));
			goto fail;
		}
	}

	/* A path gets its mode and owner before listen(): until then nobody can
	 * connect, so no client slips in under looser permissions. */
	if (unix_path)
		r = unix_path_bind(fd, a->path, cfg->mode ? cfg->mode : (mode_t)-1, uid, gid, false,
				   err, err_len);
	else if (bind(fd, (const struct sockaddr *)&a->sa, a->sa_len) < 0)
		r = fail(err, err_len, -errno, "%s", strerror(errno));
	else
		r = 0;
	if (r < 0)
		goto fail;
	bound = true;

	if (a->socktype != SOCK_DGRAM) {
		backlog = cfg->backlog > 0 ? cfg->backlog : 4096;
		max_backlog = somaxconn();
		if (max_backlog > 0 && backlog > max_backlog)
			backlog = max_backlog;
		if (listen(fd, backlog) < 0) {
			r = -errno;
			fail(err, err_len, r, "listen: %s", strerror(-r));
			goto fail;
		}
	}

	*ret_fd = fd;
	return 0;

fail:
	if (bound && unix_path)
		unlink(a->path);
	close(fd);
	return r;
}

static const char *family_name(int family)
{
	switch (family) {
	case AF_INET:
		return "IPv4";
	case AF_INET6:
		return "IPv6";
	case AF_UNIX:
		return "unix";
	default:
		return "unknown family";
	}
}

static const char *socktype_name(int socktype)
{
	switch (socktype) {
	case SOCK_STREAM:
		return "stream";
	case SOCK_DGRAM:
		return "datagram";
	case SOCK_SEQPACKET:
		return "seqpacket";
	default:
		return "unknown type";
	}
}

/* Writes a socket address the way a config would spell it, for messages. */
static void format_sockaddr(const struct sockaddr_storage *ss, socklen_t len, char *buf,
			    size_t buf_len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, buf_len, "%s:%u", host, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, buf_len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else if (ss->ss_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)ss;
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
			       ? len - offsetof(struct sockaddr_un, sun_path)
			       : 0;

		if (n > 0 && sun->sun_path[0] == '\0')
			snprintf(buf, buf_len, "unix:@%.*s", (int)(n - 1), sun->sun_path + 1);
		else
			snprintf(buf, buf_len, "unix:%.*s", (int)strnlen(sun->sun_path, n),
				 sun->sun_path);
	} else {
		snprintf(buf, buf_len, "(family %d)", ss->ss_family);
	}
}

static bool unix_addr_equal(const struct listen_addr *a, const struct sockaddr_un *sun,
			    socklen_t len)
{
	size_t n;

	if (len <= offsetof(struct sockaddr_un, sun_path))
		return false; /* unnamed */
	n = len - offsetof(struct sockaddr_un, sun_path);
	if (a->abstract)
		return len == a->sa_len && memcmp(sun->sun_path + 1, a->path, n - 1) == 0 &&
		       sun->sun_path[0] == '\0';
	return strnlen(sun->sun_path, n) == strlen(a->path) &&
	       memcmp(sun->sun_path, a->path, strlen(a->path)) == 0;
}

static bool inet_addr_equal(const struct listen_addr *a, const struct sockaddr_storage *ss)
{
	if (a->family == AF_INET) {
		const struct sockaddr_in *want = (const struct sockaddr_in *)&a->sa;
		const struct sockaddr_in *got = (const struct sockaddr_in *)ss;

		return want->sin_port == got->sin_port &&
		       want->sin_addr.s_addr == got->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *want = (const struct sockaddr_in6 *)&a->sa;
	const struct sockaddr_in6 *got = (const struct sockaddr_in6 *)ss;

	return want->sin6_port == got->sin6_port &&
	       memcmp(&want->sin6_addr, &got->sin6_addr, sizeof(got->sin6_addr)) == 0;
}

/* systemd's ListenStream=PORT gives a dual-stack [::]:PORT socket, which serves
 * everything a configured 0.0.0.0:PORT would. */
static bool dual_stack_serves(int fd, const struct listen_addr *a,
			      const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *want = (const struct sockaddr_in *)&a->sa;
	const struct sockaddr_in6 *got = (const struct sockaddr_in6 *)ss;
	socklen_t len = sizeof(int);
	int v6only = 1;

	if (a->family != AF_INET || ss->ss_family != AF_INET6 ||
	    want->sin_addr.s_addr != htonl(INADDR_ANY) || want->sin_port != got->sin6_port ||
	    memcmp(&got->sin6_addr, &in6addr_any, sizeof(in6addr_any)) != 0)
		return false;
	if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) < 0)
		return false;
	return v6only == 0;
}

int listener_check_inherited(int fd, const struct listen_addr *addr, char *err, size_t err_len)
{
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof(int);
	int domain, type, accepting = 0;
	char got[160], want[160];

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
		if (errno == ENOTSOCK)
			return fail(err, err_len, -EINVAL, "not a socket");
		return fail(err, err_len, -errno, "SO_DOMAIN: %s", strerror(errno));
	}
	len = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return fail(err, err_len, -errno, "SO_TYPE: %s", strerror(errno));
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return fail(err, err_len, -errno, "getsockname: %s", strerror(errno));

	if (type != addr->socktype)
		return fail(err, err_len, -EINVAL, "socket is %s, expected %s", socktype_name(type),
			    socktype_name(addr->socktype));

	format_sockaddr(&ss, len, got, sizeof(got));
	format_sockaddr(&addr->sa, addr->sa_len, want, sizeof(want));
	if (domain != addr->family) {
		if (!dual_stack_serves(fd, addr, &ss))
			return fail(err, err_len, -EINVAL, "socket is %s (%s), expected %s",
				    family_name(domain), got, family_name(addr->family));
	} else if (domain == AF_UNIX ? !unix_addr_equal(addr, (struct sockaddr_un *)&ss, len)
				     : !inet_addr_equal(addr, &ss)) {
		return fail(err, err_len, -EINVAL, "socket is bound to %s, expected %s", got, want);
	}

	if (type == SOCK_STREAM) {
		len = sizeof(accepting);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
			return fail(err, err_len, -errno, "SO_ACCEPTCONN: %s", strerror(errno));
		if (!accepting)
			return fail(err, err_len, -EINVAL, "socket is not listening");
	}
	return 0;
}
