/* Generations and their workers. A generation reports to app.c exactly once
 * per outcome: ready (app_gen_ready), failed while starting (app_gen_failed)
 * and gone once its last process was reaped (app_gen_gone). */
#include "generation.h"
#include "app.h"
#include "batond.h"
#include "channel.h"
#include "dispatch.h"
#include "log.h"
#include "notify.h"
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RESTART_BASE_USEC   (100 * 1000ULL)
#define RESTART_MAX_USEC    (30 * 1000000ULL)
#define RESTART_STABLE_USEC (10 * 1000000ULL) /* a worker up this long resets its backoff */

static void worker_spawn(struct worker *w);

static struct daemon *gen_daemon(const struct gen *g)
{
	return g->app->d;
}

static uint64_t now_usec(const struct gen *g)
{
	return daemon_now_usec(gen_daemon(g));
}

static const char *app_name(const struct gen *g)
{
	return g->app->cfg->name;
}

const char *gen_state_name(enum gen_state s)
{
	static const char *const names[] = {[GEN_STARTING] = "starting",
					    [GEN_READY] = "ready",
					    [GEN_DRAINING] = "draining",
					    [GEN_GONE] = "gone"};
	return names[s];
}

const char *worker_state_name(enum worker_state s)
{
	static const char *const names[] = {
	    [WORKER_STARTING] = "starting",   [WORKER_READY] = "ready",
	    [WORKER_DRAINING] = "draining",   [WORKER_BACKOFF] = "backoff",
	    [WORKER_LINGERING] = "lingering", [WORKER_EXITED] = "exited"};
	return names[s];
}

unsigned gen_live_workers(const struct gen *g)
{
	unsigned n = 0;
	for (unsigned i = 0; i < g->n_workers; i++)
		n += g->workers[i].pid > 0 || g->workers[i].state == WORKER_LINGERING;
	return n;
}

/* Each worker leads its own process group (spawn.c), so a signal for the group
 * reaches every process it started: a wrapper script's program too. A worker
 * that joined another group (setpgid) gets the signal alone. After it
 * exited, its lingering group only. SIGKILL always goes this way. */
static int worker_signal_group(const struct worker *w, int sig)
{
	pid_t pgid = w->pid > 0 ? w->pid : w->lingering_pgid;
	if (pgid <= 0)
		return 0;
	if (kill(-pgid, sig) == 0)
		return 0;
	if (errno == ESRCH && w->pid > 0 && kill(w->pid, sig) == 0)
		return 0;
	return -errno;
}

/* The stop signal goes to the main process alone in kill-mode mixed (systemd's
 * KillMode=mixed): a pre-fork master stops its own children gracefully, and
 * children signalled behind its back would die mid-request. What it leaves
 * behind is waited for and SIGKILLed at drain-timeout. kill-mode group is for
 * a wrapper script that does not exec and passes no signal on. */
static int worker_signal_stop(const struct worker *w)
{
	int sig = w->gen->app->cfg->stop_signal;

	if (w->gen->app->cfg->kill_mode == KILL_GROUP)
		return worker_signal_group(w, sig);
	if (w->pid <= 0)
		return 0;
	return kill(w->pid, sig) == 0 ? 0 : -errno;
}

static void describe_exit(const siginfo_t *si, char *buf, size_t len)
{
	if (si->si_code == CLD_EXITED)
		snprintf(buf, len, "exited with status %d", si->si_status);
	else
		snprintf(buf, len, "was killed by signal %d (SIG%s)%s", si->si_status,
			 sigabbrev_np(si->si_status) ?: "?",
			 si->si_code == CLD_DUMPED ? ", core dumped" : "");
}

static int arm_timer(struct gen *g, uint64_t delay_usec, sd_event_time_handler_t cb)
{
	sd_event_source_disable_unref(g->timer);
	g->timer = NULL;
	return sd_event_add_time_relative(gen_daemon(g)->event, &g->timer, CLOCK_MONOTONIC,
					  delay_usec, 1000, cb, g);
}

static void gen_became_gone(struct gen *g)
{
	g->state = GEN_GONE;
	g->gone_usec = now_usec(g);
	sd_event_source_disable_unref(g->timer);
	g->timer = NULL;
	log_info("%s: generation %u gone, drained in %llu ms", app_name(g), g->id,
		 (unsigned long long)(g->gone_usec - g->drain_started_usec) / 1000);
	struct daemon *d = gen_daemon(g);
	app_gen_gone(g->app, g); /* frees g */
	daemon_state_changed(d);
}

