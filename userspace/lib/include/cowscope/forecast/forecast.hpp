// Forecast before you fork: a per-machine model of what fork() and the
// copy-on-write copies after it cost, fitted from cowbench runs
// (`cowbench calibrate`), and the readers that feed it from a live process
// without stopping it (`cowscope forecast PID`):
//
//   fork_us = fixed + a*writable_ptes + b*wp_ptes + c*huge_pmds + d*vmas
//             + e*large_folio_ptes + a2*writable_above + b2*wp_above
//             + a3*writable_ptes*scatter + b3*wp_ptes*scatter
//
// writable_ptes / wp_ptes: present 4 KiB PTEs that fork copies (VMAs with an
// anon_vma), still writable (fork must write-protect them) or already
// write-protected (by an earlier fork); huge_pmds: PMD-mapped THPs;
// large_folio_ptes: PTEs of large (mTHP) folios, which 6.9+ kernels copy in
// batches (counted in the PTE terms too: e is their saving, may be < 0);
// writable_above / wp_above: the share of each state's PTEs beyond the
// first kKneePtes (256 MiB of 4 KiB pages) of the process: fork's cost per
// PTE falls for large page tables (measured here: 79 ns per write-protected
// PTE at 256 MiB, 47 ns at 1.5 GiB), so the PTE cost is a line with a knee
// (a2, b2: the change of slope, may be < 0; fitted only when the
// calibration reaches kKneePtes/2 PTEs of that state beyond the knee);
// scatter: the share of virtually adjacent pages that are physically apart
// (Shape::scatter()): fork touches each page's struct page, and scattered
// ones miss the cache (a3, b3: the extra cost per PTE of a fully scattered
// process; fitted when the calibration's scatter spans at least 0.3).
//
// The copy side: distinct pages written during the snapshot, from the
// kernel's soft-dirty bits over a window (clear_refs "4", pagemap bit 55) or
// from a cowtrace record of an earlier snapshot; each costs one 4 KiB copy
// (a write to a shared THP splits the PMD and copies 4 KiB since 5.8).
#pragma once

#include <sys/types.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cowscope/proc/maps.hpp"

