// The page-level folio probe (see cowscope/bench/folio.hpp). The child runs only
// async-signal-safe code (stores, pipe I/O, _exit), so this is safe inside a
// threaded host; it is SIGKILLed and reaped on every path.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fmt/format.h>
#include <set>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/bench/folio.hpp"
#include "cowscope/base/meta.hpp"
#include "cowscope/proc/pagemap.hpp"
#include "cowscope/base/units.hpp"

namespace cowscope {

namespace {

constexpr std::size_t kAlign = 2u << 20;

std::int64_t raw_minflt() noexcept
{
	struct rusage ru;
	if (::syscall(SYS_getrusage, RUSAGE_SELF, &ru) < 0)
		return -1;
	return ru.ru_minflt;
}

class Kid {
public:
	explicit Kid(pid_t p) : pid_(p) {}
	Kid(const Kid &) = delete;
	Kid &operator=(const Kid &) = delete;
	~Kid() { reap(true); }
	pid_t pid() const { return pid_; }
	int reap(bool kill) noexcept
	{
		if (pid_ <= 0)
			return 0;
		if (kill)
			::kill(pid_, SIGKILL);
		int st = 0;
		while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
		}
		pid_ = -1;
		return st;
	}

private:
	pid_t pid_;
};

// Read exactly n bytes within timeout_s, or throw.
void read_within(int fd, void *p, std::size_t n, double timeout_s, const char *what)
{
	auto *c = static_cast<char *>(p);
	int left_ms = static_cast<int>(timeout_s * 1000);
	while (n) {
		struct pollfd pf = {fd, POLLIN, 0};
		int r = ::poll(&pf, 1, std::min(left_ms, 1000));
		if (r < 0 && errno != EINTR)
			throw SysError("poll");
		if (r <= 0) {
			left_ms -= 1000;
			if (left_ms <= 0)
				throw Error(fmt::format("folio probe: the child did not {} within {} s", what, timeout_s));
			continue;
		}
		ssize_t k = ::read(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			throw Error(fmt::format("folio probe: the child exited before it could {}", what));
		c += k;
		n -= static_cast<std::size_t>(k);
	}
}

// Usage errors first (the sizes, the ratio), then what the machine lacks.
void validate(const FolioProbeConfig &cfg, std::size_t ps)
{
	if (cfg.folio < ps || cfg.folio % ps)
		throw UsageError(fmt::format("--folio: {} is not a whole number of pages", folio_name(cfg.folio)));
	if (cfg.heap < cfg.folio || cfg.heap % cfg.folio)
		throw UsageError(fmt::format("--heap: {} is not a whole number of {} folios", format_size(cfg.heap),
					     folio_name(cfg.folio)));
	if (!(cfg.write_ratio >= 0 && cfg.write_ratio <= 1))
		throw UsageError(fmt::format("--write-ratio: expected a ratio from 0 to 1, got \"{}\"", cfg.write_ratio));
	const std::size_t fpages = cfg.folio / ps;
	if (cfg.pages_per_folio < 1 || cfg.pages_per_folio > fpages)
		throw UsageError(fmt::format("--pages-per-folio: expected 1 to {} for {} folios, got \"{}\"", fpages,
					     folio_name(cfg.folio), cfg.pages_per_folio));
	check_folio_offered(cfg.folio);
	if (::geteuid() != 0)
		throw Error("folio probe: needs root (it reads PFNs from /proc/PID/pagemap and /proc/kpageflags)");
}

// The child's pages against the parent's before the fork: which were
// copied (written or not), into what folio sizes, and the large folios
// copied only in part.
void count_child_copies(FolioProbeResult &res, const std::vector<PageFolio> &before,
			const std::vector<PageFolio> &child, const std::vector<char> &page_written, std::size_t ps)
{
	std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> per_folio; // head -> copied, pages
	for (std::size_t i = 0; i < before.size(); i++) {
		bool changed = child[i].pfn != before[i].pfn;
		if (changed) {
			(page_written[i] ? res.child_written_copied : res.child_unwritten_copied)++;
			res.child_new_page_folio[child[i].folio_bytes]++;
		}
		if (before[i].folio_bytes > ps) {
			auto &pf = per_folio[before[i].head_pfn];
			pf.first += changed;
			pf.second++;
		}
	}
	for (const auto &[head, cp] : per_folio)
		if (cp.first && cp.first < cp.second)
			res.large_folios_partly_copied++;
}

// The child's pages: the middle pages_per_folio of every k-th folio (k
// from the write ratio), marked in folio_written and page_written.
std::vector<std::uint32_t> child_pages(const FolioProbeConfig &cfg, std::size_t fpages, std::vector<char> &folio_written,
				       std::vector<char> &page_written)
{
	const std::size_t nfolios = folio_written.size();
	std::size_t nwrite = static_cast<std::size_t>(std::llround(cfg.write_ratio * static_cast<double>(nfolios)));
	std::vector<std::uint32_t> wpages;
	for (std::size_t j = 0; j < nwrite; j++) {
		std::size_t f = j * nfolios / nwrite;
		folio_written[f] = 1;
		std::size_t first = f * fpages + (fpages - cfg.pages_per_folio) / 2;
		for (std::size_t k = 0; k < cfg.pages_per_folio; k++) {
			wpages.push_back(static_cast<std::uint32_t>(first + k));
			page_written[first + k] = 1;
		}
	}
	return wpages;
}

// Fork a child that writes `wpages` of the heap, then waits: while it
// waits, its faults and what backs its heap into `res`, and its pages
// (returned); then it exits, reaped.
std::vector<PageFolio> fork_writer(const FolioProbeConfig &cfg, char *heap, std::size_t len, std::size_t ps,
				   const std::vector<std::uint32_t> &wpages, FolioProbeResult &res)
{
	volatile char *h = heap;
	int rp[2], gp[2];
	if (::pipe2(rp, O_CLOEXEC) < 0)
		throw SysError("pipe");
	UniqueFd r0(rp[0]), r1(rp[1]);
	if (::pipe2(gp, O_CLOEXEC) < 0)
		throw SysError("pipe");
	UniqueFd g0(gp[0]), g1(gp[1]);
	const pid_t self = ::getpid();
	const std::uint32_t *wp = wpages.data();
	const std::size_t nw = wpages.size();
	pid_t pid = ::fork();
	if (pid < 0)
		throw SysError("fork");
	if (pid == 0) {
		// Only async-signal-safe calls from here to _exit.
		::prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (::getppid() != self)
			::_exit(3);
		::close(rp[0]); // the parent's ends: EOF on the go pipe must reach us
		::close(gp[1]);
		std::int64_t f0 = raw_minflt();
		for (std::size_t i = 0; i < nw; i++)
			h[static_cast<std::size_t>(wp[i]) * ps] = 2;
		std::int64_t faults = raw_minflt() - f0;
		if (::write(rp[1], &faults, sizeof(faults)) != sizeof(faults))
			::_exit(4);
		char c;
		while (::read(gp[0], &c, 1) < 0 && errno == EINTR) {
		}
		::_exit(0);
	}
	Kid kid(pid);
	r1.reset();
	g0.reset();
	std::int64_t faults = 0;
	read_within(r0.get(), &faults, sizeof(faults), cfg.timeout_s, "finish writing");
	res.child_faults = static_cast<std::uint64_t>(faults);
	auto child = page_folios(heap, len, pid);
	res.child_after = observe_folios(heap, len, pid);
	g1.reset(); // EOF: the child exits
	int st = kid.reap(false);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		throw Error(fmt::format("folio probe: the child exited with status {}",
					WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)));
	return child;
}

// The parent writes every page of its heap, the child gone: which it
// reuses in place and which it copies, by what the child did to the page
// and its folio.
void parent_rewrites(FolioProbeResult &res, char *heap, std::size_t len, std::size_t ps, std::size_t fpages,
		     const std::vector<PageFolio> &before, const std::vector<char> &folio_written,
		     const std::vector<char> &page_written)
{
	volatile char *h = heap;
	const std::size_t pages = len / ps;
	std::uint64_t f0 = minor_faults_thread();
	for (std::size_t i = 0; i < pages; i++)
		h[i * ps] = 3;
	res.parent_faults = minor_faults_thread() - f0;
	auto after = page_folios(heap, len);
	res.parent_after = observe_folios(heap, len);
	for (std::size_t i = 0; i < pages; i++) {
		ReuseCount &c = page_written[i] ? res.parent_written_by_child
				: folio_written[i / fpages] ? res.parent_same_folio
							     : res.parent_untouched_folio;
		(after[i].pfn == before[i].pfn ? c.reused : c.copied)++;
	}
}

} // namespace

