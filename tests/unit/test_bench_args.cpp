// cowbench's options, validation, memory check, JSON/CSV and sweep lists:
// everything without forking.
#include <gtest/gtest.h>

#include <filesystem>

#include <fmt/format.h>

#include "cowscope/bench/bench.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/bench/sweep.hpp"

using namespace cowscope;

static std::string usage_message(std::map<std::string, std::string> opts)
{
	try {
		config_from_options(opts);
	} catch (const UsageError &e) {
		return e.what();
	}
	return "(accepted)";
}

TEST(BenchArgs, Defaults)
{
	BenchConfig c = config_from_options({});
	EXPECT_EQ(c.heap, 64ull << 20);
	EXPECT_EQ(c.writer, Writer::child);
	EXPECT_EQ(c.children, 1u);
	EXPECT_EQ(c.spawn, Spawn::fork);
	EXPECT_EQ(c.pte_state, PteState::writable);
}

TEST(BenchArgs, ParsesEveryOption)
{
	BenchConfig c = config_from_options({{"heap", "1.5G"}, {"write_ratio", "0.25"}, {"--writer", "both"},
					     {"pattern", "stride:8"}, {"read", "true"}, {"children", "4"},
					     {"thp", "always"}, {"spawn", "posix_spawn"}, {"repeat", "7"},
					     {"warmup", "0"}, {"pte-state", "readonly"}, {"timeout", "2.5"},
					     {"seed", "9"}, {"populate", "random"}, {"settle", "1.5"}});
	EXPECT_EQ(c.heap, 3ull << 29);
	EXPECT_DOUBLE_EQ(c.write_ratio, 0.25);
	EXPECT_EQ(c.writer, Writer::both);
	EXPECT_EQ(c.pattern.stride, 8u);
	EXPECT_TRUE(c.read);
	EXPECT_EQ(c.children, 4u);
	EXPECT_EQ(c.thp, Thp::always);
	EXPECT_EQ(c.spawn, Spawn::posix_spawn);
	EXPECT_EQ(c.repeat, 7u);
	EXPECT_EQ(c.warmup, 0u);
	EXPECT_EQ(c.pte_state, PteState::readonly);
	EXPECT_DOUBLE_EQ(c.timeout_s, 2.5);
	EXPECT_EQ(c.seed, 9u);
	EXPECT_TRUE(c.scattered);
	EXPECT_DOUBLE_EQ(c.settle_s, 1.5);
	EXPECT_DOUBLE_EQ(config_from_options({}).settle_s, 0);
	EXPECT_DOUBLE_EQ(config_from_options({{"settle", "0"}}).settle_s, 0);
	EXPECT_DOUBLE_EQ(config_from_options({{"settle", "0.0"}}).settle_s, 0);
	EXPECT_FALSE(config_from_options({}).scattered);
	EXPECT_FALSE(config_from_options({{"populate", "seq"}}).scattered);
	EXPECT_EQ(config_from_options({{"spawn", "fork-exec"}}).spawn, Spawn::fork_exec);
	EXPECT_EQ(config_from_options({{"spawn", "vfork"}}).spawn, Spawn::vfork);
	EXPECT_EQ(config_from_options({{"thp", "never"}}).thp, Thp::never);
	EXPECT_EQ(config_from_options({{"thp", "madvise"}}).thp, Thp::madvise);
}

