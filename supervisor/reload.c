/* SPDX-License-Identifier: MIT */
/* Configuration reload; see reload.h. Listeners are matched by name and
 * address: the same address keeps its very socket (never a fresh one bound
 * beside it), anything else is bound anew before anything changes, so that a
 * bind that fails leaves batond as it was. Apps are matched by name; each
 * takes its new configuration through app_reconfigure (in place, or an
 * upgrade with rollback). */
#include "reload.h"
#include "control.h"
#include "recover.h"
#include "batond.h"
#include "listener.h"
#include "log.h"
#include "service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct reload_req {
	bool upgrade;
	reload_waiter_t waiter;
	reload_started_t started;
	void *userdata;
	struct reload_req *next;
};

void reload_request(struct daemon *d, bool upgrade, reload_waiter_t waiter,
		    reload_started_t started, void *userdata)
{
	struct reload_req *req = calloc(1, sizeof(*req));
	if (!req) {
		started(userdata, -ENOMEM, 0, "batond is out of memory");
		return;
	}
	*req = (struct reload_req){
	    .upgrade = upgrade, .waiter = waiter, .started = started, .userdata = userdata};
	struct reload_req **tail = &d->reloads;
	while (*tail)
		tail = &(*tail)->next;
	*tail = req;
	daemon_mark(d);
}

static const struct listener_rt *old_listener(const struct daemon *d, const struct listener_cfg *lc)
{
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		const struct listener_rt *l = &d->listeners[i];
		if (l->fd >= 0 && strcmp(l->cfg->name, lc->name) == 0 &&
		    strcmp(l->cfg->address, lc->address) == 0)
			return l;
	}
	return NULL;
}

/* The listeners of @nc: the same name and address keep their socket, the
 * rest is bound now. Returns 0 with *ret (parallel to nc->listeners), or -1
 * with the reasons on @errors and nothing changed. */
static int open_new_listeners(struct daemon *d, const struct config *nc, FILE *errors,
			      struct listener_rt **ret)
{
	struct listener_rt *nl = calloc(nc->n_listeners ? nc->n_listeners : 1, sizeof(*nl));
	if (!nl)
		return -1;
	int failed = 0;
	for (size_t i = 0; i < nc->n_listeners; i++) {
		const struct listener_cfg *lc = &nc->listeners[i];
		const struct listener_rt *old = old_listener(d, lc);
		nl[i] = (struct listener_rt){.cfg = lc, .fd = -1};
		if (old) {
			nl[i].fd = old->fd;
			nl[i].adopted = old->adopted;
			nl[i].taken_back = old->taken_back;
			nl[i].kept = true;
			continue;
		}
		char err[256];
		nl[i].fresh = true;
		if (listener_open(lc, &nl[i].fd, err, sizeof(err)) < 0) {
			fprintf(errors, "%s:%d: listener \"%s\": address \"%s\": %s\n", nc->path,
				lc->line, lc->name, lc->address, err);
			failed = 1;
		}
	}
	if (failed) {
		for (size_t i = 0; i < nc->n_listeners; i++)
			if (!nl[i].kept && nl[i].fd >= 0)
				close(nl[i].fd);
		free(nl);
		return -1;
	}
	*ret = nl;
	return 0;
}

/* batond's copy of a listener the new configuration does not have. Workers of
 * generations that still accept on it hold their own (app versions keep
 * duplicates): the socket lives until the last of them is gone. */
static void close_old_listener(struct listener_rt *l)
{
	log_info("listener %s: %s removed from the configuration", l->cfg->name, l->cfg->address);
	close(l->fd);
	service_forget_listener(l->cfg->name);
	if (!l->adopted && l->cfg->addr.family == AF_UNIX && !l->cfg->addr.abstract)
		unlink(l->cfg->addr.path);
}

