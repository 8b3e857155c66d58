/* SPDX-License-Identifier: MIT */
/* The cgroups batond puts its workers in, when it may have some: a cgroup2
 * directory of its own (delegated by systemd, or made by hand under batond's
 * cgroup), batond itself in its leaf "supervisor", and below it
 * app-NAME/gen-G/worker-W, one leaf per worker. cgroup2 tracks processes
 * (cgroup.events, cgroup.kill); the limits go to cgroup2's controllers where
 * it has them, else to the cgroup v1 memory, pids and cpu hierarchies (a
 * hybrid layout), at app-NAME/gen-G there. Every path is derived from batond's
 * own cgroup, the app's name, the generation's id and the worker's index, so
 * that a re-executed batond finds each again from its name. Owns the
 * directories it makes and the inotify watch on them; what an empty cgroup
 * means is its caller's business. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

struct app_cfg;
struct cgroups;
struct cgroup;

/* What a generation's cgroup counts; a member the layout cannot count is
 * UINT64_MAX. */
struct cgroup_stats {
	uint64_t memory_bytes; /* memory.current (v1: memory.usage_in_bytes) */
	uint64_t cpu_usec;     /* cpu.stat usage_usec */
};

/* Finds the cgroup batond may use and moves batond into its supervisor leaf.
 * Logs once what it uses, or why it uses none. Returns NULL when it uses none
 * (workers are then tracked by process group) or is out of memory. */
/* @inotify_fd: the one cgroups_inotify_fd gave the image before a re-exec,
 * taken (its watches are found again by path), or -1 for a new one. Closing
 * an inotify instance waits for an RCU grace period (10-20 ms here): inside
 * an exec, that would be a pause of batond. */
struct cgroups *cgroups_open(sd_event *event, int inotify_fd);
int cgroups_inotify_fd(const struct cgroups *cgs);
/* Removes what is left of batond's cgroups (empty ones only) and, when batond
 * made its directory by hand, moves batond back where it started. */
void cgroups_close(struct cgroups *cgs);
/* For status: "cgroup2 /sys/fs/cgroup/unified/batond-42, limits memory (v1)..."
 * or "none (process groups)" for @cgs NULL. */
const char *cgroups_mode(const struct cgroups *cgs);
/* The cgroup2 directory batond's apps live in (absolute path). */
const char *cgroups_base(const struct cgroups *cgs);

/* Called when a watched cgroup's populated flag may have changed. */
typedef void (*cgroup_changed_t)(void *userdata);

/* The cgroup of generation @id of app @cfg (made with the app's directory if
 * need be, the app's limits written to it, in the v1 hierarchies too). Returns
 * 0 or a negative errno with a message in the log. */
int cgroup_gen_new(struct cgroups *cgs, const struct app_cfg *cfg, unsigned id,
		   struct cgroup **ret);
/* The leaf of worker @index of generation @gen, watched: @changed runs from the
 * loop when its processes come or go. */
int cgroup_worker_new(struct cgroup *gen, unsigned index, cgroup_changed_t changed, void *userdata,
		      struct cgroup **ret);
/* Opens what a new worker of leaf @worker joins, into @fds (at most
 * CGROUP_JOIN_MAX, O_CLOEXEC): first the leaf's directory (O_RDONLY, to be
 * cloned into, spawn.h), then the cgroup.procs file of its generation in each
 * v1 hierarchy (O_WRONLY). Returns how many, or a negative errno. */
#define CGROUP_JOIN_MAX 4
int cgroup_join_fds(const struct cgroup *worker, int fds[CGROUP_JOIN_MAX]);
/* Some process is left in @c (read now, not cached). */
bool cgroup_populated(const struct cgroup *c);
/* SIGKILL to every process in @c and below (cgroup.kill; one by one from
 * cgroup.procs on kernels without it). */
int cgroup_kill(const struct cgroup *c);
/* Whether process @pid is in @c or below (/proc/PID/cgroup). */
bool cgroup_has_pid(const struct cgroup *c, pid_t pid);
void cgroup_stats(const struct cgroup *gen, struct cgroup_stats *ret);
/* Threads in leaf @c (its cgroup.threads). */
uint64_t cgroup_tasks(const struct cgroup *c);
/* The path relative to cgroups_base, "app-web/gen-7/worker-0". */
const char *cgroup_path(const struct cgroup *c);
/* Stops watching @c, removes its directory (a generation's: its v1 ones and
 * its app's too once they are empty) and frees it. A cgroup that still has
 * processes is killed and removed once empty. NULL is fine. */
void cgroup_free(struct cgroup *c);
