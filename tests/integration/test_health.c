/* SPDX-License-Identifier: MIT */
/* Health checks (health-url, health-exec): a new generation takes over only
 * once a round passed, and is rolled back after health-failures failed rounds
 * in a row, before it takes over, as a canary or on probation. The probes
 * reach exactly the generation tried. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>

/* An upgrade's health-exec: fails for generation G once @DIR@/sick-G exists,
 * and logs the generation and worker pids it was told. */
#define SICK_CHECK                                                                                 \
	"  health-exec = { \"/bin/sh\", \"-c\", \"echo $BATON_GENERATION $BATON_WORKER_PIDS >> "   \
	"@DIR@/health.log; test ! -e @DIR@/sick-$BATON_GENERATION\" }\n"                           \
	"  health-interval = 0.1\n  health-timeout = 2\n  health-failures = 3\n"

static void touch(const struct batond *b, const char *name)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", b->dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
}

/* Starts batond with @config, waits for its @workers, and puts it under
 * load (loadgen's report into @lg_out). */
static pid_t start_under_load(struct batond *b, const char *config, int workers, char *lg_out,
			      size_t len)
{
	batond_prepare(b);
	batond_write_config(b, config);
	batond_start(b);
	assert_true(wait_workers(b, "ready", workers, 10000));
	snprintf(lg_out, len, "%s/loadgen.out", b->dir);
	return loadgen_start(b, 4, LOADGEN_CEILING_MS, lg_out);
}

/* Stops the load: not one request failed. */
static void no_request_failed(pid_t lg, const char *lg_out)
{
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
}

/* Every answer to GET / comes from generation @gen. */
static void served_by(const struct batond *b, int gen)
{
	char body[256], want[32];
	snprintf(want, sizeof(want), "generation %d ", gen);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(http_get(b->port, body, sizeof(body)), 200);
		assert_non_null(strstr(body, want));
	}
}

/* Connections dispatch placed on generation @gen's workers. */
static long long delivered_to(const struct batond *b, int gen)
{
	struct json_object *st = status_json(b), *apps, *gens, *v;
	long long n = 0;
	assert_true(json_object_object_get_ex(st, "apps", &apps));
	struct json_object *app = json_object_array_get_idx(apps, 0);
	assert_true(json_object_object_get_ex(app, "generations", &gens));
	for (size_t i = 0; i < json_object_array_length(gens); i++) {
		struct json_object *g = json_object_array_get_idx(gens, i), *workers;
		if (!json_object_object_get_ex(g, "id", &v) || json_object_get_int(v) != gen ||
		    !json_object_object_get_ex(g, "workers", &workers))
			continue;
		for (size_t k = 0; k < json_object_array_length(workers); k++)
			if (json_object_object_get_ex(json_object_array_get_idx(workers, k),
						      "delivered", &v))
				n += json_object_get_int64(v);
	}
	json_object_put(st);
	return n;
}

#define HELLO_CONFIG(ARGS)                                                                         \
	"listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"                                 \
	"app web {\n  exec = { \"@HELLO@\"" ARGS " }\n  listeners = { \"http\" }\n"                \
	"  mode = dispatch\n  workers = 2\n"                                                       \
	"  health-url = \"http://127.0.0.1:@PORT@/healthz\"\n"                                     \
	"  health-interval = 0.1\n  health-failures = 3\n}\n"

/* Dispatch mode, health-url: each probe goes to one worker of the new
 * generation, which answers 200 (it takes over) or, in a broken release, 503
 * (rolled back: it never gets a connection, the old one serves on, no request
 * fails), and batond keeps no fd of the probes. */
static void a_release_failing_its_health_url_never_takes_traffic(void **state)
{
	struct batond b;
	char lg_out[400], out[2048];
	pid_t lg = start_under_load(&b, HELLO_CONFIG(""), 2, lg_out, sizeof(lg_out));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, "web: generation 2 ready in "));
	served_by(&b, 2);
	int fds = count_fds_settled(b.pid);

	batond_write_config(&b, HELLO_CONFIG(", \"--health-status\", \"503\""));
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 1);
	char want[300];
	snprintf(want, sizeof(want),
		 "web: generation 3 failed 3 health checks in a row: worker 0: "
		 "health-url http://127.0.0.1:%d/healthz: HTTP 503 Unhealthy; generation 2 still "
		 "serving with its previous configuration",
		 b.port);
	if (!strstr(out, want))
		fprintf(stderr, "batonctl said: %s\n", out);
	assert_non_null(strstr(out, want));
	assert_true(batond_wait_log(&b, "web: generation 3 gone", 10000));
	served_by(&b, 2);
	assert_int_equal(delivered_to(&b, 3), 0);
	assert_int_equal(app_status(&b, "web", "rollbacks"), 1);
	assert_int_equal(app_status(&b, "web", "health_failures"), 3);
	assert_int_equal(count_fds_when(b.pid, fds, 3000), fds);

	no_request_failed(lg, lg_out);
	assert_int_equal(batond_stop(&b), 0);
}

