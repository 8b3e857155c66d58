/* SPDX-License-Identifier: MIT */
/* Dispatch. Every accepted or parked connection enters one FIFO ("held"); a
 * flush moves connections from its head to ready workers of the serving
 * generation, grouped into one MSG_CONN per worker. batond accepts only while
 * a worker can take more, or, with no worker ready at all, while fewer than
 * hold-max are held: what it cannot deliver stays in the kernel's backlog. */
#include "dispatch.h"
#include "channel.h"
#include "log.h"
#include "proto.h"
#include "reexec.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define BATCH_MAX     64	    /* connections accepted per round */
#define ROUTE_MAX     PROTO_MAX_FDS /* routed per round: a full MSG_CONN to one worker */
#define ACCEPT_ROUNDS 4 /* rounds per wake-up, so one busy listener cannot starve the loop */

struct held {
	int fd;
	uint16_t listener; /* index into the app's listeners */
	uint16_t flags;
	uint16_t addr_len;
	uint16_t state_len;
	void *state;
	char *tag; /* a parked connection's own tag; NULL: the listener's */
	uint64_t deadline_usec;
	struct sockaddr_storage addr;
};

struct dlistener {
	struct dispatch *dp;
	size_t idx;
	sd_event_source *src;
	bool enabled;
	uint64_t accepted;
	uint64_t timed_out;
};

/* One worker's counters, for its current process (channel_id). */
struct dslot {
	uint64_t channel_id;
	uint64_t delivered;
	uint64_t done;
};

struct dgen {
	unsigned id;
	unsigned n_workers;
	struct dslot *slots;
};

struct dispatch {
	sd_event *event;
	const struct config *cfg;
	const struct app_cfg *app;
	const int *listen_fds;
	const struct dispatch_ops *ops;
	void *userdata;
	struct dlistener *listeners;
	size_t n_listeners;
	struct held *ring;
	size_t cap, head, count;
	sd_event_source *hold_timer;
	sd_event_source *backoff_timer; /* armed: accept failed for lack of fds or memory */
	struct dgen *gens;		/* the serving generation and those before it still alive */
	size_t n_gens;
	unsigned serving; /* generation id, 0 for none */
	unsigned canary;  /* generation id, 0 for none: takes canary_num/canary_den */
	unsigned canary_num, canary_den;
	uint64_t routed, canary_routed; /* connections placed since the canary came */
	unsigned rr_next;
	bool stopped;
	bool flushing;
};

/* Connections held by every app of this batond (accepted or parked, not yet
 * sent), and how many that may be: half of its fd limit, so that spawning,
 * channels and the control socket always find fds. */
static size_t held_total;
static size_t held_cap;

static void set_held_cap(void)
{
	struct rlimit rl;
	if (held_cap)
		return;
	held_cap = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
		       ? (size_t)rl.rlim_cur / 2
		       : 4096;
	if (held_cap < 16)
		held_cap = 16;
}

/* batond's fds bound what it holds: near held_cap, worker channels are read no
 * more (a parking worker waits, its PARKs queued in its channel) until what is
 * held went on to the next generation; then they are read again. */
static void update_receiving(void)
{
	size_t margin = held_cap / 4 < 2 * PROTO_MAX_FDS ? held_cap / 4 : 2 * PROTO_MAX_FDS;
	if (held_total + margin >= held_cap)
		channel_receiving(false);
	else if (held_total <= held_cap / 2)
		channel_receiving(true);
}

static const struct listener_cfg *app_listener(const struct dispatch *dp, size_t i)
{
	return &dp->cfg->listeners[dp->app->listener_idx[i]];
}

static uint64_t now_usec(const struct dispatch *dp)
{
	uint64_t now;
	if (sd_event_now(dp->event, CLOCK_MONOTONIC, &now) < 0)
		return 0;
	return now;
}

static struct dgen *find_gen(const struct dispatch *dp, unsigned id)
{
	for (size_t i = 0; id && i < dp->n_gens; i++)
		if (dp->gens[i].id == id)
			return &dp->gens[i];
	return NULL;
}

/* Frees what @h owns but its fd (sent, or closed with others). */
static void held_forget(struct held *h)
{
	free(h->state);
	free(h->tag);
	h->fd = -1;
	h->state = NULL;
	h->tag = NULL;
}

static void held_close(struct held *h)
{
	close(h->fd);
	free(h->state);
	free(h->tag);
	h->fd = -1;
	h->state = NULL;
	h->tag = NULL;
}

static struct held *ring_at(struct dispatch *dp, size_t i)
{
	return &dp->ring[(dp->head + i) % dp->cap];
}

