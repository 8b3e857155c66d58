/* SPDX-License-Identifier: MIT */
/* batond re-exec; see reexec.h and docs/reexec-state.md. The old image: check
 * that nothing is under way, write the state, run the new program once on it
 * (--reexec-check, a child watched from the loop), then, from the settle
 * source, write the state again and exec. The new image: restore, and on any
 * failure exec the program before it on the same state. */
#include "reexec.h"
#include "app.h"
#include "batond.h"
#include "cgroup.h"
#include "channel.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "recover.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#define STATE_MAX_BYTES	   (64 * 1024 * 1024)
#define CHECK_TIMEOUT_USEC (10 * 1000 * 1000ULL)
#define CHECK_OUTPUT_MAX   1024

extern char **environ;

/* What this image was started as: its program (an O_PATH fd of the very file,
 * whatever replaces the path later) and the path a re-exec runs by default. */
static int self_fd = -1;
static char start_path[PATH_MAX];
static char program[PATH_MAX];	   /* the path this image was exec'd as */
static char config_path[PATH_MAX]; /* -c, for the fallback's command line */

struct reexec {
	struct daemon *d;
	char path[PATH_MAX];
	reexec_done_t done;
	void *userdata;
	pid_t check_pid;
	int check_out; /* the check's stderr, read when it exits */
	int exec_fd;   /* the check's exec-status pipe */
	sd_event_source *child_src;
	sd_event_source *timer;
	bool passed; /* the check said yes: exec at the next settle */
	uint64_t requested_usec;
};

/* --- the old image ---------------------------------------------------------- */

void reexec_init(int argc, char **argv, const char *config)
{
	snprintf(config_path, sizeof(config_path), "%s", config ? config : "");
	snprintf(program, sizeof(program), "%s", argc > 0 ? argv[0] : "batond");
	self_fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
	ssize_t n = readlink("/proc/self/exe", start_path, sizeof(start_path) - 1);
	start_path[n > 0 ? n : 0] = 0;
	if (n <= 0 && argc > 0)
		snprintf(start_path, sizeof(start_path), "%s", argv[0]);
}

/* Why batond cannot be carried over now, or NULL. */
static const char *busy(const struct daemon *d, char *buf, size_t len)
{
	if (d->stopping)
		return "batond is stopping";
	if (d->reloads)
		return "a reload is waiting for an upgrade";
	if (recover_busy(d->recover))
		return "workers of a batond killed before are still draining";
	for (size_t i = 0; i < d->n_apps; i++) {
		const char *why = app_reexec_busy(d->apps[i]);
		if (why) {
			snprintf(buf, len, "%s: %s", d->apps[i]->cfg->name, why);
			return buf;
		}
	}
	return NULL;
}

static struct json_object *listeners_save(const struct daemon *d, struct reexec_save *s)
{
	struct json_object *a = json_object_new_array();
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		const struct listener_rt *l = &d->listeners[i];
		struct json_object *j = json_object_new_object();
		rx_set_str(j, "name", l->cfg->name);
		rx_set_int(j, "fd", reexec_keep_fd(s, l->fd));
		rx_set_bool(j, "adopted", l->adopted);
		rx_set_bool(j, "taken_back", l->taken_back);
		json_object_array_add(a, j);
	}
	return a;
}

/* Now, not the loop's cached time: a pause across the exec is measured. */
static uint64_t monotonic_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* The whole state, in a sealed memfd (O_CLOEXEC: the exec clears it); its fds
 * in @s. Returns the memfd or a negative errno. */
