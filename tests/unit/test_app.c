/* SPDX-License-Identifier: MIT */
/* The upgrade engine without batond's main.c: app + generation + dispatch +
 * channel on a loop of the test's own, with spawn replaced at the gen_env
 * boundary. A "worker" is a forked child that pauses (or exits at once); the
 * test plays the notify socket (app_notify) and the worker's end of each
 * channel itself. */
#include "app.h"
#include "channel.h"
#include "dispatch.h"
#include "generation.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "leakcheck.h"

#define MS 1000ULL

enum behaviour { RUNS, EXITS_3, IGNORES_TERM };

struct fake_worker {
	pid_t pid;
	int channel; /* the worker's end */
};

struct waiter_result {
	bool done;
	int code;
	char text[800];
};

static struct {
	sd_event *event;
	struct listener_cfg listener;
	size_t listener_idx;
	char *argv[2];
	struct app_cfg app_cfg;
	struct config cfg;
	struct config_ref config; /* the test's own reference keeps cfg from config_free */
	int listen_fd;
	struct app_env env;
	struct app *a;
	enum behaviour next; /* what the next spawned worker does */
	struct fake_worker workers[64];
	size_t n_workers;
} t;

/* Waits (bounded) until process @pid ignores SIGTERM (its SigIgn in /proc). */
static void wait_ignoring_term(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	for (int tries = 0; tries < 10000; tries++) {
		FILE *f = fopen(path, "re");
		unsigned long long ign = 0;
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "SigIgn: %llx", &ign) == 1)
				break;
		if (f)
			fclose(f);
		if (ign & (1ULL << (SIGTERM - 1)))
			return;
		usleep(100);
	}
}

static int fake_spawn(const struct spawn_req *req, pid_t *ret_pid, int *ret_channel,
		      int *ret_exec_fd)
{
	int sv[2], ex[2];
	if (t.n_workers == sizeof(t.workers) / sizeof(t.workers[0]))
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		return -errno;
	if (pipe2(ex, O_CLOEXEC | O_NONBLOCK) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -errno;
	}
	enum behaviour b = t.next;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* batond's ends (the channel's above all) are batond's alone, as
		 * after spawn_worker's exec; the test plays the worker's end. */
		close_range(3, ~0U, 0);
		setpgid(0, 0); /* as spawn_worker does */
		if (b == EXITS_3)
			_exit(3);
		if (b == IGNORES_TERM)
			signal(SIGTERM, SIG_IGN);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (;;)
			pause();
	}
	if (b == IGNORES_TERM)
		wait_ignoring_term(pid); /* else a quick drain's SIGTERM may beat it */
	close(ex[1]);			 /* EOF once the child closed its copy: "exec" succeeded */
	t.workers[t.n_workers++] = (struct fake_worker){.pid = pid, .channel = sv[1]};
	*ret_pid = pid;
	*ret_channel = sv[0];
	*ret_exec_fd = ex[0];
	return 0;
}

static const char *test_notify_socket(void *userdata, const struct app_cfg *cfg)
{
	return "@test"; /* the test says READY=1 itself, with app_notify */
}

static void on_app_changed(void *userdata)
{
}

static const struct app_ops test_app_ops = {.changed = on_app_changed};

static int setup(void **state)
{
	leakcheck_setup(state);
	memset(&t, 0, sizeof(t));
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL); /* sd_event_add_child needs it blocked */
	assert_int_equal(sd_event_new(&t.event), 0);
	t.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(t.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(t.listen_fd, 64), 0);
	t.listener = (struct listener_cfg){.name = "http"};
	t.argv[0] = "/bin/true"; /* opened O_PATH by gen_start, never run */
	t.app_cfg = (struct app_cfg){
	    .name = "web",
	    .argv = t.argv,
	    .listener_idx = &t.listener_idx,
	    .n_listeners = 1,
	    .workers = 1,
	    .ready = READY_NOTIFY,
	    .ready_timeout_usec = 5000 * MS,
	    .drain_timeout_usec = 5000 * MS,
	    .max_draining = 4,
	    .stop_signal = SIGTERM,
	    .kill_mode = KILL_MIXED,
	    .mode = SERVE_INHERIT,
	    .policy = POLICY_LEAST_LOADED,
	    .hold_max = 64,
	    .hold_timeout_usec = 5000 * MS,
	};
	t.cfg = (struct config){.path = "test.conf",
				.listeners = &t.listener,
				.n_listeners = 1,
				.apps = &t.app_cfg,
				.n_apps = 1};
	t.config = (struct config_ref){.cfg = &t.cfg, .refs = 1};
	t.env = (struct app_env){
	    .event = t.event,
	    .notify_socket = test_notify_socket,
	    .spawn = fake_spawn,
	    .ops = &test_app_ops,
	};
	return 0;
}

