/* SPDX-License-Identifier: MIT */
/* batond's cgroups (see cgroup.h for the layout). Reads and writes of cgroupfs
 * files are in-memory and do not block; a directory that cannot be removed yet
 * (its processes are dying) stays on a list and goes at the next change the
 * inotify watch reports. */
#include "cgroup.h"
#include "config.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

enum { CTL_MEMORY, CTL_PIDS, CTL_CPU, N_CTL };
static const char *const ctl_names[N_CTL] = {"memory", "pids", "cpu"};

struct cgroups {
	sd_event *event;
	char *base;	 /* absolute cgroup2 directory of batond's apps */
	char *base_rel;	 /* the same as /proc/PID/cgroup names it */
	char *origin;	 /* where batond was before it made base by hand, or NULL */
	bool made_base;	 /* by hand: base is batond's to remove */
	bool has_kill;	 /* cgroup.kill (Linux 5.14) */
	bool v2[N_CTL];	 /* the controller is enabled below base */
	char *v1[N_CTL]; /* batond's directory in that v1 hierarchy, if used */
	bool v1_made[N_CTL];
	int inotify_fd;
	sd_event_source *inotify_src;
	struct cgroup *all; /* every cgroup object, those waiting to be removed too */
	char mode[768];
};

struct cgroup {
	struct cgroups *cgs;
	char *path;		  /* relative to base */
	const struct cgroup *gen; /* a worker's generation (its v1 directories) */
	bool is_gen;
	bool v1_used[N_CTL]; /* a generation: has a directory in that v1 hierarchy */
	int wd; /* watch of cgroup.events, -1 */
	cgroup_changed_t changed;
	void *userdata;
	bool orphan; /* freed by its owner: removed once it can be */
	struct cgroup *next;
};

/* ---- Files ---------------------------------------------------------------- */

static int write_text(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int r = n < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* The file's start, NUL-terminated; returns its length or a negative errno. */
static ssize_t read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t used = 0;
	for (;;) {
		ssize_t n = read(fd, buf + used, len - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : 0;
			close(fd);
			buf[used] = 0;
			return r < 0 ? r : (ssize_t)used;
		}
		used += (size_t)n;
		if (used == len - 1) {
			close(fd);
			buf[used] = 0;
			return (ssize_t)used;
		}
	}
}

static ssize_t read_in(const char *dir, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return read_text(path, buf, len);
}

/* The number after "@key " in a flat-keyed file's text, or UINT64_MAX. */
static uint64_t keyed(const char *text, const char *key)
{
	size_t n = strlen(key);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, n) == 0 && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	return UINT64_MAX;
}

static char *join(const char *a, const char *b)
{
	char *s;
	return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* ---- Where batond is ------------------------------------------------------ */

/* Mount points of cgroup2 and of the v1 hierarchies of ctl_names, from
 * /proc/self/mountinfo ("ID PARENT M:N ROOT MOUNTPOINT OPTS ... - TYPE SRC SUPER"). */
static void find_mounts(char **v2, char *v1[N_CTL])
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	while (f && fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], type[64], super[1024];
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(dash + 3, "%63s %*s %1023s", type, super) != 2)
			continue;
		if (strcmp(type, "cgroup2") == 0 && !*v2)
			*v2 = strdup(mnt);
		if (strcmp(type, "cgroup") != 0)
			continue;
		for (int i = 0; i < N_CTL; i++) {
			char opt[80];
			snprintf(opt, sizeof(opt), ",%s,", ctl_names[i]);
			char opts[1100];
			snprintf(opts, sizeof(opts), ",%s,", super);
			if (!v1[i] && strstr(opts, opt))
				v1[i] = strdup(mnt);
		}
	}
	if (f)
		fclose(f);
}

