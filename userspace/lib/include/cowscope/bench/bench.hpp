// cowbench's engine: fork a process with a populated private heap, let one
// side write part of it, and measure fork latency and copy-on-write cost
// against an eager copy of the same pages. Usable without a CLI (the Python
// bindings call it); every validation error is a UsageError whose message
// names the command-line option, exactly as cowbench prints it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cowscope/bench/pattern.hpp"
#include "cowscope/base/stats.hpp"

namespace cowscope {

enum class Writer { child, parent, both };
// system: no madvise (the system THP setting decides); never: MADV_NOHUGEPAGE;
// madvise and always: MADV_HUGEPAGE (the heap asks for huge pages).
enum class Thp { system, never, madvise, always };
enum class Spawn { fork, vfork, posix_spawn, fork_exec };
// writable: the parent rewrites its heap before every fork (the first-fork
// state). readonly: a throw-away fork first write-protects the PTEs.
enum class PteState { writable, readonly };

struct BenchConfig {
	std::uint64_t heap = 64ull << 20; // bytes (rounded up to whole pages)
	double write_ratio = 0.5;
	Writer writer = Writer::child;
	Pattern pattern;
	bool read = false; // the writer also reads the pages it does not write
	unsigned children = 1;
	Thp thp = Thp::system;
	// Folio size of the heap in bytes (--folio 4K..2M), 0 = not set. Set,
	// it decides the heap's THP advice itself (MADV_NOHUGEPAGE for 4K,
	// MADV_HUGEPAGE otherwise, with the per-size sysfs controls set for the
	// run by a FolioGuard): --thp must then stay "system".
	std::uint64_t folio = 0;
	Spawn spawn = Spawn::fork;
	unsigned repeat = 5;
	unsigned warmup = 1;
	PteState pte_state = PteState::writable;
	// --populate random: fault the heap in for the first time in a random
	// page order, so that its pages are physically scattered as a
	// long-running allocator's are (fork then misses the cache on each
	// page's struct page); seq (default): in address order.
	bool scattered = false;
	// --settle SECONDS: idle this long between preparing the heap and each
	// timed fork, as a long-running process's memory is rarely all just
	// touched when it forks. 0 (default): fork at once. On a VM with shadow
	// page tables the kernel's part of a writable 1.5 GiB fork went from a
	// median of 21.6 ms to 29.0 ms (17-35) with 3 s idle
	// (results/2026-12-02-fork-split/); on a KVM guest with hardware paging
	// a 110 MiB fork went from 1.7 ms to 2.7-3.7 ms after 0.25-5 s
	// (results/2026-12-02-forecast-kvm/). `cowbench calibrate` idles 0.25 s.
	double settle_s = 0;
	double timeout_s = 60; // per phase of a repetition; a child past it is killed
	std::uint64_t seed = 1; // for --pattern random
	// What the exec'ing spawn modes run: by default cowbench itself with its
	// hidden no-op argument. Hosts other than cowbench (Python, the tests)
	// set this to a trivial program, e.g. {"/bin/true"}.
	std::string exec_path = "/proc/self/exe";
	std::vector<std::string> exec_args = {"--exec-noop"};
	bool check_memory = true; // refuse heaps that do not fit MemAvailable
	bool debug_child_hang = false; // tests only: the child never writes
};

// Set one option from its text form, as typed on the command line. Names
// are the long options with or without dashes, '_' or '-': "heap",
// "write-ratio", "write_ratio", "--writer", "pattern", "read", "children",
// "thp", "spawn", "repeat", "warmup", "pte-state", "timeout", "seed",
// "exec" (path), "folio", "populate", "settle". Throws UsageError("--heap: expected SIZE like 64M ...").
void set_option(BenchConfig &cfg, std::string_view name, std::string_view value);
// Defaults, then every option of the map, then validate().
BenchConfig config_from_options(const std::map<std::string, std::string> &options);
// Cross-option checks (throws UsageError).
void validate(const BenchConfig &cfg);

Writer parse_writer(std::string_view text, std::string_view what = "--writer");
Thp parse_thp(std::string_view text, std::string_view what = "--thp");
Spawn parse_spawn(std::string_view text, std::string_view what = "--spawn");
PteState parse_pte_state(std::string_view text, std::string_view what = "--pte-state");
unsigned parse_count(std::string_view text, std::string_view what, unsigned min, unsigned max);
bool parse_bool(std::string_view text, std::string_view what);
std::string to_string(Writer w);
std::string to_string(Thp t);
std::string to_string(Spawn s);
std::string to_string(PteState p);

// Memory a run may need at peak: the heap, one copy of the written pages per
// writing process, and the eager-copy buffer.
std::uint64_t bench_memory_needed(const BenchConfig &cfg);
// Throws UsageError when bench_memory_needed() exceeds `available` bytes.
void check_memory_fits(const BenchConfig &cfg, std::uint64_t available);

// One repetition. Times in microseconds; NaN (JSON null) = not measured.
struct Repetition {
	unsigned index = 0;
	std::string status = "ok"; // "ok", "timeout", "error: ..."
	double fork_us = NAN;        // the fork call in the parent (first child)
	double child_start_us = NAN; // fork call start -> the child's first instruction
	double child_write_us = NAN; // the writer's write phase (slowest child if several)
	double child_read_us = NAN;  // with --read: reading the pages not written
	double cow_faults = NAN;     // the writers' minor faults in the write phase (sum)
	double ns_per_cow_fault = NAN;
	double cow_private_dirty_kb = NAN; // Private_Dirty growth of the writers (sum)
	double eager_copy_us = NAN;  // memcpy of the same pages into a populated buffer
	double ns_per_page_copy = NAN;
	double cow_eager_ratio = NAN; // write phase per writer / eager copy
	double parent_write_us = NAN;   // writer both: the parent's own figures
	double parent_cow_faults = NAN; // (writer parent: same as child_* / cow_*)
	double exec_total_us = NAN;  // exec spawn modes: spawn call -> child reaped
	std::vector<double> fork_us_children; // every child's fork call (children > 1)
};

struct BenchSetup {
	std::uint64_t pages = 0, pages_written = 0, page_size = 0;
	double populate_us = NAN;
	double first_touch_faults = NAN;
	double ns_per_first_touch_fault = NAN;
	std::uint64_t anon_huge_kb = 0; // AnonHugePages of the heap after populating
	std::string thp_system;         // the system's THP setting
	std::string thp_advice;         // "MADV_NOHUGEPAGE", "MADV_HUGEPAGE", "none"
	// With --folio: what the heap got after populating (folio_observed) and
	// after the last repetition (folio_observed_end), FolioObservation JSON;
	// the share of the heap in folios of the requested size; the per-size
	// system-wide fault counters' growth over the populate step; the sysfs
	// controls changed for the run.
	nlohmann::json folio_observed, folio_observed_end, folio_counters;
	double folio_fraction = NAN, folio_fraction_end = NAN;
	std::vector<std::string> folio_controls_changed;
};

struct BenchResult {
	BenchConfig config;
	BenchSetup setup;
	std::string pte_state; // what was measured: "writable" or "readonly"
	std::vector<Repetition> repetitions;
	bool interrupted = false; // stopped by request_stop() (Ctrl-C)
	unsigned timeouts = 0;    // repetitions whose child was killed
	nlohmann::json machine;
};

// done/total repetitions (warm-up excluded).
using ProgressFn = std::function<void(unsigned done, unsigned total)>;

// Run the benchmark. Throws UsageError for bad configurations (before
// anything is allocated), Error/SysError for failures. Children are always
// killed and reaped, whatever happens.
BenchResult run_bench(const BenchConfig &cfg, const ProgressFn &progress = {});

// Ask a running run_bench/run_sweep to stop after the current repetition
// (async-signal-safe: call it from a SIGINT handler). clear_stop() re-arms.
void request_stop() noexcept;
void clear_stop() noexcept;
bool stop_requested() noexcept;

// The per-repetition figure names, in output order (JSON keys, CSV columns).
const std::vector<std::string> &repetition_keys();
double repetition_value(const Repetition &r, std::string_view key);

nlohmann::json params_json(const BenchConfig &cfg);
// {"tool":"cowbench","params":..,"machine":..,"pte_state":..,"setup":..,
//  "repetitions":[..],"summary":{key:{median,min,max,mean,n}},"status":..}
nlohmann::json to_json(const BenchResult &r);
std::string to_csv(const BenchResult &r);
std::string to_table(const BenchResult &r);

// For the hidden "--exec-noop" argument and the plain fork loop (lmbench's
// lat_proc) the benchmark compares against: `iterations` fork+_exit+waitpid
// cycles; returns each fork call's duration in microseconds.
std::vector<double> plain_fork_loop(unsigned iterations, std::vector<double> *cycle_us = nullptr);

} // namespace cowscope
