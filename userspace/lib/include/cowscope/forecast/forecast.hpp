// Forecast before you fork: a per-machine model of what fork() and the
// copy-on-write copies after it cost, fitted from cowbench runs
// (`cowbench calibrate`), and the readers that feed it from a live process
// without stopping it (`cowscope forecast PID`):
//
//   fork_us = fixed + a*writable_ptes + b*wp_ptes + c*huge_pmds + d*vmas
//             + e*large_folio_ptes + a2*writable_above + b2*wp_above
//             + a3*writable_ptes*scatter + b3*wp_ptes*scatter
//
// writable_ptes / wp_ptes: present 4 KiB PTEs that fork copies (VMAs with an
// anon_vma), still writable (fork must write-protect them) or already
// write-protected (by an earlier fork); huge_pmds: PMD-mapped THPs;
// large_folio_ptes: PTEs of large (mTHP) folios, which 6.9+ kernels copy in
// batches (counted in the PTE terms too: e is their saving, may be < 0);
// writable_above / wp_above: the share of each state's PTEs beyond the
// first kKneePtes (256 MiB of 4 KiB pages) of the process: fork's cost per
// PTE falls for large page tables (measured here: 79 ns per write-protected
// PTE at 256 MiB, 47 ns at 1.5 GiB), so the PTE cost is a line with a knee
// (a2, b2: the change of slope, may be < 0; fitted only when the
// calibration reaches kKneePtes/2 PTEs of that state beyond the knee);
// scatter: the share of virtually adjacent pages that are physically apart
// (Shape::scatter()): fork touches each page's struct page, and scattered
// ones miss the cache (a3, b3: the extra cost per PTE of a fully scattered
// process; fitted when the calibration's scatter spans at least 0.3).
//
// The copy side: distinct pages written during the snapshot, from the
// kernel's soft-dirty bits over a window (clear_refs "4", pagemap bit 55) or
// from a cowtrace record of an earlier snapshot; each costs one 4 KiB copy
// (a write to a shared THP splits the PMD and copies 4 KiB since 5.8).
#pragma once

#include <sys/types.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cowscope/forecast/calibration.hpp"
#include "cowscope/forecast/copy.hpp"
#include "cowscope/forecast/model.hpp"
#include "cowscope/forecast/shape.hpp"

namespace cowscope::forecast {

// ---- the forecast --------------------------------------------------------------

struct Forecast {
	Shape shape;
	ForkInputs writable_case, wp_case; // without the module: both bounds
	ForkInputs inputs;                 // with the module: the observed state
	Interval fork_ms;                  // the stated interval (the range of both cases without the module)
	Interval fork_writable_ms, fork_wp_ms;
	bool state_known = false;
	bool scatter_known = false;
	std::vector<std::pair<std::string, double>> contributions_ms; // term -> ms (upper case)
	double thp_what_if_ms = NAN; // the same anonymous memory in PMD-mapped THPs
	CopySide copy;
	Interval cow_mib, peak_extra_mib;
	double copy_cpu_ms = NAN; // the copies' fault time at the calibrated cost
	std::string calibration_path;
	double calibration_settle_s = 0; // Calibration::settle_s: 0, an older file of hot forks
	nlohmann::json to_json() const;
	std::string to_text() const;
};

Forecast make_forecast(const Calibration &cal, const Shape &shape, const CopySide &copy);
// The pages a write can copy: present 4 KiB pages of the private writable
// mappings fork copies, a PMD-mapped THP counted as 512 (a write to one
// splits it and copies 4 KiB).
double copyable_pages(const Shape &s);

// What `cowscope forecast PID` does: load the calibration (default path when
// empty), read the shape, then the copy side (--window by soft-dirty, else
// --from-trace FILE with --trace-seconds, else none). Throws UsageError for
// bad combinations, Error for what failed.
struct ForecastRequest {
	pid_t pid = 0;
	double window_s = 0;       // --window
	std::vector<std::string> from_trace; // --from-trace FILE, repeatable
	std::vector<double> trace_seconds;   // --trace-seconds: one for all records, or one per record
	double snapshot_s = 0;     // --snapshot: the snapshot's length (default: as measured; the
				   // records' median length when they differ)
	std::string calibration;   // --calibration FILE
	bool use_module = true;
};
Forecast forecast_pid(const ForecastRequest &req, const std::function<void(double)> &window_progress = {});

} // namespace cowscope::forecast
