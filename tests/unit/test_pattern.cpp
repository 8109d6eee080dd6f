// The page-order generators: exact counts of distinct pages, every pattern.
#include <gtest/gtest.h>

#include <set>

#include "cowscope/base/error.hpp"
#include "cowscope/bench/pattern.hpp"

using namespace cowscope;

TEST(Pattern, Parses)
{
	EXPECT_EQ(parse_pattern("seq").kind, PatternKind::seq);
	EXPECT_EQ(parse_pattern("random").kind, PatternKind::random);
	Pattern s = parse_pattern("stride:16");
	EXPECT_EQ(s.kind, PatternKind::stride);
	EXPECT_EQ(s.stride, 16u);
	EXPECT_EQ(to_string(s), "stride:16");
	EXPECT_EQ(to_string(parse_pattern("seq")), "seq");
}

TEST(Pattern, RejectsBadInputNamingTheOption)
{
	for (const char *bad : {"", "seqq", "stride", "stride:", "stride:0", "stride:-1", "stride:x",
				"stride:4x", "stride: 4", "Random", "stride:99999999999999999999999"}) {
		try {
			parse_pattern(bad);
			ADD_FAILURE() << "accepted " << bad;
		} catch (const UsageError &e) {
			EXPECT_EQ(std::string(e.what()),
				  std::string("--pattern: expected seq, random or stride:N (N >= 1 pages), got \"") +
					  bad + "\"");
		}
	}
}

TEST(Pattern, ExactDistinctCountForEveryPatternAndRatio)
{
	for (std::uint64_t pages : {0ull, 1ull, 7ull, 100ull, 8192ull})
		for (const char *pat : {"seq", "random", "stride:1", "stride:2", "stride:3", "stride:16",
					"stride:512", "stride:100000"})
			for (double r : {0.0, 0.001, 0.1, 0.25, 0.333, 0.5, 0.9, 0.999, 1.0}) {
				auto v = pattern_pages(parse_pattern(pat), pages, r, 42);
				std::set<std::uint32_t> s(v.begin(), v.end());
				std::uint64_t want = pages_for_ratio(pages, r);
				EXPECT_EQ(v.size(), want) << pat << " " << pages << " " << r;
				EXPECT_EQ(s.size(), want) << pat << " " << pages << " " << r;
				if (!s.empty()) {
					EXPECT_LT(*s.rbegin(), pages);
				}
				auto c = complement_pages(v, pages);
				EXPECT_EQ(c.size() + v.size(), pages);
				for (auto x : c)
					EXPECT_EQ(s.count(x), 0u);
			}
}

TEST(Pattern, Orders)
{
	auto seq = pattern_pages(parse_pattern("seq"), 10, 0.3);
	EXPECT_EQ(seq, (std::vector<std::uint32_t>{0, 1, 2}));
	auto st = pattern_pages(parse_pattern("stride:4"), 10, 0.5);
	EXPECT_EQ(st, (std::vector<std::uint32_t>{0, 4, 8, 1, 5}));
	auto a = pattern_pages(parse_pattern("random"), 1000, 0.5, 7);
	auto b = pattern_pages(parse_pattern("random"), 1000, 0.5, 7);
	auto c = pattern_pages(parse_pattern("random"), 1000, 0.5, 8);
	EXPECT_EQ(a, b);
	EXPECT_NE(a, c);
	EXPECT_NE(a, pattern_pages(parse_pattern("seq"), 1000, 0.5));
	EXPECT_EQ(pages_for_ratio(8192, 0.5), 4096u);
	EXPECT_EQ(pages_for_ratio(3, 0.5), 2u); // rounds half up
}
