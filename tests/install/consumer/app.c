/* SPDX-License-Identifier: MIT */
/* Built against an installed libbaton (tests/install/run.sh): run alone, not under
 * batond or systemd, it prints -6 (-ENXIO: no listener "http"). */
#include <baton.h>
#include <stdio.h>

int main(void)
{
	printf("%d\n", baton_listener("http"));
	return 0;
}
