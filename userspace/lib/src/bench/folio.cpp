// Large-folio controls (see cowscope/bench/folio.hpp): the sizes' names,
// which this kernel offers, the THP controls in sysfs and their counters.
// Changing them for a run is folio_guard.cpp's; what backs a mapping,
// folio_observe.cpp's.
#include "cowscope/bench/folio.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/units.hpp"
#include "thp_sysfs.hpp"

namespace cowscope {

namespace {

constexpr const char *kRealRoot = "/sys/kernel/mm/transparent_hugepage";
std::string g_root; // "" = kRealRoot

std::uint64_t read_u64(const std::string &path)
{
	std::string s = read_file(path);
	return std::stoull(s);
}

// "always inherit madvise [never]" -> "never".
std::string bracketed(const std::string &s)
{
	auto a = s.find('['), b = s.find(']');
	std::string w = s.substr(0, s.find_last_not_of(" \n") + 1);
	if (a == std::string::npos && !w.empty() && w.find(' ') == std::string::npos)
		return w; // one bare word (a test's fake tree)
	if (a == std::string::npos || b == std::string::npos || b < a)
		throw Error(fmt::format("unexpected THP control text \"{}\"", s));
	return s.substr(a + 1, b - a - 1);
}

} // namespace

namespace thp_sysfs {

bool exists(const std::string &p)
{
	struct stat st;
	return ::stat(p.c_str(), &st) == 0;
}

std::string control_value(const std::string &path)
{
	return bracketed(read_file(path));
}

void write_control(const std::string &path, const std::string &value)
{
	UniqueFd fd = UniqueFd::open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
		throw SysError(fmt::format("write \"{}\" to {}", value, path));
}

std::map<std::uint64_t, std::string> size_dirs()
{
	std::map<std::uint64_t, std::string> out;
	std::string root = thp_sysfs_root();
	DIR *d = ::opendir(root.c_str());
	if (!d)
		return out;
	while (struct dirent *e = ::readdir(d)) {
		unsigned long kb = 0;
		char tail[8] = {};
		if (std::sscanf(e->d_name, "hugepages-%lukB%7s", &kb, tail) != 1 || kb == 0)
			continue;
		std::string dir = root + "/" + e->d_name;
		if (exists(dir + "/enabled"))
			out[kb * kKiB] = dir;
	}
	::closedir(d);
	return out;
}

// Whether a control value lets a MADV_HUGEPAGE mapping have that size.
bool allows_madvised(const std::string &v, const std::string &top)
{
	if (v == "always" || v == "madvise")
		return true;
	return v == "inherit" && (top == "always" || top == "madvise");
}

} // namespace thp_sysfs

using namespace thp_sysfs;

std::string folio_name(std::uint64_t b)
{
	if (b >= (1u << 20) && b % (1u << 20) == 0)
		return fmt::format("{}M", b >> 20);
	if (b % kKiB == 0)
		return fmt::format("{}K", b / kKiB);
	return fmt::format("{}", b);
}

std::uint64_t parse_folio(std::string_view text, std::string_view what)
{
	std::string t(text);
	if (t.size() > 1 && (t.back() == 'B' || t.back() == 'b') &&
	    std::isalpha(static_cast<unsigned char>(t[t.size() - 2])))
		t.pop_back();
	auto bad = [&] {
		return UsageError(fmt::format("{}: expected a folio size, a power of two from 4K to 2M (4K 16K 32K "
					      "64K 128K 256K 512K 1M 2M), got \"{}\"",
					      what, text));
	};
	std::uint64_t b = 0;
	try {
		b = parse_size(t, what);
	} catch (const UsageError &) {
		throw bad();
	}
	if (b < 4 * kKiB || b > 2048 * kKiB || (b & (b - 1)))
		throw bad();
	return b;
}

std::string thp_sysfs_root()
{
	return g_root.empty() ? kRealRoot : g_root;
}

void set_thp_sysfs_root(const std::string &path)
{
	g_root = path;
}

bool has_mthp_controls()
{
	return !size_dirs().empty();
}

std::vector<std::uint64_t> folio_sizes_offered()
{
	std::vector<std::uint64_t> out = {4 * kKiB};
	auto dirs = size_dirs();
	for (const auto &[b, d] : dirs)
		out.push_back(b);
	if (dirs.empty() && exists(thp_sysfs_root() + "/enabled"))
		out.push_back(2048 * kKiB);
	return out;
}

void check_folio_offered(std::uint64_t bytes, std::string_view what)
{
	auto off = folio_sizes_offered();
	if (std::find(off.begin(), off.end(), bytes) != off.end())
		return;
	std::string list;
	for (auto b : off)
		list += (list.empty() ? "" : " ") + folio_name(b);
	if (off.size() == 1)
		throw UsageError(fmt::format("{}: this kernel has no THP controls at all ({} is missing): only 4K "
					     "folios; {} is not offered",
					     what, thp_sysfs_root(), folio_name(bytes)));
	if (!has_mthp_controls())
		throw UsageError(fmt::format("{}: this kernel has no multi-size THP controls "
					     "({}/hugepages-<N>kB/enabled): it offers {}; {} is not one",
					     what, thp_sysfs_root(), list, folio_name(bytes)));
	throw UsageError(fmt::format("{}: this kernel offers {}; {} is not one", what, list, folio_name(bytes)));
}

std::map<std::uint64_t, FolioCounters> read_folio_counters()
{
	std::map<std::uint64_t, FolioCounters> out;
	for (const auto &[b, dir] : size_dirs()) {
		try {
			FolioCounters c;
			c.alloc = read_u64(dir + "/stats/anon_fault_alloc");
			c.fallback = read_u64(dir + "/stats/anon_fault_fallback");
			out[b] = c;
		} catch (const std::exception &) {
		}
	}
	return out;
}

} // namespace cowscope
