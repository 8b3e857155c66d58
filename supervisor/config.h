/* SPDX-License-Identifier: MIT */
/* batond.conf, parsed (config-text.c) and checked (config.c) into plain
 * structs. Owns the parsed configuration; opens no socket and starts nothing. */
#pragma once

#include <stdbool.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "listener.h"

enum ready_mode { READY_NOTIFY, READY_IMMEDIATE };
enum serve_mode { SERVE_INHERIT, SERVE_DISPATCH };
enum dispatch_policy { POLICY_LEAST_LOADED, POLICY_ROUND_ROBIN, POLICY_STICKY };
/* Who gets the stop signal: the worker's main process (mixed, as systemd's
 * KillMode=mixed) or its whole process group. SIGKILL always goes to the group. */
enum kill_mode { KILL_MIXED, KILL_GROUP };
/* Whose notify datagrams count: the worker's main process only, or any
 * process of its cgroup (its process group without cgroups). */
enum notify_access { NOTIFY_MAIN, NOTIFY_ALL };

struct listener_cfg {
	char *name;
	int line;      /* line of the `listener NAME {` section */
	char *address; /* as written, for messages and status */
	struct listen_addr addr;
	int backlog; /* default 4096, capped by net.core.somaxconn at bind */
	bool reuseport;
	mode_t mode; /* unix paths; 0 = leave as umask made it */
	char *owner; /* unix paths: "user" or "user:group", NULL = unchanged */
	char *tag;   /* dispatch mode: sent along with each connection, may be NULL */
};

struct app_cfg {
	char *name;
	int line;
	char **argv;	      /* NULL-terminated, argv[0] is the path executed */
	int exec_line;	      /* of its `exec =` */
	size_t *listener_idx; /* indexes into config.listeners, in LISTEN_FDS order */
	size_t n_listeners;
	unsigned workers; /* >= 1 */
	enum ready_mode ready;
	uint64_t ready_timeout_usec;
	uint64_t drain_timeout_usec;
	/* After a new generation is ready, the one it replaces serves on this long
	 * before it drains (servers that say READY=1 before they accept). */
	uint64_t overlap_usec;
	/* Generations that may drain at once; beyond, the oldest is finished early. */
	unsigned max_draining;
	/* An upgrade starts this many workers as a canary beside the serving
	 * generation (0: none), promoted by batonctl promote or after canary_usec. */
	unsigned canary;
	uint64_t canary_usec; /* 0: until batonctl promote or rollback */
	/* After a generation takes over, the one it replaced stays pinned this
	 * long: restarts of the new one revert to it (0: no probation). */
	uint64_t probation_usec;
	int stop_signal;
	enum kill_mode kill_mode;
	char **environment; /* NULL-terminated "K=V" */
	enum serve_mode mode;
	enum dispatch_policy policy;
	unsigned hold_max;
	uint64_t hold_timeout_usec;
	/* What its workers run as (resolved at load; batond's own when unset). */
	char *user;		     /* NULL: batond's user */
	char *group;		     /* NULL: the user's login group */
	char **supplementary_groups; /* NULL-terminated; NULL: the user's, from NSS */
	bool set_ids;		     /* user or group given: uid, gid, groups apply */
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t n_groups;
	char *working_directory; /* NULL: batond's */
	mode_t umask;
	bool set_umask;
	bool no_new_privileges;
	struct app_limit {
		bool set;
		rlim_t value; /* RLIM_INFINITY for "infinity" */
	} limit_nofile, limit_core, limit_nproc;
	/* Written to the app's cgroup (cgroup.c): memory-max in bytes, tasks-max;
	 * unset or RLIM_INFINITY is no limit. cpu-weight 1..10000, 0 unset. */
	struct app_limit memory_max, tasks_max;
	unsigned cpu_weight;
	enum notify_access notify_access;
	/* ambient-capabilities: bit N for capability N (CAP_NET_BIND_SERVICE is
	 * 10); 0: none. Only with user: a worker of batond's own user has its. */
	uint64_t ambient_caps;
	/* A health check (health.c), health-exec or health-url, at most one: a
	 * new generation takes over only once a round passes, and is rolled back
	 * after health_failures failed rounds in a row while it is tried (before
	 * it takes over, as a canary, on probation). */
	char **health_argv; /* NULL-terminated; NULL: no health-exec */
	int health_line;    /* of health-exec or health-url */
	char *health_url;   /* as written; NULL: no health-url */
	/* health-url: the app's listener it names (index into listener_idx) and
	 * the request's path and Host. */
	size_t health_listener;
	char *health_path;
	char *health_host;
	uint64_t health_interval_usec; /* from the end of one round to the next */
	uint64_t health_timeout_usec;  /* of one probe */
	unsigned health_failures;
};

struct config {
	char *path;
	char *text; /* as read, NUL-terminated: a re-exec parses it again */
	size_t text_len;
	char *control_socket; /* default /run/baton/batond.sock */
	mode_t control_mode;  /* default 0600 */
	char *control_group;  /* may be NULL; members may use the control socket */
	gid_t control_gid;    /* control_group looked up at load; (gid_t)-1 if none */
	/* may be NULL; its members may use the commands that only read (status,
	 * metrics) */
	char *control_read_group;
	gid_t control_read_gid; /* (gid_t)-1 if none */
	/* The metrics section: the address as written, NULL when there is none. */
	char *metrics_address;
	struct listen_addr metrics_addr;
	int metrics_line; /* of the `metrics {` section */
	struct listener_cfg *listeners;
	size_t n_listeners;
	struct app_cfg *apps;
	size_t n_apps;
};

/* Parses and validates @path. On failure writes every error to @errors (may be
 * NULL), one "FILE:LINE: message" line each, and returns -EINVAL (or -errno if
 * the file cannot be read, reported as "FILE: reason"); *ret is untouched. The
 * control group and the owners of unix socket paths are looked up. */
int config_load(const char *path, FILE *errors, struct config **ret);

/* As config_load(), on the @len bytes of @text, named @path in messages. */
int config_parse(const char *path, const char *text, size_t len, FILE *errors, struct config **ret);
void config_free(struct config *cfg);

const struct app_cfg *config_find_app(const struct config *cfg, const char *name);

/* batond --check: what a start would find on disk, without side effects:
 * every app's program exists, is a regular file and may be executed by the
 * app's user (batond's without one). Writes one "FILE:LINE: app ...: exec
 * PATH: reason" line per problem to @errors; returns how many. (At start and on
 * a reload a missing program is no error of the file: the generation that
 * runs it fails, is rolled back, and says why.) */
int config_check_programs(const struct config *cfg, FILE *errors);
