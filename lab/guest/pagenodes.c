// SPDX-License-Identifier: GPL-2.0-only
/*
 * pagenodes <pid> <start>-<end> [...]: where each 4 KiB page of the given ranges (hex, half-open)
 * of a process sits, asked from the kernel with move_pages(2) in query mode. One line per range:
 * one character per page, the node number ('0'-'9'), '-' not present, '?' any other status.
 * Run in the lab by the engine test: an independent witness of vmtier's moves (it shares no code
 * with vmtier), cheap enough to sample every second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096UL
#define BATCH 4096

int main(int argc, char **argv)
{
	static void *pages[BATCH];
	static int status[BATCH];
	long pid;
	int i;

	if (argc < 3) {
		fprintf(stderr, "usage: pagenodes <pid> <start>-<end> [...]\n");
		return 2;
	}
	pid = strtol(argv[1], NULL, 10);
	for (i = 2; i < argc; i++) {
		char *dash;
		unsigned long start = strtoul(argv[i], &dash, 16), end, a;

		if (*dash != '-') {
			fprintf(stderr, "bad range %s\n", argv[i]);
			return 2;
		}
		end = strtoul(dash + 1, NULL, 16);
		for (a = start; a < end;) {
			unsigned long n = 0, k;

			while (a < end && n < BATCH) {
				pages[n++] = (void *)a;
				a += PAGE;
			}
			if (syscall(SYS_move_pages, pid, n, pages, NULL, status, 0) < 0) {
				fprintf(stderr, "move_pages: %s\n", strerror(errno));
				return 1;
			}
			for (k = 0; k < n; k++) {
				int s = status[k];

				putchar(s >= 0 && s <= 9 ? '0' + s : s == -ENOENT ? '-' : '?');
			}
		}
		putchar('\n');
	}
	return 0;
}
