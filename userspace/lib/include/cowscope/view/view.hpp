// Reader of the cowscope.ko /proc views (/proc/cowscope, see kmod/README.md):
// track/untrack a pid, the binary page records of an address range, the
// maps, ptes and summary text views. Every function throws cowscope::Error
// (or SysError with errno kept) with a message naming what failed.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <cowscope_uapi.h>

namespace cowscope::view {

inline constexpr const char *kRoot = "/proc/cowscope";

// Is /proc/cowscope/track there?
bool module_loaded();
// How to get the module: the packages (DKMS, modprobe) or a clone (make load, make vm).
const char *module_hint();
// Throws Error saying how to get the module (the VM lab, make load, DKMS)
// when it is not loaded, and check_module_abi()'s error when the loaded
// module speaks another record layout.
void require_module();

// What /proc/cowscope/version says (abi 1 modules have no such file).
struct ModuleInfo {
	unsigned abi = 1;
	std::string version = "unknown";
	bool mapcount_average = false;	// "mapcount folio-average"
};
// Parse the text of /proc/cowscope/version. Throws Error on a malformed one.
ModuleInfo parse_module_info(const std::string &text);
// The loaded module's; ModuleInfo{} (abi 1) when the file is missing.
ModuleInfo module_info();
// Throws Error naming both versions and what to rebuild or reload when
// info.abi != COWSCOPE_ABI_VERSION.
void check_module_abi(const ModuleInfo &info);

// Write "PID" / "-PID" to /proc/cowscope/track. track() of a tracked pid is
// harmless; untrack() of an untracked pid throws SysError(ENOENT).
void track(pid_t pid);
void untrack(pid_t pid);
bool tracked(pid_t pid);
std::string dir(pid_t pid);	// "/proc/cowscope/PID"

// One virtual page of the binary view.
struct PageRecord {
	std::uint64_t vaddr = 0;
	cowscope_rec rec{};

	bool has(std::uint32_t flag) const { return (rec.flags & flag) != 0; }
	bool present() const { return has(COWSCOPE_F_PRESENT); }
	bool writable() const { return has(COWSCOPE_F_WRITE); }
	bool anon_exclusive() const { return has(COWSCOPE_F_ANON_EXCL); }
	bool cow_pending() const { return has(COWSCOPE_F_COW); }
	std::uint64_t pfn() const { return rec.pfn; }
	// The folio this page belongs to: log2 pages, bytes, large (> 4 KiB)?
	unsigned folio_order() const { return rec.folio_order; }
	std::uint64_t folio_bytes() const
	{
		return std::uint64_t(COWSCOPE_PAGE_SIZE) << rec.folio_order;
	}
	bool large_folio() const { return rec.folio_order > 0; }
	// mapcount is the folio's average per page (no per-page mapcount)
	bool map_average() const { return has(COWSCOPE_F_MAP_AVG); }
	std::string flags() const;	// the ptes letters, "-" when none
	std::string segment() const { return cowscope_segment_name(rec.segment); }
};

// Records of [start, end) (page aligned outward) from /proc/cowscope/PID/
// pagemap; the pid must be tracked.
std::vector<PageRecord> read_records(pid_t pid, std::uint64_t start,
				     std::uint64_t end);

// The ptes letters for a flags word (W D A U H a x z k f s).
std::string flag_letters(std::uint32_t flags);
// "W writable D dirty ... s swapcache": what each letter means.
std::string flag_legend();

struct MapsEntry {
	std::uint64_t start = 0, end = 0;
	std::string perms, label;
	std::uint64_t present = 0, writable = 0, cow = 0, shared = 0;
};
std::vector<MapsEntry> read_maps(pid_t pid);
std::vector<MapsEntry> parse_maps(const std::string &text);

struct PteLine {
	std::uint64_t vaddr = 0, pfn = 0;
	std::string flags;
	std::uint64_t ref = 0, map = 0;
	bool map_average = false;	// map was "~N"
	unsigned folio_order = 0;	// from the folio column ("64K" -> 4)
};
// "4K" -> 0, "64K" -> 4, "2M" -> 9; throws Error for anything else.
unsigned parse_folio_size(const std::string &s);
// 0 -> "4K", 4 -> "64K", 9 -> "2M" (as the module prints them).
std::string folio_size_name(unsigned order);
// The ptes view, optionally restricted to [start, end) through range.
std::vector<PteLine> read_ptes(pid_t pid);
std::vector<PteLine> parse_ptes(const std::string &text);
void set_range(pid_t pid, std::uint64_t start, std::uint64_t end);

struct SummaryRow {
	std::string label;	// a segment label or "total"
	std::uint64_t present = 0, writable = 0, cow = 0, shared = 0,
		      exclusive = 0, huge = 0;
	// present pages by folio order (4K, 8K, ... 2M)
	std::array<std::uint64_t, COWSCOPE_MAX_FOLIO_ORDER + 1> folio{};
};
std::vector<SummaryRow> read_summary(pid_t pid);
std::vector<SummaryRow> parse_summary(const std::string &text);

} // namespace cowscope::view
