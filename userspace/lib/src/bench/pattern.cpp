#include "cowscope/bench/pattern.hpp"

#include <cmath>
#include <fmt/format.h>
#include <numeric>
#include <random>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"

namespace cowscope {

Pattern parse_pattern(std::string_view text, std::string_view what)
{
	auto bad = [&]() -> Pattern {
		throw UsageError(fmt::format("{}: expected seq, random or stride:N (N >= 1 pages), got \"{}\"",
					     what, text));
	};
	if (text == "seq" || text == "sequential")
		return {PatternKind::seq, 1};
	if (text == "random" || text == "rand")
		return {PatternKind::random, 1};
	if (text.starts_with("stride:")) {
		try {
			return {PatternKind::stride, cli::parse_count(text.substr(7), what, 1, UINT64_MAX)};
		} catch (const UsageError &) {
			return bad();	// the message names the whole value
		}
	}
	return bad();
}

std::string to_string(const Pattern &p)
{
	switch (p.kind) {
	case PatternKind::seq: return "seq";
	case PatternKind::random: return "random";
	case PatternKind::stride: return fmt::format("stride:{}", p.stride);
	}
	return "?";
}

std::uint64_t pages_for_ratio(std::uint64_t pages, double ratio)
{
	if (ratio <= 0)
		return 0;
	if (ratio >= 1)
		return pages;
	auto k = static_cast<std::uint64_t>(std::llround(ratio * static_cast<double>(pages)));
	return k > pages ? pages : k;
}

std::vector<std::uint32_t> pattern_pages(const Pattern &p, std::uint64_t pages, double ratio,
					 std::uint64_t seed)
{
	if (pages > UINT32_MAX)
		throw UsageError(fmt::format("--heap: at most {} pages are supported", UINT32_MAX));
	std::uint64_t k = pages_for_ratio(pages, ratio);
	std::vector<std::uint32_t> out;
	out.reserve(k);
	switch (p.kind) {
	case PatternKind::seq:
		for (std::uint64_t i = 0; i < k; i++)
			out.push_back(static_cast<std::uint32_t>(i));
		break;
	case PatternKind::random: {
		// Partial Fisher-Yates: the first k of a random permutation.
		std::vector<std::uint32_t> all(pages);
		std::iota(all.begin(), all.end(), 0u);
		std::mt19937_64 rng(seed);
		for (std::uint64_t i = 0; i < k; i++) {
			std::uniform_int_distribution<std::uint64_t> d(i, pages - 1);
			std::swap(all[i], all[d(rng)]);
		}
		all.resize(k);
		out = std::move(all);
		break;
	}
	case PatternKind::stride: {
		std::uint64_t s = p.stride;
		for (std::uint64_t off = 0; off < s && out.size() < k; off++)
			for (std::uint64_t i = off; i < pages && out.size() < k; i += s)
				out.push_back(static_cast<std::uint32_t>(i));
		break;
	}
	}
	return out;
}

std::vector<std::uint32_t> complement_pages(const std::vector<std::uint32_t> &chosen,
					    std::uint64_t pages)
{
	std::vector<bool> in(pages, false);
	for (auto c : chosen)
		if (c < pages)
			in[c] = true;
	std::vector<std::uint32_t> out;
	out.reserve(pages - chosen.size());
	for (std::uint64_t i = 0; i < pages; i++)
		if (!in[i])
			out.push_back(static_cast<std::uint32_t>(i));
	return out;
}

} // namespace cowscope
