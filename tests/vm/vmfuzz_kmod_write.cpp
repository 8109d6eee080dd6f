// vmfuzz_kmod_write: fuzzes cowscope.ko's write interface inside the VM lab
// (tests/vm/kmod_write_fuzz.sh runs it; meant for the debug tier, whose
// KASAN and lockdep turn a memory or locking bug into a console report).
//
//   vmfuzz_kmod_write [--seconds N] [--seed S]
//
// For N seconds (default 20), at once:
//   - a churn process (forked first, single-threaded) keeps up to 16
//     children alive that fault memory in, fork grandchildren, exec this
//     program again (--exec-child) and exit, publishing their pids in a
//     shared page;
//   - the track writer writes /proc/cowscope/track: the churn's pids and
//     their negations, boundary values (0, PID_MAX_LIMIT and either side,
//     10 and 11 digits, 63/64/65 bytes, signs, blanks, NULs, newlines),
//     random bytes, and buffers that run into an unmapped page;
//   - the range writer writes PID/range of tracked pids: hex pairs around
//     the page and address-space boundaries, 16 and 17 digits, 0x forms,
//     junk, and faulting buffers; after an accepted write it reads the range
//     back from the same file;
//   - two readers open and read every view (maps, ptes, summary, pagemap at
//     aligned, unaligned and far offsets, range, track, version) of the
//     tracked pids with random buffer sizes, some into faulting buffers,
//     keeping a few files open across untracks and exits.
// Every write's result is checked against the interface as kmod/README.md
// states it, worked out here independently (EINVAL for malformed input,
// EFAULT for an unreadable buffer, ESRCH/ENOSPC/ENOENT only for well-formed
// ones); a read may fail only with ESRCH, ENOENT, EIO, EINVAL (unaligned
// pagemap offset) or EFAULT (faulting buffer). Any other outcome prints the
// seed, the thread and the input, and the run fails (exit 1). The kernel's
// own reports (KASAN, lockdep, WARNING, BUG) are caught by the script and
// the lab's console check.
//
// Reproducible: each thread draws its inputs from its own generator seeded
// from S (printed at the start; by default the time), so --seed S replays
// the same input sequences; the interleaving of the threads, the churn's
// timing and the pids differ from run to run.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

using namespace cowscope;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char *kTrack = "/proc/cowscope/track";
constexpr std::size_t kMaxInput = 64;	// CS_TRACK_MAX_INPUT, CS_RANGE_MAX_INPUT
constexpr unsigned long kPidMaxLimit = 4194304;	// PID_MAX_LIMIT on x86-64
constexpr int kChurnSlots = 16;
constexpr std::uint64_t kPage = 4096;

unsigned long g_pid_max;	// /proc/sys/kernel/pid_max
std::uint64_t g_seed;
std::atomic<bool> g_stop{false};
std::atomic<unsigned> g_failures{0};
std::mutex g_print;

// The churn's live pids, in a page shared with the churn process.
struct ChurnPids {
	std::atomic<int> pid[kChurnSlots];
};
ChurnPids *g_churn;

// A page with an unmapped page after it: a buffer that ends at its end runs
// into the hole (copy_from_user/copy_to_user fail: EFAULT).
char *g_edge;

std::string printable(std::string_view s)
{
	std::string out;
	for (unsigned char c : s) {
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out += static_cast<char>(c);
		else {
			char b[8];
			std::snprintf(b, sizeof(b), "\\x%02x", c);
			out += b;
		}
	}
	return out;
}

void failure(const char *thread, const std::string &what)
{
	std::lock_guard<std::mutex> l(g_print);
	std::printf("vmfuzz_kmod_write: FAIL (seed %" PRIu64 ", %s): %s\n", g_seed, thread, what.c_str());
	std::fflush(stdout);
	g_failures++;
}

