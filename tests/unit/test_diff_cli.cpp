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

// One --json convention: --json FILE (- for standard output). The old
// spelling, a bare --json, is refused with the new one shown.
TEST(CowscopeCli, BareJsonIsRefusedWithTheNewSpelling)
{
	if (!have_cli())
		GTEST_SKIP() << "cowscope not built next to this test";
	struct Case {
		const char *args, *want;
	};
	for (const Case &c : {Case{"diff 12 13 --json", "for the JSON on standard output as before: cowscope diff 12 13 --json -"},
			      Case{"diff 12 13 --json --pages", "got \"--pages\""},
			      Case{"maps 7 --json", "cowscope maps 7 --json -"},
			      Case{"summary 7 --json", "cowscope summary 7 --json -"},
			      Case{"ptes 7 --json --range 1-2", "cowscope ptes 7 --json - --range 1-2"},
			      Case{"forecast 1 --json --no-module", "cowscope forecast 1 --json - --no-module"}}) {
		auto [out, rc] = run(c.args);
		EXPECT_EQ(rc, 2) << c.args << ": " << out;
		EXPECT_NE(out.find("cowscope: --json: expected FILE (or - for standard output)"), std::string::npos)
			<< c.args << ": " << out;
		EXPECT_NE(out.find(c.want), std::string::npos) << c.args << ": " << out;
	}
	// the new spellings get past the parser (to the module check here)
	if (access("/proc/cowscope/track", F_OK) != 0)
		for (const char *ok : {"diff 12 13 --json -", "maps 7 --json /tmp/x.json", "summary 7 --json=-"}) {
			auto [out, rc] = run(ok);
			EXPECT_EQ(rc, 1) << ok << ": " << out;
			EXPECT_NE(out.find("/proc/cowscope/track not found"), std::string::npos) << ok << ": " << out;
		}
}
