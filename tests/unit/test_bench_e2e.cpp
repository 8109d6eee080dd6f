// cowbench end to end on small heaps: COW fault counts against the pages
// written, timeouts, exec spawn modes, interrupts, sweep resume, and no
// child left behind after any of them.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cowscope/bench/bench.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/bench/sweep.hpp"

using namespace cowscope;

namespace {

BenchConfig small(std::map<std::string, std::string> extra = {})
{
	std::map<std::string, std::string> o = {{"heap", "32M"}, {"write-ratio", "0.5"}, {"thp", "never"},
						 {"repeat", "3"}};
	for (auto &[k, v] : extra)
		o[k] = v;
	BenchConfig c = config_from_options(o);
	c.exec_path = "/bin/true"; // /proc/self/exe is this test program
	c.exec_args.clear();
	return c;
}

void expect_no_children()
{
	int st;
	errno = 0;
	EXPECT_EQ(::waitpid(-1, &st, WNOHANG), -1) << "a child was left behind";
	EXPECT_EQ(errno, ECHILD);
}

void expect_near(double v, double want, double tol, const char *what)
{
	EXPECT_TRUE(std::isfinite(v)) << what;
	EXPECT_LE(std::fabs(v - want), want * tol) << what << " = " << v << ", want " << want;
}

} // namespace

TEST(BenchE2E, ChildWriterFaultsOncePerWrittenPage)
{
	BenchResult r = run_bench(small());
	ASSERT_EQ(r.repetitions.size(), 3u);
	EXPECT_EQ(r.setup.pages_written, 4096u);
	EXPECT_EQ(r.pte_state, "writable");
	for (const auto &rep : r.repetitions) {
		EXPECT_EQ(rep.status, "ok");
		expect_near(rep.cow_faults, 4096, 0.02, "cow_faults");
		expect_near(rep.cow_private_dirty_kb, 16384, 0.02, "cow_private_dirty_kb");
		EXPECT_GT(rep.fork_us, 0);
		EXPECT_GT(rep.child_start_us, 0);
		EXPECT_GT(rep.child_write_us, 0);
		EXPECT_GT(rep.eager_copy_us, 0);
		EXPECT_GT(rep.ns_per_cow_fault, 0);
		EXPECT_GT(rep.cow_eager_ratio, 0);
		EXPECT_TRUE(std::isnan(rep.parent_cow_faults));
	}
	auto j = nlohmann::json::parse(to_json(r).dump());
	EXPECT_EQ(j["summary"]["cow_faults"]["n"], 3);
	EXPECT_EQ(j["machine"]["page_size"], ::sysconf(_SC_PAGESIZE));
	expect_no_children();
}

TEST(BenchE2E, ParentWriterFaultsLikewise)
{
	BenchResult r = run_bench(small({{"writer", "parent"}}));
	for (const auto &rep : r.repetitions) {
		EXPECT_EQ(rep.status, "ok");
		expect_near(rep.cow_faults, 4096, 0.02, "cow_faults");
		expect_near(rep.parent_cow_faults, 4096, 0.02, "parent_cow_faults");
		expect_near(rep.cow_private_dirty_kb, 16384, 0.05, "cow_private_dirty_kb");
	}
	expect_no_children();
}

TEST(BenchE2E, BothWritersAndSeveralChildren)
{
	BenchResult r = run_bench(small({{"writer", "both"}, {"repeat", "1"}, {"read", "1"}}));
	ASSERT_EQ(r.repetitions.size(), 1u);
	expect_near(r.repetitions[0].cow_faults, 8192, 0.02, "cow_faults (both)");
	expect_near(r.repetitions[0].parent_cow_faults, 4096, 0.02, "parent_cow_faults (both)");
	EXPECT_TRUE(std::isfinite(r.repetitions[0].child_read_us));
	r = run_bench(small({{"children", "2"}, {"pattern", "random"}, {"repeat", "1"}}));
	expect_near(r.repetitions[0].cow_faults, 8192, 0.02, "cow_faults (2 children)");
	EXPECT_EQ(r.repetitions[0].fork_us_children.size(), 2u);
	expect_no_children();
}

TEST(BenchE2E, ReadOnlyPteState)
{
	BenchResult r = run_bench(small({{"pte-state", "readonly"}, {"repeat", "1"}, {"write-ratio", "0"}}));
	EXPECT_EQ(r.pte_state, "readonly");
	EXPECT_EQ(r.repetitions.at(0).status, "ok");
	expect_no_children();
}

