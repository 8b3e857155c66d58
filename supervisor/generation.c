/* SPDX-License-Identifier: MIT */
/* Generations and their workers. A generation marks its own state and reports
 * through env->ops (see generation.h for the states); it never frees itself or
 * calls into its owner beyond those reports. Owns its workers, their
 * processes' event sources and their channels. */
#include "generation.h"
#include "cgroup.h"
#include "channel.h"
#include "log.h"
#include "output.h"
#include "proto.h"
#include "reexec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RESTART_BASE_USEC   (100 * 1000ULL)
#define RESTART_MAX_USEC    (30 * 1000000ULL)
#define RESTART_STABLE_USEC (10 * 1000000ULL) /* a worker up this long resets its backoff */
#define LINGER_POLL_USEC    (50 * 1000)
#define LINGER_GRACE_USEC   (1000 * 1000) /* after SIGKILL: zombies of a slow reaper */
#define FINISH_GRACE_USEC                                                                          \
	(1000 * 1000ULL) /* finished early: time to park or exit, then SIGKILL                     \
			  */

void gen_spawn_creds(const struct app_cfg *cfg, struct spawn_creds *ret)
{
	*ret = (struct spawn_creds){
	    .set_ids = cfg->set_ids,
	    .uid = cfg->uid,
	    .gid = cfg->gid,
	    .groups = cfg->groups,
	    .n_groups = cfg->n_groups,
	    .working_directory = cfg->working_directory,
	    .set_umask = cfg->set_umask,
	    .umask = cfg->umask,
	    .no_new_privileges = cfg->no_new_privileges,
	    .ambient_caps = cfg->ambient_caps,
	    .limits = {{RLIMIT_NOFILE, cfg->limit_nofile.set, cfg->limit_nofile.value},
		       {RLIMIT_CORE, cfg->limit_core.set, cfg->limit_core.value},
		       {RLIMIT_NPROC, cfg->limit_nproc.set, cfg->limit_nproc.value}},
	};
}

static void worker_spawn(struct worker *w);

static const struct app_cfg *cfg_of(const struct gen *g)
{
	return g->env->cfg;
}

static uint64_t now_usec(const struct gen *g)
{
	uint64_t now;
	if (sd_event_now(g->env->event, CLOCK_MONOTONIC, &now) < 0)
		return 0;
	return now;
}

static void changed(struct gen *g)
{
	g->env->ops->changed(g->env->userdata, g);
}

/* Every line about a worker starts "APP: generation G worker W (pid P) ", or
 * "APP: generation G worker W: " while it has no process. */
