// report/: the data model's small rules (notes, frames, merged sites).
#include "cowscope/report/model.hpp"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

namespace cowtrace {

namespace {

constexpr const char *kNoReuses = "the tracepoint method attributes copies only: reuses by mapping and by site are 0";
constexpr const char *kHugePmd = "huge-PMD write faults kept in place are counted per process but not by mapping "
				 "or site";
constexpr const char *kGuessSuffix = ": no .symtab nor debug information, names are the nearest exported (.dynsym) "
				     "symbol, guesses";

std::string join_names(const std::vector<Frame> &frames)
{
	std::string k;
	for (const Frame &f : frames)
		k += f.name() + ";";
	return k;
}

// What sites are merged by: their frames' names (no stack: one key); a
// CFI-unwound chain is never merged with a frame-pointer stack.
std::string site_key(const Site &s)
{
	return s.stackid < 0 ? std::string("[no stack]") : (s.samples ? "cfi:" : "") + join_names(s.frames);
}

// The rows of one process, in their order.
template <class Row> std::vector<Row> of_pid(const std::vector<Row> &rows, pid_t pid)
{
	std::vector<Row> out;
	std::ranges::copy_if(rows, std::back_inserter(out), [pid](const Row &r) { return r.pid == pid; });
	return out;
}

} // namespace

std::string Note::text() const
{
	switch (kind) {
	case Kind::no_reuses: return kNoReuses;
	case Kind::huge_pmd: return kHugePmd;
	case Kind::dynsym_guess: return fmt::format("{}{}", module, kGuessSuffix);	// (not +: GCC 12 -Wrestrict)
	}
	return "";
}

std::optional<Note> Note::parse(const std::string &text)
{
	if (text == kNoReuses)
		return Note{Kind::no_reuses, ""};
	if (text == kHugePmd)
		return Note{Kind::huge_pmd, ""};
	const std::string suffix = kGuessSuffix;
	if (text.size() > suffix.size() && text.ends_with(suffix))
		return Note{Kind::dynsym_guess, text.substr(0, text.size() - suffix.size())};
	return std::nullopt;
}

std::string Frame::name() const
{
	if (!func.empty())
		return func;
	if (!module.empty())
		return fmt::format("{}+0x{:x}", module.substr(module.rfind('/') + 1), offset);
	return "[unknown]";
}

std::string Frame::text() const
{
	std::string s;
	if (source == "py")	// a CPython frame: its function, file and line
		return fmt::format("{} {}:{}", func.empty() ? "[python]" : func, file.empty() ? "?" : file, line);
	if (!func.empty())
		s = fmt::format("{}+0x{:x}{}", func, offset, guess ? " [guess]" : "");
	else
		s = fmt::format("0x{:x}", ip);
	s += module.empty() ? " [not in a mapped file]" : fmt::format(" ({})", module);
	if (!file.empty())
		s += fmt::format(" {}:{}", file, line);
	return s;
}

std::vector<MappingStats> Attribution::mappings_of(pid_t pid) const
{
	return of_pid(mappings, pid);
}

std::vector<Site> Attribution::sites_of(pid_t pid) const
{
	return of_pid(sites_by_pid, pid);
}

std::vector<Site> merge_sites(const std::vector<Site> &by_pid)
{
	std::map<std::string, Site> merged;
	std::map<std::string, std::set<pid_t>> merged_pids;
	for (const Site &s : by_pid) {
		std::string k = site_key(s);
		auto &pids = merged_pids[k];
		pids.insert(s.pid);
		auto [it, fresh] = merged.emplace(k, s);
		if (fresh) {
			it->second.pid = 0;
			continue;
		}
		it->second.copies += s.copies;
		it->second.reuses += s.reuses;
		it->second.zero_fills += s.zero_fills;
		it->second.samples += s.samples;
		it->second.pids = static_cast<std::uint32_t>(pids.size());
		if (it->second.comm != s.comm)
			it->second.comm = "*";
	}
	std::vector<Site> out;
	for (auto &[k, s] : merged)
		out.push_back(std::move(s));
	std::sort(out.begin(), out.end(), [](const Site &x, const Site &y) {
		return x.copies != y.copies ? x.copies > y.copies : x.reuses > y.reuses;
	});
	return out;
}

namespace {

// Add the rows `from` to `into`'s rows of `root` (pid), merged by key(row):
// a new key appends the row under `root`, a known one add(row) to it.
template <class Row, class Key, class Add>
void fold_rows(std::vector<Row> &into, const std::vector<Row> &from, pid_t root, Key key, Add add)
{
	std::map<decltype(key(from.front())), std::size_t> at;
	for (std::size_t i = 0; i < into.size(); i++)
		if (into[i].pid == root)
			at.emplace(key(into[i]), i);
	for (const Row &r : from) {
		auto [it, fresh] = at.emplace(key(r), into.size());
		if (fresh) {
			into.push_back(r);
			into.back().pid = root;
		} else {
			add(into[it->second], r);
		}
	}
}

} // namespace

void fold_mappings(std::vector<MappingStats> &into, const std::vector<MappingStats> &from, pid_t root)
{
	auto key = [](const MappingStats &m) { return std::tuple(m.start, m.end, m.label, m.path); };
	fold_rows(into, from, root, key, [](MappingStats &t, const MappingStats &m) {
		t.wp_faults += m.wp_faults;
		t.copies += m.copies;
		t.reuses += m.reuses;
		t.zero_fills += m.zero_fills;
	});
}

void fold_sites(std::vector<Site> &into, const std::vector<Site> &from, pid_t root)
{
	fold_rows(into, from, root, site_key, [](Site &t, const Site &s) {
		t.copies += s.copies;
		t.reuses += s.reuses;
		t.zero_fills += s.zero_fills;
		t.samples += s.samples;
		t.pids += s.pids;
		if (t.comm != s.comm)
			t.comm = "*";
	});
}

} // namespace cowtrace
