// SPDX-License-Identifier: GPL-2.0-only
/*
 * The lab's workload: an anonymous mapping with a known hot set, so tests of tracking and
 * migration have ground truth. It maps --size bytes (2 MiB aligned), optionally places them on
 * one NUMA node at first touch, touches every page once, prints its layout as one JSON line,
 * then writes one byte per 4 KiB page of the hot set --rate times per second. After
 * --phase-after seconds the hot set moves (a new JSON line says where). Runs until killed, or
 * for --duration seconds.
 *
 * --map PATH maps a device (a devdax /dev/daxX.Y) instead of anonymous memory, for the
 * "not movable" case. --vmsplice BYTES keeps the first BYTES of the hot set referenced by a pipe
 * (vmsplice(2) without SPLICE_F_GIFT), which is how an honest extra page reference looks to
 * migration.
 *
 * No libnuma: mbind(2) through syscall(2), so the binary needs only libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define HUGE (2UL << 20)
#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2

struct range {
	uintptr_t start, end;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--size BYTES] [--hot BYTES] [--layout contiguous|scattered] [--chunk BYTES]\n"
		"          [--rate PASSES_PER_S] [--thp on|off] [--phase-after S] [--duration S]\n"
		"          [--node N [--policy preferred|bind]] [--map DEVICE] [--vmsplice BYTES]\n"
		"BYTES take k/m/g suffixes. --rate 0: touch once, then stay idle.\n", argv0);
	exit(2);
}

static unsigned long parse_size(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end == '\0')
		return v;
bad:
	fprintf(stderr, "workload: bad %s \"%s\"\n", what, s);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The hot set of a phase: contiguous = one range; scattered = chunks spread evenly over the footprint. */
static size_t hot_ranges(struct range *out, size_t max, uintptr_t base, unsigned long size,
			 unsigned long hot, int scattered, unsigned long chunk, int phase)
{
	size_t n = 0;

	if (!scattered) {
		/* Phase 1 starts the range half a footprint further on (wrapping). */
		unsigned long off = phase ? (size / 2) : 0;

		if (off + hot <= size) {
			out[n++] = (struct range){ base + off, base + off + hot };
		} else {
			out[n++] = (struct range){ base + off, base + size };
			out[n++] = (struct range){ base, base + (off + hot - size) };
		}
		return n;
	}
	unsigned long count = hot / chunk;
	unsigned long stride = size / count;
	/* Phase 1 shifts every chunk by half a stride (rounded to the chunk), into what was cold. */
	unsigned long shift = phase ? (stride / 2 / chunk) * chunk : 0;

	if (phase && shift == 0)
		shift = chunk;
	for (unsigned long i = 0; i < count && n < max; i++) {
		uintptr_t s = base + ((i * stride + shift) % size);

		out[n++] = (struct range){ s, s + chunk };
	}
	return n;
}

static struct range pinned;

