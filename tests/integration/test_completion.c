/* SPDX-License-Identifier: MIT */
/* batonctl's bash completion (supervisor/batonctl.bash), run by bash as it
 * runs on a Tab: commands, each command's options, and the apps of the batond
 * that -s names, asked of that batond. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(batonctl_completes_commands_options_and_the_running_apps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
