// Sizes, ratios and the atomic writer of the core library.
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/meta.hpp"
#include "cowscope/base/units.hpp"

using namespace cowscope;

TEST(ParseSize, AcceptsSuffixes)
{
	EXPECT_EQ(parse_size("4096", "--heap"), 4096u);
	EXPECT_EQ(parse_size("64K", "--heap"), 64u << 10);
	EXPECT_EQ(parse_size("64k", "--heap"), 64u << 10);
	EXPECT_EQ(parse_size("64M", "--heap"), 64u << 20);
	EXPECT_EQ(parse_size("64MiB", "--heap"), 64u << 20);
	EXPECT_EQ(parse_size("64MB", "--heap"), 64u << 20);
	EXPECT_EQ(parse_size("1G", "--heap"), 1ull << 30);
	EXPECT_EQ(parse_size("1.5G", "--heap"), 3ull << 29);
	EXPECT_EQ(parse_size("2T", "--heap"), 2ull << 40);
	EXPECT_EQ(parse_size("0", "--heap"), 0u);
}

TEST(ParseSize, RejectsGarbageNamingTheArgument)
{
	for (const char *bad : {"banana", "", "-1", "+5M", " 64M", "64M ", "64Q", "0x10", "1e3",
				"M", "1..5M", "64MiBB", "nan", "inf", "3.3"}) {
		try {
			parse_size(bad, "--heap");
			ADD_FAILURE() << "accepted \"" << bad << "\"";
		} catch (const UsageError &e) {
			EXPECT_NE(std::string(e.what()).find("--heap"), std::string::npos) << e.what();
		}
	}
	EXPECT_THROW(
		{
			try {
				parse_size("banana", "--heap");
			} catch (const UsageError &e) {
				EXPECT_STREQ(e.what(), "--heap: expected SIZE like 64M (a number with an optional "
						       "K, M, G or T suffix), got \"banana\"");
				throw;
			}
		},
		UsageError);
	EXPECT_THROW(parse_size("99999999T", "--heap"), UsageError);
}

TEST(ParseRatio, Range)
{
	EXPECT_DOUBLE_EQ(parse_ratio("0", "--write-ratio"), 0.0);
	EXPECT_DOUBLE_EQ(parse_ratio("0.25", "--write-ratio"), 0.25);
	EXPECT_DOUBLE_EQ(parse_ratio("1", "--write-ratio"), 1.0);
	EXPECT_DOUBLE_EQ(parse_ratio(".5", "--write-ratio"), 0.5);
	for (const char *bad : {"1.01", "-0.1", "abc", "", "0.5x", "2"})
		EXPECT_THROW(parse_ratio(bad, "--write-ratio"), UsageError) << bad;
}

TEST(FormatSize, Units)
{
	EXPECT_EQ(format_size(512), "512 B");
	EXPECT_EQ(format_size(1536), "1.5 KiB");
	EXPECT_EQ(format_size(64ull << 20), "64 MiB");
	EXPECT_EQ(format_size(1ull << 30), "1 GiB");
}

TEST(WriteFileAtomic, ReplacesWholeFile)
{
	auto dir = std::filesystem::temp_directory_path() / ("cowscope-test-" + std::to_string(getpid()));
	std::filesystem::create_directories(dir);
	auto path = (dir / "out.json").string();
	write_file_atomic(path, "first");
	write_file_atomic(path, "second, longer");
	EXPECT_EQ(read_file(path), "second, longer");
	// No temporary files left behind.
	EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
	std::filesystem::remove_all(dir);
	EXPECT_THROW(write_file_atomic("/nonexistent-dir/x", "y"), SysError);
}

TEST(Meta, DescribesThisMachine)
{
	auto m = machine_metadata();
	EXPECT_EQ(m["page_size"].get<long>(), sysconf(_SC_PAGESIZE));
	EXPECT_GE(m["cores"].get<long>(), 1);
	EXPECT_FALSE(m["kernel"].get<std::string>().empty());
	EXPECT_GT(mem_available(), 0u);
	EXPECT_FALSE(thp_mode().empty());
}
