/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmtier_idle: internal interfaces between the device file, the encoder and
 * the two page-table walkers (process page tables, KVM TDP tables).
 */
#ifndef _VMTIER_IDLE_H
#define _VMTIER_IDLE_H

/* __KERNEL__: the encoder is also compiled for a user-space test. */
#if defined(__KERNEL__) && !defined(CONFIG_X86_64)
#error "vmtier_idle reads x86-64 page tables and KVM's x86 TDP tables only"
#endif

#include <linux/types.h>
#include <linux/mm_types.h>
#include "vmtier_idle_uapi.h"

/* Output staging buffer per open file; a read returns at most this much. */
#define VTI_BUF_SIZE		(64 * 1024)
/*
 * Smallest read buffer: one record plus a SET_ADDR plus a trailing SET_ADDR.
 * Every read of at least this size makes progress: when the rest of the
 * buffer cannot describe a whole page table or huge leaf, the walkers
 * describe the part that fits (and leave a huge leaf's A bit for the read
 * that reaches its end).
 */
#define VTI_MIN_READ		32
/*
 * Work budget per read in page-table entries visited, so one read holds the
 * target's mmap lock (or kvm->mmu_lock sections) for a bounded time: 256Ki
 * entries is 1 GiB of 4 KiB pages.
 */
#define VTI_READ_BUDGET		(256 * 1024)

/* Per-page states the walkers produce before encoding. */
enum vti_state {
	VTI_ACCESSED,
	VTI_IDLE,
	VTI_HOLE,
};

struct vti_enc {
	u8 *buf;
	size_t size;
	size_t len;
	unsigned long cursor;	/* address the next record would describe */
	int run_type;		/* pending run, -1 when none */
	unsigned int run_len;
	bool broken;		/* a record did not fit: the read fails (-EIO) */
};

struct vti_scan {
	struct vti_enc enc;
	unsigned int flags;	/* VMTIER_IDLE_F_* */
	long budget;		/* entries left; the walk stops at <= 0 */
	unsigned long cleared;	/* A bits cleared during this read */
	unsigned long lock_takes; /* kvm->mmu_lock acquisitions (KVM mode) */
	unsigned long next;	/* where the walk stopped: next read offset */
	unsigned long start;	/* where the walk began */
};

/* vmtier_idle_enc.c */
void vti_enc_init(struct vti_enc *e, u8 *buf, size_t size, unsigned long start);
size_t vti_enc_avail(const struct vti_enc *e);
void vti_enc_range(struct vti_enc *e, unsigned long start, unsigned long end,
		   unsigned int shift, enum vti_state state);
void vti_enc_ptes(struct vti_enc *e, unsigned long start, const u8 *states,
		  unsigned int n);
size_t vti_enc_finish(struct vti_enc *e, unsigned long stop);

/* vmtier_idle_pgtable.c */
void vti_mark_young(unsigned long pfn);
int vti_walk_mm(struct mm_struct *mm, unsigned long start, unsigned long end,
		struct vti_scan *s);

/* vmtier_idle_tdp.c */
struct kvm;
struct task_struct;

struct vti_kvm {
	struct kvm *kvm;
	void (*put)(struct kvm *kvm);		/* kvm_put_kvm */
	void (*flush)(struct kvm *kvm);		/* kvm_flush_remote_tlbs */
	bool ept;
};

int vti_kvm_find(struct task_struct *task, struct mm_struct *mm,
		 struct vti_kvm *out);
void vti_kvm_release(struct vti_kvm *k);
bool vti_kvm_orphaned(const struct vti_kvm *k);
int vti_walk_tdp(struct vti_kvm *k, unsigned long start, unsigned long end,
		 struct vti_scan *s);
void vti_kvm_flush(struct vti_kvm *k);

#endif /* _VMTIER_IDLE_H */