static int state_write(struct daemon *d, const char *path, struct reexec_save *s)
{
	struct json_object *st = json_object_new_object(), *apps = json_object_new_array(),
			   *configs = json_object_new_array(), *service = json_object_new_object();
	rx_set_str(st, "format", REEXEC_FORMAT);
	rx_set_int(st, "version", REEXEC_VERSION);
	rx_set_str(st, "written_by", "batond " BATON_VERSION);
	rx_set_str(st, "start_path", start_path);
	rx_set_str(st, "previous_path", program); /* this image, the fallback */
	rx_set_str(st, "next_path", path);
	reexec_keep_fd(s, self_fd); /* --reexec-previous */
	rx_set_int(st, "config", reexec_config_index(s, d->config));
	rx_set(st, "listeners", listeners_save(d, s));
	rx_set(st, "control", control_save(d->control, s));
	rx_set(st, "notify", notify_save(d->notify, s));
	rx_set_int(st, "metrics_fd", reexec_keep_fd(s, metrics_fd(d->metrics)));
	rx_set_int(st, "cgroups_inotify_fd", reexec_keep_fd(s, cgroups_inotify_fd(d->cgroups)));
	for (size_t i = 0; i < d->n_apps; i++)
		json_object_array_add(apps, app_save(d->apps[i], false, s));
	for (size_t i = 0; i < d->n_retired; i++)
		json_object_array_add(apps, app_save(d->retired[i], true, s));
	rx_set(st, "apps", apps);
	rx_set_bool(service, "ready_sent", d->service.ready_sent);
	rx_set_str(service, "status", d->service.status);
	rx_set(st, "service", service);
	rx_set_int(st, "started_usec", (int64_t)d->started_usec);
	rx_set_int(st, "requested_usec", (int64_t)(d->reexec ? d->reexec->requested_usec : 0));
	rx_set_int(st, "written_usec", (int64_t)monotonic_usec()); /* just before the exec */
	rx_set_int(st, "channel_next_id", (int64_t)channel_next_id());
	/* Last: every module has added its configurations by now. */
	for (size_t i = 0; i < s->n_configs; i++) {
		struct json_object *c = json_object_new_object();
		rx_set_str(c, "path", s->configs[i]->cfg->path);
		rx_set(c, "text",
		       json_object_new_string_len(s->configs[i]->cfg->text,
						  (int)s->configs[i]->cfg->text_len));
		json_object_array_add(configs, c);
	}
	rx_set(st, "configs", configs);
	struct json_object *fds = json_object_new_array();
	for (size_t i = 0; i < s->n_fds; i++)
		json_object_array_add(fds, json_object_new_int(s->fds[i]));
	rx_set(st, "fds", fds);
	size_t len;
	const char *text = json_object_to_json_string_length(st, JSON_C_TO_STRING_PLAIN, &len);
	int r = 0, fd = -1;
	if (!text || s->failed) {
		r = -ENOMEM;
		goto out;
	}
	fd = memfd_create("batond-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto out;
		}
		off += (size_t)n;
	}
	/* Read-only from now on, for the check and for both images. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
		r = -errno;
out:
	json_object_put(st);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	return fd;
}

static void save_free(struct reexec_save *s)
{
	free(s->fds);
	free(s->configs);
	*s = (struct reexec_save){0};
}

static void finish(struct daemon *d, int code, const char *text)
{
	struct reexec *rx = d->reexec;
	d->reexec = NULL;
	if (!rx)
		return;
	if (code)
		log_err("reexec: %s", text);
	if (rx->done)
		rx->done(rx->userdata, code, text);
	sd_event_source_disable_unref(rx->child_src);
	sd_event_source_disable_unref(rx->timer);
	if (rx->check_pid > 0) {
		kill(rx->check_pid, SIGKILL);
		waitpid(rx->check_pid, NULL, 0); /* killed: reaped at once */
	}
	if (rx->check_out >= 0)
		close(rx->check_out);
	if (rx->exec_fd >= 0)
		close(rx->exec_fd);
	free(rx);
}

