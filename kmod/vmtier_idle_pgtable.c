// SPDX-License-Identifier: GPL-2.0
/*
 * vmtier_idle: walk a process's page tables and read (and optionally clear)
 * the accessed bits. walk_page_range() and pte_offset_map*() are not exported
 * to modules on 6.12, so this walks the tables itself with the same rules the
 * core mm follows: mmap read lock held by the caller; PTE tables under RCU and
 * the PTE lock with the PMD re-checked, because since 6.5 khugepaged may free
 * a PTE table under only the PMD lock; huge leaves under their own lock.
 */
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/hugetlb.h>
#include <linux/page_idle.h>
#include <linux/pgtable.h>
#include "vmtier_idle.h"

#define VTI_A_BIT	_PAGE_BIT_ACCESSED

/* Worst-case bytes to describe @len bytes as one state. */
static unsigned long vti_uniform_bytes(unsigned long len)
{
	return DIV_ROUND_UP(len >> PAGE_SHIFT, VMTIER_IDLE_MAX_RUN) + 1;
}

/*
 * Clearing an A bit hides an access from reclaim; setting the folio's young
 * flag (and dropping idle) hands it back, as page_idle and DAMON do, so a scan
 * does not make hot pages look cold to the kernel. The caller holds the lock
 * of the entry that maps @pfn (for a TDP leaf, mmu_lock: the mmu notifier
 * must zap the leaf before the host unmaps the page), so the folio cannot be
 * freed under us.
 */
void vti_mark_young(unsigned long pfn)
{
	struct folio *folio;

	if (!pfn_valid(pfn) || is_zero_pfn(pfn))
		return;
	/* Driver and firmware pages (a TDP leaf may map them) are not ours. */
	if (PageReserved(pfn_to_page(pfn)))
		return;
	folio = page_folio(pfn_to_page(pfn));
	if (folio_is_zone_device(folio))
		return;
	/*
	 * Only memory reclaim manages: anonymous or file folios. A TDP leaf
	 * has no VMA to tell a PFNMAP or driver page (vm_insert_page) from
	 * guest RAM, and such pages, owned by a driver, have neither.
	 */
	if (!folio_test_anon(folio) && !folio_mapping(folio))
		return;
	/*
	 * Test first: in a steady scan the folio is already young and not
	 * idle, and a plain read spares two locked RMWs on its flags per
	 * cleared entry. A racing clear of young is as if it came just after.
	 */
	if (!folio_test_young(folio))
		folio_set_young(folio);
	if (folio_test_idle(folio))
		folio_clear_idle(folio);
}

/* Atomically test and clear the A bit of a page-table entry at @entry. */
static bool vti_test_clear_young(void *entry)
{
	return test_and_clear_bit(VTI_A_BIT, (unsigned long *)entry);
}

static bool vti_vma_has_folios(struct vm_area_struct *vma)
{
	return !(vma->vm_flags & (VM_PFNMAP | VM_IO));
}

static int vti_pte_table(struct vm_area_struct *vma, pmd_t *pmd, pmd_t pmdval,
			 unsigned long addr, unsigned long end,
			 struct vti_scan *s)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned int i, n = (end - addr) >> PAGE_SHIFT;
	bool folios = vti_vma_has_folios(vma);
	u8 states[PTRS_PER_PTE];
	spinlock_t *ptl;
	pte_t *pte;

	rcu_read_lock();
	if (!pmd_same(pmdval, READ_ONCE(*pmd))) {
		rcu_read_unlock();
		return -EAGAIN;
	}
	pte = (pte_t *)pmd_page_vaddr(pmdval) + pte_index(addr);
	ptl = pte_lockptr(mm, &pmdval);
	spin_lock(ptl);
	/* The table may have been freed and replaced before we got the lock. */
	if (!pmd_same(pmdval, READ_ONCE(*pmd))) {
		spin_unlock(ptl);
		rcu_read_unlock();
		return -EAGAIN;
	}
	for (i = 0; i < n; i++) {
		pte_t ptent = ptep_get(pte + i);

		if (pte_none(ptent) || !pte_present(ptent)) {
			states[i] = VTI_HOLE;
			continue;
		}
		if (!pte_young(ptent)) {
			states[i] = VTI_IDLE;
			continue;
		}
		states[i] = VTI_ACCESSED;
		if (!(s->flags & VMTIER_IDLE_F_CLEAR))
			continue;
		if (vti_test_clear_young(pte + i)) {
			s->cleared++;
			if (folios && !pte_special(ptent) && !pte_devmap(ptent))
				vti_mark_young(pte_pfn(ptent));
		}
	}
	spin_unlock(ptl);
	rcu_read_unlock();
	vti_enc_ptes(&s->enc, addr, states, n);
	return 0;
}

