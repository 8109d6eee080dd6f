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
	if (pid <= 0)
		return std::nullopt;
	try {
		return parse_stat(read_file(fmt::format("/proc/{}/stat", pid)));
	} catch (const Error &) {
		return std::nullopt;
	}
}

bool alive(pid_t pid)
{
	auto st = read_stat(pid);
	return st && !st->gone();
}

} // namespace cowscope::proc
