// Test helper: run a shell command, capture its standard output, and return
// it with the exit status (-1 when it did not exit normally).
#pragma once

#include <sys/wait.h>

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

} // namespace cowscope::testing
