/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmtier_idle: decoding of KVM's TDP leaf entries (SPTEs) for AMD NPT and
 * Intel EPT. Static inline and free of kernel-only headers so that the same
 * code is compiled into the module and into a user-space test
 * (test/unit/kmod-spte.c) that runs it on synthetic EPT and NPT entries.
 *
 * The layout restates arch/x86/kvm/mmu/spte.h, which is private to kvm; it
 * was checked against 6.1 and 6.12 and the module refuses to build for other
 * kernels until it is checked again (vmtier_idle_tdp.c).
 */
#ifndef _VMTIER_IDLE_SPTE_H
#define _VMTIER_IDLE_SPTE_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdbool.h>
#include <stdint.h>
typedef uint64_t u64;
#endif

#define VTI_SPTE_PRESENT	(1ULL << 11)	/* SPTE_MMU_PRESENT_MASK */
#define VTI_SPTE_LARGE		(1ULL << 7)	/* PT_PAGE_SIZE_MASK */
#define VTI_SPTE_ADDR		0x000ffffffffff000ULL	/* bits 51:12 */
#define VTI_NPT_A_SHIFT		5		/* PT_ACCESSED_SHIFT */
#define VTI_EPT_A_SHIFT		8		/* VMX_EPT_ACCESS_BIT */
#define VTI_EPT_RWX		0x7ULL		/* VMX_EPT_RWX_MASK */
/* SPTE_TDP_AD_MASK: how KVM tracks accesses for this entry. */
#define VTI_SPTE_AD_SHIFT	52
#define VTI_SPTE_AD_MASK	(3ULL << VTI_SPTE_AD_SHIFT)
#define VTI_SPTE_AD_DISABLED	(1ULL << VTI_SPTE_AD_SHIFT)

/* The A bit's position: bit 8 in EPT; bit 5 in NPT (in EPT, memory type). */
static inline unsigned int vti_spte_a_shift(bool ept)
{
	return ept ? VTI_EPT_A_SHIFT : VTI_NPT_A_SHIFT;
}

static inline bool vti_spte_present(u64 spte)
{
	return spte & VTI_SPTE_PRESENT;
}

/* A leaf at @level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB; 4 and 5 never are). */
static inline bool vti_spte_leaf(u64 spte, int level)
{
	return level == 1 ||
	       (level <= 3 && (spte & VTI_SPTE_LARGE));
}

/* log2 of the bytes an entry at @level maps. */
static inline unsigned int vti_spte_shift(int level)
{
	return 12 + 9 * (level - 1);
}

/*
 * KVM marks entries whose accesses it tracks without A/D bits (EPT with A/D
 * off, or per entry): their A bit means nothing and must not be cleared.
 */
static inline bool vti_spte_ad_enabled(u64 spte)
{
	return (spte & VTI_SPTE_AD_MASK) != VTI_SPTE_AD_DISABLED;
}

/*
 * Was the leaf accessed? With A/D bits, the A bit. Without them (EPT only),
 * KVM ages an entry by removing its RWX permissions, so an entry that still
 * has any is young.
 */
static inline bool vti_spte_young(u64 spte, bool ept)
{
	if (!vti_spte_ad_enabled(spte))
		return ept && (spte & VTI_EPT_RWX);
	return spte & (1ULL << vti_spte_a_shift(ept));
}

/* May the A bit of this entry be cleared (atomically, bit vti_spte_a_shift)? */
static inline bool vti_spte_clearable(u64 spte, bool ept)
{
	return vti_spte_ad_enabled(spte) &&
	       (spte & (1ULL << vti_spte_a_shift(ept)));
}

/* The host frame number a leaf maps; @me_mask is the SME encryption bit. */
static inline u64 vti_spte_pfn(u64 spte, u64 me_mask)
{
	return (spte & VTI_SPTE_ADDR & ~me_mask) >> 12;
}

#endif /* _VMTIER_IDLE_SPTE_H */
