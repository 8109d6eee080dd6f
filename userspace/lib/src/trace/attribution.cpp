// cowtrace_core: --by-mapping and --sites. The watcher thread keeps each
// tracked process's maps and mapped files while it lives; attribution()
// reads the BPF maps and symbolizes the stacks with elfutils libdwfl after
// the run (never in the fault path), once per (pid, address).
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowtrace.h"
#include "cowtrace.skel.h"
#include "impl.hpp"

namespace cowtrace {

namespace {

const char *seg_name(unsigned seg)
{
	static const char *const names[] = {"text", "data", "bss", "heap", "stack", "mmap-anon",
					    "file-private", "file-shared", "other", "unknown"};
	return seg < sizeof(names) / sizeof(names[0]) ? names[seg] : "unknown";
}

struct MapsLine {
	std::uint64_t start = 0, end = 0, offset = 0;
	dev_t dev = 0;
	ino_t ino = 0;
	std::string perms, path;
	std::string head;	// "start-end perms offset dev inode"
};

std::vector<MapsLine> parse_maps(const std::string &text)
{
	std::vector<MapsLine> out;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		MapsLine m;
		char perms[8] = {};
		unsigned long long s, e, off, ino;
		unsigned maj, min;
		int n = 0;
		if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &s, &e, perms, &off, &maj, &min,
				&ino, &n) < 7)
			continue;
		m.start = s;
		m.end = e;
		m.offset = off;
		m.dev = makedev(maj, min);
		m.ino = static_cast<ino_t>(ino);
		m.perms = perms;
		m.head = line.substr(0, static_cast<std::size_t>(n));
		if (static_cast<std::size_t>(n) < line.size())
			m.path = line.substr(static_cast<std::size_t>(n));
		out.push_back(std::move(m));
	}
	return out;
}

// One fd per (dev, inode) over the whole session, shared by the processes
// that map the file.
std::mutex g_files_mu;
std::map<std::pair<dev_t, ino_t>, std::weak_ptr<cowscope::UniqueFd>> g_files;

std::shared_ptr<cowscope::UniqueFd> open_mapped(pid_t pid, const MapsLine &m)
{
	// A file another tracked process already holds open (a child's copy
	// of its parent's mappings): the same fd. Also the only way left when
	// the process is exiting between the read of its maps and the open
	// below (its map_files are gone with its mm), and when the file was
	// deleted and has no path to open.
	if (m.ino) {
		std::lock_guard<std::mutex> g(g_files_mu);
		if (auto it = g_files.find({m.dev, m.ino}); it != g_files.end())
			if (auto have = it->second.lock())
				return have;
	}
	std::string via = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
	int fd = open(via.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0 && m.path.find(" (deleted)") == std::string::npos)
		fd = open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nullptr;
	auto own = std::make_shared<cowscope::UniqueFd>(fd);
	struct stat st;
	if (fstat(fd, &st) != 0)
		return own;
	std::lock_guard<std::mutex> g(g_files_mu);
	auto key = std::make_pair(st.st_dev, st.st_ino);
	if (auto it = g_files.find(key); it != g_files.end())
		if (auto have = it->second.lock())
			return have;
	g_files[key] = own;
	return own;
}

} // namespace

bool Tracer::Impl::remember(pid_t pid)
{
	std::string text;
	try {
		text = cowscope::read_file(fmt::format("/proc/{}/maps", pid));
	} catch (const cowscope::Error &) {
		return false;
	}
	if (text.empty())
		return false;	// a zombie: its mm is gone
	auto mem = std::make_shared<ProcMemory>();
	mem->pid = pid;
	cow_info info{};
	__u32 k = static_cast<__u32>(pid);
	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.infos), &k, &info) == 0)
		mem->execs = info.execs;
	mem->maps = text;
	std::shared_ptr<const ProcMemory> old;
	{
		std::lock_guard<std::mutex> g(mu);
		if (auto it = memory.find(pid); it != memory.end())
			old = it->second;
	}
	for (const MapsLine &m : parse_maps(text)) {
		if (m.path.empty() || m.path[0] != '/' || mem->files.count(m.path))
			continue;
		if (old && old->files.count(m.path)) {
			mem->files[m.path] = old->files.at(m.path);
			continue;
		}
		if (auto fd = open_mapped(pid, m))
			mem->files[m.path] = fd;
	}
	std::lock_guard<std::mutex> g(mu);
	memory[pid] = mem;
	return true;
}

