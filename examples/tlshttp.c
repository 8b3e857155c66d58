/* SPDX-License-Identifier: MIT */
/* tlshttp: an HTTPS server for batond's dispatch mode (docs/guides/https.md).
 *
 *   tlshttp --cert CHAIN.pem --key KEY.pem
 *
 * batond accepts each TCP connection and sends it to a ready worker over the
 * baton channel *before* any TLS byte was read: the worker does the whole
 * handshake itself, so no TLS state ever moves between processes, and an
 * upgrade needs nothing from TLS. Each generation reads the certificate and key
 * at start: a renewed certificate goes live with `batonctl upgrade`, and one
 * that does not load fails the new generation, which batond rolls back.
 *
 * Every request gets "hello over TLS from baton generation N pid P" with
 * Connection: close. On DRAIN (or SIGTERM) it stops taking new work, finishes
 * the connections it has and exits. One poll loop over a signalfd, the baton
 * channel and the connections; each connection's TLS is non-blocking. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <baton.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS	1024
#define IDLE_TIMEOUT_MS 10000
#define FIXED_SLOTS	2 /* signalfd, baton channel */

enum conn_state { C_HANDSHAKE, C_READ, C_WRITE, C_SHUTDOWN };

struct conn {
	SSL *ssl;
	enum conn_state state;
	size_t got;
	char request[4096];
	size_t sent;
	long long deadline_ms;
};

static struct pollfd pfds[FIXED_SLOTS + MAX_CONNS];
static struct conn conns[MAX_CONNS];
static size_t n_conns;
static char response[256];
static size_t response_len;
static bool draining;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void make_response(void)
{
	const char *gen = getenv("BATON_GENERATION");
	char body[128];
	int body_len =
	    snprintf(body, sizeof(body), "hello over TLS from baton generation %s pid %d\n",
		     gen ? gen : "0", (int)getpid());
	response_len = (size_t)snprintf(response, sizeof(response),
					"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
					"Content-Length: %d\r\nConnection: close\r\n\r\n%s",
					body_len, body);
}

/* The first OpenSSL error queued, for a human; clears the queue. */
static const char *tls_error(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return e ? buf : "unknown error";
}

static SSL_CTX *tls_context(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		fprintf(stderr, "tlshttp: SSL_CTX_new: %s\n", tls_error());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A response may go out in pieces when the socket buffer is full. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		fprintf(stderr, "tlshttp: certificate %s: %s\n", cert, tls_error());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "tlshttp: key %s: %s\n", key, tls_error());
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "tlshttp: key %s does not match certificate %s: %s\n", key, cert,
			tls_error());
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Takes @fd, a connection batond accepted for us: closed on every failure. */
static void add_conn_take(SSL_CTX *ctx, int fd)
{
	SSL *ssl = n_conns < MAX_CONNS ? SSL_new(ctx) : NULL;
	if (!ssl || SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		close(fd);
		baton_conn_done(1);
		return;
	}
	/* Ours alone (batond kept no copy): non-blocking, so one slow client
	 * never stalls the others. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	SSL_set_accept_state(ssl);
	pfds[FIXED_SLOTS + n_conns] = (struct pollfd){.fd = fd, .events = POLLIN};
	conns[n_conns] = (struct conn){
	    .ssl = ssl, .state = C_HANDSHAKE, .deadline_ms = now_ms() + IDLE_TIMEOUT_MS};
	n_conns++;
}

static void drop_conn(size_t i)
{
	SSL_free(conns[i].ssl);
	close(pfds[FIXED_SLOTS + i].fd);
	baton_conn_done(1);
	n_conns--;
	pfds[FIXED_SLOTS + i] = pfds[FIXED_SLOTS + n_conns];
	conns[i] = conns[n_conns];
}

/* What to wait for after an OpenSSL call returned @r: true with the poll events
 * set when it only needs the socket to be ready, false when the connection is
 * finished (an error, or the client went away). */
static bool tls_wait(struct conn *c, struct pollfd *p, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		p->events = POLLIN;
		return true;
	case SSL_ERROR_WANT_WRITE:
		p->events = POLLOUT;
		return true;
	default:
		ERR_clear_error();
		return false;
	}
}

