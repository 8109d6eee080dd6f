// cowbench sweep: the cartesian product of option lists, one bench run per
// point, each finished point appended to a JSON-lines file atomically. A
// rerun skips the points already in the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cowscope/bench/bench.hpp"

namespace cowscope {

// Every value may be a comma-separated list ("64M,256M"); the product of
// all lists, in the order heap, write-ratio, writer, pattern, thp, folio,
// children, spawn, read (later options vary fastest). At most
// kMaxSweepPoints points. Throws UsageError.
inline constexpr std::uint64_t kMaxSweepPoints = 10000;
std::vector<BenchConfig> expand_sweep(const std::map<std::string, std::string> &options);

// The identity of a point in a results file: params_json without run-only
// fields, dumped canonically.
std::string point_key(const BenchConfig &cfg);

struct SweepProgress {
	unsigned done = 0, total = 0, skipped = 0;
	const BenchConfig *current = nullptr;
};
using SweepProgressFn = std::function<void(const SweepProgress &)>;

struct SweepOutcome {
	unsigned total = 0, skipped = 0, ran = 0;
	bool interrupted = false;
};

// Runs the points not yet in `out_path` (one to_json(result) per line, plus
// "point": point_key). Each line is added with write_file_atomic of the
// whole file, so a killed sweep leaves a complete file.
SweepOutcome run_sweep(const std::vector<BenchConfig> &points, const std::string &out_path,
		       const SweepProgressFn &progress = {});

} // namespace cowscope