void Tracer::watch()
{
	int procs = bpf_map__fd(impl_->skel->maps.procs);
	int infos = bpf_map__fd(impl_->skel->maps.infos);
	std::unique_lock<std::mutex> lk(impl_->mu);
	while (!impl_->stop) {
		lk.unlock();
		__u32 key, next, *prev = nullptr;
		std::vector<pid_t> pids;
		while (bpf_map_get_next_key(procs, prev, &next) == 0) {
			key = next;
			prev = &key;
			pids.push_back(static_cast<pid_t>(key));
		}
		for (pid_t pid : pids) {
			bool known;
			{
				std::lock_guard<std::mutex> g(impl_->mu);
				known = impl_->memory.count(pid) > 0;
			}
			// again every 0.5 s while it lives, and at once after an exec
			cow_info info{};
			__u32 k = static_cast<__u32>(pid);
			bool have = bpf_map_lookup_elem(infos, &k, &info) == 0;
			auto &[rounds, execs] = impl_->refreshed[pid];
			bool exec_seen = have && info.execs != execs;
			// soon after it appears or execs (ld.so maps the libraries
			// then), less often later: after 20, 40, 80, 160, 320, 500 ms
			int due = 2 << std::min(impl_->snapshots[pid], 5);
			if (known && ++rounds < std::min(due, 50) && !exec_seen)
				continue;
			if (known && have && info.exited)
				continue;
			rounds = 0;
			impl_->snapshots[pid] = exec_seen ? 0 : impl_->snapshots[pid] + 1;
			if (have)
				execs = info.execs;
			impl_->remember(pid);
		}
		lk.lock();
		impl_->cv.wait_for(lk, std::chrono::milliseconds(10), [this] { return impl_->stop; });
	}
}

void Tracer::refresh_memory()
{
	if (!impl_->opts.by_mapping && !impl_->opts.sites)
		return;
	for (const ProcStats &p : snapshot())
		if (!p.exited)
			impl_->remember(p.pid);
}

// ---- symbolization -----------------------------------------------------------

namespace {

// A Dwfl over one ProcMemory: its maps with each path replaced by
// /proc/self/fd/N of the fd kept for it.
class ProcSymbols {
public:
	explicit ProcSymbols(const ProcMemory &mem)
	{
		static const Dwfl_Callbacks cb = {
			dwfl_linux_proc_find_elf, dwfl_standard_find_debuginfo, nullptr, nullptr,
		};
		dwfl_ = dwfl_begin(&cb);
		if (!dwfl_)
			return;
		std::string text;
		for (const MapsLine &m : parse_maps(mem.maps)) {
			auto it = mem.files.find(m.path);
			if (it == mem.files.end())
				continue;
			std::string fdpath = fmt::format("/proc/self/fd/{}", it->second->get());
			names_[fdpath] = m.path;
			text += m.head + fdpath + "\n";
		}
		dwfl_report_begin(dwfl_);
		if (FILE *f = fmemopen(text.data(), text.size(), "r")) {
			if (!text.empty())
				dwfl_linux_proc_maps_report(dwfl_, f);
			std::fclose(f);
		}
		dwfl_report_end(dwfl_, nullptr, nullptr);
	}
	~ProcSymbols()
	{
		if (dwfl_)
			dwfl_end(dwfl_);
	}
	ProcSymbols(const ProcSymbols &) = delete;
	ProcSymbols &operator=(const ProcSymbols &) = delete;

