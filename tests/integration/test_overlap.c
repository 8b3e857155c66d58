/* SPDX-License-Identifier: MIT */
/* Overlapping generations: upgrades that do not wait for the drain of the one
 * before, bounded by max-draining, and overlap for servers that say READY=1
 * before they accept. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>

#define CLIENTS	     200
#define UPGRADES     10
#define PER_ROUND    (CLIENTS / UPGRADES)
#define MAX_DRAINING 3

struct client {
	int fd;
	unsigned count; /* lines answered on this connection */
	int gen;	/* the generation that answered last */
};

/* Generations of app "web" in status with role @role. */
static int gens_with_role(const struct batond *b, const char *role)
{
	struct json_object *st = status_json(b), *apps, *gens, *r;
	int n = 0;
	assert_true(json_object_object_get_ex(st, "apps", &apps));
	struct json_object *app = json_object_array_get_idx(apps, 0);
	assert_true(json_object_object_get_ex(app, "generations", &gens));
	for (size_t i = 0; i < json_object_array_length(gens); i++)
		if (json_object_object_get_ex(json_object_array_get_idx(gens, i), "role", &r) &&
		    strcmp(json_object_get_string(r), role) == 0)
			n++;
	json_object_put(st);
	return n;
}

/* One line on client @c: answered by a generation, its count one more. */
static void exchange_or_fail(const struct batond *b, struct client *c, int i)
{
	char reply[128], from[32];
	int gen;
	unsigned count;
	if (!line_exchange(c->fd, reply, sizeof(reply)) ||
	    sscanf(reply, "gen %d count %u from %31s", &gen, &count, from) != 3 ||
	    count != c->count + 1) {
		batond_dump_log(b);
		fail_msg("client %d (%u lines so far, last from generation %d): answer \"%s\"", i,
			 c->count, c->gen, reply);
	}
	c->count = count;
	c->gen = gen;
}

/* 200 clients hold their connections open across 10 upgrades issued back to
 * back (20 more connect after each, so that every generation has live ones):
 * each upgrade returns while the generation it replaced still drains, at most
 * max-draining drain at once, the oldest is finished early beyond that, and
 * what it held is parked to the newest generation, which answers on the same
 * connections: no client loses a line. */
static void upgrades_back_to_back_never_wait_for_draining_generations(void **state)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"%s\", \"--hold\" }\n  listeners = { \"http\" }\n"
		 "  mode = dispatch\n  drain-timeout = 120\n  max-draining = %d\n}\n",
		 PARKSRV_PATH, MAX_DRAINING);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	static struct client clients[CLIENTS];
	int n = 0;
	char out[1024], want[160];
	for (int round = 0; round <= UPGRADES; round++) {
		int gen = round + 1; /* serving now */
		/* Every client so far answers, on its own connection. */
		for (int i = 0; i < n; i++)
			exchange_or_fail(&b, &clients[i], i);
		/* New clients land on the serving generation. */
		for (int k = 0; k < PER_ROUND && round < UPGRADES; k++, n++) {
			clients[n] = (struct client){.fd = tcp_connect(b.port)};
			assert_true(clients[n].fd >= 0);
			exchange_or_fail(&b, &clients[n], n);
			assert_int_equal(clients[n].gen, gen);
		}
		if (round == UPGRADES)
			break;
		assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
		/* Returned once generation gen + 1 was ready, while gen drains: its
		 * clients still hold their connections. */
		snprintf(want, sizeof(want), "web: generation %d ready in ", gen + 1);
		assert_non_null(strstr(out, want));
		snprintf(want, sizeof(want), "; generation %d draining (drain-timeout 120 s)", gen);
		assert_non_null(strstr(out, want));
		assert_int_equal(app_status(&b, "web", "serving"), gen + 1);
		int draining = gens_with_role(&b, "draining");
		if (draining > MAX_DRAINING)
			fail_msg("after upgrade %d: %d generations draining", round + 1, draining);
		assert_int_equal(draining, gen < MAX_DRAINING ? gen : MAX_DRAINING);
	}
	/* Generations 1 to 7 were finished early, oldest first, each when an
	 * upgrade would have made it the fourth draining one. */
	assert_int_equal(app_status(&b, "web", "finished_early"), UPGRADES - MAX_DRAINING);
	for (int g = 1; g <= UPGRADES - MAX_DRAINING; g++) {
		snprintf(want, sizeof(want), "finishing generation %d early, ", g);
		assert_true(batond_log_contains(&b, want));
		snprintf(want, sizeof(want),
			 "web: generation %d finished early (max-draining): 1 worker told to park",
			 g);
		assert_true(batond_log_contains(&b, want));
	}
	/* Its clients went on with the newest generation of the moment: the ones
	 * of generation 1 were parked to 5, then (5 finished early) to 9. */
	assert_int_equal(clients[0].gen, 9);
	assert_int_equal(clients[0].count, UPGRADES + 1);
	/* The three last replaced still hold their own clients. */
	assert_int_equal(clients[CLIENTS - 1].gen, UPGRADES);
	assert_int_equal(app_status(&b, "web", "parks_refused"), 0);
	for (int i = 0; i < n; i++)
		close(clients[i].fd);
	assert_int_equal(batond_stop(&b), 0);
}

