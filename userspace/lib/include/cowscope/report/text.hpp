// report/: cowtrace's text outputs (the programs' stdout and --folded).
#pragma once

#include <string>
#include <vector>

#include "cowscope/report/model.hpp"

namespace cowtrace {

// The table: 80 columns, one line per process.
std::string format_table(const std::vector<ProcStats> &procs, const Plan &plan);

// --by-mapping, --sites N: text, and folded stacks (copies only, one line
// "comm;outer;...;leaf COUNT" per stack: flame-graph tools, speedscope).
std::string format_mappings(const Attribution &a, const std::vector<ProcStats> &procs);
std::string format_sites(const Attribution &a, const std::vector<ProcStats> &procs, std::size_t top);
std::string folded(const Attribution &a, const std::vector<ProcStats> &procs);

} // namespace cowtrace