static void __attribute__((format(printf, 3, 4)))
log_worker(const struct worker *w, int priority, const char *fmt, ...)
{
	char prefix[160];
	const struct gen *g = w->gen;
	if (w->pid > 0)
		snprintf(prefix, sizeof(prefix), "%s: generation %u worker %u (pid %d) ",
			 cfg_of(g)->name, g->id, w->index, (int)w->pid);
	else
		snprintf(prefix, sizeof(prefix), "%s: generation %u worker %u: ", cfg_of(g)->name,
			 g->id, w->index);
	va_list ap;
	va_start(ap, fmt);
	log_msgv(priority, prefix, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
log_gen(const struct gen *g, int priority, const char *fmt, ...)
{
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "%s: generation %u ", cfg_of(g)->name, g->id);
	va_list ap;
	va_start(ap, fmt);
	log_msgv(priority, prefix, fmt, ap);
	va_end(ap);
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
		n += g->workers[i]->pid > 0 || g->workers[i]->state == WORKER_LINGERING;
	return n;
}

struct channel *gen_ready_channel(const struct gen *g, unsigned i)
{
	if (i >= g->n_workers || g->workers[i]->state != WORKER_READY)
		return NULL;
	return g->workers[i]->channel;
}

/* Each worker leads its own process group (spawn.c), so a signal for the group
 * reaches every process it started: a wrapper script's program too. A worker
 * that joined another group (setpgid) gets the signal alone. After it
 * exited, its lingering group only. SIGKILL always goes this way. */
static int worker_signal_group(const struct worker *w, int sig)
{
	/* With cgroups, SIGKILL reaches what left the group too (setsid). */
	if (sig == SIGKILL && w->cgroup)
		return cgroup_kill(w->cgroup);
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
	int sig = cfg_of(w->gen)->stop_signal;
	if (cfg_of(w->gen)->kill_mode == KILL_GROUP)
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
	g->timer = sd_event_source_disable_unref(g->timer);
	g->timer_usec = now_usec(g) + delay_usec;
	return sd_event_add_time_relative(g->env->event, &g->timer, CLOCK_MONOTONIC, delay_usec,
					  1000, cb, g);
}

static void gen_became_gone(struct gen *g)
{
	g->state = GEN_GONE;
	g->gone_usec = now_usec(g);
	g->timer = sd_event_source_disable_unref(g->timer);
	log_gen(g, LOG_INFO, "gone, drained in %llu ms",
		(unsigned long long)(g->gone_usec - g->drain_started_usec) / 1000);
	changed(g);
}

/* A starting generation that will not become ready: reported once. */
static void gen_fail(struct gen *g)
{
	log_msg(LOG_ERR, "%s: %s", cfg_of(g)->name, g->reason);
	changed(g);
}

static int on_gen_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct gen *g = userdata;
	if (g->state == GEN_STARTING && !g->failed) {
		g->failed = true;
		snprintf(g->reason, sizeof(g->reason),
			 "generation %u not ready within %.3g s (ready-timeout)", g->id,
			 (double)cfg_of(g)->ready_timeout_usec / 1e6);
		gen_fail(g);
	} else if (g->state == GEN_READY && g->drain_at_usec) {
		gen_drain(g); /* overlap is over */
	} else if (g->state == GEN_DRAINING) {
		const char *when =
		    g->finishing ? "1 s after it was finished early" : "after drain-timeout";
		for (unsigned i = 0; i < g->n_workers; i++) {
			struct worker *w = g->workers[i];
			if (w->pid > 0)
				log_worker(w, LOG_WARNING, "still running %s, sending SIGKILL",
					   when);
			else if (w->state == WORKER_LINGERING && w->cgroup)
				log_worker(w, LOG_WARNING,
					   "processes of its cgroup still running %s, killing them "
					   "(cgroup.kill)",
					   when);
			else if (w->state == WORKER_LINGERING)
				log_worker(w, LOG_WARNING,
					   "processes of its group %d still running %s, "
					   "sending SIGKILL",
					   (int)w->lingering_pgid, when);
			else
				continue;
			worker_signal_group(w, SIGKILL);
			if (w->state == WORKER_LINGERING && !w->linger_killed_usec)
				w->linger_killed_usec = now_usec(g);
		}
		/* Anything of the generation outside its workers' cgroups too. */
		if (g->cgroup)
			cgroup_kill(g->cgroup);
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
	log_worker(w, LOG_INFO, "ready in %llu ms",
		   (unsigned long long)(w->ready_usec - w->started_usec) / 1000);
	changed(g); /* it may take connections now */
	if (g->state != GEN_STARTING || g->failed)
		return;
	for (unsigned i = 0; i < g->n_workers; i++)
		if (g->workers[i]->state != WORKER_READY)
			return;
	g->state = GEN_READY;
	g->ready_usec = w->ready_usec;
	g->timer = sd_event_source_disable_unref(g->timer);
	log_gen(g, LOG_INFO, "ready in %llu ms",
		(unsigned long long)(g->ready_usec - g->started_usec) / 1000);
}

static void worker_close_exec(struct worker *w)
{
	w->exec_src = sd_event_source_disable_unref(w->exec_src);
	if (w->exec_fd >= 0)
		close(w->exec_fd);
	w->exec_fd = -1;
}

/* Reads the exec status pipe: what failed in the child, EOF once exec
 * succeeded or the child is gone. Returns true when the pipe is finished. */
static bool worker_read_exec(struct worker *w)
{
	for (;;) {
		struct spawn_failure f;
		ssize_t n = read(w->exec_fd, &f, sizeof(f));
		if (n == sizeof(f)) {
			w->exec_errno = f.err;
			w->exec_step = f.step;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n == 0 || (n < 0 && errno != EAGAIN);
	}
}

/* " (exec /usr/bin/app: No such file or directory)", " (setresuid 65534:
 * Operation not permitted)": what the child could not do. */
static void worker_describe_failure(const struct worker *w, char *buf, size_t len)
{
	const struct app_cfg *cfg = cfg_of(w->gen);
	char what[300];
	switch (w->exec_step) {
	case SPAWN_EXEC:
		snprintf(what, sizeof(what), "exec %s", cfg->argv[0]);
		break;
	case SPAWN_GID:
		snprintf(what, sizeof(what), "setresgid %u", (unsigned)cfg->gid);
		break;
	case SPAWN_UID:
		snprintf(what, sizeof(what), "setresuid %u", (unsigned)cfg->uid);
		break;
	case SPAWN_CHDIR:
		snprintf(what, sizeof(what), "chdir %s", cfg->working_directory);
		break;
	default:
		snprintf(what, sizeof(what), "%s", spawn_step_name(w->exec_step));
	}
	snprintf(buf, len, " (%s: %s)", what, strerror(w->exec_errno));
}

static int on_exec_status(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct worker *w = userdata;
	if (!worker_read_exec(w))
		return 0;
	worker_close_exec(w);
	if (w->exec_errno == 0 && cfg_of(w->gen)->ready == READY_IMMEDIATE)
		worker_ready(w);
	return 0;
}

/* A restarted worker of a serving generation has ready-timeout to be ready
 * again, like the generation had: else it is killed, which counts as a crash
 * and restarts it with the next back-off. */
static int on_ready_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
	if (w->state != WORKER_STARTING || w->pid <= 0)
		return 0;
	log_worker(w, LOG_WARNING,
		   "not ready within %.3g s of its restart (ready-timeout); killing it",
		   (double)cfg_of(w->gen)->ready_timeout_usec / 1e6);
	worker_signal_group(w, SIGKILL);
	return 0;
}

/* Starts @w in a generation that serves: it has ready-timeout of its own. */
static void worker_spawn_serving(struct worker *w)
{
	struct gen *g = w->gen;
	worker_spawn(w);
	if (w->state == WORKER_STARTING &&
	    sd_event_add_time_relative(g->env->event, &w->ready_timer, CLOCK_MONOTONIC,
				       cfg_of(g)->ready_timeout_usec, 10000, on_ready_timeout,
				       w) < 0)
		log_worker(w, LOG_WARNING, "has no ready-timeout");
}

static int on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
	w->restarts++;
	g->env->ops->restarted(g->env->userdata, g);
	worker_spawn_serving(w);
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
	int r = sd_event_add_time_relative(g->env->event, &w->restart_timer, CLOCK_MONOTONIC, delay,
					   1000, on_restart_timer, w);
	if (r < 0) {
		log_worker(w, LOG_ERR, "cannot arm its restart timer: %s", strerror(-r));
		w->state = WORKER_EXITED;
		return;
	}
	log_worker(w, LOG_INFO, "restarting in %llu ms", (unsigned long long)delay / 1000);
}

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
		log_worker(w, LOG_WARNING, "left processes in its group %d: killing them",
			   (int)pgid);
		kill(-pgid, SIGKILL);
		empty = true;
	} else if (!empty && w->linger_killed_usec &&
		   now_usec(g) - w->linger_killed_usec >= LINGER_GRACE_USEC) {
		log_worker(w, LOG_WARNING,
			   "its process group %d is still there 1 s after SIGKILL (zombies its "
			   "parent does not reap?); no longer waiting",
			   (int)pgid);
		empty = true;
	}
	if (!empty) {
		if (!w->linger_waited)
			log_worker(w, LOG_INFO,
				   "exited; waiting for the rest of its process group %d",
				   (int)pgid);
		w->linger_waited = true;
		sd_event_source_set_time_relative(s, LINGER_POLL_USEC);
		sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
		return 0;
	}
	if (w->linger_waited)
		log_worker(w, LOG_INFO, "no process left in its group");
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
	int r = sd_event_add_time_relative(w->gen->env->event, &w->group_timer, CLOCK_MONOTONIC, 0,
					   1, on_group_check, w);
	if (r < 0)
		return r;
	w->lingering_pgid = pgid;
	w->linger_killed_usec = 0;
	w->linger_waited = false;
	return 0;
}