static int ring_grow(struct dispatch *dp)
{
	size_t cap = dp->cap ? dp->cap * 2 : 256;
	struct held *ring = malloc(cap * sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	for (size_t i = 0; i < dp->count; i++)
		ring[i] = *ring_at(dp, i);
	free(dp->ring);
	dp->ring = ring;
	dp->cap = cap;
	dp->head = 0;
	return 0;
}

/* Takes h->fd and h->state. */
static int ring_push_back(struct dispatch *dp, const struct held *h)
{
	if (dp->count == dp->cap && ring_grow(dp) < 0)
		return -ENOMEM;
	*ring_at(dp, dp->count++) = *h;
	held_total++;
	return 0;
}

static int ring_push_front(struct dispatch *dp, const struct held *h)
{
	if (dp->count == dp->cap && ring_grow(dp) < 0)
		return -ENOMEM;
	dp->head = (dp->head + dp->cap - 1) % dp->cap;
	dp->ring[dp->head] = *h;
	dp->count++;
	held_total++;
	return 0;
}

static void ring_pop_front(struct dispatch *dp, struct held *ret)
{
	*ret = dp->ring[dp->head];
	dp->head = (dp->head + 1) % dp->cap;
	dp->count--;
	held_total--;
}

/* The channel of serving worker @i if it takes connections now. A new process
 * behind it (a restart) starts from zero. */
static struct channel *ready_channel(struct dispatch *dp, const struct dgen *g, unsigned i,
				     bool sendable)
{
	struct channel *ch = dp->ops->ready_channel(dp->userdata, g->id, i);
	if (!ch || !channel_is_open(ch) || (sendable && !channel_can_send(ch)))
		return NULL;
	struct dslot *slot = &g->slots[i];
	if (slot->channel_id != channel_id(ch))
		*slot = (struct dslot){.channel_id = channel_id(ch)};
	return ch;
}

static bool any_worker_ready(struct dispatch *dp, bool sendable)
{
	const struct dgen *gs[2] = {find_gen(dp, dp->serving), find_gen(dp, dp->canary)};
	for (int k = 0; k < 2; k++)
		for (unsigned i = 0; gs[k] && i < gs[k]->n_workers; i++)
			if (ready_channel(dp, gs[k], i, sendable))
				return true;
	return false;
}

static uint64_t load_of(const struct dslot *slot)
{
	return slot->delivered > slot->done ? slot->delivered - slot->done : 0;
}

static uint32_t peer_hash(const struct held *h)
{
	const uint8_t *p = NULL;
	size_t n = 0;
	if (h->addr.ss_family == AF_INET) {
		p = (const uint8_t *)&((const struct sockaddr_in *)&h->addr)->sin_addr;
		n = 4;
	} else if (h->addr.ss_family == AF_INET6) {
		p = (const uint8_t *)&((const struct sockaddr_in6 *)&h->addr)->sin6_addr;
		n = 16;
	}
	uint32_t hash = 2166136261u; /* FNV-1a over the address, not the port */
	for (size_t i = 0; i < n; i++)
		hash = (hash ^ p[i]) * 16777619u;
	return hash;
}

/* Returns the index of the worker of serving generation @g that takes @h, or
 * -1. @pending[i]: connections already assigned to worker i in this round. */
static int pick(struct dispatch *dp, const struct dgen *g, const struct held *h,
		const unsigned *pending)
{
	unsigned n = g->n_workers;
	if (dp->app->policy == POLICY_STICKY && n > 0 &&
	    (h->addr.ss_family == AF_INET || h->addr.ss_family == AF_INET6)) {
		unsigned i = peer_hash(h) % n;
		if (ready_channel(dp, g, i, true))
			return (int)i;
		/* Its worker cannot take it now (restarting, full): least-loaded. */
	}
	int best = -1;
	uint64_t best_load = UINT64_MAX;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (dp->rr_next + k) % n;
		struct channel *ch = ready_channel(dp, g, i, true);
		if (!ch)
			continue;
		if (dp->app->policy == POLICY_ROUND_ROBIN) {
			best = (int)i;
			break;
		}
		channel_poll_done(ch); /* a worker's shared counter is read when it counts */
		uint64_t load = load_of(&g->slots[i]) + pending[i];
		if (load < best_load) {
			best = (int)i;
			best_load = load;
		}
	}
	if (best >= 0)
		dp->rr_next = (unsigned)best + 1;
	return best;
}

/* Sends @n connections to worker @index of @g in MSG_CONNs as large as its
 * channel takes. Returns how many were taken from the start of @items: sent
 * (their fds, ours to close now, appended to @closing), or closed when they
 * could never be sent. */
