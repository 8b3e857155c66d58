/* SPDX-License-Identifier: MIT */
/* The control socket batonctl talks to: AF_UNIX SOCK_SEQPACKET, peers checked
 * with SO_PEERCRED, requests answered with the wire protocol. It never accepts
 * fds. Owns the socket path while batond runs. */
#pragma once

struct daemon;
struct control;

/* Binds d->cfg->control_socket. Refuses (-EADDRINUSE, reason logged) if a live
 * batond answers there; a stale socket file is replaced. */
int control_open(struct daemon *d, struct control **ret);
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