static int teardown(void **state)
{
	/* A test that failed half-way leaves waiters whose results lived in its
	 * frame: app_free tells them, so point them somewhere that lives on. */
	static struct waiter_result sink;
	for (struct app_waiter *w = t.a ? t.a->waiters : NULL; w; w = w->next)
		w->userdata = &sink;
	for (struct app_waiter *w = t.a ? t.a->next_waiters : NULL; w; w = w->next)
		w->userdata = &sink;
	for (struct app_waiter *w = t.a ? t.a->drain_waiters : NULL; w; w = w->next)
		w->userdata = &sink;
	app_free(t.a);
	for (size_t i = 0; i < t.n_workers; i++) {
		kill(t.workers[i].pid, SIGKILL);
		waitpid(t.workers[i].pid, NULL, 0);
		close(t.workers[i].channel);
	}
	close(t.listen_fd);
	sd_event_unref(t.event);
	return leakcheck_teardown(state);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the loop, settling the app after every event as batond's settle source
 * does, until @cond holds. The 10 s bound only catches a hang. */
static bool run_until(bool (*cond)(void *), void *arg)
{
	long long deadline = now_ms() + 10000;
	app_settle(t.a);
	while (!cond(arg)) {
		if (now_ms() > deadline)
			return false;
		assert_true(sd_event_run(t.event, 10 * MS) >= 0);
		app_settle(t.a);
	}
	return true;
}

static bool serving_is(void *arg)
{
	return t.a->serving && t.a->serving->id == (unsigned)(uintptr_t)arg;
}

static bool waiter_done(void *arg)
{
	return ((struct waiter_result *)arg)->done;
}

static bool only_one_generation(void *arg)
{
	return t.a->n_gens == 1;
}

static void on_done(void *userdata, int code, const char *text)
{
	struct waiter_result *r = userdata;
	r->done = true;
	r->code = code;
	snprintf(r->text, sizeof(r->text), "%s", text);
}

/* A waiter that fills @r. */
static struct app_waiter *waiter(struct waiter_result *r)
{
	struct app_waiter *w = calloc(1, sizeof(*w));
	w->done = on_done;
	w->userdata = r;
	return w;
}

static void upgrade(struct waiter_result *r)
{
	app_upgrade(t.a, waiter(r));
}

/* Says READY=1 for every worker of the newest generation that has a process. */
static void newest_ready(void)
{
	struct gen *g = t.a->gens[t.a->n_gens - 1];
	for (unsigned i = 0; i < g->n_workers; i++)
		if (g->workers[i]->pid > 0)
			assert_true(app_notify(t.a, g->workers[i]->pid, true, false, NULL));
}

/* Every worker's child has closed its copies of batond's fds (its "exec"
 * pipe reads EOF), as a worker has after exec. */
static bool children_settled(void *arg)
{
	struct gen *g = t.a->gens[t.a->n_gens - 1];
	for (unsigned i = 0; i < g->n_workers; i++)
		if (g->workers[i]->exec_fd >= 0)
			return false;
	return true;
}

/* The app started and its generation 1 serving. */
static void start_serving(void)
{
	assert_int_equal(app_new(&t.env, &t.config, &t.app_cfg, &t.listen_fd, &t.a), 0);
	app_start(t.a);
	newest_ready();
	assert_true(run_until(serving_is, (void *)1));
	assert_true(run_until(children_settled, NULL));
}

static void upgrade_rolls_back_when_the_new_generation_exits_before_ready(void **state)
{
	start_serving();
	struct waiter_result r = {0};
	t.next = EXITS_3;
	upgrade(&r);
	assert_true(run_until(waiter_done, &r));
	assert_int_equal(r.code, ECANCELED);
	assert_string_equal(r.text, "web: generation 2 exited with status 3 before READY=1; "
				    "generation 1 still serving");
	assert_int_equal(t.a->serving->id, 1);
	assert_int_equal(t.a->counters.rollbacks, 1);
	assert_true(run_until(only_one_generation, NULL)); /* generation 2 freed */
}

static void upgrade_rolls_back_when_the_new_generation_misses_ready_timeout(void **state)
{
	t.app_cfg.ready_timeout_usec = 50 * MS;
	start_serving();
	struct waiter_result r = {0};
	upgrade(&r);
	assert_true(run_until(waiter_done, &r));
	assert_int_equal(r.code, ECANCELED);
	assert_string_equal(r.text, "web: generation 2 not ready within 0.05 s (ready-timeout); "
				    "generation 1 still serving");
	assert_int_equal(t.a->serving->id, 1);
	/* Its worker got the stop signal and is gone, with the generation. */
	assert_true(run_until(only_one_generation, NULL));
}

static bool starting_is(void *arg)
{
	return t.a->starting && t.a->starting->id == (unsigned)(uintptr_t)arg;
}

static void two_upgrades_back_to_back_overlap_the_first_ones_drain(void **state)
{
	t.next = IGNORES_TERM; /* generation 1 drains until drain-timeout */
	start_serving();
	t.next = RUNS;
	struct waiter_result first = {0}, second = {0};
	upgrade(&first);
	upgrade(&second); /* generation 2 is starting: joins the next upgrade */
	assert_int_equal(t.a->starting->id, 2);
	assert_true(t.a->upgrade_queued);
	newest_ready();
	/* Generation 3 starts as soon as 2 is ready, while 1 still drains. */
	assert_true(run_until(starting_is, (void *)3));
	assert_true(first.done);
	assert_int_equal(first.code, 0);
	assert_non_null(strstr(first.text, "web: generation 2 ready in "));
	assert_non_null(strstr(first.text, "; generation 1 draining (drain-timeout 5 s)"));
	assert_int_equal(t.a->gens[0]->id, 1);
	assert_int_equal(t.a->gens[0]->state, GEN_DRAINING);
	assert_false(second.done);
	newest_ready();
	assert_true(run_until(waiter_done, &second));
	assert_int_equal(second.code, 0);
	assert_non_null(strstr(second.text, "web: generation 3 ready in "));
	assert_int_equal(t.a->gens[0]->id, 1);
	assert_int_equal(t.a->gens[0]->state, GEN_DRAINING);
	assert_int_equal(t.a->counters.upgrades, 2);
}

static bool worker_in_state(void *arg)
{
	struct worker *w = t.a->serving->workers[0];
	return w->state == (enum worker_state)(uintptr_t)arg;
}

/* Kills the serving worker; returns the restart delay batond chose, in ms,
 * and lets the restart happen at once. */
static long long crash_and_restart_delay_ms(void)
{
	struct worker *w = t.a->serving->workers[0];
	assert_int_equal(kill(w->pid, SIGKILL), 0);
	assert_true(run_until(worker_in_state, (void *)WORKER_BACKOFF));
	uint64_t when, now;
	assert_int_equal(sd_event_source_get_time(w->restart_timer, &when), 0);
	assert_int_equal(sd_event_now(t.event, CLOCK_MONOTONIC, &now), 0);
	/* Rounded up: armed at the exit's loop time, read a moment later. */
	long long delay_ms = (long long)((when - now + MS - 1) / MS);
	assert_int_equal(sd_event_source_set_time(w->restart_timer, now), 0);
	assert_true(run_until(worker_in_state, (void *)WORKER_STARTING));
	assert_true(app_notify(t.a, w->pid, true, false, NULL));
	assert_true(run_until(worker_in_state, (void *)WORKER_READY));
	return delay_ms;
}

static void a_crashing_worker_restarts_after_100_200_400_ms_and_100_again_once_stable(void **state)
{
	start_serving();
	long long delays[3];
	for (int i = 0; i < 3; i++)
		delays[i] = crash_and_restart_delay_ms();
	assert_true(delays[0] > 50 && delays[0] <= 100);
	assert_true(delays[1] > 150 && delays[1] <= 200);
	assert_true(delays[2] > 350 && delays[2] <= 400);
	/* A worker that ran 10 s or more before it crashed starts over. */
	t.a->serving->workers[0]->started_usec -= 11 * 1000 * MS;
	long long after_stable = crash_and_restart_delay_ms();
	assert_true(after_stable > 50 && after_stable <= 100);
	assert_int_equal(t.a->counters.restarts, 4);
	assert_int_equal(t.a->serving->id, 1);
}

static void a_worker_ready_after_its_generation_failed_never_serves(void **state)
{
	t.app_cfg.workers = 2;
	t.app_cfg.ready_timeout_usec = 50 * MS;
	start_serving();
	struct waiter_result r = {0};
	upgrade(&r);
	struct gen *g2 = t.a->starting;
	assert_true(app_notify(t.a, g2->workers[0]->pid, true, false, NULL));
	/* ready-timeout marks generation 2 failed; before anyone settles it, its
	 * second worker says READY=1. */
	long long deadline = now_ms() + 10000;
	while (!g2->failed && now_ms() < deadline)
		assert_true(sd_event_run(t.event, 10 * MS) >= 0);
	assert_true(g2->failed);
	assert_true(app_notify(t.a, g2->workers[1]->pid, true, false, NULL));
	assert_true(run_until(waiter_done, &r));
	assert_int_equal(r.code, ECANCELED);
	assert_true(run_until(only_one_generation, NULL));
	assert_int_equal(t.a->serving->id, 1);
	assert_int_equal(t.a->counters.upgrades, 0);
}

/* @n clients connect to the test's listener (from @src, e.g. "127.0.0.2"). */
static void connect_clients(int *fds, int n, const char *src)
{
	struct sockaddr_in to;
	socklen_t len = sizeof(to);
	assert_int_equal(getsockname(t.listen_fd, (struct sockaddr *)&to, &len), 0);
	for (int i = 0; i < n; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in from = {.sin_family = AF_INET};
		inet_pton(AF_INET, src, &from.sin_addr);
		assert_int_equal(bind(fds[i], (struct sockaddr *)&from, sizeof(from)), 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&to, sizeof(to)), 0);
	}
}

