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

// The families (processes forked without exec, by their root): one line
// each with the copies per member; then, when the table above left
// processes out (`shown` of `procs`), how many and how many of them are in
// these families.
std::string format_families(const std::vector<Family> &fams, const Plan &plan, const std::vector<ProcStats> &procs,
			    const std::vector<ProcStats> &shown);
// --sites N: each family's stacks merged over its members, top N.
std::string format_family_sites(const Attribution &a, const std::vector<Family> &fams, std::size_t top);

} // namespace cowtrace
