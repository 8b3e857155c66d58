/* SPDX-License-Identifier: MIT */
/* Helpers for integration tests: a temp dir, a config, a real batond process,
 * batonctl runs, HTTP requests on 127.0.0.1 and fd counts. Every process a test
 * starts is stopped by pid before the test ends. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "fds.h"

struct batond {
	char dir[256]; /* temp dir, removed by batond_stop */
	char conf[300];
	char sock[300]; /* control socket */
	char log[300];	/* batond's stderr */
	pid_t pid;
	int port; /* first free port found for the test */
};

/* A free TCP port on 127.0.0.1 (bound and released; tests use it at once). */
int free_port(void);

/* Creates the temp dir and fills paths and port; does not start anything. */
void batond_prepare(struct batond *b);
/* Writes b->conf: "control { socket = ... }" followed by @body, where every
 * "@PORT@" is replaced by b->port, "@DIR@" by b->dir, "@TESTSRV@" by the test
 * server's path, "@HELLO@" by examples/hello's (a libbaton app). */
void batond_write_config(struct batond *b, const char *body);
/* Starts batond -c b->conf and waits (bounded) until its control socket answers. */
void batond_start(struct batond *b);
/* The same, with @setup run in batond's process just before its exec (a
 * namespace of its own, say). */
void batond_start_in(struct batond *b, void (*setup)(void));
/* Stops with `batonctl stop`, waits for the pid (bounded, then SIGKILL), and
 * removes the temp dir. Returns batond's exit status (or -1 if it was killed). */
int batond_stop(struct batond *b);
/* kill -9 of batond, reaped; its workers live on (orphans of this test, their
 * subreaper). b's files stay for a batond_start again. */
void batond_kill9(struct batond *b);
/* Prints batond's log to stderr (for failures). */
void batond_dump_log(const struct batond *b);
/* True if the log contains @needle. */
bool batond_log_contains(const struct batond *b, const char *needle);
/* Waits (bounded by @timeout_ms) until the log contains @needle. */
bool batond_wait_log(const struct batond *b, const char *needle, int timeout_ms);

/* Runs batonctl -s b->sock ARGS...; captures stdout+stderr into @out. Returns
 * its exit status. */
int batonctl(const struct batond *b, char *out, size_t out_len, const char *arg1, ...)
    __attribute__((sentinel));

/* A TCP connection to 127.0.0.1:@port, blocking, with 5 s receive and send
 * timeouts; or a negative errno. */
int tcp_connect(int port);
/* One line out ("x\n"), one line back into @reply (NUL-terminated, with its
 * newline), on an open connection of a line server (tests/apps/parksrv).
 * False on an error, EOF or timeout. */
bool line_exchange(int fd, char *reply, size_t len);

/* Runs batond --check -c b->conf; captures stdout+stderr into @out. Returns
 * its exit status. */
int batond_check(const struct batond *b, char *out, size_t out_len);

/* GET / on 127.0.0.1:port; returns the HTTP status (200) with the body in
 * @body, or a negative errno (-ECONNREFUSED...). */
int http_get(int port, char *body, size_t body_len);

/* count_fds (fds.h) once it stays the same for 100 ms (at most 3 s): a
 * baseline must not count a batonctl connection batond has yet to close, or a
 * worker's READY=1 socket. */
int count_fds_settled(pid_t pid);
/* count_fds (fds.h) once it equals @want, or after @timeout_ms: batond closes a
 * batonctl connection an instant after batonctl exits, a leak never. */
int count_fds_when(pid_t pid, int want, int timeout_ms);
/* The fds batond keeps for app @app's rollback: 1 while a generation is
 * pinned (the O_PATH of the program the generation replaced last ran, kept
 * so that batonctl rollback runs that very file), else 0. After upgrades of an
 * unchanged configuration, batond holds this many more than before them. */
int pinned_fds(const struct batond *b, const char *app);
/* `batonctl status --json`, parsed with json-c (the test fails if batonctl
 * does or the output is not JSON). Release with json_object_put. */