	// `ret`: a return address (frames past #0): look up ip - 1, the call.
	Frame resolve(std::uint64_t ip, bool ret, std::set<std::string> &guessed)
	{
		Frame f;
		f.ip = ip;
		if (!dwfl_)
			return f;
		Dwarf_Addr a = ret ? ip - 1 : ip;
		Dwfl_Module *m = dwfl_addrmodule(dwfl_, a);
		if (!m)
			return f;
		const char *mainfile = nullptr;
		Dwarf_Addr lo = 0, bias = 0;
		dwfl_module_getelf(m, &bias);	// finds the file: mainfile below is set
		dwfl_module_info(m, nullptr, &lo, nullptr, nullptr, nullptr, &mainfile, nullptr);
		std::string key = mainfile ? mainfile : "";
		auto it = names_.find(key);
		f.module = it != names_.end() ? it->second : key;
		if (f.module.empty())
			f.module = "?";
		GElf_Off off = 0;
		GElf_Sym sym;
		const char *name = dwfl_module_addrinfo(m, a, &off, &sym, nullptr, nullptr, nullptr);
		if (name) {
			f.func = name;
			f.offset = off + (ret ? 1 : 0);
			f.guess = dynsym_only(m);
			if (f.guess)
				guessed.insert(f.module);
		} else {
			f.offset = ip - lo;	// module-relative
		}
		if (Dwfl_Line *l = dwfl_module_getsrc(m, a)) {
			int line = 0;
			if (const char *src = dwfl_lineinfo(l, nullptr, &line, nullptr, nullptr, nullptr)) {
				f.file = src;
				f.line = line;
			}
		}
		return f;
	}

private:
	// Only .dynsym to go by: no .symtab in the file nor debug information.
	bool dynsym_only(Dwfl_Module *m)
	{
		if (auto it = dynsym_.find(m); it != dynsym_.end())
			return it->second;
		bool only = true;
		Dwarf_Addr bias;
		if (dwfl_module_getdwarf(m, &bias))
			only = false;
		Elf *elf = dwfl_module_getelf(m, &bias);
		for (Elf_Scn *scn = nullptr; only && elf && (scn = elf_nextscn(elf, scn));) {
			GElf_Shdr sh;
			if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB)
				only = false;
		}
		dynsym_[m] = only;
		return only;
	}
	Dwfl *dwfl_ = nullptr;
	std::map<std::string, std::string> names_;	// /proc/self/fd/N -> path in maps
	std::map<Dwfl_Module *, bool> dynsym_;
};

std::string join_names(const std::vector<Frame> &frames)
{
	std::string k;
	for (const Frame &f : frames)
		k += f.name() + ";";
	return k;
}

} // namespace

std::string Frame::name() const
{
	if (!func.empty())
		return func;
	if (!module.empty())
		return fmt::format("{}+0x{:x}", module.substr(module.rfind('/') + 1), offset);
	return "[unknown]";
}

std::string Frame::text() const
{
	std::string s;
	if (!func.empty())
		s = fmt::format("{}+0x{:x}{}", func, offset, guess ? " [guess]" : "");
	else
		s = fmt::format("0x{:x}", ip);
	s += module.empty() ? " [not in a mapped file]" : fmt::format(" ({})", module);
	if (!file.empty())
		s += fmt::format(" {}:{}", file, line);
	return s;
}