/* What is left in a worker's cgroup once its own process is reaped (the
 * zombie no longer counts): as with process groups (on_group_check), a
 * draining worker lingers until it is empty, which the cgroup's watch reports
 * (on_cgroup_changed); what a failed or crashed worker left behind is killed. */
static void worker_check_cgroup(struct worker *w)
{
	if (!cgroup_populated(w->cgroup))
		return;
	if (w->gen->state == GEN_DRAINING) {
		w->state = WORKER_LINGERING;
		log_worker(w, LOG_INFO, "exited; waiting for the rest of its cgroup %s",
			   cgroup_path(w->cgroup));
		return;
	}
	log_worker(w, LOG_WARNING, "left processes in its cgroup %s: killing them",
		   cgroup_path(w->cgroup));
	cgroup_kill(w->cgroup);
}

static void on_cgroup_changed(void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	if (w->state != WORKER_LINGERING || cgroup_populated(w->cgroup))
		return;
	log_worker(w, LOG_INFO, "no process left in its cgroup");
	w->state = WORKER_EXITED;
	if (g->state == GEN_DRAINING && gen_live_workers(g) == 0)
		gen_became_gone(g);
}

static int on_cgroup_recheck(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	w->group_timer = sd_event_source_disable_unref(w->group_timer);
	on_cgroup_changed(w);
	return 0;
}

