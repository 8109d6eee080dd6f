// The copy side of a forecast: the distinct pages a snapshot child's
// lifetime sees written, from a soft-dirty window or cowtrace records of
// earlier snapshots, projected to the coming snapshot's length.
#pragma once

#include <sys/types.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cowscope/forecast/shape.hpp"

namespace cowscope::forecast {

// ---- the copy side ---------------------------------------------------------

struct CopySample {
	double t_s = 0;
	std::uint64_t pages = 0;      // distinct pages (present at t=0) written since t=0, 4 KiB ones
	std::uint64_t huge_blocks = 0; // of those, 2 MiB PMD-mapped blocks (soft-dirty marks the whole PMD)
};

struct CopySide {
	std::string source = "none"; // "soft-dirty", "cowtrace record", "none"
	std::string note;
	double window_s = 0;	// what was measured: the soft-dirty window, or each recorded snapshot's length
	double snapshot_s = 0;	// the snapshot the pages are for: window_s unless project_copies() moved it
	std::vector<CopySample> curve;    // soft-dirty: distinct pages written against time
	std::vector<double> per_snapshot;   // cowtrace records: each snapshot's copies
	std::vector<double> per_snapshot_s; // and its length
	double pages_point = 0, pages_lo = 0, pages_hi = 0; // copies in a snapshot of snapshot_s
	nlohmann::json to_json() const;
};

// Does this kernel have soft-dirty (CONFIG_MEM_SOFT_DIRTY)? Writes nothing:
// checks the pid's clear_refs is there and a page of our own written after
// clearing our own bits reads soft-dirty.
bool soft_dirty_supported(std::string *why = nullptr);
// Clear the target's soft-dirty bits ("4" to clear_refs), then sample the
// distinct pages written (among those present at t=0) every `step_s` for
// `window_s` (0: window/10, at least 0.25 s). Throws Error when soft-dirty is missing or the pid exits.
CopySide measure_soft_dirty(pid_t pid, double window_s, double step_s = 0,
			    const std::function<void(double)> &progress = {});
// From a cowtrace JSON record (schema 2, read by cowtrace's own reader,
// report/json.hpp): the target's snapshot children (ppid == pid; every entry
// when the pid is not in it), each snapshot `trace_seconds` long: each one's
// copies plus an equal share of the parent's. Throws Error naming the file
// and what is wrong (a bare array: cowtrace's JSON before schema 2).
CopySide copies_from_trace(const nlohmann::json &record, pid_t pid, double trace_seconds,
			   const std::string &what = "--from-trace");
// Several records (each from copies_from_trace) as one copy side: every
// snapshot of every record, each with its own length; window_s the median
// length; point the median, interval their range widened to a 90%
// prediction interval for a next snapshot like them (Student's t over their
// spread: the range of n alone holds a next one only (n-1)/(n+1) of the
// time). Throws Error when `parts` is empty.
CopySide combine_records(const std::vector<CopySide> &parts);
// Moves a copy side measured over window_s to a snapshot of snapshot_s
// seconds, for a target whose writes can copy at most `pages_total` pages.
// Point: a steady writer over uniformly random pages, whose distinct pages
// grow as c(t) = N (1 - (1 - c1/N)^(t/t1)) through the measured (t1, c1).
// Interval: what holds for ANY steady writer, whose distinct-pages curve is
// non-decreasing and concave from (0, 0): between c1 and c1*T/t1 (T > t1),
// or between c1*T/t1 and c1 (T < t1). A soft-dirty curve that reaches T is
// read at T instead. A record of several snapshots: each one projected,
// the median of the points, the widest bounds widened to the 90% prediction
// interval of the projected points (capped at pages_total). Throws
// UsageError for snapshot_s <= 0.
void project_copies(CopySide &c, double snapshot_s, double pages_total);
// The model's point alone (exposed for tests): c1 pages over t1 seconds, at T.
double saturating_copies(double c1, double t1, double T, double pages_total);

} // namespace cowscope::forecast
