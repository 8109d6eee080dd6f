// The page-table shape of a live process: smaps, pagemap, and the module's
// views where loaded (what fork will copy). Nothing here stops or writes
// the target. The copy side is soft_dirty.cpp's (measured) and
// copy_side.cpp's (combined, projected).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <map>

#include "cowscope/base/error.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/proc/stat.hpp"
#include "cowscope/view/diff.hpp"
#include "cowscope/view/view.hpp"
#include "target.hpp"

namespace cowscope::forecast {

using namespace target;

std::uint64_t VmaShape::ptes() const
{
	std::uint64_t kb = rss_kb > pmd_mapped_kb ? rss_kb - pmd_mapped_kb : 0;
	return kb / 4;
}

std::vector<VmaShape> vma_shapes(const std::vector<proc::SmapsEntry> &smaps)
{
	std::vector<VmaShape> out;
	out.reserve(smaps.size());
	for (const proc::SmapsEntry &e : smaps) {
		VmaShape v;
		v.start = e.vma.start;
		v.end = e.vma.end;
		v.perms = e.vma.perms;
		v.name = e.vma.path;
		v.rss_kb = e.field("Rss");
		v.anonymous_kb = e.field("Anonymous");
		v.anon_huge_kb = e.field("AnonHugePages");
		v.pmd_mapped_kb = v.anon_huge_kb + e.field("ShmemPmdMapped") + e.field("FilePmdMapped");
		v.swap_kb = e.field("Swap");
		v.dontcopy = e.has_flag("dc");
		bool pfn = e.has_flag("pf") || e.has_flag("mm");
		// fork copies page tables of VMAs with an anon_vma (smaps does
		// not show it: Anonymous > 0, or a private writable anonymous
		// mapping that has pages, has one), PFNMAP/MIXEDMAP and hugetlb
		// ones.
		bool anon_map = v.name.empty() || v.name[0] == '[';
		v.copies_ptes = !v.dontcopy && (pfn || e.has_flag("ht") || v.anonymous_kb > 0 ||
						(e.vma.is_private() && anon_map && v.rss_kb > 0));
		v.cow_writable = e.vma.is_private() && e.vma.writable();
		out.push_back(std::move(v));
	}
	return out;
}

nlohmann::json Shape::to_json() const
{
	return {{"pid", pid},
		{"vmas", vma_count},
		{"ptes_private_writable", ptes_cow_writable},
		{"ptes_other_copied", ptes_other},
		{"huge_pmds", huge_pmds},
		{"pte_tables", pte_tables},
		{"anonymous_kb", anon_kb},
		{"state_source", state_source},
		{"module_writable", module_writable},
		{"module_cow", module_cow},
		{"large_folio_ptes", large_folio_ptes},
		{"large_folios_known", large_folios_known},
		{"pfn_pairs", pfn_pairs},
		{"pfn_scatter", std::isfinite(scatter()) ? nlohmann::json(scatter()) : nlohmann::json()},
		{"read_ms", read_ms}};
}

namespace {

// The process, or why there is none to forecast.
void check_target(pid_t pid)
{
	auto stat = proc::read_stat(pid);
	if (!stat)
		throw Error(fmt::format("no process with pid {}", pid));
	if (stat->kernel_thread())
		throw Error(fmt::format("process {} is a kernel thread: it has no user memory and never forks a "
					"snapshot; forecasts are for user processes",
					pid));
	if (stat->gone())
		throw Error(fmt::format("process {} exited (a zombie: its memory is gone)", pid));
}

// One VMA's PTE tables (2 MiB blocks with a present page, less the
// PMD-mapped ones) and its PFN pairs into `s`. Scatter: of the virtually
// adjacent present pages, how many pairs are physically apart (PFNs more
// than kNearPfns away).
void count_tables(const Pagemap &pm, pid_t pid, const VmaShape &v, Shape &s)
{
	std::uint64_t blocks = 0, last = ~0ull, prev_pfn = 0, prev_addr = ~0ull;
	walk_pagemap(pm, pid, v.start, v.end, [&](std::uint64_t a, const PagemapEntry *e, std::size_t n) {
		for (std::size_t i = 0; i < n; i++) {
			if (!e[i].present())
				continue;
			const std::uint64_t addr = a + i * kPage;
			std::uint64_t b = addr / kHuge;
			if (b != last)
				blocks++, last = b;
			const std::uint64_t pfn = e[i].pfn();
			if (pfn && prev_pfn && prev_addr + kPage == addr) {
				const std::uint64_t d = pfn > prev_pfn ? pfn - prev_pfn : prev_pfn - pfn;
				s.pfn_pairs++;
				s.pfn_pairs_apart += d > kNearPfns;
			}
			prev_pfn = pfn;
			prev_addr = addr;
		}
	});
	std::uint64_t huge_blocks = v.pmd_mapped_kb / 2048;
	s.pte_tables += blocks > huge_blocks ? blocks - huge_blocks : 0;
}

// The module's counts (writable and COW PTEs, large folios) for the VMAs
// that fork copies.
void add_module_state(pid_t pid, Shape &s)
{
	ensure_tracked(pid);
	std::map<std::uint64_t, const VmaShape *> by_start;
	for (const auto &v : s.vmas)
		by_start[v.start] = &v;
	double writable_ptes = 0;
	for (const auto &m : view::read_maps(pid)) {
		auto it = by_start.find(m.start);
		if (it == by_start.end() || !it->second->copies_ptes)
			continue;
		const VmaShape &v = *it->second;
		s.module_writable += m.writable;
		s.module_cow += m.cow;
		// writable counts every subpage of a huge PMD: keep the PTE share
		double share = m.present ? double(v.ptes()) / double(std::max<std::uint64_t>(m.present, v.ptes())) : 0;
		writable_ptes += m.writable * share;
	}
	s.module_writable = static_cast<std::uint64_t>(std::llround(writable_ptes));
	for (const auto &r : view::read_summary(pid))
		if (r.label == "total")
			for (unsigned o = 1; o < 9 && o < r.folio.size(); o++)
				s.large_folio_ptes += r.folio[o];
	s.large_folios_known = true;
	s.state_source = "module";
}

} // namespace

Shape read_shape(pid_t pid, bool with_module)
{
	auto t0 = std::chrono::steady_clock::now();
	check_target(pid);
	Shape s;
	s.pid = pid;
	s.vmas = vma_shapes(proc::parse_smaps(read_proc(pid, "smaps")));
	if (s.vmas.empty()) {
		if (!proc::alive(pid))
			throw Error(fmt::format("process {} exited (reading its smaps)", pid));
		throw Error(fmt::format("process {} has no user memory mapped", pid));
	}
	Pagemap pm = open_pagemap(pid);
	for (const auto &v : s.vmas) {
		if (v.dontcopy)
			continue;
		s.vma_count++;
		if (!v.copies_ptes)
			continue;
		std::uint64_t ptes = v.ptes();
		(v.cow_writable ? s.ptes_cow_writable : s.ptes_other) += ptes;
		s.huge_pmds += v.huge_pmds();
		s.anon_kb += v.anonymous_kb;
		if (v.rss_kb == 0)
			continue;
		count_tables(pm, pid, v, s);
	}
	if (with_module && view::module_loaded())
		add_module_state(pid, s);
	s.read_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
	return s;
}


} // namespace cowscope::forecast
