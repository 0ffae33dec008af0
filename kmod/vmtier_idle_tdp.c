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
 * clear_young path) takes the write lock too. The lock is taken once per
 * memslot piece of a read and given up only when a vCPU waits for it or the
 * scheduler asks; the walk then restarts from a fresh root.
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
	struct kvm *kvm;
	struct vti_scan *s;
	bool ept;
	unsigned long hva_delta;	/* hva = gpa + hva_delta */
	u64 pos;			/* next GPA to describe */
	u64 gend;			/* end of this memslot piece */
	u64 lock_pos;			/* pos when mmu_lock was last taken */
	/*
	 * Aliased HVAs (several memslots): per-4 KiB states of the HVA chunk
	 * at merge_hva, merged over the memslots instead of encoded.
	 */
	u8 *merge;
	unsigned long merge_hva;
};

/* vti_tdp_level(): drop mmu_lock for a waiter or the scheduler, resume at pos. */
#define VTI_TDP_RELOCK	1

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

/* Worst-case bytes to describe @len bytes as one state in 4 KiB units. */
static unsigned long vti_tdp_page_bytes(u64 len)
{
	return DIV_ROUND_UP(len >> PAGE_SHIFT, VMTIER_IDLE_MAX_RUN) + 1;
}

/*
 * Describe the entry at @sptep (a leaf, or not present) from w->pos up to
 * @stop, the entry's end or the walk's. A whole entry is one record of its
 * own size (4 KiB, 2 MiB or 1 GiB); a part is 4 KiB units. When the output
 * cannot take the rest, the part that fits is described and -ENOSPC ends the
 * read there.
 */
static int vti_tdp_leaf(struct vti_tdp_walk *w, u64 *sptep, u64 spte,
			int level, u64 stop)
{
	struct vti_scan *s = w->s;
	unsigned int shift = vti_spte_shift(level);
	u64 size = 1ULL << shift;
	u64 entry_start = w->pos & ~(size - 1), entry_end = entry_start + size;
	u64 g = w->pos, next = min(entry_end, stop);
	unsigned long hstart = g + w->hva_delta;
	enum vti_state state = VTI_HOLE;
	size_t fit = vti_enc_avail(&s->enc);
	unsigned long need;
	bool partial = false;

	if (!vti_spte_present(spte)) {
		/* 1 GiB or more not mapped: skipped, which means not present. */
		if (level >= 3) {
			w->pos = next;
			return 0;
		}
	} else {
		state = vti_spte_young(spte, w->ept) ? VTI_ACCESSED : VTI_IDLE;
	}
	if (w->merge)
		need = 0;	/* the caller made room for the whole chunk */
	else if (g == entry_start && next == entry_end && IS_ALIGNED(hstart, size))
		need = 2;
	else
		need = vti_tdp_page_bytes(next - g);
	if (fit < need) {
		u64 pages = fit > 1 ? (fit - 1) * VMTIER_IDLE_MAX_RUN : 0;

		if (!pages)
			return -ENOSPC;
		next = min(next, g + pages * PAGE_SIZE);
		partial = true;
	}
	/*
	 * Clear only in a read that reaches the leaf's end. A read that stops
	 * inside it (a range's limit, a full buffer) leaves the A bit to the
	 * read that describes the rest, which would otherwise find it clear and
	 * report an accessed leaf as idle.
	 */
	if (state == VTI_ACCESSED && (s->flags & VMTIER_IDLE_F_CLEAR) &&
	    next == entry_end && vti_spte_clearable(spte, w->ept) &&
	    test_and_clear_bit(vti_spte_a_shift(w->ept), (unsigned long *)sptep)) {
		s->cleared++;
		vti_mark_young(vti_spte_pfn(spte, sme_me_mask));
	}
	if (w->merge) {
		unsigned long i = (hstart - w->merge_hva) >> PAGE_SHIFT;
		unsigned long n = (next - g) >> PAGE_SHIFT;

		/* Accessed through any alias wins over idle, idle over hole. */
		for (; n; n--, i++)
			w->merge[i] = min_t(u8, w->merge[i], state);
	} else {
		vti_enc_range(&s->enc, hstart, next + w->hva_delta, shift,
			      state);
	}
	w->pos = next;
	return partial ? -ENOSPC : 0;
}

/*
 * Walk the table at @level from w->pos to @stop with mmu_lock held. Returns
 * 0 at @stop, -ENOSPC when the output or the budget is used up, or
 * VTI_TDP_RELOCK when a vCPU waits for mmu_lock or the CPU should be given
 * up: the caller drops the lock and starts again from the root at w->pos
 * (the tables may change meanwhile), as KVM's own TDP iterators do.
 */
