// SPDX-License-Identifier: GPL-2.0
/*
 * vmtier_idle: walk a KVM VM's two-dimensional paging tables (AMD NPT, Intel
 * EPT with A/D bits) over its memslots and report in host-virtual terms.
 *
 * What 6.12 allows a module: kvm.ko exports kvm_get_kvm, kvm_put_kvm and
 * kvm_flush_remote_tlbs (taken with symbol_get() so this module loads without
 * kvm), struct kvm and struct kvm_vcpu are in the public headers, but the TDP
 * MMU's root list and struct kvm_mmu_page live in arch/x86/kvm/mmu/ and are
 * not. So the walk starts from vCPU 0's root_mmu root, as the seed did, and
 * the SPTE bit layout below restates arch/x86/kvm/mmu/spte.h.
 *
 * Locking: kvm->srcu for the memslots; kvm->mmu_lock for WRITE plus RCU for
 * the tables. Read would do for the tables, but on 6.12 a vCPU drops its root
 * under the read lock, and without the root list there is no way to tell a
 * stale vCPU root from a live one; KVM's own aging on 6.12 (the mmu notifier
 * clear_young path) takes the write lock too. The lock is held for at most
 * one 2 MiB GPA chunk at a time.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/kvm_host.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <asm/processor.h>
#include "vmtier_idle.h"

#define VTI_SPTE_PRESENT	BIT_ULL(11)	/* SPTE_MMU_PRESENT_MASK */
#define VTI_SPTE_LARGE		BIT_ULL(7)	/* PT_PAGE_SIZE_MASK */
#define VTI_NPT_A_BIT		5		/* PT_ACCESSED_SHIFT */
#define VTI_EPT_A_BIT		8		/* VMX_EPT_ACCESS_BIT */
#define VTI_SPTE_ADDR		GENMASK_ULL(51, 12)

struct vti_tdp_walk {
	struct vti_scan *s;
	unsigned int a_bit;
	unsigned long hva_delta;	/* hva = gpa + hva_delta */
	u64 gpa_stop;			/* end of this memslot piece */
};

struct vti_fd_search {
	struct mm_struct *mm;
	void (*get)(struct kvm *kvm);
	struct kvm *kvm;
};

static int vti_find_vm_fd(const void *p, struct file *file, unsigned int fd)
{
	struct vti_fd_search *q = (struct vti_fd_search *)p;
	struct module *owner = file->f_op ? file->f_op->owner : NULL;
	struct kvm *kvm;

	/*
	 * kvm's VM files are anonymous inodes named "kvm-vm"; kvm_init() makes
	 * the vendor module (kvm_amd or kvm_intel) the owner of their fops.
	 */
	if (!owner || strcmp(file->f_path.dentry->d_name.name, "kvm-vm") ||
	    (strcmp(module_name(owner), "kvm_amd") &&
	     strcmp(module_name(owner), "kvm_intel")))
		return 0;
	kvm = file->private_data;
	/* A VM fd passed in from another process is not this one's VM. */
	if (!kvm || kvm->mm != q->mm)
		return 0;
	q->get(kvm);	/* refcount_inc: fine under the file table lock */
	q->kvm = kvm;
	return 1;
}

/*
 * Find a KVM VM created by @task (the first VM fd of its file table whose
 * memory is @mm) and take a reference on it. -ENOENT when there is none or
 * kvm.ko is not loaded. kvm's symbols are taken with symbol_get() so that
 * this module loads, and scans processes, on hosts without kvm.
 */
int vti_kvm_find(struct task_struct *task, struct mm_struct *mm,
		 struct vti_kvm *out)
{
	struct vti_fd_search q = { .mm = mm };
	int found = 0;