static int on_gen_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct gen *g = userdata;
	if (g->state == GEN_STARTING) {
		if (!g->failed) {
			g->failed = true;
			snprintf(g->reason, sizeof(g->reason),
				 "generation %u not ready within %.3g s (ready-timeout)", g->id,
				 (double)g->app->cfg->ready_timeout_usec / 1e6);
		}
		log_err("%s: %s", app_name(g), g->reason);
		app_gen_failed(g->app, g);
		daemon_state_changed(gen_daemon(g));
	} else if (g->state == GEN_DRAINING) {
		if (gen_live_workers(g) == 0) {
			gen_became_gone(g);
			return 0;
		}
		for (unsigned i = 0; i < g->n_workers; i++) {
			struct worker *w = &g->workers[i];
			if (w->pid > 0)
				log_warn("%s: generation %u worker %u (pid %d) still running after "
					 "drain-timeout, sending SIGKILL",
					 app_name(g), g->id, w->index, (int)w->pid);
			else if (w->state == WORKER_LINGERING)
				log_warn("%s: generation %u worker %u: processes of its group %d "
					 "still running after drain-timeout, sending SIGKILL",
					 app_name(g), g->id, w->index, (int)w->lingering_pgid);
			else
				continue;
			worker_signal_group(w, SIGKILL);
			if (w->state == WORKER_LINGERING && !w->linger_killed_usec)
				w->linger_killed_usec = now_usec(g);
		}
	}
	return 0;
}

static void worker_ready(struct worker *w)
{
	struct gen *g = w->gen;
	if (w->state != WORKER_STARTING)
		return;
	w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
	w->state = WORKER_READY;
	w->ready_usec = now_usec(g);
	log_info("%s: generation %u worker %u (pid %d) ready in %llu ms", app_name(g), g->id,
		 w->index, (int)w->pid,
		 (unsigned long long)(w->ready_usec - w->started_usec) / 1000);
	dispatch_kick(g->app->dispatch);
	if (g->state != GEN_STARTING || g->failed)
		return;
	for (unsigned i = 0; i < g->n_workers; i++)
		if (g->workers[i].state != WORKER_READY)
			return;
	g->state = GEN_READY;
	g->ready_usec = w->ready_usec;
	sd_event_source_disable_unref(g->timer);
	g->timer = NULL;
	log_info("%s: generation %u ready in %llu ms", app_name(g), g->id,
		 (unsigned long long)(g->ready_usec - g->started_usec) / 1000);
	app_gen_ready(g->app, g);
	daemon_state_changed(gen_daemon(g));
}

static void worker_close_exec(struct worker *w)
{
	w->exec_src = sd_event_source_disable_unref(w->exec_src);
	if (w->exec_fd >= 0)
		close(w->exec_fd);
	w->exec_fd = -1;
}

/* Reads the exec status pipe: the errno if exec failed, EOF once it succeeded
 * or the child is gone. Returns true when the pipe is finished. */
static bool worker_read_exec(struct worker *w)
{
	for (;;) {
		int err;
		ssize_t n = read(w->exec_fd, &err, sizeof(err));
		if (n == sizeof(err)) {
			w->exec_errno = err;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n == 0 || (n < 0 && errno != EAGAIN);
	}
}

static int on_exec_status(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct worker *w = userdata;
	if (!worker_read_exec(w))
		return 0;
	worker_close_exec(w);
	if (w->exec_errno == 0 && w->gen->app->cfg->ready == READY_IMMEDIATE)
		worker_ready(w);
	return 0;
}

/* A restarted worker of a serving generation has ready-timeout to be ready
 * again, like the generation had: else it is killed, which counts as a crash
 * and restarts it with the next back-off. */
static int on_ready_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
	if (w->state != WORKER_STARTING || w->pid <= 0)
		return 0;
	log_warn("%s: generation %u worker %u (pid %d) not ready within %.3g s of its restart "
		 "(ready-timeout); killing it",
		 app_name(g), g->id, w->index, (int)w->pid,
		 (double)g->app->cfg->ready_timeout_usec / 1e6);
	worker_signal_group(w, SIGKILL);
	return 0;
}

static int on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
	w->restarts++;
	app_worker_restarted(g->app);
	worker_spawn(w);
	if (w->state == WORKER_STARTING &&
	    sd_event_add_time_relative(gen_daemon(g)->event, &w->ready_timer, CLOCK_MONOTONIC,
				       g->app->cfg->ready_timeout_usec, 10000, on_ready_timeout,
				       w) < 0)
		log_warn("%s: generation %u worker %u: no ready-timeout for its restart",
			 app_name(g), g->id, w->index);
	return 0;
}

