// The command line's one set of rules (cowscope/cli.hpp), kind by kind:
// every accepted input with its value, every rejected one with the message.
// And run_main()'s exit statuses.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/units.hpp"

using namespace cowscope;

namespace {

// Inputs every kind rejects: blanks, signs, hex, exponents, words, empty.
const std::vector<std::string> kRejectedByAll = {
	"", " ", " 1", "1 ", "\t1", "1\n", "+5", "-1", "+0", "0x10", "1e-3", "1e3", "1E3", "nan", "inf",
	"banana", "1,5", "1_000", "..", ".", "1.2.3",
};

template <class F> std::string message_of(F &&f)
{
	try {
		f();
	} catch (const UsageError &e) {
		return e.what();
	}
	return "(nothing thrown)";
}

// kRejectedByAll and the inputs one kind rejects too.
std::vector<std::string> rejected(std::initializer_list<const char *> more)
{
	std::vector<std::string> bad = kRejectedByAll;
	bad.insert(bad.end(), more.begin(), more.end());
	return bad;
}

std::string expected(const std::string &what, const std::string &form, const std::string &text)
{
	return what + ": expected " + form + ", got \"" + text + "\"";
}

} // namespace

TEST(CliCount, Accepted)
{
	struct {
		const char *in;
		std::uint64_t out;
	} ok[] = {{"0", 0}, {"1", 1}, {"007", 7}, {"1024", 1024}, {"18446744073709551615", UINT64_MAX}};
	for (const auto &c : ok)
		EXPECT_EQ(cli::parse_count(c.in, "--n", 0, UINT64_MAX), c.out) << c.in;
}

TEST(CliCount, RejectedWithTheMessage)
{
	for (const auto &s : rejected({"1.5", "1.", ".5", "1K", "2x", "18446744073709551616"}))
		EXPECT_EQ(message_of([&] { cli::parse_count(s, "--n", 0, UINT64_MAX); }),
			  expected("--n", "a whole number from 0 to 18446744073709551615", s))
			<< "input \"" << s << "\"";
	// out of range
	for (const char *s : {"0", "11"})
		EXPECT_EQ(message_of([&] { cli::parse_count(s, "--children", 1, 10); }),
			  expected("--children", "a whole number from 1 to 10", s));
	// a stated form replaces the default one
	EXPECT_EQ(message_of([&] { cli::parse_count("x", "--rate", 0, 9, "updates per second"); }),
		  expected("--rate", "updates per second", "x"));
}

TEST(CliReal, AcceptedAndRejected)
{
	struct {
		const char *in;
		double out;
	} ok[] = {{"0", 0}, {"1", 1}, {"0.5", 0.5}, {".5", 0.5}, {"1.", 1}, {"10.25", 10.25}, {"007.5", 7.5}};
	for (const auto &c : ok)
		EXPECT_DOUBLE_EQ(cli::parse_real(c.in, "--x", 0, 100), c.out) << c.in;
	for (const auto &s : rejected({"0.5x", "1K", "101", "100.01"}))
		EXPECT_EQ(message_of([&] { cli::parse_real(s, "--x", 0, 100); }),
			  expected("--x", "a number from 0 to 100", s))
			<< "input \"" << s << "\"";
	EXPECT_EQ(message_of([&] { cli::parse_real("0", "--x", 0, 100, true); }),
		  expected("--x", "a number greater than 0 and at most 100", "0"));
}

TEST(CliSeconds, AcceptedAndRejected)
{
	EXPECT_DOUBLE_EQ(cli::parse_seconds("60", "--timeout"), 60);
	EXPECT_DOUBLE_EQ(cli::parse_seconds("0.001", "--timeout"), 0.001);
	EXPECT_DOUBLE_EQ(cli::parse_seconds("86400", "--timeout"), 86400);
	for (const auto &s : rejected({"0", "0.0", "86400.5", "1s", "5m"}))
		EXPECT_EQ(message_of([&] { cli::parse_seconds(s, "--timeout"); }),
			  expected("--timeout", "SECONDS greater than 0, like 60 or 0.5", s))
			<< "input \"" << s << "\"";
	EXPECT_THROW(cli::parse_seconds("11", "-i", 10), UsageError);
}

