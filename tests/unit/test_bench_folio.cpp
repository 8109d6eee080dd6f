// cowbench --folio: the per-size THP controls (on a fake sysfs tree, then on
// the real one), what a heap of 64K folios really gets (kpageflags ground
// truth), the COW granularity of a partial child write measured by pagemap
// PFNs against cowbench's fault count, and the controls restored after a
// normal exit, an error exit, SIGINT, SIGTERM and a double SIGTERM.
// The controls are global: run these while no other cowbench --folio (or
// anything else changing them) runs, or the snapshots disagree.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "cowscope/bench/bench.hpp"
#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"
#include "cowscope/bench/folio.hpp"
#include "run_command.hpp"

using namespace cowscope;
namespace fs = std::filesystem;

namespace {

const char *kSys = "/sys/kernel/mm/transparent_hugepage";

std::string slurp(const std::string &p)
{
	std::ifstream in(p);
	std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
	while (!s.empty() && s.back() == '\n')
		s.pop_back();
	return s;
}

// Every THP `enabled` control's text, by path.
std::map<std::string, std::string> snapshot(const std::string &root = kSys)
{
	std::map<std::string, std::string> m;
	if (fs::exists(root + "/enabled"))
		m[root + "/enabled"] = slurp(root + "/enabled");
	if (fs::exists(root))
		for (const auto &e : fs::directory_iterator(root))
			if (fs::exists(e.path() / "enabled"))
				m[(e.path() / "enabled").string()] = slurp((e.path() / "enabled").string());
	return m;
}

std::string word(const std::string &s)
{
	auto a = s.find('['), b = s.find(']');
	return a == std::string::npos ? s : s.substr(a + 1, b - a - 1);
}

// Puts the real controls back whatever a test did (a test that changes
// sysfs restores it even when it fails).
class SysfsKeeper {
public:
	SysfsKeeper() : saved_(snapshot()) {}
	~SysfsKeeper()
	{
		for (const auto &[p, v] : saved_)
			if (std::string now = slurp(p); word(now) != word(v)) {
				std::ofstream(p) << word(v);
				ADD_FAILURE() << p << " was left at \"" << now << "\", not \"" << v
					      << "\" (restored by the test; was another cowbench --folio running?)";
			}
	}
	const std::map<std::string, std::string> &saved() const { return saved_; }

private:
	std::map<std::string, std::string> saved_;
};

bool offers(std::uint64_t b)
{
	auto o = folio_sizes_offered();
	return std::find(o.begin(), o.end(), b) != o.end();
}

// Why a test of 64K folios cannot run here, "" when it can: it needs root
// (the sysfs controls, PFNs) and a kernel that offers 64K anonymous folios.
std::string no_64k_folios()
{
	if (::geteuid() != 0)
		return "needs root (sysfs controls, PFNs)";
	if (!offers(65536))
		return "this kernel does not offer 64K anonymous folios";
	return "";
}

using cowscope::testing::bin_dir;

std::string cowbench() { return bin_dir() + "/cowbench"; }

// Why a test that runs cowbench cannot run here, "" when it can.
std::string no_cowbench()
{
	return access(cowbench().c_str(), X_OK) == 0 ? "" : "cowbench not built next to this test";
}

// The same for a test that runs cowbench --folio 64K.
std::string no_cowbench_64k()
{
	const std::string why = no_64k_folios();
	return why.empty() ? no_cowbench() : why;
}

// A fake sysfs tree: hugepages-8kB without `enabled` (as on 6.18, where
// order 1 is for shmem only) and the anonymous sizes with it.
struct FakeTree {
	fs::path root = fs::temp_directory_path() / ("cowscope-thp-" + std::to_string(::getpid()));
	explicit FakeTree(bool mthp = true, bool top = true)
	{
		fs::remove_all(root);
		fs::create_directories(root);
		if (top)
			std::ofstream(root / "enabled") << "always [madvise] never\n";
		if (mthp) {
			fs::create_directories(root / "hugepages-8kB");
			std::ofstream(root / "hugepages-8kB" / "shmem_enabled") << "[never]\n";
			for (int kb : {16, 32, 64, 128, 256, 512, 1024, 2048}) {
				auto d = root / ("hugepages-" + std::to_string(kb) + "kB");
				fs::create_directories(d);
				std::ofstream(d / "enabled")
					<< (kb == 2048 ? "always [inherit] madvise never\n"
					    : kb == 32 ? "[always] inherit madvise never\n"
						       : "always inherit madvise [never]\n");
			}
		}
		set_thp_sysfs_root(root.string());
	}
	~FakeTree()
	{
		set_thp_sysfs_root("");
		fs::remove_all(root);
	}
	std::string ctl(int kb) const { return slurp((root / ("hugepages-" + std::to_string(kb) + "kB") / "enabled").string()); }
};

} // namespace