static int vti_pmd_leaf(struct vm_area_struct *vma, pmd_t *pmd, pmd_t pmdval,
			unsigned long addr, unsigned long end, bool may_clear,
			struct vti_scan *s)
{
	spinlock_t *ptl;

	/*
	 * Only clearing needs the lock (the folio must stay while it is
	 * marked young); an old leaf, or one only read, is reported from the
	 * entry as read: the mmap read lock keeps the table itself, and a
	 * racing split or zap changes nothing a moment's later read would not.
	 */
	if (!pmd_young(pmdval) || !may_clear ||
	    !(s->flags & VMTIER_IDLE_F_CLEAR)) {
		vti_enc_range(&s->enc, addr, end, PMD_SHIFT,
			      pmd_young(pmdval) ? VTI_ACCESSED : VTI_IDLE);
		return 0;
	}
	ptl = pmd_lock(vma->vm_mm, pmd);
	if (!pmd_same(pmdval, READ_ONCE(*pmd))) {
		spin_unlock(ptl);
		return -EAGAIN;
	}
	/* Young, and ours to clear. */
	if (vti_test_clear_young(pmd)) {
		s->cleared++;
		if (vti_vma_has_folios(vma) && !pmd_devmap(pmdval))
			vti_mark_young(pmd_pfn(pmdval));
	}
	spin_unlock(ptl);
	vti_enc_range(&s->enc, addr, end, PMD_SHIFT, VTI_ACCESSED);
	return 0;
}

/* Returns -ENOSPC when the output or the budget is used up at @*pos. */
static int vti_pmd_range(struct vm_area_struct *vma, pud_t *pud,
			 unsigned long *pos, unsigned long end,
			 struct vti_scan *s)
{
	unsigned long addr = *pos, next;
	pmd_t *pmd = pmd_offset(pud, addr);
	int ret = 0;

	for (; addr < end; pmd++, addr = next) {
		bool partial = false;
		size_t fit;
		pmd_t pmdval;

		next = pmd_addr_end(addr, end);
		/* Let a writer (page fault, munmap) in once some work is done. */
		if (s->budget <= 0 ||
		    (addr > s->start && mmap_lock_is_contended(vma->vm_mm))) {
			ret = -ENOSPC;
			break;
		}
		/*
		 * Worst case one byte per 4 KiB page. When the buffer cannot
		 * take the whole PMD, describe the part that fits and stop, so
		 * that a small read still makes progress.
		 */
		fit = vti_enc_avail(&s->enc);
		if (fit < (next - addr) >> PAGE_SHIFT) {
			if (!fit) {
				ret = -ENOSPC;
				break;
			}
			next = addr + fit * PAGE_SIZE;
			partial = true;
		}
again:
		pmdval = READ_ONCE(*pmd);
		if (pmd_none(pmdval) || !pmd_present(pmdval)) {
			/* Empty, or a migration entry: nothing mapped now. */
			vti_enc_range(&s->enc, addr, next, PMD_SHIFT, VTI_HOLE);
			s->budget--;
		} else if (pmd_leaf(pmdval)) {
			/*
			 * Clear a leaf only in the read that reaches its end: one
			 * that stops inside it (a full buffer, or the limit of a
			 * range that ends there) leaves the A bit to the read of
			 * the rest, which would otherwise report it idle.
			 */
			if (vti_pmd_leaf(vma, pmd, pmdval, addr, next,
					 IS_ALIGNED(next, PMD_SIZE), s))
				goto again;
			s->budget--;
		} else if (pmd_bad(pmdval)) {
			vti_enc_range(&s->enc, addr, next, PMD_SHIFT, VTI_HOLE);
			s->budget--;
		} else {
			if (vti_pte_table(vma, pmd, pmdval, addr, next, s))
				goto again;
			s->budget -= (next - addr) >> PAGE_SHIFT;
		}
		if (partial) {
			addr = next;
			ret = -ENOSPC;
			break;
		}
		cond_resched();
	}
	*pos = addr;
	return ret;
}

static int vti_pud_leaf(struct vm_area_struct *vma, pud_t *pud, pud_t pudval,
			unsigned long addr, unsigned long end, bool may_clear,
			struct vti_scan *s)
{
	spinlock_t *ptl;

