/* Dispatch. Every accepted or parked connection enters one FIFO ("held"); a
 * flush moves connections from its head to ready workers of the serving
 * generation, grouped into one MSG_CONN per worker. batond accepts only while
 * a worker can take more, or, with no worker ready at all, while fewer than
 * hold-max are held: what it cannot deliver stays in the kernel's backlog. */
#include "dispatch.h"
#include "app.h"
#include "batond.h"
#include "channel.h"
#include "generation.h"
#include "log.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH_MAX     64 /* connections accepted or routed per round */
#define ACCEPT_ROUNDS 4	 /* rounds per wake-up, so one busy listener cannot starve the loop */

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

struct dispatch {
	struct app *a;
	struct dlistener *listeners;
	size_t n_listeners;
	struct held *ring;
	size_t cap, head, count;
	sd_event_source *hold_timer;
	sd_event_source *backoff_timer; /* armed: accept failed for lack of fds or memory */
	unsigned rr_next;
	bool stopped;
	bool flushing;
};

static const struct listener_cfg *app_listener(const struct app *a, size_t i)
{
	return &a->d->cfg->listeners[a->cfg->listener_idx[i]];
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
	return 0;
}

static int ring_push_front(struct dispatch *dp, const struct held *h)
{
	if (dp->count == dp->cap && ring_grow(dp) < 0)
		return -ENOMEM;
	dp->head = (dp->head + dp->cap - 1) % dp->cap;
	dp->ring[dp->head] = *h;
	dp->count++;
	return 0;
}

static void ring_pop_front(struct dispatch *dp, struct held *ret)
{
	*ret = dp->ring[dp->head];
	dp->head = (dp->head + 1) % dp->cap;
	dp->count--;
}

static bool worker_takes(const struct worker *w)
{
	return w->state == WORKER_READY && w->channel_fd >= 0 && !w->channel_full;
}

static bool any_worker_ready(const struct dispatch *dp)
{
	const struct gen *g = dp->a->serving;
	for (unsigned i = 0; g && i < g->n_workers; i++)
		if (g->workers[i].state == WORKER_READY && g->workers[i].channel_fd >= 0)
			return true;
	return false;
}

static uint64_t load_of(const struct worker *w)
{
	return w->delivered > w->done ? w->delivered - w->done : 0;
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

/* @pending[i]: connections already assigned to worker i in this round. */
static struct worker *pick(struct dispatch *dp, const struct held *h, const unsigned *pending)
{
	struct gen *g = dp->a->serving;
	if (!g)
		return NULL;
	unsigned n = g->n_workers;
	if (dp->a->cfg->policy == POLICY_STICKY && n > 0 &&
	    (h->addr.ss_family == AF_INET || h->addr.ss_family == AF_INET6)) {
		struct worker *w = &g->workers[peer_hash(h) % n];
		if (worker_takes(w))
			return w;
		/* Its worker cannot take it now (restarting, full): least-loaded. */
	}
	struct worker *best = NULL;
	uint64_t best_load = UINT64_MAX;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (dp->rr_next + k) % n;
		struct worker *w = &g->workers[i];
		if (!worker_takes(w))
			continue;
		if (dp->a->cfg->policy == POLICY_ROUND_ROBIN) {
			best = w;
			break;
		}
		uint64_t load = load_of(w) + pending[i];
		if (load < best_load) {
			best = w;
			best_load = load;
		}
	}
	if (best)
		dp->rr_next = best->index + 1;
	return best;
}

/* Sends @n connections to @w in MSG_CONNs as large as its channel takes.
 * Returns how many were taken from the start of @items: sent, or closed when
 * they could never be sent. */
static size_t send_group(struct dispatch *dp, struct worker *w, struct held **items, size_t n)
{
	static uint8_t payload[PROTO_MAX_PAYLOAD];
	size_t limit = w->channel_payload_max;
	size_t sent = 0;
	while (sent < n) {
		int fds[PROTO_MAX_FDS];
		size_t off = 0, k = 0;
		for (; sent + k < n && k < PROTO_MAX_FDS; k++) {
			const struct held *h = items[sent + k];
			const struct listener_cfg *l = app_listener(dp->a, h->listener);
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
				 dp->a->cfg->name);
			held_close(items[sent]);
			sent++;
			continue;
		}
		int r = proto_send(w->channel_fd, MSG_CONN, 0, 0, payload, off, fds, k);
		if (r == -EAGAIN) {
			dispatch_channel_full(w);
			break;
		}
		if (r == -EPIPE || r == -ECONNRESET || r == -ECONNREFUSED || r == -ENOTCONN) {
			/* The worker is gone (a dead SEQPACKET peer refuses): skip it
			 * until its exit is reported; these go to another worker. */
			w->channel_full = true;
			break;
		}
		if (r < 0) {
			/* Not the worker's fault and not a full channel: do not retry
			 * these for ever, and do not stop serving. */
			log_warn("%s: generation %u worker %u (pid %d): cannot send %zu "
				 "connection%s: %s; closing them",
				 dp->a->cfg->name, w->gen->id, w->index, (int)w->pid, k,
				 k == 1 ? "" : "s", strerror(-r));
			for (size_t i = 0; i < k; i++)
				held_close(items[sent + i]);
			sent += k;
			continue;
		}
		for (size_t i = 0; i < k; i++)
			held_close(items[sent + i]); /* the worker has its own copy now */
		w->delivered += k;
		sent += k;
	}
	return sent;
}