TEST(Folio, ParsesKnownSizesOnly)
{
	EXPECT_EQ(parse_folio("4K"), 4096u);
	EXPECT_EQ(parse_folio("64k"), 65536u);
	EXPECT_EQ(parse_folio("64KB"), 65536u);
	EXPECT_EQ(parse_folio("2M"), 2u << 20);
	EXPECT_EQ(parse_folio("1M"), 1u << 20);
	EXPECT_EQ(parse_folio("8K"), 8192u); // a size; whether the kernel offers it is checked later
	for (const char *bad : {"12K", "banana", "3M", "4M", "", "0", "-64K", "2K"}) {
		try {
			parse_folio(bad);
			ADD_FAILURE() << bad << " was accepted";
		} catch (const UsageError &e) {
			EXPECT_NE(std::string(e.what()).find("--folio: expected a folio size, a power of two from 4K to 2M"),
				  std::string::npos)
				<< e.what();
			EXPECT_NE(std::string(e.what()).find(std::string("\"") + bad + "\""), std::string::npos) << e.what();
		}
	}
	EXPECT_EQ(folio_name(65536), "64K");
	EXPECT_EQ(folio_name(2u << 20), "2M");
}

TEST(Folio, OfferedSizesComeFromTheControls)
{
	FakeTree t;
	auto o = folio_sizes_offered();
	std::vector<std::uint64_t> want = {4096};
	for (int kb : {16, 32, 64, 128, 256, 512, 1024, 2048})
		want.push_back(static_cast<std::uint64_t>(kb) * 1024);
	EXPECT_EQ(o, want);
	try {
		check_folio_offered(8192);
		ADD_FAILURE() << "8K accepted";
	} catch (const UsageError &e) {
		EXPECT_STREQ(e.what(), "--folio: this kernel offers 4K 16K 32K 64K 128K 256K 512K 1M 2M; 8K is not one");
	}
}

TEST(Folio, KernelsWithoutMthpOfferOnly2M)
{
	{
		FakeTree t(false, true);
		EXPECT_EQ(folio_sizes_offered(), (std::vector<std::uint64_t>{4096, 2u << 20}));
		EXPECT_FALSE(has_mthp_controls());
		try {
			check_folio_offered(65536);
			ADD_FAILURE() << "64K accepted";
		} catch (const UsageError &e) {
			EXPECT_NE(std::string(e.what()).find("no multi-size THP controls"), std::string::npos) << e.what();
			EXPECT_NE(std::string(e.what()).find("it offers 4K 2M; 64K is not one"), std::string::npos)
				<< e.what();
		}
	}
	FakeTree none(false, false);
	try {
		check_folio_offered(2u << 20);
		ADD_FAILURE() << "2M accepted without THP";
	} catch (const UsageError &e) {
		EXPECT_NE(std::string(e.what()).find("no THP controls at all"), std::string::npos) << e.what();
	}
}

TEST(Folio, GuardSetsOneSizeAndRestoresEverything)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "FolioGuard needs root (it refuses otherwise)";
	FakeTree t;
	{
		FolioGuard g(65536);
		EXPECT_EQ(t.ctl(64), "madvise");
		EXPECT_EQ(t.ctl(32), "never");   // was always
		EXPECT_EQ(t.ctl(2048), "never"); // was inherit, top-level madvise
		EXPECT_EQ(t.ctl(16), "always inherit madvise [never]"); // untouched
		EXPECT_EQ(g.changes().size(), 3u);
		EXPECT_THROW(FolioGuard(16384), Error); // one at a time
	}
	EXPECT_EQ(t.ctl(64), "never");
	EXPECT_EQ(t.ctl(32), "always");
	EXPECT_EQ(t.ctl(2048), "inherit");
	// The signal-handler path writes back the same.
	{
		FolioGuard g(2u << 20);
		EXPECT_EQ(t.ctl(2048), "inherit"); // already allowed for madvised heaps
		EXPECT_EQ(t.ctl(32), "never");
		restore_folio_controls_now();
		EXPECT_EQ(t.ctl(32), "always");
	}
	EXPECT_EQ(t.ctl(32), "always");
	// 4K changes nothing.
	FolioGuard four(4096);
	EXPECT_TRUE(four.changes().empty());
}

