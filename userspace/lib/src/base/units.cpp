#include "cowscope/base/units.hpp"

#include <cmath>
#include <fmt/format.h>

#include "cowscope/base/cli.hpp"

namespace cowscope {

// The rules live in cli.cpp (cowscope/cli.hpp), one set for every program.
std::uint64_t parse_size(std::string_view text, std::string_view what)
{
	return cli::parse_size(text, what);
}

double parse_ratio(std::string_view text, std::string_view what)
{
	return cli::parse_ratio(text, what);
}

std::string format_size(std::uint64_t bytes)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = static_cast<double>(bytes);
	unsigned u = 0;
	while (v >= 1024.0 && u < 4) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		return fmt::format("{} B", bytes);
	if (v == std::floor(v))
		return fmt::format("{:.0f} {}", v, units[u]);
	return fmt::format("{:.1f} {}", v, units[u]);
}

} // namespace cowscope
