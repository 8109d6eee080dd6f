// The page-table shape of a live process (smaps, pagemap, the module's views
// where loaded) and the copy side (soft-dirty window, cowtrace record).
// Nothing here stops or writes the target, except "4" to clear_refs for the
// soft-dirty window (the kernel's own soft-dirty mechanism).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <thread>

#include "cowscope/view/diff.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/proc/stat.hpp"
#include "cowscope/base/stats.hpp"
#include "cowscope/view/view.hpp"

namespace cowscope::forecast {

namespace {

constexpr std::uint64_t kPage = 4096, kHuge = 2ull << 20, kPerHuge = kHuge / kPage;


// Rethrow a /proc failure with what it means for a forecast.
[[noreturn]] void proc_failure(pid_t pid, const std::string &what, const SysError &e)
{
	if (e.code() == EACCES || e.code() == EPERM)
		throw Error(fmt::format("no permission to read process {}'s {} ({}): run as its user or as root", pid,
					what, e.what()));
	if (e.code() == ENOENT || e.code() == ESRCH || !proc::alive(pid))
		throw Error(fmt::format("process {} exited (reading its {})", pid, what));
	throw e;
}

std::string read_proc(pid_t pid, const char *file)
{
	try {
		return read_file(fmt::format("/proc/{}/{}", pid, file));
	} catch (const SysError &e) {
		proc_failure(pid, file, e);
	}
}

// Calls fn(vaddr, entries, n) over [start, end) in chunks.
template <class Fn> void walk_pagemap(const Pagemap &pm, pid_t pid, std::uint64_t start, std::uint64_t end, Fn fn)
{
	constexpr std::size_t kChunk = 1u << 16; // 256 MiB of address space, 512 KiB of entries
	static thread_local std::vector<PagemapEntry> buf(kChunk);
	for (std::uint64_t a = start; a < end; a += kChunk * kPage) {
		std::size_t n = std::min<std::uint64_t>(kChunk, (end - a) / kPage);
		try {
			pm.read(a, n, buf.data());
		} catch (const SysError &e) {
			proc_failure(pid, "pagemap", e);
		} catch (const Error &) {
			if (!proc::alive(pid))
				throw Error(fmt::format("process {} exited (reading its pagemap)", pid));
			throw;
		}
		fn(a, buf.data(), n);
	}
}

// write(2) to an existing /proc file (no temporary, no rename).
void write_file_existing(const std::string &path, const std::string &data)
{
	UniqueFd fd = UniqueFd::open(path, O_WRONLY);
	ssize_t n;
	do
		n = ::write(fd.get(), data.data(), data.size());
	while (n < 0 && errno == EINTR);
	if (n < 0)
		throw SysError("write " + path);
}

Pagemap open_pagemap(pid_t pid)
{
	try {
		return Pagemap(pid);
	} catch (const SysError &e) {
		proc_failure(pid, "pagemap", e);
	}
}

} // namespace

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

Shape read_shape(pid_t pid, bool with_module)
{
	auto t0 = std::chrono::steady_clock::now();
	auto stat = proc::read_stat(pid);
	if (!stat)
		throw Error(fmt::format("no process with pid {}", pid));
	if (stat->kernel_thread())
		throw Error(fmt::format("process {} is a kernel thread: it has no user memory and never forks a "
					"snapshot; forecasts are for user processes",
					pid));
	if (stat->gone())
		throw Error(fmt::format("process {} exited (a zombie: its memory is gone)", pid));
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
		// PTE tables: 2 MiB blocks with a present page, less the PMD-mapped
		// ones. Scatter: of the virtually adjacent present pages, how many
		// pairs are physically apart (PFNs more than kNearPfns away).
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
	if (with_module && view::module_loaded()) {
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
	s.read_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
	return s;
}

// ---- soft-dirty ---------------------------------------------------------------

bool soft_dirty_supported(std::string *why)
{
	auto fail = [&](const std::string &w) {
		if (why)
			*why = w;
		return false;
	};
	if (::access("/proc/self/clear_refs", W_OK) != 0)
		return fail("/proc/self/clear_refs is not writable");
	Mapping page = Mapping::anonymous(kPage);
	volatile char *p = static_cast<volatile char *>(page.data());
	p[0] = 1;
	try {
		Pagemap pm(::getpid());
		write_file_existing("/proc/self/clear_refs", "4");
		bool before = pm.at(reinterpret_cast<std::uintptr_t>(page.data())).soft_dirty();
		p[0] = 2;
		bool after = pm.at(reinterpret_cast<std::uintptr_t>(page.data())).soft_dirty();
		if (before || !after)
			return fail("this kernel has no soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY): pagemap bit 55 "
				    "did not follow a write after clear_refs");
	} catch (const Error &e) {
		return fail(e.what());
	}
	return true;
}

namespace {

struct Tracked {
	std::uint64_t start = 0, end = 0;
	bool maybe_huge = false;
	std::vector<bool> present0; // present (or swapped) at t=0
};

CopySample count_dirty(const Pagemap &pm, pid_t pid, const std::vector<Tracked> &vmas, double t)
{
	CopySample s;
	s.t_s = t;
	for (const auto &v : vmas) {
		std::size_t base = 0;
		std::uint64_t run = 0, run_block = ~0ull;
		walk_pagemap(pm, pid, v.start, v.end, [&](std::uint64_t a, const PagemapEntry *e, std::size_t n) {
			for (std::size_t i = 0; i < n; i++) {
				std::size_t idx = (a - v.start) / kPage + i;
				bool d = v.present0[idx] && (e[i].raw >> 55 & 1);
				if (!d)
					continue;
				s.pages++;
				if (v.maybe_huge) {
					std::uint64_t addr = a + i * kPage;
					std::uint64_t blk = addr / kHuge;
					if (blk != run_block)
						run_block = blk, run = 0;
					if (++run == kPerHuge && addr % kHuge == kHuge - kPage)
						s.huge_blocks++;
				}
			}
			base += n;
		});
	}
	return s;
}

} // namespace

CopySide measure_soft_dirty(pid_t pid, double window_s, double step_s, const std::function<void(double)> &progress)
{
	if (!(window_s > 0))
		throw UsageError("--window: expected SECONDS > 0");
	std::string why;
	if (!soft_dirty_supported(&why))
		throw Error("soft-dirty window: " + why);
	if (step_s <= 0)
		step_s = std::max(0.25, window_s / 10); // each sample is a pagemap pass: CPU the target may need
	auto vmas_all = vma_shapes(proc::parse_smaps(read_proc(pid, "smaps")));
	Pagemap pm = open_pagemap(pid);
	std::vector<Tracked> tracked;
	for (const auto &v : vmas_all) {
		if (!v.copies_ptes || !v.cow_writable || v.rss_kb + v.swap_kb == 0)
			continue;
		Tracked t;
		t.start = v.start;
		t.end = v.end;
		t.maybe_huge = v.anon_huge_kb > 0;
		t.present0.assign((v.end - v.start) / kPage, false);
		walk_pagemap(pm, pid, v.start, v.end, [&](std::uint64_t a, const PagemapEntry *e, std::size_t n) {
			for (std::size_t i = 0; i < n; i++)
				if (e[i].present() || e[i].swapped())
					t.present0[(a - v.start) / kPage + i] = true;
		});
		tracked.push_back(std::move(t));
	}
	try {
		write_file_existing(fmt::format("/proc/{}/clear_refs", pid), "4");
	} catch (const SysError &e) {
		proc_failure(pid, "clear_refs", e);
	}
	using clock = std::chrono::steady_clock;
	auto t0 = clock::now();
	CopySide c;
	c.source = "soft-dirty";
	c.window_s = c.snapshot_s = window_s;
	c.curve.push_back({0, 0, 0});
	for (double next = step_s;; next += step_s) {
		next = std::min(next, window_s);
		std::this_thread::sleep_until(t0 + std::chrono::duration<double>(next));
		double t = std::chrono::duration<double>(clock::now() - t0).count();
		c.curve.push_back(count_dirty(pm, pid, tracked, t));
		if (progress)
			progress(t);
		if (next >= window_s)
			break;
	}
	const CopySample &last = c.curve.back();
	// A soft-dirty PMD marks its 512 pages: a write there copies 1..512 pages.
	c.pages_hi = static_cast<double>(last.pages);
	c.pages_lo = static_cast<double>(last.pages - last.huge_blocks * (kPerHuge - 1));
	c.pages_point = last.huge_blocks ? (c.pages_lo + c.pages_hi) / 2 : c.pages_hi;
	c.note = fmt::format("distinct pages written over {:.3g} s among the {} writable private mappings' present "
			     "pages (soft-dirty, clear_refs 4)",
			     window_s, tracked.size());
	if (last.huge_blocks)
		c.note += fmt::format("; {} whole 2 MiB blocks read soft-dirty (a PMD-mapped THP: a write there "
				      "copies 1 to 512 pages, the interval spans both)",
				      last.huge_blocks);
	return c;
}

namespace {

// Student's t, 95th percentile, for df = 1..30 (beyond: the normal's).
double t95(std::size_t df)
{
	static const double t[] = {6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812,
				   1.796, 1.782, 1.771, 1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725,
				   1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697};
	return df >= 1 && df <= 30 ? t[df - 1] : 1.645;
}

// The snapshots' copies as a sample: the point is their median; the
// interval their range widened to a 90% prediction interval for a next
// snapshot like them (mean +- t * sd * sqrt(1 + 1/n)): the range of n alike
// snapshots alone holds the next one only (n-1)/(n+1) of the time (50% for
// three), and snapshots' write rates vary (Redis under a steady SET load
// here: 19-23 MiB/s).
void spread_of_snapshots(CopySide &c, const std::vector<double> &pts, double lo, double hi, double cap)
{
	Summary s = summarize(pts);
	c.pages_point = s.median;
	c.pages_lo = lo;
	c.pages_hi = hi;
	const std::size_t n = pts.size();
	if (n < 2) {
		c.note += "; one snapshot gives no spread: the interval holds only the projection's uncertainty";
		return;
	}
	const double mean = s.mean;
	double var = 0;
	for (double v : pts)
		var += (v - mean) * (v - mean);
	var /= static_cast<double>(n - 1);
	const double half = t95(n - 1) * std::sqrt(var) * std::sqrt(1.0 + 1.0 / static_cast<double>(n));
	c.pages_lo = std::max(0.0, std::min(c.pages_lo, mean - half));
	c.pages_hi = std::max(c.pages_hi, std::min(mean + half, cap));
	c.note += fmt::format("; interval: a 90% prediction interval for a next snapshot from the {} snapshots' "
			      "spread (Student's t)",
			      n);
}

} // namespace

CopySide combine_records(const std::vector<CopySide> &parts)
{
	if (parts.empty())
		throw Error("no cowtrace record to combine");
	if (parts.size() == 1) {
		CopySide c = parts.front();
		spread_of_snapshots(c, c.per_snapshot, c.pages_lo, c.pages_hi, INFINITY);
		return c;
	}
	CopySide c;
	c.source = "cowtrace record";
	c.note = fmt::format("{} records:", parts.size());
	for (const auto &p : parts) {
		c.per_snapshot.insert(c.per_snapshot.end(), p.per_snapshot.begin(), p.per_snapshot.end());
		c.per_snapshot_s.insert(c.per_snapshot_s.end(), p.per_snapshot_s.begin(), p.per_snapshot_s.end());
		c.note += " [" + p.note + "]";
	}
	c.window_s = c.snapshot_s = summarize(c.per_snapshot_s).median;
	Summary s = summarize(c.per_snapshot);
	spread_of_snapshots(c, c.per_snapshot, s.min, s.max, INFINITY);
	return c;
}

double saturating_copies(double c1, double t1, double T, double pages_total)
{
	if (!(c1 > 0) || !(t1 > 0))
		return 0;
	const double n = std::max(pages_total, c1);
	// (1 - c1/N)^(T/t1): the chance a page escapes T/t1 periods like the first.
	return n * (1.0 - std::pow(1.0 - c1 / n, T / t1));
}

namespace {

struct Projected {
	double point, lo, hi;
};

// One measured (t1, c1) moved to T; lo1/hi1 bound c1 itself (huge blocks).
Projected project_one(double c1, double lo1, double hi1, double t1, double T, double n)
{
	Projected p{};
	p.point = saturating_copies(c1, t1, T, n);
	if (T >= t1) {
		p.lo = lo1;
		p.hi = std::min(std::max(n, hi1), hi1 * T / t1);
	} else {
		p.lo = lo1 * T / t1;
		p.hi = hi1;
	}
	p.point = std::clamp(p.point, p.lo, p.hi);
	return p;
}

} // namespace

void project_copies(CopySide &c, double snapshot_s, double pages_total)
{
	if (!(snapshot_s > 0))
		throw UsageError("--snapshot: expected SECONDS > 0");
	if (c.source == "none")
		return;
	const double t1 = c.curve.size() > 1 ? c.curve.back().t_s : c.window_s;
	if (!(t1 > 0))
		return;
	c.snapshot_s = snapshot_s;
	if (!c.per_snapshot.empty()) {
		std::vector<double> pts;
		double lo = INFINITY, hi = 0;
		const bool own = c.per_snapshot_s.size() == c.per_snapshot.size();
		for (std::size_t i = 0; i < c.per_snapshot.size(); i++) {
			const double c1 = c.per_snapshot[i], ti = own ? c.per_snapshot_s[i] : t1;
			Projected p = project_one(c1, c1, c1, ti, snapshot_s, pages_total);
			pts.push_back(p.point);
			lo = std::min(lo, p.lo);
			hi = std::max(hi, p.hi);
		}
		// The note already holds the records' sample statement.
		std::string note = c.note;
		spread_of_snapshots(c, pts, lo, hi, std::max(pages_total, hi));
		c.note = note;
	} else if (c.curve.size() > 1 && snapshot_s <= t1) {
		// Measured that far: read the curve at T (linearly between samples).
		std::size_t i = 1;
		while (i + 1 < c.curve.size() && c.curve[i].t_s < snapshot_s)
			i++;
		const CopySample &a = c.curve[i - 1], &b = c.curve[i];
		double f = b.t_s > a.t_s ? std::clamp((snapshot_s - a.t_s) / (b.t_s - a.t_s), 0.0, 1.0) : 1.0;
		double at = static_cast<double>(a.pages) + f * (static_cast<double>(b.pages) - static_cast<double>(a.pages));
		double last = static_cast<double>(c.curve.back().pages);
		double k = last > 0 ? at / last : 0;
		c.pages_point *= k;
		c.pages_lo *= k;
		c.pages_hi *= k;
		c.note += fmt::format("; read at {:.3g} s of the measured curve", snapshot_s);
		return;
	} else {
		Projected p = project_one(c.pages_point, c.pages_lo, c.pages_hi, t1, snapshot_s, pages_total);
		c.pages_point = p.point;
		c.pages_lo = p.lo;
		c.pages_hi = p.hi;
	}
	bool moved = std::fabs(snapshot_s - t1) > 1e-9 * t1;
	for (double ti : c.per_snapshot_s)
		moved = moved || std::fabs(snapshot_s - ti) > 1e-9 * ti;
	if (moved)
		c.note += fmt::format("; projected from {} to a {:.3g} s snapshot at the same write rate: point "
				      "for writes spread uniformly over {:.0f} copyable pages, interval for any steady "
				      "writer (distinct pages grow at most linearly)",
				      std::any_of(c.per_snapshot_s.begin(), c.per_snapshot_s.end(),
						  [&](double ti) { return ti != c.per_snapshot_s.front(); })
					      ? std::string("each snapshot's length")
					      : fmt::format("{:.3g} s", c.per_snapshot_s.empty() ? t1 : c.per_snapshot_s.front()),
				      snapshot_s, pages_total);
}

nlohmann::json CopySide::to_json() const
{
	nlohmann::json curve_j = nlohmann::json::array();
	for (const auto &s : curve)
		curve_j.push_back({{"t_s", s.t_s}, {"pages", s.pages}, {"huge_blocks", s.huge_blocks}});
	return {{"source", source},	    {"note", note},   {"window_s", window_s}, {"snapshot_s", snapshot_s},
		{"per_snapshot", per_snapshot}, {"per_snapshot_s", per_snapshot_s}, {"curve", curve_j},
		{"pages", {{"point", pages_point}, {"lo", pages_lo}, {"hi", pages_hi}}}};
}

} // namespace cowscope::forecast
