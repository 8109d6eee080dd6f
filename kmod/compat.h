/* SPDX-License-Identifier: GPL-2.0 */
/*
 * compat.h - every kernel-version difference cowscope depends on.
 *
 * Nothing outside this file tests LINUX_VERSION_CODE or an architecture.
 * Where a feature can be detected by a macro it is; otherwise the test is
 * "introduced in" (LINUX_VERSION_CODE >= KERNEL_VERSION(x, y, 0)).
 * Supported: 6.1 and later, x86-64.
 */
#ifndef COWSCOPE_COMPAT_H
#define COWSCOPE_COMPAT_H

#include <linux/version.h>
#include <linux/mm.h>		/* before huge_mm.h: the reverse breaks */
#include <linux/huge_mm.h>
#include <linux/pgtable.h>
#include <linux/page-flags.h>
#include <linux/hugetlb_inline.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "cowscope needs Linux 6.1 or later"
#endif

#ifndef CONFIG_X86_64
#error "cowscope supports x86-64 only (PTE user bit, 4 KiB pages)"
#endif

#ifdef CONFIG_HIGHPTE
#error "cowscope maps page tables with pte_offset_kernel(): no HIGHPTE"
#endif

/*
 * A PMD entry read once. pmdp_get() is 6.5+ and pmdp_get_lockless() is
 * not in 6.1; the walker reads PMDs only under the PMD lock (or as a
 * lockless none-check hint), where READ_ONCE() is exactly right.
 */
static inline pmd_t cs_pmd_read(pmd_t *pmdp)
{
	return READ_ONCE(*pmdp);
}

static inline pud_t cs_pud_read(pud_t *pudp)
{
	return READ_ONCE(*pudp);
}

/* The hardware user bit: arch specific (x86 _PAGE_USER). */
static inline bool cs_pte_user(pte_t pte)
{
	return pte_flags(pte) & _PAGE_USER;
}

static inline bool cs_pmd_user(pmd_t pmd)
{
	return pmd_flags(pmd) & _PAGE_USER;
}

/* The PMD-level leaf test: pmd_leaf() is in both, pmd_large() went away. */
static inline bool cs_pmd_leaf(pmd_t pmd)
{
	return pmd_leaf(pmd);
}

static inline bool cs_pud_leaf(pud_t pud)
{
	return pud_leaf(pud);
}

/*
 * A huge PMD with no THP folio behind it: DAX/devmap entries up to 6.16
 * (pmd_devmap(), present while the arch has the devmap PTE bit); from
 * 6.17 the devmap bit and pmd_devmap() are gone and such PMDs (VM_PFNMAP
 * huge mappings, DAX without struct pages) are marked special instead.
 */
static inline bool cs_pmd_devmap(pmd_t pmd)
{
#if defined(CONFIG_ARCH_HAS_PTE_DEVMAP)
	return pmd_devmap(pmd);
#elif defined(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP)
	return pmd_special(pmd);
#else
	return false;
#endif
}

/* hex_to_bin() moved from kernel.h to its own linux/hex.h (7.x). */
#if __has_include(<linux/hex.h>)
#include <linux/hex.h>
#endif

/*
 * CS_MAPCOUNT_AVERAGE: this kernel keeps no per-page mapcount for pages of
 * large folios (CONFIG_NO_PAGE_MAPCOUNT, 6.15+); the mapcount of such a
 * page is then the folio's average, as /proc/kpagecount reports it there,
 * and the record says so (COWSCOPE_F_MAP_AVG).
 */
#ifdef CONFIG_NO_PAGE_MAPCOUNT
#define CS_MAPCOUNT_AVERAGE 1
#else
#define CS_MAPCOUNT_AVERAGE 0
#endif

/*
 * The mapcount of one page as /proc/kpagecount reports it.
 * Up to 6.11 that is page_mapcount(), which includes the compound
 * (entire) mapcount for a large folio. 6.12 removed page_mapcount();
 * kpagecount computes folio_precise_page_mapcount() (mm/internal.h, not
 * includable): the page's own _mapcount, ignoring page-type values, plus
 * the folio's entire mapcount for a large folio.
 */
#if CS_MAPCOUNT_AVERAGE
/*
 * No per-page mapcount: kpagecount reports folio_average_page_mapcount()
 * (mm/internal.h, not includable): for a small folio its exact mapcount;
 * for a large one the entire (PMD) mapcount plus the PTE mappings spread
 * evenly over its pages, rounded to the closest integer.
 */
static inline unsigned int cs_folio_page_mapcount(struct folio *folio,
						  struct page *page)
{
	int mapcount, entire, avg;

	if (!folio_test_large(folio)) {
		mapcount = atomic_read(&folio->_mapcount) + 1;
		if (page_mapcount_is_type(mapcount))
			return 0;
		return mapcount < 0 ? 0 : mapcount;
	}
	mapcount = folio_large_mapcount(folio);
	if (mapcount <= 0)
		return 0;
	entire = folio_entire_mapcount(folio);
	if (mapcount <= entire)
		return entire;
	mapcount -= entire;
	avg = ((unsigned int)mapcount + folio_nr_pages(folio) / 2) >>
	      folio_order(folio);
	return avg + entire;
}
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
static inline unsigned int cs_folio_page_mapcount(struct folio *folio,
						  struct page *page)
{
	int mapcount = atomic_read(&page->_mapcount) + 1;

	if (page_mapcount_is_type(mapcount))
		mapcount = 0;
	if (folio_test_large(folio))
		mapcount += folio_entire_mapcount(folio);
	return mapcount < 0 ? 0 : mapcount;
}
#else
static inline unsigned int cs_folio_page_mapcount(struct folio *folio,
						  struct page *page)
{
	int mapcount;

	if (PageSlab(page) || page_has_type(page))
		return 0;
	mapcount = page_mapcount(page);
	return mapcount < 0 ? 0 : mapcount;
}
#endif

/* The same when the caller has not looked the folio up. */
static inline unsigned int cs_page_mapcount(struct page *page)
{
	return cs_folio_page_mapcount(page_folio(page), page);
}

/*
 * Is this huge PMD the huge zero page? is_huge_zero_pmd() needs
 * huge_zero_pfn/huge_zero_folio, which are not exported. The huge zero
 * page is the only non-anonymous folio a huge PMD in an anonymous VMA
 * can map, so test that instead.
 */
static inline bool cs_is_huge_zero(struct vm_area_struct *vma,
				   struct page *head)
{
	return vma_is_anonymous(vma) && !PageAnon(head);
}

#endif /* COWSCOPE_COMPAT_H */
