// Reading a forecast's target process: its /proc files, with a failure said
// as what it means for a forecast (no permission, the process exited), and
// its pagemap in chunks. Private to forecast/ (shape.cpp, soft_dirty.cpp).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/proc/stat.hpp"

namespace cowscope::forecast::target {

constexpr std::uint64_t kPage = 4096, kHuge = 2ull << 20, kPerHuge = kHuge / kPage;

// Rethrow a /proc failure with what it means for a forecast.
[[noreturn]] void proc_failure(pid_t pid, const std::string &what, const SysError &e);

// /proc/PID/<file>, whole.
std::string read_proc(pid_t pid, const char *file);

// The target's pagemap, opened.
Pagemap open_pagemap(pid_t pid);

// Calls fn(vaddr, entries, n) over [start, end) in chunks.
template <class Fn> void walk_pagemap(const Pagemap &pm, pid_t pid, std::uint64_t start, std::uint64_t end, Fn fn)
{
	constexpr std::size_t kChunk = 1u << 16; // 256 MiB of address space, 512 KiB of entries
	static thread_local std::vector<PagemapEntry> buf(kChunk);
	for (std::uint64_t a = start; a < end; a += kChunk * kPage) {
		std::size_t n = std::min<std::uint64_t>(kChunk, (end - a) / kPage);
		try {
			pm.read(a, n, buf.data());
		} catch (const SysError &e) {
			proc_failure(pid, "pagemap", e);
		} catch (const Error &) {
			if (!proc::alive(pid))
				throw Error(fmt::format("process {} exited (reading its pagemap)", pid));
			throw;
		}
		fn(a, buf.data(), n);
	}
}

} // namespace cowscope::forecast::target
