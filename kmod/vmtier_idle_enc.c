// SPDX-License-Identifier: GPL-2.0
/*
 * vmtier_idle: the run-length encoder of the read stream. kmod/README.md
 * describes the format byte for byte; this file is its only producer.
 */
#include <linux/kernel.h>
#include <linux/bug.h>
#include <linux/mm.h>
#include "vmtier_idle.h"

#define VTI_SET_ADDR_BYTES	9
/* A pending run byte, a SET_ADDR, and the trailing SET_ADDR of finish(). */
#define VTI_RESERVE		(1 + 2 * VTI_SET_ADDR_BYTES)

void vti_enc_init(struct vti_enc *e, u8 *buf, size_t size, unsigned long start)
{
	e->buf = buf;
	e->size = size;
	e->len = 0;
	e->cursor = start;
	e->run_type = -1;
	e->run_len = 0;
	e->broken = false;
}

/* Record bytes that still fit with room to end the stream. */
size_t vti_enc_avail(const struct vti_enc *e)
{
	return e->len + VTI_RESERVE < e->size ?
	       e->size - e->len - VTI_RESERVE : 0;
}

static void vti_enc_flush_run(struct vti_enc *e)
{
	if (e->run_type < 0)
		return;
	/*
	 * The walkers check room first: running out is a bug, and dropping a
	 * record would misplace everything after it, so the read fails.
	 */
	if (WARN_ON_ONCE(e->len >= e->size)) {
		e->broken = true;
		return;
	}
	e->buf[e->len++] = (u8)((e->run_type << 4) | e->run_len);
	e->run_type = -1;
	e->run_len = 0;
}

static void vti_enc_set_addr(struct vti_enc *e, unsigned long addr)
{
	u64 a = addr;
	int i;

	vti_enc_flush_run(e);
	if (WARN_ON_ONCE(e->len + VTI_SET_ADDR_BYTES > e->size)) {
		e->broken = true;
		return;
	}
	e->buf[e->len++] = VMTIER_IDLE_CMD_SET_ADDR;
	for (i = 7; i >= 0; i--)
		e->buf[e->len++] = (u8)(a >> (i * 8));
	e->cursor = addr;
}

static void vti_enc_put(struct vti_enc *e, unsigned long addr, int type,
			unsigned long unit)
{
	if (addr != e->cursor)
		vti_enc_set_addr(e, addr);
	if (e->run_type == type && e->run_len < VMTIER_IDLE_MAX_RUN) {
		e->run_len++;
	} else {
		vti_enc_flush_run(e);
		e->run_type = type;
		e->run_len = 1;
	}
	e->cursor = addr + unit;
}

/* Record type for a state at a mapping size, or -1 for "say nothing". */
static int vti_type(enum vti_state state, unsigned int shift)
{
	static const int types[3][3] = {
		[VTI_ACCESSED] = { VMTIER_IDLE_PTE_ACCESSED,
				   VMTIER_IDLE_PMD_ACCESSED,
				   VMTIER_IDLE_PUD_ACCESSED },
		[VTI_IDLE] = { VMTIER_IDLE_PTE_IDLE, VMTIER_IDLE_PMD_IDLE,
			       VMTIER_IDLE_PUD_IDLE },
		/* 1 GiB holes are left to SET_ADDR: gaps mean not present. */
		[VTI_HOLE] = { VMTIER_IDLE_PTE_HOLE, VMTIER_IDLE_PMD_HOLE, -1 },
	};
	int level = shift == PUD_SHIFT ? 2 : shift == PMD_SHIFT ? 1 : 0;

	return types[state][level];
}

/*
 * Describe [start, end) as one state. Units of 1 << @shift are used only when
 * the range is aligned to them; anything else (a range boundary cutting a huge
 * mapping) is described per 4 KiB page, so huge records are always aligned.
 */
void vti_enc_range(struct vti_enc *e, unsigned long start, unsigned long end,
		   unsigned int shift, enum vti_state state)
{
	unsigned long unit = 1UL << shift;
	int type;

	if (shift != PAGE_SHIFT &&
	    (!IS_ALIGNED(start, unit) || !IS_ALIGNED(end, unit))) {
		shift = PAGE_SHIFT;
		unit = PAGE_SIZE;
	}
	type = vti_type(state, shift);
	if (type < 0)
		return;
	for (; start < end; start += unit)
		vti_enc_put(e, start, type, unit);
}

/* Describe @n consecutive 4 KiB pages from @start with their own states. */
void vti_enc_ptes(struct vti_enc *e, unsigned long start, const u8 *states,
		  unsigned int n)
{
	unsigned int i, idle = 0, hole = 0;

	for (i = 0; i < n; i++) {
		idle += states[i] == VTI_IDLE;
		hole += states[i] == VTI_HOLE;
	}
	if (n == PTRS_PER_PTE && IS_ALIGNED(start, PMD_SIZE)) {
		if (idle == n) {
			vti_enc_put(e, start, VMTIER_IDLE_PMD_IDLE_PTES, PMD_SIZE);
			return;
		}
		if (hole == n) {
			vti_enc_put(e, start, VMTIER_IDLE_PMD_HOLE, PMD_SIZE);
			return;
		}
	}
	for (i = 0; i < n; i++)
		vti_enc_put(e, start + i * PAGE_SIZE,
			    vti_type(states[i], PAGE_SHIFT), PAGE_SIZE);
}

/*
 * End the stream with SET_ADDR(@stop), the walk's position and the offset of
 * the next read. Always written, so a reader can tell a complete stream from
 * a truncated one. Returns the stream's length.
 */
size_t vti_enc_finish(struct vti_enc *e, unsigned long stop)
{
	vti_enc_set_addr(e, stop);
	return e->len;
}
