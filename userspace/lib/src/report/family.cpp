// report/: process families (model.hpp's Family) and which processes are
// shown one by one.
#include <algorithm>
#include <map>
#include <set>

#include "cowscope/report/model.hpp"

namespace cowtrace {

void add_counts(ProcStats &to, const ProcStats &from)
{
	for (std::uint64_t ProcStats::*n : {&ProcStats::wp_faults, &ProcStats::cow_copies, &ProcStats::cow_reuses,
					    &ProcStats::zero_fills, &ProcStats::unclassified, &ProcStats::thp_wp_faults,
					    &ProcStats::thp_fallbacks})
		to.*n += from.*n;
}

std::vector<Family> families(const std::vector<ProcStats> &procs, std::size_t min_members)
{
	std::map<pid_t, const ProcStats *> by_pid;
	for (const ProcStats &p : procs)
		by_pid[p.pid] = &p;
	// A process forked without exec from a traced parent belongs to its
	// parent's family root; climbing is bounded by the processes (a pid
	// cycle from reused pids cannot loop).
	auto root_of = [&](const ProcStats &p) -> pid_t {
		const ProcStats *cur = &p;
		for (std::size_t hops = 0; hops <= procs.size(); hops++) {
			auto parent = by_pid.find(cur->ppid);
			if (cur->execs != 0 || parent == by_pid.end() || parent->second == cur)
				return cur->pid;
			cur = parent->second;
		}
		return cur->pid;
	};
	std::map<pid_t, Family> fams;
	std::map<pid_t, std::vector<std::uint64_t>> copies;
	for (const ProcStats &p : procs) {
		pid_t r = root_of(p);
		if (r == p.pid)
			continue;
		Family &f = fams[r];
		f.root = r;
		f.members.push_back(p.pid);
		f.comm = f.members.size() == 1 || f.comm == p.comm ? p.comm : "*";
		f.exited += p.exited;
		add_counts(f.counts, p);
		copies[r].push_back(p.cow_copies);
	}
	std::vector<Family> out;
	for (auto &[r, f] : fams) {
		if (f.members.size() < min_members)
			continue;
		f.root_comm = by_pid.at(r)->comm;
		std::sort(f.members.begin(), f.members.end());
		auto &c = copies[r];
		std::sort(c.begin(), c.end());
		auto rank = [&](double q) {	// nearest rank
			std::size_t i = static_cast<std::size_t>(q * static_cast<double>(c.size()) + 0.999999);
			return c[std::clamp<std::size_t>(i, 1, c.size()) - 1];
		};
		f.copies_mean = static_cast<double>(f.counts.cow_copies) / static_cast<double>(c.size());
		f.copies_p50 = rank(0.50);
		f.copies_p99 = rank(0.99);
		f.copies_max = c.back();
		out.push_back(std::move(f));
	}
	std::sort(out.begin(), out.end(), [](const Family &a, const Family &b) {
		return a.counts.cow_copies != b.counts.cow_copies ? a.counts.cow_copies > b.counts.cow_copies
								   : a.root < b.root;
	});
	return out;
}

std::vector<ProcStats> shown_processes(const std::vector<ProcStats> &procs, const std::vector<Family> &fams,
				       bool per_process, std::size_t top)
{
	if (per_process || procs.size() <= top)
		return procs;
	std::vector<const ProcStats *> rank;
	for (const ProcStats &p : procs)
		rank.push_back(&p);
	std::stable_sort(rank.begin(), rank.end(), [](const ProcStats *a, const ProcStats *b) {
		return a->cow_copies != b->cow_copies ? a->cow_copies > b->cow_copies : a->wp_faults > b->wp_faults;
	});
	std::set<pid_t> keep;
	for (std::size_t i = 0; i < top && i < rank.size(); i++)
		keep.insert(rank[i]->pid);
	for (const Family &f : fams)
		keep.insert(f.root);
	std::vector<ProcStats> out;
	for (const ProcStats &p : procs)
		if (keep.count(p.pid))
			out.push_back(p);
	return out;
}

std::vector<Site> family_sites(const Attribution &a, const Family &f)
{
	std::vector<Site> mine;
	for (const Site &s : a.sites_by_pid)
		if (std::binary_search(f.members.begin(), f.members.end(), s.pid))
			mine.push_back(s);
	return merge_sites(mine);
}

} // namespace cowtrace
