// Large folios for a private anonymous heap: which sizes the kernel offers
// (multi-size THP, /sys/kernel/mm/transparent_hugepage/hugepages-<N>kB/),
// an RAII guard that sets the per-size controls so that a MADV_HUGEPAGE
// heap gets folios of one size and restores the previous settings on every
// exit path (also from a signal handler), and what a heap really got,
// read from the kernel's ground truth (/proc/self/pagemap + /proc/kpageflags,
// the per-size stats/anon_fault_alloc counters, smaps).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cowscope/base/fd.hpp"

namespace cowscope {

// "4K", "64K", "2M".
std::string folio_name(std::uint64_t bytes);

// Parse "64K", "64k", "64KB", "65536": a power of two from 4K to 2M. Throws
// UsageError naming `what` otherwise. Whether this kernel offers the size
// is check_folio_offered()'s question (8K parses; no kernel offers it).
std::uint64_t parse_folio(std::string_view text, std::string_view what = "--folio");

// The THP sysfs folder; tests point it at a fake tree.
std::string thp_sysfs_root();
void set_thp_sysfs_root(const std::string &path); // "" = the real one

// Anonymous folio sizes this kernel offers: 4K always; every
// hugepages-<N>kB with an `enabled` control; 2M through the top-level
// control on kernels without per-size controls.
std::vector<std::uint64_t> folio_sizes_offered();
// Whether the kernel has per-size (mTHP) controls.
bool has_mthp_controls();

// Throws UsageError unless `bytes` is offered:
// "--folio: this kernel offers 4K 16K ... 2M; 8K is not one".
void check_folio_offered(std::uint64_t bytes, std::string_view what = "--folio");

// While alive, a MADV_HUGEPAGE mapping gets folios of `bytes` and no other
// large size: the requested size's control is set to "madvise" (unless it
// already allows madvised mappings), every other size that would allow a
// madvised mapping is set to "never"; on kernels without per-size controls
// the top-level control is used for 2M. 4K changes nothing (the heap uses
// MADV_NOHUGEPAGE instead) and needs no privileges. Everything changed is
// written back by the destructor, and by restore_folio_controls_now() from a
// signal handler. Root only: throws Error otherwise. One guard at a time per
// process (throws Error on a second).
class FolioGuard {
public:
	FolioGuard() = default;
	explicit FolioGuard(std::uint64_t bytes);
	FolioGuard(FolioGuard &&o) noexcept;
	FolioGuard &operator=(FolioGuard &&o) noexcept;
	FolioGuard(const FolioGuard &) = delete;
	FolioGuard &operator=(const FolioGuard &) = delete;
	~FolioGuard();

	// The controls changed, as "path: old -> new" (for reports and tests).
	const std::vector<std::string> &changes() const { return changes_; }
	// Restore now (idempotent).
	void restore() noexcept;

private:
	void apply(std::uint64_t bytes);
	bool active_ = false;
	std::vector<std::string> changes_;
	// flock(2) on the machine-wide lock file, held from before the first
	// change until after the restore (a member: released after ~FolioGuard's
	// body), so that two processes never interleave their changes.
	UniqueFd lock_;
};

// Async-signal-safe: write back whatever a live FolioGuard changed (open,
// write, close only). For a fatal-signal handler that then re-raises.
void restore_folio_controls_now() noexcept;

// Install SIGINT/SIGTERM handlers for a program that holds FolioGuards:
// the first signal calls `on_first` (e.g. request_stop, so that the run ends
// after its repetition and destructors restore); a second one restores the
// controls at once and dies of the signal. `on_first` must be
// async-signal-safe.
void install_folio_signal_handlers(void (*on_first)() noexcept);

// Per-size system-wide counters (stats/anon_fault_alloc, anon_fault_fallback)
// by folio size in bytes; empty on kernels without them.
struct FolioCounters {
	std::uint64_t alloc = 0, fallback = 0;
};
std::map<std::uint64_t, FolioCounters> read_folio_counters();

// What a mapping is made of, page by page.
struct FolioObservation {
	// "kpageflags" (pagemap PFNs + compound head/tail flags: exact),
	// "smaps" (AnonHugePages: 2M only), or "none".
	std::string source = "none";
	std::string note; // why a better source was not used
	std::uint64_t pages = 0;         // pages of the range
	std::uint64_t pages_present = 0; // present in RAM
	std::map<std::uint64_t, std::uint64_t> pages_by_size; // folio bytes -> present pages
	std::uint64_t folios_partial = 0; // large folios not wholly mapped here
	// Share of the range's pages in folios of `bytes` (NaN when unknown).
	double fraction(std::uint64_t bytes) const;
	nlohmann::json to_json() const;
	std::string summary() const; // "64K 99.8%, 4K 0.2% (kpageflags)"
};

// Observe [addr, addr + len) of process `pid` (0 = self). Exact with root
// (PFNs and /proc/kpageflags); otherwise smaps' AnonHugePages for 2M only.
FolioObservation observe_folios(const void *addr, std::size_t len, pid_t pid = 0);

// Per page: PFN (0 = not present) and the size in bytes of its folio (0 =
// not present). Root only (throws Error otherwise).
struct PageFolio {
	std::uint64_t pfn = 0;
	std::uint64_t folio_bytes = 0;
	std::uint64_t head_pfn = 0;
};
std::vector<PageFolio> page_folios(const void *addr, std::size_t len, pid_t pid = 0);

} // namespace cowscope

namespace cowscope {

// The page-level folio probe: what one fork does to a heap of large folios,
// read page by page from /proc/PID/pagemap and /proc/kpageflags (root).
// The parent populates an aligned heap of `folio`-sized folios (FolioGuard),
// forks; the child writes `pages_per_folio` pages (the middle ones) of a
// `write_ratio` share of the folios, evenly spread, and waits; the parent
// reads the child's PFNs (changed = copied on the child's write), lets the
// child exit, then writes every page of its own heap and reads its PFNs
// again (same PFN = the page was reused in place, changed = copied).
struct FolioProbeConfig {
	std::uint64_t heap = 16ull << 20;
	std::uint64_t folio = 64ull << 10;
	double write_ratio = 0.5;
	unsigned pages_per_folio = 1;
	double timeout_s = 60;
};

// Pages reused in place / copied when the parent writes after the child
// exited, by what the child did to them.
struct ReuseCount {
	std::uint64_t reused = 0, copied = 0;
};

struct FolioProbeResult {
	FolioProbeConfig config;
	FolioObservation before;      // the parent's heap after populating
	std::uint64_t folios_written = 0, pages_written = 0;
	// The child after its writes, against the parent's PFNs.
	std::uint64_t child_written_copied = 0;   // written pages with a new PFN
	std::uint64_t child_unwritten_copied = 0; // pages it did not write, new PFN
	std::uint64_t child_faults = 0;           // its minor faults while writing
	FolioObservation child_after;
	std::map<std::uint64_t, std::uint64_t> child_new_page_folio; // folio size -> new pages
	std::uint64_t large_folios_partly_copied = 0; // in the child: some pages copied, not all
	// The parent's own write of every page after the child exited.
	ReuseCount parent_written_by_child, parent_same_folio, parent_untouched_folio;
	std::uint64_t parent_faults = 0;
	FolioObservation parent_after;
	nlohmann::json machine;
	nlohmann::json to_json() const;
	std::string to_text() const;
};

// Throws UsageError for bad configurations (before allocating), Error when
// the facility is missing (not root, no /proc/kpageflags).
FolioProbeResult run_folio_probe(const FolioProbeConfig &cfg);

} // namespace cowscope
