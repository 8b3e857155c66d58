/* SPDX-License-Identifier: MIT */
/* batond's metrics in the Prometheus text exposition format (version 0.0.4):
 * rendered from batond's state for `batonctl metrics`, and served on
 * GET /metrics at the configuration's metrics address. Reads batond's state;
 * changes nothing. Owns the metrics socket and its connections. */
#pragma once

struct daemon;
struct metrics;

/* Returns a malloc'd NUL-terminated string, or NULL when out of memory. */
char *metrics_render(const struct daemon *d);

/* Listens on the metrics address of d->cfg, if it has one (*ret NULL if not),
 * and serves from d->event: on @fd if it is >= 0 (the socket of the image
 * before a re-exec), else on a socket bound now. A change of address takes
 * effect when batond starts again. Returns 0, or -1 after logging FILE:LINE
 * and the reason. */
int metrics_open(struct daemon *d, int fd, struct metrics **ret);
/* Its listening socket, for a re-exec; -1 for NULL. Scrapes in progress are
 * not carried: their clients see the connection close. */
int metrics_fd(const struct metrics *m);
/* Closes the socket and every connection. NULL is fine. */
void metrics_close(struct metrics *m);