namespace cowscope::forecast {

// ---- the model -----------------------------------------------------------

inline constexpr std::size_t kTerms = 10;
// "fixed", "writable_ptes", "wp_ptes", "huge_pmds", "vmas", "large_folio_ptes",
// "writable_ptes_above_knee", "wp_ptes_above_knee", "writable_ptes_scattered",
// "wp_ptes_scattered"
const std::array<const char *, kTerms> &term_names();
// The terms' positions in ForkInputs::row(), Fit::coef and Fit::used.
enum Term : std::size_t {
	kFixed,
	kWritablePtes,
	kWpPtes,
	kHugePmds,
	kVmas,
	kLargeFolioPtes,
	kWritableAboveKnee,
	kWpAboveKnee,
	kWritableScattered,
	kWpScattered,
};
static_assert(kWpScattered + 1 == kTerms, "a name for every term");
// Terms whose coefficient may come out negative (a saving, a change of slope).
bool term_may_be_negative(std::size_t i);
inline constexpr double kKneePtes = 65536;
inline constexpr std::uint64_t kNearPfns = 8; // struct pages 512 bytes apart: still a stream

struct ForkInputs {
	double writable_ptes = 0, wp_ptes = 0, huge_pmds = 0, vmas = 0, large_folio_ptes = 0;
	double scatter = 0; // 0..1, Shape::scatter()
	// {1, writable, wp, huge, vmas, large, writable above the knee, wp above
	// the knee, writable * scatter, wp * scatter}
	std::array<double, kTerms> row() const;
	nlohmann::json to_json() const;
	static ForkInputs from_json(const nlohmann::json &j);
};

// One calibration point: the inputs and every repetition's fork time.
struct Observation {
	std::string label; // "heap=64M thp=never pte=writable vmas=0"
	ForkInputs in;
	std::vector<double> fork_us;
	bool held_out = false; // kept out of the fit for the held-out check
};

struct Fit {
	// Coefficients in microseconds per unit (fixed: microseconds); a term
	// the observations do not vary (all zero) is not fitted: varied[i] and
	// used[i] false. A varied term whose coefficient came out negative (or,
	// for a scatter term, whose PTE term did) was dropped (held at 0, the
	// rest refitted): varied[i] true, used[i] false.
	std::array<double, kTerms> coef{};
	std::array<bool, kTerms> used{};
	std::array<bool, kTerms> varied{};
	// Bootstrap over repetitions: one coefficient vector per resample.
	std::vector<std::array<double, kTerms>> boot;
	// Quantiles of (a repetition's fork time / the fit's prediction) over the
	// fitted observations: the run-to-run noise around the model.
	double ratio_q05 = 1, ratio_q95 = 1;
	std::size_t observations = 0, repetitions = 0;
	double predict(const ForkInputs &in) const;
};

// Weighted least squares on the repetitions' medians (relative errors:
// weight 1/y), non-negative except for term_may_be_negative() (terms that come out
// negative are dropped and the rest refitted; a PTE term's scattered-pages
// refinement goes before the PTE term itself), then `boot_rounds` bootstrap
// resamples of each observation's repetitions. Throws Error when fewer
// observations than used terms. Deterministic for a given seed.
Fit fit_model(const std::vector<Observation> &obs, unsigned boot_rounds = 200, std::uint64_t seed = 1);

// An interval for one prediction: the bootstrap predictions' 5th..95th
// percentiles widened by the run-to-run noise quantiles.
struct Interval {
	double point = 0, lo = 0, hi = 0;
	nlohmann::json to_json() const;
};
Interval predict_interval(const Fit &fit, const ForkInputs &in);

// The held-out check: each held-out observation's median against the fit.
struct HeldOut {
	std::string label;
	double actual_us = 0, predicted_us = 0, lo_us = 0, hi_us = 0, error = 0; // error: |p-a|/a
	bool inside = false;
};

// ---- the calibration file -----------------------------------------------

struct CopyCost {
	double ns_per_4k_copy = NAN;       // a COW fault in a 4 KiB mapping (median)
	double ns_per_4k_copy_min = NAN, ns_per_4k_copy_max = NAN;
	double ns_per_huge_copy = NAN;     // a COW fault in a PMD-mapped THP (split + 4 KiB copy)
	double ns_per_huge_copy_min = NAN, ns_per_huge_copy_max = NAN;
	double kb_per_written_4k = NAN;    // Private_Dirty growth per written page, 4 KiB heap
	double kb_per_written_huge = NAN;  // the same with a THP heap
};

struct Calibration {
	Fit fit;
	CopyCost copy;
	std::vector<Observation> observations;
	std::vector<HeldOut> held_out;
	nlohmann::json machine; // machine_metadata()
	std::string kernel, hostname;
	double settle_s = 0; // CalibrateConfig::settle_s of the run (0 in files from before it)
	nlohmann::json to_json() const;
	static Calibration from_json(const nlohmann::json &j); // throws Error naming the bad field
};

// Where this machine's calibration lives: $COWSCOPE_CALIBRATION_DIR, else
// /var/lib/cowscope/calibration as root, else $XDG_STATE_HOME/cowscope/
// calibration (~/.local/state/...); the file is <hostname>-<kernel>.json.
std::string default_calibration_path();
// Atomic write (mkdir -p the folder first).
void save_calibration(const Calibration &c, const std::string &path);
// Throws Error: "no calibration at PATH: run `cowbench calibrate` (as root:
// ...) on this machine first, or pass --calibration FILE" when missing.
Calibration load_calibration(const std::string &path);

// ---- calibration runs (cowbench calibrate) --------------------------------

struct CalibrateConfig {
	std::vector<std::uint64_t> heaps = {16ull << 20, 64ull << 20, 256ull << 20, 1ull << 30};
	std::vector<unsigned> extra_vmas = {0, 4000};
	bool thp = true;           // also THP heaps (when the kernel has THP)
	bool large_folios = true;  // also 64K folio heaps (root, mTHP controls)
	unsigned repeat = 7;
	unsigned boot_rounds = 200;
	// Idle before each timed fork (BenchConfig::settle_s). A process that
	// is forecast has rarely just touched all its memory; here a heap that
	// sat even 50 ms idle forked up to 2x slower than one forked at once
	// (110 MiB: 1.7 ms hot, 2.7-3.7 ms after 0.25-5 s idle; caches of a
	// shared host gone cold), and Redis forked like the idle heap.
	double settle_s = 0.25;
};

using CalibrateProgress = std::function<void(unsigned done, unsigned total, const std::string &label)>;

// Runs cowbench's fork measurement (run_bench) over the grid, every other
// configuration held out for the check, fits on the rest (the check), then
// on all (the saved model); measures the copy costs. Stops early (keeping
// what it measured) on request_stop().
Calibration run_calibration(const CalibrateConfig &cfg, const CalibrateProgress &progress = {});
std::string calibration_report(const Calibration &c);

// ---- the page-table shape of a live process ------------------------------

struct VmaShape {
	std::uint64_t start = 0, end = 0;
	std::string perms, name;
	std::uint64_t rss_kb = 0, anonymous_kb = 0, anon_huge_kb = 0, pmd_mapped_kb = 0, swap_kb = 0;
	bool dontcopy = false;   // VmFlags dc: fork skips it
	bool copies_ptes = false; // fork copies its page tables (anon_vma, PFNMAP/MIXEDMAP, hugetlb)
	bool cow_writable = false; // private and writable: its PTEs may be writable
	std::uint64_t ptes() const; // present 4 KiB PTEs
	std::uint64_t huge_pmds() const { return anon_huge_kb / 2048; }
};

struct Shape {
	pid_t pid = 0;
	std::vector<VmaShape> vmas;
	std::uint64_t vma_count = 0;        // every VMA fork duplicates (not dc)
	std::uint64_t ptes_cow_writable = 0; // present PTEs in private writable copied VMAs
	std::uint64_t ptes_other = 0;       // present PTEs in other copied VMAs (always write-protected for fork)
	std::uint64_t huge_pmds = 0;
	std::uint64_t pte_tables = 0;       // PTE table pages fork copies (2 MiB blocks with present PTEs)
	std::uint64_t anon_kb = 0;          // Anonymous of the copied VMAs
	// With the module: its per-VMA writable/cow counts.
	std::string state_source = "none"; // "module" or "none"
	std::uint64_t module_writable = 0, module_cow = 0, large_folio_ptes = 0;
	bool large_folios_known = false;
	// Physical scatter: of the pairs of virtually adjacent present pages
	// (with visible PFNs: root), those more than kNearPfns apart. Fork
	// touches each page's struct page in virtual order: scattered pages
	// miss the cache (measured here: a 1.5 GiB heap faulted in random order
	// forks 1.5x (writable) to 2.2x (write-protected) slower than one
	// faulted in order).
	std::uint64_t pfn_pairs = 0, pfn_pairs_apart = 0;
	double scatter() const
	{
		return pfn_pairs ? static_cast<double>(pfn_pairs_apart) / static_cast<double>(pfn_pairs) : NAN;
	}
	double read_ms = 0; // time taken to read it
	nlohmann::json to_json() const;
};

// The shape of each VMA of /proc/PID/smaps as proc::parse_smaps() read it
// (tests feed recorded text through the same parser).
std::vector<VmaShape> vma_shapes(const std::vector<proc::SmapsEntry> &smaps);
// Read smaps and pagemap of `pid` (never stops it; pagemap only over VMAs
// with resident pages). with_module: use the module's views when loaded.
// Throws Error/SysError naming the pid ("process N exited", permission).
Shape read_shape(pid_t pid, bool with_module = true);

// ---- the copy side ---------------------------------------------------------

struct CopySample {
	double t_s = 0;
	std::uint64_t pages = 0;      // distinct pages (present at t=0) written since t=0, 4 KiB ones
	std::uint64_t huge_blocks = 0; // of those, 2 MiB PMD-mapped blocks (soft-dirty marks the whole PMD)
};

struct CopySide {
	std::string source = "none"; // "soft-dirty", "cowtrace record", "none"
	std::string note;
	double window_s = 0;	// what was measured: the soft-dirty window, or each recorded snapshot's length
	double snapshot_s = 0;	// the snapshot the pages are for: window_s unless project_copies() moved it
	std::vector<CopySample> curve;    // soft-dirty: distinct pages written against time
	std::vector<double> per_snapshot;   // cowtrace records: each snapshot's copies
	std::vector<double> per_snapshot_s; // and its length
	double pages_point = 0, pages_lo = 0, pages_hi = 0; // copies in a snapshot of snapshot_s
	nlohmann::json to_json() const;
};

// Does this kernel have soft-dirty (CONFIG_MEM_SOFT_DIRTY)? Writes nothing:
// checks the pid's clear_refs is there and a page of our own written after
// clearing our own bits reads soft-dirty.
bool soft_dirty_supported(std::string *why = nullptr);
// Clear the target's soft-dirty bits ("4" to clear_refs), then sample the
// distinct pages written (among those present at t=0) every `step_s` for
// `window_s` (0: window/10, at least 0.25 s). Throws Error when soft-dirty is missing or the pid exits.
CopySide measure_soft_dirty(pid_t pid, double window_s, double step_s = 0,
			    const std::function<void(double)> &progress = {});
// From a cowtrace JSON record (schema 2, read by cowtrace's own reader,
// report/json.hpp): the target's snapshot children (ppid == pid; every entry
// when the pid is not in it), each snapshot `trace_seconds` long: each one's
// copies plus an equal share of the parent's. Throws Error naming the file
// and what is wrong (a bare array: cowtrace's JSON before schema 2).
CopySide copies_from_trace(const nlohmann::json &record, pid_t pid, double trace_seconds,
			   const std::string &what = "--from-trace");
// Several records (each from copies_from_trace) as one copy side: every
// snapshot of every record, each with its own length; window_s the median
// length; point the median, interval their range widened to a 90%
// prediction interval for a next snapshot like them (Student's t over their
// spread: the range of n alone holds a next one only (n-1)/(n+1) of the
// time). Throws Error when `parts` is empty.
CopySide combine_records(const std::vector<CopySide> &parts);
// Moves a copy side measured over window_s to a snapshot of snapshot_s
// seconds, for a target whose writes can copy at most `pages_total` pages.
// Point: a steady writer over uniformly random pages, whose distinct pages
// grow as c(t) = N (1 - (1 - c1/N)^(t/t1)) through the measured (t1, c1).
// Interval: what holds for ANY steady writer, whose distinct-pages curve is
// non-decreasing and concave from (0, 0): between c1 and c1*T/t1 (T > t1),
// or between c1*T/t1 and c1 (T < t1). A soft-dirty curve that reaches T is
// read at T instead. A record of several snapshots: each one projected,
// the median of the points, the widest bounds widened to the 90% prediction
// interval of the projected points (capped at pages_total). Throws
// UsageError for snapshot_s <= 0.
void project_copies(CopySide &c, double snapshot_s, double pages_total);
// The model's point alone (exposed for tests): c1 pages over t1 seconds, at T.
double saturating_copies(double c1, double t1, double T, double pages_total);

// ---- the forecast --------------------------------------------------------------

struct Forecast {
	Shape shape;
	ForkInputs writable_case, wp_case; // without the module: both bounds
	ForkInputs inputs;                 // with the module: the observed state
	Interval fork_ms;                  // the stated interval (the range of both cases without the module)
	Interval fork_writable_ms, fork_wp_ms;
	bool state_known = false;
	bool scatter_known = false;
	std::vector<std::pair<std::string, double>> contributions_ms; // term -> ms (upper case)
	double thp_what_if_ms = NAN; // the same anonymous memory in PMD-mapped THPs
	CopySide copy;
	Interval cow_mib, peak_extra_mib;
	double copy_cpu_ms = NAN; // the copies' fault time at the calibrated cost
	std::string calibration_path;
	double calibration_settle_s = 0; // Calibration::settle_s: 0, an older file of hot forks
	nlohmann::json to_json() const;
	std::string to_text() const;
};

Forecast make_forecast(const Calibration &cal, const Shape &shape, const CopySide &copy);
// The pages a write can copy: present 4 KiB pages of the private writable
// mappings fork copies, a PMD-mapped THP counted as 512 (a write to one
// splits it and copies 4 KiB).
double copyable_pages(const Shape &s);

// What `cowscope forecast PID` does: load the calibration (default path when
// empty), read the shape, then the copy side (--window by soft-dirty, else
// --from-trace FILE with --trace-seconds, else none). Throws UsageError for
// bad combinations, Error for what failed.
struct ForecastRequest {
	pid_t pid = 0;
	double window_s = 0;       // --window
	std::vector<std::string> from_trace; // --from-trace FILE, repeatable
	std::vector<double> trace_seconds;   // --trace-seconds: one for all records, or one per record
	double snapshot_s = 0;     // --snapshot: the snapshot's length (default: as measured; the
				   // records' median length when they differ)
	std::string calibration;   // --calibration FILE
	bool use_module = true;
};
Forecast forecast_pid(const ForecastRequest &req, const std::function<void(double)> &window_progress = {});

} // namespace cowscope::forecast
