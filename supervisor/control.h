/* SPDX-License-Identifier: MIT */
/* The control socket batonctl talks to: AF_UNIX SOCK_SEQPACKET, peers checked
 * with SO_PEERCRED and SO_PEERGROUPS (group: everything, read-group: status
 * and metrics), requests answered with the wire protocol. It never accepts
 * fds. Owns the socket path while batond runs. */
#pragma once

#include <stddef.h>

struct daemon;
struct control;

/* Binds d->cfg->control_socket. Refuses (-EADDRINUSE, reason logged) if a live
 * batond answers there; a stale socket file is replaced. */
int control_open(struct daemon *d, struct control **ret);
/* A reload's control section: a socket bound at @nc's path if it moved
 * (*ret_fd, else -1), or the reason in @err it cannot be (then nothing
 * changes). Returns 0 or a negative errno. */
struct config;
int control_prepare(const struct control *ctl, const struct config *nc, int *ret_fd, char *err,
		    size_t err_len);
/* Applies it: batond listens on @fd from now on (its old path removed; open
 * connections stay), or, with @fd -1, the socket takes @nc's mode and group;
 * who may connect follows @nc's group. Never fails but for logging. */
void control_apply(struct control *ctl, const struct config *nc, int fd);
/* Tells clients waiting on "stop" that batond stopped, closes, unlinks. */
void control_close(struct control *c);
/* Across a re-exec (reexec.c): the socket and the connections that can be
 * carried (idle ones, and those waiting for the re-exec), fds recorded in
 * @s; and the control socket made again from that (nothing freed or closed
 * on failure, reexec.h). */
struct json_object;
struct reexec_save;
struct json_object *control_save(const struct control *ctl, struct reexec_save *s);
int control_restore(struct daemon *d, struct json_object *j, struct control **ret);
/* Answers the clients that asked for the re-exec: @code 0, the new image
 * runs; else the image before it came back and serves on. */
void control_reexec_done(struct control *ctl, int code, const char *text);
