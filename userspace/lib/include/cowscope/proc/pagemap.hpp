// Readers for the kernel's own ground truth about pages: pagemap,
// kpagecount, and the thread's fault count (rusage). The mappings' files
// (maps, smaps, smaps_rollup) are maps.hpp's; stat is stat.hpp's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "cowscope/base/fd.hpp"

namespace cowscope {

// One /proc/PID/pagemap entry (see Documentation/admin-guide/mm/pagemap.rst).
struct PagemapEntry {
	std::uint64_t raw = 0;
	bool present() const { return raw >> 63 & 1; }
	bool swapped() const { return raw >> 62 & 1; }
	bool file_or_shared_anon() const { return raw >> 61 & 1; }
	bool exclusive() const { return raw >> 56 & 1; }
	bool soft_dirty() const { return raw >> 55 & 1; }
	// Zero for unprivileged readers: the kernel hides PFNs from them.
	std::uint64_t pfn() const { return raw & ((1ULL << 55) - 1); }
};

// Reads /proc/PID/pagemap for [start, start + pages * page size).
class Pagemap {
public:
	explicit Pagemap(pid_t pid);
	PagemapEntry at(std::uintptr_t vaddr) const;
	// Fill out[0..pages) for consecutive pages from vaddr; one pread.
	void read(std::uintptr_t vaddr, std::size_t pages, PagemapEntry *out) const;

private:
	UniqueFd fd_;
	std::string path_;
};

// /proc/kpagecount or /proc/kpageflags: one 64-bit word per PFN
// (Documentation/admin-guide/mm/pagemap.rst). Root only.
class KpageFile {
public:
	explicit KpageFile(const char *path);	// throws SysError
	// Words for PFNs [pfn, pfn + count) into out; returns how many were
	// read (fewer past the end of memory). Throws SysError.
	std::size_t read(std::uint64_t pfn, std::size_t count, std::uint64_t *out) const;

private:
	UniqueFd fd_;
	std::string path_;
};

// /proc/kpagecount for one PFN (the page's mapcount as the kernel reports it).
std::uint64_t kpagecount(std::uint64_t pfn);

// Minor faults of the calling thread (RUSAGE_THREAD).
std::uint64_t minor_faults_thread();

} // namespace cowscope
