// Which pages a writer touches after fork, and in what order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cowscope {

enum class PatternKind { seq, random, stride };

struct Pattern {
	PatternKind kind = PatternKind::seq;
	std::uint64_t stride = 1; // pages, for PatternKind::stride (>= 1)
};

// "seq", "random" or "stride:N" (N >= 1 pages). Throws UsageError naming
// `what`: --pattern: expected seq, random or stride:N (N >= 1 pages), got "x"
Pattern parse_pattern(std::string_view text, std::string_view what = "--pattern");
// Back to the text form: "seq", "random", "stride:8".
std::string to_string(const Pattern &p);

// How many of `pages` pages a ratio selects: round(ratio * pages).
std::uint64_t pages_for_ratio(std::uint64_t pages, double ratio);

// Exactly pages_for_ratio(pages, ratio) distinct page indices in [0, pages),
// in the order they are written:
//   seq       0, 1, 2, ...
//   random    a uniformly random subset in random order (deterministic
//             for a given seed)
//   stride:N  0, N, 2N, ... then 1, N+1, ... (wrapping with the next
//             offset until enough pages are chosen)
std::vector<std::uint32_t> pattern_pages(const Pattern &p, std::uint64_t pages, double ratio,
					 std::uint64_t seed = 1);

// The pages of [0, pages) not in `chosen`, ascending.
std::vector<std::uint32_t> complement_pages(const std::vector<std::uint32_t> &chosen,
					    std::uint64_t pages);

} // namespace cowscope