// Two processes never interleave their changes: the second guard waits for
// the first to restore, then finds the first's values undone.

// True once /proc/locks lists `pid` as blocked on a flock ("N: -> FLOCK
// ADVISORY WRITE PID ..."), polled until `timeout_ms`.
bool blocked_on_flock(pid_t pid, int timeout_ms)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	const std::string want = " " + std::to_string(pid) + " ";
	do {
		std::istringstream in(cowscope::read_file("/proc/locks"));
		for (std::string line; std::getline(in, line);)
			if (line.find("-> FLOCK") != std::string::npos && line.find(want) != std::string::npos)
				return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	} while (std::chrono::steady_clock::now() < deadline);
	return false;
}

TEST(Folio, GuardsOfTwoProcessesTakeTurns)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "FolioGuard needs root (it refuses otherwise)";
	FakeTree t;
	int go[2], got[2];
	ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
	ASSERT_EQ(::pipe2(got, O_CLOEXEC), 0);
	UniqueFd go_r(go[0]), go_w(go[1]), got_r(got[0]), got_w(got[1]);
	pid_t pid = ::fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char c;
		if (::read(go_r.get(), &c, 1) != 1)
			::_exit(3);
		int rc = 0;
		try {
			FolioGuard g(16384);
			// The first guard's 64K change is undone by now.
			rc = t.ctl(64) == "never" && t.ctl(16) == "madvise" ? 0 : 1;
		} catch (...) {
			rc = 2;
		}
		char r = static_cast<char>(rc);
		ssize_t n = ::write(got_w.get(), &r, 1);
		::_exit(n == 1 ? rc : 4);
	}
	got_w.reset();
	{
		FolioGuard g(65536);
		ASSERT_EQ(::write(go_w.get(), "g", 1), 1);
		// Wait until the second process is blocked on the controls' lock
		// (/proc/locks lists it as a waiter: "-> FLOCK ... PID"), then it
		// must not have changed them nor said anything.
		EXPECT_TRUE(blocked_on_flock(pid, 10000)) << "the second process never waited for the lock";
		pollfd p{got_r.get(), POLLIN, 0};
		EXPECT_EQ(::poll(&p, 1, 0), 0) << "the second process changed the controls while the first held them";
		EXPECT_EQ(t.ctl(64), "madvise");
	}
	pollfd p{got_r.get(), POLLIN, 0};
	EXPECT_EQ(::poll(&p, 1, 10000), 1) << "the second process never got the controls";
	int st = 0;
	ASSERT_EQ(::waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(WEXITSTATUS(st), 0) << "1: the second saw the first's values, 2: its guard threw";
	EXPECT_EQ(t.ctl(16), "never"); // the second restored its own change too
}

TEST(FolioE2E, Heap64KGets64KFolios)
{
	if (auto why = no_64k_folios(); !why.empty())
		GTEST_SKIP() << why;
	SysfsKeeper keep;
	BenchConfig c = config_from_options({{"heap", "32M"}, {"write-ratio", "0.5"}, {"folio", "64K"}, {"repeat", "2"}});
	BenchResult r = run_bench(c);
	const auto &o = r.setup.folio_observed;
	ASSERT_EQ(o["source"], "kpageflags") << o.dump();
	if (r.setup.folio_fraction < 0.9) {
		// A skip only when the kernel says it fell back; otherwise the
		// observer and the counters disagree, and that is a failure.
		auto c = r.setup.folio_counters.value("64K", nlohmann::json::object());
		if (c.value("anon_fault_fallback", 0) > 0)
			GTEST_SKIP() << "allocation fell back: " << o.dump() << " counters " << c.dump();
		FAIL() << "kpageflags saw " << o.dump() << " but the 64K counters report no fallback: " << c.dump();
	}
	EXPECT_EQ(o["pages"], 8192);
	EXPECT_GE(o["pages_by_folio_size"].value("64K", 0), 8192 * 0.9);
	EXPECT_EQ(r.setup.thp_advice, "MADV_HUGEPAGE");
	auto j = to_json(r);
	EXPECT_EQ(j["params"]["folio"], "64K");
	EXPECT_EQ(j["setup"]["folio_requested"], "64K");
	EXPECT_TRUE(j["setup"]["folio_counters"].contains("64K")) << j["setup"]["folio_counters"].dump();
	EXPECT_GE(j["setup"]["folio_counters"]["64K"]["anon_fault_alloc"].get<double>(), 512 * 0.9);
	std::cout << "64K heap: after populate " << o.dump() << "\n  after the run " << r.setup.folio_observed_end.dump()
		  << "\n";
	ASSERT_FALSE(r.repetitions.empty());
	for (const auto &rep : r.repetitions)
		EXPECT_EQ(rep.status, "ok");
}