static int vti_tdp_level(struct vti_tdp_walk *w, u64 *table, int level,
			 u64 stop)
{
	unsigned int shift = vti_spte_shift(level);
	u64 size = 1ULL << shift;
	int ret;

	while (w->pos < stop) {
		u64 *sptep = table + ((w->pos >> shift) & (PTRS_PER_PTE - 1));
		u64 entry_end = (w->pos & ~(size - 1)) + size;
		u64 spte = READ_ONCE(*sptep);

		/* A merged chunk is finished whole: the budget was checked. */
		if (w->s->budget <= 0 && !w->merge)
			return -ENOSPC;
		if (w->pos != w->lock_pos &&
		    (need_resched() || rwlock_needbreak(&w->kvm->mmu_lock)))
			return VTI_TDP_RELOCK;
		if (vti_spte_present(spte) && !vti_spte_leaf(spte, level)) {
			ret = vti_tdp_level(w, pfn_to_kaddr(vti_spte_pfn(spte,
								     sme_me_mask)),
					    level - 1, min(entry_end, stop));
		} else {
			ret = vti_tdp_leaf(w, sptep, spte, level, stop);
			w->s->budget--;
		}
		if (ret)
			return ret;
	}
	return 0;
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

/*
 * Walk GPA [w->pos, w->gend) of one memslot with mmu_lock held across whole
 * tables: it is dropped only when a vCPU waits for it or the scheduler asks
 * (cond_resched_rwlock_write), and then the walk resumes from a fresh root.
 */
static int vti_tdp_slot(struct vti_kvm *k, struct vti_tdp_walk *w)
{
	struct kvm *kvm = k->kvm;
	int ret = 0;

	write_lock(&kvm->mmu_lock);
	w->s->lock_takes++;
	rcu_read_lock();
	while (w->pos < w->gend) {
		hpa_t root;
		int level = 0;

		w->lock_pos = w->pos;
		ret = vti_tdp_root(k, &root, &level);
		if (ret)
			break;
		if (!VALID_PAGE(root)) {
			/* No vCPU can map anything: all of it is not present. */
			w->pos = w->gend;
			break;
		}
		ret = vti_tdp_level(w, pfn_to_kaddr(vti_spte_pfn(root,
								 sme_me_mask)),
				    level, w->gend);
		if (ret != VTI_TDP_RELOCK)
			break;
		ret = 0;
		rcu_read_unlock();
		if (cond_resched_rwlock_write(&kvm->mmu_lock))
			w->s->lock_takes++;
		rcu_read_lock();
		if (fatal_signal_pending(current)) {
			ret = -ERESTARTSYS;
			break;
		}
	}
	rcu_read_unlock();
	write_unlock(&kvm->mmu_lock);
	return ret;
}

static bool vti_slot_covers(const struct kvm_memory_slot *slot,
			    unsigned long hstart, unsigned long hend)
{
	return !(slot->flags & KVM_MEMSLOT_INVALID) &&
	       slot->userspace_addr <= hstart &&
	       slot->userspace_addr + (slot->npages << PAGE_SHIFT) >= hend;
}

static void vti_slot_piece(struct vti_tdp_walk *w,
			   const struct kvm_memory_slot *slot,
			   unsigned long hstart, unsigned long hend)
{
	w->hva_delta = slot->userspace_addr -
		       ((unsigned long)slot->base_gfn << PAGE_SHIFT);
	w->pos = hstart - w->hva_delta;
	w->gend = hend - w->hva_delta;
}

/*
 * HVA [*hpos, hend) is mapped by several memslots (aliases: the same host
 * memory at several GPAs, each with its own TDP leaves). Every alias is
 * walked per 2 MiB HVA chunk and the states merged per 4 KiB page, so an
 * access through any of them reads as accessed, and each clears its own
 * leaves. Aliases are rare (firmware and VGA windows), so the 4 KiB
 * granularity of their report costs little.
 */
static int vti_tdp_aliases(struct vti_kvm *k, struct vti_tdp_walk *w,
			   unsigned long *hpos, unsigned long hend)
{
	struct kvm_memslots *slots = kvm_memslots(k->kvm);
	struct vti_scan *s = w->s;
	struct kvm_memory_slot *slot;
	u8 states[PTRS_PER_PTE];
	int bkt, ret = 0;

	w->merge = states;
	while (*hpos < hend) {
		unsigned long h = *hpos;
		unsigned long cend = min(ALIGN(h + 1, PMD_SIZE), hend);
		size_t fit = vti_enc_avail(&s->enc);
		unsigned int n;

		if (s->budget <= 0 || !fit) {
			ret = -ENOSPC;
			break;
		}
		/* Worst case one byte per page: describe what fits. */
		if (fit < (cend - h) >> PAGE_SHIFT)
			cend = h + fit * PAGE_SIZE;
		n = (cend - h) >> PAGE_SHIFT;
		memset(states, VTI_HOLE, n);
		w->merge_hva = h;
		kvm_for_each_memslot(slot, bkt, slots) {
			if (!vti_slot_covers(slot, h, cend))
				continue;
			vti_slot_piece(w, slot, h, cend);
			ret = vti_tdp_slot(k, w);
			if (ret)
				break;
		}
		if (ret)
			break;
		vti_enc_ptes(&s->enc, h, states, n);
		s->budget -= n;
		*hpos = cend;
	}
	w->merge = NULL;
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
		.kvm = kvm,
		.s = s,
		.ept = k->ept,
	};
	unsigned long addr = start;
	int idx, ret = 0;

	idx = srcu_read_lock(&kvm->srcu);
	while (addr < end) {
		struct kvm_memslots *slots = kvm_memslots(kvm);
		struct kvm_memory_slot *slot, *best = NULL;
		unsigned long best_start = end, hva_end;
		int bkt, aliases = 0;

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
		hva_end = min_t(unsigned long, end, best->userspace_addr +
				(best->npages << PAGE_SHIFT));
		/*
		 * The piece ends where another memslot begins or ends, so that
		 * one set of memslots maps all of it; aliases counts the others
		 * that map its start.
		 */
		kvm_for_each_memslot(slot, bkt, slots) {
			unsigned long ss = slot->userspace_addr;
			unsigned long se = ss + (slot->npages << PAGE_SHIFT);

			if (slot == best || slot->flags & KVM_MEMSLOT_INVALID ||
			    se <= best_start || ss >= hva_end)
				continue;
			if (ss > best_start) {
				hva_end = ss;
				continue;
			}
			hva_end = min(hva_end, se);
			aliases++;
		}
		if (aliases) {
			addr = best_start;
			ret = vti_tdp_aliases(k, &w, &addr, hva_end);
		} else {
			vti_slot_piece(&w, best, best_start, hva_end);
			ret = vti_tdp_slot(k, &w);
			addr = w.pos + w.hva_delta;
		}
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
