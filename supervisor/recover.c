/* SPDX-License-Identifier: MIT */
/* Recovery of a batond killed without a service manager; see recover.h. The
 * state file is trusted only as a hint: every process it names is checked
 * (start time, its own LISTEN_PID and BATON_APP in its environment) and every
 * fd taken from it must be the configured socket. */
#include "recover.h"
#include "app.h"
#include "batond.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <json-c/json.h>

#define STATE_MAX_BYTES (4 * 1024 * 1024)

struct orphan {
	struct recover *rc;
	const struct app_cfg *app;
	pid_t pid;
	unsigned generation;
	unsigned worker; /* its index in the generation, for its output's lines */
	int pidfd;
	struct output *output; /* its stdout and stderr, read again; NULL if not a pipe */
	sd_event_source *exit_src;
	sd_event_source *kill_timer;
};

struct start_time {
	pid_t pid;
	unsigned long long ticks;
};

struct recover {
	sd_event *event;
	char *path;
	struct orphan **orphans;
	size_t n_orphans;
	bool drained;
	char *recorded;		   /* what the state file holds now */
	uint64_t recorded_hash;	   /* workers_hash of it */
	struct start_time *starts; /* of the workers last recorded */
	size_t n_starts;
};

/* Field 22 of /proc/PID/stat: when the process started, in clock ticks
 * since boot. 0 if it is gone. */
static unsigned long long start_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the name may hold spaces and parens */
	unsigned long long ticks = 0;
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
			 "%*d %*d %*d %*d %llu",
			 &ticks) != 1)
		return 0;
	return ticks;
}

/* True if @pid's environment has LISTEN_PID=@pid and BATON_APP=@app: a worker
 * batond started, not a process that got its pid since. */
static bool is_worker_of(pid_t pid, const char *app)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	static char env[256 * 1024];
	size_t used = 0;
	ssize_t n;
	while (used < sizeof(env) - 1 && (n = read(fd, env + used, sizeof(env) - 1 - used)) > 0)
		used += (size_t)n;
	close(fd);
	env[used] = 0;
	char want_pid[48], want_app[300];
	snprintf(want_pid, sizeof(want_pid), "LISTEN_PID=%d", (int)pid);
	snprintf(want_app, sizeof(want_app), "BATON_APP=%s", app);
	bool has_pid = false, has_app = false;
	for (size_t off = 0; off < used; off += strlen(env + off) + 1) {
		has_pid |= strcmp(env + off, want_pid) == 0;
		has_app |= strcmp(env + off, want_app) == 0;
	}
	return has_pid && has_app;
}

static const struct app_cfg *find_app(const struct config *cfg, const char *name)
{
	for (size_t i = 0; name && i < cfg->n_apps; i++)
		if (strcmp(cfg->apps[i].name, name) == 0)
			return &cfg->apps[i];
	return NULL;
}

static void orphan_free(struct orphan *o)
{
	output_free(o->output);
	sd_event_source_disable_unref(o->exit_src);
	sd_event_source_disable_unref(o->kill_timer);
	close(o->pidfd);
	free(o);
}

static void orphan_gone(struct orphan *o)
{
	struct recover *rc = o->rc;
	log_info("%s: orphaned worker pid %d of generation %u (before batond's restart) is gone",
		 o->app->name, (int)o->pid, o->generation);
	for (size_t i = 0; i < rc->n_orphans; i++)
		if (rc->orphans[i] == o) {
			rc->orphans[i] = rc->orphans[--rc->n_orphans];
			break;
		}
	orphan_free(o);
	if (rc->n_orphans == 0)
		log_info("every worker of the batond before this one is gone");
}

static int on_orphan_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	orphan_gone(userdata);
	return 0;
}

