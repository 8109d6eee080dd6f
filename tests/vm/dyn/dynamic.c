// SPDX-License-Identifier: GPL-2.0
/*
 * vmhelper_dynamic: a dynamically linked program for vmtest_kmod's
 * KmodLabels.DynamicBinary. It touches its data, bss, heap and stack,
 * prints where they are and every PT_LOAD segment of every loaded object
 * (the executable first, then ld.so, libc and the vDSO), then waits for
 * EOF on stdin so that the test can inspect it.
 *
 * Output, one item per line (hex addresses):
 *   addr text|data|bss|heap|stack|vdso ADDR
 *   obj INDEX NAME            (NAME "-" for the executable)
 *   load INDEX START FILESZ MEMSZ FLAGS   (START already relocated)
 *   ready
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

int g_data = 42;
char g_bss[1 << 20];

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	int *index = arg;
	int i;

	(void)size;
	printf("obj %d %s\n", *index,
	       info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "-");
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];

		if (p->p_type != PT_LOAD)
			continue;
		printf("load %d %lx %lx %lx %x\n", *index,
		       (unsigned long)(info->dlpi_addr + p->p_vaddr),
		       (unsigned long)p->p_filesz, (unsigned long)p->p_memsz,
		       (unsigned int)p->p_flags);
	}
	(*index)++;
	return 0;
}

int main(void)
{
	volatile int local = 1;
	char *heap = malloc(64);
	int index = 0;
	char c;

	if (!heap)
		return 1;
	memset(heap, 1, 64);
	g_bss[sizeof(g_bss) - 1] = 1;
	g_data++;
	printf("addr text %lx\n", (unsigned long)&main);
	printf("addr data %lx\n", (unsigned long)&g_data);
	printf("addr bss %lx\n", (unsigned long)&g_bss[sizeof(g_bss) - 1]);
	printf("addr heap %lx\n", (unsigned long)heap);
	printf("addr stack %lx\n", (unsigned long)&local);
	printf("addr vdso %lx\n", getauxval(AT_SYSINFO_EHDR));
	dl_iterate_phdr(phdr_cb, &index);
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	free(heap);
	return 0;
}