/* batond's cgroup2 path and its v1 paths, from /proc/self/cgroup. */
static void find_own(char **v2, char *v1[N_CTL], char **systemd_v1)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[4096];
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *ctls = strchr(line, ':'), *path = ctls ? strchr(ctls + 1, ':') : NULL;
		if (!path)
			continue;
		*path++ = 0;
		ctls++;
		if (*ctls == 0 && !*v2)
			*v2 = strdup(path);
		if (strcmp(ctls, "name=systemd") == 0 && !*systemd_v1)
			*systemd_v1 = strdup(path);
		char list[512];
		snprintf(list, sizeof(list), ",%s,", ctls);
		for (int i = 0; i < N_CTL; i++) {
			char opt[80];
			snprintf(opt, sizeof(opt), ",%s,", ctl_names[i]);
			if (!v1[i] && strstr(list, opt))
				v1[i] = strdup(path);
		}
	}
	if (f)
		fclose(f);
}

/* systemd marks a cgroup it delegates (Delegate=yes) with the xattr
 * trusted.delegate (user.delegate for a user's manager); in a hybrid layout it
 * sets it in its own v1 hierarchy, name=systemd. */
static bool is_delegated(const char *dir)
{
	char v[8];
	ssize_t n = getxattr(dir, "trusted.delegate", v, sizeof(v));
	if (n <= 0)
		n = getxattr(dir, "user.delegate", v, sizeof(v));
	return n == 1 && v[0] == '1';
}

static char *parent_of(const char *path)
{
	char *p = strdup(path), *slash = p ? strrchr(p, '/') : NULL;
	if (slash && slash != p)
		*slash = 0;
	else if (slash)
		slash[1] = 0;
	return p;
}

static const char *basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* ---- The watch ------------------------------------------------------------ */

static int watch(struct cgroup *c)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s/cgroup.events", c->cgs->base, c->path);
	c->wd = inotify_add_watch(c->cgs->inotify_fd, path, IN_MODIFY);
	return c->wd < 0 ? -errno : 0;
}

static void unlink_cgroup(struct cgroup *c)
{
	for (struct cgroup **p = &c->cgs->all; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			return;
		}
}

/* Removes @c's directories; -EBUSY while processes or children remain. A
 * generation's app directory goes with its last generation. */
static int remove_dirs(struct cgroup *c)
{
	struct cgroups *cgs = c->cgs;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", cgs->base, c->path);
	if (rmdir(path) < 0 && errno != ENOENT)
		return -errno;
	if (!c->is_gen)
		return 0;
	int r = 0;
	for (int i = 0; i < N_CTL; i++) {
		if (!cgs->v1[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s", cgs->v1[i], c->path);
		if (rmdir(path) < 0 && errno != ENOENT)
			r = -errno;
	}
	if (r < 0)
		return r;
	/* The app's directory: busy while another generation lives. */
	char *app = parent_of(c->path);
	for (int i = -1; app && i < N_CTL; i++) {
		const char *root = i < 0 ? cgs->base : cgs->v1[i];
		if (root) {
			snprintf(path, sizeof(path), "%s/%s", root, app);
			rmdir(path);
		}
	}
	free(app);
	return 0;
}

static void destroy(struct cgroup *c)
{
	if (c->wd >= 0)
		inotify_rm_watch(c->cgs->inotify_fd, c->wd);
	unlink_cgroup(c);
	free(c->path);
	free(c);
}

/* Removes what its owners freed and can go now, oldest first (a worker's
 * directory before its generation's). */
static void sweep(struct cgroups *cgs)
{
	bool removed;
	do {
		removed = false;
		for (struct cgroup *c = cgs->all, *next; c; c = next) {
			next = c->next;
			if (c->orphan && remove_dirs(c) == 0) {
				destroy(c);
				removed = true;
			}
		}
	} while (removed);
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct cgroups *cgs = userdata;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			/* Looked up per event: a callback may free cgroups. */
			for (struct cgroup *c = cgs->all; c; c = c->next)
				if (c->wd == ev->wd && !c->orphan) {
					if (c->changed)
						c->changed(c->userdata);
					break;
				}
		}
	}
	sweep(cgs);
	return 0;
}

