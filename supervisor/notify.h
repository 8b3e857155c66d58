/* SPDX-License-Identifier: MIT */
/* The notify socket workers report to (NOTIFY_SOCKET): READY=1, STATUS=,
 * STOPPING=1, attributed by the sender's pid from SCM_CREDENTIALS. Owns the
 * socket and the private directory it lives in; what a state means is the
 * caller's business. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#define NOTIFY_SOCKET_NAME "notify" /* the socket's name inside its directory */

struct notify_state {
	bool ready;
	bool stopping;
	const char *status; /* NULL if the datagram had no STATUS= */
};

/* Returns false if @pid is not a worker (the datagram is then dropped). */
typedef bool (*notify_handler_t)(void *userdata, pid_t pid, const struct notify_state *st);

struct notify;
/* Binds a datagram socket at @dir/notify and watches it. @dir is created mode
 * 0700, or taken over if it is already a directory (not a symlink) of batond's
 * effective uid, and set to 0700: only processes of batond's user can reach the
 * socket, which is what keeps other local users from flooding it. Workers of
 * apps with a user of their own get a socket of that user's (notify_socket_for).
 * A socket file left in @dir by a batond that crashed is replaced: the caller
 * must own @dir's name (batond derives it from its control socket, which it has
 * claimed first). On failure returns a negative errno with a message naming
 * the path and the cause in @err. */
int notify_open(sd_event *event, const char *dir, notify_handler_t handler, void *userdata,
		struct notify **ret, char *err, size_t err_len);
/* The value for NOTIFY_SOCKET: an absolute path, owned by the notify object. */
const char *notify_address(const struct notify *n);
/* NOTIFY_SOCKET for workers running as @uid: batond's own socket for batond's
 * uid; else "notify-UID" in the same directory, made once, the file @uid's and
 * mode 0600, the directory then 0711 (others may pass, not list): only that
 * user and root reach it. NULL with the reason in @err if it cannot be made. */
const char *notify_socket_for(struct notify *n, sd_event *event, uid_t uid, char *err,
			      size_t err_len);
/* Closes the sockets and removes their files and the directory. */
void notify_close(struct notify *n);
/* Across a re-exec (reexec.c): the sockets and the directory's fd, recorded
 * in @s; and the notify object made again from them in @dir (nothing freed or
 * closed on failure, reexec.h). */
struct json_object;
struct reexec_save;
struct json_object *notify_save(const struct notify *n, struct reexec_save *s);
int notify_restore(sd_event *event, const char *dir, notify_handler_t handler, void *userdata,
		   struct json_object *j, struct notify **ret);
