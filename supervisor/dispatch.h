/* SPDX-License-Identifier: MIT */
/* Dispatch mode: batond accepts on an app's listeners and hands each
 * connection to a ready worker of the serving generation over its channel,
 * several per message. Also carries parked connections (live handoff) to the
 * successor generation, in either mode. Owns accepted fds until they are sent,
 * and each worker's dispatch counters (delivered, done); knows workers only
 * by generation id and index, and their channels through dispatch_ops. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"

struct channel;
struct dispatch;
struct proto_conn;

struct dispatch_ops {
	/* The channel of worker @index of generation @gen_id (the serving one or
	 * the canary) if that worker takes connections now, else NULL. Asked
	 * afresh each time, never kept. */
	struct channel *(*ready_channel)(void *userdata, unsigned gen_id, unsigned index);
};

struct dispatch_listener_stats {
	uint64_t accepted;
	uint64_t timed_out; /* held past hold-timeout and closed */
	unsigned held;	    /* held now */
};

struct dispatch_worker_stats {
	uint64_t delivered; /* connections sent to its current process */
	uint64_t load;	    /* of those, not reported finished */
};

int dispatch_new(sd_event *event, const struct dispatch_ops *ops, void *userdata,
		 struct dispatch **ret);
/* The app's configuration, first or after a reload: @cfg, @app and
 * @listen_fds (in the app's listener order) are borrowed until the next call.
 * Watches the listeners of a dispatch app (none for an inherit app: it only
 * relays parked connections); held connections and counters stay with their
 * listener's name, and those of a listener gone are closed. */
void dispatch_set_config(struct dispatch *dp, const struct config *cfg,
			 const struct app_cfg *app, const int *listen_fds);
void dispatch_free(struct dispatch *dp);
/* Generation @gen_id (0: none) with @n_workers serves from now on. */
void dispatch_serve(struct dispatch *dp, unsigned gen_id, unsigned n_workers);
/* Generation @gen_id (0: none) with @n_workers is a canary: it takes
 * @share_num/@share_den of the new connections, the serving generation the
 * rest (either takes all while the other has no worker that can take one). */
void dispatch_canary(struct dispatch *dp, unsigned gen_id, unsigned n_workers, unsigned share_num,
		     unsigned share_den);
/* Generation @gen_id is gone: its counters too. */
void dispatch_forget(struct dispatch *dp, unsigned gen_id);
/* Something changed that may let connections move: a worker became ready or
 * its channel writable, the serving generation changed. */
void dispatch_kick(struct dispatch *dp);
/* Stop accepting and close what is held (batond is stopping). */
void dispatch_stop(struct dispatch *dp);
/* Worker @index of generation @gen_id reported @n connections finished: the
 * least-loaded signal. */
void dispatch_conn_done(struct dispatch *dp, unsigned gen_id, unsigned index, uint32_t n);
/* A connection went to worker @index of generation @gen_id outside placement
 * (a health probe): counted as delivered, as its CONN_DONE will be. */
void dispatch_sent_aside(struct dispatch *dp, unsigned gen_id, unsigned index);
/* A worker parks live connection @fd (taken: closed if refused) with its
 * record. Held until the next dispatch_kick. Returns 0, or -ENOENT (no such
 * listener in the app), -EMSGSIZE (state larger than PROTO_STATE_MAX),
 * -EINVAL (bad peer address), -ESHUTDOWN (stopping), -ENOBUFS (hold-max held
 * already) or -EMFILE (held connections would take more than their share of
 * batond's fds: the rest is kept for spawning and the control socket). */
int dispatch_park(struct dispatch *dp, int fd, const struct proto_conn *rec);
/* Across a re-exec (reexec.c): what is held (fds recorded in @s) and the
 * counters; and the same put back into a dispatch whose configuration is set.
 * On failure nothing held is closed (reexec.h). */
struct json_object;
struct reexec_save;
struct json_object *dispatch_save(const struct dispatch *dp, struct reexec_save *s);
int dispatch_restore(struct dispatch *dp, struct json_object *j);
void dispatch_listener_stats(const struct dispatch *dp, size_t i,
			     struct dispatch_listener_stats *ret);
/* Zeros for a worker dispatch never sent to. */
void dispatch_worker_stats(const struct dispatch *dp, unsigned gen_id, unsigned index,
			   struct dispatch_worker_stats *ret);
