// forecast/: the copy side from a cowtrace record (--from-trace), read
// through cowtrace's own typed reader (report/json.hpp).
#include <algorithm>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/stats.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/report/json.hpp"

namespace cowscope::forecast {

CopySide copies_from_trace(const nlohmann::json &record, pid_t pid, double trace_seconds, const std::string &what)
{
	if (!(trace_seconds > 0))
		throw UsageError(what + ": needs --trace-seconds SECONDS, the length of each snapshot in the record");
	const cowtrace::Report rep = cowtrace::read_report(record, what);
	if (rep.processes.empty())
		throw Error(what + ": the record has no processes");
	std::uint64_t parent = 0;
	std::vector<std::uint64_t> children;
	const bool pid_found = std::any_of(rep.processes.begin(), rep.processes.end(),
					   [pid](const cowtrace::ProcStats &p) { return p.pid == pid; });
	for (const cowtrace::ProcStats &p : rep.processes) {
		if (!pid_found)
			children.push_back(p.cow_copies);
		else if (p.pid == pid)
			parent += p.cow_copies;
		else if (p.ppid == pid)
			children.push_back(p.cow_copies);
	}
	if (children.empty())
		throw Error(fmt::format("{}: no snapshot child of process {} in the record", what, pid));
	// Each snapshot: its child's copies and an equal share of the parent's.
	CopySide c;
	c.source = "cowtrace record";
	c.window_s = c.snapshot_s = trace_seconds;
	for (auto ch : children) {
		c.per_snapshot.push_back(static_cast<double>(ch) +
					 static_cast<double>(parent) / static_cast<double>(children.size()));
		c.per_snapshot_s.push_back(trace_seconds);
	}
	Summary s = summarize(c.per_snapshot);
	c.pages_point = s.median;
	c.pages_lo = s.min;
	c.pages_hi = s.max;
	c.note = fmt::format("{} snapshot(s) of {:.3g} s in the record{}; {:.0f} copies per snapshot (median)",
			     children.size(), trace_seconds,
			     pid_found ? "" : fmt::format(" (process {} not in it: every entry taken as one snapshot)", pid),
			     s.median);
	return c;
}

} // namespace cowscope::forecast
