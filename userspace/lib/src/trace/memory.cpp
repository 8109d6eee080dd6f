// cowtrace_core: a traced process's maps and mapped files (memory.hpp).
#include "memory.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowtrace {

namespace {

// One fd per (dev, inode) over the whole session, shared by the processes
// that map the file.
std::mutex g_files_mu;
std::map<std::pair<dev_t, ino_t>, std::weak_ptr<cowscope::UniqueFd>> g_files;

std::shared_ptr<cowscope::UniqueFd> open_mapped(pid_t pid, const MapsLine &m)
{
	// A file another tracked process already holds open (a child's copy
	// of its parent's mappings): the same fd. Also the only way left when
	// the process is exiting between the read of its maps and the open
	// below (its map_files are gone with its mm), and when the file was
	// deleted and has no path to open.
	if (m.ino) {
		std::lock_guard<std::mutex> g(g_files_mu);
		if (auto it = g_files.find({m.dev, m.ino}); it != g_files.end())
			if (auto have = it->second.lock())
				return have;
	}
	std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
	int fd = open(via.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0 && m.path.find(" (deleted)") == std::string::npos)
		fd = open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nullptr;
	auto own = std::make_shared<cowscope::UniqueFd>(fd);
	struct stat st;
	if (fstat(fd, &st) != 0)
		return own;
	std::lock_guard<std::mutex> g(g_files_mu);
	auto key = std::make_pair(st.st_dev, st.st_ino);
	if (auto it = g_files.find(key); it != g_files.end())
		if (auto have = it->second.lock())
			return have;
	g_files[key] = own;
	return own;
}

} // namespace

std::shared_ptr<const ProcMemory> read_memory(pid_t pid, std::uint32_t execs, const ProcMemory *old)
{
	// gone: no exception (under churn most follow-up reads find it gone,
	// and a throw costs more than the read)
	auto read = cowscope::try_read_file(fmt::format("/proc/{}/maps", pid));
	if (!read)
		return nullptr;
	std::string text = std::move(*read);
	if (text.empty())
		return nullptr;	// a zombie: its mm is gone
	auto mem = std::make_shared<ProcMemory>();
	mem->pid = pid;
	mem->execs = execs;
	mem->maps = text;
	for (const MapsLine &m : parse_maps(text)) {
		if (m.path.empty() || m.path[0] != '/' || mem->files.count(m.path))
			continue;
		if (old && old->files.count(m.path)) {
			mem->files[m.path] = old->files.at(m.path);
			continue;
		}
		if (auto fd = open_mapped(pid, m))
			mem->files[m.path] = fd;
	}
	return mem;
}

} // namespace cowtrace
