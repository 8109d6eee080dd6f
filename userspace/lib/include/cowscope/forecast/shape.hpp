// The page-table shape of a live process, read without stopping it
// (shape.cpp): what fork will have to copy.
#pragma once

#include <sys/types.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cowscope/proc/maps.hpp"

namespace cowscope::forecast {

// ---- the page-table shape of a live process ------------------------------

struct VmaShape {
	std::uint64_t start = 0, end = 0;
	std::string perms, name;
	std::uint64_t rss_kb = 0, anonymous_kb = 0, anon_huge_kb = 0, pmd_mapped_kb = 0, swap_kb = 0;
	bool dontcopy = false;   // VmFlags dc: fork skips it
	bool copies_ptes = false; // fork copies its page tables (anon_vma, PFNMAP/MIXEDMAP, hugetlb)
	bool cow_writable = false; // private and writable: its PTEs may be writable
	std::uint64_t ptes() const; // present 4 KiB PTEs
	std::uint64_t huge_pmds() const { return anon_huge_kb / 2048; }
};

struct Shape {
	pid_t pid = 0;
	std::vector<VmaShape> vmas;
	std::uint64_t vma_count = 0;        // every VMA fork duplicates (not dc)
	std::uint64_t ptes_cow_writable = 0; // present PTEs in private writable copied VMAs
	std::uint64_t ptes_other = 0;       // present PTEs in other copied VMAs (always write-protected for fork)
	std::uint64_t huge_pmds = 0;
	std::uint64_t pte_tables = 0;       // PTE table pages fork copies (2 MiB blocks with present PTEs)
	std::uint64_t anon_kb = 0;          // Anonymous of the copied VMAs
	// With the module: its per-VMA writable/cow counts.
	std::string state_source = "none"; // "module" or "none"
	std::uint64_t module_writable = 0, module_cow = 0, large_folio_ptes = 0;
	bool large_folios_known = false;
	// Physical scatter: of the pairs of virtually adjacent present pages
	// (with visible PFNs: root), those more than kNearPfns apart. Fork
	// touches each page's struct page in virtual order: scattered pages
	// miss the cache (measured here: a 1.5 GiB heap faulted in random order
	// forks 1.5x (writable) to 2.2x (write-protected) slower than one
	// faulted in order).
	std::uint64_t pfn_pairs = 0, pfn_pairs_apart = 0;
	double scatter() const
	{
		return pfn_pairs ? static_cast<double>(pfn_pairs_apart) / static_cast<double>(pfn_pairs) : NAN;
	}
	double read_ms = 0; // time taken to read it
	nlohmann::json to_json() const;
};

// The shape of each VMA of /proc/PID/smaps as proc::parse_smaps() read it
// (tests feed recorded text through the same parser).
std::vector<VmaShape> vma_shapes(const std::vector<proc::SmapsEntry> &smaps);
// Read smaps and pagemap of `pid` (never stops it; pagemap only over VMAs
// with resident pages). with_module: use the module's views when loaded.
// Throws Error/SysError naming the pid ("process N exited", permission).
Shape read_shape(pid_t pid, bool with_module = true);

} // namespace cowscope::forecast
