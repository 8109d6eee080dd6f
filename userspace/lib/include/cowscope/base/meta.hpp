// Machine metadata recorded with every measurement.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace cowscope {

// THP mode from /sys/kernel/mm/transparent_hugepage/enabled: the bracketed
// word ("always", "madvise", "never"), or "unavailable".
std::string thp_mode();
// MemAvailable from /proc/meminfo, in bytes.
std::uint64_t mem_available();

// { kernel, cpu_model, cores, page_size, thp, hostname, commit, version,
//   virtualized, timestamp }
nlohmann::json machine_metadata();

// The git commit this build came from ("unknown" outside a checkout).
const char *build_commit();

} // namespace cowscope
