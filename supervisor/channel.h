/* batond's end of a worker's private channel (BATON_FD): answers listener
 * requests with the worker's own app's listeners only, and tells it to drain. */
#pragma once

struct worker;

/* Watches w->channel_fd. On failure the channel is closed (the worker still
 * runs; it only loses the extras beyond the systemd contract). */
void channel_attach(struct worker *w);
/* Closes the channel and its event source. Idempotent. */
void channel_detach(struct worker *w);
void channel_send_drain(struct worker *w);
/* Watch for the channel to become writable again (dispatch backpressure). */
void channel_watch_writable(struct worker *w);