struct received {
	unsigned conns[8]; /* per worker index of the serving generation */
	unsigned total;
	unsigned want;
	uint16_t last_flags;
	char last_state[64];
};

/* Reads what batond sent to the serving generation's workers: counts the
 * connections per worker and closes them. */
static bool received_all(void *arg)
{
	struct received *rc = arg;
	struct gen *g = t.a->serving;
	static struct proto_msg m;
	for (unsigned i = 0; g && i < g->n_workers; i++) {
		for (size_t k = 0; k < t.n_workers; k++) {
			if (t.workers[k].pid != g->workers[i]->pid)
				continue;
			while (proto_recv(t.workers[k].channel, ROLE_WORKER_CLIENT, &m) > 0) {
				if (m.hdr.type == MSG_CONN) {
					rc->conns[i] += (unsigned)m.nfds;
					rc->total += (unsigned)m.nfds;
					struct proto_conn rec;
					size_t off = 0;
					if (proto_conn_get(m.payload, m.hdr.payload_bytes, &off,
							   &rec) == 0) {
						rc->last_flags = rec.flags;
						snprintf(rc->last_state, sizeof(rc->last_state),
							 "%.*s", (int)rec.state_len,
							 (const char *)rec.state);
					}
				}
				proto_msg_release(&m);
			}
		}
	}
	return rc->total >= rc->want;
}

