// /proc/PID/smaps as the forecast reads it (forecast/forecast.hpp
// parse_smaps). The contract: a malformed VMA header is a cowscope::Error,
// never another exception or a crash; every VMA returned has start < end,
// four permission letters, and is COW-writable only when writable.
#include "cowscope/base/error.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	const std::string text(fuzz::text(data, size));
	std::vector<forecast::VmaShape> v;
	try {
		v = forecast::parse_smaps(text);
	} catch (const Error &) {
		return 0;
	}
	for (const auto &s : v) {
		check(s.start < s.end, "smaps: a VMA with start >= end", text);
		check(s.perms.size() == 4, "smaps: a VMA without four permission letters", text, s.perms);
		check(!s.cow_writable || s.perms[1] == 'w', "smaps: a read-only VMA counted as COW-writable", text);
		(void)s.ptes();
	}
	return 0;
}