/* What the worker left in its process group goes too: it led the group. */
static void orphan_signal(struct orphan *o, int sig, bool group)
{
	if (group && getpgid(o->pid) == o->pid && kill(-o->pid, sig) == 0)
		return;
	if (pidfd_send_signal(o->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
		log_warn("%s: orphaned worker pid %d: cannot signal it: %s", o->app->name,
			 (int)o->pid, strerror(errno));
}

static int on_orphan_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct orphan *o = userdata;
	log_warn("%s: orphaned worker pid %d still running after drain-timeout, sending SIGKILL",
		 o->app->name, (int)o->pid);
	orphan_signal(o, SIGKILL, true);
	return 0;
}

/* Takes the listeners of @o's app that are still closed from its fds 3.. */
static void take_listeners(struct orphan *o, const struct config *cfg,
			   struct listener_rt *listeners)
{
	const struct app_cfg *app = o->app;
	if (app->mode == SERVE_DISPATCH)
		return; /* its workers never had the listeners */
	for (size_t i = 0; i < app->n_listeners; i++) {
		struct listener_rt *l = &listeners[app->listener_idx[i]];
		const struct listener_cfg *lc = &cfg->listeners[app->listener_idx[i]];
		if (l->fd >= 0)
			continue;
		/* O_CLOEXEC from birth: pidfd_getfd sets it. */
		int fd = pidfd_getfd(o->pidfd, 3 + (int)i, 0);
		if (fd < 0)
			continue; /* it closed that copy (draining), or we may not look */
		char err[256];
		if (listener_check_inherited(fd, &lc->addr, err, sizeof(err)) < 0) {
			close(fd);
			continue;
		}
		l->fd = fd;
		l->taken_back = true;
		log_info("listener %s: %s, fd %d taken back from pid %d (app %s, generation %u, "
			 "orphaned by the batond before)",
			 lc->name, lc->address, fd, (int)o->pid, app->name, o->generation);
	}
}

/* @o's stdout and stderr, when they are the pipe the batond before read
 * (output.c): it lost its reader with that batond, and the worker's next write
 * would fail with EPIPE, or end it with SIGPIPE. A pipe can be opened again
 * through /proc: its lines are logged as any worker's, "APP[GEN.WORKER]: ".
 * Not when fd 1 is not a pipe (a journal stream) or is batond's own stderr. */
static void take_output(struct orphan *o)
{
	char path[64];
	struct stat st, own;
	snprintf(path, sizeof(path), "/proc/%d/fd/1", (int)o->pid);
	if (stat(path, &st) < 0 || !S_ISFIFO(st.st_mode) ||
	    (fstat(STDERR_FILENO, &own) == 0 && own.st_dev == st.st_dev && own.st_ino == st.st_ino))
		return;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	int r = output_restore(o->rc->event, fd, -1, o->app->name, o->generation, o->worker,
			       &o->output);
	if (r < 0) {
		log_warn("%s: orphaned worker pid %d: its output is not read: %s", o->app->name,
			 (int)o->pid, strerror(-r));
		close(fd);
	}
}

static struct orphan *orphan_adopt(struct recover *rc, const struct app_cfg *app, pid_t pid,
				   unsigned generation, unsigned worker, unsigned long long start)
{
	if (pid <= 1 || pid == getpid() || !start || start_ticks(pid) != start ||
	    !is_worker_of(pid, app->name))
		return NULL;
	int pidfd = pidfd_open(pid, 0);
	if (pidfd < 0)
		return NULL;
	/* Checked again with the pidfd held: the pid cannot be reused now. */
	struct orphan *o = calloc(1, sizeof(*o));
	struct orphan **orphans = realloc(rc->orphans, (rc->n_orphans + 1) * sizeof(*orphans));
	if (orphans)
		rc->orphans = orphans;
	if (!o || !orphans || start_ticks(pid) != start ||
	    sd_event_add_io(rc->event, &o->exit_src, pidfd, EPOLLIN, on_orphan_exit, o) < 0) {
		if (o)
			sd_event_source_disable_unref(o->exit_src);
		free(o);
		close(pidfd);
		return NULL;
	}
	*o = (struct orphan){.rc = rc,
			     .app = app,
			     .pid = pid,
			     .generation = generation,
			     .worker = worker,
			     .pidfd = pidfd,
			     .exit_src = o->exit_src};
	rc->orphans[rc->n_orphans++] = o;
	return o;
}

/* The state file, if it is batond's own: a regular file of its user that
 * nobody else may write. NULL otherwise. */
static struct json_object *read_state(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("%s: %s; not recovering orphaned workers", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	char *buf = NULL;
	struct json_object *state = NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 022) || st.st_size > STATE_MAX_BYTES) {
		log_warn("%s: not a file of batond's own; ignored", path);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	if (n < 0)
		goto out;
	buf[n] = 0;
	state = json_tokener_parse(buf);
	if (!state)
		log_warn("%s: not JSON; ignored", path);
out:
	free(buf);
	close(fd);
	return state;
}

struct recover *recover_resume(sd_event *event, const struct config *cfg)
{
	struct recover *rc = calloc(1, sizeof(*rc));
	if (!rc || asprintf(&rc->path, "%s.state", cfg->control_socket) < 0) {
		free(rc);
		return NULL;
	}
	rc->event = event;
	return rc;
}

bool recover_busy(const struct recover *rc)
{
	return rc && rc->n_orphans > 0;
}

struct recover *recover_orphans(sd_event *event, const struct config *cfg,
				struct listener_rt *listeners)
{
	struct recover *rc = recover_resume(event, cfg);
	if (!rc)
		return NULL;
	struct json_object *state = read_state(rc->path), *workers;
	if (!state)
		return rc;
	if (json_object_object_get_ex(state, "workers", &workers) &&
	    json_object_is_type(workers, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(workers); i++) {
			struct json_object *w = json_object_array_get_idx(workers, i);
			const struct app_cfg *app =
			    find_app(cfg, json_object_get_string(json_object_object_get(w, "app")));
			if (!app)
				continue;
			struct orphan *o = orphan_adopt(
			    rc, app, json_object_get_int(json_object_object_get(w, "pid")),
			    (unsigned)json_object_get_int(json_object_object_get(w, "generation")),
			    (unsigned)json_object_get_int(json_object_object_get(w, "worker")),
			    (unsigned long long)json_object_get_int64(
				json_object_object_get(w, "start")));
			if (o) {
				take_listeners(o, cfg, listeners);
				take_output(o);
			}
		}
	}
	json_object_put(state);
	if (rc->n_orphans)
		log_info("found %zu worker%s orphaned by the batond before this one: they serve "
			 "until this one's generations are ready, then drain",
			 rc->n_orphans, rc->n_orphans == 1 ? "" : "s");
	return rc;
}

void recover_drain(struct recover *rc)
{
	if (!rc || rc->drained)
		return;
	rc->drained = true;
	for (size_t i = 0; i < rc->n_orphans; i++) {
		struct orphan *o = rc->orphans[i];
		log_info("%s: draining orphaned worker pid %d of generation %u", o->app->name,
			 (int)o->pid, o->generation);
		orphan_signal(o, o->app->stop_signal, o->app->kill_mode == KILL_GROUP);
		if (sd_event_add_time_relative(rc->event, &o->kill_timer, CLOCK_MONOTONIC,
					       o->app->drain_timeout_usec, 1000, on_orphan_timeout,
					       o) < 0)
			orphan_signal(o, SIGKILL, true);
	}
}

static unsigned long long cached_start(struct recover *rc, pid_t pid)
{
	for (size_t i = 0; i < rc->n_starts; i++)
		if (rc->starts[i].pid == pid)
			return rc->starts[i].ticks;
	return start_ticks(pid);
}

/* Writes @text to the state file through a temporary one: a batond killed
 * mid-write leaves the previous state, never half of one. */
static int write_state(const char *path, const char *text)
{
	char tmp[4200];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	int r = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* A hash of every worker's app, generation and pid: what the state file says,
 * cheap enough to compute at every settle (a thousand workers becoming ready
 * one by one must not rewrite the file a thousand times). */
static uint64_t workers_hash(const struct daemon *d)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < d->n_apps; i++)
		for (size_t k = 0; k < d->apps[i]->n_gens; k++) {
			const struct gen *g = d->apps[i]->gens[k];
			for (unsigned w = 0; w < g->n_workers; w++) {
				uint64_t v = (uint64_t)i << 48 ^ (uint64_t)g->id << 32 ^
					     (uint32_t)g->workers[w]->pid;
				h = (h ^ v) * 1099511628211ULL;
			}
		}
	return h;
}