static size_t send_group(struct dispatch *dp, const struct dgen *g, unsigned index,
			 struct held **items, size_t n, int *closing, size_t *n_closing)
{
	static uint8_t payload[PROTO_MAX_PAYLOAD];
	struct channel *ch = ready_channel(dp, g, index, true);
	size_t limit = ch ? channel_payload_max(ch) : 0;
	size_t sent = 0;
	while (ch && sent < n) {
		int fds[PROTO_MAX_FDS];
		size_t off = 0, k = 0;
		for (; sent + k < n && k < PROTO_MAX_FDS; k++) {
			const struct held *h = items[sent + k];
			const struct listener_cfg *l = app_listener(dp, h->listener);
			const char *tag = h->flags & CONN_ADOPTED ? h->tag : l->tag;
			struct proto_conn rec = {
			    .flags = h->flags,
			    .name = l->name,
			    .name_len = (uint8_t)strlen(l->name),
			    .tag = tag,
			    .tag_len = (uint8_t)(tag ? strlen(tag) : 0),
			    .addr = &h->addr,
			    .addr_len = h->addr_len,
			    .state = h->state,
			    .state_len = h->state_len,
			};
			if (proto_conn_put(payload, limit, &off, &rec) < 0)
				break;
			fds[k] = h->fd;
		}
		if (k == 0) {
			/* A record larger than any message the channel takes (the limit
			 * on parked state keeps it from happening): drop it rather than
			 * retry it forever. */
			log_warn("%s: connection record too large for a worker channel, closing it",
				 dp->app->name);
			held_close(items[sent]);
			sent++;
			continue;
		}
		int r = channel_send_conns(ch, payload, off, fds, k);
		if (r == -EAGAIN || r == -EPIPE || r == -ECONNRESET || r == -ECONNREFUSED ||
		    r == -ENOTCONN)
			/* Full (the channel says when it has room), or the worker is
			 * gone (its exit follows): these go to another worker. */
			break;
		if (r < 0) {
			/* Not the worker's fault and not a full channel: do not retry
			 * these for ever, and do not stop serving. */
			log_warn("%s: generation %u worker %u: cannot send %zu connection%s: %s; "
				 "closing them",
				 dp->app->name, g->id, index, k, k == 1 ? "" : "s", strerror(-r));
			for (size_t i = 0; i < k; i++)
				held_close(items[sent + i]);
			sent += k;
			continue;
		}
		/* The worker has its own copies now: ours are closed with the
		 * round's. */
		for (size_t i = 0; i < k; i++) {
			closing[(*n_closing)++] = fds[i];
			held_forget(items[sent + i]);
		}
		g->slots[index].delivered += k;
		sent += k;
	}
	return sent;
}

/* Which of @gs (0: serving, 1: canary) the next connection should go to: the
 * canary while its share of what was placed is below canary_num/canary_den. */
static int route(const struct dispatch *dp, const struct dgen *const gs[2])
{
	if (!gs[1])
		return 0;
	if (!gs[0])
		return 1;
	return dp->canary_routed * dp->canary_den < (dp->routed + 1) * dp->canary_num;
}

/* One round: up to ROUTE_MAX connections from the head, routed and sent.
 * Each pick takes a run of the head, an equal share of what is held per ready
 * worker (1 with the sticky policy, at most a full MSG_CONN): a few held
 * connections spread as one by one would, many go in full messages, and each
 * message's fds are a run of what arrived together. Returns how many left the
 * queue plus how many workers were found full: while that is not 0, another
 * round may route what is left to other workers. */
