/* SPDX-License-Identifier: MIT */
/* batonctl as a person at a terminal meets it: an upgrade's progress while it
 * runs (one final line when not a terminal), and its bash completion
 * (supervisor/batonctl.bash), run by bash as on a Tab: commands, each
 * command's options, and the apps of the batond that -s names. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* The completions bash offers for the command line @words (the last one is
 * the word being completed, "" for a new one), one per line, in @out. */
static void complete(const char *words, char *out, size_t len)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "bash -c 'source " COMPLETION_PATH "; COMP_WORDS=(%s); "
		 "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _batonctl; "
		 "printf \"%%s\\n\" \"${COMPREPLY[@]}\"'",
		 words);
	FILE *p = popen(cmd, "re");
	assert_non_null(p);
	size_t n = fread(out, 1, len - 1, p);
	out[n] = 0;
	assert_int_equal(pclose(p), 0);
}

static void batonctl_completes_commands_options_and_the_running_apps(void **state)
{
	char out[1024];
	complete(BATONCTL_PATH " st", out, sizeof(out));
	assert_string_equal(out, "status\nstop\n");
	complete(BATONCTL_PATH " upgrade --w", out, sizeof(out));
	assert_string_equal(out, "--wait-drain\n");
	complete(BATONCTL_PATH " --ti", out, sizeof(out));
	assert_string_equal(out, "--timeout\n");

	struct batond b;
	batond_prepare(&b);
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n"
		"app api {\n  exec = { \"@TESTSRV@\" }\n  listeners = { \"http\" }\n}\n");
	batond_start(&b);
	char words[1024];
	snprintf(words, sizeof(words), BATONCTL_PATH " -s %s upgrade \"\"", b.sock);
	complete(words, out, sizeof(out));
	assert_string_equal(out, "web\napi\n");
	snprintf(words, sizeof(words), BATONCTL_PATH " --socket %s scale a", b.sock);
	complete(words, out, sizeof(out));
	assert_string_equal(out, "api\n");
	/* scale APP N: no app name for N. */
	snprintf(words, sizeof(words), BATONCTL_PATH " -s %s scale web \"\"", b.sock);
	complete(words, out, sizeof(out));
	assert_string_equal(out, "\n");
	assert_int_equal(batond_stop(&b), 0);

	/* No batond at the socket: no names, and no error on the terminal. */
	snprintf(words, sizeof(words), BATONCTL_PATH " -s /nonexistent/sock upgrade \"\"");
	complete(words, out, sizeof(out));
	assert_string_equal(out, "\n");
}

/* True if each of @want (NULL-terminated) starts a line of @text, in this
 * order. */
static bool lines_in_order(const char *text, const char *const *want)
{
	const char *p = text;
	for (; *want; want++) {
		const char *hit = strstr(p, *want);
		if (!hit || (hit != text && hit[-1] != '\n'))
			return false;
		p = hit + strlen(*want);
	}
	return true;
}

static void an_upgrade_shows_its_progress_on_a_terminal_and_one_line_elsewhere(void **state)
{
	struct batond b;
	batond_prepare(&b);
	/* Its workers take 1.5 s to be ready: a progress that batonctl sees. */
	batond_write_config(
	    &b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		"app web {\n  exec = { \"@TESTSRV@\", \"--ready-delay-ms\", \"1500\" }\n"
		"  listeners = { \"http\" }\n  workers = 2\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	/* script(1) gives batonctl a terminal. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "script -qec '" BATONCTL_PATH " -s %s upgrade --wait-drain web' /dev/null",
		 b.sock);
	FILE *p = popen(cmd, "re");
	assert_non_null(p);
	char out[4096];
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	assert_int_equal(pclose(p), 0);
	print_message("on a terminal:\n%s", out);
	const char *const progress[] = {
	    "web: generation 2 starting 2 workers...\r\n", "web: generation 2 ready\r\n",
	    "web: generation 1 drained\r\n", "web: generation 2 ready in ", NULL};
	assert_true(lines_in_order(out, progress));

	/* Not a terminal: the outcome alone, one line. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, "web: generation 3 ready in "));
	assert_non_null(strstr(out, "; generation 2 draining (drain-timeout 60 s)\n"));
	/* exactly one line */
	assert_true(strchr(out, '\n') == out + strlen(out) - 1);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(an_upgrade_shows_its_progress_on_a_terminal_and_one_line_elsewhere),
	    harness_test(batonctl_completes_commands_options_and_the_running_apps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
