// cowtrace_core (in the core library, userspace/lib): the tracer shared by
// the cowtrace program, the Python bindings and the tests. A Tracer owns the
// BPF skeleton and its links: it probes the kernel,
// opens the object, sets its read-only globals, turns off the programs of
// the methods not chosen, loads, attaches; the destructor detaches and frees
// everything (one exit path, also on exceptions).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cowscope/base/process.hpp"

namespace cowtrace {

inline constexpr int kHistSlots = 32;

enum class Method { automatic, fentry, kprobe, vmevent, tracepoint };
const char *method_name(Method m);
// "auto", "fentry", "kprobe", "vmevent", "tracepoint"; nullopt for anything else.
std::optional<Method> parse_method(const std::string &text);

struct Options {
	bool follow_children = false;
	bool verbose = false;		// print probe results on stderr
	Method method = Method::automatic;
	// Attribute each copy/reuse to its mapping (VMA) and/or to the user
	// stack that faulted. Off, the BPF code for them is not loaded.
	bool by_mapping = false;
	bool sites = false;
	// --serve: also track every process created from now on (--all), or
	// every process whose comm is match_comm at fork or exec (--comm).
	bool track_all = false;
	std::string match_comm;
	// --serve: exited processes are untracked and their slots reused
	// (untrack(), recycle()); a pid reused meanwhile starts afresh.
	bool long_running = false;
};

// What the probes found and what was attached.
struct Plan {
	Method method = Method::tracepoint;
	bool tp_btf = false;		// BTF-typed tracepoints (else classic)
	bool copy_hook = false;		// wp_page_copy attachable (else alloc window)
	bool huge_hook = false;		// do_huge_pmd_wp_page attachable
	bool latency = false;		// fexit histogram of do_wp_page latency
	bool reuse_hook = false;	// wp_page_reuse attachable (fentry/kprobe)
	std::string describe() const;	// one line for humans
	// How each figure is obtained, for the JSON and -v: "wp_page_copy",
	// "mm_page_alloc in do_wp_page", "mm_page_alloc in the fault";
	// "wp_page_reuse", "do_wp_page returned without a copy",
	// "derived: wp_faults - cow_copies".
	const char *copies_by() const;
	const char *reuses_by() const;
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
	// the thread mid-fault without a sched_switch event); in no mapping
	// or site either
	std::uint64_t unclassified = 0;
	std::uint64_t thp_wp_faults = 0;
	std::uint64_t thp_fallbacks = 0;
	std::array<std::uint64_t, kHistSlots> latency_log2_ns{};
};

// --by-mapping: one VMA of one process, as seen at its first fault.
struct MappingStats {
	pid_t pid = 0;
	std::uint64_t start = 0, end = 0;	// 0-0: VMA not found at the fault
	std::string label;	// heap, stack, data, bss, mmap-anon, file-private, file-shared, text, other, unknown
	std::string path;	// file mappings: the path (from /proc/PID/maps), else the file name
	std::uint64_t wp_faults = 0, copies = 0, reuses = 0;
};

// What is kept of a process while it lives, so that its frames resolve
// after it exited: /proc/PID/maps and an open fd per mapped file (deleted
// files included).
struct ProcMemory;

// One symbolized frame.
struct Frame {
	std::uint64_t ip = 0;
	std::string func;	// "" when no symbol covers ip
	std::uint64_t offset = 0;	// ip - symbol start
	std::string module;	// path of the mapped file; "" when ip is in no file mapping
	std::string file;	// source file (debug information), else ""
	int line = 0;
	bool guess = false;	// from .dynsym only: nearest exported symbol
	std::string text() const;	// "func+0x1a (module) file:line", "0x7f.. (module)", "[unknown 0x..]"
	std::string name() const;	// func, or "module+0xoff", or "[unknown]"
};

// --sites: one user stack of one process (frame 0 = the faulting ip, exact).
struct Site {
	pid_t pid = 0;	// 0 in merged lists
	std::string comm;
	std::int32_t stackid = -1;	// < 0: no stack recorded
	std::uint64_t copies = 0, reuses = 0;
	std::vector<Frame> frames;
	// Frames resolved before the first address outside every mapped file
	// (the frame-pointer walk went astray there, or ended), out of frames.size().
	std::size_t unwound = 0;
	std::uint32_t pids = 1;	// merged lists: processes that had this stack
};

struct AttrErrors {
	std::uint64_t vma_fail = 0, vma_full = 0, stack_fail = 0, site_full = 0;
	std::uint64_t no_maps = 0;	// processes whose maps could not be read in time
};

// Everything --by-mapping and --sites found; symbolized after the run.
struct Attribution {
	bool by_mapping = false, sites = false;
	std::vector<MappingStats> mappings;	// by pid, then copies (most first)
	std::vector<Site> sites_by_pid;	// by pid, then copies
	std::vector<Site> merged;	// stacks merged over every process by frame names
	AttrErrors errors;
	double symbolize_ms = 0;	// time spent symbolizing
	std::size_t addresses = 0;	// distinct (pid, address) symbolized
	std::vector<std::string> notes;	// e.g. "names in /usr/bin/python3.11 are guesses (.dynsym only)"
};

// Why BPF cannot be used here ("" when it can): not root, no BTF.
std::string bpf_unavailable_reason();

class Tracer {
public:
	explicit Tracer(const Options &opts);	// throws cowscope::Error
	~Tracer();
	Tracer(const Tracer &) = delete;
	Tracer &operator=(const Tracer &) = delete;