/* One round: up to BATCH_MAX connections from the head, routed and sent.
 * Returns how many left the queue plus how many workers were found full: while
 * that is not 0, another round may route what is left to other workers. */
static size_t flush_round(struct dispatch *dp)
{
	struct gen *g = dp->a->serving;
	if (!g || dp->count == 0)
		return 0;
	size_t n = dp->count < BATCH_MAX ? dp->count : BATCH_MAX;
	struct held round[BATCH_MAX];
	struct worker *to[BATCH_MAX];
	unsigned pending[g->n_workers];
	memset(pending, 0, sizeof(pending));
	size_t taken = 0;
	for (; taken < n; taken++) {
		struct worker *w = pick(dp, ring_at(dp, 0), pending);
		if (!w)
			break;
		ring_pop_front(dp, &round[taken]);
		to[taken] = w;
		pending[w->index]++;
	}
	size_t delivered = 0;
	bool sent[BATCH_MAX] = {false};
	for (size_t i = 0; i < taken; i++) {
		struct worker *w = to[i];
		if (!w)
			continue;
		struct held *items[BATCH_MAX];
		size_t idx[BATCH_MAX], k = 0;
		for (size_t j = i; j < taken; j++)
			if (to[j] == w) {
				idx[k] = j;
				items[k++] = &round[j];
				to[j] = NULL;
			}
		bool was_full = w->channel_full;
		size_t n_sent = send_group(dp, w, items, k);
		for (size_t j = 0; j < n_sent; j++)
			sent[idx[j]] = true;
		delivered += n_sent + (!was_full && w->channel_full);
	}
	/* What could not be sent goes back to the head, in its order. */
	for (size_t i = taken; i-- > 0;)
		if (!sent[i] && ring_push_front(dp, &round[i]) < 0)
			held_close(&round[i]);
	return delivered;
}

static bool can_accept(const struct dispatch *dp)
{
	if (dp->stopped)
		return false;
	int backoff = 0;
	if (dp->backoff_timer && sd_event_source_get_enabled(dp->backoff_timer, &backoff) >= 0 &&
	    backoff)
		return false;
	const struct gen *g = dp->a->serving;
	for (unsigned i = 0; g && i < g->n_workers; i++)
		if (worker_takes(&g->workers[i]))
			return dp->count < BATCH_MAX; /* anything held goes first */
	/* Workers ready but every channel full: leave clients in the backlog.
	 * No worker ready at all: hold, up to hold-max. */
	return !any_worker_ready(dp) && dp->count < dp->a->cfg->hold_max;
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
		int r = sd_event_add_time(dp->a->d->event, &dp->hold_timer, CLOCK_MONOTONIC,
					  deadline, 10000, on_hold_timer, dp);
		if (r < 0)
			log_warn("%s: cannot arm hold timer: %s", dp->a->cfg->name, strerror(-r));
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
	uint64_t now = daemon_now_usec(dp->a->d);
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
		log_warn("%s: closed %u connection%s held longer than hold-timeout",
			 dp->a->cfg->name, closed, closed == 1 ? "" : "s");
	arm_hold_timer(dp);
	update_accepting(dp);
	return 0;
}