TEST(BenchE2E, HungChildIsKilledAndReaped)
{
	BenchConfig c = small({{"repeat", "2"}, {"warmup", "0"}, {"timeout", "0.3"}});
	c.debug_child_hang = true;
	BenchResult r = run_bench(c);
	EXPECT_EQ(r.timeouts, 2u);
	ASSERT_EQ(r.repetitions.size(), 2u);
	EXPECT_EQ(r.repetitions[0].status.rfind("timeout", 0), 0u) << r.repetitions[0].status;
	EXPECT_EQ(to_json(r)["status"], "timeouts");
	expect_no_children();
}

TEST(BenchE2E, ExecSpawnModes)
{
	for (const char *s : {"fork-exec", "vfork", "posix_spawn"}) {
		BenchResult r = run_bench(small({{"spawn", s}, {"heap", "4M"}}));
		ASSERT_EQ(r.repetitions.size(), 3u);
		for (const auto &rep : r.repetitions) {
			EXPECT_EQ(rep.status, "ok") << s;
			EXPECT_GT(rep.exec_total_us, 0) << s;
			EXPECT_GE(rep.exec_total_us, rep.fork_us) << s;
			EXPECT_TRUE(std::isnan(rep.cow_faults)) << s;
		}
	}
	BenchConfig bad = small({{"spawn", "fork-exec"}, {"heap", "1M"}, {"repeat", "1"}});
	bad.exec_path = "/nonexistent/program";
	BenchResult r = run_bench(bad);
	EXPECT_EQ(r.repetitions.at(0).status.rfind("error:", 0), 0u);
	expect_no_children();
}

TEST(BenchE2E, StopRequestKeepsFinishedRepetitions)
{
	unsigned seen = 0;
	BenchResult r = run_bench(small({{"repeat", "5"}, {"heap", "4M"}}), [&](unsigned d, unsigned) {
		seen = d;
		if (d == 2)
			request_stop();
	});
	clear_stop();
	EXPECT_TRUE(r.interrupted);
	EXPECT_EQ(r.repetitions.size(), 2u);
	EXPECT_EQ(seen, 2u);
	EXPECT_EQ(to_json(r)["status"], "interrupted");
	expect_no_children();
}

TEST(BenchE2E, SweepAppendsAndResumes)
{
	namespace fs = std::filesystem;
	fs::path dir = fs::temp_directory_path() / ("cowbench-sweep-" + std::to_string(::getpid()));
	fs::create_directories(dir);
	std::string out = (dir / "sweep.jsonl").string();
	auto pts = expand_sweep({{"heap", "1M,2M"}, {"write-ratio", "0,0.5"}, {"repeat", "1"}, {"thp", "never"}});
	ASSERT_EQ(pts.size(), 4u);
	SweepOutcome o = run_sweep(pts, out);
	EXPECT_EQ(o.ran, 4u);
	auto lines = [&] {
		std::ifstream in(out);
		std::vector<std::string> v;
		for (std::string l; std::getline(in, l);)
			v.push_back(l);
		return v;
	};
	auto l = lines();
	ASSERT_EQ(l.size(), 4u);
	auto j = nlohmann::json::parse(l[3]);
	EXPECT_EQ(j["tool"], "cowbench");
	EXPECT_EQ(j["params"]["heap_bytes"], 2u << 20);
	EXPECT_EQ(j["params"]["write_ratio"], 0.5);
	// A rerun skips everything; a truncated file resumes where it stopped.
	o = run_sweep(pts, out);
	EXPECT_EQ(o.ran, 0u);
	EXPECT_EQ(o.skipped, 4u);
	write_file_atomic(out, l[0] + "\n" + l[1] + "\n");
	o = run_sweep(pts, out);
	EXPECT_EQ(o.ran, 2u);
	EXPECT_EQ(o.skipped, 2u);
	EXPECT_EQ(lines().size(), 4u);
	fs::remove_all(dir);
	expect_no_children();
}

TEST(BenchE2E, HugePagesAreMeasuredNotAssumed)
{
	BenchResult r = run_bench(small({{"thp", "always"}, {"repeat", "1"}}));
	const auto &rep = r.repetitions.at(0);
	EXPECT_EQ(rep.status, "ok");
	// Whether the kernel copies 2 MiB at once or splits and copies 4 KiB
	// pages, the written data must end up private in the child.
	EXPECT_GE(rep.cow_private_dirty_kb, 16384 * 0.98);
	EXPECT_GT(rep.cow_faults, 0);
	std::cout << "thp: " << r.setup.anon_huge_kb << " kB huge, " << rep.cow_faults << " COW faults, "
		  << rep.cow_private_dirty_kb << " kB private dirty\n";
	expect_no_children();
}
