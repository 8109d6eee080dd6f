// report/ (in cowcore: no BPF, no libbpf, no libdw): what a cowtrace session
// found, as plain data. The tracer (trace/, cowtrace_core) fills it; the
// table, the --by-mapping/--sites text and the folded stacks (text.hpp), the
// JSON writer and its typed reader (json.hpp) and the exporter (metrics/)
// read it. May include base/ only.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cowtrace {

inline constexpr int kHistSlots = 32;

enum class Method { automatic, fentry, kprobe, vmevent, tracepoint };
const char *method_name(Method m);
// "auto", "fentry", "kprobe", "vmevent", "tracepoint"; nullopt for anything else.
std::optional<Method> parse_method(const std::string &text);

// What the probes found and what was attached.
struct Plan {
	Method method = Method::tracepoint;
	bool tp_btf = false;		// BTF-typed tracepoints (else classic)
	bool copy_hook = false;		// wp_page_copy attachable (else alloc window)
	bool huge_hook = false;		// do_huge_pmd_wp_page attachable
	bool latency = false;		// fexit histogram of do_wp_page latency
	bool reuse_hook = false;	// wp_page_reuse attachable (fentry/kprobe)
	// vmevent, tracepoint: rss_stat traces every rss change (6.2 and
	// later), so zero-page fills are told from copies; fentry and kprobe
	// always tell them (the pte at do_wp_page)
	bool zero_hook = false;
	std::string describe() const;	// one line for humans
	// How each figure is obtained, for the JSON and -v: "wp_page_copy",
	// "mm_page_alloc in do_wp_page", "mm_page_alloc in the fault";
	// "wp_page_reuse", "do_wp_page returned without a copy",
	// "derived: wp_faults - cow_copies".
	const char *copies_by() const;
	const char *reuses_by() const;
	// How zero-page fills are told from copies; nullptr where they are not
	// (counted as copies).
	const char *zero_fills_by() const;
	// The method counts no reuses: they are wp_faults - cow_copies.
	bool reuses_derived() const;
};

struct ProcStats {
	pid_t pid = 0;
	pid_t ppid = 0;
	std::string comm;
	bool exited = false;
	std::uint64_t wp_faults = 0;
	std::uint64_t cow_copies = 0;
	std::uint64_t cow_reuses = 0;	// counted, or wp_faults - cow_copies (Plan::reuses_by)
	// vmevent: wp faults told neither copy nor reuse (the scheduler moved
	// the thread mid-fault without a sched_switch event, or another thread
	// took its pending slot); in no mapping or site either
	std::uint64_t unclassified = 0;
	// wp faults on the shared zero page (or a raw PFN mapping): a fresh
	// zeroed page, nothing copied, nothing shared with another process.
	// wp_faults = cow_copies + cow_reuses + zero_fills + unclassified.
	std::uint64_t zero_fills = 0;
	std::uint64_t thp_wp_faults = 0;
	std::uint64_t thp_fallbacks = 0;
	std::array<std::uint64_t, kHistSlots> latency_log2_ns{};
	std::uint32_t execs = 0;	// exec()s seen while tracked
	bool operator==(const ProcStats &) const = default;
};

// Processes forked without exec, grouped under the process they forked
// from (its root: the nearest ancestor that exec'd, or whose parent is not
// traced): a server's workers, PostgreSQL's backends of a postmaster, a
// pool's children. The root is not a member.
struct Family {
	pid_t root = 0;
	std::string root_comm;
	std::string comm;	// the members' comm, "*" when they differ
	std::vector<pid_t> members;	// by pid: those not folded (Folding)
	std::size_t processes = 0;	// members, folded ones included
	std::size_t folded = 0;		// members folded after they exited
	std::size_t exited = 0;
	ProcStats counts;	// the members' counts summed (add_counts)
	// copies per member: mean, p50, p99 (nearest rank), max
	double copies_mean = 0;
	std::uint64_t copies_p50 = 0, copies_p99 = 0, copies_max = 0;
	bool operator==(const Family &) const = default;
};

// Add the counts of `from` (faults, copies, reuses, zero fills,
// unclassified, huge-PMD faults) to `to`.
void add_counts(ProcStats &to, const ProcStats &from);