static void commit_listeners(struct daemon *d, const struct config *nc, struct listener_rt *nl)
{
	for (size_t i = 0; i < d->cfg->n_listeners; i++) {
		struct listener_rt *l = &d->listeners[i];
		bool kept = false;
		for (size_t k = 0; k < nc->n_listeners && !kept; k++)
			kept = nl[k].kept && nl[k].fd == l->fd;
		if (!kept && l->fd >= 0)
			close_old_listener(l);
	}
	for (size_t i = 0; i < nc->n_listeners; i++) {
		const struct listener_cfg *lc = &nc->listeners[i];
		if (nl[i].kept) {
			const struct listener_cfg *was = NULL;
			for (size_t k = 0; k < d->cfg->n_listeners && !was; k++)
				if (d->listeners[k].fd == nl[i].fd)
					was = d->listeners[k].cfg;
			/* The backlog changes in place; nothing else of a socket can. */
			if (was && was->backlog != lc->backlog && listen(nl[i].fd, lc->backlog) < 0)
				log_warn("listener %s: backlog %d: %s", lc->name, lc->backlog,
					 strerror(errno));
			nl[i].kept = false;
			continue;
		}
		log_info("listener %s: %s, fd %d", lc->name, lc->address, nl[i].fd);
		service_store_listener(lc->name, nl[i].fd);
	}
	free(d->listeners);
	d->listeners = nl;
	for (size_t i = 0; i < nc->n_listeners; i++)
		d->listener_fds[i] = nl[i].fd;
}

static struct app *find_app(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->n_apps; i++)
		if (d->apps[i] && strcmp(d->apps[i]->cfg->name, name) == 0)
			return d->apps[i];
	return NULL;
}

/* @name's one line of the reload's outcome: "NAME: @what". */
static void tell(struct app_waiter *w, int code, const char *name, const char *what)
{
	if (!w)
		return;
	char text[300];
	snprintf(text, sizeof(text), "%s: %s", name, what);
	w->done(w->userdata, code, text);
	free(w);
}

