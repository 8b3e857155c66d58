/* SPDX-License-Identifier: MIT */
/* upgrader: drives one benchmark scenario (bench/run.sh). It starts the load generator,
 * performs K upgrades evenly spaced while it runs, times each, and waits for the load
 * generator's result.
 *
 *   upgrader --mode none|naive|reuseport|ctl [--upgrades K] [--first-ms F]
 *            [--spacing-ms S] [--app "CMD ARGS"] [--ctl "CMD ARGS"] [--log FILE]
 *            -- LOADGEN ARGS...
 *
 * Modes (CMD strings are split on spaces and exec'd directly, no shell):
 *   none       start --app (generation 1), run the load, never upgrade (the baseline)
 *   naive      an upgrade: SIGTERM the running app, wait for it to exit, start the next
 *              generation (it binds the port itself), wait for its READY=1
 *   reuseport  an upgrade: start the next generation (it binds with SO_REUSEPORT beside
 *              the old one), wait for its READY=1, then SIGTERM the old one
 *   ctl        an upgrade: run --ctl (e.g. "batonctl -s SOCK upgrade bench") and wait
 * Apps started here get NOTIFY_SOCKET (an abstract address of ours) and BATON_GENERATION.
 * Upgrade i starts at F + (i-1)*S ms after the load generator was started.
 * --log gets one line per upgrade: "i start_ms wall_us status start_us" (start_ms since the
 * load started; status: exit status of --ctl, or 0 when the new generation said READY=1,
 * 1 when it did not in 10 s; start_us: CLOCK_MONOTONIC). --ctl-out FILE: where --ctl's
 * output goes (appended), /dev/null without it.
 * Exits with the load generator's exit status, 1 on our own errors. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS	 64
#define READY_TIMEOUT_MS 10000
#define EXIT_TIMEOUT_MS	 10000

enum mode { MODE_NONE, MODE_NAIVE, MODE_REUSEPORT, MODE_CTL };

static int notify_fd = -1;
static char notify_name[108];

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_until_us(long long t)
{
	long long d = t - now_us();
	if (d <= 0)
		return;
	struct timespec ts = {.tv_sec = d / 1000000, .tv_nsec = (d % 1000000) * 1000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Splits @s on spaces into @argv (room for MAX_ARGS + NULL); modifies @s. */
static int split(char *s, char **argv)
{
	int n = 0;
	for (char *tok = strtok(s, " "); tok; tok = strtok(NULL, " ")) {
		if (n == MAX_ARGS)
			return -1;
		argv[n++] = tok;
	}
	argv[n] = NULL;
	return n;
}