void recover_record(struct recover *rc, const struct daemon *d)
{
	if (!rc)
		return;
	uint64_t hash = workers_hash(d);
	if (rc->recorded && hash == rc->recorded_hash)
		return;
	rc->recorded_hash = hash;
	struct json_object *state = json_object_new_object();
	struct json_object *workers = json_object_new_array();
	struct start_time *starts = NULL;
	size_t n_starts = 0;
	json_object_object_add(state, "batond_pid", json_object_new_int(getpid()));
	json_object_object_add(state, "workers", workers);
	for (size_t i = 0; i < d->n_apps; i++) {
		const struct app *a = d->apps[i];
		for (size_t k = 0; k < a->n_gens; k++)
			for (unsigned w = 0; w < a->gens[k]->n_workers; w++) {
				pid_t pid = a->gens[k]->workers[w]->pid;
				unsigned long long start = pid > 0 ? cached_start(rc, pid) : 0;
				struct start_time *more =
				    start ? realloc(starts, (n_starts + 1) * sizeof(*starts))
					  : NULL;
				if (!more)
					continue;
				starts = more;
				starts[n_starts++] = (struct start_time){pid, start};
				struct json_object *o = json_object_new_object();
				json_object_object_add(o, "app",
						       json_object_new_string(a->cfg->name));
				json_object_object_add(o, "generation",
						       json_object_new_int((int)a->gens[k]->id));
				json_object_object_add(o, "worker", json_object_new_int((int)w));
				json_object_object_add(o, "pid", json_object_new_int(pid));
				json_object_object_add(o, "start",
						       json_object_new_int64((int64_t)start));
				json_object_array_add(workers, o);
			}
	}
	free(rc->starts);
	rc->starts = starts;
	rc->n_starts = n_starts;
	const char *text = json_object_to_json_string_ext(state, JSON_C_TO_STRING_PLAIN);
	if (!rc->recorded || strcmp(text, rc->recorded) != 0) {
		int r = write_state(rc->path, text);
		if (r < 0)
			log_warn("%s: %s; a batond killed now could not take its listeners back",
				 rc->path, strerror(-r));
		free(rc->recorded);
		rc->recorded = r < 0 ? NULL : strdup(text);
	}
	json_object_put(state);
}

void recover_move(struct recover *rc, const struct config *cfg)
{
	char *path;
	if (!rc || asprintf(&path, "%s.state", cfg->control_socket) < 0)
		return;
	if (strcmp(path, rc->path) == 0) {
		free(path);
		return;
	}
	if (rename(rc->path, path) < 0 && errno != ENOENT)
		log_warn("%s: cannot move it to %s: %s", rc->path, path, strerror(errno));
	free(rc->path);
	rc->path = path;
}

void recover_forget(struct recover *rc)
{
	if (rc && unlink(rc->path) < 0 && errno != ENOENT)
		log_warn("%s: %s", rc->path, strerror(errno));
}

void recover_free(struct recover *rc)
{
	if (!rc)
		return;
	for (size_t i = 0; i < rc->n_orphans; i++)
		orphan_free(rc->orphans[i]);
	free(rc->orphans);
	free(rc->starts);
	free(rc->recorded);
	free(rc->path);
	free(rc);
}
