/* SPDX-License-Identifier: MIT */
/* Service-manager notifications. State is derived from the apps on each call,
 * and only changes are sent. */
#include "service.h"
#include "app.h"
#include "batond.h"
#include "generation.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-daemon.h>

void service_store_listener(const char *name, int fd)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	int r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	if (r < 0)
		/* The service may lack FileDescriptorStoreMax=: then a crash of
		 * batond closes this listener until systemd restarts it. */
		log_warn("listener %s: cannot keep it in systemd's fd store: %s", name,
			 strerror(-r));
}

void service_forget_listener(const char *name)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	int r = sd_notify(0, msg);
	if (r < 0)
		log_warn("listener %s: cannot remove it from systemd's fd store: %s", name,
			 strerror(-r));
}

static bool any_upgrade_running(const struct daemon *d)
{
	for (size_t i = 0; i < d->n_apps; i++)
		if (d->apps[i]->upgrade_running)
			return true;
	return false;
}

static bool all_serving(const struct daemon *d)
{
	for (size_t i = 0; i < d->n_apps; i++)
		if (!d->apps[i]->serving)
			return false;
	return true;
}

static void render_status(const struct daemon *d, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < d->n_apps && used < len; i++) {
		const struct app *a = d->apps[i];
		int n;
		if (a->serving)
			n = snprintf(buf + used, len - used, "%s%s: gen %u ready, %u worker%s",
				     i ? "; " : "", a->cfg->name, a->serving->id,
				     a->serving->n_workers, a->serving->n_workers == 1 ? "" : "s");
		else
			n = snprintf(buf + used, len - used, "%s%s: no generation ready",
				     i ? "; " : "", a->cfg->name);
		if (n < 0)
			break;
		used += (size_t)n;
		if (used < len) {
			n = snprintf(buf + used, len - used, ", %u upgrade%s, %u rolled back%s",
				     a->counters.upgrades, a->counters.upgrades == 1 ? "" : "s",
				     a->counters.rollbacks,
				     a->upgrade_running ? ", upgrading" : "");
			used += n > 0 ? (size_t)n : 0;
		}
	}
}

void service_update(struct daemon *d)
{
	struct service_state *sv = &d->service;
	if (d->stopping)
		return; /* STOPPING=1 was sent; nothing else matters to systemd now */
	char status[sizeof(sv->status)];
	render_status(d, status, sizeof(status));
	char msg[700] = "";
	size_t used = 0;
	bool upgrading = any_upgrade_running(d);
	if (!sv->ready_sent && all_serving(d) && !upgrading) {
		sv->ready_sent = true;
		used += (size_t)snprintf(msg + used, sizeof(msg) - used, "READY=1\n");
		log_info("all apps ready");
	} else if (sv->ready_sent && upgrading && !sv->reloading) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		sv->reloading = true;
		/* systemd wants MONOTONIC_USEC with RELOADING=1 to order the reload. */
		used += (size_t)snprintf(msg + used, sizeof(msg) - used,
					 "RELOADING=1\nMONOTONIC_USEC=%llu\n",
					 (unsigned long long)ts.tv_sec * 1000000ULL +
						 (unsigned long long)ts.tv_nsec / 1000);
	} else if (sv->reloading && !upgrading) {
		sv->reloading = false;
		used += (size_t)snprintf(msg + used, sizeof(msg) - used, "READY=1\n");
	}
	if (strcmp(status, sv->status) != 0) {
		strcpy(sv->status, status);
		snprintf(msg + used, sizeof(msg) - used, "STATUS=%s\n", status);
	}
	if (msg[0] && used < sizeof(msg))
		sd_notify(0, msg);
}
