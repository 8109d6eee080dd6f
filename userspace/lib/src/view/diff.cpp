// diff.cpp - the parent/child join behind `cowscope diff` and cowdemo.
#include "cowscope/view/diff.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "cowscope/base/error.hpp"
#include "cowscope/base/units.hpp"

namespace cowscope {

const char *to_string(PageState s)
{
	switch (s) {
	case PageState::Shared: return "shared";
	case PageState::CowPending: return "cow-pending";
	case PageState::Copied: return "copied";
	case PageState::ParentOnly: return "parent-only";
	case PageState::ChildOnly: return "child-only";
	}
	return "?";
}

void DiffCounts::add(const PageDiff &d)
{
	switch (d.state) {
	case PageState::CowPending:
		cow_pending++;
		[[fallthrough]];
	case PageState::Shared:
		shared++;
		if (d.parent_order > 0)
			shared_large++;
		break;
	case PageState::Copied:
		copied++;
		if (d.parent_flags & COWSCOPE_F_WRITE)
			copied_parent_w++;
		if (d.child_flags & COWSCOPE_F_WRITE)
			copied_child_w++;
		if (d.parent_order > 0)
			copied_large++;
		if (d.child_order > 0)
			copied_child_large++;
		break;
	case PageState::ParentOnly:
		parent_only++;
		break;
	case PageState::ChildOnly:
		child_only++;
		break;
	}
}

namespace {

// Every count of a DiffCounts with its JSON name: operator+= sums them and
// counts_json writes them (with the derived "exclusive"), so a new count
// is one line here.
constexpr std::pair<const char *, std::uint64_t DiffCounts::*> kCounts[] = {
	{"shared", &DiffCounts::shared},
	{"cow_pending", &DiffCounts::cow_pending},
	{"copied", &DiffCounts::copied},
	{"parent_only", &DiffCounts::parent_only},
	{"child_only", &DiffCounts::child_only},
	{"copied_parent_writable", &DiffCounts::copied_parent_w},
	{"copied_child_writable", &DiffCounts::copied_child_w},
	{"shared_large_folio", &DiffCounts::shared_large},
	{"copied_large_folio", &DiffCounts::copied_large},
	{"copied_child_large_folio", &DiffCounts::copied_child_large},
	{"large_folios", &DiffCounts::large_folios},
	{"large_folios_partly_copied", &DiffCounts::large_folios_partly_copied},
	{"large_folios_wholly_copied", &DiffCounts::large_folios_wholly_copied},
};
static_assert(sizeof(DiffCounts) == std::size(kCounts) * sizeof(std::uint64_t),
	      "a DiffCounts field is missing from kCounts");

} // namespace

DiffCounts &DiffCounts::operator+=(const DiffCounts &o)
{
	for (const auto &[name, field] : kCounts)
		this->*field += o.*field;
	return *this;
}

namespace {

void check_sorted(const PageList &l, const char *who)
{
	for (size_t i = 1; i < l.size(); i++)
		if (l[i].vaddr <= l[i - 1].vaddr)
			throw Error(fmt::format("diff: {} records not sorted by address at {:#x}",
						who, l[i].vaddr));
}

PageDiff one_sided(const PageRecord &r, bool parent)
{
	PageDiff d;
	d.vaddr = r.vaddr;
	d.segment = r.rec.segment;
	if (parent) {
		d.state = PageState::ParentOnly;
		d.parent_flags = r.rec.flags;
		d.parent_pfn = r.rec.pfn;
		d.parent_order = r.rec.folio_order;
	} else {
		d.state = PageState::ChildOnly;
		d.child_flags = r.rec.flags;
		d.child_pfn = r.rec.pfn;
		d.child_order = r.rec.folio_order;
	}
	return d;
}

// The parent's large folios among pages present in both: each counted once
// (keyed by its first PFN), partly or wholly copied by how many of its
// pages seen in both are copied. Pages are sorted by address, but a folio's
// pages need not be adjacent in it (mremap), hence the map.
void count_large_folios(Diff &out)
{
	struct Folio {
		std::uint8_t segment;
		std::uint64_t pages = 0, copied = 0;
	};
	std::map<std::uint64_t, Folio> folios;
	for (const PageDiff &d : out.pages) {
		if (d.parent_order == 0 || d.state == PageState::ParentOnly ||
		    d.state == PageState::ChildOnly)
			continue;
		const std::uint64_t head = d.parent_pfn & ~((std::uint64_t(1) << d.parent_order) - 1);
		auto [it, fresh] = folios.try_emplace(head, Folio{d.segment});
		it->second.pages++;
		if (d.state == PageState::Copied)
			it->second.copied++;
	}
	for (const auto &[head, f] : folios) {
		DiffCounts c;
		c.large_folios = 1;
		if (f.copied == f.pages)
			c.large_folios_wholly_copied = 1;
		else if (f.copied)
			c.large_folios_partly_copied = 1;
		if (f.segment < COWSCOPE_SEG_COUNT)
			out.segments[f.segment] += c;
		out.total += c;
	}
}

} // namespace

Diff diff_pages(const PageList &parent, const PageList &child)
{
	check_sorted(parent, "parent");
	check_sorted(child, "child");
	Diff out;
	out.pages.reserve(std::max(parent.size(), child.size()));
	size_t i = 0, j = 0;
	while (i < parent.size() || j < child.size()) {
		PageDiff d;
		if (j == child.size() || (i < parent.size() && parent[i].vaddr < child[j].vaddr)) {
			d = one_sided(parent[i++], true);
		} else if (i == parent.size() || child[j].vaddr < parent[i].vaddr) {
			d = one_sided(child[j++], false);
		} else {
			const cowscope_rec &p = parent[i].rec, &c = child[j].rec;
			d.vaddr = parent[i].vaddr;
			d.segment = p.segment != COWSCOPE_SEG_NONE ? p.segment : c.segment;
			d.parent_flags = p.flags;
			d.child_flags = c.flags;
			d.parent_pfn = p.pfn;
			d.child_pfn = c.pfn;
			d.parent_order = p.folio_order;
			d.child_order = c.folio_order;
			if (p.pfn != c.pfn)
				d.state = PageState::Copied;
			else if ((p.flags | c.flags) & COWSCOPE_F_COW)
				d.state = PageState::CowPending;
			else
				d.state = PageState::Shared;
			i++, j++;
		}
		if (d.segment < COWSCOPE_SEG_COUNT)
			out.segments[d.segment].add(d);
		out.total.add(d);
		out.pages.push_back(d);
	}
	count_large_folios(out);
	return out;
}

const char *const strip_legend =
	"'=' shared  '#' copied  '1'-'9' tenths copied  '<' parent only  "
	"'>' child only  '~' mixed  '.' not present";

Strip make_strip(const std::vector<PageDiff> &pages, std::uint64_t start,
		 std::uint64_t end, unsigned width)
{
	Strip s;
	s.start = start & ~std::uint64_t(COWSCOPE_PAGE_SIZE - 1);
	s.end = (end + COWSCOPE_PAGE_SIZE - 1) & ~std::uint64_t(COWSCOPE_PAGE_SIZE - 1);
	if (s.end <= s.start || width == 0)
		return s;
	const std::uint64_t npages = (s.end - s.start) / COWSCOPE_PAGE_SIZE;
	s.pages_per_char = (npages + width - 1) / width;
	const std::uint64_t nchars = (npages + s.pages_per_char - 1) / s.pages_per_char;
	struct Group {
		unsigned shared = 0, copied = 0, ponly = 0, conly = 0;
	};
	std::vector<Group> g(nchars);
	auto it = std::lower_bound(pages.begin(), pages.end(), s.start,
				   [](const PageDiff &d, std::uint64_t a) { return d.vaddr < a; });
	for (; it != pages.end() && it->vaddr < s.end; ++it) {
		Group &x = g[(it->vaddr - s.start) / COWSCOPE_PAGE_SIZE / s.pages_per_char];
		switch (it->state) {
		case PageState::Shared:
		case PageState::CowPending: x.shared++; break;
		case PageState::Copied: x.copied++; break;
		case PageState::ParentOnly: x.ponly++; break;
		case PageState::ChildOnly: x.conly++; break;
		}
	}
	s.text.reserve(nchars);
	for (const Group &x : g) {
		const unsigned both = x.shared + x.copied, one = x.ponly + x.conly;
		char c;
		if (both + one == 0)
			c = '.';
		else if (one && both)
			c = '~';
		else if (one)
			c = x.ponly && x.conly ? '~' : x.ponly ? '<' : '>';
		else if (x.copied == 0)
			c = '=';
		else if (x.shared == 0)
			c = '#';
		else {
			unsigned tenths = (x.copied * 10 + both / 2) / both;
			c = static_cast<char>('0' + std::clamp(tenths, 1u, 9u));
		}
		s.text.push_back(c);
	}
	return s;
}

std::pair<std::uint64_t, std::uint64_t> segment_span(const Diff &d, unsigned segment)
{
	std::uint64_t lo = 0, hi = 0;
	bool any = false;
	for (const PageDiff &p : d.pages) {
		if (p.segment != segment)
			continue;
		if (!any)
			lo = p.vaddr;
		hi = p.vaddr + COWSCOPE_PAGE_SIZE;
		any = true;
	}
	return {lo, hi};
}

const std::array<unsigned, COWSCOPE_SEG_COUNT> &segment_order()
{
	static const std::array<unsigned, COWSCOPE_SEG_COUNT> order = {
		COWSCOPE_SEG_TEXT,      COWSCOPE_SEG_DATA,      COWSCOPE_SEG_BSS,
		COWSCOPE_SEG_HEAP,      COWSCOPE_SEG_MMAP_ANON, COWSCOPE_SEG_MMAP_FILE,
		COWSCOPE_SEG_STACK,     COWSCOPE_SEG_VDSO,      COWSCOPE_SEG_VVAR,
		COWSCOPE_SEG_OTHER,
	};
	return order;
}

namespace {

std::string diff_row(const std::string &label, const DiffCounts &c)
{
	return fmt::format("{:<10} {:>9} {:>12} {:>9} {:>12} {:>11}   {:>10}\n", label, c.shared,
			   c.cow_pending, c.copied, c.parent_only, c.child_only,
			   format_size(c.copied * COWSCOPE_PAGE_SIZE));
}

nlohmann::json counts_json(const DiffCounts &c)
{
	nlohmann::json j = {{"exclusive", c.exclusive()}};
	for (const auto &[name, field] : kCounts)
		j[name] = c.*field;
	return j;
}

} // namespace

std::string format_diff(const Diff &d, unsigned strip_width)
{
	std::string out = fmt::format("parent {} vs child {}: present pages (4 KiB) joined by address\n",
				      d.parent, d.child);
	out += fmt::format("{:<10} {:>9} {:>12} {:>9} {:>12} {:>11}   {:>10}\n", "segment", "shared",
			   "cow-pending", "copied", "parent-only", "child-only", "copied");
	for (unsigned seg : segment_order()) {
		const DiffCounts &c = d.segments[seg];
		if (c.both() + c.exclusive() == 0)
			continue;
		out += diff_row(cowscope_segment_name(seg), c);
	}
	out += diff_row("total", d.total);
	out += fmt::format("shared {} (cow-pending {}), copied {}, exclusive {}\n",
			   format_size(d.total.shared * COWSCOPE_PAGE_SIZE),
			   format_size(d.total.cow_pending * COWSCOPE_PAGE_SIZE),
			   format_size(d.total.copied * COWSCOPE_PAGE_SIZE),
			   format_size(d.total.exclusive() * COWSCOPE_PAGE_SIZE));
	if (d.total.copied)
		out += fmt::format("of the copied pages: writable in the parent {}, in the child {}\n",
				   d.total.copied_parent_w, d.total.copied_child_w);
	if (d.total.large_folios)
		out += fmt::format("large folios (> 4 KiB): {} pages shared and {} copied belong to "
				   "the parent's large folios ({} of the child's copies are in one); "
				   "{} large folios, {} partly copied, {} wholly copied\n",
				   d.total.shared_large, d.total.copied_large,
				   d.total.copied_child_large, d.total.large_folios,
				   d.total.large_folios_partly_copied,
				   d.total.large_folios_wholly_copied);
	auto [lo, hi] = segment_span(d, COWSCOPE_SEG_HEAP);
	if (hi > lo && strip_width) {
		Strip s = make_strip(d.pages, lo, hi, strip_width);
		out += fmt::format("heap {:#x}-{:#x} ({}), 1 char = {} page{}:\n  [{}]\n", s.start,
				   s.end, format_size(s.end - s.start), s.pages_per_char,
				   s.pages_per_char == 1 ? "" : "s", s.text);
		out += fmt::format("  {}\n", strip_legend);
	}
	return out;
}

nlohmann::json diff_json(const Diff &d, bool with_pages)
{
	nlohmann::json j;
	j["parent"] = d.parent;
	j["child"] = d.child;
	j["page_size"] = COWSCOPE_PAGE_SIZE;
	nlohmann::json segs = nlohmann::json::object();
	for (unsigned seg : segment_order())
		segs[cowscope_segment_name(seg)] = counts_json(d.segments[seg]);
	j["segments"] = segs;
	j["total"] = counts_json(d.total);
	auto [lo, hi] = segment_span(d, COWSCOPE_SEG_HEAP);
	if (hi > lo) {
		Strip s = make_strip(d.pages, lo, hi, 64);
		j["heap_strip"] = {{"start", s.start},
				   {"end", s.end},
				   {"pages_per_char", s.pages_per_char},
				   {"text", s.text}};
	}
	if (with_pages) {
		nlohmann::json arr = nlohmann::json::array();
		for (const PageDiff &p : d.pages)
			arr.push_back({{"vaddr", p.vaddr},
				       {"state", to_string(p.state)},
				       {"segment", cowscope_segment_name(p.segment)},
				       {"parent_pfn", p.parent_pfn},
				       {"child_pfn", p.child_pfn},
				       {"parent_flags", p.parent_flags},
				       {"child_flags", p.child_flags},
				       {"parent_folio_size",
					std::uint64_t(COWSCOPE_PAGE_SIZE) << p.parent_order},
				       {"child_folio_size",
					std::uint64_t(COWSCOPE_PAGE_SIZE) << p.child_order}});
		j["pages"] = std::move(arr);
	}
	return j;
}

} // namespace cowscope
