// trace/ (cowtrace_core: libbpf and libdw, over cowcore): the tracer shared
// by the cowtrace program, the Python bindings and the tests. A Tracer is a
// session (src/trace/session.*: probe the kernel, open the BPF object, set
// its read-only globals, turn off the programs of the methods not chosen,
// load, attach, read the counters) and, with --by-mapping or --sites, a
// maps watcher (watcher.*) and the attribution after the run
// (attribution.*, symbols.*). The destructor detaches and frees everything
// (one exit path, also on exceptions). What a session found, and every
// output made of it, is report/ (model.hpp, text.hpp, json.hpp): nothing
// here prints. May include base/, proc/, report/ and metrics/.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cowscope/base/process.hpp"
#include "cowscope/report/json.hpp"
#include "cowscope/report/model.hpp"
#include "cowscope/report/text.hpp"

namespace cowtrace {

// --unwind-stack: a sample captures the user stack in whole pages from the
// page of rsp up, at most kUnwindStackMax bytes.
constexpr unsigned kUnwindPage = 4096;
constexpr unsigned kUnwindStackMax = 16384;

struct Options {
	bool follow_children = false;
	bool verbose = false;		// print probe results on stderr
	Method method = Method::automatic;
	// Attribute each copy/reuse to its mapping (VMA) and/or to the user
	// stack that faulted. Off, the BPF code for them is not loaded.
	bool by_mapping = false;
	bool sites = false;
	// --unwind (needs sites): 1 in unwind_period write-protect faults of
	// each thread sends its user registers and unwind_bytes of its user
	// stack from the page of rsp up (whole pages, at most kUnwindStackMax)
	// to a ring buffer, unwound from the CFI of its files in userspace
	// (0: none).
	unsigned unwind_period = 0;
	unsigned unwind_bytes = 8192;
	// --serve: also track every process created from now on (--all), or
	// every process whose comm is match_comm at fork or exec (--comm).
	bool track_all = false;
	std::string match_comm;
	// --serve: exited processes are untracked and their slots reused
	// (untrack(), recycle()); a pid reused meanwhile starts afresh.
	bool long_running = false;
	// Tests only: the stack hash bits that choose a stack's first slot
	// (fewer force collisions, which must be counted and kept apart).
	unsigned stack_hash_bits = 31;
	// Tests only: the thread-id bits that choose a thread's slot for its
	// fault in progress (at most 14; fewer make threads share slots).
	unsigned pend_slot_bits = 14;
	// The maps watcher's rounds (--by-mapping, --sites): its poll of the
	// tracked processes besides the fork/exec events. Tests only set it
	// longer, so that only the events can get a process's maps read.
	unsigned watch_round_ms = 10;
	// Exited members of a family (forked without exec) are folded into
	// their family once this many wait, or at once when a table overflowed
	// (fold_exited()): their BPF state freed, their figures kept by family.
	// Not with long_running (--serve untracks exited processes itself).
	std::size_t fold_batch = 256;
};

// Entries in the tracking maps now (procs, infos), the slots ever handed
// out and those waiting for reuse: the leak check's figures.
struct MapUsage {
	std::size_t procs = 0, infos = 0, free_slots = 0;
	std::uint64_t slots_used = 0;
};

// One loaded program's run time and count (kernel.bpf_stats_enabled=1).
struct ProgStats {
	std::string name;
	std::uint64_t run_time_ns = 0, run_cnt = 0;
	std::uint64_t missed = 0;	// runs the kernel skipped (recursion_misses)
};

// Why BPF cannot be used here ("" when it can): not root, no BTF.
std::string bpf_unavailable_reason();

class Tracer {
public:
	using Usage = MapUsage;
	using ProgStats = cowtrace::ProgStats;

	explicit Tracer(const Options &opts);	// throws cowscope::Error
	~Tracer();
	Tracer(const Tracer &) = delete;
	Tracer &operator=(const Tracer &) = delete;

	// Start counting for process `tgid` (and, with follow_children, every
	// process it forks from now on).
	void track(pid_t tgid, pid_t ppid, const std::string &comm);
	std::vector<ProcStats> snapshot() const;
	std::optional<ProcStats> stats(pid_t tgid) const;
	const Plan &plan() const;
	// Children not tracked because every process slot was taken.
	std::uint64_t dropped() const;
	// --unwind: the CPython processes whose frames are read so far.
	std::uint64_t python_processes() const;
	// --unwind: wait until the frames of at least one CPython process are
	// read; false if none was within `timeout` (or --unwind is off).
	bool wait_python_processes(std::chrono::milliseconds timeout) const;
	// Sum of run_time_ns / run_cnt over the attached programs (needs
	// kernel.bpf_stats_enabled=1 to be non-zero).
	std::pair<std::uint64_t, std::uint64_t> run_stats() const;
	std::vector<ProgStats> prog_stats() const;	// the same, per loaded program

	// For a long-running tracer (--serve): stop tracking `tgid` and give
	// its slot back (zeroed on every CPU) for a later process; false if it
	// was not tracked. recycle() frees the slots that pid reuse left
	// behind (the BPF side queues them); call it now and then.
	bool untrack(pid_t tgid);
	std::size_t recycle();
	Usage usage() const;
	// snapshot() in a few batch syscalls (bpf_map_lookup_batch: Linux 5.6;
	// falls back to snapshot() where the kernel refuses them), unsorted;
	// also fills usage() figures. For --serve's scrapes.
	std::vector<ProcStats> snapshot_batch(Usage *usage = nullptr) const;

	// --by-mapping / --sites: read the attribution maps and symbolize
	// (call it after the run, or now and then: it is not cheap).
	Attribution attribution() const;
	// Fold exited family members (Options::fold_batch); call it now and
	// then while tracing (cowtrace does every 50 ms). How many were folded.
	std::size_t fold_exited(bool force = false);
	// What was folded: by family, with the root of every folded pid. The
	// live processes are snapshot()'s; together they are every process.
	Folding folding() const;
	// Snapshot the maps of every tracked live process now (the watcher
	// does it by itself; call before stopping to catch late mappings).
	void refresh_memory();

private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
};

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