std::uint64_t mix(std::uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct Rng {
	std::mt19937_64 g;
	explicit Rng(unsigned stream) : g(mix(g_seed ^ mix(stream))) {}
	std::uint64_t below(std::uint64_t n) { return n ? g() % n : 0; }
	bool chance(unsigned percent) { return below(100) < percent; }
	template <class T> const T &pick(const std::vector<T> &v) { return v[below(v.size())]; }
};

// ---- the interface, as kmod/README.md states it -------------------------

// A /proc/cowscope/track write: nullopt-like -1 when malformed (EINVAL), else
// the pid; *neg for "-PID". Rules: 1 to 64 bytes; one optional trailing
// newline; an optional '-'; then 1 to 10 digits and nothing else; the value
// from 1 to PID_MAX_LIMIT.
long track_model(std::string_view in, bool *neg)
{
	if (in.empty() || in.size() > kMaxInput)
		return -1;
	if (in.back() == '\n')
		in.remove_suffix(1);
	*neg = !in.empty() && in[0] == '-';
	if (*neg)
		in.remove_prefix(1);
	if (in.empty() || in.size() > 10)
		return -1;
	unsigned long v = 0;
	for (char c : in) {
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + static_cast<unsigned long>(c - '0');
	}
	if (v == 0 || v > kPidMaxLimit)
		return -1;
	return static_cast<long>(v);
}

bool hex_model(std::string_view &s, std::uint64_t &v)
{
	if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s.remove_prefix(2);
	std::size_t n = 0;
	v = 0;
	while (n < s.size() && std::isxdigit(static_cast<unsigned char>(s[n]))) {
		if (n == 16)
			return false;
		const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[n])));
		v = v << 4 | static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
		n++;
	}
	s.remove_prefix(n);
	return n > 0;
}

// A PID/range write: false when malformed (EINVAL), else the range as the
// module keeps it. Rules: 1 to 64 bytes; one optional trailing newline;
// START-END, each 1 to 16 hex digits with an optional 0x, nothing else;
// START < END; START rounded down and END up to pages (END near the top
// of the address space: the last page's start), still START < END.
bool range_model(std::string_view in, std::uint64_t &s, std::uint64_t &e)
{
	if (in.empty() || in.size() > kMaxInput)
		return false;
	if (in.back() == '\n')
		in.remove_suffix(1);
	if (!hex_model(in, s) || in.empty() || in[0] != '-')
		return false;
	in.remove_prefix(1);
	if (!hex_model(in, e) || !in.empty() || s >= e)
		return false;
	s &= ~(kPage - 1);
	e = e > UINT64_MAX - kPage + 1 ? UINT64_MAX & ~(kPage - 1) : (e + kPage - 1) & ~(kPage - 1);
	return s < e;
}

// ---- inputs -------------------------------------------------------------

std::string random_bytes(Rng &r, std::size_t max_len, std::string_view alphabet)
{
	std::string s(r.below(max_len + 1), '\0');
	for (auto &c : s)
		c = r.chance(70) ? alphabet[r.below(alphabet.size())] : static_cast<char>(r.below(256));
	return s;
}

int churn_pid(Rng &r)
{
	for (int i = 0; i < 4; i++)
		if (int p = g_churn->pid[r.below(kChurnSlots)].load())
			return p;
	return static_cast<int>(getpid());
}

std::string track_input(Rng &r)
{
	static const std::vector<std::string> edges = {
		"0", "-0", "1", "2", "-1", "4194304", "4194305", "-4194305", "2147483647", "4294967296",
		"9999999999", "99999999999", "0000000001", "00000000001", "-", "\n", "\n\n", "1\n\n", "-\n",
		"--1", "+1", " 1", "1 ", "1\t", "0x10", "1e3", std::string("\0" "1", 2), std::string("1\0", 2),
		std::string(63, '1'), std::string(64, '1'), std::string(65, '1'), "-" + std::string(63, '0'),
		std::string(9, '0') + "1\n", "1\r\n", "\xff" "1", "١"};
	const unsigned k = static_cast<unsigned>(r.below(100));
	if (k < 35) {
		std::string p = std::to_string(churn_pid(r));
		if (r.chance(40))
			p = "-" + p;
		return r.chance(50) ? p + "\n" : p;
	}
	if (k < 45)
		return std::to_string(r.below(g_pid_max + 2));	// live, dead or just above pid_max
	if (k < 75)
		return r.pick(edges);
	return random_bytes(r, kMaxInput + 16, "0123456789-\n\0 x");
}

