// `cowscope ptes|diff --range START-END`: cli::parse_range (base/cli.hpp).
// The rules: two hex numbers of at most 16 digits, each with an optional
// 0x, joined by one '-', START < END; anything else is a UsageError
// `--range: expected ..., got "TEXT"`; "" means no range. The reference
// below reads the hex with std::from_chars, not the parser's own loop.
#include <charconv>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "fuzz_util.hpp"

using cowscope::UsageError;
using fuzz::check;

namespace {

bool hex_ref(std::string_view s, std::uint64_t &v)
{
	if (s.starts_with("0x") || s.starts_with("0X"))
		s.remove_prefix(2);
	if (s.empty() || s.size() > 16 || s.front() == '-' || s.front() == '+')
		return false;
	auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
	return ec == std::errc() && end == s.data() + s.size();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	const std::string text(fuzz::text(data, size));
	std::uint64_t a = 0, b = 0;
	const auto dash = text.find('-');
	const bool ok_ref = dash != std::string::npos && hex_ref(std::string_view(text).substr(0, dash), a) &&
			    hex_ref(std::string_view(text).substr(dash + 1), b) && a < b;
	std::pair<std::uint64_t, std::uint64_t> r;
	try {
		r = cowscope::cli::parse_range(text, "--range");
	} catch (const UsageError &e) {
		std::string_view m = e.what();
		check(m.starts_with("--range: expected ") && fuzz::ends_with_got(m, text),
		      "a rejected range reads `--range: expected FORM, got \"TEXT\"`", text, m);
		check(!ok_ref, "a well-formed range START < END was rejected", text);
		return 0;
	}
	if (text.empty()) {
		check(r.first == 0 && r.second == 0, "an empty --range is not \"no range\"", text);
		return 0;
	}
	check(ok_ref, "a malformed range was accepted", text);
	check(r.first == a && r.second == b, "an accepted range is not its hex values", text);
	return 0;
}