/* The worker's process is gone: no channel, no exec pipe, no timers of it. */
static void worker_release(struct worker *w)
{
	worker_close_exec(w);
	channel_free(w->channel);
	w->channel = NULL;
	w->child_src = sd_event_source_disable_unref(w->child_src);
	w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct worker *w = userdata;
	struct gen *g = w->gen;
	char how[96];
	describe_exit(si, how, sizeof(how));
	if (w->exec_fd >= 0)
		worker_read_exec(w);
	/* What it wrote before it exited (why it failed, say) comes first. */
	output_drain(w->output);
	uint64_t lifetime = now_usec(g) - w->started_usec;
	log_worker(w, LOG_INFO, "%s after %llu ms", how, (unsigned long long)lifetime / 1000);
	/* Its exit may be seen before the last of its messages: it parked its
	 * connections and exited at once, say. Nothing more can come now. */
	channel_flush_input(w->channel);
	worker_release(w);
	pid_t pid = w->pid;
	w->pid = 0;
	enum worker_state was = w->state;
	w->state = WORKER_EXITED;
	changed(g); /* it may have been the last one taking connections */
	/* Its cgroup, or its process group, may outlive it (a wrapper script's
	 * program, a daemon it forked). */
	if (w->cgroup)
		worker_check_cgroup(w);
	else if (worker_check_group(w, pid) < 0)
		log_worker(w, LOG_WARNING, "cannot watch its process group %d", (int)pid);
	else if (g->state == GEN_DRAINING)
		w->state = WORKER_LINGERING; /* live until on_group_check finds it empty */

	switch (g->state) {
	case GEN_STARTING:
		if (!g->failed) {
			g->failed = true;
			int n = snprintf(g->reason, sizeof(g->reason), "generation %u %s before %s",
					 g->id, how,
					 was == WORKER_READY ? "all its workers were ready"
					 : cfg_of(g)->ready == READY_NOTIFY ? "READY=1"
									    : "it was ready");
			if (w->exec_errno && n > 0 && (size_t)n < sizeof(g->reason))
				worker_describe_failure(w, g->reason + n,
							sizeof(g->reason) - (size_t)n);
			gen_fail(g);
		}
		break;
	case GEN_READY:
		if (w->retiring)
			changed(g); /* gen_scale's leftovers: retire_done takes it away */
		else
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

static int worker_listener_fd(void *userdata, const char *name)
{
	const struct worker *w = userdata;
	const struct gen_env *env = w->gen->env;
	/* In dispatch mode batond accepts: a worker gets connections, not listeners. */
	if (env->cfg->mode == SERVE_DISPATCH)
		return -EOPNOTSUPP;
	for (size_t i = 0; i < env->cfg->n_listeners; i++)
		if (strcmp(env->listen_names[i], name) == 0)
			return env->listen_fds[i];
	return -ENOENT;
}

static void worker_conn_done(void *userdata, uint32_t n)
{
	struct worker *w = userdata;
	w->gen->env->ops->conn_done(w->gen->env->userdata, w->gen, w->index, n);
}

/* Counted for status; logged at the 1st, 2nd, 4th, 8th... refusal of a
 * worker: a flood costs a few lines. */
static void park_refused(struct worker *w, const char *why)
{
	w->gen->env->ops->park_refused(w->gen->env->userdata, w->gen);
	unsigned n = ++w->parks_refused;
	if ((n & (n - 1)) == 0)
		log_worker(w, LOG_WARNING, "parked a connection: refused, %s (%u refused so far)",
			   why, n);
}

/* Only a draining worker hands connections on, and no more of them than its
 * app may hold (hold-max): a worker that parks while serving, or without end,
 * cannot make batond hold its fds. */
static int worker_park(void *userdata, int fd, const struct proto_conn *rec)
{
	struct worker *w = userdata;
	const struct gen_env *env = w->gen->env;
	if (w->state != WORKER_DRAINING) {
		close(fd);
		park_refused(w, "it is not draining");
		return -EPERM;
	}
	if (w->parks >= env->cfg->hold_max) {
		close(fd);
		park_refused(w, "it parked hold-max connections already");
		return -ENOBUFS;
	}
	int r = env->ops->park(env->userdata, w->gen, fd, rec);
	if (r == 0)
		w->gen->parks++;
	if (r < 0) {
		park_refused(w, r == -ENOENT	  ? "no such listener in its app"
				: r == -EMSGSIZE  ? "its state is too large"
				: r == -EINVAL	  ? "bad peer address"
				: r == -ESHUTDOWN ? "batond is stopping"
				: r == -ENOBUFS	  ? "its app holds hold-max connections already"
				: r == -EMFILE
				    ? "held connections have their share of batond's fds already"
				    : strerror(-r));
		return r;
	}
	w->parks++;
	return 0;
}

static void worker_writable(void *userdata)
{
	struct worker *w = userdata;
	changed(w->gen);
}

static const struct channel_ops worker_channel_ops = {
    .listener_fd = worker_listener_fd,
    .conn_done = worker_conn_done,
    .park = worker_park,
    .writable = worker_writable,
};

static void worker_spawn(struct worker *w)
{
	struct gen *g = w->gen;
	const struct gen_env *env = g->env;
	const struct app_cfg *cfg = env->cfg;
	struct spawn_creds creds;
	gen_spawn_creds(cfg, &creds);
	struct spawn_req req = {
	    .creds = &creds,
	    .argv = cfg->argv,
	    .program_fd = g->program_fd,
	    .app_env = cfg->environment,
	    .listen_fds = env->listen_fds,
	    /* Dispatch workers get connections over the channel, never listeners. */
	    .n_listen_fds = cfg->mode == SERVE_DISPATCH ? 0 : cfg->n_listeners,
	    .listen_names = cfg->mode == SERVE_DISPATCH ? "" : env->listen_names_joined,
	    .notify_socket = env->notify_socket,
	    .app = cfg->name,
	    .generation = g->id,
	    .worker = w->index,
	    .stdio_fd = -1,
	    .stdio_journal = log_is_journal(),
	};
	int cgroup_fds[CGROUP_JOIN_MAX];
	int n_cgroup_fds = 0;
	if (g->cgroup && !w->cgroup &&
	    cgroup_worker_new(g->cgroup, w->index, on_cgroup_changed, w, &w->cgroup) < 0)
		log_worker(w, LOG_WARNING, "has no cgroup: tracked by its process group");
	if (w->cgroup && (n_cgroup_fds = cgroup_join_fds(w->cgroup, cgroup_fds)) < 0) {
		log_worker(w, LOG_WARNING, "cannot join its cgroup: tracked by its process group");
		cgroup_free(w->cgroup);
		w->cgroup = NULL;
		n_cgroup_fds = 0;
	}
	req.cgroup_fds = cgroup_fds;
	req.n_cgroup_fds = (size_t)n_cgroup_fds;
	if (!req.stdio_journal && !w->output) {
		int r = output_new(env->event, cfg->name, g->id, w->index, &w->output);
		if (r < 0)
			log_worker(w, LOG_WARNING,
				   "writes to batond's stderr: no pipe for its output: %s",
				   strerror(-r));
	}
	req.stdio_fd = output_write_fd(w->output);
	pid_t pid;
	int channel_fd, exec_fd;
	w->state = WORKER_STARTING;
	w->parks = w->parks_refused = 0;
	w->exec_errno = 0;
	w->exec_step = SPAWN_EXEC;
	w->ready_usec = 0;
	w->started_usec = now_usec(g);
	int r = env->spawn(&req, &pid, &channel_fd, &exec_fd);
	for (int i = 0; i < n_cgroup_fds; i++)
		close(cgroup_fds[i]);
	if (r < 0) {
		log_worker(w, LOG_ERR, "cannot be started: fork: %s", strerror(-r));
		goto fail;
	}
	w->pid = pid;
	w->exec_fd = exec_fd;
	r = sd_event_add_child(env->event, &w->child_src, pid, WEXITED, on_child, w);
	if (r < 0) {
		/* Without a child source we could never reap it: do not let it run.
		 * Reaped at once if it is gone already; batond does not wait for it
		 * (it may be in an uninterruptible exec), so it may stay a zombie. */
		log_worker(w, LOG_ERR, "cannot be watched: %s; killed", strerror(-r));
		worker_signal_group(w, SIGKILL);
		waitpid(pid, NULL, WNOHANG);
		w->pid = 0;
		close(channel_fd);
		worker_close_exec(w);
		goto fail;
	}
	r = sd_event_add_io(env->event, &w->exec_src, exec_fd, EPOLLIN, on_exec_status, w);
	if (r < 0)
		log_worker(w, LOG_WARNING, "has its exec status unwatched: %s", strerror(-r));
	char who[160];
	snprintf(who, sizeof(who), "%s: generation %u worker %u (pid %d)", cfg->name, g->id,
		 w->index, (int)pid);
	/* Without its channel the worker still runs; it only loses the extras
	 * beyond the systemd contract. */
	r = channel_new(env->event, channel_fd, &worker_channel_ops, w, cfg->name, who,
			&w->channel);
	if (r < 0)
		log_worker(w, LOG_WARNING, "has its channel unwatched: %s", strerror(-r));
	log_worker(w, LOG_INFO, "started");
	return;
fail:
	w->state = WORKER_EXITED;
	if (g->state == GEN_STARTING && !g->failed) {
		g->failed = true;
		snprintf(g->reason, sizeof(g->reason), "generation %u could not start: %s", g->id,
			 strerror(-r));
		gen_fail(g);
	} else if (g->state == GEN_READY) {
		worker_schedule_restart(w, 0);
	}
}

static struct worker *worker_new(struct gen *g, unsigned index)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (w)
		*w = (struct worker){
		    .gen = g, .index = index, .exec_fd = -1, .state = WORKER_EXITED};
	return w;
}

static void worker_free(struct worker *w)
{
	worker_release(w);
	output_free(w->output);
	sd_event_source_disable_unref(w->restart_timer);
	sd_event_source_disable_unref(w->group_timer);
	sd_event_source_disable_unref(w->retire_timer);
	/* Not checked yet or still lingering: nothing is left to wait for it. */
	if (w->lingering_pgid > 0)
		kill(-w->lingering_pgid, SIGKILL);
	cgroup_free(w->cgroup); /* killed if anything is left, removed once empty */
	free(w);
}

int gen_start(const struct gen_env *env, unsigned id, unsigned n_workers, int program_fd,
	      struct gen **ret)
{
	struct gen *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->workers = calloc(n_workers, sizeof(*g->workers));
	for (unsigned i = 0; g->workers && i < n_workers; i++)
		if (!(g->workers[i] = worker_new(g, i))) {
			while (i-- > 0)
				free(g->workers[i]);
			free(g->workers);
			g->workers = NULL;
		}
	if (!g->workers) {
		free(g);
		return -ENOMEM;
	}
	g->env = env;
	g->id = id;
	g->n_workers = n_workers;
	g->state = GEN_STARTING;
	g->started_usec = now_usec(g);
	/* Every worker of this generation, restarts included, runs this very file:
	 * after a rollback, a worker of the generation still serving that crashes
	 * must not come back as the binary that was just refused. If it cannot be
	 * opened, exec by path reports why. */
	g->program_fd = program_fd >= 0 ? fcntl(program_fd, F_DUPFD_CLOEXEC, 3)
					: open(env->cfg->argv[0], O_PATH | O_CLOEXEC);
	int r = arm_timer(g, env->cfg->ready_timeout_usec, on_gen_timer);
	if (r < 0) {
		if (g->program_fd >= 0)
			close(g->program_fd);
		for (unsigned i = 0; i < n_workers; i++)
			free(g->workers[i]);
		free(g->workers);
		free(g);
		return r;
	}
	if (env->cgroups && cgroup_gen_new(env->cgroups, env->cfg, id, &g->cgroup) < 0)
		log_gen(g, LOG_WARNING, "has no cgroup: its workers are tracked by process group");
	else if (!env->cgroups &&
		 (env->cfg->memory_max.set || env->cfg->tasks_max.set || env->cfg->cpu_weight))
		log_gen(g, LOG_WARNING,
			"runs without memory-max, tasks-max and cpu-weight: batond has no "
			"cgroups");
	log_gen(g, LOG_INFO, "starting %u worker%s", g->n_workers, g->n_workers == 1 ? "" : "s");
	for (unsigned i = 0; i < g->n_workers && !g->failed; i++)
		worker_spawn(g->workers[i]);
	*ret = g;
	return 0;
}

/* DRAIN on its channel and the stop signal: finish what you have. */
static void worker_stop(struct worker *w)
{
	w->state = WORKER_DRAINING;
	if (w->channel)
		channel_send_drain(w->channel, 0);
	int r = worker_signal_stop(w);
	if (r < 0)
		log_worker(w, LOG_WARNING, "cannot be signalled: %s", strerror(-r));
}

void gen_drain(struct gen *g)
{
	if (g->state == GEN_DRAINING || g->state == GEN_GONE)
		return;
	g->state = GEN_DRAINING;
	g->drain_started_usec = now_usec(g);
	g->drain_at_usec = 0;
	unsigned live = 0;
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = g->workers[i];
		w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
		w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
		w->retire_timer = sd_event_source_disable_unref(w->retire_timer);
		if (w->pid <= 0) {
			/* A group or cgroup it left behind (dying, or still being
			 * checked): waited for too. */
			w->state =
			    w->lingering_pgid > 0 || (w->cgroup && cgroup_populated(w->cgroup))
				? WORKER_LINGERING
				: WORKER_EXITED;
			live += w->state == WORKER_LINGERING;
			continue;
		}
		worker_stop(w);
		live++;
	}
	log_gen(g, LOG_INFO, "draining %u worker%s", live, live == 1 ? "" : "s");
	changed(g); /* its workers take no more connections */
	if (live == 0) {
		gen_became_gone(g);
		return;
	}
	if (arm_timer(g, cfg_of(g)->drain_timeout_usec, on_gen_timer) < 0) {
		log_gen(g, LOG_ERR, "cannot arm its drain timer: killing it now");
		for (unsigned i = 0; i < g->n_workers; i++)
			worker_signal_group(g->workers[i], SIGKILL);
	}
}

