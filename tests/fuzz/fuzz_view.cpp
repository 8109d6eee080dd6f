// The module's text views as the C++ reader parses them (view/view.hpp):
// /proc/cowscope/version, PID/maps, PID/ptes, PID/summary and the folio
// column. The first byte picks the parser. The contract: a malformed view
// is a cowscope::Error naming it, never another exception or a crash; what
// is accepted reads back the same when printed the way the module prints it
// (kmod/README.md) and parsed again.
#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/view/view.hpp"
#include "fuzz_util.hpp"

using namespace cowscope;
using namespace cowscope::view;
using fuzz::check;

namespace {

void maps(const std::string &text)
{
	std::vector<MapsEntry> v;
	try {
		v = parse_maps(text);
	} catch (const Error &) {
		return;
	}
	std::string again = "# start-end perms label present writable cow shared\n";
	for (const auto &m : v)
		again += fmt::format("{:x}-{:x} {} {} {} {} {} {}\n", m.start, m.end, m.perms, m.label, m.present,
				     m.writable, m.cow, m.shared);
	const auto w = parse_maps(again);
	check(w.size() == v.size(), "maps: printed and parsed again, the row count differs", text);
	for (std::size_t i = 0; i < v.size(); i++)
		check(w[i].start == v[i].start && w[i].end == v[i].end && w[i].perms == v[i].perms &&
			      w[i].label == v[i].label && w[i].present == v[i].present &&
			      w[i].writable == v[i].writable && w[i].cow == v[i].cow && w[i].shared == v[i].shared,
		      "maps: a row differs when printed and parsed again", text, again);
}

void ptes(const std::string &text)
{
	std::vector<PteLine> v;
	try {
		v = parse_ptes(text);
	} catch (const Error &) {
		return;
	}
	std::string again = "# vaddr pfn flags ref map folio\n";
	for (const auto &p : v) {
		check(p.folio_order <= COWSCOPE_MAX_FOLIO_ORDER, "ptes: a folio order beyond 2M", text);
		again += fmt::format("{:#x} {:x} {} {} {}{} {}\n", p.vaddr, p.pfn, p.flags, p.ref,
				     p.map_average ? "~" : "", p.map, folio_size_name(p.folio_order));
	}
	const auto w = parse_ptes(again);
	check(w.size() == v.size(), "ptes: printed and parsed again, the row count differs", text);
	for (std::size_t i = 0; i < v.size(); i++)
		check(w[i].vaddr == v[i].vaddr && w[i].pfn == v[i].pfn && w[i].flags == v[i].flags &&
			      w[i].ref == v[i].ref && w[i].map == v[i].map && w[i].map_average == v[i].map_average &&
			      w[i].folio_order == v[i].folio_order,
		      "ptes: a row differs when printed and parsed again", text, again);
}

void summary(const std::string &text)
{
	std::vector<SummaryRow> v;
	try {
		v = parse_summary(text);
	} catch (const Error &) {
		return;
	}
	std::string again;
	for (const auto &r : v) {
		again += fmt::format("{} {} {} {} {} {} {}", r.label, r.present, r.writable, r.cow, r.shared,
				     r.exclusive, r.huge);
		for (auto n : r.folio)
			again += fmt::format(" {}", n);
		again += "\n";
	}
	const auto w = parse_summary(again);
	check(w.size() == v.size(), "summary: printed and parsed again, the row count differs", text);
	for (std::size_t i = 0; i < v.size(); i++)
		check(w[i].label == v[i].label && w[i].present == v[i].present && w[i].cow == v[i].cow &&
			      w[i].folio == v[i].folio,
		      "summary: a row differs when printed and parsed again", text, again);
}

void version(const std::string &text)
{
	ModuleInfo m;
	try {
		m = parse_module_info(text);
	} catch (const Error &) {
		return;
	}
	const std::string again = fmt::format("abi {}\nversion {}\nmapcount {}\n", m.abi, m.version,
					      m.mapcount_average ? "folio-average" : "per-page");
	if (m.version.find('\n') == std::string::npos) {
		const ModuleInfo n = parse_module_info(again);
		check(n.abi == m.abi && n.version == m.version && n.mapcount_average == m.mapcount_average,
		      "version: differs when printed and parsed again", text, again);
	}
	try {
		check_module_abi(m);
	} catch (const Error &) {
	}
}

void folio(const std::string &text)
{
	unsigned o;
	try {
		o = parse_folio_size(text);
	} catch (const Error &) {
		return;
	}
	check(o <= COWSCOPE_MAX_FOLIO_ORDER && folio_size_name(o) == text,
	      "folio: an accepted size is not the name of its order", text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	if (size < 1)
		return 0;
	const std::string text(fuzz::text(data + 1, size - 1));
	switch (data[0] % 5) {
	case 0: maps(text); break;
	case 1: ptes(text); break;
	case 2: summary(text); break;
	case 3: version(text); break;
	default: folio(text); break;
	}
	return 0;
}
