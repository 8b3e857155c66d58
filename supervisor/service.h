/* batond's life under a service manager (systemd): READY, RELOADING, STATUS
 * and STOPPING through sd_notify. Harmless without NOTIFY_SOCKET. */
#pragma once

struct daemon;

/* Re-derives batond's service state from its apps and tells systemd what
 * changed. */
void service_update(struct daemon *d);