int gen_drain_later(struct gen *g, uint64_t delay_usec)
{
	if (g->state != GEN_READY)
		return -EBUSY;
	int r = arm_timer(g, delay_usec, on_gen_timer);
	if (r < 0)
		return r;
	g->drain_at_usec = g->timer_usec;
	log_gen(g, LOG_INFO, "serves on for %.3g s (overlap), then drains",
		(double)delay_usec / 1e6);
	return 0;
}

void gen_finish(struct gen *g)
{
	if (g->state != GEN_DRAINING || g->finishing)
		return;
	g->finishing = true;
	g->parks_at_finish = g->parks;
	unsigned parking = 0, others = 0;
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = g->workers[i];
		if (w->pid > 0 && channel_said_hello(w->channel) && channel_is_open(w->channel)) {
			/* libbaton: it may park what it holds. */
			channel_send_drain(w->channel, DRAIN_NOW);
			parking++;
		} else if (w->pid > 0 || w->state == WORKER_LINGERING) {
			/* It has its stop signal already, and may be an instant from
			 * its exit: several generations whose overlap ended in the
			 * same turn start draining together, and killing the oldest at
			 * once cut requests they would have finished. */
			others++;
		}
	}
	log_gen(g, LOG_WARNING,
		"finished early (max-draining): %u worker%s told to park their connections "
		"(DRAIN now), %u other%s SIGKILL in 1 s unless gone",
		parking, parking == 1 ? "" : "s", others, others == 1 ? "" : "s");
	if ((parking || others) && g->timer_usec > now_usec(g) + FINISH_GRACE_USEC &&
	    arm_timer(g, FINISH_GRACE_USEC, on_gen_timer) < 0) {
		log_gen(g, LOG_ERR, "cannot arm its finish timer: killing it now");
		for (unsigned i = 0; i < g->n_workers; i++)
			worker_signal_group(g->workers[i], SIGKILL);
	}
}

