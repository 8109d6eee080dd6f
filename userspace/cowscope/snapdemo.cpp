// snapdemo: a toy in-memory key-value store that forks snapshot children,
// the way Redis's BGSAVE does - a live program to point cowtrace and
// `cowscope diff` at (docs/lab.md, "Live processes").
//
//   snapdemo [--mem SIZE] [--keys N] [--rate UPDATES/S] [--interval SECONDS]
//            [--snapshot-seconds SECONDS] [--out DIR|/dev/null] [--snapshots N]
//
// The store is --keys records filling --mem bytes of the heap (brk), all
// touched at start. The main loop updates random records at --rate per
// second. Every --interval seconds (if no snapshot is running) it forks a
// child that walks the whole store read-only and writes it to
// DIR/snapdemo-PARENTPID.snap (temporary file, fsync, rename) or to
// /dev/null, paced to take --snapshot-seconds. The child only reads the
// store, so the pages that get copied are the ones the PARENT writes while
// the child lives: the parent takes the copies, the child keeps the
// original pages (its frozen view).
//
// Prints its pid at start, each child's pid and fork() time (as the parent
// saw it, like Redis's latest_fork_usec) when forked, and one line per
// finished snapshot. Ctrl-C (SIGINT/SIGTERM): kills and reaps a running
// child, removes its temporary file, exits 0. The child also dies with the
// parent (PR_SET_PDEATHSIG), so none is left behind even after SIGKILL.
// Exit status: 0 ok, 1 runtime error, 2 usage error.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cowscope/base/cli.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/base/process.hpp"
#include "cowscope/base/units.hpp"
#include "cowscope/base/version.hpp"

using namespace cowscope;

namespace {

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

void say(const std::string &s) { std::cout << s << std::flush; }

double now()
{
	timespec ts{};
	::clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void sleep_for(double s)
{
	if (s <= 0)
		return;
	timespec ts{static_cast<time_t>(s), static_cast<long>((s - std::floor(s)) * 1e9)};
	::nanosleep(&ts, nullptr); // EINTR just ends the nap early
}

// ---- the store --------------------------------------------------------

struct Record {
	std::uint64_t key;
	std::uint64_t version;
	// then record_size - 16 bytes of value
};

struct Store {
	char *base = nullptr;
	std::uint64_t keys = 0, record = 0, bytes = 0;
	std::uint64_t rng = 0x9e3779b97f4a7c15ull;

	Record *at(std::uint64_t k) const { return reinterpret_cast<Record *>(base + k * record); }

	std::uint64_t next()
	{
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		return rng;
	}
	void update()
	{
		std::uint64_t k = next() % keys;
		Record *r = at(k);
		r->version++;
		std::memcpy(reinterpret_cast<char *>(r) + sizeof(Record), &rng,
			    std::min<std::uint64_t>(8, record - sizeof(Record)));
	}
};

// ---- the snapshot child -------------------------------------------------

// Writes the store to fd in chunks, paced so the whole takes `seconds`.
// Reads the store only. Returns the bytes written.
std::uint64_t write_paced(const Store &st, int fd, double seconds)
{
	constexpr std::uint64_t chunk = 64 * 1024;
	const double t0 = now();
	std::uint64_t done = 0;
	while (done < st.bytes) {
		std::uint64_t n = std::min(chunk, st.bytes - done);
		ssize_t k = ::write(fd, st.base + done, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			throw SysError("write snapshot");
		done += static_cast<std::uint64_t>(k);
		if (seconds > 0)
			sleep_for(t0 + seconds * static_cast<double>(done) / static_cast<double>(st.bytes) -
				  now());
	}
	return done;
}

[[noreturn]] void child_main(const Store &st, const std::string &out, double seconds, int report_fd,
			     pid_t parent)
{
	int rc = 0;
	std::uint64_t bytes = 0;
	std::string tmp;
	try {
		if (out == "/dev/null") {
			int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
			if (fd < 0)
				throw SysError("open /dev/null");
			bytes = write_paced(st, fd, seconds);
			::close(fd);
		} else {
			std::string path = fmt::format("{}/snapdemo-{}.snap", out, parent);
			tmp = fmt::format("{}/.snapdemo-{}.snap.tmp.{}", out, parent, ::getpid());
			int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd < 0)
				throw SysError("open " + tmp);
			bytes = write_paced(st, fd, seconds);
			if (::fsync(fd) != 0)
				throw SysError("fsync " + tmp);
			if (::close(fd) != 0)
				throw SysError("close " + tmp);
			if (::rename(tmp.c_str(), path.c_str()) != 0)
				throw SysError("rename " + tmp + " to " + path);
			tmp.clear();
		}
	} catch (const std::exception &e) {
		std::cerr << "snapdemo: snapshot child " << ::getpid() << ": " << e.what() << "\n";
		if (!tmp.empty())
			::unlink(tmp.c_str());
		rc = 1;
	}
	(void)!::write(report_fd, &bytes, sizeof(bytes));
	::_exit(rc);
}

// ---- the parent ---------------------------------------------------------

struct Snapshot {
	Child child;		// killed and reaped should run() throw
	UniqueFd report;	// its report pipe's read end
	int number = 0;
	double started = 0;
	std::uint64_t updates_at_start = 0;
};

// run()'s state: the store the parent writes, the snapshot in flight and
// the counts.
struct Demo {
	Store st;
	std::string out;
	double snap_seconds = 0;
	pid_t self = ::getpid();
	Snapshot cur;
	int started = 0, finished = 0, failures = 0, killed = 0;
	std::uint64_t updates = 0;

	// The snapshot child's end (killed first if `kill_it`), said; false
	// while it still runs.
	bool reap(bool kill_it)
	{
		int status = 0;
		const pid_t pid = cur.child.pid();
		if (kill_it) {
			::kill(pid, SIGKILL);
			status = cur.child.wait();
		} else if (!cur.child.try_wait(status)) {
			return false; // still running
		}
		std::uint64_t bytes = 0;
		if (::read(cur.report.get(), &bytes, sizeof(bytes)) != static_cast<ssize_t>(sizeof(bytes)))
			bytes = 0;
		finished++;
		const double took = now() - cur.started;
		if (kill_it) {
			// The killed child's temporary file would stay behind.
			if (out != "/dev/null")
				::unlink(fmt::format("{}/.snapdemo-{}.snap.tmp.{}", out, self, pid).c_str());
			killed++;
			say(fmt::format("snapshot {}: child {} killed after {:.2f} s\n", cur.number, pid,
					took));
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			say(fmt::format("snapshot {}: child {} wrote {} ({} bytes) to {} in {:.2f} s; parent made "
					"{} updates meanwhile\n",
					cur.number, pid, format_size(bytes), bytes,
					out == "/dev/null" ? out : fmt::format("{}/snapdemo-{}.snap", out, self), took,
					updates - cur.updates_at_start));
		} else {
			failures++;
			say(fmt::format("snapshot {}: child {} failed ({}) after {:.2f} s\n", cur.number, pid,
					WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status))
							  : fmt::format("signal {}", WTERMSIG(status)),
					took));
		}
		cur = Snapshot{};
		return true;
	}