Attribution Tracer::attribution() const
{
	Attribution a;
	a.by_mapping = impl_->opts.by_mapping;
	a.sites = impl_->opts.sites;
	if (!a.by_mapping && !a.sites)
		return a;
	const auto *bss = impl_->skel->bss;
	a.errors.vma_fail = __atomic_load_n(&bss->vma_fail, __ATOMIC_RELAXED);
	a.errors.vma_full = __atomic_load_n(&bss->vma_full, __ATOMIC_RELAXED);
	a.errors.stack_fail = __atomic_load_n(&bss->stack_fail, __ATOMIC_RELAXED);
	a.errors.site_full = __atomic_load_n(&bss->site_full, __ATOMIC_RELAXED);
	if (reuses_derived(plan_))
		a.notes.push_back("the tracepoint method attributes copies only: reuses by mapping and by site are 0");
	else if (plan_.huge_hook)
		a.notes.push_back("huge-PMD write faults kept in place are counted per process but not by mapping "
				  "or site");

	// The maps a pid's addresses resolve with: its own, else (a child that
	// exited before the watcher saw it, and never exec'd) its parent's.
	std::map<pid_t, std::shared_ptr<const ProcMemory>> memory;
	{
		std::lock_guard<std::mutex> g(impl_->mu);
		memory = impl_->memory;
	}
	std::map<pid_t, ProcStats> procs;
	for (const ProcStats &p : snapshot())
		procs[p.pid] = p;
	int infos = bpf_map__fd(impl_->skel->maps.infos);
	std::set<pid_t> no_maps;
	auto memory_of = [&](pid_t pid) -> std::shared_ptr<const ProcMemory> {
		for (int hops = 0; hops < 64 && pid > 0; hops++) {
			cow_info info{};
			__u32 k = static_cast<__u32>(pid);
			bool have = bpf_map_lookup_elem(infos, &k, &info) == 0;
			// maps read before its last exec are another program's
			if (auto it = memory.find(pid); it != memory.end() && (!have || it->second->execs == info.execs))
				return it->second;
			if (!have || info.execs != 0)
				break;
			pid = static_cast<pid_t>(info.ppid);
		}
		return nullptr;
	};
	auto comm_of = [&](pid_t pid) {
		auto it = procs.find(pid);
		return it != procs.end() ? it->second.comm : std::string();
	};

	if (a.by_mapping) {
		int fd = bpf_map__fd(impl_->skel->maps.vmas);
		vma_key key, next, *prev = nullptr;
		std::map<pid_t, std::vector<MapsLine>> parsed;
		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			vma_val v{};
			if (bpf_map_lookup_elem(fd, &key, &v) != 0)
				continue;
			MappingStats m;
			m.pid = static_cast<pid_t>(key.tgid);
			m.start = key.start;
			m.end = v.end;
			m.label = seg_name(v.seg);
			m.wp_faults = v.wp_faults;
			m.copies = v.copies;
			m.reuses = v.reuses;
			m.path.assign(v.name, strnlen(v.name, sizeof(v.name)));
			if (m.label == "file-private" || m.label == "file-shared" || m.label == "data" ||
			    m.label == "text") {
				if (!parsed.count(m.pid)) {
					auto mem = memory_of(m.pid);
					parsed[m.pid] = mem ? parse_maps(mem->maps) : std::vector<MapsLine>{};
				}
				for (const MapsLine &l : parsed[m.pid])
					if (l.start <= m.start && l.end > m.start && !l.path.empty()) {
						m.path = l.path;
						break;
					}
			}
			a.mappings.push_back(std::move(m));
		}
		std::sort(a.mappings.begin(), a.mappings.end(), [](const MappingStats &x, const MappingStats &y) {
			return x.pid != y.pid ? x.pid < y.pid
					      : x.copies != y.copies ? x.copies > y.copies : x.start < y.start;
		});
	}

	if (a.sites) {
		auto t0 = std::chrono::steady_clock::now();
		int fd = bpf_map__fd(impl_->skel->maps.site_counts);
		int sfd = bpf_map__fd(impl_->skel->maps.stacks);
		site_key key, next, *prev = nullptr;
		std::map<const ProcMemory *, std::unique_ptr<ProcSymbols>> syms;
		std::map<std::pair<pid_t, std::uint64_t>, Frame> cache;
		std::set<std::string> guessed;
		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			site_val v{};
			if (bpf_map_lookup_elem(fd, &key, &v) != 0)
				continue;
			Site s;
			s.pid = static_cast<pid_t>(key.tgid);
			s.comm = comm_of(s.pid);
			s.stackid = key.stackid;
			s.copies = v.copies;
			s.reuses = v.reuses;
			stack_ips st{};
			const __u64 *ips = st.ips;
			__u32 sk = static_cast<__u32>(s.stackid);
			if (s.stackid >= 0 && bpf_map_lookup_elem(sfd, &sk, &st) == 0) {
				auto mem = memory_of(s.pid);
				if (!mem)
					no_maps.insert(s.pid);
				ProcSymbols *ps = nullptr;
				if (mem) {
					auto &slot = syms[mem.get()];
					if (!slot)
						slot = std::make_unique<ProcSymbols>(*mem);
					ps = slot.get();
				}
				for (int i = 0; i < COWTRACE_STACK_DEPTH && ips[i]; i++) {
					auto ck = std::make_pair(s.pid, ips[i] ^ (i ? 0 : 1ULL << 63));
					auto it = cache.find(ck);
					if (it == cache.end()) {
						Frame f;
						f.ip = ips[i];
						if (ps)
							f = ps->resolve(ips[i], i > 0, guessed);
						it = cache.emplace(ck, f).first;
					}
					s.frames.push_back(it->second);
				}
				s.unwound = 0;
				while (s.unwound < s.frames.size() && !s.frames[s.unwound].module.empty())
					s.unwound++;
			}
			a.sites_by_pid.push_back(std::move(s));
		}
		a.addresses = cache.size();
		for (const std::string &m : guessed)
			a.notes.push_back(fmt::format("{}: no .symtab nor debug information, names are the nearest "
						      "exported (.dynsym) symbol, guesses", m));
		std::sort(a.sites_by_pid.begin(), a.sites_by_pid.end(), [](const Site &x, const Site &y) {
			return x.pid != y.pid ? x.pid < y.pid
					      : x.copies != y.copies ? x.copies > y.copies : x.reuses > y.reuses;
		});
		std::map<std::string, Site> merged;
		std::map<std::string, std::set<pid_t>> merged_pids;
		for (const Site &s : a.sites_by_pid) {
			std::string k = s.stackid < 0 ? "[no stack]" : join_names(s.frames);
			auto &pids = merged_pids[k];
			pids.insert(s.pid);
			auto [it, fresh] = merged.emplace(k, s);
			if (fresh) {
				it->second.pid = 0;
				continue;
			}
			it->second.copies += s.copies;
			it->second.reuses += s.reuses;
			it->second.pids = static_cast<std::uint32_t>(pids.size());
			if (it->second.comm != s.comm)
				it->second.comm = "*";
		}
		for (auto &[k, s] : merged)
			a.merged.push_back(std::move(s));
		std::sort(a.merged.begin(), a.merged.end(), [](const Site &x, const Site &y) {
			return x.copies != y.copies ? x.copies > y.copies : x.reuses > y.reuses;
		});
		a.symbolize_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
	}
	a.errors.no_maps = no_maps.size();
	return a;
}

