/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * cowscope_uapi.h - the record layout of /proc/cowscope/PID/pagemap.
 *
 * Shared by the kernel module and userspace (C and C++). The file holds
 * one struct cowscope_rec per virtual page of the target; the record for
 * virtual address V is at file offset (V / 4096) * COWSCOPE_REC_SIZE, read
 * with pread(2) exactly as /proc/PID/pagemap is. All fields are
 * little-endian (the module only supports little-endian x86-64 today).
 *
 * A page that is not present (no VMA, nothing mapped, or swapped out) has
 * pfn == 0, refcount == 0, mapcount == 0 and folio_order == 0; its flags
 * say which.
 *
 * The module says which layout it writes in /proc/cowscope/version (lines
 * "abi N", "version STRING", "mapcount per-page|folio-average"); a reader
 * built for another COWSCOPE_ABI_VERSION must refuse to read the records.
 */
#ifndef COWSCOPE_UAPI_H
#define COWSCOPE_UAPI_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/build_bug.h>
#define COWSCOPE_STATIC_ASSERT(e, m) static_assert(e, m)
#else
#include <stdint.h>
#ifdef __cplusplus
#define COWSCOPE_STATIC_ASSERT(e, m) static_assert(e, m)
#else
#include <assert.h>
#define COWSCOPE_STATIC_ASSERT(e, m) _Static_assert(e, m)
#endif
#endif

#define COWSCOPE_PAGE_SIZE	4096u
#define COWSCOPE_REC_SIZE	24u
/*
 * Version of this layout; bumped on any incompatible change.
 *   1  the first layout (no /proc/cowscope/version file)
 *   2  folio_order, COWSCOPE_F_MAP_AVG, /proc/cowscope/version
 */
#define COWSCOPE_ABI_VERSION	2u
/* The largest folio_order written (2 MiB on x86-64); larger would clamp. */
#define COWSCOPE_MAX_FOLIO_ORDER 9u

/* struct cowscope_rec.flags */
#define COWSCOPE_F_PRESENT	(1u << 0)  /* PTE (or huge PMD) present */
#define COWSCOPE_F_WRITE	(1u << 1)  /* W: writable in the page table */
#define COWSCOPE_F_DIRTY	(1u << 2)  /* D */
#define COWSCOPE_F_ACCESSED	(1u << 3)  /* A: young */
#define COWSCOPE_F_USER		(1u << 4)  /* U: user-accessible */
#define COWSCOPE_F_HUGE		(1u << 5)  /* H: mapped by a huge PMD */
#define COWSCOPE_F_ANON		(1u << 6)  /* a: anonymous page */
#define COWSCOPE_F_ANON_EXCL	(1u << 7)  /* x: PageAnonExclusive */
#define COWSCOPE_F_ZERO		(1u << 8)  /* z: shared (or huge) zero page */
#define COWSCOPE_F_KSM		(1u << 9)  /* k: KSM page */
#define COWSCOPE_F_FILE		(1u << 10) /* f: file-backed (page cache) */
#define COWSCOPE_F_SWAPCACHE	(1u << 11) /* s: in the swap cache */
#define COWSCOPE_F_SWAPENT	(1u << 12) /* not present: swap/migration entry */
#define COWSCOPE_F_VMA		(1u << 13) /* the address lies inside a VMA */
#define COWSCOPE_F_VMA_WRITE	(1u << 14) /* ... and that VMA is VM_WRITE */
#define COWSCOPE_F_COW		(1u << 15) /* present, anon, !W, VMA writable */
#define COWSCOPE_F_NOPAGE	(1u << 16) /* present, no struct page looked at
					    * (PFN/IO map, hugetlb, devmap) */
#define COWSCOPE_F_MAP_AVG	(1u << 17) /* mapcount is the folio's average
					    * per page: the kernel keeps no
					    * per-page mapcount for large folios
					    * (CONFIG_NO_PAGE_MAPCOUNT); as
					    * /proc/kpagecount reports it */