/* ---- Setting up ----------------------------------------------------------- */

static void describe(struct cgroups *cgs)
{
	char limits[256] = "";
	size_t used = 0;
	for (int i = 0; i < N_CTL; i++)
		if (cgs->v2[i] || cgs->v1[i])
			used += (size_t)snprintf(limits + used, sizeof(limits) - used, "%s%s%s",
						 used ? ", " : "", ctl_names[i],
						 cgs->v2[i] ? "" : " (v1)");
	snprintf(cgs->mode, sizeof(cgs->mode), "cgroup2 %s%s, limits: %s%s", cgs->base,
		 cgs->made_base ? "" : " (delegated)", used ? limits : "none",
		 cgs->has_kill ? "" : ", no cgroup.kill");
}

static void v1_setup(struct cgroups *cgs, char *const v1_mnt[N_CTL], char *const v1_own[N_CTL])
{
	for (int i = 0; i < N_CTL; i++) {
		if (cgs->v2[i] || !v1_mnt[i] || !v1_own[i])
			continue;
		char *dir;
		if (cgs->made_base) {
			if (asprintf(&dir, "%s%s/%s", v1_mnt[i],
				     strcmp(v1_own[i], "/") ? v1_own[i] : "",
				     basename_of(cgs->base)) < 0)
				continue;
			/* Already there: batond's own, made before it re-executed. */
			if (mkdir(dir, 0755) == 0 || errno == EEXIST)
				cgs->v1_made[i] = true;
			else {
				log_debug("cgroups: no v1 %s: mkdir %s: %s", ctl_names[i], dir,
					  strerror(errno));
				free(dir);
				continue;
			}
		} else if (asprintf(&dir, "%s%s", v1_mnt[i], v1_own[i]) < 0) {
			continue;
		}
		if (access(dir, W_OK) == 0)
			cgs->v1[i] = dir;
		else
			free(dir);
	}
}

static void v2_enable(struct cgroups *cgs)
{
	char controllers[512];
	if (read_in(cgs->base, "cgroup.controllers", controllers, sizeof(controllers)) < 0)
		return;
	char list[520];
	snprintf(list, sizeof(list), " %s ", controllers);
	list[strcspn(list, "\n")] = ' ';
	for (int i = 0; i < N_CTL; i++) {
		char word[40], plus[40];
		snprintf(word, sizeof(word), " %s ", ctl_names[i]);
		snprintf(plus, sizeof(plus), "+%s", ctl_names[i]);
		if (strstr(list, word) &&
		    write_text(cgs->base, "cgroup.subtree_control", plus) == 0)
			cgs->v2[i] = true;
	}
}

/* Removes @dir and the directories below it that are empty, leaves first;
 * what has processes stays. */
static void remove_empty_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		char *sub;
		if (e->d_type != DT_DIR || e->d_name[0] == '.' ||
		    asprintf(&sub, "%s/%s", dir, e->d_name) < 0)
			continue;
		remove_empty_tree(sub);
		free(sub);
	}
	closedir(d);
	rmdir(dir);
}

/* What a batond started by hand and killed left under @parent: batond-PID
 * trees of a pid that is gone and whose supervisor leaf is empty, in cgroup2
 * and, once gone there, in the v1 hierarchies @v1_parents. Processes it left (its
 * orphans, which a batond started after it takes the listeners back from)
 * keep their directories until they are gone. */
