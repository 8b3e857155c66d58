/* SPDX-License-Identifier: MIT */
/* libFuzzer target for batond.conf: config_parse() on the input as a file's
 * text, as config_load() would see it. Every error must be one line naming
 * FILE:LINE, a success must say nothing, and a loaded config must hold what
 * config.h promises; config_free() frees all of it (LeakSanitizer checks).
 * Writes no file: errors go to a memory stream. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "fuzz.conf"

/* "fuzz.conf:LINE: message\n", line after line. */
static void check_errors(const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	if (len == 0 || text[len - 1] != '\n')
		abort();
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t digits;

		if (strncmp(p, NAME ":", sizeof(NAME)) != 0)
			abort();
		p += sizeof(NAME);
		digits = strspn(p, "0123456789");
		if (digits == 0 || *p == '0' || p[digits] != ':' || p[digits + 1] != ' ' ||
		    p + digits + 2 >= nl)
			abort();
		p = nl + 1;
	}
}

static void check_name(const char *name)
{
	size_t n = strlen(name);

	if (n < 1 || n > 64 ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
		abort();
}

static void check_config(const struct config *c)
{
	if (!c->path || !c->control_socket || c->control_socket[0] != '/' ||
	    (c->control_group != NULL) != (c->control_gid != (gid_t)-1) || c->control_mode > 07777)
		abort();
	for (size_t i = 0; i < c->n_listeners; i++) {
		const struct listener_cfg *l = &c->listeners[i];

		check_name(l->name);
		if (!l->address || l->line < 1 || l->backlog < 1 ||
		    (l->addr.family != AF_INET && l->addr.family != AF_INET6 &&
		     l->addr.family != AF_UNIX) ||
		    (l->tag && (!*l->tag || strlen(l->tag) > 64)))
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->listeners[j].name, l->name) == 0)
				abort();
	}
	for (size_t i = 0; i < c->n_apps; i++) {
		const struct app_cfg *app = &c->apps[i];

		check_name(app->name);
		if (!app->argv || !app->argv[0] || app->argv[0][0] != '/' || !app->environment ||
		    app->n_listeners < 1 || app->workers < 1 || app->workers > 1024 ||
		    app->ready_timeout_usec == 0 || app->hold_timeout_usec == 0 ||
		    app->stop_signal <= 0 || config_find_app(c, app->name) != app)
			abort();
		for (size_t k = 0; k < app->n_listeners; k++)
			if (app->listener_idx[k] >= c->n_listeners)
				abort();
		for (size_t k = 0; app->environment[k]; k++)
			if (!strchr(app->environment[k], '=') || app->environment[k][0] == '=')
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	char *errors = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&errors, &len);
	int r;

	if (!out)
		abort();
	r = config_parse(NAME, (const char *)data, size, out, &cfg);
	if (fclose(out) != 0)
		abort();
	if (r == 0) {
		if (!cfg || len != 0)
			abort();
		check_config(cfg);
		config_free(cfg);
	} else {
		if (r != -EINVAL || cfg)
			abort();
		check_errors(errors, len);
	}
	free(errors);
	return 0;
}
