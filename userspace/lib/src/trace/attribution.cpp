// cowtrace_core: --by-mapping and --sites (attribution.hpp).
#include "attribution.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>

#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "sampler.hpp"
#include "session.hpp"
#include "symbols.hpp"

namespace cowtrace {

namespace {

const char *seg_name(unsigned seg)
{
	static const char *const names[] = {"text", "data", "bss", "heap", "stack", "mmap-anon",
					    "file-private", "file-shared", "other", "unknown"};
	return seg < sizeof(names) / sizeof(names[0]) ? names[seg] : "unknown";
}

// What the readers below share: the session, the maps the watcher kept,
// the processes now.
struct Context {
	const Session &session;
	const MemoryMap &memory;
	std::map<pid_t, ProcStats> procs;
	std::set<pid_t> no_maps;	// pids with sites and no maps to resolve them
	const std::set<pid_t> *only = nullptr;	// the pids read (null: all)
	bool erase = false;	// delete the entries read (folding)
	Sampler *sampler = nullptr;	// --unwind

	bool wanted(__u32 tgid) const { return !only || only->count(static_cast<pid_t>(tgid)); }

	// The maps a pid's addresses resolve with: its own, else (a child
	// that exited before the watcher saw it, and never exec'd) its
	// parent's.
	std::shared_ptr<const ProcMemory> memory_of(pid_t pid) const
	{
		return cowtrace::memory_of(session, pid, [this](pid_t p) -> std::shared_ptr<const ProcMemory> {
			auto it = memory.find(p);
			return it != memory.end() ? it->second : nullptr;
		});
	}
	std::string comm_of(pid_t pid) const
	{
		auto it = procs.find(pid);
		return it != procs.end() ? it->second.comm : std::string();
	}
};

// The path of a file mapping from the maps (the BPF side has its file name
// only).
void fill_path(MappingStats &m, const Context &c, std::map<pid_t, std::vector<MapsLine>> &parsed)
{
	if (m.label != "file-private" && m.label != "file-shared" && m.label != "data" && m.label != "text")
		return;
	if (!parsed.count(m.pid)) {
		auto mem = c.memory_of(m.pid);
		parsed[m.pid] = mem ? parse_maps(mem->maps) : std::vector<MapsLine>{};
	}
	for (const MapsLine &l : parsed[m.pid])
		if (l.start <= m.start && l.end > m.start && !l.path.empty()) {
			m.path = l.path;
			return;
		}
}

// fn(key, value) for each entry of map `fd` of a wanted process; deleted
// as read when folding.
template <class K, class V, class Fn> void for_each_wanted(const Context &c, int fd, Fn fn)
{
	for (const K &key : map_keys<K>(fd)) {
		V v{};
		if (!c.wanted(key.tgid) || bpf_map_lookup_elem(fd, &key, &v) != 0)
			continue;
		if (c.erase)
			bpf_map_delete_elem(fd, &key);
		fn(key, v);
	}
}

std::vector<MappingStats> read_mappings(const Context &c)
{
	std::vector<MappingStats> out;
	int fd = bpf_map__fd(c.session.skel()->maps.vmas);
	std::map<pid_t, std::vector<MapsLine>> parsed;
	for_each_wanted<vma_key, vma_val>(c, fd, [&](const vma_key &key, const vma_val &v) {
		MappingStats m;
		m.pid = static_cast<pid_t>(key.tgid);
		m.start = key.start;
		m.end = v.end;
		m.label = seg_name(v.seg);
		m.wp_faults = v.wp_faults;
		m.copies = v.n.copies;
		m.reuses = v.n.reuses;
		m.zero_fills = v.n.zero_fills;
		m.path.assign(v.name, strnlen(v.name, sizeof(v.name)));
		fill_path(m, c, parsed);
		out.push_back(std::move(m));
	});
	std::sort(out.begin(), out.end(), [](const MappingStats &x, const MappingStats &y) {
		return x.pid != y.pid ? x.pid < y.pid : x.copies != y.copies ? x.copies > y.copies : x.start < y.start;
	});
	return out;
}

// The frames of each stack, through the Symbolizer (each mapped file once,
// each (file, offset) once, whichever process it came from).
class Resolver {
public:
	Resolver(Context &c, Symbolizer &sym) : c_(c), sym_(sym) {}
	// The frames of stack `ips` of `pid`.
	std::vector<Frame> frames(pid_t pid, const __u64 *ips)
	{
		auto mem = c_.memory_of(pid);
		if (!mem)
			c_.no_maps.insert(pid);
		else
			keep_.insert(mem);	// the Symbolizer keys its parsed maps by it
		static_assert(sizeof(__u64) == sizeof(std::uint64_t));
		return sym_.frames(mem.get(), reinterpret_cast<const std::uint64_t *>(ips), COWTRACE_STACK_DEPTH);
	}
	// The frames of a chain unwound from a sample of `pid`, each with its
	// source.
	std::vector<Frame> frames(pid_t pid, const Unwound &u)
	{
		auto mem = c_.memory_of(pid);
		std::vector<Frame> out;
		if (!mem) {
			c_.no_maps.insert(pid);
			for (const UnwoundFrame &f : u.frames)
				out.push_back(Frame{.ip = f.ip});
		} else {
			keep_.insert(mem);
			out = symbolize(sym_, *mem, u);
		}
		for (std::size_t i = 0; i < out.size() && i < u.frames.size(); i++)
			out[i].source = source_name(u.frames[i].source);
		return out;
	}
	std::size_t addresses() const { return sym_.resolved(); }
	const std::set<std::string> &guessed() const { return sym_.guessed(); }
	// the maps of the processes resolved (folding: to forget)
	const std::set<std::shared_ptr<const ProcMemory>> &kept() const { return keep_; }

private:
	Context &c_;
	Symbolizer &sym_;
	std::set<std::shared_ptr<const ProcMemory>> keep_;
};

// total * w / sum for each weight, the parts adding up to `total` (largest
// remainders); all zero when the weights are.
std::vector<std::uint64_t> share(std::uint64_t total, const std::vector<std::uint64_t> &w)
{
	unsigned __int128 sum = 0;
	for (std::uint64_t x : w)
		sum += x;
	std::vector<std::uint64_t> out(w.size(), 0);
	if (!sum)
		return out;
	std::vector<std::pair<unsigned __int128, std::size_t>> rest;
	std::uint64_t given = 0;
	for (std::size_t i = 0; i < w.size(); i++) {
		unsigned __int128 x = static_cast<unsigned __int128>(total) * w[i];
		out[i] = static_cast<std::uint64_t>(x / sum);
		given += out[i];
		rest.emplace_back(x % sum, i);
	}
	std::stable_sort(rest.begin(), rest.end(), [](const auto &x, const auto &y) { return x.first > y.first; });
	for (std::size_t i = 0; given < total && i < rest.size(); i++, given++)
		out[rest[i].second]++;
	return out;
}

// --unwind: site `s` (a frame-pointer stack's exact counts) as the chains
// its samples unwound to, each with the share of each kind of count its
// samples of that kind carry; a kind no sample had stays with the
// frame-pointer stack (pushed only then).
// CPython frames in place of the interpreter's, as py-spy --native shows
// them (python.hpp gives the rule): from the outermost, the k-th native
// _PyEval_EvalFrameDefault stands for the k-th run of Python frames (a run
// ends, on its outer side, at the frame its call was entered with). Runs
// left over (the native chain stopped early) go where the innermost
// interpreter frame is, or at the end. Frame 0 (the faulting instruction)
// stays, its Python frames after it.
void merge_python(std::vector<Frame> &frames, const std::vector<PyFrame> &py)
{
	if (py.empty())
		return;
	std::vector<std::pair<std::size_t, std::size_t>> runs;	// [first, last], innermost first
	for (std::size_t b = 0, i = 0; i < py.size(); i++)
		if (py[i].entry || i + 1 == py.size()) {
			runs.emplace_back(b, i);
			b = i + 1;
		}
	std::vector<std::size_t> evals;	// native frames of the interpreter, innermost first
	for (std::size_t i = 0; i < frames.size(); i++)
		if (frames[i].func == "_PyEval_EvalFrameDefault")
			evals.push_back(i);
	auto frames_of = [&](std::pair<std::size_t, std::size_t> run) {
		std::vector<Frame> v;
		for (std::size_t j = run.first; j <= run.second; j++)
			v.push_back({.ip = py[j].instr, .func = py[j].function, .file = py[j].file, .line = py[j].line,
				     .source = "py"});
		return v;
	};
	std::map<std::size_t, std::vector<Frame>> in_place;	// native index -> its Python frames
	const std::size_t matched = std::min(runs.size(), evals.size());
	for (std::size_t k = 0; k < matched; k++)
		in_place[evals[evals.size() - 1 - k]] = frames_of(runs[runs.size() - 1 - k]);
	std::vector<Frame> left;	// the inner runs no native frame stands for
	for (std::size_t k = 0; k + matched < runs.size(); k++)
		for (Frame &f : frames_of(runs[k]))
			left.push_back(std::move(f));
	const std::size_t at = matched ? evals[evals.size() - matched] : frames.size();
	std::vector<Frame> out;
	for (std::size_t i = 0; i <= frames.size(); i++) {
		if (i == at)
			out.insert(out.end(), left.begin(), left.end());
		if (i == frames.size())
			break;
		auto p = in_place.find(i);
		if (p == in_place.end() || i == 0)	// frame 0, the faulting instruction, stays
			out.push_back(std::move(frames[i]));
		if (p != in_place.end())
			out.insert(out.end(), p->second.begin(), p->second.end());
	}
	frames = std::move(out);
}

void add_unwound(Context &c, Resolver &r, Site s, std::vector<Site> &out)
{
	std::vector<Chain> chains;
	if (c.sampler && s.stackid >= 0)
		chains = c.sampler->chains(s.pid, s.stackid, c.erase);
	if (chains.empty()) {
		out.push_back(std::move(s));
		return;
	}
	std::vector<Site> parts(chains.size());
	for (std::size_t i = 0; i < chains.size(); i++) {
		Site &p = parts[i];
		p.pid = s.pid;
		p.comm = s.comm;
		p.stackid = s.stackid;
		p.frames = r.frames(s.pid, chains[i].unwound);
		merge_python(p.frames, chains[i].py);
		p.unwound = p.frames.size();
		p.samples = chains[i].n.samples();
		p.unwind_stop = stop_name(chains[i].unwound.stop);
		p.unwind_why = chains[i].unwound.why;
	}
	auto split = [&](std::uint64_t Site::*n, std::uint64_t ChainCounts::*k) {
		std::vector<std::uint64_t> w;
		for (const Chain &ch : chains)
			w.push_back(ch.n.*k);
		std::vector<std::uint64_t> got = share(s.*n, w);
		for (std::size_t i = 0; i < parts.size(); i++) {
			parts[i].*n = got[i];
			s.*n -= got[i];
		}
	};
	split(&Site::copies, &ChainCounts::copies);
	split(&Site::reuses, &ChainCounts::reuses);
	split(&Site::zero_fills, &ChainCounts::zero_fills);
	for (Site &p : parts)
		if (p.copies || p.reuses || p.zero_fills)
			out.push_back(std::move(p));
	if (s.copies || s.reuses || s.zero_fills)
		out.push_back(std::move(s));
}

// The sites of the wanted processes into a.sites_by_pid, unsorted.
void read_sites(Context &c, Attribution &a, Resolver &r)
{
	int fd = bpf_map__fd(c.session.skel()->maps.site_counts);
	int sfd = bpf_map__fd(c.session.skel()->maps.stacks);
	for_each_wanted<site_key, site_val>(c, fd, [&](const site_key &key, const site_val &v) {
		Site s;
		s.pid = static_cast<pid_t>(key.tgid);
		s.comm = c.comm_of(s.pid);
		s.stackid = key.stackid;
		s.copies = v.n.copies;
		s.reuses = v.n.reuses;
		s.zero_fills = v.n.zero_fills;
		stack_ips st{};
		__u32 sk = static_cast<__u32>(s.stackid);
		if (s.stackid >= 0 && bpf_map_lookup_elem(sfd, &sk, &st) == 0) {
			s.frames = r.frames(s.pid, st.ips);
			while (s.unwound < s.frames.size() && !s.frames[s.unwound].module.empty())
				s.unwound++;
		}
		add_unwound(c, r, std::move(s), a.sites_by_pid);
	});
}

bool by_copies(const Site &x, const Site &y)
{
	return x.pid != y.pid ? x.pid < y.pid : x.copies != y.copies ? x.copies > y.copies : x.reuses > y.reuses;
}

} // namespace

void fold_attribution(const Session &s, const MemoryMap &memory, Symbolizer &sym, Sampler *sampler,
		      const std::vector<ProcStats> &procs, const std::map<pid_t, pid_t> &root_of, Attribution &into)
{
	if (!s.options().by_mapping && !s.options().sites)
		return;
	auto t0 = std::chrono::steady_clock::now();
	std::set<pid_t> pids;
	for (const auto &[pid, root] : root_of)
		pids.insert(pid);
	Context c{s, memory, {}, {}, &pids, true, sampler};
	for (const ProcStats &p : procs)
		c.procs[p.pid] = p;
	if (s.options().by_mapping) {
		std::map<pid_t, std::vector<MappingStats>> by_root;
		for (MappingStats &m : read_mappings(c))
			by_root[root_of.at(m.pid)].push_back(std::move(m));
		for (const auto &[root, maps] : by_root)
			fold_mappings(into.folded_mappings, maps, root);
	}
	if (s.options().sites) {
		Attribution a;
		Resolver r(c, sym);
		read_sites(c, a, r);
		// merged per family first: a process whose stacks share their
		// names counts once in a site's processes
		std::map<pid_t, std::vector<Site>> by_root;
		for (Site &site : a.sites_by_pid)
			by_root[root_of.at(site.pid)].push_back(std::move(site));
		for (const auto &[root, sites] : by_root)
			fold_sites(into.folded_sites, merge_sites(sites), root);
		for (const auto &mem : r.kept())
			sym.forget(mem.get());
	}
	into.errors.no_maps += c.no_maps.size();
	into.symbolize_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
	// (symbolize_ms here: the time folding took, not in the final figure)
}

Attribution attribute(const Session &s, const MemoryMap &memory, Symbolizer &sym, Sampler *sampler,
		      const Attribution &folded)
{
	Attribution a;
	a.by_mapping = s.options().by_mapping;
	a.sites = s.options().sites;
	if (!a.by_mapping && !a.sites)
		return a;
	const auto *bss = s.skel()->bss;
	a.errors.vma_fail = __atomic_load_n(&bss->vma_fail, __ATOMIC_RELAXED);
	a.errors.vma_full = __atomic_load_n(&bss->vma_full, __ATOMIC_RELAXED);
	a.errors.stack_fail = __atomic_load_n(&bss->stack_fail, __ATOMIC_RELAXED);
	a.errors.site_full = __atomic_load_n(&bss->site_full, __ATOMIC_RELAXED);
	a.errors.stack_collisions = __atomic_load_n(&bss->stack_collisions, __ATOMIC_RELAXED);
	if (s.plan().reuses_derived())
		a.notes.push_back(Note{Note::Kind::no_reuses, ""});
	else if (s.plan().huge_hook)
		a.notes.push_back(Note{Note::Kind::huge_pmd, ""});
	Context c{s, memory, {}, {}, nullptr, false, sampler};
	for (const ProcStats &p : s.snapshot())
		c.procs[p.pid] = p;
	if (a.by_mapping)
		a.mappings = read_mappings(c);
	a.folded_mappings = folded.folded_mappings;
	std::sort(a.folded_mappings.begin(), a.folded_mappings.end(), [](const MappingStats &x, const MappingStats &y) {
		return x.pid != y.pid ? x.pid < y.pid : x.copies != y.copies ? x.copies > y.copies : x.start < y.start;
	});
	if (a.sites) {
		auto t0 = std::chrono::steady_clock::now();
		Resolver r(c, sym);
		read_sites(c, a, r);
		std::sort(a.sites_by_pid.begin(), a.sites_by_pid.end(), by_copies);
		a.folded_sites = folded.folded_sites;
		std::sort(a.folded_sites.begin(), a.folded_sites.end(), by_copies);
		a.merged = merge_sites(a.sites_by_pid);
		fold_sites(a.merged, a.folded_sites, 0);
		std::sort(a.merged.begin(), a.merged.end(), by_copies);
		a.addresses = r.addresses();
		for (const std::string &m : r.guessed())
			a.notes.push_back(Note{Note::Kind::dynsym_guess, m});
		a.symbolize_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
	}
	a.errors.no_maps = c.no_maps.size() + folded.errors.no_maps;
	return a;
}

} // namespace cowtrace
