// cowbench: the fork driver. run_bench sets the run up (the written pages,
// the folio controls, the heap and its first touch, timed) and runs the
// repetitions through runner.hpp's Runner: children run only
// async-signal-safe code (raw syscalls on pipes, then _exit), so this is
// safe inside a threaded host such as the Python interpreter. Every child
// is killed and reaped by its Child's destructor (cowscope/process.hpp)
// whatever happens; a child past the timeout is killed and the repetition
// reported as "timeout". The stop flag (request_stop) lives here.
#include "cowscope/bench/bench.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/meta.hpp"
#include "cowscope/bench/folio.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "runner.hpp"

namespace cowscope {

namespace {

using bench_run::Heap;
using bench_run::Interrupted;
using bench_run::kHuge;
using bench_run::now_ns;
using bench_run::Runner;

volatile sig_atomic_t g_stop = 0;

} // namespace

void request_stop() noexcept
{
	g_stop = 1;
}
void clear_stop() noexcept
{
	g_stop = 0;
}
bool stop_requested() noexcept
{
	return g_stop != 0;
}

namespace {

// The folios backing the heap now, into `to`; `fraction`: the share of the
// heap in folios of cfg.folio (smaps' AnonHugePages for 2M without PFNs).
void observe(Runner &run, const BenchConfig &cfg, const BenchSetup &s, nlohmann::json &to, double &fraction)
{
	FolioObservation o = observe_folios(run.heap.data(), run.pages * run.psz);
	to = o.to_json();
	fraction = o.fraction(cfg.folio);
	if (std::isnan(fraction) && cfg.folio == kHuge && s.anon_huge_kb && run.pages)
		fraction = static_cast<double>(s.anon_huge_kb) * 1024 / static_cast<double>(run.pages * run.psz);
}

// Touch every page of the heap once (in order, or scattered), timing the
// first-touch faults, and record what backs it.
void populate(Runner &run, const BenchConfig &cfg, BenchSetup &s)
{
	auto c0 = cfg.folio ? read_folio_counters() : std::map<std::uint64_t, FolioCounters>{};
	std::uint64_t f0 = minor_faults_thread();
	std::int64_t t0 = now_ns();
	if (cfg.scattered)
		run.touch_heap_scattered(1, cfg.seed);
	else
		run.touch_heap(1);
	std::int64_t t1 = now_ns();
	std::uint64_t f1 = minor_faults_thread();
	s.populate_us = static_cast<double>(t1 - t0) / 1e3;
	s.first_touch_faults = static_cast<double>(f1 - f0);
	if (f1 > f0)
		s.ns_per_first_touch_fault = static_cast<double>(t1 - t0) / static_cast<double>(f1 - f0);
	try {
		s.anon_huge_kb = proc::smaps_rollup(::getpid())["AnonHugePages"];
	} catch (const Error &) {
	}
	if (cfg.folio) {
		// System-wide counters: other processes may add to them.
		s.folio_counters = nlohmann::json::object();
		for (const auto &[b, c1] : read_folio_counters()) {
			auto it = c0.find(b);
			if (it == c0.end())
				continue;
			std::uint64_t da = c1.alloc - it->second.alloc, df = c1.fallback - it->second.fallback;
			if (da || df || b == cfg.folio)
				s.folio_counters[folio_name(b)] = {{"anon_fault_alloc", da},
								   {"anon_fault_fallback", df}};
		}
		observe(run, cfg, s, s.folio_observed, s.folio_fraction);
	}
}

} // namespace

BenchResult run_bench(const BenchConfig &cfg, const ProgressFn &progress)
{
	validate(cfg);
	if (cfg.check_memory)
		check_memory_fits(cfg, mem_available());

	BenchResult res;
	res.config = cfg;
	res.machine = machine_metadata();
	res.pte_state = to_string(cfg.pte_state);
	Runner run(cfg);
	BenchSetup &s = res.setup;
	s.page_size = run.psz;
	s.pages = run.pages;
	s.thp_system = thp_mode();
	s.thp_advice = cfg.thp == Thp::never ? "MADV_NOHUGEPAGE" : cfg.thp == Thp::system ? "none" : "MADV_HUGEPAGE";
	FolioGuard folio_guard;
	if (cfg.folio) {
		// Refused before anything is allocated: a size the kernel does not
		// offer, or a global change without root.
		check_folio_offered(cfg.folio);
		if (cfg.folio > 4096 && ::geteuid() != 0)
			throw UsageError(fmt::format("--folio {}: needs root (it sets {}'s per-size controls for "
						     "the run); --folio 4K needs none",
						     folio_name(cfg.folio), thp_sysfs_root()));
		s.thp_advice = cfg.folio <= 4096 ? "MADV_NOHUGEPAGE" : "MADV_HUGEPAGE";
		folio_guard = FolioGuard(cfg.folio);
		s.folio_controls_changed = folio_guard.changes();
	}

	const bool forks = cfg.spawn == Spawn::fork;
	if (forks) {
		run.wpages = pattern_pages(cfg.pattern, run.pages, cfg.write_ratio, cfg.seed);
		if (cfg.read)
			run.rpages = complement_pages(run.wpages, run.pages);
	}
	s.pages_written = run.wpages.size();
	run.heap = Heap(run.pages * run.psz, cfg.thp, false, cfg.folio);
	if (run.pages)
		populate(run, cfg, s);
	if (!run.wpages.empty()) {
		run.eager = Heap(run.wpages.size() * run.psz, cfg.folio ? Thp::never : cfg.thp, true);
		volatile char *e = run.eager.data();
		for (std::size_t i = 0; i < run.wpages.size(); i++)
			e[i * run.psz] = 1;
	}

	unsigned total = cfg.repeat;
	for (unsigned i = 0; i < cfg.warmup + cfg.repeat; i++) {
		if (g_stop) {
			res.interrupted = true;
			break;
		}
		Repetition rep;
		try {
			rep = forks ? run.run_fork(i) : run.run_exec(i);
		} catch (const Interrupted &) {
			res.interrupted = true;
			break;
		}
		if (i < cfg.warmup)
			continue;
		rep.index = i - cfg.warmup;
		if (rep.status.starts_with("timeout"))
			res.timeouts++;
		res.repetitions.push_back(std::move(rep));
		if (progress)
			progress(static_cast<unsigned>(res.repetitions.size()), total);
	}
	if (cfg.folio && run.pages)
		observe(run, cfg, s, s.folio_observed_end, s.folio_fraction_end);
	return res;
}
std::vector<double> plain_fork_loop(unsigned iterations, std::vector<double> *cycle_us)
{
	std::vector<double> out;
	for (unsigned i = 0; i < iterations; i++) {
		std::int64_t t0 = now_ns();
		pid_t p = ::fork();
		std::int64_t t1 = now_ns();
		if (p == 0)
			::_exit(0);
		if (p < 0)
			throw SysError("fork");
		int st;
		while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {
		}
		std::int64_t t2 = now_ns();
		out.push_back(static_cast<double>(t1 - t0) / 1e3);
		if (cycle_us)
			cycle_us->push_back(static_cast<double>(t2 - t0) / 1e3);
	}
	return out;
}

} // namespace cowscope