static void start_dispatch(unsigned workers, enum dispatch_policy policy)
{
	t.app_cfg.mode = SERVE_DISPATCH;
	t.app_cfg.workers = workers;
	t.app_cfg.policy = policy;
	start_serving();
}

static void deliver(struct received *rc, int n, const char *src)
{
	int fds[32];
	connect_clients(fds, n, src);
	rc->want += (unsigned)n;
	assert_true(run_until(received_all, rc));
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

static void worker_reports_done(unsigned index, uint32_t n)
{
	for (size_t k = 0; k < t.n_workers; k++)
		if (t.workers[k].pid == t.a->serving->workers[index]->pid)
			assert_int_equal(proto_send(t.workers[k].channel, MSG_CONN_DONE, 0, 0, &n,
						    sizeof(n), NULL, 0),
					 0);
}

static bool load_is(void *arg)
{
	struct dispatch_worker_stats st;
	dispatch_worker_stats(t.a->dispatch, t.a->serving->id, 0, &st);
	return st.load == (uint64_t)(uintptr_t)arg;
}

static void least_loaded_sends_to_the_worker_with_fewest_open_connections(void **state)
{
	start_dispatch(2, POLICY_LEAST_LOADED);
	struct received rc = {0};
	deliver(&rc, 4, "127.0.0.1");
	assert_int_equal(rc.conns[0], 2);
	assert_int_equal(rc.conns[1], 2);
	/* Worker 0 finished its two: the next two both go to it. */
	worker_reports_done(0, 2);
	assert_true(run_until(load_is, (void *)0));
	deliver(&rc, 2, "127.0.0.1");
	assert_int_equal(rc.conns[0], 4);
	assert_int_equal(rc.conns[1], 2);
}

static void round_robin_takes_turns_whatever_the_load(void **state)
{
	start_dispatch(2, POLICY_ROUND_ROBIN);
	struct received rc = {0};
	deliver(&rc, 4, "127.0.0.1");
	worker_reports_done(0, 2);
	assert_true(run_until(load_is, (void *)0));
	deliver(&rc, 2, "127.0.0.1");
	assert_int_equal(rc.conns[0], 3);
	assert_int_equal(rc.conns[1], 3);
}

static void sticky_sends_a_peer_to_one_worker(void **state)
{
	start_dispatch(3, POLICY_STICKY);
	struct received rc = {0};
	deliver(&rc, 6, "127.0.0.2");
	unsigned busy = 0;
	for (int i = 0; i < 3; i++)
		busy += rc.conns[i] > 0;
	assert_int_equal(busy, 1);
	assert_int_equal(rc.total, 6);
}

static bool held_is(void *arg)
{
	struct dispatch_listener_stats st;
	dispatch_listener_stats(t.a->dispatch, 0, &st);
	const unsigned *want = arg; /* held, accepted, timed out */
	return st.held == want[0] && st.accepted == want[1] && st.timed_out == want[2];
}

static void with_no_worker_ready_hold_max_and_hold_timeout_bound_what_is_held(void **state)
{
	t.app_cfg.mode = SERVE_DISPATCH;
	t.app_cfg.hold_max = 3;
	t.app_cfg.hold_timeout_usec = 100 * MS;
	assert_int_equal(app_new(&t.env, &t.config, &t.app_cfg, &t.listen_fd, &t.a), 0);
	app_start(t.a); /* its worker never says READY=1 */
	int fds[5];
	connect_clients(fds, 5, "127.0.0.1");
	assert_true(run_until(held_is, (unsigned[]){3, 3, 0}));
	/* After hold-timeout those three are closed and the other two taken. */
	assert_true(run_until(held_is, (unsigned[]){2, 5, 3}));
	assert_true(run_until(held_is, (unsigned[]){0, 5, 5}));
	char c;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(read(fds[i], &c, 1), 0); /* closed, never answered */
		close(fds[i]);
	}
}