/* Starts @argv; with @out, its stdout appends to that file. */
static pid_t spawn(char **argv, unsigned generation, const char *out)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	char gen[32];
	snprintf(gen, sizeof(gen), "%u", generation);
	if (generation) {
		setenv("BATON_GENERATION", gen, 1);
		setenv("NOTIFY_SOCKET", notify_name, 1);
	}
	if (out) {
		FILE *f = freopen(out, "a", stdout);
		(void)f;
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[0], argv);
	fprintf(stderr, "upgrader: exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Waits for READY=1 on our notify socket. 0 or -ETIMEDOUT. */
static int wait_ready(void)
{
	long long deadline = now_us() + READY_TIMEOUT_MS * 1000LL;
	char buf[4096];
	for (;;) {
		long long left = (deadline - now_us()) / 1000;
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = notify_fd, .events = POLLIN};
		if (poll(&p, 1, (int)left + 1) <= 0)
			continue;
		ssize_t n = recv(notify_fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = 0;
		if (strstr(buf, "READY=1"))
			return 0;
	}
}

/* Waits up to @ms for @pid, then SIGKILLs it. Returns its wait status. It sleeps in
 * poll() on a pidfd, so an upgrade's measured wall time ends when the process exits,
 * not at the next tick of a polling loop. */
static int wait_bounded(pid_t pid, long long ms)
{
	long long deadline = now_us() + ms * 1000;
	int st = 0;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		long long left_ms = (deadline - now_us()) / 1000;
		if (left_ms < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			poll(&p, 1, (int)left_ms + 1);
		} else {
			usleep(1000); /* no pidfd_open (Linux < 5.3) */
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return st;
}

static pid_t loadgen = -1;
static bool loadgen_done;
static int loadgen_status;

/* Reaps old generations that have exited; keeps the load generator's status. */
static void reap_some(void)
{
	pid_t p;
	int st;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0)
		if (p == loadgen) {
			loadgen_done = true;
			loadgen_status = st;
		}
}

int main(int argc, char **argv)
{
	enum mode mode = MODE_NONE;
	unsigned upgrades = 0;
	long long first_ms = 500, spacing_ms = 300;
	char *app_str = NULL, *ctl_str = NULL;
	const char *log_path = NULL, *ctl_out = NULL;
	static const struct option longopts[] = {
	    {"mode", required_argument, NULL, 'm'},	  {"upgrades", required_argument, NULL, 'k'},
	    {"first-ms", required_argument, NULL, 'f'},	  {"spacing-ms", required_argument, NULL, 's'},
	    {"app", required_argument, NULL, 'a'},	  {"ctl", required_argument, NULL, 'c'},
	    {"log", required_argument, NULL, 'l'},
	    {"ctl-out", required_argument, NULL, 'o'},	  {0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!strcmp(optarg, "none"))
				mode = MODE_NONE;
			else if (!strcmp(optarg, "naive"))
				mode = MODE_NAIVE;
			else if (!strcmp(optarg, "reuseport"))
				mode = MODE_REUSEPORT;
			else if (!strcmp(optarg, "ctl"))
				mode = MODE_CTL;
			else {
				fprintf(stderr, "upgrader: --mode %s: unknown\n", optarg);
				return 1;
			}
			break;
		case 'k':
			upgrades = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'f':
			first_ms = strtoll(optarg, NULL, 10);
			break;
		case 's':
			spacing_ms = strtoll(optarg, NULL, 10);
			break;
		case 'a':
			app_str = optarg;
			break;
		case 'c':
			ctl_str = optarg;
			break;
		case 'l':
			log_path = optarg;
			break;
		case 'o':
			ctl_out = optarg;
			break;
		default:
			return 1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "upgrader: no load generator command after --\n");
		return 1;
	}
	char *app_argv[MAX_ARGS + 1], *ctl_argv[MAX_ARGS + 1];
	bool own_app = mode != MODE_CTL;
	if (own_app && (!app_str || split(app_str, app_argv) <= 0)) {
		fprintf(stderr, "upgrader: --app CMD needed in this mode\n");
		return 1;
	}
	if (mode == MODE_CTL && (!ctl_str || split(ctl_str, ctl_argv) <= 0)) {
		fprintf(stderr, "upgrader: --ctl CMD needed in mode ctl\n");
		return 1;
	}
	if (mode == MODE_NONE)
		upgrades = 0;
	FILE *log = NULL;
	if (log_path && !(log = fopen(log_path, "we"))) {
		fprintf(stderr, "upgrader: %s: %s\n", log_path, strerror(errno));
		return 1;
	}

	/* Our notify socket: abstract, named after our pid. */
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int name_len = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1,
				"baton-bench-upgrader-%d", (int)getpid());
	snprintf(notify_name, sizeof(notify_name), "@%s", sun.sun_path + 1);
	if (notify_fd < 0 ||
	    bind(notify_fd, (struct sockaddr *)&sun,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)name_len)) < 0) {
		fprintf(stderr, "upgrader: notify socket: %s\n", strerror(errno));
		return 1;
	}

	unsigned gen = 1;
	pid_t app = -1;
	if (own_app) {
		app = spawn(app_argv, gen, NULL);
		if (app < 0 || wait_ready() < 0) {
			fprintf(stderr, "upgrader: generation 1 not ready\n");
			if (app > 0)
				kill(app, SIGKILL);
			return 1;
		}
	}

	loadgen = spawn(argv + optind, 0, NULL);
	if (loadgen < 0) {
		fprintf(stderr, "upgrader: fork: %s\n", strerror(errno));
		return 1;
	}
	long long t_load = now_us();
	unsigned failed_upgrades = 0;

	for (unsigned i = 1; i <= upgrades; i++) {
		sleep_until_us(t_load + (first_ms + (long long)(i - 1) * spacing_ms) * 1000);
		reap_some();
		if (loadgen_done) {
			fprintf(stderr, "upgrader: loadgen exited before upgrade %u\n", i);
			break;
		}
		long long t = now_us();
		int status = 0;
		if (mode == MODE_CTL) {
			pid_t p = spawn(ctl_argv, 0, ctl_out ? ctl_out : "/dev/null");
			int st = wait_bounded(p, 30000);
			status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		} else if (mode == MODE_NAIVE) {
			kill(app, SIGTERM);
			wait_bounded(app, EXIT_TIMEOUT_MS);
			app = spawn(app_argv, ++gen, NULL);
			status = wait_ready() < 0;
		} else {
			pid_t next = spawn(app_argv, ++gen, NULL);
			status = wait_ready() < 0;
			if (status == 0) {
				kill(app, SIGTERM);
				app = next;
			} else {
				kill(next, SIGKILL);
			}
		}
		long long wall = now_us() - t;
		if (status)
			failed_upgrades++;
		if (log)
			fprintf(log, "%u %.3f %lld %d %lld\n", i, (double)(t - t_load) / 1000.0, wall,
				status, t);
		reap_some();
	}
	if (log)
		fclose(log);

	reap_some();
	int st = loadgen_done ? loadgen_status : wait_bounded(loadgen, 600000);
	int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	if (app > 0) {
		kill(app, SIGTERM);
		wait_bounded(app, EXIT_TIMEOUT_MS);
	}
	reap_some();
	if (failed_upgrades)
		fprintf(stderr, "upgrader: %u of %u upgrades failed\n", failed_upgrades, upgrades);
	return rc;
}
