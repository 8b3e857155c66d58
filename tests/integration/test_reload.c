/* SPDX-License-Identifier: MIT */
/* batonctl reload under load: the configuration read again and applied, what
 * changed only; a file with errors changes nothing. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>

/* Round @i's configuration: workers alternate 2 and 3; listener "admin" and
 * app "api" (on it) come and go; app web's environment changes. */
static void write_round(struct batond *b, int i, int admin_port, const char *mode)
{
	char conf[2048];
	bool extra = (i / 2) % 2 == 1;
	int n = snprintf(conf, sizeof(conf),
			 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
			 "app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n"
			 "  mode = %s\n  workers = %d\n  environment = { \"ROUND=%d\" }\n}\n",
			 strcmp(mode, "dispatch") == 0 ? HELLO_PATH : TESTSRV_PATH, mode, 2 + i % 2,
			 (i / 3) % 2);
	if (extra)
		snprintf(conf + n, sizeof(conf) - (size_t)n,
			 "listener admin { address = \"tcp://127.0.0.1:%d\" }\n"
			 "app api {\n  exec = { \"%s\" }\n  listeners = { \"admin\" }\n}\n",
			 admin_port, TESTSRV_PATH);
	batond_write_config(b, conf);
}

/* The number of workers of app @name's serving generation that run or are
 * meant to (starting, ready, back-off), those a scale-down took away aside;
 * -1 without one. */
static int serving_workers(const struct batond *b, const char *name)
{
	struct json_object *st = status_json(b), *apps = json_object_object_get(st, "apps");
	int n = -1;
	for (size_t i = 0; i < json_object_array_length(apps); i++) {
		struct json_object *a = json_object_array_get_idx(apps, i);
		if (strcmp(json_object_get_string(json_object_object_get(a, "name")), name) != 0)
			continue;
		int serving = json_object_get_int(json_object_object_get(a, "serving"));
		struct json_object *gens = json_object_object_get(a, "generations");
		for (size_t g = 0; g < json_object_array_length(gens); g++) {
			struct json_object *gen = json_object_array_get_idx(gens, g);
			if (json_object_get_int(json_object_object_get(gen, "id")) != serving)
				continue;
			struct json_object *ws = json_object_object_get(gen, "workers");
			n = 0;
			for (size_t w = 0; w < json_object_array_length(ws); w++) {
				const char *state = json_object_get_string(json_object_object_get(
				    json_object_array_get_idx(ws, w), "state"));
				n += !strcmp(state, "starting") || !strcmp(state, "ready") ||
				     !strcmp(state, "backoff");
			}
		}
	}
	json_object_put(st);
	return n;
}

static bool has_listener(const struct batond *b, const char *name)
{
	struct json_object *st = status_json(b), *ls = json_object_object_get(st, "listeners");
	bool found = false;
	for (size_t i = 0; i < json_object_array_length(ls); i++)
		found |= strcmp(json_object_get_string(json_object_object_get(
				    json_object_array_get_idx(ls, i), "name")),
				name) == 0;
	json_object_put(st);
	return found;
}

static void twenty_reloads_under_load(const char *mode)
{
	struct batond b;
	batond_prepare(&b);
	int admin_port = free_port();
	write_round(&b, 0, admin_port, mode);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	char lg_out[400], out[4096];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);
	for (int i = 1; i <= 20; i++) {
		write_round(&b, i, admin_port, mode);
		if (batonctl(&b, out, sizeof(out), "reload", NULL) != 0) {
			batond_dump_log(&b);
			fail_msg("reload %d: %s", i, out);
		}
		/* Each change is visible in status. */
		bool extra = (i / 2) % 2 == 1;
		assert_int_equal(serving_workers(&b, "web"), 2 + i % 2);
		assert_int_equal(has_listener(&b, "admin"), extra);
		assert_int_equal(serving_workers(&b, "api") > 0, extra);
		if (extra) {
			char body[256];
			int port = b.port;
			b.port = admin_port;
			assert_int_equal(http_get(admin_port, body, sizeof(body)), 200);
			b.port = port;
		}
	}
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	assert_int_equal(batond_stop(&b), 0);
}

static void twenty_reloads_under_load_in_inherit_mode_fail_no_request(void **state)
{
	twenty_reloads_under_load("inherit");
}

static void twenty_reloads_under_load_in_dispatch_mode_fail_no_request(void **state)
{
	twenty_reloads_under_load("dispatch");
}

static void a_file_with_errors_changes_nothing(void **state)
{
	struct batond b;
	batond_prepare(&b);
	write_round(&b, 0, free_port(), "inherit");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	pid_t before[2], after[2];
	assert_int_equal(worker_pids(&b, "ready", before, 2), 2);
	FILE *f = fopen(b.conf, "ae");
	assert_non_null(f);
	fputs("app broken {\n  workers = banana\n}\n", f);
	fclose(f);
	char out[4096], want[400];
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 1);
	snprintf(want, sizeof(want), "%s:", b.conf);
	if (!strstr(out, want))
		fail_msg("no FILE:LINE in: %s", out);
	assert_int_equal(worker_pids(&b, "ready", after, 2), 2);
	assert_memory_equal(before, after, sizeof(before));
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	assert_int_equal(app_status(&b, "web", "upgrades"), 0);
	assert_int_equal(batond_stop(&b), 0);
}

