// Reading a forecast's target process (target.hpp).
#include "target.hpp"

#include <cerrno>

#include "cowscope/base/fd.hpp"

namespace cowscope::forecast::target {

[[noreturn]] void proc_failure(pid_t pid, const std::string &what, const SysError &e)
{
	if (e.code() == EACCES || e.code() == EPERM)
		throw Error(fmt::format("no permission to read process {}'s {} ({}): run as its user or as root", pid,
					what, e.what()));
	if (e.code() == ENOENT || e.code() == ESRCH || !proc::alive(pid))
		throw Error(fmt::format("process {} exited (reading its {})", pid, what));
	throw e;
}

std::string read_proc(pid_t pid, const char *file)
{
	try {
		return read_file(fmt::format("/proc/{}/{}", pid, file));
	} catch (const SysError &e) {
		proc_failure(pid, file, e);
	}
}

Pagemap open_pagemap(pid_t pid)
{
	try {
		return Pagemap(pid);
	} catch (const SysError &e) {
		proc_failure(pid, "pagemap", e);
	}
}

} // namespace cowscope::forecast::target