static void remove_stale_bases(const char *parent, char *const v1_parents[N_CTL])
{
	DIR *d = opendir(parent);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		int pid;
		char tail;
		/* Its pid alive: a batond starting, or another process by now. */
		if (e->d_type != DT_DIR || sscanf(e->d_name, "batond-%d%c", &pid, &tail) != 1 ||
		    pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[PATH_MAX], text[256];
		snprintf(path, sizeof(path), "%s/%s/supervisor", parent, e->d_name);
		if (read_in(path, "cgroup.events", text, sizeof(text)) >= 0 &&
		    keyed(text, "populated") != 0)
			continue; /* a batond runs there */
		snprintf(path, sizeof(path), "%s/%s", parent, e->d_name);
		remove_empty_tree(path);
		if (access(path, F_OK) == 0)
			continue;
		log_info("cgroups: removed %s, left by a batond that is gone", path);
		for (int i = 0; i < N_CTL; i++)
			if (v1_parents[i]) {
				snprintf(path, sizeof(path), "%s/%s", v1_parents[i], e->d_name);
				remove_empty_tree(path);
			}
	}
	closedir(d);
}

/* Where batond's apps go: a directory it already made (re-executed, it is in
 * its leaf "supervisor"), the cgroup systemd delegated, or one it makes under
 * its own cgroup when started by hand. Returns 0, 1 for "none" with the reason
 * in @why, or a negative errno. */
static int choose_base(struct cgroups *cgs, const char *mnt, const char *own, const char *sd_v1,
		       char *why, size_t why_len)
{
	char *own_abs;
	if (asprintf(&own_abs, "%s%s", mnt, strcmp(own, "/") ? own : "") < 0)
		return -ENOMEM;
	char made_name[32];
	snprintf(made_name, sizeof(made_name), "batond-%d", (int)getpid());
	if (strcmp(basename_of(own), "supervisor") == 0) {
		cgs->base = parent_of(own_abs);
		cgs->base_rel = parent_of(own);
		cgs->made_base = cgs->base && strcmp(basename_of(cgs->base), made_name) == 0;
		cgs->origin = cgs->made_base ? parent_of(cgs->base) : NULL;
		free(own_abs);
		return cgs->base && cgs->base_rel ? 0 : -ENOMEM;
	}
	char *sd_dir = NULL;
	if (sd_v1 && asprintf(&sd_dir, "/sys/fs/cgroup/systemd%s", sd_v1) < 0)
		sd_dir = NULL;
	bool delegated = is_delegated(own_abs) || (sd_dir && is_delegated(sd_dir));
	free(sd_dir);
	if (delegated) {
		cgs->base = own_abs;
		cgs->base_rel = strdup(own);
		return cgs->base_rel ? 0 : -ENOMEM;
	}
	if (getppid() == 1 && getenv("INVOCATION_ID")) {
		snprintf(why, why_len, "batond's cgroup %s is not delegated to it (Delegate=yes)",
			 own_abs);
		free(own_abs);
		return 1;
	}
	cgs->base = join(own_abs, made_name);
	if (asprintf(&cgs->base_rel, "%s/%s", strcmp(own, "/") ? own : "", made_name) < 0)
		cgs->base_rel = NULL;
	cgs->origin = own_abs;
	if (!cgs->base || !cgs->base_rel)
		return -ENOMEM;
	if (mkdir(cgs->base, 0755) < 0 && errno != EEXIST) {
		snprintf(why, why_len, "cannot make %s: %s", cgs->base, strerror(errno));
		return 1;
	}
	cgs->made_base = true;
	return 0;
}

static void cgroups_free(struct cgroups *cgs)
{
	for (int i = 0; i < N_CTL; i++)
		free(cgs->v1[i]);
	sd_event_source_disable_unref(cgs->inotify_src);
	if (cgs->inotify_fd >= 0)
		close(cgs->inotify_fd);
	free(cgs->base);
	free(cgs->base_rel);
	free(cgs->origin);
	free(cgs);
}

/* Back where batond was, and its directories removed (made by hand only). */
static void unmake_base(struct cgroups *cgs)
{
	if (!cgs->made_base)
		return;
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (cgs->origin && write_text(cgs->origin, "cgroup.procs", pid) < 0)
		return;
	char *sup = join(cgs->base, "supervisor");
	if (sup)
		rmdir(sup);
	free(sup);
	rmdir(cgs->base);
	for (int i = 0; i < N_CTL; i++)
		if (cgs->v1_made[i])
			rmdir(cgs->v1[i]);
}

