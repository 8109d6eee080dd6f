// Test helpers over the core's process module: run a shell command with a
// deadline, capture its standard output, and return it with the exit status
// (-1 when it did not exit normally or ran past the deadline: then it is
// killed, and the output says so); the folder of the running test program
// (the programs under test are built beside it).
#pragma once

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include "cowscope/base/process.hpp"

namespace cowscope::testing {

inline std::pair<std::string, int> run_command(const std::string &cmd, int timeout_s = 300)
{
	Pipe out;
	pid_t pid = ::fork();
	if (pid < 0)
		return {"fork failed: " + cmd, -1};
	if (pid == 0) {
		::dup2(out.write_end.get(), STDOUT_FILENO);	// dup2 clears O_CLOEXEC
		::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char *>(nullptr));
		::_exit(127);
	}
	Child kid(pid);	// killed and reaped if we leave early
	out.write_end.reset();
	const std::int64_t deadline = monotonic_ns() + std::int64_t{timeout_s} * 1'000'000'000;
	std::string text;
	std::array<char, 4096> buf;
	for (;;) {
		std::int64_t left_ms = (deadline - monotonic_ns()) / 1'000'000;
		if (left_ms <= 0)
			return {text + "\n[run_command: killed after " + std::to_string(timeout_s) + " s: " + cmd + "]\n",
				-1};
		pollfd p{out.read_end.get(), POLLIN, 0};
		int r = ::poll(&p, 1, static_cast<int>(left_ms > 1000 ? 1000 : left_ms));
		if (r < 0 && errno != EINTR)
			return {text + "\n[run_command: poll failed]\n", -1};
		if (r <= 0)
			continue;
		ssize_t k = ::read(out.read_end.get(), buf.data(), buf.size());
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;	// end of output: the command (and what it started) closed it
		text.append(buf.data(), static_cast<std::size_t>(k));
	}
	int st = 0;
	if (kid.wait_until(deadline, st) != Child::Wait::exited)
		return {text + "\n[run_command: killed after " + std::to_string(timeout_s) + " s: " + cmd + "]\n", -1};
	return {text, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

inline std::string bin_dir()
{
	std::array<char, 4096> buf{};
	ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
	std::string s(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
	return s.substr(0, s.rfind('/'));
}

} // namespace cowscope::testing