static void __attribute__((format(printf, 3, 4)))
fail(struct daemon *d, int code, const char *fmt, ...)
{
	char text[CHECK_OUTPUT_MAX + PATH_MAX + 200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	finish(d, code, text);
}

/* The check's last line on stderr, without its "batond: " prefix. */
static void check_output(struct reexec *rx, char *buf, size_t len)
{
	char out[CHECK_OUTPUT_MAX + 1];
	ssize_t n = read(rx->check_out, out, sizeof(out) - 1);
	buf[0] = 0;
	if (n <= 0)
		return;
	while (n > 0 && out[n - 1] == '\n')
		n--;
	out[n] = 0;
	const char *line = strrchr(out, '\n');
	line = line ? line + 1 : out;
	snprintf(buf, len, ": %s", line);
}

static int on_check_exit(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct daemon *d = userdata;
	struct reexec *rx = d->reexec;
	rx->check_pid = 0; /* sd-event reaps it */
	int32_t exec_errno = 0;
	bool exec_failed = read(rx->exec_fd, &exec_errno, sizeof(exec_errno)) == sizeof(exec_errno);
	char out[CHECK_OUTPUT_MAX + 8];
	check_output(rx, out, sizeof(out));
	if (exec_failed) {
		fail(d, ECANCELED, "cannot run %s: %s; batond goes on unchanged", rx->path,
		     strerror(exec_errno));
	} else if (si->si_code == CLD_EXITED && si->si_status == 0) {
		log_info("reexec: %s checked the state: exec'ing it", rx->path);
		rx->passed = true;
		daemon_mark(d);
	} else if (si->si_code == CLD_EXITED) {
		fail(d, ECANCELED,
		     "%s cannot take over: it exited with status %d while checking the "
		     "state%s; batond goes on unchanged",
		     rx->path, si->si_status, out);
	} else {
		fail(d, ECANCELED,
		     "%s cannot take over: it was killed by signal %d (SIG%s) while checking "
		     "the state%s; batond goes on unchanged",
		     rx->path, si->si_status, sigabbrev_np(si->si_status) ?: "?", out);
	}
	return 0;
}

static int on_check_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;
	fail(d, ETIMEDOUT,
	     "%s did not finish checking the state within %llu s; batond goes on "
	     "unchanged",
	     d->reexec->path, CHECK_TIMEOUT_USEC / 1000000);
	return 0;
}

/* Runs `@path --reexec-check=3` with the state on fd 3, its stderr and exec
 * status on pipes. The child only dups and execs. */
static int start_check(struct reexec *rx, int state_fd)
{
	int out[2], status[2];
	if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	if (pipe2(status, O_CLOEXEC | O_NONBLOCK) < 0) {
		int r = -errno;
		close(out[0]);
		close(out[1]);
		return r;
	}
	char *argv[] = {rx->path, "--reexec-check=3", NULL};
	sigset_t none;
	sigemptyset(&none);
	pid_t pid = fork();
	if (pid == 0) {
		int32_t err = 0;
		/* dup2 onto itself would keep FD_CLOEXEC: the state may be fd 3. */
		if ((state_fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(state_fd, 3)) < 0 ||
		    dup2(out[1], 2) < 0 || dup2(out[1], 1) < 0 ||
		    sigprocmask(SIG_SETMASK, &none, NULL) < 0)
			err = errno;
		else {
			execve(rx->path, argv, environ);
			err = errno;
		}
		(void)!write(status[1], &err, sizeof(err));
		_exit(127);
	}
	int r = pid < 0 ? -errno : 0;
	close(out[1]);
	close(status[1]);
	if (r < 0) {
		close(out[0]);
		close(status[0]);
		return r;
	}
	rx->check_pid = pid;
	rx->check_out = out[0];
	rx->exec_fd = status[0];
	sd_event *ev = rx->d->event;
	if ((r = sd_event_add_child(ev, &rx->child_src, pid, WEXITED, on_check_exit, rx->d)) < 0 ||
	    (r = sd_event_add_time_relative(ev, &rx->timer, CLOCK_MONOTONIC, CHECK_TIMEOUT_USEC,
					    100 * 1000, on_check_timeout, rx->d)) < 0)
		return r;
	return 0;
}

