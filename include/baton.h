/* SPDX-License-Identifier: MIT */
/* libbaton: the application side of baton. Gets listening sockets by name (from
 * systemd-style LISTEN_FDS, or from batond over the BATON_FD channel), tells the
 * supervisor the application is ready (sd_notify compatible), and delivers the
 * supervisor's events: drain, and connections accepted or parked for this worker.
 * Depends on libc only. See libbaton(3) and docs/protocol.md.
 *
 * Errors: every function returns a negative errno on failure and never prints,
 * exits or aborts. Out-parameters are left untouched on failure.
 *
 * Thread safety: the baton_notify() family keeps no state and may be called from
 * any thread. Everything else shares one process-wide state and is NOT
 * thread-safe: call it from one thread, or serialise the calls with your own lock.
 *
 * Listeners are shared with the supervisor and with other generations. Never call
 * shutdown(), listen() or connect(AF_UNSPEC) on one: that breaks it for every
 * holder. To stop accepting, remove it from your poll set and close your copy. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BATON_API __attribute__((visibility("default")))
#else
#define BATON_API
#endif

#define BATON_NAME_MAX	64   /* listener names, without the NUL */
#define BATON_TAG_MAX	64   /* connection tags, without the NUL */
#define BATON_STATE_MAX 8192 /* state bytes of a parked connection */

/* ---- Setup ---------------------------------------------------------------- */

/* baton_init() flag: once read, unset LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES and
 * BATON_FD from the environment, so that programs this one starts do not see
 * them (like sd_listen_fds(1)). The fds themselves are O_CLOEXEC either way. */
#define BATON_INIT_UNSET_ENV 0x1u

/* Reads the environment once:
 *  - LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES (systemd socket activation). They are
 *    ignored, as systemd does, when LISTEN_PID is unset or names another process.
 *    The inherited fds (3, 4, ...) are set O_CLOEXEC.
 *  - BATON_FD, the channel to batond: set O_CLOEXEC and O_NONBLOCK, and a HELLO
 *    is sent on it.
 * Every other function calls baton_init(0) itself when it has not been called;
 * call it first to pass flags or to see environment errors early.
 * Returns 0 (also when there is no environment at all: see baton_listener()),
 * -EALREADY when already initialised, or an error, after which nothing is kept
 * and a later call reads the environment again:
 *   -EINVAL       unknown @flags; LISTEN_PID or LISTEN_FDS not a plain decimal
 *                 number or out of range; LISTEN_FDNAMES does not name exactly
 *                 LISTEN_FDS fds, or a name is longer than BATON_NAME_MAX;
 *                 BATON_FD not a plain decimal number, or one of the listeners;
 *   -EBADF        an inherited fd or BATON_FD is not open;
 *   -ENOTSOCK     BATON_FD is not a socket;
 *   -EPROTOTYPE   BATON_FD is a socket but not AF_UNIX SOCK_SEQPACKET;
 *   -ENOMEM, or the error of sending HELLO (e.g. -EPIPE: batond is gone). */
BATON_API int baton_init(unsigned flags);

/* Closes the channel to batond, every queued connection fd and every inherited
 * listener the application has not taken, frees everything, and unsets the
 * variables baton_init() reads (the fds they name are closed or the
 * application's now). Another call afterwards initialises again. */
BATON_API void baton_close(void);

/* ---- Listeners ------------------------------------------------------------ */

/* Returns a listening socket for the listener @name (1..BATON_NAME_MAX bytes). The
 * fd belongs to the caller. Looks first at the inherited fds (LISTEN_FDNAMES):
 * each inherited fd is handed out once. Else asks batond over BATON_FD and waits
 * up to 5 s for its answer (events that arrive meanwhile are queued).
 * Returns the fd, or:
 *   -ENXIO      no baton or systemd environment at all: bind the socket yourself;
 *   -ENOENT     an environment, but no listener of that name;
 *   -EINVAL     bad name; -ETIMEDOUT batond did not answer; -ECONNRESET batond
 *               closed the channel; a positive errno batond answered, negated;
 *   -EPROTO     batond answered something else than it should;
 *   or an error of baton_init(). */
BATON_API int baton_listener(const char *name);

/* One inherited listener. */
struct baton_listener {
	int fd;
	char name[BATON_NAME_MAX + 1]; /* NUL-terminated; "unknown" without names */
};

/* Hands out every inherited listener not yet taken, in fd order: fills @out (room
 * for @max) and returns how many; the fds then belong to the caller. With out ==
 * NULL, hands out nothing and returns how many there are. Returns 0 with no
 * inherited listeners, -ENOBUFS (nothing handed out) when @max is too small, or an
 * error of baton_init(). Listeners batond holds are only had by name. */
BATON_API int baton_listeners(struct baton_listener *out, size_t max);

/* ---- Readiness (sd_notify compatible; no shared state, thread-safe) ------- */

/* Sends @state ("READY=1", "STATUS=...", "STOPPING=1", newline-separated
 * assignments) as one datagram to $NOTIFY_SOCKET, a path or an abstract address
 * written with a leading '@'. Returns 1 when sent, 0 when NOTIFY_SOCKET is unset
 * (not supervised: nothing to do), -EINVAL for an empty state or an address too
 * long, -EAFNOSUPPORT for an address that is neither a path nor '@', or the error
 * of socket()/sendmsg(). */
BATON_API int baton_notify(const char *state);
/* baton_notify("READY=1"). */
BATON_API int baton_ready(void);
/* baton_notify("STATUS=<formatted text>"); text longer than 4 KiB is cut. */
BATON_API int baton_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- Events from batond --------------------------------------------------- */