static int on_retire_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct worker *w = userdata;
	w->retire_timer = sd_event_source_disable_unref(w->retire_timer);
	if (w->pid > 0) {
		log_worker(w, LOG_WARNING, "still running after drain-timeout, sending SIGKILL");
		worker_signal_group(w, SIGKILL);
	}
	return 0;
}

/* Worker @w of a serving generation goes: it drains as a draining generation's
 * would, and is taken away once its process is gone (retire_done). */
static void worker_retire(struct worker *w)
{
	struct gen *g = w->gen;
	w->retiring = true;
	w->restart_timer = sd_event_source_disable_unref(w->restart_timer);
	w->ready_timer = sd_event_source_disable_unref(w->ready_timer);
	if (w->pid <= 0)
		return;
	worker_stop(w);
	if (sd_event_add_time_relative(g->env->event, &w->retire_timer, CLOCK_MONOTONIC,
				       cfg_of(g)->drain_timeout_usec, 1000, on_retire_timeout,
				       w) < 0)
		worker_signal_group(w, SIGKILL);
}

int gen_scale(struct gen *g, unsigned n)
{
	if (g->state != GEN_READY || n == 0)
		return -EBUSY;
	unsigned active = 0;
	for (unsigned i = 0; i < g->n_workers; i++)
		active += !g->workers[i]->retiring;
	if (n == active)
		return 0;
	if (n > active) {
		/* New workers after every one there, retiring ones included: a
		 * worker's index is its identity while it lives. */
		struct worker **workers =
		    realloc(g->workers, (g->n_workers + n - active) * sizeof(*workers));
		if (!workers)
			return -ENOMEM;
		g->workers = workers;
		for (unsigned k = active; k < n; k++) {
			struct worker *w = worker_new(g, g->n_workers);
			if (!w)
				return -ENOMEM;
			g->workers[g->n_workers++] = w;
			worker_spawn_serving(w);
		}
	} else {
		/* The highest indexes go. */
		for (unsigned i = g->n_workers; i-- > 0 && active > n;)
			if (!g->workers[i]->retiring) {
				worker_retire(g->workers[i]);
				active--;
			}
	}
	log_gen(g, LOG_INFO, "scaled to %u worker%s", n, n == 1 ? "" : "s");
	changed(g);
	return 0;
}

void gen_retire_done(struct gen *g)
{
	/* Only from the end: an index names a worker for as long as it lives. */
	while (g->n_workers > 0) {
		struct worker *w = g->workers[g->n_workers - 1];
		if (!w->retiring || w->pid > 0 || w->lingering_pgid > 0)
			break;
		log_worker(w, LOG_INFO, "retired");
		worker_free(w);
		g->n_workers--;
	}
}

/* With notify-access all: the worker whose cgroup (or process group) holds
 * process @pid. Its cgroup is read now, while the sender lives: systemd-notify
 * waits (BARRIER=1) until batond has read its message. */
static struct worker *worker_of_process(const struct gen *g, pid_t pid)
{
	pid_t pgid = -1;
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = g->workers[i];
		if (w->pid <= 0)
			continue;
		if (w->cgroup) {
			if (cgroup_has_pid(w->cgroup, pid))
				return w;
			continue;
		}
		if (pgid < 0)
			pgid = getpgid(pid);
		if (pgid == w->pid)
			return w;
	}
	return NULL;
}

bool gen_notify(struct gen *g, pid_t pid, bool ready, bool stopping, const char *status)
{
	struct worker *of =
	    cfg_of(g)->notify_access == NOTIFY_ALL ? worker_of_process(g, pid) : NULL;
	for (unsigned i = 0; i < g->n_workers; i++) {
		struct worker *w = g->workers[i];
		if (w->pid != pid && w != of)
			continue;
		if (status) {
			/* Cut between UTF-8 characters, never in one. */
			size_t n = proto_utf8_cut(status, strlen(status), sizeof(w->status) - 1);
			memcpy(w->status, status, n);
			w->status[n] = 0;
		}
		if (stopping)
			log_worker(w, LOG_INFO, "is stopping");
		if (ready && cfg_of(g)->ready == READY_NOTIFY)
			worker_ready(w);
		return true;
	}
	return false;
}

bool gen_cgroup_stats(const struct gen *g, uint64_t *ret_memory_bytes, uint64_t *ret_cpu_usec,
		      uint64_t *ret_tasks)
{
	if (!g->cgroup)
		return false;
	struct cgroup_stats st;
	cgroup_stats(g->cgroup, &st);
	uint64_t tasks = 0;
	for (unsigned i = 0; i < g->n_workers; i++)
		if (g->workers[i]->cgroup)
			tasks += cgroup_tasks(g->workers[i]->cgroup);
	*ret_memory_bytes = st.memory_bytes;
	*ret_cpu_usec = st.cpu_usec;
	*ret_tasks = tasks;
	return true;
}

void gen_free(struct gen *g)
{
	if (!g)
		return;
	sd_event_source_disable_unref(g->timer);
	for (unsigned i = 0; i < g->n_workers; i++)
		worker_free(g->workers[i]);
	cgroup_free(g->cgroup);
	if (g->program_fd >= 0)
		close(g->program_fd);
	free(g->workers);
	free(g);
}

