// SPDX-License-Identifier: GPL-2.0-only
/*
 * A minimal KVM virtual machine with a known hot set, for the kmod TDP (NPT/EPT) lab test:
 *   kmod-vmm <guest MiB> <hot offset MiB> <hot MiB> [thp]
 * One memslot of guest RAM at GPA 0 (4 KiB host pages, or THP with "thp": 2 MiB NPT leaves),
 * one vCPU in flat
 * 32-bit protected mode running 31 bytes of code from GPA 0: write one byte per 4 KiB page
 * over all of RAM once (a plain write), then over [hot offset, hot offset + hot) forever (inc). The guest's
 * accesses reach the TDP tables only; the process page tables never see them.
 * Prints {"pid":..,"base":"0x<HVA of GPA 0>","bytes":..,"hot":[..]} once the first pass is
 * under way, then runs the vCPU until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
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

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5)
		return 2;
	int thp = argc == 5 && !strcmp(argv[4], "thp");
	size_t bytes = strtoul(argv[1], 0, 0) << 20;
	uint32_t hot = strtoul(argv[2], 0, 0) << 20, hot_len = strtoul(argv[3], 0, 0) << 20;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	/* Over-map by 2 MiB so guest RAM starts 2 MiB aligned and THP can back all of it. */
	uint8_t *raw = mmap(0, bytes + (2UL << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap");
	uint8_t *mem = (uint8_t *)(((uintptr_t)raw + (2UL << 20) - 1) & ~((2UL << 20) - 1));
	madvise(mem, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memcpy(mem, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = bytes, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		die("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
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
		.rip = 0, .rflags = 2, .rcx = 0x1000, .rdi = bytes, .rsi = hot, .rdx = hot + hot_len,
	};
	if (ioctl(vcpu, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS");
	printf("{\"pid\":%d,\"base\":\"0x%lx\",\"bytes\":%zu,\"code\":\"0x%lx\",\"hot\":[{\"start\":\"0x%lx\",\"end\":\"0x%lx\"}]}\n",
	       getpid(), (unsigned long)mem, bytes, (unsigned long)mem,
	       (unsigned long)(mem + hot), (unsigned long)(mem + hot + hot_len));
	fflush(stdout);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) && errno != EINTR)
			die("KVM_RUN");
		if (run->exit_reason != KVM_EXIT_INTR) {
			fprintf(stderr, "kmod-vmm: unexpected exit %u\n", run->exit_reason);
			return 1;
		}
	}
}
