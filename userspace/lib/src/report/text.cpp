// report/: the table, --by-mapping and --sites text, folded stacks.
#include "cowscope/report/text.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

namespace cowtrace {

namespace {

std::string latency_histograms(const std::vector<ProcStats> &procs)
{
	std::string out;
	for (const auto &p : procs) {
		std::uint64_t total = 0, max = 0;
		for (auto v : p.latency_log2_ns) {
			total += v;
			max = std::max(max, v);
		}
		if (!total)
			continue;
		out += fmt::format("do_wp_page latency, pid {}:\n", p.pid);
		for (int i = 0; i < kHistSlots; i++) {
			if (!p.latency_log2_ns[i])
				continue;
			std::uint64_t lo = i ? 1ULL << i : 0, hi = (1ULL << (i + 1)) - 1;
			int bar = static_cast<int>(40 * p.latency_log2_ns[i] / max);
			out += fmt::format("  {:>10} -> {:<10} : {:<10} |{:<40}|\n", lo, hi, p.latency_log2_ns[i],
					   std::string(bar, '*'));
		}
	}
	return out;
}

} // namespace

std::string format_table(const std::vector<ProcStats> &procs, const Plan &plan)
{
	std::string out = fmt::format("{:>7} {:>7} {:<16} {:>11} {:>11} {:>11} {:>11} {:<10}\n", "PID", "PPID",
				      "COMM", "WP_FAULTS", "COW_COPIES", "COW_REUSES", "ZERO_FILLS", "METHOD");
	for (const auto &p : procs)
		out += fmt::format("{:>7} {:>7} {:<16} {:>11} {:>11} {:>11} {:>11} {:<10}\n",
				   fmt::format("{}{}", p.exited ? "*" : "", p.pid), p.ppid, p.comm, p.wp_faults,
				   p.cow_copies, p.cow_reuses, plan.zero_fills_by() ? fmt::to_string(p.zero_fills) : "-",
				   method_name(plan.method));
	for (const auto &p : procs)
		if (p.unclassified)
			out += fmt::format("pid {}: {} write faults neither copy nor reuse: the kernel moved the thread "
					   "during the fault without a sched_switch event, or a thread whose id is "
					   "equal modulo 16384 took its pending slot (not counted in COW_COPIES or "
					   "COW_REUSES)\n", p.pid, p.unclassified);
	if (!plan.zero_fills_by())
		out += "ZERO_FILLS -: this method cannot tell writes to the shared zero page from copies on this "
		       "kernel; they are in COW_COPIES\n";
	if (plan.latency)
		out += latency_histograms(procs);
	return out;
}

std::string format_mappings(const Attribution &a, const std::vector<ProcStats> &procs)
{
	std::string out;
	for (const ProcStats &p : procs) {
		std::string body;
		for (const MappingStats &m : a.mappings) {
			if (m.pid != p.pid || (!m.copies && !m.reuses && !m.zero_fills))
				continue;
			body += fmt::format("  {:<12} {:>12x}-{:<12x} {:>9} {:>9} {:>9} {:>10}  {}\n", m.label, m.start,
					    m.end, m.wp_faults, m.copies, m.reuses, m.zero_fills, m.path);
		}
		if (body.empty())
			continue;
		out += fmt::format("mappings of pid {} ({}){}:\n  {:<12} {:>25} {:>9} {:>9} {:>9} {:>10}  {}\n",
				   p.pid, p.comm, p.exited ? ", exited" : "", "LABEL", "RANGE", "WP_FAULTS", "COPIES",
				   "REUSES", "ZERO_FILLS", "PATH");
		out += body;
	}
	for (const Note &n : a.notes)
		if (n.about_mappings())
			out += "mappings: " + n.text() + "\n";
	if (a.errors.vma_fail || a.errors.vma_full)
		out += fmt::format("mappings: {} faults with no VMA found (lookup refused), {} not recorded "
				   "(table full): under \"unknown\"\n", a.errors.vma_fail, a.errors.vma_full);
	return out;
}

namespace {

// What a list of sites is ranked by: copies, reuses or zero fills.
struct SiteCount {
	std::uint64_t Site::*n;
	const char *name;
};
constexpr SiteCount kSiteCounts[] = {
	{&Site::copies, "copies"}, {&Site::reuses, "reuses"}, {&Site::zero_fills, "zero fills"}};

std::string format_site_list(const std::vector<Site> &list, const SiteCount &by, std::size_t top,
			     const std::string &title)
{
	std::vector<const Site *> v;
	for (const Site &s : list)
		if (s.*by.n)
			v.push_back(&s);
	std::stable_sort(v.begin(), v.end(), [&](const Site *x, const Site *y) { return x->*by.n > y->*by.n; });
	if (v.empty())
		return "";
	std::string out = fmt::format("{} ({} stacks, top {}):\n", title, v.size(), std::min(top, v.size()));
	for (std::size_t i = 0; i < v.size() && i < top; i++) {
		const Site &s = *v[i];
		out += fmt::format("  #{:<3} {} {}", i + 1, s.*by.n, by.name);
		for (const SiteCount &o : kSiteCounts)	// the others, where there are any
			if (o.n != by.n && (s.*o.n || o.n != &Site::zero_fills))
				out += fmt::format(", {} {}", s.*o.n, o.name);
		if (s.pid == 0 && s.pids > 1)
			out += fmt::format(", {} processes", s.pids);
		if (s.stackid < 0) {
			out += ": no user stack recorded\n";
			continue;
		}
		if (s.samples)
			out += fmt::format(", CFI-unwound from {} sample{}, {} frames; stopped: {}\n", s.samples,
					   s.samples == 1 ? "" : "s", s.frames.size(), s.unwind_why);
		else
			out += fmt::format(", unwound {} of {} frames{}\n", s.unwound, s.frames.size(),
					   s.unwound < s.frames.size() ? " (frame-pointer walk left the mapped files)"
								       : "");
		for (std::size_t j = 0; j < s.frames.size(); j++)
			out += fmt::format("        {}{:<2} {}{}\n", j == 0 ? "=" : "#", j, s.frames[j].text(),
					   s.frames[j].source.empty() ? "" : " [" + s.frames[j].source + "]");
	}
	return out;
}

// "copy sites of ...", "reuse sites of ...", "zero-fill sites of ..."
std::string format_site_lists(const std::vector<Site> &list, std::size_t top, const std::string &of)
{
	return format_site_list(list, kSiteCounts[0], top, "copy sites" + of) +
	       format_site_list(list, kSiteCounts[1], top, "reuse sites" + of) +
	       format_site_list(list, kSiteCounts[2], top, "zero-fill sites" + of);
}

} // namespace

std::string format_sites(const Attribution &a, const std::vector<ProcStats> &procs, std::size_t top)
{
	std::string out;
	for (const ProcStats &p : procs) {
		std::vector<Site> mine = a.sites_of(p.pid);
		std::string who = fmt::format("pid {} ({}{})", p.pid, p.comm, p.exited ? ", exited" : "");
		out += format_site_lists(mine, top, " of " + who);
	}
	if (procs.size() > 1)
		out += format_site_lists(a.merged, top, ", all processes merged");
	const Unwinding &u = a.unwinding;
	if (u.period) {
		out += fmt::format("sites: frame 0 (=) is the faulting instruction, exact; 1 in {} faults (at random) "
				   "unwound from the thread's registers and {} bytes of its stack through the CFI "
				   "(.eh_frame, .debug_frame) of its files: [cfi] frames by their callee's CFI, [fp] "
				   "by a frame pointer where it had none; such a stack's counts are its samples' "
				   "share of its frame-pointer stack's exact counts\n",
				   u.period, u.stack_bytes);
		out += fmt::format("sites: {} samples unwound in {:.1f} ms; {} lost (ring buffer full), {} without "
				   "stack bytes, {} cut short (a page of the slice could not be read), {} without "
				   "maps, {} over the chains kept per stack\n",
				   u.samples, u.unwind_ms, u.lost, u.no_stack, u.short_stack, u.no_maps,
				   u.chains_dropped);
		if (u.py_processes || !u.py_note.empty())
			out += fmt::format("sites: CPython 3.11 frames [py] read in {} process{}: {} resolved, {} not "
					   "(not a code object when read){}\n",
					   u.py_processes, u.py_processes == 1 ? "" : "es", u.py_frames, u.py_unresolved,
					   u.py_note.empty() ? "" : "; " + u.py_note);
	} else {
		out += "sites: frame 0 (=) is the faulting instruction, exact; later frames come from a "
		       "frame-pointer walk, exact only through code built with frame pointers (--unwind: "
		       "through CFI)\n";
	}
	for (const Note &n : a.notes)
		out += "sites: " + n.text() + "\n";
	if (a.errors.stack_fail || a.errors.site_full || a.errors.no_maps)
		out += fmt::format("sites: {} faults without a user stack, {} not counted (table full), {} "
				   "processes gone before their maps were read (frames unresolved)\n",
				   a.errors.stack_fail, a.errors.site_full, a.errors.no_maps);
	if (a.errors.stack_collisions)
		out += fmt::format("sites: {} faults whose stack hash met another stack's (told apart by their "
				   "addresses and kept apart, not merged)\n", a.errors.stack_collisions);
	out += fmt::format("sites: symbolized {} addresses in {:.1f} ms after the run\n", a.addresses,
			   a.symbolize_ms);
	return out;
}

std::string format_families(const std::vector<Family> &fams, const Plan &plan, const std::vector<ProcStats> &procs,
			    const std::vector<ProcStats> &shown)
{
	std::string out;
	if (!fams.empty())
		out = fmt::format("families (forked without exec, by the process they forked from):\n"
				  "{:>7} {:<16} {:<16} {:>6} {:>11} {:>11} {:>11} {:>11}  {}\n",
				  "ROOT", "ROOT_COMM", "COMM", "PROCS", "WP_FAULTS", "COW_COPIES", "COW_REUSES",
				  "ZERO_FILLS", "COPIES/PROC mean p50 p99 max");
	std::set<pid_t> grouped;
	for (const Family &f : fams) {
		out += fmt::format("{:>7} {:<16} {:<16} {:>6} {:>11} {:>11} {:>11} {:>11}  {:.1f} {} {} {}\n", f.root,
				   f.root_comm, f.comm, f.processes, f.counts.wp_faults, f.counts.cow_copies,
				   f.counts.cow_reuses, plan.zero_fills_by() ? fmt::to_string(f.counts.zero_fills) : "-",
				   f.copies_mean, f.copies_p50, f.copies_p99, f.copies_max);
		grouped.insert(f.members.begin(), f.members.end());
	}
	std::set<pid_t> listed;
	for (const ProcStats &p : shown)
		listed.insert(p.pid);
	std::size_t hidden = 0, in_families = 0;
	for (const ProcStats &p : procs)
		if (!listed.count(p.pid)) {
			hidden++;
			in_families += grouped.count(p.pid);
		}
	if (hidden)
		out += fmt::format("({} more processes not in the table above, {} of them in these families: "
				   "--per-process lists each)\n",
				   hidden, in_families);
	std::size_t folded = 0;
	for (const Family &f : fams)
		folded += f.folded;
	if (folded)
		out += fmt::format("({} exited processes folded into these families while tracing, their own tables "
				   "freed: counted above, listed nowhere one by one)\n",
				   folded);
	return out;
}

std::string format_family_sites(const Attribution &a, const std::vector<Family> &fams, std::size_t top)
{
	std::string out;
	for (const Family &f : fams)
		out += format_site_lists(family_sites(a, f), top,
					 fmt::format(" of the family of {} ({}: {} processes)", f.root, f.root_comm,
						     f.processes));
	return out;
}

std::string folded(const Attribution &a, const std::vector<ProcStats> &procs)
{
	std::map<pid_t, std::string> comm;
	for (const ProcStats &p : procs)
		comm[p.pid] = p.comm;
	std::map<std::string, std::uint64_t> lines;
	// folded members' sites are under their root's pid: their own comm
	std::vector<std::pair<const Site *, bool>> all;
	for (const Site &s : a.sites_by_pid)
		all.emplace_back(&s, false);
	for (const Site &s : a.folded_sites)
		all.emplace_back(&s, true);
	for (const auto &[sp, was_folded] : all) {
		const Site &s = *sp;
		if (!s.copies)
			continue;
		std::string c = !was_folded && comm.count(s.pid) ? comm[s.pid] : s.comm;
		std::string k = c.empty() ? "[unknown]" : c;
		if (s.stackid < 0)
			k += ";[no stack]";
		for (auto it = s.frames.rbegin(); it != s.frames.rend(); ++it) {
			std::string n = it->name();
			std::replace(n.begin(), n.end(), ';', ':');
			std::replace(n.begin(), n.end(), ' ', '_');
			k += ";" + n;
		}
		std::replace(k.begin(), k.end(), ' ', '_');
		lines[k] += s.copies;
	}
	std::string out;
	for (const auto &[k, n] : lines)
		out += fmt::format("{} {}\n", k, n);
	return out;
}

} // namespace cowtrace