// ---- output ---------------------------------------------------------------------

std::string format_mappings(const Attribution &a, const std::vector<ProcStats> &procs)
{
	std::string out;
	for (const ProcStats &p : procs) {
		std::string body;
		for (const MappingStats &m : a.mappings) {
			if (m.pid != p.pid || (!m.copies && !m.reuses))
				continue;
			body += fmt::format("  {:<12} {:>12x}-{:<12x} {:>9} {:>9} {:>9}  {}\n", m.label, m.start, m.end,
					    m.wp_faults, m.copies, m.reuses, m.path);
		}
		if (body.empty())
			continue;
		out += fmt::format("mappings of pid {} ({}){}:\n  {:<12} {:>25} {:>9} {:>9} {:>9}  {}\n", p.pid,
				   p.comm, p.exited ? ", exited" : "", "LABEL", "RANGE", "WP_FAULTS", "COPIES",
				   "REUSES", "PATH");
		out += body;
	}
	for (const std::string &n : a.notes)
		if (n.find("method") != std::string::npos || n.find("huge-PMD") != std::string::npos)
			out += "mappings: " + n + "\n";
	if (a.errors.vma_fail || a.errors.vma_full)
		out += fmt::format("mappings: {} faults with no VMA found (lookup refused), {} not recorded "
				   "(table full): under \"unknown\"\n", a.errors.vma_fail, a.errors.vma_full);
	return out;
}

namespace {

std::string format_site_list(const std::vector<Site> &list, bool copies, std::size_t top, const char *title)
{
	std::vector<const Site *> v;
	for (const Site &s : list)
		if (copies ? s.copies : s.reuses)
			v.push_back(&s);
	std::stable_sort(v.begin(), v.end(), [copies](const Site *x, const Site *y) {
		return copies ? x->copies > y->copies : x->reuses > y->reuses;
	});
	if (v.empty())
		return "";
	std::string out = fmt::format("{} ({} stacks, top {}):\n", title, v.size(), std::min(top, v.size()));
	for (std::size_t i = 0; i < v.size() && i < top; i++) {
		const Site &s = *v[i];
		out += fmt::format("  #{:<3} {} {}, {} {}", i + 1, copies ? s.copies : s.reuses,
				   copies ? "copies" : "reuses", copies ? s.reuses : s.copies,
				   copies ? "reuses" : "copies");
		if (s.pid == 0 && s.pids > 1)
			out += fmt::format(", {} processes", s.pids);
		if (s.stackid < 0) {
			out += ": no user stack recorded\n";
			continue;
		}
		out += fmt::format(", unwound {} of {} frames{}\n", s.unwound, s.frames.size(),
				   s.unwound < s.frames.size() ? " (frame-pointer walk left the mapped files)" : "");
		for (std::size_t j = 0; j < s.frames.size(); j++)
			out += fmt::format("        {}{:<2} {}\n", j == 0 ? "=" : "#", j, s.frames[j].text());
	}
	return out;
}

} // namespace