static void run(struct daemon *d, struct reload_req *req)
{
	char *errs = NULL;
	size_t errs_len = 0;
	FILE *ef = open_memstream(&errs, &errs_len);
	struct config *nc = NULL;
	struct listener_rt *nl = NULL;
	int r = ef ? config_load(d->cfg->path, ef, &nc) : -ENOMEM;
	if (r == 0 && open_new_listeners(d, nc, ef, &nl) < 0)
		r = -EINVAL;
	int ctl_fd = -1;
	char ctl_err[700];
	if (r == 0 && control_prepare(d->control, nc, &ctl_fd, ctl_err, sizeof(ctl_err)) < 0) {
		fprintf(ef, "%s: control socket: %s\n", nc->path, ctl_err);
		r = -EINVAL;
	}
	int *nfds = r == 0 ? calloc(nc->n_listeners ? nc->n_listeners : 1, sizeof(int)) : NULL;
	struct app **napps = r == 0 ? calloc(nc->n_apps ? nc->n_apps : 1, sizeof(*napps)) : NULL;
	struct config_ref *nref = NULL;
	if (r == 0 && (!nfds || !napps))
		r = -ENOMEM;
	if (ef)
		fclose(ef);
	if (r < 0) {
		if (ctl_fd >= 0) {
			close(ctl_fd);
			unlink(nc->control_socket);
		}
		if (nl) {
			for (size_t i = 0; i < nc->n_listeners; i++)
				if (!nl[i].kept && nl[i].fd >= 0)
					close(nl[i].fd);
			free(nl);
		}
		free(nfds);
		free(napps);
		if (nc)
			config_free(nc);
		const char *text = errs && errs[0] ? errs : strerror(-r);
		log_err("reload: %s: nothing changed: %s", d->cfg->path, text);
		req->started(req->userdata, r, 0, text);
		free(errs);
		return;
	}
	free(errs);
	/* From here on nothing fails: the new configuration is batond's. */
	nref = config_ref_new(nc);
	if (!nref) {
		req->started(req->userdata, -ENOMEM, 0, "batond is out of memory");
		free(nl);
		free(nfds);
		free(napps);
		return;
	}
	control_apply(d->control, nc, ctl_fd);
	recover_move(d->recover, nc);
	free(d->listener_fds);
	d->listener_fds = nfds;
	commit_listeners(d, nc, nl);

	/* Every app of the file, and every app it no longer has, tells one line. */
	unsigned removed = 0;
	for (size_t i = 0; i < d->n_apps; i++) {
		bool kept = false;
		for (size_t k = 0; k < nc->n_apps && !kept; k++)
			kept = strcmp(nc->apps[k].name, d->apps[i]->cfg->name) == 0;
		removed += !kept;
	}
	req->started(req->userdata, 0, (unsigned)nc->n_apps + removed, "");

	for (size_t k = 0; k < nc->n_apps; k++) {
		const struct app_cfg *ac = &nc->apps[k];
		for (size_t j = 0; j < ac->n_listeners; j++)
			daemon_set_blocking_mode(&d->listeners[ac->listener_idx[j]], ac->mode);
		struct app_waiter *w = req->waiter(req->userdata);
		struct app *a = find_app(d, ac->name);
		if (a) {
			napps[k] = a;
			app_reconfigure(a, nref, ac, d->listener_fds, req->upgrade, w);
			continue;
		}
		if (app_new(&d->app_env, nref, ac, d->listener_fds, &napps[k]) < 0) {
			tell(w, ECANCELED, ac->name, "cannot be added: out of memory");
			continue;
		}
		log_info("%s: added to the configuration", ac->name);
		/* Its first start as an upgrade: the reload answers once it serves,
		 * or with the reason it does not (then it retries, with back-off). */
		app_upgrade(napps[k], w);
	}
	for (size_t i = 0; i < d->n_apps; i++) {
		struct app *a = d->apps[i];
		bool kept = false;
		for (size_t k = 0; k < nc->n_apps && !kept; k++)
			kept = napps[k] == a;
		if (kept)
			continue;
		struct app **retired = realloc(d->retired, (d->n_retired + 1) * sizeof(*retired));
		struct app_waiter *w = req->waiter(req->userdata);
		log_info("%s: removed from the configuration: draining", a->cfg->name);
		app_stop(a);
		tell(w, 0, a->cfg->name, "removed, draining");
		if (retired) {
			d->retired = retired;
			d->retired[d->n_retired++] = a;
		} else {
			app_free(a); /* out of memory: its workers are SIGKILLed */
		}
	}
	/* Apps that got no configuration (out of memory) are dropped. */
	size_t n = 0;
	for (size_t k = 0; k < nc->n_apps; k++)
		if (napps[k])
			napps[n++] = napps[k];
	free(d->apps);
	d->apps = napps;
	d->n_apps = n;
	config_ref_put(d->config);
	d->config = nref;
	d->cfg = nc;
	log_info("reload: %s applied", nc->path);
	daemon_mark(d);
}

static bool upgrade_in_flight(const struct daemon *d)
{
	for (size_t i = 0; i < d->n_apps; i++)
		if (d->apps[i]->upgrade_running || d->apps[i]->upgrade_queued)
			return true;
	return false;
}

void reload_settle(struct daemon *d)
{
	for (size_t i = 0; i < d->n_retired;)
		if (app_is_stopped(d->retired[i])) {
			log_info("%s: stopped and gone", d->retired[i]->cfg->name);
			app_free(d->retired[i]);
			d->retired[i] = d->retired[--d->n_retired];
		} else {
			i++;
		}
	while (d->reloads && !d->stopping && !upgrade_in_flight(d)) {
		struct reload_req *req = d->reloads;
		d->reloads = req->next;
		run(d, req);
		free(req);
	}
}

void reload_stop(struct daemon *d)
{
	while (d->reloads) {
		struct reload_req *req = d->reloads;
		d->reloads = req->next;
		req->started(req->userdata, -ESHUTDOWN, 0, "batond is stopping");
		free(req);
	}
	for (size_t i = 0; i < d->n_retired; i++)
		app_free(d->retired[i]);
	free(d->retired);
	d->retired = NULL;
	d->n_retired = 0;
}
