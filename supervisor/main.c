/* SPDX-License-Identifier: MIT */
/* batond: command line, start-up (config, listeners, sockets), the event loop
 * and the stop sequence. What runs inside the loop lives in app.c and below. */
#include "app.h"
#include "batond.h"
#include "cgroup.h"
#include "config.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "recover.h"
#include "reexec.h"
#include "reload.h"
#include "service.h"
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: batond -c FILE        run the apps of FILE\n"
		   "       batond --check -c FILE validate FILE and exit\n"
		   "       batond --version\n");
}

uint64_t daemon_now_usec(const struct daemon *d)
{
	uint64_t now;
	if (sd_event_now(d->event, CLOCK_MONOTONIC, &now) < 0)
		return 0;
	return now;
}

static bool all_stopped(const struct daemon *d)
{
	for (size_t i = 0; i < d->n_apps; i++)
		if (d->apps[i] && !app_is_stopped(d->apps[i]))
			return false;
	return d->n_retired == 0;
}

/* Something changed: settle on the loop's next turn, once, however many
 * reports came in this one. */
void daemon_mark(struct daemon *d)
{
	if (sd_event_source_set_enabled(d->settle, SD_EVENT_ONESHOT) < 0)
		log_err("cannot schedule settling the apps");
}

static void on_app_changed(void *userdata)
{
	daemon_mark(userdata);
}

static const struct app_ops daemon_app_ops = {.changed = on_app_changed};

/* A defer source, enabled only when an app was marked: apps act on what their
 * generations marked, systemd hears of the result, and a stopping batond
 * leaves once nothing runs. (A post source would cost a loop turn after
 * every event, each accept of a dispatch app included.) */
static int on_settle(sd_event_source *s, void *userdata)
{
	struct daemon *d = userdata;
	for (size_t i = 0; i < d->n_apps; i++)
		app_settle(d->apps[i]);
	for (size_t i = 0; i < d->n_retired; i++)
		app_settle(d->retired[i]);
	reload_settle(d);
	service_update(d);
	recover_record(d->recover, d);
	reexec_settle(d); /* does not return if the exec succeeds */
	/* Orphans of a batond killed before this one serve until every app
	 * does. */
	bool serving = true;
	for (size_t i = 0; i < d->n_apps; i++)
		serving &= d->apps[i]->serving != NULL;
	if (serving)
		recover_drain(d->recover);
	if (d->stopping && all_stopped(d))
		sd_event_exit(d->event, 0);
	return 0;
}

void daemon_stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("stopping: draining every app");
	sd_notify(0, "STOPPING=1");
	reexec_stop(d);
	for (size_t i = 0; i < d->n_apps; i++)
		app_stop(d->apps[i]);
	daemon_mark(d);
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	log_info("received SIG%s", sigabbrev_np((int)si->ssi_signo));
	daemon_stop(userdata);
	return 0;
}

static struct app_waiter *no_waiter(void *userdata)
{
	return NULL;
}

static void sighup_started(void *userdata, int code, unsigned n_pending, const char *text)
{
	/* The outcome of each app is logged by the app; a bad file by reload. */
}

/* SIGHUP does what `batonctl upgrade` does after a deploy: the configuration
 * on disk is read again and every app gets a new generation. */
static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct daemon *d = userdata;
	log_info("received SIGHUP: reloading %s and upgrading every app", d->cfg->path);
	reload_request(d, true, no_waiter, sighup_started, d);
	return 0;
}

static void sigusr2_done(void *userdata, int code, const char *text)
{
	/* A failure is logged by reexec; success by the new image. */
}

/* SIGUSR2, as nginx: exec the program batond started as, in place. */
static int on_sigusr2(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	log_info("received SIGUSR2: re-exec'ing batond");
	reexec_request(userdata, NULL, sigusr2_done, NULL);
	return 0;
}

bool daemon_on_notify(void *userdata, pid_t pid, const struct notify_state *st)
{
	struct daemon *d = userdata;
	for (size_t i = 0; i < d->n_apps; i++)
		if (app_notify(d->apps[i], pid, st->ready, st->stopping, st->status))
			return true;
	for (size_t i = 0; i < d->n_retired; i++)
		if (app_notify(d->retired[i], pid, st->ready, st->stopping, st->status))
			return true;
	return false;
}

