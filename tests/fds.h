/* SPDX-License-Identifier: MIT */
/* Open fds of a process, for the tests' leak checks: one definition for the
 * unit and the integration tests. */
#pragma once

#include <dirent.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

/* Open fds of @pid (0 for this process), not counting the one used to count.
 * Returns -1 if the process is gone. */
static inline int count_fds(pid_t pid)
{
	char path[64];
	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/fd");
	else
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - (pid == 0 || pid == getpid());
}