	// Start counting for process `tgid` (and, with follow_children, every
	// process it forks from now on).
	void track(pid_t tgid, pid_t ppid, const std::string &comm);
	std::vector<ProcStats> snapshot() const;
	std::optional<ProcStats> stats(pid_t tgid) const;
	const Plan &plan() const { return plan_; }
	// Children not tracked because every process slot was taken.
	std::uint64_t dropped() const;
	// Sum of run_time_ns / run_cnt over the attached programs (needs
	// kernel.bpf_stats_enabled=1 to be non-zero).
	std::pair<std::uint64_t, std::uint64_t> run_stats() const;
	struct ProgStats {
		std::string name;
		std::uint64_t run_time_ns = 0, run_cnt = 0;
		std::uint64_t missed = 0;	// runs the kernel skipped (recursion_misses)
	};
	std::vector<ProgStats> prog_stats() const;	// the same, per loaded program

	// For a long-running tracer (--serve): stop tracking `tgid` and give
	// its slot back (zeroed on every CPU) for a later process; false if it
	// was not tracked. recycle() frees the slots that pid reuse left
	// behind (the BPF side queues them); call it now and then.
	bool untrack(pid_t tgid);
	std::size_t recycle();
	// Entries in the tracking maps now (procs, infos), the slots ever
	// handed out and those waiting for reuse: the leak check's figures.
	struct Usage {
		std::size_t procs = 0, infos = 0, free_slots = 0;
		std::uint64_t slots_used = 0;
	};
	Usage usage() const;
	// snapshot() in a few batch syscalls (bpf_map_lookup_batch: Linux 5.6;
	// falls back to snapshot() where the kernel refuses them), unsorted;
	// also fills usage() figures. For --serve's scrapes.
	std::vector<ProcStats> snapshot_batch(Usage *usage = nullptr) const;

	// --by-mapping / --sites. A watcher thread snapshots the maps of each
	// tracked process when first seen and every `refresh` while it lives;
	// attribution() reads the maps and symbolizes (call it after the run,
	// or now and then: it is not cheap).
	Attribution attribution() const;
	// Snapshot the maps of every tracked live process now (the watcher
	// does it by itself; call before stopping to catch late mappings).
	void refresh_memory();

private:
	void watch();
	struct Impl;
	std::unique_ptr<Impl> impl_;
	Plan plan_;
};

nlohmann::json to_json(const ProcStats &s, const Plan &plan);
nlohmann::json to_json(const std::vector<ProcStats> &procs, const Plan &plan);
// The table: 80 columns, one line per process.
std::string format_table(const std::vector<ProcStats> &procs, const Plan &plan);

// --by-mapping, --sites N: text, JSON, folded stacks (copies only, one line
// "comm;outer;...;leaf COUNT" per stack: flame-graph tools, speedscope).
std::string format_mappings(const Attribution &a, const std::vector<ProcStats> &procs);
std::string format_sites(const Attribution &a, const std::vector<ProcStats> &procs, std::size_t top);
nlohmann::json to_json(const Attribution &a);
std::string folded(const Attribution &a, const std::vector<ProcStats> &procs);

// The JSON of a session: the array of processes (to_json above) when no
// attribution was asked for; else {"processes": [... each with its
// "mappings" and "sites"], "merged_sites", "attribution_errors",
// "symbolize_ms", "notes"}.
nlohmann::json report_json(const std::vector<ProcStats> &procs, const Plan &plan, const Attribution *a);

// A command forked and held at a barrier until start(), so that it can be
// tracked before it runs an instruction of its own; exec failures come back
// through a close-on-exec pipe. The destructor kills and reaps it if it is
// still running.
class Command {
public:
	explicit Command(const std::vector<std::string> &argv);	// throws cowscope::SysError
	Command(const Command &) = delete;
	Command &operator=(const Command &) = delete;
	pid_t pid() const { return pid_; }
	void start();	// let it exec; throws cowscope::Error if exec failed
	bool done(int &status);	// true once reaped (wait status in `status`)
	int wait();	// block until it exits; the wait status
	// Destruction kills and reaps it if it still runs.

private:
	pid_t pid_ = -1;
	bool reaped_ = false;
	int status_ = 0;
	cowscope::Pipe go_, err_;	// go: the parent's signal to exec; err: exec's errno
	cowscope::Child child_;
	std::string name_;
};

// Run `argv` under a new Tracer (children followed) until it exits, for
// the Python module and other one-shot consumers: the report_json() of
// the session plus {"exit_status", "method", "plan"}.
nlohmann::json trace_command(const std::vector<std::string> &argv, Options opts);

} // namespace cowtrace