TEST(CliSize, Accepted)
{
	struct {
		const char *in;
		std::uint64_t out;
	} ok[] = {
		{"0", 0},	      {"4096", 4096},		 {"1K", 1024},		  {"1k", 1024},
		{"64M", 64u << 20},   {"64m", 64u << 20},	 {"64MB", 64u << 20},	  {"64MiB", 64u << 20},
		{"64mib", 64u << 20}, {"64Mb", 64u << 20},	 {"1.5K", 1536},	  {"1.5G", 3ull << 29},
		{".5K", 512},	      {"2T", 2ull << 40},	 {"1G", 1ull << 30},	  {"16383T", 16383ull << 40},
	};
	for (const auto &c : ok) {
		EXPECT_EQ(cli::parse_size(c.in, "--heap"), c.out) << c.in;
		EXPECT_EQ(parse_size(c.in, "--heap"), c.out) << c.in << " (units.hpp)";
	}
}

TEST(CliSize, Rejected)
{
	const std::string form = "SIZE like 64M (a number with an optional K, M, G or T suffix)";
	for (const auto &s : rejected({"M", "K", "64Q", "64MiBB", "64 M", "64M ", "iB", "1iB", "1B", "1..5M",
					   "-1K", "+5M", "0x10K", "1e3K"})) {
		EXPECT_EQ(message_of([&] { cli::parse_size(s, "--heap"); }), expected("--heap", form, s))
			<< "input \"" << s << "\"";
		EXPECT_EQ(message_of([&] { parse_size(s, "--heap"); }), expected("--heap", form, s))
			<< "input \"" << s << "\" (units.hpp)";
	}
	EXPECT_EQ(message_of([&] { cli::parse_size("3.3", "--heap"); }),
		  expected("--heap", "a whole number of bytes", "3.3"));
	EXPECT_EQ(message_of([&] { cli::parse_size("99999999T", "--heap"); }),
		  expected("--heap", "SIZE below 16 EiB", "99999999T"));
}

// Found by tests/fuzz/fuzz_cli (its input: tests/fuzz/corpus/cli/
// regress-size-past-2e53): a SIZE was read through a double, so a number
// past 2^53 came back rounded ("00140800000360080002" as ...080000), the
// largest 64-bit one was refused, and a fraction that a double rounds away
// was taken as whole bytes. Now exact.
TEST(CliSize, ExactPastDoublePrecision)
{
	struct {
		const char *in;
		std::uint64_t out;
	} ok[] = {
		{"00140800000360080002", 140800000360080002ull},
		{"18446744073709551615", UINT64_MAX},
		{"9007199254740993", 9007199254740993ull},
		{"0.0009765625K", 1},
		{"16777215.9999999999990905052982270717620849609375T", UINT64_MAX},
	};
	for (const auto &c : ok) {
		EXPECT_EQ(cli::parse_size(c.in, "--heap"), c.out) << c.in;
		EXPECT_EQ(parse_size(c.in, "--heap"), c.out) << c.in << " (units.hpp)";
	}
	for (const char *s : {"1.0000000000000001K", "8796093022208.1K", "0.00048828125K"})
		EXPECT_EQ(message_of([&] { cli::parse_size(s, "--heap"); }), expected("--heap", "a whole number of bytes", s))
			<< s;
	for (const char *s : {"18446744073709551616", "16777216T", "000000000000000000000000018446744073709551616"})
		EXPECT_EQ(message_of([&] { cli::parse_size(s, "--heap"); }), expected("--heap", "SIZE below 16 EiB", s))
			<< s;
}

TEST(CliRatio, AcceptedAndRejected)
{
	struct {
		const char *in;
		double out;
	} ok[] = {{"0", 0}, {"0.25", 0.25}, {".5", 0.5}, {"1", 1}, {"1.0", 1}};
	for (const auto &c : ok) {
		EXPECT_DOUBLE_EQ(cli::parse_ratio(c.in, "--write-ratio"), c.out) << c.in;
		EXPECT_DOUBLE_EQ(parse_ratio(c.in, "--write-ratio"), c.out) << c.in << " (units.hpp)";
	}
	for (const auto &s : rejected({"1.01", "2", "0.5x", "-0.1"})) {
		EXPECT_EQ(message_of([&] { cli::parse_ratio(s, "--write-ratio"); }),
			  expected("--write-ratio", "a ratio from 0 to 1 like 0.25", s))
			<< "input \"" << s << "\"";
		EXPECT_EQ(message_of([&] { parse_ratio(s, "--write-ratio"); }),
			  expected("--write-ratio", "a ratio from 0 to 1 like 0.25", s))
			<< "input \"" << s << "\" (units.hpp)";
	}
}