/* 10 upgrades back to back under load of an app whose READY=1 comes 1 s before
 * it accepts: @overlap_s after the new generation is ready, the old one drains.
 * Returns the load's longest stall in ms; no request fails either way. */
static double stall_over_upgrades(const char *overlap_s)
{
	struct batond b;
	batond_prepare(&b);
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n  exec = { \"@TESTSRV@\", \"--accept-delay-ms\", \"1000\" }\n"
		 "  listeners = { \"http\" }\n  overlap = %s\n}\n",
		 overlap_s);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 1, 10000));
	assert_true(batond_wait_log(&b, "accepting, ", 5000));
	char lg_out[400], out[1024];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	/* Without overlap, requests wait the second out in the backlog: a
	 * timeout well above it, so that a busy machine does not fail them. */
	static const char *const timeout[] = {"--timeout-ms", "10000", NULL};
	pid_t lg = loadgen_start_with(&b, 4, LOADGEN_CEILING_MS, lg_out, timeout);
	for (int i = 0; i < UPGRADES; i++)
		assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	/* The load runs until the last generation accepts and every other one is
	 * gone. */
	assert_true(batond_wait_log(&b, "generation 10 gone", 30000));
	long long deadline = now_ms() + 30000;
	while (gens_with_role(&b, "serving") + gens_with_role(&b, "starting") != 1 ||
	       gens_with_role(&b, "overlapping") + gens_with_role(&b, "draining") != 0) {
		assert_true(now_ms() < deadline);
		usleep(20000);
	}
	char body[256];
	assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
	assert_non_null(strstr(body, "gen=11 "));
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	double stall = loadgen_stall_ms(lg_out);
	assert_true(stall >= 0);
	assert_int_equal(batond_stop(&b), 0);
	return stall;
}

/* Without overlap, the old generation stops accepting as soon as the new one
 * says READY=1, and the clients wait in the backlog for its accept: 1 s. With
 * overlap = 3, the old one serves on until the new one accepts. */
static void
overlap_keeps_the_old_generation_serving_while_the_new_one_is_not_accepting(void **state)
{
	double without = stall_over_upgrades("0");
	double with = stall_over_upgrades("3");
	fprintf(stderr, "longest stall: %.1f ms without overlap, %.1f ms with overlap = 3\n",
		without, with);
	assert_true(without >= 900);
	assert_true(with < 500);
}

/* Connections batond dispatched to each generation 1..7 of app "web" (over its
 * workers), from one status. */
static void delivered(const struct batond *b, long long per_gen[8])
{
	struct json_object *st = status_json(b), *apps, *gens, *v;
	memset(per_gen, 0, 8 * sizeof(*per_gen));
	assert_true(json_object_object_get_ex(st, "apps", &apps));
	struct json_object *app = json_object_array_get_idx(apps, 0);
	assert_true(json_object_object_get_ex(app, "generations", &gens));
	for (size_t i = 0; i < json_object_array_length(gens); i++) {
		struct json_object *g = json_object_array_get_idx(gens, i), *workers;
		int id = json_object_object_get_ex(g, "id", &v) ? json_object_get_int(v) : 0;
		if (id < 1 || id > 7 || !json_object_object_get_ex(g, "workers", &workers))
			continue;
		for (size_t k = 0; k < json_object_array_length(workers); k++)
			if (json_object_object_get_ex(json_object_array_get_idx(workers, k),
						      "delivered", &v))
				per_gen[id] += json_object_get_int64(v);
	}
	json_object_put(st);
}

