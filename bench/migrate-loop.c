// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench:migrate's baseline: the plainest C loop over move_pages(2) for another process's pages,
 * batches of --batch pages (vmtier's default, 1024), no status bookkeeping beyond counting pages
 * that ended on the target. Times only the move_pages calls (CLOCK_MONOTONIC) and prints one
 * JSON line: {"ns":..., "pages":..., "onTarget":..., "calls":...}.
 *
 *   migrate-loop <pid> <base-hex> <bytes> <node> [batch]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MPOL_MF_MOVE (1 << 1)

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s <pid> <base-hex> <bytes> <node> [batch]\n", argv[0]);
		return 2;
	}
	int pid = atoi(argv[1]);
	unsigned long base = strtoul(argv[2], NULL, 16);
	unsigned long pages = strtoul(argv[3], NULL, 0) / 4096;
	int node = atoi(argv[4]);
	unsigned long batch = argc > 5 ? strtoul(argv[5], NULL, 0) : 1024;
	void **addrs = malloc(batch * sizeof(*addrs));
	int *nodes = malloc(batch * sizeof(*nodes));
	int *status = malloc(batch * sizeof(*status));
	unsigned long on_target = 0, calls = 0;
	struct timespec t0, t1;

	if (!addrs || !nodes || !status || !batch)
		return 1;
	for (unsigned long i = 0; i < batch; i++)
		nodes[i] = node;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long off = 0; off < pages; off += batch) {
		unsigned long n = pages - off < batch ? pages - off : batch;

		for (unsigned long i = 0; i < n; i++)
			addrs[i] = (void *)(base + (off + i) * 4096);
		long rc = syscall(SYS_move_pages, pid, n, addrs, nodes, status, MPOL_MF_MOVE);

		calls++;
		if (rc < 0) {
			perror("migrate-loop: move_pages");
			return 1;
		}
		for (unsigned long i = 0; i < n; i++)
			on_target += status[i] == node;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("{\"ns\":%ld,\"pages\":%lu,\"onTarget\":%lu,\"calls\":%lu}\n",
	       (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec), pages, on_target, calls);
	return 0;
}
