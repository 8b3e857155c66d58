/* SPDX-License-Identifier: MIT */
/* config.c: every option read with its default, and every error reported as
 * FILE:LINE: message, word for word. Files live in a mkdtemp directory that is
 * the cwd during a test, so messages start with "batond.conf:". */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "leakcheck.h"

#define CONF "batond.conf"

static char tmp_dir[64];
static char old_cwd[PATH_MAX];

static int group_setup(void **state)
{
	strcpy(tmp_dir, "/tmp/baton-test-config-XXXXXX");
	if (!mkdtemp(tmp_dir) || !getcwd(old_cwd, sizeof(old_cwd)) || chdir(tmp_dir) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	unlink(CONF);
	if (chdir(old_cwd) < 0)
		return -1;
	return rmdir(tmp_dir);
}

static void write_conf_bytes(const char *text, size_t len)
{
	FILE *f = fopen(CONF, "we");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_conf(const char *text)
{
	write_conf_bytes(text, strlen(text));
}

/* Loads @text; returns config_load's result, the errors in *ret_errors. */
static int load(const char *text, struct config **ret, char **ret_errors)
{
	size_t len = 0;
	FILE *errors = open_memstream(ret_errors, &len);
	int r;

	assert_non_null(errors);
	write_conf(text);
	r = config_load(CONF, errors, ret);
	assert_int_equal(fclose(errors), 0);
	return r;
}

static struct config *load_ok(const char *text)
{
	struct config *cfg = NULL;
	char *errors = NULL;

	assert_int_equal(load(text, &cfg, &errors), 0);
	assert_string_equal(errors, "");
	free(errors);
	assert_non_null(cfg);
	return cfg;
}

static void assert_errors(const char *text, const char *expected)
{
	struct config *cfg = (struct config *)0x1;
	char *errors = NULL;

	assert_int_equal(load(text, &cfg, &errors), -EINVAL);
	assert_string_equal(errors, expected);
	assert_ptr_equal(cfg, (struct config *)0x1); /* untouched */
	free(errors);
}

#define APP_OK	    "app a { exec = { \"/bin/true\" } listeners = { \"l\" } }\n"
#define LISTENER_OK "listener l { address = \"tcp://127.0.0.1:8080\" }\n"

/* ---- what loads ---------------------------------------------------------- */

static void the_documented_example_config_loads(void **state)
{
	struct config *cfg = NULL;
	char *errors = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&errors, &len);

	assert_int_equal(config_load(BATON_SOURCE_DIR "/conf/batond.conf", out, &cfg), 0);
	fclose(out);
	assert_string_equal(errors, "");
	free(errors);
	assert_non_null(config_find_app(cfg, "web"));
	config_free(cfg);
}

static void omitted_options_take_their_defaults(void **state)
{
	struct config *cfg = load_ok(LISTENER_OK APP_OK);
	const struct listener_cfg *l = &cfg->listeners[0];
	const struct app_cfg *app = &cfg->apps[0];

	assert_string_equal(cfg->path, CONF);
	assert_string_equal(cfg->control_socket, "/run/baton/batond.sock");
	assert_int_equal(cfg->control_mode, 0600);
	assert_null(cfg->control_group);
	assert_int_equal(cfg->control_gid, (gid_t)-1);

	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(l->name, "l");
	assert_int_equal(l->line, 1);
	assert_string_equal(l->address, "tcp://127.0.0.1:8080");
	assert_int_equal(l->addr.family, AF_INET);
	assert_int_equal(l->backlog, 4096);
	assert_false(l->reuseport);
	assert_int_equal(l->mode, 0);
	assert_null(l->owner);
	assert_null(l->tag);

	assert_int_equal(cfg->n_apps, 1);
	assert_string_equal(app->name, "a");
	assert_int_equal(app->line, 2);
	assert_string_equal(app->argv[0], "/bin/true");
	assert_null(app->argv[1]);
	assert_int_equal(app->n_listeners, 1);
	assert_int_equal(app->listener_idx[0], 0);
	assert_int_equal(app->workers, 1);
	assert_int_equal(app->ready, READY_NOTIFY);
	assert_int_equal(app->ready_timeout_usec, 30000000);
	assert_int_equal(app->drain_timeout_usec, 60000000);
	assert_int_equal(app->stop_signal, SIGTERM);
	assert_int_equal(app->kill_mode, KILL_MIXED);
	assert_non_null(app->environment);
	assert_null(app->environment[0]);
	assert_int_equal(app->mode, SERVE_INHERIT);
	assert_int_equal(app->policy, POLICY_LEAST_LOADED);
	assert_int_equal(app->hold_max, 1024);
	assert_int_equal(app->hold_timeout_usec, 10000000);
	assert_int_equal(app->overlap_usec, 0);
	assert_int_equal(app->max_draining, 4);
	assert_int_equal(app->canary, 0);
	assert_int_equal(app->canary_usec, 0);
	assert_int_equal(app->probation_usec, 0);
	config_free(cfg);
}

/* The user and group this test runs as: names that exist wherever it runs. */
static void own_names(char *user, char *group, size_t size)
{
	struct passwd *pw = getpwuid(getuid());
	struct group *gr = getgrgid(getgid());

	assert_non_null(pw);
	assert_non_null(gr);
	snprintf(user, size, "%s", pw->pw_name);
	snprintf(group, size, "%s", gr->gr_name);
}

static void every_option_is_read(void **state)
{
	char user[64], group[64], text[1024], owner[160];
	struct config *cfg;
	const struct app_cfg *app;

	own_names(user, group, sizeof(user));
	snprintf(owner, sizeof(owner), "%s:%s", user, group);
	snprintf(text, sizeof(text),
		 "control { socket = \"/run/x/ctl.sock\" mode = 0660 group = \"%s\" }\n"
		 "listener http { address = \"tcp://127.0.0.1:8080\" backlog = 128\n"
		 "  reuseport = true tag = \"front\" }\n"
		 "listener admin { address = \"unix:/run/myapp/admin.sock\" mode = 0660\n"
		 "  owner = \"%s\" }\n"
		 "app web {\n"
		 "  exec = { \"/usr/local/bin/myapp\", \"--flag\" }\n"
		 "  listeners = { \"admin\", \"http\" }\n"
		 "  workers = 2\n"
		 "  ready = immediate\n"
		 "  ready-timeout = 0.5\n"
		 "  drain-timeout = 0\n"
		 "  stop-signal = \"SIGQUIT\"\n"
		 "  kill-mode = group\n"
		 "  environment = { \"FOO=bar\", \"EMPTY=\" }\n"
		 "  mode = dispatch\n"
		 "  policy = sticky\n"
		 "  hold-max = 0\n"
		 "  hold-timeout = 2.25\n"
		 "  overlap = 0.3\n"
		 "  max-draining = 1\n"
		 "  canary = 1\n"
		 "  canary-time = 60\n"
		 "  probation = 45\n"
		 "}\n",
		 group, owner);
	cfg = load_ok(text);
	app = config_find_app(cfg, "web");

	assert_string_equal(cfg->control_socket, "/run/x/ctl.sock");
	assert_int_equal(cfg->control_mode, 0660);
	assert_string_equal(cfg->control_group, group);
	assert_int_equal(cfg->control_gid, getgid());

	assert_int_equal(cfg->listeners[0].backlog, 128);
	assert_true(cfg->listeners[0].reuseport);
	assert_string_equal(cfg->listeners[0].tag, "front");
	assert_int_equal(cfg->listeners[1].line, 4);
	assert_int_equal(cfg->listeners[1].mode, 0660);
	assert_string_equal(cfg->listeners[1].owner, owner);
	assert_int_equal(cfg->listeners[1].addr.family, AF_UNIX);

	assert_non_null(app);
	assert_int_equal(app->line, 6);
	assert_string_equal(app->argv[0], "/usr/local/bin/myapp");
	assert_string_equal(app->argv[1], "--flag");
	assert_null(app->argv[2]);
	assert_int_equal(app->n_listeners, 2);
	assert_int_equal(app->listener_idx[0], 1); /* LISTEN_FDS order is the app's order */
	assert_int_equal(app->listener_idx[1], 0);
	assert_int_equal(app->workers, 2);
	assert_int_equal(app->ready, READY_IMMEDIATE);
	assert_int_equal(app->ready_timeout_usec, 500000);
	assert_int_equal(app->overlap_usec, 300000);
	assert_int_equal(app->max_draining, 1);
	assert_int_equal(app->canary, 1);
	assert_int_equal(app->canary_usec, 60000000);
	assert_int_equal(app->probation_usec, 45000000);
	assert_int_equal(app->drain_timeout_usec, 0);
	assert_int_equal(app->stop_signal, SIGQUIT);
	assert_int_equal(app->kill_mode, KILL_GROUP);
	assert_string_equal(app->environment[0], "FOO=bar");
	assert_string_equal(app->environment[1], "EMPTY=");
	assert_null(app->environment[2]);
	assert_int_equal(app->mode, SERVE_DISPATCH);
	assert_int_equal(app->policy, POLICY_STICKY);
	assert_int_equal(app->hold_max, 0);
	assert_int_equal(app->hold_timeout_usec, 2250000);
	assert_null(config_find_app(cfg, "nope"));
	config_free(cfg);
}

static void every_address_kind_is_accepted(void **state)
{
	struct config *cfg = load_ok("listener a { address = \"tcp://127.0.0.1:1\" }\n"
				     "listener b { address = \"tcp://[::1]:2\" }\n"
				     "listener c { address = \"tcp6://*:3\" }\n"
				     "listener d { address = \"udp://*:4\" }\n"
				     "listener e { address = \"udp6://[::]:5\" }\n"
				     "listener f { address = \"tcp://localhost:6\" }\n"
				     "listener g { address = \"unix:/run/g.sock\" }\n"
				     "listener h { address = \"unix:@baton-h\" }\n");
	const int families[] = {AF_INET,  AF_INET6, AF_INET6, AF_INET,
				AF_INET6, AF_INET,  AF_UNIX,  AF_UNIX};

	assert_int_equal(cfg->n_listeners, 8);
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(cfg->listeners[i].addr.family, families[i]);
	assert_int_equal(cfg->listeners[3].addr.socktype, SOCK_DGRAM);
	assert_true(cfg->listeners[7].addr.abstract);
	config_free(cfg);
}

static void each_stop_signal_name_is_accepted(void **state)
{
	static const struct {
		const char *name;
		int signo;
	} cases[] = {{"TERM", SIGTERM},	 {"INT", SIGINT},     {"QUIT", SIGQUIT},
		     {"HUP", SIGHUP},	 {"USR1", SIGUSR1},   {"USR2", SIGUSR2},
		     {"SIGINT", SIGINT}, {"sigusr2", SIGUSR2}};
	char text[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg;

		snprintf(text, sizeof(text),
			 LISTENER_OK "app a { exec = {\"/bin/true\"} listeners = {\"l\"} "
				     "stop-signal = \"%s\" }\n",
			 cases[i].name);
		cfg = load_ok(text);
		assert_int_equal(cfg->apps[0].stop_signal, cases[i].signo);
		config_free(cfg);
	}
}

static void an_empty_file_is_a_valid_config_with_no_apps(void **state)
{
	struct config *cfg = load_ok("");

	assert_int_equal(cfg->n_listeners, 0);
	assert_int_equal(cfg->n_apps, 0);
	assert_string_equal(cfg->control_socket, "/run/baton/batond.sock");
	config_free(cfg);
}

/* Comments anywhere, in lists too (libconfuse 3.3, the parser before, miscounted
 * lines after them and refused them in lists). */
static void comments_anywhere_keep_line_numbers_right(void **state)
{
	assert_errors("# one\n"
		      "//two, no space after the slashes\n"
		      "/* three\n"
		      "   four */\n"
		      "listener l { #five\n"
		      "  address = \"tcp://127.0.0.1:8080\" // six\n"
		      "}\n" APP_OK /* line 8 */
		      "app b {\n"
		      "  exec = { \"/bin/true\", # a comment in a list\n"
		      "           \"#not-a-comment\", \"//nor-this\" }\n"
		      "  listeners = { \"l\" } /* trailing */\n"
		      "  workers = many\n"
		      "}\n",
		      "batond.conf:13: app \"b\": workers: \"many\" is not a number\n");
}

/* ---- what is refused, word for word -------------------------------------- */

static void a_port_out_of_range_names_the_listener_and_address(void **state)
{
	assert_errors("\n\nlistener http {\n  address = \"tcp://1.2.3.4:99999\"\n}\n",
		      "batond.conf:4: listener \"http\": address \"tcp://1.2.3.4:99999\": port out "
		      "of range\n");
}

static void a_bad_address_is_explained(void **state)
{
	assert_errors(
	    "listener a { address = \"tcp://example.com:80\" }\n"
	    "listener b { address = \"tcp://::1:80\" }\n"
	    "listener c { address = \"http://127.0.0.1:80\" }\n"
	    "listener d { address = \"unix:run/d.sock\" }\n"
	    "listener e { address = \"tcp://127.0.0.1\" }\n",
	    "batond.conf:1: listener \"a\": address \"tcp://example.com:80\": \"example.com\" is "
	    "not a numeric IPv4 address (names are not resolved)\n"
	    "batond.conf:2: listener \"b\": address \"tcp://::1:80\": IPv6 address must be in "
	    "brackets, as [::1]:PORT\n"
	    "batond.conf:3: listener \"c\": address \"http://127.0.0.1:80\": unknown scheme "
	    "(expected tcp://, tcp6://, udp://, udp6:// or unix:)\n"
	    "batond.conf:4: listener \"d\": address \"unix:run/d.sock\": unix socket path must "
	    "be absolute\n"
	    "batond.conf:5: listener \"e\": address \"tcp://127.0.0.1\": missing port\n");
}

static void an_unknown_listener_in_an_app_is_reported_on_its_line(void **state)
{
	assert_errors(LISTENER_OK "app web {\n"
				  "  exec = { \"/bin/true\" }\n"
				  "  listeners = { \"l\",\n"
				  "    \"htp\" }\n"
				  "}\n",
		      "batond.conf:5: app \"web\": unknown listener \"htp\"\n");
}

static void a_duplicate_listener_names_where_it_was_first_defined(void **state)
{
	assert_errors("\nlistener http { address = \"tcp://127.0.0.1:1\" }\n\n\n"
		      "listener http { address = \"tcp://127.0.0.1:2\" }\n",
		      "batond.conf:5: duplicate listener \"http\" (first defined at line 2)\n");
}

static void a_duplicate_app_or_control_section_is_refused(void **state)
{
	assert_errors(LISTENER_OK APP_OK APP_OK "control { }\ncontrol { }\n",
		      "batond.conf:3: duplicate app \"a\" (first defined at line 2)\n"
		      "batond.conf:5: duplicate control section (first defined at line 4)\n");
}

static void a_relative_exec_path_is_refused(void **state)
{
	assert_errors(LISTENER_OK "app web {\n"
				  "  listeners = { \"l\" }\n"
				  "  exec = { \"bin/app\" }\n"
				  "}\n",
		      "batond.conf:4: app \"web\": exec: \"bin/app\" is not an absolute path\n");
}

static void an_app_needs_exec_and_a_listener(void **state)
{
	assert_errors("app web {\n}\napp two { exec = {} listeners = {} }\n",
		      "batond.conf:1: app \"web\": exec is required\n"
		      "batond.conf:1: app \"web\": listeners: at least one listener is required\n"
		      "batond.conf:3: app \"two\": exec is required\n"
		      "batond.conf:3: app \"two\": listeners: at least one listener is required\n");
}

static void a_listener_needs_an_address(void **state)
{
	assert_errors("listener l {\n  backlog = 5\n}\n",
		      "batond.conf:1: listener \"l\": address is required\n");
}

static void a_choice_outside_its_list_names_the_valid_ones(void **state)
{
	assert_errors(
	    LISTENER_OK "app web {\n"
			"  exec = { \"/bin/true\" } listeners = { \"l\" }\n"
			"  ready = \"maybe\"\n"
			"  mode = fork\n"
			"  policy = random\n"
			"  stop-signal = KILL\n"
			"  kill-mode = \"process\"\n"
			"}\n",
	    "batond.conf:4: app \"web\": ready: \"maybe\" is not one of notify, immediate\n"
	    "batond.conf:5: app \"web\": mode: \"fork\" is not one of inherit, dispatch\n"
	    "batond.conf:6: app \"web\": policy: \"random\" is not one of least-loaded, "
	    "round-robin, sticky\n"
	    "batond.conf:7: app \"web\": stop-signal: \"KILL\" is not one of TERM, INT, "
	    "QUIT, HUP, USR1, USR2\n"
	    "batond.conf:8: app \"web\": kill-mode: \"process\" is not one of mixed, group\n");
}

static void numbers_out_of_range_or_malformed_are_refused(void **state)
{
	assert_errors(
	    "listener l {\n"
	    "  address = \"tcp://127.0.0.1:80\"\n"
	    "  backlog = 0\n"
	    "  reuseport = maybe\n"
	    "}\n"
	    "app a {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l\" }\n"
	    "  workers = 1025\n"
	    "  hold-max = -1\n"
	    "  ready-timeout = 0\n"
	    "  drain-timeout = 1.\n"
	    "  hold-timeout = 31536001\n"
	    "  max-draining = 0\n"
	    "  overlap = -1\n"
	    "}\n",
	    "batond.conf:3: listener \"l\": backlog: 0 is out of range 1..2147483647\n"
	    "batond.conf:4: listener \"l\": reuseport: \"maybe\" is not one of true, false\n"
	    "batond.conf:8: app \"a\": workers: 1025 is out of range 1..1024\n"
	    "batond.conf:9: app \"a\": hold-max: \"-1\" is not a number\n"
	    "batond.conf:10: app \"a\": ready-timeout: 0 is out of range 0.000001..31536000 "
	    "seconds\n"
	    "batond.conf:11: app \"a\": drain-timeout: \"1.\" is not a number of seconds\n"
	    "batond.conf:12: app \"a\": hold-timeout: 31536001 is out of range "
	    "0.000001..31536000 seconds\n"
	    "batond.conf:13: app \"a\": max-draining: 0 is out of range 1..1024\n"
	    "batond.conf:14: app \"a\": overlap: \"-1\" is not a number of seconds\n");
}

static void a_canary_must_be_fewer_workers_than_the_app_has(void **state)
{
	assert_errors("listener l { address = \"tcp://127.0.0.1:80\" }\n"
		      "app a {\n"
		      "  exec = { \"/bin/true\" } listeners = { \"l\" }\n"
		      "  workers = 2\n"
		      "  canary = 2\n"
		      "}\n"
		      "app b {\n"
		      "  exec = { \"/bin/true\" } listeners = { \"l\" }\n"
		      "  canary-time = 30\n"
		      "}\n",
		      "batond.conf:5: app \"a\": canary: 2 workers is not fewer than workers (2): "
		      "a canary is a part of a generation\n"
		      "batond.conf:9: app \"b\": canary-time: set canary too\n");
}

static void a_health_check_is_one_probe_that_can_reach_one_generation(void **state)
{
	assert_errors(
	    "listener l1 { address = \"tcp://127.0.0.1:8080\" }\n"
	    "listener l2 { address = \"tcp://127.0.0.1:8081\" }\n"
	    "listener l3 { address = \"tcp://*:9090\" }\n"
	    "listener l4 { address = \"tcp://*:9091\" }\n"
	    "listener l5 { address = \"tcp://*:9092\" }\n"
	    "app inherit {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l1\" }\n"
	    "  health-url = \"http://127.0.0.1:8080/healthz\"\n"
	    "}\n"
	    "app both {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l2\" } mode = dispatch\n"
	    "  health-exec = { \"check\" }\n"
	    "  health-url = \"http://127.0.0.1:8081/\"\n"
	    "}\n"
	    "app elsewhere {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l3\" } mode = dispatch\n"
	    "  health-url = \"http://127.0.0.1:8080/healthz\"\n"
	    "  health-failures = 0\n"
	    "}\n"
	    "app bad {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l4\" } mode = dispatch\n"
	    "  health-url = \"https://127.0.0.1:9091/\"\n"
	    "  health-interval = 5\n"
	    "}\n"
	    "app alone {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l1\" }\n"
	    "  health-interval = 5\n"
	    "}\n"
	    "app fine {\n"
	    "  exec = { \"/bin/true\" } listeners = { \"l5\" } mode = dispatch\n"
	    "  health-url = \"http://127.0.0.1:9092\"\n"
	    "}\n",
	    "batond.conf:8: app \"inherit\": health-url needs mode = dispatch: in inherit "
	    "mode every generation accepts on the same listener, and a probe cannot "
	    "choose one (use health-exec, which gets BATON_WORKER_PIDS)\n"
	    "batond.conf:12: app \"both\": health-exec: \"check\" is not an absolute path\n"
	    "batond.conf:13: app \"both\": health-url: health-exec is set too (line 12): use "
	    "one\n"
	    "batond.conf:17: app \"elsewhere\": health-url \"http://127.0.0.1:8080/healthz\": "
	    "127.0.0.1:8080 is not the address of one of the app's tcp listeners\n"
	    "batond.conf:18: app \"elsewhere\": health-failures: 0 is out of range 1..1000\n"
	    "batond.conf:22: app \"bad\": health-url \"https://127.0.0.1:9091/\": expected "
	    "http://HOST:PORT/PATH\n"
	    "batond.conf:27: app \"alone\": health-interval: set health-exec or health-url "
	    "too\n");
}

static void names_that_cannot_go_into_listen_fdnames_are_refused(void **state)
{
	assert_errors("listener \"a:b\" { address = \"tcp://127.0.0.1:80\" }\n"
		      "app "
		      "x123456789x123456789x123456789x123456789x123456789x123456789x1234 {\n"
		      "  exec = { \"/bin/true\" } listeners = { \"a:b\" }\n"
		      "}\n",
		      "batond.conf:1: listener \"a:b\": name must be 1 to 64 characters of A-Z a-z "
		      "0-9 _ . -\n"
		      "batond.conf:2: app "
		      "\"x123456789x123456789x123456789x123456789x123456789x123456789x1234\": name "
		      "must be 1 to 64 characters of A-Z a-z 0-9 _ . -\n");
}

static void a_udp_listener_in_a_dispatch_app_is_refused(void **state)
{
	assert_errors(
	    "listener dns { address = \"udp://127.0.0.1:53\" }\n"
	    "app d {\n"
	    "  exec = { \"/bin/true\" }\n"
	    "  listeners = { \"dns\" }\n"
	    "  mode = dispatch\n"
	    "}\n",
	    "batond.conf:5: app \"d\": listener \"dns\" is udp, and udp is not dispatched "
	    "(use mode = inherit)\n");
}

static void unix_only_options_on_a_tcp_listener_are_refused(void **state)
{
	assert_errors("listener t {\n"
		      "  address = \"tcp://127.0.0.1:80\"\n"
		      "  mode = 0660\n"
		      "  owner = \"www-data\"\n"
		      "}\n"
		      "listener u {\n"
		      "  address = \"unix:@abstract\"\n"
		      "  reuseport = true\n"
		      "  mode = 0999\n"
		      "  owner = \"a:b:c\"\n"
		      "}\n",
		      "batond.conf:3: listener \"t\": mode applies only to unix socket paths\n"
		      "batond.conf:4: listener \"t\": owner applies only to unix socket paths\n"
		      "batond.conf:8: listener \"u\": reuseport applies only to tcp and udp "
		      "listeners\n"
		      "batond.conf:9: listener \"u\": mode: \"0999\" is not an octal file mode\n"
		      "batond.conf:9: listener \"u\": mode applies only to unix socket paths\n"
		      "batond.conf:10: listener \"u\": owner: \"a:b:c\" is not USER, USER:GROUP or "
		      ":GROUP\n"
		      "batond.conf:10: listener \"u\": owner applies only to unix socket paths\n");
}

static void two_listeners_on_one_address_are_refused(void **state)
{
	assert_errors(
	    "listener a { address = \"tcp://127.0.0.1:80\" }\n"
	    "listener b { address = \"tcp://127.0.0.1:80\" }\n"
	    "listener c { address = \"udp://127.0.0.1:80\" }\n",
	    "batond.conf:2: listener \"b\": address \"tcp://127.0.0.1:80\" is also used by "
	    "listener \"a\" (line 1)\n");
}

static void environment_entries_must_be_name_value_and_not_batonds(void **state)
{
	assert_errors(LISTENER_OK "app a {\n"
				  "  exec = { \"/bin/true\" } listeners = { \"l\" }\n"
				  "  environment = { \"OK=1\",\n"
				  "    \"NOEQUALS\",\n"
				  "    \"LISTEN_FDS=3\", \"BATON_APP=x\" }\n"
				  "}\n",
		      "batond.conf:5: app \"a\": environment: \"NOEQUALS\" is not NAME=VALUE\n"
		      "batond.conf:6: app \"a\": environment: \"LISTEN_FDS\" is set by batond\n"
		      "batond.conf:6: app \"a\": environment: \"BATON_APP\" is set by batond\n");
}

static void a_bad_control_section_is_refused(void **state)
{
	assert_errors(
	    "control {\n"
	    "  socket = \"run/batond.sock\"\n"
	    "  mode = rw\n"
	    "  group = \"\"\n"
	    "}\n",
	    "batond.conf:2: control: socket: \"run/batond.sock\" is not an absolute path\n"
	    "batond.conf:3: control: mode: \"rw\" is not an octal file mode\n"
	    "batond.conf:4: control: group: \"\" is not a group name\n");
}

static void an_unknown_option_is_reported_with_its_line(void **state)
{
	assert_errors("listener l {\n"
		      "  address = \"tcp://127.0.0.1:80\"\n"
		      "  backlgo = 5\n"
		      "}\n",
		      "batond.conf:3: listener \"l\": unknown option \"backlgo\"\n");
	assert_errors("\nfrobnicate = 1\n", "batond.conf:2: unknown option \"frobnicate\"\n");
	/* and the reading goes on after it */
	assert_errors("listener l {\n"
		      "  address = \"tcp://127.0.0.1:80\"\n"
		      "  backlgo = 5\n"
		      "  backlog = 0\n"
		      "}\n",
		      "batond.conf:3: listener \"l\": unknown option \"backlgo\"\n"
		      "batond.conf:4: listener \"l\": backlog: 0 is out of range 1..2147483647\n");
}

static void a_syntax_error_is_reported_with_its_line(void **state)
{
	assert_errors(
	    LISTENER_OK "app a {\n  exec = { \"/bin/true\"\n  listeners = { \"l\" } }\n}\n",
	    "batond.conf:4: app \"a\": exec: unexpected 'listeners', expected ',' or '}'\n");
	assert_errors(LISTENER_OK "app a {\n  exec = { \"/bin/true\" }\n  listeners = { \"l\" }\n",
		      "batond.conf:2: app \"a\": missing '}' at the end of the section\n");
	assert_errors("/* never closed\n\n", "batond.conf:1: unterminated comment\n");
	assert_errors("listener a {\n  address = \"tcp://127.0.0.1:1\"\napp b {\n}\n",
		      "batond.conf:3: listener \"a\": missing '}' before app \"b\"\n");
	assert_errors("app a {\n  workers 2\n}\n",
		      "batond.conf:2: app \"a\": unexpected '2', expected '=' after 'workers'\n");
	assert_errors("\n}\n", "batond.conf:2: unexpected '}': no section is open\n");
	assert_errors("app a {\n  exec = \"/bin/true\n}\n",
		      "batond.conf:2: app \"a\": exec: unterminated string\n");
	assert_errors("\n'timeout\\\\", "batond.conf:2: unterminated string\n"); /* fuzz_config */
	assert_errors("app a {\n  exec = { \"\\8\" }\n}\n",
		      "batond.conf:2: app \"a\": exec: bad escape sequence '\\8'\n");
	assert_errors(
	    "listener l { address = \"tcp://127.0.0.1:1\" * }\n",
	    "batond.conf:1: listener \"l\": unexpected '*', expected a name or a value\n");
	assert_errors("listener l {\n  backlog =\n}\n",
		      "batond.conf:3: listener \"l\": backlog: unexpected '}', expected a value\n");
	assert_errors("listener l {\n  backlog = 1", "batond.conf:1: listener \"l\": missing '}' "
						     "at the end of the section\n");
}

static void sections_must_be_known_and_named_as_their_kind_requires(void **state)
{
	assert_errors("frobs x { }\n"
		      "listener { address = \"tcp://127.0.0.1:1\" }\n"
		      "control main { }\n"
		      "app a { workers = { \"1\", \"2\" } }\n",
		      "batond.conf:1: unknown section \"frobs\"\n"
		      "batond.conf:2: listener: a name is required: listener NAME { ... }\n"
		      "batond.conf:3: control \"main\": the control section has no name\n"
		      "batond.conf:4: app \"a\": workers: takes one value, not a list\n"
		      "batond.conf:4: app \"a\": exec is required\n"
		      "batond.conf:4: app \"a\": listeners: at least one listener is required\n");
}

static void a_metrics_section_gives_the_address_to_serve_metrics_on(void **state)
{
	struct config *cfg =
	    load_ok(LISTENER_OK "metrics {\n  address = \"tcp://127.0.0.1:9187\"\n}\n");

	assert_string_equal(cfg->metrics_address, "tcp://127.0.0.1:9187");
	assert_int_equal(cfg->metrics_addr.family, AF_INET);
	assert_int_equal(cfg->metrics_addr.socktype, SOCK_STREAM);
	assert_int_equal(cfg->metrics_line, 2);
	config_free(cfg);
	cfg = load_ok(LISTENER_OK "metrics { address = \"tcp://[::1]:9187\" }\n");
	assert_int_equal(cfg->metrics_addr.family, AF_INET6);
	config_free(cfg);
	/* Without the section, no metrics server. */
	cfg = load_ok(LISTENER_OK);
	assert_null(cfg->metrics_address);
	config_free(cfg);
}

static void a_bad_metrics_section_is_refused_with_file_and_line(void **state)
{
	assert_errors(LISTENER_OK
		      "metrics {\n  address = \"udp://127.0.0.1:9187\"\n  path = \"/m\"\n}\n",
		      "batond.conf:3: metrics: address \"udp://127.0.0.1:9187\": metrics are "
		      "served over tcp only\n"
		      "batond.conf:4: metrics: unknown option \"path\"\n");
	assert_errors("metrics { address = \"unix:/run/m.sock\" }\n",
		      "batond.conf:1: metrics: address \"unix:/run/m.sock\": metrics are served "
		      "over tcp only\n");
	assert_errors("metrics { address = \"tcp://127.0.0.1:99999\" }\n",
		      "batond.conf:1: metrics: address \"tcp://127.0.0.1:99999\": port out of "
		      "range\n");
	assert_errors("metrics { }\nmetrics m { }\nmetrics { address = \"tcp://127.0.0.1:1\" }\n",
		      "batond.conf:1: metrics: address is required\n"
		      "batond.conf:2: metrics \"m\": the metrics section has no name\n"
		      "batond.conf:3: duplicate metrics section (first defined at line 1)\n");
	assert_errors(LISTENER_OK "metrics {\n  address = \"tcp://127.0.0.1:8080\"\n}\n",
		      "batond.conf:3: metrics: address \"tcp://127.0.0.1:8080\" is also used by "
		      "listener \"l\" (line 1)\n");
}

/* As libconfuse read them: C escapes and ${} in "...", only \\ and \' in
 * '...', '//' inside an unquoted value, a backslash-newline joining lines. */
static void strings_are_read_as_before(void **state)
{
	static const char text[] =
	    LISTENER_OK "app a {\n"
			"  exec = { /usr/bin/x//y, 'a\\'b\\\\c\\d',\n"
			"    \"t\\tx\\x41\\101\\$\\\"q\", \"two\\\nlines\",\n"
			"    \"multi\nline\" }\n"
			"  listeners = \"l\"\n";
	struct config *cfg;
	char buf[512];

	snprintf(buf, sizeof(buf), "%s}\n", text);
	cfg = load_ok(buf);
	assert_string_equal(cfg->apps[0].argv[0], "/usr/bin/x//y");
	assert_string_equal(cfg->apps[0].argv[1], "a'b\\c\\d");
	assert_string_equal(cfg->apps[0].argv[2], "t\txAA$\"q");
	assert_string_equal(cfg->apps[0].argv[3], "twolines");
	assert_string_equal(cfg->apps[0].argv[4], "multi\nline");
	assert_null(cfg->apps[0].argv[5]);
	config_free(cfg);

	/* Lines are counted through all of it; a value is quoted on one line. */
	snprintf(buf, sizeof(buf), "%s  workers = \"1\\n2\"\n}\n", text);
	assert_errors(buf, "batond.conf:9: app \"a\": workers: \"1\\n2\" is not a number\n");
}

static void every_error_is_reported_not_only_the_first(void **state)
{
	assert_errors("listener a { address = \"tcp://127.0.0.1:0\" }\n"
		      "listener b { address = \"unix:@\" }\n"
		      "app x { exec = { \"x\" } listeners = { \"a\", \"zz\" } workers = 0 }\n",
		      "batond.conf:1: listener \"a\": address \"tcp://127.0.0.1:0\": port out of "
		      "range\n"
		      "batond.conf:2: listener \"b\": address \"unix:@\": missing socket path\n"
		      "batond.conf:3: app \"x\": exec: \"x\" is not an absolute path\n"
		      "batond.conf:3: app \"x\": unknown listener \"zz\"\n"
		      "batond.conf:3: app \"x\": workers: 0 is out of range 1..1024\n");
}

/* Issue 12: the last of two values used to win, and an invalid first one was
 * never reported. */
static void an_option_set_twice_is_refused_at_its_second_line(void **state)
{
	assert_errors("control {\n"
		      "  mode = 0600\n"
		      "  mode = 0666\n"
		      "}\n"
		      "listener l {\n"
		      "  address = \"tcp://127.0.0.1:8080\"\n"
		      "  backlog = 16\n"
		      "  tag = \"a\" backlog = 32\n"
		      "}\n"
		      "app web {\n"
		      "  exec = { \"relative\" }\n"
		      "  listeners = { \"l\" }\n"
		      "  workers = banana\n"
		      "  exec = { \"/bin/true\" }\n"
		      "  workers = 2\n"
		      "  environment = { \"A=1\" }\n"
		      "  environment = { \"B=2\" }\n"
		      "}\n",
		      "batond.conf:3: control: mode is set twice (first at line 2)\n"
		      "batond.conf:8: listener \"l\": backlog is set twice (first at line 7)\n"
		      "batond.conf:11: app \"web\": exec: \"relative\" is not an absolute path\n"
		      "batond.conf:13: app \"web\": workers: \"banana\" is not a number\n"
		      "batond.conf:14: app \"web\": exec is set twice (first at line 11)\n"
		      "batond.conf:15: app \"web\": workers is set twice (first at line 13)\n"
		      "batond.conf:17: app \"web\": environment is set twice (first at line 16)\n");
}

static void an_option_set_twice_in_one_line_or_with_equal_values_is_refused(void **state)
{
	assert_errors(LISTENER_OK "app a { exec = { \"/bin/true\" } listeners = { \"l\" } "
				  "ready = notify ready = notify }\n"
				  "listener m { address = \"tcp://127.0.0.1:1\"\n"
				  "  address = \"tcp://127.0.0.1:1\" }\n",
		      "batond.conf:2: app \"a\": ready is set twice (first at line 2)\n"
		      "batond.conf:4: listener \"m\": address is set twice (first at line 3)\n");
}

static void a_list_is_extended_with_plus_equal_but_a_value_is_not(void **state)
{
	struct config *cfg = load_ok(LISTENER_OK "listener m { address = \"tcp://127.0.0.1:1\" }\n"
						 "app a {\n"
						 "  exec = { \"/bin/true\" }\n"
						 "  exec += { \"-x\" }\n"
						 "  listeners += \"l\"\n"
						 "  listeners += { \"m\" }\n"
						 "  environment = { \"A=1\" }\n"
						 "  environment += { \"B=2\", \"C=3\" }\n"
						 "}\n");
	const struct app_cfg *app = &cfg->apps[0];

	assert_string_equal(app->argv[0], "/bin/true");
	assert_string_equal(app->argv[1], "-x");
	assert_null(app->argv[2]);
	assert_int_equal(app->n_listeners, 2);
	assert_int_equal(app->listener_idx[1], 1);
	assert_string_equal(app->environment[2], "C=3");
	assert_null(app->environment[3]);
	config_free(cfg);

	assert_errors(LISTENER_OK "app a {\n"
				  "  exec = { \"/bin/true\" } listeners = { \"l\" }\n"
				  "  workers += 2\n"
				  "  exec += { \"-x\" }\n"
				  "  exec = { \"/bin/false\" }\n"
				  "}\n",
		      "batond.conf:4: app \"a\": workers: += extends lists only; write workers = "
		      "VALUE\n"
		      "batond.conf:6: app \"a\": exec is set twice (first at line 3)\n");
}

/* Issue 12: this used to be "batond.conf: cannot be parsed", with no line. */
static void an_unquoted_variable_where_an_option_belongs_names_its_line(void **state)
{
	unsetenv("BATON_TEST_UNSET");
	assert_errors(
	    "# ${X} stands where an option name belongs\n"
	    "listener http { address = \"tcp://127.0.0.1:8080\" ${BATON_TEST_UNSET} }\n",
	    "batond.conf:2: listener \"http\": unexpected '${BATON_TEST_UNSET}', expected "
	    "an option name (${NAME} is replaced in values only)\n");
}

static void variables_in_values_are_replaced_from_the_environment(void **state)
{
	struct config *cfg;

	unsetenv("BATON_TEST_UNSET");
	setenv("BATON_TEST_WORKERS", "3", 1);
	cfg = load_ok(LISTENER_OK "app a {\n"
				  "  exec = { \"${BATON_TEST_UNSET:-/bin/true}\", "
				  "\"--n=${BATON_TEST_WORKERS}\", \"\\${HOME}\" }\n"
				  "  listeners = { \"l\" }\n"
				  "  workers = ${BATON_TEST_WORKERS}\n"
				  "}\n");
	assert_string_equal(cfg->apps[0].argv[0], "/bin/true");
	assert_string_equal(cfg->apps[0].argv[1], "--n=3");
	assert_string_equal(cfg->apps[0].argv[2], "${HOME}");
	assert_int_equal(cfg->apps[0].workers, 3);
	config_free(cfg);
	unsetenv("BATON_TEST_WORKERS");
}

/* Issue 12: this used to be "batond.conf: contains a NUL byte", with no line. */
static void a_nul_byte_is_reported_on_its_line(void **state)
{
	static const char text[] = LISTENER_OK "\n  \0 app a { }\n";
	struct config *cfg = (struct config *)0x1;
	char *errors = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&errors, &len);

	write_conf_bytes(text, sizeof(text) - 1);
	assert_int_equal(config_load(CONF, out, &cfg), -EINVAL);
	fclose(out);
	assert_string_equal(errors, "batond.conf:3: contains a NUL byte\n");
	assert_ptr_equal(cfg, (struct config *)0x1);
	free(errors);
}