struct cgroups *cgroups_open(sd_event *event, int inotify_fd)
{
	char *v2_mnt = NULL, *v1_mnt[N_CTL] = {0}, *own = NULL, *v1_own[N_CTL] = {0}, *sd_v1 = NULL;
	char why[PATH_MAX + 128] = "";
	struct cgroups *cgs = calloc(1, sizeof(*cgs));
	if (!cgs) {
		if (inotify_fd >= 0)
			close(inotify_fd);
		return NULL;
	}
	cgs->event = event;
	cgs->inotify_fd = inotify_fd; /* closed with cgs if it is not used */
	find_mounts(&v2_mnt, v1_mnt);
	find_own(&own, v1_own, &sd_v1);
	int r = 1;
	if (!v2_mnt || !own)
		snprintf(why, sizeof(why), "no cgroup2 hierarchy is mounted");
	else
		r = choose_base(cgs, v2_mnt, own, sd_v1, why, sizeof(why));
	/* A re-executed batond is in its leaf already: moving a process costs the
	 * kernel a global lock (10-20 ms here), paid inside the exec's pause. */
	bool in_leaf = r == 0 && strcmp(basename_of(own), "supervisor") == 0;
	if (r == 0 && !in_leaf) {
		char *sup = join(cgs->base, "supervisor");
		char pid[16];
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (!sup)
			r = -ENOMEM;
		else if (mkdir(sup, 0755) < 0 && errno != EEXIST)
			r = -errno, snprintf(why, sizeof(why), "mkdir %s: %s", sup, strerror(-r));
		else if ((r = write_text(sup, "cgroup.procs", pid)) < 0)
			snprintf(why, sizeof(why), "cannot move batond into %s: %s", sup,
				 strerror(-r));
		free(sup);
		if (r < 0) {
			unmake_base(cgs);
			r = 1;
		}
	}
	if (r == 0) {
		char kill_path[PATH_MAX];
		snprintf(kill_path, sizeof(kill_path), "%s/cgroup.kill", cgs->base);
		cgs->has_kill = access(kill_path, W_OK) == 0;
		v2_enable(cgs);
		v1_setup(cgs, v1_mnt, v1_own);
		if (cgs->inotify_fd < 0)
			cgs->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (cgs->inotify_fd < 0 ||
		    sd_event_add_io(event, &cgs->inotify_src, cgs->inotify_fd, EPOLLIN, on_inotify,
				    cgs) < 0) {
			snprintf(why, sizeof(why), "inotify: %s", strerror(errno));
			unmake_base(cgs);
			r = 1;
		}
	}
	free(v2_mnt);
	free(own);
	free(sd_v1);
	for (int i = 0; i < N_CTL; i++) {
		free(v1_mnt[i]);
		free(v1_own[i]);
	}
	if (r != 0) {
		if (r > 0)
			log_info("cgroups: none used, workers are tracked by process group: %s",
				 why);
		cgroups_free(cgs);
		return NULL;
	}
	describe(cgs);
	log_info("cgroups: %s", cgs->mode);
	if (cgs->made_base && cgs->origin) {
		char *v1_parents[N_CTL] = {0};
		for (int i = 0; i < N_CTL; i++)
			if (cgs->v1[i])
				v1_parents[i] = parent_of(cgs->v1[i]);
		remove_stale_bases(cgs->origin, v1_parents);
		for (int i = 0; i < N_CTL; i++)
			free(v1_parents[i]);
	}
	return cgs;
}

void cgroups_close(struct cgroups *cgs)
{
	if (!cgs)
		return;
	sweep(cgs);
	while (cgs->all) {
		log_debug("cgroups: %s/%s is not empty, left in place", cgs->base, cgs->all->path);
		destroy(cgs->all);
	}
	unmake_base(cgs);
	cgroups_free(cgs);
}

