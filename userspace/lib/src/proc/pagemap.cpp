#include "cowscope/proc/pagemap.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowscope {

Pagemap::Pagemap(pid_t pid)
	: fd_(UniqueFd::open(fmt::format("/proc/{}/pagemap", pid), O_RDONLY)),
	  path_(fmt::format("/proc/{}/pagemap", pid))
{
}

void Pagemap::read(std::uintptr_t vaddr, std::size_t pages, PagemapEntry *out) const
{
	static const long psz = ::sysconf(_SC_PAGESIZE);
	off_t off = static_cast<off_t>(vaddr / static_cast<std::uintptr_t>(psz) * 8);
	std::size_t want = pages * 8, got = 0;
	auto *buf = reinterpret_cast<char *>(out);
	while (got < want) {
		ssize_t n = ::pread(fd_.get(), buf + got, want - got, off + static_cast<off_t>(got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			throw SysError(fmt::format("pread {} at {:#x}", path_, vaddr));
		}
		if (n == 0)
			throw Error(fmt::format("{}: short read at {:#x}", path_, vaddr));
		got += static_cast<std::size_t>(n);
	}
}

PagemapEntry Pagemap::at(std::uintptr_t vaddr) const
{
	PagemapEntry e;
	read(vaddr, 1, &e);
	return e;
}

KpageFile::KpageFile(const char *path) : fd_(UniqueFd::open(path, O_RDONLY | O_CLOEXEC)), path_(path) {}

std::size_t KpageFile::read(std::uint64_t pfn, std::size_t count, std::uint64_t *out) const
{
	ssize_t n;
	do
		n = ::pread(fd_.get(), out, count * sizeof(*out), static_cast<off_t>(pfn * sizeof(*out)));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		throw SysError(fmt::format("pread {} at PFN {:#x}", path_, pfn));
	return static_cast<std::size_t>(n) / sizeof(*out);
}

std::uint64_t kpagecount(std::uint64_t pfn)
{
	static const KpageFile file("/proc/kpagecount");
	std::uint64_t v = 0;
	if (file.read(pfn, 1, &v) != 1)
		throw SysError(fmt::format("pread /proc/kpagecount for pfn {:#x}", pfn), EIO);
	return v;
}

std::uint64_t minor_faults_thread()
{
	struct rusage ru {};
	if (::getrusage(RUSAGE_THREAD, &ru) < 0)
		throw SysError("getrusage");
	return static_cast<std::uint64_t>(ru.ru_minflt);
}

} // namespace cowscope