static bool config_current(const struct batond *b, const char *app)
{
	struct json_object *st = status_json(b), *apps = json_object_object_get(st, "apps");
	bool current = false;
	for (size_t i = 0; i < json_object_array_length(apps); i++) {
		struct json_object *a = json_object_array_get_idx(apps, i);
		if (!strcmp(json_object_get_string(json_object_object_get(a, "name")), app))
			current =
			    json_object_get_boolean(json_object_object_get(a, "config_current"));
	}
	json_object_put(st);
	return current;
}

static void a_new_configuration_that_fails_to_start_leaves_the_previous_one_serving(void **state)
{
	struct batond b;
	batond_prepare(&b);
	write_round(&b, 0, free_port(), "inherit");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	assert_true(config_current(&b, "web"));
	char good[4096];
	FILE *f = fopen(b.conf, "re");
	assert_non_null(f);
	size_t n = fread(good, 1, sizeof(good) - 1, f);
	good[n] = 0;
	fclose(f);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"/nonexistent/web\" }\n"
				"  listeners = { \"http\" }\n  workers = 2\n}\n");
	char out[4096];
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 1);
	if (!strstr(out, "generation 1 still serving with its previous configuration"))
		fail_msg("unexpected reload output: %s", out);
	assert_false(config_current(&b, "web"));
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "gen=1 "));
	/* The file fixed: nothing to start, the app runs what the file says. */
	f = fopen(b.conf, "we");
	assert_non_null(f);
	fputs(good, f);
	fclose(f);
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 0);
	assert_true(config_current(&b, "web"));
	assert_int_equal(app_status(&b, "web", "serving"), 1);
	assert_int_equal(batond_stop(&b), 0);
}

static void scale_changes_the_workers_in_place_until_a_reload(void **state)
{
	struct batond b;
	batond_prepare(&b);
	write_round(&b, 0, free_port(), "inherit");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	pid_t first[2];
	assert_int_equal(worker_pids(&b, "ready", first, 2), 2);
	char lg_out[400], out[1024];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);
	assert_int_equal(batonctl(&b, out, sizeof(out), "scale", "web", "3", NULL), 0);
	assert_string_equal(out, "web: generation 1 runs 3 workers\n");
	assert_true(wait_workers(&b, "ready", 3, 10000));
	pid_t three[3];
	assert_int_equal(worker_pids(&b, "ready", three, 3), 3);
	assert_int_equal(three[0], first[0]); /* the same processes, one more */
	assert_int_equal(three[1], first[1]);
	assert_int_equal(batonctl(&b, out, sizeof(out), "scale", "web", "1", NULL), 0);
	assert_int_equal(serving_workers(&b, "web"), 1);
	/* The next upgrade keeps batonctl's count... */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	assert_int_equal(serving_workers(&b, "web"), 1);
	/* ...and a reload the file's, in place. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 0);
	assert_int_equal(serving_workers(&b, "web"), 2);
	assert_int_equal(app_status(&b, "web", "serving"), 2);
	assert_int_equal(batonctl(&b, out, sizeof(out), "scale", "web", "0", NULL), 1);
	assert_non_null(strstr(out, "from 1 to 1024"));
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_int_equal(batond_stop(&b), 0);
}

/* b->conf with the control section at @sock, mode @mode. */
static void write_control(const struct batond *b, const char *sock, const char *mode)
{
	FILE *f = fopen(b->conf, "we");
	assert_non_null(f);
	fprintf(f,
		"control {\n  socket = \"%s\"\n  mode = %s\n}\n"
		"listener http { address = \"tcp://127.0.0.1:%d\" }\n"
		"app web {\n  exec = { \"%s\" }\n  listeners = { \"http\" }\n}\n",
		sock, mode, b->port, TESTSRV_PATH);
	fclose(f);
}

/* A reload moves the control socket (bound first: a path in use changes
 * nothing) and applies a new mode in place; the workers serve on. */
static void a_reload_moves_the_control_socket(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	pid_t worker = app_worker_pid(&b, "web", 0);
	char old[300], moved[300], busy[300], out[2048];
	snprintf(old, sizeof(old), "%s", b.sock);
	snprintf(moved, sizeof(moved), "%s/sub/ctl.sock", b.dir);
	snprintf(busy, sizeof(busy), "%s/busy.sock", b.dir);
	write_control(&b, moved, "0660");
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 0);
	assert_int_equal(access(old, F_OK), -1);
	snprintf(b.sock, sizeof(b.sock), "%s", moved);
	struct stat st;
	assert_int_equal(stat(moved, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	/* The same path, another mode: in place. */
	write_control(&b, moved, "0600");
	assert_int_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 0);
	assert_int_equal(stat(moved, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* A path another process listens on: an error, and nothing changes. */
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(busy) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, busy, strlen(busy) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	write_control(&b, busy, "0600");
	assert_int_not_equal(batonctl(&b, out, sizeof(out), "reload", NULL), 0);
	char want[400];
	snprintf(want, sizeof(want), "control socket: %s is in use by a running batond", busy);
	if (!strstr(out, want))
		fail_msg("reload: %s", out);
	close(fd);
	assert_int_equal(batonctl(&b, out, sizeof(out), "status", NULL), 0);
	assert_int_equal(app_worker_pid(&b, "web", 0), worker);
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(twenty_reloads_under_load_in_inherit_mode_fail_no_request),
	    harness_test(twenty_reloads_under_load_in_dispatch_mode_fail_no_request),
	    harness_test(a_file_with_errors_changes_nothing),
	    harness_test(scale_changes_the_workers_in_place_until_a_reload),
	    harness_test(a_new_configuration_that_fails_to_start_leaves_the_previous_one_serving),
	    harness_test(a_reload_moves_the_control_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