int cgroups_inotify_fd(const struct cgroups *cgs)
{
	return cgs ? cgs->inotify_fd : -1;
}

const char *cgroups_mode(const struct cgroups *cgs)
{
	return cgs ? cgs->mode : "none (process groups)";
}

const char *cgroups_base(const struct cgroups *cgs)
{
	return cgs->base;
}

/* ---- Generations and workers ---------------------------------------------- */

static int make_dir(const char *root, const char *rel)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", root, rel) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* A limit, or the controller's "no limit" when @set is false. */
static void limit(struct cgroups *cgs, const struct app_cfg *cfg, const char *app, int ctl,
		  bool set, uint64_t value)
{
	char dir[PATH_MAX], text[32];
	const char *file;
	bool v2 = cgs->v2[ctl];
	if (!v2 && !cgs->v1[ctl]) {
		if (set)
			log_warn("%s: %s-%s is not applied: batond has no %s controller", cfg->name,
				 ctl_names[ctl], ctl == CTL_CPU ? "weight" : "max", ctl_names[ctl]);
		return;
	}
	snprintf(dir, sizeof(dir), "%s/%s", v2 ? cgs->base : cgs->v1[ctl], app);
	/* No limit and no v1 directory made for one: nothing to reset. */
	if (!v2 && !set && access(dir, F_OK) < 0)
		return;
	switch (ctl) {
	case CTL_MEMORY:
		file = v2 ? "memory.max" : "memory.limit_in_bytes";
		snprintf(text, sizeof(text),
			 set  ? "%llu"
			 : v2 ? "max"
			      : "-1",
			 (unsigned long long)value);
		break;
	case CTL_PIDS:
		file = "pids.max";
		snprintf(text, sizeof(text), set ? "%llu" : "max", (unsigned long long)value);
		break;
	default:
		/* cpu.shares is 1024 for cpu.weight's 100. */
		file = v2 ? "cpu.weight" : "cpu.shares";
		value = set ? value : 100;
		snprintf(text, sizeof(text), "%llu",
			 (unsigned long long)(v2		       ? value
					      : value * 1024 / 100 < 2 ? 2
								       : value * 1024 / 100));
	}
	int r = write_text(dir, file, text);
	if (r < 0)
		log_warn("%s: cannot write %s to %s/%s: %s", cfg->name, text, dir, file,
			 strerror(-r));
}

static struct cgroup *cgroup_alloc(struct cgroups *cgs, char *path)
{
	struct cgroup *c = path ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		free(path);
		return NULL;
	}
	*c = (struct cgroup){.cgs = cgs, .path = path, .wd = -1, .next = NULL};
	/* At the end: sweep removes the oldest first. */
	struct cgroup **p = &cgs->all;
	while (*p)
		p = &(*p)->next;
	*p = c;
	return c;
}

