// Unit tests of the parent/child join, the per-segment counts and the heap
// strip (userspace/lib/src/diff.cpp) on synthetic cowscope records.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cowscope/view/diff.hpp"
#include "page_records.hpp"
#include "cowscope/base/error.hpp"

using namespace cowscope;

namespace {

constexpr std::uint64_t P = COWSCOPE_PAGE_SIZE;
constexpr std::uint64_t HEAP = 0x5000000;

constexpr std::uint32_t COW = COWSCOPE_F_ANON | COWSCOPE_F_COW | COWSCOPE_F_VMA_WRITE;
constexpr std::uint32_t RW = COWSCOPE_F_ANON | COWSCOPE_F_WRITE | COWSCOPE_F_VMA_WRITE;

// A heap of n pages right after fork: every page shared and write-protected.
void after_fork(unsigned n, PageList &parent, PageList &child)
{
	forked_heap(n, HEAP, 1000, COW, 0, parent, child);
}

// The child writes pages 0..n-1: it gets new PFNs with W set; the parent
// keeps the old ones, still write-protected.
void child_copies(unsigned n, PageList &child)
{
	for (unsigned i = 0; i < n; i++)
		child[i] = page_rec(HEAP + i * P, 5000 + i, RW);
}

} // namespace

TEST(Diff, RightAfterForkEverythingIsSharedAndCowPending)
{
	PageList p, c;
	after_fork(8, p, c);
	p.push_back(page_rec(0x400000, 7, COWSCOPE_F_FILE, COWSCOPE_SEG_TEXT));
	c.push_back(page_rec(0x400000, 7, COWSCOPE_F_FILE, COWSCOPE_SEG_TEXT));
	std::sort(p.begin(), p.end(), [](auto &a, auto &b) { return a.vaddr < b.vaddr; });
	std::sort(c.begin(), c.end(), [](auto &a, auto &b) { return a.vaddr < b.vaddr; });
	Diff d = diff_pages(p, c);
	EXPECT_EQ(d.total.shared, 9u);
	EXPECT_EQ(d.total.cow_pending, 8u);  // text is shared but never COW
	EXPECT_EQ(d.total.copied, 0u);
	EXPECT_EQ(d.total.exclusive(), 0u);
	EXPECT_EQ(d.segments[COWSCOPE_SEG_TEXT].shared, 1u);
	EXPECT_EQ(d.segments[COWSCOPE_SEG_TEXT].cow_pending, 0u);
	EXPECT_EQ(d.segments[COWSCOPE_SEG_HEAP].cow_pending, 8u);
}

TEST(Diff, ChildWritesAQuarterThenParentReuses)
{
	PageList p, c;
	after_fork(16, p, c);
	child_copies(4, c);
	Diff d = diff_pages(p, c);
	EXPECT_EQ(d.total.copied, 4u);
	EXPECT_EQ(d.total.shared, 12u);
	EXPECT_EQ(d.total.cow_pending, 12u);
	EXPECT_EQ(d.total.copied_child_w, 4u);
	EXPECT_EQ(d.total.copied_parent_w, 0u);
	EXPECT_EQ(d.pages[0].state, PageState::Copied);
	EXPECT_EQ(d.pages[4].state, PageState::CowPending);

	// Now the parent writes the same pages: reuse in place (same PFN, W).
	for (unsigned i = 0; i < 4; i++)
		p[i] = page_rec(HEAP + i * P, 1000 + i, RW);
	d = diff_pages(p, c);
	EXPECT_EQ(d.total.copied, 4u);
	EXPECT_EQ(d.total.copied_parent_w, 4u);
	EXPECT_EQ(d.pages[0].parent_pfn, 1000u);
}

TEST(Diff, OneSidedPagesAreExclusive)
{
	PageList p{page_rec(HEAP, 1, RW), page_rec(HEAP + 2 * P, 3, RW)};
	PageList c{page_rec(HEAP + P, 2, RW), page_rec(HEAP + 2 * P, 3, RW)};
	Diff d = diff_pages(p, c);
	ASSERT_EQ(d.pages.size(), 3u);
	EXPECT_EQ(d.pages[0].state, PageState::ParentOnly);
	EXPECT_EQ(d.pages[1].state, PageState::ChildOnly);
	EXPECT_EQ(d.pages[2].state, PageState::Shared);
	EXPECT_EQ(d.total.parent_only, 1u);
	EXPECT_EQ(d.total.child_only, 1u);
	EXPECT_EQ(d.total.exclusive(), 2u);
	EXPECT_EQ(d.total.cow_pending, 0u);
}