TEST(CliPid, AcceptedAndRejected)
{
	EXPECT_EQ(cli::parse_pid("1", "PID"), 1);
	EXPECT_EQ(cli::parse_pid("4194304", "PID"), 4194304);
	EXPECT_EQ(cli::parse_pid("2147483647", "PID"), INT32_MAX);
	for (const auto &s : rejected({"0", "00", "2147483648", "1.0", "12abc"}))
		EXPECT_EQ(message_of([&] { cli::parse_pid(s, "-p"); }),
			  expected("-p", "a process id (a positive integer)", s))
			<< "input \"" << s << "\"";
}

TEST(CliRange, AcceptedAndRejected)
{
	using R = std::pair<std::uint64_t, std::uint64_t>;
	EXPECT_EQ(cli::parse_range("", "--range"), R(0, 0));
	EXPECT_EQ(cli::parse_range("0x7f0000-0x7f8000", "--range"), R(0x7f0000, 0x7f8000));
	EXPECT_EQ(cli::parse_range("10-0XfF", "--range"), R(0x10, 0xff));
	EXPECT_EQ(cli::parse_range("0-ffffffffffffffff", "--range"), R(0, UINT64_MAX));
	for (const char *s : {"5-5", "6-5", "0x-1", "1-", "-1", "1", "1--2", " 1-2", "1-2 ", "+1-2", "1-0x1ffffffffffffffff",
			      "g-h", "1-2-3"})
		EXPECT_EQ(message_of([&] { cli::parse_range(s, "--range"); }),
			  expected("--range", "START-END in hex with START < END, like 0x7f0000-0x7f8000", s))
			<< "input \"" << s << "\"";
}

// ---- run_main ------------------------------------------------------------

namespace {

struct Ran {
	int rc;
	std::string out, err;
};

Ran run(const std::vector<std::string> &args, const std::function<int()> &body = [] { return 0; },
	std::string_view hint = {})
{
	CLI::App app{"test program"};
	app.set_version_flag("--version", "prog 1.2.3");
	std::string opt;
	app.add_option("--opt", opt, "an option");
	std::vector<std::string> rev(args.rbegin(), args.rend());
	app.name("prog");
	::testing::internal::CaptureStdout();
	::testing::internal::CaptureStderr();
	int rc = cli::run_main("prog", app, [&] {
		app.parse(rev);
		return body();
	}, hint);
	Ran r{rc, ::testing::internal::GetCapturedStdout(), ::testing::internal::GetCapturedStderr()};
	return r;
}

} // namespace

TEST(CliRunMain, ExitStatuses)
{
	auto r = run({"--help"});
	EXPECT_EQ(r.rc, 0);
	EXPECT_NE(r.out.find("test program"), std::string::npos) << r.out;
	EXPECT_NE(r.out.find("--opt"), std::string::npos) << r.out;

	r = run({"--version"});
	EXPECT_EQ(r.rc, 0);
	EXPECT_NE(r.out.find("prog 1.2.3"), std::string::npos) << r.out;

	r = run({"--bogus"}, [] { return 0; }, "usage: prog [--opt X]");
	EXPECT_EQ(r.rc, 2);
	EXPECT_EQ(r.err.rfind("prog: ", 0), 0u) << r.err;
	EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find("\nusage: prog [--opt X]\n"), std::string::npos) << r.err;

	r = run({}, [] { return cli::parse_size("banana", "--heap"), 0; });
	EXPECT_EQ(r.rc, 2);
	EXPECT_EQ(r.err, "prog: --heap: expected SIZE like 64M (a number with an optional K, M, G or T "
			 "suffix), got \"banana\"\n");

	r = run({}, []() -> int { throw cli::Interrupted(); });
	EXPECT_EQ(r.rc, 130);
	EXPECT_EQ(r.err, "");
	r = run({}, []() -> int { throw cli::Interrupted("interrupted; 3 repetitions written"); });
	EXPECT_EQ(r.rc, 130);
	EXPECT_EQ(r.err, "prog: interrupted; 3 repetitions written\n");

	r = run({}, []() -> int { throw SysError("open /x", ENOENT); });
	EXPECT_EQ(r.rc, 1);
	EXPECT_EQ(r.err, "prog: open /x: No such file or directory\n");
	r = run({}, []() -> int { throw std::runtime_error("boom"); });
	EXPECT_EQ(r.rc, 1);
	EXPECT_EQ(r.err, "prog: boom\n");

	r = run({}, [] { return 130; });
	EXPECT_EQ(r.rc, 130);
	r = run({"--opt", "x"}, [] { return 0; });
	EXPECT_EQ(r.rc, 0);
	EXPECT_EQ(r.out + r.err, "");
}
