// Unit tests of the view reader's parsers (userspace/lib/src/view.cpp):
// the ptes and summary text views with folio sizes, /proc/cowscope/version
// and the refusal of a module of another interface version.
#include <gtest/gtest.h>

#include <string>

#include "cowscope/base/error.hpp"
#include "cowscope/view/view.hpp"

using namespace cowscope;

TEST(ViewParse, PtesWithFolioSizes)
{
	const auto v = view::parse_ptes("# vaddr pfn flags ref map folio\n"
					"0x7f0000000000 1a2b3 WDAUax 1 1 4K\n"
					"0x7f0000010000 40010 DAUa 2 2 64K\n"
					"0x7f0000200000 200000 DAUHa 513 ~1 2M\n");
	ASSERT_EQ(v.size(), 3u);
	EXPECT_EQ(v[0].vaddr, 0x7f0000000000u);
	EXPECT_EQ(v[0].pfn, 0x1a2b3u);
	EXPECT_EQ(v[0].folio_order, 0u);
	EXPECT_FALSE(v[0].map_average);
	EXPECT_EQ(v[1].folio_order, 4u);
	EXPECT_EQ(v[1].map, 2u);
	EXPECT_EQ(v[2].folio_order, 9u);
	EXPECT_TRUE(v[2].map_average);
	EXPECT_EQ(v[2].map, 1u);
}

TEST(ViewParse, PtesBadLinesRefused)
{
	// an ABI 1 line (no folio column), an unknown size, a stray column
	for (const char *bad : {"0x1000 1 W 1 1\n", "0x1000 1 W 1 1 3K\n",
				"0x1000 1 W 1 1 4K x\n", "0x1000 1 W 1 ~ 4K\n", "0x1000 1 W 1 1 4M\n"})
		EXPECT_THROW(view::parse_ptes(bad), Error) << bad;
}

TEST(ViewParse, FolioSizeNames)
{
	const char *names[] = {"4K", "8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M"};
	for (unsigned o = 0; o <= COWSCOPE_MAX_FOLIO_ORDER; o++) {
		EXPECT_EQ(view::folio_size_name(o), names[o]);
		EXPECT_EQ(view::parse_folio_size(names[o]), o);
	}
	EXPECT_THROW(view::parse_folio_size("64k"), Error);
	EXPECT_THROW(view::parse_folio_size(""), Error);
}

TEST(ViewParse, SummaryWithFolioColumns)
{
	const auto rows = view::parse_summary(
		"# label present writable cow shared exclusive huge 4K 8K 16K 32K 64K 128K 256K "
		"512K 1M 2M\n"
		"heap 1024 0 1024 1024 0 0 0 0 0 0 1024 0 0 0 0 0\n"
		"total 1600 10 1024 1100 5 1 64 0 0 0 1024 0 0 0 0 512\n");
	ASSERT_EQ(rows.size(), 2u);
	EXPECT_EQ(rows[0].label, "heap");
	EXPECT_EQ(rows[0].folio[4], 1024u);
	EXPECT_EQ(rows[1].folio[0], 64u);
	EXPECT_EQ(rows[1].folio[9], 512u);
	EXPECT_EQ(rows[1].huge, 1u);
	// the ABI 1 layout (no folio columns) and an extra column are refused
	EXPECT_THROW(view::parse_summary("heap 1 1 0 0 1 0\n"), Error);
	EXPECT_THROW(view::parse_summary("heap 1 1 0 0 1 0 1 0 0 0 0 0 0 0 0 0 7\n"), Error);
}

TEST(ViewParse, ModuleInfo)
{
	auto m = view::parse_module_info("abi 2\nversion 1.4.0\nmapcount per-page\n");
	EXPECT_EQ(m.abi, 2u);
	EXPECT_EQ(m.version, "1.4.0");
	EXPECT_FALSE(m.mapcount_average);
	m = view::parse_module_info("abi 2\nversion unknown\nmapcount folio-average\nfuture x\n");
	EXPECT_TRUE(m.mapcount_average);
	EXPECT_THROW(view::parse_module_info("version 1\n"), Error);
	EXPECT_THROW(view::parse_module_info("abi two\n"), Error);
	EXPECT_THROW(view::parse_module_info("abi 2\nmapcount sometimes\n"), Error);
}

TEST(ViewParse, OtherInterfaceVersionRefusedWithWhatToRebuild)
{
	view::ModuleInfo m;
	m.abi = COWSCOPE_ABI_VERSION;
	EXPECT_NO_THROW(view::check_module_abi(m));
	m.abi = 1;
	m.version = "0.9";
	try {
		view::check_module_abi(m);
		ADD_FAILURE() << "an older module was accepted";
	} catch (const Error &e) {
		const std::string w = e.what();
		EXPECT_NE(w.find("interface version 1"), std::string::npos) << w;
		EXPECT_NE(w.find("make kmod"), std::string::npos) << w;
		EXPECT_NE(w.find("insmod"), std::string::npos) << w;
	}
	m.abi = COWSCOPE_ABI_VERSION + 1;
	try {
		view::check_module_abi(m);
		ADD_FAILURE() << "a newer module was accepted";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("make userspace"), std::string::npos) << e.what();
	}
}