std::string hex(std::uint64_t v, Rng &r)
{
	char b[24];
	std::snprintf(b, sizeof(b), r.chance(50) ? "%" PRIx64 : r.chance(50) ? "0x%" PRIx64 : "0X%" PRIX64, v);
	return b;
}

std::string range_input(Rng &r)
{
	static const std::vector<std::uint64_t> vals = {
		0, 1, 0xfff, 0x1000, 0x1001, 0x400000, 0x7ffffffff000, 0x7fffffffffff, 0x800000000000,
		0xfffffffffffff000, 0xfffffffffffff001, 0xffffffffffffffff, 0x8000000000000000};
	static const std::vector<std::string> edges = {
		"x", "10", "20-10", "10-10", "0x-1", "1-2-3", "g-10", "-", "-1", "1-", "0x1000-0x2000\n\n",
		"00000000000000001-2", "1-00000000000000002", "0000000000000001-0000000000000002",
		std::string("1-2\0" "junk", 8), std::string("1-2\0", 4), std::string("\0" "1-2", 4),
		"1-2 ", " 1-2", "1 -2", "0x1000-0x2000\r\n", std::string(64, 'f'), std::string(65, '1'),
		"0xx1-2", "0x0x1-2", "1-0x"};
	const unsigned k = static_cast<unsigned>(r.below(100));
	if (k < 50) {
		std::uint64_t a = r.chance(60) ? r.pick(vals) : r.g() >> r.below(64);
		std::uint64_t b = r.chance(60) ? r.pick(vals) : r.g() >> r.below(64);
		if (r.chance(70) && a > b)
			std::swap(a, b);
		std::string s = hex(a, r) + "-" + hex(b, r);
		return r.chance(50) ? s + "\n" : s;
	}
	if (k < 75)
		return r.pick(edges);
	return random_bytes(r, kMaxInput + 16, "0123456789abcdefxX-\n\0 ");
}

// write(2) of `in` to fd, from an ordinary buffer or, when `edge`, from one
// whose last `cut` bytes lie in the unmapped page after g_edge's page.
// Returns -errno or the count written.
long do_write(int fd, const std::string &in, bool edge, std::size_t cut)
{
	const char *buf = in.data();
	if (edge) {
		char *p = g_edge + kPage - (in.size() - cut);
		std::memcpy(p, in.data(), in.size() - cut);
		buf = p;
	}
	const ssize_t n = ::write(fd, buf, in.size());
	return n < 0 ? -errno : n;
}

// The rules a write to either file keeps before its own: an empty write
// does nothing or is refused, one over kMaxInput is refused, one whose
// buffer ends early (`edge`) faults. Whether `got` keeps them; nullopt when
// none applies and the file's own rules decide.
std::optional<bool> shared_rules(const std::string &in, bool edge, long got)
{
	if (in.empty())
		return got == 0 || got == -EINVAL;
	if (in.size() > kMaxInput)
		return got == -EINVAL;
	if (edge)
		return got == -EFAULT;
	return std::nullopt;
}

const char *err_name(long e)
{
	return e >= 0 ? "ok" : strerrorname_np(static_cast<int>(-e));
}

// The tracked pids, from /proc/cowscope's directory.
std::vector<int> tracked_pids()
{
	std::vector<int> out;
	DIR *d = ::opendir("/proc/cowscope");
	if (!d)
		return out;
	while (const dirent *e = ::readdir(d))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
			out.push_back(std::atoi(e->d_name));
	::closedir(d);
	return out;
}

// ---- threads ------------------------------------------------------------

struct Counters {
	std::atomic<std::uint64_t> track{0}, range{0}, reads{0};
} g_count;

