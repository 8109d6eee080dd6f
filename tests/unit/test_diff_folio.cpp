// Unit tests of the large-folio side of the parent/child join
// (userspace/lib/src/diff.cpp): pages of mTHP/THP folios, folios partly
// and wholly copied, on synthetic cowscope records.
#include <gtest/gtest.h>

#include <tuple>

#include <nlohmann/json.hpp>

#include "cowscope/view/diff.hpp"
#include "page_records.hpp"

using namespace cowscope;

namespace {

constexpr std::uint64_t P = COWSCOPE_PAGE_SIZE;
constexpr std::uint64_t HEAP = 0x5000000;
constexpr std::uint32_t COW = COWSCOPE_F_ANON | COWSCOPE_F_COW | COWSCOPE_F_VMA_WRITE;
constexpr std::uint32_t RW = COWSCOPE_F_ANON | COWSCOPE_F_WRITE | COWSCOPE_F_VMA_WRITE |
			     COWSCOPE_F_ANON_EXCL;

PageRecord rec(std::uint64_t vaddr, std::uint64_t pfn, std::uint32_t flags, unsigned order,
	       std::uint8_t seg = COWSCOPE_SEG_HEAP)
{
	return page_rec(vaddr, pfn, flags, seg, order);
}

// A heap of `folios` 64 KiB folios (16 pages each, PFNs from 0x10000,
// naturally aligned) right after fork: all shared.
void after_fork_64k(unsigned folios, PageList &parent, PageList &child)
{
	forked_heap(folios * 16, HEAP, 0x10000, COW, 4, parent, child);
}

// The parent's large folios in both: how many, how many of them partly and
// how many wholly copied.
using Folios = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>;
Folios folios(const DiffCounts &t)
{
	return {t.large_folios, t.large_folios_partly_copied, t.large_folios_wholly_copied};
}

} // namespace

TEST(DiffFolio, RightAfterForkNoFolioIsCopied)
{
	PageList p, c;
	after_fork_64k(4, p, c);
	Diff d = diff_pages(p, c);
	EXPECT_EQ(d.total.shared, 64u);
	EXPECT_EQ(d.total.shared_large, 64u);
	EXPECT_EQ(folios(d.total), Folios(4, 0, 0));
	EXPECT_EQ(d.segments[COWSCOPE_SEG_HEAP].large_folios, 4u);
}

// The child writes one page of folio 0, every page of folio 1, and one page
// of folio 2 which it got as a new 64 KiB folio of its own (a whole-folio
// copy would give it that). Folio 3 is untouched.
TEST(DiffFolio, PartlyAndWhollyCopiedFolios)
{
	PageList p, c;
	after_fork_64k(4, p, c);
	c[3] = rec(HEAP + 3 * P, 0x90003, RW, 0);  // a 4 KiB copy
	for (unsigned i = 16; i < 32; i++)
		c[i] = rec(HEAP + i * P, 0x90000 + i, RW, 0);
	c[40] = rec(HEAP + 40 * P, 0xa0008, RW, 4);  // the copy is a 64 KiB folio
	Diff d = diff_pages(p, c);
	EXPECT_EQ(d.total.copied, 18u);
	EXPECT_EQ(d.total.copied_large, 18u) << "every copied page came from a large folio";
	EXPECT_EQ(d.total.copied_child_large, 1u);
	EXPECT_EQ(d.total.shared_large, 64u - 18u);
	EXPECT_EQ(folios(d.total), Folios(4, 2, 1));	// partly: folios 0 and 2; wholly: folio 1
	const auto j = diff_json(d, true);
	EXPECT_EQ(j["total"]["large_folios_partly_copied"], 2);
	EXPECT_EQ(j["total"]["large_folios_wholly_copied"], 1);
	EXPECT_EQ(j["total"]["copied_large_folio"], 18);
	EXPECT_EQ(j["pages"][3]["parent_folio_size"], 65536);
	EXPECT_EQ(j["pages"][3]["child_folio_size"], 4096);
	const std::string text = format_diff(d);
	EXPECT_NE(text.find("4 large folios, 2 partly copied, 1 wholly copied"), std::string::npos)
		<< text;
}

// 4 KiB pages only: no large-folio line, all large counts zero.
TEST(DiffFolio, SmallPagesOnlySayNothingAboutFolios)
{
	PageList p, c;
	for (unsigned i = 0; i < 8; i++) {
		p.push_back(rec(HEAP + i * P, 100 + i, COW, 0));
		c.push_back(rec(HEAP + i * P, i < 4 ? 200 + i : 100 + i, i < 4 ? RW : COW, 0));
	}
	Diff d = diff_pages(p, c);
	EXPECT_EQ(d.total.copied, 4u);
	EXPECT_EQ(d.total.copied_large + d.total.shared_large + d.total.large_folios, 0u);
	EXPECT_EQ(format_diff(d).find("large folios"), std::string::npos);
}

// A PMD-mapped 2 MiB THP (order 9): the folio key is the 2 MiB-aligned PFN,
// so 512 pages are one folio even though their PFNs differ; pages of a
// folio met out of address order (mremap) still count once.
TEST(DiffFolio, ThpAndOutOfOrderPagesAreOneFolio)
{
	PageList p, c;
	for (unsigned i = 0; i < 512; i++) {
		p.push_back(rec(HEAP + i * P, 0x200000 + i, COW | COWSCOPE_F_HUGE, 9));
		c.push_back(rec(HEAP + i * P, 0x200000 + i, COW | COWSCOPE_F_HUGE, 9));
	}
	// two pages far away, mapping the two halves of one 16 KiB folio swapped
	p.push_back(rec(HEAP + 0x400000, 0x3002, COW, 2));
	p.push_back(rec(HEAP + 0x401000, 0x3001, COW, 2));
	c.push_back(rec(HEAP + 0x400000, 0x7777, RW, 0));
	c.push_back(rec(HEAP + 0x401000, 0x3001, COW, 2));
	Diff d = diff_pages(p, c);
	EXPECT_EQ(folios(d.total), Folios(2, 1, 0));
	EXPECT_EQ(d.total.shared_large, 513u);
}

// Pages only one process has do not make a folio "in both".
TEST(DiffFolio, OneSidedPagesAreNotCounted)
{
	PageList p, c;
	for (unsigned i = 0; i < 16; i++)
		p.push_back(rec(HEAP + i * P, 0x10000 + i, RW, 4));
	Diff d = diff_pages(p, c);
	EXPECT_EQ(d.total.parent_only, 16u);
	EXPECT_EQ(d.total.large_folios, 0u);
}
