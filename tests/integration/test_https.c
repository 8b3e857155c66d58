/* SPDX-License-Identifier: MIT */
/* HTTPS in dispatch mode (docs/guides/https.md): examples/tlshttp does the TLS
 * handshake on connections batond accepted and passed before any TLS byte, so
 * upgrades under TLS load lose nothing; a certificate that does not load fails
 * the new generation, which is rolled back. The certificate is made here with
 * the openssl command; the load is loadgen --tls, checking it. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define UPGRADES 10

struct tls_files {
	char cert[400], key[400];
};

/* A self-signed certificate for IP 127.0.0.1, valid for a day. */
static void make_certificate(const struct batond *b, struct tls_files *t)
{
	snprintf(t->cert, sizeof(t->cert), "%s/cert.pem", b->dir);
	snprintf(t->key, sizeof(t->key), "%s/key.pem", b->dir);
	char cmd[1400];
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
		 "-keyout %s -out %s 2>&1",
		 t->key, t->cert);
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("%s: exit %d", cmd, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
}

/* The body of GET / over TLS with curl, checking the certificate; 0 or curl's
 * exit status. */
static int https_get(const struct batond *b, const struct tls_files *t, char *body, size_t len)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "curl -sS --max-time 5 --cacert %s https://127.0.0.1:%d/ 2>&1",
		 t->cert, b->port);
	FILE *p = popen(cmd, "re");
	assert_non_null(p);
	size_t n = fread(body, 1, len - 1, p);
	body[n] = 0;
	int rc = pclose(p);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Waits (bounded) until an HTTPS request is answered by generation @gen. */
static void wait_serving(const struct batond *b, const struct tls_files *t, long long gen)
{
	char body[512], want[64];
	snprintf(want, sizeof(want), "generation %lld ", gen);
	long long deadline = now_ms() + 30000;
	while (https_get(b, t, body, sizeof(body)) != 0 || !strstr(body, want)) {
		if (now_ms() > deadline) {
			batond_dump_log(b);
			fail_msg("no answer from generation %lld over TLS: %s", gen, body);
		}
	}
}

static void ten_upgrades_under_tls_load_fail_no_request(void **state)
{
	struct batond b;
	struct tls_files t;
	batond_prepare(&b);
	make_certificate(&b, &t);
	char conf[2048];
	snprintf(conf, sizeof(conf),
		 "listener https { address = \"tcp://127.0.0.1:@PORT@\" }\n"
		 "app web {\n"
		 "  exec = { \"" TLSHTTP_PATH "\", \"--cert\", \"%s\", \"--key\", \"%s\" }\n"
		 "  listeners = { \"https\" }\n"
		 "  mode = dispatch\n"
		 "  workers = 2\n"
		 "}\n",
		 t.cert, t.key);
	batond_write_config(&b, conf);
	batond_start(&b);
	assert_true(wait_workers(&b, "ready", 2, 10000));
	wait_serving(&b, &t, 1);
	/* One upgrade first: from then on batond keeps the replaced generation's
	 * program pinned (an fd) for a rollback, and its fd count is the steady
	 * one. */
	char out[2048];
	if (batonctl(&b, out, sizeof(out), "upgrade", "--wait-drain", "web", NULL) != 0)
		fail_msg("first upgrade: %s", out);
	wait_serving(&b, &t, 2);
	int fds_before = count_fds_settled(b.pid);

	char lg_out[400];
	snprintf(lg_out, sizeof(lg_out), "%s/loadgen.out", b.dir);
	const char *const tls[] = {"--tls", "--tls-ca", t.cert, NULL};
	pid_t lg = loadgen_start_with(&b, 8, LOADGEN_CEILING_MS, lg_out, tls);
	for (int i = 1; i <= UPGRADES; i++) {
		if (batonctl(&b, out, sizeof(out), "upgrade", "web", NULL) != 0) {
			batond_dump_log(&b);
			fail_msg("upgrade %d: %s", i, out);
		}
		wait_serving(&b, &t, 2 + i);
	}
	long ok, failed;
	assert_int_equal(loadgen_stop(lg, lg_out, &ok, &failed), 0);
	assert_int_equal(failed, 0);
	assert_true(ok > 0);
	assert_int_equal(app_status(&b, "web", "serving"), 2 + UPGRADES);
	/* Every connection batond accepted was handed over and closed. */
	assert_int_equal(count_fds_when(b.pid, fds_before, 10000), fds_before);

	/* A certificate that does not load: the new generation fails before
	 * READY=1 and the running one serves on. */
	FILE *f = fopen(t.key, "we");
	assert_non_null(f);
	fputs("not a key\n", f);
	assert_int_equal(fclose(f), 0);
	int rc = batonctl(&b, out, sizeof(out), "upgrade", "web", NULL);
	print_message("a bad key: batonctl upgrade: exit %d: %s", rc, out);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(out, "still serving"));
	assert_true(batond_log_contains(&b, "tlshttp: key "));
	wait_serving(&b, &t, 2 + UPGRADES);
	assert_int_equal(batond_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    harness_test(ten_upgrades_under_tls_load_fail_no_request),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
