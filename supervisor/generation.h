/* SPDX-License-Identifier: MIT */
/* A generation: N workers started from one exec, and each worker's life
 * (spawn, readiness, drain, exit, restart with backoff). It marks what happens
 * and reports it upward through gen_ops; its owner decides what that means.
 *
 * Generation states (g->state, with g->failed):
 *   STARTING --every worker ready--> READY (reported: changed)
 *   STARTING --a worker exits, fork fails, ready-timeout--> STARTING+failed (changed)
 *   STARTING/READY --gen_drain--> DRAINING --last process of every group gone--> GONE (changed)
 *   DRAINING --drain-timeout--> SIGKILL to what is left, still DRAINING
 *   READY --gen_drain_later, then its delay--> DRAINING (overlap)
 *   DRAINING --gen_finish--> DRAINING+finishing: DRAIN_NOW to libbaton workers
 *     (park now), SIGKILL to what is left after 1 s
 * A READY generation restarts a worker that exits, with backoff; a STARTING one
 * fails instead. GONE is final: its owner frees it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "spawn.h"

struct cgroup;
struct cgroups;
struct channel;
struct gen;
struct output;
struct proto_conn;

enum gen_state { GEN_STARTING, GEN_READY, GEN_DRAINING, GEN_GONE };
enum worker_state {
	WORKER_STARTING, /* spawned, not ready */
	WORKER_READY,
	WORKER_DRAINING,  /* told to stop */
	WORKER_BACKOFF,	  /* crashed, restart timer armed */
	WORKER_LINGERING, /* its process exited; others of its process group still run */
	WORKER_EXITED,
};

/* How a generation reports. Every report only marks: none may free the
 * generation or start another from inside the call. */
struct gen_ops {
	/* @g or one of its workers changed: ready, failed, gone, a worker ready
	 * or exited, a channel writable again. Settle later, from the loop. */
	void (*changed)(void *userdata, struct gen *g);
	/* Worker @worker of @g finished @n dispatched connections. */
	void (*conn_done)(void *userdata, struct gen *g, unsigned worker, uint32_t n);
	/* A draining worker of @g parked a live connection; takes @fd (closed if
	 * refused). Returns 0 or a negative errno when it cannot be held, as
	 * dispatch_park does. */
	int (*park)(void *userdata, struct gen *g, int fd, const struct proto_conn *rec);
	/* A worker of @g parked a connection that was refused (and closed). */
	void (*park_refused)(void *userdata, struct gen *g);
	/* A worker of @g that had crashed was started again. */
	void (*restarted)(void *userdata, struct gen *g);
};

/* What a generation takes from its owner: borrowed, fixed while it lives. */
struct gen_env {
	sd_event *event; /* its timers, child and channel sources; its clock */
	const struct app_cfg *cfg;
	const int *listen_fds;		 /* in LISTEN_FDS order */
	const char *const *listen_names; /* parallel to listen_fds */
	const char *listen_names_joined; /* "a:b", for LISTEN_FDNAMES */
	const char *notify_socket;
	/* spawn_worker; a test may start processes of its own. */
	int (*spawn)(const struct spawn_req *req, pid_t *ret_pid, int *ret_channel,
		     int *ret_exec_fd);
	const struct gen_ops *ops;
	void *userdata;
	struct cgroups *cgroups; /* NULL: workers are tracked by process group */
};

struct worker {
	struct gen *gen;
	unsigned index;
	enum worker_state state;
	pid_t pid;		 /* 0 when no process */
	struct channel *channel; /* while its process runs (NULL if it could not be watched) */
	/* Its stdout and stderr, for the worker's whole life (its restarts too),
	 * when batond's stderr is not the journal: the pipe's two fds
	 * (output_read_fd, output_write_fd) are the ones a re-exec carries. NULL
	 * under the journal (each process has a stream of its own) or when the
	 * pipe could not be made (it then writes to batond's stderr). */
	struct output *output;
	int exec_fd;		 /* open until exec succeeded or failed */
	sd_event_source *exec_src;
	int exec_errno;
	int exec_step; /* enum spawn_step: what failed in the child */
	sd_event_source *child_src;
	sd_event_source *restart_timer;
	sd_event_source *ready_timer; /* a restarted worker's ready-timeout */
	pid_t lingering_pgid;	      /* its exited process's group, checked for leftovers */
	sd_event_source *group_timer; /* on_group_check: polls that group until empty */
	uint64_t linger_killed_usec;  /* when the group got SIGKILL (0: not yet) */
	bool linger_waited;	      /* the group outlived the first check */
	uint64_t started_usec;
	uint64_t ready_usec;
	bool retiring;		       /* gen_scale took it away: drains, never restarts */
	sd_event_source *retire_timer; /* its drain-timeout while retiring */
	unsigned parks;		       /* connections its process parked and batond took */
	unsigned parks_refused;	       /* and those it refused */
	unsigned crashes;	       /* consecutive short-lived exits, for backoff */
	unsigned restarts;
	char status[128];      /* last STATUS= */
	struct cgroup *cgroup; /* its leaf, kept across restarts; NULL without cgroups */
};

