// Large-folio controls and observation (see cowscope/bench/folio.hpp).
#include "cowscope/bench/folio.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <sstream>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/proc/maps.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/base/units.hpp"

namespace cowscope {

namespace {

constexpr const char *kRealRoot = "/sys/kernel/mm/transparent_hugepage";
std::string g_root; // "" = kRealRoot

constexpr std::uint64_t kKiB = 1024;
constexpr int kKpfCompoundHead = 15;
constexpr int kKpfCompoundTail = 16;

// What a live guard changed, in static storage so that a signal handler can
// write it back with open/write/close only.
struct SavedControl {
	char path[256];
	char value[16];
};
constexpr int kMaxSaved = 32;
SavedControl g_saved[kMaxSaved];
std::atomic<int> g_nsaved{0};
std::atomic<bool> g_guard_live{false};

bool exists(const std::string &p)
{
	struct stat st;
	return ::stat(p.c_str(), &st) == 0;
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

// Per-size folders: size in bytes -> folder path, for those with `enabled`.
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

std::uint64_t read_u64(const std::string &path)
{
	std::string s = read_file(path);
	return std::stoull(s);
}

} // namespace

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

// ---- the guard --------------------------------------------------------------

namespace {

// The THP controls are global: a second cowbench --folio (a test, a sweep)
// changing them meanwhile would give this run's heap other folios and
// restore the wrong values. Every guard holds this lock while its changes
// are in place; a second one waits, and says so.
UniqueFd lock_folio_controls()
{
	const char *path = "/run/lock/cowscope-thp.lock";
	// /run/lock is missing on a bare /run (the VM lab's initramfs)
	if (::mkdir("/run/lock", 01777) != 0 && errno != EEXIST)
		throw Error(fmt::format("--folio: cannot make /run/lock for {}: {}", path,
					std::strerror(errno)));
	UniqueFd fd(::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	if (fd.get() < 0)
		throw Error(fmt::format("--folio: cannot open the lock file {}: {}", path,
					std::strerror(errno)));
	if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
		return fd;
	if (errno != EWOULDBLOCK)
		throw Error(fmt::format("--folio: cannot lock {}: {}", path, std::strerror(errno)));
	fmt::print(stderr, "cowbench: --folio: another process holds the THP controls ({}); waiting\n",
		   path);
	while (::flock(fd.get(), LOCK_EX) != 0) {
		if (errno != EINTR)
			throw Error(fmt::format("--folio: cannot lock {}: {}", path, std::strerror(errno)));
	}
	return fd;
}

} // namespace

FolioGuard::FolioGuard(std::uint64_t bytes)
{
	if (bytes == 4 * kKiB)
		return; // MADV_NOHUGEPAGE on the mapping does it; nothing global
	check_folio_offered(bytes);
	if (::geteuid() != 0)
		throw Error(fmt::format("--folio {}: setting {}'s controls needs root", folio_name(bytes),
					thp_sysfs_root()));
	bool expected = false;
	if (!g_guard_live.compare_exchange_strong(expected, true))
		throw Error("--folio: another folio-size guard is already live in this process");
	try {
		lock_ = lock_folio_controls();
	} catch (...) {
		g_guard_live.store(false);
		throw;
	}
	active_ = true;
	g_nsaved.store(0);
	try {
		apply(bytes);
	} catch (...) {
		restore(); // a constructor that throws gets no destructor
		throw;
	}
}

void FolioGuard::apply(std::uint64_t bytes)
{
	std::string root = thp_sysfs_root();
	std::string top_path = root + "/enabled";
	std::string top = exists(top_path) ? control_value(top_path) : "never";
	// Plan every change first, then apply in order (save before write).
	std::vector<std::pair<std::string, std::string>> plan; // path, new value
	auto dirs = size_dirs();
	if (dirs.empty()) {
		// Kernels before mTHP: the top-level control is the 2M one.
		if (!allows_madvised(top, "never"))
			plan.emplace_back(top_path, "madvise");
	} else {
		for (const auto &[b, dir] : dirs) {
			std::string p = dir + "/enabled";
			std::string v = control_value(p);
			bool allows = allows_madvised(v, top);
			if (b == bytes && !allows)
				plan.emplace_back(p, "madvise");
			else if (b != bytes && allows)
				plan.emplace_back(p, "never");
		}
	}
	{
		for (const auto &[path, value] : plan) {
			std::string old = control_value(path);
			int i = g_nsaved.load();
			if (i >= kMaxSaved || path.size() >= sizeof(g_saved[0].path) ||
			    old.size() >= sizeof(g_saved[0].value))
				throw Error(fmt::format("--folio: cannot save {} (too many or too long)", path));
			std::snprintf(g_saved[i].path, sizeof(g_saved[i].path), "%s", path.c_str());
			std::snprintf(g_saved[i].value, sizeof(g_saved[i].value), "%s", old.c_str());
			g_nsaved.store(i + 1); // saved before it is changed
			write_control(path, value);
			changes_.push_back(fmt::format("{}: {} -> {}", path, old, value));
		}
	}
}

FolioGuard::FolioGuard(FolioGuard &&o) noexcept
	: active_(std::exchange(o.active_, false)), changes_(std::move(o.changes_)),
	  lock_(std::move(o.lock_))
{
}

FolioGuard &FolioGuard::operator=(FolioGuard &&o) noexcept
{
	if (this != &o) {
		restore();
		active_ = std::exchange(o.active_, false);
		changes_ = std::move(o.changes_);
		lock_ = std::move(o.lock_);
	}
	return *this;
}

FolioGuard::~FolioGuard()
{
	restore();
}

void FolioGuard::restore() noexcept
{
	if (!active_)
		return;
	restore_folio_controls_now();
	active_ = false;
	g_guard_live.store(false);
	lock_.reset(); // only now may another process change the controls
}

void restore_folio_controls_now() noexcept
{
	// Newest first, each entry once (the count drops before the write, so a
	// signal arriving meanwhile does not repeat it).
	for (;;) {
		int n = g_nsaved.load();
		if (n <= 0)
			return;
		if (!g_nsaved.compare_exchange_strong(n, n - 1))
			continue;
		const SavedControl &s = g_saved[n - 1];
		int fd = ::open(s.path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t r = ::write(fd, s.value, std::strlen(s.value));
			(void)r;
			::close(fd);
		}
	}
}

namespace {
void (*g_on_first)() noexcept = nullptr;
volatile sig_atomic_t g_signals = 0;

extern "C" void folio_signal(int sig)
{
	sig_atomic_t seen = g_signals;
	g_signals = seen + 1;
	if (seen == 0 && g_on_first) {
		g_on_first();
		return;
	}
	restore_folio_controls_now();
	::signal(sig, SIG_DFL);
	::raise(sig);
}
} // namespace

void install_folio_signal_handlers(void (*on_first)() noexcept)
{
	g_on_first = on_first;
	g_signals = 0;
	struct sigaction sa {};
	sa.sa_handler = folio_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
	sigaction(SIGHUP, &sa, nullptr);
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

// ---- observation ------------------------------------------------------------

std::vector<PageFolio> page_folios(const void *addr, std::size_t len, pid_t pid)
{
	const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	const std::size_t n = (len + ps - 1) / ps;
	std::vector<PageFolio> out(n);
	if (!n)
		return out;
	std::vector<PagemapEntry> pm(n);
	Pagemap(pid ? pid : ::getpid()).read(reinterpret_cast<std::uintptr_t>(addr), n, pm.data());
	const KpageFile kpf("/proc/kpageflags");
	std::vector<std::uint64_t> buf(512);
	auto flags_at = [&](std::uint64_t pfn, std::size_t count) {
		buf.assign(count, 0);
		buf.resize(kpf.read(pfn, count, buf.data()));
	};
	auto is = [](std::uint64_t f, int bit) { return (f >> bit & 1) != 0; };
	std::uint64_t cur_head = 0, cur_pages = 0; // the last folio found
	for (std::size_t i = 0; i < n; i++) {
		if (!pm[i].present())
			continue;
		std::uint64_t pfn = pm[i].pfn();
		if (pfn == 0)
			throw Error("/proc/PID/pagemap hides PFNs: observing folios needs root (CAP_SYS_ADMIN)");
		if (!(cur_pages && pfn >= cur_head && pfn < cur_head + cur_pages)) {
			flags_at(pfn, 1);
			std::uint64_t f = buf.empty() ? 0 : buf[0];
			if (!is(f, kKpfCompoundHead) && !is(f, kKpfCompoundTail)) {
				cur_head = pfn;
				cur_pages = 1;
			} else {
				std::uint64_t head = pfn;
				// A tail: walk back to the head (at most 2^18 pages: 1G).
				while (is(f, kKpfCompoundTail) && head > 0 && pfn - head < (1u << 18)) {
					std::uint64_t chunk = std::min<std::uint64_t>(512, head);
					flags_at(head - chunk, chunk);
					std::size_t j = buf.size();
					while (j > 0 && is(buf[j - 1], kKpfCompoundTail))
						j--;
					head -= buf.size() - j;
					if (j > 0) { // buf[j-1] is the head
						head -= 1;
						f = buf[j - 1];
						break;
					}
					if (buf.size() < chunk)
						break;
				}
				std::uint64_t pages = 1;
				for (;;) {
					flags_at(head + pages, 512);
					std::size_t k = 0;
					while (k < buf.size() && is(buf[k], kKpfCompoundTail))
						k++;
					pages += k;
					if (k < 512 || pages >= (1u << 18))
						break;
				}
				cur_head = head;
				cur_pages = pages;
			}
		}
		out[i] = {pfn, cur_pages * ps, cur_head};
	}
	return out;
}

double FolioObservation::fraction(std::uint64_t bytes) const
{
	if (source == "none" || pages == 0)
		return NAN;
	auto it = pages_by_size.find(bytes);
	return static_cast<double>(it == pages_by_size.end() ? 0 : it->second) / static_cast<double>(pages);
}

nlohmann::json FolioObservation::to_json() const
{
	nlohmann::json by = nlohmann::json::object();
	for (const auto &[b, p] : pages_by_size)
		by[b ? folio_name(b) : "unknown"] = p;
	return {{"source", source}, {"note", note},
		{"pages", pages},   {"pages_present", pages_present},
		{"pages_by_folio_size", by}, {"large_folios_partly_mapped", folios_partial}};
}

std::string FolioObservation::summary() const
{
	if (source == "none")
		return "unknown (" + note + ")";
	std::vector<std::pair<std::uint64_t, std::uint64_t>> v(pages_by_size.begin(), pages_by_size.end());
	std::sort(v.begin(), v.end(), [](auto &a, auto &b) { return a.second > b.second; });
	std::string s;
	for (const auto &[b, p] : v)
		s += fmt::format("{}{} {:.1f}%", s.empty() ? "" : ", ", b ? folio_name(b) : "unknown",
				 pages ? 100.0 * static_cast<double>(p) / static_cast<double>(pages) : 0.0);
	return s + " of " + std::to_string(pages) + " pages (" + source + ")";
}

FolioObservation observe_folios(const void *addr, std::size_t len, pid_t pid)
{
	FolioObservation o;
	const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	o.pages = (len + ps - 1) / ps;
	try {
		auto pf = page_folios(addr, len, pid);
		o.source = "kpageflags";
		std::map<std::uint64_t, std::uint64_t> mapped_of_head; // head -> pages mapped here
		std::map<std::uint64_t, std::uint64_t> size_of_head;
		for (const auto &p : pf) {
			if (!p.folio_bytes)
				continue;
			o.pages_present++;
			o.pages_by_size[p.folio_bytes]++;
			if (p.folio_bytes > ps) {
				mapped_of_head[p.head_pfn]++;
				size_of_head[p.head_pfn] = p.folio_bytes / ps;
			}
		}
		for (const auto &[h, m] : mapped_of_head)
			if (m != size_of_head[h])
				o.folios_partial++;
		return o;
	} catch (const Error &e) {
		o.note = e.what();
	}
	// Without PFNs: smaps' AnonHugePages of the mapping (PMD-mapped THP only).
	try {
		auto start = reinterpret_cast<std::uintptr_t>(addr);
		for (const proc::SmapsEntry &e : proc::read_smaps(pid ? pid : ::getpid())) {
			if (!e.vma.contains(start))
				continue;
			std::uint64_t rss = e.field("Rss"), huge = e.field("AnonHugePages");
			o.source = "smaps";
			o.note += "; smaps sees only PMD-mapped 2M folios: the rest is \"unknown\"";
			o.pages_present = rss * kKiB / ps;
			if (huge)
				o.pages_by_size[2048 * kKiB] = huge * kKiB / ps;
			if (rss > huge)
				o.pages_by_size[0] = (rss - huge) * kKiB / ps;
			break;
		}
	} catch (const std::exception &) {
	}
	return o;
}

} // namespace cowscope