static void worker_schedule_restart(struct worker *w, uint64_t lifetime_usec)
{
	struct gen *g = w->gen;
	if (lifetime_usec >= RESTART_STABLE_USEC)
		w->crashes = 0;
	uint64_t delay = RESTART_BASE_USEC << (w->crashes < 10 ? w->crashes : 10);
	if (delay > RESTART_MAX_USEC)
		delay = RESTART_MAX_USEC;
	w->crashes++;
	w->state = WORKER_BACKOFF;
	int r = sd_event_add_time_relative(gen_daemon(g)->event, &w->restart_timer, CLOCK_MONOTONIC,
					   delay, 1000, on_restart_timer, w);
	if (r < 0) {
		log_err("%s: generation %u worker %u: cannot arm restart timer: %s", app_name(g),
			g->id, w->index, strerror(-r));
		w->state = WORKER_EXITED;
		return;
	}
	log_info("%s: generation %u worker %u restarting in %llu ms", app_name(g), g->id, w->index,
		 (unsigned long long)delay / 1000);
}

#define LINGER_POLL_USEC  (50 * 1000)
#define LINGER_GRACE_USEC (1000 * 1000) /* after SIGKILL: zombies of a slow reaper */

/* What is left of a worker's process group once its own process is reaped
 * (sd-event reaps it after on_child returns, so this runs from the loop, then
 * polls: those processes are not batond's children). A draining worker stays
 * counted as live (WORKER_LINGERING) until its group is empty: its processes
 * finish their work (told by the worker in kill-mode mixed, by the stop signal
 * in group), else drain-timeout kills them. What a failed or crashed worker
 * left behind is killed, so that it does not go on holding the listeners. */
static int on_group_check(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	pid_t pgid = w->lingering_pgid;
	bool lingering = w->state == WORKER_LINGERING;
	bool empty = kill(-pgid, 0) < 0 && errno == ESRCH;
	if (!empty && !lingering) {
		log_warn("%s: generation %u worker %u: killing what is left of its process "
			 "group %d",
			 app_name(g), g->id, w->index, (int)pgid);
		kill(-pgid, SIGKILL);
		empty = true;
	} else if (!empty && w->linger_killed_usec &&
		   now_usec(g) - w->linger_killed_usec >= LINGER_GRACE_USEC) {
		log_warn("%s: generation %u worker %u: process group %d still there 1 s after "
			 "SIGKILL (zombies its parent does not reap?); no longer waiting",
			 app_name(g), g->id, w->index, (int)pgid);
		empty = true;
	}
	if (!empty) {
		if (!w->linger_waited)
			log_info("%s: generation %u worker %u: waiting for the rest of its process "
				 "group %d",
				 app_name(g), g->id, w->index, (int)pgid);
		w->linger_waited = true;
		sd_event_source_set_time_relative(s, LINGER_POLL_USEC);
		sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
		return 0;
	}
	if (w->linger_waited)
		log_info("%s: generation %u worker %u: the rest of its process group has exited",
			 app_name(g), g->id, w->index);
	w->group_timer = sd_event_source_disable_unref(w->group_timer);
	w->lingering_pgid = 0;
	w->linger_killed_usec = 0;
	w->linger_waited = false;
	if (lingering) {
		w->state = WORKER_EXITED;
		if (gen_live_workers(g) == 0)
			gen_became_gone(g);
	}
	return 0;
}

