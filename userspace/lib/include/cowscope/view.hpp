// Reader of the cowscope.ko /proc views (/proc/cowscope, see kmod/README.md):
// track/untrack a pid, the binary page records of an address range, the
// maps, ptes and summary text views. Every function throws cowscope::Error
// (or SysError with errno kept) with a message naming what failed.
#pragma once

#include <sys/types.h>

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
// when it is not loaded.
void require_module();

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
	std::string flags() const;	// the ptes letters, "-" when none
	std::string segment() const { return cowscope_segment_name(rec.segment); }
};

// Records of [start, end) (page aligned outward) from /proc/cowscope/PID/
// pagemap; the pid must be tracked.
std::vector<PageRecord> read_records(pid_t pid, std::uint64_t start,
				     std::uint64_t end);

// The ptes letters for a flags word (W D A U H a x z k f s).
std::string flag_letters(std::uint32_t flags);

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
};
// The ptes view, optionally restricted to [start, end) through range.
std::vector<PteLine> read_ptes(pid_t pid);
std::vector<PteLine> parse_ptes(const std::string &text);
void set_range(pid_t pid, std::uint64_t start, std::uint64_t end);

struct SummaryRow {
	std::string label;	// a segment label or "total"
	std::uint64_t present = 0, writable = 0, cow = 0, shared = 0,
		      exclusive = 0, huge = 0;
};
std::vector<SummaryRow> read_summary(pid_t pid);
std::vector<SummaryRow> parse_summary(const std::string &text);

} // namespace cowscope::view