void reexec_request(struct daemon *d, const char *binary, reexec_done_t done, void *userdata)
{
	char why[300];
	const char *busy_why;
	if (d->reexec) {
		if (done)
			done(userdata, EBUSY, "a re-exec is already under way");
		return;
	}
	if ((busy_why = busy(d, why, sizeof(why)))) {
		char text[400];
		snprintf(text, sizeof(text), "cannot re-exec now: %s; try again once it is done",
			 busy_why);
		log_warn("reexec: %s", text);
		if (done)
			done(userdata, EBUSY, text);
		return;
	}
	struct reexec *rx = calloc(1, sizeof(*rx));
	if (!rx) {
		if (done)
			done(userdata, ENOMEM, "out of memory");
		return;
	}
	*rx = (struct reexec){.d = d,
			      .done = done,
			      .userdata = userdata,
			      .check_out = -1,
			      .exec_fd = -1,
			      .requested_usec = daemon_now_usec(d)};
	snprintf(rx->path, sizeof(rx->path), "%s", binary ? binary : start_path);
	d->reexec = rx;
	log_info("reexec: requested: checking %s", rx->path);
	struct reexec_save s = {0};
	int state_fd = state_write(d, rx->path, &s);
	save_free(&s);
	if (state_fd < 0) {
		fail(d, -state_fd, "cannot write the state: %s", strerror(-state_fd));
		return;
	}
	int r = start_check(rx, state_fd);
	close(state_fd);
	if (r < 0)
		fail(d, -r, "cannot run %s to check the state: %s", rx->path, strerror(-r));
}

static void set_cloexec(const int *fds, size_t n, bool on)
{
	for (size_t i = 0; i < n; i++) {
		int fl = fcntl(fds[i], F_GETFD);
		if (fl >= 0)
			fcntl(fds[i], F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC);
	}
}

void reexec_settle(struct daemon *d)
{
	struct reexec *rx = d->reexec;
	if (!rx || !rx->passed)
		return;
	char why[300];
	const char *busy_why = busy(d, why, sizeof(why));
	if (busy_why) {
		fail(d, EBUSY,
		     "cannot re-exec now: %s (it began during the check); try again once "
		     "it is done",
		     busy_why);
		return;
	}
	struct reexec_save s = {0};
	int state_fd = state_write(d, rx->path, &s);
	if (state_fd < 0) {
		save_free(&s);
		fail(d, -state_fd, "cannot write the state: %s", strerror(-state_fd));
		return;
	}
	char state_arg[48], prev_arg[48], config_arg[PATH_MAX + 16];
	snprintf(state_arg, sizeof(state_arg), "--reexec-state=%d", state_fd);
	snprintf(prev_arg, sizeof(prev_arg), "--reexec-previous=%d", self_fd);
	snprintf(config_arg, sizeof(config_arg), "--config=%s", d->cfg->path);
	char *argv[] = {rx->path, config_arg, state_arg, prev_arg, NULL};
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=re-exec'ing %s",
		   (unsigned long long)ts.tv_sec * 1000000ULL +
		       (unsigned long long)ts.tv_nsec / 1000,
		   rx->path);
	log_info("reexec: exec'ing %s with %zu fds", rx->path, s.n_fds);
	reexec_keep_fd(&s, state_fd);
	set_cloexec(s.fds, s.n_fds, false);
	execve(rx->path, argv, environ);
	int err = errno;
	set_cloexec(s.fds, s.n_fds, true);
	close(state_fd);
	save_free(&s);
	sd_notifyf(0, "READY=1\nSTATUS=%s", d->service.status);
	fail(d, ECANCELED, "exec %s: %s; batond goes on unchanged", rx->path, strerror(err));
}

void reexec_stop(struct daemon *d)
{
	finish(d, ESHUTDOWN, "batond is stopping");
}

/* --- the new image ---------------------------------------------------------- */