/* When @s fires (absolute, CLOCK_MONOTONIC), 0 if it is not armed. */
static uint64_t due_of(sd_event_source *s)
{
	int enabled = SD_EVENT_OFF;
	uint64_t usec;
	if (!s || sd_event_source_get_enabled(s, &enabled) < 0 || enabled == SD_EVENT_OFF ||
	    sd_event_source_get_time(s, &usec) < 0)
		return 0;
	return usec;
}

static struct json_object *worker_save(const struct worker *w, struct reexec_save *s)
{
	struct json_object *j = json_object_new_object();
	rx_set_int(j, "index", w->index);
	rx_set_int(j, "state", w->state);
	rx_set_int(j, "pid", w->pid);
	if (w->channel) {
		uint16_t flags;
		rx_set_int(j, "channel_fd", reexec_keep_fd(s, channel_fd(w->channel)));
		rx_set_int(j, "channel_id", (int64_t)channel_id(w->channel));
		rx_set_bool(j, "said_hello", channel_said_hello(w->channel));
		uint64_t done_seen;
		int done_fd = channel_done_counter(w->channel, &done_seen);
		rx_set_int(j, "done_counter_fd",
			   channel_fd(w->channel) >= 0 ? reexec_keep_fd(s, done_fd) : -1);
		rx_set_int(j, "done_seen", (int64_t)done_seen);
		rx_set_bool(j, "drain_pending", channel_drain_pending(w->channel, &flags));
		rx_set_int(j, "drain_flags", flags);
	}
	rx_set_int(j, "exec_fd", reexec_keep_fd(s, w->exec_fd));
	if (w->output) {
		/* A line cut short would be lost with this image's memory. */
		output_flush(w->output);
		rx_set_int(j, "output_read_fd", reexec_keep_fd(s, output_read_fd(w->output)));
		rx_set_int(j, "output_write_fd", reexec_keep_fd(s, output_write_fd(w->output)));
	}
	rx_set_int(j, "exec_errno", w->exec_errno);
	rx_set_int(j, "exec_step", w->exec_step);
	rx_set_int(j, "started_usec", (int64_t)w->started_usec);
	rx_set_int(j, "ready_usec", (int64_t)w->ready_usec);
	rx_set_bool(j, "retiring", w->retiring);
	rx_set_int(j, "parks", w->parks);
	rx_set_int(j, "parks_refused", w->parks_refused);
	rx_set_int(j, "crashes", w->crashes);
	rx_set_int(j, "restarts", w->restarts);
	rx_set_str(j, "status", w->status);
	rx_set_int(j, "lingering_pgid", w->lingering_pgid);
	rx_set_int(j, "linger_killed_usec", (int64_t)w->linger_killed_usec);
	rx_set_bool(j, "linger_waited", w->linger_waited);
	rx_set_int(j, "restart_due_usec", (int64_t)due_of(w->restart_timer));
	rx_set_int(j, "ready_due_usec", (int64_t)due_of(w->ready_timer));
	rx_set_int(j, "retire_due_usec", (int64_t)due_of(w->retire_timer));
	return j;
}

struct json_object *gen_save(const struct gen *g, struct reexec_save *s)
{
	struct json_object *j = json_object_new_object(), *workers = json_object_new_array();
	rx_set_int(j, "id", g->id);
	rx_set_int(j, "state", g->state);
	rx_set_bool(j, "failed", g->failed);
	rx_set_int(j, "started_usec", (int64_t)g->started_usec);
	rx_set_int(j, "ready_usec", (int64_t)g->ready_usec);
	rx_set_int(j, "drain_started_usec", (int64_t)g->drain_started_usec);
	rx_set_int(j, "timer_due_usec", (int64_t)due_of(g->timer));
	rx_set_int(j, "drain_at_usec", (int64_t)g->drain_at_usec);
	rx_set_bool(j, "finishing", g->finishing);
	rx_set_int(j, "parks", g->parks);
	rx_set_int(j, "parks_at_finish", g->parks_at_finish);
	rx_set_str(j, "reason", g->reason);
	rx_set_int(j, "program_fd", reexec_keep_fd(s, g->program_fd));
	/* Its cgroups are found again by name (cgroup.h): only whether it has them. */
	if (g->cgroup)
		rx_set_str(j, "cgroup", cgroup_path(g->cgroup));
	for (unsigned i = 0; i < g->n_workers; i++)
		json_object_array_add(workers, worker_save(g->workers[i], s));
	rx_set(j, "workers", workers);
	return j;
}

static int add_time(struct gen *g, sd_event_source **ret, uint64_t due, sd_event_time_handler_t cb,
		    void *userdata)
{
	if (!due)
		return 0;
	return sd_event_add_time(g->env->event, ret, CLOCK_MONOTONIC, due, 1000, cb, userdata);
}

