/* SPDX-License-Identifier: MIT */
/* What `batonctl status` prints: rendered from batond's state, as text or JSON. */
#pragma once

#include <stdbool.h>

struct daemon;

/* The "schema" member of the JSON status: raised when a member changes meaning
 * or goes away, not when one is added (docs/status-json.md). */
#define STATUS_JSON_SCHEMA 1

/* Returns a malloc'd NUL-terminated string, or NULL when out of memory. */
char *status_render(const struct daemon *d, bool json);
/* True when every app has a serving generation (batonctl status --check). */
bool status_every_app_serves(const struct daemon *d);
