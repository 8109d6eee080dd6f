#include "cowscope/units.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <fmt/format.h>

#include "cowscope/error.hpp"

namespace cowscope {

namespace {

[[noreturn]] void bad(std::string_view what, std::string_view form, std::string_view text)
{
	throw UsageError(fmt::format("{}: expected {}, got \"{}\"", what, form, text));
}

// Parse a non-negative decimal ("12", "0.25", "1.5"); rejects signs, blanks,
// exponents, hex and trailing junk.
bool parse_decimal(std::string_view s, double &out)
{
	if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s.front())) || s.front() == '.'))
		return false;
	for (char c : s)
		if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.')
			return false;
	auto res = std::from_chars(s.data(), s.data() + s.size(), out, std::chars_format::fixed);
	return res.ec == std::errc() && res.ptr == s.data() + s.size() && std::isfinite(out);
}

} // namespace

std::uint64_t parse_size(std::string_view text, std::string_view what)
{
	constexpr std::string_view form = "SIZE like 64M (a number with an optional K, M, G or T suffix)";
	std::string_view s = text;
	// Optional "B" / "iB" after the unit letter ("64MiB", "64MB").
	if (s.size() >= 2 && (s.ends_with("iB") || s.ends_with("ib")))
		s.remove_suffix(2);
	else if (s.size() >= 2 && (s.back() == 'B' || s.back() == 'b') &&
		 std::isalpha(static_cast<unsigned char>(s[s.size() - 2])))
		s.remove_suffix(1);
	unsigned shift = 0;
	if (!s.empty() && std::isalpha(static_cast<unsigned char>(s.back()))) {
		switch (std::toupper(static_cast<unsigned char>(s.back()))) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		case 'T': shift = 40; break;
		default: bad(what, form, text);
		}
		s.remove_suffix(1);
	}
	double v;
	if (!parse_decimal(s, v))
		bad(what, form, text);
	double bytes = std::ldexp(v, static_cast<int>(shift));
	if (bytes >= 18446744073709551616.0)
		throw UsageError(fmt::format("{}: \"{}\" is too large", what, text));
	if (bytes != std::floor(bytes))
		throw UsageError(fmt::format("{}: \"{}\" is not a whole number of bytes", what, text));
	return static_cast<std::uint64_t>(bytes);
}

double parse_ratio(std::string_view text, std::string_view what)
{
	double v;
	if (!parse_decimal(text, v) || v > 1.0)
		bad(what, "a ratio from 0 to 1 like 0.25", text);
	return v;
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
