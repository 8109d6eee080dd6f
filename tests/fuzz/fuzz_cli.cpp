// The command-line value parsers every program shares (cowscope/base/cli.hpp,
// units.hpp): COUNT, PID, real numbers, SECONDS, RATIO and SIZE. The first
// input byte picks the parser, the rest is the argument's text. Beyond "no
// crash, no sanitizer report", every answer is checked against the rules
// cli.hpp states, worked out here independently:
//   - a rejection is a UsageError reading `WHAT: expected FORM, got "TEXT"`
//     (any other exception escapes and fails the run);
//   - an accepted whole number is digits only, in range, and equals the
//     digits' exact value;
//   - an accepted real number is digits with at most one '.', in range, and
//     equals strtod's reading of it;
//   - SIZE: accepted exactly when the text is NUMBER[K|M|G|T][B|iB] and the
//     bytes are whole and below 2^64, and then the value is exact (worked
//     out in 128-bit integers for numbers of up to 18 digits).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/units.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using fuzz::check;

namespace {

constexpr std::string_view kWhat = "--opt";

bool digit(char c)
{
	return c >= '0' && c <= '9';
}

bool all_digits(std::string_view s)
{
	if (s.empty())
		return false;
	for (char c : s)
		if (!digit(c))
			return false;
	return true;
}

// Digits with at most one '.', at least one digit: the rule's three
// clauses as they read (cli.cpp counts both in one loop).
bool real_form(std::string_view s)
{
	return std::ranges::all_of(s, [](char c) { return digit(c) || c == '.'; }) && std::ranges::count(s, '.') <= 1 &&
	       std::ranges::any_of(s, digit);
}

void check_usage_error(const UsageError &e, std::string_view text)
{
	std::string_view m = e.what();
	check(m.starts_with(std::string(kWhat) + ": expected ") && fuzz::ends_with_got(m, text),
	      "a rejection reads `WHAT: expected FORM, got \"TEXT\"`", text, m);
}

void count(std::string_view text, std::uint64_t lo, std::uint64_t hi)
{
	std::uint64_t v;
	try {
		v = cli::parse_count(text, kWhat, lo, hi);
	} catch (const UsageError &e) {
		check_usage_error(e, text);
		// rejected: not digits, too long for 64 bits, or out of range
		if (all_digits(text)) {
			std::string_view t = text;
			while (t.size() > 1 && t[0] == '0')
				t.remove_prefix(1);
			if (t.size() < 20) {
				const std::uint64_t x = std::strtoull(std::string(t).c_str(), nullptr, 10);
				check(x < lo || x > hi, "an in-range whole number was rejected", text);
			}
		}
		return;
	}
	check(all_digits(text), "a whole number that is not all digits was accepted", text);
	check(v >= lo && v <= hi, "an accepted whole number is out of range", text);
	std::string_view t = text;
	while (t.size() > 1 && t[0] == '0')
		t.remove_prefix(1);
	check(std::to_string(v) == t, "an accepted whole number is not the digits' value", text,
	      std::to_string(v));
}

void real(std::string_view text, int which)
{
	double v, lo = 0, hi;
	bool lo_excl = false;
	try {
		switch (which) {
		case 0: hi = 1; v = cli::parse_ratio(text, kWhat); break;
		case 1: hi = 1; v = parse_ratio(text, kWhat); break;
		case 2: hi = 86400; lo_excl = true; v = cli::parse_seconds(text, kWhat); break;
		case 3: hi = 3600; v = cli::parse_idle_seconds(text, kWhat); break;
		default: lo = 2.5; hi = 1e300; v = cli::parse_real(text, kWhat, lo, hi); break;
		}
	} catch (const UsageError &e) {
		check_usage_error(e, text);
		return;
	}
	check(real_form(text), "a real number not of the form DIGITS[.DIGITS] was accepted", text);
	check(std::isfinite(v) && (lo_excl ? v > lo : v >= lo) && v <= hi,
	      "an accepted real number is out of range", text, std::to_string(v));
	check(v == std::strtod(std::string(text).c_str(), nullptr), "an accepted real number is not its text's value",
	      text, std::to_string(v));
}

// What SIZE's rules say of `text`: malformed (nullopt), or the exact bytes
// (nullopt too when not whole or 2^64 or more; *exact false when the number
// has too many digits to work out here).
struct SizeRef {
	bool form = false;	// NUMBER[unit][B|iB]
	bool known = false;	// value worked out (at most 18 digits)
	bool ok = false;	// whole, below 2^64
	std::uint64_t bytes = 0;
};

SizeRef size_ref(std::string_view s)
{
	SizeRef r;
	unsigned shift = 0;
	auto unit = [](char c) -> int {
		switch (c) {
		case 'K': case 'k': return 10;
		case 'M': case 'm': return 20;
		case 'G': case 'g': return 30;
		case 'T': case 't': return 40;
		default: return -1;
		}
	};
	std::size_t n = s.size();
	// the number is the longest prefix of digits and dots
	std::size_t num = 0;
	while (num < n && (digit(s[num]) || s[num] == '.'))
		num++;
	std::string_view suffix = s.substr(num);
	if (!suffix.empty()) {
		int u = unit(suffix[0]);
		if (u < 0)
			return r;
		shift = static_cast<unsigned>(u);
		std::string_view b = suffix.substr(1);
		if (!(b.empty() || b == "B" || b == "b" || b == "iB" || b == "ib"))
			return r;
	}
	std::string_view number = s.substr(0, num);
	if (!real_form(number))
		return r;
	r.form = true;
	std::string digits;
	std::size_t frac = 0;
	bool after_dot = false;
	for (char c : number) {
		if (c == '.') {
			after_dot = true;
			continue;
		}
		digits += c;
		frac += after_dot;
	}
	while (digits.size() > 1 && digits[0] == '0')
		digits.erase(0, 1);
	if (digits.size() > 18 || frac > 18)
		return r;
	r.known = true;
	unsigned __int128 m = std::strtoull(digits.c_str(), nullptr, 10);
	m <<= shift;
	unsigned __int128 p10 = 1;
	for (std::size_t i = 0; i < frac; i++)
		p10 *= 10;
	if (m % p10 != 0)
		return r;
	m /= p10;
	if (m >> 64)
		return r;
	r.ok = true;
	r.bytes = static_cast<std::uint64_t>(m);
	return r;
}

void size(std::string_view text, bool units_hpp)
{
	const SizeRef ref = size_ref(text);
	std::uint64_t v;
	try {
		v = units_hpp ? parse_size(text, kWhat) : cli::parse_size(text, kWhat);
	} catch (const UsageError &e) {
		check_usage_error(e, text);
		check(!ref.known || !ref.ok, "a well-formed whole SIZE below 2^64 was rejected", text,
		      std::to_string(ref.bytes));
		return;
	}
	check(ref.form, "a SIZE not of the form NUMBER[K|M|G|T][B|iB] was accepted", text);
	if (ref.known) {
		check(ref.ok, "a SIZE whose bytes are not whole, or not below 2^64, was accepted", text,
		      std::to_string(v));
		check(v == ref.bytes, "an accepted SIZE is not its exact number of bytes", text,
		      std::to_string(v) + " instead of " + std::to_string(ref.bytes));
	}
}

void pid(std::string_view text)
{
	pid_t p;
	try {
		p = cli::parse_pid(text, kWhat);
	} catch (const UsageError &e) {
		check_usage_error(e, text);
		return;
	}
	check(all_digits(text) && p >= 1, "an accepted pid is not a positive whole number", text);
	count(text, 1, INT32_MAX);	// the same rules as COUNT 1..2^31-1
}

void fuzz_one(std::uint8_t pick, std::string_view text)
{
	switch (pick % 11) {
	case 0: count(text, 0, UINT64_MAX); break;
	case 1: count(text, 1, 1024); break;
	case 2: pid(text); break;
	case 3: case 4: case 5: case 6: case 7: real(text, pick % 11 - 3); break;
	case 8: size(text, false); break;
	case 9: size(text, true); break;
	default: count(text, 7, 7); break;
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