/* Arms on_group_check for the group of @pgid, whose leader just exited. */
static int worker_check_group(struct worker *w, pid_t pgid)
{
	w->group_timer = sd_event_source_disable_unref(w->group_timer);
	/* Accuracy 1 µs: 0 would mean sd-event's default of 250 ms, which every
	 * drain would wait. */
	int r = sd_event_add_time_relative(gen_daemon(w->gen)->event, &w->group_timer,
					   CLOCK_MONOTONIC, 0, 1, on_group_check, w);
	if (r < 0)
		return r;
	w->lingering_pgid = pgid;
	w->linger_killed_usec = 0;
	w->linger_waited = false;
	return 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	char how[96];
	describe_exit(si, how, sizeof(how));
	if (w->exec_fd >= 0)
		worker_read_exec(w);
	worker_close_exec(w);
	channel_detach(w);
	w->child_src = sd_event_source_disable_unref(w->child_src);
	w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
	uint64_t lifetime = now_usec(g) - w->started_usec;
	log_info("%s: generation %u worker %u (pid %d) %s after %llu ms", app_name(g), g->id,
		 w->index, (int)w->pid, how, (unsigned long long)lifetime / 1000);
	pid_t pid = w->pid;
	w->pid = 0;
	enum worker_state was = w->state;
	w->state = WORKER_EXITED;
	dispatch_kick(g->app->dispatch); /* it may have been the last one taking connections */
	/* Its process group may outlive it (a wrapper script's program, say). */
	if (worker_check_group(w, pid) < 0)
		log_warn("%s: generation %u worker %u: cannot watch its process group %d",
			 app_name(g), g->id, w->index, (int)pid);
	else if (g->state == GEN_DRAINING)
		w->state = WORKER_LINGERING; /* live until on_group_check finds it empty */

	switch (g->state) {
	case GEN_STARTING:
		if (!g->failed) {
			g->failed = true;
			int n = snprintf(g->reason, sizeof(g->reason), "generation %u %s before %s",
					 g->id, how,
					 was == WORKER_READY ? "all its workers were ready"
					 : g->app->cfg->ready == READY_NOTIFY ? "READY=1"
									      : "it was ready");
			if (w->exec_errno && n > 0 && (size_t)n < sizeof(g->reason))
				snprintf(g->reason + n, sizeof(g->reason) - (size_t)n,
					 " (exec %s: %s)", g->app->cfg->argv[0],
					 strerror(w->exec_errno));
			log_err("%s: worker %u (pid %d): %s", app_name(g), w->index, (int)pid,
				g->reason);
			app_gen_failed(g->app, g);
			daemon_state_changed(gen_daemon(g));
		}
		break;
	case GEN_READY:
		if (!gen_daemon(g)->stopping)
			worker_schedule_restart(w, lifetime);
		break;
	case GEN_DRAINING:
		if (gen_live_workers(g) == 0)
			gen_became_gone(g);
		break;
	case GEN_GONE:
		break;
	}
	return 0;
}

static void worker_spawn(struct worker *w)
{
	struct gen *g = w->gen;
	struct app *a = g->app;
	struct daemon *d = a->d;
	struct spawn_req req = {
	    .argv = a->cfg->argv,
	    .program_fd = g->program_fd,
	    .app_env = a->cfg->environment,
	    .listen_fds = a->listen_fds,
	    /* Dispatch workers get connections over the channel, never listeners. */
	    .n_listen_fds = a->cfg->mode == SERVE_DISPATCH ? 0 : a->cfg->n_listeners,
	    .listen_names = a->cfg->mode == SERVE_DISPATCH ? "" : a->listen_names,
	    .notify_socket = notify_address(d->notify),
	    .app = a->cfg->name,
	    .generation = g->id,
	    .worker = w->index,
	};
	pid_t pid;
	int channel_fd, exec_fd;
	w->state = WORKER_STARTING;
	w->delivered = w->done = 0;
	w->channel_full = false;
	w->drain_pending = false;
	w->exec_errno = 0;
	w->ready_usec = 0;
	w->started_usec = now_usec(g);
	int r = spawn_worker(&req, &pid, &channel_fd, &exec_fd);
	if (r < 0) {
		log_err("%s: generation %u worker %u: fork: %s", a->cfg->name, g->id, w->index,
			strerror(-r));
		goto fail;
	}
	w->pid = pid;
	w->channel_fd = channel_fd;
	w->exec_fd = exec_fd;
	r = sd_event_add_child(d->event, &w->child_src, pid, WEXITED, on_child, w);
	if (r < 0) {
		/* Without a child source we could never reap it: do not let it run.
		 * Reaped at once if it is gone already; batond does not wait for it
		 * (it may be in an uninterruptible exec), so it may stay a zombie. */
		log_err("%s: generation %u worker %u: cannot watch pid %d: %s; killed",
			a->cfg->name, g->id, w->index, (int)pid, strerror(-r));
		worker_signal_group(w, SIGKILL);
		waitpid(pid, NULL, WNOHANG);
		w->pid = 0;
		channel_detach(w);
		worker_close_exec(w);
		goto fail;
	}
	r = sd_event_add_io(d->event, &w->exec_src, exec_fd, EPOLLIN, on_exec_status, w);
	if (r < 0)
		log_warn("%s: generation %u worker %u: exec status unwatched: %s", a->cfg->name,
			 g->id, w->index, strerror(-r));
	channel_attach(w);
	log_info("%s: generation %u worker %u started, pid %d", a->cfg->name, g->id, w->index,
		 (int)pid);
	return;
fail:
	w->state = WORKER_EXITED;
	if (g->state == GEN_STARTING && !g->failed) {
		g->failed = true;
		snprintf(g->reason, sizeof(g->reason), "generation %u could not start: %s", g->id,
			 strerror(-r));
		arm_timer(g, 0, on_gen_timer); /* report outside the caller's stack */
	} else if (g->state == GEN_READY && !d->stopping) {
		worker_schedule_restart(w, 0);
	}
}