TEST(FolioE2E, FourKNeedsNoRootAndGetsNoLargeFolios)
{
	BenchConfig c = config_from_options({{"heap", "8M"}, {"write-ratio", "0.5"}, {"folio", "4K"}, {"repeat", "1"}});
	BenchResult r = run_bench(c);
	EXPECT_EQ(r.setup.thp_advice, "MADV_NOHUGEPAGE");
	EXPECT_TRUE(r.setup.folio_controls_changed.empty());
	if (::geteuid() == 0) {
		EXPECT_EQ(r.setup.folio_observed["source"], "kpageflags");
		EXPECT_DOUBLE_EQ(r.setup.folio_fraction, 1.0) << r.setup.folio_observed.dump();
	}
}

// Does a child's write to a shared 64K folio copy 4 KiB or the whole folio?
// Whatever the kernel does, pagemap's PFNs in the child and cowbench's COW
// fault count must tell the same story.
TEST(FolioE2E, PartialChildWriteMatchesPagemap)
{
	if (auto why = no_64k_folios(); !why.empty())
		GTEST_SKIP() << why;
	SysfsKeeper keep;
	FolioProbeConfig pc;
	pc.heap = 16u << 20;
	pc.folio = 65536;
	pc.write_ratio = 0.5;
	FolioProbeResult p = run_folio_probe(pc);
	if (p.before.fraction(65536) < 0.9)
		GTEST_SKIP() << "allocation fell back: " << p.before.summary();
	std::cout << p.to_text();
	ASSERT_EQ(p.folios_written, 128u);
	ASSERT_EQ(p.pages_written, 128u);
	// Every written page is private to the child afterwards.
	EXPECT_EQ(p.child_written_copied, p.pages_written);
	// Granularity: pages copied per folio written (1 = 4 KiB, 16 = whole).
	double copied = static_cast<double>(p.child_written_copied + p.child_unwritten_copied);
	double per_folio = copied / static_cast<double>(p.folios_written);
	EXPECT_TRUE(per_folio == 1 || per_folio == 16) << "copied " << copied << " pages for " << p.folios_written
							<< " folios written";
	// One fault per copy event (plus at most a few unrelated ones).
	EXPECT_GE(p.child_faults, p.folios_written);
	EXPECT_LE(p.child_faults, p.folios_written + 8);
	if (per_folio == 1) {
		EXPECT_EQ(p.large_folios_partly_copied, p.folios_written);
	}
	// The parent writes after the child exited: every page is either reused
	// or copied, and its PFN tells which.
	auto total = [](const ReuseCount &c) { return c.reused + c.copied; };
	EXPECT_EQ(total(p.parent_written_by_child) + total(p.parent_same_folio) + total(p.parent_untouched_folio),
		  4096u);

	// cowbench: a sequential write of half the 64K heap. Predicted faults
	// from the granularity pagemap showed: one per page (4 KiB copies) or
	// one per folio (whole-folio copies).
	BenchConfig c = config_from_options({{"heap", "16M"}, {"write-ratio", "0.5"}, {"folio", "64K"}, {"repeat", "2"}});
	BenchResult r = run_bench(c);
	if (r.setup.folio_fraction < 0.9)
		GTEST_SKIP() << "cowbench's heap fell back: " << r.setup.folio_observed.dump();
	double want = static_cast<double>(r.setup.pages_written) / per_folio;
	// The first measured repetition follows the warm-up: the heap's
	// folios are what the parent's rewrite left (reused or copied).
	ASSERT_FALSE(r.repetitions.empty());
	for (const auto &rep : r.repetitions) {
		EXPECT_EQ(rep.status, "ok");
		EXPECT_NEAR(rep.cow_faults, want, want * 0.02 + 4) << "granularity from pagemap: " << per_folio;
	}
}

