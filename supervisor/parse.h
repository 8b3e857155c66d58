/* SPDX-License-Identifier: MIT */
/* Value parsers: a whole string in, a value out. Shared by everything that reads
 * numbers, durations, modes and names from text (config.c today). They never
 * print: each returns 0 with the value, -EINVAL if the text is not written as
 * such a value, -ERANGE if it is one but outside the bounds (or -ENOENT when a
 * name is looked up and not found), and leaves the out-parameter untouched on
 * failure. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Decimal digits only: no sign, no space, no base prefix. */
int parse_unsigned(const char *s, unsigned long long min, unsigned long long max,
		   unsigned long long *ret);

/* A size in bytes: digits with an optional K, M, G or T suffix (powers of
 * 1024), as systemd's MemoryMax= takes it. */
int parse_bytes(const char *s, unsigned long long min, unsigned long long max,
		unsigned long long *ret);

/* Seconds, whole or with a fraction ("30", "0.5"); digits beyond microseconds
 * are dropped. */
int parse_seconds_usec(const char *s, uint64_t min_usec, uint64_t max_usec, uint64_t *ret_usec);

/* Octal as chmod(1) takes it: "0660" or "660", at most 07777. */
int parse_file_mode(const char *s, mode_t *ret);

/* true/false, yes/no, on/off, in any case. */
int parse_bool(const char *s, bool *ret);

/* The index of @s in the NULL-terminated @names, or -EINVAL. */
int parse_choice(const char *s, const char *const *names);

/* The names a stop signal may have: "TERM" or "SIGTERM", in any case. */
extern const char *const parse_signal_names; /* "TERM, INT, QUIT, HUP, USR1, USR2" */
int parse_signal(const char *s, int *ret_signo);

/* A user as a name or a number; *ret_login_gid is the user's group, or
 * (gid_t)-1 for a number. Looks names up in the user database. */
int parse_user(const char *s, uid_t *ret_uid, gid_t *ret_login_gid);

/* A group as a name or a number. */
int parse_group(const char *s, gid_t *ret_gid);

/* A group by its name only: a number is looked up as a name. */
int lookup_group(const char *name, gid_t *ret_gid);

/* True for "NAME=..." of a variable batond sets for its workers, or that
 * describes batond itself (its LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*, BATON_*):
 * never passed on from batond's environment, never set by an app's. */
bool env_is_batonds(const char *kv);
