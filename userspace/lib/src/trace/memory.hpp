// cowtrace_core internals: what is kept of a traced process while it lives,
// so that its frames resolve after it exited (memory.cpp). Used by the
// watcher (watcher.hpp) and the symbolizer (symbols.hpp).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cowscope/base/fd.hpp"
#include "cowscope/proc/maps.hpp"

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

// One line of /proc/PID/maps, as proc/'s one parser reads it.
using MapsLine = cowscope::proc::MapsEntry;
using cowscope::proc::parse_maps;

// Read /proc/PID/maps now and open its files (those `old` holds are
// shared, not opened again); `execs` is recorded with it. Null if the
// process is gone or a zombie.
std::shared_ptr<const ProcMemory> read_memory(pid_t pid, std::uint32_t execs, const ProcMemory *old);

} // namespace cowtrace
