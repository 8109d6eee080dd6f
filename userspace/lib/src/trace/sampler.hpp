// cowtrace_core internals: --unwind's consumer (sampler.cpp). The BPF side
// sends 1 in N write-protect faults of each thread to the ring buffer
// `samples`: the user registers and a slice of the user stack when the fault
// begins (struct cow_sample), then the fault's kind once it is classified
// (struct cow_sample_kind, the same thread's). A thread of its own unwinds
// each sample at once through the CFI of the process's files (unwind.hpp;
// the maps are the watcher's, or the nearest ancestor's for a child whose
// maps were not read yet) and counts the resulting chains per (process,
// frame-pointer stack): the site the BPF side counted exactly. The
// attribution then shares a site's exact counts among its chains in
// proportion to their samples (with every fault sampled and none lost, the
// chains' own counts).
//
// CPython 3.11 (python.hpp): the first sample of a process whose maps hold
// the interpreter registers its frame offsets in the BPF map `pyprocs` (a
// fork copies them to the child); later samples carry the thread's Python
// frames as (code object, instruction) pairs, resolved here at once to
// function, file and line through a PyReader of the process (or of its
// parent: a forked family shares its code objects), and kept with the
// chain.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cowscope/base/fd.hpp"
#include "cowscope/report/model.hpp"
#include "python.hpp"
#include "unwind.hpp"

struct ring_buffer;

namespace cowtrace {

class Session;
class Watcher;

// The samples of one unwound chain: how many, by the kind of their fault.
struct ChainCounts {
	std::uint64_t copies = 0, reuses = 0, zero_fills = 0;
	std::uint64_t unclassified = 0;	// the kind never came (the fault aborted, or a record lost)
	std::uint64_t samples() const { return copies + reuses + zero_fills + unclassified; }
};

struct Chain {
	Unwound unwound;	// its frames and stop (`why` of its first sample)
	std::vector<PyFrame> py;	// CPython frames, innermost first (none: not Python)
	ChainCounts n;
};

class Sampler {
public:
	// At most this many distinct chains per (process, stack); later ones
	// are counted in Stats::chains_dropped.
	static constexpr std::size_t max_chains_per_site = 256;

	Sampler(const Session &s, const Watcher &w);	// starts the thread; throws cowscope::Error
	~Sampler();	// stops and joins it
	Sampler(const Sampler &) = delete;
	Sampler &operator=(const Sampler &) = delete;

	// The chains of `tgid`'s faults on frame-pointer stack `stackid` so far
	// (deleted when `erase`: the process is folded).
	std::vector<Chain> chains(pid_t tgid, std::int32_t stackid, bool erase);
	// Consume what the ring buffer holds now (before the final read).
	void drain();

	struct Stats {
		std::uint64_t samples = 0;	// stacks received
		std::uint64_t no_maps = 0;	// ... with no maps to unwind them by
		std::uint64_t chains_dropped = 0;	// samples of chains over max_chains_per_site
		std::uint64_t kinds_orphaned = 0;	// kinds with no sample of their thread
		std::uint64_t unwind_ns = 0;	// time spent unwinding
		std::uint64_t py_processes = 0;	// CPython processes registered in pyprocs
		std::uint64_t py_frames = 0;	// Python frames resolved
		std::uint64_t py_unresolved = 0;	// ... that did not resolve (not a code object)
	};
	Stats stats() const;
	// Wait until a CPython process is registered (Stats::py_processes > 0);
	// false if none was within `timeout`.
	bool wait_python(std::chrono::milliseconds timeout) const;
	// The same with the BPF side's counts, as reported.
	Unwinding unwinding() const;
	// Why a CPython process's frames are not read ("" when nothing failed).
	std::string py_note() const;

private:
	void run();
	static int on_record(void *ctx, void *data, std::size_t size);
	void on_sample(const void *data, std::size_t size);
	void on_kind(const void *data, std::size_t size);
	void python_of(pid_t tgid);	// register its interpreter, once
	std::vector<PyFrame> python_frames(pid_t tgid, const void *sample);

	using Key = std::pair<pid_t, std::int32_t>;
	struct Pending {
		Key key;
		std::size_t chain = 0;	// index in chains_[key]
	};

	const Session &session_;
	const Watcher &watcher_;
	ring_buffer *rb_ = nullptr;
	cowscope::UniqueFd wake_;	// the destructor's wake-up
	std::thread thread_;
	std::atomic<bool> stop_{false};
	Unwinder unwinder_;	// the thread's, and drain()'s under mu_
	mutable std::mutex mu_;	// guards what follows, and the consuming
	mutable std::condition_variable py_registered_;	// stats_.py_processes grew
	std::map<Key, std::vector<Chain>> chains_;
	std::unordered_map<std::uint32_t, Pending> pending_;	// by tid: its last sample
	std::map<pid_t, std::uint32_t> py_checked_;	// tgid -> its exec count when looked at
	std::map<pid_t, PyReader> py_readers_;	// by the process whose memory it reads
	std::map<std::string, std::string> py_errors_;	// ELF -> why its frames are not read
	Stats stats_;
};

} // namespace cowtrace
