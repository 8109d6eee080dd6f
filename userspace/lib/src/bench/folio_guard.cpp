// FolioGuard: the THP controls set for one --folio size for a run, and put
// back (by the guard, or by a signal handler) whatever happens; one guard
// at a time, across processes (a lock file).
#include "cowscope/bench/folio.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <utility>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "thp_sysfs.hpp"

namespace cowscope {

using namespace thp_sysfs;

namespace {

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

} // namespace cowscope
