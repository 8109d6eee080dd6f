// cowtrace_core internals: --by-mapping and --sites after the run. Reads the
// session's attribution maps, resolves each pid's addresses with the maps
// the watcher kept (symbols.hpp), and returns typed per-pid results
// (report/model.hpp's Attribution). Never in the fault path.
#pragma once

#include <map>

#include "cowscope/report/model.hpp"
#include "watcher.hpp"

namespace cowtrace {

class Session;
class Sampler;
class Symbolizer;

// The attribution now: every tracked process's mappings and sites (resolved
// through `sym`, shared with the folding), and those folded before
// (`folded`'s folded_mappings, folded_sites, errors.no_maps); its
// symbolize_ms is the time taken now, after the run. With `sampler`
// (--unwind), each site's counts are shared among the chains its samples
// unwound to.
Attribution attribute(const Session &s, const MemoryMap &memory, Symbolizer &sym, Sampler *sampler,
		      const Attribution &folded);
// Folding: the mappings and sites of the processes `procs` (`root_of`:
// pid -> its family root), resolved, merged into `into`'s folded_mappings and
// folded_sites under their roots, and deleted from the BPF maps.
void fold_attribution(const Session &s, const MemoryMap &memory, Symbolizer &sym, Sampler *sampler,
		      const std::vector<ProcStats> &procs, const std::map<pid_t, pid_t> &root_of, Attribution &into);

} // namespace cowtrace