static size_t flush_round(struct dispatch *dp)
{
	const struct dgen *gs[2] = {find_gen(dp, dp->serving), find_gen(dp, dp->canary)};
	if ((!gs[0] && !gs[1]) || dp->count == 0)
		return 0;
	size_t n = dp->count < ROUTE_MAX ? dp->count : ROUTE_MAX, ready = 0;
	for (int c = 0; c < 2; c++)
		for (unsigned i = 0; gs[c] && i < gs[c]->n_workers; i++)
			ready += ready_channel(dp, gs[c], i, true) != NULL;
	/* With a canary, one by one: its share stays exact. */
	size_t share =
	    dp->app->policy == POLICY_STICKY || gs[1] || ready == 0 ? 1 : dp->count / ready;
	share = share < 1 ? 1 : share > ROUTE_MAX ? ROUTE_MAX : share;
	struct held round[ROUTE_MAX];
	int to[ROUTE_MAX], which[ROUTE_MAX];
	unsigned pending0[gs[0] ? gs[0]->n_workers : 1], pending1[gs[1] ? gs[1]->n_workers : 1];
	memset(pending0, 0, sizeof(pending0));
	memset(pending1, 0, sizeof(pending1));
	unsigned *pending[2] = {pending0, pending1};
	size_t taken = 0;
	while (taken < n) {
		int c = route(dp, gs);
		int w = pick(dp, gs[c], ring_at(dp, 0), pending[c]);
		if (w < 0 && gs[!c]) {
			/* Its share's generation cannot take it now: the other one. */
			c = !c;
			w = pick(dp, gs[c], ring_at(dp, 0), pending[c]);
		}
		if (w < 0)
			break;
		for (size_t k = 0; k < share && taken < n; k++) {
			ring_pop_front(dp, &round[taken]);
			to[taken] = w;
			which[taken++] = c;
			pending[c][w]++;
			dp->routed++;
			dp->canary_routed += c == 1;
		}
	}
	int closing[ROUTE_MAX];
	size_t n_closing = 0, delivered = 0;
	bool sent[ROUTE_MAX] = {false};
	for (size_t i = 0; i < taken; i++) {
		int w = to[i], c = which[i];
		if (w < 0)
			continue;
		struct held *items[ROUTE_MAX];
		size_t idx[ROUTE_MAX], k = 0;
		for (size_t j = i; j < taken; j++)
			if (to[j] == w && which[j] == c) {
				idx[k] = j;
				items[k++] = &round[j];
				to[j] = -1;
			}
		size_t n_sent = send_group(dp, gs[c], (unsigned)w, items, k, closing, &n_closing);
		for (size_t j = 0; j < n_sent; j++)
			sent[idx[j]] = true;
		/* A worker found full counts too: the rest may go to another. */
		delivered += n_sent + (n_sent < k);
	}
	/* Our copies of what went: one close_range() per run of consecutive fds. */
	proto_close_fds(closing, n_closing);
	/* What could not be sent goes back to the head, in its order. */
	for (size_t i = taken; i-- > 0;)
		if (!sent[i] && ring_push_front(dp, &round[i]) < 0)
			held_close(&round[i]);
	return delivered;
}

static bool can_accept(struct dispatch *dp)
{
	if (dp->stopped || held_total >= held_cap)
		return false;
	int backoff = 0;
	if (dp->backoff_timer && sd_event_source_get_enabled(dp->backoff_timer, &backoff) >= 0 &&
	    backoff)
		return false;
	if (any_worker_ready(dp, true))
		return dp->count < BATCH_MAX; /* anything held goes first */
	/* Workers ready but every channel full: leave clients in the backlog.
	 * No worker ready at all: hold, up to hold-max. */
	return !any_worker_ready(dp, false) && dp->count < dp->app->hold_max;
}

static void update_accepting(struct dispatch *dp)
{
	bool on = can_accept(dp);
	for (size_t i = 0; i < dp->n_listeners; i++) {
		struct dlistener *l = &dp->listeners[i];
		if (l->enabled == on)
			continue;
		if (sd_event_source_set_enabled(l->src, on ? SD_EVENT_ON : SD_EVENT_OFF) >= 0)
			l->enabled = on;
	}
}

static int on_hold_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void arm_hold_timer(struct dispatch *dp)
{
	if (dp->count == 0) {
		sd_event_source_set_enabled(dp->hold_timer, SD_EVENT_OFF);
		return;
	}
	uint64_t deadline = ring_at(dp, 0)->deadline_usec;
	if (!dp->hold_timer) {
		int r = sd_event_add_time(dp->event, &dp->hold_timer, CLOCK_MONOTONIC, deadline,
					  10000, on_hold_timer, dp);
		if (r < 0)
			log_warn("%s: cannot arm hold timer: %s", dp->app->name, strerror(-r));
		return;
	}
	sd_event_source_set_time(dp->hold_timer, deadline);
	sd_event_source_set_enabled(dp->hold_timer, SD_EVENT_ONESHOT);
}

/* Rounds until nothing more goes out. */
static void flush(struct dispatch *dp)
{
	if (dp->flushing)
		return;
	dp->flushing = true; /* sending can report a full channel, which kicks again */
	while (dp->count > 0 && flush_round(dp) > 0)
		;
	dp->flushing = false;
}

static int on_hold_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct dispatch *dp = userdata;
	flush(dp); /* a worker may take them now: only what still cannot go expires */
	uint64_t now = now_usec(dp);
	unsigned closed = 0;
	while (dp->count > 0 && ring_at(dp, 0)->deadline_usec <= now) {
		struct held h;
		ring_pop_front(dp, &h);
		if (h.listener < dp->n_listeners)
			dp->listeners[h.listener].timed_out++;
		held_close(&h);
		closed++;
	}
	if (closed)
		log_warn("%s: closed %u connection%s held longer than hold-timeout", dp->app->name,
			 closed, closed == 1 ? "" : "s");
	arm_hold_timer(dp);
	update_accepting(dp);
	update_receiving();
	return 0;
}