struct gen {
	const struct gen_env *env;
	unsigned id;
	enum gen_state state;
	bool failed;		 /* stopped because it did not become ready */
	struct worker **workers; /* each its own allocation: sources point at it */
	unsigned n_workers;	 /* retiring ones included, until they are gone */
	uint64_t started_usec;
	uint64_t ready_usec;
	uint64_t drain_started_usec;
	uint64_t gone_usec;
	sd_event_source *timer;	  /* ready-timeout while starting, drain-timeout while draining,
				   * overlap while ready with drain_at_usec */
	uint64_t timer_usec;	  /* when it fires */
	uint64_t drain_at_usec;	  /* ready: drains then (overlap); 0: not planned */
	bool finishing;		  /* finished early (gen_finish) */
	unsigned parks;		  /* connections its workers parked and batond took */
	unsigned parks_at_finish; /* parks when it was finished early */
	char reason[512];	  /* why it failed, for batonctl */
	int program_fd;		  /* O_PATH of the program as it was at the start, -1 if none */
	struct cgroup *cgroup;	  /* app-NAME/gen-ID, NULL without cgroups */
};

/* Creates generation @id and spawns its workers, each running @program_fd (an
 * O_PATH fd of the program, borrowed: a rollback's pinned one) or, when it is
 * -1, the file env->cfg->argv[0] names now. Returns 0, or a negative errno
 * with *ret untouched if nothing could be started. A worker that cannot be
 * spawned marks the generation failed (reported through changed). */
int gen_start(const struct gen_env *env, unsigned id, unsigned n_workers, int program_fd,
	      struct gen **ret);
/* A serving generation runs @n workers from now on: new ones are started
 * (each with ready-timeout), the highest indexes drain and go. -EBUSY unless
 * it serves. */
int gen_scale(struct gen *g, unsigned n);
/* Takes away the workers gen_scale retired once their processes are gone;
 * call when settling. */
void gen_retire_done(struct gen *g);
/* Stops taking new work: DRAIN on each channel and the stop signal (to each
 * worker's main process, or its process group in kill-mode group); SIGKILL to
 * every process left in their groups after drain-timeout. Idempotent. */
void gen_drain(struct gen *g);
/* A ready generation drains after @delay_usec (overlap): it serves on until
 * then. Returns 0, -EBUSY unless it is ready, or the timer's error. */
int gen_drain_later(struct gen *g, uint64_t delay_usec);
/* A draining generation is finished early (max-draining): DRAIN with
 * DRAIN_NOW to each worker that runs libbaton (park your live connections
 * now), SIGKILL to what is left of it 1 s later (the workers of other
 * programs have their stop signal already). Idempotent. */
void gen_finish(struct gen *g);
void gen_free(struct gen *g);
unsigned gen_live_workers(const struct gen *g);
/* Notify datagram from @pid: returns false if no worker of @g has that pid
 * (with notify-access all: no worker has that process in its cgroup, or in
 * its process group without cgroups). */
bool gen_notify(struct gen *g, pid_t pid, bool ready, bool stopping, const char *status);
/* What @g's cgroup counts (cgroup.h; UINT64_MAX each without cgroups) and
 * the threads in its workers' cgroups. Returns false without a cgroup. */
bool gen_cgroup_stats(const struct gen *g, uint64_t *ret_memory_bytes, uint64_t *ret_cpu_usec,
		      uint64_t *ret_tasks);
/* What @cfg's processes run as: its workers, its health-exec. */
void gen_spawn_creds(const struct app_cfg *cfg, struct spawn_creds *ret);
/* The channel of worker @i if it is ready to take connections, else NULL. */
struct channel *gen_ready_channel(const struct gen *g, unsigned i);

/* Across a re-exec (reexec.c): @g as JSON, its fds recorded in @s; and a
 * generation made again from that, its processes watched again, taking the
 * fds it names. On failure nothing is freed or closed: the fds are left to the
 * image before this one, which reexec_restore then execs. */
struct json_object;
struct reexec_save;
struct json_object *gen_save(const struct gen *g, struct reexec_save *s);
int gen_restore(const struct gen_env *env, struct json_object *j, struct gen **ret);

const char *gen_state_name(enum gen_state s);
const char *worker_state_name(enum worker_state s);
