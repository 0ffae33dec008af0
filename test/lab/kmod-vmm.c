// SPDX-License-Identifier: GPL-2.0-only
/*
 * A minimal KVM virtual machine with a known hot set, for the kmod TDP (NPT/EPT) lab test:
 *   kmod-vmm <guest MiB> <hot offset MiB> <hot MiB> [thp] [halt0] [alias] [gigantic]
 * One memslot of guest RAM at GPA 0 (4 KiB host pages, or THP with "thp": 2 MiB NPT leaves,
 * or with "gigantic" private 1 GiB hugetlb pages, <guest MiB> a multiple of 1024: the memslot
 * and its HVA are then 1 GiB aligned, which KVM needs to map 1 GiB NPT leaves),
 * one vCPU in flat
 * 32-bit protected mode running 31 bytes of code from GPA 0: write one byte per 4 KiB page
 * over all of RAM once (a plain write), then over [hot offset, hot offset + hot) forever (inc). The guest's
 * accesses reach the TDP tables only; the process page tables never see them.
 * "alias": hot offset < guest MiB < hot offset + hot MiB; a third memslot at GPA <guest MiB>
 * maps the last <hot MiB> of guest RAM's HVAs again (an alias), so the hot loop's GPAs run
 * through the end of RAM into the alias: the hot HVAs [end - hot MiB, end) are written half
 * through the alias (the first half) and half through the first memslot (the second half).
 * "halt0": two vCPUs; vCPU 0 runs once into a HLT (its exit comes back here and it is never
 * run again: a halted vCPU keeping its root) and vCPU 1 runs the code above.
 * A second, 2 MiB memslot lies at GPA 1 GiB. SIGUSR2 deletes it and adds it again (a memslot
 * deletion makes KVM zap all roots; a vCPU that does not run keeps its obsolete one), then
 * prints "churned" on stderr. SIGUSR1 closes the vCPU and VM fds (the VM is gone for this
 * process), prints "closed" on stderr and waits to be killed.
 * Prints {"pid":..,"base":"0x<HVA of GPA 0>","bytes":..,"hot":[..]} once the first pass is
 * under way, then runs the vCPU until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint8_t code[] = {
	0x89, 0xcb,				/* 0:  mov ebx, ecx          fill pass */
	0xc6, 0x03, 0x01,			/* 2:  mov byte [ebx], 1     (a write: */
	0x81, 0xc3, 0x00, 0x10, 0x00, 0x00,	/* 5:  add ebx, 0x1000       a read would */
	0x39, 0xfb,				/* 11: cmp ebx, edi          map the huge */
	0x72, 0xf3,				/* 13: jb 2                  zero page) */
	0x89, 0xf3,				/* 15: mov ebx, esi          hot loop  */
	0xfe, 0x03,				/* 17: inc byte [ebx]                  */
	0x81, 0xc3, 0x00, 0x10, 0x00, 0x00,	/* 19: add ebx, 0x1000                 */
	0x39, 0xd3,				/* 25: cmp ebx, edx                    */
	0x72, 0xf4,				/* 27: jb 17                           */
	0xeb, 0xf0,				/* 29: jmp 15                          */
};

static volatile sig_atomic_t do_close, do_churn;

/* A signal that lands between two KVM_RUNs must still end the next one: immediate_exit. */
static struct kvm_run *volatile main_run;

static void on_usr1(int s) { (void)s; do_close = 1; if (main_run) main_run->immediate_exit = 1; }
static void on_usr2(int s) { (void)s; do_churn = 1; if (main_run) main_run->immediate_exit = 1; }

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void flat(struct kvm_segment *s, unsigned type, unsigned sel)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

