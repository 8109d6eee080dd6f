// The copy side measured: a soft-dirty window over a live process's
// writable private pages (clear_refs "4", then pagemap's bit 55 sampled
// until the window ends). Writing "4" to clear_refs is all this does to
// the target (the kernel's own soft-dirty mechanism).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fmt/format.h>
#include <thread>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "target.hpp"

namespace cowscope::forecast {

using namespace target;

namespace {

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

} // namespace

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


// The writable private VMAs that fork copies, each with the pages present
// (or swapped) now: only those count as written later.
std::vector<Tracked> track_present(const Pagemap &pm, pid_t pid)
{
	auto vmas_all = vma_shapes(proc::parse_smaps(read_proc(pid, "smaps")));
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
	return tracked;
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
	Pagemap pm = open_pagemap(pid);
	std::vector<Tracked> tracked = track_present(pm, pid);
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

} // namespace cowscope::forecast