/* fds in flight over SCM_RIGHTS count against RLIMIT_NOFILE too. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
	}
}

/* Adopts the listeners systemd passed (by FileDescriptorName=) and binds the
 * rest. Every error is reported as FILE:LINE. Returns 0 or -1. */
static int open_listeners(struct daemon *d)
{
	const struct config *cfg = d->cfg;
	d->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*d->listeners));
	if (!d->listeners)
		return -1;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		d->listeners[i].cfg = &cfg->listeners[i];
		d->listeners[i].fd = -1;
	}
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 0)
		log_warn("ignoring LISTEN_FDS: %s", strerror(-n));
	int failed = 0;
	for (int k = 0; k < n; k++) {
		int fd = SD_LISTEN_FDS_START + k;
		const char *name = names && names[k] ? names[k] : "unknown";
		size_t i;
		for (i = 0; i < cfg->n_listeners; i++)
			if (strcmp(cfg->listeners[i].name, name) == 0 && d->listeners[i].fd < 0)
				break;
		if (i == cfg->n_listeners) {
			log_warn("closing fd %d from systemd: no listener named \"%s\" in %s", fd,
				 name, cfg->path);
			close(fd);
			/* Kept in the fd store for a listener since removed from the config. */
			service_forget_listener(name);
			continue;
		}
		const struct listener_cfg *lc = &cfg->listeners[i];
		char err[256];
		if (listener_check_inherited(fd, &lc->addr, err, sizeof(err)) < 0) {
			log_err("%s:%d: listener \"%s\": address \"%s\": the socket systemd passed "
				"does not match: %s",
				cfg->path, lc->line, lc->name, lc->address, err);
			close(fd);
			failed = 1;
			continue;
		}
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		d->listeners[i].fd = fd;
		d->listeners[i].adopted = true;
		log_info("listener %s: %s, fd %d from systemd", lc->name, lc->address, fd);
	}
	if (names) {
		for (int k = 0; k < n; k++)
			free(names[k]);
		free(names);
	}
	/* Not from systemd: perhaps from the workers a batond killed before left. */
	d->recover = recover_orphans(d->event, cfg, d->listeners);
	for (size_t i = 0; i < cfg->n_listeners && !failed; i++) {
		if (d->listeners[i].fd >= 0)
			continue;
		const struct listener_cfg *lc = &cfg->listeners[i];
		char err[256];
		int r = listener_open(lc, &d->listeners[i].fd, err, sizeof(err));
		d->listeners[i].fresh = true;
		if (r < 0) {
			log_err("%s:%d: listener \"%s\": address \"%s\": %s", cfg->path, lc->line,
				lc->name, lc->address, err);
			failed = 1;
			break;
		}
		log_info("listener %s: %s, fd %d", lc->name, lc->address, d->listeners[i].fd);
		/* Adopted listeners are systemd's already (socket unit or fd store). */
		service_store_listener(lc->name, d->listeners[i].fd);
	}
	return failed ? -1 : 0;
}

/* batond accepts on dispatch listeners, so they must not block. Listeners it
 * bound for inherit apps are handed out blocking, as systemd does by default
 * (NonBlocking=no), for programs that accept in blocking mode; what systemd
 * passed stays as the socket unit configured it, and a listener workers already
 * have stays as they use it (those of a batond killed before, those of the
 * generations a reload keeps). The flag lives in the shared open file
 * description: a worker that changes it changes it for every holder, and a
 * worker that set O_NONBLOCK and finds it cleared blocks in accept() with the
 * requests it took unanswered. */
void daemon_set_blocking_mode(struct listener_rt *l, enum serve_mode mode)
{
	int fl = fcntl(l->fd, F_GETFL);
	if (fl < 0)
		return;
	if (mode == SERVE_DISPATCH)
		fcntl(l->fd, F_SETFL, fl | O_NONBLOCK);
	else if (l->fresh && !l->adopted && !l->taken_back)
		fcntl(l->fd, F_SETFL, fl & ~O_NONBLOCK);
	l->fresh = false;
}

/* Workers of an app with a user of its own get a notify socket of that user's. */
static const char *app_notify_socket(void *userdata, const struct app_cfg *cfg)
{
	struct daemon *d = userdata;
	char err[400];
	if (!cfg->set_ids)
		return notify_address(d->notify);
	const char *address = notify_socket_for(d->notify, d->event, cfg->uid, err, sizeof(err));
	if (address)
		return address;
	log_err("%s: %s; its workers cannot say READY=1", cfg->name, err);
	return notify_address(d->notify);
}

