// cowbench's repetition runner (run.cpp's run_bench drives it): the heap,
// and one repetition, exec'd (runner.cpp) or forked with the children's
// timed writes (fork_repetition.cpp). Private to bench/; the children run
// child.hpp's async-signal-safe code.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cowscope/base/fd.hpp"
#include "cowscope/base/process.hpp"
#include "cowscope/bench/bench.hpp"

namespace cowscope::bench_run {

// async-signal-safe (clock_gettime): the children use it too
inline std::int64_t now_ns() noexcept
{
	return monotonic_ns();
}

// Thrown on SIGINT/SIGTERM (request_stop()) while waiting for a child.
struct Interrupted {};

constexpr std::size_t kHuge = 2u << 20;

// A heap aligned to 2 MiB so that THP can back it.
class Heap {
public:
	Heap() = default;
	// len bytes (none for 0), advised for THP as `thp` (or for the one
	// folio size a FolioGuard enabled), MADV_DONTFORK if `dontfork`.
	Heap(std::size_t len, Thp thp, bool dontfork, std::uint64_t folio = 0);
	char *data() const { return map_.data(); }

private:
	Mapping map_;
};

// Wait for a child until `deadline`: false on timeout (the child still
// runs); throws Interrupted on SIGINT/SIGTERM.
bool wait_exit(Child &kid, std::int64_t deadline, int &status);

struct Runner {
	const BenchConfig &cfg;
	std::size_t psz;
	std::size_t pages;
	Heap heap;
	Heap eager;
	std::vector<std::uint32_t> wpages, rpages;
	std::vector<const char *> argv;

	explicit Runner(const BenchConfig &c);

	std::int64_t deadline() const;

	// Write `v` to every page of the heap, in order.
	void touch_heap(char v);

	// The first touch in a random page order (--populate random): each
	// fault takes the next free page, so neighbours end up far apart.
	void touch_heap_scattered(char v, std::uint64_t seed);

	// Before each repetition: every page written again (PTEs writable,
	// pages exclusive), then write-protected by a fork for --pte-state
	// readonly, then --settle.
	void prepare(char v);

	// --settle: idle before the timed fork (a signal cuts it short; the
	// repetition loop then sees the stop request).
	void settle() const;

	// One --spawn vfork/posix_spawn/fork+exec repetition: the time to the
	// new process and to its exit.
	Repetition run_exec(unsigned index);

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
	Family fork_children(char val, bool child_writes, Repetition &rep);

	// What the writers measured in one repetition: the children's (the
	// slowest and the sum, in ns; their faults) and the parent's.
	struct Writes {
		double cw_max = 0, cw_sum = 0, cr_max = 0, cfaults = 0;
		double pw_ns = 0, pr_ns = 0, pfaults = 0;
		double dirty_kb = 0;
	};

	// One fork repetition: cfg.children children, the timed writes
	// (children's, parent's or both), then eager_copy() and derive().
	Repetition run_fork(unsigned index);

	// The same pages copied eagerly into a populated buffer.
	void eager_copy(Repetition &rep);

	// The repetition's figures from the writers' measurements.
	void derive(Repetition &rep, const Writes &w) const;
};

} // namespace cowscope::bench_run