/* Issue 12: --check said ok, and batond then failed to start with
 * "control: group "baton" not found", with no line. */
static void a_control_group_that_does_not_exist_is_refused_at_load(void **state)
{
	assert_errors(
	    "control {\n"
	    "  socket = \"/run/x.sock\"\n"
	    "  group = \"baton-no-such-group-7f3e\"\n"
	    "}\n",
	    "batond.conf:3: control: group: no such group \"baton-no-such-group-7f3e\"\n");
}

static void a_listener_owner_that_does_not_exist_is_refused_at_load(void **state)
{
	assert_errors(
	    "listener u {\n"
	    "  address = \"unix:/run/u.sock\"\n"
	    "  owner = \"baton-no-such-user-7f3e:baton-no-such-group-7f3e\"\n"
	    "}\n"
	    "listener v {\n"
	    "  address = \"unix:/run/v.sock\"\n"
	    "  owner = \":baton-no-such-group-7f3e\"\n"
	    "}\n",
	    "batond.conf:3: listener \"u\": owner: no such user \"baton-no-such-user-7f3e\"\n"
	    "batond.conf:3: listener \"u\": owner: no such group "
	    "\"baton-no-such-group-7f3e\"\n"
	    "batond.conf:7: listener \"v\": owner: no such group "
	    "\"baton-no-such-group-7f3e\"\n");
}

