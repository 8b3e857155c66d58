/* SPDX-License-Identifier: MIT */
/* Listening sockets: parses addresses, binds them or adopts inherited ones, and
 * checks that an inherited fd is the socket the config describes. Owns no policy
 * about who gets the fds. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

struct listen_addr {
	int family;   /* AF_INET, AF_INET6, AF_UNIX */
	int socktype; /* SOCK_STREAM, SOCK_DGRAM */
	struct sockaddr_storage sa;
	socklen_t sa_len;
	bool abstract;						/* unix:@name */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix: path or abstract name */
};

/* Parses "tcp://HOST:PORT", "tcp://[V6]:PORT", "udp://HOST:PORT", "unix:/path",
 * "unix:@abstract". HOST is a numeric address (no DNS: batond never blocks) or
 * "localhost"/"*". Returns 0, or -EINVAL with a short reason in @err, e.g.
 * "port out of range". */
int listen_addr_parse(const char *text, struct listen_addr *ret, char *err, size_t err_len);

struct listener_cfg;

/* Binds and listens per @cfg: SOCK_CLOEXEC|SOCK_NONBLOCK, SO_REUSEADDR,
 * SO_REUSEPORT if asked, backlog capped by somaxconn, unix path mode/owner. A
 * stale unix socket file (nobody accepting) is replaced; a live one is
 * -EADDRINUSE. Returns 0 with *ret_fd, or a negative errno with a reason in @err
 * ("Address already in use", "socket file is in use by a live process"). */
int listener_open(const struct listener_cfg *cfg, int *ret_fd, char *err, size_t err_len);

/* Checks that @fd (inherited from systemd) is a socket of the family, type and
 * address of @addr, listening if stream. Returns 0 or -EINVAL with a reason. */
int listener_check_inherited(int fd, const struct listen_addr *addr, char *err, size_t err_len);

/* Prepares a unix socket path for bind: 0 if free or stale (stale file
 * unlinked), -EADDRINUSE if a live socket answers there, -ENOTSOCK if the path
 * is not a socket, other negative errno otherwise. Shared by listeners and the
 * control socket. */
int unix_path_claim(const char *path);

/* Binds @fd (an AF_UNIX socket, not yet bound) to @path without following a
 * symbolic link anywhere on it and without a window for anyone to swap the file:
 * every directory of the path is opened in turn (created 0755 if missing and
 * @make_dirs) and must be changeable by nobody but root and batond's user (not
 * writable by group or others unless sticky and owned by root); the path is then
 * claimed (unix_path_claim); the socket file is created with @mode ((mode_t)-1:
 * as the umask says) and then given @uid/@gid (either -1: unchanged) on the entry itself.
 * Returns 0, or a negative errno with a reason in @err naming the directory or
 * file, e.g. "directory /srv/x is writable by others (mode 0777) and not sticky
 * and owned by root". Nothing is left bound on failure. */
int unix_path_bind(int fd, const char *path, mode_t mode, uid_t uid, gid_t gid, bool make_dirs,
		   char *err, size_t err_len);
