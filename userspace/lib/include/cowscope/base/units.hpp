// Sizes and ratios as people type them: "64M", "1.5G", "0.25".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cowscope {

// "4096", "64K", "64M", "1G", "2T" (binary units, optional trailing "iB"
// or "B"): cli::parse_size(), whose header states the rules every program
// shares. Throws UsageError naming `what`:
//   --heap: expected SIZE like 64M, got "banana"
std::uint64_t parse_size(std::string_view text, std::string_view what);
// A ratio in [0, 1] (cli::parse_ratio()). Throws UsageError naming `what`.
double parse_ratio(std::string_view text, std::string_view what);
// 67108864 -> "64 MiB", 1536 -> "1.5 KiB".
std::string format_size(std::uint64_t bytes);

} // namespace cowscope
