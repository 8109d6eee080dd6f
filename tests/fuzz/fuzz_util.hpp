// What every fuzz target shares: a property check that stops the run with
// the failing input (libFuzzer keeps it as a crash artifact), a parser's
// result or its allowed rejection (accepted), and an independent UTF-8
// check (the exporter's output must be valid UTF-8).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "cowscope/base/error.hpp"

namespace fuzz {

// A property of the code under test did not hold: say which, and abort
// (libFuzzer reports a deadly signal and writes the input out).
[[noreturn]] inline void fail(const char *what, std::string_view input, std::string_view detail = {})
{
	std::fprintf(stderr, "fuzz property failed: %s\n  input: \"", what);
	for (unsigned char c : input) {
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			std::fputc(c, stderr);
		else
			std::fprintf(stderr, "\\x%02x", c);
	}
	std::fprintf(stderr, "\"\n");
	if (!detail.empty())
		std::fprintf(stderr, "  detail: %.*s\n", static_cast<int>(detail.size()), detail.data());
	std::abort();
}

inline void check(bool ok, const char *what, std::string_view input, std::string_view detail = {})
{
	if (!ok)
		fail(what, input, detail);
}

// What parse() returns, or nullopt when it refuses its input with a
// cowscope::Error, the rejection a parser's contract allows; any other
// exception escapes (libFuzzer reports it).
template <class Parse> auto accepted(Parse &&parse) -> std::optional<decltype(parse())>
{
	try {
		return parse();
	} catch (const cowscope::Error &) {
		return std::nullopt;
	}
}

// RFC 3629 UTF-8: shortest forms only, no surrogates, nothing above U+10FFFF.
inline bool valid_utf8(std::string_view s)
{
	std::size_t i = 0;
	while (i < s.size()) {
		const auto c = static_cast<unsigned char>(s[i]);
		std::size_t n;
		std::uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3, cp = c & 0x07;
		} else {
			return false;
		}
		if (i + n >= s.size())	// its n continuation bytes are not all there
			return false;
		for (std::size_t k = 1; k <= n; k++) {
			const auto d = static_cast<unsigned char>(s[i + k]);
			if ((d & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (d & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

// Does an exception's message `what()` end with `got "TEXT"`? what() is a C
// string: a TEXT with a NUL shows up to the NUL.
inline bool ends_with_got(std::string_view what, std::string_view text)
{
	const auto nul = text.find('\0');
	if (nul != std::string_view::npos)
		return what.ends_with("got \"" + std::string(text.substr(0, nul)));
	return what.ends_with("got \"" + std::string(text) + "\"");
}

inline std::string_view text(const std::uint8_t *data, std::size_t size)
{
	return {reinterpret_cast<const char *>(data), size};
}

// The entry of a target that fuzzes several inputs: the first byte picks
// which (one(pick, text) takes what it needs of it: its low bit, or it
// modulo the number of inputs), the rest is the text. An empty input runs
// nothing.
template <class One> int run_picked(const std::uint8_t *data, std::size_t size, One &&one)
{
	if (size >= 1)
		one(data[0], text(data + 1, size - 1));
	return 0;
}

} // namespace fuzz
