// /proc/PID/stat and /proc/PID/status as proc/ parses them (proc/stat.hpp).
// The first byte picks which. The contract: a value or nullopt, never an
// exception or a crash; an accepted stat's comm is what lies between the
// first " (" and the last ')', and its pid the number before.
#include <charconv>

#include "cowscope/proc/stat.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using fuzz::check;

namespace {

void fuzz_one(std::uint8_t pick, std::string_view text)
{
	if (pick & 1) {
		if (const auto s = proc::parse_status(text))
			(void)s->gone();
		return;
	}
	const auto st = proc::parse_stat(text);
	if (!st)
		return;
	const auto open = text.find(" ("), close = text.rfind(')');
	check(open != std::string_view::npos && close != std::string_view::npos && close >= open + 2,
	      "stat: accepted without \" (comm)\"", text);
	check(st->comm == text.substr(open + 2, close - open - 2), "stat: comm is not between \" (\" and the last ')'",
	      text, st->comm);
	pid_t pid = 0;
	const auto r = std::from_chars(text.data(), text.data() + open, pid);
	check(r.ec == std::errc() && r.ptr == text.data() + open && pid == st->pid, "stat: pid is not the leading number",
	      text);
	(void)st->gone();
	(void)st->kernel_thread();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