	// Fork the next snapshot child.
	void start_snapshot()
	{
		Pipe report;
		std::cout << std::flush;
		const double f0 = now();
		pid_t pid = ::fork();
		if (pid < 0)
			throw SysError("fork");
		if (pid == 0) {
			report.read_end.reset();
			::prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (::getppid() != self)
				::_exit(1); // the parent died before prctl
			::signal(SIGINT, SIG_DFL);
			::signal(SIGTERM, SIG_DFL);
			child_main(st, out, snap_seconds, report.write_end.get(), self);
		}
		const double fork_ms = (now() - f0) * 1e3;
		cur.child = Child(pid);
		cur.report = std::move(report.read_end);	// the write end closes here
		cur.number = ++started;
		cur.started = now();
		cur.updates_at_start = updates;
		say(fmt::format("snapshot {}: forked child {} (parent {}) in {:.3f} ms\n", cur.number, pid, self,
				fork_ms));
	}
};

int run(const Store &st0, std::uint64_t rate, double interval, double snap_seconds,
	const std::string &out, std::uint64_t max_snapshots)
{
	Demo d;
	d.st = st0;
	d.out = out;
	d.snap_seconds = snap_seconds;
	const double t0 = now();
	double next_snap = t0 + interval;
	double rate_t0 = t0;
	std::uint64_t rate_base = 0;

	while (!g_stop) {
		const double t = now();
		// The steady write load: catch up to rate * elapsed, at most 1 s worth.
		std::uint64_t target = rate_base + static_cast<std::uint64_t>(
							   static_cast<double>(rate) * (t - rate_t0));
		if (target > d.updates + rate + 1) {
			rate_t0 = t; // we fell far behind (stopped, swapped): don't burst
			rate_base = d.updates;
			target = d.updates + rate + 1;
		}
		while (d.updates < target) {
			d.st.update();
			d.updates++;
		}
		if (d.cur.child)
			d.reap(false);
		if (max_snapshots && d.finished >= static_cast<int>(max_snapshots))
			break;
		if (!d.cur.child && t >= next_snap &&
		    (max_snapshots == 0 || d.started < static_cast<int>(max_snapshots))) {
			d.start_snapshot();
			next_snap = t + interval;
		}
		sleep_for(0.01);
	}
	if (d.cur.child)
		d.reap(true);
	say(fmt::format("snapdemo: {}: {} updates, {} snapshots ({} killed at exit, {} failed)\n",
			g_stop ? "stopped" : "done", d.updates, d.finished, d.killed, d.failures));
	return d.failures ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"snapdemo: a toy key-value store whose parent keeps writing while forked "
		     "snapshot children save it (Redis BGSAVE), to watch with cowtrace and cowscope diff"};
	app.set_version_flag("--version", version_line("snapdemo"));
	std::string mem_s = "64M", keys_s = "262144", rate_s = "2000", interval_s = "10",
		    snap_s = "5", out = "/tmp", count_s = "0";
	app.add_option("--mem", mem_s, "store size (default 64M)");
	app.add_option("--keys", keys_s, "number of records; record size = mem / keys (default 262144)");
	app.add_option("--rate", rate_s, "random key updates per second (default 2000)");
	app.add_option("--interval", interval_s, "seconds between snapshot starts (default 10)");
	app.add_option("--snapshot-seconds", snap_s,
		       "how long each snapshot takes, paced (default 5; 0: as fast as possible)");
	app.add_option("--out", out, "folder for snapdemo-PID.snap, or /dev/null (default /tmp)");
	app.add_option("--snapshots", count_s, "exit after this many snapshots (default 0: until Ctrl-C)");
	return cli::run_main("snapdemo", app, [&] {
		app.parse(argc, argv);
		Store st;
		st.bytes = parse_size(mem_s, "--mem");
		if (st.bytes < 64 * 1024 || st.bytes > (1ull << 36))
			cli::usage_error("--mem", "a size from 64K to 64G", mem_s);
		st.keys = cli::parse_count(keys_s, "--keys", 1, st.bytes / 16,
					   "a number of records from 1 to mem/16");
		st.record = st.bytes / st.keys;
		st.bytes = st.record * st.keys;
		const std::uint64_t rate = cli::parse_count(rate_s, "--rate", 0, 100000000,
							    "updates per second from 0 to 100000000, like 2000");
		const double interval = cli::parse_real(interval_s, "--interval", 0.01, 1e6, false,
						       "seconds between snapshots, like 10 or 0.5");
		const double snap = cli::parse_real(snap_s, "--snapshot-seconds", 0, 1e6, false,
						   "seconds a snapshot takes, like 5 (0: no pacing)");
		const std::uint64_t count = cli::parse_count(count_s, "--snapshots", 0, 1000000,
							     "a number of snapshots (0: until Ctrl-C)");
		if (out.empty())
			cli::usage_error("--out", "a folder or /dev/null", out);
		if (out != "/dev/null") {
			while (out.size() > 1 && out.back() == '/')
				out.pop_back();
			struct stat sb{};
			if (::stat(out.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode))
				cli::usage_error("--out", "a folder or /dev/null", out);
			if (::access(out.c_str(), W_OK) != 0)
				throw Error(fmt::format("--out: cannot write to {}: {}", out, std::strerror(errno)));
		}

		// The store lives in the heap proper (brk), so `cowscope diff`'s heap
		// strip is the store.
		::mallopt(M_MMAP_THRESHOLD, 1 << 30);
		::mallopt(M_TOP_PAD, 0);
		st.base = static_cast<char *>(std::malloc(st.bytes));
		if (st.base == nullptr)
			throw Error(fmt::format("cannot allocate the {} store", format_size(st.bytes)));
		for (std::uint64_t k = 0; k < st.keys; k++) {
			Record *r = st.at(k);
			r->key = k;
			r->version = 0;
			std::memset(reinterpret_cast<char *>(r) + sizeof(Record), 'a' + k % 26,
				    st.record - sizeof(Record));
		}

		struct sigaction sa{};
		sa.sa_handler = on_signal; // no SA_RESTART: naps end at once
		::sigemptyset(&sa.sa_mask);
		::sigaction(SIGINT, &sa, nullptr);
		::sigaction(SIGTERM, &sa, nullptr);
		::signal(SIGPIPE, SIG_IGN);

		say(fmt::format("snapdemo: pid {}; store {} = {} keys x {} B at {:#x}-{:#x} (heap); {} "
				"updates/s; a snapshot every {} s taking {} s, to {}\n",
				::getpid(), format_size(st.bytes), st.keys, st.record,
				reinterpret_cast<std::uintptr_t>(st.base),
				reinterpret_cast<std::uintptr_t>(st.base) + st.bytes, rate, interval_s, snap_s,
				out == "/dev/null" ? out : out + "/snapdemo-" + std::to_string(::getpid()) + ".snap"));
		return run(st, rate, interval, snap, out, count);
	});
}