void track_writer()
{
	Rng r(1);
	UniqueFd fd = UniqueFd::open(kTrack, O_WRONLY);
	while (!g_stop) {
		const std::string in = track_input(r);
		const bool edge = !in.empty() && r.chance(10);
		const std::size_t cut = edge ? 1 + r.below(in.size()) : 0;
		const long got = do_write(fd.get(), in, edge, cut);
		g_count.track++;
		bool neg = false;
		const long pid = track_model(in, &neg);
		bool ok;
		if (const auto c = shared_rules(in, edge, got))
			ok = *c;
		else if (pid < 0)
			ok = got == -EINVAL;
		else if (static_cast<unsigned long>(pid) > g_pid_max)	// above pid_max: no such process, or
			ok = got == -ESRCH || got == -EINVAL || (neg && got == -ENOENT);	// above PID_MAX_LIMIT
		else if (neg)
			ok = got == static_cast<long>(in.size()) || got == -ENOENT;
		else
			ok = got == static_cast<long>(in.size()) || got == -ESRCH || got == -ENOSPC;
		if (!ok)
			failure("track writer", "write \"" + printable(in) + "\"" +
							(edge ? " ending " + std::to_string(cut) + " bytes into an unmapped page"
							      : "") +
							" to " + kTrack + " gave " + err_name(got) + " (expected " +
							(edge ? "EFAULT" : pid < 0 ? "EINVAL" : neg ? "success or ENOENT"
										      : "success, ESRCH or ENOSPC") +
							")");
	}
}

void range_writer()
{
	Rng r(2);
	std::vector<int> pids;
	while (!g_stop) {
		if (pids.empty() || r.chance(5))
			pids = tracked_pids();
		if (pids.empty()) {
			std::this_thread::yield();
			continue;
		}
		const std::string path = "/proc/cowscope/" + std::to_string(r.pick(pids)) + "/range";
		const int fd = ::open(path.c_str(), O_RDWR);
		if (fd < 0) {
			if (errno != ENOENT && errno != ESRCH)
				failure("range writer", "open " + path + ": " + std::strerror(errno));
			pids.clear();
			continue;
		}
		UniqueFd owner(fd);
		for (int i = 0; i < 4 && !g_stop; i++) {
			const std::string in = range_input(r);
			const bool edge = !in.empty() && r.chance(10);
			const std::size_t cut = edge ? 1 + r.below(in.size()) : 0;
			const long got = do_write(fd, in, edge, cut);
			g_count.range++;
			std::uint64_t s = 0, e = 0;
			const bool valid = range_model(in, s, e);
			bool ok;
			if (got == -EIO) {
				// The pid was untracked meanwhile: proc_remove() cut its open
				// files off (kmod/README.md), for good: a well-formed write
				// through this one must fail the same way.
				const long again = do_write(fd, "0x1000-0x2000\n", false, 0);
				if (again != -EIO)
					failure("range writer", "write \"" + printable(in) + "\" to " + path +
									" gave EIO (the pid untracked), then a good write through "
									"the same file gave " + err_name(again));
				break;
			}
			if (const auto c = shared_rules(in, edge, got))
				ok = *c;
			else
				ok = valid ? got == static_cast<long>(in.size()) : got == -EINVAL;
			if (!ok) {
				failure("range writer", "write \"" + printable(in) + "\"" +
								(edge ? " ending " + std::to_string(cut) +
										" bytes into an unmapped page"
								      : "") +
								" to " + path + " gave " + err_name(got) + " (expected " +
								(edge ? "EFAULT" : valid ? "success" : "EINVAL") + ")");
				continue;
			}
			if (!valid || got < 0)
				continue;
			// the range reads back as the module keeps it (only this thread writes ranges)
			char back[128];
			const ssize_t n = ::pread(fd, back, sizeof(back) - 1, 0);
			if (n < 0)
				continue;	// the process went away: ESRCH
			back[n] = '\0';
			char want[64];
			std::snprintf(want, sizeof(want), "0x%" PRIx64 "-0x%" PRIx64 "\n", s, e);
			if (std::strcmp(back, want) != 0)
				failure("range writer", "after writing \"" + printable(in) + "\" to " + path + " it reads \"" +
								printable(back) + "\", not \"" + printable(want) + "\"");
		}
	}
}

