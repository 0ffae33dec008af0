// SPDX-License-Identifier: GPL-2.0
/*
 * vmtier_idle: walk a KVM VM's two-dimensional paging tables (AMD NPT, Intel
 * EPT with A/D bits) over its memslots and report in host-virtual terms.
 *
 * What 6.1 and 6.12 allow a module: kvm.ko exports kvm_get_kvm, kvm_put_kvm
 * and kvm_flush_remote_tlbs (taken with symbol_get() so this module loads
 * without kvm), struct kvm and struct kvm_vcpu are in the public headers, but
 * the TDP MMU's root list and struct kvm_mmu_page live in arch/x86/kvm/mmu/
 * and are not. So the walk starts from a vCPU's root_mmu root: the first vCPU
 * whose root is loaded, direct (TDP), for address space 0 (not SMM), not a
 * nested guest's, and not due to be dropped (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS
 * pending: a fast zap made it obsolete and a halted vCPU keeps it until it
 * runs again). The SPTE layout is in vmtier_idle_spte.h.
 *
 * Locking: kvm->srcu for the memslots; kvm->mmu_lock for WRITE plus RCU for
 * the tables. Read would do for the tables, but a vCPU drops its root under
 * the read lock, and without the root list there is no way to tell a stale
 * vCPU root from a live one; KVM's own aging on 6.12 (the mmu notifier
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
#include <linux/version.h>
#include <linux/magic.h>
#include <asm/processor.h>
#include "vmtier_idle.h"
#include "vmtier_idle_spte.h"

/*
 * vmtier_idle_spte.h restates kvm's private SPTE layout, and the root choice
 * below relies on KVM_REQ_MMU_FREE_OBSOLETE_ROOTS marking obsolete roots:
 * both were checked for 6.1 to 6.12 only.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0) || \
	LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#error "vmtier_idle: KVM's SPTE layout and root handling not checked for this kernel"
#endif

struct vti_tdp_walk {
	struct vti_scan *s;
	bool ept;
	unsigned long hva_delta;	/* hva = gpa + hva_delta */
	u64 gpa_stop;			/* end of this memslot piece */
};

struct vti_fd_search {
	struct mm_struct *mm;
	void (*get)(struct kvm *kvm);
	struct kvm *kvm;
	bool ept;
};

