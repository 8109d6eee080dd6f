/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * cowscope_segment.h - the one rule that labels a VMA as text, data, bss,
 * heap, stack or an mmap, from the mm's code/data/brk/stack fields.
 *
 * Included by the module (kmod/cowscope.c, cs_segment()), by cowtrace's
 * BPF program (bpf/cowtrace.bpf.c, --by-mapping) and by the host unit test
 * tests/unit/test_segment.cpp, so that the module's views and cowtrace's
 * mappings label every VMA alike. Each side reads the fields its own way
 * (plain loads in the module, BPF_CORE_READ in BPF): COWSCOPE_VMA_FACTS()
 * takes the read as a macro argument. Two facts are not plain reads and
 * each side finds them as it can:
 *   special:   a mapping without a file that has vm_ops (the vdso, vvar,
 *              other install_special_mapping() areas);
 *   exe_image: a file mapping of the executable's own file (its text,
 *              rodata, relro and data when the mm's code/data fields do
 *              not cover them): the module compares inodes with the VMA
 *              that holds start_code (find_vma), BPF with mm->exe_file's.
 *
 * Plain C for the kernel, BPF and C++ alike: no includes, no types beyond
 * unsigned long and int.
 */
#ifndef COWSCOPE_SEGMENT_H
#define COWSCOPE_SEGMENT_H

/* VM_* flags the rule reads (include/linux/mm.h; stable values, checked
 * against the kernel's at the module's build). */
#define COWSCOPE_VM_WRITE	0x00000002UL
#define COWSCOPE_VM_SHARED	0x00000008UL
#define COWSCOPE_VM_PFNMAP	0x00000400UL
#define COWSCOPE_VM_IO		0x00004000UL

enum cowscope_vma_label {
	COWSCOPE_VL_SPECIAL = 0,	/* vdso, vvar, ...: the module names them */
	COWSCOPE_VL_STACK,
	COWSCOPE_VL_HEAP,
	COWSCOPE_VL_TEXT,
	COWSCOPE_VL_DATA,
	COWSCOPE_VL_BSS,
	COWSCOPE_VL_IO,			/* VM_PFNMAP or VM_IO: no pages to copy */
	COWSCOPE_VL_FILE_PRIVATE,	/* copy-on-write file mapping */
	COWSCOPE_VL_FILE_SHARED,	/* MAP_SHARED file (shmem too): never copied */
	COWSCOPE_VL_ANON,		/* anonymous mmap */
};

struct cowscope_vma_facts {
	unsigned long start, end, flags;
	unsigned long start_code, end_code, start_data, end_data;
	unsigned long start_brk, brk, start_stack;
	int has_file, special, exe_image;
};

/*
 * COWSCOPE_VMA_FACTS(facts, vma, mm, READ): the plain fields, READ(ptr,
 * field) reading each (the module: a load; BPF: BPF_CORE_READ). The caller
 * sets has_file, special and exe_image.
 */
#define COWSCOPE_VMA_FACTS(f, vma, mm, READ)				\
	do {								\
		(f)->start = READ(vma, vm_start);			\
		(f)->end = READ(vma, vm_end);				\
		(f)->flags = READ(vma, vm_flags);			\
		(f)->start_code = READ(mm, start_code);			\
		(f)->end_code = READ(mm, end_code);			\
		(f)->start_data = READ(mm, start_data);			\
		(f)->end_data = READ(mm, end_data);			\
		(f)->start_brk = READ(mm, start_brk);			\
		(f)->brk = READ(mm, brk);				\
		(f)->start_stack = READ(mm, start_stack);		\
	} while (0)

/* The label; the first rule that holds wins. */
static inline enum cowscope_vma_label
cowscope_vma_label(const struct cowscope_vma_facts *f)
{
	if (f->special)
		return COWSCOPE_VL_SPECIAL;
	if (f->start <= f->start_stack && f->end >= f->start_stack)
		return COWSCOPE_VL_STACK;
	if (f->brk > f->start_brk && f->start < f->brk && f->end > f->start_brk)
		return COWSCOPE_VL_HEAP;
	if (f->end_code > f->start_code && f->start < f->end_code &&
	    f->end > f->start_code)
		return COWSCOPE_VL_TEXT;
	if (f->end_data > f->start_data && f->start < f->end_data &&
	    f->end > f->start_data)
		return COWSCOPE_VL_DATA;
	if (f->exe_image)
		return f->flags & COWSCOPE_VM_WRITE ? COWSCOPE_VL_DATA :
						      COWSCOPE_VL_TEXT;
	/* bss: the anonymous VMA from the end of data up to the heap */
	if (!f->has_file && f->start_brk > f->end_data &&
	    f->start < f->start_brk && f->end > f->end_data &&
	    f->start <= ((f->end_data + 4095UL) & ~4095UL))
		return COWSCOPE_VL_BSS;
	if (f->flags & (COWSCOPE_VM_PFNMAP | COWSCOPE_VM_IO))
		return COWSCOPE_VL_IO;
	if (f->has_file)
		return f->flags & COWSCOPE_VM_SHARED ? COWSCOPE_VL_FILE_SHARED :
						       COWSCOPE_VL_FILE_PRIVATE;
	return COWSCOPE_VL_ANON;
}

#endif /* COWSCOPE_SEGMENT_H */