static void a_parked_connection_goes_to_the_next_ready_generation(void **state)
{
	t.next = IGNORES_TERM; /* generation 1 stays draining while it parks */
	t.app_cfg.drain_timeout_usec = 200 * MS;
	start_serving();
	t.next = RUNS;
	struct waiter_result r = {0};
	upgrade(&r);
	newest_ready();
	assert_true(run_until(serving_is, (void *)2));
	struct gen *g1 = t.a->gens[0];
	assert_int_equal(g1->state, GEN_DRAINING);
	/* Its worker parks a live connection with some state. */
	int conn[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, conn), 0);
	uint8_t payload[256];
	size_t off = 0;
	struct proto_conn rec = {.name = "http", .name_len = 4, .state = "abc", .state_len = 3};
	assert_int_equal(proto_conn_put(payload, sizeof(payload), &off, &rec), 0);
	assert_int_equal(
	    proto_send(t.workers[0].channel, MSG_PARK, 0, 0, payload, off, &conn[0], 1), 0);
	close(conn[0]);
	struct received rc = {.want = 1};
	assert_true(run_until(received_all, &rc));
	assert_int_equal(rc.conns[0], 1);
	assert_true(rc.last_flags & CONN_ADOPTED);
	assert_string_equal(rc.last_state, "abc");
	close(conn[1]);
	/* The upgrade was done as soon as generation 2 was ready. */
	assert_true(r.done);
	assert_int_equal(r.code, 0);
}

/* Sends MSG_PARK of a fresh connection from fake worker @k; returns the
 * test's end of that connection. */
static int park_from(size_t k)
{
	int conn[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, conn), 0);
	uint8_t payload[64];
	size_t off = 0;
	struct proto_conn rec = {.name = "http", .name_len = 4};
	assert_int_equal(proto_conn_put(payload, sizeof(payload), &off, &rec), 0);
	assert_int_equal(
	    proto_send(t.workers[k].channel, MSG_PARK, 0, 0, payload, off, &conn[0], 1), 0);
	close(conn[0]);
	return conn[1];
}

static bool parks_refused_is(void *arg)
{
	return t.a->counters.parks_refused == (unsigned)(uintptr_t)arg;
}

/* True once batond closed its copy of the connection behind @fd. */
static bool peer_closed(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static void a_serving_worker_that_parks_is_refused_and_cut_off_at_the_third(void **state)
{
	start_serving();
	int conns[3];
	for (int i = 0; i < 3; i++) {
		conns[i] = park_from(0);
		assert_true(run_until(parks_refused_is, (void *)(uintptr_t)(i + 1)));
		assert_true(peer_closed(conns[i])); /* batond kept no fd of it */
		close(conns[i]);
	}
	/* A worker that keeps sending what it may not is dropped: its channel
	 * reads EOF, the worker itself keeps serving. */
	static struct proto_msg m;
	assert_int_equal(proto_recv(t.workers[0].channel, ROLE_WORKER_CLIENT, &m), 0);
	assert_int_equal(t.a->serving->workers[0]->state, WORKER_READY);
}

static void a_draining_worker_parks_at_most_hold_max_connections(void **state)
{
	t.next = IGNORES_TERM; /* generation 1 stays draining while it parks */
	t.app_cfg.hold_max = 2;
	t.app_cfg.drain_timeout_usec = 200 * MS;
	start_serving();
	t.next = RUNS;
	struct waiter_result r = {0};
	upgrade(&r);
	newest_ready();
	assert_true(run_until(serving_is, (void *)2));
	int conns[3];
	for (int i = 0; i < 3; i++)
		conns[i] = park_from(0);
	struct received rc = {.want = 2};
	assert_true(run_until(received_all, &rc));
	assert_true(run_until(parks_refused_is, (void *)1));
	assert_true(peer_closed(conns[2]));
	for (int i = 0; i < 3; i++)
		close(conns[i]);
	assert_true(run_until(waiter_done, &r));
}

/* An upgrade whose generation says READY=1 at once: until its outcome. */
static void upgrade_until_done(struct waiter_result *r)
{
	upgrade(r);
	newest_ready();
	assert_true(run_until(waiter_done, r));
}

static void upgrade_waiting_drain(struct waiter_result *r)
{
	struct app_waiter *w = waiter(r);
	w->wait_drain = true;
	app_upgrade(t.a, w);
}

static void
an_upgrade_that_waits_for_the_drain_is_done_once_the_old_generation_is_gone(void **state)
{
	t.next = IGNORES_TERM; /* generation 1 drains until drain-timeout */
	t.app_cfg.drain_timeout_usec = 200 * MS;
	start_serving();
	t.next = RUNS;
	struct waiter_result r = {0};
	upgrade_waiting_drain(&r);
	newest_ready();
	assert_true(run_until(serving_is, (void *)2));
	assert_int_equal(t.a->gens[0]->state, GEN_DRAINING);
	assert_false(r.done);
	assert_true(run_until(waiter_done, &r));
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.text, "web: generation 2 ready in "));
	assert_non_null(strstr(r.text, " ms; the generations before it drained "));
	assert_int_equal(t.a->n_gens, 1);
}

