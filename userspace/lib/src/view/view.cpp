#include "cowscope/view/view.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

namespace cowscope::view {

namespace {

const std::string kTrack = std::string(kRoot) + "/track";

void write_all(const std::string &path, const std::string &data)
{
	UniqueFd fd = UniqueFd::open(path, O_WRONLY);
	ssize_t n = ::write(fd.get(), data.data(), data.size());
	if (n < 0)
		throw SysError(fmt::format("write \"{}\" to {}", data, path));
	if (static_cast<size_t>(n) != data.size())
		throw Error(fmt::format("short write to {}", path));
}

// A whole text view; a target that exited reads as "...: No such process".
std::string read_view(pid_t pid, const char *name)
{
	return read_file(dir(pid) + "/" + name);
}

std::uint64_t to_u64(const std::string &s, int base, const std::string &what)
{
	try {
		size_t used = 0;
		std::uint64_t v = std::stoull(s, &used, base);
		if (used != s.size())
			throw Error("");
		return v;
	} catch (const std::exception &) {
		throw Error(fmt::format("cowscope: bad number \"{}\" in {}", s, what));
	}
}

} // namespace

const char *module_hint()
{
	return "Installed from packages: `apt install cowscope-dkms` (DKMS builds it for each "
	       "kernel with headers), then `modprobe cowscope`. In a clone: `make load`, or the "
	       "VM lab (`make vm`, where it is loaded at boot)";
}

bool module_loaded()
{
	return ::access(kTrack.c_str(), F_OK) == 0;
}

ModuleInfo parse_module_info(const std::string &text)
{
	ModuleInfo m;
	bool have_abi = false;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		if (line.empty())
			continue;
		const auto sp = line.find(' ');
		const std::string key = line.substr(0, sp);
		const std::string val = sp == std::string::npos ? "" : line.substr(sp + 1);
		if (key == "abi") {
			m.abi = static_cast<unsigned>(to_u64(val, 10, "/proc/cowscope/version"));
			have_abi = true;
		} else if (key == "version") {
			m.version = val;
		} else if (key == "mapcount") {
			if (val != "per-page" && val != "folio-average")
				throw Error(fmt::format("cowscope: unknown mapcount kind \"{}\" in "
							"/proc/cowscope/version", val));
			m.mapcount_average = val == "folio-average";
		}
		// other keys: added by a later module, ignored
	}
	if (!have_abi)
		throw Error("cowscope: /proc/cowscope/version has no \"abi N\" line");
	return m;
}

ModuleInfo module_info()
{
	const std::string path = std::string(kRoot) + "/version";
	if (::access(path.c_str(), F_OK) != 0)
		return ModuleInfo{};	// a module of ABI 1 had no such file
	return parse_module_info(read_file(path));
}

void check_module_abi(const ModuleInfo &info)
{
	if (info.abi == COWSCOPE_ABI_VERSION)
		return;
	if (info.abi < COWSCOPE_ABI_VERSION)
		throw Error(fmt::format(
			"the loaded cowscope.ko (version {}) writes records of "
			"interface version {}, these programs read version {}: rebuild the "
			"module from this source tree (`make kmod`, or `make load` natively) "
			"and reload it (rmmod cowscope; insmod build/kmod/<kernel>/cowscope.ko)",
			info.version, info.abi, COWSCOPE_ABI_VERSION));
	throw Error(fmt::format(
		"the loaded cowscope.ko (version {}) writes records of interface "
		"version {}, these programs read version {}: rebuild the programs from the "
		"module's source tree (`make userspace`), or load the module built with them",
		info.version, info.abi, COWSCOPE_ABI_VERSION));
}

void require_module()
{
	if (module_loaded()) {
		// once per process: the module cannot change under a running
		// program without its /proc/cowscope going away
		static const ModuleInfo info = module_info();
		check_module_abi(info);
		return;
	}
	throw Error(fmt::format(
		"{} not found: the cowscope kernel module is not loaded. {}",
		kTrack, module_hint()));
}

std::string dir(pid_t pid)
{
	return fmt::format("{}/{}", kRoot, pid);
}

void track(pid_t pid)
{
	require_module();
	write_all(kTrack, fmt::format("{}\n", pid));
}

void untrack(pid_t pid)
{
	require_module();
	write_all(kTrack, fmt::format("-{}\n", pid));
}

bool tracked(pid_t pid)
{
	return ::access(dir(pid).c_str(), F_OK) == 0;
}

std::string flag_letters(std::uint32_t flags)
{
	char buf[COWSCOPE_FLAG_LETTERS_LEN + 1];
	cowscope_flag_letters(flags, buf);
	return buf;
}

std::string flag_legend()
{
	std::string s;
	for (unsigned i = 0; const struct cowscope_flag_letter *f = cowscope_flag_letter(i); i++)
		s += fmt::format("{}{} {}", i ? " " : "", f->letter, f->name);
	return s;
}

std::string PageRecord::flags() const
{
	return flag_letters(rec.flags);
}

