// The exposition formats of cowtrace --serve (metrics/exporter.hpp): label
// and HELP escaping of any bytes (a comm is any 15 bytes but NUL), Accept
// negotiation, and a whole scrape of processes whose comm is the input.
// Checked, beyond no crash:
//   - escape_label/escape_help give valid UTF-8 with no raw newline, and a
//     label value no unescaped double quote; unescaped again, they give the
//     input back when the input was valid UTF-8;
//   - negotiate never throws;
//   - a scrape is valid UTF-8, each of its lines a comment or
//     NAME[{LABELS}] VALUE whose label values are properly quoted.
#include <nlohmann/json.hpp>

#include "cowscope/metrics/exporter.hpp"
#include "fuzz_util.hpp"

using namespace cowtrace;
using fuzz::check;

namespace {

// The exposition's unescaping: \\ \n \" ; false on any other escape.
bool unescape(std::string_view s, std::string &out)
{
	out.clear();
	for (std::size_t i = 0; i < s.size(); i++) {
		if (s[i] != '\\') {
			out += s[i];
			continue;
		}
		if (++i == s.size())
			return false;
		switch (s[i]) {
		case '\\': out += '\\'; break;
		case 'n': out += '\n'; break;
		case '"': out += '"'; break;
		default: return false;
		}
	}
	return true;
}

void escaped(std::string_view in, bool label)
{
	const std::string e = label ? escape_label(in) : escape_help(in);
	check(fuzz::valid_utf8(e), "an escaped value is not valid UTF-8", in, e);
	check(e.find('\n') == std::string::npos, "an escaped value holds a raw newline", in, e);
	if (label)
		for (std::size_t i = 0; i < e.size(); i++) {
			if (e[i] == '\\')
				i++;
			else
				check(e[i] != '"', "an escaped label value holds an unescaped '\"'", in, e);
		}
	std::string back;
	if (label) {
		check(unescape(e, back), "an escaped label value holds an unknown escape", in, e);
		if (fuzz::valid_utf8(in))
			check(back == in, "a valid UTF-8 label value does not unescape to itself", in, e);
	}
}

// NAME{k="v",...} VALUE or NAME VALUE, with properly quoted values.
bool sample_line(std::string_view l)
{
	std::size_t i = 0;
	while (i < l.size() && (std::isalnum(static_cast<unsigned char>(l[i])) || l[i] == '_' || l[i] == ':'))
		i++;
	if (i == 0 || i == l.size())
		return false;
	if (l[i] == '{') {
		i++;
		while (true) {
			std::size_t k = i;
			while (i < l.size() && (std::isalnum(static_cast<unsigned char>(l[i])) || l[i] == '_'))
				i++;
			if (i == k || i + 1 >= l.size() || l[i] != '=' || l[i + 1] != '"')
				return false;
			i += 2;
			while (i < l.size() && l[i] != '"')
				i += l[i] == '\\' ? 2 : 1;
			if (i >= l.size())
				return false;
			i++;
			if (i < l.size() && l[i] == ',') {
				i++;
				continue;
			}
			if (i < l.size() && l[i] == '}') {
				i++;
				break;
			}
			return false;
		}
	}
	return i < l.size() && l[i] == ' ' && i + 1 < l.size();
}

void scrape(std::string_view comm, Format f)
{
	SeriesSet set(4, 30);
	std::vector<ProcStats> procs;
	for (pid_t p = 1; p <= 3; p++) {
		ProcStats s;
		s.pid = 100 + p;
		s.ppid = p == 1 ? 1 : 101;
		s.comm = std::string(comm.substr(0, 15 * static_cast<std::size_t>(p)));
		s.exited = p == 3;
		s.wp_faults = 10u * p, s.cow_copies = 7u * p, s.cow_reuses = 3u * p;
		procs.push_back(s);
	}
	set.update(procs, 1.0);
	Exposition e;
	e.method = "fuzz";
	e.target = std::string(comm);
	e.tree = true;
	e.root_pid = 101;
	e.root_comm = std::string(comm);
	e.bpf_stats = true;
	e.bpf_progs = {{std::string(comm.substr(0, 16)), 5, 2}};
	const std::string out = format_metrics(set, e, f);
	check(fuzz::valid_utf8(out), "a scrape is not valid UTF-8", comm);
	std::size_t pos = 0;
	while (pos < out.size()) {
		std::size_t nl = out.find('\n', pos);
		check(nl != std::string::npos, "a scrape does not end in a newline", comm);
		std::string_view line(out.data() + pos, nl - pos);
		if (!line.starts_with("#"))
			check(sample_line(line), "a scrape line is not NAME[{LABELS}] VALUE", comm, line);
		pos = nl + 1;
	}
}

void fuzz_one(std::uint8_t pick, std::string_view text)
{
	switch (pick % 4) {
	case 0: escaped(text, true); break;
	case 1: escaped(text, false); break;
	case 2: (void)content_type(negotiate(text)); break;
	default: scrape(text, pick & 4 ? Format::openmetrics : Format::prometheus); break;
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	return fuzz::run_picked(data, size, fuzz_one);
}
