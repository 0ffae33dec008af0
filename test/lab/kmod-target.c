// SPDX-License-Identifier: GPL-2.0-only
/*
 * A target for the kmod lab tests that changes its own page tables while it is scanned:
 *   kmod-target <MiB> idle    touch every page once (4 KiB pages), then wait
 *   kmod-target <MiB> idle-thp  the same with THPs (MADV_HUGEPAGE before the first touch)
 *   kmod-target <MiB> churn   loop over 2 MiB chunks: MADV_DONTNEED, touch, MADV_COLLAPSE,
 *                             and every 8th chunk a MAP_FIXED remap (page tables come and go)
 *   kmod-target <MiB> gigantic  private anonymous 1 GiB hugetlb pages (MAP_HUGE_1GB; <MiB> a
 *                             multiple of 1024; the kernel aligns them to 1 GiB), touched once
 *   kmod-target <MiB> gigantic-hot  the same, and then one byte written every 20 ms
 * SIGUSR1 munmaps the second half; SIGUSR2 collapses the whole mapping into THPs; SIGHUP
 * touches every page again and then prints "touched" on stderr (bench:scan sets A bits so).
 * Prints {"pid":..,"base":"0x..","bytes":..} first. Runs until killed.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << 26)
#endif
#define HUGE (2UL << 20)

static volatile sig_atomic_t do_unmap, do_collapse, do_touch;

static void on_usr1(int s) { (void)s; do_unmap = 1; }
static void on_usr2(int s) { (void)s; do_collapse = 1; }
static void on_hup(int s) { (void)s; do_touch = 1; }

/* Read-modify-write: a first touch faults in the zero page, then COWs (the churn wants that). */
static void touch(char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		p[i]++;
}

/*
 * Write only: a first read of a THP-eligible range would map the huge zero page, and a write
 * to that splits it into 4 KiB pages, so a THP target must start with a write.
 */
static void touch_write(char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		((volatile char *)p)[i] = 1;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	size_t bytes = strtoul(argv[1], 0, 0) << 20;
	int churn = !strcmp(argv[2], "churn");
	int thp = !strcmp(argv[2], "idle-thp");
	int gigantic_hot = !strcmp(argv[2], "gigantic-hot");
	int gigantic = gigantic_hot || !strcmp(argv[2], "gigantic");
	char *mem;

	if (gigantic) {
		/* Private: the module skips shared hugetlb mappings (see vti_vma_skip). */
		mem = mmap(0, bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_1GB, -1, 0);
		if (mem == MAP_FAILED) {
			perror("mmap MAP_HUGE_1GB");
			return 1;
		}
	} else {
		char *raw = mmap(0, bytes + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (raw == MAP_FAILED)
			return 1;
		mem = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
		madvise(mem, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	}
	touch_write(mem, bytes);
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	signal(SIGHUP, on_hup);
	printf("{\"pid\":%d,\"base\":\"0x%lx\",\"bytes\":%zu}\n", getpid(), (unsigned long)mem, bytes);
	fflush(stdout);
	for (size_t round = 0;; round++) {
		if (do_unmap) {
			do_unmap = 0;
			munmap(mem + bytes / 2, bytes / 2);
			bytes /= 2;
		}
		if (do_collapse) {
			do_collapse = 0;
			madvise(mem, bytes, MADV_HUGEPAGE);
			if (madvise(mem, bytes, MADV_COLLAPSE))
				perror("MADV_COLLAPSE");
			else
				fprintf(stderr, "collapsed\n");
		}
		if (do_touch) {
			do_touch = 0;
			touch_write(mem, bytes);
			fprintf(stderr, "touched\n");
		}
		if (gigantic_hot)
			((volatile char *)mem)[(round * 4096 + 123 * (1UL << 20)) % bytes] = 1;
		if (!churn) {
			usleep(20000);
			continue;
		}
		char *c = mem + (round % (bytes / HUGE)) * HUGE;
		madvise(c, HUGE, MADV_DONTNEED);
		touch(c, HUGE);
		madvise(c, HUGE, MADV_HUGEPAGE);
		madvise(c, HUGE, MADV_COLLAPSE);
		if (round % 8 == 7) {
			mmap(c, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			touch(c, HUGE / 2);
		}
	}
}