// Members of a family folded after they exited: under churn (a server
// forking a process per connection, for hours) the tracer frees an exited
// member's BPF state (its counter slot, its mappings' and sites' entries)
// and keeps its figures here, summed by family, so that no table fills and
// every total stays exact. Its mappings and sites are in the attribution
// (Attribution::folded_mappings, folded_sites).
struct Folded {
	pid_t root = 0;
	std::string root_comm;
	std::string comm;	// the members' comm, "*" when they differ
	std::size_t processes = 0;
	ProcStats counts;	// summed (add_counts), latency histogram too
	// copies of one process -> how many processes copied that many (the
	// per-process distribution, exact, in memory bounded by distinct values)
	std::map<std::uint64_t, std::uint64_t> copies;
};

// Everything folded in a session: by family root, and the root of each
// folded pid that a traced process names as its parent (so that a live
// process whose parent was folded still finds its family; the tracer drops
// the others, keeping the map the size of the live tree).
struct Folding {
	std::map<pid_t, Folded> families;
	std::map<pid_t, pid_t> roots;
	std::size_t processes() const;
	// Add process `p` (a member of `root`'s family) to the family.
	void add(pid_t root, const std::string &root_comm, const ProcStats &p);
};

// The family root of each of `procs` (in their order): a process that
// exec'd, or whose parent is not among `procs`, is its own root; one forked
// without exec from a process of `procs` has its parent's root. A parent
// that is no longer among `procs` but is in `gone` (pid -> its root: the
// Folding's roots, the exporter's untracked processes) gives that root.
// Pure, from pid, ppid and execs; climbing is bounded by the processes (a
// pid cycle from reused pids cannot loop). families() and the exporter's
// family series (metrics/exporter.hpp) both group by it.
std::vector<pid_t> family_roots(const std::vector<ProcStats> &procs, const std::map<pid_t, pid_t> *gone = nullptr);

// The families of `procs` with at least `min_members` members (folded
// ones included), most copies first (pure: from pid, ppid and execs, and
// the folded members' roots).
std::vector<Family> families(const std::vector<ProcStats> &procs, std::size_t min_members = 2,
			     const Folding *folding = nullptr);

// The processes shown one by one: all with `per_process` or when there are
// at most `top`, else the `top` with the most copies (then faults) and the
// roots of `fams`, in the order of `procs`.
std::vector<ProcStats> shown_processes(const std::vector<ProcStats> &procs, const std::vector<Family> &fams,
				       bool per_process, std::size_t top);

// --by-mapping: one VMA of one process, as seen at its first fault.
struct MappingStats {
	pid_t pid = 0;
	std::uint64_t start = 0, end = 0;	// 0-0: VMA not found at the fault
	std::string label;	// heap, stack, data, bss, mmap-anon, file-private, file-shared, text, other, unknown
	std::string path;	// file mappings: the path (from /proc/PID/maps), else the file name
	std::uint64_t wp_faults = 0, copies = 0, reuses = 0, zero_fills = 0;
	bool operator==(const MappingStats &) const = default;
};

// One symbolized frame.
struct Frame {
	std::uint64_t ip = 0;
	std::string func;	// "" when no symbol covers ip
	std::uint64_t offset = 0;	// ip - symbol start
	std::string module;	// path of the mapped file; "" when ip is in no file mapping
	std::string file;	// source file (debug information), else ""
	int line = 0;
	bool guess = false;	// from .dynsym only: nearest exported symbol
	// --unwind: how the frame was found: "regs" (the registers at the
	// fault), "cfi" (the callee's .eh_frame/.debug_frame rule), "fp" (a
	// frame pointer, where the callee has no CFI), "py" (a CPython frame:
	// func is its qualified name, file and line its source, ip its
	// instruction; it stands in place of _PyEval_EvalFrameDefault); ""
	// without --unwind (the frame-pointer walk in BPF)
	std::string source;
	std::string text() const;	// "func+0x1a (module) file:line", "0x7f.. (module)", "[unknown 0x..]"
	std::string name() const;	// func, or "module+0xoff", or "[unknown]"
	bool operator==(const Frame &) const = default;
};

// --sites: one user stack of one process (frame 0 = the faulting ip, exact).
struct Site {
	pid_t pid = 0;	// 0 in merged lists
	std::string comm;
	std::int32_t stackid = -1;	// < 0: no stack recorded
	std::uint64_t copies = 0, reuses = 0, zero_fills = 0;
	std::vector<Frame> frames;
	// Frames resolved before the first address outside every mapped file
	// (the frame-pointer walk went astray there, or ended), out of frames.size().
	std::size_t unwound = 0;
	std::uint32_t pids = 1;	// merged lists: processes that had this stack
	// --unwind: the samples whose CFI unwinding gave these frames (0: the
	// frame-pointer stack as recorded in BPF, not unwound); the counts are
	// then the share of the frame-pointer stack's exact counts that these
	// samples carry. Where and why the unwinding stopped ("outermost",
	// "no_cfi", "slice_exhausted", "no_module", "depth_limit", "failed"),
	// and in words.
	std::uint64_t samples = 0;
	std::string unwind_stop, unwind_why;
	bool operator==(const Site &) const = default;
};

