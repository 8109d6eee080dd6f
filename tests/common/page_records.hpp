// Synthetic cowscope page records for the host tests of the parent/child
// join (userspace/lib/src/diff.cpp): a present page inside a VMA, mapped
// once, of the given flags, segment and folio order.
#pragma once

#include <cstdint>

#include "cowscope/view/diff.hpp"

inline cowscope::PageRecord page_rec(std::uint64_t vaddr, std::uint64_t pfn, std::uint32_t flags,
				     std::uint8_t seg = COWSCOPE_SEG_HEAP, unsigned folio_order = 0)
{
	cowscope::PageRecord r;
	r.vaddr = vaddr;
	r.rec.pfn = pfn;
	r.rec.flags = flags | COWSCOPE_F_PRESENT | COWSCOPE_F_VMA;
	r.rec.refcount = 1;
	r.rec.mapcount = 1;
	r.rec.segment = seg;
	r.rec.folio_order = static_cast<std::uint8_t>(folio_order);
	return r;
}

// A heap of n pages from `heap` right after fork: parent and child map the
// same PFNs (from pfn0, one a page) with `flags`, in folios of folio_order.
inline void forked_heap(unsigned n, std::uint64_t heap, std::uint64_t pfn0, std::uint32_t flags,
			unsigned folio_order, cowscope::PageList &parent, cowscope::PageList &child)
{
	for (unsigned i = 0; i < n; i++) {
		const std::uint64_t va = heap + i * COWSCOPE_PAGE_SIZE;
		parent.push_back(page_rec(va, pfn0 + i, flags, COWSCOPE_SEG_HEAP, folio_order));
		child.push_back(page_rec(va, pfn0 + i, flags, COWSCOPE_SEG_HEAP, folio_order));
	}
}
