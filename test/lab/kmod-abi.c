// SPDX-License-Identifier: GPL-2.0-only
/*
 * Raw /dev/vmtier_idle calls for the kmod lab tests, where KmodTracker's choices (it always
 * clears, reads 64 KiB) would hide what is tested:
 *   kmod-abi target <fd> <pid> <flags>
 *       VMTIER_IDLE_IOC_SET_TARGET on an fd this process inherited (opened by someone else,
 *       e.g. a root shell before setpriv dropped privileges). Prints {"errno":N} (0 = success).
 *   kmod-abi walk <pid> <flags> <start> <end> <count>
 *       opens the device, targets <pid>, reads [start, end) with <count>-byte reads. Prints
 *       {"errno":N,"reads":..,"reached":"0x..","present":pages,"accessed":pages,"huge":pages,
 *       "gigantic":1 GiB records (units),"cleared":A bits,"lockTakes":mmu_lock acquisitions},
 *       "reached" being where the reads stopped (end, or where one made no progress); the last
 *       two from GET_INFO.
 * Addresses are hex (0x...) or decimal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "../../kmod/vmtier_idle_uapi.h"

static int set_target(int fd, int pid, unsigned flags)
{
	struct vmtier_idle_target t = { .pid = pid, .flags = flags };

	return ioctl(fd, VMTIER_IDLE_IOC_SET_TARGET, &t) ? errno : 0;
}

/* Decodes one read's stream (kmod/README.md), counting 4 KiB pages; returns the end mark. */
static uint64_t decode(const uint8_t *b, size_t n, uint64_t cur, uint64_t *present, uint64_t *accessed, uint64_t *huge,
		       uint64_t *gigantic)
{
	static const uint64_t unit[16] = { 1, 512, 262144, 0, 0, 1, 512, 512, 1, 512, 0, 262144 };
	size_t i = 0;

	while (i < n) {
		unsigned type = b[i] >> 4, k = b[i] & 15;

		if (b[i] == VMTIER_IDLE_CMD_SET_ADDR) {
			uint64_t a = 0;

			for (int j = 1; j <= 8; j++)
				a = a << 8 | b[i + j];
			cur = a;
			i += 9;
			continue;
		}
		uint64_t pages = unit[type] * k;
		if (type != VMTIER_IDLE_PTE_HOLE && type != VMTIER_IDLE_PMD_HOLE) {
			*present += pages;
			if (type <= VMTIER_IDLE_PUD_ACCESSED)
				*accessed += pages;
			if (unit[type] > 1 && type != VMTIER_IDLE_PMD_IDLE_PTES)
				*huge += pages;
			if (type == VMTIER_IDLE_PUD_ACCESSED || type == VMTIER_IDLE_PUD_IDLE)
				*gigantic += k;
		}
		cur += pages * 4096;
		i++;
	}
	return cur;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "target")) {
		printf("{\"errno\":%d}\n", set_target(atoi(argv[2]), atoi(argv[3]), strtoul(argv[4], 0, 0)));
		return 0;
	}
	if (argc == 7 && !strcmp(argv[1], "walk")) {
		uint64_t start = strtoull(argv[4], 0, 0), end = strtoull(argv[5], 0, 0), limit = end;
		size_t count = strtoul(argv[6], 0, 0);
		uint64_t present = 0, accessed = 0, huge = 0, gigantic = 0, cur = start;
		unsigned long reads = 0;
		uint8_t *buf = malloc(count);
		int fd = open("/dev/vmtier_idle", O_RDONLY), err = 0;

		if (fd < 0 || !buf)
			err = errno;
		if (!err)
			err = set_target(fd, atoi(argv[2]), strtoul(argv[3], 0, 0));
		if (!err && ioctl(fd, VMTIER_IDLE_IOC_SET_LIMIT, &limit))
			err = errno;
		while (!err && cur < end) {
			ssize_t n = pread(fd, buf, count, (off_t)cur);
			uint64_t next;

			if (n < 0) {
				err = errno;
				break;
			}
			reads++;
			next = decode(buf, n, cur, &present, &accessed, &huge, &gigantic);
			if (next <= cur)
				break;	/* no progress: "reached" says where */
			cur = next;
		}
		struct vmtier_idle_info info = { 0 };

		if (fd >= 0)
			ioctl(fd, VMTIER_IDLE_IOC_GET_INFO, &info);
		printf("{\"errno\":%d,\"reads\":%lu,\"reached\":\"0x%llx\",\"present\":%llu,\"accessed\":%llu,\"huge\":%llu,"
		       "\"gigantic\":%llu,\"cleared\":%llu,\"lockTakes\":%llu}\n",
		       err, reads, (unsigned long long)cur, (unsigned long long)present,
		       (unsigned long long)accessed, (unsigned long long)huge, (unsigned long long)gigantic,
		       (unsigned long long)info.cleared, (unsigned long long)info.lock_takes);
		return 0;
	}
	fprintf(stderr, "usage: kmod-abi target <fd> <pid> <flags> | walk <pid> <flags> <start> <end> <count>\n");
	return 2;
}