struct AttrErrors {
	std::uint64_t vma_fail = 0, vma_full = 0, stack_fail = 0, site_full = 0;
	std::uint64_t no_maps = 0;	// processes whose maps could not be read in time
	// faults whose stack's hash slot held another stack (told apart by
	// their ips and kept under another slot: never merged)
	std::uint64_t stack_collisions = 0;
	bool operator==(const AttrErrors &) const = default;
};

// A remark on the attribution, typed: the text goes with the kind.
struct Note {
	enum class Kind {
		no_reuses,	// the tracepoint method attributes copies only
		huge_pmd,	// huge-PMD faults kept in place: per process only
		dynsym_guess,	// names in `module` are .dynsym guesses
	};
	Kind kind = Kind::no_reuses;
	std::string module;	// dynsym_guess: the file
	std::string text() const;
	// The note whose text() is `text`; nullopt for any other text.
	static std::optional<Note> parse(const std::string &text);
	// The notes said under the mappings too (the others are the sites').
	bool about_mappings() const { return kind != Kind::dynsym_guess; }
	bool operator==(const Note &) const = default;
};

// Everything --by-mapping and --sites found; symbolized after the run.
// --unwind: how the sampled stacks fared.
struct Unwinding {
	unsigned period = 0;	// 1 in `period` wp faults of each thread sampled (0: off)
	unsigned stack_bytes = 0;	// bytes of user stack captured per sample, at most
	std::uint64_t samples = 0;	// received and unwound
	std::uint64_t lost = 0;		// not sent, or their kind not: the ring buffer was full
	std::uint64_t no_stack = 0;	// sent without stack bytes: the read of the stack failed
	// sent with part of the slice: a page below the stack's end (where
	// BPF knew it) could not be read; each such stop is a fault taken
	std::uint64_t short_stack = 0;
	std::uint64_t no_maps = 0;	// no maps of the process to unwind by
	std::uint64_t chains_dropped = 0;	// over the distinct chains kept per stack
	double unwind_ms = 0;		// time spent unwinding
	// CPython 3.11: processes whose frames were read, Python frames
	// resolved and not, why a process's frames could not be read
	std::uint64_t py_processes = 0, py_frames = 0, py_unresolved = 0;
	std::string py_note;
	bool operator==(const Unwinding &) const = default;
};

struct Attribution {
	bool by_mapping = false, sites = false;
	Unwinding unwinding;	// period 0: no --unwind
	std::vector<MappingStats> mappings;	// by pid, then copies (most first)
	std::vector<Site> sites_by_pid;	// by pid, then copies
	std::vector<Site> merged;	// stacks merged over every process by frame names
	// Of the members folded after they exited (Folding): their mappings
	// merged by (start, end, label, path) and their sites by frame names,
	// each under the family root's pid, by root then copies.
	std::vector<MappingStats> folded_mappings;
	std::vector<Site> folded_sites;
	AttrErrors errors;
	double symbolize_ms = 0;	// time spent symbolizing
	std::size_t addresses = 0;	// distinct (file, offset) pairs symbolized ("symbolized_addresses")
	std::vector<Note> notes;
	// The mappings and sites of one process.
	std::vector<MappingStats> mappings_of(pid_t pid) const;
	std::vector<Site> sites_of(pid_t pid) const;
};

// Merge per-process sites over every process by their frames' names
// (Attribution::merged), most copies first.
std::vector<Site> merge_sites(const std::vector<Site> &by_pid);
// The same over the members of one family, folded ones included.
std::vector<Site> family_sites(const Attribution &a, const Family &f);
// Add the mappings `from` to `into` (merged by start, end, label, path) and
// the sites `from` to `into` (merged by frame names; `pid` set to `root`).
void fold_mappings(std::vector<MappingStats> &into, const std::vector<MappingStats> &from, pid_t root);
void fold_sites(std::vector<Site> &into, const std::vector<Site> &from, pid_t root);

} // namespace cowtrace
