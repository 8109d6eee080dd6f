// A cowtrace JSON record as `cowscope forecast --from-trace FILE` reads it
// (forecast/forecast.hpp copies_from_trace, then combine_records and
// project_copies, as report.cpp chains them). The first input byte picks
// the pid the record is read for (0-255), the rest is the file. The
// contract: a record that is not JSON or not a cowtrace record is a
// cowscope::Error naming the option, never another exception or a crash;
// an accepted one gives finite, ordered copy counts.
#include <cmath>

#include <nlohmann/json.hpp>

#include "cowscope/base/error.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using namespace cowscope::forecast;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	if (size < 1)
		return 0;
	const pid_t pid = data[0];
	const std::string_view text = fuzz::text(data + 1, size - 1);
	nlohmann::json j;
	try {
		j = nlohmann::json::parse(text);
	} catch (const nlohmann::json::exception &) {
		return 0;
	}
	CopySide one;
	try {
		one = copies_from_trace(j, pid, 2.5, "--from-trace F");
	} catch (const Error &e) {
		check(std::string_view(e.what()).starts_with("--from-trace F: "),
		      "a rejected record does not name the option", text, e.what());
		return 0;
	}
	check(!one.per_snapshot.empty() && one.per_snapshot.size() == one.per_snapshot_s.size(),
	      "an accepted record has no snapshots, or lengths not one per snapshot", text);
	CopySide c = combine_records({one, one});
	project_copies(c, c.window_s, 1e6);
	check(std::isfinite(c.pages_point) && c.pages_lo <= c.pages_point && c.pages_point <= c.pages_hi,
	      "the copies of an accepted record are not lo <= point <= hi", text,
	      std::to_string(c.pages_lo) + " " + std::to_string(c.pages_point) + " " + std::to_string(c.pages_hi));
	(void)c.to_json().dump();
	return 0;
}