static bool generation_gone(void *arg)
{
	for (size_t i = 0; i < t.a->n_gens; i++)
		if (t.a->gens[i]->id == (unsigned)(uintptr_t)arg)
			return false;
	return true;
}

static unsigned draining_count(void)
{
	unsigned n = 0;
	for (size_t i = 0; i < t.a->n_gens; i++)
		n += t.a->gens[i]->state == GEN_DRAINING && !t.a->gens[i]->finishing;
	return n;
}

/* The next message on fake worker @k's channel, of type @type: its flags.
 * batond's HELLO (its answer to the worker's) is skipped. */
static int next_flags(size_t k, uint8_t type)
{
	static struct proto_msg m;
	do
		assert_int_equal(proto_recv(t.workers[k].channel, ROLE_WORKER_CLIENT, &m), 1);
	while (m.hdr.type == MSG_HELLO && type != MSG_HELLO);
	assert_int_equal(m.hdr.type, type);
	int flags = m.hdr.flags;
	proto_msg_release(&m);
	return flags;
}

static bool said_hello(void *arg)
{
	return channel_said_hello(((struct worker *)arg)->channel);
}

static void beyond_max_draining_the_oldest_is_finished_early(void **state)
{
	t.app_cfg.max_draining = 2;
	t.next = IGNORES_TERM; /* every generation drains until drain-timeout (5 s) */
	start_serving();
	/* Generation 1's worker runs libbaton: it says HELLO. */
	assert_int_equal(proto_send(t.workers[0].channel, MSG_HELLO, 0, 0, "w", 1, NULL, 0), 0);
	assert_true(run_until(said_hello, t.a->serving->workers[0]));
	struct waiter_result r[6] = {{0}};
	for (unsigned id = 2; id <= 3; id++) {
		upgrade(&r[id]);
		newest_ready();
		assert_true(run_until(waiter_done, &r[id]));
		assert_int_equal(r[id].code, 0);
	}
	assert_int_equal(draining_count(), 2); /* 1 and 2, at the bound */
	assert_int_equal(t.a->counters.finished_early, 0);
	assert_int_equal(next_flags(0, MSG_DRAIN), 0);
	/* A third would drain: generation 1, the oldest, is finished early. */
	upgrade(&r[4]);
	newest_ready();
	assert_true(run_until(waiter_done, &r[4]));
	assert_int_equal(draining_count(), 2);
	assert_int_equal(t.a->counters.finished_early, 1);
	assert_int_equal(t.a->gens[0]->id, 1);
	assert_true(t.a->gens[0]->finishing);
	/* Told to park now; what it parks is served by the newest generation. */
	assert_int_equal(next_flags(0, MSG_DRAIN), DRAIN_NOW);
	int conn = park_from(0);
	struct received rc = {.want = 1};
	assert_true(run_until(received_all, &rc));
	assert_true(rc.last_flags & CONN_ADOPTED);
	assert_int_equal(t.a->serving->id, 4);
	close(conn);
	/* Then SIGKILL, 1 s after it was finished early, not at drain-timeout. */
	assert_true(run_until(generation_gone, (void *)1));
	assert_int_equal(t.a->gens[0]->id, 2);
	/* Generation 2's worker never said HELLO: it cannot park, and is killed at
	 * once when the next upgrade finishes it early. */
	upgrade(&r[5]);
	newest_ready();
	assert_true(run_until(waiter_done, &r[5]));
	assert_int_equal(t.a->counters.finished_early, 2);
	assert_true(run_until(generation_gone, (void *)2));
	assert_int_equal(draining_count(), 2); /* 3 and 4 */
	assert_int_equal(t.a->serving->id, 5);
}