TEST(BenchArgs, EveryBadInputNamesTheOptionAndForm)
{
	// option, value, the whole message
	const struct {
		const char *option, *value, *message;
	} exact[] = {
		{"heap", "banana",
		 "--heap: expected SIZE like 64M (a number with an optional K, M, G or T suffix), got \"banana\""},
		{"write-ratio", "1.5", "--write-ratio: expected a ratio from 0 to 1 like 0.25, got \"1.5\""},
		{"write-ratio", "-0.1", "--write-ratio: expected a ratio from 0 to 1 like 0.25, got \"-0.1\""},
		{"writer", "me", "--writer: expected child, parent or both, got \"me\""},
		{"pattern", "zigzag", "--pattern: expected seq, random or stride:N (N >= 1 pages), got \"zigzag\""},
		{"children", "0", "--children: expected a whole number from 1 to 1024, got \"0\""},
		{"children", "2x", "--children: expected a whole number from 1 to 1024, got \"2x\""},
		{"children", "-1", "--children: expected a whole number from 1 to 1024, got \"-1\""},
		{"thp", "sometimes", "--thp: expected never, madvise, always or system, got \"sometimes\""},
		{"spawn", "clone", "--spawn: expected fork, vfork, posix_spawn or fork-exec, got \"clone\""},
		{"repeat", "0", "--repeat: expected a whole number from 1 to 1000000, got \"0\""},
		{"pte-state", "dirty", "--pte-state: expected writable or readonly, got \"dirty\""},
		{"timeout", "0", "--timeout: expected SECONDS greater than 0, like 60 or 0.5, got \"0\""},
		{"read", "maybe", "--read: expected true or false, got \"maybe\""},
		{"populate", "spiral", "--populate: expected seq or random, got \"spiral\""},
	};
	for (const auto &c : exact)
		EXPECT_EQ(usage_message({{c.option, c.value}}), c.message) << c.option << " " << c.value;
	// option, value, how the message starts
	const struct {
		const char *option, *value, *start;
	} starts[] = {
		{"heap", "-1M", "--heap: expected SIZE"},
		{"settle", "soon", "--settle: expected SECONDS"},
		{"settle", "-1", "--settle: expected SECONDS from 0"},
		{"colour", "red", "unknown option \"colour\""},
	};
	for (const auto &c : starts)
		EXPECT_EQ(usage_message({{c.option, c.value}}).rfind(c.start, 0), 0u)
			<< c.option << " " << c.value << ": " << usage_message({{c.option, c.value}});
	EXPECT_NE(usage_message({{"heap", "100T"}}).find("pages cowbench supports"), std::string::npos);
}

TEST(BenchArgs, RefusesHeapsThatDoNotFit)
{
	BenchConfig c = config_from_options({{"heap", "1G"}, {"write-ratio", "0.5"}, {"children", "2"}});
	// heap + 2 children x 512M + 512M eager buffer
	EXPECT_EQ(bench_memory_needed(c), 5ull << 29);
	EXPECT_NO_THROW(check_memory_fits(c, 5ull << 29));
	try {
		check_memory_fits(c, 2ull << 30);
		FAIL();
	} catch (const UsageError &e) {
		EXPECT_EQ(std::string(e.what()),
			  "--heap: 1 GiB heap plus 1 GiB of copy-on-write copies (write ratio 0.5 x 2 writing "
			  "processes) and a 512 MiB eager-copy buffer needs 2.5 GiB, but only 2 GiB is available "
			  "(MemAvailable); lower --heap, --write-ratio or --children");
	}
	// Refused by run_bench before anything is allocated.
	BenchConfig huge = config_from_options({{"heap", "1T"}, {"write-ratio", "1"}});
	EXPECT_THROW(run_bench(huge), UsageError);
}