static void setup_vcpu(int vcpu, uint32_t rip, size_t bytes, uint32_t hot, uint32_t hot_len)
{
	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS");
	flat(&sregs.cs, 11, 8);
	flat(&sregs.ds, 3, 16);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.cr0 |= 1;		/* protected mode, no paging: GPA = linear address */
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS");
	struct kvm_regs regs = {
		.rip = rip, .rflags = 2, .rcx = 0x1000, .rdi = bytes, .rsi = hot, .rdx = hot + hot_len,
	};
	if (ioctl(vcpu, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS");
}

#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << 26)
#endif
/* Above guest RAM (at most 1 GiB, the "gigantic" case's size). */
#define EXTRA_GPA (1UL << 30)
#define EXTRA_BYTES (2UL << 20)
#define HLT_AT 0x40

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 8)
		return 2;
	int thp = 0, halt0 = 0, alias = 0, gigantic = 0;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "thp"))
			thp = 1;
		else if (!strcmp(argv[i], "gigantic"))
			gigantic = 1;
		else if (!strcmp(argv[i], "halt0"))
			halt0 = 1;
		else if (!strcmp(argv[i], "alias"))
			alias = 1;
		else
			return 2;
	}
	size_t bytes = strtoul(argv[1], 0, 0) << 20;
	uint32_t hot = strtoul(argv[2], 0, 0) << 20, hot_len = strtoul(argv[3], 0, 0) << 20;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	uint8_t *mem;
	if (gigantic) {
		/* The kernel aligns hugetlb mappings to their page size. */
		mem = mmap(0, bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_1GB, -1, 0);
		if (mem == MAP_FAILED)
			die("mmap MAP_HUGE_1GB");
	} else {
		/* Over-map by 2 MiB so guest RAM starts 2 MiB aligned and THP can back all of it. */
		uint8_t *raw = mmap(0, bytes + (2UL << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (raw == MAP_FAILED)
			die("mmap");
		mem = (uint8_t *)(((uintptr_t)raw + (2UL << 20) - 1) & ~((2UL << 20) - 1));
		madvise(mem, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	}
	memcpy(mem, code, sizeof(code));
	mem[HLT_AT] = 0xf4;	/* hlt, for vCPU 0 with "halt0" */
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = bytes, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION");
	uint8_t *extra = mmap(0, EXTRA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (extra == MAP_FAILED)
		die("mmap extra");
	struct kvm_userspace_memory_region extra_region = {
		.slot = 1, .guest_phys_addr = EXTRA_GPA, .memory_size = EXTRA_BYTES, .userspace_addr = (uintptr_t)extra,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &extra_region))
		die("KVM_SET_USER_MEMORY_REGION extra");
	uint32_t hot_hva = hot;	/* offset of the hot set's first HVA from guest RAM's */
	if (alias) {
		if (hot >= bytes || hot + hot_len <= bytes)
			return 2;
		struct kvm_userspace_memory_region alias_region = {
			.slot = 2, .guest_phys_addr = bytes, .memory_size = hot_len,
			.userspace_addr = (uintptr_t)mem + bytes - hot_len,
		};
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &alias_region))
			die("KVM_SET_USER_MEMORY_REGION alias");
		hot_hva = bytes - hot_len;
	}
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	int vcpu0 = -1;
	if (halt0) {
		vcpu0 = ioctl(vm, KVM_CREATE_VCPU, 0);
		if (vcpu0 < 0)
			die("KVM_CREATE_VCPU 0");
	}
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, halt0 ? 1 : 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	if (halt0) {
		/* vCPU 0 loads a root, halts, and never runs again. */
		struct kvm_run *run0 = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu0, 0);
		if (run0 == MAP_FAILED)
			die("mmap kvm_run 0");
		setup_vcpu(vcpu0, HLT_AT, bytes, hot, hot_len);
		if (ioctl(vcpu0, KVM_RUN, 0))
			die("KVM_RUN vCPU 0");
		if (run0->exit_reason != KVM_EXIT_HLT) {
			fprintf(stderr, "kmod-vmm: vCPU 0 exit %u, not HLT\n", run0->exit_reason);
			return 1;
		}
		munmap(run0, run_size);
	}
	struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	setup_vcpu(vcpu, 0, bytes, hot, hot_len);
	main_run = run;
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	printf("{\"pid\":%d,\"base\":\"0x%lx\",\"bytes\":%zu,\"code\":\"0x%lx\",\"hot\":[{\"start\":\"0x%lx\",\"end\":\"0x%lx\"}]}\n",
	       getpid(), (unsigned long)mem, bytes, (unsigned long)mem,
	       (unsigned long)(mem + hot_hva), (unsigned long)(mem + hot_hva + hot_len));
	fflush(stdout);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) && errno != EINTR)
			die("KVM_RUN");
		if (run->exit_reason != KVM_EXIT_INTR) {
			fprintf(stderr, "kmod-vmm: unexpected exit %u\n", run->exit_reason);
			return 1;
		}
		run->immediate_exit = 0;
		if (do_churn) {
			do_churn = 0;
			extra_region.memory_size = 0;
			if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &extra_region))
				die("delete memslot");
			extra_region.memory_size = EXTRA_BYTES;
			if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &extra_region))
				die("re-add memslot");
			fprintf(stderr, "churned\n");
		}
		if (do_close) {
			/* Everything that holds the VM: the run page, the vCPU fds, the VM fd. */
			main_run = NULL;
			munmap(run, run_size);
			close(vcpu);
			if (vcpu0 >= 0)
				close(vcpu0);
			close(vm);
			fprintf(stderr, "closed\n");
			for (;;)
				pause();
		}
	}
}
