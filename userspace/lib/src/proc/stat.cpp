// /proc/PID/stat parser (see stat.hpp).
#include "cowscope/proc/stat.hpp"

#include <charconv>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

namespace cowscope::proc {

namespace {

// The next space-separated field of `s`, advancing past it.
std::string_view next_field(std::string_view &s)
{
	while (!s.empty() && s.front() == ' ')
		s.remove_prefix(1);
	std::size_t sp = s.find(' ');
	std::string_view f = s.substr(0, sp);
	s.remove_prefix(sp == std::string_view::npos ? s.size() : sp);
	return f;
}

template <class T> bool number(std::string_view f, T &out)
{
	auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), out);
	return ec == std::errc() && p == f.data() + f.size() && !f.empty();
}

// /proc/PID/FILE through `parse`; nullopt when it cannot be read (no such
// process) or parsed.
template <class Parse> auto read_parsed(pid_t pid, const char *file, Parse parse) -> decltype(parse(""))
{
	if (pid <= 0)
		return std::nullopt;
	try {
		return parse(read_file(fmt::format("/proc/{}/{}", pid, file)));
	} catch (const Error &) {
		return std::nullopt;
	}
}

} // namespace

std::optional<Stat> parse_stat(std::string_view text)
{
	// "pid (comm) state ppid pgrp session tty_nr tpgid flags ..."; comm may
	// hold spaces and parentheses, so it ends at the last ')'.
	std::size_t open = text.find(" ("), close = text.rfind(')');
	if (open == std::string_view::npos || close == std::string_view::npos || close < open)
		return std::nullopt;
	Stat st;
	if (!number(text.substr(0, open), st.pid))
		return std::nullopt;
	st.comm = std::string(text.substr(open + 2, close - open - 2));
	std::string_view rest = text.substr(close + 1);
	std::string_view state = next_field(rest);
	if (state.size() != 1)
		return std::nullopt;
	st.state = state[0];
	if (!number(next_field(rest), st.ppid))
		return std::nullopt;
	for (int i = 0; i < 4; i++)	// pgrp session tty_nr tpgid
		if (next_field(rest).empty())
			return std::nullopt;
	std::string_view flags = next_field(rest);
	if (!flags.empty() && flags.back() == '\n')
		flags.remove_suffix(1);
	if (!number(flags, st.flags))
		return std::nullopt;
	return st;
}

std::optional<Stat> read_stat(pid_t pid)
{
	return read_parsed(pid, "stat", parse_stat);
}

std::optional<Status> parse_status(std::string_view text)
{
	Status st;
	bool tgid = false;
	while (!text.empty()) {
		std::size_t nl = text.find('\n');
		std::string_view line = text.substr(0, nl);
		text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
		std::size_t colon = line.find(':');
		if (colon == std::string_view::npos)
			continue;
		std::string_view key = line.substr(0, colon), v = line.substr(colon + 1);
		while (!v.empty() && (v.front() == '\t' || v.front() == ' '))
			v.remove_prefix(1);
		if (key == "Tgid")
			tgid = number(v, st.tgid);
		else if (key == "PPid" && !number(v, st.ppid))
			return std::nullopt;
		else if (key == "State" && !v.empty())
			st.state = v.front();
	}
	if (!tgid || st.tgid <= 0)
		return std::nullopt;
	return st;
}

std::optional<Status> read_status(pid_t pid)
{
	return read_parsed(pid, "status", parse_status);
}

bool alive(pid_t pid)
{
	auto st = read_stat(pid);
	return st && !st->gone();
}

} // namespace cowscope::proc