/* batond failed at start, after binding, with a path --check took: the notify
 * socket goes beside the control socket (SOCKET.notify/notify), and one per
 * app user (SOCKET.notify/notify-UID). */
static void a_control_socket_too_long_for_the_notify_socket_beside_it_is_refused(void **state)
{
	char text[512], want[512];
	struct config *cfg;

	/* 93 bytes fit: with ".notify/notify", 107, all that sun_path holds. */
	snprintf(text, sizeof(text), "control {\n  socket = \"/%0*d\"\n}\n", 92, 0);
	cfg = load_ok(text);
	config_free(cfg);

	snprintf(text, sizeof(text), "control {\n  socket = \"/%0*d\"\n}\n", 93, 0);
	snprintf(want, sizeof(want),
		 "batond.conf:2: control: socket: notify socket /%0*d.notify/notify: path too long "
		 "(108 bytes, at most 107): the control socket's path must be at most 93 bytes\n",
		 93, 0);
	assert_errors(text, want);
}

static void a_control_socket_too_long_for_an_app_users_notify_socket_is_refused(void **state)
{
	char text[1024], want[512];
	struct config *cfg;

	/* uid 4242: SOCKET.notify/notify-4242 fits in 107 bytes up to an 88-byte SOCKET. */
	snprintf(text, sizeof(text),
		 "control {\n  socket = \"/%0*d\"\n}\n" LISTENER_OK
		 "app a { exec = { \"/bin/true\" } listeners = { \"l\" } user = 4242 }\n",
		 87, 0);
	cfg = load_ok(text);
	config_free(cfg);

	snprintf(text, sizeof(text),
		 "control {\n  socket = \"/%0*d\"\n}\n" LISTENER_OK
		 "app a { exec = { \"/bin/true\" } listeners = { \"l\" } user = 4242 }\n",
		 88, 0);
	snprintf(want, sizeof(want),
		 "batond.conf:2: control: socket: notify socket /%0*d.notify/notify-4242 of app "
		 "\"a\" (uid 4242): path too long (108 bytes, at most 107)\n",
		 88, 0);
	assert_errors(text, want);
}