int cgroup_gen_new(struct cgroups *cgs, const struct app_cfg *cfg, unsigned id, struct cgroup **ret)
{
	char app[300], gen[340];
	snprintf(app, sizeof(app), "app-%s", cfg->name);
	snprintf(gen, sizeof(gen), "%s/gen-%u", app, id);
	int r = make_dir(cgs->base, app);
	if (r < 0) {
		log_err("%s: mkdir %s/%s: %s", cfg->name, cgs->base, app, strerror(-r));
		return r;
	}
	/* Its generations count memory and tasks of their own. */
	for (int i = 0; i < N_CTL; i++) {
		char dir[PATH_MAX], plus[40];
		snprintf(dir, sizeof(dir), "%s/%s", cgs->base, app);
		snprintf(plus, sizeof(plus), "+%s", ctl_names[i]);
		if (cgs->v2[i] && (r = write_text(dir, "cgroup.subtree_control", plus)) < 0)
			log_warn("%s: cannot enable %s in %s: %s", cfg->name, ctl_names[i], dir,
				 strerror(-r));
	}
	/* A v1 hierarchy only for a limit the app sets: making a v1 cgroup is
	 * slow (a memory one took 7-8 ms here, in batond's loop, at every
	 * upgrade), and without one the generation's memory is not counted. */
	bool want[N_CTL] = {
	    [CTL_MEMORY] = cfg->memory_max.set && cfg->memory_max.value != RLIM_INFINITY,
	    [CTL_PIDS] = cfg->tasks_max.set && cfg->tasks_max.value != RLIM_INFINITY,
	    [CTL_CPU] = cfg->cpu_weight != 0,
	};
	for (int i = 0; i < N_CTL; i++)
		if (want[i] && cgs->v1[i] && (r = make_dir(cgs->v1[i], app)) < 0)
			log_warn("%s: mkdir %s/%s: %s", cfg->name, cgs->v1[i], app, strerror(-r));
	limit(cgs, cfg, app, CTL_MEMORY, want[CTL_MEMORY], cfg->memory_max.value);
	limit(cgs, cfg, app, CTL_PIDS, want[CTL_PIDS], cfg->tasks_max.value);
	limit(cgs, cfg, app, CTL_CPU, want[CTL_CPU], cfg->cpu_weight);
	if ((r = make_dir(cgs->base, gen)) < 0) {
		log_err("%s: mkdir %s/%s: %s", cfg->name, cgs->base, gen, strerror(-r));
		return r;
	}
	bool used[N_CTL] = {0};
	for (int i = 0; i < N_CTL; i++) {
		if (!want[i] || !cgs->v1[i])
			continue;
		if ((r = make_dir(cgs->v1[i], gen)) < 0)
			log_warn("%s: mkdir %s/%s: %s", cfg->name, cgs->v1[i], gen, strerror(-r));
		else
			used[i] = true;
	}
	struct cgroup *c = cgroup_alloc(cgs, strdup(gen));
	if (!c)
		return -ENOMEM;
	c->is_gen = true;
	memcpy(c->v1_used, used, sizeof(used));
	*ret = c;
	return 0;
}

int cgroup_worker_new(struct cgroup *gen, unsigned index, cgroup_changed_t changed, void *userdata,
		      struct cgroup **ret)
{
	struct cgroups *cgs = gen->cgs;
	char *path;
	if (asprintf(&path, "%s/worker-%u", gen->path, index) < 0)
		return -ENOMEM;
	int r = make_dir(cgs->base, path);
	if (r < 0) {
		log_err("mkdir %s/%s: %s", cgs->base, path, strerror(-r));
		free(path);
		return r;
	}
	struct cgroup *c = cgroup_alloc(cgs, path);
	if (!c)
		return -ENOMEM;
	c->gen = gen;
	c->changed = changed;
	c->userdata = userdata;
	if ((r = watch(c)) < 0) {
		log_err("inotify_add_watch %s/%s/cgroup.events: %s", cgs->base, c->path,
			strerror(-r));
		c->orphan = true;
		sweep(cgs);
		return r;
	}
	*ret = c;
	return 0;
}

int cgroup_join_fds(const struct cgroup *worker, int fds[CGROUP_JOIN_MAX])
{
	const struct cgroups *cgs = worker->cgs;
	char path[PATH_MAX];
	int n = 0;
	for (int i = -1; i < N_CTL; i++) {
		if (i < 0)
			snprintf(path, sizeof(path), "%s/%s", cgs->base, worker->path);
		else if (cgs->v1[i] && worker->gen && worker->gen->v1_used[i])
			snprintf(path, sizeof(path), "%s/%s/cgroup.procs", cgs->v1[i],
				 worker->gen->path);
		else
			continue;
		int fd =
		    open(path, i < 0 ? O_RDONLY | O_DIRECTORY | O_CLOEXEC : O_WRONLY | O_CLOEXEC);
		if (fd < 0 && i >= 0) {
			/* A v1 directory someone else removed (a systemd booted in a
			 * namespace trims empty cgroups of the hierarchies it shares):
			 * its limits are lost, the worker is still tracked. */
			log_warn("%s: %s: the worker runs without the app's v1 %s limit", path,
				 strerror(errno), ctl_names[i]);
			continue;
		}
		if (fd < 0) {
			int r = -errno;
			log_err("%s: %s", path, strerror(errno));
			while (n > 0)
				close(fds[--n]);
			return r;
		}
		fds[n++] = fd;
	}
	return n;
}

