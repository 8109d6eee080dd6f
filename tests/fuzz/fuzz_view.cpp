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

// `view` as `parse` reads it: what it accepts of `text`, printed the
// module's way by `print` and parsed again, has as many rows, each `same` as
// before.
template <class Parse, class Print, class Same>
void reads_back(const char *view, const std::string &text, Parse &&parse, Print &&print, Same &&same)
{
	const auto v = fuzz::accepted([&] { return parse(text); });
	if (!v)
		return;
	const std::string again = print(*v);
	const auto w = parse(again);
	if (w.size() != v->size())
		fuzz::fail(fmt::format("{}: printed and parsed again, the row count differs", view).c_str(), text);
	for (std::size_t i = 0; i < w.size(); i++)
		if (!same(w[i], (*v)[i]))
			fuzz::fail(fmt::format("{}: a row differs when printed and parsed again", view).c_str(), text,
				   again);
}

void maps(const std::string &text)
{
	reads_back(
		"maps", text, parse_maps,
		[](const std::vector<MapsEntry> &v) {
			std::string again = "# start-end perms label present writable cow shared\n";
			for (const auto &m : v)
				again += fmt::format("{:x}-{:x} {} {} {} {} {} {}\n", m.start, m.end, m.perms, m.label,
						     m.present, m.writable, m.cow, m.shared);
			return again;
		},
		[](const MapsEntry &a, const MapsEntry &b) {
			return a.start == b.start && a.end == b.end && a.perms == b.perms && a.label == b.label &&
			       a.present == b.present && a.writable == b.writable && a.cow == b.cow && a.shared == b.shared;
		});
}

void ptes(const std::string &text)
{
	reads_back(
		"ptes", text, parse_ptes,
		[&](const std::vector<PteLine> &v) {
			std::string again = "# vaddr pfn flags ref map folio\n";
			for (const auto &p : v) {
				check(p.folio_order <= COWSCOPE_MAX_FOLIO_ORDER, "ptes: a folio order beyond 2M", text);
				again += fmt::format("{:#x} {:x} {} {} {}{} {}\n", p.vaddr, p.pfn, p.flags, p.ref,
						     p.map_average ? "~" : "", p.map, folio_size_name(p.folio_order));
			}
			return again;
		},
		[](const PteLine &a, const PteLine &b) {
			return a.vaddr == b.vaddr && a.pfn == b.pfn && a.flags == b.flags && a.ref == b.ref &&
			       a.map == b.map && a.map_average == b.map_average && a.folio_order == b.folio_order;
		});
}

void summary(const std::string &text)
{
	reads_back(
		"summary", text, parse_summary,
		[](const std::vector<SummaryRow> &v) {
			std::string again;
			for (const auto &r : v) {
				again += fmt::format("{} {} {} {} {} {} {}", r.label, r.present, r.writable, r.cow,
						     r.shared, r.exclusive, r.huge);
				for (auto n : r.folio)
					again += fmt::format(" {}", n);
				again += "\n";
			}
			return again;
		},
		[](const SummaryRow &a, const SummaryRow &b) {
			return a.label == b.label && a.present == b.present && a.cow == b.cow && a.folio == b.folio;
		});
}

void version(const std::string &text)
{
	const auto got = fuzz::accepted([&] { return parse_module_info(text); });
	if (!got)
		return;
	const ModuleInfo &m = *got;
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
	const auto got = fuzz::accepted([&] { return parse_folio_size(text); });
	if (!got)
		return;
	const unsigned o = *got;
	check(o <= COWSCOPE_MAX_FOLIO_ORDER && folio_size_name(o) == text,
	      "folio: an accepted size is not the name of its order", text);
}

void fuzz_one(std::uint8_t pick, std::string_view input)
{
	const std::string text(input);
	switch (pick % 5) {
	case 0: maps(text); break;
	case 1: ptes(text); break;
	case 2: summary(text); break;
	case 3: version(text); break;
	default: folio(text); break;
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
