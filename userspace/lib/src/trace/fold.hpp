// cowtrace_core internals: folding exited family members (fold.cpp). Under
// churn (a server forking a process per connection, for hours) the BPF
// tables would fill with exited processes: their counter slots, their
// mappings' and sites' entries. The Folder moves an exited member of a
// family (forked without exec from a traced process) into its family's
// aggregate (report/model.hpp's Folding; its mappings and sites resolved
// and merged into an Attribution's folded_mappings and folded_sites), then
// untracks it and frees its BPF entries and the maps the watcher kept.
// Roots (processes that exec'd, or whose parent is not traced) are never
// folded: they name their families.
//
// When: once `batch` exited members wait (so that a short run keeps every
// process one by one), and at once when a table has overflowed since the
// last fold (a process not tracked, a mapping or site entry refused).
// Called from the thread that reads the results (cowtrace's main loop); the
// watcher thread only reads its maps meanwhile.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "cowscope/report/model.hpp"

namespace cowtrace {

class Sampler;
class Session;
class Symbolizer;
class Watcher;

class Folder {
public:
	Folder(Session &s, Watcher *w, Sampler *sampler, Symbolizer &sym, std::size_t batch);

	// Fold the exited members if `batch` of them wait, a table overflowed
	// since the last fold, or `force`; how many were folded.
	std::size_t fold(bool force = false);
	const Folding &folding() const { return folding_; }
	// The folded members' mappings and sites (folded_mappings,
	// folded_sites), maps not read, time spent resolving.
	const Attribution &attribution() const { return attr_; }

private:
	bool overflowed();

	Session &session_;
	Watcher *watcher_;	// null without --by-mapping, --sites
	Sampler *sampler_;	// --unwind (null: off)
	Symbolizer &sym_;
	std::size_t batch_;
	Folding folding_;
	Attribution attr_;
	std::uint64_t seen_full_ = 0;	// dropped + vma_full + site_full at the last fold
};

} // namespace cowtrace