static int vti_find_vm_fd(const void *p, struct file *file, unsigned int fd)
{
	struct vti_fd_search *q = (struct vti_fd_search *)p;
	struct module *owner = file->f_op ? file->f_op->owner : NULL;
	const char *mod = owner ? module_name(owner) : NULL;
	struct kvm *kvm;

	/*
	 * kvm's VM files are anonymous inodes named "kvm-vm" (only kernel code
	 * makes anonymous inodes, and only kvm uses that name). Since 6.7, and
	 * on 6.12, kvm_init() makes the vendor module (kvm_amd or kvm_intel)
	 * the owner of their fops; on 6.1 they have no owner.
	 */
	if (file_inode(file)->i_sb->s_magic != ANON_INODE_FS_MAGIC ||
	    strcmp(file->f_path.dentry->d_name.name, "kvm-vm") ||
	    (mod && strcmp(mod, "kvm_amd") && strcmp(mod, "kvm_intel")))
		return 0;
	kvm = file->private_data;
	/* A VM fd passed in from another process is not this one's VM. */
	if (!kvm || kvm->mm != q->mm)
		return 0;
	q->get(kvm);	/* refcount_inc: fine under the file table lock */
	q->kvm = kvm;
	/*
	 * The A bit's position follows the vendor module that runs the VM, not
	 * the CPU vendor: kvm_intel (EPT) also runs on Centaur and Zhaoxin.
	 * Without an owner (6.1), the CPU's virtualization extension decides:
	 * VMX means kvm_intel, SVM kvm_amd, and no CPU has both.
	 */
	q->ept = mod ? !strcmp(mod, "kvm_intel") : boot_cpu_has(X86_FEATURE_VMX);
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
	out->ept = q.ept;
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

/*
 * True when this module holds the VM's last user reference: the VMM closed
 * its VM and vCPU fds, so the VM is gone for everyone else. The count cannot
 * rise again: new references come only from those fds.
 */
bool vti_kvm_orphaned(const struct vti_kvm *k)
{
	return refcount_read(&k->kvm->users_count) == 1;
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
	unsigned int shift = min(vti_spte_shift(level), (unsigned int)PMD_SHIFT);
	enum vti_state state = VTI_IDLE;

	if (vti_spte_young(spte, w->ept)) {
		state = VTI_ACCESSED;
		/*
		 * A 1 GiB leaf is seen once per 2 MiB chunk: clear its bit only
		 * in the chunk that reaches its end (or the end of this piece),
		 * so the earlier chunks of the same read do not read it as idle.
		 */
		if ((s->flags & VMTIER_IDLE_F_CLEAR) &&
		    vti_spte_clearable(spte, w->ept) &&
		    gend >= min(leaf_end, w->gpa_stop) &&
		    test_and_clear_bit(vti_spte_a_shift(w->ept),
				       (unsigned long *)sptep)) {
			s->cleared++;
			vti_mark_young(vti_spte_pfn(spte, sme_me_mask));
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

		if (!vti_spte_present(spte))
			vti_enc_range(&w->s->enc, gstart + w->hva_delta,
				      next + w->hva_delta,
				      min_t(unsigned int, shift, PMD_SHIFT),
				      VTI_HOLE);
		else if (vti_spte_leaf(spte, level))
			vti_tdp_leaf(w, sptep, spte, level, entry_end, gstart,
				     next);
		else
			vti_tdp_level(w, pfn_to_kaddr(vti_spte_pfn(spte,
								     sme_me_mask)),
				      level - 1, gstart, next);
		gstart = next;
	}
}

/*
 * The root to walk, under mmu_lock: the first vCPU whose root_mmu root is
 * loaded, for address space 0 (not SMM), not a nested guest's and not due to
 * be freed as obsolete. INVALID_PAGE when no vCPU has one (nothing is mapped
 * that a vCPU could use); -EOPNOTSUPP for shadow paging or EPT without A/D.
 */
static int vti_tdp_root(struct vti_kvm *k, hpa_t *root, int *level)
{
	struct kvm_vcpu *vcpu;
	unsigned long i;

	*root = INVALID_PAGE;
	kvm_for_each_vcpu(i, vcpu, k->kvm) {
		struct kvm_mmu *mmu = &vcpu->arch.root_mmu;

		if (!mmu->root_role.direct ||
		    (k->ept && mmu->root_role.ad_disabled))
			return -EOPNOTSUPP;
		if (!VALID_PAGE(mmu->root.hpa) || mmu->root_role.smm ||
		    mmu->root_role.guest_mode ||
		    kvm_test_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, vcpu))
			continue;
		*root = mmu->root.hpa;
		*level = mmu->root_role.level;
		return 0;
	}
	return 0;
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
		size_t fit = vti_enc_avail(&s->enc);
		bool partial = false;
		hpa_t root;
		int level = 0;

		if (s->budget <= 0 || !fit) {
			ret = -ENOSPC;
			break;
		}
		/*
		 * Worst case one byte per 4 KiB page: describe what fits, so a
		 * small read makes progress (a huge leaf cut here is not cleared:
		 * vti_tdp_leaf clears only in the chunk that reaches its end).
		 */
		if (fit < (next - g) >> PAGE_SHIFT) {
			next = g + fit * PAGE_SIZE;
			partial = true;
		}
		write_lock(&kvm->mmu_lock);
		rcu_read_lock();
		ret = vti_tdp_root(k, &root, &level);
		if (!ret && VALID_PAGE(root))
			vti_tdp_level(w, pfn_to_kaddr(vti_spte_pfn(root,
							   sme_me_mask)),
				      level, g, next);
		else if (!ret)	/* no usable root: no vCPU can map anything */
			vti_enc_range(&s->enc, g + w->hva_delta,
				      next + w->hva_delta, PAGE_SHIFT,
				      VTI_HOLE);
		rcu_read_unlock();
		write_unlock(&kvm->mmu_lock);
		if (ret)
			break;
		s->budget -= (next - g) >> PAGE_SHIFT;
		g = next;
		if (partial) {
			ret = -ENOSPC;
			break;
		}
		cond_resched();
		if (fatal_signal_pending(current)) {
			ret = -ERESTARTSYS;
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
		.ept = k->ept,
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