	memset(out, 0, sizeof(*out));
	q.get = symbol_get(kvm_get_kvm);
	out->put = symbol_get(kvm_put_kvm);
	out->flush = symbol_get(kvm_flush_remote_tlbs);
	if (q.get && out->put && out->flush) {
		task_lock(task);
		if (task->files)
			found = iterate_fd(task->files, 0, vti_find_vm_fd, &q);
		task_unlock(task);
	}
	if (q.get)
		symbol_put(kvm_get_kvm);
	if (!found || !q.kvm) {
		if (out->put)
			symbol_put(kvm_put_kvm);
		if (out->flush)
			symbol_put(kvm_flush_remote_tlbs);
		memset(out, 0, sizeof(*out));
		return -ENOENT;
	}
	/* kvm_put_kvm and kvm_flush_remote_tlbs stay held until release. */
	out->kvm = q.kvm;
	out->ept = boot_cpu_data.x86_vendor == X86_VENDOR_INTEL;
	return 0;
}

void vti_kvm_release(struct vti_kvm *k)
{
	if (!k->kvm)
		return;
	k->put(k->kvm);
	symbol_put(kvm_put_kvm);
	symbol_put(kvm_flush_remote_tlbs);
	memset(k, 0, sizeof(*k));
}

struct mm_struct *vti_kvm_mm(const struct vti_kvm *k)
{
	return k->kvm->mm;
}

void vti_kvm_flush(struct vti_kvm *k)
{
	k->flush(k->kvm);
}

static void vti_tdp_leaf(struct vti_tdp_walk *w, u64 *sptep, u64 spte,
			 int level, u64 leaf_end, u64 gstart, u64 gend)
{
	struct vti_scan *s = w->s;
	/* Chunks are 2 MiB, so a 1 GiB leaf is reported as 2 MiB records. */
	unsigned int shift = min(PAGE_SHIFT + 9 * (level - 1), PMD_SHIFT);
	enum vti_state state = VTI_IDLE;

	if (spte & BIT_ULL(w->a_bit)) {
		state = VTI_ACCESSED;
		/*
		 * A 1 GiB leaf is seen once per 2 MiB chunk: clear its bit only
		 * in the chunk that reaches its end (or the end of this piece),
		 * so the earlier chunks of the same read do not read it as idle.
		 */
		if ((s->flags & VMTIER_IDLE_F_CLEAR) &&
		    gend >= min(leaf_end, w->gpa_stop) &&
		    test_and_clear_bit(w->a_bit, (unsigned long *)sptep)) {
			s->cleared++;
			vti_mark_young((spte & VTI_SPTE_ADDR & ~sme_me_mask) >>
				       PAGE_SHIFT);
		}
	}
	vti_enc_range(&s->enc, gstart + w->hva_delta, gend + w->hva_delta,
		      shift, state);
}

static void vti_tdp_level(struct vti_tdp_walk *w, u64 *table, int level,
			  u64 gstart, u64 gend)
{
	unsigned int shift = PAGE_SHIFT + 9 * (level - 1);
	u64 size = 1ULL << shift;

	while (gstart < gend) {
		u64 *sptep = table + ((gstart >> shift) & (PTRS_PER_PTE - 1));
		u64 entry_end = (gstart & ~(size - 1)) + size;
		u64 next = min(entry_end, gend);
		u64 spte = READ_ONCE(*sptep);

		if (!(spte & VTI_SPTE_PRESENT))
			vti_enc_range(&w->s->enc, gstart + w->hva_delta,
				      next + w->hva_delta,
				      min_t(unsigned int, shift, PMD_SHIFT),
				      VTI_HOLE);
		else if (level == 1 || (spte & VTI_SPTE_LARGE))
			vti_tdp_leaf(w, sptep, spte, level, entry_end, gstart,
				     next);
		else
			vti_tdp_level(w, __va((spte & VTI_SPTE_ADDR) &
					      ~sme_me_mask),
				      level - 1, gstart, next);
		gstart = next;
	}
}

