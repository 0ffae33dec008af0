// SPDX-License-Identifier: GPL-2.0-only
/*
 * The lab's guest payload: a freestanding program that is the whole guest. It writes one byte
 * per 4 KiB page over a known hot set of guest-physical memory, in a loop, forever, and never
 * touches anything else except what it is told to touch once ("once" ranges: present, then
 * cold) and a "warm" set it writes every k-th pass.
 * Runs with paging off, so the addresses below are guest-physical.
 *
 * Command line (multiboot, from -append or libvirt's <cmdline>), sizes in MiB:
 *   hot=<start>+<size>[,<start>+<size>...]    phase 0 hot set
 *   hot1=<start>+<size>[,...]                 phase 1 hot set (after a key press)
 *   once=<start>+<size>[,...]                 written once at start (present, then left cold)
 *   warm=<start>+<size>[,...]                 written every <every>-th pass in both phases: the
 *   every=<k>                                 infrequent part of a working set that is touched
 *                                             as a whole within every second but with a known
 *                                             frequency skew (default k = 16)
 *   hz=<n>                                    at most n passes per second (PIT + hlt), so the
 *                                             vCPU sleeps between passes; 0 or absent: no pause
 * A key press (virsh send-key) switches from phase 0 to phase 1: the test drives the change.
 * The serial port (COM1) gets one JSON line per event: the layout first, then passes and phase.
 */
#include <stdint.h>

#define MB_INFO_CMDLINE (1u << 2)
#define MAX_RANGES 8
#define PAGE 4096u
#define MIB (1024u * 1024u)
#define COM1 0x3f8
#define PIT_HZ 1193182u

extern volatile uint32_t ticks;
extern char irq_timer[], irq_other[];

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

struct range {
	uint32_t start, end;
};

struct set {
	struct range r[MAX_RANGES];
	int n;
};

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile ("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile ("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void putc_serial(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

static void puts_serial(const char *s)
{
	while (*s)
		putc_serial(*s++);
}

static void put_hex(uint32_t v)
{
	static const char digits[] = "0123456789abcdef";
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = digits[v & 15];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	puts_serial(&buf[i]);
}

static void put_dec(uint32_t v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_serial(&buf[i]);
}

static int starts_with(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

static uint32_t parse_num(const char **s)
{
	uint32_t v = 0;

	while (**s >= '0' && **s <= '9')
		v = v * 10 + (uint32_t)(*(*s)++ - '0');
	return v;
}

/* "<start>+<size>[,...]" in MiB up to a space or the end. */
static void parse_set(const char *s, struct set *out)
{
	while (*s && *s != ' ' && out->n < MAX_RANGES) {
		uint32_t start = parse_num(&s), size = 0;

		if (*s == '+') {
			s++;
			size = parse_num(&s);
		}
		if (size) {
			out->r[out->n].start = start * MIB;
			out->r[out->n].end = (start + size) * MIB;
			out->n++;
		}
		if (*s == ',')
			s++;
		else
			break;
	}
}

static void print_set(const char *name, const struct set *s)
{
	int i;

	puts_serial("\"");
	puts_serial(name);
	puts_serial("\":[");
	for (i = 0; i < s->n; i++) {
		if (i)
			puts_serial(",");
		puts_serial("{\"start\":\"");
		put_hex(s->r[i].start);
		puts_serial("\",\"end\":\"");
		put_hex(s->r[i].end);
		puts_serial("\"}");
	}
	puts_serial("]");
}

static void touch(const struct set *s, uint8_t v)
{
	int i;
	uint32_t a;

	for (i = 0; i < s->n; i++)
		for (a = s->r[i].start; a < s->r[i].end; a += PAGE)
			*(volatile uint8_t *)(uintptr_t)a = v;
}

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t zero, type;
	uint16_t off_hi;
} __attribute__((packed));

static struct idt_gate idt[48];

static void set_gate(int v, void *h)
{
	uint32_t a = (uint32_t)(uintptr_t)h;

	idt[v].off_lo = (uint16_t)a;
	idt[v].sel = 0x08;
	idt[v].zero = 0;
	idt[v].type = 0x8e;	/* present, ring 0, 32-bit interrupt gate */
	idt[v].off_hi = (uint16_t)(a >> 16);
}

/*
 * PIC remapped to vectors 0x20-0x2f with only IRQ0 unmasked (the keyboard is polled), PIT
 * channel 0 at hz: the payload sleeps in hlt between passes instead of spinning the lab CPU.
 */
static void start_timer(uint32_t hz)
{
	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint32_t)(uintptr_t)idt };
	uint32_t div = PIT_HZ / hz;
	int v;

	for (v = 0x20; v < 0x30; v++)
		set_gate(v, irq_other);
	set_gate(0x20, irq_timer);
	__asm__ volatile ("lidt %0" : : "m"(idtr));
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, 0x20);
	outb(0xa1, 0x28);
	outb(0x21, 0x04);
	outb(0xa1, 0x02);
	outb(0x21, 0x01);
	outb(0xa1, 0x01);
	outb(0x21, 0xfe);
	outb(0xa1, 0xff);
	outb(0x43, 0x34);
	outb(0x40, (uint8_t)div);
	outb(0x40, (uint8_t)(div >> 8));
	__asm__ volatile ("sti");
}

