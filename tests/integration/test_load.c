/* SPDX-License-Identifier: MIT */
/* Upgrades under load, and what many upgrades leave behind in batond. */
#include "harness.h"

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

static void start_web(struct batond *b)
{
	batond_prepare(b);
	batond_write_config(b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			       "app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n"
			       "  workers = 2\n}\n");
	batond_start(b);
	assert_true(wait_workers(b, "ready", 2, 10000));
}

static void upgrade_or_fail(const struct batond *b, int n)
{
	char out[1024];
	if (batonctl(b, out, sizeof(out), "upgrade", "web", NULL) != 0) {
		batond_dump_log(b);
		fail_msg("upgrade %d: %s", n, out);
	}
}

/* Twenty upgrades, one after the other, while the load runs: the load lasts
 * until they are done, however long a busy machine takes for them. */
static void twenty_upgrades_under_load_fail_no_request(void **state)
{
	struct batond b;
	start_web(&b);
	char lg_out[400];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	int fds_before = count_fds_settled(b.pid);
	pid_t lg = loadgen_start(&b, 8, LOADGEN_CEILING_MS, lg_out);
	for (int i = 1; i <= 20; i++)
		upgrade_or_fail(&b, i);
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	assert_int_equal(app_status(&b, "web", "upgrades"), 20);
	assert_int_equal(app_status(&b, "web", "serving"), 21);
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "gen=21 "));
	int fds_after = fds_before + pinned_fds(&b, "web");
	assert_int_equal(count_fds_when(b.pid, fds_after, 10000), fds_after);
	assert_int_equal(batond_stop(&b), 0);
}

static void batonds_fd_count_after_fifty_upgrades_equals_that_after_the_first(void **state)
{
	struct batond b;
	start_web(&b);
	upgrade_or_fail(&b, 1);
	int after_first = count_fds_settled(b.pid);
	assert_true(after_first > 0);
	for (int i = 2; i <= 51; i++)
		upgrade_or_fail(&b, i);
	if (count_fds_when(b.pid, after_first, 3000) != after_first) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)b.pid);
		(void)system(cmd);
	}
	assert_int_equal(count_fds(b.pid), after_first);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(twenty_upgrades_under_load_fail_no_request),
	    harness_test(batonds_fd_count_after_fifty_upgrades_equals_that_after_the_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