/* Walk GPA [gstart, gend) of @slot in 2 MiB chunks; *gpos tracks progress. */
static int vti_tdp_slot(struct vti_kvm *k, struct vti_tdp_walk *w,
			u64 *gpos, u64 gend)
{
	struct kvm *kvm = k->kvm;
	struct vti_scan *s = w->s;
	u64 g = *gpos;
	int ret = 0;

	while (g < gend) {
		u64 next = min(ALIGN(g + 1, PMD_SIZE), gend);
		struct kvm_vcpu *vcpu;
		hpa_t root;

		if (s->budget <= 0 ||
		    !vti_enc_room(&s->enc, (next - g) >> PAGE_SHIFT)) {
			ret = -ENOSPC;
			break;
		}
		write_lock(&kvm->mmu_lock);
		rcu_read_lock();
		vcpu = kvm_get_vcpu(kvm, 0);
		if (!vcpu) {
			ret = -EAGAIN;
		} else if (!vcpu->arch.root_mmu.root_role.direct ||
			   (k->ept && vcpu->arch.root_mmu.root_role.ad_disabled)) {
			/* Shadow paging, or EPT without accessed bits. */
			ret = -EOPNOTSUPP;
		} else {
			root = vcpu->arch.root_mmu.root.hpa;
			if (VALID_PAGE(root))
				vti_tdp_level(w, __va(root & ~sme_me_mask),
					      vcpu->arch.root_mmu.root_role.level,
					      g, next);
			else	/* no root yet: the guest has not run */
				vti_enc_range(&s->enc, g + w->hva_delta,
					      next + w->hva_delta, PAGE_SHIFT,
					      VTI_HOLE);
		}
		rcu_read_unlock();
		write_unlock(&kvm->mmu_lock);
		if (ret == -EAGAIN) {
			/* No vCPU yet: nothing can be mapped in the TDP tables. */
			ret = 0;
			vti_enc_range(&s->enc, g + w->hva_delta,
				      next + w->hva_delta, PAGE_SHIFT, VTI_HOLE);
		}
		if (ret)
			break;
		s->budget -= (next - g) >> PAGE_SHIFT;
		g = next;
		cond_resched();
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
	}
	*gpos = g;
	return ret;
}

/*
 * Report HVA [start, end) as seen by the VM's TDP tables: memslots in HVA
 * order, each walked through its GPA range. HVAs outside every memslot are
 * not guest RAM and are reported as not present.
 */
int vti_walk_tdp(struct vti_kvm *k, unsigned long start, unsigned long end,
		 struct vti_scan *s)
{
	struct kvm *kvm = k->kvm;
	struct vti_tdp_walk w = {
		.s = s,
		.a_bit = k->ept ? VTI_EPT_A_BIT : VTI_NPT_A_BIT,
	};
	unsigned long addr = start;
	int idx, ret = 0;

	idx = srcu_read_lock(&kvm->srcu);
	while (addr < end) {
		struct kvm_memslots *slots = kvm_memslots(kvm);
		struct kvm_memory_slot *slot, *best = NULL;
		unsigned long best_start = end, hva_start, hva_end;
		u64 gpa, gend;
		int bkt;

		/* The memslot with the lowest HVA at or after addr. */
		kvm_for_each_memslot(slot, bkt, slots) {
			unsigned long ss = slot->userspace_addr;
			unsigned long se = ss + (slot->npages << PAGE_SHIFT);

			if (slot->flags & KVM_MEMSLOT_INVALID || se <= addr)
				continue;
			ss = max(ss, addr);
			if (ss < best_start) {
				best_start = ss;
				best = slot;
			}
		}
		if (!best || best_start >= end) {
			addr = end;
			break;
		}
		hva_start = best_start;
		hva_end = min_t(unsigned long, end, best->userspace_addr +
				(best->npages << PAGE_SHIFT));
		w.hva_delta = best->userspace_addr -
			      ((unsigned long)best->base_gfn << PAGE_SHIFT);
		gpa = hva_start - w.hva_delta;
		gend = hva_end - w.hva_delta;
		w.gpa_stop = gend;
		ret = vti_tdp_slot(k, &w, &gpa, gend);
		addr = gpa + w.hva_delta;
		if (ret == -ENOSPC) {
			ret = 0;
			break;
		}
		if (ret)
			break;
	}
	srcu_read_unlock(&kvm->srcu, idx);
	s->next = addr;
	return ret;
}
