// cowtrace_core: folding exited family members (fold.hpp).
#include "fold.hpp"

#include <cstring>
#include <iterator>
#include <map>
#include <set>
#include <vector>

#include <bpf/libbpf.h>
#include <linux/types.h>

#include "attribution.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "sampler.hpp"
#include "session.hpp"
#include "symbols.hpp"
#include "watcher.hpp"

namespace cowtrace {

Folder::Folder(Session &s, Watcher *w, Sampler *sampler, Symbolizer &sym, std::size_t batch)
	: session_(s), watcher_(w), sampler_(sampler), sym_(sym), batch_(batch)
{
	attr_.by_mapping = s.options().by_mapping;
	attr_.sites = s.options().sites;
}

bool Folder::overflowed()
{
	const auto *bss = session_.skel()->bss;
	std::uint64_t full = __atomic_load_n(&bss->dropped, __ATOMIC_RELAXED) +
			     __atomic_load_n(&bss->vma_full, __ATOMIC_RELAXED) +
			     __atomic_load_n(&bss->site_full, __ATOMIC_RELAXED);
	bool more = full != seen_full_;
	seen_full_ = full;
	return more;
}

std::size_t Folder::fold(bool force)
{
	auto infos = session_.infos();
	// the family root of `pid`: up through parents that did not exec, to
	// a traced one that did or whose parent is not traced (a parent
	// folded before: its recorded root); bounded by the processes
	auto root_of = [&](pid_t pid) {
		for (std::size_t hops = 0; hops <= infos.size(); hops++) {
			const cow_info &i = infos.at(pid);
			if (i.execs)
				return pid;
			auto parent = static_cast<pid_t>(i.ppid);
			if (parent == pid)
				return pid;
			if (infos.count(parent)) {
				pid = parent;
				continue;
			}
			auto r = folding_.roots.find(parent);
			return r != folding_.roots.end() ? r->second : pid;
		}
		return pid;
	};
	std::map<pid_t, pid_t> members;	// exited member -> its root
	for (const auto &[pid, info] : infos)
		if (info.exited)
			if (pid_t r = root_of(pid); r != pid)
				members[pid] = r;
	bool full = overflowed();
	if (members.empty() || (members.size() < batch_ && !full && !force))
		return 0;
	std::vector<ProcStats> procs;
	for (auto it = members.begin(); it != members.end();) {
		auto s = session_.stats(it->first);
		if (s)
			procs.push_back(*s);
		it = s ? std::next(it) : members.erase(it);	// untracked meanwhile
	}
	// resolved while their facts and their parents' maps are still there
	if (sampler_)
		sampler_->drain();	// their samples, before their sites are read
	fold_attribution(session_, watcher_ ? watcher_->memory() : MemoryMap{}, sym_, sampler_, procs, members,
			 attr_);
	for (const ProcStats &p : procs) {
		pid_t root = members.at(p.pid);
		auto ri = infos.find(root);
		std::string root_comm;
		if (ri != infos.end())
			root_comm.assign(ri->second.comm, strnlen(ri->second.comm, sizeof(ri->second.comm)));
		folding_.add(root, root_comm, p);
		session_.untrack(p.pid);
		if (watcher_)
			watcher_->forget(p.pid);
	}
	// a folded pid's root is needed while a tracked process names it as
	// its parent (it has no children to come: it exited); the others go,
	// so that the map stays the size of the live tree, not of the churn
	std::set<pid_t> parents;
	for (const auto &[pid, info] : infos)
		if (!members.count(pid))
			parents.insert(static_cast<pid_t>(info.ppid));
	std::erase_if(folding_.roots, [&](const auto &e) { return !parents.count(e.first); });
	return procs.size();
}

} // namespace cowtrace
