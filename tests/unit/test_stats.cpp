// Statistics over repetitions.
#include <gtest/gtest.h>

#include <cmath>

#include "cowscope/base/stats.hpp"

using namespace cowscope;

TEST(Stats, OddEvenEmpty)
{
	Summary s = summarize({5, 1, 3});
	EXPECT_EQ(s.n, 3u);
	EXPECT_DOUBLE_EQ(s.median, 3);
	EXPECT_DOUBLE_EQ(s.min, 1);
	EXPECT_DOUBLE_EQ(s.max, 5);
	EXPECT_DOUBLE_EQ(s.mean, 3);
	s = summarize({4, 1, 3, 2});
	EXPECT_DOUBLE_EQ(s.median, 2.5);
	EXPECT_EQ(summarize({}).n, 0u);
	EXPECT_EQ(summarize({NAN, INFINITY}).n, 0u);
}

TEST(Stats, SkipsNotMeasured)
{
	Summary s = summarize({NAN, 10, 20, NAN});
	EXPECT_EQ(s.n, 2u);
	EXPECT_DOUBLE_EQ(s.median, 15);
}

TEST(Stats, Percentile)
{
	EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5}, 50), 3);
	EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5}, 0), 1);
	EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4, 5}, 100), 5);
	EXPECT_DOUBLE_EQ(percentile({0, 10}, 25), 2.5);
	EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

TEST(Stats, Json)
{
	auto j = to_json(summarize({1, 2, 3}));
	EXPECT_EQ(j["median"], 2.0);
	EXPECT_EQ(j["n"], 3);
	EXPECT_TRUE(to_json(summarize({}))["median"].is_null());
}
