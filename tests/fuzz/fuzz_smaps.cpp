// /proc/PID/smaps and smaps_rollup as the forecast reads them: proc/'s
// parse_smaps and parse_kb_fields (proc/maps.hpp), then forecast's
// vma_shapes (forecast/shape.hpp). The first byte picks smaps or rollup.
// The contract: a garbled VMA line is a cowscope::Error, never another
// exception or a crash; every VMA returned has start <= end and four
// permission letters; each shape keeps its VMA's range and is COW-writable
// only when private and writable.
#include "cowscope/base/error.hpp"
#include "cowscope/forecast/shape.hpp"
#include "cowscope/proc/maps.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using fuzz::check;

namespace {

void fuzz_one(std::uint8_t pick, std::string_view text)
{
	if (pick & 1) {
		(void)proc::parse_kb_fields(text);
		return;
	}
	const auto got = fuzz::accepted([&] { return proc::parse_smaps(text); });
	if (!got)
		return;
	const std::vector<proc::SmapsEntry> &smaps = *got;
	for (const auto &e : smaps) {
		check(e.vma.start <= e.vma.end, "smaps: a VMA with start > end", text);
		check(e.vma.perms.size() == 4, "smaps: a VMA without four permission letters", text, e.vma.perms);
		(void)e.field("Rss");
		(void)e.has_flag("dc");
	}
	const auto shapes = forecast::vma_shapes(smaps);
	check(shapes.size() <= smaps.size(), "smaps: more shapes than VMAs", text);
	for (const auto &s : shapes) {
		check(s.perms.size() == 4, "smaps: a shape without four permission letters", text, s.perms);
		check(!s.cow_writable || (s.perms[1] == 'w' && s.perms[3] == 'p'),
		      "smaps: a VMA counted as COW-writable that is not private and writable", text, s.perms);
		(void)s.ptes();
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