static void with_overlap_the_old_generation_serves_on_then_drains(void **state)
{
	t.app_cfg.overlap_usec = 100 * MS;
	start_serving();
	struct waiter_result r = {0};
	upgrade_until_done(&r);
	assert_int_equal(r.code, 0);
	assert_non_null(
	    strstr(r.text, "; generation 1 serves on for 0.1 s (overlap), then drains"));
	/* The upgrade is done; generation 1 still takes work, undisturbed. */
	struct gen *g1 = t.a->gens[0];
	assert_int_equal(g1->state, GEN_READY);
	assert_int_equal(g1->workers[0]->state, WORKER_READY);
	assert_int_equal(t.a->serving->id, 2);
	assert_true(run_until(generation_gone, (void *)1));
}

/* Connections per generation id (1..7) that its workers received. */
struct by_gen {
	unsigned conns[8];
	unsigned total, want;
};

static unsigned gen_of_pid(pid_t pid)
{
	for (size_t i = 0; i < t.a->n_gens; i++)
		for (unsigned k = 0; k < t.a->gens[i]->n_workers; k++)
			if (t.a->gens[i]->workers[k]->pid == pid)
				return t.a->gens[i]->id;
	return 0;
}

/* Reads what batond sent to every fake worker, counting by generation. */
static bool received_by_gen(void *arg)
{
	struct by_gen *bg = arg;
	static struct proto_msg m;
	for (size_t k = 0; k < t.n_workers; k++) {
		unsigned id = gen_of_pid(t.workers[k].pid);
		while (id && proto_recv(t.workers[k].channel, ROLE_WORKER_CLIENT, &m) > 0) {
			if (m.hdr.type == MSG_CONN) {
				bg->conns[id < 8 ? id : 0] += (unsigned)m.nfds;
				bg->total += (unsigned)m.nfds;
			}
			proto_msg_release(&m);
		}
	}
	return bg->total >= bg->want;
}

static void deliver_by_gen(struct by_gen *bg, int n)
{
	int fds[32];
	connect_clients(fds, n, "127.0.0.1");
	bg->want += (unsigned)n;
	assert_true(run_until(received_by_gen, bg));
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

static void a_canary_takes_its_share_until_promoted_or_rolled_back(void **state)
{
	t.app_cfg.canary = 1;
	start_dispatch(4, POLICY_LEAST_LOADED);
	struct waiter_result r = {0};
	upgrade(&r);
	assert_int_equal(t.a->starting->n_workers, 1);
	newest_ready();
	assert_true(run_until(waiter_done, &r));
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.text, "web: generation 2 ready in "));
	assert_non_null(strstr(r.text, " ms as a canary: 1 of 4 workers beside generation 1; "
				       "batonctl promote web, or rollback web"));
	assert_int_equal(t.a->serving->id, 1);
	assert_int_equal(t.a->canary->id, 2);
	assert_int_equal(t.a->gens[0]->state, GEN_READY); /* generation 1 serves on */
	/* 1 of 4 workers: a quarter of the new connections. */
	struct by_gen bg = {0};
	for (int i = 0; i < 4; i++)
		deliver_by_gen(&bg, 10);
	assert_int_equal(bg.conns[2], 10);
	assert_int_equal(bg.conns[1], 30);
	/* No upgrade while a canary runs. */
	struct waiter_result refused = {0};
	upgrade(&refused);
	assert_true(refused.done);
	assert_int_equal(refused.code, EBUSY);
	assert_string_equal(refused.text, "web: generation 2 is a canary: batonctl promote web, "
					  "or rollback web, before the next upgrade");
	/* Promoted: every worker, every new connection; generation 1 drains. */
	char text[800];
	assert_int_equal(app_promote(t.a, text, sizeof(text)), 0);
	assert_string_equal(text, "web: generation 2 promoted from 1 to 4 workers; generation 1 "
				  "draining (drain-timeout 5 s)");
	assert_null(t.a->canary);
	assert_int_equal(t.a->serving->id, 2);
	newest_ready();
	assert_true(run_until(generation_gone, (void *)1));
	bg = (struct by_gen){0};
	deliver_by_gen(&bg, 12);
	assert_int_equal(bg.conns[2], 12);
	/* The next canary is rolled back: generation 2 takes everything again. */
	struct waiter_result r3 = {0};
	upgrade(&r3);
	newest_ready();
	assert_true(run_until(waiter_done, &r3));
	assert_int_equal(t.a->canary->id, 3);
	assert_int_equal(app_rollback(t.a, text, sizeof(text)), 0);
	assert_string_equal(text, "web: canary generation 3 rolled back; generation 2 serving");
	assert_true(run_until(generation_gone, (void *)3));
	bg = (struct by_gen){0};
	deliver_by_gen(&bg, 12);
	assert_int_equal(bg.conns[2], 12);
	assert_int_equal(app_rollback(t.a, text, sizeof(text)), -ESRCH);
	assert_string_equal(text, "web: no canary to roll back");
	assert_int_equal(t.a->counters.upgrades, 1);
	assert_int_equal(t.a->counters.rollbacks, 1);
}

