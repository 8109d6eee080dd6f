// cowtrace_core internals: the attach methods (methods.cpp). Used by the
// session (session.cpp) only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cowscope/report/model.hpp"

struct cowtrace_bpf;

namespace cowtrace {

// -v: libbpf's warnings and the probe results on stderr.
void set_verbose(bool on);
void vlog(const std::string &s);
std::string errstr(int err);

// The plans this kernel offers for `wanted` (Method::automatic: every
// method), in the order to try them: most precise first, vmevent before
// fentry/kprobe plans that infer copies from page allocations, each plan
// with a wp_page_reuse hook followed by the same without it. vme_delta:
// the per-CPU distance vmevent's programs need. Throws cowscope::Error.
std::vector<Plan> probe_plans(Method wanted, std::int64_t &vme_delta);

// Autoload exactly the programs of plan `p`, none of the other methods'.
void select_programs(cowtrace_bpf *s, const Plan &p);

} // namespace cowtrace