static int worker_restore(struct worker *w, struct json_object *j)
{
	struct gen *g = w->gen;
	const struct gen_env *env = g->env;
	int64_t state = rx_int(j, "state", -1);
	if (state < WORKER_STARTING || state > WORKER_EXITED)
		return -EBADMSG;
	w->state = (enum worker_state)state;
	w->pid = (pid_t)rx_int(j, "pid", 0);
	w->exec_fd = (int)rx_int(j, "exec_fd", -1);
	w->exec_errno = (int)rx_int(j, "exec_errno", 0);
	w->exec_step = (int)rx_int(j, "exec_step", SPAWN_EXEC);
	w->started_usec = (uint64_t)rx_int(j, "started_usec", 0);
	w->ready_usec = (uint64_t)rx_int(j, "ready_usec", 0);
	w->retiring = rx_bool(j, "retiring");
	w->parks = (unsigned)rx_int(j, "parks", 0);
	w->parks_refused = (unsigned)rx_int(j, "parks_refused", 0);
	w->crashes = (unsigned)rx_int(j, "crashes", 0);
	w->restarts = (unsigned)rx_int(j, "restarts", 0);
	snprintf(w->status, sizeof(w->status), "%s", rx_str(j, "status") ?: "");
	w->linger_killed_usec = (uint64_t)rx_int(j, "linger_killed_usec", 0);
	w->linger_waited = rx_bool(j, "linger_waited");
	int r = 0;
	if (w->pid > 0) {
		/* Still batond's child (same pid across exec): reaped here, even if it
		 * exited while the images changed. */
		r = sd_event_add_child(env->event, &w->child_src, w->pid, WEXITED, on_child, w);
		if (r < 0)
			return r;
		int fd = (int)rx_int(j, "channel_fd", -1);
		char who[160];
		snprintf(who, sizeof(who), "%s: generation %u worker %u (pid %d)", cfg_of(g)->name,
			 g->id, w->index, (int)w->pid);
		struct channel_carry carry = {
		    .id = (uint64_t)rx_int(j, "channel_id", 0),
		    .said_hello = rx_bool(j, "said_hello"),
		    .done_fd = (int)rx_int(j, "done_counter_fd", -1),
		    .done_seen = (uint64_t)rx_int(j, "done_seen", 0),
		    .drain_pending = rx_bool(j, "drain_pending"),
		    .drain_flags = (uint16_t)rx_int(j, "drain_flags", 0),
		};
		if (fd >= 0 && (r = channel_restore(env->event, fd, &carry, &worker_channel_ops, w,
						    cfg_of(g)->name, who, &w->channel)) < 0)
			return r;
	}
	if (w->exec_fd >= 0 && (r = sd_event_add_io(env->event, &w->exec_src, w->exec_fd, EPOLLIN,
						    on_exec_status, w)) < 0)
		return r;
	if (g->cgroup &&
	    (r = cgroup_worker_new(g->cgroup, w->index, on_cgroup_changed, w, &w->cgroup)) < 0)
		return r;
	/* Its cgroup may have emptied while the images changed: looked at again
	 * from the loop. */
	if (w->cgroup && w->state == WORKER_LINGERING &&
	    (r = sd_event_add_time_relative(env->event, &w->group_timer, CLOCK_MONOTONIC, 0, 1,
					    on_cgroup_recheck, w)) < 0)
		return r;
	int out_r = (int)rx_int(j, "output_read_fd", -1),
	    out_w = (int)rx_int(j, "output_write_fd", -1);
	if (out_r >= 0 && (r = output_restore(env->event, out_r, out_w, cfg_of(g)->name, g->id,
					      w->index, &w->output)) < 0)
		return r;
	pid_t pgid = (pid_t)rx_int(j, "lingering_pgid", 0);
	if (pgid > 0) {
		uint64_t killed = w->linger_killed_usec;
		bool waited = w->linger_waited;
		if ((r = worker_check_group(w, pgid)) < 0)
			return r;
		w->linger_killed_usec = killed;
		w->linger_waited = waited;
	}
	if ((r = add_time(g, &w->restart_timer, (uint64_t)rx_int(j, "restart_due_usec", 0),
			  on_restart_timer, w)) < 0 ||
	    (r = add_time(g, &w->ready_timer, (uint64_t)rx_int(j, "ready_due_usec", 0),
			  on_ready_timeout, w)) < 0 ||
	    (r = add_time(g, &w->retire_timer, (uint64_t)rx_int(j, "retire_due_usec", 0),
			  on_retire_timeout, w)) < 0)
		return r;
	return 0;
}

int gen_restore(const struct gen_env *env, struct json_object *j, struct gen **ret)
{
	size_t n = rx_len(j, "workers");
	int64_t id = rx_int(j, "id", 0), state = rx_int(j, "state", -1);
	if (id <= 0 || state < GEN_STARTING || state > GEN_GONE)
		return -EBADMSG;
	struct gen *g = calloc(1, sizeof(*g));
	if (!g || !(g->workers = calloc(n ? n : 1, sizeof(*g->workers)))) {
		free(g);
		return -ENOMEM;
	}
	g->env = env;
	g->id = (unsigned)id;
	g->state = (enum gen_state)state;
	g->failed = rx_bool(j, "failed");
	g->started_usec = (uint64_t)rx_int(j, "started_usec", 0);
	g->ready_usec = (uint64_t)rx_int(j, "ready_usec", 0);
	g->drain_started_usec = (uint64_t)rx_int(j, "drain_started_usec", 0);
	g->program_fd = (int)rx_int(j, "program_fd", -1);
	snprintf(g->reason, sizeof(g->reason), "%s", rx_str(j, "reason") ?: "");
	g->drain_at_usec = (uint64_t)rx_int(j, "drain_at_usec", 0);
	g->finishing = rx_bool(j, "finishing");
	g->parks = (unsigned)rx_int(j, "parks", 0);
	g->parks_at_finish = (unsigned)rx_int(j, "parks_at_finish", 0);
	g->timer_usec = (uint64_t)rx_int(j, "timer_due_usec", 0);
	int r = add_time(g, &g->timer, g->timer_usec, on_gen_timer, g);
	const char *cgroup = rx_str(j, "cgroup");
	if (r >= 0 && cgroup && env->cgroups &&
	    (r = cgroup_gen_new(env->cgroups, env->cfg, g->id, &g->cgroup)) >= 0 &&
	    strcmp(cgroup, cgroup_path(g->cgroup)) != 0)
		r = -EBADMSG;
	for (size_t i = 0; i < n && r >= 0; i++) {
		struct json_object *wj = rx_at(j, "workers", i);
		int64_t index = rx_int(wj, "index", -1);
		if (index != (int64_t)i) {
			r = -EBADMSG;
			break;
		}
		if (!(g->workers[i] = worker_new(g, (unsigned)i))) {
			r = -ENOMEM;
			break;
		}
		g->n_workers++;
		r = worker_restore(g->workers[i], wj);
	}
	if (r < 0)
		return r; /* nothing freed: the fds go on to the image before (reexec.h) */
	*ret = g;
	return 0;
}
