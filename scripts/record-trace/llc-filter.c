/*
 * llc-filter: turns valgrind lackey's exact memory trace (--trace-mem=yes) into the simulator's
 * `epoch,page,accesses` CSV, keeping only what reaches memory.
 *
 * Every instruction fetch, load, store and modify goes through one last-level cache model
 * (set-associative, LRU, write-back, write-allocate). A miss is one memory access to its page; the
 * write-back of a dirty line on eviction is one more (slow-tier writes cost too). Epochs are fixed
 * numbers of guest instructions. Pages are renumbered by first touch (the first page that reaches
 * memory is 0), so the CSV carries no address of the traced process. Within an epoch, rows come in
 * the order of the pages' first access in that epoch: the simulator places pages on first touch in
 * row order.
 *
 *   llc-filter -e INSNS_PER_EPOCH [-m MAX_EPOCHS] [-k SKIP_EPOCHS] [-c LLC_BYTES] [-w WAYS] < lackey.log
 *
 * SKIP_EPOCHS: epochs run through the cache (warming it) but not written (program start-up).
 * When MAX_EPOCHS have been written the filter exits; the recorder then ends valgrind.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_SHIFT 6
#define PAGE_SHIFT 12

static uint64_t *tags;     /* per set × way: line number + 1 (0 = empty) */
static uint32_t *stamps;   /* per set × way: LRU stamp */
static uint8_t *dirty;
static uint32_t nsets, ways, clock_;

/* open-addressing map: page number -> dense id */
static uint64_t *map_keys;
static uint32_t *map_vals;
static uint64_t map_cap, map_n;

static uint32_t *epoch_count; /* per dense id: accesses this epoch */
static uint32_t *epoch_list;  /* dense ids touched this epoch, in first-access order */
static uint32_t epoch_len, ids_cap;

static long long epoch_no, written, max_epochs = -1, skip_epochs;

static uint64_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static void map_grow(void);

static uint32_t page_id(uint64_t page)
{
	if (map_n * 2 >= map_cap)
		map_grow();
	uint64_t i = hash64(page) & (map_cap - 1);
	while (map_keys[i]) {
		if (map_keys[i] == page + 1)
			return map_vals[i];
		i = (i + 1) & (map_cap - 1);
	}
	map_keys[i] = page + 1;
	map_vals[i] = (uint32_t)map_n;
	map_n++;
	if (map_n > ids_cap) {
		ids_cap = ids_cap ? ids_cap * 2 : 65536;
		epoch_count = realloc(epoch_count, ids_cap * sizeof(uint32_t));
		epoch_list = realloc(epoch_list, ids_cap * sizeof(uint32_t));
		if (!epoch_count || !epoch_list) {
			perror("llc-filter");
			exit(1);
		}
		memset(epoch_count + map_n - 1, 0, (ids_cap - map_n + 1) * sizeof(uint32_t));
	}
	return (uint32_t)(map_n - 1);
}

static void map_grow(void)
{
	uint64_t old_cap = map_cap, *old_keys = map_keys;
	uint32_t *old_vals = map_vals;

	map_cap = map_cap ? map_cap * 2 : 1 << 16;
	map_keys = calloc(map_cap, sizeof(uint64_t));
	map_vals = calloc(map_cap, sizeof(uint32_t));
	if (!map_keys || !map_vals) {
		perror("llc-filter");
		exit(1);
	}
	for (uint64_t j = 0; j < old_cap; j++) {
		if (!old_keys[j])
			continue;
		uint64_t i = hash64(old_keys[j] - 1) & (map_cap - 1);
		while (map_keys[i])
			i = (i + 1) & (map_cap - 1);
		map_keys[i] = old_keys[j];
		map_vals[i] = old_vals[j];
	}
	free(old_keys);
	free(old_vals);
}

static void memory_access(uint64_t line)
{
	if (epoch_no < skip_epochs)
		return;
	uint32_t id = page_id(line >> (PAGE_SHIFT - LINE_SHIFT));
	if (epoch_count[id]++ == 0)
		epoch_list[epoch_len++] = id;
}