FolioProbeResult run_folio_probe(const FolioProbeConfig &cfg)
{
	const std::size_t ps = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
	validate(cfg, ps);
	const std::size_t fpages = cfg.folio / ps;

	FolioProbeResult res;
	res.config = cfg;
	res.machine = machine_metadata();
	FolioGuard guard(cfg.folio);

	// An aligned heap, advised as cowbench --folio does.
	const std::size_t len = cfg.heap;
	Mapping map = Mapping::anonymous_aligned(len, kAlign);
	if (::madvise(map.data(), len, cfg.folio <= ps ? MADV_NOHUGEPAGE : MADV_HUGEPAGE) < 0)
		throw SysError("madvise heap");
	volatile char *h = map.data();
	const std::size_t pages = len / ps;
	for (std::size_t i = 0; i < pages; i++)
		h[i * ps] = 1;
	auto before = page_folios(map.data(), len);
	res.before = observe_folios(map.data(), len);

	std::vector<char> folio_written(pages / fpages, 0), page_written(pages, 0);
	const std::vector<std::uint32_t> wpages = child_pages(cfg, fpages, folio_written, page_written);
	res.folios_written = static_cast<std::size_t>(std::count(folio_written.begin(), folio_written.end(), 1));
	res.pages_written = wpages.size();

	auto child = fork_writer(cfg, map.data(), len, ps, wpages, res);
	count_child_copies(res, before, child, page_written, ps);
	parent_rewrites(res, map.data(), len, ps, fpages, before, folio_written, page_written);
	return res;
}

