// `cowscope ptes|diff --range START-END`: its parser is file-local to the
// program (userspace/cowscope/main.cpp), so this target compiles that file
// with its main() renamed and calls parse_range directly. The rules (the
// program's --range help and cli.hpp): two hex numbers of at most 16 digits,
// each with an optional 0x, joined by one '-', START < END; anything else
// is a UsageError `--range: expected ..., got "TEXT"`; "" means no range.
#define main cowscope_program_main
#include "../../userspace/cowscope/main.cpp"
#undef main

#include "fuzz_util.hpp"

using fuzz::check;

namespace {

bool hex_ref(std::string_view s, std::uint64_t &v)
{
	if (s.starts_with("0x") || s.starts_with("0X"))
		s.remove_prefix(2);
	if (s.empty() || s.size() > 16)
		return false;
	v = 0;
	for (char c : s) {
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return false;
		v = v << 4 | static_cast<unsigned>(d);
	}
	return true;
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
		r = parse_range(text);
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
