/* SPDX-License-Identifier: MIT */
/* batond re-exec: batond execs a new program in place (same pid, so its
 * workers stay its children and systemd's MainPID does not change) and hands
 * it its whole state: a JSON document in a sealed memfd (format in
 * docs/reexec-state.md), naming the fds kept open across exec (listeners,
 * control and notify sockets, worker channels, held and parked connections).
 * Everything else is O_CLOEXEC and dies with the old image.
 *
 * Before the exec, the new program is run once with the state to check
 * (`--reexec-check`): one that cannot run, exits, crashes or does not know the
 * format leaves the running batond untouched, and says why. After the exec, a
 * new image that fails to restore (or crashes while it does) execs the program
 * before it (kept as an O_PATH fd) with the same state.
 *
 * Each module writes and reads its own part (app_save, gen_save, ...) with the
 * helpers below. Owns the re-exec in progress. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct config_ref;
struct daemon;

#define REEXEC_FORMAT "baton-reexec-state"
/* Written; a reader takes REEXEC_VERSION_MIN to REEXEC_VERSION. 2: a worker's
 * completion counter (a memfd a reader must not ignore: an older batond would
 * keep it open unread, and the worker's load would only grow). */
#define REEXEC_VERSION	   2
#define REEXEC_VERSION_MIN 1

/* Writing the state: the fds it names (kept open across exec) and the
 * configurations it carries (each once, by index). */
struct reexec_save {
	int *fds;
	size_t n_fds, cap_fds;
	struct config_ref **configs;
	size_t n_configs;
	bool failed; /* out of memory somewhere: no exec */
};

/* Reading it: the configurations, parsed again from their text. */
struct reexec_load {
	struct config_ref **configs;
	size_t n_configs;
};

/* Records @fd as one to keep across exec and returns it (-1 stays -1). */
int reexec_keep_fd(struct reexec_save *s, int fd);
/* The index of @r in the state's configurations (added if new). */
int reexec_config_index(struct reexec_save *s, struct config_ref *r);

/* Members, set and got. A missing or mistyped member reads as @dflt (the
 * reader checks what matters). */
void rx_set_int(struct json_object *o, const char *key, int64_t v);
void rx_set_str(struct json_object *o, const char *key, const char *v);
void rx_set_bool(struct json_object *o, const char *key, bool v);
void rx_set(struct json_object *o, const char *key, struct json_object *v);
int64_t rx_int(struct json_object *o, const char *key, int64_t dflt);
const char *rx_str(struct json_object *o, const char *key);
bool rx_bool(struct json_object *o, const char *key);
/* An array member's length and items (0 and NULL when not an array). */
size_t rx_len(struct json_object *o, const char *key);
struct json_object *rx_at(struct json_object *o, const char *key, size_t i);
/* Bytes as lower-case hex, and back: -EINVAL for bad hex or more than @cap. */
void rx_set_hex(struct json_object *o, const char *key, const void *data, size_t len);
int rx_hex(struct json_object *o, const char *key, void *buf, size_t cap, size_t *ret_len);

/* What batond was started as (@config: its -c): call once, in main, before
 * anything runs. */
void reexec_init(int argc, char **argv, const char *config);
/* `batonctl reexec` or SIGUSR2: checks that batond is quiet (no upgrade,
 * reload or stop under way), runs @binary (NULL: the program batond started
 * as) with the state to check, and once it passed, execs it. @done (may be
 * NULL) hears of a failure, with the reason; success is answered by the new
 * image (control_restore). */
typedef void (*reexec_done_t)(void *userdata, int code, const char *text);
void reexec_request(struct daemon *d, const char *binary, reexec_done_t done, void *userdata);
/* From the settle source: does the exec once the check passed. */
void reexec_settle(struct daemon *d);
/* Batond stops: a re-exec in progress is abandoned and told. */
void reexec_stop(struct daemon *d);

/* batond --reexec-check: reads the state on fd @fd, parses every
 * configuration it carries; returns 0 when this program can restore it. */
int reexec_check(int fd);
/* batond --reexec-state=FD --reexec-previous=FD2, in place of opening sockets and starting apps:
 * restores @d from the state on @fd. On any failure (and on a crash, from a
 * signal handler) execs the program before this one (@prev_fd, O_PATH) with
 * the same state and
 * --reexec-fallback=WHY; returns only on success (0) or when even that is
 * impossible (-1). @fallback_text: this image is that fallback; it answers
 * the client of the re-exec with the reason. */
int reexec_restore(struct daemon *d, int fd, int prev_fd, const char *fallback_text);
