// In-VM test of the cowscope CLI on a real fork: maps, ptes, summary and
// diff (--json) agree with what the test did and with /proc/PID/pagemap.
#include <gtest/gtest.h>

#include "run_command.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cowscope/base/fd.hpp"
#include "cowscope/proc/pagemap.hpp"

using namespace cowscope;
using nlohmann::json;

namespace {

constexpr size_t P = 4096, N = 64, WRITTEN = 16;

std::string cli()
{
	std::array<char, 4096> buf{};
	ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
	std::string s(buf.data(), n > 0 ? static_cast<size_t>(n) : 0);
	return s.substr(0, s.rfind('/')) + "/cowscope";
}

std::pair<std::string, int> run(const std::string &args, bool merge = false)
{
	return cowscope::testing::run_command(cli() + " " + args + (merge ? " 2>&1" : ""));
}

json run_json(const std::string &args)
{
	auto [out, rc] = run(args);
	EXPECT_EQ(rc, 0) << args << "\n" << out;
	return json::parse(out);
}

class CliOnFork : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (access("/proc/cowscope/track", F_OK) != 0)
			GTEST_SKIP() << "cowscope.ko not loaded";
		if (access(cli().c_str(), X_OK) != 0)
			GTEST_SKIP() << "no cowscope binary next to the test";
		buf = Mapping::anonymous(N * P);
		for (size_t i = 0; i < N; i++)
			buf.data()[i * P] = 1;
		ASSERT_EQ(pipe(to_child), 0);
		ASSERT_EQ(pipe(to_parent), 0);
		child = fork();
		ASSERT_GE(child, 0);
		if (child == 0) {
			close(to_child[1]);  // so that the parent's close is our EOF
			for (size_t i = 0; i < WRITTEN; i++)
				buf.data()[i * P] = 2;
			char c = 'w';
			if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) < 0)
				_exit(3);
			_exit(0);
		}
		close(to_child[0]);
		close(to_parent[1]);
		char c;
		ASSERT_EQ(read(to_parent[0], &c, 1), 1);
		lo = reinterpret_cast<std::uint64_t>(buf.data());
		hi = lo + N * P;
	}
	void TearDown() override
	{
		if (child > 0) {
			close(to_child[1]);
			close(to_parent[0]);
			int st;
			waitpid(child, &st, 0);
		}
	}
	std::string range() const { return fmt::format("--range {:#x}-{:#x}", lo, hi); }

	Mapping buf;
	int to_child[2] = {-1, -1}, to_parent[2] = {-1, -1};
	pid_t child = -1;
	std::uint64_t lo = 0, hi = 0;
};

} // namespace

TEST_F(CliOnFork, DiffCountsTheChildsCopies)
{
	json d = run_json(fmt::format("diff {} {} {} --json -", getpid(), child, range()));
	EXPECT_EQ(d["total"]["copied"], WRITTEN);
	EXPECT_EQ(d["total"]["shared"], N - WRITTEN);
	EXPECT_EQ(d["total"]["cow_pending"], N - WRITTEN);
	EXPECT_EQ(d["total"]["exclusive"], 0);
	EXPECT_EQ(d["total"]["copied_child_writable"], WRITTEN);
	EXPECT_EQ(d["total"]["copied_parent_writable"], 0);
	auto [text, rc] = run(fmt::format("diff {} {} {}", getpid(), child, range()));
	EXPECT_EQ(rc, 0);
	EXPECT_NE(text.find("total"), std::string::npos) << text;
}

TEST_F(CliOnFork, PtesAgreeWithProcPagemap)
{
	for (pid_t pid : {getpid(), child}) {
		json j = run_json(fmt::format("ptes {} {} --json -", pid, range()));
		ASSERT_EQ(j["ptes"].size(), N);
		Pagemap pm(pid);
		for (const json &p : j["ptes"]) {
			std::uint64_t va = p["vaddr"];
			EXPECT_EQ(p["pfn"].get<std::uint64_t>(), pm.at(va).pfn()) << std::hex << va;
			const bool written = va < lo + WRITTEN * P;
			const std::string flags = p["flags"];
			// The child's copies are writable; everything still shared is not.
			EXPECT_EQ(flags.find('W') != std::string::npos, written && pid == child)
				<< pid << " " << std::hex << va << " " << flags;
			EXPECT_EQ(p["mapcount"].get<unsigned>(), written ? 1u : 2u);
		}
	}
}

TEST_F(CliOnFork, MapsAndSummaryShowTheBuffer)
{
	json m = run_json(fmt::format("maps {} --json -", child));
	bool found = false;
	for (const json &v : m["maps"])
		if (v["start"].get<std::uint64_t>() <= lo && hi <= v["end"].get<std::uint64_t>()) {
			found = true;
			EXPECT_EQ(v["label"], "mmap-anon");
			EXPECT_GE(v["present"].get<std::uint64_t>(), N);
			EXPECT_GE(v["cow"].get<std::uint64_t>(), N - WRITTEN);
		}
	EXPECT_TRUE(found);
	json s = run_json(fmt::format("summary {} --json -", getpid()));
	EXPECT_GE(s["segments"]["total"]["present"].get<std::uint64_t>(), N);
	EXPECT_GE(s["segments"]["mmap-anon"]["cow"].get<std::uint64_t>(), N - WRITTEN);
	auto [text, rc] = run(fmt::format("watch {} {} -n 2 -i 0.01", getpid(), child));
	EXPECT_EQ(rc, 0);
	EXPECT_NE(text.find("cowscope watch"), std::string::npos) << text;
}

TEST_F(CliOnFork, GonePidsAreClearErrors)
{
	auto [out, rc] = run("maps 999999", true);
	EXPECT_EQ(rc, 1);
	EXPECT_NE(out.find("no process with pid 999999"), std::string::npos) << out;
	// A zombie: exited, not yet reaped.
	pid_t z = fork();
	if (z == 0)
		_exit(0);
	siginfo_t si;
	ASSERT_EQ(waitid(P_PID, static_cast<id_t>(z), &si, WEXITED | WNOWAIT), 0);
	std::tie(out, rc) = run(fmt::format("summary {}", z), true);
	EXPECT_EQ(rc, 1);
	EXPECT_NE(out.find("exited"), std::string::npos) << out;
	waitpid(z, nullptr, 0);
}
