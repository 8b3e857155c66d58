/* SPDX-License-Identifier: MIT */
/* Health checks of one generation (health-exec, health-url): rounds of probes
 * and what they say, for the app to decide (app.c: whether the generation
 * takes over, is promoted, or is rolled back). Owns its probe processes and
 * sockets; a probe still running when the check is freed is killed. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"

struct gen;
struct health;

enum health_state {
	HEALTH_PENDING, /* no round ended yet */
	HEALTH_PASSING, /* the last round passed */
	HEALTH_FAILING, /* the last round failed, fewer than health-failures in a row */
	HEALTH_FAILED,	/* health-failures rounds in a row failed: no more rounds */
};

struct health_ops {
	/* A round ended (@ok: it passed). Only marks: the owner looks from its
	 * loop. */
	void (*changed)(void *userdata, bool ok);
	/* health-url: a probe connection went to worker @index of generation
	 * @gen_id outside dispatch's placement (its counters count it). */
	void (*sent)(void *userdata, unsigned gen_id, unsigned index);
};

/* What a check probes: @g (borrowed, outlives the check) started from
 * @cfg; for health-url, the listener whose connection the probe poses as. */
struct health_target {
	struct gen *g;
	const struct app_cfg *cfg;
	const char *listener_name;
	const char *listener_tag; /* may be NULL */
};

/* Starts the first round now. Returns 0 or a negative errno. */
int health_start(sd_event *event, const struct health_target *t, const struct health_ops *ops,
		 void *userdata, struct health **ret);
/* Stops probing; kills a running health-exec (its process group). */
void health_free(struct health *h);
struct gen *health_gen(const struct health *h);
enum health_state health_state(const struct health *h);
/* The last failed round's reason ("" if none), the rounds ended, the failed
 * ones in a row. */
const char *health_reason(const struct health *h);
unsigned health_rounds(const struct health *h);
unsigned health_failed_in_row(const struct health *h);
