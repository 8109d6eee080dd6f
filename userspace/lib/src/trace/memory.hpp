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

// One line of /proc/PID/maps.
struct MapsLine {
	std::uint64_t start = 0, end = 0, offset = 0;
	dev_t dev = 0;
	ino_t ino = 0;
	std::string perms, path;
	std::string head;	// "start-end perms offset dev inode"
};

std::vector<MapsLine> parse_maps(const std::string &text);

// Read /proc/PID/maps now and open its files (those `old` holds are
// shared, not opened again); `execs` is recorded with it. Null if the
// process is gone or a zombie.
std::shared_ptr<const ProcMemory> read_memory(pid_t pid, std::uint32_t execs, const ProcMemory *old);

} // namespace cowtrace
