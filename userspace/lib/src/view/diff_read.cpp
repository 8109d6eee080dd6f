// diff_read.cpp - read a live process's present pages through view.hpp,
// with "no such process" and "the process exited" spelled out.
#include <signal.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "cowscope/view/diff.hpp"
#include "cowscope/base/error.hpp"

namespace cowscope {

namespace {

bool pid_exists(pid_t pid)
{
	return ::kill(pid, 0) == 0 || errno == EPERM;
}

// Run f; turn the module's ESRCH/ENOENT for a vanished pid into one message.
template <class F> auto gone_is_error(pid_t pid, F &&f)
{
	try {
		return f();
	} catch (const SysError &e) {
		throw_if_gone(pid, e);
	}
}

} // namespace

void throw_if_gone(pid_t pid, const SysError &e)
{
	if ((e.code() == ESRCH || e.code() == ENOENT) && view::module_loaded())
		throw Error(pid_exists(pid) ? fmt::format("process {} has exited (a zombie: its memory is gone)", pid)
					    : fmt::format("process {} exited", pid));
	throw e;
}

void ensure_tracked(pid_t pid)
{
	view::require_module();
	if (pid <= 0 || !pid_exists(pid))
		throw Error(fmt::format("no process with pid {}", pid));
	if (view::tracked(pid))
		return;
	gone_is_error(pid, [&] {
		view::track(pid);
		return 0;
	});
}

PageList read_present(pid_t pid, std::uint64_t start, std::uint64_t end)
{
	ensure_tracked(pid);
	return gone_is_error(pid, [&] {
		PageList out;
		for (const view::MapsEntry &m : view::read_maps(pid)) {
			std::uint64_t lo = m.start, hi = m.end;
			if (end > start) {
				lo = std::max(lo, start);
				hi = std::min(hi, end);
				if (hi <= lo)
					continue;
			}
			if (m.present == 0)
				continue;  // nothing mapped: skip reading its records
			for (const PageRecord &r : view::read_records(pid, lo, hi))
				if (r.present())
					out.push_back(r);
		}
		return out;
	});
}

Diff diff_pids(pid_t parent, pid_t child, std::uint64_t start, std::uint64_t end)
{
	ensure_tracked(parent);
	ensure_tracked(child);
	Diff d = diff_pages(read_present(parent, start, end), read_present(child, start, end));
	d.parent = parent;
	d.child = child;
	return d;
}

} // namespace cowscope