	/* As for PMD leaves: only clearing takes the lock. */
	if (!pud_young(pudval) || !may_clear ||
	    !(s->flags & VMTIER_IDLE_F_CLEAR)) {
		vti_enc_range(&s->enc, addr, end, PUD_SHIFT,
			      pud_young(pudval) ? VTI_ACCESSED : VTI_IDLE);
		return 0;
	}
	/* 1 GiB hugetlb and DAX leaves are both locked by page_table_lock. */
	ptl = pud_lock(vma->vm_mm, pud);
	if (!pud_same(pudval, READ_ONCE(*pud))) {
		spin_unlock(ptl);
		return -EAGAIN;
	}
	/* Young, and ours to clear. */
	if (vti_test_clear_young(pud)) {
		s->cleared++;
		if (vti_vma_has_folios(vma) && !pud_devmap(pudval))
			vti_mark_young(pud_pfn(pudval));
	}
	spin_unlock(ptl);
	vti_enc_range(&s->enc, addr, end, PUD_SHIFT, VTI_ACCESSED);
	return 0;
}

static int vti_vma_range(struct vm_area_struct *vma, unsigned long *pos,
			 unsigned long end, struct vti_scan *s)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned long addr = *pos, next;
	int ret = 0;

	while (addr < end) {
		pgd_t *pgd = pgd_offset(mm, addr);
		p4d_t *p4d;
		pud_t *pud, pudval;

		if (pgd_none(*pgd) || pgd_bad(*pgd)) {
			addr = pgd_addr_end(addr, end);
			continue;
		}
		p4d = p4d_offset(pgd, addr);
		if (p4d_none(*p4d) || p4d_bad(*p4d)) {
			addr = p4d_addr_end(addr, end);
			continue;
		}
		pud = pud_offset(p4d, addr);
		next = pud_addr_end(addr, end);
again:
		pudval = READ_ONCE(*pud);
		if (pud_none(pudval) || !pud_present(pudval)) {
			addr = next;	/* a gap: the next record's SET_ADDR says so */
			continue;
		}
		if (pud_leaf(pudval)) {
			unsigned long stop = next;
			size_t fit = vti_enc_avail(&s->enc);
			/* A whole leaf is one record: no per-4 KiB estimate. */
			unsigned long need = IS_ALIGNED(addr, PUD_SIZE) &&
					     next - addr == PUD_SIZE ? 2 :
					     vti_uniform_bytes(next - addr);

			if (s->budget <= 0 || !fit) {
				ret = -ENOSPC;
				break;
			}
			/*
			 * As for PMDs: describe the part that fits; only a read
			 * that reaches the leaf's end clears it.
			 */
			if (fit < need)
				stop = addr + min_t(unsigned long, next - addr,
						    (fit - 1) * VMTIER_IDLE_MAX_RUN *
						    PAGE_SIZE);
			if (stop == addr) {
				ret = -ENOSPC;
				break;
			}
			if (vti_pud_leaf(vma, pud, pudval, addr, stop,
					 IS_ALIGNED(stop, PUD_SIZE), s))
				goto again;
			s->budget--;
			addr = stop;
			if (stop != next) {
				ret = -ENOSPC;
				break;
			}
			continue;
		}
		if (pud_bad(pudval)) {
			addr = next;
			continue;
		}
		ret = vti_pmd_range(vma, pud, &addr, next, s);
		if (ret)
			break;
	}
	*pos = addr;
	return ret;
}

/*
 * Shared hugetlbfs mappings may share PMD tables between processes, and those
 * are unshared under the hugetlb VMA lock, which modules cannot take: skip
 * them (reported as not present) rather than walk a table that can go away.
 */
static bool vti_vma_skip(struct vm_area_struct *vma)
{
	return is_vm_hugetlb_page(vma) && (vma->vm_flags & VM_MAYSHARE);
}

/*
 * Walk [start, end) of @mm with its mmap lock held for read. Stops early when
 * the output buffer or the work budget is used up; s->next says where.
 */
int vti_walk_mm(struct mm_struct *mm, unsigned long start, unsigned long end,
		struct vti_scan *s)
{
	unsigned long addr = start;
	int ret = 0;

	while (addr < end) {
		struct vm_area_struct *vma = find_vma(mm, addr);
		unsigned long vend;

		if (!vma || vma->vm_start >= end) {
			addr = end;
			break;
		}
		if (vma->vm_start > addr)
			addr = vma->vm_start;
		vend = min(end, vma->vm_end);
		if (vti_vma_skip(vma)) {
			addr = vend;
			continue;
		}
		ret = vti_vma_range(vma, &addr, vend, s);
		if (ret == -ENOSPC) {
			ret = 0;
			break;
		}
		if (ret)
			break;
		if (fatal_signal_pending(current)) {
			ret = -ERESTARTSYS;
			break;
		}
	}
	s->next = addr;
	return ret;
}