void daemon_init_app_env(struct daemon *d)
{
	d->app_env = (struct app_env){
	    .event = d->event,
	    .notify_socket = app_notify_socket,
	    .spawn = spawn_worker,
	    .ops = &daemon_app_ops,
	    .userdata = d,
	    .cgroups = d->cgroups,
	};
}

static int start_apps(struct daemon *d)
{
	const struct config *cfg = d->cfg;
	d->listener_fds = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(int));
	d->apps = calloc(cfg->n_apps ? cfg->n_apps : 1, sizeof(*d->apps));
	if (!d->listener_fds || !d->apps)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		d->listener_fds[i] = d->listeners[i].fd;
	daemon_init_app_env(d);
	for (size_t i = 0; i < cfg->n_apps; i++) {
		const struct app_cfg *ac = &cfg->apps[i];
		for (size_t k = 0; k < ac->n_listeners; k++)
			daemon_set_blocking_mode(&d->listeners[ac->listener_idx[k]], ac->mode);
		int r = app_new(&d->app_env, d->config, ac, d->listener_fds, &d->apps[i]);
		if (r < 0)
			return r;
		d->n_apps++;
	}
	for (size_t i = 0; i < d->n_apps; i++)
		app_start(d->apps[i]);
	return 0;
}

static void close_listeners(struct daemon *d)
{
	if (!d->listeners)
		return;
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		struct listener_rt *l = &d->listeners[i];
		if (l->fd < 0)
			continue;
		close(l->fd);
		/* A path we bound is ours to remove; systemd's are systemd's. A clean
		 * stop also ends the fd store (systemd 252 empties it when the service
		 * stops), so the stored copy dies with us; after a crash we never get
		 * here and the path stays for the fd store's copy. */
		if (!l->adopted && l->cfg->addr.family == AF_UNIX && !l->cfg->addr.abstract)
			unlink(l->cfg->addr.path);
	}
	free(d->listeners);
}

/* Opens the sockets and starts the apps of d->cfg. Returns 0 or -1 (logged). */
static int start(struct daemon *d)
{
	/* The control socket first: a batond already running there is found
	 * before any listener is touched. */
	if (control_open(d, &d->control) < 0)
		return -1;
	if (open_listeners(d) < 0)
		return -1;
	/* Beside the control socket, claimed above: its path is unique to this batond. */
	char notify_dir[256], err[512];
	snprintf(notify_dir, sizeof(notify_dir), "%s.notify", d->cfg->control_socket);
	int r =
	    notify_open(d->event, notify_dir, daemon_on_notify, d, &d->notify, err, sizeof(err));
	if (r < 0) {
		if (r == -ENAMETOOLONG)
			log_err("%s: the control socket's path must be at most %zu bytes", err,
				sizeof(((struct sockaddr_un *)0)->sun_path) - 1 -
				    strlen(".notify/" NOTIFY_SOCKET_NAME));
		else
			log_err("%s", err);
		return -1;
	}
	if (metrics_open(d, -1, &d->metrics) < 0)
		return -1;
	if ((r = start_apps(d)) < 0) {
		log_err("starting apps: %s", strerror(-r));
		return -1;
	}
	return 0;
}

#define RUN_RESTORE_FAILED 3

