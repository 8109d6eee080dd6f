// cowtrace_core internals: the session, one loaded BPF object. It probes
// the kernel (methods.hpp), opens the object, sets its read-only globals,
// loads and attaches the first plan that works, and reads the counters:
// one per-CPU sum (sum()) behind stats(), snapshot() and snapshot_batch(),
// one walk over a map's keys (map_keys()). The destructor detaches and
// frees everything. The watcher (watcher.hpp) and the attribution
// (attribution.hpp) read its maps; none of them prints anything.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <bpf/bpf.h>
#include <linux/types.h>

#include "cowscope/trace/trace.hpp"
#include "cowtrace.h"

struct cowtrace_bpf;

namespace cowtrace {

// Every key of BPF map `fd`, in the map's order.
template <class K> std::vector<K> map_keys(int fd)
{
	std::vector<K> out;
	K key, next;
	K *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		out.push_back(key);
	}
	return out;
}

class Session {
public:
	explicit Session(const Options &opts);	// throws cowscope::Error
	~Session();
	Session(const Session &) = delete;
	Session &operator=(const Session &) = delete;

	const Plan &plan() const { return plan_; }
	const Options &options() const { return opts_; }
	cowtrace_bpf *skel() const { return skel_; }

	void track(pid_t tgid, pid_t ppid, const std::string &comm);
	bool untrack(pid_t tgid);
	std::size_t recycle();
	// The facts the BPF side keeps of `tgid` (ppid, comm, exited, execs).
	std::optional<cow_info> info(pid_t tgid) const;
	// The facts of every tracked process, in a few batch reads where the
	// kernel has them.
	std::map<pid_t, cow_info> infos() const;
	std::optional<ProcStats> stats(pid_t tgid) const;
	std::vector<ProcStats> snapshot() const;	// by pid
	std::vector<ProcStats> snapshot_batch(MapUsage *usage) const;
	MapUsage usage() const;
	std::uint64_t dropped() const;
	std::vector<ProgStats> prog_stats() const;

private:
	// One process's figures: its counters summed over the CPUs, the
	// reuses derived where the plan counts none, its facts.
	ProcStats sum(pid_t tgid, const cow_counts *per_cpu, const cow_info *info) const;
	bool free_slot(__u32 slot) const;
	std::uint64_t slots_used() const;

	cowtrace_bpf *skel_ = nullptr;
	int ncpus_ = 0;
	Options opts_;
	Plan plan_;
};

} // namespace cowtrace
