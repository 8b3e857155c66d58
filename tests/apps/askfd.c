/* A libbaton worker for tests: asks for each listener named on the command line,
 * writes what it got to OUTFILE ("NAME fd N port P" or "NAME error MESSAGE"),
 * says READY=1 and waits for SIGTERM. Usage: askfd OUTFILE NAME... */
#include <baton.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: askfd OUTFILE NAME...\n");
		return 2;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return 1;
	for (int i = 2; i < argc; i++) {
		int fd = baton_listener(argv[i]);
		if (fd < 0) {
			fprintf(f, "%s error %s\n", argv[i], strerror(-fd));
			continue;
		}
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		getsockname(fd, (struct sockaddr *)&sa, &len);
		fprintf(f, "%s fd %d port %d\n", argv[i], fd, ntohs(sa.sin_port));
	}
	fclose(f);
	rename(tmp, argv[1]);
	baton_ready();
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sig;
	sigwait(&mask, &sig);
	baton_close();
	return 0;
}