void dispatch_kick(struct dispatch *dp)
{
	if (!dp || dp->flushing)
		return;
	flush(dp);
	arm_hold_timer(dp);
	update_accepting(dp);
	update_receiving();
}

#define ACCEPT_BACKOFF_USEC (100 * 1000)

static int on_backoff_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct dispatch *dp = userdata;
	sd_event_source_set_enabled(s, SD_EVENT_OFF);
	update_accepting(dp);
	return 0;
}

/* accept failed for want of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM):
 * the listener stays readable, so stop accepting for a while rather than spin;
 * clients wait in the backlog meanwhile. */
static void accept_backoff(struct dispatch *dp, const struct dlistener *l, int err)
{
	log_warn("%s: listener \"%s\": accept: %s; pausing accept for %d ms", dp->app->name,
		 app_listener(dp, l->idx)->name, strerror(err), ACCEPT_BACKOFF_USEC / 1000);
	int r;
	if (!dp->backoff_timer)
		r = sd_event_add_time_relative(dp->event, &dp->backoff_timer, CLOCK_MONOTONIC,
					       ACCEPT_BACKOFF_USEC, 10000, on_backoff_timer, dp);
	else if ((r = sd_event_source_set_time_relative(dp->backoff_timer, ACCEPT_BACKOFF_USEC)) >=
		 0)
		r = sd_event_source_set_enabled(dp->backoff_timer, SD_EVENT_ONESHOT);
	if (r < 0)
		log_warn("%s: cannot arm the accept back-off: %s", dp->app->name, strerror(-r));
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct dlistener *l = userdata;
	struct dispatch *dp = l->dp;
	uint64_t deadline = now_usec(dp) + dp->app->hold_timeout_usec;
	for (int round = 0; round < ACCEPT_ROUNDS && can_accept(dp); round++) {
		size_t n = 0;
		while (n < BATCH_MAX && can_accept(dp)) {
			struct held h = {.listener = (uint16_t)l->idx, .deadline_usec = deadline};
			socklen_t len = sizeof(h.addr);
			h.fd = accept4(fd, (struct sockaddr *)&h.addr, &len, SOCK_CLOEXEC);
			if (h.fd < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				if (errno != EAGAIN)
					accept_backoff(dp, l, errno);
				round = ACCEPT_ROUNDS;
				break;
			}
			h.addr_len = (uint16_t)len;
			l->accepted++;
			if (ring_push_back(dp, &h) < 0) {
				log_warn("%s: out of memory, closing a connection", dp->app->name);
				held_close(&h);
				continue;
			}
			n++;
		}
		if (n == 0)
			break;
		flush(dp);
	}
	arm_hold_timer(dp);
	update_accepting(dp);
	update_receiving();
	return 0;
}

int dispatch_new(sd_event *event, const struct dispatch_ops *ops, void *userdata,
		 struct dispatch **ret)
{
	struct dispatch *dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	set_held_cap();
	dp->event = event;
	dp->ops = ops;
	dp->userdata = userdata;
	*ret = dp;
	return 0;
}

/* Index of listener @name in @app's list, or @app->n_listeners. */
static size_t listener_index(const struct config *cfg, const struct app_cfg *app, const char *name)
{
	size_t i = 0;
	while (i < app->n_listeners && strcmp(cfg->listeners[app->listener_idx[i]].name, name) != 0)
		i++;
	return i;
}