nlohmann::json FolioProbeResult::to_json() const
{
	auto rc = [](const ReuseCount &c) { return nlohmann::json{{"reused", c.reused}, {"copied", c.copied}}; };
	nlohmann::json newf = nlohmann::json::object();
	for (const auto &[b, n] : child_new_page_folio)
		newf[folio_name(b)] = n;
	return {
		{"tool", "cowbench folio-probe"},
		{"params",
		 {{"heap", format_size(config.heap)},
		  {"heap_bytes", config.heap},
		  {"folio", folio_name(config.folio)},
		  {"write_ratio", config.write_ratio},
		  {"pages_per_folio", config.pages_per_folio}}},
		{"machine", machine},
		{"before", before.to_json()},
		{"child",
		 {{"folios_written", folios_written},
		  {"pages_written", pages_written},
		  {"written_pages_copied", child_written_copied},
		  {"unwritten_pages_copied", child_unwritten_copied},
		  {"minor_faults", child_faults},
		  {"new_pages_by_folio_size", newf},
		  {"large_folios_partly_copied", large_folios_partly_copied},
		  {"after", child_after.to_json()}}},
		{"parent_after_child_exit",
		 {{"pages_the_child_wrote", rc(parent_written_by_child)},
		  {"other_pages_of_those_folios", rc(parent_same_folio)},
		  {"pages_of_folios_the_child_left_alone", rc(parent_untouched_folio)},
		  {"minor_faults", parent_faults},
		  {"after", parent_after.to_json()}}},
	};
}

std::string FolioProbeResult::to_text() const
{
	auto rc = [](const ReuseCount &c) {
		return fmt::format("{} reused in place, {} copied", c.reused, c.copied);
	};
	std::string out = fmt::format(
		"folio probe: heap {} of {} folios; child writes {} page(s) in {} of {} folios ({} pages)\n",
		format_size(config.heap), folio_name(config.folio), config.pages_per_folio, folios_written,
		config.heap / config.folio, pages_written);
	out += fmt::format("  before fork:     {}\n", before.summary());
	out += fmt::format("  child writes:    {} written pages copied, {} pages it did not write copied, "
			   "{} minor faults; {} large folios now partly copied\n",
			   child_written_copied, child_unwritten_copied, child_faults, large_folios_partly_copied);
	std::string nf;
	for (const auto &[b, n] : child_new_page_folio)
		nf += fmt::format("{}{} pages in {} folios", nf.empty() ? "" : ", ", n, folio_name(b));
	out += fmt::format("  child's copies:  {}\n", nf.empty() ? "none" : nf);
	out += fmt::format("  child after:     {}\n", child_after.summary());
	out += fmt::format("  parent writes every page after the child exited ({} minor faults):\n", parent_faults);
	out += fmt::format("    pages the child wrote:               {}\n", rc(parent_written_by_child));
	out += fmt::format("    other pages of those folios:         {}\n", rc(parent_same_folio));
	out += fmt::format("    pages of folios the child left alone: {}\n", rc(parent_untouched_folio));
	out += fmt::format("  parent after:    {}\n", parent_after.summary());
	return out;
}

} // namespace cowscope