static struct json_object *state_read(int fd, char *err, size_t err_len)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > STATE_MAX_BYTES) {
		snprintf(err, err_len, "the state on fd %d is missing or too large", fd);
		return NULL;
	}
	char *text = malloc((size_t)st.st_size + 1);
	size_t len = 0;
	while (text && len < (size_t)st.st_size) {
		ssize_t n = pread(fd, text + len, (size_t)st.st_size - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (!text || len != (size_t)st.st_size) {
		snprintf(err, err_len, "cannot read the state on fd %d", fd);
		free(text);
		return NULL;
	}
	text[len] = 0;
	struct json_tokener *tok = json_tokener_new();
	struct json_object *st_j = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
	if (!st_j || json_tokener_get_error(tok) != json_tokener_success)
		snprintf(err, err_len, "the state is not valid JSON");
	json_tokener_free(tok);
	free(text);
	const char *format = rx_str(st_j, "format");
	int64_t version = rx_int(st_j, "version", -1);
	if (st_j && (!format || strcmp(format, REEXEC_FORMAT) != 0)) {
		snprintf(err, err_len, "the state is not a batond re-exec state");
		json_object_put(st_j);
		return NULL;
	}
	if (st_j && (version < REEXEC_VERSION_MIN || version > REEXEC_VERSION)) {
		snprintf(err, err_len,
			 "the state has version %lld, written by %s; this batond (%s) reads "
			 "versions %d to %d",
			 (long long)version, rx_str(st_j, "written_by") ?: "?", BATON_VERSION,
			 REEXEC_VERSION_MIN, REEXEC_VERSION);
		json_object_put(st_j);
		return NULL;
	}
	return st_j;
}

/* Every configuration the state carries, parsed again. */
static int configs_load(struct json_object *st, struct reexec_load *ld, char *err, size_t err_len)
{
	size_t n = rx_len(st, "configs");
	ld->configs = calloc(n ? n : 1, sizeof(*ld->configs));
	if (!ld->configs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct json_object *c = rx_at(st, "configs", i), *text;
		const char *path = rx_str(c, "path");
		struct config *cfg;
		if (!path || !json_object_object_get_ex(c, "text", &text)) {
			snprintf(err, err_len, "configuration %zu of the state has no path or text",
				 i);
			return -EBADMSG;
		}
		int r = config_parse(path, json_object_get_string(text),
				     (size_t)json_object_get_string_len(text), stderr, &cfg);
		if (r < 0) {
			snprintf(err, err_len, "configuration %s in the state does not load", path);
			return r;
		}
		if (!(ld->configs[i] = config_ref_new(cfg)))
			return -ENOMEM;
		ld->n_configs++;
	}
	int64_t cur = rx_int(st, "config", -1);
	if (cur < 0 || (size_t)cur >= ld->n_configs) {
		snprintf(err, err_len, "the state names no configuration in force");
		return -EBADMSG;
	}
	return 0;
}

int reexec_check(int fd)
{
	char err[512] = "";
	struct json_object *st = state_read(fd, err, sizeof(err));
	struct reexec_load ld = {0};
	int r = st ? configs_load(st, &ld, err, sizeof(err)) : -EBADMSG;
	for (size_t i = 0; r >= 0 && i < rx_len(st, "apps"); i++) {
		struct json_object *a = rx_at(st, "apps", i);
		for (size_t k = 0; k < rx_len(a, "versions"); k++) {
			struct json_object *v = rx_at(a, "versions", k);
			int64_t c = rx_int(v, "config", -1);
			if (c < 0 || (size_t)c >= ld.n_configs ||
			    !config_find_app(ld.configs[c]->cfg, rx_str(v, "app") ?: "")) {
				snprintf(err, sizeof(err),
					 "app %s of the state is in no configuration",
					 rx_str(v, "app") ?: "?");
				r = -EBADMSG;
				break;
			}
		}
	}
	for (size_t i = 0; i < ld.n_configs; i++)
		config_ref_put(ld.configs[i]);
	free(ld.configs);
	json_object_put(st);
	if (r < 0) {
		log_err("reexec check: %s", err[0] ? err : strerror(-r));
		return -1;
	}
	return 0;
}

/* The fallback: exec the program before this one on the same state. Prepared
 * before restoring, so that a signal handler can do it (execve is
 * async-signal-safe). */
static int previous_fd = -1;
static char *fallback_argv[6];
static char fallback_reason[PATH_MAX + 600];
static size_t crash_digits; /* where the signal number goes in fallback_reason */

static void exec_previous(void)
{
	if (previous_fd >= 0 && fallback_argv[0])
		execveat(previous_fd, "", fallback_argv, environ, AT_EMPTY_PATH);
}

static void on_crash(int sig)
{
	fallback_reason[crash_digits] = (char)('0' + sig / 10 % 10);
	fallback_reason[crash_digits + 1] = (char)('0' + sig % 10);
	exec_previous();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void crash_handlers(bool on)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
	struct sigaction sa = {.sa_handler = on ? on_crash : SIG_DFL, .sa_flags = SA_NODEFER};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

static int listeners_restore(struct daemon *d, struct json_object *st)
{
	const struct config *cfg = d->cfg;
	if (rx_len(st, "listeners") != cfg->n_listeners)
		return -EBADMSG;
	d->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*d->listeners));
	d->listener_fds = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(int));
	if (!d->listeners || !d->listener_fds)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct json_object *j = rx_at(st, "listeners", i);
		const char *name = rx_str(j, "name");
		int fd = (int)rx_int(j, "fd", -1);
		if (!name || strcmp(name, cfg->listeners[i].name) != 0 || fd < 0)
			return -EBADMSG;
		d->listeners[i] = (struct listener_rt){.cfg = &cfg->listeners[i],
						       .fd = fd,
						       .adopted = rx_bool(j, "adopted"),
						       .taken_back = rx_bool(j, "taken_back")};
		d->listener_fds[i] = fd;
	}
	return 0;
}