void dispatch_set_config(struct dispatch *dp, const struct config *cfg, const struct app_cfg *app,
			 const int *listen_fds)
{
	size_t n = app->mode == SERVE_DISPATCH ? app->n_listeners : 0;
	struct dlistener *listeners = calloc(n ? n : 1, sizeof(*listeners));
	if (!listeners) {
		log_err("%s: out of memory: configuration not applied to dispatch", app->name);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct dlistener *l = &listeners[i];
		*l = (struct dlistener){.dp = dp, .idx = i};
		const char *name = cfg->listeners[app->listener_idx[i]].name;
		size_t old = dp->app ? listener_index(dp->cfg, dp->app, name) : 0;
		if (dp->app && old < dp->n_listeners) {
			l->accepted = dp->listeners[old].accepted;
			l->timed_out = dp->listeners[old].timed_out;
		}
		int r = sd_event_add_io(dp->event, &l->src, listen_fds[i], EPOLLIN, on_accept, l);
		if (r < 0)
			log_err("%s: listener \"%s\" unwatched, nothing accepted on it: %s",
				app->name, name, strerror(-r));
		else
			/* Off until a worker is ready or there is room to hold. */
			sd_event_source_set_enabled(l->src, SD_EVENT_OFF);
	}
	/* What is held goes on under its listener's name, in its order, or is
	 * closed: one turn round the ring (a push after a pop always finds room). */
	size_t count = dp->app ? dp->count : 0;
	for (size_t k = 0; k < count; k++) {
		struct held h;
		ring_pop_front(dp, &h);
		size_t i = listener_index(
		    cfg, app, dp->cfg->listeners[dp->app->listener_idx[h.listener]].name);
		if (i == app->n_listeners) {
			held_close(&h);
			continue;
		}
		h.listener = (uint16_t)i;
		ring_push_back(dp, &h);
	}
	for (size_t i = 0; i < dp->n_listeners; i++)
		sd_event_source_disable_unref(dp->listeners[i].src);
	free(dp->listeners);
	dp->listeners = listeners;
	dp->n_listeners = n;
	dp->cfg = cfg;
	dp->app = app;
	dp->listen_fds = listen_fds;
	update_accepting(dp);
}

static void close_held(struct dispatch *dp)
{
	while (dp->count > 0) {
		struct held h;
		ring_pop_front(dp, &h);
		held_close(&h);
	}
}

void dispatch_free(struct dispatch *dp)
{
	if (!dp)
		return;
	close_held(dp);
	update_receiving();
	for (size_t i = 0; i < dp->n_listeners; i++)
		sd_event_source_disable_unref(dp->listeners[i].src);
	sd_event_source_disable_unref(dp->hold_timer);
	sd_event_source_disable_unref(dp->backoff_timer);
	for (size_t i = 0; i < dp->n_gens; i++)
		free(dp->gens[i].slots);
	free(dp->gens);
	free(dp->listeners);
	free(dp->ring);
	free(dp);
}

void dispatch_stop(struct dispatch *dp)
{
	if (!dp)
		return;
	dp->stopped = true;
	if (dp->count)
		log_info("%s: stopping: closing %zu held connection%s", dp->app->name, dp->count,
			 dp->count == 1 ? "" : "s");
	close_held(dp);
	arm_hold_timer(dp);
	update_accepting(dp);
	update_receiving();
}

/* Counters for generation @gen_id with @n_workers, kept or made. Returns
 * false when out of memory. */
static bool track_gen(struct dispatch *dp, unsigned gen_id, unsigned n_workers)
{
	struct dgen *known = find_gen(dp, gen_id);
	if (known && known->n_workers != n_workers) {
		/* Scaled: slots of workers still there keep their counts. */
		struct dslot *slots =
		    realloc(known->slots, (n_workers ? n_workers : 1) * sizeof(*slots));
		if (slots) {
			for (unsigned i = known->n_workers; i < n_workers; i++)
				slots[i] = (struct dslot){0};
			known->slots = slots;
			known->n_workers = n_workers;
		}
	}
	if (!gen_id || known)
		return true;
	struct dgen *gens = realloc(dp->gens, (dp->n_gens + 1) * sizeof(*gens));
	struct dslot *slots = calloc(n_workers ? n_workers : 1, sizeof(*slots));
	if (gens)
		dp->gens = gens;
	if (!gens || !slots) {
		/* Without counters nothing can be routed to it: held until memory
		 * comes back with the next generation. */
		log_err("%s: generation %u: out of memory for dispatch", dp->app->name, gen_id);
		free(slots);
		return false;
	}
	dp->gens[dp->n_gens++] =
	    (struct dgen){.id = gen_id, .n_workers = n_workers, .slots = slots};
	return true;
}

void dispatch_serve(struct dispatch *dp, unsigned gen_id, unsigned n_workers)
{
	dp->serving = track_gen(dp, gen_id, n_workers) ? gen_id : 0;
}

void dispatch_canary(struct dispatch *dp, unsigned gen_id, unsigned n_workers, unsigned share_num,
		     unsigned share_den)
{
	if (gen_id != dp->canary)
		dp->routed = dp->canary_routed = 0;
	dp->canary = track_gen(dp, gen_id, n_workers) ? gen_id : 0;
	dp->canary_num = share_num;
	dp->canary_den = share_den ? share_den : 1;
}

