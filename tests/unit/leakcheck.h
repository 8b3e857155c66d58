/* SPDX-License-Identifier: MIT */
/* cmocka per-test setup and teardown that fail a test which leaves an fd open.
 * Include after cmocka.h. */
#pragma once

#include "fds.h"

static int leakcheck_fds;

static int leakcheck_setup(void **state)
{
	(void)state;
	leakcheck_fds = count_fds(0);
	return 0;
}

static int leakcheck_teardown(void **state)
{
	(void)state;
	assert_int_equal(count_fds(0), leakcheck_fds);
	return 0;
}
