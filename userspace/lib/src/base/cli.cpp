// cli.cpp - the one set of rules for numbers on the command line, and the
// one main() wrapper (cowscope/cli.hpp).
#include "cowscope/base/cli.hpp"

#include "cowscope/base/fd.hpp"

#include <charconv>
#include <cmath>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace cowscope::cli {

namespace {

bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

// Digits only, at least one; false on overflow.
bool whole(std::string_view s, std::uint64_t &out)
{
	if (s.empty())
		return false;
	for (char c : s)
		if (!is_digit(c))
			return false;
	auto r = std::from_chars(s.data(), s.data() + s.size(), out);
	return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Digits with at most one '.', at least one digit.
bool real(std::string_view s, double &out)
{
	unsigned digits = 0, dots = 0;
	for (char c : s) {
		if (is_digit(c))
			digits++;
		else if (c == '.')
			dots++;
		else
			return false;
	}
	if (digits == 0 || dots > 1)
		return false;
	auto r = std::from_chars(s.data(), s.data() + s.size(), out, std::chars_format::fixed);
	return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(out);
}

} // namespace

std::string usage_message(std::string_view what, std::string_view form, std::string_view text)
{
	return fmt::format("{}: expected {}, got \"{}\"", what, form, text);
}

void usage_error(std::string_view what, std::string_view form, std::string_view text)
{
	throw UsageError(usage_message(what, form, text));
}

std::uint64_t parse_count(std::string_view text, std::string_view what, std::uint64_t lo,
			  std::uint64_t hi, std::string_view form)
{
	std::uint64_t v = 0;
	if (!whole(text, v) || v < lo || v > hi)
		usage_error(what, form.empty() ? fmt::format("a whole number from {} to {}", lo, hi) : form,
			    text);
	return v;
}

double parse_real(std::string_view text, std::string_view what, double lo, double hi, bool lo_exclusive,
		  std::string_view form)
{
	double v = 0;
	if (!real(text, v) || (lo_exclusive ? !(v > lo) : v < lo) || v > hi)
		usage_error(what,
			    !form.empty()   ? std::string(form)
			    : lo_exclusive ? fmt::format("a number greater than {} and at most {}", lo, hi)
					    : fmt::format("a number from {} to {}", lo, hi),
			    text);
	return v;
}

double parse_seconds(std::string_view text, std::string_view what, double max_s, std::string_view form)
{
	return parse_real(text, what, 0, max_s, true,
			  form.empty() ? std::string_view("SECONDS greater than 0, like 60 or 0.5") : form);
}

double parse_idle_seconds(std::string_view text, std::string_view what, double max_s)
{
	return parse_real(text, what, 0, max_s, false, fmt::format("SECONDS from 0 to {}, like 3 or 0.25", max_s));
}

std::uint64_t parse_size(std::string_view text, std::string_view what)
{
	constexpr std::string_view form = "SIZE like 64M (a number with an optional K, M, G or T suffix)";
	std::string_view s = text;
	auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
	// Optional "B" / "iB" after the unit letter ("64MiB", "64MB").
	if (s.size() >= 3 && (s.ends_with("iB") || s.ends_with("ib")) && alpha(s[s.size() - 3]))
		s.remove_suffix(2);
	else if (s.size() >= 2 && (s.back() == 'B' || s.back() == 'b') && alpha(s[s.size() - 2]))
		s.remove_suffix(1);
	unsigned shift = 0;
	if (!s.empty() && alpha(s.back())) {
		switch (s.back()) {
		case 'K': case 'k': shift = 10; break;
		case 'M': case 'm': shift = 20; break;
		case 'G': case 'g': shift = 30; break;
		case 'T': case 't': shift = 40; break;
		default: usage_error(what, form, text);
		}
		s.remove_suffix(1);
	}
	double v;
	if (!real(s, v))
		usage_error(what, form, text);
	// The bytes in exact integers (a double loses digits past 2^53: the
	// fuzzer's "140800000360080002" read as ...080000): the whole part
	// shifted, plus the fraction times 2^shift, whose digits are doubled
	// shift times, the carries being its bits.
	const auto dot = s.find('.');
	std::string_view whole_part = s.substr(0, dot), frac = dot == s.npos ? "" : s.substr(dot + 1);
	while (!whole_part.empty() && whole_part.front() == '0')
		whole_part.remove_prefix(1);
	if (whole_part.size() > 20)
		usage_error(what, "SIZE below 16 EiB", text);
	unsigned __int128 bytes = 0;
	for (char c : whole_part)
		bytes = bytes * 10 + static_cast<unsigned>(c - '0');
	bytes <<= shift;
	std::string f(frac);
	for (unsigned i = 0; i < shift; i++) {
		unsigned carry = 0;
		for (std::size_t j = f.size(); j-- > 0;) {
			const unsigned d = static_cast<unsigned>(f[j] - '0') * 2 + carry;
			f[j] = static_cast<char>('0' + d % 10);
			carry = d / 10;
		}
		bytes += static_cast<unsigned __int128>(carry) << (shift - 1 - i);
	}
	if (bytes >> 64)
		usage_error(what, "SIZE below 16 EiB", text);
	if (f.find_first_not_of('0') != std::string::npos)
		usage_error(what, "a whole number of bytes", text);
	return static_cast<std::uint64_t>(bytes);
}

double parse_ratio(std::string_view text, std::string_view what)
{
	return parse_real(text, what, 0, 1, false, "a ratio from 0 to 1 like 0.25");
}

pid_t parse_pid(std::string_view text, std::string_view what)
{
	return static_cast<pid_t>(parse_count(text, what, 1, INT32_MAX, "a process id (a positive integer)"));
}

namespace {

// hex digits with an optional 0x: no blanks or signs
bool parse_hex(std::string_view s, std::uint64_t &v)
{
	if (s.starts_with("0x") || s.starts_with("0X"))
		s.remove_prefix(2);
	if (s.empty() || s.size() > 16)
		return false;
	v = 0;
	for (char c : s) {
		unsigned d;
		if (c >= '0' && c <= '9')
			d = static_cast<unsigned>(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = static_cast<unsigned>(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = static_cast<unsigned>(c - 'A' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	return true;
}

} // namespace

std::pair<std::uint64_t, std::uint64_t> parse_range(std::string_view text, std::string_view what)
{
	if (text.empty())
		return {0, 0};
	std::size_t dash = text.find('-');
	std::uint64_t a = 0, b = 0;
	if (dash != std::string_view::npos && parse_hex(text.substr(0, dash), a) &&
	    parse_hex(text.substr(dash + 1), b) && a < b)
		return {a, b};
	usage_error(what, "START-END in hex with START < END, like 0x7f0000-0x7f8000", text);
}

void add_json_option(CLI::App &app, std::string &file, std::string_view what)
{
	app.add_option("--json", file, fmt::format("write {} as JSON to FILE (-: the JSON alone on standard output, the "
						   "text on standard error)",
						   what))
		->type_name("FILE");
}

void refuse_bare_json(int argc, const char *const *argv)
{
	for (int i = 1; i < argc; i++) {
		if (std::string_view(argv[i]) == "--")
			return;
		if (std::string_view(argv[i]) != "--json")
			continue;
		if (i + 1 < argc && (argv[i + 1][0] != '-' || std::string_view(argv[i + 1]) == "-"))
			continue;
		std::string example;
		for (int k = 0; k < argc; k++) {
			std::string_view a = k == 0 ? std::string_view(argv[0]).substr(std::string_view(argv[0]).rfind('/') + 1)
						    : std::string_view(argv[k]);
			example += (k ? " " : "") + std::string(a) + (k == i ? " -" : "");
		}
		throw UsageError(fmt::format("--json: expected FILE (or - for standard output), got {}: --json takes a "
					     "FILE now; for the JSON on standard output as before: {}",
					     i + 1 < argc ? fmt::format("\"{}\"", argv[i + 1]) : std::string("nothing"),
					     example));
	}
}

void emit(const std::string &json_file, const std::string &text, const std::string &json)
{
	if (json_file == "-") {
		std::cerr << text << std::flush;
		std::cout << json << std::flush;
		return;
	}
	if (!json_file.empty())
		write_file_atomic(json_file, json);
	std::cout << text << std::flush;
}

int run_main(const char *prog, CLI::App &app, const std::function<int()> &body, std::string_view parse_hint)
{
	try {
		return body();
	} catch (const CLI::CallForHelp &e) {
		return app.exit(e);
	} catch (const CLI::CallForAllHelp &e) {
		return app.exit(e);
	} catch (const CLI::CallForVersion &e) {
		return app.exit(e);
	} catch (const CLI::ParseError &e) {
		std::cerr << prog << ": " << e.what() << "\n";
		if (!parse_hint.empty())
			std::cerr << parse_hint << "\n";
		return 2;
	} catch (const UsageError &e) {
		std::cerr << prog << ": " << e.what() << "\n";
		return 2;
	} catch (const Interrupted &e) {
		if (*e.what())
			std::cerr << prog << ": " << e.what() << "\n";
		return 130;
	} catch (const std::exception &e) {
		std::cerr << prog << ": " << e.what() << "\n";
		return 1;
	}
}

} // namespace cowscope::cli