void reader(unsigned id)
{
	Rng r(10 + id);
	static const std::vector<std::string> views = {"maps", "ptes", "summary", "pagemap", "range"};
	std::vector<UniqueFd> held;	// files kept open across untracks and exits
	std::vector<int> pids;
	std::vector<char> buf(1 << 16);
	const std::string who = "reader " + std::to_string(id);
	while (!g_stop) {
		if (pids.empty() || r.chance(5))
			pids = tracked_pids();
		std::string path;
		const unsigned k = static_cast<unsigned>(r.below(100));
		if (k < 5 || pids.empty())
			path = k % 2 ? kTrack : "/proc/cowscope/version";
		else
			path = "/proc/cowscope/" + std::to_string(r.pick(pids)) + "/" + r.pick(views);
		UniqueFd fd(::open(path.c_str(), O_RDONLY));
		g_count.reads++;
		if (!fd) {
			if (errno != ENOENT && errno != ESRCH)
				failure(who.c_str(), "open " + path + ": " + std::strerror(errno));
			pids.clear();
			continue;
		}
		const bool pagemap = path.ends_with("/pagemap");
		for (int i = 0; i < 8 && !g_stop; i++) {
			const std::size_t len = 1 + r.below(r.chance(50) ? 64 : buf.size());
			const bool fault = r.chance(5);
			char *dst = fault ? g_edge + kPage - std::min<std::size_t>(len, kPage) / 2 : buf.data();
			ssize_t n;
			off_t off = -1;
			if (pagemap) {
				const std::uint64_t rec = r.chance(20) ? r.below(1ull << 44) : 0x400000 / kPage + r.below(1 << 20);
				off = static_cast<off_t>(rec * 24 + (r.chance(10) ? 1 + r.below(23) : 0));
				n = ::pread(fd.get(), dst, len, off);
			} else {
				n = ::read(fd.get(), dst, len);
			}
			const int e = errno;
			if (pagemap && n >= 0 && (off % 24 != 0 || n % 24 != 0)) {
				failure(who.c_str(), "pread of " + std::to_string(len) + " bytes at " + std::to_string(off) +
							     " of " + path + " gave " + std::to_string(n) +
							     " bytes (expected whole records, EINVAL at an unaligned offset)");
				break;
			}
			if (n == 0)
				break;
			if (n > 0)
				continue;
			const bool ok = e == ESRCH || e == EIO || (fault && e == EFAULT) ||
					(pagemap && e == EINVAL && off % 24 != 0);
			if (!ok)
				failure(who.c_str(), std::string(pagemap ? "pread" : "read") + " of " + std::to_string(len) +
							     " bytes" + (off >= 0 ? " at " + std::to_string(off) : "") + " of " +
							     path + (fault ? " into a faulting buffer" : "") + ": " +
							     strerrorname_np(e));
			break;
		}
		if (r.chance(10)) {
			held.push_back(std::move(fd));
			if (held.size() > 8)
				held.erase(held.begin() + static_cast<long>(r.below(held.size())));
		}
	}
}

// ---- the churn process --------------------------------------------------

void touch(std::size_t pages)
{
	void *p = ::mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	for (std::size_t i = 0; i < pages; i++)
		static_cast<volatile char *>(p)[i * kPage] = 1;
}

void nap_us(std::uint64_t us)
{
	timespec ts{static_cast<time_t>(us / 1000000), static_cast<long>(us % 1000000 * 1000)};
	::nanosleep(&ts, nullptr);
}

// Children that live a few milliseconds each, doing what makes the views
// change under the readers: fault memory in, fork, exec, exit.
[[noreturn]] void churn(const char *self)
{
	Rng r(3);
	::setpgid(0, 0);
	while (true) {
		for (int i = 0; i < kChurnSlots; i++) {
			int p = g_churn->pid[i].load();
			if (p && ::waitpid(p, nullptr, WNOHANG) == p)
				g_churn->pid[i] = 0, p = 0;
			if (p)
				continue;
			const unsigned what = static_cast<unsigned>(r.below(4));
			const std::uint64_t life = r.below(20000);
			const pid_t c = ::fork();
			if (c == 0) {
				touch(1 + r.below(64));
				if (what == 1 && ::fork() == 0) {
					touch(8);
					_exit(0);
				}
				if (what == 2) {
					char arg0[] = "vmfuzz_kmod_write", arg1[] = "--exec-child";
					char *argv[] = {arg0, arg1, nullptr};
					::execv(self, argv);
				}
				nap_us(life);
				if (what == 1)
					::wait(nullptr);
				_exit(0);
			}
			if (c > 0)
				g_churn->pid[i] = c;
		}
		nap_us(500);
	}
}