static void print_layout(uintptr_t base, unsigned long size, int thp, const struct range *r, size_t n,
			 int phase, int node)
{
	printf("{\"pid\":%d,\"phase\":%d,\"base\":\"0x%lx\",\"bytes\":%lu,\"pageSize\":%lu,\"thp\":%s,\"node\":",
	       getpid(), phase, (unsigned long)base, size, PAGE, thp ? "true" : "false");
	if (node >= 0)
		printf("%d", node);
	else
		printf("null");
	printf(",\"hot\":[");
	for (size_t i = 0; i < n; i++)
		printf("%s{\"start\":\"0x%lx\",\"end\":\"0x%lx\"}", i ? "," : "",
		       (unsigned long)r[i].start, (unsigned long)r[i].end);
	printf("]");
	if (pinned.end)
		printf(",\"pinned\":{\"start\":\"0x%lx\",\"end\":\"0x%lx\"}",
		       (unsigned long)pinned.start, (unsigned long)pinned.end);
	printf("}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	unsigned long size = 64UL << 20, hot = 8UL << 20, chunk = 0;
	double rate = 10, phase_after = 0, duration = 0;
	int scattered = 0, thp = 0, node = -1, policy = MPOL_PREFERRED;
	const char *map_path = NULL;
	unsigned long splice_bytes = 0;
	static const struct option opts[] = {
		{ "size", required_argument, 0, 's' },
		{ "hot", required_argument, 0, 'h' },
		{ "layout", required_argument, 0, 'l' },
		{ "chunk", required_argument, 0, 'c' },
		{ "rate", required_argument, 0, 'r' },
		{ "thp", required_argument, 0, 't' },
		{ "phase-after", required_argument, 0, 'p' },
		{ "duration", required_argument, 0, 'd' },
		{ "node", required_argument, 0, 'n' },
		{ "policy", required_argument, 0, 'P' },
		{ "map", required_argument, 0, 'm' },
		{ "vmsplice", required_argument, 0, 'v' },
		{ 0, 0, 0, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': size = parse_size(optarg, "--size"); break;
		case 'h': hot = parse_size(optarg, "--hot"); break;
		case 'c': chunk = parse_size(optarg, "--chunk"); break;
		case 'l':
			if (!strcmp(optarg, "scattered"))
				scattered = 1;
			else if (strcmp(optarg, "contiguous"))
				usage(argv[0]);
			break;
		case 'r': rate = atof(optarg); break;
		case 't':
			if (!strcmp(optarg, "on"))
				thp = 1;
			else if (strcmp(optarg, "off"))
				usage(argv[0]);
			break;
		case 'p': phase_after = atof(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'n': node = atoi(optarg); break;
		case 'P':
			if (!strcmp(optarg, "bind"))
				policy = MPOL_BIND;
			else if (strcmp(optarg, "preferred"))
				usage(argv[0]);
			break;
		case 'm': map_path = optarg; break;
		case 'v': splice_bytes = parse_size(optarg, "--vmsplice"); break;
		default: usage(argv[0]);
		}
	}
	if (!chunk)
		chunk = thp ? HUGE : 64UL << 10;
	size = (size + HUGE - 1) & ~(HUGE - 1);
	if (size == 0 || hot > size || splice_bytes % PAGE || splice_bytes > hot || (map_path && (thp || node >= 0)) || chunk % PAGE || hot % chunk || rate < 0 || node > 63 ||
	    (scattered && (hot == 0 || size / (hot / chunk) < chunk))) {
		fprintf(stderr, "workload: need 0 < hot <= size, hot a multiple of chunk (a multiple of 4 KiB), node < 64\n");
		return 2;
	}

	uintptr_t base;

	if (map_path) {
		/* devdax hands out 2 MiB aligned addresses itself (its get_unmapped_area). */
		int fd = open(map_path, O_RDWR);
		void *p = fd < 0 ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

		if (p == MAP_FAILED) {
			fprintf(stderr, "workload: map %s: %s\n", map_path, strerror(errno));
			return 1;
		}
		base = (uintptr_t)p;
	} else {
		/* Over-map by 2 MiB so the footprint starts 2 MiB aligned: THP can back all of it. */
		char *raw = mmap(NULL, size + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (raw == MAP_FAILED) {
			perror("workload: mmap");
			return 1;
		}
		base = ((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1);
	}
	char *mem = (char *)base;

	if (!map_path && madvise(mem, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) {
		perror("workload: madvise");
		return 1;
	}
	if (node >= 0) {
		unsigned long mask = 1UL << node;

		if (syscall(SYS_mbind, mem, size, policy, &mask, 64UL, 0U)) {
			perror("workload: mbind");
			return 1;
		}
	}
	for (unsigned long off = 0; off < size; off += PAGE)
		mem[off] = 1;
	/* The policy was for first touch only: later moves and faults follow the kernel's defaults. */
	if (node >= 0 && syscall(SYS_mbind, mem, size, MPOL_DEFAULT, NULL, 0UL, 0U)) {
		perror("workload: mbind default");
		return 1;
	}

	size_t max_ranges = scattered ? hot / chunk : 2;
	struct range *r = calloc(max_ranges ? max_ranges : 1, sizeof(*r));

	if (!r)
		return 1;
	int phase = 0;
	size_t n = hot_ranges(r, max_ranges, base, size, hot, scattered, chunk, phase);

	if (splice_bytes) {
		int p[2];
		struct iovec iov = { (void *)r[0].start, splice_bytes };

		if (pipe(p) || fcntl(p[1], F_SETPIPE_SZ, (int)splice_bytes) < 0 ||
		    vmsplice(p[1], &iov, 1, 0) != (ssize_t)splice_bytes) {
			perror("workload: vmsplice");
			return 1;
		}
		/* The pipe stays open (and its page references held) until the process ends. */
		pinned = (struct range){ r[0].start, r[0].start + splice_bytes };
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	print_layout(base, size, thp, r, n, phase, node);

	double t0 = now_s();
	unsigned long passes = 0;

	while (!stop) {
		double t = now_s() - t0;

		if (duration > 0 && t >= duration)
			break;
		if (phase == 0 && phase_after > 0 && t >= phase_after) {
			phase = 1;
			n = hot_ranges(r, max_ranges, base, size, hot, scattered, chunk, phase);
			print_layout(base, size, thp, r, n, phase, node);
		}
		if (rate == 0) {
			usleep(100000);
			continue;
		}
		for (size_t i = 0; i < n && !stop; i++)
			for (uintptr_t a = r[i].start; a < r[i].end; a += PAGE)
				(*(volatile char *)a)++;
		passes++;
		/* Pace to --rate passes per second from the start, so a slow pass is not followed by a burst. */
		double next = passes / rate;
		double wait = next - (now_s() - t0);

		if (wait > 0)
			usleep((useconds_t)(wait * 1e6));
	}
	free(r);
	return 0;
}