/* The pids health-exec was told for generation @gen, from health.log. */
static bool logged_pids(const struct batond *b, int gen, const char *pids)
{
	char path[400], line[256], want[200];
	snprintf(path, sizeof(path), "%s/health.log", b->dir);
	snprintf(want, sizeof(want), "%d %s\n", gen, pids);
	FILE *f = fopen(path, "r");
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strcmp(line, want) == 0;
	if (f)
		fclose(f);
	return found;
}

/* Inherit mode, health-exec: it runs with BATON_GENERATION and
 * BATON_WORKER_PIDS of the generation tried; exit 0 lets it take over, a
 * failing one rolls it back with its exit status in the reason. */
static void health_exec_knows_the_generation_and_rolls_back_a_failing_one(void **state)
{
	struct batond b;
	char lg_out[400], out[2048];
	pid_t lg =
	    start_under_load(&b,
			     "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			     "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			     "  workers = 2\n" SICK_CHECK "}\n",
			     2, lg_out, sizeof(lg_out));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, "web: generation 2 ready in "));
	char pids[64];
	snprintf(pids, sizeof(pids), "%d %d", (int)app_worker_pid(&b, "web", 0),
		 (int)app_worker_pid(&b, "web", 1));
	assert_true(logged_pids(&b, 2, pids));

	touch(&b, "sick-3");
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	assert_non_null(strstr(out, "web: generation 3 failed 3 health checks in a row: "
				    "health-exec /bin/sh exited with status 1; generation 2 still "
				    "serving"));
	assert_true(batond_wait_log(&b, "web: generation 3 gone", 10000));
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	no_request_failed(lg, lg_out);
	assert_int_equal(batond_stop(&b), 0);
}

/* A health-exec that hangs is killed at health-timeout, with what it
 * started, and counts as a failed round. */
#define HANGING_CHECK(TIMEOUT)                                                                     \
	"listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"                                 \
	"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"                      \
	"  health-exec = { \"/bin/sh\", \"-c\", \"sleep 60 & echo $! > @DIR@/sleeper.tmp; "        \
	"mv @DIR@/sleeper.tmp @DIR@/sleeper; echo checking; wait\" }\n"                            \
	"  health-timeout = " TIMEOUT "\n  health-failures = 1\n}\n"

/* The pid of the check's background sleep, once it wrote it. */
static pid_t sleeper_pid(const struct batond *b)
{
	char path[400], line[32] = "";
	snprintf(path, sizeof(path), "%s/sleeper", b->dir);
	FILE *f = NULL;
	for (long long deadline = now_ms() + 10000; !f && now_ms() < deadline; usleep(10000))
		f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	pid_t pid = (pid_t)atoi(line);
	assert_true(pid > 0);
	return pid;
}

/* Orphaned when its shell was killed, the sleep is this test's (the
 * subreaper's) to reap: reaped means killed. */
static void killed(pid_t pid)
{
	long long deadline = now_ms() + 5000;
	while (waitpid(pid, NULL, WNOHANG) != pid && now_ms() < deadline)
		usleep(10000);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
}

/* A health-exec that hangs is killed at health-timeout, with what it
 * started, and counts as a failed round. */
static void a_hanging_health_exec_is_killed_at_its_timeout(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, HANGING_CHECK("0.3"));
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	char out[2048];
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	assert_non_null(strstr(out, "web: generation 2 failed 1 health check in a row: "
				    "health-exec /bin/sh timed out after 0.3 s; generation 1 "
				    "still serving"));
	killed(sleeper_pid(&b));
	assert_int_equal(batond_stop(&b), 0);
}

/* batond stopped while a health-exec runs: it is killed with what it
 * started, the waiting upgrade is told, batond exits 0. */
static void stopping_batond_kills_a_running_health_exec(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, HANGING_CHECK("60"));
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	pid_t upgrade = fork();
	assert_true(upgrade >= 0);
	if (upgrade == 0) {
		char out[2048];
		_exit(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL) == 1 &&
			      strstr(out, "batond is stopping")
			  ? 0
			  : 1);
	}
	pid_t sleeper = sleeper_pid(&b);
	assert_int_equal(batond_stop(&b), 0);
	int status;
	assert_int_equal(waitpid(upgrade, &status, 0), upgrade);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	killed(sleeper);
}

/* A canary whose health check fails health-failures times is rolled back
 * before it was promoted: it never took more than its share; promotion is
 * refused while its last round failed. */