static void cgroup_limits_and_notify_access_are_read(void **state)
{
	struct config *cfg = load_ok(LISTENER_OK APP_OK);

	assert_false(cfg->apps[0].memory_max.set);
	assert_false(cfg->apps[0].tasks_max.set);
	assert_int_equal(cfg->apps[0].cpu_weight, 0);
	assert_int_equal(cfg->apps[0].notify_access, NOTIFY_MAIN);
	config_free(cfg);
	cfg = load_ok(LISTENER_OK "app a { exec = { \"/bin/true\" } listeners = { \"l\" }\n"
				  "  memory-max = 512M tasks-max = 64 cpu-weight = 250\n"
				  "  notify-access = all }\n"
				  "app b { exec = { \"/bin/true\" } listeners = { \"l\" }\n"
				  "  memory-max = infinity tasks-max = infinity }\n");
	assert_true(cfg->apps[0].memory_max.set);
	assert_int_equal(cfg->apps[0].memory_max.value, 512ULL << 20);
	assert_int_equal(cfg->apps[0].tasks_max.value, 64);
	assert_int_equal(cfg->apps[0].cpu_weight, 250);
	assert_int_equal(cfg->apps[0].notify_access, NOTIFY_ALL);
	assert_int_equal(cfg->apps[1].memory_max.value, RLIM_INFINITY);
	assert_int_equal(cfg->apps[1].tasks_max.value, RLIM_INFINITY);
	config_free(cfg);
	assert_errors(
	    LISTENER_OK "app a { exec = { \"/bin/true\" } listeners = { \"l\" }\n"
			"  memory-max = 12Q\n  cpu-weight = 0\n  notify-access = some\n}\n",
	    "batond.conf:3: app \"a\": memory-max: \"12Q\" is not a size (bytes, or a "
	    "number with K, M, G or T) or infinity\n"
	    "batond.conf:4: app \"a\": cpu-weight: 0 is out of range 1..10000\n"
	    "batond.conf:5: app \"a\": notify-access: \"some\" is not one of main, all\n");
}