static void cache_access(uint64_t line, int write)
{
	uint32_t set = (uint32_t)(hash64(line) % nsets);
	uint64_t *t = tags + (uint64_t)set * ways;
	uint32_t *s = stamps + (uint64_t)set * ways;
	uint8_t *d = dirty + (uint64_t)set * ways;
	uint32_t victim = 0;

	clock_++;
	for (uint32_t w = 0; w < ways; w++) {
		if (t[w] == line + 1) {
			s[w] = clock_;
			d[w] |= write;
			return;
		}
		if (s[w] < s[victim])
			victim = w;
	}
	if (t[victim] && d[victim])
		memory_access(t[victim] - 1);
	t[victim] = line + 1;
	s[victim] = clock_;
	d[victim] = (uint8_t)write;
	memory_access(line);
}

static void end_epoch(void)
{
	if (epoch_no >= skip_epochs) {
		for (uint32_t i = 0; i < epoch_len; i++) {
			uint32_t id = epoch_list[i];
			printf("%lld,%u,%u\n", written, id, epoch_count[id]);
			epoch_count[id] = 0;
		}
		epoch_len = 0;
		written++;
	}
	epoch_no++;
	if (max_epochs >= 0 && written >= max_epochs) {
		fflush(stdout);
		exit(0);
	}
}

int main(int argc, char **argv)
{
	long long insns_per_epoch = 0, insns = 0;
	uint64_t llc_bytes = 1 << 20;
	int opt;

	ways = 16;
	while ((opt = getopt(argc, argv, "e:m:k:c:w:")) != -1) {
		switch (opt) {
		case 'e': insns_per_epoch = atoll(optarg); break;
		case 'm': max_epochs = atoll(optarg); break;
		case 'k': skip_epochs = atoll(optarg); break;
		case 'c': llc_bytes = strtoull(optarg, NULL, 0); break;
		case 'w': ways = (uint32_t)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: llc-filter -e INSNS [-m EPOCHS] [-k SKIP] [-c BYTES] [-w WAYS]\n");
			return 2;
		}
	}
	if (insns_per_epoch <= 0 || ways == 0) {
		fprintf(stderr, "llc-filter: -e INSNS_PER_EPOCH > 0 is required\n");
		return 2;
	}
	nsets = (uint32_t)(llc_bytes >> LINE_SHIFT) / ways;
	tags = calloc((uint64_t)nsets * ways, sizeof(uint64_t));
	stamps = calloc((uint64_t)nsets * ways, sizeof(uint32_t));
	dirty = calloc((uint64_t)nsets * ways, 1);
	if (!tags || !stamps || !dirty) {
		perror("llc-filter");
		return 1;
	}
	printf("epoch,page,accesses\n");

	char buf[256];
	while (fgets(buf, sizeof(buf), stdin)) {
		char kind;
		char *p;

		if (buf[0] == 'I') {
			kind = 'I';
			p = buf + 3;
		} else if (buf[0] == ' ' && (buf[1] == 'L' || buf[1] == 'S' || buf[1] == 'M')) {
			kind = buf[1];
			p = buf + 3;
		} else {
			continue; /* valgrind's own messages */
		}
		char *end;
		uint64_t addr = strtoull(p, &end, 16);
		if (end == p || *end != ',')
			continue;
		unsigned size = (unsigned)strtoul(end + 1, NULL, 10);
		uint64_t first = addr >> LINE_SHIFT;
		uint64_t last = (addr + (size ? size - 1 : 0)) >> LINE_SHIFT;
		for (uint64_t line = first; line <= last; line++) {
			if (kind == 'M') {
				cache_access(line, 0);
				cache_access(line, 1);
			} else {
				cache_access(line, kind == 'S');
			}
		}
		if (kind == 'I' && ++insns >= insns_per_epoch) {
			insns = 0;
			end_epoch();
		}
	}
	if (insns > 0 || epoch_len > 0)
		end_epoch();
	return 0;
}