std::vector<PageRecord> read_records(pid_t pid, std::uint64_t start,
				     std::uint64_t end)
{
	const std::uint64_t psz = COWSCOPE_PAGE_SIZE;
	start &= ~(psz - 1);
	end = (end + psz - 1) & ~(psz - 1);
	std::vector<PageRecord> out;
	if (end <= start)
		return out;
	const std::string path = dir(pid) + "/pagemap";
	UniqueFd fd = UniqueFd::open(path, O_RDONLY);
	const std::uint64_t pages = (end - start) / psz;
	std::vector<cowscope_rec> recs(pages);
	auto *p = reinterpret_cast<char *>(recs.data());
	std::uint64_t want = pages * COWSCOPE_REC_SIZE, got = 0;
	const off_t base = static_cast<off_t>(start / psz * COWSCOPE_REC_SIZE);
	while (got < want) {
		ssize_t n = ::pread(fd.get(), p + got, want - got,
				    base + static_cast<off_t>(got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			throw SysError("pread " + path);
		}
		if (n == 0)
			break;	// end of the address space
		got += static_cast<std::uint64_t>(n);
	}
	const std::uint64_t have = got / COWSCOPE_REC_SIZE;
	out.reserve(have);
	for (std::uint64_t i = 0; i < have; i++)
		out.push_back(PageRecord{start + i * psz, recs[i]});
	return out;
}

// Every line of a text view but blank lines and '#' headers, parsed into a
// T by `fields`, which reads the line's columns and returns false when they
// do not fit.
template <typename T, typename Fields>
std::vector<T> parse_view(const std::string &text, const char *view, Fields fields)
{
	std::vector<T> out;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		if (line.empty() || line[0] == '#')
			continue;
		std::istringstream ls(line);
		T row;
		if (!fields(ls, row))
			throw Error(fmt::format("cowscope: bad {} line \"{}\"", view, line));
		out.push_back(std::move(row));
	}
	return out;
}

std::vector<MapsEntry> parse_maps(const std::string &text)
{
	return parse_view<MapsEntry>(text, "maps", [](std::istringstream &ls, MapsEntry &e) {
		std::string range;
		if (!(ls >> range >> e.perms >> e.label >> e.present >> e.writable >>
		      e.cow >> e.shared))
			return false;
		auto dash = range.find('-');
		if (dash == std::string::npos)
			throw Error("cowscope: bad maps range \"" + range + "\"");
		e.start = to_u64(range.substr(0, dash), 16, "maps");
		e.end = to_u64(range.substr(dash + 1), 16, "maps");
		return true;
	});
}

std::vector<MapsEntry> read_maps(pid_t pid)
{
	return parse_maps(read_view(pid, "maps"));
}

unsigned parse_folio_size(const std::string &s)
{
	for (unsigned o = 0; o <= COWSCOPE_MAX_FOLIO_ORDER; o++)
		if (s == folio_size_name(o))
			return o;
	throw Error(fmt::format("cowscope: bad folio size \"{}\" (expected 4K, 8K, ... 2M)", s));
}

std::string folio_size_name(unsigned order)
{
	const std::uint64_t kib = (COWSCOPE_PAGE_SIZE >> 10) << order;
	return kib >= 1024 && kib % 1024 == 0 ? fmt::format("{}M", kib / 1024)
					       : fmt::format("{}K", kib);
}

std::vector<PteLine> parse_ptes(const std::string &text)
{
	return parse_view<PteLine>(text, "ptes", [](std::istringstream &ls, PteLine &p) {
		std::string va, pfn, map, folio, extra;
		if (!(ls >> va >> pfn >> p.flags >> p.ref >> map >> folio) || (ls >> extra))
			return false;
		p.vaddr = to_u64(va, 16, "ptes");	// stoull accepts 0x
		p.pfn = to_u64(pfn, 16, "ptes");
		p.map_average = !map.empty() && map[0] == '~';
		p.map = to_u64(p.map_average ? map.substr(1) : map, 10, "ptes");
		p.folio_order = parse_folio_size(folio);
		return true;
	});
}

std::vector<PteLine> read_ptes(pid_t pid)
{
	return parse_ptes(read_view(pid, "ptes"));
}

void set_range(pid_t pid, std::uint64_t start, std::uint64_t end)
{
	write_all(dir(pid) + "/range", fmt::format("{:#x}-{:#x}\n", start, end));
}

std::vector<SummaryRow> parse_summary(const std::string &text)
{
	return parse_view<SummaryRow>(text, "summary", [](std::istringstream &ls, SummaryRow &r) {
		if (!(ls >> r.label >> r.present >> r.writable >> r.cow >> r.shared >>
		      r.exclusive >> r.huge))
			return false;
		for (auto &n : r.folio)
			if (!(ls >> n))
				return false;
		std::string extra;
		return !(ls >> extra);
	});
}

std::vector<SummaryRow> read_summary(pid_t pid)
{
	return parse_summary(read_view(pid, "summary"));
}

} // namespace cowscope::view
