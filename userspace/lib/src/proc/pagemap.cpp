#include "cowscope/proc/pagemap.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <sstream>

#include "cowscope/base/error.hpp"

namespace cowscope {

std::map<std::string, std::uint64_t> smaps_rollup(pid_t pid)
{
	std::string path = fmt::format("/proc/{}/smaps_rollup", pid);
	std::istringstream in(read_file(path));
	std::map<std::string, std::uint64_t> out;
	std::string line;
	while (std::getline(in, line)) {
		auto c = line.find(':');
		if (c == std::string::npos || line.find(" kB") == std::string::npos)
			continue;
		std::istringstream v(line.substr(c + 1));
		std::uint64_t kb;
		if (v >> kb)
			out[line.substr(0, c)] = kb;
	}
	if (out.empty())
		throw Error(path + ": no fields (is the process a kernel thread or gone?)");
	return out;
}

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

std::uint64_t kpagecount(std::uint64_t pfn)
{
	static UniqueFd fd = UniqueFd::open("/proc/kpagecount", O_RDONLY);
	std::uint64_t v = 0;
	ssize_t n = ::pread(fd.get(), &v, sizeof(v), static_cast<off_t>(pfn * 8));
	if (n != static_cast<ssize_t>(sizeof(v)))
		throw SysError(fmt::format("pread /proc/kpagecount for pfn {:#x}", pfn), n < 0 ? errno : EIO);
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