static int apps_restore(struct daemon *d, struct json_object *st, const struct reexec_load *ld)
{
	size_t n = rx_len(st, "apps");
	d->apps = calloc(n ? n : 1, sizeof(*d->apps));
	d->retired = calloc(n ? n : 1, sizeof(*d->retired));
	if (!d->apps || !d->retired)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct json_object *j = rx_at(st, "apps", i);
		struct app *a;
		int r = app_restore(&d->app_env, ld, j, &a);
		if (r < 0)
			return r;
		if (rx_bool(j, "retired"))
			d->retired[d->n_retired++] = a;
		else
			d->apps[d->n_apps++] = a;
	}
	if (d->n_apps != d->cfg->n_apps)
		return -EBADMSG;
	return 0;
}

static int restore(struct daemon *d, struct json_object *st, char *err, size_t err_len)
{
	struct reexec_load ld = {0};
	int r = configs_load(st, &ld, err, err_len);
	if (r < 0)
		return r;
	d->config = ld.configs[rx_int(st, "config", 0)];
	d->config->refs++;
	d->cfg = d->config->cfg;
	d->started_usec = (uint64_t)rx_int(st, "started_usec", (int64_t)d->started_usec);
	channel_restore_next_id((uint64_t)rx_int(st, "channel_next_id", 1));
	struct json_object *j;
	const char *what = "listeners";
	if ((r = listeners_restore(d, st)) < 0)
		goto fail;
	what = "control socket";
	if (!json_object_object_get_ex(st, "control", &j) ||
	    (r = control_restore(d, j, &d->control)) < 0)
		goto fail;
	what = "notify socket";
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s.notify", d->cfg->control_socket);
	if (!json_object_object_get_ex(st, "notify", &j) ||
	    (r = notify_restore(d->event, dir, daemon_on_notify, d, j, &d->notify)) < 0)
		goto fail;
	what = "metrics socket";
	int metrics_fd = (int)rx_int(st, "metrics_fd", -1);
	if ((metrics_fd >= 0 || d->cfg->metrics_address) &&
	    metrics_open(d, metrics_fd, &d->metrics) < 0) {
		r = -EBADMSG;
		goto fail;
	}
	/* Before the generations, which find their cgroups again by name. */
	d->cgroups = cgroups_open(d->event, (int)rx_int(st, "cgroups_inotify_fd", -1));
	what = "apps";
	daemon_init_app_env(d);
	if ((r = apps_restore(d, st, &ld)) < 0)
		goto fail;
	d->recover = recover_resume(d->event, d->cfg);
	struct json_object *service = json_object_object_get_ex(st, "service", &j) ? j : NULL;
	d->service.ready_sent = rx_bool(service, "ready_sent");
	for (size_t i = 0; i < ld.n_configs; i++)
		config_ref_put(ld.configs[i]); /* what runs from them holds them */
	free(ld.configs);
	return 0;
fail:
	if (!err[0])
		snprintf(err, err_len, "cannot restore the %s: %s", what,
			 r == -EBADMSG ? "the state is inconsistent" : strerror(-r));
	return r;
}

