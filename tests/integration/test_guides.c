/* SPDX-License-Identifier: MIT */
/* The guides of docs/guides/, each run as written: the server of examples/guides
 * under batond, upgraded under load, no request failed. One case per guide,
 * chosen by the first argument (ctest runs each as guide_NAME); a case whose
 * runtime is missing says which and is skipped (packaging/deps.sh installs them). */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define UPGRADES 5

/* Skips the case, naming what is missing, unless @path is an executable. */
#define REQUIRE_PROGRAM(path)                                                                      \
	do {                                                                                       \
		if (access((path), X_OK) != 0) {                                                   \
			print_message("skipped: %s is not installed (packaging/deps.sh installs "  \
				      "it)\n",                                                     \
				      (path));                                                     \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static void start_app(struct batond *b, const char *app_body)
{
	char body[4096];
	snprintf(body, sizeof(body),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  listeners = { \"http\" }\n%s}\n",
		 app_body);
	batond_write_config(b, body);
	batond_start(b);
}

static void upgrade_or_fail(const struct batond *b, int n)
{
	char out[1024];
	if (batonctl(b, out, sizeof(out), "upgrade", "web", NULL) != 0) {
		batond_dump_log(b);
		fail_msg("upgrade %d: %s", n, out);
	}
}

/* Waits (bounded) until a request is answered by generation @gen. */
static void wait_serving(const struct batond *b, long long gen)
{
	char body[256], want[32];
	snprintf(want, sizeof(want), "generation %lld ", gen);
	long long deadline = now_ms() + 30000;
	int status;
	while ((status = http_get(b->port, body, sizeof(body))) != 200 || !strstr(body, want)) {
		if (now_ms() > deadline) {
			batond_dump_log(b);
			fail_msg("expected 200 from generation %lld, got %d: %s", gen, status,
				 body);
		}
	}
}

/* @upgrades upgrades under load, each followed by a request answered by the new
 * generation, as one deploying would check; returns the requests that failed
 * (ok > 0 asserted). */
static long upgrades_under_load(struct batond *b, int upgrades)
{
	char lg_out[400];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b->dir);
	long long serving, deadline = now_ms() + 30000;
	while ((serving = app_status(b, "web", "serving")) == 0)
		assert_true(now_ms() < deadline); /* the first generation is starting */
	wait_serving(b, serving);
	pid_t lg = loadgen_start(b, 8, LOADGEN_CEILING_MS, lg_out);
	for (int i = 1; i <= upgrades; i++) {
		upgrade_or_fail(b, i);
		wait_serving(b, serving + i);
	}
	long ok, failed;
	loadgen_stop(lg, lg_out, &ok, &failed);
	assert_true(ok > 0);
	assert_int_equal(app_status(b, "web", "serving"), serving + upgrades);
	return failed;
}

static void run_guide(const char *app_body, int workers)
{
	struct batond b;
	batond_prepare(&b);
	start_app(&b, app_body);
	if (!wait_workers(&b, "ready", workers, 30000)) {
		batond_dump_log(&b);
		fail_msg("%d workers not ready within 30 s", workers);
	}
	assert_int_equal(upgrades_under_load(&b, UPGRADES), 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* Copies @from to @to (small text files). */
static void copy_file(const char *from, const char *to)
{
	char buf[8192];
	FILE *in = fopen(from, "re"), *out = fopen(to, "we");
	assert_non_null(in);
	assert_non_null(out);
	size_t n = fread(buf, 1, sizeof(buf), in);
	assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* docs/guides/gunicorn.md: the arbiter takes fd 3 from LISTEN_FDS and says
 * READY=1; --preload imports the app before it does, so that a release that
 * fails at import is rolled back. The app runs from a copy, which the test
 * then breaks. */
static void gunicorn_loses_no_request_over_upgrades(void **state)
{
	REQUIRE_PROGRAM("/usr/bin/gunicorn");
	struct batond b;
	char app_py[400], app[1024];
	batond_prepare(&b);
	snprintf(app_py, sizeof(app_py), "%s/wsgi_app.py", b.dir);
	copy_file(GUIDES_DIR "/wsgi_app.py", app_py);
	snprintf(app, sizeof(app),
		 "  exec = { \"/usr/bin/gunicorn\", \"--preload\", \"--workers\", \"2\",\n"
		 "           \"--chdir\", \"%s\", \"wsgi_app:app\" }\n"
		 "  environment = { \"PYTHONDONTWRITEBYTECODE=1\" }\n"
		 "  drain-timeout = 40\n",
		 b.dir);
	start_app(&b, app);
	assert_true(wait_workers(&b, "ready", 1, 30000));
	assert_int_equal(upgrades_under_load(&b, UPGRADES), 0);

	FILE *f = fopen(app_py, "we");
	assert_non_null(f);
	fputs("raise ImportError(\"a broken release\")\n", f);
	assert_int_equal(fclose(f), 0);
	char out[2048];
	long long serving = app_status(&b, "web", "serving");
	int rc = batonctl(&b, out, sizeof(out), "upgrade", "web", NULL);
	print_message("a broken release: batonctl upgrade: exit %d: %s", rc, out);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "before READY=1"));
	assert_non_null(strstr(out, "still serving"));
	assert_int_equal(app_status(&b, "web", "serving"), serving);
	wait_serving(&b, serving);
	assert_int_equal(batond_stop(&b), 0);
}

/* docs/guides/gunicorn.md, overlap: without --preload the workers import the
 * app after the arbiter's READY=1; an app that takes 3 s to import (longer
 * than loadgen's clients wait) loses nothing when the old generation serves
 * on for 5 s. */
static void overlap_covers_gunicorn_workers_that_boot_after_ready(void **state)
{
	REQUIRE_PROGRAM("/usr/bin/gunicorn");
	struct batond b;
	batond_prepare(&b);
	start_app(&b,
		  "  exec = { \"/usr/bin/gunicorn\", \"--workers\", \"2\",\n"
		  "           \"--chdir\", \"" GUIDES_DIR "\", \"wsgi_app:app\" }\n"
		  "  environment = { \"PYTHONDONTWRITEBYTECODE=1\", \"GUIDE_IMPORT_DELAY=3\" }\n"
		  "  overlap = 5\n"
		  "  drain-timeout = 40\n");
	assert_int_equal(upgrades_under_load(&b, 2), 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* docs/guides/python.md: socket from fd 3, READY=1 by hand. */
static void python_loses_no_request_over_upgrades(void **state)
{
	REQUIRE_PROGRAM("/usr/bin/python3");
	run_guide("  exec = { \"/usr/bin/python3\", \"" GUIDES_DIR "/server.py\" }\n"
		  "  workers = 2\n"
		  "  drain-timeout = 30\n",
		  2);
}

/* docs/guides/node.md: server.listen({fd: 3}); Node sends no READY=1 by
 * itself, so ready = immediate. */
static void node_loses_no_request_over_upgrades(void **state)
{
	REQUIRE_PROGRAM("/usr/bin/node");
	run_guide("  exec = { \"/usr/bin/node\", \"" GUIDES_DIR "/server.js\" }\n"
		  "  workers = 2\n"
		  "  ready = immediate\n"
		  "  drain-timeout = 30\n",
		  2);
}

/* docs/guides/go.md: os.NewFile(3) and net.FileListener; built here with the
 * Go toolchain into the test's directory. */
static void go_loses_no_request_over_upgrades(void **state)
{
	REQUIRE_PROGRAM("/usr/bin/go");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "cd " GUIDES_DIR " && GOCACHE=" GUIDES_BUILD_DIR
		 "/go-cache GOPATH=" GUIDES_BUILD_DIR
		 "/go GOFLAGS= GO111MODULE=off /usr/bin/go build -o " GUIDES_BUILD_DIR
		 "/goserver server.go");
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("%s: exit %d", cmd, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
	run_guide("  exec = { \"" GUIDES_BUILD_DIR "/goserver\" }\n"
		  "  workers = 2\n"
		  "  drain-timeout = 30\n",
		  2);
}

/* docs/guides/ready-immediate.md: a server that takes 3 s to start, longer
 * than the clients wait (loadgen: 2 s). With ready = immediate the old
 * generation drains while the new one is still starting, and requests time
 * out; with ready = notify the old one serves until READY=1, and none fails. */
static void slow_start_loses_requests_with_immediate_and_none_with_notify(void **state)
{
	REQUIRE_PROGRAM("/usr/bin/python3");
	static const char *const modes[] = {"immediate", "notify"};
	for (int i = 0; i < 2; i++) {
		struct batond b;
		char app[1024];
		snprintf(app, sizeof(app),
			 "  exec = { \"/usr/bin/python3\", \"" GUIDES_DIR "/server.py\" }\n"
			 "  environment = { \"GUIDE_START_DELAY=3\" }\n"
			 "  ready = %s\n"
			 "  drain-timeout = 30\n",
			 modes[i]);
		batond_prepare(&b);
		start_app(&b, app);
		long failed = upgrades_under_load(&b, 2);
		print_message("ready = %s: %ld requests failed over 2 upgrades\n", modes[i],
			      failed);
		if (i == 0)
			assert_true(failed > 0);
		else
			assert_int_equal(failed, 0);
		assert_int_equal(batond_stop(&b), 0);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    harness_test(gunicorn_loses_no_request_over_upgrades),
	    harness_test(overlap_covers_gunicorn_workers_that_boot_after_ready),
	    harness_test(python_loses_no_request_over_upgrades),
	    harness_test(node_loses_no_request_over_upgrades),
	    harness_test(go_loses_no_request_over_upgrades),
	    harness_test(slow_start_loses_requests_with_immediate_and_none_with_notify),
	};
	/* test_guides NAME: only the case whose name starts with NAME_. */
	if (argc > 1) {
		char pattern[128];
		snprintf(pattern, sizeof(pattern), "%s_*", argv[1]);
		cmocka_set_test_filter(pattern);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
