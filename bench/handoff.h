/* SPDX-License-Identifier: MIT */
/* The stats file that bench/handoffsrv writes and bench/handoff reads (make
 * bench-scale): one slot per generation (1..HANDOFF_GENS) and worker
 * (0..HANDOFF_WORKERS-1), times in CLOCK_MONOTONIC nanoseconds, shared with
 * mmap(MAP_SHARED). Each worker writes only its own slot. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HANDOFF_GENS	4
#define HANDOFF_WORKERS 64
struct handoff_slot {
	uint64_t park_first_ns; /* baton_park_many() called */
	uint64_t park_last_ns;	/* and returned */
	uint64_t parked;
	uint64_t adopted; /* written last (release): its times are there when it is read */
	uint64_t adopted_first_ns;
	uint64_t adopted_last_ns;
	uint64_t dropped; /* messages baton_next_event() reported bad (fds lost: EMFILE) */
	uint64_t pad;
};
#define HANDOFF_STATS_BYTES ((int)(HANDOFF_GENS * HANDOFF_WORKERS * sizeof(struct handoff_slot)))

static inline struct handoff_slot *handoff_slot(void *map, unsigned gen, unsigned worker)
{
	if (gen < 1 || gen > HANDOFF_GENS || worker >= HANDOFF_WORKERS)
		return NULL;
	return (struct handoff_slot *)map + (gen - 1) * HANDOFF_WORKERS + worker;
}