/* i8042 output buffer full: a key was pressed (or released). */
static int key_pending(void)
{
	if (!(inb(0x64) & 1))
		return 0;
	(void)inb(0x60);
	return 1;
}

void payload_main(uint32_t magic, const struct mb_info *mbi)
{
	static struct set hot0, hot1, once, warm;
	const char *cmd = "";
	const char *p;
	uint32_t pass = 0, hz = 0, every = 16, last;
	int phase = 0;

	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8N1 */
	outb(COM1 + 2, 0xc7);

	if (magic == 0x2badb002 && (mbi->flags & MB_INFO_CMDLINE))
		cmd = (const char *)(uintptr_t)mbi->cmdline;
	for (p = cmd; *p; p++) {
		if (p != cmd && p[-1] != ' ')
			continue;
		if (starts_with(p, "hot="))
			parse_set(p + 4, &hot0);
		else if (starts_with(p, "hot1="))
			parse_set(p + 5, &hot1);
		else if (starts_with(p, "once="))
			parse_set(p + 5, &once);
		else if (starts_with(p, "warm="))
			parse_set(p + 5, &warm);
		else if (starts_with(p, "every=")) {
			const char *q = p + 6;

			every = parse_num(&q);
		} else if (starts_with(p, "hz=")) {
			const char *q = p + 3;

			hz = parse_num(&q);
		}
	}

	touch(&once, 1);
	/* The PIT divisor is 16 bits: 19 Hz is the slowest it can tick. */
	if (hz && hz < 19)
		hz = 19;
	if (hz > 1000)
		hz = 1000;
	if (!every)
		every = 1;
	puts_serial("{\"payload\":\"vmtier-lab\",\"pageSize\":4096,");
	puts_serial("\"hz\":");
	put_dec(hz);
	puts_serial(",");
	print_set("hot", &hot0);
	puts_serial(",");
	print_set("hot1", &hot1);
	puts_serial(",");
	print_set("once", &once);
	puts_serial(",");
	print_set("warm", &warm);
	puts_serial(",\"every\":");
	put_dec(every);
	puts_serial("}\n");

	while (key_pending())
		;
	if (hz)
		start_timer(hz);
	for (;;) {
		touch(phase ? &hot1 : &hot0, (uint8_t)pass);
		if (pass % every == 0)
			touch(&warm, (uint8_t)pass);
		pass++;
		if (hz) {
			last = ticks;
			while (ticks == last)
				__asm__ volatile ("hlt");
		}
		if ((pass & 255) == 0) {
			puts_serial("{\"pass\":");
			put_dec(pass);
			puts_serial(",\"phase\":");
			put_dec((uint32_t)phase);
			puts_serial("}\n");
		}
		if (!phase && hot1.n && key_pending()) {
			phase = 1;
			puts_serial("{\"phase\":1,\"pass\":");
			put_dec(pass);
			puts_serial("}\n");
		}
	}
}