TEST(BenchJson, RoundTripsThroughTheParser)
{
	BenchResult r;
	r.config = config_from_options({{"heap", "32M"}, {"write-ratio", "0.5"}, {"thp", "never"}});
	r.pte_state = "writable";
	r.machine = {{"kernel", "6.1.0"}};
	r.setup.pages = 8192;
	r.setup.pages_written = 4096;
	for (unsigned i = 0; i < 3; i++) {
		Repetition rep;
		rep.index = i;
		rep.fork_us = 100 + i;
		rep.cow_faults = 4096;
		rep.child_write_us = 1000.5 * (i + 1);
		r.repetitions.push_back(rep);
	}
	Repetition bad;
	bad.index = 3;
	bad.status = "timeout: child 1 did not start";
	bad.fork_us = 1e9;
	r.repetitions.push_back(bad);
	r.timeouts = 1;
	auto j = nlohmann::json::parse(to_json(r).dump());
	EXPECT_EQ(j["tool"], "cowbench");
	EXPECT_EQ(j["status"], "timeouts");
	EXPECT_EQ(j["pte_state"], "writable");
	EXPECT_EQ(j["params"]["heap_bytes"], 32u << 20);
	EXPECT_EQ(j["params"]["write_ratio"], 0.5);
	EXPECT_EQ(j["params"]["thp"], "never");
	EXPECT_EQ(j["params"]["pattern"], "seq");
	EXPECT_EQ(j["machine"]["kernel"], "6.1.0");
	ASSERT_EQ(j["repetitions"].size(), 4u);
	for (const auto &k : repetition_keys())
		EXPECT_TRUE(j["repetitions"][0].contains(k)) << k;
	EXPECT_EQ(j["repetitions"][1]["fork_us"], 101);
	EXPECT_EQ(j["repetitions"][1]["child_write_us"], 2001);
	EXPECT_TRUE(j["repetitions"][0]["eager_copy_us"].is_null());
	// The summary only counts repetitions that finished.
	EXPECT_EQ(j["summary"]["fork_us"]["median"], 101);
	EXPECT_EQ(j["summary"]["fork_us"]["min"], 100);
	EXPECT_EQ(j["summary"]["fork_us"]["max"], 102);
	EXPECT_EQ(j["summary"]["cow_faults"]["n"], 3);
	EXPECT_FALSE(j["summary"].contains("eager_copy_us"));

	std::string csv = to_csv(r);
	EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
	EXPECT_NE(csv.find("fork_us,child_start_us"), std::string::npos);
	EXPECT_NE(to_table(r).find("fork_us"), std::string::npos);
}

TEST(Sweep, ExpandsTheProduct)
{
	auto pts = expand_sweep({{"heap", "32M,64M"}, {"write-ratio", "0,0.1,0.5"}, {"writer", "child,parent"},
				 {"repeat", "2"}});
	ASSERT_EQ(pts.size(), 12u);
	EXPECT_EQ(pts[0].heap, 32u << 20);
	EXPECT_EQ(pts[0].write_ratio, 0);
	EXPECT_EQ(pts[1].writer, Writer::parent);
	EXPECT_EQ(pts[11].heap, 64u << 20);
	EXPECT_EQ(pts[11].repeat, 2u);
	std::set<std::string> keys;
	for (const auto &p : pts)
		keys.insert(point_key(p));
	EXPECT_EQ(keys.size(), 12u);
	try {
		expand_sweep({{"heap", "32M,banana"}});
		FAIL();
	} catch (const UsageError &e) {
		EXPECT_EQ(std::string(e.what()).rfind("--heap: expected SIZE", 0), 0u);
	}
	EXPECT_THROW(expand_sweep({{"repeat", "1,2"}}), UsageError);
}

// tests/fuzz/corpus/bench_options/regress-sweep-1e6: three lists of 100
// values, a kilobyte, made a million points (over 2 minutes and 700 MB in
// the fuzz target before it was stopped). A sweep is now bounded.
TEST(Sweep, BoundedNumberOfPoints)
{
	auto list = [](const char *fmt_, int n) {
		std::string s;
		for (int i = 1; i <= n; i++)
			s += (i > 1 ? "," : "") + fmt::format(fmt::runtime(fmt_), i);
		return s;
	};
	EXPECT_EQ(expand_sweep({{"heap", list("{}M", 100)}, {"children", list("{}", 100)}}).size(), kMaxSweepPoints);
	try {
		expand_sweep({{"heap", list("{}M", 100)}, {"children", list("{}", 100)}, {"write-ratio", "0,1"}});
		FAIL();
	} catch (const UsageError &e) {
		EXPECT_STREQ(e.what(), "--heap, --write-ratio, --children: 100 x 2 x 100 values make more than the "
				       "10000 points one sweep may have; split it into several sweeps");
	}
}
