/* A generation: N workers started from one exec, and each worker's life
 * (spawn, readiness, drain, exit, restart with backoff). It reports what
 * happens to app.c, which decides what a generation's fate means. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

struct app;

enum gen_state { GEN_STARTING, GEN_READY, GEN_DRAINING, GEN_GONE };
enum worker_state {
	WORKER_STARTING, /* spawned, not ready */
	WORKER_READY,
	WORKER_DRAINING,  /* told to stop */
	WORKER_BACKOFF,	  /* crashed, restart timer armed */
	WORKER_LINGERING, /* its process exited; others of its process group still run */
	WORKER_EXITED,
};

struct gen;

struct worker {
	struct gen *gen;
	unsigned index;
	enum worker_state state;
	pid_t pid; /* 0 when no process */
	int channel_fd;
	sd_event_source *channel_src;
	unsigned channel_errors;
	int exec_fd; /* open until exec succeeded or failed */
	sd_event_source *exec_src;
	int exec_errno;
	sd_event_source *child_src;
	sd_event_source *restart_timer;
	sd_event_source *ready_timer; /* a restarted worker's ready-timeout */
	pid_t lingering_pgid;	      /* its exited process's group, checked for leftovers */
	sd_event_source *group_timer; /* on_group_check: polls that group until empty */
	uint64_t linger_killed_usec;  /* when the group got SIGKILL (0: not yet) */
	bool linger_waited;	      /* the group outlived the first check */
	uint64_t started_usec;
	uint64_t ready_usec;
	uint64_t delivered; /* dispatch: connections sent to this process */
	uint64_t done;	    /* dispatch: connections it reported finished */
	bool channel_full;  /* dispatch: last send hit EAGAIN, wait for EPOLLOUT */
	bool drain_pending; /* DRAIN found the channel full: sent on EPOLLOUT */
	size_t channel_payload_max; /* the largest payload its channel takes in one message */
	unsigned crashes;   /* consecutive short-lived exits, for backoff */
	unsigned restarts;
	char status[128]; /* last STATUS= */
};

struct gen {
	struct app *app;
	unsigned id;
	enum gen_state state;
	bool failed; /* stopped because it did not become ready */
	struct worker *workers;
	unsigned n_workers;
	uint64_t started_usec;
	uint64_t ready_usec;
	uint64_t drain_started_usec;
	uint64_t gone_usec;
	sd_event_source *timer; /* ready-timeout while starting, drain-timeout while draining */
	char reason[512];	/* why it failed, for batonctl */
	int program_fd;		/* O_PATH of the program as it was at the start, -1 if none */
};

/* Creates generation @id of @app and spawns its workers. Returns 0, or a
 * negative errno with *ret untouched if nothing could be started (reason logged). */
int gen_start(struct app *app, unsigned id, struct gen **ret);
/* Stops taking new work: DRAIN on each channel and the stop signal (to each
 * worker's main process, or its process group in kill-mode group); SIGKILL to
 * every process left in their groups after drain-timeout. Idempotent. */
void gen_drain(struct gen *g);
void gen_free(struct gen *g);
unsigned gen_live_workers(const struct gen *g);
/* Notify datagram from @pid: returns false if no worker of @g has that pid. */
bool gen_notify(struct gen *g, pid_t pid, bool ready, bool stopping, const char *status);

const char *gen_state_name(enum gen_state s);
const char *worker_state_name(enum worker_state s);
