// cowbench: the fork driver. Children run only async-signal-safe code (raw
// syscalls on pipes, then _exit), so this is safe inside a threaded host
// such as the Python interpreter. Parent and children synchronise through
// pipes, waiting in poll(2) (on a kernel without pidfds, waiting for a child
// to exit polls waitpid with 100 us naps); every child is killed and reaped
// by its Child's destructor (cowscope/process.hpp) whatever happens; a child
// past the timeout is killed and the repetition reported as "timeout".
#include "cowscope/bench/bench.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <random>
#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/bench/folio.hpp"
#include "cowscope/base/meta.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/base/process.hpp"
#include "cowscope/base/units.hpp"
#include "child.hpp"

extern char **environ;

namespace cowscope {

namespace {

using namespace fork_child;

volatile sig_atomic_t g_stop = 0;

// async-signal-safe (clock_gettime): the children use it too
std::int64_t now_ns() noexcept
{
	return monotonic_ns();
}

struct Interrupted {};

constexpr std::size_t kHuge = 2u << 20;

// A heap aligned to 2 MiB so that THP can back it.
class Heap {
public:
	Heap() = default;
	Heap(std::size_t len, Thp thp, bool dontfork, std::uint64_t folio = 0)
	{
		if (len == 0)
			return;
		map_ = Mapping::anonymous_aligned(len, kHuge);
		int advice = thp == Thp::never ? MADV_NOHUGEPAGE : thp == Thp::system ? 0 : MADV_HUGEPAGE;
		if (folio) // a FolioGuard enables that one size for madvised mappings
			advice = folio <= 4096 ? MADV_NOHUGEPAGE : MADV_HUGEPAGE;
		if (advice && ::madvise(map_.data(), len, advice) < 0)
			throw SysError("madvise heap");
		if (dontfork && ::madvise(map_.data(), len, MADV_DONTFORK) < 0)
			throw SysError("madvise MADV_DONTFORK");
	}
	char *data() const { return map_.data(); }

private:
	Mapping map_;
};

bool stop_requested_now()
{
	return g_stop != 0;
}

// Wait for a child until `deadline`: false on timeout (the child still
// runs); throws Interrupted on SIGINT/SIGTERM.
bool wait_exit(Child &kid, std::int64_t deadline, int &status)
{
	switch (kid.wait_until(deadline, status, &stop_requested_now)) {
	case Child::Wait::exited:
		return true;
	case Child::Wait::stopped:
		throw Interrupted{};
	case Child::Wait::timeout:
		break;
	}
	return false;
}

// Read one Msg with a deadline. false = timeout.
bool read_msg(int fd, Msg &m, std::int64_t deadline, pid_t pid)
{
	std::size_t got = 0;
	auto *p = reinterpret_cast<char *>(&m);
	while (got < sizeof(m)) {
		if (g_stop)
			throw Interrupted{};
		std::int64_t left = deadline - now_ns();
		if (left <= 0)
			return false;
		struct pollfd pf = {fd, POLLIN, 0};
		int r = ::poll(&pf, 1, static_cast<int>(std::min<std::int64_t>(left / 1000000 + 1, 1000)));
		if (r < 0 && errno != EINTR)
			throw SysError("poll");
		if (r <= 0)
			continue;
		ssize_t n = ::read(fd, p + got, sizeof(m) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			throw SysError(fmt::format("read from child {}", pid));
		if (n == 0)
			throw Error(fmt::format("child {} exited before reporting", pid));
		got += static_cast<std::size_t>(n);
	}
	return true;
}

__attribute__((noinline)) pid_t vfork_exec(const char *path, char *const *argv, char *const *envp)
{
	pid_t p = ::vfork();
	if (p == 0) {
		::execve(path, argv, envp);
		::_exit(127);
	}
	return p;
}

std::uint64_t private_dirty_kb(pid_t pid)
{
	auto m = proc::smaps_rollup(pid);
	auto it = m.find("Private_Dirty");
	return it == m.end() ? 0 : it->second;
}

struct Runner {
	const BenchConfig &cfg;
	std::size_t psz;
	std::size_t pages;
	Heap heap;
	Heap eager;
	std::vector<std::uint32_t> wpages, rpages;
	std::vector<const char *> argv;

	explicit Runner(const BenchConfig &c) : cfg(c)
	{
		psz = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
		pages = static_cast<std::size_t>((cfg.heap + psz - 1) / psz);
		argv.push_back(cfg.exec_path.c_str());
		for (const auto &a : cfg.exec_args)
			argv.push_back(a.c_str());
		argv.push_back(nullptr);
	}

	std::int64_t deadline() const
	{
		return now_ns() + static_cast<std::int64_t>(cfg.timeout_s * 1e9);
	}

	void touch_heap(char v)
	{
		volatile char *h = heap.data();
		for (std::size_t i = 0; i < pages; i++)
			h[i * psz] = v;
	}

	// The first touch in a random page order (--populate random): each
	// fault takes the next free page, so neighbours end up far apart.
	void touch_heap_scattered(char v, std::uint64_t seed)
	{
		std::vector<std::uint32_t> order(pages);
		for (std::size_t i = 0; i < pages; i++)
			order[i] = static_cast<std::uint32_t>(i);
		std::mt19937_64 rng(seed);
		std::shuffle(order.begin(), order.end(), rng);
		volatile char *h = heap.data();
		for (auto i : order)
			h[std::size_t(i) * psz] = v;
	}

	void prepare(char v)
	{
		touch_heap(v); // PTEs writable again (and pages exclusive)
		if (cfg.pte_state == PteState::readonly && pages) {
			pid_t p = ::fork();
			if (p < 0)
				throw SysError("fork");
			if (p == 0)
				::_exit(0);
			Child kid(p);
			int st;
			if (!wait_exit(kid, deadline(), st))
				throw Error("write-protecting fork did not exit");
		}
		settle();
	}

	// --settle: idle before the timed fork (a signal cuts it short; the
	// repetition loop then sees the stop request).
	void settle() const
	{
		if (cfg.settle_s <= 0)
			return;
		struct timespec ts;
		ts.tv_sec = static_cast<time_t>(cfg.settle_s);
		ts.tv_nsec = static_cast<long>((cfg.settle_s - static_cast<double>(ts.tv_sec)) * 1e9);
		while (::nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested_now()) {
		}
	}

	Repetition run_exec(unsigned index)
	{
		Repetition rep;
		rep.index = index;
		prepare(static_cast<char>(index));
		auto *av = const_cast<char *const *>(argv.data());
		std::int64_t t0 = now_ns();
		pid_t pid = -1;
		switch (cfg.spawn) {
		case Spawn::vfork:
			pid = vfork_exec(argv[0], av, environ);
			break;
		case Spawn::posix_spawn: {
			int e = ::posix_spawn(&pid, argv[0], nullptr, nullptr, av, environ);
			if (e)
				throw SysError("posix_spawn " + cfg.exec_path, e);
			break;
		}
		default:
			pid = ::fork();
			if (pid == 0) {
				::execve(argv[0], av, environ);
				::_exit(127);
			}
		}
		std::int64_t t1 = now_ns();
		if (pid < 0)
			throw SysError(to_string(cfg.spawn));
		Child kid(pid);
		int st = 0;
		if (!wait_exit(kid, deadline(), st)) {
			rep.status = fmt::format("timeout: child {} did not exit within {} s; killed with SIGKILL and reaped",
						 pid, cfg.timeout_s);
			return rep;
		}
		std::int64_t t2 = now_ns();
		rep.fork_us = static_cast<double>(t1 - t0) / 1e3;
		rep.fork_us_children = {rep.fork_us};
		rep.exec_total_us = static_cast<double>(t2 - t0) / 1e3;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rep.status = fmt::format("error: {} exited with status {} (exec failed?)", cfg.exec_path,
						 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		return rep;
	}

	// Child i reports on pipes[i].result and waits for the parent's orders
	// ('g' go, 'x' exit) on pipes[i].go; t0s[i]: just before its fork.
	struct ChildPipes {
		Pipe result, go;
	};
	struct Family {
		std::vector<ChildPipes> pipes;
		std::vector<Child> kids;
		std::vector<std::int64_t> t0s;
	};

	// Fork cfg.children children over the prepared heap, timing each fork
	// into rep.fork_us_children.
	Family fork_children(char val, bool child_writes, Repetition &rep)
	{
		const unsigned n = cfg.children;
		Family fam;
		fam.pipes = std::vector<ChildPipes>(n);
		auto &pipes = fam.pipes;
		auto &kids = fam.kids;
		auto &t0s = fam.t0s;
		t0s.resize(n);
		std::vector<int> raw;	// every end, for the children to close the others'
		for (const auto &p : pipes)
			for (const UniqueFd *fd : {&p.result.read_end, &p.result.write_end, &p.go.read_end,
						   &p.go.write_end})
				raw.push_back(fd->get());
		kids.reserve(n);
		const pid_t self = ::getpid();
		for (unsigned i = 0; i < n; i++) {
			ChildCtx c;
			c.heap = heap.data();
			c.psz = psz;
			c.wpages = wpages.data();
			c.nw = wpages.size();
			c.rpages = rpages.data();
			c.nr = rpages.size();
			c.write = child_writes;
			c.hang = cfg.debug_child_hang;
			c.res_fd = pipes[i].result.write_end.get();
			c.go_fd = pipes[i].go.read_end.get();
			c.all_fds = raw.data();
			c.nfds = raw.size();
			c.parent = self;
			c.val = val;
			std::int64_t t0 = now_ns();
			pid_t pid = ::fork();
			std::int64_t t1 = now_ns();
			if (pid == 0)
				child_main(c);
			if (pid < 0)
				throw SysError("fork");
			kids.emplace_back(pid);
			t0s[i] = t0;
			rep.fork_us_children.push_back(static_cast<double>(t1 - t0) / 1e3);
			pipes[i].result.write_end.reset();	// the child's ends
			pipes[i].go.read_end.reset();
		}
		return fam;
	}

	// What the writers measured in one repetition: the children's (the
	// slowest and the sum, in ns; their faults) and the parent's.
	struct Writes {
		double cw_max = 0, cw_sum = 0, cr_max = 0, cfaults = 0;
		double pw_ns = 0, pr_ns = 0, pfaults = 0;
		double dirty_kb = 0;
	};

	Repetition run_fork(unsigned index)
	{
		Repetition rep;
		rep.index = index;
		const char val = static_cast<char>(index * 7 + 1);
		prepare(static_cast<char>(val + 1));
		const bool child_writes = cfg.writer != Writer::parent;
		const bool parent_writes = cfg.writer != Writer::child;
		const unsigned n = cfg.children;

		Family fam = fork_children(val, child_writes, rep);
		auto &pipes = fam.pipes;
		auto &kids = fam.kids;
		auto &t0s = fam.t0s;
		const pid_t self = ::getpid();
		rep.fork_us = rep.fork_us_children.front();
		auto timeout = [&](unsigned i, const char *what) {
			rep.status = fmt::format("timeout: child {} did not {} within {} s; killed with SIGKILL and reaped",
						 kids[i].pid(), what, cfg.timeout_s);
			return rep;
		};
		double start_sum = 0;
		for (unsigned i = 0; i < n; i++) {
			Msg m;
			if (!read_msg(pipes[i].result.read_end.get(), m, deadline(), kids[i].pid()))
				return timeout(i, "start");
			start_sum += static_cast<double>(m.start_ns - t0s[i]) / 1e3;
		}
		rep.child_start_us = start_sum / n;
		std::vector<std::uint64_t> pd0(n);
		std::uint64_t ppd0 = 0;
		if (child_writes)
			for (unsigned i = 0; i < n; i++)
				pd0[i] = private_dirty_kb(kids[i].pid());
		if (parent_writes)
			ppd0 = private_dirty_kb(self);
		for (unsigned i = 0; i < n; i++)
			if (!raw_write(pipes[i].go.write_end.get(), "g", 1))
				throw SysError("write to child");
		Writes w;
		if (parent_writes) {
			// this thread's faults: a host such as Python runs others
			Timed t = timed_write(heap.data(), psz, wpages.data(), wpages.size(), rpages.data(),
					      rpages.size(), val, RUSAGE_THREAD);
			w.pw_ns = static_cast<double>(t.write_ns);
			w.pr_ns = static_cast<double>(t.read_ns);
			w.pfaults = static_cast<double>(t.faults);
		}
		for (unsigned i = 0; i < n; i++) {
			Msg m;
			if (!read_msg(pipes[i].result.read_end.get(), m, deadline(), kids[i].pid()))
				return timeout(i, "finish writing");
			w.cw_max = std::max(w.cw_max, static_cast<double>(m.write_ns));
			w.cw_sum += static_cast<double>(m.write_ns);
			w.cr_max = std::max(w.cr_max, static_cast<double>(m.read_ns));
			w.cfaults += static_cast<double>(m.faults);
			if (child_writes)
				w.dirty_kb += static_cast<double>(private_dirty_kb(kids[i].pid())) -
					 static_cast<double>(pd0[i]);
		}
		if (parent_writes)
			w.dirty_kb += static_cast<double>(private_dirty_kb(self)) - static_cast<double>(ppd0);
		for (unsigned i = 0; i < n; i++)
			raw_write(pipes[i].go.write_end.get(), "x", 1);
		for (unsigned i = 0; i < n; i++) {
			int st = 0;
			if (!wait_exit(kids[i], deadline(), st))
				return timeout(i, "exit");
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				rep.status = fmt::format("error: child exited with status {}",
							 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		}

		eager_copy(rep);
		derive(rep, w);
		return rep;
	}

	// The same pages copied eagerly into a populated buffer.
	void eager_copy(Repetition &rep)
	{
		if (wpages.empty())
			return;
		char *dst = eager.data();
		const char *src = heap.data();
		std::int64_t t0 = now_ns();
		for (std::size_t i = 0; i < wpages.size(); i++)
			std::memcpy(dst + i * psz, src + static_cast<std::size_t>(wpages[i]) * psz, psz);
		std::int64_t t1 = now_ns();
		asm volatile("" ::"r"(dst) : "memory");
		rep.eager_copy_us = static_cast<double>(t1 - t0) / 1e3;
		rep.ns_per_page_copy = static_cast<double>(t1 - t0) / static_cast<double>(wpages.size());
	}

	// The repetition's figures from the writers' measurements.
	void derive(Repetition &rep, const Writes &w) const
	{
		const bool child_writes = cfg.writer != Writer::parent;
		const bool parent_writes = cfg.writer != Writer::child;
		double writers_ns = 0, nwriters = 0, faults = 0;
		if (child_writes) {
			rep.child_write_us = w.cw_max / 1e3;
			writers_ns += w.cw_sum;
			nwriters += cfg.children;
			faults += w.cfaults;
		} else {
			rep.child_write_us = w.pw_ns / 1e3;
		}
		if (parent_writes) {
			writers_ns += w.pw_ns;
			nwriters += 1;
			faults += w.pfaults;
			rep.parent_write_us = w.pw_ns / 1e3;
			rep.parent_cow_faults = w.pfaults;
		}
		if (cfg.read)
			rep.child_read_us = (child_writes ? w.cr_max : w.pr_ns) / 1e3;
		rep.cow_faults = faults;
		rep.cow_private_dirty_kb = w.dirty_kb;
		if (faults > 0)
			rep.ns_per_cow_fault = writers_ns / faults;
		if (std::isfinite(rep.eager_copy_us) && rep.eager_copy_us > 0)
			rep.cow_eager_ratio = writers_ns / nwriters / 1e3 / rep.eager_copy_us;
	}
};

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
