/* SPDX-License-Identifier: MIT */
/* batond's life under a service manager (systemd): READY, RELOADING, STATUS
 * and STOPPING through sd_notify. Harmless without NOTIFY_SOCKET. */
#pragma once

struct daemon;

/* Re-derives batond's service state from its apps and tells systemd what
 * changed. */
void service_update(struct daemon *d);

/* Keeps a listener batond bound in systemd's fd store (FDSTORE=1, FDNAME=its
 * name), so that a batond that crashes gets it back through LISTEN_FDS and no
 * client is refused meanwhile. Nothing without NOTIFY_SOCKET. */
void service_store_listener(const char *name, int fd);
/* Drops a stored fd that no listener of the configuration claims any more. */
void service_forget_listener(const char *name);
