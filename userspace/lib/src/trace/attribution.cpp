// cowtrace_core: --by-mapping and --sites (attribution.hpp).
#include "attribution.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "cowtrace.h"
#include "cowtrace.skel.h"
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

	// The maps a pid's addresses resolve with: its own, else (a child
	// that exited before the watcher saw it, and never exec'd) its
	// parent's.
	std::shared_ptr<const ProcMemory> memory_of(pid_t pid) const
	{
		for (int hops = 0; hops < 64 && pid > 0; hops++) {
			auto info = session.info(pid);
			// maps read before its last exec are another program's
			if (auto it = memory.find(pid); it != memory.end() && (!info || it->second->execs == info->execs))
				return it->second;
			if (!info || info->execs != 0)
				break;
			pid = static_cast<pid_t>(info->ppid);
		}
		return nullptr;
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

std::vector<MappingStats> read_mappings(const Context &c)
{
	std::vector<MappingStats> out;
	int fd = bpf_map__fd(c.session.skel()->maps.vmas);
	std::map<pid_t, std::vector<MapsLine>> parsed;
	for (const vma_key &key : map_keys<vma_key>(fd)) {
		vma_val v{};
		if (bpf_map_lookup_elem(fd, &key, &v) != 0)
			continue;
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
	}
	std::sort(out.begin(), out.end(), [](const MappingStats &x, const MappingStats &y) {
		return x.pid != y.pid ? x.pid < y.pid : x.copies != y.copies ? x.copies > y.copies : x.start < y.start;
	});
	return out;
}

// The frames of each stack, through the Symbolizer (each mapped file once,
// each (file, offset) once, whichever process it came from).
class Resolver {
public:
	explicit Resolver(Context &c) : c_(c) {}
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
	std::size_t addresses() const { return sym_.resolved(); }
	const std::set<std::string> &guessed() const { return sym_.guessed(); }

private:
	Context &c_;
	Symbolizer sym_;
	std::set<std::shared_ptr<const ProcMemory>> keep_;
};

void read_sites(Context &c, Attribution &a)
{
	auto t0 = std::chrono::steady_clock::now();
	int fd = bpf_map__fd(c.session.skel()->maps.site_counts);
	int sfd = bpf_map__fd(c.session.skel()->maps.stacks);
	Resolver r(c);
	for (const site_key &key : map_keys<site_key>(fd)) {
		site_val v{};
		if (bpf_map_lookup_elem(fd, &key, &v) != 0)
			continue;
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
		a.sites_by_pid.push_back(std::move(s));
	}
	a.addresses = r.addresses();
	for (const std::string &m : r.guessed())
		a.notes.push_back(Note{Note::Kind::dynsym_guess, m});
	std::sort(a.sites_by_pid.begin(), a.sites_by_pid.end(), [](const Site &x, const Site &y) {
		return x.pid != y.pid ? x.pid < y.pid : x.copies != y.copies ? x.copies > y.copies : x.reuses > y.reuses;
	});
	a.merged = merge_sites(a.sites_by_pid);
	a.symbolize_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

Attribution attribute(const Session &s, const MemoryMap &memory)
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
	Context c{s, memory, {}, {}};
	for (const ProcStats &p : s.snapshot())
		c.procs[p.pid] = p;
	if (a.by_mapping)
		a.mappings = read_mappings(c);
	if (a.sites)
		read_sites(c, a);
	a.errors.no_maps = c.no_maps.size();
	return a;
}

} // namespace cowtrace
