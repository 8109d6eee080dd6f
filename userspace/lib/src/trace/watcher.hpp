// cowtrace_core internals: the maps watcher (--by-mapping, --sites). A
// thread keeps the maps and mapped files of each tracked process while it
// lives (memory.hpp), so that its frames resolve after it exited. It
// learns of a tracked process's fork and exec from the BPF ring buffer
// `events` and reads its maps at once (a process that lives a millisecond
// is read too), again 1 and 4 ms later (ld.so maps the libraries after the
// exec), then after 20, 40, ... up to 500 ms while it lives (rounds of
// Options::watch_round_ms, 10 ms; the map of processes is polled then
// too, in case the ring buffer was full). The thread
// runs at SCHED_FIFO 1 where allowed, to wake ahead of the traced programs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "memory.hpp"

struct ring_buffer;

namespace cowtrace {

class Session;

using MemoryMap = std::map<pid_t, std::shared_ptr<const ProcMemory>>;

class Watcher {
public:
	explicit Watcher(const Session &s);	// starts the thread; throws cowscope::Error
	~Watcher();	// stops and joins it
	Watcher(const Watcher &) = delete;
	Watcher &operator=(const Watcher &) = delete;

	// Read the maps of `pid` now; false if it is gone.
	bool remember(pid_t pid);
	// Every tracked live process now (before stopping: late mappings).
	void refresh();
	MemoryMap memory() const;
	// What is kept of `pid` alone (null: nothing).
	std::shared_ptr<const ProcMemory> find(pid_t pid) const;
	// Drop what is kept of `pid` (folded: untracked, its sites resolved).
	void forget(pid_t pid);

private:
	using Clock = std::chrono::steady_clock;
	void run();
	void round();	// one pass over the tracked processes
	static int on_event(void *ctx, void *data, std::size_t size);

	const Session &session_;
	ring_buffer *events_ = nullptr;
	cowscope::UniqueFd wake_;	// the destructor's wake-up
	std::thread thread_;
	mutable std::mutex mu_;
	bool stop_ = false;	// guarded by mu_
	MemoryMap memory_;	// guarded by mu_
	// the thread only: processes to read now (events), follow-up reads
	// due, rounds since the last read and exec()s seen then, reads since
	// first sight or exec
	std::set<pid_t> due_now_;
	std::multimap<Clock::time_point, pid_t> follow_ups_;
	std::map<pid_t, std::pair<int, std::uint32_t>> refreshed_;
	std::map<pid_t, int> snapshots_;
};

// The maps the addresses of `pid` resolve with: its own, read since its
// last exec, else (a child that exited before its maps were read, and never
// exec'd) its nearest such ancestor's; `find` gives what is kept of a pid.
std::shared_ptr<const ProcMemory> memory_of(
	const Session &s, pid_t pid, const std::function<std::shared_ptr<const ProcMemory>(pid_t)> &find);

} // namespace cowtrace
