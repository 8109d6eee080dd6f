// cowbench's option values and `cowbench sweep`'s lists (bench/bench.hpp
// set_option, config_from_options; bench/sweep.hpp expand_sweep): SIZE,
// RATIO, COUNT, SECONDS, the --pattern, --folio, --writer ... words, and
// comma-separated lists of them. The input is lines of NAME=VALUE; the
// first byte says whether they form one run's options or a sweep. The
// contract: a bad value is a UsageError naming the option (its message
// starts with "--NAME: " or says "unknown option"), never another exception
// or a crash; a sweep has at least one point, each with a key.
#include <map>
#include <sstream>

#include "cowscope/base/error.hpp"
#include "cowscope/bench/bench.hpp"
#include "cowscope/bench/sweep.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using fuzz::check;

namespace {

void fuzz_one(std::uint8_t pick, std::string_view input)
{
	const bool sweep = pick & 1;
	const std::string text(input);
	std::map<std::string, std::string> opts;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);) {
		const auto eq = line.find('=');
		if (eq != std::string::npos)
			opts[line.substr(0, eq)] = line.substr(eq + 1);
	}
	try {
		if (!sweep) {
			(void)params_json(config_from_options(opts)).dump();
			return;
		}
		const auto points = expand_sweep(opts);
		check(!points.empty(), "a sweep without points", text);
		for (const auto &p : points)
			(void)point_key(p);
	} catch (const UsageError &e) {
		std::string_view m = e.what();
		check(m.starts_with("--") || m.starts_with("unknown option"),
		      "a rejected option value does not name the option", text, m);
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
