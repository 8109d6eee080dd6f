// cowtrace_core internals: --by-mapping and --sites after the run. Reads the
// session's attribution maps, resolves each pid's addresses with the maps
// the watcher kept (symbols.hpp), and returns typed per-pid results
// (report/model.hpp's Attribution). Never in the fault path.
#pragma once

#include "cowscope/report/model.hpp"
#include "watcher.hpp"

namespace cowtrace {

class Session;

Attribution attribute(const Session &s, const MemoryMap &memory);

} // namespace cowtrace
