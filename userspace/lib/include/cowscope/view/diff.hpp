// diff.hpp - join a parent's and a child's cowscope page records by
// virtual address and say, page by page and per segment, what fork()'s
// copy-on-write has done so far.
//
// The input is what /proc/cowscope/PID/pagemap gives (struct cowscope_rec,
// one per virtual page); view.hpp reads it. This file is pure logic over
// those records so that it can be unit-tested on synthetic data.
//
// Classification of one virtual address present in both processes:
//   shared       same PFN in both (fork has not copied it, or never will:
//                text, read-only data, the zero page)
//   cow-pending  shared, anonymous and write-protected in a writable VMA
//                (COWSCOPE_F_COW) in at least one of the two: the next
//                write by either process takes a COW fault. A subset of
//                shared.
//   copied       different PFNs: one side (usually the writer) got a page
//                of its own. The other side may still hold the old page
//                write-protected until it writes (then it is reused in
//                place: same PFN, W set).
// Present in only one of the two: parent-only / child-only. "exclusive"
// is their sum.
//
// Large folios (mTHP 16 KiB-1 MiB, THP 2 MiB): each record carries the
// order of its folio. Pages present in both are also counted by whether
// the parent's page belongs to a large folio (shared_large, copied_large)
// and whether the child's copy does (copied_child_large). The parent's
// large folios seen in both processes are counted once each by how many
// of their pages the child has copied: none, some (partly copied), all.
// A folio is keyed by its first PFN (folios are naturally aligned).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <cowscope_uapi.h>

#include "cowscope/base/error.hpp"
#include "cowscope/view/view.hpp"

namespace cowscope {

// One page of one process (view.hpp's record: vaddr + struct cowscope_rec).
using PageRecord = view::PageRecord;
// Present pages of one process, sorted by vaddr (what read_present()
// produces).
using PageList = std::vector<PageRecord>;

// Reading a live process through the module (diff_read.cpp). The pid must
// exist; it is tracked first. Throws Error "no process with pid N" / "process
// N exited" when it is gone, and view::require_module()'s message when the
// module is not loaded.
void ensure_tracked(pid_t pid);
// The "process is gone" logic of every read above, for a caller's own view
// read: throws Error "process N exited" (or "... has exited (a zombie ...)")
// when `e` (ESRCH or ENOENT, module loaded) says the process is gone, and
// rethrows `e` otherwise. Never returns.
[[noreturn]] void throw_if_gone(pid_t pid, const SysError &e);
// Present pages of every VMA, or of [start, end) only when end > start.
PageList read_present(pid_t pid, std::uint64_t start = 0, std::uint64_t end = 0);

enum class PageState : std::uint8_t {
	Shared,      // same PFN (and not COW-pending)
	CowPending,  // same PFN, write-protected anon in a writable VMA
	Copied,      // different PFNs
	ParentOnly,  // present only in the parent
	ChildOnly,   // present only in the child
};
const char *to_string(PageState s);

struct PageDiff {
	std::uint64_t vaddr = 0;
	PageState state = PageState::Shared;
	std::uint8_t segment = COWSCOPE_SEG_NONE;
	std::uint32_t parent_flags = 0, child_flags = 0;  // 0 where absent
	std::uint64_t parent_pfn = 0, child_pfn = 0;      // 0 where absent
	std::uint8_t parent_order = 0, child_order = 0;   // folio orders
};

struct DiffCounts {
	std::uint64_t shared = 0;       // same PFN, including cow_pending
	std::uint64_t cow_pending = 0;  // subset of shared
	std::uint64_t copied = 0;
	std::uint64_t parent_only = 0;
	std::uint64_t child_only = 0;
	// Of the copied pages: how many are writable (W) in each process. A
	// copied page writable in the parent too has been reused in place.
	std::uint64_t copied_parent_w = 0;
	std::uint64_t copied_child_w = 0;
	// Large folios (see above).
	std::uint64_t shared_large = 0;        // shared pages of large folios
	std::uint64_t copied_large = 0;        // copied pages whose parent page is in one
	std::uint64_t copied_child_large = 0;  // copied pages whose child copy is in one
	std::uint64_t large_folios = 0;        // the parent's large folios in both
	std::uint64_t large_folios_partly_copied = 0;
	std::uint64_t large_folios_wholly_copied = 0;

	std::uint64_t exclusive() const { return parent_only + child_only; }
	std::uint64_t both() const { return shared + copied; }
	void add(const PageDiff &d);
	DiffCounts &operator+=(const DiffCounts &o);
	bool operator==(const DiffCounts &) const = default;
};

struct Diff {
	pid_t parent = 0, child = 0;
	std::vector<PageDiff> pages;  // sorted by vaddr
	std::array<DiffCounts, COWSCOPE_SEG_COUNT> segments{};
	DiffCounts total;
};

// Merge-join two sorted page lists. Throws Error if either is unsorted.
Diff diff_pages(const PageList &parent, const PageList &child);
// read_present() of both (restricted to [start, end) when end > start), joined.
Diff diff_pids(pid_t parent, pid_t child, std::uint64_t start = 0, std::uint64_t end = 0);

// The heap strip: one character per group of pages covering [start, end)
// (page aligned), at most `width` characters:
//   '=' every present page in the group shared      '#' all copied
//   '1'..'9' some copied: tenths of the group's present pages copied
//   '<' only in the parent     '>' only in the child    '.' none present
//   '~' a mix of one-sided pages with shared/copied ones
// pages must be sorted by vaddr (as Diff::pages is).
struct Strip {
	std::uint64_t start = 0, end = 0;
	std::uint64_t pages_per_char = 1;
	std::string text;
};
Strip make_strip(const std::vector<PageDiff> &pages, std::uint64_t start,
		 std::uint64_t end, unsigned width = 64);
// The span of a segment's pages in a diff ([first page, last page + 4096)),
// or {0, 0} when it has none.
std::pair<std::uint64_t, std::uint64_t> segment_span(const Diff &d, unsigned segment);
extern const char *const strip_legend;

// Segments in the order a student reads them: text data bss heap
// mmap-anon mmap-file stack vdso vvar other.
const std::array<unsigned, COWSCOPE_SEG_COUNT> &segment_order();

// Plain aligned table (and the heap strip when the heap has pages).
std::string format_diff(const Diff &d, unsigned strip_width = 64);
nlohmann::json diff_json(const Diff &d, bool with_pages = false);

} // namespace cowscope
