#!/bin/sh
# Builds the lab's guest payload (a multiboot ELF32) with the machine's gcc and binutils:
# build.sh <output file>. No libc, no multilib: -ffreestanding -nostdlib and our own linker script.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CFLAGS="-m32 -march=i686 -ffreestanding -fno-pic -fno-stack-protector -fno-asynchronous-unwind-tables -nostdlib -O2 -Wall -Wextra -Werror"
gcc $CFLAGS -c "$here/boot.S" -o "$tmp/boot.o"
gcc $CFLAGS -c "$here/payload.c" -o "$tmp/payload.o"
ld -m elf_i386 -nostdlib -z noexecstack --no-warn-rwx-segments -T "$here/payload.ld" -o "$tmp/payload.elf" "$tmp/boot.o" "$tmp/payload.o"
mv "$tmp/payload.elf" "$out"