void dispatch_forget(struct dispatch *dp, unsigned gen_id)
{
	struct dgen *g = find_gen(dp, gen_id);
	if (!g)
		return;
	free(g->slots);
	*g = dp->gens[--dp->n_gens];
	if (dp->serving == gen_id)
		dp->serving = 0;
	if (dp->canary == gen_id)
		dp->canary = 0;
}

void dispatch_conn_done(struct dispatch *dp, unsigned gen_id, unsigned index, uint32_t n)
{
	struct dgen *g = find_gen(dp, gen_id);
	if (!g || index >= g->n_workers)
		return;
	struct dslot *slot = &g->slots[index];
	slot->done += n;
	if (slot->done > slot->delivered)
		slot->done = slot->delivered; /* a confused worker cannot make itself look idle */
}

void dispatch_sent_aside(struct dispatch *dp, unsigned gen_id, unsigned index)
{
	struct dgen *g = find_gen(dp, gen_id);
	if (g && index < g->n_workers)
		g->slots[index].delivered++;
}

int dispatch_park(struct dispatch *dp, int fd, const struct proto_conn *rec)
{
	const struct app_cfg *app = dp->app;
	struct held h = {
	    .fd = fd,
	    .flags = CONN_ADOPTED,
	    .deadline_usec = now_usec(dp) + app->hold_timeout_usec,
	};
	size_t i = 0;
	while (i < app->n_listeners &&
	       (strlen(app_listener(dp, i)->name) != rec->name_len ||
		memcmp(app_listener(dp, i)->name, rec->name, rec->name_len) != 0))
		i++;
	int r = i == app->n_listeners		   ? -ENOENT
		: rec->state_len > PROTO_STATE_MAX ? -EMSGSIZE
		: rec->addr_len > sizeof(h.addr)   ? -EINVAL
		: dp->stopped			   ? -ESHUTDOWN
		: dp->count >= app->hold_max	   ? -ENOBUFS
		: held_total >= held_cap	   ? -EMFILE
						   : 0;
	if (r < 0) {
		close(fd);
		return r;
	}
	if (rec->tag_len && !(h.tag = strndup(rec->tag, rec->tag_len))) {
		close(fd);
		return -ENOMEM;
	}
	h.listener = (uint16_t)i;
	h.addr_len = rec->addr_len;
	if (rec->addr_len)
		memcpy(&h.addr, rec->addr, rec->addr_len);
	if (rec->state_len) {
		h.state = malloc(rec->state_len);
		if (!h.state) {
			held_close(&h);
			return -ENOMEM;
		}
		memcpy(h.state, rec->state, rec->state_len);
		h.state_len = rec->state_len;
	}
	if (ring_push_back(dp, &h) < 0) {
		held_close(&h);
		return -ENOMEM;
	}
	update_receiving();
	return 0;
}

void dispatch_worker_stats(const struct dispatch *dp, unsigned gen_id, unsigned index,
			   struct dispatch_worker_stats *ret)
{
	*ret = (struct dispatch_worker_stats){0};
	const struct dgen *g = find_gen(dp, gen_id);
	if (!g || index >= g->n_workers)
		return;
	ret->delivered = g->slots[index].delivered;
	ret->load = load_of(&g->slots[index]);
}

void dispatch_listener_stats(const struct dispatch *dp, size_t i,
			     struct dispatch_listener_stats *ret)
{
	*ret = (struct dispatch_listener_stats){0};
	if (i >= dp->n_listeners)
		return;
	ret->accepted = dp->listeners[i].accepted;
	ret->timed_out = dp->listeners[i].timed_out;
	for (size_t k = 0; k < dp->count; k++)
		ret->held += dp->ring[(dp->head + k) % dp->cap].listener == i;
}

