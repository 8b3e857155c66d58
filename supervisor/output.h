/* SPDX-License-Identifier: MIT */
/* A worker's stdout and stderr when batond's stderr is not the journal: one
 * pipe per worker, read in batond's loop, each line logged as
 * "APP[GEN.WORKER]: line". Owns both ends of the pipe for the worker's whole
 * life (every process of the worker, restarts included, writes to the same
 * one); under the journal workers get a stream of their own instead
 * (spawn_req.stdio_journal) and no output exists. */
#pragma once

#include <systemd/sd-event.h>

/* Longest line logged whole; a longer one is logged in pieces this long. */
#define OUTPUT_LINE_MAX 1024

struct output;

/* A new pipe for worker @worker of generation @generation of @app (copied). */
int output_new(sd_event *event, const char *app, unsigned generation, unsigned worker,
	       struct output **ret);
/* Logs what the pipe holds now, a last line without its newline included,
 * and closes both ends. NULL is fine. */
void output_free(struct output *o);

/* Logs the lines the pipe holds now (what a pipe holds at most): a worker's
 * last words before batond's line about its exit. NULL is fine. */
void output_drain(struct output *o);

/* The write end, for spawn_req.stdio_fd (borrowed: each process gets a copy). */
int output_write_fd(const struct output *o);

/* Across a re-exec: both ends of the pipe. output_flush logs a last line
 * without its newline now (the new image starts with an empty line); restore
 * takes the two fds on success only. A @write_fd of -1 makes a reader only
 * (an orphaned worker's pipe, recover.c), which ends at EOF. */
int output_read_fd(const struct output *o);
void output_flush(struct output *o);
int output_restore(sd_event *event, int read_fd, int write_fd, const char *app, unsigned generation,
		   unsigned worker, struct output **ret);
