/* Dispatch mode: batond accepts on an app's listeners and hands each
 * connection to a ready worker of the serving generation over its channel,
 * several per message. Also carries parked connections (live handoff) to the
 * successor generation, in either mode. Owns accepted fds until they are sent. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct app;
struct dispatch;
struct proto_conn;
struct worker;

struct dispatch_listener_stats {
	uint64_t accepted;
	uint64_t timed_out; /* held past hold-timeout and closed */
	unsigned held;	    /* held now */
};

/* Watches the listeners of a dispatch app (none for an inherit app: it only
 * relays parked connections). */
int dispatch_new(struct app *a, struct dispatch **ret);
void dispatch_free(struct dispatch *dp);
/* Something changed that may let connections move: a worker became ready or
 * its channel writable, the serving generation changed. */
void dispatch_kick(struct dispatch *dp);
/* Stop accepting and close what is held (batond is stopping). */
void dispatch_stop(struct dispatch *dp);
/* The worker reported @n connections finished: the least-loaded signal. */
void dispatch_conn_done(struct worker *w, uint32_t n);
/* A draining worker parks live connection @fd (taken) with its record. */
void dispatch_park(struct worker *w, int fd, const struct proto_conn *rec);
/* The worker's channel returned EAGAIN: skip it until it is writable. */
void dispatch_channel_full(struct worker *w);
void dispatch_listener_stats(const struct dispatch *dp, size_t i,
			     struct dispatch_listener_stats *ret);