struct json_object *dispatch_save(const struct dispatch *dp, struct reexec_save *s)
{
	struct json_object *j = json_object_new_object();
	struct json_object *held = json_object_new_array(), *listeners = json_object_new_array(),
			   *gens = json_object_new_array();
	for (size_t i = 0; i < dp->count; i++) {
		const struct held *h = &dp->ring[(dp->head + i) % dp->cap];
		struct json_object *hj = json_object_new_object();
		rx_set_int(hj, "fd", reexec_keep_fd(s, h->fd));
		rx_set_str(hj, "listener", app_listener(dp, h->listener)->name);
		rx_set_int(hj, "flags", h->flags);
		rx_set_int(hj, "deadline_usec", (int64_t)h->deadline_usec);
		rx_set_hex(hj, "addr", &h->addr, h->addr_len);
		rx_set_hex(hj, "state", h->state, h->state_len);
		if (h->tag)
			rx_set_str(hj, "tag", h->tag);
		json_object_array_add(held, hj);
	}
	for (size_t i = 0; i < dp->n_listeners; i++) {
		struct json_object *lj = json_object_new_object();
		rx_set_str(lj, "name", app_listener(dp, i)->name);
		rx_set_int(lj, "accepted", (int64_t)dp->listeners[i].accepted);
		rx_set_int(lj, "timed_out", (int64_t)dp->listeners[i].timed_out);
		json_object_array_add(listeners, lj);
	}
	for (size_t i = 0; i < dp->n_gens; i++) {
		struct json_object *gj = json_object_new_object(), *slots = json_object_new_array();
		rx_set_int(gj, "id", dp->gens[i].id);
		for (unsigned k = 0; k < dp->gens[i].n_workers; k++) {
			struct json_object *sj = json_object_new_object();
			rx_set_int(sj, "channel_id", (int64_t)dp->gens[i].slots[k].channel_id);
			rx_set_int(sj, "delivered", (int64_t)dp->gens[i].slots[k].delivered);
			rx_set_int(sj, "done", (int64_t)dp->gens[i].slots[k].done);
			json_object_array_add(slots, sj);
		}
		rx_set(gj, "slots", slots);
		json_object_array_add(gens, gj);
	}
	rx_set(j, "held", held);
	rx_set(j, "listeners", listeners);
	rx_set(j, "gens", gens);
	rx_set_int(j, "serving", dp->serving);
	rx_set_int(j, "rr_next", dp->rr_next);
	return j;
}

int dispatch_restore(struct dispatch *dp, struct json_object *j)
{
	for (size_t i = 0; i < rx_len(j, "listeners"); i++) {
		struct json_object *lj = rx_at(j, "listeners", i);
		size_t k = listener_index(dp->cfg, dp->app, rx_str(lj, "name") ?: "");
		if (k >= dp->n_listeners)
			return -EBADMSG;
		dp->listeners[k].accepted = (uint64_t)rx_int(lj, "accepted", 0);
		dp->listeners[k].timed_out = (uint64_t)rx_int(lj, "timed_out", 0);
	}
	for (size_t i = 0; i < rx_len(j, "gens"); i++) {
		struct json_object *gj = rx_at(j, "gens", i);
		size_t n = rx_len(gj, "slots");
		unsigned id = (unsigned)rx_int(gj, "id", 0);
		struct dgen *gens = realloc(dp->gens, (dp->n_gens + 1) * sizeof(*gens));
		if (!gens)
			return -ENOMEM;
		dp->gens = gens;
		struct dslot *slots = calloc(n ? n : 1, sizeof(*slots));
		if (!slots || !id)
			return slots ? -EBADMSG : -ENOMEM;
		for (size_t k = 0; k < n; k++) {
			struct json_object *sj = rx_at(gj, "slots", k);
			slots[k] = (struct dslot){
			    .channel_id = (uint64_t)rx_int(sj, "channel_id", 0),
			    .delivered = (uint64_t)rx_int(sj, "delivered", 0),
			    .done = (uint64_t)rx_int(sj, "done", 0),
			};
		}
		dp->gens[dp->n_gens++] =
		    (struct dgen){.id = id, .n_workers = (unsigned)n, .slots = slots};
	}
	dp->serving = (unsigned)rx_int(j, "serving", 0);
	dp->rr_next = (unsigned)rx_int(j, "rr_next", 0);
	for (size_t i = 0; i < rx_len(j, "held"); i++) {
		struct json_object *hj = rx_at(j, "held", i);
		struct held h = {.fd = (int)rx_int(hj, "fd", -1)};
		size_t k = listener_index(dp->cfg, dp->app, rx_str(hj, "listener") ?: "");
		size_t addr_len, state_len;
		uint8_t state[PROTO_STATE_MAX];
		if (h.fd < 0 || k >= dp->app->n_listeners ||
		    rx_hex(hj, "addr", &h.addr, sizeof(h.addr), &addr_len) < 0 ||
		    rx_hex(hj, "state", state, sizeof(state), &state_len) < 0)
			return -EBADMSG;
		h.listener = (uint16_t)k;
		h.flags = (uint16_t)rx_int(hj, "flags", 0);
		h.deadline_usec = (uint64_t)rx_int(hj, "deadline_usec", 0);
		h.addr_len = (uint16_t)addr_len;
		h.state_len = (uint16_t)state_len;
		if ((state_len && !(h.state = malloc(state_len))) ||
		    (rx_str(hj, "tag") && !(h.tag = strdup(rx_str(hj, "tag")))))
			return -ENOMEM;
		if (state_len)
			memcpy(h.state, state, state_len);
		if (ring_push_back(dp, &h) < 0)
			return -ENOMEM;
	}
	return 0;
}
