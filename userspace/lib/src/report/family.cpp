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

std::size_t Folding::processes() const
{
	std::size_t n = 0;
	for (const auto &[root, f] : families)
		n += f.processes;
	return n;
}

void Folding::add(pid_t root, const std::string &root_comm, const ProcStats &p)
{
	Folded &f = families[root];
	f.root = root;
	if (!root_comm.empty())
		f.root_comm = root_comm;
	f.comm = f.processes == 0 || f.comm == p.comm ? p.comm : "*";
	f.processes++;
	add_counts(f.counts, p);
	for (std::size_t i = 0; i < p.latency_log2_ns.size(); i++)
		f.counts.latency_log2_ns[i] += p.latency_log2_ns[i];
	f.copies[p.cow_copies]++;
	roots[p.pid] = root;
}

namespace {

// f's copies per process, mean, p50, p99 (nearest rank) and max, from the
// distribution `c` (copies -> processes) of its f.processes members.
void set_copies_stats(Family &f, const std::map<std::uint64_t, std::uint64_t> &c)
{
	auto rank = [&](double q) {
		std::uint64_t want = std::clamp<std::uint64_t>(
			static_cast<std::uint64_t>(q * static_cast<double>(f.processes) + 0.999999), 1, f.processes);
		std::uint64_t seen = 0;
		for (const auto &[n, k] : c)
			if ((seen += k) >= want)
				return n;
		return c.rbegin()->first;
	};
	f.copies_mean = static_cast<double>(f.counts.cow_copies) / static_cast<double>(f.processes);
	f.copies_p50 = rank(0.50);
	f.copies_p99 = rank(0.99);
	f.copies_max = c.rbegin()->first;
}

} // namespace

std::vector<pid_t> family_roots(const std::vector<ProcStats> &procs, const std::map<pid_t, pid_t> *gone)
{
	std::map<pid_t, const ProcStats *> by_pid;
	for (const ProcStats &p : procs)
		by_pid[p.pid] = &p;
	auto root_of = [&](const ProcStats &p) -> pid_t {
		const ProcStats *cur = &p;
		for (std::size_t hops = 0; hops <= procs.size(); hops++) {
			if (cur->execs != 0)
				return cur->pid;
			auto parent = by_pid.find(cur->ppid);
			if (parent == by_pid.end() || parent->second == cur) {
				if (gone && parent == by_pid.end())
					if (auto r = gone->find(cur->ppid); r != gone->end())
						return r->second;
				return cur->pid;
			}
			cur = parent->second;
		}
		return cur->pid;
	};
	std::vector<pid_t> out;
	out.reserve(procs.size());
	for (const ProcStats &p : procs)
		out.push_back(root_of(p));
	return out;
}

std::vector<Family> families(const std::vector<ProcStats> &procs, std::size_t min_members, const Folding *folding)
{
	std::map<pid_t, const ProcStats *> by_pid;
	for (const ProcStats &p : procs)
		by_pid[p.pid] = &p;
	// a process forked without exec from a traced parent belongs to its
	// parent's family root (a folded parent: its recorded root)
	std::vector<pid_t> roots = family_roots(procs, folding ? &folding->roots : nullptr);
	std::map<pid_t, Family> fams;
	// copies of one member -> members that copied that many
	std::map<pid_t, std::map<std::uint64_t, std::uint64_t>> copies;
	for (std::size_t i = 0; i < procs.size(); i++) {
		const ProcStats &p = procs[i];
		pid_t r = roots[i];
		if (r == p.pid)
			continue;
		Family &f = fams[r];
		f.root = r;
		f.members.push_back(p.pid);
		f.comm = f.processes == 0 || f.comm == p.comm ? p.comm : "*";
		f.processes++;
		f.exited += p.exited;
		add_counts(f.counts, p);
		copies[r][p.cow_copies]++;
	}
	if (folding)
		for (const auto &[r, fo] : folding->families) {
			Family &f = fams[r];
			f.root = r;
			f.comm = f.processes == 0 || f.comm == fo.comm ? fo.comm : "*";
			f.root_comm = fo.root_comm;
			f.processes += fo.processes;
			f.folded += fo.processes;
			f.exited += fo.processes;
			add_counts(f.counts, fo.counts);
			for (const auto &[n, procs_n] : fo.copies)
				copies[r][n] += procs_n;
		}
	std::vector<Family> out;
	for (auto &[r, f] : fams) {
		if (f.processes < min_members || f.processes == 0)
			continue;
		if (auto root = by_pid.find(r); root != by_pid.end())
			f.root_comm = root->second->comm;
		std::sort(f.members.begin(), f.members.end());
		set_copies_stats(f, copies[r]);
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
	std::vector<Site> out = merge_sites(mine);
	std::vector<Site> folded;
	for (const Site &s : a.folded_sites)
		if (s.pid == f.root)
			folded.push_back(s);
	if (folded.empty())
		return out;
	for (Site &s : out)
		s.pid = f.root;
	fold_sites(out, folded, f.root);
	for (Site &s : out)
		s.pid = 0;
	std::sort(out.begin(), out.end(), [](const Site &x, const Site &y) {
		return x.copies != y.copies ? x.copies > y.copies : x.reuses > y.reuses;
	});
	return out;
}

} // namespace cowtrace
