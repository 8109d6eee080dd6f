// /proc/PID/maps and /proc/PID/smaps: one parser for each, shared by every
// subsystem that reads a process's mappings (the tracer's symbolizer, the
// forecast's page-table shape, the folio observer). The formats are the
// kernel's fs/proc/task_mmu.c show_map_vma() and show_smap().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cowscope::proc {

// One VMA line: "start-end perms offset major:minor inode [path]".
struct MapsEntry {
	std::uint64_t start = 0, end = 0, offset = 0;
	dev_t dev = 0;
	ino_t ino = 0;
	std::string perms;	// "rw-p": four characters
	std::string path;	// "" (anonymous), "[heap]", "/usr/lib/...", "/x (deleted)"
	std::string head;	// the line up to the path: "start-end perms offset dev inode "
	bool contains(std::uint64_t addr) const { return addr >= start && addr < end; }
	bool is_private() const { return perms.size() == 4 && perms[3] == 'p'; }
	bool writable() const { return perms.size() == 4 && perms[1] == 'w'; }
};

// The VMA line `line` (no newline), or nullopt when it is not one (an
// smaps field line, a truncated or garbled line). A line that starts like
// a VMA (hex digits, '-') but breaks the format is nullopt too: the kernel
// writes none, and a reader of a live file may see a torn last line.
std::optional<MapsEntry> parse_maps_line(std::string_view line);
// Every VMA line of a maps (or smaps) text, in order. Throws Error on a
// line that starts like one (hex digits, '-') but breaks the format.
std::vector<MapsEntry> parse_maps(std::string_view text);

// One VMA of smaps: its maps line, its "Key: N kB" fields (in kB: Rss,
// Anonymous, AnonHugePages, Swap, ...) and its VmFlags ("rd", "wr", "dc").
struct SmapsEntry {
	MapsEntry vma;
	std::map<std::string, std::uint64_t, std::less<>> kb;
	std::vector<std::string> vm_flags;
	std::uint64_t field(std::string_view key) const;	// 0 when absent
	bool has_flag(std::string_view flag) const;
};
// Every VMA of an smaps text. Field lines before the first VMA line, and
// fields that are not "N kB" numbers (THPeligible, ProtectionKey), are
// passed over; a garbled VMA line throws Error, as in parse_maps.
std::vector<SmapsEntry> parse_smaps(std::string_view text);

// Every "Key: N kB" line of smaps_rollup (or of one smaps VMA), in kB.
std::map<std::string, std::uint64_t> parse_kb_fields(std::string_view text);

// The files of a live process. Throw cowscope::SysError (ENOENT/ESRCH when
// the process is gone, EACCES without the right to read its memory).
std::vector<MapsEntry> read_maps(pid_t pid);
std::vector<SmapsEntry> read_smaps(pid_t pid);
// Throws Error too when the file has no fields (a kernel thread or a
// process that is exiting has none).
std::map<std::string, std::uint64_t> smaps_rollup(pid_t pid);

} // namespace cowscope::proc
