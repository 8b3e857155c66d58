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