int run(std::uint64_t seconds)
{
	if (::access(kTrack, W_OK) != 0) {
		std::printf("vmfuzz_kmod_write: skipped: %s is not writable (module not loaded, or not root)\n", kTrack);
		return 77;
	}
	g_pid_max = std::strtoul(read_file("/proc/sys/kernel/pid_max").c_str(), nullptr, 10);
	void *shared = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	void *edge = ::mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED || edge == MAP_FAILED)
		throw SysError("mmap");
	Mapping shared_map(shared, kPage), edge_map(edge, kPage);
	g_churn = new (shared) ChurnPids{};
	g_edge = static_cast<char *>(edge);
	if (::munmap(g_edge + kPage, kPage) != 0)
		throw SysError("munmap");
	std::printf("vmfuzz_kmod_write: seed %" PRIu64 ", %" PRIu64 " s, pid_max %lu (rerun: vmfuzz_kmod_write "
		    "--seconds %" PRIu64 " --seed %" PRIu64 ")\n",
		    g_seed, seconds, g_pid_max, seconds, g_seed);
	std::fflush(stdout);
	static char self[4096];
	const ssize_t sl = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0)
		throw SysError("readlink /proc/self/exe");
	self[sl] = '\0';
	const pid_t churner = ::fork();
	if (churner < 0)
		throw SysError("fork");
	if (churner == 0)
		churn(self);
	const auto t0 = Clock::now();
	std::vector<std::thread> threads;
	threads.emplace_back(track_writer);
	threads.emplace_back(range_writer);
	threads.emplace_back(reader, 0);
	threads.emplace_back(reader, 1);
	while (Clock::now() - t0 < std::chrono::seconds(seconds) && g_failures == 0)
		nap_us(100000);
	g_stop = true;
	for (auto &t : threads)
		t.join();
	const double el = std::chrono::duration<double>(Clock::now() - t0).count();
	// the churn and every child it left: one process group
	::kill(-churner, SIGKILL);
	::kill(churner, SIGKILL);
	::waitpid(churner, nullptr, 0);
	// untrack what is left (exited ones are pruned by the writes)
	{
		UniqueFd fd = UniqueFd::open(kTrack, O_WRONLY);
		for (int p : tracked_pids()) {
			const std::string s = "-" + std::to_string(p);
			(void)!::write(fd.get(), s.data(), s.size());
		}
	}
	const std::uint64_t t = g_count.track, rg = g_count.range, rd = g_count.reads;
	std::printf("vmfuzz_kmod_write: %.1f s: %" PRIu64 " track writes (%.0f/s), %" PRIu64
		    " range writes (%.0f/s), %" PRIu64 " view opens (%.0f/s); %.0f iterations/s in all\n",
		    el, t, t / el, rg, rg / el, rd, rd / el, (t + rg + rd) / el);
	if (g_failures) {
		std::printf("vmfuzz_kmod_write: %u failure(s); rerun with --seed %" PRIu64 "\n", g_failures.load(), g_seed);
		return 1;
	}
	if (t == 0 || rg == 0 || rd == 0) {
		std::printf("vmfuzz_kmod_write: a thread did nothing (no pid was ever tracked?): not a test\n");
		return 1;
	}
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc == 2 && std::strcmp(argv[1], "--exec-child") == 0) {
		touch(16);
		nap_us(2000);
		return 0;
	}
	try {
		std::uint64_t seconds = 20;
		g_seed = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
		for (int i = 1; i < argc; i++) {
			const std::string_view a = argv[i];
			if (i + 1 < argc && a == "--seconds")
				seconds = cli::parse_count(argv[++i], "--seconds", 1, 86400);
			else if (i + 1 < argc && a == "--seed")
				g_seed = cli::parse_count(argv[++i], "--seed", 0, UINT64_MAX);
			else
				throw UsageError(std::string("expected [--seconds N] [--seed S], got \"") + argv[i] + "\"");
		}
		std::setvbuf(stdout, nullptr, _IOLBF, 0);
		return run(seconds);
	} catch (const UsageError &e) {
		std::fprintf(stderr, "vmfuzz_kmod_write: %s\n", e.what());
		return 2;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "vmfuzz_kmod_write: %s\n", e.what());
		return 1;
	}
}