int reexec_restore(struct daemon *d, int fd, int prev_fd, const char *fallback_text)
{
	char err[512] = "";
	/* Ready to go back before anything else: reading the state may crash too. */
	static char state_arg[48], prev_arg[48], config_arg[PATH_MAX + 16];
	bool fallback = fallback_text != NULL;
	previous_fd = prev_fd;
	snprintf(state_arg, sizeof(state_arg), "--reexec-state=%d", fd);
	snprintf(prev_arg, sizeof(prev_arg), "--reexec-previous=%d", prev_fd);
	snprintf(config_arg, sizeof(config_arg), "--config=%s", config_path);
	if (!fallback) {
		int n = snprintf(fallback_reason, sizeof(fallback_reason),
				 "--reexec-fallback=%s crashed while restoring the state (signal ",
				 program);
		crash_digits = n > 0 && (size_t)n + 4 < sizeof(fallback_reason) ? (size_t)n : 0;
		snprintf(fallback_reason + crash_digits, sizeof(fallback_reason) - crash_digits,
			 "%s", crash_digits ? "00)" : "--reexec-fallback=crashed");
		/* argv[0] is only a name: the program is previous_fd's file. */
		fallback_argv[0] = "batond";
		fallback_argv[1] = config_arg;
		fallback_argv[2] = state_arg;
		fallback_argv[3] = prev_arg;
		fallback_argv[4] = fallback_reason;
		crash_handlers(true);
	}
	struct json_object *st = state_read(fd, err, sizeof(err));
	if (rx_str(st, "start_path"))
		snprintf(start_path, sizeof(start_path), "%s", rx_str(st, "start_path"));
	if (fallback) /* this image is the previous one: it runs as it did */
		snprintf(program, sizeof(program), "%s", rx_str(st, "previous_path") ?: program);
	uint64_t requested = (uint64_t)rx_int(st, "requested_usec", 0);
	uint64_t written = (uint64_t)rx_int(st, "written_usec", 0);
	int r = st ? restore(d, st, err, sizeof(err)) : -EBADMSG;
	if (r < 0) {
		log_err("reexec: %s", err);
		if (fallback) {
			log_err("reexec: the program before cannot restore the state either; "
				"stopping (the workers serve on, orphaned: a batond started "
				"later takes them back)");
			return -1;
		}
		snprintf(fallback_reason, sizeof(fallback_reason), "--reexec-fallback=%s: %s",
			 program, err);
		log_err("reexec: going back to %s",
			rx_str(st, "previous_path") ?: "the previous batond");
		exec_previous();
		log_err("reexec: cannot exec the previous batond: %s", strerror(errno));
		return -1;
	}
	crash_handlers(false);
	/* Restored: what the state named is this image's now, and closes on the
	 * next exec but for what that one carries again. */
	size_t n = rx_len(st, "fds");
	for (size_t i = 0; i < n; i++) {
		int kept = json_object_get_int(
		    json_object_array_get_idx(json_object_object_get(st, "fds"), i));
		set_cloexec(&kept, 1, true);
	}
	if (previous_fd >= 0)
		close(previous_fd);
	close(fd);
	json_object_put(st);
	char text[PATH_MAX + 700];
	uint64_t now = monotonic_usec();
	uint64_t took = requested ? (now - requested) / 1000 : 0;
	double paused = written ? (double)(now - written) / 1000.0 : 0;
	if (fallback)
		snprintf(text, sizeof(text),
			 "reexec failed: %s; batond %d went back to %s and serves on unchanged",
			 fallback_text, (int)getpid(), program);
	else
		snprintf(
		    text, sizeof(text),
		    "batond %d now runs %s (batond %s), in %llu ms; it paused %.1f ms for the exec",
		    (int)getpid(), program, BATON_VERSION, (unsigned long long)took, paused);
	log_info("reexec: %s", text);
	if (d->service.ready_sent)
		sd_notify(0, "READY=1");
	control_reexec_done(d->control, fallback ? ECANCELED : 0, text);
	return 0;
}