/* struct cowscope_rec.segment: the VMA's label, as in maps/summary. */
enum cowscope_segment {
	COWSCOPE_SEG_TEXT = 0,
	COWSCOPE_SEG_DATA,
	COWSCOPE_SEG_BSS,
	COWSCOPE_SEG_HEAP,
	COWSCOPE_SEG_STACK,
	COWSCOPE_SEG_MMAP_ANON,
	COWSCOPE_SEG_MMAP_FILE,
	COWSCOPE_SEG_VDSO,
	COWSCOPE_SEG_VVAR,
	COWSCOPE_SEG_OTHER,
	COWSCOPE_SEG_COUNT,
	COWSCOPE_SEG_NONE = 255		/* no VMA at this address */
};

struct cowscope_rec {
	uint64_t pfn;		/* page frame number, 0 if not present */
	uint32_t flags;		/* COWSCOPE_F_* */
	uint32_t refcount;	/* page_count() of the page */
	uint32_t mapcount;	/* as /proc/kpagecount reports it */
	uint8_t segment;	/* enum cowscope_segment */
	uint8_t folio_order;	/* log2 of the pages of the folio this page
				 * belongs to: 0 a 4 KiB folio, 4 a 64 KiB
				 * mTHP, 9 a 2 MiB THP; 0 when no struct page
				 * was looked at (not present, NOPAGE) */
	uint8_t reserved[2];	/* zero */
};

COWSCOPE_STATIC_ASSERT(sizeof(struct cowscope_rec) == COWSCOPE_REC_SIZE,
		       "struct cowscope_rec must be 24 bytes");

/*
 * The one spelling of the segment names (the module's maps/summary views,
 * cowscope maps/summary/diff) and of the page-flag letters (the module's
 * ptes view, cowscope ptes/diff --pages).
 */
static inline const char *cowscope_segment_name(unsigned int seg)
{
	static const char *const names[COWSCOPE_SEG_COUNT] = {
		"text", "data", "bss", "heap", "stack", "mmap-anon",
		"mmap-file", "vdso", "vvar", "other",
	};
	return seg < COWSCOPE_SEG_COUNT ? names[seg] : "none";
}

/* The flags that have a letter, in the order the letters are written. */
#define COWSCOPE_FLAG_LETTERS_LEN 11u

struct cowscope_flag_letter {
	uint32_t bit;		/* COWSCOPE_F_* */
	char letter;
	const char *name;	/* for legends: "W writable D dirty ..." */
};

/* The i-th lettered flag, or NULL past the last. */
static inline const struct cowscope_flag_letter *cowscope_flag_letter(unsigned int i)
{
	static const struct cowscope_flag_letter letters[COWSCOPE_FLAG_LETTERS_LEN] = {
		{ COWSCOPE_F_WRITE, 'W', "writable" },
		{ COWSCOPE_F_DIRTY, 'D', "dirty" },
		{ COWSCOPE_F_ACCESSED, 'A', "accessed" },
		{ COWSCOPE_F_USER, 'U', "user" },
		{ COWSCOPE_F_HUGE, 'H', "huge" },
		{ COWSCOPE_F_ANON, 'a', "anon" },
		{ COWSCOPE_F_ANON_EXCL, 'x', "anon-exclusive" },
		{ COWSCOPE_F_ZERO, 'z', "zero" },
		{ COWSCOPE_F_KSM, 'k', "KSM" },
		{ COWSCOPE_F_FILE, 'f', "file" },
		{ COWSCOPE_F_SWAPCACHE, 's', "swapcache" },
	};
	return i < COWSCOPE_FLAG_LETTERS_LEN ? &letters[i] : 0;
}

/*
 * The letters of `flags` into out ("-" when none has a letter), NUL
 * terminated; returns their number.
 */
static inline unsigned int cowscope_flag_letters(uint32_t flags,
						 char out[COWSCOPE_FLAG_LETTERS_LEN + 1])
{
	unsigned int i, n = 0;

	for (i = 0; i < COWSCOPE_FLAG_LETTERS_LEN; i++)
		if (flags & cowscope_flag_letter(i)->bit)
			out[n++] = cowscope_flag_letter(i)->letter;
	if (!n)
		out[n++] = '-';
	out[n] = '\0';
	return n;
}

#endif /* COWSCOPE_UAPI_H */
