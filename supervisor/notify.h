/* The notify socket workers report to (NOTIFY_SOCKET): READY=1, STATUS=,
 * STOPPING=1, attributed by the sender's pid from SCM_CREDENTIALS. Owns the
 * socket; what a state means is the caller's business. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

struct notify_state {
	bool ready;
	bool stopping;
	const char *status; /* NULL if the datagram had no STATUS= */
};

/* Returns false if @pid is not a worker (the datagram is then dropped and logged). */
typedef bool (*notify_handler_t)(void *userdata, pid_t pid, const struct notify_state *st);

struct notify;
/* Binds an abstract datagram socket and watches it. *ret_address is the value
 * for NOTIFY_SOCKET, owned by the notify object. */
int notify_open(sd_event *event, notify_handler_t handler, void *userdata, struct notify **ret);
const char *notify_address(const struct notify *n);
void notify_close(struct notify *n);
