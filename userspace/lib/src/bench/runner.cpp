// cowbench's repetition runner, the parts every spawn method shares: the
// heap's preparation before each repetition and the exec'd repetition
// (--spawn vfork, posix_spawn, fork+exec). The forked repetition is
// fork_repetition.cpp's.
#include "runner.hpp"

#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

extern char **environ;

namespace cowscope::bench_run {

namespace {

__attribute__((noinline)) pid_t vfork_exec(const char *path, char *const *argv, char *const *envp)
{
	pid_t p = ::vfork();
	if (p == 0) {
		::execve(path, argv, envp);
		::_exit(127);
	}
	return p;
}

} // namespace

Heap::Heap(std::size_t len, Thp thp, bool dontfork, std::uint64_t folio)
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

bool wait_exit(Child &kid, std::int64_t deadline, int &status)
{
	switch (kid.wait_until(deadline, status, &stop_requested)) {
	case Child::Wait::exited:
		return true;
	case Child::Wait::stopped:
		throw Interrupted{};
	case Child::Wait::timeout:
		break;
	}
	return false;
}

Runner::Runner(const BenchConfig &c) : cfg(c)
{
	psz = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	pages = static_cast<std::size_t>((cfg.heap + psz - 1) / psz);
	argv.push_back(cfg.exec_path.c_str());
	for (const auto &a : cfg.exec_args)
		argv.push_back(a.c_str());
	argv.push_back(nullptr);
}

std::int64_t Runner::deadline() const
{
	return now_ns() + static_cast<std::int64_t>(cfg.timeout_s * 1e9);
}

void Runner::touch_heap(char v)
{
	volatile char *h = heap.data();
	for (std::size_t i = 0; i < pages; i++)
		h[i * psz] = v;
}

void Runner::touch_heap_scattered(char v, std::uint64_t seed)
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

void Runner::prepare(char v)
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

void Runner::settle() const
{
	if (cfg.settle_s <= 0)
		return;
	struct timespec ts;
	ts.tv_sec = static_cast<time_t>(cfg.settle_s);
	ts.tv_nsec = static_cast<long>((cfg.settle_s - static_cast<double>(ts.tv_sec)) * 1e9);
	while (::nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested()) {
	}
}

Repetition Runner::run_exec(unsigned index)
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

} // namespace cowscope::bench_run
