// Host test of the cowscope CLI's error paths (no module on this host): it
// runs build/bin/cowscope, found next to this test program.
#include <gtest/gtest.h>

#include "run_command.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

using cowscope::testing::bin_dir;

// Run "cowscope ARGS 2>&1": output and exit status.
std::pair<std::string, int> run(const std::string &args)
{
	return cowscope::testing::run_command(bin_dir() + "/cowscope " + args + " 2>&1");
}

bool have_cli() { return access((bin_dir() + "/cowscope").c_str(), X_OK) == 0; }

} // namespace

TEST(CowscopeCli, WithoutTheModuleSaysHowToGetIt)
{
	if (!have_cli())
		GTEST_SKIP() << "cowscope not built next to this test";
	if (access("/proc/cowscope/track", F_OK) == 0)
		GTEST_SKIP() << "the module is loaded here";
	for (const char *sub : {"maps 1", "ptes 1", "summary 1", "diff 1 1", "watch 1 -n 1"}) {
		auto [out, rc] = run(sub);
		EXPECT_EQ(rc, 1) << sub << ": " << out;
		EXPECT_NE(out.find("cowscope: /proc/cowscope/track not found"), std::string::npos) << out;
		EXPECT_NE(out.find("make vm"), std::string::npos) << out;
		EXPECT_NE(out.find("make load"), std::string::npos) << out;
		EXPECT_NE(out.find("DKMS"), std::string::npos) << out;
	}
}

TEST(CowscopeCli, UsageErrorsExit2WithTheArgument)
{
	if (!have_cli())
		GTEST_SKIP() << "cowscope not built next to this test";
	auto [out, rc] = run("maps abc");
	EXPECT_EQ(rc, 2);
	EXPECT_EQ(out, "cowscope: PID: expected a process id (a positive integer), got \"abc\"\n");
	std::tie(out, rc) = run("diff 1 -5");
	EXPECT_EQ(rc, 2) << out;
	std::tie(out, rc) = run("ptes 1 --range 9-3");
	EXPECT_EQ(rc, 2);
	EXPECT_NE(out.find("--range: expected START-END"), std::string::npos) << out;
	std::tie(out, rc) = run("watch 1 -i 0");
	EXPECT_EQ(rc, 2);
	EXPECT_NE(out.find("--interval: expected"), std::string::npos) << out;
	std::tie(out, rc) = run("frobnicate");
	EXPECT_EQ(rc, 2) << out;
}