/* Moves connection @i as far as it goes without blocking: handshake, request
 * head, response, close_notify. Returns false when it is finished. */
static bool serve(size_t i)
{
	struct pollfd *p = &pfds[FIXED_SLOTS + i];
	struct conn *c = &conns[i];
	for (;;) {
		int r;
		switch (c->state) {
		case C_HANDSHAKE:
			r = SSL_do_handshake(c->ssl);
			if (r != 1)
				return tls_wait(c, p, r);
			c->state = C_READ;
			break;
		case C_READ:
			r = SSL_read(c->ssl, c->request + c->got,
				     (int)(sizeof(c->request) - 1 - c->got));
			if (r <= 0)
				return tls_wait(c, p, r);
			c->got += (size_t)r;
			c->request[c->got] = 0;
			if (strstr(c->request, "\r\n\r\n") || c->got == sizeof(c->request) - 1)
				c->state = C_WRITE;
			break;
		case C_WRITE:
			r = SSL_write(c->ssl, response + c->sent, (int)(response_len - c->sent));
			if (r <= 0)
				return tls_wait(c, p, r);
			c->sent += (size_t)r;
			if (c->sent == response_len)
				c->state = C_SHUTDOWN;
			break;
		case C_SHUTDOWN:
			/* Our close_notify; the client's is not waited for (the response
			 * has a length, and the client closes next). */
			r = SSL_shutdown(c->ssl);
			return r < 0 && tls_wait(c, p, r);
		}
	}
}

/* Stop taking new work: batond sends a draining worker no more connections. */
static void stop_accepting(void)
{
	if (!draining)
		baton_notify("STOPPING=1");
	draining = true;
}

static void handle_baton_events(SSL_CTX *ctx)
{
	struct baton_event ev;
	int r;
	while ((r = baton_next_event(&ev)) != 0) {
		if (r == -EPROTO || r == -EBADMSG || r == -EMSGSIZE)
			continue; /* a bad message was dropped */
		if (r < 0) {
			pfds[1].fd = -1; /* batond is gone: finish what we have */
			stop_accepting();
			return;
		}
		if (ev.type == BATON_EVENT_DRAIN)
			stop_accepting();
		else if (ev.type == BATON_EVENT_CONN)
			add_conn_take(ctx, ev.fd);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: tlshttp --cert CHAIN.pem --key KEY.pem\n"
		   "An HTTPS server for batond's dispatch mode (app mode = dispatch).\n");
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	static const struct option longopts[] = {
	    {"cert", required_argument, NULL, 'c'},
	    {"key", required_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!cert || !key || optind < argc) {
		usage(stderr);
		return 2;
	}
	int channel = baton_fd();
	if (channel < 0) {
		fprintf(stderr,
			"tlshttp: no channel to batond (%s): run it under batond with "
			"mode = dispatch\n",
			strerror(-channel));
		return 2;
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	/* A client that resets while we write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, "tlshttp: signalfd: %s\n", strerror(errno));
		return 1;
	}
	/* Before READY=1: a certificate that does not load fails this generation. */
	SSL_CTX *ctx = tls_context(cert, key);
	if (!ctx)
		return 1;
	make_response();
	pfds[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
	pfds[1] = (struct pollfd){.fd = channel, .events = POLLIN};
	baton_ready();
	handle_baton_events(ctx); /* anything queued before we polled */

	while (!draining || n_conns > 0) {
		int n = poll(pfds, FIXED_SLOTS + n_conns, 1000);
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "tlshttp: poll: %s\n", strerror(errno));
			return 1;
		}
		if (n > 0 && pfds[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				stop_accepting();
		}
		if (n > 0 && pfds[1].fd >= 0 && pfds[1].revents)
			handle_baton_events(ctx);
		long long now = now_ms();
		for (size_t i = n_conns; i-- > 0;) {
			bool keep = true;
			if (pfds[FIXED_SLOTS + i].revents)
				keep = serve(i);
			if (keep && now > conns[i].deadline_ms)
				keep = false; /* idle too long */
			if (!keep)
				drop_conn(i);
		}
	}
	SSL_CTX_free(ctx);
	close(sfd);
	baton_close();
	return 0;
}