struct json_object *status_json(const struct batond *b);
/* The sum of every integer member named @key anywhere in the status: over
 * listeners ("accepted", "held", "timed_out") or workers ("delivered", "load"). */
long long status_sum(const struct batond *b, const char *key);
/* Waits (bounded) until status_sum(@key) is @want. */
bool wait_status_sum(const struct batond *b, const char *key, long long want, int timeout_ms);
/* Member @key of app @app in the status ("serving": the serving generation, 0
 * for none; "upgrades", "rollbacks", "restarts"); the test fails without it. */
/* batond puts its workers in cgroups ("cgroups" in status --json); else in
 * process groups. */
bool batond_uses_cgroups(const struct batond *b);
/* Into @buf: batond's log line for the leftovers of worker @worker of
 * generation @gen, whose process group was @pgid, killed at drain-timeout:
 * by cgroup or by process group, as batond runs. */
void lingering_killed_line(const struct batond *b, unsigned gen, unsigned worker, pid_t pgid,
			   char *buf, size_t len);
long long app_status(const struct batond *b, const char *app, const char *key);
/* Pid of worker @index of the newest generation of app @app, 0 if none. */
pid_t app_worker_pid(const struct batond *b, const char *app, unsigned index);
/* Pids of workers in state @state ("ready", "starting"...) from batonctl
 * status --json, up to @max; returns the number found. */
int worker_pids(const struct batond *b, const char *state, pid_t *pids, int max);
/* Waits until batonctl status shows @n workers in @state (bounded). */
bool wait_workers(const struct batond *b, const char *state, int n, int timeout_ms);

/* Runs the load generator against b->port for @duration_ms with @conns
 * connections in the background; loadgen_wait returns its "loadgen: " line. */
pid_t loadgen_start(const struct batond *b, int conns, int duration_ms, const char *out_path);
/* The same with more of loadgen's options (@extra: NULL-terminated, may be NULL),
 * e.g. { "--tls", "--tls-ca", CA, NULL }. */
pid_t loadgen_start_with(const struct batond *b, int conns, int duration_ms, const char *out_path,
			 const char *const *extra);
/* Waits for it; returns its exit status and parses ok/failed. */
int loadgen_wait(pid_t pid, const char *out_path, long *ok, long *failed);
/* Load that lasts as long as the test's own events: loadgen_start with
 * LOADGEN_CEILING_MS as the duration (a guard against hangs only), then
 * loadgen_stop once the events are done: SIGTERM ends the run, requests in
 * flight finish, and it reports as loadgen_wait does. */
#define LOADGEN_CEILING_MS 120000
int loadgen_stop(pid_t pid, const char *out_path, long *ok, long *failed);
/* The longest stall a reaped loadgen reported ("stall longest X ms": the
 * longest time without a completed request), -1 if none. */
double loadgen_stall_ms(const char *out_path);
/* Parses the output of a loadgen that was already reaped. */
void loadgen_report(const char *out_path, long *ok, long *failed);

/* cmocka teardown for every test: stops a batond the test left running (a
 * failed assertion jumps past batond_stop) and kills, by pid, any process of
 * ours still alive, workers orphaned by a killed batond included (the test
 * process is their subreaper). Use with cmocka_unit_test_teardown. */
int harness_teardown(void **state);
#define harness_test(f) cmocka_unit_test_teardown(f, harness_teardown)

/* A mount namespace of this process's own with a fresh tmpfs on /run and the
 * directory /run/systemd/journal in it, where a test binds its own journal
 * sockets. Skips the test (saying why) without root or namespaces; undo with
 * journal_namespace_leave. */
void journal_namespace_enter(void);
void journal_namespace_leave(void);
/* Makes b->log now and sets JOURNAL_STREAM to name it, so that the batond
 * started next takes its stderr for the journal's stream; unset it after
 * batond_start. */
void batond_log_is_journal_stream(const struct batond *b);

/* Monotonic ms. */
long long now_ms(void);
