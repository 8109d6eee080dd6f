/* Exercise 6: large folios across fork, page by page.
 *
 * A 1 MiB buffer made of 64 KiB folios (16 folios of 16 pages: the grader
 * allows 64 KiB multi-size THP for MADV_HUGEPAGE mappings while this runs)
 * goes through a fork, a write of the child to the first page of each
 * folio, the child's exit, and a rewrite of every page by the parent. The
 * checker looks at every page with the module at each checkpoint.
 *
 * This exercise asks for predictions, not code: fill in predictions.txt
 * before you run anything (README.md says how). You may change this
 * program to explore further, but the grader compares your predictions
 * with what this sequence does.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lab.h"

#define KiB 1024UL
#define FOLIO (64 * KiB)
#define BYTES (1024 * KiB)
#define PAGE 4096

int main(void)
{
	/* One CPU for the parent and the child. A page the kernel has just
	 * handed out waits in a per-CPU batch before it joins the LRU lists,
	 * holding an extra reference meanwhile; a write fault drains only its
	 * own CPU's batch, and a page still held by another CPU's is copied
	 * rather than reused, to be safe. Unpinned, 7.3 kept 216 of 256 pages
	 * in one run of this program (the module's own folio tests pin too). */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	if (sched_setaffinity(0, sizeof(one), &one) < 0)
		perror("sched_setaffinity");

	/* 64 KiB-aligned, so that every folio can be a whole 64 KiB one. */
	char *raw = lab_map(BYTES + FOLIO);
	char *buf = (char *)(((uintptr_t)raw + FOLIO - 1) & ~(uintptr_t)(FOLIO - 1));
	if (madvise(buf, BYTES, MADV_HUGEPAGE) < 0)
		perror("madvise(MADV_HUGEPAGE)");
	memset(buf, 'a', BYTES);
	lab_range("buffer", buf, BYTES);
	lab_checkpoint("populated", 0);

	pid_t child = fork();
	if (child < 0)
		lab_die("fork");
	if (child == 0) {
		lab_checkpoint("forked", 0);
		for (size_t off = 0; off < BYTES; off += FOLIO)
			buf[off] = 'c'; /* one byte in the first page of each folio */
		lab_checkpoint("child-wrote", 0);
		_exit(0);
	}
	if (lab_reap(child, "the child") < 0)
		return 1;
	lab_checkpoint("child-exited", child);
	for (size_t off = 0; off < BYTES; off += PAGE)
		buf[off] = 'p'; /* the parent writes every page */
	lab_checkpoint("parent-wrote", child);
	printf("parent %d: fork, child %d wrote 16 pages and exited, parent rewrote 256 pages\n", (int)getpid(),
	       (int)child);
	return 0;
}
