// cowtrace_core internals shared by tracer.cpp and attribution.cpp.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cowscope/base/fd.hpp"
#include "cowscope/trace/trace.hpp"

struct cowtrace_bpf;

namespace cowtrace {

// A process's memory layout while it lived: the text of /proc/PID/maps and
// one open fd per mapped file (opened through /proc/PID/map_files, so a
// deleted or replaced binary still resolves), keyed by the path in maps.
struct ProcMemory {
	pid_t pid = 0;
	std::uint32_t execs = 0;	// cow_info.execs when read: later ones make it stale
	std::string maps;
	std::map<std::string, std::shared_ptr<cowscope::UniqueFd>> files;
};

// The plan's method counts no reuses: they are wp_faults - cow_copies
// (tracer.cpp's method table).
bool reuses_derived(const Plan &p);

struct Tracer::Impl {
	cowtrace_bpf *skel = nullptr;
	int ncpus = 0;
	Options opts;

	// the watcher thread (--by-mapping, --sites)
	std::thread watcher;
	mutable std::mutex mu;
	std::condition_variable cv;
	bool stop = false;
	std::map<pid_t, std::shared_ptr<const ProcMemory>> memory;	// guarded by mu
	// watcher only: rounds since the last snapshot, exec()s seen then
	std::map<pid_t, std::pair<int, std::uint32_t>> refreshed;
	std::map<pid_t, int> snapshots;	// watcher only: snapshots since first sight or exec

	// Read /proc/PID/maps and open its files now; false if the process is gone.
	bool remember(pid_t pid);
	~Impl();
};

} // namespace cowtrace