/* @state_fd >= 0: a new image after a re-exec, restoring from that state. */
static int run(struct daemon *d, int state_fd, int prev_fd, const char *fallback)
{
	int r = sd_event_default(&d->event);
	if (r < 0) {
		log_err("sd_event_default: %s", strerror(-r));
		return 1;
	}
	/* WATCHDOG=1 from the loop itself, at half of WatchdogSec: a batond whose
	 * loop is stuck stops sending it and systemd restarts it. */
	r = sd_event_set_watchdog(d->event, true);
	if (r < 0)
		log_warn("watchdog: %s", strerror(-r));
	d->started_usec = daemon_now_usec(d);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((r = sd_event_add_signal(d->event, NULL, SIGTERM, on_stop_signal, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, NULL, SIGINT, on_stop_signal, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d)) < 0 ||
	    (r = sd_event_add_signal(d->event, NULL, SIGUSR2, on_sigusr2, d)) < 0) {
		log_err("signals: %s", strerror(-r));
		return 1;
	}
	if ((r = sd_event_add_defer(d->event, &d->settle, on_settle, d)) < 0) {
		log_err("settle source: %s", strerror(-r));
		return 1;
	}
	/* Before the first worker: batond moves into a leaf of its own (a
	 * re-executed batond finds the one it is in). */
	if (state_fd < 0)
		d->cgroups = cgroups_open(d->event, -1); /* reexec_restore opens its own */
	if (state_fd >= 0 && reexec_restore(d, state_fd, prev_fd, fallback) < 0)
		return RUN_RESTORE_FAILED;
	if (state_fd < 0 && start(d) < 0)
		return 1;
	/* What the first starts marked, and READY=1 at once when there is no app
	 * to wait for. */
	daemon_mark(d);
	log_info("batond %s running %zu app%s, control socket %s", BATON_VERSION, d->n_apps,
		 d->n_apps == 1 ? "" : "s", d->cfg->control_socket);
	r = sd_event_loop(d->event);
	if (r < 0) {
		log_err("event loop: %s", strerror(-r));
		return 1;
	}
	log_info("stopped");
	recover_forget(d->recover); /* no worker is left to take anything from */
	return 0;
}

static void cleanup(struct daemon *d)
{
	reload_stop(d);
	for (size_t i = 0; i < d->n_apps; i++)
		app_free(d->apps[i]);
	free(d->apps);
	free(d->listener_fds);
	sd_event_source_disable_unref(d->settle);
	recover_free(d->recover);
	cgroups_close(d->cgroups); /* after the apps: their cgroups are empty now */
	metrics_close(d->metrics);
	control_close(d->control);
	notify_close(d->notify);
	close_listeners(d);
	sd_event_unref(d->event);
	config_ref_put(d->config);
}

/* A number of an fd passed on the command line (--reexec-*), or -1. */
static int fd_arg(const char *text)
{
	char *end;
	errno = 0;
	long fd = strtol(text, &end, 10);
	return errno || *end || end == text || fd < 0 || fd > INT_MAX ? -1 : (int)fd;
}

int main(int argc, char **argv)
{
	/* --reexec-*: only batond itself passes them, to the program it execs. */
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'C'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {"reexec-state", required_argument, NULL, 'S'},
	    {"reexec-check", required_argument, NULL, 'K'},
	    {"reexec-fallback", required_argument, NULL, 'F'},
	    {"reexec-previous", required_argument, NULL, 'P'},
	    {0},
	};
	const char *path = NULL, *fallback = NULL;
	bool check = false;
	int state_fd = -1, check_fd = -1, prev_fd = -1;
	for (int c; (c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1;) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("batond %s\n", BATON_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'S':
			state_fd = fd_arg(optarg);
			break;
		case 'K':
			check_fd = fd_arg(optarg);
			break;
		case 'F':
			fallback = optarg;
			break;
		case 'P':
			prev_fd = fd_arg(optarg);
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	log_init("batond");
	reexec_init(argc, argv, path);
	if (check_fd >= 0)
		return reexec_check(check_fd) < 0 ? 1 : 0;
	if ((!path && state_fd < 0) || optind != argc) {
		usage(stderr);
		return 2;
	}
	struct daemon d = {0};
	if (state_fd < 0) {
		if (config_load(path, stderr, &d.cfg) < 0)
			return 1;
		if (check && config_check_programs(d.cfg, stderr) > 0) {
			config_free(d.cfg);
			return 1;
		}
		if (check) {
			printf("%s: ok (%zu listener%s, %zu app%s)\n", path, d.cfg->n_listeners,
			       d.cfg->n_listeners == 1 ? "" : "s", d.cfg->n_apps,
			       d.cfg->n_apps == 1 ? "" : "s");
			config_free(d.cfg);
			return 0;
		}
		if (!(d.config = config_ref_new(d.cfg))) {
			log_err("out of memory");
			return 1;
		}
	}
	raise_nofile();
	int rc = run(&d, state_fd, prev_fd, fallback);
	/* A state that could not be restored, even by the program before: what it
	 * half made holds the fds the workers' recovery needs (recover.c). */
	if (rc == RUN_RESTORE_FAILED)
		return 1;
	cleanup(&d);
	return rc;
}