/* Waits (bounded) until app "web" has no generation @id. */
static void wait_gone(const struct batond *b, int id)
{
	char want[64];
	snprintf(want, sizeof(want), "web: generation %d gone", id);
	assert_true(batond_wait_log(b, want, 30000));
}

/* With 4 workers and canary = 1, the canary generation takes a quarter of the
 * new connections beside the serving one (dispatch places them); promoted, it
 * takes them all and the old generation drains; the next canary, rolled back,
 * drains and leaves the promoted one serving; rollback without a canary starts
 * the generation promotion replaced again. No request fails meanwhile. */
static void a_canary_takes_its_share_then_promote_and_rollback_lose_no_request(void **state)
{
	struct batond b;
	batond_prepare(&b);
	batond_write_config(&b, "listener http { address = \"tcp://127.0.0.1:@PORT@\" }\n"
				"app web {\n  exec = { \"@HELLO@\" }\n  listeners = { \"http\" }\n"
				"  mode = dispatch\n  workers = 4\n  canary = 1\n}\n");
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 4, 10000));
	char lg_out[400], out[1024];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	pid_t lg = loadgen_start(&b, 4, LOADGEN_CEILING_MS, lg_out);
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, " as a canary: 1 of 4 workers beside generation 1; "
				    "batonctl promote web, or rollback web"));
	assert_int_equal(gens_with_role(&b, "canary"), 1);
	assert_int_equal(app_status(&b, "web", "canary"), 2);
	long long base[8], now[8];
	delivered(&b, base);
	long long deadline = now_ms() + 60000, total = 0, canary = 0;
	while (total < 1200) {
		assert_true(now_ms() < deadline);
		usleep(50000);
		delivered(&b, now);
		canary = now[2] - base[2];
		total = now[1] - base[1] + canary;
	}
	double share = (double)canary / (double)total;
	fprintf(stderr, "canary: %lld of %lld connections (%.3f)\n", canary, total, share);
	assert_true(share > 0.20 && share < 0.30);
	assert_int_equal(batonctl(&b, out, sizeof(out), "promote", "web", NULL), 0);
	assert_non_null(
	    strstr(out, "web: generation 2 promoted from 1 to 4 workers; generation 1 draining"));
	wait_gone(&b, 1);
	assert_true(wait_workers(&b, "ready", 4, 10000));
	/* The next canary, rolled back. */
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 0);
	assert_non_null(strstr(out, "web: generation 3 ready in "));
	assert_int_equal(batonctl(&b, out, sizeof(out), "upgrade", "web", NULL), 1);
	assert_non_null(strstr(out, "web: generation 3 is a canary: batonctl promote web, or "
				    "rollback web, before the next upgrade"));
	delivered(&b, now);
	long long before = now[3];
	assert_int_equal(batonctl(&b, out, sizeof(out), "rollback", "web", NULL), 0);
	assert_non_null(strstr(out, "web: canary generation 3 rolled back; generation 2 serving"));
	wait_gone(&b, 3);
	assert_true(before > 0); /* it had served its share */
	char body[256];
	for (int i = 0; i < 8; i++) {
		assert_int_equal(http_get(b.port, body, sizeof(body)), 200);
		assert_non_null(strstr(body, "generation 2 "));
	}
	/* Without a canary, rollback goes back to the generation promotion
	 * replaced (its program and configuration), then has nothing left. */
	assert_int_equal(app_status(&b, "web", "pinned"), 1);
	assert_int_equal(batonctl(&b, out, sizeof(out), "rollback", "web", NULL), 0);
	assert_non_null(strstr(out, "web: rolled back (batonctl rollback): generation 4 ready in "));
	assert_int_equal(app_status(&b, "web", "serving"), 4);
	assert_int_equal(batonctl(&b, out, sizeof(out), "rollback", "web", NULL), 1);
	assert_non_null(
	    strstr(out, "web: nothing to roll back to: no canary, and no generation is pinned"));
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_int_equal(app_status(&b, "web", "upgrades"), 1);
	assert_int_equal(app_status(&b, "web", "rollbacks"), 2);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(upgrades_back_to_back_never_wait_for_draining_generations),
	    harness_test(
		overlap_keeps_the_old_generation_serving_while_the_new_one_is_not_accepting),
	    harness_test(a_canary_takes_its_share_then_promote_and_rollback_lose_no_request),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
