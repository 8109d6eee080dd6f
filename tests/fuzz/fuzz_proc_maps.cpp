// /proc/PID/maps as proc/ parses it (proc/maps.hpp): one line
// (parse_maps_line) and a whole file (parse_maps). The first byte picks
// which. The contract: a line is a VMA or nullopt, never an exception; a
// file's garbled VMA line is a cowscope::Error; an accepted line is its
// head and its path again, start <= end, four permission letters, and the
// same VMA when printed the way the kernel prints it (show_map_vma) and
// parsed again.
#include <sys/sysmacros.h>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/proc/maps.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using fuzz::check;

namespace {

void one(const proc::MapsEntry &m, std::string_view input, std::string_view line)
{
	check(m.start <= m.end, "maps: a VMA with start > end", input);
	check(m.perms.size() == 4, "maps: a VMA without four permission letters", input, m.perms);
	check(m.head + m.path == line, "maps: head and path are not the line", input, m.head + "|" + m.path);
	const std::string again = fmt::format("{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} {}", m.start, m.end, m.perms,
					      m.offset, major(m.dev), minor(m.dev), m.ino, m.path);
	const auto n = proc::parse_maps_line(again);
	check(n.has_value(), "maps: an accepted VMA, printed as the kernel does, does not parse", input, again);
	check(n->start == m.start && n->end == m.end && n->perms == m.perms && n->offset == m.offset &&
		      n->dev == m.dev && n->ino == m.ino && (n->path == m.path || m.path.starts_with(' ')),
	      "maps: an accepted VMA differs when printed and parsed again", input, again);
}

void fuzz_one(std::uint8_t pick, std::string_view text)
{
	if (pick & 1) {
		if (text.find('\n') != std::string_view::npos)
			return;
		if (const auto m = proc::parse_maps_line(text))
			one(*m, text, text);
		return;
	}
	const auto got = fuzz::accepted([&] { return proc::parse_maps(text); });
	if (!got)
		return;
	const std::vector<proc::MapsEntry> &v = *got;
	for (const auto &m : v)
		one(m, text, m.head + m.path);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