TEST(FolioCli, BadInputIsRefusedBeforeAnything)
{
	if (auto why = no_cowbench(); !why.empty())
		GTEST_SKIP() << why;
	auto [out, rc] = cowscope::testing::run_command(cowbench() + " --folio 8K --heap 4M --repeat 1 2>&1");
	EXPECT_EQ(rc, 2) << out;
	if (has_mthp_controls()) {
		EXPECT_NE(out.find("cowbench: --folio: this kernel offers 4K 16K"), std::string::npos) << out;
		EXPECT_NE(out.find("; 8K is not one"), std::string::npos) << out;
	}
	std::tie(out, rc) = cowscope::testing::run_command(cowbench() + " --folio banana --heap 4M 2>&1");
	EXPECT_EQ(rc, 2) << out;
	EXPECT_NE(out.find("got \"banana\""), std::string::npos) << out;
	std::tie(out, rc) = cowscope::testing::run_command(cowbench() + " --folio 64K --thp always --heap 4M 2>&1");
	EXPECT_EQ(rc, 2) << out;
	EXPECT_NE(out.find("--folio 64K and --thp always: give one of them"), std::string::npos) << out;
	if (::geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0 && offers(65536)) {
		SysfsKeeper keep;
		std::tie(out, rc) = cowscope::testing::run_command("/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups " +
							 cowbench() + " --folio 64K --heap 4M --repeat 1 2>&1");
		EXPECT_EQ(rc, 2) << out;
		EXPECT_NE(out.find("cowbench: --folio 64K: needs root"), std::string::npos) << out;
	}
}

TEST(FolioCli, ControlsRestoredAfterNormalAndErrorExit)
{
	if (auto why = no_cowbench_64k(); !why.empty())
		GTEST_SKIP() << why;
	SysfsKeeper keep;
	auto [out, rc] = cowscope::testing::run_command(cowbench() + " --folio 64K --heap 8M --repeat 1 --quiet 2>&1");
	EXPECT_EQ(rc, 0) << out;
	EXPECT_NE(out.find("folio 64K requested"), std::string::npos) << out;
	EXPECT_EQ(snapshot(), keep.saved());
	// An error while the guard is live: posix_spawn of a missing program.
	std::tie(out, rc) = cowscope::testing::run_command(cowbench() +
						 " --folio 64K --heap 8M --repeat 1 --spawn posix_spawn 2>&1 "
						 "--exec /nonexistent/program");
	EXPECT_NE(rc, 0) << out;
	EXPECT_EQ(snapshot(), keep.saved()) << out;
}

namespace {

// Start cowbench --folio 64K on a long run; wait until its controls are set.
pid_t start_long_run()
{
	auto before = snapshot();
	pid_t p = ::fork();
	if (p == 0) {
		int null = ::open("/dev/null", O_WRONLY);
		::dup2(null, 1);
		::dup2(null, 2);
		::execl(cowbench().c_str(), "cowbench", "--folio", "64K", "--heap", "64M", "--write-ratio", "0.5",
			"--repeat", "100000", "--quiet", (char *)nullptr);
		::_exit(127);
	}
	for (int i = 0; i < 500 && snapshot() == before; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	return p;
}

int wait_status(pid_t p)
{
	int st = 0;
	for (int i = 0; i < 3000; i++) {
		if (::waitpid(p, &st, WNOHANG) == p)
			return st;
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	::kill(p, SIGKILL);
	::waitpid(p, &st, 0);
	ADD_FAILURE() << "cowbench did not exit within 30 s of the signal";
	return st;
}

} // namespace

TEST(FolioCli, ControlsRestoredAfterSigintSigtermAndDoubleSignal)
{
	if (auto why = no_cowbench_64k(); !why.empty())
		GTEST_SKIP() << why;
	SysfsKeeper keep;
	bool changes = false;
	{
		FolioGuard probe(65536); // does --folio 64K change anything here?
		changes = !probe.changes().empty();
	}
	for (int sig : {SIGINT, SIGTERM}) {
		pid_t p = start_long_run();
		if (changes) {
			EXPECT_NE(snapshot(), keep.saved()) << "cowbench did not set the controls";
		}
		::kill(p, sig);
		int st = wait_status(p);
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 130) << "signal " << sig << " status " << st;
		EXPECT_EQ(snapshot(), keep.saved()) << "after signal " << sig;
	}
	// Two SIGTERMs: the second restores at once and dies of the signal.
	pid_t p = start_long_run();
	::kill(p, SIGTERM);
	::kill(p, SIGTERM);
	int st = wait_status(p);
	EXPECT_TRUE((WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM) || (WIFEXITED(st) && WEXITSTATUS(st) == 130))
		<< st;
	EXPECT_EQ(snapshot(), keep.saved()) << "after a double SIGTERM";
}
