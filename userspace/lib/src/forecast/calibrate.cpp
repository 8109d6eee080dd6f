// `cowbench calibrate`: cowbench's own fork measurement (run_bench) over a
// grid that varies heap size, THP, large folios, VMA count and PTE state
// independently; the model fitted on part of it, checked on the rest, then
// fitted on all of it. See cowscope/forecast/forecast.hpp.
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <cmath>
#include <fmt/format.h>

#include "cowscope/bench/bench.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/bench/folio.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/base/meta.hpp"
#include "cowscope/base/stats.hpp"
#include "cowscope/base/units.hpp"

namespace cowscope::forecast {

namespace {

// N extra VMAs in this process (fork duplicates every one): 2N pages,
// every other one PROT_NONE so that none merge, the others touched once.
class ExtraVmas {
public:
	explicit ExtraVmas(unsigned n)
	{
		if (n == 0)
			return;
		len_ = std::size_t(n) * 2 * 4096;
		void *p = ::mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			throw SysError(fmt::format("mmap {} pages for extra VMAs", n * 2));
		base_ = static_cast<char *>(p);
		for (unsigned i = 0; i < n; i++) {
			base_[std::size_t(i) * 2 * 4096] = 1;
			if (::mprotect(base_ + (std::size_t(i) * 2 + 1) * 4096, 4096, PROT_NONE) != 0) {
				int e = errno;
				::munmap(base_, len_);
				throw SysError(fmt::format("mprotect for extra VMA {} of {} (vm.max_map_count?)", i, n), e);
			}
		}
	}
	ExtraVmas(const ExtraVmas &) = delete;
	ExtraVmas &operator=(const ExtraVmas &) = delete;
	~ExtraVmas()
	{
		if (base_)
			::munmap(base_, len_);
	}

private:
	char *base_ = nullptr;
	std::size_t len_ = 0;
};

struct Point {
	std::uint64_t heap;
	Thp thp;
	std::uint64_t folio; // 0 or a large folio size
	PteState state;
	unsigned vmas;
	bool scattered = false;
	std::string label() const
	{
		return fmt::format("heap={} {} pte={} vmas=+{}{}", format_size(heap),
				   folio ? "folio=" + folio_name(folio) : "thp=" + to_string(thp), to_string(state), vmas,
				   scattered ? " populate=random" : "");
	}
};

std::vector<HeldOut> check_held_out(const std::vector<Observation> &obs, const Fit &fit)
{
	std::vector<HeldOut> out;
	for (const auto &o : obs) {
		if (!o.held_out || o.fork_us.empty())
			continue;
		HeldOut h;
		h.label = o.label;
		h.actual_us = summarize(o.fork_us).median;
		Interval iv = predict_interval(fit, o.in);
		h.predicted_us = iv.point;
		h.lo_us = iv.lo;
		h.hi_us = iv.hi;
		h.error = h.actual_us > 0 ? std::fabs(iv.point - h.actual_us) / h.actual_us : NAN;
		h.inside = h.actual_us >= iv.lo && h.actual_us <= iv.hi;
		out.push_back(h);
	}
	return out;
}

} // namespace

namespace {

struct Kind {
	Thp thp;
	std::uint64_t folio;
};

// The heap kinds that calibrate the huge-PMD term: with per-size controls
// (root), a 2M folio heap (the FolioGuard sets the 2M control for the run:
// the top-level one alone does not give THPs where hugepages-2048kB says
// never); otherwise MADV_HUGEPAGE when the system allows THP.
std::vector<Kind> heap_kinds(const CalibrateConfig &cfg, bool mthp, const std::vector<std::uint64_t> &sizes)
{
	std::vector<Kind> kinds = {{Thp::never, 0}};
	if (cfg.thp && mthp && std::find(sizes.begin(), sizes.end(), 2ull << 20) != sizes.end())
		kinds.push_back({Thp::system, 2ull << 20});
	else if (cfg.thp && !mthp && thp_mode() != "never")
		kinds.push_back({Thp::always, 0});
	return kinds;
}

// Every point of the grid: heaps x kinds x PTE states x extra VMAs, then
// physically scattered 4 KiB heaps (faulted in random order, as a
// long-running allocator's are), then 64K-folio heaps where offered.
std::vector<Point> make_grid(const CalibrateConfig &cfg, const std::vector<Kind> &kinds, bool mthp,
			     const std::vector<std::uint64_t> &sizes)
{
	std::vector<Point> grid;
	for (auto heap : cfg.heaps)
		for (const Kind &k : kinds)
			for (PteState st : {PteState::writable, PteState::readonly})
				for (unsigned v : cfg.extra_vmas)
					grid.push_back({heap, k.thp, k.folio, st, v});
	for (auto heap : cfg.heaps)
		for (PteState st : {PteState::writable, PteState::readonly})
			grid.push_back({heap, Thp::never, 0, st, 0, true});
	const std::uint64_t large = 64ull << 10;
	if (cfg.large_folios && mthp && std::find(sizes.begin(), sizes.end(), large) != sizes.end())
		for (auto heap : cfg.heaps)
			for (PteState st : {PteState::writable, PteState::readonly})
				grid.push_back({heap, Thp::system, large, st, 0});
	return grid;
}

// One grid point measured: the fork times of cowbench's repetitions and
// the inputs read from this process's own shape after the first one.
// nullopt when nothing usable came of it (interrupted, no shape).
std::optional<Observation> observe_point(const Point &p, const CalibrateConfig &cfg)
{
	ExtraVmas extra(p.vmas);
	BenchConfig bc;
	bc.heap = p.heap;
	bc.write_ratio = 0;
	bc.thp = p.thp;
	bc.folio = p.folio;
	bc.pte_state = p.state;
	bc.scattered = p.scattered;
	bc.repeat = cfg.repeat;
	bc.warmup = 1;
	bc.settle_s = cfg.settle_s;
	Shape self;
	bool have_shape = false;
	BenchResult r = run_bench(bc, [&](unsigned d, unsigned) {
		if (d == 1 && !have_shape) {
			self = read_shape(::getpid(), false);
			have_shape = true;
		}
	});
	if (!have_shape || r.repetitions.empty())
		return std::nullopt;
	Observation o;
	o.label = p.label();
	double huge = static_cast<double>(r.setup.anon_huge_kb) / 2048.0;
	double heap_ptes = std::max(0.0, static_cast<double>(r.setup.pages) - huge * 512.0);
	double all = static_cast<double>(self.ptes_cow_writable + self.ptes_other);
	heap_ptes = std::min(heap_ptes, all);
	o.in.vmas = static_cast<double>(self.vma_count);
	o.in.huge_pmds = static_cast<double>(self.huge_pmds);
	o.in.scatter = std::isfinite(self.scatter()) ? self.scatter() : 0;
	if (p.state == PteState::writable) {
		o.in.writable_ptes = heap_ptes;
		o.in.wp_ptes = all - heap_ptes;
	} else {
		o.in.wp_ptes = all;
	}
	if (p.folio && p.folio < (2ull << 20) && std::isfinite(r.setup.folio_fraction))
		o.in.large_folio_ptes = heap_ptes * r.setup.folio_fraction;
	for (const auto &rep : r.repetitions)
		if (rep.status == "ok" && std::isfinite(rep.fork_us))
			o.fork_us.push_back(rep.fork_us);
	return o;
}

// The copy cost of one heap kind: every page of a 64 MiB heap written by
// the child, into cal.copy's 4 KiB or huge figures.
void measure_copy_cost(const Kind &kind, Calibration &cal)
{
	BenchConfig bc;
	bc.heap = 64ull << 20;
	bc.write_ratio = 1;
	bc.thp = kind.thp;
	bc.folio = kind.folio;
	bc.repeat = 5;
	BenchResult r = run_bench(bc);
	std::vector<double> ns, kb;
	for (const auto &rep : r.repetitions) {
		ns.push_back(rep.ns_per_cow_fault);
		if (r.setup.pages_written)
			kb.push_back(rep.cow_private_dirty_kb / static_cast<double>(r.setup.pages_written));
	}
	Summary s = summarize(ns), k = summarize(kb);
	if (kind.thp == Thp::never && !kind.folio) {
		cal.copy.ns_per_4k_copy = s.n ? s.median : NAN;
		cal.copy.ns_per_4k_copy_min = s.n ? s.min : NAN;
		cal.copy.ns_per_4k_copy_max = s.n ? s.max : NAN;
		cal.copy.kb_per_written_4k = k.n ? k.median : NAN;
	} else {
		cal.copy.ns_per_huge_copy = s.n ? s.median : NAN;
		cal.copy.ns_per_huge_copy_min = s.n ? s.min : NAN;
		cal.copy.ns_per_huge_copy_max = s.n ? s.max : NAN;
		cal.copy.kb_per_written_huge = k.n ? k.median : NAN;
	}
}

} // namespace

Calibration run_calibration(const CalibrateConfig &cfg, const CalibrateProgress &progress)
{
	const bool mthp = ::geteuid() == 0 && has_mthp_controls();
	const auto sizes = mthp ? folio_sizes_offered() : std::vector<std::uint64_t>{};
	const std::vector<Kind> kinds = heap_kinds(cfg, mthp, sizes);
	const std::vector<Point> grid = make_grid(cfg, kinds, mthp, sizes);
	Calibration cal;
	cal.machine = machine_metadata();
	struct utsname u {};
	::uname(&u);
	cal.kernel = u.release;
	cal.hostname = u.nodename;
	cal.settle_s = cfg.settle_s;
	const unsigned total = static_cast<unsigned>(grid.size()) + 2;
	unsigned done = 0;
	for (std::size_t gi = 0; gi < grid.size() && !stop_requested(); gi++) {
		if (progress)
			progress(done, total, grid[gi].label());
		std::optional<Observation> o = observe_point(grid[gi], cfg);
		if (!o)
			continue;
		// Interleave: every third point is held out, spread over the grid.
		o->held_out = gi % 3 == 2;
		if (!o->fork_us.empty())
			cal.observations.push_back(std::move(*o));
		done++;
	}
	for (const Kind &kind : kinds) {
		if (stop_requested())
			break;
		if (progress)
			progress(done, total, fmt::format("copy cost {}", kind.folio ? "folio=2M" : "thp=never"));
		measure_copy_cost(kind, cal);
		done++;
	}
	if (progress)
		progress(total, total, "fit");
	if (stop_requested())
		throw Error(fmt::format("calibration interrupted after {} of {} points: nothing saved (a partial grid "
					"does not vary every input)",
					cal.observations.size(), grid.size()));
	Fit check = fit_model(cal.observations, cfg.boot_rounds);
	cal.held_out = check_held_out(cal.observations, check);
	std::vector<Observation> all = cal.observations;
	for (auto &o : all)
		o.held_out = false;
	cal.fit = fit_model(all, cfg.boot_rounds);
	return cal;
}

std::string calibration_report(const Calibration &c)
{
	std::string out = fmt::format("calibration for {} {} ({} observations, {} repetitions)\n", c.hostname, c.kernel,
				      c.fit.observations, c.fit.repetitions);
	out += fmt::format("fork_us = fixed + sum(coefficient * input); forks timed {}\n",
			   c.settle_s > 0 ? fmt::format("after {:g} s idle", c.settle_s) : "right after the heap was touched");
	const char *units[kTerms] = {"us",	   "ns per PTE", "ns per PTE", "us per PMD", "ns per VMA",
				     "ns per PTE", "ns per PTE", "ns per PTE", "ns per PTE", "ns per PTE"};
	const double mul[kTerms] = {1, 1e3, 1e3, 1, 1e3, 1e3, 1e3, 1e3, 1e3, 1e3};
	for (std::size_t i = 0; i < kTerms; i++) {
		if (!c.fit.used[i] && c.fit.varied[i]) {
			out += fmt::format("  {:<24} dropped: held at 0 and the rest refitted (it, or the PTE term it "
					   "refines, came out negative: too small to tell from this machine's noise)\n",
					   term_names()[i]);
			continue;
		}
		if (!c.fit.used[i]) {
			out += fmt::format("  {:<24} not fitted (the grid did not vary it)\n", term_names()[i]);
			continue;
		}
		std::vector<double> v;
		for (const auto &b : c.fit.boot)
			v.push_back(b[i]);
		out += fmt::format("  {:<24} {:9.3f} {:<11} [{:.3f}, {:.3f}] (bootstrap 95%)\n", term_names()[i],
				   c.fit.coef[i] * mul[i], units[i], v.empty() ? NAN : percentile(v, 2.5) * mul[i],
				   v.empty() ? NAN : percentile(v, 97.5) * mul[i]);
	}
	out += fmt::format("  run-to-run noise: repetitions are {:.2f}x..{:.2f}x the fit (5th..95th percentile)\n",
			   c.fit.ratio_q05, c.fit.ratio_q95);
	out += fmt::format("copy: {:.0f} ns per 4 KiB COW fault [{:.0f}, {:.0f}], {:.1f} KiB per written page; "
			   "THP heap: {:.0f} ns per fault [{:.0f}, {:.0f}], {:.1f} KiB per written page\n",
			   c.copy.ns_per_4k_copy, c.copy.ns_per_4k_copy_min, c.copy.ns_per_4k_copy_max,
			   c.copy.kb_per_written_4k, c.copy.ns_per_huge_copy, c.copy.ns_per_huge_copy_min,
			   c.copy.ns_per_huge_copy_max, c.copy.kb_per_written_huge);
	if (!c.held_out.empty()) {
		out += "held-out runs (fitted without them):\n";
		std::vector<double> err;
		unsigned inside = 0;
		for (const auto &h : c.held_out) {
			out += fmt::format("  {:<44} actual {:8.1f} us  predicted {:8.1f} [{:.1f}, {:.1f}]  error {:5.1f}%{}\n",
					   h.label, h.actual_us, h.predicted_us, h.lo_us, h.hi_us, h.error * 100,
					   h.inside ? "" : "  OUTSIDE");
			err.push_back(h.error);
			inside += h.inside;
		}
		Summary s = summarize(err);
		out += fmt::format("held-out error: median {:.1f}%, worst {:.1f}%; {} of {} inside the interval\n",
				   s.median * 100, s.max * 100, inside, c.held_out.size());
	}
	return out;
}

} // namespace cowscope::forecast
