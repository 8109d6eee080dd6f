// cowtrace's argument checks, which run before any BPF is loaded: they hold
// on every machine, BPF or not, root or not (the BPF-dependent CLI paths
// stay in tests/bpf/test_cowtrace.cpp). Runs build/bin/cowtrace, found next
// to this test program; skips, saying so, where it is not built
// (cmake -DCOWSCOPE_BPF=OFF).
#include <gtest/gtest.h>

#include "run_command.hpp"

#include <unistd.h>

#include <array>
#include <string>

namespace {

using cowscope::testing::bin_dir;

std::pair<std::string, int> cowtrace(const std::string &args)
{
	return cowscope::testing::run_command(bin_dir() + "/cowtrace " + args + " 2>&1");
}

// Built with -DCOWSCOPE_BPF=OFF: skip, saying so; otherwise cowtrace must be there.
#define NEED_COWTRACE()                                                                    \
	do {                                                                               \
		if (!COWSCOPE_BPF)                                                         \
			GTEST_SKIP() << "cowtrace not built (cmake -DCOWSCOPE_BPF=OFF)";   \
		ASSERT_EQ(access((bin_dir() + "/cowtrace").c_str(), X_OK), 0)              \
			<< "no cowtrace beside this test in " << bin_dir();                 \
	} while (0)

} // namespace

TEST(CowtraceCli, UsageErrorsExit2NamingTheArgument)
{
	NEED_COWTRACE();
	struct {
		const char *args, *says;
	} cases[] = {
		{"-p banana", "cowtrace: -p: expected a process id (a positive integer), got \"banana\""},
		{"-p 0", "cowtrace: -p: expected a process id"},
		{"-p ' 5'", "cowtrace: -p: expected a process id"},
		{"-i 0 -- true", "cowtrace: -i: expected SECONDS > 0 like 1 or 0.5, got \"0\""},
		{"-i 1e-3 -- true", "cowtrace: -i: expected SECONDS"},
		{"-i 1 0 -- true", "cowtrace: -i: expected COUNT, a whole number > 0, got \"0\""},
		{"--sites 0 -- true", "cowtrace: --sites: expected N, how many stacks to show"},
		{"--sites banana -- true", "cowtrace: --sites: expected N"},
		{"--sites -3 -- true", "cowtrace: --sites: expected N"},
		{"--unwind 0 -- true", "cowtrace: --unwind: expected N, unwind 1 in N faults, a whole number > 0, got \"0\""},
		{"--unwind banana -- true", "cowtrace: --unwind: expected N"},
		{"--unwind-stack 8K -- true", "cowtrace: --unwind-stack: only with --unwind"},
		{"--unwind --unwind-stack 5K -- true", "cowtrace: --unwind-stack: expected 4K, 8K, 12K or 16K (whole pages), got \"5K\""},
		{"--unwind 2 --unwind-stack 32K -- true", "cowtrace: --unwind-stack: expected 4K, 8K, 12K or 16K"},
		{"--unwind --unwind-stack banana -- true", "cowtrace: --unwind-stack: expected SIZE like 64M"},
		{"-m bogus -- true", "cowtrace: --method: expected auto, fentry, kprobe, vmevent or tracepoint"},
		{"", "cowtrace: give -p PID (a running process) or -- CMD ARGS..."},
		{"-p 1 -- true", "cowtrace: -p PID and -- CMD are exclusive"},
		{"--json -- true", "cowtrace: --json: expected FILE (or - for stdout), got \"--\""},
		{"--folded -- true", "cowtrace: --folded: expected FILE"},
		{"--frobnicate", "cowtrace: "},
	};
	for (const auto &c : cases) {
		auto [out, rc] = cowtrace(c.args);
		EXPECT_EQ(rc, 2) << c.args << ": " << out;
		EXPECT_EQ(out.rfind(c.says, 0), 0u) << c.args << ": " << out;
	}
	// CLI11's own errors add the usage line
	auto [out, rc] = cowtrace("--frobnicate");
	EXPECT_NE(out.find("\nusage: cowtrace [-p PID]"), std::string::npos) << out;
}

TEST(CowtraceCli, NoSuchProcessExits1)
{
	NEED_COWTRACE();
	auto [out, rc] = cowtrace("-p 999999999");
	EXPECT_EQ(rc, 1) << out;
	EXPECT_EQ(out, "cowtrace: -p 999999999: no such process\n");
}

TEST(CowtraceCli, HelpAndVersionExit0)
{
	NEED_COWTRACE();
	auto [out, rc] = cowtrace("--help");
	EXPECT_EQ(rc, 0) << out;
	EXPECT_NE(out.find("Usage: cowtrace"), std::string::npos) << out;
	std::tie(out, rc) = cowtrace("--version");
	EXPECT_EQ(rc, 0) << out;
	EXPECT_EQ(out.rfind("cowtrace ", 0), 0u) << out;
}
