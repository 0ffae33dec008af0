/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vmtier_idle: user-space ABI of /dev/vmtier_idle (see kmod/README.md for the
 * byte-level description of the read stream).
 */
#ifndef _UAPI_VMTIER_IDLE_H
#define _UAPI_VMTIER_IDLE_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define VMTIER_IDLE_ABI_VERSION		1

/* Stream records: one byte (type << 4) | n, n = 1..15 units of that type. */
#define VMTIER_IDLE_PTE_ACCESSED	0x0	/* 4 KiB page, A bit set */
#define VMTIER_IDLE_PMD_ACCESSED	0x1	/* 2 MiB mapping, A bit set */
#define VMTIER_IDLE_PUD_ACCESSED	0x2	/* 1 GiB mapping, A bit set */
/* 0x3 and 0x4 are the seed's dirty types: never emitted, rejected. */
#define VMTIER_IDLE_PTE_IDLE		0x5	/* 4 KiB page, A bit clear */
#define VMTIER_IDLE_PMD_IDLE		0x6	/* 2 MiB mapping, A bit clear */
#define VMTIER_IDLE_PMD_IDLE_PTES	0x7	/* 2 MiB of 512 idle 4 KiB pages */
#define VMTIER_IDLE_PTE_HOLE		0x8	/* 4 KiB not present */
#define VMTIER_IDLE_PMD_HOLE		0x9	/* 2 MiB not present */
#define VMTIER_IDLE_CMD			0xa	/* command, n selects it */
#define VMTIER_IDLE_PUD_IDLE		0xb	/* 1 GiB mapping, A bit clear */
/* 0xc..0xf: reserved, rejected. */

/* 0xa0, then 8 bytes big endian: the next record describes this address. */
#define VMTIER_IDLE_CMD_SET_ADDR	0xa0
#define VMTIER_IDLE_MAX_RUN		15

/* Flags of struct vmtier_idle_target. */
#define VMTIER_IDLE_F_CLEAR	(1U << 0) /* clear the A bits a read reports */
#define VMTIER_IDLE_F_NOFLUSH	(1U << 1) /* no TLB flush after clearing */
#define VMTIER_IDLE_F_KVM	(1U << 2) /* require the KVM TDP tables */
#define VMTIER_IDLE_F_PROCESS	(1U << 3) /* process page tables even for a VM */
#define VMTIER_IDLE_F_ALL	0xfU

struct vmtier_idle_target {
	__s32 pid;		/* in the caller's pid namespace */
	__u32 flags;		/* VMTIER_IDLE_F_* */
	__u64 reserved[2];	/* must be zero */
};

/* Modes reported by VMTIER_IDLE_IOC_GET_INFO. */
#define VMTIER_IDLE_MODE_NONE		0
#define VMTIER_IDLE_MODE_PROCESS	1
#define VMTIER_IDLE_MODE_NPT		2
#define VMTIER_IDLE_MODE_EPT		3

struct vmtier_idle_info {
	__u32 abi_version;
	__u32 mode;
	__u64 reads;		/* successful reads since SET_TARGET */
	__u64 cleared;		/* A bits cleared */
	__u64 tlb_flushes;	/* flushes issued */
	__u64 walk_ns;		/* time spent walking page tables */
	__u64 lock_takes;	/* KVM mode: kvm->mmu_lock acquisitions */
	__u64 reserved[2];
};

#define VMTIER_IDLE_IOC_MAGIC		0xb9
#define VMTIER_IDLE_IOC_SET_TARGET	_IOW(VMTIER_IDLE_IOC_MAGIC, 1, struct vmtier_idle_target)
#define VMTIER_IDLE_IOC_SET_LIMIT	_IOW(VMTIER_IDLE_IOC_MAGIC, 2, __u64)
#define VMTIER_IDLE_IOC_GET_INFO	_IOR(VMTIER_IDLE_IOC_MAGIC, 3, struct vmtier_idle_info)

#endif /* _UAPI_VMTIER_IDLE_H */