TEST(Diff, EmptyInputs)
{
	Diff d = diff_pages({}, {});
	EXPECT_TRUE(d.pages.empty());
	EXPECT_EQ(d.total, DiffCounts{});
	EXPECT_NE(format_diff(d).find("total"), std::string::npos);
}

TEST(Diff, UnsortedInputIsAnError)
{
	PageList p{page_rec(HEAP + P, 1, RW), page_rec(HEAP, 2, RW)};
	EXPECT_THROW(diff_pages(p, {}), Error);
}

TEST(Strip, OneCharPerGroupShowsThePattern)
{
	PageList p, c;
	after_fork(32, p, c);
	// Every other group of 4 pages copied by the child.
	for (unsigned i = 0; i < 32; i++)
		if ((i / 4) % 2 == 0)
			c[i] = page_rec(HEAP + i * P, 9000 + i, RW);
	Diff d = diff_pages(p, c);
	Strip s = make_strip(d.pages, HEAP, HEAP + 32 * P, 8);
	EXPECT_EQ(s.pages_per_char, 4u);
	EXPECT_EQ(s.text, "#=#=#=#=");
	s = make_strip(d.pages, HEAP, HEAP + 32 * P, 64);
	EXPECT_EQ(s.pages_per_char, 1u);
	EXPECT_EQ(s.text.size(), 32u);
	EXPECT_EQ(s.text.substr(0, 8), "####====");
}

TEST(Strip, PartialGroupsMissingPagesAndOneSided)
{
	PageList p, c;
	after_fork(10, p, c);
	c[0] = page_rec(HEAP, 9000, RW);          // 1 of 10 copied -> '1'
	Diff d = diff_pages(p, c);
	Strip s = make_strip(d.pages, HEAP, HEAP + 10 * P, 1);
	EXPECT_EQ(s.pages_per_char, 10u);
	EXPECT_EQ(s.text, "1");
	// Beyond the heap's pages: not present.
	s = make_strip(d.pages, HEAP, HEAP + 20 * P, 2);
	EXPECT_EQ(s.text, "1.");
	// Uneven last group: 11 pages at width 4 -> 3 per char, 4 chars.
	s = make_strip(d.pages, HEAP, HEAP + 11 * P, 4);
	EXPECT_EQ(s.pages_per_char, 3u);
	EXPECT_EQ(s.text.size(), 4u);

	PageList only_p{page_rec(HEAP, 1, RW)}, only_c{page_rec(HEAP + P, 2, RW)};
	d = diff_pages(only_p, only_c);
	EXPECT_EQ(make_strip(d.pages, HEAP, HEAP + 2 * P, 2).text, "<>");
	EXPECT_EQ(make_strip(d.pages, HEAP, HEAP + 2 * P, 1).text, "~");
	// Degenerate ranges.
	EXPECT_EQ(make_strip(d.pages, HEAP, HEAP, 8).text, "");
	EXPECT_EQ(make_strip(d.pages, HEAP, HEAP + P, 0).text, "");
}

TEST(Format, TableAndJsonCarryTheCounts)
{
	PageList p, c;
	after_fork(16, p, c);
	child_copies(4, c);
	Diff d = diff_pages(p, c);
	d.parent = 100;
	d.child = 101;
	std::string t = format_diff(d);
	EXPECT_NE(t.find("parent 100 vs child 101"), std::string::npos) << t;
	EXPECT_NE(t.find("heap "), std::string::npos) << t;
	EXPECT_NE(t.find("[####============"), std::string::npos) << t;
	EXPECT_EQ(t.find("text "), std::string::npos) << "empty segments are left out:\n" << t;

	nlohmann::json j = diff_json(d, true);
	EXPECT_EQ(j["total"]["copied"], 4);
	EXPECT_EQ(j["total"]["shared"], 12);
	EXPECT_EQ(j["segments"]["heap"]["cow_pending"], 12);
	EXPECT_EQ(j["heap_strip"]["text"], "####============");
	EXPECT_EQ(j["pages"].size(), 16u);
	EXPECT_EQ(j["pages"][0]["state"], "copied");
}