static void a_read_group_is_looked_up_as_the_group_is(void **state)
{
	struct config *cfg = load_ok("control {\n  read-group = \"root\"\n}\n");

	assert_string_equal(cfg->control_read_group, "root");
	assert_int_equal(cfg->control_read_gid, 0);
	assert_int_equal(cfg->control_gid, (gid_t)-1);
	config_free(cfg);
	assert_errors("control {\n  read-group = \"no-such-group-here\"\n}\n",
		      "batond.conf:2: control: read-group: no such group \"no-such-group-here\"\n");
}

static void a_missing_file_is_reported_with_its_errno(void **state)
{
	struct config *cfg = (struct config *)0x1;
	char *errors = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&errors, &len);

	assert_int_equal(config_load("missing.conf", out, &cfg), -ENOENT);
	fclose(out);
	assert_string_equal(errors, "missing.conf: No such file or directory\n");
	assert_ptr_equal(cfg, (struct config *)0x1);
	free(errors);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, leakcheck_setup, leakcheck_teardown)
	const struct CMUnitTest tests[] = {
	    T(the_documented_example_config_loads),
	    T(cgroup_limits_and_notify_access_are_read),
	    T(a_read_group_is_looked_up_as_the_group_is),
	    T(omitted_options_take_their_defaults),
	    T(every_option_is_read),
	    T(every_address_kind_is_accepted),
	    T(each_stop_signal_name_is_accepted),
	    T(an_empty_file_is_a_valid_config_with_no_apps),
	    T(comments_anywhere_keep_line_numbers_right),
	    T(a_port_out_of_range_names_the_listener_and_address),
	    T(a_bad_address_is_explained),
	    T(an_unknown_listener_in_an_app_is_reported_on_its_line),
	    T(a_duplicate_listener_names_where_it_was_first_defined),
	    T(a_duplicate_app_or_control_section_is_refused),
	    T(a_relative_exec_path_is_refused),
	    T(an_app_needs_exec_and_a_listener),
	    T(a_listener_needs_an_address),
	    T(a_choice_outside_its_list_names_the_valid_ones),
	    T(numbers_out_of_range_or_malformed_are_refused),
	    T(a_canary_must_be_fewer_workers_than_the_app_has),
	    T(a_health_check_is_one_probe_that_can_reach_one_generation),
	    T(names_that_cannot_go_into_listen_fdnames_are_refused),
	    T(a_udp_listener_in_a_dispatch_app_is_refused),
	    T(unix_only_options_on_a_tcp_listener_are_refused),
	    T(two_listeners_on_one_address_are_refused),
	    T(environment_entries_must_be_name_value_and_not_batonds),
	    T(a_bad_control_section_is_refused),
	    T(an_unknown_option_is_reported_with_its_line),
	    T(a_syntax_error_is_reported_with_its_line),
	    T(sections_must_be_known_and_named_as_their_kind_requires),
	    T(a_metrics_section_gives_the_address_to_serve_metrics_on),
	    T(a_bad_metrics_section_is_refused_with_file_and_line),
	    T(strings_are_read_as_before),
	    T(every_error_is_reported_not_only_the_first),
	    T(an_option_set_twice_is_refused_at_its_second_line),
	    T(an_option_set_twice_in_one_line_or_with_equal_values_is_refused),
	    T(a_list_is_extended_with_plus_equal_but_a_value_is_not),
	    T(an_unquoted_variable_where_an_option_belongs_names_its_line),
	    T(variables_in_values_are_replaced_from_the_environment),
	    T(a_nul_byte_is_reported_on_its_line),
	    T(a_control_group_that_does_not_exist_is_refused_at_load),
	    T(a_listener_owner_that_does_not_exist_is_refused_at_load),
	    T(a_control_socket_too_long_for_the_notify_socket_beside_it_is_refused),
	    T(a_control_socket_too_long_for_an_app_users_notify_socket_is_refused),
	    T(a_missing_file_is_reported_with_its_errno),
	};
#undef T
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
