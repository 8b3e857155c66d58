/* SPDX-License-Identifier: MIT */
/* batond's end of one worker's private channel (BATON_FD): the socket, its
 * event source and its flow state (full, DRAIN pending). It validates every
 * message and knows nothing of apps or generations: what a message means is
 * its owner's business, reported through channel_ops. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct proto_conn;
struct channel;

struct channel_ops {
	/* MSG_LISTENER_GET: the fd of listener @name (borrowed: batond keeps
	 * it), or -ENOENT (not a listener of this worker's app), or -EOPNOTSUPP
	 * (the app is in dispatch mode). */
	int (*listener_fd)(void *userdata, const char *name);
	/* MSG_CONN_DONE, or its shared counter moved (channel_poll_done): the
	 * worker finished @n more connections. */
	void (*conn_done)(void *userdata, uint32_t n);
	/* MSG_PARK: a live connection; takes @fd (closed if refused). Returns 0,
	 * or -EPERM when the worker may not park now (counted as a bad message:
	 * a worker that keeps at it is dropped), or another negative errno when
	 * batond cannot take it (a bound was hit; not the worker's fault). */
	int (*park)(void *userdata, int fd, const struct proto_conn *rec);
	/* The channel takes messages again after a send hit EAGAIN. */
	void (*writable)(void *userdata);
};

/* Watches @fd (taken: closed on failure too). @app is the worker's app; @who
 * names the worker in log lines (both copied). Returns 0 or a negative errno. */
int channel_new(sd_event *event, int fd, const struct channel_ops *ops, void *userdata,
		const char *app, const char *who, struct channel **ret);
/* Handles every message still queued, however many: the worker is gone and
 * what it sent last (connections it parked on its way out) must not be lost
 * with the socket. NULL is fine. */
void channel_flush_input(struct channel *ch);
/* The receive gate, for every channel at once: closed (false), a channel
 * reads nothing more (its EPOLLIN unwatched) until it opens again; sending,
 * and channel_flush_input, go on. dispatch closes it while batond holds as
 * many connections as its fds allow, so that workers parking faster than the
 * next generation adopts wait (their send blocks) instead of being refused. */
void channel_receiving(bool on);
/* Closes the socket. NULL is fine. */
void channel_free(struct channel *ch);
/* A number no other channel of this batond had: tells a respawned worker's
 * channel from its predecessor's. */
uint64_t channel_id(const struct channel *ch);
/* Across a re-exec (reexec.c): the socket (-1 once closed), whether DRAIN
 * (with its flags) waits for room, and the id the next channel would get. */
int channel_fd(const struct channel *ch);
bool channel_drain_pending(const struct channel *ch, uint16_t *ret_flags);
uint64_t channel_next_id(void);
/* Ids never repeat across images: the next channel gets at least @id. */
void channel_restore_next_id(uint64_t id);
/* What a channel of the image before this one was. */
struct channel_carry {
	uint64_t id;
	bool said_hello;
	int done_fd;	    /* its completion counter's memfd, or -1 */
	uint64_t done_seen; /* of that counter, what was reported */
	bool drain_pending;
	uint16_t drain_flags;
};
/* channel_new for a channel the image before this one had; sends the DRAIN
 * that was pending. Takes @fd and carry->done_fd (closed on failure too). */
int channel_restore(sd_event *event, int fd, const struct channel_carry *carry,
		    const struct channel_ops *ops, void *userdata, const char *app, const char *who,
		    struct channel **ret);
/* The worker has not closed its end (nor been dropped for bad messages). */
bool channel_is_open(const struct channel *ch);
/* Open, and its last send did not find it full. */
bool channel_can_send(const struct channel *ch);
/* The largest payload one message may carry on it. */
size_t channel_payload_max(const struct channel *ch);
/* MSG_CONN with @n fds (the caller keeps its copies). -EAGAIN: full, and
 * writable() follows once it has room; -EPIPE and the like: the worker is gone. */
int channel_send_conns(struct channel *ch, const void *payload, size_t len, const int *fds,
		       size_t n);
/* MSG_DRAIN with @flags (DRAIN_NOW or 0), now or, if the channel is full, once
 * it has room. */
void channel_send_drain(struct channel *ch, uint16_t flags);
/* The worker sent HELLO: it runs libbaton, and may park its connections. */
bool channel_said_hello(const struct channel *ch);
/* A worker that took a shared completion counter (HELLO_DONE_COUNTER) sends
 * no MSG_CONN_DONE: what it added there since the last call goes to
 * ops->conn_done now. Called where the count is used (least-loaded placement,
 * status) and before the channel goes. NULL is fine. */
void channel_poll_done(struct channel *ch);
/* Across a re-exec: the counter's memfd (-1: none) and what of it was reported. */
int channel_done_counter(const struct channel *ch, uint64_t *ret_seen);