std::string format_sites(const Attribution &a, const std::vector<ProcStats> &procs, std::size_t top)
{
	std::string out;
	for (const ProcStats &p : procs) {
		std::vector<Site> mine;
		for (const Site &s : a.sites_by_pid)
			if (s.pid == p.pid)
				mine.push_back(s);
		std::string who = fmt::format("pid {} ({}{})", p.pid, p.comm, p.exited ? ", exited" : "");
		out += format_site_list(mine, true, top, ("copy sites of " + who).c_str());
		out += format_site_list(mine, false, top, ("reuse sites of " + who).c_str());
	}
	if (procs.size() > 1) {
		out += format_site_list(a.merged, true, top, "copy sites, all processes merged");
		out += format_site_list(a.merged, false, top, "reuse sites, all processes merged");
	}
	out += "sites: frame 0 (=) is the faulting instruction, exact; later frames come from a "
	       "frame-pointer walk, exact only through code built with frame pointers\n";
	for (const std::string &n : a.notes)
		out += "sites: " + n + "\n";
	if (a.errors.stack_fail || a.errors.site_full || a.errors.no_maps)
		out += fmt::format("sites: {} faults without a user stack, {} not counted (table full), {} "
				   "processes gone before their maps were read (frames unresolved)\n",
				   a.errors.stack_fail, a.errors.site_full, a.errors.no_maps);
	out += fmt::format("sites: symbolized {} addresses in {:.1f} ms after the run\n", a.addresses,
			   a.symbolize_ms);
	return out;
}

namespace {

nlohmann::json site_json(const Site &s)
{
	nlohmann::json fr = nlohmann::json::array();
	for (const Frame &f : s.frames)
		fr.push_back({{"ip", fmt::format("0x{:x}", f.ip)}, {"func", f.func}, {"offset", f.offset},
			      {"module", f.module}, {"file", f.file}, {"line", f.line}, {"guess", f.guess}});
	nlohmann::json j = {{"comm", s.comm}, {"copies", s.copies}, {"reuses", s.reuses},
			    {"stack", s.stackid >= 0}, {"frames", fr}, {"unwound", s.unwound}};
	if (s.pid)
		j["pid"] = s.pid;
	else
		j["processes"] = s.pids;
	return j;
}

} // namespace

nlohmann::json to_json(const Attribution &a)
{
	nlohmann::json j = nlohmann::json::object();
	if (a.by_mapping) {
		nlohmann::json m = nlohmann::json::array();
		for (const MappingStats &x : a.mappings)
			m.push_back({{"pid", x.pid}, {"start", fmt::format("0x{:x}", x.start)},
				     {"end", fmt::format("0x{:x}", x.end)}, {"label", x.label}, {"path", x.path},
				     {"wp_faults", x.wp_faults}, {"copies", x.copies}, {"reuses", x.reuses}});
		j["mappings"] = m;
	}
	if (a.sites) {
		nlohmann::json s = nlohmann::json::array(), g = nlohmann::json::array();
		for (const Site &x : a.sites_by_pid)
			s.push_back(site_json(x));
		for (const Site &x : a.merged)
			g.push_back(site_json(x));
		j["sites"] = s;
		j["merged_sites"] = g;
		j["symbolize_ms"] = a.symbolize_ms;
		j["notes"] = a.notes;
	}
	j["attribution_errors"] = {{"vma_not_found", a.errors.vma_fail}, {"vma_table_full", a.errors.vma_full},
				   {"no_stack", a.errors.stack_fail}, {"site_table_full", a.errors.site_full},
				   {"maps_not_read", a.errors.no_maps}};
	return j;
}

std::string folded(const Attribution &a, const std::vector<ProcStats> &procs)
{
	std::map<pid_t, std::string> comm;
	for (const ProcStats &p : procs)
		comm[p.pid] = p.comm;
	std::map<std::string, std::uint64_t> lines;
	for (const Site &s : a.sites_by_pid) {
		if (!s.copies)
			continue;
		std::string c = comm.count(s.pid) ? comm[s.pid] : s.comm;
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