void dispatch_kick(struct dispatch *dp)
{
	if (!dp || dp->flushing)
		return;
	flush(dp);
	arm_hold_timer(dp);
	update_accepting(dp);
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
	log_warn("%s: listener \"%s\": accept: %s; pausing accept for %d ms", dp->a->cfg->name,
		 app_listener(dp->a, l->idx)->name, strerror(err), ACCEPT_BACKOFF_USEC / 1000);
	int r;
	if (!dp->backoff_timer)
		r = sd_event_add_time_relative(dp->a->d->event, &dp->backoff_timer,
					       CLOCK_MONOTONIC, ACCEPT_BACKOFF_USEC, 10000,
					       on_backoff_timer, dp);
	else if ((r = sd_event_source_set_time_relative(dp->backoff_timer,
							  ACCEPT_BACKOFF_USEC)) >= 0)
		r = sd_event_source_set_enabled(dp->backoff_timer, SD_EVENT_ONESHOT);
	if (r < 0)
		log_warn("%s: cannot arm the accept back-off: %s", dp->a->cfg->name,
			 strerror(-r));
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct dlistener *l = userdata;
	struct dispatch *dp = l->dp;
	uint64_t deadline = daemon_now_usec(dp->a->d) + dp->a->cfg->hold_timeout_usec;
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
				log_warn("%s: out of memory, closing a connection",
					 dp->a->cfg->name);
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
	return 0;
}

int dispatch_new(struct app *a, struct dispatch **ret)
{
	struct dispatch *dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	dp->a = a;
	if (a->cfg->mode == SERVE_DISPATCH) {
		dp->listeners = calloc(a->cfg->n_listeners, sizeof(*dp->listeners));
		if (!dp->listeners) {
			free(dp);
			return -ENOMEM;
		}
		for (size_t i = 0; i < a->cfg->n_listeners; i++) {
			struct dlistener *l = &dp->listeners[i];
			l->dp = dp;
			l->idx = i;
			int r = sd_event_add_io(a->d->event, &l->src, a->listen_fds[i], EPOLLIN,
						on_accept, l);
			if (r < 0) {
				dispatch_free(dp);
				return r;
			}
			dp->n_listeners++;
			/* Off until a worker is ready or there is room to hold. */
			sd_event_source_set_enabled(l->src, SD_EVENT_OFF);
		}
	}
	*ret = dp;
	update_accepting(dp);
	return 0;
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
	for (size_t i = 0; i < dp->n_listeners; i++)
		sd_event_source_disable_unref(dp->listeners[i].src);
	sd_event_source_disable_unref(dp->hold_timer);
	sd_event_source_disable_unref(dp->backoff_timer);
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
		log_info("%s: stopping: closing %zu held connection%s", dp->a->cfg->name, dp->count,
			 dp->count == 1 ? "" : "s");
	close_held(dp);
	arm_hold_timer(dp);
	update_accepting(dp);
}

void dispatch_conn_done(struct worker *w, uint32_t n)
{
	w->done += n;
	if (w->done > w->delivered)
		w->done = w->delivered; /* a confused worker cannot make itself look idle */
}

void dispatch_park(struct worker *w, int fd, const struct proto_conn *rec)
{
	struct app *a = w->gen->app;
	struct dispatch *dp = a->dispatch;
	struct held h = {
	    .fd = fd,
	    .flags = CONN_ADOPTED,
	    .deadline_usec = daemon_now_usec(a->d) + a->cfg->hold_timeout_usec,
	};
	size_t i = 0;
	while (i < a->cfg->n_listeners &&
	       (strlen(app_listener(a, i)->name) != rec->name_len ||
		memcmp(app_listener(a, i)->name, rec->name, rec->name_len) != 0))
		i++;
	if (i == a->cfg->n_listeners || dp->stopped || rec->addr_len > sizeof(h.addr) ||
	    rec->state_len > PROTO_STATE_MAX) {
		log_warn("%s: worker %u (pid %d) parked a connection of listener \"%.*s\" "
			 "with %u bytes of state: %s; closing it",
			 a->cfg->name, w->index, (int)w->pid, (int)rec->name_len, rec->name,
			 (unsigned)rec->state_len,
			 i == a->cfg->n_listeners ? "no such listener in this app"
			 : dp->stopped		  ? "batond is stopping"
			 : rec->state_len > PROTO_STATE_MAX ? "more state than 8192 bytes"
							    : "bad peer address");
		close(fd);
		return;
	}
	if (rec->tag_len && !(h.tag = strndup(rec->tag, rec->tag_len))) {
		close(fd);
		return;
	}
	h.listener = (uint16_t)i;
	h.addr_len = rec->addr_len;
	if (rec->addr_len)
		memcpy(&h.addr, rec->addr, rec->addr_len);
	if (rec->state_len) {
		h.state = malloc(rec->state_len);
		if (!h.state) {
			held_close(&h);
			return;
		}
		memcpy(h.state, rec->state, rec->state_len);
		h.state_len = rec->state_len;
	}
	if (ring_push_back(dp, &h) < 0) {
		held_close(&h);
		return;
	}
	dispatch_kick(dp);
}

void dispatch_channel_full(struct worker *w)
{
	w->channel_full = true;
	channel_watch_writable(w);
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
