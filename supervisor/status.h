/* What `batonctl status` prints: rendered from batond's state, as text or JSON. */
#pragma once

#include <stdbool.h>

struct daemon;

/* Returns a malloc'd NUL-terminated string, or NULL when out of memory. */
char *status_render(const struct daemon *d, bool json);