static void a_generation_that_restarts_3_times_on_probation_is_rolled_back(void **state)
{
	t.app_cfg.probation_usec = 30000 * MS;
	start_serving();
	struct waiter_result r = {0};
	upgrade_until_done(&r);
	assert_int_equal(t.a->pinned_gen, 1);
	assert_int_equal(t.a->probation_gen, 2);
	/* Generation 2 crashes three times within its probation. */
	for (int i = 0; i < 3; i++)
		crash_and_restart_delay_ms();
	assert_true(run_until(starting_is, (void *)3));
	assert_int_equal(t.a->starting->program_fd >= 0, 1);
	newest_ready();
	assert_true(run_until(serving_is, (void *)3));
	assert_non_null(strstr(t.a->counters.last_outcome,
			       "web: rolled back (generation 2 restarted 3 times within its "
			       "probation of 30 s): generation 3 ready in "));
	assert_non_null(strstr(t.a->counters.last_outcome, "; generation 2 draining"));
	assert_int_equal(t.a->counters.rollbacks, 1);
	/* Nothing is pinned after a rollback, nor on probation. */
	assert_int_equal(t.a->pinned_gen, 0);
	assert_int_equal(t.a->probation_gen, 0);
	struct waiter_result again = {0};
	app_revert(t.a, waiter(&again));
	assert_true(again.done);
	assert_int_equal(again.code, ESRCH);
	assert_string_equal(again.text,
			    "web: nothing to roll back to: no canary, and no generation is pinned");
}

static void rollback_starts_the_pinned_generation_again(void **state)
{
	start_serving();
	struct waiter_result r = {0};
	upgrade_until_done(&r);
	assert_int_equal(t.a->pinned_gen, 1);
	assert_int_equal(t.a->probation_gen, 0); /* probation = 0 */
	struct waiter_result back = {0};
	app_revert(t.a, waiter(&back));
	assert_int_equal(t.a->starting->id, 3);
	/* It runs generation 1's program (its O_PATH), whatever the path names now. */
	struct stat st3, st1;
	assert_int_equal(fstat(t.a->starting->program_fd, &st3), 0);
	assert_int_equal(fstat(t.a->pinned_program_fd, &st1), 0);
	assert_int_equal(st3.st_ino, st1.st_ino);
	newest_ready();
	assert_true(run_until(waiter_done, &back));
	assert_int_equal(back.code, 0);
	assert_non_null(strstr(back.text, "web: rolled back (batonctl rollback): generation 3 "
					  "ready in "));
	assert_int_equal(t.a->serving->id, 3);
	assert_int_equal(t.a->counters.upgrades, 1);
	assert_int_equal(t.a->counters.rollbacks, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(upgrade_rolls_back_when_the_new_generation_exits_before_ready),
	    T(upgrade_rolls_back_when_the_new_generation_misses_ready_timeout),
	    T(two_upgrades_back_to_back_overlap_the_first_ones_drain),
	    T(an_upgrade_that_waits_for_the_drain_is_done_once_the_old_generation_is_gone),
	    T(beyond_max_draining_the_oldest_is_finished_early),
	    T(with_overlap_the_old_generation_serves_on_then_drains),
	    T(a_canary_takes_its_share_until_promoted_or_rolled_back),
	    T(a_generation_that_restarts_3_times_on_probation_is_rolled_back),
	    T(rollback_starts_the_pinned_generation_again),
	    T(a_crashing_worker_restarts_after_100_200_400_ms_and_100_again_once_stable),
	    T(a_worker_ready_after_its_generation_failed_never_serves),
	    T(least_loaded_sends_to_the_worker_with_fewest_open_connections),
	    T(round_robin_takes_turns_whatever_the_load),
	    T(sticky_sends_a_peer_to_one_worker),
	    T(with_no_worker_ready_hold_max_and_hold_timeout_bound_what_is_held),
	    T(a_parked_connection_goes_to_the_next_ready_generation),
	    T(a_serving_worker_that_parks_is_refused_and_cut_off_at_the_third),
	    T(a_draining_worker_parks_at_most_hold_max_connections),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