enum baton_event_type {
	BATON_EVENT_DRAIN = 1, /* stop taking new work, finish what you have, exit */
	BATON_EVENT_CONN = 2,  /* a connection for this worker: see struct baton_event */
};

#define BATON_CONN_ADOPTED 0x0001u /* parked by a worker of a previous generation */
/* A DRAIN that comes again with this flag (or the first one with it): batond
 * finishes this generation early (max-draining: too many generations drain at
 * once). Park every live connection with baton_park() now, close the rest and
 * exit: what is left of the process is killed within about a second. */
#define BATON_DRAIN_NOW 0x0002u

struct baton_event {
	enum baton_event_type type;
	/* The rest is for BATON_EVENT_CONN only, but flags, which a DRAIN has too. */
	int fd;				   /* the connection; belongs to the caller, O_CLOEXEC */
	unsigned flags;			   /* BATON_CONN_ADOPTED; DRAIN: BATON_DRAIN_NOW */
	char listener[BATON_NAME_MAX + 1]; /* the listener it came in on; NUL-terminated */
	char tag[BATON_TAG_MAX + 1];	   /* optional tag given when parked; "" if none */
	struct sockaddr_storage peer;	   /* the client's address */
	socklen_t peer_len;		   /* 0 when unknown */
	const void *state; /* state given when parked, NULL if none; valid until the */
	size_t state_len;  /* next call of baton_next_event() or baton_close() */
};

/* The channel to batond, to poll for POLLIN (borrowed: do not close it). Returns
 * the fd, -ENXIO when the process has no BATON_FD, or an error of baton_init(). */
BATON_API int baton_fd(void);

/* Returns the next event without blocking: 1 with *ev filled, 0 when there is none
 * now (poll baton_fd() and call again), or:
 *   -ENXIO        no channel to batond;
 *   -ECONNRESET   batond closed the channel (and will again on every call): take
 *                 baton_fd() out of your poll set;
 *   -EPROTO, -EBADMSG, -EMSGSIZE  batond sent a bad message: it was dropped, its
 *                 fds closed; the channel is still usable: call again;
 *   -ENOMEM, or another error of recvmsg().
 * One MSG_CONN carries up to 253 connections: they are queued and returned one per
 * call, so call until it returns 0 before polling again. */
BATON_API int baton_next_event(struct baton_event *ev);

/* Tells batond that @count connections it handed over are finished: its load
 * signal for dispatch. With a batond that gave this worker a shared counter
 * (docs/protocol.md) the count is added there, at once and without a message.
 * Otherwise, while connections remain open the counts are batched (every 32
 * connections or 10 ms, and with the next baton_next_event()); when none
 * remains the count goes at once. Never blocks: when the channel is full the
 * count is kept for the next call of this or of baton_next_event(). Returns
 * 0, -ENXIO without a channel, -ECONNRESET/-EPIPE when batond is gone. */
BATON_API int baton_conn_done(unsigned count);

/* Parks the live connection @fd with batond, to be handed to a worker of the next
 * generation as an adopted BATON_EVENT_CONN with @listener (the name of the app's
 * listener it belongs to), @tag (NULL or "" for none), its peer address and
 * @state (@state_len bytes, at most BATON_STATE_MAX, may be 0). On success @fd is
 * closed and 0 returned; on failure the caller keeps @fd. Errors: -ENXIO without a
 * channel, -EBADF for a bad fd, -EINVAL for a missing or too long name, a tag too
 * long or state_len without state, -EMSGSIZE for more than BATON_STATE_MAX bytes
 * of state, -EAGAIN when the channel is full for over 5 s, -ECONNRESET/-EPIPE when
 * batond is gone. batond closes a parked connection whose listener the app does
 * not have. */
BATON_API int baton_park(int fd, const char *listener, const char *tag, const void *state,
			 size_t state_len);

/* One connection for baton_park_many(): the arguments of baton_park(), and the
 * client's address if the application has it (from accept), which spares a
 * getpeername() per connection. */
struct baton_park_conn {
	int fd;
	const char *listener; /* 1..BATON_NAME_MAX bytes */
	const char *tag;      /* NULL or "" for none */
	const void *state;    /* @state_len bytes, at most BATON_STATE_MAX */
	size_t state_len;
	const struct sockaddr *peer; /* NULL: asked of the socket */
	socklen_t peer_len;	     /* at most sizeof(struct sockaddr_storage) */
};

/* Parks @n connections as baton_park() parks one, in as few messages as batond
 * takes: up to 253 per message (fewer when their state does not fit 64 KiB)
 * with a batond that says it takes batches (HELLO_PARK_MANY, docs/protocol.md),
 * else one per message. Every entry is checked first: a missing or too long
 * name, a tag too long, state_len without state, a bad peer_len (-EINVAL), a
 * negative fd (-EBADF) or too much state (-EMSGSIZE) fails the call with nothing
 * parked. Returns how many were parked, from the start of @conns (their fds are
 * closed; the rest are still the caller's): @n, or fewer when a message could
 * not be sent after some were (a call with the rest then returns the error:
 * -EAGAIN when one message waited for room over 5 s, -ECONNRESET/-EPIPE when
 * batond is gone, -EBADF for an fd that is not open). Or a negative errno with nothing
 * parked; -ENXIO without a channel; -EINVAL for @n above INT_MAX. It returns
 * once batond has read every message (at most 5 s after the last went): the
 * worker may exit at once. */
BATON_API int baton_park_many(const struct baton_park_conn *conns, size_t n);

#ifdef __cplusplus
}
#endif
