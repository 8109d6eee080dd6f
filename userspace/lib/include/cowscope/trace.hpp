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
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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
	std::uint64_t thp_wp_faults = 0;
	std::uint64_t thp_fallbacks = 0;
	std::array<std::uint64_t, kHistSlots> latency_log2_ns{};
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
	};
	std::vector<ProgStats> prog_stats() const;	// the same, per loaded program

private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
	Plan plan_;
};

nlohmann::json to_json(const ProcStats &s, const Plan &plan);
nlohmann::json to_json(const std::vector<ProcStats> &procs, const Plan &plan);
// The table: 80 columns, one line per process.
std::string format_table(const std::vector<ProcStats> &procs, const Plan &plan);

} // namespace cowtrace
