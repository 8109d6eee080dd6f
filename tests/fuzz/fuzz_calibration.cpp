// The calibration file as `cowscope forecast` loads it (forecast/forecast.hpp:
// load_calibration reads the text, parses it with nlohmann::json, then
// Calibration::from_json). The contract: a file that is not JSON, or not a
// calibration, is a cowscope::Error naming the field, never another
// exception or a crash. An accepted calibration then goes through what
// loading it leads to: its report, a forecast from it, and a save (to_json)
// that loads back the same.
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
	const std::string_view text = fuzz::text(data, size);
	nlohmann::json j;
	try {
		j = nlohmann::json::parse(text);
	} catch (const nlohmann::json::exception &) {
		return 0;	// load_calibration's "not JSON"
	}
	Calibration c;
	try {
		c = Calibration::from_json(j);
	} catch (const Error &e) {
		check(std::string_view(e.what()).starts_with("calibration field \""),
		      "a rejected calibration does not name the field", text, e.what());
		return 0;
	}
	(void)calibration_report(c);
	// a small process: 64 MiB heap, half of it written in the snapshot
	Shape shape;
	shape.vma_count = 24;
	shape.ptes_cow_writable = 16384;
	shape.ptes_other = 512;
	shape.pte_tables = 40;
	shape.anon_kb = 65536;
	CopySide copy;
	copy.source = "cowtrace record";
	copy.window_s = copy.snapshot_s = 1;
	copy.per_snapshot = {8192};
	copy.per_snapshot_s = {1};
	copy.pages_point = copy.pages_lo = copy.pages_hi = 8192;
	const Forecast f = make_forecast(c, shape, copy);
	(void)f.to_text();
	(void)f.to_json().dump();
	// saved and loaded again: the same calibration
	const std::string saved = c.to_json().dump();
	Calibration again;
	try {
		again = Calibration::from_json(nlohmann::json::parse(saved));
	} catch (const Error &e) {
		fuzz::fail("an accepted calibration, saved, does not load again", text, e.what());
	}
	check(again.to_json().dump() == saved, "an accepted calibration, saved and loaded, differs", text, saved);
	return 0;
}