bool cgroup_populated(const struct cgroup *c)
{
	char dir[PATH_MAX], text[256];
	snprintf(dir, sizeof(dir), "%s/%s", c->cgs->base, c->path);
	if (read_in(dir, "cgroup.events", text, sizeof(text)) < 0)
		return false;
	return keyed(text, "populated") == 1;
}

int cgroup_kill(const struct cgroup *c)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", c->cgs->base, c->path);
	if (c->cgs->has_kill)
		return write_text(dir, "cgroup.kill", "1");
	/* Before Linux 5.14: each process listed now (a leaf's; a generation's are
	 * in its workers' leaves, killed by the caller one by one). */
	char text[8192];
	if (read_in(dir, "cgroup.procs", text, sizeof(text)) < 0)
		return -errno;
	for (char *p = text; *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != 0))
		kill((pid_t)strtol(p, NULL, 10), SIGKILL);
	return 0;
}

bool cgroup_has_pid(const struct cgroup *c, pid_t pid)
{
	char path[64], text[4096], want[PATH_MAX];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if (read_text(path, text, sizeof(text)) < 0)
		return false;
	int n = snprintf(want, sizeof(want), "\n0::%s/%s", c->cgs->base_rel, c->path);
	char line[PATH_MAX + 8];
	snprintf(line, sizeof(line), "\n%s", text);
	const char *at = strstr(line, want);
	return at && (at[n] == '\n' || at[n] == '/' || at[n] == 0);
}

static uint64_t count_lines(const char *dir, const char *file)
{
	char text[16384];
	ssize_t n = read_in(dir, file, text, sizeof(text));
	if (n < 0)
		return 0;
	uint64_t lines = 0;
	for (ssize_t i = 0; i < n; i++)
		lines += text[i] == '\n';
	return lines;
}

void cgroup_stats(const struct cgroup *gen, struct cgroup_stats *ret)
{
	const struct cgroups *cgs = gen->cgs;
	char dir[PATH_MAX], text[1024];
	*ret = (struct cgroup_stats){UINT64_MAX, UINT64_MAX};
	snprintf(dir, sizeof(dir), "%s/%s", cgs->base, gen->path);
	if (read_in(dir, "cpu.stat", text, sizeof(text)) >= 0)
		ret->cpu_usec = keyed(text, "usage_usec");
	if (cgs->v2[CTL_MEMORY] && read_in(dir, "memory.current", text, sizeof(text)) >= 0) {
		ret->memory_bytes = strtoull(text, NULL, 10);
	} else if (!cgs->v2[CTL_MEMORY] && cgs->v1[CTL_MEMORY] && gen->v1_used[CTL_MEMORY]) {
		snprintf(dir, sizeof(dir), "%s/%s", cgs->v1[CTL_MEMORY], gen->path);
		if (read_in(dir, "memory.usage_in_bytes", text, sizeof(text)) >= 0)
			ret->memory_bytes = strtoull(text, NULL, 10);
	}
}

uint64_t cgroup_tasks(const struct cgroup *c)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", c->cgs->base, c->path);
	return count_lines(dir, "cgroup.threads");
}

const char *cgroup_path(const struct cgroup *c)
{
	return c->path;
}

void cgroup_free(struct cgroup *c)
{
	if (!c)
		return;
	c->orphan = true;
	c->changed = NULL;
	if (!c->is_gen && cgroup_populated(c))
		cgroup_kill(c);
	sweep(c->cgs);
}
