// Test helpers: run a shell command, capture its standard output, and return
// it with the exit status (-1 when it did not exit normally); the folder of
// the running test program (the programs under test are built beside it).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>

#include <cstdio>
#include <string>
#include <utility>

namespace cowscope::testing {

inline std::pair<std::string, int> run_command(const std::string &cmd)
{
	FILE *f = ::popen(cmd.c_str(), "r");
	if (!f)
		return {"popen failed: " + cmd, -1};
	std::string out;
	char buf[4096];
	std::size_t k;
	while ((k = std::fread(buf, 1, sizeof(buf), f)) > 0)
		out.append(buf, k);
	int st = ::pclose(f);
	return {out, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

inline std::string bin_dir()
{
	std::array<char, 4096> buf{};
	ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
	std::string s(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
	return s.substr(0, s.rfind('/'));
}

} // namespace cowscope::testing