int gen_start(struct app *app, unsigned id, struct gen **ret)
{
	struct gen *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->workers = calloc(app->cfg->workers, sizeof(*g->workers));
	if (!g->workers) {
		free(g);
		return -ENOMEM;
	}
	g->app = app;
	g->id = id;
	g->n_workers = app->cfg->workers;
	g->state = GEN_STARTING;
	g->started_usec = daemon_now_usec(app->d);
	/* Every worker of this generation, restarts included, runs this very file:
	 * after a rollback, a worker of the generation still serving that crashes
	 * must not come back as the binary that was just refused. If it cannot be
	 * opened, exec by path reports why. */
	g->program_fd = open(app->cfg->argv[0], O_PATH | O_CLOEXEC);
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = &g->workers[i];
		w->gen = g;
		w->index = i;
		w->channel_fd = -1;
		w->exec_fd = -1;
		w->state = WORKER_EXITED;
	}
	int r = arm_timer(g, app->cfg->ready_timeout_usec, on_gen_timer);
	if (r < 0) {
		if (g->program_fd >= 0)
			close(g->program_fd);
		free(g->workers);
		free(g);
		return r;
	}
	log_info("%s: generation %u starting %u worker%s", app->cfg->name, id, g->n_workers,
		 g->n_workers == 1 ? "" : "s");
	for (unsigned i = 0; i < g->n_workers && !g->failed; i++)
		worker_spawn(&g->workers[i]);
	*ret = g;
	return 0;
}

void gen_drain(struct gen *g)
{
	if (g->state == GEN_DRAINING || g->state == GEN_GONE)
		return;
	g->state = GEN_DRAINING;
	g->drain_started_usec = now_usec(g);
	unsigned live = 0;
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = &g->workers[i];
		w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
		w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
		if (w->pid <= 0) {
			w->state = WORKER_EXITED;
			continue;
		}
		w->state = WORKER_DRAINING;
		channel_send_drain(w);
		int r = worker_signal_stop(w);
		if (r < 0)
			log_warn("%s: generation %u worker %u (pid %d): kill: %s", app_name(g),
				 g->id, w->index, (int)w->pid, strerror(-r));
		live++;
	}
	log_info("%s: generation %u draining %u worker%s", app_name(g), g->id, live,
		 live == 1 ? "" : "s");
	/* With nothing left to wait for, report gone from the loop, not from here:
	 * the caller is in the middle of its own bookkeeping. */
	if (arm_timer(g, live ? g->app->cfg->drain_timeout_usec : 0, on_gen_timer) < 0) {
		log_err("%s: generation %u: cannot arm drain timer, killing now", app_name(g),
			g->id);
		for (unsigned i = 0; i < g->n_workers; i++)
			worker_signal_group(&g->workers[i], SIGKILL);
	}
}

bool gen_notify(struct gen *g, pid_t pid, bool ready, bool stopping, const char *status)
{
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = &g->workers[i];
		if (w->pid != pid)
			continue;
		if (status)
			snprintf(w->status, sizeof(w->status), "%s", status);
		if (stopping)
			log_info("%s: generation %u worker %u (pid %d) is stopping", app_name(g),
				 g->id, w->index, (int)pid);
		if (ready && g->app->cfg->ready == READY_NOTIFY)
			worker_ready(w);
		return true;
	}
	return false;
}

void gen_free(struct gen *g)
{
	if (!g)
		return;
	sd_event_source_disable_unref(g->timer);
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = &g->workers[i];
		worker_close_exec(w);
		channel_detach(w);
		sd_event_source_disable_unref(w->child_src);
		sd_event_source_disable_unref(w->restart_timer);
		sd_event_source_disable_unref(w->ready_timer);
		sd_event_source_disable_unref(w->group_timer);
		/* Not checked yet or still lingering: nothing is left to wait for it. */
		if (w->lingering_pgid > 0)
			kill(-w->lingering_pgid, SIGKILL);
	}
	if (g->program_fd >= 0)
		close(g->program_fd);
	free(g->workers);
	free(g);
}
