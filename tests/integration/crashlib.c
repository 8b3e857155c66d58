/* SPDX-License-Identifier: MIT */
/* Preloaded into a batond that is to crash while it restores a re-exec state
 * (test_reexec): its first parse of the state raises SIGSEGV. It leaves the
 * environment without itself, so the batond it falls back to runs clean. */
#include <signal.h>
#include <stdlib.h>

struct json_object;
struct json_tokener;

__attribute__((constructor)) static void crashlib_init(void)
{
	unsetenv("LD_PRELOAD");
}

struct json_object *json_tokener_parse_ex(struct json_tokener *tok, const char *str, int len)
{
	(void)tok;
	(void)str;
	(void)len;
	raise(SIGSEGV);
	return NULL;
}
