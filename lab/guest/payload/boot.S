/*
 * Multiboot (v1) entry of the lab's guest payload. QEMU's -kernel (and libvirt's <os><kernel>)
 * loads an ELF32 with this header and enters in 32-bit protected mode, paging off, with
 * eax = the multiboot magic and ebx = the info structure (which carries the command line).
 * The loader's GDT may be anywhere (the spec says not to trust it), and interrupt gates reload
 * CS from the GDT, so a flat GDT of our own is installed before the timer interrupt is enabled.
 */
	.set MB_MAGIC, 0x1badb002
	.set MB_FLAGS, 0x00000002	/* bit 1: memory info; the ELF headers give the layout */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text
	.globl _start
_start:
	cli
	mov $stack_top, %esp
	lgdt gdt_desc
	ljmp $0x08, $1f
1:	mov $0x10, %cx
	mov %cx, %ds
	mov %cx, %es
	mov %cx, %fs
	mov %cx, %gs
	mov %cx, %ss
	push %ebx
	push %eax
	call payload_main
2:	hlt
	jmp 2b

/* IRQ0 (PIT): count a tick. Other IRQs (spurious 7/15): just acknowledge. */
	.globl irq_timer
irq_timer:
	push %eax
	incl ticks
	mov $0x20, %al
	outb %al, $0x20
	pop %eax
	iret

	.globl irq_other
irq_other:
	push %eax
	mov $0x20, %al
	outb %al, $0xa0
	outb %al, $0x20
	pop %eax
	iret

	.section .rodata
	.align 8
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: code, flat 4 GiB */
	.quad 0x00cf92000000ffff	/* 0x10: data, flat 4 GiB */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

	.section .bss
	.align 16
	.globl ticks
ticks:
	.long 0
stack_bottom:
	.skip 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
