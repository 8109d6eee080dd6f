// report/: cowtrace's one JSON schema, its writer and its typed reader (the
// forecast's --from-trace reads records through read_report()). Documented,
// with an example, in bpf/README.md ("JSON").
//
//   {"schema": 2,
//    "processes": [{pid, ppid, comm, exited, wp_faults, cow_copies, cow_reuses,
//                   wp_unclassified, zero_fills, execs, method, cow_copies_by,
//                   cow_reuses_by, zero_fills_by, cow_unit, [thp_wp_faults, thp_fallbacks],
//                   [wp_latency_ns_log2], [mappings], [sites]}, ...],
//    "families" (forked without exec: root, counts, copies per process,
//    members, and with --sites their merged "sites"),
//    "folded" (when members were folded after they exited: per family,
//    root, root_comm, comm, processes, counts, "copies_per_process"
//    {"COPIES": PROCESSES}, and with --by-mapping/--sites their merged
//    "mappings" and "sites"),
//    and with --by-mapping or --sites: "attribution_errors", "notes"; with
//    --sites also "merged_sites", "symbolize_ms", "symbolized_addresses"}
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cowscope/report/model.hpp"

namespace cowtrace {

// The version of the schema below; a reader refuses newer ones. 2: always
// an object (0.2.0 wrote a bare array of processes without attribution).
// 0.4.0 added the fields zero_fills and zero_fills_by (processes,
// mappings, sites): a record without them reads as 0 and "not told apart".
inline constexpr int kSchema = 2;

// One record, as read back.
struct Report {
	int schema = kSchema;
	std::vector<ProcStats> processes;
	// The method and the hooks, as the processes' "method",
	// "cow_copies_by", "cow_reuses_by" and optional fields tell them
	// (tp_btf is not recorded: false).
	Plan plan;
	std::optional<Attribution> attribution;	// --by-mapping or --sites
	Folding folding;	// members folded after they exited ("folded")
};

// One process, without its attribution.
nlohmann::json to_json(const ProcStats &s, const Plan &plan);
// The JSON of a session: `a` null, or with neither by_mapping nor sites,
// writes no attribution.
nlohmann::json report_json(const std::vector<ProcStats> &procs, const Plan &plan, const Attribution *a);
// How a record of many processes is grouped: the families, with their
// stacks merged (top sites_top each); per-process mappings and sites only
// for the `detailed` pids (the processes shown one by one), and the stacks
// merged over every process cut to sites_top. Every process keeps its
// counts. Readers derive the families from the processes (families()).
struct Grouping {
	std::vector<Family> families;
	std::vector<pid_t> detailed;	// sorted
	std::size_t sites_top = 0;
	const Folding *folding = nullptr;	// members folded after they exited
};
nlohmann::json report_json(const std::vector<ProcStats> &procs, const Plan &plan, const Attribution *a,
			   const Grouping &g);
// The record `j` (report_json's output), checked; throws cowscope::Error
// naming `what` ("--from-trace FILE") and what is wrong.
Report read_report(const nlohmann::json &j, const std::string &what = "cowtrace record");

} // namespace cowtrace