static void a_canary_failing_its_health_check_is_never_promoted(void **state)
{
	struct batond b;
	char lg_out[400], out[2048];
	pid_t lg =
	    start_under_load(&b,
			     "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			     "app web {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http\" }\n"
			     "  mode = dispatch\n  workers = 4\n  canary = 1\n"
			     "  canary-time = 60\n" SICK_CHECK "}\n",
			     4, lg_out, sizeof(lg_out));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, " as a canary: 1 of 4 workers beside generation 1"));
	/* Its first failed round: promotion is refused. */
	touch(&b, "sick-2");
	assert_true(batond_wait_log(&b, "web: generation 2: health check failed (1 of 3", 10000));
	assert_int_equal(batonctl(&b, out, sizeof(out), "promote", "web", NULL), 1);
	assert_non_null(strstr(out, "web: canary generation 2 not promoted: its last health check "
				    "failed (health-exec /bin/sh exited with status 1)"));
	assert_true(batond_wait_log(&b,
				    "web: canary generation 2 failed 3 health checks in "
				    "a row: health-exec /bin/sh exited with status 1; rolled back, "
				    "generation 1 serving",
				    10000));
	assert_true(batond_wait_log(&b, "web: generation 2 gone", 10000));
	assert_false(batond_log_contains(&b, "promoted from"));
	served_by(&b, 1);
	no_request_failed(lg, lg_out);
	assert_int_equal(app_status(&b, "web", "rollbacks"), 1);
	assert_int_equal(batond_stop(&b), 0);
}

/* canary-time does not promote a canary whose last round failed: it waits
 * for a round that passes. */
static void canary_time_waits_for_a_passing_health_check(void **state)
{
	struct batond b;
	char lg_out[400], out[2048];
	/* Passes its first round (the upgrade's), fails the next ones until
	 * @DIR@/healed exists. */
	pid_t lg = start_under_load(
	    &b,
	    "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
	    "app web {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http\" }\n"
	    "  mode = dispatch\n  workers = 2\n  canary = 1\n  canary-time = 1\n"
	    "  health-exec = { \"/bin/sh\", \"-c\", \"test -e @DIR@/healed && exit 0; "
	    "test -e @DIR@/once && exit 1; touch @DIR@/once\" }\n"
	    "  health-interval = 0.1\n  health-failures = 1000\n}\n",
	    2, lg_out, sizeof(lg_out));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, " as a canary: 1 of 2 workers beside generation 1"));
	assert_true(
	    batond_wait_log(&b,
			    "web: canary generation 2 not promoted: its last health check "
			    "failed (health-exec /bin/sh exited with status 1) (canary-time: "
			    "promoted once a health check passes)",
			    10000));
	assert_false(batond_log_contains(&b, "promoted from"));
	touch(&b, "healed");
	assert_true(batond_wait_log(
	    &b, "web: generation 2 promoted from 1 to 2 workers; generation 1 ", 10000));
	assert_true(batond_wait_log(&b, "web: generation 1 gone", 10000));
	served_by(&b, 2);
	no_request_failed(lg, lg_out);
	assert_int_equal(batond_stop(&b), 0);
}

/* Health in status: "health" of the generation on probation. */
static void expect_health_in_status(const struct batond *b, int gen, const char *prefix)
{
	struct json_object *st = status_json(b), *apps, *gens, *v, *h;
	bool found = false;
	assert_true(json_object_object_get_ex(st, "apps", &apps));
	struct json_object *app = json_object_array_get_idx(apps, 0);
	assert_true(json_object_object_get_ex(app, "generations", &gens));
	for (size_t i = 0; i < json_object_array_length(gens); i++) {
		struct json_object *g = json_object_array_get_idx(gens, i);
		if (json_object_object_get_ex(g, "id", &v) && json_object_get_int(v) == gen &&
		    json_object_object_get_ex(g, "health", &h))
			found = strncmp(json_object_get_string(h), prefix, strlen(prefix)) == 0;
	}
	json_object_put(st);
	assert_true(found);
}

/* On probation, a generation whose health check fails health-failures times
 * in a row is reverted to the pinned one, which is tried the same way. */
static void probation_reverts_a_generation_that_turns_unhealthy(void **state)
{
	struct batond b;
	char lg_out[400], out[2048];
	pid_t lg =
	    start_under_load(&b,
			     "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			     "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			     "  workers = 2\n  probation = 60\n" SICK_CHECK "}\n",
			     2, lg_out, sizeof(lg_out));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, "web: generation 2 ready in "));
	assert_int_equal(app_status(&b, "web", "probation"), 2);
	expect_health_in_status(&b, 2, "passing (");
	touch(&b, "sick-2");
	assert_true(batond_wait_log(
	    &b,
	    "web: generation 2 failed 3 health checks in a row within its probation: "
	    "health-exec /bin/sh exited with status 1: rolling back to generation 1's program "
	    "and configuration",
	    10000));
	assert_true(batond_wait_log(&b, "web: generation 2 gone", 10000));
	assert_int_equal(app_status(&b, "web", "serving"), 3);
	no_request_failed(lg, lg_out);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(a_release_failing_its_health_url_never_takes_traffic),
	    harness_test(health_exec_knows_the_generation_and_rolls_back_a_failing_one),
	    harness_test(a_hanging_health_exec_is_killed_at_its_timeout),
	    harness_test(stopping_batond_kills_a_running_health_exec),
	    harness_test(a_canary_failing_its_health_check_is_never_promoted),
	    harness_test(canary_time_waits_for_a_passing_health_check),
	    harness_test(probation_reverts_a_generation_that_turns_unhealthy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
