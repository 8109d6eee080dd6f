// A cowtrace JSON record (schema 2) as it is read back: cowtrace's own
// reader (report/json.hpp read_report), and the forecast's --from-trace
// (forecast/copy.hpp copies_from_trace, then combine_records and
// project_copies, as the forecast chains them). The first input byte picks
// the pid the record is read for (0-255), the rest is the file. The
// contract: a record that is not JSON or not a cowtrace record is a
// cowscope::Error, never another exception or a crash; an accepted record
// written again (report_json) reads back the same; the forecast's copy
// counts of an accepted one are finite and ordered.
#include <cmath>

#include <nlohmann/json.hpp>

#include "cowscope/base/error.hpp"
#include "cowscope/forecast/copy.hpp"
#include "cowscope/report/json.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using namespace cowscope::forecast;
using fuzz::check;

namespace {

nlohmann::json written(const cowtrace::Report &r)
{
	return cowtrace::report_json(r.processes, r.plan, r.attribution ? &*r.attribution : nullptr);
}

} // namespace

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
	try {
		const cowtrace::Report r = cowtrace::read_report(j, "F");
		const nlohmann::json w = written(r);
		cowtrace::Report again;
		try {
			again = cowtrace::read_report(w, "F");
		} catch (const Error &e) {
			fuzz::fail("an accepted record, written again, does not read back", text, e.what());
		}
		check(written(again) == w, "an accepted record, written and read again, differs", text, w.dump());
	} catch (const Error &) {
	}
	CopySide one;
	try {
		one = copies_from_trace(j, pid, 2.5, "--from-trace F");
	} catch (const Error &e) {
		check(std::string_view(e.what()).find("--from-trace F") != std::string_view::npos,
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
