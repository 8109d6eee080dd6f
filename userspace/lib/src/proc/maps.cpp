// /proc/PID/maps and smaps parsers (see maps.hpp).
#include "cowscope/proc/maps.hpp"

#include <sys/sysmacros.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

namespace cowscope::proc {

namespace {

// A number in `base` up to the next `stop` (or the end); advances `s`
// past it and the stop character. False when there is no number there.
template <class T> bool take(std::string_view &s, T &out, int base, char stop)
{
	auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
	if (ec != std::errc() || p == s.data())
		return false;
	s.remove_prefix(static_cast<std::size_t>(p - s.data()));
	if (stop) {
		if (s.empty() || s.front() != stop)
			return false;
		s.remove_prefix(1);
	}
	return true;
}

void skip_spaces(std::string_view &s)
{
	while (!s.empty() && s.front() == ' ')
		s.remove_prefix(1);
}

// The lines of `text`, without their newlines.
template <class F> void for_each_line(std::string_view text, F &&f)
{
	while (!text.empty()) {
		std::size_t nl = text.find('\n');
		f(text.substr(0, nl));
		if (nl == std::string_view::npos)
			break;
		text.remove_prefix(nl + 1);
	}
}

// A line that starts like a VMA line: hex digits, then '-'. (smaps' field
// lines start with a key and ':'.)
bool looks_like_vma(std::string_view line)
{
	std::size_t i = 0;
	while (i < line.size() && std::isxdigit(static_cast<unsigned char>(line[i])))
		i++;
	return i > 0 && i < line.size() && line[i] == '-';
}

// The VMA of a line that looks like one; throws Error when it is garbled.
std::optional<MapsEntry> vma_of(std::string_view line, const char *file)
{
	if (!looks_like_vma(line))
		return std::nullopt;
	auto m = parse_maps_line(line);
	if (!m)
		throw Error(fmt::format("{}: bad VMA line \"{}\"", file, line.substr(0, 200)));
	return m;
}

} // namespace

std::optional<MapsEntry> parse_maps_line(std::string_view line)
{
	MapsEntry m;
	std::string_view s = line;
	unsigned maj = 0, min = 0;
	unsigned long long ino = 0;
	if (!take(s, m.start, 16, '-') || !take(s, m.end, 16, ' ') || m.end < m.start)
		return std::nullopt;
	if (s.size() < 5 || s[4] != ' ')
		return std::nullopt;
	m.perms = std::string(s.substr(0, 4));
	s.remove_prefix(5);
	if (!take(s, m.offset, 16, ' ') || !take(s, maj, 16, ':') || !take(s, min, 16, ' ') || !take(s, ino, 10, 0))
		return std::nullopt;
	if (!s.empty() && s.front() != ' ')
		return std::nullopt;
	skip_spaces(s);
	m.dev = makedev(maj, min);
	m.ino = static_cast<ino_t>(ino);
	m.head = std::string(line.substr(0, line.size() - s.size()));
	m.path = std::string(s);
	return m;
}

std::vector<MapsEntry> parse_maps(std::string_view text)
{
	std::vector<MapsEntry> out;
	for_each_line(text, [&](std::string_view line) {
		if (auto m = vma_of(line, "maps"))
			out.push_back(std::move(*m));
	});
	return out;
}

std::uint64_t SmapsEntry::field(std::string_view key) const
{
	auto it = kb.find(key);
	return it == kb.end() ? 0 : it->second;
}

bool SmapsEntry::has_flag(std::string_view flag) const
{
	return std::find(vm_flags.begin(), vm_flags.end(), flag) != vm_flags.end();
}

namespace {

// "Key:   N kB" -> (Key, N); nullopt for any other line.
std::optional<std::pair<std::string_view, std::uint64_t>> kb_field(std::string_view line)
{
	std::size_t colon = line.find(':');
	if (colon == std::string_view::npos || colon == 0)
		return std::nullopt;
	std::string_view v = line.substr(colon + 1);
	skip_spaces(v);
	std::uint64_t n = 0;
	if (!take(v, n, 10, ' ') || v != "kB")
		return std::nullopt;
	return std::pair{line.substr(0, colon), n};
}

} // namespace

std::vector<SmapsEntry> parse_smaps(std::string_view text)
{
	std::vector<SmapsEntry> out;
	for_each_line(text, [&](std::string_view line) {
		if (auto m = vma_of(line, "smaps")) {
			out.push_back(SmapsEntry{std::move(*m), {}, {}});
			return;
		}
		if (out.empty())
			return;
		SmapsEntry &e = out.back();
		if (line.rfind("VmFlags:", 0) == 0) {
			std::string_view f = line.substr(8);
			while (true) {
				skip_spaces(f);
				if (f.empty())
					break;
				std::size_t sp = f.find(' ');
				e.vm_flags.emplace_back(f.substr(0, sp));
				if (sp == std::string_view::npos)
					break;
				f.remove_prefix(sp);
			}
		} else if (auto kv = kb_field(line)) {
			e.kb.emplace(std::string(kv->first), kv->second);
		}
	});
	return out;
}

std::map<std::string, std::uint64_t> parse_kb_fields(std::string_view text)
{
	std::map<std::string, std::uint64_t> out;
	for_each_line(text, [&](std::string_view line) {
		if (auto kv = kb_field(line))
			out.emplace(std::string(kv->first), kv->second);
	});
	return out;
}

std::vector<MapsEntry> read_maps(pid_t pid)
{
	return parse_maps(read_file(fmt::format("/proc/{}/maps", pid)));
}

std::vector<SmapsEntry> read_smaps(pid_t pid)
{
	return parse_smaps(read_file(fmt::format("/proc/{}/smaps", pid)));
}

std::map<std::string, std::uint64_t> smaps_rollup(pid_t pid)
{
	std::string path = fmt::format("/proc/{}/smaps_rollup", pid);
	auto out = parse_kb_fields(read_file(path));
	if (out.empty())
		throw Error(path + ": no fields (is the process a kernel thread or gone?)");
	return out;
}

} // namespace cowscope::proc
