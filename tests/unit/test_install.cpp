// What the installed tools promise (docs/packaging.md), checked on the build
// tree: every program's --version is "NAME VERSION (commit C)" with the
// project's one version, --help lists --version, the help2man pages carry
// the sections added to --help, and the programs that need the module say how
// to get it from the packages.
#include <gtest/gtest.h>

#include "run_command.hpp"

#include <unistd.h>

#include <array>
#include <fstream>
#include <sstream>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cowscope/base/version.hpp"

namespace {

// cowtrace only where it is built (not with cmake -DCOWSCOPE_BPF=OFF)
const std::vector<const char *> kPrograms = COWSCOPE_BPF
	? std::vector<const char *>{"cowbench", "cowtrace", "cowscope", "cowdemo", "snapdemo"}
	: std::vector<const char *>{"cowbench", "cowscope", "cowdemo", "snapdemo"};

using cowscope::testing::bin_dir;

std::pair<std::string, int> run(const std::string &prog, const std::string &args)
{
	return cowscope::testing::run_command(bin_dir() + "/" + prog + " " + args + " 2>&1");
}

bool built(const std::string &prog) { return access((bin_dir() + "/" + prog).c_str(), X_OK) == 0; }

} // namespace

TEST(Install, EveryProgramSaysTheOneVersion)
{
	EXPECT_STREQ(cowscope::version(), COWSCOPE_VERSION);
	for (const char *p : kPrograms) {
		if (!built(p)) {
			ADD_FAILURE() << p << " was not built next to this test";
			continue;
		}
		auto [out, rc] = run(p, "--version");
		EXPECT_EQ(rc, 0) << p;
		const std::string want = std::string(p) + " " + COWSCOPE_VERSION + " (commit ";
		EXPECT_EQ(out.rfind(want, 0), 0u) << p << " --version: " << out;
		EXPECT_EQ(out.substr(out.size() - 2), ")\n") << p << " --version: " << out;
		std::tie(out, rc) = run(p, "--help");
		EXPECT_EQ(rc, 0) << p;
		EXPECT_NE(out.find("--version"), std::string::npos) << p << " --help: " << out;
		// the usage line names the program (help2man's SYNOPSIS comes from it)
		EXPECT_TRUE(std::regex_search(out, std::regex("Usage: (\\S*/)?" + std::string(p) + " ")))
			<< p << " --help: " << out;
	}
}

TEST(Install, ManPagesComeFromHelpWithExitStatusAndExamples)
{
	for (const char *p : kPrograms) {
		std::ifstream in(bin_dir() + "/../man/" + p + ".1");
		if (!in)
			GTEST_SKIP() << "no man pages in build/man (help2man not installed: scripts/setup)";
		std::stringstream ss;
		ss << in.rdbuf();
		const std::string page = ss.str();
		EXPECT_NE(page.find(".SH \"EXIT STATUS\""), std::string::npos) << p;
		EXPECT_NE(page.find(".SH EXAMPLES"), std::string::npos) << p;
		EXPECT_NE(page.find(COWSCOPE_VERSION), std::string::npos) << p;
		// an option from --help, as help2man writes it
		EXPECT_NE(page.find("\\fB\\-\\-version\\fR"), std::string::npos) << p;
	}
}

TEST(Install, WithoutTheModuleTheProgramsSayHowToGetIt)
{
	if (access("/proc/cowscope/track", F_OK) == 0)
		GTEST_SKIP() << "the module is loaded here";
	auto [out, rc] = run("cowscope", "summary 1");
	EXPECT_EQ(rc, 1) << out;
	EXPECT_NE(out.find("apt install cowscope-dkms"), std::string::npos) << out;
	EXPECT_NE(out.find("modprobe cowscope"), std::string::npos) << out;
	std::tie(out, rc) = run("cowdemo", "--steps layout");
	EXPECT_EQ(rc, 0) << out;
	EXPECT_NE(out.find("skipped: the cowscope module is not loaded here"), std::string::npos) << out;
	EXPECT_NE(out.find("modprobe cowscope"), std::string::npos) << out;
}

TEST(Install, CowbenchJsonToStandardOutputCountsTheCowFaults)
{
	// The package test's check: `cowbench --json -` is JSON alone on stdout
	// (the table goes to stderr), and counts one COW fault per page written.
	auto [out, rc] = cowscope::testing::run_command(
		bin_dir() + "/cowbench --heap 1M --write-ratio 0.25 --repeat 2 --thp never --json - 2>/dev/null");
	ASSERT_EQ(rc, 0) << out;
	auto j = nlohmann::json::parse(out, nullptr, false);
	ASSERT_FALSE(j.is_discarded()) << "not JSON: " << out.substr(0, 200);
	EXPECT_EQ(j["status"], "ok");
	const std::uint64_t written = j["setup"]["pages_written"];
	EXPECT_EQ(written, 64u);
	ASSERT_FALSE(j["repetitions"].empty()) << "no repetition in " << out.substr(0, 400);
	for (const auto &rep : j["repetitions"]) {
		EXPECT_GE(rep["cow_faults"].get<double>(), static_cast<double>(written)) << rep.dump();
		EXPECT_LT(rep["cow_faults"].get<double>(), 2.0 * written) << rep.dump();
	}
	EXPECT_NE(access("-", F_OK), 0) << "cowbench wrote a file named \"-\"";
}
