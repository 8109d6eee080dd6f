// In-VM tests of the forecast's inputs that this development machine's
// kernel lacks: the soft-dirty window against a writer of known rate and of
// known distinct pages, a target that exits mid-window, and the module's
// PTE state (writable right after a rewrite, write-protected right after a
// fork). scripts/vm --kernel 6.12|7.3 test --filter 'forecast*'.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "cowscope/base/error.hpp"
#include "cowscope/forecast/forecast.hpp"
#include "cowscope/view/view.hpp"

using namespace cowscope;
using namespace cowscope::forecast;

namespace {

constexpr std::size_t P = 4096;

// A child with a populated 4 KiB heap of `pages` pages that then writes:
// `rate` new distinct pages per second, in order (rate > 0), or the same
// `hot` pages over and over (rate == 0), for `life_s` seconds, then exits.
pid_t spawn_writer(std::size_t pages, double rate, std::size_t hot, double life_s)
{
	int p[2];
	if (::pipe(p))
		throw SysError("pipe");
	pid_t pid = ::fork();
	if (pid < 0)
		throw SysError("fork");
	if (pid == 0) {
		::close(p[0]);
		char *h = static_cast<char *>(
			::mmap(nullptr, pages * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
		::madvise(h, pages * P, MADV_NOHUGEPAGE);
		std::memset(h, 1, pages * P);
		char c = 'r';
		(void)!::write(p[1], &c, 1);
		auto t0 = std::chrono::steady_clock::now();
		std::size_t next = 0;
		for (;;) {
			double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
			if (t >= life_s)
				_exit(0);
			if (rate > 0) {
				std::size_t due = std::min(pages, static_cast<std::size_t>(t * rate));
				for (; next < due; next++)
					h[next * P] = 2;
			} else {
				for (std::size_t i = 0; i < hot; i++)
					h[i * P]++;
			}
			::usleep(1000);
		}
	}
	::close(p[1]);
	char c;
	if (::read(p[0], &c, 1) != 1)
		throw Error("writer did not start");
	::close(p[0]);
	return pid;
}

void reap(pid_t pid)
{
	::kill(pid, SIGKILL);
	::waitpid(pid, nullptr, 0);
}

class ForecastVm : public ::testing::Test {
protected:
	void SetUp() override
	{
		std::string why;
		if (!soft_dirty_supported(&why))
			GTEST_SKIP() << "no soft-dirty on this kernel: " << why;
	}
};

} // namespace

TEST_F(ForecastVm, SoftDirtyCountsAWriterOfKnownRate)
{
	const std::size_t pages = 16384; // 64 MiB
	const double rate = 2000, window = 2.0;
	pid_t pid = spawn_writer(pages, rate, 0, 30);
	auto t0 = std::chrono::steady_clock::now();
	CopySide c;
	ASSERT_NO_THROW(c = measure_soft_dirty(pid, window, 0.25));
	double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	reap(pid);
	ASSERT_GE(c.curve.size(), 8u);
	for (std::size_t i = 1; i < c.curve.size(); i++)
		EXPECT_GE(c.curve[i].pages, c.curve[i - 1].pages) << "distinct pages never decrease";
	EXPECT_EQ(c.curve.back().huge_blocks, 0u);
	double expect = rate * c.curve.back().t_s;
	std::printf("soft-dirty: %llu pages in %.2f s (writer %.0f/s: %.0f expected), %zu samples, call %.2f s\n",
		    static_cast<unsigned long long>(c.curve.back().pages), c.curve.back().t_s, rate, expect,
		    c.curve.size(), took);
	// The writer paces by the clock; under emulation it may lag a little
	// behind, never run ahead.
	EXPECT_LE(c.pages_point, expect * 1.05 + 10);
	EXPECT_GE(c.pages_point, expect * 0.75);
	EXPECT_EQ(c.pages_lo, c.pages_hi);
}

TEST_F(ForecastVm, SoftDirtyCountsDistinctPagesNotWrites)
{
	pid_t pid = spawn_writer(4096, 0, 100, 30);
	CopySide c = measure_soft_dirty(pid, 1.0, 0.25);
	reap(pid);
	// 100 hot pages written thousands of times: 100 distinct pages (the
	// writer's own stack page may add a few).
	EXPECT_GE(c.pages_point, 100);
	EXPECT_LE(c.pages_point, 110);
}

TEST_F(ForecastVm, TargetExitingMidWindowIsReported)
{
	pid_t pid = spawn_writer(1024, 100, 0, 0.3);
	std::thread reaper([pid] { ::waitpid(pid, nullptr, 0); });
	try {
		measure_soft_dirty(pid, 3.0, 0.2);
		ADD_FAILURE() << "no error for a target that exited";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("exited"), std::string::npos) << e.what();
	}
	reaper.join();
}

TEST(ForecastVmModule, PteStateFromTheModule)
{
	if (!view::module_loaded())
		GTEST_SKIP() << "cowscope.ko not loaded";
	const std::size_t pages = 4096;
	// rate 0, hot 0: a populated heap left alone.
	pid_t pid = spawn_writer(pages, 0, 0, 60);
	Shape fresh = read_shape(pid, true);
	EXPECT_EQ(fresh.state_source, "module");
	EXPECT_GE(fresh.module_writable, pages) << "just written: writable PTEs";
	reap(pid);
	// Our own heap: written, then forked: write-protected.
	char *h = static_cast<char *>(::mmap(nullptr, pages * P, PROT_READ | PROT_WRITE,
					     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	::madvise(h, pages * P, MADV_NOHUGEPAGE);
	std::memset(h, 1, pages * P);
	Shape before = read_shape(::getpid(), true);
	pid_t c2 = ::fork();
	if (c2 == 0)
		_exit(0);
	::waitpid(c2, nullptr, 0);
	Shape after = read_shape(::getpid(), true);
	std::printf("module: writable PTEs %llu after writing, %llu after a fork\n",
		    static_cast<unsigned long long>(before.module_writable),
		    static_cast<unsigned long long>(after.module_writable));
	EXPECT_GE(before.module_writable, pages);
	EXPECT_LE(after.module_writable + pages, before.module_writable + 64);
	::munmap(h, pages * P);
}
